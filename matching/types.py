"""Vocabulary of the matcher: sides, order types, time in force, self-trade prevention,
event names and reasons.

Codes used in the hot loop are plain ints (cheap to compare and to put in tuples); the
string names are what reaches output. Every name here is part of the output contract
(`docs/events.md`); renaming one changes every run's `order_events`.
"""

from __future__ import annotations

from typing import Final

# Sides. BUY/SELL are the only two; there is no "no side".
BUY: Final = 0
SELL: Final = 1
SIDE_NAMES: Final = ("buy", "sell")

# Order types.
LIMIT: Final = 0
MARKET: Final = 1
TYPE_NAMES: Final = ("limit", "market")

# Time in force. POST_ONLY is a tif in the `orders` contract.
GTC: Final = 0
IOC: Final = 1
FOK: Final = 2
POST_ONLY: Final = 3
TIF_NAMES: Final = ("gtc", "ioc", "fok", "post_only")

# Self-trade prevention, decided by the taker's setting, checked against each maker.
STP_NONE: Final = 0
STP_CANCEL_TAKER: Final = 1
STP_CANCEL_MAKER: Final = 2
STP_CANCEL_BOTH: Final = 3
STP_NAMES: Final = ("none", "cancel_taker", "cancel_maker", "cancel_both")

# Instruction actions.
NEW: Final = 0
CANCEL: Final = 1
AMEND: Final = 2
ACTION_NAMES: Final = ("new", "cancel", "amend")

# Record tags in the matcher's output stream (the first element of every record).
ACCEPTED: Final = "accepted"
REJECTED: Final = "rejected"
CANCELLED: Final = "cancelled"
EXPIRED: Final = "expired"
AMENDED: Final = "amended"
FILLED: Final = "filled"
FILL: Final = "fill"  # a fills row, not an order event
EVENT_NAMES: Final = (ACCEPTED, REJECTED, CANCELLED, EXPIRED, AMENDED, FILLED)

# Reasons. Validation family (rejected at the door):
R_UNKNOWN_SYMBOL: Final = "unknown_symbol"
R_INVALID_PRICE: Final = "invalid_price"  # limit without a positive price, market with one
R_OFF_TICK: Final = "off_tick"  # price not a multiple of the instrument's price step
R_INVALID_QTY: Final = "invalid_qty"  # qty not a positive whole number of the lot step
R_BELOW_MIN_QTY: Final = "below_min_qty"
R_DUPLICATE_ORDER_ID: Final = "duplicate_order_id"
R_INVALID_ORDER: Final = "invalid_order"  # a combination the venue does not offer
# Matching family:
R_WOULD_CROSS: Final = "would_cross"  # post-only that would take liquidity
R_UNKNOWN_ORDER: Final = "unknown_order"  # cancel/amend of an unknown or finished order
# Expiry family (event `expired`):
R_NO_LIQUIDITY: Final = "no_liquidity"  # market order on an empty side
R_IOC_REMAINDER: Final = "ioc_remainder"  # IOC or market remainder after matching
R_FOK_UNFILLABLE: Final = "fok_unfillable"  # FOK that cannot fill in full: nothing fills
# Cancel family (event `cancelled`):
R_USER: Final = "user"  # a cancel instruction or an amend to zero
R_SELF_TRADE: Final = "self_trade"  # self-trade prevention, taker or maker
R_LIQUIDATION: Final = "liquidation"  # clearing cancels a liquidated account's orders
R_REDUCE_ONLY: Final = "reduce_only"  # a resting reduce-only order the position no longer covers

REASONS: Final = (
    R_UNKNOWN_SYMBOL, R_INVALID_PRICE, R_OFF_TICK, R_INVALID_QTY, R_BELOW_MIN_QTY,
    R_DUPLICATE_ORDER_ID, R_INVALID_ORDER, R_WOULD_CROSS, R_UNKNOWN_ORDER, R_NO_LIQUIDITY,
    R_IOC_REMAINDER, R_FOK_UNFILLABLE, R_USER, R_SELF_TRADE, R_LIQUIDATION, R_REDUCE_ONLY,
)
