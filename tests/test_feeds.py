"""Feed files: formats, validation with row and field, sources."""
import io
import zipfile

import numpy as np
import pytest

from tallyio.errors import ConfigError
from tallyio.feeds import (FeedError, FileSource, IterableSource, SyntheticSource, address_keys,
                           read_feed, validate, write_feed)
from tallyio.record import (PROTOCOL_UNISWAP_V2, TX_DTYPE, address_bytes, address_key,
                            int_to_u256, u256_to_int)

A = "0x" + "11" * 20
B = "0x" + "22" * 19 + "ab"


def good(n=5):
    r = np.zeros(n, dtype=TX_DTYPE)
    r["arrival_ns"] = np.arange(n) * 1000
    r["protocol"] = PROTOCOL_UNISWAP_V2
    r["token_in"] = np.frombuffer(address_bytes(A), np.uint8)
    r["token_out"] = np.frombuffer(address_bytes(B), np.uint8)
    r["amount_in"] = int_to_u256(3 * 10**24)
    return r


def test_address_keys_match_scalar():
    addrs = np.random.default_rng(1).integers(0, 256, (50, 20), dtype=np.uint8)
    keys = address_keys(addrs)
    assert [int(k) for k in keys] == [address_key(bytes(a)) for a in addrs]


def test_validate_fills_keys():
    r = validate(good(), "x")
    assert int(r["token_out_key"][0]) == address_key(B)


def test_npz_roundtrip_columnar(tmp_path):
    r = good()
    p = tmp_path / "f.npz"
    write_feed(p, r, pools_reserve0=np.arange(3))
    got, meta = read_feed(p)
    assert u256_to_int(got["amount_in"][2]) == 3 * 10**24
    assert list(meta) == ["pools_reserve0"]
    src = FileSource(p, chunk=2)
    assert [len(c) for c in src] == [2, 2, 1] and len(src) == 5
    assert FileSource.accepts(p) and not FileSource.accepts(tmp_path)


def test_npz_records_array_and_npy(tmp_path):
    r = good()
    np.savez(tmp_path / "r.npz", records=r)
    assert len(read_feed(tmp_path / "r.npz")[0]) == 5
    np.save(tmp_path / "r.npy", r)
    assert len(read_feed(tmp_path / "r.npy")[0]) == 5
    np.save(tmp_path / "bad.npy", np.arange(3))
    with pytest.raises(FeedError, match="must have dtype TX_DTYPE, got int64"):
        read_feed(tmp_path / "bad.npy")


def test_csv(tmp_path):
    p = tmp_path / "f.csv"
    p.write_text("arrival_ns,protocol,token_in,token_out,amount_in,gas_price,trace_address\n"
                 f"0,1,{A},{B},{2**200},30000000000,0 2 1\n"
                 f"10,1,{A},{B},5,1,\n")
    r, _ = read_feed(p)
    assert u256_to_int(r["amount_in"][0]) == 2**200
    assert r["gas_price"][0] == 30_000_000_000
    assert r["trace_address"][0, :3].tolist() == [0, 2, 1]


@pytest.mark.parametrize("line, message", [
    (f"10,1,{A},{B},abc", r"row 1 field amount_in: not an integer: 'abc'"),
    (f"10,1,{A},0x12,5", r"row 1 field token_out: expected 20 bytes of hex, got '0x12'"),
    (f"10,1,{A},{B},-5", r"row 1 field amount_in: must be in \[0, 2\*\*256\)"),
    (f"10,9,{A},{B},5", r"row 1 field protocol: unknown protocol 9"),
    (f"10,1,{A},{A},5", r"row 1 field token_out: a swap's token_out must differ"),
    (f"-1,1,{A},{B},5", r"row 1 field arrival_ns: offset must be >= 0"),
    (f"10,300,{A},{B},5", r"row 1 field protocol: 300 is outside \[0, 255\]"),
])
def test_csv_errors_name_row_and_field(tmp_path, line, message):
    p = tmp_path / "bad.csv"
    p.write_text(f"arrival_ns,protocol,token_in,token_out,amount_in\n0,1,{A},{B},1\n{line}\n")
    with pytest.raises(FeedError, match=message):
        read_feed(p)


def test_decreasing_offsets_and_bad_keys():
    r = good()
    r["arrival_ns"][3] = 0
    with pytest.raises(FeedError, match=r"row 3 field arrival_ns: offsets must not decrease"):
        validate(r, "x")
    r = good()
    r["pool_key"][2] = 7
    with pytest.raises(FeedError, match=r"row 2 field pool_key: 0x7 is not the key of pool"):
        validate(r, "x")


