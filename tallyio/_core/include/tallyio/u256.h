/* Exact unsigned 256-bit arithmetic, and the wider integers the AMM closed forms need.
 *
 * tio_u256 is four little-endian 64-bit words: the layout of TX_DTYPE's u256 columns, so a row's
 * amount is read in place. Every operation that can leave the range says so in its return value
 * (1 on overflow, borrow or division by zero); nothing here wraps silently.
 *
 * Underneath is one limb layer over uint64_t arrays of any length (schoolbook product, Knuth's
 * algorithm D for division, Newton's integer square root) used at three widths: tio_u256,
 * tio_u512 (a full 256x256 product) and tio_big, a trimmed number of up to TIO_BIG_LIMBS words
 * for intermediates such as A*B in the optimal-arbitrage closed form (about 1160 bits when every
 * input is a full u256 and a fee is 32 bits). As in holiman/uint256 and chfast/intx: fixed limbs,
 * a 64x64->128 product from unsigned __int128, and division by normalisation so that each
 * quotient digit is estimated from a 128/64 division (one `divq` on x86-64).
 *
 * Builtins first (unsigned __int128, __builtin_clzll, __builtin_add_overflow, `divq`), each with
 * a portable C fallback, so the header builds with any C99 compiler; no -march flags needed.
 */
#pragma once
#include <stdint.h>
#include <stddef.h>
#include <string.h>
#include <math.h>

typedef struct { uint64_t w[4]; } tio_u256; /* little-endian words */
typedef struct { uint64_t w[8]; } tio_u512; /* little-endian words */

/* 1280 bits: the widest AMM intermediate (a discriminant of u256 reserves times 32-bit fees) is
 * below 1170 bits; operations that would exceed this report overflow instead. */
#define TIO_BIG_LIMBS 20
/* The tio_big operations return 1 on overflow (or division by zero) and then leave their result
 * zero, never unset: a caller may OR the flags of a sequence of steps and test them once. */
typedef struct {
    int n;                    /* words in use: w[n-1] != 0, or n == 0 for zero */
    uint64_t w[TIO_BIG_LIMBS];
} tio_big;

/* TIO_U256_PORTABLE (defined before the include) forces the portable fallbacks, so a test can
 * build and check them on a compiler that has the builtins. */
#if (defined(__GNUC__) || defined(__clang__)) && !defined(TIO_U256_PORTABLE)
#define TIO_U256_GNUC 1
#else
#define TIO_U256_GNUC 0
#endif
#if defined(__SIZEOF_INT128__) && !defined(TIO_U256_PORTABLE)
#define TIO_U256_INT128 1
#else
#define TIO_U256_INT128 0
#endif

/* ---------------------------------------------------------------- word primitives */

/* 64x64 -> 128: low word returned, high word in *hi. */
static inline uint64_t tio_mul64(uint64_t a, uint64_t b, uint64_t *hi) {
#if TIO_U256_INT128
    unsigned __int128 p = (unsigned __int128)a * b;
    *hi = (uint64_t)(p >> 64);
    return (uint64_t)p;
#else
    uint64_t a0 = a & 0xffffffffu, a1 = a >> 32, b0 = b & 0xffffffffu, b1 = b >> 32;
    uint64_t p00 = a0 * b0, p01 = a0 * b1, p10 = a1 * b0, p11 = a1 * b1;
    uint64_t mid = (p00 >> 32) + (p01 & 0xffffffffu) + (p10 & 0xffffffffu);
    *hi = p11 + (p01 >> 32) + (p10 >> 32) + (mid >> 32);
    return (mid << 32) | (p00 & 0xffffffffu);
#endif
}

/* a + b + carry_in (0 or 1); the carry out in *carry. */
static inline uint64_t tio_addc(uint64_t a, uint64_t b, uint64_t *carry) {
#if TIO_U256_GNUC
    uint64_t s, t;
    uint64_t c1 = __builtin_add_overflow(a, b, &s);
    uint64_t c2 = __builtin_add_overflow(s, *carry, &t);
    *carry = c1 | c2;
    return t;
#else
    uint64_t s = a + b, c1 = s < a;
    uint64_t t = s + *carry, c2 = t < s;
    *carry = c1 | c2;
    return t;
#endif
}

