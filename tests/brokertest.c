/*  =========================================================================
    brokertest - the criterion fixture of the heraldd tests

    See brokertest.h.  Everything a test makes is recorded in the tables
    below and freed by bt_teardown, so a failed assertion leaks nothing and
    leaves no broker running.
    =========================================================================
*/

#include "brokertest.h"

#include <criterion/criterion.h>
#include <criterion/logging.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#define S_MAX_SOCKS     8
#define S_MAX_STREAMS   4
#define S_MAX_MEMORY    4

bu_broker_t *bt_broker;
bu_broker_t *bt_second;
const char *const BT_TOPICS [3] = { "orders.x", "users.y", "billing.z" };

//  What a test made, for bt_teardown: NULL slots are free
static void *s_socks [S_MAX_SOCKS];
static void *s_streams [S_MAX_STREAMS];
static void *s_memory [S_MAX_MEMORY];

//  Put item in the first free slot of table; fails the test (freeing item
//  with destroy) when every slot is taken.
static void
s_slot_take (void **table, size_t slots, void *item, void (*destroy) (void *),
             const char *what)
{
    for (size_t index = 0; index < slots; index++)
        if (!table [index]) {
            table [index] = item;
            return;
        }
    destroy (item);
    cr_assert_fail ("more than %zu %s in one test", slots, what);
}

//  Clear the slot that holds item, if any.
static void
s_slot_clear (void **table, size_t slots, const void *item)
{
    for (size_t index = 0; index < slots; index++)
        if (table [index] == item)
            table [index] = NULL;
}

static void
s_sock_destroy (void *item)
{
    zsock_t *sock = item;
    zsock_destroy (&sock);
}

static void
s_stream_destroy (void *item)
{
    bt_stream_t *stream = item;
    bt_stream_destroy (&stream);
}

//  ---------------------------------------------------------------------
//  Fixture and broker

void
bt_setup (void)
{
    zsys_handler_set (NULL);        //  SIGTERM and SIGINT stay criterion's
    bt_broker = bt_second = NULL;
    memset (s_socks, 0, sizeof s_socks);
    memset (s_streams, 0, sizeof s_streams);
    memset (s_memory, 0, sizeof s_memory);
}

void
bt_teardown (void)
{
    for (size_t index = 0; index < S_MAX_SOCKS; index++)
        if (s_socks [index])
            s_sock_destroy (s_socks [index]);
    for (size_t index = 0; index < S_MAX_STREAMS; index++)
        if (s_streams [index])
            s_stream_destroy (s_streams [index]);       //  clears its slot
    for (size_t index = 0; index < S_MAX_MEMORY; index++)
        free (s_memory [index]);
    memset (s_socks, 0, sizeof s_socks);
    memset (s_memory, 0, sizeof s_memory);
    bu_broker_destroy (&bt_second);
    bu_broker_destroy (&bt_broker);
}

void
bt_start_with (const char *const *extra)
{
    if (!bt_broker) {
        bt_broker = bu_broker_new ("heraldd", extra);
        cr_assert_not_null (bt_broker, "cannot set up a broker (is broker/heraldd built? "
                            "HERALD_BUILDDIR=%s)", getenv ("HERALD_BUILDDIR"));
    }
    if (bu_broker_start (bt_broker, BT_START_MS)) {
        char log [2048];
        bu_broker_log (bt_broker, log, sizeof log);
        cr_assert_fail ("heraldd did not answer STATUS within %d ms; its log:\n%s",
                        BT_START_MS, log);
    }
}

void
bt_start (void)
{
    bt_start_with (NULL);
}

void
bt_stop_clean (void)
{
    int rc = bu_broker_stop (bt_broker, BT_STOP_MS);
    cr_assert_eq (rc, 0, "heraldd did not exit within %d ms of SIGTERM", BT_STOP_MS);
    int status = bt_broker->status;
    cr_assert (WIFEXITED (status) && WEXITSTATUS (status) == 0,
               "heraldd ended with %s %d after SIGTERM, expected exit 0",
               WIFEXITED (status)? "exit": "signal",
               WIFEXITED (status)? WEXITSTATUS (status): WTERMSIG (status));
}

