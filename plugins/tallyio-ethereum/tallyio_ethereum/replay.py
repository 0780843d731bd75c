"""Replay mined blocks as a pending stream and check each V2 router swap's predicted output
against what the chain did, to the wei.

For one block (``tallyio-mainnet``'s trace format): its top-level transactions (the traces with an
empty ``trace_address``: ``action.from/to/input/value``), in block order, go through
``decode_transactions`` as the mempool would hand them over; then, one transaction at a time, the
decoded Uniswap V2 rows go through a compiled ``tallyio.amm.PoolBook``. The pools' reserves come
from the chain only through ``getReserves()`` (``0x0902f1ac``) return values in the traces:

* A ``getReserves()`` of pair P in transaction j that runs before any reserve-changing call on P in
  j (``swap``, ``mint``, ``burn``, ``sync``, reverted ones included: they were visible then) shows
  P's reserves at the start of j: what ``eth_call getReserves`` on the pending state would return.
  The first such value seeds P. A later one is compared with the book (``reserves_verified`` /
  ``book_diverged``) and, when ``refresh`` is on, re-seeds a pool the book lost track of (what the
  live source does on each new head).
* The book loses track of P (``stale``) when a transaction changes P (a live reserve-changing call)
  and the book did not apply that change exactly: an undecoded transaction (a bot calling the pair,
  an aggregator), a V3/other-DEX swap, a fee-on-transfer swap, a reverted prediction.

Prediction, per decoded V2 router transaction whose pools are all seeded and in step:

* exact input: each hop's output is the book's ``getAmountOut`` (``PoolBook.apply``, one row per
  hop with the previous hop's output as its input), checked first against ``amount_out_min`` with
  the compiled kernel so that a swap that reverts leaves the book untouched;
* exact output: the hop inputs are the router's ``getAmountsIn`` (compiled ``get_amount_in``),
  checked against the input bound; the pools then take exactly those amounts (``PoolBook.apply``
  would pay ``getAmountOut`` of the input, which can exceed the asked output by a few wei, so
  these pools are written into a rebuilt book instead);
* a deadline before the block's timestamp (where the block has one) predicts a revert.

Checked against the chain: the pair ``swap`` calls the transaction made (live, in call order): the
same pairs, and each ``amount0Out``/``amount1Out`` equal to the predicted output. Outcomes:
``exact`` (every hop to the wei), ``reverted_as_predicted``, or unpredictable by reason:
``reserves_unknown`` (a pool not yet revealed), ``reserves_stale`` (changed by something the book
did not see since), ``fee_on_transfer`` (a ``SupportingFeeOnTransferTokens`` call whose pair got
less than was sent), ``reverted_on_chain`` (the chain reverted what the book predicted would pass:
allowance, balance, a token's own rules), and ``mismatch`` (none of the above: a bug; the tests
require zero).
"""
from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from tallyio import amm
from tallyio.record import PROTOCOL_UNISWAP_V2, PROTOCOL_UNISWAP_V3, u256_column_to_ints

from tallyio_ethereum.calldata import decode_transactions

GET_RESERVES = "0x0902f1ac"
BALANCE_OF = "0x70a08231"
V2_SWAP = "0x022c0d9f"
# pair calls that change its reserves: swap, mint, burn, sync
PAIR_UPDATES = frozenset({V2_SWAP, "0x6a627842", "0x89afcb44", "0xfff6cae9"})

OUTCOMES = ("exact", "reverted_as_predicted", "reserves_unknown", "reserves_stale",
            "fee_on_transfer", "token_swapped_in_transfer", "reverted_on_chain", "mismatch")

__all__ = ["OUTCOMES", "replay_block", "replay_blocks", "block_files", "pending_transactions",
           "revealed_reserves"]


def _is_under(addr: tuple, parent: tuple) -> bool:
    return addr[:len(parent)] == parent


def block_files(directory: str | os.PathLike) -> list[Path]:
    """The ``<number>.json`` block files of ``directory`` in block order."""
    d = Path(directory)
    if not d.is_dir():
        raise ValueError(f"directory must be a directory of block JSON files, got {str(directory)!r}")
    return sorted((p for p in d.glob("*.json") if p.stem.isdigit()), key=lambda p: int(p.stem))


