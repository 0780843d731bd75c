"""The compiled arbitrage strategy against today's pure-Python one (``tallyio.strategy_reference``).

The reference reports a price gap again after every later swap on its pair; the compiled screen
reports it once, when it opens, and again only after the pair has been back inside the fee band.
``report_once`` states that rule on the reference's own output and state, so every comparison
below is exact: same opportunities (strategy, kind, tx ids, pools, exact profit, profit token and
every detail), in the same order.
"""
import os
from pathlib import Path

import numpy as np
import pytest

from tallyio_mainnet import pending as mainnet_pending
import tallyio.strategy_reference as ref
from tallyio import synthetic
from tallyio.feeds import read_feed
from tallyio.record import address_hex
from tallyio_arbitrage.processor import ArbitrageProcessor

# the 25-block set of the workspace (beside the repository), else the blocks tallyio-mainnet ships
FULL = Path(os.environ.get("TALLYIO_MAINNET_BLOCKS",
                           Path(__file__).resolve().parents[3].parent / "shared" / "data" / "mainnet-blocks"))
BLOCKS = FULL if FULL.is_dir() else None

SAMPLE = "tallyio/data/sample_feed.npz"
SMALL = dict(liquidity=(10**5, 10**6), price_decades=1)
SMALL_FEED = dict(gas_price=(1, 3), arb_gas_units=10, sandwich_gas_units=10)
G2, D2 = ref.FEE_NUM ** 2, ref.FEE_DEN ** 2


def sample_feed():
    from pathlib import Path
    return read_feed(Path(__file__).resolve().parents[3] / SAMPLE)


def gap(book: ref.PoolBook, i: int, j: int) -> bool:
    """Whether pools i and j (one pair) are outside the zero-gas fee band: a round trip through
    them gains in some direction (exact ints; X = pool i's token0)."""
    xi, yi = book.reserve0[i], book.reserve1[i]
    xj, yj = book.reserves(j, book.token0[j] == book.token0[i])
    return G2 * yi * xj > D2 * xi * yj or G2 * yj * xi > D2 * xj * yi


def report_once(proc: ref.ArbitrageProcessor, chunks) -> tuple[list, int]:
    """The reference's opportunities with repeats of a still-open pair removed, and how many
    were removed. The reference runs one row at a time (its results do not depend on batch
    boundaries): after each applied swap on pool i, every pair (i, j) back inside the fee band
    closes; a report on an open pair is a repeat, any other opens its pair."""
    book, index = proc.book, {}
    for i, a in enumerate(book.address):
        index[address_hex(a)] = i
    open_pairs, kept, removed = set(), [], 0
    for rows in chunks:
        for k in range(len(rows)):
            applied = proc.stats()["applied"]
            found = proc.process(rows[k:k + 1])
            if proc.stats()["applied"] > applied:
                i = int(book.lookup(rows["pool_key"][k:k + 1])[0])
                open_pairs -= {frozenset((i, j)) for j in book.siblings[i] if not gap(book, i, j)}
            for o in found:
                pair = frozenset(index.get(p) for p in o.pools)
                if o.kind == "arbitrage" and pair in open_pairs:
                    removed += 1
                    continue
                if o.kind == "arbitrage":
                    open_pairs.add(pair)
                kept.append(o)
    return kept + proc.flush(), removed


def run(proc, chunks):
    found = []
    for rows in chunks:
        found += proc.process(rows)
    return found + proc.flush()


def batches(records, size):
    return [records[i:i + size] for i in range(0, len(records), size)]


def test_bundled_feed_identical_to_the_reference():
    records, meta = sample_feed()
    reference = ref.ArbitrageProcessor()
    reference.on_feed(meta)
    want, _ = report_once(reference, [records])
    proc = ArbitrageProcessor()
    proc.on_feed(meta)
    got = run(proc, batches(records, 256))
    assert got == want and len(got) >= 20
    # the same counters (candidates: the reference counts its float pre-filter's pairs, the screen
    # the exact fee-band test's; on this feed they agree too)
    st, rst = proc.stats(), reference.stats()
    assert {k: st[k] for k in rst} == rst
    # each planted gap of the bundled feed is closed by the swap after it: reported once
    assert len({o.tx_ids for o in got}) == len(got)


@pytest.mark.parametrize("seed, small", [(0, True), (1, False), (2, True)])
def test_gaps_left_open_are_reported_once(seed, small):
    """Without the closing swaps that follow each plant, a gap stays open and the reference
    reports it after every later swap on the pair; the compiled screen once."""
    market = synthetic.Market(seed, **(SMALL if small else {}))
    records, planted = synthetic.generate_feed(seed, 2500, market, plant_arbitrage=6,
                                               plant_sandwich=3, **(SMALL_FEED if small else {}))
    closing = {p.tx_ids[0] + 1 for p in planted}
    records = records[~np.isin(records["id"], list(closing))]
    gas = 10 if small else 200_000
    want, removed = report_once(ref.ArbitrageProcessor(market, gas_units=gas), [records])
    assert removed > 0  # the rule was exercised
    for size in (1, 64, 1000):
        proc = ArbitrageProcessor(market, gas_units=gas)
        assert run(proc, batches(records, size)) == want
        assert proc.stats()["repeats"] >= removed


def test_mainnet_blocks_as_pending_swaps_identical_to_the_reference():
    chunks, table = mainnet_pending.pending_feed(BLOCKS)
    want, removed = report_once(ref.ArbitrageProcessor(table), chunks)
    proc = ArbitrageProcessor(table)
    got = run(proc, chunks)
    assert got == want and len(got) >= 10 and removed > 0
    st = proc.stats()
    assert st["reverted_slippage"] > 0 and st["not_v2"] > 0  # real rows the book does not apply


def test_mainnet_blocks_mined_identical_to_the_reference():
    """Mined rows go to the unchanged cyclic-arbitrage inspector, a transaction at a time."""
    total = 0
    for rows in mainnet_pending.blocks(BLOCKS):
        want = run(ref.ArbitrageProcessor(), batches(rows, 7))
        proc = ArbitrageProcessor()
        assert run(proc, batches(rows, 7)) == want
        assert proc.stats()["mined"] == len(rows)
        total += len(want)
    assert total >= 5
