"""Scale-out measurement: publish -> JetStream -> N engine processes -> gather, on a local server.

    python -m tallyio_nats.bench --json docs/results/scale_out.json

For each engine count (1, 2, 4 over 8 partitions), three times, each on a fresh stream:

* ``backlog``: the whole feed stored before the engines start; throughput = rows / (the first
  message an engine took -> the last one an engine acknowledged), engine start-up excluded:
  what the engines consume, the publisher out of the way.
* ``burst``: engines running and waiting, then the whole feed published as fast as the publisher
  goes; throughput = rows / (first publish -> ``gather`` holding every partition's done marker).
* ``paced``: engines running, the feed offered at ``--rate`` rows/s; hop latency = a message's
  publish (the publisher's wall clock in its header) -> the moment its engine's source sees
  every row of it settled (polled every millisecond), per message, P50/P99 over all shards.

Each run's gathered opportunities are checked against one in-process engine over the same feed
(``equal_to_single``). The feed is the bundled sample repeated ``--copies`` times (each copy's
transaction hashes made distinct, its offsets shifted after the one before). The JSON records
the machine, the git commit and the load average before and after each run: the machine may be
shared, and the load says how much.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

from tallyio.engine import DEFAULT_FEED, Engine
from tallyio_nats._loop import LoopThread
from tallyio_nats.gather import gather, single_engine
from tallyio_nats.publisher import Publisher, feed_source
from tallyio_nats.server import NatsServer
from tallyio_nats.wire import TX_STREAM

TIMEOUT = 300.0
MODES = ("backlog", "burst", "paced")


def bench_feed(copies: int) -> tuple[np.ndarray, dict]:
    """The bundled feed ``copies`` times over, each copy's hashes distinct."""
    source = feed_source(DEFAULT_FEED)
    rows = np.concatenate(list(source))
    span = int(rows["arrival_ns"][-1]) + 1
    parts = []
    for c in range(copies):
        r = rows.copy()
        r["tx_hash"][:, 0] ^= np.uint8(c)  # a distinct transaction per copy (engine dedup)
        r["tx_hash"][:, 1] ^= np.uint8(c >> 8)
        r["arrival_ns"] += c * span
        parts.append(r)
    return np.concatenate(parts), source.metadata


def _publish(pub, rows, rate, batch, t0) -> None:
    step = batch * 4
    for i in range(0, len(rows), step):
        if rate:
            ahead = t0 + i / rate - time.perf_counter()
            if ahead > 0:
                time.sleep(ahead)  # the offered schedule, not a synchronisation
        pub.publish(rows[i:i + step])
    pub.end()


class _Feed:
    """The rows as one replayed chunk, with the feed's pools table (the engine's pool book)."""

    replay = True

    def __init__(self, rows, metadata):
        self.rows, self.metadata = rows, metadata

    def __iter__(self):
        yield self.rows.copy()


def _spans(partitions: int, engines: int) -> list[str]:
    per = partitions // engines
    return [f"{i * per}-{(i + 1) * per - 1}" for i in range(engines)]


