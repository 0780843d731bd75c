/* Fixed-capacity map from 64-bit keys to fixed-size records, with CLOCK eviction.
 *
 * Layout: an index of 2^k slots {key, entry} with linear probing, at most half full, and a dense
 * array of `capacity` entries that hold the records. A record never moves while its key is
 * present, so a pointer returned by a lookup stays valid until that key is popped or evicted (or
 * the cache is cleared); only the small slots move.
 *
 * Deletion is backward-shift (Knuth 6.4, Algorithm R): the slots after the hole that may live
 * there are moved back, so there are no tombstones and a probe sequence is always as short as if
 * the remaining keys had been inserted afresh. Many put/pop cycles cannot degrade lookups into
 * scans, which is the failure mode of tombstones without periodic rehashing.
 *
 * Eviction is CLOCK (second chance): one reference byte per entry, set on a hit, and a hand that
 * sweeps the entries when a new key arrives at a full cache, clearing set bytes and taking the
 * first clear one. A hit costs a load (and a store only when the byte was clear), where LRU would
 * relink a list on every hit. New entries start referenced. The hand also passes over the entry
 * put last (new or overwritten): plain CLOCK could clear its bit and come back round to it when
 * every other entry was referenced too, so a key just put would be gone on the next new key.
 * The hand sweeps only when the cache is full, when every entry is live, so it stops within two
 * turns.
 *
 * Concurrency: the writer functions (put, pop, clear) need exclusive access; the readers
 * (find, lookup, get_many) may run on several threads at once while no writer runs. Readers
 * write only the reference bytes (relaxed atomics) and the shared counters (relaxed atomics).
 * Who may run when is enforced one level up, by StateCache's guard.
 */
#pragma once
#include <stdlib.h>
#include <string.h>
#include "tallyio/atomic.h"

#define TIO_CACHE_EMPTY UINT32_MAX
/* Keys hashed ahead of use in the bulk lookup, so their slots' cache lines are on the way. */
#define TIO_CACHE_PREFETCH_AHEAD 8

typedef _Atomic uint8_t tio_atomic_u8;

typedef struct {
    uint64_t key;
    uint32_t entry; /* TIO_CACHE_EMPTY: free slot */
    uint32_t pad;
} tio_cache_slot;

typedef struct {
    /* geometry, written only by new/clear: on its own line so that no counter shares it */
    TIO_ALIGNED uint64_t capacity; /* max live entries */
    uint64_t mask;                 /* slots - 1 */
    uint64_t itemsize;
    tio_cache_slot *slots;
    char *values;          /* capacity * itemsize */
    uint64_t *entry_key;   /* key that owns entry i (for eviction) */
    tio_atomic_u8 *ref;    /* CLOCK reference byte of entry i */
    uint32_t *free_list;   /* stack of unused entries */
    /* writer state */
    TIO_ALIGNED uint64_t size;
    uint64_t n_free;
    uint64_t hand;
    uint64_t last_entry; /* entry of the key put last; UINT64_MAX: none */
    uint64_t evictions;
    /* lookups made while holding the GIL: serialized by it, plain increments suffice */
    uint64_t gil_hits, gil_misses, gil_probes;
    /* lookups made without the GIL, possibly from several threads */
    TIO_ALIGNED tio_atomic_u64 hits;
    tio_atomic_u64 misses;
    tio_atomic_u64 probes;
} tio_cache;

/* MurmurHash3's 64-bit finalizer: keys are often small sequential ids or multiples of a power of
 * two, and linear probing needs every key bit to reach the low bits of the hash. */
static inline uint64_t tio_cache_hash(uint64_t k) {
    k ^= k >> 33;
    k *= 0xff51afd7ed558ccdULL;
    k ^= k >> 33;
    k *= 0xc4ceb9fe1a85ec53ULL;
    k ^= k >> 33;
    return k;
}

/* Slots for `capacity` entries at a load factor of at most 1/2 (minimum 4). */
static inline uint64_t tio_cache_slots_for(uint64_t capacity) {
    uint64_t n = 4;
    while (n < 2 * capacity) n <<= 1;
    return n;
}

