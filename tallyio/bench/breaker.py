"""CircuitBreaker per-call overhead against calling directly, pybreaker and circuitbreaker, in the
same run. Every breaker is closed (or, for the rejection rows, open) and the guarded function is
the same one-line function, so the difference between rows is the breaker's own cost."""
from __future__ import annotations

import asyncio

import numpy as np

from tallyio.bench._harness import Comparison, ns_per_op
from tallyio.resilience.breaker import CircuitBreaker

UNROLL = 20


def _unrolled(body: str, env: dict):
    """A function running ``body`` UNROLL times in straight-line code, so a per-call figure
    carries neither a loop's nor a wrapper's overhead (what timeit measures)."""
    src = "def op():\n" + "".join(f"    {line}\n" for line in body.splitlines()) * UNROLL
    ns = dict(env)
    exec(src, ns)
    return ns["op"]


def _time(body: str, env: dict, repeat: int) -> float:
    return ns_per_op(_unrolled(body, env), UNROLL, repeat=repeat)


def _fn(x=1):
    return x


def _peers():
    try:
        import circuitbreaker
        import pybreaker
    except ImportError:  # a core install without the test extra
        return None, None
    return pybreaker, circuitbreaker


def run(quick: bool = False) -> list[Comparison]:
    repeat = 3 if quick else 7
    pybreaker, circuitbreaker = _peers()
    out = []
    tb = CircuitBreaker("bench")
    env = {"f": _fn, "tb": tb}
    direct = ("direct call f()", _time("f()", env, repeat))

    # breaker.call(f): the form the engine uses.
    peers = [direct]
    if pybreaker:
        env["pb"] = pybreaker.CircuitBreaker()
        peers.append(("pybreaker CircuitBreaker.call(f)", _time("pb.call(f)", env, repeat)))
        # circuitbreaker's own .call(f) checks no state (its decorator does): not a peer here.
    out.append(Comparison("successful call: breaker.call(f)",
                          ("tallyio CircuitBreaker.call(f)", _time("tb.call(f)", env, repeat)), peers))

    # A decorated function.
    env["tf"] = tb(_fn)
    peers = [direct]
    if pybreaker:
        env["pf"] = pybreaker.CircuitBreaker()(_fn)
        peers.append(("pybreaker @breaker", _time("pf()", env, repeat)))
        env["cf"] = circuitbreaker.CircuitBreaker(name="bench-deco")(_fn)
        peers.append(("circuitbreaker @circuit", _time("cf()", env, repeat)))
    out.append(Comparison("successful call: decorated f()",
                          ("tallyio @breaker", _time("tf()", env, repeat)), peers))

    # A with-block around the call.
    peers = [direct]
    if pybreaker:
        peers.append(("pybreaker with breaker.calling()",
                      _time("with pb.calling():\n    f()", env, repeat)))
    out.append(Comparison("successful call: with-block",
                          ("tallyio with breaker:", _time("with tb:\n    f()", env, repeat)), peers))

    # A refused call, caught: what an open breaker costs its caller.
    opened = CircuitBreaker("bench-open")
    opened.force_open()
    env.update(ob=opened, E=Exception)
    peers = []
    if pybreaker:
        pbo = pybreaker.CircuitBreaker()
        pbo.open()
        env["pbo"] = pbo
        peers.append(("pybreaker .call(f) (open)", _time("try:\n    pbo.call(f)\nexcept E:\n    pass", env, repeat)))
        cbo = circuitbreaker.CircuitBreaker(name="bench-open", failure_threshold=1,
                                            recovery_timeout=3600, expected_exception=ValueError)
        try:
            cbo(_raise)()
        except ValueError:
            pass
        env["cbo"] = cbo(_fn)
        peers.append(("circuitbreaker @circuit (open)",
                      _time("try:\n    cbo()\nexcept E:\n    pass", env, repeat)))
    out.append(Comparison("rejected call, caught",
                          ("tallyio .call(f) (forced open)", _time("try:\n    ob.call(f)\nexcept E:\n    pass",
                                                          env, repeat)), peers))

    # Async: an awaited coroutine function through each breaker, per await.
    n = 2_000

    async def coro(x=1):
        return x

    def awaits(fn):
        loop = asyncio.new_event_loop()

        async def many():
            for _ in range(n):
                await fn()
        return lambda: loop.run_until_complete(many()), loop

    timed = []
    candidates = [("tallyio @breaker (async def)", tb(coro)), ("direct await", coro)]
    if circuitbreaker:
        candidates.append(("circuitbreaker @circuit (async def)",
                           circuitbreaker.CircuitBreaker(name="bench-async")(coro)))
    for label, fn in candidates:
        op, loop = awaits(fn)
        try:
            timed.append((label, ns_per_op(op, n, repeat=repeat)))
        finally:
            loop.close()
    out.append(Comparison("successful await", timed[0], timed[1:], unit="await"))

    # From compiled code: nogil acquire + record per guarded item (synthetic clock), against a
    # Python loop doing the same through breaker.call.
    rows = 65_536
    lat = np.full(rows, 1_000, dtype=np.int64)
    ok = np.ones(rows, dtype=np.uint8)
    cb = CircuitBreaker("bench-nogil", threshold_policy=None)
    subject = ns_per_op(lambda: cb._replay(lat, ok, 0, 100), rows, repeat=repeat)
    items = list(range(4096))
    call = tb.call
    peers = [("tallyio breaker.call in a Python loop",
              ns_per_op(lambda: [call(_fn, x) for x in items], len(items), repeat=repeat))]
    if pybreaker:
        pcall = env["pb"].call
        peers.append(("pybreaker .call in a Python loop",
                      ns_per_op(lambda: [pcall(_fn, x) for x in items], len(items), repeat=repeat)))
    out.append(Comparison("guarded item from compiled code",
                          ("tallyio nogil acquire+record", subject), peers, unit="item"))
    return out


def _raise():
    raise ValueError("down")
