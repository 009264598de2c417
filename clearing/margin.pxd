# Compile-time types for clearing/margin.py (Cython "augmenting .pxd"). The .py file stays
# the readable reference and runs unchanged without this file; keep the two in step.
cimport cython
from clearing.money cimport div_ceil


@cython.final
cdef class MarginTiers:
    cdef readonly tuple floors
    cdef readonly tuple mmr
    cdef readonly tuple amounts
    cdef readonly tuple max_leverage
    cdef readonly tuple _fits
    cdef readonly long long first_below
    cdef readonly long long first_leverage

    cpdef object tier(self, object notional_minor)
    cpdef object maintenance(self, object notional_minor)
    cpdef object initial(self, object notional_minor)
    @cython.locals(t=Py_ssize_t)
    cpdef tuple both(self, object notional_minor)


# Every argument and product in C: callers guarantee they fit (MarginTiers._fits).
cpdef tuple _both_fitting(long long notional, long long mmr, long long amount, long long leverage,
                          long long scale)
