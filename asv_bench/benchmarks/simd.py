"""SIMD kernels at each level against numpy doing the same work; 1k, 64k and 1M keys.

A level this CPU lacks is skipped (NotImplementedError in setup). GB/s = 8 bytes a key (16 for
compare) / (time / keys)."""
import numpy as np

from tallyio import simd

from .common import rng

SIZES = [1_000, 65_536, 1_048_576]
IMPLS = ["scalar", "avx2", "avx512", "numpy"]
_C1, _C2, _S33 = np.uint64(0xFF51AFD7ED558CCD), np.uint64(0xC4CEB9FE1A85EC53), np.uint64(33)


def _u64(n, offset):
    return rng(offset).integers(0, 2**64, n, dtype=np.uint64, endpoint=False)


def _check(impl):
    if impl != "numpy" and impl not in simd.available_levels():
        raise NotImplementedError(f"{impl} not available on this CPU")


class HashBatch:
    """fmix64 of every key (peer: the same arithmetic in numpy uint64 ops)."""

    params = (IMPLS, SIZES)
    param_names = ["impl", "keys"]

    def setup(self, impl, keys):
        _check(impl)
        self.a = _u64(keys, 10)

    def time_hash(self, impl, keys):
        if impl == "numpy":
            k = self.a ^ (self.a >> _S33)
            k *= _C1
            k ^= k >> _S33
            k *= _C2
            k ^= k >> _S33
        else:
            simd.hash_batch(self.a, level=impl)


class CompareBatch:
    """Elementwise equality of two uint64 arrays (peer: numpy ``a == b``)."""

    params = (IMPLS, SIZES)
    param_names = ["impl", "keys"]

    def setup(self, impl, keys):
        _check(impl)
        self.a = _u64(keys, 11)
        self.b = self.a.copy()
        self.b[::3] += np.uint64(1)

    def time_compare(self, impl, keys):
        if impl == "numpy":
            self.a == self.b
        else:
            simd.compare_batch(self.a, self.b, level=impl)


class ContainsBatch:
    """Membership of every key in a watch-list built once (peer: numpy.isin); half the keys hit."""

    params = (IMPLS, SIZES, [16, 100_000])
    param_names = ["impl", "keys", "watch"]

    def setup(self, impl, keys, watch):
        _check(impl)
        self.watch = _u64(watch, 12)
        self.wl = simd.WatchList(self.watch)
        r = rng(13)
        self.keys = np.where(r.random(keys) < 0.5, r.choice(self.watch, keys),
                             _u64(keys, 14)).astype(np.uint64)

    def time_contains(self, impl, keys, watch):
        if impl == "numpy":
            np.isin(self.keys, self.watch)
        else:
            self.wl.contains(self.keys, level=impl)


class BuildWatchList:
    """Build a watch-list of 100,000 keys (peers: a Python set, numpy.unique)."""

    params = ["WatchList", "set", "numpy.unique"]
    param_names = ["impl"]

    def setup(self, impl):
        self.watch = _u64(100_000, 15)

    def time_build(self, impl):
        if impl == "WatchList":
            simd.WatchList(self.watch)
        elif impl == "set":
            set(self.watch.tolist())
        else:
            np.unique(self.watch)
