#include <criterion/criterion.h>
#include <string.h>

#include "loom/payload.h"

/* Builds {"type": "invoice_created", "amount": -42, "ok": true,
 * "blob": bin(3), "items": ["a", 7], "nested": {"k": "v"}} in a fresh w;
 * the caller frees w. */
static void build_sample(loom_mp_writer *w, const uint8_t **data, size_t *len)
{
    static const uint8_t blob[3] = {0, 1, 2};
    loom_mp_writer_init(w, 0);
    loom_mp_map(w, 6);
    loom_mp_kv_str(w, "type", "invoice_created");
    loom_mp_kv_int(w, "amount", -42);
    loom_mp_kv_bool(w, "ok", true);
    loom_mp_str(w, "blob");
    loom_mp_bin(w, blob, sizeof blob);
    loom_mp_str(w, "items");
    loom_mp_array(w, 2);
    loom_mp_str(w, "a");
    loom_mp_uint(w, 7);
    loom_mp_str(w, "nested");
    loom_mp_map(w, 1);
    loom_mp_kv_str(w, "k", "v");
    cr_assert_eq(loom_mp_writer_finish(w, data, len), 0);
}

Test(payload, round_trip_of_every_supported_type)
{
    loom_mp_writer w;
    const uint8_t *data;
    size_t len;
    build_sample(&w, &data, &len);

    loom_mp_doc d;
    cr_assert_eq(loom_mp_parse(&d, data, len), 0, "%s", loom_errdetail());
    char type[32];
    cr_assert_eq(loom_mp_get_strcpy(d.root, "type", type, sizeof type), 0);
    cr_assert_str_eq(type, "invoice_created");
    int64_t amount;
    cr_assert_eq(loom_mp_get_int(d.root, "amount", &amount), 0);
    cr_assert_eq(amount, -42);
    bool ok = false;
    cr_assert_eq(loom_mp_get_bool(d.root, "ok", &ok), 0);
    cr_assert(ok);
    const uint8_t *blob;
    size_t blob_len;
    cr_assert_eq(loom_mp_get_bin(d.root, "blob", &blob, &blob_len), 0);
    cr_assert_eq(blob_len, 3);
    cr_assert_eq(blob[2], 2);
    const loom_mp_obj *items;
    cr_assert_eq(loom_mp_get_array(d.root, "items", &items), 0);
    cr_assert_eq(items->via.array.size, 2);
    cr_assert(loom_mp_str_eq(&items->via.array.ptr[0], "a"));
    int64_t seven;
    cr_assert_eq(loom_mp_as_int(&items->via.array.ptr[1], &seven), 0);
    cr_assert_eq(seven, 7);
    const loom_mp_obj *nested;
    cr_assert_eq(loom_mp_get_map(d.root, "nested", &nested), 0);
    const char *v;
    size_t v_len;
    cr_assert_eq(loom_mp_get_str(nested, "k", &v, &v_len), 0);
    cr_assert_eq(v_len, 1);
    cr_assert_eq(v[0], 'v');
    loom_mp_doc_free(&d);
    loom_mp_writer_free(&w);
}

Test(payload, missing_key_and_wrong_type_are_named)
{
    loom_mp_writer w;
    const uint8_t *data;
    size_t len;
    build_sample(&w, &data, &len);
    loom_mp_doc d;
    cr_assert_eq(loom_mp_parse(&d, data, len), 0);
    int64_t i;
    cr_assert_eq(loom_mp_get_int(d.root, "absent", &i), LOOM_ENOT_FOUND);
    cr_assert(strstr(loom_errdetail(), "absent") != NULL);
    cr_assert_eq(loom_mp_get_int(d.root, "type", &i), LOOM_EINVALID_ARGUMENT);
    cr_assert(strstr(loom_errdetail(), "expected int, got str") != NULL, "%s", loom_errdetail());
    const char *s;
    size_t n;
    cr_assert_eq(loom_mp_get_str(d.root, "amount", &s, &n), LOOM_EINVALID_ARGUMENT);
    uint64_t u;
    cr_assert_eq(loom_mp_get_uint(d.root, "amount", &u), LOOM_EINVALID_ARGUMENT);
    char small[4];
    cr_assert_eq(loom_mp_get_strcpy(d.root, "type", small, sizeof small), LOOM_EINVALID_ARGUMENT);
    const loom_mp_obj *items;
    cr_assert_eq(loom_mp_get_array(d.root, "items", &items), 0);
    cr_assert_eq(loom_mp_get(items, "x", &items), LOOM_EINVALID_ARGUMENT);
    loom_mp_doc_free(&d);
    loom_mp_writer_free(&w);
}

