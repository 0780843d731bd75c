"""What travels on the wire: subjects, streams, the batch message format, the partition key.

A batch message is a 24-byte header and the raw bytes of ``rows`` rows of ``TX_DTYPE``:

=======  ======  ===========================================================================
offset   type    field
=======  ======  ===========================================================================
0        4s      magic ``b"TXB1"``
4        u16     record version (``RECORD_VERSION``: bumped whenever ``TX_DTYPE`` changes)
6        u16     flags (``FLAG_END``: the partition's end-of-stream marker, no rows)
8        u32     rows
12       u32     partition
16       u64     the message's sequence number within its partition, from 1
=======  ======  ===========================================================================

Little-endian. The per-partition sequence lets a consumer tell a redelivery (below the next
expected) from a gap (above it) without trusting the broker's delivery order across reconnects.
"""
from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass
from urllib.parse import urlsplit

import numpy as np

from tallyio.errors import ConfigError
# the version of TX_DTYPE's layout the rows travel in; a consumer refuses any other
from tallyio.record import RECORD_VERSION, TX_DTYPE
MAGIC = b"TXB1"
HEADER = struct.Struct("<4sHHIIQ")
FLAG_END = 1

TX_STREAM = "TALLYIO_TX"
TX_SUBJECT = "tallyio.tx"            # tallyio.tx.<partition>
META_SUBJECT = "tallyio.meta"        # the feed's metadata and partition count, one message
OPS_STREAM = "TALLYIO_OPPORTUNITIES"
OPS_SUBJECT = "tallyio.opportunities"
DONE_SUBJECT = "tallyio.opportunities.done"  # an engine's partitions, after its last result
DEAD_STREAM = "TALLYIO_DEAD"
DEAD_SUBJECT = "tallyio.dead"        # tallyio.dead.<partition>: malformed batch messages
MAX_PARTITIONS = 4096


class MalformedMessage(ValueError):
    """A batch message that cannot be decoded; ``reason`` is the ``errors`` counter it goes to."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class Batch:
    partition: int
    seq: int
    rows: np.ndarray  # TX_DTYPE, empty for the end marker
    end: bool


def encode(rows: np.ndarray, partition: int, seq: int, *, end: bool = False) -> bytes:
    """One batch message: the header and the rows' raw bytes (``end``: the end marker)."""
    rows = np.ascontiguousarray(rows, dtype=TX_DTYPE)
    return HEADER.pack(MAGIC, RECORD_VERSION, FLAG_END if end else 0, len(rows), partition,
                       seq) + rows.tobytes()


def decode(payload: bytes) -> Batch:
    """A ``Batch`` from a message payload; ``MalformedMessage`` naming what is wrong."""
    if len(payload) < HEADER.size:
        raise MalformedMessage("bad_size", f"message of {len(payload)} bytes is shorter than "
                                           f"the {HEADER.size}-byte header")
    magic, version, flags, n, partition, seq = HEADER.unpack_from(payload)
    if magic != MAGIC:
        raise MalformedMessage("bad_magic", f"magic must be {MAGIC!r}, got {magic!r}")
    if version != RECORD_VERSION:
        raise MalformedMessage("bad_version", f"record version must be {RECORD_VERSION}, got "
                                              f"{version}")
    want = HEADER.size + n * TX_DTYPE.itemsize
    if len(payload) != want:
        raise MalformedMessage("bad_size", f"{n} rows need {want} bytes, got {len(payload)}")
    if flags & FLAG_END and n:
        raise MalformedMessage("bad_header", f"an end marker carries no rows, got {n}")
    rows = np.frombuffer(payload, dtype=TX_DTYPE, count=n, offset=HEADER.size).copy()
    return Batch(partition, seq, rows, bool(flags & FLAG_END))


def partition_of(rows: np.ndarray, partitions: int) -> np.ndarray:
    """Each row's partition in ``[0, partitions)``: a stable hash (BLAKE2b of the two token
    addresses, lower first) of the row's token pair. Every pool of a pair lands together, so a
    strategy that compares the pools of one pair (the arbitrage screen) and one that follows one
    pool (the sandwich screen) see in one shard everything the single engine sees. Not Python's
    ``hash()``: that differs between processes."""
    if not 1 <= partitions <= MAX_PARTITIONS:
        raise ConfigError(f"partitions must be in [1, {MAX_PARTITIONS}], got {partitions!r}")
    a, b = rows["token_in"], rows["token_out"]
    a_first = _less(a, b)[:, None]
    lo, hi = np.where(a_first, a, b), np.where(a_first, b, a)
    pair = np.ascontiguousarray(np.concatenate([lo, hi], axis=1))
    uniq, inverse = np.unique(pair, axis=0, return_inverse=True)
    part = np.array([int.from_bytes(hashlib.blake2b(u.tobytes(), digest_size=8).digest(),
                                    "little") % partitions for u in uniq], dtype=np.uint32)
    return part[inverse.reshape(-1)]


def _less(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise ``bytes(a[i]) <= bytes(b[i])`` of two (n, 20) uint8 arrays."""
    diff = a != b
    first = np.argmax(diff, axis=1)
    idx = np.arange(len(a))
    return ~diff.any(axis=1) | (a[idx, first] < b[idx, first])


def parse_partitions(spec, total: int | None = None) -> list[int]:
    """``"0-3"``, ``"0,2,5"``, ``"0-1,4"``, an int or a list of ints -> sorted partition numbers.

    Raises ``ConfigError`` naming ``partitions`` and the value when it does not parse, is empty,
    or (given ``total``) names a partition outside ``[0, total)``.
    """
    def bad(why):
        return ConfigError(f"partitions {spec!r}: {why} (write e.g. 0-3 or 0,2,5)")
    if isinstance(spec, bool):
        raise bad("not a partition list")
    if isinstance(spec, int):
        out = {spec}
    elif isinstance(spec, (list, tuple)):
        if not all(isinstance(p, int) and not isinstance(p, bool) for p in spec):
            raise bad("not a list of integers")
        out = set(spec)
    elif isinstance(spec, str):
        out = set()
        for part in spec.replace(" ", "").split(","):
            lo, sep, hi = part.partition("-")
            if not lo.isdigit() or (sep and not hi.isdigit()):
                raise bad(f"{part!r} is not N or N-M")
            a, b = int(lo), int(hi) if sep else int(lo)
            if b < a:
                raise bad(f"{part!r} runs backwards")
            if b - a >= MAX_PARTITIONS:
                raise bad(f"{part!r} spans more than {MAX_PARTITIONS} partitions")
            out.update(range(a, b + 1))
    else:
        raise bad("not a partition list")
    if not out:
        raise bad("no partition")
    if min(out) < 0:
        raise bad(f"partition {min(out)} is negative")
    if total is not None and max(out) >= total:
        raise bad(f"partition {max(out)} is not in [0, {total}) (the stream was published with "
                  f"{total} partitions)")
    return sorted(out)


def server_url(url: str) -> str:
    """``nats://HOST:PORT`` checked; ``ConfigError`` naming the value otherwise."""
    if not isinstance(url, str):
        raise ConfigError(f"url must be a nats://HOST:PORT string, got {url!r}")
    try:
        u = urlsplit(url)
        port = u.port
    except ValueError:
        port = None
        u = None
    if u is None or u.scheme not in ("nats", "tls") or not u.hostname or port is None \
            or u.path not in ("", "/") or u.query:
        raise ConfigError(f"url must be nats://HOST:PORT, got {url!r}")
    return url.rstrip("/")


def is_nats_url(path) -> bool:
    return isinstance(path, str) and path.startswith(("nats://", "tls://"))
