/* Waiting that degrades gracefully: spin, then yield (or sleep), then park until a producer wakes
 * the waiter.
 *
 * Spinning keeps a hand-off in the sub-microsecond range but burns a core; waking a parked thread
 * costs tens of microseconds on a VM (see PERF-NOTES). So a consumer spins for a bounded time
 * after its last row, backs off (sched_yield or a short nanosleep) for a bounded time more, and
 * only then parks: an idle consumer costs next to nothing, a busy one never pays a wake-up.
 *
 * Parking is an eventcount (the pattern of folly's EventCount and Linux's own futex users): a
 * 32-bit futex word that each wake bumps, and a count of threads that are parked or about to.
 *
 *   consumer                                   producer
 *   sleepers += 1                              publish the row (release store)
 *   heavy fence                                light fence
 *   w = word                                   if sleepers: word += 1; FUTEX_WAKE(word)
 *   recheck: a row there? -> don't sleep
 *   FUTEX_WAIT(word, w, timeout)   -- returns at once if word != w
 *   sleepers -= 1
 *
 * Either the producer sees the consumer's sleepers increment (and wakes it), or the consumer's
 * recheck sees the producer's row: the two fences make that a Dekker pair. A wake that bumps the
 * word after the consumer read w makes FUTEX_WAIT return at once; one that came before is seen
 * by the recheck (the increment is ordered after the publish). No wake-up is lost.
 *
 * The fences are asymmetric so the producer's fast path stays a compiler barrier and one relaxed
 * load of `sleepers`: the rare side (a consumer about to park) runs membarrier(2)
 * MEMBARRIER_CMD_PRIVATE_EXPEDITED, which makes every running thread of the process execute a
 * full barrier, standing in for the barrier the producers skip (the asymmetric fences of P1202,
 * folly's asymmetricHeavyBarrier, liburcu). Where membarrier is unavailable (not Linux, kernel
 * older than 4.14, a seccomp filter, or TALLYIO_NO_MEMBARRIER=1 for tests) each side uses a real
 * seq_cst fence instead; the choice is made once per ring, so both sides of a ring always agree.
 *
 * Without futexes (not Linux) a parked thread polls with nanosleep in short slices instead.
 */
#pragma once
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <limits.h>
#include <sched.h>
#include <stdint.h>
#include <stdlib.h>
#include <time.h>
#if defined(__linux__)
#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>
#endif
#include "tallyio/atomic.h"

#if defined(__linux__) && defined(SYS_futex)
#define TIO_HAVE_FUTEX 1
#else
#define TIO_HAVE_FUTEX 0
#endif

/* membarrier(2) commands, spelled out for headers that predate them (values from the ABI). */
#define TIO_MEMBARRIER_CMD_QUERY 0
#define TIO_MEMBARRIER_CMD_PRIVATE_EXPEDITED (1 << 3)
#define TIO_MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED (1 << 4)

/* The default longest single park (the policies' park_slice_ns): a safety net only (a producer's
 * publish wakes a parked thread at once), so a thread waiting without a deadline still re-checks
 * its condition now and then. Without futexes it is the polling period, hence much shorter.
 * Tests set a huge slice, so that a lost wake-up would hang instead of hiding in the slice. */
#if TIO_HAVE_FUTEX
#define TIO_PARK_SLICE_NS 50000000ull /* 50 ms */
#else
#define TIO_PARK_SLICE_NS 200000ull /* 200 us */
#endif

typedef _Atomic uint32_t tio_atomic_u32;

/* The wake-up point of one ring: on its own cache line, which producers only read (while nobody
 * parks) and consumers write only when they park. */
typedef struct {
    TIO_ALIGNED tio_atomic_u32 word; /* futex word: bumped by every wake */
    tio_atomic_u32 sleepers;         /* threads parked, or registered and about to park */
    tio_atomic_u64 wakes;            /* wake calls made (a producer saw a sleeper), for stats */
    tio_atomic_u64 parks;            /* futex waits entered, for stats */
} tio_waitq;

/* ---- asymmetric fences ---- */

/* 1 when this process is registered for private expedited membarrier, else 0. Registration is
 * per process, so each extension that includes this header may do it once; it is idempotent. */
static inline int tio_membarrier_init(void) {
#if defined(__linux__) && defined(SYS_membarrier)
    static _Atomic int state; /* 0: not yet asked, 1: registered, -1: unavailable */
    int s = atomic_load_explicit(&state, memory_order_acquire);
    if (s) return s > 0;
    const char *off = getenv("TALLYIO_NO_MEMBARRIER");
    long q = (off && *off && *off != '0') ? -1 : syscall(SYS_membarrier, TIO_MEMBARRIER_CMD_QUERY, 0, 0);
    int ok = q > 0 && (q & TIO_MEMBARRIER_CMD_PRIVATE_EXPEDITED) &&
             syscall(SYS_membarrier, TIO_MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED, 0, 0) == 0;
    atomic_store_explicit(&state, ok ? 1 : -1, memory_order_release);
    return ok;
#else
    return 0;
#endif
}

