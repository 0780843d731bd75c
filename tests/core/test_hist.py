"""tallyio.LatencyHistogram: precision against exact and HdrHistogram percentiles, API, threads."""
import math
import threading

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tallyio import LatencyHistogram
from tallyio._core.hist import RELATIVE_ERROR

QS = [0, 1, 25, 50, 90, 95, 99, 99.9, 100]


def exact_percentile(values, q):
    """The rank-th smallest value, rank = ceil(q/100 * n) (at least 1): the definition we report."""
    s = np.sort(np.asarray(values))
    rank = max(1, math.ceil(q / 100 * len(s)))
    return int(s[rank - 1])


def test_stated_precision_is_one_percent_or_better():
    assert RELATIVE_ERROR <= 0.01


@given(st.lists(st.integers(0, 2**62), min_size=1, max_size=300),
       st.sampled_from(QS))
@settings(max_examples=300, deadline=None)
def test_percentile_within_stated_error_of_exact(values, q):
    h = LatencyHistogram()
    h.record_many(np.array(values, dtype=np.int64))
    exact = exact_percentile(values, q)
    got = h.percentile(q)
    assert exact <= got <= exact + exact * RELATIVE_ERROR + 1e-9
    assert h.count == len(values)
    assert h.min == min(values) and h.max == max(values)


def test_small_values_are_exact():
    h = LatencyHistogram()
    for v in range(128):
        h.record(v)
    assert [h.percentile(q) for q in (0, 50, 100)] == [0, 63, 127]


@pytest.mark.parametrize("dist", ["lognormal", "uniform", "bimodal"])
def test_agrees_with_hdrhistogram(dist):
    from hdrh.histogram import HdrHistogram
    rng = np.random.default_rng(11)
    if dist == "lognormal":
        v = np.round(rng.lognormal(np.log(30_000), 1.0, 50_000)).astype(np.int64)
    elif dist == "uniform":
        v = rng.integers(1_000, 5_000_000, 50_000)
    else:
        v = np.concatenate([rng.integers(5_000, 8_000, 45_000), rng.integers(900_000, 2_000_000, 5_000)])
    v = np.clip(v, 1, 3_600 * 10**9)
    ours = LatencyHistogram()
    ours.record_many(v)
    ref = HdrHistogram(1, 3_600 * 10**9, 3)  # 3 significant digits: 0.1% precision
    for x in v.tolist():
        ref.record_value(x)
    for q in [50, 90, 95, 99, 99.9]:
        a, b = ours.percentile(q), ref.get_value_at_percentile(q)
        # both report a bucket bound: they agree within the sum of the two precisions
        assert abs(a - b) <= (RELATIVE_ERROR + 0.001) * b, (q, a, b)
    assert ours.count == ref.get_total_count()


def test_empty_histogram():
    h = LatencyHistogram()
    assert h.count == 0 and h.min == 0 and h.max == 0 and h.mean == 0.0
    assert h.percentile(99) == 0


def test_mean_merge_reset_buckets():
    a, b = LatencyHistogram(), LatencyHistogram()
    a.record_many([10, 20, 30])
    b.record_many([1000, 2000])
    a.merge(b)
    assert a.count == 5 and a.min == 10 and a.max == 2000
    assert a.mean == pytest.approx((10 + 20 + 30 + 1000 + 2000) / 5)
    bounds, counts = a.buckets()
    assert counts.sum() == 5 and bounds.dtype == np.int64
    assert list(bounds[:3]) == [10, 20, 30]
    assert b.count == 2  # merge leaves the source alone
    a.reset()
    assert a.count == 0 and a.percentile(50) == 0 and a.max == 0
    with pytest.raises(ValueError, match="into itself"):
        a.merge(a)
    with pytest.raises(TypeError):
        a.merge(None)
    assert "LatencyHistogram(count=0" in repr(a)


def test_percentiles_dict():
    h = LatencyHistogram()
    h.record_many(np.arange(1, 1001))
    p = h.percentiles()
    assert set(p) == {50, 95, 99, 99.9} and p[50] == pytest.approx(500, rel=RELATIVE_ERROR)


def test_bad_input():
    h = LatencyHistogram()
    with pytest.raises(ValueError, match="ns must be >= 0, got -1"):
        h.record(-1)
    with pytest.raises(ValueError, match="q must be in \\[0, 100\\], got 101"):
        h.percentile(101)
    with pytest.raises(ValueError, match="q must be in \\[0, 100\\], got -0.5"):
        h.percentile(-0.5)
    with pytest.raises(TypeError, match="values must be integers, got dtype float64"):
        h.record_many(np.array([1.0]))
    with pytest.raises(ValueError, match="one-dimensional"):
        h.record_many(np.zeros((2, 2), dtype=np.int64))
    with pytest.raises(ValueError, match="values must be >= 0, got -5 at index 2"):
        h.record_many([1, 2, -5, 4])
    assert h.count == 2  # the values before the bad one were recorded, as the message says
    with pytest.raises(ValueError, match="< 2\\*\\*63"):
        h.record_many(np.array([2**63], dtype=np.uint64))
    h.record_many([])
    assert h.count == 2


def test_record_count_zero_records_nothing():
    """count=0 is a no-op: it must not leave a max (or min) that no recording backs."""
    h = LatencyHistogram()
    h.record(5, count=0)
    assert (h.count, h.min, h.max, h.mean) == (0, 0, 0, 0.0)
    assert h.percentile(100) == 0 and len(h.buckets()[0]) == 0
    h.record(10)
    h.record(1_000_000, count=0)
    h.record(1, count=0)
    assert (h.count, h.min, h.max) == (1, 10, 10)
    h.record(7, count=3)
    assert (h.count, h.min, h.max, h.mean) == (4, 7, 10, 31 / 4)
    with pytest.raises(ValueError, match="count must be >= 0, got -1"):
        h.record(5, count=-1)
    assert h.count == 4


def test_huge_values():
    h = LatencyHistogram()
    h.record(2**63 - 1)
    h.record(2**62)
    assert h.max == 2**63 - 1
    assert h.percentile(50) >= 2**62


def test_concurrent_recording_counts_everything():
    """Four threads record in bulk with the GIL released, one records one by one."""
    h = LatencyHistogram()
    per_thread = 500_000
    data = [np.random.default_rng(t).integers(0, 10**9, per_thread) for t in range(4)]
    singles = list(range(1, 20_001))

    def bulk(t):
        for chunk in np.array_split(data[t], 50):
            h.record_many(chunk)

    def single():
        for v in singles:
            h.record(v)

    ts = [threading.Thread(target=bulk, args=(t,)) for t in range(4)] + [threading.Thread(target=single)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    everything = np.concatenate(data + [np.array(singles)])
    assert h.count == len(everything)
    _, counts = h.buckets()
    assert int(counts.sum()) == len(everything)
    assert h.mean == pytest.approx(everything.mean())
    assert h.min == everything.min() and h.max == everything.max()
