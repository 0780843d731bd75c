"""Each optimization switch, proved by its mechanism inside a running engine, not by its flag.

A probe processor runs in the engine thread and records what that thread really has: its CPU
mask, its scheduling policy, its memory policy, the size of each batch, the address of each batch,
the SIMD level and the prefetch distance a kernel built there receives.
"""
from __future__ import annotations

import dataclasses
import os
import threading
import types

import numpy as np
import pytest

from tallyio import Engine, OptimizationUnavailableError, simd, system
from tallyio._core import prefetch
from tallyio.hookspecs import hookimpl
from tallyio.plugins import get_plugin_manager
from tallyio.record import TX_DTYPE
from tallyio.system.allocator import live_allocator
from tallyio.system.numa import MPOL_BIND, MPOL_DEFAULT, MPOL_PREFERRED, get_mempolicy

BASE = {"batching": {"batch_size": 64, "max_age": 3600.0}}


class Probe:
    """Records, per batch, what the engine thread that runs it has."""

    def __init__(self):
        self.seen = []
        self.first = threading.Event()

    def process(self, batch):
        self.first.set()
        self.seen.append({
            "tid": threading.get_native_id(),
            "cpus": frozenset(os.sched_getaffinity(0)),
            "policy": os.sched_getscheduler(0),
            "mempolicy": get_mempolicy(),
            "rows": len(batch),
            "address": batch.__array_interface__["data"][0],
            "simd": simd.level(),
            "distance": prefetch.PrefetchingIterator(batch).distance,
        })


def _engine(optimizations: dict, **extra) -> tuple[Engine, Probe]:
    probe = Probe()
    plugin = types.SimpleNamespace(register_processors=hookimpl(
        lambda register: register("probe", lambda: probe)))
    pm = get_plugin_manager(entry_points_enabled=False)
    pm.register(plugin, "probe-plugin")
    cfg = dict(BASE, optimizations=dict({"circuit_breaker": "off"}, **optimizations), **extra)
    return Engine(cfg, plugin_manager=pm), probe


def _rows(n):
    r = np.zeros(n, dtype=TX_DTYPE)
    r["id"] = np.arange(n)
    return r


def _run(eng, n=500, inside=None):
    """Start, push ``n`` rows, call ``inside(eng)`` once the engine thread has run a batch (so it
    has tuned itself), stop; the report."""
    probe = eng.registry.processors["probe"]()
    with eng:
        assert eng.push(_rows(n)) == n
        if inside is not None:
            probe.first.wait()
            inside(eng)
    return eng.report()


@pytest.fixture(autouse=True)
def _restore_process_settings():
    level, distance = simd.level(), prefetch.default_distance()
    yield
    simd.set_level(level)
    prefetch.set_default_distance(distance)


# ---- circuit_breaker ------------------------------------------------------------------------

@pytest.mark.parametrize("mode", ["on", "off"])
def test_circuit_breaker_guards_every_batch_or_is_absent(mode):
    eng, probe = _engine({"circuit_breaker": mode})
    _run(eng)
    (slot,) = eng.slots
    if mode == "off":
        assert slot.breaker is None and eng.switches["circuit_breaker"]["state"] == "off"
    else:
        from tallyio.resilience.breaker import CircuitBreaker
        assert isinstance(slot.breaker, CircuitBreaker)
        # every batch the processor saw went through the breaker
        assert slot.breaker.stats()["successes"] == len(probe.seen) > 0
        assert eng.switches["circuit_breaker"]["state"] == "active"


# ---- batching -------------------------------------------------------------------------------

@pytest.mark.parametrize("mode", ["auto", "off"])
def test_batching_off_hands_rows_one_at_a_time(mode):
    eng, probe = _engine({"batching": mode})
    report = _run(eng)
    assert sum(s["rows"] for s in probe.seen) == report.processed == 500
    if mode == "off":
        assert eng.drain.batch_size == 1 and {s["rows"] for s in probe.seen} == {1}
    else:
        assert eng.drain.batch_size == 64 and max(s["rows"] for s in probe.seen) <= 64


# ---- cpu_affinity ---------------------------------------------------------------------------

@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="one allowed CPU: nothing to pin apart")
@pytest.mark.parametrize("mode", ["auto", "off"])
def test_cpu_affinity_pins_the_engine_thread_to_its_planned_cpu(mode):
    eng, probe = _engine({"cpu_affinity": mode, "realtime_priority": "off", "numa": "off"})
    seen = {}
    _run(eng, inside=lambda e: seen.update(
        live=frozenset(os.sched_getaffinity(e._engine_thread.native_id)),
        ingest_plan=e.plan.cpu_of("mempool_ingest")))
    cpu = eng.plan.cpu_of("strategy_scanner")
    masks = {s["cpus"] for s in probe.seen}
    if mode == "off":
        assert masks == {frozenset(os.sched_getaffinity(0))} == {seen["live"]}
        assert eng.switches["cpu_affinity"]["state"] == "off" and not eng.tunings
    else:
        assert masks == {frozenset({cpu})} and seen["live"] == {cpu}
        assert eng.tunings["strategy_scanner"].cpu == cpu
        assert eng.switches["cpu_affinity"]["state"] == "active"