def _load(block) -> dict:
    if isinstance(block, (str, os.PathLike)):
        with open(block, "rb") as f:
            block = json.load(f)
    if not isinstance(block, dict) or "traces" not in block:
        raise ValueError(f"block must be a block dict with 'traces' or a path to one, got {type(block).__name__}")
    return block


class _Tx:
    """What the traces say one transaction did to the V2 pairs."""

    __slots__ = ("position", "top", "reveals", "updated", "swaps", "others", "post", "reverted")

    def __init__(self, position, top):
        self.position, self.top = position, top
        self.reveals: dict[str, tuple[int, int]] = {}   # pair -> reserves at the start of the tx
        self.updated: set[str] = set()                   # pairs whose reserves it changed (live)
        self.swaps: list[tuple[str, int, int]] = []      # live pair swaps the router called
        self.others: set[str] = set()   # pairs changed by any other call (a token's own swap...)
        # pair -> the balances its last router swap read back (its reserves after the swap)
        self.post: dict[str, tuple[int, int]] = {}
        self.reverted = bool(top.get("error"))


def _transactions(block: dict) -> list[_Tx]:
    by_tx: dict[int, list[dict]] = {}
    for t in block["traces"]:
        if t.get("transaction_position") is not None:
            by_tx.setdefault(int(t["transaction_position"]), []).append(t)
    out = []
    for pos in sorted(by_tx):
        traces = sorted(by_tx[pos], key=lambda t: t["trace_address"])
        if traces[0]["trace_address"]:
            continue  # no top-level call recorded: nothing a mempool would have shown
        tx = _Tx(pos, traces[0])
        router = (tx.top["action"].get("to") or "").lower()
        touched: set[str] = set()  # reserve-changing calls so far, reverted or not
        # frames running as the router itself: the top call, and its delegatecalls to itself
        # (SwapRouter02's multicall); the router's own hops are the calls these frames make
        frames = {()}
        swap_frames: dict[tuple, tuple[str, list]] = {}  # router swap call -> (pair, balances)
        reverted: list[tuple] = []
        for t in traces:
            addr = tuple(t["trace_address"])
            dead = bool(t.get("error")) or any(_is_under(addr, r) for r in reverted)
            if t.get("error"):
                reverted.append(addr)
            if t.get("type") != "call":
                continue
            a = t["action"]
            to, sel = (a.get("to") or "").lower(), (a.get("input") or "0x")[:10].lower()
            if a.get("callType") == "delegatecall" and to == router and addr[:-1] in frames:
                frames.add(addr)
            if (sel == BALANCE_OF and len(addr) >= 2 and addr[:-1] in swap_frames
                    and (a.get("from") or "").lower() == swap_frames[addr[:-1]][0]):
                out_hex = (t.get("result") or {}).get("output") or "0x"
                if len(out_hex) >= 66:
                    swap_frames[addr[:-1]][1].append(int(out_hex[2:66], 16))
            if sel == GET_RESERVES and a.get("callType") in ("staticcall", "call"):
                out_hex = (t.get("result") or {}).get("output") or "0x"
                if len(out_hex) >= 2 + 3 * 64 and to not in touched and to not in tx.reveals:
                    tx.reveals[to] = (int(out_hex[2:66], 16), int(out_hex[66:130], 16))
            elif sel in PAIR_UPDATES and a.get("callType") == "call":
                touched.add(to)
                if not dead:
                    tx.updated.add(to)
                    data = a["input"][10:]
                    # the router's own hops are its direct calls; a pair swap deeper down is
                    # someone else's (a token re-entering the router from its transfer)
                    if (sel == V2_SWAP and len(data) >= 128 and addr[:-1] in frames
                            and (a.get("from") or "").lower() == router):
                        tx.swaps.append((to, int(data[:64], 16), int(data[64:128], 16)))
                        swap_frames[addr] = (to, [])
                    else:
                        tx.others.add(to)
        for pair, balances in swap_frames.values():
            if len(balances) >= 2:  # UniswapV2Pair.swap reads token0's balance, then token1's
                tx.post[pair] = (balances[-2], balances[-1])
        out.append(tx)
    return out