/* Every proper prefix of a valid payload is an error, never a crash. */
Test(payload, every_truncation_is_an_error)
{
    loom_mp_writer w;
    const uint8_t *data;
    size_t len;
    build_sample(&w, &data, &len);
    for (size_t cut = 0; cut < len; cut++) {
        uint8_t *copy = malloc(cut + 1); /* exact size: ASan catches over-reads */
        memcpy(copy, data, cut);
        loom_mp_doc d;
        cr_assert_eq(loom_mp_parse(&d, copy, cut), LOOM_EINVALID_ARGUMENT, "cut at %zu", cut);
        free(copy);
    }
    loom_mp_writer_free(&w);
}

/* Random byte flips of a valid payload either parse or fail cleanly. */
Test(payload, mutated_input_never_crashes)
{
    loom_mp_writer w;
    const uint8_t *data;
    size_t len;
    build_sample(&w, &data, &len);
    uint32_t rng = 12345;
    int parsed = 0, refused = 0;
    for (int round = 0; round < 20000; round++) {
        uint8_t *copy = malloc(len);
        memcpy(copy, data, len);
        for (int flips = 0; flips < 3; flips++) {
            rng = rng * 1103515245u + 12345u;
            copy[(rng >> 8) % len] = (uint8_t)(rng >> 20);
        }
        loom_mp_doc d;
        int err = loom_mp_parse(&d, copy, len);
        if (err == 0) {
            int64_t i;
            (void)loom_mp_get_int(d.root, "amount", &i);
            loom_mp_doc_free(&d);
            parsed++;
        } else {
            cr_assert_eq(err, LOOM_EINVALID_ARGUMENT);
            refused++;
        }
        free(copy);
    }
    cr_assert_gt(refused, 0);
    cr_assert_gt(parsed, 0);
    loom_mp_writer_free(&w);
}

Test(payload, hostile_counts_are_refused_before_allocation)
{
    /* array32 claiming 4 billion items, map32 likewise, str32 of 4 GiB */
    static const uint8_t arr[] = {0xdd, 0xff, 0xff, 0xff, 0xff, 0x01};
    static const uint8_t map[] = {0xdf, 0xff, 0xff, 0xff, 0xff, 0x01, 0x02};
    static const uint8_t str[] = {0xdb, 0xff, 0xff, 0xff, 0xff, 'a'};
    static const uint8_t reserved[] = {0xc1};
    static const uint8_t trailing[] = {0x01, 0x02};
    loom_mp_doc d;
    cr_assert_eq(loom_mp_parse(&d, arr, sizeof arr), LOOM_EINVALID_ARGUMENT);
    cr_assert(strstr(loom_errdetail(), "count") != NULL, "%s", loom_errdetail());
    cr_assert_eq(loom_mp_parse(&d, map, sizeof map), LOOM_EINVALID_ARGUMENT);
    cr_assert_eq(loom_mp_parse(&d, str, sizeof str), LOOM_EINVALID_ARGUMENT);
    cr_assert_eq(loom_mp_parse(&d, reserved, sizeof reserved), LOOM_EINVALID_ARGUMENT);
    cr_assert_eq(loom_mp_parse(&d, trailing, sizeof trailing), LOOM_EINVALID_ARGUMENT);
    cr_assert(strstr(loom_errdetail(), "trailing") != NULL);
    cr_assert_eq(loom_mp_parse(&d, NULL, 0), LOOM_EINVALID_ARGUMENT);
}

