# Compile-time types for clearing/liquidation.py (Cython "augmenting .pxd"). The .py file
# stays the readable reference and runs unchanged without this file; keep the two in step.
# The ADL ranking runs once per opposite holder at every mark that has an ADL: these are
# C calls from the replay (cimported in backtest/replay.pxd).
cimport cython
from clearing.money cimport div_ceil, div_floor

cpdef object bitmex_rank(object qty, object cost, object mark_notional, object share)
cpdef tuple binance_rank(object unrealised, object wallet, object maintenance, object equity,
                         object one_unit)
cpdef bint better(object a, object b) except -1
cpdef tuple _rank_key(tuple item)
@cython.locals(keyed=list, i=Py_ssize_t, j=Py_ssize_t, result=list, run=list, ranked=list)
cpdef list rank_order(list candidates)
