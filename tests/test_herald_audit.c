/*  =========================================================================
    test_herald_audit - the audit log: its lines, its escaping, its flood
    control, and that it never blocks the broker

    Real files and a real FIFO in a temporary directory; the log's own
    writer thread.  A stalled reader is a FIFO opened for reading and
    never read: the pipe fills, the writer blocks in write(2), and
    herald_audit_event must still return at once.
    =========================================================================
*/

#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <czmq.h>

#include "herald_audit.h"
#include "testutil.h"

static int64_t
s_now_ms (void)
{
    struct timespec now;
    clock_gettime (CLOCK_MONOTONIC, &now);
    return (int64_t) now.tv_sec * 1000 + now.tv_nsec / 1000000;
}

//  The lines of a file (at most max), each malloc'd without its newline;
//  returns the count.  While the writer thread runs (live), a last line
//  without its newline is one being written: it is left for the next read.
static size_t
s_read_lines_from (const char *path, char **lines, size_t max, bool live)
{
    FILE *file = fopen (path, "r");
    if (!file)
        return 0;
    size_t count = 0;
    char *line = NULL;
    size_t size = 0;
    ssize_t len;
    while ((len = getline (&line, &size, file)) > 0 && count < max) {
        if (live && line [len - 1] != '\n')
            break;
        cr_assert_eq (line [len - 1], '\n', "every line ends with a newline");
        line [len - 1] = 0;
        lines [count++] = strdup (line);
    }
    free (line);
    fclose (file);
    return count;
}

static size_t
s_read_lines (const char *path, char **lines, size_t max)
{
    return s_read_lines_from (path, lines, max, false);
}

static void
s_free_lines (char **lines, size_t count)
{
    for (size_t i = 0; i < count; i++)
        free (lines [i]);
}

//  The uint after "key": in line, or -1.
static int64_t
s_field_uint (const char *line, const char *key)
{
    char pattern [64];
    snprintf (pattern, sizeof pattern, "\"%s\":", key);
    const char *at = strstr (line, pattern);
    return at? strtoll (at + strlen (pattern), NULL, 10): -1;
}

Test (herald_audit, lines_are_one_json_object_with_ts_and_event)
{
    char *dir = tu_tmpdir_new ("audit");
    char *path = tu_path (dir, "audit.jsonl");
    herald_error_t err = { 0 };
    herald_audit_t *audit = herald_audit_new (path, &err);
    cr_assert_not_null (audit, "%s", err.message);
    herald_audit_event (audit, "auth_refused", "10.0.0.7",
                        "\"domain\":\"herald.api\",\"ip\":\"10.0.0.7\",\"key\":\"Yne@$w-vo<\","
                        "\"reason\":\"unknown key\"");
    herald_audit_event (audit, "acl_reload", NULL, NULL);
    herald_audit_event (audit, "auth_ok", "inventory", "");
    herald_audit_destroy (&audit);
    cr_assert_null (audit);

    char *lines [8];
    size_t count = s_read_lines (path, lines, 8);
    cr_assert_eq (count, 3);
    //  {"ts":"2026-12-02T17:05:01.123Z","event":...}
    int year, month, day, hour, minute, second, ms;
    char tail [512];
    cr_assert_eq (sscanf (lines [0], "{\"ts\":\"%4d-%2d-%2dT%2d:%2d:%2d.%3dZ\",%511[^\n]",
                          &year, &month, &day, &hour, &minute, &second, &ms, tail), 8,
                  "%s", lines [0]);
    cr_assert_eq (strlen (lines [0]) - strlen (tail), strlen ("{\"ts\":\"2026-12-02T17:05:01.123Z\","));
    cr_assert_str_eq (tail, "\"event\":\"auth_refused\",\"domain\":\"herald.api\",\"ip\":"
                      "\"10.0.0.7\",\"key\":\"Yne@$w-vo<\",\"reason\":\"unknown key\"}");
    //  The wall clock, in UTC
    time_t now = time (NULL);
    struct tm tm;
    gmtime_r (&now, &tm);
    cr_assert_eq (year, tm.tm_year + 1900);
    cr_assert (ms >= 0 && ms <= 999);
    cr_assert_str_eq (strchr (lines [1], ',') + 1, "\"event\":\"acl_reload\"}");
    cr_assert_str_eq (strchr (lines [2], ',') + 1, "\"event\":\"auth_ok\"}");
    s_free_lines (lines, count);
    free (path);
    tu_tmpdir_destroy (&dir);
}

