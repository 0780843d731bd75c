"""Timing, table printing and the micro results file shared by every peer comparison.

``tallyio bench [AREA ...] --json FILE`` writes :func:`micro_results`: ``schema``,
``kind: "micro"``, ``meta`` (machine and commit from ``kpi.machine_info``, load average and steal
time before and after, as ``tallyio bench --ab`` records them) and, per area, every comparison with
each implementation's trials (ns per op of each timed repeat), their median, min and max, the
reported value (the best trial) and its ratio to TallyIO's. ``python -m tallyio.bench.docs FILE
--docs docs`` renders them into the ``<!-- bench:AREA:begin -->`` blocks of the docs.
"""
from __future__ import annotations

import gc
import importlib
import importlib.util
import math
import statistics
import time
from dataclasses import dataclass, field
from typing import Callable

# What the comparisons time TallyIO against besides the standard library, by import name; the
# [bench] extra installs them all. A missing one is named, never printed as a nan column.
PEERS = {"hdrh": "hdrhistogram", "pybreaker": "pybreaker", "circuitbreaker": "circuitbreaker",
         "cachetools": "cachetools"}
INSTALL_HINT = "pip install 'tallyio[bench]'"
_told_missing = False


def missing_peers() -> list[str]:
    """The peer packages (distribution names) that are not installed here."""
    return [dist for mod, dist in PEERS.items() if importlib.util.find_spec(mod) is None]


class Timing(float):
    """A best-of-repeats ns per op that also carries every repeat's value (``trials``), so a
    results file can show the spread behind the number. Arithmetic on it gives a plain float."""

    trials: list[float]

    def __new__(cls, best: float, trials: list[float]):
        t = super().__new__(cls, best)
        t.trials = list(trials)
        return t


def ns_per_op(fn, ops_per_call: int = 1, *, number: int | None = None, repeat: int = 5,
              min_time: float = 0.05) -> Timing:
    """Best-of-``repeat`` nanoseconds per operation of ``fn()``, which does ``ops_per_call`` ops.

    The minimum is the estimate least disturbed by a noisy machine (timeit's rationale). With
    ``number`` unset, it is calibrated so one repeat lasts at least ``min_time`` seconds. Returns
    a :class:`Timing` (a float) whose ``trials`` are every repeat's ns per op.
    """
    if number is None:
        number = 1
        while True:
            t0 = time.perf_counter_ns()
            for _ in range(number):
                fn()
            if time.perf_counter_ns() - t0 >= min_time * 1e9:
                break
            number *= 4
    trials = []
    gc_was = gc.isenabled()
    gc.disable()
    try:
        for _ in range(repeat):
            t0 = time.perf_counter_ns()
            for _ in range(number):
                fn()
            trials.append((time.perf_counter_ns() - t0) / (number * ops_per_call))
    finally:
        if gc_was:
            gc.enable()
    return Timing(min(trials), trials)


@dataclass
class Comparison:
    """One operation timed through TallyIO (``subject``) and through its peers."""

    operation: str
    subject: tuple[str, float]  # (name, ns per op)
    peers: list[tuple[str, float]] = field(default_factory=list)
    unit: str = "op"

    def rows(self):
        name, ns = self.subject
        yield self.operation, name, ns, 1.0, self.unit
        for peer, pns in self.peers:
            yield self.operation, peer, pns, pns / ns if ns else float("nan"), self.unit


def format_table(comparisons: list[Comparison]) -> str:
    """Fixed-width table; ratio = peer ns / TallyIO ns (above 1: TallyIO is faster). A peer
    that could not run (ns is nan: its package is missing) says so; the first table printed
    names every missing peer package and how to install them."""
    global _told_missing
    lines = [f"{'operation':<46} {'implementation':<40} {'ns/op':>11} {'peer/tallyio':>12}",
             "-" * 112]
    for c in comparisons:
        for op, impl, ns, ratio, unit in c.rows():
            label = op if impl == c.subject[0] else ""
            if math.isnan(ns):
                lines.append(f"{label:<46} {impl:<40} {'not installed':>13}  ({INSTALL_HINT})")
                continue
            lines.append(f"{label:<46} {impl:<40} {ns:>11.1f} {ratio:>11.2f}x"
                         + (f"  (per {unit})" if unit != "op" and impl == c.subject[0] else ""))
        lines.append("")
    missing = missing_peers()
    if missing and not _told_missing:
        _told_missing = True
        lines.append(f"not installed, so not compared: {', '.join(missing)} ({INSTALL_HINT})")
        lines.append("")
    return "\n".join(lines)


