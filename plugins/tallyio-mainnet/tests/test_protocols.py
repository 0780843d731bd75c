"""Balancer V1/V2, Curve, Bancor and 0x swaps: per-block counts on the fixture blocks, amounts
against the chain's transfers and the calls' own data, mev-inspect-py's published 0x swaps, and
hand-made blocks for each decoder's rules."""
from __future__ import annotations

import json
from collections import Counter, defaultdict

import pytest

from blocks import address, addr_word, block, call, transfer, transfer_from, word
from mainnet_data import BLOCK_FILES, BLOCKS_DIR, FULL_BLOCKS
from tallyio.record import (PROTOCOL_BALANCER_V1, PROTOCOL_BALANCER_V2, PROTOCOL_BANCOR,
                            PROTOCOL_CURVE, PROTOCOL_NAMES, PROTOCOL_ZEROX)
from tallyio_mainnet.decode import PROTOCOL_DECODERS, decode_swaps

OTHER = {PROTOCOL_BALANCER_V1, PROTOCOL_BALANCER_V2, PROTOCOL_CURVE, PROTOCOL_BANCOR,
         PROTOCOL_ZEROX}

# swaps decoded per block on the protocols other than Uniswap (regenerate: python -m
# tallyio_mainnet.report ../shared/data/mainnet-blocks); every live call of their selectors decodes
COUNTS = {
    10921990: {"balancer_v1": 4},  # the file holds block 10921991, as 10921991.json does
    10921991: {"balancer_v1": 4},
    11930296: {"balancer_v1": 3},
    11931272: {"balancer_v1": 3, "curve": 1},
    11935012: {"balancer_v1": 1},
    12412732: {"balancer_v1": 1},
    12498502: {"balancer_v1": 1},
    13179291: {"balancer_v1": 1, "curve": 1},
    13207907: {"balancer_v2": 2, "bancor": 3, "curve": 1},
    13298725: {"bancor": 2},
    13302365: {"balancer_v1": 7, "balancer_v2": 1, "bancor": 2},
    13323642: {"zerox": 1},
    13370850: {"zerox": 1},
    13666184: {"zerox": 1},
    13666312: {"balancer_v2": 1, "curve": 1, "zerox": 1},
    13666326: {"balancer_v1": 1, "zerox": 2},
    13666363: {"zerox": 1},
    15049646: {"zerox": 2},
}


def _transactions(raw):
    by_tx = defaultdict(dict)
    for t in raw["traces"]:
        if t.get("transaction_position") is not None:
            by_tx[t["transaction_position"]][tuple(t["trace_address"])] = t
    return by_tx


def _moves(traces, under):
    """(token, amount) of every ERC20 transfer/transferFrom call at or below ``under``."""
    out = set()
    for addr, t in traces.items():
        inp = t["action"].get("input", "0x")
        if addr[:len(under)] != under or t.get("error") or t.get("type") != "call":
            continue
        if inp[:10] == "0xa9059cbb":
            out.add((t["action"]["to"].lower(), int(inp[74:138], 16)))
        elif inp[:10] == "0x23b872dd":
            out.add((t["action"]["to"].lower(), int(inp[138:202], 16)))
    return out


def _words(hexdata):
    return [int(hexdata[i:i + 64], 16) for i in range(0, len(hexdata) - 63, 64)]


@pytest.mark.parametrize("path", BLOCK_FILES, ids=lambda p: p.stem)
def test_counts_and_amounts_on_the_fixture_blocks(path):
    raw = json.loads(path.read_text())
    swaps, stats = decode_swaps(raw)
    got = {k: v for k, v in stats["swaps"].items() if k not in ("uniswap_v2", "uniswap_v3")}
    assert got == COUNTS.get(int(path.stem), {})
    assert not stats["skipped"]
    txs = _transactions(raw)
    # every live call of a decoded selector gave its swaps (none silently dropped)
    live = Counter()
    for tx, traces in txs.items():
        for addr, t in traces.items():
            if (t.get("type") == "call" and t["action"].get("callType") == "call"
                    and t["action"].get("input", "0x")[:10] in PROTOCOL_DECODERS
                    and not any(traces.get(addr[:k], {}).get("error")
                                for k in range(len(addr) + 1))):
                live[PROTOCOL_DECODERS[t["action"]["input"][:10]].__name__] += 1
    calls = Counter(PROTOCOL_DECODERS[txs[s.tx_index][s.trace_address]["action"]["input"][:10]]
                    .__name__ for s in {(s.tx_index, s.trace_address): s for s in swaps
                                        if s.protocol in OTHER}.values())
    assert calls == live
    legs = defaultdict(list)
    for s in swaps:
        if s.protocol in OTHER:
            legs[(s.tx_index, s.trace_address)].append(s)
    for (tx, addr), group in legs.items():
        t = txs[tx][addr]
        moved = _moves(txs[tx], addr)
        for s in group:  # amounts are token movements the chain made inside the call
            assert (s.token_in, s.amount_in) in moved and (s.token_out, s.amount_out) in moved
        _check_against_call(group, t)


