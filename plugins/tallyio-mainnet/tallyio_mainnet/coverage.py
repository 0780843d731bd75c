"""Protocol coverage of the decoder on a set of blocks: swap calls seen, swaps decoded, and how
many decoded amounts are token movements the chain made.

Usage: ``python -m tallyio_mainnet.coverage [DIR] [--json PATH]`` (default: the package's sample
blocks). A block number seen twice (upstream's ``10921990.json`` repeats block 10921991) counts
once. Per protocol:

* ``calls``: live (not reverted) ``call`` traces of the protocol's swap selectors;
* ``swaps``: rows decoded (a Bancor call gives one per hop);
* ``skipped``: swap calls not decoded, by reason;
* ``amounts_equal_transfers``: rows whose ``(token_in, amount_in)`` is an ERC20 transfer in the
  transaction made inside the swap call or before it, and whose ``(token_out, amount_out)`` is
  one made inside the swap call.

``--json`` writes the figures with the commit, machine and load they were produced on
(``docs/results/mainnet_coverage.json`` in the repository), and the time each replay step takes
over the whole set (``timings``: best of ``--repeats`` runs, pure Python). ``--render DOC``
rewrites the timings table of DOC (between ``<!-- mainnet:timings:begin -->`` and its end marker)
from the JSON file given by ``--json``, without measuring.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
from collections import Counter, defaultdict
from pathlib import Path

from tallyio.record import PROTOCOL_NAMES, PROTOCOL_UNISWAP_V2, PROTOCOL_UNISWAP_V3
from tallyio_mainnet.decode import (PROTOCOL_DECODERS, SELECTOR_TRANSFER, SELECTOR_TRANSFER_FROM,
                                    SELECTOR_V2_SWAP, SELECTOR_V3_SWAP, _transfer, block_files,
                                    decode_swaps, load_block)
from tallyio_mainnet.source import sample_dir
from tallyio_mainnet.traces import before, is_under

_SELECTOR_PROTOCOL = {SELECTOR_V2_SWAP: PROTOCOL_NAMES[PROTOCOL_UNISWAP_V2],
                      SELECTOR_V3_SWAP: PROTOCOL_NAMES[PROTOCOL_UNISWAP_V3],
                      **{s: m.__name__.rsplit(".", 1)[-1] for s, m in PROTOCOL_DECODERS.items()}}


def _live_traces(traces):
    """(trace address, trace) of a transaction's traces that no failed call undid, in call order."""
    failed, out = [], []
    for t in sorted(traces, key=lambda t: t["trace_address"]):
        addr = tuple(t["trace_address"])
        if t.get("error"):
            failed.append(addr)
        if t.get("error") or any(is_under(addr, f) for f in failed):
            continue
        out.append((addr, t))
    return out


def block_coverage(block) -> dict[str, Counter]:
    """``{protocol name: Counter(calls, swaps, amounts_equal_transfers, skipped:<reason>)}``."""
    block = load_block(block)
    swaps, stats = decode_swaps(block)
    by_tx = defaultdict(list)
    for t in block["traces"]:
        if t.get("transaction_position") is not None:
            by_tx[int(t["transaction_position"])].append(t)
    out: dict[str, Counter] = defaultdict(Counter)
    live = {}
    for tx, traces in by_tx.items():
        live[tx] = _live_traces(traces)
        for addr, t in live[tx]:
            sel = t["action"].get("input", "0x")[:10].lower()
            if (t.get("type") == "call" and t["action"].get("callType") == "call"
                    and sel in _SELECTOR_PROTOCOL):
                out[_SELECTOR_PROTOCOL[sel]]["calls"] += 1
    for s in swaps:
        c = out[PROTOCOL_NAMES[s.protocol]]
        c["swaps"] += 1
        moves = []
        for addr, t in live[s.tx_index]:
            sel = t["action"].get("input", "0x")[:10].lower()
            if t.get("type") == "call" and sel in (SELECTOR_TRANSFER, SELECTOR_TRANSFER_FROM):
                tr = _transfer(addr, t["action"], sel)
                if tr is not None:
                    moves.append(tr)
        inside = [m for m in moves if is_under(m.trace_address, s.trace_address)]
        paid = inside + [m for m in moves if before(m, s.trace_address)]
        if ((s.token_in, s.amount_in) in {(m.token, m.amount) for m in paid}
                and (s.token_out, s.amount_out) in {(m.token, m.amount) for m in inside}):
            c["amounts_equal_transfers"] += 1
    # decode counts skipped swap calls per block and reason, not per protocol
    for reason, n in stats["skipped"].items():
        out["all"]["skipped:" + reason] += n
    return out


def coverage(path) -> dict:
    """The coverage of every block under ``path`` (a directory or one file), each number once."""
    p = Path(path)
    files = block_files(p) if p.is_dir() else [p]
    totals: dict[str, Counter] = defaultdict(Counter)
    seen = set()
    for f in files:
        block = load_block(f)
        if int(block["block_number"]) in seen:
            continue
        seen.add(int(block["block_number"]))
        for name, c in block_coverage(block).items():
            totals[name].update(c)
    names = [n for n in PROTOCOL_NAMES.values() if n in totals]
    names += ["all"] if "all" in totals else []
    return {"blocks": len(seen), "protocols": {n: dict(sorted(totals[n].items())) for n in names}}


