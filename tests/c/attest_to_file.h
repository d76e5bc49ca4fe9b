/* Shared by the end-to-end C payloads (include after <attestcall.h>): one get_attestation
 * as a payload makes it, a size query then the call, the technology checked both times,
 * the evidence written to a file. */
#ifndef ATTEST_TO_FILE_H
#define ATTEST_TO_FILE_H

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The nonce of seed S: the 64 bytes S, S+1, ..., S+63 (mod 256). */
static inline void seeded_nonce(unsigned char nonce[ATTESTCALL_NONCE_SIZE], unsigned seed)
{
    for (int i = 0; i < ATTESTCALL_NONCE_SIZE; i++)
        nonce[i] = (unsigned char)(seed + i);
}

/* 0 when both calls answered technology `want` and exactly the queried size, and the
 * evidence is in `out`; 1 otherwise, with a line on stderr. */
static inline int attest_to_file(const unsigned char nonce[ATTESTCALL_NONCE_SIZE], size_t want,
                                 const char *out)
{
    size_t technology = 99;
    ssize_t size = get_attestation(NULL, 0, NULL, 0, &technology);
    if (size <= 0 || technology != want) {
        fprintf(stderr, "size query: %zd tech %zu %s\n", size, technology, strerror(errno));
        return 1;
    }
    unsigned char *buf = malloc((size_t)size);
    if (buf == NULL)
        return 1;
    technology = 99;
    ssize_t n = get_attestation(nonce, ATTESTCALL_NONCE_SIZE, buf, (size_t)size, &technology);
    if (n != size || technology != want) {
        fprintf(stderr, "call: %zd tech %zu %s\n", n, technology, strerror(errno));
        free(buf);
        return 1;
    }
    FILE *f = fopen(out, "wb");
    int failed = f == NULL || fwrite(buf, 1, (size_t)n, f) != (size_t)n;
    if (f != NULL && fclose(f) != 0)
        failed = 1;
    free(buf);
    return failed;
}

#endif
