/*  =========================================================================
    test_herald_config - heraldd's flags and config file, one behaviour per test

    Written from broker/herald_config.h and issue 3's flag list: defaults,
    both flag forms, the file format, flags over the file wherever --config
    sits, every rejection with its code and a message naming the flag or
    FILE:LINE, and --help / --version.

    Config files are written with mkstemp under /tmp and unlinked by the
    test that wrote them.
    =========================================================================
*/

#include <criterion/criterion.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "herald_config.h"

#define S_ARGS_MAX  64

//  Run herald_config_parse on "heraldd" followed by the NULL-terminated
//  args; out may be NULL when the test expects no output.
static herald_err
s_parse_out (herald_config_t *self, FILE *out, bool *exit_now, herald_error_t *err,
             const char *const *args)
{
    char *argv [S_ARGS_MAX];
    int argc = 0;
    argv [argc++] = (char *) "heraldd";
    while (*args) {
        cr_assert_lt (argc, S_ARGS_MAX);
        argv [argc++] = (char *) *args++;
    }
    return herald_config_parse (self, argc, argv, out, exit_now, err);
}

//  The same, for tests that expect neither output nor an early exit.
static herald_err
s_parse (herald_config_t *self, herald_error_t *err, const char *const *args)
{
    bool exit_now = true;
    herald_err rc = s_parse_out (self, NULL, &exit_now, err, args);
    cr_assert_not (exit_now);
    return rc;
}

//  Write text to a new file under /tmp; caller frees the path with
//  s_file_destroy, which also unlinks the file.
static char *
s_file_new (const char *text)
{
    char *path = strdup ("/tmp/herald_config_XXXXXX");
    cr_assert_not_null (path);
    int handle = mkstemp (path);
    cr_assert_geq (handle, 0, "mkstemp: %s", strerror (errno));
    size_t len = strlen (text);
    cr_assert_eq (write (handle, text, len), (ssize_t) len);
    close (handle);
    return path;
}

static void
s_file_destroy (char **path_p)
{
    unlink (*path_p);
    free (*path_p);
    *path_p = NULL;
}

//  err must be INVALID with a message that starts with "PATH:LINE: ".
static void
s_assert_line_error (const herald_error_t *err, const char *path, unsigned line)
{
    char prefix [256];
    snprintf (prefix, sizeof (prefix), "%s:%u: ", path, line);
    cr_assert_eq (err->code, HERALD_ERR_INVALID);
    cr_assert (strncmp (err->message, prefix, strlen (prefix)) == 0,
               "message '%s' does not start with '%s'", err->message, prefix);
}

//  Parsing args must fail with INVALID and a message that names needle.
static void
s_assert_rejected (const char *const *args, const char *needle)
{
    herald_config_t *config = herald_config_new ();
    herald_error_t err = { 0 };
    cr_assert_eq (s_parse (config, &err, args), HERALD_ERR_INVALID);
    cr_assert_eq (err.code, HERALD_ERR_INVALID);
    cr_assert_not_null (strstr (err.message, needle),
                        "message '%s' does not name '%s'", err.message, needle);
    herald_config_destroy (&config);
}

//  Loading text must fail with INVALID at line, naming needle.
static void
s_assert_file_rejected (const char *text, unsigned line, const char *needle)
{
    char *path = s_file_new (text);
    herald_config_t *config = herald_config_new ();
    herald_error_t err = { 0 };
    cr_assert_eq (herald_config_load (config, path, &err), HERALD_ERR_INVALID);
    s_assert_line_error (&err, path, line);
    cr_assert_not_null (strstr (err.message, needle),
                        "message '%s' does not name '%s'", err.message, needle);
    cr_assert_null (config->config_file);
    herald_config_destroy (&config);
    s_file_destroy (&path);
}

//  The value every flag is set to by the "every flag" tests, and how to
//  check it landed in its field.
static const char *s_flag_values [][2] = {
    { "data-dir", "/srv/herald" },
    { "api", "ipc:///run/herald/api" },
    { "fanout", "inproc://fanout" },
    { "durability", "async" },
    { "heartbeat-ms", "250" },
    { "max-event-bytes", "2048" },
    { "max-batch", "77" },
    { "stream-idle-ms", "5000" },
    { "max-streams", "8" },
    { "max-queued", "123" },
    { "fanout-hwm", "50" },
    { "client-hwm", "60" },
    { "idle-flush-ms", "0" },
    { "write-buffer-mb", "8" },
    { "min-free", "512MiB" },
    { "node", "b1f0-node" },
    { "log-level", "debug" }
};
#define S_FLAG_COUNT (sizeof (s_flag_values) / sizeof (s_flag_values [0]))

static void
s_assert_flag_values (const herald_config_t *config)
{
    cr_assert_str_eq (config->data_dir, "/srv/herald");
    cr_assert_str_eq (config->api, "ipc:///run/herald/api");
    cr_assert_str_eq (config->fanout, "inproc://fanout");
    cr_assert_eq (config->durability, HERALD_DURABILITY_ASYNC);
    cr_assert_eq (config->heartbeat_ms, 250);
    cr_assert_eq (config->max_event_bytes, 2048);
    cr_assert_eq (config->max_batch, 77);
    cr_assert_eq (config->stream_idle_ms, 5000);
    cr_assert_eq (config->max_streams, 8);
    cr_assert_eq (config->max_queued, 123);
    cr_assert_eq (config->fanout_hwm, 50);
    cr_assert_eq (config->client_hwm, 60);
    cr_assert_eq (config->idle_flush_ms, 0);
    cr_assert_eq (config->write_buffer_mb, 8);
    cr_assert_eq (config->min_free.bytes, 512ULL << 20);
    cr_assert_eq (config->min_free.percent, 0);
    cr_assert_str_eq (config->node, "b1f0-node");
    cr_assert_str_eq (config->log_level, "debug");
}


//  --------------------------------------------------------------------------
//  Defaults and lifecycle

