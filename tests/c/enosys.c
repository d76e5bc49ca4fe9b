/* Outside a keep: every get_attestation call fails with ENOSYS and leaves
 * *technology alone. Builds as C and as C++. Prints one line per check. */
#include <attestcall.h>

#include <stdio.h>
#include <string.h>

int main(void)
{
    unsigned char nonce[ATTESTCALL_NONCE_SIZE];
    unsigned char buf[256];
    size_t technology = 0x5eed;
    ssize_t n;

    memset(nonce, 0x4e, sizeof nonce);
    memset(buf, 0xee, sizeof buf);

    errno = 0;
    n = get_attestation(nonce, sizeof nonce, NULL, 0, &technology);
    printf("size-query %zd %d %zx\n", n, errno, technology);

    errno = 0;
    n = get_attestation(nonce, sizeof nonce, buf, sizeof buf, &technology);
    printf("call %zd %d %zx %d\n", n, errno, technology, buf[0] == 0xee && buf[255] == 0xee);

    errno = 0;
    n = get_attestation(nonce, sizeof nonce, buf, sizeof buf, NULL);
    printf("null-technology %zd %d\n", n, errno);

    printf("macros %#x %d %d %d %d %d %d\n", SYS_get_attestation, ATTESTCALL_NONCE_SIZE,
           ATTESTCALL_TECH_NONE, ATTESTCALL_TECH_SEV, ATTESTCALL_TECH_SGX,
           ATTESTCALL_TECH_SNP, ATTESTCALL_TECH_TDX);
    return 0;
}
