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

#include "agentutil.h"
#include "testutil.h"

#define WAIT_MS     10000
#define LOG_MAX     64

typedef struct {
    zsock_t *router;
    zsock_t *pub;
    char api [64];
    char fanout [64];
    msgpack_sbuffer envelopes [LOG_MAX + 1];    //  by seq
    uint8_t ids [LOG_MAX + 1][16];
    uint64_t head;
    size_t replays;                             //  REPLAY requests answered
    bool refuse;                                //  answer REPLAY with ERROR bad_request
} s_fake_t;

static s_fake_t s_fake;
static atomic_int s_errors;
static int s_error_code;
static char s_error_message [256];

static void
s_on_error (const char *subscription, int code, const char *message, void *arg)
{
    (void) subscription;
    (void) arg;
    s_error_code = code;
    snprintf (s_error_message, sizeof s_error_message, "%s", message);
    s_errors++;
}
static char *s_state;
static herald_agent_t *s_agent;
static au_recorder_t *s_recorder;

static void
s_setup (void)
{
    zsys_handler_set (NULL);
    memset (&s_fake, 0, sizeof s_fake);
    s_fake.router = zsock_new (ZMQ_ROUTER);
    s_fake.pub = zsock_new (ZMQ_PUB);
    cr_assert (s_fake.router && s_fake.pub);
    int api = zsock_bind (s_fake.router, "tcp://127.0.0.1:*");
    int fanout = zsock_bind (s_fake.pub, "tcp://127.0.0.1:*");
    cr_assert (api > 0 && fanout > 0);
    snprintf (s_fake.api, sizeof s_fake.api, "tcp://127.0.0.1:%d", api);
    snprintf (s_fake.fanout, sizeof s_fake.fanout, "tcp://127.0.0.1:%d", fanout);
    for (size_t index = 0; index <= LOG_MAX; index++)
        msgpack_sbuffer_init (&s_fake.envelopes [index]);
    s_state = tu_tmpdir_new ("agent-gaps");
    s_recorder = au_recorder_new ();
    herald_agent_options_t options;
    herald_agent_options_init (&options);
    options.api = s_fake.api;
    options.fanout = s_fake.fanout;
    options.state_dir = s_state;
    options.on_error = s_on_error;
    s_errors = 0;
    s_agent = herald_agent_new ("gaps", &options);
    cr_assert_not_null (s_agent, "%s", herald_agent_last_error ());
}

static void
s_teardown (void)
{
    herald_agent_destroy (&s_agent);
    au_recorder_destroy (&s_recorder);
    tu_tmpdir_destroy (&s_state);
    for (size_t index = 0; index <= LOG_MAX; index++)
        msgpack_sbuffer_destroy (&s_fake.envelopes [index]);
    zsock_destroy (&s_fake.router);
    zsock_destroy (&s_fake.pub);
}

TestSuite (herald_agent_gaps, .init = s_setup, .fini = s_teardown, .timeout = 60);

//  Append an event on topic to the fake log; same_as (a seq, or 0) reuses
//  that event's id.
static void
s_append (const char *topic, uint64_t same_as)
{
    uint64_t seq = ++s_fake.head;
    cr_assert_leq (seq, LOG_MAX);
    herald_event_t event = tu_event (topic, "d");
    if (same_as)
        memcpy (event.id, s_fake.ids [same_as], 16);
    memcpy (s_fake.ids [seq], event.id, 16);
    event.seq = seq;
    event.ver = seq;                //  one topic per test: ver follows seq
    event.ts = seq * 1000;
    cr_assert_eq (herald_event_encode (&event, &s_fake.envelopes [seq]), 0);
}

//  Send event seq, or a heartbeat with the head, on the fake fanout.
static void
s_fanout (uint64_t seq)
{
    const char *topic = "g.1";
    zmq_send (zsock_resolve (s_fake.pub), topic, strlen (topic), ZMQ_SNDMORE);
    zmq_send (zsock_resolve (s_fake.pub), s_fake.envelopes [seq].data,
              s_fake.envelopes [seq].size, 0);
}

static void
s_heartbeat (void)
{
    herald_msg_t beat;
    memset (&beat, 0, sizeof beat);
    beat.type = HERALD_MSG_HEARTBEAT;
    beat.heartbeat.head = s_fake.head;
    beat.heartbeat.ts = 1;
    beat.heartbeat.node = (herald_str_t) { "fake", 4 };
    beat.heartbeat.epoch = 1;
    msgpack_sbuffer body;
    msgpack_sbuffer_init (&body);
    cr_assert_eq (herald_msg_encode (&beat, &body), 0);
    zmq_send (zsock_resolve (s_fake.pub), "$hb", 3, ZMQ_SNDMORE);
    zmq_send (zsock_resolve (s_fake.pub), body.data, body.size, 0);
    msgpack_sbuffer_destroy (&body);
}

