/*  =========================================================================
    test_herald_err - the error enum, its wire codes and the version string
    =========================================================================
*/

#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>
#include "herald.h"

static const struct {
    herald_err err;
    const char *code;
} s_codes [] = {
    { HERALD_ERR_BAD_REQUEST,     "bad_request" },
    { HERALD_ERR_TOO_LARGE,       "too_large" },
    { HERALD_ERR_CONFLICT,        "conflict" },
    { HERALD_ERR_NOT_LEADER,      "not_leader" },
    { HERALD_ERR_UNAUTHORIZED,    "unauthorized" },
    { HERALD_ERR_OVERLOADED,      "overloaded" },
    { HERALD_ERR_UNKNOWN_COMMAND, "unknown_command" },
    { HERALD_ERR_UNSUPPORTED,     "unsupported" },
    { HERALD_ERR_INTERNAL,        "internal" },
    { HERALD_ERR_TRIMMED,         "trimmed" }
};
#define S_CODES (sizeof (s_codes) / sizeof (s_codes [0]))

Test (herald_err, every_protocol_error_has_its_wire_code)
{
    size_t index;
    for (index = 0; index < S_CODES; index++)
        cr_assert_str_eq (herald_err_code (s_codes [index].err), s_codes [index].code);
}

Test (herald_err, every_wire_code_maps_back_to_its_error)
{
    size_t index;
    for (index = 0; index < S_CODES; index++)
        cr_assert_eq (herald_err_from_code (s_codes [index].code,
                                            strlen (s_codes [index].code)),
                      s_codes [index].err);
}

Test (herald_err, ok_and_local_conditions_have_no_wire_code)
{
    cr_assert_null (herald_err_code (HERALD_OK));
    herald_err err;
    for (err = HERALD_ERR_IO; err <= HERALD_ERR_INVALID; err++)
        cr_assert_null (herald_err_code (err));
    cr_assert_null (herald_err_code ((herald_err) 11));
    cr_assert_null (herald_err_code ((herald_err) -1));
}

Test (herald_err, unknown_wire_code_maps_to_internal)
{
    cr_assert_eq (herald_err_from_code ("quota_exceeded", 14), HERALD_ERR_INTERNAL);
    cr_assert_eq (herald_err_from_code ("", 0), HERALD_ERR_INTERNAL);
    cr_assert_eq (herald_err_from_code (NULL, 0), HERALD_ERR_INTERNAL);
}

Test (herald_err, wire_codes_match_exactly)
{
    cr_assert_eq (herald_err_from_code ("BAD_REQUEST", 11), HERALD_ERR_INTERNAL);
    cr_assert_eq (herald_err_from_code ("bad_requestX", 12), HERALD_ERR_INTERNAL);
    cr_assert_eq (herald_err_from_code ("bad_request", 3), HERALD_ERR_INTERNAL);
    //  len, not NUL, ends the code
    cr_assert_eq (herald_err_from_code ("conflicts", 8), HERALD_ERR_CONFLICT);
}

Test (herald_err, every_error_has_a_description)
{
    int err;
    for (err = HERALD_OK; err <= HERALD_ERR_ID_REUSED; err++) {
        const char *text = herald_strerror ((herald_err) err);
        cr_assert_not_null (text);
        cr_assert_gt (strlen (text), 0);
    }
    cr_assert_str_eq (herald_strerror (HERALD_ERR_BAD_REQUEST), "bad request");
    cr_assert_str_eq (herald_strerror ((herald_err) 999), "unknown error");
}

Test (herald_err, version_follows_the_header_macros)
{
    char expected [32];
    snprintf (expected, sizeof (expected), "%d.%d.%d", HERALD_VERSION_MAJOR,
              HERALD_VERSION_MINOR, HERALD_VERSION_PATCH);
    cr_assert_str_eq (herald_version (), expected);
    cr_assert_str_eq (herald_version (), "0.1.0");
}
