# cython: language_level=3, boundscheck=False, wraparound=False, binding=False
"""Batch drain: micro-batches from a Ring with a size and a timeout cut-off, and an age limit."""
from libc.stdint cimport uint64_t
cimport numpy as cnp
import numpy as np

from tallyio._core.clock cimport tio_now_ns
from tallyio._core.ring cimport tio_ring_claim_consumer

cnp.import_array()


cdef uint64_t seconds_to_ns(str name, object value, bint allow_zero) except? 0:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number of seconds, got {value!r}")
    if value != value or value < 0 or (value == 0 and not allow_zero) or value > 1e9:
        raise ValueError(f"{name} must be {'>= 0' if allow_zero else '> 0'} seconds "
                         f"(and finite), got {value}")
    return <uint64_t>(value * 1e9)


cdef class BatchDrain:
    """BatchDrain(ring, batch_size, batch_timeout, *, max_age=None, time_field="arrival_ns",
    idle_timeout=None, spin=50e-6, sleep=0.0, backoff=1e-3, park=True)

    Takes micro-batches from ``ring``: ``drain()`` returns as soon as ``batch_size`` rows are in
    hand, or ``batch_timeout`` seconds after the first row of the batch arrived, or empty after
    ``idle_timeout`` seconds (default: ``batch_timeout``) without any row.

    The wait runs without the GIL and degrades gracefully. After the last row it busy-spins for
    ``spin`` seconds (a hand-off in well under a microsecond), then backs off for ``backoff``
    seconds more, calling ``sched_yield`` (``sleep=0``) or sleeping ``sleep`` seconds between
    polls, then (``park=True``) parks: it blocks on the ring's wake-up word (a futex) until a
    producer pushes, or until its timeout. A parked drain costs almost no CPU, and a push wakes it
    at once, at the price of a wake-up (tens of microseconds on a VM), which the spin and back-off
    phases spare a busy one. ``park=False`` backs off for ever instead (a core stays busy). The
    budgets carry over idle returns: a drain called again after an idle return, with still no
    rows, parks without spinning again.

    With ``max_age`` (seconds), rows whose ``time_field`` (an int64 ``now_ns()`` stamp; for an
    int64 ring the row itself when ``time_field`` is None) is older than ``max_age`` when drained
    are not part of the batch: they are returned separately and counted as expired.

    The drain is the ring's consumer: on an SPSC ring, draining from a second thread raises
    TallyIOError (see ``Ring.release_consumer``).
    """

    # Everything is set here, not in __init__: a BatchDrain made with __new__ used to drain a
    # NULL ring (a crash); now __new__ without arguments is a TypeError, like a bad call.
    def __cinit__(self, Ring ring not None, batch_size, batch_timeout, *, max_age=None,
                  time_field="arrival_ns", idle_timeout=None, spin=50e-6, sleep=0.0,
                  backoff=1e-3, park=True):
        if isinstance(batch_size, bool) or not isinstance(batch_size, int):
            raise TypeError(f"batch_size must be an int, got {batch_size!r}")
        if not 1 <= batch_size <= ring.capacity:
            raise ValueError(f"batch_size must be in [1, ring capacity {ring.capacity}], "
                             f"got {batch_size}")
        if not isinstance(park, bool):
            raise TypeError(f"park must be True or False, got {park!r}")
        self.policy.batch_timeout_ns = seconds_to_ns("batch_timeout", batch_timeout, True)
        self.policy.idle_timeout_ns = (self.policy.batch_timeout_ns if idle_timeout is None else
                                       seconds_to_ns("idle_timeout", idle_timeout, True))
        self.policy.spin_ns = seconds_to_ns("spin", spin, True)
        self.policy.sleep_ns = seconds_to_ns("sleep", sleep, True)
        self.policy.backoff_ns = seconds_to_ns("backoff", backoff, True)
        self.policy.park = park
        self.time_offset = -1
        if max_age is not None:
            self.max_age_ns = seconds_to_ns("max_age", max_age, True)
            self.time_offset = self._time_offset(ring.dtype, time_field)
        self.ring = ring
        self.r = ring.r
        self.batch_size = batch_size

    def __init__(self, ring, batch_size, batch_timeout, *, max_age=None,
                 time_field="arrival_ns", idle_timeout=None, spin=50e-6, sleep=0.0,
                 backoff=1e-3, park=True):
        pass

    @staticmethod
    def _time_offset(dtype, time_field):
        if dtype.names is None:
            if time_field is None and dtype == np.dtype(np.int64):
                return 0
            raise ValueError(f"max_age needs a structured dtype with an int64 time field "
                             f"(or an int64 ring and time_field=None), got dtype {dtype} "
                             f"and time_field={time_field!r}")
        if time_field not in dtype.names:
            raise ValueError(f"time_field {time_field!r} is not a field of {dtype}")
        ft, off = dtype.fields[time_field][:2]
        if ft.kind not in "iu" or ft.itemsize != 8:
            raise ValueError(f"time_field {time_field!r} must be a 64-bit integer, got {ft}")
        return off

    def _set_park_slice(self, seconds):
        """Test hook: the longest single park (default 50 ms, a safety net). A test sets it huge
        so that a lost wake-up hangs (and fails) instead of costing one slice of latency."""
        self.policy.park_slice_ns = seconds_to_ns("park slice", seconds, False)

    @property
    def policy_seconds(self):
        """The wait policy in seconds: batch_timeout, idle_timeout, spin, sleep, backoff, park."""
        p = self.policy
        return {"batch_timeout": p.batch_timeout_ns / 1e9, "idle_timeout": p.idle_timeout_ns / 1e9,
                "spin": p.spin_ns / 1e9, "sleep": p.sleep_ns / 1e9,
                "backoff": p.backoff_ns / 1e9, "park": bool(p.park)}

    def drain(self):
        """Return ``(batch, expired)``: two new arrays of the ring's dtype (``expired`` is empty
        unless ``max_age`` was given)."""
        out = np.empty(self.batch_size, dtype=self.ring.dtype)
        old = np.empty(self.batch_size if self.time_offset >= 0 else 0, dtype=self.ring.dtype)
        keep, n_old = self.drain_into(out, old)
        return out[:keep], old[:n_old]

    def drain_into(self, out, expired=None):
        """Drain into preallocated arrays (no allocation per batch): fresh rows go to the front
        of ``out``, expired ones to the front of ``expired``; returns ``(n_fresh, n_expired)``.

        Both must be writable contiguous 1-D arrays of the ring's dtype holding at least
        ``batch_size`` rows (``expired`` may be None without ``max_age``).
        """
        cdef char *buf = self._buffer("out", out)
        cdef char *obuf = NULL
        cdef uint64_t keep = 0, n_old = 0
        if self.time_offset >= 0:
            obuf = self._buffer("expired", expired)
        self.check_consumer()
        with nogil:
            self.drain_c(buf, obuf, &keep, &n_old)
        return keep, n_old

    cdef int check_consumer(self) except -1:
        cdef uint64_t owner = tio_ring_claim_consumer(self.r)
        if owner:
            self.ring._not_owner("consumer", owner)
        return 0

    cdef int drain_c(self, char *out, char *expired, uint64_t *n_fresh,
                     uint64_t *n_expired) noexcept nogil:
        cdef uint64_t got
        cdef int how
        n_fresh[0] = 0
        n_expired[0] = 0
        if tio_ring_claim_consumer(self.r):
            return -1
        got = tio_drain(self.r, out, self.batch_size, &self.policy, &self.state, &how)
        self._count(got, how)
        if self.time_offset < 0 or got == 0 or expired == NULL:
            n_fresh[0] = got
            return how
        n_fresh[0] = tio_split_expired(out, got, self.r.itemsize, self.time_offset, tio_now_ns(),
                                       self.max_age_ns, expired, n_expired)
        self.n_expired += n_expired[0]
        return how

    cdef char *_buffer(self, str name, object a) except NULL:
        if not isinstance(a, np.ndarray):
            raise TypeError(f"{name} must be a numpy array, got {type(a).__name__}")
        if a.dtype != self.ring.dtype:
            raise TypeError(f"{name} must have dtype {self.ring.dtype}, got {a.dtype}")
        if a.ndim != 1 or not a.flags.c_contiguous or not a.flags.writeable:
            raise ValueError(f"{name} must be a writable contiguous 1-D array, got shape {a.shape}")
        if a.shape[0] < self.batch_size:
            raise ValueError(f"{name} must hold at least batch_size={self.batch_size} rows, "
                             f"got {a.shape[0]}")
        return <char *>cnp.PyArray_DATA(<cnp.ndarray>a)

    cdef void _count(self, uint64_t got, int how) noexcept nogil:
        if how == TIO_DRAIN_IDLE:
            self.n_idle += 1
            return
        self.n_batches += 1
        self.n_rows += got
        if how == TIO_DRAIN_FULL:
            self.n_full += 1
        else:
            self.n_timeout += 1

    def stats(self):
        """Batches returned (cut because full or by timeout), rows, expired rows, idle returns."""
        return {"batches": self.n_batches, "rows": self.n_rows, "expired": self.n_expired,
                "full_batches": self.n_full, "timeout_batches": self.n_timeout,
                "idle_returns": self.n_idle}
