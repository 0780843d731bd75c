import os

import pytest
from hypothesis import given, settings, strategies as st

from tallyio.system import format_cpulist, parse_cpulist, read_topology


# --- cpulist parsing against a plain-Python model ---------------------------------------------

def test_parse_cpulist_forms():
    assert parse_cpulist("0-3,8,10-11\n") == (0, 1, 2, 3, 8, 10, 11)
    assert parse_cpulist("5") == (5,)
    assert parse_cpulist("") == ()
    assert parse_cpulist("0-7:2") == (0, 2, 4, 6)
    assert format_cpulist([5, 0, 1, 2]) == "0-2,5"
    assert format_cpulist([]) == ""


@pytest.mark.parametrize("bad", ["a", "3-1", "1,,2", "-1", "0-"])
def test_parse_cpulist_rejects(bad):
    with pytest.raises(ValueError, match=repr(bad).replace("-", r"\-")):
        parse_cpulist(bad)


@settings(deadline=None)  # no wall-clock bound on a shared machine
@given(st.sets(st.integers(0, 300), max_size=80))
def test_cpulist_roundtrip_model(cpus):
    text = format_cpulist(cpus)
    assert parse_cpulist(text) == tuple(sorted(cpus))
    # The model: a CPU list is exactly its comma-separated ranges expanded.
    model = set()
    for part in filter(None, text.split(",")):
        lo, _, hi = part.partition("-")
        model.update(range(int(lo), int(hi or lo) + 1))
    assert model == set(cpus)


# --- this machine ------------------------------------------------------------------------------

def test_live_topology_matches_affinity():
    t = read_topology()
    assert set(t.allowed_cpus) == os.sched_getaffinity(0)
    assert sorted(c for core in t.cores for c in core) == sorted(t.allowed_cpus)
    assert sorted(c for n in t.nodes for c in n.cpus) == sorted(t.allowed_cpus)
    assert t.mem_total_bytes and t.mem_total_bytes > 0
    assert t.as_dict()["logical_cpus"] == len(t.allowed_cpus)


# --- made-up machines --------------------------------------------------------------------------

