/*  =========================================================================
    test_heraldd_pack - packed EVENTS (`pack: true` on REPLAY and READ)

    With pack, the broker gathers stored envelopes back to back into the
    EVENTS frames after {rid} (docs/protocol.md, "Packed events").  What
    must never change is which events come, their order and bytes, END's
    `last`, `head` and reason, and the credit they spend: each event counts
    one, however framed.  Every test runs the same requests with and
    without pack against the real heraldd and compares what arrives; the
    frames are counted to show packing happened (and, without pack, that
    every frame is one envelope as HWP/1 says).

    A client asking pack from a broker that does not know the key gets one
    envelope per frame: the agent is run through a relay in this file that
    takes the key out of every REPLAY and READ on its way to the broker, as
    an old broker would ignore it, and must deliver the same events.  The
    same relay, leaving requests alone, shows the agent does ask for pack.
    =========================================================================
*/

#include <criterion/criterion.h>
#include <inttypes.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "brokertest.h"
#include "herald.h"

TestSuite (heraldd_pack, .init = bt_setup, .fini = bt_teardown, .timeout = 120);

#define S_PACK_BYTES    (64 * 1024)     //  the broker's packing bound
#define S_QUIET_MS      300             //  a window in which nothing may arrive

//  What arrived for one stream: the envelopes, split out of the frames,
//  and how they were framed.
typedef struct {
    zframe_t **envelopes;           //  owned copies
    size_t count;
    size_t size;
    size_t messages;                //  EVENTS messages
    size_t frames;                  //  frames after {rid}
    size_t biggest_frame;
    size_t multi_frames;            //  frames that held more than one envelope
    size_t oversize_multi;          //  ... of them, frames over S_PACK_BYTES
    bool ended;
    uint64_t last;
    uint64_t head;
    char reason [32];
} s_got_t;

static void
s_got_fini (s_got_t *self)
{
    for (size_t index = 0; index < self->count; index++)
        zframe_destroy (&self->envelopes [index]);
    free (self->envelopes);
    memset (self, 0, sizeof *self);
}

//  Send a REPLAY or READ encoded by herald_msg_encode (pack included).
static void
s_send (zsock_t *sock, const herald_msg_t *msg)
{
    msgpack_sbuffer sbuf;
    msgpack_sbuffer_init (&sbuf);
    cr_assert_eq (herald_msg_encode (msg, &sbuf), 0);
    cr_assert_eq (bu_send_sbuf (sock, herald_msg_command (msg->type), &sbuf), 0);
}

static void
s_replay (zsock_t *sock, uint64_t rid, bool pack, uint64_t credit, const char *prefix,
          uint64_t from, uint64_t to)
{
    herald_msg_t msg = { .type = HERALD_MSG_REPLAY, .has_rid = true, .rid = rid };
    herald_str_t prefixes [1];
    msg.replay.has_from = from != 0;
    msg.replay.from = from;
    msg.replay.has_to = to != 0;
    msg.replay.to = to;
    if (prefix) {
        prefixes [0] = (herald_str_t) { prefix, strlen (prefix) };
        msg.replay.prefixes = prefixes;
        msg.replay.prefix_count = 1;
    }
    msg.replay.credit = credit;
    msg.replay.pack = pack;
    s_send (sock, &msg);
}

