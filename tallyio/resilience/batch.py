"""Micro-batching: items submitted one at a time, processed in batches by one worker thread.

The queue, the back-pressure wait and the batch cut-off wait are compiled
(``tallyio._core.objqueue``) and run without the GIL; this module owns the worker loop, the
processor call, the futures and the counters. Per item it costs one future and one compiled put;
per batch one processor call.
"""
from __future__ import annotations

import abc
import asyncio
import atexit
import inspect
import logging
import math
import threading
import time
from concurrent.futures import Future
from typing import Any, Callable, Iterable, Sequence

from tallyio._core.clock import now_ns
from tallyio._core.hist import LatencyHistogram
from tallyio._core.objqueue import PUT_CLOSED, PUT_FULL, PUT_TIMEOUT, ObjectQueue
from tallyio.errors import BatchTimeoutError, BufferFullError, RingClosedError, TallyIOError

__all__ = ["AsyncBatchProcessor", "BatchProcessor"]

log = logging.getLogger("tallyio.batch")

_ON_FULL = ("block", "raise", "drop_oldest")


def _ns(name: str, value: Any, *, positive: bool = False, optional: bool = False) -> int | None:
    """Seconds (int or float) to integer ns, or a ValueError/TypeError naming ``name``."""
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number of seconds, got {value!r}")
    if not math.isfinite(value) or value < 0 or (positive and value == 0) or value > 1e9:
        bound = "> 0" if positive else ">= 0"
        raise ValueError(f"{name} must be {bound} seconds (finite, at most 1e9), got {value}")
    return int(round(value * 1e9))


