"""Exact Uniswap V2 arithmetic in u256, compiled: the AMM kernels every strategy shares.

``get_amount_out`` / ``get_amount_in`` (UniswapV2Library, with a per-pool fee ``(num, den)``,
997/1000 by default), ``price_cmp`` (exact price comparison of two pools), ``best_cross_pool``
(the optimal two-pool arbitrage input), ``max_frontrun`` and ``best_sandwich`` (the optimal
front-run under a victim's ``amount_out_min``), and ``get_amount_out_many`` (a batch of
``(n, 4)`` uint64 u256 columns, without the GIL), and Balancer V1's weighted math
(``balancer_v1_out_given_in`` / ``balancer_v1_in_given_out``: the pool's ``BMath``, exact). Results are exact and equal the pure-Python
reference in ``tallyio.amm_reference`` bit for bit; a result that needs more than 256 bits raises
``AmmOverflowError``, never wraps. Compiled modules call the same kernels through
``tallyio/_core/amm.pxd`` (``tio_amm_*``, ``nogil``).
"""
from tallyio._core.amm import (
    BAD_FEE,
    BMATH_REVERT,
    FEE,
    INSUFFICIENT_LIQUIDITY,
    NONE,
    OK,
    OVERFLOW,
    WINDOW,
    ZERO_INPUT,
    ZERO_RESERVE,
    balancer_v1_in_given_out,
    balancer_v1_out_given_in,
    best_cross_pool,
    best_sandwich,
    from_u256_column,
    get_amount_in,
    get_amount_out,
    get_amount_out_many,
    max_frontrun,
    price_cmp,
    to_u256_column,
)
from tallyio.amm_reference import CrossPool, Sandwich
from tallyio.errors import AmmOverflowError

# The engine's one pool book and the strategies' screens over it (tallyio/_core/book.pyx).
from tallyio._core.book import (  # noqa: E402
    ARBITRAGE_DTYPE,
    OUTCOME_DTYPE,
    SANDWICH_DTYPE,
    STATUS_APPLIED,
    STATUS_NAMES,
    STATUS_NOT_PENDING,
    STATUS_NOT_V2,
    STATUS_REVERTED_OVERFLOW,
    STATUS_REVERTED_SLIPPAGE,
    STATUS_REVERTED_ZERO,
    STATUS_TOKEN_MISMATCH,
    STATUS_UNKNOWN_POOL,
    ArbitrageScreen,
    PoolBook,
    SandwichScreen,
)

__all__ = [
    "AmmOverflowError",
    "BAD_FEE",
    "BMATH_REVERT",
    "CrossPool",
    "FEE",
    "INSUFFICIENT_LIQUIDITY",
    "NONE",
    "OK",
    "OVERFLOW",
    "Sandwich",
    "WINDOW",
    "ZERO_INPUT",
    "ZERO_RESERVE",
    "balancer_v1_in_given_out",
    "balancer_v1_out_given_in",
    "best_cross_pool",
    "best_sandwich",
    "from_u256_column",
    "get_amount_in",
    "get_amount_out",
    "get_amount_out_many",
    "max_frontrun",
    "price_cmp",
    "to_u256_column",
]

__all__ += [  # the pool book's names (H2)
    "ARBITRAGE_DTYPE", "OUTCOME_DTYPE", "SANDWICH_DTYPE", "STATUS_APPLIED", "STATUS_NAMES",
    "STATUS_NOT_PENDING", "STATUS_NOT_V2", "STATUS_REVERTED_OVERFLOW", "STATUS_REVERTED_SLIPPAGE",
    "STATUS_REVERTED_ZERO", "STATUS_TOKEN_MISMATCH", "STATUS_UNKNOWN_POOL", "ArbitrageScreen",
    "PoolBook", "SandwichScreen",
]
