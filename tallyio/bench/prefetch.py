"""Gather with software prefetch against numpy.take and the same loop without prefetch, over
tables several times the last-level cache; and the prefetching iterator against iter(array)."""
from __future__ import annotations

import glob
import os

import numpy as np

from tallyio import PrefetchingIterator, gather
from tallyio.bench._harness import Comparison, ns_per_op
from tallyio.record import TX_DTYPE

DISTANCES = (0, 2, 4, 8, 16, 32, 64, 128, 256)
_UNITS = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}


def last_level_cache_bytes(default: int = 32 << 20) -> int:
    """Size of the highest-level CPU cache from sysfs (``default`` where sysfs does not say)."""
    best = (0, 0)
    for d in glob.glob("/sys/devices/system/cpu/cpu0/cache/index*"):
        try:
            with open(os.path.join(d, "level")) as f:
                level = int(f.read())
            with open(os.path.join(d, "size")) as f:
                size = f.read().strip()
        except (OSError, ValueError):
            continue
        n = int(size[:-1]) * _UNITS[size[-1]] if size[-1] in _UNITS else int(size)
        best = max(best, (level, n))
    return best[1] or default


def _sweep(table, idx, repeat):
    """ns per row of gather at each distance, and of numpy.take."""
    times = {d: ns_per_op(lambda d=d: gather(table, idx, d), len(idx), repeat=repeat)
             for d in DISTANCES}
    take = ns_per_op(lambda: np.take(table, idx), len(idx), repeat=repeat)
    return times, take


def _comparison(label, times, take):
    best = min(times, key=times.get)
    peers = [("numpy.take", take)]
    if best != 0:
        peers.append(("tallyio.gather distance=0 (no prefetch)", times[0]))
    peers += [(f"tallyio.gather distance={d}", times[d]) for d in DISTANCES if d not in (0, best)]
    name = "distance=0 (no prefetch, best)" if best == 0 else f"distance={best} (best)"
    return Comparison(label, (f"tallyio.gather {name}", times[best]), peers, unit="row")


def run(quick: bool = False) -> list[Comparison]:
    repeat = 3 if quick else 5
    llc = last_level_cache_bytes()
    factor = 4 if quick else 8
    lookups = (1 << 18) if quick else (1 << 20)
    rng = np.random.default_rng(20240601)
    out = []

    # Tables are written in full (arange / a filled field): an untouched np.zeros table would be
    # backed by the one shared zero page, and every lookup would hit the cache.
    n = factor * llc // 8
    table = np.arange(n, dtype=np.int64)
    idx = rng.integers(0, n, lookups)
    out.append(_comparison(f"gather int64, {table.nbytes >> 20} MiB table ({factor}x LLC)",
                           *_sweep(table, idx, repeat)))
    del table

    n = factor * llc // TX_DTYPE.itemsize
    table = np.empty(n, dtype=TX_DTYPE)
    table["id"] = np.arange(n)
    # 64k rows (22 MiB out): larger outputs are mmap'ed fresh by malloc on every call, and the
    # page faults of the output would swamp the lookups being measured.
    idx = rng.integers(0, n, lookups // 16)
    out.append(_comparison(f"gather TX_DTYPE, {table.nbytes >> 20} MiB table ({factor}x LLC)",
                           *_sweep(table, idx, repeat)))
    del table

    # A table that fits in L2: prefetch has nothing to hide, this shows what it costs.
    table = np.arange(64 << 10, dtype=np.int64)
    idx = rng.integers(0, len(table), lookups)
    out.append(_comparison("gather int64, 512 KiB table (in cache)", *_sweep(table, idx, repeat)))

    rows = np.arange(1 << 16, dtype=np.int64)

    def walk_prefetching():
        for _ in PrefetchingIterator(rows, 8):
            pass

    def walk_plain():
        for _ in rows:
            pass

    out.append(Comparison("iterate 64k int64 rows from Python",
                          ("tallyio.PrefetchingIterator", ns_per_op(walk_prefetching, len(rows), repeat=repeat)),
                          [("iter(ndarray)", ns_per_op(walk_plain, len(rows), repeat=repeat))], unit="row"))
    return out