/* a - b - borrow_in (0 or 1); the borrow out in *borrow. */
static inline uint64_t tio_subb(uint64_t a, uint64_t b, uint64_t *borrow) {
#if TIO_U256_GNUC
    uint64_t d, e;
    uint64_t b1 = __builtin_sub_overflow(a, b, &d);
    uint64_t b2 = __builtin_sub_overflow(d, *borrow, &e);
    *borrow = b1 | b2;
    return e;
#else
    uint64_t d = a - b, b1 = a < b;
    uint64_t e = d - *borrow, b2 = d < *borrow;
    *borrow = b1 | b2;
    return e;
#endif
}

/* Leading zero bits of a non-zero word. */
static inline int tio_clz64(uint64_t x) {
#if TIO_U256_GNUC
    return __builtin_clzll(x);
#else
    int n = 0;
    while (!(x & 0x8000000000000000ULL)) { x <<= 1; n++; }
    return n;
#endif
}

/* (u1:u0) / v for u1 < v (the quotient fits a word); the remainder in *r. */
static inline uint64_t tio_div128(uint64_t u1, uint64_t u0, uint64_t v, uint64_t *r) {
#if defined(__x86_64__) && TIO_U256_GNUC
    /* One divq: u1 < v guarantees no #DE. GCC cannot emit it from __int128 division, which
     * always calls __udivti3 because it cannot prove the quotient fits. */
    uint64_t q, rem;
    __asm__("divq %4" : "=a"(q), "=d"(rem) : "a"(u0), "d"(u1), "rm"(v) : "cc");
    *r = rem;
    return q;
#elif TIO_U256_INT128
    unsigned __int128 n = ((unsigned __int128)u1 << 64) | u0;
    uint64_t q = (uint64_t)(n / v);
    *r = (uint64_t)(n - (unsigned __int128)q * v);
    return q;
#else
    /* Hacker's Delight divlu: normalise, then two 32-bit quotient digits, each estimated and
     * corrected at most twice. */
    const uint64_t b = 1ULL << 32;
    int s = tio_clz64(v);
    v <<= s;
    uint64_t vn1 = v >> 32, vn0 = v & 0xffffffffu;
    uint64_t un32 = s ? (u1 << s) | (u0 >> (64 - s)) : u1;
    uint64_t un10 = u0 << s;
    uint64_t un1 = un10 >> 32, un0 = un10 & 0xffffffffu;
    uint64_t q1 = un32 / vn1, rhat = un32 - q1 * vn1;
    while (q1 >= b || q1 * vn0 > b * rhat + un1) {
        q1--;
        rhat += vn1;
        if (rhat >= b) break;
    }
    uint64_t un21 = un32 * b + un1 - q1 * v;
    uint64_t q0 = un21 / vn1;
    rhat = un21 - q0 * vn1;
    while (q0 >= b || q0 * vn0 > b * rhat + un0) {
        q0--;
        rhat += vn1;
        if (rhat >= b) break;
    }
    *r = (un21 * b + un0 - q0 * v) >> s;
    return q1 * b + q0;
#endif
}

/* ---------------------------------------------------------------- limb arrays */

/* Words in use of a[0..n): n less the zero words on top. */
static inline int tio_limbs_len(const uint64_t *a, int n) {
    while (n > 0 && a[n - 1] == 0) n--;
    return n;
}

/* -1, 0, 1 for a[0..an) vs b[0..bn), both trimmed (no zero top word). */
static inline int tio_limbs_cmp(const uint64_t *a, int an, const uint64_t *b, int bn) {
    if (an != bn) return an < bn ? -1 : 1;
    for (int i = an - 1; i >= 0; i--)
        if (a[i] != b[i]) return a[i] < b[i] ? -1 : 1;
    return 0;
}

