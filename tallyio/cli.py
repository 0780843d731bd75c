"""The ``tallyio`` command line: run, info, plugins, bench."""
from __future__ import annotations

import argparse
import importlib
import json
import logging
import math
import os
import signal
import sys
import threading


class UsageError(Exception):
    """A command-line flag with a bad value: one line on stderr, exit status 2."""


def _check_range(flag: str, value, low: float, high: float, wants: str, *,
                 low_open: bool = False) -> None:
    """``value`` (a flag's parsed number, or None when not given) must be finite and in range."""
    if value is None:
        return
    ok = math.isfinite(value) and (low < value if low_open else low <= value) and value <= high
    if not ok:
        raise UsageError(f"{flag} must be {wants}, got {value!r}")


def _check_writable(flag: str, path: str | None) -> None:
    """Fail now, before any work, when ``path`` cannot be written (a missing directory, a
    directory, no permission), rather than after the run. Leaves no file behind."""
    if path is None:
        return
    if os.path.isdir(path):
        raise UsageError(f"{flag} {path}: is a directory, not a file")
    existed = os.path.exists(path)
    try:
        with open(path, "a", encoding="utf-8"):
            pass
    except OSError as e:
        raise UsageError(f"{flag} {path}: cannot write: {e.strerror or e}") from None
    if not existed:
        os.unlink(path)


def _write_json(flag: str, path: str, write) -> bool:
    """``write(path)``; False, with one line on stderr, when the file cannot be written."""
    try:
        write(path)
    except OSError as e:
        print(f"tallyio: {flag} {path}: cannot write: {e.strerror or e}", file=sys.stderr)
        return False
    return True


def _save_results(path: str, results) -> bool:
    """A bench results file (``--json``): False, with one line on stderr, when it cannot be
    written."""
    def write(p):
        with open(p, "w") as f:
            json.dump(results, f, indent=2, default=str)
            f.write("\n")
    if not _write_json("--json", path, write):
        return False
    print(f"results written to {path}")
    return True


def _cmd_bench(args) -> int:
    from tallyio.bench import AREAS
    from tallyio.bench._harness import format_table

    try:
        if args.repeats is not None and args.repeats < 1:
            raise UsageError(f"--repeats must be >= 1, got {args.repeats}")
        _check_range("--minutes", args.minutes, 0, 24 * 60, "in (0, 1440] minutes", low_open=True)
        _check_writable("--json", args.json)
    except UsageError as e:
        print(f"tallyio bench: {e}", file=sys.stderr)
        return 2
    if "monitoring" in (args.area or ()):
        if len(args.area) > 1 or args.ab:
            print("tallyio bench: monitoring is an A/B of its own (--ab monitoring); run it alone",
                  file=sys.stderr)
            return 2
        args.ab = "monitoring"
    if args.ab:
        from tallyio.bench.ab import MIN_TRIALS, format_ab, run
        try:
            d = run(args.ab, repeats=args.repeats or MIN_TRIALS, max_load=args.max_load,
                    require_quiet=args.require_quiet,
                    progress=lambda msg: print(f"  {msg}", file=sys.stderr))
        except ValueError as e:
            print(f"tallyio bench: {e}", file=sys.stderr)
            return 2
        except RuntimeError as e:  # --require-quiet on a busy machine
            print(f"tallyio bench: {e}", file=sys.stderr)
            return 1
        print(format_ab(d))
        if args.json and not _save_results(args.json, d):
            return 1
        return 0
    areas = args.area or list(AREAS)
    unknown = [a for a in areas if a not in AREAS and a not in ("kpi", "monitoring", "soak")]
    if unknown:
        print(f"tallyio bench: unknown area {unknown[0]!r}; choose from {', '.join(AREAS)}, "
              f"kpi, monitoring, soak",
              file=sys.stderr)
        return 2
    micro = [a for a in areas if a in AREAS]
    if args.json and micro and "kpi" in areas:
        print("tallyio bench: --json writes either the kpi results or the micro ones; run kpi "
              "on its own", file=sys.stderr)
        return 2
    micro_res = None
    if args.json and micro:
        from tallyio.bench._harness import micro_results

        def show(area, comparisons):
            print(f"== {area}: ns per operation, best of repeats; ratio = peer / tallyio ==")
            print(format_table(comparisons))
        micro_res = micro_results(micro, quick=args.quick, on_area=show)
    for area in areas:
        if micro_res is not None and area in AREAS:
            continue
        if area == "soak":
            from tallyio.bench.soak import format_soak, run_soak
            soak = run_soak(minutes=args.minutes)
            print(format_soak(soak))
            if args.json and not _save_results(args.json, soak):
                return 1
            continue
        if area == "kpi":
            from tallyio.bench.kpi import kpi_results, kpi_table
            results = kpi_results(quick=args.quick, repeats=args.repeats or 3)
            print(kpi_table(results))
            if args.json and not _save_results(args.json, results):
                return 1
            continue
        mod = importlib.import_module(f"tallyio.bench.{area}")
        print(f"== {area}: ns per operation, best of repeats; ratio = peer / tallyio ==")
        print(format_table(mod.run(quick=args.quick)))
    if micro_res is not None and not _save_results(args.json, micro_res):
        return 1
    return 0