def pending_transactions(block) -> list[dict]:
    """The block's top-level transactions as JSON-RPC-like objects, in block order (what a node's
    ``newPendingTransactions`` subscription would have delivered)."""
    block = _load(block)
    gas = {r["transaction_hash"]: r.get("effective_gas_price") for r in block.get("receipts", [])}
    out = []
    for tx in _transactions(block):
        a = tx.top["action"]
        h = tx.top.get("transaction_hash")
        out.append({"hash": h, "from": a.get("from"), "to": a.get("to"),
                    "input": a.get("input") or "0x", "value": a.get("value") or "0x0",
                    "gasPrice": gas.get(h), "transactionIndex": tx.position})
    return out


def revealed_reserves(block) -> dict[str, tuple[int, int]]:
    """Each V2 pair's reserves at the start of the first transaction of the block that reveals
    them with ``getReserves()`` (what ``eth_call getReserves`` answered then), by pair address."""
    out: dict[str, tuple[int, int]] = {}
    for tx in _transactions(_load(block)):
        for pool, r in tx.reveals.items():
            out.setdefault(pool, r)
    return out


class _Book:
    """A ``PoolBook`` over the pools seeded so far, rebuilt when a pool is added or written
    (a ``PoolBook`` never changes its pools, and has no setter for reserves)."""

    def __init__(self):
        self.table: dict[str, list] = {}   # pool hex -> [token0, token1, reserve0, reserve1]
        self.book = None
        self.rebuilds = 0

    def sync(self):
        """Copy the book's reserves back into the table (before rebuilding from it)."""
        if self.book is not None:
            for pool, e in self.table.items():
                e[2], e[3] = self.book.reserves(self.book.index(pool))

    def set(self, updates: dict[str, tuple[bytes, bytes, int, int]]):
        """Add or overwrite pools (tokens sorted, reserves) and rebuild the book."""
        self.sync()
        for pool, entry in updates.items():
            self.table[pool] = list(entry)
        pools = list(self.table)
        self.book = amm.PoolBook({
            "pool_address": np.array([np.frombuffer(bytes.fromhex(p[2:]), np.uint8) for p in pools]),
            "pool_token0": np.array([np.frombuffer(self.table[p][0], np.uint8) for p in pools]),
            "pool_token1": np.array([np.frombuffer(self.table[p][1], np.uint8) for p in pools]),
            "pool_reserve0": amm.to_u256_column([self.table[p][2] for p in pools]),
            "pool_reserve1": amm.to_u256_column([self.table[p][3] for p in pools]),
        })
        self.rebuilds += 1

    def reserves(self, pool: str) -> tuple[int, int]:
        return self.book.reserves(self.book.index(pool))

    def __contains__(self, pool):
        return pool in self.table


def _hex(b) -> str:
    return "0x" + bytes(np.asarray(b, np.uint8)).hex()


