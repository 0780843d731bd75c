/* Exact Uniswap V2 kernels in u256: amounts out and in, price comparison, the optimal
 * two-pool arbitrage and the optimal sandwich front-run.
 *
 * Each kernel ports a pure-Python reference (tallyio/amm_reference.py) step for step: the same
 * closed forms, the same scan windows, the same tie-breaking, so with fees 997/1000 the results
 * are bit for bit the reference's (tests/core/test_amm.py checks it over the full u256 range).
 * The references compute with unbounded Python ints; here every intermediate that can pass 256
 * bits is a tio_big (up to 1280 bits, enough for the widest one these inputs can produce), so the
 * only TIO_AMM_OVERFLOW a caller sees is a result that does not fit 256 bits, exactly where the
 * reference's answer is >= 2**256. Nothing wraps.
 *
 * Fees are per pool, fee_num / fee_den of the input kept by the trade (997 / 1000 on Uniswap V2,
 * 9975 / 10000 on PancakeSwap V2, 998 / 1000 on others), with 0 < fee_num < fee_den.
 * All functions are pure C: callable without the GIL, from any thread.
 */
#pragma once
#include <stdint.h>
#include "tallyio/u256.h"

enum {
    TIO_AMM_OK = 0,
    TIO_AMM_NONE = 1,                   /* no trade beats the threshold / no sandwich */
    TIO_AMM_ZERO_INPUT = 2,             /* amount_in (or amount_out) is zero */
    TIO_AMM_ZERO_RESERVE = 3,           /* a reserve is zero */
    TIO_AMM_OVERFLOW = 4,               /* the result needs more than 256 bits */
    TIO_AMM_INSUFFICIENT_LIQUIDITY = 5, /* get_amount_in: amount_out >= reserve_out */
    TIO_AMM_BAD_FEE = 6                 /* not 0 < fee_num < fee_den */
};

/* Points scanned either side of a closed-form optimum when the proven interval is too wide. */
#define TIO_AMM_WINDOW 16
#define TIO_AMM_BOUND_SLIPPAGE 0
#define TIO_AMM_BOUND_PROFIT 1

typedef struct {
    tio_u256 amount_in, amount_mid, amount_out, gross_profit;
    int optimal; /* 1: proven the maximum over every integer input */
} tio_amm_cross;

/* gross_profit is back_out - front_in when that is >= 0, else 0: the reference reports the
 * (rare, tiny) negative value, a compiled caller that needs it takes front_in - back_out. */
typedef struct {
    tio_u256 front_in, front_out, victim_out, back_out, gross_profit;
    int bound; /* TIO_AMM_BOUND_SLIPPAGE: the largest front-run the victim allows;
                  TIO_AMM_BOUND_PROFIT: an interior peak of the profit */
} tio_amm_sandwich;

static inline int tio_amm_fee_ok(uint32_t fee_num, uint32_t fee_den) {
    return fee_num > 0 && fee_num < fee_den;
}

/* ---------------------------------------------------------------- amount out */

/* a * g * rout / (rin * D + a * g) for u256 operands, no checks (rin > 0). The quotient is below
 * rout, so it always fits; the product needs up to 9 words. */
static inline void tio_amm_out_u256(tio_u256 *out, const tio_u256 *a, const tio_u256 *rin,
                                    const tio_u256 *rout, uint32_t g, uint32_t D) {
    uint64_t ag[5], num[9], den[6], q[9];
    if (!(a->w[2] | a->w[3] | rin->w[2] | rin->w[3] | rout->w[2] | rout->w[3])) {
        /* Every operand below 2^128 (uint112 reserves, real amounts): fixed-size straight-line
         * products, 3-word a*g and denominator, 5-word numerator. */
        uint64_t h0, h1, c = 0;
        ag[0] = tio_mul64(a->w[0], g, &h0);
        ag[1] = tio_addc(tio_mul64(a->w[1], g, &h1), h0, &c);
        ag[2] = h1 + c;
        uint64_t e0, e1;
        den[0] = tio_mul64(rin->w[0], D, &e0);
        c = 0;
        den[1] = tio_addc(tio_mul64(rin->w[1], D, &e1), e0, &c);
        den[2] = e1 + c;
        c = 0;
        den[0] = tio_addc(den[0], ag[0], &c);
        den[1] = tio_addc(den[1], ag[1], &c);
        den[2] = tio_addc(den[2], ag[2], &c); /* < 2^34: no carry out */
        tio_limbs_mul(num, ag, 3, rout->w, 2);
        int nn = tio_limbs_len(num, 5), dn = tio_limbs_len(den, 3);
        tio_u256_from_u64(out, 0);
        if (nn < dn) return; /* also a zero input or output reserve */
        tio_limbs_divmod(q, NULL, num, nn, den, dn);
        out->w[0] = q[0];
        if (nn - dn >= 1) out->w[1] = q[1]; /* the quotient is below rout < 2^128 */
        return;
    }
    int an = tio_limbs_len(a->w, 4);
    if (an == 0) { tio_u256_from_u64(out, 0); return; }
    int rn = tio_limbs_len(rout->w, 4), inn = tio_limbs_len(rin->w, 4);
    ag[an] = tio_limbs_mul1(ag, a->w, an, g);
    int agn = tio_limbs_len(ag, an + 1);
    den[inn] = tio_limbs_mul1(den, rin->w, inn, D);
    int dn = inn + 1;
    /* den = rin * D + ag: pad the shorter one with zero words */
    if (agn > dn) { for (int i = dn; i < agn; i++) den[i] = 0; dn = agn; }
    den[dn] = tio_limbs_add(den, den, dn, ag, agn);
    dn = tio_limbs_len(den, dn + 1);
    if (rn == 0) { tio_u256_from_u64(out, 0); return; }
    tio_limbs_mul(num, ag, agn, rout->w, rn);
    int nn = tio_limbs_len(num, agn + rn);
    tio_u256_from_u64(out, 0);
    if (nn < dn) return;
    tio_limbs_divmod(q, NULL, num, nn, den, dn);
    int qn = nn - dn + 1;
    for (int i = 0; i < qn && i < 4; i++) out->w[i] = q[i];
}

/* The same for tio_big operands (a front-run can push a reserve past 256 bits); 1 on overflow or
 * a zero denominator, which the callers' checks rule out. */
