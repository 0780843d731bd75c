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

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from tallyio.record import (FLAG_PENDING, PROTOCOL_BALANCER_V1, PROTOCOL_UNISWAP_V2, int_to_u256,
                            u256_column_to_ints)
from tallyio_mainnet.decode import decode_block, decode_swaps
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


# BPool getters whose calls (and answers) the traces hold, as callers read a pool before a swap
_GET_BALANCE = "0xf8b2cb4f"          # getBalance(address) -> uint256
_GET_DENORMALIZED_WEIGHT = "0x948d8ce6"  # getDenormalizedWeight(address) -> uint256
_GET_SWAP_FEE = "0xd4cadf68"         # getSwapFee() -> uint256
_CALC_OUT_GIVEN_IN = "0xba9530a6"    # calcOutGivenIn(balanceIn, weightIn, balanceOut, weightOut,
                                     # amountIn, swapFee) -> uint256


def balancer_v1_table(block: str | os.PathLike | dict[str, Any]) -> dict[str, np.ndarray]:
    """A pools table (``PoolBook``'s, with ``pool_protocol``, weights and swap fee) of the
    block's Balancer V1 pools whose state before their first swap in the block the traces reveal.

    A pool's state is known where, in the swap's own transaction and before the swap, a live call
    read it from the pool: ``calcOutGivenIn`` with the swap's input amount (its arguments are the
    balances, weights and fee the caller priced the swap with), else ``getBalance`` and
    ``getDenormalizedWeight`` of both tokens and ``getSwapFee``. State read in another
    transaction is not used: anything between (a join, an exit, a swap) may have moved it. One
    two-token entry per pool: the pair its first swap trades.
    """
    raw = block if isinstance(block, dict) else json.loads(Path(block).read_text())
    traces = raw["traces"]
    at = {(t.get("transaction_position"), tuple(t.get("trace_address", ()))): k
          for k, t in enumerate(traces)}
    rows = []
    seen_pools = set()
    for s in decode_swaps(raw)[0]:
        if s.protocol != PROTOCOL_BALANCER_V1 or s.pool in seen_pools:
            continue
        seen_pools.add(s.pool)
        state = _balancer_state(traces[:at[(s.tx_index, s.trace_address)]], s)
        if state is None:
            continue
        bi, wi, bo, wo, fee = state
        tin, tout = bytes.fromhex(s.token_in[2:]), bytes.fromhex(s.token_out[2:])
        if tin < tout:
            rows.append((s.pool, tin, tout, bi, bo, wi, wo, fee))
        else:
            rows.append((s.pool, tout, tin, bo, bi, wo, wi, fee))

    def addresses(xs):
        return np.frombuffer(b"".join(xs), dtype=np.uint8).reshape(-1, 20).copy()

    def words(k):
        return np.array([int_to_u256(r[k]) for r in rows], dtype=np.uint64).reshape(-1, 4)

    return {
        "pool_address": addresses([bytes.fromhex(r[0][2:]) for r in rows]),
        "pool_token0": addresses([r[1] for r in rows]),
        "pool_token1": addresses([r[2] for r in rows]),
        "pool_reserve0": words(3), "pool_reserve1": words(4),
        "pool_protocol": np.full(len(rows), PROTOCOL_BALANCER_V1, np.uint8),
        "pool_weight0": words(5), "pool_weight1": words(6), "pool_swap_fee": words(7),
    }


def _balancer_state(before: list[dict], swap) -> tuple[int, int, int, int, int] | None:
    """``(balance_in, weight_in, balance_out, weight_out, swap_fee)`` of ``swap``'s pool from the
    live calls to it in ``before`` that belong to the swap's transaction (the latest answer of
    each kind), or None."""
    got: dict[Any, Any] = {}
    for t in before:
        a = t["action"]
        if (t.get("type") != "call" or t.get("transaction_position") != swap.tx_index
                or t.get("error") or not t.get("result")
                or a.get("to", "").lower() != swap.pool):
            continue
        inp, out = a.get("input", "0x"), t["result"].get("output", "0x")
        if len(out) < 66:
            continue
        answer = int(out[2:66], 16)
        sel = inp[:10]
        if sel in (_GET_BALANCE, _GET_DENORMALIZED_WEIGHT) and len(inp) >= 74:
            got[(sel, "0x" + inp[34:74].lower())] = answer
        elif sel == _GET_SWAP_FEE:
            got[sel] = answer
        elif sel == _CALC_OUT_GIVEN_IN and len(inp) >= 10 + 6 * 64:
            args = tuple(int(inp[10 + 64 * k:74 + 64 * k], 16) for k in range(6))
            if args[4] == swap.amount_in:
                got[sel] = (args[0], args[1], args[2], args[3], args[5])
    if _CALC_OUT_GIVEN_IN in got:
        return got[_CALC_OUT_GIVEN_IN]
    keys = [(_GET_BALANCE, swap.token_in), (_GET_DENORMALIZED_WEIGHT, swap.token_in),
            (_GET_BALANCE, swap.token_out), (_GET_DENORMALIZED_WEIGHT, swap.token_out),
            _GET_SWAP_FEE]
    if not all(k in got for k in keys):
        return None
    return tuple(got[k] for k in keys)
