/* One row of the get_attestation contract per invocation: contract CASE.
 * Prints "ret=<rax> rdx=<rdx after> rdx_in=<rdx before>" and, where relevant,
 * "size=", "guards=", "untouched=" and "evidence=<hex>" lines for the test to judge. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "attest.h"

#define GUARD 0xA5
#define SEED 0x11

static long page;

static void report(long ret, const void *rdx_in, unsigned long rdx)
{
    printf("ret=%ld rdx=%#lx rdx_in=%#lx\n", ret, rdx, (unsigned long)rdx_in);
}

static unsigned char *map(size_t pages, int prot)
{
    void *p = mmap(NULL, pages * page, prot, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {
        perror("mmap");
        exit(2);
    }
    return p;
}

/* An address that is certainly unmapped: map a page, then unmap it. */
static unsigned char *hole(void)
{
    unsigned char *p = map(1, PROT_READ | PROT_WRITE);
    munmap(p, page);
    return p;
}

static long size_query(void)
{
    unsigned long rdx;
    long size = attest(NULL, 0, NULL, 0, &rdx);
    printf("size=%ld\n", size);
    if (size <= 0)
        exit(3);
    return size;
}

static int all_guard(const unsigned char *p, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (p[i] != GUARD)
            return 0;
    return 1;
}

/* A call into a guarded buffer of buf_len bytes; checks that nothing outside
 * [buf, buf + written) changed, and prints the evidence. */
static void guarded_call(long size, unsigned long buf_len, int print_evidence)
{
    unsigned char nonce[NONCE_SIZE];
    fill_nonce(nonce, SEED);
    size_t region = buf_len + 2 * 256;
    unsigned char *base = malloc(region);
    memset(base, GUARD, region);
    unsigned char *buf = base + 256;
    unsigned long rdx;
    long ret = attest(nonce, NONCE_SIZE, buf, buf_len, &rdx);
    report(ret, buf, rdx);
    size_t written = ret > 0 ? (size_t)ret : 0;
    int ok = all_guard(base, 256) && all_guard(buf + written, region - 256 - written);
    printf("guards=%s\n", ok ? "ok" : "bad");
    if (ret < 0)
        printf("untouched=%s\n", all_guard(buf, buf_len) ? "ok" : "bad");
    if (print_evidence && ret > 0) {
        printf("evidence=");
        for (long i = 0; i < ret; i++)
            printf("%02x", buf[i]);
        printf("\n");
    }
    (void)size;
    free(base);
}

static void call_with(const void *nonce, unsigned long nonce_len, void *buf, unsigned long buf_len)
{
    unsigned long rdx;
    long ret = attest(nonce, nonce_len, buf, buf_len, &rdx);
    report(ret, buf, rdx);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: contract CASE\n");
        return 2;
    }
    page = sysconf(_SC_PAGESIZE);
    const char *c = argv[1];
    unsigned char nonce[NONCE_SIZE + 1];
    fill_nonce(nonce, SEED);
    static unsigned char buf[1 << 16];
    /* An arbitrary non-NULL value for calls that must fail before touching the buffer. */
    void *sentinel = (void *)0x5e5e5e5e5000UL;

    if (!strcmp(c, "size")) {
        unsigned long rdx;
        long ret = attest(NULL, 0, NULL, 0, &rdx);
        report(ret, NULL, rdx);
    } else if (!strcmp(c, "size-ignores-args")) {
        /* row 1: buf_len and the nonce are not examined */
        call_with((void *)8, 3, NULL, ~0UL);
    } else if (!strcmp(c, "success")) {
        long size = size_query();
        guarded_call(size, (unsigned long)size, 1);
    } else if (!strcmp(c, "larger-buffer")) {
        long size = size_query();
        guarded_call(size, (unsigned long)size + 1000, 0);
    } else if (!strcmp(c, "short")) {
        long size = size_query();
        guarded_call(size, (unsigned long)size - 1, 0);
    } else if (!strcmp(c, "nonce63")) {
        call_with(nonce, 63, sentinel, sizeof buf);
    } else if (!strcmp(c, "nonce65")) {
        call_with(nonce, 65, sentinel, sizeof buf);
    } else if (!strcmp(c, "buflen0")) {
        call_with(nonce, NONCE_SIZE, sentinel, 0);
    } else if (!strcmp(c, "buflen-huge")) {
        call_with(nonce, NONCE_SIZE, sentinel, 1UL << 63);
    } else if (!strcmp(c, "buflen-max")) {
        call_with(nonce, NONCE_SIZE, sentinel, ~0UL);
    } else if (!strcmp(c, "nonce-null")) {
        call_with(NULL, NONCE_SIZE, buf, sizeof buf);
    } else if (!strcmp(c, "nonce-unmapped")) {
        call_with(hole(), NONCE_SIZE, buf, sizeof buf);
    } else if (!strcmp(c, "nonce-straddle")) {
        unsigned char *two = map(2, PROT_READ | PROT_WRITE);
        munmap(two + page, page);
        unsigned char *n = two + page - NONCE_SIZE / 2;
        memcpy(n, nonce, NONCE_SIZE / 2);
        call_with(n, NONCE_SIZE, buf, sizeof buf);
    } else if (!strcmp(c, "buf-unmapped")) {
        call_with(nonce, NONCE_SIZE, hole(), sizeof buf);
    } else if (!strcmp(c, "buf-readonly")) {
        unsigned char *ro = map(4, PROT_READ | PROT_WRITE);
        memset(ro, GUARD, 4 * page);
        mprotect(ro, 4 * page, PROT_READ);
        call_with(nonce, NONCE_SIZE, ro, 4 * page);
        printf("untouched=%s\n", all_guard(ro, 4 * page) ? "ok" : "bad");
    } else if (!strcmp(c, "buf-straddle")) {
        long size = size_query();
        unsigned char *two = map(2, PROT_READ | PROT_WRITE);
        munmap(two + page, page);
        call_with(nonce, NONCE_SIZE, two + page - 100, (unsigned long)size);
    } else if (!strcmp(c, "int80")) {
        /* 0xEA01 through the i386 entry: not the x86-64 syscall, the filter lets it pass */
        unsigned long rax = SYS_GET_ATTESTATION;
        __asm__ volatile("int $0x80" : "+a"(rax) : : "memory");
        printf("ret=%ld\n", (long)rax);
    } else if (!strcmp(c, "x32")) {
        /* 0xEA01 with the x32 bit set: a different syscall number, not trapped */
        unsigned long rax = 0x40000000UL | SYS_GET_ATTESTATION;
        __asm__ volatile("syscall" : "+a"(rax) : : "rcx", "r11", "memory");
        printf("ret=%ld\n", (long)rax);
    } else {
        fprintf(stderr, "contract: unknown case %s\n", c);
        return 2;
    }
    return 0;
}
