"""Cross-pool AMM arbitrage over pending swaps (the compiled screen over the engine's pool book);
mined swaps go to the cyclic-arbitrage inspector."""
from __future__ import annotations

from typing import Any

import numpy as np

from tallyio.amm import ArbitrageScreen
from tallyio.book import BookStrategy, int_option
from tallyio.grouping import CompleteGroups
from tallyio.opportunity import Opportunity
from tallyio.record import address_hex, take_rows, u256_column_to_ints

MAX_SWAPS_PER_TX = 64

_AMOUNTS = ("amount_in", "amount_mid", "amount_out", "gross_profit", "gas_cost")


class ArbitrageProcessor(BookStrategy):
    """Cross-pool arbitrage detector (a TallyIO Processor named ``"arbitrage"``).

    Reads the engine's pool book (``on_book``), else keeps its own from ``pools`` (a
    ``tallyio.synthetic.Market``, a pools-table mapping, or a path to an .npz holding one) or the
    feed's table, applied each batch. After each pending Uniswap V2 swap is applied (exact
    ``getAmountOut``; a swap below its ``amount_out_min`` reverts and changes nothing),
    ``tallyio.amm.ArbitrageScreen`` looks, in C, for the most profitable arbitrage between that
    pool and the other pools of its token pair: sell the profit token on the pool where it is
    dear, sell what it buys on the one where it is cheap. Reported when the profit net of gas
    exceeds ``min_profit``.

    Gas: one back-run transaction of ``gas_units`` at the triggering swap's gas price, in the
    profit token (WETH when the pair holds it, else priced through ``prices``; see
    ``tallyio.pricing.PriceTable``). Each price gap is reported once, after the swap that opens
    it, and not again until a swap brings the pair back inside the fee band (``repeats`` counts
    what that holds back).

    Rows without ``FLAG_PENDING`` (mined swaps) go, one complete transaction at a time, to
    ``tallyio_arbitrage.cycles.find_cyclic_arbitrages``; they do not change the pending state.
    Every row lands in exactly one of the ``stats()`` counters ``applied`` .. ``mined``.
    """

    name = "arbitrage"
    OPTIONS = ("pools", "gas_units", "min_profit", "max_scan", "weth", "prices")
    GROUP = ("block", "tx_index")  # cyclic arbitrages are found one transaction at a time
    STATS = ("candidates", "repeats", "oversized_tx")
    SCREEN_STATS = ("candidates", "unpriced", "repeats")

    def __init__(self, pools: Any = None, *, gas_units: int = 200_000, min_profit: int = 0,
                 max_scan: int = 1024, weth: Any = None, prices: Any = None):
        self.max_scan = int_option("max_scan", max_scan, 1)
        super().__init__(pools, gas_units=gas_units, min_profit=min_profit, weth=weth,
                         prices=prices)

    def _make_screen(self, book, prices):
        return ArbitrageScreen(book, prices, gas_units=self.gas_units, min_profit=self.min_profit,
                               max_scan=self.max_scan)

    # -- pending swaps ----------------------------------------------------------------------------
    def _opportunities(self, batch, found):
        book, units = self.book, self.gas_units
        amounts = {k: u256_column_to_ints(found[k]) for k in _AMOUNTS}
        rows = found["row"]
        ids, gas_prices = batch["id"][rows].tolist(), batch["gas_price"][rows].tolist()
        out = []
        for n, (a, b, t0, optimal) in enumerate(zip(found["pool_a"].tolist(),
                                                    found["pool_b"].tolist(),
                                                    found["profit_token0"].tolist(),
                                                    found["optimal"].tolist())):
            token, mid = (book.token0(a), book.token1(a)) if t0 else (book.token1(a), book.token0(a))
            gross, gas = amounts["gross_profit"][n], amounts["gas_cost"][n]
            out.append(Opportunity(
                strategy=self.name, kind="arbitrage", profit=gross - gas,
                profit_token=address_hex(token), tx_ids=(ids[n],),
                pools=(address_hex(book.address(a)), address_hex(book.address(b))),
                details={"amount_in": amounts["amount_in"][n],
                         "amount_mid": amounts["amount_mid"][n],
                         "amount_out": amounts["amount_out"][n], "token_mid": address_hex(mid),
                         "gross_profit": gross, "gas_cost": gas, "gas_price": gas_prices[n],
                         "gas_units": units, "net_of_gas": True, "optimal": bool(optimal)}))
        return out

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
