/* A SEV payload for tests/keep/test_sev.py, built with the shipped attestcall.h.
 *   sev_payload key OUT     size query, then one call; the evidence (the delivered PKCS#8
 *                           key) to OUT. Exit 0 only for technology 1 and the exact size.
 *   sev_payload expect-eio  the size query and a call both fail with EIO, leaving the
 *                           technology and the buffer untouched. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <attestcall.h>

#include "attest_to_file.h"

static int key(const char *out)
{
    unsigned char nonce[ATTESTCALL_NONCE_SIZE] = {0};  /* ignored under SEV */
    return attest_to_file(nonce, ATTESTCALL_TECH_SEV, out);
}

static int expect_eio(void)
{
    unsigned char nonce[ATTESTCALL_NONCE_SIZE] = {0};
    unsigned char buf[8192];
    size_t technology = 77;
    memset(buf, 0x5a, sizeof buf);
    errno = 0;
    if (get_attestation(NULL, 0, NULL, 0, &technology) != -1 || errno != EIO ||
        technology != 77) {
        fprintf(stderr, "size query did not fail with EIO\n");
        return 1;
    }
    errno = 0;
    if (get_attestation(nonce, sizeof nonce, buf, sizeof buf, &technology) != -1 ||
        errno != EIO || technology != 77) {
        fprintf(stderr, "call did not fail with EIO\n");
        return 1;
    }
    for (size_t i = 0; i < sizeof buf; i++)
        if (buf[i] != 0x5a) {
            fprintf(stderr, "buffer written at %zu\n", i);
            return 1;
        }
    return 0;
}

int main(int argc, char **argv)
{
    if (argc == 3 && !strcmp(argv[1], "key"))
        return key(argv[2]);
    if (argc == 2 && !strcmp(argv[1], "expect-eio"))
        return expect_eio();
    fprintf(stderr, "usage: see the comment at the top of sev_payload.c\n");
    return 2;
}
