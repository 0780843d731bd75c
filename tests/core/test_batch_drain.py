"""tallyio.BatchDrain: size and timeout cut-off, idle return, age limit, bad input, threads."""
import threading
import time

import numpy as np
import pytest

from tallyio import BatchDrain, Ring, now_ns
from tallyio.record import TX_DTYPE


def test_now_ns_is_monotonic_clock():
    a = now_ns()
    b = time.monotonic_ns()
    c = now_ns()
    assert a <= b <= c


def test_full_batch_returns_at_once():
    r = Ring(64)
    r.push_many(np.arange(20))
    d = BatchDrain(r, 8, batch_timeout=60.0)  # a full batch never waits for the timeout
    batch, expired = d.drain()
    np.testing.assert_array_equal(batch, np.arange(8))
    assert len(expired) == 0
    assert d.stats()["full_batches"] == 1


def test_partial_batch_cut_by_timeout():
    r = Ring(64)
    r.push_many(np.arange(3))
    d = BatchDrain(r, 8, batch_timeout=0.001)
    batch, _ = d.drain()
    np.testing.assert_array_equal(batch, [0, 1, 2])
    s = d.stats()
    assert s["timeout_batches"] == 1 and s["batches"] == 1 and s["rows"] == 3


def test_idle_returns_empty():
    r = Ring(8)
    d = BatchDrain(r, 4, batch_timeout=0.0005, idle_timeout=0.0005)
    batch, expired = d.drain()
    assert len(batch) == 0 and len(expired) == 0 and batch.dtype == np.int64
    assert d.stats()["idle_returns"] == 1 and d.stats()["batches"] == 0


@pytest.mark.parametrize("sleep", [0.0, 20e-6])
def test_batch_fills_from_another_thread(sleep):
    """The drain waits without the GIL, so a Python producer can fill the batch meanwhile."""
    r = Ring(1024, kind="spsc")
    d = BatchDrain(r, 100, batch_timeout=30.0, idle_timeout=30.0, spin=0.0, sleep=sleep)

    def produce():
        for i in range(100):
            while not r.push(i):
                pass

    t = threading.Thread(target=produce)
    t.start()
    batch, _ = d.drain()
    t.join()
    np.testing.assert_array_equal(batch, np.arange(100))
    assert d.stats()["full_batches"] == 1


def test_expired_rows_are_split_out_and_counted():
    r = Ring(16, TX_DTYPE)
    rows = np.zeros(6, dtype=TX_DTYPE)
    rows["id"] = np.arange(6)
    now = now_ns()
    rows["arrival_ns"] = [now, now - 10**10, now, now - 10**10, now + 10**9, now]
    r.push_many(rows)
    d = BatchDrain(r, 6, batch_timeout=1.0, max_age=1.0)
    batch, expired = d.drain()
    assert batch["id"].tolist() == [0, 2, 4, 5]  # a stamp from the future is young
    assert expired["id"].tolist() == [1, 3]
    assert d.stats()["expired"] == 2 and d.stats()["rows"] == 6


def test_int64_ring_age_uses_the_row():
    r = Ring(8)
    now = now_ns()
    r.push_many(np.array([now - 10**10, now]))
    d = BatchDrain(r, 2, batch_timeout=1.0, max_age=1.0, time_field=None)
    batch, expired = d.drain()
    assert batch.tolist() == [now] and expired.tolist() == [now - 10**10]


