/*  =========================================================================
    fakebroker - a scripted broker for the agent's tests (fakebroker.h)
    =========================================================================
*/

#include <criterion/criterion.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fakebroker.h"
#include "testutil.h"

fb_fake_t fb_fake;
atomic_int fb_errors;
int fb_error_code;
char fb_error_message [256];
char *fb_state;
herald_agent_t *fb_agent;
au_recorder_t *fb_recorder;

void
fb_on_error (const char *subscription, int code, const char *message, void *arg)
{
    (void) subscription;
    (void) arg;
    fb_error_code = code;
    snprintf (fb_error_message, sizeof fb_error_message, "%s", message);
    fb_errors++;
}

//  Node index's sockets (node 0's are fb_fake's, which tests may replace).
static zsock_t *
s_router (size_t index)
{
    return index? fb_fake.nodes [index].router: fb_fake.router;
}

static zsock_t *
s_pub (size_t index)
{
    return index? fb_fake.nodes [index].pub: fb_fake.pub;
}

//  Bind nodes 0..count-1.
static void
s_bind (size_t count)
{
    zsys_handler_set (NULL);
    memset (&fb_fake, 0, sizeof fb_fake);
    fb_fake.node_count = count;
    for (size_t index = 0; index < count; index++) {
        fb_node_t *node = &fb_fake.nodes [index];
        zsock_t *router = zsock_new (ZMQ_ROUTER);
        zsock_t *pub = zsock_new (ZMQ_PUB);
        cr_assert (router && pub);
        int api = zsock_bind (router, "tcp://127.0.0.1:*");
        int fanout = zsock_bind (pub, "tcp://127.0.0.1:*");
        cr_assert (api > 0 && fanout > 0);
        snprintf (node->api, sizeof node->api, "tcp://127.0.0.1:%d", api);
        snprintf (node->fanout, sizeof node->fanout, "tcp://127.0.0.1:%d", fanout);
        if (index)
            snprintf (node->name, sizeof node->name, "fake%zu", index);
        else
            snprintf (node->name, sizeof node->name, "fake");
        node->leader = (int) index;
        if (index) {
            node->router = router;
            node->pub = pub;
        }
        else {
            fb_fake.router = router;
            fb_fake.pub = pub;
            memcpy (fb_fake.api, node->api, sizeof fb_fake.api);
            memcpy (fb_fake.fanout, node->fanout, sizeof fb_fake.fanout);
        }
    }
    for (size_t index = 0; index <= LOG_MAX; index++)
        msgpack_sbuffer_init (&fb_fake.envelopes [index]);
}

static void
s_agent (const char *tag, const char *service, const char *api, const char *fanout,
         int heartbeat_ms)
{
    fb_state = tu_tmpdir_new (tag);
    fb_recorder = au_recorder_new ();
    herald_agent_options_t options;
    herald_agent_options_init (&options);
    options.api = api;
    options.fanout = fanout;
    options.state_dir = fb_state;
    options.on_error = fb_on_error;
    options.heartbeat_ms = heartbeat_ms;
    fb_errors = 0;
    fb_agent = herald_agent_new (service, &options);
    cr_assert_not_null (fb_agent, "%s", herald_agent_last_error ());
}

void
fb_setup (const char *tag, const char *service)
{
    s_bind (1);
    s_agent (tag, service, fb_fake.api, fb_fake.fanout, 0);
}

void
fb_cluster_setup (const char *tag, const char *service, size_t count, int heartbeat_ms)
{
    cr_assert (count >= 1 && count <= FB_NODES_MAX);
    s_bind (count);
    char api [FB_NODES_MAX * 64 + 8] = "";
    for (size_t index = 0; index < count; index++)
        snprintf (api + strlen (api), sizeof api - strlen (api), "%s%s", index? ",": "",
                  fb_fake.nodes [index].api);
    s_agent (tag, service, api, NULL, heartbeat_ms);
}

