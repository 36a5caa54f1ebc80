/*  =========================================================================
    test_herald_agent_complete - every async publish gets one true completion

    herald_agent_publish_async's done callback is called exactly once per
    event, with the truth, before herald_agent_destroy returns: OK with
    seq/ver when the broker stored it (also when the ACK came just before
    destroy, issue 11 item 9), HERALD_ERR_TIMEOUT "queued in the outbox"
    when it was never acknowledged (and it is then in the outbox: the next
    agent on the directory sends it).  And herald_agent_flush returning OK
    means the completions of everything published before it have run
    (outside dispatch mode), or are queued for herald_agent_dispatch.
    =========================================================================
*/

#include <criterion/criterion.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agenttest.h"
#include "testutil.h"

#define WAIT_MS         20000
#define ROUNDS          40
#define PER_ROUND       50

static void
s_setup (void)
{
    at_setup ("agent-complete", "agent-complete");
}

TestSuite (herald_agent_complete, .init = s_setup, .fini = at_teardown, .timeout = 120);

//  What one event's completion said.
typedef struct {
    atomic_int calls;
    herald_err err;
    uint64_t seq;
    uint64_t ver;
    uint8_t id [16];                //  from the result
    uint8_t id_out [16];            //  from publish_async
    char message [192];
    pthread_t thread;
} s_slot_t;

static void
s_on_done (const herald_publish_result_t *result, void *arg)
{
    s_slot_t *slot = (s_slot_t *) arg;
    slot->err = result->err;
    slot->seq = result->seq;
    slot->ver = result->ver;
    memcpy (slot->id, result->id, 16);
    snprintf (slot->message, sizeof slot->message, "%s", result->message);
    slot->thread = pthread_self ();
    atomic_fetch_add (&slot->calls, 1);
}

static herald_agent_t *
s_new_agent (const char *api, const char *fanout, bool dispatch)
{
    herald_agent_options_t options;
    au_options (&options, at_broker, at_state);
    if (api) {
        options.api = api;
        options.fanout = fanout;
    }
    options.dispatch = dispatch;
    herald_agent_t *agent = herald_agent_new ("complete", &options);
    cr_assert_not_null (agent, "herald_agent_new: %s", herald_agent_last_error ());
    return agent;
}

static void
s_publish (herald_agent_t *agent, s_slot_t *slots, size_t count, const char *prefix)
{
    for (size_t index = 0; index < count; index++) {
        char topic [64];
        snprintf (topic, sizeof topic, "%s.%zu", prefix, index % 7);
        herald_outgoing_t event = { .topic = topic, .data = "x", .data_len = 1 };
        cr_assert_eq (herald_agent_publish_async (agent, &event, s_on_done, &slots [index],
                                                  slots [index].id_out), HERALD_OK,
                      "publish_async: %s", herald_agent_last_error ());
    }
}

//  Replay the whole log with the at_agent: the recorder of it (caller destroys).
static au_recorder_t *
s_stored (void)
{
    au_recorder_t *all = au_recorder_new ();
    herald_range_t range = { 0 };
    cr_assert_eq (herald_agent_replay (at_agent, &range, au_record, all, 0, NULL), HERALD_OK,
                  "%s", herald_agent_last_error ());
    char message [256];
    cr_assert_eq (au_check_once_in_order (all, message, sizeof message), 0, "%s", message);
    return all;
}

Test (herald_agent_complete, flush_then_destroy_calls_every_completion_once_with_its_ack)
{
    s_slot_t *slots = calloc (ROUNDS * PER_ROUND, sizeof *slots);
    cr_assert_not_null (slots);
    size_t silent_rounds = 0;
    for (size_t round = 0; round < ROUNDS; round++) {
        s_slot_t *mine = slots + round * PER_ROUND;
        //  at_agent, so that the teardown destroys it if an assertion fails
        herald_agent_t *agent = at_agent = s_new_agent (NULL, NULL, false);
        char prefix [32];
        snprintf (prefix, sizeof prefix, "r%zu", round);
        s_publish (agent, mine, PER_ROUND, prefix);
        cr_assert_eq (herald_agent_flush (agent, WAIT_MS), HERALD_OK, "round %zu: %s", round,
                      herald_agent_last_error ());
        //  flush OK: every completion has run already
        size_t ran = 0;
        for (size_t index = 0; index < PER_ROUND; index++)
            ran += atomic_load (&mine [index].calls) > 0;
        silent_rounds += ran == 0;
        cr_expect_eq (ran, PER_ROUND, "round %zu: flush returned OK with %zu of %d "
                      "completions run", round, ran, PER_ROUND);
        herald_agent_destroy (&at_agent);
        for (size_t index = 0; index < PER_ROUND; index++) {
            s_slot_t *slot = &mine [index];
            cr_assert_eq (atomic_load (&slot->calls), 1, "round %zu event %zu: %d completions "
                          "by the time destroy returned (%zu silent rounds so far)", round,
                          index, atomic_load (&slot->calls), silent_rounds);
            cr_assert_eq (slot->err, HERALD_OK, "round %zu event %zu: %s", round, index,
                          slot->message);
            cr_assert (slot->seq > 0 && slot->ver > 0);
            cr_assert (memcmp (slot->id, slot->id_out, 16) == 0, "the result's id is not the "
                       "one publish_async gave");
        }
    }
    //  Stored once each, and each completion named its own event's seq
    at_agent = s_new_agent (NULL, NULL, false);
    au_recorder_t *all = s_stored ();
    cr_assert_eq (all->count, ROUNDS * PER_ROUND, "%zu stored", all->count);
    for (size_t index = 0; index < ROUNDS * PER_ROUND; index++) {
        uint64_t seq = slots [index].seq;
        cr_assert (seq >= 1 && seq <= all->count && all->seqs [seq - 1] == seq);
        cr_assert (memcmp (all->ids [seq - 1], slots [index].id_out, 16) == 0,
                   "seq %" PRIu64 " holds another event than its completion said", seq);
    }
    au_recorder_destroy (&all);
    free (slots);
}

