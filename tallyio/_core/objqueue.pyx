# cython: language_level=3, boundscheck=False, wraparound=False, binding=False
"""Object queue: the compiled queue and batch cut-off under tallyio.BatchProcessor.

Each entry is (object, tag, enqueue stamp): the tag is whatever the caller completes later (a
future). Refusals are return codes, never exceptions, and each is counted; the Python layer turns
them into errors. The batch wait (``drain``) and a blocked ``put`` run without the GIL.
"""
from cpython.ref cimport PyObject, Py_INCREF, Py_DECREF
from libc.stdint cimport int64_t, uint64_t, UINT64_MAX
from libc.stdlib cimport free, malloc

from tallyio._core.batch cimport tio_split_expired
from tallyio._core.clock cimport tio_now_ns
from tallyio._core.hist cimport LatencyHistogram, tio_hist_record
from tallyio._core.ring cimport (TIO_RING_MPMC, tio_ring_free, tio_ring_new, tio_ring_parks,
                                 tio_ring_pop, tio_ring_push, tio_ring_push_many, tio_ring_size,
                                 tio_ring_wakes)

PUT_OK = 0
PUT_CLOSED = 1
PUT_FULL = 2
PUT_TIMEOUT = 3

BLOCK = 0
RAISE = 1
DROP_OLDEST = 2
_MODES = {"block": BLOCK, "raise": RAISE, "drop_oldest": DROP_OLDEST}

# A producer gives the GIL up to the consumer for at most this long (a few switch intervals): the
# hand-off is an optimisation, never a dependency.
cdef uint64_t HANDOFF_MAX_NS = 20_000_000

_HOW = {TIO_OBJQ_FULL: "full", TIO_OBJQ_TIMEOUT: "timeout", TIO_OBJQ_FLUSH: "flush"}


cdef uint64_t _ns(str name, object value, bint allow_none) except? 0:
    if value is None:
        if allow_none:
            return UINT64_MAX
        raise TypeError(f"{name} must be an int of nanoseconds, got None")
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int of nanoseconds, got {value!r}")
    if value < 0 or value >= <object>UINT64_MAX:
        raise ValueError(f"{name} must be in [0, 2**64 - 1) nanoseconds, got {value}")
    return <uint64_t>value


cdef inline object _steal(void *p):
    """The object whose reference the ring held, as a Python reference (the ring's is dropped)."""
    obj = <object>p
    Py_DECREF(obj)
    return obj


