/* Object queue: a ring of (object, tag, enqueue stamp) entries with a close gate and a drain that
 * waits for a batch without the GIL.
 *
 * The entries are plain C structs in a tio_ring (itemsize 24): the ring never touches reference
 * counts; the Cython side INCREFs before a push and steals the references after a pop.
 *
 * The gate makes close() lossless without a lock on the submit path. A submitter announces itself
 * (in_flight += 1) and then reads `closed`; the closer sets `closed` and the consumer reads
 * in_flight. Both pairs are seq_cst, so (Dekker) at least one side sees the other: either the
 * submitter sees `closed` and backs out before pushing, or the consumer sees it in flight and keeps
 * draining until it leaves. A leave is a release, so once the consumer reads in_flight == 0 after
 * the close, every accepted push is visible to it and the ring's emptiness is final.
 *
 * The GIL hand-off. A consumer whose batch is ready must take the GIL back from a producer that
 * is busy submitting; CPython makes it wait up to the switch interval (5 ms) before it forces a
 * switch, which would be the latency of every batch under a steady stream of submits. So the
 * consumer raises `wanted` before it takes the GIL and `busy` while it holds it; a producer that
 * sees `wanted` in its next put releases the GIL and waits, spinning then yielding, until the
 * consumer is done with the batch and back in its nogil wait, then takes the GIL back
 * uncontended. The producer could not run Python meanwhile anyway: the consumer holds the GIL.
 */
#pragma once
#include "tallyio/atomic.h"
#include "tallyio/clock.h"
#include "tallyio/drain.h"
#include "tallyio/ring.h"

typedef struct {
    void *obj;
    void *tag;
    int64_t stamp; /* enqueue time, tio_now_ns() */
} tio_objq_entry;

#define TIO_OBJQ_STAMP_OFFSET offsetof(tio_objq_entry, stamp)

typedef struct {
    TIO_ALIGNED tio_atomic_u64 in_flight; /* submitters between enter and leave */
    TIO_ALIGNED tio_atomic_u64 closed;
    TIO_ALIGNED tio_atomic_u64 wanted; /* the consumer is about to take the GIL for a batch */
    tio_atomic_u64 busy;               /* the consumer holds the GIL between two drains */
} tio_objq_gate;

/* Zeroed (open, nobody in flight) and on its own cache lines; NULL on OOM. */
static inline tio_objq_gate *tio_objq_gate_new(void) {
    tio_objq_gate *g = NULL;
    if (posix_memalign((void **)&g, TIO_CACHELINE, sizeof(*g)) != 0) return NULL;
    memset(g, 0, sizeof(*g));
    return g;
}

static inline void tio_objq_gate_free(tio_objq_gate *g) { free(g); }

static inline int tio_objq_enter(tio_objq_gate *g) {
    atomic_fetch_add_explicit(&g->in_flight, 1, memory_order_seq_cst);
    if (TIO_UNLIKELY(atomic_load_explicit(&g->closed, memory_order_seq_cst))) {
        atomic_fetch_sub_explicit(&g->in_flight, 1, memory_order_release);
        return 0;
    }
    return 1;
}

static inline void tio_objq_leave(tio_objq_gate *g) {
    atomic_fetch_sub_explicit(&g->in_flight, 1, memory_order_release);
}

static inline void tio_objq_close(tio_objq_gate *g) {
    atomic_store_explicit(&g->closed, 1, memory_order_seq_cst);
}

static inline int tio_objq_is_closed(tio_objq_gate *g) {
    return atomic_load_explicit(&g->closed, memory_order_seq_cst) != 0;
}

/* Closed and nobody can push any more: what is in the ring now is all there will ever be. */
static inline int tio_objq_quiet(tio_objq_gate *g) {
    return tio_objq_is_closed(g) &&
           atomic_load_explicit(&g->in_flight, memory_order_seq_cst) == 0;
}

/* Consumer side of the hand-off: raise `wanted` (nogil, batch in hand), then once it holds the
 * GIL mark itself busy before lowering `wanted`, so a producer never sees both low mid-batch. */
static inline void tio_objq_want_gil(tio_objq_gate *g) {
    atomic_store_explicit(&g->wanted, 1, memory_order_release);
}
static inline void tio_objq_got_gil(tio_objq_gate *g) {
    atomic_store_explicit(&g->busy, 1, memory_order_release);
    atomic_store_explicit(&g->wanted, 0, memory_order_release);
}
static inline void tio_objq_released_gil(tio_objq_gate *g) {
    atomic_store_explicit(&g->busy, 0, memory_order_release);
}
static inline int tio_objq_gil_wanted(tio_objq_gate *g) {
    return atomic_load_explicit(&g->wanted, memory_order_relaxed) != 0;
}

