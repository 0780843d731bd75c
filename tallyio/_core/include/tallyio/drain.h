/* Batch drain: collect up to n rows from a ring, waiting a bounded time for the batch to fill.
 *
 * The wait degrades gracefully (wait.h): it spins for spin_ns after the last row, backs off
 * (sched_yield, or nanosleep of sleep_ns) for backoff_ns more, then parks on the ring's wait queue
 * until a producer publishes or the drain's own deadline comes. A busy drain never pays the tens
 * of microseconds a wake-up costs on a VM (see PERF-NOTES); an idle one costs next to no CPU.
 */
#pragma once
#include <time.h>
#include "tallyio/clock.h"
#include "tallyio/ring.h"
#include "tallyio/wait.h"

typedef struct {
    uint64_t batch_timeout_ns; /* cut the batch this long after its first row arrived */
    uint64_t idle_timeout_ns;  /* return empty if no row arrives within this */
    uint64_t spin_ns;          /* phase 1: busy-wait this long after the last row */
    uint64_t sleep_ns;         /* phase 2's pause between polls: 0 = sched_yield, else nanosleep */
    uint64_t backoff_ns;       /* phase 2 lasts this long */
    int park;                  /* phase 3: park until woken (0: stay in phase 2 for ever) */
    uint64_t park_slice_ns;    /* longest single park (0: TIO_PARK_SLICE_NS); see wait.h */
} tio_drain_policy;

/* What a drain remembers between calls: an idle return does not restart the spin and back-off
 * budgets, so a consumer that keeps finding nothing (an engine loop around an idle drain) parks
 * at once instead of spinning for spin_ns + backoff_ns on every call. */
typedef struct {
    uint64_t idle_since_ns; /* the last row (or the start of the first idle call); 0: not idle */
} tio_drain_state;

enum { TIO_DRAIN_FULL = 0, TIO_DRAIN_TIMEOUT = 1, TIO_DRAIN_IDLE = 2 };

/* Spin, then back off, for bounded waits that nobody wakes (a producer waiting for room, a GIL
 * hand-off): the first two phases only. */
static inline void tio_drain_backoff(const tio_drain_policy *p, uint64_t waited_ns) {
    tio_wait_poll(tio_wait_phase(waited_ns, p->spin_ns, UINT64_MAX, 0), p->sleep_ns, UINT64_MAX);
}

/* One wait step of a consumer that has been idle for idle_ns and must be back by left_ns from
 * now: spin, back off or park, as the policy says. stop: as for tio_ring_park. */
static inline void tio_drain_wait(tio_ring *r, const tio_drain_policy *p, uint64_t idle_ns,
                                  uint64_t left_ns, tio_atomic_u64 *stop) {
    int phase = tio_wait_phase(idle_ns, p->spin_ns, p->backoff_ns, p->park);
    if (phase == TIO_WAIT_PARK) {
        uint64_t slice = p->park_slice_ns ? p->park_slice_ns : TIO_PARK_SLICE_NS;
        tio_ring_park(r, left_ns < slice ? left_ns : slice, stop);
    } else
        tio_wait_poll(phase, p->sleep_ns, left_ns);
}

/* Fill out with up to n rows; *how says why it returned (full, batch timeout, idle timeout). */
static inline uint64_t tio_drain(tio_ring *r, char *out, uint64_t n, const tio_drain_policy *p,
                                 tio_drain_state *st, int *how) {
    uint64_t got = 0, start = tio_now_ns(), first_at = 0, now;
    uint64_t active = st->idle_since_ns ? st->idle_since_ns : start;
    for (;;) {
        uint64_t k = tio_ring_pop_many(r, out + got * r->itemsize, n - got);
        now = tio_now_ns();
        if (k) {
            if (got == 0) first_at = now;
            got += k;
            active = now;
            if (got == n) {
                *how = TIO_DRAIN_FULL;
                break;
            }
        }
        uint64_t deadline = got ? first_at + p->batch_timeout_ns : start + p->idle_timeout_ns;
        if (now >= deadline) {
            *how = got ? TIO_DRAIN_TIMEOUT : TIO_DRAIN_IDLE;
            break;
        }
        tio_drain_wait(r, p, now - active, deadline - now, NULL);
    }
    st->idle_since_ns = got ? 0 : active;
    return got;
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
