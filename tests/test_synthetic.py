"""tallyio.synthetic: the seeded market, the pending-swap feed, its ground truth, the references."""
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tallyio import synthetic
from tallyio.record import FLAG_PENDING, PROTOCOL_UNISWAP_V2, TX_DTYPE, address_key, u256_column_to_ints

SMALL = dict(liquidity=(10**5, 10**6), price_decades=1)
SMALL_FEED = dict(gas_price=(1, 3), arb_gas_units=10, sandwich_gas_units=10)


def test_market_is_deterministic_and_shaped():
    a, b, c = synthetic.Market(1), synthetic.Market(1), synthetic.Market(2)
    assert a.to_arrays().keys() == b.to_arrays().keys()
    assert all(np.array_equal(x, y) for x, y in zip(a.to_arrays().values(), b.to_arrays().values()))
    assert a.tokens != c.tokens
    # 5 WETH pairs + 2 others, 3 pools each; token0 < token1; WETH priced at 1
    assert len(a.tokens) == 6 and len(a.pools) == 21 and len(a.pairs) == 7
    assert all(p.token0 < p.token1 and len(p.address) == 20 for p in a.pools)
    assert a.prices[a.weth] == 1 and all(len(a.siblings(i)) == 2 for i in range(21))
    assert all(p.reserve0 > 2**64 or p.reserve1 > 2**64 for p in a.pools)  # real-sized amounts


def test_market_starts_without_arbitrage():
    for seed in range(5):
        m = synthetic.Market(seed)
        for i in range(len(m.pools)):
            assert synthetic.reference_arbitrage(m, i, 0, gas_units=0) is None


def test_pools_table_round_trips_through_npz(tmp_path):
    m = synthetic.Market(3, n_tokens=4, pools_per_pair=2, extra_pairs=1)
    arrays = m.to_arrays()
    assert arrays["pool_reserve0"].shape == (len(m.pools), 4) and arrays["pool_address"].dtype == np.uint8
    np.savez(tmp_path / "t.npz", **arrays)
    back = synthetic.Market.from_arrays(dict(np.load(tmp_path / "t.npz")))
    assert back.tokens == m.tokens and back.prices == m.prices
    assert [(p.address, p.token0, p.token1, p.reserve0, p.reserve1) for p in back.pools] == \
        [(p.address, p.token0, p.token1, p.reserve0, p.reserve1) for p in m.pools]
    del arrays["pool_token1"]
    with pytest.raises(ValueError, match="pools table lacks pool_token1"):
        synthetic.Market.from_arrays(arrays)


@pytest.mark.parametrize("kwargs, match", [
    ({"n_tokens": 1}, "n_tokens must be an int >= 2, got 1"),
    ({"pools_per_pair": 0}, "pools_per_pair must be an int >= 1, got 0"),
    ({"extra_pairs": 99}, r"extra_pairs must be an int in \[0, 10\], got 99"),
    ({"liquidity": (10, 10**6)}, "liquidity must be"),
    ({"price_decades": -1}, "price_decades must be in"),
    ({"liquidity": (1000, 2000)}, "too small: pools"),
])
def test_market_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        synthetic.Market(0, **kwargs)


def test_feed_records_are_well_formed_pending_swaps():
    m = synthetic.Market(4)
    rec, planted = synthetic.generate_feed(4, 1500, m, plant_arbitrage=3, plant_sandwich=3, rate=50_000,
                                           start_id=100)
    assert rec.dtype == TX_DTYPE and len(rec) == 1500
    assert (rec["flags"] == FLAG_PENDING).all() and (rec["protocol"] == PROTOCOL_UNISWAP_V2).all()
    assert rec["id"].tolist() == list(range(100, 1600)) and (rec["block"] == 0).all()
    for f in ("sender", "pool", "token_in", "token_out"):
        assert rec[f + "_key"].tolist() == [address_key(bytes(a)) for a in rec[f]]
    assert (rec["token_in"] != rec["token_out"]).any(axis=1).all()
    # nonces count up per sender from 0
    for s in np.unique(rec["sender_key"]):
        assert rec["nonce"][rec["sender_key"] == s].tolist() == list(range(int((rec["sender_key"] == s).sum())))
    offs = rec["arrival_ns"]
    assert offs[0] == 0 and (np.diff(offs) >= 0).all()
    assert 0.02 < offs[-1] / 1e9 < 0.04  # 1500 tx at 50k tx/s: about 30 ms
    assert (rec["gas_price"] >= 10 * 10**9).all() and (rec["gas_price"] <= 100 * 10**9).all()
    assert all(p.amount_in > 0 and p.profit > 0 for p in planted)
    # every swap clears its own slippage bound on the market as it evolves
    state = m.copy()
    for row, a, mo in zip(rec, u256_column_to_ints(rec["amount_in"]), u256_column_to_ints(rec["amount_out_min"])):
        assert state.pools[state.pool_index(bytes(row["pool"]))].swap(bytes(row["token_in"]), a, mo) is not None


