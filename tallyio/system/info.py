"""``tallyio info``: the machine, the core plan, and what each optimization switch does here."""
from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import sys
from typing import Callable, Mapping

from tallyio.system import affinity
from tallyio.system._errors import MODES, OptimizationUnavailableError
from tallyio.system.allocator import allocator_status
from tallyio.system.plan import CorePlan, plan_cores
from tallyio.system.priority import DEFAULT_PRIORITY, check_priority, realtime_permission
from tallyio.system.topology import Topology, format_cpulist, read_topology

SWITCHES = ("circuit_breaker", "batching", "cpu_affinity", "realtime_priority", "numa", "memory_pool",
            "prefetch", "simd", "allocator")
SIMD_MODES = MODES + ("scalar", "avx2", "avx512")
# What each SIMD level needs from the CPU (flags as /proc/cpuinfo spells them).
_SIMD_FLAGS = {"scalar": (), "avx2": ("avx2",), "avx512": ("avx512f", "avx512bw")}
# A switch whose mechanism is applied (or would be) but changes nothing here: one NUMA node, one
# CPU, a setting no kernel on the engine's path reads. Not an error even when "on" asks for it,
# except where the machine cannot honour "on" at all (numa, cpu_affinity: see info()).
NO_EFFECT = "no effect"
PREFETCH_REASON = ("sets the default prefetch distance of tallyio.gather and PrefetchingIterator "
                   "(8 rows; 0 when off) for processors that call them; the engine's own hot path "
                   "(drain, dedup, pool book) calls neither")
_SHOWN_FLAGS = ("sse4_2", "avx", "avx2", "fma", "bmi2", "avx512f", "avx512bw", "avx512vl", "avx512_vnni")