uint64_t
fb_node_head (size_t index)
{
    uint64_t lag = fb_fake.nodes [index].lag;
    return lag && lag < fb_fake.head? lag: fb_fake.head;
}

void
fb_node_kill (size_t index)
{
    fb_node_t *node = &fb_fake.nodes [index];
    if (index) {
        zsock_destroy (&node->router);
        zsock_destroy (&node->pub);
    }
    else {
        zsock_destroy (&fb_fake.router);
        zsock_destroy (&fb_fake.pub);
    }
    node->dead = true;
}

void
fb_teardown (void)
{
    herald_agent_destroy (&fb_agent);
    au_recorder_destroy (&fb_recorder);
    tu_tmpdir_destroy (&fb_state);
    for (size_t index = 0; index <= LOG_MAX; index++)
        msgpack_sbuffer_destroy (&fb_fake.envelopes [index]);
    zsock_destroy (&fb_fake.router);
    zsock_destroy (&fb_fake.pub);
    for (size_t index = 1; index < FB_NODES_MAX; index++) {
        zsock_destroy (&fb_fake.nodes [index].router);
        zsock_destroy (&fb_fake.nodes [index].pub);
    }
    zframe_destroy (&fb_fake.held_identity);
    zframe_destroy (&fb_fake.held_body);
}

//  Append an event on topic to the fake log; same_as (a seq, or 0) reuses
//  that event's id.
void
fb_append (const char *topic, uint64_t same_as)
{
    uint64_t seq = ++fb_fake.head;
    cr_assert_leq (seq, LOG_MAX);
    herald_event_t event = tu_event (topic, "d");
    if (same_as)
        memcpy (event.id, fb_fake.ids [same_as], 16);
    memcpy (fb_fake.ids [seq], event.id, 16);
    event.seq = seq;
    event.ver = seq;                //  one topic per test: ver follows seq
    event.ts = seq * 1000;
    cr_assert_eq (herald_event_encode (&event, &fb_fake.envelopes [seq]), 0);
}

//  Send event seq, or a heartbeat with the head, on the fake fanout.
void
fb_node_fanout (size_t index, uint64_t seq)
{
    const char *topic = "g.1";
    if (fb_fake.nodes [index].dead)
        return;
    zmq_send (zsock_resolve (s_pub (index)), topic, strlen (topic), ZMQ_SNDMORE);
    zmq_send (zsock_resolve (s_pub (index)), fb_fake.envelopes [seq].data,
              fb_fake.envelopes [seq].size, 0);
}

void
fb_fanout (uint64_t seq)
{
    fb_node_fanout (0, seq);
}

void
fb_node_heartbeat (size_t index)
{
    fb_node_t *node = &fb_fake.nodes [index];
    if (node->dead || node->mute)
        return;
    herald_msg_t beat;
    memset (&beat, 0, sizeof beat);
    beat.type = HERALD_MSG_HEARTBEAT;
    beat.heartbeat.head = fb_node_head (index);
    beat.heartbeat.ts = 1;
    beat.heartbeat.node = (herald_str_t) { node->name, strlen (node->name) };
    beat.heartbeat.epoch = 1;
    beat.heartbeat.lineage = node->old_lineage? 0: fb_fake.lineage;
    msgpack_sbuffer body;
    msgpack_sbuffer_init (&body);
    cr_assert_eq (herald_msg_encode (&beat, &body), 0);
    zmq_send (zsock_resolve (s_pub (index)), "$hb", 3, ZMQ_SNDMORE);
    zmq_send (zsock_resolve (s_pub (index)), body.data, body.size, 0);
    msgpack_sbuffer_destroy (&body);
}

void
fb_heartbeat (void)
{
    fb_node_heartbeat (0);
}

