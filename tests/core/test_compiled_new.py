"""Every compiled class made with ``Cls.__new__(Cls)`` (skipping ``__init__``) and then used.

The report: WatchList, BatchDrain and CircuitBreaker made that way crashed the interpreter
(SIGSEGV, SIGFPE) because their state was set in ``__init__``. Now state is set in ``__cinit__``:
``__new__`` either refuses (TypeError: the constructor's arguments are missing) or gives an
object whose every method raises a clear error or works. Each class runs in its own subprocess,
which must end normally: a signal (a negative return code) is the failure this guards against.

Every class of every ``tallyio._core`` extension is covered (amm and book have their own such
tests). For the classes listed in SPECS each public method is called with plausible arguments
(and a test keeps SPECS complete); any other class gets generic arguments.
"""
import asyncio
import importlib
import os
import pkgutil
import subprocess
import sys

import numpy as np
import pytest

import tallyio._core
from tallyio.record import TX_DTYPE

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OTHERS = {"amm", "book"}  # covered by their own owners' tests
# Classes outside tallyio._core that are compiled classes underneath, as users meet them.
EXTRA = ["tallyio.resilience.breaker.CircuitBreaker"]


def _ring():
    from tallyio import Ring
    return Ring(16)


def _breaker():
    from tallyio import CircuitBreaker
    return CircuitBreaker("spec")


def _arr(n=4):
    return np.arange(n, dtype=np.int64)


# For each class: constructor arguments for ``__new__(cls, *args)`` (a second instance, made
# without __init__ but with its __cinit__ arguments), and per public name the calls to make
# (None: read the attribute; a list of argument tuples: call it with each). "ops" are protocol
# calls. Order matters where one call would block without an earlier one (close before drain).
SPECS = {
    "tallyio._core.batch.BatchDrain": dict(
        new=lambda: (_ring(), 4, 0.0005),
        calls={"batch_size": None, "ring": None, "time_offset": None, "policy_seconds": None,
               "stats": [()], "drain": [()],
               "drain_into": [(np.zeros(4, np.int64),), (np.zeros(2, np.int64),), (None,)]}),
    "tallyio._core.breaker.BreakerCore": dict(
        new=lambda: ("x",),
        calls={"name": None, "state": None, "threshold_ns": None,
               "call": [(len, "abc")], "try_acquire": [(), (0,)],
               "record_result": [(5, True), (5, False, 0)]},
        ops=["enter_exit"]),
    "tallyio.resilience.breaker.CircuitBreaker": dict(
        new=lambda: ("x",),
        calls={"name": None, "state": None, "threshold_ns": None, "threshold": None,
               "config": None, "stats": [()], "call": [(len, "abc")],
               "call_async": [(asyncio.sleep, 0)], "try_acquire": [()],
               "record_result": [(5, True)], "reset": [()], "force_open": [()],
               "disable": [()], "add_listener": [(print,)], "remove_listener": [(print,)],
               "poll": [()]},
        ops=["enter_exit", "decorate", "repr"]),
    "tallyio._core.breaker.Guarded": dict(
        new=lambda: (_breaker(), len),
        calls={"breaker": None, "fn": None},
        ops=["call_abc", "get", "repr"]),
    "tallyio._core.cache.StateCache": dict(
        new=lambda: (16,),
        calls={"capacity": None, "value_dtype": None, "put": [(1, 2), (2**64, 1)],
               "get": [(1,), (3, 0)], "pop": [(1,), (9, None)], "get_many": [(_arr(),)],
               "put_many": [(_arr(), _arr())], "keys": [()], "stats": [()], "clear": [()]},
        ops=["len", "contains", "repr"]),
    "tallyio._core.hist.LatencyHistogram": dict(
        calls={"count": None, "min": None, "max": None, "mean": None, "record": [(5,), (5, 0)],
               "record_many": [([1, 2],)], "percentile": [(50,)], "percentiles": [()],
               "merge": [("other",)], "reset": [()], "buckets": [()]},
        ops=["repr"]),
    "tallyio._core.objqueue.ObjectQueue": dict(
        new=lambda: (8,),
        calls={"capacity": None, "closed": None, "put": [(1, None)], "try_put": [(1, None)],
               "put_many": [([1, 2], [None, None])], "count_refused": [(2,), (0,)],
               "stats": [()], "close": [()], "drain": [(4, 0), (4, 0, 10)]},
        ops=["len", "repr"]),
    "tallyio._core.objqueue.Batch": dict(
        calls={"items": None, "tags": None, "expired_items": None, "expired_tags": None,
               "expired_ages": None, "how": None, "cut": None, "claim_futures": [()],
               "set_results": [([],)], "set_exception": [(ValueError("x"),)],
               "record_latency": [("hist",)]},
        ops=["len"]),
    "tallyio._core.pool.MemoryPool": dict(
        new=lambda: (),
        calls={"closed": None, "huge_pages": None, "numa_node": None, "on_exhausted": None,
               "stats": [()], "allocate": [(64,), (3 << 20,)], "release": [("block",)],
               "close": [()]},
        ops=["enter_exit", "repr"]),
    "tallyio._core.pool.Block": dict(
        calls={"released": None, "size": None, "size_class": None},
        ops=["len", "memoryview", "asarray", "release_to_pool", "repr"]),
    "tallyio._core.prefetch.PrefetchingIterator": dict(
        new=lambda: (_arr(10), 2),
        calls={"array": None, "distance": None, "position": None,
               "next_many": [(3,), (0,), (100,)]},
        ops=["next", "iter", "length_hint", "repr"]),
    "tallyio._core.ring._RingBase": dict(
        new=lambda: (),
        calls={"capacity": None, "closed": None, "kind": None, "producer_thread": None,
               "consumer_thread": None, "stats": [()], "release_producer": [()],
               "release_consumer": [()], "close": [()]},
        ops=["len", "enter_exit", "repr"]),
    "tallyio._core.ring.Ring": dict(
        new=lambda: (8,),
        calls={"capacity": None, "closed": None, "kind": None, "dtype": None,
               "producer_thread": None, "consumer_thread": None,
               "push": [(1,)], "push_many": [(_arr(),)], "pop": [()], "pop_many": [(4,)],
               "pop_into": [(np.zeros(4, np.int64),)], "stats": [()],
               "release_producer": [()], "release_consumer": [()], "close": [()]},
        ops=["len", "enter_exit", "repr"]),
    "tallyio._core.ring.ObjectRing": dict(
        new=lambda: (8,),
        calls={"capacity": None, "closed": None, "kind": None, "producer_thread": None,
               "consumer_thread": None, "push": [(1,)], "push_many": [([1, 2],)],
               "pop": [(), (0,)], "pop_many": [(4,)], "stats": [()],
               "release_producer": [()], "release_consumer": [()], "close": [()]},
        ops=["len", "enter_exit", "repr"]),
    "tallyio._core.simd.WatchList": dict(
        new=lambda: ([1, 2, 3],),
        calls={"nbytes": None, "to_array": [()], "contains": [(_arr(),), ([0],)]},
        ops=["len", "contains", "repr"]),
}

