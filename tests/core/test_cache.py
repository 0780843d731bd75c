"""tallyio.StateCache: the API, bad input, CLOCK eviction, probe bounds, dict models, threads."""
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

import tallyio
from tallyio._core.cache import MAX_CAPACITY, StateCache

ROOT = Path(__file__).resolve().parents[2]
REC = np.dtype([("reserve0", np.uint64), ("reserve1", np.uint64), ("fee", np.float64),
                ("tag", "S3")], align=True)


def test_exported_from_tallyio():
    assert tallyio.StateCache is StateCache


# ---- construction ----

@pytest.mark.parametrize("capacity", [0, -1, 1.5, True, "8", None, MAX_CAPACITY + 1])
def test_bad_capacity(capacity):
    with pytest.raises(ValueError, match="capacity") as e:
        StateCache(capacity)
    assert repr(capacity) in str(e.value) or str(capacity) in str(e.value)


@pytest.mark.parametrize("capacity, slots", [(1, 4), (2, 4), (3, 8), (4, 8), (5, 16), (1000, 2048),
                                             (1024, 2048)])
def test_slots_keep_load_at_most_half(capacity, slots):
    c = StateCache(capacity)
    assert c.capacity == capacity
    assert c.stats()["slots"] == slots
    assert StateCache(np.int64(capacity)).capacity == capacity


@pytest.mark.parametrize("dtype", [object, [("a", object)], np.dtypes.StringDType(), (np.uint64, 4),
                                   "nonsense"])
def test_bad_value_dtype(dtype):
    with pytest.raises(TypeError, match="value_dtype"):
        StateCache(8, dtype)


def test_zero_itemsize_value_dtype():
    with pytest.raises(ValueError, match="itemsize"):
        StateCache(8, np.dtype([]))


def test_repr_and_dtype():
    c = StateCache(8, REC)
    assert c.value_dtype == REC
    assert repr(c) == f"StateCache(capacity=8, value_dtype={REC}, size=0)"


# ---- keys and values ----

@pytest.mark.parametrize("key, exc", [(-1, ValueError), (2**64, ValueError), (1.0, TypeError),
                                      (True, TypeError), ("1", TypeError), (None, TypeError),
                                      (np.float64(1), TypeError), (np.int64(-3), ValueError)])
def test_bad_key_everywhere(key, exc):
    c = StateCache(8)
    c.put(1, 1)
    for call in (lambda: c.get(key), lambda: c.put(key, 1), lambda: c.pop(key),
                 lambda: key in c):
        with pytest.raises(exc, match="key") as e:
            call()
        assert repr(key) in str(e.value) or str(key) in str(e.value)
    assert len(c) == 1 and c.get(1) == 1


def test_full_key_range_and_numpy_keys():
    c = StateCache(8)
    for k in (0, 1, 2**63 - 1, 2**63, 2**64 - 1):
        c.put(k, k & 0xFFFF)
    for k in (0, 1, 2**63 - 1, 2**63, 2**64 - 1):
        assert c.get(k) == k & 0xFFFF
        assert c.get(np.uint64(k)) == k & 0xFFFF
    assert c.get(np.int32(1)) == 1
    assert sorted(c.keys().tolist()) == [0, 1, 2**63 - 1, 2**63, 2**64 - 1]


@pytest.mark.parametrize("value, exc", [(2**63, ValueError), (-(2**63) - 1, ValueError),
                                        (1.0, TypeError), (True, TypeError), ("1", TypeError),
                                        (None, TypeError), (np.float32(1), TypeError)])
def test_bad_int64_value(value, exc):
    c = StateCache(8)
    with pytest.raises(exc, match="value") as e:
        c.put(1, value)
    assert repr(value) in str(e.value) or str(value) in str(e.value)
    assert len(c) == 0


def test_int64_values_are_python_ints():
    c = StateCache(8)
    for v in (0, -1, 2**63 - 1, -(2**63), np.int32(-5), np.uint64(7)):
        c.put(3, v)
        got = c.get(3)
        assert type(got) is int and got == int(v)
    assert c.pop(3) == 7 and c.pop(3) is None


