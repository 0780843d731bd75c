"""Render the KPI plots for docs/performance.md from a results JSON (``tallyio bench kpi --json``).

    python -m tallyio.bench.plots results.json docs/img

writes ``latency_curve.png`` (P50 and P99 against load factor, TallyIO and each peer) and
``throughput_threads.png`` (throughput and P99 against producer threads).
"""
from __future__ import annotations

import json
import os
import sys


STYLES = {"tallyio": "-", "batched": "--", "plain": ":", "engine_only": "-."}


def render(results: dict, outdir: str) -> list[str]:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from tallyio.bench.kpi import ENGINES, LABELS, TARGETS

    os.makedirs(outdir, exist_ok=True)
    written = []
    lat = results["latency_under_load"]
    lfs = sorted(lat, key=float)
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    for engine in ENGINES:
        if engine not in lat[lfs[0]]:
            continue
        for q, color in (("p50", "tab:green"), ("p99", "tab:red")):
            ys = [lat[lf][engine][q] / 1000 for lf in lfs]
            ax.plot([float(lf) * 100 for lf in lfs], ys, STYLES[engine], color=color, marker="o",
                    ms=3, label=f"{LABELS[engine]} {q}")
    for lf, t in TARGETS["latency_under_load"].items():
        if "p99" in t:
            ax.plot([float(lf) * 100], [t["p99"][1] / 1000], "v", color="black", ms=7)
    ax.plot([], [], "v", color="black", label="P99 targets")
    ax.set_yscale("log")
    ax.set_xlabel("offered load (k tx/s, open loop)")
    ax.set_ylabel("latency of decided rows from scheduled send (µs)")
    ax.set_title("latency_under_load: TallyIO and its peers (medians of runs)")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    path = os.path.join(outdir, "latency_curve.png")
    fig.savefig(path, dpi=110)
    written.append(path)
    plt.close(fig)

    conc = results["concurrent_operations"]
    ths = sorted(conc, key=int)
    fig, ax1 = plt.subplots(figsize=(7.5, 4.8))
    ax2 = ax1.twinx()
    for engine in ENGINES:
        if engine not in conc[ths[0]]:
            continue
        xs = [int(t) for t in ths]
        ax1.plot(xs, [conc[t][engine]["throughput_tps"] / 1000 for t in ths], STYLES[engine],
                 color="tab:blue", marker="o", ms=3, label=f"{LABELS[engine]} throughput")
        ax2.plot(xs, [conc[t][engine]["p99"] / 1000 for t in ths], STYLES[engine], color="tab:red",
                 marker="s", ms=3, label=f"{LABELS[engine]} P99")
    ax1.set_xlabel("producer threads (100k tx/s offered in total)")
    ax1.set_ylabel("throughput of decided rows (k tx/s)", color="tab:blue")
    ax2.set_ylabel("P99 (µs)", color="tab:red")
    ax2.set_yscale("log")
    ax1.set_xticks([int(t) for t in ths])
    ax1.set_title("concurrent_operations: TallyIO and its peers (medians of runs)")
    h1, l1 = ax1.get_legend_handles_labels()
    h2, l2 = ax2.get_legend_handles_labels()
    ax1.legend(h1 + h2, l1 + l2, fontsize=7, ncol=2)
    fig.tight_layout()
    path = os.path.join(outdir, "throughput_threads.png")
    fig.savefig(path, dpi=110)
    written.append(path)
    plt.close(fig)
    return written


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    with open(argv[0]) as f:
        results = json.load(f)
    for p in render(results, argv[1]):
        print(p)
    return 0


if __name__ == "__main__":
    sys.exit(main())
