"""Monitoring overhead: the same engine workload with monitoring on and off, as a ratio.

"on": the Prometheus exporter serving on loopback, scraped every second by a client thread (a
tight scrape_interval; 5-15 s is common), and snapshots (``metrics_collected`` observers, live
view) every second (the default ``[monitoring] interval``). "off": no exporter, no
scrapes, snapshots every hour. The compiled counters and sliding-window histograms are recorded
either way: they are part of the engine (one ``record_many`` per batch and histogram).
Trials alternate on/off; medians and min..max over the repeats.
"""
from __future__ import annotations

import statistics
import threading
import urllib.request

from tallyio.bench import kpi

ON = {"monitoring": {"enabled": True, "port": 0, "interval": 1.0}}
OFF = {"monitoring": {"enabled": False, "interval": 3600.0}}


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
    return {"throughput_tps": sat["throughput_tps"], "p99": lat["p99"], "scrapes": scraper.scrapes}


def run_overhead(repeats: int = 3, seconds: float = 3.0, n: int = 500_000) -> dict:
    out = {"on": [], "off": []}
    for _ in range(repeats):
        out["on"].append(trial(ON, seconds, n))
        out["off"].append(trial(OFF, seconds, n))
    return out


def format_overhead(d: dict) -> str:
    def med(arm, key):
        vals = [r[key] for r in d[arm]]
        return statistics.median(vals), min(vals), max(vals)

    lines = [f"monitoring on vs off, {len(d['on'])} alternating trial(s) each (median, min..max)"]
    for arm in ("on", "off"):
        t, p = med(arm, "throughput_tps"), med(arm, "p99")
        scrapes = sum(r["scrapes"] for r in d[arm])
        lines.append(f"  {arm:<4} saturation {t[0]:>10,.0f} tx/s ({t[1]:,.0f}..{t[2]:,.0f})   "
                     f"P99 @100k/s {p[0] / 1000:>8,.1f} us ({p[1] / 1000:,.1f}..{p[2] / 1000:,.1f})"
                     f"   scrapes {scrapes}")
    t_on, t_off = med("on", "throughput_tps")[0], med("off", "throughput_tps")[0]
    p_on, p_off = med("on", "p99")[0], med("off", "p99")[0]
    lines.append(f"  throughput cost of monitoring: {100 * (1 - t_on / t_off):+.2f}% "
                 f"(on/off {t_on / t_off:.4f}); P99 on/off {p_on / max(p_off, 1):.2f}x")
    return "\n".join(lines)
