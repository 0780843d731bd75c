"""Cyclic-arbitrage inspector: a hand-checked block, the payer rule, mev-inspect-js vectors."""
from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import mev_reference
import vectors
from mainnet_data import BLOCK_FILES, HERE, VECTORS
from tallyio.record import PROTOCOL_NAMES, TX_DTYPE, int_to_u256
from tallyio_arbitrage.cycles import find_cyclic_arbitrages
from tallyio_mainnet.decode import decode_block, decode_swaps
from tallyio_mainnet.source import sample_dir

WETH = "0xc02aaa39b223fe8d0a0e5c4f27ead9083c756cc2"


def test_block_15049646_transaction_1_by_hand():
    # Read off the raw traces of 0xfcd1aac3...cc4f (position 1):
    #   [0]    WETH.transfer(pair 0xbe1da3..., 0x054cdeb0555c2980)   bot pays WETH in
    #   [1]    pair 0xbe1da3.swap(0x244ef80d, 0, to=pair 0xff62b7...)
    #   [1,0]  0x998ffe.transfer(0xff62b7..., 0x244ef80d)            (+ its proxy's delegatecall)
    #   [2]    pair 0xff62b7.swap(0, 0x056ae22ebbed2e9c, to=bot 0xdd65b3...)
    #   [2,0]  WETH.transfer(bot, 0x056ae22ebbed2e9c)                bot gets more WETH back
    weth_in, middle, weth_out = 0x054cdeb0555c2980, 0x244ef80d, 0x056ae22ebbed2e9c
    records, _ = decode_block(sample_dir() / "15049646.json")
    arbs = [a for a in find_cyclic_arbitrages(records) if a.details["tx_index"] == 1]
    assert len(arbs) == 1
    (arb,) = arbs
    assert arb.kind == "cyclic_arbitrage"
    assert arb.details["tx_hash"] == \
        "0xfcd1aac3a3945f37a565b5ecb038b28beeec41805340a788d530cec3f6fbcc4f"
    assert arb.profit_token == WETH
    assert arb.profit == weth_out - weth_in == 8448090722862364
    assert arb.pools == ("0xbe1da348fd61bb6bf70670490722eeefc72af92e",
                         "0xff62b7767104ff2785ca4847b9445fd808516515")
    first, second = arb.details["swaps"]
    assert (first["token_in"], first["amount_in"], first["amount_out"]) == (WETH, weth_in, middle)
    assert first["token_out"] == second["token_in"] == "0x998ffe1e43facffb941dc337dd0468d52ba5b48a"
    assert (second["amount_in"], second["token_out"], second["amount_out"]) == \
        (middle, WETH, weth_out)
    assert first["recipient"] == second["pool"]
    assert arb.details["recipient"] == "0xdd65b3b5a8cd858d0d6c77e9d2a40ca1261a5b70"
    assert arb.details["net_of_gas"] is False


# Routes the record rule finds and mev-inspect-py's payer rule misses (docs/mainnet_replay.md,
# known differences): 0x94c8cc09... takes USDT out of a Uniswap pair to the bot, whose helper
# contract 0x2393c368... (not the bot) pays it into Curve's 3pool; the amounts chain exactly.
RECORD_RULE_ONLY = {13179291: [(4, [0, 1, 2], 308662592399980177)]}


@pytest.mark.parametrize("path", BLOCK_FILES, ids=lambda p: p.stem)
def test_same_routes_as_the_payer_rule(path):
    swaps, stats = decode_swaps(path)
    records, _ = decode_block(path)
    want = sorted([(r[0].tx_index, [s.swap_index for s in r], r[-1].amount_out - r[0].amount_in)
                   for r in mev_reference.arbitrages(swaps)]
                  + RECORD_RULE_ONLY.get(stats["block"], []))
    got = sorted((a.details["tx_index"], [s["swap_index"] for s in a.details["swaps"]], a.profit)
                 for a in find_cyclic_arbitrages(records))
    assert got == want


def test_arbitrages_found_across_the_blocks():
    per_block = [len(find_cyclic_arbitrages(decode_block(p)[0])) for p in BLOCK_FILES]
    assert sum(per_block) >= 5


@pytest.mark.parametrize("case", vectors.load(VECTORS / "arbitrage.vectors.json"),
                         ids=lambda c: c["test"])
def test_mev_inspect_js_vectors(case):
    found = find_cyclic_arbitrages(vectors.records(case["args"][0]))
    want = [([s["contract"]["address"] for s in a["swaps"]],
             [s["event"]["logIndex"] for s in a["swaps"]],
             a["profit"]["asset"]["address"], int(a["profit"]["amount"])) for a in case["expected"]]
    got = [(list(a.pools), [s["swap_index"] for s in a.details["swaps"]], a.profit_token, a.profit)
           for a in found]
    assert got == want
    for a, e in zip(found, case["expected"]):
        assert a.details["sender"] == e["arbitrager"]["sender"]
        # cross-protocol routes (a Balancer V1 leg in "3-swap cross-protocol arbitrage") keep each
        # leg's protocol
        assert [s["protocol"] for s in a.details["swaps"]] == \
            [PROTOCOL_NAMES[vectors.PROTOCOLS[s["contract"]["protocol"]["abi"]]]
             for s in e["swaps"]]


