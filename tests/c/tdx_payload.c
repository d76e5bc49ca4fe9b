/* A TDX payload for tests/keep/test_tdx.py, built with the shipped attestcall.h.
 *   tdx_payload one SEED OUT      one call; the quote to OUT
 *   tdx_payload threads OUTDIR    8 threads at once, each with nonce seed = its number,
 *                                 each writing OUTDIR/tN.bin
 * A nonce with seed S is the 64 bytes S, S+1, ..., S+63 (mod 256). Every call must answer
 * technology 4 (TDX) and exactly the size the size query gave. */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <attestcall.h>

#include "attest_to_file.h"

static int attest_to(unsigned seed, const char *out)
{
    unsigned char nonce[ATTESTCALL_NONCE_SIZE];
    seeded_nonce(nonce, seed);
    return attest_to_file(nonce, ATTESTCALL_TECH_TDX, out);
}

static const char *outdir;

static void *thread_main(void *arg)
{
    unsigned seed = (unsigned)(size_t)arg;
    char path[4096];
    snprintf(path, sizeof path, "%s/t%u.bin", outdir, seed);
    return (void *)(size_t)attest_to(seed, path);
}

int main(int argc, char **argv)
{
    if (argc == 4 && !strcmp(argv[1], "one"))
        return attest_to((unsigned)strtoul(argv[2], NULL, 0), argv[3]);
    if (argc == 3 && !strcmp(argv[1], "threads")) {
        pthread_t threads[8];
        outdir = argv[2];
        for (size_t i = 0; i < 8; i++)
            if (pthread_create(&threads[i], NULL, thread_main, (void *)(i + 1)))
                return 1;
        int failed = 0;
        for (int i = 0; i < 8; i++) {
            void *ret;
            pthread_join(threads[i], &ret);
            failed |= ret != NULL;
        }
        return failed;
    }
    fprintf(stderr, "usage: see the comment at the top of tdx_payload.c\n");
    return 2;
}
