/* Exec another program that calls get_attestation.
 *   execer PROG ARGS...          exec from the main thread
 *   execer --thread PROG ARGS... exec from a second thread (it takes over the process) */
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static char **target;

static void *exec_thread(void *arg)
{
    (void)arg;
    execv(target[0], target);
    perror("execv");
    _exit(127);
}

int main(int argc, char **argv)
{
    if (argc >= 3 && !strcmp(argv[1], "--thread")) {
        target = argv + 2;
        pthread_t t;
        pthread_create(&t, NULL, exec_thread, NULL);
        for (;;)
            pause();
    }
    if (argc < 2) {
        fprintf(stderr, "usage: execer [--thread] PROG ARGS...\n");
        return 2;
    }
    execv(argv[1], argv + 1);
    perror("execv");
    return 127;
}
