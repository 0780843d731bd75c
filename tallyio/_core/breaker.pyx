# cython: language_level=3, boundscheck=False, wraparound=False, binding=False
"""The circuit breaker's compiled core: a lock-free state machine (tallyio/breaker.h) and the
per-call paths (``call``, ``with``) that cost one C call to acquire and one to record.

Configuration is validated by ``tallyio.resilience.breaker.CircuitBreaker``, which subclasses
``BreakerCore``; this module trusts what it is given.
"""
from contextvars import ContextVar
from types import MethodType

from libc.stdint cimport int64_t, uint8_t, uint64_t
from libc.math cimport INFINITY

from tallyio._core.clock cimport tio_now_ns
from tallyio._core.hist cimport LatencyHistogram

from tallyio.errors import CircuitOpenError, TallyIOError

#: State names by their code in the state word.
STATES = ("closed", "open", "half_open", "forced_open", "disabled")
STATE_CODES = {name: code for code, name in enumerate(STATES)}
#: Transitions kept for listeners between two dispatches; older ones are counted as lost.
LOG_SIZE = TIO_BRK_LOG
#: Buckets a time-based window is split into.
TIME_BUCKETS = TIO_BRK_BUCKETS
#: Largest half_open_max_calls / success_threshold (they share the state word with the state).
FIELD_MAX = TIO_BRK_FIELD_MAX

PERMIT = TIO_BRK_PERMIT
TRANSITION = TIO_BRK_TRANSITION
UPDATE_DUE = TIO_BRK_UPDATE_DUE

# Start stamps of open `with` blocks: per thread and per asyncio task, as a linked stack of
# (breaker, t0, rest) so nested and interleaved blocks each find their own.
_starts = ContextVar("tallyio_breaker_starts", default=None)

cdef uint64_t OFF = <uint64_t>-1


cdef uint64_t _u64_or_off(object v) except? 0:
    return OFF if v is None else <uint64_t>v


