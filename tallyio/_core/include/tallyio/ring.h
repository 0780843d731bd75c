/* Bounded lock-free ring buffers of fixed-size records.
 *
 * One struct, two disciplines chosen at creation:
 *   SPSC - Lamport ring with cached indices: the producer keeps its last view of `head`, the
 *          consumer its last view of `tail`, so a push or pop touches the other side's cache line
 *          only when its cached view says the ring looks full / empty (the Disruptor and
 *          folly::ProducerConsumerQueue trick).
 *   MPMC - Vyukov's bounded queue: one sequence number per slot tells a producer that the slot is
 *          free for its ticket and a consumer that it holds the ticket's row. Bulk operations claim
 *          a run of tickets with one CAS (DPDK rte_ring style) and then wait, slot by slot, for the
 *          thread that owns the previous lap of that slot to finish its copy; that thread has
 *          already claimed it, so the wait is bounded by one memcpy unless it is descheduled, and
 *          the back-off yields the core to it.
 *
 * Rows live contiguously (not interleaved with the sequence numbers) so a bulk copy is at most two
 * memcpy calls. Producer state, consumer state, failure counters and read-only geometry each own a
 * cache line, so the two sides never write the same line.
 *
 * Tickets are 64-bit and never wrap in practice (2^64 rows at 1e9 rows/s is 584 years).
 *
 * SPSC is only correct with one producer thread and one consumer thread at a time; with more it
 * hands out rows twice (measured: 3x the rows pushed with 4 producers). So each side of an SPSC
 * ring has an owner: the first thread that claims it (tio_ring_claim_producer / _consumer, called
 * by every Python-level push and pop, and by compiled callers before their loop). Another thread's
 * claim fails until the owner side is released (tio_ring_release_*), which is how a side is
 * handed from one thread to the next. The check is one pthread_self() and one relaxed load of a
 * line the owner already holds.
 *
 * Every publish ends with tio_waitq_notify (wait.h), so a consumer parked on the ring's wait
 * queue wakes when a row arrives; while nobody is parked that is a compiler barrier and one
 * relaxed load.
 */
#pragma once
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include "tallyio/atomic.h"
#include "tallyio/wait.h"

enum { TIO_RING_SPSC = 0, TIO_RING_MPMC = 1 };

typedef struct {
    TIO_ALIGNED tio_atomic_u64 tail; /* next ticket a producer claims */
    uint64_t cached_head;            /* SPSC: producer's view of head */
    tio_atomic_u64 producer;         /* SPSC: owning thread (pthread_self), 0: none yet */
    TIO_ALIGNED tio_atomic_u64 head; /* next ticket a consumer claims */
    uint64_t cached_tail;            /* SPSC: consumer's view of tail */
    tio_atomic_u64 consumer;         /* SPSC: owning thread, 0: none yet */
    TIO_ALIGNED tio_atomic_u64 rejected; /* rows refused because the ring was full */
    tio_atomic_u64 empty_pops;           /* pop calls that found nothing */
    TIO_ALIGNED uint64_t capacity;
    uint64_t mask;
    uint64_t itemsize;
    int kind;
    int asym; /* membarrier available: producers' wake check needs no fence (wait.h) */
    char *data;
    tio_atomic_u64 *seq; /* MPMC only */
    /* Last, on its own line: the owners and `asym` above went into padding, so every field that
     * existed before the wait queue keeps its offset (a module compiled against the older layout
     * still reads the geometry right until it is rebuilt). */
    tio_waitq wq; /* where consumers park */
} tio_ring;

static inline void tio_ring_free(tio_ring *r) {
    if (r) {
        free(r->data);
        free((void *)r->seq);
        free(r);
    }
}

/* capacity must be a power of two >= 2 (checked by the caller, which can raise). NULL on OOM. */
static inline tio_ring *tio_ring_new(uint64_t capacity, uint64_t itemsize, int kind) {
    tio_ring *r = NULL;
    if (posix_memalign((void **)&r, TIO_CACHELINE, sizeof(tio_ring)) != 0) return NULL;
    memset(r, 0, sizeof(*r));
    r->capacity = capacity;
    r->mask = capacity - 1;
    r->itemsize = itemsize;
    r->kind = kind;
    tio_waitq_init(&r->wq);
    r->asym = tio_membarrier_init();
    if (posix_memalign((void **)&r->data, TIO_CACHELINE, capacity * itemsize) != 0) {
        r->data = NULL;
        tio_ring_free(r);
        return NULL;
    }
    if (kind == TIO_RING_MPMC) {
        if (posix_memalign((void **)&r->seq, TIO_CACHELINE, capacity * sizeof(uint64_t)) != 0) {
            r->seq = NULL;
            tio_ring_free(r);
            return NULL;
        }
        for (uint64_t i = 0; i < capacity; i++) atomic_init(&r->seq[i], i);
    }
    return r;
}

