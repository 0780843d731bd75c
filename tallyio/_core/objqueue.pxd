from libc.stdint cimport int64_t, uint64_t
from tallyio._core.ring cimport tio_ring
from tallyio._core.batch cimport tio_drain_policy

cdef extern from "tallyio/objqueue.h" nogil:
    ctypedef struct tio_objq_entry:
        void *obj
        void *tag
        int64_t stamp
    ctypedef struct tio_objq_gate:
        pass
    enum:
        TIO_OBJQ_STAMP_OFFSET
        TIO_OBJQ_FULL
        TIO_OBJQ_TIMEOUT
        TIO_OBJQ_FLUSH
        TIO_OBJQ_STOPPED
    tio_objq_gate *tio_objq_gate_new() noexcept nogil
    void tio_objq_gate_free(tio_objq_gate *g) noexcept nogil
    int tio_objq_enter(tio_objq_gate *g) noexcept nogil
    void tio_objq_leave(tio_objq_gate *g) noexcept nogil
    void tio_objq_close(tio_objq_gate *g) noexcept nogil
    void tio_objq_close_wake(tio_ring *r, tio_objq_gate *g) noexcept nogil
    int tio_objq_is_closed(tio_objq_gate *g) noexcept nogil
    int tio_objq_quiet(tio_objq_gate *g) noexcept nogil
    void tio_objq_want_gil(tio_objq_gate *g) noexcept nogil
    void tio_objq_got_gil(tio_objq_gate *g) noexcept nogil
    void tio_objq_released_gil(tio_objq_gate *g) noexcept nogil
    int tio_objq_gil_wanted(tio_objq_gate *g) noexcept nogil
    void tio_objq_yield_gil(tio_objq_gate *g, const tio_drain_policy *p,
                            uint64_t max_ns) noexcept nogil
    int tio_objq_push_wait(tio_ring *r, const tio_objq_entry *e, uint64_t deadline_ns,
                           const tio_drain_policy *p) noexcept nogil
    uint64_t tio_objq_push_many_wait(tio_ring *r, const tio_objq_entry *e, uint64_t n,
                                     uint64_t deadline_ns, const tio_drain_policy *p) noexcept nogil
    uint64_t tio_objq_drain(tio_ring *r, tio_objq_gate *g, tio_objq_entry *out, uint64_t n,
                            uint64_t batch_timeout_ns, const tio_drain_policy *p,
                            int *how) noexcept nogil


cdef class ObjectQueue:
    """Compiled callers may use ``r`` (entries of tio_objq_entry) and ``g`` directly."""
    cdef tio_ring *r
    cdef tio_objq_gate *g
    cdef tio_drain_policy policy
    cdef int mode
    cdef uint64_t timeout_ns        # UINT64_MAX: wait forever
    cdef object on_drop
    cdef bint handoff
    cdef uint64_t n_accepted, n_closed, n_full, n_timeout, n_dropped
    cdef uint64_t n_batches, n_full_batches, n_timeout_batches, n_flush_batches, n_expired
    cdef uint64_t _deadline(self) noexcept
    cdef int _push_dropping(self, tio_objq_entry *e, list dropped) except -1
    cdef _hand_dropped(self, list dropped)
    cdef void _maybe_yield_gil(self) noexcept


cdef class Batch:
    cdef tio_objq_entry *buf        # stamps of the fresh entries; references moved to the lists
    cdef Py_ssize_t n
    cdef readonly list items, tags, expired_items, expired_tags, expired_ages
    cdef readonly int how
    cdef _adopt(self, uint64_t n)
