/*  =========================================================================
    test_herald_cli_time - the CLI's time parser and formatter

    tools/herald_cli_time.c is compiled into this test on its own: every
    form --from-ts and --until-ts accept, every form they refuse (and that
    the reason is given), the calendar's edges, the uint64's edges, and
    that formatting and parsing agree.
    =========================================================================
*/

#include <criterion/criterion.h>
#include <stdarg.h>
#include <string.h>
#include "../tools/herald_cli.h"

#define NS      UINT64_C (1000000000)
//  2026-12-02T16:35:47Z
#define T0      UINT64_C (1796229347)
//  A fixed "now" for the relative forms: T0 and 0.5 s
#define NOW     (T0 * NS + 500000000)

//  The wrapper herald_cli_ts prints through herald_cli_fail (herald.c,
//  not linked here): keep its message for the tests to read.
static char s_failed [1024];

int
herald_cli_fail (int code, const char *format, ...)
{
    va_list args;
    va_start (args, format);
    vsnprintf (s_failed, sizeof s_failed, format, args);
    va_end (args);
    return code;
}

//  The JSON quoting herald_cli.h declares; unused by the time code.
void
herald_cli_json_string (FILE *out, const char *s, size_t len)
{
    fprintf (out, "\"%.*s\"", (int) len, s);
}

static uint64_t
s_ok (const char *text)
{
    uint64_t ns = 12345;
    char why [256] = "";
    bool ok = herald_cli_time_parse (text, NOW, &ns, why, sizeof why);
    cr_assert (ok, "'%s' should parse, refused: %s", text, why);
    return ns;
}

//  text is refused, with a reason containing `reason`
static void
s_refused (const char *text, const char *reason)
{
    uint64_t ns = 12345;
    char why [256] = "";
    cr_assert_not (herald_cli_time_parse (text, NOW, &ns, why, sizeof why),
                   "'%s' should be refused, gave %" PRIu64, text, ns);
    cr_assert_eq (ns, 12345, "'%s': a refused time leaves *ns alone", text);
    cr_assert (strstr (why, reason), "'%s': the reason '%s' should say '%s'", text, why, reason);
}

Test (herald_cli_time, rfc3339_utc)
{
    cr_assert_eq (s_ok ("2026-12-02T16:35:47Z"), T0 * NS);
    cr_assert_eq (s_ok ("2026-12-02t16:35:47z"), T0 * NS);
    cr_assert_eq (s_ok ("2026-12-02 16:35:47Z"), T0 * NS);
    cr_assert_eq (s_ok ("1970-01-01T00:00:00Z"), 0);
    cr_assert_eq (s_ok ("2024-02-29T23:59:59Z"), UINT64_C (1709251199) * NS);
}

Test (herald_cli_time, rfc3339_fractions)
{
    cr_assert_eq (s_ok ("2026-12-02T16:35:47.5Z"), T0 * NS + 500000000);
    cr_assert_eq (s_ok ("2026-12-02T16:35:47.25Z"), T0 * NS + 250000000);
    cr_assert_eq (s_ok ("2026-12-02T16:35:47.000000001Z"), T0 * NS + 1);
    cr_assert_eq (s_ok ("2026-12-02T16:35:47.123456789Z"), T0 * NS + 123456789);
    cr_assert_eq (s_ok ("2026-12-02T16:35:47.000Z"), T0 * NS);
}

Test (herald_cli_time, rfc3339_offsets)
{
    cr_assert_eq (s_ok ("2026-12-02T17:35:47+01:00"), T0 * NS);
    cr_assert_eq (s_ok ("2026-12-02T11:05:47-05:30"), T0 * NS);
    cr_assert_eq (s_ok ("2026-12-02T16:35:47+00:00"), T0 * NS);
    cr_assert_eq (s_ok ("2026-12-02T16:35:47-00:00"), T0 * NS);
    cr_assert_eq (s_ok ("2026-12-03T01:35:47.5+09:00"), T0 * NS + 500000000);
    //  An offset that crosses midnight and the year
    cr_assert_eq (s_ok ("2026-12-31T23:00:00-02:00"), s_ok ("2027-01-01T01:00:00Z"));
}

