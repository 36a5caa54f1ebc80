/*  =========================================================================
    test_herald_log - herald_set_log: the library's log lines go to the
    callback, with their level, instead of stderr; NULL restores stderr

    A real heraldd (the agent fixture).  The lines are ones the agent says
    for real: a torn outbox record cut off (a WARNING; the broker is
    stopped so the events stay in the outbox, then garbage is appended as a
    crash inside a publish leaves it) and a subscription that failed with no
    on_error (an ERROR).  stderr is a file for the test's agent calls, so
    the test sees what went there and what did not.
    =========================================================================
*/

#include <criterion/criterion.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agenttest.h"
#include "testutil.h"

#define WAIT_MS     20000
#define LINES_MAX   64

//  What the callback received
typedef struct {
    pthread_mutex_t lock;
    int count;
    herald_log_level_t levels [LINES_MAX];
    char lines [LINES_MAX][256];
    int nested_rc;                  //  herald_set_log called from the callback
} s_log_t;

static s_log_t s_log;
static int s_stderr = -1;           //  the real stderr while a file stands in
static char *s_stderr_dir;
static char *s_stderr_path;

static void
s_record (herald_log_level_t level, const char *message, void *arg)
{
    s_log_t *log = arg;
    pthread_mutex_lock (&log->lock);
    if (log->count < LINES_MAX) {
        log->levels [log->count] = level;
        snprintf (log->lines [log->count], sizeof log->lines [0], "%s", message);
        log->count++;
    }
    pthread_mutex_unlock (&log->lock);
    //  Refused, not a deadlock
    log->nested_rc = herald_set_log (NULL, NULL);
}

//  The index of the first line with `needle` at `level`, or -1
static int
s_find (herald_log_level_t level, const char *needle)
{
    pthread_mutex_lock (&s_log.lock);
    int found = -1;
    for (int index = 0; index < s_log.count && found < 0; index++)
        if (s_log.levels [index] == level && strstr (s_log.lines [index], needle))
            found = index;
    pthread_mutex_unlock (&s_log.lock);
    return found;
}