//  Take one EVENTS or END for rid into got; false on silence for wait_ms.
static bool
s_take (zsock_t *sock, uint64_t rid, s_got_t *got, int wait_ms)
{
    bu_reply_t reply;
    memset (&reply, 0, sizeof reply);
    if (bu_recv_reply (sock, &reply, wait_ms) != 0) {
        bu_reply_fini (&reply);
        return false;
    }
    cr_assert_eq (reply.rc, HERALD_OK, "%s does not decode", reply.command);
    if (reply.type == HERALD_MSG_ERROR)
        cr_assert_fail ("rid %" PRIu64 ": ERROR %s: %.*s", rid,
                        herald_err_code (reply.body.error.code),
                        (int) reply.body.error.message.len, reply.body.error.message.ptr);
    cr_assert_eq (reply.body.rid, rid);
    if (reply.type == HERALD_MSG_END) {
        got->ended = true;
        got->last = reply.body.end.last;
        got->head = reply.body.end.head;
        snprintf (got->reason, sizeof got->reason, "%.*s", (int) reply.body.end.reason.len,
                  reply.body.end.reason.ptr);
    }
    else {
        cr_assert_eq (reply.type, HERALD_MSG_EVENTS, "unexpected %s", reply.command);
        cr_assert_gt (reply.envelope_count, 0, "EVENTS without a frame");
        got->messages++;
        for (size_t index = 0; index < reply.envelope_count; index++) {
            zframe_t *frame = bu_reply_envelope (&reply, index);
            size_t offset = 0, len, in_frame = 0;
            const uint8_t *envelope;
            int rc;
            while ((rc = herald_msg_events_next (zframe_data (frame), zframe_size (frame),
                                                 &offset, &envelope, &len)) == 1) {
                if (got->count == got->size) {
                    got->size = got->size? got->size * 2: 256;
                    got->envelopes = realloc (got->envelopes, got->size * sizeof (zframe_t *));
                    cr_assert_not_null (got->envelopes);
                }
                got->envelopes [got->count++] = zframe_new (envelope, len);
                in_frame++;
            }
            cr_assert_eq (rc, 0, "a frame of %zu bytes does not split into envelopes",
                          zframe_size (frame));
            got->frames++;
            if (zframe_size (frame) > got->biggest_frame)
                got->biggest_frame = zframe_size (frame);
            if (in_frame > 1) {
                got->multi_frames++;
                if (zframe_size (frame) > S_PACK_BYTES)
                    got->oversize_multi++;
            }
        }
    }
    bu_reply_fini (&reply);
    return true;
}

//  Read a stream to its END, giving CREDIT credit each time credit events
//  arrived (so small credits are exercised the whole way).
static void
s_read_to_end (zsock_t *sock, uint64_t rid, uint64_t credit, s_got_t *got)
{
    size_t granted = credit;
    for (int turns = 0; !got->ended && turns < 100000; turns++) {
        cr_assert (s_take (sock, rid, got, BT_WAIT_MS), "rid %" PRIu64 ": silence after %zu "
                   "events", rid, got->count);
        cr_assert_leq (got->count, granted, "rid %" PRIu64 ": %zu events for %zu credit", rid,
                       got->count, granted);
        if (!got->ended && got->count == granted) {
            bt_send_credit (sock, rid, credit);
            granted += credit;
        }
    }
    cr_assert (got->ended);
}

//  The same events (bytes, order), and the same END.
static void
s_check_same (const s_got_t *plain, const s_got_t *packed, const char *what)
{
    cr_assert_eq (packed->count, plain->count, "%s: %zu events packed, %zu plain", what,
                  packed->count, plain->count);
    for (size_t index = 0; index < plain->count; index++)
        cr_assert (zframe_eq (plain->envelopes [index], packed->envelopes [index]),
                   "%s: event %zu differs", what, index);
    cr_assert_eq (packed->last, plain->last, "%s: last %" PRIu64 " packed, %" PRIu64 " plain",
                  what, packed->last, plain->last);
    cr_assert_eq (packed->head, plain->head, "%s: head", what);
    cr_assert_str_eq (packed->reason, plain->reason, "%s: reason", what);
    //  HWP/1 as it was: one envelope per frame
    cr_assert_eq (plain->frames, plain->count, "%s: plain frames %zu for %zu events", what,
                  plain->frames, plain->count);
    cr_assert_eq (packed->oversize_multi, 0, "%s: a packed frame over %d bytes", what,
                  S_PACK_BYTES);
}

