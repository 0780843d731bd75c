"""The pending-stream replay table: ``python -m tallyio_ethereum.report [DIR] [--markdown]``.

DIR: a directory of block JSON files (default: ``../shared/data/mainnet-blocks`` beside the
repository when present, else the sample blocks shipped with ``tallyio-mainnet``).
"""
from __future__ import annotations

import argparse
import os
import sys
from collections import Counter
from pathlib import Path

from tallyio_ethereum.replay import OUTCOMES, replay_blocks

REPO = Path(__file__).resolve().parents[3]
COLUMNS = ("block", "txs", "decoded", "v2", "v3 only") + OUTCOMES + ("hops exact",)


def default_dir() -> Path:
    """The 25-block set beside the repository if present, else the 4 shipped sample blocks."""
    full = Path(os.environ.get("TALLYIO_MAINNET_BLOCKS", REPO.parent / "shared" / "data" / "mainnet-blocks"))
    if full.is_dir():
        return full
    from tallyio_mainnet.source import sample_dir
    return Path(sample_dir())


def table(results: list[dict]) -> list[list]:
    """One row per block and a total row, in ``COLUMNS`` order."""
    rows = []
    total = Counter()
    for r in results:
        vals = [r["transactions"], r["decoded"], r["v2"], r["v3"]]
        vals += [r["outcomes"].get(o, 0) for o in OUTCOMES] + [r["hops_exact"]]
        rows.append([r["block"]] + vals)
        total.update(dict(enumerate(vals)))
    rows.append(["total"] + [total[i] for i in range(len(COLUMNS) - 1)])
    return rows


def markdown(results: list[dict]) -> str:
    """The table as markdown, with the decoder's skip reasons and the book's counters."""
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + " --- |" * len(COLUMNS)]
    for row in table(results):
        lines.append("| " + " | ".join(f"**{v}**" if row[0] == "total" else str(v) for v in row) + " |")
    skipped = Counter()
    counters = Counter()
    for r in results:
        skipped.update(r["decode_skipped"])
        for k in ("seeded", "refreshed", "reserves_verified", "book_diverged",
                  "post_state_differs", "book_rebuilds"):
            counters[k] += r[k]
    lines.append("")
    lines.append("Skipped by the decoder, by reason (transactions; `multicall_other_call` counts "
                 "non-swap calls inside multicalls): "
                 + ", ".join(f"`{k}` {v}" for k, v in sorted(skipped.items())) + ".")
    lines.append("Pool book: " + ", ".join(f"`{k}` {v}" for k, v in counters.items()) + ".")
    return "\n".join(lines)


def main(argv=None) -> int:
    """Print the replay table for a directory of blocks."""
    p = argparse.ArgumentParser(prog="python -m tallyio_ethereum.report", description=__doc__)
    p.add_argument("directory", nargs="?", default=None)
    p.add_argument("--markdown", action="store_true", help="a markdown table (else plain text)")
    p.add_argument("--no-refresh", action="store_true",
                   help="never re-seed a pool the book lost track of")
    args = p.parse_args(argv)
    results = replay_blocks(args.directory or default_dir(), refresh=not args.no_refresh)
    if args.markdown:
        print(markdown(results))
    else:
        rows = [list(COLUMNS)] + [[str(v) for v in r] for r in table(results)]
        widths = [max(len(str(r[i])) for r in rows) for i in range(len(COLUMNS))]
        for r in rows:
            print("  ".join(str(v).rjust(w) for v, w in zip(r, widths)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
