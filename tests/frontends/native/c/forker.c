/* Child processes calling get_attestation.
 *   forker fork                 parent and forked child each call; exit 0 when both good
 *   forker vfork PROG ARGS...   vfork, the child execs PROG; exit status is PROG's
 *   forker background FILE      a child calls after the parent exited; writes "ret=" to FILE */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "attest.h"

static int call_ok(const char *who)
{
    unsigned char nonce[NONCE_SIZE];
    fill_nonce(nonce, (unsigned)getpid());
    unsigned long rdx;
    long size = attest(NULL, 0, NULL, 0, &rdx);
    if (size <= 0) {
        printf("%s size=%ld\n", who, size);
        return 0;
    }
    unsigned char *buf = malloc((size_t)size);
    long ret = attest(nonce, NONCE_SIZE, buf, (unsigned long)size, &rdx);
    int ok = ret == size && rdx == 2 && !memcmp(buf + 8, nonce, NONCE_SIZE);
    printf("%s ret=%ld rdx=%lu ok=%d\n", who, ret, rdx, ok);
    fflush(stdout);
    free(buf);
    return ok;
}

int main(int argc, char **argv)
{
    if (argc >= 2 && !strcmp(argv[1], "fork")) {
        fflush(stdout);
        pid_t child = fork();
        if (child == 0)
            _exit(call_ok("child") ? 0 : 1);
        int parent_ok = call_ok("parent");
        int status;
        waitpid(child, &status, 0);
        return parent_ok && WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : 1;
    }
    if (argc >= 3 && !strcmp(argv[1], "vfork")) {
        pid_t child = vfork();
        if (child == 0) {
            execv(argv[2], argv + 2);
            _exit(127);
        }
        int status;
        waitpid(child, &status, 0);
        return WIFEXITED(status) ? WEXITSTATUS(status) : 1;
    }
    if (argc == 3 && !strcmp(argv[1], "background")) {
        pid_t child = fork();
        if (child == 0) {
            usleep(300 * 1000); /* the parent (the main payload) is gone by now */
            unsigned long rdx;
            long ret = attest(NULL, 0, NULL, 0, &rdx);
            FILE *f = fopen(argv[2], "w");
            fprintf(f, "ret=%ld\n", ret);
            fclose(f);
            _exit(0);
        }
        return 0;
    }
    fprintf(stderr, "usage: forker fork | vfork PROG ARGS... | background FILE\n");
    return 2;
}
