"""tallyio.amm.PoolBook and the screens over it, against plain-Python models.

The models below state the contract in Python ints, row by row: ``Model.apply`` what each row does
to its pool (status, amount out, reserves before and after), ``model_arbitrage`` and
``model_sandwich`` what the screens report (through ``tallyio.amm_reference``, the kernels'
reference, with each pool's own fee). Hypothesis draws pools tables with mixed fees, token orders
and siblings, and batches of rows of every kind, split at random.
"""
from __future__ import annotations

import gc
import random
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from tallyio import amm
from tallyio import amm_reference as ref
from tallyio import synthetic
from tallyio.amm import (ARBITRAGE_DTYPE, OUTCOME_DTYPE, SANDWICH_DTYPE, STATUS_APPLIED,
                         STATUS_NAMES, STATUS_NOT_PENDING, STATUS_NOT_V2,
                         STATUS_REVERTED_OVERFLOW, STATUS_REVERTED_SLIPPAGE, STATUS_REVERTED_ZERO,
                         STATUS_TOKEN_MISMATCH, STATUS_UNKNOWN_POOL, ArbitrageScreen, PoolBook,
                         SandwichScreen, balancer_v1_out_given_in)
from tallyio.pricing import PriceTable, price_table
from tallyio.record import (FLAG_PENDING, PROTOCOL_BALANCER_V1, PROTOCOL_UNISWAP_V2,
                            PROTOCOL_UNISWAP_V3, TX_DTYPE, address_hex, address_key, int_to_u256,
                            u256_column_to_ints)

U256 = 1 << 256
FEES = [(997, 1000), (9975, 10000), (998, 1000), (99, 100)]


def addr(n: int) -> bytes:
    """A 20-byte address whose 64-bit key is distinct for distinct n."""
    return bytes([0xAA] * 12) + n.to_bytes(8, "big")


def words(values):
    return np.array([int_to_u256(v) for v in values], dtype=np.uint64).reshape(-1, 4)


def make_table(pools, fees=None):
    """A pools table from ``(address n, token0 n, token1 n, reserve0, reserve1)`` tuples."""
    t = {
        "pool_address": np.array([list(addr(p[0])) for p in pools], dtype=np.uint8).reshape(-1, 20),
        "pool_token0": np.array([list(addr(p[1])) for p in pools], dtype=np.uint8).reshape(-1, 20),
        "pool_token1": np.array([list(addr(p[2])) for p in pools], dtype=np.uint8).reshape(-1, 20),
        "pool_reserve0": words([p[3] for p in pools]),
        "pool_reserve1": words([p[4] for p in pools]),
    }
    if fees is not None:
        t["pool_fee_num"] = np.array([f[0] for f in fees], dtype=np.uint32)
        t["pool_fee_den"] = np.array([f[1] for f in fees], dtype=np.uint32)
    return t


def make_rows(specs):
    """TX_DTYPE rows from dicts: pool n, token_in n, amount_in, amount_out_min, gas, and the
    optional pending / protocol / pool_bytes / id overrides."""
    rows = np.zeros(len(specs), dtype=TX_DTYPE)
    for k, s in enumerate(specs):
        pool = s.get("pool_bytes", addr(s["pool"]))
        rows[k]["id"] = s.get("id", k)
        rows[k]["flags"] = FLAG_PENDING if s.get("pending", True) else 0
        rows[k]["protocol"] = s.get("protocol", PROTOCOL_UNISWAP_V2)
        rows[k]["pool"] = np.frombuffer(pool, np.uint8)
        rows[k]["pool_key"] = address_key(addr(s["pool"]))  # a mismatched address keeps the key
        rows[k]["token_in"] = np.frombuffer(addr(s["token_in"]), np.uint8)
        rows[k]["token_in_key"] = address_key(addr(s["token_in"]))
        rows[k]["amount_in"] = int_to_u256(s["amount_in"])
        rows[k]["amount_out_min"] = int_to_u256(s["amount_out_min"])
        rows[k]["gas_price"] = s.get("gas", 1)
    return rows


class Model:
    """The book in Python ints: what ``PoolBook.apply`` must do, row by row."""

    def __init__(self, pools, fees):
        self.pools = [dict(address=p[0], t0=p[1], t1=p[2], r0=p[3], r1=p[4], fee=f)
                      for p, f in zip(pools, fees)]
        self.by_address = {p[0]: i for i, p in enumerate(pools)}

    def apply(self, spec):
        """``(pool, status, zero_for_one, amount_out, before, after)`` of one row spec."""
        if not spec.get("pending", True):
            return -1, STATUS_NOT_PENDING, 0, 0, (0, 0), (0, 0)
        if spec.get("protocol", PROTOCOL_UNISWAP_V2) != PROTOCOL_UNISWAP_V2:
            return -1, STATUS_NOT_V2, 0, 0, (0, 0), (0, 0)
        i = self.by_address.get(spec["pool"])
        if i is None or spec.get("pool_bytes", addr(spec["pool"])) != addr(spec["pool"]):
            return -1, STATUS_UNKNOWN_POOL, 0, 0, (0, 0), (0, 0)
        p = self.pools[i]
        before = (p["r0"], p["r1"])
        if spec["token_in"] not in (p["t0"], p["t1"]):
            return i, STATUS_TOKEN_MISMATCH, 0, 0, before, before
        z = spec["token_in"] == p["t0"]
        rin, rout = (p["r0"], p["r1"]) if z else (p["r1"], p["r0"])
        a, (g, d) = spec["amount_in"], p["fee"]
        out = a * g * rout // (rin * d + a * g) if a else 0
        if out == 0:
            status = STATUS_REVERTED_ZERO
        elif out < spec["amount_out_min"]:
            status = STATUS_REVERTED_SLIPPAGE
        elif rin + a >= U256:
            status = STATUS_REVERTED_OVERFLOW
        else:
            status = STATUS_APPLIED
            rin, rout = rin + a, rout - out
            p["r0"], p["r1"] = (rin, rout) if z else (rout, rin)
        return i, status, int(z), out if status == STATUS_APPLIED else 0, before, (p["r0"], p["r1"])


