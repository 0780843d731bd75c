"""Exact Uniswap V2 arithmetic, pool state and profit-token pricing shared by the AMM strategies.

Amounts are Python ints end to end: reserves of 18-decimal tokens pass 2**64, and the
strategies report exact profits, so floats appear only in pre-filters that can never drop a
candidate (see ``PoolBook.px``).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from fractions import Fraction
from math import isqrt
from typing import Any, Mapping

import numpy as np

from tallyio import StateCache

from tallyio.record import PROTOCOL_UNISWAP_V2, address_bytes, address_hex, address_key, u256_column_to_ints

FEE_NUM = 997  # Uniswap V2 keeps 0.3% of every input
FEE_DEN = 1000
# Scan width either side of the closed-form optimum when the proof interval is too wide to scan.
WINDOW = 16


def get_amount_out(amount_in: int, reserve_in: int, reserve_out: int) -> int:
    """``UniswapV2Library.getAmountOut``: ``in*997*R_out // (R_in*1000 + in*997)``.

    Raises ``ValueError`` where the library reverts (a non-positive input or reserve).
    """
    if amount_in <= 0:
        raise ValueError(f"amount_in must be positive, got {amount_in}")
    if reserve_in <= 0 or reserve_out <= 0:
        raise ValueError(f"reserves must be positive, got {reserve_in}, {reserve_out}")
    a = amount_in * FEE_NUM
    return a * reserve_out // (reserve_in * FEE_DEN + a)


def _out(a: int, rin: int, rout: int) -> int:
    # get_amount_out without the checks, for inner loops whose inputs are known good (0 -> 0)
    a *= FEE_NUM
    return a * rout // (rin * FEE_DEN + a)


@dataclass(frozen=True)
class CrossPool:
    """The best trade X -> Y on pool A, Y -> X on pool B: input, the Y in between, X back."""

    amount_in: int
    amount_mid: int
    amount_out: int
    gross_profit: int
    optimal: bool  # True: proven the maximum over every integer input


def cross_profit(d: int, xa: int, ya: int, xb: int, yb: int) -> int:
    """Exact gross profit of selling ``d`` X on A and the Y it buys on B."""
    return _out(_out(d, xa, ya), yb, xb) - d


def best_cross_pool(xa: int, ya: int, xb: int, yb: int, threshold: int = 0,
                    max_scan: int = 1024) -> CrossPool | None:
    """The input that maximizes the exact profit of X -> Y on A (``xa, ya``), Y -> X on B.

    None unless some input's gross profit exceeds ``threshold`` (gas plus minimum profit).

    Without floors the round trip is ``f(d) = A d / (B + C d)`` with ``A = g^2 ya xb``,
    ``B = D^2 xa yb``, ``C = g D yb + g^2 ya`` (``g/D = 997/1000``), so ``P(d) = f(d) - d`` peaks at
    ``d* = (sqrt(AB) - B) / C`` and is positive only if ``A > B``. The floors only lower the
    profit, so every input that beats the best seen so far, ``t``, lies where the floorless
    profit exceeds ``t``: an interval between the roots of a quadratic.

    The search runs over the unit that is worth more (finer steps of the other cannot help):
    inputs ``d`` when a unit of Y is worth at most a unit of X (``ya >= xa``), else the amounts
    ``y`` of Y bought, each at its smallest input ``d_min(y) = ceil(D xa y / (g (ya - y)))``, with
    profit ``Q(y) = g y xb / (D yb + g y) - D xa y / (g (ya - y))`` before floors. When the interval
    holds at most ``max_scan`` integers it is scanned whole and the result is the exact maximum
    (``optimal``); otherwise (deep pools: the width grows like the square root of the reserves)
    ``WINDOW`` points either side of the optimum are scanned, within 2 units of the maximum
    (one floor or ceiling per leg, each worth less than one unit). Ties go to the smallest input.
    """
    g, D = FEE_NUM, FEE_DEN
    g2, d2 = g * g, D * D
    A = g2 * ya * xb
    B = d2 * xa * yb
    if A <= B:
        return None
    C = g * D * yb + g2 * ya
    c = max(1, (isqrt(A * B) - B) // C)
    best_d, t = 0, threshold
    for d in (c, c + 1):  # seed t with the closed-form optimum: it narrows the interval
        p = cross_profit(d, xa, ya, xb, yb)
        if p > t:
            best_d, t = d, p
    if ya >= xa:
        # P(d) > t  <=>  C d^2 + (B + C t - A) d + t B < 0
        qa, qb, qc = C, B + C * t - A, t * B
        centre = c
    else:
        # Q(y) > t  <=>  a2 y^2 - b2 y + c2 < 0 (both sides times (D yb + g y) g (ya - y) > 0)
        qa = g2 * xb + D * g * xa - t * g2
        qb = -(g2 * xb * ya - d2 * xa * yb + t * g * D * yb - t * g2 * ya)
        qc = t * g * D * yb * ya
        centre = _out(c, xa, ya)
    disc = qb * qb - 4 * qa * qc
    if qa <= 0 or disc <= 0:  # the floorless profit never exceeds t: the seed (if any) is best
        return _result(best_d, xa, ya, xb, yb, True) if best_d else None
    r = isqrt(disc)
    lo = max(1, (-qb - r - 1) // (2 * qa))  # widened by one on each side: isqrt floors
    hi = (-qb + r + 1) // (2 * qa) + 1
    optimal = hi - lo + 1 <= max_scan
    if not optimal:
        lo, hi = max(lo, centre - WINDOW), min(hi, centre + 1 + WINDOW)
    best_d, best_p = 0, threshold
    if ya >= xa:
        for d in range(lo, hi + 1):
            p = _out(_out(d, xa, ya), yb, xb) - d
            if p > best_p:
                best_d, best_p = d, p
    else:
        hi = min(hi, ya - 1)
        num, den = D * xa, g
        for y in range(lo, hi + 1):
            d = -(-num * y // (den * (ya - y)))  # d_min(y), exact
            p = _out(_out(d, xa, ya), yb, xb) - d
            if p > best_p:
                best_d, best_p = d, p
    return _result(best_d, xa, ya, xb, yb, optimal) if best_d else None


def _result(d, xa, ya, xb, yb, optimal):
    mid = _out(d, xa, ya)
    back = _out(mid, yb, xb)
    return CrossPool(d, mid, back, back - d, optimal)


class PriceTable:
    """What a token is worth in WETH-wei, to charge gas (paid in ETH) against a profit in it.

    The profit token of a pair is WETH when the pair holds it, else the pair's token0 (lower
    address) if priced, else token1 if priced; a pair with neither priced is not traded.
    ``prices`` map a 20-byte token to a ``Fraction`` of WETH-wei per smallest unit.
    """

    def __init__(self, weth: bytes | None, prices: Mapping[bytes, Fraction] | None = None):
        self.weth = weth
        self.prices = dict(prices or {})
        if weth is not None:
            self.prices[weth] = Fraction(1)

    def profit_token(self, token0: bytes, token1: bytes) -> bytes | None:
        if self.weth in (token0, token1):
            return self.weth
        for t in (token0, token1):
            if t in self.prices:
                return t
        return None

    def gas_cost(self, token: bytes, gas_wei: int) -> int:
        """Gas in ``token``'s smallest unit, rounded up (a cost is never understated)."""
        p = self.prices[token]
        return -(-(gas_wei * p.denominator) // p.numerator)


def parse_price(token: Any, value: Any) -> Fraction:
    """A price option value: an int, a ``Fraction``, or a ``"num/den"`` string, positive."""
    try:
        if isinstance(value, bool) or isinstance(value, float):
            raise TypeError
        p = Fraction(value)
    except (TypeError, ValueError, ZeroDivisionError):
        raise ValueError(f"prices[{token!r}] must be a positive int, Fraction or 'num/den' string, "
                         f"got {value!r}") from None
    if p <= 0:
        raise ValueError(f"prices[{token!r}] must be positive, got {value!r}")
    return p


POOL_KEYS = ("pool_address", "pool_token0", "pool_token1", "pool_reserve0", "pool_reserve1")


def load_table(pools: Any) -> Mapping[str, np.ndarray]:
    """The pools table from a ``Market``-like object (``to_arrays()``), a mapping, or an .npz path."""
    if hasattr(pools, "to_arrays"):
        return pools.to_arrays()
    if isinstance(pools, (str, os.PathLike)):
        if not os.path.isfile(pools):
            raise ValueError(f"pools must name an existing .npz file, got {str(pools)!r}")
        with np.load(pools, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    if isinstance(pools, Mapping):
        return pools
    raise TypeError(f"pools must be a Market, a mapping of arrays or a path to an .npz, got {pools!r}")


class PoolBook:
    """Reserves of known Uniswap V2 pools, grouped by token pair, updated swap by swap.

    ``siblings[i]``: the other pools of pool ``i``'s pair. ``px[i]``: ``reserve1 / reserve0`` as a
    float, for pre-filters. Rows find their pool by the 64-bit ``pool_key`` (vectorized
    ``lookup``); a key that two known pools share is refused at construction.
    """

    def __init__(self, table: Mapping[str, np.ndarray]):
        missing = [k for k in POOL_KEYS if k not in table]
        if missing:
            raise ValueError(f"pools table lacks {', '.join(missing)}")

        def addrs(key):
            a = np.asarray(table[key])
            if a.dtype != np.uint8 or a.ndim != 2 or a.shape[1] != 20:
                raise ValueError(f"pools table {key} must be (n, 20) uint8, got {a.dtype} {a.shape}")
            return a

        address = addrs("pool_address")
        t0, t1 = addrs("pool_token0"), addrs("pool_token1")
        n = len(address)
        r0 = u256_column_to_ints(table["pool_reserve0"])
        r1 = u256_column_to_ints(table["pool_reserve1"])
        if not (len(t0) == len(t1) == len(r0) == len(r1) == n):
            raise ValueError("pools table columns differ in length")
        self.address = [bytes(a) for a in address]
        self.token0 = [bytes(a) for a in t0]
        self.token1 = [bytes(a) for a in t1]
        self.reserve0, self.reserve1 = r0, r1
        for i in range(n):
            if r0[i] <= 0 or r1[i] <= 0:
                raise ValueError(f"pool {address_hex(self.address[i])} has a non-positive reserve")
            if self.token0[i] == self.token1[i]:
                raise ValueError(f"pool {address_hex(self.address[i])} has token0 == token1")
        self.address_rows = np.ascontiguousarray(address)
        keys = np.array([address_key(a) for a in self.address], dtype=np.uint64)
        if n > 1 and len(np.unique(keys)) < n:
            raise ValueError("two pools in the table share a 64-bit pool key")
        # key -> pool index in TallyIO's compiled state cache: one GIL-free hashed lookup per
        # batch instead of a Python dict probe per row
        self._index = StateCache(max(n, 1), value_dtype="int64")
        if n:
            self._index.put_many(keys, np.arange(n, dtype=np.int64))
        self.token0_key = np.array([address_key(a) for a in self.token0], dtype=np.uint64)
        self.token1_key = np.array([address_key(a) for a in self.token1], dtype=np.uint64)
        groups: dict[tuple[bytes, bytes], list[int]] = {}
        for i in range(n):
            groups.setdefault(tuple(sorted((self.token0[i], self.token1[i]))), []).append(i)
        self.siblings = [[j for j in groups[tuple(sorted((self.token0[i], self.token1[i])))] if j != i]
                         for i in range(n)]
        self.px = [r1[i] / r0[i] for i in range(n)]  # int/int true division rounds correctly

    def __len__(self) -> int:
        return len(self.address)

    def lookup(self, pool_keys: np.ndarray) -> np.ndarray:
        """Pool index of each key, -1 where unknown (vectorized)."""
        values, found = self._index.get_many(np.asarray(pool_keys, dtype=np.uint64))
        return np.where(found, values, -1).astype(np.intp)

    def pending_swaps(self, batch: np.ndarray, pending: np.ndarray, st: dict):
        """The pending V2 swaps of ``batch`` on pools of this book whose token_in is one of the
        pool's tokens: ``(rows, pool_index, zero_for_one)``, or None when there is none. Every
        pending row it leaves out is counted in ``st`` (``not_v2``, ``unknown_pool``,
        ``token_mismatch``)."""
        v2 = pending & (batch["protocol"] == PROTOCOL_UNISWAP_V2)
        st["not_v2"] += int(pending.sum()) - int(v2.sum())
        idx = self.lookup(batch["pool_key"])
        known = v2 & (idx >= 0)
        if known.any():  # a 64-bit key match must also be the same 20-byte address
            k = np.flatnonzero(known)
            same = (batch["pool"][k] == self.address_rows[idx[k]]).all(axis=1)
            known[k[~same]] = False
        st["unknown_pool"] += int(v2.sum()) - int(known.sum())
        if not known.any():  # nothing on a known pool (or no pool table at all)
            return None
        safe = np.where(idx >= 0, idx, 0)
        tin = batch["token_in_key"]
        zero_for_one = tin == self.token0_key[safe]
        good = known & (zero_for_one | (tin == self.token1_key[safe]))
        st["token_mismatch"] += int(known.sum()) - int(good.sum())
        rows = np.flatnonzero(good)
        return (rows, idx, zero_for_one) if len(rows) else None

    def reserves(self, i: int, zero_for_one: bool) -> tuple[int, int]:
        return (self.reserve0[i], self.reserve1[i]) if zero_for_one else (self.reserve1[i], self.reserve0[i])

    def apply(self, i: int, zero_for_one: bool, amount_in: int, amount_out_min: int) -> int | None:
        """Apply a swap selling token0 (``zero_for_one``) or token1; its output, or None when it
        would revert (zero input or output, or output below ``amount_out_min``: pool unchanged)."""
        r0, r1 = self.reserve0[i], self.reserve1[i]
        if amount_in <= 0:
            return None
        if zero_for_one:
            out = _out(amount_in, r0, r1)
            if out <= 0 or out < amount_out_min:
                return None
            r0, r1 = r0 + amount_in, r1 - out
        else:
            out = _out(amount_in, r1, r0)
            if out <= 0 or out < amount_out_min:
                return None
            r0, r1 = r0 - out, r1 + amount_in
        self.reserve0[i], self.reserve1[i] = r0, r1
        self.px[i] = r1 / r0
        return out


def price_table(table: Mapping[str, np.ndarray], weth: Any = None, prices: Any = None) -> PriceTable:
    """Prices from the table's ``token_*`` arrays (``token_address[0]`` is WETH), then options."""
    found: dict[bytes, Fraction] = {}
    w = None
    if "token_address" in table:
        toks = [bytes(a) for a in np.asarray(table["token_address"], dtype=np.uint8).reshape(-1, 20)]
        w = toks[0] if toks else None
        if "token_price_num" in table and "token_price_den" in table:
            for t, n, d in zip(toks, u256_column_to_ints(table["token_price_num"]),
                               u256_column_to_ints(table["token_price_den"])):
                if n > 0 and d > 0:
                    found[t] = Fraction(n, d)
    if weth is not None:
        try:
            w = address_bytes(weth)
        except (ValueError, TypeError):
            raise ValueError(f"weth must be a 20-byte address, got {weth!r}") from None
    if prices is not None:
        if not isinstance(prices, Mapping):
            raise ValueError(f"prices must be a mapping of token address to price, got {prices!r}")
        for tok, val in prices.items():
            try:
                key = address_bytes(tok)
            except (ValueError, TypeError):
                raise ValueError(f"prices key must be a 20-byte address, got {tok!r}") from None
            found[key] = parse_price(tok, val)
    return PriceTable(w, found)
