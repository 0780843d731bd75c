"""What the machine looks like to this process: allowed CPUs, physical cores, NUMA nodes.

Everything is read from sysfs under a root path (``/sys`` by default) so tests can hand in a fake
tree. Missing files never raise: the reader falls back to the simplest truthful picture (each CPU
its own core, one node holding every CPU) and records why in ``Topology.notes``.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

LIVE_SYSFS = "/sys"


def parse_cpulist(text: str) -> tuple[int, ...]:
    """Parse a kernel CPU list such as ``"0-3,8,10-11"`` into sorted CPU numbers.

    Raises ``ValueError`` naming the text when it is not a CPU list.
    """
    out: set[int] = set()
    text = text.strip()
    if not text:
        return ()
    for part in text.split(","):
        part = part.strip()
        try:
            if "-" in part:
                lo_s, hi_s = part.split("-", 1)
                # "0-15:2" is legal in kernel cpulist syntax (a stride), rare in sysfs output.
                stride = 1
                if ":" in hi_s:
                    hi_s, stride_s = hi_s.split(":", 1)
                    stride = int(stride_s.split("/", 1)[0])
                lo, hi = int(lo_s), int(hi_s)
                if lo > hi or stride < 1:
                    raise ValueError
                out.update(range(lo, hi + 1, stride))
            else:
                out.add(int(part))
        except ValueError:
            raise ValueError(f"cpulist must look like '0-3,8', got {text!r}") from None
    if any(c < 0 for c in out):
        raise ValueError(f"cpulist must hold CPU numbers >= 0, got {text!r}")
    return tuple(sorted(out))


def format_cpulist(cpus: Iterable[int]) -> str:
    """The inverse of :func:`parse_cpulist`: ``[0, 1, 2, 5]`` -> ``"0-2,5"``."""
    cs = sorted(set(cpus))
    runs: list[str] = []
    i = 0
    while i < len(cs):
        j = i
        while j + 1 < len(cs) and cs[j + 1] == cs[j] + 1:
            j += 1
        runs.append(str(cs[i]) if i == j else f"{cs[i]}-{cs[j]}")
        i = j + 1
    return ",".join(runs)


@dataclass(frozen=True)
class Cpu:
    """One logical CPU the process may run on."""

    cpu: int
    core_id: int
    package_id: int
    node: int
    siblings: tuple[int, ...]  # hyper-thread siblings within the allowed set, itself included


@dataclass(frozen=True)
class NumaNode:
    """A NUMA node: its allowed CPUs and its memory (None when the kernel does not say)."""

    id: int
    cpus: tuple[int, ...]
    mem_total_bytes: int | None


@dataclass(frozen=True)
class Topology:
    """The machine as this process may use it.

    ``allowed_cpus`` is the affinity mask (a container's cpuset shows up here); ``cpus`` describes
    each allowed CPU; ``nodes`` lists every NUMA node, including memory-only ones whose ``cpus`` is
    empty; ``cpu_quota`` is the cgroup v2 CPU bandwidth limit in CPUs (None: unlimited or unknown);
    ``notes`` says which files were missing and what was assumed instead.
    """

    allowed_cpus: tuple[int, ...]
    cpus: dict[int, Cpu]
    nodes: tuple[NumaNode, ...]
    mem_total_bytes: int | None
    cpu_quota: float | None = None
    notes: tuple[str, ...] = ()
    sysfs_root: str = LIVE_SYSFS
    has_numa_info: bool = True
    has_sibling_info: bool = True

    @property
    def cores(self) -> tuple[tuple[int, ...], ...]:
        """Physical cores as tuples of allowed sibling CPUs, ordered by their lowest CPU."""
        seen: dict[tuple[int, ...], None] = {}
        for c in self.allowed_cpus:
            seen.setdefault(self.cpus[c].siblings, None)
        return tuple(sorted(seen, key=lambda s: s[0]))

    @property
    def smt(self) -> bool:
        """Whether any allowed core has two or more allowed hyper-threads."""
        return any(len(s) > 1 for s in self.cores)

    @property
    def usable_nodes(self) -> tuple[NumaNode, ...]:
        """Nodes with at least one allowed CPU (the ones that can host a worker pool)."""
        return tuple(n for n in self.nodes if n.cpus)

    def node_of(self, cpu: int) -> int:
        """The NUMA node of an allowed CPU; ``ValueError`` naming it when it is not allowed."""
        try:
            return self.cpus[cpu].node
        except KeyError:
            raise ValueError(f"cpu {cpu} is not in the allowed set {format_cpulist(self.allowed_cpus)}") from None

    def as_dict(self) -> dict:
        return {
            "sysfs_root": self.sysfs_root,
            "allowed_cpus": format_cpulist(self.allowed_cpus),
            "logical_cpus": len(self.allowed_cpus),
            "physical_cores": len(self.cores),
            "smt": self.smt,
            "cores": [format_cpulist(c) for c in self.cores],
            "nodes": [{"id": n.id, "cpus": format_cpulist(n.cpus), "mem_total_bytes": n.mem_total_bytes}
                      for n in self.nodes],
            "mem_total_bytes": self.mem_total_bytes,
            "cpu_quota": self.cpu_quota,
            "notes": list(self.notes),
        }


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except (OSError, UnicodeDecodeError):
        return None


def _read_int(path: Path) -> int | None:
    text = _read(path)
    if text is None:
        return None
    try:
        return int(text.strip())
    except ValueError:
        return None


def _node_mem_total(node_dir: Path) -> int | None:
    text = _read(node_dir / "meminfo")
    if text is None:
        return None
    for line in text.splitlines():
        # "Node 0 MemTotal:        4286676 kB"
        parts = line.split()
        if len(parts) >= 4 and parts[2] == "MemTotal:":
            try:
                return int(parts[3]) * (1024 if parts[-1] == "kB" else 1)
            except ValueError:
                return None
    return None


def _cpu_quota(root: Path) -> float | None:
    text = _read(root / "fs" / "cgroup" / "cpu.max")
    if text is None:
        return None
    parts = text.split()
    if len(parts) != 2 or parts[0] == "max":
        return None
    try:
        return int(parts[0]) / int(parts[1])
    except (ValueError, ZeroDivisionError):
        return None


def _system_mem_total() -> int | None:
    try:
        import psutil
        return int(psutil.virtual_memory().total)
    except Exception:  # psutil missing or unsupported platform: the total is only informative
        return None


def read_topology(sysfs_root: str | os.PathLike = LIVE_SYSFS, allowed: Iterable[int] | None = None) -> Topology:
    """Read CPUs, cores, hyper-thread siblings and NUMA nodes from sysfs.

    ``sysfs_root``: the sysfs mount (a fake tree in tests). ``allowed``: the CPUs this process may
    use; by default ``os.sched_getaffinity(0)`` when reading the live ``/sys``, and every online CPU
    of the tree otherwise (a fake tree describes some other machine). Allowed CPUs that the tree
    does not list as online are kept (a container may hide sysfs) and noted.
    """
    root = Path(sysfs_root)
    live = os.path.realpath(root) == os.path.realpath(LIVE_SYSFS)
    notes: list[str] = []
    cpu_dir = root / "devices" / "system" / "cpu"
    node_dir = root / "devices" / "system" / "node"

    online_text = _read(cpu_dir / "online")
    online: tuple[int, ...] | None = None
    if online_text is not None:
        try:
            online = parse_cpulist(online_text)
        except ValueError:
            notes.append(f"unreadable {cpu_dir / 'online'}: {online_text.strip()!r}")
    if online is None:
        listed = sorted(int(p.name[3:]) for p in cpu_dir.glob("cpu[0-9]*") if p.name[3:].isdigit())
        online = tuple(listed) if listed else None

    if allowed is not None:
        allowed_t = tuple(sorted(set(int(c) for c in allowed)))
        if not allowed_t:
            raise ValueError("allowed must name at least one CPU, got an empty set")
    elif live and hasattr(os, "sched_getaffinity"):
        allowed_t = tuple(sorted(os.sched_getaffinity(0)))
    elif online:
        allowed_t = online
    else:
        allowed_t = tuple(range(os.cpu_count() or 1))
        notes.append(f"no CPU list under {cpu_dir}: assumed CPUs {format_cpulist(allowed_t)}")
    if online is not None:
        hidden = [c for c in allowed_t if c not in set(online)]
        if hidden:
            notes.append(f"allowed CPUs {format_cpulist(hidden)} are not listed online in {cpu_dir}")

    allowed_set = set(allowed_t)

    # Cores: CPUs grouped by their sibling list; CPUs without topology files stand alone.
    siblings: dict[int, tuple[int, ...]] = {}
    core_ids: dict[int, int] = {}
    pkg_ids: dict[int, int] = {}
    missing_topo: list[int] = []
    for c in allowed_t:
        tdir = cpu_dir / f"cpu{c}" / "topology"
        sib_text = _read(tdir / "thread_siblings_list")
        sib: tuple[int, ...] | None = None
        if sib_text is not None:
            try:
                sib = tuple(s for s in parse_cpulist(sib_text) if s in allowed_set)
            except ValueError:
                sib = None
        if not sib or c not in sib:
            missing_topo.append(c)
            sib = (c,)
        siblings[c] = sib
        core = _read_int(tdir / "core_id")
        pkg = _read_int(tdir / "physical_package_id")
        core_ids[c] = core if core is not None else c
        pkg_ids[c] = pkg if pkg is not None and pkg >= 0 else 0
    has_sibling_info = not missing_topo
    if missing_topo:
        notes.append(f"no hyper-thread sibling information for CPUs {format_cpulist(missing_topo)}: "
                     "each treated as its own core")
    # Sibling lists must agree with each other; a torn or fake tree that disagrees would make two
    # "cores" overlap, so a CPU whose list is not mirrored by its siblings stands alone.
    for c in allowed_t:
        if any(siblings.get(s) != siblings[c] for s in siblings[c]):
            notes.append(f"inconsistent sibling lists around cpu{c}: treated as its own core")
            for s in siblings[c]:
                siblings[s] = (s,)

    # NUMA nodes.
    nodes: list[NumaNode] = []
    node_of: dict[int, int] = {}
    node_paths = sorted((p for p in node_dir.glob("node[0-9]*") if p.name[4:].isdigit()),
                        key=lambda p: int(p.name[4:]))
    for p in node_paths:
        nid = int(p.name[4:])
        text = _read(p / "cpulist")
        try:
            ncpus = parse_cpulist(text) if text is not None else ()
        except ValueError:
            notes.append(f"unreadable {p / 'cpulist'}: {text.strip()!r}")
            ncpus = ()
        mine = tuple(c for c in ncpus if c in allowed_set and c not in node_of)
        for c in mine:
            node_of[c] = nid
        nodes.append(NumaNode(nid, mine, _node_mem_total(p)))
    has_numa_info = bool(nodes)
    if not nodes:
        notes.append(f"no NUMA information under {node_dir}: one node assumed")
        nodes = [NumaNode(0, allowed_t, _system_mem_total() if live else None)]
        node_of = {c: 0 for c in allowed_t}
    else:
        orphans = [c for c in allowed_t if c not in node_of]
        if orphans:
            first = nodes[0]
            notes.append(f"CPUs {format_cpulist(orphans)} belong to no node in {node_dir}: "
                         f"placed on node {first.id}")
            for c in orphans:
                node_of[c] = first.id
            nodes[0] = NumaNode(first.id, tuple(sorted(first.cpus + tuple(orphans))), first.mem_total_bytes)

    mems = [n.mem_total_bytes for n in nodes]
    mem_total = sum(m for m in mems if m) if all(m is not None for m in mems) else None
    if mem_total is None and live:
        mem_total = _system_mem_total()

    cpus = {c: Cpu(c, core_ids[c], pkg_ids[c], node_of[c], siblings[c]) for c in allowed_t}
    quota = _cpu_quota(root)
    if quota is not None and quota < len(allowed_t):
        notes.append(f"cgroup CPU quota is {quota:g} CPUs for {len(allowed_t)} allowed CPUs: "
                     "pinned threads share that budget")
    return Topology(allowed_cpus=allowed_t, cpus=cpus, nodes=tuple(nodes), mem_total_bytes=mem_total,
                    cpu_quota=quota, notes=tuple(notes), sysfs_root=str(root),
                    has_numa_info=has_numa_info, has_sibling_info=has_sibling_info)


def synthetic_topology(nodes: int = 1, cpus: int = 2, smt: int = 1) -> Topology:
    """A made-up machine: ``cpus`` logical CPUs, ``smt`` per core, cores split evenly over
    ``nodes``, numbered as Linux does (cpu N and N + cpus/smt are siblings). For planning ahead
    ("what would a 64-CPU, 4-node box get?") and for benchmarks; nothing is read."""
    for name, v in (("nodes", nodes), ("cpus", cpus), ("smt", smt)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {v!r}")
    if cpus % smt or (cpus // smt) % nodes:
        raise ValueError(f"cpus must split into {nodes} nodes of {smt}-thread cores, got {cpus}")
    ncores = cpus // smt
    per_node = ncores // nodes
    info = {c: Cpu(c, c % ncores, (c % ncores) // per_node, (c % ncores) // per_node,
                   tuple(c % ncores + k * ncores for k in range(smt))) for c in range(cpus)}
    node_list = tuple(NumaNode(n, tuple(c for c in range(cpus) if info[c].node == n), None) for n in range(nodes))
    return Topology(allowed_cpus=tuple(range(cpus)), cpus=info, nodes=node_list, mem_total_bytes=None,
                    sysfs_root="(synthetic)")
