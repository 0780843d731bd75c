"""Wake-up cost: a row pushed to a ring whose consumer is parked, until the consumer has it.

The engine's drain spins, backs off, then parks on a futex (docs/core.md); a push wakes it. This
area times that hand-off from Python against what a Python user would block on instead: a
``queue.Queue`` get and a ``threading.Event`` wait. Each sample: the producer sleeps long enough
for the consumer to park (2 ms, far past the drain's spin and back-off budgets), stamps the clock,
hands one item over, and the consumer records how long it took to see it. Each repeat yields the
median of its samples (``trials``); the value reported is the best repeat, as in every micro
table. The cost is dominated by the VM's cross-CPU wake-up, so the ratio, not the figure, is what
carries over.
"""
from __future__ import annotations

import queue
import statistics
import threading
import time

import numpy as np

from tallyio._core.batch import BatchDrain
from tallyio._core.clock import now_ns
from tallyio._core.ring import Ring
from tallyio.bench._harness import Comparison, Timing

GAP_S = 0.002  # between hand-offs: the consumer has parked by then (spin 50 us + backoff 1 ms)


def _samples(make, n: int) -> list[float]:
    """``make() -> (send, receive)``; the ns from send to receive, ``n`` times, in a consumer
    thread that blocks in ``receive`` (returns the stamp it got)."""
    send, receive = make()
    got: list[int] = []
    ready = threading.Event()

    def consume():
        ready.set()
        for _ in range(n):
            stamp = receive()
            got.append(now_ns() - stamp)

    t = threading.Thread(target=consume, name="wake-consumer")
    t.start()
    ready.wait()
    for _ in range(n):
        time.sleep(GAP_S)
        send(now_ns())
    t.join()
    return got


def _drain():
    ring = Ring(1024, np.int64, kind="spsc")
    drain = BatchDrain(ring, 1, 0.0, idle_timeout=10.0, park=True)

    def receive():
        while True:
            batch, _ = drain.drain()
            if len(batch):
                return int(batch[0])

    return ring.push, receive


def _queue():
    q: queue.Queue = queue.Queue()
    return q.put, q.get


def _event():
    ev = threading.Event()
    box = [0]

    def send(stamp):
        box[0] = stamp
        ev.set()

    def receive():
        ev.wait()
        ev.clear()
        return box[0]

    return send, receive


def _median_of_repeats(make, n: int, repeat: int) -> Timing:
    medians = [statistics.median(_samples(make, n)) for _ in range(repeat)]
    return Timing(min(medians), medians)  # best of repeats, as every micro table reports


def run(quick: bool = False) -> list[Comparison]:
    n, repeat = (100, 3) if quick else (300, 5)
    return [Comparison(
        "wake a parked consumer: push -> consumer has it",
        ("tallyio BatchDrain parked on the ring (futex)", _median_of_repeats(_drain, n, repeat)),
        [("queue.Queue put -> blocked get", _median_of_repeats(_queue, n, repeat)),
         ("threading.Event set -> blocked wait", _median_of_repeats(_event, n, repeat))],
        unit="hand-off")]
