/* Payload checks protobuf-c does not make (proto/src/wirecheck.c), seen
 * through loom_envelope_decode. */
#include <criterion/criterion.h>
#include <string.h>

#include "loom/wire.h"

/* Envelope{correlation_id: 8, call: {ns: <ns>}}. */
static size_t call_with_ns(uint8_t *out, const char *ns, size_t ns_len)
{
    size_t at = 0;
    out[at++] = 0x08;
    out[at++] = 0x08;
    out[at++] = 0x62; /* field 12, length-delimited */
    out[at++] = (uint8_t)(2 + ns_len);
    out[at++] = 0x0a; /* CallRequest.ns */
    out[at++] = (uint8_t)ns_len;
    memcpy(out + at, ns, ns_len);
    return at + ns_len;
}

static int decode_ns(const char *ns, size_t ns_len)
{
    uint8_t buf[128];
    size_t len = call_with_ns(buf, ns, ns_len);
    loom_envelope *env = NULL;
    int rc = loom_envelope_decode(buf, len, &env);
    cr_assert((rc == 0) == (env != NULL));
    if (env != NULL) {
        cr_assert_eq(strlen(env->call->ns), ns_len);
        cr_assert_eq(memcmp(env->call->ns, ns, ns_len), 0);
    }
    loom_envelope_free(env);
    return rc;
}

#define DECODE_NS(lit) decode_ns(lit, sizeof(lit) - 1)

Test(wirecheck, valid_utf8_strings_pass)
{
    cr_assert_eq(DECODE_NS(""), 0);
    cr_assert_eq(DECODE_NS("invoice"), 0);
    cr_assert_eq(DECODE_NS("fatura-\xc3\xb6\xc4\x9f"), 0);          /* 2-byte */
    cr_assert_eq(DECODE_NS("\xe2\x82\xac-\xed\x9f\xbf"), 0);        /* 3-byte, U+D7FF */
    cr_assert_eq(DECODE_NS("\xf0\x9f\x98\x80\xf4\x8f\xbf\xbf"), 0); /* U+1F600, U+10FFFF */
}

Test(wirecheck, invalid_utf8_is_refused)
{
    const char *bad[] = {
        "\x80",             /* lone continuation */
        "\xc3",             /* truncated */
        "\xc0\xaf",         /* overlong '/' */
        "\xe0\x80\xaf",     /* overlong */
        "\xed\xa0\x80",     /* surrogate U+D800 */
        "\xf4\x90\x80\x80", /* above U+10FFFF */
        "\xf8\x88\x80\x80\x80",
        "ok\xff",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        cr_assert_eq(decode_ns(bad[i], strlen(bad[i])), LOOM_EPROTOCOL, "case %zu accepted", i);
        cr_assert(strstr(loom_errdetail(), "not valid UTF-8") != NULL, "%s", loom_errdetail());
        cr_assert(strstr(loom_errdetail(), "'ns'") != NULL, "%s", loom_errdetail());
    }
}

Test(wirecheck, nul_inside_a_string_is_refused)
{
    /* protobuf-c would hand this out as "inv": another machine's name. */
    cr_assert_eq(decode_ns("inv\0x", 5), LOOM_EPROTOCOL);
    cr_assert(strstr(loom_errdetail(), "NUL") != NULL, "%s", loom_errdetail());
}

Test(wirecheck, strings_in_nested_and_repeated_messages_are_checked)
{
    /* Envelope{process_reply: {failure: {reason: "\xff"}}} */
    const uint8_t bad_reason[] = {0xca, 0x02, 0x05, 0x12, 0x03, 0x0a, 0x01, 0xff};
    loom_envelope *env = NULL;
    cr_assert_eq(loom_envelope_decode(bad_reason, sizeof bad_reason, &env), LOOM_EPROTOCOL);
    cr_assert(strstr(loom_errdetail(), "'reason'") != NULL, "%s", loom_errdetail());
    /* Envelope{register_namespace: {config: {processor_endpoints: ["ok", "\xc3"]}}} */
    const uint8_t bad_endpoint[] = {0xd2, 0x01, 0x09, 0x0a, 0x07, 0x12,
                                    0x02, 'o',  'k',  0x12, 0x01, 0xc3};
    cr_assert_eq(loom_envelope_decode(bad_endpoint, sizeof bad_endpoint, &env), LOOM_EPROTOCOL);
    cr_assert(strstr(loom_errdetail(), "processor_endpoints") != NULL, "%s", loom_errdetail());
}

Test(wirecheck, bytes_fields_may_hold_anything)
{
    /* Envelope{call: {args: ff 00 c3}} */
    const uint8_t payload[] = {0x62, 0x05, 0x1a, 0x03, 0xff, 0x00, 0xc3};
    loom_envelope *env = NULL;
    cr_assert_eq(loom_envelope_decode(payload, sizeof payload, &env), 0, "%s", loom_errdetail());
    cr_assert_eq(env->call->args.len, 3);
    loom_envelope_free(env);
}

