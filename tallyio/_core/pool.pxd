cimport cython
from libc.stdint cimport uint32_t, uint64_t

cdef extern from "tallyio/pool.h" nogil:
    enum:
        TIO_POOL_CLASSES
        TIO_POOL_NIL
        TIO_POOL_MAX_COUNT
        TIO_PAGES_NONE
        TIO_PAGES_NORMAL
        TIO_PAGES_THP
        TIO_PAGES_HUGETLB
        TIO_HUGE_AUTO
        TIO_HUGE_HUGETLB
        TIO_HUGE_THP
        TIO_HUGE_OFF
        TIO_POOL_STAT_IN_USE
        TIO_POOL_STAT_HIGH_WATER
        TIO_POOL_STAT_EXHAUSTED
        TIO_POOL_STAT_SYSTEM_IN_USE
        TIO_POOL_STAT_OVERSIZE
    ctypedef struct tio_pool_class:
        char *base
        size_t block_size
        uint32_t count
        int pages
        int numa_bound
        size_t map_len
    ctypedef struct tio_pool:
        tio_pool_class cls[4]
        int fallback
    size_t tio_pool_block_sizes[4]
    int tio_pool_class_of(size_t size) noexcept nogil
    # C-level entry points for compiled modules: any thread, no GIL. Keep the MemoryPool object
    # alive and do not race close(). alloc: NULL when closed, refused ("raise") or out of memory;
    # *gen receives the block's generation. free: give the pointer back with that generation; 0,
    # or -1 (nothing freed) for a double, stale or foreign free, an interior pointer or NULL.
    void *tio_pool_alloc(tio_pool *p, size_t size, uint64_t *gen) noexcept nogil
    int tio_pool_free(tio_pool *p, void *ptr, uint64_t gen) noexcept nogil
    # Class of a pointer inside one of the regions (-1: outside all, -2: not a block start).
    int tio_pool_locate(const tio_pool *p, const void *ptr, uint32_t *idx) noexcept nogil
    # Building blocks of the Python API (a block index plus the generation a release must present).
    uint32_t tio_pool_take(tio_pool_class *c, uint64_t *gen) noexcept nogil
    int tio_pool_give(tio_pool_class *c, uint32_t idx, uint64_t gen) noexcept nogil
    char *tio_pool_block(const tio_pool_class *c, uint32_t idx) noexcept nogil
    void *tio_pool_sys_alloc(tio_pool *p, size_t size) noexcept nogil
    void tio_pool_sys_free(tio_pool *p, void *ptr) noexcept nogil
    int tio_pool_aba_replay(tio_pool_class *c) noexcept nogil
    tio_pool *tio_pool_new(int fallback) noexcept nogil
    int tio_pool_map_class(tio_pool *p, int k, uint32_t count, int huge, int thp_ok,
                           int numa_node, int *step) noexcept nogil
    void tio_pool_unmap(tio_pool *p) noexcept nogil
    void tio_pool_destroy(tio_pool *p) noexcept nogil
    uint64_t tio_pool_in_use(tio_pool *p) noexcept nogil
    # Counters (relaxed snapshots) and the closed flag.
    uint64_t tio_pool_stat(tio_pool *p, int what, int k) noexcept nogil
    void tio_pool_mark_closed(tio_pool *p) noexcept nogil
    void tio_pool_count_oversize(tio_pool *p) noexcept nogil


cdef class MemoryPool:
    """Compiled callers use ``p`` with ``tio_pool_alloc`` / ``tio_pool_free`` from nogil code."""
    cdef tio_pool *p
    cdef readonly bint closed
    cdef bint _unmapped
    cdef int _active          # _stress loops running without the GIL
    cdef uint64_t _collected  # blocks returned by garbage collection instead of release()
    cdef readonly object numa_node
    cdef readonly str on_exhausted
    cdef readonly str huge_pages
    cdef void _maybe_unmap(self) noexcept


@cython.final
cdef class Block:
    """A block handed out by MemoryPool.allocate; a writable buffer of exactly ``size`` bytes."""
    cdef MemoryPool pool
    cdef char *ptr
    cdef Py_ssize_t _size
    cdef int cls             # size class, -1: system allocator
    cdef uint32_t slot
    cdef uint64_t gen
    cdef int exports         # live buffer views
    cdef bint _released
    cdef int _free(self) except -1
