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

/* Wait until the monotonic clock reaches deadline_ns: sleep while more than spin_ns remain, then
 * busy-wait. nanosleep overshoots by the timer slack (50 us by default on Linux), so the last
 * stretch is spun to hit the deadline within a few hundred ns. */
static inline void tio_wait_until(uint64_t deadline_ns, uint64_t spin_ns) {
    for (;;) {
        uint64_t now = tio_now_ns();
        if (now >= deadline_ns) return;
        uint64_t left = deadline_ns - now;
        if (left > spin_ns) {
            uint64_t nap = left - spin_ns;
            struct timespec ts = {(time_t)(nap / 1000000000ull), (long)(nap % 1000000000ull)};
            nanosleep(&ts, NULL);
        } else {
#if defined(__x86_64__) || defined(__i386__)
            __builtin_ia32_pause();
#endif
        }
    }
}
