"""Per-thread CPU pinning.

Linux applies ``sched_setaffinity`` to one thread when given a thread id, so each engine thread
pins itself (or is pinned) by its native id without touching the others.
"""
from __future__ import annotations

import os
import threading
from typing import Iterable

from tallyio.system.plan import CorePlan
from tallyio.system.topology import format_cpulist

# The process's CPU set as it stood when TallyIO was imported, before any thread was pinned: a
# pinned thread's own mask is no guide to what the process may use.
_PROCESS_ALLOWED: frozenset[int] = (frozenset(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                                    else frozenset(range(os.cpu_count() or 1)))


def supported() -> bool:
    """Whether this platform can pin threads (Linux: yes)."""
    return hasattr(os, "sched_setaffinity")


def allowed_cpus() -> frozenset[int]:
    """The CPUs this process may pin threads to."""
    return _PROCESS_ALLOWED


def _tid(thread) -> int:
    if thread is None:
        return threading.get_native_id()
    if isinstance(thread, threading.Thread):
        if thread.native_id is None:
            raise ValueError(f"thread must be started before it can be pinned, got {thread!r}")
        return thread.native_id
    if isinstance(thread, bool) or not isinstance(thread, int) or thread <= 0:
        raise ValueError(f"thread must be a threading.Thread, a native thread id or None, got {thread!r}")
    return thread


def _cpuset(cores, allowed: frozenset[int]) -> frozenset[int]:
    if isinstance(cores, bool):
        raise ValueError(f"core must be a CPU number or a set of them, got {cores!r}")
    items = [cores] if isinstance(cores, int) else list(cores)
    if not items:
        raise ValueError("core must name at least one CPU, got an empty set")
    for c in items:
        if isinstance(c, bool) or not isinstance(c, int):
            raise ValueError(f"core must be a CPU number or a set of them, got {c!r}")
        if c not in allowed:
            raise ValueError(f"cpu {c} is not in the allowed set {format_cpulist(allowed)}")
    return frozenset(items)


def thread_affinity(thread=None) -> frozenset[int]:
    """The CPUs a thread (the calling one by default) may run on."""
    return frozenset(os.sched_getaffinity(_tid(thread)))


def pin_thread(core: int | Iterable[int], thread=None, *, allowed: Iterable[int] | None = None) -> frozenset[int]:
    """Pin a thread to one CPU (or a set of CPUs) and return its previous CPU set.

    ``thread``: None for the calling thread, a started ``threading.Thread``, or a native thread id
    of this process. ``allowed`` defaults to the process's CPU set at import. Raises
    ``ValueError`` naming a CPU outside the allowed set, and ``OSError`` if the kernel refuses.
    """
    if not supported():
        raise OSError("this platform has no sched_setaffinity: threads cannot be pinned")
    allowed_set = frozenset(allowed) if allowed is not None else _PROCESS_ALLOWED
    cpus = _cpuset(core, allowed_set)
    tid = _tid(thread)
    previous = frozenset(os.sched_getaffinity(tid))
    try:
        os.sched_setaffinity(tid, cpus)
    except OSError as e:
        raise OSError(e.errno, f"pinning thread {tid} to cpus {format_cpulist(cpus)} failed: {e.strerror}") from e
    return previous


def unpin_thread(thread=None) -> frozenset[int]:
    """Let a thread run on every CPU of the process again; returns its previous CPU set."""
    return pin_thread(_PROCESS_ALLOWED, thread)


def pin_named(plan: CorePlan, name: str, thread=None) -> frozenset[int]:
    """Pin an engine thread (the calling one by default) to the CPU ``plan`` gives ``name``.

    Raises ``KeyError`` naming ``name`` when the plan has no such thread.
    """
    return pin_thread(plan.cpu_of(name), thread)
