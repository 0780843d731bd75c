import os
import threading

import pytest

from tallyio.system import current_policy, realtime_permission, restore_normal, set_realtime
from tallyio.system._errors import OptimizationUnavailableError
from tallyio.system.priority import has_cap_sys_nice, rtprio_limit

NO_PERM = "no CAP_SYS_NICE and RLIMIT_RTPRIO is 0"


def _in_thread(fn):
    box = {}

    def body():
        try:
            box["result"] = fn()
        except BaseException as e:
            box["error"] = e
        finally:
            # Whatever happened, this thread ends under normal scheduling.
            box["final"] = current_policy()
            restore_normal()

    t = threading.Thread(target=body)
    t.start()
    t.join(timeout=60)
    assert not t.is_alive()
    if "error" in box:
        raise box["error"]
    return box["result"]


def test_off_does_nothing():
    calls = []
    s = set_realtime("off", 10, check=lambda p: calls.append(p), setscheduler=lambda *a: calls.append(a))
    assert not s.active and s.reason == "off in config" and calls == []


def test_auto_without_permission_carries_on(caplog):
    calls = []

    def body():
        s = set_realtime("auto", 20, check=lambda p: NO_PERM, setscheduler=lambda *a: calls.append(a))
        return s, current_policy()

    s, policy = _in_thread(body)
    assert not s.active and s.reason == NO_PERM and calls == []
    assert policy == (os.SCHED_OTHER, 0)
    assert any(NO_PERM in r.getMessage() for r in caplog.records)


def test_on_without_permission_fails_saying_what_is_missing():
    with pytest.raises(OptimizationUnavailableError, match="realtime_priority is 'on' but unavailable: no CAP_SYS_NICE"):
        set_realtime("on", 20, check=lambda p: NO_PERM)


def test_kernel_refusal_counts_as_missing_permission():
    def refuse(*a):
        raise PermissionError(1, "Operation not permitted")

    s = _in_thread(lambda: set_realtime("auto", 5, check=lambda p: None, setscheduler=refuse))
    assert not s.active and "Operation not permitted" in s.reason and "rt_runtime_us" in s.reason
    with pytest.raises(OptimizationUnavailableError, match="Operation not permitted"):
        _in_thread(lambda: set_realtime("on", 5, check=lambda p: None, setscheduler=refuse))


def test_permitted_branch_calls_the_scheduler():
    calls = []
    s = _in_thread(lambda: set_realtime("on", 42, check=lambda p: None, setscheduler=lambda *a: calls.append(a)))
    assert s.active and s.previous == (os.SCHED_OTHER, 0)
    (tid, policy, param), = calls
    assert policy == os.SCHED_FIFO and param.sched_priority == 42 and tid > 0


@pytest.mark.parametrize("mode", ["auto", "on"])
def test_real_attempt_restores_sched_other(mode):
    """The real thing on this machine: root in a VM may well be allowed; either way the thread
    ends under SCHED_OTHER and the outcome agrees with the permission check."""
    expected = realtime_permission(10)

    def body():
        try:
            s = set_realtime(mode, 10)
        except OptimizationUnavailableError as e:
            return "raised", str(e), current_policy()
        try:
            seen = current_policy()
        finally:
            if s.active:
                restore_normal(previous=s.previous)
        return s, seen, current_policy()

    outcome, seen, after = _in_thread(body)
    assert after == (os.SCHED_OTHER, 0)
    if expected is None:
        assert outcome.active and seen == (os.SCHED_FIFO, 10)
    elif mode == "auto":
        assert not outcome.active and seen == (os.SCHED_OTHER, 0)
    else:
        assert outcome == "raised" and "realtime_priority" in seen


def test_validation():
    with pytest.raises(ValueError, match="priority must be an integer in 1..99, got 0"):
        set_realtime("auto", 0)
    with pytest.raises(ValueError, match="got 100"):
        set_realtime("auto", 100)
    with pytest.raises(ValueError, match="realtime_priority mode must be 'auto', 'on' or 'off', got 'yes'"):
        set_realtime("yes")


def test_permission_readers(tmp_path):
    status = tmp_path / "status"
    status.write_text("Name:\tx\nCapEff:\t0000000000800000\n")  # bit 23 only
    assert has_cap_sys_nice(str(status)) is True
    status.write_text("Name:\tx\nCapEff:\t0000000000000000\n")
    assert has_cap_sys_nice(str(status)) is False
    assert has_cap_sys_nice(str(tmp_path / "missing")) is None
    assert isinstance(rtprio_limit(), int)
    reason = realtime_permission(10)
    assert reason is None or "SCHED_FIFO" in reason or "CAP_SYS_NICE" in reason
