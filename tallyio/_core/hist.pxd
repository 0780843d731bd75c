from libc.stdint cimport int64_t, uint32_t, uint64_t

cdef extern from "tallyio/hist.h" nogil:
    enum:
        TIO_HIST_SUB_BITS
        TIO_HIST_BUCKETS
    ctypedef struct tio_hist:
        pass
    uint32_t tio_hist_index(uint64_t v) noexcept nogil
    uint64_t tio_hist_lowest(uint32_t i) noexcept nogil
    uint64_t tio_hist_highest(uint32_t i) noexcept nogil
    void tio_hist_reset(tio_hist *h) noexcept nogil
    void tio_hist_record(tio_hist *h, uint64_t v) noexcept nogil
    void tio_hist_record_n(tio_hist *h, uint64_t v, uint64_t n) noexcept nogil
    uint64_t tio_hist_record_batch(tio_hist *h, const int64_t *v, uint64_t n) noexcept nogil
    void tio_hist_merge(tio_hist *dst, tio_hist *src) noexcept nogil
    uint64_t tio_hist_quantile(tio_hist *h, double q) noexcept nogil
    uint64_t tio_hist_count(tio_hist *h) noexcept nogil
    uint64_t tio_hist_min(tio_hist *h) noexcept nogil
    uint64_t tio_hist_max(tio_hist *h) noexcept nogil
    uint64_t tio_hist_sum(tio_hist *h) noexcept nogil
    uint64_t tio_hist_bucket(tio_hist *h, uint32_t i) noexcept nogil


cdef class LatencyHistogram:
    """Compiled callers record with ``tio_hist_record(hist.h, ns)`` from nogil code."""
    cdef tio_hist *h