/* The producer's side: free (a compiler barrier) when the parker runs membarrier. */
static inline void tio_fence_light(int asym) {
    if (TIO_LIKELY(asym))
        atomic_signal_fence(memory_order_seq_cst);
    else
        atomic_thread_fence(memory_order_seq_cst);
}

/* The parker's side: a full barrier on every running thread of the process. */
static inline void tio_fence_heavy(int asym) {
#if defined(__linux__) && defined(SYS_membarrier)
    if (asym) {
        /* Registered, so this cannot fail with EPERM; were it ever to fail, the producers' light
         * fences would leave a race, bounded by TIO_PARK_SLICE_NS. */
        syscall(SYS_membarrier, TIO_MEMBARRIER_CMD_PRIVATE_EXPEDITED, 0, 0);
        return;
    }
#endif
    (void)asym;
    atomic_thread_fence(memory_order_seq_cst);
}

/* ---- the eventcount ---- */

static inline void tio_waitq_init(tio_waitq *q) {
    atomic_init(&q->word, 0);
    atomic_init(&q->sleepers, 0);
    atomic_init(&q->wakes, 0);
    atomic_init(&q->parks, 0);
}

/* Wake every parked thread. Out of line: it is the rare path of a publish. */
__attribute__((noinline, cold)) static void tio_waitq_wake(tio_waitq *q) {
    atomic_fetch_add_explicit(&q->word, 1, memory_order_seq_cst);
    tio_fetch_add_relaxed(&q->wakes, 1);
#if TIO_HAVE_FUTEX
    syscall(SYS_futex, (void *)&q->word, FUTEX_WAKE_PRIVATE, INT_MAX, NULL, NULL, 0);
#endif
}

/* After publishing: wake parked threads, if any. The fast path is a compiler barrier (or a fence
 * without membarrier) and one relaxed load of a line nobody writes while the consumer is busy. */
static inline void tio_waitq_notify(tio_waitq *q, int asym) {
    tio_fence_light(asym);
    if (TIO_UNLIKELY(atomic_load_explicit(&q->sleepers, memory_order_relaxed)))
        tio_waitq_wake(q);
}

/* Register as about to park; returns the word to wait on. Recheck the condition after this, and
 * call tio_waitq_wait (or not) and then tio_waitq_done. */
static inline uint32_t tio_waitq_prepare(tio_waitq *q, int asym) {
    atomic_fetch_add_explicit(&q->sleepers, 1, memory_order_seq_cst);
    tio_fence_heavy(asym);
    return atomic_load_explicit(&q->word, memory_order_seq_cst);
}

/* Sleep until the word moves past w, or timeout_ns passed (or a signal / spurious wake-up). */
static inline void tio_waitq_wait(tio_waitq *q, uint32_t w, uint64_t timeout_ns) {
    if (timeout_ns == 0) return;
    struct timespec ts = {(time_t)(timeout_ns / 1000000000ull), (long)(timeout_ns % 1000000000ull)};
    tio_fetch_add_relaxed(&q->parks, 1);
#if TIO_HAVE_FUTEX
    /* Relative timeout on CLOCK_MONOTONIC; EAGAIN when the word already moved. */
    syscall(SYS_futex, (void *)&q->word, FUTEX_WAIT_PRIVATE, w, &ts, NULL, 0);
#else
    if (atomic_load_explicit(&q->word, memory_order_acquire) == w) nanosleep(&ts, NULL);
#endif
}

static inline void tio_waitq_done(tio_waitq *q) {
    atomic_fetch_sub_explicit(&q->sleepers, 1, memory_order_relaxed);
}

/* ---- the three phases ---- */

/* How long each phase lasts; embedded in the drain policies (tio_drain_policy). */
enum { TIO_WAIT_SPIN = 0, TIO_WAIT_BACKOFF = 1, TIO_WAIT_PARK = 2 };

/* Which phase a waiter idle for idle_ns is in: spin for spin_ns, back off for backoff_ns more,
 * then park (if allowed; else back off for ever). */
static inline int tio_wait_phase(uint64_t idle_ns, uint64_t spin_ns, uint64_t backoff_ns, int park) {
    if (idle_ns < spin_ns) return TIO_WAIT_SPIN;
    if (!park || idle_ns - spin_ns < backoff_ns) return TIO_WAIT_BACKOFF;
    return TIO_WAIT_PARK;
}

/* One poll interval of the first two phases. */
static inline void tio_wait_poll(int phase, uint64_t sleep_ns, uint64_t left_ns) {
    if (phase == TIO_WAIT_SPIN) {
        for (int i = 0; i < 16; i++) tio_cpu_relax();
    } else if (sleep_ns == 0) {
        sched_yield();
    } else {
        uint64_t ns = sleep_ns < left_ns ? sleep_ns : left_ns;
        struct timespec ts = {(time_t)(ns / 1000000000ull), (long)(ns % 1000000000ull)};
        nanosleep(&ts, NULL);
    }
}
