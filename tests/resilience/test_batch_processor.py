"""tallyio.BatchProcessor / AsyncBatchProcessor and the compiled ObjectQueue under them.

Waits are on futures and events with generous bounds, never sleeps; time-dependent rules (expiry,
budget) use an injected submit clock or budgets no batch can meet / every batch meets.
"""
import asyncio
import collections
import logging
import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from tallyio._core.clock import now_ns
from tallyio._core.objqueue import (PUT_CLOSED, PUT_FULL, PUT_OK, PUT_TIMEOUT, Batch,
                                    ObjectQueue)
from tallyio.errors import BatchTimeoutError, BufferFullError, RingClosedError, TallyIOError
from tallyio.resilience.batch import AsyncBatchProcessor, BatchProcessor

WAIT = 30  # seconds: only ever reached when a test is about to fail
HOUR = 3600.0
OLD = 10**10  # 10 s in ns: far past any max_latency used here


def double(items):
    return [2 * x for x in items]


class Held:
    """A processor that records its batches and, while ``hold`` is set, blocks inside the first
    call after ``hold()`` until ``release()``: it pins the worker so the buffer can be filled."""

    def __init__(self, fn=double):
        self.fn = fn
        self.batches = []
        self.entered = threading.Event()
        self.gate = threading.Event()
        self.gate.set()

    def hold(self):
        self.entered.clear()
        self.gate.clear()

    def release(self):
        self.gate.set()

    def __call__(self, items):
        self.batches.append(list(items))
        self.entered.set()
        assert self.gate.wait(WAIT)
        return self.fn(items)


def pin_worker(bp, held):
    """Submit one item and return once the worker is blocked processing it."""
    held.hold()
    fut = bp.submit(-1)
    assert held.entered.wait(WAIT)
    return fut


def accounted(s):
    return (s["processed"] + s["failed_items"] + s["expired"] + s["cancelled"]
            + s["rejected"]["dropped_oldest"])


# ---------------------------------------------------------------------------------------------
# ObjectQueue (compiled)


def test_queue_put_drain_fifo_and_codes():
    q = ObjectQueue(4, on_full="raise")
    assert [q.put(i, f"t{i}") for i in range(5)] == [PUT_OK] * 4 + [PUT_FULL]
    assert len(q) == 4
    b = q.drain(3, 0)
    assert isinstance(b, Batch) and len(b) == 3 and b.cut == "full"
    assert b.items == [0, 1, 2] and b.tags == ["t0", "t1", "t2"]
    b = q.drain(3, 0)
    assert b.items == [3] and b.cut == "timeout"
    assert q.put_many([7, 8], ["a", "b"]) == 2
    q.close()
    assert q.put(9, "x") == PUT_CLOSED and q.put_many([1], [2]) == -1
    assert q.try_put(9, "x") == PUT_CLOSED
    b = q.drain(4, HOUR_NS)
    assert b.items == [7, 8] and b.cut == "flush"
    assert q.drain(4, HOUR_NS) is None
    s = q.stats()
    assert s["accepted"] == 6 and s["refused_full"] == 1 and s["refused_closed"] == 3
    assert s["batches"] == 3 and s["full_batches"] == 1 and s["timeout_batches"] == 1
    assert s["flush_batches"] == 1 and s["size"] == 0 and s["closed"]


HOUR_NS = 3600 * 10**9


def test_queue_put_many_partial_and_block_timeout():
    q = ObjectQueue(4, on_full="raise")
    assert q.put_many(list(range(6)), list(range(6))) == 4
    assert q.stats()["refused_full"] == 2
    with pytest.raises(ValueError, match="tags must have the same length as objs"):
        q.put_many([1, 2], [1])
    qb = ObjectQueue(2, on_full="block", timeout_ns=1_000)
    assert qb.put_many([1, 2, 3], [1, 2, 3]) == 2
    assert qb.put(4, 4) == PUT_TIMEOUT
    assert qb.stats()["refused_timeout"] == 2
    q0 = ObjectQueue(2, on_full="block", timeout_ns=0)
    assert q0.put_many([1, 2, 3], [1, 2, 3]) == 2 and q0.put(4, 4) == PUT_TIMEOUT


