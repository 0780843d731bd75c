from libc.stdint cimport int64_t, uint64_t

cdef extern from "tallyio/prefetch.h" nogil:
    ctypedef struct tio_pf_iter:
        char *data
        Py_ssize_t stride
        size_t n
        size_t span
        size_t distance
        size_t pos
    void tio_prefetch(const void *p) noexcept nogil
    void tio_prefetch_span(const char *p, size_t n) noexcept nogil
    void tio_pf_iter_init(tio_pf_iter *it, char *data, Py_ssize_t stride, size_t n, size_t span,
                          size_t distance) noexcept nogil
    char *tio_pf_iter_next(tio_pf_iter *it) noexcept nogil
    int64_t tio_gather(const void *table, uint64_t len, size_t itemsize, const int64_t *idx,
                       size_t n, void *out, size_t distance) noexcept nogil


cdef class PrefetchingIterator:
    """Compiled callers walk the rows without the GIL through ``it``::

        cdef PrefetchingIterator pit = PrefetchingIterator(records, distance=8)
        cdef char *row
        with nogil:
            row = tio_pf_iter_next(&pit.it)
            while row != NULL:
                ...  # row points at the next record (``pit.it.stride`` bytes apart)
                row = tio_pf_iter_next(&pit.it)

    The cursor is shared with Python iteration, and not thread-safe: one walker per iterator.
    ``array`` keeps the rows' memory alive for as long as the iterator lives.
    """
    cdef tio_pf_iter it
    cdef readonly object array
    cdef size_t row_bytes
    cdef bint rows_contiguous
    cdef bint one_d
