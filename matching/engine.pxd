# Compile-time types for matching/engine.py (Cython "augmenting .pxd"). The .py file stays
# the readable reference and runs unchanged without this file; keep the two in step.
cimport cython
from matching.book cimport Book, Level, Order, make_order

# The vocabulary of matching/types.py as C globals: the .py imports bind them once at
# module load, so the hot loop compares C ints instead of looking up module globals.
cdef int BUY, SELL, LIMIT, MARKET, GTC, FOK, POST_ONLY, NEW, CANCEL
cdef int STP_NONE, STP_CANCEL_TAKER, STP_CANCEL_MAKER
cdef str ACCEPTED, AMENDED, CANCELLED, EXPIRED, FILL, FILLED, REJECTED
cdef str R_BELOW_MIN_QTY, R_DUPLICATE_ORDER_ID, R_FOK_UNFILLABLE, R_INVALID_ORDER
cdef str R_INVALID_PRICE, R_INVALID_QTY, R_IOC_REMAINDER, R_NO_LIQUIDITY, R_OFF_TICK
cdef str R_SELF_TRADE, R_UNKNOWN_ORDER, R_UNKNOWN_SYMBOL, R_USER, R_WOULD_CROSS

@cython.final
cdef class Matcher:
    cdef public dict books
    cdef dict _specs
    cdef public dict orders
    cdef public list out
    cdef list _done

    @cython.locals(book=Book, crosses=cython.bint, remaining=cython.longlong, out=list, heap=list)
    cpdef new_order(self, object ts, str account, str symbol, object order_id, int side,
                    int order_type, int tif, object price, long long qty, int stp)
    @cython.locals(price_step=cython.long, qty_step=cython.long, min_qty=cython.long, spec=tuple)
    cpdef str door_check(self, str symbol, object order_id, int order_type, int tif, object price,
                         long long qty)
    @cython.locals(order=Order)
    cpdef cancel(self, object ts, str account, str symbol, object order_id, str reason=*)
    @cython.locals(book=Book, remaining=cython.longlong)
    cpdef long long take(self, object ts, str account, str symbol, object order_id, int side,
                         object limit, long long qty) except -1
    @cython.locals(order=Order, price_step=cython.long, qty_step=cython.long)
    cpdef str amend_check(self, str account, str symbol, object order_id, object price, object qty)
    @cython.locals(order=Order, book=Book, level=Level, crosses=cython.bint, out=list, heap=list)
    cpdef amend(self, object ts, str account, str symbol, object order_id, object price, object qty)
    @cython.locals(a=cython.int, i=Py_ssize_t)
    cpdef apply_columns(self, list ts, list action, list account, list symbol, list order_id,
                        list side, list order_type, list tif, list price, list qty, list stp)
    @cython.locals(order=Order)
    cdef _rest(self, Book book, object order_id, str account, int side, object price,
               long long qty, int stp, bint post_only)
    @cython.locals(level=Level, maker=Order, remaining=cython.longlong, maker_qty=cython.longlong,
                   fill=cython.longlong, sign=cython.int, maker_side=cython.int, taker_cancelled=cython.bint,
                   levels=dict, heap=list, done=list, index=dict, orders=dict, out=list)
    cdef long long _match(self, Book book, object ts, str account, str symbol, object order_id,
                          int side, object limit, long long qty, int stp) except -1
    @cython.locals(level=Level, maker=Order, need=cython.longlong)
    cdef bint _fillable(self, Book book, str account, int side, object limit, long long qty,
                        int stp) except -1
