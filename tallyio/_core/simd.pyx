# cython: language_level=3, boundscheck=False, wraparound=False, binding=False
"""Batch kernels over 64-bit keys (hash, equality, watch-list membership) with scalar, AVX2 and
AVX-512 paths in one build, chosen at import by CPU feature detection.

``TALLYIO_SIMD=scalar|avx2|avx512`` (or ``auto``, the default) forces a level at import; a level
the CPU lacks, or an unknown value, is a ``tallyio.errors.ConfigError`` at import: a deployment
that demands AVX-512 should fail at start-up, not run at a speed nobody measured. Every level
returns bit-identical results; the ``level=`` keyword runs one explicitly (tests use it).
"""
import os

from libc.stdint cimport uint8_t, uint64_t
from libc.string cimport memcpy
cimport numpy as cnp
import numpy as np

from tallyio.errors import ConfigError

cnp.import_array()

LEVELS = ("scalar", "avx2", "avx512")
_U64 = np.dtype(np.uint64)

cdef int _cpu_level = tio_simd_cpu_level()
cdef int _active = TIO_SIMD_SCALAR


cdef int active_level() noexcept nogil:
    return _active


def _parse_simd_env(raw, cpu_level):
    """The level index that ``TALLYIO_SIMD=raw`` asks for on a CPU whose best is ``cpu_level``."""
    name = raw.strip().lower()
    if name in ("", "auto"):
        return cpu_level
    if name not in LEVELS:
        raise ConfigError(f"TALLYIO_SIMD must be one of auto, scalar, avx2, avx512, got {raw!r}")
    want = LEVELS.index(name)
    if want > cpu_level:
        raise ConfigError(f"TALLYIO_SIMD={raw!r} asks for {name}, which this CPU lacks "
                          f"(available: {', '.join(LEVELS[:cpu_level + 1])})")
    return want


def available_levels():
    """The levels this CPU runs, lowest first (``('scalar', 'avx2', 'avx512')`` at most)."""
    return LEVELS[:_cpu_level + 1]


def level():
    """The level the kernels use by default: ``'scalar'``, ``'avx2'`` or ``'avx512'``."""
    return LEVELS[_active]


cdef int resolve(object name) except -1:
    if name is None:
        return _active
    if not isinstance(name, str) or name not in LEVELS:
        raise ValueError(f"level must be one of {', '.join(map(repr, LEVELS))} or None, "
                         f"got {name!r}")
    cdef int want = LEVELS.index(name)
    if want > _cpu_level:
        raise ValueError(f"level {name!r} is not supported by this CPU "
                         f"(available: {', '.join(available_levels())})")
    return want


def set_level(name):
    """Make ``name`` (one of ``available_levels()``) the default level of this process; returns
    the previous one. Meant for start-up configuration and A/B runs, not for hot paths."""
    global _active
    cdef int want = resolve(name)
    old = LEVELS[_active]
    _active = want
    return old


cdef cnp.ndarray as_u64(object obj, str name):
    """``obj`` as a 1-D C-contiguous native uint64 array, converting only what converts without
    changing a value: unsigned integers and bools, signed integers that are all >= 0, and
    sequences of Python ints in [0, 2**64). The result may be unaligned; the kernels allow it."""
    if type(obj) is np.ndarray and (<cnp.ndarray>obj).descr is _U64 \
            and cnp.PyArray_NDIM(<cnp.ndarray>obj) == 1 \
            and cnp.PyArray_IS_C_CONTIGUOUS(<cnp.ndarray>obj):
        return <cnp.ndarray>obj
    a = obj if isinstance(obj, np.ndarray) else np.asarray(obj)
    if a.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {a.shape}")
    kind = a.dtype.kind
    if kind in "ub":
        return np.ascontiguousarray(a, dtype=_U64)
    if kind == "i":
        if a.size:
            pos = int(a.argmin())
            if a[pos] < 0:
                raise ValueError(f"{name} must be non-negative to convert to uint64, got "
                                 f"{a[pos]} at index {pos}")
        return np.ascontiguousarray(a, dtype=_U64)
    # A list mixing ints above 2**63 with small ones comes out as float64 or object: convert the
    # Python ints themselves, never through a float.
    if kind in "fO" and isinstance(obj, (list, tuple)) and all(
            isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in obj):
        try:
            return np.array(obj, dtype=_U64)
        except OverflowError:
            raise ValueError(f"{name} must hold integers in [0, 2**64), got {obj!r}") from None
    raise TypeError(f"{name} must be an array of unsigned 64-bit integers (or of values that "
                    f"convert to uint64 without change), got dtype {a.dtype}")


