"""Cross-pool AMM arbitrage over pending swaps; mined swaps go to the cyclic-arbitrage inspector."""
from __future__ import annotations

from typing import Any

import numpy as np

from tallyio.opportunity import Opportunity
from tallyio.grouping import CompleteGroups
from tallyio.record import FLAG_PENDING, TX_DTYPE, address_hex, take_rows, u256_column_to_ints

from tallyio_arbitrage.amm import (FEE_DEN, FEE_NUM, POOL_KEYS, PoolBook, best_cross_pool, load_table,
                                   price_table)

# A zero-gas arbitrage between two pools opens once their prices differ by the round-trip fee,
# ratio outside [g^2, 1/g^2]. The float pre-filter widens that band by 1e-9 (floats of the
# reserves are within 2**-52 of them), so it never drops a pair the exact test would keep.
_G2 = (FEE_NUM / FEE_DEN) ** 2
_LO = _G2 * (1 + 1e-9)
_HI = (1 / _G2) * (1 - 1e-9)

OPTIONS = ("pools", "gas_units", "min_profit", "max_scan", "weth", "prices")


def _int_option(name, value, minimum):
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return int(value)


MAX_SWAPS_PER_TX = 64


class ArbitrageProcessor:
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

    def __init__(self, pools: Any = None, *, gas_units: int = 200_000, min_profit: int = 0,
                 max_scan: int = 1024, weth: Any = None, prices: Any = None):
        self.gas_units = _int_option("gas_units", gas_units, 0)
        self.min_profit = _int_option("min_profit", min_profit, 0)
        self.max_scan = _int_option("max_scan", max_scan, 1)
        self._weth, self._price_options = weth, prices
        self._configured = pools is not None
        self._load(load_table(pools) if pools is not None else _EMPTY)
        self._mined = CompleteGroups(("block", "tx_index"))
        self._stats = dict.fromkeys(("rows", "applied", "reverted", "unknown_pool", "not_v2",
                                     "token_mismatch", "mined", "candidates", "unpriced",
                                     "opportunities", "oversized_tx", "skipped"), 0)

    def _load(self, table):
        self.book = PoolBook(table)
        self.prices = price_table(table, self._weth, self._price_options)
        # per pool: (profit token, whether it is token0), or None when the pair is not priced
        self._profit = []
        for i in range(len(self.book)):
            t = self.prices.profit_token(self.book.token0[i], self.book.token1[i])
            self._profit.append(None if t is None else (t, t == self.book.token0[i]))

    @classmethod
    def from_options(cls, **options) -> "ArbitrageProcessor":
        """Build from config options (``pools``, ``gas_units``, ``min_profit``, ``max_scan``,
        ``weth``, ``prices``); an unknown option raises ``TypeError`` naming it."""
        unknown = sorted(set(options) - set(OPTIONS))
        if unknown:
            raise TypeError(f"unknown option {unknown[0]!r} for processor 'arbitrage'; "
                            f"known: {', '.join(OPTIONS)}")
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
        st = self._stats
        st["rows"] += len(batch)
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
    def _pending(self, batch, pending, search: bool = True):
        st, book = self._stats, self.book
        swaps = book.pending_swaps(batch, pending, st)
        if swaps is None:
            return []
        rows, idx, zero_for_one = swaps
        amount_in = u256_column_to_ints(batch["amount_in"][rows])
        min_out = u256_column_to_ints(batch["amount_out_min"][rows])
        pools = idx[rows].tolist()
        z41 = zero_for_one[rows].tolist()
        gas = batch["gas_price"][rows].tolist()
        ids = batch["id"][rows].tolist()
        found = []
        apply, siblings, px = book.apply, book.siblings, book.px
        for k in range(len(rows)):
            i = pools[k]
            if apply(i, z41[k], amount_in[k], min_out[k]) is None:
                st["reverted"] += 1
                continue
            st["applied"] += 1
            sib = siblings[i]
            if not sib or not search:
                continue
            pi = px[i]
            cands = [j for j in sib if not _LO < px[j] / pi < _HI]
            if cands:
                opp = self._best(i, cands, gas[k], ids[k])
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
    def _route_mined(self, rows: np.ndarray | None, final: bool) -> list[Opportunity]:
        if rows is not None:
            self._stats["mined"] += len(rows)
        # a transaction may continue in the next batch: only complete ones are inspected
        ready = self._mined.flush() if final else self._mined.add(rows)
        if not len(ready):
            return []
        # Route search is cubic in a transaction's swaps: a transaction with more than
        # MAX_SWAPS_PER_TX of them (no real arbitrage has) is skipped and counted, so one
        # malformed or hostile transaction cannot stall the engine thread.
        groups = CompleteGroups.groups(ready, ("block", "tx_index"))
        big = [(a, b) for a, b in groups if b - a > MAX_SWAPS_PER_TX]
        if big:
            self._stats["oversized_tx"] += len(big)
            keep = np.ones(len(ready), dtype=bool)
            for a, b in big:
                keep[a:b] = False
            ready = take_rows(ready, keep)
        from tallyio_arbitrage.cycles import find_cyclic_arbitrages  # another author's module
        found = list(find_cyclic_arbitrages(ready))
        self._stats["opportunities"] += len(found)
        return found


_EMPTY = {k: np.zeros((0, 20) if k in ("pool_address", "pool_token0", "pool_token1") else (0, 4),
                      dtype=np.uint8 if k in ("pool_address", "pool_token0", "pool_token1") else np.uint64)
          for k in ("pool_address", "pool_token0", "pool_token1", "pool_reserve0", "pool_reserve1")}