cdef class ObjectQueue:
    """ObjectQueue(capacity, *, on_full="block", timeout_ns=None, spin_ns=50_000, sleep_ns=0,
    on_drop=None, handoff=True, backoff_ns=1_000_000, park=True)

    A bounded lock-free MPMC queue of ``(obj, tag, stamp)`` entries with a close gate.

    ``put`` returns PUT_OK, PUT_CLOSED (after ``close()``), PUT_FULL (``on_full="raise"``) or
    PUT_TIMEOUT (``on_full="block"`` and ``timeout_ns`` passed; ``timeout_ns=0`` never waits).
    With ``on_full="drop_oldest"`` a full queue gives up its oldest entries to make room: each is
    handed to ``on_drop(obj, tag)`` before ``put`` returns. Waits spin ``spin_ns`` then
    ``sched_yield`` (``sleep_ns=0``) or sleep ``sleep_ns`` between polls, without the GIL. The
    consumer's wait in ``drain`` goes on to park (``park=True``) after ``backoff_ns`` of that: it
    blocks on the queue's wake-up word until a put or ``close()`` wakes it, so an idle consumer
    costs almost no CPU (see tallyio/wait.h).

    With ``handoff``, a put that finds the consumer waiting for the GIL with a batch in hand
    gives it the GIL (see objqueue.h) instead of making it wait for the switch interval.

    ``drain`` is for one consumer thread at a time. After ``close()`` every put that was accepted
    is drained before ``drain`` returns None.
    """

    def __cinit__(self, capacity, *, on_full="block", timeout_ns=None, spin_ns=50_000,
                  sleep_ns=0, on_drop=None, handoff=True, backoff_ns=1_000_000, park=True):
        if isinstance(capacity, bool) or not isinstance(capacity, int):
            raise TypeError(f"capacity must be an int, got {capacity!r}")
        if capacity < 2 or capacity & (capacity - 1):
            raise ValueError(f"capacity must be a power of two >= 2, got {capacity}")
        if capacity > (1 << 32):
            raise ValueError(f"capacity must be at most 2**32, got {capacity}")
        try:
            self.mode = _MODES[on_full]
        except (KeyError, TypeError):
            raise ValueError(f"on_full must be one of 'block', 'raise', 'drop_oldest', "
                             f"got {on_full!r}") from None
        if self.mode == DROP_OLDEST and not callable(on_drop):
            raise TypeError(f"on_drop must be callable with on_full='drop_oldest', got {on_drop!r}")
        self.timeout_ns = _ns("timeout_ns", timeout_ns, True)
        self.policy.spin_ns = _ns("spin_ns", spin_ns, False)
        self.policy.sleep_ns = _ns("sleep_ns", sleep_ns, False)
        self.policy.backoff_ns = _ns("backoff_ns", backoff_ns, False)
        if not isinstance(park, bool):
            raise TypeError(f"park must be True or False, got {park!r}")
        self.policy.park = park
        self.on_drop = on_drop
        self.handoff = bool(handoff)
        self.g = tio_objq_gate_new()
        if self.g == NULL:
            raise MemoryError("cannot allocate an ObjectQueue gate")
        self.r = tio_ring_new(<uint64_t>capacity, sizeof(tio_objq_entry), TIO_RING_MPMC)
        if self.r == NULL:
            raise MemoryError(f"cannot allocate an ObjectQueue of {capacity} entries")

    def __dealloc__(self):
        cdef tio_objq_entry e
        if self.r != NULL:
            while tio_ring_pop(self.r, &e):
                Py_DECREF(<object>e.obj)
                Py_DECREF(<object>e.tag)
            tio_ring_free(self.r)
        tio_objq_gate_free(self.g)

    cdef uint64_t _deadline(self) noexcept:
        if self.timeout_ns == UINT64_MAX:
            return UINT64_MAX
        return tio_now_ns() + self.timeout_ns

    cdef int _push_dropping(self, tio_objq_entry *e, list dropped) except -1:
        """Push, evicting the oldest entries while the ring is full (the GIL is held)."""
        cdef tio_objq_entry old
        while not tio_ring_push(self.r, e):
            # Empty here means the consumer emptied the ring since our push: just retry.
            if tio_ring_pop(self.r, &old):
                dropped.append((_steal(old.obj), _steal(old.tag)))
                self.n_dropped += 1
        return 0

    cdef void _maybe_yield_gil(self) noexcept:
        if self.handoff and tio_objq_gil_wanted(self.g):
            with nogil:
                tio_objq_yield_gil(self.g, &self.policy, HANDOFF_MAX_NS)

    cdef _hand_dropped(self, list dropped):
        for obj, tag in dropped:
            self.on_drop(obj, tag)

    def put(self, obj, tag, int64_t stamp=-1):
        """Enqueue ``(obj, tag)`` stamped ``stamp`` (default: now_ns()); return a PUT_* code."""
        cdef tio_objq_entry e
        cdef int ok = 0
        cdef uint64_t deadline
        cdef list dropped = None
        if not tio_objq_enter(self.g):
            self.n_closed += 1
            return PUT_CLOSED
        try:
            e.obj = <void *>obj
            e.tag = <void *>tag
            e.stamp = stamp if stamp >= 0 else <int64_t>tio_now_ns()
            Py_INCREF(obj)
            Py_INCREF(tag)
            if tio_ring_push(self.r, &e):
                ok = 1
            elif self.mode == BLOCK and self.timeout_ns:
                deadline = self._deadline()
                with nogil:
                    ok = tio_objq_push_wait(self.r, &e, deadline, &self.policy)
            elif self.mode == DROP_OLDEST:
                dropped = []
                self._push_dropping(&e, dropped)
                ok = 1
            if ok:
                self.n_accepted += 1
            else:
                Py_DECREF(obj)
                Py_DECREF(tag)
            if dropped:
                # inside the gate, so close() cannot return before the evicted tags are failed
                self._hand_dropped(dropped)
        finally:
            tio_objq_leave(self.g)
        self._maybe_yield_gil()
        if ok:
            return PUT_OK
        if self.mode == RAISE:
            self.n_full += 1
            return PUT_FULL
        self.n_timeout += 1
        return PUT_TIMEOUT

    def try_put(self, obj, tag, int64_t stamp=-1):
        """Enqueue without waiting or evicting, whatever ``on_full`` says: PUT_OK, PUT_CLOSED
        (counted) or PUT_FULL (not counted: the caller decides whether it is a refusal or a try
        it will repeat, and reports a final refusal with ``count_refused``)."""
        cdef tio_objq_entry e
        cdef int ok
        if not tio_objq_enter(self.g):
            self.n_closed += 1
            return PUT_CLOSED
        e.obj = <void *>obj
        e.tag = <void *>tag
        e.stamp = stamp if stamp >= 0 else <int64_t>tio_now_ns()
        Py_INCREF(obj)
        Py_INCREF(tag)
        ok = tio_ring_push(self.r, &e)
        tio_objq_leave(self.g)
        self._maybe_yield_gil()
        if ok:
            self.n_accepted += 1
            return PUT_OK
        Py_DECREF(obj)
        Py_DECREF(tag)
        return PUT_FULL

    def count_refused(self, int code, uint64_t n=1):
        """Count ``n`` refusals decided by the caller (PUT_FULL or PUT_TIMEOUT) after ``try_put``."""
        if code == PUT_FULL:
            self.n_full += n
        elif code == PUT_TIMEOUT:
            self.n_timeout += n
        else:
            raise ValueError(f"code must be PUT_FULL or PUT_TIMEOUT, got {code}")

    def put_many(self, list objs not None, list tags not None, int64_t stamp=-1):
        """Enqueue ``zip(objs, tags)`` in order; return how many were accepted (a prefix), or
        -1 when closed (nothing accepted). The rest were refused (full or timed out), counted."""
        cdef Py_ssize_t n = len(objs), i
        cdef uint64_t k = 0, deadline
        cdef tio_objq_entry *buf
        cdef list dropped = None
        if len(tags) != n:
            raise ValueError(f"tags must have the same length as objs ({n}), got {len(tags)}")
        if not tio_objq_enter(self.g):
            self.n_closed += n
            return -1
        try:
            if n == 0:
                return 0
            buf = <tio_objq_entry *>malloc(n * sizeof(tio_objq_entry))
            if buf == NULL:
                raise MemoryError(f"cannot allocate {n} queue entries")
            if stamp < 0:
                stamp = <int64_t>tio_now_ns()
            for i in range(n):
                o = objs[i]
                t = tags[i]
                Py_INCREF(o)
                Py_INCREF(t)
                buf[i].obj = <void *>o
                buf[i].tag = <void *>t
                buf[i].stamp = stamp
            k = tio_ring_push_many(self.r, buf, n)
            if k < <uint64_t>n and self.mode == BLOCK and self.timeout_ns:
                deadline = self._deadline()
                with nogil:
                    k += tio_objq_push_many_wait(self.r, buf + k, n - k, deadline, &self.policy)
            elif k < <uint64_t>n and self.mode == DROP_OLDEST:
                dropped = []
                while k < <uint64_t>n:
                    self._push_dropping(&buf[k], dropped)
                    k += 1
            for i in range(k, n):
                Py_DECREF(<object>buf[i].obj)
                Py_DECREF(<object>buf[i].tag)
            free(buf)
            self.n_accepted += k
            if self.mode == RAISE:
                self.n_full += n - k
            else:
                self.n_timeout += n - k
            if dropped:
                self._hand_dropped(dropped)
        finally:
            tio_objq_leave(self.g)
        self._maybe_yield_gil()
        return k

    def drain(self, Py_ssize_t max_n, batch_timeout_ns, max_age_ns=None):
        """Wait (without the GIL) for a batch of up to ``max_n`` entries; return a Batch, or None
        once the queue is closed, nobody is putting and it is empty.

        The batch is cut when full, when its first entry is ``batch_timeout_ns`` old, or (after
        close) as soon as the queue is empty. Entries older than ``max_age_ns`` (None: no limit)
        go to the batch's ``expired_*`` lists instead.
        """
        cdef uint64_t timeout = _ns("batch_timeout_ns", batch_timeout_ns, False)
        cdef uint64_t max_age = _ns("max_age_ns", max_age_ns, True)
        cdef uint64_t got, keep, n_old = 0, now
        cdef tio_objq_entry *old
        cdef int how
        cdef Py_ssize_t i
        cdef Batch b
        if not 1 <= max_n <= <Py_ssize_t>self.r.capacity:
            raise ValueError(f"max_n must be in [1, capacity {self.r.capacity}], got {max_n}")
        b = Batch.__new__(Batch)
        b.buf = <tio_objq_entry *>malloc(max_n * sizeof(tio_objq_entry))
        if b.buf == NULL:
            raise MemoryError(f"cannot allocate a batch of {max_n} entries")
        with nogil:
            if self.handoff:
                tio_objq_released_gil(self.g)
            got = tio_objq_drain(self.r, self.g, b.buf, max_n, timeout, &self.policy, &how)
            if self.handoff and how != TIO_OBJQ_STOPPED:
                tio_objq_want_gil(self.g)
        if how == TIO_OBJQ_STOPPED:
            return None
        if self.handoff:
            tio_objq_got_gil(self.g)
        self.n_batches += 1
        if how == TIO_OBJQ_FULL:
            self.n_full_batches += 1
        elif how == TIO_OBJQ_TIMEOUT:
            self.n_timeout_batches += 1
        else:
            self.n_flush_batches += 1
        b.how = how
        keep = got
        b.expired_items = []
        b.expired_tags = []
        b.expired_ages = []
        if max_age != UINT64_MAX:
            old = <tio_objq_entry *>malloc(got * sizeof(tio_objq_entry))
            if old == NULL:
                # the references are still in b.buf: give them to the lists before raising
                b._adopt(got)
                raise MemoryError(f"cannot allocate {got} queue entries")
            now = tio_now_ns()
            keep = tio_split_expired(<char *>b.buf, got, sizeof(tio_objq_entry),
                                     TIO_OBJQ_STAMP_OFFSET, now, max_age, <char *>old, &n_old)
            for i in range(<Py_ssize_t>n_old):
                b.expired_items.append(_steal(old[i].obj))
                b.expired_tags.append(_steal(old[i].tag))
                b.expired_ages.append(<int64_t>(now - <uint64_t>old[i].stamp))
            free(old)
            self.n_expired += n_old
        b._adopt(keep)
        return b

    def _set_park_slice(self, uint64_t ns):
        """Test hook: the longest single park in ns (default 50 ms, a safety net; see
        BatchDrain._set_park_slice)."""
        if ns == 0:
            raise ValueError("ns must be > 0")
        self.policy.park_slice_ns = ns

    def close(self):
        """Refuse further puts; puts already past the gate still complete and are drained. A
        consumer parked in ``drain`` is woken."""
        tio_objq_close_wake(self.r, self.g)

    @property
    def closed(self):
        return tio_objq_is_closed(self.g) != 0

    @property
    def capacity(self):
        return self.r.capacity

    def __len__(self):
        return tio_ring_size(self.r)

    def stats(self):
        """Counters since creation (a snapshot): accepted, refused by reason, batches, expired."""
        return {
            "accepted": self.n_accepted,
            "refused_closed": self.n_closed,
            "refused_full": self.n_full,
            "refused_timeout": self.n_timeout,
            "dropped_oldest": self.n_dropped,
            "batches": self.n_batches,
            "full_batches": self.n_full_batches,
            "timeout_batches": self.n_timeout_batches,
            "flush_batches": self.n_flush_batches,
            "expired": self.n_expired,
            "size": tio_ring_size(self.r),
            "capacity": self.r.capacity,
            "closed": tio_objq_is_closed(self.g) != 0,
            "parks": tio_ring_parks(self.r),
            "wakes": tio_ring_wakes(self.r),
        }

    def __repr__(self):
        return (f"ObjectQueue(capacity={self.r.capacity}, size={tio_ring_size(self.r)}, "
                f"closed={tio_objq_is_closed(self.g) != 0})")


