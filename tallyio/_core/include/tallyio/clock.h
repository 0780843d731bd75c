/* The monotonic nanosecond clock every timestamp in TallyIO comes from. */
#pragma once
#include <stdint.h>
#include <time.h>

/* CLOCK_MONOTONIC goes through the vDSO (about 20 ns, no syscall) and is the clock that
 * time.monotonic_ns() reads, so Python-side and C-side stamps are comparable. */
static inline uint64_t tio_now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}
