/*  =========================================================================
    test_herald_agent_scope - exact gap detection on a scoped fanout

    A key that reads one ACL scope subscribes to its scope's own fanout,
    where seqs are not contiguous: frame 0 is `topic NUL prev` and `$hb`
    carries `last` (docs/security.md, "Read ACLs on the fanout").  The
    agent must repair every loss and replay nothing when nothing was lost.

    Two levels:
    - the rule itself (herald_live_scope.h) against random drop patterns:
      it never misses a loss and never reports one that did not happen,
      once the position is known;
    - the agent's io layer, in-process, against the scripted broker of
      test_herald_agent_gaps (fakebroker, WELCOME with a `scope`): this
      test plays the broker's scope socket and drops exactly what it
      chooses.  Every scope event reaches the handler once, in order.
    The real broker's scoped fanout: test_heraldd_fanout_scope.c.
    =========================================================================
*/

#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fakebroker.h"
#include "testutil.h"
#include "../agents/herald_live_scope.h"

#define WAIT_MS     FB_WAIT_MS

//  ---------------------------------------------------------------------
//  The rule alone

static uint64_t
s_rand (uint64_t *state)
{
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    return *state;
}

//  A broker sends a scope's events (a random subset of 1..n) and
//  heartbeats; the link drops each message with a random probability.
//  After every message received, the rule must ask for a repair exactly
//  when some scope event since the last one received or confirmed was
//  dropped (or the position was unknown).
Test (herald_agent_scope, the_prev_rule_detects_exactly_the_losses_of_random_drop_patterns)
{
    uint64_t state = 0x9e3779b97f4a7c15ULL;
    size_t repairs = 0, quiet = 0;
    for (int trial = 0; trial < 20000; trial++) {
        herald_live_scope_t rule = { 0 };
        uint64_t prev = 0;                  //  the broker's
        bool lost = true;                   //  the receiver's truth: unknown at first
        unsigned drop_pct = (unsigned) (s_rand (&state) % 4) * 20;  //  0, 20, 40, 60
        unsigned scope_pct = 10 + (unsigned) (s_rand (&state) % 90);
        uint64_t n = 1 + s_rand (&state) % 200;
        for (uint64_t seq = 1; seq <= n; seq++) {
            bool in_scope = s_rand (&state) % 100 < scope_pct;
            if (in_scope) {
                bool dropped = s_rand (&state) % 100 < drop_pct;
                if (dropped)
                    lost = true;
                else {
                    uint64_t from = herald_live_scope_event (&rule, seq, prev);
                    cr_assert_eq (from != 0, lost, "trial %d seq %" PRIu64 ": repair %d, "
                                  "lost %d", trial, seq, from != 0, lost);
                    if (from)
                        cr_assert_eq (from, seq);
                    lost = false;
                    repairs += from != 0;
                    quiet += from == 0;
                }
                prev = seq;
            }
            if (s_rand (&state) % 8 == 0) {     //  a heartbeat with head = seq
                if (s_rand (&state) % 100 < drop_pct)
                    continue;
                uint64_t from = herald_live_scope_beat (&rule, seq, prev);
                cr_assert_eq (from != 0, lost, "trial %d beat at %" PRIu64, trial, seq);
                if (from)
                    cr_assert_eq (from, seq + 1);
                lost = false;
            }
            if (s_rand (&state) % 500 == 0) {   //  a reconnect: position unknown
                herald_live_scope_reset (&rule);
                lost = true;
            }
        }
    }
    cr_assert_gt (repairs, 0);
    cr_assert_gt (quiet, repairs);
}

Test (herald_agent_scope, frame_0_is_parsed_only_in_its_exact_form)
{
    uint8_t frame [32];
    memcpy (frame, "a.b", 3);
    frame [3] = 0;
    for (int byte = 0; byte < 8; byte++)
        frame [4 + byte] = (uint8_t) (0x0102030405060708ULL >> (56 - 8 * byte));
    uint64_t prev = 0;
    cr_assert (herald_live_scope_prev (frame, 12, 3, &prev));
    cr_assert_eq (prev, 0x0102030405060708ULL);
    cr_assert_not (herald_live_scope_prev (frame, 3, 3, &prev));    //  a plain topic
    cr_assert_not (herald_live_scope_prev (frame, 11, 3, &prev));   //  short
    cr_assert_not (herald_live_scope_prev (frame, 13, 3, &prev));   //  long
    frame [3] = 'x';
    cr_assert_not (herald_live_scope_prev (frame, 12, 3, &prev));   //  no NUL
}

//  ---------------------------------------------------------------------
//  The agent, in-process, on a scripted scope socket

static char s_topics [LOG_MAX + 1][16];
static uint64_t s_prev;                 //  the scope's last seq sent (the broker's)

static void
s_setup (void)
{
    fb_setup ("agent-scope", "scope");
    fb_fake.scope = "gs";
    s_prev = 0;
}

TestSuite (herald_agent_scope, .timeout = 120);

