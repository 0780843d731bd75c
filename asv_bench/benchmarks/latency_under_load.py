"""latency_under_load: open-loop load at load_factor x 100k tx/s with the example strategies;
latency of the rows every strategy decided, from each row's scheduled send time. Peers in the
same run (see tallyio.bench.kpi): the batched plain-Python engine, the per-item one, and the engine
with no strategy. ``track_undecided`` counts the rows a run did not decide (any is a failure)."""
from tallyio.bench import kpi

from .common import missing_strategies, require_strategies

LOAD_FACTORS = list(kpi.LOAD_FACTORS)
SECONDS = 2.0


class LatencyUnderLoad:
    params = (LOAD_FACTORS, list(kpi.ENGINES))
    param_names = ["load_factor", "engine"]
    timeout = 1200
    unit = "ns"

    def setup_cache(self):
        if missing_strategies():
            return {}  # not None: asv passes it to setup, which skips, with the reason
        return {lf: kpi.latency_under_load(lf, SECONDS) for lf in LOAD_FACTORS}

    def setup(self, cache, load_factor, engine):
        require_strategies()

    def track_p50(self, cache, load_factor, engine):
        return cache[load_factor][engine]["p50"]

    def track_p95(self, cache, load_factor, engine):
        return cache[load_factor][engine]["p95"]

    def track_p99(self, cache, load_factor, engine):
        return cache[load_factor][engine]["p99"]

    def track_p999(self, cache, load_factor, engine):
        return cache[load_factor][engine]["p999"]

    def track_throughput(self, cache, load_factor, engine):
        return cache[load_factor][engine]["throughput_tps"]

    track_throughput.unit = "tx/s"

    def track_undecided(self, cache, load_factor, engine):
        return sum(cache[load_factor][engine]["undecided"].values())

    track_undecided.unit = "rows"
