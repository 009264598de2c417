# Compile-time types for clearing/positions.py (Cython "augmenting .pxd"). The .py file
# stays the readable reference and runs unchanged without this file; keep the two in step.
cimport cython
from clearing.money cimport div_ceil, div_floor


@cython.final
cdef class Position:
    cdef public long long qty
    cdef public object cost

    cpdef object signed_cost(self)
    @cython.locals(at_mark=object)
    cpdef object unrealised(self, object mark_ticks, object k)


@cython.locals(held=cython.longlong, traded=cython.longlong, closing=cython.longlong,
               long_before=cython.bint)
cpdef object apply_fill(Position pos, long long qty_signed, object fill_notional)
