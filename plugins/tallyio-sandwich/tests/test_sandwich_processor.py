"""The sandwich processor on synthetic feeds: exactly the planted victims, exact profits."""
import sys
import types

import numpy as np
import pytest

from tallyio import synthetic
from tallyio.record import FLAG_PENDING, PROTOCOL_UNISWAP_V3, TX_DTYPE, int_to_u256, u256_to_int
from tallyio_sandwich import plugin
from tallyio_sandwich.processor import SandwichProcessor

SMALL = dict(liquidity=(10**5, 10**6), price_decades=1)
SMALL_FEED = dict(gas_price=(1, 3), arb_gas_units=10, sandwich_gas_units=10)


def run(proc, records, batch=256):
    found = []
    for i in range(0, len(records), batch):
        found += proc.process(records[i:i + batch])
    return found + proc.flush()


def key(o):
    return (o.tx_ids, o.pools, o.profit, o.profit_token, o.details["frontrun_in"], o.details["gas_cost"])


def want(planted):
    return [(p.tx_ids, p.pools, p.profit, p.profit_token, p.amount_in, p.gas_cost)
            for p in planted if p.kind == "sandwich_opportunity"]


def reserves(book):
    return [book.reserves(i) for i in range(len(book))]


def accounted(stats):
    return sum(stats[k] for k in ("applied", "reverted", "unknown_pool", "not_v2", "token_mismatch",
                                  "mined"))


@pytest.mark.parametrize("seed, small", [(0, True), (1, True), (2, False), (3, False)])
def test_exactly_the_planted_with_exact_profits(seed, small):
    market = synthetic.Market(seed, **(SMALL if small else {}))
    records, planted = synthetic.generate_feed(seed, 2000, market, plant_arbitrage=3, plant_sandwich=6,
                                               **(SMALL_FEED if small else {}))
    proc = SandwichProcessor(market, gas_units=10 if small else 120_000)
    found = run(proc, records)
    # the front-run room is a threshold found exactly, so the profit is exact at every scale
    assert [key(o) for o in found] == want(planted) and len(found) == 6
    for o in found:
        d = o.details
        assert o.kind == "sandwich_opportunity" and o.strategy == "sandwich" and d["bound"] == "slippage"
        assert o.profit == d["backrun_out"] - d["frontrun_in"] - d["gas_cost"] > 0
        assert d["victim_min_out"] <= d["victim_out"]
    st = proc.stats()
    assert st["rows"] == accounted(st) == len(records) and st["opportunities"] == 6


@pytest.mark.parametrize("small", [True, False])
def test_no_false_positives_on_an_unplanted_feed(small):
    market = synthetic.Market(4, **(SMALL if small else {}))
    records, planted = synthetic.generate_feed(4, 3000, market, **(SMALL_FEED if small else {}))
    assert planted == []
    proc = SandwichProcessor(market, gas_units=10 if small else 120_000)
    assert run(proc, records) == []
    assert proc.stats()["applied"] == len(records)


def test_no_false_positives_at_zero_gas_on_deep_pools():
    # ordinary swaps move prices less than two fees: not even a gross gain exists
    market = synthetic.Market(5)
    records, _ = synthetic.generate_feed(5, 2000, market)
    assert run(SandwichProcessor(market, gas_units=0), records) == []


def test_victim_is_judged_before_its_swap_and_then_applied():
    market = synthetic.Market(6, **SMALL)
    records, planted = synthetic.generate_feed(6, 300, market, plant_sandwich=2, **SMALL_FEED)
    proc = SandwichProcessor(market, gas_units=10)
    state = market.copy()
    for k in range(len(records)):
        proc.process(records[k:k + 1])
        row = records[k]
        state.pools[state.pool_index(bytes(row["pool"]))].swap(
            bytes(row["token_in"]), u256_to_int(row["amount_in"]), u256_to_int(row["amount_out_min"]))
    assert reserves(proc.book) == [(p.reserve0, p.reserve1) for p in state.pools]


