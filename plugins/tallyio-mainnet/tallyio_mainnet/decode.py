"""Decode swaps from a mined block's call traces into ``TX_DTYPE`` records (one row per swap).

Input: one block as a dict (or the path of its JSON file) holding ``block_number``, optional
``block_timestamp``, ``traces`` (parity ``trace_block`` format: ``action``, ``result``,
``trace_address``, ``transaction_hash``, ``transaction_position``, ``type``, ``error``) and
``receipts`` (``transaction_hash``, ``effective_gas_price``).

How a swap is recognised, per transaction, walking its traces in call-tree order:

* **Reverted calls are skipped.** A trace with an ``error`` and every trace below it (by
  ``trace_address`` prefix) never happened on chain: neither its transfers nor its swaps count.
* **Token transfers** are the ERC20 ``transfer(to, amount)`` (``0xa9059cbb``) and
  ``transferFrom(from, to, amount)`` (``0x23b872dd``) calls; the token is the contract called. A
  transfer nested inside another with the same recipient and amount (a proxy token forwarding the
  call to its implementation) is the same movement seen twice and is dropped; other nested
  transfers are real (tokens that sell their fee on a pair inside their own ``transfer``).
* **Uniswap V2 pairs** (and their forks: any ``swap(uint256,uint256,address,bytes)``,
  ``0x022c0d9f``): the token out and amount out come from the one transfer the pair makes to the
  swap's ``to`` inside the swap call; the token in and amount in from the latest transfer into the
  pair that precedes the swap in the transaction and no earlier swap used, or, for a flash swap
  that pays inside its callback, from the last transfer into the pair inside the swap call.
* **Uniswap V3 pools** (``swap(address,bool,int256,uint160,bytes)``, ``0x128acb08``): the amounts
  are the pool's own ``int256 amount0, amount1`` return values (positive: the pool received,
  negative: it paid); the tokens are those of the transfer the pool makes to ``recipient`` and of
  the payment into the pool (in the swap callback, or before the swap).

* **Balancer V1, Balancer V2, Curve, Bancor, 0x native orders**: one module each
  (``balancer_v1``, ``balancer_v2``, ``curve``, ``bancor``, ``zerox``; their docstrings give the
  selectors and where each amount comes from). Each takes its amounts from the token transfers
  made inside its own call (the chain's exact movements), so these need no earlier payment.
  Only ``call`` traces count: a proxy's ``delegatecall`` repeating the input is the same swap.

A payment is a transfer that completed before the swap: a transfer enclosing the swap (a fee
token selling on a pair inside its own ``transfer``) moves its balance only after its nested calls
return. Transfers in the token a swap buys are passed over, and a pair's ``mint``, ``sync`` and
``skim`` absorb the transfers made into it before them (a liquidity add pays for no swap).

This follows flashbots/mev-inspect-py's swap classification (``create_swap_from_pool_transfers``)
with deliberate differences: reverted calls are dropped rather than kept with an error; a transfer
into a pool pays for one swap only, so a pool swapped twice in one transaction is not credited
with the first payment twice; the liquidity calls above; V3 amounts are the pool's deltas. A swap
call whose transfers do not fit (no payment, no or several outputs to the recipient, only the
output token paid in, short call data) is skipped and counted in ``stats["skipped"]`` by reason;
every other call is counted by selector in ``stats["calls"]``.
"""
from __future__ import annotations

import json
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from tallyio.record import (
    PROTOCOL_NAMES,
    PROTOCOL_UNISWAP_V2,
    PROTOCOL_UNISWAP_V3,
    TX_DTYPE,
    address_bytes,
    address_key,
    int_to_u256,
)
from tallyio_mainnet import balancer_v1, balancer_v2, bancor, curve, zerox
from tallyio_mainnet.traces import Skip
from tallyio_mainnet.traces import Transfer as _Transfer
from tallyio_mainnet.traces import args as _args
from tallyio_mainnet.traces import before as _before
from tallyio_mainnet.traces import is_under as _is_under
from tallyio_mainnet.traces import signed as _signed
from tallyio_mainnet.traces import word as _word
from tallyio_mainnet.traces import word_address as _word_address

SELECTOR_TRANSFER = "0xa9059cbb"
SELECTOR_TRANSFER_FROM = "0x23b872dd"
SELECTOR_V2_SWAP = "0x022c0d9f"
SELECTOR_V3_SWAP = "0x128acb08"
# V2 pair calls that absorb whatever was transferred into the pair before them
SELECTORS_V2_ABSORB = (
    "0x6a627842",  # mint(address)
    "0xfff6cae9",  # sync()
    "0xbc25cf77",  # skim(address)
)

# selector -> the module that decodes that protocol's swap call (its ``decode``)
PROTOCOL_DECODERS = {selector: module
                     for module in (balancer_v1, balancer_v2, curve, bancor, zerox)
                     for selector in module.SELECTORS}

