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

#define TIO_LINE 64

#if defined(__GNUC__) || defined(__clang__)
/* Read access, keep in all cache levels (rw = 0, locality = 3), as for data used right after. */
#define tio_prefetch(p) __builtin_prefetch((const void *)(p), 0, 3)
#else
#define tio_prefetch(p) ((void)(p))
#endif

/* Every cache line of [p, p + n): a row wider than a line (a 336-byte TX_DTYPE record spans 6
 * or 7) needs all of them on the way, not only the first. Offsets 0, 64, ... hit each line the
 * row starts in, and the last byte the line it ends in; with n known at compile time the loop
 * unrolls into n / 64 + 2 prefetches and no branch. (A data-dependent loop here measured up to
 * twice slower at short distances: it delays the prefetch it should issue early.) */
static inline void tio_prefetch_span(const char *p, size_t n) {
    for (size_t o = 0; o < n; o += TIO_LINE) tio_prefetch(p + o);
    if (n > 1) tio_prefetch(p + n - 1);
}

/* ------------------------------------------------------------------ iterator */

typedef struct {
    char *data;          /* row 0 */
    ptrdiff_t stride;    /* bytes from a row to the next (may be negative) */
    size_t n;            /* rows */
    size_t span;         /* bytes of a row worth prefetching */
    size_t distance;     /* rows ahead; 0: no prefetch */
    size_t pos;          /* next row to hand out */
} tio_pf_iter;

static inline void tio_pf_iter_init(tio_pf_iter *it, char *data, ptrdiff_t stride, size_t n,
                                    size_t span, size_t distance) {
    it->data = data;
    it->stride = stride;
    it->n = n;
    it->span = span;
    it->distance = distance;
    it->pos = 0;
    /* Start the first `distance` rows now: the first next() calls would otherwise wait on them. */
    for (size_t i = 0; i < distance && i < n; i++) tio_prefetch_span(data + (ptrdiff_t)i * stride, span);
}

/* The next row, with row pos + distance prefetched; NULL when exhausted. */
static inline char *tio_pf_iter_next(tio_pf_iter *it) {
    size_t i = it->pos;
    if (i >= it->n) return NULL;
    it->pos = i + 1;
    if (it->distance && i + it->distance < it->n)
        tio_prefetch_span(it->data + (ptrdiff_t)(i + it->distance) * it->stride, it->span);
    return it->data + (ptrdiff_t)i * it->stride;
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
