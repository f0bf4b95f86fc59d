/* JSON text to msgpack, by hand: loomctl needs nothing else from a JSON
 * library. Recursive descent bounded by LOOMCTL_MAX_DEPTH; a container's
 * items are written to a child buffer first, because msgpack puts the item
 * count before the items. */
#include "ctl.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#define NUMBER_MAX_CHARS 400

typedef struct parser {
    const char *start, *p, *end;
    size_t max_bytes;
    char *err;
    size_t err_len;
    int err_code;
} parser;

void ctl_buf_init(ctl_buf *b, size_t max)
{
    memset(b, 0, sizeof *b);
    b->max = max;
}

void ctl_buf_free(ctl_buf *b)
{
    free(b->data);
    memset(b, 0, sizeof *b);
}

void ctl_buf_put(ctl_buf *b, const void *data, size_t len)
{
    if (b->err || len == 0)
        return;
    if (len > b->max || b->len > b->max - len) {
        b->err = LOOM_ERESOURCE_EXHAUSTED;
        return;
    }
    if (b->len + len > b->cap) {
        size_t cap = b->cap ? b->cap : 64;
        while (cap < b->len + len)
            cap *= 2;
        uint8_t *d = realloc(b->data, cap);
        if (d == NULL) {
            b->err = LOOM_ENOMEM;
            return;
        }
        b->data = d;
        b->cap = cap;
    }
    memcpy(b->data + b->len, data, len);
    b->len += len;
}

static void put_u8(ctl_buf *b, uint8_t v)
{
    ctl_buf_put(b, &v, 1);
}

static void put_be(ctl_buf *b, uint8_t tag, uint64_t v, int bytes)
{
    uint8_t out[9];
    out[0] = tag;
    for (int i = 0; i < bytes; i++)
        out[1 + i] = (uint8_t)(v >> (8 * (bytes - 1 - i)));
    ctl_buf_put(b, out, (size_t)bytes + 1);
}

/* ------------------------------------------------------------ msgpack out */

static void mp_uint(ctl_buf *b, uint64_t v)
{
    if (v < 128)
        put_u8(b, (uint8_t)v);
    else if (v <= UINT8_MAX)
        put_be(b, 0xcc, v, 1);
    else if (v <= UINT16_MAX)
        put_be(b, 0xcd, v, 2);
    else if (v <= UINT32_MAX)
        put_be(b, 0xce, v, 4);
    else
        put_be(b, 0xcf, v, 8);
}

static void mp_int(ctl_buf *b, int64_t v)
{
    if (v >= 0)
        mp_uint(b, (uint64_t)v);
    else if (v >= -32)
        put_u8(b, (uint8_t)(int8_t)v);
    else if (v >= INT8_MIN)
        put_be(b, 0xd0, (uint64_t)v, 1);
    else if (v >= INT16_MIN)
        put_be(b, 0xd1, (uint64_t)v, 2);
    else if (v >= INT32_MIN)
        put_be(b, 0xd2, (uint64_t)v, 4);
    else
        put_be(b, 0xd3, (uint64_t)v, 8);
}

static void mp_double(ctl_buf *b, double d)
{
    uint64_t bits;
    memcpy(&bits, &d, sizeof bits);
    put_be(b, 0xcb, bits, 8);
}

static void mp_str_header(ctl_buf *b, size_t len)
{
    if (len < 32)
        put_u8(b, (uint8_t)(0xa0 | len));
    else if (len <= UINT8_MAX)
        put_be(b, 0xd9, len, 1);
    else if (len <= UINT16_MAX)
        put_be(b, 0xda, len, 2);
    else
        put_be(b, 0xdb, len, 4);
}

static void mp_container_header(ctl_buf *b, bool map, uint64_t n)
{
    if (n < 16)
        put_u8(b, (uint8_t)((map ? 0x80 : 0x90) | n));
    else if (n <= UINT16_MAX)
        put_be(b, map ? 0xde : 0xdc, n, 2);
    else
        put_be(b, map ? 0xdf : 0xdd, n, 4);
}

/* ------------------------------------------------------------ parsing */

