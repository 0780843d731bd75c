"""latency_under_load: open-loop load at load_factor x 100k tx/s through the whole engine with the
example strategies; latency from each transaction's scheduled send time. The plain-Python engine
(queue.Queue + worker + per-item strategy call) runs the same load in the same process."""
from tallyio.bench import kpi

LOAD_FACTORS = [0.5, 1.0, 2.0, 5.0]
SECONDS = 2.0


class LatencyUnderLoad:
    params = (LOAD_FACTORS, ["tallyio", "plain"])
    param_names = ["load_factor", "engine"]
    timeout = 600
    unit = "ns"

    def setup_cache(self):
        return {lf: kpi.latency_under_load(lf, SECONDS) for lf in LOAD_FACTORS}

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
