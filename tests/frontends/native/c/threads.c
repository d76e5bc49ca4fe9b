/* 8 threads call get_attestation concurrently, each with its own nonce, many times.
 * Each checks its evidence carries its own nonce and prints its last evidence in hex:
 * "thread <k> seed=<seed> calls_ok=<n> evidence=<hex>". Exit status 0 when all passed. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "attest.h"

#define THREADS 8
#define CALLS 25

static pthread_barrier_t start;
static pthread_mutex_t out = PTHREAD_MUTEX_INITIALIZER;
static long size;

static void *worker(void *arg)
{
    unsigned k = (unsigned)(unsigned long)arg;
    unsigned seed = 0x20 + 16 * k;
    unsigned char nonce[NONCE_SIZE];
    fill_nonce(nonce, seed);
    unsigned char *buf = malloc((size_t)size);
    int ok = 0;
    pthread_barrier_wait(&start);
    for (int i = 0; i < CALLS; i++) {
        unsigned long rdx;
        memset(buf, 0, (size_t)size);
        long ret = attest(nonce, NONCE_SIZE, buf, (unsigned long)size, &rdx);
        if (ret == size && rdx == 2 && !memcmp(buf, "EVIDENCE", 8) &&
            !memcmp(buf + 8, nonce, NONCE_SIZE))
            ok++;
    }
    pthread_mutex_lock(&out);
    printf("thread %u seed=%u calls_ok=%d evidence=", k, seed, ok);
    for (long i = 0; i < size; i++)
        printf("%02x", buf[i]);
    printf("\n");
    pthread_mutex_unlock(&out);
    free(buf);
    return (void *)(long)(ok == CALLS);
}

int main(void)
{
    unsigned long rdx;
    size = attest(NULL, 0, NULL, 0, &rdx);
    if (size <= 0) {
        printf("size query failed: %ld\n", size);
        return 3;
    }
    pthread_t threads[THREADS];
    pthread_barrier_init(&start, NULL, THREADS);
    for (unsigned long k = 0; k < THREADS; k++)
        pthread_create(&threads[k], NULL, worker, (void *)k);
    int all = 1;
    for (int k = 0; k < THREADS; k++) {
        void *good;
        pthread_join(threads[k], &good);
        all &= good != NULL;
    }
    return all ? 0 : 1;
}