Test (herald_config, defaults_are_the_issues)
{
    herald_config_t *config = herald_config_new ();
    cr_assert_not_null (config);
    cr_assert_str_eq (config->data_dir, "./var/herald");
    cr_assert_str_eq (config->api, "tcp://127.0.0.1:5580");
    cr_assert_str_eq (config->fanout, "tcp://127.0.0.1:5581");
    cr_assert_eq (config->durability, HERALD_DURABILITY_SYNC);
    cr_assert_eq (config->heartbeat_ms, 1000);
    cr_assert_eq (config->max_event_bytes, 1048576);
    cr_assert_eq (config->max_batch, 1000);
    cr_assert_eq (config->stream_idle_ms, 60000);
    cr_assert_eq (config->max_streams, 64);
    cr_assert_eq (config->max_queued, 10000);
    cr_assert_eq (config->fanout_hwm, 100000);
    cr_assert_eq (config->client_hwm, 100000);
    cr_assert_eq (config->idle_flush_ms, 1000);
    cr_assert_eq (config->write_buffer_mb, 64);
    //  auto: the lesser of 1 GiB and 10% of the file system
    cr_assert_eq (config->min_free.bytes, 1ULL << 30);
    cr_assert_eq (config->min_free.percent, 10);
    cr_assert (config->min_free.lesser);
    cr_assert_str_eq (config->node, "");
    cr_assert_str_eq (config->log_level, "info");
    cr_assert_null (config->config_file);
    herald_config_destroy (&config);
}

Test (herald_config, default_limits_match_the_protocol_constants)
{
    herald_config_t *config = herald_config_new ();
    cr_assert_eq (config->max_event_bytes, HERALD_MAX_EVENT_BYTES);
    cr_assert_eq (config->max_batch, HERALD_MAX_BATCH);
    herald_config_destroy (&config);
}

Test (herald_config, destroy_is_null_safe_and_clears_the_pointer)
{
    herald_config_t *config = herald_config_new ();
    herald_config_destroy (&config);
    cr_assert_null (config);
    herald_config_destroy (&config);
    cr_assert_null (config);
}

Test (herald_config, empty_command_line_keeps_the_defaults)
{
    herald_config_t *config = herald_config_new ();
    herald_error_t err = { 0 };
    const char *args [] = { NULL };
    cr_assert_eq (s_parse (config, &err, args), HERALD_OK);
    cr_assert_str_eq (config->data_dir, "./var/herald");
    cr_assert_eq (config->max_batch, 1000);
    cr_assert_null (config->config_file);
    herald_config_destroy (&config);
}


//  --------------------------------------------------------------------------
//  Flags

Test (herald_config, every_flag_takes_a_separate_value)
{
    herald_config_t *config = herald_config_new ();
    herald_error_t err = { 0 };
    char flags [S_FLAG_COUNT][32];
    const char *args [2 * S_FLAG_COUNT + 1];
    size_t index;
    for (index = 0; index < S_FLAG_COUNT; index++) {
        snprintf (flags [index], sizeof (flags [index]), "--%s", s_flag_values [index][0]);
        args [2 * index] = flags [index];
        args [2 * index + 1] = s_flag_values [index][1];
    }
    args [2 * S_FLAG_COUNT] = NULL;
    cr_assert_eq (s_parse (config, &err, args), HERALD_OK, "%s", err.message);
    s_assert_flag_values (config);
    herald_config_destroy (&config);
}

Test (herald_config, every_flag_takes_an_equals_value)
{
    herald_config_t *config = herald_config_new ();
    herald_error_t err = { 0 };
    char flags [S_FLAG_COUNT][64];
    const char *args [S_FLAG_COUNT + 1];
    size_t index;
    for (index = 0; index < S_FLAG_COUNT; index++) {
        snprintf (flags [index], sizeof (flags [index]), "--%s=%s",
                  s_flag_values [index][0], s_flag_values [index][1]);
        args [index] = flags [index];
    }
    args [S_FLAG_COUNT] = NULL;
    cr_assert_eq (s_parse (config, &err, args), HERALD_OK, "%s", err.message);
    s_assert_flag_values (config);
    herald_config_destroy (&config);
}

Test (herald_config, equals_value_may_start_with_dashes)
{
    herald_config_t *config = herald_config_new ();
    herald_error_t err = { 0 };
    const char *args [] = { "--data-dir=--odd", NULL };
    cr_assert_eq (s_parse (config, &err, args), HERALD_OK, "%s", err.message);
    cr_assert_str_eq (config->data_dir, "--odd");
    herald_config_destroy (&config);
}

Test (herald_config, repeated_flag_last_wins)
{
    herald_config_t *config = herald_config_new ();
    herald_error_t err = { 0 };
    const char *args [] = { "--max-batch", "5", "--max-batch=6", NULL };
    cr_assert_eq (s_parse (config, &err, args), HERALD_OK, "%s", err.message);
    cr_assert_eq (config->max_batch, 6);
    herald_config_destroy (&config);
}

Test (herald_config, number_limits_are_inclusive)
{
    herald_config_t *config = herald_config_new ();
    herald_error_t err = { 0 };
    const char *low [] = { "--max-batch", "1", "--max-event-bytes", "1024", NULL };
    cr_assert_eq (s_parse (config, &err, low), HERALD_OK, "%s", err.message);
    cr_assert_eq (config->max_batch, 1);
    cr_assert_eq (config->max_event_bytes, 1024);
    const char *high [] = { "--max-batch", "100000", "--max-event-bytes", "67108864", NULL };
    cr_assert_eq (s_parse (config, &err, high), HERALD_OK, "%s", err.message);
    cr_assert_eq (config->max_batch, 100000);
    cr_assert_eq (config->max_event_bytes, 64 * 1024 * 1024);
    herald_config_destroy (&config);
}

Test (herald_config, every_log_level_is_accepted)
{
    const char *levels [] = { "error", "warn", "info", "debug" };
    herald_config_t *config = herald_config_new ();
    herald_error_t err = { 0 };
    size_t index;
    for (index = 0; index < 4; index++) {
        const char *args [] = { "--log-level", levels [index], NULL };
        cr_assert_eq (s_parse (config, &err, args), HERALD_OK, "%s", err.message);
        cr_assert_str_eq (config->log_level, levels [index]);
    }
    herald_config_destroy (&config);
}


