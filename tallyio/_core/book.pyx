# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, binding=False
"""PoolBook: the engine's one pool state; ArbitrageScreen and SandwichScreen: strategies' C loops.

``PoolBook`` holds the reserves of known Uniswap V2 pools (and the balances of Balancer V1 pools)
as u256 words and applies each batch's pending swaps once, in order, with the exact
``getAmountOut`` of ``tallyio/amm.h`` (the pool's own fee; a Balancer pool's ``calcOutGivenIn``),
without the GIL. What each row did is its **outcome** (``OUTCOME_DTYPE``): the pool, a
status, the direction, the amount out and the pool's reserves before and after. Strategies read
the outcome instead of keeping their own books.

The screens run a strategy's per-swap search over a whole batch in C, from the outcome alone:
``ArbitrageScreen`` (the fee-band test against every sibling pool, then the exact optimum for the
pairs outside the band; Uniswap V2 <-> Balancer V1 routes by an integer search) and
``SandwichScreen`` (the exact largest front-run each victim allows and its profit). Python sees only what they find.
"""
cimport cython
from libc.stdint cimport int8_t, int32_t, int64_t, uint8_t, uint32_t, uint64_t
from libc.stdlib cimport calloc, free, malloc, realloc
from libc.string cimport memcmp, memcpy, memset
cimport numpy as cnp

import os
from collections.abc import Mapping

import numpy as np

from tallyio._core.amm cimport (
    TIO_AMM_OK, TIO_AMM_OVERFLOW, tio_amm_best_cross_pool, tio_amm_best_sandwich, tio_amm_cross,
    tio_amm_out_u256, tio_amm_sandwich, tio_u256, tio_u256_add, tio_u256_cmp,
    tio_u256_from_u64, tio_u256_is_zero, tio_u256_mul, tio_u256_mul_full, tio_u256_sub, tio_u512,
    tio_u512_divmod, tio_amm_get_amount_out, tio_u256_divmod, tio_bal_out_given_in,
    tio_u256_shr, TIO_AMM_NONE)
from tallyio._core.cache cimport StateCache

from tallyio.record import (FLAG_PENDING, PROTOCOL_BALANCER_V1, PROTOCOL_UNISWAP_V2, TX_DTYPE,
                            address_hex, address_key)

cnp.import_array()

# The limb helpers of u256.h that amm.pxd leaves out: the fee-band test compares 512-bit cross
# products scaled by 64-bit fee products.
cdef extern from "tallyio/u256.h" nogil:
    int tio_limbs_len(const uint64_t *a, int n) noexcept
    int tio_limbs_cmp(const uint64_t *a, int an, const uint64_t *b, int bn) noexcept
    uint64_t tio_limbs_mul1(uint64_t *r, const uint64_t *a, int n, uint64_t m) noexcept
    void tio_limbs_mul(uint64_t *r, const uint64_t *a, int an, const uint64_t *b, int bn) noexcept
    uint64_t tio_mul64(uint64_t a, uint64_t b, uint64_t *hi) noexcept

# BNum.bmul of amm.h: a BPool's MAX_IN_RATIO bound is bmul(balance_in, BONE / 2).
cdef extern from "tallyio/amm.h" nogil:
    int tio_bal_bmul(tio_u256 *r, const tio_u256 *a, const tio_u256 *b) noexcept

# Batches smaller than this keep the GIL: releasing and re-taking it costs more than the work,
# and a re-take can wait a whole switch interval behind another thread.
cdef enum:
    NOGIL_MIN = 64

STATUS_APPLIED = TIO_BOOK_APPLIED
STATUS_REVERTED_SLIPPAGE = TIO_BOOK_REVERTED_SLIPPAGE
STATUS_REVERTED_ZERO = TIO_BOOK_REVERTED_ZERO
STATUS_REVERTED_OVERFLOW = TIO_BOOK_REVERTED_OVERFLOW
STATUS_NOT_PENDING = TIO_BOOK_NOT_PENDING
STATUS_NOT_V2 = TIO_BOOK_NOT_V2
STATUS_UNKNOWN_POOL = TIO_BOOK_UNKNOWN_POOL
STATUS_TOKEN_MISMATCH = TIO_BOOK_TOKEN_MISMATCH
#: ``STATUS_NAMES[status]``: the key of ``PoolBook.stats()`` for that status.
STATUS_NAMES = ("applied", "reverted_slippage", "reverted_zero", "reverted_overflow",
                "not_pending", "not_v2", "unknown_pool", "token_mismatch")

_U256 = (np.uint64, 4)
OUTCOME_DTYPE = np.dtype([
    ("pool", np.int32), ("status", np.uint8), ("zero_for_one", np.uint8),
    ("amount_out", _U256), ("reserve0_before", _U256), ("reserve1_before", _U256),
    ("reserve0_after", _U256), ("reserve1_after", _U256),
], align=True)

#: What ``ArbitrageScreen`` finds: one row per reported trade (see its docstring).
ARBITRAGE_DTYPE = np.dtype([
    ("row", np.int64), ("pool_a", np.int32), ("pool_b", np.int32),
    ("profit_token0", np.uint8), ("optimal", np.uint8),
    ("amount_in", _U256), ("amount_mid", _U256), ("amount_out", _U256),
    ("gross_profit", _U256), ("gas_cost", _U256),
], align=True)

#: What ``SandwichScreen`` finds: one row per victim worth sandwiching (see its docstring).
SANDWICH_DTYPE = np.dtype([
    ("row", np.int64), ("pool", np.int32), ("zero_for_one", np.uint8), ("bound", np.uint8),
    ("front_in", _U256), ("front_out", _U256), ("victim_out", _U256), ("back_out", _U256),
    ("gross_profit", _U256), ("gas_cost", _U256),
], align=True)

ctypedef struct tio_arb_found:
    int64_t row
    int32_t pool_a
    int32_t pool_b
    uint8_t profit_token0
    uint8_t optimal
    tio_u256 amount_in
    tio_u256 amount_mid
    tio_u256 amount_out
    tio_u256 gross_profit
    tio_u256 gas_cost

ctypedef struct tio_sw_found:
    int64_t row
    int32_t pool
    uint8_t zero_for_one
    uint8_t bound
    tio_u256 front_in
    tio_u256 front_out
    tio_u256 victim_out
    tio_u256 back_out
    tio_u256 gross_profit
    tio_u256 gas_cost


# The arbitrage screen's view of one pool during a call: its reserves as of the row being
# screened (pointers into the outcome or the book) and their doubles, each valid for the call
# whose epoch it carries, so a call touches only the pools its rows touch, not the whole book.
ctypedef struct tio_screen_pool:
    tio_u256 *r0
    tio_u256 *r1
    double f0
    double f1
    uint64_t stamp   # r0/r1 set this call (else: the book's current reserves)
    uint64_t fstamp  # f0/f1 computed from r0/r1 this call

cdef tio_book_outcome _o
cdef tio_arb_found _a
cdef tio_sw_found _s


def _check_layout(dt, size, offsets):
    """The numpy dtype must be the C struct, field for field (a mismatch would corrupt rows)."""
    if dt.itemsize != size or [dt.fields[k][1] for k in dt.names] != offsets:
        raise ImportError(f"tallyio._core.book: {dt} does not match its C struct "
                          f"({size} bytes, offsets {offsets})")


_check_layout(OUTCOME_DTYPE, sizeof(tio_book_outcome), [
    0, <char *>&_o.status - <char *>&_o, <char *>&_o.zero_for_one - <char *>&_o,
    <char *>&_o.amount_out - <char *>&_o, <char *>&_o.reserve0_before - <char *>&_o,
    <char *>&_o.reserve1_before - <char *>&_o, <char *>&_o.reserve0_after - <char *>&_o,
    <char *>&_o.reserve1_after - <char *>&_o])
_check_layout(ARBITRAGE_DTYPE, sizeof(tio_arb_found), [
    0, <char *>&_a.pool_a - <char *>&_a, <char *>&_a.pool_b - <char *>&_a,
    <char *>&_a.profit_token0 - <char *>&_a, <char *>&_a.optimal - <char *>&_a,
    <char *>&_a.amount_in - <char *>&_a, <char *>&_a.amount_mid - <char *>&_a,
    <char *>&_a.amount_out - <char *>&_a, <char *>&_a.gross_profit - <char *>&_a,
    <char *>&_a.gas_cost - <char *>&_a])
_check_layout(SANDWICH_DTYPE, sizeof(tio_sw_found), [
    0, <char *>&_s.pool - <char *>&_s, <char *>&_s.zero_for_one - <char *>&_s,
    <char *>&_s.bound - <char *>&_s, <char *>&_s.front_in - <char *>&_s,
    <char *>&_s.front_out - <char *>&_s, <char *>&_s.victim_out - <char *>&_s,
    <char *>&_s.back_out - <char *>&_s, <char *>&_s.gross_profit - <char *>&_s,
    <char *>&_s.gas_cost - <char *>&_s])


# Byte offsets of the TX_DTYPE fields the kernels read, checked against their types once.
def _tx_offset(name, base, shape=()):
    dt, off = TX_DTYPE.fields[name][:2]
    if dt.base != np.dtype(base) or dt.shape != shape:
        raise ImportError(f"tallyio._core.book: TX_DTYPE[{name!r}] is {dt}, expected {base} {shape}")
    return off


cdef Py_ssize_t O_ID = _tx_offset("id", np.uint64)
cdef Py_ssize_t O_GAS = _tx_offset("gas_price", np.uint64)
cdef Py_ssize_t O_POOL_KEY = _tx_offset("pool_key", np.uint64)
cdef Py_ssize_t O_TIN_KEY = _tx_offset("token_in_key", np.uint64)
cdef Py_ssize_t O_AIN = _tx_offset("amount_in", np.uint64, (4,))
cdef Py_ssize_t O_AMIN = _tx_offset("amount_out_min", np.uint64, (4,))
cdef Py_ssize_t O_PROTO = _tx_offset("protocol", np.uint8)
cdef Py_ssize_t O_FLAGS = _tx_offset("flags", np.uint8)
cdef Py_ssize_t O_POOL = _tx_offset("pool", np.uint8, (20,))
cdef uint8_t V2 = PROTOCOL_UNISWAP_V2
cdef uint8_t BAL = PROTOCOL_BALANCER_V1
cdef uint8_t PENDING = FLAG_PENDING

DEFAULT_FEE_NUM = 997  # Uniswap V2 keeps 0.3% of every input
DEFAULT_FEE_DEN = 1000
POOL_KEYS = ("pool_address", "pool_token0", "pool_token1", "pool_reserve0", "pool_reserve1")
#: Optional columns of Balancer V1 pools (see ``PoolBook``).
BALANCER_KEYS = ("pool_protocol", "pool_weight0", "pool_weight1", "pool_swap_fee")
BALANCER_BONE = 10**18
_TOKEN_KEYS = ("token_address", "token_price_num", "token_price_den")
cdef double TWO64 = 18446744073709551616.0
cdef tio_u256 U256_ZERO
memset(&U256_ZERO, 0, sizeof(tio_u256))


cdef object _rows_arg(object rows, str what):
    """``rows`` as an aligned 1-D TX_DTYPE array (a misaligned view is copied once)."""
    if not isinstance(rows, np.ndarray) or rows.dtype != TX_DTYPE:
        raise TypeError(f"{what} must be a numpy array of TX_DTYPE, got "
                        f"{getattr(rows, 'dtype', type(rows).__name__)}")
    if rows.ndim != 1:
        raise ValueError(f"{what} must be 1-D, got shape {rows.shape}")
    if not rows.flags.aligned:
        rows = rows.copy()
    return rows


