"""Prefetching iterator and gather against numpy and plain-Python models."""
import gc
import sys
import threading

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from tallyio._core.prefetch import PrefetchingIterator, gather
from tallyio.record import TX_DTYPE

DISTANCES = [0, 1, 2, 8, 64, 10_000]


def records(n, seed=0):
    rng = np.random.default_rng(seed)
    r = np.zeros(n, dtype=TX_DTYPE)
    r["id"] = np.arange(n)
    r["gas_price"] = rng.integers(0, 2**63, n)
    r["amount_in"] = rng.integers(0, 2**63, (n, 4))
    r["sender"] = rng.integers(0, 256, (n, 20))
    return r


# ---------------------------------------------------------------- gather

@pytest.mark.parametrize("distance", DISTANCES)
@pytest.mark.parametrize("dtype", [np.int64, np.uint8, np.int16, np.float32, np.complex128,
                                   TX_DTYPE, np.dtype([("a", "u1"), ("b", "<i8"), ("c", "u4")]),
                                   np.dtype("V3")])
def test_gather_matches_take(dtype, distance):
    rng = np.random.default_rng(1)
    table = np.frombuffer(rng.bytes(np.dtype(dtype).itemsize * 1000), dtype=dtype).copy()
    for n in (0, 1, 7, 100, 3000):
        idx = rng.integers(0, len(table), n)
        out = gather(table, idx, distance=distance)
        assert out.dtype == table.dtype and out.shape == (n,)
        assert out.tobytes() == np.take(table, idx).tobytes()


@pytest.mark.parametrize("distance", DISTANCES)
def test_gather_records(distance):
    table = records(500)
    idx = np.random.default_rng(2).integers(0, 500, 2000)
    out = gather(table, idx, distance)
    # Fancy indexing copies field by field and leaves the padding of the aligned dtype unset, so
    # compare the fields (and the raw bytes with np.take, which copies whole rows).
    for name in TX_DTYPE.names:
        assert np.array_equal(out[name], table[idx][name])
    assert out.tobytes() == np.take(table, idx).tobytes()
    assert (out["id"] == idx).all()


@pytest.mark.parametrize("offset", [1, 3, 4])
@pytest.mark.parametrize("distance", [0, 4])
def test_gather_unaligned_table(offset, distance):
    values = np.arange(100, dtype=np.int64) * 7919
    buf = np.zeros(8 * 100 + 8, np.uint8)
    table = buf[offset:offset + 800].view(np.int64)
    table[:] = values
    idx = np.array([99, 0, 50, 50, 1], dtype=np.int64)
    np.testing.assert_array_equal(gather(table, idx, distance), values[idx])


def test_gather_index_dtypes_and_copy():
    table = np.arange(10, dtype=np.int64)
    for dt in (np.int8, np.int32, np.uint16, np.uint64, np.intp):
        np.testing.assert_array_equal(gather(table, np.array([9, 0, 3], dt)), [9, 0, 3])
    np.testing.assert_array_equal(gather(table, [1, 2]), [1, 2])
    assert gather(table, []).shape == (0,) and gather(table, []).dtype == np.int64
    strided = np.arange(20)[::4][:3]  # non-contiguous indices are fine
    np.testing.assert_array_equal(gather(table, strided), [0, 4, 8])
    out = gather(table, [1, 2])
    out[0] = 100
    assert table[1] == 1  # a new array, not a view


@pytest.mark.parametrize("distance", [0, 8])
def test_gather_out_of_range_names_position_and_value(distance):
    table = np.arange(10, dtype=np.int64)
    with pytest.raises(IndexError, match=r"^indices\[2\] = 10 is out of range for a table of 10 rows$"):
        gather(table, [0, 9, 10, 1], distance)
    with pytest.raises(IndexError, match=r"indices\[1\] = -1 is out of range"):
        gather(table, np.array([3, -1]), distance)
    with pytest.raises(IndexError, match=r"indices\[0\] = 18446744073709551615 is out of range"):
        gather(table, np.array([2**64 - 1], np.uint64), distance)
    with pytest.raises(IndexError, match=r"indices\[0\] = 0 is out of range for a table of 0 rows"):
        gather(table[:0], [0], distance)
    assert gather(table[:0], np.array([], np.int64), distance).shape == (0,)