/* r[0..an) = a + b for an >= bn; the carry out is returned. r may alias a or b. */
static inline uint64_t tio_limbs_add(uint64_t *r, const uint64_t *a, int an, const uint64_t *b,
                                     int bn) {
    uint64_t c = 0;
    int i = 0;
    for (; i < bn; i++) r[i] = tio_addc(a[i], b[i], &c);
    for (; i < an; i++) r[i] = tio_addc(a[i], 0, &c);
    return c;
}

/* r[0..an) = a - b for an >= bn; the borrow out is returned. r may alias a or b. */
static inline uint64_t tio_limbs_sub(uint64_t *r, const uint64_t *a, int an, const uint64_t *b,
                                     int bn) {
    uint64_t c = 0;
    int i = 0;
    for (; i < bn; i++) r[i] = tio_subb(a[i], b[i], &c);
    for (; i < an; i++) r[i] = tio_subb(a[i], 0, &c);
    return c;
}

/* r[0..n) = a * m; the top word returned. r may alias a. */
static inline uint64_t tio_limbs_mul1(uint64_t *r, const uint64_t *a, int n, uint64_t m) {
    uint64_t carry = 0;
    for (int i = 0; i < n; i++) {
        uint64_t hi, lo = tio_mul64(a[i], m, &hi);
        lo += carry;
        hi += lo < carry;
        r[i] = lo;
        carry = hi;
    }
    return carry;
}

/* r[0..an+bn) = a * b (schoolbook). r must not alias a or b. */
static inline void tio_limbs_mul(uint64_t *r, const uint64_t *a, int an, const uint64_t *b,
                                 int bn) {
    for (int i = 0; i < an + bn; i++) r[i] = 0;
    for (int j = 0; j < bn; j++) {
        uint64_t carry = 0, bj = b[j];
        if (bj == 0) continue;
        for (int i = 0; i < an; i++) {
            uint64_t hi, lo = tio_mul64(a[i], bj, &hi);
            lo += carry;
            hi += lo < carry;
            uint64_t s = r[i + j] + lo;
            hi += s < lo;
            r[i + j] = s;
            carry = hi;
        }
        r[j + an] = carry;
    }
}

#if TIO_U256_GNUC
#define TIO_ALWAYS_INLINE __attribute__((always_inline)) inline
#else
#define TIO_ALWAYS_INLINE inline
#endif

/* Knuth's algorithm D (TAOCP 4.3.1; the word-size form of Hacker's Delight divmnu) for n >= 2;
 * see tio_limbs_divmod. Always inlined so that each call with a constant n (the dispatch below)
 * compiles to a loop-unrolled copy: the divisor loops dominate for the short operands of AMM
 * math, more than the divq per quotient word. */