# ---- realtime_priority ----------------------------------------------------------------------

def test_realtime_priority_sets_sched_fifo_where_permitted():
    permitted = system.realtime_permission(50) is None
    eng, probe = _engine({"realtime_priority": "auto", "cpu_affinity": "off", "numa": "off"})
    _run(eng)
    policies = {s["policy"] for s in probe.seen}
    sw = eng.switches["realtime_priority"]
    if permitted:
        assert policies == {os.SCHED_FIFO} and sw["state"] == "active"
    else:
        # not permitted here: the thread keeps the normal policy and the switch says why
        assert policies == {os.SCHED_OTHER} and sw["state"] == "inactive" and sw["reason"]
        eng, _ = _engine({"realtime_priority": "on"})
        with pytest.raises(OptimizationUnavailableError, match="realtime_priority"):
            eng.start()


def test_realtime_priority_off_leaves_the_policy():
    eng, probe = _engine({"realtime_priority": "off", "cpu_affinity": "off", "numa": "off"})
    _run(eng)
    assert {s["policy"] for s in probe.seen} == {os.SCHED_OTHER}


# ---- numa -----------------------------------------------------------------------------------

def _two_nodes(monkeypatch):
    """This machine seen as two nodes of one CPU each; the core plan's critical node is 0 (the
    one node the kernel really has, so the pool's mbind and the thread's mempolicy take)."""
    import tallyio.engine as engine_mod
    monkeypatch.setattr(system, "read_topology", lambda: system.synthetic_topology(nodes=2, cpus=2))
    plan_of = engine_mod.engine_plan
    monkeypatch.setattr(engine_mod, "engine_plan",
                        lambda topo: dataclasses.replace(plan_of(topo), critical_node=0))


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2 or not os.path.exists("/sys/devices/system/node/node0"),
                    reason="needs CPUs 0 and 1 and a NUMA node 0")
def test_numa_binds_engine_threads_and_batch_buffers_to_the_plan_node(monkeypatch):
    _two_nodes(monkeypatch)
    eng, probe = _engine({"numa": "auto", "cpu_affinity": "off", "realtime_priority": "off",
                          "memory_pool": "on"})
    seen = {}

    def inside(e):
        seen["buffer_policy"] = get_mempolicy(e._batch_buffers[0].__array_interface__["data"][0])
        seen["engine_cpus"] = frozenset(os.sched_getaffinity(e._engine_thread.native_id))

    _run(eng, inside=inside)
    assert eng.switches["numa"]["state"] == "active" and eng.numa_node == 0
    # the engine thread: memory preferred from node 0, CPUs confined to node 0's
    assert {s["mempolicy"] for s in probe.seen} == {(MPOL_PREFERRED, frozenset({0}))}
    assert {s["cpus"] for s in probe.seen} == {frozenset({0})} == {seen["engine_cpus"]}
    # the batch buffers: bound to node 0 by mbind
    assert seen["buffer_policy"] == (MPOL_BIND, frozenset({0}))
    assert eng.numa_bindings["strategy_scanner"].node == 0


def test_numa_on_one_node_is_no_effect_and_binds_nothing(monkeypatch):
    monkeypatch.setattr(system, "read_topology", lambda: system.synthetic_topology(nodes=1, cpus=2))
    eng, probe = _engine({"numa": "auto", "cpu_affinity": "off", "realtime_priority": "off",
                          "memory_pool": "on"})
    seen = {}
    _run(eng, inside=lambda e: seen.update(policy=get_mempolicy(
        e._batch_buffers[0].__array_interface__["data"][0])))
    sw = eng.switches["numa"]
    assert sw["state"] == "no effect" and not sw["active"] and "one NUMA node" in sw["reason"]
    assert eng.numa_node is None and not eng.numa_bindings
    assert {s["mempolicy"][0] for s in probe.seen} == {MPOL_DEFAULT}
    assert seen["policy"][0] == MPOL_DEFAULT


# ---- memory_pool ----------------------------------------------------------------------------

@pytest.mark.parametrize("mode", ["on", "off"])
def test_memory_pool_batches_live_in_the_pool_blocks(mode):
    eng, probe = _engine({"memory_pool": mode})
    spans, bases = [], []

    def look(e):
        for b in e._batch_buffers:
            spans.append((b.__array_interface__["data"][0],
                          b.__array_interface__["data"][0] + b.nbytes))
            bases.append(b.base)
    _run(eng, inside=look)
    # the batches are views of the engine's two reused buffers either way
    assert len(spans) == 2 and all(any(lo <= s["address"] < hi for lo, hi in spans)
                                   for s in probe.seen)
    if mode == "on":
        assert eng.pool is not None and eng.pool.stats()["classes"]["huge"]["high_water"] == 2
        assert all(b is not None for b in bases)  # views of the pool's blocks' memory
    else:
        assert eng.pool is None and all(b is None for b in bases)  # plain numpy allocations


