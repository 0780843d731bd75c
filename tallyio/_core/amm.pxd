from libc.stdint cimport uint32_t, uint64_t

# tallyio/_core/include/tallyio/u256.h and amm.h: exact u256 arithmetic and the Uniswap V2
# kernels. Compiled modules (the pool book) cimport these and call them without the GIL.
cdef extern from "tallyio/amm.h" nogil:
    ctypedef struct tio_u256:
        uint64_t w[4]          # little-endian words: the layout of TX_DTYPE's u256 columns
    ctypedef struct tio_u512:
        uint64_t w[8]

    int tio_u256_add(tio_u256 *r, const tio_u256 *a, const tio_u256 *b) noexcept nogil
    int tio_u256_sub(tio_u256 *r, const tio_u256 *a, const tio_u256 *b) noexcept nogil
    int tio_u256_mul(tio_u256 *r, const tio_u256 *a, const tio_u256 *b) noexcept nogil
    void tio_u256_mul_full(tio_u512 *r, const tio_u256 *a, const tio_u256 *b) noexcept nogil
    int tio_u256_cmp(const tio_u256 *a, const tio_u256 *b) noexcept nogil
    int tio_u256_divmod(tio_u256 *q, tio_u256 *rem, const tio_u256 *a,
                        const tio_u256 *b) noexcept nogil
    int tio_u512_divmod(tio_u256 *q, tio_u256 *rem, const tio_u512 *a,
                        const tio_u256 *b) noexcept nogil
    int tio_u256_is_zero(const tio_u256 *a) noexcept nogil
    void tio_u256_from_u64(tio_u256 *r, uint64_t v) noexcept nogil
    int tio_u256_bit_length(const tio_u256 *a) noexcept nogil
    int tio_u256_shl(tio_u256 *r, const tio_u256 *a, unsigned s) noexcept nogil
    void tio_u256_shr(tio_u256 *r, const tio_u256 *a, unsigned s) noexcept nogil

    enum:
        TIO_AMM_OK
        TIO_AMM_NONE
        TIO_AMM_ZERO_INPUT
        TIO_AMM_ZERO_RESERVE
        TIO_AMM_OVERFLOW
        TIO_AMM_INSUFFICIENT_LIQUIDITY
        TIO_AMM_BAD_FEE
        TIO_AMM_WINDOW
        TIO_AMM_BOUND_SLIPPAGE
        TIO_AMM_BOUND_PROFIT

    ctypedef struct tio_amm_cross:
        tio_u256 amount_in
        tio_u256 amount_mid
        tio_u256 amount_out
        tio_u256 gross_profit
        int optimal
    ctypedef struct tio_amm_sandwich:
        tio_u256 front_in
        tio_u256 front_out
        tio_u256 victim_out
        tio_u256 back_out
        tio_u256 gross_profit  # max(back_out - front_in, 0)
        int bound

    int tio_amm_fee_ok(uint32_t fee_num, uint32_t fee_den) noexcept nogil
    # getAmountOut without the checks (reserve_in > 0 and a valid fee are the caller's): for
    # loops over pools whose reserves and fees were validated once
    void tio_amm_out_u256(tio_u256 *out, const tio_u256 *amount_in, const tio_u256 *reserve_in,
                          const tio_u256 *reserve_out, uint32_t fee_num,
                          uint32_t fee_den) noexcept nogil
    int tio_amm_get_amount_out(tio_u256 *out, const tio_u256 *amount_in,
                               const tio_u256 *reserve_in, const tio_u256 *reserve_out,
                               uint32_t fee_num, uint32_t fee_den) noexcept nogil
    int tio_amm_get_amount_in(tio_u256 *amount_in, const tio_u256 *amount_out,
                              const tio_u256 *reserve_in, const tio_u256 *reserve_out,
                              uint32_t fee_num, uint32_t fee_den) noexcept nogil
    int tio_amm_price_cmp(int *cmp, const tio_u256 *reserve0_a, const tio_u256 *reserve1_a,
                          const tio_u256 *reserve0_b, const tio_u256 *reserve1_b) noexcept nogil
    int tio_amm_best_cross_pool(tio_amm_cross *res, const tio_u256 *xa, const tio_u256 *ya,
                                const tio_u256 *xb, const tio_u256 *yb,
                                const tio_u256 *threshold, uint64_t max_scan,
                                uint32_t fee_num_a, uint32_t fee_den_a,
                                uint32_t fee_num_b, uint32_t fee_den_b) noexcept nogil
    int tio_amm_max_frontrun(tio_u256 *front, const tio_u256 *victim_in,
                             const tio_u256 *victim_min_out, const tio_u256 *reserve_in,
                             const tio_u256 *reserve_out, uint32_t fee_num,
                             uint32_t fee_den) noexcept nogil
    int tio_amm_best_sandwich(tio_amm_sandwich *res, const tio_u256 *victim_in,
                              const tio_u256 *victim_min_out, const tio_u256 *reserve_in,
                              const tio_u256 *reserve_out, uint32_t fee_num,
                              uint32_t fee_den) noexcept nogil


# Python int <-> tio_u256 for compiled callers that hold the GIL. to_u256 raises ValueError naming
# `name` for a negative value or one >= 2**256, TypeError for a non-integer.
cdef int to_u256(object v, tio_u256 *r, str name) except -1
cdef object from_u256(const tio_u256 *a)


# Balancer V1 weighted math (BMath.calcOutGivenIn / calcInGivenOut), exact; TIO_AMM_BMATH_REVERT
# where the pool's own arithmetic reverts.
cdef extern from "tallyio/amm.h" nogil:
    enum:
        TIO_AMM_BMATH_REVERT
    int tio_bal_out_given_in(tio_u256 *out, const tio_u256 *balance_in, const tio_u256 *weight_in,
                             const tio_u256 *balance_out, const tio_u256 *weight_out,
                             const tio_u256 *amount_in, const tio_u256 *swap_fee) noexcept nogil
    int tio_bal_in_given_out(tio_u256 *amount_in, const tio_u256 *balance_in,
                             const tio_u256 *weight_in, const tio_u256 *balance_out,
                             const tio_u256 *weight_out, const tio_u256 *amount_out,
                             const tio_u256 *swap_fee) noexcept nogil
