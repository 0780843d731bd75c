"""tallyio.MemoryPool against bytearray, numpy.empty, a Python free-list and malloc, same run.

Sizes are the pool's classes (64 B, 1 KiB, 4 KiB, 2 MiB); the mixed workload draws its sizes
from common.rng.
"""
import threading

import numpy as np

from tallyio._core.pool import MemoryPool

from .common import rng

SIZES = [64, 1024, 4096]
N_OPS = 100_000


class AllocateRelease:
    """One block out and back from Python."""

    params = (["memorypool", "bytearray", "numpy.empty", "python_freelist"], SIZES)
    param_names = ["impl", "size"]

    def setup(self, impl, size):
        self.pool = MemoryPool()
        if impl == "memorypool":
            alloc, release = self.pool.allocate, self.pool.release
            self.op = lambda: release(alloc(size))
        elif impl == "bytearray":
            self.op = lambda: bytearray(size)
        elif impl == "numpy.empty":
            self.op = lambda: np.empty(size, np.uint8)
        else:
            free_list = [bytearray(size) for _ in range(16)]
            pop, push = free_list.pop, free_list.append
            self.op = lambda: push(pop())

    def teardown(self, impl, size):
        self.pool.close()

    def time_allocate_release(self, impl, size):
        self.op()


class AllocateReleaseMixed:
    """1,024 blocks of seeded sizes in [1, 4096] all out, then all back, from Python."""

    params = ["memorypool", "bytearray", "numpy.empty"]
    param_names = ["impl"]

    def setup(self, impl):
        self.sizes = rng(31).integers(1, 4097, 1024).tolist()
        self.pool = MemoryPool(small=1024, medium=1024, large=1024, huge=0)

    def teardown(self, impl):
        self.pool.close()

    def time_burst(self, impl):
        if impl == "memorypool":
            alloc, release = self.pool.allocate, self.pool.release
            for b in [alloc(n) for n in self.sizes]:
                release(b)
        elif impl == "bytearray":
            [bytearray(n) for n in self.sizes]
        else:
            empty, u8 = np.empty, np.uint8
            [empty(n, u8) for n in self.sizes]


class CAllocFree:
    """100,000 alloc+free pairs from compiled code without the GIL (one byte written per block)."""

    params = (["pool", "malloc", "posix_memalign"], SIZES + [2 << 20])
    param_names = ["impl", "size"]

    def setup(self, impl, size):
        self.pool = MemoryPool()

    def teardown(self, impl, size):
        self.pool.close()

    def time_alloc_free(self, impl, size):
        if impl == "pool":
            self.pool._stress(N_OPS, size, check=False)
        else:
            self.pool._bench_system(N_OPS, size, aligned=impl == "posix_memalign")


class Threads:
    """gil.py-style: N threads each doing 50,000 nogil alloc+free pairs of 64 B on one pool."""

    params = (["pool", "malloc"], [1, 2, 4])
    param_names = ["impl", "threads"]

    def setup(self, impl, threads):
        self.pool = MemoryPool()
        if impl == "pool":
            self.body = lambda: self.pool._stress(50_000, 64, check=False)
        else:
            self.body = lambda: self.pool._bench_system(50_000, 64)

    def teardown(self, impl, threads):
        self.pool.close()

    def time_threads(self, impl, threads):
        ts = [threading.Thread(target=self.body) for _ in range(threads)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()


class Startup:
    """Start-up cost of the default pool (21.6 MB mapped and pre-faulted) against touching the
    same bytes with numpy.ones."""

    params = ["memorypool", "numpy.ones"]
    param_names = ["impl"]

    def time_startup(self, impl):
        if impl == "memorypool":
            MemoryPool().close()
        else:
            np.ones(1000 * 64 + 500 * 1024 + 100 * 4096 + 10 * (2 << 20), np.uint8)
