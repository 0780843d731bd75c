# cython: language_level=3, boundscheck=False, wraparound=False, binding=False
"""Lock-free bounded rings: records (numpy dtype rows) and Python objects.

Outcomes on the hot path are return values, never exceptions: ``push`` returns False when the
ring is full, ``pop`` returns None when it is empty, ``push_many`` returns how many rows it took.
Each refusal is counted (``stats()['rejected']``, ``stats()['empty_pops']``). Exceptions are kept
for misuse: bad arguments, use after ``close()``, and a second thread on a side of an SPSC ring.
"""
from cpython.ref cimport PyObject, Py_INCREF, Py_DECREF
from libc.stdint cimport int64_t, uint64_t, uintptr_t
cimport numpy as cnp
import threading

import numpy as np

from tallyio.errors import RingClosedError, TallyIOError

cnp.import_array()

_KINDS = {"spsc": TIO_RING_SPSC, "mpmc": TIO_RING_MPMC}
_KIND_NAMES = {TIO_RING_SPSC: "spsc", TIO_RING_MPMC: "mpmc"}


cdef uint64_t check_capacity(object capacity) except 0:
    if isinstance(capacity, bool) or not isinstance(capacity, int):
        raise TypeError(f"capacity must be an int, got {capacity!r}")
    if capacity < 2 or capacity & (capacity - 1):
        raise ValueError(f"capacity must be a power of two >= 2, got {capacity}")
    if capacity > (1 << 40):
        raise ValueError(f"capacity must be at most 2**40, got {capacity}")
    return <uint64_t>capacity


cdef int check_kind(object kind) except -1:
    try:
        return _KINDS[kind]
    except (KeyError, TypeError):
        raise ValueError(f"kind must be 'spsc' or 'mpmc', got {kind!r}") from None


cdef str _thread_label(uint64_t ident):
    # threading keeps its Thread objects by get_ident(), which is pthread_self() on POSIX: the
    # same id the ring stores. Private, hence the fallback to the bare id.
    t = getattr(threading, "_active", {}).get(ident)
    return f"thread {ident} ({t.name!r})" if t is not None else f"thread {ident}"


