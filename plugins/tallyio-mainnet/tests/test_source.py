"""The mainnet-trace Source, its plugin registration, and the report script."""
from __future__ import annotations

import json
import logging
import shutil
import sys
from importlib import metadata

import pluggy
import pytest

import tallyio.hookspecs
from blocks import address, block, call, transfer, v2_swap
from mainnet_data import PLUGIN
from tallyio.errors import ConfigError
from tallyio.feeds import FeedError
from tallyio.record import TX_DTYPE
from tallyio_mainnet import plugin
from tallyio_mainnet.decode import decode_block
from tallyio_mainnet.report import block_rows, format_rows, main
from tallyio_mainnet.source import NS, MainnetTraceSource, check_block, sample_dir

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

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
    with pytest.raises(FeedError, match="path must be a block JSON file"):
        MainnetTraceSource(tmp_path)
    with pytest.raises(ConfigError, match="slot_s must be >= 0, got -1"):
        MainnetTraceSource(slot_s=-1)
    with pytest.raises(ConfigError, match="max_gap_s must be >= 0 or None, got nan"):
        MainnetTraceSource(max_gap_s=float("nan"))
    with pytest.raises(ConfigError, match="slot_s must be >= 0, got '12'"):
        MainnetTraceSource(slot_s="12")
    with pytest.raises(ConfigError, match="on_bad_file must be 'skip' or 'fail', got 'ignore'"):
        MainnetTraceSource(on_bad_file="ignore")


def _sample_with_truncated_block(tmp_path):
    """The sample blocks with the second one cut short, as a copy interrupted half-way leaves it."""
    for f in sample_dir().glob("*.json"):
        shutil.copy(f, tmp_path / f.name)
    bad = tmp_path / f"{SAMPLE[1]}.json"
    bad.write_bytes(bad.read_bytes()[:3000])
    return bad


def test_a_truncated_block_file_is_skipped_named_and_counted(tmp_path, caplog):
    bad = _sample_with_truncated_block(tmp_path)
    with caplog.at_level(logging.WARNING, logger="tallyio_mainnet.source"):
        source = MainnetTraceSource(tmp_path)
    assert dict(source.errors) == {"bad_block_file": 1}
    assert [f for f, _ in source.bad_files] == [str(bad)]
    assert source.bad_files[0][1].startswith(f"{bad}: not valid JSON: Unterminated string")
    [warning] = caplog.records
    assert str(bad) in warning.getMessage() and "skipped" in warning.getMessage()
    # the blocks after the bad one are read
    assert [int(c["block"][0]) for c in source] == [SAMPLE[0], *SAMPLE[2:]]


def test_on_bad_file_fail_names_the_file_before_the_run(tmp_path):
    bad = _sample_with_truncated_block(tmp_path)
    with pytest.raises(FeedError, match=f"^{bad}: not valid JSON: Unterminated string"):
        MainnetTraceSource(tmp_path, on_bad_file="fail")


def test_no_readable_block_is_an_error(tmp_path):
    (tmp_path / "7.json").write_text('{"block_number": 7, "traces": [')
    with pytest.raises(FeedError, match=rf"^{tmp_path}: no readable block file \(1 bad; first: "
                                        rf"{tmp_path / '7.json'}: not valid JSON"):
        MainnetTraceSource(tmp_path)
    # a single block file is the whole feed: its own fault is the error
    with pytest.raises(FeedError, match=rf"^{tmp_path / '7.json'}: not valid JSON"):
        MainnetTraceSource(tmp_path / "7.json")


PAIR, TOKEN_A, TOKEN_B = address(0xAA), address(0xA), address(0xB)
EOA, BOT = address(0xE0A), address(0xB07)


def _good_block():
    b = block([call(0, (), EOA, BOT, "0x12345678"),
               call(0, (0,), EOA, TOKEN_A, transfer(PAIR, 10)),
               call(0, (1,), EOA, PAIR, v2_swap(0, 9, BOT)),
               call(0, (1, 0), PAIR, TOKEN_B, transfer(BOT, 9))])
    b["traces"].append({"action": {"author": EOA, "rewardType": "block", "value": "0x0"},
                        "trace_address": [], "transaction_position": None, "type": "reward"})
    return b


def _set(path, value):
    def change(b):
        *keys, last = path
        for k in keys:
            b = b[k]
        b[last] = value
    return change


@pytest.mark.parametrize("change, message", [
    (_set(["block_number"], "twelve"), r"block_number must be an integer in \[0, 2\*\*64\), got 'twelve'"),
    (_set(["block_number"], 2**64), r"block_number must be an integer in \[0, 2\*\*64\)"),
    (_set(["block_timestamp"], 1.5), r"block_timestamp must be an integer in \[0, 2\*\*64\), got 1.5"),
    (_set(["traces"], {}), r"traces must be a list, got 'dict'"),
    (_set(["receipts", 0, "effective_gas_price"], 2**64), r"receipts\[0\].effective_gas_price must be"),
    (_set(["receipts", 0, "transaction_hash"], ["x"]), r"receipts\[0\].transaction_hash must be a 0x transaction hash"),
    (_set(["traces", 1], 5), r"traces\[1\] must be an object, got 5"),
    (_set(["traces", 1, "action", "to"], 5), r"traces\[1\].action.to must be a 0x address \(20 bytes of hex\), got 5"),
    (_set(["traces", 1, "action", "input"], "0x022c0d9fzz"), r"traces\[1\].action.input must be 0x hex"),
    (_set(["traces", 1, "trace_address"], [70000]), r"traces\[1\].trace_address must be a list of integers in \[0, 65535\]"),
    (_set(["traces", 1, "transaction_hash"], "0x12"), r"traces\[1\].transaction_hash must be a 0x transaction hash"),
    (_set(["traces", 1, "transaction_position"], -1), r"traces\[1\].transaction_position must be an integer in \[0, 2\*\*32\)"),
    (_set(["traces", 1, "result"], [1]), r"traces\[1\].result must be an object or null, got \[1\]"),
    (_set(["traces", 0, "action", "from"], "me"), r"traces\[0\].action.from must be a 0x address"),
    (_set(["traces", 4, "type"], ["reward"]), r"traces\[4\].type must be a string, got \['reward'\]"),
    (_set(["traces", 4, "action"], None), r"traces\[4\].action must be an object, got None"),
])
def test_check_block_names_the_field(tmp_path, change, message):
    b = _good_block()
    check_block(b, "x.json")  # the block as built is good
    assert len(decode_block(b)[0]) == 1
    change(b)
    with pytest.raises(FeedError, match=rf"^x.json: {message}"):
        check_block(b, "x.json")
    path = tmp_path / "12.json"
    path.write_text(json.dumps(b))
    with pytest.raises(FeedError, match=rf"^{path}: {message}"):
        MainnetTraceSource(path)


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
        (12775690, 21, 1, 0), (13323642, 11, 0, 0), (13404932, 16, 1, 4), (15049646, 25, 0, 5)]
    table = format_rows(rows)
    assert table.splitlines()[0].split() == ["file", "block", "txs", "swaps", "v2", "v3", "bal1",
                                             "bal2", "curve", "bancor", "0x", "skipped",
                                             "reverted", "sandwiches", "arbitrages",
                                             "reverted_arbs"]
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
