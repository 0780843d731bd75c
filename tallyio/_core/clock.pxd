from libc.stdint cimport uint64_t

cdef extern from "tallyio/clock.h" nogil:
    uint64_t tio_now_ns() noexcept nogil
