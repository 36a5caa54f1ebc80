/*  =========================================================================
    test_herald_agent_trim - the agent on a real heraldd whose log was trimmed

    A subscription whose catch-up needs trimmed events (a new one from the
    beginning, or one whose checkpoint a trim passed while its service was
    stopped) must stop with HERALD_ERR_TRIMMED — on_error and its status
    naming the first seq still there and what to do — and deliver nothing
    out of order or skipped; subscribing from that first seq then delivers
    the rest, in order, and goes live.  A trim of another prefix does not
    concern a subscription.  herald_agent_replay and herald_agent_read of a
    trimmed range return HERALD_ERR_TRIMMED with first in the last error.
    Trims are sent as TRIM {unarchived: true} on a raw DEALER (the archive's
    proof is herald trim's, tested in test_herald_trim.sh).
    =========================================================================
*/

#include <criterion/criterion.h>
#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "agenttest.h"
#include "testutil.h"
#include "trimclient.h"

#define WAIT_MS     20000

static atomic_int s_errors;
static atomic_int s_code;
static char s_message [4608];         //  HERALD_ERROR_MESSAGE_MAX
static pthread_mutex_t s_lock = PTHREAD_MUTEX_INITIALIZER;

static void
s_on_error (const char *subscription, int code, const char *message, void *arg)
{
    (void) subscription, (void) arg;
    pthread_mutex_lock (&s_lock);
    snprintf (s_message, sizeof s_message, "%s", message);
    pthread_mutex_unlock (&s_lock);
    s_code = code;
    s_errors++;
}

static void
s_setup (void)
{
    at_setup ("agent-trim", "agent-trim-state");
    s_errors = 0;
    s_code = 0;
    s_message [0] = 0;
}

TestSuite (herald_agent_trim, .init = s_setup, .fini = at_teardown, .timeout = 120);

static uint64_t
s_trim (const char *prefix, uint64_t until)
{
    return tc_trim (at_broker->api, prefix, until, WAIT_MS);
}

static void
s_new_agent (const char *name, bool with_state)
{
    herald_agent_options_t options;
    au_options (&options, at_broker, with_state? at_state: NULL);
    options.on_error = s_on_error;
    at_agent = herald_agent_new (name, &options);
    cr_assert_not_null (at_agent, "%s", herald_agent_last_error ());
}

//  Wait until name's status is FAILED (or timeout); returns the status.
static herald_sub_status_t
s_wait_failed (const char *name)
{
    herald_sub_status_t status;
    memset (&status, 0, sizeof status);
    int64_t deadline = zclock_mono () + WAIT_MS;
    while (zclock_mono () < deadline) {
        cr_assert_eq (herald_agent_sub_status (at_agent, name, &status), HERALD_OK);
        if (status.state == HERALD_SUB_FAILED && s_errors > 0)
            break;
        usleep (10000);
    }
    return status;
}

static void
s_message_has (const char *want)
{
    pthread_mutex_lock (&s_lock);
    bool found = strstr (s_message, want) != NULL;
    pthread_mutex_unlock (&s_lock);
    cr_assert (found, "on_error's message lacks \"%s\": %s", want, s_message);
}

