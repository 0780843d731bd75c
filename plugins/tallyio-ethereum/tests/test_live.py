"""The live source against a JSON-RPC WebSocket server started here (``rpc_server``), serving the
recorded mainnet transactions as a node's pending stream (fixtures ``chain``, ``reference``: the
conftest)."""
from __future__ import annotations

import json

import numpy as np
import pytest

from ethereum_data import FULL
from rpc_server import TIMEOUT, Chain, Server, pool_file

from tallyio import Engine
from tallyio._core.book import PoolBook
from tallyio.errors import ConfigError, TallyIOError
from tallyio_ethereum.calldata import decode_transactions
from tallyio_ethereum.live import EthereumSource

COMPARED = [f for f in decode_transactions([]).rows.dtype.names if f not in ("id", "arrival_ns")]


def _drain(src):
    """Every row the source yields, to its end (empty chunks are its idle heartbeat)."""
    chunks = [c for c in src if len(c)]
    return np.concatenate(chunks) if chunks else decode_transactions([]).rows


def _assert_same_rows(got, want):
    assert len(got) == len(want)
    for f in COMPARED:
        assert np.array_equal(got[f], want[f]), f


@pytest.mark.parametrize("full", [True, False], ids=["full_objects", "hashes"])
def test_rows_equal_the_decoders_rows(chain, reference, full):
    with Server(chain, full=full, heads=False) as server:
        src = EthereumSource(server.url, max_reconnects=0, heads=False, timeout_s=TIMEOUT)
        got = _drain(src)
    _assert_same_rows(got, reference.rows)
    if FULL:  # the figures in docs/mainnet_replay.md ("from a live node")
        assert (len(chain.stream), reference.stats["decoded"], len(got)) == (5111, 340, 394)
    assert src.stats["transactions"] == len(chain.stream)
    assert src.stats["decoded"] == reference.stats["decoded"]
    assert set(src.errors) <= {f"undecodable_{r}" for r in reference.stats["skipped"]}
    for reason, n in reference.stats["skipped"].items():
        assert n == (src.stats[reason] or src.errors[f"undecodable_{reason}"])
    assert np.all(np.diff(got["arrival_ns"].astype(np.int64)) >= 0)
    if not full:
        assert src.stats["full_transactions_refused"] == 1
        assert "eth_getTransactionByHash" in server.requests


@pytest.mark.parametrize("full", [True, False], ids=["full_objects", "hashes"])
def test_a_dropped_connection_resumes_with_nothing_lost_or_duplicated(chain, reference, full):
    k = len(chain.stream) // 2
    with Server(chain, full=full, heads=False, drop_after=k, overlap=25) as server:
        src = EthereumSource(server.url, max_reconnects=1, heads=False, backoff_s=0.01,
                             timeout_s=TIMEOUT)
        got = _drain(src)
        assert server.connections == 2
    _assert_same_rows(got, reference.rows)
    assert src.reconnects == 1 and src.stats["disconnects"] == 2
    assert src.errors["duplicate"] == 25  # the server's overlap, dropped by hash
    assert src.stats["transactions"] == len(chain.stream)
    assert "unfetched" not in src.errors


def test_heads_drop_late_rows_and_refresh_touched_reserves(chain, reference):
    with Server(chain, heads=True, wait_for=("pending", "heads")) as server:
        src = EthereumSource(server.url, max_reconnects=0, timeout_s=TIMEOUT)
        got = _drain(src)
    assert src.stats["heads"] == len(chain.blocks) + 1  # and the server's last, empty one
    # every decoded transaction was mined by a later head: handed over first, or dropped late
    assert src.stats["decoded"] == reference.stats["decoded"]
    assert src.stats["mined"] + src.errors["late"] == reference.stats["decoded"]
    handed = {bytes(h) for h in got["tx_hash"]}
    assert len(handed) == src.stats["mined"]
    keep = np.array([bytes(h) in handed for h in reference.rows["tx_hash"]], bool)
    _assert_same_rows(got, reference.rows[keep])
    # the pools of the mined transactions, re-read at their block
    for pool, (r0, r1, number) in src.reserves.items():
        assert (r0, r1) == chain.reserves[pool]
        assert number in {n for n, _, _ in chain.blocks}
    assert src.stats["reserves_refreshed"] >= len(src.reserves) > 0  # a pool per block it is in
    if FULL:
        assert src.stats["reserves_failed"] > 0  # pools the traces never revealed: "0x"