def test_columnar_errors(tmp_path):
    p = tmp_path / "c.npz"
    np.savez(p, arrival_ns=np.arange(3), amount_in=np.zeros((3, 2), np.uint64))
    with pytest.raises(FeedError, match=r"field amount_in must have shape \(3, 4\), got \(3, 2\)"):
        read_feed(p)
    np.savez(p, gas_price=np.array([1, -2, 3]))
    with pytest.raises(FeedError, match=r"row 1 field gas_price: outside \[0, 18446744073709551615\]"):
        read_feed(p)
    np.savez(p, gas_price=np.array([1.5]))
    with pytest.raises(FeedError, match=r"field gas_price must hold integers"):
        read_feed(p)
    np.savez(p, other=np.arange(3))
    with pytest.raises(FeedError, match="no 'records' array"):
        read_feed(p)


def test_unknown_format_and_missing(tmp_path):
    with pytest.raises(FeedError, match="feed file not found"):
        read_feed(tmp_path / "nope.npz")
    (tmp_path / "f.txt").write_text("x")
    with pytest.raises(FeedError, match="unknown feed format '.txt'"):
        read_feed(tmp_path / "f.txt")


def test_iterable_source_checks_dtype():
    later = good(2)
    later["arrival_ns"] += 10_000
    src = IterableSource([good(3), later], chunk=4)
    assert sum(len(c) for c in src) == 5
    with pytest.raises(FeedError, match="item 0 must be TX_DTYPE rows"):
        list(IterableSource([np.arange(3)]))
    with pytest.raises(ConfigError, match=r"chunk must be an int in \[1, 16777216\], got 0"):
        IterableSource([], chunk=0)


@pytest.mark.parametrize("options, message", [
    ({"chunk": "big"}, r"chunk must be an int in \[1, 16777216\], got 'big'"),
    ({"n": 2**40}, r"n must be an int in \[1, 16777216\], got 1099511627776"),
    ({"rate": float("nan")}, r"rate must be in \(0, 1e9\] tx/s, got nan"),
    ({"rate": float("inf")}, r"rate must be in \(0, 1e9\] tx/s, got inf"),
    ({"n": 5, "plant_arbitrage": 2, "plant_sandwich": 1}, r"synthetic source: n must be at least"),
    ({"n_tokens": "six"}, r"synthetic source: n_tokens must be an int >= 2, got 'six'"),
])
def test_synthetic_source_options_are_config_errors(options, message):
    with pytest.raises(ConfigError, match=message):
        SyntheticSource(**options)
    with pytest.raises(ConfigError, match=r"chunk must be an int in \[1, 16777216\], got 0"):
        FileSource("any.npz", chunk=0)  # checked before the file is read


def _npy_bytes(a) -> bytes:
    buf = io.BytesIO()
    np.save(buf, a)
    return buf.getvalue()


