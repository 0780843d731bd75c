import os
import threading

import pytest

from tallyio.system import (CorePlan, allowed_cpus, pin_named, pin_thread, plan_cores, read_topology,
                            thread_affinity, tune_thread, unpin_thread)
from tallyio.system._errors import OptimizationUnavailableError


def _in_thread(fn):
    """Run ``fn`` in a fresh thread (so pinning never sticks to the test runner) and return its
    result or raise its exception."""
    box = {}

    def body():
        try:
            box["result"] = fn()
        except BaseException as e:  # handed back to the test
            box["error"] = e

    t = threading.Thread(target=body)
    t.start()
    t.join(timeout=60)
    assert not t.is_alive()
    if "error" in box:
        raise box["error"]
    return box["result"]


def test_pin_calling_thread_reads_back_and_restores():
    target = max(allowed_cpus())

    def body():
        before = frozenset(os.sched_getaffinity(0))
        try:
            prev = pin_thread(target)
            assert prev == before
            seen = (frozenset(os.sched_getaffinity(0)), thread_affinity())
        finally:
            os.sched_setaffinity(0, before)
        return seen, frozenset(os.sched_getaffinity(0)) == before

    (native, ours), restored = _in_thread(body)
    assert native == ours == {target}
    assert restored
    # The runner's own thread was never touched.
    assert frozenset(os.sched_getaffinity(0)) == allowed_cpus()


def test_pin_another_thread_by_object_and_native_id():
    target = min(allowed_cpus())
    ready, done = threading.Event(), threading.Event()
    seen = {}

    def worker():
        ready.set()
        done.wait(timeout=60)
        seen["mask"] = frozenset(os.sched_getaffinity(0))

    t = threading.Thread(target=worker)
    t.start()
    try:
        assert ready.wait(timeout=60)
        pin_thread(target, t)
        assert thread_affinity(t) == {target}
        pin_thread(allowed_cpus(), t.native_id)
        assert thread_affinity(t.native_id) == allowed_cpus()
        pin_thread([target], t)
    finally:
        done.set()
        t.join(timeout=60)
    assert seen["mask"] == {target}
    assert frozenset(os.sched_getaffinity(0)) == allowed_cpus()


def test_unpin_and_pin_named():
    plan = plan_cores(read_topology())

    def body():
        try:
            pin_named(plan, "network")
            pinned = thread_affinity()
            unpin_thread()
            return pinned, thread_affinity()
        finally:
            os.sched_setaffinity(0, allowed_cpus())

    pinned, after = _in_thread(body)
    assert pinned == {plan.cpu_of("network")}
    assert after == allowed_cpus()
    with pytest.raises(KeyError, match="no critical thread named 'nope'"):
        pin_named(plan, "nope")


def test_pin_outside_allowed_set_names_cpu():
    bad = max(allowed_cpus()) + 1000
    with pytest.raises(ValueError, match=f"cpu {bad} is not in the allowed set"):
        pin_thread(bad)
    with pytest.raises(ValueError, match="cpu 3 is not in the allowed set 0-1"):
        pin_thread(3, allowed={0, 1})
    with pytest.raises(ValueError, match="at least one CPU"):
        pin_thread([])
    with pytest.raises(ValueError, match="got True"):
        pin_thread(True)
    with pytest.raises(ValueError, match="must be started"):
        pin_thread(0, threading.Thread(target=lambda: None))
    with pytest.raises(ValueError, match="thread must be"):
        pin_thread(0, "main")
    assert frozenset(os.sched_getaffinity(0)) == allowed_cpus()


def test_kernel_refusal_is_an_oserror_naming_cpus():
    # A CPU the kernel does not have, passed through a widened allowed set.
    def body():
        try:
            pin_thread(4000, allowed={4000})
        finally:
            os.sched_setaffinity(0, allowed_cpus())

    with pytest.raises(OSError, match="cpus 4000"):
        _in_thread(body)


def test_tune_thread_modes():
    t = read_topology()
    plan = plan_cores(t)

    def body():
        try:
            on = tune_thread("metrics", plan, affinity_mode="on", realtime_mode="off")
            pinned = thread_affinity()
            off = tune_thread("metrics", plan, affinity_mode="off")
            return on, pinned, off
        finally:
            os.sched_setaffinity(0, allowed_cpus())

    on, pinned, off = _in_thread(body)
    assert on.cpu == plan.cpu_of("metrics") and pinned == {on.cpu}
    assert on.previous_cpus == allowed_cpus() and on.realtime.active is False
    assert off.cpu is None and off.affinity_reason == "off in config"

    # A plan whose CPU the process may not use: auto carries on unpinned, on refuses.
    bogus = CorePlan(critical={"metrics": 4000}, workers=(0,), os=(), critical_node=0, workers_by_node={0: (0,)})
    auto = _in_thread(lambda: tune_thread("metrics", bogus, affinity_mode="auto"))
    assert auto.cpu is None and "cpu 4000" in auto.affinity_reason
    with pytest.raises(OptimizationUnavailableError, match="cpu_affinity is 'on' but unavailable.*cpu 4000"):
        _in_thread(lambda: tune_thread("metrics", bogus, affinity_mode="on"))
    with pytest.raises(ValueError, match="affinity_mode must be 'auto', 'on' or 'off', got 'yes'"):
        tune_thread("metrics", plan, affinity_mode="yes")