class _BatchWorker(abc.ABC):
    """What the threaded and the asyncio fronts share: config, queue, worker thread, stats."""

    def __init__(self, processor: Callable[[list], Sequence], *, batch_size: int = 64,
                 batch_timeout: float = 200e-6, max_latency: float | None = None,
                 capacity: int = 4096, on_full: str = "block",
                 submit_timeout: float | None = None, budget: float = 800e-6,
                 spin: float = 50e-6, sleep: float = 0.0, handoff: bool = True,
                 log_interval: float = 1.0, clock: Callable[[], int] | None = None,
                 name: str | None = None, backoff: float = 1e-3, park: bool = True):
        if not callable(processor):
            raise TypeError(f"processor must be callable, got {processor!r}")
        if isinstance(capacity, bool) or not isinstance(capacity, int):
            raise TypeError(f"capacity must be an int, got {capacity!r}")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int):
            raise TypeError(f"batch_size must be an int, got {batch_size!r}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if on_full not in _ON_FULL:
            raise ValueError(f"on_full must be one of 'block', 'raise', 'drop_oldest', "
                             f"got {on_full!r}")
        if clock is not None and not callable(clock):
            raise TypeError(f"clock must be callable or None, got {clock!r}")
        self._batch_timeout_ns = _ns("batch_timeout", batch_timeout)
        self._max_latency_ns = _ns("max_latency", max_latency, positive=True, optional=True)
        self._submit_timeout_ns = _ns("submit_timeout", submit_timeout, optional=True)
        self._budget_ns = _ns("budget", budget, positive=True)
        spin_ns = _ns("spin", spin)
        sleep_ns = _ns("sleep", sleep)
        backoff_ns = _ns("backoff", backoff)
        if not isinstance(park, bool):
            raise TypeError(f"park must be True or False, got {park!r}")
        self._log_interval = _ns("log_interval", log_interval) / 1e9
        self._queue = ObjectQueue(capacity, on_full=on_full, timeout_ns=self._queue_timeout_ns(),
                                  spin_ns=spin_ns, sleep_ns=sleep_ns, on_drop=self._on_drop,
                                  backoff_ns=backoff_ns, park=park,
                                  handoff=handoff)
        if batch_size > capacity:
            raise ValueError(f"batch_size must be at most capacity ({capacity}), got {batch_size}")
        self._processor = processor
        self._batch_size = batch_size
        self._on_full = on_full
        self._clock = clock
        self.name = name or f"{type(self).__name__}-{id(self):x}"
        self.options = {"batch_size": batch_size, "batch_timeout": batch_timeout,
                        "max_latency": max_latency, "capacity": capacity, "on_full": on_full,
                        "submit_timeout": submit_timeout, "budget": budget, "spin": spin,
                        "sleep": sleep, "backoff": backoff, "park": park, "handoff": handoff}
        self._latency = LatencyHistogram()
        self._sizes = [0] * (batch_size + 1)
        self._processed = self._failed_items = self._failed_batches = self._batches = 0
        self._cancelled = self._over_budget = self._undelivered = 0
        self._unlogged = 0
        self._next_log = 0.0
        # daemon, but closed by atexit: an interpreter exit still processes what was accepted
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()
        atexit.register(self.close)

    def _queue_timeout_ns(self) -> int | None:
        return self._submit_timeout_ns

    def _stamp(self) -> int:
        return -1 if self._clock is None else self._clock()

    # ---- worker ----------------------------------------------------------------------------

    def _run(self) -> None:
        drain = self._queue.drain
        size, timeout, max_age = self._batch_size, self._batch_timeout_ns, self._max_latency_ns
        while (batch := drain(size, timeout, max_age)) is not None:
            if batch.expired_tags:
                self._expire(batch)
            self._process(batch)

    def _expire(self, batch) -> None:
        limit = self._max_latency_ns / 1e9
        self._fail_each(batch.expired_tags, [
            BatchTimeoutError(f"item waited {age / 1e9:.6f} s before processing, "
                              f"over max_latency={limit} s") for age in batch.expired_ages])

    def _process(self, batch) -> None:
        self._cancelled += self._claim(batch)
        n = len(batch)
        if n == 0:
            return
        self._batches += 1
        self._sizes[n] += 1
        t0 = now_ns()
        try:
            results = self._processor(batch.items)
        except BaseException as exc:  # noqa: BLE001 - contained: it fails this batch only
            elapsed = now_ns() - t0
            self._fail_batch(batch, exc)
        else:
            elapsed = now_ns() - t0
            m = len(results) if hasattr(results, "__len__") else None
            if m == n:
                self._deliver(batch, results)
                self._processed += n
            else:
                got = m if m is not None else f"a {type(results).__name__} without a length"
                self._fail_batch(batch, TallyIOError(
                    f"processor returned the wrong number of results for a batch of {n} items: "
                    f"expected {n}, got {got}"))
        batch.record_latency(self._latency)
        if elapsed > self._budget_ns:
            self._report_over_budget(elapsed, n)

    def _fail_batch(self, batch, exc: BaseException) -> None:
        self._failed_batches += 1
        self._failed_items += len(batch)
        self._fail_all(batch, exc)

    def _report_over_budget(self, elapsed_ns: int, n: int) -> None:
        self._over_budget += 1
        now = time.monotonic()
        if now < self._next_log:
            self._unlogged += 1
            return
        log.warning("%s: a batch of %d items took %.1f us, over the %.1f us budget "
                    "(%d more over-budget batches since the last report)", self.name, n,
                    elapsed_ns / 1e3, self._budget_ns / 1e3, self._unlogged)
        self._unlogged = 0
        self._next_log = now + self._log_interval

    # ---- lifecycle and stats ---------------------------------------------------------------

    def _refusal(self, code: int, n: int = 1) -> TallyIOError:
        what = "item" if n == 1 else f"{n} items"
        if code == PUT_CLOSED:
            return RingClosedError(f"{self.name} is closed; {what} not accepted")
        cap = self._queue.capacity
        if code == PUT_FULL:
            return BufferFullError(f"{self.name}: buffer of {cap} items is full "
                                   f"(on_full={self._on_full!r}); {what} not accepted")
        return BufferFullError(f"{self.name}: buffer of {cap} items stayed full for "
                               f"submit_timeout={self.options['submit_timeout']} s; "
                               f"{what} not accepted")

    @property
    def closed(self) -> bool:
        return self._queue.closed

    def close(self, timeout: float | None = None) -> None:
        """Stop accepting, process everything already accepted, then return.

        Submits after this raise RingClosedError. Called from the processor itself (the worker
        thread) it only stops accepting. Raises TimeoutError if the worker has not finished
        within ``timeout`` seconds (it keeps draining; call again to wait more).
        """
        self._queue.close()
        if threading.current_thread() is self._thread:
            return
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise TimeoutError(f"{self.name} did not finish processing within {timeout} s")
        atexit.unregister(self.close)

    def stats(self) -> dict:
        """Counters since creation (a snapshot, not a transaction).

        Once closed, ``submitted == processed + failed_items + expired + cancelled +
        rejected['dropped_oldest']``: every accepted item is accounted for.
        """
        q = self._queue.stats()
        sizes = {k: c for k, c in enumerate(self._sizes) if c}
        items = sum(k * c for k, c in sizes.items())
        return {
            "submitted": q["accepted"],
            "processed": self._processed,
            "failed_items": self._failed_items,
            "batches": self._batches,
            "batch_size_mean": items / self._batches if self._batches else 0.0,
            "batch_sizes": sizes,
            "full_batches": q["full_batches"],
            "timeout_batches": q["timeout_batches"],
            "flush_batches": q["flush_batches"],
            "expired": q["expired"],
            "cancelled": self._cancelled,
            "rejected": {"closed": q["refused_closed"], "full": q["refused_full"],
                         "timeout": q["refused_timeout"], "dropped_oldest": q["dropped_oldest"]},
            "failed_batches": self._failed_batches,
            "over_budget_batches": self._over_budget,
            "undelivered": self._undelivered,
            "latency_p50_ns": self._latency.percentile(50),
            "latency_p99_ns": self._latency.percentile(99),
            "latency_max_ns": self._latency.max,
            "pending": q["size"],
            "closed": q["closed"],
        }

    @property
    def latency(self) -> LatencyHistogram:
        """Per-item latency, submit to result (ns), of every item the processor saw."""
        return self._latency

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(name={self.name!r}, batch_size={self._batch_size}, "
                f"pending={len(self._queue)}, closed={self.closed})")

    # ---- what each front defines -----------------------------------------------------------

    @abc.abstractmethod
    def _claim(self, batch) -> int:
        """Claim the batch's items for processing; how many are still wanted (not cancelled)."""

    @abc.abstractmethod
    def _deliver(self, batch, results) -> None:
        """Hand each submitter its result."""

    @abc.abstractmethod
    def _fail_all(self, batch, exc: BaseException) -> None:
        """Fail every item of the batch with ``exc``."""

    @abc.abstractmethod
    def _fail_each(self, tags: list, excs: list) -> None:
        """Fail each item of ``tags`` with its own exception."""

    @abc.abstractmethod
    def _on_drop(self, item: Any, tag: Any) -> None:
        """An item dropped by ``on_full="drop_oldest"``: fail its submitter with BufferFullError."""


class BatchProcessor(_BatchWorker):
    """BatchProcessor(processor, *, batch_size=64, batch_timeout=200e-6, max_latency=None,
    capacity=4096, on_full="block", submit_timeout=None, budget=800e-6, spin=50e-6, sleep=0.0,
    handoff=True, log_interval=1.0, clock=None, name=None, backoff=1e-3, park=True)

    Collects submitted items into batches for ``processor(items: list) -> list of results`` (same
    length, same order), called in one worker thread; each submitter gets its own result through a
    ``concurrent.futures.Future``.

    Parameters
    ----------
    batch_size : int
        A batch goes to the processor as soon as it holds this many items (1..capacity).
    batch_timeout : float
        ... or when its first item was submitted this many seconds ago (>= 0).
    max_latency : float or None
        Items that waited longer than this (seconds, > 0) when drained are not processed: their
        futures fail with BatchTimeoutError (counted as ``expired``). None: no limit.
    capacity : int
        Items the buffer holds, a power of two >= 2.
    on_full : {"block", "raise", "drop_oldest"}
        A submit to a full buffer waits for room (up to ``submit_timeout`` seconds, then
        BufferFullError), raises BufferFullError at once, or evicts the oldest buffered item,
        whose future fails with BufferFullError. Each outcome is counted in ``stats()``.
    budget : float
        A processor call longer than this (seconds) is counted and logged on the
        ``tallyio.batch`` logger, at most once per ``log_interval`` seconds.
    spin, sleep, backoff, park
        How the worker waits for items. After its last item it busy-polls for ``spin`` seconds,
        then for ``backoff`` seconds more calls ``sched_yield`` between polls (``sleep=0``) or
        sleeps ``sleep`` seconds; then, with ``park=True``, it parks (a futex) until a submit or
        ``close()`` wakes it, so an idle processor costs almost no CPU. Waking a parked thread
        costs tens of microseconds on a VM, which the first two phases spare a busy worker;
        ``park=False`` keeps polling instead (a core stays busy while idle). A submitter blocked
        on a full buffer waits with ``spin`` and ``sleep`` only.
    handoff : bool
        When the worker has a batch ready and a submitter holds the GIL, the submitter's next
        submit gives the GIL to the worker until the batch is processed, instead of letting
        CPython make the worker wait up to the switch interval (5 ms).
    clock : callable or None
        Returns the submit stamp in CLOCK_MONOTONIC ns (default ``tallyio.now_ns``); for tests
        and replays.

    A processor that raises fails exactly that batch's futures with its exception (the same
    instance); one that returns the wrong number of results fails them with TallyIOError. The
    worker keeps running either way. A future cancelled while queued is skipped (``cancelled``).

    ``close()`` (or leaving a ``with`` block) stops accepting, processes everything accepted and
    returns; later submits raise RingClosedError.
    """

    def submit(self, item: Any) -> Future:
        """Queue ``item``; return the Future of its result.

        Raises RingClosedError after close(), BufferFullError when the buffer is full and
        ``on_full`` is "raise", or stays full for ``submit_timeout`` with "block".
        """
        fut = Future()
        code = self._queue.put(item, fut, -1 if self._clock is None else self._clock())
        if code:
            raise self._refusal(code)
        return fut

    def submit_many(self, items: Iterable[Any]) -> list[Future]:
        """Queue ``items`` in order (one stamp for all); return their Futures.

        Raises RingClosedError after close() (nothing accepted). Items the buffer refuses (full
        with "raise", or full past ``submit_timeout`` with "block") are not queued: their futures
        are returned already failed with BufferFullError. With "drop_oldest" every item is taken.
        """
        items = items if type(items) is list else list(items)
        futs = [Future() for _ in range(len(items))]
        k = self._queue.put_many(items, futs, self._stamp())
        if k < 0:
            raise self._refusal(PUT_CLOSED, len(items))
        if k < len(items):
            code = PUT_FULL if self._on_full == "raise" else PUT_TIMEOUT
            for fut in futs[k:]:
                fut.set_exception(self._refusal(code))
        return futs

    def __enter__(self) -> "BatchProcessor":
        return self

    def __exit__(self, *exc) -> bool:
        self.close()
        return False

    def _claim(self, batch) -> int:
        return batch.claim_futures()

    def _deliver(self, batch, results) -> None:
        batch.set_results(results)

    def _fail_all(self, batch, exc: BaseException) -> None:
        batch.set_exception(exc)

    def _fail_each(self, tags: list, excs: list) -> None:
        for fut, exc in zip(tags, excs):
            # a future cancelled while queued is already settled: it counts as expired anyway
            if fut.set_running_or_notify_cancel():
                fut.set_exception(exc)

    def _on_drop(self, item: Any, fut: Future) -> None:
        if fut.set_running_or_notify_cancel():
            fut.set_exception(BufferFullError(
                f"{self.name}: evicted from a full buffer of {self._queue.capacity} items by a "
                f"newer one (on_full='drop_oldest')"))


def _settle(futs: list, results: list) -> None:
    for fut, res in zip(futs, results):
        if not fut.done():  # cancelled by its awaiter meanwhile
            fut.set_result(res)


def _settle_errors(futs: list, excs: list) -> None:
    for fut, exc in zip(futs, excs):
        if not fut.done():
            fut.set_exception(exc)


class AsyncBatchProcessor(_BatchWorker):
    """AsyncBatchProcessor(processor, **options): ``await process(item)`` for asyncio code.

    Same options and semantics as BatchProcessor. The processor is a plain (synchronous) function
    run in the worker thread, never on the event loop, so a slow batch cannot stall the loop;
    each batch's results go back to the loop with one ``call_soon_threadsafe``. An ``async def``
    processor is refused (TypeError): awaiting it would cost two loop hand-offs per batch.

    The processor binds to the event loop of its first ``process`` call. A full buffer with
    ``on_full="block"`` makes ``process`` await (polling the compiled queue), never block the
    loop. Cancelling a ``process`` call does not un-queue its item; its result is dropped.
    Use ``async with`` or ``await aclose()``.
    """

    def __init__(self, processor: Callable[[list], Sequence], **options: Any):
        call = getattr(processor, "__call__", None)
        if inspect.iscoroutinefunction(processor) or inspect.iscoroutinefunction(call):
            raise TypeError(f"processor must be a plain function run in the worker thread, got "
                            f"the coroutine function {processor!r}")
        self._loop: asyncio.AbstractEventLoop | None = None
        super().__init__(processor, **options)

    def _queue_timeout_ns(self) -> int | None:
        return 0  # process() waits on the loop, never inside the compiled put

    async def process(self, item: Any) -> Any:
        """Queue ``item`` and return its result (or raise its error: BatchTimeoutError,
        BufferFullError, RingClosedError, the processor's exception, TallyIOError)."""
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            if self._loop is not None:
                raise RuntimeError(f"{self.name} is bound to another event loop")
            self._loop = loop
        fut = loop.create_future()
        q = self._queue
        stamp = now_ns() if self._clock is None else self._clock()
        if self._on_full == "drop_oldest":
            code = q.put(item, fut, stamp)
        else:
            code = q.try_put(item, fut, stamp)
            if code == PUT_FULL and self._on_full == "block":
                code = await self._wait_for_room(item, fut, stamp)
            elif code == PUT_FULL:
                q.count_refused(PUT_FULL)
        if code:
            raise self._refusal(code)
        return await fut

    async def _wait_for_room(self, item, fut, stamp) -> int:
        deadline = None if self._submit_timeout_ns is None else now_ns() + self._submit_timeout_ns
        delay = 0.0
        while True:
            if deadline is not None and now_ns() >= deadline:
                self._queue.count_refused(PUT_TIMEOUT)
                return PUT_TIMEOUT
            await asyncio.sleep(delay)
            code = self._queue.try_put(item, fut, stamp)
            if code != PUT_FULL:
                return code
            # let other tasks run first, then poll at up to 1 ms: the worker frees a whole batch
            # of slots at a time, so finer polling buys little
            delay = min(1e-3, delay * 2 or 20e-6)

    async def aclose(self) -> None:
        """Stop accepting, process everything accepted, deliver the results, then return."""
        self._queue.close()
        await asyncio.get_running_loop().run_in_executor(None, self.close)

    async def __aenter__(self) -> "AsyncBatchProcessor":
        return self

    async def __aexit__(self, *exc) -> bool:
        await self.aclose()
        return False

    def _claim(self, batch) -> int:
        return 0

    def _call_loop(self, fn, futs: list, values: list) -> None:
        try:
            self._loop.call_soon_threadsafe(fn, futs, values)
        except RuntimeError:  # the loop is closed: nobody is left to await these
            self._undelivered += len(futs)

    def _deliver(self, batch, results) -> None:
        self._call_loop(_settle, batch.tags, list(results))

    def _fail_all(self, batch, exc: BaseException) -> None:
        self._call_loop(_settle_errors, batch.tags, [exc] * len(batch))

    def _fail_each(self, tags: list, excs: list) -> None:
        self._call_loop(_settle_errors, tags, excs)

    def _on_drop(self, item: Any, fut: asyncio.Future) -> None:
        # puts happen in process(), on the loop's thread: settle directly
        if not fut.done():
            fut.set_exception(BufferFullError(
                f"{self.name}: evicted from a full buffer of {self._queue.capacity} items by a "
                f"newer one (on_full='drop_oldest')"))
