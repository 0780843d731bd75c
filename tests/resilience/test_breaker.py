"""CircuitBreaker: one test per rule on an injected clock, a property test against a plain-Python
model, and multi-threaded stress through the nogil C entry points."""
from __future__ import annotations

import asyncio
import logging
import math
import threading

import numpy as np
import pluggy
import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from tallyio import LatencyHistogram, hookspecs
from tallyio._core.breaker import TIME_BUCKETS, BreakerCore
from tallyio.errors import CircuitOpenError, TallyIOError
from tallyio.resilience import breaker as breaker_mod
from tallyio.resilience.breaker import AdaptiveThreshold, CircuitBreaker, StaticThreshold

MS = 1_000_000
S = 1_000_000_000


class Clock:
    """A manual ns clock: only ``advance`` (or setting ``t``) moves it."""

    def __init__(self, t: int = 1_000 * S):
        self.t = t

    def __call__(self) -> int:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += round(seconds * 1e9)


@pytest.fixture
def clock():
    return Clock()


def make(clock, **kw):
    kw.setdefault("timeout", 10.0)
    return CircuitBreaker("svc", clock=clock, **kw)


class Boom(Exception):
    pass


def ok_call(b, clock, latency=0.0001):
    def fn():
        clock.advance(latency)
        return "ok"
    return b.call(fn)


def fail_call(b, clock, latency=0.0001, exc=Boom):
    def fn():
        clock.advance(latency)
        raise exc("down")
    with pytest.raises(exc):
        b.call(fn)


def counts_add_up(b):
    s = b.stats()
    assert s["calls"] == s["successes"] + s["failures"] + s["rejected"] + s["in_flight"]
    return s


# ---- configuration --------------------------------------------------------------------------

@pytest.mark.parametrize("kw, exc, words", [
    ({"failure_threshold": 0}, ValueError, ["failure_threshold", "0"]),
    ({"failure_threshold": 2.5}, TypeError, ["failure_threshold", "2.5"]),
    ({"failure_threshold": True}, TypeError, ["failure_threshold", "True"]),
    ({"timeout": -1}, ValueError, ["timeout", "-1"]),
    ({"timeout": float("nan")}, ValueError, ["timeout", "nan"]),
    ({"timeout": float("inf")}, ValueError, ["timeout", "inf"]),
    ({"latency_threshold": 0}, ValueError, ["latency_threshold", "0"]),
    ({"latency_threshold": -0.5}, ValueError, ["latency_threshold", "-0.5"]),
    ({"latency_threshold": 1e-12}, ValueError, ["latency_threshold", "1e-12"]),
    ({"latency_threshold": "1ms"}, TypeError, ["latency_threshold", "1ms"]),
    ({"success_threshold": 0}, ValueError, ["success_threshold", "0"]),
    ({"success_threshold": 5000}, ValueError, ["success_threshold", "5000"]),
    ({"half_open_max_calls": 0}, ValueError, ["half_open_max_calls", "0"]),
    ({"latency_violation_threshold": 0}, ValueError, ["latency_violation_threshold", "0"]),
    ({"window_type": "sliding"}, ValueError, ["window_type", "sliding"]),
    ({"window_size": 0}, ValueError, ["window_size", "0"]),
    ({"window_type": "time", "window_size": -2.0}, ValueError, ["window_size", "-2.0"]),
    ({"window_size": 5, "minimum_calls": 6}, ValueError, ["minimum_calls", "6"]),
    ({"minimum_calls": 0}, ValueError, ["minimum_calls", "0"]),
    ({"failure_rate_threshold": 0}, ValueError, ["failure_rate_threshold", "0"]),
    ({"slow_call_rate_threshold": 150}, ValueError, ["slow_call_rate_threshold", "150"]),
    ({"exclude": (int,)}, TypeError, ["exclude", "int"]),
    ({"clock": 5}, TypeError, ["clock", "5"]),
    ({"threshold_policy": object()}, TypeError, ["threshold_policy", "object"]),
    ({"name": 3}, TypeError, ["name", "3"]),
])
def test_bad_config_names_option_and_value(kw, exc, words):
    with pytest.raises(exc) as info:
        CircuitBreaker(**kw)
    for w in words:
        assert w in str(info.value)


@pytest.mark.parametrize("kw, words", [
    ({"k": 0}, ["k", "0"]),
    ({"percentile": 0}, ["percentile", "0"]),
    ({"floor": 0.01, "ceiling": 0.001}, ["ceiling", "0.001"]),
    ({"floor": -1}, ["floor", "-1"]),
    ({"window": 0}, ["window", "0"]),
    ({"window": None, "interval": None}, ["window", "interval"]),
    ({"interval": -1.0}, ["interval", "-1.0"]),
])
def test_bad_adaptive_policy(kw, words):
    with pytest.raises((ValueError, TypeError)) as info:
        AdaptiveThreshold(**kw)
    for w in words:
        assert w in str(info.value)


