"""The batch message format, the partition key, URL and partition-list parsing."""
from __future__ import annotations

import numpy as np
import pytest

from tallyio.errors import ConfigError
from tallyio.record import TX_DTYPE
from tallyio_nats.wire import (HEADER, MalformedMessage, RECORD_VERSION, decode, encode,
                               parse_partitions, partition_of, server_url)


def test_round_trip(feed_rows):
    rows = feed_rows[0][:100]
    b = decode(encode(rows, 3, 7))
    assert (b.partition, b.seq, b.end) == (3, 7, False)
    assert b.rows.tobytes() == rows.tobytes()
    end = decode(encode(np.zeros(0, TX_DTYPE), 3, 8, end=True))
    assert end.end and len(end.rows) == 0


@pytest.mark.parametrize("mangle, reason", [
    (lambda m: m[:10], "bad_size"),
    (lambda m: m[:-1], "bad_size"),
    (lambda m: m + b"\0", "bad_size"),
    (lambda m: b"XXXX" + m[4:], "bad_magic"),
    (lambda m: m[:4] + (RECORD_VERSION + 1).to_bytes(2, "little") + m[6:], "bad_version"),
])
def test_malformed(feed_rows, mangle, reason):
    with pytest.raises(MalformedMessage) as e:
        decode(mangle(encode(feed_rows[0][:5], 0, 1)))
    assert e.value.reason == reason


def test_partition_by_token_pair(feed_rows):
    rows = feed_rows[0]
    part = partition_of(rows, 6)
    assert part.min() >= 0 and part.max() < 6
    # every pool, and every pool of a token pair, in one partition
    for key in np.unique(rows["pool_key"]):
        assert len(np.unique(part[rows["pool_key"] == key])) == 1
    swapped = rows.copy()
    swapped["token_in"], swapped["token_out"] = rows["token_out"], rows["token_in"]
    assert (partition_of(swapped, 6) == part).all()
    # stable: a hash of the addresses (BLAKE2b), not Python's per-process hash()
    assert np.bincount(part, minlength=6).tolist() == [12806, 0, 4185, 4279, 0, 8730]


def test_parse_partitions():
    assert parse_partitions("0-3") == [0, 1, 2, 3]
    assert parse_partitions("5,0-1") == [0, 1, 5]
    assert parse_partitions(2, 3) == [2]
    for bad in ("", "a", "3-1", "1-", "-1", True, 1.5, [1, "2"]):
        with pytest.raises(ConfigError, match="partitions"):
            parse_partitions(bad)
    with pytest.raises(ConfigError, match=r"partition 6 is not in \[0, 6\)"):
        parse_partitions("4-6", 6)


def test_server_url():
    assert server_url("nats://127.0.0.1:4222") == "nats://127.0.0.1:4222"
    for bad in ("http://h:1", "nats://h", "nats://:1", "nats://h:x", "nats://h:1/path", 5):
        with pytest.raises(ConfigError, match="nats://HOST:PORT"):
            server_url(bad)
    assert HEADER.size == 24


def test_hop_sample_stays_small_and_spans_the_run():
    from tallyio_nats.source import Sample
    s = Sample(100)
    for i in range(100_000):
        s.add(i)
    assert 50 <= len(s.values) < 100
    assert s.values[0] < 2_000 and s.values[-1] > 98_000
    assert s.values == sorted(s.values)