static void
s_reply (size_t index, zframe_t *identity, const char *command, const herald_msg_t *reply)
{
    msgpack_sbuffer out;
    msgpack_sbuffer_init (&out);
    cr_assert_eq (herald_msg_encode (reply, &out), 0);
    void *router = zsock_resolve (s_router (index));
    zmq_send (router, zframe_data (identity), zframe_size (identity), ZMQ_SNDMORE);
    zmq_send (router, command, strlen (command), ZMQ_SNDMORE);
    zmq_send (router, out.data, out.size, 0);
    msgpack_sbuffer_destroy (&out);
}

//  Answer a HELLO (its sender's identity and body) with WELCOME.
static void
s_welcome_from (size_t index, zframe_t *identity, zframe_t *body)
{
    fb_node_t *node = &fb_fake.nodes [index];
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
    reply.welcome.node = (herald_str_t) { node->name, strlen (node->name) };
    reply.welcome.head = fb_node_head (index);
    reply.welcome.fanout = (herald_str_t) { node->fanout, strlen (node->fanout) };
    herald_str_t cluster [FB_NODES_MAX];
    for (size_t at = 0; fb_fake.node_count > 1 && at < fb_fake.node_count; at++)
        cluster [at] = (herald_str_t) { fb_fake.nodes [at].api, strlen (fb_fake.nodes [at].api) };
    reply.welcome.cluster = cluster;
    reply.welcome.cluster_count = fb_fake.node_count > 1? fb_fake.node_count: 0;
    if (node->cluster_self) {
        cluster [0] = (herald_str_t) { node->cluster_self, strlen (node->cluster_self) };
        reply.welcome.cluster_count = 1;
    }
    reply.welcome.lineage = node->old_lineage? 0: fb_fake.lineage;
    reply.welcome.losses = fb_fake.losses;
    reply.welcome.loss_count = node->old_lineage? 0: fb_fake.loss_count;
    //  A key that reads one scope: its agent applies the scoped rule
    msgpack_sbuffer raw;
    msgpack_sbuffer_init (&raw);
    if (fb_fake.scope) {
        msgpack_packer pk;
        msgpack_packer_init (&pk, &raw, msgpack_sbuffer_write);
        msgpack_pack_str (&pk, 5);
        msgpack_pack_str_body (&pk, "scope", 5);
        msgpack_pack_str (&pk, strlen (fb_fake.scope));
        msgpack_pack_str_body (&pk, fb_fake.scope, strlen (fb_fake.scope));
        reply.welcome.raw = (herald_msg_raw_t) { raw.data, raw.size, 1 };
    }
    s_reply (index, identity, "WELCOME", &reply);
    msgpack_sbuffer_destroy (&raw);
    msgpack_zone_destroy (&zone);
    fb_fake.hellos++;
    node->hellos++;
}

static void
s_welcome (zframe_t *identity, zframe_t *body)
{
    s_welcome_from (0, identity, body);
}

//  Store a PUBLISHed event: its seq, and whether its id was stored before.
static uint64_t
s_store (const herald_event_t *published, bool *dup)
{
    for (uint64_t seq = 1; seq <= fb_fake.head; seq++)
        if (memcmp (fb_fake.ids [seq], published->id, 16) == 0) {
            *dup = true;
            return seq;
        }
    *dup = false;
    uint64_t seq = ++fb_fake.head;
    cr_assert_leq (seq, LOG_MAX);
    herald_event_t event = *published;
    memcpy (fb_fake.ids [seq], event.id, 16);
    event.seq = seq;
    event.ver = seq;
    event.ts = seq * 1000;
    fb_fake.envelopes [seq].size = 0;
    cr_assert_eq (herald_event_encode (&event, &fb_fake.envelopes [seq]), 0);
    return seq;
}