static inline void tio_cache_free(tio_cache *c) {
    if (c) {
        free(c->slots);
        free(c->values);
        free(c->entry_key);
        free((void *)c->ref);
        free(c->free_list);
        free(c);
    }
}

/* Empty the cache; counters are kept (they count since creation). */
static inline void tio_cache_clear(tio_cache *c) {
    for (uint64_t i = 0; i <= c->mask; i++) c->slots[i].entry = TIO_CACHE_EMPTY;
    /* entry 0 on top, so a fresh cache fills its entries in order (the hand's order) */
    for (uint64_t i = 0; i < c->capacity; i++) c->free_list[i] = (uint32_t)(c->capacity - 1 - i);
    for (uint64_t i = 0; i < c->capacity; i++) atomic_init(&c->ref[i], 0);
    c->size = 0;
    c->n_free = c->capacity;
    c->hand = 0;
    c->last_entry = UINT64_MAX;
}

/* capacity in [1, 2^31) and itemsize >= 1 are checked by the caller, which can raise. NULL on
 * OOM. Records of new keys start zeroed when put without a value. */
static inline tio_cache *tio_cache_new(uint64_t capacity, uint64_t itemsize) {
    tio_cache *c = NULL;
    if (posix_memalign((void **)&c, TIO_CACHELINE, sizeof(tio_cache)) != 0) return NULL;
    memset(c, 0, sizeof(*c));
    uint64_t nslots = tio_cache_slots_for(capacity);
    c->capacity = capacity;
    c->mask = nslots - 1;
    c->itemsize = itemsize;
    if (posix_memalign((void **)&c->slots, TIO_CACHELINE, nslots * sizeof(tio_cache_slot)) != 0)
        c->slots = NULL;
    if (posix_memalign((void **)&c->values, TIO_CACHELINE, capacity * itemsize) != 0)
        c->values = NULL;
    c->entry_key = malloc(capacity * sizeof(uint64_t));
    c->ref = malloc(capacity * sizeof(tio_atomic_u8));
    c->free_list = malloc(capacity * sizeof(uint32_t));
    if (!c->slots || !c->values || !c->entry_key || !c->ref || !c->free_list) {
        tio_cache_free(c);
        return NULL;
    }
    tio_cache_clear(c);
    return c;
}

/* Probe for key. Returns 1 and its slot, or 0 and the empty slot that ends its probe sequence
 * (where it would be inserted). *probes grows by the number of slots inspected. Terminates
 * because at least half the slots are empty. */
static inline int tio_cache_probe(const tio_cache *c, uint64_t key, uint64_t *slot,
                                  uint64_t *probes) {
    uint64_t i = tio_cache_hash(key) & c->mask;
    uint64_t n = 1;
    for (;; i = (i + 1) & c->mask, n++) {
        const tio_cache_slot *s = &c->slots[i];
        if (s->entry == TIO_CACHE_EMPTY) {
            *slot = i;
            *probes += n;
            return 0;
        }
        if (s->key == key) {
            *slot = i;
            *probes += n;
            return 1;
        }
    }
}

static inline char *tio_cache_entry_record(const tio_cache *c, uint32_t entry) {
    return c->values + (uint64_t)entry * c->itemsize;
}

static inline void tio_cache_copy(const tio_cache *c, void *dst, const void *src) {
    if (c->itemsize == 8) /* the int64 cache: one move instead of a memcpy call */
        memcpy(dst, src, 8);
    else
        memcpy(dst, src, c->itemsize);
}

/* A hit: mark the entry referenced. Test first so that hits on a hot entry do not keep writing
 * (and, with several reader threads, bouncing) its cache line. */
static inline void tio_cache_touch(tio_cache *c, uint32_t entry) {
    if (!atomic_load_explicit(&c->ref[entry], memory_order_relaxed))
        atomic_store_explicit(&c->ref[entry], 1, memory_order_relaxed);
}

/* Find without counting or touching (membership tests). NULL when absent. */
static inline char *tio_cache_peek(const tio_cache *c, uint64_t key) {
    uint64_t slot, probes = 0;
    if (!tio_cache_probe(c, key, &slot, &probes)) return NULL;
    return tio_cache_entry_record(c, c->slots[slot].entry);
}

