# cython: language_level=3, boundscheck=False, wraparound=False, binding=False
"""StateCache: a fixed-capacity map from 64-bit keys to fixed-size records, with CLOCK eviction.

The table lives in ``tallyio/cache.h``; this module validates arguments, converts values, and
guards who may touch the table when (see ``StateCache``).
"""
from cpython.long cimport PyLong_CheckExact
from cpython.ref cimport PyObject
from libc.stdint cimport int64_t, uint8_t, uint64_t
cimport numpy as cnp
import numpy as np

cnp.import_array()

cdef extern from "Python.h":
    object PyLong_FromLongLong(long long v)

cdef extern from "<sched.h>" nogil:
    int sched_yield() noexcept

cdef extern from "numpy/arrayobject.h":
    # With base NULL, numpy copies the bytes into the new scalar (a void scalar would otherwise
    # be a view on base), so a returned record never aliases the table.
    object tio_array_scalar "PyArray_Scalar"(void *data, cnp.dtype descr, PyObject *base)

#: Largest capacity: entries are indexed by 32-bit integers in the slots.
MAX_CAPACITY = 1 << 31
# Bulk calls smaller than this keep the GIL: releasing and re-taking it costs more than the work.
cdef enum:
    NOGIL_MIN = 256

_I64 = np.dtype(np.int64)
_SCALAR_KINDS = "biufcmMSUV"


cdef uint64_t _key_slow(object key) except? 0xFFFFFFFFFFFFFFFF:
    if isinstance(key, (bool, np.bool_)) or not isinstance(key, (int, np.integer)):
        raise TypeError(f"key must be an int in [0, 2**64), got {key!r}")
    return _key(int(key))


# Cython's own conversion reads the digits of a multi-digit int directly; the C API's
# PyLong_AsUnsignedLongLong goes through _PyLong_AsByteArray and costs ~30 ns more per call on a
# 64-bit key. The try costs nothing measurable on the success path.
cdef inline uint64_t _key(object key) except? 0xFFFFFFFFFFFFFFFF:
    if PyLong_CheckExact(key):
        try:
            return key
        except OverflowError:
            raise ValueError(f"key must be an int in [0, 2**64), got {key}") from None
    return _key_slow(key)


cdef int64_t _i64_slow(object value) except? -1:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"value must be an int for value_dtype int64, got {value!r}")
    return _i64(int(value))


cdef inline int64_t _i64(object value) except? -1:
    if PyLong_CheckExact(value):
        try:
            return value
        except OverflowError:
            raise ValueError(f"value must be an int in [-2**63, 2**63), got {value}") from None
    return _i64_slow(value)


cdef object _cast_exact(object a, object dt, str what):
    """``a`` (an array) as dtype ``dt``, refusing kind changes and values that do not survive."""
    if a.dtype == dt:
        return a
    if dt.names is not None or a.dtype.names is not None:
        raise TypeError(f"{what} must have dtype {dt}, got {a.dtype}")
    # Integers of either signedness may go into any integer dtype: the round trip below refuses
    # the ones that do not fit, instead of numpy's wrap-around.
    if not (np.can_cast(a.dtype, dt, "same_kind")
            or (a.dtype.kind in "iu" and dt.kind in "iu")):
        x = a[()] if a.ndim == 0 else None
        shown = (repr(x.item() if isinstance(x, np.generic) else x) if a.ndim == 0
                 else f"an array of dtype {a.dtype}")
        raise TypeError(f"{what} must convert to value_dtype {dt} without changing kind, "
                        f"got {shown}")
    b = a.astype(dt)
    bad = b != a
    if a.dtype.kind in "fc":
        bad &= ~(np.isnan(a) & np.isnan(b))
    if np.any(bad):
        raise ValueError(f"{what} must fit value_dtype {dt}, got {a[bad].flat[0].item()!r}")
    return b


cdef object _keys_array(object keys):
    k = np.asarray(keys)
    if k.ndim != 1:
        raise ValueError(f"keys must be one-dimensional, got shape {k.shape}")
    if k.size == 0:
        return np.empty(0, dtype=np.uint64)
    if k.dtype.kind not in "iu":
        raise TypeError(f"keys must be integers in [0, 2**64), got dtype {k.dtype}")
    if k.dtype.kind == "i" and k.min() < 0:
        raise ValueError(f"keys must be in [0, 2**64), got {k.min()}")
    return np.ascontiguousarray(k, dtype=np.uint64)