MAX_TRACE_DEPTH = TX_DTYPE["trace_address"].shape[0]
_MAX_U64 = (1 << 64) - 1

__all__ = [
    "MAX_TRACE_DEPTH",
    "PROTOCOL_DECODERS",
    "SELECTOR_TRANSFER",
    "SELECTOR_TRANSFER_FROM",
    "SELECTOR_V2_SWAP",
    "SELECTOR_V3_SWAP",
    "Swap",
    "decode_block",
    "decode_swaps",
    "load_block",
    "read_blocks",
    "block_files",
    "swaps_to_records",
]


@dataclass(frozen=True)
class Swap:
    """One decoded swap with exact amounts (addresses lower-case ``0x`` hex).

    ``payer`` is who sent the input tokens into the pool (mev-inspect's ``from_address``);
    ``sender`` is the transaction's ``from``.
    """

    block: int
    block_time: int
    tx_hash: str
    tx_index: int
    swap_index: int
    trace_address: tuple[int, ...]
    protocol: int
    pool: str
    sender: str
    payer: str
    recipient: str
    token_in: str
    token_out: str
    amount_in: int
    amount_out: int
    gas_price: int


def load_block(block: str | os.PathLike | dict) -> dict:
    """The block dict of ``block`` (a dict is returned as is, a path is read as JSON).

    Raises ``ValueError`` naming the missing key when the dict is not a block.
    """
    if isinstance(block, (str, os.PathLike)):
        with open(block, "rb") as f:
            block = json.load(f)
    if not isinstance(block, dict):
        raise TypeError("block must be a dict or a path to a block JSON file, "
                        f"got {type(block).__name__}")
    for key in ("block_number", "traces", "receipts"):
        if key not in block:
            raise ValueError(f"block must have a {key!r} key, got keys {sorted(block)}")
    return block


def decode_swaps(block: str | os.PathLike | dict, *,
                 attempts: bool = False) -> tuple[list[Swap], dict]:
    """The swaps of ``block`` as ``Swap`` objects, in transaction and call-tree order, and stats.

    ``stats``: ``block``, ``transactions``, ``traces``, ``swaps`` (Counter by protocol name,
    ``tallyio.record.PROTOCOL_NAMES``),
    ``reverted_traces`` (skipped for being, or being under, a failed call), ``transfers`` (token
    transfers seen), ``forwarded_transfers`` (the same transfer forwarded by a proxy, counted
    once), ``malformed_transfers`` (transfer selector with short arguments), ``calls`` (Counter
    of the selectors of the calls that were neither a swap nor a transfer, and of non-call trace
    types), ``skipped`` (Counter of swap calls that could not be decoded, by reason),
    ``other_trace_types`` (Counter of traces outside any transaction, such as block rewards).

    ``attempts=True`` decodes what the *reverted* calls did instead: in each transaction, the
    calls below an outermost call with an ``error`` (the transaction's own call when the whole
    transaction reverted; a bot's inner call whose revert it caught otherwise). Parity marks every
    frame on the revert path with the error and leaves the calls that returned before it without
    one, so there a call counts unless it failed itself: the swaps and transfers a reverted
    arbitrage made before its final check failed are read as made. ``stats["reverted_calls"]``
    maps each such transaction's hash to its ``[(trace_address, error)]``. These swaps never
    happened on chain: they are evidence of an attempt only.
    """
    block = load_block(block)
    number = int(block["block_number"])
    timestamp = int(block.get("block_timestamp") or 0)
    gas_prices = {}
    for r in block["receipts"]:
        gas_prices[r["transaction_hash"]] = int(r.get("effective_gas_price") or 0)

    by_tx: dict[int, list[dict]] = {}
    other_types: Counter = Counter()
    for t in block["traces"]:
        pos = t.get("transaction_position")
        if pos is None:  # block and uncle rewards belong to no transaction
            other_types[t.get("type")] += 1
            continue
        by_tx.setdefault(int(pos), []).append(t)

    stats: dict[str, Any] = {
        "block": number,
        "transactions": len(by_tx),
        "traces": len(block["traces"]),
        "swaps": Counter(),
        "reverted_traces": 0,
        "transfers": 0,
        "forwarded_transfers": 0,
        "malformed_transfers": 0,
        "calls": Counter(),
        "skipped": Counter(),
        "other_trace_types": other_types,
    }
    swaps: list[Swap] = []
    for pos in sorted(by_tx):
        swaps.extend(_decode_transaction(by_tx[pos], number, timestamp, gas_prices, stats,
                                         attempts))
    return swaps, stats