def test_feed_passes_the_engine_validator():
    from tallyio.feeds import validate
    rec, _ = synthetic.generate_feed(5, 300, synthetic.Market(5), plant_arbitrage=2, rate=1e5)
    validate(rec, "<synthetic>")


def test_feed_is_deterministic_and_leaves_the_market_alone():
    m = synthetic.Market(6)
    before = m.to_arrays()
    a, pa = synthetic.generate_feed(6, 400, m, plant_arbitrage=2, plant_sandwich=2, rate=1e4, arrival="even")
    b, pb = synthetic.generate_feed(6, 400, m, plant_arbitrage=2, plant_sandwich=2, rate=1e4, arrival="even")
    assert a.tobytes() == b.tobytes() and pa == pb
    assert all(np.array_equal(x, y) for x, y in zip(before.values(), m.to_arrays().values()))
    assert np.diff(a["arrival_ns"]).tolist() == [100_000] * 399  # even spacing at 10k tx/s
    c, _ = synthetic.generate_feed(7, 400, m, plant_arbitrage=2, plant_sandwich=2)
    assert a.tobytes() != c.tobytes() and (c["arrival_ns"] == 0).all()


def test_ground_truth_lists_each_plant_and_what_victims_leave():
    m = synthetic.Market(8)
    rec, planted = synthetic.generate_feed(8, 2000, m, plant_arbitrage=4, plant_sandwich=5)
    causes = [p.cause for p in planted]
    assert causes.count("arbitrage") == 4 and causes.count("sandwich") == 5
    assert all(p.kind == "arbitrage" for p in planted if p.cause in ("arbitrage", "victim"))
    victims = {p.tx_ids for p in planted if p.cause == "sandwich"}
    assert {p.tx_ids for p in planted if p.cause == "victim"} <= victims
    assert [p.tx_ids[0] for p in planted] == sorted(p.tx_ids[0] for p in planted)
    # each planted row is followed by its closing swap on the same pool
    for p in planted:
        i = p.tx_ids[0]
        assert bytes(rec["pool"][i + 1]) == bytes(rec["pool"][i])


def test_unplanted_feed_holds_nothing():
    for m, kw in ((synthetic.Market(9), {}), (synthetic.Market(9, **SMALL), SMALL_FEED)):
        rec, planted = synthetic.generate_feed(9, 1000, m, **kw)
        assert planted == []


@pytest.mark.parametrize("kwargs, match", [
    ({"n": -1}, "n must be a non-negative int, got -1"),
    ({"plant_arbitrage": 1.5}, "plant_arbitrage must be a non-negative int, got 1.5"),
    ({"n": 5, "plant_arbitrage": 2, "plant_sandwich": 1}, "n must be at least 2 \\* .* = 6, got 5"),
    ({"rate": 0}, "rate must be a positive number of tx/s or None, got 0"),
    ({"arrival": "burst"}, "arrival must be 'poisson' or 'even', got 'burst'"),
    ({"gas_price": (5, 1)}, "gas_price must be"),
])
def test_generate_feed_rejects_bad_arguments(kwargs, match):
    args = {"n": 10, **kwargs}
    with pytest.raises(ValueError, match=match):
        synthetic.generate_feed(0, args.pop("n"), synthetic.Market(0), **args)


def test_plant_arbitrage_needs_sibling_pools():
    with pytest.raises(ValueError, match="pools_per_pair >= 2"):
        synthetic.generate_feed(0, 10, synthetic.Market(0, pools_per_pair=1), plant_arbitrage=1)


def test_amount_out_hand_computed():
    assert synthetic.amount_out(1000, 10_000, 10_000) == 906
    assert synthetic.amount_out(0, 10, 10) == 0


def python_brute_force(xa, ya, xb, yb):
    best = (0, 0)
    for d in range(1, xb + 1):
        p = synthetic.amount_out(synthetic.amount_out(d, xa, ya), yb, xb) - d
        if p > best[1]:
            best = (d, p)
    return best


@settings(max_examples=100, deadline=None)
@given(xa=st.integers(2, 2000), ya=st.integers(2, 2000), xb=st.integers(2, 2000), yb=st.integers(2, 2000))
def test_vectorized_exhaustive_reference_equals_a_plain_loop(xa, ya, xb, yb):
    d, p, exhaustive = synthetic.best_cross_input(xa, ya, xb, yb)
    assert exhaustive and (d, p) == python_brute_force(xa, ya, xb, yb)