/* Producer side, called without the GIL: wait until the consumer has taken the GIL and released
 * it again, or until max_ns passed (a consumer that never comes must not stall producers). */
static inline void tio_objq_yield_gil(tio_objq_gate *g, const tio_drain_policy *p,
                                      uint64_t max_ns) {
    uint64_t start = tio_now_ns(), now = start;
    while ((atomic_load_explicit(&g->wanted, memory_order_acquire) ||
            atomic_load_explicit(&g->busy, memory_order_acquire)) &&
           now - start < max_ns) {
        tio_drain_backoff(p, now - start);
        now = tio_now_ns();
    }
}

/* Push one entry, waiting for room until deadline_ns (UINT64_MAX: forever) with the drain's
 * spin-then-yield policy. 1 when pushed, 0 when the deadline passed. */
static inline int tio_objq_push_wait(tio_ring *r, const tio_objq_entry *e, uint64_t deadline_ns,
                                     const tio_drain_policy *p) {
    uint64_t start = 0;
    for (;;) {
        if (tio_ring_push(r, e)) return 1;
        uint64_t now = tio_now_ns();
        if (start == 0) start = now;
        if (now >= deadline_ns) return 0;
        tio_drain_backoff(p, now - start);
    }
}

/* Push entries[done..n) in runs, waiting for room until deadline_ns; returns how many were taken
 * in total (a prefix). */
static inline uint64_t tio_objq_push_many_wait(tio_ring *r, const tio_objq_entry *e, uint64_t n,
                                               uint64_t deadline_ns, const tio_drain_policy *p) {
    uint64_t done = 0, start = 0;
    for (;;) {
        done += tio_ring_push_many(r, e + done, n - done);
        if (done == n) return n;
        uint64_t now = tio_now_ns();
        if (start == 0) start = now;
        if (now >= deadline_ns) return done;
        tio_drain_backoff(p, now - start);
    }
}

enum {
    TIO_OBJQ_FULL = TIO_DRAIN_FULL,       /* batch_size entries in hand */
    TIO_OBJQ_TIMEOUT = TIO_DRAIN_TIMEOUT, /* the first entry was enqueued batch_timeout ago */
    TIO_OBJQ_FLUSH = 3,                   /* closed: cut without waiting for more */
    TIO_OBJQ_STOPPED = 4                  /* closed, nobody in flight, ring empty: nothing more */
};

/* Collect up to n entries into out. The batch is cut when it is full, when its first entry's
 * enqueue stamp is batch_timeout_ns old (so a batch that queued while the consumer was busy goes
 * out at once), or, after close, as soon as the ring is empty. Without entries it waits until one
 * arrives or the gate is quiet and the ring empty: spinning, then backing off, then parked on the
 * ring (a put wakes it; so does close, through tio_objq_close_wake). After close it never parks:
 * it waits for the submitters still in flight, which need no wake-up to leave. */
static inline uint64_t tio_objq_drain(tio_ring *r, tio_objq_gate *g, tio_objq_entry *out,
                                      uint64_t n, uint64_t batch_timeout_ns,
                                      const tio_drain_policy *p, int *how) {
    uint64_t got = 0, idle_since = tio_now_ns();
    for (;;) {
        /* read the gate before popping: a quiet gate and then an empty pop mean no more pushes */
        int quiet = got == 0 && tio_objq_quiet(g);
        uint64_t k = tio_ring_pop_many(r, out + got, n - got);
        got += k;
        if (got == n) {
            *how = TIO_OBJQ_FULL;
            return got;
        }
        uint64_t now = tio_now_ns();
        if (got) {
            /* a stamp from the future (an injected clock) counts as just enqueued */
            int64_t age = (int64_t)(now - (uint64_t)out[0].stamp);
            if (age >= (int64_t)batch_timeout_ns) {
                *how = TIO_OBJQ_TIMEOUT;
                return got;
            }
            if (k == 0 && tio_objq_is_closed(g)) {
                *how = TIO_OBJQ_FLUSH;
                return got;
            }
        } else if (quiet) {
            *how = TIO_OBJQ_STOPPED;
            return 0;
        }
        if (k) idle_since = now;
        uint64_t left = UINT64_MAX; /* no entry: wait for one as long as it takes */
        if (got) {
            int64_t age = (int64_t)(now - (uint64_t)out[0].stamp);
            left = age < 0 ? batch_timeout_ns : batch_timeout_ns - (uint64_t)age;
        }
        tio_drain_wait(r, p, now - idle_since, left, &g->closed);
    }
}

/* Close the gate and wake a consumer parked in tio_objq_drain: the gate's `closed` is its stop
 * flag, stored before the wake, which its recheck after registering then sees. */
static inline void tio_objq_close_wake(tio_ring *r, tio_objq_gate *g) {
    tio_objq_close(g);
    tio_ring_wake(r);
}