cdef class Batch:
    """One drained batch: ``items`` and their ``tags`` (in enqueue order), the expired ones with
    their ages in ns, and ``how`` it was cut ("full", "timeout" or "flush"). Made by
    ``ObjectQueue.drain`` only."""

    def __cinit__(self):
        # Empty, not None: a Batch made with __new__ is a valid empty batch, never a crash.
        self.items = []
        self.tags = []
        self.expired_items = []
        self.expired_tags = []
        self.expired_ages = []

    def __init__(self, *args, **kwargs):
        raise TypeError("Batch is internal; ObjectQueue.drain makes them")

    def __dealloc__(self):
        free(self.buf)

    cdef _adopt(self, uint64_t n):
        cdef Py_ssize_t i
        self.n = n
        self.items = [None] * self.n
        self.tags = [None] * self.n
        for i in range(self.n):
            self.items[i] = _steal(self.buf[i].obj)
            self.tags[i] = _steal(self.buf[i].tag)

    @property
    def cut(self):
        return _HOW[self.how]

    def __len__(self):
        return self.n

    def claim_futures(self):
        """Mark each tag (a concurrent.futures.Future) running; drop the entries whose future was
        cancelled while queued. Return the number dropped."""
        cdef Py_ssize_t i, j = 0
        for i in range(self.n):
            if self.tags[i].set_running_or_notify_cancel():
                self.items[j] = self.items[i]
                self.tags[j] = self.tags[i]
                self.buf[j].stamp = self.buf[i].stamp
                j += 1
        if j < self.n:
            del self.items[j:]
            del self.tags[j:]
        dropped = self.n - j
        self.n = j
        return dropped

    def set_results(self, results):
        """``tags[i].set_result(results[i])`` for each item (the caller checked the length)."""
        cdef Py_ssize_t i
        cdef list tags = self.tags
        for i in range(self.n):
            tags[i].set_result(results[i])

    def set_exception(self, exc):
        """Fail every tag of the batch with ``exc``."""
        for tag in self.tags:
            tag.set_exception(exc)

    def record_latency(self, LatencyHistogram hist not None):
        """Record each item's age (now minus its enqueue stamp, ns) in ``hist``, without the GIL."""
        cdef Py_ssize_t i
        cdef uint64_t now = tio_now_ns()
        cdef int64_t age
        with nogil:
            for i in range(self.n):
                age = <int64_t>(now - <uint64_t>self.buf[i].stamp)
                tio_hist_record(hist.h, <uint64_t>age if age > 0 else 0)
