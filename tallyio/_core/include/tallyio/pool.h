/* Pre-allocated size-class memory pool: 64 B, 1 KiB, 4 KiB and 2 MiB blocks.
 *
 * Each class is one anonymous mapping cut into equal blocks, pre-faulted at start-up so the hot
 * path never takes a page fault. Free blocks sit on a Treiber stack whose 64-bit head packs a
 * 32-bit tag (bumped by every successful CAS) above a 32-bit block index: a pop that read head,
 * was preempted while the block was popped and pushed back by others, and then CASes a stale
 * `next` fails because the tag moved (the ABA problem; see Michael, "ABA Prevention Using
 * Single-Word Instructions", IBM RC23089, 2004). A 32-bit tag wraps after 2^32 operations, which a
 * preempted thread would have to sleep through between its load and its CAS.
 *
 * The links live in a separate `next` array, not inside the blocks, so a user writing to a block
 * can never corrupt the free list, and a pop that reads the link of a block another thread just
 * took reads valid (if stale) memory whose value the failed CAS then discards.
 *
 * Each block also has a state word: even while free, odd while allocated, bumped by one at each
 * transition. A release must CAS the exact odd value its allocation produced (the generation), so
 * a double release, or a stale one after the slot was handed out again, fails instead of pushing
 * a block twice. This holds at the C level too: tio_pool_alloc hands the caller the generation and
 * tio_pool_free takes it back. (Reading the block's current state word at free time instead, as
 * an earlier version did, turns a stale free of a block handed out again into a successful free
 * of somebody else's block.)
 *
 * A block from the system allocator gets an even generation: the pool's tag (its address, even
 * and unique among live pools). A free whose pointer is outside the regions is passed to free()
 * only with that tag, so a pooled block or a system block of another pool is refused.
 *
 * Requests above 2 MiB, and requests whose class is exhausted under the "fallback" policy, go to
 * the system allocator and are counted. Linux-only facilities (MAP_HUGETLB, MADV_HUGEPAGE,
 * mbind) are compiled out elsewhere and reported as unavailable.
 */
#pragma once
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#if defined(__linux__)
#include <sys/syscall.h>
#endif
#include "tallyio/atomic.h"

#define TIO_POOL_CLASSES 4
#define TIO_POOL_NIL 0xFFFFFFFFu
#define TIO_POOL_HUGE_PAGE ((size_t)2 << 20)
/* Largest count per class: indices are 32-bit and TIO_POOL_NIL marks the empty stack. */
#define TIO_POOL_MAX_COUNT 0x7FFFFFFFu

/* How a region's pages were obtained. */
enum { TIO_PAGES_NONE = 0, TIO_PAGES_NORMAL = 1, TIO_PAGES_THP = 2, TIO_PAGES_HUGETLB = 3 };
/* Page policy asked for: try hugetlb, then THP, then normal; or demand one; or normal only. */
enum { TIO_HUGE_AUTO = 0, TIO_HUGE_HUGETLB = 1, TIO_HUGE_THP = 2, TIO_HUGE_OFF = 3 };

static const size_t tio_pool_block_sizes[TIO_POOL_CLASSES] = {64, 1024, 4096, (size_t)2 << 20};

typedef struct {
    TIO_ALIGNED tio_atomic_u64 head; /* tag << 32 | index of the top free block */
    TIO_ALIGNED tio_atomic_u64 in_use;
    tio_atomic_u64 high_water;
    tio_atomic_u64 exhausted; /* requests of this class it could not serve */
    TIO_ALIGNED char *base;   /* first block; read-only after set-up */
    size_t block_size;
    uint32_t count;
    int pages;                /* TIO_PAGES_* */
    int numa_bound;
    void *map;                /* what to munmap (base may sit above it for alignment) */
    size_t map_len;
    tio_atomic_u64 *next;     /* free-list link of each block */
    tio_atomic_u64 *state;    /* even: free, odd: allocated; +1 per transition */
} tio_pool_class;

typedef struct {
    tio_pool_class cls[TIO_POOL_CLASSES];
    TIO_ALIGNED tio_atomic_u64 system_in_use; /* blocks from the system allocator, not yet freed */
    tio_atomic_u64 oversize;                  /* requests above the largest class */
    TIO_ALIGNED tio_atomic_u64 closed;        /* read on every C-level alloc; written once */
    int fallback;                             /* 1: exhausted -> system allocator, 0: refuse */
    uint64_t sys_gen;                         /* generation of this pool's system blocks (even) */
} tio_pool;

