/* Address parsing: "tcp:HOST:PORT" and "unix:PATH".
 *
 * No name resolution on purpose: a blocking DNS lookup has no place on the
 * event loop, and endpoints in configuration are literals. "localhost" is
 * the one name accepted and means 127.0.0.1. */
#include "loom/wire.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/un.h>

#define HOST_MAX 64

static int parse_port(const char *text, const char *addr, uint16_t *port)
{
    size_t n = strlen(text);
    if (n == 0 || n > 5)
        return loom_seterr(LOOM_EINVALID_ARGUMENT, "address '%s': bad port '%s'", addr, text);
    unsigned long v = 0;
    for (size_t i = 0; i < n; i++) {
        if (text[i] < '0' || text[i] > '9')
            return loom_seterr(LOOM_EINVALID_ARGUMENT, "address '%s': bad port '%s'", addr, text);
        v = v * 10 + (unsigned long)(text[i] - '0');
    }
    if (v > 65535)
        return loom_seterr(LOOM_EINVALID_ARGUMENT, "address '%s': port %lu out of range", addr, v);
    *port = (uint16_t)v;
    return 0;
}

/* Splits "HOST:PORT" / "[V6]:PORT" into host and port text. */
static int split_host_port(const char *rest, const char *addr, char *host, const char **port)
{
    const char *colon;
    const char *host_start = rest;
    size_t host_len;
    if (rest[0] == '[') {
        const char *close = strchr(rest, ']');
        if (close == NULL || close[1] != ':')
            return loom_seterr(LOOM_EINVALID_ARGUMENT,
                               "address '%s': expected [IPV6]:PORT after 'tcp:'", addr);
        host_start = rest + 1;
        host_len = (size_t)(close - host_start);
        colon = close + 1;
    } else {
        colon = strrchr(rest, ':');
        if (colon == NULL)
            return loom_seterr(LOOM_EINVALID_ARGUMENT, "address '%s': expected HOST:PORT", addr);
        host_len = (size_t)(colon - rest);
    }
    if (host_len == 0 || host_len >= HOST_MAX)
        return loom_seterr(LOOM_EINVALID_ARGUMENT, "address '%s': bad host", addr);
    memcpy(host, host_start, host_len);
    host[host_len] = '\0';
    *port = colon + 1;
    return 0;
}

static int parse_tcp(const char *rest, const char *addr, loom_addr *out)
{
    char host[HOST_MAX];
    const char *port_text = NULL;
    uint16_t port = 0;
    int rc = split_host_port(rest, addr, host, &port_text);
    if (rc == 0)
        rc = parse_port(port_text, addr, &port);
    if (rc != 0)
        return rc;
    if (strcmp(host, "localhost") == 0)
        strcpy(host, "127.0.0.1");
    memset(&out->inet, 0, sizeof out->inet);
    struct sockaddr_in *v4 = (struct sockaddr_in *)&out->inet;
    struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)&out->inet;
    if (inet_pton(AF_INET, host, &v4->sin_addr) == 1) {
        v4->sin_family = AF_INET;
        v4->sin_port = htons(port);
    } else if (inet_pton(AF_INET6, host, &v6->sin6_addr) == 1) {
        v6->sin6_family = AF_INET6;
        v6->sin6_port = htons(port);
    } else {
        return loom_seterr(LOOM_EINVALID_ARGUMENT,
                           "address '%s': host '%s' is not an IPv4/IPv6 literal or localhost", addr,
                           host);
    }
    out->is_unix = 0;
    return 0;
}

static int parse_unix(const char *path, const char *addr, loom_addr *out)
{
    size_t n = strlen(path);
    if (n == 0)
        return loom_seterr(LOOM_EINVALID_ARGUMENT, "address '%s': empty unix socket path", addr);
    if (n >= sizeof out->path || n >= sizeof(((struct sockaddr_un *)0)->sun_path))
        return loom_seterr(LOOM_EINVALID_ARGUMENT,
                           "address '%s': unix socket path longer than %zu bytes", addr,
                           sizeof out->path - 1);
    out->is_unix = 1;
    memcpy(out->path, path, n + 1);
    return 0;
}

int loom_addr_parse(const char *text, loom_addr *out)
{
    LOOM_ASSERT(out != NULL);
    if (text == NULL)
        return loom_seterr(LOOM_EINVALID_ARGUMENT, "address is missing");
    memset(out, 0, sizeof *out);
    if (strncmp(text, "tcp:", 4) == 0)
        return parse_tcp(text + 4, text, out);
    if (strncmp(text, "unix:", 5) == 0)
        return parse_unix(text + 5, text, out);
    return loom_seterr(LOOM_EINVALID_ARGUMENT,
                       "address '%s': expected 'tcp:HOST:PORT' or 'unix:PATH'", text);
}
