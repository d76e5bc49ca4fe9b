/* A payload for the snp-sim front-end tests, built with the shipped attestcall.h.
 *   snp_threads OUTDIR     8 threads call get_attestation at once, each with its own
 *                          nonce (64 bytes seed, seed+1, ... with seed = thread number
 *                          1..8), and write the evidence to OUTDIR/t<seed>.bin.
 * Exits 0 only if every thread got SNP evidence of the size-query size. */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <attestcall.h>

#include "attest_to_file.h"

#define THREADS 8

static const char *outdir;
static pthread_barrier_t start;

static void *thread_main(void *arg)
{
    unsigned seed = (unsigned)(size_t)arg;
    unsigned char nonce[ATTESTCALL_NONCE_SIZE];
    seeded_nonce(nonce, seed);
    char path[4096];
    snprintf(path, sizeof path, "%s/t%u.bin", outdir, seed);
    pthread_barrier_wait(&start);
    return attest_to_file(nonce, ATTESTCALL_TECH_SNP, path) ? (void *)1 : NULL;
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: snp_threads OUTDIR\n");
        return 2;
    }
    outdir = argv[1];
    pthread_t threads[THREADS];
    pthread_barrier_init(&start, NULL, THREADS);
    for (size_t i = 0; i < THREADS; i++)
        if (pthread_create(&threads[i], NULL, thread_main, (void *)(i + 1)))
            return 1;
    int failed = 0;
    for (int i = 0; i < THREADS; i++) {
        void *ret;
        pthread_join(threads[i], &ret);
        failed |= ret != NULL;
    }
    return failed;
}