//  Answer what the agent asks on api for up to ms: REPLAY from the log
//  (the agent's requests have no prefixes in these tests), CANCEL ignored.
static void
s_serve (int ms)
{
    uint64_t deadline = tu_mono_ns () + (uint64_t) ms * 1000000ULL;
    while (tu_mono_ns () < deadline) {
        zmsg_t *msg = bu_recv (s_fake.router, 5);
        if (!msg)
            continue;
        zframe_t *identity = zmsg_pop (msg);
        zframe_t *command = zmsg_pop (msg);
        zframe_t *body = zmsg_pop (msg);
        if (command && body && zframe_streq (command, "REPLAY")) {
            herald_msg_t request;
            herald_error_t err;
            msgpack_zone zone;
            msgpack_zone_init (&zone, 1024);
            cr_assert_eq (herald_msg_decode (&request, HERALD_MSG_REPLAY, zframe_data (body),
                          zframe_size (body), NULL, &zone, &err), HERALD_OK);
            s_fake.replays++;
            uint64_t from = request.replay.from;
            uint64_t rid = request.rid;
            msgpack_zone_destroy (&zone);
            //  EVENTS {rid} envelope..., then END {rid, last, head, reason}
            herald_msg_t reply;
            memset (&reply, 0, sizeof reply);
            reply.has_rid = true;
            reply.rid = rid;
            msgpack_sbuffer out;
            msgpack_sbuffer_init (&out);
            void *router = zsock_resolve (s_fake.router);
            if (s_fake.refuse) {
                reply.type = HERALD_MSG_ERROR;
                reply.error.code = HERALD_ERR_BAD_REQUEST;
                reply.error.message = (herald_str_t) { "prefixes: refused by the test", 29 };
                herald_msg_encode (&reply, &out);
                zmq_send (router, zframe_data (identity), zframe_size (identity), ZMQ_SNDMORE);
                zmq_send (router, "ERROR", 5, ZMQ_SNDMORE);
                zmq_send (router, out.data, out.size, 0);
                msgpack_sbuffer_destroy (&out);
                zframe_destroy (&identity);
                zframe_destroy (&command);
                zframe_destroy (&body);
                zmsg_destroy (&msg);
                continue;
            }
            if (from <= s_fake.head) {
                reply.type = HERALD_MSG_EVENTS;
                herald_msg_encode (&reply, &out);
                zmq_send (router, zframe_data (identity), zframe_size (identity), ZMQ_SNDMORE);
                zmq_send (router, "EVENTS", 6, ZMQ_SNDMORE);
                zmq_send (router, out.data, out.size, ZMQ_SNDMORE);
                for (uint64_t seq = from; seq <= s_fake.head; seq++)
                    zmq_send (router, s_fake.envelopes [seq].data, s_fake.envelopes [seq].size,
                              seq < s_fake.head? ZMQ_SNDMORE: 0);
            }
            out.size = 0;
            reply.type = HERALD_MSG_END;
            reply.end.last = s_fake.head >= from? s_fake.head: from - 1;
            reply.end.head = s_fake.head;
            reply.end.reason = (herald_str_t) { "done", 4 };
            herald_msg_encode (&reply, &out);
            zmq_send (router, zframe_data (identity), zframe_size (identity), ZMQ_SNDMORE);
            zmq_send (router, "END", 3, ZMQ_SNDMORE);
            zmq_send (router, out.data, out.size, 0);
            msgpack_sbuffer_destroy (&out);
        }
        zframe_destroy (&identity);
        zframe_destroy (&command);
        zframe_destroy (&body);
        zmsg_destroy (&msg);
    }
}

//  Subscribe from the beginning and serve until the subscription is
//  live (heartbeats tell it where the live stream stands).
static void
s_go_live (void)
{
    cr_assert_eq (herald_agent_subscribe (s_agent, "g", NULL,
                  (herald_start_t) { HERALD_START_BEGINNING, 0 }, au_record, s_recorder),
                  HERALD_OK);
    herald_sub_status_t status;
    uint64_t deadline = tu_mono_ns () + WAIT_MS * 1000000ULL;
    do {
        s_heartbeat ();
        s_serve (20);
        herald_agent_sub_status (s_agent, "g", &status);
    } while (status.state != HERALD_SUB_LIVE && tu_mono_ns () < deadline);
    cr_assert_eq (status.state, HERALD_SUB_LIVE);
}