# What a class outside SPECS gets: every public name read, and called (if callable) with each.
GENERIC_ARGS = [(), (4,), (np.zeros(4, dtype=TX_DTYPE),), (_arr(),)]
OWN = {"batch", "breaker", "cache", "clock", "hist", "objqueue", "pool", "prefetch", "ring", "simd"}


def _compiled_modules():
    names = sorted(m.name for m in pkgutil.iter_modules(tallyio._core.__path__))
    return [n for n in names if n not in OTHERS]


def _classes():
    out = []
    for name in _compiled_modules():
        mod = importlib.import_module(f"tallyio._core.{name}")
        out += [f"{mod.__name__}.{n}" for n, o in sorted(vars(mod).items())
                if isinstance(o, type) and o.__module__ == mod.__name__]
    return out + EXTRA


def _resolve(qualname):
    mod, name = qualname.rsplit(".", 1)
    return getattr(importlib.import_module(mod), name)


def _public(cls):
    return sorted(a for a in dir(cls) if not a.startswith("_"))


def _arg(a):
    """Placeholders for arguments that must be made in the subprocess."""
    if a == "other":
        from tallyio import LatencyHistogram
        return LatencyHistogram()
    if a == "hist":
        from tallyio import LatencyHistogram
        return LatencyHistogram()
    if a == "block":
        from tallyio import MemoryPool
        return MemoryPool(small=1, medium=0, large=0, huge=0).allocate(8)
    return a


