/* Scratch directory, logs, loomd configuration and lifecycle. */
#include "harness_internal.h"

#include <errno.h>
#include <ftw.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#ifndef LOOM_BIN_DIR
#error "LOOM_BIN_DIR must name the build's bin directory"
#endif

#define LOG_DUMP_MAX_BYTES (256u * 1024u)

/* Harnesses alive in this process, killed by the atexit hook when a test
 * exits without destroying them. */
static loom_harness *live[8];

static void kill_live(void)
{
    for (size_t i = 0; i < LOOM_ARRAY_SIZE(live); i++)
        if (live[i])
            loom_harness__kill_all(live[i]);
}

static int track(loom_harness *h)
{
    static bool hooked;
    if (!hooked) {
        atexit(kill_live);
        hooked = true;
    }
    for (size_t i = 0; i < LOOM_ARRAY_SIZE(live); i++)
        if (live[i] == NULL) {
            live[i] = h;
            return 0;
        }
    return loom_seterr(LOOM_ERESOURCE_EXHAUSTED, "too many live harnesses");
}

static void untrack(loom_harness *h)
{
    for (size_t i = 0; i < LOOM_ARRAY_SIZE(live); i++)
        if (live[i] == h)
            live[i] = NULL;
}

int loom_harness_create(loom_harness **out)
{
    *out = NULL;
    loom_harness *h = calloc(1, sizeof *h);
    if (h == NULL)
        return loom_seterr(LOOM_ENOMEM, "harness");
    const char *tmp = getenv("TMPDIR");
    snprintf(h->dir, sizeof h->dir, "%s/loom-e2e-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (mkdtemp(h->dir) == NULL) {
        int e = errno;
        free(h);
        return loom_seterr(loom_err_from_errno(e), "mkdtemp: %s", strerror(e));
    }
    int rc = track(h);
    if (rc < 0) {
        rmdir(h->dir);
        free(h);
        return rc;
    }
    *out = h;
    return 0;
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    remove(path);
    return 0;
}

void loom_harness_destroy(loom_harness *h)
{
    if (h == NULL)
        return;
    loom_harness__kill_all(h);
    if (!h->passed)
        loom_harness_dump_logs(h);
    loom_harness__release_all(h);
    const char *keep = getenv("LOOM_KEEP_SCRATCH");
    if (keep && *keep && strcmp(keep, "0") != 0)
        fprintf(stderr, "harness: scratch kept in %s\n", h->dir);
    else
        nftw(h->dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    untrack(h);
    free(h);
}

void loom_harness_pass(loom_harness *h)
{
    h->passed = true;
}

static void dump_file(const char *name, const char *path)
{
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return;
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    long from = size > (long)LOG_DUMP_MAX_BYTES ? size - (long)LOG_DUMP_MAX_BYTES : 0;
    fseek(f, from, SEEK_SET);
    fprintf(stderr, "----- %s (%s%ld bytes) -----\n", name, from ? "last of " : "", size);
    char buf[4096];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, f)) > 0)
        fwrite(buf, 1, n, stderr);
    fprintf(stderr, "----- end of %s -----\n", name);
    fclose(f);
}

void loom_harness_dump_logs(const loom_harness *h)
{
    for (int i = 0; i < h->n_procs; i++)
        dump_file(h->procs[i].name, h->procs[i].log_path);
}

const char *loom_harness_dir(const loom_harness *h)
{
    return h->dir;
}

const char *loom_harness_path(const loom_harness *h, const char *name, char *buf, size_t len)
{
    int n = snprintf(buf, len, "%s/%s", h->dir, name);
    if (n < 0 || (size_t)n >= len)
        buf[0] = '\0';
    return buf;
}

const char *loom_harness_unix_addr(const loom_harness *h, const char *name, char *buf, size_t len)
{
    int n = snprintf(buf, len, "unix:%s/%s", h->dir, name);
    if (n < 0 || (size_t)n >= len || (size_t)n - 5 >= sizeof(((struct sockaddr_un *)0)->sun_path))
        buf[0] = '\0';
    return buf;
}

const char *loom_harness_bin(const char *name, char *buf, size_t len)
{
    const char *dir = getenv("LOOM_BIN_DIR");
    int n = snprintf(buf, len, "%s/%s", dir && *dir ? dir : LOOM_BIN_DIR, name);
    if (n < 0 || (size_t)n >= len)
        buf[0] = '\0';
    return buf;
}