def replay_block(block, *, refresh: bool = True) -> dict[str, Any]:
    """Replay one block as a pending stream (see the module doc).

    ``block``: a block dict or the path of its JSON file. ``refresh``: re-seed a pool the book lost
    track of from a later ``getReserves()`` reveal.

    Returns a dict: ``block``, ``transactions`` (top-level), ``decoded`` (router transactions
    decoded), ``v2``/``v3`` (decoded transactions with V2 / only V3 hops), ``decode_skipped``
    (Counter), ``outcomes`` (Counter over ``OUTCOMES`` for the V2 ones), ``hops_exact`` (hops
    whose output matched to the wei), ``seeded``, ``refreshed``, ``reserves_verified``,
    ``book_diverged``, ``book_rebuilds`` and ``mismatches`` (details of any ``mismatch``).
    """
    block = _load(block)
    timestamp = int(block.get("block_timestamp") or 0)
    txs = _transactions(block)
    pending = pending_transactions(block)
    dec = decode_transactions(pending)
    rows_of: dict[int, list[int]] = {}
    for r, pos in enumerate(dec.tx.tolist()):
        rows_of.setdefault(pos, []).append(r)

    book = _Book()
    stale: set[str] = set()
    known: dict[str, tuple[int, int]] = {}   # revealed, in step, not yet in the book
    res = {"block": int(block["block_number"]), "transactions": len(txs),
           "decoded": dec.stats["decoded"], "v2": 0, "v3": 0,
           "decode_skipped": Counter(dec.stats["skipped"]), "outcomes": Counter(),
           "hops_exact": 0, "seeded": 0, "refreshed": 0, "reserves_verified": 0,
           "book_diverged": 0, "post_state_differs": 0, "mismatches": [], "divergences": []}
    for k, tx in enumerate(txs):
        # 1. what eth_call getReserves would say at the start of this transaction
        for pool, (r0, r1) in tx.reveals.items():
            if pool in book and pool not in stale:
                if book.reserves(pool) == (r0, r1):
                    res["reserves_verified"] += 1
                else:
                    res["book_diverged"] += 1
                    res["divergences"].append({"tx": tx.top.get("transaction_hash"), "pool": pool,
                                               "book": book.reserves(pool), "chain": (r0, r1)})
                    stale.add(pool)
            if pool in known or pool in book:
                if pool in stale and refresh:
                    stale.discard(pool)
                    res["refreshed"] += 1
                    if pool in book:
                        e = book.table[pool]
                        book.set({pool: (e[0], e[1], r0, r1)})
                    else:
                        known[pool] = (r0, r1)
            else:
                known[pool] = (r0, r1)
                res["seeded"] += 1
        rows = rows_of.get(k, [])
        handled: set[str] = set()
        v2 = [r for r in rows if dec.rows[r]["protocol"] == PROTOCOL_UNISWAP_V2]
        if rows and not v2:
            res["v3"] += all(dec.rows[r]["protocol"] == PROTOCOL_UNISWAP_V3 for r in rows)
        if v2:
            res["v2"] += 1
            outcome, handled = _predict(dec, v2, tx, book, known, stale, timestamp, res)
            res["outcomes"][outcome] += 1
            if outcome in ("reverted_on_chain", "fee_on_transfer", "token_swapped_in_transfer",
                           "mismatch"):
                # the book applied a prediction the chain did not follow
                stale.update(_hex(dec.rows[r]["pool"]) for r in v2 if _hex(dec.rows[r]["pool"]) in book)
        # 2. every pool this transaction changed that the book did not follow exactly
        for pool in tx.updated - handled:
            if pool in book or pool in known:
                stale.add(pool)
    res["book_rebuilds"] = book.rebuilds
    return res