Test(payload, nesting_is_bounded)
{
    uint8_t deep[LOOM_MP_MAX_DEPTH + 2];
    memset(deep, 0x91, sizeof deep); /* [[[[...]]]] */
    deep[sizeof deep - 1] = 0x01;
    loom_mp_doc d;
    cr_assert_eq(loom_mp_parse(&d, deep, sizeof deep), LOOM_EINVALID_ARGUMENT);
    cr_assert(strstr(loom_errdetail(), "deep") != NULL);
    /* the deepest allowed nesting parses */
    uint8_t ok[LOOM_MP_MAX_DEPTH + 1];
    memset(ok, 0x91, sizeof ok);
    ok[sizeof ok - 1] = 0x01;
    cr_assert_eq(loom_mp_parse(&d, ok, sizeof ok), 0, "%s", loom_errdetail());
    loom_mp_doc_free(&d);
}

Test(payload, writer_cap_is_sticky)
{
    loom_mp_writer w;
    loom_mp_writer_init(&w, 16);
    loom_mp_array(&w, 3);
    loom_mp_str(&w, "0123456789");
    loom_mp_str(&w, "0123456789");
    loom_mp_int(&w, 1);
    const uint8_t *data;
    size_t len;
    cr_assert_eq(loom_mp_writer_finish(&w, &data, &len), LOOM_ERESOURCE_EXHAUSTED);
    loom_mp_writer_free(&w);

    loom_mp_writer_init(&w, 0);
    loom_mp_str(&w, NULL);
    cr_assert_eq(loom_mp_writer_finish(&w, &data, &len), LOOM_EINVALID_ARGUMENT);
    loom_mp_writer_free(&w);
}

Test(payload, raw_embeds_only_valid_msgpack)
{
    static const uint8_t inner[] = {0x81, 0xa1, 'k', 0x05}; /* {"k": 5} */
    static const uint8_t bad[] = {0x81, 0xa1};
    loom_mp_writer w;
    loom_mp_writer_init(&w, 0);
    loom_mp_array(&w, 1);
    loom_mp_raw(&w, inner, sizeof inner);
    const uint8_t *data;
    size_t len;
    cr_assert_eq(loom_mp_writer_finish(&w, &data, &len), 0);
    cr_assert_eq(loom_mp_validate(data, len), 0);
    loom_mp_writer_free(&w);
    loom_mp_writer_init(&w, 0);
    loom_mp_raw(&w, bad, sizeof bad);
    cr_assert_eq(loom_mp_writer_finish(&w, &data, &len), LOOM_EINVALID_ARGUMENT);
    loom_mp_writer_free(&w);
}

/* A lone scalar is a whole document too (msgpack-c gives it no zone). */
Test(payload, scalar_documents_parse)
{
    static const uint8_t fixint[] = {0x0a};
    static const uint8_t str[] = {0xa2, 'h', 'i'};
    loom_mp_doc d;
    cr_assert_eq(loom_mp_parse(&d, fixint, sizeof fixint), 0);
    int64_t v;
    cr_assert_eq(loom_mp_as_int(d.root, &v), 0);
    cr_assert_eq(v, 10);
    int64_t i;
    cr_assert_eq(loom_mp_get_int(d.root, "x", &i), LOOM_EINVALID_ARGUMENT, "not a map");
    loom_mp_doc_free(&d);
    cr_assert_eq(loom_mp_parse(&d, str, sizeof str), 0);
    cr_assert(loom_mp_str_eq(d.root, "hi"));
    loom_mp_doc_free(&d);
}