def load_table(pools):
    """The pools table from a ``Market``-like object (``to_arrays()``), a mapping, or an .npz path.

    Raises ``ValueError`` for a path that is not a file and ``TypeError`` for anything else.
    """
    if hasattr(pools, "to_arrays"):
        return pools.to_arrays()
    if isinstance(pools, (str, os.PathLike)):
        if not os.path.isfile(pools):
            raise ValueError(f"pools must name an existing .npz file, got {str(pools)!r}")
        with np.load(pools, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    if isinstance(pools, Mapping):
        return pools
    raise TypeError(f"pools must be a Market, a mapping of arrays or a path to an .npz, got {pools!r}")


def _addresses(table, key, n=None):
    a = np.asarray(table[key])
    if a.dtype != np.uint8 or a.ndim != 2 or a.shape[1] != 20:
        raise ValueError(f"pools table {key} must be (n, 20) uint8, got {a.dtype} {a.shape}")
    return np.ascontiguousarray(a)


def _words(table, key):
    a = np.asarray(table[key])
    if a.dtype.kind not in "iu" or a.ndim != 2 or a.shape[1] != 4:
        raise ValueError(f"pools table {key} must be (n, 4) uint64 words, got {a.dtype} {a.shape}")
    if a.dtype.kind == "i" and (a < 0).any():
        raise ValueError(f"pools table {key} has negative words")
    return np.ascontiguousarray(a, dtype=np.uint64)


def _fees(table, key, n, default):
    if key not in table:
        return np.full(n, default, dtype=np.uint32)
    a = np.asarray(table[key])
    if a.dtype.kind not in "iu" or a.shape != (n,):
        raise ValueError(f"pools table {key} must be ({n},) integers, got {a.dtype} {a.shape}")
    if ((a < 0) | (a >= 2**32)).any():
        raise ValueError(f"pools table {key} must be in [0, 2**32)")
    return a.astype(np.uint32)


def _balancer_columns(table, n, names):
    """``(protocol, weight0, weight1, swap_fee)`` of every pool: Uniswap V2 (zeros) unless the
    table's ``pool_protocol`` says Balancer V1, whose weights must be positive and fee below
    BONE (10**18)."""
    if "pool_protocol" not in table:
        extra = [k for k in BALANCER_KEYS[1:] if k in table]
        if extra:
            raise ValueError(f"pools table has {', '.join(extra)} but no pool_protocol")
        return np.full(n, V2, np.uint8), None, None, None
    proto = np.asarray(table["pool_protocol"])
    if proto.dtype.kind not in "iu" or proto.shape != (n,):
        raise ValueError(f"pools table pool_protocol must be ({n},) integers, got "
                         f"{proto.dtype} {proto.shape}")
    bad = np.flatnonzero((proto != V2) & (proto != BAL))
    if len(bad):
        i = int(bad[0])
        raise ValueError(f"pool {names[i]} (row {i}) has pool_protocol {int(proto[i])}; the book "
                         f"holds {V2} (Uniswap V2) and {BAL} (Balancer V1)")
    proto = proto.astype(np.uint8)
    cols = {}
    for key in BALANCER_KEYS[1:]:
        if key not in table:
            if (proto == BAL).any():
                raise ValueError(f"pools table has Balancer V1 pools but no {key}")
            cols[key] = np.zeros((n, 4), np.uint64)
            continue
        w = _words(table, key)
        if len(w) != n:
            raise ValueError(f"pools table {key} has {len(w)} rows, pool_address {n}")
        cols[key] = w.copy()
    for i in np.flatnonzero(proto == BAL).tolist():
        where = f"Balancer V1 pool {names[i]} (row {i})"
        w0, w1 = _int(cols["pool_weight0"][i]), _int(cols["pool_weight1"][i])
        fee = _int(cols["pool_swap_fee"][i])
        if w0 == 0 or w1 == 0:
            raise ValueError(f"{where} has a zero weight ({w0}, {w1})")
        if fee >= BALANCER_BONE:
            raise ValueError(f"{where} has swap fee {fee}; need pool_swap_fee < 10**18")
    return proto, cols["pool_weight0"], cols["pool_weight1"], cols["pool_swap_fee"]


def _int(words):
    w = [int(x) for x in words]
    return w[0] | (w[1] << 64) | (w[2] << 128) | (w[3] << 192)


def status_counts(outcome):
    """Rows per status of an outcome array, as a list indexed by ``STATUS_*`` (a C loop: numpy's
    bincount would first copy the strided status column)."""
    if not isinstance(outcome, np.ndarray) or outcome.dtype != OUTCOME_DTYPE or outcome.ndim != 1:
        raise TypeError(f"outcome must be a 1-D array of OUTCOME_DTYPE, got "
                        f"{getattr(outcome, 'dtype', type(outcome).__name__)}")
    cdef uint64_t counts[8]
    cdef Py_ssize_t n = outcome.shape[0], stride = outcome.strides[0], r
    cdef const char *data = <const char *>cnp.PyArray_DATA(outcome)
    cdef uint8_t st
    memset(counts, 0, sizeof(counts))
    for r in range(n):
        st = (<const tio_book_outcome *>(data + r * stride)).status
        if st < TIO_BOOK_NSTATUS:
            counts[st] += 1
    return [counts[k] for k in range(TIO_BOOK_NSTATUS)]


cdef uint8_t _bal_swap(tio_u256 *aout, const tio_u256 *ain, const tio_u256 *amin,
                      const tio_u256 *rin, const tio_u256 *rout, const tio_u256 *win,
                      const tio_u256 *wout, const tio_u256 *fee) noexcept nogil:
    """A BPool's ``swapExactAmountIn`` on balances ``rin``/``rout`` (not written): its status,
    ``aout`` set when applied. The pool's own checks, in its order: MAX_IN_RATIO (an input above
    half the balance in) and its BMath reverting are ``REVERTED_OVERFLOW``, a zero output
    (``spotPriceBefore <= bdiv(in, out)`` divides by it) ``REVERTED_ZERO``, ``minAmountOut``
    ``REVERTED_SLIPPAGE``. ``maxPrice`` is not in the record and is not checked."""
    cdef tio_u256 half, max_in, t
    tio_u256_from_u64(&half, 500000000000000000)  # MAX_IN_RATIO = BONE / 2
    if tio_bal_bmul(&max_in, rin, &half) or tio_u256_cmp(ain, &max_in) > 0:
        return TIO_BOOK_REVERTED_OVERFLOW
    if tio_bal_out_given_in(aout, rin, win, rout, wout, ain, fee) != TIO_AMM_OK:
        return TIO_BOOK_REVERTED_OVERFLOW
    if tio_u256_is_zero(aout):
        return TIO_BOOK_REVERTED_ZERO
    if tio_u256_cmp(aout, amin) < 0:
        return TIO_BOOK_REVERTED_SLIPPAGE
    if tio_u256_cmp(aout, rout) >= 0 or tio_u256_add(&t, rin, ain):
        return TIO_BOOK_REVERTED_OVERFLOW
    return TIO_BOOK_APPLIED


@cython.final
cdef class PoolBook:
    """PoolBook(table)

    The reserves of a set of Uniswap V2 pools, exact (u256), updated by ``apply``.

    ``table`` is a mapping of arrays, the **pools table** of the synthetic feeds:
    ``pool_address``, ``pool_token0``, ``pool_token1`` (``(n, 20)`` uint8), ``pool_reserve0``,
    ``pool_reserve1`` (``(n, 4)`` uint64 words), optional ``pool_fee_num`` / ``pool_fee_den``
    (``(n,)`` integers; default 997/1000, each pool needs ``0 < num < den < 2**32``) and optional
    ``token_address`` / ``token_price_num`` / ``token_price_den`` (kept in ``token_table`` for
    pricing).

    **Balancer V1 pools**: optional ``pool_protocol`` (``(n,)``: ``PROTOCOL_UNISWAP_V2``, the
    default, or ``PROTOCOL_BALANCER_V1``) with ``pool_weight0`` / ``pool_weight1`` (the
    denormalized weights of token0 / token1) and ``pool_swap_fee`` (``(n, 4)`` words, 18-decimal
    fixed point, ``0 < weight``, ``fee < 10**18``; zeros on V2 rows). A Balancer row's reserves
    are the pool's balances of the two tokens; a BPool of more tokens enters as the pair it is
    traded in (its other balances do not enter its two-token math). ``apply`` applies pending
    rows of protocol ``PROTOCOL_BALANCER_V1`` on them as ``swapExactAmountIn`` (the pool's
    ``calcOutGivenIn``, exact).

    Raises ``ValueError`` naming the pool for a duplicate address (or 64-bit pool key),
    ``token0 == token1``, a zero reserve, a bad fee or Balancer weight or fee, and naming the
    columns when they differ in length. ``PoolBook.from_source`` also takes a ``Market`` or an
    .npz path.

    Uniswap V2 pools of the same token pair are **siblings** (``siblings(i)``, in table order);
    the pair's pools on the other protocol are **cross siblings** (``cross_siblings(i)``). Rows
    find their pool through the compiled ``StateCache`` (64-bit ``pool_key``, then the 20-byte
    address).

    Thread safety: one ``apply`` at a time and no screen while it runs; a call that would overlap
    raises ``RuntimeError`` instead of reading half-applied reserves. The engine calls everything
    from its one engine thread.
    """

    def __cinit__(self, *args, **kwargs):
        # An empty book, whatever __init__ later does: PoolBook.__new__(PoolBook) is usable.
        self._set_arrays(np.zeros((0, 20), np.uint8), np.zeros((0, 20), np.uint8),
                         np.zeros((0, 20), np.uint8), np.zeros((0, 4), np.uint64),
                         np.zeros((0, 4), np.uint64), np.zeros(0, np.uint32),
                         np.zeros(0, np.uint32), np.zeros(1, np.int32), np.zeros(0, np.int32))
        self._set_balancer(np.zeros(0, np.uint8), None, None, None, np.zeros(1, np.int32),
                           np.zeros(0, np.int32))
        self._index = StateCache(1)
        self._outcome = np.empty(0, OUTCOME_DTYPE)
        self._outcome.flags.writeable = False
        self._ids = np.empty(0, np.uint64)
        self.token_table = {}
        memset(self.counts, 0, sizeof(self.counts))
        self._readers = 0
        self._writer = False
        self._loaded = False

    def __init__(self, table):
        if self._loaded:
            # screens hold per-pool state sized for this table: a book never changes its pools
            raise TypeError("PoolBook is already initialised; build a new one for another table")
        if not isinstance(table, Mapping):
            raise TypeError(f"table must be a mapping of arrays (PoolBook.from_source takes a "
                            f"Market or an .npz path), got {type(table).__name__}")
        self._load(table)

    @classmethod
    def from_source(cls, pools):
        """A book from what the strategies' ``pools`` option accepts: a ``Market`` (anything with
        ``to_arrays()``), a pools-table mapping, or a path to an .npz holding one."""
        return cls(load_table(pools))

    def _load(self, table):
        missing = [k for k in POOL_KEYS if k not in table]
        if missing:
            raise ValueError(f"pools table lacks {', '.join(missing)}")
        addr = _addresses(table, "pool_address")
        t0, t1 = _addresses(table, "pool_token0"), _addresses(table, "pool_token1")
        r0, r1 = _words(table, "pool_reserve0"), _words(table, "pool_reserve1")
        lengths = {"pool_address": len(addr), "pool_token0": len(t0), "pool_token1": len(t1),
                   "pool_reserve0": len(r0), "pool_reserve1": len(r1)}
        if len(set(lengths.values())) > 1:
            raise ValueError("pools table columns differ in length: "
                             + ", ".join(f"{k} has {v}" for k, v in lengths.items()))
        n = len(addr)
        fn = _fees(table, "pool_fee_num", n, DEFAULT_FEE_NUM)
        fd = _fees(table, "pool_fee_den", n, DEFAULT_FEE_DEN)
        names = [address_hex(a) for a in addr]
        seen = {}
        for i in range(n):
            where = f"pool {names[i]} (row {i})"
            if names[i] in seen:
                raise ValueError(f"pool {names[i]} appears twice in the pools table "
                                 f"(rows {seen[names[i]]} and {i})")
            seen[names[i]] = i
            if (t0[i] == t1[i]).all():
                raise ValueError(f"{where} has token0 == token1 ({address_hex(t0[i])})")
            if not r0[i].any() or not r1[i].any():
                raise ValueError(f"{where} has a zero reserve "
                                 f"({_int(r0[i])}, {_int(r1[i])})")
            if not 0 < fn[i] < fd[i]:
                raise ValueError(f"{where} has fee {fn[i]}/{fd[i]}; need 0 < pool_fee_num < "
                                 f"pool_fee_den")
        keys = np.array([address_key(a) for a in addr], dtype=np.uint64)
        k0 = np.array([address_key(a) for a in t0], dtype=np.uint64)
        k1 = np.array([address_key(a) for a in t1], dtype=np.uint64)
        by_key = {}
        for i in range(n):
            k = int(keys[i])
            if k in by_key:
                raise ValueError(f"pools {names[by_key[k]]} and {names[i]} share the 64-bit pool "
                                 f"key {k:#018x}; rows could not tell them apart")
            by_key[k] = i
            if k0[i] == k1[i]:
                raise ValueError(f"pool {names[i]} (row {i}): its tokens share the 64-bit key "
                                 f"{int(k0[i]):#018x}; swaps could not tell them apart")
        proto, w0, w1, bfee = _balancer_columns(table, n, names)
        groups = {}
        for i in range(n):
            groups.setdefault(frozenset((bytes(t0[i]), bytes(t1[i]))), []).append(i)
        # siblings: the pair's other Uniswap V2 pools (a Balancer pool has none); cross
        # siblings: the pair's pools on the other protocol
        start, sib, xstart, xsib = [0], [], [0], []
        for i in range(n):
            group = groups[frozenset((bytes(t0[i]), bytes(t1[i])))]
            if proto[i] == V2:
                sib += [j for j in group if j != i and proto[j] == V2]
            xsib += [j for j in group if proto[j] != proto[i]]
            start.append(len(sib))
            xstart.append(len(xsib))
        tokens = {}
        if "token_address" in table:
            ta = np.asarray(table["token_address"])
            if ta.dtype != np.uint8 or ta.ndim != 2 or ta.shape[1] != 20:
                raise ValueError(f"pools table token_address must be (t, 20) uint8, got "
                                 f"{ta.dtype} {ta.shape}")
            tokens["token_address"] = ta.copy()
            for key in ("token_price_num", "token_price_den"):
                if key in table:
                    w = _words(table, key)
                    if len(w) != len(ta):
                        raise ValueError(f"pools table {key} has {len(w)} rows, token_address "
                                         f"{len(ta)}")
                    tokens[key] = w.copy()
        index = StateCache(max(n, 1))
        if n:
            index.put_many(keys, np.arange(n, dtype=np.int64))
        self._set_arrays(addr.copy(), t0.copy(), t1.copy(), r0.copy(), r1.copy(), fn, fd,
                         np.array(start, np.int32), np.array(sib, np.int32))
        self._set_balancer(proto, w0, w1, bfee, np.array(xstart, np.int32),
                           np.array(xsib, np.int32))
        self._key, self._t0key, self._t1key = keys, k0, k1
        self.t0key = <const uint64_t *>cnp.PyArray_DATA(k0)
        self.t1key = <const uint64_t *>cnp.PyArray_DATA(k1)
        self._index = index
        self.token_table = tokens
        self._loaded = True

    def _set_arrays(self, addr, t0, t1, r0, r1, fn, fd, start, sib):
        for a in (addr, t0, t1, r0, r1, fn, fd, start, sib):
            a.flags.writeable = False
        r0.flags.writeable = r1.flags.writeable = True  # apply writes them in place
        self.n = len(addr)
        self._addr, self._tok0, self._tok1, self._r0, self._r1 = addr, t0, t1, r0, r1
        self._fee_num, self._fee_den, self._sib_start, self._sib = fn, fd, start, sib
        self.addr = <const uint8_t *>cnp.PyArray_DATA(addr)
        self.r0 = <tio_u256 *>cnp.PyArray_DATA(r0)
        self.r1 = <tio_u256 *>cnp.PyArray_DATA(r1)
        self.fee_num = <const uint32_t *>cnp.PyArray_DATA(fn)
        self.fee_den = <const uint32_t *>cnp.PyArray_DATA(fd)
        self.sib_start = <const int32_t *>cnp.PyArray_DATA(start)
        self.sib = <const int32_t *>cnp.PyArray_DATA(sib)
        self._key = self._t0key = self._t1key = np.zeros(len(addr), np.uint64)
        self.t0key = self.t1key = <const uint64_t *>cnp.PyArray_DATA(self._t0key)

    def _set_balancer(self, proto, w0, w1, bfee, xstart, xsib):
        n = len(proto)
        if w0 is None:
            w0 = w1 = bfee = np.zeros((n, 4), np.uint64)
        for a in (proto, w0, w1, bfee, xstart, xsib):
            a.flags.writeable = False
        self._proto, self._w0, self._w1, self._bfee = proto, w0, w1, bfee
        self._xsib_start, self._xsib = xstart, xsib
        self.n_bal = int((proto == BAL).sum())
        self.proto = <const uint8_t *>cnp.PyArray_DATA(proto)
        self.w0 = <const tio_u256 *>cnp.PyArray_DATA(w0)
        self.w1 = <const tio_u256 *>cnp.PyArray_DATA(w1)
        self.bfee = <const tio_u256 *>cnp.PyArray_DATA(bfee)
        self.xsib_start = <const int32_t *>cnp.PyArray_DATA(xstart)
        self.xsib = <const int32_t *>cnp.PyArray_DATA(xsib)

    # ---- guard: the GIL protects _readers/_writer ----

    cdef int _enter(self, bint write) except -1:
        if self._writer or (write and self._readers):
            raise RuntimeError("PoolBook is being applied or screened on another thread; "
                               "one apply at a time, and no screen while it runs")
        if write:
            self._writer = True
        else:
            self._readers += 1
        return 0

    cdef void _leave(self, bint write) noexcept:
        if write:
            self._writer = False
        else:
            self._readers -= 1

    # ---- apply ----

    def apply(self, rows):
        """Apply every pending Uniswap V2 swap of ``rows`` (``TX_DTYPE``, 1-D) in order.

        Returns a read-only array of ``OUTCOME_DTYPE`` aligned with ``rows`` (also kept as
        ``outcome``). Per row: ``pool`` (index, -1 when the row names no pool of the book),
        ``status`` (``STATUS_*``), ``zero_for_one``, ``amount_out`` and the pool's reserves
        before and after it. A swap on a known pool applies the exact ``getAmountOut`` with the
        pool's fee; it reverts, changing nothing, on a zero input or a zero output
        (``REVERTED_ZERO``; a zero reserve is refused at load, and no swap can empty a pool), an
        output below its ``amount_out_min`` (``REVERTED_SLIPPAGE``), or a reserve that would pass
        2**256 - 1 (``REVERTED_OVERFLOW``): never a crash or a wrapped number. Rows it does not apply: ``NOT_PENDING`` (mined), ``NOT_V2``, ``UNKNOWN_POOL``
        (no pool with that key and address), ``TOKEN_MISMATCH`` (token_in is neither of the
        pool's tokens; ``pool`` is set). A reverted or mismatched row on a known pool reports the
        pool's reserves as both before and after; rows without a pool report zeros.

        A ``PROTOCOL_BALANCER_V1`` row on a Balancer pool (only when the book holds one; else
        ``NOT_V2``) is the pool's ``swapExactAmountIn``: the exact ``calcOutGivenIn`` with its
        weights and fee; it reverts ``REVERTED_OVERFLOW`` where the pool refuses the input
        (above ``MAX_IN_RATIO``, half the balance in) or its math reverts, ``REVERTED_ZERO`` on a
        zero output and ``REVERTED_SLIPPAGE`` below ``amount_out_min`` (``maxPrice`` is not in the
        record). A row whose protocol is not its pool's is ``UNKNOWN_POOL``.
        """
        rows = _rows_arg(rows, "rows")
        cdef Py_ssize_t n = rows.shape[0], stride = rows.strides[0], r
        cdef const char *data = <const char *>cnp.PyArray_DATA(rows)
        out = np.empty(n, OUTCOME_DTYPE)
        ids = np.empty(n, np.uint64)
        cdef tio_book_outcome *o = <tio_book_outcome *>cnp.PyArray_DATA(out)
        cdef uint64_t *idp = <uint64_t *>cnp.PyArray_DATA(ids)
        cdef uint64_t counts[8]
        memset(counts, 0, sizeof(counts))
        self._enter(True)
        self._index.acquire(False)
        try:
            if n >= NOGIL_MIN:
                with nogil:
                    self._apply_rows(data, stride, n, o, idp, counts)
            else:
                self._apply_rows(data, stride, n, o, idp, counts)
        finally:
            self._index.release(False)
            self._leave(True)
        for r in range(TIO_BOOK_NSTATUS):
            self.counts[r] += counts[r]
        out.flags.writeable = False
        self._outcome, self._ids = out, ids
        return out

    cdef void _apply_rows(self, const char *data, Py_ssize_t stride, Py_ssize_t n,
                          tio_book_outcome *o, uint64_t *idp, uint64_t *counts) noexcept nogil:
        """apply's loop: rows in order, each looked up, checked and applied (see apply)."""
        cdef Py_ssize_t r
        cdef tio_book_outcome *oc
        cdef const char *row
        cdef const char *rec
        cdef uint64_t tin
        cdef int64_t i = 0
        cdef uint8_t status, z, proto
        cdef tio_u256 ain, amin, aout, nin, nout
        cdef tio_u256 *rin = NULL
        cdef tio_u256 *rout = NULL
        cdef bint bal = False
        for r in range(n):
            row = data + r * stride
            oc = &o[r]
            idp[r] = (<const uint64_t *>(row + O_ID))[0]
            # pool, status, zero_for_one and the padding after them: one store, so that an
            # outcome's bytes are all defined (tobytes() of one apply is reproducible)
            (<uint64_t *>oc)[0] = 0
            oc.pool = -1
            proto = (<const uint8_t *>(row + O_PROTO))[0]
            if not ((<const uint8_t *>(row + O_FLAGS))[0] & PENDING):
                status = TIO_BOOK_NOT_PENDING
            elif proto != V2 and (proto != BAL or self.n_bal == 0):
                status = TIO_BOOK_NOT_V2
            else:
                rec = self._index.lookup((<const uint64_t *>(row + O_POOL_KEY))[0])
                if rec == NULL:
                    status = TIO_BOOK_UNKNOWN_POOL
                else:
                    i = (<const int64_t *>rec)[0]
                    # a 64-bit key match must also be the same 20-byte address, and the row
                    # must be a swap of the pool's protocol
                    if memcmp(row + O_POOL, self.addr + 20 * i, 20) != 0:
                        status = TIO_BOOK_UNKNOWN_POOL
                    elif self.n_bal and self.proto[i] != proto:
                        status = TIO_BOOK_UNKNOWN_POOL
                    else:
                        status = TIO_BOOK_TOKEN_MISMATCH
            if status != TIO_BOOK_TOKEN_MISMATCH:
                # five assignments, not a memset: glibc/GCC turn a 160-byte memset into
                # `rep stos`, whose start-up cost was 70% of the loop on mined rows (perf)
                oc.amount_out = U256_ZERO
                oc.reserve0_before = U256_ZERO
                oc.reserve1_before = U256_ZERO
                oc.reserve0_after = U256_ZERO
                oc.reserve1_after = U256_ZERO
                oc.status = status
                counts[status] += 1
                continue
            oc.pool = <int32_t>i
            oc.reserve0_before = self.r0[i]
            oc.reserve1_before = self.r1[i]
            tio_u256_from_u64(&oc.amount_out, 0)
            tin = (<const uint64_t *>(row + O_TIN_KEY))[0]
            if tin == self.t0key[i]:
                z = 1
                rin, rout = &self.r0[i], &self.r1[i]
            elif tin == self.t1key[i]:
                z = 0
                rin, rout = &self.r1[i], &self.r0[i]
            else:
                z = 2
            bal = self.n_bal != 0 and self.proto[i] == BAL
            if z == 2:
                status = TIO_BOOK_TOKEN_MISMATCH
            elif bal:
                oc.zero_for_one = z
                memcpy(&ain, row + O_AIN, sizeof(tio_u256))
                memcpy(&amin, row + O_AMIN, sizeof(tio_u256))
                status = _bal_swap(&aout, &ain, &amin, rin, rout,
                                   &self.w0[i] if z else &self.w1[i],
                                   &self.w1[i] if z else &self.w0[i], &self.bfee[i])
                if status == TIO_BOOK_APPLIED:
                    tio_u256_add(&nin, rin, &ain)   # checked in _bal_swap
                    tio_u256_sub(&nout, rout, &aout)
                    rin[0] = nin
                    rout[0] = nout
                    oc.amount_out = aout
            else:
                oc.zero_for_one = z
                memcpy(&ain, row + O_AIN, sizeof(tio_u256))
                memcpy(&amin, row + O_AMIN, sizeof(tio_u256))
                # getAmountOut without its checks: the fee was validated at load and
                # reserves stay positive (refused at load when zero; an output is always
                # below reserve_out), so only a zero input is left, and it buys zero
                tio_amm_out_u256(&aout, &ain, rin, rout, self.fee_num[i], self.fee_den[i])
                if tio_u256_is_zero(&aout):
                    status = TIO_BOOK_REVERTED_ZERO
                elif tio_u256_cmp(&aout, &amin) < 0:
                    status = TIO_BOOK_REVERTED_SLIPPAGE
                elif tio_u256_add(&nin, rin, &ain):
                    status = TIO_BOOK_REVERTED_OVERFLOW
                else:
                    tio_u256_sub(&nout, rout, &aout)  # aout < rout: no borrow
                    rin[0] = nin
                    rout[0] = nout
                    oc.amount_out = aout
                    status = TIO_BOOK_APPLIED
            oc.status = status
            counts[status] += 1
            oc.reserve0_after = self.r0[i]
            oc.reserve1_after = self.r1[i]


    @property
    def outcome(self):
        """The outcome of the last ``apply`` (read-only; empty before the first)."""
        return self._outcome

    cdef object _positions(self, object batch):
        """None when ``batch`` holds exactly the rows of the last apply (same ids, same order),
        else each batch row's position in it (int64), by id."""
        cdef Py_ssize_t n = batch.shape[0], stride = batch.strides[0], r
        cdef const char *data = <const char *>cnp.PyArray_DATA(batch)
        cdef const uint64_t *ids = <const uint64_t *>cnp.PyArray_DATA(self._ids)
        if n == self._ids.shape[0]:
            for r in range(n):
                if (<const uint64_t *>(data + r * stride + O_ID))[0] != ids[r]:
                    break
            else:
                return None
        applied = self._ids
        order = np.argsort(applied, kind="stable")
        ordered = applied[order]
        if len(ordered) > 1 and (ordered[1:] == ordered[:len(ordered) - 1]).any():
            raise ValueError("the last apply held duplicate ids: batch rows cannot be matched "
                             "to its outcome (apply the batch itself)")
        want = batch["id"]
        pos = np.searchsorted(ordered, want)
        ok = pos < len(ordered)
        ok[ok] = ordered[pos[ok]] == want[ok]
        if not ok.all():
            raise ValueError(f"batch row id {int(want[~ok][0])} was not in the book's last apply")
        return order[pos].astype(np.int64)

    def outcome_for(self, batch):
        """The outcome of each row of ``batch``: ``outcome`` itself when ``batch`` holds the rows
        of the last apply, else those rows of it matched by ``id`` (a batch the engine applied
        together with rows it then dropped, such as expired ones). Raises ``ValueError`` for a
        row the last apply did not hold."""
        batch = _rows_arg(batch, "batch")
        pos = self._positions(batch)
        if pos is None:
            return self._outcome
        out = self._outcome[pos]
        out.flags.writeable = False
        return out

    def stats(self):
        """Rows per status since creation, keyed by ``STATUS_NAMES``."""
        return {name: int(self.counts[k]) for k, name in enumerate(STATUS_NAMES)}

    # ---- pools ----

    def __len__(self):
        return self.n

    cdef Py_ssize_t _pool(self, object i) except -1:
        if isinstance(i, bool) or not isinstance(i, (int, np.integer)):
            raise TypeError(f"pool index must be an int, got {i!r}")
        if not 0 <= i < self.n:
            raise IndexError(f"pool index {i} out of range for a book of {self.n} pools")
        return i

    def reserves(self, i):
        """``(reserve0, reserve1)`` of pool ``i`` now, as exact ints."""
        cdef Py_ssize_t k = self._pool(i)
        return _int(self._r0[k]), _int(self._r1[k])

    def set_reserves(self, i, reserve0, reserve1):
        """Pool ``i`` takes the reserves ``(reserve0, reserve1)`` (exact ints in [1, 2**256)): the
        chain's state at a new head, read by a live source. Call it on the thread that applies
        batches (the engine applies a source's ``reserve_updates`` between batches)."""
        cdef Py_ssize_t k = self._pool(i)
        for name, v in (("reserve0", reserve0), ("reserve1", reserve1)):
            if isinstance(v, bool) or not isinstance(v, int):
                raise TypeError(f"{name} must be an int, got {v!r}")
            if not 0 < v < 1 << 256:
                raise ValueError(f"{name} must be in [1, 2**256), got {v}")
        m = (1 << 64) - 1
        self._r0[k] = [(reserve0 >> s) & m for s in (0, 64, 128, 192)]
        self._r1[k] = [(reserve1 >> s) & m for s in (0, 64, 128, 192)]

    def address(self, i):
        """Pool ``i``'s 20-byte address."""
        return bytes(self._addr[self._pool(i)])

    def token0(self, i):
        return bytes(self._tok0[self._pool(i)])

    def token1(self, i):
        return bytes(self._tok1[self._pool(i)])

    def fee(self, i):
        """``(fee_num, fee_den)``: the share of each input pool ``i`` keeps trading."""
        cdef Py_ssize_t k = self._pool(i)
        return int(self.fee_num[k]), int(self.fee_den[k])

    def siblings(self, i):
        """The other Uniswap V2 pools of pool ``i``'s token pair, in table order (none for a
        Balancer V1 pool)."""
        cdef Py_ssize_t k = self._pool(i)
        return tuple(self._sib[self.sib_start[k]:self.sib_start[k + 1]].tolist())

    def cross_siblings(self, i):
        """The pools of pool ``i``'s token pair on the other protocol (Balancer V1 for a
        Uniswap V2 pool and the reverse), in table order."""
        cdef Py_ssize_t k = self._pool(i)
        return tuple(self._xsib[self.xsib_start[k]:self.xsib_start[k + 1]].tolist())

    def protocol(self, i):
        """Pool ``i``'s ``PROTOCOL_*``: Uniswap V2 or Balancer V1."""
        return int(self.proto[self._pool(i)])

    def balancer(self, i):
        """``(weight0, weight1, swap_fee)`` of Balancer V1 pool ``i`` (18-decimal fixed point;
        zeros for a Uniswap V2 pool)."""
        cdef Py_ssize_t k = self._pool(i)
        return _int(self._w0[k]), _int(self._w1[k]), _int(self._bfee[k])

    def lookup(self, pool_keys):
        """Pool index of each 64-bit key, -1 where unknown (vectorized; keys only)."""
        values, found = self._index.get_many(np.asarray(pool_keys, dtype=np.uint64))
        return np.where(found, values, -1).astype(np.intp)

    def index(self, address):
        """The index of the pool at ``address`` (20 bytes or 0x hex), or -1."""
        from tallyio.record import address_bytes
        a = address_bytes(address)
        i = self._index.get(address_key(a), -1)
        return i if i >= 0 and bytes(self._addr[i]) == a else -1

    def to_table(self):
        """The book as a pools table (copies; reserves as they are now), with its fees and
        ``token_table``: ``PoolBook(book.to_table())`` is an independent copy."""
        t = {"pool_address": self._addr.copy(), "pool_token0": self._tok0.copy(),
             "pool_token1": self._tok1.copy(), "pool_reserve0": self._r0.copy(),
             "pool_reserve1": self._r1.copy(), "pool_fee_num": self._fee_num.copy(),
             "pool_fee_den": self._fee_den.copy()}
        if self.n_bal:
            t.update({"pool_protocol": self._proto.copy(), "pool_weight0": self._w0.copy(),
                      "pool_weight1": self._w1.copy(), "pool_swap_fee": self._bfee.copy()})
        t.update({k: v.copy() for k, v in self.token_table.items()})
        return t

    def __repr__(self):
        return f"<PoolBook {self.n} pools, {sum(self.counts[k] for k in range(8))} rows applied>"


# ---------------------------------------------------------------------------------------------
# screens


cdef inline double _f(const tio_u256 *a) noexcept nogil:
    # within a few ulps: the pre-filters leave a 1e-9 margin for it. Reserves below 2**128 (all
    # real ones) skip two of the four unsigned conversions.
    if (a.w[2] | a.w[3]) == 0:
        return <double>a.w[1] * TWO64 + <double>a.w[0]
    return ((<double>a.w[3] * TWO64 + <double>a.w[2]) * TWO64 + <double>a.w[1]) * TWO64 \
        + <double>a.w[0]


cdef inline tio_screen_pool *_pool_at(tio_screen_pool *pools, Py_ssize_t j, tio_u256 *r0,
                                      tio_u256 *r1, uint64_t epoch) noexcept nogil:
    """Pool j's screen state for this call: its reserves as set this call, else the book's
    current ones (r0[j], r1[j]); its doubles computed once per change."""
    cdef tio_screen_pool *p = &pools[j]
    if p.stamp != epoch:
        p.r0, p.r1, p.stamp, p.fstamp = &r0[j], &r1[j], epoch, 0
    if p.fstamp != epoch:
        p.f0, p.f1, p.fstamp = _f(p.r0), _f(p.r1), epoch
    return p


cdef int _gap_exact(const tio_u256 *xa, const tio_u256 *ya, const tio_u256 *xb,
                    const tio_u256 *yb, uint64_t gg, uint64_t dd) noexcept nogil:
    """1 when a round trip through pools a and b gains at zero gas in some direction:
    ``gg ya xb > dd xa yb`` (sell X on a) or ``gg yb xa > dd xb ya`` (sell X on b), with
    ``gg = ga gb`` and ``dd = Da Db``: exactly ``A > B`` of the optimum's closed form."""
    cdef uint64_t p[8]
    cdef uint64_t q[8]
    cdef uint64_t s[9]
    cdef uint64_t t[9]
    cdef int lxa = tio_limbs_len(xa.w, 4), lya = tio_limbs_len(ya.w, 4)
    cdef int lxb = tio_limbs_len(xb.w, 4), lyb = tio_limbs_len(yb.w, 4)
    cdef int np_, nq, ns, nt
    if lxa == 0 or lya == 0 or lxb == 0 or lyb == 0:
        return 0
    tio_limbs_mul(p, ya.w, lya, xb.w, lxb)
    np_ = tio_limbs_len(p, lya + lxb)
    tio_limbs_mul(q, xa.w, lxa, yb.w, lyb)
    nq = tio_limbs_len(q, lxa + lyb)
    s[np_] = tio_limbs_mul1(s, p, np_, gg)
    ns = tio_limbs_len(s, np_ + 1)
    t[nq] = tio_limbs_mul1(t, q, nq, dd)
    nt = tio_limbs_len(t, nq + 1)
    if tio_limbs_cmp(s, ns, t, nt) > 0:
        return 1
    s[nq] = tio_limbs_mul1(s, q, nq, gg)
    ns = tio_limbs_len(s, nq + 1)
    t[np_] = tio_limbs_mul1(t, p, np_, dd)
    nt = tio_limbs_len(t, np_ + 1)
    return tio_limbs_cmp(s, ns, t, nt) > 0


cdef int _gas_cost(tio_u256 *cost, const tio_u256 *gas_wei, const tio_u256 *num,
                   const tio_u256 *den) noexcept nogil:
    """``cost = ceil(gas_wei * den / num)``, the gas in a token worth ``num/den`` WETH-wei per
    unit, rounded up (a cost is never understated); 1 when it needs more than 256 bits."""
    cdef tio_u512 p
    cdef tio_u256 rem, one
    tio_u256_mul_full(&p, gas_wei, den)
    if tio_u512_divmod(cost, &rem, &p, num):
        return 1
    if not tio_u256_is_zero(&rem):
        tio_u256_from_u64(&one, 1)
        return tio_u256_add(cost, cost, &one)
    return 0


cdef object _u256_arg(object value, str name):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not 0 <= value < 2**256:
        raise ValueError(f"{name} must be an int in [0, 2**256), got {value!r}")
    v = int(value)
    return np.array([(v >> (64 * k)) & 0xFFFFFFFFFFFFFFFF for k in range(4)], np.uint64)


cdef object _u64_arg(object value, str name, int minimum):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) \
            or not minimum <= value < 2**64:
        raise ValueError(f"{name} must be an int in [{minimum}, 2**64), got {value!r}")
    return int(value)