def _wait_consuming(url: str, partitions: int, procs) -> None:
    """Until every partition has its durable consumer (the engines are up and reading)."""
    lt = LoopThread(url)
    try:
        deadline = time.monotonic() + TIMEOUT
        left = set(range(partitions))
        while left:
            for p in sorted(left):
                try:
                    lt.call(lt.js.consumer_info(TX_STREAM, f"tallyio-p{p}"))
                    left.discard(p)
                except Exception:
                    pass
            for pr in procs:
                if pr.poll() is not None:
                    raise RuntimeError(f"an engine exited early: {pr.stdout.read().decode()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"partitions {sorted(left)}: no consumer")
            time.sleep(0.05)  # another process's start-up: read from the server, on a bound
    finally:
        lt.stop()


def run_once(url: str, rows, metadata, *, engines: int, partitions: int, mode: str,
             rate: float, batch: int, reference: dict) -> dict:
    load_before = list(os.getloadavg())
    tallyio = os.path.join(os.path.dirname(sys.executable), "tallyio")
    with Publisher(url, partitions, metadata=metadata, batch=batch) as pub:
        if mode == "backlog":  # everything stored before any engine starts
            pub.publish(rows)
            pub.end()
        procs = [subprocess.Popen([tallyio, "run", "-q", "--show", "0", "--source", url,
                                   "--partitions", s], stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT) for s in _spans(partitions, engines)]
        try:
            t0 = time.perf_counter()
            if mode != "backlog":
                _wait_consuming(url, partitions, procs)
                t0 = time.perf_counter()
                _publish(pub, rows, rate if mode == "paced" else None, batch, t0)
            t_published = time.perf_counter()
            g = gather(url, timeout=TIMEOUT)
            t1 = time.perf_counter()
        finally:
            outs = []
            for p in procs:
                try:
                    outs.append(p.communicate(timeout=TIMEOUT)[0].decode(errors="replace"))
                except subprocess.TimeoutExpired:
                    p.kill()
                    outs.append("timed out")
    if any(p.returncode != 0 for p in procs):
        raise RuntimeError("an engine failed:\n" + "\n".join(o[-2000:] for o in outs))
    shards = g["shards"]
    span_s = (max(s["last_ns"] for s in shards) - min(s["first_ns"] for s in shards)) / 1e9
    seconds = span_s if mode == "backlog" else t1 - t0
    return {"mode": mode, "engines": engines, "partitions": partitions,
            "shards": _spans(partitions, engines),
            "shard_rows": sorted((s["shard"], s["rows"]) for s in g["shards"]),
            "rows": len(rows), "offered_rows_s": rate if mode == "paced" else None,
            "publish_s": round(t_published - t0, 4), "wall_s": round(t1 - t0, 4),
            "seconds": round(seconds, 4), "throughput_rows_s": round(len(rows) / seconds),
            "hop_ns": g["hop_ns"], "opportunities": g["total"], "duplicates": g["duplicates"],
            "conflicts": g["conflicts"], "complete": g["complete"],
            "equal_to_single": g["opportunities"] == reference["opportunities"],
            "loadavg_before": load_before, "loadavg_after": list(os.getloadavg())}


BEGIN, END = "<!-- scale_out:begin -->", "<!-- scale_out:end -->"


def render(results: dict) -> str:
    """The Markdown table of a results file, with the machine, load and commit it records."""
    m = results["machine"]
    lines = [
        f"<!-- generated by `python -m tallyio_nats.bench --render {RESULTS} docs/scale_out.md`;"
        f" edit the results, not this block -->",
        f"`{results['command']}`. Measured at commit `{(m.get('commit') or '?')[:12]}`"
        f"{' (uncommitted changes)' if m.get('dirty') else ''} on {m['cpu_model']} "
        f"({m['cpus_allowed']} of {m['nproc']} CPUs), Python {m['python']}; load average "
        f"(1/5/15 min) {' / '.join(f'{x:.2f}' for x in results['loadavg_before'])} before, "
        f"{' / '.join(f'{x:.2f}' for x in results['loadavg_after'])} after. Feed: the bundled "
        f"sample {results['feed']['copies']} times, {results['feed']['rows']:,} rows, "
        f"{results['feed']['batch_rows']} rows per message; one engine over it finds "
        f"{results['single_engine_opportunities']} opportunities. Every engine, the publisher, "
        f"the gatherer and nats-server share the machine's CPUs.",
        "",
        "| mode | engines | partitions each | rows per shard | seconds | rows/s "
        "| hop P50 | hop P99 | equal to one engine | 1-min load before |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in results["runs"]:
        hop = r["hop_ns"]
        mode = f"paced {r['offered_rows_s']:,.0f} rows/s" if r["mode"] == "paced" else r["mode"]
        lines.append(
            f"| {mode} | {r['engines']} | {r['partitions'] // r['engines']} | "
            f"{' / '.join(f'{n:,}' for _, n in r['shard_rows'])} | {r['seconds']:.3f} s | "
            f"{r['throughput_rows_s']:,} | {_ms(hop, 'p50', r)} | {_ms(hop, 'p99', r)} | "
            f"{'yes' if r['equal_to_single'] and r['complete'] else 'NO'} "
            f"({r['opportunities']}, {r['duplicates']} duplicates dropped) | "
            f"{r['loadavg_before'][0]:.2f} |")
    return "\n".join(lines)


def _ms(hop: dict, q: str, run: dict) -> str:
    # a backlog run's messages waited in the stream for the engines to start: no hop latency
    return "-" if run["mode"] == "backlog" or not hop.get("count") else f"{hop[q] / 1e6:.2f} ms"


def write_block(results_path: str, doc: str) -> None:
    """Replace the block between ``BEGIN`` and ``END`` of ``doc`` with ``render``'s table."""
    with open(results_path) as f:
        table = render(json.load(f))
    with open(doc, encoding="utf-8") as f:
        text = f.read()
    if BEGIN not in text or END not in text:
        raise SystemExit(f"{doc}: no {BEGIN} ... {END} block")
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    with open(doc, "w", encoding="utf-8") as f:
        f.write(head + BEGIN + "\n" + table + "\n" + END + tail)


RESULTS = "docs/results/scale_out.json"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tallyio_nats.bench", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", metavar="PATH", help="write the results here")
    ap.add_argument("--render", nargs=2, metavar=("RESULTS", "DOC"),
                    help="only rewrite DOC's generated table from RESULTS (no measurement)")
    ap.add_argument("--engines", default="1,2,4", help="engine counts (default 1,2,4)")
    ap.add_argument("--partitions", type=int, default=8, help="partitions (default 8)")
    ap.add_argument("--copies", type=int, default=4, help="copies of the bundled feed (default 4)")
    ap.add_argument("--rate", type=float, default=20_000.0,
                    help="offered rows/s of the paced runs (default 20000)")
    ap.add_argument("--batch", type=int, default=256, help="rows per message (default 256)")
    args = ap.parse_args(argv)
    if args.render:
        write_block(*args.render)
        return 0
    counts = [int(x) for x in args.engines.split(",")]
    if any(n < 1 or args.partitions % n for n in counts) or args.copies < 1 or args.rate <= 0:
        print("bench: each engine count must divide --partitions; --copies >= 1; --rate > 0",
              file=sys.stderr)
        return 2
    from tallyio.bench.kpi import machine_info
    rows, metadata = bench_feed(args.copies)
    report = Engine().run(_Feed(rows, metadata))
    reference = single_engine(report.opportunities, rows)
    out = {"kind": "scale_out", "command": "python -m tallyio_nats.bench " + " ".join(
        argv if argv is not None else sys.argv[1:]), "machine": machine_info(),
        "loadavg_before": list(os.getloadavg()), "feed": {"rows": len(rows), "copies": args.copies,
        "batch_rows": args.batch}, "single_engine_opportunities": reference["total"], "runs": []}
    with tempfile.TemporaryDirectory() as store, NatsServer(store) as srv:
        for mode in MODES:
            for n in counts:
                r = run_once(srv.url, rows, metadata, engines=n, partitions=args.partitions,
                             mode=mode, rate=args.rate, batch=args.batch, reference=reference)
                out["runs"].append(r)
                hop = r["hop_ns"]
                print(f"{r['mode']:>7} engines={n} {r['throughput_rows_s']:>9,} rows/s "
                      f"hop p50={_ms(hop, 'p50', r)} p99={_ms(hop, 'p99', r)} "
                      f"equal={r['equal_to_single']} load={r['loadavg_before'][0]:.2f}",
                      flush=True)
    out["loadavg_after"] = list(os.getloadavg())
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=2, default=str)
            f.write("\n")
        print(f"results written to {args.json}")
    return 0 if all(r["equal_to_single"] and r["complete"] for r in out["runs"]) else 1


if __name__ == "__main__":
    sys.exit(main())
