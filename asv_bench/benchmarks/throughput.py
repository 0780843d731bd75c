"""Throughput at saturation (the feed offered as fast as possible) and steady-state memory."""
from tallyio.bench import kpi


class Saturation:
    params = ["tallyio", "plain"]
    param_names = ["engine"]
    timeout = 600
    unit = "tx/s"

    def setup_cache(self):
        return kpi.saturation(200_000)

    def track_throughput(self, cache, engine):
        return cache[engine]["throughput_tps"]


class Memory:
    timeout = 600

    def setup(self):
        kpi.workload(kpi.FEED_ROWS)  # the feed is built (or read) outside the measured region

    def peakmem_engine_run(self):
        kpi.saturation(200_000, plain=False)

    def track_rss_growth(self):
        """RSS at the end of a 10 s run at load factor 1.0 minus RSS after its first second."""
        samples = kpi.rss_over_time(10.0)
        after_warmup = [rss for t, rss in samples if t >= 1.0]
        return after_warmup[-1] - after_warmup[0]

    track_rss_growth.unit = "bytes"
