/*  =========================================================================
    herald_cli_time - the times people type, and the times people read

    An event's ts is Unix nanoseconds (uint64, UTC).  People do not think in
    nanoseconds, so every option that takes a time (--from-ts, --until-ts)
    accepts, and refuses, exactly these forms:

        2026-12-02T16:35:47Z            RFC 3339: T (or t, or one space)
        2026-12-02T16:35:47.25+01:00    between date and time, 1-9 digits
        2026-12-02t16:35:47.123456789z  of fraction, a zone Z or +-hh:mm
        2026-12-02                      a date: its midnight, UTC
        now                             this machine's clock
        -90s -30m -1h -2d -1w -1h30m    that long before now
        1796229347s 1796229347123ms     Unix time with its unit: s, ms,
        1796229347123456us ...ns        us or ns

    A bare number is refused: `1796229347` read as nanoseconds is 1970 plus
    1.8 s, read as seconds is 2026, and a tool that guesses replays the
    whole log when it guesses wrong.  A time without a zone is refused for
    the same reason (local time or UTC?).  Calendar errors (month 13, Feb
    30, hour 24, second 60) and anything before 1970 or past the last ts a
    uint64 holds (2554-07-21T23:34:33.709551615Z) are refused, never
    wrapped or clamped.

    Output: a ts for people is RFC 3339 in UTC with all nine digits
    (2026-12-02T16:35:47.250000000Z), which loses nothing and sorts as
    text; JSON output keeps the ns integer, the machine's field.
    =========================================================================
*/

#include "herald_cli.h"

#include <string.h>
#include <time.h>

#define S_NS_PER_S      UINT64_C (1000000000)

//  Read exactly `digits` decimal digits at *p into *value; advances *p.
static bool
s_fixed (const char **p, int digits, unsigned *value)
{
    unsigned result = 0;
    int index;
    for (index = 0; index < digits; index++) {
        char c = (*p) [index];
        if (c < '0' || c > '9')
            return false;
        result = result * 10 + (unsigned) (c - '0');
    }
    *p += digits;
    *value = result;
    return true;
}

//  Read one or more decimal digits at *p into *value; advances *p.
//  Returns false (why set) on no digit or overflow.
static bool
s_number (const char **p, uint64_t *value, char *why, size_t why_size)
{
    const char *start = *p;
    uint64_t result = 0;
    while (**p >= '0' && **p <= '9') {
        if (__builtin_mul_overflow (result, 10, &result)
        ||  __builtin_add_overflow (result, (uint64_t) (**p - '0'), &result)) {
            snprintf (why, why_size, "too large a number");
            return false;
        }
        (*p)++;
    }
    if (*p == start) {
        snprintf (why, why_size, "a number is missing");
        return false;
    }
    *value = result;
    return true;
}