cdef inline cnp.ndarray new_array(Py_ssize_t n, int typenum):
    cdef cnp.npy_intp dims[1]
    dims[0] = n
    return cnp.PyArray_EMPTY(1, dims, typenum, 0)


def hash_batch(a, *, level=None):
    """hash_batch(a, *, level=None) -> uint64 array

    MurmurHash3's 64-bit finalizer (fmix64) of every key of ``a``: a bijection with full
    avalanche, the same function at every level. Raises TypeError / ValueError for an input that
    is not a 1-D array of values convertible to uint64.
    """
    cdef int lvl = resolve(level)
    cdef cnp.ndarray x = as_u64(a, "a")
    cdef Py_ssize_t n = cnp.PyArray_DIM(x, 0)
    cdef cnp.ndarray out = new_array(n, cnp.NPY_UINT64)
    cdef const void *src = cnp.PyArray_DATA(x)
    cdef uint64_t *dst = <uint64_t *>cnp.PyArray_DATA(out)
    with nogil:
        tio_hash_batch(lvl, src, dst, <size_t>n)
    return out


def compare_batch(a, b, *, level=None):
    """compare_batch(a, b, *, level=None) -> bool array

    ``a[i] == b[i]`` for two uint64 arrays of the same length. Raises ValueError when the lengths
    differ (naming both), TypeError / ValueError for an input that is not a 1-D array of values
    convertible to uint64.
    """
    cdef int lvl = resolve(level)
    cdef cnp.ndarray x = as_u64(a, "a")
    cdef cnp.ndarray y = as_u64(b, "b")
    cdef Py_ssize_t n = cnp.PyArray_DIM(x, 0)
    if cnp.PyArray_DIM(y, 0) != n:
        raise ValueError(f"a and b must have the same length, got len(a)={n} and "
                         f"len(b)={cnp.PyArray_DIM(y, 0)}")
    cdef cnp.ndarray out = new_array(n, cnp.NPY_BOOL)
    cdef const void *pa = cnp.PyArray_DATA(x)
    cdef const void *pb = cnp.PyArray_DATA(y)
    cdef uint8_t *dst = <uint8_t *>cnp.PyArray_DATA(out)
    with nogil:
        tio_compare_batch(lvl, pa, pb, dst, <size_t>n)
    return out


cdef cnp.ndarray contains_small(int lvl, cnp.ndarray k, const uint64_t *watch, size_t w):
    cdef Py_ssize_t n = cnp.PyArray_DIM(k, 0)
    cdef cnp.ndarray out = new_array(n, cnp.NPY_BOOL)
    cdef const void *src = cnp.PyArray_DATA(k)
    cdef uint8_t *dst = <uint8_t *>cnp.PyArray_DATA(out)
    with nogil:
        tio_contains_small(lvl, src, <size_t>n, watch, w, dst)
    return out


def contains_batch(keys, watch, *, level=None):
    """contains_batch(keys, watch, *, level=None) -> bool array

    ``keys[i] in watch`` for every key. ``watch`` is a ``WatchList`` (built once, the fast way to
    ask many times) or an array of keys: a short one is searched by broadcast-compare, a long one
    turned into a ``WatchList`` for this call. Raises TypeError / ValueError for inputs that are
    not 1-D arrays of values convertible to uint64.
    """
    cdef int lvl = resolve(level)
    cdef uint64_t wbuf[TIO_WL_SMALL_MAX]
    cdef cnp.ndarray w
    cdef size_t nw
    if isinstance(watch, WatchList):
        return (<WatchList>watch).query(lvl, as_u64(keys, "keys"))
    w = as_u64(watch, "watch")
    k = as_u64(keys, "keys")
    nw = <size_t>cnp.PyArray_DIM(w, 0)
    if nw <= tio_wl_small_limit(lvl):
        # Copied to an aligned buffer: the kernel reads the watch keys as uint64_t.
        memcpy(wbuf, cnp.PyArray_DATA(w), nw * 8)
        return contains_small(lvl, k, wbuf, nw)
    return WatchList(w).query(lvl, k)