static inline char *tio_ring_slot(const tio_ring *r, uint64_t ticket) {
    return r->data + (ticket & r->mask) * r->itemsize;
}

static inline void tio_ring_copy_row(const tio_ring *r, void *dst, const void *src) {
    if (r->itemsize == 8) /* the int64 ring: one move instead of a memcpy call */
        memcpy(dst, src, 8);
    else
        memcpy(dst, src, r->itemsize);
}

/* Copy n rows starting at ticket into the ring (to_ring) or out of it, across the wrap. */
static inline void tio_ring_copy_run(const tio_ring *r, uint64_t ticket, char *buf, uint64_t n,
                                     int to_ring) {
    uint64_t start = ticket & r->mask;
    uint64_t first = r->capacity - start;
    if (first > n) first = n;
    char *slot = r->data + start * r->itemsize;
    if (to_ring) {
        memcpy(slot, buf, first * r->itemsize);
        memcpy(r->data, buf + first * r->itemsize, (n - first) * r->itemsize);
    } else {
        memcpy(buf, slot, first * r->itemsize);
        memcpy(buf + first * r->itemsize, r->data, (n - first) * r->itemsize);
    }
}

/* ---- SPSC ownership ---- */

static inline uint64_t tio_thread_id(void) { return (uint64_t)pthread_self(); }

/* 0 when the calling thread owns this side (or has just taken it); else the owner's id. The
 * acquire of a successful claim pairs with the release of tio_ring_release_side, so a new owner
 * sees everything its predecessor did to the ring (its cached index included). */
static inline uint64_t tio_ring_claim_side(tio_atomic_u64 *owner) {
    uint64_t me = tio_thread_id();
    uint64_t o = tio_load_relaxed(owner);
    if (TIO_LIKELY(o == me)) return 0;
    if (o == 0 && atomic_compare_exchange_strong_explicit(owner, &o, me, memory_order_acquire,
                                                          memory_order_relaxed))
        return 0;
    return o;
}

/* Claim the producer (consumer) side of an SPSC ring for the calling thread: 0 when it is now
 * this thread's, else the id of the thread that owns it. Always 0 for an MPMC ring. */
static inline uint64_t tio_ring_claim_producer(tio_ring *r) {
    return r->kind == TIO_RING_SPSC ? tio_ring_claim_side(&r->producer) : 0;
}
static inline uint64_t tio_ring_claim_consumer(tio_ring *r) {
    return r->kind == TIO_RING_SPSC ? tio_ring_claim_side(&r->consumer) : 0;
}

/* Give a side up, so the next thread that claims it owns it. Call it from the owner after its
 * last operation, or from a thread that has joined the owner: the hand-over is only safe once
 * the old owner has stopped. */
static inline void tio_ring_release_producer(tio_ring *r) { tio_store_release(&r->producer, 0); }
static inline void tio_ring_release_consumer(tio_ring *r) { tio_store_release(&r->consumer, 0); }

/* The owning thread of a side (0: none). */
static inline uint64_t tio_ring_producer_owner(tio_ring *r) { return tio_load_relaxed(&r->producer); }
static inline uint64_t tio_ring_consumer_owner(tio_ring *r) { return tio_load_relaxed(&r->consumer); }

/* ---- waking and parking ---- */

/* Wake consumers parked on the ring, if any: called after every publish. */
static inline void tio_ring_notify(tio_ring *r) { tio_waitq_notify(&r->wq, r->asym); }

/* Wake every parked consumer unconditionally (close, stop flags). */
static inline void tio_ring_wake(tio_ring *r) { tio_waitq_wake(&r->wq); }

static inline uint64_t tio_ring_size(tio_ring *r);

/* Park until a producer publishes, *stop becomes non-zero (NULL: no stop flag; whoever sets it
 * must call tio_ring_wake after), or timeout_ns passes (the caller bounds it, see
 * TIO_PARK_SLICE_NS). Returns at once if a row is already there. Spurious returns are possible:
 * callers loop on their own condition. */
