"""Pending Balancer V1 swaps applied by the compiled PoolBook predict the chain's amounts: on the
fixture blocks, every Balancer V1 swap whose pool state the traces reveal (tallyio_mainnet.pending.
balancer_v1_table), replayed as pending, pays out exactly what the pool transferred; and the
arbitrage screen finds a real Uniswap V2 -> Balancer V1 back-run from the swap that opened it."""
from __future__ import annotations

import json

import numpy as np

from mainnet_data import BLOCK_FILES, BLOCKS_DIR, FULL_BLOCKS, VECTORS
from tallyio.amm import (STATUS_APPLIED, ArbitrageScreen, PoolBook, balancer_v1_out_given_in,
                         get_amount_out)
from tallyio.pricing import price_table
from tallyio.record import (FLAG_PENDING, PROTOCOL_BALANCER_V1, PROTOCOL_UNISWAP_V2, address_bytes,
                            address_hex, int_to_u256, u256_column_to_ints)
from tallyio_mainnet.decode import decode_block
from tallyio_mainnet.pending import balancer_v1_table, pending_feed


def test_pending_balancer_swaps_predict_the_chain():
    chunks, _ = pending_feed(BLOCKS_DIR)
    assert len(chunks) == len(BLOCK_FILES)
    applied = pools = 0
    for path, rows in zip(BLOCK_FILES, chunks):
        table = balancer_v1_table(path)
        if not len(table["pool_address"]):
            continue
        pools += len(table["pool_address"])
        book = PoolBook(table)
        outcome = book.apply(rows)
        known = np.array([book.index(bytes(p)) >= 0 for p in rows["pool"]], dtype=bool)
        mine = known & (rows["protocol"] == PROTOCOL_BALANCER_V1)
        # every pending swap on a pool of known state applies, paying what the chain paid
        assert (outcome["status"][mine] == STATUS_APPLIED).all(), path.name
        assert (outcome["status"][~mine] != STATUS_APPLIED).all()
        assert (u256_column_to_ints(outcome["amount_out"][mine])
                == u256_column_to_ints(rows["amount_out"][mine])), path.name
        # and moves the balances by what went in and out
        col = {k: u256_column_to_ints(outcome[k][mine]) for k in
               ("reserve0_before", "reserve1_before", "reserve0_after", "reserve1_after")}
        ins = u256_column_to_ints(rows["amount_in"][mine])
        outs = u256_column_to_ints(rows["amount_out"][mine])
        for n, z in enumerate(outcome["zero_for_one"][mine].tolist()):
            d0, d1 = (ins[n], -outs[n]) if z else (-outs[n], ins[n])
            assert col["reserve0_after"][n] == col["reserve0_before"][n] + d0
            assert col["reserve1_after"][n] == col["reserve1_before"][n] + d1
        applied += int(mine.sum())
    # the pools priced by their own calcOutGivenIn just before a swap (block 10921991 twice)
    full = BLOCKS_DIR == FULL_BLOCKS
    assert (pools, applied) == ((5, 5) if full else (0, 0))


ARB_BLOCK = VECTORS / "11930296-balancer-arbitrage.json"
V2_PAIR = "0xe56c60b5f9f7b5fc70de0eb79c6ee7d00efa2625"
BPOOL = "0x5a21e141ca90e46a2ee54f93b54a1bec608c307b"
WETH = "0xc02aaa39b223fe8d0a0e5c4f27ead9083c756cc2"
GET_RESERVES = "0x0902f1ac"
BONE = 10**18


