"""The plan's KPIs, measured honestly: open-loop latency under load, concurrent producers,
saturation throughput and memory, for TallyIO's engine and three peers in the same run.

Engines (each benchmark runs every one, in the same process, alternating, ``repeats`` times):

* ``tallyio``: the engine with the example strategies (the registered processors);
* ``batched``: what a competent user writes without TallyIO: a ``queue.Queue`` of numpy batches
  (the generator puts what came due at each wake-up as one batch) and one worker thread calling
  each *reference* (pure-Python) strategy's ``process(batch)`` once per batch;
* ``plain``: the same queue and worker, one row per item (a per-item ``process`` call);
* ``engine_only``: TallyIO's engine with no strategy loaded: what the engine itself costs.

Honest accounting. Latency percentiles are over the rows that *every* strategy decided. Every
other offered row is counted by reason beside them (``breaker_open:<name>``, ``error:<name>``,
``expired``, ``ring_full``, ``ring_full_push``, ``engine_error``, ``duplicate``; for the peers also
``backlog``: rows still queued when the peer's drain limit ran out) and a run with any undecided
row fails every target, whatever its percentiles.

Open loop, one schedule. Row ``k`` of a run is due at ``t0 + k * 1e9 / rate`` (with several
producers, producer ``p`` of ``P`` offers rows ``p, p + P, ...`` of that one schedule) and is
stamped with that *scheduled* time; latency runs from the stamp to the decision, so a stall
anywhere, the generator included, shows up as latency (no coordinated omission). TallyIO's engine
is fed by its own pacers (``Engine.pacer``, a ``tallyio._core.ingest.Pacer``: waits GIL-free,
wakes at most every ``TICK_NS``, pushes what came due straight into the engine's ring). The plain
peers get the same schedule, tick and sleep policy from a Python loop (``paced_loop``): what a
user's feed handler would be.

The engine runs with its defaults (live mode for the open-loop runs: breakers and ``max_age``
expiry active; replay mode for the closed-loop saturation run), plus the feed's pools table as its
``[engine] pools``.
"""
from __future__ import annotations

import gc
import os
import platform
import queue
import statistics
import subprocess
import threading
import time

import numpy as np

from tallyio._core.clock import now_ns, wait_until
from tallyio._core.hist import LatencyHistogram
from tallyio.record import copy_rows
from tallyio.report import hist_summary

BASE_RATE = 100_000  # load factor 1.0, tx/s
TICK_NS = 20_000     # every generator wakes at most every 20 us
FEED_ROWS = 600_000  # covers load factor 5.0 for 1.2 s, or 1.0 for 6 s, without replaying a row
LOAD_FACTORS = (0.5, 1.0, 2.0, 5.0)
THREADS = (1, 2, 4, 8)
ENGINES = ("tallyio", "batched", "plain", "engine_only")
PEERS = ENGINES[1:]
LABELS = {"tallyio": "TallyIO", "batched": "batched plain", "plain": "per-item plain",
          "engine_only": "engine, no strategy"}
SATURATION_CHUNK = 8192       # rows per chunk the closed-loop feed hands over, every engine
PLAIN_SATURATION_ROWS = 100_000  # the per-item peer's saturation is measured over this many rows
DRAIN_LIMIT_S = 15.0          # a peer still busy this long after the last offer stops: the rest
                              # is counted undecided ("backlog"), so an overloaded peer ends
def _wait_policy() -> str:
    """The engine's wait policy as configured by default (what the KPI runs with), in words."""
    from tallyio.config import SCHEMA
    b = {k: spec[1] for k, spec in SCHEMA["batching"].items()}
    back = "sched_yield" if not b["sleep"] else f"sleeps of {b['sleep'] * 1e6:g} us"
    return (f"engine drain: batch_timeout {b['batch_timeout'] * 1e6:g} us (takes what is there), "
            f"spin {b['spin'] * 1e6:g} us, back off {b['backoff'] * 1e3:g} ms ({back})"
            f"{', then park on a futex' if b['park'] else ''}; generators: sleep to the next "
            f"row's time with 1 us timer slack, wake at most every 20 us (no spinning)")


WAIT_POLICY = _wait_policy()

GIB = 2 ** 30
# Targets for the ``tallyio`` engine, by benchmark and point: metric -> (op, limit). Latencies in
# ns. End-to-end P95 < 500 us applies to both load factors the latency targets name.
TARGETS: dict[str, dict[str, dict[str, tuple[str, float]]]] = {
    "latency_under_load": {
        "1.0": {"p50": ("<", 50_000), "p95": ("<", 500_000), "p99": ("<", 300_000)},
        "5.0": {"p50": ("<", 100_000), "p95": ("<", 500_000), "p99": ("<", 1_000_000)},
    },
    "concurrent_operations": {"8": {"p99": ("<", 1_000_000)}},
    "saturation": {"all": {"throughput_tps": (">=", 1_500_000), "vs_batched": (">=", 10.0),
                           "peak_rss_bytes": ("<", 2 * GIB)}},
    # `make run`: the bundled feed at its recorded 100k tx/s, in a fresh process of its own
    "bundled_feed": {"speed 1": {"planted_missed": ("==", 0), "breakers_opened": ("==", 0),
                                 "peak_rss_bytes": ("<", 150 * 2**20)}},
}
# the engines whose percentiles get medians and spreads in the results
METRICS = ("p50", "p95", "p99", "p999", "max", "throughput_tps", "decided", "offered",
           "rss_bytes", "peak_rss_bytes", "opportunities", "planted_missed", "breakers_opened")


