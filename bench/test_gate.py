"""The benchmark gate's decision (bench/gate.py) as a pure function, and its baseline file.
No timing here: these run in the ordinary suite and cannot flake."""

from __future__ import annotations

import json

import pytest

from bench import gate
from matching.errors import InputError


def rounds(ratio_per_round: list[float], batches: int = 3) -> tuple[list[list[float]], list[list[float]]]:
    """Paired timings [round][batch] whose workload/calibration ratio is the given one."""
    calib = [[0.1] * batches for _ in ratio_per_round]
    work = [[0.1 * r] * batches for r in ratio_per_round]
    return work, calib


def test_a_hot_loop_as_fast_as_its_baseline_passes():
    v = gate.judge("w", *rounds([1.0, 1.02, 0.98]), baseline=1.0)
    assert v.passed and v.ratio == pytest.approx(1.0)


def test_a_hot_loop_twice_as_slow_as_its_baseline_fails():
    v = gate.judge("w", *rounds([2.0, 2.1, 1.9]), baseline=1.0)
    assert not v.passed and v.slowdown == pytest.approx(2.0)


def test_the_limit_is_the_baseline_times_the_threshold():
    assert gate.judge("w", *rounds([1.49]), baseline=1.0, threshold=1.5).passed
    assert not gate.judge("w", *rounds([1.51]), baseline=1.0, threshold=1.5).passed
    assert gate.judge("w", *rounds([1.0]), baseline=2.0).limit == pytest.approx(3.0)


def test_one_disturbed_round_does_not_fail_the_gate():
    v = gate.judge("w", *rounds([1.0, 1.0, 4.0, 1.0, 1.0]), baseline=1.0)
    assert v.passed and v.ratio == pytest.approx(1.0)
    assert v.spread == pytest.approx(4.0)


def test_a_slowdown_in_most_rounds_is_not_outvoted():
    assert not gate.judge("w", *rounds([2.0, 2.0, 1.0, 2.0, 1.0]), baseline=1.0).passed


def test_batches_are_paired_with_their_own_calibration_chunk():
    # batch 0 takes 3 calibration chunks, batch 1 takes 1: the ratio is their mean, 2.0,
    # whatever each chunk's absolute time in that round was.
    work = [[0.3, 0.1], [0.6, 0.2]]
    calib = [[0.1, 0.1], [0.2, 0.2]]
    assert gate.judge("w", work, calib, baseline=1.0).ratio == pytest.approx(2.0)


@pytest.mark.parametrize("work, calib", [
    pytest.param([], [], id="no rounds"),
    pytest.param([[0.1, 0.1]], [[0.1]], id="a batch without its calibration"),
    pytest.param([[0.1], [0.1, 0.1]], [[0.1], [0.1, 0.1]], id="rounds of different lengths"),
])
def test_timings_that_do_not_pair_up_are_an_error(work, calib):
    with pytest.raises(ValueError, match="paired timings"):
        gate.judge("w", work, calib, baseline=1.0)


def test_a_threshold_that_could_never_fail_is_an_error():
    with pytest.raises(ValueError, match="threshold"):
        gate.judge("w", *rounds([1.0]), baseline=1.0, threshold=1.0)


def test_the_calibration_workload_is_deterministic():
    assert gate.calibration(5_000) == gate.calibration(5_000)
    assert gate.calibration(5_000) != gate.calibration(6_000)
    assert gate.calibration(5_000, seed=3) == gate.calibration(5_000, seed=3)
    assert gate.calibration(5_000, seed=3) != gate.calibration(5_000, seed=4)


def test_the_calibration_records_are_fixed_and_larger_than_a_cores_l2_cache():
    """Its memory behaviour is the point (docs/bench.md): a fixed list of tuples of ints,
    built the same way in every process, of several MB (CI's cores have 2 MB of L2)."""
    import sys

    records = gate.calibration_records()
    assert records is gate.calibration_records()  # built once, outside the clock
    assert len(records) == gate.CALIBRATION_RECORDS
    assert records[:3] == gate.calibration_records.__wrapped__(3)
    size = sys.getsizeof(records) + sum(sys.getsizeof(r) + sum(sys.getsizeof(v) for v in r)
                                        for r in records)
    assert size > 4 * 2**20
    assert all(v > 256 for r in records for v in r)  # no cached small ints: every one is read


def test_measure_times_every_batch_of_every_round_after_its_calibration_chunk():
    """The workload interface: a fresh state per round, one step per batch (here the
    matcher over a small stream; CI's bench-check runs the real workloads, and docs/bench.md
    shows --slowdown 2 failing them)."""
    from datasets.order_streams import realistic_stream

    cols = realistic_stream(40_000, seed=1)
    work, calib = gate.measure(gate._matcher_round(cols), rounds=2)
    batches = -(-len(cols) // gate.BATCH)
    assert [len(r) for r in work] == [len(r) for r in calib] == [batches, batches]


def test_the_stored_baseline_has_a_ratio_for_every_workload():
    ratios = gate.load_baseline(gate.BASELINE)
    assert set(ratios) == set(gate.WORKLOADS)
    assert all(r > 0 for r in ratios.values())


def test_a_missing_baseline_is_an_input_error_naming_the_file(tmp_path):
    path = tmp_path / "baseline.json"
    with pytest.raises(InputError, match="no baseline") as info:
        gate.load_baseline(path)
    assert info.value.path == str(path)


def test_a_baseline_without_a_workload_names_the_missing_key(tmp_path):
    path = tmp_path / "baseline.json"
    path.write_text(json.dumps({"ratios": {"realistic_200k": 1.0, "adversarial_200k": -1}}))
    with pytest.raises(InputError, match=r"ratios.adversarial_200k: not a positive number"):
        gate.load_baseline(path)


def test_the_gate_exits_2_on_a_bad_baseline_before_measuring(tmp_path, capsys):
    path = tmp_path / "baseline.json"
    path.write_text("{not json")
    assert gate.main(["--baseline", str(path)]) == 2
    assert f"bad input in {path}" in capsys.readouterr().err