cdef class StateCache:
    """StateCache(capacity, value_dtype="int64")

    A fixed-capacity map from 64-bit integer keys (pool or account ids) to fixed-size records.

    Parameters
    ----------
    capacity : int
        The most live entries, 1 to 2**31. The index is sized to at least twice that (a power of
        two), so lookups probe a table at most half full. Putting a new key into a full cache
        first evicts one entry, chosen by CLOCK (second chance): entries hit or put since the
        hand last passed are spared once.
    value_dtype : numpy dtype-like
        The record type: ``int64`` (the default; values go in and out as Python ints), any
        structured dtype (values are ``numpy.void`` rows, put as a row or a tuple), or another
        fixed-size scalar dtype (values are numpy scalars). No Python objects.

    ``get`` returns a copy of the record; ``get_many`` and ``put_many`` work on arrays without the
    GIL. Counters (``stats()``) count since creation.

    Thread safety: any number of threads may look up at once (``get``, ``get_many``, ``in``);
    mutation (``put``, ``pop``, ``put_many``, ``clear``) is exclusive. Calls that hold the GIL
    throughout are serialized by it; a bulk call that releases the GIL registers first, and a
    conflicting call on another thread waits (spinning, yielding the GIL) until it is done, so
    every mix of calls from Python threads is safe. Compiled callers use ``acquire``/``release``
    around their GIL-free sections (see cache.pxd).
    """

    def __cinit__(self, capacity, value_dtype="int64"):
        if isinstance(capacity, (bool, np.bool_)) or not isinstance(capacity, (int, np.integer)):
            raise ValueError(f"capacity must be a positive int, got {capacity!r}")
        if not 1 <= capacity <= MAX_CAPACITY:
            raise ValueError(f"capacity must be in [1, 2**31], got {capacity}")
        try:
            dt = np.dtype(value_dtype)
        except TypeError as e:
            raise TypeError(f"value_dtype must be a numpy dtype, got {value_dtype!r}") from e
        if dt.hasobject or dt.kind not in _SCALAR_KINDS:
            raise TypeError(f"value_dtype must be a fixed-size dtype without Python objects, "
                            f"got {dt}")
        if dt.subdtype is not None:
            raise TypeError(f"value_dtype must not be a subarray dtype (wrap it in a structured "
                            f"dtype), got {dt}")
        if dt.itemsize == 0:
            raise ValueError(f"value_dtype must have a non-zero itemsize, got {dt}")
        self.value_dtype = dt
        self.is_i64 = dt == _I64
        self.c = tio_cache_new(<uint64_t>capacity, dt.itemsize)
        if self.c == NULL:
            raise MemoryError(f"cannot allocate a StateCache of {capacity} records of "
                              f"{dt.itemsize} bytes")

    def __init__(self, capacity, value_dtype="int64"):
        pass

    def __dealloc__(self):
        tio_cache_free(self.c)

    # ---- guard: the GIL protects _readers/_writer, only GIL-free sections register ----

    cdef int _wait(self, bint write) except -1:
        while self._writer or (write and self._readers):
            with nogil:
                sched_yield()
        return 0

    cdef int acquire(self, bint write) except -1:
        self._wait(write)
        if write:
            self._writer = True
        else:
            self._readers += 1
        return 0

    cdef void release(self, bint write) noexcept:
        if write:
            self._writer = False
        else:
            self._readers -= 1

    # ---- C level ----

    cdef const char *lookup(self, uint64_t key) noexcept nogil:
        return tio_cache_lookup(self.c, key)

    cdef char *put_record(self, uint64_t key, const void *value) noexcept nogil:
        return tio_cache_put(self.c, key, value, NULL, NULL)

    cdef object _value(self, const char *rec):
        if self.is_i64:
            return PyLong_FromLongLong((<const int64_t *>rec)[0])
        return tio_array_scalar(<void *>rec, <cnp.dtype>self.value_dtype, NULL)

    cdef object _row(self, value):
        dt = self.value_dtype
        if dt.names is not None and isinstance(value, tuple):
            try:
                a = np.array(value, dtype=dt)
            except (TypeError, ValueError, OverflowError) as e:
                raise TypeError(f"value {value!r} does not convert to value_dtype {dt}: {e}") from e
        else:
            a = np.asarray(value)
            if dt.names is not None and a.dtype != dt:
                raise TypeError(f"value must be a record of value_dtype {dt} or a tuple, "
                                f"got {type(value).__name__} of dtype {a.dtype}")
            a = _cast_exact(a, dt, "value")
        if a.ndim != 0:
            raise ValueError(f"value must be a single record, got shape {a.shape}")
        return np.ascontiguousarray(a)

    # ---- Python level ----

    def get(self, key, default=None):
        """The value stored for ``key`` (a copy), or ``default``; a hit marks it recently used."""
        cdef uint64_t k = _key(key)
        cdef const char *rec
        if self._writer:
            self._wait(False)
        rec = tio_cache_get_gil(self.c, k)
        if rec == NULL:
            return default
        if self.is_i64:
            return PyLong_FromLongLong((<const int64_t *>rec)[0])
        return self._value(rec)

    def put(self, key, value):
        """Store ``value`` for ``key``, replacing any value; a new key at a full cache evicts one."""
        cdef uint64_t k = _key(key)
        cdef int64_t v
        cdef cnp.ndarray a
        if self.is_i64:
            v = _i64(value)
            if self._writer or self._readers:
                self._wait(True)
            tio_cache_put(self.c, k, &v, NULL, NULL)
            return
        a = self._row(value)
        self._wait(True)
        tio_cache_put(self.c, k, cnp.PyArray_DATA(a), NULL, NULL)

    def pop(self, key, default=None):
        """Remove ``key`` and return its value, or return ``default`` when it is absent."""
        cdef uint64_t k = _key(key)
        cdef int64_t v = 0
        cdef cnp.ndarray out
        self._wait(True)
        if self.is_i64:
            if tio_cache_pop(self.c, k, &v):
                return v
            return default
        out = np.empty((), dtype=self.value_dtype)
        if tio_cache_pop(self.c, k, cnp.PyArray_DATA(out)):
            return out[()]
        return default

    def __contains__(self, key):
        cdef uint64_t k = _key(key)
        if self._writer:
            self._wait(False)
        return tio_cache_peek(self.c, k) != NULL

    def __len__(self):
        if self._writer:
            self._wait(False)
        return self.c.size

    @property
    def capacity(self):
        """The most live entries; a new key beyond it evicts one."""
        return self.c.capacity

    def clear(self):
        """Remove every entry (counters keep counting since creation)."""
        self._wait(True)
        tio_cache_clear(self.c)

    def get_many(self, keys):
        """Look up every key of a 1-D integer array; return ``(values, found)``.

        ``values`` has ``value_dtype`` and holds zeros where ``found`` (bool) is False. Runs
        without the GIL for 256 keys or more; counts and marks hits like ``get``.
        """
        cdef cnp.ndarray k = _keys_array(keys)
        cdef uint64_t n = k.shape[0]
        cdef cnp.ndarray values = np.empty(n, dtype=self.value_dtype)
        cdef cnp.ndarray found = np.empty(n, dtype=np.bool_)
        cdef const uint64_t *kp = <const uint64_t *>cnp.PyArray_DATA(k)
        cdef char *vp = <char *>cnp.PyArray_DATA(values)
        cdef uint8_t *fp = <uint8_t *>cnp.PyArray_DATA(found)
        self.acquire(False)
        if n >= NOGIL_MIN:
            with nogil:
                tio_cache_get_many(self.c, kp, n, vp, fp)
        else:
            tio_cache_get_many(self.c, kp, n, vp, fp)
        self.release(False)
        return values, found

    def put_many(self, keys, values):
        """Put ``keys[i] -> values[i]`` in order (a later duplicate wins); return the evictions.

        ``values`` is a 1-D array (or sequence) of ``value_dtype`` as long as ``keys``. Runs
        without the GIL for 256 keys or more. Keys beyond the capacity evict earlier ones, the
        call's own included.
        """
        cdef cnp.ndarray k = _keys_array(keys)
        cdef cnp.ndarray v
        cdef uint64_t n = k.shape[0], evicted
        a = np.asarray(values)
        if a.ndim != 1:
            raise ValueError(f"values must be one-dimensional, got shape {a.shape}")
        if a.shape[0] != n:
            raise ValueError(f"values must be as long as keys ({n}), got {a.shape[0]}")
        if n == 0:
            return 0
        v = np.ascontiguousarray(_cast_exact(a, self.value_dtype, "values"))
        cdef const uint64_t *kp = <const uint64_t *>cnp.PyArray_DATA(k)
        cdef const char *vp = <const char *>cnp.PyArray_DATA(v)
        self.acquire(True)
        if n >= NOGIL_MIN:
            with nogil:
                evicted = tio_cache_put_many(self.c, kp, vp, n)
        else:
            evicted = tio_cache_put_many(self.c, kp, vp, n)
        self.release(True)
        return evicted

    def keys(self):
        """The present keys as a uint64 array, in no particular order (a snapshot)."""
        cdef cnp.ndarray out
        self._wait(False)
        out = np.empty(self.c.size, dtype=np.uint64)
        tio_cache_keys(self.c, <uint64_t *>cnp.PyArray_DATA(out))
        return out

    def stats(self):
        """Counters since creation and the table's shape now.

        ``size``, ``capacity``, ``slots`` (index size), ``hits``/``misses`` (counted lookups:
        ``get``, ``get_many`` and compiled ``lookup``; not ``in``), ``evictions``, ``probes``
        (slots inspected by the counted lookups) and ``max_probe`` (the longest probe sequence a
        present key needs now; 0 when empty).
        """
        self._wait(False)
        return {
            "size": self.c.size,
            "capacity": self.c.capacity,
            "slots": self.c.mask + 1,
            "hits": tio_cache_hits(self.c),
            "misses": tio_cache_misses(self.c),
            "evictions": self.c.evictions,
            "probes": tio_cache_probes(self.c),
            "max_probe": tio_cache_max_probe(self.c),
        }

    def __repr__(self):
        return (f"StateCache(capacity={self.c.capacity}, value_dtype={self.value_dtype}, "
                f"size={self.c.size})")
