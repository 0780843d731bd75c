"""The engine: every row accounted for, failures contained, hooks called, drained shutdown."""
import json
import threading

import numpy as np
import pytest

from tallyio import Engine, TallyIOError
from tallyio.feeds import IterableSource

from engine_helpers import CountingProcessor, FailingProcessor, rows

FAST = {"batching": {"batch_size": 64, "max_age": 3600.0}, "optimizations": {"circuit_breaker": "off"}}


def chunks(n, size=500):
    return IterableSource([rows(min(size, n - i), i) for i in range(0, n, size)], chunk=size)


def test_every_row_is_processed_once(make_pm):
    pm, rec = make_pm()
    report = Engine(FAST, plugin_manager=pm).run(chunks(20_000))
    proc = rec.instances["counting"]
    assert report.processed == report.ingested == proc.rows == 20_000
    # ids are assigned at ingest: 0..n-1, each seen exactly once
    assert proc.id_sum == 20_000 * 19_999 // 2
    assert not proc.writeable_seen, "processors must get a read-only view"
    assert report.rejected == {}
    assert report.latency_ns["count"] == 20_000
    found = [o for o in report.opportunities if o.kind == "test"]
    assert sorted(o.profit for o in found) == list(range(0, 20_000, 100))
    assert [o.kind for o in report.opportunities].count("flushed") == 1


def test_hooks_called_in_order(make_pm):
    pm, rec = make_pm()
    cfg = dict(FAST, engine={"observer_sample_every": 10})
    report = Engine(cfg, plugin_manager=pm).run(chunks(5_000))
    kinds = [e[0] for e in rec.events]
    assert kinds[0] == "started" and kinds[-1] == "stopped"
    assert rec.events[-1][1] is report
    batches = [e[1] for e in rec.events if e[0] == "batch"]
    assert len(batches) == report.batches // 10
    assert all(set(b) == {"size", "expired", "drain_ns", "process_ns", "opportunities"} for b in batches)


def test_failing_processor_is_contained(make_pm):
    pm, rec = make_pm(counting=CountingProcessor, failing=FailingProcessor)
    report = Engine(FAST, plugin_manager=pm).run(chunks(3_000))
    assert rec.instances["counting"].rows == 3_000
    f = report.processors["failing"]
    assert f["errors"] == rec.instances["failing"].calls == report.batches
    assert "strategy bug" in f["last_error"]
    assert report.processed == 3_000


def test_push_mode_and_drained_stop(make_pm):
    pm, rec = make_pm()
    eng = Engine(FAST, plugin_manager=pm).start()
    pushed = 0
    for i in range(0, 10_000, 1_000):
        pushed += eng.push(rows(1_000, i))
    report = eng.stop()  # stop() drains everything accepted
    assert report.processed == pushed == rec.instances["counting"].rows == 10_000
    with pytest.raises(TallyIOError, match="stopped"):
        eng.push(rows(1))
    with pytest.raises(TallyIOError, match="create a new Engine"):
        eng.start()


