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

#include <signal.h>
#include <sys/stat.h>

#include "fakebroker.h"
#include "brokerutil.h"
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

//  ---------------------------------------------------------------------
//  The agent on a real heraldd, through a scoped key (CURVE, an ACL)

#define REAL_WAIT_MS    30000

static char *r_dir;
static char *r_state;
static bu_broker_t *r_broker;
static herald_agent_t *r_agent;
static au_recorder_t *r_recorder;
static zsock_t *r_alice;                //  the publisher: a CURVE DEALER, read-all
static char r_server [41], r_alice_key [41], r_carol_key [41], r_erin_key [41];
static int r_scope_port;
static uint64_t r_rid = 1;

static char *
r_file (const char *name)
{
    static char paths [4][512];
    static int next;
    char *path = paths [next++ % 4];
    snprintf (path, 512, "%s/%s", r_dir, name);
    return path;
}

static void
r_keygen (const char *name, char *z85)
{
    zcert_t *cert = zcert_new ();
    cr_assert_not_null (cert);
    char path [512];
    snprintf (path, sizeof path, "%s/%s.key", r_dir, name);
    cr_assert_eq (zcert_save (cert, path), 0);
    snprintf (z85, 41, "%s", zcert_public_txt (cert));
    zcert_destroy (&cert);
}

//  The ACL: alice reads and publishes all; carol (and erin, when with_erin)
//  read through scope view-g (g.).  Written by rename; a running broker
//  is told at once (SIGHUP).
static void
r_acl (bool with_erin)
{
    char text [2048], erin [128] = "";
    if (with_erin)
        snprintf (erin, sizeof erin, "\n[user erin]\nkey = %s\nscope = view-g\n", r_erin_key);
    snprintf (text, sizeof text,
              "[scope view-g]\nread = g.\nfanout = tcp://127.0.0.1:%d\n\n"
              "[user alice]\nkey = %s\nread = *\npublish = *\nadmin = status\n\n"
              "[user carol]\nkey = %s\nscope = view-g\n%s", r_scope_port, r_alice_key,
              r_carol_key, erin);
    cr_assert_eq (tu_write_file (r_file ("acl.new"), text, strlen (text)), 0);
    cr_assert_eq (chmod (r_file ("acl.new"), 0600), 0);
    cr_assert_eq (rename (r_file ("acl.new"), r_file ("acl")), 0);
    if (r_broker && r_broker->pid)
        kill (r_broker->pid, SIGHUP);
}

//  alice's DEALER answered a STATUS: the broker is up.
static bool
r_answers (int timeout_ms)
{
    int64_t deadline = zclock_mono () + timeout_ms;
    while (zclock_mono () < deadline) {
        bu_reply_t reply = { 0 };
        bool answered = bu_status (r_alice, r_rid++, &reply, 300) == 0;
        bu_reply_fini (&reply);
        if (answered)
            return true;
    }
    return false;
}

static void
r_start (void)
{
    cr_assert_eq (bu_broker_respawn (r_broker), 0);
    if (!r_alice) {
        zcert_t *cert = zcert_load (r_file ("alice.key_secret"));
        cr_assert_not_null (cert);
        r_alice = zsock_new (ZMQ_DEALER);
        cr_assert_not_null (r_alice);
        zsock_set_linger (r_alice, 0);
        zcert_apply (cert, r_alice);
        zsock_set_curve_serverkey (r_alice, r_server);
        zcert_destroy (&cert);
        cr_assert_eq (zsock_connect (r_alice, "%s", r_broker->api), 0);
    }
    char log [4096] = "";
    if (!r_answers (REAL_WAIT_MS))
        bu_broker_log_tail (r_broker, log, sizeof log);
    cr_assert (!*log, "the secure heraldd did not answer:\n%s", log);
}

