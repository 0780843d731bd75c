"""One call for an engine thread at start: pin it to its planned CPU and raise its priority."""
from __future__ import annotations

import logging
from dataclasses import dataclass

from tallyio.system import affinity
from tallyio.system._errors import OptimizationUnavailableError, check_mode
from tallyio.system.plan import CorePlan
from tallyio.system.priority import DEFAULT_PRIORITY, RealtimeStatus, set_realtime

log = logging.getLogger("tallyio.system")


@dataclass(frozen=True)
class ThreadTuning:
    """What :func:`tune_thread` did: the CPU pinned to (None: not pinned, see ``affinity_reason``),
    the previous CPU set (to undo), and the real-time status."""

    name: str
    cpu: int | None
    previous_cpus: frozenset[int] | None
    affinity_reason: str
    realtime: RealtimeStatus


def tune_thread(name: str, plan: CorePlan, *, affinity_mode: str = "auto", realtime_mode: str = "off",
                priority: int = DEFAULT_PRIORITY, thread=None, **realtime_kw) -> ThreadTuning:
    """Pin engine thread ``name`` (the calling thread by default) to ``plan``'s CPU for it and
    set its real-time priority, each per its switch mode (``"auto"``/``"on"``/``"off"``).

    ``affinity_mode`` ``"on"`` raises ``OptimizationUnavailableError`` if pinning fails;
    ``"auto"`` logs and goes on. ``realtime_kw`` goes to :func:`set_realtime` (``check``,
    ``setscheduler``). ``KeyError`` naming ``name`` if the plan has no such thread.
    """
    check_mode("affinity_mode", affinity_mode)
    cpu = plan.cpu_of(name)
    pinned, previous, why = None, None, "off in config"
    if affinity_mode != "off":
        try:
            previous = affinity.pin_thread(cpu, thread)
            pinned, why = cpu, f"pinned to cpu {cpu}"
        except (OSError, ValueError) as e:
            if affinity_mode == "on":
                raise OptimizationUnavailableError("cpu_affinity", f"thread {name!r}: {e}") from e
            why = str(e)
            log.warning("thread %s not pinned, carrying on unpinned: %s", name, e)
    rt = set_realtime(realtime_mode, priority, thread, **realtime_kw)
    return ThreadTuning(name, pinned, previous, why, rt)