static inline void tio_ring_park(tio_ring *r, uint64_t timeout_ns, tio_atomic_u64 *stop) {
    uint32_t w = tio_waitq_prepare(&r->wq, r->asym);
    /* size counts claimed tickets, so a row being copied in also counts: its producer publishes
     * right after and would wake us anyway; not sleeping here just spares the wake-up. */
    if (tio_ring_size(r) == 0 && !(stop && atomic_load_explicit(stop, memory_order_seq_cst)))
        tio_waitq_wait(&r->wq, w, timeout_ns);
    tio_waitq_done(&r->wq);
}

/* ---- SPSC ---- */

static inline uint64_t tio_spsc_reserve_push(tio_ring *r, uint64_t t, uint64_t want) {
    uint64_t free_slots = r->capacity - (t - r->cached_head);
    if (free_slots < want) {
        r->cached_head = tio_load_acquire(&r->head);
        free_slots = r->capacity - (t - r->cached_head);
    }
    return free_slots < want ? free_slots : want;
}

static inline uint64_t tio_spsc_reserve_pop(tio_ring *r, uint64_t h, uint64_t want) {
    uint64_t avail = r->cached_tail - h;
    if (avail < want) {
        r->cached_tail = tio_load_acquire(&r->tail);
        avail = r->cached_tail - h;
    }
    return avail < want ? avail : want;
}

/* ---- MPMC: claim a run of tickets ---- */

static inline uint64_t tio_mpmc_claim(tio_atomic_u64 *mine, tio_atomic_u64 *theirs, uint64_t cap,
                                      int producer, uint64_t want, uint64_t *first) {
    uint64_t pos = tio_load_relaxed(mine);
    for (;;) {
        uint64_t other = tio_load_acquire(theirs);
        /* producer: free = cap - (tail - head); consumer: avail = tail - head */
        uint64_t in_use = producer ? pos - other : other - pos;
        if ((int64_t)in_use < 0 || in_use > cap) { /* stale pos: another claimer moved on */
            pos = tio_load_relaxed(mine);
            continue;
        }
        uint64_t room = producer ? cap - in_use : in_use;
        if (room == 0) return 0;
        uint64_t n = room < want ? room : want;
        if (tio_cas_acq_rel(mine, &pos, pos + n)) {
            *first = pos;
            return n;
        }
    }
}

/* Wait until every slot of the run is ours: seq == ticket + offset (offset 0 for producers, whose
 * slot must have been released by the consumer of the previous lap; 1 for consumers, whose slot
 * must hold the row of this lap). */
static inline void tio_mpmc_wait_run(tio_ring *r, uint64_t first, uint64_t n, uint64_t offset) {
    for (uint64_t i = 0; i < n; i++) {
        tio_atomic_u64 *s = &r->seq[(first + i) & r->mask];
        tio_backoff b = {0};
        while (tio_load_acquire(s) != first + i + offset) tio_backoff_wait(&b);
    }
}

static inline void tio_mpmc_publish_run(tio_ring *r, uint64_t first, uint64_t n, uint64_t offset) {
    for (uint64_t i = 0; i < n; i++)
        tio_store_release(&r->seq[(first + i) & r->mask], first + i + offset);
}

/* ---- public operations: 1 / 0 for single rows, a count for runs ---- */

static inline int tio_ring_push(tio_ring *r, const void *src) {
    if (r->kind == TIO_RING_SPSC) {
        uint64_t t = tio_load_relaxed(&r->tail);
        if (TIO_UNLIKELY(tio_spsc_reserve_push(r, t, 1) == 0)) goto full;
        tio_ring_copy_row(r, tio_ring_slot(r, t), src);
        tio_store_release(&r->tail, t + 1);
        tio_ring_notify(r);
        return 1;
    }
    /* Vyukov single push: claim only a slot whose sequence says it is free for this lap. */
    uint64_t pos = tio_load_relaxed(&r->tail);
    for (;;) {
        uint64_t s = tio_load_acquire(&r->seq[pos & r->mask]);
        int64_t dif = (int64_t)(s - pos);
        if (dif == 0) {
            if (tio_cas_acq_rel(&r->tail, &pos, pos + 1)) break;
        } else if (dif < 0) {
            goto full;
        } else {
            pos = tio_load_relaxed(&r->tail);
        }
    }
    tio_ring_copy_row(r, tio_ring_slot(r, pos), src);
    tio_store_release(&r->seq[pos & r->mask], pos + 1);
    tio_ring_notify(r);
    return 1;
full:
    tio_fetch_add_relaxed(&r->rejected, 1);
    return 0;
}