A, B, C = (bytes([n]) * 20 for n in (1, 2, 3))
BOT, EOA = bytes([9]) * 20, bytes([8]) * 20
P1, P2, P3 = (bytes([n]) * 20 for n in (0x11, 0x12, 0x13))


def _records(rows):
    """rows: (tx_index, recipient, pool, token_in, token_out, amount_in, amount_out)."""
    rec = np.zeros(len(rows), dtype=TX_DTYPE)
    for i, (tx, recipient, pool, tin, tout, ain, aout) in enumerate(rows):
        r = rec[i]
        r["id"], r["block"], r["tx_index"], r["swap_index"] = i, 1, tx, i
        for name, value in (("sender", EOA), ("recipient", recipient), ("pool", pool),
                            ("token_in", tin), ("token_out", tout)):
            r[name] = np.frombuffer(value, dtype=np.uint8)
        r["tx_hash"] = np.frombuffer(tx.to_bytes(32, "big"), dtype=np.uint8)
        r["amount_in"], r["amount_out"] = int_to_u256(ain), int_to_u256(aout)
    return rec


def test_definition_edges():
    big = 10**30
    cycle = [(0, P2, P1, A, B, big, 500), (0, P3, P2, B, C, 500, 70),
             (0, BOT, P3, C, A, 70, big + 3)]
    (arb,) = find_cyclic_arbitrages(_records(cycle))
    assert arb.profit == 3 and arb.tx_ids == (0, 1, 2) and arb.profit_token == "0x" + A.hex()
    # a losing one is still one
    losing = [(0, BOT, P1, A, B, 100, 50), (0, BOT, P2, B, A, 50, 90)]
    assert [a.profit for a in find_cyclic_arbitrages(_records(losing))] == [-10]
    # split across transactions, or not closed, or output left in a pool: none
    split = [(0, BOT, P1, A, B, 100, 50), (1, BOT, P2, B, A, 50, 90)]
    assert find_cyclic_arbitrages(_records(split)) == []
    assert find_cyclic_arbitrages(_records(cycle[:2])) == []
    into_pool = [(0, BOT, P1, A, B, 100, 50), (0, P1, P2, B, A, 50, 90)]
    assert find_cyclic_arbitrages(_records(into_pool)) == []
    # output sent to a third pool does not feed the next swap
    assert find_cyclic_arbitrages(_records([(0, P3, P1, A, B, 100, 50), (0, BOT, P2, B, A, 50, 90),
                                            (0, BOT, P3, C, A, 1, 1)])) == []
    # amounts must agree within the tolerance
    loose = [(0, BOT, P1, A, B, 100, 50), (0, BOT, P2, B, A, 52, 90)]
    assert find_cyclic_arbitrages(_records(loose)) == []
    assert len(find_cyclic_arbitrages(_records(loose), tolerance=Fraction(5, 100))) == 1
    assert len(find_cyclic_arbitrages(_records(loose), tolerance=0.05)) == 1
    assert find_cyclic_arbitrages(np.zeros(0, dtype=TX_DTYPE)) == []


def test_rejects_bad_arguments():
    with pytest.raises(TypeError, match="swaps must be a numpy array of TX_DTYPE records"):
        find_cyclic_arbitrages(np.zeros(3))
    with pytest.raises(ValueError, match=r"tolerance must be in \[0, 1\), got 1"):
        find_cyclic_arbitrages(np.zeros(0, dtype=TX_DTYPE), tolerance=1)
    with pytest.raises(TypeError, match="tolerance must be a number, got '1'"):
        find_cyclic_arbitrages(np.zeros(0, dtype=TX_DTYPE), tolerance="1")


# property: whatever the swaps, what is reported satisfies the definition
_amount = st.sampled_from([100, 101, 200, 10**25])
_swap = st.tuples(st.integers(0, 2), st.sampled_from([BOT, P1, P2, P3]),
                  st.sampled_from([P1, P2, P3]),
                  st.sampled_from([(A, B), (B, A), (B, C), (C, A), (A, C)]), _amount, _amount)


