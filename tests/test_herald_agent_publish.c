/*  =========================================================================
    test_herald_agent_publish - publishing through the agent and its outbox

    Sync and async publishing against the real heraldd, conflicts, local
    refusals, and the outbox: publishing while the broker is down, a
    publishing process killed with its outbox not sent, an agent destroyed
    without flushing.  "Stored exactly once" is checked by replaying the
    whole log: as many events as published, every id once.
    =========================================================================
*/

#include <criterion/criterion.h>
#include <inttypes.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "agenttest.h"
#include "testutil.h"

#define WAIT_MS         20000

static void
s_setup (void)
{
    at_setup ("agent-pub", "agent-pub");
}

TestSuite (herald_agent_publish, .init = s_setup, .fini = at_teardown, .timeout = 90);

static herald_agent_t *
s_new_agent (int timeout_ms, size_t outbox_max)
{
    herald_agent_options_t options;
    au_options (&options, at_broker, at_state);
    if (timeout_ms)
        options.timeout_ms = timeout_ms;
    options.outbox_max_events = outbox_max;
    herald_agent_t *agent = herald_agent_new ("test", &options);
    cr_assert_not_null (agent, "herald_agent_new: %s", herald_agent_last_error ());
    return agent;
}

//  Replay the whole log: exactly count events, each id once.
static void
s_expect_stored_once (size_t count)
{
    au_recorder_t *all = au_recorder_new ();
    herald_range_t range = { 0 };
    cr_assert_eq (herald_agent_replay (at_agent, &range, au_record, all, 0, NULL), HERALD_OK,
                  "%s", herald_agent_last_error ());
    cr_assert_eq (all->count, count, "%zu events stored, expected %zu", all->count, count);
    char message [256];
    cr_assert_eq (au_check_once_in_order (all, message, sizeof message), 0, "%s", message);
    au_recorder_destroy (&all);
}

Test (herald_agent_publish, sync_publish_returns_seq_and_ver_and_a_retry_is_a_dup)
{
    at_agent = s_new_agent (0, 0);
    herald_publish_result_t result;
    for (uint64_t index = 1; index <= 3; index++) {
        herald_outgoing_t event = { .topic = "orders.1", .data = "{}", .data_len = 2,
                                    .type = "OrderPlaced" };
        cr_assert_eq (herald_agent_publish (at_agent, &event, &result, 0), HERALD_OK, "%s",
                      herald_agent_last_error ());
        cr_assert_eq (result.seq, index);
        cr_assert_eq (result.ver, index);
        cr_assert (!result.dup);
    }
    uint8_t id [16];
    memcpy (id, result.id, 16);
    //  A retry is the same event again: same topic and data (other data
    //  under this id would be HERALD_ERR_ID_REUSED: test_herald_agent_reuse.c)
    herald_outgoing_t again = { .topic = "orders.1", .data = "{}", .data_len = 2, .id = id };
    cr_assert_eq (herald_agent_publish (at_agent, &again, &result, 0), HERALD_OK);
    cr_assert (result.dup);
    cr_assert_eq (result.seq, 3);
    cr_assert_eq (memcmp (result.id, id, 16), 0);
}

Test (herald_agent_publish, a_conflict_comes_back_with_the_actual_version)
{
    at_agent = s_new_agent (0, 0);
    herald_publish_result_t result;
    herald_outgoing_t first = { .topic = "acct.7", .has_expect = true, .expect = 0 };
    cr_assert_eq (herald_agent_publish (at_agent, &first, &result, 0), HERALD_OK);
    herald_outgoing_t second = { .topic = "acct.7", .has_expect = true, .expect = 1 };
    cr_assert_eq (herald_agent_publish (at_agent, &second, &result, 0), HERALD_OK);
    herald_outgoing_t stale = { .topic = "acct.7", .has_expect = true, .expect = 1 };
    cr_assert_eq (herald_agent_publish (at_agent, &stale, &result, 0), HERALD_ERR_CONFLICT);
    cr_assert_eq (result.err, HERALD_ERR_CONFLICT);
    cr_assert_eq (result.expected, 1);
    cr_assert_eq (result.actual, 2);
    herald_agent_stats_t stats;
    herald_agent_stats (at_agent, &stats);
    cr_assert_eq (stats.outbox_depth, 0, "a refused event must leave the outbox");
    cr_assert_eq (stats.publish_errors, 1);
}

