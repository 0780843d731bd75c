/* Batch kernels over 64-bit keys with scalar, AVX2 and AVX-512 paths in one build.
 *
 * The extension is compiled for baseline x86-64 (no -march=native); the vector paths are
 * separate functions carrying __attribute__((target(...))), so the compiler may emit AVX2 or
 * AVX-512 inside them only. Which one runs is an int `level` chosen by the caller (the Python
 * layer detects the CPU once at import, and tests run every level the CPU has). Every vector
 * path computes exactly the scalar function, lane by lane; tails shorter than a vector go through
 * the scalar code (AVX2) or masked loads and stores (AVX-512).
 *
 * Inputs may be unaligned (a uint64 view of a byte buffer at an odd offset): the scalar code
 * loads through memcpy and the vector code uses unaligned loads, so no path assumes 8-byte
 * alignment. Outputs are arrays this module allocates (aligned), booleans as 0/1 bytes.
 */
#pragma once
#include <stdint.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include "tallyio/prefetch.h"

#define TIO_SIMD_SCALAR 0
#define TIO_SIMD_AVX2 1
#define TIO_SIMD_AVX512 2

#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
#define TIO_SIMD_X86 1
#include <immintrin.h>
#else
#define TIO_SIMD_X86 0
#endif

/* The highest level this CPU (and OS: libgcc checks XCR0 for the saved register state) runs. */
static inline int tio_simd_cpu_level(void) {
#if TIO_SIMD_X86
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq"))
        return TIO_SIMD_AVX512;
    if (__builtin_cpu_supports("avx2"))
        return TIO_SIMD_AVX2;
#endif
    return TIO_SIMD_SCALAR;
}

static inline uint64_t tio_load_u64(const void *p) {
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}

/* ---------------------------------------------------------------- the hash, defined once */

/* MurmurHash3's 64-bit finalizer (fmix64): a bijection on uint64 with full avalanche, so
 * sequential tx ids spread as well as Keccak-derived address keys do. The vector paths below
 * repeat these five steps with the same constants. */
#define TIO_FMIX_C1 0xff51afd7ed558ccdULL
#define TIO_FMIX_C2 0xc4ceb9fe1a85ec53ULL

static inline uint64_t tio_fmix64(uint64_t k) {
    k ^= k >> 33;
    k *= TIO_FMIX_C1;
    k ^= k >> 33;
    k *= TIO_FMIX_C2;
    k ^= k >> 33;
    return k;
}

static inline void tio_hash_scalar(const char *in, uint64_t *out, size_t n) {
    for (size_t i = 0; i < n; i++) out[i] = tio_fmix64(tio_load_u64(in + 8 * i));
}

static inline void tio_compare_scalar(const char *a, const char *b, uint8_t *out, size_t n) {
    for (size_t i = 0; i < n; i++) out[i] = tio_load_u64(a + 8 * i) == tio_load_u64(b + 8 * i);
}

/* Membership in a short list by comparing against every element: below a few dozen keys this
 * beats any hash table because it has no data-dependent branch or load. */
static inline void tio_contains_small_scalar(const char *keys, size_t n, const uint64_t *watch,
                                             size_t w, uint8_t *out) {
    for (size_t i = 0; i < n; i++) {
        uint64_t k = tio_load_u64(keys + 8 * i);
        uint8_t hit = 0;
        for (size_t j = 0; j < w; j++) hit |= (uint8_t)(watch[j] == k);
        out[i] = hit;
    }
}

#if TIO_SIMD_X86
/* ---------------------------------------------------------------- AVX2 */
#define TIO_AVX2 __attribute__((target("avx2")))

/* AVX2 has no 64-bit multiply. Modulo 2^64, a*b = alo*blo + ((ahi*blo + alo*bhi) << 32); each
 * product of 32-bit halves is one _mm256_mul_epu32 (which reads the low half of each lane). */
TIO_AVX2 static inline __m256i tio_mullo64_avx2(__m256i a, __m256i b_lo, __m256i b_hi) {
    __m256i lo = _mm256_mul_epu32(a, b_lo);
    __m256i cross = _mm256_add_epi64(_mm256_mul_epu32(_mm256_srli_epi64(a, 32), b_lo),
                                     _mm256_mul_epu32(a, b_hi));
    return _mm256_add_epi64(lo, _mm256_slli_epi64(cross, 32));
}

