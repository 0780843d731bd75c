"""Built-in sinks: what they write, and bad options as one-line config errors naming the option."""
import json

import pytest

from tallyio.errors import ConfigError
from tallyio.opportunity import Opportunity
from tallyio.sinks import JsonlSink, MemorySink

OPS = [Opportunity("arbitrage", "arbitrage", 10**30, "0x" + "11" * 20, (1, 2)),
       Opportunity("sandwich", "sandwich_opportunity", 7, "0x" + "22" * 20)]


def test_jsonl_appends_one_object_per_opportunity(tmp_path):
    p = tmp_path / "o.jsonl"
    for _ in range(2):  # appends, never truncates
        sink = JsonlSink(str(p))
        sink.emit(OPS)
        sink.close()
    lines = [json.loads(line) for line in p.read_text().splitlines()]
    assert [d["strategy"] for d in lines] == ["arbitrage", "sandwich"] * 2
    assert lines[0]["profit_str"] == str(10**30)


def test_memory_sink_keeps_the_latest_and_counts_what_it_drops():
    sink = MemorySink(limit=1)
    sink.emit(OPS)
    assert list(sink.items) == OPS[-1:] and sink.dropped == len(OPS) - 1
    sink.emit(OPS)
    assert list(sink.items) == OPS[-1:] and sink.dropped == 2 * len(OPS) - 1
    roomy = MemorySink(limit=10)
    roomy.emit(OPS)
    assert list(roomy.items) == OPS and roomy.dropped == 0


@pytest.mark.parametrize("path", [None, "", 5])
def test_jsonl_without_a_path(path):
    with pytest.raises(ConfigError, match=rf"^jsonl sink: path must name a file .*got {path!r}$"):
        JsonlSink() if path is None else JsonlSink(path)


def test_jsonl_path_that_cannot_be_opened(tmp_path):
    with pytest.raises(ConfigError, match=rf"^jsonl sink: path '{tmp_path}' cannot be opened for "
                                          r"appending: Is a directory$"):
        JsonlSink(str(tmp_path))
    missing = tmp_path / "no" / "o.jsonl"
    with pytest.raises(ConfigError, match=r"cannot be opened for appending: No such file or directory"):
        JsonlSink(str(missing))


@pytest.mark.parametrize("limit", [-1, "many", 1.5, True])
def test_memory_sink_limit(limit):
    with pytest.raises(ConfigError, match=rf"^memory sink: limit must be an int >= 0, got {limit!r}$"):
        MemorySink(limit)