Test (herald_agent_publish, invalid_events_are_refused_locally)
{
    at_agent = s_new_agent (0, 0);
    herald_outgoing_t bad_topic = { .topic = "$hb" };
    cr_assert_eq (herald_agent_publish (at_agent, &bad_topic, NULL, 0), HERALD_ERR_INVALID);
    herald_meta_t meta = { "k", 1, "\xff", 1 };
    herald_outgoing_t bad_meta = { .topic = "a", .meta = &meta, .meta_count = 1 };
    cr_assert_eq (herald_agent_publish_async (at_agent, &bad_meta, NULL, NULL, NULL),
                  HERALD_ERR_INVALID);
    static char big [1100000];
    herald_outgoing_t too_big = { .topic = "a", .data = big, .data_len = sizeof big };
    cr_assert_eq (herald_agent_publish (at_agent, &too_big, NULL, 0), HERALD_ERR_INVALID);
    herald_agent_stats_t stats;
    herald_agent_stats (at_agent, &stats);
    cr_assert_eq (stats.outbox_depth, 0);
}

typedef struct {
    atomic_size_t done;
    atomic_size_t failed;
    uint64_t *seqs;
} s_completions_t;

static s_completions_t s_completions;

static void
s_on_done (const herald_publish_result_t *result, void *arg)
{
    size_t index = (size_t) (uintptr_t) arg;
    if (result->err)
        atomic_fetch_add (&s_completions.failed, 1);
    s_completions.seqs [index] = result->seq;
    atomic_fetch_add (&s_completions.done, 1);
}

Test (herald_agent_publish, many_async_publishes_complete_in_call_order)
{
    enum { COUNT = 20000 };
    s_completions.seqs = calloc (COUNT, sizeof (uint64_t));
    atomic_store (&s_completions.done, 0);
    atomic_store (&s_completions.failed, 0);
    at_agent = s_new_agent (0, 0);
    for (size_t index = 0; index < COUNT; index++) {
        char topic [32];
        snprintf (topic, sizeof topic, "m.%zu", index % 100);
        herald_outgoing_t event = { .topic = topic, .data = "x", .data_len = 1 };
        cr_assert_eq (herald_agent_publish_async (at_agent, &event, s_on_done,
                                                  (void *) (uintptr_t) index, NULL), HERALD_OK);
    }
    cr_assert_eq (herald_agent_flush (at_agent, WAIT_MS), HERALD_OK);
    uint64_t deadline = tu_mono_ns () + WAIT_MS * 1000000ULL;
    while (atomic_load (&s_completions.done) < COUNT && tu_mono_ns () < deadline)
        usleep (2000);
    cr_assert_eq (atomic_load (&s_completions.done), COUNT);
    cr_assert_eq (atomic_load (&s_completions.failed), 0);
    for (size_t index = 0; index < COUNT; index++)
        cr_assert_eq (s_completions.seqs [index], index + 1, "event %zu has seq %" PRIu64,
                      index, s_completions.seqs [index]);
    herald_agent_stats_t stats;
    herald_agent_stats (at_agent, &stats);
    cr_assert_eq (stats.published, COUNT);
    cr_assert_eq (stats.outbox_depth, 0);
    herald_agent_destroy (&at_agent);
    free (s_completions.seqs);
    at_agent = s_new_agent (0, 0);
    s_expect_stored_once (COUNT);
}

Test (herald_agent_publish, with_the_broker_down_events_wait_in_the_outbox_and_are_stored_once)
{
    cr_assert_eq (bu_broker_stop (at_broker, 10000), 0);
    at_agent = s_new_agent (300, 0);
    herald_outgoing_t event = { .topic = "down.0", .data = "sync", .data_len = 4 };
    herald_publish_result_t result;
    cr_assert_eq (herald_agent_publish (at_agent, &event, &result, 0), HERALD_ERR_TIMEOUT);
    uint8_t zero [16] = { 0 };
    cr_assert_neq (memcmp (result.id, zero, 16), 0, "the queued event's id is given");
    for (int index = 0; index < 500; index++) {
        herald_outgoing_t more = { .topic = "down.1", .data = "async", .data_len = 5 };
        cr_assert_eq (herald_agent_publish_async (at_agent, &more, NULL, NULL, NULL), HERALD_OK);
    }
    herald_agent_stats_t stats;
    herald_agent_stats (at_agent, &stats);
    cr_assert_eq (stats.outbox_depth, 501);
    cr_assert_eq (herald_agent_flush (at_agent, 300), HERALD_ERR_TIMEOUT);
    cr_assert_eq (bu_broker_restart (at_broker, AT_START_MS), 0);
    cr_assert_eq (herald_agent_flush (at_agent, WAIT_MS), HERALD_OK, "%s",
                  herald_agent_last_error ());
    s_expect_stored_once (501);
}

