"""tallyio.Ring and tallyio.ObjectRing: every public call, every bad input, and a deque model."""
import collections

import numpy as np
import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from tallyio import ObjectRing, Ring, RingClosedError
from tallyio.record import TX_DTYPE, int_to_u256, u256_to_int

KINDS = ["spsc", "mpmc"]


@pytest.mark.parametrize("kind", KINDS)
def test_push_pop_fifo_and_outcomes(kind):
    r = Ring(4, kind=kind)
    assert r.pop() is None
    assert [r.push(i) for i in range(5)] == [True, True, True, True, False]
    assert len(r) == 4
    assert [r.pop() for _ in range(5)] == [0, 1, 2, 3, None]
    s = r.stats()
    assert s["pushed"] == 4 and s["popped"] == 4
    assert s["rejected"] == 1 and s["empty_pops"] == 2
    assert s["kind"] == kind and s["capacity"] == 4 and s["size"] == 0


@pytest.mark.parametrize("kind", KINDS)
def test_int64_range(kind):
    r = Ring(2, kind=kind)
    assert r.push(-(2**63)) and r.push(2**63 - 1)
    assert r.pop() == -(2**63) and r.pop() == 2**63 - 1
    with pytest.raises(OverflowError):
        r.push(2**63)
    with pytest.raises(TypeError):
        r.push("1")


@pytest.mark.parametrize("capacity", [0, 1, 3, 1000, -4])
def test_capacity_must_be_power_of_two(capacity):
    with pytest.raises(ValueError, match=f"capacity must be a power of two >= 2, got {capacity}"):
        Ring(capacity)
    with pytest.raises(ValueError, match="capacity"):
        ObjectRing(capacity)


@pytest.mark.parametrize("capacity", [4.0, "8", None, True])
def test_capacity_must_be_int(capacity):
    with pytest.raises(TypeError, match="capacity must be an int"):
        Ring(capacity)


def test_capacity_upper_bound():
    with pytest.raises(ValueError, match="at most 2\\*\\*40"):
        Ring(1 << 41)


def test_bad_kind_and_dtype():
    with pytest.raises(ValueError, match="kind must be 'spsc' or 'mpmc', got 'spmc'"):
        Ring(8, kind="spmc")
    with pytest.raises(TypeError, match="must not hold Python objects"):
        Ring(8, dtype=object)
    with pytest.raises(TypeError, match="dtype must be a numpy dtype"):
        Ring(8, dtype="not-a-dtype")
    with pytest.raises(ValueError, match="non-zero itemsize"):
        Ring(8, dtype=np.dtype([]))


@pytest.mark.parametrize("kind", KINDS)
def test_bulk_wraps_and_partial(kind):
    r = Ring(8, kind=kind)
    assert r.push_many(np.arange(5)) == 5
    np.testing.assert_array_equal(r.pop_many(3), [0, 1, 2])
    # 2 left; 6 more fit, across the wrap point
    assert r.push_many(np.arange(10, 20)) == 6
    assert r.stats()["rejected"] == 4
    np.testing.assert_array_equal(r.pop_many(100), [3, 4, 10, 11, 12, 13, 14, 15])
    out = r.pop_many(4)
    assert out.dtype == np.int64 and out.shape == (0,)
    assert r.push_many(np.array([], dtype=np.int64)) == 0


@pytest.mark.parametrize("kind", KINDS)
def test_bulk_bad_input(kind):
    r = Ring(8, kind=kind)
    with pytest.raises(ValueError, match=r"one-dimensional, got shape \(2, 2\)"):
        r.push_many(np.zeros((2, 2), dtype=np.int64))
    with pytest.raises(TypeError, match="cannot be safely cast"):
        r.push_many(np.array([1.5]))
    with pytest.raises(ValueError, match="max_n must be >= 1, got 0"):
        r.pop_many(0)
    with pytest.raises(ValueError, match="max_n must be >= 1, got -3"):
        r.pop_many(-3)
    with pytest.raises(TypeError, match="max_n must be an int"):
        r.pop_many(2.0)
    # int32 converts safely; lists too
    assert r.push_many(np.array([1, 2], dtype=np.int32)) == 2
    assert r.push_many([3]) == 1
    np.testing.assert_array_equal(r.pop_many(8), [1, 2, 3])


@pytest.mark.parametrize("kind", KINDS)
def test_pop_into(kind):
    r = Ring(8, kind=kind)
    r.push_many(np.arange(3))
    out = np.full(8, -1, dtype=np.int64)
    assert r.pop_into(out) == 3
    np.testing.assert_array_equal(out[:3], [0, 1, 2])
    with pytest.raises(TypeError, match="out must have dtype int64"):
        r.pop_into(np.zeros(4, dtype=np.int32))
    with pytest.raises(ValueError, match="writable contiguous"):
        r.pop_into(np.zeros(8, dtype=np.int64)[::2])
    with pytest.raises(TypeError, match="out must be a numpy array"):
        r.pop_into([0, 0])