static int fail(parser *ps, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fail(parser *ps, const char *fmt, ...)
{
    if (ps->err_code)
        return ps->err_code;
    int n = snprintf(ps->err, ps->err_len, "offset %zu: ", (size_t)(ps->p - ps->start));
    va_list ap;
    va_start(ap, fmt);
    if (n >= 0 && (size_t)n < ps->err_len)
        vsnprintf(ps->err + n, ps->err_len - (size_t)n, fmt, ap);
    va_end(ap);
    ps->err_code = LOOM_EINVALID_ARGUMENT;
    return ps->err_code;
}

static int buf_status(parser *ps, const ctl_buf *b)
{
    if (b->err == 0)
        return 0;
    snprintf(ps->err, ps->err_len, "%s",
             b->err == LOOM_ENOMEM ? "out of memory" : "value larger than the payload limit");
    ps->err_code = b->err;
    return b->err;
}

static void skip_ws(parser *ps)
{
    while (ps->p < ps->end && (*ps->p == ' ' || *ps->p == '\t' || *ps->p == '\n' || *ps->p == '\r'))
        ps->p++;
}

static int parse_value(parser *ps, ctl_buf *out, int depth);

static int hex4(parser *ps, uint32_t *out)
{
    if (ps->end - ps->p < 4)
        return fail(ps, "short \\u escape");
    uint32_t v = 0;
    for (int i = 0; i < 4; i++) {
        char c = ps->p[i];
        int d = c >= '0' && c <= '9'   ? c - '0'
                : c >= 'a' && c <= 'f' ? c - 'a' + 10
                : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                       : -1;
        if (d < 0)
            return fail(ps, "bad hex digit in \\u escape");
        v = v * 16 + (uint32_t)d;
    }
    ps->p += 4;
    *out = v;
    return 0;
}

static void put_utf8(ctl_buf *b, uint32_t cp)
{
    uint8_t u[4];
    size_t n;
    if (cp < 0x80) {
        u[0] = (uint8_t)cp;
        n = 1;
    } else if (cp < 0x800) {
        u[0] = (uint8_t)(0xc0 | (cp >> 6));
        u[1] = (uint8_t)(0x80 | (cp & 0x3f));
        n = 2;
    } else if (cp < 0x10000) {
        u[0] = (uint8_t)(0xe0 | (cp >> 12));
        u[1] = (uint8_t)(0x80 | ((cp >> 6) & 0x3f));
        u[2] = (uint8_t)(0x80 | (cp & 0x3f));
        n = 3;
    } else {
        u[0] = (uint8_t)(0xf0 | (cp >> 18));
        u[1] = (uint8_t)(0x80 | ((cp >> 12) & 0x3f));
        u[2] = (uint8_t)(0x80 | ((cp >> 6) & 0x3f));
        u[3] = (uint8_t)(0x80 | (cp & 0x3f));
        n = 4;
    }
    ctl_buf_put(b, u, n);
}

/* After the backslash of "\u": one code point, a surrogate pair joined. */
static int parse_unicode_escape(parser *ps, ctl_buf *s)
{
    uint32_t cp;
    if (hex4(ps, &cp) < 0)
        return ps->err_code;
    if (cp >= 0xdc00 && cp <= 0xdfff)
        return fail(ps, "lone low surrogate");
    if (cp >= 0xd800 && cp <= 0xdbff) {
        uint32_t lo;
        if (ps->end - ps->p < 2 || ps->p[0] != '\\' || ps->p[1] != 'u')
            return fail(ps, "high surrogate without its low half");
        ps->p += 2;
        if (hex4(ps, &lo) < 0)
            return ps->err_code;
        if (lo < 0xdc00 || lo > 0xdfff)
            return fail(ps, "high surrogate without its low half");
        cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
    }
    put_utf8(s, cp);
    return 0;
}

static int parse_escape(parser *ps, ctl_buf *s)
{
    if (ps->p >= ps->end)
        return fail(ps, "unterminated string");
    char c = *ps->p++;
    static const char from[] = "\"\\/bfnrt";
    static const char to[] = "\"\\/\b\f\n\r\t";
    const char *hit = c ? strchr(from, c) : NULL;
    if (hit) {
        put_u8(s, (uint8_t)to[hit - from]);
        return 0;
    }
    if (c == 'u')
        return parse_unicode_escape(ps, s);
    ps->p--;
    return fail(ps, "bad escape \\%c", c);
}

/* The string's bytes (unescaped) go to s; the opening quote is consumed. */
static int parse_string_bytes(parser *ps, ctl_buf *s)
{
    while (ps->p < ps->end && *ps->p != '"') {
        const uint8_t *u = (const uint8_t *)ps->p;
        if (*u < 0x20)
            return fail(ps, "control character in string");
        if (*u == '\\') {
            ps->p++;
            if (parse_escape(ps, s) < 0)
                return ps->err_code;
            continue;
        }
        size_t n = ctl_utf8_seq(u, (const uint8_t *)ps->end);
        if (n == 0)
            return fail(ps, "invalid UTF-8 in string");
        ctl_buf_put(s, u, n);
        ps->p += n;
    }
    if (ps->p >= ps->end)
        return fail(ps, "unterminated string");
    ps->p++;
    return 0;
}

static int parse_string(parser *ps, ctl_buf *out)
{
    ctl_buf s;
    ctl_buf_init(&s, ps->max_bytes);
    ps->p++; /* opening quote */
    int rc = parse_string_bytes(ps, &s);
    if (rc == 0)
        rc = buf_status(ps, &s);
    if (rc == 0) {
        mp_str_header(out, s.len);
        ctl_buf_put(out, s.data, s.len);
    }
    ctl_buf_free(&s);
    return rc;
}

static size_t scan_digits(const char *p, const char *end)
{
    size_t n = 0;
    while (p + n < end && p[n] >= '0' && p[n] <= '9')
        n++;
    return n;
}

/* The number grammar of RFC 8259; returns the token's length or 0. */
static size_t scan_number(const char *p, const char *end, bool *is_int)
{
    const char *q = p;
    if (q < end && *q == '-')
        q++;
    size_t d = scan_digits(q, end);
    if (d == 0 || (d > 1 && *q == '0'))
        return 0;
    q += d;
    *is_int = true;
    if (q < end && *q == '.') {
        d = scan_digits(q + 1, end);
        if (d == 0)
            return 0;
        q += 1 + d;
        *is_int = false;
    }
    if (q < end && (*q == 'e' || *q == 'E')) {
        q++;
        if (q < end && (*q == '+' || *q == '-'))
            q++;
        d = scan_digits(q, end);
        if (d == 0)
            return 0;
        q += d;
        *is_int = false;
    }
    return (size_t)(q - p);
}

static int parse_number(parser *ps, ctl_buf *out)
{
    bool is_int = false;
    size_t n = scan_number(ps->p, ps->end, &is_int);
    if (n == 0)
        return fail(ps, "bad number");
    if (n > NUMBER_MAX_CHARS)
        return fail(ps, "number longer than %d characters", NUMBER_MAX_CHARS);
    char tok[NUMBER_MAX_CHARS + 1];
    memcpy(tok, ps->p, n);
    tok[n] = '\0';
    ps->p += n;
    errno = 0;
    if (is_int && tok[0] == '-') {
        long long v = strtoll(tok, NULL, 10);
        if (errno == 0) {
            mp_int(out, v);
            return 0;
        }
    } else if (is_int) {
        unsigned long long v = strtoull(tok, NULL, 10);
        if (errno == 0) {
            mp_uint(out, v);
            return 0;
        }
    }
    /* A fraction, an exponent, or an integer past 64 bits. */
    errno = 0;
    double d = strtod(tok, NULL);
    if (!isfinite(d))
        return fail(ps, "number out of range");
    mp_double(out, d);
    return 0;
}

static int parse_literal(parser *ps, ctl_buf *out)
{
    static const struct {
        const char *text;
        uint8_t mp;
    } lits[] = {{"null", 0xc0}, {"false", 0xc2}, {"true", 0xc3}};
    for (size_t i = 0; i < LOOM_ARRAY_SIZE(lits); i++) {
        size_t n = strlen(lits[i].text);
        if ((size_t)(ps->end - ps->p) >= n && memcmp(ps->p, lits[i].text, n) == 0) {
            ps->p += n;
            put_u8(out, lits[i].mp);
            return 0;
        }
    }
    return fail(ps, "unexpected character '%c'", *ps->p);
}

/* One object member: "key": value. */
static int parse_member(parser *ps, ctl_buf *items, int depth)
{
    skip_ws(ps);
    if (ps->p >= ps->end || *ps->p != '"')
        return fail(ps, "expected a string key");
    if (parse_string(ps, items) < 0)
        return ps->err_code;
    skip_ws(ps);
    if (ps->p >= ps->end || *ps->p != ':')
        return fail(ps, "expected ':'");
    ps->p++;
    return parse_value(ps, items, depth + 1);
}

static int parse_container(parser *ps, ctl_buf *out, int depth, bool map)
{
    char close = map ? '}' : ']';
    ctl_buf items;
    ctl_buf_init(&items, ps->max_bytes);
    uint64_t n = 0;
    int rc = 0;
    ps->p++;
    skip_ws(ps);
    if (ps->p < ps->end && *ps->p == close) {
        ps->p++;
    } else {
        for (;;) {
            rc = map ? parse_member(ps, &items, depth) : parse_value(ps, &items, depth + 1);
            if (rc == 0)
                rc = buf_status(ps, &items);
            if (rc < 0)
                break;
            if (++n > UINT32_MAX) {
                rc = fail(ps, "too many items");
                break;
            }
            skip_ws(ps);
            if (ps->p < ps->end && *ps->p == ',') {
                ps->p++;
                continue;
            }
            if (ps->p < ps->end && *ps->p == close) {
                ps->p++;
                break;
            }
            rc = fail(ps, "expected ',' or '%c'", close);
            break;
        }
    }
    if (rc == 0) {
        mp_container_header(out, map, n);
        ctl_buf_put(out, items.data, items.len);
    }
    ctl_buf_free(&items);
    return rc;
}

static int parse_value(parser *ps, ctl_buf *out, int depth)
{
    if (depth > LOOMCTL_MAX_DEPTH)
        return fail(ps, "nested deeper than %d", LOOMCTL_MAX_DEPTH);
    skip_ws(ps);
    if (ps->p >= ps->end)
        return fail(ps, "unexpected end of input");
    int rc;
    char c = *ps->p;
    if (c == '{' || c == '[')
        rc = parse_container(ps, out, depth, c == '{');
    else if (c == '"')
        rc = parse_string(ps, out);
    else if (c == '-' || (c >= '0' && c <= '9'))
        rc = parse_number(ps, out);
    else
        rc = parse_literal(ps, out);
    if (rc == 0)
        rc = buf_status(ps, out);
    return rc;
}

int ctl_json_to_msgpack(const char *text, size_t len, size_t max_bytes, uint8_t **out,
                        size_t *out_len, char *err, size_t err_len)
{
    LOOM_ASSERT(err != NULL);
    LOOM_ASSERT(err_len > 0);
    *out = NULL;
    *out_len = 0;
    err[0] = '\0';
    parser ps = {.start = text,
                 .p = text,
                 .end = text + len,
                 .max_bytes = max_bytes,
                 .err = err,
                 .err_len = err_len};
    ctl_buf b;
    ctl_buf_init(&b, max_bytes);
    int rc = parse_value(&ps, &b, 1);
    if (rc == 0) {
        skip_ws(&ps);
        if (ps.p != ps.end)
            rc = fail(&ps, "trailing characters after the value");
    }
    if (rc < 0) {
        ctl_buf_free(&b);
        return rc;
    }
    *out = b.data;
    *out_len = b.len;
    return 0;
}

static int nibble(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

int ctl_hex_decode(const char *hex, uint8_t **out, size_t *out_len)
{
    size_t n = strlen(hex);
    *out = NULL;
    *out_len = 0;
    if (n % 2 != 0)
        return LOOM_EINVALID_ARGUMENT;
    uint8_t *b = malloc(n / 2 + 1);
    if (b == NULL)
        return LOOM_ENOMEM;
    for (size_t i = 0; i < n; i += 2) {
        int hi = nibble(hex[i]), lo = nibble(hex[i + 1]);
        if (hi < 0 || lo < 0) {
            free(b);
            return LOOM_EINVALID_ARGUMENT;
        }
        b[i / 2] = (uint8_t)(hi * 16 + lo);
    }
    *out = b;
    *out_len = n / 2;
    return 0;
}
