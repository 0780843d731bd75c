"""SIMD kernels: every level the CPU has against a plain-Python model and against scalar."""
import os
import subprocess
import sys
import threading

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import tallyio.simd as simd
from tallyio._core.simd import _parse_simd_env
from tallyio.errors import ConfigError

LEVELS = simd.available_levels()
M64 = (1 << 64) - 1
u64 = st.integers(0, M64)


def fmix64(k):
    """MurmurHash3's fmix64, transcribed with Python ints."""
    k ^= k >> 33
    k = (k * 0xFF51AFD7ED558CCD) & M64
    k ^= k >> 33
    k = (k * 0xC4CEB9FE1A85EC53) & M64
    k ^= k >> 33
    return k


def unaligned(values):
    """A uint64 array holding ``values`` whose data starts 1 byte past an aligned address."""
    values = np.asarray(values, dtype=np.uint64)
    buf = np.zeros(8 * len(values) + 9, dtype=np.uint8)
    view = buf[1:1 + 8 * len(values)].view(np.uint64)
    view[:] = values
    assert len(values) == 0 or view.ctypes.data % 8 == 1
    return view


def rand_u64(n, seed):
    return np.random.default_rng(seed).integers(0, M64, n, dtype=np.uint64, endpoint=True)


def test_levels_this_machine():
    assert LEVELS[0] == "scalar"
    assert set(LEVELS) <= set(simd.LEVELS)
    assert simd.level() in LEVELS
    # The machine these tests were written on has AVX-512; the CPU flags say whether this one does.
    flags = open("/proc/cpuinfo").read() if os.path.exists("/proc/cpuinfo") else ""
    if " avx512f" in flags and " avx512dq" in flags:
        assert LEVELS == ("scalar", "avx2", "avx512")


def test_fmix64_model_known_values():
    assert fmix64(0) == 0
    # A bijection: distinct inputs, distinct outputs.
    assert len({fmix64(i) for i in range(1000)}) == 1000


@pytest.mark.parametrize("lvl", LEVELS)
@pytest.mark.parametrize("n", range(71))
def test_hash_every_length_aligned_and_not(lvl, n):
    a = rand_u64(n, n)
    expect = np.array([fmix64(int(x)) for x in a], dtype=np.uint64)
    got = simd.hash_batch(a, level=lvl)
    assert got.dtype == np.uint64 and got.shape == (n,)
    np.testing.assert_array_equal(got, expect)
    np.testing.assert_array_equal(simd.hash_batch(unaligned(a), level=lvl), expect)
    np.testing.assert_array_equal(got, simd.hash_batch(a, level="scalar"))


@pytest.mark.parametrize("lvl", LEVELS)
@pytest.mark.parametrize("n", range(71))
def test_compare_every_length_aligned_and_not(lvl, n):
    a = rand_u64(n, 1000 + n)
    b = a.copy()
    b[::3] ^= np.uint64(1 << 63)
    b[1::5] += np.uint64(1)
    expect = a == b
    got = simd.compare_batch(a, b, level=lvl)
    assert got.dtype == np.bool_
    np.testing.assert_array_equal(got, expect)
    np.testing.assert_array_equal(simd.compare_batch(unaligned(a), unaligned(b), level=lvl), expect)
    np.testing.assert_array_equal(got, simd.compare_batch(a, b, level="scalar"))


@pytest.mark.parametrize("lvl", LEVELS)
@pytest.mark.parametrize("n", range(71))
@pytest.mark.parametrize("watch_size", [0, 1, 5, 16, 24, 32, 33, 200])
def test_contains_every_length(lvl, n, watch_size):
    watch = rand_u64(watch_size, 7 + watch_size)
    keys = rand_u64(n, 2000 + n)
    keys[::2] = watch[np.arange(len(keys[::2])) % watch_size] if watch_size else keys[::2]
    keys[3::7] = 0  # the key that marks a free slot inside the table
    model = {int(x) for x in watch}
    expect = np.array([int(k) in model for k in keys], dtype=bool)
    for ks in (keys, unaligned(keys)):
        np.testing.assert_array_equal(simd.contains_batch(ks, watch, level=lvl), expect)
        np.testing.assert_array_equal(simd.contains_batch(ks, unaligned(watch), level=lvl), expect)
        wl = simd.WatchList(watch)
        np.testing.assert_array_equal(wl.contains(ks, level=lvl), expect)
        np.testing.assert_array_equal(simd.contains_batch(ks, wl, level=lvl), expect)
    with_zero = np.append(watch, np.uint64(0))
    expect0 = expect | (keys == 0)
    np.testing.assert_array_equal(simd.contains_batch(keys, with_zero, level=lvl), expect0)
    np.testing.assert_array_equal(simd.WatchList(with_zero).contains(keys, level=lvl), expect0)


