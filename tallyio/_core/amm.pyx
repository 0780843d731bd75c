# cython: language_level=3, boundscheck=False, wraparound=False, binding=False
"""Exact Uniswap V2 kernels in u256 (tallyio/_core/include/tallyio/amm.h) for Python callers.

Every function validates its arguments (Python ints in [0, 2**256), a fee ``(num, den)`` with
``0 < num < den < 2**32``), converts them to four 64-bit words, runs the C kernel without the GIL
and converts back. The results equal the pure-Python reference, ``tallyio.amm_reference``, bit
for bit; where the reference's answer is 2**256 or more, these raise ``AmmOverflowError``.
"""
from libc.stdint cimport uint8_t, uint32_t, uint64_t
from libc.string cimport memcpy
cimport numpy as cnp
import numpy as np

from tallyio.amm_reference import CrossPool, Sandwich
from tallyio.errors import AmmOverflowError

cnp.import_array()

cdef extern from *:
    """
    /* Python int <-> four little-endian words. The private byte-array converters are the fast
     * way in 3.11 / 3.12; 3.13 made them public as PyLong_AsNativeBytes /
     * PyLong_FromUnsignedNativeBytes (and changed the private signature). */
    static int tio_py_words(PyObject *v, uint64_t *w) {
        /* 0: fits, 1: negative, 2: >= 2**256, -1: Python error set */
        int overflow = 0;
        long long s = PyLong_AsLongLongAndOverflow(v, &overflow);
        if (!overflow) {
            if (s == -1 && PyErr_Occurred()) return -1;
            if (s < 0) return 1;
            w[0] = (uint64_t)s; w[1] = w[2] = w[3] = 0;
            return 0;
        }
        if (overflow < 0) return 1;
        unsigned char b[32];
    #if PY_VERSION_HEX >= 0x030D0000
        Py_ssize_t n = PyLong_AsNativeBytes(v, b, 32, Py_ASNATIVEBYTES_LITTLE_ENDIAN |
                                            Py_ASNATIVEBYTES_UNSIGNED_BUFFER);
        if (n < 0) return -1;
        if (n > 32) return 2;
    #else
        if (_PyLong_NumBits(v) > 256) return 2;
        if (_PyLong_AsByteArray((PyLongObject *)v, b, 32, 1, 0) < 0) return -1;
    #endif
        for (int i = 0; i < 4; i++) {
            uint64_t x = 0;
            for (int j = 7; j >= 0; j--) x = (x << 8) | b[8 * i + j];
            w[i] = x;
        }
        return 0;
    }

    static PyObject *tio_words_py(const uint64_t *w) {
        if (!(w[1] | w[2] | w[3])) return PyLong_FromUnsignedLongLong(w[0]);
        unsigned char b[32];
        for (int i = 0; i < 4; i++)
            for (int j = 0; j < 8; j++) b[8 * i + j] = (unsigned char)(w[i] >> (8 * j));
    #if PY_VERSION_HEX >= 0x030D0000
        return PyLong_FromUnsignedNativeBytes(b, 32, Py_ASNATIVEBYTES_LITTLE_ENDIAN);
    #else
        return _PyLong_FromByteArray(b, 32, 1, 0);
    #endif
    }
    """
    int tio_py_words(object v, uint64_t *w) except? -1
    object tio_words_py(const uint64_t *w)


FEE = (997, 1000)  # Uniswap V2: the pool keeps 0.3% of every input
WINDOW = TIO_AMM_WINDOW

#: Status codes of the batch entry points (``get_amount_out_many``) and of the C kernels.
OK = TIO_AMM_OK
NONE = TIO_AMM_NONE
ZERO_INPUT = TIO_AMM_ZERO_INPUT
ZERO_RESERVE = TIO_AMM_ZERO_RESERVE
OVERFLOW = TIO_AMM_OVERFLOW
INSUFFICIENT_LIQUIDITY = TIO_AMM_INSUFFICIENT_LIQUIDITY
BAD_FEE = TIO_AMM_BAD_FEE

_U64 = np.dtype(np.uint64)
_U32 = np.dtype(np.uint32)


