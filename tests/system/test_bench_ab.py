"""tallyio bench --ab: verdicts from the trials' spread, noise recorded, busy machines refused.

Trials here come from a made-up runner: no benchmark runs.
"""
from __future__ import annotations

import json
import math

import pytest

from tallyio.bench import ab, docs
from tallyio.config import OPTIMIZATIONS


def test_mann_whitney_exact_and_approximate():
    u, p = ab.mann_whitney([1, 2, 3, 4, 5], [6, 7, 8, 9, 10])
    assert u == 0 and p == pytest.approx(2 / 252)   # complete separation, 5 per arm
    u, p = ab.mann_whitney([1, 2, 3, 4, 5], [1.5, 2.5, 3.5, 4.5, 5.5])
    assert u == 10 and p == pytest.approx(0.6905, abs=1e-4)  # interleaved: no evidence
    _, p = ab.mann_whitney([1, 2, 3], [4, 5, 6])
    assert p == pytest.approx(0.1)  # 3 per arm can never reach 0.05
    _, p = ab.mann_whitney(list(range(30)), [x + 10 for x in range(30)])  # normal approximation
    assert 0 < p < 0.001
    _, p = ab.mann_whitney([1, 1, 1, 1, 1], [1, 1, 1, 1, 1])  # all tied
    assert p == 1.0
    counts = ab._u_counts(5, 5)
    assert sum(counts) == math.comb(10, 5) and counts == counts[::-1]


def test_verdicts_come_from_the_spread_not_the_medians():
    # medians differ by 10 %, but the ranges overlap heavily: within noise
    on = [110, 60, 170, 100, 140]
    off = [100, 50, 160, 95, 150]
    v = ab.verdict(on, off, higher_is_better=True)
    assert v["verdict"] == "within noise" and v["on"][0] > v["off"][0] and v["p"] > 0.05
    v = ab.verdict([200, 201, 202, 203, 204], [100, 101, 102, 103, 104], higher_is_better=True)
    assert v["verdict"] == "better" and v["ratio"] == pytest.approx(202 / 102)
    v = ab.verdict([200, 201, 202, 203, 204], [100, 101, 102, 103, 104], higher_is_better=False)
    assert v["verdict"] == "worse"
    v = ab.verdict([200, 201, 202], [100, 101, 102], higher_is_better=True)
    assert v["verdict"] == "too few trials" and v["p"] is None


class FakeRunner:
    """'on' is twice as fast for batching; every other switch is the same on and off."""

    def __init__(self):
        self.calls = []

    def __call__(self, switch, arm, seconds, n):
        self.calls.append((switch, arm))
        k = len(self.calls)
        if switch == "allocator" and arm == "on":
            return {"error": "OptimizationUnavailableError: allocator is 'on' but unavailable"}
        fast = switch == "batching" and arm == "on"
        jitter = (k * 37) % 11
        return {"throughput_tps": (200_000 if fast else 100_000) + jitter * 100,
                "p99": (50_000 if fast else 100_000) + jitter * 100, "p50": 10_000 + jitter}


def test_run_alternates_arms_and_writes_every_trial(tmp_path):
    stat = tmp_path / "stat"
    stat.write_text("cpu  100 0 100 800 0 0 0 0 0 0\n")
    runner = FakeRunner()
    d = ab.run("batching", repeats=5, runner=runner, load=lambda: [0.1, 0.2, 0.3], stat_path=str(stat))
    # arms alternate and the order flips each repeat
    assert [a for _, a in runner.calls] == ["on", "off", "off", "on", "on", "off", "off", "on", "on", "off"]
    e = d["switches"]["batching"]
    assert len(e["trials"]["on"]) == len(e["trials"]["off"]) == 5
    assert e["verdicts"]["throughput_tps"]["verdict"] == "better"
    assert e["verdicts"]["p99"]["verdict"] == "better"
    m = d["meta"]
    assert d["kind"] == "ab" and m["machine"]["python"] and "commit" in m["machine"]
    assert m["loadavg_before"] == m["loadavg_after"] == [0.1, 0.2, 0.3]
    assert m["steal_fraction"] is None and not m["noisy"]  # /proc/stat did not move
    json.dumps(d)
    text = ab.format_ab(d)
    assert "batching" in text and "better" in text and "NOISY" not in text