def test_structured_records_are_copies():
    c = StateCache(4, REC)
    c.put(10, (1, 2, 0.003, b"v2"))
    row = c.get(10)
    assert isinstance(row, np.void) and row.dtype == REC
    assert row.tolist() == (1, 2, 0.003, b"v2")
    c.put(10, (5, 6, 0.01, b"v3"))          # overwrite in place: the copy must not change
    assert row.tolist() == (1, 2, 0.003, b"v2")
    arr = np.zeros(1, REC)
    arr[0] = (7, 8, 0.5, b"v1")
    c.put(11, arr[0])                        # a numpy.void row of the same dtype
    assert c.get(11).tolist() == (7, 8, 0.5, b"v1")
    popped = c.pop(11)
    assert popped.tolist() == (7, 8, 0.5, b"v1") and 11 not in c


@pytest.mark.parametrize("value, exc", [([1, 2, 3, 4], TypeError), ((1, 2), TypeError),
                                        (np.zeros(1, REC), ValueError),
                                        (np.zeros((), [("x", "i8")])[()], TypeError),
                                        (("a", 2, 0.1, b"x"), TypeError)])
def test_bad_structured_value(value, exc):
    c = StateCache(4, REC)
    with pytest.raises(exc, match="value"):
        c.put(1, value)
    assert len(c) == 0


def test_scalar_dtypes_round_trip_exactly():
    f = StateCache(8, "float64")
    f.put(1, 1.5)
    f.put(2, float("nan"))
    assert f.get(1) == 1.5 and np.isnan(f.get(2))
    u = StateCache(8, "uint8")
    u.put(1, 255)
    assert u.get(1) == 255 and isinstance(u.get(1), np.uint8)
    for bad, exc in [(256, ValueError), (-1, ValueError), (1.5, TypeError), ("x", TypeError)]:
        with pytest.raises(exc, match="value"):
            u.put(2, bad)
    assert 2 not in u


# ---- semantics ----

def test_get_put_pop_contains_len_clear_stats():
    c = StateCache(16)
    assert len(c) == 0 and c.get(1) is None and c.get(1, -7) == -7 and 1 not in c
    c.put(1, 100)
    c.put(2, 200)
    c.put(1, 101)                           # overwrite: no new entry
    assert len(c) == 2 and c.get(1) == 101 and 1 in c
    assert c.pop(1) == 101 and c.pop(1, "gone") == "gone" and len(c) == 1
    s = c.stats()
    assert s["hits"] == 1 and s["misses"] == 2    # `in` is not counted
    assert s["size"] == 1 and s["capacity"] == 16 and s["evictions"] == 0
    c.clear()
    assert len(c) == 0 and c.get(2) is None and c.keys().tolist() == []
    assert c.stats()["hits"] == 1                  # counters count since creation
    c.put(2, 5)
    assert c.get(2) == 5


def test_capacity_is_max_live_entries_and_eviction_is_counted():
    c = StateCache(5)
    for k in range(5):
        c.put(k, k)
    assert len(c) == 5 and c.stats()["evictions"] == 0
    c.put(0, 42)                            # existing key at a full cache: no eviction
    assert c.stats()["evictions"] == 0
    c.put(99, 99)
    assert len(c) == 5 and c.stats()["evictions"] == 1 and c.get(99) == 99


def test_clock_spares_a_key_hit_since_the_hand_passed():
    c = StateCache(4)
    for k in (10, 11, 12, 13):
        c.put(k, k)
    c.put(14, 14)           # all referenced: one sweep clears them, the first (10) goes
    assert 10 not in c and all(k in c for k in (11, 12, 13, 14))
    assert c.get(11) == 11  # second chance for 11
    c.put(15, 15)           # the hand is at 11: spared (cleared), 12 goes
    assert 12 not in c and 11 in c
    c.put(16, 16)           # 13 was cleared by the first sweep and not hit since
    assert 13 not in c and 11 in c and 14 in c and 15 in c