def test_queue_try_put_counts_only_what_the_caller_reports():
    q = ObjectQueue(2, on_full="block")
    assert q.try_put(1, 1) == PUT_OK and q.try_put(2, 2) == PUT_OK
    assert q.try_put(3, 3) == PUT_FULL
    assert q.stats()["refused_full"] == 0
    q.count_refused(PUT_TIMEOUT, 2)
    q.count_refused(PUT_FULL)
    assert q.stats()["refused_timeout"] == 2 and q.stats()["refused_full"] == 1
    with pytest.raises(ValueError, match="code must be PUT_FULL or PUT_TIMEOUT, got 0"):
        q.count_refused(PUT_OK)


def test_queue_drop_oldest_hands_evicted_entries_to_on_drop():
    dropped = []
    q = ObjectQueue(4, on_full="drop_oldest", on_drop=lambda o, t: dropped.append((o, t)))
    for i in range(6):
        assert q.put(i, -i) == PUT_OK
    assert dropped == [(0, 0), (1, -1)]
    assert q.put_many([6, 7, 8], [-6, -7, -8]) == 3
    assert dropped == [(0, 0), (1, -1), (2, -2), (3, -3), (4, -4)]
    assert q.drain(4, 0).items == [5, 6, 7, 8]
    assert q.stats()["dropped_oldest"] == 5 and q.stats()["accepted"] == 9


def test_queue_expiry_by_stamp():
    q = ObjectQueue(8)
    t = now_ns()
    q.put("old", 1, t - OLD)
    q.put("new", 2, t)
    q.put_many(["old2"], [3], t - OLD)
    b = q.drain(8, 0, 10**9)
    assert b.items == ["new"] and b.tags == [2]
    assert b.expired_items == ["old", "old2"] and b.expired_tags == [1, 3]
    assert all(age >= OLD for age in b.expired_ages)
    assert q.stats()["expired"] == 2
    q.put("x", 4)
    b = q.drain(8, 0, None)
    assert b.items == ["x"] and b.expired_items == []


def test_queue_batch_timeout_counts_from_first_enqueue_stamp():
    q = ObjectQueue(8)
    q.put(1, 1, now_ns() - OLD)  # enqueued "long ago": the batch is due at once
    b = q.drain(8, 10**9)
    assert b.items == [1] and b.cut == "timeout"


def test_queue_bad_arguments():
    for cap in (0, 1, 3, 1000):
        with pytest.raises(ValueError, match=f"capacity must be a power of two >= 2, got {cap}"):
            ObjectQueue(cap)
    with pytest.raises(TypeError, match="capacity must be an int"):
        ObjectQueue(4.0)
    with pytest.raises(ValueError, match="on_full must be one of .* got 'spill'"):
        ObjectQueue(4, on_full="spill")
    with pytest.raises(TypeError, match="on_drop must be callable"):
        ObjectQueue(4, on_full="drop_oldest")
    with pytest.raises(ValueError, match="timeout_ns must be in"):
        ObjectQueue(4, timeout_ns=-1)
    with pytest.raises(TypeError, match="spin_ns must be an int"):
        ObjectQueue(4, spin_ns=1.5)
    q = ObjectQueue(4)
    with pytest.raises(ValueError, match="max_n must be in \\[1, capacity 4\\], got 5"):
        q.drain(5, 0)
    with pytest.raises(ValueError, match="batch_timeout_ns must be in"):
        q.drain(1, -1)
    with pytest.raises(TypeError, match="Batch is internal"):
        Batch()


def test_queue_dealloc_releases_references():
    import sys
    obj = object()
    before = sys.getrefcount(obj)
    q = ObjectQueue(4)
    q.put(obj, obj)
    assert sys.getrefcount(obj) == before + 2
    del q
    assert sys.getrefcount(obj) == before