def _decode_transaction(traces: list[dict], number: int, timestamp: int,
                        gas_prices: dict[str, int], stats: dict,
                        attempts: bool = False) -> list[Swap]:
    traces = sorted(traces, key=lambda t: t["trace_address"])
    tx_hash = traces[0]["transaction_hash"]
    tx_index = int(traces[0]["transaction_position"])
    root = traces[0]
    sender = (root["action"].get("from") or "").lower() if not root["trace_address"] else ""
    gas_price = gas_prices.get(tx_hash, 0)
    if gas_price > _MAX_U64:
        raise ValueError(f"effective_gas_price of {tx_hash} must fit 64 bits, got {gas_price}")

    reverted: list[tuple[int, ...]] = []
    frames: list[tuple[int, ...]] = []  # attempts: the outermost failed calls, in call order
    if attempts:
        for t in traces:
            addr = tuple(t["trace_address"])
            if t.get("error") and not any(_is_under(addr, f) for f in frames):
                frames.append(addr)
                stats.setdefault("reverted_calls", {}).setdefault(tx_hash, []).append(
                    (addr, t["error"]))
        if not frames:
            return []
    transfers: list[_Transfer] = []   # live transfers in call-tree order, forwarded copies dropped
    calls = []                        # (trace address, selector, trace): live swaps, mints...
    for t in traces:
        addr = tuple(t["trace_address"])
        if t.get("error") or (any(_is_under(addr, r) for r in reverted) if not attempts
                              else not any(_is_under(addr, f) for f in frames)):
            if t.get("error"):
                reverted.append(addr)
            stats["reverted_traces"] += 1
            continue
        if t.get("type") != "call":
            stats["calls"][t.get("type")] += 1
            continue
        action = t["action"]
        selector = action.get("input", "0x")[:10].lower()
        if selector in (SELECTOR_TRANSFER, SELECTOR_TRANSFER_FROM):
            tr = _transfer(addr, action, selector)
            if tr is None:
                stats["malformed_transfers"] += 1
            elif any(_is_under(addr, p.trace_address) and (p.to, p.amount) == (tr.to, tr.amount)
                     for p in transfers):
                # a proxy token forwarding the call to its implementation: the same movement again
                stats["forwarded_transfers"] += 1
            else:
                transfers.append(tr)
                stats["transfers"] += 1
        elif ((selector in (SELECTOR_V2_SWAP, SELECTOR_V3_SWAP) or selector in PROTOCOL_DECODERS)
              and action.get("callType") == "call"):
            calls.append((addr, selector, t))
        else:
            stats["calls"][selector] += 1
            if selector in SELECTORS_V2_ABSORB and action.get("callType") == "call":
                calls.append((addr, selector, t))

    out: list[Swap] = []
    used: set[tuple[int, ...]] = set()  # transfers that already paid for a swap or a mint
    for addr, selector, t in calls:
        if selector in SELECTORS_V2_ABSORB:
            target = t["action"]["to"].lower()
            used.update(tr.trace_address for tr in transfers
                        if _before(tr, addr) and tr.to == target)
            continue
        if selector in PROTOCOL_DECODERS:
            try:
                legs = PROTOCOL_DECODERS[selector].decode(addr, t, transfers)
            except Skip as e:
                stats["skipped"][e.reason] += 1
                continue
        else:
            swap = _swap(addr, selector, t, transfers, used, stats)
            if swap is None:
                continue
            legs = [swap]
        for protocol, pool, payer, recipient, token_in, token_out, amount_in, amount_out in legs:
            stats["swaps"][PROTOCOL_NAMES[protocol]] += 1
            out.append(Swap(number, timestamp, tx_hash, tx_index, len(out), addr, protocol, pool,
                            sender, payer, recipient, token_in, token_out, amount_in, amount_out,
                            gas_price))
    return out


def _transfer(addr: tuple[int, ...], action: dict, selector: str) -> _Transfer | None:
    token = action["to"].lower()
    if selector == SELECTOR_TRANSFER:
        data = _args(action["input"], 2)
        if data is None:
            return None
        sender = action["from"].lower()
        return _Transfer(addr, token, sender, _word_address(data, 0), _word(data, 1))
    data = _args(action["input"], 3)
    if data is None:
        return None
    return _Transfer(addr, token, _word_address(data, 0), _word_address(data, 1), _word(data, 2))


