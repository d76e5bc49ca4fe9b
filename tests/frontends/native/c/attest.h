/* The raw get_attestation syscall (0xEA01) with inline asm: libc's syscall() would lose
 * the second return register (rdx), which carries the technology id. */
#ifndef ATTEST_TEST_H
#define ATTEST_TEST_H

#define SYS_GET_ATTESTATION 0xEA01
#define NONCE_SIZE 64

/* rdx goes in as the buffer pointer; *rdx_out receives rdx as the call left it. */
static inline long attest(const void *nonce, unsigned long nonce_len, void *buf,
                          unsigned long buf_len, unsigned long *rdx_out)
{
    register unsigned long r10 __asm__("r10") = buf_len;
    unsigned long rax = SYS_GET_ATTESTATION;
    unsigned long rdx = (unsigned long)buf;
    __asm__ volatile("syscall"
                     : "+a"(rax), "+d"(rdx)
                     : "D"(nonce), "S"(nonce_len), "r"(r10)
                     : "rcx", "r11", "memory");
    *rdx_out = rdx;
    return (long)rax;
}

static inline void fill_nonce(unsigned char *nonce, unsigned seed)
{
    for (unsigned i = 0; i < NONCE_SIZE; i++)
        nonce[i] = (unsigned char)(seed + 7 * i);
}

#endif