static TIO_ALWAYS_INLINE void tio_limbs_divmod_n(uint64_t *q, uint64_t *r, const uint64_t *u,
                                                 int m, const uint64_t *v, int n) {
    uint64_t un[TIO_BIG_LIMBS * 2 + 1], vn[TIO_BIG_LIMBS * 2];
    /* Normalise: shift v so its top bit is set; then every quotient digit estimated from the top
     * two words of the remainder is at most two too large. */
    int s = tio_clz64(v[n - 1]);
    if (s) {
        for (int i = n - 1; i > 0; i--) vn[i] = (v[i] << s) | (v[i - 1] >> (64 - s));
        vn[0] = v[0] << s;
        un[m] = u[m - 1] >> (64 - s);
        for (int i = m - 1; i > 0; i--) un[i] = (u[i] << s) | (u[i - 1] >> (64 - s));
        un[0] = u[0] << s;
    } else {
        memcpy(vn, v, (size_t)n * 8);
        memcpy(un, u, (size_t)m * 8);
        un[m] = 0;
    }
    uint64_t vtop = vn[n - 1], vnext = vn[n - 2];
    for (int j = m - n; j >= 0; j--) {
        uint64_t qhat, rhat;
        int rhat_ok; /* rhat < 2^64: the refinement test below is valid */
        if (un[j + n] == 0 && un[j + n - 1] < vtop) { /* a zero digit (the top one, often) */
            q[j] = 0;
            continue;
        }
        if (un[j + n] >= vtop) { /* == in fact: the running remainder is below v * 2^64 */
            qhat = ~0ULL;
            uint64_t c = 0;
            rhat = tio_addc(un[j + n - 1], vtop, &c);
            rhat_ok = !c;
        } else {
            qhat = tio_div128(un[j + n], un[j + n - 1], vtop, &rhat);
            rhat_ok = 1;
        }
        while (rhat_ok) { /* at most twice: qhat * v[n-2] > rhat * 2^64 + u[j+n-2]? */
            uint64_t phi, plo = tio_mul64(qhat, vnext, &phi);
            if (phi < rhat || (phi == rhat && plo <= un[j + n - 2])) break;
            qhat--;
            uint64_t c = 0;
            rhat = tio_addc(rhat, vtop, &c);
            rhat_ok = !c;
        }
        /* un[j..j+n] -= qhat * vn */
        uint64_t k = 0;
        for (int i = 0; i < n; i++) {
            uint64_t phi, plo = tio_mul64(qhat, vn[i], &phi);
            plo += k;
            phi += plo < k; /* phi <= 2^64 - 2: cannot wrap */
            uint64_t borrow = un[i + j] < plo;
            un[i + j] -= plo;
            k = phi + borrow;
        }
        uint64_t borrow = un[j + n] < k;
        un[j + n] -= k;
        if (borrow) { /* qhat was one too large (probability ~2/2^64): add v back */
            qhat--;
            uint64_t c = 0;
            for (int i = 0; i < n; i++) un[i + j] = tio_addc(un[i + j], vn[i], &c);
            un[j + n] += c;
        }
        q[j] = qhat;
    }
    if (r) {
        if (s) {
            for (int i = 0; i < n - 1; i++) r[i] = (un[i] >> s) | (un[i + 1] << (64 - s));
            r[n - 1] = un[n - 1] >> s;
        } else {
            memcpy(r, un, (size_t)n * 8);
        }
    }
}

/* (u2:u1:u0) / (d1:d0) for a normalised divisor (top bit of d1 set) and (u2:u1) < (d1:d0): the
 * one-word quotient, the remainder in (*r1:*r0). Algorithm D's digit step with n = 2, where the
 * estimate's refinement against d0 is the whole test (Knuth 4.3.1, exercise 21 / Hacker's Delight
 * divlu): the refined digit is exact, so no multiply-subtract or add-back is needed. */
static inline uint64_t tio_div3by2(uint64_t u2, uint64_t u1, uint64_t u0, uint64_t d1,
                                   uint64_t d0, uint64_t *r1, uint64_t *r0) {
    uint64_t q, rhat, c = 0;
    int rhat_ok = 1;
    if (u2 >= d1) { /* u2 == d1: the estimate is 2^64 - 1 */
        q = ~0ULL;
        rhat = tio_addc(u1, d1, &c);
        rhat_ok = !c;
    } else {
        q = tio_div128(u2, u1, d1, &rhat);
    }
    while (rhat_ok) { /* at most twice */
        uint64_t phi, plo = tio_mul64(q, d0, &phi);
        if (phi < rhat || (phi == rhat && plo <= u0)) break;
        q--;
        c = 0;
        rhat = tio_addc(rhat, d1, &c);
        rhat_ok = !c;
    }
    /* remainder = (u2:u1:u0) - q * (d1:d0), below (d1:d0) */
    uint64_t p1, p0 = tio_mul64(q, d0, &p1), b = 0;
    uint64_t t1 = p1 + q * d1; /* the low 128 bits of q * d suffice: the rest cancels u2 */
    *r0 = tio_subb(u0, p0, &b);
    *r1 = tio_subb(u1, t1, &b);
    return q;
}