/* ---- size classes ---- */

/* 0..3, or -1 above the largest class. */
static inline int tio_pool_class_of(size_t size) {
    if (size <= 64) return 0;
    if (size <= 1024) return 1;
    if (size <= 4096) return 2;
    if (size <= ((size_t)2 << 20)) return 3;
    return -1;
}

/* ---- the tagged free-list stack ---- */

static inline uint64_t tio_pool_pack(uint64_t head, uint32_t index) {
    return ((head >> 32) + 1) << 32 | index;
}

/* Pop a free block index; TIO_POOL_NIL when the class is exhausted. */
static inline uint32_t tio_pool_pop(tio_pool_class *c) {
    uint64_t h = tio_load_acquire(&c->head);
    for (;;) {
        uint32_t idx = (uint32_t)h;
        if (idx == TIO_POOL_NIL) return TIO_POOL_NIL;
        /* The acquire that gave us h synchronises with the push that published next[idx]. */
        uint64_t nxt = tio_load_relaxed(&c->next[idx]);
        if (tio_cas_acq_rel(&c->head, &h, tio_pool_pack(h, (uint32_t)nxt))) return idx;
        /* The failed CAS loaded h relaxed; reload with acquire so the next read of next[] is
         * ordered after the push that installed the new top. */
        h = tio_load_acquire(&c->head);
    }
}

/* The release half of the CAS publishes next[idx] and the block's contents to the next popper. */
static inline void tio_pool_push(tio_pool_class *c, uint32_t idx) {
    uint64_t h = tio_load_relaxed(&c->head);
    for (;;) {
        tio_store_relaxed(&c->next[idx], (uint32_t)h);
        if (tio_cas_acq_rel(&c->head, &h, tio_pool_pack(h, idx))) return;
    }
}

/* Test support: replay the ABA interleaving on a class with at least two free blocks, in one
 * thread so it happens every time. "Thread A" reads head (index i) and next[i] (j), then stalls;
 * "thread B" pops i and j and pushes i back, so head holds index i again; A's CAS must now fail,
 * or it would install j, a block B holds, as the top of the free list. 1: refused, 0: it went
 * through (the list is then corrupt; only for a throwaway pool). */
static inline int tio_pool_aba_replay(tio_pool_class *c) {
    uint64_t h = tio_load_acquire(&c->head);
    uint64_t nxt = tio_load_relaxed(&c->next[(uint32_t)h]);
    uint32_t i = tio_pool_pop(c);
    uint32_t j = tio_pool_pop(c);
    tio_pool_push(c, i);
    int refused = !tio_cas_acq_rel(&c->head, &h, tio_pool_pack(h, (uint32_t)nxt));
    tio_pool_push(c, j);
    return refused;
}

/* ---- one block of one class ---- */

/* Take a block; its index, or TIO_POOL_NIL (counted as an exhausted request of the class). *gen receives
 * the odd state word a release must present. */
static inline uint32_t tio_pool_take(tio_pool_class *c, uint64_t *gen) {
    uint32_t idx = tio_pool_pop(c);
    if (TIO_UNLIKELY(idx == TIO_POOL_NIL)) {
        tio_fetch_add_relaxed(&c->exhausted, 1);
        return TIO_POOL_NIL;
    }
    /* The slot is ours alone until pushed back, so a plain store suffices: a racing (buggy)
     * release of an older generation fails its CAS whether it sees the value before or after. */
    uint64_t g = tio_load_relaxed(&c->state[idx]) + 1;
    tio_store_relaxed(&c->state[idx], g);
    *gen = g;
    uint64_t n = tio_fetch_add_relaxed(&c->in_use, 1) + 1;
    tio_max_relaxed(&c->high_water, n);
    return idx;
}

/* Give back block idx allocated as generation gen: 0, or -1 if that generation is not the one out
 * (already released, or released and handed out again). */
static inline int tio_pool_give(tio_pool_class *c, uint32_t idx, uint64_t gen) {
    uint64_t expect = gen;
    if (TIO_UNLIKELY(!(gen & 1) || !tio_cas_acq_rel(&c->state[idx], &expect, gen + 1))) return -1;
    tio_fetch_add_relaxed(&c->in_use, (uint64_t)-1);
    tio_pool_push(c, idx);
    return 0;
}