//  --------------------------------------------------------------------------
//  Rejected flags

Test (herald_config, unknown_flag_is_rejected_by_name)
{
    const char *args [] = { "--max-batch", "5", "--max-bach", "6", NULL };
    s_assert_rejected (args, "--max-bach");
}

Test (herald_config, positional_argument_is_rejected)
{
    const char *args [] = { "serve", NULL };
    s_assert_rejected (args, "serve");
}

Test (herald_config, missing_value_at_the_end_is_rejected)
{
    const char *args [] = { "--api", "tcp://127.0.0.1:1", "--heartbeat-ms", NULL };
    s_assert_rejected (args, "--heartbeat-ms: missing value");
}

Test (herald_config, missing_value_before_another_flag_is_rejected)
{
    const char *args [] = { "--data-dir", "--api", "tcp://127.0.0.1:1", NULL };
    s_assert_rejected (args, "--data-dir: missing value");
}

Test (herald_config, missing_config_value_is_rejected)
{
    const char *args [] = { "--config", NULL };
    s_assert_rejected (args, "--config: missing value");
}

Test (herald_config, help_with_a_value_is_rejected)
{
    const char *args [] = { "--help=yes", NULL };
    s_assert_rejected (args, "--help");
}

Test (herald_config, non_digits_are_not_a_number)
{
    const char *values [] = { "12abc", "-1", "+1", " 1", "1.5", "1e3", "0x10", "" };
    size_t index;
    for (index = 0; index < sizeof (values) / sizeof (values [0]); index++) {
        char flag [64];
        snprintf (flag, sizeof (flag), "--max-batch=%s", values [index]);
        const char *args [] = { flag, NULL };
        s_assert_rejected (args, "--max-batch: ");
        s_assert_rejected (args, "is not a number");
    }
}

Test (herald_config, zero_is_rejected_for_every_count_and_wait)
{
    const char *flags [] = { "--heartbeat-ms", "--max-batch", "--max-event-bytes",
                             "--max-streams", "--max-queued", "--stream-idle-ms",
                             "--fanout-hwm", "--client-hwm" };
    size_t index;
    for (index = 0; index < sizeof (flags) / sizeof (flags [0]); index++) {
        const char *args [] = { flags [index], "0", NULL };
        s_assert_rejected (args, flags [index]);
        s_assert_rejected (args, "must be at least");
    }
}

Test (herald_config, overflow_is_rejected)
{
    const char *args [] = { "--max-queued", "18446744073709551616", NULL };
    s_assert_rejected (args, "--max-queued");
    s_assert_rejected (args, "overflows");
}

Test (herald_config, fanout_hwm_above_ten_million_is_rejected)
{
    const char *args [] = { "--fanout-hwm", "10000001", NULL };
    s_assert_rejected (args, "--fanout-hwm");
}

Test (herald_config, wait_longer_than_a_day_is_rejected)
{
    const char *args [] = { "--heartbeat-ms", "18446744073709551615", NULL };
    s_assert_rejected (args, "--heartbeat-ms: must be at most 86400000");
}

Test (herald_config, max_batch_above_100000_is_rejected)
{
    const char *args [] = { "--max-batch", "100001", NULL };
    s_assert_rejected (args, "--max-batch: must be at most 100000");
}

Test (herald_config, max_event_bytes_outside_1kib_to_64mib_is_rejected)
{
    const char *low [] = { "--max-event-bytes", "1023", NULL };
    s_assert_rejected (low, "--max-event-bytes: must be at least 1024");
    const char *high [] = { "--max-event-bytes", "67108865", NULL };
    s_assert_rejected (high, "--max-event-bytes: must be at most 67108864");
}

//  --min-free: bytes with a binary unit, or a percentage of the file system
Test (herald_config, min_free_takes_bytes_binary_units_and_percent)
{
    const struct {
        const char *value;
        uint64_t bytes;
        unsigned percent;
    } cases [] = {
        { "0", 0, 0 }, { "12345", 12345, 0 }, { "12345B", 12345, 0 }, { "1KiB", 1024, 0 },
        { "3MiB", 3ULL << 20, 0 }, { "512 MiB", 512ULL << 20, 0 }, { "2GiB", 2ULL << 30, 0 },
        { "1TiB", 1ULL << 40, 0 }, { "5%", 0, 5 }, { "99%", 0, 99 }, { "0%", 0, 0 },
        { "16777215TiB", 16777215ULL << 40, 0 }
    };
    for (size_t index = 0; index < sizeof (cases) / sizeof (cases [0]); index++) {
        herald_config_t *config = herald_config_new ();
        herald_error_t err = { 0 };
        const char *args [] = { "--min-free", cases [index].value, NULL };
        cr_assert_eq (s_parse (config, &err, args), HERALD_OK, "%s: %s", cases [index].value,
                      err.message);
        cr_assert_eq (config->min_free.bytes, cases [index].bytes, "%s", cases [index].value);
        cr_assert_eq (config->min_free.percent, cases [index].percent, "%s",
                      cases [index].value);
        herald_config_destroy (&config);
    }
}

Test (herald_config, min_free_refuses_ambiguous_units_and_nonsense)
{
    const struct {
        const char *value;
        const char *why;
    } cases [] = {
        { "5GB", "unknown unit" }, { "1G", "unknown unit" }, { "10mib", "unknown unit" },
        { "1.5GiB", "unknown unit" }, { "5 percent", "unknown unit" }, { "MiB", "not an amount" },
        { "", "not an amount" }, { "-1", "not an amount" }, { "100%", "more than 99%" },
        { "16777216TiB", "overflows" }, { "18446744073709551616", "overflows" }
    };
    for (size_t index = 0; index < sizeof (cases) / sizeof (cases [0]); index++) {
        char flag [64];
        snprintf (flag, sizeof (flag), "--min-free=%s", cases [index].value);
        const char *args [] = { flag, NULL };
        s_assert_rejected (args, "--min-free: ");
        s_assert_rejected (args, cases [index].why);
    }
    s_assert_file_rejected ("min-free = 2 GB\n", 1, "min-free: '2 GB' has an unknown unit");
}