//  Publish count events in batches: topic "pk.<i % 3>", data of size
//  bytes (or a varying size when size is 0).
static void
s_publish (zsock_t *client, size_t count, size_t size)
{
    static const char *const topics [3] = { "pk.a", "pk.b", "other" };
    uint8_t *data = bt_calloc (1, size? size: 2000);
    for (size_t index = 0; index < (size? size: 2000); index++)
        data [index] = (uint8_t) (index * 7);
    bu_event_t events [100];
    uint64_t rid = 1000;
    for (size_t done = 0; done < count; ) {
        size_t batch = count - done < 100? count - done: 100;
        size_t fit = 400000 / (size? size: 2000);
        if (batch > fit)
            batch = fit? fit: 1;
        for (size_t index = 0; index < batch; index++) {
            bu_event_init (&events [index], topics [(done + index) % 3], NULL);
            events [index].data = data;
            events [index].data_len = size? size: 1 + ((done + index) * 37) % 1900;
        }
        bu_reply_t reply;
        bt_publish (client, rid++, events, batch, &reply);
        bu_reply_fini (&reply);
        done += batch;
    }
}

//  ---------------------------------------------------------------------

Test (heraldd_pack, replay_packed_sends_the_same_events_and_end)
{
    bt_start ();
    zsock_t *client = bt_client ();
    s_publish (client, 1500, 0);
    struct { const char *prefix; uint64_t from, to, credit; } cases [] = {
        { NULL, 0, 0, 1000 },           //  the whole log, default credit
        { NULL, 0, 0, 7 },              //  credit smaller than a slice
        { "pk.", 0, 0, 300 },           //  a prefix: last beyond the last match
        { "other", 10, 1199, 1000 },    //  a range
        { "nothing", 0, 0, 5 },         //  no match: END only
        { NULL, 1400, 0, 1 },           //  one event at a time
    };
    uint64_t rid = 1;
    for (size_t index = 0; index < sizeof cases / sizeof cases [0]; index++) {
        s_got_t plain = { 0 }, packed = { 0 };
        s_replay (client, rid, false, cases [index].credit, cases [index].prefix,
                  cases [index].from, cases [index].to);
        s_read_to_end (client, rid++, cases [index].credit, &plain);
        s_replay (client, rid, true, cases [index].credit, cases [index].prefix,
                  cases [index].from, cases [index].to);
        s_read_to_end (client, rid++, cases [index].credit, &packed);
        char what [64];
        snprintf (what, sizeof what, "case %zu", index);
        s_check_same (&plain, &packed, what);
        if (cases [index].credit > 1 && plain.count > 10)
            cr_assert_lt (packed.frames * 4, packed.count, "%s: %zu frames for %zu events: "
                          "not packed", what, packed.frames, packed.count);
        s_got_fini (&plain);
        s_got_fini (&packed);
    }
}

//  Credit counts events, not frames: with credit n exactly n events come,
//  then nothing until more is given, packed as plain.
Test (heraldd_pack, packed_credit_counts_events)
{
    bt_start ();
    zsock_t *client = bt_client ();
    s_publish (client, 100, 50);
    s_got_t got = { 0 };
    s_replay (client, 1, true, 7, NULL, 0, 0);
    while (got.count < 7)
        cr_assert (s_take (client, 1, &got, BT_WAIT_MS), "%zu of 7 events", got.count);
    cr_assert_eq (got.count, 7);
    cr_assert_eq (got.frames, 1, "7 small events in %zu frames", got.frames);
    cr_assert_not (s_take (client, 1, &got, S_QUIET_MS), "more than the credit: %zu events",
                   got.count);
    bt_send_credit (client, 1, 90);
    while (got.count < 97)
        cr_assert (s_take (client, 1, &got, BT_WAIT_MS), "%zu of 97 events", got.count);
    cr_assert_eq (got.count, 97);
    cr_assert_not (s_take (client, 1, &got, S_QUIET_MS), "more than the credit: %zu events",
                   got.count);
    cr_assert_not (got.ended);
    bt_send_credit (client, 1, 3);
    //  Exactly the rest: END comes without more credit
    while (!got.ended)
        cr_assert (s_take (client, 1, &got, BT_WAIT_MS), "END after %zu events", got.count);
    cr_assert_eq (got.count, 100);
    cr_assert_eq (got.last, 100);
    cr_assert_str_eq (got.reason, "done");
    for (size_t index = 0; index < got.count; index++) {
        tu_decoded_t decoded;
        bt_decode (got.envelopes [index], &decoded);
        cr_assert_eq (decoded.event.seq, index + 1);
        tu_decoded_fini (&decoded);
    }
    s_got_fini (&got);
}

