"""Live metrics: sliding-window latency, throughput, queue depth, refusals, breakers, CPU and RSS.

The engine records into compiled histograms once per batch; nothing here runs per item. A
``MetricsCollector`` thread of the engine rotates the sliding windows, samples per-thread CPU, and
on every ``interval`` builds a snapshot (``Engine.metrics()``), hands it to the plugins'
``metrics_collected`` observers and keeps it for the Prometheus exporter.
"""
from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque

import numpy as np

from tallyio._core.hist import LatencyHistogram
from tallyio.report import hist_summary

log = logging.getLogger(__name__)

# Prometheus bucket bounds for latencies, seconds: 1-2-5 steps from 1 us to 10 s.
LATENCY_BOUNDS_S = tuple(round(m * 10.0**e, 9) for e in range(-6, 1) for m in (1, 2, 5)) + (10.0,)
BATCH_SIZE_BOUNDS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096)


class WindowedHistogram:
    """A latency histogram over the last ``window`` seconds, in ``slots`` rotating parts.

    Writers record into ``current``; ``rotate()`` (the collector, every window/slots seconds)
    clears the oldest part *before* making it current, so a writer that still holds the previous
    part only adds to data that is inside the window anyway.
    """

    def __init__(self, window: float = 10.0, slots: int = 10):
        if window <= 0:
            raise ValueError(f"window must be > 0 seconds, got {window}")
        if slots < 2:
            raise ValueError(f"slots must be >= 2, got {slots}")
        self.window = window
        self.parts = [LatencyHistogram() for _ in range(slots)]
        self._i = 0
        self.current = self.parts[0]

    @property
    def step(self) -> float:
        return self.window / len(self.parts)

    def rotate(self) -> None:
        nxt = (self._i + 1) % len(self.parts)
        self.parts[nxt].reset()
        self.current = self.parts[nxt]
        self._i = nxt

    def merged(self) -> LatencyHistogram:
        h = LatencyHistogram()
        for p in self.parts:
            h.merge(p)
        return h


def cumulative_buckets(hist: LatencyHistogram, bounds, scale: float = 1.0):
    """``[(bound, cumulative count)]`` at ``bounds`` (+Inf last) from a histogram's buckets.

    Each of our buckets is counted under the first bound >= its upper value, so a Prometheus
    bucket may hold values up to 1/128 above its bound (the histogram's stated precision).
    """
    upper, counts = hist.buckets()
    edges = np.asarray(bounds, dtype=np.float64) / scale
    idx = np.searchsorted(edges, upper.astype(np.float64), side="left")
    per = np.bincount(idx, weights=counts.astype(np.float64), minlength=len(edges) + 1)
    cum = np.cumsum(per)
    out = [(str(b), float(cum[i])) for i, b in enumerate(bounds)]
    out.append(("+Inf", float(cum[-1])))
    return out


class ThreadCPU:
    """CPU utilization per thread of this process, from /proc/self/task (psutil's view)."""

    def __init__(self):
        import psutil
        self._proc = psutil.Process()
        self._last: dict[int, tuple[float, float]] = {}

    def sample(self, names: dict[int, str]) -> dict[str, dict]:
        now = time.monotonic()
        out = {}
        for t in self._proc.threads():
            if t.id not in names:
                continue
            cpu = t.user_time + t.system_time
            prev = self._last.get(t.id)
            self._last[t.id] = (now, cpu)
            pct = 100.0 * (cpu - prev[1]) / (now - prev[0]) if prev and now > prev[0] else 0.0
            out[names[t.id]] = {"native_id": t.id, "cpu_percent": round(pct, 1),
                                "cpu_seconds": round(cpu, 3)}
        return out

    def rss(self) -> int:
        return self._proc.memory_info().rss

    def cpu_percent(self) -> float:
        return self._proc.cpu_percent(None)