Test (herald_agent_trim, a_subscription_from_the_beginning_stops_then_goes_on_from_first)
{
    cr_assert_eq (au_publish (at_broker->api, "t.%zu", 3, 300, WAIT_MS), 0);
    cr_assert_eq (s_trim ("", 200), 201);
    s_new_agent ("trim-a", true);
    cr_assert_eq (herald_agent_subscribe (at_agent, "s", NULL,
                  (herald_start_t) { HERALD_START_BEGINNING, 0 }, au_record, at_recorder),
                  HERALD_OK);
    herald_sub_status_t status = s_wait_failed ("s");
    cr_assert_eq (status.state, HERALD_SUB_FAILED);
    cr_assert_eq (status.error, HERALD_ERR_TRIMMED);
    cr_assert (strstr (status.message, "first seq still there for its prefixes is 201"),
               "status: %s", status.message);
    cr_assert_eq (s_errors, 1);
    cr_assert_eq (s_code, HERALD_ERR_TRIMMED);
    s_message_has ("subscription s needs seq 1 on");
    s_message_has ("the first seq still there for its prefixes is 201");
    s_message_has ("Stopped, nothing skipped");
    s_message_has ("herald sub reset s --state-dir DIR --to-seq 201");
    s_message_has ("herald replay --archive DIR --from 1 --to 200");
    usleep (200000);
    cr_assert_eq (at_recorder->count, 0, "an event was delivered past the trim");
    cr_assert_eq (status.delivered_seq, 0);

    //  From the first seq still there: the rest, in order, then live
    cr_assert_eq (herald_agent_subscribe (at_agent, "s2", NULL,
                  (herald_start_t) { HERALD_START_SEQ, 201 }, au_record, at_recorder),
                  HERALD_OK);
    cr_assert_eq (au_wait_count (at_recorder, 100, WAIT_MS), 100);
    cr_assert_eq (au_publish (at_broker->api, "t.%zu", 3, 50, WAIT_MS), 0);
    cr_assert_eq (au_wait_count (at_recorder, 150, WAIT_MS), 150);
    usleep (200000);
    cr_assert_eq (at_recorder->count, 150);
    for (size_t index = 0; index < 150; index++)
        cr_assert_eq (at_recorder->seqs [index], 201 + index, "event %zu is seq %" PRIu64,
                      index, at_recorder->seqs [index]);
    cr_assert_eq (s_errors, 1, "s2 reported an error: %s", s_message);
}

Test (herald_agent_trim, a_checkpoint_passed_by_a_trim_while_stopped_stops_and_stays)
{
    cr_assert_eq (au_publish (at_broker->api, "t.%zu", 3, 100, WAIT_MS), 0);
    s_new_agent ("trim-b", true);
    cr_assert_eq (herald_agent_subscribe (at_agent, "s", NULL,
                  (herald_start_t) { HERALD_START_BEGINNING, 0 }, au_record, at_recorder),
                  HERALD_OK);
    cr_assert_eq (au_wait_count (at_recorder, 100, WAIT_MS), 100);
    herald_agent_destroy (&at_agent);
    //  While the service is stopped: more events, and a trim past its checkpoint
    cr_assert_eq (au_publish (at_broker->api, "t.%zu", 3, 200, WAIT_MS), 0);
    cr_assert_eq (s_trim ("", 250), 251);
    s_new_agent ("trim-b", true);
    cr_assert_eq (herald_agent_subscribe (at_agent, "s", NULL,
                  (herald_start_t) { HERALD_START_BEGINNING, 0 }, au_record, at_recorder),
                  HERALD_OK);
    herald_sub_status_t status = s_wait_failed ("s");
    cr_assert_eq (status.state, HERALD_SUB_FAILED);
    cr_assert_eq (status.error, HERALD_ERR_TRIMMED);
    s_message_has ("subscription s needs seq 101 on");
    s_message_has ("is 251");
    s_message_has ("herald replay --archive DIR --from 101 --to 250");
    usleep (200000);
    cr_assert_eq (at_recorder->count, 100, "events were delivered past the trim");
    cr_assert_eq (status.delivered_seq, 100, "the checkpoint moved: %" PRIu64,
                  status.delivered_seq);
}

Test (herald_agent_trim, a_trim_of_another_prefix_does_not_concern_a_subscription)
{
    cr_assert_eq (au_publish (at_broker->api, "a.%zu", 2, 100, WAIT_MS), 0);
    cr_assert_eq (au_publish (at_broker->api, "b.%zu", 2, 100, WAIT_MS), 0);
    cr_assert_eq (s_trim ("a.", 100), 101);
    s_new_agent ("trim-c", true);
    const char *b [] = { "b.", NULL };
    cr_assert_eq (herald_agent_subscribe (at_agent, "b", b,
                  (herald_start_t) { HERALD_START_BEGINNING, 0 }, au_record, at_recorder),
                  HERALD_OK);
    cr_assert_eq (au_wait_count (at_recorder, 100, WAIT_MS), 100);
    for (size_t index = 0; index < 100; index++)
        cr_assert_eq (at_recorder->seqs [index], 101 + index);
    const char *a [] = { "a.", NULL };
    au_recorder_t *other = au_recorder_new ();
    cr_assert_eq (herald_agent_subscribe (at_agent, "a", a,
                  (herald_start_t) { HERALD_START_BEGINNING, 0 }, au_record, other),
                  HERALD_OK);
    herald_sub_status_t status = s_wait_failed ("a");
    cr_assert_eq (status.error, HERALD_ERR_TRIMMED);
    s_message_has ("subscription a needs seq 1 on");
    s_message_has ("is 101");
    cr_assert_eq (other->count, 0);
    herald_agent_destroy (&at_agent);
    au_recorder_destroy (&other);
}