cdef object _price_words(object price, object token):
    """``(num, den)`` of a Fraction price as u256 words; a price past 256 bits is refused."""
    if price.numerator >= 2**256 or price.denominator >= 2**256:
        raise ValueError(f"price of token 0x{token.hex()} needs more than 256 bits: {price}")
    return (_u256_arg(price.numerator, "price"), _u256_arg(price.denominator, "price"))


# One leg of a cross-protocol route: a pool selling its ``rin`` token for its ``rout`` token.
ctypedef struct tio_xleg:
    const tio_u256 *rin
    const tio_u256 *rout
    const tio_u256 *win    # NULL: a Uniswap V2 pool (fee g / D); else Balancer V1 (weights, fee)
    const tio_u256 *wout
    const tio_u256 *fee
    tio_u256 max_in        # Balancer: MAX_IN_RATIO, bmul(rin, BONE / 2); V2: unused
    uint32_t g
    uint32_t D


cdef int _xleg_set(tio_xleg *leg, const tio_u256 *r0, const tio_u256 *r1, bint sell0,
                   bint bal, const tio_u256 *w0, const tio_u256 *w1, const tio_u256 *fee,
                   uint32_t g, uint32_t D) noexcept nogil:
    """The leg of a pool (reserves r0/r1 as of the row; weights and fee when ``bal``) selling
    token0 (sell0) or token1; 1 when its MAX_IN_RATIO needs more than 256 bits."""
    cdef tio_u256 half
    leg.rin = r0 if sell0 else r1
    leg.rout = r1 if sell0 else r0
    leg.g = g
    leg.D = D
    if not bal:
        leg.win = NULL
        return 0
    leg.win = w0 if sell0 else w1
    leg.wout = w1 if sell0 else w0
    leg.fee = fee
    tio_u256_from_u64(&half, 500000000000000000)
    return tio_bal_bmul(&leg.max_in, leg.rin, &half)