def test_pool_table_from_a_file_and_from_get_pair(chain, reference, tmp_path):
    path, pools = pool_file(tmp_path, chain, reference, limit=10)
    extra = pool_file(tmp_path, chain, reference, name="all.json")[1]
    pairs = [list(tokens) for pool, tokens in extra.items() if pool not in pools][:5]
    pairs.append(["0x" + "11" * 20, "0x" + "22" * 20])  # no reserves: counted, not in the table
    with Server(chain) as server:
        src = EthereumSource(server.url, pools=path, pairs=pairs, timeout_s=TIMEOUT)
        src.close()
    book = PoolBook(src.metadata)
    assert len(book) == src.stats["pools"] == len(pools) + len(pairs) - 1
    assert src.stats["pools_without_reserves"] == 1
    for pool in list(pools) + [p for p, t in extra.items() if list(t) in pairs]:
        assert book.reserves(book.index(pool)) == chain.reserves[pool]


def test_engine_runs_the_live_stream_through_the_strategies(chain, reference, tmp_path):
    path, _ = pool_file(tmp_path, chain, reference)
    with Server(chain, heads=False) as server:
        cfg = {"source": {"options": {"max_reconnects": 0, "heads": False, "pools": str(path),
                                      "timeout_s": TIMEOUT}}}
        report = Engine(cfg).run(server.url)
    assert report.source_error is None and report.engine_error is None
    assert report.mode == "live"
    assert report.ingested == len(reference.rows)
    assert report.processed + sum(report.rejected.get(k, 0) for k in ("expired", "duplicate")) \
        == report.ingested
    assert {"sandwich", "arbitrage"} <= set(report.processors)


def test_engine_applies_the_heads_reserves_to_its_pool_book(chain, reference, tmp_path):
    """With heads on, each pool re-read at a head reaches the engine's pool book (applied on the
    engine thread between batches) or is counted as outside the table."""
    path, pools = pool_file(tmp_path, chain, reference)
    with Server(chain, heads=True, wait_for=("pending", "heads")) as server:
        cfg = {"source": {"options": {"max_reconnects": 0, "pools": str(path),
                                      "timeout_s": TIMEOUT}}}
        eng = Engine(cfg)
        report = eng.run(server.url)
    assert report.source_error is None and report.engine_error is None
    src = eng.source
    u = report.reserve_updates
    assert u.get("applied", 0) > 0 and "bad_reserves" not in u
    assert u["applied"] + u.get("unknown_pool", 0) == src.stats["reserves_refreshed"]
    assert not src.reserve_updates  # all taken
    # pools outside the table are the ones counted unknown (the source re-reads every pool a
    # mined transaction touched; the table holds those with a known getReserves)
    assert ("unknown_pool" in u) == bool(set(src.reserves) - set(pools))


def test_close_and_engine_stop_end_an_endless_stream(chain):
    with Server(chain, heads=False, close_at_end=False) as server:
        src = EthereumSource(server.url, heads=False, timeout_s=TIMEOUT)
        it = iter(src)
        while not len(next(it)):
            pass
        src.close()
        rest = list(it)  # what was buffered, then the end
        assert all(c.dtype == reference_dtype() for c in rest)

        eng = Engine({"source": {"options": {"heads": False, "timeout_s": TIMEOUT}}})
        eng.start(server.url)
        assert eng.source.__class__ is EthereumSource
        report = eng.stop()  # the source never ends by itself
        assert report.source_error is None


def reference_dtype():
    return decode_transactions([]).rows.dtype


def test_buffer_full_is_counted(chain, reference):
    with Server(chain, heads=False) as server:
        src = EthereumSource(server.url, max_reconnects=0, heads=False, buffer_rows=4,
                             timeout_s=TIMEOUT)
        it = iter(src)
        assert src.ended.wait(TIMEOUT)  # the stream ran to its end while nothing was read
        got = np.concatenate([c for c in it if len(c)])
    assert 0 < len(got) <= 4
    assert len({bytes(h) for h in got["tx_hash"]}) + src.errors["buffer_full"] \
        == reference.stats["decoded"]


