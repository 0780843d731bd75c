import pytest
from hypothesis import given, settings, strategies as st

from tallyio.system import CRITICAL_THREADS, plan_cores, read_topology
from tallyio.system.plan import default_os_cores


def _plan(fake_sysfs, name="sys", allowed=None, **kw):
    plan_kw = {k: kw.pop(k) for k in ("threads", "overrides", "os_cores") if k in kw}
    t = read_topology(fake_sysfs(name, **kw), allowed=allowed)
    return t, plan_cores(t, **plan_kw)


def test_sixteen_cores_layout(fake_sysfs):
    t, p = _plan(fake_sysfs, nodes=1, cpus=16)
    assert p.os == (0, 1)
    assert p.critical == dict(zip(CRITICAL_THREADS, (2, 3, 4, 5, 6)))
    assert p.workers == tuple(range(7, 16))
    assert p.notes == ()


def test_four_cores(fake_sysfs):
    t, p = _plan(fake_sysfs, nodes=1, cpus=4)
    assert p.os == (0,)
    assert p.critical["mempool_ingest"] == 1
    assert {p.critical[n] for n in CRITICAL_THREADS[1:]} == {2}
    assert p.workers == (3,)
    assert any("share cpu 2" in n for n in p.notes)


def test_two_cores(fake_sysfs):
    t, p = _plan(fake_sysfs, nodes=1, cpus=2)
    assert set(p.critical.values()) == {0}
    assert p.workers == (1,) and p.os == ()


def test_one_cpu(fake_sysfs):
    t, p = _plan(fake_sysfs, nodes=1, cpus=2, allowed={1})
    assert set(p.critical.values()) == {1} and p.workers == (1,)
    assert any("one allowed CPU" in n for n in p.notes)


def test_sixty_four_cpus_smt_four_nodes(fake_sysfs):
    # 32 cores x 2 threads, 8 cores a node; cpu c and c+32 are siblings.
    t, p = _plan(fake_sysfs, nodes=4, cpus=64, smt=2)
    assert p.os == (0, 1, 32, 33) + tuple(c + 32 for c in range(2, 7))  # OS cores, idle siblings
    crit = list(p.critical.values())
    assert crit == [2, 3, 4, 5, 6]
    assert {t.node_of(c) for c in crit} == {0}
    assert p.critical_node == 0
    assert set(p.workers_by_node) == {0, 1, 2, 3}
    assert p.workers_by_node[0] == (7, 39)
    siblings = {c: t.cpus[c].siblings for c in crit}
    assert all(siblings[a] != siblings[b] for a in crit for b in crit if a != b)


def test_smt_with_few_cores_uses_siblings_before_sharing(fake_sysfs):
    # 4 cores x 2: OS core (0,4), critical cores (1,5) and (2,6), worker core (3,7).
    t, p = _plan(fake_sysfs, nodes=1, cpus=8, smt=2)
    assert list(p.critical.values()) == [1, 2, 5, 6, 6]
    assert p.workers == (3, 7)
    assert any("hyper-thread siblings" in n for n in p.notes)


def test_critical_threads_stay_on_one_node(fake_sysfs):
    # 2 nodes x 8 cores: the OS takes cores 0-1 of node 0, which still holds 5 critical cores.
    t, p = _plan(fake_sysfs, nodes=2, cpus=32, smt=2)
    assert {t.node_of(c) for c in p.critical.values()} == {0} and p.critical_node == 0
    # 2 nodes x 4 cores: node 0 has 3 free cores after the OS, node 1 has 4: node 1 holds most,
    # and the fifth thread gets a core of its own on node 0 rather than a sibling (own cores
    # before one node: the sibling rule is the stronger one).
    t, p = _plan(fake_sysfs, "b", nodes=2, cpus=16, smt=2)
    assert p.critical_node == 1
    assert [t.node_of(c) for c in p.critical.values()] == [1, 1, 1, 1, 0]
    assert any("span NUMA nodes" in n for n in p.notes)


def test_spill_across_nodes_is_noted(fake_sysfs):
    t, p = _plan(fake_sysfs, nodes=4, cpus=8)  # 2 cores a node
    assert any("span NUMA nodes" in n for n in p.notes)
    assert len(set(p.critical.values())) == 5