def outcome_tuples(outcome):
    cols = {k: u256_column_to_ints(outcome[k]) for k in
            ("amount_out", "reserve0_before", "reserve1_before", "reserve0_after", "reserve1_after")}
    return [(int(outcome["pool"][k]), int(outcome["status"][k]), int(outcome["zero_for_one"][k]),
             cols["amount_out"][k], (cols["reserve0_before"][k], cols["reserve1_before"][k]),
             (cols["reserve0_after"][k], cols["reserve1_after"][k])) for k in range(len(outcome))]


# ---- hypothesis: tables and rows ----

@st.composite
def books(draw, max_reserve=10**7, min_reserve=10**3):
    """Pools over tokens 1..3 (several pools per pair, either token order), mixed fees."""
    n = draw(st.integers(1, 5))
    pools, fees = [], []
    for k in range(n):
        a, b = draw(st.sampled_from([(1, 2), (2, 1), (1, 3), (2, 3)]))
        r0 = draw(st.integers(min_reserve, max_reserve))
        r1 = draw(st.integers(min_reserve, max_reserve))
        pools.append((100 + k, a, b, r0, r1))
        fees.append(draw(st.sampled_from(FEES)))
    return pools, fees


@st.composite
def row_specs(draw, pools, max_amount=10**6):
    kind = draw(st.sampled_from(["swap"] * 6 + ["mined", "v3", "unknown", "mismatch_addr",
                                                 "mismatch_token"]))
    p = draw(st.sampled_from(pools))
    spec = {"pool": p[0], "token_in": draw(st.sampled_from([p[1], p[2]])),
            "amount_in": draw(st.integers(0, max_amount)),
            "amount_out_min": draw(st.integers(0, max_amount // 10)),
            "gas": draw(st.integers(0, 5))}
    if kind == "mined":
        spec["pending"] = False
    elif kind == "v3":
        spec["protocol"] = PROTOCOL_UNISWAP_V3
    elif kind == "unknown":
        spec["pool"] = 999
    elif kind == "mismatch_addr":
        spec["pool_bytes"] = bytes([0xBB] * 12) + addr(p[0])[12:]  # same 64-bit key
    elif kind == "mismatch_token":
        spec["token_in"] = 7
    return spec


@st.composite
def scenarios(draw, max_reserve=10**7, max_amount=10**6):
    pools, fees = draw(books(max_reserve=max_reserve))
    specs = draw(st.lists(row_specs(pools, max_amount), min_size=0, max_size=40))
    for k, s in enumerate(specs):
        s["id"] = k
    cuts = sorted(draw(st.lists(st.integers(0, len(specs)), max_size=4)))
    return pools, fees, specs, [0] + cuts + [len(specs)]


@settings(max_examples=200, deadline=None)
@given(scenarios())
def test_apply_equals_a_python_replay(scenario):
    pools, fees, specs, cuts = scenario
    book, model = PoolBook(make_table(pools, fees)), Model(pools, fees)
    rows = make_rows(specs)
    for a, b in zip(cuts, cuts[1:]):
        outcome = book.apply(rows[a:b])
        assert outcome.dtype == OUTCOME_DTYPE and len(outcome) == b - a
        assert outcome_tuples(outcome) == [model.apply(s) for s in specs[a:b]]
        assert book.outcome is outcome and not outcome.flags.writeable
    assert [book.reserves(i) for i in range(len(book))] == [(p["r0"], p["r1"]) for p in model.pools]
    replay = Model(pools, fees)
    want = np.bincount([replay.apply(s)[1] for s in specs], minlength=8).tolist()
    assert book.stats() == dict(zip(STATUS_NAMES, want))


@settings(max_examples=100, deadline=None)
@given(scenarios(max_reserve=U256 - 1, max_amount=U256 - 1))
def test_apply_full_u256_range_never_wraps(scenario):
    """Reserves and amounts anywhere in u256: a reserve that would pass 2**256 - 1 is an
    overflow revert, a zero output a zero revert; never a wrapped number or a crash."""
    pools, fees, specs, cuts = scenario
    book, model = PoolBook(make_table(pools, fees)), Model(pools, fees)
    rows = make_rows(specs)
    for a, b in zip(cuts, cuts[1:]):
        assert outcome_tuples(book.apply(rows[a:b])) == [model.apply(s) for s in specs[a:b]]


def test_reverts_by_reason():
    big = U256 - 1000
    pools = [(1, 1, 2, big, big), (2, 1, 2, 10**6, 10**6)]
    book = PoolBook(make_table(pools))
    rows = make_rows([
        {"pool": 1, "token_in": 1, "amount_in": 1001, "amount_out_min": 0},   # reserve0 past 2**256-1
        {"pool": 2, "token_in": 1, "amount_in": 0, "amount_out_min": 0},      # zero input
        {"pool": 2, "token_in": 2, "amount_in": 1, "amount_out_min": 0},      # rounds to zero out
        {"pool": 2, "token_in": 2, "amount_in": 1000, "amount_out_min": 10**6},  # slippage
        {"pool": 2, "token_in": 2, "amount_in": 1000, "amount_out_min": 996},
        {"pool": 1, "token_in": 1, "amount_in": 999, "amount_out_min": 0},    # lands on 2**256 - 1
    ])
    out = book.apply(rows)
    assert out["status"].tolist() == [STATUS_REVERTED_OVERFLOW, STATUS_REVERTED_ZERO,
                                      STATUS_REVERTED_ZERO, STATUS_REVERTED_SLIPPAGE,
                                      STATUS_APPLIED, STATUS_APPLIED]
    # 1000 in: 1000*997*10**6 // (10**6*1000 + 997000) = 996 out
    assert book.reserves(1) == (10**6 - 996, 10**6 + 1000)
    # 999 in: 999*997*big // (big*1000 + 999*997) = 996 out (the quotient is just below 996.003)
    assert book.reserves(0) == (U256 - 1, big - 996)
    st_ = book.stats()
    assert (st_["reverted_overflow"], st_["reverted_zero"], st_["reverted_slippage"],
            st_["applied"]) == (1, 2, 1, 2)
    # the overflow row reports the pool unchanged and nothing out
    assert u256_column_to_ints(out["reserve0_after"][:1]) == [big]
    assert u256_column_to_ints(out["amount_out"][:1]) == [0]


# ---- bad tables ----

def bad(pools, fees=None, **changes):
    t = make_table(pools, fees)
    t.update(changes)
    return t


@pytest.mark.parametrize("table, match", [
    (bad([(1, 1, 2, 5, 5), (2, 1, 2, 5, 5), (1, 2, 3, 5, 5)]),
     "pool 0x" + addr(1).hex() + r" appears twice in the pools table \(rows 0 and 2\)"),
    (bad([(1, 1, 2, 5, 5), (2, 3, 3, 5, 5)]),
     "pool 0x" + addr(2).hex() + r" \(row 1\) has token0 == token1"),
    (bad([(1, 1, 2, 5, 5), (2, 1, 2, 0, 5)]), "pool 0x" + addr(2).hex() + r" \(row 1\) has a zero reserve"),
    (bad([(1, 1, 2, 5, 5)], [(1000, 1000)]), "pool 0x" + addr(1).hex() + r" \(row 0\) has fee 1000/1000"),
    (bad([(1, 1, 2, 5, 5)], [(0, 1000)]), "pool 0x" + addr(1).hex() + r" \(row 0\) has fee 0/1000"),
    (bad([(1, 1, 2, 5, 5), (2, 1, 2, 5, 5)], pool_token1=make_table([(1, 1, 2, 5, 5)])["pool_token1"]),
     "pools table columns differ in length: .*pool_token1 has 1"),
    (bad([(1, 1, 2, 5, 5)], pool_reserve0=np.zeros((1, 3), np.uint64)),
     r"pool_reserve0 must be \(n, 4\) uint64 words"),
    (bad([(1, 1, 2, 5, 5)], pool_fee_num=np.array([997, 997])), r"pool_fee_num must be \(1,\)"),
    (bad([(1, 1, 2, 5, 5)], token_address=np.zeros((2, 20), np.uint8),
         token_price_num=words([1])), "token_price_num has 1 rows, token_address 2"),
])
def test_bad_tables_raise_naming_the_pool(table, match):
    with pytest.raises(ValueError, match=match):
        PoolBook(table)


def test_shared_pool_key_names_both_pools():
    t = make_table([(1, 1, 2, 5, 5), (2, 1, 2, 5, 5)])
    t["pool_address"][1] = t["pool_address"][0]
    t["pool_address"][1, :12] = 0xCC  # another address with pool 0's last 8 bytes
    with pytest.raises(ValueError, match=f"pools 0x{addr(1).hex()} and 0x{'cc' * 12}"):
        PoolBook(t)


def test_missing_column_and_not_a_mapping():
    t = make_table([(1, 1, 2, 5, 5)])
    del t["pool_reserve1"]
    with pytest.raises(ValueError, match="pools table lacks pool_reserve1"):
        PoolBook(t)
    with pytest.raises(TypeError, match="table must be a mapping"):
        PoolBook([1, 2])
    with pytest.raises(TypeError, match="pools must be a Market"):
        PoolBook.from_source(42)
    with pytest.raises(ValueError, match="pools must name an existing .npz file"):
        PoolBook.from_source("/nonexistent/pools.npz")


@settings(max_examples=60, deadline=None)
@given(books(), st.data())
def test_any_single_defect_is_named(book_spec, data):
    pools, fees = book_spec
    k = data.draw(st.integers(0, len(pools) - 1))
    defect = data.draw(st.sampled_from(["zero0", "zero1", "same_tokens", "duplicate", "fee"]))
    p = list(pools[k])
    if defect == "zero0":
        p[3] = 0
    elif defect == "zero1":
        p[4] = 0
    elif defect == "same_tokens":
        p[2] = p[1]
    elif defect == "duplicate":
        pools = pools + [tuple(p)]
        fees = fees + [fees[k]]
        k = len(pools) - 1
    else:
        fees = list(fees)
        fees[k] = (fees[k][1], fees[k][1])
    if defect != "duplicate":
        pools = pools[:k] + [tuple(p)] + pools[k + 1:]
    with pytest.raises(ValueError, match="0x" + addr(pools[k][0]).hex()):
        PoolBook(make_table(pools, fees))


# ---- accessors, __new__, outcome_for ----

def test_accessors():
    t = make_table([(1, 1, 2, 10, 20), (2, 2, 1, 30, 40), (3, 1, 3, 50, 60)],
                   [(997, 1000), (9975, 10000), (99, 100)])
    t["token_address"] = np.array([list(addr(1))], np.uint8)
    book = PoolBook(t)
    assert len(book) == 3 and book.reserves(1) == (30, 40) and book.fee(1) == (9975, 10000)
    assert book.address(0) == addr(1) and book.token0(1) == addr(2) and book.token1(2) == addr(3)
    assert book.siblings(0) == (1,) and book.siblings(1) == (0,) and book.siblings(2) == ()
    keys = np.array([address_key(addr(3)), 12345, address_key(addr(1))], np.uint64)
    assert book.lookup(keys).tolist() == [2, -1, 0]
    assert book.index(addr(2)) == 1 and book.index("0x" + addr(9).hex()) == -1
    assert book.token_table["token_address"].tolist() == [list(addr(1))]
    copy = PoolBook(book.to_table())
    assert [copy.reserves(i) for i in range(3)] == [book.reserves(i) for i in range(3)]
    assert [copy.fee(i) for i in range(3)] == [book.fee(i) for i in range(3)]
    with pytest.raises(IndexError, match="pool index 3 out of range for a book of 3 pools"):
        book.reserves(3)
    with pytest.raises(TypeError, match="pool index must be an int"):
        book.fee("0")


def test_a_book_made_with_new_is_empty_not_broken():
    book = PoolBook.__new__(PoolBook)
    assert len(book) == 0 and len(book.outcome) == 0 and book.token_table == {}
    rows = make_rows([{"pool": 1, "token_in": 1, "amount_in": 5, "amount_out_min": 0}] * 3)
    assert book.apply(rows)["status"].tolist() == [STATUS_UNKNOWN_POOL] * 3
    assert book.stats()["unknown_pool"] == 3
    prices = PriceTable(None)
    for screen in (ArbitrageScreen(book, prices), SandwichScreen(book, prices)):
        assert len(screen(rows)) == 0
    for cls in (ArbitrageScreen, SandwichScreen):
        with pytest.raises(TypeError, match="not initialised"):
            cls.__new__(cls)(rows)


def test_a_book_keeps_its_pools():
    book = PoolBook(make_table([(1, 1, 2, 10, 10)]))
    screen = ArbitrageScreen(book, PriceTable(addr(1)))
    with pytest.raises(TypeError, match="already initialised"):
        book.__init__(make_table([(1, 1, 2, 10, 10), (2, 1, 2, 10, 10)]))
    assert len(book) == 1 and screen.book is book


def test_apply_refuses_what_is_not_a_batch():
    book = PoolBook(make_table([(1, 1, 2, 10, 10)]))
    with pytest.raises(TypeError, match="rows must be a numpy array of TX_DTYPE"):
        book.apply(np.zeros(3, np.int64))
    with pytest.raises(ValueError, match="rows must be 1-D"):
        book.apply(np.zeros((2, 2), TX_DTYPE))


def test_outcome_for_matches_rows_by_id():
    book = PoolBook(make_table([(1, 1, 2, 10**6, 10**6)]))
    rows = make_rows([{"pool": 1, "token_in": 1 + k % 2, "amount_in": 1000 + k, "amount_out_min": 0,
                       "id": 100 + k} for k in range(6)])
    out = book.apply(rows)
    assert book.outcome_for(rows) is out
    sub = rows[[4, 1, 2]]
    got = book.outcome_for(sub)
    assert (got == out[[4, 1, 2]]).all() and not got.flags.writeable  # fields: fancy indexing
    assert got["pool"].tolist() == [0, 0, 0]                           # leaves padding undefined
    stranger = make_rows([{"pool": 1, "token_in": 1, "amount_in": 1, "amount_out_min": 0, "id": 7}])
    with pytest.raises(ValueError, match="batch row id 7 was not in the book's last apply"):
        book.outcome_for(stranger)
    same_ids = make_rows([{"pool": 1, "token_in": 1, "amount_in": 1, "amount_out_min": 0, "id": 5}] * 3)
    book.apply(same_ids)
    assert book.outcome_for(same_ids) is book.outcome  # identity needs no unique ids
    with pytest.raises(ValueError, match="duplicate ids"):
        book.outcome_for(same_ids[:2])


def test_outcome_survives_the_next_apply_and_the_rows():
    book = PoolBook(make_table([(1, 1, 2, 10**6, 10**6)]))
    rows = make_rows([{"pool": 1, "token_in": 1, "amount_in": 1000, "amount_out_min": 0}])
    first = book.apply(rows)
    kept = first.tobytes()
    del rows
    gc.collect()
    book.apply(make_rows([{"pool": 1, "token_in": 2, "amount_in": 5000, "amount_out_min": 0}]))
    assert first.tobytes() == kept


# ---- screens against Python models ----

def gap(x0, y0, f0, x1, y1, f1):
    """A round trip through the two pools gains at zero gas in some direction (X = token0 of
    the first; the second's reserves already in that orientation)."""
    gg, dd = f0[0] * f1[0], f0[1] * f1[1]
    return gg * y0 * x1 > dd * x0 * y1 or gg * y1 * x0 > dd * x1 * y0


def model_screens(pools, fees, specs, prices: PriceTable, gas_units, min_profit, max_scan):
    """What apply + ArbitrageScreen + SandwichScreen must report, row by row: lists of tuples in
    the found dtypes' field order (u256 fields as ints)."""
    model = Model(pools, fees)
    t0 = [addr(p[1]) for p in pools]
    t1 = [addr(p[2]) for p in pools]
    pair = [frozenset((p[1], p[2])) for p in pools]
    sibs = [[j for j in range(len(pools)) if j != i and pair[j] == pair[i]] for i in range(len(pools))]
    open_pairs, arbs, sands = set(), [], []
    for r, spec in enumerate(specs):
        pm = model.pools
        before = [(p["r0"], p["r1"]) for p in pm]
        i, status, z, _, _, _ = model.apply(spec)
        # sandwich: every swap on a known pool in the right tokens, reserves before it
        if status <= STATUS_REVERTED_OVERFLOW:
            token = t0[i] if z else t1[i]
            if token in prices.prices:
                rin, rout = before[i] if z else before[i][::-1]
                s = ref.best_sandwich(spec["amount_in"], spec["amount_out_min"], rin, rout,
                                      fee=pm[i]["fee"])
                if s is not None:
                    cost = prices.gas_cost(token, gas_units * (2 * spec["gas"] + 1))
                    if s.gross_profit - cost > min_profit:
                        sands.append((r, i, z, 0 if s.bound == "slippage" else 1, s.front_in,
                                      s.front_out, s.victim_out, s.back_out, s.gross_profit, cost))
        if status != STATUS_APPLIED:
            continue
        cands = []
        for j in sibs[i]:
            flip = t0[j] != t0[i]
            xj, yj = (pm[j]["r1"], pm[j]["r0"]) if flip else (pm[j]["r0"], pm[j]["r1"])
            if gap(pm[i]["r0"], pm[i]["r1"], pm[i]["fee"], xj, yj, pm[j]["fee"]):
                cands.append(j)
            else:
                open_pairs.discard(frozenset((i, j)))
        if not cands:
            continue
        token = prices.profit_token(t0[i], t1[i])
        if token is None:
            continue
        cost = prices.gas_cost(token, gas_units * spec["gas"])
        best = None
        for j in cands:
            for a, b in ((i, j), (j, i)):
                xa, ya = (pm[a]["r0"], pm[a]["r1"]) if t0[a] == token else (pm[a]["r1"], pm[a]["r0"])
                xb, yb = (pm[b]["r0"], pm[b]["r1"]) if t0[b] == token else (pm[b]["r1"], pm[b]["r0"])
                res = ref.best_cross_pool(xa, ya, xb, yb, cost + min_profit, max_scan,
                                          fee_a=pm[a]["fee"], fee_b=pm[b]["fee"])
                if res is not None and (best is None or res.gross_profit > best[0].gross_profit):
                    best = (res, a, b, j)
        if best is None:
            continue
        res, a, b, j = best
        if frozenset((i, j)) in open_pairs:
            continue
        open_pairs.add(frozenset((i, j)))
        arbs.append((r, a, b, int(t0[a] == token), int(res.optimal), res.amount_in,
                     res.amount_mid, res.amount_out, res.gross_profit, cost))
    return arbs, sands


def found_tuples(found):
    names = found.dtype.names
    cols = {k: (u256_column_to_ints(found[k]) if found.dtype[k].shape == (4,) else found[k].tolist())
            for k in names}
    return [tuple(cols[k][n] for k in names) for n in range(len(found))]


@st.composite
def priced(draw):
    """WETH = token 1; token 2 priced at a drawn fraction or not; token 3 never."""
    prices = {}
    if draw(st.booleans()):
        prices[addr(2)] = Fraction(draw(st.integers(1, 50)), draw(st.integers(1, 50)))
    return PriceTable(addr(1), prices)


@settings(max_examples=150, deadline=None)
@given(scenarios(max_reserve=10**6, max_amount=4 * 10**5), priced(), st.integers(0, 3),
       st.integers(0, 5), st.sampled_from([1, 64, 1 << 20]))
def test_screens_equal_the_python_model(scenario, prices, gas_units, min_profit, max_scan):
    """Mixed fees, flipped token orders, rows of every kind, any batch split: the screens report
    what the model does, in C, from the outcome alone (siblings' reserves as they were at each
    row), and each gap once."""
    pools, fees, specs, cuts = scenario
    for s in specs:
        s["amount_out_min"] //= 50  # loose bounds: room to sandwich
    book = PoolBook(make_table(pools, fees))
    arb = ArbitrageScreen(book, prices, gas_units=gas_units, min_profit=min_profit, max_scan=max_scan)
    sand = SandwichScreen(book, prices, gas_units=gas_units, min_profit=min_profit)
    rows = make_rows(specs)
    got_a, got_s = [], []
    for a, b in zip(cuts, cuts[1:]):
        batch = rows[a:b]
        book.apply(batch)
        for t in found_tuples(arb(batch)):
            got_a.append((t[0] + a,) + t[1:])
        for t in found_tuples(sand(batch)):
            got_s.append((t[0] + a,) + t[1:])
    want_a, want_s = model_screens(pools, fees, specs, prices, gas_units, min_profit, max_scan)
    event(f"arbitrages found: {min(len(want_a), 2)}+, sandwiches found: {min(len(want_s), 2)}+")
    assert got_a == want_a
    assert got_s == want_s


def test_screens_find_on_mixed_fee_pools():
    """A deterministic case where both screens fire, so the model test above is not vacuous."""
    pools = [(1, 1, 2, 10**6, 10**6), (2, 2, 1, 10**6, 10**6), (3, 1, 2, 10**6, 10**6)]
    fees = [(997, 1000), (9975, 10000), (99, 100)]
    specs = [{"pool": 1, "token_in": 1, "amount_in": 10**5, "amount_out_min": 0, "gas": 1, "id": 0},
             {"pool": 1, "token_in": 1, "amount_in": 10**4, "amount_out_min": 0, "gas": 1, "id": 1},
             {"pool": 2, "token_in": 1, "amount_in": 3 * 10**5, "amount_out_min": 0, "gas": 1, "id": 2}]
    prices = PriceTable(addr(1))
    book = PoolBook(make_table(pools, fees))
    arb, sand = ArbitrageScreen(book, prices, gas_units=1), SandwichScreen(book, prices, gas_units=1)
    rows = make_rows(specs)
    book.apply(rows)
    got_a, got_s = found_tuples(arb(rows)), found_tuples(sand(rows))
    want_a, want_s = model_screens(pools, fees, specs, prices, 1, 0, 1024)
    assert got_a == want_a and got_s == want_s
    assert [t[0] for t in got_a] == [0, 2]  # row 1 widens pair (0, 1)'s open gap: no repeat
    assert arb.stats()["repeats"] >= 1 and arb.open_pairs()
    assert len(got_s) >= 2


def test_screens_read_a_subset_of_the_applied_rows():
    """The engine applies rows it then drops (expired): a screen of the rest sees the same pool
    states as a screen of everything, row for row."""
    market = synthetic.Market(5, liquidity=(10**5, 10**6), price_decades=1)
    records, planted = synthetic.generate_feed(5, 600, market, plant_arbitrage=3, plant_sandwich=3,
                                               gas_price=(1, 3), arb_gas_units=10,
                                               sandwich_gas_units=10)
    prices = price_table(market.to_arrays())
    triggers = {p.tx_ids[0] for p in planted}
    drop = np.array([i not in triggers and i % 3 == 0 for i in records["id"].tolist()])
    full_book, sub_book = PoolBook.from_source(market), PoolBook.from_source(market)
    screens = [(ArbitrageScreen(b, prices, gas_units=10), SandwichScreen(b, prices, gas_units=10))
               for b in (full_book, sub_book)]
    full, sub = [], []
    for k in range(0, len(records), 100):
        chunk = records[k:k + 100]
        keep = chunk[~drop[k:k + 100]]
        full_book.apply(chunk)
        sub_book.apply(chunk)
        for screen in screens[0]:
            found = screen(chunk)
            full += [(int(chunk["id"][r]),) + t[1:] for r, t in zip(found["row"], found_tuples(found))]
        for screen in screens[1]:
            found = screen(keep)
            sub += [(int(keep["id"][r]),) + t[1:] for r, t in zip(found["row"], found_tuples(found))]
    assert sorted(sub) == sorted(full) and len(full) >= 6


def test_screen_options_are_checked():
    book = PoolBook(make_table([(1, 1, 2, 10, 10)]))
    prices = PriceTable(addr(1))
    with pytest.raises(ValueError, match="gas_units must be an int in"):
        ArbitrageScreen(book, prices, gas_units=-1)
    with pytest.raises(ValueError, match="max_scan must be an int in"):
        ArbitrageScreen(book, prices, max_scan=0)
    with pytest.raises(ValueError, match="min_profit must be an int in"):
        SandwichScreen(book, prices, min_profit=U256)
    with pytest.raises(ValueError, match="needs more than 256 bits"):
        SandwichScreen(book, PriceTable(addr(1), {addr(2): Fraction(U256, 3)}))


def test_found_dtypes_and_exports():
    assert amm.PoolBook is PoolBook and amm.OUTCOME_DTYPE is OUTCOME_DTYPE
    assert ARBITRAGE_DTYPE.names[:3] == ("row", "pool_a", "pool_b")
    assert SANDWICH_DTYPE.names[:2] == ("row", "pool")
    assert STATUS_NAMES[STATUS_TOKEN_MISMATCH] == "token_mismatch"
    assert len({STATUS_APPLIED, STATUS_REVERTED_SLIPPAGE, STATUS_REVERTED_ZERO,
                STATUS_REVERTED_OVERFLOW, STATUS_NOT_PENDING, STATUS_NOT_V2,
                STATUS_UNKNOWN_POOL, STATUS_TOKEN_MISMATCH}) == 8
    assert address_hex(addr(1)).startswith("0xaaaa")


# ---- Balancer V1 pools: exact swaps (the BPool's own math, against the plain-Python port in
# tallyio.amm_reference) and V2 <-> Balancer V1 routes in the ArbitrageScreen, against an
# exhaustive integer scan

BONE = 10**18
X, Y = 10, 11  # the Balancer tests' tokens: X (lower address) is token0 and priced


def table(v2=(), bal=()):
    """``v2``: ``(address n, reserve0, reserve1)``; ``bal``: ``(address n, balance0, balance1,
    weight0, weight1, swap_fee)``; every pool trades X/Y."""
    pools = [(n, X, Y, r0, r1) for n, r0, r1 in v2] + [(b[0], X, Y, b[1], b[2]) for b in bal]
    t = make_table(pools)
    t["pool_protocol"] = np.array([PROTOCOL_UNISWAP_V2] * len(v2)
                                  + [PROTOCOL_BALANCER_V1] * len(bal), np.uint8)
    zeros = [0] * len(v2)
    t["pool_weight0"] = words(zeros + [b[3] for b in bal])
    t["pool_weight1"] = words(zeros + [b[4] for b in bal])
    t["pool_swap_fee"] = words(zeros + [b[5] for b in bal])
    return t


def bal_row(pool, token_in, amount_in, amount_out_min=0, **kw):
    return dict(pool=pool, token_in=token_in, amount_in=amount_in, amount_out_min=amount_out_min,
                protocol=PROTOCOL_BALANCER_V1, **kw)


def test_pools_and_siblings():
    t = table(v2=[(1, 10**6, 2 * 10**6), (2, 10**6, 2 * 10**6)],
              bal=[(3, 10**6, 2 * 10**6, 4 * BONE, BONE, 3 * 10**15)])
    book = PoolBook(t)
    assert [book.protocol(i) for i in range(3)] == [PROTOCOL_UNISWAP_V2, PROTOCOL_UNISWAP_V2,
                                                    PROTOCOL_BALANCER_V1]
    assert book.siblings(0) == (1,) and book.siblings(2) == ()
    assert book.cross_siblings(0) == (2,) and book.cross_siblings(2) == (0, 1)
    assert book.balancer(2) == (4 * BONE, BONE, 3 * 10**15) and book.balancer(0) == (0, 0, 0)
    copy = PoolBook(book.to_table())
    assert copy.balancer(2) == book.balancer(2) and copy.cross_siblings(1) == (2,)
    # a V2-only table keeps its columns and has no cross siblings
    v2 = PoolBook(make_table([(1, X, Y, 10**6, 10**6), (2, X, Y, 10**6, 10**6)]))
    assert "pool_protocol" not in v2.to_table() and v2.cross_siblings(0) == ()


@pytest.mark.parametrize("change,match", [
    ({"pool_protocol": np.array([1, 2], np.uint8)}, "pool_protocol 2; the book holds 1"),
    ({"pool_weight0": words([0, 0])}, "has a zero weight"),
    ({"pool_swap_fee": words([0, BONE])}, "swap fee 10\\*\\*18|swap fee 1000000000000000000"),
    ({"pool_protocol": np.array([1], np.uint8)}, "pool_protocol must be \\(2,\\)"),
])
def test_bad_balancer_columns(change, match):
    t = table(v2=[(1, 10**6, 10**6)], bal=[(2, 10**6, 10**6, BONE, BONE, 10**15)])
    t.update(change)
    with pytest.raises(ValueError, match=match):
        PoolBook(t)


def test_missing_balancer_columns():
    t = table(v2=[(1, 10**6, 10**6)], bal=[(2, 10**6, 10**6, BONE, BONE, 10**15)])
    del t["pool_swap_fee"]
    with pytest.raises(ValueError, match="Balancer V1 pools but no pool_swap_fee"):
        PoolBook(t)
    t = make_table([(1, X, Y, 10**6, 10**6)])
    t["pool_weight0"] = words([BONE])
    with pytest.raises(ValueError, match="pool_weight0 but no pool_protocol"):
        PoolBook(t)


def test_apply_balancer_swaps_exactly():
    b0, b1, w0, w1, fee = 5 * 10**21, 7 * 10**9, 8 * 10**17, 2 * 10**17, 10**15
    book = PoolBook(table(v2=[(1, 10**20, 10**20)], bal=[(2, b0, b1, w0, w1, fee)]))
    rows = make_rows([
        bal_row(2, X, 10**20),                       # sells token0
        bal_row(2, Y, 10**8),                        # sells token1, on the moved balances
        bal_row(2, X, b0),                           # above MAX_IN_RATIO: reverts
        bal_row(2, X, 10**19, amount_out_min=10**12),  # below its minimum: reverts
        dict(pool=2, token_in=X, amount_in=10**18, amount_out_min=0),  # a V2 row: not this pool
        bal_row(1, X, 10**18),                       # a Balancer row on a V2 pool
    ])
    out = book.apply(rows)
    o1 = ref.balancer_v1_out_given_in(b0, w0, b1, w1, 10**20, fee)
    o2 = ref.balancer_v1_out_given_in(b1 - o1, w1, b0 + 10**20, w0, 10**8, fee)
    assert o1 == balancer_v1_out_given_in(b0, w0, b1, w1, 10**20, fee) > 0
    assert out["status"].tolist() == [STATUS_APPLIED, STATUS_APPLIED, STATUS_REVERTED_OVERFLOW,
                                      STATUS_REVERTED_SLIPPAGE, STATUS_UNKNOWN_POOL,
                                      STATUS_UNKNOWN_POOL]
    assert u256_column_to_ints(out["amount_out"])[:2] == [o1, o2]
    assert out["zero_for_one"][:2].tolist() == [1, 0]
    assert book.reserves(1) == (b0 + 10**20 - o2, b1 - o1 + 10**8)
    assert u256_column_to_ints(out["reserve0_after"])[1] == b0 + 10**20 - o2
    # a book without Balancer pools does not apply Balancer rows
    v2 = PoolBook(make_table([(2, X, Y, b0, b1)]))
    assert v2.apply(make_rows([bal_row(2, X, 10**20)]))["status"].tolist() == [STATUS_NOT_V2]


def _screen_case(v2_r, bal_b, weights, fee, trigger_on_v2, trigger_in):
    """The book after one pending swap (on the V2 pool or the Balancer pool) and the screen's
    report for it."""
    book = PoolBook(table(v2=[(1, *v2_r)], bal=[(2, *bal_b, *weights, fee)]))
    spec = dict(pool=1, token_in=X, amount_in=trigger_in, amount_out_min=0, gas=0) \
        if trigger_on_v2 else bal_row(2, X, trigger_in, gas=0)
    rows = make_rows([spec])
    assert book.apply(rows)["status"].tolist() == [STATUS_APPLIED]
    screen = ArbitrageScreen(book, PriceTable(addr(X)), gas_units=0)
    return book, screen, screen(rows)


def _brute(book, a, b, limit=None):
    """The exhaustive best of the route selling X (token0) on pool a, Y on pool b, over inputs
    up to ``limit`` (default: past both pools' bounds)."""
    (rx_v, ry_v), (bx, by) = book.reserves(0), book.reserves(1)
    w0, w1, fee = book.balancer(1)
    if limit is None:
        limit = max(rx_v, ref.bmul(bx, ref.MAX_IN_RATIO))
    if (a, b) == (0, 1):
        return ref.brute_cross_v2_balancer((rx_v, ry_v), (by, w1, bx, w0, fee), True, limit)
    return ref.brute_cross_v2_balancer((ry_v, rx_v), (bx, w0, by, w1, fee), False, limit)


CASES = [
    # (V2 reserves, Balancer balances, weights, fee, trigger on V2, trigger input)
    ((20_000, 20_000), (20_000, 20_000), (BONE, BONE), 3 * 10**15, True, 3_000),
    ((20_000, 20_000), (20_000, 20_000), (BONE, BONE), 3 * 10**15, False, 4_000),
    ((9_000, 30_000), (12_000, 9_000), (4 * BONE, BONE), 10**15, True, 200),
    ((15_000, 4_000), (6_000, 25_000), (2 * 10**17, 8 * 10**17), 2 * 10**16, False, 50),
]


@pytest.mark.parametrize("case", CASES + [
    # random pairs: a price gap of up to ~40% either way, weights 1..9, fees 0.01%..5%
    (lambda r: ((r.randrange(5_000, 30_000), r.randrange(5_000, 30_000)),
                (r.randrange(5_000, 30_000), r.randrange(5_000, 30_000)),
                (r.randrange(1, 10) * BONE, r.randrange(1, 10) * BONE),
                r.randrange(10**14, 5 * 10**16), r.random() < 0.5, r.randrange(1, 2_000)))(
        random.Random(seed)) for seed in range(4)])
def test_cross_route_equals_exhaustive_scan(case):
    book, screen, found = _screen_case(*case)
    want = {(a, b): _brute(book, a, b) for a, b in ((0, 1), (1, 0))}
    best = max((w for w in want.values() if w is not None), key=lambda w: w.gross_profit,
               default=None)
    if best is None:
        assert len(found) == 0
        return
    assert len(found) == 1
    f = found[0]
    route = (int(f["pool_a"]), int(f["pool_b"]))
    amounts = {k: u256_column_to_ints(found[k])[0]
               for k in ("amount_in", "amount_mid", "amount_out", "gross_profit")}
    assert amounts["gross_profit"] == best.gross_profit == want[route].gross_profit
    assert f["profit_token0"] == 1 and f["row"] == 0
    # the reported input earns what is reported (a scan up to it finds no more)
    assert _brute(book, *route, limit=amounts["amount_in"]).gross_profit == amounts["gross_profit"]


def test_cross_route_reported_once_and_closes():
    book, screen, found = _screen_case(*CASES[0])
    assert len(found) == 1 and screen.open_pairs() == []  # cross pairs are not V2 pairs
    # a second small swap the same way: the gap stays open, not reported again
    rows = make_rows([dict(pool=1, token_in=X, amount_in=10, amount_out_min=0, gas=0, id=1)])
    book.apply(rows)
    assert len(screen(rows)) == 0 and screen.stats()["repeats"] == 1
    # swapping back closes it; the next gap is reported again
    back = make_rows([dict(pool=1, token_in=Y, amount_in=2_600, amount_out_min=0, gas=0, id=2)])
    book.apply(back)
    screen(back)
    again = make_rows([dict(pool=1, token_in=X, amount_in=3_000, amount_out_min=0, gas=0, id=3)])
    book.apply(again)
    assert len(screen(again)) == 1


def test_gas_and_unpriced():
    # gas above the gross profit: nothing; an unpriced pair: counted
    book = PoolBook(table(v2=[(1, 20_000, 20_000)], bal=[(2, 20_000, 20_000, BONE, BONE, 10**15)]))
    rows = make_rows([dict(pool=1, token_in=X, amount_in=3_000, amount_out_min=0, gas=10**6)])
    book.apply(rows)
    assert len(ArbitrageScreen(book, PriceTable(addr(X)), gas_units=1)(rows)) == 0
    unpriced = ArbitrageScreen(book, PriceTable(None), gas_units=0)
    assert len(unpriced(rows)) == 0 and unpriced.stats()["unpriced"] == 1


def test_sandwich_screen_leaves_balancer_victims():
    # a large swap with no slippage bound: a V2 victim of the same size is sandwiched
    book = PoolBook(table(v2=[(1, 10**6, 10**6)], bal=[(2, 10**6, 10**6, BONE, BONE, 10**15)]))
    rows = make_rows([dict(pool=1, token_in=X, amount_in=10**5, amount_out_min=0, gas=0),
                      bal_row(2, X, 10**5, gas=0, id=1)])
    assert book.apply(rows)["status"].tolist() == [STATUS_APPLIED, STATUS_APPLIED]
    found = SandwichScreen(book, PriceTable(addr(X)), gas_units=0)(rows)
    assert found["row"].tolist() == [0]