class QueueModel(RuleBasedStateMachine):
    """ObjectQueue against a deque with the same capacity and refusal rules."""

    def __init__(self):
        super().__init__()
        self.mode = "raise"
        self.dropped = []
        self.q = ObjectQueue(8, on_full="drop_oldest", on_drop=lambda o, t: self.dropped.append(o))
        self.qr = ObjectQueue(8, on_full="raise")
        self.model_d = collections.deque()
        self.model_r = collections.deque()
        self.model_dropped = []
        self.n = 0

    def _next(self):
        self.n += 1
        return self.n

    @rule()
    def put(self):
        x = self._next()
        assert self.q.put(x, -x) == PUT_OK
        if len(self.model_d) == 8:
            self.model_dropped.append(self.model_d.popleft())
        self.model_d.append(x)
        code = self.qr.put(x, -x)
        if len(self.model_r) < 8:
            self.model_r.append(x)
            assert code == PUT_OK
        else:
            assert code == PUT_FULL

    @rule(k=st.integers(0, 12))
    def put_many(self, k):
        xs = [self._next() for _ in range(k)]
        assert self.q.put_many(xs, [-x for x in xs]) == k
        for x in xs:
            if len(self.model_d) == 8:
                self.model_dropped.append(self.model_d.popleft())
            self.model_d.append(x)
        took = min(k, 8 - len(self.model_r))
        assert self.qr.put_many(xs, [-x for x in xs]) == took
        self.model_r.extend(xs[:took])

    @precondition(lambda self: self.model_d and self.model_r)
    @rule(m=st.integers(1, 8))
    def drain(self, m):
        # batch_timeout 0: the batch is cut as soon as anything is in hand (never waits)
        for q, model in ((self.q, self.model_d), (self.qr, self.model_r)):
            b = q.drain(m, 0)
            want = [model.popleft() for _ in range(min(m, len(model)))]
            assert b.items == want and b.tags == [-x for x in want]

    @invariant()
    def sizes_and_drops(self):
        assert len(self.q) == len(self.model_d) and len(self.qr) == len(self.model_r)
        assert self.dropped == self.model_dropped


TestQueueModel = QueueModel.TestCase
TestQueueModel.settings = settings(max_examples=60, stateful_step_count=40, deadline=None)


def _producers_and_consumer(q, n_threads, per_thread, put):
    """Producers put (thread, i) pairs; one consumer drains until the queue says stop."""
    seen = []
    accepted = [0] * n_threads

    def produce(t):
        for i in range(per_thread):
            if put(q, t, i):
                accepted[t] += 1

    def consume():
        while (b := q.drain(min(16, q.capacity), 50_000)) is not None:
            seen.extend(b.items)

    consumer = threading.Thread(target=consume)
    consumer.start()
    producers = [threading.Thread(target=produce, args=(t,)) for t in range(n_threads)]
    for p in producers:
        p.start()
    for p in producers:
        p.join()
    q.close()
    consumer.join()
    return seen, accepted


def test_queue_stress_blocking_producers_nogil():
    # capacity 16 against 4 producers: most puts wait for room without the GIL
    q = ObjectQueue(16, on_full="block")

    def put(q, t, i):
        if i % 3 == 0:
            return q.put_many([(t, i)], [i]) == 1
        return q.put((t, i), i) == PUT_OK

    seen, accepted = _producers_and_consumer(q, 4, 5_000, put)
    assert accepted == [5_000] * 4
    assert len(seen) == 20_000 and len(set(seen)) == 20_000
    for t in range(4):  # one consumer: each producer's items come out in its order
        assert [i for tt, i in seen if tt == t] == list(range(5_000))
    assert q.stats()["accepted"] == 20_000 and len(q) == 0


def test_queue_stress_drop_oldest_accounts_every_item():
    lock = threading.Lock()
    dropped = []

    def on_drop(o, t):
        with lock:
            dropped.append(o)

    q = ObjectQueue(8, on_full="drop_oldest", on_drop=on_drop)
    seen, accepted = _producers_and_consumer(q, 4, 5_000,
                                             lambda q, t, i: q.put((t, i), i) == PUT_OK)
    assert accepted == [5_000] * 4
    assert len(seen) + len(dropped) == 20_000
    assert set(seen) | set(dropped) == {(t, i) for t in range(4) for i in range(5_000)}
    assert q.stats()["dropped_oldest"] == len(dropped)


def test_queue_stress_close_while_putting():
    q = ObjectQueue(64, on_full="block")
    running = threading.Semaphore(0)
    refused = [0] * 4
    seen = []
    accepted = [[] for _ in range(4)]

    def produce(t):
        for i in range(2_000_000):  # a bound only: the close ends the loop long before
            if i == 500:
                running.release()
            code = q.put((t, i), i)
            if code == PUT_CLOSED:
                refused[t] += 1
                return
            accepted[t].append((t, i))

    def consume():
        while (b := q.drain(32, 20_000)) is not None:
            seen.extend(b.items)

    c = threading.Thread(target=consume)
    ps = [threading.Thread(target=produce, args=(t,)) for t in range(4)]
    c.start()
    for p in ps:
        p.start()
    for _ in ps:
        assert running.acquire(timeout=WAIT)
    q.close()
    c.join()
    for p in ps:
        p.join()
    every = [x for a in accepted for x in a]
    assert sorted(seen) == sorted(every)
    assert q.stats()["accepted"] == len(every)
    # every producer was refused exactly once, or finished before the close reached it
    assert all(r == 1 or len(a) == 2_000_000 for r, a in zip(refused, accepted))
    assert sum(refused) >= 1 and all(len(a) >= 500 for a in accepted)