//  Frames hold at most S_PACK_BYTES, but an event bigger than that comes
//  alone in its frame (whole, never split).
Test (heraldd_pack, packed_frames_are_bounded)
{
    bt_start ();
    zsock_t *client = bt_client ();
    s_publish (client, 30, 20000);
    s_publish (client, 2, 150000);
    s_publish (client, 30, 3000);
    s_got_t plain = { 0 }, packed = { 0 };
    s_replay (client, 1, false, 1000, NULL, 0, 0);
    s_read_to_end (client, 1, 1000, &plain);
    s_replay (client, 2, true, 1000, NULL, 0, 0);
    s_read_to_end (client, 2, 1000, &packed);
    s_check_same (&plain, &packed, "big events");
    cr_assert_eq (packed.count, 62);
    cr_assert_gt (packed.multi_frames, 0);
    cr_assert_gt (packed.biggest_frame, S_PACK_BYTES, "the 150 kB events: alone");
    cr_assert_lt (packed.frames, plain.frames);
    s_got_fini (&plain);
    s_got_fini (&packed);
}

Test (heraldd_pack, read_packed_sends_the_same_events_and_end)
{
    bt_start ();
    zsock_t *client = bt_client ();
    s_publish (client, 900, 0);
    struct { uint64_t from, to, credit; } cases [] = {
        { 0, 0, 1000 }, { 5, 250, 11 }, { 300, 0, 1 }, { 301, 0, 1000 }
    };
    uint64_t rid = 1;
    for (size_t index = 0; index < sizeof cases / sizeof cases [0]; index++) {
        s_got_t got [2] = { { 0 }, { 0 } };
        for (int pack = 0; pack < 2; pack++) {
            herald_msg_t msg = { .type = HERALD_MSG_READ, .has_rid = true, .rid = rid };
            msg.read.topic = (herald_str_t) { "pk.b", 4 };
            msg.read.from_ver = cases [index].from;
            msg.read.has_to_ver = cases [index].to != 0;
            msg.read.to_ver = cases [index].to;
            msg.read.credit = cases [index].credit;
            msg.read.pack = pack;
            s_send (client, &msg);
            s_read_to_end (client, rid++, cases [index].credit, &got [pack]);
        }
        char what [64];
        snprintf (what, sizeof what, "READ case %zu", index);
        s_check_same (&got [0], &got [1], what);
        s_got_fini (&got [0]);
        s_got_fini (&got [1]);
    }
}

