# cython: language_level=3, boundscheck=False, wraparound=False, binding=False
"""Log-linear latency histogram in nanoseconds with 1/128 (0.78%) relative precision."""
from libc.stdlib cimport malloc, free
from libc.stdint cimport int64_t, uint64_t, uint32_t
cimport numpy as cnp
import numpy as np

cnp.import_array()

#: Upper bound of the relative error of any reported value (a bucket's width over its values).
RELATIVE_ERROR = 1.0 / (1 << TIO_HIST_SUB_BITS)


cdef class LatencyHistogram:
    """LatencyHistogram()

    Counts of non-negative integer latencies (nanoseconds by convention) in log-linear buckets:
    exact below 128, then 128 sub-buckets per power of two, so a reported value exceeds the true
    one by at most ``RELATIVE_ERROR`` (1/128). Recording is lock-free (relaxed atomics) and safe
    from any thread, and from compiled ``nogil`` code through ``tio_hist_record``.

    ``percentile(q)`` reports the highest value of the bucket holding the ``ceil(q/100 * count)``-th
    smallest recording, clamped to ``[min, max]`` (so ``percentile(100)`` is the exact max, while
    ``percentile(0)`` is within the precision of the exact ``min``); it is 0 for an empty histogram, as are ``min``,
    ``max`` and ``mean``.
    """

    def __cinit__(self):
        self.h = <tio_hist *>malloc(sizeof(tio_hist))
        if self.h == NULL:
            raise MemoryError("cannot allocate a LatencyHistogram")
        tio_hist_reset(self.h)

    def __dealloc__(self):
        free(self.h)

    def record(self, int64_t ns, int64_t count=1):
        """Record one value (a non-negative int), ``count`` times.

        ``count=0`` records nothing (count, min, max and mean are unchanged); a negative ``ns``
        or ``count`` raises ValueError.
        """
        if ns < 0:
            raise ValueError(f"ns must be >= 0, got {ns}")
        if count == 1:
            tio_hist_record(self.h, <uint64_t>ns)
        elif count < 0:
            raise ValueError(f"count must be >= 0, got {count}")
        else:
            tio_hist_record_n(self.h, <uint64_t>ns, <uint64_t>count)

    def record_many(self, values):
        """Record every value of a 1-D integer array (or sequence) without the GIL."""
        a = np.asarray(values)
        cdef const int64_t[::1] v
        cdef Py_ssize_t i, n
        if a.ndim != 1:
            raise ValueError(f"values must be one-dimensional, got shape {a.shape}")
        if a.size == 0:
            return
        if a.dtype.kind not in "iu":
            raise TypeError(f"values must be integers, got dtype {a.dtype}")
        if a.dtype.kind == "u" and a.max() > np.iinfo(np.int64).max:
            raise ValueError(f"values must be < 2**63, got {a.max()}")
        v = np.ascontiguousarray(a, dtype=np.int64)
        n = v.shape[0]
        with nogil:
            i = tio_hist_record_batch(self.h, &v[0], n)
        if i < n:
            raise ValueError(f"values must be >= 0, got {v[i]} at index {i} "
                             f"({i} values before it were recorded)")

    def percentile(self, q):
        """The value at percentile ``q`` in [0, 100] (0 when empty)."""
        if not 0 <= q <= 100:
            raise ValueError(f"q must be in [0, 100], got {q}")
        return tio_hist_quantile(self.h, q / 100.0)

    def percentiles(self, qs=(50, 95, 99, 99.9)):
        """``{q: value}`` for each percentile in ``qs``."""
        return {q: self.percentile(q) for q in qs}

    @property
    def count(self):
        return tio_hist_count(self.h)

    @property
    def min(self):
        return tio_hist_min(self.h)

    @property
    def max(self):
        return tio_hist_max(self.h)

    @property
    def mean(self):
        cdef uint64_t n = tio_hist_count(self.h)
        return tio_hist_sum(self.h) / n if n else 0.0

    def merge(self, LatencyHistogram other not None):
        """Add ``other``'s recordings to this histogram."""
        if other is self:
            raise ValueError("cannot merge a histogram into itself")
        tio_hist_merge(self.h, other.h)

    def reset(self):
        """Forget every recording (not atomic with respect to concurrent recorders)."""
        tio_hist_reset(self.h)

    def buckets(self):
        """``(upper_bounds, counts)`` of the non-empty buckets, as int64 / uint64 arrays."""
        cdef uint32_t i, k = 0, n = 0
        cdef uint64_t c
        for i in range(TIO_HIST_BUCKETS):
            n += tio_hist_bucket(self.h, i) != 0
        bounds = np.empty(n, dtype=np.int64)
        counts = np.empty(n, dtype=np.uint64)
        cdef int64_t[::1] b = bounds
        cdef uint64_t[::1] cs = counts
        with nogil:
            for i in range(TIO_HIST_BUCKETS):
                c = tio_hist_bucket(self.h, i)
                if c and k < n:  # a recorder may fill a bucket between the two passes
                    b[k] = <int64_t>tio_hist_highest(i)
                    cs[k] = c
                    k += 1
        return bounds[:k], counts[:k]

    def __repr__(self):
        return (f"LatencyHistogram(count={self.count}, p50={self.percentile(50)}, "
                f"p99={self.percentile(99)}, max={self.max})")