cdef int to_u256(object v, tio_u256 *r, str name) except -1:
    """Store the int ``v`` in ``r``; ValueError (naming ``name``) outside [0, 2**256)."""
    if type(v) is not int:
        if isinstance(v, bool) or not hasattr(v, "__index__"):
            raise TypeError(f"{name} must be an int, got {v!r}")
        v = v.__index__()
    cdef int rc = tio_py_words(v, r.w)
    if rc == 1:
        raise ValueError(f"{name} must be non-negative, got {v}")
    if rc == 2:
        raise ValueError(f"{name} must be below 2**256, got {v}")
    return 0


cdef object from_u256(const tio_u256 *a):
    """The exact Python int held by ``a``."""
    return tio_words_py(a.w)


cdef int parse_fee(object fee, uint32_t *num, uint32_t *den, str name) except -1:
    if fee is FEE:  # the default: no parsing on the common path
        num[0] = 997
        den[0] = 1000
        return 0
    try:
        n, d = fee
        if isinstance(n, bool) or isinstance(d, bool):
            raise TypeError
        n, d = n.__index__(), d.__index__()
    except (TypeError, ValueError, AttributeError):
        raise TypeError(f"{name} must be a (fee_num, fee_den) pair of ints, got {fee!r}") from None
    if not 0 < n < d < (1 << 32):
        raise ValueError(f"{name} must satisfy 0 < fee_num < fee_den < 2**32, got {fee!r}")
    num[0] = <uint32_t>n
    den[0] = <uint32_t>d
    return 0


def get_amount_out(amount_in, reserve_in, reserve_out, fee=FEE):
    """get_amount_out(amount_in, reserve_in, reserve_out, fee=(997, 1000)) -> int

    ``UniswapV2Library.getAmountOut`` with the pool's fee ``(g, D)``:
    ``amount_in*g*reserve_out // (reserve_in*D + amount_in*g)``, exact. Raises ValueError where the
    library reverts (a zero input or reserve), for a value outside [0, 2**256) or a bad fee.
    """
    cdef tio_u256 a, rin, rout, out
    cdef uint32_t g, D
    parse_fee(fee, &g, &D, "fee")
    to_u256(amount_in, &a, "amount_in")
    to_u256(reserve_in, &rin, "reserve_in")
    to_u256(reserve_out, &rout, "reserve_out")
    cdef int rc = tio_amm_get_amount_out(&out, &a, &rin, &rout, g, D)
    if rc == TIO_AMM_OK:
        return from_u256(&out)
    if rc == TIO_AMM_ZERO_INPUT:
        raise ValueError(f"amount_in must be positive, got {amount_in}")
    raise ValueError(f"reserves must be positive, got {reserve_in}, {reserve_out}")


def get_amount_in(amount_out, reserve_in, reserve_out, fee=FEE):
    """get_amount_in(amount_out, reserve_in, reserve_out, fee=(997, 1000)) -> int

    ``UniswapV2Library.getAmountIn`` with the pool's fee ``(g, D)``: the smallest input that buys
    ``amount_out``, ``reserve_in*amount_out*D // ((reserve_out - amount_out)*g) + 1``. Raises
    ValueError where the library reverts (a zero amount or reserve, ``amount_out >=
    reserve_out``), for a value outside [0, 2**256) or a bad fee; AmmOverflowError when the input
    needs more than 256 bits.
    """
    cdef tio_u256 o, rin, rout, out
    cdef uint32_t g, D
    parse_fee(fee, &g, &D, "fee")
    to_u256(amount_out, &o, "amount_out")
    to_u256(reserve_in, &rin, "reserve_in")
    to_u256(reserve_out, &rout, "reserve_out")
    cdef int rc = tio_amm_get_amount_in(&out, &o, &rin, &rout, g, D)  # ~100 ns: keep the GIL
    if rc == TIO_AMM_OK:
        return from_u256(&out)
    if rc == TIO_AMM_ZERO_INPUT:
        raise ValueError(f"amount_out must be positive, got {amount_out}")
    if rc == TIO_AMM_ZERO_RESERVE:
        raise ValueError(f"reserves must be positive, got {reserve_in}, {reserve_out}")
    if rc == TIO_AMM_INSUFFICIENT_LIQUIDITY:
        raise ValueError(f"amount_out must be below reserve_out, got {amount_out} >= {reserve_out}")
    raise AmmOverflowError(f"get_amount_in({amount_out}, {reserve_in}, {reserve_out}, fee={fee!r}) "
                           f"needs an input of 2**256 or more")