# ---------------------------------------------------------------------------------------------
# BatchProcessor: results, cut-offs, errors


def test_submit_and_submit_many_results():
    with BatchProcessor(double, batch_size=8) as bp:
        futs = [bp.submit(i) for i in range(50)] + bp.submit_many(range(50, 100))
        futs += bp.submit_many(iter([100, 101]))
        assert [f.result(WAIT) for f in futs] == [2 * i for i in range(102)]
    s = bp.stats()
    assert s["submitted"] == s["processed"] == 102
    assert sum(k * c for k, c in s["batch_sizes"].items()) == 102
    assert max(s["batch_sizes"]) <= 8 and s["batches"] == sum(s["batch_sizes"].values())
    assert 0 < s["batch_size_mean"] <= 8
    assert 0 < s["latency_p50_ns"] <= s["latency_p99_ns"] <= s["latency_max_ns"]
    assert bp.latency.count == 102
    assert s["closed"] and s["pending"] == 0


def test_batch_cut_when_full():
    held = Held()
    with BatchProcessor(held, batch_size=4, batch_timeout=HOUR) as bp:
        futs = bp.submit_many(range(8))
        assert [f.result(WAIT) for f in futs] == [2 * i for i in range(8)]
    assert held.batches == [[0, 1, 2, 3], [4, 5, 6, 7]]
    assert bp.stats()["full_batches"] == 2


def test_batch_cut_by_timeout_since_first_item():
    held = Held()
    with BatchProcessor(held, batch_size=100, batch_timeout=1e-3) as bp:
        futs = [bp.submit(i) for i in range(3)]
        # the results come without close(): the timeout cut the batch
        assert [f.result(WAIT) for f in futs] == [0, 2, 4]
        assert bp.stats()["timeout_batches"] >= 1
    assert sum(held.batches, []) == [0, 1, 2]


def test_close_flushes_a_partial_batch_without_waiting_for_its_timeout():
    held = Held()
    bp = BatchProcessor(held, batch_size=100, batch_timeout=HOUR)
    futs = bp.submit_many(range(5))
    bp.close()
    assert all(f.done() for f in futs)
    assert held.batches == [[0, 1, 2, 3, 4]] and bp.stats()["flush_batches"] == 1


def test_expired_items_fail_with_batch_timeout_error():
    base = now_ns()
    ages = {}

    def clock():  # items whose value is odd are stamped 10 s in the past
        return ages.pop("next", base)

    held = Held()
    with BatchProcessor(held, batch_size=8, batch_timeout=HOUR, max_latency=1.0,
                        clock=clock) as bp:
        futs = []
        for i in range(8):
            ages["next"] = now_ns() - OLD if i % 2 else now_ns()
            futs.append(bp.submit(i))
    for i, f in enumerate(futs):
        if i % 2:
            with pytest.raises(BatchTimeoutError, match="over max_latency=1.0 s"):
                f.result(0)
        else:
            assert f.result(0) == 2 * i
    assert held.batches == [[0, 2, 4, 6]]
    s = bp.stats()
    assert s["expired"] == 4 and s["processed"] == 4 and accounted(s) == 8


def test_every_item_expires_when_max_latency_is_tiny():
    held = Held()
    with BatchProcessor(held, batch_size=4, max_latency=1e-9) as bp:
        futs = bp.submit_many(range(4))
        for f in futs:
            with pytest.raises(BatchTimeoutError):
                f.result(WAIT)
    assert held.batches == [] and bp.stats()["expired"] == 4


def test_processor_exception_fails_exactly_that_batch():
    calls = []

    def proc(items):
        calls.append(list(items))
        if items[0] == 4:
            raise KeyError("boom")
        return double(items)

    with BatchProcessor(proc, batch_size=4, batch_timeout=HOUR) as bp:
        futs = bp.submit_many(range(12))
        assert [f.result(WAIT) for f in futs[:4]] == [0, 2, 4, 6]
        errs = [f.exception(WAIT) for f in futs[4:8]]
        assert all(isinstance(e, KeyError) for e in errs) and len({id(e) for e in errs}) == 1
        assert [f.result(WAIT) for f in futs[8:]] == [16, 18, 20, 22]
    s = bp.stats()
    assert s["failed_batches"] == 1 and s["failed_items"] == 4 and s["processed"] == 8


