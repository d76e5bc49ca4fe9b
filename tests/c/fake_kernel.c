/* The header's register use, checked against a fake kernel in the same process:
 * a seccomp filter turns syscall 0xEA01 into SIGSYS, and the handler plays the
 * kernel: it records rdi, rsi, rdx and r10, and answers in rax and rdx through
 * the signal context. Every other syscall runs normally.
 *
 * The fake answers: buf == NULL -> size EVIDENCE_SIZE, technology TECHNOLOGY;
 * r10 < EVIDENCE_SIZE -> -EMSGSIZE, rdx unchanged; otherwise it fills buf with
 * 0xab and returns EVIDENCE_SIZE with technology TECHNOLOGY. */
#define _GNU_SOURCE
#include <attestcall.h>

#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <ucontext.h>
#include <unistd.h>

#define EVIDENCE_SIZE 100
#define TECHNOLOGY ATTESTCALL_TECH_SNP

static volatile unsigned long long seen[4]; /* rdi, rsi, rdx, r10 of the last call */

static void fake_kernel(int sig, siginfo_t *info, void *context)
{
    greg_t *regs = ((ucontext_t *)context)->uc_mcontext.gregs;
    (void)sig;
    (void)info;
    seen[0] = (unsigned long long)regs[REG_RDI];
    seen[1] = (unsigned long long)regs[REG_RSI];
    seen[2] = (unsigned long long)regs[REG_RDX];
    seen[3] = (unsigned long long)regs[REG_R10];
    if (regs[REG_RDX] == 0) {
        regs[REG_RAX] = EVIDENCE_SIZE;
        regs[REG_RDX] = TECHNOLOGY;
    } else if ((unsigned long long)regs[REG_R10] < EVIDENCE_SIZE) {
        regs[REG_RAX] = -EMSGSIZE;
    } else {
        memset((void *)regs[REG_RDX], 0xab, EVIDENCE_SIZE);
        regs[REG_RAX] = EVIDENCE_SIZE;
        regs[REG_RDX] = TECHNOLOGY;
    }
}

static int install(void)
{
    struct sock_filter code[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 1, 0),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_get_attestation, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_TRAP),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    struct sock_fprog prog = {sizeof code / sizeof code[0], code};
    struct sigaction action;

    memset(&action, 0, sizeof action);
    action.sa_sigaction = fake_kernel;
    action.sa_flags = SA_SIGINFO;
    if (sigaction(SIGSYS, &action, NULL) != 0)
        return -1;
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0)
        return -1;
    return (int)syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog);
}

static void report(const char *name, ssize_t n, const void *nonce, const void *buf,
                   size_t technology)
{
    printf("%s ret=%zd errno=%d technology=%zu nonce=%d len=%llu buf=%d buf_len=%llu\n",
           name, n, n < 0 ? errno : 0, technology,
           seen[0] == (unsigned long long)(size_t)nonce, seen[1],
           seen[2] == (unsigned long long)(size_t)buf, seen[3]);
}

int main(void)
{
    unsigned char nonce[ATTESTCALL_NONCE_SIZE];
    unsigned char buf[EVIDENCE_SIZE + 8];
    size_t technology;
    ssize_t n;
    size_t i;
    int intact = 1;

    if (install() != 0) {
        perror("seccomp");
        return 2;
    }
    memset(nonce, 0x4e, sizeof nonce);

    technology = 77;
    n = get_attestation(nonce, sizeof nonce, NULL, 0, &technology);
    report("size-query", n, nonce, NULL, technology);

    technology = 77;
    memset(buf, 0xee, sizeof buf);
    n = get_attestation(nonce, sizeof nonce, buf, EVIDENCE_SIZE - 1, &technology);
    report("short", n, nonce, buf, technology);

    technology = 77;
    n = get_attestation(nonce, sizeof nonce, buf, sizeof buf, &technology);
    report("call", n, nonce, buf, technology);
    for (i = 0; i < sizeof buf; i++)
        if (buf[i] != (i < EVIDENCE_SIZE ? 0xab : 0xee))
            intact = 0;
    printf("buffer %d\n", intact);

    n = get_attestation(nonce, sizeof nonce, buf, sizeof buf, NULL);
    report("null-technology", n, nonce, buf, 0);
    return 0;
}
