/*  =========================================================================
    test_heraldd - the broker binary, checked on the wire as a third party

    Each test starts the real heraldd (tests/brokerutil.c) on ports chosen
    at run time with a fresh data directory, talks HWP/1 to it with plain
    czmq sockets and hand-packed MessagePack (PROTOCOL.md is the contract,
    not our own encoder), and stops it.  Replies are decoded with
    herald_msg_decode and envelopes with herald_event_decode.

    Bounded everywhere: every receive has a timeout, every loop a count.
    No fixed sleeps, except replay_respects_credit, whose point is that
    nothing arrives within a short window.  .fini kills and reaps every
    broker a test started, also when an assertion ended it early.
    =========================================================================
*/

#include <criterion/criterion.h>
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "brokerutil.h"
#include "testutil.h"

#define WAIT_MS         5000        //  for one reply that must come
#define START_MS        10000       //  for a broker to answer STATUS
#define STOP_MS         10000       //  for a broker to exit on SIGTERM
#define MAX_SOCKS       8

static bu_broker_t *s_broker;
static bu_broker_t *s_second;       //  a second broker, when a test needs one
static zsock_t *s_socks [MAX_SOCKS];
static void *s_memory [4];          //  malloc'd by a test, freed in teardown

static void s_streams_free (void);

//  ---------------------------------------------------------------------
//  Setup and helpers

static void
s_setup (void)
{
    zsys_handler_set (NULL);        //  SIGTERM and SIGINT stay criterion's
    s_broker = s_second = NULL;
    memset (s_socks, 0, sizeof s_socks);
    memset (s_memory, 0, sizeof s_memory);
}

static void
s_teardown (void)
{
    for (size_t index = 0; index < MAX_SOCKS; index++)
        zsock_destroy (&s_socks [index]);
    s_streams_free ();
    for (size_t index = 0; index < 4; index++) {
        free (s_memory [index]);
        s_memory [index] = NULL;
    }
    bu_broker_destroy (&s_second);
    bu_broker_destroy (&s_broker);
}

//  Make s_broker with extra flags (NULL-terminated, or NULL) and start it.
static void
s_start_with (const char *const *extra)
{
    if (!s_broker) {
        s_broker = bu_broker_new ("heraldd", extra);
        cr_assert_not_null (s_broker, "cannot set up a broker (is broker/heraldd built? "
                            "HERALD_BUILDDIR=%s)", getenv ("HERALD_BUILDDIR"));
    }
    if (bu_broker_start (s_broker, START_MS)) {
        char log [2048];
        bu_broker_log (s_broker, log, sizeof log);
        cr_assert_fail ("heraldd did not answer STATUS within %d ms; its log:\n%s", START_MS, log);
    }
}

static void
s_start (void)
{
    s_start_with (NULL);
}

//  Stop s_broker with SIGTERM and require exit status 0.
static void
s_stop_clean (void)
{
    int rc = bu_broker_stop (s_broker, STOP_MS);
    cr_assert_eq (rc, 0, "heraldd did not exit within %d ms of SIGTERM", STOP_MS);
    int status = s_broker->status;
    cr_assert (WIFEXITED (status) && WEXITSTATUS (status) == 0,
               "heraldd ended with %s %d after SIGTERM, expected exit 0",
               WIFEXITED (status)? "exit": "signal",
               WIFEXITED (status)? WEXITSTATUS (status): WTERMSIG (status));
}

//  Keep a socket for teardown; returns it.
static zsock_t *
s_keep (zsock_t *sock)
{
    cr_assert_not_null (sock, "cannot make a socket");
    for (size_t index = 0; index < MAX_SOCKS; index++)
        if (!s_socks [index]) {
            s_socks [index] = sock;
            return sock;
        }
    cr_assert_fail ("more than %d sockets", MAX_SOCKS);
    return NULL;
}

//  Destroy a kept socket.
static void
s_drop (zsock_t **sock_p)
{
    for (size_t index = 0; index < MAX_SOCKS; index++)
        if (s_socks [index] == *sock_p)
            s_socks [index] = NULL;
    zsock_destroy (sock_p);
}

static zsock_t *
s_client (void)
{
    return s_keep (bu_dealer_new (s_broker->api));
}

static void
s_event (bu_event_t *event, const char *topic, const char *data)
{
    memset (event, 0, sizeof *event);
    tu_random_id (event->id);
    event->topic = topic;
    event->data = data;
    event->data_len = data? strlen (data): 0;
}

static void
s_send_publish (zsock_t *sock, uint64_t rid, const bu_event_t *events, size_t count)
{
    msgpack_sbuffer sbuf;
    msgpack_sbuffer_init (&sbuf);
    bu_pack_publish (&sbuf, rid, events, count);
    int rc = bu_send_sbuf (sock, "PUBLISH", &sbuf);
    msgpack_sbuffer_destroy (&sbuf);
    cr_assert_eq (rc, 0, "send PUBLISH");
}

//  Receive one reply that must come within WAIT_MS and decode cleanly.
static void
s_recv (zsock_t *sock, bu_reply_t *reply)
{
    int rc = bu_recv_reply (sock, reply, WAIT_MS);
    cr_assert_eq (rc, 0, "no reply within %d ms", WAIT_MS);
    cr_assert_eq (reply->rc, HERALD_OK, "reply %s does not decode: %s: %s", reply->command,
                  reply->err.field, reply->err.message);
}

//  Check reply is an ACK for rid with count entries.
static void
s_check_ack (bu_reply_t *reply, uint64_t rid, size_t count)
{
    cr_assert_eq (reply->type, HERALD_MSG_ACK, "expected ACK, got %s (code %s: %.*s)",
                  reply->command,
                  reply->type == HERALD_MSG_ERROR? herald_err_code (reply->body.error.code): "-",
                  reply->type == HERALD_MSG_ERROR? (int) reply->body.error.message.len: 0,
                  reply->type == HERALD_MSG_ERROR? reply->body.error.message.ptr: "");
    cr_assert (reply->body.has_rid, "ACK without rid");
    cr_assert_eq (reply->body.rid, rid, "ACK rid %" PRIu64 ", expected %" PRIu64,
                  reply->body.rid, rid);
    cr_assert_eq (reply->body.ack.count, count, "ACK with %zu entries for %zu events",
                  reply->body.ack.count, count);
}

//  Publish and wait for its ACK (checked); reply holds it.
static void
s_publish (zsock_t *sock, uint64_t rid, const bu_event_t *events, size_t count,
           bu_reply_t *reply)
{
    s_send_publish (sock, rid, events, count);
    s_recv (sock, reply);
    s_check_ack (reply, rid, count);
}

//  Check reply is an ERROR with code; rid nil when has_rid is false.
static void
s_check_error (bu_reply_t *reply, herald_err code, bool has_rid, uint64_t rid)
{
    cr_assert_eq (reply->type, HERALD_MSG_ERROR, "expected ERROR %s, got %s",
                  herald_err_code (code), reply->command);
    cr_assert_eq (reply->body.error.code, code, "expected ERROR %s, got %s (%.*s)",
                  herald_err_code (code), herald_err_code (reply->body.error.code),
                  (int) reply->body.error.message.len, reply->body.error.message.ptr);
    if (has_rid) {
        cr_assert (reply->body.has_rid, "ERROR %s without rid, expected rid %" PRIu64,
                   herald_err_code (code), rid);
        cr_assert_eq (reply->body.rid, rid);
    }
    else
        cr_assert_not (reply->body.has_rid, "ERROR %s with rid %" PRIu64 ", expected nil",
                       herald_err_code (code), reply->body.rid);
}

static void
s_status (zsock_t *sock, uint64_t rid, bu_reply_t *reply)
{
    cr_assert_eq (bu_status (sock, rid, reply, WAIT_MS), 0, "no STATUS reply within %d ms",
                  WAIT_MS);
}

static uint64_t
s_head (zsock_t *sock)
{
    bu_reply_t reply;
    s_status (sock, 900000 + (uint64_t) (tu_mono_ns () % 1000), &reply);
    uint64_t head = reply.body.status.head;
    bu_reply_fini (&reply);
    return head;
}

static bool
s_str_eq (herald_str_t str, const char *text)
{
    return str.ptr && str.len == strlen (text) && !memcmp (str.ptr, text, str.len);
}

//  Publish count single-event requests on topic (rids first_rid...), each
//  waited for and checked as an ACK.
static void
s_publish_many (zsock_t *sock, const char *topic, size_t count, uint64_t first_rid)
{
    for (size_t index = 0; index < count; index++) {
        bu_event_t event;
        s_event (&event, topic, "x");
        bu_reply_t reply;
        s_publish (sock, first_rid + index, &event, 1, &reply);
        bu_reply_fini (&reply);
    }
}