def test_batch_boundaries_do_not_matter():
    market = synthetic.Market(7, **SMALL)
    records, _ = synthetic.generate_feed(7, 500, market, plant_sandwich=4, **SMALL_FEED)
    outs = [run(SandwichProcessor(market, gas_units=10), records, batch=b) for b in (1, 9, 500)]
    assert outs[0] == outs[1] == outs[2] and len(outs[0]) == 4


def test_min_profit_filters():
    market = synthetic.Market(8, **SMALL)
    records, planted = synthetic.generate_feed(8, 600, market, plant_sandwich=5, **SMALL_FEED)
    profits = sorted(p.profit for p in planted if p.kind == "sandwich_opportunity")
    found = run(SandwichProcessor(market, gas_units=10, min_profit=profits[1]), records)
    assert sorted(o.profit for o in found) == [p for p in profits if p > profits[1]]


def test_pools_from_npz_path_and_from_feed_metadata(tmp_path):
    market = synthetic.Market(9, **SMALL)
    records, _ = synthetic.generate_feed(9, 400, market, plant_sandwich=3, **SMALL_FEED)
    path = tmp_path / "feed.npz"
    np.savez(path, records=records, **market.to_arrays())
    expect = run(SandwichProcessor(market, gas_units=10), records)
    assert len(expect) == 3
    assert run(SandwichProcessor(str(path), gas_units=10), records) == expect
    proc = SandwichProcessor(gas_units=10)
    proc.on_feed(dict(np.load(path)))
    assert run(proc, records) == expect


def test_rows_it_cannot_use_are_counted_not_lost():
    market = synthetic.Market(10, **SMALL)
    records, _ = synthetic.generate_feed(10, 30, market, **SMALL_FEED)
    r = records.copy()
    r["protocol"][0] = PROTOCOL_UNISWAP_V3
    r["pool_key"][1] ^= 1
    r["token_in_key"][2] = 777
    r["amount_out_min"][3] = int_to_u256(2**100)  # reverts: no room, and no state change
    proc = SandwichProcessor(market, gas_units=10)
    assert run(proc, r) == []
    st = proc.stats()
    assert (st["not_v2"], st["unknown_pool"], st["token_mismatch"], st["reverted"]) == (1, 1, 1, 1)
    assert st["applied"] == 26 and accounted(st) == 30


def test_unpriced_victims_are_skipped_and_counted():
    market = synthetic.Market(11, **SMALL)
    records, _ = synthetic.generate_feed(11, 200, market, plant_sandwich=2, **SMALL_FEED)
    arrays = market.to_arrays()
    del arrays["token_address"]
    proc = SandwichProcessor(arrays, gas_units=10)
    assert run(proc, records) == []
    assert proc.stats()["unpriced"] == proc.stats()["applied"] == 200


def test_mined_rows_go_to_the_inspector_one_block_at_a_time(monkeypatch):
    calls = []
    fake = types.ModuleType("tallyio_sandwich.inspect")
    fake.find_sandwiches = lambda swaps: calls.append(swaps["block"].tolist()) or [len(calls)]
    monkeypatch.setitem(sys.modules, "tallyio_sandwich.inspect", fake)
    mined = np.zeros(7, dtype=TX_DTYPE)
    mined["block"] = [5, 5, 6, 6, 6, 8, 8]
    proc = SandwichProcessor()
    assert proc.process(mined[:1]) == []  # block 5 may go on
    assert proc.process(mined[1:4]) == [1]  # block 6 started: block 5 is complete
    assert calls == [[5, 5]]
    assert proc.process(mined[4:6]) == [2]
    assert calls[-1] == [6, 6, 6]
    assert proc.process(mined[6:]) == []
    assert proc.flush() == [3] and calls[-1] == [8, 8]
    assert proc.flush() == [] and proc.stats()["mined"] == 7


