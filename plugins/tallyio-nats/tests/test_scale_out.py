"""Sharded engines on a real nats-server: the gathered opportunities equal one engine's over the
whole bundled feed, after a SIGKILL, after a server restart; malformed messages are counted and
dead-lettered."""
from __future__ import annotations

import json
import signal
import subprocess
import time

import numpy as np
import pytest

from shards import TALLYIO, TIMEOUT, engine, finish
from tallyio.engine import Engine
from tallyio.errors import ConfigError
from tallyio_nats._loop import LoopThread, NatsError
from tallyio_nats.gather import gather
from tallyio_nats.publisher import Publisher
from tallyio_nats.source import NatsSource
from tallyio_nats.wire import DEAD_STREAM, DEAD_SUBJECT, TX_STREAM, encode, partition_of

SHARDS = ("0-1", "2-3", "4-5")  # three engines over six partitions


def _same(gathered: dict, reference: dict) -> None:
    assert gathered["complete"], gathered["missing_partitions"]
    assert gathered["conflicts"] == 0
    assert gathered["total"] == reference["total"]
    assert gathered["opportunities"] == reference["opportunities"]


def _wait_acked(url: str, procs, *engines, timeout: float = TIMEOUT) -> None:
    """Until, for each of ``engines`` (its partitions), the durable consumer of one of its
    partitions has acknowledged something: that engine is mid-run. (Another process's progress:
    read from the server, on a bound.) An engine process that exits first fails the test with
    its output."""
    lt = LoopThread(url)
    left = list(engines)
    try:
        deadline = time.monotonic() + timeout
        while left:
            for proc in procs:
                if proc.poll() is not None:
                    pytest.fail(f"engine exited ({proc.returncode}): {proc.stdout.read()[-3000:]}")
            for partitions in list(left):
                for p in partitions:
                    try:
                        info = lt.call(lt.js.consumer_info(TX_STREAM, f"tallyio-p{p}"))
                    except Exception:
                        continue
                    if info.ack_floor.stream_seq > 0:
                        left.remove(partitions)
                        break
            assert time.monotonic() < deadline, f"partitions {left}: nothing acked"
            time.sleep(0.05)
    finally:
        lt.stop()


def _publish_halves(url, rows, metadata, between):
    """Publish the first half of the feed, call ``between()``, publish the rest and the end."""
    with Publisher(url, 6, metadata=metadata) as pub:
        half = len(rows) // 2
        pub.publish(rows[:half])
        pub.wait()
        between()
        pub.publish(rows[half:])
        pub.end()


def test_three_engines_over_six_partitions(nats_server, reference, tmp_path):
    url = nats_server.url
    out = subprocess.run([TALLYIO, "publish", "--to", url, "--partitions", "6"],
                         capture_output=True, text=True, timeout=TIMEOUT)
    assert out.returncode == 0, out.stderr
    assert "published 30,000 rows" in out.stdout
    finish([engine(url, s) for s in SHARDS])
    path = tmp_path / "gathered.json"
    out = subprocess.run([TALLYIO, "gather", "--from", url, "--json", str(path),
                          "--timeout", str(TIMEOUT)], capture_output=True, text=True,
                         timeout=TIMEOUT + 30)
    assert out.returncode == 0, out.stdout + out.stderr
    gathered = json.loads(path.read_text())
    _same(gathered, reference)
    assert gathered["duplicates"] == 0
    assert sorted(s["shard"] for s in gathered["shards"]) == list(SHARDS)
    assert sum(s["rows"] for s in gathered["shards"]) == 30_000


def test_sigkill_one_engine_mid_run(nats_server, feed_rows, reference):
    url = nats_server.url
    rows, metadata = feed_rows
    victim = 0  # shard 0-1: the most rows of the three
    procs = []

    def kill():
        _wait_acked(url, procs, (0, 1))
        procs[victim].send_signal(signal.SIGKILL)
        procs[victim].wait(timeout=TIMEOUT)
        assert procs[victim].returncode == -signal.SIGKILL
        # its replacement, same partitions: same durable consumers, replayed from the start
        procs[victim] = engine(url, SHARDS[victim])

    with Publisher(url, 6, metadata=metadata) as pub:
        procs.extend(engine(url, s) for s in SHARDS)
        half = len(rows) // 2
        pub.publish(rows[:half])
        pub.wait()
        kill()
        pub.publish(rows[half:])
        pub.end()
    finish(procs)
    _same(gather(url, timeout=TIMEOUT), reference)