Test (herald_agent_complete, destroy_tells_unacknowledged_events_they_are_queued)
{
    enum { COUNT = 20 };
    s_slot_t slots [COUNT];
    memset (slots, 0, sizeof slots);
    //  Nothing listens on these: nothing can be acknowledged
    char api [64], fanout [64];
    snprintf (api, sizeof api, "tcp://127.0.0.1:%d", bu_free_port ());
    snprintf (fanout, sizeof fanout, "tcp://127.0.0.1:%d", bu_free_port ());
    herald_agent_t *agent = s_new_agent (api, fanout, false);
    s_publish (agent, slots, COUNT, "queued");
    cr_assert_eq (herald_agent_flush (agent, 100), HERALD_ERR_TIMEOUT);
    herald_agent_destroy (&agent);
    for (size_t index = 0; index < COUNT; index++) {
        cr_assert_eq (atomic_load (&slots [index].calls), 1, "event %zu: %d completions",
                      index, atomic_load (&slots [index].calls));
        cr_assert_eq (slots [index].err, HERALD_ERR_TIMEOUT);
        cr_assert (strstr (slots [index].message, "queued in the outbox"), "%s",
                   slots [index].message);
        cr_assert (memcmp (slots [index].id, slots [index].id_out, 16) == 0);
    }
    //  ... and true: the next agent on the directory sends them
    at_agent = s_new_agent (NULL, NULL, false);
    cr_assert_eq (herald_agent_flush (at_agent, WAIT_MS), HERALD_OK);
    au_recorder_t *all = s_stored ();
    cr_assert_eq (all->count, COUNT);
    for (size_t index = 0; index < COUNT; index++)
        cr_assert (memcmp (all->ids [index], slots [index].id_out, 16) == 0);
    au_recorder_destroy (&all);
}

Test (herald_agent_complete, dispatch_mode_completions_not_dispatched_run_in_destroy)
{
    s_slot_t slots [PER_ROUND];
    memset (slots, 0, sizeof slots);
    herald_agent_t *agent = s_new_agent (NULL, NULL, true);
    s_publish (agent, slots, PER_ROUND, "d");
    //  Acknowledged and queued for herald_agent_dispatch, which is not called
    cr_assert_eq (herald_agent_flush (agent, WAIT_MS), HERALD_OK, "%s",
                  herald_agent_last_error ());
    herald_agent_destroy (&agent);
    for (size_t index = 0; index < PER_ROUND; index++) {
        cr_assert_eq (atomic_load (&slots [index].calls), 1, "event %zu: %d completions",
                      index, atomic_load (&slots [index].calls));
        cr_assert_eq (slots [index].err, HERALD_OK, "%s", slots [index].message);
        cr_assert_eq (slots [index].seq, index + 1);
        cr_assert (pthread_equal (slots [index].thread, pthread_self ()),
                   "run on the thread that destroyed the agent");
    }
}

Test (herald_agent_complete, dispatch_mode_flush_returns_with_completions_queued)
{
    s_slot_t slots [PER_ROUND];
    memset (slots, 0, sizeof slots);
    at_agent = s_new_agent (NULL, NULL, true);
    s_publish (at_agent, slots, PER_ROUND, "q");
    cr_assert_eq (herald_agent_flush (at_agent, WAIT_MS), HERALD_OK, "%s",
                  herald_agent_last_error ());
    //  Every completion is waiting for this very call, none still on its way
    herald_agent_dispatch (at_agent, 1000);
    for (size_t index = 0; index < PER_ROUND; index++) {
        cr_assert_eq (atomic_load (&slots [index].calls), 1, "event %zu: %d completions "
                      "dispatched after flush", index, atomic_load (&slots [index].calls));
        cr_assert_eq (slots [index].err, HERALD_OK, "%s", slots [index].message);
    }
}

//  A completion that flushes waits for acknowledgements only: its own
//  agent's completions cannot run while it does.
static herald_agent_t *s_flusher;
static atomic_int s_flush_rc = -1;
static atomic_llong s_flush_ms = -1;

static void
s_flush_from_completion (const herald_publish_result_t *result, void *arg)
{
    (void) result;
    (void) arg;
    if (atomic_load (&s_flush_rc) != -1)
        return;
    uint64_t start = tu_mono_ns ();
    atomic_store (&s_flush_rc, herald_agent_flush (s_flusher, 5000));
    atomic_store (&s_flush_ms, (long long) ((tu_mono_ns () - start) / 1000000));
}

Test (herald_agent_complete, flush_from_a_completion_does_not_wait_for_itself)
{
    s_flusher = at_agent = s_new_agent (NULL, NULL, false);
    for (int index = 0; index < 100; index++) {
        herald_outgoing_t event = { .topic = "f.1", .data = "x", .data_len = 1 };
        cr_assert_eq (herald_agent_publish_async (at_agent, &event, s_flush_from_completion,
                                                  NULL, NULL), HERALD_OK);
    }
    cr_assert_eq (herald_agent_flush (at_agent, WAIT_MS), HERALD_OK, "%s",
                  herald_agent_last_error ());
    cr_assert_eq (atomic_load (&s_flush_rc), HERALD_OK);
    cr_assert (atomic_load (&s_flush_ms) < 4000, "flush from a completion took %lld ms",
               (long long) atomic_load (&s_flush_ms));
}
