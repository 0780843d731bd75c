"""Circuit breaker per-call overhead: tallyio.CircuitBreaker against a direct call, pybreaker and
circuitbreaker in the same run (see tallyio.bench.breaker for the table)."""
import asyncio

import circuitbreaker
import numpy as np
import pybreaker

from tallyio.resilience.breaker import AdaptiveThreshold, CircuitBreaker

from .common import latencies_ns


def f(x=1):
    return x


async def coro(x=1):
    return x


class SuccessfulCall:
    """One successful call through ``breaker.call(f)`` (pybreaker) or the decorator
    (circuitbreaker, whose ``.call`` checks no state)."""

    params = ["direct", "tallyio", "tallyio_decorated", "pybreaker", "circuitbreaker"]
    param_names = ["impl"]

    def setup(self, impl):
        if impl == "direct":
            self.op = f
        elif impl == "tallyio":
            call = CircuitBreaker("asv").call
            self.op = lambda: call(f)
        elif impl == "tallyio_decorated":
            self.op = CircuitBreaker("asv")(f)
        elif impl == "pybreaker":
            call = pybreaker.CircuitBreaker().call
            self.op = lambda: call(f)
        else:
            self.op = circuitbreaker.CircuitBreaker(name="asv")(f)

    def time_call(self, impl):
        self.op()


class WithBlock:
    params = ["tallyio", "pybreaker"]
    param_names = ["impl"]

    def setup(self, impl):
        if impl == "tallyio":
            self.cm = CircuitBreaker("asv")
        else:
            self.pb = pybreaker.CircuitBreaker()  # calling() makes a fresh context manager per use

    def time_with(self, impl):
        if impl == "tallyio":
            with self.cm:
                f()
        else:
            with self.pb.calling():
                f()


class RejectedCall:
    """A refused call, caught by the caller."""

    params = ["tallyio", "pybreaker", "circuitbreaker"]
    param_names = ["impl"]

    def setup(self, impl):
        if impl == "tallyio":
            b = CircuitBreaker("asv")
            b.force_open()
            call = b.call
            self.op = lambda: call(f)
        elif impl == "pybreaker":
            b = pybreaker.CircuitBreaker()
            b.open()
            call = b.call
            self.op = lambda: call(f)
        else:
            b = circuitbreaker.CircuitBreaker(name="asv-open", failure_threshold=1,
                                              recovery_timeout=3600, expected_exception=ValueError)

            def boom():
                raise ValueError("down")
            try:
                b(boom)()
            except ValueError:
                pass
            self.op = b(f)

    def time_rejected(self, impl):
        try:
            self.op()
        except Exception:
            pass


class AwaitCall:
    """1,000 awaits of a decorated coroutine function; per await is time / 1,000."""

    params = ["direct", "tallyio", "circuitbreaker"]
    param_names = ["impl"]

    def setup(self, impl):
        fn = {"direct": coro, "tallyio": CircuitBreaker("asv")(coro),
              "circuitbreaker": circuitbreaker.CircuitBreaker(name="asv-async")(coro)}[impl]
        self.loop = asyncio.new_event_loop()

        async def many():
            for _ in range(1000):
                await fn()
        self.many = many

    def teardown(self, impl):
        self.loop.close()

    def time_awaits(self, impl):
        self.loop.run_until_complete(self.many())


class GuardedItems:
    """``n`` items each guarded by acquire + record: from compiled nogil code (tallyio), or a
    Python loop through ``breaker.call`` (tallyio, pybreaker). Latencies from common.py; an
    adaptive threshold follows them."""

    params = (["tallyio_nogil", "tallyio_call", "pybreaker_call"], [1_000, 100_000])
    param_names = ["impl", "n"]

    def setup(self, impl, n):
        self.lat = latencies_ns(n)
        self.ok = np.ones(n, dtype=np.uint8)
        self.items = self.lat.tolist()
        if impl == "pybreaker_call":
            self.call = pybreaker.CircuitBreaker().call
        else:
            self.b = CircuitBreaker("asv", latency_violation_threshold=None,
                                    threshold_policy=AdaptiveThreshold(window=1000))
            self.call = self.b.call

    def time_guard(self, impl, n):
        if impl == "tallyio_nogil":
            self.b._replay(self.lat, self.ok, 0, 100)
        else:
            call = self.call
            for x in self.items:
                call(f, x)