# ---- the feed ----------------------------------------------------------------------------------

_WORKLOAD_CACHE: dict = {}
CACHE_DIR = os.environ.get("TALLYIO_BENCH_CACHE",
                           os.path.join(os.path.expanduser("~"), ".cache", "tallyio"))


def workload(n: int = FEED_ROWS, seed: int = 7):
    """A seeded synthetic feed with planted opportunities: ``(records, metadata)``.

    Long enough that a run does not replay it: replayed swaps would walk the pools' prices out of
    their no-arbitrage band and make the strategies' work grow pass after pass (measured: the
    arbitrage strategy goes from 1.2 to 11 us/row by the fourth pass). Generated once per machine
    and cached under ``$TALLYIO_BENCH_CACHE`` (default ``~/.cache/tallyio``).
    """
    key = (n, seed)
    if key not in _WORKLOAD_CACHE:
        from tallyio.feeds import SyntheticSource, read_feed, write_feed
        path = os.path.join(CACHE_DIR, f"kpi-feed-{n}-{seed}.npz")
        try:
            _WORKLOAD_CACHE[key] = read_feed(path)
        except Exception:  # absent or unreadable: build it
            src = SyntheticSource(seed=seed, n=n, rate=BASE_RATE, plant_arbitrage=max(1, n // 5000),
                                  plant_sandwich=max(1, n // 5000))
            os.makedirs(CACHE_DIR, exist_ok=True)
            write_feed(path + ".tmp.npz", src.records, **src.metadata)
            os.replace(path + ".tmp.npz", path)
            _WORKLOAD_CACHE[key] = (src.records, src.metadata)
    return _WORKLOAD_CACHE[key]


def pools_path(meta: dict, n: int = FEED_ROWS, seed: int = 7) -> str | None:
    """The feed's pools table as an .npz (the engine's ``[engine] pools``), written once."""
    keys = [k for k in meta if k.startswith(("pool_", "token_"))]
    if "pool_address" not in keys:
        return None
    path = os.path.join(CACHE_DIR, f"kpi-pools-{n}-{seed}.npz")
    if not os.path.exists(path):
        os.makedirs(CACHE_DIR, exist_ok=True)
        np.savez(path + ".tmp.npz", **{k: meta[k] for k in keys})
        os.replace(path + ".tmp.npz", path)
    return path


# ---- strategies --------------------------------------------------------------------------------

def strategies(names=None) -> dict:
    """The registered processor factories (the example strategies), by name."""
    from tallyio.plugins import collect, get_plugin_manager
    reg = collect(get_plugin_manager())
    if names is None:
        return dict(reg.processors)
    return {n: reg.processors[n] for n in names}


REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _qualname(obj) -> str:
    owner = getattr(obj, "__self__", None)  # a bound classmethod such as Cls.from_options
    target = owner if isinstance(owner, type) else obj
    return f"{getattr(target, '__module__', '?')}.{getattr(target, '__qualname__', repr(target))}"


# the example strategies the KPI benchmarks are defined with (each has a pure-Python reference)
KPI_STRATEGIES = ("arbitrage", "sandwich")


def reference_strategies(names=None) -> tuple[dict, dict]:
    """``(factories, provenance)``: the strategies the plain peers run, by name, and where each
    came from: the pure-Python reference of each example strategy (``tallyio.strategy_reference``,
    the processors as they were before the compiled book), else the registered processor."""
    from tallyio import strategy_reference
    reference = {"arbitrage": strategy_reference.ArbitrageProcessor,
                 "sandwich": strategy_reference.SandwichProcessor}
    factories, provenance = {}, {}
    for name, registered in strategies(names).items():
        if name in reference:
            factories[name] = reference[name]
            provenance[name] = f"reference {_qualname(reference[name])}"
        else:
            factories[name] = registered
            provenance[name] = (f"registered processor {_qualname(registered)} (no pure-Python "
                                f"reference)")
    return factories, provenance


def _instances(factories: dict, metadata: dict) -> list:
    procs = []
    for name, factory in factories.items():
        p = factory()
        on_feed = getattr(p, "on_feed", None)
        if on_feed is not None:
            on_feed(metadata)
        procs.append((name, p))
    return procs


# ---- accounting --------------------------------------------------------------------------------

def settle(offered: int, decided: int, undecided: dict) -> dict[str, int]:
    """The undecided rows by reason, nonzero only, with any offered row neither decided nor given
    a reason counted as ``unaccounted`` (so ``decided + sum(undecided) >= offered`` always)."""
    out = {str(k): int(v) for k, v in undecided.items() if v}
    missing = offered - decided - sum(out.values())
    if missing > 0:
        out["unaccounted"] = out.get("unaccounted", 0) + missing
    return out


def engine_accounting(report) -> tuple[int, dict[str, int]]:
    """``(decided, undecided by reason)`` from an engine report.

    With the report's own ``decided`` / ``undecided`` (rows every processor decided; the rest by
    reason), those. Otherwise (an older report): every rejection, each processor's skipped rows
    (already in ``rejected`` as ``breaker_open:<name>``) taken out of ``processed``, and each
    processor's errors as ``error:<name>`` (batches, the only count an older report keeps).
    """
    decided = getattr(report, "decided", None)
    if decided is not None:
        undecided = dict(getattr(report, "undecided", {}) or {})
        dup = report.rejected.get("duplicate", 0)  # dropped by design, but not decided
        if dup and "duplicate" not in undecided:
            undecided["duplicate"] = dup
        return int(decided), {k: int(v) for k, v in undecided.items() if v}
    undecided = {k: int(v) for k, v in report.rejected.items() if v}
    skipped = sum(v for k, v in undecided.items() if k.startswith("breaker_open:"))
    for name, p in report.processors.items():
        if p.get("errors"):
            undecided["error:" + name] = int(p["errors"])
    return max(0, int(report.processed) - skipped), undecided


def judge(bench: str, point: str, results: dict) -> dict:
    """The verdicts of one benchmark point: ``{metric: {value, op, limit, verdict}}``.

    ``results`` maps engine -> aggregated summary; targets apply to ``tallyio``. A run with any
    undecided row fails every target (and the ``undecided`` check itself), whatever the numbers.
    """
    targets = TARGETS.get(bench, {}).get(point)
    if not targets or "tallyio" not in results:
        return {}
    t = results["tallyio"]
    undecided = sum(t.get("undecided", {}).values())
    clean = undecided == 0
    out = {"undecided": {"value": undecided, "op": "==", "limit": 0,
                         "verdict": "PASS" if clean else "FAIL"}}
    for metric, (op, limit) in targets.items():
        if metric == "vs_batched":
            peer = results.get("batched", {}).get("throughput_tps")
            value = t["throughput_tps"] / peer if peer else float("nan")
        elif op == "==":  # a count that must be zero in every run: the worst run's
            value = t.get("spread", {}).get(metric, [None, float("nan")])[1]
        else:
            value = t.get(metric, float("nan"))
        ok = {"<": value < limit, "<=": value <= limit, ">": value > limit,
              ">=": value >= limit, "==": value == limit}[op]
        out[metric] = {"value": value, "op": op, "limit": limit,
                       "verdict": "PASS" if ok and clean else "FAIL"}
    return out


def ratios(results: dict, latency: bool = True) -> dict:
    """Each peer against TallyIO: latency peer/tallyio (above 1: TallyIO lower; with ``latency``
    only, as a closed-loop run's latency is its queue), throughput tallyio/peer (above 1: TallyIO
    higher)."""
    t = results.get("tallyio")
    if t is None:
        return {}
    out = {}
    for peer in PEERS:
        p = results.get(peer)
        if p is None:
            continue
        r = {}
        for q in ("p50", "p99") if latency else ():
            if q in p and q in t:
                r[q] = p[q] / t[q] if t[q] else float("nan")
        if p.get("throughput_tps"):
            r["throughput_tps"] = t["throughput_tps"] / p["throughput_tps"]
        out[peer] = r
    return out


def aggregate(runs: list[dict]) -> dict:
    """One engine at one point over its repeats: the median of each metric, its ``spread``
    (min, max), undecided rows summed over the runs and ``runs_with_undecided``."""
    out: dict = {"repeats": len(runs), "spread": {}}
    for m in METRICS:
        vals = [r[m] for r in runs if r.get(m) is not None]
        if vals:
            out[m] = statistics.median(vals)
            out["spread"][m] = [min(vals), max(vals)]
    undecided: dict = {}
    for r in runs:
        for k, v in r.get("undecided", {}).items():
            undecided[k] = undecided.get(k, 0) + v
    out["undecided"] = undecided
    out["runs_with_undecided"] = sum(1 for r in runs if any(r.get("undecided", {}).values()))
    out["runs"] = runs
    return out


def _rss() -> int:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):
        return 0


def _peak_rss() -> int:
    from tallyio.report import peak_rss_bytes
    return peak_rss_bytes()


# ---- the plain peers ---------------------------------------------------------------------------

class _PlainBase:
    """A ``queue.Queue`` and one worker thread running each strategy on every item it takes."""

    def __init__(self, processors: list):
        self.q: queue.Queue = queue.Queue()
        self.processors = processors
        self.hist = LatencyHistogram()
        self.offered = self.taken = self.decided = self.opportunities = 0
        self.errors: dict[str, int] = {}
        self.first_ns = self.last_ns = 0
        self._abort = self._last = False
        self.worker = threading.Thread(target=self._work, name=f"{type(self).__name__}-worker",
                                       daemon=True)
        self.worker.start()

    def _run(self, item) -> bool:
        ok = True
        for name, p in self.processors:
            try:
                found = p.process(item)
                if found:
                    self.opportunities += len(found)
            except Exception:
                self.errors["error:" + name] = self.errors.get("error:" + name, 0) + len(item)
                ok = False
        return ok

    def _take(self, item):
        return item

    def _work(self):
        get = self.q.get
        while not self._abort and not self._last:
            item = get()
            if item is None:
                break
            item = self._take(item)
            self.taken += len(item)
            ok = self._run(item)
            t = now_ns()
            if ok:
                self._record(item, t)
                self.decided += len(item)
            self.last_ns = t
        for _, p in self.processors:  # as the engine flushes its processors at stop
            flush = getattr(p, "flush", None)
            if flush is not None and not self._abort:
                try:
                    self.opportunities += len(flush() or ())
                except Exception:
                    pass

    def close(self, limit: float = DRAIN_LIMIT_S) -> None:
        """Let the worker finish what is queued, for at most ``limit`` seconds; what is still
        queued then is counted as ``backlog``."""
        self.q.put(None)
        self.worker.join(limit)
        if self.worker.is_alive():
            self._abort = True
            self.worker.join()

    def summary(self) -> dict:
        undecided = dict(self.errors)
        backlog = self.offered - self.taken
        if backlog:
            undecided["backlog"] = backlog
        span = (self.last_ns - self.first_ns) / 1e9 if self.last_ns > self.first_ns else 0.0
        return dict(hist_summary(self.hist), offered=self.offered, decided=self.decided,
                    undecided=settle(self.offered, self.decided, undecided),
                    throughput_tps=self.decided / span if span else 0.0, duration_s=span,
                    opportunities=self.opportunities, rss_bytes=_rss(), peak_rss_bytes=_peak_rss())


class PlainEngine(_PlainBase):
    """queue.Queue + one worker thread + a per-item strategy call: the engine without TallyIO,
    written row by row."""

    def submit(self, rows) -> int:
        put = self.q.put
        for i in range(len(rows)):
            put(rows[i:i + 1])
        return len(rows)

    def _record(self, item, t):
        self.hist.record(max(0, t - int(item["arrival_ns"][0])))


class BatchedPlainEngine(_PlainBase):
    """queue.Queue of numpy batches + one worker thread calling each strategy once per batch:
    what a competent user writes without TallyIO.

    The worker takes whatever is queued, up to ``max_batch`` rows (the engine's default batch
    size), as one batch, so that a backlog is worked off in batches instead of wake-up by
    wake-up; it never waits for a batch to fill."""

    def __init__(self, processors: list, max_batch: int = 256):
        self.max_batch = max_batch
        super().__init__(processors)

    def _take(self, item):
        parts, n = [item], len(item)
        while n < self.max_batch:
            try:
                more = self.q.get_nowait()
            except queue.Empty:
                break
            if more is None:  # closing: this is the last batch
                self._last = True
                break
            parts.append(more)
            n += len(more)
        return item if len(parts) == 1 else np.concatenate(parts)

    def submit(self, rows) -> int:
        if len(rows):
            self.q.put(rows)
        return len(rows)

    def _record(self, item, t):
        self.hist.record_many(np.maximum(t - item["arrival_ns"], 0))


PEER_CLASSES = {"batched": BatchedPlainEngine, "plain": PlainEngine}


def _fine_timer() -> None:
    """1 us timer slack for the calling thread, as the engine's pacer sets for itself."""
    try:
        import ctypes
        ctypes.CDLL(None).prctl(29, 1000, 0, 0, 0)  # PR_SET_TIMERSLACK
    except Exception:
        pass


def schedule(n: int, rate: float, t0: int, offset: int = 0, stride: int = 1) -> np.ndarray:
    """Scheduled send times of ``n`` rows: row ``k`` at ``t0 + (offset + k*stride) * 1e9/rate``
    (the pacer's formula)."""
    return t0 + ((offset + np.arange(n, dtype=np.uint64) * stride) * (1e9 / rate)).astype(np.int64)


def paced_loop(submit, rows: np.ndarray, rate: float, t0: int, *, offset: int = 0,
               stride: int = 1, tick_ns: int = TICK_NS, stop: threading.Event | None = None) -> int:
    """The pacer's schedule from Python: at each wake-up, stamp the rows that came due with their
    scheduled times and ``submit`` them in one call; sleep to the next row's time, at most every
    ``tick_ns``. Returns the rows offered."""
    _fine_timer()
    sched = schedule(len(rows), rate, t0, offset, stride)
    n, i = len(rows), 0
    arrival = rows["arrival_ns"]
    while i < n and not (stop is not None and stop.is_set()):
        now = now_ns()
        due = int(np.searchsorted(sched, now, "right"))
        if due <= i:
            wait_until(max(int(sched[i]), now + tick_ns), 0)
            continue
        arrival[i:due] = sched[i:due]
        submit(rows[i:due])
        i = due
    return i


# ---- TallyIO's engine --------------------------------------------------------------------------

def _tallyio_engine(factories, config=None):
    from tallyio.engine import Engine
    from tallyio.plugins import get_plugin_manager
    cfg = {"plugins": {"processors": list(factories)}}
    for section, table in (config or {}).items():
        cfg.setdefault(section, {}).update(table)
    # no factories: the engine alone, no strategy plugin loaded
    return Engine(cfg, plugin_manager=get_plugin_manager(entry_points_enabled=bool(factories)))


def _with_pools(config, meta):
    """The run's config with the feed's pools table as the engine's ``[engine] pools``."""
    cfg = {k: dict(v) for k, v in (config or {}).items()}
    path = pools_path(meta)
    if path is not None:
        cfg.setdefault("engine", {}).setdefault("pools", path)
    return cfg


def _start(factories, meta, config=None):
    eng = _tallyio_engine(factories, _with_pools(config, meta) if factories else config)
    eng.start(None)
    if getattr(eng, "book", None) is None:  # an engine without its own pool book: the strategies
        for slot in eng.slots:                 # take the feed's table themselves
            on_feed = getattr(slot.proc, "on_feed", None)
            if on_feed is not None:
                on_feed(meta)
    return eng


class _as_ingest_thread:
    """Pin the calling thread where the engine plans its ingest thread (when cpu_affinity is
    live), and restore its CPU set after."""

    def __init__(self, eng, active: bool = True):
        self.eng = eng
        self.active = active
        self.previous = None

    def __enter__(self):
        if self.active and self.eng.switches["cpu_affinity"]["active"]:
            from tallyio.system import pin_thread
            self.previous = pin_thread(self.eng.plan.cpu_of("mempool_ingest"))
        return self

    def __exit__(self, *exc):
        if self.previous is not None:
            from tallyio.system import pin_thread
            pin_thread(self.previous)
        return False


def _pace_into_engine(eng, shares: list, rate: float, t0: int) -> int:
    """Pace each share (contiguous rows; share ``p`` of ``P`` holds schedule slots ``p, p+P, ...``)
    into the engine's ring through the engine's own pacers (``Engine.pacer``), one producer thread
    per share (the calling thread when one). Returns the rows offered."""
    pacers = [eng.pacer(rate=rate, t0_ns=t0, offset=k, stride=len(shares), tick_ns=TICK_NS)
              for k in range(len(shares))]
    if len(shares) == 1:
        with _as_ingest_thread(eng):  # the generator plays the feed handler: the ingest CPU
            done = [pacers[0].run(shares[0])]
    else:
        done = [0] * len(shares)

        def produce(k):
            done[k] = pacers[k].run(shares[k])

        ts = [threading.Thread(target=produce, args=(k,), name=f"kpi-producer-{k}")
              for k in range(len(shares))]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
    return sum(done)


def _engine_summary(report, offered: int) -> dict:
    decided, undecided = engine_accounting(report)
    span = report.duration_s
    procs = {n: {q: p.get(q) for q in ("p50", "p99", "batches", "errors", "skipped_rows",
                                        "breaker_state")}
             for n, p in report.processors.items()}
    return dict(report.latency_ns, offered=offered, decided=decided,
                undecided=settle(offered, decided, undecided),
                throughput_tps=decided / span if span else 0.0, duration_s=span,
                mean_batch=report.mean_batch, stages=report.stages, processors=procs,
                opportunities=getattr(report, "opportunities_total", len(report.opportunities)),
                mode=getattr(report, "mode", None), rss_bytes=_rss(),
                peak_rss_bytes=report.peak_rss_bytes)


def _shares(rows: np.ndarray, producers: int) -> list[np.ndarray]:
    """Contiguous, writable copies of each producer's slots ``p, p+P, ...`` of ``rows``."""
    return [copy_rows(np.ascontiguousarray(rows[k::producers])) for k in range(producers)]


def _run_engine(engine: str, factories, meta, rows, rate, producers, config=None) -> dict:
    shares = _shares(rows, producers)
    gc.collect()
    eng = _start(factories if engine == "tallyio" else {}, meta, config)
    t0 = now_ns() + 2_000_000
    offered = _pace_into_engine(eng, shares, rate, t0)
    eng.wait(DRAIN_LIMIT_S + 60)
    return _engine_summary(eng.stop(), offered)


def _run_peer(engine: str, ref_factories, meta, rows, rate, producers,
              drain_limit: float = DRAIN_LIMIT_S) -> dict:
    shares = _shares(rows, producers)
    gc.collect()
    pe = PEER_CLASSES[engine](_instances(ref_factories, meta))
    t0 = now_ns() + 2_000_000
    pe.first_ns = t0
    if producers == 1:
        pe.offered = paced_loop(pe.submit, shares[0], rate, t0)
    else:
        offered = [0] * producers

        def produce(k):  # queue.Queue is thread-safe: each producer puts its own share
            offered[k] = paced_loop(pe.submit, shares[k], rate, t0, offset=k, stride=producers)

        ts = [threading.Thread(target=produce, args=(k,), name=f"kpi-producer-{k}")
              for k in range(producers)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        pe.offered = sum(offered)
    pe.close(drain_limit)
    return pe.summary()


def _offered_rows(rate: float, seconds: float) -> np.ndarray:
    records, _ = workload(FEED_ROWS)
    n = min(int(rate * seconds), len(records))  # never replay a row within a run
    return records[:n]


def run_point(engine: str, rate: float, seconds: float, producers: int = 1, *, config=None,
              names=None, drain_limit: float = DRAIN_LIMIT_S) -> dict:
    """One engine, one open-loop run: ``producers`` generators together offer ``rate`` tx/s for
    ``seconds``; the run's summary."""
    _, meta = workload(FEED_ROWS)
    rows = _offered_rows(rate, seconds)
    if engine in ("tallyio", "engine_only"):
        return _run_engine(engine, strategies(names), meta, rows, rate, producers, config)
    return _run_peer(engine, reference_strategies(names)[0], meta, rows, rate, producers,
                     drain_limit)


def latency_under_load(load_factor: float, seconds: float = 2.0, *, plain: bool = True,
                       config=None, names=None, engines=None) -> dict:
    """One run per engine at ``load_factor`` x 100k tx/s offered open-loop: ``{engine: summary}``.
    ``plain=False``: TallyIO's engine only (``names=[]``: with no strategy)."""
    engines = engines or (ENGINES if plain else ("tallyio",))
    return {e: run_point(e, load_factor * BASE_RATE, seconds, config=config, names=names)
            for e in engines}


def concurrent_operations(threads: int, seconds: float = 2.0, *, plain: bool = True,
                          names=None, engines=None) -> dict:
    """``threads`` producers together offer 100k tx/s open-loop: ``{engine: summary}``."""
    engines = engines or (ENGINES if plain else ("tallyio",))
    return {e: run_point(e, BASE_RATE, seconds, threads, names=names) for e in engines}


class _Replay:
    """A recorded feed replayed as fast as possible, in fixed chunks (as ``FileSource``)."""

    replay = True

    def __init__(self, rows, chunk, metadata):
        self.rows, self.chunk, self.metadata = rows, chunk, metadata

    def __iter__(self):
        for i in range(0, len(self.rows), self.chunk):
            yield self.rows[i:i + self.chunk]


def saturation_point(engine: str, n: int = FEED_ROWS, *, config=None, names=None,
                     drain_limit: float = DRAIN_LIMIT_S) -> dict:
    """Closed loop: the feed's first ``n`` rows offered as fast as possible, in chunks of
    ``SATURATION_CHUNK``; throughput over the decided rows (the per-item peer: its first
    ``PLAIN_SATURATION_ROWS``)."""
    records, meta = workload(FEED_ROWS)
    if not 1 <= n <= len(records):
        raise ValueError(f"n must be in [1, {len(records)}] (the KPI feed), got {n}")
    gc.collect()
    if engine in ("tallyio", "engine_only"):
        factories = strategies(names) if engine == "tallyio" else {}
        cfg = _with_pools(config, meta) if factories else config
        eng = _tallyio_engine(factories, cfg)
        report = eng.run(_Replay(records[:n], SATURATION_CHUNK, meta))
        return _engine_summary(report, n)
    if engine == "plain":
        n = min(n, PLAIN_SATURATION_ROWS)
    rows = copy_rows(records[:n])
    pe = PEER_CLASSES[engine](_instances(reference_strategies(names)[0], meta))
    t0 = now_ns()
    pe.first_ns = t0
    rows["arrival_ns"] = t0
    for i in range(0, n, SATURATION_CHUNK):
        pe.offered += pe.submit(rows[i:i + SATURATION_CHUNK])
    pe.close(drain_limit)
    return pe.summary()


def bundled_feed_point(engine: str = "tallyio", speed: float = 1.0) -> dict:
    """``tallyio run --speed 1`` (what ``make run`` runs) in a fresh process, so that its peak RSS
    is its own: the report's latency, accounting, planted opportunities found and breakers."""
    import json
    import sys
    import tempfile
    if engine != "tallyio":
        raise ValueError(f"the bundled-feed point runs TallyIO's command only, got {engine!r}")
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "report.json")
        p = subprocess.run([sys.executable, "-m", "tallyio", "run", "--speed", str(speed), "-q",
                            "--show", "0", "--json", path], capture_output=True, text=True,
                           timeout=600)
        if p.returncode != 0:
            raise RuntimeError(f"tallyio run exited {p.returncode}: {p.stderr[-2000:]}")
        with open(path) as f:
            r = json.load(f)
    planted = r.get("planted") or {}
    return dict(r["latency_ns"], offered=r["ingested"], decided=r["decided"],
                undecided=settle(r["ingested"], r["decided"], r["undecided"]),
                throughput_tps=r["throughput_tps"], duration_s=r["duration_s"],
                mean_batch=r["mean_batch"], stages=r["stages"],
                opportunities=r["opportunities_total"], peak_rss_bytes=r["peak_rss_bytes"],
                planted=planted.get("planted"),
                planted_missed=len(planted["missed"]) if planted else None,
                breakers_opened=sum(1 for d in r["processors"].values()
                                    if d["breaker_state"] != "closed" or d["skipped_rows"]),
                mode=r["mode"])


def saturation(n: int = 200_000, *, plain: bool = True, config=None, names=None,
               engines=None) -> dict:
    """Throughput at saturation, one run per engine: ``{engine: summary}``."""
    engines = engines or (ENGINES if plain else ("tallyio",))
    return {e: saturation_point(e, n, config=config, names=names) for e in engines}


def rss_over_time(seconds: float = 10.0, load_factor: float = 1.0, every: float = 0.5) -> list:
    """RSS samples (s, bytes) while the engine runs at ``load_factor`` for ``seconds``."""
    _, meta = workload(FEED_ROWS)
    rate = load_factor * BASE_RATE
    shares = _shares(_offered_rows(rate, seconds), 1)
    eng = _start(strategies(), meta)
    samples = []
    t0 = now_ns() + 1_000_000
    gen = threading.Thread(target=_pace_into_engine, args=(eng, shares, rate, t0))
    gen.start()
    start = time.monotonic()
    while gen.is_alive():
        samples.append((round(time.monotonic() - start, 2), _rss()))
        gen.join(every)
    eng.wait(60)
    eng.stop()
    return samples


# ---- the suite ---------------------------------------------------------------------------------

def _git(*args) -> str | None:
    try:
        p = subprocess.run(["git", *args], cwd=REPO_ROOT, capture_output=True, text=True,
                           timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return p.stdout.strip() if p.returncode == 0 else None


def machine_info() -> dict:
    """CPU model, CPU counts, Python and numpy versions, and the git commit being measured."""
    model = platform.processor() or ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        allowed = len(os.sched_getaffinity(0))
    except AttributeError:
        allowed = os.cpu_count()
    status = _git("status", "--porcelain", "--untracked-files=no")
    try:
        import Cython
        cython = Cython.__version__
    except ImportError:
        cython = None
    return {"cpu_model": model, "nproc": os.cpu_count(), "cpus_allowed": allowed,
            "platform": platform.platform(), "python": platform.python_version(),
            "numpy": np.__version__, "cython": cython,
            "commit": _git("rev-parse", "HEAD"),
            "dirty": bool(status) if status is not None else None}


def _points(quick: bool):
    lfs = (1.0, 5.0) if quick else LOAD_FACTORS
    threads = (1, 8) if quick else THREADS
    return ([("latency_under_load", str(lf), lf * BASE_RATE, 1) for lf in lfs]
            + [("concurrent_operations", str(t), BASE_RATE, t) for t in threads])


def kpi_results(quick: bool = False, repeats: int = 3, *, seconds: float | None = None,
                engines=ENGINES, progress=None) -> dict:
    """Run the KPI suite; a JSON-able dict (what ``tallyio bench kpi --json`` writes).

    Every benchmark point runs each engine ``repeats`` times, the engines alternating (their order
    rotates each repeat); each engine's summary holds the median of every metric, its spread and
    the raw runs. ``quick``: shorter runs and only the points with targets.
    """
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    secs = seconds if seconds is not None else (0.5 if quick else 2.0)
    drain = 5.0 if quick else DRAIN_LIMIT_S
    sat_n = 200_000 if quick else FEED_ROWS
    say = progress or (lambda msg: None)
    workload(FEED_ROWS)  # built or read before anything is timed
    from datetime import datetime, timezone
    results: dict = {
        "schema": 2,
        "meta": {"started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                 "machine": machine_info(), "loadavg_before": list(os.getloadavg()),
                 "repeats": repeats, "quick": quick, "seconds_per_run": secs,
                 "drain_limit_s": drain, "saturation_rows": sat_n,
                 "plain_saturation_rows": min(sat_n, PLAIN_SATURATION_ROWS),
                 "wait_policy": WAIT_POLICY, "engines": list(engines),
                 "reference": reference_strategies()[1], "targets": TARGETS},
    }
    points = [(b, k, (lambda e, r=rate, p=prod: run_point(e, r, secs, p, drain_limit=drain)))
              for b, k, rate, prod in _points(quick)]
    points.append(("saturation", "all",
                   lambda e: saturation_point(e, sat_n, drain_limit=drain)))
    points.append(("bundled_feed", "speed 1", bundled_feed_point))
    for bench, key, fn in points:
        these = ("tallyio",) if bench == "bundled_feed" else engines
        runs: dict = {e: [] for e in these}
        for rep in range(repeats):
            order = list(these[rep % len(these):]) + list(these[:rep % len(these)])
            for e in order:
                say(f"{bench} {key} {e} run {rep + 1}/{repeats}")
                runs[e].append(fn(e))
        agg = {e: aggregate(r) for e, r in runs.items()}
        agg["verdicts"] = judge(bench, key, agg)
        agg["ratios"] = ratios(agg, latency=bench != "saturation")
        results.setdefault(bench, {})[key] = agg
    results["meta"]["finished"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    results["meta"]["loadavg_after"] = list(os.getloadavg())
    results["meta"]["peak_rss_bytes"] = _peak_rss()
    results["verdicts"] = verdict_list(results)
    results["passed"] = bool(results["verdicts"]) and all(
        v["verdict"] == "PASS" for v in results["verdicts"])
    return results


BENCHES = ("latency_under_load", "concurrent_operations", "saturation", "bundled_feed")


def verdict_list(results: dict) -> list[dict]:
    """Every target of a results dict, flat: ``{benchmark, point, metric, value, op, limit,
    verdict}``."""
    out = []
    for bench in BENCHES:
        for key, agg in results.get(bench, {}).items():
            for metric, v in agg.get("verdicts", {}).items():
                out.append(dict(v, benchmark=bench, point=key, metric=metric))
    return out


# ---- the text table (``tallyio bench kpi``) ----------------------------------------------------

def _us(ns) -> str:
    return "-" if ns is None else f"{ns / 1000:,.1f}"


def format_value(metric: str, value) -> str:
    if value is None or value != value:  # NaN
        return "-"
    if metric.startswith("p") and metric[1:].isdigit() or metric == "max":
        return f"{value / 1000:,.1f} us"
    if metric == "throughput_tps":
        return f"{value:,.0f} tx/s"
    if metric.endswith("rss_bytes"):
        return f"{value / 2**20:,.0f} MiB"
    if metric.startswith("vs_"):
        return f"{value:,.2f}x"
    return f"{value:,}"


def format_undecided(u: dict) -> str:
    return ", ".join(f"{k}={v:,}" for k, v in sorted(u.items())) or "0"


def kpi_table(results: dict) -> str:
    """The KPI tables with targets, verdicts, undecided rows and ratios against each peer."""
    meta = results.get("meta", {})
    m = meta.get("machine", {})
    dirty = " (dirty)" if m.get("dirty") else ""
    lines = [f"KPI: medians of {meta.get('repeats')} run(s), {meta.get('seconds_per_run')} s per "
             f"open-loop run; commit {str(m.get('commit'))[:12]}{dirty}; "
             f"{m.get('cpu_model')}, {m.get('cpus_allowed')} CPUs; load avg "
             f"{_load(meta.get('loadavg_before'))} -> {_load(meta.get('loadavg_after'))}",
             f"wait policy: {meta.get('wait_policy')}"]
    hdr = (f"{'benchmark':<22}{'engine':<20}{'p50 us':>13}{'p95 us':>13}{'p99 us':>13}"
           f"{'p99.9 us':>13}{'tx/s':>10}{'found':>7}  undecided / verdicts")
    for bench in BENCHES[:2]:
        for key, agg in results.get(bench, {}).items():
            lines += ["", hdr, "-" * len(hdr)]
            name = f"{bench.split('_')[0]} {'lf' if bench.startswith('lat') else 'threads'}={key}"
            for e in ENGINES:
                if e not in agg:
                    continue
                d = agg[e]
                note = format_undecided(d["undecided"])
                if e == "tallyio" and agg.get("verdicts"):
                    note += "  " + _marks(agg["verdicts"])
                pct = "".join(f"{_us(d.get(q)):>13}" for q in ("p50", "p95", "p99", "p999"))
                lines.append(f"{name if e == 'tallyio' else '':<22}{LABELS[e]:<20}{pct}"
                             f"{d.get('throughput_tps', 0):>10,.0f}"
                             f"{d.get('opportunities', 0):>7,.0f}  {note}")
            lines.append("  ratios: " + _ratio_text(agg.get("ratios", {})))
    sat = results.get("saturation", {}).get("all")
    if sat:
        lines += ["", f"{'saturation (closed loop)':<26}{'engine':<20}{'tx/s':>11}{'found':>7}"
                      f"{'RSS MiB':>9}  undecided / verdicts", "-" * 100]
        for e in ENGINES:
            if e not in sat:
                continue
            d = sat[e]
            note = format_undecided(d["undecided"])
            if e == "tallyio" and sat.get("verdicts"):
                note += "  " + _marks(sat["verdicts"])
            lines.append(f"{'':<26}{LABELS[e]:<20}{d.get('throughput_tps', 0):>11,.0f}"
                         f"{d.get('opportunities', 0):>7,.0f}"
                         f"{d.get('rss_bytes', 0) / 2**20:>9,.0f}  {note}")
        lines.append(f"  peak RSS of the whole benchmark process: "
                     f"{meta.get('peak_rss_bytes', 0) / 2**20:,.0f} MiB")
        lines.append("  ratios: " + _ratio_text(sat.get("ratios", {})))
    bundled = results.get("bundled_feed", {}).get("speed 1", {}).get("tallyio")
    if bundled:
        lines += ["", f"bundled feed at its recorded speed (`make run`, a fresh process): "
                      f"p50 {_us(bundled.get('p50'))} us, p99 {_us(bundled.get('p99'))} us, "
                      f"decided {bundled.get('decided', 0):,.0f} of {bundled.get('offered', 0):,.0f}, "
                      f"undecided {format_undecided(bundled['undecided'])}, planted missed "
                      f"{bundled.get('planted_missed')}, peak RSS "
                      f"{bundled.get('peak_rss_bytes', 0) / 2**20:,.0f} MiB"]
    vs = results.get("verdicts") or verdict_list(results)
    if vs:
        passed = sum(v["verdict"] == "PASS" for v in vs)
        lines += ["", f"targets: {passed} PASS, {len(vs) - passed} FAIL"]
        for v in vs:
            lines.append(f"  {v['verdict']}  {v['benchmark']} {v['point']} {v['metric']} "
                         f"{format_value(v['metric'], v['value'])} (target {v['op']} "
                         f"{format_value(v['metric'], v['limit'])})")
    return "\n".join(lines)


def _load(la) -> str:
    return "/".join(f"{x:.2f}" for x in la) if la else "?"


def _marks(verdicts: dict) -> str:
    marks = " ".join(f"{m}:{v['verdict']}" for m, v in verdicts.items() if m != "undecided")
    if verdicts.get("undecided", {}).get("verdict") == "FAIL":
        marks += " (undecided rows: FAIL)"
    return marks


def _ratio_text(r: dict) -> str:
    parts = []
    for peer, d in r.items():
        bits = [f"{q} {d[q]:,.2f}x" for q in ("p50", "p99") if q in d]
        if "throughput_tps" in d:
            bits.append(f"tx/s {d['throughput_tps']:,.2f}x")
        parts.append(f"vs {LABELS[peer]}: " + ", ".join(bits))
    return "; ".join(parts) + "  (latency peer/TallyIO, tx/s TallyIO/peer: above 1, TallyIO better)"
