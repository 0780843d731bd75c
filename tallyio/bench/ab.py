"""A/B per optimization: the same workload with one switch on and off, in fresh processes.

    tallyio bench --ab SWITCH|all [--repeats 5] [--json PATH] [--require-quiet [--max-load 1.0]]

Each trial is its own process (so the allocator switch can preload jemalloc, and no trial inherits
another's warm caches or heap); the arms alternate, and their order flips every repeat (on/off,
off/on, ...), to spread machine drift over both. A trial measures the saturation throughput and
the open-loop P99/P50 at load factor 1.0 (100k tx/s).

The verdict per metric comes from the spread of the trials, never from the medians alone: a
two-sided Mann-Whitney U test of the on trials against the off trials at ``ALPHA`` (exact for
small samples, normal approximation with tie correction above ``_EXACT_MAX``). ``"better"`` or
``"worse"`` (for 'on') when p < ALPHA, ``"within noise"`` otherwise, ``"too few trials"`` below
``MIN_TRIALS`` per arm (with 5 per arm the smallest two-sided p is 2/252 = 0.008; with 3, 0.1,
so no difference could ever show).

The results file (``--json``) follows ``tallyio bench kpi``'s: ``schema``, ``kind: "ab"``,
``meta`` (machine and commit from ``kpi.machine_info``, load average and steal time before and
after, parameters), then per switch every trial, the spread and the verdicts. A run during which
another process competed for the CPUs (1-minute load average above ``--max-load``, or steal time
above ``STEAL_NOISY``) is flagged ``noisy`` in the file and the printed table.
"""
from __future__ import annotations

import json
import math
import os
import statistics
import subprocess
import sys
import time
from typing import Callable

from tallyio.config import OPTIMIZATIONS

# how to turn each switch on / off in the engine config, for the A/B arms
ARMS = {name: ({"optimizations": {name: "on"}}, {"optimizations": {name: "off"}})
        for name in OPTIMIZATIONS}
ARMS["simd"] = ({"optimizations": {"simd": "auto"}}, {"optimizations": {"simd": "scalar"}})
# "on" where the machine cannot honour it fails start-up; "auto" runs and says what it did
ARMS["numa"] = ({"optimizations": {"numa": "auto"}}, {"optimizations": {"numa": "off"}})
ARMS["cpu_affinity"] = ({"optimizations": {"cpu_affinity": "auto"}}, {"optimizations": {"cpu_affinity": "off"}})
ARMS["realtime_priority"] = ({"optimizations": {"realtime_priority": "auto"}},
                             {"optimizations": {"realtime_priority": "off"}})
# not an optimization (not in "all"): what monitoring costs, the same trials with the exporter
# serving and scraped (tallyio.bench.monitoring) against no exporter
ARMS["monitoring"] = ({"monitoring": {"enabled": True, "port": 0, "interval": 1.0}},
                      {"monitoring": {"enabled": False, "interval": 3600.0}})

ALPHA = 0.05
MIN_TRIALS = 5
DEFAULT_MAX_LOAD = 1.0   # 1-minute load average above which a machine is "busy"
STEAL_NOISY = 0.01       # steal time above 1 % of CPU time during a run: noisy
OTHERS_NOISY = 0.10      # other processes busy for more than 10 % of the CPUs' time: noisy
# metric -> True when higher is better for 'on'
METRICS = {"throughput_tps": True, "p99": False, "p50": False}
_EXACT_MAX = 400  # n_on * n_off up to which the U distribution is enumerated


# ---- noise --------------------------------------------------------------------------------------

def cpu_times(stat_path: str = "/proc/stat") -> dict | None:
    """The machine's aggregate CPU jiffies from /proc/stat: ``{total, steal, idle}``; None where
    it cannot be read (not Linux)."""
    try:
        with open(stat_path) as f:
            fields = f.readline().split()
    except OSError:
        return None
    if not fields or fields[0] != "cpu":
        return None
    v = [int(x) for x in fields[1:]]
    # user nice system idle iowait irq softirq steal guest guest_nice; guest time is in user
    total = sum(v[:8])
    return {"total": total, "steal": v[7] if len(v) > 7 else 0, "idle": v[3] + (v[4] if len(v) > 4 else 0)}


def steal_fraction(before: dict | None, after: dict | None) -> float | None:
    """Steal time between two :func:`cpu_times` samples, as a fraction of all CPU time."""
    if not before or not after or after["total"] <= before["total"]:
        return None
    return (after["steal"] - before["steal"]) / (after["total"] - before["total"])