static inline int tio_amm_out_big(tio_big *out, const tio_big *a, const tio_big *rin,
                                  const tio_big *rout, uint32_t g, uint32_t D) {
    if (a->n <= 4 && rin->n <= 4 && rout->n <= 4 && rin->n) { /* the common case: u256 words */
        tio_u256 x, y, z, o;
        tio_big_to_u256(&x, a);
        tio_big_to_u256(&y, rin);
        tio_big_to_u256(&z, rout);
        tio_amm_out_u256(&o, &x, &y, &z, g, D);
        tio_big_from_u256(out, &o);
        return 0;
    }
    tio_big ag, num, den;
    int e = tio_big_mul_u64(&ag, a, g);
    e |= tio_big_mul(&num, &ag, rout);
    e |= tio_big_mul_u64(&den, rin, D);
    e |= tio_big_add(&den, &den, &ag);
    if (e) return 1;
    return tio_big_divmod(out, NULL, &num, &den);
}

/* UniswapV2Library.getAmountOut with the pool's fee: in*g*R_out / (R_in*D + in*g). Never
 * overflows (the result is below reserve_out); the intermediate product may take 544 bits. */
static inline int tio_amm_get_amount_out(tio_u256 *out, const tio_u256 *amount_in,
                                         const tio_u256 *reserve_in, const tio_u256 *reserve_out,
                                         uint32_t fee_num, uint32_t fee_den) {
    if (!tio_amm_fee_ok(fee_num, fee_den)) return TIO_AMM_BAD_FEE;
    if (tio_u256_is_zero(amount_in)) return TIO_AMM_ZERO_INPUT;
    if (tio_u256_is_zero(reserve_in) || tio_u256_is_zero(reserve_out))
        return TIO_AMM_ZERO_RESERVE;
    tio_amm_out_u256(out, amount_in, reserve_in, reserve_out, fee_num, fee_den);
    return TIO_AMM_OK;
}

/* UniswapV2Library.getAmountIn with the pool's fee: R_in*out*D / ((R_out - out)*g) + 1, the
 * smallest input that buys amount_out. INSUFFICIENT_LIQUIDITY where the library reverts
 * (amount_out >= reserve_out), OVERFLOW where the input needs more than 256 bits. */
static inline int tio_amm_get_amount_in(tio_u256 *in, const tio_u256 *amount_out,
                                        const tio_u256 *reserve_in, const tio_u256 *reserve_out,
                                        uint32_t fee_num, uint32_t fee_den) {
    if (!tio_amm_fee_ok(fee_num, fee_den)) return TIO_AMM_BAD_FEE;
    if (tio_u256_is_zero(amount_out)) return TIO_AMM_ZERO_INPUT;
    if (tio_u256_is_zero(reserve_in) || tio_u256_is_zero(reserve_out))
        return TIO_AMM_ZERO_RESERVE;
    if (tio_u256_cmp(amount_out, reserve_out) >= 0) return TIO_AMM_INSUFFICIENT_LIQUIDITY;
    tio_big o, rin, rest, num, den, q;
    tio_u256 left;
    tio_u256_sub(&left, reserve_out, amount_out);
    tio_big_from_u256(&o, amount_out);
    tio_big_from_u256(&rin, reserve_in);
    tio_big_from_u256(&rest, &left);
    tio_big_mul(&num, &rin, &o);
    tio_big_mul_u64(&num, &num, fee_den);
    tio_big_mul_u64(&den, &rest, fee_num);
    tio_big_divmod(&q, NULL, &num, &den);
    tio_big_add_u64(&q, &q, 1);
    return tio_big_to_u256(in, &q) ? TIO_AMM_OVERFLOW : TIO_AMM_OK;
}

/* Exact sign of reserve1_a / reserve0_a - reserve1_b / reserve0_b (token1 per token0 of pool a
 * against pool b) in *cmp: -1, 0 or 1, from the two 512-bit cross products. */
static inline int tio_amm_price_cmp(int *cmp, const tio_u256 *reserve0_a,
                                    const tio_u256 *reserve1_a, const tio_u256 *reserve0_b,
                                    const tio_u256 *reserve1_b) {
    if (tio_u256_is_zero(reserve0_a) || tio_u256_is_zero(reserve1_a) ||
        tio_u256_is_zero(reserve0_b) || tio_u256_is_zero(reserve1_b))
        return TIO_AMM_ZERO_RESERVE;
    tio_u512 l, r;
    tio_u256_mul_full(&l, reserve1_a, reserve0_b);
    tio_u256_mul_full(&r, reserve1_b, reserve0_a);
    *cmp = tio_limbs_cmp(l.w, tio_limbs_len(l.w, 8), r.w, tio_limbs_len(r.w, 8));
    return TIO_AMM_OK;
}

/* ---------------------------------------------------------------- signed wide integers */

/* Sign and magnitude; zero is never negative. Only best_cross_pool's quadratic needs signs. */
typedef struct {
    int neg;
    tio_big m;
} tio_sbig;

static inline void tio_sbig_set(tio_sbig *r, const tio_big *a, int neg) {
    r->m = *a;
    r->neg = neg && a->n;
}

static inline void tio_sbig_from_u64(tio_sbig *r, uint64_t v, int neg) {
    tio_big_from_u64(&r->m, v);
    r->neg = neg && v;
}

/* r = a + b (r may alias a or b); 1 on overflow. */
static inline int tio_sbig_add(tio_sbig *r, const tio_sbig *a, const tio_sbig *b) {
    int an = a->neg, bn = b->neg;
    if (an == bn) {
        int e = tio_big_add(&r->m, &a->m, &b->m);
        r->neg = an && r->m.n;
        return e;
    }
    if (tio_big_cmp(&a->m, &b->m) >= 0) {
        tio_big_sub(&r->m, &a->m, &b->m);
        r->neg = an && r->m.n;
    } else {
        tio_big_sub(&r->m, &b->m, &a->m);
        r->neg = bn;
    }
    return 0;
}

static inline int tio_sbig_sub(tio_sbig *r, const tio_sbig *a, const tio_sbig *b) {
    tio_sbig nb = *b;
    nb.neg = !nb.neg && nb.m.n;
    return tio_sbig_add(r, a, &nb);
}

static inline int tio_sbig_mul(tio_sbig *r, const tio_sbig *a, const tio_sbig *b) {
    int neg = a->neg != b->neg;
    int e = tio_big_mul(&r->m, &a->m, &b->m);
    r->neg = neg && r->m.n;
    return e;
}

static inline int tio_sbig_cmp(const tio_sbig *a, const tio_sbig *b) {
    if (a->neg != b->neg) return a->neg ? -1 : 1;
    int c = tio_big_cmp(&a->m, &b->m);
    return a->neg ? -c : c;
}

