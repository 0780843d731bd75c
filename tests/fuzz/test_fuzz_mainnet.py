"""Fuzz the mainnet block reader: whatever a directory's block files hold, ``MainnetTraceSource``
replays the good blocks and skips (counts and names) the bad ones, or, with
``on_bad_file="fail"``, raises one of TallyIO's own errors naming the file; never anything else.

Examples per fuzzer: ``TALLYIO_FUZZ_EXAMPLES`` (default 200; CI's fuzz step runs 10,000).
"""
import json
import os
import re
import sys

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from tallyio.errors import TallyIOError
from tallyio.record import TX_DTYPE

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "plugins", "tallyio-mainnet"))  # before it is installed
from tallyio_mainnet.source import MainnetTraceSource  # noqa: E402

pytestmark = pytest.mark.fuzz
EXAMPLES = int(os.environ.get("TALLYIO_FUZZ_EXAMPLES", "200"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                suppress_health_check=list(HealthCheck))


def word(v):
    return format(v % (1 << 256), "064x")


def addr(n):
    return "0x" + format(n, "040x")


def call(tx, trace_address, frm, to, inp="0x", output="0x", error=None):
    return {"action": {"from": frm, "callType": "call", "gas": "0x0", "input": inp, "to": to,
                       "value": "0x0"},
            "result": None if error else {"gasUsed": "0x0", "output": output},
            "subtraces": 0, "trace_address": list(trace_address),
            "transaction_hash": "0x" + format(tx + 1, "064x"), "transaction_position": tx,
            "type": "call", "error": error}


EOA, BOT, PAIR, POOL3, TA, TB = (addr(n) for n in (0xE0A, 0xB07, 0xAA, 0x33, 0xA, 0xB))


def block(number):
    """A small good block: a V2 swap paid before the call, a V3 swap paid in its callback, a
    reverted call, a create and a block reward."""
    v2 = "0x022c0d9f" + word(0) + word(9) + word(int(BOT, 16)) + word(128) + word(0)
    v3 = "0x128acb08" + word(int(BOT, 16)) + word(1) + word(10) + word(0) + word(160) + word(0)
    transfer = lambda to, amount: "0xa9059cbb" + word(int(to, 16)) + word(amount)  # noqa: E731
    traces = [
        call(0, (), EOA, BOT, "0x12345678"),
        call(0, (0,), EOA, TA, transfer(PAIR, 10)),
        call(0, (1,), EOA, PAIR, v2),
        call(0, (1, 0), PAIR, TB, transfer(BOT, 9)),
        call(1, (), EOA, POOL3, v3, output="0x" + word(10) + word(-7)),
        call(1, (0,), POOL3, TB, transfer(BOT, 7)),
        call(1, (1,), BOT, TA, transfer(POOL3, 10)),
        call(2, (), EOA, PAIR, v2, error="Reverted"),
        {"action": {"from": EOA, "gas": "0x0", "init": "0x", "value": "0x0"},
         "result": {"address": addr(5), "code": "0x", "gasUsed": "0x0"}, "subtraces": 0,
         "trace_address": [], "transaction_hash": "0x" + format(4, "064x"),
         "transaction_position": 3, "type": "create", "error": None},
        {"action": {"author": EOA, "rewardType": "block", "value": "0x0"}, "result": None,
         "trace_address": [], "transaction_position": None, "type": "reward"},
    ]
    receipts = [{"transaction_hash": "0x" + format(i + 1, "064x"), "effective_gas_price": 7}
                for i in range(4)]
    return {"block_number": number, "block_timestamp": 1_600_000_000 + number,
            "traces": traces, "receipts": receipts}


GOOD_TEXT = json.dumps(block(101))

JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.sampled_from([2**64, 2**256, -1])
    | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=8)
    | st.sampled_from(["0x", "0x12", addr(1), "0x" + "ab" * 32, "call", "0xa9059cbb", "0xzz"]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner,
                                                                 max_size=3),
    max_leaves=6)


def _paths(value, prefix=()):
    """Every path to a value inside ``value`` (dict keys and list indexes)."""
    yield prefix
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _paths(v, prefix + (i,))


PATHS = list(_paths(json.loads(GOOD_TEXT)))[1:]


@st.composite
def mutated_block(draw):
    b = json.loads(GOOD_TEXT)
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(PATHS))
        parent = b
        try:
            for k in path[:-1]:
                parent = parent[k]
            op = draw(st.sampled_from(["replace", "delete"]))
            if op == "delete" and isinstance(parent, dict):
                del parent[path[-1]]
            elif op == "delete" and isinstance(parent, list):
                parent.pop(path[-1])
            else:
                parent[path[-1]] = draw(JSON)
        except (KeyError, IndexError, TypeError):  # an earlier change moved this path
            pass
    text = json.dumps(b, allow_nan=True)
    if draw(st.integers(0, 9)) == 0:  # now and then a file cut short or with a byte flipped
        cut = draw(st.integers(0, len(text)))
        text = text[:cut] if draw(st.booleans()) else text[:cut] + "\x00" + text[cut + 1:]
    return text


FILES = st.one_of(mutated_block(), JSON.map(lambda v: json.dumps(v, allow_nan=True)),
                  st.sampled_from(["", "[" * 100_000, '{"block_number": 1e999, "traces": [], '
                                   '"receipts": []}', '{"block_number": ' + "9" * 5000 + "}"]),
                  st.binary(max_size=64).map(lambda b: b.decode("latin1")))


@pytest.fixture(scope="module")
def blocks_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("blocks")
    (d / "100.json").write_text(json.dumps(block(100)))  # a good block before the fuzzed one
    return d


@given(text=FILES)
@FUZZ
def test_fuzz_mainnet_blocks(blocks_dir, put, text):
    bad = blocks_dir / "101.json"
    put(bad, text.encode("utf-8", "surrogatepass"))
    source = MainnetTraceSource(blocks_dir)  # on_bad_file="skip": never raises with a good block
    chunks = list(source)
    assert [int(c["block"][0]) for c in chunks][:1] == [100]
    assert all(c.dtype == TX_DTYPE and len(c) for c in chunks)  # validated by the source
    if source.errors:
        assert dict(source.errors) == {"bad_block_file": 1}
        [(name, message)] = source.bad_files
        assert name == str(bad) and message.startswith(f"{bad}: ") and "\n" not in message
        event("skipped: " + re.sub(r"[\d'\[].*", "", message[len(str(bad)) + 2:])[:40])
    else:
        event(f"read: {len(chunks) - 1} chunk(s) from the fuzzed block")
    if source.errors:  # the same file fails a run that asks for it
        with pytest.raises(TallyIOError) as e:
            MainnetTraceSource(blocks_dir, on_bad_file="fail")
        assert str(e.value) == source.bad_files[0][1]
