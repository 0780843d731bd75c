/* Log-linear latency histogram in nanoseconds (HdrHistogram's bucket layout, fixed precision).
 *
 * Values below 2^S are counted exactly. Above, each power-of-two range [2^m, 2^(m+1)) is split
 * into 2^S equal sub-buckets, so a bucket's width is at most 2^-S of any value in it. With S = 7
 * every reported value (a bucket's highest value, as HdrHistogram reports) is within
 * 1/128 = 0.78% above the true one. 58 * 128 buckets cover all of uint64.
 *
 * Counters are relaxed atomics so any thread can record without a lock; readers see a
 * consistent-enough snapshot (each counter exact, the set not a transaction).
 */
#pragma once
#include <string.h>
#include "tallyio/atomic.h"

#define TIO_HIST_SUB_BITS 7
#define TIO_HIST_SUB (1u << TIO_HIST_SUB_BITS)
#define TIO_HIST_BUCKETS ((64 - TIO_HIST_SUB_BITS + 1) * TIO_HIST_SUB)

typedef struct {
    tio_atomic_u64 count;
    tio_atomic_u64 sum;
    tio_atomic_u64 min;
    tio_atomic_u64 max;
    tio_atomic_u64 buckets[TIO_HIST_BUCKETS];
} tio_hist;

static inline uint32_t tio_hist_index(uint64_t v) {
    if (v < TIO_HIST_SUB) return (uint32_t)v;
    uint32_t shift = (uint32_t)(63 - __builtin_clzll(v)) - TIO_HIST_SUB_BITS;
    return (shift + 1) * TIO_HIST_SUB + (uint32_t)((v >> shift) - TIO_HIST_SUB);
}

static inline uint64_t tio_hist_lowest(uint32_t i) {
    if (i < TIO_HIST_SUB) return i;
    uint32_t shift = i / TIO_HIST_SUB - 1;
    return (uint64_t)(TIO_HIST_SUB + i % TIO_HIST_SUB) << shift;
}

static inline uint64_t tio_hist_highest(uint32_t i) {
    if (i < TIO_HIST_SUB) return i;
    uint32_t shift = i / TIO_HIST_SUB - 1;
    return tio_hist_lowest(i) + ((1ull << shift) - 1);
}

static inline void tio_hist_reset(tio_hist *h) {
    memset((void *)h, 0, sizeof(*h));
    atomic_store_explicit(&h->min, UINT64_MAX, memory_order_relaxed);
}

/* Record v n times. n == 0 records nothing: min/max must only ever hold a value that was counted
 * (max 5 with count 0 would report a latency that never happened). */
static inline void tio_hist_record_n(tio_hist *h, uint64_t v, uint64_t n) {
    if (TIO_UNLIKELY(n == 0)) return;
    tio_fetch_add_relaxed(&h->buckets[tio_hist_index(v)], n);
    tio_fetch_add_relaxed(&h->count, n);
    tio_fetch_add_relaxed(&h->sum, v * n);
    tio_min_relaxed(&h->min, v);
    tio_max_relaxed(&h->max, v);
}

static inline void tio_hist_record(tio_hist *h, uint64_t v) { tio_hist_record_n(h, v, 1); }

/* Record n values; returns the index of the first negative value (n when none), recording those
 * before it. The aggregates are folded locally and published once: a bulk record costs one atomic
 * add per value instead of five. */
static inline uint64_t tio_hist_record_batch(tio_hist *h, const int64_t *v, uint64_t n) {
    uint64_t i, sum = 0, lo = UINT64_MAX, hi = 0;
    for (i = 0; i < n; i++) {
        if (v[i] < 0) break;
        uint64_t x = (uint64_t)v[i];
        tio_fetch_add_relaxed(&h->buckets[tio_hist_index(x)], 1);
        sum += x;
        lo = x < lo ? x : lo;
        hi = x > hi ? x : hi;
    }
    if (i) {
        tio_fetch_add_relaxed(&h->count, i);
        tio_fetch_add_relaxed(&h->sum, sum);
        tio_min_relaxed(&h->min, lo);
        tio_max_relaxed(&h->max, hi);
    }
    return i;
}

static inline void tio_hist_merge(tio_hist *dst, tio_hist *src) {
    for (uint32_t i = 0; i < TIO_HIST_BUCKETS; i++) {
        uint64_t c = tio_load_relaxed(&src->buckets[i]);
        if (c) tio_fetch_add_relaxed(&dst->buckets[i], c);
    }
    tio_fetch_add_relaxed(&dst->count, tio_load_relaxed(&src->count));
    tio_fetch_add_relaxed(&dst->sum, tio_load_relaxed(&src->sum));
    tio_min_relaxed(&dst->min, tio_load_relaxed(&src->min));
    tio_max_relaxed(&dst->max, tio_load_relaxed(&src->max));
}

/* The value at quantile q in [0, 1]: the highest value of the bucket holding the rank-th smallest
 * recording (rank = ceil(q * count), at least 1), clamped to the observed [min, max]. 0 when empty. */
static inline uint64_t tio_hist_quantile(tio_hist *h, double q) {
    uint64_t count = tio_load_relaxed(&h->count);
    if (count == 0) return 0;
    uint64_t lo = tio_load_relaxed(&h->min), hi = tio_load_relaxed(&h->max);
    double r = q * (double)count;
    uint64_t rank = (uint64_t)r;
    if ((double)rank < r) rank++;
    if (rank < 1) rank = 1;
    if (rank > count) rank = count;
    uint64_t cum = 0;
    for (uint32_t i = 0; i < TIO_HIST_BUCKETS; i++) {
        cum += tio_load_relaxed(&h->buckets[i]);
        if (cum >= rank) {
            uint64_t v = tio_hist_highest(i);
            return v < lo ? lo : (v > hi ? hi : v);
        }
    }
    return hi; /* recorders raced the walk: count ran ahead of the buckets */
}

static inline uint64_t tio_hist_count(tio_hist *h) { return tio_load_relaxed(&h->count); }
static inline uint64_t tio_hist_sum(tio_hist *h) { return tio_load_relaxed(&h->sum); }
static inline uint64_t tio_hist_bucket(tio_hist *h, uint32_t i) {
    return tio_load_relaxed(&h->buckets[i]);
}
static inline uint64_t tio_hist_min(tio_hist *h) {
    return tio_hist_count(h) ? tio_load_relaxed(&h->min) : 0;
}
static inline uint64_t tio_hist_max(tio_hist *h) { return tio_load_relaxed(&h->max); }