/* Python's a // b (floor) for b > 0. */
static inline int tio_sbig_floordiv(tio_sbig *q, const tio_sbig *a, const tio_big *b) {
    tio_big qq, rr;
    int neg = a->neg;
    if (tio_big_divmod(&qq, &rr, &a->m, b) || (neg && rr.n && tio_big_add_u64(&qq, &qq, 1))) {
        tio_sbig_from_u64(q, 0, 0);
        return 1;
    }
    tio_sbig_set(q, &qq, neg);
    return 0;
}

/* ---------------------------------------------------------------- best cross-pool trade */

/* back = out_b(out_a(d)) and mid = out_a(d) for a u256 input d. */
static inline void tio_amm__round_trip(tio_u256 *mid, tio_u256 *back, const tio_u256 *d,
                                       const tio_u256 *xa, const tio_u256 *ya,
                                       const tio_u256 *xb, const tio_u256 *yb, uint32_t ga,
                                       uint32_t Da, uint32_t gb, uint32_t Db) {
    tio_amm_out_u256(mid, d, xa, ya, ga, Da);
    tio_amm_out_u256(back, mid, yb, xb, gb, Db);
}

/* Whether input d (a tio_big) earns more than *best_p; if so, *best_p becomes its profit.
 * An input of 2^256 or more never does: what comes back is below xb < 2^256. */
static inline int tio_amm__cross_better(const tio_big *d, tio_u256 *best_p, const tio_u256 *xa,
                                        const tio_u256 *ya, const tio_u256 *xb,
                                        const tio_u256 *yb, uint32_t ga, uint32_t Da,
                                        uint32_t gb, uint32_t Db) {
    tio_u256 dd, mid, back, need;
    if (tio_big_to_u256(&dd, d)) return 0;
    tio_amm__round_trip(&mid, &back, &dd, xa, ya, xb, yb, ga, Da, gb, Db);
    /* profit back - d > best_p  <=>  back > d + best_p (a sum past 2^256 exceeds any back) */
    if (tio_u256_add(&need, &dd, best_p)) return 0;
    if (tio_u256_cmp(&back, &need) <= 0) return 0;
    tio_u256_sub(best_p, &back, &dd);
    return 1;
}

static inline int tio_amm__cross_result(tio_amm_cross *res, const tio_u256 *d, int optimal,
                                        const tio_u256 *xa, const tio_u256 *ya,
                                        const tio_u256 *xb, const tio_u256 *yb, uint32_t ga,
                                        uint32_t Da, uint32_t gb, uint32_t Db) {
    res->amount_in = *d;
    tio_amm__round_trip(&res->amount_mid, &res->amount_out, d, xa, ya, xb, yb, ga, Da, gb, Db);
    tio_u256_sub(&res->gross_profit, &res->amount_out, d); /* > threshold >= 0 here */
    res->optimal = optimal;
    return TIO_AMM_OK;
}

/* The input that maximizes the exact profit of X -> Y on pool a (xa, ya; fee ga/Da), then
 * Y -> X on pool b (yb, xb; fee gb/Db): tallyio.amm_reference.best_cross_pool, step for step.
 *
 * Floorless, the round trip is f(d) = A d / (B + C d) with A = ga gb ya xb, B = Da Db xa yb,
 * C = ga Db yb + ga gb ya; the profit f(d) - d peaks at (sqrt(AB) - B) / C and is positive only if
 * A > B. Every input that beats the best seen, t, lies between the roots of a quadratic; the
 * interval is scanned whole when it holds at most max_scan integers (optimal = 1), else
 * TIO_AMM_WINDOW points either side of the closed-form optimum. When a unit of Y is worth more
 * than a unit of X (ya < xa) the scan runs over the amounts y of Y bought, each at its smallest
 * input ceil(Da xa y / (ga (ya - y))). Ties go to the smallest input.
 * TIO_AMM_OK with *res when some input's gross profit exceeds threshold, TIO_AMM_NONE when none
 * does, TIO_AMM_ZERO_RESERVE / TIO_AMM_BAD_FEE for bad input. */