/* q[0..m-n+1) = u / v and, when r is not NULL, r[0..n) = u % v, for m >= n >= 1 and
 * v[n-1] != 0. u and v are left unchanged; q and r must not alias them. */
static inline void tio_limbs_divmod(uint64_t *q, uint64_t *r, const uint64_t *u, int m,
                                    const uint64_t *v, int n) {
    switch (n) {
    case 1: { /* short division: one 128/64 step per word */
        uint64_t rem = 0, d = v[0];
        for (int i = m - 1; i >= 0; i--) q[i] = tio_div128(rem, u[i], d, &rem);
        if (r) r[0] = rem;
        return;
    }
    case 2: { /* one 3-by-2 step per quotient word on the normalised operands */
        int sh = tio_clz64(v[1]);
        uint64_t d1 = sh ? (v[1] << sh) | (v[0] >> (64 - sh)) : v[1], d0 = v[0] << sh;
        /* the top of u << sh: its words above m - 2 start the running remainder */
        /* (r1:r0) = the top two words of u << sh, below d because r1 < 2^sh <= d1 */
        uint64_t r1 = sh ? u[m - 1] >> (64 - sh) : 0;
        uint64_t r0 = sh ? (u[m - 1] << sh) | (u[m - 2] >> (64 - sh)) : u[m - 1];
        for (int j = m - 2; j >= 0; j--) {
            uint64_t w = sh ? (u[j] << sh) | (j ? u[j - 1] >> (64 - sh) : 0) : u[j];
            q[j] = tio_div3by2(r1, r0, w, d1, d0, &r1, &r0);
        }
        if (r) {
            r[0] = sh ? (r0 >> sh) | (r1 << (64 - sh)) : r0;
            r[1] = sh ? r1 >> sh : r1;
        }
        return;
    }
    case 3: tio_limbs_divmod_n(q, r, u, m, v, 3); return;
    case 4: tio_limbs_divmod_n(q, r, u, m, v, 4); return;
    default: tio_limbs_divmod_n(q, r, u, m, v, n); return;
    }
}

/* ---------------------------------------------------------------- tio_u256 */

static inline void tio_u256_from_u64(tio_u256 *r, uint64_t v) {
    r->w[0] = v;
    r->w[1] = r->w[2] = r->w[3] = 0;
}

static inline int tio_u256_is_zero(const tio_u256 *a) {
    return (a->w[0] | a->w[1] | a->w[2] | a->w[3]) == 0;
}

static inline int tio_u256_cmp(const tio_u256 *a, const tio_u256 *b) {
    for (int i = 3; i >= 0; i--)
        if (a->w[i] != b->w[i]) return a->w[i] < b->w[i] ? -1 : 1;
    return 0;
}

/* Significant bits: 0 for zero, 256 when the top bit is set. */
static inline int tio_u256_bit_length(const tio_u256 *a) {
    for (int i = 3; i >= 0; i--)
        if (a->w[i]) return 64 * i + 64 - tio_clz64(a->w[i]);
    return 0;
}

/* r = a + b; 1 when the sum needs a 257th bit (r then holds it modulo 2^256). */
static inline int tio_u256_add(tio_u256 *r, const tio_u256 *a, const tio_u256 *b) {
    uint64_t c = 0;
    for (int i = 0; i < 4; i++) r->w[i] = tio_addc(a->w[i], b->w[i], &c);
    return (int)c;
}

/* r = a - b; 1 when b > a (r then holds the difference modulo 2^256). */
static inline int tio_u256_sub(tio_u256 *r, const tio_u256 *a, const tio_u256 *b) {
    uint64_t c = 0;
    for (int i = 0; i < 4; i++) r->w[i] = tio_subb(a->w[i], b->w[i], &c);
    return (int)c;
}

/* The full 512-bit product. */
static inline void tio_u256_mul_full(tio_u512 *r, const tio_u256 *a, const tio_u256 *b) {
    tio_limbs_mul(r->w, a->w, 4, b->w, 4);
}

