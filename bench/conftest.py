"""Inputs for the benchmarks, built once per session from fixed seeds."""

from __future__ import annotations

import pytest

from datasets.order_streams import OrderColumns, adversarial_stream, realistic_stream

REALISTIC_N = 1_000_000
ADVERSARIAL_N = 400_000
BATCH = 65_536


def batches(cols: OrderColumns) -> list[list[list]]:
    args = cols.matcher_args()
    return [[a[i:i + BATCH] for a in args] for i in range(0, len(cols), BATCH)]


@pytest.fixture(scope="session")
def realistic() -> list[list[list]]:
    return batches(realistic_stream(REALISTIC_N, seed=1))


@pytest.fixture(scope="session")
def adversarial() -> list[list[list]]:
    return batches(adversarial_stream(ADVERSARIAL_N, seed=1))
