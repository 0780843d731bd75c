"""The arbitrage processor on synthetic feeds: exactly the planted opportunities, exact profits."""
import sys
import types

import numpy as np
import pytest

from tallyio import synthetic
from tallyio.record import FLAG_PENDING, PROTOCOL_UNISWAP_V3, TX_DTYPE, int_to_u256, u256_to_int
from tallyio_arbitrage import plugin
from tallyio_arbitrage.processor import ArbitrageProcessor

# Shallow pools, gas in single units: every proof interval is small enough to scan, so the
# processor's optimum must equal the exhaustive reference exactly.
SMALL = dict(liquidity=(10**5, 10**6), price_decades=1)
SMALL_FEED = dict(gas_price=(1, 3), arb_gas_units=10, sandwich_gas_units=10)


def run(proc, records, batch=256):
    found = []
    for i in range(0, len(records), batch):
        found += proc.process(records[i:i + batch])
    return found + proc.flush()


def expected(planted):
    return [p for p in planted if p.kind == "arbitrage"]


def accounted(stats):
    return sum(stats[k] for k in ("applied", "reverted", "unknown_pool", "not_v2", "token_mismatch",
                                  "mined"))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_small_market_exactly_the_planted_with_exact_profits(seed):
    market = synthetic.Market(seed, **SMALL)
    records, planted = synthetic.generate_feed(seed, 2000, market, plant_arbitrage=6,
                                               plant_sandwich=4, **SMALL_FEED)
    want = expected(planted)
    assert len(want) >= 6 and all(p.exhaustive for p in want)
    proc = ArbitrageProcessor(market, gas_units=10, max_scan=1 << 16)
    found = run(proc, records)
    assert [(o.tx_ids, o.pools, o.profit, o.profit_token, o.details["amount_in"], o.details["gas_cost"])
            for o in found] == [(p.tx_ids, p.pools, p.profit, p.profit_token, p.amount_in, p.gas_cost)
                                for p in want]
    assert all(o.details["optimal"] and o.kind == "arbitrage" and o.strategy == "arbitrage"
               for o in found)
    st = proc.stats()
    assert st["rows"] == accounted(st) == len(records) and st["opportunities"] == len(want)


@pytest.mark.parametrize("seed", [3, 4])
def test_realistic_market_finds_the_planted_within_two_wei(seed):
    market = synthetic.Market(seed)  # reserves around 1e21-1e23, gas 10-100 gwei
    records, planted = synthetic.generate_feed(seed, 3000, market, plant_arbitrage=6, plant_sandwich=4)
    want = expected(planted)
    found = run(ArbitrageProcessor(market), records)
    assert [(o.tx_ids, o.pools, o.details["gas_cost"]) for o in found] == \
        [(p.tx_ids, p.pools, p.gas_cost) for p in want]
    for o, p in zip(found, want):
        d = o.details
        # the profit is exact for the input it reports: recompute it independently
        assert d["amount_out"] - d["amount_in"] == d["gross_profit"]
        assert o.profit == d["gross_profit"] - d["gas_cost"] > 0
        # the window search is within 2 units of the reference's search (and proves nothing)
        assert abs(o.profit - p.profit) <= 2 and not d["optimal"] and not p.exhaustive


def test_reported_trade_replays_exactly_on_the_pools():
    market = synthetic.Market(5)
    records, planted = synthetic.generate_feed(5, 400, market, plant_arbitrage=2)
    proc = ArbitrageProcessor(market)
    state = market.copy()
    for k, row in enumerate(records):
        found = proc.process(records[k:k + 1])
        i = state.pool_index(bytes(row["pool"]))
        state.pools[i].swap(bytes(row["token_in"]), u256_to_int(row["amount_in"]),
                            u256_to_int(row["amount_out_min"]))
        for o in found:
            a, b = (state.pool_index(bytes.fromhex(p[2:])) for p in o.pools)
            token = bytes.fromhex(o.profit_token[2:])
            mid = synthetic.amount_out(o.details["amount_in"], *state.pools[a].reserves(token))
            mid_token = bytes.fromhex(o.details["token_mid"][2:])
            back = synthetic.amount_out(mid, *state.pools[b].reserves(mid_token))
            assert (mid, back) == (o.details["amount_mid"], o.details["amount_out"])
            gas = synthetic.gas_in_token(state, token, 200_000 * int(row["gas_price"]))
            assert o.profit == back - o.details["amount_in"] - gas