cdef class BreakerCore:
    """Internal base of ``tallyio.CircuitBreaker``; not constructible on its own."""

    def __cinit__(self, *args, **kwargs):
        self.b = tio_brk_new()
        if self.b == NULL:
            raise MemoryError("cannot allocate a circuit breaker")
        # A one-call count window until _configure sets the real one: the C state machine divides
        # by the window size on every record, so even a breaker made with __new__ and never
        # configured must not have an empty window (that was a SIGFPE). The Python entry points
        # refuse such a breaker anyway (_ready); this keeps compiled callers memory-safe.
        if tio_brk_set_window(self.b, TIO_BRK_WINDOW_COUNT, 1, 0):
            raise MemoryError("cannot allocate a circuit breaker window")
        self.h0 = LatencyHistogram()
        self.h1 = LatencyHistogram()
        self.b.hist[0] = self.h0.h
        self.b.hist[1] = self.h1.h
        self._exclude = ()
        self.name = "default"

    def __dealloc__(self):
        tio_brk_free(self.b)

    def __init__(self, *args, **kwargs):
        raise TypeError("BreakerCore is internal; use tallyio.CircuitBreaker")

    def _configure(self, str name, *, uint64_t threshold_ns, failure_threshold,
                   uint64_t success_threshold, uint64_t timeout_ns, violation_threshold,
                   uint64_t half_open_max, str window_type, uint64_t window_size,
                   uint64_t bucket_ns, uint64_t minimum_calls, failure_rate, slow_rate,
                   update_every, uint64_t update_interval_ns, tuple exclude, clock):
        """Set the (already validated) configuration; once, before the breaker is used."""
        if self.configured:
            raise RuntimeError("a circuit breaker is configured once")
        # The window sizes are divisors in the C state machine: the one check it cannot live
        # without, even from a caller that validated everything else.
        if window_type == "count" and window_size < 1 or window_type != "count" and bucket_ns < 1:
            raise ValueError(f"window_size/bucket_ns must be >= 1, got {window_size}/{bucket_ns}")
        self.name = name
        self.b.timeout_ns = timeout_ns
        self.b.failure_threshold = _u64_or_off(failure_threshold)
        self.b.violation_threshold = _u64_or_off(violation_threshold)
        self.b.success_threshold = success_threshold
        self.b.half_open_max = half_open_max
        self.b.minimum_calls = minimum_calls
        self.b.failure_rate = INFINITY if failure_rate is None else <double>failure_rate
        self.b.slow_rate = INFINITY if slow_rate is None else <double>slow_rate
        self.b.update_every = _u64_or_off(update_every)
        self.b.update_interval_ns = update_interval_ns
        tio_brk_set_threshold(self.b, threshold_ns)
        kind = TIO_BRK_WINDOW_COUNT if window_type == "count" else TIO_BRK_WINDOW_TIME
        if tio_brk_set_window(self.b, kind, window_size, bucket_ns):
            raise MemoryError(f"cannot allocate a window of {window_size} calls")
        self._exclude = exclude
        self._clock = clock
        self._forced_msg = f"circuit {name!r} is forced open; retry after reset()"
        self.configured = True
        self._rotate(self._now())  # starts the first latency window (and its time cut-off)

    cdef int _ready(self) except -1:
        if not self.configured:
            raise TallyIOError(f"{type(self).__name__} is not initialised (made with __new__, or "
                               f"its __init__ failed); create it with "
                               f"{type(self).__name__}(...)")
        return 0

    @property
    def _initialised(self):
        return self.configured

    def _require_initialised(self):
        """Raise TallyIOError unless the breaker was configured (for the Python-level methods)."""
        self._ready()

    # ---- C-level entry points (see breaker.pxd) --------------------------------------------

    cdef int acquire(self, uint64_t now) noexcept nogil:
        return tio_brk_acquire(self.b, now)

    cdef int record(self, uint64_t now, uint64_t latency_ns, bint ok) noexcept nogil:
        return tio_brk_record(self.b, now, latency_ns, ok)

    # ---- the Python call paths -------------------------------------------------------------

    cdef uint64_t _now(self) except? 0:
        if self._clock is None:
            return tio_now_ns()
        return self._clock()

    cdef bint _is_failure(self, object exc):
        # Only Exception subclasses can be failures: a KeyboardInterrupt or a task cancellation
        # says nothing about the callee's health.
        return isinstance(exc, Exception) and not isinstance(exc, self._exclude)

    cdef uint64_t _begin(self) except? 0:
        """Acquire a permit for a call starting now; its start stamp, or CircuitOpenError."""
        cdef uint64_t t0
        cdef int r
        if not self.configured:
            self._ready()
        t0 = self._now()
        r = tio_brk_acquire(self.b, t0)
        if r != TIO_BRK_PERMIT:
            if not r & TIO_BRK_PERMIT:
                raise self._open_error(t0)
            self._on_transition()
        return t0

    cdef int _finish(self, uint64_t t0, bint failed) except -1:
        cdef uint64_t t1
        if not self.configured:
            self._ready()
        t1 = self._now()
        cdef int r = tio_brk_record(self.b, t1, t1 - t0 if t1 > t0 else 0, not failed)
        if r:
            if r & TIO_BRK_TRANSITION:
                self._on_transition()
            if r & TIO_BRK_UPDATE_DUE:
                self._on_update_due()
        return 0

    def call(self, fn, *args, **kwargs):
        """Call ``fn(*args, **kwargs)`` through the breaker and return its result.

        Raises CircuitOpenError (without calling ``fn``) when the breaker refuses the call;
        re-raises whatever ``fn`` raises, after counting it (a failure unless excluded).
        """
        return self._guard(fn, args, kwargs)

    cdef object _guard(self, fn, tuple args, dict kwargs):
        cdef uint64_t t0 = self._begin()
        try:
            result = fn(*args, **kwargs)
        except BaseException as e:
            self._finish(t0, self._is_failure(e))
            raise
        self._finish(t0, False)
        return result

    def _wrap(self, fn):
        """``fn`` guarded by this breaker, as a compiled callable (see ``Guarded``)."""
        return Guarded(self, fn)

    def __enter__(self):
        cdef uint64_t t0 = self._begin()
        _starts.set((self, t0, _starts.get()))
        return self

    def __exit__(self, exc_type, exc, tb):
        cdef uint64_t t0
        node = _starts.get()
        if node is not None and node[0] is self:
            _starts.set(node[2])
            t0 = node[1]
        else:
            t0 = self._pop_start_slow(node)
        self._finish(t0, exc_type is not None and self._is_failure(exc))
        return False

    def _pop_start_slow(self, node):
        # Blocks of different breakers closed out of order (a generator suspended inside one):
        # find this breaker's innermost start and unlink it.
        above = []
        while node is not None and node[0] is not self:
            above.append(node)
            node = node[2]
        if node is None:
            raise RuntimeError(f"circuit breaker {self.name!r}: __exit__ without __enter__ "
                               f"in this thread or task")
        rest = node[2]
        for n in reversed(above):
            rest = (n[0], n[1], rest)
        _starts.set(rest)
        return node[1]

    def _enter(self):
        """Acquire for a call that the caller times itself; returns its start stamp (ns)."""
        cdef uint64_t t0 = self._begin()
        return t0

    def _exit(self, uint64_t t0, exc=None):
        """Record the call started at ``t0`` by ``_enter``; ``exc`` is what it raised, if any."""
        self._finish(t0, exc is not None and self._is_failure(exc))

    def try_acquire(self, now=None):
        """Ask for a permit without calling anything: True (then report the call with
        ``record_result``) or False (a counted rejection). ``now`` defaults to the clock."""
        self._ready()
        cdef uint64_t t = self._now() if now is None else <uint64_t>now
        cdef int r = tio_brk_acquire(self.b, t)
        if r & TIO_BRK_TRANSITION:
            self._on_transition()
        return bool(r & TIO_BRK_PERMIT)

    def record_result(self, latency_ns, ok, now=None):
        """Report a call permitted by ``try_acquire``: its latency in ns and whether it succeeded."""
        self._ready()
        if isinstance(latency_ns, bool) or not isinstance(latency_ns, int) or latency_ns < 0:
            raise ValueError(f"latency_ns must be an int >= 0, got {latency_ns!r}")
        cdef uint64_t t = self._now() if now is None else <uint64_t>now
        cdef int r = tio_brk_record(self.b, t, <uint64_t>latency_ns, bool(ok))
        if r & TIO_BRK_TRANSITION:
            self._on_transition()
        if r & TIO_BRK_UPDATE_DUE:
            self._on_update_due()

    def _on_transition(self):
        """Hook: this thread made a transition (the subclass dispatches listeners)."""

    def _on_update_due(self):
        """Hook: a latency window is complete (the subclass runs the threshold policy)."""

    cdef object _open_error(self, uint64_t now):
        cdef uint64_t w = tio_brk_word(self.b)
        cdef uint64_t st = tio_brk_state_of(w), until
        if st == TIO_BRK_FORCED_OPEN:
            return CircuitOpenError(self.name, INFINITY, self._forced_msg)
        if st == TIO_BRK_HALF_OPEN:
            return CircuitOpenError(
                self.name, 0.0, f"circuit {self.name!r} is half-open and all "
                f"{self.b.half_open_max} of its trial calls are in flight")
        until = tio_brk_open_until(self.b)
        return CircuitOpenError(self.name, (until - now) / 1e9 if until > now else 0.0)

    # ---- state and counters ----------------------------------------------------------------

    @property
    def state(self):
        """``"closed"``, ``"open"``, ``"half_open"``, ``"forced_open"`` or ``"disabled"``.

        An open breaker whose timeout has passed still reads ``"open"`` until the next call
        moves it to half-open."""
        self._ready()
        return STATES[tio_brk_state_of(tio_brk_word(self.b))]

    @property
    def threshold_ns(self):
        """The current latency threshold in ns: a call slower than this is a violation."""
        self._ready()
        return tio_brk_threshold(self.b)

    def _set_threshold_ns(self, uint64_t ns):
        self._ready()
        tio_brk_set_threshold(self.b, ns)

    def _retry_after(self, uint64_t now):
        self._ready()
        cdef uint64_t w = tio_brk_word(self.b), until
        if tio_brk_state_of(w) == TIO_BRK_FORCED_OPEN:
            return float("inf")
        if tio_brk_state_of(w) != TIO_BRK_OPEN:
            return 0.0
        until = tio_brk_open_until(self.b)
        return (until - now) / 1e9 if until > now else 0.0

    def _counts(self, uint64_t now):
        """Raw counters; rolls a time window forward to ``now`` first."""
        cdef tio_brk_counts c
        cdef uint64_t w
        self._ready()
        tio_brk_advance(self.b, now)
        tio_brk_counts_of(self.b, &c)
        w = tio_brk_word(self.b)
        return {
            "state": STATES[tio_brk_state_of(w)],
            "permitted": c.permitted, "rejected": c.rejected, "successes": c.successes,
            "failures": c.failures, "slow": c.slow, "consecutive_failures": c.consec,
            "window_calls": tio_brk_window_calls(self.b),
            "window_failures": tio_brk_window_failures(self.b),
            "window_slow": tio_brk_window_slow(self.b),
            "trials_in_flight": tio_brk_trials_of(w),
            "transitions": tio_brk_seq_of(w),
        }

    def _force(self, state):
        """Operator transition to ``"closed"`` (reset), ``"forced_open"`` or ``"disabled"``;
        True when the state changed."""
        self._ready()
        return bool(tio_brk_force(self.b, STATE_CODES[state]) & TIO_BRK_TRANSITION)

    def _transition_count(self):
        """Transitions so far, modulo 2**37 (the cursor space of ``_events``)."""
        self._ready()
        return tio_brk_seq_of(tio_brk_word(self.b))

    def _events(self, uint64_t cursor):
        """``(events, cursor, lost)``: the ``(old, new)`` transitions after ``cursor``, the new
        cursor, and how many were overwritten in the log before they could be read."""
        self._ready()
        cdef uint64_t mask = TIO_BRK_SEQ_MASK
        cdef uint64_t head = tio_brk_seq_of(tio_brk_word(self.b))
        cdef uint64_t pending = (head - cursor) & mask
        cdef uint64_t k, ev, d, lost = 0
        if pending > TIO_BRK_LOG:
            lost = pending - TIO_BRK_LOG
            cursor = (head - TIO_BRK_LOG) & mask
        events = []
        while cursor != head:
            k = (cursor + 1) & mask
            ev = tio_brk_log_at(self.b, k)
            d = ((ev >> 6) - k) & mask
            if d == 0:
                events.append((STATES[ev & 7], STATES[(ev >> 3) & 7]))
            elif d < (mask >> 1):
                lost += 1  # overwritten by a transition TIO_BRK_LOG later
            else:
                break  # its writer is between its CAS and the log store: next dispatch gets it
            cursor = k
        return events, cursor, lost

    def _rotate(self, uint64_t now):
        """Start a new latency window; return the completed one (valid until the next rotate)."""
        self._ready()
        return self.h0 if tio_brk_rotate(self.b, now) == 0 else self.h1

    def _windows(self):
        """``(current, last_completed)`` latency windows of successful calls."""
        self._ready()
        if tio_brk_hist_idx(self.b) == 0:
            return self.h0, self.h1
        return self.h1, self.h0

    def _update_due(self):
        self._ready()
        return bool(tio_brk_update_due(self.b))

    def _clock_ns(self):
        """The breaker's clock (the injected one, or CLOCK_MONOTONIC) in ns."""
        return self._now()

    # ---- compiled loops, for the stress tests and the benchmarks ---------------------------

    def _stress(self, Py_ssize_t n, uint64_t period, uint64_t fail_burst, uint64_t slow_burst,
                uint64_t slow_ns, uint64_t fast_ns):
        """Run ``n`` acquire/record pairs without the GIL on the real clock. In each ``period``
        calls the first ``fail_burst`` fail and the next ``slow_burst`` succeed slowly. Returns
        this thread's own counts, to add up against ``stats()``."""
        self._ready()
        if period == 0:
            raise ValueError("period must be >= 1, got 0")
        cdef uint64_t permitted = 0, rejected = 0, ok = 0, failed = 0, transitions = 0, due = 0
        cdef uint64_t now, phase
        cdef Py_ssize_t i
        cdef int r
        cdef bint good
        with nogil:
            for i in range(n):
                now = tio_now_ns()
                r = self.acquire(now)
                if r & TIO_BRK_TRANSITION:
                    transitions += 1
                if not r & TIO_BRK_PERMIT:
                    rejected += 1
                    continue
                permitted += 1
                phase = <uint64_t>i % period
                good = phase >= fail_burst
                r = self.record(tio_now_ns(), slow_ns if good and phase < fail_burst + slow_burst
                                else fast_ns, good)
                if good:
                    ok += 1
                else:
                    failed += 1
                if r & TIO_BRK_TRANSITION:
                    transitions += 1
                if r & TIO_BRK_UPDATE_DUE:
                    due += 1
        return {"permitted": permitted, "rejected": rejected, "successes": ok, "failures": failed,
                "transitions": transitions, "updates_due": due}

    def _replay(self, const int64_t[::1] latencies, const uint8_t[::1] ok, uint64_t start_ns,
                uint64_t gap_ns):
        """Guard one call per latency without the GIL on a synthetic clock: each call starts
        ``gap_ns`` after the previous one ended. Returns ``(permitted, rejected, end_ns)``."""
        self._ready()
        if latencies.shape[0] != ok.shape[0]:
            raise ValueError(f"latencies and ok must have the same length, got "
                             f"{latencies.shape[0]} and {ok.shape[0]}")
        cdef uint64_t now = start_ns, permitted = 0, rejected = 0, lat
        cdef Py_ssize_t i
        with nogil:
            for i in range(latencies.shape[0]):
                if self.acquire(now) & TIO_BRK_PERMIT:
                    permitted += 1
                    lat = <uint64_t>latencies[i] if latencies[i] > 0 else 0
                    now += lat
                    self.record(now, lat, ok[i] != 0)
                else:
                    rejected += 1
                now += gap_ns
        return permitted, rejected, now


cdef class Guarded:
    """Guarded(breaker, fn): calls ``fn`` through ``breaker``, the product of ``@breaker``.

    A compiled callable rather than a Python closure, so a decorated call costs what
    ``breaker.call(fn)`` costs. Binds as a method when decorating one (``__get__``) and carries
    ``functools.wraps`` attributes in its ``__dict__``.
    """
    cdef readonly BreakerCore breaker
    cdef readonly object fn
    cdef dict __dict__

    # Set in __cinit__: a Guarded made with __new__ would otherwise call through a None breaker
    # (a cdef method call on None is a crash, not an AttributeError).
    def __cinit__(self, BreakerCore breaker not None, fn):
        if not callable(fn):
            raise TypeError(f"fn must be callable, got {fn!r}")
        self.breaker = breaker
        self.fn = fn

    def __init__(self, breaker, fn):
        pass

    def __call__(self, *args, **kwargs):
        return self.breaker._guard(self.fn, args, kwargs)

    def __get__(self, obj, objtype):
        if obj is None:
            return self
        return MethodType(self, obj)

    def __repr__(self):
        return f"<guarded {self.fn!r} by circuit breaker {self.breaker.name!r}>"