def test_bad_input():
    r = Ring(8)
    with pytest.raises(ValueError, match="batch_size must be in \\[1, ring capacity 8\\], got 0"):
        BatchDrain(r, 0, 0.001)
    with pytest.raises(ValueError, match="got 9"):
        BatchDrain(r, 9, 0.001)
    with pytest.raises(TypeError, match="batch_size must be an int"):
        BatchDrain(r, 2.0, 0.001)
    with pytest.raises(ValueError, match="batch_timeout must be >= 0 seconds \\(and finite\\), got -1"):
        BatchDrain(r, 2, -1)
    with pytest.raises(ValueError, match="batch_timeout.*got nan"):
        BatchDrain(r, 2, float("nan"))
    with pytest.raises(TypeError, match="spin must be a number of seconds"):
        BatchDrain(r, 2, 0.001, spin="1")
    with pytest.raises(ValueError, match="max_age needs a structured dtype"):
        BatchDrain(r, 2, 0.001, max_age=1.0)
    tr = Ring(8, TX_DTYPE)
    with pytest.raises(ValueError, match="time_field 'nope' is not a field"):
        BatchDrain(tr, 2, 0.001, max_age=1.0, time_field="nope")
    with pytest.raises(ValueError, match="time_field 'protocol' must be a 64-bit integer"):
        BatchDrain(tr, 2, 0.001, max_age=1.0, time_field="protocol")
    with pytest.raises(TypeError):
        BatchDrain(None, 2, 0.001)


def test_concurrent_drains_and_producers_count_every_row():
    """Two drains race two bulk producers on an MPMC ring; every row comes out once."""
    r = Ring(1 << 12, TX_DTYPE)
    n_per, producers = 200_000, 2
    got = [[], []]
    done = threading.Event()

    def produce(p):
        rows = np.zeros(n_per, dtype=TX_DTYPE)
        rows["id"] = np.arange(p * n_per, (p + 1) * n_per)
        i = 0
        while i < n_per:
            i += r.push_many(rows[i:i + 512])

    def drain(k):
        d = BatchDrain(r, 256, batch_timeout=0.0002, idle_timeout=0.001)
        while not (done.is_set() and len(r) == 0):
            b, _ = d.drain()
            got[k].append(b["id"].copy())

    ps = [threading.Thread(target=produce, args=(p,)) for p in range(producers)]
    ds = [threading.Thread(target=drain, args=(k,)) for k in range(2)]
    for t in ps + ds:
        t.start()
    for t in ps:
        t.join()
    done.set()
    for t in ds:
        t.join(timeout=300)
    out = np.sort(np.concatenate(got[0] + got[1]))
    np.testing.assert_array_equal(out, np.arange(n_per * producers))


def test_wait_until_reaches_the_deadline_without_the_gil():
    from tallyio import wait_until
    deadline = now_ns() + 2_000_000
    ticks = []
    t = threading.Thread(target=lambda: ticks.extend(range(1000)))  # runs while we wait
    t.start()
    wait_until(deadline)
    t.join()
    assert now_ns() >= deadline and len(ticks) == 1000
    wait_until(0)  # a deadline in the past returns at once
    with pytest.raises(ValueError, match="deadline_ns must be >= 0, got -1"):
        wait_until(-1)
    with pytest.raises(ValueError, match="spin_ns must be >= 0, got -5"):
        wait_until(0, -5)


def test_drain_into_preallocated_buffers():
    r = Ring(16, TX_DTYPE)
    rows = np.zeros(5, dtype=TX_DTYPE)
    rows["id"] = np.arange(5)
    now = now_ns()
    rows["arrival_ns"] = [now, now - 10**10, now, now, now - 10**10]
    r.push_many(rows)
    d = BatchDrain(r, 8, batch_timeout=0.0005, max_age=1.0)
    out = np.zeros(8, dtype=TX_DTYPE)
    old = np.zeros(8, dtype=TX_DTYPE)
    assert d.drain_into(out, old) == (3, 2)
    assert out["id"][:3].tolist() == [0, 2, 3] and old["id"][:2].tolist() == [1, 4]
    with pytest.raises(ValueError, match="out must hold at least batch_size=8 rows, got 4"):
        d.drain_into(np.zeros(4, dtype=TX_DTYPE), old)
    with pytest.raises(TypeError, match="expired must be a numpy array, got NoneType"):
        d.drain_into(out, None)
    with pytest.raises(TypeError, match="out must have dtype"):
        d.drain_into(np.zeros(8, dtype=np.int64), old)
    ro = np.zeros(8, dtype=TX_DTYPE)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="writable contiguous"):
        d.drain_into(ro, old)
    plain = BatchDrain(Ring(8), 4, batch_timeout=0.0005)
    assert plain.drain_into(np.zeros(4, dtype=np.int64)) == (0, 0)