//  ---------------------------------------------------------------------
//  Streams: what arrives for one REPLAY or READ

#define STREAM_MAX  20000

typedef struct {
    zframe_t *envelopes [STREAM_MAX];   //  copies, owned
    size_t count;
    bool ended;
    uint64_t last;
    uint64_t head;
    char reason [32];
} s_stream_t;

static s_stream_t *s_streams [4];  //  live streams, freed in teardown

static s_stream_t *
s_stream_new (void)
{
    s_stream_t *self = calloc (1, sizeof *self);
    cr_assert_not_null (self);
    for (size_t index = 0; index < 4; index++)
        if (!s_streams [index]) {
            s_streams [index] = self;
            return self;
        }
    free (self);
    cr_assert_fail ("more than 4 streams");
    return NULL;
}

static void
s_stream_destroy (s_stream_t **self_p)
{
    s_stream_t *self = *self_p;
    if (!self)
        return;
    *self_p = NULL;                 //  self_p may point into s_streams
    for (size_t index = 0; index < 4; index++)
        if (s_streams [index] == self)
            s_streams [index] = NULL;
    for (size_t index = 0; index < self->count; index++)
        zframe_destroy (&self->envelopes [index]);
    free (self);
}

static void
s_streams_free (void)
{
    for (size_t index = 0; index < 4; index++)
        s_stream_destroy (&s_streams [index]);
}

//  Receive EVENTS and END for rid until want more envelopes arrived, the
//  stream ended, or timeout_ms passed.  Any other reply fails the test.
static void
s_stream_read (zsock_t *sock, uint64_t rid, s_stream_t *self, size_t want, int timeout_ms)
{
    size_t target = self->count + want;
    uint64_t deadline = tu_mono_ns () + (uint64_t) timeout_ms * 1000000ULL;
    while (!self->ended && self->count < target) {
        uint64_t now = tu_mono_ns ();
        if (now >= deadline)
            return;
        bu_reply_t reply;
        if (bu_recv_reply (sock, &reply, (int) ((deadline - now) / 1000000ULL) + 1)) {
            bu_reply_fini (&reply);
            return;
        }
        cr_assert_eq (reply.rc, HERALD_OK, "%s reply does not decode: %s: %s", reply.command,
                      reply.err.field, reply.err.message);
        if (reply.type == HERALD_MSG_ERROR)
            cr_assert_fail ("stream %" PRIu64 ": ERROR %s: %.*s", rid,
                            herald_err_code (reply.body.error.code),
                            (int) reply.body.error.message.len, reply.body.error.message.ptr);
        cr_assert (reply.type == HERALD_MSG_EVENTS || reply.type == HERALD_MSG_END,
                   "stream %" PRIu64 ": unexpected %s", rid, reply.command);
        cr_assert_eq (reply.body.rid, rid, "%s for rid %" PRIu64 " while reading rid %" PRIu64,
                      reply.command, reply.body.rid, rid);
        if (reply.type == HERALD_MSG_EVENTS) {
            cr_assert_gt (reply.envelope_count, 0, "EVENTS without an event");
            for (size_t index = 0; index < reply.envelope_count; index++) {
                cr_assert_lt (self->count, STREAM_MAX);
                self->envelopes [self->count++] = zframe_dup (bu_reply_envelope (&reply, index));
            }
        }
        else {
            self->ended = true;
            self->last = reply.body.end.last;
            self->head = reply.body.end.head;
            snprintf (self->reason, sizeof self->reason, "%.*s",
                      (int) reply.body.end.reason.len, reply.body.end.reason.ptr);
        }
        bu_reply_fini (&reply);
    }
}

static void
s_send_replay (zsock_t *sock, uint64_t rid, const bu_replay_t *replay)
{
    msgpack_sbuffer sbuf;
    msgpack_sbuffer_init (&sbuf);
    bu_pack_replay (&sbuf, rid, replay);
    cr_assert_eq (bu_send_sbuf (sock, "REPLAY", &sbuf), 0);
    msgpack_sbuffer_destroy (&sbuf);
}

static void
s_send_credit (zsock_t *sock, uint64_t rid, uint64_t credit)
{
    msgpack_sbuffer sbuf;
    msgpack_sbuffer_init (&sbuf);
    bu_pack_credit (&sbuf, rid, credit);
    cr_assert_eq (bu_send_sbuf (sock, "CREDIT", &sbuf), 0);
    msgpack_sbuffer_destroy (&sbuf);
}

//  Decode envelope frame into decoded (tu_decoded_fini afterwards).
static void
s_decode (zframe_t *frame, tu_decoded_t *decoded)
{
    herald_err rc = tu_decode (decoded, zframe_data (frame), zframe_size (frame));
    cr_assert_eq (rc, HERALD_OK, "envelope does not decode: %s: %s", decoded->err.field,
                  decoded->err.message);
}

//  ---------------------------------------------------------------------
//  PUBLISH

TestSuite (heraldd, .init = s_setup, .fini = s_teardown, .timeout = 90);

Test (heraldd, publish_one_event_is_acked_at_seq_1)
{
    s_start ();
    zsock_t *client = s_client ();
    bu_event_t event;
    s_event (&event, "orders.1", "hello");
    bu_reply_t reply;
    s_publish (client, 7, &event, 1, &reply);
    cr_assert_eq (reply.body.ack.seq [0], 1);
    cr_assert_eq (reply.body.ack.ver [0], 1);
    cr_assert_eq (reply.body.ack.dup [0], false);
    bu_reply_fini (&reply);
}

Test (heraldd, publish_same_id_again_is_a_duplicate)
{
    s_start ();
    zsock_t *client = s_client ();
    bu_event_t first, other;
    s_event (&first, "orders.1", "hello");
    s_event (&other, "orders.1", "other");
    bu_reply_t reply;
    s_publish (client, 1, &first, 1, &reply);
    bu_reply_fini (&reply);
    s_publish (client, 2, &other, 1, &reply);
    cr_assert_eq (reply.body.ack.seq [0], 2);
    bu_reply_fini (&reply);

    //  Same id, different data: recognised by id alone
    first.data = "changed";
    first.data_len = 7;
    s_publish (client, 3, &first, 1, &reply);
    cr_assert_eq (reply.body.ack.seq [0], 1);
    cr_assert_eq (reply.body.ack.ver [0], 1);
    cr_assert_eq (reply.body.ack.dup [0], true);
    bu_reply_fini (&reply);
    cr_assert_eq (s_head (client), 2, "a duplicate was stored");
}

Test (heraldd, publish_batch_assigns_consecutive_seqs)
{
    s_start ();
    zsock_t *client = s_client ();
    bu_event_t events [5];
    for (size_t index = 0; index < 5; index++)
        s_event (&events [index], "orders.batch", "data");
    bu_reply_t reply;
    s_publish (client, 11, events, 5, &reply);
    for (size_t index = 0; index < 5; index++) {
        cr_assert_eq (reply.body.ack.seq [index], index + 1);
        cr_assert_eq (reply.body.ack.ver [index], index + 1);
        cr_assert_not (reply.body.ack.dup [index]);
    }
    bu_reply_fini (&reply);
    cr_assert_eq (s_head (client), 5);
}

Test (heraldd, publish_several_topics_keeps_ver_per_topic)
{
    s_start ();
    zsock_t *client = s_client ();
    const char *topics [6] = { "a.1", "b.1", "a.1", "c.1", "b.1", "a.1" };
    uint64_t vers [6] = { 1, 1, 2, 1, 2, 3 };
    bu_event_t events [6];
    for (size_t index = 0; index < 6; index++)
        s_event (&events [index], topics [index], "d");
    bu_reply_t reply;
    s_publish (client, 1, events, 4, &reply);      //  one batch of four
    for (size_t index = 0; index < 4; index++) {
        cr_assert_eq (reply.body.ack.seq [index], index + 1);
        cr_assert_eq (reply.body.ack.ver [index], vers [index], "event %zu: ver %" PRIu64,
                      index, reply.body.ack.ver [index]);
    }
    bu_reply_fini (&reply);
    s_publish (client, 2, events + 4, 2, &reply);  //  and two more
    cr_assert_eq (reply.body.ack.seq [0], 5);
    cr_assert_eq (reply.body.ack.ver [0], 2);
    cr_assert_eq (reply.body.ack.seq [1], 6);
    cr_assert_eq (reply.body.ack.ver [1], 3);
    bu_reply_fini (&reply);

    s_status (client, 3, &reply);
    cr_assert_eq (reply.body.status.head, 6);
    cr_assert_eq (reply.body.status.topics, 3);
    cr_assert_eq (reply.body.status.events, 6);
    bu_reply_fini (&reply);
}

