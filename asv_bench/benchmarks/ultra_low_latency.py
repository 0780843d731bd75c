"""The plan's two per-item KPIs from Python, each beside its peers in the same run.

ultra_low_latency.time_single_enqueue_dequeue  one tallyio.Ring push + pop        (target < 50 ns)
ultra_low_latency.time_cache_get_operation     one tallyio.StateCache hit (int64) (target < 60 ns)

Peers: ``*_deque`` (collections.deque append + popleft); ``*_dict`` (dict.get), ``*_lru_cache``
(a functools.lru_cache hit) and ``*_cachetools`` (cachetools.LRUCache.get), all on a hit.
Module-level functions so the names are exactly the KPI names; ``setup`` below builds the state
they share (asv runs it before each benchmark).
"""
import collections
import functools

import cachetools

from tallyio import Ring, StateCache

from .common import int64_rows

N_KEYS = 1024


def setup():
    global ring, ring_spsc, dq, cache, table, lru_hit, lru, key
    ring = Ring(1024)                       # the default kind, mpmc
    ring_spsc = Ring(1024, kind="spsc")
    dq = collections.deque(maxlen=1024)
    keys = int64_rows(N_KEYS).tolist()
    key = keys[N_KEYS // 2]
    cache = StateCache(N_KEYS)
    table = {}
    lru = cachetools.LRUCache(maxsize=N_KEYS)
    for k in keys:
        cache.put(k, k)
        table[k] = k
        lru[k] = k
    lru_hit = functools.lru_cache(maxsize=N_KEYS)(lambda k: k)
    for k in keys:
        lru_hit(k)


def time_single_enqueue_dequeue():
    ring.push(1)
    ring.pop()


def time_single_enqueue_dequeue_spsc():
    ring_spsc.push(1)
    ring_spsc.pop()


def time_single_enqueue_dequeue_deque():
    dq.append(1)
    dq.popleft()


def time_cache_get_operation():
    cache.get(key)


def time_cache_get_operation_dict():
    table.get(key)


def time_cache_get_operation_lru_cache():
    lru_hit(key)


def time_cache_get_operation_cachetools():
    lru.get(key)
