"""Monitoring: metrics snapshot, sliding windows, Prometheus scrape over loopback, live view."""
import io
import threading
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from engine_helpers import rows
from tallyio import Engine, LatencyHistogram, TallyIOError
from tallyio.live import LiveView, plain_line, table
from tallyio.metrics import WindowedHistogram, cumulative_buckets

BASE = {"batching": {"batch_size": 64, "max_age": 3600.0}, "optimizations": {"circuit_breaker": "off"}}


def test_windowed_histogram_forgets_old_parts():
    w = WindowedHistogram(window=1.0, slots=4)
    w.current.record(100)
    assert w.merged().count == 1
    for _ in range(3):
        w.rotate()
        w.current.record(200)
    assert w.merged().count == 4
    w.rotate()  # the part holding 100 is cleared and reused
    assert w.merged().count == 3 and w.merged().min == 200
    with pytest.raises(ValueError, match="slots must be >= 2, got 1"):
        WindowedHistogram(1.0, 1)
    with pytest.raises(ValueError, match="window must be > 0 seconds, got 0"):
        WindowedHistogram(0)


def test_cumulative_buckets():
    h = LatencyHistogram()
    h.record_many([500, 1500, 1500, 10**9])
    b = dict(cumulative_buckets(h, (1e-6, 2e-6, 1e-3), 1e-9))
    assert b == {"1e-06": 1.0, "2e-06": 3.0, "0.001": 3.0, "+Inf": 4.0}


def test_metrics_snapshot_and_observer(make_pm):
    pm, rec = make_pm()
    seen = []
    ready = threading.Event()

    class Observer:
        @staticmethod
        def metrics_collected(metrics):
            seen.append(metrics)
            ready.set()

    from tallyio.hookspecs import hookimpl
    Observer.metrics_collected = hookimpl(Observer.metrics_collected)
    pm.register(Observer, "observer")
    cfg = dict(BASE, monitoring={"interval": 0.05})
    eng = Engine(cfg, plugin_manager=pm)
    with pytest.raises(TallyIOError, match="has not started"):
        eng.metrics()
    eng.start()
    for i in range(10):
        eng.push(rows(500, i * 500))
    assert ready.wait(30), "the observer hook was never called"
    assert eng.wait(30)
    live = eng.metrics()
    assert "tallyio-engine" in live["threads"] and "tallyio-metrics" in live["threads"]
    report = eng.stop()
    m = eng.metrics()
    assert m["processed"] == m["ingested"] == 5_000 == report.processed
    assert m["latency_ns"]["end_to_end"]["total"]["count"] == 5_000
    assert m["processors"]["counting"]["rows"] == 5_000
    assert m["queue_depth"] == 0 and m["queue_capacity"] == 1 << 16
    assert m["process"]["rss_bytes"] > 0 and m["state"] == "stopped"
    assert set(seen[0]) == set(m)


def test_prometheus_scrape_over_loopback(make_pm):
    pm, rec = make_pm()
    cfg = dict(BASE, monitoring={"enabled": True, "port": 0})
    eng = Engine(cfg, plugin_manager=pm).start()
    try:
        assert eng.exporter.address == "127.0.0.1"  # loopback unless configured otherwise
        for i in range(4):
            eng.push(rows(250, i * 250))
        assert eng.wait(30)
        text = urllib.request.urlopen(
            f"http://127.0.0.1:{eng.exporter.port}/metrics", timeout=30).read().decode()
    finally:
        eng.stop()
    fams = {f.name: f for f in text_string_to_metric_families(text)}
    assert fams["tallyio_processed"].samples[0].value == 1_000
    assert fams["tallyio_ingested"].samples[0].value == 1_000
    lat = [s for s in fams["tallyio_latency_seconds"].samples
           if s.labels.get("stage") == "end_to_end" and s.name.endswith("_count")]
    assert lat[0].value == 1_000
    buckets = [s for s in fams["tallyio_latency_seconds"].samples
               if s.name.endswith("_bucket") and s.labels["stage"] == "end_to_end"]
    assert buckets[-1].labels["le"] == "+Inf" and buckets[-1].value == 1_000
    assert [b.value for b in buckets] == sorted(b.value for b in buckets)  # cumulative
    states = {s.labels["state"]: s.value for s in fams["tallyio_breaker_state"].samples}
    assert states["disabled"] == 1.0 and sum(states.values()) == 1.0
    assert "tallyio_resident_memory_bytes" in fams and "tallyio_thread_cpu_percent" in fams
    assert "tallyio_latency_window_seconds" in fams and "tallyio_batch_size" in fams


def test_monitoring_is_off_by_default(make_pm):
    pm, _ = make_pm()
    eng = Engine(BASE, plugin_manager=pm).start()
    try:
        assert eng.exporter is None
    finally:
        eng.stop()


def test_live_view_renders(make_pm):
    pm, _ = make_pm()
    eng = Engine(BASE, plugin_manager=pm).start()
    eng.push(rows(100))
    assert eng.wait(30)
    m = eng.metrics()
    eng.stop()
    line = plain_line(m)
    assert "processed=100" in line and "counting=disabled" in line
    from rich.console import Console
    buf = io.StringIO()
    Console(file=buf, width=120).print(table(m))
    screen = buf.getvalue()
    assert "latency, last window" in screen and "counting" in screen and "tallyio-engine" in screen
    out = io.StringIO()
    with LiveView(terminal=False, stream=out) as v:
        v.update(eng)
    assert out.getvalue().startswith("[tallyio]")
