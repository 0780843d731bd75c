"""Ring buffers: bulk enqueue/dequeue per row, against deque and SimpleQueue in the same run."""
import collections
import queue

from tallyio import Ring

from .common import int64_rows


class BulkEnqueueDequeue:
    """push_many + pop_many of `rows` int64 rows; compare time / rows across implementations."""

    params = (["spsc", "mpmc", "deque", "simplequeue"], [64, 1024, 4096])
    param_names = ["impl", "rows"]

    def setup(self, impl, rows):
        self.data = int64_rows(rows)
        self.items = self.data.tolist()
        if impl in ("spsc", "mpmc"):
            self.ring = Ring(8192, kind=impl)
        elif impl == "deque":
            self.dq = collections.deque(maxlen=8192)
        else:
            self.sq = queue.SimpleQueue()

    def time_bulk(self, impl, rows):
        if impl in ("spsc", "mpmc"):
            self.ring.push_many(self.data)
            self.ring.pop_many(rows)
        elif impl == "deque":
            self.dq.extend(self.items)
            pop = self.dq.popleft
            for _ in range(rows):
                pop()
        else:
            put, get = self.sq.put, self.sq.get
            for x in self.items:
                put(x)
            for _ in range(rows):
                get()


class SingleEnqueueDequeueByKind:
    """One push + one pop from Python per call, per ring kind (peer: deque)."""

    params = ["spsc", "mpmc", "deque"]
    param_names = ["impl"]

    def setup(self, impl):
        if impl == "deque":
            d = collections.deque(maxlen=1024)
            self.push, self.pop = d.append, d.popleft
        else:
            r = Ring(1024, kind=impl)
            self.push, self.pop = r.push, r.pop

    def time_push_pop(self, impl):
        self.push(1)
        self.pop()
