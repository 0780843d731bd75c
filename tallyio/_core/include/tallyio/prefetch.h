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

/* Every cache line of [p, p + n): a row wider than a line (a 336-byte TX_DTYPE record spans 6)
 * needs all of them on the way, not only the first. */
static inline void tio_prefetch_span(const char *p, size_t n) {
    uintptr_t a = (uintptr_t)p & ~(uintptr_t)(TIO_LINE - 1);
    uintptr_t end = (uintptr_t)p + (n ? n : 1);
    for (; a < end; a += TIO_LINE) tio_prefetch((const char *)a);
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
    for (size_t i = 1; i < distance && i < n; i++) tio_prefetch_span(data + (ptrdiff_t)i * stride, span);
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

/* The copy of one row with a size known at compile time, so it becomes one or two moves
 * (memcpy also makes unaligned tables safe). */
#define TIO_GATHER_LOOP(SIZE)                                                                \
    for (size_t i = 0; i < n; i++) {                                                         \
        if (distance && i + distance < n) {                                                  \
            uint64_t ahead = (uint64_t)idx[i + distance];                                    \
            if (ahead < len) tio_prefetch_span(table + ahead * (SIZE), (SIZE));              \
        }                                                                                    \
        uint64_t j = (uint64_t)idx[i];                                                       \
        if (j >= len) return (int64_t)i;                                                     \
        memcpy(out + i * (SIZE), table + j * (SIZE), (SIZE));                                \
    }                                                                                        \
    return -1;

/* out[i] = table[idx[i]] for i < n, rows of `itemsize` bytes, prefetching `distance` lookups
 * ahead (0: none). Returns -1, or the position of the first index outside [0, len) (a negative
 * index is outside: it is read as a huge unsigned one); rows before it are copied. */
static inline int64_t tio_gather_fixed8(const char *table, uint64_t len, const int64_t *idx,
                                        size_t n, char *out, size_t distance) {
    TIO_GATHER_LOOP(8)
}
static inline int64_t tio_gather_fixed4(const char *table, uint64_t len, const int64_t *idx,
                                        size_t n, char *out, size_t distance) {
    TIO_GATHER_LOOP(4)
}
static inline int64_t tio_gather_fixed16(const char *table, uint64_t len, const int64_t *idx,
                                         size_t n, char *out, size_t distance) {
    TIO_GATHER_LOOP(16)
}
static inline int64_t tio_gather_any(const char *table, uint64_t len, size_t itemsize,
                                     const int64_t *idx, size_t n, char *out, size_t distance) {
    TIO_GATHER_LOOP(itemsize)
}

static inline int64_t tio_gather(const void *table, uint64_t len, size_t itemsize,
                                 const int64_t *idx, size_t n, void *out, size_t distance) {
    const char *t = (const char *)table;
    char *o = (char *)out;
    switch (itemsize) {
    case 8: return tio_gather_fixed8(t, len, idx, n, o, distance);
    case 4: return tio_gather_fixed4(t, len, idx, n, o, distance);
    case 16: return tio_gather_fixed16(t, len, idx, n, o, distance);
    default: return tio_gather_any(t, len, itemsize, idx, n, o, distance);
    }
}
