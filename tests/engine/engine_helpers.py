"""Test processors and helpers shared by the engine tests."""

import numpy as np

from tallyio.opportunity import Opportunity
from tallyio.record import TX_DTYPE


class CountingProcessor:
    """Counts rows and ids; finds an 'opportunity' in every row whose id is a multiple of 100."""

    name = "counting"

    def __init__(self, every=100):
        self.every = every
        self.rows = 0
        self.id_sum = 0
        self.meta = None
        self.writeable_seen = False

    def on_feed(self, metadata):
        self.meta = metadata

    def process(self, batch):
        self.rows += len(batch)
        self.id_sum += int(batch["id"].sum())
        self.writeable_seen |= batch.flags.writeable
        hits = batch["id"][batch["id"] % self.every == 0]
        return [Opportunity("counting", "test", int(i), "0x" + "00" * 20, (int(i),)) for i in hits]

    def flush(self):
        return [Opportunity("counting", "flushed", 0, "0x" + "00" * 20)]


class FailingProcessor:
    name = "failing"

    def __init__(self, fail_every=1):
        self.calls = 0
        self.fail_every = fail_every

    def process(self, batch):
        self.calls += 1
        if self.calls % self.fail_every == 0:
            raise RuntimeError("strategy bug")


class Recorder:
    def __init__(self):
        self.events = []
        self.instances = {}


def rows(n, start=0):
    r = np.zeros(n, dtype=TX_DTYPE)
    r["id"] = np.arange(start, start + n)
    return r
