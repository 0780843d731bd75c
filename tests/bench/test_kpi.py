"""The KPI suite's accounting and reporting: undecided rows fail a run whatever its percentiles,
every offered row is accounted for, and the tables are generated from the results. No assertion
here depends on how fast the machine is."""
import json
import threading
import types

import numpy as np
import pytest

from tallyio.bench import docs, kpi
from tallyio.record import TX_DTYPE

FAST = {"p50": 1_000, "p95": 2_000, "p99": 3_000, "p999": 4_000, "max": 5_000,
        "throughput_tps": 5e6, "offered": 1000, "decided": 1000, "undecided": {}}


def run(**kw):
    return dict(FAST, **kw)


# ---- accounting --------------------------------------------------------------------------------

def test_settle_counts_every_offered_row():
    assert kpi.settle(10, 10, {}) == {}
    assert kpi.settle(10, 7, {"expired": 2, "ring_full": 0}) == {"expired": 2, "unaccounted": 1}
    assert kpi.settle(10, 10, {"expired": 0}) == {}


def _report(**kw):
    base = dict(processed=100, rejected={}, processors={"a": {"errors": 0}, "b": {"errors": 0}})
    base.update(kw)
    return types.SimpleNamespace(**base)


def test_engine_accounting_from_an_older_report():
    r = _report(processed=100, rejected={"breaker_open:a": 30, "expired": 5},
                processors={"a": {"errors": 0}, "b": {"errors": 2}})
    decided, undecided = kpi.engine_accounting(r)
    assert decided == 70
    assert undecided == {"breaker_open:a": 30, "expired": 5, "error:b": 2}


def test_engine_accounting_prefers_the_report_fields():
    r = _report(processed=100, decided=90, undecided={"breaker_open:a": 10, "expired": 0},
                rejected={"breaker_open:a": 10, "duplicate": 3})
    decided, undecided = kpi.engine_accounting(r)
    assert decided == 90
    assert undecided == {"breaker_open:a": 10, "duplicate": 3}


def _agg(**engines):
    return {e: kpi.aggregate(runs) for e, runs in engines.items()}


def test_a_run_with_undecided_rows_fails_every_target():
    clean = _agg(tallyio=[run()])
    v = kpi.judge("latency_under_load", "1.0", clean)
    assert {m: x["verdict"] for m, x in v.items()} == {
        "undecided": "PASS", "p50": "PASS", "p95": "PASS", "p99": "PASS"}
    dirty = _agg(tallyio=[run(undecided={"expired": 1})])
    v = kpi.judge("latency_under_load", "1.0", dirty)
    assert all(x["verdict"] == "FAIL" for x in v.values())
    assert v["undecided"]["value"] == 1


@pytest.mark.parametrize("reason", ["breaker_open:arbitrage", "error:sandwich", "expired",
                                    "ring_full", "ring_full_push", "engine_error", "unaccounted"])
def test_any_reason_fails(reason):
    # one undecided row in one of three runs: the medians are perfect, the benchmark fails
    agg = _agg(tallyio=[run(), run(undecided={reason: 1}), run()])
    assert agg["tallyio"]["p99"] == FAST["p99"]
    assert agg["tallyio"]["runs_with_undecided"] == 1
    v = kpi.judge("concurrent_operations", "8", agg)
    assert v["p99"]["verdict"] == "FAIL" and v["undecided"]["verdict"] == "FAIL"


def test_targets_use_the_limits_and_the_batched_peer():
    slow = _agg(tallyio=[run(p50=60_000)])
    assert kpi.judge("latency_under_load", "1.0", slow)["p50"]["verdict"] == "FAIL"
    assert kpi.judge("latency_under_load", "5.0", slow)["p50"]["verdict"] == "PASS"
    sat = _agg(tallyio=[run(throughput_tps=2e6, peak_rss_bytes=2**20)],
               batched=[run(throughput_tps=3e5)])
    v = kpi.judge("saturation", "all", sat)
    assert v["vs_batched"]["value"] == pytest.approx(2e6 / 3e5)
    assert v["vs_batched"]["verdict"] == "FAIL"
    assert v["throughput_tps"]["verdict"] == "PASS"
    sat["batched"] = kpi.aggregate([run(throughput_tps=1e5)])
    assert kpi.judge("saturation", "all", sat)["vs_batched"]["verdict"] == "PASS"
    assert kpi.judge("latency_under_load", "2.0", slow) == {}  # no targets at this point


