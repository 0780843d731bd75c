"""Ring buffers and the latency histogram against deque, SimpleQueue, Queue and hdrhistogram."""
from __future__ import annotations

import collections
import queue

import numpy as np

from tallyio import LatencyHistogram, Ring
from tallyio.bench._harness import Comparison, ns_per_op


def _push_pop(push, pop):
    def op():
        push(1)
        pop()
    return op


def run(quick: bool = False) -> list[Comparison]:
    repeat = 3 if quick else 7
    out = []

    # One item in, one item out, from Python: the plan's single_enqueue_dequeue.
    peers = []
    d = collections.deque(maxlen=1024)
    peers.append(("collections.deque append+popleft", ns_per_op(_push_pop(d.append, d.popleft), repeat=repeat)))
    sq = queue.SimpleQueue()
    peers.append(("queue.SimpleQueue put+get", ns_per_op(_push_pop(sq.put, sq.get), repeat=repeat)))
    q = queue.Queue(1024)
    peers.append(("queue.Queue put_nowait+get_nowait",
                  ns_per_op(_push_pop(q.put_nowait, q.get_nowait), repeat=repeat)))
    for kind in ("spsc", "mpmc"):
        r = Ring(1024, kind=kind)
        ns = ns_per_op(_push_pop(r.push, r.pop), repeat=repeat)
        out.append(Comparison(f"single enqueue+dequeue ({kind})", (f"tallyio.Ring {kind} push+pop", ns),
                              list(peers)))

    # Bulk: 4,096 int64 rows in and out per call; per row.
    n = 4096
    rows = np.arange(n, dtype=np.int64)
    for kind in ("spsc", "mpmc"):
        r = Ring(8192, kind=kind)
        ns = ns_per_op(lambda: (r.push_many(rows), r.pop_many(n)), n, repeat=repeat)
        dq = collections.deque(maxlen=8192)

        def deque_bulk():
            dq.extend(rows.tolist())
            pop = dq.popleft
            [pop() for _ in range(n)]

        sq = queue.SimpleQueue()

        def simplequeue_bulk():
            put, get = sq.put, sq.get
            for x in rows.tolist():
                put(x)
            [get() for _ in range(n)]

        out.append(Comparison(f"bulk enqueue+dequeue ({kind}), per row",
                              (f"tallyio.Ring {kind} push_many+pop_many", ns),
                              [("deque extend+popleft", ns_per_op(deque_bulk, n, repeat=repeat)),
                               ("SimpleQueue put+get loop", ns_per_op(simplequeue_bulk, n, repeat=repeat))],
                              unit="row"))

    # Histogram: one record from Python, and bulk record per value.
    h = LatencyHistogram()
    ns = ns_per_op(lambda: h.record(12_345), repeat=repeat)
    peers = []
    try:
        from hdrh.histogram import HdrHistogram
        hh = HdrHistogram(1, 60_000_000_000, 2)
        peers.append(("hdrhistogram record_value", ns_per_op(lambda: hh.record_value(12_345), repeat=repeat)))
    except ImportError:  # a core install without the test extra
        peers.append(("hdrhistogram (not installed)", float("nan")))
    out.append(Comparison("histogram record (one value)", ("tallyio.LatencyHistogram record", ns), peers))

    vals = np.random.default_rng(7).integers(1_000, 10_000_000, 65_536)
    h2 = LatencyHistogram()
    ns = ns_per_op(lambda: h2.record_many(vals), len(vals), repeat=repeat)
    peers = [("Python loop of LatencyHistogram.record",
              ns_per_op(lambda: [h2.record(v) for v in vals.tolist()], len(vals), repeat=repeat))]
    try:
        from hdrh.histogram import HdrHistogram
        hh2 = HdrHistogram(1, 60_000_000_000, 2)
        lst = vals.tolist()
        peers.append(("hdrhistogram record_value loop",
                      ns_per_op(lambda: [hh2.record_value(v) for v in lst], len(vals), repeat=min(repeat, 3))))
    except ImportError:
        pass
    out.append(Comparison("histogram record_many, per value", ("tallyio.LatencyHistogram record_many", ns),
                          peers, unit="value"))
    return out
