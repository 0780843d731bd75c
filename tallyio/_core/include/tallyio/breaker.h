/* Circuit-breaker state machine in C atomics: may-I-call (acquire) and the outcome (record) take
 * no lock, so compiled nogil loops guard themselves with two inline calls.
 *
 * Everything a transition must change together lives in one 64-bit word, changed by CAS:
 *   bits 0-2   state (closed, open, half-open, forced-open, disabled)
 *   bits 3-14  trial calls in flight (half-open)
 *   bits 15-26 trial successes (half-open)
 *   bits 27-63 transition sequence number (37 bits, wraps; compared modulo)
 * A CAS that changes the state bumps the sequence, so exactly one thread wins each transition and
 * the transitions are totally ordered by their sequence numbers. The winner writes the event
 * (old, new, seq) into a small log that Python drains to call listeners, in order, off the hot path.
 *
 * The closed-state rules read a sliding window (count-based: the last N outcomes in a ring of slots;
 * time-based: TIO_BRK_BUCKETS buckets spanning the window) whose aggregates are kept by the same
 * exchange that changes a slot, so sum(slots) == aggregates holds under any interleaving. Counts
 * that only reset on a transition (consecutive failures, the window) are cleared by the thread that
 * closes the breaker *before* its CAS, while no closed-state recorder should be touching them; a
 * recorder that raced the opening CAS can leave one stale outcome behind, which only ever makes
 * the breaker more cautious. Lifetime totals are exact.
 */
#pragma once
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "tallyio/atomic.h"
#include "tallyio/hist.h"

#define TIO_BRK_CLOSED 0
#define TIO_BRK_OPEN 1
#define TIO_BRK_HALF_OPEN 2
#define TIO_BRK_FORCED_OPEN 3
#define TIO_BRK_DISABLED 4

/* acquire/record result bits */
#define TIO_BRK_PERMIT 1
#define TIO_BRK_TRANSITION 2 /* this call made a transition: its event is in the log */
#define TIO_BRK_UPDATE_DUE 4 /* a latency-threshold window is complete: run the policy */

#define TIO_BRK_WINDOW_COUNT 0
#define TIO_BRK_WINDOW_TIME 1
#define TIO_BRK_BUCKETS 10
#define TIO_BRK_LOG 64

#define TIO_BRK_TRIAL_SHIFT 3
#define TIO_BRK_HSUCC_SHIFT 15
#define TIO_BRK_SEQ_SHIFT 27
#define TIO_BRK_FIELD_MAX 4095ull
#define TIO_BRK_SEQ_MASK ((1ull << (64 - TIO_BRK_SEQ_SHIFT)) - 1)

/* count-window slot bits */
#define TIO_BRK_S_CALL 1ull
#define TIO_BRK_S_FAIL 2ull
#define TIO_BRK_S_SLOW 4ull

typedef struct {
    /* Configuration: written once before the breaker is shared, read-only afterwards. */
    uint64_t timeout_ns;
    uint64_t failure_threshold;   /* consecutive failures; UINT64_MAX turns the rule off */
    uint64_t violation_threshold; /* slow calls in the window; UINT64_MAX turns it off */
    uint64_t success_threshold;
    uint64_t half_open_max;
    uint64_t minimum_calls;
    double failure_rate; /* fraction of the window; INFINITY turns the rule off */
    double slow_rate;
    int window_type;
    uint64_t window_size; /* count window: outcomes kept */
    uint64_t bucket_ns;   /* time window: width of one of TIO_BRK_BUCKETS buckets */
    uint64_t update_every;       /* successful calls per threshold window; UINT64_MAX: none */
    uint64_t update_interval_ns; /* 0: no time cut-off */
    tio_atomic_u64 *slots;       /* count: window_size slots; time: 3 counters per bucket */
    tio_hist *hist[2];           /* latency windows of successful calls, alternating */

    TIO_ALIGNED tio_atomic_u64 word;
    tio_atomic_u64 open_until;
    tio_atomic_u64 threshold_ns;

    TIO_ALIGNED tio_atomic_u64 permitted;
    tio_atomic_u64 rejected;

    TIO_ALIGNED tio_atomic_u64 successes;
    tio_atomic_u64 failures;
    tio_atomic_u64 slow;
    tio_atomic_u64 consec;

    TIO_ALIGNED tio_atomic_u64 w_cursor;
    tio_atomic_u64 w_n;
    tio_atomic_u64 w_f;
    tio_atomic_u64 w_s;
    tio_atomic_u64 w_epoch;

    TIO_ALIGNED tio_atomic_u64 hist_idx;
    tio_atomic_u64 win_calls;
    tio_atomic_u64 next_update;
    tio_atomic_u64 update_due;

    TIO_ALIGNED tio_atomic_u64 log[TIO_BRK_LOG];
} tio_breaker;

