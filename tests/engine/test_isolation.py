"""Plugin code is untrusted: whatever a processor does or returns, the run finishes, every row is
accounted for and the report is complete. Each case is one probe that used to kill the engine
thread (and hang ``run()``) or break the report."""
import threading

import numpy as np
import pytest

from tallyio import Engine
from tallyio.feeds import IterableSource
from tallyio.opportunity import Opportunity

from engine_helpers import CountingProcessor, rows

FAST = {"batching": {"batch_size": 64, "max_age": 3600.0}}
N = 3_000


def chunks(n=N, size=500):
    return IterableSource([rows(min(size, n - i), i) for i in range(0, n, size)], chunk=size)


def _gen_raises(batch):
    yield Opportunity("bad", "x", 1, "0x" + "00" * 20)
    raise RuntimeError("generator failed half-way")


BEHAVIOURS = {
    "ndarray": lambda batch: np.arange(2),
    "int": lambda batch: 5,
    "string": lambda batch: "opportunity",
    "dict": lambda batch: {"profit": 1},
    "generator_raises": _gen_raises,
    "not_opportunities": lambda batch: [1, 2, 3],
    "system_exit": lambda batch: (_ for _ in ()).throw(SystemExit(3)),
    "generator_exit": lambda batch: (_ for _ in ()).throw(GeneratorExit()),
    "base_exception": lambda batch: (_ for _ in ()).throw(BaseException("odd")),
}


class Misbehaving:
    def __init__(self, how):
        self.fn = BEHAVIOURS[how]
        self.calls = 0

    def process(self, batch):
        self.calls += 1
        return self.fn(batch)


def _run_with(make_pm, how, **cfg):
    pm, rec = make_pm(counting=CountingProcessor,
                      bad=lambda: Misbehaving(how))
    config = dict(FAST, **cfg)
    done = {}
    t = threading.Thread(target=lambda: done.setdefault(
        "report", Engine(config, plugin_manager=pm).run(chunks())), daemon=True)
    t.start()
    t.join(120)  # a hang is the failure this file exists for: fail, do not wait for ever
    assert not t.is_alive(), f"run() hung with a processor that returns/raises {how}"
    return done["report"], rec


@pytest.mark.parametrize("how", sorted(BEHAVIOURS))
def test_misbehaving_processor_cannot_stop_the_engine(make_pm, how):
    report, rec = _run_with(make_pm, how, optimizations={"circuit_breaker": "off"})
    bad = report.processors["bad"]
    assert report.engine_error is None
    assert report.processed == report.ingested == N
    assert rec.instances["counting"].rows == N  # the other processor saw every row
    assert bad["errors"] == bad["batches"] == rec.instances["bad"].calls > 0
    assert bad["last_error"]
    # rows the bad processor did not decide are reported beside the latency, not in it
    assert report.decided == 0 and report.undecided == {"error:bad": N}
    assert report.latency_ns["count"] == 0
    # the other processor's findings still reach the report, and the report renders
    assert any(o.strategy == "counting" for o in report.opportunities)
    assert "error:bad" in report.format()
    assert '"undecided"' in report.to_json()


def test_misbehaving_processor_opens_its_breaker_and_is_counted(make_pm):
    report, _ = _run_with(make_pm, "system_exit",
                          breaker={"failure_threshold": 2, "timeout": 3600.0})
    bad = report.processors["bad"]
    assert bad["errors"] == 2 and bad["breaker_state"] == "open"
    assert bad["skipped_rows"] == N - 2 * 64
    assert report.processed == N
    assert sum(report.undecided.values()) == N


def test_generator_work_is_timed_inside_the_guard(make_pm):
    class SlowGenerator:
        def process(self, batch):
            import time
            time.sleep(0.002)
            yield from ()

    pm, _ = make_pm(slow=SlowGenerator)
    report = Engine(dict(FAST, optimizations={"circuit_breaker": "off"}),
                    plugin_manager=pm).run(chunks(640, 64))
    assert report.processors["slow"]["p50"] >= 2_000_000
    assert report.decided == 640