@pytest.mark.parametrize("kind", KINDS)
def test_record_ring(kind):
    r = Ring(16, TX_DTYPE, kind=kind)
    assert r.dtype == TX_DTYPE
    rows = np.zeros(5, dtype=TX_DTYPE)
    rows["id"] = np.arange(5)
    rows["amount_in"][3] = int_to_u256(2**130 + 7)
    assert r.push_many(rows) == 5
    one = np.zeros(1, dtype=TX_DTYPE)[0]
    one["id"] = 99
    assert r.push(one)
    got = r.pop_many(5)
    assert got.dtype == TX_DTYPE
    np.testing.assert_array_equal(got["id"], np.arange(5))
    assert u256_to_int(got["amount_in"][3]) == 2**130 + 7
    last = r.pop()
    assert isinstance(last, np.void) and last["id"] == 99
    assert r.pop() is None
    with pytest.raises(TypeError, match="must have dtype"):
        r.push_many(np.arange(3))
    with pytest.raises(TypeError, match="row of dtype"):
        r.push(5)


def test_structured_push_from_tuple():
    dt = np.dtype([("a", np.int64), ("b", np.float64)])
    r = Ring(4, dt)
    assert r.push((1, 2.5))
    row = r.pop()
    assert row["a"] == 1 and row["b"] == 2.5
    with pytest.raises(TypeError, match="does not convert"):
        r.push((1, 2, 3))


def test_float_ring_single_push_shape():
    r = Ring(4, np.float64)
    assert r.push(1.5) and r.pop() == 1.5
    with pytest.raises(ValueError, match="single row"):
        r.push([1.0, 2.0])


@pytest.mark.parametrize("kind", KINDS)
def test_close_refuses_pushes_but_drains(kind):
    r = Ring(8, kind=kind)
    r.push(1)
    with r:
        pass
    assert r.closed
    with pytest.raises(RingClosedError, match="closed"):
        r.push(2)
    with pytest.raises(RingClosedError):
        r.push_many(np.arange(2))
    assert r.pop() == 1 and r.pop() is None
    assert r.stats()["closed"] is True


@pytest.mark.parametrize("kind", KINDS)
def test_object_ring(kind):
    r = ObjectRing(4, kind=kind)
    sentinel = object()
    items = [None, "a", {"k": 1}, (1, 2)]
    assert all(r.push(x) for x in items)
    assert not r.push("overflow")
    assert r.pop(sentinel) is None
    assert r.pop_many(10) == items[1:]
    assert r.pop(sentinel) is sentinel
    assert r.push_many(iter(range(10))) == 4
    assert len(r) == 4 and r.capacity == 4 and r.kind == kind
    s = r.stats()
    assert s["rejected"] == 2 and s["pushed"] == 8
    r.close()
    with pytest.raises(RingClosedError):
        r.push(1)
    with pytest.raises(ValueError, match="max_n must be >= 1, got 0"):
        r.pop_many(0)


def test_object_ring_releases_references():
    import sys
    obj = object()
    base = sys.getrefcount(obj)
    r = ObjectRing(8)
    for _ in range(5):
        r.push(obj)
    assert sys.getrefcount(obj) == base + 5
    r.pop()
    assert sys.getrefcount(obj) == base + 4
    del r  # the remaining four are released with the ring
    assert sys.getrefcount(obj) == base


def test_internal_base_refuses_construction():
    from tallyio._core.ring import _RingBase
    with pytest.raises(TypeError, match="internal"):
        _RingBase()


def test_repr():
    assert "capacity=8" in repr(Ring(8)) and "ObjectRing" in repr(ObjectRing(8))


# ---- model-based: a bounded deque ----

class RingMachine(RuleBasedStateMachine):
    @initialize(kind=st.sampled_from(KINDS), log2=st.integers(1, 5))
    def setup(self, kind, log2):
        self.cap = 1 << log2
        self.ring = Ring(self.cap, kind=kind)
        self.model = collections.deque()
        self.rejected = 0

    @rule(x=st.integers(-(2**63), 2**63 - 1))
    def push(self, x):
        ok = self.ring.push(x)
        assert ok == (len(self.model) < self.cap)
        if ok:
            self.model.append(x)
        else:
            self.rejected += 1

    @rule()
    def pop(self):
        got = self.ring.pop()
        assert got == (self.model.popleft() if self.model else None)

    @rule(xs=st.lists(st.integers(-(2**63), 2**63 - 1), max_size=40))
    def push_many(self, xs):
        taken = self.ring.push_many(np.array(xs, dtype=np.int64))
        expect = min(len(xs), self.cap - len(self.model))
        assert taken == expect
        self.model.extend(xs[:taken])
        self.rejected += len(xs) - taken

    @rule(n=st.integers(1, 40))
    def pop_many(self, n):
        got = self.ring.pop_many(n).tolist()
        expect = [self.model.popleft() for _ in range(min(n, len(self.model)))]
        assert got == expect

    @invariant()
    def same_size(self):
        assert len(self.ring) == len(self.model)
        assert self.ring.stats()["rejected"] == self.rejected


TestRingModel = RingMachine.TestCase
TestRingModel.settings = settings(max_examples=150, stateful_step_count=60, deadline=None)