@pytest.mark.parametrize("bad, got", [(lambda xs: xs[:-1], "got 3"),
                                      (lambda xs: xs + [0], "got 5"),
                                      (lambda xs: (x for x in xs), "got a generator")])
def test_wrong_number_of_results_fails_the_batch(bad, got):
    first = []

    def proc(items):
        if not first:
            first.append(1)
            return bad(items)
        return double(items)

    with BatchProcessor(proc, batch_size=4, batch_timeout=HOUR) as bp:
        futs = bp.submit_many(range(8))
        for f in futs[:4]:
            with pytest.raises(TallyIOError, match=f"expected 4, {got}"):
                f.result(WAIT)
        assert [f.result(WAIT) for f in futs[4:]] == [8, 10, 12, 14]
    assert bp.stats()["failed_batches"] == 1


def test_cancelled_future_is_skipped():
    held = Held()
    with BatchProcessor(held, batch_size=4, batch_timeout=0) as bp:
        first = pin_worker(bp, held)
        f1, f2 = bp.submit(1), bp.submit(2)
        assert f1.cancel()
        held.release()
        assert f2.result(WAIT) == 4 and first.result(WAIT) == -2
    assert [1] not in held.batches and 1 not in sum(held.batches, [])
    s = bp.stats()
    assert s["cancelled"] == 1 and accounted(s) == s["submitted"] == 3


# ---------------------------------------------------------------------------------------------
# back-pressure


def test_on_full_raise():
    held = Held()
    with BatchProcessor(held, batch_size=1, capacity=4, on_full="raise") as bp:
        first = pin_worker(bp, held)
        futs = [bp.submit(i) for i in range(4)]
        with pytest.raises(BufferFullError, match="buffer of 4 items is full"):
            bp.submit(99)
        many = bp.submit_many([100, 101])
        held.release()
        assert [f.result(WAIT) for f in futs] == [0, 2, 4, 6] and first.result(WAIT) == -2
    for f in many:
        with pytest.raises(BufferFullError):
            f.result(0)
    s = bp.stats()
    assert s["rejected"]["full"] == 3 and s["submitted"] == 5 and s["processed"] == 5


def test_on_full_block_with_submit_timeout():
    held = Held()
    with BatchProcessor(held, batch_size=1, capacity=2, on_full="block",
                        submit_timeout=1e-3) as bp:
        pin_worker(bp, held)
        bp.submit(0)
        bp.submit(1)
        with pytest.raises(BufferFullError, match="stayed full for submit_timeout=0.001 s"):
            bp.submit(2)
        many = bp.submit_many([3, 4])
        held.release()
    assert all(isinstance(f.exception(0), BufferFullError) for f in many)
    assert bp.stats()["rejected"]["timeout"] == 3


def test_on_full_block_waits_for_room():
    held = Held()
    with BatchProcessor(held, batch_size=1, capacity=2, on_full="block") as bp:
        pin_worker(bp, held)
        bp.submit(0)
        bp.submit(1)
        out = []
        t = threading.Thread(target=lambda: out.append(bp.submit(2)))
        t.start()  # blocks in the compiled wait until the worker makes room
        held.release()
        t.join(WAIT)
        assert not t.is_alive() and out[0].result(WAIT) == 4
    assert bp.stats()["rejected"] == {"closed": 0, "full": 0, "timeout": 0, "dropped_oldest": 0}


def test_on_full_drop_oldest():
    held = Held()
    with BatchProcessor(held, batch_size=1, capacity=4, on_full="drop_oldest") as bp:
        pin_worker(bp, held)
        futs = [bp.submit(i) for i in range(6)]
        futs += bp.submit_many([6])
        for f in futs[:3]:
            with pytest.raises(BufferFullError, match="evicted"):
                f.result(0)
        held.release()
        assert [f.result(WAIT) for f in futs[3:]] == [6, 8, 10, 12]
    s = bp.stats()
    assert s["rejected"]["dropped_oldest"] == 3 and accounted(s) == s["submitted"] == 8


# ---------------------------------------------------------------------------------------------
# close, threads, budget, config


def test_submit_after_close_raises_and_is_counted():
    bp = BatchProcessor(double)
    bp.close()
    bp.close()  # idempotent
    with pytest.raises(RingClosedError, match="is closed"):
        bp.submit(1)
    with pytest.raises(RingClosedError):
        bp.submit_many([1, 2])
    assert bp.stats()["rejected"]["closed"] == 3 and bp.closed


