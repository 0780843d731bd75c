"""StateCache against dict, functools.lru_cache and cachetools.LRUCache, in the same run."""
from __future__ import annotations

import functools

import numpy as np

from tallyio import StateCache
from tallyio.bench._harness import Comparison, ns_per_op

N_KEYS = 1024
UNROLL = 20
RECORD = np.dtype([("reserve0", np.uint64), ("reserve1", np.uint64), ("fee_bps", np.uint32),
                   ("block", np.uint64)], align=True)


def _calls(fn, *args):
    """A function that calls ``fn(*args)`` UNROLL times in straight-line code, so a per-call
    figure carries neither a loop's nor a wrapper's overhead (what timeit measures)."""
    names = [f"a{i}" for i in range(len(args))]
    call = f"f({', '.join(names)})"
    src = (f"def op(f=f, {', '.join(f'{n}={n}' for n in names)}):\n"
           + f"    {call}\n" * UNROLL)
    ns = {"f": fn, **dict(zip(names, args))}
    exec(src, ns)
    return ns["op"]


def _time(fn, *args, repeat):
    return ns_per_op(_calls(fn, *args), UNROLL, repeat=repeat)


def run(quick: bool = False) -> list[Comparison]:
    try:
        import cachetools
    except ImportError:  # a core install without the test extra
        cachetools = None
    repeat = 3 if quick else 7
    out = []
    keys = np.random.default_rng(11).integers(0, 2**63, N_KEYS, dtype=np.int64)
    items = keys.tolist()
    hit, miss = items[N_KEYS // 2], 2**63 + 12345

    cache = StateCache(N_KEYS)
    cache.put_many(keys, keys)
    table = dict(zip(items, items))
    lru = functools.lru_cache(maxsize=N_KEYS)(lambda k: k)
    for k in items:
        lru(k)
    lc = None
    if cachetools is not None:
        lc = cachetools.LRUCache(maxsize=N_KEYS)
        for k in items:
            lc[k] = k

    def peers(*rows):
        return [(name, _time(fn, *args, repeat=repeat) if fn is not None else float("nan"))
                for name, fn, *args in rows]

    # The plan's cache_get_operation: one hit from Python.
    out.append(Comparison("cache get, hit (int64 value)",
                          ("tallyio.StateCache.get", _time(cache.get, hit, repeat=repeat)),
                          peers(("dict.get", table.get, hit),
                                ("functools.lru_cache hit", lru, hit),
                                ("cachetools.LRUCache.get", lc and lc.get, hit))))
    out.append(Comparison("cache get, miss",
                          ("tallyio.StateCache.get", _time(cache.get, miss, repeat=repeat)),
                          peers(("dict.get", table.get, miss),
                                ("cachetools.LRUCache.get", lc and lc.get, miss))))
    out.append(Comparison("cache put, existing key",
                          ("tallyio.StateCache.put", _time(cache.put, hit, 5, repeat=repeat)),
                          peers(("dict __setitem__", table.__setitem__, hit, 5),
                                ("cachetools.LRUCache __setitem__", lc and lc.__setitem__, hit, 5))))

    # A new key into a full cache: every put evicts one entry.
    fresh = iter(range(2**63, 2**64))
    full = StateCache(N_KEYS)
    full.put_many(keys, keys)
    evict_peers = []
    if lc is not None:
        lc2 = cachetools.LRUCache(maxsize=N_KEYS)
        for k in items:
            lc2[k] = k
        evict_peers.append(("cachetools.LRUCache __setitem__ (evicts)",
                            ns_per_op(lambda: lc2.__setitem__(next(fresh), 1), repeat=repeat)))
    ns = ns_per_op(lambda: full.put(next(fresh), 1), repeat=repeat)
    out.append(Comparison("cache put, new key at a full cache", ("tallyio.StateCache.put (evicts)", ns),
                          evict_peers))

    # Records: a structured row comes back as a numpy.void copy.
    rec = StateCache(N_KEYS, RECORD)
    rows = np.zeros(N_KEYS, RECORD)
    rows["reserve0"] = keys
    rec.put_many(keys, rows)
    tuples = {k: (k, 0, 30, 0) for k in items}
    out.append(Comparison("record get, hit (32-byte struct)",
                          ("tallyio.StateCache.get -> numpy.void", _time(rec.get, hit, repeat=repeat)),
                          peers(("dict.get of a tuple", tuples.get, hit),
                                ("numpy structured array [i]", rows.__getitem__, 7))))

    # Bulk, per key: 4,096 keys, half present.
    big = np.random.default_rng(12).integers(0, 2**63, 65_536, dtype=np.int64)
    bc = StateCache(65_536)
    bc.put_many(big, big)
    bd = dict(zip(big.tolist(), big.tolist()))
    q = np.concatenate([big[:2048], np.random.default_rng(13).integers(0, 2**63, 2048)])
    ql = q.tolist()
    n = len(q)
    bget = bd.get
    out.append(Comparison("get_many, per key (4,096 keys)",
                          ("tallyio.StateCache.get_many", ns_per_op(lambda: bc.get_many(q), n, repeat=repeat)),
                          [("dict.get list comprehension",
                            ns_per_op(lambda: [bget(k, 0) for k in ql], n, repeat=repeat)),
                           ("StateCache.get list comprehension",
                            ns_per_op(lambda: [bc.get(k, 0) for k in ql], n, repeat=repeat))],
                          unit="key"))
    pk = np.random.default_rng(14).integers(0, 2**63, 4096, dtype=np.int64)
    pairs = list(zip(pk.tolist(), pk.tolist()))
    pc = StateCache(4096)
    pd: dict = {}
    out.append(Comparison("put_many, per key (4,096 keys)",
                          ("tallyio.StateCache.put_many", ns_per_op(lambda: pc.put_many(pk, pk), 4096, repeat=repeat)),
                          [("dict.update(pairs)", ns_per_op(lambda: pd.update(pairs), 4096, repeat=repeat))],
                          unit="key"))
    return out