def _predict(dec, rows, tx, book, known, stale, timestamp, res):
    """One V2 router transaction: returns (outcome, pools the book now follows exactly)."""
    pools = [_hex(dec.rows[r]["pool"]) for r in rows]
    for p in pools:
        if p in stale:
            return "reserves_stale", set()
        if p not in book and p not in known:
            return "reserves_unknown", set()
    # pools revealed but not yet in the book join it with their tokens
    add = {}
    for r, p in zip(rows, pools):
        if p not in book:
            a, b = bytes(dec.rows[r]["token_in"]), bytes(dec.rows[r]["token_out"])
            t0, t1 = (a, b) if a < b else (b, a)
            r0, r1 = known.pop(p)
            add[p] = (t0, t1, r0, r1)
    if add:
        book.set(add)
    side = dec.side[rows[0]]
    exact_output = bool(side["exact_output"])
    fot = bool(side["fee_on_transfer"])
    deadline = int(side["deadline"])
    zero_for_one = [bytes(dec.rows[r]["token_in"]) < bytes(dec.rows[r]["token_out"]) for r in rows]
    # reserves along the path, in each hop's direction (a pool used twice sees its first use)
    local = {p: list(book.reserves(p)) for p in pools}

    def hop_reserves(i):
        r0, r1 = local[pools[i]]
        return (r0, r1) if zero_for_one[i] else (r1, r0)

    def move(i, ain, aout):
        e = local[pools[i]]
        if zero_for_one[i]:
            e[0], e[1] = e[0] + ain, e[1] - aout
        else:
            e[1], e[0] = e[1] + ain, e[0] - aout

    revert = None
    amounts = []
    if timestamp and deadline and deadline < timestamp:
        revert = "expired"
    elif exact_output:
        want = u256_column_to_ints(dec.rows["amount_out"][rows[-1:]])[0]
        amax = u256_column_to_ints(side["amount_in_max"].reshape(1, 4))[0]
        outs = [0] * len(rows)
        outs[-1] = want
        ins = [0] * len(rows)
        try:
            # the router's getAmountsIn walks the path backwards on the reserves before the swap
            for i in range(len(rows) - 1, -1, -1):
                rin, rout = hop_reserves(i)
                ins[i] = amm.get_amount_in(outs[i], rin, rout)
                if i:
                    outs[i - 1] = ins[i]
        except (ValueError, ArithmeticError):
            revert = "insufficient_liquidity"
        if revert is None and ins[0] > amax:
            revert = "excessive_input"
        amounts = list(zip(ins, outs))
    else:
        ain = u256_column_to_ints(dec.rows["amount_in"][rows[:1]])[0]
        amin = u256_column_to_ints(dec.rows["amount_out_min"][rows[-1:]])[0]
        x = ain
        try:
            for i in range(len(rows)):
                rin, rout = hop_reserves(i)
                y = amm.get_amount_out(x, rin, rout)
                amounts.append((x, y))
                move(i, x, y)
                x = y
        except (ValueError, ArithmeticError):
            revert = "insufficient_liquidity"
        if revert is None and x < amin:
            revert = "slippage"

    if revert is not None:
        if tx.reverted:
            return "reverted_as_predicted", set(pools)
        res["mismatches"].append({"tx": tx.top.get("transaction_hash"), "why": f"predicted {revert}"})
        return "mismatch", set()

    # apply the prediction to the book
    if exact_output:
        book.sync()
        upd = {}
        local = {p: list(book.reserves(p)) for p in pools}
        for i, (ain, aout) in enumerate(amounts):
            move(i, ain, aout)
        for p in pools:
            e = book.table[p]
            upd[p] = (e[0], e[1], local[p][0], local[p][1])
        book.set(upd)
    else:
        batch = dec.rows[rows].copy()
        for i, (ain, _) in enumerate(amounts):
            batch[i]["amount_in"] = amm.to_u256_column([ain])[0]
            batch[i]["amount_out_min"] = 0
        # one hop per apply: each later hop's reserves already include the earlier ones
        for i in range(len(rows)):
            out = book.book.apply(batch[i:i + 1])
            got = u256_column_to_ints(out["amount_out"])[0]
            if out["status"][0] != amm.STATUS_APPLIED or got != amounts[i][1]:
                raise AssertionError(f"PoolBook disagrees with get_amount_out on "
                                     f"{tx.top.get('transaction_hash')} hop {i}: {got} != {amounts[i][1]}")

    if tx.reverted:
        return "reverted_on_chain", set()
    chain = [(p, o0 or o1) for p, o0, o1 in tx.swaps]
    predicted = [(p, out) for p, (_, out) in zip(pools, amounts)]
    if [p for p, _ in chain] != pools:
        res["mismatches"].append({"tx": tx.top.get("transaction_hash"), "why": "pools differ",
                                  "predicted": pools, "chain": [p for p, _ in chain]})
        return "mismatch", set()
    if chain == predicted:
        res["hops_exact"] += len(pools)
        # a pool some other call of this transaction also changed is not in step any more; nor
        # is one whose balance after the swap is not what was paid in and out (a token that
        # credits the pair more or less than was sent: reflection, rebasing)
        drift = {p for p in pools if p in tx.post and tx.post[p] != book.reserves(p)}
        res["post_state_differs"] += len(drift)
        return "exact", set(pools) - tx.others - drift
    if fot:
        return "fee_on_transfer", set()
    if tx.others.intersection(pools):
        # a token that swaps on its own pair inside its transfer (liquify / sell-fee tokens):
        # the pair's reserves moved between the router's getReserves and its swap
        return "token_swapped_in_transfer", set()
    res["mismatches"].append({"tx": tx.top.get("transaction_hash"), "why": "amounts differ",
                              "predicted": predicted, "chain": chain})
    return "mismatch", set()


def replay_blocks(directory, *, refresh: bool = True) -> list[dict]:
    """``replay_block`` of every block file of ``directory``, in block order."""
    return [replay_block(p, refresh=refresh) for p in block_files(directory)]
