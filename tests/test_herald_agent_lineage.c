/*  =========================================================================
    test_herald_agent_lineage - a broker that lost events it had stored

    When an operator accepts a loss (`herald repair --accept-loss`), the
    broker announces it: `lineage` (the count of accepted losses) in $hb,
    END, WELCOME and STATUS, and `losses` ({lineage, lost_after, ts}) in
    WELCOME and STATUS.  The seqs after lost_after were handed out again to
    new events.  A subscription whose checkpoint passed lost_after must not
    skip those new events: it is rewound to lost_after, and on_error hears
    HERALD_ERR_DATA_LOST (the events it had after lost_after are gone from
    the log).  A subscription not past it adopts the lineage silently.

    The broker is scripted here (a ROUTER and a PUB speaking HWP/1 from a
    log in memory, as in test_herald_agent_gaps.c), so that a loss can be
    made exactly: the log cut after seq N, new events with new ids at N+1...
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
#include "herald_checkpoint.h"
#include "herald_crc.h"
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
    uint64_t lineage;                           //  in $hb, WELCOME and END
    herald_loss_t losses [4];                   //  in WELCOME
    size_t loss_count;
    size_t hellos;                              //  HELLO requests answered
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
    s_state = tu_tmpdir_new ("agent-lineage");
    s_recorder = au_recorder_new ();
    herald_agent_options_t options;
    herald_agent_options_init (&options);
    options.api = s_fake.api;
    options.fanout = s_fake.fanout;
    options.state_dir = s_state;
    options.on_error = s_on_error;
    s_errors = 0;
    s_agent = herald_agent_new ("lineage", &options);
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

TestSuite (herald_agent_lineage, .init = s_setup, .fini = s_teardown, .timeout = 60);

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
    beat.heartbeat.lineage = s_fake.lineage;
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
            reply.end.lineage = s_fake.lineage;
            herald_msg_encode (&reply, &out);
            zmq_send (router, zframe_data (identity), zframe_size (identity), ZMQ_SNDMORE);
            zmq_send (router, "END", 3, ZMQ_SNDMORE);
            zmq_send (router, out.data, out.size, 0);
            msgpack_sbuffer_destroy (&out);
        }
        else
        if (command && body && zframe_streq (command, "HELLO")) {
            herald_msg_t request;
            herald_error_t err;
            msgpack_zone zone;
            msgpack_zone_init (&zone, 1024);
            cr_assert_eq (herald_msg_decode (&request, HERALD_MSG_HELLO, zframe_data (body),
                          zframe_size (body), NULL, &zone, &err), HERALD_OK);
            herald_msg_t reply;
            memset (&reply, 0, sizeof reply);
            reply.type = HERALD_MSG_WELCOME;
            reply.has_rid = true;
            reply.rid = request.rid;
            reply.welcome.proto = 1;
            reply.welcome.node = (herald_str_t) { "fake", 4 };
            reply.welcome.head = s_fake.head;
            reply.welcome.fanout = (herald_str_t) { s_fake.fanout, strlen (s_fake.fanout) };
            reply.welcome.lineage = s_fake.lineage;
            reply.welcome.losses = s_fake.losses;
            reply.welcome.loss_count = s_fake.loss_count;
            msgpack_sbuffer out;
            msgpack_sbuffer_init (&out);
            cr_assert_eq (herald_msg_encode (&reply, &out), 0);
            void *router = zsock_resolve (s_fake.router);
            zmq_send (router, zframe_data (identity), zframe_size (identity), ZMQ_SNDMORE);
            zmq_send (router, "WELCOME", 7, ZMQ_SNDMORE);
            zmq_send (router, out.data, out.size, 0);
            msgpack_sbuffer_destroy (&out);
            msgpack_zone_destroy (&zone);
            s_fake.hellos++;
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

//  Serve until the recorder holds count events.
static void
s_wait_count (size_t count)
{
    uint64_t deadline = tu_mono_ns () + WAIT_MS * 1000000ULL;
    while (s_recorder->count < count && tu_mono_ns () < deadline)
        s_serve (10);
    s_serve (100);                  //  anything more would show now
    cr_assert_eq (s_recorder->count, count, "%zu delivered, expected %zu", s_recorder->count,
                  count);
}

//  The broker loses the events after seq n and accepts it: the log is cut
//  to n, the lineage grows by one and the loss is listed.
static void
s_lose_after (uint64_t n)
{
    for (uint64_t seq = n + 1; seq <= s_fake.head; seq++)
        s_fake.envelopes [seq].size = 0;
    s_fake.head = n;
    s_fake.lineage++;
    s_fake.losses [s_fake.loss_count++] = (herald_loss_t) { s_fake.lineage, n, 12345 };
}

//  Heartbeats (which carry the lineage) until the subscription's status
//  shows lineage, serving what the agent asks meanwhile.
static herald_sub_status_t
s_beat_until_lineage (uint64_t lineage)
{
    herald_sub_status_t status;
    uint64_t deadline = tu_mono_ns () + WAIT_MS * 1000000ULL;
    do {
        s_heartbeat ();
        s_serve (20);
        herald_agent_sub_status (s_agent, "g", &status);
    } while (status.lineage != lineage && tu_mono_ns () < deadline);
    cr_assert_eq (status.lineage, lineage);
    return status;
}

Test (herald_agent_lineage, a_checkpoint_past_the_loss_is_rewound_and_reported)
{
    s_go_live ();
    for (int index = 0; index < 10; index++)
        s_append ("g.1", 0);
    for (uint64_t seq = 1; seq <= 10; seq++)
        s_fanout (seq);
    s_wait_count (10);
    //  The broker keeps 1..6; 7..9 are new events (new ids) at the same seqs
    s_lose_after (6);
    for (int index = 0; index < 3; index++)
        s_append ("g.1", 0);
    s_beat_until_lineage (1);
    s_wait_count (13);
    for (size_t index = 0; index < 10; index++)
        cr_assert_eq (s_recorder->seqs [index], index + 1);
    for (size_t index = 10; index < 13; index++) {
        cr_assert_eq (s_recorder->seqs [index], index - 3, "event %zu has seq %" PRIu64,
                      index, s_recorder->seqs [index]);
        cr_assert_eq (memcmp (s_recorder->ids [index], s_fake.ids [index - 3], 16), 0,
                      "seq %zu is not the new event", index - 3);
    }
    cr_assert_eq (s_errors, 1);
    cr_assert_eq (s_error_code, HERALD_ERR_DATA_LOST);
    cr_assert_str_eq (s_error_message, "broker lost events after seq 6 (lineage 1): rewinding "
                      "subscription g from 10 to 6; events after 6 published before the loss "
                      "are gone");
    herald_sub_status_t status;
    herald_agent_sub_status (s_agent, "g", &status);
    cr_assert_eq (status.state, HERALD_SUB_LIVE);
    cr_assert_eq (status.data_lost, 1);
    cr_assert_eq (status.delivered_seq, 9);
    herald_agent_stats_t stats;
    herald_agent_stats (s_agent, &stats);
    cr_assert_eq (stats.data_lost, 1);
    cr_assert_eq (stats.broker_lineage, 1);
}

Test (herald_agent_lineage, a_checkpoint_not_past_the_loss_adopts_the_lineage_silently)
{
    s_go_live ();
    for (int index = 0; index < 4; index++)
        s_append ("g.1", 0);
    for (uint64_t seq = 1; seq <= 4; seq++)
        s_fanout (seq);
    s_wait_count (4);
    s_append ("g.1", 0);            //  5 and 6 stored, not yet seen by the agent
    s_append ("g.1", 0);
    s_lose_after (5);               //  6 lost; a new 6 follows
    s_append ("g.1", 0);
    s_beat_until_lineage (1);
    s_wait_count (6);
    for (size_t index = 0; index < 6; index++)
        cr_assert_eq (s_recorder->seqs [index], index + 1);
    cr_assert_eq (memcmp (s_recorder->ids [5], s_fake.ids [6], 16), 0);
    cr_assert_eq (s_errors, 0, "%s", s_error_message);
    herald_sub_status_t status;
    herald_agent_sub_status (s_agent, "g", &status);
    cr_assert_eq (status.data_lost, 0);
}

Test (herald_agent_lineage, a_restarted_agent_checks_its_checkpoint_against_the_losses)
{
    s_go_live ();
    for (int index = 0; index < 8; index++)
        s_append ("g.1", 0);
    for (uint64_t seq = 1; seq <= 8; seq++)
        s_fanout (seq);
    s_wait_count (8);
    herald_agent_destroy (&s_agent);
    //  Two losses while the agent was away: after 5, then after 3
    s_lose_after (5);
    s_append ("g.1", 0);
    s_lose_after (3);
    s_append ("g.1", 0);
    s_append ("g.1", 0);
    herald_agent_options_t options;
    herald_agent_options_init (&options);
    options.api = s_fake.api;
    options.fanout = s_fake.fanout;
    options.state_dir = s_state;
    options.on_error = s_on_error;
    s_agent = herald_agent_new ("lineage", &options);
    cr_assert_not_null (s_agent);
    cr_assert_eq (herald_agent_subscribe (s_agent, "g", NULL,
                  (herald_start_t) { HERALD_START_BEGINNING, 0 }, au_record, s_recorder),
                  HERALD_OK);
    s_beat_until_lineage (2);
    s_wait_count (10);
    cr_assert_eq (s_recorder->seqs [8], 4);
    cr_assert_eq (s_recorder->seqs [9], 5);
    cr_assert_eq (s_errors, 1);
    cr_assert (strstr (s_error_message, "after seq 3 (lineage 2): rewinding subscription g "
                       "from 8 to 3"), "%s", s_error_message);
    cr_assert_geq (s_fake.hellos, 1);
}

Test (herald_agent_lineage, a_broker_on_a_lower_lineage_rewinds_to_its_head)
{
    //  The agent follows lineage 1 ...
    s_fake.lineage = 1;
    s_fake.losses [s_fake.loss_count++] = (herald_loss_t) { 1, 0, 1 };
    s_go_live ();
    for (int index = 0; index < 6; index++)
        s_append ("g.1", 0);
    for (uint64_t seq = 1; seq <= 6; seq++)
        s_fanout (seq);
    s_wait_count (6);
    s_beat_until_lineage (1);
    cr_assert_eq (s_errors, 0, "%s", s_error_message);
    //  ... and the store is replaced by an older copy: lineage 0, head 4
    s_fake.lineage = 0;
    s_fake.loss_count = 0;
    for (uint64_t seq = 5; seq <= 6; seq++)
        s_fake.envelopes [seq].size = 0;
    s_fake.head = 4;
    s_beat_until_lineage (0);
    s_append ("g.1", 0);            //  a new 5
    s_fanout (5);
    s_wait_count (7);
    cr_assert_eq (s_recorder->seqs [6], 5);
    cr_assert_eq (s_errors, 1);
    cr_assert_eq (s_error_code, HERALD_ERR_DATA_LOST);
    cr_assert (strstr (s_error_message, "rewinding subscription g from 6 to its head 4"), "%s",
               s_error_message);
}

//  The checkpoint file: version 2 keeps the lineage with done; a version 1
//  file (written before lineages) opens with lineage 0 and takes one.
Test (herald_agent_lineage, a_version_1_checkpoint_reads_as_lineage_0)
{
    char *path = tu_path (s_state, "v1.ckpt");
    herald_checkpoint_t *checkpoint = NULL;
    bool recovered;
    char message [256];
    cr_assert_eq (herald_checkpoint_open (&checkpoint, path, 16, true, 7, 0, &recovered,
                                          message, sizeof message), HERALD_OK, "%s", message);
    herald_checkpoint_destroy (&checkpoint);
    //  Make it a version 1 file: the version and the header's CRC
    FILE *file = fopen (path, "r+b");
    cr_assert_not_null (file);
    uint8_t header [64];
    cr_assert_eq (fread (header, 1, 64, file), 64);
    uint32_t version = 1;
    memcpy (header + 8, &version, 4);
    uint32_t crc = herald_crc32c (0, header, 60);
    memcpy (header + 60, &crc, 4);
    rewind (file);
    cr_assert_eq (fwrite (header, 1, 64, file), 64);
    fclose (file);
    cr_assert_eq (herald_checkpoint_open (&checkpoint, path, 16, false, 0, 0, &recovered,
                                          message, sizeof message), HERALD_OK, "%s", message);
    cr_assert_eq (herald_checkpoint_done (checkpoint), 7);
    cr_assert_eq (herald_checkpoint_lineage (checkpoint), 0);
    herald_checkpoint_rewind (checkpoint, 5, 2);
    herald_checkpoint_destroy (&checkpoint);
    cr_assert_eq (herald_checkpoint_open (&checkpoint, path, 16, false, 0, 0, &recovered,
                                          message, sizeof message), HERALD_OK, "%s", message);
    cr_assert_eq (herald_checkpoint_done (checkpoint), 5);
    cr_assert_eq (herald_checkpoint_lineage (checkpoint), 2);
    cr_assert_not (recovered);
    herald_checkpoint_destroy (&checkpoint);
    //  A new file is version 2 with the lineage given
    char *fresh = tu_path (s_state, "v2.ckpt");
    cr_assert_eq (herald_checkpoint_open (&checkpoint, fresh, 16, true, 3, 4, &recovered,
                                          message, sizeof message), HERALD_OK, "%s", message);
    cr_assert_eq (herald_checkpoint_lineage (checkpoint), 4);
    herald_checkpoint_destroy (&checkpoint);
    file = fopen (fresh, "rb");
    cr_assert_eq (fread (header, 1, 64, file), 64);
    fclose (file);
    memcpy (&version, header + 8, 4);
    cr_assert_eq (version, 2);
    free (fresh);
    free (path);
}

//  A loss is accepted on a stopped broker: the agent's api connection
//  drops.  Until the WELCOME after it, live events may belong to the new
//  lineage, so a live subscription holds them: a checkpoint exactly at
//  lost_after, and a new event at lost_after + 1 arriving live before the
//  WELCOME, is no loss to report.
Test (herald_agent_lineage, live_events_after_a_reconnect_wait_for_the_lineage)
{
    s_go_live ();
    for (int index = 0; index < 6; index++)
        s_append ("g.1", 0);
    for (uint64_t seq = 1; seq <= 6; seq++)
        s_fanout (seq);
    s_wait_count (6);
    //  "Restart": the api socket goes away and comes back on its port
    size_t hellos = s_fake.hellos;
    zsock_destroy (&s_fake.router);
    zclock_sleep (200);             //  the agent sees the connection drop
    s_lose_after (6);
    s_append ("g.1", 0);            //  a new 7
    s_fanout (7);                   //  live, before any WELCOME
    zclock_sleep (100);
    cr_assert_eq (s_recorder->count, 6, "a live event passed before the lineage was read");
    s_fake.router = zsock_new (ZMQ_ROUTER);
    cr_assert_gt (zsock_bind (s_fake.router, "%s", s_fake.api), 0);
    s_beat_until_lineage (1);
    s_wait_count (7);
    cr_assert_eq (s_recorder->seqs [6], 7);
    cr_assert_eq (memcmp (s_recorder->ids [6], s_fake.ids [7], 16), 0);
    cr_assert_eq (s_errors, 0, "%s", s_error_message);
    cr_assert_gt (s_fake.hellos, hellos);
}

//  A new subscription at a seq chosen by the caller, before the agent
//  heard from the broker: the broker's lineage is adopted, not compared
//  (its checkpoint passed nothing of an older lineage).
Test (herald_agent_lineage, a_new_subscription_at_a_seq_adopts_the_lineage_it_finds)
{
    for (int index = 0; index < 8; index++)
        s_append ("g.1", 0);
    s_lose_after (3);               //  lineage 1: the seqs after 3 were given again
    for (int index = 0; index < 5; index++)
        s_append ("g.1", 0);
    cr_assert_eq (herald_agent_subscribe (s_agent, "g", NULL,
                  (herald_start_t) { HERALD_START_SEQ, 7 }, au_record, s_recorder),
                  HERALD_OK);
    s_beat_until_lineage (1);
    s_wait_count (2);               //  7 and 8
    cr_assert_eq (s_recorder->seqs [0], 7);
    cr_assert_eq (s_recorder->seqs [1], 8);
    cr_assert_eq (s_errors, 0, "%s", s_error_message);
}