static inline int tio_amm_best_cross_pool(tio_amm_cross *res, const tio_u256 *xa,
                                          const tio_u256 *ya, const tio_u256 *xb,
                                          const tio_u256 *yb, const tio_u256 *threshold,
                                          uint64_t max_scan, uint32_t fee_num_a,
                                          uint32_t fee_den_a, uint32_t fee_num_b,
                                          uint32_t fee_den_b) {
    const uint32_t ga = fee_num_a, Da = fee_den_a, gb = fee_num_b, Db = fee_den_b;
    if (!tio_amm_fee_ok(ga, Da) || !tio_amm_fee_ok(gb, Db)) return TIO_AMM_BAD_FEE;
    if (tio_u256_is_zero(xa) || tio_u256_is_zero(ya) || tio_u256_is_zero(xb) ||
        tio_u256_is_zero(yb))
        return TIO_AMM_ZERO_RESERVE;
    tio_big XA, YA, XB, YB, A, B, C, c, w, T;
    int e = 0;
    tio_big_from_u256(&XA, xa);
    tio_big_from_u256(&YA, ya);
    tio_big_from_u256(&XB, xb);
    tio_big_from_u256(&YB, yb);
    e |= tio_big_mul(&A, &YA, &XB);
    e |= tio_big_mul_u64(&A, &A, (uint64_t)ga * gb);
    e |= tio_big_mul(&B, &XA, &YB);
    e |= tio_big_mul_u64(&B, &B, (uint64_t)Da * Db);
    if (e) return TIO_AMM_OVERFLOW;
    if (tio_big_cmp(&A, &B) <= 0) return TIO_AMM_NONE;
    e |= tio_big_mul_u64(&C, &YB, (uint64_t)ga * Db);
    e |= tio_big_mul_u64(&w, &YA, (uint64_t)ga * gb);
    e |= tio_big_add(&C, &C, &w);
    /* c = max(1, (isqrt(A B) - B) // C); A > B makes isqrt(A B) >= B */
    e |= tio_big_mul(&w, &A, &B);
    if (e) return TIO_AMM_OVERFLOW;
    tio_big_isqrt(&w, &w);
    tio_big_sub(&w, &w, &B);
    tio_big_divmod(&c, NULL, &w, &C);
    if (c.n == 0) tio_big_from_u64(&c, 1);

    /* Seed t with the closed-form optimum (c, c + 1): it narrows the interval. */
    tio_u256 t = *threshold, best_d;
    int have = 0;
    for (int k = 0; k < 2; k++) {
        tio_big d;
        if (tio_big_add_u64(&d, &c, (uint64_t)k)) return TIO_AMM_OVERFLOW;
        if (tio_amm__cross_better(&d, &t, xa, ya, xb, yb, ga, Da, gb, Db)) {
            tio_big_to_u256(&best_d, &d);
            have = 1;
        }
    }
    tio_big_from_u256(&T, &t);

    int by_input = tio_u256_cmp(ya, xa) >= 0;
    tio_sbig qa, qb, qc, s1, s2;
    tio_big centre;
    if (by_input) {
        /* P(d) > t  <=>  C d^2 + (B + C t - A) d + t B < 0 */
        tio_sbig_set(&qa, &C, 0);
        e |= tio_big_mul(&w, &C, &T);
        e |= tio_big_add(&w, &w, &B);
        tio_sbig_set(&s1, &w, 0);
        tio_sbig_set(&s2, &A, 0);
        e |= tio_sbig_sub(&qb, &s1, &s2);
        e |= tio_big_mul(&w, &T, &B);
        tio_sbig_set(&qc, &w, 0);
        centre = c;
    } else {
        /* Q(y) > t  <=>  a2 y^2 - b2 y + c2 < 0, both sides times (Db yb + gb y) ga (ya - y) */
        tio_big p, n;
        /* qa = ga gb xb + Da gb xa - t ga gb */
        e |= tio_big_mul_u64(&p, &XB, (uint64_t)ga * gb);
        e |= tio_big_mul_u64(&w, &XA, (uint64_t)Da * gb);
        e |= tio_big_add(&p, &p, &w);
        e |= tio_big_mul_u64(&n, &T, (uint64_t)ga * gb);
        tio_sbig_set(&s1, &p, 0);
        tio_sbig_set(&s2, &n, 0);
        e |= tio_sbig_sub(&qa, &s1, &s2);
        /* qb = Da Db xa yb + t ga gb ya - ga gb xb ya - t ga Db yb */
        e |= tio_big_mul(&p, &XA, &YB);
        e |= tio_big_mul_u64(&p, &p, (uint64_t)Da * Db);
        e |= tio_big_mul(&w, &T, &YA);
        e |= tio_big_mul_u64(&w, &w, (uint64_t)ga * gb);
        e |= tio_big_add(&p, &p, &w);
        e |= tio_big_mul(&n, &XB, &YA);
        e |= tio_big_mul_u64(&n, &n, (uint64_t)ga * gb);
        e |= tio_big_mul(&w, &T, &YB);
        e |= tio_big_mul_u64(&w, &w, (uint64_t)ga * Db);
        e |= tio_big_add(&n, &n, &w);
        tio_sbig_set(&s1, &p, 0);
        tio_sbig_set(&s2, &n, 0);
        e |= tio_sbig_sub(&qb, &s1, &s2);
        /* qc = t ga Db yb ya */
        e |= tio_big_mul(&w, &YB, &YA);
        e |= tio_big_mul(&w, &w, &T);
        e |= tio_big_mul_u64(&w, &w, (uint64_t)ga * Db);
        tio_sbig_set(&qc, &w, 0);
        e |= tio_amm_out_big(&centre, &c, &XA, &YA, ga, Da);
    }
    /* disc = qb^2 - 4 qa qc */
    tio_sbig disc;
    e |= tio_sbig_mul(&s1, &qb, &qb);
    e |= tio_sbig_mul(&s2, &qa, &qc);
    e |= tio_big_mul_u64(&s2.m, &s2.m, 4);
    e |= tio_sbig_sub(&disc, &s1, &s2);
    if (e) return TIO_AMM_OVERFLOW;
    if (qa.neg || qa.m.n == 0 || disc.neg || disc.m.n == 0) /* never above t: the seed is best */
        return have ? tio_amm__cross_result(res, &best_d, 1, xa, ya, xb, yb, ga, Da, gb, Db)
                    : TIO_AMM_NONE;
    /* lo = max(1, (-qb - r - 1) // (2 qa)), hi = (-qb + r + 1) // (2 qa) + 1: widened by one on
     * each side because isqrt floors */
    tio_big r, qa2;
    tio_sbig lo, hi, sr, one, nqb;
    tio_big_isqrt(&r, &disc.m);
    e |= tio_big_mul_u64(&qa2, &qa.m, 2);
    tio_sbig_set(&sr, &r, 0);
    e |= tio_big_add_u64(&sr.m, &sr.m, 1); /* r + 1 */
    nqb = qb;
    nqb.neg = !qb.neg && qb.m.n;
    e |= tio_sbig_sub(&s1, &nqb, &sr);
    e |= tio_sbig_floordiv(&lo, &s1, &qa2);
    tio_sbig_from_u64(&one, 1, 0);
    if (tio_sbig_cmp(&lo, &one) < 0) lo = one;
    e |= tio_sbig_add(&s1, &nqb, &sr);
    e |= tio_sbig_floordiv(&hi, &s1, &qa2);
    e |= tio_sbig_add(&hi, &hi, &one);
    /* optimal = hi - lo + 1 <= max_scan */
    e |= tio_sbig_sub(&s1, &hi, &lo);
    e |= tio_sbig_add(&s1, &s1, &one);
    tio_sbig_from_u64(&s2, max_scan, 0);
    int optimal = tio_sbig_cmp(&s1, &s2) <= 0;
    if (!optimal) {
        tio_sbig sc;
        tio_sbig_set(&sc, &centre, 0);
        tio_sbig_from_u64(&s2, TIO_AMM_WINDOW, 0);
        e |= tio_sbig_sub(&s1, &sc, &s2);
        if (tio_sbig_cmp(&s1, &lo) > 0) lo = s1;
        tio_sbig_from_u64(&s2, TIO_AMM_WINDOW + 1, 0);
        e |= tio_sbig_add(&s1, &sc, &s2);
        if (tio_sbig_cmp(&s1, &hi) < 0) hi = s1;
    }
    if (e) return TIO_AMM_OVERFLOW;

    /* Scan [lo, hi]; lo >= 1. Bounds past 2^256 - 1 hold no profitable input (what comes back
     * is below xb), so the loop runs over u256 values only. */
    tio_u256 best_p = *threshold, cur, end, one256;
    int found = 0;
    tio_u256_from_u64(&one256, 1);
    if (hi.neg || tio_sbig_cmp(&hi, &lo) < 0 || lo.m.n > 4) return TIO_AMM_NONE;
    tio_big_to_u256(&cur, &lo.m);
    if (by_input) {
        if (hi.m.n > 4) memset(end.w, 0xff, 32);
        else tio_big_to_u256(&end, &hi.m);
        for (;;) {
            tio_u256 mid, back, need;
            tio_amm__round_trip(&mid, &back, &cur, xa, ya, xb, yb, ga, Da, gb, Db);
            if (!tio_u256_add(&need, &cur, &best_p) && tio_u256_cmp(&back, &need) > 0) {
                tio_u256_sub(&best_p, &back, &cur);
                best_d = cur;
                found = 1;
            }
            if (tio_u256_cmp(&cur, &end) >= 0) break;
            tio_u256_add(&cur, &cur, &one256);
        }
    } else {
        tio_u256 yam1;
        tio_u256_sub(&yam1, ya, &one256);
        if (hi.m.n > 4) end = yam1;
        else {
            tio_big_to_u256(&end, &hi.m);
            if (tio_u256_cmp(&end, &yam1) > 0) end = yam1;
        }
        if (tio_u256_cmp(&cur, &end) > 0) return TIO_AMM_NONE;
        tio_big num_unit; /* Da xa: d_min(y) = ceil(Da xa y / (ga (ya - y))) */
        e |= tio_big_mul_u64(&num_unit, &XA, Da);
        for (;;) {
            tio_big Y, num, den, d;
            tio_u256 left;
            tio_big_from_u256(&Y, &cur);
            e |= tio_big_mul(&num, &num_unit, &Y);
            tio_u256_sub(&left, ya, &cur);
            tio_big_from_u256(&den, &left);
            e |= tio_big_mul_u64(&den, &den, ga);
            e |= tio_big_divceil(&d, &num, &den);
            if (e) return TIO_AMM_OVERFLOW;
            if (tio_amm__cross_better(&d, &best_p, xa, ya, xb, yb, ga, Da, gb, Db)) {
                tio_big_to_u256(&best_d, &d);
                found = 1;
            }
            if (tio_u256_cmp(&cur, &end) >= 0) break;
            tio_u256_add(&cur, &cur, &one256);
        }
    }
    if (!found) return TIO_AMM_NONE;
    return tio_amm__cross_result(res, &best_d, optimal, xa, ya, xb, yb, ga, Da, gb, Db);
}