TIO_AVX2 static inline __m256i tio_fmix64_avx2(__m256i k) {
    const __m256i c1 = _mm256_set1_epi64x((long long)TIO_FMIX_C1);
    const __m256i c1h = _mm256_set1_epi64x((long long)(TIO_FMIX_C1 >> 32));
    const __m256i c2 = _mm256_set1_epi64x((long long)TIO_FMIX_C2);
    const __m256i c2h = _mm256_set1_epi64x((long long)(TIO_FMIX_C2 >> 32));
    k = _mm256_xor_si256(k, _mm256_srli_epi64(k, 33));
    k = tio_mullo64_avx2(k, c1, c1h);
    k = _mm256_xor_si256(k, _mm256_srli_epi64(k, 33));
    k = tio_mullo64_avx2(k, c2, c2h);
    return _mm256_xor_si256(k, _mm256_srli_epi64(k, 33));
}

/* 4 lane flags (movemask bits) to 4 bytes of 0/1: each bit i lands on bit 8i; the shifted copies
 * never overlap for 4 bits, so nothing carries. */
static inline void tio_store_mask4(uint8_t *out, unsigned m) {
    uint32_t bytes = (m * 0x00204081u) & 0x01010101u;
    memcpy(out, &bytes, 4);
}

TIO_AVX2 static void tio_hash_avx2(const char *in, uint64_t *out, size_t n) {
    size_t i = 0;
    for (; i + 4 <= n; i += 4)
        _mm256_storeu_si256((__m256i *)(out + i),
                            tio_fmix64_avx2(_mm256_loadu_si256((const __m256i *)(in + 8 * i))));
    tio_hash_scalar(in + 8 * i, out + i, n - i);
}

TIO_AVX2 static void tio_compare_avx2(const char *a, const char *b, uint8_t *out, size_t n) {
    size_t i = 0;
    for (; i + 4 <= n; i += 4) {
        __m256i eq = _mm256_cmpeq_epi64(_mm256_loadu_si256((const __m256i *)(a + 8 * i)),
                                        _mm256_loadu_si256((const __m256i *)(b + 8 * i)));
        tio_store_mask4(out + i, (unsigned)_mm256_movemask_pd(_mm256_castsi256_pd(eq)));
    }
    tio_compare_scalar(a + 8 * i, b + 8 * i, out + i, n - i);
}

TIO_AVX2 static void tio_contains_small_avx2(const char *keys, size_t n, const uint64_t *watch,
                                             size_t w, uint8_t *out) {
    size_t i = 0;
    for (; i + 4 <= n; i += 4) {
        __m256i k = _mm256_loadu_si256((const __m256i *)(keys + 8 * i));
        __m256i hit = _mm256_setzero_si256();
        for (size_t j = 0; j < w; j++)
            hit = _mm256_or_si256(hit, _mm256_cmpeq_epi64(k, _mm256_set1_epi64x((long long)watch[j])));
        tio_store_mask4(out + i, (unsigned)_mm256_movemask_pd(_mm256_castsi256_pd(hit)));
    }
    tio_contains_small_scalar(keys + 8 * i, n - i, watch, w, out + i);
}

/* ---------------------------------------------------------------- AVX-512 (F + DQ) */
#define TIO_AVX512 __attribute__((target("avx512f,avx512dq")))

TIO_AVX512 static inline __m512i tio_fmix64_avx512(__m512i k) {
    const __m512i c1 = _mm512_set1_epi64((long long)TIO_FMIX_C1);
    const __m512i c2 = _mm512_set1_epi64((long long)TIO_FMIX_C2);
    k = _mm512_xor_si512(k, _mm512_srli_epi64(k, 33));
    k = _mm512_mullo_epi64(k, c1);
    k = _mm512_xor_si512(k, _mm512_srli_epi64(k, 33));
    k = _mm512_mullo_epi64(k, c2);
    return _mm512_xor_si512(k, _mm512_srli_epi64(k, 33));
}