cdef double _xleg_rate(const tio_xleg *leg) noexcept nogil:
    """What one unit in buys at the margin, fee included (a double; the search is exact)."""
    if leg.win == NULL:
        return (<double>leg.g / <double>leg.D) * _f(leg.rout) / _f(leg.rin)
    return (1.0 - _f(leg.fee) / 1e18) * (_f(leg.rout) * _f(leg.win)) / (_f(leg.rin) * _f(leg.wout))


cdef int _xleg_out(tio_u256 *out, const tio_xleg *leg, const tio_u256 *a) noexcept nogil:
    """The leg's exact output for input a (the book's apply): 0, or 1 where the swap
    reverts (a zero input, MAX_IN_RATIO, BMath)."""
    if leg.win == NULL:
        return tio_amm_get_amount_out(out, a, leg.rin, leg.rout, leg.g, leg.D) != TIO_AMM_OK
    if tio_u256_is_zero(a) or tio_u256_cmp(a, &leg.max_in) > 0:
        return 1
    if tio_bal_out_given_in(out, leg.rin, leg.win, leg.rout, leg.wout, a, leg.fee) != TIO_AMM_OK:
        return 1
    return tio_u256_cmp(out, leg.rout) >= 0


cdef int _xroute(tio_u256 *mid, tio_u256 *out, const tio_xleg *p, const tio_xleg *q,
                 const tio_u256 *x) noexcept nogil:
    """x through p then q; a reverting leg gives out = 0 (never better than any input)."""
    if _xleg_out(mid, p, x) or _xleg_out(out, q, mid):
        tio_u256_from_u64(mid, 0)
        tio_u256_from_u64(out, 0)
        return 1
    return 0