//  PUBLISH: the leader stores and ACKs; a follower answers not_leader.
static void
s_publish (size_t index, zframe_t *identity, zframe_t *body)
{
    fb_node_t *node = &fb_fake.nodes [index];
    herald_msg_t request;
    herald_error_t err;
    msgpack_zone zone;
    msgpack_zone_init (&zone, 4096);
    cr_assert_eq (herald_msg_decode (&request, HERALD_MSG_PUBLISH, zframe_data (body),
                  zframe_size (body), NULL, &zone, &err), HERALD_OK, "%s", err.message);
    node->publishes++;
    node->events_sent += request.publish.count;
    herald_msg_t reply;
    memset (&reply, 0, sizeof reply);
    reply.has_rid = true;
    reply.rid = request.rid;
    size_t count = request.publish.count;
    uint64_t seqs [LOG_MAX], vers [LOG_MAX];
    bool dups [LOG_MAX];
    cr_assert_leq (count, LOG_MAX);
    int leader = node->leader;
    if (node->store_then_refuse) {
        //  Stored, then leadership lost before the answer: outcome unknown
        node->store_then_refuse--;
        for (size_t at = 0; at < count; at++)
            s_store (&request.publish.events [at], &dups [at]);
        node->events_refused_stored += count;
        leader = node->leader = node->leader_after;
    }
    if (leader != (int) index) {
        reply.type = HERALD_MSG_ERROR;
        reply.error.code = HERALD_ERR_NOT_LEADER;
        reply.error.message = (herald_str_t) { "not the leader", 14 };
        if (leader != FB_NIL)
            reply.error.leader = (herald_str_t) { fb_fake.nodes [leader].api,
                                                  strlen (fb_fake.nodes [leader].api) };
        s_reply (index, identity, "ERROR", &reply);
    }
    else {
        for (size_t at = 0; at < count; at++) {
            seqs [at] = s_store (&request.publish.events [at], &dups [at]);
            vers [at] = seqs [at];
        }
        reply.type = HERALD_MSG_ACK;
        reply.ack.seq = seqs;
        reply.ack.ver = vers;
        reply.ack.dup = dups;
        reply.ack.count = count;
        s_reply (index, identity, "ACK", &reply);
    }
    msgpack_zone_destroy (&zone);
}

//  REPLAY from the log up to the node's head (the agent's requests have no
//  prefixes in these tests).
static void
s_replay (size_t index, zframe_t *identity, zframe_t *body)
{
    herald_msg_t request;
    herald_error_t err;
    msgpack_zone zone;
    msgpack_zone_init (&zone, 1024);
    cr_assert_eq (herald_msg_decode (&request, HERALD_MSG_REPLAY, zframe_data (body),
                  zframe_size (body), NULL, &zone, &err), HERALD_OK);
    fb_fake.replays++;
    uint64_t from = request.replay.from;
    uint64_t head = fb_node_head (index);
    msgpack_zone_destroy (&zone);
    herald_msg_t reply;
    memset (&reply, 0, sizeof reply);
    reply.has_rid = true;
    reply.rid = request.rid;
    if (fb_fake.refuse) {
        reply.type = HERALD_MSG_ERROR;
        reply.error.code = HERALD_ERR_BAD_REQUEST;
        reply.error.message = (herald_str_t) { "prefixes: refused by the test", 29 };
        s_reply (index, identity, "ERROR", &reply);
        return;
    }
    //  EVENTS {rid} envelope..., then END {rid, last, head, reason}
    void *router = zsock_resolve (s_router (index));
    if (from <= head) {
        msgpack_sbuffer out;
        msgpack_sbuffer_init (&out);
        reply.type = HERALD_MSG_EVENTS;
        herald_msg_encode (&reply, &out);
        zmq_send (router, zframe_data (identity), zframe_size (identity), ZMQ_SNDMORE);
        zmq_send (router, "EVENTS", 6, ZMQ_SNDMORE);
        zmq_send (router, out.data, out.size, ZMQ_SNDMORE);
        for (uint64_t seq = from; seq <= head; seq++)
            zmq_send (router, fb_fake.envelopes [seq].data, fb_fake.envelopes [seq].size,
                      seq < head? ZMQ_SNDMORE: 0);
        msgpack_sbuffer_destroy (&out);
    }
    reply.type = HERALD_MSG_END;
    reply.end.last = head >= from? head: from - 1;
    reply.end.head = head;
    reply.end.reason = (herald_str_t) { "done", 4 };
    reply.end.lineage = fb_fake.lineage;
    s_reply (index, identity, "END", &reply);
}

