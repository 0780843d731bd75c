"""Concurrency: rows moved by many threads with the GIL released; every row out exactly once."""
import threading

import numpy as np
import pytest

from tallyio import ObjectRing, Ring

CHUNK = 4096


def _run(ring, producers, consumers, rows_per_producer, use_single=False):
    """Each producer pushes its own disjoint range; consumers collect until all rows are out."""
    total = producers * rows_per_producer
    outputs = [[] for _ in range(consumers)]
    popped = [0]
    lock = threading.Lock()
    start = threading.Barrier(producers + consumers)
    errors = []

    def produce(p):
        try:
            data = np.arange(p * rows_per_producer, (p + 1) * rows_per_producer, dtype=np.int64)
            start.wait()
            i = 0
            while i < len(data):
                if use_single:
                    if ring.push(int(data[i])):
                        i += 1
                else:
                    i += ring.push_many(data[i:i + CHUNK])
        except BaseException as e:  # surfaced below; a thread must not die silently
            errors.append(e)

    def consume(c):
        try:
            start.wait()
            while True:
                with lock:
                    if popped[0] >= total:
                        return
                got = ring.pop_many(CHUNK)
                if len(got):
                    outputs[c].append(got)
                    with lock:
                        popped[0] += len(got)
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=produce, args=(p,)) for p in range(producers)]
    threads += [threading.Thread(target=consume, args=(c,)) for c in range(consumers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=600)
    assert not any(t.is_alive() for t in threads), "a stress thread hung"
    assert not errors, errors
    out = np.concatenate([a for o in outputs for a in o]) if total else np.array([])
    return total, out


def _assert_exact(total, out):
    assert len(out) == total
    assert out.sum(dtype=np.int64) == total * (total - 1) // 2
    # the multiset out equals the rows in: no loss, no duplicate
    np.testing.assert_array_equal(np.sort(out), np.arange(total))


def test_mpmc_4x4_ten_million_rows():
    ring = Ring(1 << 14, kind="mpmc")
    total, out = _run(ring, 4, 4, 2_500_000)
    _assert_exact(total, out)
    s = ring.stats()
    assert s["pushed"] == s["popped"] == total and s["size"] == 0


def test_spsc_one_each_ten_million_rows():
    ring = Ring(1 << 14, kind="spsc")
    total, out = _run(ring, 1, 1, 10_000_000)
    _assert_exact(total, out)
    # SPSC keeps order, too
    np.testing.assert_array_equal(out, np.arange(total))


def test_mpmc_mixed_single_and_bulk():
    """Per-item pushes (GIL held) race bulk pops (GIL released) on the same slots."""
    ring = Ring(64, kind="mpmc")
    total, out = _run(ring, 2, 2, 20_000, use_single=True)
    _assert_exact(total, out)


@pytest.mark.parametrize("kind", ["spsc", "mpmc"])
def test_record_rows_keep_integrity(kind):
    """Rows wider than a word must never be seen half-written."""
    dt = np.dtype([("a", np.int64), ("b", np.int64), ("pad", np.uint8, 48)])
    ring = Ring(256, dt, kind=kind)
    n = 200_000
    rows = np.zeros(n, dtype=dt)
    rows["a"] = np.arange(n)
    rows["b"] = -np.arange(n)
    rows["pad"] = (np.arange(n) % 251)[:, None]
    got = []
    done = threading.Event()

    def consume():
        count = 0
        while count < n:
            g = ring.pop_many(1024)
            count += len(g)
            got.append(g)
        done.set()

    t = threading.Thread(target=consume)
    t.start()
    i = 0
    while i < n:
        i += ring.push_many(rows[i:i + 1000])
    assert done.wait(300)
    t.join()
    out = np.concatenate(got)
    np.testing.assert_array_equal(out["a"], np.arange(n))
    np.testing.assert_array_equal(out["b"], -out["a"])
    np.testing.assert_array_equal(out["pad"][:, 7], out["a"] % 251)


def test_object_ring_threads():
    ring = ObjectRing(1024)
    n, producers = 50_000, 4
    got = []
    lock = threading.Lock()

    def produce(p):
        i = 0
        while i < n:
            if ring.push((p, i)):
                i += 1

    def consume():
        while True:
            with lock:
                if len(got) >= n * producers:
                    return
            item = ring.pop()
            if item is not None:
                with lock:
                    got.append(item)

    ts = [threading.Thread(target=produce, args=(p,)) for p in range(producers)]
    ts += [threading.Thread(target=consume) for _ in range(2)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(timeout=300)
    assert sorted(got) == [(p, i) for p in range(producers) for i in range(n)]