@pytest.mark.parametrize("small", [True, False])
def test_no_false_positives_on_an_unplanted_feed(small):
    market = synthetic.Market(7, **(SMALL if small else {}))
    records, planted = synthetic.generate_feed(7, 3000, market, **(SMALL_FEED if small else {}))
    assert planted == []
    proc = ArbitrageProcessor(market, gas_units=10 if small else 200_000)
    assert run(proc, records) == []
    assert proc.stats()["applied"] == len(records)


def test_zero_gas_and_no_minimum_still_no_false_positives():
    # Ordinary swaps keep every pool inside its no-arbitrage band: nothing even at zero gas.
    market = synthetic.Market(8)
    records, _ = synthetic.generate_feed(8, 2000, market)
    assert run(ArbitrageProcessor(market, gas_units=0), records) == []


def test_batch_boundaries_do_not_matter():
    market = synthetic.Market(9, **SMALL)
    records, _ = synthetic.generate_feed(9, 600, market, plant_arbitrage=4, **SMALL_FEED)
    outs = [run(ArbitrageProcessor(market, gas_units=10), records, batch=b) for b in (1, 7, 600)]
    assert outs[0] == outs[1] == outs[2] and len(outs[0]) == 4


def test_min_profit_filters():
    market = synthetic.Market(10, **SMALL)
    records, planted = synthetic.generate_feed(10, 800, market, plant_arbitrage=5, **SMALL_FEED)
    cut = sorted(p.profit for p in planted)[2]
    found = run(ArbitrageProcessor(market, gas_units=10, min_profit=cut, max_scan=1 << 16), records)
    assert sorted(o.profit for o in found) == [p for p in sorted(p.profit for p in planted) if p > cut]


def test_pools_from_npz_path_and_from_feed_metadata(tmp_path):
    market = synthetic.Market(11, **SMALL)
    records, planted = synthetic.generate_feed(11, 500, market, plant_arbitrage=3, **SMALL_FEED)
    path = tmp_path / "feed.npz"
    np.savez(path, records=records, **market.to_arrays())
    want = run(ArbitrageProcessor(market, gas_units=10), records)
    assert len(want) == 3
    assert run(ArbitrageProcessor(str(path), gas_units=10), records) == want
    proc = ArbitrageProcessor(gas_units=10)
    proc.on_feed(dict(np.load(path)))
    assert run(proc, records) == want
    # an explicit pools option wins over the feed's table
    other = synthetic.Market(12, **SMALL)
    proc = ArbitrageProcessor(other, gas_units=10)
    proc.on_feed(market.to_arrays())
    assert run(proc, records) == [] and proc.stats()["unknown_pool"] == len(records)


def test_rows_it_cannot_use_are_counted_not_lost():
    market = synthetic.Market(13, **SMALL)
    records, _ = synthetic.generate_feed(13, 40, market, **SMALL_FEED)
    r = records.copy()
    r["protocol"][0] = PROTOCOL_UNISWAP_V3
    r["pool_key"][1] ^= 1  # a pool it does not know
    r["pool"][2][0] ^= 1  # known 64-bit key, different address
    r["token_in_key"][3] = 12345  # a token not in the pool
    r["amount_out_min"][4] = int_to_u256(2**200)  # reverts
    proc = ArbitrageProcessor(market, gas_units=10)
    assert run(proc, r) == []
    st = proc.stats()
    assert (st["not_v2"], st["unknown_pool"], st["token_mismatch"], st["reverted"]) == (1, 2, 1, 1)
    assert st["applied"] == 35 and accounted(st) == st["rows"] == 40