def _op(obj, op):
    if op == "len":
        return len(obj)
    if op == "contains":
        return 1 in obj
    if op == "repr":
        return repr(obj)
    if op == "enter_exit":
        with obj:
            pass
        return None
    if op == "decorate":
        return obj(len)("abc")
    if op == "call_abc":
        return obj("abc")
    if op == "get":
        return obj.__get__(object(), object)
    if op == "memoryview":
        return memoryview(obj)
    if op == "asarray":
        return np.asarray(obj)
    if op == "release_to_pool":
        from tallyio import MemoryPool
        return MemoryPool(small=1, medium=0, large=0, huge=0).release(obj)
    if op == "next":
        return next(obj)
    if op == "iter":
        return list(obj)
    if op == "length_hint":
        return obj.__length_hint__()
    raise AssertionError(op)


def _exercise(qualname):
    """In the subprocess: make the instances and call everything, printing each step first."""
    cls = _resolve(qualname)
    spec = SPECS.get(qualname, {})
    instances = []
    try:
        instances.append(("__new__(cls)", cls.__new__(cls)))
    except TypeError as e:
        print(f"__new__(cls) refused: TypeError: {e}", flush=True)
    if "new" in spec:
        try:
            instances.append(("__new__(cls, *args)", cls.__new__(cls, *spec["new"]())))
        except Exception as e:  # a refusal is fine; a crash is what we look for
            print(f"__new__(cls, *args) refused: {type(e).__name__}: {e}", flush=True)
    calls = spec.get("calls")
    if calls is None:
        calls = {n: (GENERIC_ARGS if callable(getattr(cls, n, None)) else None)
                 for n in _public(cls)}
    for label, obj in instances:
        for name, argsets in calls.items():
            for args in (argsets or [None]):
                print(f"{label}.{name}{'' if args is None else args!r}", flush=True)
                try:
                    attr = getattr(obj, name)
                    if args is not None:
                        res = attr(*[_arg(a) for a in args])
                        if asyncio.iscoroutine(res):
                            asyncio.run(res)
                except Exception as e:
                    print(f"  -> {type(e).__name__}: {e}", flush=True)
        for op in spec.get("ops", []):
            print(f"{label} op {op}", flush=True)
            try:
                _op(obj, op)
            except Exception as e:
                print(f"  -> {type(e).__name__}: {e}", flush=True)
    print("DONE", flush=True)


@pytest.mark.parametrize("qualname", _classes())
def test_made_with_new_then_used_never_crashes(qualname):
    code = f"import tests.core.test_compiled_new as t; t._exercise({qualname!r})"
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                       timeout=300)
    tail = "\n".join(r.stdout.splitlines()[-5:])
    assert r.returncode >= 0, f"killed by signal {-r.returncode} after:\n{tail}\n{r.stderr[-2000:]}"
    assert r.returncode == 0 and r.stdout.endswith("DONE\n"), f"{tail}\n{r.stderr[-2000:]}"


def test_specs_cover_every_public_name():
    """A new public method of one of our classes must be added to SPECS (with plausible
    arguments), so the test above keeps calling everything."""
    for qualname in _classes():
        module = qualname.split(".")[2] if qualname.startswith("tallyio._core.") else None
        if qualname not in EXTRA and module not in OWN:
            continue  # another owner's module: generic arguments
        assert qualname in SPECS, f"{qualname} has no entry in SPECS"
        missing = set(_public(_resolve(qualname))) - set(SPECS[qualname]["calls"])
        assert not missing, f"{qualname}: SPECS lacks {sorted(missing)}"


def test_not_initialised_objects_say_so():
    """The errors are the clear ones, not an AttributeError from deep inside."""
    from tallyio import CircuitBreaker
    from tallyio._core.batch import BatchDrain
    from tallyio._core.ring import _RingBase
    from tallyio._core.simd import WatchList
    from tallyio.errors import TallyIOError
    for cls in (WatchList, BatchDrain):
        with pytest.raises(TypeError):
            cls.__new__(cls)
    with pytest.raises(TallyIOError, match="CircuitBreaker is not initialised"):
        CircuitBreaker.__new__(CircuitBreaker).call(len, "x")
    with pytest.raises(TypeError, match="_RingBase has no ring"):
        len(_RingBase.__new__(_RingBase))