def test_policy_returning_bad_initial_threshold_is_refused():
    class Bad:
        def threshold_ns(self, window, current_ns):
            return 0
    with pytest.raises(ValueError, match="returned 0"):
        CircuitBreaker(threshold_policy=Bad())


def test_core_is_internal():
    with pytest.raises(TypeError, match="internal"):
        BreakerCore()


def test_circuit_open_error_is_a_tallyio_error():
    assert issubclass(CircuitOpenError, TallyIOError)


# ---- closed-state rules ---------------------------------------------------------------------

def test_consecutive_failures_open(clock):
    b = make(clock, failure_threshold=3)
    fail_call(b, clock)
    fail_call(b, clock)
    ok_call(b, clock)  # a success resets the run
    fail_call(b, clock)
    fail_call(b, clock)
    assert b.state == "closed"
    fail_call(b, clock)
    assert b.state == "open"
    with pytest.raises(CircuitOpenError) as info:
        ok_call(b, clock)
    assert info.value.name == "svc"
    assert info.value.retry_after == pytest.approx(10.0)
    s = counts_add_up(b)
    assert (s["calls"], s["failures"], s["successes"], s["rejected"]) == (7, 5, 1, 1)


def test_two_slow_successes_open_with_violation_threshold_two(clock):
    # The plan's own test: slow successes are violations.
    b = make(clock, latency_threshold=0.001, latency_violation_threshold=2, failure_threshold=5)
    assert ok_call(b, clock, latency=0.002) == "ok"
    assert b.state == "closed"
    assert ok_call(b, clock, latency=0.002) == "ok"
    assert b.state == "open"
    s = b.stats()
    assert (s["successes"], s["slow_calls"], s["failures"]) == (2, 2, 0)


def test_call_at_threshold_is_not_slow(clock):
    b = make(clock, latency_threshold=0.001, latency_violation_threshold=1)
    ok_call(b, clock, latency=0.001)
    assert b.state == "closed"
    assert b.stats()["slow_calls"] == 0


def test_slow_failure_is_a_failure_and_a_violation(clock):
    b = make(clock, latency_violation_threshold=2, failure_threshold=5)
    fail_call(b, clock, latency=0.005)
    s = b.stats()
    assert (s["failures"], s["slow_calls"], s["window_slow_calls"]) == (1, 1, 1)
    fail_call(b, clock, latency=0.005)
    assert b.state == "open"


def test_rules_can_be_turned_off(clock):
    b = make(clock, failure_threshold=None, latency_violation_threshold=None)
    for _ in range(50):
        fail_call(b, clock, latency=1.0)
    assert b.state == "closed"


def test_failure_rate_waits_for_minimum_calls(clock):
    b = make(clock, failure_threshold=None, latency_violation_threshold=None, window_size=10,
             minimum_calls=4, failure_rate_threshold=50)
    fail_call(b, clock)
    ok_call(b, clock)
    fail_call(b, clock)  # 2 of 3 failed, but fewer than minimum_calls
    assert b.state == "closed"
    ok_call(b, clock)  # 2 of 4 = 50%: at the threshold opens, as in resilience4j
    assert b.state == "open"


def test_failure_rate_below_threshold_stays_closed(clock):
    b = make(clock, failure_threshold=None, latency_violation_threshold=None, window_size=4,
             minimum_calls=4, failure_rate_threshold=50)
    for _ in range(10):  # 1 failure in each 4: 25%
        fail_call(b, clock)
        ok_call(b, clock)
        ok_call(b, clock)
        ok_call(b, clock)
    assert b.state == "closed"
    assert b.stats()["window_calls"] == 4


def test_slow_call_rate_opens(clock):
    b = make(clock, failure_threshold=None, latency_violation_threshold=None, window_size=5,
             minimum_calls=5, slow_call_rate_threshold=60, latency_threshold=0.001)
    for lat in (0.002, 0.0001, 0.002, 0.0001):
        ok_call(b, clock, latency=lat)
    assert b.state == "closed"
    ok_call(b, clock, latency=0.002)  # 3 of 5 slow = 60%
    assert b.state == "open"


def test_count_window_slides(clock):
    b = make(clock, latency_violation_threshold=2, window_size=3, latency_threshold=0.001)
    ok_call(b, clock, latency=0.002)
    for _ in range(3):
        ok_call(b, clock)  # pushes the slow call out of the 3-call window
    assert b.stats()["window_slow_calls"] == 0
    ok_call(b, clock, latency=0.002)
    assert b.state == "closed"
    ok_call(b, clock, latency=0.002)
    assert b.state == "open"


def test_time_window_expiry(clock):
    b = make(clock, latency_violation_threshold=2, window_type="time", window_size=10.0,
             latency_threshold=0.001)
    ok_call(b, clock, latency=0.002)
    assert b.stats()["window_slow_calls"] == 1
    clock.advance(10.5)  # a call leaves a 10 s window 9 to 10 s after it ended
    s = b.stats()
    assert (s["window_calls"], s["window_slow_calls"]) == (0, 0)
    ok_call(b, clock, latency=0.002)
    assert b.state == "closed"
    clock.advance(5.0)
    ok_call(b, clock, latency=0.002)  # both within the last 10 s
    assert b.state == "open"


