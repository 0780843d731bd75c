"""What the example strategies share: their options, a pool book kept current from pending swaps,
the Processor protocol's plumbing, and mined rows held until a whole group can be inspected."""
from __future__ import annotations

from typing import Any

import numpy as np

from tallyio.grouping import CompleteGroups
from tallyio.opportunity import Opportunity
from tallyio.record import FLAG_PENDING, TX_DTYPE, take_rows, u256_column_to_ints

from tallyio_arbitrage.amm import POOL_KEYS, PoolBook, load_table, price_table

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
