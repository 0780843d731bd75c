"""Today's pure-Python sandwich processor, kept verbatim as the reference the compiled book and
screen are tested against: ``tallyio_sandwich`` amm.py and processor.py as of commit a01a7d2, with
the pieces of ``tallyio_arbitrage`` (amm.py, strategy.py) they imported, in one module (imports
between them removed, unused functions left out; nothing else changed).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from fractions import Fraction
from math import isqrt
from typing import Any, Mapping

import numpy as np

from tallyio import StateCache
from tallyio.grouping import CompleteGroups
from tallyio.opportunity import Opportunity
from tallyio.record import (FLAG_PENDING, PROTOCOL_UNISWAP_V2, TX_DTYPE, address_bytes, address_hex,
                            address_key, take_rows, u256_column_to_ints)

FEE_NUM = 997  # Uniswap V2 keeps 0.3% of every input
FEE_DEN = 1000
# Scan width either side of the closed-form optimum when the proof interval is too wide to scan.
WINDOW = 16


def _out(a: int, rin: int, rout: int) -> int:
    # get_amount_out without the checks, for inner loops whose inputs are known good (0 -> 0)
    a *= FEE_NUM
    return a * rout // (rin * FEE_DEN + a)


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


# ---- tallyio_arbitrage/strategy.py ----
_ADDRESS_KEYS = ("pool_address", "pool_token0", "pool_token1")
EMPTY_TABLE = {k: np.zeros((0, 20), dtype=np.uint8) for k in _ADDRESS_KEYS}
EMPTY_TABLE.update({k: np.zeros((0, 4), dtype=np.uint64) for k in ("pool_reserve0", "pool_reserve1")})

# every row lands in exactly one of the first six; the rest count work and findings
BASE_STATS = ("rows", "applied", "reverted", "unknown_pool", "not_v2", "token_mismatch", "mined",
              "unpriced", "opportunities", "skipped")


def int_option(name: str, value: Any, minimum: int) -> int:
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return int(value)


class PoolStrategy:
    """Base of the example processors. Subclasses set ``name``, ``OPTIONS`` (the config options
    ``from_options`` accepts), ``GROUP`` (the columns identifying a group of mined rows to inspect
    together) and ``STATS`` (extra counters), and define ``_pending(batch, pending, search)`` and
    ``_inspect(ready)``."""

    name = ""
    OPTIONS: tuple[str, ...] = ()
    GROUP: tuple[str, ...] = ()
    STATS: tuple[str, ...] = ()

    def __init__(self, pools: Any, *, gas_units: int, min_profit: int, weth: Any, prices: Any):
        self.gas_units = int_option("gas_units", gas_units, 0)
        self.min_profit = int_option("min_profit", min_profit, 0)
        self._weth, self._price_options = weth, prices
        self._configured = pools is not None
        self._load(load_table(pools) if pools is not None else EMPTY_TABLE)
        self._mined = CompleteGroups(self.GROUP)
        self._stats = dict.fromkeys(BASE_STATS + self.STATS, 0)

    def _load(self, table):
        self.book = PoolBook(table)
        self.prices = price_table(table, self._weth, self._price_options)

    @classmethod
    def from_options(cls, **options):
        """Build from config options; an unknown option raises ``TypeError`` naming it."""
        unknown = sorted(set(options) - set(cls.OPTIONS))
        if unknown:
            raise TypeError(f"unknown option {unknown[0]!r} for processor {cls.name!r}; "
                            f"known: {', '.join(cls.OPTIONS)}")
        return cls(**options)

    def on_feed(self, metadata: dict) -> None:
        """Take the pools table a feed ships with (``pool_*``/``token_*`` arrays), unless the
        ``pools`` option already gave one; called by the engine before ingestion."""
        if not self._configured and all(k in metadata for k in POOL_KEYS):
            self._load(metadata)

    def stats(self) -> dict[str, int]:
        return dict(self._stats)

    # -- the Processor protocol -------------------------------------------------------------------
    def process(self, batch: np.ndarray) -> list[Opportunity]:
        if not isinstance(batch, np.ndarray) or batch.dtype != TX_DTYPE:
            raise TypeError(f"batch must be a numpy array of TX_DTYPE, got "
                            f"{getattr(batch, 'dtype', type(batch))}")
        self._stats["rows"] += len(batch)
        pending = (batch["flags"] & FLAG_PENDING) != 0
        found = self._pending(batch, pending) if pending.any() else []
        if not pending.all():
            found += self._route_mined(take_rows(batch, ~pending), final=False)
        return found

    def on_skipped(self, batch: np.ndarray) -> None:
        """The engine skipped this batch (the breaker is open): keep the pool state current so
        that later searches see the right reserves, but search nothing."""
        pending = (batch["flags"] & FLAG_PENDING) != 0
        self._stats["skipped"] += len(batch)
        if pending.any():
            self._pending(batch, pending, search=False)

    def flush(self) -> list[Opportunity]:
        return self._route_mined(None, final=True)

    # -- pending swaps ----------------------------------------------------------------------------
    def _pending_swaps(self, batch: np.ndarray, pending: np.ndarray):
        """``(pool, zero_for_one, amount_in, amount_out_min, gas_price, id)`` per usable pending
        swap, in order, with exact ints (every other pending row is counted)."""
        swaps = self.book.pending_swaps(batch, pending, self._stats)
        if swaps is None:
            return []
        rows, idx, zero_for_one = swaps
        return list(zip(idx[rows].tolist(), zero_for_one[rows].tolist(),
                        u256_column_to_ints(batch["amount_in"][rows]),
                        u256_column_to_ints(batch["amount_out_min"][rows]),
                        batch["gas_price"][rows].tolist(), batch["id"][rows].tolist()))

    # -- mined swaps ------------------------------------------------------------------------------
    def _route_mined(self, rows: np.ndarray | None, final: bool) -> list[Opportunity]:
        if rows is not None:
            self._stats["mined"] += len(rows)
        # a group may continue in the next batch: only complete ones are inspected
        ready = self._mined.flush() if final else self._mined.add(rows)
        if not len(ready):
            return []
        found = self._inspect(ready)
        self._stats["opportunities"] += len(found)
        return found


# ---- tallyio_sandwich/amm.py ----
def victim_survives(front: int, victim_in: int, victim_min_out: int, reserve_in: int,
                    reserve_out: int) -> bool:
    """Whether the victim's swap still pays at least ``max(victim_min_out, 1)`` after a front-run."""
    got = _out(front, reserve_in, reserve_out)
    out = _out(victim_in, reserve_in + front, reserve_out - got)
    return out > 0 and out >= victim_min_out