def test_overrides(fake_sysfs):
    t, p = _plan(fake_sysfs, nodes=1, cpus=16, overrides={"network": 15, "metrics": 0})
    assert p.critical["network"] == 15 and p.critical["metrics"] == 0
    assert 15 not in p.workers and 0 not in p.os
    assert p.overridden == ("network", "metrics")
    rest = [p.critical[n] for n in CRITICAL_THREADS[:3]]
    assert len(set(rest)) == 3 and not set(rest) & {0, 15}


def test_override_not_allowed_names_cpu(fake_sysfs):
    t = read_topology(fake_sysfs(nodes=1, cpus=4))
    with pytest.raises(ValueError, match="cpu 9, which is not in the allowed set 0-3"):
        plan_cores(t, overrides={"network": 9})
    with pytest.raises(ValueError, match="thread 'netwrok'"):
        plan_cores(t, overrides={"netwrok": 1})
    with pytest.raises(ValueError, match="must be a CPU number, got '1'"):
        plan_cores(t, overrides={"network": "1"})
    with pytest.raises(ValueError, match="os_cores must leave at least one core .* got 4"):
        plan_cores(t, os_cores=4)
    with pytest.raises(ValueError, match="os_cores must be an integer >= 0, got -1"):
        plan_cores(t, os_cores=-1)
    with pytest.raises(ValueError, match="threads must be unique"):
        plan_cores(t, threads=["a", "a"])


def test_overrides_take_every_core(fake_sysfs):
    t, p = _plan(fake_sysfs, nodes=1, cpus=2, overrides={"mempool_ingest": 0, "state_manager": 1})
    assert p.critical["mempool_ingest"] == 0 and p.critical["state_manager"] == 1
    assert {p.critical[n] for n in CRITICAL_THREADS[2:]} <= {0, 1}
    assert p.workers


def test_default_os_cores_rule():
    assert [default_os_cores(n) for n in (1, 2, 3, 4, 15, 16, 64)] == [0, 0, 0, 1, 1, 2, 2]


def test_custom_threads_and_os_cores(fake_sysfs):
    t, p = _plan(fake_sysfs, nodes=1, cpus=8, threads=["a", "b"], os_cores=0)
    assert p.critical == {"a": 0, "b": 1} and p.workers == tuple(range(2, 8)) and p.os == ()
    with pytest.raises(KeyError, match="no critical thread named 'zz'"):
        p.cpu_of("zz")


def test_live_plan():
    p = plan_cores(read_topology())
    assert set(p.critical) == set(CRITICAL_THREADS)
    assert p.workers


machines = st.tuples(st.sampled_from([1, 2, 4]), st.integers(1, 10), st.sampled_from([1, 2]),
                     st.integers(0, 2**64 - 1))


@settings(max_examples=40, deadline=None)
@given(machines)
def test_plan_invariants(tmp_path_factory, build_sysfs, machine):
    """Every plan: allowed CPUs only, a partition of the set, one node when it fits, no siblings
    shared by critical threads when there are enough cores."""
    nodes, cores_per_node, smt, mask = machine
    cpus = nodes * cores_per_node * smt
    root = build_sysfs(tmp_path_factory.mktemp("m"), nodes=nodes, cpus=cpus, smt=smt)
    allowed = {c for c in range(cpus) if mask >> c & 1} or {0}
    t = read_topology(root, allowed=allowed)
    p = plan_cores(t)
    crit = list(p.critical.values())
    assert set(p.critical) == set(CRITICAL_THREADS)
    assert set(crit) | set(p.workers) | set(p.os) == set(t.allowed_cpus)
    assert not set(p.os) & (set(crit) | set(p.workers))
    assert p.workers and set(p.workers) <= set(t.allowed_cpus)
    assert sum(len(v) for v in p.workers_by_node.values()) == len(p.workers)
    n_cores = len(t.cores)
    free = n_cores - min(default_os_cores(n_cores), max(0, n_cores - 1))
    if free - 1 >= len(CRITICAL_THREADS):
        # Enough cores: each critical thread has a core of its own, and no worker shares it.
        core_of = {c: core for core in t.cores for c in core}
        assert len({core_of[c] for c in crit}) == len(crit)
        assert not {c for x in crit for c in core_of[x]} & set(p.workers)
        best = max(sum(1 for core in t.cores if t.node_of(core[0]) == n.id and set(core).isdisjoint(p.os))
                   for n in t.usable_nodes)
        if best >= len(CRITICAL_THREADS):
            assert len({t.node_of(c) for c in crit}) == 1
