"""The engine: sources -> ring -> batch drain -> breakers -> processors -> sinks.

Threads
-------
* one **ingest** thread per source: paces the feed (recorded speed, a multiple, a fixed rate, or
  as fast as possible), stamps each row's arrival time and moves rows into the ring in bulk
  (``Ring.push_many``, GIL released);
* one **engine** thread: drains micro-batches (size, timeout, max age; the wait is GIL-free), runs
  each processor on the batch, a read-only zero-copy view, under the processor's circuit breaker,
  records latencies into compiled histograms (vectorized, one call per batch), and hands
  opportunities to the sinks.

Plugin hooks are resolved once in ``start()`` into plain lists; pluggy is never called per item or
per batch, except the sampled ``batch_done`` observer.

Latency is measured open-loop: when the feed is paced, a row's arrival stamp is its *scheduled*
time, so a stall anywhere (ingest included) shows up in the percentiles instead of being hidden by
coordinated omission.

Nothing accepted is lost: ``stop()`` stops the sources, joins the ingest threads, closes the ring
and drains it to the end. Every row ends as processed, expired (older than ``max_age`` when drained),
or dropped at a full ring (only with ``on_full = "drop"``); a processor whose breaker is open skips
the batch and counts its rows; all of these are counted in the report.
"""
from __future__ import annotations

import gc
import logging
import os
import sys
import threading
import time
from collections import Counter, deque

import numpy as np

from tallyio import config as _config
from tallyio import plugins as _plugins
from tallyio._core.batch import BatchDrain
from tallyio._core.clock import now_ns
from tallyio._core.hist import LatencyHistogram
from tallyio._core.ingest import Pacer, drain_batch, record_since
from tallyio._core.ring import Ring
from tallyio.dedup import Dedup
from tallyio.errors import ProcessorResultError, TallyIOError
from tallyio.metrics import MetricsCollector, PrometheusExporter, WindowedHistogram, snapshot
from tallyio.opportunity import Opportunity
from tallyio.record import TX_DTYPE, copy_rows
from tallyio.report import Report, hist_summary, peak_rss_bytes
from tallyio.synthetic import TruthTally

log = logging.getLogger(__name__)

DEFAULT_FEED = os.path.join(os.path.dirname(__file__), "data", "sample_feed.npz")
# A thread holding the GIL keeps it up to this long when another wants it (CPython's default is
# 5 ms, a whole latency budget); the engine lowers it while running.
SWITCH_INTERVAL = 50e-6
# engine threads, by their names in the system core plan
INGEST_THREAD = "mempool_ingest"
ENGINE_THREAD = "strategy_scanner"


def engine_plan(topology):
    """The system core plan for the engine's threads.

    On a small machine the rule stacks every critical thread on one CPU. The engine's ingest and
    engine threads both spin-wait, so they must not share one: the ingest thread takes another.
    """
    from tallyio import system
    plan = system.plan_cores(topology)
    engine_cpu = plan.cpu_of(ENGINE_THREAD)
    if plan.cpu_of(INGEST_THREAD) == engine_cpu and len(topology.allowed_cpus) > 1:
        other = min(c for c in topology.allowed_cpus if c != engine_cpu)
        plan = system.plan_cores(topology, overrides={INGEST_THREAD: other})
    return plan


class _PluginFailure(Exception):
    """A BaseException (SystemExit, KeyboardInterrupt...) raised by plugin code, carried through
    the breaker as an ordinary failure so that it is counted there too."""

    def __init__(self, exc: BaseException):
        super().__init__(repr(exc))
        self.exc = exc


def _opportunities(result) -> list:
    """A processor's return value as a list of ``Opportunity``; a generator runs to completion
    here, inside the caller's guard and timing. Anything else raises ``ProcessorResultError``."""
    if result is None:
        return []
    if isinstance(result, Opportunity):
        return [result]
    if isinstance(result, (str, bytes, dict, np.ndarray)) or not hasattr(result, "__iter__"):
        raise ProcessorResultError(f"a processor must return None or an iterable of Opportunity, "
                                   f"got {type(result).__name__}")
    ops = list(result)
    for o in ops:
        if not isinstance(o, Opportunity):
            raise ProcessorResultError(f"a processor returned a {type(o).__name__} among its "
                                       f"results; expected Opportunity")
    return ops


def _guarded(fn, *args) -> list:
    """``fn(*args)`` turned into a list of opportunities; plugin BaseExceptions become failures."""
    try:
        return _opportunities(fn(*args))
    except Exception:
        raise
    except BaseException as exc:
        raise _PluginFailure(exc) from exc


def _construct(where: str, factory, *args, **opts):
    """``factory(*args, **opts)``: a plugin's processor, source or sink. A ``TypeError`` or
    ``ValueError`` (an unknown or bad option) becomes a one-line ``TallyIOError`` naming the config
    table ``where``; TallyIO's own errors pass as they are."""
    try:
        return factory(*args, **opts)
    except TallyIOError:
        raise
    except (TypeError, ValueError) as e:
        raise TallyIOError(f"{where}: bad options {opts}: {e}") from e


def _as_records(a, what: str) -> np.ndarray:
    a = np.asarray(a)
    if a.dtype != TX_DTYPE:
        raise TallyIOError(f"{what} must be TX_DTYPE rows, got dtype {a.dtype}")
    return a.reshape(-1)