@settings(max_examples=40, deadline=None)
@given(xa=st.integers(10**5, 10**6), ratio=st.floats(0.01, 100), skew=st.floats(1.01, 1.3))
def test_search_reference_agrees_with_exhaustive_within_rounding(xa, ratio, skew):
    ya = max(2, int(xa * ratio))
    xb, yb = int(xa * skew), ya
    d, p, ex = synthetic.best_cross_input(xa, ya, xb, yb)
    d2, p2, ex2 = synthetic.best_cross_input(xa, ya, xb, yb, limit=10)  # force the search path
    assert ex and not ex2 and p - 4 <= p2 <= p


@settings(max_examples=100, deadline=None)
@given(x=st.integers(50, 5000), y=st.integers(50, 5000), v=st.integers(1, 2000), slip=st.integers(0, 500))
def test_frontrun_room_against_a_linear_scan(x, y, v, slip):
    m = synthetic.amount_out(v, x, y) * (1000 - slip) // 1000

    def ok(f):
        o = synthetic.amount_out(v, x + f, y - synthetic.amount_out(f, x, y))
        return o > 0 and o >= m

    want = None
    if ok(0):
        want = 0
        while ok(want + 1):
            want += 1
    assert synthetic.frontrun_room(v, m, x, y) == want


def test_gas_in_token_rounds_up():
    m = synthetic.Market.from_parts([b"\x01" * 20, b"\x02" * 20],
                                    {b"\x01" * 20: Fraction(1), b"\x02" * 20: Fraction(3, 2)}, [])
    assert synthetic.gas_in_token(m, b"\x01" * 20, 1000) == 1000
    assert synthetic.gas_in_token(m, b"\x02" * 20, 1000) == 667


def test_small_market_ground_truth_is_exhaustive():
    m = synthetic.Market(10, **SMALL)
    _, planted = synthetic.generate_feed(10, 500, m, plant_arbitrage=3, plant_sandwich=2, **SMALL_FEED)
    assert planted and all(p.exhaustive for p in planted)


@pytest.mark.parametrize("seed", [0, 1, 7])
def test_ground_truth_recovers_what_the_generator_planted(seed):
    """The references replayed over the feed alone find exactly what generate_feed planted."""
    market = synthetic.Market(seed)
    records, planted = synthetic.generate_feed(seed, 3000, market, plant_arbitrage=5,
                                               plant_sandwich=4, rate=1e5)
    found = synthetic.ground_truth(records, market)
    key = lambda p: (p.kind, p.tx_ids, p.pools, p.profit, p.profit_token)  # noqa: E731
    assert sorted(map(key, found)) == sorted(map(key, planted))


def test_truth_tally_matches_kind_tx_pools_token_and_profit(tmp_path):
    from tallyio.feeds import read_feed, write_feed
    from tallyio.opportunity import Opportunity

    market = synthetic.Market(3)
    records, planted = synthetic.generate_feed(3, 2000, market, plant_arbitrage=3, plant_sandwich=2)
    path = tmp_path / "feed.npz"
    write_feed(path, records, **market.to_arrays(), **synthetic.truth_arrays(planted))
    _, meta = read_feed(path)
    tally = synthetic.TruthTally.from_metadata(meta)
    assert synthetic.TruthTally.from_metadata({}) is None
    assert tally.summary()["found"] == 0 and tally.summary()["planted"] == len(planted)

    def opp(p, profit):
        return Opportunity("s", p.kind, profit, p.profit_token, p.tx_ids, p.pools)

    sand = next(p for p in planted if p.kind == "sandwich_opportunity")  # exhaustive: exact profit
    arb = next(p for p in planted if p.kind == "arbitrage" and not p.exhaustive)
    tally.see([opp(sand, sand.profit + 1), opp(arb, arb.profit - 1)])  # wrong profits
    tally.see([Opportunity("s", arb.kind, arb.profit, arb.profit_token, (arb.tx_ids[0] + 1,),
                           arb.pools)])  # another transaction
    s = tally.summary()
    assert s["found"] == 0 and s["short_of_reference"] == 2
    tally.see([opp(sand, sand.profit), opp(arb, arb.profit + 2)])  # a better search still counts
    s = tally.summary()
    assert s["found"] == 2 and len(s["missed"]) == len(planted) - 2
    assert s["by_kind"]["sandwich_opportunity"]["found"] == 1


def test_bundled_feed_carries_its_planted_opportunities():
    """The bundled feed's truth_* arrays are what `python -m tallyio.synthetic truth` computes."""
    from pathlib import Path

    from tallyio.feeds import read_feed

    records, meta = read_feed(Path(__file__).resolve().parents[1] / "tallyio/data/sample_feed.npz")
    want = synthetic.truth_arrays(synthetic.ground_truth(records, synthetic.Market.from_arrays(meta)))
    for k, v in want.items():
        assert np.array_equal(meta[k], v), k
    assert len(want["truth_kind"]) == 30
