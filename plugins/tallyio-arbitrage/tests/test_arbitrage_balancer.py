"""The arbitrage processor over a pool table with a Uniswap V2 pool and a Balancer V1 pool of the
same pair: a pending swap that opens a gap between them is reported as a cross-exchange
Opportunity whose profit equals an exhaustive integer scan (tallyio.amm_reference)."""
import numpy as np

from tallyio import amm_reference as ref
from tallyio.record import (FLAG_PENDING, PROTOCOL_BALANCER_V1, PROTOCOL_UNISWAP_V2, TX_DTYPE,
                            address_hex, address_key, int_to_u256)
from tallyio_arbitrage.processor import ArbitrageProcessor

BONE = 10**18
WETH = bytes(19) + b"\x01"   # token0: the profit token
TOKEN = bytes(19) + b"\x02"
V2, BAL = bytes([0xA1] * 20), bytes([0xB2] * 20)


def table(v2, bal, weights, fee):
    def a(*xs):
        return np.frombuffer(b"".join(xs), np.uint8).reshape(-1, 20).copy()

    def w(*xs):
        return np.array([int_to_u256(x) for x in xs], np.uint64).reshape(-1, 4)

    return {"pool_address": a(V2, BAL), "pool_token0": a(WETH, WETH),
            "pool_token1": a(TOKEN, TOKEN), "pool_reserve0": w(v2[0], bal[0]),
            "pool_reserve1": w(v2[1], bal[1]),
            "pool_protocol": np.array([PROTOCOL_UNISWAP_V2, PROTOCOL_BALANCER_V1], np.uint8),
            "pool_weight0": w(0, weights[0]), "pool_weight1": w(0, weights[1]),
            "pool_swap_fee": w(0, fee), "token_address": a(WETH),
            "token_price_num": w(1), "token_price_den": w(1)}


def pending_swap(pool, protocol, token_in, amount_in):
    rows = np.zeros(1, TX_DTYPE)
    rows["id"] = 7
    rows["flags"] = FLAG_PENDING
    rows["protocol"] = protocol
    rows["pool"] = np.frombuffer(pool, np.uint8)
    rows["pool_key"] = address_key(pool)
    rows["token_in"] = np.frombuffer(token_in, np.uint8)
    rows["token_in_key"] = address_key(token_in)
    rows["amount_in"] = int_to_u256(amount_in)
    rows["gas_price"] = 1
    return rows


def test_cross_exchange_arbitrage_exact_profit():
    v2, bal, weights, fee = (20_000, 20_000), (20_000, 20_000), (BONE, BONE), 3 * 10**15
    proc = ArbitrageProcessor(table(v2, bal, weights, fee), gas_units=5)
    # selling 3,000 WETH on the V2 pool makes WETH cheap there: buy it back on V2 with the
    # token bought from Balancer
    rows = pending_swap(V2, PROTOCOL_UNISWAP_V2, WETH, 3_000)
    found = proc.process(rows) + proc.flush()
    x = 3_000 * 997 * v2[1] // (v2[0] * 1000 + 3_000 * 997)
    after = (v2[0] + 3_000, v2[1] - x)
    best = ref.brute_cross_v2_balancer((after[1], after[0]), (bal[0], weights[0], bal[1],
                                       weights[1], fee), False, bal[0] // 2)
    assert best is not None and best.gross_profit > 5
    assert len(found) == 1
    o = found[0]
    assert o.pools == (address_hex(BAL), address_hex(V2)) and o.profit_token == address_hex(WETH)
    assert o.details["gross_profit"] == best.gross_profit
    assert o.profit == best.gross_profit - 5  # gas: 5 units at 1 wei, WETH
    assert o.tx_ids == (7,)
    assert proc.stats()["applied"] == 1
