/*
 * attestcall.h - the get_attestation system call (x86-64 Linux).
 *
 * One call asks the keep for hardware attestation evidence that binds a
 * 64-byte nonce of your choosing, and tells you which technology made it:
 *
 *     ssize_t get_attestation(const void *nonce, size_t nonce_len,
 *                             void *buf, size_t buf_len, size_t *technology);
 *
 * Ask for the size first by passing buf == NULL: the call then returns the
 * exact number of bytes a real call would write now and stores the technology
 * id; it looks at nothing else and writes nothing. Then call again with a
 * buffer at least that large. On success the return value is the number of
 * bytes written (the size the query announced) and the technology id is
 * stored as well.
 *
 * On failure the call returns -1, sets errno and leaves *technology alone.
 * The kernel checks, in this order:
 *   EINVAL    buf_len is 0 or larger than SSIZE_MAX
 *   EINVAL    nonce_len is not ATTESTCALL_NONCE_SIZE (64)
 *   EFAULT    the nonce cannot be read
 *   EMSGSIZE  buf_len is smaller than the evidence
 *   EIO       the platform did not produce evidence
 *   EFAULT    buf cannot be written for the evidence's length
 *   ENOSYS    the program does not run in a keep
 *
 * technology may be NULL when the caller does not need it. What the evidence
 * bytes are depends on the technology (ATTESTCALL_TECH_*); a keep without a
 * TEE answers ATTESTCALL_TECH_NONE with size 0.
 *
 * Raw interface: rax = SYS_get_attestation, rdi = nonce, rsi = nonce_len,
 * rdx = buf, r10 = buf_len. The kernel returns the byte count or -errno in rax
 * and the technology in rdx (rdx is unchanged on error); rcx and r11 are
 * clobbered as by any syscall.
 */
#ifndef ATTESTCALL_H
#define ATTESTCALL_H

#if !defined(__x86_64__)
#error "attestcall.h: get_attestation is defined for x86-64 only"
#endif

#include <errno.h>
#include <stddef.h>
#include <sys/types.h>

#define SYS_get_attestation 0xEA01

#define ATTESTCALL_NONCE_SIZE 64

#define ATTESTCALL_TECH_NONE 0 /* no TEE: empty evidence */
#define ATTESTCALL_TECH_SEV 1  /* AMD SEV pre-attestation: the delivered PKCS#8 key */
#define ATTESTCALL_TECH_SGX 2  /* Intel SGX: DCAP ECDSA quote v3 */
#define ATTESTCALL_TECH_SNP 3  /* AMD SEV-SNP: attestation report + certificate table */
#define ATTESTCALL_TECH_TDX 4  /* Intel TDX: DCAP quote v4 or v5 */

static inline ssize_t get_attestation(const void *nonce, size_t nonce_len,
                                      void *buf, size_t buf_len,
                                      size_t *technology)
{
    /* r10 has no constraint letter of its own: pin a register variable to it. */
    register size_t r10 __asm__("r10") = buf_len;
    long rax = SYS_get_attestation;
    size_t rdx = (size_t)buf;

    __asm__ __volatile__("syscall"
                         : "+a"(rax), "+d"(rdx)
                         : "D"(nonce), "S"(nonce_len), "r"(r10)
                         : "rcx", "r11", "memory");

    if (rax < 0) {
        errno = (int)-rax;
        return -1;
    }
    if (technology != NULL)
        *technology = rdx;
    return (ssize_t)rax;
}

#endif /* ATTESTCALL_H */