def test_bad_transactions_are_counted_by_reason(chain):
    router = "0x7a250d5630b4cf539739df2c5dacb4c659f2488d"
    good = next(tx for tx in chain.stream if tx["to"] == router)
    txs = [dict(good, hash="0x" + "01" * 32, input="0xdeadbeef" + "00" * 64),
           dict(good, hash="0x" + "02" * 32, input="0x38ed"),
           dict(good, hash="0x" + "03" * 32, input="0xzz"),
           {"to": router},  # no hash
           dict(good, hash="0x" + "04" * 32, blockNumber="0x1"),
           good]
    with Server(Chain([(1, "0x" + "ab" * 32, txs)], {}), heads=False) as server:
        src = EthereumSource(server.url, max_reconnects=0, heads=False, timeout_s=TIMEOUT)
        got = _drain(src)
    assert dict(src.errors) == {"undecodable_unknown_selector": 1, "undecodable_short_calldata": 1,
                                "bad_transaction": 2, "late": 1}
    assert {bytes(h).hex() for h in got["tx_hash"]} == {good["hash"][2:]}


def test_bad_options_name_the_option():
    with pytest.raises(ConfigError, match="url"):
        EthereumSource("http://127.0.0.1:8545")
    with pytest.raises(ConfigError, match="max_reconnects"):
        EthereumSource("ws://127.0.0.1:1", max_reconnects=-1)
    with pytest.raises(ConfigError, match="pairs"):
        EthereumSource("ws://127.0.0.1:1", pairs=[["0x12"]])
    with pytest.raises(ConfigError, match="pools"):
        EthereumSource("ws://127.0.0.1:1", pools="/nonexistent/pools.json")
    # nothing listens on port 1: a clear error naming the url, not a hang
    with pytest.raises(TallyIOError, match="127.0.0.1:1"):
        EthereumSource("ws://127.0.0.1:1", pairs=[["0x" + "11" * 20, "0x" + "22" * 20]],
                       timeout_s=10)
    assert EthereumSource.accepts("wss://node.example/ws") and not EthereumSource.accepts("x.npz")


def test_tallyio_run_source_ws_url_with_a_config(chain, reference, tmp_path, capsys):
    from tallyio.cli import main
    pools, _ = pool_file(tmp_path, chain, reference)
    bundles = tmp_path / "bundles.jsonl"
    cfg = tmp_path / "node.toml"
    cfg.write_text(f"""
[source.options]
pools = "{pools}"
max_reconnects = 0
timeout_s = {TIMEOUT}

[sinks]
names = ["bundle"]
options = {{ bundle = {{ path = "{bundles}" }} }}
""")
    out = tmp_path / "report.json"
    with Server(chain, heads=True, wait_for=("pending", "heads")) as server:
        assert main(["run", "--config", str(cfg), "--source", server.url, "--json", str(out),
                     "--quiet"]) == 0
    d = json.loads(out.read_text())
    assert d["source_error"] is None and d["mode"] == "live"
    late = d["rejected"].get("late", 0)
    assert 0 < d["ingested"] <= len(reference.rows) and late <= reference.stats["decoded"]
    assert bundles.exists()


def test_close_while_connecting_to_a_silent_peer_returns():
    import socket
    import threading
    silent = socket.create_server(("127.0.0.1", 0))  # accepts, never answers the handshake
    try:
        src = EthereumSource(f"ws://127.0.0.1:{silent.getsockname()[1]}", timeout_s=TIMEOUT)
        it = iter(src)
        assert len(next(it)) == 0  # idle: the heartbeat
        closer = threading.Thread(target=src.close)
        closer.start()
        closer.join(TIMEOUT / 2)  # the connect timeout is TIMEOUT: close did not wait for it
        assert not closer.is_alive()
        assert list(it) == [] and src.ended.is_set()
    finally:
        silent.close()