/* ---------------------------------------------------------------- sandwich */

typedef struct {
    tio_big v, m, x, y;     /* victim input, max(victim_min_out, 1), reserves in and out */
    tio_u256 v4, m4, x4, y4; /* the same as words, for the fast path */
    uint32_t g, D;
} tio_amm__victim;

/* Whether the victim still gets >= m after a front-run `front`: 1 yes, 0 no, -1 overflow. */
static inline int tio_amm__survives(const tio_amm__victim *s, const tio_big *front) {
    tio_u256 f4, got4, x24, y24, out4;
    if (!tio_big_to_u256(&f4, front) && !tio_u256_add(&x24, &s->x4, &f4)) {
        /* the front-run and the reserve it makes fit 256 bits: all in words */
        tio_amm_out_u256(&got4, &f4, &s->x4, &s->y4, s->g, s->D);
        tio_u256_sub(&y24, &s->y4, &got4); /* got < y */
        tio_amm_out_u256(&out4, &s->v4, &x24, &y24, s->g, s->D);
        return tio_u256_cmp(&out4, &s->m4) >= 0; /* m >= 1, so out > 0 too */
    }
    tio_big got, x2, y2, out;
    if (tio_amm_out_big(&got, front, &s->x, &s->y, s->g, s->D)) return -1;
    if (tio_big_add(&x2, &s->x, front)) return -1;
    tio_big_sub(&y2, &s->y, &got); /* got < y */
    if (tio_amm_out_big(&out, &s->v, &x2, &y2, s->g, s->D)) return -1;
    return tio_big_cmp(&out, &s->m) >= 0; /* m >= 1, so out > 0 too */
}

/* The largest front-run the victim survives, as tio_big: TIO_AMM_OK, TIO_AMM_NONE (it fails
 * without one) or TIO_AMM_OVERFLOW (an intermediate past TIO_BIG_LIMBS: not for u256 inputs). */
static inline int tio_amm__max_frontrun_big(tio_big *res, const tio_amm__victim *s) {
    if (s->v.n == 0) return TIO_AMM_NONE;
    tio_big zero, lo, hi, step, t;
    tio_big_zero(&zero);
    int ok = tio_amm__survives(s, &zero);
    if (ok < 0) return TIO_AMM_OVERFLOW;
    if (!ok) return TIO_AMM_NONE;
    /* Floorless: g v y x D >= m (D x + g f)(D x + D f + g v), a quadratic in f whose positive root
     * starts an exact gallop-and-bisect. qc = pos - neg. */
    const uint32_t g = s->g, D = s->D;
    tio_big qa, qb, pos, neg, dx, dxgv, w, disc;
    int e = 0;
    e |= tio_big_mul_u64(&qa, &s->m, (uint64_t)D * g);
    e |= tio_big_mul_u64(&dx, &s->x, D);
    e |= tio_big_mul_u64(&w, &s->v, g);
    e |= tio_big_add(&dxgv, &dx, &w);          /* D x + g v */
    e |= tio_big_mul_u64(&qb, &dxgv, g);       /* g (D x + g v) */
    e |= tio_big_mul_u64(&w, &dx, D);          /* D D x */
    e |= tio_big_add(&qb, &qb, &w);
    e |= tio_big_mul(&qb, &qb, &s->m);
    e |= tio_big_mul(&pos, &s->m, &dx);
    e |= tio_big_mul(&pos, &pos, &dxgv);       /* m D x (D x + g v) */
    e |= tio_big_mul(&neg, &s->v, &s->y);
    e |= tio_big_mul(&neg, &neg, &s->x);
    e |= tio_big_mul_u64(&neg, &neg, (uint64_t)g * D); /* g v y x D */
    /* disc = qb^2 - 4 qa (pos - neg) = (qb^2 + 4 qa neg) - 4 qa pos */
    e |= tio_big_mul(&disc, &qb, &qb);
    e |= tio_big_mul(&w, &qa, &neg);
    e |= tio_big_mul_u64(&w, &w, 4);
    e |= tio_big_add(&disc, &disc, &w);
    e |= tio_big_mul(&w, &qa, &pos);
    e |= tio_big_mul_u64(&w, &w, 4);
    if (e) return TIO_AMM_OVERFLOW;
    tio_big guess;
    tio_big_zero(&guess);
    if (tio_big_cmp(&disc, &w) >= 0) {
        /* guess = max(0, (isqrt(disc) - qb) // (2 qa)) */
        tio_big_sub(&disc, &disc, &w);
        tio_big_isqrt(&w, &disc);
        if (tio_big_cmp(&w, &qb) > 0) {
            tio_big_sub(&w, &w, &qb);
            e |= tio_big_mul_u64(&t, &qa, 2);
            tio_big_divmod(&guess, NULL, &w, &t);
        }
    }
    if (e) return TIO_AMM_OVERFLOW;
    ok = tio_amm__survives(s, &guess);
    if (ok < 0) return TIO_AMM_OVERFLOW;
    tio_big_from_u64(&step, 1);
    if (ok) { /* gallop up from a survivor */
        lo = guess;
        for (;;) {
            if (tio_big_add(&t, &lo, &step)) return TIO_AMM_OVERFLOW;
            ok = tio_amm__survives(s, &t);
            if (ok < 0) return TIO_AMM_OVERFLOW;
            if (!ok) break;
            lo = t;
            if (tio_big_add(&step, &step, &step)) return TIO_AMM_OVERFLOW;
        }
        tio_big_add(&hi, &lo, &step);
    } else { /* gallop down from a failure; 0 survives */
        hi = guess;
        for (;;) {
            if (tio_big_sub(&t, &hi, &step)) tio_big_zero(&t); /* max(0, hi - step) */
            ok = tio_amm__survives(s, &t);
            if (ok < 0) return TIO_AMM_OVERFLOW;
            if (ok) break;
            hi = t;
            if (tio_big_add(&step, &step, &step)) return TIO_AMM_OVERFLOW;
        }
        if (tio_big_sub(&lo, &hi, &step)) tio_big_zero(&lo);
    }
    for (;;) { /* lo survives, hi does not */
        tio_big_sub(&t, &hi, &lo);
        if (tio_big_cmp_u64(&t, 1) <= 0) break;
        tio_big_add(&t, &lo, &hi);
        tio_big_shr1(&t, &t);
        ok = tio_amm__survives(s, &t);
        if (ok < 0) return TIO_AMM_OVERFLOW;
        if (ok) lo = t;
        else hi = t;
    }
    *res = lo;
    return TIO_AMM_OK;
}