def test_unpriced_pairs_are_skipped_and_counted():
    market = synthetic.Market(14, **SMALL)
    records, planted = synthetic.generate_feed(14, 600, market, plant_arbitrage=4, **SMALL_FEED)
    arrays = market.to_arrays()
    arrays["token_price_num"][:] = 0  # no prices at all, and no WETH either
    del arrays["token_address"]
    proc = ArbitrageProcessor(arrays, gas_units=10)
    assert run(proc, records) == []
    assert proc.stats()["unpriced"] == 4  # one per push: the swaps that opened a price gap


def test_mined_rows_go_to_cycles_one_transaction_at_a_time(monkeypatch):
    calls = []
    fake = types.ModuleType("tallyio_arbitrage.cycles")
    fake.find_cyclic_arbitrages = lambda swaps: calls.append(
        [(int(b), int(t)) for b, t in zip(swaps["block"], swaps["tx_index"])]) or [f"arb{len(calls)}"]
    monkeypatch.setitem(sys.modules, "tallyio_arbitrage.cycles", fake)
    mined = np.zeros(6, dtype=TX_DTYPE)
    mined["block"] = [5, 5, 5, 5, 6, 6]
    mined["tx_index"] = [0, 0, 1, 1, 0, 0]
    proc = ArbitrageProcessor()
    # transaction (5, 1) straddles two batches: it waits for the rest of itself
    assert proc.process(mined[:3]) == ["arb1"]
    assert calls == [[(5, 0), (5, 0)]]
    assert proc.process(mined[3:5]) == ["arb2"]
    assert calls[-1] == [(5, 1), (5, 1)]
    assert proc.process(mined[5:]) == []  # (6, 0) may go on
    assert proc.flush() == ["arb3"]
    assert calls[-1] == [(6, 0), (6, 0)]
    assert proc.flush() == []
    assert proc.stats()["mined"] == 6 == proc.stats()["rows"]


def test_mixed_batch_routes_each_row_once(monkeypatch):
    seen = []
    fake = types.ModuleType("tallyio_arbitrage.cycles")
    fake.find_cyclic_arbitrages = lambda swaps: seen.extend(swaps["id"].tolist()) or []
    monkeypatch.setitem(sys.modules, "tallyio_arbitrage.cycles", fake)
    market = synthetic.Market(15, **SMALL)
    records, _ = synthetic.generate_feed(15, 50, market, **SMALL_FEED)
    r = records.copy()
    r["flags"][::5] &= ~np.uint8(FLAG_PENDING)
    r["block"][::5] = 100
    r["tx_index"][::5] = np.arange(10)
    proc = ArbitrageProcessor(market, gas_units=10)
    run(proc, r, batch=16)
    assert sorted(seen) == r["id"][::5].tolist()
    st = proc.stats()
    assert st["mined"] == 10 and st["applied"] == 40 and accounted(st) == 50