def price_cmp(reserve0_a, reserve1_a, reserve0_b, reserve1_b):
    """price_cmp(reserve0_a, reserve1_a, reserve0_b, reserve1_b) -> int

    -1, 0 or 1 as pool a's price ``reserve1_a / reserve0_a`` is below, equal to or above pool b's,
    exactly (512-bit cross products). ValueError for a zero reserve or a value outside
    [0, 2**256).
    """
    cdef tio_u256 r0a, r1a, r0b, r1b
    cdef int c = 0
    to_u256(reserve0_a, &r0a, "reserve0_a")
    to_u256(reserve1_a, &r1a, "reserve1_a")
    to_u256(reserve0_b, &r0b, "reserve0_b")
    to_u256(reserve1_b, &r1b, "reserve1_b")
    if tio_amm_price_cmp(&c, &r0a, &r1a, &r0b, &r1b) != TIO_AMM_OK:
        _zero_reserve(reserve0_a=reserve0_a, reserve1_a=reserve1_a, reserve0_b=reserve0_b,
                      reserve1_b=reserve1_b)
    return c


def _zero_reserve(**reserves):
    """Raise the ValueError the reference raises for the first non-positive reserve."""
    for name, r in reserves.items():
        if r <= 0:
            raise ValueError(f"{name} must be positive, got {r}")
    raise AssertionError("no zero reserve")  # the kernel said there was one


def best_cross_pool(xa, ya, xb, yb, threshold=0, max_scan=1024, fee_a=FEE, fee_b=FEE):
    """best_cross_pool(xa, ya, xb, yb, threshold=0, max_scan=1024, fee_a=FEE, fee_b=FEE)
    -> CrossPool | None

    ``FEE`` is ``(997, 1000)``, Uniswap V2's. The input that maximizes the exact profit of selling X for Y on pool A (reserves ``xa``,
    ``ya``, fee ``fee_a``) and the Y back for X on pool B (``yb``, ``xb``, ``fee_b``): a
    ``CrossPool(amount_in, amount_mid, amount_out, gross_profit, optimal)``, or None unless some
    input's gross profit exceeds ``threshold``. ``optimal`` is True when the whole interval that
    can beat the best was scanned (at most ``max_scan`` inputs), else the answer is within 2 units
    of the maximum. Equal to ``tallyio.amm_reference.best_cross_pool``. Raises ValueError for a
    zero reserve, a value outside [0, 2**256), ``max_scan`` outside [0, 2**64) or a bad fee.
    """
    cdef tio_u256 XA, YA, XB, YB, T
    cdef tio_amm_cross res
    cdef uint32_t ga, Da, gb, Db
    cdef uint64_t scan
    parse_fee(fee_a, &ga, &Da, "fee_a")
    parse_fee(fee_b, &gb, &Db, "fee_b")
    to_u256(xa, &XA, "xa")
    to_u256(ya, &YA, "ya")
    to_u256(xb, &XB, "xb")
    to_u256(yb, &YB, "yb")
    to_u256(threshold, &T, "threshold")
    if isinstance(max_scan, bool) or not isinstance(max_scan, int) or not 0 <= max_scan < (1 << 64):
        raise ValueError(f"max_scan must be an int in [0, 2**64), got {max_scan!r}")
    scan = <uint64_t>max_scan
    cdef int rc
    with nogil:
        rc = tio_amm_best_cross_pool(&res, &XA, &YA, &XB, &YB, &T, scan, ga, Da, gb, Db)
    if rc == TIO_AMM_OK:
        return CrossPool(from_u256(&res.amount_in), from_u256(&res.amount_mid),
                         from_u256(&res.amount_out), from_u256(&res.gross_profit),
                         bool(res.optimal))
    if rc == TIO_AMM_NONE:
        return None
    if rc == TIO_AMM_ZERO_RESERVE:
        _zero_reserve(xa=xa, ya=ya, xb=xb, yb=yb)
    raise AmmOverflowError(f"best_cross_pool({xa}, {ya}, {xb}, {yb}, {threshold}): an "
                           f"intermediate past 1280 bits")


