"""Plain-Python models of flashbots/mev-inspect-py's sandwich and arbitrage rules, for tests.

They work on ``tallyio_mainnet.decode.Swap`` objects, which keep the ``payer`` (mev-inspect's
``from_address``) that ``TX_DTYPE`` records do not carry, so the record-level inspectors can be
checked against the payer-based definitions on real blocks. Written from the published definitions
(mev_inspect/sandwiches.py and arbitrages.py at ce8179f).
"""
from __future__ import annotations

ROUTERS = {"0x7a250d5630b4cf539739df2c5dacb4c659f2488d",
           "0xe592427a0aece92de3edee1f18e0157c05861564",
           "0x68b3465833fb72a70ecdf485e0e4c7bd8665fc45"}


def sandwiches(swaps):
    """[(front, [victims], back)] by the payer rule, swaps in (tx, trace) order."""
    ordered = sorted(swaps, key=lambda s: (s.tx_index, s.trace_address))
    out = []
    for k, front in enumerate(ordered):
        bot = front.recipient
        if bot in ROUTERS:
            continue
        victims = []
        for s in ordered[k + 1:]:
            if s.tx_hash == front.tx_hash or s.pool != front.pool:
                continue
            same = s.token_in == front.token_in and s.token_out == front.token_out
            reverse = s.token_in == front.token_out and s.token_out == front.token_in
            if same and s.payer != bot:
                victims.append(s)
            elif reverse and s.payer == bot and victims:
                out.append((front, victims, s))
                break
    return out


def _near(a, b, pct=0.01):
    return abs((a - b) / (0.5 * (a + b))) < pct


def _feeds(a, b):
    return (a.token_out == b.token_in and _near(a.amount_out, b.amount_in)
            and (a.pool == b.payer or a.recipient == b.pool or a.recipient == b.payer))


def _shortest(start, ends, candidates, limit=None):
    if not ends or (limit is not None and limit < 2):
        return None
    for e in ends:
        if _feeds(start, e):
            return [start, e]
    if limit == 2:
        return None
    rest = [s for s in candidates if s is not start and s not in ends]
    best, sub_limit = None, None if limit is None else limit - 1
    for nxt in rest:
        if _feeds(start, nxt):
            tail = _shortest(nxt, ends, rest, sub_limit)
            if tail is not None and (best is None or len(tail) < len(best)):
                best, sub_limit = tail, len(tail) - 1
    return None if best is None else [start] + best


def arbitrages(swaps):
    """[[swaps of a route]] per transaction by the payer rule."""
    by_tx = {}
    for s in swaps:
        by_tx.setdefault(s.tx_hash, []).append(s)
    found = []
    for txs in by_tx.values():
        pools = {s.pool for s in txs}
        starts = []
        for s in txs:
            ends = [e for e in txs if e is not s and e.token_out == s.token_in and e.pool != s.pool
                    and e.recipient == s.payer and s.payer not in pools]
            if ends:
                starts.append((s, ends))
        used, routes = [], []
        for s, ends in starts:
            if s in used:
                continue
            route = _shortest(s, [e for e in ends if e not in used], txs)
            if route:
                routes.append(route)
                used.extend(route)
        if len(routes) > 1:
            routes = [r for r in routes if r[0].trace_address < r[-1].trace_address]
        found.extend(routes)
    return found
