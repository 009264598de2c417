# Compile-time types for backtest/replay.py (Cython "augmenting .pxd"). The .py file stays
# the readable reference and runs unchanged without this file (PURE_PYTHON=1); keep the two
# in step: every attribute the .py sets on a Replay must be declared here, or the compiled
# class raises AttributeError.
#
# Why: as a Python class every `self.x` is a dict lookup and every `self._m(...)` a bound
# method call; as a final extension type they are a struct field and a C call. The replay
# makes dozens of each per instruction (the pre-trade check, the margin check after fills).
# Resting orders stay untyped: a market-data replay's are matching.market.MarketOrder.
cimport cython
from clearing.money cimport div_ceil, fee
from clearing.positions cimport Position
from clearing.watch cimport MarginWatch
from clearing.settlement cimport Clearing, SymbolSpec, is_exchange_account
from clearing.pretrade cimport ceil_notional, check_order_parts, headroom, notional_margin, order_requirement
from clearing.margin cimport MarginTiers
from clearing.liquidation cimport better, binance_rank, bitmex_rank, rank_order



@cython.locals(pos=Position)
cpdef bint _adl_candidate(dict holders, str account, bint long_parcel) except -1
cpdef bint _opposes(Position pos, str account, bint long_parcel) except -1


@cython.final
cdef class Replay:
    cdef public object matcher
    cdef public bint market_mode
    cdef public Clearing clearing
    cdef public MarginWatch watch
    cdef public list out
    cdef public long long seq
    cdef public list events
    cdef public Py_ssize_t _next
    cdef public object _market
    cdef public tuple _mk
    cdef public Py_ssize_t _mk_i
    cdef public object _mk_ts
    cdef public long long market_rows
    cdef public set _held
    cdef public object _market_batch
    cdef public object _next_ts
    cdef public dict open_orders
    cdef public dict _reduce_only
    cdef public dict _bound
    cdef public dict _bound_total
    cdef public dict _figures
    cdef public long long _figures_version
    cdef public Py_ssize_t _figures_seen
    cdef public dict _min_leverage
    cdef public tuple _taker_rates
    cdef public dict called
    cdef public dict deposits
    cdef public dict withdrawals
    cdef public long long funding_skipped
    cdef public long long instructions
    cdef public long long margin_checks
    cdef public object liquidation
    cdef public list _settle_assets
    cdef public dict _liq_orders
    cdef public long long _next_order_id
    cdef public long long _next_liquidation_id
    cdef public dict trigger_seq
    cdef public list legs
    cdef public long long _mark_version
    cdef public dict _adl_cache
    cdef public bint _use_adl_cache
    cdef public long long liquidated
    cdef public long long depth_every_ns
    cdef public long long depth_band_bps
    cdef public list depth
    cdef public dict _depth_due
    cdef public dict interest_rates
    cdef public object conversion_spread

    @cython.locals(i=Py_ssize_t, n0=Py_ssize_t, out=list)
    cpdef orders(self, tuple cols)
    cpdef until(self, object ts)
    @cython.locals(out=list, n1=Py_ssize_t, j=Py_ssize_t, r=tuple, kind=str, seq=cython.longlong,
                   c=Clearing)
    cpdef object _clear_fills(self, object ts, Py_ssize_t n0)
    @cython.locals(c=Clearing, spec=SymbolSpec, multi=cython.bint)
    cpdef object _pretrade(self, str account, str symbol, int side, object price, object qty,
                           object reduce_only)
    @cython.locals(changed=list, cache=dict, seen=Py_ssize_t, end=Py_ssize_t)
    cpdef dict _current_figures(self)
    @cython.locals(cache=dict, pools=dict)
    cpdef tuple _pool_figures(self, str account, str asset)
    @cython.locals(resting=dict, live=list)
    cpdef object _reduce_only_qty(self, str account, str symbol, int side)
    cpdef object _open_orders_fit(self, str account, str pool, object free, object own)
    @cython.locals(c=Clearing, spec=SymbolSpec)
    cpdef object _amend_margin(self, str account, str symbol, object oid, object price, object qty)
    @cython.locals(aggregate=dict, cached=tuple)
    cpdef object _orders_margin_bound(self, str account, str asset)
    @cython.locals(c=Clearing, spec=SymbolSpec, symbols=dict, marks=dict, min_leverage=dict,
                   multi=cython.bint, entry=tuple)
    cpdef object _orders_margin_bound_of(self, str account, str asset, dict aggregate)
    @cython.locals(aggregate=dict, entry=tuple)
    cpdef _bound_add(self, str account, str symbol, object qty, object price)
    @cython.locals(resting=dict)
    cpdef list _resting_of(self, str account, list ids)
    @cython.locals(ids=list, aggregate=dict, resting=dict, live=list, spec=SymbolSpec,
                   symbols=dict, marks=dict, entry=tuple)
    cpdef object _orders_margin(self, str account, str asset)
    @cython.locals(c=Clearing, held=dict)
    cpdef _cover_deficit(self, object ts, str account)
    @cython.locals(symbols=dict)
    cpdef bint _holds_in(self, dict held, str asset) except -1
    cpdef _mark(self, object ts, str symbol, object mark)
    @cython.locals(out=list, pending=list, touched=set, due=list, pools=dict, watch=MarginWatch)
    cpdef _check(self, object ts, object accounts, str trigger)
    cpdef _funding(self, object ts, str symbol, object rate, str source)
    @cython.locals(c=Clearing, held=dict, pos=Position, spec=SymbolSpec, multi=cython.bint,
                   converts=cython.bint, single=cython.bint)
    cpdef object _rank(self, str account, str asset, str symbol)
    @cython.locals(c=Clearing, holders=dict, balances=object, multi=set, positions=dict, simple=cython.bint,
                   keys=list, pos=Position)
    cpdef list _approximate(self, str symbol, str asset, bint long_parcel)
    @cython.locals(approx=list, order=list, stale=dict, n0=Py_ssize_t, cluster=list, first=tuple,
                   last=cython.double, x=cython.double)
    cpdef bint _grow(self, object state, str asset, str symbol) except -1
    @cython.locals(order=list, stale=dict)
    cpdef Py_ssize_t _past_stale(self, object state, Py_ssize_t i, str asset, str symbol) except -1