def _cmd_run(args) -> int:
    from tallyio.config import load_config
    from tallyio.engine import Engine
    from tallyio.errors import TallyIOError

    try:
        # every flag is checked before the config is read and anything is built or run
        _check_range("--rate", args.rate, 0, 1e8, "in [0, 1e8] tx/s (0: the feed's own timing)")
        _check_range("--speed", args.speed, 0, 1e6,
                     "in [0, 1e6] (0: as fast as possible, 1: recorded speed)")
        _check_range("--duration", args.duration, 0, 1e9,
                     "in (0, 1e9] seconds (leave it out to run the feed to its end)", low_open=True)
        _check_range("--interval", args.interval, 0, 3600, "in (0, 3600] seconds", low_open=True)
        if args.show < 0:
            raise UsageError(f"--show must be >= 0, got {args.show}")
        _check_writable("--json", args.json)
        cfg = load_config(args.config)
        if args.rate is not None:
            cfg["source"]["rate"] = float(args.rate)
        if args.speed is not None:
            cfg["source"]["speed"] = float(args.speed)
        if args.partitions is not None:
            cfg["source"]["options"]["partitions"] = args.partitions
        # the allocator switch: re-execute this command under jemalloc (first thing, before any
        # thread starts); "auto" carries on with glibc malloc when jemalloc is not installed
        from tallyio.system import ensure_jemalloc
        ensure_jemalloc(cfg.switch("allocator"))
        engine = Engine(cfg)
    except (UsageError, TallyIOError) as e:
        print(f"tallyio run: {e}", file=sys.stderr)
        return 2

    # SIGINT/SIGTERM end the run gracefully: ingestion stops, everything accepted is drained and
    # the report is printed. A second signal exits at once.
    stop = threading.Event()

    def on_signal(signum, frame):
        if stop.is_set():
            raise KeyboardInterrupt
        print(f"\n[tallyio] {signal.Signals(signum).name}: draining and stopping...",
              file=sys.stderr)
        stop.set()

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    from tallyio.live import LiveView

    view = LiveView(terminal=sys.stderr.isatty(), stream=sys.stderr)

    def progress(eng):
        if stop.is_set():
            eng.request_stop()
        if not args.quiet:
            view.update(eng)

    try:
        with view:
            report = engine.run(args.feed, duration=args.duration, progress=progress,
                                progress_interval=args.interval)
    except TallyIOError as e:
        print(f"tallyio run: {e}", file=sys.stderr)
        return 2
    finally:
        for s, h in old.items():
            signal.signal(s, h)
    print(report.format(max_opportunities=args.show))
    if args.json:
        if not _write_json("--json", args.json, report.to_json):
            return 1
        print(f"report written to {args.json}")
    return 0


def _cmd_plugins(args) -> int:
    from tallyio.config import load_config
    from tallyio.errors import TallyIOError
    from tallyio.plugins import collect, describe, get_plugin_manager

    try:
        cfg = load_config(args.config)
        pm = get_plugin_manager(cfg["plugins"]["modules"],
                                entry_points_enabled=cfg["plugins"]["entry_points"])
        plugins = describe(pm)
        reg = collect(pm)
    except TallyIOError as e:
        print(f"tallyio plugins: {e}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps({"plugins": plugins,
                          "registered": {k: {n: reg.origin[(k, n)] for n in getattr(reg, k)}
                                         for k in ("processors", "threshold_policies", "sources", "sinks")}},
                         indent=2))
        return 0
    for p in plugins:
        print(f"{p['name']}  ({p['distribution']})  {p['file']}")
        print(f"    hooks: {', '.join(p['hooks'])}")
    for kind in ("processors", "threshold_policies", "sources", "sinks"):
        names = getattr(reg, kind)
        print(f"{kind}: " + (", ".join(f"{n} [{reg.origin[(kind, n)]}]" for n in sorted(names)) or "none"))
    return 0