def test_flush_hands_over_several_held_blocks_separately(monkeypatch):
    calls = []
    fake = types.ModuleType("tallyio_sandwich.inspect")
    fake.find_sandwiches = lambda swaps: calls.append(swaps["block"].tolist()) or []
    monkeypatch.setitem(sys.modules, "tallyio_sandwich.inspect", fake)
    market = synthetic.Market(12, **SMALL)
    records, _ = synthetic.generate_feed(12, 20, market, **SMALL_FEED)
    r = records.copy()
    r["flags"][10:] &= ~np.uint8(FLAG_PENDING)
    r["block"][10:] = [1, 1, 1, 2, 2, 2, 2, 3, 3, 3]
    proc = SandwichProcessor(market, gas_units=10)
    proc.process(r)
    assert calls == [[1, 1, 1], [2, 2, 2, 2]]  # one call per block, block 3 held
    proc.flush()
    assert calls == [[1, 1, 1], [2, 2, 2, 2], [3, 3, 3]]
    assert proc.stats()["applied"] == 10


@pytest.mark.parametrize("kwargs, match", [
    ({"gas_units": -5}, "gas_units must be an int >= 0, got -5"),
    ({"min_profit": "1"}, "min_profit must be an int >= 0, got '1'"),
    ({"pools": "/nonexistent/pools.npz"}, "pools must name an existing .npz file"),
    ({"weth": b"short"}, "weth must be a 20-byte address"),
])
def test_bad_options_raise_naming_the_option(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SandwichProcessor(**kwargs)


def test_unknown_option_and_bad_batch():
    with pytest.raises(TypeError, match="unknown option 'max_scan' for processor 'sandwich'"):
        SandwichProcessor.from_options(max_scan=3)
    with pytest.raises(TypeError, match="batch must be a numpy array of TX_DTYPE"):
        SandwichProcessor().process([1, 2])


def test_plugin_registers_the_factory_the_engine_calls():
    registered = {}
    plugin.register_processors(register=lambda name, factory: registered.setdefault(name, factory))
    proc = registered["sandwich"](min_profit=7)
    assert isinstance(proc, SandwichProcessor) and proc.name == "sandwich" and proc.min_profit == 7


def test_no_pool_table_means_nothing_found_not_an_error():
    """Push mode hands processors an empty metadata dict: every swap is on an unknown pool."""
    import numpy as np
    from tallyio.record import FLAG_PENDING, PROTOCOL_UNISWAP_V2, TX_DTYPE
    from tallyio_sandwich.processor import SandwichProcessor
    rows = np.zeros(10, dtype=TX_DTYPE)
    rows["flags"] = FLAG_PENDING
    rows["protocol"] = PROTOCOL_UNISWAP_V2
    for cls in (SandwichProcessor,):
        p = cls()
        p.on_feed({})
        assert p.process(rows) == []
        assert p.stats()["unknown_pool"] == 10


def test_skipped_batches_keep_the_pool_state_current():
    market = synthetic.Market(5, **SMALL)
    records, _ = synthetic.generate_feed(5, 600, market, plant_sandwich=4, **SMALL_FEED)
    full, partial = SandwichProcessor(market, gas_units=10), SandwichProcessor(market, gas_units=10)
    run(full, records, batch=50)
    for i in range(0, 300, 50):
        partial.on_skipped(records[i:i + 50])
    run(partial, records[300:], batch=50)
    assert reserves(partial.book) == reserves(full.book)
    assert partial.stats()["skipped"] == 300


def test_on_the_engines_book_the_same_as_on_its_own():
    """The engine applies each batch to its one book before the processors; on that book the
    processor finds what it finds on its own, judging each victim on the reserves before it."""
    from tallyio.amm import PoolBook
    market = synthetic.Market(17, **SMALL)
    records, _ = synthetic.generate_feed(17, 900, market, plant_sandwich=4, **SMALL_FEED)
    own = run(SandwichProcessor(market, gas_units=10), records, batch=100)
    book = PoolBook.from_source(market)
    proc = SandwichProcessor(gas_units=10)
    proc.on_book(book)
    found = []
    for i in range(0, len(records), 100):
        book.apply(records[i:i + 100])
        found += proc.process(records[i:i + 100])
    assert found == own and len(own) == 4
    assert book.stats()["applied"] == len(records) == proc.stats()["applied"]
