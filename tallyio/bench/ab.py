"""A/B per optimization: the same workload with one switch on and off, in fresh processes.

Each trial is its own process (so the allocator switch can preload jemalloc, and no trial inherits
another's warm caches or heap); trials alternate on/off to spread machine drift over both arms.
Reported per arm: median saturation throughput and median P99 at load factor 1.0, with min..max
over the repeats, and the on/off ratios.
"""
from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys

from tallyio.config import OPTIMIZATIONS

# how to turn each switch on / off in the engine config, for the A/B arms
ARMS = {name: ({"optimizations": {name: "on"}}, {"optimizations": {name: "off"}})
        for name in OPTIMIZATIONS}
ARMS["simd"] = ({"optimizations": {"simd": "auto"}}, {"optimizations": {"simd": "scalar"}})


def trial(switch: str, arm: str, seconds: float, n: int) -> dict:
    """One measurement in this process (called in a child)."""
    from tallyio.bench import kpi
    cfg = ARMS[switch][0 if arm == "on" else 1]
    sat = kpi.saturation(n, plain=False, config=cfg)["tallyio"]
    lat = kpi.latency_under_load(1.0, seconds, plain=False, config=cfg)["tallyio"]
    return {"throughput_tps": sat["throughput_tps"], "p99": lat["p99"], "p50": lat["p50"]}


def _child_env(switch: str, arm: str) -> dict:
    env = dict(os.environ)
    if switch == "allocator" and arm == "on":
        from tallyio.system.allocator import jemalloc_env
        env = dict(jemalloc_env(env))
    return env


def run(switch: str, repeats: int = 3, seconds: float = 1.0, n: int = 100_000) -> dict:
    if switch not in ARMS:
        raise ValueError(f"switch must be one of {', '.join(ARMS)}, got {switch!r}")
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    results: dict = {"on": [], "off": []}
    errors: dict = {"on": None, "off": None}
    for _ in range(repeats):
        for arm in ("on", "off"):
            code = (f"import json; from tallyio.bench.ab import trial; "
                    f"print(json.dumps(trial({switch!r}, {arm!r}, {seconds}, {n})))")
            p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                               env=_child_env(switch, arm))
            if p.returncode != 0:
                # an arm the machine cannot honour ("on" where e.g. one NUMA node) is reported
                errors[arm] = p.stderr.strip().splitlines()[-1] if p.stderr.strip() else f"exit {p.returncode}"
                continue
            results[arm].append(json.loads(p.stdout.strip().splitlines()[-1]))
    return {"switch": switch, "repeats": repeats, "results": results, "errors": errors}


def _stat(values):
    return statistics.median(values), min(values), max(values)


def format_ab(d: dict) -> str:
    lines = [f"A/B {d['switch']}: {d['repeats']} trial(s) per arm, alternating, fresh process each"]
    for arm in ("on", "off"):
        if d["errors"][arm] and not d["results"][arm]:
            lines.append(f"  {arm:<4} could not run: {d['errors'][arm]}")
            continue
        tps = _stat([r["throughput_tps"] for r in d["results"][arm]])
        p99 = _stat([r["p99"] / 1000 for r in d["results"][arm]])
        lines.append(f"  {arm:<4} saturation {tps[0]:>12,.0f} tx/s ({tps[1]:,.0f}..{tps[2]:,.0f})   "
                     f"P99 @100k/s {p99[0]:>9,.1f} us ({p99[1]:,.1f}..{p99[2]:,.1f})")
    if d["results"]["on"] and d["results"]["off"]:
        on_t = _stat([r["throughput_tps"] for r in d["results"]["on"]])[0]
        off_t = _stat([r["throughput_tps"] for r in d["results"]["off"]])[0]
        on_p = _stat([r["p99"] for r in d["results"]["on"]])[0]
        off_p = _stat([r["p99"] for r in d["results"]["off"]])[0]
        lines.append(f"  ratio on/off: throughput {on_t / off_t:.2f}x, P99 {on_p / max(off_p, 1):.2f}x "
                     f"(throughput above 1 and P99 below 1 favour 'on')")
    return "\n".join(lines)