//  A secure broker with flags more (NULL-terminated, at most 6): alice
//  reads all and publishes all; carol reads through scope view-g (g.).
static void
r_setup_with (const char *const *more)
{
    zsys_handler_set (NULL);
    r_dir = tu_tmpdir_new ("agent-scope-real");
    r_state = tu_tmpdir_new ("agent-scope-state");
    r_recorder = au_recorder_new ();
    cr_assert (r_dir && r_state && r_recorder);
    r_keygen ("broker", r_server);
    r_keygen ("alice", r_alice_key);
    r_keygen ("carol", r_carol_key);
    r_keygen ("erin", r_erin_key);
    int port = r_scope_port = bu_free_port ();
    cr_assert_gt (port, 0);
    r_acl (true);
    const char *extra [16] = { "--curve-secret", r_file ("broker.key_secret"),
                               "--acl", r_file ("acl"), "--audit-log", "-",
                               "--heartbeat-ms", "200" };
    size_t count = 8;
    for (size_t index = 0; more && more [index] && count < 15; index++)
        extra [count++] = more [index];
    extra [count] = NULL;
    r_broker = bu_broker_new ("agent-scope-broker", extra);
    cr_assert_not_null (r_broker);
    //  bu_broker_respawn uses the endpoints in r_broker: choose them here
    snprintf (r_broker->api, sizeof r_broker->api, "tcp://127.0.0.1:%d", bu_free_port ());
    int fanout = bu_free_port ();
    for (int tries = 0; tries < 10 && fanout == port; tries++)
        fanout = bu_free_port ();
    snprintf (r_broker->fanout, sizeof r_broker->fanout, "tcp://127.0.0.1:%d", fanout);
    r_start ();
}

static void
r_setup (void)
{
    r_setup_with (NULL);
}

static void
r_setup_drops (void)
{
    const char *more [] = { "--fanout-hwm", "5", "--durability", "async", NULL };
    r_setup_with (more);
}

static void
r_teardown (void)
{
    herald_agent_destroy (&r_agent);
    zsock_destroy (&r_alice);
    au_recorder_destroy (&r_recorder);
    bu_broker_destroy (&r_broker);
    tu_tmpdir_destroy (&r_state);
    tu_tmpdir_destroy (&r_dir);
}

//  carol's agent (scope view-g; its fanout from WELCOME), subscribed to
//  everything it may read.
static void
r_carol (int sub_rcvhwm)
{
    herald_agent_options_t options;
    herald_agent_options_init (&options);
    options.api = r_broker->api;
    options.state_dir = r_state;
    options.timeout_ms = 5000;
    options.key_file = r_file ("carol.key_secret");
    options.server_key = r_server;
    if (sub_rcvhwm)
        options.sub_rcvhwm = sub_rcvhwm;
    r_agent = herald_agent_new ("scope-test", &options);
    cr_assert_not_null (r_agent, "herald_agent_new: %s", herald_agent_last_error ());
    cr_assert_eq (herald_agent_subscribe (r_agent, "mine", NULL,
                  (herald_start_t) { HERALD_START_BEGINNING, 0 }, au_record, r_recorder),
                  HERALD_OK, "subscribe: %s", herald_agent_last_error ());
}

static void
r_wait_live (void)
{
    herald_sub_status_t status = { 0 };
    int64_t deadline = zclock_mono () + REAL_WAIT_MS;
    while (zclock_mono () < deadline) {
        cr_assert_eq (herald_agent_sub_status (r_agent, "mine", &status), HERALD_OK);
        if (status.state == HERALD_SUB_LIVE)
            return;
        zclock_sleep (5);
    }
    cr_assert_fail ("the subscription is not live (state %d)", status.state);
}

//  count events, topics alternating g.N and x.N (x. first when odd), in
//  PUBLISH batches of up to 100, each ACKed; the seqs of the g. ones are
//  appended to seqs (*n of them).
static void
r_publish (size_t count, uint64_t *seqs, size_t *n)
{
    static char topics [100][16];
    for (size_t done = 0; done < count; ) {
        size_t batch = count - done < 100? count - done: 100;
        bu_event_t events [100];
        for (size_t index = 0; index < batch; index++) {
            snprintf (topics [index], sizeof topics [0], "%s.%zu",
                      (done + index) % 2? "x": "g", (done + index) % 7);
            bu_event_init (&events [index], topics [index], "scoped");
        }
        msgpack_sbuffer sbuf;
        msgpack_sbuffer_init (&sbuf);
        uint64_t rid = r_rid++;
        bu_pack_publish (&sbuf, rid, events, batch);
        bu_send_sbuf (r_alice, "PUBLISH", &sbuf);
        msgpack_sbuffer_destroy (&sbuf);
        bu_reply_t reply = { 0 };
        cr_assert_eq (bu_recv_reply (r_alice, &reply, REAL_WAIT_MS), 0, "no ACK");
        cr_assert_eq (reply.type, HERALD_MSG_ACK, "PUBLISH answered %s", reply.command);
        cr_assert_eq (reply.body.ack.count, batch);
        for (size_t index = 0; index < batch; index++)
            if (topics [index][0] == 'g')
                seqs [(*n)++] = reply.body.ack.seq [index];
        bu_reply_fini (&reply);
        done += batch;
    }
}

