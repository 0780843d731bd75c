"""Sandwich inspector: the published reference, the payer rule, and mev-inspect-js vectors."""
from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import mev_reference
import vectors
from mainnet_data import BLOCK_FILES, REFERENCE, VECTORS
from tallyio.record import PROTOCOL_NAMES, TX_DTYPE, address_bytes, int_to_u256
from tallyio_mainnet.decode import decode_block, decode_swaps
from tallyio_mainnet.source import sample_dir
from tallyio_sandwich.inspect import KNOWN_ROUTERS, find_sandwiches


def _as_reference(side: dict, block: int) -> dict:
    """Our description of a swap in the reference's vocabulary (all but from_address)."""
    return {
        "transaction_hash": side["tx_hash"],
        "transaction_position": side["tx_index"],
        "block_number": block,
        "trace_address": side["trace_address"],
        "contract_address": side["pool"],
        "to_address": side["recipient"],
        "token_in_address": side["token_in"],
        "token_in_amount": side["amount_in"],
        "token_out_address": side["token_out"],
        "token_out_amount": side["amount_out"],
        "protocol": side["protocol"],
    }


def test_block_12775690_reproduces_the_published_reference_exactly():
    expected = json.loads(REFERENCE.read_text())
    path = sample_dir() / "12775690.json"
    records, _ = decode_block(path)
    found = find_sandwiches(records)
    assert len(found) == len(expected) == 1
    got, want = found[0], expected[0]
    assert got.kind == "sandwich" and got.block == want["block_number"]
    assert got.details["sandwicher"] == want["sandwicher_address"]
    assert got.profit_token == want["profit_token_address"]
    assert got.profit == want["profit_amount"] == 49991481915322274
    assert got.pools == (want["frontrun_swap"]["contract_address"],)
    keys = ["transaction_hash", "transaction_position", "block_number", "trace_address",
            "contract_address", "to_address", "token_in_address", "token_in_amount",
            "token_out_address", "token_out_amount", "protocol"]
    pick = lambda s: {k: s[k] for k in keys}  # noqa: E731
    assert _as_reference(got.details["frontrun"], got.block) == pick(want["frontrun_swap"])
    assert _as_reference(got.details["backrun"], got.block) == pick(want["backrun_swap"])
    assert [_as_reference(v, got.block) for v in got.details["victims"]] == \
        [pick(v) for v in want["sandwiched_swaps"]]
    # from_address (who paid the pool) is not a record field: the decoder finds the same payers
    swaps = {(s.tx_hash, s.trace_address): s for s in decode_swaps(path)[0]}
    for side in [want["frontrun_swap"], want["backrun_swap"], *want["sandwiched_swaps"]]:
        s = swaps[(side["transaction_hash"], tuple(side["trace_address"]))]
        assert s.payer == side["from_address"]
        assert PROTOCOL_NAMES[s.protocol] == side["protocol"]
    # tx_ids name the rows, front-run first
    ids = [int(records["id"][i]) for i in range(len(records))]
    assert set(got.tx_ids) <= set(ids) and len(got.tx_ids) == 6
    json.dumps(got.to_dict())  # JSON-serializable, exact ints included


def _key(front, victims, back):
    return ((front["tx_hash"], front["swap_index"]),
            [(v["tx_hash"], v["swap_index"]) for v in victims],
            (back["tx_hash"], back["swap_index"]))


@pytest.mark.parametrize("path", BLOCK_FILES, ids=lambda p: p.stem)
def test_same_sandwiches_as_the_payer_rule(path):
    swaps, _ = decode_swaps(path)
    records, _ = decode_block(path)
    want = [((f.tx_hash, f.swap_index), [(v.tx_hash, v.swap_index) for v in vs],
             (b.tx_hash, b.swap_index), b.amount_out - f.amount_in)
            for f, vs, b in mev_reference.sandwiches(swaps)]
    got = [(*_key(o.details["frontrun"], o.details["victims"], o.details["backrun"]), o.profit)
           for o in find_sandwiches(records)]
    assert got == want


