"""Latency-aware circuit breaker: the Python API over the lock-free core in ``tallyio._core.breaker``.

``CircuitBreaker`` guards calls (``call``, ``@breaker``, ``with breaker:``, ``call_async``,
``async with``), counts them, and opens when calls fail or run slow. Its latency threshold comes
from a threshold policy: ``StaticThreshold`` or ``AdaptiveThreshold`` here, or any object that
follows the ThresholdPolicy protocol (below), registered by plugins through the
``register_threshold_policies`` hook.

ThresholdPolicy protocol
    ``window: int | None``
        Successful calls per latency window (None: no count cut-off).
    ``interval: float | None``
        Seconds per latency window (None: no time cut-off). A window ends at whichever comes
        first; with both None the first window never ends and the policy is only asked for the
        starting threshold.
    ``threshold_ns(window: LatencyHistogram | None, current_ns: int) -> int``
        The threshold (ns, an int >= 1) to use from now on. Called once with ``window=None`` when
        the breaker is built (``current_ns`` is then ``latency_threshold`` in ns), and then with
        each completed window of successful-call latencies. The histogram is reused: read it
        during the call, don't keep it.
"""
from __future__ import annotations

import functools
import inspect
import logging
import math
import threading
from typing import Any, Callable

from tallyio._core.breaker import FIELD_MAX, TIME_BUCKETS, BreakerCore
from tallyio.errors import CircuitOpenError
from tallyio.hookspecs import hookimpl

__all__ = ["AdaptiveThreshold", "CircuitBreaker", "CircuitOpenError", "StaticThreshold"]

log = logging.getLogger("tallyio.breaker")

_MAX_SECONDS = 1e9  # ~31 years: anything longer is a unit mistake, and ns must fit in 64 bits


def _seconds_ns(name: str, value: Any, *, allow_zero: bool) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number of seconds, got {value!r}")
    if not (value >= 0 if allow_zero else value > 0) or value > _MAX_SECONDS:
        raise ValueError(f"{name} must be {'>= 0' if allow_zero else '> 0'} seconds and at most "
                         f"{_MAX_SECONDS:g}, got {value}")
    ns = round(value * 1e9)
    if ns == 0 and value > 0:
        raise ValueError(f"{name} must be at least 1 ns (1e-9 s), got {value}")
    return ns


def _count(name: str, value: Any, *, lo: int = 1, hi: int | None = None,
           optional: bool = False) -> int | None:
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int{' or None' if optional else ''}, got {value!r}")
    if value < lo or (hi is not None and value > hi):
        bound = f">= {lo}" if hi is None else f"in [{lo}, {hi}]"
        raise ValueError(f"{name} must be {bound}, got {value}")
    return value