/* Counted lookup for a caller holding the GIL (or otherwise the only thread counting this way). */
static inline char *tio_cache_get_gil(tio_cache *c, uint64_t key) {
    uint64_t slot;
    if (!tio_cache_probe(c, key, &slot, &c->gil_probes)) {
        c->gil_misses++;
        return NULL;
    }
    c->gil_hits++;
    uint32_t e = c->slots[slot].entry;
    tio_cache_touch(c, e);
    return tio_cache_entry_record(c, e);
}

/* Counted lookup from any thread without the GIL: the record, or NULL when absent. */
static inline char *tio_cache_lookup(tio_cache *c, uint64_t key) {
    uint64_t slot, probes = 0;
    int found = tio_cache_probe(c, key, &slot, &probes);
    tio_fetch_add_relaxed(&c->probes, probes);
    if (!found) {
        tio_fetch_add_relaxed(&c->misses, 1);
        return NULL;
    }
    tio_fetch_add_relaxed(&c->hits, 1);
    uint32_t e = c->slots[slot].entry;
    tio_cache_touch(c, e);
    return tio_cache_entry_record(c, e);
}

/* Bulk lookup: copy the record of keys[i] to out + i * itemsize and set found[i] to 1, or zero
 * the record and set found[i] to 0. Counters are summed locally and published once, so reader
 * threads do not contend on them per key. Returns the number of hits. */
static inline uint64_t tio_cache_get_many(tio_cache *c, const uint64_t *keys, uint64_t n,
                                          char *out, uint8_t *found) {
    uint64_t hits = 0, probes = 0, slot;
    for (uint64_t i = 0; i < n; i++) {
        if (i + TIO_CACHE_PREFETCH_AHEAD < n)
            __builtin_prefetch(
                &c->slots[tio_cache_hash(keys[i + TIO_CACHE_PREFETCH_AHEAD]) & c->mask]);
        char *dst = out + i * c->itemsize;
        if (tio_cache_probe(c, keys[i], &slot, &probes)) {
            uint32_t e = c->slots[slot].entry;
            tio_cache_touch(c, e);
            tio_cache_copy(c, dst, tio_cache_entry_record(c, e));
            found[i] = 1;
            hits++;
        } else {
            memset(dst, 0, c->itemsize);
            found[i] = 0;
        }
    }
    tio_fetch_add_relaxed(&c->hits, hits);
    tio_fetch_add_relaxed(&c->misses, n - hits);
    tio_fetch_add_relaxed(&c->probes, probes);
    return hits;
}

/* Backward-shift deletion of the occupied slot i. A slot j after the hole may move into it when
 * its home slot is not in the cyclic range (i, j], i.e. when the hole lies on its probe path. */
static inline void tio_cache_erase_slot(tio_cache *c, uint64_t i) {
    uint64_t j = i;
    for (;;) {
        j = (j + 1) & c->mask;
        if (c->slots[j].entry == TIO_CACHE_EMPTY) break;
        uint64_t home = tio_cache_hash(c->slots[j].key) & c->mask;
        if (((j - home) & c->mask) >= ((j - i) & c->mask)) {
            c->slots[i] = c->slots[j];
            i = j;
        }
    }
    c->slots[i].entry = TIO_CACHE_EMPTY;
}

/* CLOCK: the first entry from the hand whose reference byte is clear, clearing set ones on the
 * way, never the entry put last unless it is the only one. Only called when the cache is full,
 * so every entry is live. */
static inline uint32_t tio_cache_clock_victim(tio_cache *c) {
    for (;;) {
        uint32_t e = (uint32_t)c->hand;
        c->hand = c->hand + 1 == c->capacity ? 0 : c->hand + 1;
        if (!atomic_load_explicit(&c->ref[e], memory_order_relaxed) &&
            (e != c->last_entry || c->capacity == 1))
            return e;
        atomic_store_explicit(&c->ref[e], 0, memory_order_relaxed);
    }
}

