# cython: language_level=3, boundscheck=False, wraparound=False, binding=False
"""Software prefetch: a row iterator that prefetches ahead, and a bulk gather for random lookups."""
from libc.stdint cimport int64_t, uint64_t
from libc.string cimport memcpy
cimport numpy as cnp
import numpy as np

cnp.import_array()

cdef extern from "numpy/arrayobject.h":
    # The numpy scalar of one element (a view for records), as ndarray iteration builds it.
    object PyArray_Scalar(void *data, cnp.dtype descr, object base)

_I64 = np.dtype(np.int64)  # what tio_gather reads (intp on 64-bit platforms)

DEFAULT_DISTANCE = 8
# The distance gather and PrefetchingIterator use when none is passed: the prefetch switch sets it
# (tallyio.Engine: 0 when the switch is off, DEFAULT_DISTANCE otherwise). Process-wide, like
# tallyio.simd.set_level; an explicit distance argument always wins.
cdef size_t _default_distance = DEFAULT_DISTANCE


def set_default_distance(distance):
    """set_default_distance(distance)

    The prefetch distance of every later ``gather`` and ``PrefetchingIterator`` call that passes
    none (0: no prefetch). Returns the previous one. TypeError/ValueError as for ``distance``."""
    global _default_distance
    if distance is None:
        raise TypeError("distance must be an int, got None")
    cdef size_t d = check_distance(distance)
    cdef size_t old = _default_distance
    _default_distance = d
    return old


def default_distance():
    """The distance ``gather`` and ``PrefetchingIterator`` use when none is passed."""
    return _default_distance


cdef size_t check_distance(object distance) except? 0:
    if distance is None:
        return _default_distance
    if isinstance(distance, bool) or not isinstance(distance, (int, np.integer)):
        raise TypeError(f"distance must be an int, got {distance!r}")
    if distance < 0:
        raise ValueError(f"distance must be >= 0, got {distance}")
    if distance > (1 << 40):
        raise ValueError(f"distance must be at most 2**40, got {distance}")
    return <size_t>distance


cdef class PrefetchingIterator:
    """PrefetchingIterator(array, distance=None)

    Iterates over ``array`` like ``iter(array)`` (rows along the first axis), prefetching the
    cache lines of the row ``distance`` positions ahead of the one handed out. ``distance=0``
    prefetches nothing; ``None`` takes ``default_distance()`` (the prefetch switch). From Python each step costs far more than a cache miss, so the prefetch
    pays off for compiled callers, which walk the same iterator without the GIL (see
    ``prefetch.pxd``).

    Thread-safe: threads that share one iterator (``next``, ``next_many``, compiled walkers) each
    get distinct rows, every row exactly once; the cursor is claimed atomically.

    Raises TypeError for a 0-d array or a non-integer distance, ValueError for a negative one.
    """

    # Everything is set here, not in __init__: the nogil walkers read `it` and rely on `array`
    # keeping the rows alive, so no later call (a second __init__) may swap them.
    def __cinit__(self, array, distance=None):
        cdef cnp.ndarray a = np.asarray(array)
        cdef size_t d = check_distance(distance)
        cdef size_t span
        if a.ndim == 0:
            raise TypeError(f"array must have at least one dimension, got a 0-d array of {a.dtype}")
        # Prefetch the whole row when its bytes are contiguous; otherwise its first element.
        self.row_bytes = a.itemsize
        for dim in range(1, a.ndim):
            self.row_bytes *= a.shape[dim]
        self.one_d = a.ndim == 1 and not a.dtype.hasobject
        contiguous = a.ndim == 1 or a[:1].flags.c_contiguous
        span = self.row_bytes if contiguous else a.itemsize
        # next_many copies raw bytes only where that is a faithful copy: object rows hold
        # references whose counts a memcpy would skip.
        self.rows_contiguous = contiguous and not a.dtype.hasobject
        self.array = a
        tio_pf_iter_init(&self.it, <char *>cnp.PyArray_DATA(a), a.strides[0], a.shape[0], span, d)

    def __init__(self, array, distance=None):
        pass

    @property
    def distance(self):
        return self.it.distance

    @property
    def position(self):
        """Rows handed out so far."""
        return tio_pf_iter_pos(&self.it)

    def __iter__(self):
        return self

    def __next__(self):
        cdef size_t i
        if not tio_pf_iter_claim(&self.it, 1, &i):
            raise StopIteration
        if self.one_d:
            # What iterating a 1-D array yields (a numpy scalar; for a record, a view), built from
            # the row pointer without going through __getitem__.
            return PyArray_Scalar(tio_pf_iter_at(&self.it, i), (<cnp.ndarray>self.array).descr,
                                  self.array)
        return self.array[i]

    def next_many(self, n):
        """The next ``min(n, remaining)`` rows as a new array, walked and copied without the GIL
        (the compiled path of the iterator, available from Python). Raises ValueError for a
        negative ``n``."""
        cdef size_t first = 0, k
        cdef cnp.ndarray out
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)):
            raise TypeError(f"n must be an int, got {n!r}")
        if n < 0:
            raise ValueError(f"n must be >= 0, got {n}")
        # Claim first, then size the copy by what was claimed: another thread may have taken
        # rows since any earlier look at the cursor.
        k = tio_pf_iter_claim(&self.it, min(<size_t>n, self.it.n), &first)
        out = np.empty((k,) + self.array.shape[1:], dtype=self.array.dtype)
        if k == 0:
            return out
        if not self.rows_contiguous:
            # Rows that are not one block of bytes (a column-major 2-D array) or that hold Python
            # objects: numpy copies them.
            out[...] = self.array[first:first + k]
            return out
        cdef char *dst = <char *>cnp.PyArray_DATA(out)
        with nogil:
            tio_pf_iter_copy(&self.it, first, k, dst, self.row_bytes)
        return out

    def __length_hint__(self):
        return self.it.n - tio_pf_iter_pos(&self.it)

    def __repr__(self):
        return (f"PrefetchingIterator(rows={self.it.n}, position={tio_pf_iter_pos(&self.it)}, "
                f"distance={self.it.distance})")


