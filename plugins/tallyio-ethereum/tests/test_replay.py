"""The pending-stream replay: every predictable V2 router swap equals the chain to the wei."""
from __future__ import annotations

from collections import Counter

from ethereum_data import BLOCKS_DIR, FULL

from tallyio_ethereum.replay import OUTCOMES, replay_blocks
from tallyio_ethereum.report import markdown, table

# the 25-block set (docs/mainnet_replay.md, "Pending transactions replayed")
FULL_TOTALS = {"exact": 220, "reverted_as_predicted": 36, "reserves_unknown": 8,
               "reserves_stale": 0, "fee_on_transfer": 26, "token_swapped_in_transfer": 0,
               "reverted_on_chain": 7, "mismatch": 0}


def _totals(results):
    t = Counter()
    for r in results:
        t.update(r["outcomes"])
        for k in ("decoded", "v2", "v3", "book_diverged", "hops_exact"):
            t[k] += r[k]
    return t


def test_every_predictable_v2_swap_is_exact_to_the_wei():
    results = replay_blocks(BLOCKS_DIR)
    t = _totals(results)
    assert all(not r["mismatches"] for r in results), [r["mismatches"] for r in results]
    assert t["mismatch"] == 0 and t["book_diverged"] == 0, t
    assert set(t) - {"decoded", "v2", "v3", "book_diverged", "hops_exact"} <= set(OUTCOMES)
    if FULL:
        assert {k: t[k] for k in OUTCOMES} == FULL_TOTALS
        assert (t["decoded"], t["v2"], t["v3"], t["hops_exact"]) == (360, 297, 63, 256)
    else:  # the 4 blocks shipped with tallyio-mainnet
        assert t["exact"] >= 15 and t["decoded"] >= 20, t


def test_without_refresh_pools_go_stale_but_nothing_is_wrong():
    t = _totals(replay_blocks(BLOCKS_DIR, refresh=False))
    assert t["mismatch"] == 0 and t["book_diverged"] == 0, t
    if FULL:
        assert t["reserves_stale"] == 49 and t["exact"] == 189, t


def test_report_table_totals_add_up():
    results = replay_blocks(BLOCKS_DIR)
    rows = table(results)
    assert rows[-1][0] == "total"
    for col in range(1, len(rows[0])):
        assert rows[-1][col] == sum(r[col] for r in rows[:-1])
    text = markdown(results)
    assert "| **total** |" in text and "`book_diverged` 0" in text
