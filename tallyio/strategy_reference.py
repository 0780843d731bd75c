"""The example strategies as they were before the compiled pool book: pure Python, one pool book
per processor, applied swap by swap. Kept verbatim (tallyio_arbitrage amm.py, strategy.py and
processor.py and tallyio_sandwich processor.py as of commit a01a7d2) as the reference the
compiled book, the screens and the thin processors are tested against, and as the strategies of
the KPI's plain-Python peers. The math is ``tallyio.amm_reference`` and the prices
``tallyio.pricing`` (the same code these modules held, moved there).
"""
from __future__ import annotations

import os
from typing import Any, Mapping

import numpy as np

from tallyio import StateCache
from tallyio.amm_reference import FEE_DEN, FEE_NUM, _out, best_cross_pool, best_sandwich
from tallyio.grouping import CompleteGroups
from tallyio.opportunity import Opportunity
from tallyio.pricing import price_table
from tallyio.record import (FLAG_PENDING, PROTOCOL_UNISWAP_V2, TX_DTYPE, address_hex,
                            address_key, take_rows, u256_column_to_ints)

__all__ = ["ArbitrageProcessor", "PoolBook", "PoolStrategy", "SandwichProcessor", "load_table"]

POOL_KEYS = ("pool_address", "pool_token0", "pool_token1", "pool_reserve0", "pool_reserve1")
_ADDRESS_KEYS = ("pool_address", "pool_token0", "pool_token1")
EMPTY_TABLE = {k: np.zeros((0, 20), dtype=np.uint8) for k in _ADDRESS_KEYS}
EMPTY_TABLE.update({k: np.zeros((0, 4), dtype=np.uint64) for k in ("pool_reserve0", "pool_reserve1")})

# every row lands in exactly one of the first six; the rest count work and findings
BASE_STATS = ("rows", "applied", "reverted", "unknown_pool", "not_v2", "token_mismatch", "mined",
              "unpriced", "opportunities", "skipped")


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


# ---- processor.py ----
# A zero-gas arbitrage between two pools opens once their prices differ by the round-trip fee,
# ratio outside [g^2, 1/g^2]. The float pre-filter widens that band by 1e-9 (floats of the
# reserves are within 2**-52 of them), so it never drops a pair the exact test would keep.
_G2 = (FEE_NUM / FEE_DEN) ** 2
_LO = _G2 * (1 + 1e-9)
_HI = (1 / _G2) * (1 - 1e-9)

MAX_SWAPS_PER_TX = 64


