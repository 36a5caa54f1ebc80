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

void
fb_setup (const char *tag, const char *service)
{
    zsys_handler_set (NULL);
    memset (&fb_fake, 0, sizeof fb_fake);
    fb_fake.router = zsock_new (ZMQ_ROUTER);
    fb_fake.pub = zsock_new (ZMQ_PUB);
    cr_assert (fb_fake.router && fb_fake.pub);
    int api = zsock_bind (fb_fake.router, "tcp://127.0.0.1:*");
    int fanout = zsock_bind (fb_fake.pub, "tcp://127.0.0.1:*");
    cr_assert (api > 0 && fanout > 0);
    snprintf (fb_fake.api, sizeof fb_fake.api, "tcp://127.0.0.1:%d", api);
    snprintf (fb_fake.fanout, sizeof fb_fake.fanout, "tcp://127.0.0.1:%d", fanout);
    for (size_t index = 0; index <= LOG_MAX; index++)
        msgpack_sbuffer_init (&fb_fake.envelopes [index]);
    fb_state = tu_tmpdir_new (tag);
    fb_recorder = au_recorder_new ();
    herald_agent_options_t options;
    herald_agent_options_init (&options);
    options.api = fb_fake.api;
    options.fanout = fb_fake.fanout;
    options.state_dir = fb_state;
    options.on_error = fb_on_error;
    fb_errors = 0;
    fb_agent = herald_agent_new (service, &options);
    cr_assert_not_null (fb_agent, "%s", herald_agent_last_error ());
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
fb_fanout (uint64_t seq)
{
    const char *topic = "g.1";
    zmq_send (zsock_resolve (fb_fake.pub), topic, strlen (topic), ZMQ_SNDMORE);
    zmq_send (zsock_resolve (fb_fake.pub), fb_fake.envelopes [seq].data,
              fb_fake.envelopes [seq].size, 0);
}

void
fb_heartbeat (void)
{
    herald_msg_t beat;
    memset (&beat, 0, sizeof beat);
    beat.type = HERALD_MSG_HEARTBEAT;
    beat.heartbeat.head = fb_fake.head;
    beat.heartbeat.ts = 1;
    beat.heartbeat.node = (herald_str_t) { "fake", 4 };
    beat.heartbeat.epoch = 1;
    beat.heartbeat.lineage = fb_fake.lineage;
    msgpack_sbuffer body;
    msgpack_sbuffer_init (&body);
    cr_assert_eq (herald_msg_encode (&beat, &body), 0);
    zmq_send (zsock_resolve (fb_fake.pub), "$hb", 3, ZMQ_SNDMORE);
    zmq_send (zsock_resolve (fb_fake.pub), body.data, body.size, 0);
    msgpack_sbuffer_destroy (&body);
}

//  Answer a HELLO (its sender's identity and body) with WELCOME.
static void
s_welcome (zframe_t *identity, zframe_t *body)
{
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
    reply.welcome.head = fb_fake.head;
    reply.welcome.fanout = (herald_str_t) { fb_fake.fanout, strlen (fb_fake.fanout) };
    reply.welcome.lineage = fb_fake.lineage;
    reply.welcome.losses = fb_fake.losses;
    reply.welcome.loss_count = fb_fake.loss_count;
    msgpack_sbuffer out;
    msgpack_sbuffer_init (&out);
    cr_assert_eq (herald_msg_encode (&reply, &out), 0);
    void *router = zsock_resolve (fb_fake.router);
    zmq_send (router, zframe_data (identity), zframe_size (identity), ZMQ_SNDMORE);
    zmq_send (router, "WELCOME", 7, ZMQ_SNDMORE);
    zmq_send (router, out.data, out.size, 0);
    msgpack_sbuffer_destroy (&out);
    msgpack_zone_destroy (&zone);
    fb_fake.hellos++;
}

//  Answer what the agent asks on api for up to ms: REPLAY from the log
//  (the agent's requests have no prefixes in these tests), CANCEL ignored.
void
fb_serve (int ms)
{
    uint64_t deadline = tu_mono_ns () + (uint64_t) ms * 1000000ULL;
    while (tu_mono_ns () < deadline) {
        zmsg_t *msg = bu_recv (fb_fake.router, 5);
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
            fb_fake.replays++;
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
            void *router = zsock_resolve (fb_fake.router);
            if (fb_fake.refuse) {
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
            if (from <= fb_fake.head) {
                reply.type = HERALD_MSG_EVENTS;
                herald_msg_encode (&reply, &out);
                zmq_send (router, zframe_data (identity), zframe_size (identity), ZMQ_SNDMORE);
                zmq_send (router, "EVENTS", 6, ZMQ_SNDMORE);
                zmq_send (router, out.data, out.size, ZMQ_SNDMORE);
                for (uint64_t seq = from; seq <= fb_fake.head; seq++)
                    zmq_send (router, fb_fake.envelopes [seq].data, fb_fake.envelopes [seq].size,
                              seq < fb_fake.head? ZMQ_SNDMORE: 0);
            }
            out.size = 0;
            reply.type = HERALD_MSG_END;
            reply.end.last = fb_fake.head >= from? fb_fake.head: from - 1;
            reply.end.head = fb_fake.head;
            reply.end.reason = (herald_str_t) { "done", 4 };
            reply.end.lineage = fb_fake.lineage;
            herald_msg_encode (&reply, &out);
            zmq_send (router, zframe_data (identity), zframe_size (identity), ZMQ_SNDMORE);
            zmq_send (router, "END", 3, ZMQ_SNDMORE);
            zmq_send (router, out.data, out.size, 0);
            msgpack_sbuffer_destroy (&out);
        }
        else
        if (command && body && zframe_streq (command, "HELLO") && fb_fake.hold_hellos) {
            zframe_destroy (&fb_fake.held_identity);
            zframe_destroy (&fb_fake.held_body);
            fb_fake.held_identity = identity;
            fb_fake.held_body = body;
            identity = body = NULL;
            fb_fake.hellos_held++;
        }
        else
        if (command && body && zframe_streq (command, "HELLO"))
            s_welcome (identity, body);
        zframe_destroy (&identity);
        zframe_destroy (&command);
        zframe_destroy (&body);
        zmsg_destroy (&msg);
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
