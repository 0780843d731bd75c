"""tallyio.BatchProcessor against a naive Python batcher (queue.Queue + a worker thread that
collects up to batch_size items with get(timeout)), same batch size, timeout and processor.

Two workloads, both through ``submit(item) -> Future`` and both in the same run:
  flood  - N items as fast as 1 or 4 threads can submit them, then wait for every result:
           throughput (ns per item, wall clock) and per-item latency (submit to result), which
           here is mostly time spent queued behind the flood.
  paced  - one thread offers items at a fixed rate (sleeping between them, so the GIL is free as
           it would be in a thread waiting on a socket): per-item latency with a mostly idle
           worker, where the wait policy and the wake-up cost show.
Latency is recorded at the moment each result is set, into a LatencyHistogram for both.
The BatchProcessor ran with its defaults: spin 50 us, then sched_yield (sleep=0).
"""
from __future__ import annotations

import queue
import threading
import time
from concurrent.futures import Future

from tallyio._core.clock import now_ns
from tallyio._core.hist import LatencyHistogram
from tallyio.bench._harness import Comparison
from tallyio.resilience.batch import BatchProcessor

BATCH_SIZE = 64
BATCH_TIMEOUT = 200e-6
CAPACITY = 4096


def identity(items):
    return items


class NaiveBatcher:
    """What a Python user writes first: a bounded queue.Queue and a worker thread that takes up
    to ``batch_size`` items, waiting at most ``batch_timeout`` after the first with get(timeout)."""

    _STOP = object()

    def __init__(self, processor, batch_size=BATCH_SIZE, batch_timeout=BATCH_TIMEOUT,
                 capacity=CAPACITY):
        self.processor = processor
        self.batch_size = batch_size
        self.batch_timeout = batch_timeout
        self.q = queue.Queue(capacity)
        self.latency = LatencyHistogram()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def submit(self, item):
        fut = Future()
        self.q.put((item, fut, now_ns()))
        return fut

    def _run(self):
        get, size, timeout = self.q.get, self.batch_size, self.batch_timeout
        while True:
            first = get()
            if first is self._STOP:
                return
            batch = [first]
            deadline = time.monotonic() + timeout
            stop = False
            while len(batch) < size:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                try:
                    entry = get(timeout=left)
                except queue.Empty:
                    break
                if entry is self._STOP:
                    stop = True
                    break
                batch.append(entry)
            results = self.processor([e[0] for e in batch])
            for (_, fut, _), res in zip(batch, results):
                fut.set_result(res)
            now = now_ns()
            self.latency.record_many([now - e[2] for e in batch])
            if stop:
                return

    def close(self):
        self.q.put(self._STOP)
        self.thread.join()


def _tallyio():
    bp = BatchProcessor(identity, batch_size=BATCH_SIZE, batch_timeout=BATCH_TIMEOUT,
                        capacity=CAPACITY)
    return bp, bp.latency


def _naive():
    nb = NaiveBatcher(identity)
    return nb, nb.latency


def flood(make, n_items: int, n_threads: int) -> tuple[float, int, int]:
    """(ns per item, P50 ns, P99 ns) for ``n_items`` submitted by ``n_threads`` at full speed."""
    proc, hist = make()
    per = n_items // n_threads
    futs = [[] for _ in range(n_threads)]
    go = threading.Barrier(n_threads + 1)

    def work(t):
        submit, out = proc.submit, futs[t]
        go.wait()
        for i in range(per):
            out.append(submit(i))

    ths = [threading.Thread(target=work, args=(t,)) for t in range(n_threads)]
    for th in ths:
        th.start()
    go.wait()
    t0 = time.perf_counter_ns()
    for th in ths:
        th.join()
    for fs in futs:
        for f in fs:
            f.result()
    elapsed = time.perf_counter_ns() - t0
    proc.close()
    return elapsed / (per * n_threads), hist.percentile(50), hist.percentile(99)


def paced(make, n_items: int, interval: float) -> tuple[int, int]:
    """(P50 ns, P99 ns) for items offered one at a time every ``interval`` seconds."""
    proc, hist = make()
    futs = [proc.submit(i) for i in range(1)]
    futs[0].result()
    hist.reset()
    futs = []
    for i in range(n_items):
        futs.append(proc.submit(i))
        time.sleep(interval)
    for f in futs:
        f.result()
    proc.close()
    return hist.percentile(50), hist.percentile(99)


def run(quick: bool = False) -> list[Comparison]:
    n = 20_000 if quick else 100_000
    out = []
    for threads in (1, 4):
        best = {}
        for name, make in (("tallyio.BatchProcessor", _tallyio), ("naive queue.Queue batcher", _naive)):
            # best of 3 runs by throughput; its latency percentiles go with it
            best[name] = min((flood(make, n, threads) for _ in range(1 if quick else 3)),
                             key=lambda r: r[0])
        sub, peer = best["tallyio.BatchProcessor"], best["naive queue.Queue batcher"]
        label = f"{threads} submitting thread{'s' if threads > 1 else ''}"
        out.append(Comparison(f"flood {n // 1000}k items, {label}: throughput",
                              ("tallyio.BatchProcessor", sub[0]),
                              [("naive queue.Queue batcher", peer[0])], unit="item"))
        out.append(Comparison(f"  flood, {label}: latency P50",
                              ("tallyio.BatchProcessor", sub[1]),
                              [("naive queue.Queue batcher", peer[1])], unit="item"))
        out.append(Comparison(f"  flood, {label}: latency P99",
                              ("tallyio.BatchProcessor", sub[2]),
                              [("naive queue.Queue batcher", peer[2])], unit="item"))
    m = 1_000 if quick else 5_000
    sub, peer = paced(_tallyio, m, 100e-6), paced(_naive, m, 100e-6)
    out.append(Comparison("paced, 1 item per 100 us sleep: latency P50",
                          ("tallyio.BatchProcessor", sub[0]),
                          [("naive queue.Queue batcher", peer[0])], unit="item"))
    out.append(Comparison("  paced: latency P99",
                          ("tallyio.BatchProcessor", sub[1]),
                          [("naive queue.Queue batcher", peer[1])], unit="item"))
    return out
