# Compile-time types for backtest/split.py (Cython "augmenting .pxd"). The .py file stays
# the readable reference and runs unchanged without this file; keep the two in step.
cimport cython


@cython.locals(n=Py_ssize_t, i=Py_ssize_t, g=int, gv=cython.schar[::1], sv=cython.longlong[::1],
               r=tuple, lists=list)
cpdef tuple split_records(list records, dict codes, int groups, int fill_code, long long seq)