cdef int _xbetter(const tio_u256 *out_a, const tio_u256 *a, const tio_u256 *out_b,
                  const tio_u256 *b) noexcept nogil:
    """1 when out_a - a > out_b - b (signed, exact: compared as out_a + b > out_b + a)."""
    cdef tio_u256 s, t
    if tio_u256_add(&s, out_a, b) or tio_u256_add(&t, out_b, a):
        return -1
    return tio_u256_cmp(&s, &t) > 0


cdef int _xsearch(tio_amm_cross *res, const tio_xleg *p, const tio_xleg *q,
                  uint64_t window) noexcept nogil:
    """The best integer input of the route p then q: TIO_AMM_OK with ``res`` when some input
    gains, TIO_AMM_NONE when none does, TIO_AMM_OVERFLOW past 256 bits.

    The input is bounded by U: p's MAX_IN_RATIO for a Balancer leg, else p's reserve in (an
    optimum past it needs a price gap of about 4x), and, when q is a Balancer pool, the largest
    input whose output p pays within q's MAX_IN_RATIO (a binary search: p's output grows with
    its input). The gain ``out(x) - x`` is concave in x up to the kernels' rounding (each leg's
    output is concave and increasing), so an integer ternary search narrows [1, U] to ``window``
    inputs (at most 2 log_1.5(U / window) + 2 route evaluations) and every input of that window
    is then tried; ``res.optimal`` is 1 only when [1, U] itself fit in the window (every input
    tried)."""
    cdef tio_u256 lo, hi, d, t, m1, m2, mid1, mid2, o1, o2, three, one, rem, x, best_x, w
    cdef tio_u256 best_mid, best_out
    cdef int c, found = 0
    tio_u256_from_u64(&one, 1)
    tio_u256_from_u64(&three, 3)
    tio_u256_from_u64(&w, window)
    tio_u256_from_u64(&lo, 1)
    if p.win != NULL:
        hi = p.max_in
    else:
        hi = p.rin[0]
        if q.win != NULL:
            # largest x with p's output within q's MAX_IN_RATIO
            tio_amm_get_amount_out(&o1, &hi, p.rin, p.rout, p.g, p.D)
            if tio_u256_cmp(&o1, &q.max_in) > 0:
                t = lo
                d = hi
                while tio_u256_cmp(&t, &d) < 0:
                    tio_u256_sub(&m1, &d, &t)      # t + ceil((d - t) / 2): no overflow
                    tio_u256_add(&m1, &m1, &one)
                    tio_u256_shr(&m1, &m1, 1)
                    tio_u256_add(&m1, &m1, &t)
                    tio_amm_get_amount_out(&o1, &m1, p.rin, p.rout, p.g, p.D)
                    if tio_u256_cmp(&o1, &q.max_in) > 0:
                        tio_u256_sub(&d, &m1, &one)
                    else:
                        t = m1
                hi = t
    if tio_u256_cmp(&hi, &lo) < 0:
        return TIO_AMM_NONE
    tio_u256_sub(&d, &hi, &lo)
    res.optimal = tio_u256_cmp(&d, &w) < 0
    while tio_u256_cmp(&d, &w) >= 0:
        tio_u256_divmod(&t, &rem, &d, &three)
        tio_u256_add(&m1, &lo, &t)
        tio_u256_sub(&m2, &hi, &t)
        _xroute(&mid1, &o1, p, q, &m1)
        _xroute(&mid2, &o2, p, q, &m2)
        c = _xbetter(&o2, &m2, &o1, &m1)
        if c < 0:
            return TIO_AMM_OVERFLOW
        if c:
            tio_u256_add(&lo, &m1, &one)    # f(m1) < f(m2): the peak is right of m1
        else:
            tio_u256_sub(&hi, &m2, &one)    # f(m1) >= f(m2): at or left of m2 - 1, or m1
            if tio_u256_cmp(&hi, &m1) < 0:
                hi = m1
        tio_u256_sub(&d, &hi, &lo)
    x = lo
    while tio_u256_cmp(&x, &hi) <= 0:
        _xroute(&mid1, &o1, p, q, &x)
        if tio_u256_cmp(&o1, &x) > 0:
            c = 1 if not found else _xbetter(&o1, &x, &best_out, &best_x)
            if c < 0:
                return TIO_AMM_OVERFLOW
            if c:
                best_x, best_mid, best_out, found = x, mid1, o1, 1
        tio_u256_add(&x, &x, &one)
    if not found:
        return TIO_AMM_NONE
    res.amount_in = best_x
    res.amount_mid = best_mid
    res.amount_out = best_out
    tio_u256_sub(&res.gross_profit, &best_out, &best_x)
    return TIO_AMM_OK