Test (heraldd, pipelined_publishes_are_acked_in_request_order)
{
    s_start ();
    zsock_t *client = s_client ();
    for (uint64_t rid = 1; rid <= 50; rid++) {
        bu_event_t event;
        s_event (&event, rid % 2? "pipe.odd": "pipe.even", "x");
        s_send_publish (client, rid, &event, 1);
    }
    for (uint64_t rid = 1; rid <= 50; rid++) {
        bu_reply_t reply;
        s_recv (client, &reply);
        s_check_ack (&reply, rid, 1);
        cr_assert_eq (reply.body.ack.seq [0], rid, "rid %" PRIu64 " got seq %" PRIu64,
                      rid, reply.body.ack.seq [0]);
        cr_assert_eq (reply.body.ack.ver [0], (rid + 1) / 2);
        bu_reply_fini (&reply);
    }
}

Test (heraldd, two_clients_pipelining_get_gapless_distinct_seqs)
{
    s_start ();
    zsock_t *clients [2] = { s_client (), s_client () };
    const size_t requests = 50, batch = 4;
    for (uint64_t rid = 1; rid <= requests; rid++)
        for (size_t which = 0; which < 2; which++) {
            bu_event_t events [4];
            for (size_t index = 0; index < batch; index++)
                s_event (&events [index], which? "two.b": "two.a", "x");
            s_send_publish (clients [which], rid, events, batch);
        }
    size_t total = 2 * requests * batch;
    bool seen [2 * 50 * 4 + 1] = { false };
    uint64_t last_ver [2] = { 0, 0 };
    for (size_t which = 0; which < 2; which++) {
        uint64_t previous = 0;
        for (uint64_t rid = 1; rid <= requests; rid++) {
            bu_reply_t reply;
            s_recv (clients [which], &reply);
            s_check_ack (&reply, rid, batch);
            for (size_t index = 0; index < batch; index++) {
                uint64_t seq = reply.body.ack.seq [index];
                cr_assert (seq >= 1 && seq <= total, "seq %" PRIu64 " out of 1..%zu", seq, total);
                cr_assert_not (seen [seq], "seq %" PRIu64 " given twice", seq);
                cr_assert_gt (seq, previous, "one client's seqs went back");
                cr_assert_eq (reply.body.ack.ver [index], last_ver [which] + 1);
                cr_assert_not (reply.body.ack.dup [index]);
                seen [seq] = true;
                previous = seq;
                last_ver [which]++;
            }
            bu_reply_fini (&reply);
        }
    }
    for (size_t seq = 1; seq <= total; seq++)
        cr_assert (seen [seq], "seq %zu never given: a gap", seq);
    cr_assert_eq (s_head (clients [0]), total);
}

Test (heraldd, expect_conflict_is_an_error_and_stores_nothing)
{
    s_start ();
    zsock_t *client = s_client ();
    bu_event_t first;
    s_event (&first, "acct.1", "open");
    bu_reply_t reply;
    s_publish (client, 1, &first, 1, &reply);
    bu_reply_fini (&reply);

    //  A new topic's event first, then one whose expect fails
    bu_event_t batch [3];
    s_event (&batch [0], "acct.2", "open");
    s_event (&batch [1], "acct.1", "again");
    batch [1].has_expect = true;
    batch [1].expect = 0;
    s_event (&batch [2], "acct.1", "more");
    s_send_publish (client, 2, batch, 3);
    s_recv (client, &reply);
    s_check_error (&reply, HERALD_ERR_CONFLICT, true, 2);
    cr_assert (s_str_eq (reply.body.error.topic, "acct.1"), "conflict names topic %.*s",
               (int) reply.body.error.topic.len, reply.body.error.topic.ptr);
    cr_assert_eq (reply.body.error.expected, 0);
    cr_assert_eq (reply.body.error.actual, 1);
    bu_reply_fini (&reply);

    s_status (client, 3, &reply);
    cr_assert_eq (reply.body.status.head, 1, "a failed batch changed head to %" PRIu64,
                  reply.body.status.head);
    cr_assert_eq (reply.body.status.events, 1);
    cr_assert_eq (reply.body.status.topics, 1);
    bu_reply_fini (&reply);

    //  The right expect goes through, and the conflicting ids were not kept
    batch [1].expect = 1;
    s_publish (client, 4, batch, 3, &reply);
    cr_assert_eq (reply.body.ack.seq [0], 2);
    cr_assert_not (reply.body.ack.dup [0]);
    cr_assert_eq (reply.body.ack.ver [1], 2);
    cr_assert_eq (reply.body.ack.ver [2], 3);
    bu_reply_fini (&reply);
}

Test (heraldd, conflict_on_a_long_utf8_topic_gets_a_well_formed_error)
{
    s_start ();
    zsock_t *client = s_client ();
    //  Long topics of two-byte characters, at both alignments: a message
    //  quoting one, however it is cut, must not cut a character in half
    for (size_t shift = 0; shift < 2; shift++) {
        char topic [256];
        size_t len = 0;
        if (shift)
            topic [len++] = 'a';
        while (len + 2 <= 254) {
            topic [len++] = (char) 0xc3;
            topic [len++] = (char) 0xa9;              //  é
        }
        topic [len] = 0;
        bu_event_t event;
        s_event (&event, topic, "x");
        bu_reply_t reply;
        s_publish (client, 1 + 2 * shift, &event, 1, &reply);
        bu_reply_fini (&reply);
        s_event (&event, topic, "y");
        event.has_expect = true;
        event.expect = 5;
        s_send_publish (client, 2 + 2 * shift, &event, 1);
        s_recv (client, &reply);
        s_check_error (&reply, HERALD_ERR_CONFLICT, true, 2 + 2 * shift);
        cr_assert (s_str_eq (reply.body.error.topic, topic));
        cr_assert_eq (reply.body.error.expected, 5);
        cr_assert_eq (reply.body.error.actual, 1);
        bu_reply_fini (&reply);
    }
}

//  ---------------------------------------------------------------------
//  STATUS and HELLO

Test (heraldd, status_reports_a_standalone_broker)
{
    s_start ();
    zsock_t *client = s_client ();
    bu_reply_t reply;
    s_status (client, 42, &reply);
    cr_assert_eq (reply.body.rid, 42);
    cr_assert_eq (reply.body.status.head, 0);
    cr_assert_eq (reply.body.status.topics, 0);
    cr_assert_eq (reply.body.status.events, 0);
    cr_assert (s_str_eq (reply.body.status.role, "standalone"), "role %.*s",
               (int) reply.body.status.role.len, reply.body.status.role.ptr);
    cr_assert (reply.body.status.node.ptr && reply.body.status.node.len > 0, "empty node");
    cr_assert_lt (reply.body.status.uptime_s, 60);
    bu_reply_fini (&reply);
}

static void
s_send_hello (zsock_t *sock, uint64_t rid, uint64_t proto)
{
    msgpack_sbuffer sbuf;
    msgpack_sbuffer_init (&sbuf);
    msgpack_packer pk;
    msgpack_packer_init (&pk, &sbuf, msgpack_sbuffer_write);
    msgpack_pack_map (&pk, 3);
    bu_pack_str (&pk, "rid");
    msgpack_pack_uint64 (&pk, rid);
    bu_pack_str (&pk, "proto");
    msgpack_pack_uint64 (&pk, proto);
    bu_pack_str (&pk, "client");
    bu_pack_str (&pk, "test-service");
    cr_assert_eq (bu_send_sbuf (sock, "HELLO", &sbuf), 0);
    msgpack_sbuffer_destroy (&sbuf);
}

Test (heraldd, hello_proto_1_gets_welcome)
{
    s_start ();
    zsock_t *client = s_client ();
    bu_event_t event;
    s_event (&event, "orders.1", "x");
    bu_reply_t reply;
    s_publish (client, 1, &event, 1, &reply);
    bu_reply_fini (&reply);
    s_status (client, 2, &reply);
    char node [256];
    snprintf (node, sizeof node, "%.*s", (int) reply.body.status.node.len,
              reply.body.status.node.ptr);
    bu_reply_fini (&reply);

    s_send_hello (client, 3, 1);
    s_recv (client, &reply);
    cr_assert_eq (reply.type, HERALD_MSG_WELCOME, "expected WELCOME, got %s", reply.command);
    cr_assert_eq (reply.body.rid, 3);
    cr_assert_eq (reply.body.welcome.proto, 1);
    cr_assert (s_str_eq (reply.body.welcome.node, node), "WELCOME node differs from STATUS");
    cr_assert_eq (reply.body.welcome.head, 1);
    cr_assert (s_str_eq (reply.body.welcome.fanout, s_broker->fanout), "fanout %.*s, expected %s",
               (int) reply.body.welcome.fanout.len, reply.body.welcome.fanout.ptr,
               s_broker->fanout);
    cr_assert_eq (reply.body.welcome.cluster_count, 1);
    cr_assert (s_str_eq (reply.body.welcome.cluster [0], s_broker->api), "cluster[0] %.*s, "
               "expected %s", (int) reply.body.welcome.cluster [0].len,
               reply.body.welcome.cluster [0].ptr, s_broker->api);
    bu_reply_fini (&reply);
}