void *
bt_calloc (size_t count, size_t size)
{
    void *memory = calloc (count, size);
    cr_assert_not_null (memory, "out of memory");
    s_slot_take (s_memory, S_MAX_MEMORY, memory, free, "bt_calloc blocks");
    return memory;
}

//  ---------------------------------------------------------------------
//  Sockets and replies

zsock_t *
bt_keep (zsock_t *sock)
{
    cr_assert_not_null (sock, "cannot make a socket");
    s_slot_take (s_socks, S_MAX_SOCKS, sock, s_sock_destroy, "sockets");
    return sock;
}

void
bt_drop (zsock_t **sock_p)
{
    s_slot_clear (s_socks, S_MAX_SOCKS, *sock_p);
    zsock_destroy (sock_p);
}

zsock_t *
bt_client (void)
{
    return bt_keep (bu_dealer_new (bt_broker->api));
}

zsock_t *
bt_subscriber (const char *const *prefixes)
{
    return bt_keep (bu_sub_new (bt_broker->fanout, prefixes));
}

//  Send [command, sbuf's bytes] and free sbuf (packed by the caller).
static void
s_send_sbuf (zsock_t *sock, const char *command, msgpack_sbuffer *sbuf)
{
    int rc = bu_send_sbuf (sock, command, sbuf);
    msgpack_sbuffer_destroy (sbuf);
    cr_assert_eq (rc, 0, "cannot send %s", command);
}

void
bt_send_publish (zsock_t *sock, uint64_t rid, const bu_event_t *events, size_t count)
{
    msgpack_sbuffer sbuf;
    msgpack_sbuffer_init (&sbuf);
    bu_pack_publish (&sbuf, rid, events, count);
    s_send_sbuf (sock, "PUBLISH", &sbuf);
}

void
bt_send_rid (zsock_t *sock, const char *command, uint64_t rid)
{
    msgpack_sbuffer sbuf;
    msgpack_sbuffer_init (&sbuf);
    bu_pack_rid (&sbuf, rid);
    s_send_sbuf (sock, command, &sbuf);
}

void
bt_send_replay (zsock_t *sock, uint64_t rid, const bu_replay_t *replay)
{
    msgpack_sbuffer sbuf;
    msgpack_sbuffer_init (&sbuf);
    bu_pack_replay (&sbuf, rid, replay);
    s_send_sbuf (sock, "REPLAY", &sbuf);
}

void
bt_send_credit (zsock_t *sock, uint64_t rid, uint64_t credit)
{
    msgpack_sbuffer sbuf;
    msgpack_sbuffer_init (&sbuf);
    bu_pack_credit (&sbuf, rid, credit);
    s_send_sbuf (sock, "CREDIT", &sbuf);
}

void
bt_recv (zsock_t *sock, bu_reply_t *reply)
{
    int rc = bu_recv_reply (sock, reply, BT_WAIT_MS);
    cr_assert_eq (rc, 0, "no reply within %d ms", BT_WAIT_MS);
    cr_assert_eq (reply->rc, HERALD_OK, "reply %s does not decode: %s: %s", reply->command,
                  reply->err.field, reply->err.message);
}

void
bt_check_ack (bu_reply_t *reply, uint64_t rid, size_t count)
{
    bool error = reply->type == HERALD_MSG_ERROR;
    cr_assert_eq (reply->type, HERALD_MSG_ACK, "expected ACK, got %s (code %s: %.*s)",
                  reply->command, error? herald_err_code (reply->body.error.code): "-",
                  error? (int) reply->body.error.message.len: 0,
                  error? reply->body.error.message.ptr: "");
    cr_assert (reply->body.has_rid, "ACK without rid");
    cr_assert_eq (reply->body.rid, rid, "ACK rid %" PRIu64 ", expected %" PRIu64,
                  reply->body.rid, rid);
    cr_assert_eq (reply->body.ack.count, count, "ACK with %zu entries for %zu events",
                  reply->body.ack.count, count);
}

