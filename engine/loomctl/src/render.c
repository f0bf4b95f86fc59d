/* msgpack to JSON text for people and scripts. A hand-written walker over
 * the raw bytes: every length is checked against what is left before it is
 * used, nesting is bounded, nothing is allocated by what the input claims.
 * The same walk validates (f == NULL) and then renders. */
#include "ctl.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct walker {
    const uint8_t *p, *end;
    FILE *f; /* NULL: validate only */
} walker;

size_t ctl_utf8_seq(const uint8_t *p, const uint8_t *end)
{
    uint8_t c = p[0];
    size_t n;
    uint32_t cp;
    if (c < 0x80)
        return 1;
    if (c >= 0xc2 && c <= 0xdf) {
        n = 2;
        cp = c & 0x1f;
    } else if (c >= 0xe0 && c <= 0xef) {
        n = 3;
        cp = c & 0x0f;
    } else if (c >= 0xf0 && c <= 0xf4) {
        n = 4;
        cp = c & 0x07;
    } else {
        return 0;
    }
    if ((size_t)(end - p) < n)
        return 0;
    for (size_t i = 1; i < n; i++) {
        if ((p[i] & 0xc0) != 0x80)
            return 0;
        cp = (cp << 6) | (p[i] & 0x3f);
    }
    /* Overlong forms, surrogates and code points past U+10FFFF. */
    if ((n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000) || cp > 0x10ffff ||
        (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return n;
}

void ctl_render_string(FILE *f, const char *s, size_t len)
{
    const uint8_t *p = (const uint8_t *)s, *end = p + len;
    fputc('"', f);
    while (p < end) {
        uint8_t c = *p;
        size_t n = c < 0x80 ? 1 : ctl_utf8_seq(p, end);
        if (c == '"' || c == '\\') {
            fputc('\\', f);
            fputc(c, f);
        } else if (c == '\n') {
            fputs("\\n", f);
        } else if (c == '\t') {
            fputs("\\t", f);
        } else if (c == '\r') {
            fputs("\\r", f);
        } else if (c < 0x20 || n == 0) {
            fprintf(f, "\\u%04x", c); /* invalid UTF-8 byte: kept visible, still JSON */
            n = 1;
        } else {
            fwrite(p, 1, n, f);
        }
        p += n;
    }
    fputc('"', f);
}

static void render_hex(FILE *f, const uint8_t *p, size_t n)
{
    fputc('"', f);
    for (size_t i = 0; i < n; i++)
        fprintf(f, "%02x", p[i]);
    fputc('"', f);
}

static bool take(walker *w, size_t n, const uint8_t **out)
{
    if ((size_t)(w->end - w->p) < n)
        return false;
    *out = w->p;
    w->p += n;
    return true;
}

static bool read_be(walker *w, int bytes, uint64_t *v)
{
    const uint8_t *b;
    if (!take(w, (size_t)bytes, &b))
        return false;
    *v = 0;
    for (int i = 0; i < bytes; i++)
        *v = (*v << 8) | b[i];
    return true;
}

static void render_double(FILE *f, double d)
{
    if (!isfinite(d)) {
        fprintf(f, "\"%s\"", isnan(d) ? "NaN" : d > 0 ? "Infinity" : "-Infinity");
        return;
    }
    char buf[64];
    snprintf(buf, sizeof buf, "%.15g", d);
    if (strtod(buf, NULL) != d)
        snprintf(buf, sizeof buf, "%.17g", d);
    fputs(buf, f);
}

static bool walk(walker *w, int depth);

static bool walk_str(walker *w, uint64_t n)
{
    const uint8_t *s;
    if (n > (uint64_t)(w->end - w->p) || !take(w, (size_t)n, &s))
        return false;
    if (w->f)
        ctl_render_string(w->f, (const char *)s, (size_t)n);
    return true;
}

static bool walk_bin(walker *w, uint64_t n, int ext_type, bool is_ext)
{
    const uint8_t *s;
    if (n > (uint64_t)(w->end - w->p) || !take(w, (size_t)n, &s))
        return false;
    if (w->f == NULL)
        return true;
    if (is_ext)
        fprintf(w->f, "{\"$ext\":%d,\"hex\":", ext_type);
    else
        fputs("{\"$bin\":", w->f);
    render_hex(w->f, s, (size_t)n);
    fputc('}', w->f);
    return true;
}

static bool walk_ext(walker *w, uint64_t n)
{
    const uint8_t *t;
    if (!take(w, 1, &t))
        return false;
    return walk_bin(w, n, (int8_t)t[0], true);
}

/* A map key that is not a string: its JSON text, as a string. */
static bool walk_key(walker *w, int depth)
{
    bool is_str = w->p < w->end && ((*w->p & 0xe0) == 0xa0 || (*w->p >= 0xd9 && *w->p <= 0xdb));
    if (w->f == NULL || is_str)
        return walk(w, depth);
    char *text = NULL;
    size_t len = 0;
    FILE *mem = open_memstream(&text, &len);
    if (mem == NULL)
        return walk(w, depth); /* out of memory: an unquoted key beats no output */
    walker sub = {.p = w->p, .end = w->end, .f = mem};
    bool ok = walk(&sub, depth);
    fclose(mem);
    if (ok) {
        w->p = sub.p;
        ctl_render_string(w->f, text, len);
    }
    free(text);
    return ok;
}

static bool walk_container(walker *w, uint64_t n, bool map, int depth)
{
    /* Every item takes at least one byte: a count past the bytes left is
     * a lie, refused before looping on it. */
    if (n > (uint64_t)(w->end - w->p))
        return false;
    if (w->f)
        fputc(map ? '{' : '[', w->f);
    for (uint64_t i = 0; i < n; i++) {
        if (w->f && i > 0)
            fputc(',', w->f);
        if (map) {
            if (!walk_key(w, depth + 1))
                return false;
            if (w->f)
                fputc(':', w->f);
        }
        if (!walk(w, depth + 1))
            return false;
    }
    if (w->f)
        fputc(map ? '}' : ']', w->f);
    return true;
}

static bool walk_uint(walker *w, int bytes)
{
    uint64_t v;
    if (!read_be(w, bytes, &v))
        return false;
    if (w->f)
        fprintf(w->f, "%llu", (unsigned long long)v);
    return true;
}

static bool walk_int(walker *w, int bytes)
{
    uint64_t v;
    if (!read_be(w, bytes, &v))
        return false;
    int shift = 64 - 8 * bytes;
    int64_t s = shift ? (int64_t)(v << shift) >> shift : (int64_t)v;
    if (w->f)
        fprintf(w->f, "%lld", (long long)s);
    return true;
}

static bool walk_float(walker *w, bool dbl)
{
    uint64_t v;
    if (!read_be(w, dbl ? 8 : 4, &v))
        return false;
    double d;
    if (dbl) {
        memcpy(&d, &v, sizeof d);
    } else {
        uint32_t u = (uint32_t)v;
        float fl;
        memcpy(&fl, &u, sizeof fl);
        d = fl;
    }
    if (w->f)
        render_double(w->f, d);
    return true;
}

static bool walk_sized(walker *w, uint8_t tag, int depth)
{
    static const int width[] = {1, 2, 4};
    uint64_t n;
    if (tag >= 0xc4 && tag <= 0xc6)
        return read_be(w, width[tag - 0xc4], &n) && walk_bin(w, n, 0, false);
    if (tag >= 0xc7 && tag <= 0xc9)
        return read_be(w, width[tag - 0xc7], &n) && walk_ext(w, n);
    if (tag >= 0xd4 && tag <= 0xd8)
        return walk_ext(w, (uint64_t)1 << (tag - 0xd4));
    if (tag >= 0xd9 && tag <= 0xdb)
        return read_be(w, width[tag - 0xd9], &n) && walk_str(w, n);
    if (tag == 0xdc || tag == 0xdd)
        return read_be(w, tag == 0xdc ? 2 : 4, &n) && walk_container(w, n, false, depth);
    if (tag == 0xde || tag == 0xdf)
        return read_be(w, tag == 0xde ? 2 : 4, &n) && walk_container(w, n, true, depth);
    return false; /* 0xc1 is never used */
}

static bool walk_scalar(walker *w, uint8_t tag)
{
    if (tag == 0xc0 || tag == 0xc2 || tag == 0xc3) {
        if (w->f)
            fputs(tag == 0xc0 ? "null" : tag == 0xc2 ? "false" : "true", w->f);
        return true;
    }
    if (tag == 0xca || tag == 0xcb)
        return walk_float(w, tag == 0xcb);
    if (tag >= 0xcc && tag <= 0xcf)
        return walk_uint(w, 1 << (tag - 0xcc));
    return walk_int(w, 1 << (tag - 0xd0)); /* 0xd0..0xd3 */
}

static bool walk(walker *w, int depth)
{
    const uint8_t *t;
    if (depth > LOOMCTL_MAX_DEPTH || !take(w, 1, &t))
        return false;
    uint8_t tag = t[0];
    if (tag <= 0x7f || tag >= 0xe0) {
        if (w->f)
            fprintf(w->f, "%d", tag <= 0x7f ? (int)tag : (int)(int8_t)tag);
        return true;
    }
    if (tag <= 0x8f)
        return walk_container(w, tag & 0x0f, true, depth);
    if (tag <= 0x9f)
        return walk_container(w, tag & 0x0f, false, depth);
    if (tag <= 0xbf)
        return walk_str(w, tag & 0x1f);
    if (tag == 0xc0 || tag == 0xc2 || tag == 0xc3 || (tag >= 0xca && tag <= 0xd3))
        return walk_scalar(w, tag);
    return walk_sized(w, tag, depth);
}

bool ctl_msgpack_valid(const uint8_t *data, size_t len)
{
    walker w = {.p = data, .end = data + len, .f = NULL};
    return len > 0 && walk(&w, 1) && w.p == w.end;
}

void ctl_render_msgpack(FILE *f, const uint8_t *data, size_t len)
{
    if (len == 0) {
        fputs("null", f);
        return;
    }
    if (!ctl_msgpack_valid(data, len)) {
        fputs("{\"$raw\":", f);
        render_hex(f, data, len);
        fputc('}', f);
        return;
    }
    walker w = {.p = data, .end = data + len, .f = f};
    bool ok = walk(&w, 1);
    LOOM_ASSERT(ok); /* validated just above */
}
