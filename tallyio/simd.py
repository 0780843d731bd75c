"""Batch kernels over 64-bit keys with scalar, AVX2 and AVX-512 paths chosen at import.

``hash_batch`` (fmix64), ``compare_batch`` (elementwise ==), ``contains_batch`` and ``WatchList``
(membership in a watch-list), ``level()`` (the active level), ``available_levels()`` and
``set_level()``. ``TALLYIO_SIMD=auto|scalar|avx2|avx512`` forces a level at import; see
docs/kernels.md.
"""
from tallyio._core.simd import (
    LEVELS,
    WatchList,
    available_levels,
    compare_batch,
    contains_batch,
    hash_batch,
    level,
    set_level,
)

__all__ = [
    "LEVELS",
    "WatchList",
    "available_levels",
    "compare_batch",
    "contains_batch",
    "hash_batch",
    "level",
    "set_level",
]
