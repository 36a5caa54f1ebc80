/*  =========================================================================
    test_herald_agent_reuse - an id reused for another event, through the
    agent (issue 11)

    When the broker's ACK flags an event `reused` (its id is stored with
    another topic or data), the event was not stored, and sending it again
    cannot change that.  The agent returns HERALD_ERR_ID_REUSED with the
    seq the id is stored at, from herald_agent_publish and in the async
    completion, and takes it out of the outbox (final, like a conflict).
    A true retry (same topic and data) stays a plain duplicate: HERALD_OK,
    dup.
    =========================================================================
*/

#include <criterion/criterion.h>
#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agenttest.h"
#include "testutil.h"

#define WAIT_MS         20000

static void
s_setup (void)
{
    at_setup ("agent-reuse", "agent-reuse");
}

TestSuite (herald_agent_reuse, .init = s_setup, .fini = at_teardown, .timeout = 90);

static herald_agent_t *
s_new_agent (void)
{
    herald_agent_options_t options;
    au_options (&options, at_broker, at_state);
    herald_agent_t *agent = herald_agent_new ("test", &options);
    cr_assert_not_null (agent, "herald_agent_new: %s", herald_agent_last_error ());
    return agent;
}

//  The number of events in the log.
static size_t
s_stored (void)
{
    au_recorder_t *all = au_recorder_new ();
    herald_range_t range = { 0 };
    cr_assert_eq (herald_agent_replay (at_agent, &range, au_record, all, 0, NULL), HERALD_OK,
                  "%s", herald_agent_last_error ());
    size_t count = all->count;
    au_recorder_destroy (&all);
    return count;
}

Test (herald_agent_reuse, sync_publish_of_a_stored_id_with_other_data_is_id_reused)
{
    at_agent = s_new_agent ();
    herald_publish_result_t result;
    herald_outgoing_t first = { .topic = "orders.1", .data = "{\"qty\":1}", .data_len = 9 };
    cr_assert_eq (herald_agent_publish (at_agent, &first, &result, 0), HERALD_OK, "%s",
                  herald_agent_last_error ());
    uint8_t id [16];
    memcpy (id, result.id, 16);
    uint64_t seq = result.seq;
    herald_agent_publish (at_agent, &(herald_outgoing_t) { .topic = "orders.1", .data = "x",
                                                         .data_len = 1 }, NULL, 0);

    herald_outgoing_t other = { .topic = "orders.1", .data = "{\"qty\":2}", .data_len = 9,
                                .id = id };
    cr_assert_eq (herald_agent_publish (at_agent, &other, &result, 0), HERALD_ERR_ID_REUSED,
                  "%s", herald_agent_last_error ());
    cr_assert_eq (result.err, HERALD_ERR_ID_REUSED);
    cr_assert_eq (result.seq, seq, "the seq the id is stored at");
    cr_assert (result.dup);
    cr_assert_eq (memcmp (result.id, id, 16), 0);
    cr_assert (strstr (result.message, "not stored"), "message: %s", result.message);
    cr_assert (strstr (herald_agent_last_error (), "not stored"), "last error: %s",
               herald_agent_last_error ());
    herald_agent_stats_t stats;
    herald_agent_stats (at_agent, &stats);
    cr_assert_eq (stats.outbox_depth, 0, "a reused id is final: out of the outbox");
    cr_assert_eq (stats.publish_errors, 1);
    cr_assert_eq (stats.published, 2);
    cr_assert_eq (s_stored (), 2);

    //  A true retry of the first event stays a plain duplicate
    herald_outgoing_t retry = first;
    retry.id = id;
    cr_assert_eq (herald_agent_publish (at_agent, &retry, &result, 0), HERALD_OK, "%s",
                  herald_agent_last_error ());
    cr_assert (result.dup);
    cr_assert_eq (result.seq, seq);
}

typedef struct {
    atomic_size_t done;
    herald_publish_result_t results [8];
} s_completions_t;

static s_completions_t s_completions;

static void
s_on_done (const herald_publish_result_t *result, void *arg)
{
    size_t index = (size_t) (uintptr_t) arg;
    if (index < 8)
        s_completions.results [index] = *result;
    atomic_fetch_add (&s_completions.done, 1);
}

Test (herald_agent_reuse, async_completion_of_a_reused_id_is_id_reused_and_only_for_it)
{
    memset (&s_completions, 0, sizeof s_completions);
    at_agent = s_new_agent ();
    herald_publish_result_t result;
    herald_outgoing_t stored = { .topic = "t", .data = "stored", .data_len = 6 };
    cr_assert_eq (herald_agent_publish (at_agent, &stored, &result, 0), HERALD_OK);
    uint8_t id [16];
    memcpy (id, result.id, 16);

    //  new, reuse, retry, new: likely one batch, each answered on its own
    herald_outgoing_t events [4] = {
        { .topic = "t", .data = "a", .data_len = 1 },
        { .topic = "t", .data = "not stored", .data_len = 10, .id = id },
        { .topic = "t", .data = "stored", .data_len = 6, .id = id },
        { .topic = "t", .data = "b", .data_len = 1 },
    };
    for (size_t index = 0; index < 4; index++)
        cr_assert_eq (herald_agent_publish_async (at_agent, &events [index], s_on_done,
                                                  (void *) (uintptr_t) index, NULL), HERALD_OK);
    cr_assert_eq (herald_agent_flush (at_agent, WAIT_MS), HERALD_OK);
    uint64_t deadline = tu_mono_ns () + WAIT_MS * 1000000ULL;
    while (atomic_load (&s_completions.done) < 4 && tu_mono_ns () < deadline)
        usleep (2000);
    cr_assert_eq (atomic_load (&s_completions.done), 4);
    const herald_publish_result_t *results = s_completions.results;
    cr_assert_eq (results [0].err, HERALD_OK);
    cr_assert_eq (results [1].err, HERALD_ERR_ID_REUSED, "err %d", results [1].err);
    cr_assert_eq (results [1].seq, 1);
    cr_assert (strstr (results [1].message, "not stored"), "%s", results [1].message);
    cr_assert_eq (results [2].err, HERALD_OK, "a true retry is not an error");
    cr_assert (results [2].dup);
    cr_assert_eq (results [3].err, HERALD_OK);
    cr_assert_eq (s_stored (), 3);
}
