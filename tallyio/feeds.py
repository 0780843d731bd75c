"""Feed sources: recorded files, a seeded synthetic generator, any Python iterable.

A source is an iterable of ``TX_DTYPE`` chunks whose ``arrival_ns`` column holds each row's offset
in ns from the start of the feed; the engine paces replay by it (at recorded speed, a multiple of
it, or as fast as possible) and stamps the real arrival time at ingest.

Feed files
----------
``.npz``
    Either one array ``records`` of dtype ``TX_DTYPE``, or columnar: one array per ``TX_DTYPE``
    field, named after it, each of length n (``amount_*`` of shape (n, 4) uint64 words; addresses
    (n, 20) uint8; ``tx_hash`` (n, 32) uint8). Missing columns are zero; a missing ``id`` is
    0..n-1. Any other array in the file (for example ``pools_*``, the pool table of a synthetic
    market) becomes the source's ``metadata`` for processors.
``.npy``
    One structured array of dtype ``TX_DTYPE``.
``.csv``
    A header of field names; integers in decimal (amounts exact, any size), addresses and hashes in
    0x-hex. Missing columns are zero.
``.parquet``
    Columns as in CSV, read with pyarrow when it is installed.

Every file is validated before the engine starts, and a malformed one is rejected with a
``FeedError`` naming the file, the row and the field: offsets must be non-negative and
non-decreasing, protocols known, a swap's tokens different, 64-bit keys consistent with addresses
(keys left at zero are derived from the addresses).
"""
from __future__ import annotations

import csv
import os
from typing import Iterable, Iterator

import numpy as np

from tallyio.errors import TallyIOError
from tallyio.record import (PROTOCOL_NAMES, PROTOCOL_UNKNOWN, TX_DTYPE, int_to_u256)

ADDRESS_FIELDS = ("sender", "recipient", "pool", "token_in", "token_out")
KEY_OF = {"sender": "sender_key", "pool": "pool_key", "token_in": "token_in_key",
          "token_out": "token_out_key"}
AMOUNT_FIELDS = ("amount_in", "amount_out", "amount_out_min")
FEED_SUFFIXES = (".npz", ".npy", ".csv", ".parquet")


class FeedError(TallyIOError, ValueError):
    """A feed that does not validate; the message names the file, the row and the field."""


def address_keys(addresses: np.ndarray) -> np.ndarray:
    """Vectorized ``record.address_key``: the last 8 bytes of each 20-byte address, big-endian."""
    a = np.ascontiguousarray(addresses, dtype=np.uint8).reshape(-1, 20)[:, 12:]
    return a.copy().view(">u8").reshape(-1).astype(np.uint64)


def validate(records: np.ndarray, where: str) -> np.ndarray:
    """Check a record array; fill keys left at zero from the addresses. Returns the array."""
    if records.dtype != TX_DTYPE:
        raise FeedError(f"{where}: records must have dtype TX_DTYPE, got {records.dtype}")
    if records.ndim != 1:
        raise FeedError(f"{where}: records must be one-dimensional, got shape {records.shape}")
    off = records["arrival_ns"]
    bad = np.flatnonzero(off < 0)
    if bad.size:
        raise FeedError(f"{where}: row {bad[0]} field arrival_ns: offset must be >= 0, "
                        f"got {off[bad[0]]}")
    bad = np.flatnonzero(np.diff(off) < 0)
    if bad.size:
        i = bad[0] + 1
        raise FeedError(f"{where}: row {i} field arrival_ns: offsets must not decrease "
                        f"({off[i]} after {off[i - 1]})")
    bad = np.flatnonzero(~np.isin(records["protocol"], list(PROTOCOL_NAMES)))
    if bad.size:
        raise FeedError(f"{where}: row {bad[0]} field protocol: unknown protocol "
                        f"{records['protocol'][bad[0]]} (known: {PROTOCOL_NAMES})")
    for addr, key in KEY_OF.items():
        derived = address_keys(records[addr])
        given = records[key]
        fill = given == 0
        records[key][fill] = derived[fill]
        bad = np.flatnonzero(~fill & (given != derived))
        if bad.size:
            raise FeedError(f"{where}: row {bad[0]} field {key}: {int(given[bad[0]]):#x} is not "
                            f"the key of {addr} (expected {int(derived[bad[0]]):#x})")
    swaps = records["protocol"] != PROTOCOL_UNKNOWN
    same = swaps & np.all(records["token_in"] == records["token_out"], axis=1)
    bad = np.flatnonzero(same)
    if bad.size:
        raise FeedError(f"{where}: row {bad[0]} field token_out: a swap's token_out must differ "
                        f"from its token_in")
    return records