static bool
s_in_scope (uint64_t seq)
{
    return strncmp (s_topics [seq], "g.", 2) == 0;
}

static void
s_append (const char *topic)
{
    fb_append (topic, 0);
    snprintf (s_topics [fb_fake.head], sizeof s_topics [0], "%s", topic);
}

//  The scope socket sends event seq (when in the scope), unless dropped;
//  prev moves on either way.
static void
s_send (uint64_t seq, bool dropped)
{
    if (!s_in_scope (seq))
        return;
    if (!dropped) {
        uint8_t frame0 [32];
        size_t len = strlen (s_topics [seq]);
        memcpy (frame0, s_topics [seq], len);
        frame0 [len] = 0;
        for (int byte = 0; byte < 8; byte++)
            frame0 [len + 1 + byte] = (uint8_t) (s_prev >> (56 - 8 * byte));
        zmq_send (zsock_resolve (fb_fake.pub), frame0, len + 9, ZMQ_SNDMORE);
        zmq_send (zsock_resolve (fb_fake.pub), fb_fake.envelopes [seq].data,
                  fb_fake.envelopes [seq].size, 0);
    }
    s_prev = seq;
}

//  `$hb` of the scope socket: head, and last = the scope's last seq sent.
static void
s_beat (uint64_t head)
{
    msgpack_sbuffer raw, body;
    msgpack_sbuffer_init (&raw);
    msgpack_sbuffer_init (&body);
    msgpack_packer pk;
    msgpack_packer_init (&pk, &raw, msgpack_sbuffer_write);
    msgpack_pack_str (&pk, 5);
    msgpack_pack_str_body (&pk, "scope", 5);
    msgpack_pack_str (&pk, 2);
    msgpack_pack_str_body (&pk, "gs", 2);
    msgpack_pack_str (&pk, 4);
    msgpack_pack_str_body (&pk, "last", 4);
    msgpack_pack_uint64 (&pk, s_prev);
    herald_msg_t beat;
    memset (&beat, 0, sizeof beat);
    beat.type = HERALD_MSG_HEARTBEAT;
    beat.heartbeat.head = head;
    beat.heartbeat.ts = 1;
    beat.heartbeat.node = (herald_str_t) { "fake", 4 };
    beat.heartbeat.epoch = 1;
    beat.heartbeat.lineage = fb_fake.lineage;
    beat.heartbeat.raw = (herald_msg_raw_t) { raw.data, raw.size, 2 };
    cr_assert_eq (herald_msg_encode (&beat, &body), 0);
    zmq_send (zsock_resolve (fb_fake.pub), "$hb", 3, ZMQ_SNDMORE);
    zmq_send (zsock_resolve (fb_fake.pub), body.data, body.size, 0);
    msgpack_sbuffer_destroy (&raw);
    msgpack_sbuffer_destroy (&body);
}

//  Live on "g" (the fake's heartbeats say head 0: nothing stored yet), then
//  one scoped heartbeat so that the position is known.
static void
s_go_live (void)
{
    const char *prefixes [] = { "g.", NULL };
    cr_assert_eq (herald_agent_subscribe (fb_agent, "g", prefixes,
                  (herald_start_t) { HERALD_START_BEGINNING, 0 }, au_record, fb_recorder),
                  HERALD_OK);
    //  Live, and a heartbeat came through: the SUB is connected and
    //  subscribed, so the PUB drops nothing from here on but what we drop
    herald_sub_status_t status;
    herald_agent_stats_t stats;
    uint64_t deadline = tu_mono_ns () + WAIT_MS * 1000000ULL;
    do {
        s_beat (fb_fake.head);
        fb_serve (20);
        herald_agent_sub_status (fb_agent, "g", &status);
        herald_agent_stats (fb_agent, &stats);
    } while ((status.state != HERALD_SUB_LIVE || !stats.broker_reachable)
         &&  tu_mono_ns () < deadline);
    cr_assert_eq (status.state, HERALD_SUB_LIVE);
    cr_assert (stats.broker_reachable);
}

//  Serve until the recorder holds every scope event up to the log's head;
//  check they came once each, in order.
static void
s_expect_scope (void)
{
    size_t count = 0;
    uint64_t expected [LOG_MAX];
    for (uint64_t seq = 1; seq <= fb_fake.head; seq++)
        if (s_in_scope (seq))
            expected [count++] = seq;
    uint64_t deadline = tu_mono_ns () + WAIT_MS * 1000000ULL;
    while (fb_recorder->count < count && tu_mono_ns () < deadline)
        fb_serve (10);
    fb_serve (100);                     //  anything more would show now
    cr_assert_eq (fb_recorder->count, count, "%zu delivered, expected %zu",
                  fb_recorder->count, count);
    for (size_t index = 0; index < count; index++)
        cr_assert_eq (fb_recorder->seqs [index], expected [index], "event %zu: seq %" PRIu64
                      ", expected %" PRIu64, index, fb_recorder->seqs [index], expected [index]);
}

