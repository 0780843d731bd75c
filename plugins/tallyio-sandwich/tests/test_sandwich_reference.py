"""The compiled sandwich strategy against the pure-Python one (``tallyio.strategy_reference``): the
same opportunities (strategy, kind, tx ids, pool, exact profit, profit token and every detail), in the
same order, and the same counters."""
import os
from pathlib import Path

import numpy as np
import pytest

from tallyio_mainnet import pending as mainnet_pending
import tallyio.strategy_reference as ref
from tallyio import synthetic
from tallyio.feeds import read_feed
from tallyio_sandwich.processor import SandwichProcessor

# the 25-block set of the workspace (beside the repository), else the blocks tallyio-mainnet ships
FULL = Path(os.environ.get("TALLYIO_MAINNET_BLOCKS",
                           Path(__file__).resolve().parents[3].parent / "shared" / "data" / "mainnet-blocks"))
BLOCKS = FULL if FULL.is_dir() else None

SMALL = dict(liquidity=(10**5, 10**6), price_decades=1)
SMALL_FEED = dict(gas_price=(1, 3), arb_gas_units=10, sandwich_gas_units=10)


def run(proc, chunks):
    found = []
    for rows in chunks:
        found += proc.process(rows)
    return found + proc.flush()


def batches(records, size):
    return [records[i:i + size] for i in range(0, len(records), size)]


def same_counters(new, old):
    st, rst = new.stats(), old.stats()
    assert {k: st[k] for k in rst} == rst


def test_bundled_feed_identical_to_the_reference():
    records, meta = read_feed(Path(__file__).resolve().parents[3] / "tallyio/data/sample_feed.npz")
    reference, proc = ref.SandwichProcessor(), SandwichProcessor()
    reference.on_feed(meta)
    proc.on_feed(meta)
    want = run(reference, batches(records, 256))
    assert run(proc, batches(records, 256)) == want and len(want) >= 10
    same_counters(proc, reference)


@pytest.mark.parametrize("seed, small", [(0, True), (1, False)])
def test_loose_slippage_peaks_and_unclosed_plants_identical(seed, small):
    """Victims with no slippage bound (the profit peaks first: the ternary search) and plants
    whose closing swaps were removed (pools left far from their siblings)."""
    market = synthetic.Market(seed, **(SMALL if small else {}))
    records, planted = synthetic.generate_feed(seed, 2000, market, plant_arbitrage=3,
                                               plant_sandwich=6, **(SMALL_FEED if small else {}))
    records = records[~np.isin(records["id"], [p.tx_ids[0] + 1 for p in planted])].copy()
    victims = [p.tx_ids[0] for p in planted if p.kind == "sandwich_opportunity"]
    records["amount_out_min"][np.isin(records["id"], victims[::2])] = 0
    records["amount_out_min"][::3] = 0
    gas = 10 if small else 120_000
    want = run(ref.SandwichProcessor(market, gas_units=gas), [records])
    assert {o.details["bound"] for o in want} == {"slippage", "profit"}
    for size in (1, 100):
        proc = SandwichProcessor(market, gas_units=gas)
        assert run(proc, batches(records, size)) == want


def test_mainnet_blocks_as_pending_swaps_identical_to_the_reference():
    chunks, table = mainnet_pending.pending_feed(BLOCKS)
    reference, proc = ref.SandwichProcessor(table), SandwichProcessor(table)
    want = run(reference, chunks)
    assert run(proc, chunks) == want and len(want) >= 10
    same_counters(proc, reference)
    assert proc.stats()["reverted"] > 0 and proc.stats()["unpriced"] > 0


def test_mainnet_blocks_mined_identical_to_the_reference():
    """Mined rows go, a whole block at a time, to the unchanged sandwich inspector."""
    total = 0
    for rows in mainnet_pending.blocks(BLOCKS):
        want = run(ref.SandwichProcessor(), batches(rows, 5))
        proc = SandwichProcessor()
        assert run(proc, batches(rows, 5)) == want
        same_counters(proc, ref_after(rows))
        total += len(want)
    assert total >= 3


def ref_after(rows):
    reference = ref.SandwichProcessor()
    run(reference, batches(rows, 5))
    return reference