def test_bundled_feed_fails_on_any_run_that_missed_a_plant_or_opened_a_breaker():
    ok = dict(planted_missed=0, breakers_opened=0, peak_rss_bytes=100 * 2**20)
    clean = _agg(tallyio=[run(**ok)] * 3)
    assert all(x["verdict"] == "PASS" for x in kpi.judge("bundled_feed", "speed 1", clean).values())
    # one run of three: the median is 0, the verdict still FAIL (the worst run counts)
    for bad in ({"planted_missed": 1}, {"breakers_opened": 1}):
        agg = _agg(tallyio=[run(**ok), run(**dict(ok, **bad)), run(**ok)])
        v = kpi.judge("bundled_feed", "speed 1", agg)
        metric = next(iter(bad))
        assert v[metric]["verdict"] == "FAIL" and v[metric]["value"] == 1
    heavy = _agg(tallyio=[run(**dict(ok, peak_rss_bytes=151 * 2**20))])
    assert kpi.judge("bundled_feed", "speed 1", heavy)["peak_rss_bytes"]["verdict"] == "FAIL"


def test_aggregate_medians_spread_and_summed_undecided():
    a = kpi.aggregate([run(p99=1, undecided={"expired": 2}), run(p99=5),
                       run(p99=3, undecided={"expired": 1})])
    assert a["p99"] == 3 and a["spread"]["p99"] == [1, 5]
    assert a["undecided"] == {"expired": 3}
    assert a["repeats"] == 3 and len(a["runs"]) == 3


def test_ratios_against_each_peer():
    agg = _agg(tallyio=[run(p99=100, throughput_tps=1000)],
               batched=[run(p99=1000, throughput_tps=100)],
               engine_only=[run(p99=50, throughput_tps=1000)])
    r = kpi.ratios(agg)
    assert r["batched"]["p99"] == 10 and r["batched"]["throughput_tps"] == 10
    assert r["engine_only"]["p99"] == 0.5
    assert "p99" not in kpi.ratios(agg, latency=False)["batched"]


# ---- the plain peers ---------------------------------------------------------------------------

def _rows(n):
    rows = np.zeros(n, dtype=TX_DTYPE)
    rows["id"] = np.arange(n)
    return rows


class Failing:
    def __init__(self, bad_ids):
        self.bad = set(bad_ids)

    def process(self, batch):
        if self.bad & set(batch["id"].tolist()):
            raise RuntimeError("bad row")
        return []


@pytest.mark.parametrize("cls", [kpi.PlainEngine, kpi.BatchedPlainEngine])
def test_peer_errors_are_undecided(cls):
    pe = cls([("ok", Failing([])), ("picky", Failing([3]))])
    rows = _rows(10)
    rows["arrival_ns"] = kpi.now_ns()
    for i in range(0, 10, 5):
        pe.offered += pe.submit(rows[i:i + 5])
    pe.close(60)
    s = pe.summary()
    assert s["offered"] == 10
    assert s["decided"] + sum(s["undecided"].values()) == 10
    assert s["undecided"] == {"error:picky": 10 - s["decided"]}
    assert s["count"] == s["decided"]  # latency recorded for decided rows only


def test_peer_backlog_when_the_drain_limit_runs_out():
    pe = None

    class Stuck:
        def process(self, batch):  # holds the first item until the peer gives up
            while not pe._abort:
                threading.Event().wait(0.001)
            return []

    pe = kpi.PlainEngine([("stuck", Stuck())])
    rows = _rows(3)
    rows["arrival_ns"] = kpi.now_ns()
    pe.offered = pe.submit(rows)
    pe.close(0.01)
    s = pe.summary()
    assert s["undecided"] == {"backlog": 2}
    assert s["decided"] == 1


def test_paced_loop_stamps_the_schedule():
    got = []
    rows = _rows(500)
    t0 = kpi.now_ns()
    offered = kpi.paced_loop(lambda r: got.append(r.copy()) or len(r), rows, 1e7, t0,
                             offset=1, stride=2)
    assert offered == 500
    stamps = np.concatenate([g["arrival_ns"] for g in got])
    assert np.array_equal(stamps, kpi.schedule(500, 1e7, t0, 1, 2))
    assert np.array_equal(np.concatenate([g["id"] for g in got]), np.arange(500))