static uint64_t
s_gaps (void)
{
    herald_agent_stats_t stats;
    herald_agent_stats (fb_agent, &stats);
    return stats.gaps_repaired;
}

Test (herald_agent_scope, seqs_skipped_by_the_scope_are_no_gap, .init = s_setup,
      .fini = fb_teardown)
{
    s_go_live ();
    size_t replays = fb_fake.replays;
    uint64_t gaps = s_gaps ();
    const char *topics [] = { "g.1", "x.1", "x.2", "g.2", "x.3", "g.3", "g.4", "x.4" };
    for (size_t index = 0; index < 8; index++)
        s_append (topics [index]);
    for (uint64_t seq = 1; seq <= fb_fake.head; seq++)
        s_send (seq, false);
    s_beat (fb_fake.head);
    s_expect_scope ();
    cr_assert_eq (fb_fake.replays, replays, "a replay with nothing lost");
    cr_assert_eq (s_gaps (), gaps);
}

Test (herald_agent_scope, a_lost_scope_event_is_seen_at_the_next_one_and_repaired,
      .init = s_setup, .fini = fb_teardown)
{
    s_go_live ();
    const char *topics [] = { "g.1", "x.1", "g.2", "x.2", "g.3" };
    for (size_t index = 0; index < 5; index++)
        s_append (topics [index]);
    s_send (1, false);
    s_send (2, false);
    s_send (3, true);                   //  g.2 lost: g.3 names it as its prev
    s_send (4, false);
    s_send (5, false);
    s_expect_scope ();
    cr_assert_eq (s_gaps (), 1);
}

Test (herald_agent_scope, a_lost_tail_is_seen_at_the_heartbeat, .init = s_setup,
      .fini = fb_teardown)
{
    s_go_live ();
    const char *topics [] = { "g.1", "g.2", "x.1", "g.3" };
    for (size_t index = 0; index < 4; index++)
        s_append (topics [index]);
    s_send (1, false);
    s_send (2, true);
    s_send (3, false);
    s_send (4, true);                   //  only the heartbeat's last tells
    s_beat (fb_fake.head);
    s_expect_scope ();
    cr_assert_eq (s_gaps (), 1);
}

Test (herald_agent_scope, hello_makes_the_position_unknown, .init = s_setup,
      .fini = fb_teardown)
{
    s_go_live ();
    s_append ("g.1");
    s_send (1, false);
    s_expect_scope ();
    s_append ("g.2");
    //  A reconnect the monitor did not report yet: the welcome message comes
    //  first on the new connection, then an event whose prev is one we have
    //  (as far as prev goes, nothing was lost, but the agent cannot know
    //  what the connection dropped before it)
    zmq_send (zsock_resolve (fb_fake.pub), "$hello", 6, 0);
    s_send (2, false);
    s_expect_scope ();
    s_append ("g.3");
    s_send (3, false);
    s_expect_scope ();
}

//  The io layer against random drop patterns: every scope event once, in
//  order, whatever was dropped; no replay when nothing was.
ParameterizedTestParameters (herald_agent_scope, random_drop_patterns_lose_and_repeat_nothing)
{
    static int rounds [] = { 0, 1, 2, 3, 4, 5, 6, 7 };
    return cr_make_param_array (int, rounds, sizeof rounds / sizeof rounds [0]);
}

ParameterizedTest (int *round, herald_agent_scope, random_drop_patterns_lose_and_repeat_nothing,
                   .init = s_setup, .fini = fb_teardown)
{
    uint64_t state = 0x2545f4914f6cdd1dULL + (uint64_t) *round * 7919;
    s_go_live ();
    size_t replays = fb_fake.replays;
    unsigned drop_pct = *round < 2? 0: (unsigned) (10 + s_rand (&state) % 50);
    bool dropped_any = false;
    for (int index = 0; index < 40; index++)
        s_append (s_rand (&state) % 2? "g.r": "x.r");
    for (uint64_t seq = 1; seq <= fb_fake.head; seq++) {
        bool drop = s_in_scope (seq) && s_rand (&state) % 100 < drop_pct;
        dropped_any |= drop;
        s_send (seq, drop);
        if (s_rand (&state) % 6 == 0 && s_rand (&state) % 100 >= drop_pct)
            s_beat (seq);
        if (s_rand (&state) % 4 == 0)
            fb_serve (5);               //  the agent repairs while events flow
    }
    s_beat (fb_fake.head);              //  the tail, confirmed
    s_expect_scope ();
    if (!dropped_any) {
        cr_assert_eq (fb_fake.replays, replays, "round %d: a replay with nothing lost "
                      "(%zu, gaps %" PRIu64 ")", *round, fb_fake.replays - replays, s_gaps ());
        cr_assert_eq (s_gaps (), 0);
    }
    else
        cr_assert_gt (s_gaps (), 0, "round %d: losses went unrepaired?", *round);
}
