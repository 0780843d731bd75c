"""System tuning: topology, core plan, CPU pinning, real-time priority, NUMA placement, allocator.

Every optimization here is a switch (``"auto"``, ``"on"``, ``"off"``): ``auto`` uses it where the
machine allows and says why not elsewhere; ``on`` makes a missing capability a start-up error
(``OptimizationUnavailableError``); ``off`` leaves the machine alone. See docs/system_tuning.md.
"""
from tallyio.system._errors import OptimizationUnavailableError
from tallyio.system.affinity import allowed_cpus, pin_named, pin_thread, thread_affinity, unpin_thread
from tallyio.system.allocator import (DEFAULT_MALLOC_CONF, AllocatorStatus, allocator_status, default_malloc_conf,
                                      ensure_jemalloc, find_jemalloc, jemalloc_env, live_allocator)
from tallyio.system.info import SWITCHES, cli_info, format_info, info, require_switches
from tallyio.system.numa import NumaScheduler, current_node
from tallyio.system.plan import CRITICAL_THREADS, CorePlan, plan_cores
from tallyio.system.priority import (RealtimeStatus, current_policy, realtime_permission, restore_normal,
                                     set_realtime)
from tallyio.system.topology import (Cpu, NumaNode, Topology, format_cpulist, parse_cpulist, read_topology,
                                     synthetic_topology)
from tallyio.system.tuning import ThreadTuning, tune_thread

__all__ = [
    "CRITICAL_THREADS", "DEFAULT_MALLOC_CONF", "SWITCHES",
    "AllocatorStatus", "CorePlan", "Cpu", "NumaNode", "NumaScheduler", "OptimizationUnavailableError",
    "RealtimeStatus", "ThreadTuning", "Topology",
    "allocator_status", "allowed_cpus", "cli_info", "current_node", "current_policy", "default_malloc_conf",
    "ensure_jemalloc", "find_jemalloc", "format_cpulist", "format_info", "info", "jemalloc_env",
    "live_allocator", "parse_cpulist", "pin_named", "pin_thread", "plan_cores", "read_topology",
    "realtime_permission", "require_switches", "restore_normal", "set_realtime", "synthetic_topology",
    "thread_affinity",
    "tune_thread", "unpin_thread",
]