# ---- every engine on a small feed: every offered row accounted for -------------------------------

@pytest.fixture
def small_feed(monkeypatch, tmp_path):
    from tallyio.feeds import SyntheticSource
    src = SyntheticSource(seed=3, n=4000, rate=kpi.BASE_RATE, plant_arbitrage=2, plant_sandwich=2)
    monkeypatch.setattr(kpi, "workload", lambda *a, **k: (src.records, src.metadata))
    monkeypatch.setattr(kpi, "CACHE_DIR", str(tmp_path))
    return src


@pytest.mark.parametrize("producers", [1, 3])
def test_every_engine_accounts_for_every_row(small_feed, producers):
    out = {e: kpi.run_point(e, 20_000, 0.1, producers, drain_limit=120) for e in kpi.ENGINES}
    for e, s in out.items():
        assert s["offered"] == 2000, e
        assert s["decided"] + sum(s["undecided"].values()) == 2000, (e, s["undecided"])
    assert out["batched"]["undecided"] == out["plain"]["undecided"] == {}
    assert out["batched"]["decided"] == out["plain"]["decided"] == 2000
    if producers == 1:  # same rows in the same order: the same findings
        assert out["batched"]["opportunities"] == out["plain"]["opportunities"]
        if not out["tallyio"]["undecided"]:
            assert out["tallyio"]["opportunities"] == out["batched"]["opportunities"]


def test_saturation_accounts_for_every_row(small_feed):
    for e in kpi.ENGINES:
        s = kpi.saturation_point(e, 3000, drain_limit=120)
        assert s["decided"] + sum(s["undecided"].values()) == s["offered"] == 3000, e


# ---- the suite, the table, the docs --------------------------------------------------------

def test_suite_alternates_engines_and_fails_undecided(monkeypatch):
    calls = []

    def fake_point(engine, rate, seconds, producers=1, **kw):
        calls.append(engine)
        bad = engine == "tallyio" and rate == 5 * kpi.BASE_RATE and len(calls) % 2
        return run(undecided={"expired": 4} if bad else {}, opportunities=1)

    monkeypatch.setattr(kpi, "run_point", fake_point)
    monkeypatch.setattr(kpi, "saturation_point",
                        lambda e, n, **kw: run(throughput_tps=2e6 if e == "tallyio" else 1e5,
                                               peak_rss_bytes=2**28))
    monkeypatch.setattr(kpi, "workload", lambda *a, **k: None)
    monkeypatch.setattr(kpi, "bundled_feed_point",
                        lambda e: run(planted_missed=0, breakers_opened=0, peak_rss_bytes=2**26))
    r = kpi.kpi_results(quick=True, repeats=2, seconds=0.01)
    assert calls[:8] == ["tallyio", "batched", "plain", "engine_only",
                         "batched", "plain", "engine_only", "tallyio"]
    json.dumps(r)  # JSON-able
    v = {(x["benchmark"], x["point"], x["metric"]): x["verdict"] for x in r["verdicts"]}
    assert v[("latency_under_load", "1.0", "p99")] == "PASS"
    assert v[("latency_under_load", "5.0", "p99")] == "FAIL"
    assert v[("saturation", "all", "vs_batched")] == "PASS"
    assert v[("bundled_feed", "speed 1", "planted_missed")] == "PASS"
    assert r["passed"] is False
    assert r["meta"]["repeats"] == 2 and "commit" in r["meta"]["machine"]
    table = kpi.kpi_table(r)
    assert "expired=" in table and "FAIL" in table
    block = docs.render(r)
    assert "expired=" in block and "**FAIL**" in block
    doc = f"# Perf\nprose\n{docs.BEGIN}\nold numbers\n{docs.END}\nmore prose\n"
    new = docs.update(doc, block)
    assert "old numbers" not in new and new.startswith("# Perf\nprose\n")
    assert new.endswith(f"{docs.END}\nmore prose\n")
    assert docs.update(new, block) == new  # regenerating is idempotent
    with pytest.raises(ValueError):
        docs.update("# no markers\n", block)