@pytest.mark.parametrize("nodes,cpus,smt", [(1, 2, 1), (1, 4, 2), (2, 16, 2), (4, 64, 2), (4, 64, 1), (2, 4, 1)])
def test_fake_machines(fake_sysfs, nodes, cpus, smt):
    root = fake_sysfs(nodes=nodes, cpus=cpus, smt=smt, mem_per_node_kb=1024)
    t = read_topology(root)
    assert t.allowed_cpus == tuple(range(cpus))
    assert len(t.cores) == cpus // smt
    assert t.smt is (smt > 1)
    assert len(t.nodes) == nodes and len(t.usable_nodes) == nodes
    assert all(len(n.cpus) == cpus // nodes for n in t.nodes)
    assert all(n.mem_total_bytes == 1024 * 1024 for n in t.nodes)
    assert t.mem_total_bytes == nodes * 1024 * 1024
    # Siblings live on one node and list each other.
    for core in t.cores:
        assert len(core) == smt
        assert len({t.node_of(c) for c in core}) == 1
        assert all(t.cpus[c].siblings == core for c in core)
    assert t.notes == ()


def test_restricted_cpuset_like_a_container(fake_sysfs):
    root = fake_sysfs(nodes=2, cpus=16, smt=2)
    # cpus 0-15: cores are (c, c+8); node 0 holds cores 0-3, node 1 cores 4-7.
    t = read_topology(root, allowed={2, 10, 3, 5})
    assert t.allowed_cpus == (2, 3, 5, 10)
    assert t.cores == ((2, 10), (3,), (5,))  # siblings outside the set are dropped
    assert [n.cpus for n in t.nodes] == [(2, 3, 10), (5,)]
    with pytest.raises(ValueError, match="cpu 4 is not in the allowed set 2-3,5,10"):
        t.node_of(4)


def test_missing_topology_files_degrade(fake_sysfs):
    t = read_topology(fake_sysfs(nodes=1, cpus=4, smt=2, with_topology=False))
    assert t.cores == ((0,), (1,), (2,), (3,))
    assert not t.has_sibling_info
    assert any("no hyper-thread sibling information for CPUs 0-3" in n for n in t.notes)


def test_missing_numa_files_degrade(fake_sysfs):
    t = read_topology(fake_sysfs(nodes=2, cpus=8, with_nodes=False))
    assert len(t.nodes) == 1 and t.nodes[0].cpus == tuple(range(8))
    assert not t.has_numa_info
    assert any("one node assumed" in n for n in t.notes)


def test_empty_tree_degrades(tmp_path):
    t = read_topology(tmp_path, allowed={0})
    assert t.allowed_cpus == (0,)
    assert t.cores == ((0,),) and len(t.nodes) == 1
    assert any("one node assumed" in n for n in t.notes)
    assert any("sibling" in n for n in t.notes)


def test_memory_only_node_and_orphans(fake_sysfs, tmp_path):
    root = fake_sysfs(nodes=[[0, 1], [2, 3]])
    node2 = root / "devices/system/node/node2"
    node2.mkdir()
    (node2 / "cpulist").write_text("\n")  # memory-only (CXL, HBM)
    t = read_topology(root, allowed={0, 1, 2, 3, 7})
    assert [n.id for n in t.nodes] == [0, 1, 2]
    assert [n.id for n in t.usable_nodes] == [0, 1]
    assert t.node_of(7) == 0
    assert any("not listed online" in n for n in t.notes)
    assert any("belong to no node" in n for n in t.notes)


def test_inconsistent_siblings_stand_alone(fake_sysfs):
    root = fake_sysfs(nodes=1, cpus=4, smt=2)
    (root / "devices/system/cpu/cpu2/topology/thread_siblings_list").write_text("1-2\n")
    t = read_topology(root)
    flat = sorted(c for core in t.cores for c in core)
    assert flat == [0, 1, 2, 3]  # every CPU in exactly one core, whatever the tree says
    assert any("inconsistent" in n for n in t.notes)


def test_cgroup_quota(fake_sysfs):
    root = fake_sysfs(nodes=1, cpus=8)
    (root / "fs/cgroup").mkdir(parents=True)
    (root / "fs/cgroup/cpu.max").write_text("200000 100000\n")
    t = read_topology(root)
    assert t.cpu_quota == 2.0
    assert any("quota is 2 CPUs" in n for n in t.notes)
    (root / "fs/cgroup/cpu.max").write_text("max 100000\n")
    assert read_topology(root).cpu_quota is None


def test_empty_allowed_rejected(fake_sysfs):
    with pytest.raises(ValueError, match="allowed must name at least one CPU"):
        read_topology(fake_sysfs(nodes=1, cpus=2), allowed=[])


@pytest.mark.parametrize("nodes,cpus,smt", [(1, 2, 1), (2, 16, 2), (4, 64, 2), (4, 64, 1)])
def test_synthetic_topology_matches_sysfs_reader(fake_sysfs, nodes, cpus, smt):
    from tallyio.system import synthetic_topology

    a = synthetic_topology(nodes, cpus, smt)
    b = read_topology(fake_sysfs(nodes=nodes, cpus=cpus, smt=smt))
    assert a.allowed_cpus == b.allowed_cpus and a.cores == b.cores
    assert [n.cpus for n in a.nodes] == [n.cpus for n in b.nodes]
    assert a.cpus == b.cpus
    with pytest.raises(ValueError, match="cpus must split into 3 nodes"):
        synthetic_topology(3, 8)
    with pytest.raises(ValueError, match="smt must be an integer >= 1, got 0"):
        synthetic_topology(1, 8, 0)
