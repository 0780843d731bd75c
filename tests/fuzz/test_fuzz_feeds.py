"""Fuzz the feed readers (.npy, .npz, .csv): whatever the bytes, ``read_feed`` returns a valid feed
or raises one of TallyIO's own errors (a ``FeedError`` naming the file), never anything else.

Examples per fuzzer: ``TALLYIO_FUZZ_EXAMPLES`` (default 200 in the ordinary test run; CI's fuzz
step runs 10,000). Derandomized, so a run is reproducible; ``-m fuzz`` selects these tests.
"""
import csv
import io
import os
import re
import warnings
import zipfile

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from tallyio.errors import TallyIOError
from tallyio.feeds import read_feed
from tallyio.record import PROTOCOL_UNISWAP_V2, TX_DTYPE

# numpy parses a .npy header with ast.literal_eval: a fuzzed one may hold "\E" (a warning, then
# numpy's own error)
pytestmark = [pytest.mark.fuzz, pytest.mark.filterwarnings("ignore:invalid escape sequence")]
EXAMPLES = int(os.environ.get("TALLYIO_FUZZ_EXAMPLES", "200"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                suppress_health_check=list(HealthCheck))


def good(n=3):
    r = np.zeros(n, dtype=TX_DTYPE)
    r["arrival_ns"] = np.arange(n) * 1000
    r["protocol"] = PROTOCOL_UNISWAP_V2
    r["token_in"][:, -1] = 1
    r["token_out"][:, -1] = 2
    r["amount_in"][:, 0] = 5
    return r


def npy(a, **kw) -> bytes:
    buf = io.BytesIO()
    np.save(buf, a, **kw)
    return buf.getvalue()


def npz(compressed=False, **arrays) -> bytes:
    buf = io.BytesIO()
    (np.savez_compressed if compressed else np.savez)(buf, **arrays)
    return buf.getvalue()



def check(path):
    """The property: a valid non-empty feed, or TallyIO's own error naming the file."""
    try:
        records, meta = read_feed(path)
    except TallyIOError as e:
        assert str(e).startswith(f"{path}: ") and "\n" not in str(e)
        event(type(e).__name__ + ": " + re.sub(r"[\d'].*", "", str(e)[len(str(path)) + 2:])[:40])
        return
    event("a valid feed")
    assert records.dtype == TX_DTYPE and records.ndim == 1 and len(records) > 0
    assert all(isinstance(v, np.ndarray) for v in meta.values())


# ---- byte-level mutations of valid files -------------------------------------------------------

@st.composite
def mutated(draw, bases):
    data = bytearray(draw(st.sampled_from(bases)))
    for _ in range(draw(st.integers(0, 4))):
        op = draw(st.sampled_from(["flip", "set", "truncate", "insert", "delete"]))
        pos = draw(st.integers(0, len(data)))
        if op == "flip" and pos < len(data):
            data[pos] ^= 1 << draw(st.integers(0, 7))
        elif op == "set" and pos < len(data):
            data[pos] = draw(st.sampled_from([0, 0xFF, 0x7F, 0x80, ord("9"), ord("("), ord(",")]))
        elif op == "truncate":
            del data[pos:]
        elif op == "insert":
            data[pos:pos] = draw(st.binary(max_size=16))
        elif op == "delete":
            del data[pos:pos + draw(st.integers(1, 16))]
    return bytes(data)


NPY_BASES = [npy(good()), npy(good(1)), npy(good(0)), npy(np.arange(6)),
             npy(np.zeros((2, 3), np.uint8)), npy(np.asfortranarray(np.ones((3, 2)))),
             npy(good(2)[["id", "arrival_ns"]]), npy(np.array(["a", "bc"]))]

_DESCRS = [repr(np.lib.format.dtype_to_descr(TX_DTYPE)), "'<i8'", "'|O'", "'<U3'", "'|V0'",
           "[('a', '<i4')]", "[('a', '<i4', (2,))]", "'x'", "3", "[('', '|V0')]", "'<f8'"]
_SHAPES = ["()", "(0,)", "(1,)", "(3,)", "(2, 3)", "(-1,)", "(1099511627776,)", "(3.0,)",
           "(1, -1)", "[3]", "None", "(0, 1099511627776)", "(18446744073709551616,)"]


@st.composite
def npy_header(draw):
    """A .npy file with a generated header (version, descr, shape, order) and payload."""
    version = draw(st.sampled_from([b"\x01\x00", b"\x02\x00", b"\x03\x00", b"\x09\x00"]))
    header = "{'descr': %s, 'fortran_order': %s, 'shape': %s, }" % (
        draw(st.sampled_from(_DESCRS)), draw(st.sampled_from(["False", "True", "1", "'no'"])),
        draw(st.sampled_from(_SHAPES)))
    if draw(st.booleans()):
        header = header.replace(draw(st.sampled_from(["'descr'", "'shape'", ", }", "{"])), "", 1)
    text = header.encode("latin1")
    text += b" " * (-(len(text) + 11) % 64) + b"\n"
    size = len(text).to_bytes(2 if version == b"\x01\x00" else 4, "little")
    payload = draw(st.sampled_from([b"", bytes(8), bytes(336), bytes(1008), os.urandom(64)]))
    return b"\x93NUMPY" + version + size + text + payload


@given(data=st.one_of(mutated(NPY_BASES), npy_header(), st.binary(max_size=256)))
@FUZZ
def test_fuzz_npy(workdir, put, data):
    path = workdir / "f.npy"
    put(path, data)
    check(path)


# ---- .npz: generated archives of columns, records and metadata, then mutated -------------------

_COLUMN_NAMES = list(TX_DTYPE.names) + ["records", "pools_reserve0", "x"]
_DTYPES = [np.int64, np.uint64, np.uint8, np.int8, np.float64, np.bool_, np.uint16, "U2"]


@st.composite
def npz_archive(draw):
    n = draw(st.integers(0, 4))
    arrays = {}
    for name in draw(st.lists(st.sampled_from(_COLUMN_NAMES), max_size=5, unique=True)):
        if name == "records" and draw(st.booleans()):
            arrays[name] = good(n)
            continue
        shape = draw(st.sampled_from([(n,), (n, 4), (n, 20), (n, 32), (n, 8), (), (n + 1,), (n, 2)]))
        dtype = draw(st.sampled_from(_DTYPES))
        values = draw(st.sampled_from([0, 1, -1, 255, 2**63, 2**64 - 1]))
        try:
            arrays[name] = np.full(shape, values).astype(dtype)
        except (OverflowError, ValueError):
            arrays[name] = np.zeros(shape, dtype)
    return npz(draw(st.booleans()), **arrays)


@st.composite
def odd_zip(draw):
    """Zip archives numpy would not write: other members, duplicates, directories, stored text."""
    buf = io.BytesIO()
    with warnings.catch_warnings(), zipfile.ZipFile(buf, "w", compression=draw(
            st.sampled_from([zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED]))) as zf:
        warnings.simplefilter("ignore", UserWarning)  # "Duplicate name": wanted here
        for name in draw(st.lists(st.sampled_from(["records.npy", "a.txt", "d/", "amount_in.npy",
                                                   "records", "x.npy"]), max_size=4)):
            body = draw(st.sampled_from([npy(good()), b"", b"hello", npy(np.arange(3))]))
            zf.writestr(name, body)
    return buf.getvalue()


NPZ_BASES = [npz(records=good()), npz(True, **{k: good()[k] for k in TX_DTYPE.names}),
             npz(arrival_ns=np.arange(3), gas_price=np.ones(3, np.int64), pools_x=np.arange(2))]


@given(data=st.one_of(mutated(NPZ_BASES), npz_archive(), odd_zip(), st.binary(max_size=256),
                      npz_archive().flatmap(lambda b: mutated([b]))))
@FUZZ
def test_fuzz_npz(workdir, put, data):
    path = workdir / "f.npz"
    put(path, data)
    check(path)


# ---- .csv: generated headers and cells, or raw text ------------------------------------------

_CELLS = st.one_of(
    st.integers(-2**70, 2**260).map(str),
    st.integers(0, 2**170).map(hex),
    st.sampled_from(["", "0x", "0x" + "11" * 20, "0x" + "22" * 32, "0x" + "ab" * 19, "1 2 3",
                     "0,1", "1 2 3 4 5 6 7 8 9", "70000", "-1", "1_000", "0b101", " 7 ", "nan",
                     "\x00", '"', "1e3", "٣", "0x" + "zz" * 20]),
    st.text(max_size=12),
)
_HEADERS = st.lists(st.sampled_from(list(TX_DTYPE.names) + ["bogus", "", " id"]), min_size=0,
                    max_size=6)


@st.composite
def csv_text(draw):
    header = draw(_HEADERS)
    rows = draw(st.lists(st.lists(_CELLS, min_size=0, max_size=len(header) + 1), max_size=4))
    if draw(st.booleans()):
        buf = io.StringIO()
        w = csv.writer(buf)
        w.writerow(header)
        w.writerows(rows)
        return buf.getvalue()
    return "\n".join(",".join(r) for r in [header, *rows])


@given(data=st.one_of(csv_text().map(lambda t: t.encode("utf-8", "surrogatepass")),
                      st.binary(max_size=128),
                      csv_text().map(lambda t: t.encode("utf-8", "surrogatepass")).flatmap(
                          lambda b: mutated([b]))))
@FUZZ
def test_fuzz_csv(workdir, put, data):
    path = workdir / "f.csv"
    put(path, data)
    check(path)