static inline int tio_amm__victim_init(tio_amm__victim *s, const tio_u256 *victim_in,
                                       const tio_u256 *victim_min_out,
                                       const tio_u256 *reserve_in, const tio_u256 *reserve_out,
                                       uint32_t fee_num, uint32_t fee_den) {
    if (!tio_amm_fee_ok(fee_num, fee_den)) return TIO_AMM_BAD_FEE;
    if (tio_u256_is_zero(reserve_in) || tio_u256_is_zero(reserve_out))
        return TIO_AMM_ZERO_RESERVE;
    tio_big_from_u256(&s->v, victim_in);
    tio_big_from_u256(&s->m, victim_min_out);
    if (s->m.n == 0) tio_big_from_u64(&s->m, 1);
    tio_big_from_u256(&s->x, reserve_in);
    tio_big_from_u256(&s->y, reserve_out);
    s->v4 = *victim_in;
    tio_big_to_u256(&s->m4, &s->m);
    s->x4 = *reserve_in;
    s->y4 = *reserve_out;
    s->g = fee_num;
    s->D = fee_den;
    return TIO_AMM_OK;
}

/* The largest front-run (same direction as the victim) after which the victim's swap still pays
 * at least max(victim_min_out, 1): tallyio.amm_reference.max_frontrun. TIO_AMM_OK with *front
 * (possibly 0), TIO_AMM_NONE when the victim fails even without one (or victim_in is 0),
 * TIO_AMM_OVERFLOW when the answer needs more than 256 bits (deep reserves and a huge victim
 * allow a front-run up to ~2^384). */
static inline int tio_amm_max_frontrun(tio_u256 *front, const tio_u256 *victim_in,
                                       const tio_u256 *victim_min_out,
                                       const tio_u256 *reserve_in, const tio_u256 *reserve_out,
                                       uint32_t fee_num, uint32_t fee_den) {
    tio_amm__victim s;
    tio_big f;
    int rc = tio_amm__victim_init(&s, victim_in, victim_min_out, reserve_in, reserve_out,
                                  fee_num, fee_den);
    if (rc) return rc;
    rc = tio_amm__max_frontrun_big(&f, &s);
    if (rc) return rc;
    return tio_big_to_u256(front, &f) ? TIO_AMM_OVERFLOW : TIO_AMM_OK;
}

/* Buy with `front`, let the victim swap, sell all: got (bought), v_out (the victim's), back. */
static inline int tio_amm__sandwich_legs(const tio_amm__victim *s, const tio_big *front,
                                         tio_big *got, tio_big *v_out, tio_big *back) {
    tio_big x2, y2, y3, x3;
    int e = tio_amm_out_big(got, front, &s->x, &s->y, s->g, s->D);
    e |= tio_big_add(&x2, &s->x, front);
    e |= tio_big_sub(&y2, &s->y, got);
    e |= tio_amm_out_big(v_out, &s->v, &x2, &y2, s->g, s->D);
    e |= tio_big_sub(&y3, &y2, v_out);
    e |= tio_big_add(&x3, &x2, &s->v); /* x + front + v: the victim's input is in the pool */
    e |= tio_amm_out_big(back, got, &y3, &x3, s->g, s->D);
    return e;
}

static inline int tio_amm__back(const tio_amm__victim *s, const tio_big *front, tio_big *back) {
    tio_big got, v_out;
    return tio_amm__sandwich_legs(s, front, &got, &v_out, back);
}

/* gross(a1) < gross(a2) for gross(a) = back(a) - a:  back1 + a2 < back2 + a1. */
static inline int tio_amm__gross_less(const tio_big *back1, const tio_big *a1,
                                      const tio_big *back2, const tio_big *a2, int *e) {
    tio_big l, r;
    *e |= tio_big_add(&l, back1, a2);
    *e |= tio_big_add(&r, back2, a1);
    return tio_big_cmp(&l, &r) < 0;
}

/* The front-run to use against a victim and what it earns before gas:
 * tallyio.amm_reference.best_sandwich, step for step. A victim too small to move the price past
 * both legs' fees (g^2 (x + v)(D x + g v) <= D^3 x^2) is dismissed at once. Otherwise the largest
 * front-run f the victim survives is the answer when the profit still rises there (a gain at
 * f + f/10 + 1, computed as if the victim had no bound); else an integer ternary search over
 * [1, f] and TIO_AMM_WINDOW points either side find the peak. TIO_AMM_OK with *res,
 * TIO_AMM_NONE, or TIO_AMM_OVERFLOW when front_in or back_out needs more than 256 bits. */
