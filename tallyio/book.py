"""Strategies on the engine's pool book: the plumbing the example strategies share.

The engine keeps one ``tallyio.amm.PoolBook`` per run and applies every drained batch to it before
the processors run; a processor that defines ``on_book(book)`` gets it once, at start, and reads
``book.outcome_for(batch)`` (what each row did to its pool) in ``process``. ``BookStrategy`` is
that protocol for strategies that search pending swaps with a compiled screen
(``tallyio.amm.ArbitrageScreen`` / ``SandwichScreen``) and inspect mined swaps a group at a time:

* **the book**: the engine's (``on_book``), else one of its own built from the ``pools`` option or
  the feed's pools table (``on_feed``), which it then applies each batch itself. An explicit
  ``pools`` option keeps the strategy on its own book even under an engine that has one (a
  different pool universe is a deliberate choice);
* **prices**: ``tallyio.pricing.price_table`` of the book's ``token_table`` and the ``weth`` /
  ``prices`` options;
* **counters**: every row lands in exactly one of ``applied``, ``reverted``, ``unknown_pool``,
  ``not_v2`` (a swap on no pool kind the book simulates: neither Uniswap V2 nor, when the book
  holds some, Balancer V1), ``token_mismatch`` and ``mined`` (``reverted_*`` split ``reverted``
  by reason);
* **mined rows** (no ``FLAG_PENDING``): held until their group (``GROUP`` columns) is complete,
  then handed to ``_inspect``.

A subclass sets ``name``, ``OPTIONS``, ``GROUP``, ``STATS``, ``SCREEN_STATS`` (counters of its
screen reported as its own) and defines ``_make_screen(book, prices)``, ``_opportunities(batch,
found)`` (Opportunities for the screen's rows) and ``_inspect(ready)``.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from tallyio._core.book import (POOL_KEYS, STATUS_APPLIED, STATUS_NAMES, STATUS_NOT_PENDING,
                                STATUS_NOT_V2, STATUS_REVERTED_OVERFLOW, STATUS_REVERTED_SLIPPAGE,
                                STATUS_REVERTED_ZERO, STATUS_TOKEN_MISMATCH, STATUS_UNKNOWN_POOL,
                                PoolBook, status_counts)
from tallyio.grouping import CompleteGroups
from tallyio.opportunity import Opportunity
from tallyio.pricing import price_table
from tallyio.record import FLAG_PENDING, TX_DTYPE, take_rows

__all__ = ["BASE_STATS", "BookStrategy", "empty_book", "int_option"]

# every row lands in exactly one of applied .. mined; the rest count work and findings
BASE_STATS = ("rows", "applied", "reverted", "unknown_pool", "not_v2", "token_mismatch", "mined",
              "reverted_slippage", "reverted_zero", "reverted_overflow", "unpriced",
              "opportunities", "skipped")

# status -> the counter it lands in (NOT_PENDING rows are counted as mined when routed)
_COUNTER = {STATUS_APPLIED: "applied", STATUS_REVERTED_SLIPPAGE: "reverted_slippage",
            STATUS_REVERTED_ZERO: "reverted_zero", STATUS_REVERTED_OVERFLOW: "reverted_overflow",
            STATUS_NOT_V2: "not_v2", STATUS_UNKNOWN_POOL: "unknown_pool",
            STATUS_TOKEN_MISMATCH: "token_mismatch"}
assert len(STATUS_NAMES) == 8 and STATUS_NOT_PENDING not in _COUNTER


def int_option(name: str, value: Any, minimum: int) -> int:
    """An int option at least ``minimum``; ``ValueError`` naming the option and value otherwise."""
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return int(value)


def empty_book() -> PoolBook:
    """A book of no pools: every pending swap is on an unknown pool."""
    return PoolBook.__new__(PoolBook)


class BookStrategy:
    """Base of the example processors (see the module docstring)."""

    name = ""
    OPTIONS: tuple[str, ...] = ()
    GROUP: tuple[str, ...] = ()
    STATS: tuple[str, ...] = ()
    SCREEN_STATS: tuple[str, ...] = ()

    def __init__(self, pools: Any, *, gas_units: int, min_profit: int, weth: Any, prices: Any):
        self.gas_units = int_option("gas_units", gas_units, 0)
        self.min_profit = int_option("min_profit", min_profit, 0)
        if self.min_profit >= 2**256:
            raise ValueError(f"min_profit must be below 2**256, got {min_profit!r}")
        self._weth, self._price_options = weth, prices
        self._configured = pools is not None
        self._shared = False  # True: the engine's book, which the engine applies
        self._stats = dict.fromkeys(BASE_STATS + self.STATS, 0)
        self.screen = None
        self._load(PoolBook.from_source(pools) if pools is not None else empty_book())
        self._mined = CompleteGroups(self.GROUP)

    def _load(self, book: PoolBook) -> None:
        if self.screen is not None:  # keep what the screen being replaced counted
            self._fold_screen_stats()
        self.book = book
        self.prices = price_table(book.token_table, self._weth, self._price_options)
        self.screen = self._make_screen(book, self.prices)

    def _fold_screen_stats(self) -> None:
        now = self.screen.stats()
        for key in self.SCREEN_STATS:
            self._stats[key] += now[key]

    @classmethod
    def from_options(cls, **options):
        """Build from config options; an unknown option raises ``TypeError`` naming it."""
        unknown = sorted(set(options) - set(cls.OPTIONS))
        if unknown:
            raise TypeError(f"unknown option {unknown[0]!r} for processor {cls.name!r}; "
                            f"known: {', '.join(cls.OPTIONS)}")
        return cls(**options)

    # -- where the book comes from ----------------------------------------------------------------
    def on_book(self, book: PoolBook | None) -> None:
        """Use the engine's book (called once at start, before any row); the engine applies
        every batch to it before ``process``. Ignored with an explicit ``pools`` option, or
        ``None`` (the engine has no pools table)."""
        if book is None or self._configured:
            return
        if not isinstance(book, PoolBook):
            raise TypeError(f"on_book takes a tallyio.amm.PoolBook, got {type(book).__name__}")
        self._shared = True
        self._load(book)

    def on_feed(self, metadata: dict) -> None:
        """Build a book from the pools table a feed ships with (``pool_*``/``token_*`` arrays),
        unless the ``pools`` option or the engine already gave one; called before ingestion."""
        if not self._configured and not self._shared and all(k in metadata for k in POOL_KEYS):
            self._load(PoolBook(metadata))

    def stats(self) -> dict[str, int]:
        """The counters (see the module docstring), the screen's included."""
        out = dict(self._stats)
        now = self.screen.stats()
        for key in self.SCREEN_STATS:
            out[key] += now[key]
        return out

    # -- the Processor protocol -------------------------------------------------------------------
    def process(self, batch: np.ndarray) -> list[Opportunity]:
        if not isinstance(batch, np.ndarray) or batch.dtype != TX_DTYPE:
            raise TypeError(f"batch must be a numpy array of TX_DTYPE, got "
                            f"{getattr(batch, 'dtype', type(batch))}")
        self._stats["rows"] += len(batch)
        found, mined = self._apply(batch, search=True)
        if mined:
            pending = (batch["flags"] & FLAG_PENDING) != 0
            found += self._route_mined(take_rows(batch, ~pending), final=False)
        return found

    def on_skipped(self, batch: np.ndarray) -> None:
        """The engine skipped this batch (the breaker is open): keep the pool state (and the
        screen's state) current so that later searches see the right reserves, but search
        nothing."""
        self._stats["skipped"] += len(batch)
        self._apply(batch, search=False)

    def flush(self) -> list[Opportunity]:
        return self._route_mined(None, final=True)

    def _apply(self, batch: np.ndarray, search: bool) -> tuple[list[Opportunity], int]:
        """Apply the batch (own book) or read its outcome (the engine's), count, and screen;
        returns what was found and how many rows were mined."""
        outcome = self.book.outcome_for(batch) if self._shared else self.book.apply(batch)
        counts = status_counts(outcome)
        st = self._stats
        for status, key in _COUNTER.items():
            st[key] += counts[status]
        st["reverted"] += (counts[STATUS_REVERTED_SLIPPAGE] + counts[STATUS_REVERTED_ZERO]
                           + counts[STATUS_REVERTED_OVERFLOW])
        mined = counts[STATUS_NOT_PENDING]
        if mined == len(batch):
            return [], mined
        found = self.screen(batch, search=search)
        if not len(found):
            return [], mined
        opportunities = self._opportunities(batch, found)
        st["opportunities"] += len(opportunities)
        return opportunities, mined

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

    # -- subclasses -------------------------------------------------------------------------------
    def _make_screen(self, book: PoolBook, prices):
        """The compiled screen to run on each batch (``ArbitrageScreen``, ``SandwichScreen``)."""
        raise NotImplementedError

    def _opportunities(self, batch: np.ndarray, found: np.ndarray) -> list[Opportunity]:
        """Opportunities for the rows the screen found in ``batch``."""
        raise NotImplementedError

    def _inspect(self, ready: np.ndarray) -> list[Opportunity]:
        raise NotImplementedError
