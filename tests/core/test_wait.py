"""Waiting that degrades gracefully: spin, back off, park; producers wake parked consumers.

A lost wake-up is caught by a hang, not by timing: the tests set the longest single park (a
safety net, 50 ms by default) to an hour, so a consumer whose wake-up was lost would sleep past
the generous join bounds below. CPU use is measured as CPU time (thread or process), never as
wall-clock time.
"""
import os
import random
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from tallyio import BatchDrain, BatchProcessor, Ring
from tallyio._core.objqueue import ObjectQueue
from tallyio.record import TX_DTYPE

HOUR = 3600.0
JOIN = 300  # seconds: only a hang (a lost wake-up) gets anywhere near this


def _join(threads):
    for t in threads:
        t.join(timeout=JOIN)
    assert not any(t.is_alive() for t in threads), "a thread hung: a wake-up was lost"


def _parking_drain(ring, batch_size, **kw):
    """A drain that parks as soon as the ring is empty, with no safety-net slice."""
    d = BatchDrain(ring, batch_size, batch_timeout=kw.pop("batch_timeout", 0.0),
                   idle_timeout=kw.pop("idle_timeout", HOUR), spin=kw.pop("spin", 0.0),
                   backoff=kw.pop("backoff", 0.0), **kw)
    d._set_park_slice(HOUR)
    return d


