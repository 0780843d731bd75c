from libc.stdint cimport int64_t, uint64_t

cdef extern from "tallyio/prefetch.h" nogil:
    ctypedef struct tio_pf_iter:
        char *data
        Py_ssize_t stride
        size_t n
        size_t span
        size_t distance
        # the cursor is atomic: read it with tio_pf_iter_pos, move it with tio_pf_iter_claim
    void tio_prefetch(const void *p) noexcept nogil
    void tio_prefetch_span(const char *p, size_t n) noexcept nogil
    void tio_pf_iter_init(tio_pf_iter *it, char *data, Py_ssize_t stride, size_t n, size_t span,
                          size_t distance) noexcept nogil
    size_t tio_pf_iter_pos(tio_pf_iter *it) noexcept nogil
    size_t tio_pf_iter_claim(tio_pf_iter *it, size_t want, size_t *first) noexcept nogil
    char *tio_pf_iter_row(const tio_pf_iter *it, size_t i) noexcept nogil
    char *tio_pf_iter_at(const tio_pf_iter *it, size_t i) noexcept nogil
    char *tio_pf_iter_next(tio_pf_iter *it) noexcept nogil
    void tio_pf_iter_copy(const tio_pf_iter *it, size_t first, size_t k, char *dst,
                          size_t row_bytes) noexcept nogil
    int64_t tio_gather(const void *table, uint64_t len, size_t itemsize, const int64_t *idx,
                       size_t n, void *out, size_t distance) noexcept nogil


cdef class PrefetchingIterator:
    """Compiled callers walk the rows without the GIL through ``it``, claiming runs of rows::

        cdef PrefetchingIterator pit = PrefetchingIterator(records, distance=8)
        cdef size_t first, k, i
        cdef char *row
        with nogil:
            k = tio_pf_iter_claim(&pit.it, 256, &first)
            while k:
                for i in range(first, first + k):
                    row = tio_pf_iter_at(&pit.it, i)  # row i, with row i + distance prefetched
                    ...
                k = tio_pf_iter_claim(&pit.it, 256, &first)

    The cursor is shared with Python iteration and is atomic: any number of threads (Python or
    compiled) may walk one iterator, and each row goes to exactly one of them.
    ``tio_pf_iter_next`` claims a single row (one CAS per row). ``array`` keeps the rows' memory
    alive for as long as the iterator lives; it is set once, in ``__cinit__``.
    """
    cdef tio_pf_iter it
    cdef readonly object array
    cdef size_t row_bytes
    cdef bint rows_contiguous
    cdef bint one_d
