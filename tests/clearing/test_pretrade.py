"""Pre-trade checks: margin with the order included, and reduce-only.

BTCUSDT, K = 10,000; one tier at 10x (initial margin = notional / 10); taker fee 0.05%.
A 1.000 BTC order at 30,000.0 has notional 3,000,000,000,000 (30,000 USDT): initial
margin 300,000,000,000 (3,000 USDT), taker fee 1,500,000,000 (15 USDT).
"""

from __future__ import annotations

import pytest

from clearing.margin import MarginTiers
from clearing.pretrade import OrderIntent, check_order

USDT = 100_000_000
TIERS = MarginTiers.from_rows([[0, 500_000, 0, 10]])
BASE = dict(k=10_000, tiers=TIERS, taker_rate=50_000)


@pytest.mark.parametrize(("intent", "state", "reason"), [
    pytest.param(OrderIntent(1_000, 300_000, False),
                 dict(position_qty=0, equity=3_015 * USDT, initial_in_use=0, mark=300_000), None,
                 id="equity exactly covers margin plus fee: accepted"),
    pytest.param(OrderIntent(1_000, 300_000, False),
                 dict(position_qty=0, equity=3_015 * USDT - 1, initial_in_use=0, mark=300_000),
                 "insufficient_margin", id="one minor unit short: rejected"),
    pytest.param(OrderIntent(1_000, 300_000, False),
                 dict(position_qty=0, equity=6_015 * USDT, initial_in_use=3_000 * USDT + 1, mark=300_000),
                 "insufficient_margin", id="margin already in use counts"),
    pytest.param(OrderIntent(-1_000, 290_000, False),
                 dict(position_qty=0, equity=3_015 * USDT, initial_in_use=0, mark=300_000), None,
                 id="a limit below the mark is margined at the mark"),
    pytest.param(OrderIntent(1_000, 310_000, False),
                 dict(position_qty=0, equity=3_015 * USDT, initial_in_use=0, mark=300_000),
                 "insufficient_margin", id="a limit above the mark is margined at the limit"),
    pytest.param(OrderIntent(1_000, 300_000, False),
                 dict(position_qty=0, equity=3_015 * USDT, initial_in_use=0, mark=None), None,
                 id="before the first mark a limit is margined at its limit"),
    pytest.param(OrderIntent(1_000, None, False),
                 dict(position_qty=0, equity=10**15, initial_in_use=0, mark=None), "no_mark_price",
                 id="a market order before the first mark cannot be priced"),
    pytest.param(OrderIntent(-500, None, True),
                 dict(position_qty=1_000, equity=0, initial_in_use=0, mark=300_000), None,
                 id="reduce-only that reduces a long is exempt from margin"),
    pytest.param(OrderIntent(-1_500, None, True),
                 dict(position_qty=1_000, equity=10**15, initial_in_use=0, mark=300_000),
                 "reduce_only_would_increase", id="reduce-only that would flip is rejected"),
    pytest.param(OrderIntent(500, None, True),
                 dict(position_qty=1_000, equity=10**15, initial_in_use=0, mark=300_000),
                 "reduce_only_would_increase", id="reduce-only on the side of the position is rejected"),
    pytest.param(OrderIntent(500, 300_000, True),
                 dict(position_qty=0, equity=10**15, initial_in_use=0, mark=300_000),
                 "reduce_only_would_increase", id="reduce-only without a position is rejected"),
])
def test_pretrade(intent, state, reason):
    assert check_order(intent, **state, **BASE) == reason