@pytest.mark.parametrize("lvl", LEVELS)
def test_contains_large_watchlist(lvl):
    watch = rand_u64(50_000, 3)
    wl = simd.WatchList(np.concatenate([watch, watch[:1000]]))  # duplicates count once
    assert len(wl) == len(np.unique(watch))
    inside = watch[::7]
    outside = np.setdiff1d(rand_u64(20_000, 4), watch)
    keys = np.concatenate([inside, outside])
    got = wl.contains(keys, level=lvl)
    assert got[:len(inside)].all() and not got[len(inside):].any()
    np.testing.assert_array_equal(simd.contains_batch(keys, watch, level=lvl), got)


@pytest.mark.parametrize("lvl", LEVELS)
def test_contains_sequential_ids_collide_in_low_bits(lvl):
    # tx ids are dense integers; fmix64 must spread them over the buckets.
    watch = np.arange(1, 40_001, 2, dtype=np.uint64) << np.uint64(20)
    keys = np.arange(0, 40_002, dtype=np.uint64) << np.uint64(20)
    expect = np.isin(keys, watch)
    np.testing.assert_array_equal(simd.contains_batch(keys, watch, level=lvl), expect)


@settings(max_examples=200, deadline=None)
@given(st.lists(u64, max_size=80), st.sampled_from(LEVELS))
def test_hash_property(values, lvl):
    got = simd.hash_batch(np.array(values, dtype=np.uint64), level=lvl)
    assert got.tolist() == [fmix64(v) for v in values]


small_keys = st.one_of(st.integers(0, 40), u64)


@settings(max_examples=300, deadline=None)
@given(st.lists(small_keys, max_size=120), st.lists(small_keys, max_size=80), st.sampled_from(LEVELS))
def test_watchlist_against_set(watch, queries, lvl):
    model = set(watch)
    wl = simd.WatchList(np.array(watch, dtype=np.uint64))
    assert len(wl) == len(model)
    assert wl.to_array().tolist() == sorted(model)
    q = np.array(queries, dtype=np.uint64)
    expect = [k in model for k in queries]
    assert wl.contains(q, level=lvl).tolist() == expect
    assert simd.contains_batch(q, np.array(watch, dtype=np.uint64), level=lvl).tolist() == expect
    assert [k in wl for k in queries] == expect


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(u64, u64), max_size=80), st.sampled_from(LEVELS))
def test_compare_property(pairs, lvl):
    a = np.array([p[0] for p in pairs], dtype=np.uint64)
    b = np.array([p[1] for p in pairs], dtype=np.uint64)
    assert simd.compare_batch(a, b, level=lvl).tolist() == [x == y for x, y in pairs]


# ---------------------------------------------------------------- inputs

def test_safe_conversions_accepted():
    expect = simd.hash_batch(np.array([0, 1, 255, 2**40], dtype=np.uint64))
    np.testing.assert_array_equal(simd.hash_batch([0, 1, 255, 2**40]), expect)  # int64 >= 0
    np.testing.assert_array_equal(simd.hash_batch(np.array([0, 1, 255], np.uint8)), expect[:3])
    np.testing.assert_array_equal(simd.hash_batch(np.array([0, 1], np.uint32)), expect[:2])
    np.testing.assert_array_equal(simd.hash_batch(np.array([0, 1, 255, 2**40], ">u8")), expect)
    np.testing.assert_array_equal(simd.hash_batch(np.array([0, 1, 255, 2**40], np.uint64)[::-1]),
                                  expect[::-1])
    big = [2**64 - 1, 5]  # numpy alone would make this float64
    np.testing.assert_array_equal(simd.hash_batch(big), [fmix64(v) for v in big])
    assert simd.hash_batch([]).shape == (0,)


@pytest.mark.parametrize("fn", ["hash", "compare", "contains", "watchlist"])
def test_bad_inputs_name_the_parameter(fn):
    def call(x):
        if fn == "hash":
            return simd.hash_batch(x)
        if fn == "compare":
            return simd.compare_batch(np.zeros(2, np.uint64), x)
        if fn == "contains":
            return simd.contains_batch(x, [1, 2])
        return simd.WatchList(x)
    name = {"hash": "a", "compare": "b", "contains": "keys", "watchlist": "keys"}[fn]
    with pytest.raises(TypeError, match=rf"^{name} must be .* got dtype float64"):
        call(np.array([1.0, 2.0]))
    with pytest.raises(TypeError, match=rf"^{name} must be .* got dtype <U1"):
        call(np.array(["a", "b"]))
    with pytest.raises(ValueError, match=rf"^{name} must be one-dimensional, got shape \(2, 1\)"):
        call(np.zeros((2, 1), np.uint64))
    with pytest.raises(ValueError, match=rf"^{name} must be non-negative .* got -3 at index 1"):
        call(np.array([1, -3], np.int64))
    with pytest.raises(ValueError, match=rf"^{name} must hold integers in \[0, 2\*\*64\)"):
        call([2**64, 1])


