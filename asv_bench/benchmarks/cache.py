"""tallyio.StateCache against dict, functools.lru_cache and cachetools.LRUCache in the same run.

Keys are 64-bit ids (common.int64_rows); values int64 unless a class says otherwise.
"""
import functools
import threading

import cachetools
import numpy as np

from tallyio import StateCache

from .common import int64_rows

POOL_DTYPE = np.dtype([("reserve0", np.uint64), ("reserve1", np.uint64), ("fee_bps", np.uint32),
                       ("block", np.uint64)], align=True)


def _filled(impl, n, keys):
    """A cache of `impl` holding keys -> keys; returns (object, get(key))."""
    if impl == "tallyio":
        c = StateCache(n)
        c.put_many(keys, keys.view(np.int64))
        return c, c.get
    items = keys.tolist()
    if impl == "dict":
        d = dict(zip(items, items))
        return d, d.get
    if impl == "lru_cache":
        f = functools.lru_cache(maxsize=n)(lambda k: k)
        for k in items:
            f(k)
        return f, f
    lc = cachetools.LRUCache(maxsize=n)
    for k in items:
        lc[k] = k
    return lc, lc.get


class GetHit:
    """One get from Python that hits."""

    params = (["tallyio", "dict", "lru_cache", "cachetools"], [1024, 1 << 20])
    param_names = ["impl", "size"]

    def setup(self, impl, size):
        keys = int64_rows(size).view(np.uint64)
        self.obj, self.get = _filled(impl, size, keys)
        self.key = int(keys[size // 2])

    def time_get(self, impl, size):
        self.get(self.key)


class GetMiss(GetHit):
    """One get from Python that misses (lru_cache has no miss: a miss calls its function)."""

    params = (["tallyio", "dict", "cachetools"], [1024, 1 << 20])

    def setup(self, impl, size):
        super().setup(impl, size)
        self.key = 2**63 + 1


class GetRecord:
    """One get of a structured record (a numpy.void copy) vs dict.get of a tuple."""

    params = ["tallyio", "dict_tuple"]
    param_names = ["impl"]

    def setup(self, impl):
        keys = int64_rows(1024).view(np.uint64)
        self.key = int(keys[7])
        if impl == "tallyio":
            c = StateCache(1024, POOL_DTYPE)
            rows = np.zeros(1024, POOL_DTYPE)
            rows["reserve0"] = keys
            c.put_many(keys, rows)
            self.get = c.get
        else:
            d = {int(k): (int(k), 0, 30, 0) for k in keys}
            self.get = d.get

    def time_get(self, impl):
        self.get(self.key)


class PutEvict:
    """Put a new key into a full cache, which evicts one (dict: pop the oldest, then set)."""

    params = (["tallyio", "cachetools", "dict_fifo"], [1024, 65536])
    param_names = ["impl", "size"]

    def setup(self, impl, size):
        keys = int64_rows(size).view(np.uint64)
        self.obj, _ = _filled("dict" if impl == "dict_fifo" else impl, size, keys)
        self.next_key = iter(range(2**63, 2**64))

    def time_put_evict(self, impl, size):
        k = next(self.next_key)
        if impl == "tallyio":
            self.obj.put(k, 1)
        elif impl == "cachetools":
            self.obj[k] = 1
        else:
            d = self.obj
            del d[next(iter(d))]
            d[k] = 1


class GetMany:
    """Look up `n` keys (half present); per-key cost is time / n."""

    params = (["tallyio", "dict"], [64, 4096, 65536])
    param_names = ["impl", "n"]

    def setup(self, impl, n):
        keys = int64_rows(65536).view(np.uint64)
        self.obj, self.get = _filled(impl, 65536, keys)
        q = np.concatenate([keys[: n // 2], int64_rows(n - n // 2, offset=1).view(np.uint64)])
        self.q = q
        self.items = q.tolist()

    def time_get_many(self, impl, n):
        if impl == "tallyio":
            self.obj.get_many(self.q)
        else:
            get = self.get
            [get(k, 0) for k in self.items]


class PutMany:
    """Store `n` new keys into an empty cache of that capacity; per-key cost is time / n."""

    params = (["tallyio", "dict"], [64, 4096, 65536])
    param_names = ["impl", "n"]

    def setup(self, impl, n):
        self.keys = int64_rows(n, offset=2).view(np.uint64)
        self.values = self.keys.view(np.int64)
        self.pairs = list(zip(self.keys.tolist(), self.values.tolist()))
        self.obj = StateCache(n) if impl == "tallyio" else {}

    def time_put_many(self, impl, n):
        if impl == "tallyio":
            self.obj.put_many(self.keys, self.values)
        else:
            self.obj.update(self.pairs)


class GetManyThreads:
    """`threads` threads each look up 65,536 keys at once: get_many releases the GIL (the
    pandas gil.py pattern); the dict loop cannot."""

    params = (["tallyio", "dict"], [1, 2, 4])
    param_names = ["impl", "threads"]

    def setup(self, impl, threads):
        keys = int64_rows(65536).view(np.uint64)
        self.obj, get = _filled(impl, 65536, keys)
        if impl == "tallyio":
            self.work = functools.partial(self.obj.get_many, keys)
        else:
            items = keys.tolist()
            self.work = lambda: [get(k) for k in items]

    def time_get_many_threads(self, impl, threads):
        ts = [threading.Thread(target=self.work) for _ in range(threads)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
