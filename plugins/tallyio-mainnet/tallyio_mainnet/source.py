"""A TallyIO Source that replays mined blocks: one ``TX_DTYPE`` chunk of decoded swaps per block."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator

import numpy as np

from tallyio_mainnet.decode import block_files, decode_block, load_block

NS = 1_000_000_000
SLOT_S = 12.0  # Ethereum's slot time: the spacing assumed for blocks whose file has no timestamp
_SNIFF_BYTES = 4096


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
    has none. Raises ``ValueError`` for a path that is neither a block file nor such a directory,
    or a negative ``slot_s`` / ``max_gap_s``.
    """

    replay = True  # a recorded feed: replayed as fast as possible, its rows never age out

    def __init__(self, path: str | os.PathLike | None = None, *, slot_s: float = SLOT_S,
                 max_gap_s: float | None = SLOT_S) -> None:
        p = sample_dir() if path is None else Path(path)
        if not self.accepts(p):
            raise ValueError(f"path must be a block JSON file or a directory of <number>.json "
                             f"block files, got {str(path)!r}")
        if not slot_s >= 0:
            raise ValueError(f"slot_s must be >= 0, got {slot_s!r}")
        if max_gap_s is not None and not max_gap_s >= 0:
            raise ValueError(f"max_gap_s must be >= 0 or None, got {max_gap_s!r}")
        self.path = p
        self.slot_s = float(slot_s)
        self.max_gap_s = None if max_gap_s is None else float(max_gap_s)
        self.files = block_files(p) if p.is_dir() else [p]
        self.stats: list[dict] = []  # decode stats of each block read so far, in feed order

    @staticmethod
    def accepts(path: str | os.PathLike) -> bool:
        """True for a block JSON file, or a directory holding at least one ``<number>.json``."""
        p = Path(path)
        if p.is_dir():
            return any(f.stem.isdigit() for f in p.glob("*.json"))
        if p.suffix != ".json" or not p.is_file():
            return False
        with open(p, "rb") as f:
            head = f.read(_SNIFF_BYTES)
        return b'"block_number"' in head and b'"traces"' in head

    def __iter__(self) -> Iterator[np.ndarray]:
        offset_ns = 0
        previous = None  # (block number, timestamp or 0) of the block before
        for path in self.files:
            block = load_block(path)
            records, stats = decode_block(block)
            number = int(block["block_number"])
            timestamp = int(block.get("block_timestamp") or 0)
            if previous is not None:
                offset_ns += self._gap_ns(previous, (number, timestamp))
            previous = (number, timestamp)
            stats["file"] = str(path)
            stats["arrival_ns"] = offset_ns
            self.stats.append(stats)
            if len(records):
                records["arrival_ns"] = offset_ns
                yield records

    def _gap_ns(self, before: tuple[int, int], after: tuple[int, int]) -> int:
        (n0, t0), (n1, t1) = before, after
        gap = float(t1 - t0) if t0 and t1 else self.slot_s * (n1 - n0)
        gap = max(gap, 0.0)  # keep the feed's clock monotonic, whatever the files say
        if self.max_gap_s is not None:
            gap = min(gap, self.max_gap_s)
        return int(round(gap * NS))

    def close(self) -> None:
        """Nothing to release: each block file is read and closed as it is replayed."""