def test_concurrent_pushers(make_pm):
    pm, rec = make_pm()
    eng = Engine(FAST, plugin_manager=pm).start()
    taken = [0] * 4

    def pusher(k):
        for i in range(50):
            r = rows(200)
            while len(r):
                got = eng.push(r)
                taken[k] += got
                r = r[got:]

    ts = [threading.Thread(target=pusher, args=(k,)) for k in range(4)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    report = eng.stop()
    assert sum(taken) == 40_000 == report.processed == rec.instances["counting"].rows


def test_full_ring_drop_policy_counts(make_pm):
    pm, rec = make_pm()
    cfg = {"engine": {"ring_capacity": 64}, "batching": {"batch_size": 64, "max_age": 3600.0},
           "optimizations": {"circuit_breaker": "off"}}
    eng = Engine(cfg, plugin_manager=pm).start()
    offered = 0
    taken = 0
    for _ in range(20):
        offered += 1_000
        taken += eng.push(rows(1_000))
    report = eng.stop()
    assert report.processed == taken
    assert report.rejected["ring_full_push"] == offered - taken


def test_expired_rows_are_counted_not_processed(make_pm):
    pm, rec = make_pm()
    cfg = {"batching": {"batch_size": 64, "max_age": 1e-9}, "optimizations": {"circuit_breaker": "off"}}
    report = Engine(cfg, plugin_manager=pm).run(chunks(2_000))
    assert report.processed + report.rejected.get("expired", 0) == 2_000
    assert report.rejected.get("expired", 0) > 0


def test_source_error_is_counted_and_accepted_rows_drained(make_pm):
    pm, rec = make_pm()

    def broken():
        yield rows(1_000)
        raise OSError("feed went away")

    report = Engine(FAST, plugin_manager=pm).run(broken())
    assert report.processed == 1_000
    assert report.rejected["source_error"] == 1


def test_on_feed_gets_source_metadata(make_pm):
    pm, rec = make_pm()
    src = IterableSource([rows(10)], metadata={"pools": np.arange(3)})
    Engine(FAST, plugin_manager=pm).run(src)
    np.testing.assert_array_equal(rec.instances["counting"].meta["pools"], np.arange(3))


def test_processor_selection_and_options(make_pm):
    pm, rec = make_pm(counting=CountingProcessor, failing=FailingProcessor)
    cfg = dict(FAST, plugins={"processors": ["counting"]}, processors={"counting": {"every": 7}})
    report = Engine(cfg, plugin_manager=pm).run(chunks(700))
    assert set(report.processors) == {"counting"}
    assert rec.instances["counting"].every == 7
    with pytest.raises(TallyIOError, match="'nope', which no plugin registers"):
        Engine(dict(FAST, plugins={"processors": ["nope"]}), plugin_manager=pm).start()
    with pytest.raises(TallyIOError, match=r"\[processors.ghost\] configures a processor"):
        Engine(dict(FAST, processors={"ghost": {}}), plugin_manager=pm).start()
    with pytest.raises(TallyIOError, match=r"\[processors.counting\]: bad options"):
        Engine(dict(FAST, processors={"counting": {"bogus": 1}}), plugin_manager=pm).start()


def test_sinks(make_pm, tmp_path):
    pm, rec = make_pm()
    out = tmp_path / "ops.jsonl"
    cfg = dict(FAST, sinks={"names": ["memory", "jsonl"], "options": {"jsonl": {"path": str(out)}}})
    report = Engine(cfg, plugin_manager=pm).run(chunks(1_000))
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert len(lines) == len(report.opportunities) == 11
    assert {l["strategy"] for l in lines} == {"counting"}
    with pytest.raises(TallyIOError, match="'nosuch', which no plugin registers"):
        Engine(dict(FAST, sinks={"names": ["nosuch"]}), plugin_manager=pm).start()


def test_report_json_has_the_documented_keys(make_pm, tmp_path):
    pm, rec = make_pm()
    report = Engine(FAST, plugin_manager=pm).run(chunks(1_000))
    path = tmp_path / "r.json"
    report.to_json(path)
    d = json.loads(path.read_text())
    for key in ("latency_ns", "stages", "processors", "throughput_tps", "processed", "rejected",
                "peak_rss_bytes", "opportunities"):
        assert key in d
    for pct in ("p50", "p95", "p99", "p999", "max"):
        assert pct in d["latency_ns"]
        assert pct in d["stages"]["ingest_to_drained"] and pct in d["stages"]["drained_to_decided"]
        assert pct in d["processors"]["counting"]
    assert d["processors"]["counting"]["errors"] == 0
    assert {"strategy", "tx_ids", "pools", "profit"} <= set(d["opportunities"][0])
    assert d["peak_rss_bytes"] > 0 and d["throughput_tps"] > 0
    assert "end to end" in report.format()


def test_lifecycle_errors(make_pm):
    pm, _ = make_pm()
    eng = Engine(FAST, plugin_manager=pm)
    with pytest.raises(TallyIOError, match="stop\\(\\) on an engine that is new"):
        eng.stop()
    with eng:
        eng.push(rows(5))
    assert eng.report().processed == 5


@pytest.mark.parametrize("switches", [
    {"memory_pool": "off"}, {"memory_pool": "on"}, {"batching": "off"},
    {"cpu_affinity": "off", "numa": "off", "prefetch": "off"},
])
def test_every_switch_setting_processes_every_row(make_pm, switches):
    pm, rec = make_pm()
    cfg = dict(FAST, optimizations=dict(FAST["optimizations"], **switches))
    eng = Engine(cfg, plugin_manager=pm)
    report = eng.run(chunks(3_000))
    assert report.processed == rec.instances["counting"].rows == 3_000
    assert rec.instances["counting"].id_sum == 3_000 * 2_999 // 2
    for name, mode in switches.items():
        assert eng.switches[name]["mode"] == mode
        if mode == "off":
            assert not eng.switches[name]["active"]
    if switches.get("memory_pool") == "on":
        assert eng.switches["memory_pool"]["active"]
        assert eng.pool.stats()["classes"]["huge"]["high_water"] == 2
        assert eng.pool.stats()["in_use"] == 0  # released at stop
    if switches.get("batching") == "off":
        assert report.mean_batch == 1.0


def test_on_switch_the_machine_cannot_honour_fails_start(make_pm, monkeypatch):
    from tallyio import OptimizationUnavailableError, system
    monkeypatch.setattr(system, "read_topology", lambda: system.synthetic_topology(nodes=1, cpus=2))
    pm, _ = make_pm()
    eng = Engine(dict(FAST, optimizations={"numa": "on"}), plugin_manager=pm)
    with pytest.raises(OptimizationUnavailableError, match="numa is 'on' but unavailable: one NUMA node"):
        eng.start()


def test_duplicate_transactions_are_processed_once(make_pm):
    pm, rec = make_pm()
    r = rows(1_000)
    hashes = np.random.default_rng(3).integers(0, 256, (600, 32), dtype=np.uint8)
    r["tx_hash"][:600] = hashes          # 600 hashed rows, 400 without a hash (never duplicates)
    again = r[:300].copy()               # the first 300 hashed rows arrive a second time...
    again["swap_index"][:100] = 1        # ...except 100 that are another swap of the same tx
    report = Engine(FAST, plugin_manager=pm).run(
        IterableSource([r, again, again[:50]], chunk=500))
    assert report.rejected["duplicate"] == 200 + 50
    assert report.processed == rec.instances["counting"].rows == 1_000 + 100


def test_dedup_can_be_turned_off(make_pm):
    pm, rec = make_pm()
    r = rows(100)
    r["tx_hash"][:, 0] = 7
    cfg = dict(FAST, engine={"dedup": False})
    report = Engine(cfg, plugin_manager=pm).run(IterableSource([r, r]))
    assert report.processed == 200 and "duplicate" not in report.rejected


def test_simd_switch_sets_the_kernel_level(make_pm):
    from tallyio import simd
    pm, _ = make_pm()
    before = simd.level()
    try:
        eng = Engine(dict(FAST, optimizations=dict(FAST["optimizations"], simd="off")), plugin_manager=pm)
        eng.run(chunks(100))
        assert simd.level() == "scalar" and eng.switches["simd"]["reason"] == "level scalar"
    finally:
        simd.set_level(before)


def test_reserve_updates_of_a_live_source_reach_the_pool_book(make_pm):
    """A source's ``reserve_updates`` (the chain's reserves at a new head) are applied to the
    engine's pool book on the engine thread; unknown pools and bad values are counted."""
    from collections import deque

    from tallyio import synthetic
    from tallyio.record import address_hex
    market = synthetic.Market(0)
    table = market.to_arrays()
    a, b = (address_hex(market.pools[k].address) for k in (0, 1))

    class HeadSource(IterableSource):
        def __init__(self):
            super().__init__([], metadata=table)
            self.reserve_updates = deque([(a, 10**21, 2 * 10**21, 1), (b, 0, 5, 1),
                                          ("0x" + "ee" * 20, 1, 1, 1)])

        def __iter__(self):
            yield rows(10)  # the updates are applied while this is drained

    pm, _ = make_pm()
    eng = Engine(FAST, plugin_manager=pm)
    report = eng.run(HeadSource())
    assert report.reserve_updates == {"applied": 1, "bad_reserves": 1, "unknown_pool": 1}
    assert eng.book.reserves(eng.book.index(a)) == (10**21, 2 * 10**21)
    assert eng.book.reserves(eng.book.index(b)) == (market.pools[1].reserve0,
                                                     market.pools[1].reserve1)


def test_peak_rss_is_this_process_own_not_its_parents():
    """A command started by a big process reports its own peak (VmHWM), not the parent's that
    getrusage's ru_maxrss carries over fork and exec."""
    import subprocess
    import sys
    big = bytearray(300 * 2**20)
    big[::4096] = b"\x01" * len(big[::4096])  # touch every page: resident
    code = "from tallyio.report import peak_rss_bytes; print(peak_rss_bytes())"
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert 0 < int(p.stdout) < 200 * 2**20, p.stdout
    del big
