from libc.stdint cimport uint64_t
from tallyio._core.ring cimport tio_ring, Ring

cdef extern from "tallyio/drain.h" nogil:
    ctypedef struct tio_drain_policy:
        uint64_t batch_timeout_ns
        uint64_t idle_timeout_ns
        uint64_t spin_ns
        uint64_t sleep_ns
        uint64_t backoff_ns
        int park
        uint64_t park_slice_ns
    ctypedef struct tio_drain_state:
        uint64_t idle_since_ns
    enum:
        TIO_DRAIN_FULL
        TIO_DRAIN_TIMEOUT
        TIO_DRAIN_IDLE
    uint64_t tio_drain(tio_ring *r, char *out, uint64_t n, const tio_drain_policy *p,
                       tio_drain_state *st, int *how) noexcept nogil
    uint64_t tio_split_expired(char *rows, uint64_t n, uint64_t itemsize, uint64_t offset,
                               uint64_t now, uint64_t max_age_ns, char *expired,
                               uint64_t *n_expired) noexcept nogil
    void tio_drain_backoff(const tio_drain_policy *p, uint64_t waited_ns) noexcept nogil


cdef class BatchDrain:
    """Compiled callers drain into their own buffers without the GIL (see ``drain_c``)::

        from tallyio._core.batch cimport BatchDrain, TIO_DRAIN_IDLE

        cdef BatchDrain d = engine_drain             # keep a reference while draining
        cdef char *out = d._buffer("out", out_arr)    # validated once, with the GIL
        cdef char *old = d._buffer("expired", old_arr) if d.time_offset >= 0 else NULL
        cdef uint64_t n, n_old
        cdef int how
        with nogil:
            how = d.drain_c(out, old, &n, &n_old)     # rows in out[:n], expired in old[:n_old]
            ...                                       # e.g. record latencies of out[:n]
        if how < 0:
            d.check_consumer()                        # raises: another thread owns an SPSC ring

    ``r`` is ``ring.r`` and ``policy`` / ``state`` are what ``tio_drain`` takes, for callers that
    drive ``tio_drain`` themselves (then claim the consumer side first, as ``drain_c`` does).
    """
    cdef readonly Ring ring
    cdef tio_ring *r                 # ring.r
    cdef readonly Py_ssize_t batch_size
    cdef tio_drain_policy policy
    cdef tio_drain_state state
    cdef uint64_t max_age_ns
    cdef readonly Py_ssize_t time_offset   # byte offset of the int64 time field; -1: no age check
    cdef uint64_t n_batches, n_rows, n_expired, n_full, n_timeout, n_idle
    # Drain one batch into out (at least batch_size rows of the ring's dtype) and, with max_age,
    # move the expired rows to expired (same size; NULL without max_age); *n_fresh / *n_expired
    # get the counts and the stats count the batch, as drain_into does. Returns the TIO_DRAIN_*
    # reason, or -1 (nothing drained) when the ring is SPSC and another thread owns its consumer
    # side: call check_consumer() with the GIL to raise the TallyIOError.
    cdef int drain_c(self, char *out, char *expired, uint64_t *n_fresh,
                     uint64_t *n_expired) noexcept nogil
    # Claim the consumer side for the calling thread, or raise TallyIOError naming the owner.
    cdef int check_consumer(self) except -1
    cdef void _count(self, uint64_t got, int how) noexcept nogil
    # Validate a caller's buffer (numpy array of the ring's dtype, >= batch_size rows, writable,
    # contiguous) and return its data pointer; raises TypeError/ValueError naming `name`.
    cdef char *_buffer(self, str name, object a) except NULL
