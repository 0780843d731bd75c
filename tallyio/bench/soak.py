"""Soak: the engine with the example strategies at a steady open-loop load for minutes, sampling
RSS, to show memory stays flat (bounded opportunity buffer, no per-batch leak).

``tallyio bench soak [--minutes M] [--json FILE]`` (not in CI: it takes minutes). The verdict
compares the RSS at the end with the RSS after warm-up (the first 10% of the run, at least 30 s
when the run is long enough): flat means within 5%.
"""
from __future__ import annotations

import os
import threading
import time

BASE_RATE = 100_000
FLAT = 0.05


def run_soak(minutes: float = 10.0, load_factor: float = 1.0, every: float = 1.0,
             names=None) -> dict:
    """Offer the KPI feed (cycled, each pass with new hashes) at ``load_factor`` x 100k tx/s for
    ``minutes`` and sample RSS every ``every`` seconds; the summary dict."""
    import numpy as np
    import psutil

    from tallyio._core.clock import now_ns
    from tallyio.bench.kpi import workload
    from tallyio.engine import Engine
    from tallyio.plugins import get_plugin_manager

    if not minutes > 0:
        raise ValueError(f"minutes must be > 0, got {minutes!r}")
    records, meta = workload(600_000)
    cfg = {"plugins": {"processors": list(names) if names else []}}
    eng = Engine(cfg, plugin_manager=get_plugin_manager())
    eng.start(None)
    for slot in eng.slots:
        on_feed = getattr(slot.proc, "on_feed", None)
        if on_feed is not None:
            on_feed(meta)
    rate = load_factor * BASE_RATE
    total = int(rate * minutes * 60)
    pacer = eng.pacer(rate=rate, t0_ns=now_ns() + 1_000_000)
    proc = psutil.Process()
    samples: list[tuple[float, int]] = []

    chunk = 4096  # small copies: no RSS swings, and no copy long enough to make rows late

    def produce():
        done = 0
        while done < total and not pacer.stopped:
            i = done % len(records)
            rows = records[i:i + min(chunk, total - done, len(records) - i)].copy()
            # each pass over the feed is new traffic: vary the hash so dedup does not drop it
            lap = np.uint64(done // len(records))
            rows["tx_hash"][:, 24:] ^= np.frombuffer(lap.tobytes(), np.uint8)
            done += pacer.run(rows)

    gen = threading.Thread(target=produce, name="soak-producer")
    start = time.monotonic()
    gen.start()
    while gen.is_alive():
        samples.append((round(time.monotonic() - start, 2), proc.memory_info().rss))
        gen.join(every)
    eng.wait(120)
    report = eng.stop()
    samples.append((round(time.monotonic() - start, 2), proc.memory_info().rss))
    warm_s = min(max(30.0, 0.1 * minutes * 60), 0.5 * minutes * 60)
    warm = next((r for t, r in samples if t >= warm_s), samples[-1][1])
    end = samples[-1][1]
    growth = (end - warm) / warm if warm else 0.0
    return {
        "minutes": minutes, "load_factor": load_factor, "offered": total,
        "decided": report.decided, "undecided": report.undecided,
        "opportunities_total": report.opportunities_total,
        "rss_after_warmup_bytes": warm, "rss_end_bytes": end, "rss_growth": growth,
        "flat": abs(growth) <= FLAT, "samples": samples, "pid": os.getpid(),
        "latency_ns": report.latency_ns,
    }


def format_soak(r: dict) -> str:
    mib = 2 ** 20
    return (f"soak {r['minutes']} min at {r['load_factor'] * BASE_RATE:,.0f} tx/s: decided "
            f"{r['decided']:,} of {r['offered']:,} (undecided {r['undecided'] or 'none'}), "
            f"opportunities {r['opportunities_total']:,}\n"
            f"RSS after warm-up {r['rss_after_warmup_bytes'] / mib:,.1f} MiB, at the end "
            f"{r['rss_end_bytes'] / mib:,.1f} MiB: {r['rss_growth']:+.1%} "
            f"({'flat' if r['flat'] else 'NOT flat'}, limit {FLAT:.0%})\n"
            f"latency p50 {r['latency_ns']['p50'] / 1e3:,.1f} us, p99 "
            f"{r['latency_ns']['p99'] / 1e3:,.1f} us")
