"""Sandwich opportunities in pending swaps; mined blocks go to the sandwich inspector."""
from __future__ import annotations

from typing import Any

import numpy as np

from tallyio.grouping import CompleteGroups
from tallyio.opportunity import Opportunity
from tallyio.record import address_hex
from tallyio_arbitrage.strategy import PoolStrategy

from tallyio_sandwich.amm import best_sandwich

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
