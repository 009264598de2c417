# Compile-time types for clearing/ledger.py (Cython "augmenting .pxd"). The .py file stays
# the readable reference and runs unchanged without this file; keep the two in step.
cimport cython


@cython.final
cdef class Ledger:
    cdef public object balances
    cdef public list out
    cdef public object external
    cdef public list changed

    cpdef post(self, object ts, str account, str asset, object amount, str kind, str reference)
    cpdef object balance(self, str account, str asset)
    cpdef transfer(self, object ts, str payer, str payee, str asset, object amount, str kind,
                   str reference)