def _from_columns(cols: dict, n: int, where: str) -> np.ndarray:
    out = np.zeros(n, dtype=TX_DTYPE)
    out["id"] = np.arange(n)
    for name, col in cols.items():
        ftype = TX_DTYPE.fields[name][0]
        want = (n,) + ftype.shape
        col = np.asarray(col)
        if col.shape != want:
            raise FeedError(f"{where}: field {name} must have shape {want}, got {col.shape}")
        base = ftype.base
        if col.dtype.kind not in "iub":
            raise FeedError(f"{where}: field {name} must hold integers castable to {base}, "
                            f"got {col.dtype}")
        info = np.iinfo(base)
        bad = (col < info.min) | (col > info.max) if col.size else col.astype(bool)
        if bad.any():
            i = int(np.flatnonzero(bad.reshape(n, -1).any(axis=1))[0])
            raise FeedError(f"{where}: row {i} field {name}: outside [{info.min}, {info.max}]")
        out[name] = col
    return out


def _parse_int(text: str, where: str, row: int, field: str) -> int:
    try:
        return int(text, 0)
    except ValueError:
        raise FeedError(f"{where}: row {row} field {field}: not an integer: {text!r}") from None


def _parse_hex(text: str, nbytes: int, where: str, row: int, field: str) -> bytes:
    h = text[2:] if text[:2].lower() == "0x" else text
    try:
        b = bytes.fromhex(h)
    except ValueError:
        b = b""
    if len(b) != nbytes:
        raise FeedError(f"{where}: row {row} field {field}: expected {nbytes} bytes of hex, "
                        f"got {text!r}")
    return b


def _rows_to_records(rows: list[dict], where: str) -> np.ndarray:
    n = len(rows)
    out = np.zeros(n, dtype=TX_DTYPE)
    out["id"] = np.arange(n)
    for i, row in enumerate(rows):
        for field, text in row.items():
            if field not in TX_DTYPE.names:
                raise FeedError(f"{where}: unknown column {field!r} (fields: {', '.join(TX_DTYPE.names)})")
            if text is None or text == "":
                continue
            text = str(text).strip()
            if field in ADDRESS_FIELDS:
                out[field][i] = np.frombuffer(_parse_hex(text, 20, where, i, field), np.uint8)
            elif field == "tx_hash":
                out[field][i] = np.frombuffer(_parse_hex(text, 32, where, i, field), np.uint8)
            elif field in AMOUNT_FIELDS:
                v = _parse_int(text, where, i, field)
                if not 0 <= v < 1 << 256:
                    raise FeedError(f"{where}: row {i} field {field}: must be in [0, 2**256), got {v}")
                out[field][i] = int_to_u256(v)
            elif field == "trace_address":
                parts = [p for p in text.replace(",", " ").split() if p]
                out[field][i, :len(parts)] = [_parse_int(p, where, i, field) for p in parts]
            else:
                v = _parse_int(text, where, i, field)
                info = np.iinfo(TX_DTYPE.fields[field][0])
                if not info.min <= v <= info.max:
                    raise FeedError(f"{where}: row {i} field {field}: {v} is outside "
                                    f"[{info.min}, {info.max}]")
                out[field][i] = v
    return out


def read_feed(path: str | os.PathLike) -> tuple[np.ndarray, dict]:
    """Load and validate a feed file; returns ``(records, metadata)``."""
    path = os.fspath(path)
    where = path
    suffix = os.path.splitext(path)[1].lower()
    if not os.path.exists(path):
        raise FeedError(f"{where}: feed file not found")
    meta: dict = {}
    if suffix == ".npz":
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
        if "records" in arrays:
            records = arrays.pop("records")
            if records.dtype != TX_DTYPE:
                raise FeedError(f"{where}: array 'records' must have dtype TX_DTYPE, got {records.dtype}")
            records = records.copy()
        else:
            cols = {k: arrays.pop(k) for k in list(arrays) if k in TX_DTYPE.names}
            if not cols:
                raise FeedError(f"{where}: no 'records' array and no TX_DTYPE field columns")
            n = len(next(iter(cols.values())))
            records = _from_columns(cols, n, where)
        meta = arrays
    elif suffix == ".npy":
        records = np.load(path, allow_pickle=False)
        if records.dtype != TX_DTYPE:
            raise FeedError(f"{where}: array must have dtype TX_DTYPE, got {records.dtype}")
    elif suffix == ".csv":
        with open(path, newline="") as f:
            records = _rows_to_records(list(csv.DictReader(f)), where)
    elif suffix == ".parquet":
        try:
            import pyarrow.parquet as pq
        except ImportError:
            raise FeedError(f"{where}: reading Parquet needs pyarrow (pip install pyarrow)") from None
        records = _rows_to_records(pq.read_table(path).to_pylist(), where)
    else:
        raise FeedError(f"{where}: unknown feed format {suffix!r} (known: {', '.join(FEED_SUFFIXES)})")
    return validate(records, where), meta