def test_screen_finds_the_v2_balancer_backrun_the_chain_saw():
    """Block 11930296: tx 152 sells 10,000 of a token for WETH on a Uniswap V2 pair; tx 153, a
    bot, reads the pair (getReserves) and the BPool (calcOutGivenIn), then buys the token back on
    the pair and sells it on the BPool. Replayed as pending over a book holding the pair before
    tx 152 (as its router read it) and the BPool as the bot read it, the book lands on the
    reserves the bot read, the screen reports that route from tx 152 alone at least as profitable
    as the bot's, and the bot's two swaps pay exactly what the chain paid."""
    raw = json.loads(ARB_BLOCK.read_text())
    rows = decode_block(raw)[0].copy()
    rows["flags"] |= FLAG_PENDING
    # the pair's reserves as tx 152 (through the router) and the bot each read them
    reads = {t["transaction_position"]: t["result"]["output"][2:] for t in raw["traces"]
             if t["action"].get("to", "").lower() == V2_PAIR
             and t["action"].get("input", "")[:10] == GET_RESERVES}
    assert sorted(reads) == [152, 153]
    before, seen = ((int(w[:64], 16), int(w[64:128], 16)) for w in (reads[152], reads[153]))
    on_pair = np.array([address_hex(p) == V2_PAIR for p in rows["pool"]])
    trigger = np.flatnonzero(rows["tx_index"] == 152)  # a router's two hops, one on the pair
    bot = np.flatnonzero(rows["tx_index"] == 153)
    assert len(bot) == 2 and on_pair[trigger].sum() == 1
    bought = u256_column_to_ints(rows["amount_out"][trigger[on_pair[trigger]]])[0]

    bal = balancer_v1_table(raw)
    assert [address_hex(a) for a in bal["pool_address"]] == [BPOOL]
    # the pair trades the BPool's two tokens: a table of both, the pair first
    v2 = {"pool_address": np.frombuffer(address_bytes(V2_PAIR), np.uint8),
          "pool_token0": bal["pool_token0"][0], "pool_token1": bal["pool_token1"][0],
          "pool_reserve0": int_to_u256(before[0]),
          "pool_reserve1": int_to_u256(before[1]), "pool_protocol": PROTOCOL_UNISWAP_V2,
          "pool_weight0": int_to_u256(0), "pool_weight1": int_to_u256(0),
          "pool_swap_fee": int_to_u256(0)}
    table = {k: np.concatenate([np.asarray(v, dtype=bal[k].dtype).reshape(1, *bal[k].shape[1:]),
                                bal[k]]) for k, v in v2.items()}
    assert address_hex(table["pool_token0"][0]) == WETH
    table.update(token_address=np.frombuffer(address_bytes(WETH), np.uint8).reshape(1, 20),
                 token_price_num=np.array([int_to_u256(1)], np.uint64),
                 token_price_den=np.array([int_to_u256(1)], np.uint64))
    book = PoolBook(table)
    assert book.cross_siblings(0) == (1,)

    first = rows[trigger]
    out = book.apply(first)
    assert (out["status"] == STATUS_APPLIED).tolist() == on_pair[trigger].tolist()
    assert u256_column_to_ints(out["amount_out"][on_pair[trigger]]) == [bought]
    assert book.reserves(0) == seen

    found = ArbitrageScreen(book, price_table(table), gas_units=0)(first)
    assert len(found) == 1 and found[0]["row"] == np.flatnonzero(on_pair[trigger])[0]
    f = found[0]
    assert (int(f["pool_a"]), int(f["pool_b"]), int(f["profit_token0"])) == (0, 1, 1)
    x, mid, back, gross = (u256_column_to_ints(found[k])[0] for k in
                           ("amount_in", "amount_mid", "amount_out", "gross_profit"))
    w0, w1, fee = book.balancer(1)
    b0, b1 = book.reserves(1)
    assert get_amount_out(x, *seen) == mid
    assert balancer_v1_out_given_in(b1, w1, b0, w0, mid, fee) == back == x + gross
    bot_in, bot_out = (u256_column_to_ints(rows[k][bot])[0] for k in ("amount_in", "amount_out"))
    bot_back = u256_column_to_ints(rows["amount_out"][bot])[1]
    assert rows["pool"][bot][1].tobytes() == address_bytes(BPOOL)
    assert gross >= bot_back - bot_in > 0
    # the figures docs/amm.md quotes: 0.048062 WETH against the bot's 0.048010
    assert (gross, bot_back - bot_in) == (48061851859771592, 48010001572665858)

    # no input earns more: not the bot's, not a grid across the bound, not the neighbours (an
    # input the BPool refuses, past MAX_IN_RATIO = bmul(balance, BONE / 2), earns nothing)
    max_in = (b1 * (BONE // 2) + BONE // 2) // BONE
    def gain(a):
        m = get_amount_out(a, *seen)
        return -a if m > max_in else balancer_v1_out_given_in(b1, w1, b0, w0, m, fee) - a

    assert gain(x) == gross
    grid = range(seen[0] // 1000, seen[0], seen[0] // 1000)
    assert max(gain(a) for a in [bot_in, *grid, *range(x - 500, x + 501)]) == gross

    second = rows[bot]
    out = book.apply(second)
    assert out["status"].tolist() == [STATUS_APPLIED, STATUS_APPLIED]
    assert u256_column_to_ints(out["amount_out"]) == u256_column_to_ints(second["amount_out"])