static bool
s_leap (unsigned year)
{
    return (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
}

static unsigned
s_month_days (unsigned year, unsigned month)
{
    static const unsigned days [12] = { 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };
    return month == 2 && s_leap (year) ? 29 : days [month - 1];
}

//  Days from 1970-01-01 to year-month-day (proleptic Gregorian; Howard
//  Hinnant's days_from_civil), negative before 1970.
static int64_t
s_days (int64_t year, unsigned month, unsigned day)
{
    year -= month <= 2;
    int64_t era = (year >= 0 ? year : year - 399) / 400;
    unsigned yoe = (unsigned) (year - era * 400);
    unsigned doy = (153 * (month + (month > 2 ? -3 : 9)) + 2) / 5 + day - 1;
    unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (int64_t) doe - 719468;
}

//  seconds (may be negative) plus fraction ns into *ns, or why.
static bool
s_to_ns (int64_t seconds, uint64_t fraction, uint64_t *ns, char *why, size_t why_size)
{
    uint64_t result;
    if (seconds < 0) {
        snprintf (why, why_size, "before 1970-01-01T00:00:00Z, the first time a ts can hold");
        return false;
    }
    if (__builtin_mul_overflow ((uint64_t) seconds, S_NS_PER_S, &result)
    ||  __builtin_add_overflow (result, fraction, &result)) {
        snprintf (why, why_size, "after 2554-07-21T23:34:33.709551615Z, the last time a ts "
                  "can hold");
        return false;
    }
    *ns = result;
    return true;
}

//  RFC 3339, or a plain date (midnight UTC).
static bool
s_parse_rfc3339 (const char *text, uint64_t *ns, char *why, size_t why_size)
{
    const char *p = text;
    unsigned year, month, day, hour = 0, minute = 0, second = 0;
    uint64_t fraction = 0;
    int64_t offset = 0;             //  seconds east of UTC
    if (!s_fixed (&p, 4, &year) || *p++ != '-' || !s_fixed (&p, 2, &month)
    ||  *p++ != '-' || !s_fixed (&p, 2, &day)) {
        snprintf (why, why_size, "not a date: give YYYY-MM-DD");
        return false;
    }
    if (month < 1 || month > 12) {
        snprintf (why, why_size, "there is no month %u", month);
        return false;
    }
    if (day < 1 || day > s_month_days (year, month)) {
        snprintf (why, why_size, "%04u-%02u has no day %u", year, month, day);
        return false;
    }
    if (*p) {
        if (*p != 'T' && *p != 't' && *p != ' ') {
            snprintf (why, why_size, "give T between the date and the time");
            return false;
        }
        p++;
        if (!s_fixed (&p, 2, &hour) || *p++ != ':' || !s_fixed (&p, 2, &minute)
        ||  *p++ != ':' || !s_fixed (&p, 2, &second)) {
            snprintf (why, why_size, "not a time of day: give hh:mm:ss");
            return false;
        }
        if (hour > 23 || minute > 59 || second > 59) {
            snprintf (why, why_size, "there is no time of day %02u:%02u:%02u%s", hour,
                      minute, second, second == 60 ? " (leap seconds are not counted)" : "");
            return false;
        }
        if (*p == '.') {
            p++;
            int digits = 0;
            while (*p >= '0' && *p <= '9') {
                if (++digits > 9) {
                    snprintf (why, why_size, "more than 9 digits of fraction (a ts counts ns)");
                    return false;
                }
                fraction = fraction * 10 + (uint64_t) (*p++ - '0');
            }
            if (digits == 0) {
                snprintf (why, why_size, "no digit after the '.'");
                return false;
            }
            for (; digits < 9; digits++)
                fraction *= 10;
        }
        if (*p == 'Z' || *p == 'z')
            p++;
        else
        if (*p == '+' || *p == '-') {
            int sign = *p++ == '-' ? -1 : 1;
            unsigned zone_hour, zone_minute;
            if (!s_fixed (&p, 2, &zone_hour) || *p++ != ':' || !s_fixed (&p, 2, &zone_minute)
            ||  zone_hour > 23 || zone_minute > 59) {
                snprintf (why, why_size, "not a zone offset: give +hh:mm or -hh:mm");
                return false;
            }
            offset = sign * (int64_t) (zone_hour * 3600 + zone_minute * 60);
        }
        else
        if (*p == 0) {
            snprintf (why, why_size, "no zone: add Z for UTC, or an offset like +01:00");
            return false;
        }
        else {
            snprintf (why, why_size, "not a zone: give Z, +hh:mm or -hh:mm");
            return false;
        }
        if (*p) {
            snprintf (why, why_size, "unexpected text after the zone");
            return false;
        }
    }
    int64_t seconds = s_days (year, month, day) * 86400 + hour * 3600 + minute * 60 + second
                    - offset;
    return s_to_ns (seconds, fraction, ns, why, why_size);
}

//  The unit at *p (letters only) as ns per unit; advances *p.  relative
//  allows the longer units (m, h, d, w) too.
static bool
s_unit (const char **p, bool relative, uint64_t *per, char *why, size_t why_size)
{
    static const struct { const char *name; uint64_t per; bool relative_only; } units [] = {
        { "ns", 1, false }, { "us", 1000, false }, { "ms", 1000000, false },
        { "s", S_NS_PER_S, false }, { "m", 60 * S_NS_PER_S, true },
        { "h", 3600 * S_NS_PER_S, true }, { "d", 86400 * S_NS_PER_S, true },
        { "w", 7 * 86400 * S_NS_PER_S, true }
    };
    const char *start = *p;
    while ((**p >= 'a' && **p <= 'z') || (**p >= 'A' && **p <= 'Z'))
        (*p)++;
    size_t len = (size_t) (*p - start);
    size_t index;
    for (index = 0; index < sizeof units / sizeof units [0]; index++)
        if (strlen (units [index].name) == len && memcmp (units [index].name, start, len) == 0
        &&  (relative || !units [index].relative_only)) {
            *per = units [index].per;
            return true;
        }
    //  (the text itself is in the caller's message, however long it is)
    if (relative)
        snprintf (why, why_size, "%s: a time ago takes whole numbers and w, d, h, m, s, "
                  "ms, us or ns", len ? "not a unit" : "no unit");
    else
        snprintf (why, why_size, "%s: Unix time takes a whole number and s, ms, us or ns",
                  len ? "not a unit" : "no unit");
    return false;
}

//  -1h30m: a sum of numbers with units, before now.
static bool
s_parse_relative (const char *text, uint64_t now_ns, uint64_t *ns, char *why,
                  size_t why_size)
{
    const char *p = text + 1;
    uint64_t total = 0;
    if (!*p) {
        snprintf (why, why_size, "give how long ago, like -1h");
        return false;
    }
    while (*p) {
        uint64_t count, per, part;
        if (!s_number (&p, &count, why, why_size))
            return false;
        if (*p == 0) {
            snprintf (why, why_size, "give a unit after %" PRIu64 ", like -%" PRIu64 "h",
                      count, count);
            return false;
        }
        if (!s_unit (&p, true, &per, why, why_size))
            return false;
        if (__builtin_mul_overflow (count, per, &part)
        ||  __builtin_add_overflow (total, part, &total)) {
            snprintf (why, why_size, "before 1970-01-01T00:00:00Z, the first time a ts can hold");
            return false;
        }
    }
    if (total > now_ns) {
        snprintf (why, why_size, "before 1970-01-01T00:00:00Z, the first time a ts can hold");
        return false;
    }
    *ns = now_ns - total;
    return true;
}

bool
herald_cli_time_parse (const char *text, uint64_t now_ns, uint64_t *ns, char *why,
                       size_t why_size)
{
    if (!*text) {
        snprintf (why, why_size, "empty");
        return false;
    }
    if (strcmp (text, "now") == 0) {
        *ns = now_ns;
        return true;
    }
    if (text [0] == '-')
        return s_parse_relative (text, now_ns, ns, why, why_size);
    //  Four digits and a '-' start a date; any other digits a Unix time
    if (strlen (text) >= 5 && text [4] == '-')
        return s_parse_rfc3339 (text, ns, why, why_size);
    if (text [0] >= '0' && text [0] <= '9') {
        const char *p = text;
        uint64_t count, per, result;
        if (!s_number (&p, &count, why, why_size))
            return false;
        if (*p == 0) {
            snprintf (why, why_size, "ambiguous: add a unit (%ss, %sms, %sus or %sns) or give "
                      "an RFC 3339 time like 2026-12-02T16:35:47Z", text, text, text, text);
            return false;
        }
        if (!s_unit (&p, false, &per, why, why_size))
            return false;
        if (*p) {
            snprintf (why, why_size, "unexpected text after the unit");
            return false;
        }
        if (__builtin_mul_overflow (count, per, &result)) {
            snprintf (why, why_size, "after 2554-07-21T23:34:33.709551615Z, the last time a "
                      "ts can hold");
            return false;
        }
        *ns = result;
        return true;
    }
    snprintf (why, why_size, "not a time");
    return false;
}

uint64_t
herald_cli_time_now (void)
{
    struct timespec now;
    clock_gettime (CLOCK_REALTIME, &now);
    return (uint64_t) now.tv_sec * S_NS_PER_S + (uint64_t) now.tv_nsec;
}

bool
herald_cli_ts (const char *option, const char *text, uint64_t *ns)
{
    char why [256];
    if (herald_cli_time_parse (text, herald_cli_time_now (), ns, why, sizeof why))
        return true;
    herald_cli_fail (HERALD_CLI_EXIT_USAGE, "%s '%s': %s (times: 2026-12-02T16:35:47Z, "
                     "2026-12-02T17:35:47.25+01:00, 2026-12-02, now, -30m, -1h, -2d, "
                     "1796229347s, 1796229347123ms, ...us, ...ns)", option, text, why);
    return false;
}

char *
herald_cli_time_format (uint64_t ns, char *buffer, size_t size)
{
    time_t seconds = (time_t) (ns / S_NS_PER_S);
    struct tm tm;
    char text [32];
    if (gmtime_r (&seconds, &tm) && strftime (text, sizeof text, "%Y-%m-%dT%H:%M:%S", &tm))
        snprintf (buffer, size, "%s.%09" PRIu64 "Z", text, ns % S_NS_PER_S);
    else
        snprintf (buffer, size, "%" PRIu64 "ns", ns);
    return buffer;
}