def test_time_window_keeps_calls_younger_than_nine_tenths(clock):
    b = make(clock, latency_violation_threshold=None, window_type="time", window_size=10.0)
    clock.t = 100 * S  # a bucket boundary: bucket = 1 s
    ok_call(b, clock, latency=0)
    clock.advance(8.99)
    assert b.stats()["window_calls"] == 1
    clock.advance(1.02)
    assert b.stats()["window_calls"] == 0


def test_time_window_failure_rate(clock):
    b = make(clock, failure_threshold=None, window_type="time", window_size=1.0,
             minimum_calls=3, failure_rate_threshold=100)
    fail_call(b, clock)
    fail_call(b, clock)
    clock.advance(2.0)  # both failures expire
    fail_call(b, clock)
    fail_call(b, clock)
    assert b.state == "closed"
    fail_call(b, clock)
    assert b.state == "open"


# ---- open, half-open ------------------------------------------------------------------------

def open_breaker(b, clock):
    for _ in range(b.config["failure_threshold"]):
        fail_call(b, clock)
    assert b.state == "open"


def test_timeout_moves_to_half_open(clock):
    b = make(clock, failure_threshold=1, timeout=10.0)
    events = []
    b.add_listener(lambda *a: events.append(a))
    open_breaker(b, clock)
    clock.advance(4.0)
    with pytest.raises(CircuitOpenError) as info:
        ok_call(b, clock)
    assert info.value.retry_after == pytest.approx(6.0)
    assert b.stats()["retry_after"] == pytest.approx(6.0)
    clock.advance(6.0)
    assert b.state == "open"  # lazily: the next call moves it
    assert b.try_acquire()
    assert b.state == "half_open"
    assert events == [("svc", "closed", "open"), ("svc", "open", "half_open")]


def test_half_open_max_calls(clock):
    b = make(clock, failure_threshold=1, half_open_max_calls=2, success_threshold=3)
    open_breaker(b, clock)
    clock.advance(10.0)
    assert b.try_acquire() and b.try_acquire()
    assert not b.try_acquire()
    with pytest.raises(CircuitOpenError) as info:
        ok_call(b, clock)
    assert info.value.retry_after == 0.0
    assert "trial calls are in flight" in str(info.value)
    assert b.stats()["trials_in_flight"] == 2
    b.record_result(1000, True)  # a trial ends: its slot is free again
    assert b.try_acquire()
    s = counts_add_up(b)
    assert (s["rejected"], s["in_flight"]) == (2, 2)


def test_success_threshold_closes(clock):
    b = make(clock, failure_threshold=2, success_threshold=3)
    open_breaker(b, clock)
    clock.advance(10.0)
    ok_call(b, clock)
    ok_call(b, clock)
    assert b.state == "half_open"
    ok_call(b, clock)
    assert b.state == "closed"
    s = b.stats()
    assert (s["window_calls"], s["consecutive_failures"]) == (0, 0)  # a fresh window
    fail_call(b, clock)
    assert b.state == "closed"  # one failure of the old run is not carried over


def test_failure_in_half_open_reopens(clock):
    b = make(clock, failure_threshold=1, success_threshold=2, timeout=10.0)
    open_breaker(b, clock)
    clock.advance(10.0)
    ok_call(b, clock)
    fail_call(b, clock)
    assert b.state == "open"
    with pytest.raises(CircuitOpenError) as info:
        ok_call(b, clock)
    assert info.value.retry_after == pytest.approx(10.0)  # a full timeout from the reopening


def test_slow_trial_reopens(clock):
    b = make(clock, failure_threshold=1, success_threshold=2, latency_threshold=0.001)
    open_breaker(b, clock)
    clock.advance(10.0)
    assert ok_call(b, clock, latency=0.002) == "ok"
    assert b.state == "open"


def test_zero_timeout_half_opens_on_the_next_call(clock):
    b = make(clock, failure_threshold=1, timeout=0.0, success_threshold=1)
    open_breaker(b, clock)
    ok_call(b, clock)
    assert b.state == "closed"


# ---- operators --------------------------------------------------------------------------------

def test_force_open_and_reset(clock):
    b = make(clock)
    b.force_open()
    assert b.state == "forced_open"
    with pytest.raises(CircuitOpenError) as info:
        ok_call(b, clock)
    assert info.value.retry_after == math.inf
    clock.advance(1e6)
    assert not b.try_acquire()  # no timeout ends it
    b.reset()
    assert b.state == "closed"
    assert ok_call(b, clock) == "ok"


def test_disabled_never_trips_but_counts(clock):
    b = make(clock, failure_threshold=1)
    b.disable()
    for _ in range(5):
        fail_call(b, clock)
    assert b.state == "disabled"
    s = counts_add_up(b)
    assert (s["failures"], s["rejected"]) == (5, 0)
    b.reset()
    assert b.state == "closed"