def test_run_all_reports_arms_that_cannot_run():
    d = ab.run("all", repeats=5, runner=FakeRunner(), load=lambda: [0.1, 0.1, 0.1])
    assert list(d["switches"]) == list(OPTIMIZATIONS)  # every optimization; not monitoring
    assert d["switches"]["allocator"]["verdicts"] == {}
    assert "allocator is 'on'" in d["switches"]["allocator"]["errors"]["on"]
    verdicts = {s: e["verdicts"]["throughput_tps"]["verdict"] for s, e in d["switches"].items() if e["verdicts"]}
    assert verdicts["batching"] == "better"
    assert all(v == "within noise" for s, v in verdicts.items() if s != "batching")
    assert "could not run" in ab.format_ab(d)


def test_noise_is_recorded_and_require_quiet_refuses(tmp_path):
    busy = lambda: [3.5, 3.0, 2.0]  # noqa: E731
    with pytest.raises(RuntimeError, match="busy: 1-minute load average 3.50 > 1"):
        ab.run("batching", repeats=5, runner=FakeRunner(), load=busy, require_quiet=True)
    d = ab.run("batching", repeats=5, runner=FakeRunner(), load=busy)
    assert d["meta"]["noisy"] and "load average 3.50 before" in d["meta"]["noise"][0]
    assert "NOISY" in ab.format_ab(d)
    assert ab.check_quiet(4.0, busy) is None
    # steal time, from two /proc/stat samples
    before = ab.cpu_times(_stat(tmp_path, "cpu  100 0 100 800 0 0 0 0 0 0\n"))
    after = ab.cpu_times(_stat(tmp_path, "cpu  200 0 200 1500 0 0 0 100 0 0\n"))
    assert ab.steal_fraction(before, after) == pytest.approx(100 / 1000)
    assert ab.noise({"steal_fraction": 0.1}) == ["steal time 10.0% of CPU time (> 1%)"]
    assert ab.cpu_times(str(tmp_path / "missing")) is None


def _stat(tmp_path, text):
    p = tmp_path / "stat"
    p.write_text(text)
    return str(p)


def test_bad_arguments():
    with pytest.raises(ValueError, match="switch must be one of"):
        ab.run("warp_drive", runner=FakeRunner())
    with pytest.raises(ValueError, match="repeats must be"):
        ab.run("batching", repeats=0, runner=FakeRunner())


def test_docs_render_the_ab_table_between_its_markers(tmp_path):
    d = ab.run("batching", repeats=5, runner=FakeRunner(), load=lambda: [0.1, 0.1, 0.1])
    results = tmp_path / "ab.json"
    results.write_text(json.dumps(d))
    doc = tmp_path / "perf.md"
    doc.write_text("intro\n<!-- kpi:begin -->\nkpi stays\n<!-- kpi:end -->\n"
                   "<!-- ab:begin -->\nold\n<!-- ab:end -->\noutro\n")
    assert docs.main([str(results), str(doc)]) == 0
    text = doc.read_text()
    assert "kpi stays" in text and "old" not in text and text.endswith("<!-- ab:end -->\noutro\n")
    assert "| batching | saturation tx/s |" in text and "| better |" in text
    assert "Mann-Whitney" in text
    doc.write_text("no markers\n")
    assert docs.main([str(results), str(doc)]) == 1


