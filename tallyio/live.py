"""``tallyio run``'s live view: a refreshing table on a terminal, plain log lines otherwise."""
from __future__ import annotations


def _us(ns) -> str:
    return f"{ns / 1000:,.1f}"


def plain_line(m: dict) -> str:
    """One progress line from an ``Engine.metrics()`` snapshot."""
    w = m["latency_ns"]["end_to_end"]["window"]
    breakers = " ".join(f"{n}={p['breaker_state']}" for n, p in m["processors"].items())
    rej = sum(m["rejected"].values())
    return (f"[tallyio] {m['uptime_s']:7.1f}s processed={m['processed']:,} "
            f"rate={m['throughput_tps']:,.0f}/s p50={_us(w['p50'])}us p99={_us(w['p99'])}us "
            f"queue={m['queue_depth']:,} rejected={rej:,} rss={m['process']['rss_bytes'] / 2**20:,.0f}MiB "
            f"cpu={m['process']['cpu_percent']:.0f}% breakers: {breakers or 'none'}")


def table(m: dict):
    """A rich renderable of the snapshot (rich is imported only when a terminal asks for it)."""
    from rich.console import Group
    from rich.table import Table

    head = Table(title=f"TallyIO — {m['state']} for {m['uptime_s']:.1f} s", expand=False)
    for col in ("processed", "rate /s", "queue", "rejected", "RSS MiB", "CPU %"):
        head.add_column(col, justify="right")
    head.add_row(f"{m['processed']:,}", f"{m['throughput_tps']:,.0f}",
                 f"{m['queue_depth']:,} / {m['queue_capacity']:,}",
                 ", ".join(f"{k}={v:,}" for k, v in m["rejected"].items()) or "0",
                 f"{m['process']['rss_bytes'] / 2**20:,.0f}", f"{m['process']['cpu_percent']:.0f}")

    lat = Table(title="latency, last window (µs)")
    for col in ("stage", "p50", "p95", "p99", "p99.9", "max"):
        lat.add_column(col, justify="right" if col != "stage" else "left")
    for stage, d in m["latency_ns"].items():
        w = d["window"]
        lat.add_row(stage.replace("_", " "), _us(w["p50"]), _us(w["p95"]), _us(w["p99"]),
                    _us(w["p999"]), _us(w["max"]))

    procs = Table(title="processors")
    for col in ("name", "breaker", "batches", "errors", "skipped", "found", "p99 µs"):
        procs.add_column(col, justify="right" if col not in ("name", "breaker") else "left")
    for name, p in m["processors"].items():
        style = {"open": "red", "half_open": "yellow", "forced_open": "red"}.get(p["breaker_state"])
        procs.add_row(name, f"[{style}]{p['breaker_state']}[/]" if style else p["breaker_state"],
                      f"{p['batches']:,}", f"{p['errors']:,}", f"{p['skipped_rows']:,}",
                      f"{p['opportunities']:,}", _us(p["latency_ns"]["p99"]))

    threads = Table(title="threads")
    for col in ("thread", "CPU %", "CPU s"):
        threads.add_column(col, justify="right" if col != "thread" else "left")
    for name, t in m["threads"].items():
        threads.add_row(name, f"{t['cpu_percent']:.0f}", f"{t['cpu_seconds']:.2f}")
    return Group(head, lat, procs, threads)


class LiveView:
    """Context manager: ``update(engine)`` refreshes the table (terminal) or prints a line."""

    def __init__(self, terminal: bool, stream):
        self.stream = stream
        self.live = None
        if terminal:
            try:
                from rich.console import Console
                from rich.live import Live
            except ImportError:  # rich is optional: fall back to lines
                terminal = False
            else:
                self.live = Live(console=Console(file=stream), auto_refresh=False, transient=False)
        self.terminal = terminal

    def __enter__(self):
        if self.live is not None:
            self.live.__enter__()
        return self

    def __exit__(self, *exc):
        if self.live is not None:
            self.live.__exit__(*exc)
        return False

    def update(self, engine) -> None:
        m = engine.collector.latest if engine.collector and engine.collector.latest else engine.metrics()
        if self.live is not None:
            self.live.update(table(m), refresh=True)
        else:
            print(plain_line(m), file=self.stream, flush=True)