# ---- prefetch -------------------------------------------------------------------------------

@pytest.mark.parametrize("mode,distance", [("auto", prefetch.DEFAULT_DISTANCE), ("on", prefetch.DEFAULT_DISTANCE),
                                           ("off", 0)])
def test_prefetch_switch_sets_the_distance_kernels_receive(mode, distance):
    prefetch.set_default_distance(3)  # neither value: the engine must set it
    eng, probe = _engine({"prefetch": mode})
    _run(eng)
    assert {s["distance"] for s in probe.seen} == {distance}
    assert prefetch.default_distance() == eng.prefetch_distance == distance
    sw = eng.switches["prefetch"]
    # the engine's own hot path calls no prefetching kernel: it says so
    assert sw["state"] == ("off" if mode == "off" else "no effect") and not sw["active"]
    assert f"distance set to {distance}" in sw["reason"]


def test_gather_and_iterator_take_the_default_distance():
    table = np.arange(100, dtype=np.int64)
    old = prefetch.set_default_distance(0)
    assert prefetch.PrefetchingIterator(table).distance == 0
    assert prefetch.PrefetchingIterator(table, 5).distance == 5  # an explicit distance wins
    assert list(prefetch.gather(table, [3, 1])) == [3, 1]
    assert prefetch.set_default_distance(old) == 0
    with pytest.raises(TypeError):
        prefetch.set_default_distance(None)
    with pytest.raises(ValueError):
        prefetch.set_default_distance(-1)


# ---- simd -----------------------------------------------------------------------------------

@pytest.mark.parametrize("mode", ["auto", "off"])
def test_simd_switch_picks_the_level_the_kernels_run(mode):
    eng, probe = _engine({"simd": mode})
    _run(eng)
    want = "scalar" if mode == "off" else simd.available_levels()[-1]
    assert {s["simd"] for s in probe.seen} == {want}
    assert eng.switches["simd"]["reason"] == f"level {want}"


# ---- allocator ------------------------------------------------------------------------------

def test_allocator_in_a_library_engine_is_what_is_live():
    live = live_allocator()
    eng, _ = _engine({"allocator": "auto"})
    _run(eng)
    sw = eng.switches["allocator"]
    if live == "jemalloc":
        assert sw["state"] == "active" and sw["active"]
    else:
        # the library cannot swap malloc: no effect, and the reason names the ways in
        assert sw["state"] == "no effect" and not sw["active"] and "ensure_jemalloc" in sw["reason"]
        eng, _ = _engine({"allocator": "on"})
        with pytest.raises(OptimizationUnavailableError, match="allocator.*ensure_jemalloc|allocator.*not installed"):
            eng.start()


def test_allocator_in_process_states(tmp_path):
    from tallyio.system.allocator import in_process_allocator
    maps = tmp_path / "maps"
    maps.write_text("7f00-7f01 r-xp 0 0:0 0 /usr/lib/x86_64-linux-gnu/libjemalloc.so.2\n")
    assert in_process_allocator("auto", maps_path=str(maps))["state"] == "active"
    assert in_process_allocator("on", maps_path=str(maps))["state"] == "active"
    assert in_process_allocator("off", maps_path=str(maps))["state"] == "off"
    maps.write_text("7f00-7f01 r-xp 0 0:0 0 /usr/lib/x86_64-linux-gnu/libc.so.6\n")
    d = in_process_allocator("auto", maps_path=str(maps))
    assert d["state"] == "no effect" and not d["active"]
    with pytest.raises(OptimizationUnavailableError, match="allocator is 'on' but unavailable: glibc"):
        in_process_allocator("on", maps_path=str(maps))


def test_allocator_on_under_jemalloc_is_active(tmp_path):
    """A fresh interpreter started the documented way (jemalloc_env) runs an engine with the
    allocator "on" and reports it active."""
    import shutil
    import subprocess
    import sys
    env = dict(os.environ)
    if system.find_jemalloc() is None:
        # no jemalloc on this machine: a stand-in shared library of its name, found the documented
        # way ($TALLYIO_JEMALLOC), proves the preload path; the allocator itself is jemalloc's
        cc = shutil.which("cc") or shutil.which("gcc")
        assert cc, "a C compiler builds the compiled core; it is there"
        src = tmp_path / "stand_in.c"
        src.write_text("int tallyio_jemalloc_stand_in;\n")
        lib = tmp_path / "libjemalloc.so.2"
        subprocess.run([cc, "-shared", "-fPIC", "-o", str(lib), str(src)], check=True)
        env["TALLYIO_JEMALLOC"] = str(lib)
    code = ("from tallyio.system.allocator import in_process_allocator, live_allocator; "
            "print(live_allocator(), in_process_allocator('on')['state'])")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       env=dict(system.jemalloc_env(env)))
    assert p.returncode == 0, p.stderr
    assert p.stdout.split() == ["jemalloc", "active"]