def cpu_flags(cpuinfo_path: str = "/proc/cpuinfo") -> frozenset[str]:
    """The first CPU's feature flags; empty where /proc/cpuinfo is missing (not Linux, not x86)."""
    try:
        with open(cpuinfo_path) as f:
            for line in f:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def _module_built(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def _load_simd():
    return importlib.import_module("tallyio.simd")


def _simd(flags: frozenset[str], mode: str, loader: Callable) -> tuple[bool, str]:
    best = "avx512" if all(f in flags for f in _SIMD_FLAGS["avx512"]) else "avx2" if "avx2" in flags else "scalar"
    try:
        simd = loader()
        level = simd.level()
        levels = tuple(simd.available_levels()) if hasattr(simd, "available_levels") else None
    except (ImportError, AttributeError):
        return False, f"simd module not built (CPU supports {best})"
    if mode in _SIMD_FLAGS:
        if levels is not None:
            if mode not in levels:
                return False, f"{mode} asked for, available here: {', '.join(levels)}"
        else:
            missing = [f for f in _SIMD_FLAGS[mode] if f not in flags]
            if missing:
                return False, f"{mode} asked for, CPU lacks {', '.join(missing)}"
        return True, f"level {mode} (forced)"
    if level in ("scalar", "none", "generic", None):
        return False, f"level {level}: CPU has neither AVX2 nor AVX-512"
    note = "" if "512" in str(level) else " (no AVX-512)"
    return True, f"level {level}{note}"


def _check_modes(modes: Mapping[str, str] | None) -> dict[str, str]:
    out = {s: "auto" for s in SWITCHES}
    for k, v in (modes or {}).items():
        if k not in out:
            raise ValueError(f"modes names switch {k!r}, which is not one of {', '.join(SWITCHES)}")
        allowed = SIMD_MODES if k == "simd" else MODES
        if v not in allowed:
            raise ValueError(f"modes[{k!r}] must be one of {', '.join(map(repr, allowed))}, got {v!r}")
        out[k] = v
    return out


def info(modes: Mapping[str, str] | None = None, *, sysfs_root: str = "/sys", topology: Topology | None = None,
         plan: CorePlan | None = None, rt_priority: int = DEFAULT_PRIORITY,
         realtime_check: Callable[[int], str | None] | None = None, jemalloc_library: str | None = None,
         maps_path: str = "/proc/self/maps", cpuinfo_path: str = "/proc/cpuinfo",
         simd_loader: Callable = _load_simd) -> dict:
    """The machine, its core plan, and each optimization switch: mode, available, active, reason.

    ``modes`` maps a switch (``SWITCHES``) to ``"auto"``, ``"on"`` or ``"off"`` (simd also takes a
    level); unnamed switches are ``"auto"``. A switch is ``active`` when its mode is not off and
    the machine supports it; ``state`` is ``"active"``, ``"inactive"`` (auto, unsupported),
    ``"no effect"`` (applied, or a no-op, but nothing here changes: one NUMA node, one CPU, the
    prefetch distance the engine's hot path never reads), ``"off"``, or ``"error"`` (on,
    unsupported: start-up would fail). The keyword arguments after
    ``modes`` replace what is read from the machine (tests, or a made-up machine via
    ``sysfs_root``). Never raises for a missing capability; ``ValueError`` for a bad mode.
    """
    modes = _check_modes(modes)
    check_priority(rt_priority)
    topo = topology or read_topology(sysfs_root)
    plan = plan or plan_cores(topo)
    flags = cpu_flags(cpuinfo_path)
    avail: dict[str, tuple[bool, str]] = {}

    avail["circuit_breaker"] = ((True, "compiled breaker")
                                if _module_built("tallyio._core.breaker") or _module_built("tallyio.resilience.breaker")
                                else (False, "breaker module not built"))
    avail["batching"] = ((True, "compiled batch drain") if _module_built("tallyio._core.batch")
                         else (False, "batch module not built"))
    if not affinity.supported():
        avail["cpu_affinity"] = (False, "platform has no sched_setaffinity")
    elif len(topo.allowed_cpus) < 2:
        avail["cpu_affinity"] = (False, f"one allowed CPU ({format_cpulist(topo.allowed_cpus)}): nothing to pin apart",
                                 NO_EFFECT)
    else:
        avail["cpu_affinity"] = (True, f"{len(topo.allowed_cpus)} allowed CPUs, plan: "
                                       + ", ".join(f"{t}->{c}" for t, c in plan.critical.items()))
    if realtime_check is not None:
        reason = realtime_check(rt_priority)
    else:
        reason = realtime_permission(rt_priority)
    avail["realtime_priority"] = (reason is None, reason or f"SCHED_FIFO priority {rt_priority} permitted")
    usable = topo.usable_nodes
    if len(usable) > 1:
        avail["numa"] = (True, f"{len(usable)} NUMA nodes with allowed CPUs: engine threads and batch buffers "
                               f"bound to node {plan.critical_node} (the core plan's critical node)")
    elif not topo.has_numa_info:
        avail["numa"] = (False, "no NUMA information (one node assumed): binding is a no-op", NO_EFFECT)
    else:
        avail["numa"] = (False, "one NUMA node: binding is a no-op", NO_EFFECT)
    avail["memory_pool"] = ((True, "compiled pool" + (", bound per NUMA node" if len(usable) > 1 else ""))
                            if _module_built("tallyio._core.pool") else (False, "pool module not built"))
    avail["prefetch"] = ((True, PREFETCH_REASON, NO_EFFECT) if _module_built("tallyio._core.prefetch")
                         else (False, "prefetch module not built"))
    avail["simd"] = _simd(flags, modes["simd"], simd_loader)
    a = allocator_status("auto", library=jemalloc_library, maps_path=maps_path)
    avail["allocator"] = (a.active, a.reason if a.active else f"{a.reason}; {a.allocator} malloc in use")

    switches = {}
    for s in SWITCHES:
        ok, why, *kind = avail[s]
        no_effect = bool(kind)
        mode = modes[s]
        if mode == "off":
            state, active = "off", False
        elif ok:
            state, active = (NO_EFFECT, False) if no_effect else ("active", True)
        elif mode != "auto":
            state, active = "error", False
        else:
            state, active = (NO_EFFECT if no_effect else "inactive"), False
        switches[s] = {"mode": mode, "available": ok, "active": active, "state": state, "reason": why}
    return {"topology": topo.as_dict(), "plan": plan.as_dict(), "allocator": a.allocator,
            "cpu_flags": [f for f in _SHOWN_FLAGS if f in flags],
            "switches": switches}


def require_switches(d: dict) -> None:
    """Raise ``OptimizationUnavailableError`` for the first switch ``info`` reports in error
    (turned on, not supported): the engine's start-up check."""
    for name, s in d["switches"].items():
        if s["state"] == "error":
            raise OptimizationUnavailableError(name, s["reason"])


def _gib(n: int | None) -> str:
    return "?" if n is None else f"{n / 2**30:.1f} GiB"


def format_info(d: dict) -> str:
    """Human-readable ``info()``: machine, core plan, then one line per switch."""
    t, p = d["topology"], d["plan"]
    lines = [f"machine: {t['logical_cpus']} logical CPUs allowed ({t['allowed_cpus']}), "
             f"{t['physical_cores']} physical cores, {'SMT' if t['smt'] else 'no SMT'}, "
             f"{len(t['nodes'])} NUMA node{'s' if len(t['nodes']) != 1 else ''}, memory {_gib(t['mem_total_bytes'])}"
             + (f", cgroup quota {t['cpu_quota']:g} CPUs" if t.get("cpu_quota") else "")]
    for n in t["nodes"]:
        lines.append(f"  node {n['id']}: cpus {n['cpus'] or '-'}, memory {_gib(n['mem_total_bytes'])}")
    lines.append(f"  allocator: {d['allocator']}; cpu flags: {' '.join(d['cpu_flags']) or '-'}")
    for note in t["notes"]:
        lines.append(f"  note: {note}")
    lines.append(f"core plan (critical threads on node {p['critical_node']}):")
    for name, cpu in p["critical"].items():
        tag = " (override)" if name in p["overridden"] else ""
        lines.append(f"  {name:<18} cpu {cpu}{tag}")
    lines.append(f"  {'workers':<18} cpus {p['workers'] or '-'}"
                 + (f"  (by node: {', '.join(f'{n}: {c}' for n, c in p['workers_by_node'].items())})"
                    if len(p["workers_by_node"]) > 1 else ""))
    lines.append(f"  {'os':<18} cpus {p['os'] or '-'}")
    for note in p["notes"]:
        lines.append(f"  note: {note}")
    lines.append("optimizations:")
    lines.append(f"  {'switch':<18} {'mode':<7} {'state':<9} reason")
    for name, s in d["switches"].items():
        lines.append(f"  {name:<18} {s['mode']:<7} {s['state']:<9} {s['reason']}")
    return "\n".join(lines)


def cli_info(argv: list[str] | None = None) -> int:
    """``tallyio info [--json] [--mode SWITCH=MODE ...] [--sysfs-root PATH]``.

    Prints ``format_info(info())`` (or its JSON); exits 1 when a switch set ``on`` cannot be
    honoured here, 2 on bad arguments, else 0.
    """
    p = argparse.ArgumentParser(prog="tallyio info",
                                description="machine topology, core plan and optimization switches")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p.add_argument("--mode", action="append", default=[], metavar="SWITCH=MODE",
                   help=f"a switch's mode, auto/on/off (repeatable); switches: {', '.join(SWITCHES)}")
    p.add_argument("--sysfs-root", default="/sys", help="read topology from another sysfs tree")
    try:
        args = p.parse_args(argv)
    except SystemExit as e:
        return int(e.code or 0)
    modes = {}
    for m in args.mode:
        k, sep, v = m.partition("=")
        if not sep:
            print(f"tallyio info: --mode must be SWITCH=MODE, got {m!r}", file=sys.stderr)
            return 2
        modes[k.strip()] = v.strip()
    try:
        d = info(modes, sysfs_root=args.sysfs_root)
    except ValueError as e:
        print(f"tallyio info: {e}", file=sys.stderr)
        return 2
    print(json.dumps(d, indent=2) if args.json else format_info(d))
    return 1 if any(s["state"] == "error" for s in d["switches"].values()) else 0
