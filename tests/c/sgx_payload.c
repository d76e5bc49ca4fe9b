/* A payload for the end-to-end tests, built with the shipped attestcall.h.
 *   sgx_payload one NONCE_SEED OUT      one call; evidence to OUT
 *   sgx_payload threads OUTDIR          8 threads at once, nonce seed = thread number
 *   sgx_payload fork OUT                the child calls (seed 0x42) and writes OUT
 *   sgx_payload exec OUT                execs itself as "one 0x43 OUT"
 * A nonce with seed S is 64 bytes S, S+1, ..., S+63 (mod 256). */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <attestcall.h>

#include "attest_to_file.h"

static int attest_to(unsigned seed, const char *out)
{
    unsigned char nonce[ATTESTCALL_NONCE_SIZE];
    seeded_nonce(nonce, seed);
    return attest_to_file(nonce, ATTESTCALL_TECH_SGX, out);
}

static const char *outdir;

static void *thread_main(void *arg)
{
    unsigned seed = (unsigned)(size_t)arg;
    char path[4096];
    snprintf(path, sizeof path, "%s/t%u.bin", outdir, seed);
    return (void *)(size_t)attest_to(seed, path);
}

int main(int argc, char **argv)
{
    if (argc >= 4 && !strcmp(argv[1], "one"))
        return attest_to((unsigned)strtoul(argv[2], NULL, 0), argv[3]);
    if (argc == 3 && !strcmp(argv[1], "threads")) {
        pthread_t threads[8];
        outdir = argv[2];
        for (size_t i = 0; i < 8; i++)
            if (pthread_create(&threads[i], NULL, thread_main, (void *)(i + 1)))
                return 1;
        int failed = 0;
        for (int i = 0; i < 8; i++) {
            void *ret;
            pthread_join(threads[i], &ret);
            failed |= ret != NULL;
        }
        return failed;
    }
    if (argc == 3 && !strcmp(argv[1], "fork")) {
        pid_t pid = fork();
        if (pid == 0)
            _exit(attest_to(0x42, argv[2]));
        int status;
        waitpid(pid, &status, 0);
        return WIFEXITED(status) ? WEXITSTATUS(status) : 1;
    }
    if (argc == 3 && !strcmp(argv[1], "exec")) {
        execl("/proc/self/exe", argv[0], "one", "0x43", argv[2], (char *)NULL);
        return 1;
    }
    fprintf(stderr, "usage: see the comment at the top of sgx_payload.c\n");
    return 2;
}
