"""concurrent_operations: `threads` producers together offer 100k tx/s open-loop; P99 and total
throughput, TallyIO vs the plain-Python engine in the same run."""
from tallyio.bench import kpi

THREADS = [1, 2, 4, 8]
SECONDS = 2.0


class ConcurrentOperations:
    params = (THREADS, ["tallyio", "plain"])
    param_names = ["threads", "engine"]
    timeout = 600
    unit = "ns"

    def setup_cache(self):
        return {t: kpi.concurrent_operations(t, SECONDS) for t in THREADS}

    def track_p99(self, cache, threads, engine):
        return cache[threads][engine]["p99"]

    def track_throughput(self, cache, threads, engine):
        return cache[threads][engine]["throughput_tps"]

    track_throughput.unit = "tx/s"
