"""Trace decoding: every real block, and hand-made blocks for each rule."""
from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from blocks import (address, block, call, transfer, transfer_from, tx_hash, v2_swap, v3_output,
                    v3_swap)
from mainnet_data import BLOCK_FILES, BLOCKS_DIR
from tallyio.record import (PROTOCOL_NAMES, PROTOCOL_UNISWAP_V2, PROTOCOL_UNISWAP_V3,
                            PROTOCOL_UNKNOWN, TX_DTYPE, address_hex,
                            address_key, u256_column_to_ints)
from tallyio_mainnet.source import sample_dir
from tallyio_mainnet.decode import (MAX_TRACE_DEPTH, block_files, decode_block, decode_swaps,
                                    load_block, read_blocks)

EOA, BOT, PAIR, POOL, TOKEN_A, TOKEN_B, OTHER = (address(n) for n in (0xE0A, 0xB07, 0xA1, 0xA3,
                                                                      0x7A, 0x7B, 0x99))
BIG = 3 * 10**30  # exceeds 2**64


def test_block_data_found():
    assert BLOCK_FILES, f"no block files in {BLOCKS_DIR}"


@pytest.mark.parametrize("path", BLOCK_FILES, ids=lambda p: p.stem)
def test_every_block_decodes(path):
    raw = json.loads(path.read_text())
    records, stats = decode_block(raw)
    assert records.dtype == TX_DTYPE
    assert stats["block"] == raw["block_number"]
    assert len(records) == sum(stats["swaps"].values())
    assert (records["block"] == raw["block_number"]).all()
    assert (records["block_time"] == int(raw.get("block_timestamp") or 0)).all()
    amount_in = u256_column_to_ints(records["amount_in"])
    amount_out = u256_column_to_ints(records["amount_out"])
    assert all(a > 0 for a in amount_in) and all(a > 0 for a in amount_out)
    assert (records["token_in"] != records["token_out"]).any(axis=1).all()
    assert set(records["protocol"].tolist()) <= set(PROTOCOL_NAMES) - {PROTOCOL_UNKNOWN}
    # transaction order, and swaps numbered from 0 in call-tree order within each transaction
    keys = list(zip(records["tx_index"].tolist(), records["swap_index"].tolist()))
    assert keys == sorted(keys)
    for tx in set(records["tx_index"].tolist()):
        idx = records["swap_index"][records["tx_index"] == tx].tolist()
        assert idx == list(range(len(idx)))
    gas = {r["transaction_hash"]: r["effective_gas_price"] for r in raw["receipts"]}
    roots = {t["transaction_hash"]: t["action"]["from"].lower() for t in raw["traces"]
             if t["transaction_hash"] and t["trace_address"] == []}
    for r in records:
        h = "0x" + r["tx_hash"].tobytes().hex()
        assert int(r["gas_price"]) == gas[h]
        assert address_hex(r["sender"]) == roots[h]
        assert int(r["sender_key"]) == address_key(r["sender"])
        assert int(r["pool_key"]) == address_key(r["pool"])
        assert int(r["token_in_key"]) == address_key(r["token_in"])
        assert int(r["token_out_key"]) == address_key(r["token_out"])
        # 0: the transaction's own call is the swap (a fill or conversion called by an EOA)
        assert 0 <= r["trace_depth"] <= MAX_TRACE_DEPTH


def test_v2_and_v3_both_decoded_overall():
    protocols = set()
    for records, _ in read_blocks(BLOCKS_DIR):
        protocols.update(records["protocol"].tolist())
    assert {PROTOCOL_UNISWAP_V2, PROTOCOL_UNISWAP_V3} <= protocols


def test_read_blocks_in_block_order():
    numbers = [stats["block"] for _, stats in read_blocks(BLOCKS_DIR)]
    assert numbers == sorted(numbers)
    assert len(numbers) == len(BLOCK_FILES)


def test_records_hold_the_exact_amounts():
    swaps, _ = decode_swaps(BLOCK_FILES[-1])
    records, _ = decode_block(BLOCK_FILES[-1])
    assert u256_column_to_ints(records["amount_in"]) == [s.amount_in for s in swaps]
    assert u256_column_to_ints(records["amount_out"]) == [s.amount_out for s in swaps]
    assert any(s.amount_in > 2**64 or s.amount_out > 2**64 for s in swaps)