def test_close_from_inside_the_processor():
    box = []

    def proc(items):
        box[0].close()  # must not deadlock: it only stops accepting
        return double(items)

    bp = BatchProcessor(proc, batch_size=2, batch_timeout=HOUR)
    box.append(bp)
    futs = bp.submit_many([1, 2])
    assert [f.result(WAIT) for f in futs] == [2, 4]
    with pytest.raises(RingClosedError):
        bp.submit(3)
    bp.close()


@pytest.mark.parametrize("handoff", [True, False])
def test_multithreaded_submit_all_results_correct_and_counted(handoff):
    n, threads = 3_000, 4
    results = [None] * threads

    with BatchProcessor(double, batch_size=32, handoff=handoff) as bp:
        def work(t):
            futs = [bp.submit((t, i)) if i % 2 else bp.submit_many([(t, i)])[0]
                    for i in range(n)]
            results[t] = [f.result(WAIT) for f in futs]

        ths = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
        for th in ths:
            th.start()
        for th in ths:
            th.join()
    for t in range(threads):
        assert results[t] == [(t, i, t, i) for i in range(n)]
    s = bp.stats()
    assert s["submitted"] == s["processed"] == n * threads
    assert sum(k * c for k, c in s["batch_sizes"].items()) == n * threads


def test_close_while_submitting_loses_nothing():
    seen = []  # what the processor was handed, in the worker thread

    def proc(items):
        seen.extend(items)
        return [(x, "ok") for x in items]

    outcomes = [collections.Counter() for _ in range(4)]
    futures = [[] for _ in range(4)]
    running = threading.Semaphore(0)
    bp = BatchProcessor(proc, batch_size=16, capacity=64)

    def work(t):
        for i in range(100_000):
            if i == 500:
                running.release()  # close only once every thread is busy submitting
            try:
                if i % 4:
                    futures[t].append(((t, i), bp.submit((t, i))))
                else:
                    pair = [(t, i, 0), (t, i, 1)]
                    futures[t].extend(zip(pair, bp.submit_many(pair)))
            except RingClosedError:
                outcomes[t]["closed"] += 1
                return

    ths = [threading.Thread(target=work, args=(t,)) for t in range(4)]
    for th in ths:
        th.start()
    for _ in ths:
        assert running.acquire(timeout=WAIT)
    bp.close()
    processed_by_close = set(seen)  # snapshot the moment close() returns
    for th in ths:
        th.join()
    every = [x for fs in futures for x in fs]
    for item, f in every:
        # accepted => processed before close() returned, result delivered
        assert item in processed_by_close
        assert f.done() and f.result(0) == (item, "ok")
    assert len(seen) == len(every) == len(processed_by_close)
    assert all(o["closed"] == 1 or len(fs) > 100_000 for o, fs in zip(outcomes, futures))
    assert sum(o["closed"] for o in outcomes) >= 1 and all(len(fs) >= 500 for fs in futures)
    s = bp.stats()
    assert s["submitted"] == s["processed"] == accounted(s) == len(every)
    assert s["rejected"]["closed"] >= sum(o["closed"] for o in outcomes)


def test_close_waits_for_accepted_items_and_refuses_new_ones():
    held = Held()
    bp = BatchProcessor(held, batch_size=2, batch_timeout=HOUR)
    held.hold()
    futs = bp.submit_many(range(6))
    assert held.entered.wait(WAIT)
    # close() cannot return while accepted items are unprocessed...
    with pytest.raises(TimeoutError, match="did not finish processing within 0.001 s"):
        bp.close(timeout=1e-3)
    assert not any(f.done() for f in futs)
    # ...but it already refuses new ones
    with pytest.raises(RingClosedError):
        bp.submit(0)
    held.release()
    bp.close()
    assert [f.result(0) for f in futs] == [0, 2, 4, 6, 8, 10]
    assert bp.stats()["processed"] == 6