cdef class _Screen:
    """What both screens share: the book, the batch-to-outcome match, a found buffer."""
    cdef readonly PoolBook book
    cdef object _stats

    def __cinit__(self, *args, **kwargs):
        self.book = None
        self._stats = {}

    cdef PoolBook _book(self):
        if self.book is None:
            raise TypeError(f"{type(self).__name__} was not initialised (built with __new__?)")
        return self.book

    cdef object _select(self, PoolBook book, object batch):
        """``sel``: for each row of the book's last apply, the batch row it is (-1: not in the
        batch), or None when the batch is that apply."""
        pos = book._positions(batch)
        if pos is None:
            return None
        sel = np.full(book._ids.shape[0], -1, np.int64)
        sel[pos] = np.arange(len(pos), dtype=np.int64)
        return sel

    def stats(self):
        """Counters since creation (see the class docstring)."""
        return dict(self._stats)


@cython.final
cdef class ArbitrageScreen(_Screen):
    """ArbitrageScreen(book, prices, *, gas_units=200_000, min_profit=0, max_scan=1024)

    Cross-pool arbitrage after each applied swap, for a whole batch, in C.

    ``screen(batch)`` reads the book's last ``apply`` (``batch`` is those rows, or a subset of
    them matched by id, see ``PoolBook.outcome_for``). For each applied swap on a pool ``i``,
    in order, it tests every sibling ``j`` against the **fee band**: the pair has a gap when a
    round trip through the two pools gains at zero gas in some direction
    (``ga gb ya xb > Da Db xa yb``, exact; a float pre-filter with a 1e-9 margin skips the pairs
    deep inside the band). Siblings' reserves are taken **as they were at that row**: after
    the latest earlier swap on them in the batch, else before the first later one, else the
    book's current value (nothing is applied twice). For the pairs with a gap it finds the
    exact optimum (``tio_amm_best_cross_pool``: sell the profit token on one pool, sell what
    it buys on the other; both directions, siblings in table order, the first maximum wins) and
    keeps it when the gross profit exceeds gas + ``min_profit``.

    Profit token and gas (``prices``, a ``tallyio.pricing.PriceTable``, read once here): WETH
    when the pair holds it, else token0 if priced, else token1 if priced; a pair with neither
    is skipped and counted (``unpriced``). Gas is one back-run of ``gas_units`` at the
    triggering row's gas price, ``ceil(gas_wei * den / num)`` in the profit token.

    **Uniswap V2 <-> Balancer V1** (a book with Balancer pools): after each applied swap on a
    pool, each of its cross siblings is tried both ways (sell the profit token on one, what it
    buys on the other). A route whose marginal rate at zero input (doubles, 1e-9 margin) is
    below 1 gains at no input and closes the pair; otherwise the exact search (``_xsearch``: an
    integer ternary search over the inputs up to the route's bound, then every input of a
    ``max_scan`` window around its peak, each input priced by the exact kernels) finds the best
    input, and ``optimal`` is set only when the whole range fit in the window. One report per
    row for these routes (the best), beside the V2 one; reported once per gap like V2 pairs. A
    V2-only book skips all of it.

    **Report once**: the trade for a pool pair is reported when the pair's gap opens and not
    again, whatever later swaps do to its size, until a swap on either pool brings the pair back
    inside the fee band (``repeats`` counts the reports held back). A batch screened with
    ``search=False`` (the engine skipped it) still closes pairs but opens none.

    Returns an ``ARBITRAGE_DTYPE`` array, one row per report, in row order: ``row`` (in
    ``batch``), ``pool_a`` (where the profit token is sold), ``pool_b``, ``profit_token0``
    (the profit token is ``pool_a``'s token0), ``optimal`` (proven the maximum over every
    integer input), ``amount_in``, ``amount_mid``, ``amount_out``, ``gross_profit``, ``gas_cost``
    (u256 words). ``stats()``: ``screened`` (applied swaps with siblings, searched),
    ``candidates`` (sibling pairs with a gap), ``unpriced``, ``repeats``, ``found``, ``overflow``
    (a cost or an optimum past 256 bits: skipped).
    """
    cdef readonly uint64_t gas_units, max_scan
    cdef readonly object min_profit
    cdef tio_u256 _min_profit
    cdef Py_ssize_t n, nslots, max_group
    cdef object _side, _pnum, _pden, _open, _mirror, _flip, _lo, _hi, _gg, _dd
    cdef int8_t *side          # per pool: 1 token0 is its pair's profit token, 0 token1, -1 none
    cdef tio_u256 *pnum        # per pool: the profit token's price, num / den
    cdef tio_u256 *pden
    cdef uint8_t *open_        # per sibling slot (i, j): the pair's trade was reported, gap open
    cdef const int32_t *mirror # slot (j, i) of slot (i, j)
    cdef const uint8_t *flip   # pool j lists the pair's tokens the other way round from pool i
    cdef const double *lo      # the float band of the slot's fees, narrowed by 1e-9
    cdef const double *hi
    cdef const uint64_t *gg    # ga * gb and Da * Db of the slot
    cdef const uint64_t *dd
    cdef tio_screen_pool *pools
    cdef uint64_t epoch
    cdef int32_t *cand
    cdef tio_arb_found *buf
    cdef Py_ssize_t cap
    cdef uint64_t c_screened, c_candidates, c_unpriced, c_repeats, c_found, c_overflow
    # cross-protocol slots (book.xsib): reported-and-open, mirror, token order flipped
    cdef Py_ssize_t nx
    cdef object _xopen, _xmirror, _xflip
    cdef uint8_t *xopen
    cdef const int32_t *xmirror
    cdef const uint8_t *xflip

    def __cinit__(self, *args, **kwargs):
        self.pools = NULL
        self.epoch = 0
        self.cand = NULL
        self.buf = NULL
        self.cap = 0
        self.n = 0

    def __dealloc__(self):
        free(self.pools)
        free(self.cand)
        free(self.buf)

    def __init__(self, PoolBook book not None, prices, *, gas_units=200_000, min_profit=0,
                 max_scan=1024):
        self.gas_units = _u64_arg(gas_units, "gas_units", 0)
        self.max_scan = _u64_arg(max_scan, "max_scan", 1)
        words = _u256_arg(min_profit, "min_profit")
        memcpy(&self._min_profit, <const void *>cnp.PyArray_DATA(words), 32)
        self.min_profit = int(min_profit)
        cdef Py_ssize_t n = book.n, i, j, k, s0, s1
        side = np.full(n, -1, np.int8)
        pnum = np.ones((n, 4), np.uint64)
        pnum[:, 1:] = 0
        pden = pnum.copy()
        t0s = [book.token0(i) for i in range(n)]
        t1s = [book.token1(i) for i in range(n)]
        for i in range(n):
            t = prices.profit_token(t0s[i], t1s[i])
            if t is not None:
                side[i] = 1 if t == t0s[i] else 0
                pnum[i], pden[i] = _price_words(prices.prices[t], t)
        nslots = book._sib.shape[0]
        mirror = np.zeros(nslots, np.int32)
        flip = np.zeros(nslots, np.uint8)
        gg = np.zeros(nslots, np.uint64)
        dd = np.zeros(nslots, np.uint64)
        sib, start = book._sib, book._sib_start
        fn, fd = book._fee_num.astype(np.uint64), book._fee_den.astype(np.uint64)
        max_group = 0
        for i in range(n):
            s0, s1 = start[i], start[i + 1]
            max_group = max(max_group, s1 - s0)
            for k in range(s0, s1):
                j = sib[k]
                mirror[k] = start[j] + list(sib[start[j]:start[j + 1]]).index(i)
                flip[k] = t0s[j] != t0s[i]
                gg[k] = fn[i] * fn[j]
                dd[k] = fd[i] * fd[j]
        band = gg.astype(np.float64) / np.maximum(dd, 1).astype(np.float64)
        self._lo = band * (1 + 1e-9)
        self._hi = np.where(band > 0, 1 / np.where(band > 0, band, 1), 0) * (1 - 1e-9)
        self._side, self._pnum, self._pden = side, pnum, pden
        self._open = np.zeros(nslots, np.uint8)
        self._mirror, self._flip, self._gg, self._dd = mirror, flip, gg, dd
        self.side = <int8_t *>cnp.PyArray_DATA(side)
        self.pnum = <tio_u256 *>cnp.PyArray_DATA(pnum)
        self.pden = <tio_u256 *>cnp.PyArray_DATA(pden)
        self.open_ = <uint8_t *>cnp.PyArray_DATA(self._open)
        self.mirror = <const int32_t *>cnp.PyArray_DATA(mirror)
        self.flip = <const uint8_t *>cnp.PyArray_DATA(flip)
        self.lo = <const double *>cnp.PyArray_DATA(self._lo)
        self.hi = <const double *>cnp.PyArray_DATA(self._hi)
        self.gg = <const uint64_t *>cnp.PyArray_DATA(gg)
        self.dd = <const uint64_t *>cnp.PyArray_DATA(dd)
        free(self.pools)
        free(self.cand)
        xsib, xstart = book._xsib, book._xsib_start
        nx = xsib.shape[0]
        xmirror = np.zeros(nx, np.int32)
        xflip = np.zeros(nx, np.uint8)
        for i in range(n):
            for k in range(xstart[i], xstart[i + 1]):
                j = xsib[k]
                xmirror[k] = xstart[j] + list(xsib[xstart[j]:xstart[j + 1]]).index(i)
                xflip[k] = t0s[j] != t0s[i]
        self.nx = nx
        self._xopen, self._xmirror, self._xflip = np.zeros(nx, np.uint8), xmirror, xflip
        self.xopen = <uint8_t *>cnp.PyArray_DATA(self._xopen)
        self.xmirror = <const int32_t *>cnp.PyArray_DATA(xmirror)
        self.xflip = <const uint8_t *>cnp.PyArray_DATA(xflip)
        self.pools = <tio_screen_pool *>calloc(max(n, 1), sizeof(tio_screen_pool))
        self.cand = <int32_t *>malloc(max(max_group, 1) * sizeof(int32_t))
        if self.pools == NULL or self.cand == NULL:
            raise MemoryError("ArbitrageScreen scratch")
        self.n, self.nslots, self.max_group = n, nslots, max_group
        self.book = book
        self.c_screened = self.c_candidates = self.c_unpriced = 0
        self.c_repeats = self.c_found = self.c_overflow = 0

    def open_pairs(self):
        """The pool pairs ``(i, j)``, ``i < j``, reported and not closed since."""
        cdef PoolBook book = self._book()
        sib, start = book._sib, book._sib_start
        return sorted((i, int(sib[k])) for i in range(self.n)
                      for k in range(start[i], start[i + 1]) if self._open[k] and i < sib[k])

    def stats(self):
        return {"screened": self.c_screened, "candidates": self.c_candidates,
                "unpriced": self.c_unpriced, "repeats": self.c_repeats, "found": self.c_found,
                "overflow": self.c_overflow}

    def __call__(self, batch, *, search=True):
        """Screen ``batch`` (the rows of the book's last apply, or a subset matched by id);
        returns the ``ARBITRAGE_DTYPE`` rows found (see the class docstring)."""
        cdef PoolBook book = self._book()
        batch = _rows_arg(batch, "batch")
        sel_arr = self._select(book, batch)
        outcome = book._outcome
        cdef Py_ssize_t n_all = outcome.shape[0], found
        cdef const tio_book_outcome *o = <const tio_book_outcome *>cnp.PyArray_DATA(outcome)
        cdef const int64_t *sel = NULL
        if sel_arr is not None:
            sel = <const int64_t *>cnp.PyArray_DATA(sel_arr)
        cdef const char *bdata = <const char *>cnp.PyArray_DATA(batch)
        cdef Py_ssize_t bstride = batch.strides[0]
        cdef bint do_search = bool(search)
        # a row reports at most one V2 trade and, with cross siblings, one cross-protocol trade
        cdef Py_ssize_t need = n_all * (2 if self.nx else 1)
        if need > self.cap:
            self.buf = <tio_arb_found *>realloc(self.buf, need * sizeof(tio_arb_found))
            if self.buf == NULL:
                self.cap = 0
                raise MemoryError("ArbitrageScreen buffer")
            self.cap = need
        book._enter(False)
        try:
            if n_all >= NOGIL_MIN:
                with nogil:
                    found = self._run(o, n_all, sel, bdata, bstride, do_search)
            else:
                found = self._run(o, n_all, sel, bdata, bstride, do_search)
        finally:
            book._leave(False)
        out = np.empty(found, ARBITRAGE_DTYPE)
        if found:
            memcpy(cnp.PyArray_DATA(out), self.buf, found * sizeof(tio_arb_found))
        return out

    cdef Py_ssize_t _run(self, const tio_book_outcome *o, Py_ssize_t n_all, const int64_t *sel,
                         const char *bdata, Py_ssize_t bstride, bint do_search) noexcept nogil:
        """The screen's loop over the outcome rows (see the class docstring); the number of
        trades written to ``buf``."""
        cdef Py_ssize_t r, k, s0, s1, nc, c, kbest
        cdef Py_ssize_t found = 0
        cdef int32_t i, j, pa, pb
        cdef int a, b
        cdef int64_t brow
        cdef int8_t si, sb
        cdef int rc
        cdef double num, den
        cdef tio_u256 cost, threshold
        cdef tio_u256 *xs[2]
        cdef tio_u256 *ys[2]
        cdef tio_amm_cross res, best
        cdef tio_screen_pool *pi
        cdef tio_screen_pool *pj
        cdef uint64_t epoch
        # the hot loop's arrays in locals: through self, each would be reloaded every iteration
        # (the compiler cannot tell the stores to open_/pools from them)
        cdef tio_screen_pool *pools = self.pools
        cdef const int32_t *sib_start = self.book.sib_start
        cdef const int32_t *sib = self.book.sib
        cdef tio_u256 *br0 = self.book.r0
        cdef tio_u256 *br1 = self.book.r1
        cdef const double *lo = self.lo
        cdef const double *hi_ = self.hi
        cdef const uint8_t *flip = self.flip
        cdef uint8_t *open_ = self.open_
        cdef const int32_t *mirror = self.mirror
        cdef int32_t *cand = self.cand
        memset(&best, 0, sizeof(best))  # set before it is read (kbest >= 0); quiets -Wuninitialized
        self.epoch += 1
        epoch = self.epoch
        # Each touched pool's reserves as of the first row: before its first swap in the batch
        # (the others stay as the book holds them now, see _pool_at).
        for r in range(n_all - 1, -1, -1):
            if o[r].status == TIO_BOOK_APPLIED:
                pi = &pools[o[r].pool]
                pi.r0 = <tio_u256 *>&o[r].reserve0_before
                pi.r1 = <tio_u256 *>&o[r].reserve1_before
                pi.stamp = epoch
                pi.fstamp = 0
        for r in range(n_all):
            if o[r].status != TIO_BOOK_APPLIED:
                continue
            i = o[r].pool
            pi = &pools[i]
            pi.r0 = <tio_u256 *>&o[r].reserve0_after
            pi.r1 = <tio_u256 *>&o[r].reserve1_after
            pi.f0, pi.f1, pi.fstamp = _f(pi.r0), _f(pi.r1), epoch
            brow = r if sel == NULL else sel[r]
            if self.nx and self.book.xsib_start[i] != self.book.xsib_start[i + 1]:
                found = self._cross(i, brow, bdata, bstride, do_search, found)
            s0, s1 = sib_start[i], sib_start[i + 1]
            if s0 == s1:
                continue
            # the fee band against every sibling; pairs back inside it close
            nc = 0
            for k in range(s0, s1):
                j = sib[k]
                pj = _pool_at(pools, j, br0, br1, epoch)
                # the two pools' prices (token1 per token0 of pool i) as num / den > 0, compared
                # with the band without a division
                if flip[k]:
                    xs[1], ys[1] = pj.r1, pj.r0
                    num, den = pi.f1 * pj.f1, pi.f0 * pj.f0
                else:
                    xs[1], ys[1] = pj.r0, pj.r1
                    num, den = pi.f1 * pj.f0, pi.f0 * pj.f1
                if (lo[k] * den < num < hi_[k] * den) or not _gap_exact(
                        pi.r0, pi.r1, xs[1], ys[1], self.gg[k], self.dd[k]):
                    open_[k] = 0
                    open_[mirror[k]] = 0
                else:
                    cand[nc] = <int32_t>k
                    nc += 1
            if not do_search or brow < 0:
                continue
            self.c_screened += 1
            if nc == 0:
                continue
            self.c_candidates += nc
            si = self.side[i]
            if si < 0:
                self.c_unpriced += 1
                continue
            if self._threshold(&cost, &threshold, i,
                               (<const uint64_t *>(bdata + brow * bstride + O_GAS))[0]):
                self.c_overflow += 1
                continue
            kbest = -1
            for c in range(nc):
                k = self.cand[c]
                j = self.book.sib[k]
                sb = si ^ <int8_t>self.flip[k]  # j's side of the same profit token
                # X is the profit token; trades (a, b) = (i, j), then (j, i)
                pj = &self.pools[j]  # current this call: the band test above set it
                xs[0] = pi.r0 if si else pi.r1
                ys[0] = pi.r1 if si else pi.r0
                xs[1] = pj.r0 if sb else pj.r1
                ys[1] = pj.r1 if sb else pj.r0
                for a in range(2):
                    b = 1 - a
                    pa = i if a == 0 else j
                    pb = j if a == 0 else i
                    rc = tio_amm_best_cross_pool(
                        &res, xs[a], ys[a], xs[b], ys[b], &threshold, self.max_scan,
                        self.book.fee_num[pa], self.book.fee_den[pa], self.book.fee_num[pb],
                        self.book.fee_den[pb])
                    if rc == TIO_AMM_OVERFLOW:
                        self.c_overflow += 1
                    if rc != TIO_AMM_OK:
                        continue
                    if kbest < 0 or tio_u256_cmp(&res.gross_profit, &best.gross_profit) > 0:
                        best = res
                        kbest = k
                        self.buf[found].pool_a = pa
                        self.buf[found].pool_b = pb
                        self.buf[found].profit_token0 = <uint8_t>(si if a == 0 else sb)
            if kbest < 0:
                continue
            if self.open_[kbest]:
                self.c_repeats += 1
                continue
            self.open_[kbest] = 1
            self.open_[self.mirror[kbest]] = 1
            self.buf[found].row = brow
            self.buf[found].optimal = best.optimal != 0
            self.buf[found].amount_in = best.amount_in
            self.buf[found].amount_mid = best.amount_mid
            self.buf[found].amount_out = best.amount_out
            self.buf[found].gross_profit = best.gross_profit
            self.buf[found].gas_cost = cost
            found += 1
        self.c_found += found
        return found

    cdef int _threshold(self, tio_u256 *cost, tio_u256 *threshold, int32_t i,
                        uint64_t gas_price) noexcept nogil:
        """``cost``: a back-run's gas (``gas_units`` at ``gas_price``) in pool ``i``'s profit token,
        rounded up; ``threshold``: that plus ``min_profit``, the least gross profit worth
        reporting. 1 when either needs more than 256 bits."""
        cdef uint64_t hi
        cdef tio_u256 gas_wei
        gas_wei.w[0] = tio_mul64(self.gas_units, gas_price, &hi)
        gas_wei.w[1] = hi
        gas_wei.w[2] = 0
        gas_wei.w[3] = 0
        return _gas_cost(cost, &gas_wei, &self.pnum[i], &self.pden[i]) \
            or tio_u256_add(threshold, cost, &self._min_profit)

    cdef Py_ssize_t _cross(self, int32_t i, int64_t brow, const char *bdata, Py_ssize_t bstride,
                           bint do_search, Py_ssize_t found) noexcept nogil:
        """Pool i (just swapped) against its cross-protocol siblings: each route's marginal
        rate closes pairs, then the exact search (_xsearch) both ways; one report per row, the
        best gross profit (ties: the first found). ``found``: reports so far; returns the new
        count."""
        cdef Py_ssize_t k, kbest = -1
        cdef int32_t j
        cdef int8_t si = self.side[i]
        cdef bint x0i, x0j, maybe_a, maybe_b, have_cost = False
        cdef int rc, a
        cdef double ri, rj, bi, bj
        cdef tio_u256 *br0 = self.book.r0
        cdef tio_u256 *br1 = self.book.r1
        cdef const uint8_t *proto = self.book.proto
        cdef const tio_u256 *w0 = self.book.w0
        cdef const tio_u256 *w1 = self.book.w1
        cdef const tio_u256 *bfee = self.book.bfee
        cdef const uint32_t *fn = self.book.fee_num
        cdef const uint32_t *fd = self.book.fee_den
        cdef tio_screen_pool *pi = _pool_at(self.pools, i, br0, br1, self.epoch)
        cdef tio_screen_pool *pj
        cdef tio_xleg xi, xj, yi, yj   # x*: the pool selling X (the profit token), y*: selling Y
        cdef tio_amm_cross res, best
        cdef tio_u256 cost, threshold
        cdef int32_t pa = 0, pb = 0
        cdef uint8_t pt0 = 0
        memset(&best, 0, sizeof(best))
        memset(&threshold, 0, sizeof(threshold))  # set with have_cost; gcc cannot see that
        x0i = si != 0   # an unpriced pair: token0 stands in, for closing pairs only
        for k in range(self.book.xsib_start[i], self.book.xsib_start[i + 1]):
            j = self.book.xsib[k]
            pj = _pool_at(self.pools, j, br0, br1, self.epoch)
            x0j = x0i ^ (self.xflip[k] != 0)
            if _xleg_set(&xi, pi.r0, pi.r1, x0i, proto[i] == BAL, &w0[i], &w1[i], &bfee[i],
                         fn[i], fd[i]) \
                    or _xleg_set(&yi, pi.r0, pi.r1, not x0i, proto[i] == BAL, &w0[i], &w1[i],
                                 &bfee[i], fn[i], fd[i]) \
                    or _xleg_set(&xj, pj.r0, pj.r1, x0j, proto[j] == BAL, &w0[j], &w1[j],
                                 &bfee[j], fn[j], fd[j]) \
                    or _xleg_set(&yj, pj.r0, pj.r1, not x0j, proto[j] == BAL, &w0[j], &w1[j],
                                 &bfee[j], fn[j], fd[j]):
                self.c_overflow += 1
                continue
            # route A sells X on i, Y on j; route B the reverse. A route with a marginal gain
            # below 1 - 1e-9 (the doubles' margin) gains at no input.
            ri, rj = _xleg_rate(&xi), _xleg_rate(&xj)
            bi, bj = _xleg_rate(&yi), _xleg_rate(&yj)
            maybe_a = ri * bj > 1 - 1e-9
            maybe_b = rj * bi > 1 - 1e-9
            if not (maybe_a or maybe_b):
                self.xopen[k] = 0
                self.xopen[self.xmirror[k]] = 0
                continue
            if not do_search or brow < 0:
                continue
            self.c_candidates += 1
            if si < 0:
                self.c_unpriced += 1
                continue
            if not have_cost:
                if self._threshold(&cost, &threshold, i,
                                   (<const uint64_t *>(bdata + brow * bstride + O_GAS))[0]):
                    self.c_overflow += 1
                    return found
                have_cost = True
            rc = TIO_AMM_NONE
            for a in range(2):
                if not (maybe_a if a == 0 else maybe_b):
                    continue
                if a == 0:
                    rc = _xsearch(&res, &xi, &yj, self.max_scan)
                else:
                    rc = _xsearch(&res, &xj, &yi, self.max_scan)
                if rc == TIO_AMM_OVERFLOW:
                    self.c_overflow += 1
                if rc != TIO_AMM_OK:
                    continue
                if tio_u256_cmp(&res.gross_profit, &threshold) <= 0:
                    continue
                if kbest < 0 or tio_u256_cmp(&res.gross_profit, &best.gross_profit) > 0:
                    best = res
                    kbest = k
                    if a == 0:
                        pa, pb, pt0 = i, j, x0i
                    else:
                        pa, pb, pt0 = j, i, x0j
        if kbest < 0:
            return found
        if self.xopen[kbest]:
            self.c_repeats += 1
            return found
        self.xopen[kbest] = 1
        self.xopen[self.xmirror[kbest]] = 1
        self.buf[found].row = brow
        self.buf[found].pool_a = pa
        self.buf[found].pool_b = pb
        self.buf[found].profit_token0 = pt0
        self.buf[found].optimal = best.optimal != 0
        self.buf[found].amount_in = best.amount_in
        self.buf[found].amount_mid = best.amount_mid
        self.buf[found].amount_out = best.amount_out
        self.buf[found].gross_profit = best.gross_profit
        self.buf[found].gas_cost = cost
        return found + 1


