from typing import Sequence

import numpy as np
import numpy.typing as npt

from tallyio.amm_reference import CrossPool, Sandwich

FEE: tuple[int, int]
WINDOW: int
OK: int
NONE: int
ZERO_INPUT: int
ZERO_RESERVE: int
OVERFLOW: int
INSUFFICIENT_LIQUIDITY: int
BAD_FEE: int

# Amounts are Python ints in [0, 2**256) (tio_u256 in C); fees (num, den) with 0 < num < den < 2**32.
def get_amount_out(amount_in: int, reserve_in: int, reserve_out: int,
                   fee: tuple[int, int] = ...) -> int: ...
def get_amount_in(amount_out: int, reserve_in: int, reserve_out: int,
                  fee: tuple[int, int] = ...) -> int: ...
def price_cmp(reserve0_a: int, reserve1_a: int, reserve0_b: int, reserve1_b: int) -> int: ...
def best_cross_pool(xa: int, ya: int, xb: int, yb: int, threshold: int = 0, max_scan: int = 1024,
                    fee_a: tuple[int, int] = ..., fee_b: tuple[int, int] = ...) -> CrossPool | None: ...
def max_frontrun(victim_in: int, victim_min_out: int, reserve_in: int, reserve_out: int,
                 fee: tuple[int, int] = ...) -> int | None: ...
def best_sandwich(victim_in: int, victim_min_out: int, reserve_in: int, reserve_out: int,
                  fee: tuple[int, int] = ...) -> Sandwich | None: ...
# (n, 4) uint64 u256 columns in; (out (n, 4) uint64, status uint8) back
def get_amount_out_many(amount_in: npt.ArrayLike, reserve_in: npt.ArrayLike,
                        reserve_out: npt.ArrayLike, fee_num: int | npt.ArrayLike = 997,
                        fee_den: int | npt.ArrayLike = 1000) -> tuple[np.ndarray, np.ndarray]: ...
def to_u256_column(values: Sequence[int]) -> np.ndarray: ...
def from_u256_column(column: npt.ArrayLike) -> list[int]: ...
BMATH_REVERT: int
# Balancer V1 BMath, exact: weights and fee 18-decimal fixed point (10**18 = 1)
def balancer_v1_out_given_in(balance_in: int, weight_in: int, balance_out: int, weight_out: int,
                             amount_in: int, swap_fee: int) -> int: ...
def balancer_v1_in_given_out(balance_in: int, weight_in: int, balance_out: int, weight_out: int,
                             amount_out: int, swap_fee: int) -> int: ...
