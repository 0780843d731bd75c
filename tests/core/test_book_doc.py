"""docs/plugins.md's example strategy on the shared pool book runs as written, both ways."""
import re
import types
from pathlib import Path

from tallyio import synthetic
from tallyio.amm import PoolBook
from tallyio.feeds import read_feed
from tallyio.record import u256_column_to_ints

ROOT = Path(__file__).resolve().parents[2]


def example_module():
    doc = (ROOT / "docs" / "plugins.md").read_text()
    section = doc.split("### A strategy on the book", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    assert 25 <= len(code.splitlines()) <= 45  # "about 30 lines"
    mod = types.ModuleType("impact")
    exec(compile(code, "docs/plugins.md#impact.py", "exec"), mod.__dict__)
    return mod


def run(proc, records, book=None, size=256):
    found = []
    for i in range(0, len(records), size):
        rows = records[i:i + size]
        if book is not None:
            book.apply(rows)  # what the engine does before the processors
        found += proc.process(rows)
    return found


def test_doc_example_standalone_and_on_the_engines_book_agree_with_a_replay():
    records, meta = read_feed(ROOT / "tallyio" / "data" / "sample_feed.npz")
    impact = example_module()
    own = run(impact.PriceImpact(meta, max_bps=100), records)
    shared = impact.PriceImpact(max_bps=100)
    book = PoolBook(meta)
    shared.on_book(book)
    assert run(shared, records, book) == own
    # a plain-Python replay of the same swaps: the rows whose swap moved the price > 1%
    market = synthetic.Market.from_arrays(meta)
    want = []
    for row, a, m in zip(records, u256_column_to_ints(records["amount_in"]),
                         u256_column_to_ints(records["amount_out_min"])):
        pool = market.pools[market.pool_index(bytes(row["pool"]))]
        was = (pool.reserve0, pool.reserve1)
        if pool.swap(bytes(row["token_in"]), a, m) is None:
            continue
        p0, p1 = was[1] * pool.reserve0, pool.reserve1 * was[0]
        if abs(p1 - p0) * 10_000 > 100 * p0:
            want.append(int(row["id"]))
    assert [o.tx_ids[0] for o in own] == want and len(want) >= 30
    assert all(abs(o.details["bps"]) >= 100 and o.details["siblings"] >= 1 for o in own)


def test_doc_example_without_a_book_finds_nothing():
    impact = example_module()
    records, _ = read_feed(ROOT / "tallyio" / "data" / "sample_feed.npz")
    assert impact.PriceImpact().process(records[:10]) == []


def test_doc_example_threshold_applies():
    records, meta = read_feed(ROOT / "tallyio" / "data" / "sample_feed.npz")
    impact = example_module()
    loose = run(impact.PriceImpact(meta, max_bps=100), records)
    strict = run(impact.PriceImpact(meta, max_bps=500), records)
    assert 0 < len(strict) < len(loose)
    assert all(o in loose for o in strict)
