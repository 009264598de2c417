# Compile-time types for clearing/money.py (Cython "augmenting .pxd"). The .py file stays
# the readable reference and runs unchanged without this file; keep the two in step.
# cpdef: the compiled modules that cimport these call them in C, without a Python call;
# Python callers see the same functions. (SCALE stays a Python global: the uncompiled
# modules import it.)

cimport cython

cpdef object div_floor(object a, object b)
cpdef object div_ceil(object a, object b)
cpdef object notional(object price_ticks, object qty_lots, object k)
cpdef object fee(object notional_minor, object rate)
cpdef object _fee_exact(object notional_minor, object rate)
# Every argument in C: an argument past 64 bits raises OverflowError on the way in (fee
# falls back to _fee_exact); the signs and the product are checked against top inside.
cpdef object _fee_int64(long long notional_minor, long long rate, long long scale, long long top)
cpdef tuple funding_amounts_over(object qty_lots, object mark_ticks, object k, object rate_num_abs,
                                 object per)
cpdef object funding_lots_fitting(object mark_ticks, object k, object rate_num_abs, object per)
# Every argument and product in C: callers guarantee they fit (funding_lots_fitting).
@cython.locals(exact=cython.longlong)
cpdef long long funding_payment_fitting(long long qty_lots, long long unit, long long per, bint pays) except? -1
