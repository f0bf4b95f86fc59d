/* proto/loom.proto's ErrorCode enum and the C error table
 * (storage/include/loom/error.h) carry the same names and numbers: codes
 * cross the wire, so a drift between them would mislabel every error. */
#include <criterion/criterion.h>
#include <string.h>

#include "loom/wire.h"

static const struct {
    int code;
    const char *name;
} c_table[] = {
#define ROW(name, num, msg) {LOOM_E##name, #name},
    LOOM_ERRNO_MAP(ROW)
#undef ROW
};

Test(error_codes, every_proto_code_is_in_the_c_table)
{
    const ProtobufCEnumDescriptor *d = &loom__v1__error_code__descriptor;
    cr_assert_gt(d->n_values, 1);
    for (unsigned i = 0; i < d->n_values; i++) {
        const ProtobufCEnumValue *v = &d->values[i];
        cr_assert_geq(v->value, 0);
        cr_assert_str_eq(loom_err_name(-v->value), v->name, "proto %s = %d", v->name, v->value);
        if (v->value != 0)
            cr_assert_str_neq(loom_strerror(-v->value), "unknown error", "%s", v->name);
    }
}

Test(error_codes, every_c_code_is_in_the_proto_enum)
{
    const ProtobufCEnumDescriptor *d = &loom__v1__error_code__descriptor;
    for (size_t i = 0; i < LOOM_ARRAY_SIZE(c_table); i++) {
        int wire = (int)loom_err_wire(c_table[i].code);
        const ProtobufCEnumValue *v = protobuf_c_enum_descriptor_get_value(d, wire);
        cr_assert_not_null(v, "C code %s (%d) missing from loom.proto", c_table[i].name, wire);
        cr_assert_str_eq(v->name, c_table[i].name);
        const ProtobufCEnumValue *by_name =
            protobuf_c_enum_descriptor_get_value_by_name(d, c_table[i].name);
        cr_assert_not_null(by_name);
        cr_assert_eq(by_name->value, wire);
    }
    /* OK plus one value per C code, nothing else. */
    cr_assert_eq(d->n_values, LOOM_ARRAY_SIZE(c_table) + 1);
    cr_assert_str_eq(loom_err_name(0), "OK");
    cr_assert_not_null(protobuf_c_enum_descriptor_get_value_by_name(d, "OK"));
}