def test_gather_bad_arguments():
    table = np.arange(10, dtype=np.int64)
    with pytest.raises(ValueError, match=r"^distance must be >= 0, got -1$"):
        gather(table, [1], distance=-1)
    with pytest.raises(TypeError, match=r"^distance must be an int, got 1.5$"):
        gather(table, [1], distance=1.5)
    with pytest.raises(TypeError, match=r"distance must be an int, got True"):
        gather(table, [1], distance=True)
    with pytest.raises(ValueError, match=r"table must be one-dimensional, got shape \(2, 5\)"):
        gather(table.reshape(2, 5), [1])
    with pytest.raises(ValueError, match=r"table must be contiguous, got strides \(16,\)"):
        gather(table[::2], [1])
    with pytest.raises(TypeError, match=r"table must hold fixed-size values.*got dtype object"):
        gather(np.array([1, "x"], dtype=object), [1])
    with pytest.raises(ValueError, match=r"indices must be one-dimensional, got shape \(1, 1\)"):
        gather(table, [[1]])
    with pytest.raises(TypeError, match=r"indices must be integers \(int64/intp\), got dtype float64"):
        gather(table, [1.0])
    with pytest.raises(TypeError, match=r"got dtype bool"):
        gather(table, np.array([True]))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(-2**62, 2**62), max_size=50), st.lists(st.integers(-3, 60), max_size=80),
       st.integers(0, 100))
def test_gather_property(values, indices, distance):
    table = np.array(values, dtype=np.int64)
    bad = [i for i, j in enumerate(indices) if not 0 <= j < len(values)]
    if bad:
        with pytest.raises(IndexError, match=rf"indices\[{bad[0]}\] = {indices[bad[0]]} "):
            gather(table, np.array(indices, dtype=np.int64), distance)
    else:
        out = gather(table, np.array(indices, dtype=np.int64), distance)
        assert out.tolist() == [values[j] for j in indices]


def test_gather_from_four_threads():
    """Concurrent nogil gathers over one shared table; every row checked and counted."""
    table = records(20_000, seed=5)
    rounds, n = 30, 5000
    barrier = threading.Barrier(4)
    copied = [0] * 4
    errors = []

    def worker(t):
        idx = np.random.default_rng(50 + t).integers(0, len(table), n)
        expect = np.take(table, idx).tobytes()
        try:
            barrier.wait(timeout=60)
            for r in range(rounds):
                out = gather(table, idx, distance=(0, 4, 16, 64)[(t + r) % 4])
                assert out.tobytes() == expect
                copied[t] += len(out)
        except Exception as e:
            errors.append((t, e))

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=120)
    assert not any(th.is_alive() for th in threads)
    assert errors == []
    assert copied == [rounds * n] * 4


# ---------------------------------------------------------------- iterator

def same_rows(got, expect):
    assert len(got) == len(expect)
    for g, e in zip(got, expect):
        assert np.array_equal(np.asarray(g), np.asarray(e))


@pytest.mark.parametrize("distance", DISTANCES)
@pytest.mark.parametrize("make", [
    lambda: np.arange(50, dtype=np.int64),
    lambda: np.arange(50, dtype=np.int64)[::-3],
    lambda: np.arange(20, dtype=">i8"),
    lambda: np.frombuffer(np.arange(90, dtype=np.uint8).tobytes(), np.float64, 11, offset=1),
    lambda: np.array(["ab", "c", ""]),
    lambda: np.arange(60).reshape(20, 3),
    lambda: np.asfortranarray(np.arange(60).reshape(20, 3)),
    lambda: np.arange(120).reshape(20, 3, 2)[:, ::2],
    lambda: records(33),
    lambda: np.zeros((0, 4)),
    lambda: np.zeros((5, 0)),
    lambda: np.array(["a", None, 3], dtype=object),
])
def test_iterator_yields_rows_like_the_array(make, distance):
    a = make()
    same_rows(list(PrefetchingIterator(a, distance)), list(a))
    # The compiled walk (next_many) and Python steps share one cursor.
    it = PrefetchingIterator(a, distance)
    head = it.next_many(3)
    assert head.dtype == a.dtype and head.shape == a[:3].shape
    assert head.tobytes() == a[:3].tobytes() if a.dtype != object else list(head) == list(a[:3])
    assert it.position == min(3, len(a)) and it.__length_hint__() == len(a) - it.position
    if len(a) > 3:
        same_rows([next(it)], [a[3]])
    rest = it.next_many(10**6)
    same_rows(list(rest), list(a[4:] if len(a) > 3 else a[3:]))
    assert it.next_many(5).shape[0] == 0 and list(it) == []


def test_iterator_rows_are_records():
    r = records(10)
    ids = [row["id"] for row in PrefetchingIterator(r, 4)]
    assert ids == list(range(10))
    for row in PrefetchingIterator(r, 2):  # rows of a record array are views, as with iter()
        row["nonce"] = row["id"] * 2
    assert (r["nonce"] == 2 * np.arange(10)).all()
    it = PrefetchingIterator(r)
    assert it.distance == 8 and repr(it) == "PrefetchingIterator(rows=10, position=0, distance=8)"
    assert iter(it) is it


