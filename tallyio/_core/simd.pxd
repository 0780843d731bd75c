from libc.stdint cimport uint8_t, uint64_t
cimport numpy as cnp

cdef extern from "tallyio/simd.h" nogil:
    enum:
        TIO_SIMD_SCALAR
        TIO_SIMD_AVX2
        TIO_SIMD_AVX512
        TIO_WL_SMALL_MAX
    ctypedef struct tio_watchlist:
        uint64_t *slots
        uint64_t mask
        uint64_t size
        int has_zero
    int tio_simd_cpu_level() noexcept nogil
    uint64_t tio_fmix64(uint64_t k) noexcept nogil
    void tio_hash_batch(int level, const void *src, uint64_t *out, size_t n) noexcept nogil
    void tio_compare_batch(int level, const void *a, const void *b, uint8_t *out,
                           size_t n) noexcept nogil
    void tio_contains_small(int level, const void *keys, size_t n, const uint64_t *watch,
                            size_t w, uint8_t *out) noexcept nogil
    size_t tio_wl_small_limit(int level) noexcept nogil
    uint64_t tio_wl_buckets_for(uint64_t n) noexcept nogil
    int tio_wl_init(tio_watchlist *wl, uint64_t n) noexcept nogil
    void tio_wl_free(tio_watchlist *wl) noexcept nogil
    void tio_wl_add(tio_watchlist *wl, uint64_t k) noexcept nogil
    int tio_wl_contains(const tio_watchlist *wl, uint64_t k) noexcept nogil
    void tio_wl_query(const tio_watchlist *wl, int level, const void *keys, size_t n,
                      uint8_t *out) noexcept nogil


# The level the Python functions use by default (TIO_SIMD_*): detected at import, or forced by
# TALLYIO_SIMD, or set by set_level(). Compiled callers pass it to the tio_* kernels.
cdef int active_level() noexcept nogil


cdef class WatchList:
    """Compiled callers query ``wl`` with ``tio_wl_contains`` / ``tio_wl_query`` without the GIL;
    the table is read-only once built, so any number of threads may."""
    cdef tio_watchlist wl
    cdef uint64_t small[TIO_WL_SMALL_MAX]
    cdef size_t n_small
    cdef bint built
    cdef cnp.ndarray query(self, int lvl, cnp.ndarray keys)