static inline int tio_ring_pop(tio_ring *r, void *dst) {
    if (r->kind == TIO_RING_SPSC) {
        uint64_t h = tio_load_relaxed(&r->head);
        if (TIO_UNLIKELY(tio_spsc_reserve_pop(r, h, 1) == 0)) goto empty;
        tio_ring_copy_row(r, dst, tio_ring_slot(r, h));
        tio_store_release(&r->head, h + 1);
        return 1;
    }
    uint64_t pos = tio_load_relaxed(&r->head);
    for (;;) {
        uint64_t s = tio_load_acquire(&r->seq[pos & r->mask]);
        int64_t dif = (int64_t)(s - (pos + 1));
        if (dif == 0) {
            if (tio_cas_acq_rel(&r->head, &pos, pos + 1)) break;
        } else if (dif < 0) {
            goto empty;
        } else {
            pos = tio_load_relaxed(&r->head);
        }
    }
    tio_ring_copy_row(r, dst, tio_ring_slot(r, pos));
    tio_store_release(&r->seq[pos & r->mask], pos + r->capacity);
    return 1;
empty:
    tio_fetch_add_relaxed(&r->empty_pops, 1);
    return 0;
}

/* Push up to n rows from src; returns how many were taken (a prefix of src). */
static inline uint64_t tio_ring_push_many(tio_ring *r, const void *src, uint64_t n) {
    uint64_t first = 0, k;
    if (n == 0) return 0;
    if (r->kind == TIO_RING_SPSC) {
        first = tio_load_relaxed(&r->tail);
        k = tio_spsc_reserve_push(r, first, n);
        tio_ring_copy_run(r, first, (char *)src, k, 1);
        tio_store_release(&r->tail, first + k);
    } else {
        k = tio_mpmc_claim(&r->tail, &r->head, r->capacity, 1, n, &first);
        tio_mpmc_wait_run(r, first, k, 0);
        tio_ring_copy_run(r, first, (char *)src, k, 1);
        tio_mpmc_publish_run(r, first, k, 1);
    }
    if (k) tio_ring_notify(r);
    if (k < n) tio_fetch_add_relaxed(&r->rejected, n - k);
    return k;
}

/* Pop up to n rows into dst; returns how many were taken. */
static inline uint64_t tio_ring_pop_many(tio_ring *r, void *dst, uint64_t n) {
    uint64_t first = 0, k;
    if (n == 0) return 0;
    if (r->kind == TIO_RING_SPSC) {
        first = tio_load_relaxed(&r->head);
        k = tio_spsc_reserve_pop(r, first, n);
        tio_ring_copy_run(r, first, (char *)dst, k, 0);
        tio_store_release(&r->head, first + k);
    } else {
        k = tio_mpmc_claim(&r->head, &r->tail, r->capacity, 0, n, &first);
        tio_mpmc_wait_run(r, first, k, 1);
        tio_ring_copy_run(r, first, (char *)dst, k, 0);
        tio_mpmc_publish_run(r, first, k, r->capacity);
    }
    if (k == 0) tio_fetch_add_relaxed(&r->empty_pops, 1);
    return k;
}

/* Rows claimed by producers and not yet claimed by consumers; exact when the ring is quiet. */
static inline uint64_t tio_ring_size(tio_ring *r) {
    uint64_t h = tio_load_acquire(&r->head);
    uint64_t t = tio_load_acquire(&r->tail);
    int64_t d = (int64_t)(t - h);
    if (d < 0) return 0;
    return (uint64_t)d > r->capacity ? r->capacity : (uint64_t)d;
}

/* Counters for stats(): relaxed reads, a snapshot, not a transaction. */
static inline uint64_t tio_ring_pushed(tio_ring *r) { return tio_load_relaxed(&r->tail); }
static inline uint64_t tio_ring_popped(tio_ring *r) { return tio_load_relaxed(&r->head); }
static inline uint64_t tio_ring_rejected(tio_ring *r) { return tio_load_relaxed(&r->rejected); }
static inline uint64_t tio_ring_empty_pops(tio_ring *r) { return tio_load_relaxed(&r->empty_pops); }
static inline uint64_t tio_ring_wakes(tio_ring *r) { return tio_load_relaxed(&r->wq.wakes); }
static inline uint64_t tio_ring_parks(tio_ring *r) { return tio_load_relaxed(&r->wq.parks); }
