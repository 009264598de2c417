# Compile-time types for clearing/settlement.py (Cython "augmenting .pxd"). The .py file
# stays the readable reference and runs unchanged without this file; keep the two in step:
# every attribute the .py sets on a Clearing must be declared here.
cimport cython
from clearing.ledger cimport Ledger
from clearing.margin cimport MarginTiers
from clearing.money cimport (div_ceil, fee, funding_amounts_over, funding_lots_fitting,
                             funding_payment_fitting, notional)
from clearing.positions cimport Position, apply_fill


@cython.final
cdef class SymbolSpec:
    cdef readonly str settle
    cdef readonly object k
    cdef readonly MarginTiers tiers
    cdef readonly str kind


@cython.final
cdef class Clearing:
    cdef public dict symbols
    cdef public object fee_schedule
    cdef public Ledger ledger
    cdef public dict fee_tier
    cdef public dict positions
    cdef public dict holders
    cdef public dict marks
    cdef public dict opening_cost
    cdef public list parcels
    cdef public dict live_parcels
    cdef public dict funding_withheld
    cdef public set multi
    cdef public object collateral
    cdef public str valuation
    cdef public dict asset_prices
    cdef public dict accrued
    cdef public list out

    cpdef object position(self, str account, str symbol)
    @cython.locals(spec=SymbolSpec, schedule=tuple)
    cpdef tuple settle_fill(self, object ts, str symbol, object price, object qty, bint taker_side_buy,
                            str taker, str maker, str reference)
    @cython.locals(ledger=Ledger)
    cpdef _clear_side(self, object ts, str account, str symbol, object lots, object n, object paid,
                      str settle, str reference)
    @cython.locals(held=dict)
    cpdef Position _open(self, str account, str symbol)
    @cython.locals(held=dict, pos=Position)
    cpdef object _apply(self, str account, str symbol, object lots, object n)
    @cython.locals(holders=dict, accounts=list, spec=SymbolSpec, out=list, ledger=Ledger, pos=Position,
                   qty=cython.longlong, fits=cython.longlong, longs_pay=cython.bint)
    cpdef list settle_funding(self, object ts, str symbol, object mark, object rate, str reference,
                              str source=*, object fund_floor=*)
    cpdef fund_post(self, object ts, str asset, object amount, str kind, str reference, str cause,
                    object liquidation_id)
    cpdef fund_record(self, object ts, str asset, object change, str cause, object liquidation_id)
    @cython.locals(spec=SymbolSpec, long_parcel=cython.bint)
    cpdef object settle_parcel_fill(self, object ts, object parcel, object price, object qty, str maker,
                                    str reference)
    cpdef _forget_if_closed(self, object parcel)
    cpdef str pool_asset(self, str account, str symbol)
    cpdef object pool_rate(self, str account, str symbol)
    @cython.locals(multi=cython.bint, symbols=dict, marks=dict, held=dict, spec=SymbolSpec,
                   pos=Position, tiers=MarginTiers)
    cpdef tuple pool_figures(self, str account, str asset)


cpdef bint is_exchange_account(str account) except -1
# qty and fits in C: a position's qty is a C long long (Position), and fits is at most 2^63-1.
cpdef object _funding_amount(long long qty, bint pays, object mark, object k, object num_abs, object per,
                             object unit, long long fits)
