from libc.stdint cimport uint64_t

cdef extern from "tallyio/clock.h" nogil:
    uint64_t tio_now_ns() noexcept nogil
    void tio_wait_until(uint64_t deadline_ns, uint64_t spin_ns) noexcept nogil