//  pack false (or nil) is today's framing, byte for byte; a pack that is
//  not a bool is bad_request naming it.
Test (heraldd_pack, pack_false_is_plain_and_pack_must_be_a_bool)
{
    bt_start ();
    zsock_t *client = bt_client ();
    s_publish (client, 20, 10);
    const char *bodies [] = { "\x83\xa3rid\x01\xa4pack\xc2\xa6" "credit\x0a",
                              "\x83\xa3rid\x02\xa4pack\xc0\xa6" "credit\x0a" };
    for (uint64_t rid = 1; rid <= 2; rid++) {
        cr_assert_eq (bu_send (client, "REPLAY", bodies [rid - 1], strlen (bodies [rid - 1])),
                      0);
        s_got_t got = { 0 };
        s_read_to_end (client, rid, 10, &got);
        cr_assert_eq (got.count, 20);
        cr_assert_eq (got.frames, 20, "pack %s: %zu frames", rid == 1? "false": "nil",
                      got.frames);
        s_got_fini (&got);
    }
    const char *wrong = "\x83\xa3rid\x03\xa4pack\x01\xa6" "credit\x0a";
    cr_assert_eq (bu_send (client, "REPLAY", wrong, strlen (wrong)), 0);
    bu_reply_t reply;
    bt_recv (client, &reply);
    bt_check_error (&reply, HERALD_ERR_BAD_REQUEST, true, 3);
    cr_assert (strstr (reply.body.error.message.ptr, "pack"), "message: %.*s",
               (int) reply.body.error.message.len, reply.body.error.message.ptr);
    bu_reply_fini (&reply);
    const char *wrong_read = "\x83\xa3rid\x04\xa5topic\xa1t\xa4pack\xa3yes";
    cr_assert_eq (bu_send (client, "READ", wrong_read, strlen (wrong_read)), 0);
    bt_recv (client, &reply);
    bt_check_error (&reply, HERALD_ERR_BAD_REQUEST, true, 4);
    bu_reply_fini (&reply);
}

//  ---------------------------------------------------------------------
//  A relay between the agent and heraldd: a ROUTER for the agent, one
//  DEALER to the broker per agent connection.  With strip, it takes `pack`
//  out of every REPLAY and READ, as a broker that does not know the key
//  ignores it.  It counts the frames and envelopes of the EVENTS it
//  passes, and the requests that asked for pack.

typedef struct {
    char backend [64];
    char endpoint [64];
    bool strip;
    atomic_size_t frames;
    atomic_size_t envelopes;
    atomic_size_t asked;
} s_relay_t;

typedef struct {
    zframe_t *identity;
    zsock_t *dealer;
} s_peer_t;

//  Re-encode a REPLAY or READ body without its pack key; count one that
//  asked for it.  Returns the body to send (owned).
static zframe_t *
s_relay_request (s_relay_t *self, zframe_t *body)
{
    msgpack_zone zone;
    msgpack_zone_init (&zone, 1024);
    msgpack_object root;
    size_t offset = 0;
    zframe_t *out = NULL;
    if (msgpack_unpack ((const char *) zframe_data (body), zframe_size (body), &offset, &zone,
                        &root) == MSGPACK_UNPACK_SUCCESS && root.type == MSGPACK_OBJECT_MAP) {
        msgpack_sbuffer sbuf;
        msgpack_sbuffer_init (&sbuf);
        msgpack_packer pk;
        msgpack_packer_init (&pk, &sbuf, msgpack_sbuffer_write);
        uint32_t keep = 0;
        for (uint32_t index = 0; index < root.via.map.size; index++) {
            const msgpack_object_kv *kv = &root.via.map.ptr [index];
            bool is_pack = kv->key.type == MSGPACK_OBJECT_STR && kv->key.via.str.size == 4
                        && memcmp (kv->key.via.str.ptr, "pack", 4) == 0;
            if (is_pack && kv->val.type == MSGPACK_OBJECT_BOOLEAN && kv->val.via.boolean)
                atomic_fetch_add (&self->asked, 1);
            keep += !(is_pack && self->strip);
        }
        msgpack_pack_map (&pk, keep);
        for (uint32_t index = 0; index < root.via.map.size; index++) {
            const msgpack_object_kv *kv = &root.via.map.ptr [index];
            bool is_pack = kv->key.type == MSGPACK_OBJECT_STR && kv->key.via.str.size == 4
                        && memcmp (kv->key.via.str.ptr, "pack", 4) == 0;
            if (is_pack && self->strip)
                continue;
            msgpack_pack_object (&pk, kv->key);
            msgpack_pack_object (&pk, kv->val);
        }
        out = zframe_new (sbuf.data, sbuf.size);
        msgpack_sbuffer_destroy (&sbuf);
    }
    msgpack_zone_destroy (&zone);
    return out? out: zframe_dup (body);
}