def test_compare_length_mismatch_names_both():
    with pytest.raises(ValueError, match=r"len\(a\)=3 and len\(b\)=2"):
        simd.compare_batch(np.zeros(3, np.uint64), np.zeros(2, np.uint64))


def test_bad_level_and_watchlist_misuse():
    with pytest.raises(ValueError, match=r"level must be one of .* got 'sse4'"):
        simd.hash_batch([1], level="sse4")
    with pytest.raises(ValueError, match=r"got 'sse4'"):
        simd.set_level("sse4")
    wl = simd.WatchList([1, 2, 3])
    with pytest.raises(TypeError, match="immutable"):
        wl.__init__([4])
    assert 4 not in wl and 1 in wl
    with pytest.raises(TypeError, match=r"key must be an int, got 'x'"):
        "x" in wl
    assert -1 not in wl and 2**64 not in wl
    assert repr(wl).startswith("WatchList(3 keys")
    assert wl.nbytes == 64


def test_watchlist_is_built_in_cinit():
    """WatchList.__new__(WatchList) then a query used to read a NULL table (SIGSEGV): the table
    is built in __cinit__, so __new__ without keys is a TypeError and with keys a whole list."""
    with pytest.raises(TypeError):
        simd.WatchList.__new__(simd.WatchList)
    wl = simd.WatchList.__new__(simd.WatchList, [5, 0, 7])
    assert 5 in wl and 6 not in wl and len(wl) == 3 and wl.to_array().tolist() == [0, 5, 7]
    assert wl.contains(np.array([7, 8], np.uint64)).tolist() == [True, False]


def test_set_level_round_trip():
    old = simd.level()
    try:
        for lvl in LEVELS:
            simd.set_level(lvl)
            assert simd.level() == lvl
            np.testing.assert_array_equal(simd.hash_batch([1, 2, 3]), [fmix64(v) for v in (1, 2, 3)])
    finally:
        simd.set_level(old)
    assert simd.level() == old


@pytest.mark.parametrize("raw,cpu,want", [("", 2, 2), ("auto", 1, 1), (" AVX2 ", 2, 1),
                                          ("scalar", 0, 0), ("avx512", 2, 2)])
def test_env_parse(raw, cpu, want):
    assert _parse_simd_env(raw, cpu) == want


def test_env_parse_errors():
    with pytest.raises(ConfigError, match=r"got 'sse'"):
        _parse_simd_env("sse", 2)
    with pytest.raises(ConfigError, match=r"asks for avx512, which this CPU lacks \(available: scalar, avx2\)"):
        _parse_simd_env("avx512", 1)
    with pytest.raises(ConfigError, match=r"asks for avx2, which this CPU lacks \(available: scalar\)"):
        _parse_simd_env("avx2", 0)


def _import_with(value):
    env = dict(os.environ, TALLYIO_SIMD=value)
    return subprocess.run([sys.executable, "-c", "import tallyio.simd as s; print(s.level())"],
                          env=env, capture_output=True, text=True)


def test_env_forces_level_at_import():
    for lvl in LEVELS:
        r = _import_with(lvl)
        assert r.returncode == 0, r.stderr
        assert r.stdout.strip() == lvl
    r = _import_with("avx1024")
    assert r.returncode != 0
    assert "ConfigError: TALLYIO_SIMD must be one of auto, scalar, avx2, avx512, got 'avx1024'" in r.stderr


# ---------------------------------------------------------------- threads

def test_kernels_from_four_threads():
    """The nogil kernels run concurrently on shared inputs; every result is checked and every
    key processed is counted."""
    rounds, n = 40, 4099
    watch = rand_u64(3000, 11)
    wl = simd.WatchList(watch)
    inputs = []
    for t in range(4):
        a = rand_u64(n, 100 + t)
        a[::3] = watch[: len(a[::3])]
        b = a.copy()
        b[::4] += np.uint64(1)
        inputs.append((a, b, np.array([fmix64(int(x)) for x in a], np.uint64), a == b,
                       np.isin(a, watch)))
    barrier = threading.Barrier(4)
    processed = [0] * 4
    errors = []

    def worker(t):
        a, b, h, eq, member = inputs[t]
        lvl = LEVELS[t % len(LEVELS)]
        try:
            barrier.wait(timeout=60)
            for _ in range(rounds):
                assert np.array_equal(simd.hash_batch(a, level=lvl), h)
                assert np.array_equal(simd.compare_batch(a, b, level=lvl), eq)
                assert np.array_equal(wl.contains(a, level=lvl), member)
                assert np.array_equal(simd.contains_batch(a, watch[:20], level=lvl),
                                      np.isin(a, watch[:20]))
                processed[t] += 4 * n
        except Exception as e:  # reported below with the thread's number
            errors.append((t, e))

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=120)
    assert not any(th.is_alive() for th in threads)
    assert errors == []
    assert processed == [rounds * 4 * n] * 4