void
bt_check_error (bu_reply_t *reply, herald_err code, bool has_rid, uint64_t rid)
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

void
bt_expect_error (zsock_t *sock, herald_err code, bool has_rid, uint64_t rid)
{
    bu_reply_t reply;
    bt_recv (sock, &reply);
    bt_check_error (&reply, code, has_rid, rid);
    bu_reply_fini (&reply);
}

void
bt_publish (zsock_t *sock, uint64_t rid, const bu_event_t *events, size_t count,
            bu_reply_t *reply)
{
    bt_send_publish (sock, rid, events, count);
    bt_recv (sock, reply);
    bt_check_ack (reply, rid, count);
}

void
bt_publish_many (zsock_t *sock, const char *topic, size_t count, uint64_t first_rid)
{
    for (size_t index = 0; index < count; index++) {
        bu_event_t event;
        bu_event_init (&event, topic, "x");
        bu_reply_t reply;
        bt_publish (sock, first_rid + index, &event, 1, &reply);
        bu_reply_fini (&reply);
    }
}

void
bt_publish_twenty (zsock_t *sock, uint8_t ids [21][HERALD_ID_BYTES])
{
    for (uint64_t batch = 0; batch < 4; batch++) {
        bu_event_t events [5];
        for (size_t index = 0; index < 5; index++) {
            uint64_t seq = batch * 5 + index + 1;
            bu_event_init (&events [index], BT_TOPICS [seq % 3], "payload");
            if (ids)
                memcpy (ids [seq], events [index].id, HERALD_ID_BYTES);
        }
        bu_reply_t reply;
        bt_publish (sock, 100 + batch, events, 5, &reply);
        cr_assert_eq (reply.body.ack.seq [0], batch * 5 + 1);
        bu_reply_fini (&reply);
    }
}

void
bt_status (zsock_t *sock, uint64_t rid, bu_reply_t *reply)
{
    if (bu_status (sock, rid, reply, BT_WAIT_MS) != 0) {
        char log [16384] = "";
        if (bt_broker)
            bu_broker_log_tail (bt_broker, log, sizeof log);
        cr_assert_fail ("no STATUS reply within %d ms; the broker's log ends:\n%s", BT_WAIT_MS,
                        log);
    }
}

uint64_t
bt_head (zsock_t *sock)
{
    bu_reply_t reply;
    bt_status (sock, 900000 + (uint64_t) (tu_mono_ns () % 1000), &reply);
    uint64_t head = reply.body.status.head;
    bu_reply_fini (&reply);
    return head;
}

uint64_t
bt_status_extra (zsock_t *sock, uint64_t rid, const char *name)
{
    bu_reply_t reply = { 0 };
    bt_status (sock, rid, &reply);
    uint64_t value = 0;
    for (size_t i = 0; i < reply.body.status.extra_count; i++)
        if (bu_str_eq (reply.body.status.extra_keys [i], name))
            value = reply.body.status.extra_values [i];
    bu_reply_fini (&reply);
    return value;
}

uint64_t
bt_wait_status_extra (zsock_t *sock, const char *name, uint64_t want, int timeout_ms)
{
    uint64_t deadline = tu_mono_ns () + (uint64_t) timeout_ms * 1000000ULL;
    uint64_t value = 0;
    for (uint64_t rid = 800000; ; rid++) {
        value = bt_status_extra (sock, rid, name);
        if (value >= want || tu_mono_ns () >= deadline)
            return value;
        zclock_sleep (10);
    }
}