static inline char *tio_pool_block(const tio_pool_class *c, uint32_t idx) {
    return c->base + (size_t)idx * c->block_size;
}

/* ---- the system allocator, for oversize requests and exhausted classes ---- */

static inline void *tio_pool_sys_alloc(tio_pool *p, size_t size) {
    void *ptr = NULL;
    /* Cache-line alignment, like the pooled blocks, so a fallback block behaves the same. */
    if (posix_memalign(&ptr, TIO_CACHELINE, size ? size : 1) != 0) return NULL;
    tio_fetch_add_relaxed(&p->system_in_use, 1);
    return ptr;
}

static inline void tio_pool_sys_free(tio_pool *p, void *ptr) {
    free(ptr);
    tio_fetch_add_relaxed(&p->system_in_use, (uint64_t)-1);
}

/* ---- C-level entry points for compiled modules (nogil, any thread) ----
 *
 * Contract: the caller keeps the owning MemoryPool object alive and does not race close() (join
 * the threads that allocate, then close). A pointer goes back to the pool it came from, with the
 * generation its allocation returned. */

/* A block of at least `size` bytes (64-byte aligned), or NULL when the pool is closed, the class
 * is exhausted under the "raise" policy, or the system allocator fails. *gen receives what
 * tio_pool_free must be given back with the pointer. */
static inline void *tio_pool_alloc(tio_pool *p, size_t size, uint64_t *gen) {
    *gen = 0;
    if (TIO_UNLIKELY(tio_load_relaxed(&p->closed))) return NULL;
    int k = tio_pool_class_of(size);
    if (TIO_LIKELY(k >= 0)) {
        tio_pool_class *c = &p->cls[k];
        uint32_t idx = tio_pool_take(c, gen);
        if (TIO_LIKELY(idx != TIO_POOL_NIL)) return tio_pool_block(c, idx);
        if (!p->fallback) return NULL; /* counted by take() as exhausted */
    } else {
        tio_fetch_add_relaxed(&p->oversize, 1);
    }
    void *ptr = tio_pool_sys_alloc(p, size);
    if (ptr) *gen = p->sys_gen;
    return ptr;
}

/* Class of a pointer inside one of the regions (-1: not in any), and its block index. A pointer
 * inside a region but not at a block start yields -2. */
static inline int tio_pool_locate(const tio_pool *p, const void *ptr, uint32_t *idx) {
    const char *q = (const char *)ptr;
    for (int k = 0; k < TIO_POOL_CLASSES; k++) {
        const tio_pool_class *c = &p->cls[k];
        if (c->base && q >= c->base && q < c->base + (size_t)c->count * c->block_size) {
            size_t off = (size_t)(q - c->base);
            if (off % c->block_size) return -2;
            *idx = (uint32_t)(off / c->block_size);
            return k;
        }
    }
    return -1;
}

/* Free a block from tio_pool_alloc with the generation that call returned: 0, or -1 (nothing
 * freed) for a pointer that is not a live block of this pool at that generation: a double free, a
 * stale free after the block was handed out again, an interior pointer, NULL, a block of another
 * pool. A pointer outside every region is handed to free() only with this pool's system tag; like
 * free() itself, that path cannot tell a second free of the same system block. */
static inline int tio_pool_free(tio_pool *p, void *ptr, uint64_t gen) {
    uint32_t idx = 0;
    int k = tio_pool_locate(p, ptr, &idx);
    if (TIO_LIKELY(k >= 0)) return tio_pool_give(&p->cls[k], idx, gen);
    if (k == -2 || ptr == NULL || gen != p->sys_gen) return -1;
    tio_pool_sys_free(p, ptr);
    return 0;
}

/* ---- set-up and tear-down (called with the GIL, before any thread can see the pool) ---- */

static inline tio_pool *tio_pool_new(int fallback) {
    tio_pool *p = NULL;
    if (posix_memalign((void **)&p, TIO_CACHELINE, sizeof(tio_pool)) != 0) return NULL;
    memset(p, 0, sizeof(*p));
    p->fallback = fallback;
    /* 64-byte aligned, so even (a pooled generation is odd) and unique among live pools. */
    p->sys_gen = (uint64_t)(uintptr_t)p;
    for (int k = 0; k < TIO_POOL_CLASSES; k++) {
        p->cls[k].block_size = tio_pool_block_sizes[k];
        atomic_init(&p->cls[k].head, (uint64_t)TIO_POOL_NIL);
    }
    return p;
}