Test (heraldd, hello_proto_2_is_unsupported)
{
    s_start ();
    zsock_t *client = s_client ();
    s_send_hello (client, 5, 2);
    bu_reply_t reply;
    s_recv (client, &reply);
    s_check_error (&reply, HERALD_ERR_UNSUPPORTED, true, 5);
    bu_reply_fini (&reply);
}

//  ---------------------------------------------------------------------
//  Malformed input

Test (heraldd, one_frame_is_bad_request_with_rid_nil)
{
    s_start ();
    zsock_t *client = s_client ();
    const void *frames [1] = { "STATUS" };
    size_t sizes [1] = { 6 };
    cr_assert_eq (bu_send_frames (client, frames, sizes, 1), 0);
    bu_reply_t reply;
    s_recv (client, &reply);
    s_check_error (&reply, HERALD_ERR_BAD_REQUEST, false, 0);
    bu_reply_fini (&reply);
}

Test (heraldd, body_not_msgpack_is_bad_request_with_rid_nil)
{
    s_start ();
    zsock_t *client = s_client ();
    const uint8_t body [] = { 0xc1, 0xc1, 0xc1 };       //  0xc1 is never used
    cr_assert_eq (bu_send (client, "STATUS", body, sizeof body), 0);
    bu_reply_t reply;
    s_recv (client, &reply);
    s_check_error (&reply, HERALD_ERR_BAD_REQUEST, false, 0);
    bu_reply_fini (&reply);

    //  Truncated: a map header promising an entry that is not there
    const uint8_t truncated [] = { 0x81, 0xa3, 'r', 'i' };
    cr_assert_eq (bu_send (client, "PUBLISH", truncated, sizeof truncated), 0);
    s_recv (client, &reply);
    s_check_error (&reply, HERALD_ERR_BAD_REQUEST, false, 0);
    bu_reply_fini (&reply);
}

Test (heraldd, body_not_a_map_is_bad_request)
{
    s_start ();
    zsock_t *client = s_client ();
    msgpack_sbuffer sbuf;
    msgpack_sbuffer_init (&sbuf);
    msgpack_packer pk;
    msgpack_packer_init (&pk, &sbuf, msgpack_sbuffer_write);
    msgpack_pack_array (&pk, 2);
    bu_pack_str (&pk, "rid");
    msgpack_pack_uint64 (&pk, 9);
    cr_assert_eq (bu_send_sbuf (client, "STATUS", &sbuf), 0);
    msgpack_sbuffer_destroy (&sbuf);
    bu_reply_t reply;
    s_recv (client, &reply);
    s_check_error (&reply, HERALD_ERR_BAD_REQUEST, false, 0);
    bu_reply_fini (&reply);
}

Test (heraldd, unknown_command_is_unknown_command)
{
    s_start ();
    zsock_t *client = s_client ();
    msgpack_sbuffer sbuf;
    msgpack_sbuffer_init (&sbuf);
    bu_pack_rid (&sbuf, 9);
    cr_assert_eq (bu_send_sbuf (client, "FOO", &sbuf), 0);
    msgpack_sbuffer_destroy (&sbuf);
    bu_reply_t reply;
    s_recv (client, &reply);
    cr_assert_eq (reply.type, HERALD_MSG_ERROR, "got %s", reply.command);
    cr_assert_eq (reply.body.error.code, HERALD_ERR_UNKNOWN_COMMAND, "got %s",
                  herald_err_code (reply.body.error.code));
    //  The rid could be read, so it may be echoed; it must not be another
    if (reply.body.has_rid)
        cr_assert_eq (reply.body.rid, 9);
    bu_reply_fini (&reply);

    //  Whatever the body: garbage too
    const uint8_t garbage [] = { 0xc1 };
    cr_assert_eq (bu_send (client, "FOO", garbage, 1), 0);
    s_recv (client, &reply);
    s_check_error (&reply, HERALD_ERR_UNKNOWN_COMMAND, false, 0);
    bu_reply_fini (&reply);
}

Test (heraldd, unknown_binary_command_gets_a_well_formed_error)
{
    s_start ();
    zsock_t *client = s_client ();
    //  Not UTF-8: an ERROR's message is a str and must stay valid UTF-8
    const uint8_t command [] = { 0xff, 0xfe, 'X', 0xc3 };
    const uint8_t body [] = { 0x81, 0xa3, 'r', 'i', 'd', 0x05 };      //  {rid: 5}
    const void *frames [2] = { command, body };
    size_t sizes [2] = { sizeof command, sizeof body };
    cr_assert_eq (bu_send_frames (client, frames, sizes, 2), 0);
    bu_reply_t reply;
    s_recv (client, &reply);
    cr_assert_eq (reply.type, HERALD_MSG_ERROR, "got %s", reply.command);
    cr_assert_eq (reply.body.error.code, HERALD_ERR_UNKNOWN_COMMAND);
    if (reply.body.has_rid)
        cr_assert_eq (reply.body.rid, 5);
    bu_reply_fini (&reply);
}

Test (heraldd, missing_rid_is_bad_request_with_rid_nil)
{
    s_start ();
    zsock_t *client = s_client ();
    const uint8_t empty_map [] = { 0x80 };
    cr_assert_eq (bu_send (client, "STATUS", empty_map, 1), 0);
    bu_reply_t reply;
    s_recv (client, &reply);
    s_check_error (&reply, HERALD_ERR_BAD_REQUEST, false, 0);
    bu_reply_fini (&reply);
}

Test (heraldd, event_over_max_event_bytes_is_too_large)
{
    const char *const extra [] = { "--max-event-bytes", "4096", NULL };
    s_start_with (extra);
    zsock_t *client = s_client ();
    static char big [5000];
    memset (big, 'b', sizeof big - 1);
    bu_event_t events [2];
    s_event (&events [0], "big.1", "small");
    s_event (&events [1], "big.1", big);
    s_send_publish (client, 3, events, 2);
    bu_reply_t reply;
    s_recv (client, &reply);
    s_check_error (&reply, HERALD_ERR_TOO_LARGE, true, 3);
    bu_reply_fini (&reply);
    cr_assert_eq (s_head (client), 0, "part of a too_large batch was stored");
}

Test (heraldd, batch_over_max_batch_is_too_large)
{
    const char *const extra [] = { "--max-batch", "10", NULL };
    s_start_with (extra);
    zsock_t *client = s_client ();
    bu_event_t events [11];
    for (size_t index = 0; index < 11; index++)
        s_event (&events [index], "many.1", "x");
    s_send_publish (client, 4, events, 11);
    bu_reply_t reply;
    s_recv (client, &reply);
    s_check_error (&reply, HERALD_ERR_TOO_LARGE, true, 4);
    bu_reply_fini (&reply);
    //  Exactly max_batch is fine
    s_publish (client, 5, events, 10, &reply);
    bu_reply_fini (&reply);
    cr_assert_eq (s_head (client), 10);
}

Test (heraldd, reserved_topic_is_bad_request)
{
    s_start ();
    zsock_t *client = s_client ();
    bu_event_t events [2];
    s_event (&events [0], "fine.1", "x");
    s_event (&events [1], "$x", "x");
    s_send_publish (client, 6, events, 2);
    bu_reply_t reply;
    s_recv (client, &reply);
    s_check_error (&reply, HERALD_ERR_BAD_REQUEST, true, 6);
    bu_reply_fini (&reply);
    cr_assert_eq (s_head (client), 0);
}