def own_cpu_s() -> float:
    """CPU seconds this process and its waited-for children (the trials) have used."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def others_fraction(meta: dict) -> float | None:
    """The share of all CPUs' time that other processes were busy during a run: the machine's
    busy time (/proc/stat samples in ``meta``) less this process's and its trials' own. The load
    average cannot tell the two apart: a benchmark loads the machine itself."""
    b, a = meta.get("cpu_times_before"), meta.get("cpu_times_after")
    ob, oa = meta.get("own_cpu_s_before"), meta.get("own_cpu_s_after")
    if not b or not a or ob is None or oa is None or a["total"] <= b["total"]:
        return None
    tick = os.sysconf("SC_CLK_TCK")
    busy = ((a["total"] - a["idle"] - a["steal"]) - (b["total"] - b["idle"] - b["steal"])) / tick
    return max(0.0, busy - (oa - ob)) / ((a["total"] - b["total"]) / tick)


def loadavg() -> list[float] | None:
    try:
        return list(os.getloadavg())
    except OSError:
        return None


def check_quiet(max_load: float = DEFAULT_MAX_LOAD, load: Callable[[], list | None] = loadavg) -> str | None:
    """None when the 1-minute load average is at most ``max_load``; else why the machine is busy."""
    la = load()
    if la is None:
        return None
    if la[0] > max_load:
        return (f"the machine is busy: 1-minute load average {la[0]:.2f} > {max_load:g} "
                f"(other processes compete for the CPUs; results would be noise)")
    return None


def noise(meta: dict, max_load: float = DEFAULT_MAX_LOAD) -> list[str]:
    """Why a run's numbers may be noise (empty: quiet): the machine busy when it started (load
    average), other processes busy while it ran (``others_fraction``), or steal time."""
    out = []
    la = meta.get("loadavg_before")
    if la and la[0] > max_load:
        out.append(f"1-minute load average {la[0]:.2f} before (> {max_load:g})")
    of = meta.get("others_fraction")
    if of is not None and of > OTHERS_NOISY:
        out.append(f"other processes busy {100 * of:.1f}% of the CPUs' time (> "
                   f"{100 * OTHERS_NOISY:g}%)")
    st = meta.get("steal_fraction")
    if st is not None and st > STEAL_NOISY:
        out.append(f"steal time {100 * st:.1f}% of CPU time (> {100 * STEAL_NOISY:g}%)")
    return out


# ---- statistics ---------------------------------------------------------------------------------

def _ranks(values: list[float]) -> list[float]:
    order = sorted(range(len(values)), key=values.__getitem__)
    ranks = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2 + 1
        i = j + 1
    return ranks


def _u_counts(n1: int, n2: int) -> list[int]:
    """Number of arrangements giving each U in 0..n1*n2 (no ties), by the usual recurrence."""
    # f[i][j][u]: arrangements of i and j items with statistic u
    prev = [[1] + [0] * (n1 * n2) for _ in range(n2 + 1)]  # i = 0: u = 0 only
    for i in range(1, n1 + 1):
        cur = [[0] * (n1 * n2 + 1) for _ in range(n2 + 1)]
        cur[0][0] = 1
        for j in range(1, n2 + 1):
            for u in range(n1 * n2 + 1):
                # the largest item is from sample 1 (it beats the j items of sample 2) or from 2
                a = prev[j][u - j] if u >= j else 0
                cur[j][u] = a + cur[j - 1][u]
        prev = cur
    return prev[n2]


def mann_whitney(a: list[float], b: list[float]) -> tuple[float, float]:
    """Two-sided Mann-Whitney U test: ``(U of a, p)``. Exact without ties for small samples,
    otherwise the normal approximation with tie and continuity corrections."""
    n1, n2 = len(a), len(b)
    if n1 == 0 or n2 == 0:
        raise ValueError(f"both samples need values, got {n1} and {n2}")
    r = _ranks(list(a) + list(b))
    u1 = sum(r[:n1]) - n1 * (n1 + 1) / 2
    ties = len(set(a) | set(b)) < n1 + n2
    if not ties and n1 * n2 <= _EXACT_MAX:
        counts = _u_counts(n1, n2)
        total = sum(counts)
        lo = min(u1, n1 * n2 - u1)
        p = 2 * sum(counts[:int(lo) + 1]) / total
        return u1, min(1.0, p)
    n = n1 + n2
    mu = n1 * n2 / 2
    tie_term = sum(c ** 3 - c for c in _tie_sizes(list(a) + list(b)))
    var = n1 * n2 / 12 * ((n + 1) - tie_term / (n * (n - 1)))
    if var <= 0:
        return u1, 1.0
    z = (abs(u1 - mu) - 0.5) / math.sqrt(var)
    p = math.erfc(max(z, 0.0) / math.sqrt(2))
    return u1, min(1.0, p)


def _tie_sizes(values: list[float]) -> list[int]:
    counts: dict = {}
    for v in values:
        counts[v] = counts.get(v, 0) + 1
    return [c for c in counts.values() if c > 1]


def verdict(on: list[float], off: list[float], higher_is_better: bool, alpha: float = ALPHA) -> dict:
    """``{verdict, p, u, on: [median, min, max], off: [...], ratio}`` for one metric."""
    out: dict = {"alpha": alpha, "n_on": len(on), "n_off": len(off)}
    for arm, v in (("on", on), ("off", off)):
        out[arm] = [statistics.median(v), min(v), max(v)] if v else None
    if on and off and out["off"][0]:
        out["ratio"] = out["on"][0] / out["off"][0]
    if len(on) < MIN_TRIALS or len(off) < MIN_TRIALS:
        out.update(verdict="too few trials", p=None, u=None)
        return out
    u, p = mann_whitney(on, off)
    out.update(u=u, p=p)
    if p >= alpha:
        out["verdict"] = "within noise"
    else:
        on_higher = statistics.median(on) > statistics.median(off)
        out["verdict"] = "better" if on_higher == higher_is_better else "worse"
    return out


# ---- trials -------------------------------------------------------------------------------------

def trial(switch: str, arm: str, seconds: float, n: int) -> dict:
    """One measurement in this process (called in a child)."""
    from tallyio.bench import kpi
    cfg = ARMS[switch][0 if arm == "on" else 1]
    if switch == "monitoring":
        from tallyio.bench.monitoring import trial as scraped_trial
        return scraped_trial(cfg, seconds, n)
    sat = kpi.saturation(n, plain=False, config=cfg)["tallyio"]
    lat = kpi.latency_under_load(1.0, seconds, plain=False, config=cfg)["tallyio"]
    return {"throughput_tps": sat["throughput_tps"], "p99": lat["p99"], "p50": lat["p50"]}


def _child_env(switch: str, arm: str) -> dict:
    env = dict(os.environ)
    if switch == "allocator" and arm == "on":
        from tallyio.system.allocator import jemalloc_env
        env = dict(jemalloc_env(env))
    return env


def subprocess_trial(switch: str, arm: str, seconds: float, n: int) -> dict:
    """Run :func:`trial` in a fresh interpreter; its result, or ``{"error": last stderr line}``."""
    code = (f"import json; from tallyio.bench.ab import trial; "
            f"print(json.dumps(trial({switch!r}, {arm!r}, {seconds}, {n})))")
    from tallyio.errors import TallyIOError
    try:
        env = _child_env(switch, arm)
    except TallyIOError as e:  # "on" where the machine cannot honour it (jemalloc missing)
        return {"error": str(e)}
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    if p.returncode != 0:
        # an arm the machine cannot honour ("on" where e.g. jemalloc is missing) is reported
        err = p.stderr.strip().splitlines()[-1] if p.stderr.strip() else f"exit {p.returncode}"
        return {"error": err}
    return json.loads(p.stdout.strip().splitlines()[-1])


def _switches(switch: str) -> list[str]:
    if switch == "all":
        return list(OPTIMIZATIONS)
    if switch not in ARMS:
        raise ValueError(f"switch must be one of {', '.join(ARMS)} or 'all', got {switch!r}")
    return [switch]


def run(switch: str, repeats: int = MIN_TRIALS, seconds: float = 1.0, n: int = 100_000, *,
        max_load: float = DEFAULT_MAX_LOAD, require_quiet: bool = False, alpha: float = ALPHA,
        runner: Callable[[str, str, float, int], dict] = subprocess_trial,
        load: Callable[[], list | None] = loadavg, stat_path: str = "/proc/stat",
        progress: Callable[[str], None] | None = None) -> dict:
    """A/B ``switch`` (or every switch, ``"all"``): ``repeats`` trials per arm, alternating.

    Returns the results dict (see the module docstring). ``require_quiet``: raise
    ``RuntimeError`` without running when the 1-minute load average exceeds ``max_load``.
    ``runner(switch, arm, seconds, n)`` runs one trial (default: a fresh process).
    """
    names = _switches(switch)
    if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 1:
        raise ValueError(f"repeats must be an integer >= 1, got {repeats!r}")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha!r}")
    if require_quiet:
        busy = check_quiet(max_load, load)
        if busy:
            raise RuntimeError(busy)
    from datetime import datetime, timezone
    from tallyio.bench.kpi import machine_info
    say = progress or (lambda msg: None)
    cpu0 = cpu_times(stat_path)
    meta = {"started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "machine": machine_info(), "loadavg_before": load(), "cpu_times_before": cpu0,
            "own_cpu_s_before": own_cpu_s(), "repeats": repeats, "seconds_per_run": seconds, "saturation_rows": n,
            "alpha": alpha, "test": "two-sided Mann-Whitney U", "min_trials": MIN_TRIALS,
            "max_load": max_load, "arms": {s: ARMS[s] for s in names}}
    out: dict = {"schema": 1, "kind": "ab", "meta": meta, "switches": {}}
    for name in names:
        trials: dict = {"on": [], "off": []}
        errors: dict = {"on": None, "off": None}
        for rep in range(repeats):
            for arm in (("on", "off") if rep % 2 == 0 else ("off", "on")):
                say(f"{name} {arm} trial {rep + 1}/{repeats}")
                la = load()
                t0 = time.time()
                r = dict(runner(name, arm, seconds, n))
                if "error" in r:
                    errors[arm] = r["error"]
                    continue
                r.update(repeat=rep, loadavg_before=la, wall_s=time.time() - t0)
                trials[arm].append(r)
        entry: dict = {"trials": trials, "errors": errors, "verdicts": {}}
        if trials["on"] and trials["off"]:
            for metric, higher in METRICS.items():
                entry["verdicts"][metric] = verdict([t[metric] for t in trials["on"]],
                                                    [t[metric] for t in trials["off"]], higher, alpha)
        out["switches"][name] = entry
    cpu1 = cpu_times(stat_path)
    meta.update(finished=datetime.now(timezone.utc).isoformat(timespec="seconds"),
                loadavg_after=load(), cpu_times_after=cpu1, own_cpu_s_after=own_cpu_s(),
                steal_fraction=steal_fraction(cpu0, cpu1))
    meta["others_fraction"] = others_fraction(meta)
    meta["noise"] = noise(meta, max_load)
    meta["noisy"] = bool(meta["noise"])
    return out


# ---- output -------------------------------------------------------------------------------------

def _fmt(metric: str, v: float) -> str:
    return f"{v:,.0f}" if metric == "throughput_tps" else f"{v / 1000:,.1f}"


def rows(d: dict) -> list[list[str]]:
    """The A/B table's rows: switch, metric, on median (min..max), off median (min..max), ratio,
    p, verdict (also what docs.py renders)."""
    out = []
    for name, e in d["switches"].items():
        if not e["verdicts"]:
            why = "; ".join(f"{arm}: {err}" for arm, err in e["errors"].items() if err) or "no trials"
            out.append([name, "-", "-", "-", "-", "-", f"could not run ({why})"])
            continue
        for metric, v in e["verdicts"].items():
            label = {"throughput_tps": "saturation tx/s", "p99": "P99 µs @100k/s",
                     "p50": "P50 µs @100k/s"}[metric]
            cell = lambda s: f"{_fmt(metric, s[0])} ({_fmt(metric, s[1])}–{_fmt(metric, s[2])})"  # noqa: E731
            out.append([name, label, cell(v["on"]), cell(v["off"]),
                        f"{v['ratio']:.2f}x" if v.get("ratio") else "-",
                        "-" if v["p"] is None else f"{v['p']:.3f}", v["verdict"]])
    return out


def format_ab(d: dict) -> str:
    m = d["meta"]
    la = lambda x: "?" if not x else " / ".join(f"{v:.2f}" for v in x)  # noqa: E731
    st = m.get("steal_fraction")
    lines = [f"A/B: {m['repeats']} trial(s) per arm, alternating, a fresh process each; verdict by "
             f"{m['test']} at alpha {m['alpha']} (>= {m['min_trials']} trials per arm)",
             f"load average before {la(m.get('loadavg_before'))}, after {la(m.get('loadavg_after'))}; "
             f"steal {'?' if st is None else f'{100 * st:.2f}%'}"]
    if m.get("noisy"):
        lines.append("NOISY: " + "; ".join(m["noise"]) + " -- do not publish these numbers")
    head = ["switch", "metric", "on: median (min–max)", "off: median (min–max)", "on/off", "p", "verdict"]
    table = [head] + rows(d)
    widths = [max(len(r[i]) for r in table) for i in range(len(head))]
    for r in table:
        lines.append("  " + "  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
    return "\n".join(lines)
