"""Wake-up cost of the drain's wait policy: producer push -> consumer returns, median and p99.

    .venv/bin/python tests/core/measure_wake.py [--samples 2000] [--gap 0.002]

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

from tallyio import BatchDrain, LatencyHistogram, Ring, now_ns


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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=2000)
    ap.add_argument("--gap", type=float, default=0.002, help="seconds between pushes")
    args = ap.parse_args()
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