static void
s_relay_actor (zsock_t *pipe, void *args)
{
    s_relay_t *self = (s_relay_t *) args;
    zsock_t *router = zsock_new (ZMQ_ROUTER);
    int port = bu_free_port ();
    snprintf (self->endpoint, sizeof self->endpoint, "tcp://127.0.0.1:%d", port);
    zsock_set_linger (router, 0);
    int bound = zsock_bind (router, "%s", self->endpoint);
    zsock_signal (pipe, bound == port? 0: 1);
    zpoller_t *poller = zpoller_new (pipe, router, NULL);
    s_peer_t peers [64];
    size_t peer_count = 0;
    while (!zsys_interrupted) {
        void *ready = zpoller_wait (poller, 1000);
        if (ready == pipe)
            break;                      //  $TERM
        if (ready == router) {
            zmsg_t *msg = zmsg_recv (router);
            zframe_t *identity = zmsg_pop (msg);
            s_peer_t *peer = NULL;
            for (size_t index = 0; index < peer_count && !peer; index++)
                if (zframe_eq (peers [index].identity, identity))
                    peer = &peers [index];
            if (!peer && peer_count < 64) {
                peer = &peers [peer_count++];
                peer->identity = zframe_dup (identity);
                peer->dealer = zsock_new (ZMQ_DEALER);
                zsock_set_linger (peer->dealer, 0);
                zsock_connect (peer->dealer, "%s", self->backend);
                zpoller_add (poller, peer->dealer);
            }
            zframe_t *command = zmsg_first (msg);
            zframe_t *body = zmsg_next (msg);
            if (peer && command && body
            &&  (zframe_streq (command, "REPLAY") || zframe_streq (command, "READ"))) {
                zframe_t *changed = s_relay_request (self, body);
                zmsg_remove (msg, body);
                zframe_destroy (&body);
                zmsg_append (msg, &changed);
            }
            if (peer)
                zmsg_send (&msg, peer->dealer);
            zmsg_destroy (&msg);
            zframe_destroy (&identity);
        }
        else
        if (ready) {
            zmsg_t *msg = zmsg_recv (ready);
            s_peer_t *peer = NULL;
            for (size_t index = 0; index < peer_count && !peer; index++)
                if (peers [index].dealer == ready)
                    peer = &peers [index];
            zframe_t *command = msg? zmsg_first (msg): NULL;
            if (command && zframe_streq (command, "EVENTS")) {
                zmsg_next (msg);
                zframe_t *frame;
                while ((frame = zmsg_next (msg))) {
                    atomic_fetch_add (&self->frames, 1);
                    size_t offset = 0, len;
                    const uint8_t *envelope;
                    while (herald_msg_events_next (zframe_data (frame), zframe_size (frame),
                                                   &offset, &envelope, &len) == 1)
                        atomic_fetch_add (&self->envelopes, 1);
                }
            }
            if (msg && peer) {
                zframe_t *identity = zframe_dup (peer->identity);
                zmsg_prepend (msg, &identity);
                zmsg_send (&msg, router);
            }
            zmsg_destroy (&msg);
        }
    }
    for (size_t index = 0; index < peer_count; index++) {
        zframe_destroy (&peers [index].identity);
        zsock_destroy (&peers [index].dealer);
    }
    zpoller_destroy (&poller);
    zsock_destroy (&router);
}

//  What the agent handed a handler: envelope copies, in order.
typedef struct {
    pthread_mutex_t lock;
    s_got_t got;
} s_sink_t;

static int
s_sink (const herald_delivery_t *event, void *arg)
{
    s_sink_t *sink = (s_sink_t *) arg;
    pthread_mutex_lock (&sink->lock);
    s_got_t *got = &sink->got;
    if (got->count == got->size) {
        got->size = got->size? got->size * 2: 256;
        got->envelopes = realloc (got->envelopes, got->size * sizeof (zframe_t *));
    }
    if (got->envelopes)
        got->envelopes [got->count++] = zframe_new (event->envelope, event->envelope_len);
    pthread_mutex_unlock (&sink->lock);
    return got->envelopes? HERALD_OK: HERALD_ERR_NOMEM;
}

