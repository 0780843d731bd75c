# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, binding=False
"""The engine's per-row bookkeeping in C: pacing a feed into the ring, and stamping stage latencies.

Two Python threads that hand the GIL back and forth per small step are what ruins the tail on a
two-core machine (each hand-off can cost a whole switch interval). So the ingest side of the engine
runs a whole source chunk in one call with the GIL released (``Pacer.run``): it waits for each
row's scheduled time, stamps ``arrival_ns`` and moves the due rows into the ring. The engine side
records a drained batch's latencies in one GIL-free loop (``record_since``).

Pacing waits by sleeping, not spinning: the thread's timer slack is set to 1 us (``prctl``) so a
``nanosleep`` wakes within a few microseconds of its deadline, and a wake-up takes every row that
came due since the last one (at most every ``tick_ns``). Rows keep their *scheduled* time as their
stamp, so a late wake-up shows up as latency instead of a lower offered rate (open loop, no
coordinated omission).
"""
from libc.stdint cimport int64_t, uint64_t
from libc.string cimport memcpy
cimport numpy as cnp
import numpy as np

from tallyio._core.batch cimport BatchDrain
from tallyio._core.clock cimport tio_now_ns
from tallyio._core.hist cimport LatencyHistogram, tio_hist, tio_hist_record_batch
from tallyio._core.ring cimport Ring, tio_ring, tio_ring_claim_producer, tio_ring_push_many

from tallyio.errors import TallyIOError
from tallyio.record import TX_DTYPE

cnp.import_array()

cdef extern from *:
    """
    #include <time.h>
    #include <sys/prctl.h>
    static inline void tio_ingest_sleep_ns(uint64_t ns) {
        struct timespec ts = {(time_t)(ns / 1000000000ull), (long)(ns % 1000000000ull)};
        nanosleep(&ts, NULL);
    }
    /* 1 us timer slack for the calling thread: the default 50 us would add 50 us to every paced
     * wake-up. Harmless where prctl refuses (returns -1). */
    static inline int tio_ingest_fine_timer(void) {
    #ifdef PR_SET_TIMERSLACK
        return prctl(PR_SET_TIMERSLACK, 1000UL, 0, 0, 0);
    #else
        return -1;
    #endif
    }
    static inline int tio_ingest_load(const int *p) { return __atomic_load_n(p, __ATOMIC_RELAXED); }
    static inline void tio_ingest_store(int *p, int v) { __atomic_store_n(p, v, __ATOMIC_RELAXED); }
    """
    void tio_ingest_sleep_ns(uint64_t ns) noexcept nogil
    int tio_ingest_fine_timer() noexcept nogil
    int tio_ingest_load(const int *p) noexcept nogil
    void tio_ingest_store(int *p, int v) noexcept nogil

cdef Py_ssize_t ARRIVAL = TX_DTYPE.fields["arrival_ns"][1]
cdef Py_ssize_t ITEMSIZE = TX_DTYPE.itemsize

cdef enum:
    MODE_ASAP = 0
    MODE_RATE = 1
    MODE_SPEED = 2


cdef inline int64_t _arrival(const char *row) noexcept nogil:
    cdef int64_t v
    memcpy(&v, row + ARRIVAL, sizeof(int64_t))
    return v


cdef inline void _stamp(char *row, int64_t v) noexcept nogil:
    memcpy(row + ARRIVAL, &v, sizeof(int64_t))


cdef enum:
    WAIT_CHUNK = 256


cdef void _record_waits(const char *base, Py_ssize_t n, int64_t t, tio_hist *a,
                        tio_hist *b) noexcept nogil:
    """Record ``t - arrival_ns`` (0 when negative) of ``n`` rows into ``a`` and ``b`` (may be
    NULL) by chunks: the histograms' bulk record folds count, sum, min and max once per chunk, one
    atomic add per value instead of five."""
    cdef int64_t waits[WAIT_CHUNK]
    cdef int64_t v
    cdef Py_ssize_t i = 0, k, m
    while i < n:
        m = n - i if n - i < WAIT_CHUNK else WAIT_CHUNK
        for k in range(m):
            v = t - _arrival(base + (i + k) * ITEMSIZE)
            waits[k] = v if v > 0 else 0
        tio_hist_record_batch(a, waits, <uint64_t>m)
        if b != NULL:
            tio_hist_record_batch(b, waits, <uint64_t>m)
        i += m


