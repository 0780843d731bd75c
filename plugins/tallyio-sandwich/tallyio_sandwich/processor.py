"""Sandwich opportunities in pending swaps; mined blocks go to the sandwich inspector."""
from __future__ import annotations

from typing import Any

import numpy as np

from tallyio.opportunity import Opportunity
from tallyio.grouping import CompleteGroups
from tallyio.record import FLAG_PENDING, TX_DTYPE, address_hex, take_rows, u256_column_to_ints
from tallyio_arbitrage.amm import POOL_KEYS, PoolBook, load_table, price_table

from tallyio_sandwich.amm import best_sandwich

OPTIONS = ("pools", "gas_units", "min_profit", "weth", "prices")


def _int_option(name, value, minimum):
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return int(value)


class SandwichProcessor:
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

    def __init__(self, pools: Any = None, *, gas_units: int = 120_000, min_profit: int = 0,
                 weth: Any = None, prices: Any = None):
        self.gas_units = _int_option("gas_units", gas_units, 0)
        self.min_profit = _int_option("min_profit", min_profit, 0)
        self._weth, self._price_options = weth, prices
        self._configured = pools is not None
        self._load(load_table(pools) if pools is not None else _EMPTY)
        self._mined = CompleteGroups(("block",))
        self._stats = dict.fromkeys(("rows", "applied", "reverted", "unknown_pool", "not_v2",
                                     "token_mismatch", "mined", "unpriced", "opportunities",
                                     "skipped"), 0)

    def _load(self, table):
        self.book = PoolBook(table)
        self.prices = price_table(table, self._weth, self._price_options)

    @classmethod
    def from_options(cls, **options) -> "SandwichProcessor":
        """Build from config options (``pools``, ``gas_units``, ``min_profit``, ``weth``,
        ``prices``); an unknown option raises ``TypeError`` naming it."""
        unknown = sorted(set(options) - set(OPTIONS))
        if unknown:
            raise TypeError(f"unknown option {unknown[0]!r} for processor 'sandwich'; "
                            f"known: {', '.join(OPTIONS)}")
        return cls(**options)

    def on_feed(self, metadata: dict) -> None:
        """Take the pools table a feed ships with, unless the ``pools`` option gave one."""
        if not self._configured and all(k in metadata for k in POOL_KEYS):
            self._load(metadata)

    def stats(self) -> dict[str, int]:
        return dict(self._stats)

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
        that later sizings see the right reserves, but search nothing."""
        pending = (batch["flags"] & FLAG_PENDING) != 0
        self._stats["skipped"] += len(batch)
        if pending.any():
            self._pending(batch, pending, search=False)

    def flush(self) -> list[Opportunity]:
        return self._route_mined(None, final=True)

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
        prices, units, found = self.prices, self.gas_units, []
        for k in range(len(rows)):
            i, z, v, m = pools[k], z41[k], amount_in[k], min_out[k]
            token = book.token0[i] if z else book.token1[i]
            if search and token not in prices.prices:
                st["unpriced"] += 1
            elif search:
                rin, rout = book.reserves(i, z)
                s = best_sandwich(v, m, rin, rout)
                if s is not None:
                    cost = prices.gas_cost(token, units * (2 * gas[k] + 1))
                    if s.gross_profit - cost > self.min_profit:
                        found.append(Opportunity(
                            strategy=self.name, kind="sandwich_opportunity",
                            profit=s.gross_profit - cost, profit_token=address_hex(token),
                            tx_ids=(ids[k],), pools=(address_hex(book.address[i]),),
                            details={"frontrun_in": s.front_in, "frontrun_out": s.front_out,
                                     "victim_in": v, "victim_out": s.victim_out,
                                     "victim_min_out": m, "backrun_out": s.back_out,
                                     "gross_profit": s.gross_profit, "gas_cost": cost,
                                     "gas_price": gas[k], "gas_units": units, "bound": s.bound,
                                     "net_of_gas": True}))
            if book.apply(i, z, v, m) is None:
                st["reverted"] += 1
            else:
                st["applied"] += 1
        st["opportunities"] += len(found)
        return found

    def _route_mined(self, rows: np.ndarray | None, final: bool) -> list[Opportunity]:
        if rows is not None:
            self._stats["mined"] += len(rows)
        # a block is inspected once complete: a row of a later block arrived, or the stream ended
        ready = self._mined.flush() if final else self._mined.add(rows)
        if not len(ready):
            return []
        from tallyio_sandwich.inspect import find_sandwiches  # another author's module
        found = []
        for a, b in CompleteGroups.groups(ready, ("block",)):
            found += list(find_sandwiches(ready[a:b]))
        self._stats["opportunities"] += len(found)
        return found


_EMPTY = {k: np.zeros((0, 20), dtype=np.uint8) for k in ("pool_address", "pool_token0", "pool_token1")}
_EMPTY.update({k: np.zeros((0, 4), dtype=np.uint64) for k in ("pool_reserve0", "pool_reserve1")})
