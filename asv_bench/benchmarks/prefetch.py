"""Gather with software prefetch against numpy.take and against itself without prefetch
(distance=0), over tables 4x the last-level cache; the prefetching iterator against iter()."""
import glob
import os

import numpy as np

from tallyio import PrefetchingIterator, gather
from tallyio.record import TX_DTYPE

from .common import rng

LOOKUPS = 1 << 18


def _llc_bytes(default=32 << 20):
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    best = (0, 0)
    for d in glob.glob("/sys/devices/system/cpu/cpu0/cache/index*"):
        try:
            level = int(open(os.path.join(d, "level")).read())
            size = open(os.path.join(d, "size")).read().strip()
        except (OSError, ValueError):
            continue
        best = max(best, (level, int(size[:-1]) * units.get(size[-1], 1) if size[-1] in units else int(size)))
    return best[1] or default


def _table(kind):
    """A table 4x the LLC, written in full: an untouched np.zeros table maps the shared zero page
    and every lookup would hit the cache."""
    nbytes = 4 * _llc_bytes()
    if kind == "int64":
        return np.arange(nbytes // 8, dtype=np.int64)
    t = np.empty(nbytes // TX_DTYPE.itemsize, dtype=TX_DTYPE)
    t["id"] = np.arange(len(t))
    return t


class GatherInt64:
    """LOOKUPS random int64 rows from a table 4x the LLC; time / LOOKUPS is ns per row."""

    params = [0, 8, 32, 128]
    param_names = ["distance"]
    timeout = 120

    def setup(self, distance):
        self.table = _table("int64")
        self.idx = rng(1).integers(0, len(self.table), LOOKUPS)

    def time_gather(self, distance):
        gather(self.table, self.idx, distance)


class GatherInt64NumpyTake(GatherInt64):
    """The peer: numpy.take of the same rows (it has no prefetch distance)."""

    params = [0]

    def time_gather(self, distance):
        np.take(self.table, self.idx)


class GatherRecords:
    """LOOKUPS / 4 random TX_DTYPE records (336 bytes) from a table 4x the LLC."""

    params = [0, 8, 32, 128]
    param_names = ["distance"]
    timeout = 120

    def setup(self, distance):
        self.table = _table("tx")
        self.idx = rng(2).integers(0, len(self.table), LOOKUPS // 4)

    def time_gather(self, distance):
        gather(self.table, self.idx, distance)


class GatherRecordsNumpyTake(GatherRecords):
    """The peer: numpy.take of the same records."""

    params = [0]

    def time_gather(self, distance):
        np.take(self.table, self.idx)


class IterateRows:
    """Iterate 65,536 int64 rows from Python."""

    params = ["PrefetchingIterator", "iter"]
    param_names = ["impl"]

    def setup(self, impl):
        self.rows = rng(3).integers(0, 2**62, 1 << 16, dtype=np.int64)

    def time_iterate(self, impl):
        it = PrefetchingIterator(self.rows, 8) if impl == "PrefetchingIterator" else iter(self.rows)
        for _ in it:
            pass