static void
s_setup (void)
{
    zsys_handler_set (NULL);
    memset (&s_log, 0, sizeof s_log);
    pthread_mutex_init (&s_log.lock, NULL);
    at_setup ("log", "log-state");
    //  stderr into a file, the real one kept for the end
    s_stderr_dir = tu_tmpdir_new ("log-stderr");
    cr_assert_not_null (s_stderr_dir);
    s_stderr_path = tu_path (s_stderr_dir, "stderr.txt");
    int fd = open (s_stderr_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    cr_assert (fd >= 0);
    s_stderr = dup (2);
    cr_assert (s_stderr >= 0);
    cr_assert_eq (dup2 (fd, 2), 2);
    close (fd);
}

static void
s_teardown (void)
{
    herald_set_log (NULL, NULL);
    at_teardown ();
    if (s_stderr >= 0) {
        dup2 (s_stderr, 2);
        close (s_stderr);
        s_stderr = -1;
    }
    free (s_stderr_path);
    s_stderr_path = NULL;
    if (s_stderr_dir)
        tu_tmpdir_destroy (&s_stderr_dir);
}

TestSuite (herald_log, .init = s_setup, .fini = s_teardown, .timeout = 60);

//  What went to stderr so far (a string to free)
static char *
s_stderr_text (void)
{
    fflush (stderr);
    FILE *file = fopen (s_stderr_path, "r");
    cr_assert_not_null (file);
    char *text = calloc (1, 65536);
    cr_assert_not_null (text);
    size_t len = fread (text, 1, 65535, file);
    text [len] = 0;
    fclose (file);
    return text;
}

static herald_agent_t *
s_new_agent (void)
{
    herald_agent_options_t options;
    au_options (&options, at_broker, at_state);
    herald_agent_t *agent = herald_agent_new ("test", &options);
    cr_assert_not_null (agent, "herald_agent_new: %s", herald_agent_last_error ());
    return agent;
}

//  With the broker stopped, three events stay in the outbox; then garbage
//  after the last record, as a crash inside a publish call leaves it.  The
//  next agent cuts it off and says so.
static void
s_tear_the_outbox (void)
{
    cr_assert_eq (bu_broker_stop (at_broker, 10000), 0);
    at_agent = s_new_agent ();
    for (int index = 0; index < 3; index++) {
        herald_outgoing_t event = { .topic = "o.1", .data = "x", .data_len = 1 };
        cr_assert_eq (herald_agent_publish_async (at_agent, &event, NULL, NULL, NULL),
                      HERALD_OK);
    }
    herald_agent_destroy (&at_agent);
    char *path = tu_path (at_state, "outbox");
    int fd = open (path, O_WRONLY | O_APPEND);
    cr_assert (fd >= 0);
    cr_assert_eq (write (fd, "\x40\x00\x00\x00\x01", 5), 5);
    close (fd);
    free (path);
}

static uint64_t
s_recovered (herald_agent_t *agent)
{
    herald_agent_stats_t stats;
    herald_agent_stats (agent, &stats);
    return stats.state_recovered;
}

Test (herald_log, a_torn_record_recovered_is_a_warning_to_the_callback_not_stderr)
{
    s_tear_the_outbox ();
    cr_assert_eq (herald_set_log (s_record, &s_log), HERALD_OK);
    at_agent = s_new_agent ();
    cr_assert_eq (s_recovered (at_agent), 1);
    int index = s_find (HERALD_LOG_WARNING, "cut off a record torn by a crash");
    cr_assert (index >= 0, "%d lines, none the torn record's", s_log.count);
    cr_assert (strstr (s_log.lines [index], "outbox"), "%s", s_log.lines [index]);
    cr_assert_null (strchr (s_log.lines [index], '\n'), "a line, no newline");
    cr_assert_eq (s_log.nested_rc, HERALD_ERR_INVALID, "herald_set_log from the callback");
    herald_agent_destroy (&at_agent);
    char *text = s_stderr_text ();
    cr_assert_null (strstr (text, "herald agent:"), "stderr got: %s", text);
    free (text);
}

Test (herald_log, null_restores_the_stderr_line)
{
    s_tear_the_outbox ();
    cr_assert_eq (herald_set_log (s_record, &s_log), HERALD_OK);
    cr_assert_eq (herald_set_log (NULL, NULL), HERALD_OK);
    at_agent = s_new_agent ();
    cr_assert_eq (s_recovered (at_agent), 1);
    herald_agent_destroy (&at_agent);
    cr_assert_eq (s_log.count, 0, "the callback was called after NULL: %s", s_log.lines [0]);
    char *text = s_stderr_text ();
    cr_assert (strstr (text, "herald agent: ") && strstr (text, "outbox: cut off a record "
                                                          "torn by a crash"), "stderr: %s", text);
    free (text);
}

static int
s_failing_handler (const herald_delivery_t *event, void *arg)
{
    (void) event;
    (void) arg;
    return HERALD_ERR_CONFLICT;
}

Test (herald_log, a_failed_subscription_without_on_error_is_an_error)
{
    cr_assert_eq (herald_set_log (s_record, &s_log), HERALD_OK);
    at_agent = s_new_agent ();
    herald_outgoing_t event = { .topic = "f.1", .data = "x", .data_len = 1 };
    cr_assert_eq (herald_agent_publish (at_agent, &event, NULL, 0), HERALD_OK, "%s",
                  herald_agent_last_error ());
    cr_assert_eq (herald_agent_subscribe (at_agent, "s", NULL,
                                          (herald_start_t) { HERALD_START_BEGINNING, 0 },
                                          s_failing_handler, NULL), HERALD_OK);
    int64_t deadline = zclock_mono () + WAIT_MS;
    while (s_find (HERALD_LOG_ERROR, "subscription s failed") < 0 && zclock_mono () < deadline)
        usleep (10000);
    int index = s_find (HERALD_LOG_ERROR, "subscription s failed");
    cr_assert (index >= 0, "no ERROR line in %d lines", s_log.count);
    herald_agent_destroy (&at_agent);
}