Test (herald_config, write_buffer_mb_outside_1_to_1024_is_rejected)
{
    const char *low [] = { "--write-buffer-mb", "0", NULL };
    s_assert_rejected (low, "must be at least 1");
    const char *high [] = { "--write-buffer-mb", "1025", NULL };
    s_assert_rejected (high, "must be at most 1024");
}

Test (herald_config, bad_durability_is_rejected)
{
    const char *args [] = { "--durability", "fsync", NULL };
    s_assert_rejected (args, "--durability: 'fsync'");
    const char *upper [] = { "--durability=SYNC", NULL };
    s_assert_rejected (upper, "--durability");
}

Test (herald_config, bad_log_level_is_rejected)
{
    const char *args [] = { "--log-level", "trace", NULL };
    s_assert_rejected (args, "--log-level: 'trace'");
}

Test (herald_config, bad_endpoint_is_rejected)
{
    const char *endpoints [] = { "http://127.0.0.1:5580", "127.0.0.1:5580", "tcp://",
                                 "udp://127.0.0.1:1", "" };
    size_t index;
    for (index = 0; index < sizeof (endpoints) / sizeof (endpoints [0]); index++) {
        const char *api [] = { "--api", endpoints [index], NULL };
        s_assert_rejected (api, "--api: ");
        char fanout [64];
        snprintf (fanout, sizeof (fanout), "--fanout=%s", endpoints [index]);
        const char *args [] = { fanout, NULL };
        s_assert_rejected (args, "--fanout: ");
    }
}

Test (herald_config, empty_data_dir_is_rejected)
{
    const char *args [] = { "--data-dir=", NULL };
    s_assert_rejected (args, "--data-dir: must not be empty");
}

Test (herald_config, bad_node_is_rejected)
{
    const char *space [] = { "--node", "my node", NULL };
    s_assert_rejected (space, "--node");
    char long_node [80];
    memset (long_node, 'a', 65);
    long_node [65] = 0;
    const char *too_long [] = { "--node", long_node, NULL };
    s_assert_rejected (too_long, "--node");
}

Test (herald_config, rejected_value_leaves_the_field_unchanged)
{
    herald_config_t *config = herald_config_new ();
    herald_error_t err = { 0 };
    const char *args [] = { "--api", "http://x", NULL };
    cr_assert_eq (s_parse (config, &err, args), HERALD_ERR_INVALID);
    cr_assert_str_eq (config->api, "tcp://127.0.0.1:5580");
    herald_config_destroy (&config);
}


//  --------------------------------------------------------------------------
//  The config file

Test (herald_config, file_sets_every_key)
{
    char text [1024] = "";
    size_t index;
    for (index = 0; index < S_FLAG_COUNT; index++) {
        size_t used = strlen (text);
        snprintf (text + used, sizeof (text) - used, "%s = %s\n",
                  s_flag_values [index][0], s_flag_values [index][1]);
    }
    char *path = s_file_new (text);
    herald_config_t *config = herald_config_new ();
    herald_error_t err = { 0 };
    cr_assert_eq (herald_config_load (config, path, &err), HERALD_OK, "%s", err.message);
    s_assert_flag_values (config);
    cr_assert_str_eq (config->config_file, path);
    herald_config_destroy (&config);
    s_file_destroy (&path);
}

Test (herald_config, file_comments_blank_lines_and_whitespace_are_ignored)
{
    char *path = s_file_new ("# Herald broker\n"
                             "\n"
                             "   \t\n"
                             "  # indented comment = ignored\n"
                             "\tmax-batch\t=\t42  \n"
                             "log-level=warn\r\n"
                             "data-dir =   /srv/a=b  \n"
                             "max-streams = 9");  //  no final newline
    herald_config_t *config = herald_config_new ();
    herald_error_t err = { 0 };
    cr_assert_eq (herald_config_load (config, path, &err), HERALD_OK, "%s", err.message);
    cr_assert_eq (config->max_batch, 42);
    cr_assert_str_eq (config->log_level, "warn");
    cr_assert_str_eq (config->data_dir, "/srv/a=b");
    cr_assert_eq (config->max_streams, 9);
    cr_assert_str_eq (config->api, "tcp://127.0.0.1:5580");
    herald_config_destroy (&config);
    s_file_destroy (&path);
}

Test (herald_config, flags_override_the_file_when_config_comes_first)
{
    char *path = s_file_new ("max-batch = 10\nheartbeat-ms = 20\n");
    herald_config_t *config = herald_config_new ();
    herald_error_t err = { 0 };
    const char *args [] = { "--config", path, "--max-batch", "11", NULL };
    cr_assert_eq (s_parse (config, &err, args), HERALD_OK, "%s", err.message);
    cr_assert_eq (config->max_batch, 11);
    cr_assert_eq (config->heartbeat_ms, 20);
    cr_assert_str_eq (config->config_file, path);
    herald_config_destroy (&config);
    s_file_destroy (&path);
}

Test (herald_config, flags_override_the_file_when_config_comes_last)
{
    char *path = s_file_new ("max-batch = 10\nheartbeat-ms = 20\n");
    herald_config_t *config = herald_config_new ();
    herald_error_t err = { 0 };
    char config_flag [64];
    snprintf (config_flag, sizeof (config_flag), "--config=%s", path);
    const char *args [] = { "--max-batch=11", config_flag, NULL };
    cr_assert_eq (s_parse (config, &err, args), HERALD_OK, "%s", err.message);
    cr_assert_eq (config->max_batch, 11);
    cr_assert_eq (config->heartbeat_ms, 20);
    herald_config_destroy (&config);
    s_file_destroy (&path);
}

