"""The engine's report: latency percentiles end to end, per stage and per processor, throughput,
memory, every refusal by reason, and the opportunities found."""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

PCTS = (("p50", 50), ("p95", 95), ("p99", 99), ("p999", 99.9))


def hist_summary(h) -> dict[str, int]:
    """``{count, p50, p95, p99, p999, max}`` in ns from a LatencyHistogram."""
    d = {name: h.percentile(q) for name, q in PCTS}
    d["max"] = h.max
    d["count"] = h.count
    return d


def peak_rss_bytes() -> int:
    """This process's peak resident set size, in bytes: ``VmHWM`` of /proc/self/status, the
    high-water mark of its own memory since it started. (``getrusage``'s ``ru_maxrss`` carries the
    parent's over fork and exec on Linux: ``tallyio run`` started by a 500 MiB benchmark process
    would report 500 MiB.) ``ru_maxrss`` where /proc has no such line."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _us(ns: float) -> str:
    return f"{ns / 1000:,.1f}"


@dataclass
class Report:
    latency_ns: dict[str, int]
    stages: dict[str, dict[str, int]]
    processors: dict[str, dict[str, Any]]
    throughput_tps: float
    processed: int
    ingested: int
    batches: int
    mean_batch: float
    rejected: dict[str, int]
    peak_rss_bytes: int
    opportunities: list = field(default_factory=list)
    duration_s: float = 0.0
    ingest_waits: int = 0
    sink_errors: int = 0
    # rows every processor decided: the latency percentiles and the throughput count only these
    decided: int = 0
    # rows not decided, by reason (expired, ring_full, breaker_open:NAME, error:NAME, ...)
    undecided: dict[str, int] = field(default_factory=dict)
    mode: str = "live"
    engine_error: str | None = None
    source_error: str | None = None
    # every opportunity found; ``opportunities`` holds the latest (engine keep_opportunities)
    opportunities_total: int = 0
    opportunities_by_kind: dict[str, int] = field(default_factory=dict)
    # a feed that carries its planted opportunities: how many the run found (TruthTally.summary)
    planted: dict[str, Any] | None = None
    # a live source's refreshed pool reserves: applied to the pool book, or why not
    reserve_updates: dict[str, int] = field(default_factory=dict)

    @property
    def complete(self) -> bool:
        """Every row offered was decided by every processor."""
        return not self.undecided and self.engine_error is None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["opportunities"] = [o.to_dict() for o in self.opportunities]
        return d

    def to_json(self, path=None, **kw) -> str:
        text = json.dumps(self.to_dict(), indent=2, default=str, **kw)
        if path is not None:
            with open(path, "w", encoding="utf-8") as f:
                f.write(text + "\n")
        return text

    def format(self, max_opportunities: int = 20) -> str:
        """A human-readable report (microseconds)."""
        lines = []
        hdr = f"{'':<24}{'count':>10}{'p50 us':>10}{'p95 us':>10}{'p99 us':>10}{'p99.9 us':>10}{'max us':>10}"

        def row(name, s):
            return (f"{name:<24}{s['count']:>10,}{_us(s['p50']):>10}{_us(s['p95']):>10}"
                    f"{_us(s['p99']):>10}{_us(s['p999']):>10}{_us(s['max']):>10}")

        lines += ["latency", hdr, row("end to end", self.latency_ns)]
        for name, s in self.stages.items():
            lines.append(row("  " + name.replace("_", " "), s))
        lines.append("")
        lines.append("processors (per batch)")
        lines.append(hdr + f"{'errors':>8}{'skipped':>9}{'found':>7}  breaker")
        for name, s in self.processors.items():
            lines.append(row(name, s) + f"{s['errors']:>8}{s['skipped_rows']:>9}"
                         f"{s['opportunities']:>7}  {s['breaker_state']}")
        lines.append("")
        lines.append(f"processed      {self.processed:,} of {self.ingested:,} ingested, "
                     f"{self.batches:,} batches (mean {self.mean_batch:.1f} rows); mode {self.mode}")
        und = ", ".join(f"{k}={v:,}" for k, v in sorted(self.undecided.items())) or "none"
        lines.append(f"decided        {self.decided:,} by every processor (latency counts only "
                     f"these); undecided: {und}")
        if self.engine_error:
            lines.append(f"ENGINE ERROR   {self.engine_error}")
        if self.source_error:
            lines.append(f"source error   {self.source_error}")
        lines.append(f"throughput     {self.throughput_tps:,.0f} tx/s over {self.duration_s:.3f} s")
        lines.append(f"peak RSS       {self.peak_rss_bytes / 2**20:,.1f} MiB")
        rej = ", ".join(f"{k}={v:,}" for k, v in sorted(self.rejected.items())) or "none"
        lines.append(f"rejected       {rej}")
        if self.reserve_updates:
            lines.append("reserves       " + ", ".join(
                f"{k}={v:,}" for k, v in sorted(self.reserve_updates.items()))
                + " (a live source's refreshed pool reserves)")
        lines.append("")
        total = max(self.opportunities_total, len(self.opportunities))
        lines.append(f"opportunities  {total}")
        by_kind = self.opportunities_by_kind
        if not by_kind:
            for o in self.opportunities:
                key = f"{o.strategy}/{o.kind}"
                by_kind[key] = by_kind.get(key, 0) + 1
        for key, n in sorted(by_kind.items()):
            lines.append(f"  {key}: {n}")
        if self.planted is not None:
            p = self.planted
            kinds = ", ".join(f"{k} {v['found']}/{v['planted']}" for k, v in p["by_kind"].items())
            lines.append(f"planted        found {p['found']} of the feed's {p['planted']} ({kinds}); "
                         f"missed {len(p['missed'])}")
            lines += [f"  missed: {m}" for m in p["missed"][:max_opportunities]]
        for o in self.opportunities[:max_opportunities]:
            lines.append(f"  - {o.strategy} {o.kind} block={o.block} profit={o.profit} "
                         f"token={o.profit_token[:10]}.. pools={','.join(p[:10] + '..' for p in o.pools)}")
        if total > max_opportunities:
            lines.append(f"  ... {total - max_opportunities} more (--json and the sinks have "
                         f"{'all' if total == len(self.opportunities) else 'the latest ' + str(len(self.opportunities))})")
        return "\n".join(lines)
