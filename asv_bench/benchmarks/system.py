"""System tuning: reading the topology, planning cores, and NUMA-routed submit against a plain
ThreadPoolExecutor (the peer) in the same run."""
import os
from concurrent.futures import ThreadPoolExecutor, wait

from tallyio.system import NumaScheduler, plan_cores, read_topology, synthetic_topology

from .common import int64_rows


def _noop():
    return None


class ReadTopology:
    """One read of this machine's sysfs (start-up cost); peer: os.sched_getaffinity alone."""

    params = ["tallyio", "sched_getaffinity"]
    param_names = ["impl"]

    def time_read(self, impl):
        if impl == "tallyio":
            read_topology()
        else:
            os.sched_getaffinity(0)


class PlanCores:
    """The core plan for made-up machines of 2 to 64 CPUs."""

    params = ([(1, 2, 1), (1, 16, 1), (2, 32, 2), (4, 64, 2)],)
    param_names = ["nodes_cpus_smt"]

    def setup(self, machine):
        self.topology = synthetic_topology(*machine)

    def time_plan(self, machine):
        plan_cores(self.topology)


class SubmitBurst:
    """Submit `tasks` no-op tasks keyed by seeded ints and wait for all: per-task cost of routing
    through NumaScheduler (1 or 4 simulated nodes) against one ThreadPoolExecutor."""

    params = (["numa1", "numa4", "threadpool"], [256])
    param_names = ["impl", "tasks"]

    def setup(self, impl, tasks):
        self.keys = int64_rows(tasks, offset=31).tolist()
        if impl == "numa1":
            self.pool = NumaScheduler(synthetic_topology(1, 2), pin=False, workers_per_node=1)
            self.submit = lambda k: self.pool.submit(_noop, key=k)
        elif impl == "numa4":
            self.pool = NumaScheduler(synthetic_topology(4, 8), pin=False, workers_per_node=1)
            self.submit = lambda k: self.pool.submit(_noop, key=k)
        else:
            self.pool = ThreadPoolExecutor(max_workers=1)
            self.submit = lambda k: self.pool.submit(_noop)

    def teardown(self, impl, tasks):
        self.pool.shutdown()

    def time_submit_burst(self, impl, tasks):
        wait([self.submit(k) for k in self.keys])