def test_uniswap_v3_swaps_match_the_pool_deltas():
    # each V3 swap's amounts are the pool's own int256 return values, read here straight off the
    # raw trace output
    path = sample_dir() / "12775690.json"
    swaps, _ = decode_swaps(path)
    v3 = [s for s in swaps if s.protocol == PROTOCOL_UNISWAP_V3]
    assert len(v3) == 2
    raw = json.loads(path.read_text())
    for s in v3:
        trace = next(t for t in raw["traces"] if t["transaction_hash"] == s.tx_hash
                     and tuple(t["trace_address"]) == s.trace_address)
        out = trace["result"]["output"][2:]
        d0, d1 = (int(out[i:i + 64], 16) for i in (0, 64))
        d0, d1 = (d - 2**256 if d >> 255 else d for d in (d0, d1))
        assert sorted([s.amount_in, -s.amount_out]) == sorted([d0, d1])
        assert s.pool == trace["action"]["to"]


def _v2_tx(tx, base=(), payer=EOA, amount_in=BIG, amount_out=BIG + 5, error=None):
    """A transfer into PAIR at base+(0,) and a V2 swap at base+(1,) paying TOKEN_B to BOT."""
    b = tuple(base)
    return [
        call(tx, b + (0,), payer, TOKEN_A, transfer(PAIR, amount_in), error=error),
        call(tx, b + (1,), payer, PAIR, v2_swap(0, amount_out, BOT)),
        call(tx, b + (1, 0), PAIR, TOKEN_B, transfer(BOT, amount_out)),
    ]


def test_v2_swap_from_transfer_traces():
    traces = [call(0, (), EOA, BOT, "0x12345678")] + _v2_tx(0)
    records, stats = decode_block(block(traces, timestamp=1600000000))
    assert len(records) == 1
    r = records[0]
    assert r["protocol"] == PROTOCOL_UNISWAP_V2
    assert address_hex(r["pool"]) == PAIR and address_hex(r["recipient"]) == BOT
    assert address_hex(r["token_in"]) == TOKEN_A and address_hex(r["token_out"]) == TOKEN_B
    assert address_hex(r["sender"]) == EOA
    assert u256_column_to_ints(records["amount_in"]) == [BIG]
    assert u256_column_to_ints(records["amount_out"]) == [BIG + 5]
    assert r["trace_address"][:r["trace_depth"]].tolist() == [1]
    assert r["block_time"] == 1600000000 and r["gas_price"] == 7
    assert r["tx_hash"].tobytes().hex() == tx_hash(0)[2:]
    assert stats["calls"]["0x12345678"] == 1
    swaps, _ = decode_swaps(block(traces))
    assert swaps[0].payer == EOA


def test_reverted_trace_and_its_children_are_skipped():
    # [0] reverts: its transfer and swap (children without an error of their own) never happened;
    # the live swap at [2] must be paid by the live transfer at [1], not the reverted one
    traces = [
        call(0, (), EOA, BOT),
        call(0, (0,), BOT, OTHER, "0xdeadbeef", error="Reverted"),
        *_v2_tx(0, base=(0,), amount_in=111, amount_out=222),
        call(0, (1,), BOT, TOKEN_A, transfer(PAIR, 333)),
        call(0, (2,), BOT, PAIR, v2_swap(444, 0, BOT)),
        call(0, (2, 0), PAIR, TOKEN_B, transfer(BOT, 444)),
    ]
    records, stats = decode_block(block(traces))
    assert stats["reverted_traces"] == 4
    assert len(records) == 1
    assert u256_column_to_ints(records["amount_in"]) == [333]
    assert u256_column_to_ints(records["amount_out"]) == [444]
    assert records[0]["trace_address"][:records[0]["trace_depth"]].tolist() == [2]
    assert records[0]["swap_index"] == 0


def test_reverted_swap_itself_is_skipped():
    traces = [call(0, (), EOA, BOT), call(0, (0,), BOT, TOKEN_A, transfer(PAIR, 5)),
              call(0, (1,), BOT, PAIR, v2_swap(0, 6, BOT), error="Reverted"),
              call(0, (1, 0), PAIR, TOKEN_B, transfer(BOT, 6))]
    records, stats = decode_block(block(traces))
    assert len(records) == 0 and stats["reverted_traces"] == 2


