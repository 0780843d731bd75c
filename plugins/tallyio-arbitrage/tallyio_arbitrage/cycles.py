"""Retrospective cyclic-arbitrage detection over decoded swaps, one transaction at a time.

Definition. Within one transaction, a **cyclic arbitrage** is a route of two or more swaps
``s1, ..., sk`` on different pools where

* the route is closed: ``sk.token_out == s1.token_in`` (the **profit token**) and ``s1`` and
  ``sk`` are on different pools;
* each swap feeds the next: ``s(i).token_out == s(i+1).token_in``, the amounts agree within
  ``tolerance`` (relative to their mean, like mev-inspect's ``equal_within_percent``;
  fee-on-transfer tokens deliver a little less than was sent), and ``s(i)``'s output went
  either straight into ``s(i+1)``'s pool or to an account that is not one of the transaction's
  pools (the arbitrageur, who then pays the next pool);
* the output of ``sk`` goes to an account, not to one of the transaction's pools.

``profit = sk.amount_out - s1.amount_in``, exact, in the profit token, gross of gas (it can be
negative: a losing arbitrage is still one).

Search: swaps are tried as the start ``s1`` in execution order (``swap_index``); from each unused
start a breadth-first search over the transaction's unused swaps finds the shortest closed route,
whose swaps are then used, so several arbitrages in one transaction are found one after the other.
A first pass links only amounts that agree within ``STRICT_TOLERANCE`` (0.001%), a second pass
``tolerance`` for the swaps left: in a cycle every link but the closing one passes the tokens on
whole, so the tight pass puts the start where the profit is taken (a 2-swap cycle A, B has two
readings, and only one of them has a link that matches exactly). The swaps of a route are listed
in token-flow order, which differs from execution order when a swap is paid from inside another
pool's callback (a flash route). Arbitrages are returned per transaction, by start position.

This is flashbots/mev-inspect-py's ``arbitrages.py`` idea (shortest route from a start to a swap
that returns the start token, amounts within 1%) stated on ``TX_DTYPE`` records, which carry each
swap's recipient but not the account that paid its input: where mev-inspect links two swaps by
that payer, the rule above links them by the recipient. On all 25 mainnet blocks of the test data
both find the same routes and profits; on mev-inspect-js's arbitrage vectors, the same as its
expected results.
"""
from __future__ import annotations

from collections import deque
from fractions import Fraction
from typing import Any

import numpy as np

from tallyio.opportunity import Opportunity
from tallyio.record import PROTOCOL_NAMES, swap_rows

KIND = "cyclic_arbitrage"
STRATEGY = "arbitrage"
DEFAULT_TOLERANCE = Fraction(1, 100)  # mev-inspect-py's MAX_TOKEN_AMOUNT_PERCENT_DIFFERENCE
STRICT_TOLERANCE = Fraction(1, 100_000)  # mev-inspect-js's: links that match this well go first

__all__ = ["DEFAULT_TOLERANCE", "KIND", "STRATEGY", "STRICT_TOLERANCE", "find_cyclic_arbitrages"]


def _close(a: int, b: int, tolerance: Fraction) -> bool:
    """``|a - b| / ((a + b) / 2) < tolerance``, exactly."""
    if a == b:
        return True
    return abs(a - b) * 2 * tolerance.denominator < tolerance.numerator * (a + b)


def _route(start: int, txs: list[dict], free: list[bool], pools: set[bytes],
           tolerance: Fraction) -> list[int] | None:
    """The shortest closed route from ``txs[start]`` over free swaps, or None."""
    first = txs[start]

    def closes(j):
        s = txs[j]
        return (s["token_out"] == first["token_in"] and s["pool"] != first["pool"]
                and s["recipient"] not in pools)

    parent = {start: None}
    queue = deque([start])
    while queue:
        i = queue.popleft()
        a = txs[i]
        for j, b in enumerate(txs):
            if j in parent or not free[j]:
                continue
            if (a["token_out"] != b["token_in"]
                    or not _close(a["amount_out"], b["amount_in"], tolerance)
                    or (a["recipient"] != b["pool"] and a["recipient"] in pools)):
                continue
            parent[j] = i
            if closes(j):
                route = [j]
                while parent[route[-1]] is not None:
                    route.append(parent[route[-1]])
                return route[::-1]
            queue.append(j)
    return None


