/* Software prefetch: a row iterator that asks for row i + distance while row i is used, and a
 * gather (out[i] = table[idx[i]]) that does the same for random indices.
 *
 * Hardware prefetchers follow sequential and strided streams on their own; what they cannot guess
 * is the next address of a random lookup. With `distance` lookups in flight instead of one, a
 * gather from a table larger than the last-level cache overlaps its DRAM misses. Prefetches never
 * fault, but computing a pointer outside the table is undefined behaviour in C, so addresses are
 * formed only from indices already known to be in range.
 */
#pragma once
#include <stdint.h>
#include <stddef.h>
#include <string.h>
#include "tallyio/atomic.h"

#define TIO_LINE 64

#if defined(__GNUC__) || defined(__clang__)
/* Read access, keep in all cache levels (rw = 0, locality = 3), as for data used right after. */
#define tio_prefetch(p) __builtin_prefetch((const void *)(p), 0, 3)
#else
#define tio_prefetch(p) ((void)(p))
#endif

/* Every cache line of [p, p + n): a row wider than a line (a 352-byte TX_DTYPE record spans 6
 * or 7) needs all of them on the way, not only the first. Offsets 0, 64, ... hit each line the
 * row starts in, and the last byte the line it ends in; with n known at compile time the loop
 * unrolls into n / 64 + 2 prefetches and no branch. (A data-dependent loop here measured up to
 * twice slower at short distances: it delays the prefetch it should issue early.) */
static inline void tio_prefetch_span(const char *p, size_t n) {
    for (size_t o = 0; o < n; o += TIO_LINE) tio_prefetch(p + o);
    if (n > 1) tio_prefetch(p + n - 1);
}

/* ------------------------------------------------------------------ iterator */

/* The cursor is claimed with a CAS, never stepped with a plain store: threads sharing one
 * iterator each get distinct rows (a shared plain cursor let two threads copy the same rows, and
 * one walk past the end and memcpy from NULL). A caller claims a run of rows with one CAS and walks
 * it on its own, so the atomic costs once per run, not once per row. */
typedef struct {
    char *data;          /* row 0 */
    ptrdiff_t stride;    /* bytes from a row to the next (may be negative) */
    size_t n;            /* rows */
    size_t span;         /* bytes of a row worth prefetching */
    size_t distance;     /* rows ahead; 0: no prefetch */
    tio_atomic_u64 pos;  /* next row to hand out; only ever moves forward, never past n */
} tio_pf_iter;

static inline void tio_pf_iter_init(tio_pf_iter *it, char *data, ptrdiff_t stride, size_t n,
                                    size_t span, size_t distance) {
    it->data = data;
    it->stride = stride;
    it->n = n;
    it->span = span;
    it->distance = distance;
    atomic_init(&it->pos, 0);
    /* Start the first `distance` rows now: the first next() calls would otherwise wait on them. */
    for (size_t i = 0; i < distance && i < n; i++) tio_prefetch_span(data + (ptrdiff_t)i * stride, span);
}

/* Rows handed out so far (a snapshot when other threads walk). */
static inline size_t tio_pf_iter_pos(tio_pf_iter *it) { return (size_t)tio_load_relaxed(&it->pos); }

/* Claim the next min(want, remaining) rows for the caller alone: their count (0 when exhausted)
 * and, in *first, the index of the first. Relaxed: the rows are not written through the iterator,
 * the cursor only partitions their indices between the walkers. */
static inline size_t tio_pf_iter_claim(tio_pf_iter *it, size_t want, size_t *first) {
    uint64_t p = tio_load_relaxed(&it->pos);
    for (;;) {
        if (p >= it->n || want == 0) return 0;
        size_t k = it->n - (size_t)p < want ? it->n - (size_t)p : want;
        if (atomic_compare_exchange_weak_explicit(&it->pos, &p, p + k, memory_order_relaxed,
                                                  memory_order_relaxed)) {
            *first = (size_t)p;
            return k;
        }
    }
}

static inline char *tio_pf_iter_row(const tio_pf_iter *it, size_t i) {
    return it->data + (ptrdiff_t)i * it->stride;
}

/* Row i of a claimed run, with row i + distance prefetched (when it exists). */
static inline char *tio_pf_iter_at(const tio_pf_iter *it, size_t i) {
    if (it->distance && i + it->distance < it->n)
        tio_prefetch_span(tio_pf_iter_row(it, i + it->distance), it->span);
    return tio_pf_iter_row(it, i);
}