@cython.final
cdef class SandwichScreen(_Screen):
    """SandwichScreen(book, prices, *, gas_units=120_000, min_profit=0)

    Sandwich sizing for every pending swap of a batch, in C.

    ``screen(batch)`` reads the book's last ``apply`` like ``ArbitrageScreen``. Each pending V2
    swap on a known Uniswap V2 pool (Balancer V1 victims are not sized) in the right tokens (applied or reverted: the outcome's status up to
    ``STATUS_REVERTED_OVERFLOW``) is a victim, judged on its pool's reserves **before** it:
    ``tio_amm_best_sandwich`` finds the largest front-run its ``amount_out_min`` survives (or the
    profit's interior peak), the back-run selling all the front-run bought, and the exact gross
    profit, in the token the victim sells. A victim that moves the price less than the two legs'
    fees is dismissed at once. Gas: two transactions of ``gas_units``, the front-run at the
    victim's gas price + 1 wei and the back-run at the victim's, priced in the sold token
    (``prices``: a ``tallyio.pricing.PriceTable``; an unpriced token is skipped and counted). Kept
    when the gross profit exceeds gas + ``min_profit``.

    Returns a ``SANDWICH_DTYPE`` array, one row per victim, in row order: ``row`` (in ``batch``),
    ``pool``, ``zero_for_one`` (the victim sells token0), ``bound`` (0: the victim's slippage
    bounds the front-run, 1: the profit peaks first), ``front_in``, ``front_out``,
    ``victim_out``, ``back_out``, ``gross_profit``, ``gas_cost``. ``stats()``: ``screened``,
    ``unpriced``, ``found``, ``overflow``. ``search=False`` screens nothing (the screen keeps no
    state).
    """
    cdef readonly uint64_t gas_units
    cdef readonly object min_profit
    cdef tio_u256 _min_profit
    cdef object _priced, _num, _den
    cdef uint8_t *priced       # slot 2 i + zero_for_one: the token pool i's victim sells
    cdef tio_u256 *num
    cdef tio_u256 *den
    cdef tio_sw_found *buf
    cdef Py_ssize_t cap
    cdef uint64_t c_screened, c_unpriced, c_found, c_overflow

    def __cinit__(self, *args, **kwargs):
        self.buf = NULL
        self.cap = 0

    def __dealloc__(self):
        free(self.buf)

    def __init__(self, PoolBook book not None, prices, *, gas_units=120_000, min_profit=0):
        self.gas_units = _u64_arg(gas_units, "gas_units", 0)
        words = _u256_arg(min_profit, "min_profit")
        memcpy(&self._min_profit, <const void *>cnp.PyArray_DATA(words), 32)
        self.min_profit = int(min_profit)
        cdef Py_ssize_t n = book.n, i
        # slot 2 i + 1: pool i's token0 (sold when zero_for_one), slot 2 i: its token1
        priced = np.zeros(2 * n, np.uint8)
        num = np.ones((2 * n, 4), np.uint64)
        num[:, 1:] = 0
        den = num.copy()
        for i in range(n):
            for slot, t in ((2 * i + 1, book.token0(i)), (2 * i, book.token1(i))):
                if t in prices.prices:
                    priced[slot] = 1
                    num[slot], den[slot] = _price_words(prices.prices[t], t)
        self._priced, self._num, self._den = priced, num, den
        self.priced = <uint8_t *>cnp.PyArray_DATA(priced)
        self.num = <tio_u256 *>cnp.PyArray_DATA(num)
        self.den = <tio_u256 *>cnp.PyArray_DATA(den)
        self.book = book
        self.c_screened = self.c_unpriced = self.c_found = self.c_overflow = 0

    def stats(self):
        return {"screened": self.c_screened, "unpriced": self.c_unpriced, "found": self.c_found,
                "overflow": self.c_overflow}

    def __call__(self, batch, *, search=True):
        """Screen ``batch`` (the rows of the book's last apply, or a subset matched by id);
        returns the ``SANDWICH_DTYPE`` rows found (see the class docstring)."""
        cdef PoolBook book = self._book()
        batch = _rows_arg(batch, "batch")
        if not search:
            return np.empty(0, SANDWICH_DTYPE)
        sel_arr = self._select(book, batch)
        outcome = book._outcome
        cdef Py_ssize_t n_all = outcome.shape[0], found
        cdef const tio_book_outcome *o = <const tio_book_outcome *>cnp.PyArray_DATA(outcome)
        cdef const int64_t *sel = NULL
        if sel_arr is not None:
            sel = <const int64_t *>cnp.PyArray_DATA(sel_arr)
        cdef const char *bdata = <const char *>cnp.PyArray_DATA(batch)
        cdef Py_ssize_t bstride = batch.strides[0]
        if n_all > self.cap:
            self.buf = <tio_sw_found *>realloc(self.buf, n_all * sizeof(tio_sw_found))
            if self.buf == NULL:
                self.cap = 0
                raise MemoryError("SandwichScreen buffer")
            self.cap = n_all
        book._enter(False)
        try:
            if n_all >= NOGIL_MIN:
                with nogil:
                    found = self._run(o, n_all, sel, bdata, bstride)
            else:
                found = self._run(o, n_all, sel, bdata, bstride)
        finally:
            book._leave(False)
        out = np.empty(found, SANDWICH_DTYPE)
        if found:
            memcpy(cnp.PyArray_DATA(out), self.buf, found * sizeof(tio_sw_found))
        return out

    cdef Py_ssize_t _run(self, const tio_book_outcome *o, Py_ssize_t n_all, const int64_t *sel,
                         const char *bdata, Py_ssize_t bstride) noexcept nogil:
        """The screen's loop over the outcome rows (see the class docstring); the number of
        victims written to ``buf``."""
        cdef Py_ssize_t r, slot
        cdef Py_ssize_t found = 0
        cdef int64_t brow
        cdef int32_t i
        cdef int rc
        cdef uint64_t gas
        cdef const char *row
        cdef tio_u256 v, m, units, legs, gas_wei, cost, need
        cdef const tio_u256 *rin
        cdef const tio_u256 *rout
        cdef tio_amm_sandwich res
        cdef double fg, fd, fx, fv
        tio_u256_from_u64(&units, self.gas_units)
        for r in range(n_all):
            if o[r].status > TIO_BOOK_REVERTED_OVERFLOW:
                continue
            # the sizing is Uniswap V2 math: a Balancer V1 victim is not sized
            if self.book.n_bal and self.book.proto[o[r].pool] != V2:
                continue
            brow = r if sel == NULL else sel[r]
            if brow < 0:
                continue
            self.c_screened += 1
            i = o[r].pool
            slot = 2 * i + o[r].zero_for_one
            if not self.priced[slot]:
                self.c_unpriced += 1
                continue
            if o[r].zero_for_one:
                rin, rout = &o[r].reserve0_before, &o[r].reserve1_before
            else:
                rin, rout = &o[r].reserve1_before, &o[r].reserve0_before
            row = bdata + brow * bstride
            memcpy(&v, row + O_AIN, sizeof(tio_u256))
            # The kernel's first test, in doubles with a 1e-9 margin: a victim that moves the price
            # less than the two legs' fees, g^2 (x + v)(D x + g v) <= D^3 x^2, cannot be
            # sandwiched at a profit. Nearly every swap is one; only the rest pay for exact math.
            fg, fd = <double>self.book.fee_num[i], <double>self.book.fee_den[i]
            fx, fv = _f(rin), _f(&v)
            if fg * fg * (fx + fv) * (fd * fx + fg * fv) < fd * fd * fd * fx * fx * (1 - 1e-9):
                continue
            memcpy(&m, row + O_AMIN, sizeof(tio_u256))
            rc = tio_amm_best_sandwich(&res, &v, &m, rin, rout, self.book.fee_num[i],
                                       self.book.fee_den[i])
            if rc == TIO_AMM_OVERFLOW:
                self.c_overflow += 1
            if rc != TIO_AMM_OK:
                continue
            # gas_units * (2 gas + 1): the front-run pays 1 wei more than the victim
            gas = (<const uint64_t *>(row + O_GAS))[0]
            legs.w[0] = gas * 2 + 1
            legs.w[1] = gas >> 63
            legs.w[2] = 0
            legs.w[3] = 0
            tio_u256_mul(&gas_wei, &units, &legs)  # below 2**129: cannot overflow
            if _gas_cost(&cost, &gas_wei, &self.num[slot], &self.den[slot]) \
                    or tio_u256_add(&need, &cost, &self._min_profit):
                self.c_overflow += 1
                continue
            if tio_u256_cmp(&res.gross_profit, &need) <= 0:
                continue
            self.buf[found].row = brow
            self.buf[found].pool = i
            self.buf[found].zero_for_one = o[r].zero_for_one
            self.buf[found].bound = <uint8_t>res.bound
            self.buf[found].front_in = res.front_in
            self.buf[found].front_out = res.front_out
            self.buf[found].victim_out = res.victim_out
            self.buf[found].back_out = res.back_out
            self.buf[found].gross_profit = res.gross_profit
            self.buf[found].gas_cost = cost
            found += 1
        self.c_found += found
        return found
