"""Sandwich opportunities in pending swaps (the compiled screen over the engine's pool book);
mined blocks go to the sandwich inspector."""
from __future__ import annotations

from typing import Any

import numpy as np

from tallyio.amm import SandwichScreen
from tallyio.book import BookStrategy
from tallyio.grouping import CompleteGroups
from tallyio.opportunity import Opportunity
from tallyio.record import address_hex, u256_column_to_ints

_AMOUNTS = ("front_in", "front_out", "victim_out", "back_out", "gross_profit", "gas_cost")
_BOUND = ("slippage", "profit")


class SandwichProcessor(BookStrategy):
    """Sandwich-opportunity detector (a TallyIO Processor named ``"sandwich"``).

    Reads the engine's pool book (``on_book``), else keeps its own from ``pools`` (a
    ``tallyio.synthetic.Market``, a pools-table mapping, or a path to an .npz holding one) or the
    feed's table (``on_feed``), applied each batch. Each pending Uniswap V2 swap is judged as a
    victim on its pool's reserves before it, by ``tallyio.amm.SandwichScreen`` in C: the largest
    front-run its ``amount_out_min`` survives, the back-run that sells what the front-run bought,
    and the exact profit (in the token the victim sells) net of gas; reported above
    ``min_profit``. The swap itself is applied by the book (exact ``getAmountOut``; one that would
    fall below its ``amount_out_min`` reverts and changes nothing).

    Gas: two transactions of ``gas_units``; the front-run pays the victim's gas price + 1 wei, the
    back-run the victim's, converted to the profit token as ``tallyio.pricing.PriceTable`` does
    (a victim selling an unpriced token is counted in ``unpriced`` and skipped).

    Rows without ``FLAG_PENDING`` (mined swaps) are held until their block is complete (a row of
    a later block arrives, or ``flush()``), then each block goes to
    ``tallyio_sandwich.inspect.find_sandwiches``; they do not change the pending state.
    """

    name = "sandwich"
    OPTIONS = ("pools", "gas_units", "min_profit", "weth", "prices")
    GROUP = ("block",)  # sandwiches are found one block at a time
    SCREEN_STATS = ("unpriced",)

    def __init__(self, pools: Any = None, *, gas_units: int = 120_000, min_profit: int = 0,
                 weth: Any = None, prices: Any = None):
        super().__init__(pools, gas_units=gas_units, min_profit=min_profit, weth=weth,
                         prices=prices)

    def _make_screen(self, book, prices):
        return SandwichScreen(book, prices, gas_units=self.gas_units, min_profit=self.min_profit)

    def _opportunities(self, batch, found):
        book, units = self.book, self.gas_units
        amounts = {k: u256_column_to_ints(found[k]) for k in _AMOUNTS}
        rows = found["row"]
        ids, gas_prices = batch["id"][rows].tolist(), batch["gas_price"][rows].tolist()
        victim_in = u256_column_to_ints(batch["amount_in"][rows])
        victim_min = u256_column_to_ints(batch["amount_out_min"][rows])
        out = []
        for n, (i, z, bound) in enumerate(zip(found["pool"].tolist(), found["zero_for_one"].tolist(),
                                              found["bound"].tolist())):
            token = book.token0(i) if z else book.token1(i)
            gross, cost = amounts["gross_profit"][n], amounts["gas_cost"][n]
            out.append(Opportunity(
                strategy=self.name, kind="sandwich_opportunity", profit=gross - cost,
                profit_token=address_hex(token), tx_ids=(ids[n],),
                pools=(address_hex(book.address(i)),),
                details={"frontrun_in": amounts["front_in"][n],
                         "frontrun_out": amounts["front_out"][n], "victim_in": victim_in[n],
                         "victim_out": amounts["victim_out"][n], "victim_min_out": victim_min[n],
                         "backrun_out": amounts["back_out"][n], "gross_profit": gross,
                         "gas_cost": cost, "gas_price": gas_prices[n], "gas_units": units,
                         "bound": _BOUND[bound], "net_of_gas": True}))
        return out

    def _inspect(self, ready: np.ndarray) -> list[Opportunity]:
        from tallyio_sandwich.inspect import find_sandwiches  # another author's module
        found = []
        for a, b in CompleteGroups.groups(ready, self.GROUP):
            found += list(find_sandwiches(ready[a:b]))
        return found