Test (herald_config, unknown_key_names_file_and_line)
{
    s_assert_file_rejected ("max-batch = 5\n# fine\nmax-bach = 6\n", 3, "max-bach");
}

Test (herald_config, line_without_equals_names_file_and_line)
{
    s_assert_file_rejected ("\nmax-batch 5\n", 2, "key = value");
}

Test (herald_config, line_without_key_names_file_and_line)
{
    s_assert_file_rejected ("= 5\n", 1, "no key");
}

Test (herald_config, bad_number_in_file_names_file_line_and_key)
{
    s_assert_file_rejected ("max-batch = 5 # five\n", 1, "max-batch: '5 # five' is not a number");
}

Test (herald_config, zero_in_file_names_file_line_and_key)
{
    s_assert_file_rejected ("\n\nstream-idle-ms = 0\n", 3, "stream-idle-ms: must be at least 1");
}

Test (herald_config, overflow_in_file_names_file_line_and_key)
{
    s_assert_file_rejected ("max-streams = 99999999999999999999\n", 1,
                            "max-streams: '99999999999999999999' overflows");
}

Test (herald_config, bad_durability_in_file_names_file_line_and_key)
{
    s_assert_file_rejected ("durability = never\n", 1, "durability: 'never'");
}

Test (herald_config, bad_level_in_file_names_file_line_and_key)
{
    s_assert_file_rejected ("log-level = verbose\n", 1, "log-level: 'verbose'");
}

Test (herald_config, bad_endpoint_in_file_names_file_line_and_key)
{
    s_assert_file_rejected ("fanout = localhost:5581\n", 1, "fanout: 'localhost:5581'");
}

Test (herald_config, config_key_in_file_is_rejected)
{
    s_assert_file_rejected ("config = /etc/other.conf\n", 1, "config: ");
}

Test (herald_config, bad_line_sets_the_key_as_field)
{
    char *path = s_file_new ("max-batch = 0\n");
    herald_config_t *config = herald_config_new ();
    herald_error_t err = { 0 };
    cr_assert_eq (herald_config_load (config, path, &err), HERALD_ERR_INVALID);
    cr_assert_str_eq (err.field, "max-batch");
    herald_config_destroy (&config);
    s_file_destroy (&path);
}

Test (herald_config, missing_file_names_the_file_and_strerror)
{
    herald_config_t *config = herald_config_new ();
    herald_error_t err = { 0 };
    const char *path = "/tmp/herald_config_no_such_file.conf";
    cr_assert_eq (herald_config_load (config, path, &err), HERALD_ERR_INVALID);
    cr_assert_not_null (strstr (err.message, path), "%s", err.message);
    cr_assert_not_null (strstr (err.message, strerror (ENOENT)), "%s", err.message);
    cr_assert_null (config->config_file);
    herald_config_destroy (&config);
}

Test (herald_config, missing_config_file_fails_the_parse)
{
    const char *args [] = { "--config", "/tmp/herald_config_no_such_file.conf", NULL };
    s_assert_rejected (args, "/tmp/herald_config_no_such_file.conf");
}

Test (herald_config, directory_as_config_file_is_rejected)
{
    herald_config_t *config = herald_config_new ();
    herald_error_t err = { 0 };
    cr_assert_eq (herald_config_load (config, "/tmp", &err), HERALD_ERR_INVALID);
    cr_assert_not_null (strstr (err.message, "/tmp"), "%s", err.message);
    herald_config_destroy (&config);
}


//  --------------------------------------------------------------------------
//  --help and --version

Test (herald_config, help_prints_every_flag_with_its_default_and_exits)
{
    char *text = NULL;
    size_t size = 0;
    FILE *out = open_memstream (&text, &size);
    cr_assert_not_null (out);
    herald_config_t *config = herald_config_new ();
    herald_error_t err = { 0 };
    bool exit_now = false;
    const char *args [] = { "--help", NULL };
    cr_assert_eq (s_parse_out (config, out, &exit_now, &err, args), HERALD_OK);
    cr_assert (exit_now);
    fclose (out);
    size_t index;
    for (index = 0; index < S_FLAG_COUNT; index++) {
        char flag [32];
        snprintf (flag, sizeof (flag), "--%s ", s_flag_values [index][0]);
        cr_assert_not_null (strstr (text, flag), "usage lacks %s", flag);
    }
    const char *others [] = { "--config FILE", "--help", "--version",
                              "(default ./var/herald)", "(default tcp://127.0.0.1:5580)",
                              "(default tcp://127.0.0.1:5581)", "(default sync)",
                              "(default 1000)", "(default 1048576)", "(default 60000)",
                              "(default 64)", "(default 10000)", "(default info)",
                              "(default auto)" };
    for (index = 0; index < sizeof (others) / sizeof (others [0]); index++)
        cr_assert_not_null (strstr (text, others [index]), "usage lacks %s", others [index]);
    free (text);
    herald_config_destroy (&config);
}

Test (herald_config, version_prints_the_version_and_exits)
{
    char *text = NULL;
    size_t size = 0;
    FILE *out = open_memstream (&text, &size);
    herald_config_t *config = herald_config_new ();
    herald_error_t err = { 0 };
    bool exit_now = false;
    const char *args [] = { "--version", NULL };
    cr_assert_eq (s_parse_out (config, out, &exit_now, &err, args), HERALD_OK);
    cr_assert (exit_now);
    fclose (out);
    cr_assert_str_eq (text, "heraldd 0.1.0\n");
    free (text);
    herald_config_destroy (&config);
}

Test (herald_config, help_wins_over_a_bad_command_line)
{
    FILE *out = tmpfile ();
    cr_assert_not_null (out);
    herald_config_t *config = herald_config_new ();
    herald_error_t err = { 0 };
    bool exit_now = false;
    const char *args [] = { "--bogus", "--config", "/tmp/herald_config_no_such_file.conf",
                            "--help", NULL };
    cr_assert_eq (s_parse_out (config, out, &exit_now, &err, args), HERALD_OK);
    cr_assert (exit_now);
    cr_assert_gt (ftell (out), 0);
    fclose (out);
    herald_config_destroy (&config);
}