cdef class _RingBase:
    """Shared lifecycle of Ring and ObjectRing; not constructible on its own."""

    def __init__(self, *args, **kwargs):
        raise TypeError("_RingBase is internal; use tallyio.Ring or tallyio.ObjectRing")

    cdef int _check_open(self) except -1:
        if self.closed:
            raise RingClosedError("ring is closed")
        return 0

    cdef int _check_ring(self) except -1:
        # Only a _RingBase made with __new__ has no ring: Ring and ObjectRing build theirs in
        # __cinit__ or fail, so their hot paths need no such check.
        if self.r == NULL:
            raise TypeError(f"{type(self).__name__} has no ring (made with __new__); use "
                            f"tallyio.Ring or tallyio.ObjectRing")
        return 0

    cdef int _not_owner(self, str side, uint64_t owner) except -1:
        verb = "push to" if side == "producer" else "pop from"
        raise TallyIOError(
            f"{type(self).__name__}(kind='spsc') has one {side} thread at a time: "
            f"{_thread_label(owner)} owns the {side} side, so {_thread_label(tio_thread_id())} "
            f"may not {verb} it. Use kind='mpmc' for several {side}s, or hand the side over: "
            f"release_{side}() once the owner has stopped.")

    def close(self):
        """Refuse further pushes (they raise RingClosedError); rows already in stay poppable.

        Shut down by stopping (joining) the producers, closing, then draining until empty: a push
        that returned True is always there to pop.
        """
        self._check_ring()
        self.closed = True

    def release_producer(self):
        """Give up the producer side of an SPSC ring: the next thread that pushes owns it.

        An SPSC ring allows one producer thread at a time: the first thread that pushes owns the
        side, and a push from any other raises TallyIOError. To hand the side to another thread,
        stop the owner (its last push returned), call ``release_producer()`` from the owner or
        from a thread that joined it, then push from the new thread. No-op for MPMC rings.
        """
        self._check_ring()
        tio_ring_release_producer(self.r)

    def release_consumer(self):
        """Give up the consumer side of an SPSC ring: the next thread that pops owns it (see
        ``release_producer``; a BatchDrain pops as its ring's consumer)."""
        self._check_ring()
        tio_ring_release_consumer(self.r)

    @property
    def producer_thread(self):
        """``threading.get_ident()`` of the thread that owns the producer side of an SPSC ring;
        None when nobody does yet (or released), and always for MPMC."""
        self._check_ring()
        cdef uint64_t o = tio_ring_producer_owner(self.r)
        return o if o else None

    @property
    def consumer_thread(self):
        """As ``producer_thread``, for the consumer side."""
        self._check_ring()
        cdef uint64_t o = tio_ring_consumer_owner(self.r)
        return o if o else None

    def __len__(self):
        self._check_ring()
        return tio_ring_size(self.r)

    @property
    def capacity(self):
        self._check_ring()
        return self.r.capacity

    @property
    def kind(self):
        self._check_ring()
        return _KIND_NAMES[self.r.kind]

    def stats(self):
        """Counters since creation: pushed/popped rows, rejected rows (full), empty pops, size,
        and how often a consumer parked on the ring (``parks``) and a producer woke one
        (``wakes``)."""
        self._check_ring()
        return {
            "kind": _KIND_NAMES[self.r.kind],
            "capacity": self.r.capacity,
            "size": tio_ring_size(self.r),
            "pushed": tio_ring_pushed(self.r),
            "popped": tio_ring_popped(self.r),
            "rejected": tio_ring_rejected(self.r),
            "empty_pops": tio_ring_empty_pops(self.r),
            "parks": tio_ring_parks(self.r),
            "wakes": tio_ring_wakes(self.r),
            "closed": self.closed,
        }

    def __repr__(self):
        if self.r == NULL:
            return f"<{type(self).__name__} without a ring>"
        return (f"{type(self).__name__}(capacity={self.r.capacity}, "
                f"kind={_KIND_NAMES[self.r.kind]!r}, size={tio_ring_size(self.r)})")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