def test_server_restart_mid_run(nats_server, feed_rows, reference):
    """The server crashes (SIGKILL) and restarts while every engine is mid-run and while the
    publisher has messages in flight (batches of 64 rows: many messages): what was lost is sent
    again, in partition order, and the result is unchanged."""
    url = nats_server.url
    rows, metadata = feed_rows
    third = len(rows) // 3
    with Publisher(url, 6, metadata=metadata, batch=64) as pub:
        procs = [engine(url, s) for s in SHARDS]
        pub.publish(rows[:third])
        pub.wait()
        _wait_acked(url, procs, (0, 1), (2, 3), (4, 5))  # every engine mid-run
        pub.publish(rows[third:2 * third])  # not waited for: in flight
        nats_server.restart(kill=True)  # a crash; file storage: streams and consumers come back
        pub.publish(rows[2 * third:])
        pub.end()
    finish(procs)
    gathered = gather(url, timeout=TIMEOUT)
    _same(gathered, reference)
    assert all(s["stats"]["disconnects"] >= 1 for s in gathered["shards"])  # each saw it go


def test_malformed_messages_dead_lettered(nats_server, feed_rows, reference):
    url = nats_server.url
    rows, metadata = feed_rows
    good = encode(rows[partition_of(rows, 6) == 0][:3], 0, 10_000)
    bad = [good[:-7],                                        # wrong size
           good[:4] + (99).to_bytes(2, "little") + good[6:],  # wrong record version
           b"not a batch"]
    lt = LoopThread(url)
    try:
        with Publisher(url, 6, metadata=metadata) as pub:
            pub.publish(rows[:10_000])
            pub.wait()
            for payload in bad:
                lt.call(lt.js.publish("tallyio.tx.0", payload))
            pub.publish(rows[10_000:])
            pub.end()
        source = NatsSource(url)
        report = Engine().run(source)
        assert source.errors == {"bad_size": 2, "bad_version": 1}
        assert report.rejected["bad_size"] == 2 and report.rejected["bad_version"] == 1
        assert report.processed == report.ingested == 30_000 and report.source_error is None
        _same(gather(url, timeout=TIMEOUT), reference)
        sub = lt.call(lt.js.pull_subscribe(f"{DEAD_SUBJECT}.>", stream=DEAD_STREAM))
        dead = lt.call(sub.fetch(10, timeout=10))
        assert sorted(m.headers["Tallyio-Reason"] for m in dead) == \
            ["bad_size", "bad_size", "bad_version"]
        assert sorted(m.data for m in dead) == sorted(bad)
    finally:
        lt.stop()


def test_bad_options_fail_clearly(nats_server):
    with pytest.raises(ConfigError, match="partitions 'x'"):
        NatsSource(nats_server.url, partitions="x")
    with pytest.raises(ConfigError, match="batch must be a positive integer, got 0"):
        NatsSource(nats_server.url, batch=0)
    with pytest.raises(NatsError, match="no tallyio.meta message"):
        NatsSource(nats_server.url, meta_wait=0.5)
    with Publisher(nats_server.url, 2) as pub:
        pub.end()
    with pytest.raises(ConfigError, match=r"partition 2 is not in \[0, 2\)"):
        NatsSource(nats_server.url, partitions="1-2")
    with pytest.raises(ConfigError, match="partitions must be an integer"):
        Publisher(nats_server.url, 0)
    closed = nats_server.url.rsplit(":", 1)[0] + ":1"
    with pytest.raises(NatsError, match="cannot connect to nats://127.0.0.1:1"):
        NatsSource(closed)
    out = subprocess.run([TALLYIO, "run", "--source", closed], capture_output=True, text=True,
                         timeout=TIMEOUT)
    assert out.returncode == 2 and "cannot connect" in out.stderr


def test_gather_reports_missing_partitions(nats_server, feed_rows):
    rows, metadata = feed_rows
    with Publisher(nats_server.url, 6, metadata=metadata) as pub:
        pub.publish(rows[:1000])
        pub.end()
    finish([engine(nats_server.url, "0-2")])
    out = subprocess.run([TALLYIO, "gather", "--from", nats_server.url, "--timeout", "3"],
                         capture_output=True, text=True, timeout=TIMEOUT)
    assert out.returncode == 1
    assert "partitions with no done marker: [3, 4, 5]" in out.stdout
    assert np.all(partition_of(rows[:1000], 6) < 6)


def test_configured_sink(nats_server, feed_rows, reference, tmp_path):
    """A ``nats`` sink named in the config: the nats source gives it its row keys (no second
    sink is added); fed by a file, it publishes engine-local ids, which gather never merges
    across shards."""
    from tallyio.config import load_config
    from tallyio_nats.sink import NatsSink
    rows, metadata = feed_rows
    with Publisher(nats_server.url, 2, metadata=metadata) as pub:
        pub.publish(rows)
        pub.end()
    conf = tmp_path / "tallyio.toml"
    conf.write_text(f'[sinks]\nnames = ["nats"]\noptions.nats = {{ url = "{nats_server.url}" }}\n')
    eng = Engine(load_config(str(conf)))
    eng.run(nats_server.url)
    assert [type(s) for _, s in eng.sinks] == [NatsSink]
    _same(gather(nats_server.url, timeout=TIMEOUT), reference)

    sink = NatsSink(nats_server.url, shard="file")
    report = Engine().run()
    sink.emit(report.opportunities[:3])
    sink.close()
    assert sink.published == 3 and not sink.errors
    with pytest.raises(ConfigError, match="url"):
        NatsSink()


