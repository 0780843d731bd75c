"""Router calldata decoding: every supported function, CREATE2 pool addresses, bad calldata
counted by reason, and the real mainnet transactions of the block set."""
from __future__ import annotations

import json

import pytest
from abi import addr, call, v3_path
from ethereum_data import BLOCK_FILES

from tallyio.record import (FLAG_PENDING, PROTOCOL_UNISWAP_V2, PROTOCOL_UNISWAP_V3,
                            u256_column_to_ints)
from tallyio_ethereum.calldata import (SELECTORS, SUSHI_FACTORY, SUSHI_INIT_HASH,
                                       UNISWAP_V2_FACTORY, decode_transactions, v2_pair_address,
                                       v3_pool_address)
from tallyio_ethereum.replay import pending_transactions

WETH = addr("0xc02aaa39b223fe8d0a0e5c4f27ead9083c756cc2")
USDC = addr("0xa0b86991c6218b36c1d19d4a2e9eb0ce3606eb48")
DAI = addr("0x6b175474e89094c44da98b954eedeac495271d0f")
USER = addr("0x1111111111111111111111111111111111111111")
V2_ROUTER = "0x7a250d5630b4cf539739df2c5dacb4c659f2488d"
SUSHI_ROUTER = "0xd9e1ce17f2641f24ae83637ab66a2cca9c378b9f"
V3_ROUTER = "0xe592427a0aece92de3edee1f18e0157c05861564"
ROUTER02 = "0x68b3465833fb72a70ecdf485e0e4c7bd8665fc45"
UNIVERSAL = "0x3fc91a3afd70395cd496c647d5a6cc9d4b2b7fad"
WETH_USDC_V2 = addr("0xb4e16d0168e52d35cacd2c6185b44281ec28c9dc")
WETH_USDC_SUSHI = addr("0x397ff1542f962076d0bfe58ea045ffa2d347aca0")
WETH_USDC_V3_500 = addr("0x88e6a0c2ddd26feeb64f039a2c41296fcb3f5640")


def tx(to, data, value=0, sender=USER):
    return {"to": to, "input": data, "value": hex(value), "from": "0x" + sender.hex(),
            "hash": "0x" + "ab" * 32, "nonce": "0x7", "gasPrice": "0x3b9aca00"}


def ints(rows, field):
    return u256_column_to_ints(rows[field])


def test_selectors_are_the_routers_published_ones():
    assert SELECTORS["swapExactTokensForTokens"] == 0x38ED1739
    assert SELECTORS["swapExactETHForTokensSupportingFeeOnTransferTokens"] == 0xB6F9DE95
    assert SELECTORS["exactInputSingle"] == 0x414BF389
    assert SELECTORS["exactInput02"] == 0xB858183F
    assert SELECTORS["multicallDeadline"] == 0x5AE401DC
    assert SELECTORS["executeDeadline"] == 0x3593564C


def test_create2_pool_addresses_are_the_deployed_pools():
    assert v2_pair_address(UNISWAP_V2_FACTORY, WETH, USDC) == WETH_USDC_V2
    assert v2_pair_address(UNISWAP_V2_FACTORY, USDC, WETH) == WETH_USDC_V2
    assert v2_pair_address(SUSHI_FACTORY, USDC, WETH, SUSHI_INIT_HASH) == WETH_USDC_SUSHI
    assert v3_pool_address(WETH, USDC, 500) == WETH_USDC_V3_500


def test_v2_exact_input_multi_hop_one_row_per_hop():
    data = call("swapExactTokensForTokens(uint256,uint256,address[],address,uint256)",
                10**18, 123, ("addresses", [WETH, USDC, DAI]), USER, 1_700_000_000)
    d = decode_transactions([tx(V2_ROUTER, data)])
    assert d.stats["decoded"] == 1 and d.stats["rows"] == 2 and not d.stats["skipped"]
    r = d.rows
    assert list(r["swap_index"]) == [0, 1]
    assert (r["protocol"] == PROTOCOL_UNISWAP_V2).all() and (r["flags"] == FLAG_PENDING).all()
    assert bytes(r["pool"][0]) == WETH_USDC_V2
    assert bytes(r["pool"][1]) == v2_pair_address(UNISWAP_V2_FACTORY, USDC, DAI)
    assert bytes(r["recipient"][0]) == bytes(r["pool"][1])  # a V2 hop pays the next pair
    assert bytes(r["recipient"][1]) == USER
    assert ints(r, "amount_in") == [10**18, 0]
    assert ints(r, "amount_out_min") == [0, 123]
    assert list(d.side["deadline"]) == [1_700_000_000] * 2
    assert r["pool_key"][0] == int.from_bytes(WETH_USDC_V2[-8:], "big")
    assert int(r["nonce"][0]) == 7 and int(r["gas_price"][0]) == 10**9