class _ProcessorSlot:
    """A processor with its breaker, histogram and counters: one entry of the dispatch list."""

    __slots__ = ("name", "proc", "process", "on_skipped", "breaker", "hist", "batches", "rows",
                 "errors", "skipped_rows", "opportunities", "last_error", "transitions",
                 "slow_batches")

    def __init__(self, name, proc, breaker):
        self.name = name
        self.proc = proc
        self.process = proc.process
        self.on_skipped = getattr(proc, "on_skipped", None)
        self.breaker = breaker
        self.hist = LatencyHistogram()
        self.batches = self.rows = self.errors = self.skipped_rows = self.opportunities = 0
        self.slow_batches = 0  # over the breaker's latency threshold (counted in every mode)
        self.last_error = None
        self.transitions: Counter = Counter()

    def counts(self) -> dict:
        """The counters the report and the metrics snapshot both show."""
        return {"batches": self.batches, "rows": self.rows, "errors": self.errors,
                "skipped_rows": self.skipped_rows, "opportunities": self.opportunities,
                "slow_batches": self.slow_batches,
                "breaker_state": self.breaker.state if self.breaker is not None else "disabled"}


class Engine:
    """Engine(config=None)

    ``config`` is a ``Config`` (from ``tallyio.load_config``), a path to a TOML file, a dict of
    sections, or None for the defaults. ``run(feed=None, duration=None) -> Report`` runs a feed to
    its end (or for ``duration`` seconds) and returns the report; ``start()`` / ``stop()`` and the
    context manager give finer control, ``push(records)`` feeds rows directly.
    """

    def __init__(self, config=None, *, plugin_manager=None):
        if config is None or isinstance(config, (str, os.PathLike)):
            config = _config.load_config(config)
        elif not isinstance(config, _config.Config):
            config = _config.from_dict(config)
        self.config = config
        p = config["plugins"]
        self.pm = plugin_manager or _plugins.get_plugin_manager(
            p["modules"], entry_points_enabled=p["entry_points"])
        self.registry = _plugins.collect(self.pm)
        self._state = "new"
        self._lock = threading.Lock()
        self._reset_counters()

    # ---- lifecycle -------------------------------------------------------------------------

    def _reset_counters(self):
        self.e2e = LatencyHistogram()
        self.stage_ingest = LatencyHistogram()   # arrival -> drained
        self.stage_decide = LatencyHistogram()   # drained -> decided
        window = self.config["monitoring"]["window"]
        self.e2e_window = WindowedHistogram(window)
        self.ingest_window = WindowedHistogram(window)
        self.decide_window = WindowedHistogram(window)
        self.batch_sizes = LatencyHistogram()    # a histogram of counts, not ns
        self.collector = None
        self.exporter = None
        self.slots = []
        self.switches: dict = {}
        self.pool = None
        self.rejected: Counter = Counter()   # rows refused or dropped, by reason
        self.undecided: Counter = Counter()  # rows not decided by every processor, by reason
        self.book = None        # the run's one pool book (see _build_book)
        self._pacer = None      # the source's
        self._pacers: list = []  # every pacer into the ring: the source's and external producers'
        self.pushed = 0     # by push()
        self.refused = 0    # push() rows the full ring did not take
        self.processed = 0  # rows that reached the processors
        self.decided = 0    # ... and that every processor decided (no skip, no error)
        self.settled = 0    # rows out of the ring with an outcome (processed, expired, dropped...)
        self.batches = 0
        self.duplicates_dropped = 0
        self.engine_error = None
        self.source_error = None
        keep = self.config["engine"]["keep_opportunities"]
        self.opportunities: deque = deque(maxlen=keep)  # the latest; every one goes to the sinks
        self.opportunities_total = 0
        self.truth = None  # the feed's planted opportunities, when it carries them
        self.reserve_updates: Counter = Counter()  # a live source's reserves: applied / unknown
        self.opportunities_by_kind: Counter = Counter()
        self.sink_errors = 0
        self.sink_errors_by: Counter = Counter()  # (sink, error type) -> count; logged once each
        self.observer_errors = 0
        self._first_ns = 0
        self._last_ns = 0
        self._events: list = []
        self.replay = False

    @property
    def ingested(self) -> int:
        """Rows the pacers (the ingest thread's, external producers') put in the ring; live."""
        return sum(p.pushed for p in self._pacers)

    @property
    def ingest_waits(self) -> int:
        """Times a pacer found the ring full and waited (back-pressure)."""
        return sum(p.full_waits for p in self._pacers)

    def _apply_system(self):
        """Check every optimization switch against the machine (``on`` and unavailable is a
        start-up error) and settle what each does in this process; the threads apply affinity,
        priority and their NUMA node to themselves as they start (``_tune``)."""
        from tallyio import system
        from tallyio.system.allocator import in_process_allocator
        cfg = self.config
        modes = dict(cfg["optimizations"])
        topo = system.read_topology()
        self.plan = engine_plan(topo)
        info = system.info(modes, topology=topo, plan=self.plan)
        sw = info["switches"]
        a = sw["cpu_affinity"]
        if modes["cpu_affinity"] == "auto" and a["active"] and len(topo.allowed_cpus) < 2:
            a.update(active=False, state="no effect", reason="one allowed CPU: nothing to pin apart")
        system.require_switches(info)
        # allocator: an engine cannot swap malloc in a running interpreter; what counts is what is
        # live ("on" without jemalloc preloaded is refused, naming the ways to preload it)
        if sw["allocator"]["state"] != "error":
            sw["allocator"].update(in_process_allocator(modes["allocator"]))
        # numa: the engine's threads (see _tune) and its batch buffers go to the plan's node
        self.numa_node = self.plan.critical_node if sw["numa"]["active"] else None
        self.numa_cpus = frozenset()
        if self.numa_node is not None:
            node = next(n for n in topo.nodes if n.id == self.numa_node)
            self.numa_cpus = frozenset(node.cpus) & frozenset(topo.allowed_cpus)
        self.switches = sw
        self.tunings = {}
        self.numa_bindings = {}

    def _apply_simd(self):
        """The simd switch picks the kernels' level for this process (dedup hashing and any
        strategy using tallyio.simd): auto/on the best the CPU has, off the scalar twin."""
        from tallyio import simd
        mode = self.config.switch("simd")
        best = simd.available_levels()[-1]
        level = {"auto": best, "on": best, "off": "scalar"}.get(mode, mode)
        simd.set_level(level)
        self.switches["simd"]["reason"] = f"level {simd.level()}"

    def _apply_prefetch(self):
        """The prefetch switch sets the default prefetch distance of tallyio.gather and
        PrefetchingIterator for this process: 0 when off, DEFAULT_DISTANCE otherwise. Only
        processors calling them see it: the engine's own hot path calls neither ("no effect")."""
        from tallyio._core import prefetch
        off = self.config.switch("prefetch") == "off"
        prefetch.set_default_distance(0 if off else prefetch.DEFAULT_DISTANCE)
        self.prefetch_distance = prefetch.default_distance()
        sw = self.switches["prefetch"]
        sw["reason"] = f"default distance set to {self.prefetch_distance}; " + (
            "off in config" if off else sw["reason"])

    def _pooled_buffers(self, batch_size: int):
        """With the memory_pool switch active: the batch and expired buffers, two blocks of a
        MemoryPool (huge-page backed where the machine allows) reused for every batch, so the
        engine allocates nothing per batch; with numa active, the blocks are bound (mbind) to the
        plan's node. Otherwise None: each drain allocates its arrays."""
        sw = self.switches["memory_pool"]
        if not sw["active"]:
            return None
        from tallyio._core.pool import MemoryPool
        need = batch_size * TX_DTYPE.itemsize
        if need > 2 * 2**20:
            sw.update(active=False, state="inactive",
                      reason=f"a batch of {batch_size} rows ({need} B) exceeds a 2 MiB block")
            return None
        self.pool = MemoryPool(small=0, medium=0, large=0, huge=2, numa_node=self.numa_node)
        self._blocks = [self.pool.allocate(need), self.pool.allocate(need)]
        sw["reason"] = (f"batch buffers in 2 MiB blocks ({self.pool.stats()['classes']['huge']['pages']} "
                        f"pages), reused for every batch"
                        + (f", bound to node {self.numa_node}" if self.numa_node is not None else ""))
        return tuple(np.frombuffer(blk, dtype=TX_DTYPE, count=batch_size) for blk in self._blocks)

    def _release_buffers(self):
        if self.pool is None:
            return
        self._batch_buffers = None
        for blk in self._blocks:
            try:
                self.pool.release(blk)
            except BufferError:  # a processor kept a view past its call: the pool reclaims it at GC
                log.warning("a batch buffer is still referenced; it is released when collected")
        self._blocks = []

    def _tune(self, name: str):
        """Pin the calling engine thread, set its priority and bind it to the NUMA node, per the
        switches (never raises: availability was checked at start; a late failure is logged and
        reported in ``tunings``/``numa_bindings``)."""
        from tallyio.system import tune_thread
        aff = self.config.switch("cpu_affinity") if self.switches["cpu_affinity"]["active"] else "off"
        rt = self.config.switch("realtime_priority") if self.switches["realtime_priority"]["active"] else "off"
        pinned = False
        if aff != "off" or rt != "off":
            try:
                t = self.tunings[name] = tune_thread(name, self.plan, affinity_mode=aff, realtime_mode=rt)
                pinned = t.cpu is not None
            except Exception as exc:
                self.tunings[name] = repr(exc)
                log.error("could not tune thread %s: %s", name, exc)
        if self.numa_node is not None:
            from tallyio.system.numa import bind_thread_to_node
            # a thread pinned to its planned CPU (on the node) keeps that pin
            confine = not (pinned and self.plan.cpu_of(name) in self.numa_cpus)
            try:
                self.numa_bindings[name] = bind_thread_to_node(self.numa_node, self.numa_cpus,
                                                               confine=confine and bool(self.numa_cpus))
            except (OSError, ValueError) as exc:
                self.numa_bindings[name] = repr(exc)
                log.error("could not bind thread %s to NUMA node %s: %s", name, self.numa_node, exc)

    def _build_processors(self):
        wanted = self.config["plugins"]["processors"] or list(self.registry.processors)
        unknown = [n for n in wanted if n not in self.registry.processors]
        if unknown:
            raise TallyIOError(f"[plugins] processors names {unknown[0]!r}, which no plugin "
                               f"registers (registered: {sorted(self.registry.processors)})")
        for name in self.config["processors"]:
            if name not in self.registry.processors:
                raise TallyIOError(f"[processors.{name}] configures a processor no plugin "
                                   f"registers (registered: {sorted(self.registry.processors)})")
        slots = []
        for name in wanted:
            opts = dict(self.config["processors"].get(name, {}))
            proc = _construct(f"[processors.{name}]", self.registry.processors[name], **opts)
            slots.append(_ProcessorSlot(name, proc, self._make_breaker(name)))
        return slots

    def _make_breaker(self, name):
        if not self.switches["circuit_breaker"]["active"]:
            return None
        from tallyio.resilience.breaker import CircuitBreaker
        b = self.config["breaker"]
        policy_name = b["policy"]
        factory = self.registry.threshold_policies.get(policy_name)
        if factory is None:
            raise TallyIOError(f"[breaker] policy {policy_name!r} is not registered "
                               f"(registered: {sorted(self.registry.threshold_policies)})")
        opts = dict(b["policy_options"])
        if policy_name == "static" and not opts:
            opts["seconds"] = b["latency_threshold"]  # the static policy is the config's threshold
        try:
            policy = factory(**opts)
        except (TypeError, ValueError) as e:
            raise TallyIOError(f"[breaker] policy {policy_name!r} with options {opts}: {e}") from e
        # Replay: results must not depend on timing, so slow batches are counted (slow_batches)
        # but never open the breaker; failures still do.
        breaker = CircuitBreaker(
            name, latency_threshold=b["latency_threshold"], failure_threshold=b["failure_threshold"],
            success_threshold=b["success_threshold"], timeout=b["timeout"],
            latency_violation_threshold=None if self.replay else b["latency_violation_threshold"],
            threshold_policy=policy)
        breaker.add_listener(self._on_transition)
        return breaker

    def _on_transition(self, name, old, new):
        # called by the breaker in the engine thread; hooks fire after the batch
        for slot in self.slots:
            if slot.name == name:
                slot.transitions[new] += 1
        self._events.append((name, old, new))

    def _build_book(self, meta):
        """The run's one pool book: from ``[engine] pools`` (an .npz), else the feed's own pools
        table (``pool_*`` metadata arrays), else None (no processor gets one)."""
        from tallyio._core.book import POOL_KEYS, PoolBook
        path = self.config["engine"]["pools"]
        if path:
            try:
                return PoolBook.from_source(path)
            except (TypeError, ValueError, OSError) as e:
                raise TallyIOError(f"[engine] pools {path!r}: {e}") from e
        if meta and all(k in meta for k in POOL_KEYS):
            try:
                return PoolBook(meta)
            except (TypeError, ValueError) as e:
                raise TallyIOError(f"the feed's pools table: {e}") from e
        return None

    def open_source(self, feed=None):
        """The source ``run(feed)`` would read, built and not started: ``feed`` (a path, a URL a
        registered source accepts, a Source object) or, when None, the config's ``[source]``,
        else the bundled sample feed. For tools that read a feed without an engine run (e.g.
        ``tallyio publish``)."""
        return self._resolve_source(feed)

    def _resolve_source(self, feed):
        if feed is not None and not isinstance(feed, (str, os.PathLike)):
            return feed  # a Source object or any iterable of TX_DTYPE chunks
        src = self.config["source"]
        kind = src["kind"]
        path = os.fspath(feed) if feed is not None else (src["path"] or None)
        if kind == "auto":
            if path is None:
                path = DEFAULT_FEED
            for name, factory in self.registry.sources.items():
                accepts = getattr(factory, "accepts", None)
                if accepts is not None and accepts(path):
                    return _construct(f"[source] {name}", factory, path, **src["options"])
            if not os.path.exists(path):
                raise TallyIOError(f"feed {path!r} does not exist")
            raise TallyIOError(f"no registered source accepts feed {path!r} "
                               f"(sources: {sorted(self.registry.sources)})")
        factory = self.registry.sources.get(kind)
        if factory is None:
            raise TallyIOError(f"[source] kind {kind!r} is not registered "
                               f"(registered: {sorted(self.registry.sources)})")
        args = (path,) if path else ()
        return _construct(f"[source] {kind}", factory, *args, **src["options"])

    def start(self, feed=None):
        """Build everything, start the threads, and begin ingesting ``feed`` (see ``run``)."""
        with self._lock:
            if self._state != "new":
                raise TallyIOError(f"start() on an engine that is {self._state}; create a new Engine")
            self._state = "starting"
        cfg = self.config
        self._reset_counters()
        self._apply_system()
        configured = cfg["source"]["path"] or cfg["source"]["kind"] != "auto"
        self.source = self._resolve_source(feed) if feed is not None or configured else None
        mode = cfg["engine"]["mode"]
        if mode == "auto":
            mode = "replay" if getattr(self.source, "replay", False) else "live"
        self.mode = mode
        self.replay = mode == "replay"
        self.slots = self._build_processors()
        self.sinks = []
        for name in cfg["sinks"]["names"]:
            factory = self.registry.sinks.get(name)
            if factory is None:
                raise TallyIOError(f"[sinks] names {name!r}, which no plugin registers "
                                   f"(registered: {sorted(self.registry.sinks)})")
            self.sinks.append((name, _construct(f"[sinks] options.{name}", factory,
                                                **cfg["sinks"]["options"].get(name, {}))))
        e = cfg["engine"]
        try:
            self.ring = Ring(e["ring_capacity"], TX_DTYPE, kind=e["ring_kind"])
        except MemoryError:
            raise TallyIOError(f"[engine] ring_capacity {e['ring_capacity']}: not enough memory "
                               f"for {e['ring_capacity'] * TX_DTYPE.itemsize / 2**30:.2f} GiB of "
                               f"rows") from None
        b = cfg["batching"]
        batch_size = b["batch_size"] if cfg.switch("batching") != "off" else 1
        # Rows age out (max_age) only live: in a replay, expiry would make what the strategies
        # see depend on the machine's speed.
        src = cfg["source"]
        self.max_age = None if self.replay else b["max_age"]
        self.drain = BatchDrain(self.ring, batch_size, b["batch_timeout"], max_age=self.max_age,
                                idle_timeout=b["idle_timeout"], spin=b["spin"], sleep=b["sleep"],
                                backoff=b["backoff"], park=b["park"])
        # two buffers reused for every batch: in the memory pool when it is on, else plain arrays
        self._batch_buffers = self._pooled_buffers(batch_size) or (
            np.empty(batch_size, TX_DTYPE), np.empty(batch_size, TX_DTYPE))
        self._slow_ns = int(cfg["breaker"]["latency_threshold"] * 1e9)
        self._cpu_clock = (time.thread_time_ns if cfg["breaker"]["latency_clock"] == "cpu"
                           else None)
        try:
            self.dedup = Dedup(e["dedup_capacity"]) if e["dedup"] else None
        except MemoryError:
            raise TallyIOError(f"[engine] dedup_capacity {e['dedup_capacity']}: not enough "
                               f"memory") from None
        self._apply_simd()
        self._apply_prefetch()
        meta = getattr(self.source, "metadata", {}) if self.source is not None else {}
        # the book first: a processor that takes it need not build its own from the feed
        self.book = self._build_book(meta)
        # a feed that carries its planted opportunities (the bundled one): the report says which
        # of them the strategies found
        self.truth = TruthTally.from_metadata(meta)
        for slot in self.slots:
            on_book = getattr(slot.proc, "on_book", None)
            if self.book is not None and on_book is not None:
                on_book(self.book)
            on_feed = getattr(slot.proc, "on_feed", None)
            if on_feed is not None:
                on_feed(meta)
        self._stop_ingest = threading.Event()
        self._ingest_done = threading.Event()
        self._engine_done = threading.Event()
        self._closing = threading.Event()
        self._settled = threading.Event()  # set by the engine thread whenever it finds the ring empty
        speed, rate = float(src["speed"]), float(src["rate"])
        self._old_switch = sys.getswitchinterval()
        sys.setswitchinterval(SWITCH_INTERVAL)
        # A full (generation 2) collection walks every object the interpreter holds: modules,
        # plugins, feed metadata, tens of milliseconds' worth, while the engine thread waits for
        # the GIL. Frozen objects are skipped; what the run allocates is still collected. (Before
        # the schedule's origin: the collection itself takes milliseconds.)
        self._froze_gc = e["gc_freeze"]
        if self._froze_gc:
            gc.collect()
            gc.freeze()
        self._t0 = now_ns()
        if self.source is not None:
            # the schedule starts when the first chunk is ready (t0_ns None), not before it is read
            self._pacer = Pacer(self.ring, rate=rate, speed=0.0 if rate > 0 else speed,
                                chunk_max=e["ingest_chunk"], on_full=e["on_full"])
            self._pacers.append(self._pacer)
        mon = cfg["monitoring"]
        self.collector = MetricsCollector(self, mon["interval"], mon["window"])
        if mon["enabled"]:
            self.exporter = PrometheusExporter(self, mon["address"], mon["port"])
        self._engine_thread = threading.Thread(target=self._engine_loop, name="tallyio-engine",
                                               daemon=True)
        self._engine_thread.start()
        self._state = "running"
        self.collector.start()
        # observers see the start before the first batch: no row is ingested until they return
        self._fire("engine_started", engine=self)
        self._ingest_threads = []
        if self.source is not None:
            # a source that acknowledges upstream (a message broker) reads ``settled`` from its
            # own thread: rows leave the ring in ingest order, so ``settled >= k`` means every one
            # of the first k rows it yielded has its outcome (decided, expired, skipped, dropped)
            attach = getattr(self.source, "attach", None)
            if attach is not None:
                attach(self)
            t = threading.Thread(target=self._ingest, args=(self.source,), name="tallyio-ingest",
                                 daemon=True)
            self._ingest_threads.append(t)
            t.start()
        else:
            self._ingest_done.set()
        return self

    def push(self, records, *, stamp: bool = True) -> int:
        """Offer rows directly; returns how many the ring took (the rest are refused and counted
        as ``ring_full_push``). With ``stamp`` the rows' ``arrival_ns`` is set to now; without,
        the caller's stamps stand (an open-loop load generator stamps the *scheduled* time)."""
        if self._state != "running":
            raise TallyIOError(f"push() on an engine that is {self._state}")
        if self.ring.kind == "spsc":
            raise TallyIOError("push() needs [engine] ring_kind = 'mpmc': an 'spsc' ring takes rows "
                               "from the engine's one ingest thread only")
        rows = _as_records(records, "records")
        if stamp:
            rows = copy_rows(rows)
            rows["arrival_ns"] = now_ns()
        if not self._first_ns:
            self._first_ns = int(rows["arrival_ns"][0])
        with self._lock:  # push() may be called from several threads
            taken = self.ring.push_many(rows)
            self.pushed += taken
            if taken < len(rows):
                self.refused += len(rows) - taken
        return taken

    def pacer(self, *, rate: float = 0.0, t0_ns: int | None = None, offset: int = 0,
              stride: int = 1, tick_ns: int = 20_000, on_full: str | None = None) -> Pacer:
        """A ``Pacer`` into this engine's ring for an external producer thread (a feed handler,
        a load generator): ``pacer.run(rows)`` paces, stamps and pushes rows with the GIL
        released, and its rows count as ingested. One per producer thread; ``rate``/``offset``/
        ``stride`` give several producers disjoint slots of one schedule (see ``Pacer``)."""
        if self._state != "running":
            raise TallyIOError(f"pacer() on an engine that is {self._state}")
        if self.ring.kind == "spsc":
            raise TallyIOError("pacer() needs [engine] ring_kind = 'mpmc': an 'spsc' ring takes "
                               "rows from the engine's one ingest thread only")
        p = Pacer(self.ring, rate=rate, t0_ns=now_ns() if t0_ns is None else t0_ns,
                  offset=offset, stride=stride, chunk_max=self.config["engine"]["ingest_chunk"],
                  tick_ns=tick_ns, on_full=on_full or self.config["engine"]["on_full"])
        with self._lock:
            self._pacers.append(p)
        if not self._first_ns:
            self._first_ns = p.t0_ns
        return p

    def request_stop(self) -> None:
        """Ask the sources to stop (thread- and signal-safe); ``run`` then drains and returns."""
        self._stop_ingest.set()
        for p in self._pacers:
            p.stop()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until the feed is fully ingested and every accepted row is processed or expired;
        True if it was within ``timeout`` seconds."""
        if not self._ingest_done.wait(timeout):
            return False
        deadline = None if timeout is None else time.monotonic() + timeout
        # The engine thread sets _settled when it finds the ring empty: no polling loop here to
        # take the GIL from it every few hundred microseconds.
        while True:
            self._settled.clear()
            if self.settled >= self.ingested + self.pushed or self._engine_done.is_set():
                return True
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return False
            self._settled.wait(0.05 if left is None else min(left, 0.05))

    def stop(self) -> Report:
        """Stop the sources, drain everything accepted, flush processors and sinks; the report."""
        with self._lock:
            if self._state != "running":
                raise TallyIOError(f"stop() on an engine that is {self._state}")
            self._state = "stopping"
        self.request_stop()
        for t in self._ingest_threads:
            t.join()
        self.ring.close()
        dropped = sum(p.dropped for p in self._pacers)
        if dropped:
            self.rejected["ring_full"] = self.undecided["ring_full"] = dropped
        self._closing.set()
        self._engine_thread.join()
        self._release_buffers()
        for slot in self.slots:
            flush = getattr(slot.proc, "flush", None)
            if flush is None:
                continue
            try:
                self._emit(slot, _guarded(flush))
            except BaseException as exc:
                self._slot_error(slot, exc, "flush()")
        self._fire_events()
        for name, sink in self.sinks:
            close = getattr(sink, "close", None)
            if close is not None:
                try:
                    close()
                except Exception:
                    self.sink_errors += 1
                    log.exception("sink %s failed to close", name)
        close = getattr(self.source, "close", None)
        if close is not None:
            close()
        sys.setswitchinterval(self._old_switch)
        if self._froze_gc:
            gc.unfreeze()
        self.collector.stop()
        if self.exporter is not None:
            self.exporter.close()
        self._state = "stopped"
        report = self.report()
        self._fire("engine_stopped", engine=self, report=report)
        return report

    def run(self, feed=None, duration: float | None = None, progress=None,
            progress_interval: float = 0.5) -> Report:
        """Run ``feed`` (a path, a Source, an iterable of TX_DTYPE chunks; default: the config's
        source, else the bundled sample feed) to its end, or for ``duration`` seconds, and return
        the report. ``progress(engine)`` is called every ``progress_interval`` seconds."""
        if feed is None and not self.config["source"]["path"] and self.config["source"]["kind"] == "auto":
            feed = DEFAULT_FEED
        self.start(feed)
        deadline = None if duration is None else time.monotonic() + duration
        try:
            while True:
                step = progress_interval if deadline is None else \
                    max(0.0, min(progress_interval, deadline - time.monotonic()))
                if self.wait(step):
                    break
                if progress is not None:
                    progress(self)
                if deadline is not None and time.monotonic() >= deadline:
                    break
        finally:
            report = self.stop()
        return report

    def __enter__(self):
        if self._state == "new":
            self.start()
        return self

    def __exit__(self, *exc):
        if self._state == "running":
            self.stop()
        return False

    # ---- threads ---------------------------------------------------------------------------

    def _ingest(self, source):
        self._tune(INGEST_THREAD)
        pacer, stop = self._pacer, self._stop_ingest
        seq = 0
        try:
            for chunk in source:
                if stop.is_set():
                    break
                rows = copy_rows(_as_records(chunk, "a source chunk"))
                n = len(rows)
                rows["id"] = np.arange(seq, seq + n, dtype=np.uint64)
                done = pacer.run(rows)  # pace, stamp and push the chunk with the GIL released
                if done and not self._first_ns:
                    self._first_ns = int(rows["arrival_ns"][0])
                seq += n
                if done < n:
                    break  # stopped
        except Exception as exc:  # a broken source ends ingestion, counted and reported
            self.rejected["source_error"] += 1
            self.source_error = repr(exc)
            log.exception("source failed; ingestion stops, everything accepted is still drained")
        finally:
            self._ingest_done.set()

    def _engine_loop(self):
        self._tune(ENGINE_THREAD)
        self._in_hand = 0
        try:
            self._drain_loop()
        except BaseException as exc:  # cannot come from plugin code (that is guarded): a bug
            self.engine_error = repr(exc)
            log.critical("engine thread failed: %r; every row left in the ring is counted as "
                         "engine_error", exc, exc_info=True)
            self._abandon()
        finally:
            self._engine_done.set()
            self._settled.set()

    def _abandon(self):
        """After an engine-thread failure: count the rows in hand and everything still arriving
        as ``engine_error`` until the sources stop, so that ``wait()`` and the report add up."""
        self.request_stop()
        lost = self._in_hand
        scratch = np.empty(4096, dtype=TX_DTYPE)
        while True:
            got = self.ring.pop_into(scratch)
            lost += got
            if not got and self._ingest_done.is_set() and len(self.ring) == 0:
                break
            if not got:
                time.sleep(0.001)
        self.undecided["engine_error"] += lost
        self.rejected["engine_error"] += lost
        self.settled += lost

    def _drain_loop(self):
        drain, ring = self.drain, self.ring
        out, old = self._batch_buffers
        dedup, book = self.dedup, self.book
        slots = self.slots
        sample_every = self.config["engine"]["observer_sample_every"]
        observe = bool(sample_every) and bool(self.pm.hook.batch_done.get_hookimpls())
        stage, stage_window = self.stage_ingest, self.ingest_window
        # a live source's fresh chain state (reserves read at a new head), applied to the book on
        # this thread, between batches: the book is never written from two threads
        updates = getattr(self.source, "reserve_updates", None) if book is not None else None
        while True:
            # drain and record the rows' wait in the ring: one GIL-free call
            n, n_expired, t_drained = drain_batch(drain, out, old, stage, stage_window.current)
            batch = out[:n]
            expired = old[:n_expired]
            self._in_hand = n + n_expired
            if updates:
                self._apply_reserve_updates(updates)
            if n_expired:
                # expired rows are not searched, but the pool state still follows them (once)
                if book is not None:
                    if dedup is not None:
                        expired = expired[:dedup.compact(expired)]
                    book.apply(expired)
                self.rejected["expired"] += n_expired
                self.undecided["expired"] += n_expired
                self.settled += n_expired
            if dedup is not None and len(batch):
                kept = dedup.compact(batch)  # in place, one GIL-free pass
                if kept < len(batch):
                    dropped = len(batch) - kept
                    self.rejected["duplicate"] += dropped
                    self.duplicates_dropped += dropped
                    self.settled += dropped
                    batch = batch[:kept]
            n = len(batch)
            if n == 0:
                self._in_hand = 0
                if len(ring) == 0:
                    self._settled.set()
                    if self._closing.is_set():
                        break
                continue
            self.batch_sizes.record(n)
            if book is not None:
                book.apply(batch)  # once, in order, before any processor looks at the batch
            batch.flags.writeable = False
            found = 0
            failed = None  # the first reason a processor did not decide this batch
            for slot in slots:
                ops, why = self._run_slot(slot, batch, n)
                if why is not None and failed is None:
                    failed = why
                if ops:
                    found += self._emit(slot, ops)
            t_done = now_ns()
            if failed is None:
                self.stage_decide.record(t_done - t_drained, n)
                self.decide_window.current.record(t_done - t_drained, n)
                record_since(batch, t_done, self.e2e, self.e2e_window.current)
                self.decided += n
            else:
                self.undecided[failed] += n
            self.processed += n
            self.settled += n
            self._in_hand = 0
            self.batches += 1
            self._last_ns = t_done
            if self._events:
                self._fire_events()
            if observe and self.batches % sample_every == 0:
                self._fire("batch_done", stats={"size": n, "expired": n_expired,
                                                "drain_ns": t_drained, "process_ns": t_done - t_drained,
                                                "opportunities": found})

    def _apply_reserve_updates(self, updates):
        """``(pool, reserve0, reserve1, block)`` items a source appended to its
        ``reserve_updates`` deque: each pool the book holds takes the reserves; the rest are
        counted (``reserve_updates["unknown_pool"]``, ``["bad_reserves"]``)."""
        book = self.book
        while updates:
            pool, r0, r1, _block = updates.popleft()
            i = book.index(pool)
            if i < 0:
                self.reserve_updates["unknown_pool"] += 1
                continue
            try:
                book.set_reserves(i, r0, r1)
            except (TypeError, ValueError):  # a node's answer out of range (zero, > 2**256)
                self.reserve_updates["bad_reserves"] += 1
                continue
            self.reserve_updates["applied"] += 1

    def _run_slot(self, slot, batch, n):
        """Run one processor on a batch, everything it does and returns inside the guard and the
        timing; ``(opportunities, None)`` when it decided the batch, else ``(None, reason)``."""
        breaker = slot.breaker
        if breaker is not None and not breaker.try_acquire():
            slot.skipped_rows += n
            self.rejected["breaker_open:" + slot.name] += n
            if slot.on_skipped is not None:
                try:
                    _guarded(slot.on_skipped, batch)
                except BaseException as exc:
                    self._slot_error(slot, exc, "on_skipped()")
            return None, "breaker_open:" + slot.name
        cpu = self._cpu_clock
        c0 = cpu() if cpu is not None else 0
        t0 = now_ns()
        try:
            ops = _guarded(slot.process, batch)
        except BaseException as exc:
            self._slot_error(slot, exc, "process()")
            ops = None
        took = now_ns() - t0
        # the slow-call rule judges what the processor cost: with the "cpu" clock, the engine
        # thread's own CPU time, so time spent descheduled or waiting for the GIL on a contended
        # machine raises the latency (reported) but does not open the breaker (skip work)
        judged = took if cpu is None else cpu() - c0
        if breaker is not None:
            breaker.record_result(judged, ops is not None)
        slot.hist.record(took)
        if judged > self._slow_ns:
            slot.slow_batches += 1
        slot.batches += 1
        slot.rows += n
        if ops is None:
            return None, "error:" + slot.name
        return ops, None

    def _slot_error(self, slot, exc, where):
        """Count a processor's failure; a KeyboardInterrupt from plugin code also stops the run
        (cleanly: everything accepted is drained and reported)."""
        err = exc.exc if isinstance(exc, _PluginFailure) else exc
        slot.errors += 1
        slot.last_error = repr(err)
        if isinstance(err, KeyboardInterrupt):
            self.request_stop()
        if slot.errors <= 3 or slot.errors % 1000 == 0:
            log.warning("processor %s raised %r in %s (%d errors so far)", slot.name, err, where,
                        slot.errors)

    def _emit(self, slot, ops) -> int:
        slot.opportunities += len(ops)
        self.opportunities_total += len(ops)
        self.opportunities.extend(ops)
        for o in ops:
            self.opportunities_by_kind[(o.strategy, o.kind)] += 1
        if self.truth is not None:
            self.truth.see(ops)
        for name, sink in self.sinks:
            try:
                sink.emit(ops)
            except Exception as exc:
                self.sink_errors += 1
                key = (name, type(exc).__name__)
                self.sink_errors_by[key] += 1
                if self.sink_errors_by[key] == 1:  # once per sink and error type, then counted
                    log.error("sink %s failed: %r (further %s errors of this sink are counted, "
                              "not logged)", name, exc, type(exc).__name__, exc_info=True)
        return len(ops)

    def _fire(self, hook, **kwargs):
        try:
            getattr(self.pm.hook, hook)(**kwargs)
        except Exception:
            self.observer_errors += 1
            log.exception("a plugin's %s hook raised", hook)

    def _fire_events(self):
        events, self._events = self._events, []
        for name, old, new in events:
            self._fire("breaker_state_changed", name=name, old=old, new=new)

    # ---- results ---------------------------------------------------------------------------

    def metrics(self) -> dict:
        """A snapshot of the live metrics (see docs/monitoring.md); cheap enough to poll."""
        if self._state == "new":
            raise TallyIOError("metrics() on an engine that has not started")
        return snapshot(self)

    def threads(self) -> list[threading.Thread]:
        return [t for t in [getattr(self, "_engine_thread", None), *getattr(self, "_ingest_threads", []),
                            self.collector._thread if self.collector else None] if t is not None]

    def windows(self) -> list[WindowedHistogram]:
        return [w for _, w in self.stage_histograms().values()]

    def stage_histograms(self) -> dict:
        return {"end_to_end": (self.e2e, self.e2e_window),
                "ingest_to_drained": (self.stage_ingest, self.ingest_window),
                "drained_to_decided": (self.stage_decide, self.decide_window)}

    def rejected_by_reason(self) -> dict[str, int]:
        d = dict(self.rejected)
        # what the source itself turned away (a mainnet block file it could not read...)
        for reason, n in (getattr(getattr(self, "source", None), "errors", None) or {}).items():
            if n:
                d[reason] = d.get(reason, 0) + n
        if self.refused:
            d["ring_full_push"] = self.refused
        return d

    def undecided_by_reason(self) -> dict[str, int]:
        """Rows offered to the engine that not every processor decided, by reason: expired,
        dropped or refused at a full ring, skipped by an open breaker or failed by a processor
        (the first one, per batch), or lost to an engine-thread failure. Latency percentiles
        never include them; a KPI run with any of them fails its targets."""
        d = {k: v for k, v in self.undecided.items() if v}
        if self.refused:
            d["ring_full_push"] = self.refused
        return d

    def pool_stats(self) -> dict:
        return self.pool.stats()["classes"] if self.pool is not None else {}

    def report(self) -> Report:
        span = (self._last_ns - self._first_ns) / 1e9 if self._last_ns > self._first_ns else 0.0
        procs = {}
        for s in self.slots:
            procs[s.name] = dict(hist_summary(s.hist), **s.counts(), last_error=s.last_error)
        drain = self.drain.stats()
        return Report(
            latency_ns=hist_summary(self.e2e),
            stages={"ingest_to_drained": hist_summary(self.stage_ingest),
                    "drained_to_decided": hist_summary(self.stage_decide)},
            processors=procs,
            throughput_tps=self.decided / span if span else 0.0,
            processed=self.processed,
            decided=self.decided,
            undecided=self.undecided_by_reason(),
            mode=getattr(self, "mode", "live"),
            engine_error=self.engine_error,
            source_error=self.source_error,
            ingested=self.ingested + self.pushed,
            batches=self.batches,
            mean_batch=drain["rows"] / drain["batches"] if drain["batches"] else 0.0,
            rejected=self.rejected_by_reason(),
            peak_rss_bytes=peak_rss_bytes(),
            opportunities=list(self.opportunities),
            opportunities_total=self.opportunities_total,
            opportunities_by_kind={f"{s}/{k}": n for (s, k), n
                                   in sorted(self.opportunities_by_kind.items())},
            duration_s=span,
            ingest_waits=self.ingest_waits,
            sink_errors=self.sink_errors,
            planted=self.truth.summary() if self.truth is not None else None,
            reserve_updates=dict(self.reserve_updates),
        )
