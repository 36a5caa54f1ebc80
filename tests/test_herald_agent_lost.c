/*  =========================================================================
    test_herald_agent_lost - an agent on a real heraldd that lost events

    End to end (issue 11, item 1): a subscriber handles every event; the
    broker is killed (-9) and its write-ahead log deleted, so the newest
    events are lost; the operator accepts the loss (what `herald repair
    --accept-loss` does); the broker starts again and new events take the
    lost seqs.  The agent must say so (HERALD_ERR_DATA_LOST through
    on_error, data_lost in the status), rewind, and deliver the new events
    at the reused seqs, in order, without skipping one.
    =========================================================================
*/

#include <criterion/criterion.h>
#include <dirent.h>
#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agenttest.h"
#include "herald_store.h"
#include "testutil.h"

#define WAIT_MS     20000

static atomic_int s_errors;
static int s_code;
static char s_message [320];

static void
s_on_error (const char *subscription, int code, const char *message, void *arg)
{
    (void) subscription, (void) arg;
    s_code = code;
    snprintf (s_message, sizeof s_message, "%s", message);
    s_errors++;
}

static void
s_setup (void)
{
    const char *extra [] = { "--durability", "async", NULL };
    zsys_handler_set (NULL);
    at_broker = bu_broker_new ("agent-lost", extra);
    cr_assert_not_null (at_broker);
    cr_assert_eq (bu_broker_start (at_broker, AT_START_MS), 0);
    at_state = tu_tmpdir_new ("agent-lost");
    at_recorder = au_recorder_new ();
}

TestSuite (herald_agent_lost, .init = s_setup, .fini = at_teardown, .timeout = 120);

static void
s_delete_wal (const char *dir)
{
    DIR *handle = opendir (dir);
    cr_assert_not_null (handle);
    struct dirent *entry;
    while ((entry = readdir (handle))) {
        size_t len = strlen (entry->d_name);
        if (len >= 5 && strcmp (entry->d_name + len - 4, ".log") == 0) {
            char path [4200];
            snprintf (path, sizeof path, "%s/%s", dir, entry->d_name);
            cr_assert_eq (unlink (path), 0);
        }
    }
    closedir (handle);
}

static void
s_accept_loss (const char *dir)
{
    herald_store_options_t options = { .accept_loss = true };
    herald_error_t err;
    herald_store_t *store = herald_store_open (dir, &options, &err);
    cr_assert_not_null (store, "open for repair: %s", err.message);
    cr_assert_eq (herald_store_accept_loss (store, "test: WAL deleted", &err), HERALD_OK, "%s",
                  err.message);
    cr_assert_eq (herald_store_stop (store, &err), HERALD_OK, "%s", err.message);
    herald_store_destroy (&store);
}

Test (herald_agent_lost, a_subscriber_past_the_loss_is_told_and_gets_the_new_events)
{
    herald_agent_options_t options;
    au_options (&options, at_broker, at_state);
    options.fanout = NULL;
    options.on_error = s_on_error;
    at_agent = herald_agent_new ("lost", &options);
    cr_assert_not_null (at_agent);
    cr_assert_eq (herald_agent_subscribe (at_agent, "s", NULL,
                  (herald_start_t) { HERALD_START_BEGINNING, 0 }, au_record, at_recorder),
                  HERALD_OK);
    cr_assert_eq (au_publish (at_broker->api, "l.%zu", 5, 200, WAIT_MS), 0);
    cr_assert_eq (au_wait_count (at_recorder, 200, WAIT_MS), 200);
    bu_broker_kill (at_broker);
    s_delete_wal (at_broker->data_dir);
    cr_assert_eq (bu_broker_restart (at_broker, 2000), -1, "served a log without its WAL");
    s_accept_loss (at_broker->data_dir);
    cr_assert_eq (bu_broker_restart (at_broker, AT_START_MS), 0);
    int64_t kept = au_head (at_broker->api, 5000);
    cr_assert_geq (kept, 0);
    cr_assert_lt (kept, 200, "nothing was lost: the test proves nothing");
    cr_assert_eq (au_publish (at_broker->api, "l.%zu", 5, 300, WAIT_MS), 0);
    //  The 200 seen before, then the new events kept + 1 .. kept + 300
    size_t expected = 200 + 300;
    cr_assert_eq (au_wait_count (at_recorder, expected, WAIT_MS), expected);
    usleep (300000);
    cr_assert_eq (at_recorder->count, expected);
    for (size_t index = 0; index < 200; index++)
        cr_assert_eq (at_recorder->seqs [index], index + 1);
    for (size_t index = 200; index < expected; index++)
        cr_assert_eq (at_recorder->seqs [index], (uint64_t) kept + index - 199,
                      "event %zu has seq %" PRIu64, index, at_recorder->seqs [index]);
    cr_assert_eq (s_errors, 1);
    cr_assert_eq (s_code, HERALD_ERR_DATA_LOST);
    char want [160];
    snprintf (want, sizeof want, "broker lost events after seq %" PRId64 " (lineage 1): "
              "rewinding subscription s from 200 to %" PRId64, kept, kept);
    cr_assert (strstr (s_message, want), "%s", s_message);
    herald_sub_status_t status;
    herald_agent_sub_status (at_agent, "s", &status);
    cr_assert_eq (status.data_lost, 1);
    cr_assert_eq (status.lineage, 1);
    fprintf (stderr, "lost: kept %" PRId64 " of 200; %s\n", kept, s_message);
}