def test_monitoring_is_an_ab_of_its_own_rendered_between_its_markers(tmp_path):
    runner = FakeRunner()
    d = ab.run("monitoring", repeats=5, runner=runner, load=lambda: [0.1, 0.1, 0.1])
    assert {s for s, _ in runner.calls} == {"monitoring"}
    assert ab.ARMS["monitoring"][0]["monitoring"]["enabled"] is True
    assert ab.ARMS["monitoring"][1]["monitoring"]["enabled"] is False
    results = tmp_path / "monitoring.json"
    results.write_text(json.dumps(d))
    doc = tmp_path / "perf.md"
    doc.write_text("<!-- ab:begin -->\nswitches stay\n<!-- ab:end -->\n"
                   "<!-- ab:monitoring:begin -->\nold\n<!-- ab:monitoring:end -->\n")
    assert docs.regenerate([str(results)], [str(doc)])
    text = doc.read_text()
    assert "switches stay" in text and "old" not in text
    assert "| monitoring | saturation tx/s |" in text and "within noise" in text


def test_bench_monitoring_on_the_command_line_is_the_ab(monkeypatch, capsys):
    from tallyio import cli
    seen, real_run = {}, ab.run

    def fake_run(switch, **kw):
        seen["switch"] = switch
        return real_run(switch, repeats=5, runner=FakeRunner(), load=lambda: [0.1, 0.1, 0.1])

    monkeypatch.setattr(ab, "run", fake_run)
    assert cli.main(["bench", "monitoring"]) == 0
    assert seen["switch"] == "monitoring" and "monitoring" in capsys.readouterr().out
    assert cli.main(["bench", "monitoring", "core"]) == 2


def test_an_arm_the_machine_cannot_set_up_is_that_arms_error(monkeypatch):
    """allocator "on" without jemalloc: the parent cannot even build the child's environment; the
    trial reports the reason instead of stopping the whole A/B."""
    from tallyio.errors import OptimizationUnavailableError

    def no_jemalloc(switch, arm):
        raise OptimizationUnavailableError("allocator", "jemalloc is not installed")

    monkeypatch.setattr(ab, "_child_env", no_jemalloc)
    r = ab.subprocess_trial("allocator", "on", 0.1, 10)
    assert "jemalloc is not installed" in r["error"]


def test_monitoring_trial_gives_every_ab_metric(monkeypatch):
    from tallyio.bench import kpi, monitoring
    monkeypatch.setattr(kpi, "saturation", lambda n, **kw: {"tallyio": {"throughput_tps": 1.0}})
    monkeypatch.setattr(kpi, "latency_under_load",
                        lambda lf, s, **kw: {"tallyio": {"p99": 2.0, "p50": 1.0}})
    r = monitoring.trial(ab.ARMS["monitoring"][1], 0.01, 10)
    assert set(ab.METRICS) <= set(r)


def test_noise_is_other_processes_cpu_not_the_benchmarks_own():
    """A benchmark loads the machine itself: what counts as noise is the busy time that was not
    its own (this process and its trials)."""
    import os
    tick = os.sysconf("SC_CLK_TCK")
    before = {"total": 10 * tick, "idle": 8 * tick, "steal": 0}
    after = {"total": 20 * tick, "idle": 12 * tick, "steal": 0}  # 6 s busy of 10 s of CPU time
    own = dict(cpu_times_before=before, cpu_times_after=after, own_cpu_s_before=1.0,
               own_cpu_s_after=7.0, loadavg_before=[0.2, 0.2, 0.2], loadavg_after=[1.9, 1, 1])
    assert ab.others_fraction(own) == pytest.approx(0.0)
    assert ab.noise(own) == []  # its own load average afterwards is not noise
    shared = dict(own, own_cpu_s_after=3.0)  # 4 s of the busy time was someone else's
    shared["others_fraction"] = ab.others_fraction(shared)
    assert shared["others_fraction"] == pytest.approx(0.4)
    assert ab.noise(shared) == ["other processes busy 40.0% of the CPUs' time (> 10%)"]
    assert ab.others_fraction({}) is None