@pytest.mark.parametrize("kind,producers", [("mpmc", 3), ("spsc", 1)])
def test_million_rows_with_pausing_producers_and_a_parked_consumer(kind, producers):
    """Producers push runs of random length with random pauses, and every 100k rows all of them
    pause together (the consumer parks then, and in most single pauses too); every row is drained
    exactly once and nobody hangs."""
    total = 1_000_000
    per = total // producers
    ring = Ring(1 << 12, TX_DTYPE, kind=kind)
    d = _parking_drain(ring, 512, spin=20e-6, backoff=50e-6)
    got = []
    quiet = threading.Barrier(producers)
    phase = 100_000 // producers

    def produce(p):
        rng = random.Random(p)
        rows = np.zeros(per, dtype=TX_DTYPE)
        rows["id"] = np.arange(p * per, (p + 1) * per)
        i = 0
        while i < per:
            j = min(per, i + rng.choice((1, 7, 64, 500, 3000)), (i // phase + 1) * phase)
            while i < j:
                i += ring.push_many(rows[i:j])
            if i % phase == 0 and i < per:
                quiet.wait(timeout=JOIN)
                if p == 0:
                    time.sleep(2e-3)  # nobody pushes meanwhile: the consumer parks
                quiet.wait(timeout=JOIN)
            r = rng.random()
            if r < 0.02:
                time.sleep(rng.choice((50e-6, 200e-6, 1e-3)))  # long enough to park
            elif r < 0.2:
                time.sleep(0)

    def consume():
        n = 0
        while n < per * producers:
            batch, _ = d.drain()
            got.append(batch["id"].copy())
            n += len(batch)

    ts = [threading.Thread(target=produce, args=(p,)) for p in range(producers)]
    ts.append(threading.Thread(target=consume))
    for t in ts:
        t.start()
    _join(ts)
    out = np.concatenate(got)
    assert len(out) == per * producers
    np.testing.assert_array_equal(np.sort(out), np.arange(per * producers))
    if kind == "spsc":
        np.testing.assert_array_equal(out, np.arange(per))  # and in order
    s = ring.stats()
    assert s["pushed"] == s["popped"] == per * producers
    assert s["parks"] > 0 and s["wakes"] > 0  # the parked path was exercised


def _ping_pong(rounds, seed):
    """Two threads hand one row back and forth through two rings, each side parking (spin and
    back-off 0) while it waits. Every hand-off is a wake-up of a parked (or parking) thread."""
    ping, pong = Ring(8, kind="spsc"), Ring(8, kind="spsc")
    errors = []

    def side(inbox, outbox, first):
        try:
            rng = random.Random(seed + first)
            d = _parking_drain(inbox, 1)
            if first:
                outbox.push(0)
            for k in range(rounds):
                v = int(d.drain()[0][0])
                if rng.random() < 0.1:
                    time.sleep(rng.choice((0, 20e-6, 300e-6)))
                if not first or k < rounds - 1:
                    outbox.push(v + 1)
        except BaseException as e:
            errors.append(e)

    ts = [threading.Thread(target=side, args=(ping, pong, True)),
          threading.Thread(target=side, args=(pong, ping, False))]
    for t in ts:
        t.start()
    _join(ts)
    assert errors == []
    return ping.stats(), pong.stats()


def test_ping_pong_never_loses_a_wake_up():
    rounds = 20_000
    a, b = _ping_pong(rounds, 1)
    assert a["popped"] == b["popped"] == rounds
    assert a["parks"] + b["parks"] > rounds // 10 and a["wakes"] + b["wakes"] > 0


def test_ping_pong_without_membarrier_uses_fences():
    """The fallback where membarrier(2) is unavailable: both sides of each ring use real
    seq_cst fences instead (chosen per ring at creation, so both sides always agree)."""
    code = ("import tests.core.test_wait as t; a, b = t._ping_pong(5000, 2); "
            "assert a['popped'] == b['popped'] == 5000, (a, b); print('ok')")
    env = dict(os.environ, TALLYIO_NO_MEMBARRIER="1")
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    r = subprocess.run([sys.executable, "-c", code], env=env, cwd=root, capture_output=True,
                       text=True, timeout=JOIN)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr


def test_parked_drain_keeps_its_timeouts():
    """Parking does not change the cut-offs: a partial batch still goes out at its batch
    timeout, an empty drain at its idle timeout (the park ends at the deadline)."""
    ring = Ring(64)
    d = _parking_drain(ring, 8, batch_timeout=0.002, idle_timeout=0.002)
    batch, _ = d.drain()
    assert len(batch) == 0 and d.stats()["idle_returns"] == 1 and ring.stats()["parks"] >= 1
    ring.push_many(np.arange(3))
    batch, _ = d.drain()
    assert batch.tolist() == [0, 1, 2] and d.stats()["timeout_batches"] == 1
    ring.push_many(np.arange(8))
    assert d.drain()[0].tolist() == list(range(8)) and d.stats()["full_batches"] == 1


def test_policy_options():
    d = BatchDrain(Ring(8), 2, 0.001)
    assert d.policy_seconds == {"batch_timeout": 0.001, "idle_timeout": 0.001, "spin": 50e-6,
                                "sleep": 0.0, "backoff": 1e-3, "park": True}
    d = BatchDrain(Ring(8), 2, 0.001, spin=0, sleep=1e-4, backoff=0.5, park=False)
    assert d.policy_seconds["backoff"] == 0.5 and d.policy_seconds["park"] is False
    with pytest.raises(ValueError, match="backoff must be >= 0 seconds"):
        BatchDrain(Ring(8), 2, 0.001, backoff=-1)
    with pytest.raises(TypeError, match="park must be True or False, got 1"):
        BatchDrain(Ring(8), 2, 0.001, park=1)
    with pytest.raises(TypeError, match="park must be True or False"):
        BatchProcessor(lambda xs: xs, park="yes")


def _thread_cpu(native_id):
    """CPU seconds (user + system) of one thread of this process, from /proc."""
    with open(f"/proc/self/task/{native_id}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_idle_drain_uses_little_cpu():
    """An engine-style loop around an idle drain (1 ms idle timeout, default policy): after the
    first spin and back-off it parks on every call. Without parking it used a whole core."""
    ring = Ring(1024, kind="spsc")
    d = BatchDrain(ring, 64, batch_timeout=50e-6, idle_timeout=1e-3)
    out = np.empty(64, np.int64)
    cpu0, calls = time.thread_time(), 0
    deadline = time.monotonic() + 1.0  # the measuring interval, not a bound on anything
    while time.monotonic() < deadline:
        d.drain_into(out)
        calls += 1
    cpu = time.thread_time() - cpu0
    assert ring.stats()["parks"] >= calls // 2
    assert cpu < 0.25, f"an idle drain used {cpu:.3f} s of CPU in 1 s over {calls} calls"


def test_idle_batch_processor_uses_little_cpu():
    with BatchProcessor(lambda xs: xs) as bp:
        assert bp.submit(1).result(timeout=JOIN) == 1
        tid = bp._thread.native_id
        cpu0 = _thread_cpu(tid)
        time.sleep(1.0)  # the measuring interval: the worker is idle meanwhile
        cpu = _thread_cpu(tid) - cpu0
        assert bp._queue.stats()["parks"] >= 1
        assert cpu < 0.25, f"an idle BatchProcessor worker used {cpu:.3f} s of CPU in 1 s"
        assert bp.submit(2).result(timeout=JOIN) == 2  # and a submit wakes it


def test_object_queue_parked_consumer_stress():
    """Submitters with random pauses, a consumer that parks whenever the queue is empty (no
    safety-net slice): every item comes out once; close() wakes it for the end."""
    q = ObjectQueue(256, spin_ns=0, backoff_ns=0)
    q._set_park_slice(int(HOUR * 1e9))
    per, producers = 50_000, 3
    got = []

    def produce(p):
        rng = random.Random(p)
        i = 0
        while i < per:
            k = min(per - i, rng.choice((1, 5, 50)))
            items = [(p, j) for j in range(i, i + k)]
            assert q.put_many(items, [None] * k) == k
            i += k
            if rng.random() < 0.02:
                time.sleep(rng.choice((20e-6, 500e-6)))

    def consume():
        while (b := q.drain(64, 100_000)) is not None:
            got.extend(b.items)

    c = threading.Thread(target=consume)
    ps = [threading.Thread(target=produce, args=(p,)) for p in range(producers)]
    for t in [c] + ps:
        t.start()
    _join(ps)
    q.close()
    _join([c])
    assert sorted(got) == [(p, j) for p in range(producers) for j in range(per)]
    s = q.stats()
    assert s["accepted"] == per * producers and s["size"] == 0 and s["parks"] > 0


def test_idle_object_queue_is_woken_by_close():
    q = ObjectQueue(8, spin_ns=0, backoff_ns=0)
    q._set_park_slice(int(HOUR * 1e9))
    out = []
    t = threading.Thread(target=lambda: out.append(q.drain(4, 10**9)))
    t.start()
    q.close()
    _join([t])
    assert out == [None]