//  --------------------------------------------------------------------------
//  The cluster (issue 13): --peer, --raft, --cluster-state, timeouts

#define S_PEER_A    "a,127.0.0.1:7001,tcp://127.0.0.1:5001,tcp://127.0.0.1:6001"
#define S_PEER_B    "b,127.0.0.1:7002,tcp://127.0.0.1:5002,tcp://127.0.0.1:6002"
#define S_PEER_C    "c,127.0.0.1:7003,tcp://127.0.0.1:5003,tcp://127.0.0.1:6003"

Test (herald_config, standalone_has_no_peers)
{
    herald_config_t *config = herald_config_new ();
    cr_assert_not (herald_config_clustered (config));
    cr_assert_eq (config->peer_count, 0);
    cr_assert_not (config->cluster_new);
    cr_assert_eq (config->election_ms, 500);
    cr_assert_eq (config->raft_heartbeat_ms, 100);
    cr_assert_null (herald_config_self_peer (config));
    herald_config_destroy (&config);
}

Test (herald_config, peers_make_a_node_whose_endpoints_default_to_its_entry)
{
    herald_config_t *config = herald_config_new ();
    herald_error_t err = { 0 };
    const char *args [] = { "--node", "b", "--peer", S_PEER_A, "--peer=" S_PEER_B,
                            "--peer", S_PEER_C, "--cluster-state", "new",
                            "--election-ms", "300", "--raft-heartbeat-ms", "30", NULL };
    cr_assert_eq (s_parse (config, &err, args), HERALD_OK, "%s", err.message);
    cr_assert (herald_config_clustered (config));
    cr_assert_eq (config->peer_count, 3);
    cr_assert_str_eq (config->peers [2].name, "c");
    cr_assert_str_eq (config->peers [2].raft, "127.0.0.1:7003");
    cr_assert_str_eq (config->peers [2].api, "tcp://127.0.0.1:5003");
    cr_assert_str_eq (config->peers [2].fanout, "tcp://127.0.0.1:6003");
    cr_assert_str_eq (herald_config_self_peer (config)->name, "b");
    cr_assert_str_eq (config->raft, "127.0.0.1:7002");
    cr_assert_str_eq (config->api, "tcp://127.0.0.1:5002");
    cr_assert_str_eq (config->fanout, "tcp://127.0.0.1:6002");
    cr_assert (config->cluster_new);
    cr_assert_eq (config->election_ms, 300);
    cr_assert_eq (config->raft_heartbeat_ms, 30);
    herald_config_destroy (&config);
}

Test (herald_config, a_given_api_is_bound_instead_of_the_peer_entry)
{
    herald_config_t *config = herald_config_new ();
    herald_error_t err = { 0 };
    const char *args [] = { "--node", "a", "--peer", S_PEER_A, "--api", "tcp://0.0.0.0:5001",
                            "--raft", "127.0.0.1:7001", NULL };
    cr_assert_eq (s_parse (config, &err, args), HERALD_OK, "%s", err.message);
    cr_assert_str_eq (config->api, "tcp://0.0.0.0:5001");
    cr_assert_str_eq (config->fanout, "tcp://127.0.0.1:6001");
    herald_config_destroy (&config);
}

Test (herald_config, bad_peers_are_rejected_naming_why)
{
    const char *fields [] = { "--node", "a", "--peer", "a,127.0.0.1:7001,tcp://x:1", NULL };
    s_assert_rejected (fields, "four fields");
    const char *extra [] = { "--node", "a", "--peer", S_PEER_A ",tcp://x:2", NULL };
    s_assert_rejected (extra, "four fields");
    const char *name [] = { "--node", "a", "--peer", ",127.0.0.1:7001,tcp://x:1,tcp://x:2",
                            NULL };
    s_assert_rejected (name, "not a node name");
    const char *port [] = { "--node", "a", "--peer", "a,127.0.0.1:70000,tcp://x:1,tcp://x:2",
                            NULL };
    s_assert_rejected (port, "Raft address '127.0.0.1:70000'");
    const char *host [] = { "--node", "a", "--peer", "a,7001,tcp://x:1,tcp://x:2", NULL };
    s_assert_rejected (host, "not HOST:PORT");
    const char *api [] = { "--node", "a", "--peer", "a,h:1,http://x:1,tcp://x:2", NULL };
    s_assert_rejected (api, "'http://x:1' is not an endpoint");
    const char *twice [] = { "--node", "a", "--peer", S_PEER_A, "--peer",
                             "a,127.0.0.1:7009,tcp://127.0.0.1:5009,tcp://127.0.0.1:6009", NULL };
    s_assert_rejected (twice, "node 'a' is given twice");
    const char *raft [] = { "--node", "a", "--peer", S_PEER_A, "--peer",
                            "b,127.0.0.1:7001,tcp://127.0.0.1:5009,tcp://127.0.0.1:6009", NULL };
    s_assert_rejected (raft, "Raft address 127.0.0.1:7001 is peer 'a''s");
    const char *both [] = { "--node", "a", "--peer", S_PEER_A, "--peer",
                            "b,127.0.0.1:7009,tcp://127.0.0.1:5001,tcp://127.0.0.1:6009", NULL };
    s_assert_rejected (both, "api tcp://127.0.0.1:5001 is peer 'a''s");
    //  Every message names the flag
    s_assert_rejected (twice, "--peer");
}

Test (herald_config, a_node_must_be_one_of_the_peers)
{
    const char *none [] = { "--peer", S_PEER_A, "--peer", S_PEER_B, NULL };
    s_assert_rejected (none, "needs --node NAME");
    const char *other [] = { "--node", "z", "--peer", S_PEER_A, "--peer", S_PEER_B, NULL };
    s_assert_rejected (other, "'z' is not one of the --peer names (a, b)");
}

