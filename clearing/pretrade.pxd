# Compile-time types for clearing/pretrade.py (Cython "augmenting .pxd"). The .py file
# stays the readable reference and runs unchanged without this file; keep the two in step.
cimport cython
from clearing.margin cimport MarginTiers
from clearing.money cimport fee

cpdef object order_price(object limit, object mark)
cpdef object check_order_parts(object qty_signed, object limit, bint reduce_only, object position_qty,
                               object equity, object initial_in_use, object mark, object k,
                               MarginTiers tiers, object taker_rate, object rate)
cpdef object order_requirement(object qty_signed, object limit, object mark, object k,
                               MarginTiers tiers, object taker_rate, object rate)

cdef long long _WORD, _INT64_MAX, _MONEY
@cython.locals(v=cython.longlong)
cpdef long long small_int(object x) except? -1
@cython.locals(e=cython.longlong, f=cython.longlong, u=cython.longlong, m=cython.longlong)
cpdef object headroom(object equity, object taker_fee, object in_use, object initial)
@cython.locals(p=cython.longlong, q=cython.longlong, kk=cython.longlong, n=cython.longlong)
cpdef long long small_notional(object price, object qty, object k) except? -1
@cython.locals(n=cython.longlong)
cpdef object notional_margin(object price, object qty, object k, MarginTiers tiers)
@cython.locals(n=cython.longlong, d=cython.longlong)
cpdef object ceil_notional(object price, object qty, object k, object divisor)
@cython.locals(n=cython.longlong)
cpdef tuple small_requirement(object price, object qty, object k, MarginTiers tiers, object taker_rate)