def test_v3_swap_amounts_from_deltas_tokens_from_transfers():
    # token1 in (callback pays the pool), token0 out; deltas differ from the transfer paid in
    amount0, amount1 = -(2**70 + 1), 2**80 + 3
    traces = [
        call(0, (), EOA, BOT),
        call(0, (0,), BOT, POOL, v3_swap(BOT, False, 2**80 + 3),
             output=v3_output(amount0, amount1)),
        call(0, (0, 0), POOL, TOKEN_A, transfer(BOT, 2**70 + 1)),
        call(0, (0, 1), POOL, BOT, "0xfa461e33"),
        call(0, (0, 1, 0), BOT, TOKEN_B, transfer(POOL, 2**80 + 9)),
    ]
    records, stats = decode_block(block(traces))
    assert len(records) == 1 and stats["swaps"]["uniswap_v3"] == 1
    r = records[0]
    assert r["protocol"] == PROTOCOL_UNISWAP_V3
    assert address_hex(r["token_in"]) == TOKEN_B and address_hex(r["token_out"]) == TOKEN_A
    assert u256_column_to_ints(records["amount_in"]) == [amount1]
    assert u256_column_to_ints(records["amount_out"]) == [-amount0]


def test_proxy_forwarded_transfer_counts_once_and_fee_token_inner_swaps_count():
    traces = [
        call(0, (), EOA, BOT),
        # a proxy token: the same transfer again in its implementation
        call(0, (0,), BOT, TOKEN_A, transfer(PAIR, 50)),
        call(0, (0, 0), TOKEN_A, OTHER, transfer(PAIR, 50), call_type="delegatecall"),
        call(0, (1,), BOT, PAIR, v2_swap(0, 60, BOT)),
        call(0, (1, 0), PAIR, TOKEN_B, transfer(BOT, 60)),
    ]
    records, stats = decode_block(block(traces))
    assert stats["forwarded_transfers"] == 1 and stats["transfers"] == 2
    assert u256_column_to_ints(records["amount_in"]) == [50]
    # a token whose transferFrom sells its fee on a pair first: the inner swap is real, and the
    # enclosing transfer pays the outer swap, not the inner one
    traces = [
        call(1, (), EOA, BOT),
        call(1, (0,), BOT, TOKEN_A, transfer_from(EOA, PAIR, 1000)),
        call(1, (0, 0), TOKEN_A, TOKEN_A, transfer(PAIR, 10)),
        call(1, (0, 1), TOKEN_A, PAIR, v2_swap(0, 9, OTHER)),
        call(1, (0, 1, 0), PAIR, TOKEN_B, transfer(OTHER, 9)),
        call(1, (1,), BOT, PAIR, v2_swap(0, 900, EOA)),
        call(1, (1, 0), PAIR, TOKEN_B, transfer(EOA, 900)),
    ]
    swaps, _ = decode_swaps(block(traces))
    assert [(s.trace_address, s.amount_in, s.amount_out, s.payer) for s in swaps] == [
        ((0, 1), 10, 9, TOKEN_A), ((1,), 1000, 900, EOA)]


def test_mint_absorbs_prior_transfers():
    traces = [
        call(0, (), EOA, BOT),
        call(0, (0,), BOT, TOKEN_A, transfer(PAIR, 7)),
        call(0, (1,), BOT, TOKEN_B, transfer(PAIR, 8)),
        call(0, (2,), BOT, PAIR, "0x6a627842" + "0" * 24 + BOT[2:]),   # mint(BOT)
        call(0, (3,), BOT, PAIR, v2_swap(0, 4, BOT)),                  # nothing paid for it
        call(0, (3, 0), PAIR, TOKEN_B, transfer(BOT, 4)),
    ]
    records, stats = decode_block(block(traces))
    assert len(records) == 0 and stats["skipped"]["no_payment"] == 1