/* r = a * b; 1 when the product needs more than 256 bits (r then holds its low half). */
static inline int tio_u256_mul(tio_u256 *r, const tio_u256 *a, const tio_u256 *b) {
    tio_u512 p;
    tio_u256_mul_full(&p, a, b);
    memcpy(r->w, p.w, 32);
    return (p.w[4] | p.w[5] | p.w[6] | p.w[7]) != 0;
}

/* r = a << s for s < 256; 1 when a bit is shifted out (r then holds the low 256 bits). */
static inline int tio_u256_shl(tio_u256 *r, const tio_u256 *a, unsigned s) {
    int lost = s && tio_u256_bit_length(a) + (int)s > 256;
    unsigned ws = s / 64, bs = s % 64;
    tio_u256 t;
    for (int i = 3; i >= 0; i--) {
        int k = i - (int)ws;
        uint64_t v = k >= 0 ? a->w[k] << bs : 0;
        if (bs && k >= 1) v |= a->w[k - 1] >> (64 - bs);
        t.w[i] = v;
    }
    *r = t;
    return lost;
}

/* r = a >> s for s < 256. */
static inline void tio_u256_shr(tio_u256 *r, const tio_u256 *a, unsigned s) {
    unsigned ws = s / 64, bs = s % 64;
    tio_u256 t;
    for (int i = 0; i < 4; i++) {
        int k = i + (int)ws;
        uint64_t v = k < 4 ? a->w[k] >> bs : 0;
        if (bs && k + 1 < 4) v |= a->w[k + 1] << (64 - bs);
        t.w[i] = v;
    }
    *r = t;
}

/* q = a / b and, when rem is not NULL, rem = a % b; 1 (q, rem untouched) when b is zero. */
static inline int tio_u256_divmod(tio_u256 *q, tio_u256 *rem, const tio_u256 *a,
                                  const tio_u256 *b) {
    int n = tio_limbs_len(b->w, 4), m = tio_limbs_len(a->w, 4);
    if (n == 0) return 1;
    if (m < n) { /* a < b: no division */
        tio_u256 t = *a;
        tio_u256_from_u64(q, 0);
        if (rem) *rem = t;
        return 0;
    }
    uint64_t qq[4] = {0, 0, 0, 0}, rr[4] = {0, 0, 0, 0};
    tio_limbs_divmod(qq, rem ? rr : NULL, a->w, m, b->w, n);
    memcpy(q->w, qq, 32);
    if (rem) memcpy(rem->w, rr, 32);
    return 0;
}

/* q = a / b for a 512-bit a; rem (optional) = a % b. 1 when b is zero, 2 when the quotient needs
 * more than 256 bits (then q is untouched; rem is still exact). */
static inline int tio_u512_divmod(tio_u256 *q, tio_u256 *rem, const tio_u512 *a,
                                  const tio_u256 *b) {
    int n = tio_limbs_len(b->w, 4), m = tio_limbs_len(a->w, 8);
    if (n == 0) return 1;
    uint64_t qq[8] = {0}, rr[4] = {0, 0, 0, 0};
    if (m < n) {
        memcpy(rr, a->w, (size_t)m * 8);
    } else {
        tio_limbs_divmod(qq, rr, a->w, m, b->w, n);
    }
    if (rem) memcpy(rem->w, rr, 32);
    if (qq[4] | qq[5] | qq[6] | qq[7]) return 2;
    memcpy(q->w, qq, 32);
    return 0;
}

/* ---------------------------------------------------------------- tio_big */

static inline void tio_big_zero(tio_big *r) { r->n = 0; }

static inline void tio_big_from_u64(tio_big *r, uint64_t v) {
    r->w[0] = v;
    r->n = v != 0;
}

static inline void tio_big_from_u256(tio_big *r, const tio_u256 *a) {
    memcpy(r->w, a->w, 32);
    r->n = tio_limbs_len(a->w, 4);
}

