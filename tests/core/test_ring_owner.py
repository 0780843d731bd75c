"""SPSC rings allow one producer and one consumer thread at a time; hand-over by release_*."""
import threading

import numpy as np
import pytest

from tallyio import BatchDrain, ObjectRing, Ring
from tallyio.errors import TallyIOError


def _in_thread(fn, *args):
    """Run fn(*args) in a new thread; its result, or the exception it raised."""
    out = []

    def run():
        try:
            out.append(fn(*args))
        except BaseException as e:  # handed back to the test
            out.append(e)

    t = threading.Thread(target=run, name="other")
    t.start()
    t.join(timeout=120)
    assert not t.is_alive()
    return out[0]


def test_four_producers_on_spsc_are_refused_not_duplicated():
    """The report: a raw Ring(kind='spsc') with 4 producers handed out 3x the rows pushed. Now one
    producer owns the side; the other three get TallyIOError, and every row comes out once."""
    ring = Ring(1 << 12, kind="spsc")
    n = 200_000
    barrier = threading.Barrier(5)
    pushed = [0] * 4
    errors = [None] * 4
    popped = []
    done = threading.Event()

    def produce(p):
        barrier.wait(timeout=60)
        data = np.arange(p * n, (p + 1) * n, dtype=np.int64)
        try:
            i = 0
            while i < n:
                i += ring.push_many(data[i:i + 512])
            pushed[p] = i
        except TallyIOError as e:
            errors[p] = e
            pushed[p] = i

    def consume():
        barrier.wait(timeout=60)
        while not (done.is_set() and len(ring) == 0):
            got = ring.pop_many(1024)
            if len(got):
                popped.append(got)

    ps = [threading.Thread(target=produce, args=(p,)) for p in range(4)]
    c = threading.Thread(target=consume)
    for t in ps + [c]:
        t.start()
    for t in ps:
        t.join(timeout=300)
    done.set()
    c.join(timeout=300)
    assert not any(t.is_alive() for t in ps + [c])
    refused = [e for e in errors if e is not None]
    assert len(refused) == 3 and sum(pushed) == n
    assert all("has one producer thread at a time" in str(e) for e in refused)
    out = np.concatenate(popped)
    owner = pushed.index(n)
    np.testing.assert_array_equal(out, np.arange(owner * n, (owner + 1) * n))  # once, in order
    s = ring.stats()
    assert s["pushed"] == s["popped"] == n


@pytest.mark.parametrize("cls", [Ring, ObjectRing])
def test_second_thread_on_a_side_is_refused_with_names(cls):
    ring = cls(8, kind="spsc")
    assert ring.push(1) and ring.producer_thread == threading.get_ident()
    assert ring.consumer_thread is None
    err = _in_thread(ring.push, 2)
    assert isinstance(err, TallyIOError)
    msg = str(err)
    assert "owns the producer side" in msg and "'MainThread'" in msg and "'other'" in msg
    assert "release_producer()" in msg and "kind='mpmc'" in msg
    assert ring.pop() == 1  # the main thread takes the consumer side too
    for fn in (ring.pop, lambda: ring.pop_many(4)):
        err = _in_thread(fn)
        assert isinstance(err, TallyIOError) and "owns the consumer side" in str(err)
    assert len(ring) == 0 and ring.stats()["pushed"] == 1  # the refused push took nothing


def test_every_entry_point_checks_its_side():
    ring = Ring(8, kind="spsc")
    ring.push_many(np.arange(3))
    out = np.empty(4, np.int64)
    assert ring.pop_into(out) == 3
    for fn, side in ((lambda: ring.push(1), "producer"),
                     (lambda: ring.push_many(np.arange(2)), "producer"),
                     (ring.pop, "consumer"), (lambda: ring.pop_many(2), "consumer"),
                     (lambda: ring.pop_into(out), "consumer")):
        err = _in_thread(fn)
        assert isinstance(err, TallyIOError) and f"owns the {side} side" in str(err)


def test_hand_over_by_release():
    """An engine hands the producer side from one thread to the next: the owner stops, the side
    is released, the next thread pushes. Order and counts survive each hand-over."""
    ring = Ring(1 << 16, kind="spsc")
    n, turns = 10_000, 6

    def produce(k):
        data = np.arange(k * n, (k + 1) * n, dtype=np.int64)
        i = 0
        while i < n:
            i += ring.push_many(data[i:i + 333])
        if k % 2:
            ring.release_producer()  # the owner releases itself...
        return i

    for k in range(turns):
        assert _in_thread(produce, k) == n
        if k % 2 == 0:
            ring.release_producer()  # ...or a thread that joined it does
        assert ring.producer_thread is None
    got = _in_thread(lambda: ring.pop_many(1 << 16))
    np.testing.assert_array_equal(got, np.arange(turns * n))
    ring.release_consumer()
    assert ring.pop() is None and ring.consumer_thread == threading.get_ident()


def test_batch_drain_is_the_consumer():
    ring = Ring(64, kind="spsc")
    ring.push_many(np.arange(10))
    d = BatchDrain(ring, 4, batch_timeout=0.0)
    assert d.drain()[0].tolist() == [0, 1, 2, 3]
    err = _in_thread(d.drain)
    assert isinstance(err, TallyIOError) and "owns the consumer side" in str(err)
    err = _in_thread(ring.pop)
    assert isinstance(err, TallyIOError)
    ring.release_consumer()
    batch = _in_thread(lambda: d.drain()[0])
    assert batch.tolist() == [4, 5, 6, 7]
    with pytest.raises(TallyIOError):  # an owner that ended without releasing still owns it
        d.drain()
    ring.release_consumer()
    assert d.drain()[0].tolist() == [8, 9] and d.stats()["rows"] == 10


def test_mpmc_has_no_owner():
    ring = Ring(1 << 12, kind="mpmc")
    results = [_in_thread(ring.push, i) for i in range(4)]
    assert results == [True] * 4 and ring.producer_thread is None
    ring.release_producer()  # a no-op
    assert sorted(_in_thread(ring.pop) for _ in range(4)) == [0, 1, 2, 3]
    assert ring.consumer_thread is None


def test_spsc_ownership_stress_counts_every_row():
    """One producer and one consumer thread, then both sides handed to new threads mid-stream,
    a few times: every row comes out exactly once and in order."""
    ring = Ring(1 << 10, kind="spsc")
    per_turn, turns = 100_000, 4
    out = []

    def produce(k):
        data = np.arange(k * per_turn, (k + 1) * per_turn, dtype=np.int64)
        i = 0
        while i < per_turn:
            i += ring.push_many(data[i:i + 700])
        ring.release_producer()

    def consume(k):
        got = 0
        while got < per_turn:
            a = ring.pop_many(500 if got + 500 <= per_turn else per_turn - got)
            got += len(a)
            out.append(a)
        ring.release_consumer()

    for k in range(turns):
        ts = [threading.Thread(target=produce, args=(k,)),
              threading.Thread(target=consume, args=(k,))]
        for t in ts:
            t.start()
        for t in ts:
            t.join(timeout=300)
        assert not any(t.is_alive() for t in ts)
    np.testing.assert_array_equal(np.concatenate(out), np.arange(turns * per_turn))
    s = ring.stats()
    assert s["pushed"] == s["popped"] == turns * per_turn
