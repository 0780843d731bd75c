"""Feed files: formats, validation with row and field, sources."""
import numpy as np
import pytest

from tallyio.feeds import (FeedError, FileSource, IterableSource, address_keys, read_feed,
                           validate, write_feed)
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
    with pytest.raises(ValueError, match="chunk must be >= 1, got 0"):
        IterableSource([], chunk=0)
