# Compile-time types for clearing/watch.py (Cython "augmenting .pxd"). The .py file stays
# the readable reference and runs unchanged without this file; keep the two in step.
cimport cython
from clearing.settlement cimport Clearing, SymbolSpec, is_exchange_account
from clearing.positions cimport Position


@cython.final
cdef class MarginWatch:
    cdef public Clearing clearing
    cdef public dict low
    cdef public dict high
    cdef public dict version
    cdef public object last
    cdef public dict _per_lot_tick

    @cython.locals(c=Clearing, held=dict, due=list, last=list, multi=cython.bint, spec=SymbolSpec)
    cpdef list check(self, str account)
    # n stays a Python int: n x |qty| x K x (1e8 + mmr_max) must not overflow.
    @cython.locals(c=Clearing, pos=Position, low=list, high=list)
    cpdef _check_pool(self, str account, object version, dict held, str asset, list symbols, bint multi,
                      list due, list last)
    @cython.locals(version=dict, holders=dict, found=set, low=list, high=list)
    cpdef list leaving(self, str symbol, object mark)
    @cython.locals(version=dict, holders=dict, heap=list)
    cpdef _rebuild(self, str symbol)
