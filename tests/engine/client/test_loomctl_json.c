/* loomctl's JSON to msgpack converter and msgpack to JSON renderer
 * (engine/loomctl/src/json.c, render.c). Conversions are checked against
 * msgpack-c's own packer, and every rendering against the expected text. */
#include <criterion/criterion.h>

#include <msgpack.h>
#include <stdlib.h>
#include <string.h>

#include "ctl.h"

static char err[256];

/* JSON -> msgpack, asserting success. */
static msgpack_sbuffer *mp(const char *json)
{
    uint8_t *out = NULL;
    size_t len = 0;
    int rc = ctl_json_to_msgpack(json, strlen(json), 1 << 20, &out, &len, err, sizeof err);
    cr_assert_eq(rc, 0, "%s: %s", json, err);
    msgpack_sbuffer *sb = msgpack_sbuffer_new();
    msgpack_sbuffer_write(sb, (const char *)out, len);
    free(out);
    return sb;
}

static int bad(const char *json)
{
    uint8_t *out = (uint8_t *)1;
    size_t len = 0;
    int rc = ctl_json_to_msgpack(json, strlen(json), 1 << 20, &out, &len, err, sizeof err);
    cr_assert_null(out);
    return rc;
}

static char *render(const void *data, size_t len)
{
    char *text = NULL;
    size_t text_len = 0;
    FILE *f = open_memstream(&text, &text_len);
    ctl_render_msgpack(f, data, len);
    fclose(f);
    return text;
}

static void expect_same(msgpack_sbuffer *got, msgpack_sbuffer *want)
{
    cr_assert_eq(got->size, want->size);
    cr_assert_eq(memcmp(got->data, want->data, got->size), 0);
    msgpack_sbuffer_free(got);
    msgpack_sbuffer_free(want);
}

Test(loomctl_json, scalars_match_msgpack_c)
{
    struct {
        const char *json;
        int kind; /* 0 nil 1 true 2 false 3 uint 4 int 5 double */
        double v;
    } cases[] = {{"null", 0, 0},   {"true", 1, 0},        {"false", 2, 0},     {"0", 3, 0},
                 {"127", 3, 127},  {"128", 3, 128},       {"65536", 3, 65536}, {"-1", 4, -1},
                 {"-33", 4, -33},  {"-40000", 4, -40000}, {"1.5", 5, 1.5},     {"-2e3", 5, -2000},
                 {"1E-2", 5, 0.01}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        msgpack_sbuffer *want = msgpack_sbuffer_new();
        msgpack_packer pk;
        msgpack_packer_init(&pk, want, msgpack_sbuffer_write);
        switch (cases[i].kind) {
        case 0:
            msgpack_pack_nil(&pk);
            break;
        case 1:
            msgpack_pack_true(&pk);
            break;
        case 2:
            msgpack_pack_false(&pk);
            break;
        case 3:
            msgpack_pack_uint64(&pk, (uint64_t)cases[i].v);
            break;
        case 4:
            msgpack_pack_int64(&pk, (int64_t)cases[i].v);
            break;
        default:
            msgpack_pack_double(&pk, cases[i].v);
            break;
        }
        expect_same(mp(cases[i].json), want);
    }
}

Test(loomctl_json, big_integers_keep_64_bits)
{
    msgpack_sbuffer *want = msgpack_sbuffer_new();
    msgpack_packer pk;
    msgpack_packer_init(&pk, want, msgpack_sbuffer_write);
    msgpack_pack_array(&pk, 3);
    msgpack_pack_uint64(&pk, UINT64_MAX);
    msgpack_pack_int64(&pk, INT64_MIN);
    msgpack_pack_double(&pk, 18446744073709551616.0); /* 2^64: past uint64, a float */
    expect_same(mp("[18446744073709551615, -9223372036854775808, 18446744073709551616]"), want);
}

