"""Fixtures for the system-tuning tests: fake sysfs trees describing made-up machines."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from tallyio.system.topology import format_cpulist


def build_fake_sysfs(root: str | os.PathLike, nodes: list[list[int]] | int = 1, cpus: int | None = None,
                     smt: int = 1, mem_per_node_kb: int = 8 * 1024 * 1024, *, with_topology: bool = True,
                     with_nodes: bool = True) -> Path:
    """Write a sysfs-shaped tree describing a made-up machine; returns ``root``.

    ``cpus`` logical CPUs split evenly over ``nodes`` (an int) or explicit per-node CPU lists;
    ``smt`` hyper-threads per core numbered the Linux way (cpu N and N + cpus/smt are siblings).
    ``with_topology``/``with_nodes`` False leave those files out, as some containers do. Used by
    the tests and by anyone who wants to see what the planner does on a bigger machine.
    """
    root = Path(root)
    if isinstance(nodes, int):
        if cpus is None:
            raise ValueError("cpus must be given when nodes is a count, got None")
        if nodes < 1 or cpus < 1 or cpus % nodes or cpus % smt or (cpus // smt) % nodes:
            raise ValueError(f"cpus must split evenly into {nodes} nodes of {smt}-thread cores, got {cpus}")
        ncores = cpus // smt
        per_node = ncores // nodes
        node_lists = []
        for n in range(nodes):
            core_range = range(n * per_node, (n + 1) * per_node)
            node_lists.append(sorted(c + t * ncores for c in core_range for t in range(smt)))
    else:
        node_lists = [sorted(n) for n in nodes]
        cpus = sum(len(n) for n in node_lists)
        ncores = cpus // smt
    all_cpus = sorted(c for n in node_lists for c in n)
    cpu_dir = root / "devices" / "system" / "cpu"
    cpu_dir.mkdir(parents=True, exist_ok=True)
    (cpu_dir / "online").write_text(format_cpulist(all_cpus) + "\n")
    for c in all_cpus:
        d = cpu_dir / f"cpu{c}"
        d.mkdir(exist_ok=True)
        if with_topology:
            t = d / "topology"
            t.mkdir(exist_ok=True)
            core = c % ncores
            sib = [core + k * ncores for k in range(smt)]
            (t / "thread_siblings_list").write_text(format_cpulist(sib) + "\n")
            (t / "core_id").write_text(f"{core}\n")
            pkg = next(i for i, n in enumerate(node_lists) if c in n)
            (t / "physical_package_id").write_text(f"{pkg}\n")
    if with_nodes:
        node_dir = root / "devices" / "system" / "node"
        node_dir.mkdir(parents=True, exist_ok=True)
        for i, n in enumerate(node_lists):
            d = node_dir / f"node{i}"
            d.mkdir(exist_ok=True)
            (d / "cpulist").write_text(format_cpulist(n) + "\n")
            (d / "meminfo").write_text(f"Node {i} MemTotal:       {mem_per_node_kb} kB\n"
                                       f"Node {i} MemFree:        {mem_per_node_kb // 2} kB\n")
    return root


@pytest.fixture
def fake_sysfs(tmp_path):
    """``fake_sysfs(name, **kw)`` builds a tree under ``tmp_path/name`` and returns its root."""
    def make(name: str = "sys", **kw) -> Path:
        return build_fake_sysfs(tmp_path / name, **kw)
    return make


@pytest.fixture(scope="session")
def build_sysfs():
    """The builder itself, for tests (hypothesis ones) that make many trees in one test."""
    return build_fake_sysfs
