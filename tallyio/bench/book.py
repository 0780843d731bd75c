"""The engine's pool book and the strategies' screens against the pure-Python strategies they
replaced, per pending swap of the bundled feed (30,000 swaps, 21 pools, batches of 256).

* **apply + screens**: ``PoolBook.apply`` then ``ArbitrageScreen`` and ``SandwichScreen`` on each
  batch, the compiled path the issue's target (150 ns per pending swap) is about; peers: the
  same book with one screen, or none;
* **strategies**: the two example processors on one shared book, as the engine runs them
  (``on_book``; Opportunities built in Python for what is found), against the pure-Python
  processors they replaced, each with its own book. Those live in the plugins' tests as the
  reference (``plugins/*/tests/*_reference.py``) and are loaded from a source checkout; elsewhere
  that peer is reported as not available.

Each pass runs the whole feed from fresh books (the state changes as it goes, so a pass cannot be
repeated on the same book); a figure sums each batch's best time over the passes. Run:
``python -m tallyio.bench.book``.
"""
from __future__ import annotations

import gc
import os
import time
from pathlib import Path

from tallyio.amm import ArbitrageScreen, PoolBook, SandwichScreen
from tallyio.bench._harness import Comparison, format_table
from tallyio.feeds import read_feed
from tallyio.pricing import price_table

BATCH = 256
FEED = Path(__file__).resolve().parents[1] / "data" / "sample_feed.npz"
PLUGINS = Path(__file__).resolve().parents[2] / "plugins"


def _best(setup, step, chunks, repeat):
    """ns per row of ``step(state, rows)`` over every chunk, from a fresh ``setup()`` per pass:
    each chunk's best time over ``repeat`` passes, summed. A pass repeats the same work (fresh
    books, same rows), so the per-chunk minimum drops the chunks a loaded machine preempted (a
    4 ms time slice in a 30,000-row pass of ~3 ms) without dropping any work."""
    best = [float("inf")] * len(chunks)
    gc_was = gc.isenabled()
    gc.disable()
    clock = time.perf_counter_ns
    try:
        for _ in range(repeat):
            state = setup()
            for k, rows in enumerate(chunks):
                t0 = clock()
                step(state, rows)
                best[k] = min(best[k], clock() - t0)
    finally:
        if gc_was:
            gc.enable()
    return sum(best) / sum(len(c) for c in chunks)


def measure(records, meta, *, batch: int = BATCH, repeat: int = 5) -> dict[str, float]:
    """ns per pending swap of each configuration (keys as in ``run``'s table)."""
    prices = price_table(meta)
    chunks = [records[i:i + batch] for i in range(0, len(records), batch)]

    def books(screens):
        def setup():
            book = PoolBook(meta)
            return book, [cls(book, prices) for cls in screens]
        return setup

    def apply_and_screen(state, rows):
        book, screens = state
        book.apply(rows)
        for s in screens:
            s(rows)

    out = {
        "apply": _best(books(()), apply_and_screen, chunks, repeat),
        "apply + arbitrage": _best(books((ArbitrageScreen,)), apply_and_screen, chunks, repeat),
        "apply + sandwich": _best(books((SandwichScreen,)), apply_and_screen, chunks, repeat),
        "apply + both": _best(books((ArbitrageScreen, SandwichScreen)), apply_and_screen, chunks,
                              repeat),
    }
    from tallyio_arbitrage.processor import ArbitrageProcessor
    from tallyio_sandwich.processor import SandwichProcessor

    def engine_style():
        book = PoolBook(meta)
        procs = [ArbitrageProcessor(), SandwichProcessor()]
        for p in procs:
            p.on_book(book)
        return book, procs

    def process_shared(state, rows):
        book, procs = state
        book.apply(rows)
        for p in procs:
            p.process(rows)

    out["strategies (one shared book)"] = _best(engine_style, process_shared, chunks, repeat)
    from tallyio import strategy_reference as ref

    def reference():
        procs = [ref.ArbitrageProcessor(), ref.SandwichProcessor()]
        for p in procs:
            p.on_feed(meta)
        return procs

    def process_own(procs, rows):
        for p in procs:
            p.process(rows)

    out["reference strategies"] = _best(reference, process_own, chunks, max(1, repeat // 2))
    return out


def run(quick: bool = False) -> list[Comparison]:
    records, meta = read_feed(FEED)
    if quick:
        records = records[:6000]
    t = measure(records, meta, repeat=3 if quick else 7)
    per = "pending swap"
    return [
        Comparison(f"apply + screens, {len(records):,} swaps by {BATCH}",
                   ("PoolBook.apply + Arbitrage/SandwichScreen", t["apply + both"]),
                   [("PoolBook.apply + ArbitrageScreen", t["apply + arbitrage"]),
                    ("PoolBook.apply + SandwichScreen", t["apply + sandwich"]),
                    ("PoolBook.apply alone", t["apply"]),
                    ("pure-Python reference strategies", t["reference strategies"])], unit=per),
        Comparison("both strategies, Opportunities included",
                   ("Arbitrage+SandwichProcessor, shared book", t["strategies (one shared book)"]),
                   [("pure-Python reference strategies", t["reference strategies"])], unit=per),
    ]


if __name__ == "__main__":
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    print(format_table(run()))
