"""Per-block replay report: swaps decoded, sandwiches, cyclic arbitrages and reverted attempts.

Usage: ``python -m tallyio_mainnet.report [DIR_OR_FILE]`` (default: the package's sample blocks).
Reverted arbitrage attempts (``reverted_arbitrages``) are counted in their own column and never
in ``arbitrages``: they made no profit. The inspectors come from the ``tallyio-sandwich`` and
``tallyio-arbitrage`` plugin packages; in a source checkout they are picked up from the sibling
``plugins/`` directories when not installed.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tallyio.opportunity import Opportunity
from tallyio_mainnet.decode import block_files, decode_block
from tallyio_mainnet.source import sample_dir

# swaps per protocol: column -> tallyio.record.PROTOCOL_NAMES name
PROTOCOL_COLUMNS = {"v2": "uniswap_v2", "v3": "uniswap_v3", "bal1": "balancer_v1",
                    "bal2": "balancer_v2", "curve": "curve", "bancor": "bancor", "0x": "zerox"}
COLUMNS = ("file", "block", "txs", "swaps", *PROTOCOL_COLUMNS, "skipped", "reverted",
           "sandwiches", "arbitrages", "reverted_arbs")


def _inspectors():
    try:
        from tallyio_arbitrage.cycles import find_cyclic_arbitrages
        from tallyio_sandwich.inspect import find_sandwiches
    except ImportError:
        plugins = Path(__file__).resolve().parents[2]
        for name in ("tallyio-sandwich", "tallyio-arbitrage"):
            if (plugins / name).is_dir() and str(plugins / name) not in sys.path:
                sys.path.insert(0, str(plugins / name))
        try:
            from tallyio_arbitrage.cycles import find_cyclic_arbitrages
            from tallyio_sandwich.inspect import find_sandwiches
        except ImportError as e:
            raise SystemExit("the report needs the tallyio-sandwich and tallyio-arbitrage plugin "
                             f"packages: pip install them ({e})") from None
    return find_sandwiches, find_cyclic_arbitrages


def block_rows(path: str | Path) -> list[dict]:
    """One dict per block file under ``path`` (a file or a directory), with the report's columns."""
    find_sandwiches, find_cyclic_arbitrages = _inspectors()
    p = Path(path)
    files = block_files(p) if p.is_dir() else [p]
    rows = []
    for f in files:
        records, stats = decode_block(f)
        rows.append({
            "file": f.name,
            "block": stats["block"],
            "txs": stats["transactions"],
            "swaps": len(records),
            **{c: stats["swaps"][name] for c, name in PROTOCOL_COLUMNS.items()},
            "skipped": sum(stats["skipped"].values()),
            "reverted": stats["reverted_traces"],
            "sandwiches": len(find_sandwiches(records)),
            "arbitrages": len(find_cyclic_arbitrages(records)),
            "reverted_arbs": len(reverted_arbitrages(f)),
        })
    return rows


def reverted_arbitrages(block) -> list[Opportunity]:
    """The arbitrage attempts that reverted in ``block`` (a block dict or the path of its file).

    The calls under each reverted call are decoded as far as they ran (``decode_block(block,
    attempts=True)``) and searched for cyclic routes like mined swaps. Each route found is an
    ``Opportunity`` of kind ``"arbitrage"`` with ``reverted`` True, ``profit`` 0 (it made none: the
    chain undid it) and ``details``: ``reverted`` (True, for JSON consumers), ``attempted_profit`` (what the route's swaps would have
    made, exact, in ``profit_token``; often negative: a failed profit check is the usual revert),
    ``errors`` (the transaction's ``[(trace_address, error)]`` of its outermost failed calls) and
    the cyclic inspector's details (``tx_hash``, ``swaps``...).
    """
    _, find_cyclic_arbitrages = _inspectors()
    records, stats = decode_block(block, attempts=True)
    out = []
    for a in find_cyclic_arbitrages(records):
        errors = stats["reverted_calls"][a.details["tx_hash"]]
        out.append(Opportunity(
            strategy=a.strategy, kind="arbitrage", profit=0, profit_token=a.profit_token,
            tx_ids=a.tx_ids, pools=a.pools, block=a.block, reverted=True,
            details={**a.details, "reverted": True, "attempted_profit": a.profit,
                     "errors": [[list(addr), error] for addr, error in errors]}))
    return out


def format_rows(rows: list[dict]) -> str:
    """A plain-text table of ``rows`` with a totals line (numeric columns summed)."""
    total = {c: sum(r[c] for r in rows) for c in COLUMNS[2:]}
    total.update(file="total", block=f"{len(rows)} blocks")
    cells = [list(COLUMNS)] + [[str(r[c]) for c in COLUMNS] for r in [*rows, total]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(COLUMNS))]
    lines = ["  ".join(v.ljust(w) if i == 0 else v.rjust(w)
                       for i, (v, w) in enumerate(zip(row, widths)))
             for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    lines.insert(len(lines) - 1, lines[1])
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tallyio_mainnet.report",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("path", nargs="?", default=str(sample_dir()),
                        help="a block JSON file or a directory of <number>.json files")
    args = parser.parse_args(argv)
    p = Path(args.path)
    if not (p.is_dir() or p.is_file()):
        parser.error(f"path must be a block JSON file or a directory, got {args.path!r}")
    print(format_rows(block_rows(p)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
