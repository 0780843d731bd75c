from libc.stdint cimport uint64_t
from tallyio._core.hist cimport LatencyHistogram, tio_hist

cdef extern from "tallyio/breaker.h" nogil:
    enum:
        TIO_BRK_CLOSED
        TIO_BRK_OPEN
        TIO_BRK_HALF_OPEN
        TIO_BRK_FORCED_OPEN
        TIO_BRK_DISABLED
        TIO_BRK_PERMIT
        TIO_BRK_TRANSITION
        TIO_BRK_UPDATE_DUE
        TIO_BRK_WINDOW_COUNT
        TIO_BRK_WINDOW_TIME
        TIO_BRK_BUCKETS
        TIO_BRK_LOG
        TIO_BRK_FIELD_MAX
    ctypedef struct tio_breaker:
        uint64_t timeout_ns
        uint64_t failure_threshold
        uint64_t violation_threshold
        uint64_t success_threshold
        uint64_t half_open_max
        uint64_t minimum_calls
        double failure_rate
        double slow_rate
        uint64_t update_every
        uint64_t update_interval_ns
        tio_hist *hist[2]
    uint64_t TIO_BRK_SEQ_MASK
    tio_breaker *tio_brk_new() noexcept nogil
    int tio_brk_set_window(tio_breaker *b, int type, uint64_t size, uint64_t bucket_ns) noexcept nogil
    void tio_brk_free(tio_breaker *b) noexcept nogil
    int tio_brk_acquire(tio_breaker *b, uint64_t now) noexcept nogil
    int tio_brk_record(tio_breaker *b, uint64_t now, uint64_t latency_ns, int ok) noexcept nogil
    int tio_brk_force(tio_breaker *b, uint64_t state) noexcept nogil
    uint64_t tio_brk_rotate(tio_breaker *b, uint64_t now) noexcept nogil
    void tio_brk_advance(tio_breaker *b, uint64_t now) noexcept nogil
    uint64_t tio_brk_log_at(tio_breaker *b, uint64_t seq) noexcept nogil
    uint64_t tio_brk_state_of(uint64_t w) noexcept nogil
    uint64_t tio_brk_trials_of(uint64_t w) noexcept nogil
    uint64_t tio_brk_seq_of(uint64_t w) noexcept nogil
    uint64_t tio_brk_window_calls(tio_breaker *b) noexcept nogil
    uint64_t tio_brk_window_failures(tio_breaker *b) noexcept nogil
    uint64_t tio_brk_window_slow(tio_breaker *b) noexcept nogil
    uint64_t tio_brk_word(tio_breaker *b) noexcept nogil
    uint64_t tio_brk_open_until(tio_breaker *b) noexcept nogil
    uint64_t tio_brk_threshold(tio_breaker *b) noexcept nogil
    void tio_brk_set_threshold(tio_breaker *b, uint64_t ns) noexcept nogil
    uint64_t tio_brk_hist_idx(tio_breaker *b) noexcept nogil
    int tio_brk_update_due(tio_breaker *b) noexcept nogil
    ctypedef struct tio_brk_counts:
        uint64_t permitted, rejected, successes, failures, slow, consec
    void tio_brk_counts_of(tio_breaker *b, tio_brk_counts *c) noexcept nogil


cdef class BreakerCore:
    """The lock-free state machine under ``tallyio.CircuitBreaker``.

    Compiled callers guard a call with ``acquire(now)`` (TIO_BRK_PERMIT bit set: go ahead; 0:
    refused, already counted) and report it with ``record(now, latency_ns, ok)``; both are
    ``noexcept nogil``. A TIO_BRK_TRANSITION or TIO_BRK_UPDATE_DUE bit in a result asks the owner
    to call the breaker's ``poll()`` later, with the GIL (listeners and threshold policy).
    ``b`` may also be passed to the inline ``tio_brk_*`` functions directly.
    """
    cdef tio_breaker *b
    cdef LatencyHistogram h0
    cdef LatencyHistogram h1
    cdef object _clock
    cdef tuple _exclude
    cdef readonly str name
    cdef bint configured
    cdef int acquire(self, uint64_t now) noexcept nogil
    cdef int record(self, uint64_t now, uint64_t latency_ns, bint ok) noexcept nogil
    cdef int _ready(self) except -1
    cdef uint64_t _now(self) except? 0
    cdef str _forced_msg
    cdef object _open_error(self, uint64_t now)
    cdef uint64_t _begin(self) except? 0
    cdef int _finish(self, uint64_t t0, bint failed) except -1
    cdef bint _is_failure(self, object exc)
    cdef object _guard(self, fn, tuple args, dict kwargs)
