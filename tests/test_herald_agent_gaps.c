/*  =========================================================================
    test_herald_agent_gaps - loss on the live stream, against a scripted broker

    A real heraldd cannot be made to drop a chosen message, so these tests
    play the broker themselves: a ROUTER and a PUB on free ports that speak
    HWP/1 (envelopes made with herald_event_encode, replies with
    herald_msg_encode) and answer REPLAY from a log held in memory.  The
    fanout then skips exactly the events a test chooses, and the agent must
    notice (a jump in seq, a heartbeat head above what it saw) and repair
    by replay: every event once, in seq order.
    =========================================================================
*/

#include <criterion/criterion.h>
#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fakebroker.h"
#include "testutil.h"

#define WAIT_MS     FB_WAIT_MS

static void
s_setup (void)
{
    fb_setup ("agent-gaps", "gaps");
}

TestSuite (herald_agent_gaps, .init = s_setup, .fini = fb_teardown, .timeout = 60);

//  Serve until the recorder holds count events; then check them.
static void
s_expect (size_t count)
{
    uint64_t deadline = tu_mono_ns () + WAIT_MS * 1000000ULL;
    while (fb_recorder->count < count && tu_mono_ns () < deadline)
        fb_serve (10);
    fb_serve (100);                  //  anything more would show now
    cr_assert_eq (fb_recorder->count, count, "%zu delivered, expected %zu", fb_recorder->count,
                  count);
    for (size_t index = 0; index < count; index++)
        cr_assert_eq (fb_recorder->seqs [index], index + 1, "event %zu has seq %" PRIu64, index,
                      fb_recorder->seqs [index]);
}

Test (herald_agent_gaps, a_jump_in_live_seq_is_repaired_by_replay)
{
    fb_go_live ();
    size_t replays = fb_fake.replays;
    for (int index = 0; index < 5; index++)
        fb_append ("g.1", 0);
    fb_fanout (1);
    fb_fanout (2);
    fb_fanout (4);                   //  3 is lost
    fb_fanout (5);
    s_expect (5);
    cr_assert_gt (fb_fake.replays, replays, "no repair replay");
    herald_agent_stats_t stats;
    herald_agent_stats (fb_agent, &stats);
    cr_assert_eq (stats.gaps_repaired, 1);
}

Test (herald_agent_gaps, a_heartbeat_ahead_of_the_last_seq_seen_is_repaired)
{
    fb_go_live ();
    for (int index = 0; index < 5; index++)
        fb_append ("g.1", 0);
    fb_fanout (1);
    fb_fanout (2);
    fb_fanout (3);                   //  4 and 5 are lost: only the heartbeat tells
    fb_heartbeat ();
    s_expect (5);
    herald_agent_stats_t stats;
    herald_agent_stats (fb_agent, &stats);
    cr_assert_eq (stats.gaps_repaired, 1);
}

Test (herald_agent_gaps, an_id_seen_before_at_a_new_seq_is_dropped_as_a_duplicate)
{
    fb_go_live ();
    fb_append ("g.1", 0);
    fb_append ("g.1", 0);
    fb_append ("g.1", 1);            //  seq 3 repeats the id of seq 1
    fb_append ("g.1", 0);
    for (uint64_t seq = 1; seq <= 4; seq++)
        fb_fanout (seq);
    uint64_t deadline = tu_mono_ns () + WAIT_MS * 1000000ULL;
    while (fb_recorder->count < 3 && tu_mono_ns () < deadline)
        fb_serve (10);
    fb_serve (100);
    cr_assert_eq (fb_recorder->count, 3);
    cr_assert_eq (fb_recorder->seqs [2], 4);
    herald_sub_status_t status;
    herald_agent_sub_status (fb_agent, "g", &status);
    cr_assert_eq (status.duplicates, 1);
    cr_assert_eq (status.delivered_seq, 4);
}

Test (herald_agent_gaps, live_events_already_passed_by_a_replay_are_not_passed_again)
{
    fb_go_live ();
    for (int index = 0; index < 4; index++)
        fb_append ("g.1", 0);
    fb_fanout (1);
    fb_fanout (3);                   //  2 lost: a repair replays 2..4
    s_expect (4);
    fb_fanout (2);                   //  late and repeated messages change nothing
    fb_fanout (4);
    fb_append ("g.1", 0);
    fb_fanout (5);
    s_expect (5);
}

Test (herald_agent_gaps, a_refused_replay_fails_the_subscription_and_calls_on_error)
{
    fb_fake.refuse = true;
    cr_assert_eq (herald_agent_subscribe (fb_agent, "g", NULL,
                  (herald_start_t) { HERALD_START_BEGINNING, 0 }, au_record, fb_recorder),
                  HERALD_OK);
    herald_sub_status_t status;
    uint64_t deadline = tu_mono_ns () + WAIT_MS * 1000000ULL;
    do {
        fb_serve (20);
        herald_agent_sub_status (fb_agent, "g", &status);
    } while ((status.state != HERALD_SUB_FAILED || fb_errors == 0) && tu_mono_ns () < deadline);
    cr_assert_eq (status.state, HERALD_SUB_FAILED);
    cr_assert_eq (status.error, HERALD_ERR_BAD_REQUEST);
    cr_assert (strstr (status.message, "refused by the test"), "%s", status.message);
    cr_assert_eq (fb_errors, 1);
    cr_assert_eq (fb_error_code, HERALD_ERR_BAD_REQUEST);
    cr_assert (strstr (fb_error_message, "replay refused"), "%s", fb_error_message);
}