def test_reset_clears_the_window_but_not_totals(clock):
    b = make(clock, failure_threshold=3)
    fail_call(b, clock)
    fail_call(b, clock)
    b.reset()
    fail_call(b, clock)
    fail_call(b, clock)
    assert b.state == "closed"
    assert b.stats()["failures"] == 4


# ---- listeners ------------------------------------------------------------------------------

def test_listeners_see_each_transition_after_it(clock):
    b = make(clock, failure_threshold=1, success_threshold=1)
    seen = []
    b.add_listener(lambda name, old, new: seen.append((name, old, new, b.state)))
    open_breaker(b, clock)
    clock.advance(10.0)
    ok_call(b, clock)
    b.force_open()
    b.disable()
    b.reset()
    assert seen == [("svc", "closed", "open", "open"), ("svc", "open", "half_open", "half_open"),
                    ("svc", "half_open", "closed", "closed"),
                    ("svc", "closed", "forced_open", "forced_open"),
                    ("svc", "forced_open", "disabled", "disabled"),
                    ("svc", "disabled", "closed", "closed")]
    assert b.stats()["transitions"] == 6


def test_listener_error_is_caught_counted_logged(clock, caplog):
    b = make(clock, failure_threshold=1)
    seen = []

    def bad(*a):
        raise RuntimeError("listener bug")
    b.add_listener(bad)
    b.add_listener(lambda *a: seen.append(a))
    with caplog.at_level(logging.ERROR, logger="tallyio.breaker"):
        fail_call(b, clock)  # the caller sees its own exception, not the listener's
    assert seen == [("svc", "closed", "open")]
    assert b.stats()["listener_errors"] == 1
    assert "listener bug" in caplog.text
    b.remove_listener(bad)
    b.reset()
    assert b.stats()["listener_errors"] == 1
    with pytest.raises(ValueError):
        b.remove_listener(bad)
    with pytest.raises(TypeError, match="listener must be callable"):
        b.add_listener(3)


def test_listener_may_call_the_breaker(clock):
    b = make(clock, failure_threshold=1, timeout=0.0, success_threshold=1)
    seen = []

    def listener(name, old, new):
        seen.append(new)
        if new == "open":
            ok_call(b, clock)  # half-opens and closes it from inside a listener
    b.add_listener(listener)
    fail_call(b, clock)
    assert seen == ["open", "half_open", "closed"]
    assert b.state == "closed"


# ---- outcomes, call forms -------------------------------------------------------------------

def test_excluded_exceptions_are_successes(clock):
    b = make(clock, failure_threshold=1, exclude=(KeyError,))
    fail_call(b, clock, exc=KeyError)
    assert b.state == "closed"
    s = b.stats()
    assert (s["successes"], s["failures"]) == (1, 0)


def test_base_exceptions_are_not_failures(clock):
    b = make(clock, failure_threshold=1)
    fail_call(b, clock, exc=KeyboardInterrupt)
    assert b.state == "closed"
    assert b.stats()["successes"] == 1


def test_with_block_is_timed_and_exceptions_fail(clock):
    b = make(clock, failure_threshold=2, latency_violation_threshold=1, latency_threshold=0.001)
    with b:
        clock.advance(0.0005)
    assert b.stats()["slow_calls"] == 0
    with pytest.raises(Boom):
        with b:
            raise Boom()
    assert b.stats()["failures"] == 1
    with b:
        clock.advance(0.002)
    assert b.state == "open"
    with pytest.raises(CircuitOpenError):
        with b:
            pytest.fail("the block must not run")


def test_nested_with_blocks_of_two_breakers(clock):
    a = make(clock, latency_threshold=0.001, latency_violation_threshold=5)
    b = make(clock, latency_threshold=0.001, latency_violation_threshold=5)
    with a:
        clock.advance(0.0005)
        with b:
            clock.advance(0.0001)
        clock.advance(0.0005)
    assert (a.stats()["slow_calls"], b.stats()["slow_calls"]) == (1, 0)


def test_exit_without_enter_is_an_error(clock):
    b = make(clock)
    with pytest.raises(RuntimeError, match="__exit__ without __enter__"):
        b.__exit__(None, None, None)


def test_decorator_keeps_the_function(clock):
    b = make(clock, failure_threshold=1)

    @b
    def add(x, y=1):
        """Adds."""
        return x + y
    assert add(2, y=3) == 5
    assert add.__name__ == "add" and add.__doc__ == "Adds."
    b.force_open()
    with pytest.raises(CircuitOpenError):
        add(1)


def test_decorated_method_binds(clock):
    b = make(clock, failure_threshold=1)

    class Client:
        def __init__(self):
            self.calls = 0

        @b
        def fetch(self, x):
            self.calls += 1
            if x < 0:
                raise Boom()
            return x
    c = Client()
    assert c.fetch(4) == 4 and c.calls == 1
    with pytest.raises(Boom):
        c.fetch(-1)
    assert b.state == "open"
    assert Client.fetch.fn.__name__ == "fetch"
    with pytest.raises(TypeError, match="fn must be callable"):
        b._wrap(3)