def test_over_budget_batches_counted_and_logged_rate_limited(caplog):
    with caplog.at_level(logging.WARNING, logger="tallyio.batch"):
        with BatchProcessor(double, batch_size=2, batch_timeout=HOUR, budget=1e-9,
                            log_interval=HOUR, name="bp-budget") as bp:
            for f in bp.submit_many(range(10)):
                f.result(WAIT)
    s = bp.stats()
    assert s["over_budget_batches"] == s["batches"] == 5
    records = [r for r in caplog.records if r.name == "tallyio.batch"]
    assert len(records) == 1 and "bp-budget: a batch of 2 items took" in records[0].getMessage()

    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="tallyio.batch"):
        with BatchProcessor(double, batch_size=2, batch_timeout=HOUR, budget=1e-9,
                            log_interval=0) as bp:
            bp.submit_many(range(6))
    assert len([r for r in caplog.records if r.name == "tallyio.batch"]) == 3

    with BatchProcessor(double, batch_size=2, budget=60.0) as bp:
        bp.submit_many(range(6))
    assert bp.stats()["over_budget_batches"] == 0


@pytest.mark.parametrize("kwargs, exc, msg", [
    ({"batch_size": 0}, ValueError, "batch_size must be >= 1, got 0"),
    ({"batch_size": -3}, ValueError, "batch_size must be >= 1, got -3"),
    ({"batch_size": True}, TypeError, "batch_size must be an int, got True"),
    ({"batch_size": 8, "capacity": 4}, ValueError, "batch_size must be at most capacity \\(4\\)"),
    ({"batch_timeout": -1e-3}, ValueError, "batch_timeout must be >= 0 seconds .* got -0.001"),
    ({"batch_timeout": float("nan")}, ValueError, "batch_timeout must be >= 0"),
    ({"batch_timeout": "1"}, TypeError, "batch_timeout must be a number of seconds"),
    ({"max_latency": -1.0}, ValueError, "max_latency must be > 0 seconds .* got -1.0"),
    ({"max_latency": 0}, ValueError, "max_latency must be > 0"),
    ({"submit_timeout": -1}, ValueError, "submit_timeout must be >= 0"),
    ({"budget": 0}, ValueError, "budget must be > 0"),
    ({"spin": -1}, ValueError, "spin must be >= 0"),
    ({"sleep": float("inf")}, ValueError, "sleep must be >= 0"),
    ({"log_interval": -1}, ValueError, "log_interval must be >= 0"),
    ({"capacity": 1000}, ValueError, "capacity must be a power of two >= 2, got 1000"),
    ({"capacity": 1}, ValueError, "capacity must be a power of two >= 2, got 1"),
    ({"capacity": 64.0}, TypeError, "capacity must be an int, got 64.0"),
    ({"on_full": "spill"}, ValueError, "on_full must be one of 'block', 'raise', 'drop_oldest', "
                                       "got 'spill'"),
    ({"clock": 5}, TypeError, "clock must be callable or None, got 5"),
])
def test_bad_config(kwargs, exc, msg):
    with pytest.raises(exc, match=msg):
        BatchProcessor(double, **kwargs)
    with pytest.raises(exc, match=msg):
        AsyncBatchProcessor(double, **kwargs)


def test_processor_must_be_callable():
    with pytest.raises(TypeError, match="processor must be callable, got 3"):
        BatchProcessor(3)


@settings(max_examples=25, deadline=None)
@given(items=st.lists(st.integers(-10**6, 10**6), max_size=200), batch_size=st.integers(1, 16))
def test_batches_partition_the_submissions_in_order(items, batch_size):
    held = Held(fn=lambda xs: [x + 1 for x in xs])
    with BatchProcessor(held, batch_size=batch_size, batch_timeout=HOUR) as bp:
        futs = [bp.submit(x) for x in items]
    assert [f.result(0) for f in futs] == [x + 1 for x in items]
    assert sum(held.batches, []) == items
    assert all(len(b) == batch_size for b in held.batches[:-1])
    assert all(1 <= len(b) <= batch_size for b in held.batches)


# ---------------------------------------------------------------------------------------------
# AsyncBatchProcessor


def test_async_process_results_from_many_tasks():
    async def main():
        async with AsyncBatchProcessor(double, batch_size=16) as ap:
            async def worker(t):
                return [await ap.process((t, i)) for i in range(200)]
            outs = await asyncio.gather(*(worker(t) for t in range(4)),
                                        *(ap.process(i) for i in range(500)))
        return ap, outs

    ap, outs = asyncio.run(main())
    for t in range(4):
        assert outs[t] == [(t, i, t, i) for i in range(200)]
    assert outs[4:] == [2 * i for i in range(500)]
    s = ap.stats()
    assert s["submitted"] == s["processed"] == 1_300 and s["closed"]