/* 8 lane flags to 8 bytes of 0/1 with vpmovqb (AVX512F), stored only for the live lanes. */
TIO_AVX512 static inline void tio_store_mask8(uint8_t *out, __mmask8 m, __mmask8 live) {
    __m128i bytes = _mm512_cvtepi64_epi8(_mm512_maskz_set1_epi64(m, 1));
    if (live == 0xff) {
        _mm_storel_epi64((__m128i *)out, bytes);
    } else {
        uint64_t b = (uint64_t)_mm_cvtsi128_si64(bytes);
        memcpy(out, &b, (size_t)__builtin_popcount(live));
    }
}

static inline __mmask8 tio_tail_mask(size_t left) {
    return (__mmask8)(left >= 8 ? 0xff : (1u << left) - 1);
}

TIO_AVX512 static void tio_hash_avx512(const char *in, uint64_t *out, size_t n) {
    for (size_t i = 0; i < n; i += 8) {
        __mmask8 m = tio_tail_mask(n - i);
        __m512i k = _mm512_maskz_loadu_epi64(m, in + 8 * i);
        _mm512_mask_storeu_epi64(out + i, m, tio_fmix64_avx512(k));
    }
}

TIO_AVX512 static void tio_compare_avx512(const char *a, const char *b, uint8_t *out, size_t n) {
    for (size_t i = 0; i < n; i += 8) {
        __mmask8 m = tio_tail_mask(n - i);
        __mmask8 eq = _mm512_mask_cmpeq_epu64_mask(m, _mm512_maskz_loadu_epi64(m, a + 8 * i),
                                                   _mm512_maskz_loadu_epi64(m, b + 8 * i));
        tio_store_mask8(out + i, eq, m);
    }
}

TIO_AVX512 static void tio_contains_small_avx512(const char *keys, size_t n,
                                                 const uint64_t *watch, size_t w, uint8_t *out) {
    for (size_t i = 0; i < n; i += 8) {
        __mmask8 m = tio_tail_mask(n - i);
        __m512i k = _mm512_maskz_loadu_epi64(m, keys + 8 * i);
        __mmask8 hit = 0;
        for (size_t j = 0; j < w; j++)
            hit |= _mm512_cmpeq_epu64_mask(k, _mm512_set1_epi64((long long)watch[j]));
        tio_store_mask8(out + i, hit & m, m);
    }
}
#endif /* TIO_SIMD_X86 */

/* ---------------------------------------------------------------- dispatch */

static inline void tio_hash_batch(int level, const void *in, uint64_t *out, size_t n) {
#if TIO_SIMD_X86
    if (level == TIO_SIMD_AVX512) { tio_hash_avx512((const char *)in, out, n); return; }
    if (level == TIO_SIMD_AVX2) { tio_hash_avx2((const char *)in, out, n); return; }
#endif
    (void)level;
    tio_hash_scalar((const char *)in, out, n);
}

static inline void tio_compare_batch(int level, const void *a, const void *b, uint8_t *out,
                                     size_t n) {
#if TIO_SIMD_X86
    if (level == TIO_SIMD_AVX512) { tio_compare_avx512((const char *)a, (const char *)b, out, n); return; }
    if (level == TIO_SIMD_AVX2) { tio_compare_avx2((const char *)a, (const char *)b, out, n); return; }
#endif
    (void)level;
    tio_compare_scalar((const char *)a, (const char *)b, out, n);
}

static inline void tio_contains_small(int level, const void *keys, size_t n,
                                      const uint64_t *watch, size_t w, uint8_t *out) {
#if TIO_SIMD_X86
    if (level == TIO_SIMD_AVX512) { tio_contains_small_avx512((const char *)keys, n, watch, w, out); return; }
    if (level == TIO_SIMD_AVX2) { tio_contains_small_avx2((const char *)keys, n, watch, w, out); return; }
#endif
    (void)level;
    tio_contains_small_scalar((const char *)keys, n, watch, w, out);
}