Test (herald_config, cluster_flags_without_peers_are_rejected)
{
    const char *raft [] = { "--raft", "127.0.0.1:7001", NULL };
    s_assert_rejected (raft, "--raft");
    const char *state [] = { "--cluster-state", "new", NULL };
    s_assert_rejected (state, "give every member with --peer");
    const char *election [] = { "--election-ms", "500", NULL };
    s_assert_rejected (election, "--election-ms");
}

Test (herald_config, bad_cluster_values_are_rejected)
{
    const char *state [] = { "--node", "a", "--peer", S_PEER_A, "--cluster-state", "old", NULL };
    s_assert_rejected (state, "'old' is not new or existing");
    const char *beat [] = { "--node", "a", "--peer", S_PEER_A, "--election-ms", "100",
                            "--raft-heartbeat-ms", "100", NULL };
    s_assert_rejected (beat, "less than --election-ms (100)");
    const char *low [] = { "--node", "a", "--peer", S_PEER_A, "--election-ms", "10", NULL };
    s_assert_rejected (low, "at least 50");
    const char *raft [] = { "--node", "a", "--peer", S_PEER_A, "--raft", "127.0.0.1:7777",
                            NULL };
    s_assert_rejected (raft, "not this node's --peer Raft address 127.0.0.1:7001");
    const char *bad [] = { "--node", "a", "--peer", S_PEER_A, "--raft", "nowhere", NULL };
    s_assert_rejected (bad, "'nowhere' is not HOST:PORT");
}

Test (herald_config, file_peers_accumulate_and_the_command_line_replaces_them)
{
    char *path = s_file_new ("node = a\npeer = " S_PEER_A "\npeer = " S_PEER_B "\n"
                             "cluster-state = new\n");
    herald_config_t *config = herald_config_new ();
    herald_error_t err = { 0 };
    const char *file_only [] = { "--config", path, NULL };
    cr_assert_eq (s_parse (config, &err, file_only), HERALD_OK, "%s", err.message);
    cr_assert_eq (config->peer_count, 2);
    cr_assert (config->cluster_new);
    herald_config_destroy (&config);
    config = herald_config_new ();
    const char *line [] = { "--peer", S_PEER_A, "--config", path, "--peer", S_PEER_C, NULL };
    cr_assert_eq (s_parse (config, &err, line), HERALD_OK, "%s", err.message);
    cr_assert_eq (config->peer_count, 2);
    cr_assert_str_eq (config->peers [0].name, "a");
    cr_assert_str_eq (config->peers [1].name, "c");
    herald_config_destroy (&config);
    s_file_destroy (&path);
}

Test (herald_config, a_cluster_mistake_of_the_file_alone_is_the_files)
{
    char *path = s_file_new ("peer = " S_PEER_A "\n");
    herald_config_t *config = herald_config_new ();
    herald_error_t err = { 0 };
    const char *args [] = { "--config", path, NULL };
    cr_assert_eq (s_parse (config, &err, args), HERALD_ERR_INVALID);
    cr_assert (config->file_failed);
    herald_config_destroy (&config);
    config = herald_config_new ();
    const char *line [] = { "--config", path, "--node", "z", NULL };
    cr_assert_eq (s_parse (config, &err, line), HERALD_ERR_INVALID);
    cr_assert_not (config->file_failed);
    herald_config_destroy (&config);
    s_assert_file_rejected ("peer = a,b\n", 1, "four fields");
    s_file_destroy (&path);
}

Test (herald_config, help_lists_the_cluster_flags)
{
    char *text = NULL;
    size_t size = 0;
    FILE *out = open_memstream (&text, &size);
    herald_config_t *config = herald_config_new ();
    herald_error_t err = { 0 };
    bool exit_now = false;
    const char *args [] = { "--help", NULL };
    cr_assert_eq (s_parse_out (config, out, &exit_now, &err, args), HERALD_OK);
    fclose (out);
    const char *flags [] = { "--peer NAME,RAFT,API,FANOUT", "--raft HOST:PORT",
                             "--cluster-state new|existing", "--election-ms N",
                             "--raft-heartbeat-ms N", "(default existing)", "(default 100)" };
    for (size_t index = 0; index < sizeof (flags) / sizeof (flags [0]); index++)
        cr_assert_not_null (strstr (text, flags [index]), "usage lacks %s", flags [index]);
    free (text);
    herald_config_destroy (&config);
}

//  ---------------------------------------------------------------------
//  An installed heraldd's default config file (issue 17): read when no
//  --config is given and it exists; a bad one is the file's error (78).

Test (herald_config, the_default_config_is_read_when_it_exists)
{
    char *path = s_file_new ("max-batch = 77\nlog-level = debug\n");
    herald_config_t *config = herald_config_new ();
    config->default_config = path;
    herald_error_t err = { 0 };
    const char *args [] = { "--log-level", "warn", NULL };
    cr_assert_eq (s_parse (config, &err, args), HERALD_OK, "%s", err.message);
    cr_assert_eq (config->max_batch, 77);
    cr_assert_str_eq (config->log_level, "warn", "the command line wins over the file");
    cr_assert_str_eq (config->config_file, path);
    herald_config_destroy (&config);
    s_file_destroy (&path);
}

Test (herald_config, a_config_flag_replaces_the_default_config)
{
    char *fallback = s_file_new ("max-batch = 77\n");
    char *given = s_file_new ("max-streams = 9\n");
    herald_config_t *config = herald_config_new ();
    config->default_config = fallback;
    herald_error_t err = { 0 };
    const char *args [] = { "--config", given, NULL };
    cr_assert_eq (s_parse (config, &err, args), HERALD_OK, "%s", err.message);
    cr_assert_eq (config->max_batch, 1000, "the default file was read too");
    cr_assert_eq (config->max_streams, 9);
    herald_config_destroy (&config);
    s_file_destroy (&fallback);
    s_file_destroy (&given);
}

Test (herald_config, a_missing_default_config_is_no_error)
{
    herald_config_t *config = herald_config_new ();
    config->default_config = "/tmp/herald_config_no_such_file/heraldd.conf";
    herald_error_t err = { 0 };
    const char *args [] = { NULL };
    cr_assert_eq (s_parse (config, &err, args), HERALD_OK, "%s", err.message);
    cr_assert_null (config->config_file);
    herald_config_destroy (&config);
}