cdef int _victim_args(object victim_in, object victim_min_out, object reserve_in,
                      object reserve_out, object fee, tio_u256 *v, tio_u256 *m, tio_u256 *x,
                      tio_u256 *y, uint32_t *g, uint32_t *D) except -1:
    parse_fee(fee, g, D, "fee")
    to_u256(victim_in, v, "victim_in")
    to_u256(victim_min_out, m, "victim_min_out")
    to_u256(reserve_in, x, "reserve_in")
    to_u256(reserve_out, y, "reserve_out")
    return 0


def max_frontrun(victim_in, victim_min_out, reserve_in, reserve_out, fee=FEE):
    """max_frontrun(victim_in, victim_min_out, reserve_in, reserve_out, fee=FEE) -> int | None

    The largest front-run (same direction as the victim) after which the victim's swap of
    ``victim_in`` still pays at least ``max(victim_min_out, 1)``; None when it fails even without
    one. Equal to ``tallyio.amm_reference.max_frontrun``. Raises ValueError for a zero reserve, a
    value outside [0, 2**256) or a bad fee; AmmOverflowError when the answer is 2**256 or more.
    """
    cdef tio_u256 v, m, x, y, f
    cdef uint32_t g, D
    _victim_args(victim_in, victim_min_out, reserve_in, reserve_out, fee, &v, &m, &x, &y, &g, &D)
    cdef int rc
    with nogil:
        rc = tio_amm_max_frontrun(&f, &v, &m, &x, &y, g, D)
    if rc == TIO_AMM_OK:
        return from_u256(&f)
    if rc == TIO_AMM_NONE:
        return None
    if rc == TIO_AMM_ZERO_RESERVE:
        _zero_reserve(reserve_in=reserve_in, reserve_out=reserve_out)
    raise AmmOverflowError(f"max_frontrun({victim_in}, {victim_min_out}, {reserve_in}, "
                           f"{reserve_out}) is 2**256 or more")


def best_sandwich(victim_in, victim_min_out, reserve_in, reserve_out, fee=FEE):
    """best_sandwich(victim_in, victim_min_out, reserve_in, reserve_out, fee=FEE)
    -> Sandwich | None

    The front-run to use against a victim selling ``victim_in`` with slippage bound
    ``victim_min_out`` into a pool of ``reserve_in`` / ``reserve_out``, and what it earns before
    gas: a ``Sandwich(front_in, front_out, victim_out, back_out, gross_profit, bound)``, or None
    when no front-run can profit. Equal to ``tallyio.amm_reference.best_sandwich``. Raises
    ValueError for a zero reserve, a value outside [0, 2**256) or a bad fee; AmmOverflowError when
    the front-run or what it brings back is 2**256 or more.
    """
    cdef tio_u256 v, m, x, y
    cdef tio_amm_sandwich res
    cdef uint32_t g, D
    _victim_args(victim_in, victim_min_out, reserve_in, reserve_out, fee, &v, &m, &x, &y, &g, &D)
    cdef int rc
    with nogil:
        rc = tio_amm_best_sandwich(&res, &v, &m, &x, &y, g, D)
    if rc == TIO_AMM_OK:
        front, back = from_u256(&res.front_in), from_u256(&res.back_out)
        return Sandwich(front, from_u256(&res.front_out), from_u256(&res.victim_out), back,
                        back - front,
                        "slippage" if res.bound == TIO_AMM_BOUND_SLIPPAGE else "profit")
    if rc == TIO_AMM_NONE:
        return None
    if rc == TIO_AMM_ZERO_RESERVE:
        _zero_reserve(reserve_in=reserve_in, reserve_out=reserve_out)
    raise AmmOverflowError(f"best_sandwich({victim_in}, {victim_min_out}, {reserve_in}, "
                           f"{reserve_out}): the front-run or its return is 2**256 or more")