def _swap(addr, selector, t, transfers, used, stats):
    action = t["action"]
    pool = action["to"].lower()
    v3 = selector == SELECTOR_V3_SWAP
    data = _args(action["input"], 5 if v3 else 4)
    if data is None:
        stats["skipped"]["malformed_swap"] += 1
        return None
    recipient = _word_address(data, 0 if v3 else 2)
    inside = [tr for tr in transfers
              if _is_under(tr.trace_address, addr) and tr.trace_address != addr]
    outs = [tr for tr in inside if tr.sender == pool and tr.to == recipient]
    if len(outs) != 1:
        stats["skipped"]["no_single_output" if not outs else "several_outputs"] += 1
        return None
    out = outs[0]
    paid_before = [tr for tr in transfers
                   if _before(tr, addr) and tr.to == pool and tr.trace_address not in used]
    paid_inside = [tr for tr in inside if tr.to == pool]
    # V3 pools take payment in the swap callback; V2 pairs are paid before the call (or, for a flash
    # swap, inside it)
    order = (paid_inside, paid_before) if v3 else (paid_before, paid_inside)
    candidates = [c for c in order if c]
    if not candidates:
        stats["skipped"]["no_payment"] += 1
        return None
    pay = next((tr for tr in reversed(candidates[0]) if tr.token != out.token), None)
    if pay is None:
        stats["skipped"]["same_token"] += 1
        return None
    if v3:
        output = (t.get("result") or {}).get("output") or "0x"
        if len(output) < 2 + 128:
            stats["skipped"]["malformed_swap"] += 1
            return None
        d0, d1 = _signed(_word(output[2:], 0)), _signed(_word(output[2:], 1))
        amount_in, amount_out = max(d0, d1), -min(d0, d1)
        if amount_in <= 0 or amount_out <= 0:
            stats["skipped"]["no_exchange"] += 1
            return None
    else:
        amount_in, amount_out = pay.amount, out.amount
    used.add(pay.trace_address)
    protocol = PROTOCOL_UNISWAP_V3 if v3 else PROTOCOL_UNISWAP_V2
    return protocol, pool, pay.sender, recipient, pay.token, out.token, amount_in, amount_out


def swaps_to_records(swaps: list[Swap]) -> np.ndarray:
    """``TX_DTYPE`` rows of ``swaps``; ``id`` is the row's position (the engine renumbers them).

    A swap deeper in its call tree than ``MAX_TRACE_DEPTH`` keeps its first ``MAX_TRACE_DEPTH``
    levels in ``trace_address`` (``trace_depth`` says how many); ``swap_index`` still orders it
    exactly, and ``decode_block`` counts such rows in ``stats["trace_address_truncated"]``.
    """
    rec = np.zeros(len(swaps), dtype=TX_DTYPE)
    for i, s in enumerate(swaps):
        r = rec[i]
        r["id"] = i
        r["block"] = s.block
        r["block_time"] = s.block_time
        r["gas_price"] = s.gas_price
        r["tx_index"] = s.tx_index
        r["swap_index"] = s.swap_index
        r["protocol"] = s.protocol
        depth = min(len(s.trace_address), MAX_TRACE_DEPTH)
        r["trace_depth"] = depth
        r["trace_address"][:depth] = s.trace_address[:depth]
        r["amount_in"] = int_to_u256(s.amount_in)
        r["amount_out"] = int_to_u256(s.amount_out)
        for name in ("sender", "recipient", "pool", "token_in", "token_out"):
            value = getattr(s, name)
            if value:
                r[name] = np.frombuffer(address_bytes(value), dtype=np.uint8)
        r["sender_key"] = address_key(s.sender) if s.sender else 0
        r["pool_key"] = address_key(s.pool)
        r["token_in_key"] = address_key(s.token_in)
        r["token_out_key"] = address_key(s.token_out)
        r["tx_hash"] = np.frombuffer(bytes.fromhex(s.tx_hash[2:]), dtype=np.uint8)
    return rec


def decode_block(block: str | os.PathLike | dict, *,
                 attempts: bool = False) -> tuple[np.ndarray, dict]:
    """The swaps of one block as ``TX_DTYPE`` records in transaction and call-tree order, and stats.

    ``block``: a block dict or the path of its JSON file. See ``decode_swaps`` for ``stats``, which
    also counts ``trace_address_truncated`` (see ``swaps_to_records``), and for ``attempts`` (the
    reverted transactions' swaps instead of the mined ones).
    """
    swaps, stats = decode_swaps(block, attempts=attempts)
    stats["trace_address_truncated"] = sum(len(s.trace_address) > MAX_TRACE_DEPTH for s in swaps)
    return swaps_to_records(swaps), stats


def block_files(directory: str | os.PathLike) -> list[Path]:
    """The ``*.json`` block files of ``directory`` in block-number order (by file name)."""
    d = Path(directory)
    if not d.is_dir():
        raise ValueError("directory must be a directory of block JSON files, "
                         f"got {str(directory)!r}")
    files = [p for p in d.glob("*.json") if p.stem.isdigit()]
    return sorted(files, key=lambda p: int(p.stem))


def read_blocks(directory: str | os.PathLike) -> Iterator[tuple[np.ndarray, dict]]:
    """``decode_block`` of every block file in ``directory``, in block order."""
    for path in block_files(directory):
        yield decode_block(path)