Test (herald_cli_time, plain_date_is_midnight_utc)
{
    cr_assert_eq (s_ok ("2026-12-02"), (T0 - (16 * 3600 + 35 * 60 + 47)) * NS);
    cr_assert_eq (s_ok ("1970-01-01"), 0);
    cr_assert_eq (s_ok ("2000-02-29"), UINT64_C (951782400) * NS);
}

Test (herald_cli_time, relative_and_now)
{
    cr_assert_eq (s_ok ("now"), NOW);
    cr_assert_eq (s_ok ("-1h"), NOW - 3600 * NS);
    cr_assert_eq (s_ok ("-30m"), NOW - 1800 * NS);
    cr_assert_eq (s_ok ("-2d"), NOW - 2 * 86400 * NS);
    cr_assert_eq (s_ok ("-1w"), NOW - 7 * 86400 * NS);
    cr_assert_eq (s_ok ("-90s"), NOW - 90 * NS);
    cr_assert_eq (s_ok ("-500ms"), NOW - 500000000);
    cr_assert_eq (s_ok ("-7us"), NOW - 7000);
    cr_assert_eq (s_ok ("-3ns"), NOW - 3);
    cr_assert_eq (s_ok ("-1h30m"), NOW - 5400 * NS);
    cr_assert_eq (s_ok ("-0s"), NOW);
}

Test (herald_cli_time, explicit_units)
{
    cr_assert_eq (s_ok ("1796229347s"), T0 * NS);
    cr_assert_eq (s_ok ("1796229347123ms"), T0 * NS + 123000000);
    cr_assert_eq (s_ok ("1796229347123456us"), T0 * NS + 123456000);
    cr_assert_eq (s_ok ("1796229347123456789ns"), T0 * NS + 123456789);
    cr_assert_eq (s_ok ("0s"), 0);
    cr_assert_eq (s_ok ("0ns"), 0);
    cr_assert_eq (s_ok ("18446744073709551615ns"), UINT64_MAX);
    cr_assert_eq (s_ok ("18446744073s"), UINT64_C (18446744073) * NS);
}

Test (herald_cli_time, bare_number_is_ambiguous)
{
    s_refused ("1796229347", "ambiguous");
    s_refused ("1796229347", "1796229347s");
    s_refused ("1796229347000000000", "ambiguous");
    s_refused ("0", "ambiguous");
}

Test (herald_cli_time, garbage_refused)
{
    s_refused ("", "empty");
    s_refused ("yesterday", "not a time");
    s_refused ("NOW", "not a time");
    s_refused (" 2026-12-02", "not a time");
    s_refused ("2026-12-02 ", "hh:mm:ss");
    s_refused ("2026-12-02T", "hh:mm:ss");
    s_refused ("2026-12-02T16:35Z", "hh:mm:ss");
    s_refused ("2026-1-02", "YYYY-MM-DD");
    s_refused ("2026/12/02", "no unit");
    s_refused ("26-12-02", "no unit");
    s_refused ("2026-12-02X16:35:47Z", "T between");
    s_refused ("2026-12-02T16:35:47", "no zone");
    s_refused ("2026-12-02T16:35:47.Z", "no digit after");
    s_refused ("2026-12-02T16:35:47.1234567890Z", "9 digits");
    s_refused ("2026-12-02T16:35:47+0100", "offset");
    s_refused ("2026-12-02T16:35:47+01", "offset");
    s_refused ("2026-12-02T16:35:47+24:00", "offset");
    s_refused ("2026-12-02T16:35:47UTC", "not a zone");
    s_refused ("2026-12-02T16:35:47Zjunk", "after the zone");
    s_refused ("1796229347sec", "not a unit");
    s_refused ("1796229347m", "not a unit");
    s_refused ("1796229347h", "not a unit");
    s_refused ("1796229347s5", "after the unit");
    s_refused ("1.5s", "no unit");
    s_refused ("-1", "unit");
    s_refused ("-", "how long ago");
    s_refused ("-h", "number");
    s_refused ("-1x", "not a unit");
    s_refused ("-1h-1m", "number");
    s_refused ("+1h", "not a time");
}

