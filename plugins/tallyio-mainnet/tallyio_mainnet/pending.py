"""Mainnet blocks replayed as pending swaps over a pools table built from them (a test bench for
strategies: the strategy plugins' tests compare their compiled and reference implementations on it).

The blocks hold mined swaps and no reserves, so the pending path needs both made up, the same way
for the reference and the compiled strategy: every decoded row becomes pending with a 1%
slippage bound on its real output, and every Uniswap V2 pool gets reserves 20 times its first
swap's input (in the tokens' real order and amounts, priced so that first swap pays about what it
paid on chain). Swaps of ~5% of a pool push sibling pools far out of their fee band and leave
room to sandwich, so both strategies find things; later swaps on a moved pool may revert.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from tallyio.record import (FLAG_PENDING, PROTOCOL_UNISWAP_V2, int_to_u256, u256_column_to_ints)
from tallyio_mainnet.decode import decode_block
from tallyio_mainnet.source import sample_dir

WETH = bytes.fromhex("c02aaa39b223fe8d0a0e5c4f27ead9083c756cc2")


def block_files(path: str | os.PathLike | None = None) -> list[Path]:
    """The ``<number>.json`` block files of ``path`` in block order (None: the shipped sample)."""
    d = Path(path) if path is not None else sample_dir()
    return sorted(p for p in d.glob("*.json") if p.stem.isdigit())


def blocks(path: str | os.PathLike | None = None) -> list[np.ndarray]:
    """Each block's decoded swaps (mined rows), in block order."""
    return [decode_block(p)[0] for p in block_files(path)]


def pending_feed(path: str | os.PathLike | None = None
                 ) -> tuple[list[np.ndarray], dict[str, np.ndarray]]:
    """``(chunks, table)``: each block's rows made pending, ids unique across blocks, and the
    pools table (WETH the only priced token)."""
    chunks, first = [], {}
    next_id = 0
    for rec in blocks(path):
        rec = rec.copy()
        rec["flags"] |= FLAG_PENDING
        rec["id"] = np.arange(next_id, next_id + len(rec), dtype=np.uint64)
        next_id += len(rec)
        outs = u256_column_to_ints(rec["amount_out"])
        rec["amount_out_min"] = np.array([int_to_u256(o * 99 // 100) for o in outs],
                                         dtype=np.uint64).reshape(-1, 4)
        ins = u256_column_to_ints(rec["amount_in"])
        for k in np.flatnonzero(rec["protocol"] == PROTOCOL_UNISWAP_V2).tolist():
            pool = bytes(rec["pool"][k])
            if pool not in first and ins[k] > 0 and outs[k] > 0:
                first[pool] = (bytes(rec["token_in"][k]), bytes(rec["token_out"][k]), ins[k], outs[k])
        chunks.append(rec)
    rows = []
    for pool, (tin, tout, a, o) in first.items():
        rin = 20 * a
        rout = o * (1000 * rin + 997 * a) // (997 * a) + 1  # getAmountOut(a, rin, rout) ~ o
        t0, t1, r0, r1 = (tin, tout, rin, rout) if tin < tout else (tout, tin, rout, rin)
        rows.append((pool, t0, t1, r0, r1))

    def addresses(xs):
        return np.frombuffer(b"".join(xs), dtype=np.uint8).reshape(-1, 20).copy()

    table = {
        "pool_address": addresses([r[0] for r in rows]),
        "pool_token0": addresses([r[1] for r in rows]),
        "pool_token1": addresses([r[2] for r in rows]),
        "pool_reserve0": np.array([int_to_u256(r[3]) for r in rows], dtype=np.uint64).reshape(-1, 4),
        "pool_reserve1": np.array([int_to_u256(r[4]) for r in rows], dtype=np.uint64).reshape(-1, 4),
        "token_address": addresses([WETH]),
        "token_price_num": np.array([int_to_u256(1)], dtype=np.uint64),
        "token_price_den": np.array([int_to_u256(1)], dtype=np.uint64),
    }
    return chunks, table