def test_async(clock):
    b = make(clock, failure_threshold=2, latency_threshold=0.001, latency_violation_threshold=5)

    async def work(x, latency=0.0001):
        clock.advance(latency)
        await asyncio.sleep(0)
        return x * 2

    @b
    async def decorated(x):
        return await work(x, latency=0.002)

    async def broken():
        await asyncio.sleep(0)
        raise Boom()

    async def main():
        assert await b.call_async(work, 21) == 42
        assert await decorated(1) == 2
        async with b:
            clock.advance(0.0001)
        with pytest.raises(Boom):
            await b.call_async(broken)
        with pytest.raises(Boom):
            async with b:
                await broken()
        assert b.state == "open"
        with pytest.raises(CircuitOpenError):
            await b.call_async(work, 1)
        # Interleaved async with-blocks in two tasks each time their own block.
        b.reset()

        async def task(lat):
            async with b:
                await asyncio.sleep(0)
                clock.advance(lat)
                await asyncio.sleep(0)
        await asyncio.gather(task(0.0001), task(0.0001))

    asyncio.run(main())
    s = counts_add_up(b)
    assert (s["successes"], s["failures"], s["rejected"], s["slow_calls"]) == (5, 2, 1, 1)


def test_manual_acquire_record(clock):
    b = make(clock, failure_threshold=1)
    assert b.try_acquire(now=clock.t)
    b.record_result(5_000, False, now=clock.t)
    assert b.state == "open"
    with pytest.raises(ValueError, match="latency_ns"):
        b.record_result(-1, True)


# ---- latency threshold policies -------------------------------------------------------------

def feed(b, latency_ns, n):
    for _ in range(n):
        assert b.try_acquire()
        b.record_result(latency_ns, True)


def test_adaptive_threshold_tracks_a_shifting_distribution(clock):
    policy = AdaptiveThreshold(k=2.0, percentile=99, floor=0.0002, ceiling=0.05, window=200)
    b = make(clock, latency_threshold=0.001, threshold_policy=policy,
             latency_violation_threshold=None)
    assert b.threshold_ns == 1 * MS
    feed(b, 200_000, 199)
    assert b.threshold_ns == 1 * MS  # the window is not complete yet
    feed(b, 200_000, 1)
    assert b.threshold_ns == pytest.approx(400_000, rel=1 / 64)
    feed(b, 3 * MS, 200)  # the distribution shifts up
    assert b.threshold_ns == pytest.approx(6 * MS, rel=1 / 64)
    feed(b, 100 * MS, 200)  # beyond the ceiling
    assert b.threshold_ns == 50 * MS
    feed(b, 1_000, 200)  # below the floor
    assert b.threshold_ns == 200_000
    assert b.stats()["threshold_updates"] == 4


def test_adaptive_threshold_by_interval(clock):
    b = make(clock, threshold_policy=AdaptiveThreshold(k=1.0, floor=1e-6, window=None,
                                                       interval=1.0))
    feed(b, 50_000, 10)
    assert b.threshold_ns == 1 * MS
    clock.advance(1.0)
    feed(b, 50_000, 1)  # the first call after the interval completes the window
    assert b.threshold_ns == pytest.approx(50_000, rel=1 / 64)


def test_adaptive_initial_threshold_within_bounds(clock):
    b = make(clock, latency_threshold=1.0,
             threshold_policy=AdaptiveThreshold(floor=0.001, ceiling=0.01))
    assert b.threshold_ns == 10 * MS


def test_static_policy_and_stats_percentiles(clock):
    b = make(clock, threshold_policy=StaticThreshold(0.002, window=100),
             latency_violation_threshold=None)
    assert b.threshold_ns == 2 * MS
    feed(b, 10_000, 150)
    feed(b, 1 * MS, 10)
    s = b.stats()
    assert s["latency_count"] == 160  # the completed window of 100 and the current one of 60
    assert s["p50_ns"] == pytest.approx(10_000, rel=1 / 64)
    assert s["p99_ns"] == pytest.approx(1 * MS, rel=1 / 64)
    assert s["threshold_ns"] == 2 * MS


def test_policy_errors_are_counted_and_keep_the_threshold(clock, caplog):
    class Flaky:
        window = 10

        def __init__(self):
            self.n = 0

        def threshold_ns(self, window, current_ns):
            self.n += 1
            if self.n == 2:
                raise RuntimeError("policy bug")
            if self.n == 3:
                return -5
            return current_ns + (self.n > 1)
    b = make(clock, threshold_policy=Flaky())
    start = b.threshold_ns
    with caplog.at_level(logging.ERROR, logger="tallyio.breaker"):
        feed(b, 1000, 20)
    assert b.stats()["policy_errors"] == 2
    assert b.threshold_ns == start
    assert "policy bug" in caplog.text
    feed(b, 1000, 10)
    assert b.threshold_ns == start + 1