static inline uint64_t tio_brk_state_of(uint64_t w) { return w & 7u; }
static inline uint64_t tio_brk_trials_of(uint64_t w) {
    return (w >> TIO_BRK_TRIAL_SHIFT) & TIO_BRK_FIELD_MAX;
}
static inline uint64_t tio_brk_hsucc_of(uint64_t w) {
    return (w >> TIO_BRK_HSUCC_SHIFT) & TIO_BRK_FIELD_MAX;
}
static inline uint64_t tio_brk_seq_of(uint64_t w) { return w >> TIO_BRK_SEQ_SHIFT; }
static inline uint64_t tio_brk__word(uint64_t seq, uint64_t state, uint64_t trials,
                                     uint64_t hsucc) {
    return ((seq & TIO_BRK_SEQ_MASK) << TIO_BRK_SEQ_SHIFT) | (hsucc << TIO_BRK_HSUCC_SHIFT) |
           (trials << TIO_BRK_TRIAL_SHIFT) | state;
}

/* Defaults every rule off except what the caller configures; NULL when out of memory. */
static inline tio_breaker *tio_brk_new(void) {
    void *p = NULL;
    if (posix_memalign(&p, TIO_CACHELINE, sizeof(tio_breaker))) return NULL;
    tio_breaker *b = (tio_breaker *)p;
    memset(p, 0, sizeof(tio_breaker));
    b->failure_threshold = UINT64_MAX;
    b->violation_threshold = UINT64_MAX;
    b->success_threshold = 1;
    b->half_open_max = 1;
    b->minimum_calls = 1;
    b->failure_rate = INFINITY;
    b->slow_rate = INFINITY;
    b->update_every = UINT64_MAX;
    atomic_store_explicit(&b->threshold_ns, UINT64_MAX, memory_order_relaxed);
    atomic_store_explicit(&b->next_update, UINT64_MAX, memory_order_relaxed);
    return b;
}

/* Allocates the window (replacing any earlier one); -1 when out of memory, the old window kept.
 * Call before sharing the breaker. size >= 1 for a count window, bucket_ns >= 1 for a time one
 * (they are divisors on every record). */
static inline int tio_brk_set_window(tio_breaker *b, int type, uint64_t size, uint64_t bucket_ns) {
    uint64_t n = type == TIO_BRK_WINDOW_COUNT ? size : 3 * TIO_BRK_BUCKETS;
    tio_atomic_u64 *slots = (tio_atomic_u64 *)calloc(n, sizeof(tio_atomic_u64));
    if (!slots) return -1;
    free((void *)b->slots);
    b->slots = slots;
    b->window_type = type;
    b->window_size = size;
    b->bucket_ns = bucket_ns;
    return 0;
}

static inline void tio_brk_free(tio_breaker *b) {
    if (!b) return;
    free((void *)b->slots);
    free(b);
}

static inline uint64_t tio_brk__sat_add(uint64_t a, uint64_t b) {
    return a > UINT64_MAX - b ? UINT64_MAX : a + b;
}

/* Moves *w to `state` as a new transition. On failure *w holds the current word. */
static inline int tio_brk__transition(tio_breaker *b, uint64_t *w, uint64_t state, uint64_t trials) {
    uint64_t old = tio_brk_state_of(*w);
    uint64_t seq = (tio_brk_seq_of(*w) + 1) & TIO_BRK_SEQ_MASK;
    if (!tio_cas_acq_rel(&b->word, w, tio_brk__word(seq, state, trials, 0))) return 0;
    tio_store_release(&b->log[seq % TIO_BRK_LOG], (seq << 6) | (state << 3) | old);
    return 1;
}

/* ---- sliding window --------------------------------------------------------------------- */

static inline void tio_brk__agg_add(tio_atomic_u64 *p, int64_t d) {
    tio_fetch_add_relaxed(p, (uint64_t)d);
}

