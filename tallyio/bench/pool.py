"""MemoryPool against bytearray, numpy.empty, a Python free-list and the C allocator."""
from __future__ import annotations

import threading

import numpy as np

from tallyio._core.pool import MemoryPool
from tallyio.bench._harness import Comparison, ns_per_op

SIZES = (64, 1024, 4096)


def _python_peers(n: int, repeat: int) -> list[tuple[str, float]]:
    free_list = [bytearray(n) for _ in range(16)]
    pop, push = free_list.pop, free_list.append
    empty, u8 = np.empty, np.uint8
    return [
        ("bytearray(n)", ns_per_op(lambda: bytearray(n), repeat=repeat)),
        ("numpy.empty(n, uint8)", ns_per_op(lambda: empty(n, u8), repeat=repeat)),
        ("Python free-list of bytearrays", ns_per_op(lambda: push(pop()), repeat=repeat)),
    ]


def _threads(fn, n_threads: int) -> None:
    start = threading.Barrier(n_threads)

    def body():
        start.wait()
        fn()

    ts = [threading.Thread(target=body) for _ in range(n_threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()


def run(quick: bool = False) -> list[Comparison]:
    repeat = 3 if quick else 7
    n_ops = 100_000 if quick else 1_000_000
    out = []
    pool = MemoryPool()
    try:
        # One block out and back from Python: the cost a strategy pays per scratch buffer.
        for n in SIZES:
            alloc, release = pool.allocate, pool.release
            ns = ns_per_op(lambda: release(alloc(n)), repeat=repeat)
            out.append(Comparison(f"allocate+release {n} B (Python)",
                                  ("MemoryPool allocate+release", ns), _python_peers(n, repeat)))

        # The same from compiled code without the GIL, per alloc+free.
        for n in SIZES + (2 << 20,):
            ns = ns_per_op(lambda: pool._stress(n_ops, n, check=False), n_ops, repeat=repeat)
            peers = [
                ("malloc+free (nogil)",
                 ns_per_op(lambda: pool._bench_system(n_ops, n), n_ops, repeat=repeat)),
                ("posix_memalign(64)+free (nogil)",
                 ns_per_op(lambda: pool._bench_system(n_ops, n, aligned=True), n_ops,
                           repeat=repeat)),
            ]
            out.append(Comparison(f"C alloc+free {n} B (nogil), per op",
                                  ("tio_pool_alloc+tio_pool_free", ns), peers))

        # Four threads at once on one class: the free list's CAS under contention (wall time per
        # op of all threads together).
        threads, per = 4, n_ops // 4
        ns = ns_per_op(lambda: _threads(lambda: pool._stress(per, 64, check=False), threads),
                       n_ops, repeat=repeat)
        peers = [("malloc+free (nogil)",
                  ns_per_op(lambda: _threads(lambda: pool._bench_system(per, 64), threads),
                            n_ops, repeat=repeat))]
        out.append(Comparison(f"C alloc+free 64 B, {threads} threads, per op",
                              ("tio_pool_alloc+tio_pool_free", ns), peers))
    finally:
        pool.close()
    return out
