from libc.stdint cimport uint64_t
cimport numpy as cnp

cdef extern from "tallyio/atomic.h" nogil:
    ctypedef uint64_t tio_atomic_u64   # _Atomic in C: only pass pointers to the tio_* functions

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
    # SPSC ownership (see ring.h): 0 when the calling thread owns (or just took) the side, else
    # the owner's thread id (threading.get_ident()). Always 0 for MPMC. Compiled callers claim
    # before their nogil loop and raise with the GIL (Ring._not_owner) when it is not 0.
    uint64_t tio_thread_id() noexcept nogil
    uint64_t tio_ring_claim_producer(tio_ring *r) noexcept nogil
    uint64_t tio_ring_claim_consumer(tio_ring *r) noexcept nogil
    void tio_ring_release_producer(tio_ring *r) noexcept nogil
    void tio_ring_release_consumer(tio_ring *r) noexcept nogil
    uint64_t tio_ring_producer_owner(tio_ring *r) noexcept nogil
    uint64_t tio_ring_consumer_owner(tio_ring *r) noexcept nogil
    # Waking and parking (wait.h): publishes notify on their own; wake is unconditional.
    void tio_ring_notify(tio_ring *r) noexcept nogil
    void tio_ring_wake(tio_ring *r) noexcept nogil
    void tio_ring_park(tio_ring *r, uint64_t timeout_ns, tio_atomic_u64 *stop) noexcept nogil
    uint64_t tio_ring_wakes(tio_ring *r) noexcept nogil
    uint64_t tio_ring_parks(tio_ring *r) noexcept nogil


cdef class _RingBase:
    cdef tio_ring *r
    cdef readonly bint closed
    cdef int _check_open(self) except -1
    cdef int _check_ring(self) except -1
    # Raise TallyIOError for a thread that is not the owner of an SPSC side (side: "producer" or
    # "consumer", owner: what tio_ring_claim_* returned).
    cdef int _not_owner(self, str side, uint64_t owner) except -1


cdef class Ring(_RingBase):
    """Bounded ring of fixed-size rows; compiled callers use ``r`` with the ring.h functions."""
    cdef readonly object dtype
    cdef bint is_i64
    cdef cnp.dtype _descr
    cdef cnp.ndarray _row(self, item)
    cdef cnp.ndarray _rows(self, array)


cdef class ObjectRing(_RingBase):
    pass