def _describe(s: dict[str, Any]) -> dict[str, Any]:
    return {
        "tx_index": s["tx_index"],
        "swap_index": s["swap_index"],
        "trace_address": s["trace_address"],
        "protocol": PROTOCOL_NAMES.get(s["protocol"], "unknown"),
        "pool": "0x" + s["pool"].hex(),
        "recipient": "0x" + s["recipient"].hex(),
        "token_in": "0x" + s["token_in"].hex(),
        "token_out": "0x" + s["token_out"].hex(),
        "amount_in": s["amount_in"],
        "amount_out": s["amount_out"],
    }


def find_cyclic_arbitrages(swaps: np.ndarray, *, tolerance: Fraction | float = DEFAULT_TOLERANCE,
                           strategy: str = STRATEGY) -> list[Opportunity]:
    """The cyclic arbitrages among decoded swaps (``TX_DTYPE`` rows), per transaction, in order.

    ``tolerance``: how far apart (relative to their mean) one swap's output and the next swap's
    input may be, in ``[0, 1)``; default 1%. Each ``Opportunity`` has ``kind="cyclic_arbitrage"``,
    ``profit`` (exact) in ``profit_token``, ``tx_ids`` and ``pools`` of the route's swaps in route
    order, and ``details``: ``tx_hash``, ``tx_index``, ``sender``, ``recipient`` (who received the
    last output), ``start_amount``, ``end_amount``, ``swaps`` (each with position, pool, tokens and
    exact amounts) and ``net_of_gas`` (False). Raises ``TypeError`` unless ``swaps`` holds
    ``TX_DTYPE`` records and ``ValueError`` for a tolerance outside ``[0, 1)``.
    """
    if isinstance(tolerance, bool) or not isinstance(tolerance, (int, float, Fraction)):
        raise TypeError(f"tolerance must be a number, got {tolerance!r}")
    tol = Fraction(tolerance)
    if not 0 <= tol < 1:
        raise ValueError(f"tolerance must be in [0, 1), got {tolerance!r}")
    rows = swap_rows(swaps)
    by_tx: dict[tuple[int, str], list[dict]] = {}
    for s in rows:
        by_tx.setdefault((s["block"], s["tx_hash"]), []).append(s)
    found = []
    for txs in by_tx.values():
        if len(txs) < 2:
            continue
        pools = {s["pool"] for s in txs}
        free = [True] * len(txs)
        routes = []
        for pass_tol in sorted({min(STRICT_TOLERANCE, tol), tol}):
            for start in range(len(txs)):
                if not free[start]:
                    continue
                route = _route(start, txs, free, pools, pass_tol)
                if route is not None:
                    for j in route:
                        free[j] = False
                    routes.append(route)
        routes.sort(key=lambda r: r[0])
        for route in routes:
            path = [txs[j] for j in route]
            first, last = path[0], path[-1]
            found.append(Opportunity(
                strategy=strategy,
                kind=KIND,
                profit=last["amount_out"] - first["amount_in"],
                profit_token="0x" + first["token_in"].hex(),
                tx_ids=tuple(s["id"] for s in path),
                pools=tuple("0x" + s["pool"].hex() for s in path),
                block=first["block"],
                details={
                    "tx_hash": first["tx_hash"],
                    "tx_index": first["tx_index"],
                    "sender": "0x" + first["sender"].hex(),
                    "recipient": "0x" + last["recipient"].hex(),
                    "start_amount": first["amount_in"],
                    "end_amount": last["amount_out"],
                    "swaps": [_describe(s) for s in path],
                    "net_of_gas": False,
                },
            ))
    return found