# ---- the micro results file ---------------------------------------------------------------------

def _impl(name: str, ns: float, ref: float) -> dict:
    """One implementation's entry: the reported value, its trials and their spread, the ratio."""
    missing = math.isnan(ns)
    trials = list(getattr(ns, "trials", None) or ([] if missing else [float(ns)]))
    d = {"implementation": name, "ns": None if missing else float(ns),
         "trials": trials, "trials_recorded": hasattr(ns, "trials"),
         "median": statistics.median(trials) if trials else None,
         "min": min(trials) if trials else None, "max": max(trials) if trials else None,
         "ratio": None if missing or not ref or math.isnan(ref) else float(ns) / float(ref)}
    if missing:
        d["not_installed"] = True
    return d


def comparison_dict(c: Comparison) -> dict:
    """A :class:`Comparison` as the results file holds it; ``ratio`` is peer / TallyIO of the
    reported (best) values, 1.0 for TallyIO itself."""
    ref = c.subject[1]
    return {"operation": c.operation, "unit": c.unit,
            "subject": _impl(c.subject[0], c.subject[1], ref),
            "peers": [_impl(n, v, ref) for n, v in c.peers]}


def micro_results(areas, quick: bool = False, *,
                  on_area: Callable[[str, list], None] | None = None,
                  load=None, stat_path: str = "/proc/stat", runner=None) -> dict:
    """Run the micro ``areas`` (names from ``tallyio.bench.AREAS``) and return the results dict
    described in the module docstring. ``on_area(area, comparisons)`` is called after each area
    (the CLI prints its table there); ``runner(area, quick)`` replaces the area's ``run`` (tests)."""
    from datetime import datetime, timezone

    from tallyio.bench.ab import (DEFAULT_MAX_LOAD, cpu_times, loadavg, noise, others_fraction,
                                  own_cpu_s, steal_fraction)
    from tallyio.bench.kpi import machine_info
    load = load or loadavg
    runner = runner or (lambda area, q: importlib.import_module(f"tallyio.bench.{area}").run(quick=q))
    cpu0 = cpu_times(stat_path)
    meta = {"started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "machine": machine_info(), "loadavg_before": load(), "cpu_times_before": cpu0,
            "own_cpu_s_before": own_cpu_s(), "quick": quick, "statistic": "best (minimum) of each implementation's trials",
            "ratio": "peer ns / tallyio ns (above 1: TallyIO is faster)",
            "missing_peers": missing_peers()}
    out: dict = {"schema": 1, "kind": "micro", "meta": meta, "areas": {}}
    for area in areas:
        t0 = time.time()
        la = load()
        comparisons = runner(area, quick)
        out["areas"][area] = {"loadavg_before": la, "wall_s": round(time.time() - t0, 3),
                              "comparisons": [comparison_dict(c) for c in comparisons]}
        if on_area is not None:
            on_area(area, comparisons)
    cpu1 = cpu_times(stat_path)
    meta.update(finished=datetime.now(timezone.utc).isoformat(timespec="seconds"),
                loadavg_after=load(), cpu_times_after=cpu1, own_cpu_s_after=own_cpu_s(),
                steal_fraction=steal_fraction(cpu0, cpu1))
    meta["others_fraction"] = others_fraction(meta)
    meta["noise"] = noise(meta, DEFAULT_MAX_LOAD)
    meta["noisy"] = bool(meta["noise"])
    return out