//  One request to node index.
static void
s_handle (size_t index, zmsg_t *msg)
{
    zframe_t *identity = zmsg_pop (msg);
    zframe_t *command = zmsg_pop (msg);
    zframe_t *body = zmsg_pop (msg);
    if (command && body && zframe_streq (command, "REPLAY"))
        s_replay (index, identity, body);
    else
    if (command && body && zframe_streq (command, "PUBLISH"))
        s_publish (index, identity, body);
    else
    if (command && body && zframe_streq (command, "HELLO") && index == 0
    &&  fb_fake.hold_hellos) {
        zframe_destroy (&fb_fake.held_identity);
        zframe_destroy (&fb_fake.held_body);
        fb_fake.held_identity = identity;
        fb_fake.held_body = body;
        identity = body = NULL;
        fb_fake.hellos_held++;
    }
    else
    if (command && body && zframe_streq (command, "HELLO"))
        s_welcome_from (index, identity, body);
    zframe_destroy (&identity);
    zframe_destroy (&command);
    zframe_destroy (&body);
}

//  Answer what the agent asks on every live node's api for up to ms.
void
fb_serve (int ms)
{
    uint64_t deadline = tu_mono_ns () + (uint64_t) ms * 1000000ULL;
    while (tu_mono_ns () < deadline) {
        zmq_pollitem_t items [FB_NODES_MAX];
        size_t nodes [FB_NODES_MAX];
        int count = 0;
        for (size_t index = 0; index < fb_fake.node_count; index++)
            if (!fb_fake.nodes [index].dead && s_router (index)) {
                items [count] = (zmq_pollitem_t) { zsock_resolve (s_router (index)), 0,
                                                   ZMQ_POLLIN, 0 };
                nodes [count++] = index;
            }
        if (count == 0)
            zclock_sleep (5);
        if (count == 0 || zmq_poll (items, count, 5) <= 0)
            continue;
        for (int at = 0; at < count; at++)
            if (items [at].revents & ZMQ_POLLIN) {
                zmsg_t *msg = zmsg_recv (s_router (nodes [at]));
                if (msg)
                    s_handle (nodes [at], msg);
                zmsg_destroy (&msg);
            }
    }
}

//  Subscribe from the beginning and serve until the subscription is
//  live (heartbeats tell it where the live stream stands).
void
fb_go_live (void)
{
    cr_assert_eq (herald_agent_subscribe (fb_agent, "g", NULL,
                  (herald_start_t) { HERALD_START_BEGINNING, 0 }, au_record, fb_recorder),
                  HERALD_OK);
    herald_sub_status_t status;
    uint64_t deadline = tu_mono_ns () + FB_WAIT_MS * 1000000ULL;
    do {
        fb_heartbeat ();
        fb_serve (20);
        herald_agent_sub_status (fb_agent, "g", &status);
    } while (status.state != HERALD_SUB_LIVE && tu_mono_ns () < deadline);
    cr_assert_eq (status.state, HERALD_SUB_LIVE);
}

//  Stop holding HELLOs back, and answer the last one held.
void
fb_release_hellos (void)
{
    fb_fake.hold_hellos = false;
    if (fb_fake.held_identity && fb_fake.held_body)
        s_welcome (fb_fake.held_identity, fb_fake.held_body);
    zframe_destroy (&fb_fake.held_identity);
    zframe_destroy (&fb_fake.held_body);
}
