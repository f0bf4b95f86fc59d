/* Address parsing (proto/src/addr.c). */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <string.h>

#include "loom/wire.h"

static void assert_v4(const char *text, const char *ip, unsigned port)
{
    loom_addr a;
    cr_assert_eq(loom_addr_parse(text, &a), 0, "%s: %s", text, loom_errdetail());
    cr_assert_eq(a.is_unix, 0);
    const struct sockaddr_in *v4 = (const struct sockaddr_in *)&a.inet;
    cr_assert_eq(v4->sin_family, AF_INET, "%s", text);
    char buf[INET_ADDRSTRLEN];
    inet_ntop(AF_INET, &v4->sin_addr, buf, sizeof buf);
    cr_assert_str_eq(buf, ip);
    cr_assert_eq(ntohs(v4->sin_port), port);
}

static void assert_v6(const char *text, const char *ip, unsigned port)
{
    loom_addr a;
    cr_assert_eq(loom_addr_parse(text, &a), 0, "%s: %s", text, loom_errdetail());
    const struct sockaddr_in6 *v6 = (const struct sockaddr_in6 *)&a.inet;
    cr_assert_eq(v6->sin6_family, AF_INET6, "%s", text);
    char buf[INET6_ADDRSTRLEN];
    inet_ntop(AF_INET6, &v6->sin6_addr, buf, sizeof buf);
    cr_assert_str_eq(buf, ip);
    cr_assert_eq(ntohs(v6->sin6_port), port);
}

Test(addr, tcp_ipv4)
{
    assert_v4("tcp:127.0.0.1:7400", "127.0.0.1", 7400);
    assert_v4("tcp:0.0.0.0:0", "0.0.0.0", 0);
    assert_v4("tcp:10.1.2.3:65535", "10.1.2.3", 65535);
}

Test(addr, tcp_localhost_is_ipv4_loopback)
{
    assert_v4("tcp:localhost:8080", "127.0.0.1", 8080);
}

Test(addr, tcp_ipv6_bracketed_and_bare)
{
    assert_v6("tcp:[::1]:9000", "::1", 9000);
    assert_v6("tcp:[fe80::1:2]:1", "fe80::1:2", 1);
    assert_v6("tcp:::1:9001", "::1", 9001);
}

Test(addr, unix_path)
{
    loom_addr a;
    cr_assert_eq(loom_addr_parse("unix:/run/loom/proc.sock", &a), 0);
    cr_assert_eq(a.is_unix, 1);
    cr_assert_str_eq(a.path, "/run/loom/proc.sock");
    cr_assert_eq(loom_addr_parse("unix:relative.sock", &a), 0);
    cr_assert_str_eq(a.path, "relative.sock");
}

Test(addr, unix_path_at_the_length_limit)
{
    char text[5 + 108 + 1];
    memcpy(text, "unix:", 5);
    memset(text + 5, 'p', 107);
    text[5 + 107] = '\0';
    loom_addr a;
    cr_assert_eq(loom_addr_parse(text, &a), 0, "107 bytes fit with the NUL");
    cr_assert_eq(strlen(a.path), 107);
    text[5 + 107] = 'p';
    text[5 + 108] = '\0';
    cr_assert_eq(loom_addr_parse(text, &a), LOOM_EINVALID_ARGUMENT);
    cr_assert(strstr(loom_errdetail(), "longer than") != NULL, "%s", loom_errdetail());
}

static void assert_bad(const char *text, const char *detail_part)
{
    loom_addr a;
    loom_seterr(0, "%s", "");
    cr_assert_eq(loom_addr_parse(text, &a), LOOM_EINVALID_ARGUMENT, "'%s' was accepted",
                 text ? text : "(null)");
    cr_assert(strstr(loom_errdetail(), detail_part) != NULL, "'%s': detail '%s' lacks '%s'",
              text ? text : "(null)", loom_errdetail(), detail_part);
}

Test(addr, bad_addresses_say_why)
{
    assert_bad(NULL, "missing");
    assert_bad("", "expected 'tcp:HOST:PORT' or 'unix:PATH'");
    assert_bad("http://127.0.0.1:80", "expected 'tcp:HOST:PORT'");
    assert_bad("TCP:127.0.0.1:80", "expected 'tcp:HOST:PORT'");
    assert_bad("tcp:", "expected HOST:PORT");
    assert_bad("tcp:127.0.0.1", "expected HOST:PORT");
    assert_bad("tcp::80", "bad host");
    assert_bad("tcp:127.0.0.1:", "bad port");
    assert_bad("tcp:127.0.0.1:65536", "out of range");
    assert_bad("tcp:127.0.0.1:123456", "bad port");
    assert_bad("tcp:127.0.0.1:12a", "bad port");
    assert_bad("tcp:127.0.0.1:-1", "bad port");
    assert_bad("tcp:127.0.0.1: 80", "bad port");
    assert_bad("tcp:example.com:80", "not an IPv4/IPv6 literal");
    assert_bad("tcp:256.1.1.1:80", "not an IPv4/IPv6 literal");
    assert_bad("tcp:[::1]80", "expected [IPV6]:PORT");
    assert_bad("tcp:[::1", "expected [IPV6]:PORT");
    assert_bad("tcp:[]:80", "bad host");
    assert_bad("unix:", "empty unix socket path");
}

Test(addr, detail_names_the_address)
{
    loom_addr a;
    cr_assert_eq(loom_addr_parse("tcp:nowhere:1", &a), LOOM_EINVALID_ARGUMENT);
    cr_assert(strstr(loom_errdetail(), "tcp:nowhere:1") != NULL, "%s", loom_errdetail());
}