def test_threshold_policies_hook():
    got = {}
    breaker_mod.register_threshold_policies(lambda name, factory: got.setdefault(name, factory))
    assert got == {"static": StaticThreshold, "adaptive": AdaptiveThreshold}
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    pm.register(breaker_mod)
    via_pluggy = {}
    pm.hook.register_threshold_policies(register=lambda n, f: via_pluggy.setdefault(n, f))
    assert via_pluggy == got
    policy = via_pluggy["adaptive"](k=4.0, window=50)
    assert CircuitBreaker(threshold_policy=policy).config["threshold_policy"] is policy


# ---- property test against a plain-Python model ---------------------------------------------

class Model:
    """The state machine as specified, single-threaded, in plain Python."""

    def __init__(self, cfg):
        self.c = cfg
        self.state = "closed"
        self.trials = self.hsucc = self.consec = 0
        self.open_until = 0
        self.permitted = self.rejected = self.successes = self.failures = self.slow = 0
        self.transitions = 0
        if cfg["window_type"] == "count":
            self.slots = [None] * cfg["window_size"]
            self.cursor = 0
        else:
            self.bucket_ns = round(cfg["window_size"] * 1e9) // TIME_BUCKETS
            self.buckets = [[0, 0, 0] for _ in range(TIME_BUCKETS)]
            self.epoch = 0

    def go(self, state):
        self.state = state
        self.trials = self.hsucc = 0
        self.transitions += 1

    def advance(self, now):
        if self.c["window_type"] == "time":
            e = now // self.bucket_ns
            if e > self.epoch:
                for k in range(max(self.epoch + 1, e - TIME_BUCKETS + 1), e + 1):
                    self.buckets[k % TIME_BUCKETS] = [0, 0, 0]
                self.epoch = e

    def window(self):
        if self.c["window_type"] == "count":
            full = [s for s in self.slots if s is not None]
            return len(full), sum(f for f, _ in full), sum(s for _, s in full)
        return tuple(sum(b[i] for b in self.buckets) for i in range(3))

    def clear(self):
        self.consec = 0
        if self.c["window_type"] == "count":
            self.slots = [None] * len(self.slots)
        else:
            self.buckets = [[0, 0, 0] for _ in range(TIME_BUCKETS)]

    def acquire(self, now):
        if self.state in ("closed", "disabled"):
            self.permitted += 1
            return True
        if self.state == "open" and now >= self.open_until:
            self.go("half_open")
            self.trials = 1
            self.permitted += 1
            return True
        if self.state == "half_open" and self.trials < self.c["half_open_max_calls"]:
            self.trials += 1
            self.permitted += 1
            return True
        self.rejected += 1
        return False

    def open(self, now):
        self.open_until = now + round(self.c["timeout"] * 1e9)
        self.go("open")

    def record(self, now, lat, ok):
        slow = lat > round(self.c["latency_threshold"] * 1e9)
        self.successes += ok
        self.failures += not ok
        self.slow += slow
        if self.state == "closed":
            trip = False
            if not ok:
                self.consec += 1
                trip = self.c["failure_threshold"] is not None and \
                    self.consec >= self.c["failure_threshold"]
            else:
                self.consec = 0
            if self.c["window_type"] == "count":
                self.slots[self.cursor % len(self.slots)] = (not ok, slow)
                self.cursor += 1
            else:
                self.advance(now)
                e = now // self.bucket_ns
                if e + TIME_BUCKETS > self.epoch:
                    b = self.buckets[e % TIME_BUCKETS]
                    b[0] += 1
                    b[1] += not ok
                    b[2] += slow
            n, f, s = self.window()
            c = self.c
            if c["latency_violation_threshold"] is not None and s >= c["latency_violation_threshold"]:
                trip = True
            if n >= c["minimum_calls"]:
                if c["failure_rate_threshold"] is not None and f >= c["failure_rate_threshold"] / 100 * n:
                    trip = True
                if c["slow_call_rate_threshold"] is not None and s >= c["slow_call_rate_threshold"] / 100 * n:
                    trip = True
            if trip:
                self.open(now)
        elif self.state == "half_open":
            if not ok or slow:
                self.open(now)
            elif self.hsucc + 1 >= self.c["success_threshold"]:
                self.clear()
                self.go("closed")
            else:
                self.trials = max(self.trials - 1, 0)
                self.hsucc += 1

    def force(self, state):
        if state == "closed":
            self.clear()
        if self.state != state:
            self.go(state)


