/* Process behaviour around the supervisor.
 *   misc exit N        exit with status N
 *   misc kill SIG      kill itself with signal SIG
 *   misc sigint        catch SIGINT, then call get_attestation; exit 42
 *   misc pause         print "ready", wait for a signal forever (default dispositions)
 *   misc ticks N       print "ready <pid>", then N calls 10 ms apart; exit 0 if all good
 *   misc echo          copy a line of stdin to stdout ("out:") and stderr ("err:") */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "attest.h"

static volatile sig_atomic_t interrupted;

static void on_sigint(int sig)
{
    (void)sig;
    interrupted = 1;
}

static void ready(void)
{
    printf("ready %d\n", (int)getpid());
    fflush(stdout);
}

int main(int argc, char **argv)
{
    const char *mode = argc >= 2 ? argv[1] : "";
    unsigned long rdx;
    if (!strcmp(mode, "exit") && argc == 3)
        return atoi(argv[2]);
    if (!strcmp(mode, "kill") && argc == 3) {
        kill(getpid(), atoi(argv[2]));
        sleep(5);
        return 99;
    }
    if (!strcmp(mode, "sigint")) {
        signal(SIGINT, on_sigint);
        ready();
        while (!interrupted)
            pause();
        long ret = attest(NULL, 0, NULL, 0, &rdx);
        printf("after ret=%ld rdx=%lu\n", ret, rdx);
        return 42;
    }
    if (!strcmp(mode, "pause")) {
        ready();
        for (;;)
            pause();
    }
    if (!strcmp(mode, "ticks") && argc == 3) {
        int n = atoi(argv[2]), good = 0;
        ready();
        struct timespec tick = {0, 10 * 1000 * 1000};
        for (int i = 0; i < n; i++) {
            good += attest(NULL, 0, NULL, 0, &rdx) > 0 && rdx == 2;
            nanosleep(&tick, NULL);
        }
        printf("good=%d\n", good);
        return good == n ? 0 : 1;
    }
    if (!strcmp(mode, "echo")) {
        char line[256];
        if (!fgets(line, sizeof line, stdin))
            return 1;
        line[strcspn(line, "\n")] = 0;
        printf("out:%s\n", line);
        fprintf(stderr, "err:%s\n", line);
        return 0;
    }
    fprintf(stderr, "misc: bad arguments\n");
    return 2;
}
