/* The header inside a keep: size query, a call one byte short, then the call.
 * Prints the results, then the evidence as hex on the last line. */
#include <attestcall.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(void)
{
    unsigned char nonce[ATTESTCALL_NONCE_SIZE];
    size_t technology = 77;
    ssize_t size, n;
    unsigned char *buf;
    int i;

    for (i = 0; i < ATTESTCALL_NONCE_SIZE; i++)
        nonce[i] = (unsigned char)i;

    size = get_attestation(nonce, sizeof nonce, NULL, 0, &technology);
    printf("size-query %zd %zu\n", size, technology);
    if (size <= 0)
        return 1;
    buf = malloc((size_t)size);
    if (buf == NULL)
        return 1;

    technology = 77;
    errno = 0;
    n = get_attestation(nonce, sizeof nonce, buf, (size_t)size - 1, &technology);
    printf("short %zd %d %zu\n", n, errno, technology);

    n = get_attestation(nonce, sizeof nonce, buf, (size_t)size, &technology);
    printf("call %zd %zu\n", n, technology);
    for (i = 0; i < n; i++)
        printf("%02x", buf[i]);
    printf("\n");
    free(buf);
    return 0;
}
