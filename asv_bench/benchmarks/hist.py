"""Latency histogram: record one value and bulk record, against hdrhistogram in the same run."""
from hdrh.histogram import HdrHistogram

from tallyio import LatencyHistogram

from .common import latencies_ns


class RecordOne:
    params = ["tallyio", "hdrhistogram"]
    param_names = ["impl"]

    def setup(self, impl):
        if impl == "tallyio":
            self.record = LatencyHistogram().record
        else:
            self.record = HdrHistogram(1, 60 * 10**9, 2).record_value

    def time_record(self, impl):
        self.record(12_345)


class RecordMany:
    """Per-value cost is time / 65,536."""

    params = ["tallyio", "hdrhistogram"]
    param_names = ["impl"]

    def setup(self, impl):
        self.values = latencies_ns(65_536)
        self.items = self.values.tolist()
        self.h = LatencyHistogram() if impl == "tallyio" else HdrHistogram(1, 60 * 10**9, 2)

    def time_record_many(self, impl):
        if impl == "tallyio":
            self.h.record_many(self.values)
        else:
            rv = self.h.record_value
            for v in self.items:
                rv(v)


class Percentiles:
    params = ["tallyio", "hdrhistogram"]
    param_names = ["impl"]

    def setup(self, impl):
        values = latencies_ns(100_000)
        if impl == "tallyio":
            self.h = LatencyHistogram()
            self.h.record_many(values)
            self.q = self.h.percentile
        else:
            self.h = HdrHistogram(1, 60 * 10**9, 2)
            for v in values.tolist():
                self.h.record_value(v)
            self.q = self.h.get_value_at_percentile

    def time_p99(self, impl):
        self.q(99)
