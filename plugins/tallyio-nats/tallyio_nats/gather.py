"""Gather the shards' opportunities into one report, once each."""
from __future__ import annotations

import io
import json
import time
from collections import Counter
from typing import Any

import nats
import numpy as np
from nats.js import api

from tallyio_nats._loop import LoopThread, NatsError
from tallyio_nats.wire import (DONE_SUBJECT, META_SUBJECT, OPS_STREAM, OPS_SUBJECT, TX_STREAM)

# what differs between copies of one opportunity found by different engines: not part of it
_LOCAL = ("tx_ids", "shard")


def opportunity_key(d: dict) -> tuple:
    """``(transactions, strategy, kind)``: the transactions as ``(hash, swap index)`` pairs, the
    same in every shard. Without them (a sink fed by another source) the shard and its row ids
    stand in, so nothing from two shards is merged by mistake."""
    tx = d.get("tx") or []
    if tx and all(t is not None for t in tx):
        return tuple((h, int(s)) for h, s in tx), d["strategy"], d["kind"]
    return ("shard", d.get("shard"), tuple(d.get("tx_ids") or ())), d["strategy"], d["kind"]


def merge(messages) -> dict[str, Any]:
    """Deduplicate opportunity dicts by ``opportunity_key``: the first copy is kept; later copies
    are counted in ``duplicates``, and in ``conflicts`` when they differ (a nondeterministic
    strategy, or shards that did not see the same pools)."""
    kept: dict = {}
    duplicates = conflicts = 0
    for d in messages:
        k = opportunity_key(d)
        body = {f: v for f, v in d.items() if f not in _LOCAL}
        if k in kept:
            duplicates += 1
            conflicts += kept[k] != body
        else:
            kept[k] = body
    ops = [kept[k] for k in sorted(kept, key=repr)]
    by_kind = Counter(f"{o['strategy']}/{o['kind']}" for o in ops)
    return {"opportunities": ops, "total": len(ops), "duplicates": duplicates,
            "conflicts": conflicts, "by_kind": dict(sorted(by_kind.items()))}


async def _partitions(js) -> int:
    msg = await js.get_last_msg(TX_STREAM, META_SUBJECT)
    with np.load(io.BytesIO(msg.data), allow_pickle=False) as z:
        return int(z["partitions"])


async def _gather(lt: LoopThread, timeout: float | None) -> dict[str, Any]:
    js = lt.js
    total = await _partitions(js)
    sub = await js.pull_subscribe(
        "", stream=OPS_STREAM,
        config=api.ConsumerConfig(ack_policy=api.AckPolicy.NONE,
                                  deliver_policy=api.DeliverPolicy.ALL,
                                  filter_subjects=[OPS_SUBJECT, DONE_SUBJECT],
                                  inactive_threshold=60.0))
    deadline = None if timeout is None else time.monotonic() + timeout
    ops, shards, done = [], [], set()
    while len(done) < total:
        if deadline is not None and time.monotonic() > deadline:
            break
        try:
            msgs = await sub.fetch(256, timeout=1.0)
        except nats.errors.TimeoutError:
            continue
        for m in msgs:
            d = json.loads(m.data)
            if m.subject == DONE_SUBJECT:
                shards.append(d)
                done.update(d["partitions"])
            else:
                ops.append(d)
    await sub.unsubscribe()
    out = merge(ops)
    out["received"] = len(ops)
    hops = np.concatenate([np.asarray(s.pop("hops_ns", []), dtype=np.int64) for s in shards]) \
        if shards else np.zeros(0, np.int64)
    out["hop_ns"] = ({"count": int(len(hops)), "p50": int(np.percentile(hops, 50)),
                      "p99": int(np.percentile(hops, 99)), "max": int(hops.max())}
                     if len(hops) else {"count": 0})
    out["partitions"] = total
    out["missing_partitions"] = sorted(set(range(total)) - done)
    out["complete"] = not out["missing_partitions"]
    out["shards"] = shards
    return out


def gather(url: str, *, timeout: float | None = None) -> dict[str, Any]:
    """Read ``tallyio.opportunities`` from its start until every partition of the published feed
    has a done marker (an engine that consumed it to its end marker and published every result
    before it), or ``timeout`` seconds; the merged report (``merge``) with ``complete``,
    ``missing_partitions``, each shard's done marker and the publish -> settled hop latency.
    Raises ``NatsError`` when the server cannot be reached or nothing was published."""
    lt = LoopThread(url, name="tallyio-nats-gather")
    try:
        try:
            return lt.call(_gather(lt, timeout), timeout=None)
        except nats.js.errors.NotFoundError:
            raise NatsError(f"{url}: nothing published (no {META_SUBJECT} in {TX_STREAM}): run "
                            f"tallyio publish first") from None
    finally:
        lt.stop()


def single_engine(opportunities, rows) -> dict[str, Any]:
    """A single engine's opportunities (``Opportunity`` objects or their dicts, over ``rows``,
    the feed it ran, ids 0..n-1 in order) keyed like the shards' (``tx`` from the rows), merged
    the same way: what a sharded run's ``gather`` must equal."""
    out = []
    for o in opportunities:
        d = dict(o.to_dict() if hasattr(o, "to_dict") else o)
        d["tx"] = [["0x" + rows["tx_hash"][i].tobytes().hex(), int(rows["swap_index"][i])]
                   for i in d["tx_ids"]]
        out.append(d)
    return merge(out)