/* Writer. Store key -> value (value NULL: keep an existing record, zero a new one) and return the
 * record, which the caller may also write in place. A new key at a full cache evicts one entry
 * first (counted in c->evictions); *evicted (if not NULL) is set to 1 and *evicted_key to its key
 * when that happens, else *evicted is 0. */
static inline char *tio_cache_put(tio_cache *c, uint64_t key, const void *value, int *evicted,
                                  uint64_t *evicted_key) {
    uint64_t slot, probes = 0;
    uint32_t e;
    if (evicted) *evicted = 0;
    if (tio_cache_probe(c, key, &slot, &probes)) {
        e = c->slots[slot].entry;
        tio_cache_touch(c, e);
        c->last_entry = e;
        char *rec = tio_cache_entry_record(c, e);
        if (value) tio_cache_copy(c, rec, value);
        return rec;
    }
    if (c->n_free == 0) {
        e = tio_cache_clock_victim(c);
        uint64_t victim = c->entry_key[e], vslot;
        tio_cache_probe(c, victim, &vslot, &probes); /* present: every live entry has a slot */
        tio_cache_erase_slot(c, vslot);
        c->evictions++;
        c->size--;
        if (evicted) {
            *evicted = 1;
            *evicted_key = victim;
        }
        /* the shift may have moved the end of key's probe sequence */
        tio_cache_probe(c, key, &slot, &probes);
    } else {
        e = c->free_list[--c->n_free];
    }
    c->slots[slot].key = key;
    c->slots[slot].entry = e;
    c->entry_key[e] = key;
    atomic_store_explicit(&c->ref[e], 1, memory_order_relaxed);
    c->last_entry = e;
    c->size++;
    char *rec = tio_cache_entry_record(c, e);
    if (value)
        tio_cache_copy(c, rec, value);
    else
        memset(rec, 0, c->itemsize);
    return rec;
}

/* Writer. put() each row in order (a later duplicate key wins); returns the evictions made. */
static inline uint64_t tio_cache_put_many(tio_cache *c, const uint64_t *keys, const char *values,
                                          uint64_t n) {
    uint64_t before = c->evictions;
    for (uint64_t i = 0; i < n; i++)
        tio_cache_put(c, keys[i], values + i * c->itemsize, NULL, NULL);
    return c->evictions - before;
}

/* Writer. Remove key; 1 (and its record copied to out, if not NULL) when it was present. */
static inline int tio_cache_pop(tio_cache *c, uint64_t key, void *out) {
    uint64_t slot, probes = 0;
    if (!tio_cache_probe(c, key, &slot, &probes)) return 0;
    uint32_t e = c->slots[slot].entry;
    if (out) tio_cache_copy(c, out, tio_cache_entry_record(c, e));
    tio_cache_erase_slot(c, slot);
    atomic_store_explicit(&c->ref[e], 0, memory_order_relaxed);
    c->free_list[c->n_free++] = e;
    c->size--;
    return 1;
}

/* The longest probe sequence any present key needs now (0 when empty): a scan, for stats(). */
static inline uint64_t tio_cache_max_probe(const tio_cache *c) {
    uint64_t worst = 0;
    for (uint64_t i = 0; i <= c->mask; i++) {
        if (c->slots[i].entry == TIO_CACHE_EMPTY) continue;
        uint64_t d = ((i - (tio_cache_hash(c->slots[i].key) & c->mask)) & c->mask) + 1;
        if (d > worst) worst = d;
    }
    return worst;
}

/* Copy the present keys (c->size of them, in slot order) to out; returns how many. */
static inline uint64_t tio_cache_keys(const tio_cache *c, uint64_t *out) {
    uint64_t n = 0;
    for (uint64_t i = 0; i <= c->mask; i++)
        if (c->slots[i].entry != TIO_CACHE_EMPTY) out[n++] = c->slots[i].key;
    return n;
}

static inline uint64_t tio_cache_hits(tio_cache *c) {
    return c->gil_hits + tio_load_relaxed(&c->hits);
}
static inline uint64_t tio_cache_misses(tio_cache *c) {
    return c->gil_misses + tio_load_relaxed(&c->misses);
}
static inline uint64_t tio_cache_probes(tio_cache *c) {
    return c->gil_probes + tio_load_relaxed(&c->probes);
}