static inline void tio_brk__slot_delta(tio_breaker *b, uint64_t old, uint64_t now) {
    if (old == now) return;
    if ((old ^ now) & TIO_BRK_S_CALL) tio_brk__agg_add(&b->w_n, (now & TIO_BRK_S_CALL) ? 1 : -1);
    if ((old ^ now) & TIO_BRK_S_FAIL) tio_brk__agg_add(&b->w_f, (now & TIO_BRK_S_FAIL) ? 1 : -1);
    if ((old ^ now) & TIO_BRK_S_SLOW) tio_brk__agg_add(&b->w_s, (now & TIO_BRK_S_SLOW) ? 1 : -1);
}

static inline void tio_brk__bucket_clear(tio_breaker *b, uint64_t i) {
    tio_atomic_u64 *c = &b->slots[3 * i];
    tio_brk__agg_add(&b->w_n, -(int64_t)tio_exchange_acq_rel(&c[0], 0));
    tio_brk__agg_add(&b->w_f, -(int64_t)tio_exchange_acq_rel(&c[1], 0));
    tio_brk__agg_add(&b->w_s, -(int64_t)tio_exchange_acq_rel(&c[2], 0));
}

/* Rolls the time window forward to bucket epoch e; returns the newest epoch. A recorder that lands
 * in a bucket between the roll's CAS and its clearing loses that outcome from the window (not from
 * the totals): the price of not locking a once-per-bucket event. */
static inline uint64_t tio_brk__advance(tio_breaker *b, uint64_t e) {
    uint64_t cur = tio_load_acquire(&b->w_epoch);
    while (e > cur) {
        if (tio_cas_acq_rel(&b->w_epoch, &cur, e)) {
            uint64_t from = e - cur >= TIO_BRK_BUCKETS ? e - TIO_BRK_BUCKETS + 1 : cur + 1;
            for (uint64_t k = from; k <= e; k++) tio_brk__bucket_clear(b, k % TIO_BRK_BUCKETS);
            return e;
        }
    }
    return cur;
}

static inline void tio_brk__window_add(tio_breaker *b, uint64_t now, uint64_t bits) {
    if (b->window_type == TIO_BRK_WINDOW_COUNT) {
        uint64_t i = tio_fetch_add_relaxed(&b->w_cursor, 1) % b->window_size;
        tio_brk__slot_delta(b, tio_exchange_acq_rel(&b->slots[i], bits), bits);
        return;
    }
    uint64_t e = now / b->bucket_ns;
    if (e + TIO_BRK_BUCKETS <= tio_brk__advance(b, e)) return; /* a stamp older than the window */
    tio_atomic_u64 *c = &b->slots[3 * (e % TIO_BRK_BUCKETS)];
    tio_fetch_add_relaxed(&c[0], 1);
    tio_brk__agg_add(&b->w_n, 1);
    if (bits & TIO_BRK_S_FAIL) {
        tio_fetch_add_relaxed(&c[1], 1);
        tio_brk__agg_add(&b->w_f, 1);
    }
    if (bits & TIO_BRK_S_SLOW) {
        tio_fetch_add_relaxed(&c[2], 1);
        tio_brk__agg_add(&b->w_s, 1);
    }
}

/* An aggregate can dip below zero for an instant when two exchanges on one slot apply their
 * deltas out of order; read it as zero then. */
static inline uint64_t tio_brk__agg(tio_atomic_u64 *p) {
    int64_t v = (int64_t)tio_load_relaxed(p);
    return v < 0 ? 0 : (uint64_t)v;
}

static inline uint64_t tio_brk_window_calls(tio_breaker *b) { return tio_brk__agg(&b->w_n); }
static inline uint64_t tio_brk_window_failures(tio_breaker *b) { return tio_brk__agg(&b->w_f); }
static inline uint64_t tio_brk_window_slow(tio_breaker *b) { return tio_brk__agg(&b->w_s); }

/* Expires time buckets up to `now` so that a reader sees the window as of now. */
static inline void tio_brk_advance(tio_breaker *b, uint64_t now) {
    if (b->window_type == TIO_BRK_WINDOW_TIME) tio_brk__advance(b, now / b->bucket_ns);
}

static inline void tio_brk__clear_closed(tio_breaker *b) {
    if (b->window_type == TIO_BRK_WINDOW_COUNT) {
        for (uint64_t i = 0; i < b->window_size; i++)
            tio_brk__slot_delta(b, tio_exchange_acq_rel(&b->slots[i], 0), 0);
    } else {
        for (uint64_t i = 0; i < TIO_BRK_BUCKETS; i++) tio_brk__bucket_clear(b, i);
    }
    tio_store_relaxed(&b->consec, 0);
}

