"""``tallyio publish`` and ``tallyio gather`` (entry points of the ``tallyio.commands`` group)."""
from __future__ import annotations

import json
import sys


def add_publish(sub) -> None:
    p = sub.add_parser("publish", help="publish a feed to NATS JetStream, partitioned by token "
                       "pair, for engines run with --source nats://...")
    p.add_argument("--to", required=True, metavar="URL", help="nats://HOST:PORT")
    p.add_argument("--feed", "--source", dest="feed", metavar="FEED",
                   help="any feed tallyio run takes (default: the bundled sample)")
    p.add_argument("--partitions", type=int, required=True, help="number of partitions P")
    p.add_argument("--batch", type=int, default=256, help="rows per message (default 256)")
    p.add_argument("--limit", type=int, help="publish the first N rows only")
    p.set_defaults(func=_cmd_publish)


def add_gather(sub) -> None:
    p = sub.add_parser("gather", help="merge the engines' opportunities from NATS into one "
                       "report, each once")
    p.add_argument("--from", dest="url", required=True, metavar="URL", help="nats://HOST:PORT")
    p.add_argument("--timeout", type=float, help="give up after this many seconds (default: "
                   "wait until every partition is done)")
    p.add_argument("--json", metavar="PATH", help="write the merged report as JSON")
    p.set_defaults(func=_cmd_gather)


def _fail(cmd: str, e: Exception) -> int:
    print(f"tallyio {cmd}: {e}", file=sys.stderr)
    return 2


def _cmd_publish(args) -> int:
    from tallyio.errors import TallyIOError
    from tallyio_nats.publisher import publish_feed
    try:
        out = publish_feed(args.to, args.feed, partitions=args.partitions, batch=args.batch,
                           limit=args.limit)
    except (TallyIOError, ValueError) as e:
        return _fail("publish", e)
    print(f"published {out['rows']:,} rows in {out['messages']:,} messages to "
          f"{out['partitions']} partitions in {out['seconds']:.3f} s")
    return 0


def _cmd_gather(args) -> int:
    from tallyio.errors import TallyIOError
    from tallyio_nats.gather import gather
    if args.timeout is not None and not args.timeout > 0:
        return _fail("gather", ValueError(f"--timeout must be > 0 seconds, got {args.timeout}"))
    try:
        out = gather(args.url, timeout=args.timeout)
    except (TallyIOError, ValueError) as e:
        return _fail("gather", e)
    print(f"opportunities  {out['total']} (received {out['received']}, duplicates dropped "
          f"{out['duplicates']}, conflicting {out['conflicts']})")
    for kind, n in out["by_kind"].items():
        print(f"  {kind}: {n}")
    print(f"shards         {len(out['shards'])} done: "
          + ", ".join(s["shard"] for s in out["shards"]))
    if out["missing_partitions"]:
        print(f"INCOMPLETE     partitions with no done marker: {out['missing_partitions']}")
    if args.json:
        try:
            with open(args.json, "w", encoding="utf-8") as f:
                json.dump(out, f, indent=2, default=str)
                f.write("\n")
        except OSError as e:
            return _fail("gather", OSError(f"--json {args.json}: cannot write: {e.strerror}"))
        print(f"report written to {args.json}")
    return 0 if out["complete"] else 1
