"""The ``tallyio`` command line."""
from __future__ import annotations

import argparse
import importlib
import sys


def _cmd_bench(args) -> int:
    from tallyio.bench import AREAS
    from tallyio.bench._harness import format_table

    areas = args.area or list(AREAS)
    unknown = [a for a in areas if a not in AREAS]
    if unknown:
        print(f"tallyio bench: unknown area {unknown[0]!r}; choose from {', '.join(AREAS)}",
              file=sys.stderr)
        return 2
    for area in areas:
        mod = importlib.import_module(f"tallyio.bench.{area}")
        print(f"== {area}: ns per operation, best of repeats; ratio = peer / tallyio ==")
        print(format_table(mod.run(quick=args.quick)))
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tallyio", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    b = sub.add_parser("bench", help="compare TallyIO with the tools a user would pick instead")
    b.add_argument("area", nargs="*", help="areas to run (default: all)")
    b.add_argument("--quick", action="store_true", help="fewer repeats")
    b.set_defaults(func=_cmd_bench)
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