Test (herald_config, a_bad_default_config_is_a_file_error)
{
    char *path = s_file_new ("max-batch = zero\n");
    herald_config_t *config = herald_config_new ();
    config->default_config = path;
    herald_error_t err = { 0 };
    const char *args [] = { NULL };
    cr_assert_eq (s_parse (config, &err, args), HERALD_ERR_INVALID);
    cr_assert (config->file_failed, "a bad default file must exit 78, not 64");
    s_assert_line_error (&err, path, 1);
    herald_config_destroy (&config);
    s_file_destroy (&path);
}

//  SIGHUP's comparison (herald_daemon): the settings that differ, by name
Test (herald_config, diff_names_the_settings_that_differ)
{
    herald_config_t *a = herald_config_new ();
    herald_config_t *b = herald_config_new ();
    const char *names [8];
    cr_assert_eq (herald_config_diff (a, b, names, 8), 0);
    herald_error_t err = { 0 };
    const char *args [] = { "--log-level", "debug", "--max-batch", "5", "--min-free", "5%",
                            NULL };
    cr_assert_eq (s_parse (b, &err, args), HERALD_OK, "%s", err.message);
    cr_assert_eq (herald_config_diff (a, b, names, 8), 3);
    cr_assert_str_eq (names [0], "max-batch");
    cr_assert_str_eq (names [1], "min-free");
    cr_assert_str_eq (names [2], "log-level");
    cr_assert_eq (herald_config_diff (a, b, names, 1), 3, "the count beyond max");
    herald_config_destroy (&a);
    herald_config_destroy (&b);
}

//  ---------------------------------------------------------------------
//  Retention (docs/operations.md "Trimming and retention")

Test (herald_config, retention_policies_parse_from_flags_and_file)
{
    herald_config_t *config = herald_config_new ();
    cr_assert_eq (config->retention_count, 0, "a policy by default");
    cr_assert_eq (config->retention_interval_ms, 60000);
    herald_error_t err = { 0 };
    const char *args [] = { "--retention", "orders.=7d", "--retention", "=30m",
                            "--retention-interval-ms", "10", NULL };
    cr_assert_eq (s_parse (config, &err, args), HERALD_OK, "%s", err.message);
    cr_assert_eq (config->retention_count, 2);
    cr_assert_str_eq (config->retention [0].prefix, "orders.");
    cr_assert_eq (config->retention [0].age_ms, 7ULL * 86400000);
    cr_assert_str_eq (config->retention [1].prefix, "");
    cr_assert_eq (config->retention [1].age_ms, 30ULL * 60000);
    herald_config_destroy (&config);
    config = herald_config_new ();
    const char *spaced [] = { "--retention", "orders. 12h", NULL };
    cr_assert_eq (s_parse (config, &err, spaced), HERALD_OK, "%s", err.message);
    cr_assert_str_eq (config->retention [0].prefix, "orders.");
    cr_assert_eq (config->retention [0].age_ms, 12ULL * 3600000);
    cr_assert_str_eq (config->retention [0].age, "12h");
    herald_config_destroy (&config);
    //  The file: one line each, PREFIX AGE or AGE; the command line's list
    //  replaces the file's whole
    char *path = s_file_new ("retention = metrics. 7d\nretention = 365d\n"
                             "retention-interval-ms = 500\n");
    config = herald_config_new ();
    const char *file_only [] = { "--config", path, NULL };
    cr_assert_eq (s_parse (config, &err, file_only), HERALD_OK, "%s", err.message);
    cr_assert_eq (config->retention_count, 2);
    cr_assert_str_eq (config->retention [0].prefix, "metrics.");
    cr_assert_str_eq (config->retention [1].prefix, "");
    cr_assert_eq (config->retention [1].age_ms, 365ULL * 86400000);
    cr_assert_eq (config->retention_interval_ms, 500);
    herald_config_destroy (&config);
    config = herald_config_new ();
    const char *line [] = { "--config", path, "--retention", "x.=1s", NULL };
    cr_assert_eq (s_parse (config, &err, line), HERALD_OK, "%s", err.message);
    cr_assert_eq (config->retention_count, 1);
    cr_assert_str_eq (config->retention [0].prefix, "x.");
    herald_config_destroy (&config);
    s_file_destroy (&path);
}

Test (herald_config, bad_retention_policies_are_refused_naming_why)
{
    const char *unit [] = { "--retention", "orders.=7w", NULL };
    s_assert_rejected (unit, "is not a number of 1 or more and a unit s, m, h or d");
    const char *zero [] = { "--retention", "=0s", NULL };
    s_assert_rejected (zero, "the age '0s'");
    const char *none [] = { "--retention", "orders.", NULL };
    s_assert_rejected (none, "the age 'orders.'");
    const char *huge [] = { "--retention", "=36501d", NULL };
    s_assert_rejected (huge, "at most 36500d");
    const char *dollar [] = { "--retention", "$sys.=1d", NULL };
    s_assert_rejected (dollar, "not a topic prefix");
    const char *twice [] = { "--retention", "a.=1d", "--retention", "a. 2d", NULL };
    s_assert_rejected (twice, "prefix 'a.' has a policy already (1d)");
    const char *interval [] = { "--retention-interval-ms", "9", NULL };
    s_assert_rejected (interval, "at least 10");
    char *path = s_file_new ("retention = orders. 7x\n");
    herald_config_t *config = herald_config_new ();
    herald_error_t err = { 0 };
    const char *args [] = { "--config", path, NULL };
    cr_assert_eq (s_parse (config, &err, args), HERALD_ERR_INVALID);
    cr_assert (config->file_failed);
    cr_assert_not_null (strstr (err.message, ":1: retention: 'orders. 7x'"), "%s",
                        err.message);
    herald_config_destroy (&config);
    s_file_destroy (&path);
}