static inline int tio_amm_best_sandwich(tio_amm_sandwich *res, const tio_u256 *victim_in,
                                        const tio_u256 *victim_min_out,
                                        const tio_u256 *reserve_in, const tio_u256 *reserve_out,
                                        uint32_t fee_num, uint32_t fee_den) {
    tio_amm__victim s;
    int rc = tio_amm__victim_init(&s, victim_in, victim_min_out, reserve_in, reserve_out,
                                  fee_num, fee_den);
    if (rc) return rc;
    const uint32_t g = fee_num, D = fee_den;
    tio_big l, r, w;
    int e = 0;
    /* g^2 (x + v)(D x + g v) <= D^3 x^2: no profit at any front-run */
    e |= tio_big_add(&l, &s.x, &s.v);
    e |= tio_big_mul_u64(&l, &l, (uint64_t)g * g);
    e |= tio_big_mul_u64(&w, &s.x, D);
    e |= tio_big_mul_u64(&r, &s.v, g);
    e |= tio_big_add(&w, &w, &r);
    e |= tio_big_mul(&l, &l, &w);
    e |= tio_big_mul(&r, &s.x, &s.x);
    e |= tio_big_mul_u64(&r, &r, (uint64_t)D * D);
    e |= tio_big_mul_u64(&r, &r, D);
    if (e) return TIO_AMM_OVERFLOW;
    if (tio_big_cmp(&l, &r) <= 0) return TIO_AMM_NONE;
    tio_big f;
    rc = tio_amm__max_frontrun_big(&f, &s);
    if (rc) return rc;
    if (f.n == 0) return TIO_AMM_NONE;

    tio_big best, a, back_f, back_a;
    int bound;
    /* probe = f + f // 10 + 1 */
    tio_big_divmod(&w, NULL, &f, &(tio_big){1, {10}});
    e |= tio_big_add(&a, &f, &w);
    e |= tio_big_add_u64(&a, &a, 1);
    e |= tio_amm__back(&s, &f, &back_f);
    e |= tio_amm__back(&s, &a, &back_a);
    if (e) return TIO_AMM_OVERFLOW;
    if (tio_amm__gross_less(&back_f, &f, &back_a, &a, &e)) {
        best = f;
        bound = TIO_AMM_BOUND_SLIPPAGE;
    } else {
        tio_big lo, hi, m1, m2, b1, b2, third;
        tio_big_from_u64(&lo, 1);
        hi = f;
        for (;;) {
            tio_big_sub(&w, &hi, &lo); /* lo <= hi + 1 throughout; hi - lo > 2 on entry */
            if (tio_big_cmp(&hi, &lo) < 0 || tio_big_cmp_u64(&w, 2) <= 0) break;
            tio_big_divmod(&third, NULL, &w, &(tio_big){1, {3}});
            e |= tio_big_add(&m1, &lo, &third);
            tio_big_sub(&m2, &hi, &third);
            e |= tio_amm__back(&s, &m1, &b1);
            e |= tio_amm__back(&s, &m2, &b2);
            if (e) return TIO_AMM_OVERFLOW;
            if (tio_amm__gross_less(&b1, &m1, &b2, &m2, &e)) tio_big_add_u64(&lo, &m1, 1);
            else tio_big_sub_u64(&hi, &m2, 1);
        }
        /* scan max(1, lo - W) .. min(f, hi + W); the first maximum wins */
        tio_big end, bb;
        int have = 0;
        if (tio_big_cmp_u64(&lo, TIO_AMM_WINDOW + 1) > 0) tio_big_sub_u64(&a, &lo, TIO_AMM_WINDOW);
        else tio_big_from_u64(&a, 1);
        e |= tio_big_add_u64(&end, &hi, TIO_AMM_WINDOW);
        if (tio_big_cmp(&end, &f) > 0) end = f;
        tio_big_zero(&best);
        while (tio_big_cmp(&a, &end) <= 0) {
            e |= tio_amm__back(&s, &a, &b1);
            if (e) return TIO_AMM_OVERFLOW;
            if (!have || tio_amm__gross_less(&bb, &best, &b1, &a, &e)) {
                best = a;
                bb = b1;
                have = 1;
            }
            e |= tio_big_add_u64(&a, &a, 1);
        }
        bound = TIO_AMM_BOUND_PROFIT;
    }
    tio_big got, v_out, back;
    e |= tio_amm__sandwich_legs(&s, &best, &got, &v_out, &back);
    if (e) return TIO_AMM_OVERFLOW;
    if (tio_big_to_u256(&res->front_in, &best) || tio_big_to_u256(&res->front_out, &got) ||
        tio_big_to_u256(&res->victim_out, &v_out) || tio_big_to_u256(&res->back_out, &back))
        return TIO_AMM_OVERFLOW;
    if (tio_u256_sub(&res->gross_profit, &res->back_out, &res->front_in))
        tio_u256_from_u64(&res->gross_profit, 0);
    res->bound = bound;
    return TIO_AMM_OK;
}

/* ---- Balancer V1 weighted math ------------------------------------------------------------
 * BNum.sol / BMath.sol of balancer-labs/balancer-core (the BPool's own calcOutGivenIn and
 * calcInGivenOut), ported operation for operation in u256 with 18-decimal fixed point (BONE):
 * bmul and bdiv round half up, bpow splits the exponent into an integer power (square and
 * multiply) and a fractional part summed as a binomial series until a term falls below
 * BPOW_PRECISION. Every require of the Solidity code (overflow, underflow, a zero divisor, a bpow
 * base outside [1, 2*BONE - 1]) returns TIO_AMM_BMATH_REVERT, where the pool reverts. The series
 * is capped at TIO_BAL_MAX_TERMS terms (it converges in a few dozen for every valid base; the
 * chain bounds it by gas) so no input spins. */
enum { TIO_AMM_BMATH_REVERT = 7 };
#define TIO_BAL_BONE 1000000000000000000ULL
#define TIO_BAL_BPOW_PRECISION 100000000ULL /* BONE / 10**10 */
#define TIO_BAL_MAX_TERMS 10000

static inline int tio_bal_bmul(tio_u256 *r, const tio_u256 *a, const tio_u256 *b) {
    tio_u256 c0, c1, k;
    if (tio_u256_mul(&c0, a, b)) return 1;
    tio_u256_from_u64(&k, TIO_BAL_BONE / 2);
    if (tio_u256_add(&c1, &c0, &k)) return 1;
    tio_u256_from_u64(&k, TIO_BAL_BONE);
    return tio_u256_divmod(r, NULL, &c1, &k);
}

static inline int tio_bal_bdiv(tio_u256 *r, const tio_u256 *a, const tio_u256 *b) {
    tio_u256 c0, c1, half, bone;
    if (tio_u256_is_zero(b)) return 1;
    tio_u256_from_u64(&bone, TIO_BAL_BONE);
    if (tio_u256_mul(&c0, a, &bone)) return 1;
    tio_u256_shr(&half, b, 1);
    if (tio_u256_add(&c1, &c0, &half)) return 1;
    return tio_u256_divmod(r, NULL, &c1, b);
}