Test(wirecheck, field_number_zero_is_refused)
{
    /* A CallRequest whose range carries "85 00": an over-long tag spelling
     * field 0, which protobuf-c alone accepts and then re-encodes into
     * bytes no decoder reads. */
    const uint8_t payload[] = {0x08, 0x08, 0x62, 0x0d, 0x0a, 0x01, 0x78, 0x22, 0x08,
                               0x08, 0x0a, 0x85, 0x00, 0x00, 0x01, 0x10, 0x00};
    loom_envelope *env = NULL;
    cr_assert_eq(loom_envelope_decode(payload, sizeof payload, &env), LOOM_EPROTOCOL);
    cr_assert_null(env);
    cr_assert(strstr(loom_errdetail(), "field number 0") != NULL, "%s", loom_errdetail());
}

Test(wirecheck, unknown_fields_are_skipped_not_entered)
{
    /* Field 99 of CallRequest holds bytes that would be invalid UTF-8 and a
     * bogus nested key if they were parsed: unknown, so only skipped. */
    const uint8_t payload[] = {0x62, 0x05, 0x9a, 0x06, 0x02, 0xff, 0x00};
    loom_envelope *env = NULL;
    cr_assert_eq(loom_envelope_decode(payload, sizeof payload, &env), 0, "%s", loom_errdetail());
    loom_envelope_free(env);
}

Test(wirecheck, encode_refuses_strings_a_peer_would_refuse)
{
    Loom__V1__MachineSummary ms = LOOM__V1__MACHINE_SUMMARY__INIT;
    Loom__V1__MachineSummary *msp[2] = {&ms, &ms};
    ms.id = "inv-1";
    ms.failure_reason = "remote said \xe2\x82"; /* cut inside a character */
    Loom__V1__ListMachinesReply r = LOOM__V1__LIST_MACHINES_REPLY__INIT;
    r.n_machines = 2;
    r.machines = msp;
    loom_envelope env = LOOM__V1__ENVELOPE__INIT;
    env.body_case = LOOM__V1__ENVELOPE__BODY_LIST_MACHINES_REPLY;
    env.list_machines_reply = &r;
    uint8_t *frame = NULL;
    size_t len;
    cr_assert_eq(loom_envelope_encode(&env, 0, &frame, &len), LOOM_EINVALID_ARGUMENT);
    cr_assert_null(frame);
    cr_assert(strstr(loom_errdetail(), "'failure_reason'") != NULL, "%s", loom_errdetail());
    ms.failure_reason = "remote said \xe2\x82\xac";
    cr_assert_eq(loom_envelope_encode(&env, 0, &frame, &len), 0, "%s", loom_errdetail());
    free(frame);
    char *eps[] = {"tcp:127.0.0.1:1", "unix:/tmp/\xff"};
    Loom__V1__NamespaceConfig nc = LOOM__V1__NAMESPACE_CONFIG__INIT;
    nc.n_processor_endpoints = 2;
    nc.processor_endpoints = eps;
    Loom__V1__RegisterNamespaceRequest rn = LOOM__V1__REGISTER_NAMESPACE_REQUEST__INIT;
    rn.config = &nc;
    env.body_case = LOOM__V1__ENVELOPE__BODY_REGISTER_NAMESPACE;
    env.register_namespace = &rn;
    cr_assert_eq(loom_envelope_encode(&env, 0, &frame, &len), LOOM_EINVALID_ARGUMENT);
    cr_assert(strstr(loom_errdetail(), "processor_endpoints") != NULL, "%s", loom_errdetail());
}

Test(wirecheck, utf8_valid)
{
    cr_assert(loom_utf8_valid("", 0));
    cr_assert(loom_utf8_valid("\xc3\xb6", 2));
    cr_assert_not(loom_utf8_valid("\xc3", 1));
    cr_assert_not(loom_utf8_valid("a\0b", 3));
    cr_assert_not(loom_utf8_valid("\xed\xb0\x80", 3));
}

Test(wirecheck, utf8_trim_drops_only_a_cut_sequence)
{
    struct {
        const char *in, *out;
    } cases[] = {
        {"", ""},
        {"plain", "plain"},
        {"ab\xc3", "ab"},
        {"ab\xe2\x82", "ab"},
        {"ab\xe2\x82\xac", "ab\xe2\x82\xac"},
        {"ab\xf0\x9f\x98", "ab"},
        {"ab\xf0\x9f\x98\x80", "ab\xf0\x9f\x98\x80"},
        {"\xc3", ""},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char buf[32];
        snprintf(buf, sizeof buf, "%s", cases[i].in);
        loom_utf8_trim(buf);
        cr_assert_str_eq(buf, cases[i].out, "case %zu", i);
    }
    /* The use it is for: what snprintf leaves of "abcde\xc3\xb6" in a
     * 7-byte buffer, the character split in two. */
    char reason[7];
    memcpy(reason, "abcde\xc3", 7);
    cr_assert_not(loom_utf8_valid(reason, strlen(reason)));
    loom_utf8_trim(reason);
    cr_assert(loom_utf8_valid(reason, strlen(reason)), "%s", reason);
    cr_assert_str_eq(reason, "abcde");
}