def test_sandwiches_found_across_the_blocks():
    # 12775690 (reference), 13404932 and 15049646 ship with the package; the full set adds more
    total = sum(len(find_sandwiches(decode_block(p)[0])) for p in BLOCK_FILES)
    assert total >= 2


def _vector_cases():
    return [c for c in vectors.load(VECTORS / "sandwiches.vectors.json")
            # the victim of this one is a liquidity deposit, which is not a swap record
            if not c["args"][2] and not c["args"][3]]


@pytest.mark.parametrize("case", _vector_cases(), ids=lambda c: c["test"])
def test_mev_inspect_js_vectors(case):
    found = find_sandwiches(vectors.records(case["args"][1]))
    if "expected" not in case:
        path, value = case["result_path"], case["expected_value"]
        assert path in ("length", "0.sandwiched.length")
        assert (len(found) if path == "length" else len(found[0].details["victims"])) == value
        return
    assert len(found) == len(case["expected"])
    for got, want in zip(found, case["expected"]):
        front, back = got.details["frontrun"], got.details["backrun"]
        assert front["tx_hash"] == want["frontSwap"]["transaction"]["hash"]
        assert back["tx_hash"] == want["backSwap"]["transaction"]["hash"]
        assert [v["tx_hash"] for v in got.details["victims"]] == \
            [v["transaction"]["hash"] for v in want["sandwiched"]]
        assert got.details["sandwicher"] == want["sandwicher"]["beneficiary"]
        assert back["sender"] == want["sandwicher"]["sender"]
        assert got.profit_token == want["profit"]["asset"]["address"]
        assert got.profit == back["amount_out"] - front["amount_in"]
        if front["amount_out"] == back["amount_in"]:
            # mev-inspect-js values imbalanced sandwiches differently; balanced ones agree but for
            # its fixed-point rounding
            assert abs(got.profit - int(want["profit"]["amount"])) <= 1


A, B, C = (bytes([n]) * 20 for n in (1, 2, 3))
BOT, EOA, USER, POOL, POOL2 = (bytes([n]) * 20 for n in (9, 8, 7, 6, 5))


def _records(rows):
    """rows: (tx_index, sender, recipient, pool, token_in, token_out, amount_in, amount_out)."""
    rec = np.zeros(len(rows), dtype=TX_DTYPE)
    for i, (tx, sender, recipient, pool, tin, tout, ain, aout) in enumerate(rows):
        r = rec[i]
        r["id"], r["block"], r["tx_index"] = i, 1, tx
        for name, value in (("sender", sender), ("recipient", recipient), ("pool", pool),
                            ("token_in", tin), ("token_out", tout)):
            r[name] = np.frombuffer(value, dtype=np.uint8)
        r["tx_hash"] = np.frombuffer(tx.to_bytes(32, "big"), dtype=np.uint8)
        r["amount_in"], r["amount_out"] = int_to_u256(ain), int_to_u256(aout)
    return rec


def test_definition_edges():
    base = [(0, EOA, BOT, POOL, A, B, 10**20, 5), (1, USER, USER, POOL, A, B, 3, 1),
            (2, EOA, BOT, POOL, B, A, 5, 10**20 + 7)]
    (hit,) = find_sandwiches(_records(base))
    assert hit.profit == 7 and hit.profit_token == "0x" + A.hex()
    assert hit.tx_ids == (0, 1, 2) and hit.details["net_of_gas"] is False
    # the back-run may come from another account of the same bot, paying out to the bot
    other = [base[0], base[1], (2, USER, BOT, POOL, B, A, 5, 9)]
    assert len(find_sandwiches(_records(other))) == 1
    # no victim, other pool, same transaction, router as recipient: nothing
    assert find_sandwiches(_records([base[0], base[2]])) == []
    assert find_sandwiches(_records([base[0], (1, USER, USER, POOL2, A, B, 3, 1), base[2]])) == []
    assert find_sandwiches(_records([base[0], (0, USER, USER, POOL, A, B, 3, 1), base[2]])) == []
    router = next(iter(KNOWN_ROUTERS))
    assert find_sandwiches(_records([(0, EOA, router, POOL, A, B, 1, 1), base[1],
                                     (2, EOA, router, POOL, B, A, 1, 1)])) == []
    # order is by (tx_index, swap_index), whatever the row order
    assert len(find_sandwiches(_records(base[::-1]))) == 1
    assert find_sandwiches(np.zeros(0, dtype=TX_DTYPE)) == []


