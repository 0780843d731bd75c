/* Wake-up cost of the drain's wait policy in C, without Python: producer push -> the consumer's
 * tio_drain returns with the row. The Python-level peer is measure_wake.py.
 *
 *   gcc -std=gnu11 -O2 -I tallyio/_core/include tests/core/measure_wake.c -o /tmp/measure_wake \
 *       -lpthread && /tmp/measure_wake [samples=5000] [gap_us=2000]
 *
 * A producer thread pushes one row (its tio_now_ns() stamp) every gap_us; the consumer drains
 * batches of one and records now - stamp. Policies as in measure_wake.py: park at once, the
 * defaults (spin 50 us, back off 1 ms, park), back off with sched_yield for ever, spin for ever.
 * Threads are pinned to CPUs 0 and 1. Not a test: it measures time. */
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include "tallyio/drain.h"

static tio_ring *ring;
static int samples;
static uint64_t gap_ns;

static void pin(int cpu) {
    cpu_set_t s;
    CPU_ZERO(&s);
    CPU_SET(cpu, &s);
    pthread_setaffinity_np(pthread_self(), sizeof s, &s);
}

static void *produce(void *arg) {
    (void)arg;
    pin(0);
    for (int i = 0; i < samples; i++) {
        struct timespec ts = {0, (long)gap_ns};
        nanosleep(&ts, NULL);
        int64_t stamp = (int64_t)tio_now_ns();
        while (!tio_ring_push(ring, &stamp)) {
        }
    }
    return NULL;
}

static int cmp(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static void run(const char *name, tio_drain_policy pol) {
    ring = tio_ring_new(1024, 8, TIO_RING_SPSC);
    uint64_t *lat = malloc(sizeof(uint64_t) * (size_t)samples);
    tio_drain_state st = {0};
    struct timespec c0, c1;
    pthread_t t;
    pin(1);
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &c0);
    pthread_create(&t, NULL, produce, NULL);
    for (int got = 0; got < samples;) {
        int64_t row;
        int how;
        if (tio_drain(ring, (char *)&row, 1, &pol, &st, &how)) {
            uint64_t now = tio_now_ns();
            lat[got++] = now > (uint64_t)row ? now - (uint64_t)row : 0;
        }
    }
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &c1);
    pthread_join(t, NULL);
    qsort(lat, (size_t)samples, sizeof *lat, cmp);
    double cpu = (double)(c1.tv_sec - c0.tv_sec) + (double)(c1.tv_nsec - c0.tv_nsec) / 1e9;
    printf("%-44s %8.2f %8.2f %8.2f  %10.0f %%\n", name, lat[samples / 2] / 1e3,
           lat[(size_t)(samples * 0.99)] / 1e3, lat[samples - 1] / 1e3,
           100 * cpu / (samples * gap_ns / 1e9));
    free(lat);
    tio_ring_free(ring);
}

int main(int argc, char **argv) {
    samples = argc > 1 ? atoi(argv[1]) : 5000;
    gap_ns = (uint64_t)(argc > 2 ? atoi(argv[2]) : 2000) * 1000;
    uint64_t forever = 3600ull * 1000000000ull;
    printf("%d samples, a push every %.0f us; membarrier: %d\n", samples, gap_ns / 1e3,
           tio_membarrier_init());
    printf("%-44s %8s %8s %8s  %12s\n", "policy", "p50 us", "p99 us", "max us", "consumer CPU");
    /* batch_timeout, idle_timeout, spin, sleep, backoff, park, park_slice */
    run("park (spin=0, backoff=0)", (tio_drain_policy){0, forever, 0, 0, 0, 1, 0});
    run("park (defaults: spin 50 us, backoff 1 ms)", (tio_drain_policy){0, forever, 50000, 0, 1000000, 1, 0});
    run("yield (spin=0, park=False)", (tio_drain_policy){0, forever, 0, 0, 0, 0, 0});
    run("spin (spin for ever)", (tio_drain_policy){0, forever, forever, 0, 0, 0, 0});
    return 0;
}
