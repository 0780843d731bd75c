"""The mainnet-trace Source, its plugin registration, and the report script."""
from __future__ import annotations

import json
import sys
import tomllib
from importlib import metadata

import pluggy
import pytest

import tallyio.hookspecs
from conftest import PLUGIN
from tallyio.record import TX_DTYPE
from tallyio_mainnet import plugin
from tallyio_mainnet.decode import decode_block
from tallyio_mainnet.report import block_rows, format_rows, main
from tallyio_mainnet.source import NS, MainnetTraceSource, sample_dir

SAMPLE = [12775690, 13323642, 13404932, 15049646]
# the sample's timestamps: 13323642's file has none
TIMES = {12775690: 1625598724, 13404932: 1634058758, 15049646: 1656580796}


def test_sample_replays_one_chunk_per_block_in_order():
    source = MainnetTraceSource()
    chunks = list(source)
    assert [int(c["block"][0]) for c in chunks] == SAMPLE
    for c in chunks:
        assert c.dtype == TX_DTYPE and len(c) > 0
        assert (c["block"] == c["block"][0]).all()
        assert (c["arrival_ns"] == c["arrival_ns"][0]).all()
        assert int(c["block_time"][0]) == TIMES.get(int(c["block"][0]), 0)
        expected, _ = decode_block(sample_dir() / f"{int(c['block'][0])}.json")
        assert (c[["amount_in", "amount_out", "pool", "tx_hash"]] ==
                expected[["amount_in", "amount_out", "pool", "tx_hash"]]).all()
    assert [s["block"] for s in source.stats] == SAMPLE
    # default: every gap capped at one slot
    assert [int(c["arrival_ns"][0]) for c in chunks] == [0, 12 * NS, 24 * NS, 36 * NS]


def test_offsets_follow_timestamps_or_slots_when_uncapped():
    chunks = list(MainnetTraceSource(sample_dir(), max_gap_s=None))
    slot = 12 * NS
    first = 0
    second = first + (13323642 - 12775690) * slot  # no timestamp in 13323642: slots
    third = second + (13404932 - 13323642) * slot
    fourth = third + (TIMES[15049646] - TIMES[13404932]) * NS  # both timestamped
    assert [int(c["arrival_ns"][0]) for c in chunks] == [first, second, third, fourth]


def test_single_file_and_empty_blocks(tmp_path):
    one = list(MainnetTraceSource(sample_dir() / "12775690.json"))
    assert len(one) == 1 and int(one[0]["arrival_ns"][0]) == 0
    empty = {"block_number": 5, "block_timestamp": 100, "traces": [], "receipts": []}
    (tmp_path / "5.json").write_text(json.dumps(empty))
    (tmp_path / "6.json").write_text(json.dumps(dict(empty, block_number=6, block_timestamp=90)))
    source = MainnetTraceSource(tmp_path)
    assert list(source) == []
    # a block with no swap yields no chunk but is accounted for, and time never runs backwards
    assert [(s["block"], s["arrival_ns"]) for s in source.stats] == [(5, 0), (6, 0)]


def test_accepts():
    assert MainnetTraceSource.accepts(sample_dir())
    assert MainnetTraceSource.accepts(sample_dir() / "12775690.json")
    assert not MainnetTraceSource.accepts(sample_dir() / "ATTRIBUTION.md")
    assert not MainnetTraceSource.accepts(sample_dir() / "expected")
    assert not MainnetTraceSource.accepts(sample_dir() / "expected" / "12775690-sandwiches.json")
    assert not MainnetTraceSource.accepts(sample_dir() / "missing.json")


def test_bad_arguments_raise(tmp_path):
    with pytest.raises(ValueError, match="path must be a block JSON file"):
        MainnetTraceSource(tmp_path)
    with pytest.raises(ValueError, match="slot_s must be >= 0, got -1"):
        MainnetTraceSource(slot_s=-1)
    with pytest.raises(ValueError, match="max_gap_s must be >= 0 or None, got nan"):
        MainnetTraceSource(max_gap_s=float("nan"))


def test_plugin_registers_the_source_through_pluggy():
    pm = pluggy.PluginManager(tallyio.hookspecs.PROJECT)
    pm.add_hookspecs(tallyio.hookspecs)
    pm.register(plugin, name="mainnet")
    try:
        registered = []
        pm.hook.register_sources(register=lambda name, factory: registered.append((name, factory)))
        assert registered == [("mainnet-trace", MainnetTraceSource)]
    finally:
        pm.unregister(name="mainnet")


def test_entry_point_declared_and_installed_consistently():
    project = tomllib.loads((PLUGIN / "pyproject.toml").read_text())["project"]
    assert project["name"] == "tallyio-mainnet"
    assert "tallyio" in project["dependencies"]
    assert project["entry-points"]["tallyio"] == {"mainnet": "tallyio_mainnet.plugin"}
    installed = [ep for ep in metadata.entry_points(group="tallyio") if ep.name == "mainnet"]
    # when the package is installed, its metadata must say the same
    assert all(ep.value == "tallyio_mainnet.plugin" for ep in installed)


def test_report_rows_and_table(capsys):
    rows = block_rows(sample_dir())
    assert [(r["block"], r["swaps"], r["sandwiches"], r["arbitrages"]) for r in rows] == [
        (12775690, 21, 1, 0), (13323642, 10, 0, 0), (13404932, 16, 1, 4), (15049646, 23, 0, 5)]
    table = format_rows(rows)
    assert table.splitlines()[0].split() == ["file", "block", "txs", "swaps", "v2", "v3",
                                             "skipped", "reverted", "sandwiches", "arbitrages"]
    assert table.splitlines()[-1].split()[:3] == ["total", "4", "blocks"]
    assert main([str(sample_dir())]) == 0
    assert capsys.readouterr().out.strip() == table
    with pytest.raises(SystemExit):
        main([str(sample_dir() / "missing")])


def test_report_runs_as_a_module():
    import subprocess
    out = subprocess.run([sys.executable, "-m", "tallyio_mainnet.report",
                          str(sample_dir() / "12775690.json")], capture_output=True, text=True,
                         cwd=PLUGIN, check=True).stdout
    assert "12775690" in out.splitlines()[2]