def test_unreadable_partition_ends_the_run(nats_server, feed_rows):
    """The server answers but the stream is gone: the source gives up after ``reconnect``
    seconds with the reason, and the run ends with it (no hang)."""
    rows, metadata = feed_rows
    lt = LoopThread(nats_server.url)
    try:
        with Publisher(nats_server.url, 2, metadata=metadata) as pub:
            pub.publish(rows[:1000])
            pub.wait()  # no end marker: the run would wait for more
        source = NatsSource(nats_server.url, reconnect=2.0)
        eng = Engine()
        eng.start(source)
        lt.call(lt.js.delete_stream(TX_STREAM))
        assert eng.wait(TIMEOUT)
        report = eng.stop()
        assert "nothing taken for 2 s" in report.source_error
        assert report.processed == report.ingested <= 1000
    finally:
        lt.stop()


def test_partition_order_restored(nats_server, feed_rows):
    """Messages stored out of order or twice (a publisher re-sending after a restart) reach the
    engine once each, in partition order: the result equals one engine over the rows."""
    from tallyio_nats.gather import single_engine
    rows, metadata = feed_rows
    rows = rows[:6000]
    with Publisher(nats_server.url, 1, metadata=metadata):
        pass  # the streams and tallyio.meta (one partition)
    msgs = [encode(rows[i * 1500:(i + 1) * 1500], 0, i + 1) for i in range(4)]
    msgs.append(encode(rows[:0], 0, 5, end=True))
    lt = LoopThread(nats_server.url)
    try:
        for k in (1, 0, 0, 3, 2, 1, 4):  # 2 before 1, 1 twice, 4 before 3, 2 again
            lt.call(lt.js.publish("tallyio.tx.0", msgs[k]))
    finally:
        lt.stop()
    source = NatsSource(nats_server.url)
    report = Engine().run(source)
    assert report.processed == 6000 and not source.errors
    assert source.stats["out_of_order"] == 2 and source.stats["redelivered"] == 2
    expected = single_engine(Engine().run(_Rows(rows, metadata)).opportunities, rows)
    assert expected["total"] == 10
    assert gather(nats_server.url, timeout=TIMEOUT)["opportunities"] == expected["opportunities"]


class _Rows:
    replay = True

    def __init__(self, rows, metadata):
        self.rows, self.metadata = rows, metadata

    def __iter__(self):
        yield self.rows.copy()


def test_published_again_mid_run_stops_the_source(nats_server, feed_rows):
    """A second ``tallyio publish`` replaces the stream under a running engine: its source stops
    with the reason instead of mixing two feeds."""
    rows, metadata = feed_rows
    with Publisher(nats_server.url, 2, metadata=metadata) as pub:
        pub.publish(rows[:1000])
        pub.wait()  # no end marker: the run would wait for more
    source = NatsSource(nats_server.url)
    eng = Engine()
    eng.start(source)
    with Publisher(nats_server.url, 2, metadata=metadata) as pub:
        pub.publish(rows[:1000])
        pub.end()
    assert eng.wait(TIMEOUT)
    report = eng.stop()
    assert "the feed was published again during the run" in report.source_error


def test_partitioning_by_pool_would_be_wrong(nats_server, reference, monkeypatch):
    """Why the key is the token pair: split by pool, an engine's arbitrage screen compares a
    pool with pools of its pair whose swaps another engine applies, and finds other arbitrages
    than the single engine."""
    import hashlib

    import tallyio_nats.publisher

    def by_pool(rows, n):
        return np.array([int.from_bytes(hashlib.blake2b(a.tobytes(), digest_size=8).digest(),
                                        "little") % n for a in rows["pool"]], dtype=np.uint32)
    monkeypatch.setattr(tallyio_nats.publisher, "partition_of", by_pool)
    tallyio_nats.publisher.publish_feed(nats_server.url, partitions=6)
    for shard in SHARDS:
        Engine().run(NatsSource(nats_server.url, partitions=shard))
    gathered = gather(nats_server.url, timeout=TIMEOUT)
    assert gathered["complete"]
    assert gathered["by_kind"]["arbitrage/arbitrage"] != reference["by_kind"]["arbitrage/arbitrage"]
    assert gathered["by_kind"]["sandwich/sandwich_opportunity"] == \
        reference["by_kind"]["sandwich/sandwich_opportunity"]  # one pool at a time: unaffected
