# cython: language_level=3, boundscheck=False, wraparound=False, binding=False
"""Duplicate suppression for the engine: a pending transaction seen twice (gossip from several
peers, two sources) is processed once.

A row's identity is ``(tx_hash, swap_index)``, folded into a 64-bit key by chained fmix64 (the
SIMD kernels' hash) and remembered in a compiled CLOCK cache of the most recent ``capacity``
identities. Rows without a hash (all zero bytes: synthetic or pushed rows that carry none) are
never duplicates; within a batch the first occurrence wins. One GIL-free pass per batch compacts
the kept rows to the front in place. A 64-bit collision between two different transactions would
drop one of them; at a million remembered keys its chance per row is about 5e-14.
"""
from libc.stdint cimport uint32_t, uint64_t
from libc.string cimport memcpy, memmove
cimport numpy as cnp
import numpy as np

from tallyio._core.cache cimport (tio_cache, tio_cache_free, tio_cache_new, tio_cache_peek,
                                  tio_cache_put)
from tallyio._core.simd cimport tio_fmix64

from tallyio.errors import TallyIOError
from tallyio.record import TX_DTYPE

cnp.import_array()

cdef extern from *:
    """
    /* Ask for the cache line of key's home slot ahead of its probe: the table (megabytes) is
     * mostly outside the core's caches, and a batch's probes are independent, so their misses
     * overlap instead of queueing one by one. */
    static inline void tio_dedup_prefetch(const tio_cache *c, uint64_t key) {
        __builtin_prefetch(&c->slots[tio_cache_hash(key) & c->mask], 0, 3);
    }
    """
    void tio_dedup_prefetch(const tio_cache *c, uint64_t key) noexcept nogil

cdef enum:
    AHEAD = 64  # keys hashed and prefetched ahead of their probes

cdef Py_ssize_t HASH = TX_DTYPE.fields["tx_hash"][1]
cdef Py_ssize_t SWAP = TX_DTYPE.fields["swap_index"][1]
cdef Py_ssize_t ID = TX_DTYPE.fields["id"][1]
cdef Py_ssize_t ITEMSIZE = TX_DTYPE.itemsize


cdef inline bint _key(const char *row, uint64_t *key) noexcept nogil:
    """The row's identity key; False when it carries no hash."""
    cdef uint64_t w[4]
    cdef uint32_t swap
    memcpy(w, row + HASH, 32)
    if not (w[0] | w[1] | w[2] | w[3]):
        return False
    memcpy(&swap, row + SWAP, 4)
    cdef uint64_t k = tio_fmix64(w[3] ^ <uint64_t>swap)
    k = tio_fmix64(w[2] ^ k)
    k = tio_fmix64(w[1] ^ k)
    key[0] = tio_fmix64(w[0] ^ k)
    return True


cdef class Dedup:
    """Dedup(capacity=2**20): remembers the identities of the last ``capacity`` rows with a hash.

    ``compact(batch) -> int`` keeps each row seen for the first time (or without a hash), moved
    to the front of ``batch`` in order, and returns how many; ``fresh(batch)`` is the mask form
    (the batch unchanged). ``duplicates``: rows dropped so far. One owner thread.
    """
    cdef tio_cache *c
    cdef readonly uint64_t duplicates
    cdef readonly uint64_t capacity

    def __cinit__(self):
        self.c = NULL

    def __init__(self, capacity=1 << 20):
        if isinstance(capacity, bool) or not isinstance(capacity, int) or capacity < 1:
            raise ValueError(f"capacity must be an int >= 1, got {capacity!r}")
        if self.c != NULL:
            raise TallyIOError("Dedup.__init__ called twice")
        self.c = tio_cache_new(<uint64_t>capacity, 8)
        if self.c == NULL:
            raise MemoryError(f"cannot allocate a dedup cache of {capacity} identities")
        self.capacity = capacity

    def __dealloc__(self):
        if self.c != NULL:
            tio_cache_free(self.c)

    cdef cnp.ndarray _rows(self, batch, bint writable):
        if self.c == NULL:
            raise TallyIOError("Dedup was not initialised (construct it with Dedup(capacity))")
        if not isinstance(batch, np.ndarray) or batch.dtype != TX_DTYPE or batch.ndim != 1:
            raise TypeError(f"batch must be a 1-d numpy array of TX_DTYPE, got "
                            f"{getattr(batch, 'dtype', type(batch).__name__)}")
        if not batch.flags.c_contiguous:
            raise ValueError("batch must be C-contiguous")
        if writable and not batch.flags.writeable:
            raise ValueError("batch must be writable: compact() moves rows in place")
        return <cnp.ndarray>batch

    cdef Py_ssize_t _scan(self, char *base, Py_ssize_t n, char *keep, bint move) noexcept nogil:
        cdef Py_ssize_t i, j, kept = 0
        cdef uint64_t key
        cdef int evicted
        cdef uint64_t evicted_key
        cdef char *row
        cdef uint64_t keys[AHEAD]
        cdef bint has[AHEAD]
        for i in range(n):
            if i % AHEAD == 0:  # the next AHEAD keys, their home slots prefetched
                for j in range(i, min(i + AHEAD, n)):
                    has[j - i] = _key(base + j * ITEMSIZE, &keys[j - i])
                    if has[j - i]:
                        tio_dedup_prefetch(self.c, keys[j - i])
            row = base + i * ITEMSIZE
            key = keys[i % AHEAD]
            if has[i % AHEAD]:
                if tio_cache_peek(self.c, key) != NULL:  # uncounted: no atomic add per row
                    self.duplicates += 1
                    if keep != NULL:
                        keep[i] = 0
                    continue
                tio_cache_put(self.c, key, row + ID, &evicted, &evicted_key)
            if keep != NULL:
                keep[i] = 1
            if move and kept != i:
                memmove(base + kept * ITEMSIZE, row, ITEMSIZE)
            kept += 1
        return kept

    def compact(self, batch) -> int:
        """Drop the duplicates of ``batch`` in place (kept rows first, in order); how many kept."""
        cdef cnp.ndarray a = self._rows(batch, True)
        cdef char *base = <char *>cnp.PyArray_DATA(a)
        cdef Py_ssize_t n = a.shape[0], kept
        with nogil:
            kept = self._scan(base, n, NULL, True)
        return kept

    def fresh(self, batch) -> np.ndarray:
        """Boolean mask of the rows of ``batch`` to process; remembers them."""
        cdef cnp.ndarray a = self._rows(batch, False)
        cdef cnp.ndarray keep = np.empty(a.shape[0], dtype=np.bool_)
        cdef char *base = <char *>cnp.PyArray_DATA(a)
        cdef char *k = <char *>cnp.PyArray_DATA(keep)
        cdef Py_ssize_t n = a.shape[0]
        with nogil:
            self._scan(base, n, k, False)
        return keep
