"""Timing and table printing shared by every peer comparison."""
from __future__ import annotations

import gc
import importlib.util
import math
import time
from dataclasses import dataclass, field

# What the comparisons time TallyIO against besides the standard library, by import name; the
# [bench] extra installs them all. A missing one is named, never printed as a nan column.
PEERS = {"hdrh": "hdrhistogram", "pybreaker": "pybreaker", "circuitbreaker": "circuitbreaker",
         "cachetools": "cachetools"}
INSTALL_HINT = "pip install 'tallyio[bench]'"
_told_missing = False


def missing_peers() -> list[str]:
    """The peer packages (distribution names) that are not installed here."""
    return [dist for mod, dist in PEERS.items() if importlib.util.find_spec(mod) is None]


def ns_per_op(fn, ops_per_call: int = 1, *, number: int | None = None, repeat: int = 5,
              min_time: float = 0.05) -> float:
    """Best-of-``repeat`` nanoseconds per operation of ``fn()``, which does ``ops_per_call`` ops.

    The minimum is the estimate least disturbed by a noisy machine (timeit's rationale). With
    ``number`` unset, it is calibrated so one repeat lasts at least ``min_time`` seconds.
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
    best = float("inf")
    gc_was = gc.isenabled()
    gc.disable()
    try:
        for _ in range(repeat):
            t0 = time.perf_counter_ns()
            for _ in range(number):
                fn()
            best = min(best, (time.perf_counter_ns() - t0) / (number * ops_per_call))
    finally:
        if gc_was:
            gc.enable()
    return best


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