cdef cnp.ndarray _rows(object rows, str what):
    if not isinstance(rows, np.ndarray) or (<cnp.ndarray>rows).dtype != TX_DTYPE:
        raise TypeError(f"{what} must be a numpy array of TX_DTYPE, got "
                        f"{getattr(rows, 'dtype', type(rows).__name__)}")
    if rows.ndim != 1 or not rows.flags.c_contiguous:
        raise ValueError(f"{what} must be a 1-d C-contiguous array, got shape {rows.shape}")
    return <cnp.ndarray>rows


cdef class Pacer:
    """Pacer(ring, *, rate=0.0, speed=0.0, t0_ns=None, offset=0, stride=1, chunk_max=1024,
    tick_ns=20_000, on_full="block")

    Offers rows to ``ring`` on a schedule, stamping each row's ``arrival_ns`` with its scheduled
    time, the GIL released for a whole chunk (the calling thread becomes an SPSC ring's producer):

    * ``rate > 0``: row ``k`` of the stream (counted across ``run`` calls) is due at
      ``t0_ns + (offset + k * stride) * 1e9 / rate``; ``offset``/``stride`` give several producers
      disjoint slots of one schedule.
    * ``speed > 0``: a recorded feed, row due at ``t0_ns + arrival_ns / speed`` (its recorded,
      relative ``arrival_ns``).
    * ``t0_ns`` None: the schedule starts at the first ``run`` call.
    * neither: as fast as the ring takes them, stamped with the time they were pushed.

    A full ring: ``on_full="block"`` waits ``tick_ns`` and retries (counted in ``full_waits``),
    ``"drop"`` drops the rows that did not fit (counted in ``dropped``). ``stop()`` (any thread)
    makes ``run`` return at its next step.
    """
    cdef Ring ring
    cdef int mode
    cdef double period_ns, speed
    cdef int64_t t0
    cdef uint64_t offset, stride, seq
    cdef uint64_t chunk_max, tick_ns
    cdef bint drop
    cdef int _stop
    cdef readonly uint64_t pushed, dropped, full_waits, wakeups

    def __cinit__(self):
        self.ring = None
        self.mode = MODE_ASAP
        self.chunk_max = 1024
        self.tick_ns = 20_000
        self.stride = 1

    def __init__(self, Ring ring not None, *, double rate=0.0, double speed=0.0, t0_ns=None,
                 offset=0, stride=1, chunk_max=1024, tick_ns=20_000, on_full="block"):
        if ring.dtype != TX_DTYPE:
            raise TypeError(f"ring must hold TX_DTYPE rows, got {ring.dtype}")
        if not (rate >= 0 and rate < float("inf")):
            raise ValueError(f"rate must be a finite number >= 0, got {rate!r}")
        if not (speed >= 0 and speed < float("inf")):
            raise ValueError(f"speed must be a finite number >= 0, got {speed!r}")
        if rate > 0 and speed > 0:
            raise ValueError(f"give rate or speed, not both (rate={rate!r}, speed={speed!r})")
        if int(stride) < 1 or int(offset) < 0:
            raise ValueError(f"offset must be >= 0 and stride >= 1, got {offset!r}, {stride!r}")
        if not 1 <= int(chunk_max) <= 1 << 20:
            raise ValueError(f"chunk_max must be in [1, 2**20], got {chunk_max!r}")
        if not 0 <= int(tick_ns) <= 1_000_000_000:
            raise ValueError(f"tick_ns must be in [0, 1e9], got {tick_ns!r}")
        if on_full not in ("block", "drop"):
            raise ValueError(f"on_full must be 'block' or 'drop', got {on_full!r}")
        self.ring = ring
        self.mode = MODE_RATE if rate > 0 else MODE_SPEED if speed > 0 else MODE_ASAP
        self.period_ns = 1e9 / rate if rate > 0 else 0.0
        self.speed = speed
        # None: the schedule starts when the first rows are handed to run(), so preparing them
        # (reading, copying a source's first chunk) does not make them late
        self.t0 = -1 if t0_ns is None else <int64_t>int(t0_ns)
        self.offset, self.stride = int(offset), int(stride)
        self.chunk_max, self.tick_ns = int(chunk_max), int(tick_ns)
        self.drop = on_full == "drop"

    def stop(self):
        """Make ``run`` return at its next step (thread-safe; safe from a signal handler)."""
        tio_ingest_store(&self._stop, 1)

    @property
    def t0_ns(self) -> int:
        """The schedule's origin (monotonic ns)."""
        return self.t0

    @property
    def stopped(self) -> bool:
        return tio_ingest_load(&self._stop) != 0

    def run(self, rows) -> int:
        """Pace ``rows`` (TX_DTYPE, 1-d, C-contiguous, writable: ``arrival_ns`` is stamped in
        place) into the ring; returns how many rows were consumed (pushed or dropped). Fewer
        than ``len(rows)`` only after ``stop()``."""
        if self.ring is None:
            raise TallyIOError("Pacer was not initialised (construct it with Pacer(ring, ...))")
        cdef cnp.ndarray a = _rows(rows, "rows")
        if not a.flags.writeable:
            raise ValueError("rows must be writable: arrival_ns is stamped in place")
        if self.ring.closed:
            raise TallyIOError("run() on a closed ring")
        if self.t0 < 0:
            self.t0 = <int64_t>tio_now_ns()
        cdef char *base = <char *>cnp.PyArray_DATA(a)
        cdef uint64_t n = <uint64_t>a.shape[0], i = 0, j, taken, k
        cdef tio_ring *r = self.ring.r
        cdef int64_t now, due, first
        cdef uint64_t owner = tio_ring_claim_producer(r)  # SPSC: one producer thread at a time
        if owner:
            self.ring._not_owner("producer", owner)
        with nogil:
            tio_ingest_fine_timer()
            while i < n and not tio_ingest_load(&self._stop):
                now = <int64_t>tio_now_ns()
                j = i
                if self.mode == MODE_ASAP:
                    j = i + self.chunk_max if i + self.chunk_max < n else n
                    for k in range(i, j):
                        _stamp(base + k * ITEMSIZE, now)
                else:
                    while j < n and j - i < self.chunk_max:
                        due = self._due(base + j * ITEMSIZE, self.seq + j)
                        if due > now:
                            break
                        _stamp(base + j * ITEMSIZE, due)
                        j += 1
                    if j == i:
                        # nothing due yet: sleep to the next row's time, at most every tick
                        first = self._due(base + i * ITEMSIZE, self.seq + i)
                        if first - now < <int64_t>self.tick_ns:
                            first = now + <int64_t>self.tick_ns
                        tio_ingest_sleep_ns(<uint64_t>(first - now))
                        self.wakeups += 1
                        continue
                taken = tio_ring_push_many(r, base + i * ITEMSIZE, j - i)
                self.pushed += taken
                if taken < j - i:
                    if self.drop:
                        self.dropped += j - i - taken
                    else:
                        self.full_waits += 1
                        j = i + taken
                        tio_ingest_sleep_ns(self.tick_ns if self.tick_ns else 1000)
                i = j
        self.seq += i
        return i

    cdef inline int64_t _due(self, const char *row, uint64_t k) noexcept nogil:
        if self.mode == MODE_RATE:
            return self.t0 + <int64_t>((self.offset + k * self.stride) * self.period_ns)
        return self.t0 + <int64_t>(_arrival(row) / self.speed)