void
bt_decode (zframe_t *frame, tu_decoded_t *decoded)
{
    herald_err rc = tu_decode (decoded, zframe_data (frame), zframe_size (frame));
    cr_assert_eq (rc, HERALD_OK, "envelope does not decode: %s: %s", decoded->err.field,
                  decoded->err.message);
}

zsock_t *
bt_start_heartbeats (const char *const *prefixes, herald_msg_t *hb, char *node,
                     size_t node_size)
{
    const char *const extra [] = { "--heartbeat-ms", "100", NULL };
    bt_start_with (extra);
    zsock_t *sub = bt_subscriber (prefixes);
    bt_wait_heartbeat (sub, hb, node, node_size);
    return sub;
}

void
bt_wait_heartbeat (zsock_t *sub, herald_msg_t *hb, char *node, size_t node_size)
{
    for (size_t index = 0; index < 1000; index++) {
        zmsg_t *msg = bu_recv (sub, BT_WAIT_MS);
        cr_assert_not_null (msg, "no message on fanout within %d ms", BT_WAIT_MS);
        if (!zframe_streq (zmsg_first (msg), "$hb")) {
            zmsg_destroy (&msg);
            continue;
        }
        zframe_t *body = zmsg_next (msg);
        if (!body)
            zmsg_destroy (&msg);
        cr_assert_not_null (body, "$hb without a body");
        size_t frames = zmsg_size (msg);
        msgpack_zone zone;
        msgpack_zone_init (&zone, 1024);
        herald_error_t err;
        herald_err rc = herald_msg_decode (hb, HERALD_MSG_HEARTBEAT, zframe_data (body),
                                           zframe_size (body), NULL, &zone, &err);
        if (rc == HERALD_OK)
            snprintf (node, node_size, "%.*s", (int) hb->heartbeat.node.len,
                      hb->heartbeat.node.ptr);
        hb->heartbeat.node.ptr = NULL;          //  it pointed into msg
        hb->heartbeat.node.len = 0;
        msgpack_zone_destroy (&zone);
        zmsg_destroy (&msg);
        cr_assert_eq (rc, HERALD_OK, "$hb does not decode: %s: %s", err.field, err.message);
        cr_assert_eq (frames, 2, "$hb of %zu frames", frames);
        return;
    }
    cr_assert_fail ("no $hb among 1000 fanout messages");
}

//  ---------------------------------------------------------------------
//  Streams

bt_stream_t *
bt_stream_new (void)
{
    bt_stream_t *self = calloc (1, sizeof *self);
    cr_assert_not_null (self);
    s_slot_take (s_streams, S_MAX_STREAMS, self, free, "streams");
    return self;
}

void
bt_stream_destroy (bt_stream_t **self_p)
{
    bt_stream_t *self = *self_p;
    if (!self)
        return;
    *self_p = NULL;
    s_slot_clear (s_streams, S_MAX_STREAMS, self);
    for (size_t index = 0; index < self->count; index++)
        zframe_destroy (&self->envelopes [index]);
    free (self);
}

//  Take one EVENTS or END reply for rid into self; anything else fails.
static void
s_stream_take (bt_stream_t *self, uint64_t rid, bu_reply_t *reply)
{
    cr_assert_eq (reply->rc, HERALD_OK, "%s reply does not decode: %s: %s", reply->command,
                  reply->err.field, reply->err.message);
    if (reply->type == HERALD_MSG_ERROR)
        cr_assert_fail ("stream %" PRIu64 ": ERROR %s: %.*s", rid,
                        herald_err_code (reply->body.error.code),
                        (int) reply->body.error.message.len, reply->body.error.message.ptr);
    cr_assert (reply->type == HERALD_MSG_EVENTS || reply->type == HERALD_MSG_END,
               "stream %" PRIu64 ": unexpected %s", rid, reply->command);
    cr_assert_eq (reply->body.rid, rid, "%s for rid %" PRIu64 " while reading rid %" PRIu64,
                  reply->command, reply->body.rid, rid);
    if (reply->type == HERALD_MSG_EVENTS) {
        cr_assert_gt (reply->envelope_count, 0, "EVENTS without an event");
        for (size_t index = 0; index < reply->envelope_count; index++) {
            cr_assert_lt (self->count, BT_STREAM_MAX);
            self->envelopes [self->count++] = zframe_dup (bu_reply_envelope (reply, index));
        }
    }
    else {
        self->ended = true;
        self->last = reply->body.end.last;
        self->head = reply->body.end.head;
        snprintf (self->reason, sizeof self->reason, "%.*s",
                  (int) reply->body.end.reason.len, reply->body.end.reason.ptr);
    }
}