@pytest.mark.parametrize("kwargs, match", [
    ({"gas_units": -1}, "gas_units must be an int >= 0, got -1"),
    ({"gas_units": "10"}, "gas_units must be an int >= 0, got '10'"),
    ({"min_profit": 1.5}, "min_profit must be an int >= 0, got 1.5"),
    ({"max_scan": 0}, "max_scan must be an int >= 1, got 0"),
    ({"pools": "/nonexistent/pools.npz"}, "pools must name an existing .npz file"),
    ({"weth": "0x1234"}, "weth must be a 20-byte address, got '0x1234'"),
    ({"prices": {"0x" + "ab" * 20: 0}}, "must be positive"),
    ({"prices": {"nope": 1}}, "prices key must be a 20-byte address, got 'nope'"),
    ({"prices": [1, 2]}, "prices must be a mapping"),
])
def test_bad_options_raise_naming_the_option(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ArbitrageProcessor(**kwargs)


def test_bad_pools_type_and_unknown_option_and_bad_batch():
    with pytest.raises(TypeError, match="pools must be a Market"):
        ArbitrageProcessor(42)
    with pytest.raises(TypeError, match="unknown option 'gas' for processor 'arbitrage'"):
        ArbitrageProcessor.from_options(gas=1)
    with pytest.raises(TypeError, match="batch must be a numpy array of TX_DTYPE"):
        ArbitrageProcessor().process(np.zeros(3, dtype=np.int64))


def test_plugin_registers_the_factory_the_engine_calls():
    registered = {}
    plugin.register_processors(register=lambda name, factory: registered.setdefault(name, factory))
    proc = registered["arbitrage"](gas_units=5, pools=synthetic.Market(0, **SMALL))
    assert isinstance(proc, ArbitrageProcessor) and proc.name == "arbitrage" and proc.gas_units == 5


def test_no_pool_table_means_nothing_found_not_an_error():
    """Push mode hands processors an empty metadata dict: every swap is on an unknown pool."""
    import numpy as np
    from tallyio.record import FLAG_PENDING, PROTOCOL_UNISWAP_V2, TX_DTYPE
    from tallyio_arbitrage.processor import ArbitrageProcessor
    rows = np.zeros(10, dtype=TX_DTYPE)
    rows["flags"] = FLAG_PENDING
    rows["protocol"] = PROTOCOL_UNISWAP_V2
    for cls in (ArbitrageProcessor,):
        p = cls()
        p.on_feed({})
        assert p.process(rows) == []
        assert p.stats()["unknown_pool"] == 10


def test_oversized_transaction_is_skipped_and_counted():
    import numpy as np
    from tallyio.record import TX_DTYPE
    from tallyio_arbitrage.processor import MAX_SWAPS_PER_TX, ArbitrageProcessor
    rows = np.zeros(MAX_SWAPS_PER_TX + 1 + 3, dtype=TX_DTYPE)  # not pending: mined swaps
    rows["tx_index"][MAX_SWAPS_PER_TX + 1:] = 1                # a second, small transaction
    p = ArbitrageProcessor()
    p.on_feed({})
    assert p.process(rows) == [] and p.flush() == []
    st = p.stats()
    assert st["oversized_tx"] == 1 and st["mined"] == len(rows)


def test_skipped_batches_keep_the_pool_state_current():
    """While its breaker is open the engine calls on_skipped: the reserves must end where
    processing everything leaves them, so later searches are not made on stale pools."""
    market = synthetic.Market(9, **SMALL)
    records, _ = synthetic.generate_feed(9, 600, market, plant_arbitrage=4, **SMALL_FEED)
    full, partial = ArbitrageProcessor(market, gas_units=10), ArbitrageProcessor(market, gas_units=10)
    run(full, records, batch=50)
    for i in range(0, 300, 50):
        partial.on_skipped(records[i:i + 50])
    run(partial, records[300:], batch=50)
    assert [partial.book.reserves(i) for i in range(len(partial.book))] == \
        [full.book.reserves(i) for i in range(len(full.book))]
    assert partial.stats()["skipped"] == 300 and partial.stats()["candidates"] <= full.stats()["candidates"]


def test_on_the_engines_book_the_same_as_on_its_own():
    """The engine applies each batch to its one book (expired rows too) before the processors;
    on that book the processor finds what it finds on its own, and never applies a row twice."""
    from tallyio.amm import PoolBook
    market = synthetic.Market(16, **SMALL)
    records, planted = synthetic.generate_feed(16, 900, market, plant_arbitrage=4, **SMALL_FEED)
    own = run(ArbitrageProcessor(market, gas_units=10), records, batch=100)
    book = PoolBook.from_source(market)
    proc = ArbitrageProcessor(gas_units=10)
    proc.on_feed(market.to_arrays())  # the engine calls on_feed first: on_book still wins
    proc.on_book(book)
    found = []
    for i in range(0, len(records), 100):
        book.apply(records[i:i + 100])
        found += proc.process(records[i:i + 100])
    assert found == own and len(own) == 4
    assert book.stats()["applied"] == len(records) == proc.stats()["applied"]
    # an explicit pools option keeps the processor on its own book; None or a stranger is refused
    mine = ArbitrageProcessor(market, gas_units=10)
    mine.on_book(book)
    assert mine.book is not book
    proc2 = ArbitrageProcessor()
    proc2.on_book(None)
    assert len(proc2.book) == 0
    with pytest.raises(TypeError, match="on_book takes a tallyio.amm.PoolBook"):
        proc2.on_book(market.to_arrays())
