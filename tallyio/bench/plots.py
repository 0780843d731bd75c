"""Render the KPI plots for docs/performance.md from a results JSON (``tallyio bench kpi --json``).

    python -m tallyio.bench.plots results.json docs/img

writes ``latency_curve.png`` (P50..P99.9 against load factor, both engines) and
``throughput_threads.png`` (throughput and P99 against producer threads).
"""
from __future__ import annotations

import json
import os
import sys


def render(results: dict, outdir: str) -> list[str]:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    os.makedirs(outdir, exist_ok=True)
    written = []
    lat = results["latency_under_load"]
    lfs = sorted(float(k) for k in lat)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for engine, style in (("tallyio", "-"), ("plain", "--")):
        for q, color in (("p50", "tab:green"), ("p95", "tab:blue"), ("p99", "tab:orange"),
                         ("p999", "tab:red")):
            ys = [lat[str(lf)][engine][q] / 1000 for lf in lfs]
            ax.plot([lf * 100 for lf in lfs], ys, style, color=color, marker="o",
                    label=f"{engine} {q}")
    ax.axhline(1000, color="grey", lw=0.8, ls=":", label="P99 target 1 ms")
    ax.set_yscale("log")
    ax.set_xlabel("offered load (k tx/s, open loop)")
    ax.set_ylabel("latency from scheduled send (µs)")
    ax.set_title("latency_under_load: TallyIO (solid) vs plain Python (dashed)")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    path = os.path.join(outdir, "latency_curve.png")
    fig.savefig(path, dpi=110)
    written.append(path)
    plt.close(fig)

    conc = results["concurrent_operations"]
    ths = sorted(int(k) for k in conc)
    fig, ax1 = plt.subplots(figsize=(7, 4.5))
    ax2 = ax1.twinx()
    for engine, style in (("tallyio", "-"), ("plain", "--")):
        ax1.plot(ths, [conc[str(t)][engine]["throughput_tps"] / 1000 for t in ths], style,
                 color="tab:blue", marker="o", label=f"{engine} throughput")
        ax2.plot(ths, [conc[str(t)][engine]["p99"] / 1000 for t in ths], style, color="tab:red",
                 marker="s", label=f"{engine} P99")
    ax1.set_xlabel("producer threads (100k tx/s offered in total)")
    ax1.set_ylabel("throughput (k tx/s)", color="tab:blue")
    ax2.set_ylabel("P99 (µs)", color="tab:red")
    ax2.set_yscale("log")
    ax1.set_xticks(ths)
    ax1.set_title("concurrent_operations: TallyIO (solid) vs plain Python (dashed)")
    h1, l1 = ax1.get_legend_handles_labels()
    h2, l2 = ax2.get_legend_handles_labels()
    ax1.legend(h1 + h2, l1 + l2, fontsize=7)
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