static inline int tio_brk__trips(tio_breaker *b) {
    uint64_t n = tio_brk__agg(&b->w_n), f = tio_brk__agg(&b->w_f), s = tio_brk__agg(&b->w_s);
    if (s >= b->violation_threshold) return 1;
    if (n >= b->minimum_calls) {
        /* Rates at or above the threshold open the breaker, as in resilience4j. */
        if ((double)f >= b->failure_rate * (double)n) return 1;
        if ((double)s >= b->slow_rate * (double)n) return 1;
    }
    return 0;
}

/* ---- the two per-call entry points ------------------------------------------------------ */

/* May a call start at `now`? TIO_BRK_PERMIT (| TIO_BRK_TRANSITION when this call moved an expired
 * open breaker to half-open), or 0 when refused. Every call is counted as permitted or rejected. */
static inline int tio_brk_acquire(tio_breaker *b, uint64_t now) {
    uint64_t w = tio_load_acquire(&b->word);
    for (;;) {
        switch (tio_brk_state_of(w)) {
        case TIO_BRK_CLOSED:
        case TIO_BRK_DISABLED:
            tio_fetch_add_relaxed(&b->permitted, 1);
            return TIO_BRK_PERMIT;
        case TIO_BRK_OPEN:
            /* open_until was stored before the CAS that opened it; the acquire load of the word
             * makes it visible here. */
            if (now < tio_load_relaxed(&b->open_until)) goto reject;
            if (tio_brk__transition(b, &w, TIO_BRK_HALF_OPEN, 1)) {
                tio_fetch_add_relaxed(&b->permitted, 1);
                return TIO_BRK_PERMIT | TIO_BRK_TRANSITION;
            }
            continue;
        case TIO_BRK_HALF_OPEN:
            if (tio_brk_trials_of(w) >= b->half_open_max) goto reject;
            if (tio_cas_acq_rel(&b->word, &w, w + (1ull << TIO_BRK_TRIAL_SHIFT))) {
                tio_fetch_add_relaxed(&b->permitted, 1);
                return TIO_BRK_PERMIT;
            }
            continue;
        default:
            goto reject;
        }
    }
reject:
    tio_fetch_add_relaxed(&b->rejected, 1);
    return 0;
}

/* The outcome of a permitted call that ended at `now` after `latency_ns`. An outcome is judged by
 * the state at the time it is recorded (as resilience4j does): in half-open any outcome is a
 * trial's. Returns TIO_BRK_TRANSITION and/or TIO_BRK_UPDATE_DUE bits, 0 usually. */
static inline int tio_brk_record(tio_breaker *b, uint64_t now, uint64_t latency_ns, int ok) {
    int flags = 0;
    int slow = latency_ns > tio_load_relaxed(&b->threshold_ns);
    if (ok) {
        tio_fetch_add_relaxed(&b->successes, 1);
        tio_hist_record(b->hist[tio_load_acquire(&b->hist_idx) & 1], latency_ns);
        uint64_t c = tio_fetch_add_relaxed(&b->win_calls, 1) + 1;
        if ((c >= b->update_every || now >= tio_load_relaxed(&b->next_update)) &&
            !tio_load_relaxed(&b->update_due) && !tio_exchange_acq_rel(&b->update_due, 1))
            flags |= TIO_BRK_UPDATE_DUE;
    } else {
        tio_fetch_add_relaxed(&b->failures, 1);
    }
    if (slow) tio_fetch_add_relaxed(&b->slow, 1);

    uint64_t w = tio_load_acquire(&b->word);
    for (;;) {
        switch (tio_brk_state_of(w)) {
        case TIO_BRK_CLOSED: {
            int trip = 0;
            if (!ok) {
                trip = tio_fetch_add_relaxed(&b->consec, 1) + 1 >= b->failure_threshold;
            } else if (tio_load_relaxed(&b->consec)) {
                tio_store_relaxed(&b->consec, 0);
            }
            tio_brk__window_add(b, now, TIO_BRK_S_CALL | (ok ? 0 : TIO_BRK_S_FAIL) |
                                            (slow ? TIO_BRK_S_SLOW : 0));
            if (!trip && !tio_brk__trips(b)) return flags;
            tio_store_relaxed(&b->open_until, tio_brk__sat_add(now, b->timeout_ns));
            /* A lost CAS means another outcome already moved the breaker on. */
            return tio_brk__transition(b, &w, TIO_BRK_OPEN, 0) ? flags | TIO_BRK_TRANSITION : flags;
        }
        case TIO_BRK_HALF_OPEN: {
            uint64_t t = tio_brk_trials_of(w), h = tio_brk_hsucc_of(w) + 1;
            if (!ok || slow) {
                tio_store_relaxed(&b->open_until, tio_brk__sat_add(now, b->timeout_ns));
                if (tio_brk__transition(b, &w, TIO_BRK_OPEN, 0)) return flags | TIO_BRK_TRANSITION;
                continue;
            }
            if (h >= b->success_threshold) {
                tio_brk__clear_closed(b);
                if (tio_brk__transition(b, &w, TIO_BRK_CLOSED, 0)) return flags | TIO_BRK_TRANSITION;
                continue;
            }
            /* An outcome of a call admitted before the breaker opened also frees a slot; never
             * below zero. */
            if (tio_cas_acq_rel(&b->word, &w,
                                tio_brk__word(tio_brk_seq_of(w), TIO_BRK_HALF_OPEN, t ? t - 1 : 0, h)))
                return flags;
            continue;
        }
        default: /* open, forced open, disabled: the totals above are all it changes */
            return flags;
        }
    }
}