int loom_harness_write_file(const loom_harness *h, const char *name, const char *text)
{
    char path[LOOM_HARNESS_PATH_MAX];
    if (loom_harness_path(h, name, path, sizeof path)[0] == '\0')
        return loom_seterr(LOOM_EINVALID_ARGUMENT, "path too long");
    FILE *f = fopen(path, "w");
    if (f == NULL)
        return loom_seterr(loom_err_from_errno(errno), "open %s: %s", path, strerror(errno));
    size_t len = strlen(text);
    bool ok = fwrite(text, 1, len, f) == len;
    ok = fclose(f) == 0 && ok;
    return ok ? 0 : loom_seterr(LOOM_EIO, "write %s failed", path);
}

/* ------------------------------------------------------------ loomd config */

/* A YAML double-quoted scalar: only '"' and '\' need escaping in paths. */
static void put_quoted(FILE *f, const char *s)
{
    fputc('"', f);
    for (; *s; s++) {
        if (*s == '"' || *s == '\\')
            fputc('\\', f);
        fputc(*s, f);
    }
    fputc('"', f);
}

static void put_indented(FILE *f, const char *text, const char *indent)
{
    const char *line = text;
    while (*line) {
        const char *end = strchr(line, '\n');
        size_t n = end ? (size_t)(end - line) : strlen(line);
        fprintf(f, "%s%.*s\n", indent, (int)n, line);
        line += n + (end ? 1 : 0);
    }
}

/* A port that was free a moment ago: the kernel picks it for port 0. */
static int free_tcp_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        return loom_seterr(LOOM_EIO, "socket: %s", strerror(errno));
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof sa;
    int port = -1;
    if (bind(fd, (struct sockaddr *)&sa, sizeof sa) == 0 &&
        getsockname(fd, (struct sockaddr *)&sa, &len) == 0)
        port = ntohs(sa.sin_port);
    close(fd);
    return port > 0 ? port : loom_seterr(LOOM_EIO, "no free tcp port");
}

static void write_namespaces(FILE *f, const loom_harness_loomd_opts *o)
{
    if (o->n_namespaces == 0)
        return;
    fprintf(f, "namespaces:\n");
    for (size_t i = 0; i < o->n_namespaces; i++) {
        const loom_harness_ns *ns = &o->namespaces[i];
        fprintf(f, "  - name: ");
        put_quoted(f, ns->name);
        fprintf(f, "\n    processor: ");
        put_quoted(f, ns->processor ? ns->processor : "");
        fprintf(f, "\n");
        if (ns->step_timeout_ms)
            fprintf(f, "    step_timeout_ms: %u\n", ns->step_timeout_ms);
        if (ns->yaml)
            put_indented(f, ns->yaml, "    ");
    }
}

int loom_harness_loomd_write_config(loom_harness *h, const loom_harness_loomd_opts *o)
{
    char data[LOOM_HARNESS_PATH_MAX];
    loom_harness_unix_addr(h, "loomd.sock", h->loomd_addr, sizeof h->loomd_addr);
    loom_harness_path(h, "data", data, sizeof data);
    loom_harness_path(h, "loomd.yaml", h->config_path, sizeof h->config_path);
    if (!h->loomd_addr[0] || !data[0] || !h->config_path[0])
        return loom_seterr(LOOM_EINVALID_ARGUMENT, "scratch path too long for a socket");
    h->loomd_tcp_addr[0] = '\0';
    if (o->tcp) {
        int port = free_tcp_port();
        if (port < 0)
            return port;
        snprintf(h->loomd_tcp_addr, sizeof h->loomd_tcp_addr, "tcp:127.0.0.1:%d", port);
    }
    FILE *f = fopen(h->config_path, "w");
    if (f == NULL)
        return loom_seterr(LOOM_EIO, "open %s: %s", h->config_path, strerror(errno));
    fprintf(f, "listen:\n  - ");
    put_quoted(f, h->loomd_addr);
    if (h->loomd_tcp_addr[0]) {
        fprintf(f, "\n  - ");
        put_quoted(f, h->loomd_tcp_addr);
    }
    fprintf(f, "\ndata_dir: ");
    put_quoted(f, data);
    fprintf(f, "\nlog_level: %s\n", o->log_level ? o->log_level : "info");
    if (o->yaml)
        put_indented(f, o->yaml, "");
    write_namespaces(f, o);
    if (fclose(f) != 0)
        return loom_seterr(LOOM_EIO, "write %s failed", h->config_path);
    return 0;
}

int loom_harness_loomd_start(loom_harness *h, const loom_harness_loomd_opts *o)
{
    if (h->loomd)
        return loom_seterr(LOOM_EBUSY, "loomd already started: use restart");
    int rc = loom_harness_loomd_write_config(h, o);
    if (rc < 0)
        return rc;
    const char *argv[HARNESS_MAX_ARGS + 1] = {"loomd", "--config", h->config_path};
    size_t n = 3;
    for (size_t i = 0; o->extra_args && o->extra_args[i]; i++) {
        if (n >= HARNESS_MAX_ARGS)
            return loom_seterr(LOOM_EINVALID_ARGUMENT, "too many loomd arguments");
        argv[n++] = o->extra_args[i];
    }
    argv[n] = NULL;
    return loom_harness_spawn(h, "loomd", argv, h->loomd_addr, &h->loomd);
}