configs = st.fixed_dictionaries({
    "latency_threshold": st.sampled_from([0.001, 0.002]),
    "failure_threshold": st.one_of(st.none(), st.integers(1, 4)),
    "success_threshold": st.integers(1, 3),
    "timeout": st.sampled_from([0.0, 0.005, 0.05]),
    "latency_violation_threshold": st.one_of(st.none(), st.integers(1, 4)),
    "half_open_max_calls": st.integers(1, 3),
    "failure_rate_threshold": st.one_of(st.none(), st.sampled_from([20, 33.3, 50, 100])),
    "slow_call_rate_threshold": st.one_of(st.none(), st.sampled_from([25, 50, 100])),
}).flatmap(lambda c: st.one_of(
    st.integers(1, 6).flatmap(lambda n: st.integers(1, n).map(
        lambda m: {**c, "window_type": "count", "window_size": n, "minimum_calls": m})),
    st.tuples(st.sampled_from([0.01, 0.1]), st.integers(1, 6)).map(
        lambda t: {**c, "window_type": "time", "window_size": t[0], "minimum_calls": t[1]}),
))

latencies = st.sampled_from([0, 500_000, 1_000_000, 1_500_000, 3_000_000])
calls = st.tuples(st.just("call"), st.integers(0, 20_000_000), latencies, st.booleans())
ops = st.lists(st.one_of(
    calls, calls, calls,
    st.tuples(st.just("acquire"), st.integers(0, 20_000_000)),
    st.tuples(st.just("record"), st.integers(0, 5_000_000), latencies, st.booleans()),
    st.tuples(st.just("force"), st.sampled_from(["closed", "forced_open", "disabled"])),
), min_size=5, max_size=80)


@settings(max_examples=500, deadline=None)
@given(configs, ops)
def test_matches_model(cfg, program):
    clock = Clock(t=7 * S)
    b = CircuitBreaker("m", clock=clock, **cfg)
    m = Model(cfg)
    events = []
    b.add_listener(lambda name, old, new: events.append(new))
    outstanding = 0
    for op in program:
        if op[0] == "call":
            _, gap, lat, ok = op
            clock.t += gap
            allowed = m.acquire(clock.t)

            def fn():
                clock.t += lat
                if not ok:
                    raise Boom()
            try:
                b.call(fn)
            except CircuitOpenError:
                assert not allowed
            except Boom:
                assert allowed and not ok
            else:
                assert allowed and ok
            if allowed:
                m.record(clock.t, lat, ok)
        elif op[0] == "acquire":
            clock.t += op[1]
            got = b.try_acquire()
            assert got == m.acquire(clock.t)
            outstanding += got
        elif op[0] == "record":
            if outstanding == 0:
                continue
            outstanding -= 1
            _, gap, lat, ok = op
            clock.t += gap
            b.record_result(lat, ok)
            m.record(clock.t, lat, ok)
        else:
            {"closed": b.reset, "forced_open": b.force_open, "disabled": b.disable}[op[1]]()
            m.force(op[1])
        m.advance(clock.t)
        s = b.stats()
        assert s["state"] == m.state
        assert (s["successes"], s["failures"], s["slow_calls"], s["rejected"]) == \
            (m.successes, m.failures, m.slow, m.rejected)
        assert s["calls"] == m.permitted + m.rejected
        assert (s["window_calls"], s["window_failures"], s["window_slow_calls"]) == m.window()
        assert s["consecutive_failures"] == m.consec
        assert s["transitions"] == m.transitions == len(events)
        if m.state == "half_open":
            assert s["trials_in_flight"] == m.trials
        event(f"reached {m.state}")


# ---- concurrency ----------------------------------------------------------------------------

