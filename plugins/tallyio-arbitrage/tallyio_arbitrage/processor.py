"""Cross-pool AMM arbitrage over pending swaps; mined swaps go to the cyclic-arbitrage inspector."""
from __future__ import annotations

from typing import Any

import numpy as np

from tallyio.grouping import CompleteGroups
from tallyio.opportunity import Opportunity
from tallyio.record import address_hex, take_rows

from tallyio_arbitrage.amm import FEE_DEN, FEE_NUM, best_cross_pool
from tallyio_arbitrage.strategy import PoolStrategy, int_option

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