Test (herald_agent_trim, a_caller_kept_position_is_told_to_start_at_first)
{
    cr_assert_eq (au_publish (at_broker->api, "t.%zu", 3, 100, WAIT_MS), 0);
    cr_assert_eq (s_trim ("", 60), 61);
    s_new_agent ("trim-d", false);
    herald_subscribe_options_t options;
    herald_subscribe_options_init (&options);
    options.caller_position = true;
    options.start = (herald_start_t) { HERALD_START_SEQ, 10 };
    cr_assert_eq (herald_agent_subscribe_with (at_agent, "p", &options, au_record,
                  at_recorder), HERALD_OK, "%s", herald_agent_last_error ());
    herald_sub_status_t status = s_wait_failed ("p");
    cr_assert_eq (status.error, HERALD_ERR_TRIMMED);
    s_message_has ("subscribe again with start HERALD_START_SEQ 61");
    cr_assert_eq (at_recorder->count, 0);
    options.start = (herald_start_t) { HERALD_START_SEQ, 61 };
    cr_assert_eq (herald_agent_subscribe_with (at_agent, "p", &options, au_record,
                  at_recorder), HERALD_OK, "%s", herald_agent_last_error ());
    cr_assert_eq (au_wait_count (at_recorder, 40, WAIT_MS), 40);
    for (size_t index = 0; index < 40; index++)
        cr_assert_eq (at_recorder->seqs [index], 61 + index);
}

static int
s_count (const herald_delivery_t *event, void *arg)
{
    (void) event;
    (*(size_t *) arg)++;
    return HERALD_OK;
}

Test (herald_agent_trim, replay_and_read_of_a_trimmed_range_return_trimmed_with_first)
{
    cr_assert_eq (au_publish (at_broker->api, "t.%zu", 2, 100, WAIT_MS), 0);
    cr_assert_eq (s_trim ("", 40), 41);
    s_new_agent ("trim-e", false);
    size_t count = 0;
    herald_range_t range;
    herald_range_init (&range);
    range.from = 1;
    uint64_t last = 0;
    cr_assert_eq (herald_agent_replay (at_agent, &range, s_count, &count, WAIT_MS, &last),
                  HERALD_ERR_TRIMMED);
    cr_assert_eq (count, 0);
    cr_assert (strstr (herald_agent_last_error (), "(first 41: "), "%s",
               herald_agent_last_error ());
    range.from = 41;
    cr_assert_eq (herald_agent_replay (at_agent, &range, s_count, &count, WAIT_MS, &last),
                  HERALD_OK, "%s", herald_agent_last_error ());
    cr_assert_eq (count, 60);
    //  t.0 holds the odd seqs: vers 1..20 were trimmed (seqs 1..39)
    count = 0;
    cr_assert_eq (herald_agent_read (at_agent, "t.0", 1, 0, s_count, &count, WAIT_MS),
                  HERALD_ERR_TRIMMED);
    cr_assert_eq (count, 0);
    cr_assert (strstr (herald_agent_last_error (), "(first 21: "), "%s",
               herald_agent_last_error ());
    cr_assert_eq (herald_agent_read (at_agent, "t.0", 21, 0, s_count, &count, WAIT_MS),
                  HERALD_OK, "%s", herald_agent_last_error ());
    cr_assert_eq (count, 30);
}
