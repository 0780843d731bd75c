/* C11 atomics, cache-line padding and the spin-wait hint used by every compiled module.
 *
 * Cython cannot spell `_Atomic`, so the shared state of every lock-free structure is declared
 * here and manipulated through these helpers; the .pxd files see opaque structs.
 */
#pragma once
#include <stdatomic.h>
#include <stdint.h>
#include <stddef.h>
#include <sched.h>

/* 64 B on x86-64 and most ARM cores. Two lines (128 B) would also defeat the adjacent-line
 * prefetcher on Intel, but doubles the footprint of every padded counter; 64 B is what
 * LMAX Disruptor and DPDK's rte_ring use by default. */
#define TIO_CACHELINE 64
#define TIO_ALIGNED __attribute__((aligned(TIO_CACHELINE)))

#if defined(__GNUC__) || defined(__clang__)
#define TIO_LIKELY(x) __builtin_expect(!!(x), 1)
#define TIO_UNLIKELY(x) __builtin_expect(!!(x), 0)
#else
#define TIO_LIKELY(x) (x)
#define TIO_UNLIKELY(x) (x)
#endif

typedef _Atomic uint64_t tio_atomic_u64;
typedef _Atomic int64_t tio_atomic_i64;

static inline uint64_t tio_load_relaxed(tio_atomic_u64 *p) {
    return atomic_load_explicit(p, memory_order_relaxed);
}
static inline uint64_t tio_load_acquire(tio_atomic_u64 *p) {
    return atomic_load_explicit(p, memory_order_acquire);
}
static inline void tio_store_relaxed(tio_atomic_u64 *p, uint64_t v) {
    atomic_store_explicit(p, v, memory_order_relaxed);
}
static inline void tio_store_release(tio_atomic_u64 *p, uint64_t v) {
    atomic_store_explicit(p, v, memory_order_release);
}
static inline uint64_t tio_fetch_add_relaxed(tio_atomic_u64 *p, uint64_t v) {
    return atomic_fetch_add_explicit(p, v, memory_order_relaxed);
}
/* Strong CAS: the callers loop on their own conditions, a spurious failure would only cost a retry
 * of work that is more expensive than the CAS. */
static inline int tio_cas_acq_rel(tio_atomic_u64 *p, uint64_t *expected, uint64_t desired) {
    return atomic_compare_exchange_strong_explicit(p, expected, desired, memory_order_acq_rel,
                                                   memory_order_relaxed);
}
static inline uint64_t tio_exchange_acq_rel(tio_atomic_u64 *p, uint64_t v) {
    return atomic_exchange_explicit(p, v, memory_order_acq_rel);
}
static inline void tio_max_relaxed(tio_atomic_u64 *p, uint64_t v) {
    uint64_t cur = atomic_load_explicit(p, memory_order_relaxed);
    while (cur < v && !atomic_compare_exchange_weak_explicit(p, &cur, v, memory_order_relaxed,
                                                             memory_order_relaxed)) {
    }
}
static inline void tio_min_relaxed(tio_atomic_u64 *p, uint64_t v) {
    uint64_t cur = atomic_load_explicit(p, memory_order_relaxed);
    while (cur > v && !atomic_compare_exchange_weak_explicit(p, &cur, v, memory_order_relaxed,
                                                             memory_order_relaxed)) {
    }
}

/* The pause hint lets the sibling hyper-thread run and saves power in spin loops. */
static inline void tio_cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

/* Spin-then-yield back-off for waits that are expected to be short (another thread finishing a
 * copy it has already claimed). On an oversubscribed machine the thread we wait for may be
 * descheduled; yielding after a bounded spin hands it the core instead of burning our slice. */
typedef struct {
    uint32_t spins;
} tio_backoff;

static inline void tio_backoff_wait(tio_backoff *b) {
    if (b->spins < 64) {
        b->spins++;
        tio_cpu_relax();
    } else {
        sched_yield();
    }
}