def max_frontrun(victim_in: int, victim_min_out: int, reserve_in: int, reserve_out: int) -> int | None:
    """The largest front-run (same direction as the victim) its swap survives; None if it fails
    without one.

    The victim's output only falls as the front-run grows, so the answer is a threshold. The
    floorless condition ``g v y x D >= m (D x + g f)(D x + D f + g v)`` is a quadratic in ``f``
    whose root starts an exact gallop-and-bisect, a few steps instead of ~2 log2(reserve).
    """
    v, m, x, y = victim_in, max(victim_min_out, 1), reserve_in, reserve_out
    if v <= 0 or not victim_survives(0, v, m, x, y):
        return None
    g, D = FEE_NUM, FEE_DEN
    qa = m * D * g
    qb = m * (g * (D * x + g * v) + D * D * x)
    qc = m * D * x * (D * x + g * v) - g * v * y * x * D
    disc = qb * qb - 4 * qa * qc
    guess = max(0, (-qb + isqrt(disc)) // (2 * qa)) if disc >= 0 else 0
    if victim_survives(guess, v, m, x, y):
        lo, step = guess, 1
        while victim_survives(lo + step, v, m, x, y):
            lo, step = lo + step, step * 2
        hi = lo + step
    else:
        hi, step = guess, 1
        while not victim_survives(max(0, hi - step), v, m, x, y):
            hi, step = max(0, hi - step), step * 2
        lo = max(0, hi - step)
    while hi - lo > 1:  # lo survives, hi does not
        mid = (lo + hi) // 2
        if victim_survives(mid, v, m, x, y):
            lo = mid
        else:
            hi = mid
    return lo


def sandwich_gross(front: int, victim_in: int, reserve_in: int, reserve_out: int) -> tuple[int, int, int]:
    """``(front_out, back_out, gross_profit)``: buy with ``front``, let the victim swap, sell all."""
    got = _out(front, reserve_in, reserve_out)
    x, y = reserve_in + front, reserve_out - got
    v_out = _out(victim_in, x, y)
    back = _out(got, y - v_out, x + victim_in)
    return got, back, back - front


@dataclass(frozen=True)
class Sandwich:
    front_in: int
    front_out: int
    victim_out: int
    back_out: int
    gross_profit: int
    bound: str  # "slippage": the largest front-run the victim allows; "profit": an interior peak


def best_sandwich(victim_in: int, victim_min_out: int, reserve_in: int, reserve_out: int) -> Sandwich | None:
    """The front-run to use against a victim, and what it earns before gas.

    Without rounding, the gross profit is unimodal in the front-run ``f``, and it rises from
    zero only if its slope there, ``g^2 (x + v)(x + g v) / x^2 - 1``, is positive: the victim must
    move the price by more than the two legs' fees (a property the tests check with exact
    fractions). A victim that small is dismissed at once: the common case, and O(1). Otherwise
    the profit is typically still rising where the victim's slippage stops the front-run: then the
    answer is that largest front-run; a gain at ``f + f/10 + 1`` (computed as if the victim had
    no bound) shows the rise reaches ``f``. With a slippage bound so loose that the peak comes
    first, an exact integer ternary search over ``[1, f]`` and a scan of ``WINDOW`` inputs either
    side of it find the peak (within rounding).
    """
    g_, D = FEE_NUM, FEE_DEN
    x, v = reserve_in, victim_in
    if g_ * g_ * (x + v) * (D * x + g_ * v) <= D * D * D * x * x:
        return None
    f = max_frontrun(victim_in, victim_min_out, reserve_in, reserve_out)
    if not f:
        return None

    def gross(a):
        return sandwich_gross(a, victim_in, reserve_in, reserve_out)[2]

    if gross(f + f // 10 + 1) > gross(f):
        best, bound = f, "slippage"
    else:
        lo, hi = 1, f
        while hi - lo > 2:
            m1, m2 = lo + (hi - lo) // 3, hi - (hi - lo) // 3
            if gross(m1) < gross(m2):
                lo = m1 + 1
            else:
                hi = m2 - 1
        best, bound, p = 0, "profit", None
        for a in range(max(1, lo - WINDOW), min(f, hi + WINDOW) + 1):
            g = gross(a)
            if p is None or g > p:
                best, p = a, g
    got, back, gp = sandwich_gross(best, victim_in, reserve_in, reserve_out)
    v_out = _out(victim_in, reserve_in + best, reserve_out - got)
    return Sandwich(best, got, v_out, back, gp, bound)


# ---- tallyio_sandwich/processor.py ----
class SandwichProcessor(PoolStrategy):
    """Sandwich-opportunity detector (a TallyIO Processor named ``"sandwich"``).

    Keeps the reserves of the pools in ``pools`` (a ``tallyio.synthetic.Market``, a pools-table
    mapping, or a path to an .npz holding one; else the table the feed ships, see ``on_feed``).
    For each pending Uniswap V2 swap of a batch, in order, before applying it: finds the largest
    front-run its ``amount_out_min`` survives, the back-run that sells what the front-run bought,
    and the exact profit (in the token the victim sells) net of gas; reports it above
    ``min_profit``. Then applies the swap (exact ``getAmountOut``; one that would fall below its
    ``amount_out_min`` reverts and changes nothing).

    Gas: two transactions of ``gas_units``; the front-run pays the victim's gas price + 1 wei, the
    back-run the victim's, converted to the profit token as ``tallyio_arbitrage.amm.PriceTable``
    does (a victim selling an unpriced token is counted in ``unpriced`` and skipped).

    Rows without ``FLAG_PENDING`` (mined swaps) are held until their block is complete (a row of
    a later block arrives, or ``flush()``), then each block goes to
    ``tallyio_sandwich.inspect.find_sandwiches``; they do not change the pending state.
    """

    name = "sandwich"
    OPTIONS = ("pools", "gas_units", "min_profit", "weth", "prices")
    GROUP = ("block",)  # sandwiches are found one block at a time

    def __init__(self, pools: Any = None, *, gas_units: int = 120_000, min_profit: int = 0,
                 weth: Any = None, prices: Any = None):
        super().__init__(pools, gas_units=gas_units, min_profit=min_profit, weth=weth,
                         prices=prices)

    def _pending(self, batch, pending, search: bool = True):
        st, book = self._stats, self.book
        prices, units, found = self.prices, self.gas_units, []
        for i, z, v, m, gas, tx_id in self._pending_swaps(batch, pending):
            token = book.token0[i] if z else book.token1[i]
            if search and token not in prices.prices:
                st["unpriced"] += 1
            elif search:
                rin, rout = book.reserves(i, z)
                s = best_sandwich(v, m, rin, rout)
                if s is not None:
                    cost = prices.gas_cost(token, units * (2 * gas + 1))
                    if s.gross_profit - cost > self.min_profit:
                        found.append(Opportunity(
                            strategy=self.name, kind="sandwich_opportunity",
                            profit=s.gross_profit - cost, profit_token=address_hex(token),
                            tx_ids=(tx_id,), pools=(address_hex(book.address[i]),),
                            details={"frontrun_in": s.front_in, "frontrun_out": s.front_out,
                                     "victim_in": v, "victim_out": s.victim_out,
                                     "victim_min_out": m, "backrun_out": s.back_out,
                                     "gross_profit": s.gross_profit, "gas_cost": cost,
                                     "gas_price": gas, "gas_units": units, "bound": s.bound,
                                     "net_of_gas": True}))
            if book.apply(i, z, v, m) is None:
                st["reverted"] += 1
            else:
                st["applied"] += 1
        st["opportunities"] += len(found)
        return found

    def _inspect(self, ready: np.ndarray) -> list[Opportunity]:
        from tallyio_sandwich.inspect import find_sandwiches  # another author's module
        found = []
        for a, b in CompleteGroups.groups(ready, self.GROUP):
            found += list(find_sandwiches(ready[a:b]))
        return found