def record_since(rows, int64_t t_ns, LatencyHistogram a not None, LatencyHistogram b=None) -> int:
    """Record ``t_ns - arrival_ns`` (0 when negative) of every row into ``a`` (and ``b``), in one
    GIL-free loop; returns the number of rows."""
    cdef cnp.ndarray arr = _rows(rows, "rows")
    cdef const char *base = <const char *>cnp.PyArray_DATA(arr)
    cdef Py_ssize_t n = arr.shape[0]
    cdef tio_hist *hb = b.h if b is not None else NULL
    with nogil:
        _record_waits(base, n, t_ns, a.h, hb)
    return n


def drain_batch(BatchDrain drain not None, out, expired, LatencyHistogram a not None,
                LatencyHistogram b=None):
    """One GIL-free call for the engine's per-batch bookkeeping: drain a batch into ``out``
    (expired rows into ``expired`` when the drain has ``max_age``) and record each fresh row's
    wait in the ring (drained time - ``arrival_ns``) into ``a`` (and ``b``).

    Returns ``(n_fresh, n_expired, t_drained_ns)``; ``out``/``expired`` are arrays of the ring's
    dtype with at least ``batch_size`` rows, validated here (with the GIL) on every call."""
    cdef char *o = drain._buffer("out", out)
    cdef char *old = drain._buffer("expired", expired) if drain.time_offset >= 0 else NULL
    cdef uint64_t n = 0, n_old = 0
    cdef int how
    cdef int64_t t = 0
    cdef tio_hist *hb = b.h if b is not None else NULL
    if drain.ring.dtype != TX_DTYPE:
        raise TypeError(f"drain_batch needs a ring of TX_DTYPE rows, got {drain.ring.dtype}")
    with nogil:
        how = drain.drain_c(o, old, &n, &n_old)
        if n:
            t = <int64_t>tio_now_ns()
            _record_waits(o, <Py_ssize_t>n, t, a.h, hb)
    if how < 0:
        drain.check_consumer()
    return n, n_old, t