@pytest.mark.parametrize("sig,exact_out,fot,eth_in", [
    ("swapExactTokensForETH(uint256,uint256,address[],address,uint256)", 0, 0, 0),
    ("swapTokensForExactTokens(uint256,uint256,address[],address,uint256)", 1, 0, 0),
    ("swapTokensForExactETH(uint256,uint256,address[],address,uint256)", 1, 0, 0),
    ("swapExactTokensForTokensSupportingFeeOnTransferTokens(uint256,uint256,address[],address,uint256)", 0, 1, 0),
    ("swapExactTokensForETHSupportingFeeOnTransferTokens(uint256,uint256,address[],address,uint256)", 0, 1, 0),
    ("swapExactETHForTokens(uint256,address[],address,uint256)", 0, 0, 1),
    ("swapExactETHForTokensSupportingFeeOnTransferTokens(uint256,address[],address,uint256)", 0, 1, 1),
    ("swapETHForExactTokens(uint256,address[],address,uint256)", 1, 0, 1),
])
def test_every_v2_router_function(sig, exact_out, fot, eth_in):
    path = ("addresses", [WETH, USDC] if eth_in else [USDC, WETH])
    args = (500, path, USER, 99) if eth_in else (700, 500, path, USER, 99)
    d = decode_transactions([tx(SUSHI_ROUTER, call(sig, *args), value=900 if eth_in else 0)])
    assert d.stats["rows"] == 1, d.stats
    assert bytes(d.rows["pool"][0]) == WETH_USDC_SUSHI
    assert d.side["exact_output"][0] == exact_out and d.side["fee_on_transfer"][0] == fot
    first, second = (900, 500) if eth_in else (700, 500)
    if exact_out:  # the output is the first argument, the input bound the second (or the value)
        assert ints(d.rows, "amount_out") == [first if not eth_in else 500]
        assert u256_column_to_ints(d.side["amount_in_max"]) == [second if not eth_in else 900]
    else:
        assert ints(d.rows, "amount_in") == [first]
        assert ints(d.rows, "amount_out_min") == [second]
    assert int(d.side["deadline"][0]) == 99


def test_v3_single_and_packed_paths_and_multicall():
    single = call("exactInputSingle((address,address,uint24,address,uint256,uint256,uint256,uint160))",
                  WETH, USDC, 500, USER, 77, 10**18, 5, 0)
    multi = call("exactInput((bytes,address,uint256,uint256,uint256))",
                 ("tuple", (("bytes", v3_path(WETH, 500, USDC, 100, DAI)), USER, 78, 10**18, 6)))
    out = call("exactOutput((bytes,address,uint256,uint256,uint256))",
               ("tuple", (("bytes", v3_path(DAI, 100, USDC, 500, WETH)), USER, 79, 10**9, 10**19)))
    wrapped = call("multicall(bytes[])", ("bytes[]", [bytes.fromhex(single[2:]),
                                                      bytes.fromhex("12210e8a")]))  # + refundETH
    d = decode_transactions([tx(V3_ROUTER, x) for x in (single, multi, out, wrapped)])
    assert d.stats["decoded"] == 4 and d.stats["rows"] == 1 + 2 + 2 + 1
    assert d.stats["skipped"] == {"multicall_other_call": 1}
    assert (d.rows["protocol"] == PROTOCOL_UNISWAP_V3).all()
    assert list(d.tx) == [0, 1, 1, 2, 2, 3]
    assert bytes(d.rows["pool"][0]) == WETH_USDC_V3_500
    assert bytes(d.rows["pool"][2]) == v3_pool_address(USDC, DAI, 100)
    assert list(d.side["fee"]) == [500, 500, 100, 500, 100, 500]
    assert ints(d.rows, "amount_out_min") == [5, 0, 6, 0, 0, 5]
    # exactOutput's path runs output first; rows run input first
    assert bytes(d.rows["token_in"][3]) == WETH and bytes(d.rows["token_out"][4]) == DAI
    assert ints(d.rows, "amount_out")[4] == 10**9
    assert u256_column_to_ints(d.side["amount_in_max"])[3] == 10**19
    assert list(d.side["deadline"]) == [77, 78, 78, 79, 79, 77]


def test_swaprouter02_functions_and_multicall_deadline():
    s = call("exactInputSingle((address,address,uint24,address,uint256,uint256,uint160))",
             WETH, USDC, 500, USER, 10**18, 5, 0)
    v2 = call("swapExactTokensForTokens(uint256,uint256,address[],address)", 10, 1,
              ("addresses", [USDC, WETH]), USER)
    o = call("exactOutputSingle((address,address,uint24,address,uint256,uint256,uint160))",
             WETH, USDC, 3000, USER, 10**6, 10**18, 0)
    m = call("multicall(uint256,bytes[])", 1234, ("bytes[]", [bytes.fromhex(x[2:]) for x in (s, v2, o)]))
    d = decode_transactions([tx(ROUTER02, m)])
    assert d.stats["rows"] == 3 and not d.stats["skipped"]
    assert list(d.rows["protocol"]) == [PROTOCOL_UNISWAP_V3, PROTOCOL_UNISWAP_V2, PROTOCOL_UNISWAP_V3]
    assert list(d.rows["swap_index"]) == [0, 1, 2]
    assert bytes(d.rows["pool"][1]) == WETH_USDC_V2
    assert list(d.side["deadline"]) == [1234] * 3
    assert list(d.side["exact_output"]) == [0, 0, 1]