def test_iterator_object_rows_keep_their_references():
    objs = [object() for _ in range(5)]
    before = [sys.getrefcount(o) for o in objs]
    a = np.array(objs + [None], dtype=object)[:5]
    it = PrefetchingIterator(a, 2)
    got = list(it.next_many(3)) + list(it)
    assert all(g is o for g, o in zip(got, objs))
    del a, it, got
    gc.collect()
    assert [sys.getrefcount(o) for o in objs] == before


def test_iterator_bad_arguments():
    with pytest.raises(TypeError, match=r"array must have at least one dimension, got a 0-d array"):
        PrefetchingIterator(np.int64(3))
    with pytest.raises(ValueError, match=r"^distance must be >= 0, got -2$"):
        PrefetchingIterator(np.arange(3), -2)
    with pytest.raises(TypeError, match=r"distance must be an int, got '8'"):
        PrefetchingIterator(np.arange(3), "8")
    it = PrefetchingIterator(np.arange(3))
    with pytest.raises(ValueError, match=r"^n must be >= 0, got -1$"):
        it.next_many(-1)
    with pytest.raises(TypeError, match=r"n must be an int, got None"):
        it.next_many(None)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(-2**63, 2**63 - 1), max_size=60), st.integers(0, 70),
       st.lists(st.integers(0, 7), max_size=20))
def test_iterator_property(values, distance, steps):
    """Interleaved next() and next_many(k) hand out exactly the list, in order, once."""
    a = np.array(values, dtype=np.int64)
    it = PrefetchingIterator(a, distance)
    got = []
    for k in steps:
        if k == 0:
            nxt = next(it, None)
            if nxt is not None:
                got.append(int(nxt))
        else:
            got.extend(it.next_many(k).tolist())
    got.extend(int(x) for x in it)
    assert got == values


def test_iterators_from_four_threads():
    """Each thread walks its own iterator over one shared record array with next_many (nogil)."""
    r = records(10_000, seed=9)
    rounds = 20
    barrier = threading.Barrier(4)
    walked = [0] * 4
    errors = []

    def worker(t):
        try:
            barrier.wait(timeout=60)
            for _ in range(rounds):
                it = PrefetchingIterator(r, 4 * (t + 1))
                parts = []
                while True:
                    chunk = it.next_many(97 + t)
                    if len(chunk) == 0:
                        break
                    parts.append(chunk)
                # Raw bytes, padding included: next_many copies whole rows (concatenate would not).
                assert b"".join(c.tobytes() for c in parts) == r.tobytes()
                walked[t] += sum(len(c) for c in parts)
        except Exception as e:
            errors.append((t, e))

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=120)
    assert not any(th.is_alive() for th in threads)
    assert errors == []
    assert walked == [rounds * len(r)] * 4


@pytest.mark.parametrize("distance", [0, 8])
def test_one_iterator_shared_by_four_threads(distance):
    """The reported crash: four threads calling next_many (and next) on ONE iterator. A plain
    cursor let them copy the same rows and walk past the end (memcpy from NULL). Every row must
    come out exactly once, whole, and nothing after the end."""
    n = 400_000
    r = records(n, seed=3)
    it = PrefetchingIterator(r, distance)
    barrier = threading.Barrier(4)
    got = [[] for _ in range(4)]
    errors = []

    def worker(t):
        try:
            barrier.wait(timeout=60)
            k = 0
            while True:
                k += 1
                if t == 3 and k % 5 == 0:  # one thread mixes in single steps
                    row = next(it, None)
                    if row is None:
                        break
                    got[t].append(np.array([row], dtype=r.dtype))
                    continue
                chunk = it.next_many(1 + (k * 37 + t) % 300)
                if len(chunk) == 0:
                    break
                got[t].append(chunk)
        except Exception as e:
            errors.append((t, e))

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=300)
    assert not any(th.is_alive() for th in threads) and errors == []
    out = np.concatenate([c for g in got for c in g])
    assert len(out) == n  # no duplicates handed out, none lost
    order = np.argsort(out["id"])
    np.testing.assert_array_equal(out["id"][order], np.arange(n))
    # each row whole: every field (not the padding bytes: np.array([row]) of a single step
    # copies fields, leaving padding uninitialised, which ASan flags if compared)
    ordered = out[order]
    for name in r.dtype.names:
        np.testing.assert_array_equal(ordered[name], r[name], err_msg=name)
    assert it.position == n and it.next_many(10).shape[0] == 0 and next(it, None) is None


def test_iterator_state_is_set_once():
    """State lives in __cinit__: a second __init__ cannot swap the array under a walker, and
    __new__ without an array is refused instead of building an empty, half-made iterator."""
    a = np.arange(10)
    it = PrefetchingIterator(a, 2)
    it.__init__(np.arange(1000), 5)
    assert it.array is a and it.distance == 2 and list(it) == list(range(10))
    with pytest.raises(TypeError):
        PrefetchingIterator.__new__(PrefetchingIterator)