def _rate(name: str, value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a percentage or None, got {value!r}")
    if not 0 < value <= 100:
        raise ValueError(f"{name} must be a percentage in (0, 100], got {value}")
    return value / 100.0


def _window_options(owner: str, window: Any, interval: Any) -> tuple[int | None, float | None]:
    window = _count(f"{owner} window", window, optional=True)
    if interval is not None:
        _seconds_ns(f"{owner} interval", interval, allow_zero=False)
    return window, interval


class StaticThreshold:
    """StaticThreshold(seconds, *, window=10_000, interval=None)

    A fixed latency threshold. ``window``/``interval`` only set how often the breaker rolls the
    latency window its ``stats()`` percentiles come from.
    """

    def __init__(self, seconds: float, *, window: int | None = 10_000,
                 interval: float | None = None):
        self.ns = _seconds_ns("StaticThreshold seconds", seconds, allow_zero=False)
        self.window, self.interval = _window_options("StaticThreshold", window, interval)

    def threshold_ns(self, window, current_ns: int) -> int:
        return self.ns

    def __repr__(self):
        return f"StaticThreshold({self.ns / 1e9!r}, window={self.window}, interval={self.interval})"


class AdaptiveThreshold:
    """AdaptiveThreshold(k=3.0, percentile=99.0, floor=0.0001, ceiling=0.1, *, window=1000,
    interval=None)

    Threshold = ``k`` x the ``percentile`` of the latencies of the last window of successful
    calls, kept within ``[floor, ceiling]`` seconds. The window is ``window`` successful calls
    or ``interval`` seconds, whichever ends first; an empty window keeps the threshold. The
    starting threshold is the breaker's ``latency_threshold`` kept within ``[floor, ceiling]``.
    The percentile comes from a log-linear histogram (within 1/128 above the true value).
    """

    def __init__(self, k: float = 3.0, percentile: float = 99.0, floor: float = 0.0001,
                 ceiling: float = 0.1, *, window: int | None = 1000,
                 interval: float | None = None):
        if isinstance(k, bool) or not isinstance(k, (int, float)) or not 0 < k < math.inf:
            raise ValueError(f"AdaptiveThreshold k must be a finite number > 0, got {k!r}")
        if (isinstance(percentile, bool) or not isinstance(percentile, (int, float))
                or not 0 < percentile <= 100):
            raise ValueError(f"AdaptiveThreshold percentile must be in (0, 100], got {percentile!r}")
        self.floor_ns = _seconds_ns("AdaptiveThreshold floor", floor, allow_zero=False)
        self.ceiling_ns = _seconds_ns("AdaptiveThreshold ceiling", ceiling, allow_zero=False)
        if self.ceiling_ns < self.floor_ns:
            raise ValueError(f"AdaptiveThreshold ceiling must be >= floor ({floor}), got {ceiling}")
        self.k, self.percentile = k, percentile
        self.window, self.interval = _window_options("AdaptiveThreshold", window, interval)
        if self.window is None and self.interval is None:
            raise ValueError("AdaptiveThreshold needs a window (calls) or an interval (seconds), "
                             "got window=None and interval=None")

    def _clamp(self, ns: float) -> int:
        return int(min(max(ns, self.floor_ns), self.ceiling_ns))

    def threshold_ns(self, window, current_ns: int) -> int:
        if window is None or window.count == 0:
            return self._clamp(current_ns)
        return self._clamp(self.k * window.percentile(self.percentile))

    def __repr__(self):
        return (f"AdaptiveThreshold(k={self.k}, percentile={self.percentile}, "
                f"floor={self.floor_ns / 1e9}, ceiling={self.ceiling_ns / 1e9}, "
                f"window={self.window}, interval={self.interval})")


@hookimpl
def register_threshold_policies(register: Callable[[str, Callable[..., Any]], None]) -> None:
    """The built-in policies, registered the way a plugin registers its own."""
    register("static", StaticThreshold)
    register("adaptive", AdaptiveThreshold)


def _check_threshold(policy, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value < 2**64:
        raise ValueError(f"threshold policy {policy!r} returned {value!r}; threshold_ns must "
                         f"return an int in [1, 2**64)")
    return value


class CircuitBreaker(BreakerCore):
    """CircuitBreaker(name="default", *, latency_threshold=0.001, failure_threshold=5,
    success_threshold=3, timeout=30.0, latency_violation_threshold=3, half_open_max_calls=1,
    window_type="count", window_size=None, minimum_calls=None, failure_rate_threshold=None,
    slow_call_rate_threshold=None, exclude=(), threshold_policy=None, clock=None)

    Guards calls to something that can fail or slow down; refuses them for a while once it does.
    Times are in seconds (floats); ``clock`` (tests) is a zero-argument callable returning ns.

    States and rules:

    closed
        Calls go through. Each outcome is recorded in a sliding window: the last ``window_size``
        calls (``window_type="count"``, default 100) or the calls of the last ``window_size``
        seconds (``"time"``, default 60 s, rolled in 10 buckets, so a call leaves the window
        between 0.9 and 1.0 x ``window_size`` after it ended). It opens when any rule holds:

        * ``failure_threshold`` consecutive failures (None: rule off);
        * ``latency_violation_threshold`` slow calls in the window (None: off). A call slower than
          the latency threshold is slow even when it succeeds;
        * with at least ``minimum_calls`` calls in the window (default ``min(10, window_size)``):
          failures >= ``failure_rate_threshold`` percent of them, or slow calls >=
          ``slow_call_rate_threshold`` percent (both None, i.e. off, by default).
    open
        Calls are refused with ``CircuitOpenError(name, retry_after)`` until ``timeout`` seconds
        after it opened; the first call after that moves it to half-open and is a trial.
    half_open
        At most ``half_open_max_calls`` trial calls in flight; more are refused (retry_after 0).
        ``success_threshold`` fast successes close it (with a fresh window); a failure or a slow
        call reopens it for another ``timeout``. An outcome is judged by the state it is recorded
        in, so a call admitted before the breaker opened and ending in half-open counts as a trial.
    forced_open / disabled
        Operator states set by ``force_open()`` (refuse everything, retry_after inf) and
        ``disable()`` (let everything through, never trip; counts still kept) until ``reset()``,
        which closes the breaker with an empty window.

    Outcomes: an exception that is an ``Exception`` and not an instance of ``exclude`` is a
    failure; an excluded one or a ``BaseException`` such as a cancellation counts as a success
    (with its latency), as in pybreaker. Every call is counted exactly once: ``calls ==
    successes + failures + rejected + in flight``.

    Latency threshold: ``latency_threshold`` unless ``threshold_policy`` (see the module
    docstring; default ``StaticThreshold(latency_threshold)``) changes it, after each completed
    window of successful-call latencies, on the thread whose call completed the window.

    Listeners ``fn(name, old, new)`` run after each transition, on the thread that made it,
    with no lock held that a call could wait on. A listener that raises is logged and counted
    (``stats()["listener_errors"]``). Transitions made by compiled (nogil) callers are dispatched
    by the next Python call that transitions or by ``poll()``.
    """

    def __init__(self, name: str = "default", *, latency_threshold: float = 0.001,
                 failure_threshold: int | None = 5, success_threshold: int = 3,
                 timeout: float = 30.0, latency_violation_threshold: int | None = 3,
                 half_open_max_calls: int = 1, window_type: str = "count",
                 window_size: float | None = None, minimum_calls: int | None = None,
                 failure_rate_threshold: float | None = None,
                 slow_call_rate_threshold: float | None = None,
                 exclude: type[BaseException] | tuple[type[BaseException], ...] = (),
                 threshold_policy: Any = None, clock: Callable[[], int] | None = None):
        if not isinstance(name, str):
            raise TypeError(f"name must be a str, got {name!r}")
        threshold_ns = _seconds_ns("latency_threshold", latency_threshold, allow_zero=False)
        timeout_ns = _seconds_ns("timeout", timeout, allow_zero=True)
        failure_threshold = _count("failure_threshold", failure_threshold, optional=True)
        latency_violation_threshold = _count("latency_violation_threshold",
                                             latency_violation_threshold, optional=True)
        success_threshold = _count("success_threshold", success_threshold, hi=FIELD_MAX)
        half_open_max_calls = _count("half_open_max_calls", half_open_max_calls, hi=FIELD_MAX)
        bucket_ns = 0
        if window_type == "count":
            size = _count("window_size", 100 if window_size is None else window_size,
                          hi=10_000_000)
            window_desc: int | float = size
        elif window_type == "time":
            window_desc = 60.0 if window_size is None else window_size
            window_ns = _seconds_ns("window_size", window_desc, allow_zero=False)
            if window_ns < TIME_BUCKETS:
                raise ValueError(f"window_size must be at least {TIME_BUCKETS} ns for a time "
                                 f"window, got {window_desc}")
            size, bucket_ns = 0, window_ns // TIME_BUCKETS
        else:
            raise ValueError(f"window_type must be 'count' or 'time', got {window_type!r}")
        if minimum_calls is None:
            minimum_calls = min(10, size) if window_type == "count" else 10
        else:
            minimum_calls = _count("minimum_calls", minimum_calls)
            if window_type == "count" and minimum_calls > size:
                raise ValueError(f"minimum_calls must be <= window_size ({size}) for a count "
                                 f"window, got {minimum_calls}")
        failure_rate = _rate("failure_rate_threshold", failure_rate_threshold)
        slow_rate = _rate("slow_call_rate_threshold", slow_call_rate_threshold)
        if isinstance(exclude, type):
            exclude = (exclude,)
        if not isinstance(exclude, (tuple, list)) or not all(
                isinstance(e, type) and issubclass(e, BaseException) for e in exclude):
            raise TypeError(f"exclude must be an exception type or a tuple of them, got {exclude!r}")
        if clock is not None and not callable(clock):
            raise TypeError(f"clock must be a zero-argument callable returning ns, got {clock!r}")
        if threshold_policy is None:
            threshold_policy = StaticThreshold(latency_threshold)
        elif not callable(getattr(threshold_policy, "threshold_ns", None)):
            raise TypeError(f"threshold_policy must have a threshold_ns(window, current_ns) "
                            f"method, got {threshold_policy!r}")
        p_window, p_interval = _window_options(
            "threshold_policy", getattr(threshold_policy, "window", None),
            getattr(threshold_policy, "interval", None))
        threshold_ns = _check_threshold(threshold_policy,
                                        threshold_policy.threshold_ns(None, threshold_ns))

        self._policy = threshold_policy
        self._listeners: tuple[Callable[[str, str, str], Any], ...] = ()
        self._cursor = 0
        self._dispatching = threading.Lock()
        self._updating = threading.Lock()
        self._listener_errors = 0
        self._policy_errors = 0
        self._threshold_updates = 0
        self._transitions_lost = 0
        self._config = {
            "latency_threshold": latency_threshold, "failure_threshold": failure_threshold,
            "success_threshold": success_threshold, "timeout": timeout,
            "latency_violation_threshold": latency_violation_threshold,
            "half_open_max_calls": half_open_max_calls, "window_type": window_type,
            "window_size": window_desc, "minimum_calls": minimum_calls,
            "failure_rate_threshold": failure_rate_threshold,
            "slow_call_rate_threshold": slow_call_rate_threshold,
            "exclude": tuple(exclude), "threshold_policy": threshold_policy,
        }
        self._configure(
            name, threshold_ns=threshold_ns, failure_threshold=failure_threshold,
            success_threshold=success_threshold, timeout_ns=timeout_ns,
            violation_threshold=latency_violation_threshold, half_open_max=half_open_max_calls,
            window_type=window_type, window_size=size, bucket_ns=bucket_ns,
            minimum_calls=minimum_calls, failure_rate=failure_rate, slow_rate=slow_rate,
            update_every=p_window,
            update_interval_ns=0 if p_interval is None else _seconds_ns("interval", p_interval,
                                                                         allow_zero=False),
            exclude=tuple(exclude), clock=clock)

    # ---- decorator, async ------------------------------------------------------------------

    def __call__(self, fn):
        """Decorate ``fn`` (a plain or an ``async def`` function) so each call goes through the
        breaker."""
        self._require_initialised()
        if inspect.iscoroutinefunction(fn):
            @functools.wraps(fn)
            async def guarded_async(*args, **kwargs):
                return await self.call_async(fn, *args, **kwargs)
            return guarded_async
        return functools.wraps(fn)(self._wrap(fn))

    async def call_async(self, fn, *args, **kwargs):
        """Await ``fn(*args, **kwargs)`` through the breaker; timed from before the call until
        its awaitable completes. Raises CircuitOpenError without calling ``fn`` when refused."""
        self._require_initialised()
        t0 = self._enter()
        try:
            result = await fn(*args, **kwargs)
        except BaseException as e:
            self._exit(t0, e)
            raise
        self._exit(t0)
        return result

    async def __aenter__(self):
        return self.__enter__()

    async def __aexit__(self, exc_type, exc, tb):
        return self.__exit__(exc_type, exc, tb)

    # ---- operators -------------------------------------------------------------------------

    def reset(self) -> None:
        """Close the breaker with an empty window (from any state). Lifetime counts are kept."""
        if self._force("closed"):
            self._dispatch()

    def force_open(self) -> None:
        """Refuse every call (retry_after inf) until ``reset()``."""
        if self._force("forced_open"):
            self._dispatch()

    def disable(self) -> None:
        """Let every call through and never trip (counts still kept) until ``reset()``."""
        if self._force("disabled"):
            self._dispatch()

    # ---- listeners and policy, off the per-call path ---------------------------------------

    def add_listener(self, fn: Callable[[str, str, str], Any]) -> None:
        """Call ``fn(name, old, new)`` after each state transition."""
        self._require_initialised()
        if not callable(fn):
            raise TypeError(f"listener must be callable, got {fn!r}")
        self._listeners = self._listeners + (fn,)

    def remove_listener(self, fn: Callable[[str, str, str], Any]) -> None:
        """Stop calling ``fn``; ValueError if it was not added."""
        self._require_initialised()
        listeners = list(self._listeners)
        listeners.remove(fn)
        self._listeners = tuple(listeners)

    def poll(self) -> None:
        """Dispatch pending transitions to listeners and run the threshold policy if a window
        is complete. For owners of compiled callers (their acquire/record results say when)."""
        self._require_initialised()
        self._dispatch()
        if self._update_due():
            self._on_update_due()

    def _on_transition(self):
        self._dispatch()

    def _dispatch(self):
        # One dispatcher at a time, so listeners see transitions in order; a thread that finds
        # another dispatching leaves its events to it (the loop re-checks after releasing).
        while self._cursor != self._transition_count():
            if not self._dispatching.acquire(blocking=False):
                return
            try:
                events, self._cursor, lost = self._events(self._cursor)
                self._transitions_lost += lost
                for old, new in events:
                    for fn in self._listeners:
                        try:
                            fn(self.name, old, new)
                        except Exception:
                            self._listener_errors += 1
                            log.exception("circuit breaker %r: listener %r failed on %s -> %s",
                                          self.name, fn, old, new)
                if not events and not lost:
                    return  # the next event's writer has not logged it yet; it dispatches
            finally:
                self._dispatching.release()

    def _on_update_due(self):
        if not self._updating.acquire(blocking=False):
            return  # another thread is running the policy for this window
        try:
            window = self._rotate(self._now_ns())
            current = self.threshold_ns
            try:
                new = _check_threshold(self._policy, self._policy.threshold_ns(window, current))
            except Exception:
                self._policy_errors += 1
                log.exception("circuit breaker %r: threshold policy %r failed; keeping %d ns",
                              self.name, self._policy, current)
                return
            self._set_threshold_ns(new)
            self._threshold_updates += 1
        finally:
            self._updating.release()

    def _now_ns(self):
        return self._clock_ns()

    # ---- observation -----------------------------------------------------------------------

    @property
    def threshold(self) -> float:
        """The current latency threshold in seconds."""
        return self.threshold_ns / 1e9

    @property
    def config(self) -> dict:
        """The options the breaker was built with."""
        return dict(self._config)

    def stats(self) -> dict:
        """Counts, window, latency percentiles and threshold.

        ``calls`` = ``successes + failures + rejected`` + calls in flight; ``slow_calls`` counts
        calls slower than the threshold at the time (successes and failures); ``window_*`` is the
        sliding window of the closed-state rules; ``p50_ns``/``p99_ns`` are over the successful
        calls of the current and the last completed latency window.
        """
        now = self._now_ns()
        c = self._counts(now)
        current, last = self._windows()
        lat = type(current)()
        lat.merge(current)
        lat.merge(last)
        return {
            "name": self.name,
            "state": c["state"],
            "calls": c["permitted"] + c["rejected"],
            "successes": c["successes"],
            "failures": c["failures"],
            "slow_calls": c["slow"],
            "rejected": c["rejected"],
            "in_flight": c["permitted"] - c["successes"] - c["failures"],
            "transitions": c["transitions"],
            "consecutive_failures": c["consecutive_failures"],
            "window_calls": c["window_calls"],
            "window_failures": c["window_failures"],
            "window_slow_calls": c["window_slow"],
            "trials_in_flight": c["trials_in_flight"] if c["state"] == "half_open" else 0,
            "latency_count": lat.count,
            "p50_ns": lat.percentile(50),
            "p99_ns": lat.percentile(99),
            "threshold_ns": self.threshold_ns,
            "threshold_updates": self._threshold_updates,
            "retry_after": self._retry_after(now),
            "listener_errors": self._listener_errors,
            "policy_errors": self._policy_errors,
            "transitions_lost": self._transitions_lost,
        }

    def __repr__(self):
        if not self._initialised:
            return f"<{type(self).__name__} (not initialised)>"
        return (f"CircuitBreaker({self.name!r}, state={self.state!r}, "
                f"threshold={self.threshold_ns / 1e9:g}s)")