def test_capacity_one():
    c = StateCache(1)
    c.put(1, 1)
    c.put(2, 2)
    assert 1 not in c and c.get(2) == 2 and len(c) == 1 and c.stats()["evictions"] == 1


def test_many_put_pop_cycles_do_not_lengthen_probes():
    """Backward-shift deletion leaves no tombstones: after 200k random puts and pops the table
    probes exactly like a fresh one holding the same keys (linear probing's probe total depends
    only on the set of keys), and a miss stays a few probes long."""
    rng = np.random.default_rng(1)
    c = StateCache(1024)
    live = []
    for op in rng.integers(0, 2**64, 200_000, dtype=np.uint64).tolist():
        if len(live) < 900 and (op & 1 or not live):
            c.put(op, 1)
            live.append(op)
        else:
            c.pop(live.pop(op % len(live)))
    fresh = StateCache(1024)
    for k in c.keys().tolist():
        fresh.put(k, 1)
    absent = rng.integers(0, 2**64, 20_000, dtype=np.uint64)
    present = np.array(live, dtype=np.uint64)

    def probes(cache, keys):
        before = cache.stats()["probes"]
        cache.get_many(keys)
        return cache.stats()["probes"] - before

    assert sorted(c.keys().tolist()) == sorted(live)
    assert probes(c, present) == probes(fresh, present)
    assert probes(c, absent) == probes(fresh, absent)
    assert c.stats()["max_probe"] == fresh.stats()["max_probe"] <= 32
    # at load ~0.44 linear probing expects ~2 probes per miss; a degraded table would need ~2048
    assert probes(c, absent) / len(absent) < 4


# ---- bulk ----

def test_get_many_put_many():
    c = StateCache(1000)
    keys = np.arange(0, 2000, 2, dtype=np.uint64)
    assert c.put_many(keys, keys.astype(np.int64) * 3) == 0
    q = np.arange(0, 1000, dtype=np.int64)
    vals, found = c.get_many(q)
    assert found.dtype == bool and vals.dtype == np.int64
    np.testing.assert_array_equal(found, q % 2 == 0)
    np.testing.assert_array_equal(vals, np.where(q % 2 == 0, q * 3, 0))
    s = c.stats()
    assert s["hits"] == 500 and s["misses"] == 500
    assert c.put_many([5, 5, 7], [1, 2, 3]) == 2     # full: two new keys, two evictions
    assert c.get(5) == 2 and c.get(7) == 3           # a later duplicate wins
    v, f = c.get_many([])
    assert v.shape == (0,) and f.shape == (0,)
    assert c.put_many([], []) == 0


def test_put_many_evicts_its_own_keys_beyond_capacity():
    c = StateCache(100)
    assert c.put_many(np.arange(1000), np.arange(1000)) == 900
    assert len(c) == 100 and c.stats()["evictions"] == 900
    for k in c.keys().tolist():
        assert c.get(k) == k


def test_bulk_structured():
    c = StateCache(64, REC)
    rows = np.zeros(3, REC)
    rows["reserve0"] = [1, 2, 3]
    rows["tag"] = [b"a", b"b", b"c"]
    c.put_many([7, 8, 9], rows)
    vals, found = c.get_many([9, 1, 7])
    assert found.tolist() == [True, False, True]
    assert vals["reserve0"].tolist() == [3, 0, 1] and vals["tag"].tolist() == [b"c", b"", b"a"]
    with pytest.raises(TypeError, match="values"):
        c.put_many([1], np.zeros(1, [("x", "u8")]))


@pytest.mark.parametrize("keys, exc, word", [
    (np.array([1, -1]), ValueError, "keys"), (np.array([1.0]), TypeError, "keys"),
    (np.zeros((2, 2), np.uint64), ValueError, "keys"), ([2**64], TypeError, "keys"),
    (np.array([True]), TypeError, "keys")])
def test_bulk_bad_keys(keys, exc, word):
    c = StateCache(8)
    with pytest.raises(exc, match=word):
        c.get_many(keys)
    with pytest.raises(exc, match=word):
        c.put_many(keys, np.zeros(np.asarray(keys).shape[0], np.int64))
    assert len(c) == 0


