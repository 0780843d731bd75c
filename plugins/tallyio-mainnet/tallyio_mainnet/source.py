"""A TallyIO Source that replays mined blocks: one ``TX_DTYPE`` chunk of decoded swaps per block."""
from __future__ import annotations

import json
import logging
import os
import re
from collections import Counter
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from tallyio.errors import ConfigError
from tallyio.feeds import FeedError, validate
from tallyio_mainnet.decode import block_files, decode_block

log = logging.getLogger(__name__)

NS = 1_000_000_000
SLOT_S = 12.0  # Ethereum's slot time: the spacing assumed for blocks whose file has no timestamp
_SNIFF_BYTES = 4096
ON_BAD_FILE = ("skip", "fail")
_INT64_MAX = (1 << 63) - 1
_HEX = re.compile(r"0x[0-9a-fA-F]*\Z")
_ADDRESS = re.compile(r"0x[0-9a-fA-F]{40}\Z")
_HASH = re.compile(r"0x[0-9a-fA-F]{64}\Z")


def sample_dir() -> Path:
    """The directory of sample blocks shipped in this package (see ``data/ATTRIBUTION.md``)."""
    return Path(__file__).resolve().parent / "data"


class MainnetTraceSource:
    """Mined blocks replayed as a feed of decoded swaps, one chunk per block, in block order.

    ``path``: one block JSON file or a directory of ``<number>.json`` block files (read in block
    number order by file name); None replays the sample blocks shipped in the package.

    Each chunk is ``decode_block``'s records for one block (blocks without a swap yield no chunk;
    ``stats`` lists every block read). Its ``arrival_ns`` is the block's offset from the first
    block of the feed, in ns, the same for every row of the block: consecutive blocks are spaced
    by the difference of their timestamps, or ``slot_s`` per block number between them where a
    file has no ``block_timestamp`` (most mev-inspect fixtures), and no gap counts for more than
    ``max_gap_s`` (default one slot), so a directory of blocks years apart replays in seconds,
    not years; None keeps every gap. ``block_time`` holds the real timestamp, or 0 where the file
    has none.

    Every block file is read, checked (``check_block``) and decoded when the source is built,
    before the engine starts. A bad file (not JSON, truncated, not a block, a field of the wrong
    type) is, with ``on_bad_file="skip"`` (the default), logged as a warning naming the file and
    the fault, listed in ``bad_files`` (``(file, message)`` pairs) and counted in
    ``errors["bad_block_file"]`` (the engine shows ``errors`` among the report's rejected
    reasons), while the other files are replayed; with ``on_bad_file="fail"`` it raises a
    ``FeedError`` naming the file. A single block file that is bad, or a directory with no
    readable block file at all, is a ``FeedError`` in either mode.

    Raises ``FeedError`` for a path that is neither a block file nor such a directory, and
    ``ConfigError`` (a ``ValueError``) for a negative ``slot_s`` / ``max_gap_s`` or an unknown
    ``on_bad_file``.
    """

    replay = True  # a recorded feed: replayed as fast as possible, its rows never age out

    def __init__(self, path: str | os.PathLike | None = None, *, slot_s: float = SLOT_S,
                 max_gap_s: float | None = SLOT_S, on_bad_file: str = "skip") -> None:
        p = sample_dir() if path is None else Path(path)
        if not _nonnegative(slot_s):
            raise ConfigError(f"slot_s must be >= 0, got {slot_s!r}")
        if max_gap_s is not None and not _nonnegative(max_gap_s):
            raise ConfigError(f"max_gap_s must be >= 0 or None, got {max_gap_s!r}")
        if on_bad_file not in ON_BAD_FILE:
            raise ConfigError(f"on_bad_file must be 'skip' or 'fail', got {on_bad_file!r}")
        if not self.accepts(p):
            raise FeedError(f"path must be a block JSON file or a directory of <number>.json "
                            f"block files, got {str(path)!r}")
        self.path = p
        self.slot_s = float(slot_s)
        self.max_gap_s = None if max_gap_s is None else float(max_gap_s)
        self.on_bad_file = on_bad_file
        self.files = block_files(p) if p.is_dir() else [p]
        self.stats: list[dict] = []  # decode stats of each block read so far, in feed order
        self.errors: Counter = Counter()  # {"bad_block_file": n}
        self.bad_files: list[tuple[str, str]] = []
        self._blocks: list[tuple[Path, np.ndarray, dict, int, int]] = []
        for f in self.files:
            try:
                self._blocks.append((f, *_read_block(f)))
            except FeedError as e:
                if on_bad_file == "fail" or not p.is_dir():  # a single file is the whole feed
                    raise
                log.warning("%s (skipped: on_bad_file = 'skip')", e)
                self.bad_files.append((str(f), str(e)))
                self.errors["bad_block_file"] += 1
        if not self._blocks:
            first = self.bad_files[0][1] if self.bad_files else "no block files"
            raise FeedError(f"{p}: no readable block file ({len(self.bad_files)} bad; first: "
                            f"{first})")

    @staticmethod
    def accepts(path: str | os.PathLike) -> bool:
        """True for a block JSON file, or a directory holding at least one ``<number>.json``."""
        p = Path(path)
        if p.is_dir():
            return any(f.stem.isdigit() for f in p.glob("*.json"))
        if p.suffix != ".json" or not p.is_file():
            return False
        try:
            with open(p, "rb") as f:
                head = f.read(_SNIFF_BYTES)
        except OSError:
            return False
        return b'"block_number"' in head and b'"traces"' in head

    def __iter__(self) -> Iterator[np.ndarray]:
        offset_ns = 0
        previous = None  # (block number, timestamp or 0) of the block before
        for path, records, stats, number, timestamp in self._blocks:
            if previous is not None:
                offset_ns = min(offset_ns + self._gap_ns(previous, (number, timestamp)),
                                _INT64_MAX)
            previous = (number, timestamp)
            stats = dict(stats, file=str(path), arrival_ns=offset_ns)
            self.stats.append(stats)
            if len(records):
                records = records.copy()
                records["arrival_ns"] = offset_ns
                yield records

    def _gap_ns(self, before: tuple[int, int], after: tuple[int, int]) -> int:
        (n0, t0), (n1, t1) = before, after
        gap = float(t1 - t0) if t0 and t1 else self.slot_s * (n1 - n0)
        gap = max(gap, 0.0)  # keep the feed's clock monotonic, whatever the files say
        if self.max_gap_s is not None:
            gap = min(gap, self.max_gap_s)
        return int(min(round(gap * NS), _INT64_MAX))

    def close(self) -> None:
        """Nothing to release: each block file was read and closed when the source was built."""


