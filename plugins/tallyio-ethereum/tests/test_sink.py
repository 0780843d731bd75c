"""The ``bundle`` sink: JSON lines a bot can act on, one write per batch, victims from the source."""
from __future__ import annotations

import json

import numpy as np
import pytest

from rpc_server import TIMEOUT, Server, pool_file

from tallyio import Engine, hookimpl
from tallyio.errors import ConfigError
from tallyio.opportunity import Opportunity
from tallyio.plugins import get_plugin_manager
from tallyio.record import FLAG_PENDING, PROTOCOL_UNISWAP_V2, address_hex, u256_column_to_ints
from tallyio_ethereum import sink as sink_module
from tallyio_ethereum.sink import BundleSink


class EveryVictim:
    """A chance at every pending V2 swap: one opportunity per row, so every line is checked."""

    name = "victims"

    def process(self, batch):
        out = []
        pending = batch[(batch["flags"] & FLAG_PENDING).astype(bool)
                        & (batch["protocol"] == PROTOCOL_UNISWAP_V2)]
        for r, amount in zip(pending, u256_column_to_ints(pending["amount_in"])):
            out.append(Opportunity(strategy=self.name, kind="test", profit=1 << 70,
                                   profit_token=address_hex(r["token_in"]), tx_ids=(int(r["id"]),),
                                   pools=(address_hex(r["pool"]),),
                                   details={"frontrun_in": amount, "bound": "slippage"}))
        return out


class VictimsPlugin:
    @hookimpl
    def register_processors(self, register):
        register("victims", EveryVictim)


def builder(record):
    return {"victim": record["victim"]["tx_hash"] if record["victim"] else None}


def test_engine_writes_a_line_per_opportunity_with_its_victim(chain, reference, tmp_path):
    pools, _ = pool_file(tmp_path, chain, reference)
    out = tmp_path / "bundles.jsonl"
    pm = get_plugin_manager()
    pm.register(VictimsPlugin())
    cfg = {"source": {"options": {"max_reconnects": 0, "heads": False, "pools": str(pools),
                                  "timeout_s": TIMEOUT}},
           "plugins": {"processors": ["victims"]},
           "engine": {"mode": "replay"},  # no row ages out on a loaded machine: every one is seen
           "sinks": {"names": ["bundle"],
                     "options": {"bundle": {"path": str(out), "builder": f"{__name__}:builder"}}}}
    with Server(chain, heads=False) as server:
        report = Engine(cfg, plugin_manager=pm).run(server.url)
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    v2 = reference.rows[reference.rows["protocol"] == PROTOCOL_UNISWAP_V2]
    assert report.opportunities_total == len(lines) == len(v2) > 0
    by_hash = {}
    for r, a in zip(v2, u256_column_to_ints(v2["amount_in"])):
        by_hash.setdefault("0x" + bytes(r["tx_hash"]).hex(), []).append((r, a))
    for line in lines:
        v = line["victim"]
        assert v is not None and line["bundle"] == {"victim": v["tx_hash"]}
        assert any(v["pool"] == address_hex(r["pool"]) and v["amount_in"] == str(a)
                   for r, a in by_hash[v["tx_hash"]])
        assert line["pools"] == [v["pool"]] and line["tokens"][:2] == [v["token_in"], v["token_out"]]
        assert line["amounts"]["frontrun_in"] == v["amount_in"] and line["profit"] == str(1 << 70)
        assert line["details"] == {"bound": "slippage"} and line["target_block"] is None


def _opportunity(i):
    return Opportunity(strategy="s", kind="k", profit=i, profit_token="0x" + "aa" * 20,
                       tx_ids=(i,), pools=("0x" + "bb" * 20,), details={"gas_cost": 3})


class Source:
    """A source that numbers its rows: ``row(i)`` and a head."""

    head = 100

    def __init__(self):
        self.rows = np.zeros(2, reference_dtype())
        self.rows["tx_hash"][1, 0] = 7

    def row(self, i):
        return self.rows[i] if i < len(self.rows) else None


def reference_dtype():
    from tallyio.record import TX_DTYPE
    return TX_DTYPE


def test_a_batch_is_one_write_and_the_target_block_follows_the_head(tmp_path, monkeypatch):
    writes = []
    real = sink_module.os.write
    monkeypatch.setattr(sink_module.os, "write", lambda fd, b: writes.append(len(b)) or real(fd, b))
    s = BundleSink(tmp_path / "b.jsonl")
    s.attach(Source())
    s.emit([_opportunity(0), _opportunity(1), _opportunity(5)])
    s.emit([_opportunity(1)])
    s.close()
    lines = [json.loads(x) for x in (tmp_path / "b.jsonl").read_text().splitlines()]
    assert len(writes) == 2 and len(lines) == 4 and s.written == 4
    assert [line["target_block"] for line in lines] == [101, 101, 101, 101]
    assert lines[1]["victim"]["tx_hash"] == "0x07" + "00" * 31
    assert lines[2]["victim"] is None  # row 5 is not known to the source
    assert lines[0]["amounts"] == {"gas_cost": "3"}


def test_a_failing_builder_is_counted_and_the_line_still_written(tmp_path):
    def broken(record):
        raise RuntimeError("no signer")
    s = BundleSink(str(tmp_path / "b.jsonl"), builder=broken)
    s.emit([_opportunity(0)])
    s.emit([Opportunity(strategy="s", kind="k", profit=1, profit_token="0x")])
    s.close()
    lines = (tmp_path / "b.jsonl").read_text().splitlines()
    assert len(lines) == 2 and s.errors["builder_failed"] == 2
    assert all("bundle" not in json.loads(x) for x in lines)


def test_bad_options_name_the_option(tmp_path):
    with pytest.raises(ConfigError, match="path"):
        BundleSink()
    with pytest.raises(ConfigError, match="builder"):
        BundleSink(tmp_path / "b.jsonl", builder="no_such_module_here:fn")
    with pytest.raises(ConfigError, match="builder"):
        BundleSink(tmp_path / "b.jsonl", builder=42)
    with pytest.raises(ConfigError, match="path"):
        BundleSink(tmp_path / "missing" / "b.jsonl")
