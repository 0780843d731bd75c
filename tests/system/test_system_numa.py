import os
import threading
from collections import Counter

import pytest
from hypothesis import given, settings, strategies as st

from tallyio.errors import RingClosedError
from tallyio.system import NumaScheduler, current_node, format_cpulist, plan_cores, read_topology
from tallyio.system.affinity import allowed_cpus
from tallyio.system.numa import stable_hash


class FakeMemoryPool:
    """Stands in for tallyio.MemoryPool(numa_node=...)."""

    def __init__(self, numa_node=None):
        self.numa_node = numa_node


def _where():
    return current_node(), frozenset(os.sched_getaffinity(0)), threading.current_thread().name


def test_one_node_degenerates_to_one_pool():
    t = read_topology()
    made = []
    with NumaScheduler(t, pool_factory=lambda numa_node: made.append(numa_node) or FakeMemoryPool(numa_node)) as s:
        assert s.nodes == (0,) and made == [0]
        futs = [s.submit(_where, key=k) for k in ("a", 1, None, b"x")]
        results = [f.result(timeout=60) for f in futs]
        assert {r[0] for r in results} == {0}
        # Workers are pinned to the node's CPUs (here: every allowed CPU).
        assert {r[1] for r in results} == {allowed_cpus()}
        assert s.node_for("anything") == 0
        assert s.memory_pool(0).numa_node == 0
        assert s.submit(lambda: s.memory_pool().numa_node).result(timeout=60) == 0
    assert s.stats()[0] == {"cpus": format_cpulist(allowed_cpus()), "submitted": 5, "completed": 5, "failed": 0}
    assert current_node() is None


def test_two_simulated_nodes_really_pinned(fake_sysfs):
    """A made-up two-node machine on this machine's own two CPUs: node 0 = cpu 0, node 1 = cpu 1.
    Workers really get pinned; tasks land on the node their key maps to."""
    cpus = sorted(allowed_cpus())
    if len(cpus) < 2:
        cpus = cpus * 2  # a one-CPU runner: both nodes on the same CPU, routing still checked
    t = read_topology(fake_sysfs(nodes=[[cpus[0]], [cpus[-1]]]), allowed=set(cpus))
    owner = {"WETH": 0, "USDC": 1}
    with NumaScheduler(t, key_to_node=owner, pool_factory=FakeMemoryPool) as s:
        assert s.nodes == (0, 1)
        got = {k: s.submit(_where, key=k).result(timeout=60) for k in owner}
        pools = {k: s.submit(lambda: s.memory_pool().numa_node, key=k).result(timeout=60) for k in owner}
    assert got["WETH"][0] == 0 and got["WETH"][1] == {cpus[0]}
    assert got["USDC"][0] == 1 and got["USDC"][1] == {cpus[-1]}
    assert "node1" in got["USDC"][2]
    assert pools == owner
    assert s.pin_errors == []


@pytest.mark.parametrize("nodes,cpus,smt", [(2, 8, 1), (4, 16, 2), (4, 64, 2)])
def test_simulated_multi_node_placement(fake_sysfs, nodes, cpus, smt):
    t = read_topology(fake_sysfs(nodes=nodes, cpus=cpus, smt=smt))
    plan = plan_cores(t)
    pinned = []
    lock = threading.Lock()

    def pin(cpuset):
        with lock:
            pinned.append((current_node(), cpuset))

    with NumaScheduler(t, plan, pin=pin, workers_per_node=2, pool_factory=FakeMemoryPool) as s:
        assert s.nodes == tuple(sorted(plan.workers_by_node))
        futs = [s.submit(current_node, key=k) for k in range(200)]
        ran = [f.result(timeout=60) for f in futs]
    assert ran == [s.nodes[stable_hash(k) % len(s.nodes)] for k in range(200)]
    assert set(ran) == set(s.nodes)
    # Every worker pinned to exactly its own node's worker CPUs, none elsewhere.
    for node, cpuset in pinned:
        assert cpuset == frozenset(plan.workers_by_node[node])
        assert all(t.node_of(c) == node for c in cpuset)
    assert {p.memory_pool.numa_node for p in s.pools.values()} == set(s.nodes)


def test_routing_by_callable_explicit_node_and_round_robin(fake_sysfs):
    t = read_topology(fake_sysfs(nodes=4, cpus=8))
    with NumaScheduler(t, pin=False, workers_per_node=1, key_to_node=lambda k: k % 4) as s:
        assert [s.submit(current_node, key=k).result(timeout=60) for k in range(8)] == [0, 1, 2, 3] * 2
        assert s.submit(current_node, node=2).result(timeout=60) == 2
        rr = [s.submit(current_node).result(timeout=60) for _ in range(8)]
        assert Counter(rr) == {0: 2, 1: 2, 2: 2, 3: 2}
        with pytest.raises(ValueError, match="node must be one of 0, 1, 2, 3, got 7"):
            s.submit(current_node, node=7)
    with NumaScheduler(t, pin=False, workers_per_node=1, key_to_node=lambda k: 9) as s:
        with pytest.raises(ValueError, match="key_to_node sent key 'x' to node 9"):
            s.submit(current_node, key="x")
    # A mapping miss falls back to the hash.
    with NumaScheduler(t, pin=False, workers_per_node=1, key_to_node={"a": 3}) as s:
        assert s.node_for("a") == 3
        assert s.node_for("b") == s.nodes[stable_hash("b") % 4]