@pytest.mark.parametrize("values, exc", [(np.zeros(2), TypeError), (np.zeros(3, np.int64), ValueError),
                                         (np.zeros((2, 1), np.int64), ValueError),
                                         ([1, 2**63], TypeError), (np.array([2**64 - 1], np.uint64).repeat(2), ValueError)])
def test_bulk_bad_values(values, exc):
    c = StateCache(8)
    with pytest.raises(exc, match="values"):
        c.put_many([1, 2], values)
    assert len(c) == 0


# ---- models ----

KEYS = st.one_of(st.integers(0, 40), st.integers(0, 2**64 - 1))
I64 = st.integers(-(2**63), 2**63 - 1)


class DictModel(RuleBasedStateMachine):
    """Capacity larger than any run's distinct keys: the cache must equal a dict exactly."""

    def __init__(self):
        super().__init__()
        self.cache = StateCache(512)
        self.model = {}

    @rule(k=KEYS, v=I64)
    def put(self, k, v):
        self.cache.put(k, v)
        self.model[k] = v

    @rule(k=KEYS)
    def get(self, k):
        assert self.cache.get(k, "absent") == self.model.get(k, "absent")

    @rule(k=KEYS)
    def pop(self, k):
        assert self.cache.pop(k, "absent") == self.model.pop(k, "absent")

    @rule(k=KEYS)
    def contains(self, k):
        assert (k in self.cache) == (k in self.model)

    @rule(items=st.lists(st.tuples(KEYS, I64), max_size=20))
    def put_many(self, items):
        self.cache.put_many(np.array([k for k, _ in items], dtype=np.uint64),
                            np.array([v for _, v in items], dtype=np.int64))
        self.model.update(items)

    @rule(keys=st.lists(KEYS, max_size=20))
    def get_many(self, keys):
        vals, found = self.cache.get_many(np.array(keys, dtype=np.uint64))
        assert found.tolist() == [k in self.model for k in keys]
        assert vals.tolist() == [self.model.get(k, 0) for k in keys]

    @precondition(lambda self: len(self.model) > 0)
    @rule(data=st.data())
    def pop_present(self, data):
        k = data.draw(st.sampled_from(sorted(self.model)))
        assert self.cache.pop(k) == self.model.pop(k)

    @rule()
    def clear(self):
        self.cache.clear()
        self.model.clear()

    @invariant()
    def equal(self):
        assert len(self.cache) == len(self.model)
        keys = self.cache.keys().tolist()
        assert {k: self.cache.get(k) for k in keys} == self.model
        assert self.cache.stats()["evictions"] == 0


TestDictModel = DictModel.TestCase
TestDictModel.settings = settings(max_examples=60, stateful_step_count=60, deadline=None)


class EvictionModel(RuleBasedStateMachine):
    """Small capacity, few keys: eviction invariants after every step."""

    @initialize(capacity=st.integers(1, 6))
    def create(self, capacity):
        self.cap = capacity
        self.cache = StateCache(capacity)
        self.latest = {}       # every key put and not popped since -> its latest value
        self.last_put = None
        self.evictions = 0

    def _present(self):
        return set(self.cache.keys().tolist())

    @rule(k=st.integers(0, 12), v=I64)
    def put(self, k, v):
        before = self._present()
        self.cache.put(k, v)
        after = self._present()
        self.latest[k] = v
        gone = before - after
        if k in before or len(before) < self.cap:
            assert not gone
        else:                                  # a new key at a full cache: exactly one victim
            assert len(gone) == 1
            victim = gone.pop()
            assert self.cap == 1 or victim != self.last_put
            self.evictions += 1
        assert k in after and after - before <= {k}
        self.last_put = k

    @rule(k=st.integers(0, 12))
    def get(self, k):
        got = self.cache.get(k, "absent")
        assert got == "absent" or got == self.latest[k]

    @rule(k=st.integers(0, 12))
    def pop(self, k):
        present = k in self.cache
        got = self.cache.pop(k, "absent")
        assert (got == "absent") == (not present)
        if present:
            assert got == self.latest[k]
        self.latest.pop(k, None)
        if self.last_put == k:
            self.last_put = None

    @invariant()
    def consistent(self):
        present = self._present()
        assert len(self.cache) == len(present) <= self.cap
        assert present <= set(self.latest)
        for k in present:
            assert self.cache.get(k) == self.latest[k]
        assert self.cache.stats()["evictions"] == self.evictions


