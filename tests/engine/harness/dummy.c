/* A stand-in child for the harness tests: optionally listens on a unix
 * socket (accepting and closing connections), and behaves on SIGTERM as
 * told.
 *   loom-test-dummy [--listen unix:PATH] [--term-exit N] [--ignore-term]
 *                   [--exit N] [--delay-ms N] */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

static volatile sig_atomic_t term_seen;

static void on_term(int sig)
{
    (void)sig;
    term_seen = 1;
}

static int listen_unix(const char *addr)
{
    if (strncmp(addr, "unix:", 5) != 0 || strlen(addr + 5) >= 108) {
        fprintf(stderr, "dummy: bad address %s\n", addr);
        exit(2);
    }
    struct sockaddr_un un = {.sun_family = AF_UNIX};
    memcpy(un.sun_path, addr + 5, strlen(addr + 5) + 1);
    unlink(un.sun_path);
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    if (fd < 0 || bind(fd, (struct sockaddr *)&un, sizeof un) != 0 || listen(fd, 16) != 0) {
        fprintf(stderr, "dummy: listen %s: %s\n", addr, strerror(errno));
        exit(1);
    }
    return fd;
}

int main(int argc, char **argv)
{
    const char *listen_addr = NULL;
    int term_exit = 0, ignore_term = 0, delay_ms = 0;
    for (int i = 1; i < argc; i++) {
        const char *next = i + 1 < argc ? argv[i + 1] : "";
        if (strcmp(argv[i], "--listen") == 0) {
            listen_addr = next;
            i++;
        } else if (strcmp(argv[i], "--term-exit") == 0) {
            term_exit = atoi(next);
            i++;
        } else if (strcmp(argv[i], "--ignore-term") == 0) {
            ignore_term = 1;
        } else if (strcmp(argv[i], "--exit") == 0) {
            fprintf(stderr, "dummy: exiting with %s as asked\n", next);
            return atoi(next);
        } else if (strcmp(argv[i], "--delay-ms") == 0) {
            delay_ms = atoi(next);
            i++;
        } else {
            fprintf(stderr, "dummy: unknown argument %s\n", argv[i]);
            return 2;
        }
    }
    struct sigaction sa = {.sa_handler = ignore_term ? SIG_IGN : on_term};
    sigaction(SIGTERM, &sa, NULL);
    if (delay_ms > 0)
        usleep((useconds_t)delay_ms * 1000);
    int fd = listen_addr ? listen_unix(listen_addr) : -1;
    fprintf(stderr, "dummy: running (pid %d)\n", (int)getpid());
    while (!term_seen) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, fd >= 0 ? 1 : 0, 100) > 0) {
            int c = accept(fd, NULL, NULL);
            if (c >= 0)
                close(c);
        }
    }
    fprintf(stderr, "dummy: SIGTERM, exiting with %d\n", term_exit);
    return term_exit;
}
