# Compile-time types for matching/book.py (Cython "augmenting .pxd"). The .py file stays
# the readable reference and runs unchanged without this file; keep the two in step.
cimport cython

cdef class Book
cdef class Level

@cython.final
cdef class Order:
    cdef public object order_id
    cdef public str account
    cdef public int side
    cdef public object price
    cdef public long long qty
    cdef public int stp
    cdef public bint post_only
    cdef public Book book
    cdef public Level level

@cython.locals(order=Order)
cpdef Order make_order(object order_id, str account, int side, object price, long long qty,
                       int stp, bint post_only, Book book)

@cython.final
cdef class Level:
    cdef public object price
    cdef public dict orders
    cdef public long long qty

@cython.final
cdef class Book:
    cdef public str symbol
    cdef public dict bids
    cdef public dict asks
    cdef public list bid_heap
    cdef public list ask_heap
    @cython.locals(heap=list)
    cpdef object best_bid(self)
    @cython.locals(heap=list)
    cpdef object best_ask(self)
    @cython.locals(levels=dict, level=Level)
    cpdef add_order(self, Order order)
    @cython.locals(level=Level)
    cpdef remove_order(self, Order order)
    @cython.locals(levels=dict, heap=list)
    cpdef remove_level(self, int side, object price)

cdef int BUY