Test (herald_cli_time, calendar_refused)
{
    s_refused ("2026-13-01", "month 13");
    s_refused ("2026-00-10", "month 0");
    s_refused ("2026-02-30", "no day 30");
    s_refused ("2026-02-29", "no day 29");
    s_refused ("1900-02-29", "no day 29");
    s_refused ("2026-04-31", "no day 31");
    s_refused ("2026-12-00", "no day 0");
    s_refused ("2026-12-32", "no day 32");
    s_refused ("2026-12-02T24:00:00Z", "24:00:00");
    s_refused ("2026-12-02T23:60:00Z", "23:60:00");
    s_refused ("2026-12-02T23:59:60Z", "leap");
}

Test (herald_cli_time, range_refused)
{
    s_refused ("1969-12-31", "before 1970");
    s_refused ("1969-12-31T23:59:59Z", "before 1970");
    s_refused ("1970-01-01T00:30:00+01:00", "before 1970");
    s_refused ("0000-01-01", "before 1970");
    s_refused ("2554-07-22", "after 2554");
    s_refused ("9999-12-31T23:59:59Z", "after 2554");
    s_refused ("18446744074s", "after 2554");
    s_refused ("18446744073709551616ns", "too large");
    s_refused ("99999999999999999999999999s", "too large");
    s_refused ("-100000w", "before 1970");
    s_refused ("-18446744073709551615w", "before 1970");
    s_refused ("-99999999999999999999999s", "too large");
}

Test (herald_cli_time, last_representable_instant)
{
    cr_assert_eq (s_ok ("2554-07-21T23:34:33.709551615Z"), UINT64_MAX);
    s_refused ("2554-07-21T23:34:33.709551616Z", "after 2554");
}

Test (herald_cli_time, format_is_rfc3339_utc)
{
    char text [40];
    cr_assert_str_eq (herald_cli_time_format (T0 * NS + 250000000, text, sizeof text),
                      "2026-12-02T16:35:47.250000000Z");
    cr_assert_str_eq (herald_cli_time_format (0, text, sizeof text),
                      "1970-01-01T00:00:00.000000000Z");
    cr_assert_str_eq (herald_cli_time_format (UINT64_MAX, text, sizeof text),
                      "2554-07-21T23:34:33.709551615Z");
}

Test (herald_cli_time, format_and_parse_agree)
{
    const uint64_t samples [] = { 0, 1, 999999999, NS, T0 * NS + 123456789,
                                  UINT64_C (951782400) * NS - 1, UINT64_MAX - 1, UINT64_MAX };
    size_t index;
    for (index = 0; index < sizeof samples / sizeof samples [0]; index++) {
        char text [40];
        herald_cli_time_format (samples [index], text, sizeof text);
        cr_assert_eq (s_ok (text), samples [index], "%s", text);
    }
    //  And every day of a leap year and of a common one, at noon
    uint64_t day;
    for (day = 0; day < 2 * 366; day++) {
        uint64_t ns = (UINT64_C (1704067200) + day * 86400 + 43200) * NS;   //  2024-01-01
        char text [40];
        herald_cli_time_format (ns, text, sizeof text);
        cr_assert_eq (s_ok (text), ns, "%s", text);
    }
}

Test (herald_cli_time, option_wrapper_names_option_and_forms)
{
    uint64_t ns = 7;
    s_failed [0] = 0;
    cr_assert_not (herald_cli_ts ("--from-ts", "1796229347", &ns));
    cr_assert_eq (ns, 7);
    cr_assert (strstr (s_failed, "--from-ts '1796229347': ambiguous"), "%s", s_failed);
    cr_assert (strstr (s_failed, "2026-12-02T16:35:47Z"), "%s", s_failed);
    cr_assert (herald_cli_ts ("--until-ts", "now", &ns));
    uint64_t now = herald_cli_time_now ();
    cr_assert (ns <= now && now - ns < 60 * NS, "now is this machine's clock");
}
