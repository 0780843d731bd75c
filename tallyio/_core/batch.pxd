from libc.stdint cimport uint64_t
from tallyio._core.ring cimport tio_ring, Ring

cdef extern from "tallyio/drain.h" nogil:
    ctypedef struct tio_drain_policy:
        uint64_t batch_timeout_ns
        uint64_t idle_timeout_ns
        uint64_t spin_ns
        uint64_t sleep_ns
    enum:
        TIO_DRAIN_FULL
        TIO_DRAIN_TIMEOUT
        TIO_DRAIN_IDLE
    uint64_t tio_drain(tio_ring *r, char *out, uint64_t n, const tio_drain_policy *p,
                       int *how) noexcept nogil
    uint64_t tio_split_expired(char *rows, uint64_t n, uint64_t itemsize, uint64_t offset,
                               uint64_t now, uint64_t max_age_ns, char *expired,
                               uint64_t *n_expired) noexcept nogil


cdef class BatchDrain:
    cdef readonly Ring ring
    cdef readonly Py_ssize_t batch_size
    cdef tio_drain_policy policy
    cdef uint64_t max_age_ns
    cdef Py_ssize_t time_offset      # -1: no age check
    cdef uint64_t n_batches, n_rows, n_expired, n_full, n_timeout, n_idle
    cdef void _count(self, uint64_t got, int how) noexcept
    cdef char *_buffer(self, str name, object a) except NULL