def write_feed(path: str | os.PathLike, records: np.ndarray, **metadata: np.ndarray) -> None:
    """Write records (and metadata arrays) as a columnar ``.npz`` feed."""
    validate(records.copy(), os.fspath(path))
    cols = {name: records[name] for name in TX_DTYPE.names}
    np.savez_compressed(path, **cols, **metadata)


class FileSource:
    """Replays a recorded feed file, in chunks of ``chunk`` rows."""

    replay = True  # see Engine: an as-fast-as-possible replay does not age rows out

    def __init__(self, path, chunk: int = 4096):
        if chunk < 1:
            raise ValueError(f"chunk must be >= 1, got {chunk}")
        self.path = os.fspath(path)
        self.records, self.metadata = read_feed(self.path)
        self.chunk = chunk

    @staticmethod
    def accepts(path) -> bool:
        return os.path.isfile(path) and os.path.splitext(os.fspath(path))[1].lower() in FEED_SUFFIXES

    def __len__(self) -> int:
        return len(self.records)

    def __iter__(self) -> Iterator[np.ndarray]:
        for i in range(0, len(self.records), self.chunk):
            yield self.records[i:i + self.chunk]


class IterableSource:
    """Wraps a Python iterable of ``TX_DTYPE`` rows or arrays (validated chunk by chunk)."""

    def __init__(self, iterable: Iterable, chunk: int = 1024, metadata: dict | None = None,
                 replay: bool = False):
        if chunk < 1:
            raise ValueError(f"chunk must be >= 1, got {chunk}")
        self.replay = replay
        self.iterable = iterable
        self.chunk = chunk
        self.metadata = metadata or {}

    def __iter__(self) -> Iterator[np.ndarray]:
        pending: list = []
        n = 0
        last = 0
        for item in self.iterable:
            a = np.asarray(item)
            if a.dtype != TX_DTYPE:
                raise FeedError(f"<iterable>: item {n} must be TX_DTYPE rows, got dtype {a.dtype}")
            pending.append(a.reshape(-1))
            n += a.size
            if sum(p.size for p in pending) >= self.chunk:
                chunk = validate(np.concatenate(pending), "<iterable>")
                if chunk["arrival_ns"][0] < last:
                    raise FeedError("<iterable>: field arrival_ns: offsets must not decrease")
                last = chunk["arrival_ns"][-1]
                pending = []
                yield chunk
        if pending:
            yield validate(np.concatenate(pending), "<iterable>")


class SyntheticSource:
    """A seeded synthetic market and pending-swap stream with planted opportunities.

    ``rate`` (tx/s) sets the arrival schedule; ``metadata`` carries the market's pool table for the
    strategies and ``planted`` the ground truth.
    """

    replay = True

    def __init__(self, seed: int = 0, n: int = 100_000, rate: float = 100_000.0,
                 plant_arbitrage: int = 10, plant_sandwich: int = 10, chunk: int = 4096,
                 **market_options):
        from tallyio import synthetic
        if n < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        if rate <= 0:
            raise ValueError(f"rate must be > 0 tx/s, got {rate}")
        market = synthetic.Market(seed=seed, **market_options)
        self.records, self.planted = synthetic.generate_feed(
            seed, n, market, plant_arbitrage=plant_arbitrage, plant_sandwich=plant_sandwich,
            rate=rate)
        validate(self.records, "<synthetic>")
        self.metadata = market.to_arrays()
        self.chunk = chunk

    def __len__(self) -> int:
        return len(self.records)

    def __iter__(self) -> Iterator[np.ndarray]:
        for i in range(0, len(self.records), self.chunk):
            yield self.records[i:i + self.chunk]