def _nonnegative(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0


def _read_block(path: Path) -> tuple[np.ndarray, dict, int, int]:
    """``(records, stats, block number, timestamp or 0)`` of one block file; ``FeedError`` naming
    the file when it cannot be read, is not JSON, is not a block or does not decode."""
    where = str(path)
    try:
        with open(path, "rb") as f:
            block = json.load(f)
    except OSError as e:
        raise FeedError(f"{where}: cannot read: {e.strerror or e}") from None
    except RecursionError:
        raise FeedError(f"{where}: not valid JSON: nested too deeply") from None
    except ValueError as e:  # JSONDecodeError, not UTF-8, an integer of over 4300 digits
        raise FeedError(f"{where}: not valid JSON: {' '.join(str(e).split())}") from None
    check_block(block, where)
    try:
        records, stats = decode_block(block)
    except ValueError as e:  # decode's own checks
        raise FeedError(f"{where}: {e}") from None
    validate(records, where)
    return records, stats, int(block["block_number"]), int(block.get("block_timestamp") or 0)


def _fail(where: str, what: str, wants: str, value: Any) -> FeedError:
    text = repr(value)
    if len(text) > 80:
        text = text[:77] + "..."
    return FeedError(f"{where}: {what} must be {wants}, got {text}")


def _uint(value: Any, where: str, what: str, bits: int, optional: bool = False) -> None:
    if optional and (value is None or value == 0 or value == ""):
        return
    if isinstance(value, str) and value.isascii() and value.isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 1 << bits:
        raise _fail(where, what, f"an integer in [0, 2**{bits})", value)


def _string(value: Any, pattern: re.Pattern, where: str, what: str, wants: str) -> None:
    if not isinstance(value, str) or not pattern.match(value):
        raise _fail(where, what, wants, value)


def check_block(block: Any, where: str) -> None:
    """Check that ``block`` has what ``decode_block`` reads, of the types it needs.

    Raises ``FeedError`` naming ``where`` and the field (``traces[3].action.to``...). Only what
    decoding reads is checked: a call trace's ``action`` needs ``from``, ``to`` (addresses) and
    ``input`` (hex); traces of other types (create, suicide, reward) only an ``action`` table.
    """
    if not isinstance(block, dict):
        raise _fail(where, "a block", "a JSON object", type(block).__name__)
    for key in ("block_number", "traces", "receipts"):
        if key not in block:
            raise FeedError(f"{where}: a block must have a {key!r} key, got keys "
                            f"{sorted(block)[:10]}")
    _uint(block["block_number"], where, "block_number", 64)
    _uint(block.get("block_timestamp"), where, "block_timestamp", 64, optional=True)
    for key in ("traces", "receipts"):
        if not isinstance(block[key], list):
            raise _fail(where, key, "a list", type(block[key]).__name__)
    for i, r in enumerate(block["receipts"]):
        what = f"receipts[{i}]"
        if not isinstance(r, dict):
            raise _fail(where, what, "an object", r)
        _string(r.get("transaction_hash"), _HASH, where, f"{what}.transaction_hash",
                "a 0x transaction hash (32 bytes of hex)")
        _uint(r.get("effective_gas_price"), where, f"{what}.effective_gas_price", 64,
              optional=True)
    for i, t in enumerate(block["traces"]):
        what = f"traces[{i}]"
        if not isinstance(t, dict):
            raise _fail(where, what, "an object", t)
        action = t.get("action")
        if not isinstance(action, dict):
            raise _fail(where, f"{what}.action", "an object", action)
        kind = t.get("type")
        if kind is not None and not isinstance(kind, str):
            raise _fail(where, f"{what}.type", "a string", kind)
        if t.get("transaction_position") is None:  # block and uncle rewards: only counted
            continue
        _uint(t["transaction_position"], where, f"{what}.transaction_position", 32)
        _string(t.get("transaction_hash"), _HASH, where, f"{what}.transaction_hash",
                "a 0x transaction hash (32 bytes of hex)")
        ta = t.get("trace_address")
        if not isinstance(ta, list) or not all(
                isinstance(x, int) and not isinstance(x, bool) and 0 <= x <= 0xFFFF for x in ta):
            raise _fail(where, f"{what}.trace_address", "a list of integers in [0, 65535]", ta)
        frm = action.get("from")
        if not ta and frm:  # the transaction's sender
            _string(frm, _ADDRESS, where, f"{what}.action.from", "a 0x address (20 bytes of hex)")
        if kind != "call":
            continue
        for key in ("from", "to"):
            _string(action.get(key), _ADDRESS, where, f"{what}.action.{key}",
                    "a 0x address (20 bytes of hex)")
        _string(action.get("input", "0x"), _HEX, where, f"{what}.action.input", "0x hex")
        result = t.get("result")
        if result is not None and not isinstance(result, dict):
            raise _fail(where, f"{what}.result", "an object or null", result)
        output = (result or {}).get("output")
        if output:
            _string(output, _HEX, where, f"{what}.result.output", "0x hex")