# ---------------------------------------------------------------- batches

cdef cnp.ndarray u256_column(object a, str name):
    """``a`` as an (n, 4) uint64 array whose rows hold 4 consecutive words (any row stride: a
    field of TX_DTYPE rows is used in place)."""
    arr = np.asarray(a)
    if arr.dtype != _U64 or arr.ndim != 2 or arr.shape[1] != 4:
        raise ValueError(f"{name} must be an (n, 4) uint64 array of u256 words, got "
                         f"{arr.dtype} {arr.shape}")
    if arr.strides[1] != 8 or arr.strides[0] < 0:
        arr = np.ascontiguousarray(arr)
    return arr


cdef cnp.ndarray fee_column(object f, Py_ssize_t n, str name):
    """A fee operand as a uint32 array of length n (a scalar is broadcast)."""
    arr = np.asarray(f)
    if arr.ndim == 0:
        v = int(arr)
        if not 0 < v < (1 << 32):
            raise ValueError(f"{name} must be in (0, 2**32), got {v}")
        return np.full(n, v, dtype=_U32)
    if arr.ndim != 1 or arr.shape[0] != n:
        raise ValueError(f"{name} must be a scalar or a 1-D array of length {n}, got shape "
                         f"{arr.shape}")
    if arr.dtype.kind not in "ui":
        raise ValueError(f"{name} must hold integers, got {arr.dtype}")
    if n and (arr.min() <= 0 or arr.max() >= (1 << 32)):
        raise ValueError(f"{name} must hold values in (0, 2**32), got {arr.min()}..{arr.max()}")
    return np.ascontiguousarray(arr, dtype=_U32)


def get_amount_out_many(amount_in, reserve_in, reserve_out, fee_num=997, fee_den=1000):
    """get_amount_out_many(amount_in, reserve_in, reserve_out, fee_num=997, fee_den=1000)
    -> (out, status)

    ``get_amount_out`` of every row, without the GIL. The three amounts are (n, 4) uint64 arrays
    of u256 words (a TX_DTYPE field such as ``batch['amount_in']`` works in place); ``fee_num``
    and ``fee_den`` are scalars or length-n arrays. Returns ``out``, an (n, 4) uint64 array, and
    ``status``, a uint8 array: ``OK``, or ``ZERO_INPUT`` / ``ZERO_RESERVE`` / ``BAD_FEE`` for a row
    the library would revert (its ``out`` is 0). Raises ValueError for arrays of the wrong shape
    or dtype.
    """
    cdef cnp.ndarray A = u256_column(amount_in, "amount_in")
    cdef cnp.ndarray RI = u256_column(reserve_in, "reserve_in")
    cdef cnp.ndarray RO = u256_column(reserve_out, "reserve_out")
    cdef Py_ssize_t n = A.shape[0], i
    if RI.shape[0] != n or RO.shape[0] != n:
        raise ValueError(f"amount_in, reserve_in and reserve_out must have the same length, got "
                         f"{n}, {RI.shape[0]}, {RO.shape[0]}")
    cdef cnp.ndarray FN = fee_column(fee_num, n, "fee_num")
    cdef cnp.ndarray FD = fee_column(fee_den, n, "fee_den")
    out = np.zeros((n, 4), dtype=_U64)
    status = np.empty(n, dtype=np.uint8)
    cdef const char *pa = <const char *>cnp.PyArray_DATA(A)
    cdef const char *pri = <const char *>cnp.PyArray_DATA(RI)
    cdef const char *pro = <const char *>cnp.PyArray_DATA(RO)
    cdef Py_ssize_t sa = A.strides[0], sri = RI.strides[0], sro = RO.strides[0]
    cdef const uint32_t *fn = <const uint32_t *>cnp.PyArray_DATA(FN)
    cdef const uint32_t *fd = <const uint32_t *>cnp.PyArray_DATA(FD)
    cdef tio_u256 *po = <tio_u256 *>cnp.PyArray_DATA(out)
    cdef uint8_t *ps = <uint8_t *>cnp.PyArray_DATA(status)
    cdef tio_u256 a, ri, ro
    with nogil:
        for i in range(n):
            # memcpy: a structured row's field need not be 8-byte aligned
            memcpy(&a, pa + i * sa, 32)
            memcpy(&ri, pri + i * sri, 32)
            memcpy(&ro, pro + i * sro, 32)
            ps[i] = <uint8_t>tio_amm_get_amount_out(&po[i], &a, &ri, &ro, fn[i], fd[i])
    return out, status