Test (herald_agent_publish, a_killed_publisher_s_outbox_is_sent_by_the_next_agent)
{
    cr_assert_eq (bu_broker_stop (at_broker, 10000), 0);
    char *out = tu_path (at_state, "child.out");
    const char *args [] = { "publish", at_state, at_broker->api, at_broker->fanout, "300",
                            "crash", NULL };
    pid_t child = au_child_spawn (args, out);
    cr_assert_gt (child, 0);
    int status = 0;
    cr_assert_eq (au_child_wait (child, WAIT_MS, &status), 0, "the child did not die");
    cr_assert (WIFSIGNALED (status) && WTERMSIG (status) == SIGKILL, "status %d", status);
    free (out);
    cr_assert_eq (bu_broker_restart (at_broker, AT_START_MS), 0);
    at_agent = s_new_agent (0, 0);
    cr_assert_eq (herald_agent_flush (at_agent, WAIT_MS), HERALD_OK, "%s",
                  herald_agent_last_error ());
    s_expect_stored_once (300);
}

Test (herald_agent_publish, an_agent_destroyed_without_flush_leaves_nothing_unsent)
{
    at_agent = s_new_agent (0, 0);
    for (int index = 0; index < 3000; index++) {
        herald_outgoing_t event = { .topic = "nf.1", .data = "x", .data_len = 1 };
        cr_assert_eq (herald_agent_publish_async (at_agent, &event, NULL, NULL, NULL), HERALD_OK);
    }
    herald_agent_destroy (&at_agent);
    at_agent = s_new_agent (0, 0);
    cr_assert_eq (herald_agent_flush (at_agent, WAIT_MS), HERALD_OK);
    s_expect_stored_once (3000);
}

Test (herald_agent_publish, a_full_outbox_blocks_then_refuses_overloaded)
{
    cr_assert_eq (bu_broker_stop (at_broker, 10000), 0);
    at_agent = s_new_agent (200, 10);
    for (int index = 0; index < 10; index++) {
        herald_outgoing_t event = { .topic = "full", .data = "x", .data_len = 1 };
        cr_assert_eq (herald_agent_publish_async (at_agent, &event, NULL, NULL, NULL), HERALD_OK);
    }
    herald_outgoing_t event = { .topic = "full", .data = "x", .data_len = 1 };
    uint64_t start = tu_mono_ns ();
    cr_assert_eq (herald_agent_publish_async (at_agent, &event, NULL, NULL, NULL),
                  HERALD_ERR_OVERLOADED);
    cr_assert_geq (tu_mono_ns () - start, 150 * 1000000ULL, "it did not wait");
}

static int
s_forward (const herald_delivery_t *event, void *arg)
{
    (void) arg;
    char topic [64];
    snprintf (topic, sizeof topic, "out.%" PRIu64, event->seq);
    herald_outgoing_t out = { .topic = topic, .data = event->data, .data_len = event->data_len };
    return herald_agent_publish (at_agent, &out, NULL, 0);
}

Test (herald_agent_publish, publishing_from_a_handler_does_not_deadlock)
{
    at_agent = s_new_agent (0, 0);
    const char *prefixes [] = { "in.", NULL };
    cr_assert_eq (herald_agent_subscribe (at_agent, "fwd", prefixes,
                  (herald_start_t) { HERALD_START_BEGINNING, 0 }, s_forward, NULL), HERALD_OK);
    cr_assert_eq (au_publish (at_broker->api, "in.%zu", 5, 100, WAIT_MS), 0);
    uint64_t deadline = tu_mono_ns () + WAIT_MS * 1000000ULL;
    herald_sub_status_t status;
    do {
        herald_agent_sub_status (at_agent, "fwd", &status);
        usleep (5000);
    } while (status.delivered < 100 && tu_mono_ns () < deadline);
    cr_assert_eq (status.delivered, 100, "state %d: %s", status.state, status.message);
    cr_assert_eq (au_head (at_broker->api, 5000), 200);
}