static inline long tio_pool_mbind(void *addr, size_t len, int node) {
#if defined(__linux__) && defined(SYS_mbind)
    /* MPOL_BIND (2) with a 1024-node mask; the raw syscall keeps libnuma out of the build. The
     * kernel reads maxnode - 1 bits, hence the + 1. */
    unsigned long mask[16];
    memset(mask, 0, sizeof(mask));
    if (node < 0 || node >= 1024) return -EINVAL;
    mask[node / (8 * sizeof(unsigned long))] = 1UL << (node % (8 * sizeof(unsigned long)));
    if (syscall(SYS_mbind, addr, len, 2, mask, (unsigned long)(8 * sizeof(mask) + 1), 0) != 0)
        return -errno;
    return 0;
#else
    (void)addr; (void)len; (void)node;
    return -ENOSYS;
#endif
}

/* Anonymous mapping of len bytes whose start is a multiple of align (over-map, then trim). */
static inline char *tio_pool_map_aligned(size_t len, size_t align) {
    size_t over = len + align;
    char *m = (char *)mmap(NULL, over, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == (char *)MAP_FAILED) return NULL;
    char *start = (char *)(((uintptr_t)m + align - 1) & ~(uintptr_t)(align - 1));
    if (start > m) munmap(m, (size_t)(start - m));
    size_t tail = (size_t)((m + over) - (start + len));
    if (tail) munmap(start + len, tail);
    return start;
}

/* Map, bind, pre-fault and link class k with count blocks. huge: TIO_HUGE_*; thp_ok: the kernel
 * honours MADV_HUGEPAGE (THP not "never"); numa_node < 0: no binding.
 * 0 on success, else a negative errno with *step naming what failed: 1 map, 2 hugetlb (demanded),
 * 3 madvise (demanded), 4 mbind, 5 link arrays. */
static inline int tio_pool_map_class(tio_pool *p, int k, uint32_t count, int huge, int thp_ok,
                                     int numa_node, int *step) {
    tio_pool_class *c = &p->cls[k];
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    size_t bytes = (size_t)count * c->block_size;
    char *base = NULL;
    *step = 0;
    c->count = 0;
    if (count == 0) {
        c->pages = TIO_PAGES_NONE;
        return 0;
    }
    /* A region smaller than one huge page keeps normal pages: a 2 MiB page for 64 KiB of small
     * blocks would waste memory, and the TLB gain is nil. */
    int try_huge = huge != TIO_HUGE_OFF && bytes >= TIO_POOL_HUGE_PAGE;
    size_t len = (bytes + page - 1) / page * page;
    if (try_huge) {
        len = (bytes + TIO_POOL_HUGE_PAGE - 1) / TIO_POOL_HUGE_PAGE * TIO_POOL_HUGE_PAGE;
#if defined(MAP_HUGETLB)
        if (huge == TIO_HUGE_AUTO || huge == TIO_HUGE_HUGETLB) {
            int flags = MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB;
#if defined(MAP_HUGE_SHIFT)
            flags |= 21 << MAP_HUGE_SHIFT; /* 2 MiB, whatever the default huge page size */
#endif
            char *m = (char *)mmap(NULL, len, PROT_READ | PROT_WRITE, flags, -1, 0);
            if (m != (char *)MAP_FAILED) {
                base = m;
                c->map = m;
                c->map_len = len;
                c->pages = TIO_PAGES_HUGETLB;
            } else if (huge == TIO_HUGE_HUGETLB) {
                *step = 2;
                return -errno;
            }
        }
#else
        if (huge == TIO_HUGE_HUGETLB) {
            *step = 2;
            return -ENOSYS;
        }
#endif
        if (!base && (huge == TIO_HUGE_AUTO || huge == TIO_HUGE_THP)) {
            if (!thp_ok && huge == TIO_HUGE_THP) {
                *step = 3;
                return -EOPNOTSUPP;
            }
            /* THP backs only 2 MiB-aligned ranges with huge pages. */
            base = tio_pool_map_aligned(len, TIO_POOL_HUGE_PAGE);
            if (!base) {
                *step = 1;
                return -ENOMEM;
            }
            c->map = base;
            c->map_len = len;
            c->pages = TIO_PAGES_NORMAL;
#if defined(MADV_HUGEPAGE)
            if (thp_ok && madvise(base, len, MADV_HUGEPAGE) == 0) c->pages = TIO_PAGES_THP;
#endif
            if (c->pages != TIO_PAGES_THP && huge == TIO_HUGE_THP) {
                int e = errno ? errno : EOPNOTSUPP;
                munmap(base, len);
                c->map = NULL;
                *step = 3;
                return -e;
            }
        }
    }
    if (!base) {
        base = (char *)mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (base == (char *)MAP_FAILED) {
            *step = 1;
            return -errno;
        }
        c->map = base;
        c->map_len = len;
        c->pages = TIO_PAGES_NORMAL;
    }
    if (numa_node >= 0) {
        /* Bind before the first touch: a page is placed when it is faulted in. */
        long r = tio_pool_mbind(base, len, numa_node);
        if (r != 0) {
            *step = 4;
            return (int)r;
        }
        c->numa_bound = 1;
    }
    /* Pre-fault every page now rather than on the hot path. */
    for (size_t off = 0; off < len; off += page) ((volatile char *)base)[off] = 0;

    c->next = (tio_atomic_u64 *)calloc(count, sizeof(tio_atomic_u64));
    c->state = (tio_atomic_u64 *)calloc(count, sizeof(tio_atomic_u64));
    if (!c->next || !c->state) {
        *step = 5;
        return -ENOMEM;
    }
    /* Block 0 on top, so a fresh pool hands out blocks in address order. */
    for (uint32_t i = 0; i < count; i++) {
        atomic_init(&c->next[i], i + 1 < count ? (uint64_t)(i + 1) : (uint64_t)TIO_POOL_NIL);
        atomic_init(&c->state[i], 0);
    }
    c->base = base;
    c->count = count;
    atomic_init(&c->head, 0);
    return 0;
}