def test_truncated_npz_names_the_file(tmp_path):
    whole = tmp_path / "whole.npz"
    write_feed(whole, good(50))
    data = whole.read_bytes()
    for cut in (100, len(data) // 2, len(data) - 30):
        p = tmp_path / "cut.npz"
        p.write_bytes(data[:cut])
        with pytest.raises(FeedError, match=rf"^{p}: not a .npz file \(not a zip archive\)"):
            read_feed(p)


def test_random_bytes_name_the_file(tmp_path):
    noise = np.random.default_rng(7).integers(0, 256, 4096, dtype=np.uint8).tobytes()
    for name, message in [("r.npz", r"not a .npz file"), ("r.npy", r"not a .npy array"),
                          ("r.csv", r"unreadable .csv file: UnicodeDecodeError")]:
        p = tmp_path / name
        p.write_bytes(noise)
        with pytest.raises(FeedError, match=rf"^{p}: {message}"):
            read_feed(p)


def test_damaged_npz_member_names_the_file_and_member(tmp_path):
    p = tmp_path / "f.npz"
    write_feed(p, good(50))
    data = bytearray(p.read_bytes())
    start = data.index(b"amount_in.npy") + len("amount_in.npy")  # inside the compressed stream
    data[start + 20:start + 40] = bytes(20)
    p.write_bytes(bytes(data))
    with pytest.raises(FeedError, match=rf"^{p}: member 'amount_in.npy'"):
        read_feed(p)


def test_npy_header_claiming_more_than_the_file_holds(tmp_path):
    p = tmp_path / "big.npy"
    header = _npy_bytes(good(2))
    # the same header text with a shape of 2**40 rows: refused before anything is allocated
    p.write_bytes(header.replace(b"(2,)", b"(1099511627776,)", 1))
    with pytest.raises(FeedError, match=rf"^{p}: truncated: its header says \(1099511627776,\)"):
        read_feed(p)
    p.write_bytes(_npy_bytes(good(4))[:-100])
    with pytest.raises(FeedError, match=rf"^{p}: truncated"):
        read_feed(p)
    p.write_bytes(header.replace(b"(2,)", b"(-2,)", 1))
    with pytest.raises(FeedError, match=rf"^{p}: bad .npy header: negative dimension"):
        read_feed(p)


def test_pickled_objects_and_wrong_containers(tmp_path):
    p = tmp_path / "o.npy"
    np.save(p, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(FeedError, match=rf"^{p}: holds Python objects"):
        read_feed(p)
    z = tmp_path / "z.npy"
    np.savez(tmp_path / "z.npz", records=good())
    z.write_bytes((tmp_path / "z.npz").read_bytes())  # a zip archive named .npy
    with pytest.raises(FeedError, match=rf"^{z}: not a .npy array"):
        read_feed(z)
    n = tmp_path / "n.npz"
    n.write_bytes(_npy_bytes(good()))  # an .npy named .npz
    with pytest.raises(FeedError, match=rf"^{n}: not a .npz file"):
        read_feed(n)
    with zipfile.ZipFile(n, "w") as zf:
        zf.writestr("records.npy", _npy_bytes(good()))
        zf.writestr("notes.txt", "hello")
    with pytest.raises(FeedError, match=rf"^{n}: member 'notes.txt' is not a .npy array"):
        read_feed(n)
    np.savez(n, gas_price=np.array(5))
    with pytest.raises(FeedError, match=rf"^{n}: field gas_price must be a column of rows, got a scalar"):
        read_feed(n)
    d = tmp_path / "dir.npz"
    d.mkdir()
    with pytest.raises(FeedError, match=rf"^{d}: not a file"):
        read_feed(d)


@pytest.mark.parametrize("text", [
    "arrival_ns,protocol,token_in,token_out,amount_in\n",   # a header and no rows
    "",                                                     # nothing at all
])
def test_csv_of_only_a_header_is_an_empty_feed(tmp_path, text):
    p = tmp_path / "h.csv"
    p.write_text(text)
    with pytest.raises(FeedError, match=rf"^{p}: an empty feed \(no rows\)"):
        read_feed(p)


def test_empty_npz_and_npy_are_empty_feeds(tmp_path):
    np.save(tmp_path / "e.npy", good(0))
    np.savez(tmp_path / "e.npz", records=good(0))
    for name in ("e.npy", "e.npz"):
        with pytest.raises(FeedError, match=r"an empty feed \(no rows\)"):
            read_feed(tmp_path / name)


@pytest.mark.parametrize("line, message", [
    (f"10,1,{A},{B},5,7", r"row 1: 1 more value\(s\) than the header has columns"),
])
def test_csv_more_values_than_columns(tmp_path, line, message):
    p = tmp_path / "bad.csv"
    p.write_text(f"arrival_ns,protocol,token_in,token_out,amount_in\n0,1,{A},{B},1\n{line}\n")
    with pytest.raises(FeedError, match=message):
        read_feed(p)


@pytest.mark.parametrize("value, message", [
    ("1 2 3 4 5 6 7 8 9", r"row 0 field trace_address: at most 8 levels, got 9"),
    ("1 70000", r"row 0 field trace_address: level 70000 is outside \[0, 65535\]"),
    ("1 -1", r"row 0 field trace_address: level -1 is outside"),
])
def test_csv_trace_address_bounds(tmp_path, value, message):
    p = tmp_path / "t.csv"
    p.write_text(f"arrival_ns,trace_address\n0,{value}\n")
    with pytest.raises(FeedError, match=message):
        read_feed(p)


def test_csv_field_over_the_csv_module_limit(tmp_path):
    p = tmp_path / "long.csv"
    p.write_text("arrival_ns,amount_in\n0," + "1" * 200_000 + "\n")
    with pytest.raises(FeedError, match=rf"^{p}: unreadable .csv file: csv.Error: field larger than field limit"):
        read_feed(p)


def test_fuzz_findings(tmp_path):
    """Inputs the fuzzers (tests/fuzz) found raising something other than a FeedError."""
    p = tmp_path / "scalar.npy"
    np.save(p, good(1)[0])  # a 0-d array of one record
    with pytest.raises(FeedError, match=r"records must be one-dimensional, got shape \(\)"):
        read_feed(p)
    p.write_bytes(_npy_bytes(good(1)).replace(b"'shape': (1,), }", b"'shape': (1,  }", 1))
    # numpy's header parser fails through Python's tokenizer, whose error differs by version
    # (TokenError on 3.11+, ValueError on 3.10): what matters is one FeedError naming the file
    with pytest.raises(FeedError, match=r"scalar.npy: bad .npy header: (TokenError|ValueError|SyntaxError)"):
        read_feed(p)
    z = tmp_path / "bool.npz"
    np.savez(z, id=np.array([False, True]), arrival_ns=np.array([0, 1]))
    assert read_feed(z)[0]["id"].tolist() == [0, 1]  # a bool column is castable, not an overflow
    data = bytearray((tmp_path / "bool.npz").read_bytes())
    central = data.index(b"PK\x01\x02")
    data[central + 6] = 109  # "version needed to extract": 10.9
    z.write_bytes(bytes(data))
    with pytest.raises(FeedError, match=r"not a .npz file NumPy wrote: NotImplementedError: zip file "
                                        r"version 10.9"):
        read_feed(z)