/* ---------------------------------------------------------------- the watch-list table
 *
 * Open addressing over buckets of 8 slots (64 B, one cache line, F14/Swiss-table style): a key
 * lives in the first free slot of bucket fmix64(key) & mask or, when that bucket is full, of the
 * next one (linear probing by bucket). A lookup reads one cache line in almost every case, and
 * compares all 8 slots at once (one AVX-512 compare, two AVX2 ones, a short loop in scalar).
 * It stops at the first bucket that holds the key or has a free slot; the table is never more
 * than half full, so one exists. 0 marks a free slot, so the key 0 is kept aside as a flag.
 * Built once, then read-only: any number of threads may query it concurrently.
 */
#define TIO_WL_SLOTS 8
/* Watch-lists up to this many distinct keys are searched by broadcast-compare instead of the
 * table; where the two cross depends on the vector width (measured: docs/kernels.md). */
#define TIO_WL_SMALL_MAX 32
static inline size_t tio_wl_small_limit(int level) {
    return level == TIO_SIMD_AVX512 ? 32 : level == TIO_SIMD_AVX2 ? 24 : 16;
}
#define TIO_WL_BLOCK 256     /* keys hashed per block before their buckets are probed */
#define TIO_WL_DISTANCE 8    /* buckets prefetched ahead within a block */

typedef struct {
    uint64_t *slots;         /* nbuckets * 8, 64-byte aligned */
    uint64_t mask;           /* nbuckets - 1 */
    uint64_t size;           /* distinct non-zero keys */
    int has_zero;
} tio_watchlist;

/* Buckets for n keys: a power of two holding n at most half full (4 keys a bucket on average),
 * so the chance that a bucket overflows into its neighbour stays around 2%. */
static inline uint64_t tio_wl_buckets_for(uint64_t n) {
    uint64_t b = 1;
    while (b * (TIO_WL_SLOTS / 2) < n) b <<= 1;
    return b;
}

/* Returns 0, or -1 when the memory cannot be had. */
static inline int tio_wl_init(tio_watchlist *wl, uint64_t n) {
    uint64_t nb = tio_wl_buckets_for(n);
    wl->slots = (uint64_t *)aligned_alloc(64, nb * TIO_WL_SLOTS * sizeof(uint64_t));
    if (!wl->slots) return -1;
    memset(wl->slots, 0, nb * TIO_WL_SLOTS * sizeof(uint64_t));
    wl->mask = nb - 1;
    wl->size = 0;
    wl->has_zero = 0;
    return 0;
}

static inline void tio_wl_free(tio_watchlist *wl) {
    free(wl->slots);
    wl->slots = NULL;
}

/* Adds k unless present; the caller sized the table for every key it adds. */
static inline void tio_wl_add(tio_watchlist *wl, uint64_t k) {
    if (k == 0) { wl->has_zero = 1; return; }
    uint64_t b = tio_fmix64(k) & wl->mask;
    for (;;) {
        uint64_t *s = wl->slots + b * TIO_WL_SLOTS;
        for (int j = 0; j < TIO_WL_SLOTS; j++) {
            if (s[j] == k) return;
            if (s[j] == 0) { s[j] = k; wl->size++; return; }
        }
        b = (b + 1) & wl->mask;
    }
}

/* One key whose hash h is known: the bucket walk, scalar. */
static inline uint8_t tio_wl_probe_scalar(const tio_watchlist *wl, uint64_t k, uint64_t h) {
    if (k == 0) return (uint8_t)wl->has_zero;
    uint64_t b = h & wl->mask;
    for (;;) {
        const uint64_t *s = wl->slots + b * TIO_WL_SLOTS;
        int found = 0, free_slot = 0;
        for (int j = 0; j < TIO_WL_SLOTS; j++) {
            found |= s[j] == k;
            free_slot |= s[j] == 0;
        }
        if (found | free_slot) return (uint8_t)found;
        b = (b + 1) & wl->mask;
    }
}

static inline int tio_wl_contains(const tio_watchlist *wl, uint64_t k) {
    return tio_wl_probe_scalar(wl, k, tio_fmix64(k));
}