loom_harness_proc *loom_harness_loomd(const loom_harness *h)
{
    return h->loomd;
}

const char *loom_harness_loomd_addr(const loom_harness *h)
{
    return h->loomd_addr;
}

static int connect_plain(const char *text)
{
    loom_addr a;
    int rc = loom_addr_parse(text, &a);
    if (rc != 0)
        return rc;
    struct sockaddr_un un = {.sun_family = AF_UNIX};
    const struct sockaddr *sa = (const struct sockaddr *)&a.inet;
    socklen_t sa_len = sizeof a.inet;
    if (a.is_unix) {
        snprintf(un.sun_path, sizeof un.sun_path, "%s", a.path);
        sa = (const struct sockaddr *)&un;
        sa_len = sizeof un;
    }
    int fd = socket(sa->sa_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || connect(fd, sa, sa_len) != 0) {
        rc = loom_seterr(LOOM_ECLOSED, "connect %s: %s", text, strerror(errno));
        if (fd >= 0)
            close(fd);
        return rc;
    }
    return fd;
}

static int write_all(int fd, const uint8_t *data, size_t len)
{
    while (len > 0) {
        ssize_t n = write(fd, data, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return loom_seterr(LOOM_ECLOSED, "write: %s", strerror(errno));
        data += n;
        len -= (size_t)n;
    }
    return 0;
}

static int keep_first(void *ctx, const uint8_t *payload, size_t len)
{
    int rc = loom_envelope_decode(payload, len, ctx);
    return rc != 0 ? rc : 1;
}

/* Reads until one whole frame has been decoded into *out. */
static int read_reply(int fd, uint32_t timeout_ms, loom_envelope **out)
{
    loom_frame_reader rd;
    loom_frame_reader_init(&rd, 0);
    uint64_t deadline = loom_harness__now_ms() + timeout_ms;
    int rc = 0;
    while (*out == NULL && rc == 0) {
        uint64_t now = loom_harness__now_ms();
        struct pollfd p = {.fd = fd, .events = POLLIN};
        int ready = now < deadline ? poll(&p, 1, (int)(deadline - now)) : 0;
        if (ready < 0 && errno == EINTR)
            continue;
        if (ready == 0) {
            rc = loom_seterr(LOOM_ETIMEOUT, "no reply within %u ms", timeout_ms);
            break;
        }
        uint8_t buf[4096];
        ssize_t n = read(fd, buf, sizeof buf);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            rc = loom_seterr(LOOM_ECLOSED, "loomd closed without a reply");
        else if ((rc = loom_frame_reader_feed(&rd, buf, (size_t)n, keep_first, out)) == 1)
            rc = 0;
    }
    loom_frame_reader_free(&rd);
    return rc;
}

loom_envelope *loom_harness_loomd_exchange(const loom_harness *h, const loom_envelope *env,
                                           uint32_t timeout_ms)
{
    uint8_t *frame = NULL;
    size_t len = 0;
    int rc = loom_envelope_encode(env, LOOM_FRAME_MAX_DEFAULT, &frame, &len);
    if (rc != 0)
        return NULL;
    int fd = connect_plain(h->loomd_addr);
    loom_envelope *reply = NULL;
    if (fd >= 0 && write_all(fd, frame, len) == 0)
        read_reply(fd, timeout_ms, &reply);
    if (fd >= 0)
        close(fd);
    free(frame);
    return reply;
}

const char *loom_harness_loomd_tcp_addr(const loom_harness *h)
{
    return h->loomd_tcp_addr;
}

int loom_harness_loomd_stop(loom_harness *h, int *status)
{
    if (h->loomd == NULL)
        return loom_seterr(LOOM_ENOT_FOUND, "loomd was not started");
    return loom_harness_proc_stop(h->loomd, 0, status);
}

int loom_harness_loomd_kill(loom_harness *h)
{
    if (h->loomd == NULL)
        return loom_seterr(LOOM_ENOT_FOUND, "loomd was not started");
    return loom_harness_proc_kill(h->loomd);
}

int loom_harness_loomd_restart(loom_harness *h)
{
    if (h->loomd == NULL)
        return loom_seterr(LOOM_ENOT_FOUND, "loomd was not started");
    return loom_harness_proc_restart(h->loomd);
}