cdef class Ring(_RingBase):
    """Ring(capacity, dtype="int64", *, kind="mpmc")

    A bounded lock-free ring whose slots are rows of a fixed-size numpy dtype (``int64`` or a
    structured record such as ``tallyio.TX_DTYPE``).

    Parameters
    ----------
    capacity : int
        Number of slots, a power of two >= 2.
    dtype : numpy dtype-like
        Row type; any fixed-size dtype without Python objects (use ObjectRing for objects).
    kind : {"mpmc", "spsc"}
        "spsc" is faster but allows one producer thread and one consumer thread at a time: the
        first thread that pushes owns the producer side, the first that pops the consumer side,
        and another thread's push or pop raises TallyIOError (hand a side over with
        ``release_producer()`` / ``release_consumer()``). "mpmc" is safe for any number of each.

    ``push_many`` and ``pop_many`` copy with the GIL released.
    """

    def __cinit__(self, capacity, dtype="int64", *, kind="mpmc"):
        cdef uint64_t cap = check_capacity(capacity)
        cdef int k = check_kind(kind)
        try:
            dt = np.dtype(dtype)
        except TypeError as e:
            raise TypeError(f"dtype must be a numpy dtype, got {dtype!r}") from e
        if dt.hasobject:
            raise TypeError(f"dtype must not hold Python objects (use ObjectRing), got {dt}")
        if dt.itemsize == 0:
            raise ValueError(f"dtype must have a non-zero itemsize, got {dt}")
        self.dtype = dt
        self._descr = dt
        self.is_i64 = dt == np.dtype(np.int64)
        self.r = tio_ring_new(cap, dt.itemsize, k)
        if self.r == NULL:
            raise MemoryError(f"cannot allocate a ring of {cap} rows of {dt.itemsize} bytes")

    def __init__(self, capacity, dtype="int64", *, kind="mpmc"):
        pass

    def __dealloc__(self):
        tio_ring_free(self.r)

    def push(self, item):
        """Push one row; return False (and count it) when the ring is full."""
        cdef int64_t v
        cdef cnp.ndarray a
        cdef uint64_t owner
        if self.closed:
            raise RingClosedError("ring is closed")
        owner = tio_ring_claim_producer(self.r)
        if owner:
            self._not_owner("producer", owner)
        if self.is_i64:
            v = item
            return tio_ring_push(self.r, &v) == 1
        a = self._row(item)
        return tio_ring_push(self.r, cnp.PyArray_DATA(a)) == 1

    cdef cnp.ndarray _row(self, item):
        a = np.asarray(item)
        if a.dtype != self.dtype:
            if self.dtype.names is not None and not isinstance(item, tuple):
                raise TypeError(f"item must be a row of dtype {self.dtype} or a tuple, "
                                f"got {type(item).__name__} of dtype {a.dtype}")
            try:
                a = np.asarray(item, dtype=self.dtype)
            except (TypeError, ValueError) as e:
                raise TypeError(f"item {item!r} does not convert to dtype {self.dtype}: {e}") from e
        if a.ndim != 0:
            raise ValueError(f"item must be a single row, got shape {a.shape}")
        return np.ascontiguousarray(a)

    def pop(self):
        """Pop one row (an int for int64 rings, a numpy.void record otherwise); None when empty."""
        cdef int64_t v
        cdef cnp.ndarray out
        cdef uint64_t owner = tio_ring_claim_consumer(self.r)
        if owner:
            self._not_owner("consumer", owner)
        if self.is_i64:
            if tio_ring_pop(self.r, &v):
                return v
            return None
        out = np.empty(1, dtype=self.dtype)
        if tio_ring_pop(self.r, cnp.PyArray_DATA(out)):
            return out[0]
        return None

    def push_many(self, array):
        """Push the rows of a 1-D array; return how many were taken (a prefix), without the GIL."""
        cdef cnp.ndarray a
        cdef uint64_t n, taken
        cdef void *src
        cdef uint64_t owner
        self._check_open()
        owner = tio_ring_claim_producer(self.r)
        if owner:
            self._not_owner("producer", owner)
        a = self._rows(array)
        n = a.shape[0]
        src = cnp.PyArray_DATA(a)
        with nogil:
            taken = tio_ring_push_many(self.r, src, n)
        return taken

    cdef cnp.ndarray _rows(self, array):
        a = np.asarray(array)
        if a.dtype != self.dtype:
            if self.dtype.names is not None or a.dtype.names is not None:
                raise TypeError(f"array must have dtype {self.dtype}, got {a.dtype}")
            if not np.can_cast(a.dtype, self.dtype, "safe") and a.size:
                raise TypeError(f"array of dtype {a.dtype} cannot be safely cast to {self.dtype}")
            a = a.astype(self.dtype)
        if a.ndim != 1:
            raise ValueError(f"array must be one-dimensional, got shape {a.shape}")
        return np.ascontiguousarray(a)

    def pop_many(self, max_n):
        """Pop up to ``max_n`` rows into a new array (empty when the ring is), without the GIL."""
        cdef cnp.ndarray out
        cdef uint64_t n, got
        cdef void *dst
        if isinstance(max_n, bool) or not isinstance(max_n, int):
            raise TypeError(f"max_n must be an int, got {max_n!r}")
        if max_n < 1:
            raise ValueError(f"max_n must be >= 1, got {max_n}")
        cdef uint64_t owner = tio_ring_claim_consumer(self.r)
        if owner:
            self._not_owner("consumer", owner)
        n = min(<uint64_t>max_n, self.r.capacity)
        out = np.empty(n, dtype=self.dtype)
        dst = cnp.PyArray_DATA(out)
        with nogil:
            got = tio_ring_pop_many(self.r, dst, n)
        if got == n:
            return out
        return out[:got].copy() if got < n // 4 else out[:got]

    def pop_into(self, out):
        """Pop up to ``len(out)`` rows into the writable 1-D array ``out``; return the count."""
        cdef cnp.ndarray a
        cdef uint64_t got, n
        cdef void *dst
        if not isinstance(out, np.ndarray):
            raise TypeError(f"out must be a numpy array, got {type(out).__name__}")
        a = out
        if a.dtype != self.dtype:
            raise TypeError(f"out must have dtype {self.dtype}, got {a.dtype}")
        if a.ndim != 1 or not a.flags.c_contiguous or not a.flags.writeable:
            raise ValueError(f"out must be a writable contiguous 1-D array, got shape {out.shape}")
        cdef uint64_t owner = tio_ring_claim_consumer(self.r)
        if owner:
            self._not_owner("consumer", owner)
        n = a.shape[0]
        dst = cnp.PyArray_DATA(a)
        with nogil:
            got = tio_ring_pop_many(self.r, dst, n)
        return got

    def __repr__(self):
        return (f"Ring(capacity={self.r.capacity}, dtype={self.dtype}, "
                f"kind={_KIND_NAMES[self.r.kind]!r}, size={tio_ring_size(self.r)})")