TestEvictionModel = EvictionModel.TestCase
TestEvictionModel.settings = settings(max_examples=80, stateful_step_count=80, deadline=None)


@given(st.dictionaries(st.integers(0, 2**64 - 1),
                       st.tuples(st.integers(0, 2**64 - 1), st.integers(0, 2**64 - 1),
                                 st.floats(allow_nan=False), st.binary(max_size=3)),
                       max_size=40))
@settings(max_examples=50, deadline=None)
def test_structured_against_dict(model):
    c = StateCache(64, REC)
    for k, v in model.items():
        c.put(k, v)
    assert len(c) == len(model)
    for k, v in model.items():
        got = c.get(k).tolist()
        assert got[:3] == v[:3] and got[3] == v[3].rstrip(b"\0")


# ---- threads ----

def _run_threads(targets):
    errors = []

    def wrap(fn):
        def run():
            try:
                fn()
            except BaseException as e:  # surfaced below, with the thread's traceback
                errors.append(e)
        return run

    threads = [threading.Thread(target=wrap(t)) for t in targets]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads), "a thread did not finish"
    if errors:
        raise errors[0]


def test_concurrent_get_many_without_gil_counts_every_hit():
    c = StateCache(4096)
    present = np.arange(0, 8192, 2, dtype=np.uint64)
    c.put_many(present, (present * 7).astype(np.int64))
    queries = np.arange(8192, dtype=np.uint64)       # half present; >= 256 keys: GIL released
    hits = [0] * 4
    rounds = 200

    def reader(i):
        def run():
            for _ in range(rounds):
                vals, found = c.get_many(queries)
                assert (found == (queries % 2 == 0)).all()
                assert (vals == np.where(found, queries * 7, 0)).all()
                hits[i] += int(found.sum())
        return run

    before = c.stats()
    _run_threads([reader(i) for i in range(4)])
    s = c.stats()
    assert sum(hits) == 4 * rounds * 4096
    assert s["hits"] - before["hits"] == sum(hits)
    assert s["misses"] - before["misses"] == 4 * rounds * 4096
    assert s["size"] == 4096 and s["evictions"] == 0


def test_writers_and_readers_from_many_threads_stay_consistent():
    """A bulk writer (GIL released), a per-item writer and three readers (bulk and per item).
    Every stored value is a function of its key, so any read of a half-written table shows up;
    every query is counted as a hit or a miss."""
    c = StateCache(2048)
    f = lambda k: (k * 2654435761) % (2**61)   # noqa: E731
    rng = np.random.default_rng(3)
    batches = [rng.integers(0, 6000, 512, dtype=np.uint64) for _ in range(150)]
    queries = rng.integers(0, 6000, 1024, dtype=np.uint64)
    expect = np.array([f(k) for k in queries.tolist()], dtype=np.int64)
    item_ops = rng.integers(0, 6000, 20_000).tolist()
    answered = [0] * 3

    def bulk_writer():
        for keys in batches:
            c.put_many(keys, np.array([f(k) for k in keys.tolist()], dtype=np.int64))

    def item_writer():
        for k in item_ops:
            if k % 3:
                c.put(k, f(k))
            else:
                c.pop(k)

    def bulk_reader(i):
        def run():
            for _ in range(150):
                vals, found = c.get_many(queries)
                assert (vals[found] == expect[found]).all() and (vals[~found] == 0).all()
                answered[i] += len(found)
        return run

    def item_reader():
        for k in range(20_000):
            v = c.get(k % 6000)
            assert v is None or v == f(k % 6000)
            answered[2] += 1

    before = c.stats()
    _run_threads([bulk_writer, item_writer, bulk_reader(0), bulk_reader(1), item_reader])
    s = c.stats()
    assert answered == [150 * 1024, 150 * 1024, 20_000]
    assert (s["hits"] + s["misses"]) - (before["hits"] + before["misses"]) == sum(answered)
    assert s["size"] == len(c.keys()) <= 2048
    for k in c.keys().tolist():
        assert c.get(k) == f(k)