#if TIO_SIMD_X86
TIO_AVX2 static inline uint8_t tio_wl_probe_avx2(const tio_watchlist *wl, uint64_t k, uint64_t h) {
    if (k == 0) return (uint8_t)wl->has_zero;
    const __m256i key = _mm256_set1_epi64x((long long)k), zero = _mm256_setzero_si256();
    uint64_t b = h & wl->mask;
    for (;;) {
        const __m256i *s = (const __m256i *)(wl->slots + b * TIO_WL_SLOTS);
        __m256i s0 = _mm256_load_si256(s), s1 = _mm256_load_si256(s + 1);
        __m256i found = _mm256_or_si256(_mm256_cmpeq_epi64(s0, key), _mm256_cmpeq_epi64(s1, key));
        __m256i free_slot = _mm256_or_si256(_mm256_cmpeq_epi64(s0, zero), _mm256_cmpeq_epi64(s1, zero));
        int f = !_mm256_testz_si256(found, found);
        if (f | !_mm256_testz_si256(free_slot, free_slot)) return (uint8_t)f;
        b = (b + 1) & wl->mask;
    }
}

TIO_AVX512 static inline uint8_t tio_wl_probe_avx512(const tio_watchlist *wl, uint64_t k, uint64_t h) {
    if (k == 0) return (uint8_t)wl->has_zero;
    const __m512i key = _mm512_set1_epi64((long long)k);
    uint64_t b = h & wl->mask;
    for (;;) {
        __m512i s = _mm512_load_si512((const void *)(wl->slots + b * TIO_WL_SLOTS));
        __mmask8 found = _mm512_cmpeq_epu64_mask(s, key);
        __mmask8 free_slot = _mm512_testn_epi64_mask(s, s);
        if (found | free_slot) return (uint8_t)(found != 0);
        b = (b + 1) & wl->mask;
    }
}
#endif

/* Hash a block of keys with the level's hash kernel, then probe each key's bucket with the
 * bucket of the key TIO_WL_DISTANCE ahead already on its way: a table larger than the cache
 * costs one overlapped miss per key instead of one serial miss. */
#define TIO_WL_QUERY_BODY(PROBE)                                                              \
    uint64_t h[TIO_WL_BLOCK];                                                                 \
    for (size_t base = 0; base < n; base += TIO_WL_BLOCK) {                                   \
        size_t m = n - base < TIO_WL_BLOCK ? n - base : TIO_WL_BLOCK;                         \
        const char *kb = (const char *)keys + 8 * base;                                       \
        tio_hash_batch(level, kb, h, m);                                                      \
        size_t pf = m < TIO_WL_DISTANCE ? m : TIO_WL_DISTANCE;                                \
        for (size_t i = 0; i < pf; i++) tio_prefetch(wl->slots + (h[i] & wl->mask) * TIO_WL_SLOTS); \
        for (size_t i = 0; i < m; i++) {                                                      \
            if (i + TIO_WL_DISTANCE < m)                                                      \
                tio_prefetch(wl->slots + (h[i + TIO_WL_DISTANCE] & wl->mask) * TIO_WL_SLOTS); \
            out[base + i] = PROBE(wl, tio_load_u64(kb + 8 * i), h[i]);                        \
        }                                                                                     \
    }

#if TIO_SIMD_X86
TIO_AVX2 static void tio_wl_query_avx2(const tio_watchlist *wl, int level, const void *keys,
                                       size_t n, uint8_t *out) {
    TIO_WL_QUERY_BODY(tio_wl_probe_avx2)
}
TIO_AVX512 static void tio_wl_query_avx512(const tio_watchlist *wl, int level, const void *keys,
                                           size_t n, uint8_t *out) {
    TIO_WL_QUERY_BODY(tio_wl_probe_avx512)
}
#endif

static inline void tio_wl_query_scalar(const tio_watchlist *wl, int level, const void *keys,
                                       size_t n, uint8_t *out) {
    TIO_WL_QUERY_BODY(tio_wl_probe_scalar)
}

static inline void tio_wl_query(const tio_watchlist *wl, int level, const void *keys, size_t n,
                                uint8_t *out) {
#if TIO_SIMD_X86
    if (level == TIO_SIMD_AVX512) { tio_wl_query_avx512(wl, level, keys, n, out); return; }
    if (level == TIO_SIMD_AVX2) { tio_wl_query_avx2(wl, level, keys, n, out); return; }
#endif
    tio_wl_query_scalar(wl, TIO_SIMD_SCALAR, keys, n, out);
}