/* Unmap every region; the struct stays valid (counters and capacities readable) until
 * tio_pool_destroy. Only called once no block of any class is out. */
static inline void tio_pool_unmap(tio_pool *p) {
    for (int k = 0; k < TIO_POOL_CLASSES; k++) {
        tio_pool_class *c = &p->cls[k];
        if (c->map) munmap(c->map, c->map_len);
        free((void *)c->next);
        free((void *)c->state);
        c->map = NULL;
        c->base = NULL;
        c->next = c->state = NULL;
        atomic_store(&c->head, (uint64_t)TIO_POOL_NIL);
    }
}

static inline void tio_pool_destroy(tio_pool *p) {
    if (p) {
        tio_pool_unmap(p);
        free(p);
    }
}

/* Blocks of the pooled classes that are out (system-allocator blocks not included). */
static inline uint64_t tio_pool_in_use(tio_pool *p) {
    uint64_t n = 0;
    for (int k = 0; k < TIO_POOL_CLASSES; k++) n += tio_load_relaxed(&p->cls[k].in_use);
    return n;
}

/* Counters for stats(): relaxed reads, a snapshot, not a transaction. */
enum {
    TIO_POOL_STAT_IN_USE = 0,
    TIO_POOL_STAT_HIGH_WATER = 1,
    TIO_POOL_STAT_EXHAUSTED = 2,
    TIO_POOL_STAT_SYSTEM_IN_USE = 3,
    TIO_POOL_STAT_OVERSIZE = 4
};

static inline uint64_t tio_pool_stat(tio_pool *p, int what, int k) {
    switch (what) {
    case TIO_POOL_STAT_IN_USE: return tio_load_relaxed(&p->cls[k].in_use);
    case TIO_POOL_STAT_HIGH_WATER: return tio_load_relaxed(&p->cls[k].high_water);
    case TIO_POOL_STAT_EXHAUSTED: return tio_load_relaxed(&p->cls[k].exhausted);
    case TIO_POOL_STAT_SYSTEM_IN_USE: return tio_load_relaxed(&p->system_in_use);
    case TIO_POOL_STAT_OVERSIZE: return tio_load_relaxed(&p->oversize);
    }
    return 0;
}

static inline void tio_pool_mark_closed(tio_pool *p) { tio_store_release(&p->closed, 1); }

static inline void tio_pool_count_oversize(tio_pool *p) { tio_fetch_add_relaxed(&p->oversize, 1); }