static size_t
s_sink_count (s_sink_t *sink)
{
    pthread_mutex_lock (&sink->lock);
    size_t count = sink->got.count;
    pthread_mutex_unlock (&sink->lock);
    return count;
}

static void
s_check_events (const s_got_t *expected, const s_got_t *got, const char *what)
{
    cr_assert_eq (got->count, expected->count, "%s: %zu events, %zu expected", what,
                  got->count, expected->count);
    for (size_t index = 0; index < expected->count; index++)
        cr_assert (zframe_eq (expected->envelopes [index], got->envelopes [index]),
                   "%s: event %zu differs", what, index);
}

//  The agent's replay, read and subscription catch-up through the relay:
//  the same events whether the broker packs or (stripped) does not.
static void
s_agent_through (bool strip, const s_got_t *all, const s_got_t *topic_b, const s_got_t *pk)
{
    s_relay_t *relay = bt_calloc (1, sizeof *relay);
    snprintf (relay->backend, sizeof relay->backend, "%s", bt_broker->api);
    relay->strip = strip;
    zactor_t *actor = zactor_new (s_relay_actor, relay);
    cr_assert_not_null (actor, "the relay did not bind");
    const char *mode = strip? "a broker ignoring pack": "a packing broker";

    char *state = tu_tmpdir_new ("pack-agent");
    cr_assert_not_null (state);
    herald_agent_options_t options;
    herald_agent_options_init (&options);
    options.api = relay->endpoint;
    options.state_dir = state;
    options.timeout_ms = BT_WAIT_MS;
    herald_agent_t *agent = herald_agent_new ("pack", &options);
    cr_assert_not_null (agent, "%s", herald_agent_last_error ());

    s_sink_t replayed = { PTHREAD_MUTEX_INITIALIZER, { 0 } };
    herald_range_t range = { 0 };
    uint64_t last = 0;
    cr_assert_eq (herald_agent_replay (agent, &range, s_sink, &replayed, BT_WAIT_MS, &last),
                  HERALD_OK, "%s: replay: %s", mode, herald_agent_last_error ());
    s_check_events (all, &replayed.got, mode);
    cr_assert_eq (last, all->last);

    s_sink_t read = { PTHREAD_MUTEX_INITIALIZER, { 0 } };
    cr_assert_eq (herald_agent_read (agent, "pk.b", 0, 0, s_sink, &read, BT_WAIT_MS),
                  HERALD_OK, "%s: read: %s", mode, herald_agent_last_error ());
    s_check_events (topic_b, &read.got, mode);

    s_sink_t caught = { PTHREAD_MUTEX_INITIALIZER, { 0 } };
    const char *const prefixes [] = { "pk.", NULL };
    herald_start_t start = { .kind = HERALD_START_BEGINNING };
    cr_assert_eq (herald_agent_subscribe (agent, "pk", prefixes, start, s_sink, &caught),
                  HERALD_OK, "%s", herald_agent_last_error ());
    int64_t deadline = zclock_mono () + 20000;
    while (s_sink_count (&caught) < pk->count && zclock_mono () < deadline)
        zclock_sleep (10);
    herald_agent_destroy (&agent);
    s_check_events (pk, &caught.got, mode);

    size_t frames = atomic_load (&relay->frames), envelopes = atomic_load (&relay->envelopes);
    cr_assert_geq (atomic_load (&relay->asked), 3, "%s: the agent asked for pack %zu times",
                   mode, atomic_load (&relay->asked));
    cr_assert_geq (envelopes, all->count + topic_b->count + pk->count);
    if (strip)
        cr_assert_eq (frames, envelopes, "%s: %zu frames for %zu events", mode, frames,
                      envelopes);
    else
        cr_assert_lt (frames * 4, envelopes, "%s: %zu frames for %zu events", mode, frames,
                      envelopes);
    zactor_destroy (&actor);
    s_got_fini (&replayed.got);
    s_got_fini (&read.got);
    s_got_fini (&caught.got);
    tu_tmpdir_destroy (&state);
}

