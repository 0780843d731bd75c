"""SIMD kernels at every level this CPU has, against numpy doing the same work (fmix64 in numpy
uint64 arithmetic, ``a == b``, ``numpy.isin``) and a Python set, for 1k, 64k and 1M keys.

Labels carry the input bandwidth in GB/s (8 bytes a key; 16 for compare, which reads two)."""
from __future__ import annotations

import numpy as np

from tallyio import simd
from tallyio.bench._harness import Comparison, ns_per_op

SIZES = (1_000, 65_536, 1_048_576)
_C1, _C2, _S33 = np.uint64(0xFF51AFD7ED558CCD), np.uint64(0xC4CEB9FE1A85EC53), np.uint64(33)


def numpy_fmix64(k: np.ndarray) -> np.ndarray:
    """fmix64 in numpy: the arithmetic a user would write, with in-place steps to save copies."""
    k = k ^ (k >> _S33)
    k *= _C1
    k ^= k >> _S33
    k *= _C2
    k ^= k >> _S33
    return k


def _label(name: str, ns_per_key: float, bytes_per_key: int) -> str:
    return f"{name} [{bytes_per_key / ns_per_key:.1f} GB/s]"


def _compare(operation, bytes_per_key, n, kernels, peers, repeat):
    """``kernels``: level -> fn; the active level is the subject, the others and ``peers`` peers."""
    timed = {lvl: ns_per_op(fn, n, repeat=repeat) for lvl, fn in kernels.items()}
    active = simd.level()
    subject = (_label(f"tallyio {active}", timed[active], bytes_per_key), timed[active])
    rest = [(_label(f"tallyio {lvl}", ns, bytes_per_key), ns) for lvl, ns in timed.items()
            if lvl != active]
    for name, fn in peers:
        ns = ns_per_op(fn, n, repeat=repeat)
        rest.append((_label(name, ns, bytes_per_key), ns))
    return Comparison(f"{operation}, {n:,} keys", subject, rest, unit="key")


def run(quick: bool = False) -> list[Comparison]:
    repeat = 3 if quick else 7
    levels = simd.available_levels()
    rng = np.random.default_rng(20240601)
    out = []
    for n in SIZES:
        a = rng.integers(0, 2**64, n, dtype=np.uint64, endpoint=False)
        out.append(_compare("hash_batch (fmix64)", 8, n,
                            {lvl: (lambda lvl=lvl: simd.hash_batch(a, level=lvl)) for lvl in levels},
                            [("numpy uint64 ops", lambda: numpy_fmix64(a))], repeat))
    for n in SIZES:
        a = rng.integers(0, 2**64, n, dtype=np.uint64, endpoint=False)
        b = a.copy()
        b[::3] += np.uint64(1)
        out.append(_compare("compare_batch (a == b)", 16, n,
                            {lvl: (lambda lvl=lvl: simd.compare_batch(a, b, level=lvl)) for lvl in levels},
                            [("numpy a == b", lambda: a == b)], repeat))
    for w in (16, 100_000):
        watch = rng.integers(0, 2**64, w, dtype=np.uint64, endpoint=False)
        wl = simd.WatchList(watch)
        model = set(watch.tolist())
        for n in SIZES:
            # Half the keys on the watch-list: the branchy paths see no easy pattern.
            keys = np.where(rng.random(n) < 0.5, rng.choice(watch, n),
                            rng.integers(0, 2**64, n, dtype=np.uint64, endpoint=False)).astype(np.uint64)
            peers = [("numpy.isin", lambda: np.isin(keys, watch))]
            if n <= 65_536:
                peers.append(("Python set, list comprehension",
                              lambda: [k in model for k in keys.tolist()]))
            out.append(_compare(f"contains (WatchList of {w:,})", 8, n,
                                {lvl: (lambda lvl=lvl: wl.contains(keys, level=lvl)) for lvl in levels},
                                peers, repeat))
    watch = rng.integers(0, 2**64, 100_000, dtype=np.uint64, endpoint=False)
    out.append(Comparison("build a watch-list of 100,000 keys",
                          ("tallyio.simd.WatchList", ns_per_op(lambda: simd.WatchList(watch), len(watch), repeat=repeat)),
                          [("set(keys.tolist())", ns_per_op(lambda: set(watch.tolist()), len(watch), repeat=repeat)),
                           ("numpy.unique", ns_per_op(lambda: np.unique(watch), len(watch), repeat=repeat))],
                          unit="key"))
    return out