class MetricsCollector:
    """The engine's metrics thread: rotates windows, samples CPU, publishes snapshots."""

    def __init__(self, engine, interval: float, window: float):
        self.engine = engine
        self.interval = interval
        self.window = window
        self.cpu = ThreadCPU()
        self.cpu.cpu_percent()  # psutil's first call primes the delta
        self.rates: deque = deque()
        self.latest: dict | None = None
        self.errors = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="tallyio-metrics", daemon=True)

    def start(self):
        self._thread.start()

    def stop(self):
        self._stop.set()
        self._thread.join()

    def throughput(self, processed: int) -> float:
        """Rows per second over the window, from (time, processed) samples."""
        now = time.monotonic()
        self.rates.append((now, processed))
        while len(self.rates) > 2 and now - self.rates[0][0] > self.window:
            self.rates.popleft()
        t0, p0 = self.rates[0]
        return (processed - p0) / (now - t0) if now > t0 else 0.0

    def _loop(self):
        eng = self.engine
        step = eng.e2e_window.step
        next_rotate = time.monotonic() + step
        next_publish = time.monotonic() + self.interval
        while not self._stop.wait(max(0.0, min(next_rotate, next_publish) - time.monotonic())):
            now = time.monotonic()
            if now >= next_rotate:
                for w in eng.windows():
                    w.rotate()
                next_rotate += step
            if now >= next_publish:
                next_publish += self.interval
                try:
                    self.latest = eng.metrics()
                    eng._fire("metrics_collected", metrics=self.latest)
                except Exception:
                    self.errors += 1
                    log.exception("metrics collection failed")


def snapshot(engine) -> dict:
    """The metrics dict of a running (or stopped) engine; see docs/monitoring.md."""
    col = engine.collector
    names = {t.native_id: t.name for t in engine.threads() if t.native_id is not None}
    procs = {s.name: dict(s.counts(), transitions=dict(s.transitions),
                          latency_ns=hist_summary(s.hist)) for s in engine.slots}
    latency = {name: {"total": hist_summary(total), "window": hist_summary(win.merged())}
               for name, (total, win) in engine.stage_histograms().items()}
    drain = engine.drain.stats()
    out = {
        "time": time.time(),
        "uptime_s": (time.monotonic_ns() - engine._t0) / 1e9,
        "state": engine._state,
        "ingested": engine.ingested + engine.pushed,
        "processed": engine.processed,
        "throughput_tps": col.throughput(engine.processed) if col else 0.0,
        "queue_depth": len(engine.ring),
        "queue_capacity": engine.ring.capacity,
        "rejected": engine.rejected_by_reason(),
        "decided": engine.decided,
        "undecided": engine.undecided_by_reason(),
        "mode": getattr(engine, "mode", "live"),
        "latency_ns": latency,
        "batches": engine.batches,
        "batch_size": {"mean": drain["rows"] / drain["batches"] if drain["batches"] else 0.0,
                       "full": drain["full_batches"], "timeout": drain["timeout_batches"]},
        "processors": procs,
        "process": {"rss_bytes": col.cpu.rss() if col else 0,
                    "cpu_percent": col.cpu.cpu_percent() if col else 0.0,
                    "pid": os.getpid()},
        "threads": col.cpu.sample(names) if col else {},
        "optimizations": engine.switches,
        "pool": engine.pool_stats(),
    }
    return out