def test_rejects_other_arrays():
    with pytest.raises(TypeError, match="swaps must be a numpy array of TX_DTYPE records"):
        find_sandwiches(np.zeros(3))
    with pytest.raises(TypeError, match="got list"):
        find_sandwiches([])


# property: against a direct transcription of the definition on plain tuples
_row = st.tuples(st.integers(0, 5), st.sampled_from([EOA, USER, BOT]),
                 st.sampled_from([EOA, USER, BOT]), st.sampled_from([POOL, POOL2]),
                 st.sampled_from([(A, B), (B, A), (A, C)]), st.integers(1, 2**70),
                 st.integers(1, 2**70))


def _model(rows):
    rows = sorted(enumerate(rows), key=lambda x: (x[1][0], x[0]))
    out = []
    for k, (i, f) in enumerate(rows):
        victims = []
        mine = lambda x: x[2] == f[2] or x[1] == f[1]  # noqa: E731
        for j, x in rows[k + 1:]:
            if x[0] == f[0] or x[3] != f[3]:
                continue
            if x[4] == f[4] and not mine(x):
                victims.append(j)
            elif x[4] == f[4][::-1] and mine(x) and victims:
                out.append((i, victims, j, x[6] - f[5]))
                break
    return out


@settings(max_examples=200, deadline=None)
@given(st.lists(_row, max_size=10))
def test_matches_a_plain_model(rows):
    rec = _records([(tx, s, r, p, t[0], t[1], ai, ao) for tx, s, r, p, t, ai, ao in rows])
    for i in range(len(rec)):
        rec[i]["swap_index"] = i  # keep row order within a transaction
    got = [(o.tx_ids[0], list(o.tx_ids[1:-1]), o.tx_ids[-1], o.profit)
           for o in find_sandwiches(rec)]
    assert got == _model(rows)
    assert all(address_bytes(o.details["frontrun"]["pool"]) == address_bytes(
        o.details["backrun"]["pool"]) for o in find_sandwiches(rec))


def test_victims_routed_through_several_pools():
    """Block 13666326: three victims whose transactions route through 2 to 4 pools, one leg each
    on Balancer V1 and on a 0x order; only the leg on the front-run's pool is the victim, and each
    sandwich goes to its own bot."""
    path = next((p for p in BLOCK_FILES if p.stem == "13666326"), None)
    if path is None:  # the shipped sample lacks this block (the full set has it)
        assert all(p.parent == sample_dir() for p in BLOCK_FILES)
        return
    records, _ = decode_block(path)
    legs = {}
    for r in records:
        legs.setdefault(int(r["tx_index"]), []).append(PROTOCOL_NAMES[int(r["protocol"])])
    assert legs[3] == ["uniswap_v2", "balancer_v1", "uniswap_v3", "uniswap_v3"]
    assert legs[9] == ["zerox", "uniswap_v2"]
    got = [(s.details["sandwicher"], s.details["frontrun"]["tx_index"],
            [(v["tx_index"], v["swap_index"], v["pool"]) for v in s.details["victims"]],
            s.details["backrun"]["tx_index"], s.profit) for s in find_sandwiches(records)]
    assert got == [
        ("0x00000000a1f2d3063ed639d19a6a56be87e25b1a", 2,
         [(3, 3, "0x98409d8ca9629fbe01ab1b914ebf304175e384c8")], 4, 203431980446301454),
        ("0x000000005736775feb0c8568e7dee77222a26880", 5,
         [(6, 1, "0xd34e4855146ac0c6d0e4a652bd5fb54830f91ba8")], 7, 87501851521108525),
        ("0x7cf09d7a9a74f746edcb06949b9d64bcd9d1604f", 8,
         [(9, 1, "0x3aa370aacf4cb08c7e1e7aa8e8ff9418d73c7e0f")], 10, 132133809867980800),
    ]