cdef class ObjectRing(_RingBase):
    """ObjectRing(capacity, *, kind="mpmc")

    A bounded lock-free ring of arbitrary Python objects (the ring holds a reference to each).
    ``pop(default=None)`` returns ``default`` when empty, so rings that carry None can pass a
    sentinel.
    """

    def __cinit__(self, capacity, *, kind="mpmc"):
        cdef uint64_t cap = check_capacity(capacity)
        cdef int k = check_kind(kind)
        self.r = tio_ring_new(cap, sizeof(PyObject *), k)
        if self.r == NULL:
            raise MemoryError(f"cannot allocate a ring of {cap} objects")

    def __init__(self, capacity, *, kind="mpmc"):
        pass

    def __dealloc__(self):
        cdef PyObject *p
        if self.r != NULL:
            while tio_ring_pop(self.r, &p):
                Py_DECREF(<object>p)
            tio_ring_free(self.r)

    def push(self, item):
        """Push one object; False (and counted) when the ring is full."""
        cdef PyObject *p = <PyObject *>item
        cdef uint64_t owner
        self._check_open()
        owner = tio_ring_claim_producer(self.r)
        if owner:
            self._not_owner("producer", owner)
        Py_INCREF(item)
        if tio_ring_push(self.r, &p):
            return True
        Py_DECREF(item)
        return False

    def pop(self, default=None):
        """Pop one object; ``default`` when the ring is empty."""
        cdef PyObject *p
        cdef uint64_t owner = tio_ring_claim_consumer(self.r)
        if owner:
            self._not_owner("consumer", owner)
        if tio_ring_pop(self.r, &p):
            obj = <object>p   # takes a new reference...
            Py_DECREF(obj)    # ...so drop the one the ring held
            return obj
        return default

    def push_many(self, items):
        """Push objects from an iterable in order until one does not fit; return how many did."""
        cdef Py_ssize_t n = 0
        self._check_open()
        for item in items:
            if not self.push(item):
                break
            n += 1
        return n

    def pop_many(self, max_n):
        """Pop up to ``max_n`` objects into a list."""
        cdef PyObject *p
        if isinstance(max_n, bool) or not isinstance(max_n, int):
            raise TypeError(f"max_n must be an int, got {max_n!r}")
        if max_n < 1:
            raise ValueError(f"max_n must be >= 1, got {max_n}")
        cdef uint64_t owner = tio_ring_claim_consumer(self.r)
        if owner:
            self._not_owner("consumer", owner)
        out = []
        while len(out) < max_n and tio_ring_pop(self.r, &p):
            obj = <object>p
            Py_DECREF(obj)
            out.append(obj)
        return out

    def __repr__(self):
        return (f"ObjectRing(capacity={self.r.capacity}, kind={_KIND_NAMES[self.r.kind]!r}, "
                f"size={tio_ring_size(self.r)})")