def to_u256_column(values):
    """to_u256_column(values) -> (n, 4) uint64 array

    The u256 words of a sequence of ints in [0, 2**256) (ValueError naming the index otherwise).
    """
    vals = list(values)
    cdef Py_ssize_t n = len(vals), i
    out = np.empty((n, 4), dtype=_U64)
    cdef tio_u256 *po = <tio_u256 *>cnp.PyArray_DATA(out)
    for i in range(n):
        to_u256(vals[i], &po[i], f"values[{i}]")
    return out


def from_u256_column(column):
    """from_u256_column(column) -> list[int]

    The exact ints of an (n, 4) uint64 array of u256 words.
    """
    cdef cnp.ndarray C = u256_column(column, "column")
    cdef Py_ssize_t n = C.shape[0], i, s = C.strides[0]
    cdef const char *p = <const char *>cnp.PyArray_DATA(C)
    cdef tio_u256 w
    res = [None] * n
    for i in range(n):
        memcpy(&w, p + i * s, 32)
        res[i] = from_u256(&w)
    return res


# ---------------------------------------------------------------- test hook

cdef extern from "tallyio/u256.h" nogil:
    enum:
        TIO_BIG_LIMBS
    ctypedef struct tio_big:
        int n
        uint64_t w[20]
    int tio_big_divmod(tio_big *q, tio_big *rem, const tio_big *a, const tio_big *b) noexcept
    void tio_big_isqrt(tio_big *r, const tio_big *a) noexcept
    int tio_big_mul(tio_big *r, const tio_big *a, const tio_big *b) noexcept
    int tio_limbs_len(const uint64_t *a, int n) noexcept


cdef int _to_big(object v, tio_big *r) except -1:
    cdef bytes b = int(v).to_bytes(8 * TIO_BIG_LIMBS, "little")
    memcpy(r.w, <const char *>b, 8 * TIO_BIG_LIMBS)
    r.n = tio_limbs_len(r.w, TIO_BIG_LIMBS)
    return 0


cdef object _from_big(const tio_big *a):
    return int.from_bytes((<const char *>a.w)[:8 * a.n], "little")


def _primitive(op, a, b=0):
    """_primitive(op, a, b=0) -> tuple

    Test hook (tests/core/test_amm.py): one primitive of u256.h on Python ints. ``add``, ``sub``,
    ``mul``: ``(result mod 2**256, flag)``; ``divmod``: ``(flag, q, r)``; ``divmod512`` (``a`` below
    2**512): ``(flag, q, r)``; ``shl``, ``shr`` (``b`` the shift): ``(result, flag)``;
    ``big_divmod``, ``big_mul`` (below 2**1280): ``(flag, q, r)`` / ``(flag, p)``; ``isqrt``:
    ``(root,)``.
    """
    cdef tio_u256 x, y, r, q
    cdef tio_u512 x512
    cdef tio_big bx, by, bq, br
    cdef int flag = 0
    cdef bytes raw
    if op in ("add", "sub", "mul", "divmod"):
        to_u256(a, &x, "a")
        to_u256(b, &y, "b")
        if op == "add":
            flag = tio_u256_add(&r, &x, &y)
        elif op == "sub":
            flag = tio_u256_sub(&r, &x, &y)
        elif op == "mul":
            flag = tio_u256_mul(&r, &x, &y)
        else:
            tio_u256_from_u64(&q, 0)
            tio_u256_from_u64(&r, 0)
            flag = tio_u256_divmod(&q, &r, &x, &y)
            return flag, from_u256(&q), from_u256(&r)
        return from_u256(&r), flag
    if op in ("shl", "shr"):
        to_u256(a, &x, "a")
        if op == "shl":
            flag = tio_u256_shl(&r, &x, <unsigned>b)
        else:
            tio_u256_shr(&r, &x, <unsigned>b)
        return from_u256(&r), flag
    if op == "divmod512":
        raw = int(a).to_bytes(64, "little")
        memcpy(x512.w, <const char *>raw, 64)
        to_u256(b, &y, "b")
        tio_u256_from_u64(&q, 0)
        tio_u256_from_u64(&r, 0)
        flag = tio_u512_divmod(&q, &r, &x512, &y)
        return flag, from_u256(&q), from_u256(&r)
    _to_big(a, &bx)
    if op == "isqrt":
        tio_big_isqrt(&br, &bx)
        return (_from_big(&br),)
    _to_big(b, &by)
    if op == "big_mul":
        flag = tio_big_mul(&bq, &bx, &by)
        return flag, (_from_big(&bq) if not flag else None)
    if op == "big_divmod":
        flag = tio_big_divmod(&bq, &br, &bx, &by)
        return flag, (_from_big(&bq) if not flag else None), (_from_big(&br) if not flag else None)
    raise ValueError(f"op must name a primitive, got {op!r}")