def test_universal_router_swap_commands():
    v3_in = bytes.fromhex(call("x(address,uint256,uint256,bytes,bool)", USER, 10**18, 7,
                               ("bytes", v3_path(WETH, 500, USDC)), 1)[10:])
    v2_out = bytes.fromhex(call("x(address,uint256,uint256,address[],bool)", USER, 10**6, 10**18,
                                ("addresses", [WETH, USDC]), 1)[10:])
    wrap = bytes(64)
    data = call("execute(bytes,bytes[],uint256)", ("bytes", bytes([0x0B, 0x00, 0x89])),
                ("bytes[]", [wrap, v3_in, v2_out]), 555)
    d = decode_transactions([tx(UNIVERSAL, data)])
    assert d.stats["rows"] == 2, d.stats
    assert d.stats["skipped"] == {"universal_other_command": 1}  # WRAP_ETH
    assert list(d.rows["protocol"]) == [PROTOCOL_UNISWAP_V3, PROTOCOL_UNISWAP_V2]
    assert bytes(d.rows["pool"][0]) == WETH_USDC_V3_500 and bytes(d.rows["pool"][1]) == WETH_USDC_V2
    assert ints(d.rows, "amount_in") == [10**18, 0] and ints(d.rows, "amount_out") == [0, 10**6]
    assert list(d.side["deadline"]) == [555, 555]


def test_bad_calldata_is_counted_by_reason_never_raised():
    good = call("swapExactTokensForTokens(uint256,uint256,address[],address,uint256)",
                10, 1, ("addresses", [WETH, USDC]), USER, 9)
    raw = bytes.fromhex(good[2:])
    dirty = bytearray(raw)
    dirty[4 + 3 * 32] = 1  # the recipient word's high bytes
    big_offset = bytearray(raw)
    big_offset[4 + 2 * 32] = 0xFF  # the path offset's top byte
    txs = [
        tx(V2_ROUTER, "0x" + raw[:40].hex()),                    # short
        tx(V2_ROUTER, "0x" + bytes(dirty).hex()),
        tx(V2_ROUTER, "0x" + bytes(big_offset).hex()),
        tx(V2_ROUTER, "0xdeadbeef" + "00" * 64),                 # unknown selector
        tx(V2_ROUTER, "0x12"),                                   # shorter than a selector
        tx(V2_ROUTER, call("swapExactTokensForTokens(uint256,uint256,address[],address,uint256)",
                           10, 1, ("addresses", [WETH]), USER, 9)),
        tx(V3_ROUTER, call("exactInput((bytes,address,uint256,uint256,uint256))",
                           ("tuple", (("bytes", WETH + b"\0\0"), USER, 1, 1, 1)))),
        tx("0x" + "22" * 20, good),                              # not a router
        {"to": None, "input": "0x6080"},                         # contract creation
        tx(V2_ROUTER, good),
    ]
    d = decode_transactions(txs)
    assert d.stats["skipped"] == {"short_calldata": 2, "dirty_address": 1,
                                  "offset_out_of_range": 1, "unknown_selector": 1,
                                  "short_path": 1, "bad_v3_path": 1, "not_a_router": 2}
    assert d.stats["decoded"] == 1 and list(d.tx) == [9]


def test_callers_mistakes_raise_naming_the_field():
    with pytest.raises(ValueError, match="'input'"):
        decode_transactions([{"to": V2_ROUTER, "input": "0xzz"}])
    with pytest.raises(TypeError, match="transaction 0"):
        decode_transactions(["0x00"])
    with pytest.raises(ValueError, match="'value'"):
        decode_transactions([{"to": V2_ROUTER, "input": "0x38ed1739", "value": "lots"}])


def test_mainnet_router_transactions_decode_to_the_pools_they_called():
    """Every decoded hop's CREATE2 pool is a contract the transaction actually called (those
    that did not revert: a reverted router call often fails before calling any pool)."""
    decoded = checked = 0
    for path in BLOCK_FILES:
        block = json.loads(path.read_text())
        called: dict[str, set] = {}
        reverted = {t["transaction_hash"] for t in block["traces"]
                    if t.get("transaction_hash") and not t["trace_address"] and t.get("error")}
        for t in block["traces"]:
            if t.get("transaction_hash"):
                called.setdefault(t["transaction_hash"], set()).add((t["action"].get("to") or "").lower())
        pending = pending_transactions(block)
        d = decode_transactions(pending)
        decoded += d.stats["decoded"]
        for r in range(len(d.rows)):
            h = pending[int(d.tx[r])]["hash"]
            if h in reverted:
                continue
            checked += 1
            assert "0x" + bytes(d.rows["pool"][r]).hex() in called[h], (h, r)
        assert set(d.stats["skipped"]) <= {"not_a_router", "unknown_selector", "multicall_other_call"}
    assert decoded >= (360 if len(BLOCK_FILES) == 25 else 20)
    assert checked >= (300 if len(BLOCK_FILES) == 25 else 15)
