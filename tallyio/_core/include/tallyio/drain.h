/* Batch drain: collect up to n rows from a ring, waiting a bounded time for the batch to fill.
 *
 * The wait is spin-then-yield (or -sleep): waking a parked thread costs tens of microseconds on a
 * VM (see PERF-NOTES), more than the whole latency budget of a batch, so a drain that expects rows
 * soon burns a bounded amount of CPU rather than sleeping. Callers pick the policy.
 */
#pragma once
#include <time.h>
#include "tallyio/clock.h"
#include "tallyio/ring.h"

typedef struct {
    uint64_t batch_timeout_ns; /* cut the batch this long after its first row arrived */
    uint64_t idle_timeout_ns;  /* return empty if no row arrives within this */
    uint64_t spin_ns;          /* busy-wait this long before backing off */
    uint64_t sleep_ns;         /* back-off: 0 = sched_yield, else nanosleep this long */
} tio_drain_policy;

enum { TIO_DRAIN_FULL = 0, TIO_DRAIN_TIMEOUT = 1, TIO_DRAIN_IDLE = 2 };

static inline void tio_drain_backoff(const tio_drain_policy *p, uint64_t waited_ns) {
    if (waited_ns < p->spin_ns) {
        for (int i = 0; i < 16; i++) tio_cpu_relax();
    } else if (p->sleep_ns == 0) {
        sched_yield();
    } else {
        struct timespec ts = {(time_t)(p->sleep_ns / 1000000000ull),
                              (long)(p->sleep_ns % 1000000000ull)};
        nanosleep(&ts, NULL);
    }
}

/* Fill out with up to n rows; *how says why it returned (full, batch timeout, idle timeout). */
static inline uint64_t tio_drain(tio_ring *r, char *out, uint64_t n, const tio_drain_policy *p,
                                 int *how) {
    uint64_t got = 0, start = tio_now_ns(), first_at = 0, now;
    for (;;) {
        uint64_t k = tio_ring_pop_many(r, out + got * r->itemsize, n - got);
        now = tio_now_ns();
        if (k) {
            if (got == 0) first_at = now;
            got += k;
            if (got == n) {
                *how = TIO_DRAIN_FULL;
                return got;
            }
        }
        if (got && now - first_at >= p->batch_timeout_ns) {
            *how = TIO_DRAIN_TIMEOUT;
            return got;
        }
        if (!got && now - start >= p->idle_timeout_ns) {
            *how = TIO_DRAIN_IDLE;
            return 0;
        }
        tio_drain_backoff(p, now - (got ? first_at : start));
    }
}

/* Stable partition of rows by age: rows whose int64 stamp at `offset` is more than max_age_ns
 * before now move to `expired` (in order), the rest are compacted at the front of `rows`.
 * Returns the number of fresh rows; *n_expired gets the rest. */
static inline uint64_t tio_split_expired(char *rows, uint64_t n, uint64_t itemsize, uint64_t offset,
                                         uint64_t now, uint64_t max_age_ns, char *expired,
                                         uint64_t *n_expired) {
    uint64_t keep = 0, old = 0;
    for (uint64_t i = 0; i < n; i++) {
        char *row = rows + i * itemsize;
        int64_t stamp;
        memcpy(&stamp, row + offset, sizeof stamp);
        /* a stamp from the future (another clock, a replay) is young, never wrapped to old */
        if ((int64_t)(now - (uint64_t)stamp) > (int64_t)max_age_ns) {
            memcpy(expired + old * itemsize, row, itemsize);
            old++;
        } else {
            if (keep != i) memcpy(rows + keep * itemsize, row, itemsize);
            keep++;
        }
    }
    *n_expired = old;
    return keep;
}
