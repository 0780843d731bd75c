"""Micro-batching: tallyio.BatchProcessor against a naive queue.Queue batcher, same batch size,
timeout and processor, in the same run (see tallyio.bench.batch_processor for the peer)."""
import queue
import threading
from concurrent.futures import Future

from tallyio._core.objqueue import ObjectQueue
from tallyio.bench.batch_processor import NaiveBatcher, identity
from tallyio.resilience.batch import BatchProcessor

from .common import int64_rows

IMPLS = ["tallyio", "naive"]


def _make(impl):
    if impl == "tallyio":
        return BatchProcessor(identity, batch_size=64, batch_timeout=200e-6, capacity=4096)
    return NaiveBatcher(identity, batch_size=64, batch_timeout=200e-6, capacity=4096)


class SubmitFlood:
    """`items` submitted by `threads` threads as fast as they can, until every result is in."""

    params = (IMPLS, [1, 4])
    param_names = ["impl", "threads"]
    items = 20_000

    def setup(self, impl, threads):
        self.data = int64_rows(self.items // threads).tolist()
        self.proc = _make(impl)

    def teardown(self, impl, threads):
        self.proc.close()

    def time_flood(self, impl, threads):
        futs = [[] for _ in range(threads)]

        def work(t):
            submit, out = self.proc.submit, futs[t]
            for x in self.data:
                out.append(submit(x))

        ths = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
        for th in ths:
            th.start()
        for th in ths:
            th.join()
        for fs in futs:
            for f in fs:
                f.result()


class ItemLatency:
    """Per-item latency, submit to result (ns), of a 20k-item flood from one thread."""

    params = (IMPLS, [50, 99])
    param_names = ["impl", "percentile"]
    unit = "ns"

    def setup(self, impl, percentile):
        self.data = int64_rows(20_000, 1).tolist()

    def track_latency(self, impl, percentile):
        proc = _make(impl)
        for f in [proc.submit(x) for x in self.data]:
            f.result()
        proc.close()
        return proc.latency.percentile(percentile)


class QueuePutDrain:
    """`n` entries put one by one and taken as one batch: the compiled queue against
    queue.Queue put_nowait/get_nowait (what the naive batcher does per item)."""

    params = (["objectqueue", "queue.Queue"], [64, 1024])
    param_names = ["impl", "n"]

    def setup(self, impl, n):
        self.data = int64_rows(n, 2).tolist()
        self.tag = Future()
        self.q = ObjectQueue(4096) if impl == "objectqueue" else queue.Queue(4096)

    def time_put_drain(self, impl, n):
        if impl == "objectqueue":
            put, tag = self.q.put, self.tag
            for x in self.data:
                put(x, tag)
            self.q.drain(n, 0)
        else:
            put, get = self.q.put_nowait, self.q.get_nowait
            for x in self.data:
                put((x, self.tag))
            for _ in range(n):
                get()