class PrometheusExporter:
    """Serves ``engine.metrics()`` in the Prometheus text format (prometheus_client)."""

    def __init__(self, engine, address: str, port: int):
        try:
            from prometheus_client import CollectorRegistry, start_http_server
        except ImportError:
            raise RuntimeError("[monitoring] enabled needs prometheus_client "
                               "(pip install 'tallyio[monitoring]')") from None
        self.engine = engine
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self)
        self.server, self.thread = start_http_server(port, address, registry=self.registry)
        self.address, self.port = self.server.server_address[:2]

    def close(self):
        self.server.shutdown()
        self.server.server_close()

    def collect(self):
        from prometheus_client.core import (CounterMetricFamily, GaugeMetricFamily,
                                            HistogramMetricFamily)
        eng = self.engine
        m = eng.metrics()
        yield CounterMetricFamily("tallyio_ingested", "Rows accepted into the ring", value=m["ingested"])
        yield CounterMetricFamily("tallyio_processed", "Rows run through the processors",
                                  value=m["processed"])
        rej = CounterMetricFamily("tallyio_rejected", "Rows refused, by reason", labels=["reason"])
        for reason, n in sorted(m["rejected"].items()):
            rej.add_metric([reason], n)
        yield rej
        yield CounterMetricFamily("tallyio_decided", "Rows every processor decided (the rows "
                                  "latency is measured over)", value=m["decided"])
        und = CounterMetricFamily("tallyio_undecided", "Rows not decided by every processor, by "
                                  "reason", labels=["reason"])
        for reason, n in sorted(m["undecided"].items()):
            und.add_metric([reason], n)
        yield und
        yield GaugeMetricFamily("tallyio_queue_depth", "Rows waiting in the ring", value=m["queue_depth"])
        yield GaugeMetricFamily("tallyio_queue_capacity", "Ring capacity", value=m["queue_capacity"])
        yield GaugeMetricFamily("tallyio_throughput_rows_per_second",
                                "Processed rows per second over the sliding window",
                                value=m["throughput_tps"])
        yield CounterMetricFamily("tallyio_batches", "Batches processed", value=m["batches"])
        lat = HistogramMetricFamily("tallyio_latency_seconds",
                                    "Latency since start, by stage", labels=["stage"])
        win = GaugeMetricFamily("tallyio_latency_window_seconds",
                                "Latency percentile over the sliding window, by stage",
                                labels=["stage", "quantile"])
        for stage, (total, window) in eng.stage_histograms().items():
            lat.add_metric([stage], cumulative_buckets(total, LATENCY_BOUNDS_S, 1e-9),
                           total.mean * total.count / 1e9)
            w = window.merged()
            for q in (0.5, 0.95, 0.99, 0.999):
                win.add_metric([stage, str(q)], w.percentile(q * 100) / 1e9)
        yield lat
        yield win
        bs = HistogramMetricFamily("tallyio_batch_size", "Rows per processed batch")
        bs.add_metric([], cumulative_buckets(eng.batch_sizes, BATCH_SIZE_BOUNDS),
                      eng.batch_sizes.mean * eng.batch_sizes.count)
        yield bs
        plat = HistogramMetricFamily("tallyio_processor_latency_seconds",
                                     "Time a processor spends on one batch", labels=["processor"])
        perr = CounterMetricFamily("tallyio_processor_errors", "Batches a processor raised on",
                                   labels=["processor"])
        pskip = CounterMetricFamily("tallyio_processor_skipped_rows",
                                    "Rows a processor skipped because its breaker was open",
                                    labels=["processor"])
        state = GaugeMetricFamily("tallyio_breaker_state", "1 for the breaker's current state",
                                  labels=["processor", "state"])
        trans = CounterMetricFamily("tallyio_breaker_transitions",
                                    "Breaker transitions, by state entered", labels=["processor", "to"])
        for s in eng.slots:
            plat.add_metric([s.name], cumulative_buckets(s.hist, LATENCY_BOUNDS_S, 1e-9),
                            s.hist.mean * s.hist.count / 1e9)
            perr.add_metric([s.name], s.errors)
            pskip.add_metric([s.name], s.skipped_rows)
            cur = m["processors"][s.name]["breaker_state"]
            for st in ("closed", "open", "half_open", "forced_open", "disabled"):
                state.add_metric([s.name, st], 1.0 if st == cur else 0.0)
            for to, n in sorted(s.transitions.items()):
                trans.add_metric([s.name, to], n)
        yield from (plat, perr, pskip, state, trans)
        yield GaugeMetricFamily("tallyio_resident_memory_bytes", "Process RSS",
                                value=m["process"]["rss_bytes"])
        cpu = GaugeMetricFamily("tallyio_thread_cpu_percent", "CPU utilization per engine thread",
                                labels=["thread"])
        for name, t in sorted(m["threads"].items()):
            cpu.add_metric([name], t["cpu_percent"])
        yield cpu
        opt = GaugeMetricFamily("tallyio_optimization_active",
                                "1 when the optimization is live (state: active, inactive, "
                                "no effect, off)", labels=["switch", "mode", "state"])
        for name, s in sorted(m["optimizations"].items()):
            opt.add_metric([name, s["mode"], s.get("state", "active" if s["active"] else "off")],
                           1.0 if s["active"] else 0.0)
        yield opt
        if m["pool"]:
            use = GaugeMetricFamily("tallyio_pool_blocks_in_use", "Memory pool blocks in use",
                                    labels=["size_class"])
            fb = CounterMetricFamily("tallyio_pool_fallbacks",
                                     "Requests served by the system allocator", labels=["size_class"])
            for cls, s in m["pool"].items():
                use.add_metric([cls], s["in_use"])
                fb.add_metric([cls], s["fallbacks"])
            yield use
            yield fb
