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

A ``records`` array (``.npz``) or ``.npy`` array of an older record version (see
``tallyio.record``: version 1 has no ``tx_type``, ``max_fee_per_gas``,
``max_priority_fee_per_gas``) loads with those fields zero (``record.upgrade_records``); a
columnar file simply has no column for them (zero too). Any other structured dtype is a
``FeedError`` naming the field that does not fit.
``.csv``
    A header of field names; integers in decimal (amounts exact, any size), addresses and hashes in
    0x-hex. Missing columns are zero.
``.parquet``
    Columns as in CSV, read with pyarrow when it is installed.

Every file is validated before the engine starts, and a malformed one is rejected with a
``FeedError`` naming the file, the row and the field: offsets must be non-negative and
non-decreasing, protocols known, a swap's tokens different, 64-bit keys consistent with addresses
(keys left at zero are derived from the addresses). A file that cannot be read at all (truncated,
not the format its suffix says, an array header claiming more bytes than the file holds, pickled
objects) is a ``FeedError`` naming the file (and the ``.npz`` member), raised before anything of
the claimed size is allocated; so is a feed of no rows (a CSV of only a header, say).
"""
from __future__ import annotations

import csv
import math
import os
import tokenize
import zipfile
import zlib
from typing import Iterable, Iterator

import numpy as np
from numpy.lib import format as npy_format

from tallyio.errors import ConfigError, TallyIOError
from tallyio.record import (PROTOCOL_NAMES, PROTOCOL_UNKNOWN, RECORD_VERSION, TX_DTYPE,
                            int_to_u256, upgrade_records)

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
        if col.dtype.kind == "b":
            col = col.astype(np.uint8)  # a bool column compared with a uint64 bound overflows
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
            if field is None:  # csv.DictReader's key for the values past the header's columns
                raise FeedError(f"{where}: row {i}: {len(text)} more value(s) than the header "
                                f"has columns")
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
                depth = TX_DTYPE.fields[field][0].shape[0]
                if len(parts) > depth:
                    raise FeedError(f"{where}: row {i} field {field}: at most {depth} levels, "
                                    f"got {len(parts)}")
                levels = [_parse_int(p, where, i, field) for p in parts]
                bad = [v for v in levels if not 0 <= v <= 0xFFFF]
                if bad:
                    raise FeedError(f"{where}: row {i} field {field}: level {bad[0]} is outside "
                                    f"[0, 65535]")
                out[field][i, :len(parts)] = levels
            else:
                v = _parse_int(text, where, i, field)
                info = np.iinfo(TX_DTYPE.fields[field][0])
                if not info.min <= v <= info.max:
                    raise FeedError(f"{where}: row {i} field {field}: {v} is outside "
                                    f"[{info.min}, {info.max}]")
                out[field][i] = v
    return out


# what reading a damaged zip member can raise (a bad CRC or deflate stream, an encrypted or
# unsupported compression method, a short read)
_ZIP_ERRORS = (OSError, EOFError, zipfile.BadZipFile, zlib.error, NotImplementedError, RuntimeError)


def _read_npy(fp, size: int, where: str) -> np.ndarray:
    """One array in ``.npy`` format from the binary file ``fp``, which holds ``size`` bytes.

    The header's shape and dtype are checked against ``size`` before the array is allocated, so a
    damaged or hostile header cannot ask for terabytes; object (pickled) arrays are refused.
    """
    try:
        version = npy_format.read_magic(fp)
    except ValueError:
        raise FeedError(f"{where}: not a .npy array (no NumPy magic string)") from None
    if version not in ((1, 0), (2, 0)):
        raise FeedError(f"{where}: .npy format version {version} is not supported (1.0, 2.0)")
    try:
        if version == (1, 0):
            shape, fortran, dtype = npy_format.read_array_header_1_0(fp)
        else:
            shape, fortran, dtype = npy_format.read_array_header_2_0(fp)
    except (ValueError, SyntaxError, tokenize.TokenError) as e:  # a header numpy cannot parse
        raise FeedError(f"{where}: bad .npy header: {_describe(e)}") from None
    if any(d < 0 for d in shape):
        raise FeedError(f"{where}: bad .npy header: negative dimension in shape {shape}")
    if dtype.hasobject:
        raise FeedError(f"{where}: holds Python objects (dtype {dtype}), which a feed may not")
    count = math.prod(shape)
    nbytes = count * dtype.itemsize
    left = size - fp.tell()
    if max(nbytes, count) > left:  # zero-size items count one byte: no endless empty arrays
        raise FeedError(f"{where}: truncated: its header says {shape} of {dtype} ({nbytes} bytes) "
                        f"but {left} bytes follow")
    buf = bytearray(nbytes)
    got = fp.readinto(buf) if nbytes else 0
    if got != nbytes:
        raise FeedError(f"{where}: truncated: {got} of {nbytes} bytes of array data")
    return np.ndarray(shape, dtype=dtype, buffer=buf, order="F" if fortran else "C")


def _read_npz(path: str, where: str) -> dict[str, np.ndarray]:
    try:
        zf = zipfile.ZipFile(path)
    except zipfile.BadZipFile:
        raise FeedError(f"{where}: not a .npz file (not a zip archive)") from None
    except (NotImplementedError, ValueError, EOFError) as e:  # "zip file version 10.9"...
        raise FeedError(f"{where}: not a .npz file NumPy wrote: {_describe(e)}") from None
    arrays: dict[str, np.ndarray] = {}
    with zf:
        for info in zf.infolist():
            name = info.filename
            member = f"{where}: member {name!r}"
            if not name.endswith(".npy"):
                raise FeedError(f"{member} is not a .npy array")
            key = name[:-len(".npy")]
            if key in arrays:
                raise FeedError(f"{member} appears twice")
            try:
                with zf.open(info) as fp:
                    arrays[key] = _read_npy(fp, info.file_size, member)
            except _ZIP_ERRORS as e:  # a damaged archive: bad CRC, bad deflate stream, encrypted...
                raise FeedError(f"{member}: unreadable: {_describe(e)}") from None
    return arrays


def _describe(e: BaseException) -> str:
    """``e`` as one line: its type and its message."""
    text = " ".join(str(e).split())
    name = "csv.Error" if isinstance(e, csv.Error) else type(e).__name__
    return f"{name}: {text}" if text else name


def read_feed(path: str | os.PathLike) -> tuple[np.ndarray, dict]:
    """Load and validate a feed file; returns ``(records, metadata)``."""
    path = os.fspath(path)
    where = path
    suffix = os.path.splitext(path)[1].lower()
    if not os.path.exists(path):
        raise FeedError(f"{where}: feed file not found")
    if not os.path.isfile(path):
        raise FeedError(f"{where}: not a file")
    try:
        records, meta = _read_records(path, suffix, where)
    except (OSError, UnicodeDecodeError, csv.Error) as e:  # unreadable, not UTF-8, a bad CSV line
        raise FeedError(f"{where}: unreadable {suffix} file: {_describe(e)}") from None
    if records.ndim != 1:
        raise FeedError(f"{where}: records must be one-dimensional, got shape {records.shape}")
    if len(records) == 0:
        raise FeedError(f"{where}: an empty feed (no rows)")
    return validate(records, where), meta


def _upgrade(records: np.ndarray, where: str, what: str) -> np.ndarray:
    """``TX_DTYPE`` rows from a stored array of this or an older record version."""
    if records.dtype == TX_DTYPE:
        return records
    try:
        return upgrade_records(records)
    except ValueError as e:
        raise FeedError(f"{where}: {what} must have dtype TX_DTYPE, got {records.dtype} (record "
                        f"version {RECORD_VERSION} or an older version of it: {e})") from None


def _read_records(path: str, suffix: str, where: str) -> tuple[np.ndarray, dict]:
    meta: dict = {}
    if suffix == ".npz":
        arrays = _read_npz(path, where)
        if "records" in arrays:
            records = _upgrade(arrays.pop("records"), where, "array 'records'").copy()
        else:
            cols = {k: arrays.pop(k) for k in list(arrays) if k in TX_DTYPE.names}
            if not cols:
                raise FeedError(f"{where}: no 'records' array and no TX_DTYPE field columns")
            name, first = next(iter(cols.items()))
            if first.ndim == 0:
                raise FeedError(f"{where}: field {name} must be a column of rows, got a scalar")
            records = _from_columns(cols, len(first), where)
        meta = arrays
    elif suffix == ".npy":
        with open(path, "rb") as f:
            records = _read_npy(f, os.fstat(f.fileno()).st_size, where)
        records = _upgrade(records, where, "array")
    elif suffix == ".csv":
        with open(path, newline="", encoding="utf-8") as f:
            records = _rows_to_records(list(csv.DictReader(f)), where)
    elif suffix == ".parquet":
        try:
            import pyarrow.parquet as pq
        except ImportError:
            raise FeedError(f"{where}: reading Parquet needs pyarrow (pip install pyarrow)") from None
        records = _rows_to_records(pq.read_table(path).to_pylist(), where)
    else:
        raise FeedError(f"{where}: unknown feed format {suffix!r} (known: {', '.join(FEED_SUFFIXES)})")
    return records, meta


def write_feed(path: str | os.PathLike, records: np.ndarray, **metadata: np.ndarray) -> None:
    """Write records (and metadata arrays) as a columnar ``.npz`` feed."""
    validate(records.copy(), os.fspath(path))
    cols = {name: records[name] for name in TX_DTYPE.names}
    np.savez_compressed(path, **cols, **metadata)


def _int_option(name: str, value, low: int, high: int) -> int:
    """``value`` as a source option that must be an int in [low, high]; ConfigError otherwise."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not low <= value <= high:
        raise ConfigError(f"{name} must be an int in [{low}, {high}], got {value!r}")
    return int(value)


