"""A replay is a backtest: the same input gives the same output, however slow the machine or a
strategy is. Latency rules (the breaker's slow-call rule, ``max_age``) apply to live sources only;
in a replay they are counted, never acted on."""
import os
import time
from pathlib import Path

import pytest

from tallyio import Engine
from tallyio.engine import DEFAULT_FEED

REPO = Path(__file__).resolve().parents[2]
FULL = Path(os.environ.get("TALLYIO_MAINNET_BLOCKS", REPO.parent / "shared" / "data" / "mainnet-blocks"))
SAMPLE = REPO / "plugins" / "tallyio-mainnet" / "tallyio_mainnet" / "data"
BLOCKS = FULL if FULL.is_dir() else SAMPLE


class SlowStrategy:
    """Takes longer per batch than the breaker's latency threshold (5 ms by default), waiting (as
    on I/O): slow by the wall clock only."""

    def process(self, batch):
        time.sleep(0.006)


class BusyStrategy:
    """Burns 6 ms of its own CPU time per batch: slow by either clock."""

    def process(self, batch):
        end = time.thread_time_ns() + 6_000_000
        while time.thread_time_ns() < end:
            pass


def _key(o):
    return (o.strategy, o.kind, o.block, o.pools, o.profit, o.profit_token,
            o.details.get("tx_hash"))


def _run(feed, pm_factory, **cfg):
    pm, _ = pm_factory()
    report = Engine(cfg or None, plugin_manager=pm).run(str(feed))
    return report


@pytest.fixture
def strategies_and_slow():
    """Plugin managers with the installed plugins (example strategies, mainnet source) plus a
    deliberately slow strategy."""
    import types

    from tallyio.hookspecs import hookimpl
    from tallyio.plugins import get_plugin_manager

    def make(strategy=SlowStrategy):
        pm = get_plugin_manager()
        plugin = types.SimpleNamespace(register_processors=hookimpl(
            lambda register: register("slow", strategy)))
        pm.register(plugin, "slow-strategy")
        return pm, None
    return make


def test_mainnet_replay_is_the_union_of_single_blocks_three_times(strategies_and_slow, tmp_path):
    files = sorted(p for p in BLOCKS.glob("*.json") if p.stem.isdigit())
    assert len(files) >= 4
    singles = set()
    for f in files:
        singles |= {_key(o) for o in _run(f, strategies_and_slow).opportunities}
    assert singles, "the blocks hold known sandwiches and arbitrages"
    for attempt in range(3):
        report = _run(BLOCKS, strategies_and_slow, breaker={"latency_clock": "wall"})
        assert report.mode == "replay"
        assert report.undecided == {}, report.undecided
        assert report.processors["slow"]["slow_batches"] > 0  # counted, not acted on
        assert report.processors["slow"]["skipped_rows"] == 0
        assert {_key(o) for o in report.opportunities} == singles, f"run {attempt}"


@pytest.mark.parametrize("strategy,clock", [(SlowStrategy, "wall"), (BusyStrategy, "cpu"),
                                            (BusyStrategy, "wall")])
def test_live_mode_applies_the_latency_rule(strategies_and_slow, strategy, clock):
    # rows do not age out here (max_age an hour), so only the slow-call rule can skip them
    report = _run(BLOCKS, lambda: strategies_and_slow(strategy), engine={"mode": "live"},
                  breaker={"latency_violation_threshold": 1, "timeout": 3600.0,
                           "latency_clock": clock},
                  batching={"max_age": 3600.0})
    assert report.mode == "live"
    slow = report.processors["slow"]
    assert slow["breaker_state"] == "open" and slow["skipped_rows"] > 0
    # the rows it skipped are reported beside the latency, each batch under the first processor
    # that did not decide it (on a loaded machine a real strategy's breaker may trip first)
    skipped = sum(v for k, v in report.undecided.items() if k.startswith("breaker_open:"))
    assert skipped >= slow["skipped_rows"]
    # every row accounted for (the fixture set holds one block twice: those rows are duplicates)
    assert (report.decided + sum(report.undecided.values())
            + report.rejected.get("duplicate", 0)) == report.ingested


def test_cpu_clock_does_not_count_waiting_as_slow(strategies_and_slow):
    """The default clock judges a processor by its own CPU time: one that waits 6 ms per batch
    (descheduled, blocked on the GIL or on I/O) is slow by the wall clock, never by the CPU one."""
    report = _run(BLOCKS, strategies_and_slow, engine={"mode": "live"},
                  breaker={"latency_violation_threshold": 1, "timeout": 3600.0},
                  batching={"max_age": 3600.0})
    slow = report.processors["slow"]
    assert slow["batches"] > 0
    assert slow["slow_batches"] == 0 and slow["skipped_rows"] == 0
    assert slow["breaker_state"] == "closed"
    assert slow["p50"] >= 6_000_000  # it did wait: the wall-clock latency shows it


def test_bundled_feed_paced_at_recorded_speed_finds_exactly_the_planted():
    from tallyio.plugins import get_plugin_manager
    for _ in range(2):
        report = Engine({"source": {"speed": 1.0}},
                        plugin_manager=get_plugin_manager()).run(DEFAULT_FEED)
        assert report.mode == "replay"
        assert report.undecided == {}
        assert report.opportunities_by_kind == {"arbitrage/arbitrage": 20,
                                                "sandwich/sandwich_opportunity": 10}
        # and they are the feed's planted ones (its truth_* arrays), each with its profit
        assert report.planted["found"] == report.planted["planted"] == 30, report.planted
        assert report.planted["missed"] == [] and report.planted["short_of_reference"] == 0