/* r = a when it fits 256 bits (return 0), else 1 and r untouched. */
static inline int tio_big_to_u256(tio_u256 *r, const tio_big *a) {
    if (a->n > 4) return 1;
    for (int i = 0; i < 4; i++) r->w[i] = i < a->n ? a->w[i] : 0;
    return 0;
}

static inline int tio_big_is_zero(const tio_big *a) { return a->n == 0; }

static inline int tio_big_cmp(const tio_big *a, const tio_big *b) {
    return tio_limbs_cmp(a->w, a->n, b->w, b->n);
}

static inline int tio_big_cmp_u64(const tio_big *a, uint64_t v) {
    if (a->n > 1) return 1;
    uint64_t x = a->n ? a->w[0] : 0;
    return x < v ? -1 : x > v;
}

/* r = a + b; 1 on overflow past TIO_BIG_LIMBS words. r may alias a or b. */
static inline int tio_big_add(tio_big *r, const tio_big *a, const tio_big *b) {
    if (a->n < b->n) { const tio_big *t = a; a = b; b = t; }
    int n = a->n;
    uint64_t c = tio_limbs_add(r->w, a->w, n, b->w, b->n);
    if (c) {
        if (n == TIO_BIG_LIMBS) { r->n = 0; return 1; }
        r->w[n++] = 1;
    }
    r->n = n;
    return 0;
}

static inline int tio_big_add_u64(tio_big *r, const tio_big *a, uint64_t v) {
    tio_big t;
    tio_big_from_u64(&t, v);
    return tio_big_add(r, a, &t);
}

/* r = a - b; 1 when b > a (r is then set to zero). r may alias a or b. */
static inline int tio_big_sub(tio_big *r, const tio_big *a, const tio_big *b) {
    if (tio_big_cmp(a, b) < 0) { r->n = 0; return 1; }
    tio_limbs_sub(r->w, a->w, a->n, b->w, b->n);
    r->n = tio_limbs_len(r->w, a->n);
    return 0;
}

static inline int tio_big_sub_u64(tio_big *r, const tio_big *a, uint64_t v) {
    tio_big t;
    tio_big_from_u64(&t, v);
    return tio_big_sub(r, a, &t);
}

/* r = a * b; 1 on overflow past TIO_BIG_LIMBS words. r may alias a or b. */
static inline int tio_big_mul(tio_big *r, const tio_big *a, const tio_big *b) {
    if (a->n == 0 || b->n == 0) { r->n = 0; return 0; }
    int n = a->n + b->n;
    uint64_t p[TIO_BIG_LIMBS * 2];
    tio_limbs_mul(p, a->w, a->n, b->w, b->n);
    n = tio_limbs_len(p, n);
    if (n > TIO_BIG_LIMBS) { r->n = 0; return 1; }
    memcpy(r->w, p, (size_t)n * 8);
    r->n = n;
    return 0;
}

/* r = a * m for a word m; 1 on overflow. r may alias a. */
static inline int tio_big_mul_u64(tio_big *r, const tio_big *a, uint64_t m) {
    if (a->n == 0 || m == 0) { r->n = 0; return 0; }
    int n = a->n;
    uint64_t top = tio_limbs_mul1(r->w, a->w, n, m);
    if (top) {
        if (n == TIO_BIG_LIMBS) { r->n = 0; return 1; }
        r->w[n++] = top;
    }
    r->n = n;
    return 0;
}

/* q = a / b and, when rem is not NULL, rem = a % b; 1 (both zero) when b is zero. Any may
 * alias. */
static inline int tio_big_divmod(tio_big *q, tio_big *rem, const tio_big *a, const tio_big *b) {
    if (b->n == 0) {
        q->n = 0;
        if (rem) rem->n = 0;
        return 1;
    }
    if (a->n < b->n) {
        if (rem) *rem = *a;
        q->n = 0;
        return 0;
    }
    uint64_t qq[TIO_BIG_LIMBS], rr[TIO_BIG_LIMBS];
    int m = a->n, n = b->n;
    tio_limbs_divmod(qq, rr, a->w, m, b->w, n);
    memcpy(q->w, qq, (size_t)(m - n + 1) * 8);
    q->n = tio_limbs_len(q->w, m - n + 1);
    if (rem) {
        memcpy(rem->w, rr, (size_t)n * 8);
        rem->n = tio_limbs_len(rem->w, n);
    }
    return 0;
}