MAX_SYNTHETIC_ROWS = 1 << 24  # 5.5 GiB of records: the ring's bound too


class FileSource:
    """Replays a recorded feed file, in chunks of ``chunk`` rows."""

    replay = True  # see Engine: an as-fast-as-possible replay does not age rows out

    def __init__(self, path, chunk: int = 4096):
        self.chunk = _int_option("chunk", chunk, 1, 1 << 24)
        self.path = os.fspath(path)
        self.records, self.metadata = read_feed(self.path)

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
        self.chunk = _int_option("chunk", chunk, 1, 1 << 24)
        self.replay = replay
        self.iterable = iterable
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
    strategies and ``planted`` the ground truth. ``n`` is at most ``MAX_SYNTHETIC_ROWS`` (2**24);
    a bad option is a ``ConfigError`` naming it.
    """

    replay = True

    def __init__(self, seed: int = 0, n: int = 100_000, rate: float = 100_000.0,
                 plant_arbitrage: int = 10, plant_sandwich: int = 10, chunk: int = 4096,
                 **market_options):
        from tallyio import synthetic
        n = _int_option("n", n, 1, MAX_SYNTHETIC_ROWS)
        chunk = _int_option("chunk", chunk, 1, 1 << 24)
        if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0 < rate <= 1e9:
            raise ConfigError(f"rate must be in (0, 1e9] tx/s, got {rate!r}")
        try:
            market = synthetic.Market(seed=seed, **market_options)
            self.records, self.planted = synthetic.generate_feed(
                seed, n, market, plant_arbitrage=plant_arbitrage, plant_sandwich=plant_sandwich,
                rate=rate)
        except (TypeError, ValueError) as e:  # the generator's own checks of its options
            raise ConfigError(f"synthetic source: {e}") from None
        validate(self.records, "<synthetic>")
        self.metadata = market.to_arrays()
        self.chunk = chunk

    def __len__(self) -> int:
        return len(self.records)

    def __iter__(self) -> Iterator[np.ndarray]:
        for i in range(0, len(self.records), self.chunk):
            yield self.records[i:i + self.chunk]