Test(loomctl_json, containers_and_strings_match_msgpack_c)
{
    msgpack_sbuffer *want = msgpack_sbuffer_new();
    msgpack_packer pk;
    msgpack_packer_init(&pk, want, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 3);
    msgpack_pack_str_with_body(&pk, "type", 4);
    msgpack_pack_str_with_body(&pk, "invoice", 7);
    msgpack_pack_str_with_body(&pk, "items", 5);
    msgpack_pack_array(&pk, 17);
    for (int i = 0; i < 17; i++)
        msgpack_pack_uint64(&pk, (uint64_t)i);
    msgpack_pack_str_with_body(&pk, "s", 1);
    /* \u00e9 = c3 a9, \ud83d\ude00 = f0 9f 98 80, plus escapes */
    msgpack_pack_str_with_body(&pk, "\xc3\xa9\xf0\x9f\x98\x80\"\\/\b\f\n\r\t", 14);
    expect_same(mp(" {\"type\" : \"invoice\", \"items\":[0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16],"
                   "\"s\":\"\\u00e9\\ud83d\\ude00\\\"\\\\\\/\\b\\f\\n\\r\\t\"}\n"),
                want);
}

Test(loomctl_json, long_strings_use_wider_headers)
{
    size_t n = 70000;
    char *json = malloc(n + 3);
    json[0] = '"';
    memset(json + 1, 'x', n);
    json[n + 1] = '"';
    json[n + 2] = '\0';
    msgpack_sbuffer *want = msgpack_sbuffer_new();
    msgpack_packer pk;
    msgpack_packer_init(&pk, want, msgpack_sbuffer_write);
    msgpack_pack_str_with_body(&pk, json + 1, n);
    expect_same(mp(json), want);
    free(json);
}

Test(loomctl_json, malformed_input_is_refused_with_offset)
{
    const char *cases[] = {
        "",      "{",   "[1,]",     "{\"a\"}",  "{a:1}",   "01",          "1.",
        "-",     "1e",  "tru",      "\"abc",    "\"\\x\"", "\"\\ud800\"", "\"\\udc00\"",
        "[1 2]", "1 2", "\"\x01\"", "\"\xff\"", "nulll",   "{\"a\":1,}",  "1e999"};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        cr_assert_eq(bad(cases[i]), LOOM_EINVALID_ARGUMENT, "accepted: %s", cases[i]);
        cr_assert(strncmp(err, "offset ", 7) == 0, "%s", err);
    }
}

Test(loomctl_json, nesting_is_bounded)
{
    char deep[300];
    memset(deep, '[', 200);
    deep[200] = '\0';
    cr_assert_eq(bad(deep), LOOM_EINVALID_ARGUMENT);
    cr_assert(strstr(err, "nested deeper") != NULL, "%s", err);
    char ok[2 * LOOMCTL_MAX_DEPTH + 1];
    memset(ok, '[', LOOMCTL_MAX_DEPTH);
    memset(ok + LOOMCTL_MAX_DEPTH, ']', LOOMCTL_MAX_DEPTH);
    ok[2 * LOOMCTL_MAX_DEPTH] = '\0';
    msgpack_sbuffer_free(mp(ok));
}

Test(loomctl_json, output_limit_is_enforced)
{
    uint8_t *out = NULL;
    size_t len = 0;
    const char *json = "\"0123456789012345678901234567890123456789\"";
    cr_assert_eq(ctl_json_to_msgpack(json, strlen(json), 16, &out, &len, err, sizeof err),
                 LOOM_ERESOURCE_EXHAUSTED);
    cr_assert_null(out);
}

Test(loomctl_render, json_round_trips_through_msgpack)
{
    const char *cases[] = {
        "null",
        "true",
        "false",
        "0",
        "-1",
        "18446744073709551615",
        "-9223372036854775808",
        "1.5",
        "[]",
        "{}",
        "[1,[2,[3]]]",
        "{\"a\":{\"b\":[true,null]},\"c\":\"d\"}",
        "\"\xc3\xa9\\n\\t\\\"\\\\\"",
        "0.1",
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        msgpack_sbuffer *sb = mp(cases[i]);
        char *text = render(sb->data, sb->size);
        cr_assert_str_eq(text, cases[i]);
        free(text);
        msgpack_sbuffer_free(sb);
    }
}