/* Operator transitions: to closed (reset: also clears the window), forced open, disabled.
 * TIO_BRK_TRANSITION when the state changed. */
static inline int tio_brk_force(tio_breaker *b, uint64_t state) {
    uint64_t w = tio_load_acquire(&b->word);
    for (;;) {
        if (state == TIO_BRK_CLOSED) tio_brk__clear_closed(b);
        if (tio_brk_state_of(w) == state) return 0;
        if (tio_brk__transition(b, &w, state, 0)) return TIO_BRK_TRANSITION;
    }
}

/* ---- latency-threshold windows ---------------------------------------------------------- */

/* Starts a new latency window; returns the index of the completed one in b->hist. One caller at a
 * time (the Python layer serialises policy updates). */
static inline uint64_t tio_brk_rotate(tio_breaker *b, uint64_t now) {
    uint64_t i = tio_load_relaxed(&b->hist_idx);
    /* Cleared before it is published so no recorder that loads the new index sees old counts. */
    tio_hist_reset(b->hist[(i + 1) & 1]);
    tio_store_release(&b->hist_idx, i + 1);
    tio_store_relaxed(&b->win_calls, 0);
    tio_store_relaxed(&b->next_update, b->update_interval_ns
                                           ? tio_brk__sat_add(now, b->update_interval_ns)
                                           : UINT64_MAX);
    tio_store_release(&b->update_due, 0);
    return i & 1;
}

/* The logged event of transition number `seq`: old | new << 3 | seq << 6. */
static inline uint64_t tio_brk_log_at(tio_breaker *b, uint64_t seq) {
    return tio_load_acquire(&b->log[seq % TIO_BRK_LOG]);
}

/* ---- readers for the Python layer (Cython cannot spell the _Atomic members) ------------- */

static inline uint64_t tio_brk_word(tio_breaker *b) { return tio_load_acquire(&b->word); }
static inline uint64_t tio_brk_open_until(tio_breaker *b) { return tio_load_relaxed(&b->open_until); }
static inline uint64_t tio_brk_threshold(tio_breaker *b) { return tio_load_relaxed(&b->threshold_ns); }
static inline void tio_brk_set_threshold(tio_breaker *b, uint64_t ns) {
    tio_store_relaxed(&b->threshold_ns, ns);
}
static inline uint64_t tio_brk_hist_idx(tio_breaker *b) { return tio_load_acquire(&b->hist_idx) & 1; }
static inline int tio_brk_update_due(tio_breaker *b) { return (int)tio_load_acquire(&b->update_due); }

typedef struct {
    uint64_t permitted, rejected, successes, failures, slow, consec;
} tio_brk_counts;

static inline void tio_brk_counts_of(tio_breaker *b, tio_brk_counts *c) {
    c->permitted = tio_load_relaxed(&b->permitted);
    c->rejected = tio_load_relaxed(&b->rejected);
    c->successes = tio_load_relaxed(&b->successes);
    c->failures = tio_load_relaxed(&b->failures);
    c->slow = tio_load_relaxed(&b->slow);
    c->consec = tio_load_relaxed(&b->consec);
}
