/* A C payload: ask the keep for evidence bound to a nonce and print what came back.
 *
 *     cc -I"$(attestcall include-dir)" -o hello examples/hello.c
 *     attestcall run --tee sgx-sim ./hello
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <attestcall.h>

int main(void)
{
    unsigned char nonce[ATTESTCALL_NONCE_SIZE];
    size_t technology = 0;

    for (size_t i = 0; i < sizeof nonce; i++)
        nonce[i] = (unsigned char)i;

    ssize_t size = get_attestation(NULL, 0, NULL, 0, &technology);
    if (size < 0) {
        fprintf(stderr, "get_attestation: %s%s\n", strerror(errno),
                errno == ENOSYS ? " (not running in a keep)" : "");
        return 1;
    }
    unsigned char *evidence = malloc(size > 0 ? (size_t)size : 1);
    if (evidence == NULL)
        return 1;
    ssize_t n = get_attestation(nonce, sizeof nonce, evidence, size > 0 ? (size_t)size : 1,
                                &technology);
    if (n < 0) {
        fprintf(stderr, "get_attestation: %s\n", strerror(errno));
        return 1;
    }
    printf("technology: %zu\nevidence:   %zd bytes\n", technology, n);
    if (technology == ATTESTCALL_TECH_SGX && n >= 432) {
        printf("REPORTDATA: ");
        for (int i = 368; i < 432; i++)
            printf("%02x", evidence[i]);
        printf("\nnonce bound: %s\n", memcmp(evidence + 368, nonce, sizeof nonce) ? "no" : "yes");
    }
    free(evidence);
    return 0;
}
