"""Monitoring overhead: the same engine workload with monitoring on and off, as a ratio.

"on": the Prometheus exporter serving on loopback, scraped every second by a client thread (a
tight scrape_interval; 5-15 s is common), and snapshots (``metrics_collected`` observers, live
view) every second (the default ``[monitoring] interval``). "off": no exporter, no
scrapes, snapshots every hour. The compiled counters and sliding-window histograms are recorded
either way: they are part of the engine (one ``record_many`` per batch and histogram).

``tallyio bench monitoring [--repeats 5] [--json PATH]`` is ``tallyio bench --ab monitoring``: the
arms are ``tallyio.bench.ab.ARMS["monitoring"]``, each trial a fresh process running ``trial``,
the verdict a Mann-Whitney U test over the trials (see ``tallyio.bench.ab``).
"""
from __future__ import annotations

import threading
import urllib.request

from tallyio.bench import kpi



class _Scraper:
    def __init__(self, every: float = 1.0):
        self.every = every
        self.stop = threading.Event()
        self.scrapes = 0

    def run(self, engine_ref):
        while not self.stop.wait(self.every):
            eng = engine_ref()
            if eng is None or eng.exporter is None:
                continue
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{eng.exporter.port}/metrics", timeout=5).read()
                self.scrapes += 1
            except OSError:
                pass


def trial(config: dict, seconds: float, n: int) -> dict:
    """Saturation throughput over ``n`` rows and open-loop P99 at 100k tx/s for ``seconds``."""
    holder = {}
    scraper = _Scraper()
    original = kpi._tallyio_engine

    def make(factories, cfg=None):  # keep a handle on the engine so the scraper can find it
        eng = original(factories, cfg)
        holder["eng"] = eng
        return eng

    kpi._tallyio_engine = make
    t = threading.Thread(target=scraper.run, args=(lambda: holder.get("eng"),), daemon=True)
    t.start()
    try:
        sat = kpi.saturation(n, plain=False, config=config)["tallyio"]
        lat = kpi.latency_under_load(1.0, seconds, plain=False, config=config)["tallyio"]
    finally:
        kpi._tallyio_engine = original
        scraper.stop.set()
        t.join()
    return {"throughput_tps": sat["throughput_tps"], "p99": lat["p99"], "p50": lat["p50"],
            "scrapes": scraper.scrapes}
