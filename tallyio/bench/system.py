"""System tuning against what a user would do by hand: NUMA-routed submit against a plain
ThreadPoolExecutor (and hand-rolled routing), and the allocator switch as an A/B (the same
allocation churn in a child process under glibc and under jemalloc).
"""
from __future__ import annotations

import gc
import os
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor, wait

from tallyio.bench._harness import Comparison, ns_per_op
from tallyio.system import NumaScheduler, find_jemalloc, jemalloc_env, read_topology, synthetic_topology
from tallyio.system.numa import stable_hash


def _noop():
    return None


class _StubExecutor:
    """Accepts a task and drops it: isolates what a scheduler adds on top of its executor."""

    def submit(self, fn, /, *args, **kwargs):
        return None

    def shutdown(self, wait=True):
        pass


def submit_ns(submit, hold, n: int = 2000, repeat: int = 7) -> float:
    """Best-of-``repeat`` ns per ``submit(i)`` while ``hold(gate_wait)`` keeps every worker busy.

    Holding the workers times the submitting thread's own work (routing, bookkeeping, the queue
    put) without the ~75 us worker wake-ups that would otherwise swamp it on this VM.
    """
    best = float("inf")
    for _ in range(repeat):
        gate = threading.Event()
        held = hold(gate.wait)
        gc_was = gc.isenabled()
        gc.disable()
        try:
            t0 = time.perf_counter_ns()
            futs = [submit(i) for i in range(n)]
            t1 = time.perf_counter_ns()
        finally:
            if gc_was:
                gc.enable()
            gate.set()
        wait(futs + held)
        best = min(best, (t1 - t0) / n)
    return best


# Allocation churn that reaches malloc (pymalloc serves objects up to 512 bytes itself): numpy
# buffers of random sizes, a thousand alive at a time, as batches and scratch arrays are.
_CHURN = r"""
import random, resource, sys
import numpy as np
from tallyio.bench._harness import ns_per_op
from tallyio.system import live_allocator
lo, hi, repeat = map(int, sys.argv[1:])
rnd = random.Random(7)
sizes = [rnd.randrange(lo, hi) // 8 for _ in range(8192)]
live = [None] * 1024
def churn():
    for i, s in enumerate(sizes):
        live[i & 1023] = np.empty(s)
ns = ns_per_op(churn, len(sizes), repeat=repeat)
print(live_allocator(), ns, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def churn_in_child(env, lo, hi, repeat=5):
    """(allocator, ns per buffer, peak RSS KiB) of the churn of ``lo``..``hi``-byte buffers in a
    child process started with ``env``."""
    r = subprocess.run([sys.executable, "-c", _CHURN, str(lo), str(hi), str(repeat)], capture_output=True,
                       text=True, env=env, timeout=600)
    if r.returncode != 0:
        raise RuntimeError(f"allocation child failed: {r.stderr.strip()}")
    name, ns, rss = r.stdout.split()
    return name, float(ns), int(rss)


def run(quick: bool = False) -> list[Comparison]:
    repeat = 3 if quick else 7
    sub_repeat = 5 if quick else 25  # a few ms each; more tries find a quiet moment on a busy VM
    out = []

    # One node: the scheduler must cost (almost) nothing over the executor it wraps.
    with NumaScheduler(read_topology(), pin=False, workers_per_node=1) as s, \
            ThreadPoolExecutor(max_workers=1) as ex:
        ns = submit_ns(lambda i: s.submit(_noop, key=i), lambda w: [s.submit(w)], repeat=sub_repeat)
        peer = submit_ns(lambda i: ex.submit(_noop), lambda w: [ex.submit(w)], repeat=sub_repeat)
        out.append(Comparison("submit a task, one node", ("NumaScheduler.submit(fn, key=k)", ns),
                              [("ThreadPoolExecutor.submit(fn)", peer)], unit="task"))

    # Four (synthetic) nodes, tasks routed by key: against four executors routed by hand.
    with NumaScheduler(synthetic_topology(4, 8), pin=False, workers_per_node=1) as s:
        exs = [ThreadPoolExecutor(max_workers=1) for _ in range(4)]
        try:
            ns = submit_ns(lambda i: s.submit(_noop, key=i), lambda w: [s.submit(w, node=n) for n in s.nodes],
                           repeat=sub_repeat)
            peer = submit_ns(lambda i: exs[stable_hash(i) % 4].submit(_noop), lambda w: [e.submit(w) for e in exs],
                             repeat=sub_repeat)
        finally:
            for e in exs:
                e.shutdown()
        out.append(Comparison("submit routed by key, 4 nodes", ("NumaScheduler.submit(fn, key=k)", ns),
                              [("4 executors, routed by hand", peer)], unit="task"))

    # What the scheduler itself adds on top of its executors: executors stubbed out, so the
    # number is routing and bookkeeping alone, steady even on a busy machine.
    for topo, label in ((read_topology(), "one node"), (synthetic_topology(4, 8), "4 nodes")):
        s = NumaScheduler(topo, pin=False, workers_per_node=1)
        for p in s.pools.values():
            p.executor.shutdown()
            p.executor = _StubExecutor()
        stubs = [_StubExecutor() for _ in s.nodes]
        k = len(stubs)
        ns = ns_per_op(lambda: s.submit(_noop, key=12345), repeat=repeat)
        peer = ns_per_op(lambda: stubs[stable_hash(12345) % k].submit(_noop), repeat=repeat)
        out.append(Comparison(f"routing overhead, {label}", ("NumaScheduler.submit, stub executor", ns),
                              [("stub executor, routed by hand", peer)], unit="task"))

    # The allocator switch, A/B: the same churn under jemalloc (on) and glibc (off).
    base = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", "MALLOC_CONF")}
    je_env = jemalloc_env(base) if find_jemalloc() else None
    for lo, hi, label in ((600, 4096, "600 B-4 KiB"), (4096, 65536, "4-64 KiB")):
        _, glibc_ns, _ = churn_in_child(base, lo, hi, repeat)
        if je_env is not None:
            name, je_ns, _ = churn_in_child(je_env, lo, hi, repeat)
            subject = (f"allocator=on ({name})", je_ns)
        else:
            subject = ("allocator=on (jemalloc not installed)", float("nan"))
        out.append(Comparison(f"numpy buffer churn {label}", subject,
                              [("allocator=off (glibc malloc)", glibc_ns)], unit="buffer"))
    return out