//  Every g. event, once, in order, and nothing else; the checkpoint
//  reaches the head (nothing of the scope is still on its way).
static void
r_expect (const uint64_t *seqs, size_t n)
{
    size_t got = au_wait_count (r_recorder, n, REAL_WAIT_MS);
    cr_assert_geq (got, n, "%zu events delivered, expected %zu", got, n);
    zclock_sleep (200);                 //  anything more would show now
    cr_assert_eq (r_recorder->count, n, "%zu events delivered, expected %zu",
                  r_recorder->count, n);
    for (size_t index = 0; index < n; index++)
        cr_assert_eq (r_recorder->seqs [index], seqs [index], "event %zu: seq %" PRIu64
                      ", expected %" PRIu64, index, r_recorder->seqs [index], seqs [index]);
    char message [256];
    cr_assert_eq (au_check_once_in_order (r_recorder, message, sizeof message), 0, "%s",
                  message);
}

static herald_agent_stats_t
r_stats (void)
{
    herald_agent_stats_t stats;
    herald_agent_stats (r_agent, &stats);
    return stats;
}

Test (herald_agent_scope_broker, nothing_dropped_means_no_replay, .init = r_setup,
      .fini = r_teardown)
{
    r_carol (0);
    r_wait_live ();
    //  The live position is known once an event came in live (waited for,
    //  not assumed after a few heartbeats' time)
    static uint64_t seqs [4000];
    size_t n = 0;
    r_publish (2, seqs, &n);
    r_expect (seqs, n);
    herald_agent_stats_t before = r_stats ();
    for (int round = 0; round < 10; round++)
        r_publish (40, seqs, &n);
    r_expect (seqs, n);
    zclock_sleep (600);                 //  heartbeats confirm the tail
    herald_agent_stats_t after = r_stats ();
    cr_assert_eq (after.gaps_repaired, before.gaps_repaired, "a gap with nothing lost");
    cr_assert_eq (after.replays, before.replays, "%" PRIu64 " replays with nothing lost",
                  after.replays - before.replays);
}

Test (herald_agent_scope_broker, fanout_drops_on_a_scope_socket_are_repaired,
      .init = r_setup_drops, .fini = r_teardown)
{
    r_carol (5);
    r_wait_live ();
    r_recorder->sleep_us = 2;
    static uint64_t seqs [10000];
    size_t n = 0;
    r_publish (20000, seqs, &n);
    r_expect (seqs, n);
    cr_assert_gt (r_stats ().gaps_repaired, 0, "no loss was seen: the test did not make the "
                  "broker drop anything");
}

Test (herald_agent_scope_broker, a_broker_restart_loses_and_repeats_nothing, .init = r_setup,
      .fini = r_teardown)
{
    r_carol (0);
    r_wait_live ();
    static uint64_t seqs [4000];
    size_t n = 0;
    r_publish (300, seqs, &n);
    r_expect (seqs, n);
    cr_assert_eq (bu_broker_stop (r_broker, 10000), 0);
    //  Published while it was down: nothing; after: a new epoch, prev and
    //  last from 0 again, the SUB reconnected ($hello)
    r_start ();
    r_publish (300, seqs, &n);
    r_expect (seqs, n);
    r_publish (1, seqs, &n);            //  and the live stream flows again
    r_publish (1, seqs, &n);
    r_expect (seqs, n);
}

//  Another user of the scope is removed: the scope's socket is re-bound
//  under carol's live subscription (she reconnects, gets $hello, repairs
//  what the reconnection lost): every g. event once, in order.
Test (herald_agent_scope_broker, a_rebind_of_the_scope_socket_loses_and_repeats_nothing,
      .init = r_setup, .fini = r_teardown)
{
    r_carol (0);
    r_wait_live ();
    static uint64_t seqs [4000];
    size_t n = 0;
    r_publish (200, seqs, &n);
    r_expect (seqs, n);
    r_acl (false);                      //  erin goes: view-g is re-bound
    for (int round = 0; round < 20; round++) {
        r_publish (40, seqs, &n);
        zclock_sleep (20);
    }
    r_expect (seqs, n);
    char log [16384];
    bu_broker_log (r_broker, log, sizeof log);
    cr_assert (strstr (log, "closing scope view-g"), "view-g was not re-bound:\n%s", log);
    r_publish (2, seqs, &n);
    r_expect (seqs, n);
}
