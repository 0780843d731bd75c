"""Reverted arbitrage attempts: decoded as far as they ran, reported apart from profits."""
from __future__ import annotations

import json

from blocks import address, block, call, transfer, v2_swap
from mainnet_data import BLOCK_FILES, HERE
from tallyio_mainnet.decode import decode_block, decode_swaps
from tallyio_mainnet.report import block_rows, reverted_arbitrages

WETH = "0xc02aaa39b223fe8d0a0e5c4f27ead9083c756cc2"
BOT, EOA, P1, P2, TA, TB = (address(n) for n in (0xB07, 0xE0A, 0x11, 0x12, 0x7A, 0x7B))


def _cycle(tx, under, failed=()):
    """EOA calls BOT, which (in its frame ``under``) pays TA into P1, P1 pays TB to P2, P2 pays
    TA back to BOT: a 2-pool cycle. The calls at the trace addresses ``failed`` reverted."""
    frame = list(under)
    traces = [call(tx, [], EOA, BOT, "0x87654321")]
    if under:
        traces.append(call(tx, frame, BOT, BOT, "0x12345678"))
    traces += [call(tx, frame + [0], BOT, TA, transfer(P1, 100)),
               call(tx, frame + [1], BOT, P1, v2_swap(0, 50, P2)),
               call(tx, frame + [1, 0], P1, TB, transfer(P2, 50)),
               call(tx, frame + [2], BOT, P2, v2_swap(130, 0, BOT)),
               call(tx, frame + [2, 0], P2, TA, transfer(BOT, 130))]
    for t in traces:
        if t["trace_address"] in [list(f) for f in failed]:
            t["error"], t["result"] = "Reverted", None
    return traces


def test_a_reverted_transaction_is_an_attempt_not_a_profit():
    raw = block(_cycle(0, [], [()]) + _cycle(1, []))
    # only transaction 1's swaps happened
    assert decode_block(raw)[0]["tx_index"].tolist() == [1, 1]
    swaps, stats = decode_swaps(raw, attempts=True)
    assert [s.tx_index for s in swaps] == [0, 0]
    assert stats["reverted_calls"] == {swaps[0].tx_hash: [((), "Reverted")]}
    (attempt,) = reverted_arbitrages(raw)
    assert attempt.kind == "arbitrage" and attempt.profit == 0 and attempt.reverted
    assert attempt.details["reverted"] is True and attempt.details["attempted_profit"] == 30
    assert attempt.details["errors"] == [[[], "Reverted"]]
    assert attempt.pools == (P1, P2) and attempt.profit_token == TA


def test_a_caught_revert_inside_a_mined_transaction():
    # the bot's inner call [0] reverted and the transaction went on: its swaps are an attempt
    raw = block(_cycle(0, [0], [(0,)]))
    assert len(decode_block(raw)[0]) == 0
    (attempt,) = reverted_arbitrages(raw)
    assert attempt.details["errors"] == [[[0], "Reverted"]]
    # a swap that failed itself is not part of the attempt
    raw = block(_cycle(0, [0], [(0,), (0, 2)]))
    assert [s.trace_address for s in decode_swaps(raw, attempts=True)[0]] == [(0, 1)]
    assert reverted_arbitrages(raw) == []
    # nothing failed: no attempt
    assert reverted_arbitrages(block(_cycle(0, [0]))) == []


def test_mev_inspect_reverting_arbitrage():
    """mev-inspect-py's reverting arbitrage (tests/test_arbitrage_integration.py, block 12483198):
    the bot's call [0, 0] reverted and the transaction, which went on, was mined. As far as it ran
    the route bought 0xc7283b66... for WETH on a V3 pool and sold it back on a V2 pair for much
    less: the failed check the revert came from."""
    raw = json.loads((HERE / "data" / "12483198-reverted-arbitrage.json").read_text())
    assert len(decode_block(raw)[0]) == 0
    (attempt,) = reverted_arbitrages(raw)
    assert attempt.details["tx_hash"] == \
        "0x23a4dc7044666d3d4cc2d394a8017fc9d6b87018c20390d35266cea1af783e8a"
    assert attempt.details["errors"] == [[[0, 0], "Reverted"]]
    assert attempt.profit == 0 and attempt.profit_token == WETH
    assert attempt.details["start_amount"] == 450051102699999985664
    assert attempt.details["end_amount"] == 76281448892379830583
    assert attempt.details["attempted_profit"] == 76281448892379830583 - 450051102699999985664
    assert [s["protocol"] for s in attempt.details["swaps"]] == ["uniswap_v3", "uniswap_v2"]


def test_fixture_blocks_have_no_reverted_arbitrage():
    # reverted calls there that made swaps: user trades and sandwiches whose slippage check failed
    rows = block_rows(BLOCK_FILES[0].parent)
    assert sum(r["reverted_arbs"] for r in rows) == 0
    assert sum(len(decode_block(p, attempts=True)[0]) for p in BLOCK_FILES) == \
        (15 if len(BLOCK_FILES) == 25 else 2)