def test_undecodable_swaps_are_counted_by_reason():
    traces = [
        call(0, (), EOA, BOT),
        call(0, (0,), BOT, TOKEN_A, transfer(PAIR, 3)),
        call(0, (1,), BOT, PAIR, v2_swap(1, 2, BOT)),                  # two outputs
        call(0, (1, 0), PAIR, TOKEN_A, transfer(BOT, 1)),
        call(0, (1, 1), PAIR, TOKEN_B, transfer(BOT, 2)),
        call(1, (), EOA, BOT),
        call(1, (0,), BOT, PAIR, v2_swap(0, 2, BOT)),                  # nothing paid in
        call(1, (0, 0), PAIR, TOKEN_B, transfer(BOT, 2)),
        call(2, (), EOA, BOT),
        call(2, (0,), BOT, TOKEN_B, transfer(PAIR, 3)),
        call(2, (1,), BOT, PAIR, v2_swap(0, 5, BOT)),                  # paid in the token it buys
        call(2, (1, 0), PAIR, TOKEN_B, transfer(BOT, 5)),
        call(3, (), EOA, BOT),
        call(3, (0,), BOT, PAIR, "0x022c0d9f" + "00" * 8),             # truncated arguments
        call(3, (1,), BOT, TOKEN_A, "0xa9059cbb00"),                   # truncated transfer
        call(4, (), EOA, BOT),
        call(4, (0,), BOT, TOKEN_A, transfer(PAIR, 3)),
        call(4, (1,), BOT, PAIR, v2_swap(0, 2, BOT)),                  # nothing paid out
    ]
    records, stats = decode_block(block(traces))
    assert len(records) == 0
    assert dict(stats["skipped"]) == {"several_outputs": 1, "no_payment": 1, "same_token": 1,
                                      "malformed_swap": 1, "no_single_output": 1}
    assert stats["malformed_transfers"] == 1
    assert stats["transactions"] == 5


def test_deep_swap_keeps_its_row_with_a_truncated_trace_address():
    deep = tuple(range(MAX_TRACE_DEPTH + 1))
    traces = [call(0, (), EOA, BOT), call(0, deep[:-1] + (0,), BOT, TOKEN_A, transfer(PAIR, 5)),
              call(0, deep, BOT, PAIR, v2_swap(0, 6, BOT)),
              call(0, deep + (0,), PAIR, TOKEN_B, transfer(BOT, 6))]
    records, stats = decode_block(block(traces))
    assert len(records) == 1 and stats["trace_address_truncated"] == 1
    assert records[0]["trace_depth"] == MAX_TRACE_DEPTH
    assert records[0]["trace_address"].tolist() == list(deep[:MAX_TRACE_DEPTH])


def test_bad_inputs_raise_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="'traces'"):
        load_block({"block_number": 1, "receipts": []})
    with pytest.raises(TypeError, match="block must be a dict"):
        load_block([1, 2])
    with pytest.raises(ValueError, match="directory must be a directory"):
        block_files(tmp_path / "missing")
    big = block([call(0, (), EOA, BOT)], gas_price=2**64)
    with pytest.raises(ValueError, match="effective_gas_price"):
        decode_block(big)


# property: random V2/V3 swaps, some inside reverted calls, decode back exactly
_swap = st.tuples(st.booleans(), st.integers(1, 2**256 - 1), st.integers(1, 2**255 - 1),
                  st.booleans())


@settings(max_examples=60, deadline=None)
@given(st.lists(_swap, max_size=6))
def test_generated_swaps_decode_exactly(specs):
    traces, expected = [call(0, (), EOA, BOT)], []
    for i, (v3, amount_in, amount_out, reverted) in enumerate(specs):
        base = (i,)
        error = "Reverted" if reverted else None
        traces.append(call(0, base, BOT, OTHER, "0x11111111", error=error))
        pool = address(0x1000 + i)
        if v3:
            amount_in = min(amount_in, 2**255 - 1)  # an int256 delta
            traces += [
                call(0, base + (0,), BOT, pool, v3_swap(BOT, True, amount_in),
                     output=v3_output(amount_in, -amount_out)),
                call(0, base + (0, 0), pool, TOKEN_B, transfer(BOT, amount_out)),
                call(0, base + (0, 1), pool, BOT, "0xfa461e33"),
                call(0, base + (0, 1, 0), BOT, TOKEN_A, transfer(pool, amount_in)),
            ]
        else:
            traces += [
                call(0, base + (0,), BOT, TOKEN_A, transfer(pool, amount_in)),
                call(0, base + (1,), BOT, pool, v2_swap(0, amount_out, BOT)),
                call(0, base + (1, 0), pool, TOKEN_B, transfer(BOT, amount_out)),
            ]
        if not reverted:
            expected.append((pool, PROTOCOL_UNISWAP_V3 if v3 else PROTOCOL_UNISWAP_V2,
                             amount_in, amount_out))
    records, _ = decode_block(block(traces))
    got = list(zip([address_hex(p) for p in records["pool"]], records["protocol"].tolist(),
                   u256_column_to_ints(records["amount_in"]),
                   u256_column_to_ints(records["amount_out"])))
    assert got == expected
    assert records["swap_index"].tolist() == list(range(len(expected)))
    assert np.all(records["tx_index"] == 0)