# ---- compiled callers: the .pxd contract ----

HELPER = '''
# cython: language_level=3, boundscheck=False, wraparound=False
from libc.stdint cimport int64_t, uint64_t
from tallyio._core.cache cimport StateCache

def lookup_sum(StateCache cache, const uint64_t[::1] keys):
    cdef Py_ssize_t i, hits = 0
    cdef int64_t total = 0
    cdef const char *rec
    cache.acquire(False)
    with nogil:
        for i in range(keys.shape[0]):
            rec = cache.lookup(keys[i])
            if rec != NULL:
                hits += 1
                total += (<const int64_t *>rec)[0]
    cache.release(False)
    return hits, total

def put_records(StateCache cache, const uint64_t[::1] keys, const int64_t[::1] values):
    """Returns how many records read back as written through the returned pointer."""
    cdef Py_ssize_t i, ok = 0
    cdef char *rec
    cache.acquire(True)
    with nogil:
        for i in range(keys.shape[0]):
            rec = cache.put_record(keys[i], &values[i])
            ok += (<int64_t *>rec)[0] == values[i]
    cache.release(True)
    return ok

def add_in_place(StateCache cache, uint64_t key, int64_t delta):
    """put_record(key, NULL): the record itself, zeroed when new, updated in place."""
    cdef char *rec
    cache.acquire(True)
    with nogil:
        rec = cache.put_record(key, NULL)
        (<int64_t *>rec)[0] += delta
    cache.release(True)
'''


@pytest.fixture(scope="module")
def helper(tmp_path_factory):
    """A separate extension that cimports tallyio._core.cache, as the engine will."""
    d = tmp_path_factory.mktemp("cache_helper")
    (d / "cache_helper.pyx").write_text(HELPER)
    (d / "setup.py").write_text(textwrap.dedent(f"""
        import numpy
        from Cython.Build import cythonize
        from setuptools import Extension, setup
        setup(ext_modules=cythonize(
            [Extension("cache_helper", ["cache_helper.pyx"],
                       include_dirs=[numpy.get_include(), {str(ROOT / "tallyio/_core/include")!r}])],
            include_path=[{str(ROOT)!r}], quiet=True))
    """))
    subprocess.run([sys.executable, "setup.py", "-q", "build_ext", "--inplace"], cwd=d,
                   check=True, capture_output=True)
    sys.path.insert(0, str(d))
    try:
        import cache_helper
    finally:
        sys.path.remove(str(d))
    return cache_helper


def test_compiled_lookup_and_put_record(helper):
    c = StateCache(100)
    keys = np.arange(50, dtype=np.uint64)
    assert helper.put_records(c, keys, np.arange(50, dtype=np.int64) * 2) == 50
    assert len(c) == 50 and c.get(7) == 14
    hits, total = helper.lookup_sum(c, np.arange(100, dtype=np.uint64))
    assert hits == 50 and total == sum(range(0, 100, 2))
    s = c.stats()
    assert s["hits"] == 51 and s["misses"] == 50
    helper.add_in_place(c, 1000, 5)
    helper.add_in_place(c, 1000, 5)
    helper.add_in_place(c, 7, 1)
    assert c.get(1000) == 10 and c.get(7) == 15


def test_compiled_lookup_from_four_threads(helper):
    c = StateCache(2048)
    c.put_many(np.arange(2048, dtype=np.uint64), np.ones(2048, dtype=np.int64))
    queries = np.arange(4096, dtype=np.uint64)
    results = []

    def reader():
        for _ in range(100):
            results.append(helper.lookup_sum(c, queries))

    _run_threads([reader] * 4)
    assert results == [(2048, 2048)] * 400
    s = c.stats()
    assert s["hits"] == 400 * 2048 and s["misses"] == 400 * 2048