def test_pin_failures_are_kept_not_fatal(fake_sysfs):
    # A made-up 16-CPU machine pinned for real on a small runner: CPUs that do not exist.
    t = read_topology(fake_sysfs(nodes=2, cpus=16))
    with NumaScheduler(t, workers_per_node=1) as s:
        assert sorted(s.submit(current_node, node=n).result(timeout=60) for n in s.nodes) == [0, 1]
    assert {n for n, _ in s.pin_errors} == {0, 1}
    assert all("not in the allowed set" in e or "failed" in e for _, e in s.pin_errors)


def test_shutdown_refuses_and_counts_failures(fake_sysfs):
    t = read_topology(fake_sysfs(nodes=2, cpus=4))
    s = NumaScheduler(t, pin=False, workers_per_node=1)
    boom = s.submit(lambda: 1 / 0, node=1)
    with pytest.raises(ZeroDivisionError):
        boom.result(timeout=60)
    s.shutdown()
    with pytest.raises(RingClosedError, match="after shutdown"):
        s.submit(current_node)
    assert s.stats()[1] == {"cpus": "2-3", "submitted": 1, "completed": 0, "failed": 1}


def test_bad_arguments(fake_sysfs):
    t = read_topology(fake_sysfs(nodes=1, cpus=2))
    with pytest.raises(ValueError, match="workers_per_node must be an integer >= 1, got 0"):
        NumaScheduler(t, workers_per_node=0)
    with pytest.raises(ValueError, match="key_to_node must be a mapping or a callable, got 5"):
        NumaScheduler(t, key_to_node=5)
    with pytest.raises(ValueError, match="pin must be True, False or a callable, got 'yes'"):
        NumaScheduler(t, pin="yes")


def test_stress_every_task_counted(fake_sysfs):
    """Eight submitting threads, four nodes: every task runs exactly once, on its key's node."""
    t = read_topology(fake_sysfs(nodes=4, cpus=8))
    per_thread, n_threads = 2_000, 8
    seen = Counter()
    lock = threading.Lock()

    def task(key):
        with lock:
            seen[(key, current_node())] += 1

    with NumaScheduler(t, pin=False, workers_per_node=2) as s:
        start = threading.Barrier(n_threads)
        errors = []

        def producer(tid):
            try:
                start.wait(timeout=60)
                for i in range(per_thread):
                    s.submit(task, (tid, i), key=(tid, i))
            except BaseException as e:
                errors.append(e)

        threads = [threading.Thread(target=producer, args=(i,)) for i in range(n_threads)]
        for th in threads:
            th.start()
        for th in threads:
            th.join(timeout=120)
    assert not errors
    total = per_thread * n_threads
    assert sum(seen.values()) == total and len(seen) == total
    assert all(node == s.nodes[stable_hash(key) % 4] for key, node in seen)
    st_ = s.stats()
    assert sum(v["submitted"] for v in st_.values()) == total
    assert sum(v["completed"] for v in st_.values()) == total


@settings(max_examples=30, deadline=None)
@given(st.lists(st.one_of(st.integers(), st.text(max_size=8), st.binary(max_size=8)), max_size=30))
def test_routing_matches_model(keys):
    """Routing against a plain model: the node is nodes[stable_hash(key) % len(nodes)], and
    stable_hash is deterministic (unlike hash(str), salted per process)."""
    import zlib

    def model(k):
        if isinstance(k, int):
            return k & (2**64 - 1)
        return zlib.crc32(k.encode() if isinstance(k, str) else k)

    assert [stable_hash(k) for k in keys] == [model(k) for k in keys]


def test_stable_hash_is_the_same_in_another_process():
    import subprocess
    import sys

    keys = ["WETH", "0xdeadbeef", "USDC/WETH"]
    code = "from tallyio.system.numa import stable_hash; print([stable_hash(k) for k in %r])" % (keys,)
    outs = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                           env={**os.environ, "PYTHONHASHSEED": seed}).stdout.strip() for seed in ("1", "2")}
    assert outs == {str([stable_hash(k) for k in keys])}


def test_with_the_real_memory_pool():
    """The pool factory the engine passes: tallyio's MemoryPool, bound (mbind) to each node."""
    from tallyio._core.pool import MemoryPool

    def factory(numa_node):
        return MemoryPool(small=8, medium=1, large=1, huge=0, numa_node=numa_node)

    with NumaScheduler(read_topology(), pool_factory=factory) as s:
        def use():
            pool = s.memory_pool()
            block = pool.allocate(64)
            view = memoryview(block)
            view[:3] = b"abc"
            ok = bytes(view[:3]) == b"abc"
            view.release()
            pool.release(block)
            return current_node(), pool.numa_node, ok

        assert s.submit(use, key="WETH").result(timeout=60) == (s.nodes[0], s.nodes[0], True)
        assert all(p.memory_pool.stats()["numa_bound"] for p in s.pools.values())