def _check_against_call(group, t):
    """The amounts agree with what the call itself says: its arguments and its return data."""
    inp = t["action"]["input"]
    sel, args = inp[:10], _words(inp[10:])
    ret = _words(((t.get("result") or {}).get("output") or "0x")[2:])
    first, last = group[0], group[-1]
    protocol = first.protocol
    if protocol == PROTOCOL_BALANCER_V1:
        (s,) = group
        if sel == "0x8201aa3f":  # swapExactAmountIn -> (tokenAmountOut, spotPriceAfter)
            assert (s.amount_in, s.amount_out) == (args[1], ret[0])
        else:  # swapExactAmountOut -> (tokenAmountIn, spotPriceAfter)
            assert (s.amount_in, s.amount_out) == (ret[0], args[3])
    elif protocol == PROTOCOL_CURVE:
        (s,) = group
        assert s.amount_in == args[2]
        if ret:  # older pools return nothing
            assert s.amount_out == ret[0]
    elif protocol == PROTOCOL_BALANCER_V2 and sel == "0x52bbbe29":
        (s,) = group
        single = args[0] // 32
        kind, amount = args[single + 1], args[single + 4]
        assert (s.amount_in, s.amount_out) == ((amount, ret[0]) if kind == 0 else (ret[0], amount))
        assert s.pool == "0x" + format(args[single], "064x")[:40]
    elif protocol == PROTOCOL_BANCOR:
        assert first.amount_in == args[1] and last.amount_out == ret[0]
        path = args[args[0] // 32 + 1:args[0] // 32 + 1 + args[args[0] // 32]]
        assert [int(s.token_in, 16) for s in group] + [int(last.token_out, 16)] == path[0::2]
        for a, b in zip(group, group[1:]):  # hops chain: one converter's output is the next's input
            assert (a.token_out, a.amount_out, a.recipient) == (b.token_in, b.amount_in, b.pool)
    elif protocol == PROTOCOL_ZEROX:
        (s,) = group
        assert (int(s.token_out, 16), int(s.token_in, 16)) == (args[0], args[1])
        # fill*Order and _fill*Order return (takerTokenFilledAmount, makerTokenFilledAmount),
        # fillOrKill*Order the maker amount only
        assert [s.amount_in, s.amount_out][-len(ret):] == ret


# mev-inspect-py's own expected 0x swaps (tests/test_0x.py at ce8179f): the same tokens and amounts;
# the pool here is the order's maker, there the Exchange Proxy
MEV_INSPECT_0X = [
    (13666312, 2, (0, 2, 0, 1), "0xa0b86991c6218b36c1d19d4a2e9eb0ce3606eb48", 143949683150,
     "0xc02aaa39b223fe8d0a0e5c4f27ead9083c756cc2", 35000000000000000000),
    (13666184, 8, (0, 1), "0x9ff79c75ae2bcbe0ec63c0375a3ec90ff75bbe0f", 100000001,
     "0xa0b86991c6218b36c1d19d4a2e9eb0ce3606eb48", 30000000),
    (13666326, 9, (0, 1, 13, 0, 1), "0xc02aaa39b223fe8d0a0e5c4f27ead9083c756cc2",
     70500000000000000000, "0xa0b86991c6218b36c1d19d4a2e9eb0ce3606eb48", 288948250430),
    (13666363, 168, (1, 0, 1, 0, 1), "0x95ad61b0a150d79219dcf64e1e6cc01f0b64c4ce",
     92404351093861841165644172, "0xc02aaa39b223fe8d0a0e5c4f27ead9083c756cc2",
     979486121594935552),
]


def test_mev_inspect_0x_swaps():
    checked = 0
    for number, tx, addr, token_in, amount_in, token_out, amount_out in MEV_INSPECT_0X:
        path = BLOCKS_DIR / f"{number}.json"
        if not path.is_file():  # the shipped sample lacks these blocks; the full set has them all
            continue
        swaps, _ = decode_swaps(path)
        (s,) = [s for s in swaps if (s.tx_index, s.trace_address) == (tx, addr)]
        assert (s.protocol, s.token_in, s.amount_in, s.token_out, s.amount_out) == \
            (PROTOCOL_ZEROX, token_in, amount_in, token_out, amount_out)
        checked += 1
    assert checked == (len(MEV_INSPECT_0X) if BLOCKS_DIR == FULL_BLOCKS else 0)


# hand-made blocks: one per rule
BOT, POOL, VAULT, MAKER, NET = (address(n) for n in (0xB07, 0xA1, 0xBA, 0x3A, 0xBC))
C1, C2, HELPER = (address(n) for n in (0xC1, 0xC2, 0x4E))
TA, TB, TC = (address(n) for n in (0x7A, 0x7B, 0x7C))
BIG = 3 * 10**30  # exceeds 2**64
ZERO = "0x" + "00" * 20


def _call(tx, addr, frm, to, sig, words, output=(), **kw):
    return call(tx, addr, frm, to, sig + "".join(words), "0x" + "".join(word(x) for x in output),
                **kw)


def _decode(traces):
    swaps, stats = decode_swaps(block(traces))
    return [(PROTOCOL_NAMES[s.protocol], s.pool, s.payer, s.recipient, s.token_in, s.token_out,
             s.amount_in, s.amount_out) for s in swaps], stats


def test_balancer_v1():
    exact_out = [addr_word(TA), word(BIG), addr_word(TB), word(5), word(0)]
    rows, _ = _decode([
        _call(0, [0], BOT, POOL, "0x7c5e9ea4", exact_out, (BIG - 1, 0)),
        call(0, [0, 0], POOL, TA, transfer_from(BOT, POOL, BIG - 1)),
        call(0, [0, 1], POOL, TB, transfer(BOT, 5)),
        # the same call inside a reverted one, and one whose pool paid someone else: no swap
        _call(1, [0], BOT, POOL, "0x7c5e9ea4", exact_out, error="Reverted"),
        call(1, [0, 0], POOL, TA, transfer_from(BOT, POOL, 9)),
    ])
    assert rows == [("balancer_v1", POOL, BOT, BOT, TA, TB, BIG - 1, 5)]
    _, stats = _decode([_call(0, [], BOT, POOL, "0x8201aa3f", exact_out),
                        call(0, [0], POOL, TA, transfer_from(BOT, POOL, 7)),
                        call(0, [1], POOL, TB, transfer(HELPER, 5))])
    assert stats["skipped"] == {"no_single_output": 1}


def _single_swap(kind, token_in, token_out, amount, funds):
    head = [word(7 * 32), *funds, word(0), word(0)]
    single = [word(int(POOL[2:], 16) << 96 | 1), word(kind), addr_word(token_in),
              addr_word(token_out), word(amount), word(6 * 32), word(0)]
    return head + single


def test_balancer_v2_swap():
    funds = [addr_word(BOT), word(0), addr_word(HELPER), word(0)]
    rows, _ = _decode([
        _call(0, [0], BOT, VAULT, "0x52bbbe29", _single_swap(0, TA, TB, BIG, funds), (77,)),
        call(0, [0, 0], VAULT, TA, transfer_from(BOT, VAULT, BIG)),
        call(0, [0, 1], VAULT, TB, transfer(HELPER, 77)),
        # GIVEN_OUT into internal balance: the amount out is the call's, the amount in the transfer
        _call(1, [], BOT, VAULT, "0x52bbbe29",
              _single_swap(1, TB, TA, 40, funds[:3] + [word(1)]), (41,)),
        call(1, [0], VAULT, TB, transfer_from(BOT, VAULT, 41)),
    ])
    assert rows == [("balancer_v2", POOL, BOT, HELPER, TA, TB, BIG, 77),
                    ("balancer_v2", POOL, BOT, HELPER, TB, TA, 41, 40)]
    _, stats = _decode([_call(0, [], BOT, VAULT, "0x52bbbe29",
                              _single_swap(0, ZERO, TB, 5, funds), (3,))])
    assert stats["skipped"] == {"eth_leg": 1}


def _batch(steps, assets, deltas, internal_out=False):
    funds = [addr_word(BOT), word(0), addr_word(BOT), word(int(internal_out))]
    n = len(steps)
    swaps_at = 9 * 32
    step_words = []
    for pool, i, j, amount in steps:
        step_words.append([word(int(pool[2:], 16) << 96), word(i), word(j), word(amount),
                           word(5 * 32), word(0)])
    body = [word(n)]
    offset = 32 * n
    for sw in step_words:
        body.append(word(offset))
        offset += 32 * len(sw)
    for sw in step_words:
        body += sw
    assets_at = swaps_at + 32 * len(body)
    assets_words = [word(len(assets))] + [addr_word(a) for a in assets]
    limits_at = assets_at + 32 * len(assets_words)
    head = [word(0), word(swaps_at), word(assets_at), *funds, word(limits_at), word(0)]
    data = head + body + assets_words + [word(0)]
    return data, (32, len(deltas), *deltas)


def test_balancer_v2_batch_swap():
    # a route TA -> TB -> TC: the Vault settles TA and TC only, the TB amount is not in the trace
    data, out = _batch([(POOL, 0, 1, 100), (MAKER, 1, 2, 0)], [TA, TB, TC], [100, 0, -90])
    _, stats = _decode([_call(0, [], BOT, VAULT, "0x945bcec9", data,
                              tuple(x % (1 << 256) for x in out))])
    assert stats["skipped"] == {"batch_chained": 1}
    data, out = _batch([(POOL, 0, 1, 100), (MAKER, 2, 3, 7)], [TA, TB, TC, address(0x7D)],
                       [100, -(BIG + 90), 7, -6])
    rows, _ = _decode([
        _call(0, [], BOT, VAULT, "0x945bcec9", data, tuple(x % (1 << 256) for x in out)),
        call(0, [0], VAULT, TA, transfer_from(BOT, VAULT, 100)),
        call(0, [1], VAULT, TC, transfer_from(BOT, VAULT, 7)),
        call(0, [2], VAULT, TB, transfer(BOT, BIG + 90)),
        call(0, [3], VAULT, address(0x7D), transfer(BOT, 6)),
    ])
    assert rows == [("balancer_v2", POOL, BOT, BOT, TA, TB, 100, BIG + 90),
                    ("balancer_v2", MAKER, BOT, BOT, TC, address(0x7D), 7, 6)]


def test_curve():
    rows, stats = _decode([
        # exchange(int128,int128,uint256,uint256): coins from the transfers (no state needed)
        _call(0, [0], BOT, POOL, "0x3df02124", [word(0), word(1), word(BIG), word(0)]),
        call(0, [0, 0], POOL, TA, transfer_from(BOT, POOL, BIG)),
        call(0, [0, 1], POOL, TC, transfer(address(0xCC), 3)),  # the pool's own bookkeeping
        call(0, [0, 2], POOL, TB, transfer(BOT, BIG + 1)),
        # a proxy delegating to the implementation: the same swap, once
        _call(0, [0, 3], POOL, address(0x1111), "0x3df02124",
              [word(0), word(1), word(BIG), word(0)], call_type="delegatecall"),
        # exchange(...,address receiver)
        _call(1, [0], BOT, POOL, "0xddc1f59d",
              [word(1), word(0), word(9), word(0), addr_word(HELPER)], (8,)),
        call(1, [0, 0], POOL, TB, transfer_from(BOT, POOL, 9)),
        call(1, [0, 1], POOL, TA, transfer(HELPER, 8)),
        # ETH in: no ERC20 payment
        {**_call(2, [], BOT, POOL, "0x5b41b908", [word(0), word(1), word(5), word(0)]),
         "action": {**_call(2, [], BOT, POOL, "0x5b41b908",
                            [word(0), word(1), word(5), word(0)])["action"], "value": "0x5"}},
        call(2, [0], POOL, TB, transfer(BOT, 4)),
    ])
    assert rows == [("curve", POOL, BOT, BOT, TA, TB, BIG, BIG + 1),
                    ("curve", POOL, BOT, HELPER, TB, TA, 9, 8)]
    assert stats["skipped"] == {"eth_leg": 1}


def _path_args(path, amount, beneficiary):
    return [word(6 * 32), word(amount), word(1), addr_word(beneficiary), addr_word(ZERO), word(0),
            word(len(path))] + [addr_word(a) for a in path]


def test_bancor_hops():
    anchor1, anchor2 = address(0xA11), address(0xA12)
    rows, stats = _decode([
        _call(0, [], BOT, NET, "0xb77d239b", _path_args([TA, anchor1, TB, anchor2, TC], BIG, ZERO),
              (50,)),
        call(0, [0], NET, TA, transfer_from(BOT, C1, BIG)),
        call(0, [1, 0], C1, TB, transfer(C2, 600)),
        call(0, [2, 0], C2, TC, transfer(BOT, 50)),
        # the second hop's output never appears
        _call(1, [], BOT, NET, "0xb77d239b", _path_args([TA, anchor1, TB, anchor2, TC], 5, ZERO)),
        call(1, [0], NET, TA, transfer_from(BOT, C1, 5)),
        call(1, [1, 0], C1, TB, transfer(C2, 6)),
    ])
    assert rows == [("bancor", C1, BOT, C2, TA, TB, BIG, 600),
                    ("bancor", C2, C1, BOT, TB, TC, 600, 50)]
    assert stats["skipped"] == {"bancor_hop_unmatched": 1}
    _, stats = _decode([_call(0, [], BOT, NET, "0xb77d239b",
                              _path_args(["0x" + "ee" * 20, anchor1, TB], 5, ZERO))])
    assert stats["skipped"] == {"eth_leg": 1}


def test_zerox_rfq_fill():
    proxy = "0xdef1c0ded9bec7f1a1670819833240f027b25eff"
    order = [addr_word(TB), addr_word(TA), word(10), word(20), addr_word(MAKER), addr_word(ZERO),
             addr_word(ZERO), addr_word(ZERO), word(0), word(0)]
    sig = [word(0)] * 4
    rows, stats = _decode([
        _call(0, [0], BOT, proxy, "0xaa77476c", order + sig + [word(20)], (20, 10)),
        _call(0, [0, 0], proxy, address(0xFEA7), "0xaa77476c", order + sig + [word(20)],
              call_type="delegatecall"),
        call(0, [0, 0, 0], proxy, TA, transfer_from(BOT, MAKER, 20)),
        call(0, [0, 0, 1], proxy, TB, transfer_from(MAKER, BOT, 10)),
        _call(1, [], BOT, proxy, "0xaa77476c", order[:3]),
    ])
    assert rows == [("zerox", MAKER, BOT, BOT, TA, TB, 20, 10)]
    assert stats["skipped"] == {"malformed_swap": 1}


def test_coverage_command(tmp_path):
    from tallyio_mainnet.coverage import main

    out = tmp_path / "coverage.json"
    assert main([str(BLOCKS_DIR), "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["blocks"] == len({json.loads(p.read_text())["block_number"] for p in BLOCK_FILES})
    assert result["commit"] and "load_avg_1m" in result
    for name, c in result["protocols"].items():
        if name in ("uniswap_v2", "uniswap_v3", "all"):
            continue
        # every call decoded, every amount one the chain moved (a Bancor call: one row per hop)
        assert c["amounts_equal_transfers"] == c["swaps"] >= c["calls"] > 0
        assert c["swaps"] == c["calls"] or name == "bancor"
    # the replay's steps timed over the same files, and what they saw
    t = result["timings"]
    assert t["files"] == len(list(BLOCKS_DIR.glob("*.json"))) and t["repeats"] == 3
    assert set(t["seconds"]) == {"json_load", "decode", "find_sandwiches", "find_cyclic_arbitrages"}
    assert t["swaps"] >= sum(c["swaps"] for n, c in result["protocols"].items() if n != "all")
    # --render rewrites only the timings block of a document, from the file
    doc = tmp_path / "doc.md"
    doc.write_text("intro\n<!-- mainnet:timings:begin -->\nstale\n<!-- mainnet:timings:end -->\nend\n")
    assert main(["--render", str(doc), "--json", str(out)]) == 0
    text = doc.read_text()
    assert "stale" not in text and text.startswith("intro\n") and text.endswith("-->\nend\n")
    assert f"decoding {t['traces']:,} traces to {t['swaps']:,} swaps" in text