Test(loomctl_render, bin_ext_and_odd_keys)
{
    msgpack_sbuffer *sb = msgpack_sbuffer_new();
    msgpack_packer pk;
    msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 3);
    msgpack_pack_uint64(&pk, 7);
    msgpack_pack_bin_with_body(&pk, "\x01\xab", 2);
    msgpack_pack_array(&pk, 1);
    msgpack_pack_true(&pk);
    msgpack_pack_ext_with_body(&pk, "\xff", 1, 5);
    msgpack_pack_str_with_body(&pk, "bad\xff", 4);
    msgpack_pack_float(&pk, 0.5f);
    char *text = render(sb->data, sb->size);
    cr_assert_str_eq(text, "{\"7\":{\"$bin\":\"01ab\"},\"[true]\":{\"$ext\":5,\"hex\":\"ff\"},"
                           "\"bad\\u00ff\":0.5}");
    free(text);
    msgpack_sbuffer_free(sb);
}

Test(loomctl_render, broken_msgpack_is_shown_raw)
{
    struct {
        const char *bytes;
        size_t len;
    } cases[] = {
        {"\xc1", 1},                  /* never-used type byte */
        {"\x92\x01", 2},              /* array of 2 with 1 item */
        {"\xdd\xff\xff\xff\xff", 5},  /* array claiming 4 G items */
        {"\xdb\x00\x01\x00\x00z", 6}, /* str32 longer than the input */
        {"\x01\x02", 2},              /* two objects */
        {"\xcb\x00", 2},              /* truncated double */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        cr_assert_not(ctl_msgpack_valid((const uint8_t *)cases[i].bytes, cases[i].len));
        char *text = render(cases[i].bytes, cases[i].len);
        cr_assert(strncmp(text, "{\"$raw\":\"", 9) == 0, "%s", text);
        free(text);
    }
    char *text = render("", 0);
    cr_assert_str_eq(text, "null");
    free(text);
}

Test(loomctl_render, deep_msgpack_is_refused)
{
    uint8_t deep[LOOMCTL_MAX_DEPTH + 10];
    memset(deep, 0x91, sizeof deep - 1); /* arrays of one array of one... */
    deep[sizeof deep - 1] = 0xc0;
    cr_assert_not(ctl_msgpack_valid(deep, sizeof deep));
}

Test(loomctl_json, hex_decoder)
{
    uint8_t *out = NULL;
    size_t len = 0;
    cr_assert_eq(ctl_hex_decode("00fFa5", &out, &len), 0);
    cr_assert_eq(len, 3);
    cr_assert_eq(out[0], 0x00);
    cr_assert_eq(out[1], 0xff);
    cr_assert_eq(out[2], 0xa5);
    free(out);
    cr_assert_eq(ctl_hex_decode("abc", &out, &len), LOOM_EINVALID_ARGUMENT);
    cr_assert_eq(ctl_hex_decode("zz", &out, &len), LOOM_EINVALID_ARGUMENT);
    cr_assert_eq(ctl_hex_decode("", &out, &len), 0);
    cr_assert_eq(len, 0);
    free(out);
}

/* The fuzz target's property on a fixed seed, so every ASan run of the
 * suite exercises it: mutated JSON and random bytes never crash either
 * converter, and whatever converts is one well-formed msgpack object. */
Test(loomctl_json, mutated_inputs_never_break_the_converters)
{
    static const char *seeds[] = {
        "{\"type\":\"invoice\",\"items\":[1,-2,3.5e10,\"\\u00e9\",null,true,{\"a\":[]}]}",
        "[[[[\"\\ud83d\\ude00\"]]],{\"k\":18446744073709551615}]",
    };
    uint64_t x = 0x9e3779b97f4a7c15u;
    char buf[256];
    for (int round = 0; round < 20000; round++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        const char *seed = seeds[x % 2];
        size_t len = strlen(seed);
        memcpy(buf, seed, len);
        for (int m = 0; m < 1 + (int)(x >> 60); m++) {
            uint64_t r = x * (uint64_t)(m + 1) * 0x2545f4914f6cdd1du;
            if ((r & 1) && len > 0)
                buf[(r >> 8) % len] = (char)(r >> 24); /* flip a byte */
            else
                len = (r >> 8) % (len + 1); /* truncate */
        }
        uint8_t *mp = NULL;
        size_t mp_len = 0;
        if (ctl_json_to_msgpack(buf, len, 1 << 16, &mp, &mp_len, err, sizeof err) == 0)
            cr_assert(ctl_msgpack_valid(mp, mp_len), "round %d", round);
        char *text = render(mp ? mp : (const uint8_t *)buf, mp ? mp_len : len);
        cr_assert_not_null(text);
        free(text);
        free(mp);
    }
}