def _cmd_info(args) -> int:
    from tallyio import system
    from tallyio.config import load_config
    from tallyio.engine import engine_plan
    from tallyio.errors import TallyIOError

    try:
        cfg = load_config(args.config)
    except TallyIOError as e:
        print(f"tallyio info: {e}", file=sys.stderr)
        return 2
    topo = system.read_topology()
    d = system.info(dict(cfg["optimizations"]), topology=topo, plan=engine_plan(topo))
    print(json.dumps(d, indent=2, default=str) if args.json else system.format_info(d))
    # a switch turned on that the machine cannot honour would fail the engine's start-up
    return 1 if any(s["state"] == "error" for s in d["switches"].values()) else 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tallyio", description="TallyIO engine command line")
    p.add_argument("-v", "--verbose", action="store_true", help="log at INFO")
    sub = p.add_subparsers(dest="command", required=True)

    r = sub.add_parser("run", help="run the engine on a feed and print its report")
    r.add_argument("--config", help="deployment config (TOML)")
    r.add_argument("--feed", "--source", dest="feed", metavar="FEED",
                   help="feed file, directory or URL (nats://, ws://: a source plugin that "
                   "accepts it); default: the bundled sample")
    r.add_argument("--partitions", help="the source's partitions to consume, e.g. 0-3 or 0,2,5 "
                   "(a partitioned source: [source] options.partitions)")
    r.add_argument("--duration", type=float, help="stop after this many seconds")
    r.add_argument("--rate", type=float, help="offer the feed at this many tx/s (0: its own timing)")
    r.add_argument("--speed", type=float, help="replay speed: 1 recorded, 2 twice as fast, 0 max")
    r.add_argument("--json", metavar="PATH", help="also write the report as JSON")
    r.add_argument("--show", type=int, default=20, help="opportunities to list (default 20)")
    r.add_argument("--interval", type=float, default=0.5, help="progress interval, seconds")
    r.add_argument("-q", "--quiet", action="store_true", help="no progress lines")
    r.set_defaults(func=_cmd_run)

    i = sub.add_parser("info", help="topology, core plan and optimization switches")
    i.add_argument("--config", help="deployment config (TOML): its switch modes")
    i.add_argument("--json", action="store_true")
    i.set_defaults(func=_cmd_info)

    pl = sub.add_parser("plugins", help="list loaded plugins and what they register")
    pl.add_argument("--config", help="deployment config (TOML)")
    pl.add_argument("--json", action="store_true")
    pl.set_defaults(func=_cmd_plugins)

    b = sub.add_parser("bench", help="compare TallyIO with the tools a user would pick instead")
    b.add_argument("area", nargs="*", help="areas to run (default: every micro comparison; "
                   "'kpi' runs the plan's KPI suite against a plain-Python engine)")
    b.add_argument("--quick", action="store_true", help="fewer repeats")
    b.add_argument("--minutes", type=float, default=10.0,
                   help="soak: how long to run (default 10)")
    b.add_argument("--ab", metavar="SWITCH", help="A/B an optimization switch (or 'all'), on vs "
                   "off, in fresh processes; verdict by Mann-Whitney U over the trials")
    b.add_argument("--repeats", type=int, default=None,
                   help="trials per arm for --ab (default 5), runs per engine for kpi (default 3)")
    b.add_argument("--require-quiet", action="store_true",
                   help="--ab: refuse to run when the 1-minute load average exceeds --max-load")
    b.add_argument("--max-load", type=float, default=1.0,
                   help="--ab: load average above which the machine is busy (default 1.0)")
    b.add_argument("--json", metavar="PATH", help="write the kpi, --ab or micro results as JSON")
    b.set_defaults(func=_cmd_bench)
    _plugin_commands(sub)
    return p


def _plugin_commands(sub) -> None:
    """Subcommands a plugin distribution adds (``tallyio publish``...): each entry point of the
    ``tallyio.commands`` group is a function ``add(subparsers)`` that adds its parser and sets
    ``func``. A plugin that fails to load loses its command, with one line on stderr; the
    built-in commands still work."""
    from importlib.metadata import entry_points

    for ep in sorted(entry_points(group="tallyio.commands"), key=lambda e: e.name):
        if ep.name in sub.choices:
            print(f"tallyio: plugin command {ep.name!r} ({ep.value}) ignored: the name is taken",
                  file=sys.stderr)
            continue
        try:
            ep.load()(sub)
        except Exception as e:  # a broken plugin must not take the command line down
            print(f"tallyio: plugin command {ep.name!r} ({ep.value}) not loaded: {e!r}",
                  file=sys.stderr)


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