Test (heraldd, random_flood_leaves_the_broker_answering)
{
    s_start ();
    zsock_t *client = s_client ();
    bu_event_t event;
    s_event (&event, "flood.1", "before");
    bu_reply_t reply;
    s_publish (client, 1, &event, 1, &reply);
    bu_reply_fini (&reply);

    static const char *commands [] = {
        "PUBLISH", "REPLAY", "READ", "CREDIT", "CANCEL", "STATUS", "HELLO"
    };
    uint64_t state = 20261122;
    for (size_t message = 0; message < 200; message++) {
        uint8_t bytes [3][96];
        const void *frames [3];
        size_t sizes [3];
        size_t count = 1 + tu_rand (&state) % 3;
        for (size_t index = 0; index < count; index++) {
            sizes [index] = tu_rand (&state) % sizeof bytes [index];
            for (size_t at = 0; at < sizes [index]; at++)
                bytes [index][at] = (uint8_t) tu_rand (&state);
            frames [index] = bytes [index];
        }
        if (message % 2) {      //  half of them with a real command
            frames [0] = commands [tu_rand (&state) % 7];
            sizes [0] = strlen (frames [0]);
        }
        cr_assert_eq (bu_send_frames (client, frames, sizes, count), 0);
    }
    //  Every reply before STATUS is an ERROR; STATUS still comes
    msgpack_sbuffer sbuf;
    msgpack_sbuffer_init (&sbuf);
    bu_pack_rid (&sbuf, 777777);
    cr_assert_eq (bu_send_sbuf (client, "STATUS", &sbuf), 0);
    msgpack_sbuffer_destroy (&sbuf);
    bool answered = false;
    size_t errors = 0;
    for (size_t index = 0; index < 300 && !answered; index++) {
        s_recv (client, &reply);
        if (reply.type == HERALD_MSG_STATUS_REPLY && reply.body.rid == 777777) {
            answered = true;
            cr_assert_eq (reply.body.status.head, 1, "the flood changed head to %" PRIu64,
                          reply.body.status.head);
        }
        else {
            cr_assert_eq (reply.type, HERALD_MSG_ERROR, "a random message got %s", reply.command);
            errors++;
        }
        bu_reply_fini (&reply);
    }
    cr_assert (answered, "no STATUS reply after the flood");
    cr_log_info ("flood: %zu ERROR replies to 200 random messages", errors);
    cr_assert_eq (s_broker->pid > 0 && kill (s_broker->pid, 0) == 0, true);
}

//  ---------------------------------------------------------------------
//  Fanout

//  Wait for the first `$hb` on sub: it proves the subscription is live.
//  Returns the decoded heartbeat in hb (copying node to node).
static void
s_wait_heartbeat (zsock_t *sub, herald_msg_t *hb_out, char *node, size_t node_size)
{
    for (size_t index = 0; index < 1000; index++) {
        zmsg_t *msg = bu_recv (sub, WAIT_MS);
        cr_assert_not_null (msg, "no message on fanout within %d ms", WAIT_MS);
        zframe_t *topic = zmsg_first (msg);
        if (zframe_streq (topic, "$hb")) {
            zframe_t *body = zmsg_next (msg);
            cr_assert_not_null (body, "$hb without a body");
            msgpack_zone zone;
            msgpack_zone_init (&zone, 1024);
            herald_error_t err;
            herald_msg_t hb;
            herald_err rc = herald_msg_decode (&hb, HERALD_MSG_HEARTBEAT, zframe_data (body),
                                               zframe_size (body), NULL, &zone, &err);
            cr_assert_eq (rc, HERALD_OK, "$hb does not decode: %s: %s", err.field, err.message);
            cr_assert_eq (zmsg_size (msg), 2);
            snprintf (node, node_size, "%.*s", (int) hb.heartbeat.node.len, hb.heartbeat.node.ptr);
            hb.heartbeat.node.ptr = NULL;
            *hb_out = hb;
            msgpack_zone_destroy (&zone);
            zmsg_destroy (&msg);
            return;
        }
        zmsg_destroy (&msg);
    }
    cr_assert_fail ("no $hb among 1000 fanout messages");
}

Test (heraldd, fanout_sends_prefix_events_in_seq_order)
{
    const char *const extra [] = { "--heartbeat-ms", "100", NULL };
    s_start_with (extra);
    const char *const prefixes [] = { "orders.", "$hb", NULL };
    zsock_t *sub = s_keep (bu_sub_new (s_broker->fanout, prefixes));
    herald_msg_t hb;
    char node [256];
    s_wait_heartbeat (sub, &hb, node, sizeof node);

    zsock_t *client = s_client ();
    const char *topics [7] = {
        "orders.a", "billing.x", "orders.b", "orders.a", "users.1", "order", "orders.c"
    };
    bu_event_t events [7];
    for (size_t index = 0; index < 7; index++)
        s_event (&events [index], topics [index], topics [index]);
    uint64_t seqs [7];
    bu_reply_t reply;
    s_publish (client, 1, events, 3, &reply);
    for (size_t index = 0; index < 3; index++)
        seqs [index] = reply.body.ack.seq [index];
    bu_reply_fini (&reply);
    for (size_t index = 3; index < 7; index++) {
        s_publish (client, 1 + index, events + index, 1, &reply);
        seqs [index] = reply.body.ack.seq [0];
        bu_reply_fini (&reply);
    }
    //  Expected on the SUB: indexes 0, 2, 3, 6 in that order
    size_t wanted [4] = { 0, 2, 3, 6 }, got = 0;
    for (size_t index = 0; index < 1000 && got < 4; index++) {
        zmsg_t *msg = bu_recv (sub, WAIT_MS);
        cr_assert_not_null (msg, "fanout: %zu of 4 orders.* events arrived", got);
        zframe_t *topic = zmsg_first (msg);
        if (zframe_streq (topic, "$hb")) {
            zmsg_destroy (&msg);
            continue;
        }
        char *name = zframe_strdup (topic);
        size_t expected = wanted [got];
        cr_assert_str_eq (name, topics [expected], "fanout event %zu: topic %s", got, name);
        free (name);
        cr_assert_eq (zmsg_size (msg), 2, "fanout event of %zu frames", zmsg_size (msg));
        tu_decoded_t decoded;
        s_decode (zmsg_next (msg), &decoded);
        cr_assert_eq (decoded.event.seq, seqs [expected]);
        cr_assert_eq (decoded.event.ver, expected == 3? 2: 1);
        cr_assert_gt (decoded.event.ts, 0);
        cr_assert_eq (decoded.event.topic_len, strlen (topics [expected]));
        cr_assert_eq (memcmp (decoded.event.id, events [expected].id, HERALD_ID_BYTES), 0);
        cr_assert_eq (decoded.event.data_len, strlen (topics [expected]));
        tu_decoded_fini (&decoded);
        zmsg_destroy (&msg);
        got++;
    }
    cr_assert_eq (got, 4);
}

Test (heraldd, fanout_envelope_equals_replay_bytes)
{
    const char *const extra [] = { "--heartbeat-ms", "100", NULL };
    s_start_with (extra);
    const char *const prefixes [] = { "orders.", "$hb", NULL };
    zsock_t *sub = s_keep (bu_sub_new (s_broker->fanout, prefixes));
    herald_msg_t hb;
    char node [256];
    s_wait_heartbeat (sub, &hb, node, sizeof node);

    zsock_t *client = s_client ();
    bu_event_t events [3];
    s_event (&events [0], "users.1", "u");
    s_event (&events [1], "orders.9", "the one");
    s_event (&events [2], "users.1", "v");
    bu_reply_t reply;
    s_publish (client, 1, events, 3, &reply);
    uint64_t seq = reply.body.ack.seq [1];
    bu_reply_fini (&reply);

    zframe_t *live = NULL;
    for (size_t index = 0; index < 1000 && !live; index++) {
        zmsg_t *msg = bu_recv (sub, WAIT_MS);
        cr_assert_not_null (msg, "the orders.9 event did not arrive on fanout");
        if (!zframe_streq (zmsg_first (msg), "$hb")) {
            zframe_t *first = zmsg_first (msg);
            cr_assert (zframe_streq (first, "orders.9"));
            live = zframe_dup (zmsg_next (msg));
        }
        zmsg_destroy (&msg);
    }
    cr_assert_not_null (live);

    s_stream_t *stream = s_stream_new ();
    bu_replay_t replay = { .has_from = true, .from = seq, .has_to = true, .to = seq };
    s_send_replay (client, 2, &replay);
    s_stream_read (client, 2, stream, STREAM_MAX, WAIT_MS);
    cr_assert (stream->ended, "REPLAY did not end");
    cr_assert_eq (stream->count, 1);
    cr_assert (zframe_eq (stream->envelopes [0], live),
               "fanout and REPLAY bytes differ for seq %" PRIu64 " (%zu vs %zu bytes)", seq,
               zframe_size (live), zframe_size (stream->envelopes [0]));
    zframe_destroy (&live);
    s_stream_destroy (&stream);
}