def run_threads(target, n_threads):
    results = [None] * n_threads
    errors = []
    start = threading.Barrier(n_threads)

    def worker(i):
        try:
            start.wait(timeout=60)
            results[i] = target(i)
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)
    threads = [threading.Thread(target=worker, args=(i,)) for i in range(n_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
        assert not t.is_alive(), "a stress thread did not finish"
    assert not errors, errors
    return results


@pytest.mark.parametrize("window_type, window_size", [("count", 16), ("time", 0.001)])
def test_nogil_stress_counts_every_call(window_type, window_size):
    # Four threads flap the breaker through every state from the nogil path while a fifth
    # dispatches transitions to a listener; no call and no transition may be lost.
    b = CircuitBreaker("stress", failure_threshold=3, success_threshold=2, timeout=0.0,
                       half_open_max_calls=2, latency_threshold=0.001,
                       latency_violation_threshold=4, window_type=window_type,
                       window_size=window_size, failure_rate_threshold=50, minimum_calls=8,
                       threshold_policy=StaticThreshold(0.001, window=None))
    seen = []
    b.add_listener(lambda name, old, new: seen.append((old, new)))
    n = 300_000
    done = threading.Event()

    def poller():
        while not done.is_set():
            b.poll()
            done.wait(0.0005)

    p = threading.Thread(target=poller)
    p.start()
    try:
        results = run_threads(lambda i: b._stress(n, 64, 4 + i, 3, 2_000_000, 1_000), 4)
    finally:
        done.set()
        p.join(timeout=60)
    b.poll()
    s = b.stats()
    tot = {k: sum(r[k] for r in results) for k in results[0]}
    assert tot["permitted"] + tot["rejected"] == 4 * n == s["calls"]
    assert s["calls"] == s["successes"] + s["failures"] + s["rejected"]
    assert (s["successes"], s["failures"], s["rejected"]) == \
        (tot["successes"], tot["failures"], tot["rejected"])
    assert s["in_flight"] == 0
    assert s["transitions"] > 10  # it really flapped
    assert tot["transitions"] == s["transitions"]  # each transition had exactly one maker
    assert len(seen) + s["transitions_lost"] == s["transitions"]
    # The dispatched events chain: each one starts where the previous one ended (when none
    # was lost between them).
    if s["transitions_lost"] == 0:
        assert all(a[1] == b_[0] for a, b_ in zip(seen, seen[1:]))
    assert s["latency_count"] == s["successes"]  # one latency window, never rotated
    assert s["state"] in ("closed", "open", "half_open")


def test_stress_with_operators_and_policy_updates():
    b = CircuitBreaker("ops", failure_threshold=3, success_threshold=2, timeout=0.0,
                       half_open_max_calls=3, latency_violation_threshold=None,
                       threshold_policy=AdaptiveThreshold(k=3.0, floor=1e-6, window=500))
    n = 200_000
    stop = threading.Event()
    flips = []

    def operator():
        k = 0
        while not stop.is_set() and k < 2_000:
            (b.force_open, b.disable, b.reset)[k % 3]()
            b.poll()
            k += 1
        flips.append(k)

    op = threading.Thread(target=operator)
    op.start()
    try:
        results = run_threads(lambda i: b._stress(n, 100, 5, 0, 0, 10_000 * (i + 1)), 3)
    finally:
        stop.set()
        op.join(timeout=60)
    b.poll()
    s = b.stats()
    assert s["calls"] == 3 * n == s["successes"] + s["failures"] + s["rejected"]
    assert sum(r["updates_due"] for r in results) >= 1
    assert s["threshold_updates"] >= 1 and s["policy_errors"] == 0
    assert 1_000 <= s["threshold_ns"] <= 100 * MS


def test_python_threads_share_a_breaker():
    b = CircuitBreaker("py", failure_threshold=2, timeout=0.0, success_threshold=1)
    per = 5_000

    def work(i):
        out = {"ok": 0, "fail": 0, "rejected": 0}
        for k in range(per):
            try:
                with b:
                    if (k + i) % 7 == 0:
                        raise Boom()
                out["ok"] += 1
            except Boom:
                out["fail"] += 1
            except CircuitOpenError:
                out["rejected"] += 1
        return out
    res = run_threads(work, 4)
    s = b.stats()
    assert s["calls"] == 4 * per
    assert s["successes"] == sum(r["ok"] for r in res)
    assert s["failures"] == sum(r["fail"] for r in res)
    assert s["rejected"] == sum(r["rejected"] for r in res)


def test_replay_from_arrays():
    b = CircuitBreaker("replay", latency_threshold=0.001, latency_violation_threshold=2,
                       timeout=0.01)
    lat = np.array([100, 2_000_000, 100, 2_000_000, 100, 100], dtype=np.int64)
    ok = np.ones(6, dtype=np.uint8)
    permitted, rejected, end = b._replay(lat, ok, 0, 1_000)
    assert (permitted, rejected) == (4, 2)
    assert b.state == "open"
    with pytest.raises(ValueError, match="same length"):
        b._replay(lat, ok[:3], 0, 0)


def test_histogram_is_a_latency_histogram(clock):
    b = make(clock)
    current, last = b._windows()
    assert isinstance(current, LatencyHistogram) and isinstance(last, LatencyHistogram)


def test_breaker_made_with_new_refuses_every_call():
    """CircuitBreaker.__new__(CircuitBreaker) then a call used to divide by the empty window
    (SIGFPE): the core has a safe window from __cinit__, and every entry point raises a clear
    TallyIOError until the breaker is configured by __init__."""
    from tallyio._core.breaker import Guarded
    for cls in (CircuitBreaker, BreakerCore):
        b = cls.__new__(cls)
        calls = [lambda: b.call(len, "x"), lambda: b.__enter__(), lambda: b._exit(0),
                 lambda: b.try_acquire(), lambda: b.record_result(5, True), lambda: b.state,
                 lambda: b.threshold_ns, lambda: b._counts(0), lambda: b._rotate(0),
                 lambda: b._stress(10, 2, 1, 0, 0, 0), lambda: b._wrap(len)("x")]
        if cls is CircuitBreaker:
            calls += [lambda: b.stats(), lambda: b.reset(), lambda: b.force_open(),
                      lambda: b.poll(), lambda: b(len)("x"), lambda: b.add_listener(print)]
        for call in calls:
            with pytest.raises(TallyIOError, match="is not initialised"):
                call()
    assert repr(CircuitBreaker.__new__(CircuitBreaker)) == "<CircuitBreaker (not initialised)>"
    with pytest.raises(TypeError):
        Guarded.__new__(Guarded)
    ok = CircuitBreaker("fresh")  # a configured one is unaffected
    assert ok.call(len, "abc") == 3 and ok.stats()["successes"] == 1
