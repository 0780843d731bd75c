"""Duplicate suppression: a pending transaction seen twice (gossip from several peers, two
sources) is processed once.

A row's identity is ``(tx_hash, swap_index)``, folded into a 64-bit key with the SIMD hash
(``tallyio.simd.hash_batch``, four vector passes per batch) and remembered in a ``StateCache``
(CLOCK eviction) of the most recent ``capacity`` identities. Rows without a hash (all zero bytes:
synthetic or pushed rows that carry none) are never duplicates. A 64-bit collision between two
different transactions would drop one of them; at a million remembered keys its chance per row is
about 5e-14.
"""
from __future__ import annotations

import numpy as np

from tallyio._core.cache import StateCache
from tallyio.simd import hash_batch


class Dedup:
    def __init__(self, capacity: int = 1 << 20):
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        self.seen = StateCache(capacity, value_dtype="int64")
        self.duplicates = 0

    @staticmethod
    def keys(batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(keys, has_hash)`` for a batch of TX_DTYPE rows."""
        words = np.ascontiguousarray(batch["tx_hash"]).view(np.uint64).reshape(-1, 4)
        k = hash_batch(words[:, 3] ^ batch["swap_index"].astype(np.uint64))
        for j in (2, 1, 0):
            k = hash_batch(words[:, j] ^ k)
        return k, words.any(axis=1)

    def fresh(self, batch: np.ndarray) -> np.ndarray:
        """Boolean mask of the rows to process; remembers them."""
        keys, has_hash = self.keys(batch)
        _, seen = self.seen.get_many(keys)
        first = np.zeros(len(keys), dtype=bool)
        first[np.unique(keys, return_index=True)[1]] = True  # within the batch, the first wins
        keep = ~has_hash | (~seen & first)
        new = has_hash & keep
        if new.any():
            self.seen.put_many(keys[new], batch["id"][new].astype(np.int64))
        self.duplicates += int(len(keep) - keep.sum())
        return keep