Test (heraldd, heartbeat_carries_head_and_node)
{
    const char *const extra [] = { "--heartbeat-ms", "100", NULL };
    s_start_with (extra);
    const char *const prefixes [] = { "$hb", NULL };
    zsock_t *sub = s_keep (bu_sub_new (s_broker->fanout, prefixes));
    herald_msg_t hb;
    char node [256];
    s_wait_heartbeat (sub, &hb, node, sizeof node);
    cr_assert_gt (strlen (node), 0);

    zsock_t *client = s_client ();
    s_publish_many (client, "hb.1", 3, 1);
    bu_reply_t reply;
    s_status (client, 10, &reply);
    uint64_t head = reply.body.status.head;
    cr_assert_eq (head, 3);
    cr_assert (s_str_eq (reply.body.status.node, node), "STATUS node %.*s, $hb node %s",
               (int) reply.body.status.node.len, reply.body.status.node.ptr, node);
    bu_reply_fini (&reply);

    //  Heartbeats sent before the ACKs may show less; one soon shows head
    uint64_t epoch = hb.heartbeat.epoch, previous_ts = hb.heartbeat.ts;
    bool seen = false;
    for (size_t index = 0; index < 100 && !seen; index++) {
        char hb_node [256];
        s_wait_heartbeat (sub, &hb, hb_node, sizeof hb_node);
        cr_assert_str_eq (hb_node, node);
        cr_assert_leq (hb.heartbeat.head, head);
        cr_assert_eq (hb.heartbeat.epoch, epoch, "epoch changed without a restart");
        cr_assert_geq (hb.heartbeat.ts, previous_ts);
        previous_ts = hb.heartbeat.ts;
        seen = hb.heartbeat.head == head;
    }
    cr_assert (seen, "no $hb showed head %" PRIu64, head);
}

Test (heraldd, heartbeat_epoch_grows_after_restart)
{
    const char *const extra [] = { "--heartbeat-ms", "100", NULL };
    s_start_with (extra);
    const char *const prefixes [] = { "$hb", NULL };
    zsock_t *sub = s_keep (bu_sub_new (s_broker->fanout, prefixes));
    herald_msg_t hb;
    char node1 [256], node2 [256];
    s_wait_heartbeat (sub, &hb, node1, sizeof node1);
    uint64_t epoch1 = hb.heartbeat.epoch;
    s_drop (&sub);
    s_stop_clean ();

    s_start ();
    sub = s_keep (bu_sub_new (s_broker->fanout, prefixes));
    s_wait_heartbeat (sub, &hb, node2, sizeof node2);
    cr_assert_gt (hb.heartbeat.epoch, epoch1, "epoch %" PRIu64 " after a restart from %" PRIu64,
                  hb.heartbeat.epoch, epoch1);
    cr_assert_str_eq (node2, node1, "node changed across a restart");
}

//  ---------------------------------------------------------------------
//  REPLAY and READ

//  Publish 20 events over three topic families: seq n has topic
//  topics[n % 3]; returns their ids in ids[1..20].
static const char *s_topics [3] = { "orders.x", "users.y", "billing.z" };

static void
s_publish_twenty (zsock_t *client, uint8_t ids [21][HERALD_ID_BYTES])
{
    for (uint64_t batch = 0; batch < 4; batch++) {
        bu_event_t events [5];
        for (size_t index = 0; index < 5; index++) {
            uint64_t seq = batch * 5 + index + 1;
            s_event (&events [index], s_topics [seq % 3], "payload");
            memcpy (ids [seq], events [index].id, HERALD_ID_BYTES);
        }
        bu_reply_t reply;
        s_publish (client, 100 + batch, events, 5, &reply);
        cr_assert_eq (reply.body.ack.seq [0], batch * 5 + 1);
        bu_reply_fini (&reply);
    }
}

Test (heraldd, replay_from_1_sends_all_then_end_done)
{
    s_start ();
    zsock_t *client = s_client ();
    uint8_t ids [21][HERALD_ID_BYTES];
    s_publish_twenty (client, ids);
    s_stream_t *stream = s_stream_new ();
    bu_replay_t replay = { .has_from = true, .from = 1, .has_credit = true, .credit = 1000 };
    s_send_replay (client, 1, &replay);
    s_stream_read (client, 1, stream, STREAM_MAX, WAIT_MS);
    cr_assert (stream->ended, "no END");
    cr_assert_eq (stream->count, 20);
    for (size_t index = 0; index < 20; index++) {
        tu_decoded_t decoded;
        s_decode (stream->envelopes [index], &decoded);
        cr_assert_eq (decoded.event.seq, index + 1);
        cr_assert_eq (memcmp (decoded.event.id, ids [index + 1], HERALD_ID_BYTES), 0);
        tu_decoded_fini (&decoded);
    }
    cr_assert_eq (stream->last, 20);
    cr_assert_eq (stream->head, 20);
    cr_assert_str_eq (stream->reason, "done");
    s_stream_destroy (&stream);
}

Test (heraldd, replay_prefixes_filter_topics)
{
    s_start ();
    zsock_t *client = s_client ();
    uint8_t ids [21][HERALD_ID_BYTES];
    s_publish_twenty (client, ids);
    const char *prefixes [2] = { "orders.", "billing." };
    bu_replay_t replay = { .has_from = true, .from = 1, .prefixes = prefixes, .prefix_count = 2 };
    s_stream_t *stream = s_stream_new ();
    s_send_replay (client, 1, &replay);
    s_stream_read (client, 1, stream, STREAM_MAX, WAIT_MS);
    cr_assert (stream->ended, "no END");
    size_t at = 0;
    for (uint64_t seq = 1; seq <= 20; seq++) {
        if (seq % 3 == 1)                   //  users.y
            continue;
        cr_assert_lt (at, stream->count, "only %zu events", stream->count);
        tu_decoded_t decoded;
        s_decode (stream->envelopes [at++], &decoded);
        cr_assert_eq (decoded.event.seq, seq);
        cr_assert (decoded.event.topic_len == strlen (s_topics [seq % 3])
                   && !memcmp (decoded.event.topic, s_topics [seq % 3], decoded.event.topic_len));
        tu_decoded_fini (&decoded);
    }
    cr_assert_eq (stream->count, at, "%zu events, expected %zu", stream->count, at);
    cr_assert_eq (stream->last, 20);
    cr_assert_eq (stream->head, 20);
    cr_assert_str_eq (stream->reason, "done");
    s_stream_destroy (&stream);
}

Test (heraldd, replay_respects_credit)
{
    s_start ();
    zsock_t *client = s_client ();
    uint8_t ids [21][HERALD_ID_BYTES];
    s_publish_twenty (client, ids);
    bu_replay_t replay = { .has_from = true, .from = 1, .has_credit = true, .credit = 5 };
    s_stream_t *stream = s_stream_new ();
    s_send_replay (client, 1, &replay);
    for (size_t round = 0; round < 4; round++) {
        s_stream_read (client, 1, stream, 5, WAIT_MS);
        cr_assert_eq (stream->count, (round + 1) * 5, "round %zu: %zu events", round,
                      stream->count);
        if (round < 3) {
            cr_assert_not (stream->ended, "END before all events were sent");
            //  The one deliberate wait: nothing may come without credit
            s_stream_read (client, 1, stream, 1, 300);
            cr_assert_eq (stream->count, (round + 1) * 5, "%zu events with credit for %zu",
                          stream->count, (round + 1) * 5);
            cr_assert_not (stream->ended);
            s_send_credit (client, 1, 5);
        }
    }
    s_stream_read (client, 1, stream, STREAM_MAX, WAIT_MS);
    cr_assert (stream->ended, "no END after the 20th event");
    cr_assert_eq (stream->count, 20);
    for (size_t index = 0; index < 20; index++) {
        tu_decoded_t decoded;
        s_decode (stream->envelopes [index], &decoded);
        cr_assert_eq (decoded.event.seq, index + 1);
        tu_decoded_fini (&decoded);
    }
    cr_assert_eq (stream->last, 20);
    cr_assert_str_eq (stream->reason, "done");
    s_stream_destroy (&stream);
}