/* ceil(a / b); 1 when b is zero. */
static inline int tio_big_divceil(tio_big *q, const tio_big *a, const tio_big *b) {
    tio_big r;
    if (tio_big_divmod(q, &r, a, b)) return 1;
    return r.n ? tio_big_add_u64(q, q, 1) : 0;
}

/* r = a >> 1. */
static inline void tio_big_shr1(tio_big *r, const tio_big *a) {
    int n = a->n;
    for (int i = 0; i < n; i++)
        r->w[i] = (a->w[i] >> 1) | (i + 1 < n ? a->w[i + 1] << 63 : 0);
    r->n = tio_limbs_len(r->w, n);
}

static inline int tio_big_bit_length(const tio_big *a) {
    return a->n ? 64 * a->n - tio_clz64(a->w[a->n - 1]) : 0;
}

/* r = a << s (any s); 1 on overflow. r may alias a. */
static inline int tio_big_shl(tio_big *r, const tio_big *a, unsigned s) {
    if (a->n == 0) { r->n = 0; return 0; }
    int bits = tio_big_bit_length(a) + (int)s;
    if (bits > 64 * TIO_BIG_LIMBS) { r->n = 0; return 1; }
    int n = (bits + 63) / 64, ws = (int)(s / 64), bs = (int)(s % 64);
    uint64_t t[TIO_BIG_LIMBS];
    for (int i = n - 1; i >= 0; i--) {
        int k = i - ws;
        uint64_t v = (k >= 0 && k < a->n) ? a->w[k] << bs : 0;
        if (bs && k >= 1 && k - 1 < a->n) v |= a->w[k - 1] >> (64 - bs);
        t[i] = v;
    }
    memcpy(r->w, t, (size_t)n * 8);
    r->n = n;
    return 0;
}

/* r = floor(sqrt(a)), exact (Python's math.isqrt). Newton's iteration x <- (x + a/x) / 2 from a
 * start at or above the root decreases to the root exactly; the start comes from a double sqrt of
 * the top 63-64 bits, good to ~2^-31, so each division doubles that (4 steps for 512 bits). */
static inline void tio_big_isqrt(tio_big *r, const tio_big *a) {
    if (a->n == 0) { r->n = 0; return; }
    int bits = tio_big_bit_length(a);
    /* a = m * 2^(2k) + rest with m of 63 or 64 bits (an even shift keeps sqrt exact in k). */
    int k = bits > 64 ? (bits - 63) / 2 : 0;
    tio_big top;
    if (k) {
        /* m = a >> 2k: the two words around bit 2k */
        int ws = (2 * k) / 64, bs = (2 * k) % 64;
        uint64_t lo = a->w[ws] >> bs;
        if (bs && ws + 1 < a->n) lo |= a->w[ws + 1] << (64 - bs);
        tio_big_from_u64(&top, lo);
    } else {
        tio_big_from_u64(&top, a->w[0]);
    }
    /* floor(sqrt(double(m))) + 2 >= sqrt(m + 1): double(m) is within 2^11 of m, which moves a
     * root of ~2^31.5 by under 2^-20. So start * 2^k >= sqrt(a). */
    double d = sqrt((double)top.w[0]);
    uint64_t e = (uint64_t)d + 2;
    tio_big x, y, t;
    tio_big_from_u64(&x, e);
    tio_big_shl(&x, &x, (unsigned)k);
    for (;;) {
        tio_big_divmod(&t, NULL, a, &x);
        tio_big_add(&y, &x, &t); /* x, a/x < 2^(bits/2+2): no overflow */
        tio_big_shr1(&y, &y);
        if (tio_big_cmp(&y, &x) >= 0) break;
        x = y;
    }
    *r = x;
}
