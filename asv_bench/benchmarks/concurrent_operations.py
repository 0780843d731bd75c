"""concurrent_operations: `threads` producers together offer 100k tx/s open-loop, each its own
slots of one schedule; P99 of the decided rows and total throughput, TallyIO and its peers in the
same run (see tallyio.bench.kpi)."""
from tallyio.bench import kpi

from .common import missing_strategies, require_strategies

THREADS = list(kpi.THREADS)
SECONDS = 2.0


class ConcurrentOperations:
    params = (THREADS, list(kpi.ENGINES))
    param_names = ["threads", "engine"]
    timeout = 1200
    unit = "ns"

    def setup_cache(self):
        if missing_strategies():
            return {}  # not None: asv passes it to setup, which skips, with the reason
        return {t: kpi.concurrent_operations(t, SECONDS) for t in THREADS}

    def setup(self, cache, threads, engine):
        require_strategies()

    def track_p99(self, cache, threads, engine):
        return cache[threads][engine]["p99"]

    def track_throughput(self, cache, threads, engine):
        return cache[threads][engine]["throughput_tps"]

    track_throughput.unit = "tx/s"

    def track_undecided(self, cache, threads, engine):
        return sum(cache[threads][engine]["undecided"].values())

    track_undecided.unit = "rows"