Test (heraldd, cancel_ends_the_stream_cancelled)
{
    s_start ();
    zsock_t *client = s_client ();
    uint8_t ids [21][HERALD_ID_BYTES];
    s_publish_twenty (client, ids);
    bu_replay_t replay = { .has_from = true, .from = 1, .has_credit = true, .credit = 5 };
    s_stream_t *stream = s_stream_new ();
    s_send_replay (client, 3, &replay);
    s_stream_read (client, 3, stream, 5, WAIT_MS);
    cr_assert_eq (stream->count, 5);
    msgpack_sbuffer sbuf;
    msgpack_sbuffer_init (&sbuf);
    bu_pack_rid (&sbuf, 3);
    cr_assert_eq (bu_send_sbuf (client, "CANCEL", &sbuf), 0);
    msgpack_sbuffer_destroy (&sbuf);
    s_stream_read (client, 3, stream, STREAM_MAX, WAIT_MS);
    cr_assert (stream->ended, "no END after CANCEL");
    cr_assert_eq (stream->count, 5, "events after CANCEL");
    cr_assert_str_eq (stream->reason, "cancelled");
    cr_assert_eq (stream->last, 5, "END last %" PRIu64 " after 5 events sent", stream->last);
    cr_assert_eq (stream->head, 20);
    s_stream_destroy (&stream);

    //  The rid is free again and the connection still works
    cr_assert_eq (s_head (client), 20);
}

Test (heraldd, stream_without_credit_expires)
{
    const char *const extra [] = { "--stream-idle-ms", "200", NULL };
    s_start_with (extra);
    zsock_t *client = s_client ();
    s_publish_many (client, "idle.1", 5, 1);
    bu_replay_t replay = { .has_from = true, .from = 1, .has_credit = true, .credit = 2 };
    s_stream_t *stream = s_stream_new ();
    s_send_replay (client, 4, &replay);
    s_stream_read (client, 4, stream, STREAM_MAX, WAIT_MS);
    cr_assert (stream->ended, "a stream with no credit did not expire within %d ms", WAIT_MS);
    cr_assert_eq (stream->count, 2);
    cr_assert_str_eq (stream->reason, "expired");
    cr_assert_eq (stream->last, 2, "END last %" PRIu64 " after seqs 1-2 were sent", stream->last);
    cr_assert_eq (stream->head, 5);
    s_stream_destroy (&stream);
}

Test (heraldd, replay_from_0_is_bad_request)
{
    s_start ();
    zsock_t *client = s_client ();
    s_publish_many (client, "r.1", 2, 1);
    bu_replay_t replay = { .has_from = true, .from = 0 };
    s_send_replay (client, 8, &replay);
    bu_reply_t reply;
    s_recv (client, &reply);
    s_check_error (&reply, HERALD_ERR_BAD_REQUEST, true, 8);
    bu_reply_fini (&reply);
}

Test (heraldd, replay_to_before_from_is_bad_request)
{
    s_start ();
    zsock_t *client = s_client ();
    s_publish_many (client, "r.1", 5, 1);
    bu_replay_t replay = { .has_from = true, .from = 4, .has_to = true, .to = 3 };
    s_send_replay (client, 9, &replay);
    bu_reply_t reply;
    s_recv (client, &reply);
    s_check_error (&reply, HERALD_ERR_BAD_REQUEST, true, 9);
    bu_reply_fini (&reply);
}

Test (heraldd, reusing_a_running_stream_rid_is_refused_and_the_stream_goes_on)
{
    s_start ();
    zsock_t *client = s_client ();
    uint8_t ids [21][HERALD_ID_BYTES];
    s_publish_twenty (client, ids);
    bu_replay_t replay = { .has_from = true, .from = 1, .has_credit = true, .credit = 1 };
    s_stream_t *stream = s_stream_new ();
    s_send_replay (client, 7, &replay);
    s_stream_read (client, 7, stream, 1, WAIT_MS);
    cr_assert_eq (stream->count, 1);

    bu_replay_t again = { .has_from = true, .from = 10, .has_credit = true, .credit = 100 };
    s_send_replay (client, 7, &again);
    bu_reply_t reply;
    s_recv (client, &reply);
    s_check_error (&reply, HERALD_ERR_BAD_REQUEST, true, 7);
    bu_reply_fini (&reply);

    s_send_credit (client, 7, 100);
    s_stream_read (client, 7, stream, STREAM_MAX, WAIT_MS);
    cr_assert (stream->ended, "the first stream did not go on to END");
    cr_assert_eq (stream->count, 20, "the first stream sent %zu events", stream->count);
    for (size_t index = 0; index < 20; index++) {
        tu_decoded_t decoded;
        s_decode (stream->envelopes [index], &decoded);
        cr_assert_eq (decoded.event.seq, index + 1);
        tu_decoded_fini (&decoded);
    }
    cr_assert_str_eq (stream->reason, "done");
    cr_assert_eq (stream->last, 20);
    s_stream_destroy (&stream);
}

Test (heraldd, read_sends_one_topic_in_ver_order)
{
    s_start ();
    zsock_t *client = s_client ();
    uint8_t ids [21][HERALD_ID_BYTES];
    s_publish_twenty (client, ids);         //  orders.x: seqs 3, 6, ..., 18
    msgpack_sbuffer sbuf;
    msgpack_sbuffer_init (&sbuf);
    msgpack_packer pk;
    msgpack_packer_init (&pk, &sbuf, msgpack_sbuffer_write);
    msgpack_pack_map (&pk, 2);
    bu_pack_str (&pk, "rid");
    msgpack_pack_uint64 (&pk, 5);
    bu_pack_str (&pk, "topic");
    bu_pack_str (&pk, "orders.x");
    cr_assert_eq (bu_send_sbuf (client, "READ", &sbuf), 0);
    msgpack_sbuffer_destroy (&sbuf);

    s_stream_t *stream = s_stream_new ();
    s_stream_read (client, 5, stream, STREAM_MAX, WAIT_MS);
    cr_assert (stream->ended, "no END");
    cr_assert_eq (stream->count, 6, "READ sent %zu events, expected 6", stream->count);
    for (size_t index = 0; index < 6; index++) {
        tu_decoded_t decoded;
        s_decode (stream->envelopes [index], &decoded);
        uint64_t seq = 3 * (index + 1);
        cr_assert_eq (decoded.event.ver, index + 1);
        cr_assert_eq (decoded.event.seq, seq);
        cr_assert_eq (memcmp (decoded.event.id, ids [seq], HERALD_ID_BYTES), 0);
        tu_decoded_fini (&decoded);
    }
    cr_assert_eq (stream->last, 6, "READ END last %" PRIu64 ", expected ver 6", stream->last);
    cr_assert_eq (stream->head, 6, "READ END head %" PRIu64 ", expected topic ver 6",
                  stream->head);
    cr_assert_str_eq (stream->reason, "done");
    s_stream_destroy (&stream);
}

//  ---------------------------------------------------------------------
//  Lifecycle

Test (heraldd, sigterm_exits_zero)
{
    s_start ();
    zsock_t *client = s_client ();
    s_publish_many (client, "life.1", 3, 1);
    s_stop_clean ();
}

Test (heraldd, restart_on_the_same_dir_keeps_head)
{
    s_start ();
    zsock_t *client = s_client ();
    s_publish_many (client, "life.1", 5, 1);
    s_drop (&client);
    s_stop_clean ();

    s_start ();
    client = s_client ();
    bu_reply_t reply;
    s_status (client, 1, &reply);
    cr_assert_eq (reply.body.status.head, 5, "head %" PRIu64 " after a restart",
                  reply.body.status.head);
    cr_assert_eq (reply.body.status.events, 5);
    cr_assert_eq (reply.body.status.topics, 1);
    bu_reply_fini (&reply);
    bu_event_t event;
    s_event (&event, "life.1", "after");
    s_publish (client, 2, &event, 1, &reply);
    cr_assert_eq (reply.body.ack.seq [0], 6);
    cr_assert_eq (reply.body.ack.ver [0], 6);
    bu_reply_fini (&reply);
}

Test (heraldd, second_broker_on_the_same_dir_exits_nonzero)
{
    s_start ();
    s_second = bu_broker_new ("heraldd2", NULL);
    cr_assert_not_null (s_second);
    free (s_second->data_dir);
    s_second->data_dir = strdup (s_broker->data_dir);
    cr_assert_not_null (s_second->data_dir);
    cr_assert_eq (bu_broker_spawn (s_second), 0);
    int rc = bu_broker_wait (s_second, 5000);
    cr_assert_eq (rc, 0, "a second heraldd on the same data dir still runs after 5 s");
    int status = s_second->status;
    cr_assert (WIFEXITED (status) && WEXITSTATUS (status) != 0,
               "second heraldd ended with %s %d, expected a non-zero exit",
               WIFEXITED (status)? "exit": "signal",
               WIFEXITED (status)? WEXITSTATUS (status): WTERMSIG (status));
    char log [1024];
    bu_broker_log (s_second, log, sizeof log);
    cr_assert_gt (strlen (log), 0, "second heraldd said nothing on stderr");

    //  The first one is unharmed
    zsock_t *client = s_client ();
    s_publish_many (client, "life.1", 1, 1);
    cr_assert_eq (s_head (client), 1);
}