void
bt_stream_read (zsock_t *sock, uint64_t rid, bt_stream_t *self, size_t want, int timeout_ms)
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
        s_stream_take (self, rid, &reply);
        bu_reply_fini (&reply);
    }
}

void
bt_stream_read_to_end (zsock_t *sock, uint64_t rid, bt_stream_t *self, int timeout_ms)
{
    bt_stream_read (sock, rid, self, BT_STREAM_MAX, timeout_ms);
    cr_assert (self->ended, "stream %" PRIu64 ": no END within %d ms (%zu events)", rid,
               timeout_ms, self->count);
}

void
bt_stream_check_end (const bt_stream_t *self, size_t count, uint64_t last, uint64_t head,
                     const char *reason)
{
    cr_assert (self->ended, "no END (%zu events)", self->count);
    cr_assert_eq (self->count, count, "%zu events before END, expected %zu", self->count,
                  count);
    cr_assert_eq (self->last, last, "END last %" PRIu64 ", expected %" PRIu64, self->last,
                  last);
    cr_assert_eq (self->head, head, "END head %" PRIu64 ", expected %" PRIu64, self->head,
                  head);
    cr_assert_str_eq (self->reason, reason);
}

void
bt_stream_check_seqs (const bt_stream_t *self, size_t count, uint64_t first)
{
    cr_assert_geq (self->count, count, "%zu events, expected %zu", self->count, count);
    for (size_t index = 0; index < count; index++) {
        tu_decoded_t decoded;
        bt_decode (self->envelopes [index], &decoded);
        uint64_t seq = decoded.event.seq;
        tu_decoded_fini (&decoded);
        cr_assert_eq (seq, first + index, "seq %" PRIu64 " at position %zu, expected %" PRIu64,
                      seq, index, first + index);
    }
}

uint8_t *
bt_replay_bytes (const char *api, const char *name, uint64_t head, size_t *len)
{
    zsock_t *client = bt_keep (bu_dealer_new (api));
    bu_replay_t replay = { .has_from = true, .from = 1, .has_credit = true, .credit = 100000 };
    bt_send_replay (client, 7, &replay);
    bt_stream_t *stream = bt_stream_new ();
    bt_stream_read_to_end (client, 7, stream, BT_WAIT_MS);
    cr_assert_eq (stream->count, head, "%s replays %zu events, not %" PRIu64, name,
                  stream->count, head);
    bt_stream_check_seqs (stream, stream->count, 1);
    size_t total = 0;
    for (size_t event = 0; event < stream->count; event++)
        total += sizeof (size_t) + zframe_size (stream->envelopes [event]);
    uint8_t *bytes = bt_calloc (1, total + 1);
    size_t used = 0;
    for (size_t event = 0; event < stream->count; event++) {
        size_t size = zframe_size (stream->envelopes [event]);
        memcpy (bytes + used, &size, sizeof size);
        memcpy (bytes + used + sizeof size, zframe_data (stream->envelopes [event]), size);
        used += sizeof size + size;
    }
    bt_stream_destroy (&stream);
    bt_drop (&client);
    *len = used;
    return bytes;
}
