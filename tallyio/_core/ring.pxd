from libc.stdint cimport uint64_t
cimport numpy as cnp

cdef extern from "tallyio/ring.h" nogil:
    ctypedef struct tio_ring:
        uint64_t capacity
        uint64_t mask
        uint64_t itemsize
        int kind
        char *data
    enum:
        TIO_RING_SPSC
        TIO_RING_MPMC
    tio_ring *tio_ring_new(uint64_t capacity, uint64_t itemsize, int kind) noexcept nogil
    void tio_ring_free(tio_ring *r) noexcept nogil
    int tio_ring_push(tio_ring *r, const void *src) noexcept nogil
    int tio_ring_pop(tio_ring *r, void *dst) noexcept nogil
    uint64_t tio_ring_push_many(tio_ring *r, const void *src, uint64_t n) noexcept nogil
    uint64_t tio_ring_pop_many(tio_ring *r, void *dst, uint64_t n) noexcept nogil
    uint64_t tio_ring_size(tio_ring *r) noexcept nogil
    uint64_t tio_ring_pushed(tio_ring *r) noexcept nogil
    uint64_t tio_ring_popped(tio_ring *r) noexcept nogil
    uint64_t tio_ring_rejected(tio_ring *r) noexcept nogil
    uint64_t tio_ring_empty_pops(tio_ring *r) noexcept nogil


cdef class _RingBase:
    cdef tio_ring *r
    cdef readonly bint closed
    cdef int _check_open(self) except -1


cdef class Ring(_RingBase):
    """Bounded ring of fixed-size rows; compiled callers use ``r`` with the ring.h functions."""
    cdef readonly object dtype
    cdef bint is_i64
    cdef cnp.dtype _descr
    cdef cnp.ndarray _row(self, item)
    cdef cnp.ndarray _rows(self, array)


cdef class ObjectRing(_RingBase):
    pass