//  ---------------------------------------------------------------------
//  kill -9 during a pipelined publish storm

#define STORM_CLIENTS   2
#define STORM_BATCH     50
#define STORM_BATCHES   200         //  per client, at most
#define STORM_WINDOW    8           //  requests in flight per client
#define STORM_TARGET    1500        //  ACKed events before the kill

typedef struct {
    uint8_t ids [STORM_BATCHES][STORM_BATCH][HERALD_ID_BYTES];
    uint64_t seq [STORM_BATCHES][STORM_BATCH];
    uint64_t ver [STORM_BATCHES][STORM_BATCH];
    bool acked [STORM_BATCHES];
    size_t sent;                    //  batches sent; batch b has rid b + 1
    size_t received;                //  replies received
} s_storm_t;

static void
s_storm_send (zsock_t *sock, s_storm_t *storm, size_t client, size_t batch)
{
    bu_event_t events [STORM_BATCH];
    char topic [32];
    snprintf (topic, sizeof topic, "storm.c%zu.t%zu", client, batch % 5);
    for (size_t index = 0; index < STORM_BATCH; index++) {
        memset (&events [index], 0, sizeof events [index]);
        memcpy (events [index].id, storm->ids [batch][index], HERALD_ID_BYTES);
        events [index].topic = topic;
        events [index].data = "storm";
        events [index].data_len = 5;
    }
    s_send_publish (sock, batch + 1, events, STORM_BATCH);
}

static int
s_compare_ids (const void *a, const void *b)
{
    return memcmp (a, b, HERALD_ID_BYTES);
}

static void
s_storm_test (const char *durability)
{
    const char *const extra [] = { "--durability", durability, NULL };
    s_start_with (extra);
    s_storm_t *storms = s_memory [0] = calloc (STORM_CLIENTS, sizeof (s_storm_t));
    cr_assert_not_null (storms);
    zsock_t *clients [STORM_CLIENTS];
    for (size_t client = 0; client < STORM_CLIENTS; client++) {
        clients [client] = s_client ();
        for (size_t batch = 0; batch < STORM_BATCHES; batch++)
            for (size_t index = 0; index < STORM_BATCH; index++)
                tu_random_id (storms [client].ids [batch][index]);
    }

    //  Pipeline until enough is ACKed, then kill -9 with requests in flight
    size_t acked = 0;
    uint64_t deadline = tu_mono_ns () + 40ULL * 1000000000ULL;
    while (acked < STORM_TARGET) {
        cr_assert_lt (tu_mono_ns (), deadline, "only %zu events ACKed in 40 s", acked);
        zmq_pollitem_t items [STORM_CLIENTS];
        for (size_t client = 0; client < STORM_CLIENTS; client++) {
            s_storm_t *storm = &storms [client];
            while (storm->sent < STORM_BATCHES && storm->sent - storm->received < STORM_WINDOW)
                s_storm_send (clients [client], storm, client, storm->sent++);
            items [client] = (zmq_pollitem_t) { zsock_resolve (clients [client]), 0, ZMQ_POLLIN, 0 };
        }
        int rc = zmq_poll (items, STORM_CLIENTS, WAIT_MS);
        cr_assert_geq (rc, 0, "zmq_poll: %s", zmq_strerror (errno));
        cr_assert_gt (rc, 0, "no ACK within %d ms during the storm", WAIT_MS);
        for (size_t client = 0; client < STORM_CLIENTS; client++) {
            if (!(items [client].revents & ZMQ_POLLIN))
                continue;
            s_storm_t *storm = &storms [client];
            bu_reply_t reply;
            s_recv (clients [client], &reply);
            size_t batch = storm->received++;
            s_check_ack (&reply, batch + 1, STORM_BATCH);
            for (size_t index = 0; index < STORM_BATCH; index++) {
                storm->seq [batch][index] = reply.body.ack.seq [index];
                storm->ver [batch][index] = reply.body.ack.ver [index];
            }
            storm->acked [batch] = true;
            acked += STORM_BATCH;
            bu_reply_fini (&reply);
        }
    }
    bu_broker_kill (s_broker);
    cr_assert (WIFSIGNALED (s_broker->status) && WTERMSIG (s_broker->status) == SIGKILL,
               "heraldd was not killed by SIGKILL (status %d)", s_broker->status);
    size_t in_flight = 0;
    for (size_t client = 0; client < STORM_CLIENTS; client++) {
        in_flight += storms [client].sent - storms [client].received;
        s_drop (&clients [client]);
    }
    cr_log_info ("storm: killed with %zu events ACKed, %zu requests in flight", acked, in_flight);

    //  Restart: the log is 1..head without a gap, each id once
    s_start ();
    zsock_t *client = s_client ();
    uint64_t head = s_head (client);
    cr_assert_geq (head, acked, "head %" PRIu64 " below the %zu ACKed events", head, acked);
    s_stream_t *stream = s_stream_new ();
    bu_replay_t replay = { .has_from = true, .from = 1, .has_credit = true, .credit = 1000000 };
    s_send_replay (client, 1, &replay);
    s_stream_read (client, 1, stream, STREAM_MAX, 30000);
    cr_assert (stream->ended, "REPLAY of the whole log did not end (%zu events)", stream->count);
    cr_assert_eq (stream->count, head, "REPLAY sent %zu events, head %" PRIu64, stream->count,
                  head);
    cr_assert_eq (stream->last, head);
    uint8_t (*logged) [HERALD_ID_BYTES] = s_memory [1] = calloc (head + 1, HERALD_ID_BYTES);
    cr_assert_not_null (logged);
    for (size_t index = 0; index < stream->count; index++) {
        tu_decoded_t decoded;
        s_decode (stream->envelopes [index], &decoded);
        cr_assert_eq (decoded.event.seq, index + 1, "REPLAY: seq %" PRIu64 " at position %zu",
                      decoded.event.seq, index + 1);
        memcpy (logged [index + 1], decoded.event.id, HERALD_ID_BYTES);
        tu_decoded_fini (&decoded);
    }
    s_stream_destroy (&stream);

    //  Every ACKed id at its ACKed seq
    for (size_t which = 0; which < STORM_CLIENTS; which++)
        for (size_t batch = 0; batch < STORM_BATCHES; batch++) {
            if (!storms [which].acked [batch])
                continue;
            for (size_t index = 0; index < STORM_BATCH; index++) {
                uint64_t seq = storms [which].seq [batch][index];
                cr_assert (seq >= 1 && seq <= head, "ACKed seq %" PRIu64 " lost (head %"
                           PRIu64 ")", seq, head);
                cr_assert_eq (memcmp (logged [seq], storms [which].ids [batch][index],
                                      HERALD_ID_BYTES), 0,
                              "ACKed seq %" PRIu64 " holds another id", seq);
            }
        }
    //  No id twice
    qsort (logged + 1, head, HERALD_ID_BYTES, s_compare_ids);
    for (uint64_t seq = 2; seq <= head; seq++)
        cr_assert_neq (memcmp (logged [seq - 1], logged [seq], HERALD_ID_BYTES), 0,
                       "one id stored twice");
    free (logged);
    s_memory [1] = NULL;

    //  Publishing the ACKed batches again: every event a duplicate
    size_t resent = 0;
    for (size_t which = 0; which < STORM_CLIENTS; which++)
        for (size_t batch = 0; batch < STORM_BATCHES; batch++) {
            if (!storms [which].acked [batch])
                continue;
            s_storm_send (client, &storms [which], which, batch);
            bu_reply_t reply;
            s_recv (client, &reply);
            s_check_ack (&reply, batch + 1, STORM_BATCH);
            for (size_t index = 0; index < STORM_BATCH; index++) {
                cr_assert (reply.body.ack.dup [index], "an ACKed id is not a duplicate");
                cr_assert_eq (reply.body.ack.seq [index], storms [which].seq [batch][index]);
                cr_assert_eq (reply.body.ack.ver [index], storms [which].ver [batch][index]);
            }
            bu_reply_fini (&reply);
            resent += STORM_BATCH;
        }
    cr_assert_eq (resent, acked);
    cr_assert_eq (s_head (client), head, "re-publishing ACKed ids stored something");
    free (storms);
    s_memory [0] = NULL;
}

Test (heraldd, kill9_during_publish_storm_loses_no_ack_sync)
{
    s_storm_test ("sync");
}

Test (heraldd, kill9_during_publish_storm_loses_no_ack_async)
{
    s_storm_test ("async");
}
