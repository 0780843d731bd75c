"""Real-time scheduling (SCHED_FIFO) for latency-critical threads.

Linux lets a thread take SCHED_FIFO when the process has CAP_SYS_NICE or its RLIMIT_RTPRIO soft
limit is at least the priority asked for (sched(7)). Even then a container may refuse: with cgroup
v1's ``cpu.rt_runtime_us`` at 0 (Docker's default) the kernel answers EPERM. So the check is in two
steps: read the capability and the limit, then try it on a short-lived probe thread.
"""
from __future__ import annotations

import logging
import os
import resource
import threading
from dataclasses import dataclass
from typing import Callable

from tallyio.system._errors import OptimizationUnavailableError, check_mode
from tallyio.system.affinity import _tid

log = logging.getLogger("tallyio.system")

CAP_SYS_NICE = 23  # linux/capability.h
DEFAULT_PRIORITY = 50
_FIX = ("grant CAP_SYS_NICE (docker run --cap-add SYS_NICE; setcap cap_sys_nice+ep; systemd "
        "AmbientCapabilities=CAP_SYS_NICE) or raise the rtprio limit (limits.conf, systemd LimitRTPRIO)")


def check_priority(priority) -> int:
    if isinstance(priority, bool) or not isinstance(priority, int) or not 1 <= priority <= 99:
        raise ValueError(f"priority must be an integer in 1..99, got {priority!r}")
    return priority


def has_cap_sys_nice(status_path: str = "/proc/self/status") -> bool | None:
    """Whether CAP_SYS_NICE is in the effective set; None when the status file says nothing."""
    try:
        with open(status_path) as f:
            for line in f:
                if line.startswith("CapEff:"):
                    return bool(int(line.split()[1], 16) >> CAP_SYS_NICE & 1)
    except (OSError, ValueError, IndexError):
        return None
    return None


def rtprio_limit() -> int | None:
    """RLIMIT_RTPRIO's soft limit (99 stands for unlimited); None where the platform lacks it."""
    if not hasattr(resource, "RLIMIT_RTPRIO"):
        return None
    soft, _ = resource.getrlimit(resource.RLIMIT_RTPRIO)
    return 99 if soft == resource.RLIM_INFINITY else int(soft)


def _probe(priority: int) -> str | None:
    """Try SCHED_FIFO on a throwaway thread; None if the kernel allows it, else why not."""
    result: list[str | None] = []

    def body():
        try:
            os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(priority))
            result.append(None)
        except OSError as e:
            result.append(f"sched_setscheduler(SCHED_FIFO, {priority}) refused: {e.strerror}; "
                          "in a container the cgroup may have no real-time budget (cpu.rt_runtime_us = 0)")

    # The probe thread exits right after the call; its policy dies with it.
    t = threading.Thread(target=body, name="tallyio-rt-probe", daemon=True)
    t.start()
    t.join()
    return result[0] if result else "real-time probe thread did not report"


def realtime_permission(priority: int = DEFAULT_PRIORITY, *, probe: bool = True) -> str | None:
    """None if this process may run threads at SCHED_FIFO ``priority``, else what is missing."""
    check_priority(priority)
    if not hasattr(os, "sched_setscheduler") or not hasattr(os, "SCHED_FIFO"):
        return "this platform has no SCHED_FIFO"
    cap = has_cap_sys_nice()
    limit = rtprio_limit()
    if not cap and (limit is None or limit < priority):
        return (f"no CAP_SYS_NICE and RLIMIT_RTPRIO is {limit} (priority {priority} needs CAP_SYS_NICE or "
                f"RLIMIT_RTPRIO >= {priority}): {_FIX}")
    return _probe(priority) if probe else None


@dataclass(frozen=True)
class RealtimeStatus:
    """What :func:`set_realtime` did: ``active`` or not and why; ``previous`` (policy, priority)."""

    mode: str
    active: bool
    reason: str
    priority: int
    previous: tuple[int, int] | None = None


def set_realtime(mode: str = "auto", priority: int = DEFAULT_PRIORITY, thread=None, *,
                 check: Callable[[int], str | None] | None = None,
                 setscheduler: Callable = None) -> RealtimeStatus:
    """Put a thread (the calling one by default) under SCHED_FIFO at ``priority`` (1..99).

    ``mode`` ``"off"`` does nothing; ``"auto"`` logs and returns an inactive status when the
    permission is missing; ``"on"`` raises ``OptimizationUnavailableError`` saying what is missing.
    ``check(priority) -> reason | None`` and ``setscheduler`` replace the permission check and
    ``os.sched_setscheduler`` (tests inject them). Undo with :func:`restore_normal`.
    """
    check_mode("realtime_priority mode", mode)
    check_priority(priority)
    if mode == "off":
        return RealtimeStatus(mode, False, "off in config", priority)
    tid = _tid(thread)
    check = check or (lambda p: realtime_permission(p, probe=False))
    setscheduler = setscheduler or os.sched_setscheduler
    reason = check(priority)
    previous = None
    if reason is None:
        previous = (os.sched_getscheduler(tid), os.sched_getparam(tid).sched_priority)
        try:
            setscheduler(tid, os.SCHED_FIFO, os.sched_param(priority))
        except OSError as e:
            reason = (f"sched_setscheduler(SCHED_FIFO, {priority}) refused: {e.strerror}; in a container the "
                      f"cgroup may have no real-time budget (cpu.rt_runtime_us = 0), else {_FIX}")
            previous = None
    if reason is not None:
        if mode == "on":
            raise OptimizationUnavailableError("realtime_priority", reason)
        log.warning("real-time priority not active, carrying on with normal scheduling: %s", reason)
        return RealtimeStatus(mode, False, reason, priority)
    return RealtimeStatus(mode, True, f"SCHED_FIFO priority {priority}", priority, previous)


def restore_normal(thread=None, previous: tuple[int, int] | None = None) -> None:
    """Put a thread back under ``previous`` (policy, priority), by default SCHED_OTHER."""
    policy, prio = previous if previous is not None else (os.SCHED_OTHER, 0)
    os.sched_setscheduler(_tid(thread), policy, os.sched_param(prio))


def current_policy(thread=None) -> tuple[int, int]:
    """A thread's (scheduling policy, priority), e.g. ``(os.SCHED_FIFO, 50)``."""
    tid = _tid(thread)
    return os.sched_getscheduler(tid), os.sched_getparam(tid).sched_priority
