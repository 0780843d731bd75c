"""Retrospective sandwich detection over one block's decoded swaps (mev-inspect's definition).

A sandwich is a front-run swap, one or more victim swaps, and a back-run swap, all on the same pool
and in three or more different transactions of one block, in block order:

* the **front-run** ``F`` is any swap whose recipient is not a public router (Uniswap V2 router,
  V3 ``SwapRouter`` and ``SwapRouter02``); its recipient is the **sandwicher** (the bot contract);
* a swap ``X`` belongs to the sandwicher when its recipient is the sandwicher or its transaction
  was sent by the account that sent ``F``;
* **victims** are the later swaps on ``F``'s pool in the same direction (same token in, same token
  out) that do not belong to the sandwicher;
* the **back-run** is the first later swap on the pool in the opposite direction that belongs to
  the sandwicher and comes after at least one victim. Swaps in ``F``'s own transaction are ignored.

Each swap is tried as a front-run in turn, so a block can hold several sandwiches.
``profit = back-run amount_out - front-run amount_in``, in the front-run's ``token_in``
(mev-inspect-py's ``profit_amount``: exact, gross of gas, and only meaningful when the back-run
sells what the front-run bought).

Difference from flashbots/mev-inspect-py (``mev_inspect/sandwiches.py``): it tells the
sandwicher's swaps by their ``from_address``, the account that paid the input tokens into the
pool, which ``TX_DTYPE`` does not carry. The record-level rule above uses what the record holds
(``recipient`` and the transaction ``sender``); on all 25 mainnet blocks of the test data it finds
the same sandwiches as the payer rule, including block 12775690's published reference exactly.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from tallyio.opportunity import Opportunity
from tallyio.record import PROTOCOL_NAMES, swap_rows

KIND = "sandwich"
STRATEGY = "sandwich"

# routers pay and receive on behalf of their users: a swap to one is nobody's front-run
KNOWN_ROUTERS = frozenset(bytes.fromhex(a) for a in (
    "7a250d5630b4cf539739df2c5dacb4c659f2488d",  # Uniswap V2 Router02
    "e592427a0aece92de3edee1f18e0157c05861564",  # Uniswap V3 SwapRouter
    "68b3465833fb72a70ecdf485e0e4c7bd8665fc45",  # Uniswap V3 SwapRouter02
))

__all__ = ["KIND", "KNOWN_ROUTERS", "STRATEGY", "find_sandwiches", "swap_rows"]


_NOBODY = bytes(20)


def _describe(s: dict[str, Any]) -> dict[str, Any]:
    return {
        "tx_hash": s["tx_hash"],
        "tx_index": s["tx_index"],
        "swap_index": s["swap_index"],
        "trace_address": s["trace_address"],
        "protocol": PROTOCOL_NAMES.get(s["protocol"], "unknown"),
        "pool": "0x" + s["pool"].hex(),
        "sender": "0x" + s["sender"].hex(),
        "recipient": "0x" + s["recipient"].hex(),
        "token_in": "0x" + s["token_in"].hex(),
        "token_out": "0x" + s["token_out"].hex(),
        "amount_in": s["amount_in"],
        "amount_out": s["amount_out"],
    }


def _sandwich_from(front: dict[str, Any], later: list[dict[str, Any]]):
    sandwicher = front["recipient"]
    if sandwicher in KNOWN_ROUTERS:
        return None

    def belongs(x):
        return x["recipient"] == sandwicher or (front["sender"] != _NOBODY
                                                and x["sender"] == front["sender"])

    victims = []
    for x in later:
        if x["tx_hash"] == front["tx_hash"]:
            continue
        if x["token_in"] == front["token_in"] and x["token_out"] == front["token_out"]:
            if not belongs(x):
                victims.append(x)
        elif (x["token_in"] == front["token_out"] and x["token_out"] == front["token_in"]
              and belongs(x) and victims):
            return victims, x
    return None


def find_sandwiches(swaps: np.ndarray, *, strategy: str = STRATEGY) -> list[Opportunity]:
    """The sandwiches among one block's decoded swaps (``TX_DTYPE`` rows), in front-run order.

    Each ``Opportunity`` has ``kind="sandwich"``, ``profit`` (exact, see the module docstring) in
    ``profit_token`` (the front-run's ``token_in``), ``tx_ids`` (front-run, victims, back-run),
    ``pools`` (the one pool) and ``details``: ``sandwicher`` (the front-run's recipient),
    ``sandwicher_sender`` (the front-run transaction's sender), ``frontrun``, ``victims`` (list),
    ``backrun`` (each a dict with tx hash, position, pool, tokens and exact amounts) and
    ``net_of_gas`` (False). Raises ``TypeError`` unless ``swaps`` holds ``TX_DTYPE`` records.
    """
    rows = swap_rows(swaps)
    by_pool: dict[bytes, list[int]] = {}
    for k, s in enumerate(rows):
        by_pool.setdefault(s["pool"], []).append(k)
    found = []
    for k, front in enumerate(rows):
        later = [rows[j] for j in by_pool[front["pool"]] if j > k]
        hit = _sandwich_from(front, later)
        if hit is None:
            continue
        victims, back = hit
        found.append(Opportunity(
            strategy=strategy,
            kind=KIND,
            profit=back["amount_out"] - front["amount_in"],
            profit_token="0x" + front["token_in"].hex(),
            tx_ids=tuple(s["id"] for s in (front, *victims, back)),
            pools=("0x" + front["pool"].hex(),),
            block=front["block"],
            details={
                "sandwicher": "0x" + front["recipient"].hex(),
                "sandwicher_sender": "0x" + front["sender"].hex(),
                "frontrun": _describe(front),
                "victims": [_describe(v) for v in victims],
                "backrun": _describe(back),
                "net_of_gas": False,
            },
        ))
    return found