def gather(table, indices, distance=None):
    """gather(table, indices, distance=None)

    A new array ``out`` with ``out[i] = table[indices[i]]``, like ``numpy.take(table, indices)``,
    prefetching the row ``distance`` lookups ahead so that up to ``distance`` cache misses are in
    flight at once; this pays when ``table`` is larger than the last-level cache. ``distance=0``
    is the same loop without prefetch; ``None`` takes ``default_distance()`` (the prefetch
    switch). The copy runs without the GIL.

    ``table``: a 1-D C-contiguous array of any fixed-size dtype (int64, ``TX_DTYPE``...).
    ``indices``: a 1-D integer array (int64/intp; other integer dtypes are converted); every index
    must be in ``[0, len(table))``; negative indices are not wrapped.

    Raises TypeError (object dtype table, non-integer indices or distance), ValueError (a table or
    indices that are not 1-D, a non-contiguous table, a negative distance) and IndexError naming
    the position and value of the first index out of range.
    """
    t = np.asarray(table)
    raw = np.asarray(indices)
    cdef cnp.ndarray idx, out
    cdef size_t d = check_distance(distance)
    cdef int64_t bad
    cdef uint64_t nrows
    cdef size_t n, itemsize
    cdef const void *src
    cdef const int64_t *ip
    cdef void *dst
    if t.ndim != 1:
        raise ValueError(f"table must be one-dimensional, got shape {t.shape}")
    if not t.flags.c_contiguous:
        raise ValueError(f"table must be contiguous, got strides {t.strides} for itemsize "
                         f"{t.itemsize}; pass numpy.ascontiguousarray(table)")
    if t.dtype.hasobject:
        raise TypeError(f"table must hold fixed-size values, not Python objects, got dtype {t.dtype}")
    if raw.ndim != 1:
        raise ValueError(f"indices must be one-dimensional, got shape {raw.shape}")
    if raw.dtype.kind not in "iu" and not (raw.size == 0 and not isinstance(indices, np.ndarray)):
        raise TypeError(f"indices must be integers (int64/intp), got dtype {raw.dtype}")
    # uint64 indices >= 2**63 turn negative here, so they are still caught as out of range.
    idx = np.require(raw.astype(_I64, copy=False), _I64, "CA")
    nrows = t.shape[0]
    n = idx.shape[0]
    itemsize = t.itemsize
    out = np.empty(n, dtype=t.dtype)
    src = cnp.PyArray_DATA(<cnp.ndarray>t)
    ip = <const int64_t *>cnp.PyArray_DATA(idx)
    dst = cnp.PyArray_DATA(out)
    with nogil:
        bad = tio_gather(src, nrows, itemsize, ip, n, dst, d)
    if bad >= 0:
        raise IndexError(f"indices[{bad}] = {raw[bad]} is out of range for a table of "
                         f"{nrows} rows")
    return out