Test (heraldd_pack, agent_works_with_a_broker_that_packs_and_one_that_ignores_pack)
{
    bt_start ();
    zsock_t *client = bt_client ();
    s_publish (client, 2400, 0);
    //  What must arrive, read plainly
    s_got_t all = { 0 }, topic_b = { 0 }, pk = { 0 };
    s_replay (client, 1, false, 1000, NULL, 0, 0);
    s_read_to_end (client, 1, 1000, &all);
    s_replay (client, 2, false, 1000, "pk.", 0, 0);
    s_read_to_end (client, 2, 1000, &pk);
    herald_msg_t msg = { .type = HERALD_MSG_READ, .has_rid = true, .rid = 3 };
    msg.read.topic = (herald_str_t) { "pk.b", 4 };
    msg.read.credit = 1000;
    s_send (client, &msg);
    s_read_to_end (client, 3, 1000, &topic_b);
    cr_assert_eq (all.count, 2400);
    s_agent_through (true, &all, &topic_b, &pk);
    s_agent_through (false, &all, &topic_b, &pk);
    s_got_fini (&all);
    s_got_fini (&topic_b);
    s_got_fini (&pk);
}

//  Run the CLI with args (a shell word list of safe words) and return its
//  stdout (caller frees); the exit status must be 0.
static char *
s_cli (const char *endpoint, const char *args)
{
    char *herald = tu_build_program ("tools/herald");
    cr_assert_not_null (herald, "tools/herald is not built");
    char command [1024];
    snprintf (command, sizeof command, "%s --endpoint %s %s", herald, endpoint, args);
    free (herald);
    FILE *pipe = popen (command, "r");
    cr_assert_not_null (pipe);
    size_t size = 0, cap = 1 << 20;
    char *out = calloc (1, cap);
    cr_assert_not_null (out);
    size_t got;
    while ((got = fread (out + size, 1, cap - 1 - size, pipe)) > 0) {
        size += got;
        cr_assert_lt (size, cap - 1, "more output than expected");
    }
    cr_assert_eq (pclose (pipe), 0, "%s failed", command);
    return out;
}

//  The CLI asks for pack: its replay and read print the same lines from a
//  broker that packs and from one that ignores the key (through the
//  stripping relay), with credits smaller than a frame's events.
Test (heraldd_pack, cli_prints_the_same_from_a_broker_that_ignores_pack)
{
    bt_start ();
    zsock_t *client = bt_client ();
    s_publish (client, 700, 0);
    s_relay_t *relay = bt_calloc (1, sizeof *relay);
    snprintf (relay->backend, sizeof relay->backend, "%s", bt_broker->api);
    relay->strip = true;
    zactor_t *actor = zactor_new (s_relay_actor, relay);
    cr_assert_not_null (actor);
    const char *cases [] = { "replay --credit 7", "replay --prefix pk. --from 3 --to 650",
                             "read pk.b", "replay --max 300" };
    for (size_t index = 0; index < sizeof cases / sizeof cases [0]; index++) {
        size_t frames = atomic_load (&relay->frames);
        char *packed = s_cli (bt_broker->api, cases [index]);
        char *plain = s_cli (relay->endpoint, cases [index]);
        cr_assert_gt (strlen (plain), 1000, "%s: printed %zu bytes", cases [index],
                      strlen (plain));
        cr_assert_str_eq (packed, plain, "%s: the outputs differ", cases [index]);
        cr_assert_gt (atomic_load (&relay->frames), frames, "%s went past the relay",
                      cases [index]);
        free (packed);
        free (plain);
    }
    cr_assert_geq (atomic_load (&relay->asked), 4, "the CLI asked for pack %zu times",
                   atomic_load (&relay->asked));
    cr_assert_eq (atomic_load (&relay->frames), atomic_load (&relay->envelopes));
    zactor_destroy (&actor);
}