//  Serve until the recorder holds count events; then check them.
static void
s_expect (size_t count)
{
    uint64_t deadline = tu_mono_ns () + WAIT_MS * 1000000ULL;
    while (s_recorder->count < count && tu_mono_ns () < deadline)
        s_serve (10);
    s_serve (100);                  //  anything more would show now
    cr_assert_eq (s_recorder->count, count, "%zu delivered, expected %zu", s_recorder->count,
                  count);
    for (size_t index = 0; index < count; index++)
        cr_assert_eq (s_recorder->seqs [index], index + 1, "event %zu has seq %" PRIu64, index,
                      s_recorder->seqs [index]);
}

Test (herald_agent_gaps, a_jump_in_live_seq_is_repaired_by_replay)
{
    s_go_live ();
    size_t replays = s_fake.replays;
    for (int index = 0; index < 5; index++)
        s_append ("g.1", 0);
    s_fanout (1);
    s_fanout (2);
    s_fanout (4);                   //  3 is lost
    s_fanout (5);
    s_expect (5);
    cr_assert_gt (s_fake.replays, replays, "no repair replay");
    herald_agent_stats_t stats;
    herald_agent_stats (s_agent, &stats);
    cr_assert_eq (stats.gaps_repaired, 1);
}

Test (herald_agent_gaps, a_heartbeat_ahead_of_the_last_seq_seen_is_repaired)
{
    s_go_live ();
    for (int index = 0; index < 5; index++)
        s_append ("g.1", 0);
    s_fanout (1);
    s_fanout (2);
    s_fanout (3);                   //  4 and 5 are lost: only the heartbeat tells
    s_heartbeat ();
    s_expect (5);
    herald_agent_stats_t stats;
    herald_agent_stats (s_agent, &stats);
    cr_assert_eq (stats.gaps_repaired, 1);
}

Test (herald_agent_gaps, an_id_seen_before_at_a_new_seq_is_dropped_as_a_duplicate)
{
    s_go_live ();
    s_append ("g.1", 0);
    s_append ("g.1", 0);
    s_append ("g.1", 1);            //  seq 3 repeats the id of seq 1
    s_append ("g.1", 0);
    for (uint64_t seq = 1; seq <= 4; seq++)
        s_fanout (seq);
    uint64_t deadline = tu_mono_ns () + WAIT_MS * 1000000ULL;
    while (s_recorder->count < 3 && tu_mono_ns () < deadline)
        s_serve (10);
    s_serve (100);
    cr_assert_eq (s_recorder->count, 3);
    cr_assert_eq (s_recorder->seqs [2], 4);
    herald_sub_status_t status;
    herald_agent_sub_status (s_agent, "g", &status);
    cr_assert_eq (status.duplicates, 1);
    cr_assert_eq (status.delivered_seq, 4);
}

Test (herald_agent_gaps, live_events_already_passed_by_a_replay_are_not_passed_again)
{
    s_go_live ();
    for (int index = 0; index < 4; index++)
        s_append ("g.1", 0);
    s_fanout (1);
    s_fanout (3);                   //  2 lost: a repair replays 2..4
    s_expect (4);
    s_fanout (2);                   //  late and repeated messages change nothing
    s_fanout (4);
    s_append ("g.1", 0);
    s_fanout (5);
    s_expect (5);
}

Test (herald_agent_gaps, a_refused_replay_fails_the_subscription_and_calls_on_error)
{
    s_fake.refuse = true;
    cr_assert_eq (herald_agent_subscribe (s_agent, "g", NULL,
                  (herald_start_t) { HERALD_START_BEGINNING, 0 }, au_record, s_recorder),
                  HERALD_OK);
    herald_sub_status_t status;
    uint64_t deadline = tu_mono_ns () + WAIT_MS * 1000000ULL;
    do {
        s_serve (20);
        herald_agent_sub_status (s_agent, "g", &status);
    } while ((status.state != HERALD_SUB_FAILED || s_errors == 0) && tu_mono_ns () < deadline);
    cr_assert_eq (status.state, HERALD_SUB_FAILED);
    cr_assert_eq (status.error, HERALD_ERR_BAD_REQUEST);
    cr_assert (strstr (status.message, "refused by the test"), "%s", status.message);
    cr_assert_eq (s_errors, 1);
    cr_assert_eq (s_error_code, HERALD_ERR_BAD_REQUEST);
    cr_assert (strstr (s_error_message, "replay refused"), "%s", s_error_message);
}