def test_keyboard_interrupt_in_a_plugin_stops_the_run_cleanly(make_pm):
    class Interrupting:
        def process(self, batch):
            raise KeyboardInterrupt

    pm, _ = make_pm(counting=CountingProcessor, stop=Interrupting)
    big = IterableSource([rows(500, i) for i in range(0, 2_000_000, 500)], chunk=500)
    cfg = dict(FAST, optimizations={"circuit_breaker": "off"}, source={"rate": 200_000.0})
    report = Engine(cfg, plugin_manager=pm).run(big)
    # stopped early, with everything accepted drained and accounted
    assert 0 < report.ingested < 2_000_000
    assert report.processed == report.ingested
    assert report.processors["stop"]["errors"] >= 1


def test_engine_thread_failure_returns_with_the_error_and_every_row_counted(make_pm, monkeypatch):
    import tallyio.engine as engine_mod

    real = engine_mod.record_since
    calls = {"n": 0}

    def broken(*args):
        calls["n"] += 1
        if calls["n"] == 5:
            raise MemoryError("simulated failure inside the engine")
        return real(*args)

    monkeypatch.setattr(engine_mod, "record_since", broken)
    pm, _ = make_pm()
    done = {}
    t = threading.Thread(target=lambda: done.setdefault("r", Engine(
        dict(FAST, optimizations={"circuit_breaker": "off"}), plugin_manager=pm).run(chunks(20_000))),
        daemon=True)
    t.start()
    t.join(120)
    assert not t.is_alive(), "run() hung after the engine thread died"
    report = done["r"]
    assert "simulated failure" in report.engine_error
    lost = report.undecided["engine_error"]
    assert lost > 0
    assert report.processed + lost == report.ingested
    assert "ENGINE ERROR" in report.format()


def test_opportunities_kept_in_memory_are_bounded(make_pm):
    pm, _ = make_pm()
    cfg = dict(FAST, engine={"keep_opportunities": 7}, optimizations={"circuit_breaker": "off"})
    report = Engine(cfg, plugin_manager=pm).run(chunks(20_000))
    assert len(report.opportunities) == 7
    assert report.opportunities_total == 20_000 // 100 + 1  # + the flushed one
    assert report.opportunities_by_kind == {"counting/test": 200, "counting/flushed": 1}
    # the latest are kept
    assert report.opportunities[-1].kind == "flushed"


def test_failing_sink_is_logged_once_per_error_type(make_pm, caplog):
    class BadSink:
        def emit(self, ops):
            raise OSError("disk full")

    import tallyio.engine as engine_mod

    pm, _ = make_pm()
    eng = Engine(dict(FAST, optimizations={"circuit_breaker": "off"}), plugin_manager=pm)
    eng.start(chunks(20_000))
    eng.sinks.append(("bad", BadSink()))
    with caplog.at_level("ERROR", logger=engine_mod.__name__):
        eng.wait(60)
        report = eng.stop()
    assert report.sink_errors >= 100
    assert sum("sink bad failed" in r.getMessage() for r in caplog.records) == 1
    assert eng.sink_errors_by[("bad", "OSError")] == report.sink_errors


def test_spsc_ring_refuses_push_with_a_clear_error(make_pm):
    from tallyio import TallyIOError
    pm, _ = make_pm()
    eng = Engine({"engine": {"ring_kind": "spsc"}}, plugin_manager=pm)
    eng.start(None)
    try:
        with pytest.raises(TallyIOError, match="ring_kind = 'mpmc'"):
            eng.push(rows(10))
    finally:
        eng.stop()


def test_gc_freeze_is_applied_during_the_run_and_undone_after(make_pm):
    import gc

    seen = []

    class Probe:
        def process(self, batch):
            seen.append(gc.get_freeze_count())

    for freeze in (True, False):
        seen.clear()
        pm, _ = make_pm(probe=Probe)
        Engine(dict(FAST, engine={"gc_freeze": freeze}), plugin_manager=pm).run(chunks(640, 64))
        assert seen and (min(seen) > 0 if freeze else max(seen) == 0)
        assert gc.get_freeze_count() == 0  # the process is left as it was