class ArbitrageProcessor(PoolStrategy):
    """Cross-pool arbitrage detector (a TallyIO Processor named ``"arbitrage"``).

    Keeps the reserves of the pools in ``pools`` (a ``tallyio.synthetic.Market``, a pools-table
    mapping, or a path to an .npz holding one). For each pending Uniswap V2 swap of a batch, in
    order: applies it to its pool (exact ``getAmountOut``; a swap whose output falls below its
    ``amount_out_min`` reverts and changes nothing), then looks for the most profitable
    arbitrage between that pool and the other pools of its token pair: sell the profit token on
    the pool where it is dear, sell what it buys on the one where it is cheap. Reports it when the
    profit net of gas exceeds ``min_profit``.

    Gas: one back-run transaction of ``gas_units`` at the triggering swap's gas price, in the
    profit token (WETH when the pair holds it, else priced through ``prices``; see ``PriceTable``).
    Each discrepancy is reported after the swap that opens it; the state models the pending swaps
    only, not the arbitrage itself, so a discrepancy no one closes is reported again after the
    next swap on that pair.

    Rows without ``FLAG_PENDING`` (mined swaps) go, one complete transaction at a time, to
    ``tallyio_arbitrage.cycles.find_cyclic_arbitrages``; they do not change the pending state.
    Every row lands in exactly one ``stats()`` counter.
    """

    name = "arbitrage"
    OPTIONS = ("pools", "gas_units", "min_profit", "max_scan", "weth", "prices")
    GROUP = ("block", "tx_index")  # cyclic arbitrages are found one transaction at a time
    STATS = ("candidates", "oversized_tx")

    def __init__(self, pools: Any = None, *, gas_units: int = 200_000, min_profit: int = 0,
                 max_scan: int = 1024, weth: Any = None, prices: Any = None):
        self.max_scan = int_option("max_scan", max_scan, 1)
        super().__init__(pools, gas_units=gas_units, min_profit=min_profit, weth=weth,
                         prices=prices)

    def _load(self, table):
        super()._load(table)
        # per pool: (profit token, whether it is token0), or None when the pair is not priced
        self._profit = []
        for i in range(len(self.book)):
            t = self.prices.profit_token(self.book.token0[i], self.book.token1[i])
            self._profit.append(None if t is None else (t, t == self.book.token0[i]))

    # -- pending swaps ----------------------------------------------------------------------------
    def _pending(self, batch, pending, search: bool = True):
        st, book = self._stats, self.book
        found = []
        apply, siblings, px = book.apply, book.siblings, book.px
        for i, z, amount_in, min_out, gas, tx_id in self._pending_swaps(batch, pending):
            if apply(i, z, amount_in, min_out) is None:
                st["reverted"] += 1
                continue
            st["applied"] += 1
            sib = siblings[i]
            if not sib or not search:
                continue
            pi = px[i]
            cands = [j for j in sib if not _LO < px[j] / pi < _HI]
            if cands:
                opp = self._best(i, cands, gas, tx_id)
                if opp is not None:
                    found.append(opp)
        st["opportunities"] += len(found)
        return found

    def _best(self, i: int, cands: list[int], gas_price: int, tx_id: int) -> Opportunity | None:
        st, book = self._stats, self.book
        st["candidates"] += len(cands)
        profit = self._profit[i]
        if profit is None:
            st["unpriced"] += 1
            return None
        token, is0 = profit
        gas = self.prices.gas_cost(token, self.gas_units * gas_price)
        threshold = gas + self.min_profit
        best, where = None, None
        for j in cands:
            for a, b in ((i, j), (j, i)):
                xa, ya = book.reserves(a, is0)
                xb, yb = book.reserves(b, is0)
                r = best_cross_pool(xa, ya, xb, yb, threshold, self.max_scan)
                if r is not None and (best is None or r.gross_profit > best.gross_profit):
                    best, where = r, (a, b)
        if best is None:
            return None
        a, b = where
        mid = book.token1[a] if is0 else book.token0[a]
        return Opportunity(
            strategy=self.name, kind="arbitrage", profit=best.gross_profit - gas,
            profit_token=address_hex(token), tx_ids=(tx_id,),
            pools=(address_hex(book.address[a]), address_hex(book.address[b])),
            details={"amount_in": best.amount_in, "amount_mid": best.amount_mid,
                     "amount_out": best.amount_out, "token_mid": address_hex(mid),
                     "gross_profit": best.gross_profit, "gas_cost": gas, "gas_price": gas_price,
                     "gas_units": self.gas_units, "net_of_gas": True, "optimal": best.optimal})

    # -- mined swaps ------------------------------------------------------------------------------
    def _inspect(self, ready: np.ndarray) -> list[Opportunity]:
        # Route search is cubic in a transaction's swaps: a transaction with more than
        # MAX_SWAPS_PER_TX of them (no real arbitrage has) is skipped and counted, so one
        # malformed or hostile transaction cannot stall the engine thread.
        big = [(a, b) for a, b in CompleteGroups.groups(ready, self.GROUP) if b - a > MAX_SWAPS_PER_TX]
        if big:
            self._stats["oversized_tx"] += len(big)
            keep = np.ones(len(ready), dtype=bool)
            for a, b in big:
                keep[a:b] = False
            ready = take_rows(ready, keep)
        from tallyio_arbitrage.cycles import find_cyclic_arbitrages  # another author's module
        return list(find_cyclic_arbitrages(ready))


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