@settings(max_examples=200, deadline=None)
@given(st.lists(_swap, max_size=8))
def test_reported_routes_satisfy_the_definition(rows):
    rec = _records([(tx, r, p, t[0], t[1], ai, ao) for tx, r, p, t, ai, ao in rows])
    found = find_cyclic_arbitrages(rec)
    used = [i for a in found for i in a.tx_ids]
    assert len(used) == len(set(used))  # a swap belongs to one route at most
    for a in found:
        path = [rows[i] for i in a.tx_ids]
        assert len(path) >= 2 and len({s[0] for s in path}) == 1
        pools = {s[2] for s in rows if s[0] == path[0][0]}
        assert path[-1][3][1] == path[0][3][0] and path[-1][2] != path[0][2]
        assert path[-1][1] not in pools
        for x, y in zip(path, path[1:]):
            assert x[3][1] == y[3][0]
            assert abs(x[5] - y[4]) * 200 < x[5] + y[4]
            assert x[1] == y[2] or x[1] not in pools
        assert a.profit == path[-1][5] - path[0][4]


# Every cyclic arbitrage on the full block set with a leg outside Uniswap, with its exact profit:
# (block, transaction, protocols of the route's legs, profit token, profit). Regenerate the list
# with find_cyclic_arbitrages over decode_block of each block; docs/mainnet_replay.md lists them.
USDC = "0xa0b86991c6218b36c1d19d4a2e9eb0ce3606eb48"
CROSS_PROTOCOL = [
    (10921991, "0xe3d1e9f3220f979ede68f3593a58f4cf1b1d36ce609082d76b9a7e57a84c0731",
     ("balancer_v1", "balancer_v1"), WETH, 69945515937869064),
    (10921991, "0xb80c8df4ffde56a7f546178771cdb118631f123b9678f6c947cf975efaf92d29",
     ("uniswap_v2", "balancer_v1"), WETH, 28703796644647448),
    (10921991, "0x58a35489474df16443987cd512bd98ff42b9ddb7e3959aa05f150f152720cefc",
     ("uniswap_v2", "balancer_v1", "uniswap_v2"), WETH, 56280569131686908),
    (11930296, "0x4121ce805d33e952b2e6103a5024f70c118432fd0370128d6d7845f9b2987922",
     ("uniswap_v2", "balancer_v1"), WETH, 48010001572665858),
    (12412732, "0x94f138f9c22d0d0a4d4cd8fb04de8d4867269f16aaa0c65be3006943ad90bc9e",
     ("uniswap_v2", "balancer_v1", "uniswap_v2"), WETH, 60545173481109660),
    (13179291, "0x94c8cc09af6329beff15f71f99dd3622561e3e787b16faf0495813840a43237f",
     ("uniswap_v2", "curve", "uniswap_v2"), WETH, 308662592399980177),
    (13302365, "0xa3d8c446de81db9c63b8654329a09c4aee174ce329a55a4e24b999b0691e1f86",
     ("uniswap_v3", "uniswap_v2", "bancor", "bancor", "uniswap_v2"), WETH, 52977603650804340),
    (13370850, "0x27c4d02cde06d8842905c0e937a483ff07be6388b4d2508aeedaad0ebf1cb1e1",
     ("uniswap_v3", "uniswap_v2", "uniswap_v3", "zerox"), USDC, 341084),
    (13666312, "0xa043976d736ec8dc930c0556dffd0a86a4bfc80bf98fb7995c791fb4dc488b5d",
     ("uniswap_v3", "zerox"), WETH, 56920514715036339),
]


def test_cross_protocol_arbitrages_with_exact_profit():
    found = []
    for path in BLOCK_FILES:
        if path.stem == "10921990":  # a second copy of block 10921991
            continue
        for a in find_cyclic_arbitrages(decode_block(path)[0]):
            legs = tuple(s["protocol"] for s in a.details["swaps"])
            if set(legs) - {"uniswap_v2", "uniswap_v3"}:
                found.append((int(path.stem), a.details["tx_hash"], legs, a.profit_token,
                              a.profit))
    have = {int(p.stem) for p in BLOCK_FILES}
    assert found == [c for c in CROSS_PROTOCOL if c[0] in have]


def test_mev_inspect_py_arbitrage_integration():
    """mev-inspect-py's own expectations for block 12914944 (tests/test_arbitrage_integration.py
    at ce8179f): two 3-swap WETH routes through 0x25f8087e... -> USDC, with these profits."""
    records, _ = decode_block(HERE / "data" / "12914944-arbitrages.json")
    got = {a.details["tx_hash"]: a for a in find_cyclic_arbitrages(records)}
    want = {
        "0x448245bf1a507b73516c4eeee01611927dada6610bf26d403012f2e66800d8f0": 750005273675102326,
        "0xfcf4558f6432689ea57737fe63124a5ec39fd6ba6aaf198df13a825dd599bffc": 53560707941943273628,
    }
    assert {h: a.profit for h, a in got.items()} == want
    for a in got.values():
        assert a.profit_token == WETH and len(a.details["swaps"]) == 3
        middle = a.details["swaps"][1]
        assert (middle["token_in"], middle["token_out"]) == \
            ("0x25f8087ead173b73d6e8b84329989a8eea16cf73", USDC)