/* The next row (claimed for the caller alone), with row pos + distance prefetched; NULL when
 * exhausted. One CAS per row: a compiled walker that takes many rows should claim runs. */
static inline char *tio_pf_iter_next(tio_pf_iter *it) {
    size_t i;
    if (!tio_pf_iter_claim(it, 1, &i)) return NULL;
    return tio_pf_iter_at(it, i);
}

/* Copy the claimed run [first, first + k) to dst, row_bytes per row (contiguous rows only). */
static inline void tio_pf_iter_copy(const tio_pf_iter *it, size_t first, size_t k, char *dst,
                                    size_t row_bytes) {
    for (size_t j = 0; j < k; j++) memcpy(dst + j * row_bytes, tio_pf_iter_at(it, first + j), row_bytes);
}

/* ------------------------------------------------------------------ gather */

/* out[i] = table[idx[i]], prefetching the row `distance` lookups ahead. The row size is a
 * compile-time constant in the common cases, so the copy is one or two moves (memcpy also makes
 * unaligned tables safe) and the prefetch is unrolled. PREFETCH_ROW(p) prefetches one row. */
#define TIO_GATHER_LOOP(SIZE, PREFETCH_ROW)                                                  \
    size_t i = 0;                                                                            \
    if (distance && distance < n) {                                                          \
        for (; i < n - distance; i++) {                                                      \
            uint64_t ahead = (uint64_t)idx[i + distance];                                    \
            if (ahead < len) PREFETCH_ROW(table + ahead * (SIZE));                           \
            uint64_t j = (uint64_t)idx[i];                                                   \
            if (j >= len) return (int64_t)i;                                                 \
            memcpy(out + i * (SIZE), table + j * (SIZE), (SIZE));                            \
        }                                                                                    \
    }                                                                                        \
    for (; i < n; i++) {                                                                     \
        uint64_t j = (uint64_t)idx[i];                                                       \
        if (j >= len) return (int64_t)i;                                                     \
        memcpy(out + i * (SIZE), table + j * (SIZE), (SIZE));                                \
    }                                                                                        \
    return -1;

#define TIO_PF_ONE(p) tio_prefetch(p)
#define TIO_PF_SPAN(p) tio_prefetch_span((p), itemsize)

/* Rows of a power-of-two size up to a line, from a table aligned to that size, never straddle two
 * lines: one prefetch covers a row (a second, redundant one measured ~10% slower). */
static inline int64_t tio_gather_line8(const char *table, uint64_t len, const int64_t *idx,
                                       size_t n, char *out, size_t distance) {
    TIO_GATHER_LOOP(8, TIO_PF_ONE)
}
static inline int64_t tio_gather_line4(const char *table, uint64_t len, const int64_t *idx,
                                       size_t n, char *out, size_t distance) {
    TIO_GATHER_LOOP(4, TIO_PF_ONE)
}
static inline int64_t tio_gather_line16(const char *table, uint64_t len, const int64_t *idx,
                                        size_t n, char *out, size_t distance) {
    TIO_GATHER_LOOP(16, TIO_PF_ONE)
}
static inline int64_t tio_gather_any(const char *table, uint64_t len, size_t itemsize,
                                     const int64_t *idx, size_t n, char *out, size_t distance) {
    TIO_GATHER_LOOP(itemsize, TIO_PF_SPAN)
}

/* out[i] = table[idx[i]] for i < n, rows of `itemsize` bytes, prefetching `distance` lookups
 * ahead (0: none). Returns -1, or the position of the first index outside [0, len) (a negative
 * index is outside: it is read as a huge unsigned one); the rows before it are copied. */
static inline int64_t tio_gather(const void *table, uint64_t len, size_t itemsize,
                                 const int64_t *idx, size_t n, void *out, size_t distance) {
    const char *t = (const char *)table;
    char *o = (char *)out;
    int aligned = (uintptr_t)t % (itemsize ? itemsize : 1) == 0;
    if (aligned && itemsize == 8) return tio_gather_line8(t, len, idx, n, o, distance);
    if (aligned && itemsize == 4) return tio_gather_line4(t, len, idx, n, o, distance);
    if (aligned && itemsize == 16) return tio_gather_line16(t, len, idx, n, o, distance);
    return tio_gather_any(t, len, itemsize, idx, n, o, distance);
}