def test_async_errors_and_close():
    def proc(items):
        if "boom" in items:
            raise KeyError("boom")
        if "short" in items:
            return []
        return double(items)

    async def main():
        ap = AsyncBatchProcessor(proc, batch_size=1)
        assert await ap.process(3) == 6
        with pytest.raises(KeyError):
            await ap.process("boom")
        with pytest.raises(TallyIOError, match="expected 1, got 0"):
            await ap.process("short")
        assert await ap.process(4) == 8
        await ap.aclose()
        with pytest.raises(RingClosedError):
            await ap.process(5)
        return ap

    s = asyncio.run(main()).stats()
    assert s["failed_batches"] == 2 and s["processed"] == 2 and s["rejected"]["closed"] == 1


def test_async_expiry_with_injected_clock():
    async def main():
        stamps = iter([now_ns() - OLD, now_ns()])
        async with AsyncBatchProcessor(double, max_latency=1.0, clock=lambda: next(stamps),
                                       batch_size=2, batch_timeout=HOUR) as ap:
            return await asyncio.gather(ap.process(1), ap.process(2), return_exceptions=True)

    old, new = asyncio.run(main())
    assert isinstance(old, BatchTimeoutError) and new == 4


def test_async_back_pressure():
    held = Held()

    async def main(on_full, **kw):
        ap = AsyncBatchProcessor(held, batch_size=1, capacity=2, on_full=on_full, **kw)
        held.hold()
        first = asyncio.ensure_future(ap.process(-1))
        while not held.entered.is_set():  # let the loop run until the worker holds item -1
            await asyncio.sleep(0)
        tasks = [asyncio.ensure_future(ap.process(i)) for i in range(2)]
        await asyncio.sleep(0)
        extra = asyncio.ensure_future(ap.process(9))
        await asyncio.sleep(0)
        if kw.get("submit_timeout"):  # the worker is held: the wait for room must time out
            await asyncio.wait([extra], timeout=WAIT)
        outcome = extra.exception() if extra.done() else None
        held.release()
        res = await asyncio.gather(first, *tasks, extra, return_exceptions=True)
        await ap.aclose()
        return ap.stats(), outcome, res

    s, outcome, res = asyncio.run(main("raise"))
    assert isinstance(outcome, BufferFullError) and s["rejected"]["full"] == 1
    assert res[:3] == [-2, 0, 2]

    s, outcome, res = asyncio.run(main("block"))  # 9 waited on the loop, then went in
    assert outcome is None and res == [-2, 0, 2, 18] and s["rejected"]["timeout"] == 0

    s, outcome, res = asyncio.run(main("block", submit_timeout=1e-3))
    assert isinstance(outcome, BufferFullError) and "submit_timeout=0.001" in str(outcome)
    assert res[:3] == [-2, 0, 2] and s["rejected"]["timeout"] == 1

    s, outcome, res = asyncio.run(main("drop_oldest"))
    assert isinstance(res[1], BufferFullError) and res[2:] == [2, 18]
    assert s["rejected"]["dropped_oldest"] == 1


def test_async_close_while_processing_loses_nothing():
    held = Held()

    async def main():
        ap = AsyncBatchProcessor(held, batch_size=8, capacity=16)
        held.hold()
        tasks = [asyncio.ensure_future(ap.process(i)) for i in range(2_000)]
        while not held.entered.is_set():  # the worker is pinned on its first batch...
            await asyncio.sleep(0)
        await asyncio.sleep(0)  # ...the buffer is full and the other tasks wait for room
        closing = asyncio.ensure_future(ap.aclose())
        await asyncio.sleep(0)  # aclose() has shut the gate
        held.release()
        await closing
        return ap, await asyncio.gather(*tasks, return_exceptions=True)

    ap, res = asyncio.run(main())
    ok = [(i, r) for i, r in enumerate(res) if not isinstance(r, BaseException)]
    closed = [r for r in res if isinstance(r, RingClosedError)]
    assert len(ok) + len(closed) == 2_000 and len(ok) >= 17 and closed
    assert all(r == 2 * i for i, r in ok)
    s = ap.stats()
    assert s["processed"] == s["submitted"] == len(ok) and s["rejected"]["closed"] == len(closed)


def test_async_refuses_coroutine_processor_and_a_second_loop():
    async def proc(items):
        return items

    with pytest.raises(TypeError, match="plain function run in the worker thread"):
        AsyncBatchProcessor(proc)

    ap = AsyncBatchProcessor(double)
    assert asyncio.run(ap.process(1)) == 2
    with pytest.raises(RuntimeError, match="bound to another event loop"):
        asyncio.run(ap.process(2))
    ap.close()
