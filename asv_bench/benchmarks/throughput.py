"""Throughput at saturation (the feed offered as fast as possible), TallyIO and its peers, and
steady-state memory."""
from tallyio.bench import kpi

from .common import missing_strategies, require_strategies


class Saturation:
    params = list(kpi.ENGINES)
    param_names = ["engine"]
    timeout = 600
    unit = "tx/s"

    def setup_cache(self):
        if missing_strategies():
            return {}  # not None: asv passes it to setup, which skips, with the reason
        return kpi.saturation(200_000)

    def setup(self, cache, engine):
        require_strategies()

    def track_throughput(self, cache, engine):
        return cache[engine]["throughput_tps"]

    def track_undecided(self, cache, engine):
        return sum(cache[engine]["undecided"].values())

    track_undecided.unit = "rows"


class Memory:
    timeout = 600

    def setup(self):
        require_strategies()
        kpi.workload(kpi.FEED_ROWS)  # the feed is built (or read) outside the measured region

    def peakmem_engine_run(self):
        kpi.saturation(200_000, plain=False)

    def track_rss_growth(self):
        """RSS at the end of a 5 s run at load factor 1.0 minus RSS after its first second."""
        samples = kpi.rss_over_time(5.0)
        after_warmup = [rss for t, rss in samples if t >= 1.0]
        return after_warmup[-1] - after_warmup[0]

    track_rss_growth.unit = "bytes"