cdef class WatchList:
    """WatchList(keys)

    An immutable set of 64-bit keys (addresses' ``address_key``, tx ids) built once for fast
    membership queries: ``wl.contains(keys)`` answers a whole batch without the GIL, and any
    number of threads may query the same WatchList at once. Duplicates count once.

    It is a hash table of 8-slot buckets (one cache line each, probed with one vector compare)
    at most half full; a list of a few dozen keys or fewer is searched by broadcast-compare
    instead. Raises TypeError / ValueError for keys that are not a 1-D array of values
    convertible to uint64, MemoryError when the table cannot be allocated.
    """

    # Built here, not in __init__: WatchList.__new__(WatchList) used to leave a NULL table that
    # the queries then read (a crash), and a table swapped by a second __init__ would be freed
    # under a concurrent nogil query.
    def __cinit__(self, keys):
        cdef cnp.ndarray k = as_u64(keys, "keys")
        cdef size_t n = <size_t>cnp.PyArray_DIM(k, 0), i, j
        cdef const char *src = <const char *>cnp.PyArray_DATA(k)
        cdef uint64_t v
        if tio_wl_init(&self.wl, n) != 0:
            raise MemoryError(f"cannot allocate a WatchList table for {n} keys")
        with nogil:
            for i in range(n):
                memcpy(&v, src + 8 * i, 8)
                tio_wl_add(&self.wl, v)
        self.n_small = <size_t>(self.wl.size + self.wl.has_zero)
        if self.n_small <= TIO_WL_SMALL_MAX:
            j = 0
            if self.wl.has_zero:
                self.small[0] = 0
                j = 1
            for i in range((self.wl.mask + 1) * 8):
                if self.wl.slots[i]:
                    self.small[j] = self.wl.slots[i]
                    j += 1

    def __init__(self, keys):
        if self.built:
            raise TypeError("a WatchList is immutable once built; create a new one")
        self.built = True

    def __dealloc__(self):
        tio_wl_free(&self.wl)

    cdef cnp.ndarray query(self, int lvl, cnp.ndarray k):
        cdef Py_ssize_t n = cnp.PyArray_DIM(k, 0)
        if self.n_small <= tio_wl_small_limit(lvl):
            return contains_small(lvl, k, self.small, self.n_small)
        cdef cnp.ndarray out = new_array(n, cnp.NPY_BOOL)
        cdef const void *src = cnp.PyArray_DATA(k)
        cdef uint8_t *dst = <uint8_t *>cnp.PyArray_DATA(out)
        with nogil:
            tio_wl_query(&self.wl, lvl, src, <size_t>n, dst)
        return out

    def contains(self, keys, *, level=None):
        """``keys[i] in self`` for every key, as a bool array."""
        cdef int lvl = resolve(level)
        return self.query(lvl, as_u64(keys, "keys"))

    def __contains__(self, key):
        if isinstance(key, bool) or not isinstance(key, (int, np.integer)):
            raise TypeError(f"key must be an int, got {key!r}")
        if not 0 <= key < (1 << 64):
            return False
        return bool(tio_wl_contains(&self.wl, <uint64_t>key))

    def __len__(self):
        return self.wl.size + self.wl.has_zero

    @property
    def nbytes(self):
        """Bytes of the table."""
        return (self.wl.mask + 1) * 64

    def to_array(self):
        """The distinct keys, sorted, as a uint64 array."""
        cdef size_t i
        out = [self.wl.slots[i] for i in range((self.wl.mask + 1) * 8) if self.wl.slots[i]]
        if self.wl.has_zero:
            out.append(0)
        return np.sort(np.array(out, dtype=_U64))

    def __repr__(self):
        return f"WatchList({len(self)} keys, {self.nbytes} table bytes)"


_active = _parse_simd_env(os.environ.get("TALLYIO_SIMD", ""), _cpu_level)
