"""Wake-up cost of the drain's wait policy: producer push -> consumer returns, median and p99.

    .venv/bin/python tests/core/measure_wake.py [--samples 2000] [--gap 0.002]
    .venv/bin/python tests/core/measure_wake.py --idle

``--idle`` measures instead the CPU an idle consumer uses in one second: an engine-style loop
around ``BatchDrain.drain_into`` (1 ms idle timeout) and an idle ``BatchProcessor`` worker, each
with ``park=True`` (the default) and ``park=False``.

For each policy a producer thread pushes one int64 row (its own ``now_ns()`` stamp) every
``gap`` seconds; the consumer thread sits in ``BatchDrain.drain()`` (batch_size 1) and records
``now_ns() - stamp`` as soon as the row is in its hands. With ``gap`` well above spin + backoff the
"park" policy is parked when each row comes, so its numbers are the cost of a wake-up; the "spin"
policy (spin longer than the gap) is the busy-waiting peer; "yield" backs off with sched_yield.
Threads are pinned to different CPUs when there are two or more. Not a test: it measures time.
"""
from __future__ import annotations

import argparse
import os
import threading
import time

import numpy as np

from tallyio import BatchDrain, BatchProcessor, LatencyHistogram, Ring, now_ns


def measure(policy: dict, samples: int, gap: float, cpus: list[int]) -> LatencyHistogram:
    ring = Ring(1024, kind="spsc")
    drain = BatchDrain(ring, 1, batch_timeout=0.0, idle_timeout=10.0, **policy)
    hist = LatencyHistogram()
    ready = threading.Event()

    def consume():
        if len(cpus) > 1:
            os.sched_setaffinity(0, {cpus[1]})
        ready.set()
        got = 0
        while got < samples:
            batch, _ = drain.drain()
            if len(batch):
                hist.record(max(now_ns() - int(batch[0]), 0))
                got += 1

    t = threading.Thread(target=consume)
    t.start()
    if len(cpus) > 1:
        os.sched_setaffinity(0, {cpus[0]})
    ready.wait()
    for _ in range(samples):
        time.sleep(gap)  # the consumer goes through its spin and back-off phases meanwhile
        ring.push(now_ns())
    t.join()
    if len(cpus) > 1:
        os.sched_setaffinity(0, set(cpus))
    return hist


def _thread_cpu(native_id: int) -> float:
    with open(f"/proc/self/task/{native_id}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def idle() -> None:
    print(f"{'idle for 1 s':<52} {'CPU':>8}  parks")
    for park in (True, False):
        ring = Ring(1024, kind="spsc")
        d = BatchDrain(ring, 64, batch_timeout=50e-6, idle_timeout=1e-3, park=park)
        out = np.empty(64, np.int64)
        cpu0, calls = time.thread_time(), 0
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:
            d.drain_into(out)
            calls += 1
        cpu = time.thread_time() - cpu0
        print(f"{f'BatchDrain loop, idle_timeout 1 ms, park={park}':<52} "
              f"{100 * cpu:7.1f}%  {ring.stats()['parks']} in {calls} calls")
    for park in (True, False):
        with BatchProcessor(lambda xs: xs, park=park) as bp:
            bp.submit(1).result()
            tid = bp._thread.native_id
            time.sleep(0.1)
            c0 = _thread_cpu(tid)
            time.sleep(1.0)
            cpu = _thread_cpu(tid) - c0
            print(f"{f'BatchProcessor worker, park={park}':<52} {100 * cpu:7.1f}%  "
                  f"{bp._queue.stats()['parks']}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=2000)
    ap.add_argument("--gap", type=float, default=0.002, help="seconds between pushes")
    ap.add_argument("--idle", action="store_true", help="measure idle CPU instead")
    args = ap.parse_args()
    if args.idle:
        idle()
        return
    cpus = sorted(os.sched_getaffinity(0))[:2]
    policies = {
        "park (spin=0, backoff=0)": dict(spin=0.0, backoff=0.0, park=True),
        "park (defaults: spin 50 us, backoff 1 ms)": dict(),
        "yield (spin=0, park=False)": dict(spin=0.0, park=False),
        "spin (spin=10 s)": dict(spin=10.0, park=False),
    }
    print(f"{args.samples} samples, a push every {args.gap * 1e3:g} ms, CPUs {cpus}")
    print(f"{'policy':<44} {'p50 us':>8} {'p99 us':>8} {'max us':>8}  {'CPU, process':>14}")
    for name, policy in policies.items():
        t0 = time.process_time()
        h = measure(policy, args.samples, args.gap, cpus)
        cpu = time.process_time() - t0
        wall = args.samples * args.gap
        print(f"{name:<44} {h.percentile(50) / 1e3:8.1f} {h.percentile(99) / 1e3:8.1f} "
              f"{h.max / 1e3:8.1f}  {100 * cpu / wall:12.0f} %")


if __name__ == "__main__":
    main()