/* r = |a - b|; returns 1 when b > a (bsubSign's flag). */
static inline int tio_bal_bsub_sign(tio_u256 *r, const tio_u256 *a, const tio_u256 *b) {
    if (tio_u256_cmp(a, b) >= 0) { tio_u256_sub(r, a, b); return 0; }
    tio_u256_sub(r, b, a);
    return 1;
}

/* bpowi: a ** n in fixed point, n an integer (square and multiply from the low bit). */
static inline int tio_bal_bpowi(tio_u256 *r, tio_u256 a, tio_u256 n) {
    tio_u256 z;
    if (n.w[0] & 1) z = a; else tio_u256_from_u64(&z, TIO_BAL_BONE);
    for (tio_u256_shr(&n, &n, 1); !tio_u256_is_zero(&n); tio_u256_shr(&n, &n, 1)) {
        if (tio_bal_bmul(&a, &a, &a)) return 1;
        if ((n.w[0] & 1) && tio_bal_bmul(&z, &z, &a)) return 1;
    }
    *r = z;
    return 0;
}

static inline int tio_bal_bpow_approx(tio_u256 *r, const tio_u256 *base, const tio_u256 *exp) {
    tio_u256 bone, x, term, sum, big_k, km1, c, t, precision;
    tio_u256_from_u64(&bone, TIO_BAL_BONE);
    tio_u256_from_u64(&precision, TIO_BAL_BPOW_PRECISION);
    int xneg = tio_bal_bsub_sign(&x, base, &bone), negative = 0;
    term = bone;
    sum = term;
    for (uint64_t i = 1; tio_u256_cmp(&term, &precision) >= 0; i++) {
        if (i > TIO_BAL_MAX_TERMS) return 1;
        tio_u256 iu;
        tio_u256_from_u64(&iu, i);
        tio_u256_mul(&big_k, &iu, &bone); /* i <= 10000: fits */
        tio_u256_sub(&km1, &big_k, &bone);
        int cneg = tio_bal_bsub_sign(&c, exp, &km1);
        if (tio_bal_bmul(&t, &c, &x) || tio_bal_bmul(&term, &term, &t)) return 1;
        if (tio_bal_bdiv(&term, &term, &big_k)) return 1;
        if (tio_u256_is_zero(&term)) break;
        if (xneg) negative = !negative;
        if (cneg) negative = !negative;
        if (negative ? tio_u256_sub(&sum, &sum, &term) : tio_u256_add(&sum, &sum, &term)) return 1;
    }
    *r = sum;
    return 0;
}

static inline int tio_bal_bpow(tio_u256 *r, const tio_u256 *base, const tio_u256 *exp) {
    tio_u256 bone, max_base, n, remain, whole_pow, partial;
    tio_u256_from_u64(&bone, TIO_BAL_BONE);
    tio_u256_from_u64(&max_base, 2 * TIO_BAL_BONE - 1);
    if (tio_u256_is_zero(base) || tio_u256_cmp(base, &max_base) > 0) return 1;
    tio_u256_divmod(&n, &remain, exp, &bone); /* btoi(exp); exp - bfloor(exp) */
    if (tio_bal_bpowi(&whole_pow, *base, n)) return 1;
    if (tio_u256_is_zero(&remain)) { *r = whole_pow; return 0; }
    if (tio_bal_bpow_approx(&partial, base, &remain)) return 1;
    return tio_bal_bmul(r, &whole_pow, &partial);
}

/* BMath.calcOutGivenIn: the tokens out of a swapExactAmountIn, exact. */
static inline int tio_bal_out_given_in(tio_u256 *out, const tio_u256 *balance_in,
                                       const tio_u256 *weight_in, const tio_u256 *balance_out,
                                       const tio_u256 *weight_out, const tio_u256 *amount_in,
                                       const tio_u256 *swap_fee) {
    tio_u256 bone, ratio, adjusted, y, t, foo, bar;
    tio_u256_from_u64(&bone, TIO_BAL_BONE);
    if (tio_bal_bdiv(&ratio, weight_in, weight_out)) return TIO_AMM_BMATH_REVERT;
    if (tio_u256_sub(&adjusted, &bone, swap_fee)) return TIO_AMM_BMATH_REVERT;
    if (tio_bal_bmul(&adjusted, amount_in, &adjusted)) return TIO_AMM_BMATH_REVERT;
    if (tio_u256_add(&t, balance_in, &adjusted)) return TIO_AMM_BMATH_REVERT;
    if (tio_bal_bdiv(&y, balance_in, &t)) return TIO_AMM_BMATH_REVERT;
    if (tio_bal_bpow(&foo, &y, &ratio)) return TIO_AMM_BMATH_REVERT;
    if (tio_u256_sub(&bar, &bone, &foo)) return TIO_AMM_BMATH_REVERT;
    if (tio_bal_bmul(out, balance_out, &bar)) return TIO_AMM_BMATH_REVERT;
    return TIO_AMM_OK;
}

/* BMath.calcInGivenOut: the tokens in that a swapExactAmountOut takes, exact. */
static inline int tio_bal_in_given_out(tio_u256 *in, const tio_u256 *balance_in,
                                       const tio_u256 *weight_in, const tio_u256 *balance_out,
                                       const tio_u256 *weight_out, const tio_u256 *amount_out,
                                       const tio_u256 *swap_fee) {
    tio_u256 bone, ratio, diff, y, foo, t, keep;
    tio_u256_from_u64(&bone, TIO_BAL_BONE);
    if (tio_bal_bdiv(&ratio, weight_out, weight_in)) return TIO_AMM_BMATH_REVERT;
    if (tio_u256_sub(&diff, balance_out, amount_out)) return TIO_AMM_BMATH_REVERT;
    if (tio_bal_bdiv(&y, balance_out, &diff)) return TIO_AMM_BMATH_REVERT;
    if (tio_bal_bpow(&foo, &y, &ratio)) return TIO_AMM_BMATH_REVERT;
    if (tio_u256_sub(&foo, &foo, &bone)) return TIO_AMM_BMATH_REVERT;
    if (tio_u256_sub(&keep, &bone, swap_fee)) return TIO_AMM_BMATH_REVERT;
    if (tio_bal_bmul(&t, balance_in, &foo)) return TIO_AMM_BMATH_REVERT;
    if (tio_bal_bdiv(in, &t, &keep)) return TIO_AMM_BMATH_REVERT;
    return TIO_AMM_OK;
}
