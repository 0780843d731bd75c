"""Which CPU each engine thread runs on: the core plan.

The rule (``plan_cores``), in physical cores (a core is a set of hyper-thread siblings):

1. Cores named by ``overrides`` are taken out first; their threads go exactly where they were told.
2. The OS keeps the lowest-numbered cores (CPU 0 takes most interrupts by default): none below 4
   cores, 1 below 16, 2 from 16 up (``os_cores`` sets the count explicitly).
3. Critical threads get cores of their own, in the order of ``threads`` (most latency-critical
   first), as many as leave at least one core for workers: ``k = min(threads, cores - 1)``. They
   come from one NUMA node, the lowest-numbered one with enough free cores (else the one with
   the most), and spill to other nodes only when that node runs out (a core of its own on
   another node beats a hyper-thread sibling on the same node).
4. A critical thread runs on its core's first hyper-thread; the core's other hyper-threads stay
   idle so no worker (and no other critical thread) competes for that core's execution units.
   When there are more critical threads than critical cores, the extra ones take those sibling
   hyper-threads next, and only when those run out do the least critical threads share the last
   CPU.
5. Every other core is a worker core (all its hyper-threads). With no core left, workers share the
   critical CPUs.

So 16 cores without SMT give OS 0-1, critical 2-6, workers 7-15; 4 cores give OS 0, critical 1
and 2 (the four least critical threads share 2), workers 3; 2 cores give critical 0 (all five
share it), workers 1; 1 CPU gives everything on CPU 0.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Sequence

from tallyio.system.topology import Topology, format_cpulist

# Most latency-critical first: the rule gives the first ones cores of their own.
CRITICAL_THREADS: tuple[str, ...] = ("mempool_ingest", "state_manager", "strategy_scanner", "network", "metrics")


@dataclass(frozen=True)
class CorePlan:
    """Where each critical thread, the workers and the OS run.

    ``critical`` maps a thread name to its CPU; ``workers`` are the CPUs worker pools may use, and
    ``workers_by_node`` the same split by NUMA node; ``os`` are the allowed CPUs the engine leaves
    alone (OS cores and the idle hyper-threads of critical cores); ``critical_node`` is the node
    that holds the critical threads (or most of them); ``notes`` says where the plan had to
    compromise.
    """

    critical: dict[str, int]
    workers: tuple[int, ...]
    os: tuple[int, ...]
    critical_node: int
    workers_by_node: dict[int, tuple[int, ...]]
    notes: tuple[str, ...] = ()
    overridden: tuple[str, ...] = field(default=())

    def cpu_of(self, name: str) -> int:
        """The CPU planned for critical thread ``name``; ``KeyError`` naming it otherwise."""
        try:
            return self.critical[name]
        except KeyError:
            raise KeyError(f"no critical thread named {name!r} in the plan; "
                           f"planned: {', '.join(self.critical)}") from None

    def as_dict(self) -> dict:
        return {
            "critical": dict(self.critical),
            "workers": format_cpulist(self.workers),
            "workers_by_node": {str(n): format_cpulist(c) for n, c in self.workers_by_node.items()},
            "os": format_cpulist(self.os),
            "critical_node": self.critical_node,
            "overridden": list(self.overridden),
            "notes": list(self.notes),
        }


def default_os_cores(n_cores: int) -> int:
    """Cores the rule leaves to the OS for a machine with ``n_cores`` allowed physical cores."""
    if n_cores < 4:
        return 0
    if n_cores < 16:
        return 1
    return 2


def _check_cpu(name: str, cpu, topology: Topology) -> int:
    if isinstance(cpu, bool) or not isinstance(cpu, int):
        raise ValueError(f"override for thread {name!r} must be a CPU number, got {cpu!r}")
    if cpu not in topology.cpus:
        raise ValueError(f"override for thread {name!r} names cpu {cpu}, which is not in the allowed set "
                         f"{format_cpulist(topology.allowed_cpus)}")
    return cpu


def plan_cores(topology: Topology, threads: Sequence[str] = CRITICAL_THREADS, *,
               overrides: Mapping[str, int] | None = None, os_cores: int | None = None) -> CorePlan:
    """Plan CPUs for the critical ``threads`` (most critical first), the workers and the OS.

    ``overrides`` maps a thread name to a CPU and wins over the rule (see the module docstring);
    ``os_cores`` replaces the rule's count of OS cores. Raises ``ValueError`` naming the value for
    an unknown thread name, an override CPU outside the allowed set, or an ``os_cores`` that
    leaves no core.
    """
    threads = tuple(threads)
    for t in threads:
        if not isinstance(t, str) or not t:
            raise ValueError(f"threads must be non-empty names, got {t!r}")
    if len(set(threads)) != len(threads):
        raise ValueError(f"threads must be unique, got {list(threads)}")
    overrides = dict(overrides or {})
    for name, cpu in overrides.items():
        if name not in threads:
            raise ValueError(f"override names thread {name!r}, which is not one of {', '.join(threads)}")
        _check_cpu(name, cpu, topology)

    notes: list[str] = []
    all_cores = topology.cores
    core_of = {c: core for core in all_cores for c in core}
    taken = {core_of[cpu] for cpu in overrides.values()}
    free = [core for core in all_cores if core not in taken]

    if os_cores is None:
        n_os = min(default_os_cores(len(all_cores)), max(0, len(free) - 1))
    else:
        if isinstance(os_cores, bool) or not isinstance(os_cores, int) or os_cores < 0:
            raise ValueError(f"os_cores must be an integer >= 0, got {os_cores!r}")
        if free and os_cores >= len(free):
            raise ValueError(f"os_cores must leave at least one core for the engine, got {os_cores} "
                             f"with {len(free)} free cores")
        n_os = os_cores if free else 0
    rest = free[n_os:]  # free[:n_os] stay with the OS

    critical: dict[str, int] = {}
    for name in threads:
        if name in overrides:
            critical[name] = overrides[name]
    if len(set(overrides.values())) < len(overrides):
        notes.append("overrides put several critical threads on one CPU")

    def node(core: tuple[int, ...]) -> int:
        return topology.cpus[core[0]].node

    # The node for the critical threads: where the overrides already are, else the first node
    # that holds them all, which leaves the other nodes whole for worker pools.
    if overrides:
        counts: dict[int, int] = {}
        for cpu in overrides.values():
            counts[topology.cpus[cpu].node] = counts.get(topology.cpus[cpu].node, 0) + 1
        crit_node = min(counts, key=lambda n: (-counts[n], n))
    elif rest:
        per_node: dict[int, int] = {}
        for core in rest:
            per_node[node(core)] = per_node.get(node(core), 0) + 1
        need = min(len(threads), max(1, len(rest) - 1))
        fits = [n for n in sorted(per_node) if per_node[n] >= need]
        crit_node = fits[0] if fits else min(per_node, key=lambda n: (-per_node[n], n))
    else:
        crit_node = topology.cpus[topology.allowed_cpus[0]].node

    remaining = [t for t in threads if t not in overrides]
    ordered = ([c for c in rest if node(c) == crit_node]
               + sorted((c for c in rest if node(c) != crit_node), key=lambda c: (node(c), c[0])))
    if remaining and not ordered:
        # Every core went to an override: the rest of the critical threads share those cores.
        ordered = sorted(taken, key=lambda c: c[0])
        notes.append("overrides took every core: the other critical threads share them")
        worker_cores: list[tuple[int, ...]] = []
        k = len(ordered)
    else:
        w_min = 1 if len(ordered) >= 2 else 0
        k = min(len(remaining), len(ordered) - w_min) if remaining else 0
        k = max(k, 1) if remaining else 0
        worker_cores = ordered[k:]
    crit_cores = ordered[:k]
    if remaining:
        if len({node(c) for c in crit_cores}) > 1:
            notes.append(f"critical threads span NUMA nodes: node {crit_node} has too few free cores")
        slots = [c[0] for c in crit_cores]
        if len(remaining) > len(slots):
            extra = [s for c in crit_cores for s in c[1:]]
            slots += extra[:len(remaining) - len(slots)]
            if len(slots) > len(crit_cores):
                notes.append(f"{len(remaining)} critical threads for {len(crit_cores)} critical cores: "
                             "some run on hyper-thread siblings of each other")
        for i, name in enumerate(remaining):
            critical[name] = slots[min(i, len(slots) - 1)]
        if len(remaining) > len(slots):
            sharing = remaining[len(slots) - 1:]
            notes.append(f"not enough CPUs for one each: {', '.join(sharing)} share cpu {slots[-1]}")
    # Keep the plan's dict in the order of ``threads`` whatever came from where.
    critical = {t: critical[t] for t in threads}

    if worker_cores:
        workers = tuple(sorted(c for core in worker_cores for c in core))
    else:
        workers = tuple(sorted(c for core in (crit_cores or ordered) for c in core)) or tuple(sorted(critical.values()))
        if workers:
            notes.append("no core left for workers: workers share the critical CPUs")
    if not workers:
        workers = topology.allowed_cpus
    used = set(critical.values()) | set(workers)
    os_cpus = tuple(c for c in topology.allowed_cpus if c not in used)
    by_node: dict[int, list[int]] = {}
    for c in workers:
        by_node.setdefault(topology.cpus[c].node, []).append(c)
    if len(topology.allowed_cpus) == 1:
        notes.append("one allowed CPU: every thread shares it, pinning isolates nothing")
    return CorePlan(critical=critical, workers=workers, os=os_cpus, critical_node=crit_node,
                    workers_by_node={n: tuple(v) for n, v in sorted(by_node.items())},
                    notes=tuple(notes), overridden=tuple(t for t in threads if t in overrides))