def timings(path, repeats: int = 3) -> dict:
    """Seconds (best of ``repeats``) of each replay step over every block file under ``path``:
    JSON load, decoding, the sandwich and the cyclic-arbitrage inspectors; and what they saw."""
    import time

    from tallyio_mainnet.decode import decode_block
    from tallyio_mainnet.report import _inspectors
    find_sandwiches, find_cyclic_arbitrages = _inspectors()
    p = Path(path)
    files = block_files(p) if p.is_dir() else [p]
    best: dict[str, float] = {}
    seen: dict[str, int] = {}
    for _ in range(repeats):
        steps = Counter()
        t = time.perf_counter()
        blocks = [load_block(f) for f in files]
        steps["json_load"] = time.perf_counter() - t
        t = time.perf_counter()
        decoded = [decode_block(b)[0] for b in blocks]
        steps["decode"] = time.perf_counter() - t
        t = time.perf_counter()
        sandwiches = sum(len(find_sandwiches(r)) for r in decoded)
        steps["find_sandwiches"] = time.perf_counter() - t
        t = time.perf_counter()
        arbitrages = sum(len(find_cyclic_arbitrages(r)) for r in decoded)
        steps["find_cyclic_arbitrages"] = time.perf_counter() - t
        for k, v in steps.items():
            best[k] = min(best.get(k, v), v)
        seen = {"files": len(files), "traces": sum(len(b["traces"]) for b in blocks),
                "swaps": sum(len(r) for r in decoded), "sandwiches": sandwiches,
                "arbitrages": arbitrages}
    return {"repeats": repeats, "seconds": best, **seen}


TIMINGS_BEGIN, TIMINGS_END = "<!-- mainnet:timings:begin -->", "<!-- mainnet:timings:end -->"


def render_timings(doc: dict) -> str:
    """The generated timings block of docs/mainnet_replay.md, from a ``--json`` file's dict."""
    t = doc["timings"]
    s = t["seconds"]
    rate = t["traces"] / s["decode"] if s["decode"] else float("nan")
    return "\n".join([
        f"<!-- generated by `python -m tallyio_mainnet.coverage --render docs/mainnet_replay.md "
        f"--json docs/results/mainnet_coverage.json`; edit the results, not this block -->",
        f"`{doc['command']}` at commit `{str(doc.get('commit'))[:12]}` on {doc.get('machine')} "
        f"({doc.get('cpus')} CPUs, 1-minute load average {doc.get('load_avg_1m', 0):.2f}); pure "
        f"Python, best of {t['repeats']} runs over {t['files']} files:",
        "",
        "| step | time |",
        "| --- | --- |",
        f"| JSON load | {s['json_load'] * 1e3:,.0f} ms |",
        f"| decoding {t['traces']:,} traces to {t['swaps']:,} swaps | {s['decode'] * 1e3:,.0f} ms "
        f"(about {rate / 1e3:,.0f}k traces/s) |",
        f"| `find_sandwiches` ({t['sandwiches']} found) | {s['find_sandwiches'] * 1e3:,.1f} ms |",
        f"| `find_cyclic_arbitrages` ({t['arbitrages']} found) | "
        f"{s['find_cyclic_arbitrages'] * 1e3:,.1f} ms |"])


def _context() -> dict:
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                                cwd=Path(__file__).resolve().parent, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        commit = None
    return {"commit": commit, "machine": platform.platform(), "cpus": os.cpu_count(),
            "load_avg_1m": os.getloadavg()[0] if hasattr(os, "getloadavg") else None}


def format_table(result: dict) -> str:
    cols = ("protocol", "calls", "swaps", "amounts_equal_transfers")
    rows = [[n, *(str(c.get(k, 0)) for k in cols[1:])]
            for n, c in result["protocols"].items() if n != "all"]
    cells = [list(cols)] + rows
    widths = [max(len(r[i]) for r in cells) for i in range(len(cols))]
    lines = ["  ".join(v.ljust(w) if i == 0 else v.rjust(w)
                       for i, (v, w) in enumerate(zip(r, widths))) for r in cells]
    skipped = result["protocols"].get("all", {})
    lines.append(f"{result['blocks']} distinct blocks; skipped swap calls: "
                 + (", ".join(f"{k[8:]} {v}" for k, v in skipped.items()) or "none"))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tallyio_mainnet.coverage",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("path", nargs="?", default=str(sample_dir()),
                        help="a block JSON file or a directory of <number>.json files")
    parser.add_argument("--json", metavar="PATH", help="also write the figures to PATH")
    parser.add_argument("--repeats", type=int, default=3, help="timing runs (best kept)")
    parser.add_argument("--render", metavar="DOC",
                        help="rewrite DOC's timings block from the --json file (no measuring)")
    args = parser.parse_args(argv)
    if args.render:
        if not args.json:
            parser.error("--render needs --json PATH: the results file to render")
        text = Path(args.render).read_text()
        if TIMINGS_BEGIN not in text or TIMINGS_END not in text:
            parser.error(f"{args.render} has no {TIMINGS_BEGIN} ... {TIMINGS_END} block")
        head, rest = text.split(TIMINGS_BEGIN, 1)
        tail = rest.split(TIMINGS_END, 1)[1]
        block = render_timings(json.loads(Path(args.json).read_text()))
        Path(args.render).write_text(f"{head}{TIMINGS_BEGIN}\n{block}\n{TIMINGS_END}{tail}")
        print(f"{args.render}: timings regenerated from {args.json}")
        return 0
    if args.repeats < 1:
        parser.error(f"--repeats must be >= 1, got {args.repeats}")
    p = Path(args.path)
    if not (p.is_dir() or p.is_file()):
        parser.error(f"path must be a block JSON file or a directory, got {args.path!r}")
    result = coverage(p)
    print(format_table(result))
    if args.json:
        doc = {"command": "python -m tallyio_mainnet.coverage " + " ".join(argv or sys.argv[1:]),
               "blocks_path": str(p), **_context(), **result,
               "timings": timings(p, args.repeats)}
        Path(args.json).write_text(json.dumps(doc, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