BMATH_REVERT = TIO_AMM_BMATH_REVERT


cdef object _balancer_v1(bint out_given_in, object balance_in, object weight_in,
                         object balance_out, object weight_out, object amount, object swap_fee):
    cdef tio_u256 bi, wi, bo, wo, a, fee, r
    cdef int rc
    to_u256(balance_in, &bi, "balance_in")
    to_u256(weight_in, &wi, "weight_in")
    to_u256(balance_out, &bo, "balance_out")
    to_u256(weight_out, &wo, "weight_out")
    to_u256(amount, &a, "amount_in" if out_given_in else "amount_out")
    to_u256(swap_fee, &fee, "swap_fee")
    with nogil:
        if out_given_in:
            rc = tio_bal_out_given_in(&r, &bi, &wi, &bo, &wo, &a, &fee)
        else:
            rc = tio_bal_in_given_out(&r, &bi, &wi, &bo, &wo, &a, &fee)
    if rc != TIO_AMM_OK:
        name = "calcOutGivenIn" if out_given_in else "calcInGivenOut"
        raise ValueError(f"Balancer V1 {name} reverts for balance_in={balance_in}, "
                         f"weight_in={weight_in}, balance_out={balance_out}, "
                         f"weight_out={weight_out}, amount={amount}, swap_fee={swap_fee}")
    return from_u256(&r)


def balancer_v1_out_given_in(balance_in, weight_in, balance_out, weight_out, amount_in, swap_fee):
    """balancer_v1_out_given_in(balance_in, weight_in, balance_out, weight_out, amount_in,
    swap_fee) -> int

    A Balancer V1 pool's ``BMath.calcOutGivenIn``, exact: what ``swapExactAmountIn`` pays out.
    Weights are the pool's denormalized weights and ``swap_fee`` its fee, both 18-decimal fixed
    point (BONE = 10**18), balances and amounts in token units. Raises ValueError where the pool's
    arithmetic reverts (an overflow, a fee above BONE, a power base outside [1, 2*BONE - 1]) and
    for a value outside [0, 2**256).
    """
    return _balancer_v1(True, balance_in, weight_in, balance_out, weight_out, amount_in, swap_fee)


def balancer_v1_in_given_out(balance_in, weight_in, balance_out, weight_out, amount_out,
                             swap_fee):
    """balancer_v1_in_given_out(balance_in, weight_in, balance_out, weight_out, amount_out,
    swap_fee) -> int

    ``BMath.calcInGivenOut``, exact: what ``swapExactAmountOut`` takes in for ``amount_out``.
    Arguments and errors as ``balancer_v1_out_given_in``.
    """
    return _balancer_v1(False, balance_in, weight_in, balance_out, weight_out, amount_out,
                        swap_fee)
