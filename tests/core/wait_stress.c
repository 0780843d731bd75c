/* Standalone stress of ring.h + drain.h with a parking consumer, for the sanitizers:
 *
 *   gcc -std=gnu11 -O1 -g -fsanitize=thread -I tallyio/_core/include tests/core/wait_stress.c \
 *       -o /tmp/wait_stress -lpthread && /tmp/wait_stress mpmc && /tmp/wait_stress spsc
 *   (and -fsanitize=address,undefined; TALLYIO_NO_MEMBARRIER=1 for the fence fallback)
 *
 * P producers push N rows each (bulk and single, random pauses), one consumer drains with
 * tio_drain (spin 0, backoff 0: it parks whenever the ring is empty; park slice 1 h, so a lost
 * wake-up hangs). Counts and sums every row; SPSC also checks the order. Exit status 0: all in,
 * all out. TSan warns that it cannot model atomic_thread_fence (the fallback's fences): expected. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include "tallyio/drain.h"

#define N 200000
static tio_ring *ring;
static int P;

static void *produce(void *arg) {
    long p = (long)arg;
    unsigned seed = (unsigned)p * 7919u + 1;
    int64_t buf[64];
    long i = 0;
    while (i < N) {
        int k = 1 + rand_r(&seed) % 64;
        if (i + k > N) k = (int)(N - i);
        for (int j = 0; j < k; j++) buf[j] = p * N + i + j + 1;
        if (k == 1) {
            while (!tio_ring_push(ring, buf)) sched_yield();
        } else {
            int done = 0;
            while (done < k) { done += (int)tio_ring_push_many(ring, buf + done, k - done); if (done < k) sched_yield(); }
        }
        i += k;
        if (rand_r(&seed) % 100 == 0) { struct timespec ts = {0, 100000}; nanosleep(&ts, NULL); }
    }
    return NULL;
}

int main(int argc, char **argv) {
    int kind = argc > 1 && argv[1][0] == 's' ? TIO_RING_SPSC : TIO_RING_MPMC;
    P = kind == TIO_RING_SPSC ? 1 : 3;
    ring = tio_ring_new(256, 8, kind);
    tio_drain_policy pol = {0, 3600ull * 1000000000ull, 0, 0, 0, 1, 3600ull * 1000000000ull};
    tio_drain_state st = {0};
    pthread_t t[8];
    for (long p = 0; p < P; p++) pthread_create(&t[p], NULL, produce, (void *)p);
    int64_t out[128];
    uint64_t total = 0, want = (uint64_t)P * N;
    unsigned __int128 sum = 0;
    int64_t last = 0; int ordered = 1;
    while (total < want) {
        int how;
        uint64_t k = tio_drain(ring, (char *)out, 128, &pol, &st, &how);
        for (uint64_t j = 0; j < k; j++) { sum += (uint64_t)out[j]; if (out[j] <= last) ordered = 0; last = out[j]; }
        total += k;
    }
    for (int p = 0; p < P; p++) pthread_join(t[p], NULL);
    unsigned __int128 n = want, expect = n * (n + 1) / 2;
    printf("%s asym=%d rows %llu sum ok %d ordered %d parks %llu wakes %llu\n", kind == TIO_RING_SPSC ? "spsc" : "mpmc", ring->asym,
           (unsigned long long)total, sum == expect, kind == TIO_RING_MPMC || ordered,
           (unsigned long long)tio_ring_parks(ring), (unsigned long long)tio_ring_wakes(ring));
    return !(total == want && sum == expect);
}