Test (herald_audit, escape_passes_utf8_and_escapes_the_rest)
{
    struct {
        const char *in;
        size_t len;
        const char *out;
    } cases [] = {
        { "orders.42", 9, "\"orders.42\"" },
        { "a\"b\\c", 5, "\"a\\\"b\\\\c\"" },
        { "tab\there\n", 9, "\"tab\\u0009here\\u000a\"" },
        { "nul\0x\x7f", 6, "\"nul\\u0000x\\u007f\"" },
        { "caf\xc3\xa9.\xe2\x82\xac.\xf0\x9f\x98\x80", 14, "\"caf\xc3\xa9.\xe2\x82\xac.\xf0\x9f\x98\x80\"" },
        //  Not UTF-8: a lone continuation, a cut sequence, an overlong
        //  '/', a surrogate, a byte that never starts one
        { "\x80x", 2, "\"\\u0080x\"" },
        { "\xe2\x82", 2, "\"\\u00e2\\u0082\"" },
        { "\xc0\xaf", 2, "\"\\u00c0\\u00af\"" },
        { "\xed\xa0\x80", 3, "\"\\u00ed\\u00a0\\u0080\"" },
        { "\xff", 1, "\"\\u00ff\"" },
        { "", 0, "\"\"" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases [0]; i++) {
        char out [HERALD_AUDIT_TOPIC_MAX];
        size_t len = herald_audit_escape (cases [i].in, cases [i].len, out, sizeof out);
        cr_assert_str_eq (out, cases [i].out, "case %zu", i);
        cr_assert_eq (len, strlen (out));
    }
}

Test (herald_audit, escape_cuts_at_a_character_and_says_so)
{
    //  A topic of 255 control bytes fits HERALD_AUDIT_TOPIC_MAX whole
    char topic [255];
    memset (topic, 0x01, sizeof topic);
    char whole [HERALD_AUDIT_TOPIC_MAX];
    cr_assert_eq (herald_audit_escape (topic, sizeof topic, whole, sizeof whole),
                  sizeof whole - 1);
    //  Cut: never inside a \u escape or a UTF-8 sequence, "..." at the end
    const char *euros = "\xe2\x82\xac\xe2\x82\xac\xe2\x82\xac\xe2\x82\xac";
    char out [12];
    size_t len = herald_audit_escape (euros, strlen (euros), out, sizeof out);
    cr_assert_str_eq (out, "\"\xe2\x82\xac\xe2\x82\xac...\"");
    cr_assert_eq (len, 11);
    len = herald_audit_escape ("\x01\x02\x03", 3, out, sizeof out);
    cr_assert_str_eq (out, "\"\\u0001...\"", "%s", out);
    len = herald_audit_escape ("abcdefghij", 10, out, sizeof out);
    cr_assert_str_eq (out, "\"abcdef...\"");
    len = herald_audit_escape ("abcdefghi", 9, out, sizeof out);
    cr_assert_str_eq (out, "\"abcdefghi\"", "fits exactly: not cut");
}

Test (herald_audit, a_flood_is_capped_per_key_and_summarised, .timeout = 30)
{
    char *dir = tu_tmpdir_new ("audit");
    char *path = tu_path (dir, "audit.jsonl");
    herald_error_t err = { 0 };
    herald_audit_t *audit = herald_audit_new (path, &err);
    cr_assert_not_null (audit, "%s", err.message);
    //  10^5 refusals of one user, a few of another, and of the same user
    //  under another event: each key has its own cap
    int64_t flood_start = s_now_ms ();
    for (int i = 0; i < 100000; i++)
        herald_audit_event (audit, "unauthorized", "flooder", "\"user\":\"flooder\"");
    int64_t flood_spent = s_now_ms () - flood_start;
    for (int i = 0; i < 10; i++)
        herald_audit_event (audit, "unauthorized", "quiet", "\"user\":\"quiet\"");
    for (int i = 0; i < 10; i++)
        herald_audit_event (audit, "rate_limited", "flooder", "\"user\":\"flooder\"");
    //  The summary comes once the window is over, without another event
    //  and before the log is closed
    //  (It comes a second after the window opened; 10 s only tell slow
    //  from never)
    int64_t deadline = s_now_ms () + 10000;
    char *lines [400];
    size_t count = 0;
    bool summarised = false;
    while (!summarised && s_now_ms () < deadline) {
        s_free_lines (lines, count);
        count = s_read_lines_from (path, lines, 400, true);
        for (size_t i = 0; i < count; i++)
            if (strstr (lines [i], "\"suppressed\":"))
                summarised = true;
        if (!summarised)
            zclock_sleep (20);
    }
    cr_assert (summarised, "no summary line within 10 s");
    herald_audit_destroy (&audit);
    s_free_lines (lines, count);
    count = s_read_lines (path, lines, 400);

    size_t flooder = 0, quiet = 0, other = 0, summaries = 0;
    int64_t suppressed = 0;
    for (size_t i = 0; i < count; i++) {
        if (strstr (lines [i], "\"suppressed\":")) {
            cr_assert (strstr (lines [i], "\"event\":\"unauthorized\",\"who\":\"flooder\","),
                       "%s", lines [i]);
            suppressed += s_field_uint (lines [i], "suppressed");
            summaries++;
        }
        else
        if (strstr (lines [i], "\"event\":\"rate_limited\""))
            other++;
        else
        if (strstr (lines [i], "\"user\":\"quiet\""))
            quiet++;
        else
            flooder++;
    }
    //  At most 100 a window per key, windows of a second: the flood spans
    //  at most ceil(spent) + 1 of them (two when it took less than a
    //  second; a loaded or sanitized machine may take longer, and that is
    //  not what is tested)
    size_t windows = (size_t) (flood_spent / 1000) + 2;
    cr_assert_leq (flooder, windows * HERALD_AUDIT_LINES_PER_S, "%zu lines in %" PRId64 " ms",
                   flooder, flood_spent);
    cr_assert_geq (flooder, HERALD_AUDIT_LINES_PER_S);
    cr_assert_eq (quiet, 10);
    cr_assert_eq (other, 10);
    cr_assert_geq (summaries, 1);
    cr_assert_eq ((int64_t) flooder + suppressed, 100000, "every event is a line or counted");
    s_free_lines (lines, count);
    free (path);
    tu_tmpdir_destroy (&dir);
}

Test (herald_audit, a_sustained_flood_gets_100_lines_a_second, .timeout = 30)
{
    char *dir = tu_tmpdir_new ("audit");
    char *path = tu_path (dir, "audit.jsonl");
    herald_error_t err = { 0 };
    herald_audit_t *audit = herald_audit_new (path, &err);
    cr_assert_not_null (audit, "%s", err.message);
    //  Events spread out until batches were sent in four windows for sure
    //  (each a second after the one before had ended), about 3 s: at least
    //  three windows' worth of lines, however late the loop ran
    int64_t start = s_now_ms ();
    int sent = 0;
    int opened = 0;
    int64_t window_end = 0;
    while (opened < 4 && s_now_ms () - start < 20000 && sent < 1000000) {
        bool opening = s_now_ms () >= window_end;
        for (int i = 0; i < 100; i++)
            herald_audit_event (audit, "auth_refused", "10.0.0.9", "\"ip\":\"10.0.0.9\"");
        if (opening) {
            opened++;
            window_end = s_now_ms () + 1000;
        }
        sent += 100;
        zclock_sleep (1);
    }
    cr_assert_eq (opened, 4);
    int64_t spent = s_now_ms () - start;
    herald_audit_destroy (&audit);
    static char *lines [2000];
    size_t count = s_read_lines (path, lines, 2000);
    size_t plain = 0, summaries = 0;
    int64_t suppressed = 0;
    for (size_t i = 0; i < count; i++)
        if (strstr (lines [i], "\"suppressed\":")) {
            suppressed += s_field_uint (lines [i], "suppressed");
            summaries++;
        }
        else
            plain++;
    //  Windows of one second each: ceil(spent) + 1 at most
    size_t windows = (size_t) (spent / 1000) + 2;
    cr_assert_leq (plain, windows * HERALD_AUDIT_LINES_PER_S, "%zu lines in %" PRId64 " ms",
                   plain, spent);
    cr_assert_geq (plain, 3 * HERALD_AUDIT_LINES_PER_S, "a new window every second");
    cr_assert_leq (summaries, windows);
    cr_assert_geq (summaries, 2);
    cr_assert_eq ((int64_t) plain + suppressed, sent);
    s_free_lines (lines, count);
    free (path);
    tu_tmpdir_destroy (&dir);
}

Test (herald_audit, many_keys_share_one_when_the_table_is_full, .timeout = 30)
{
    char *dir = tu_tmpdir_new ("audit");
    char *path = tu_path (dir, "audit.jsonl");
    herald_error_t err = { 0 };
    herald_audit_t *audit = herald_audit_new (path, &err);
    cr_assert_not_null (audit, "%s", err.message);
    //  An attacker cycling through addresses: 3 lines each from 5000
    for (int i = 0; i < 5000; i++) {
        char who [32];
        snprintf (who, sizeof who, "10.1.%d.%d", i / 256, i % 256);
        for (int j = 0; j < 3; j++)
            herald_audit_event (audit, "auth_refused", who, "\"reason\":\"unknown key\"");
    }
    herald_audit_destroy (&audit);
    static char *lines [20000];
    size_t count = s_read_lines (path, lines, 20000);
    int64_t suppressed = 0;
    size_t plain = 0;
    for (size_t i = 0; i < count; i++)
        if (strstr (lines [i], "\"suppressed\":")) {
            cr_assert (strstr (lines [i], "\"who\":\"*\""), "%s", lines [i]);
            suppressed += s_field_uint (lines [i], "suppressed");
        }
        else
            plain++;
    cr_assert_leq (plain, 3 * HERALD_AUDIT_KEYS_MAX + 2 * HERALD_AUDIT_LINES_PER_S);
    cr_assert_eq ((int64_t) plain + suppressed, 15000);
    s_free_lines (lines, count);
    free (path);
    tu_tmpdir_destroy (&dir);
}

Test (herald_audit, a_stalled_file_never_blocks_and_counts_dropped, .timeout = 30)
{
    char *dir = tu_tmpdir_new ("audit");
    char *path = tu_path (dir, "audit.fifo");
    cr_assert_eq (mkfifo (path, 0600), 0);
    //  A reader that never reads
    int reader = open (path, O_RDONLY | O_NONBLOCK);
    cr_assert_geq (reader, 0);
    herald_error_t err = { 0 };
    herald_audit_t *audit = herald_audit_new (path, &err);
    cr_assert_not_null (audit, "%s", err.message);
    //  Distinct keys, so flood control lets them through: 8 MB of lines
    //  against a 64 KiB pipe and a 1 MiB queue
    char fields [200];
    memset (fields, 0, sizeof fields);
    snprintf (fields, sizeof fields, "\"pad\":\"%080d\"", 0);
    int64_t slowest = 0;
    for (int round = 0; round < 100; round++) {
        for (int i = 0; i < 1000; i++) {
            char who [16];
            snprintf (who, sizeof who, "u%d", i);
            int64_t before = s_now_ms ();
            herald_audit_event (audit, "unauthorized", who, fields);
            int64_t took = s_now_ms () - before;
            if (took > slowest)
                slowest = took;
        }
    }
    //  A call that waited on the stalled pipe would never return (nobody
    //  reads it): the bound only tells "slow" (a loaded 2-core machine, a
    //  sanitizer, a thread preempted mid-call) from "stuck", so it is generous
    cr_assert_lt (slowest, 10000, "herald_audit_event blocked for %" PRId64 " ms", slowest);
    cr_assert_gt (herald_audit_dropped (audit), 0);
    uint64_t dropped = herald_audit_dropped (audit);
    cr_assert_lt (dropped, 100000);
    int64_t start = s_now_ms ();
    herald_audit_destroy (&audit);
    int64_t took = s_now_ms () - start;
    //  The pipe stays stalled, so a destroy that waited for it would never
    //  return; HERALD_AUDIT_FLUSH_MS is what it waits, and the 10 s over it
    //  only tell a loaded machine from a hang
    cr_assert_lt (took, HERALD_AUDIT_FLUSH_MS + 10000, "destroy took %" PRId64 " ms", took);
    close (reader);
    free (path);
    tu_tmpdir_destroy (&dir);
}

Test (herald_audit, a_fifo_without_reader_is_refused_at_once)
{
    char *dir = tu_tmpdir_new ("audit");
    char *path = tu_path (dir, "audit.fifo");
    cr_assert_eq (mkfifo (path, 0600), 0);
    herald_error_t err = { 0 };
    herald_audit_t *audit = herald_audit_new (path, &err);
    cr_assert_null (audit);
    cr_assert_eq (err.code, HERALD_ERR_IO);
    cr_assert (strstr (err.message, path), "%s", err.message);
    free (path);
    tu_tmpdir_destroy (&dir);
}

Test (herald_audit, a_path_that_cannot_be_opened_is_an_error)
{
    herald_error_t err = { 0 };
    herald_audit_t *audit = herald_audit_new ("/nonexistent-herald-dir/audit.jsonl", &err);
    cr_assert_null (audit);
    cr_assert_eq (err.code, HERALD_ERR_IO);
    cr_assert (strstr (err.message, "/nonexistent-herald-dir/audit.jsonl"), "%s", err.message);
    cr_assert (strstr (err.message, "No such file"), "%s", err.message);
}

Test (herald_audit, reopen_moves_to_a_new_file_in_order)
{
    char *dir = tu_tmpdir_new ("audit");
    char *path = tu_path (dir, "audit.jsonl");
    char *rotated = tu_path (dir, "audit.jsonl.1");
    herald_error_t err = { 0 };
    herald_audit_t *audit = herald_audit_new (path, &err);
    cr_assert_not_null (audit, "%s", err.message);
    for (int i = 0; i < 50; i++) {
        char fields [32];
        snprintf (fields, sizeof fields, "\"n\":%d", i);
        herald_audit_event (audit, "auth_ok", "before", fields);
    }
    //  logrotate: move the file, then SIGHUP
    cr_assert_eq (rename (path, rotated), 0);
    herald_audit_reopen (audit);
    for (int i = 50; i < 80; i++) {
        char fields [32];
        snprintf (fields, sizeof fields, "\"n\":%d", i);
        herald_audit_event (audit, "auth_ok", "after", fields);
    }
    herald_audit_destroy (&audit);
    char *lines [100];
    size_t count = s_read_lines (rotated, lines, 100);
    cr_assert_eq (count, 50);
    for (size_t i = 0; i < count; i++)
        cr_assert_eq (s_field_uint (lines [i], "n"), (int64_t) i);
    s_free_lines (lines, count);
    count = s_read_lines (path, lines, 100);
    cr_assert_eq (count, 30);
    for (size_t i = 0; i < count; i++)
        cr_assert_eq (s_field_uint (lines [i], "n"), (int64_t) (50 + i));
    s_free_lines (lines, count);
    struct stat st;
    cr_assert_eq (stat (path, &st), 0);
    cr_assert_eq (st.st_mode & 0077 & ~0040, 0, "mode %o", st.st_mode & 0777);
    free (rotated);
    free (path);
    tu_tmpdir_destroy (&dir);
}

Test (herald_audit, stderr_and_null)
{
    herald_error_t err = { 0 };
    herald_audit_t *audit = herald_audit_new ("-", &err);
    cr_assert_not_null (audit);
    herald_audit_reopen (audit);        //  no-op on stderr
    herald_audit_event (audit, "acl_reload", NULL, "\"result\":\"ok\"");
    herald_audit_destroy (&audit);
    herald_audit_destroy (&audit);
    herald_audit_event (NULL, "acl_reload", NULL, NULL);
    cr_assert_eq (herald_audit_dropped (NULL), 0);
}
