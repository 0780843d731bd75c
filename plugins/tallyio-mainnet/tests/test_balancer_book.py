"""Pending Balancer V1 swaps applied by the compiled PoolBook predict the chain's amounts: on the
fixture blocks, every Balancer V1 swap whose pool state the traces reveal (tallyio_mainnet.pending.
balancer_v1_table), replayed as pending, pays out exactly what the pool transferred."""
from __future__ import annotations

import numpy as np

from mainnet_data import BLOCK_FILES, BLOCKS_DIR, FULL_BLOCKS
from tallyio.amm import STATUS_APPLIED, PoolBook
from tallyio.record import PROTOCOL_BALANCER_V1, u256_column_to_ints
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
