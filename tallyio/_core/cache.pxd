cimport cython
from libc.stdint cimport uint8_t, uint64_t

cdef extern from "tallyio/cache.h" nogil:
    ctypedef struct tio_cache:
        uint64_t capacity
        uint64_t mask
        uint64_t itemsize
        uint64_t size
        uint64_t evictions
    tio_cache *tio_cache_new(uint64_t capacity, uint64_t itemsize) noexcept nogil
    void tio_cache_free(tio_cache *c) noexcept nogil
    void tio_cache_clear(tio_cache *c) noexcept nogil
    uint64_t tio_cache_slots_for(uint64_t capacity) noexcept nogil
    char *tio_cache_peek(const tio_cache *c, uint64_t key) noexcept nogil
    char *tio_cache_get_gil(tio_cache *c, uint64_t key) noexcept nogil
    char *tio_cache_lookup(tio_cache *c, uint64_t key) noexcept nogil
    uint64_t tio_cache_get_many(tio_cache *c, const uint64_t *keys, uint64_t n, char *out,
                                uint8_t *found) noexcept nogil
    char *tio_cache_put(tio_cache *c, uint64_t key, const void *value, int *evicted,
                        uint64_t *evicted_key) noexcept nogil
    uint64_t tio_cache_put_many(tio_cache *c, const uint64_t *keys, const char *values,
                                uint64_t n) noexcept nogil
    int tio_cache_pop(tio_cache *c, uint64_t key, void *out) noexcept nogil
    uint64_t tio_cache_max_probe(const tio_cache *c) noexcept nogil
    uint64_t tio_cache_keys(const tio_cache *c, uint64_t *out) noexcept nogil
    uint64_t tio_cache_hits(tio_cache *c) noexcept nogil
    uint64_t tio_cache_misses(tio_cache *c) noexcept nogil
    uint64_t tio_cache_probes(tio_cache *c) noexcept nogil


# final: compiled callers' lookup/put_record calls are direct (inlinable), not through a vtable
@cython.final
cdef class StateCache:
    """Fixed-capacity key -> record map. Compiled callers:

    - hold a reference to the cache, and bracket every GIL-free section that calls ``lookup`` or
      ``put_record`` with ``acquire(write)`` / ``release(write)`` (both with the GIL held), so
      Python callers on other threads wait instead of racing: ``write=False`` for lookups only
      (any number of readers at once), ``write=True`` for any put (exclusive);
    - keep such a section to a batch, not the engine's lifetime: writers wait it out by spinning;
    - never call Python-level methods of the same cache inside such a section (they would wait on
      the section itself).
    """
    cdef tio_cache *c
    cdef readonly object value_dtype
    cdef bint is_i64
    cdef int _readers        # GIL-free readers in flight (changed only with the GIL held)
    cdef bint _writer        # a GIL-free writer in flight (changed only with the GIL held)

    cdef int acquire(self, bint write) except -1
    cdef void release(self, bint write) noexcept
    # The record of key (itemsize bytes, valid until the key is popped, evicted or cleared), or
    # NULL when absent. Counts a hit or a miss and marks the entry referenced. Under acquire(0).
    cdef const char *lookup(self, uint64_t key) noexcept nogil
    # Store key -> value (itemsize bytes; NULL keeps an existing record and zeroes a new one) and
    # return the record for in-place writes; may evict. Under acquire(1).
    cdef char *put_record(self, uint64_t key, const void *value) noexcept nogil
    cdef int _wait(self, bint write) except -1
    cdef object _row(self, value)
    cdef object _value(self, const char *rec)
