/*  =========================================================================
    test_herald_member_refused - a group member facing a broker that
    answers GROUP wrongly

    A real heraldd never sends a malformed GROUP reply, so this test plays
    the broker: a ROUTER and a PUB on free ports, answering HELLO with a
    WELCOME and each GROUP with the body a test chooses.  Whatever the
    reply (not MessagePack, a key missing, a key of the wrong type, a
    partition outside the group, an ERROR), the member fails its
    subscription with an error that says what was wrong: the state is
    FAILED, on_error is called once, nothing crashes and the agent stops
    cleanly.  And an ERROR not_leader naming a node the member did not
    know (so no rotation could find it) takes the member there.
    =========================================================================
*/

#include <criterion/criterion.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <unistd.h>
#include <czmq.h>
#include <msgpack.h>

#include "brokerutil.h"
#include "herald.h"
#include "herald_msg.h"
#include "testutil.h"

#define WAIT_MS     10000

typedef struct {
    zsock_t *router;
    zsock_t *pub;
    char api [64];
    char fanout [64];
    //  What GROUP is answered with: command and body (for the request's rid)
    const char *group_command;      //  "GROUP" or "ERROR"
    void (*group_body) (uint64_t rid, msgpack_sbuffer *body);
    atomic_bool stop;
    atomic_int groups;              //  GROUP requests seen
    pthread_t thread;
    //  A second node, the leader node 0 may name (not_leader): it answers
    //  heartbeats with a good reply assigning nothing
    zsock_t *leader;
    char leader_api [64];
    atomic_int leader_groups;
} s_fake_t;

static s_fake_t s_fake;
static atomic_int s_errors;
static char s_error [512];
static herald_agent_t *s_agent;

static void
s_send3 (zsock_t *router, zframe_t *identity, const char *command, const void *body, size_t len)
{
    void *sock = zsock_resolve (router);
    zmq_send (sock, zframe_data (identity), zframe_size (identity), ZMQ_SNDMORE);
    zmq_send (sock, command, strlen (command), ZMQ_SNDMORE);
    zmq_send (sock, body, len, 0);
}

static uint64_t
s_rid (zframe_t *body)
{
    msgpack_unpacked unpacked;
    msgpack_unpacked_init (&unpacked);
    uint64_t rid = 0;
    if (msgpack_unpack_next (&unpacked, (const char *) zframe_data (body), zframe_size (body),
                             NULL) == MSGPACK_UNPACK_SUCCESS
    &&  unpacked.data.type == MSGPACK_OBJECT_MAP)
        for (uint32_t index = 0; index < unpacked.data.via.map.size; index++) {
            msgpack_object_kv *kv = &unpacked.data.via.map.ptr [index];
            if (kv->key.type == MSGPACK_OBJECT_STR && kv->key.via.str.size == 3
            &&  memcmp (kv->key.via.str.ptr, "rid", 3) == 0)
                rid = kv->val.via.u64;
        }
    msgpack_unpacked_destroy (&unpacked);
    return rid;
}

static void
s_good_heartbeat (uint64_t rid, msgpack_sbuffer *body);

static void *
s_fake_run (void *arg)
{
    (void) arg;
    msgpack_sbuffer buffer;
    msgpack_sbuffer_init (&buffer);
    while (!atomic_load (&s_fake.stop)) {
        zmsg_t *msg = NULL;
        zmq_pollitem_t items [2] = {
            { zsock_resolve (s_fake.router), 0, ZMQ_POLLIN, 0 },
            { s_fake.leader? zsock_resolve (s_fake.leader): NULL, 0, ZMQ_POLLIN, 0 } };
        zsock_t *router = NULL;
        if (zmq_poll (items, s_fake.leader? 2: 1, 20) > 0)
            router = (items [0].revents & ZMQ_POLLIN)? s_fake.router: s_fake.leader;
        if (router)
            msg = zmsg_recv (router);
        if (!msg)
            continue;
        zframe_t *identity = zmsg_pop (msg);
        zframe_t *command = zmsg_pop (msg);
        zframe_t *body = zmsg_pop (msg);
        if (identity && command && body) {
            uint64_t rid = s_rid (body);
            if (zframe_streq (command, "HELLO")) {
                herald_msg_t welcome;
                memset (&welcome, 0, sizeof welcome);
                welcome.type = HERALD_MSG_WELCOME;
                welcome.has_rid = true;
                welcome.rid = rid;
                welcome.welcome.proto = 1;
                welcome.welcome.node = (herald_str_t) { "fake", 4 };
                welcome.welcome.fanout = (herald_str_t) { s_fake.fanout, strlen (s_fake.fanout) };
                buffer.size = 0;
                herald_msg_encode (&welcome, &buffer);
                s_send3 (router, identity, "WELCOME", buffer.data, buffer.size);
            }
            else
            if (zframe_streq (command, "GROUP") && router == s_fake.leader) {
                atomic_fetch_add (&s_fake.leader_groups, 1);
                buffer.size = 0;
                s_good_heartbeat (rid, &buffer);
                s_send3 (router, identity, "GROUP", buffer.data, buffer.size);
            }
            else
            if (zframe_streq (command, "GROUP")) {
                atomic_fetch_add (&s_fake.groups, 1);
                buffer.size = 0;
                s_fake.group_body (rid, &buffer);
                s_send3 (router, identity, s_fake.group_command, buffer.data, buffer.size);
            }
            //  REPLAY, STATUS, ...: no answer (the member never gets that far)
        }
        zframe_destroy (&identity);
        zframe_destroy (&command);
        zframe_destroy (&body);
        zmsg_destroy (&msg);
    }
    msgpack_sbuffer_destroy (&buffer);
    return NULL;
}

static void
s_on_error (const char *subscription, int code, const char *message, void *arg)
{
    (void) subscription;
    (void) code;
    (void) arg;
    snprintf (s_error, sizeof s_error, "%s", message);
    atomic_fetch_add (&s_errors, 1);
}

static void
s_setup (void)
{
    memset (&s_fake, 0, sizeof s_fake);
    atomic_store (&s_errors, 0);
    s_error [0] = 0;
    int api = bu_free_port (), fanout = bu_free_port ();
    cr_assert (api > 0 && fanout > 0);
    snprintf (s_fake.api, sizeof s_fake.api, "tcp://127.0.0.1:%d", api);
    snprintf (s_fake.fanout, sizeof s_fake.fanout, "tcp://127.0.0.1:%d", fanout);
    s_fake.router = zsock_new (ZMQ_ROUTER);
    s_fake.pub = zsock_new (ZMQ_PUB);
    cr_assert (s_fake.router && s_fake.pub);
    zsock_set_linger (s_fake.router, 0);
    zsock_set_linger (s_fake.pub, 0);
    cr_assert_geq (zsock_bind (s_fake.router, "%s", s_fake.api), 0);
    cr_assert_geq (zsock_bind (s_fake.pub, "%s", s_fake.fanout), 0);
}

static void
s_teardown (void)
{
    herald_agent_destroy (&s_agent);
    if (s_fake.thread) {
        atomic_store (&s_fake.stop, true);
        pthread_join (s_fake.thread, NULL);
    }
    zsock_destroy (&s_fake.router);
    zsock_destroy (&s_fake.leader);
    zsock_destroy (&s_fake.pub);
}

TestSuite (herald_member_refused, .init = s_setup, .fini = s_teardown, .timeout = 60);

static int
s_handler (const herald_delivery_t *event, void *arg)
{
    (void) event;
    (void) arg;
    return HERALD_OK;
}

//  Join a group on the fake answering GROUP with command/body; wait for
//  the subscription to fail, and return its status.
static herald_sub_status_t
s_run (const char *command, void (*body) (uint64_t rid, msgpack_sbuffer *body))
{
    s_fake.group_command = command;
    s_fake.group_body = body;
    cr_assert_eq (pthread_create (&s_fake.thread, NULL, s_fake_run, NULL), 0);
    herald_agent_options_t options;
    herald_agent_options_init (&options);
    options.api = s_fake.api;
    options.fanout = s_fake.fanout;
    options.timeout_ms = 2000;
    options.on_error = s_on_error;
    s_agent = herald_agent_new ("refused", &options);
    cr_assert_not_null (s_agent, "%s", herald_agent_last_error ());
    herald_group_options_t group;
    herald_group_options_init (&group);
    cr_assert_eq (herald_agent_subscribe_group (s_agent, "billing", &group, s_handler, NULL),
                  HERALD_OK, "%s", herald_agent_last_error ());
    herald_sub_status_t status;
    uint64_t deadline = tu_mono_ns () + WAIT_MS * 1000000ULL;
    do {
        cr_assert_eq (herald_agent_sub_status (s_agent, "billing", &status), HERALD_OK);
        if (status.state == HERALD_SUB_FAILED && atomic_load (&s_errors))
            break;
        usleep (5000);
    } while (tu_mono_ns () < deadline);
    cr_assert_eq (status.state, HERALD_SUB_FAILED, "state %d", status.state);
    cr_assert_eq (atomic_load (&s_errors), 1, "on_error called %d times",
                  atomic_load (&s_errors));
    cr_assert_geq (atomic_load (&s_fake.groups), 1);
    herald_group_status_t group_status;
    cr_assert_eq (herald_agent_group_status (s_agent, "billing", &group_status), HERALD_OK);
    cr_assert_not (group_status.joined);
    cr_assert_eq (group_status.owned, 0);
    //  The agent stops cleanly, bounded
    herald_agent_destroy (&s_agent);
    return status;
}

//  A reply body built from msgpack key/value pairs (heartbeat's good keys
//  with one changed or left out).
static void
s_heartbeat_body (msgpack_sbuffer *buffer, uint64_t rid, const char *drop, const char *as_str,
                  uint64_t assigned_partition)
{
    msgpack_packer pk;
    msgpack_packer_init (&pk, buffer, msgpack_sbuffer_write);
    const char *keys [] = { "rid", "op", "generation", "partitions", "session_ms",
                            "heartbeat_ms", "head", "assigned" };
    size_t pairs = 0;
    for (size_t index = 0; index < 8; index++)
        pairs += !drop || strcmp (keys [index], drop) != 0;
    msgpack_pack_map (&pk, pairs);
    for (size_t index = 0; index < 8; index++) {
        const char *key = keys [index];
        if (drop && strcmp (key, drop) == 0)
            continue;
        msgpack_pack_str (&pk, strlen (key));
        msgpack_pack_str_body (&pk, key, strlen (key));
        if (as_str && strcmp (key, as_str) == 0) {
            msgpack_pack_str (&pk, 2);
            msgpack_pack_str_body (&pk, "42", 2);
        }
        else
        if (strcmp (key, "op") == 0) {
            msgpack_pack_str (&pk, 9);
            msgpack_pack_str_body (&pk, "heartbeat", 9);
        }
        else
        if (strcmp (key, "rid") == 0)
            msgpack_pack_uint64 (&pk, rid);
        else
        if (strcmp (key, "assigned") == 0) {
            msgpack_pack_array (&pk, 1);
            msgpack_pack_map (&pk, 4);
            const char *names [] = { "partition", "epoch", "committed", "delivered" };
            uint64_t values [] = { assigned_partition, 1, 0, 0 };
            for (size_t at = 0; at < 4; at++) {
                msgpack_pack_str (&pk, strlen (names [at]));
                msgpack_pack_str_body (&pk, names [at], strlen (names [at]));
                msgpack_pack_uint64 (&pk, values [at]);
            }
        }
        else
        if (strcmp (key, "partitions") == 0)
            msgpack_pack_uint64 (&pk, 32);
        else
        if (strcmp (key, "session_ms") == 0)
            msgpack_pack_uint64 (&pk, 3000);
        else
        if (strcmp (key, "heartbeat_ms") == 0)
            msgpack_pack_uint64 (&pk, 500);
        else
            msgpack_pack_uint64 (&pk, 7);
    }
}

static void
s_garbage (uint64_t rid, msgpack_sbuffer *body)
{
    (void) rid;
    msgpack_sbuffer_write (body, "\xc1\xc1\xc1", 3);
}

static void
s_no_assigned (uint64_t rid, msgpack_sbuffer *body)
{
    s_heartbeat_body (body, rid, "assigned", NULL, 3);
}

static void
s_partitions_str (uint64_t rid, msgpack_sbuffer *body)
{
    s_heartbeat_body (body, rid, NULL, "partitions", 3);
}

static void
s_partition_out (uint64_t rid, msgpack_sbuffer *body)
{
    s_heartbeat_body (body, rid, NULL, NULL, 40);
}

static void
s_no_heartbeat_ms (uint64_t rid, msgpack_sbuffer *body)
{
    s_heartbeat_body (body, rid, "heartbeat_ms", NULL, 3);
}

static void
s_bad_request (uint64_t rid, msgpack_sbuffer *body)
{
    herald_error_t err;
    memset (&err, 0, sizeof err);
    err.has_rid = true;
    err.rid = rid;
    herald_error_set (&err, HERALD_ERR_BAD_REQUEST, "prefixes",
                      "group 'billing' has prefixes [\"stock.\"]");
    herald_msg_encode_error (&err, body);
}

Test (herald_member_refused, not_messagepack)
{
    herald_sub_status_t status = s_run ("GROUP", s_garbage);
    cr_assert (strstr (status.message, "bad reply") && strstr (status.message, "not MessagePack"),
               "%s", status.message);
    cr_assert (strstr (s_error, "billing"), "%s", s_error);
}

Test (herald_member_refused, assigned_missing)
{
    herald_sub_status_t status = s_run ("GROUP", s_no_assigned);
    cr_assert (strstr (status.message, "without an `assigned`"), "%s", status.message);
}

Test (herald_member_refused, partitions_a_string)
{
    herald_sub_status_t status = s_run ("GROUP", s_partitions_str);
    cr_assert (strstr (status.message, "`partitions` is not a uint"), "%s", status.message);
}

Test (herald_member_refused, partition_outside_the_group)
{
    herald_sub_status_t status = s_run ("GROUP", s_partition_out);
    cr_assert (strstr (status.message, "partition 40 of 32"), "%s", status.message);
}

Test (herald_member_refused, heartbeat_ms_missing)
{
    herald_sub_status_t status = s_run ("GROUP", s_no_heartbeat_ms);
    cr_assert (strstr (status.message, "without `heartbeat_ms`"), "%s", status.message);
}

Test (herald_member_refused, error_bad_request)
{
    herald_sub_status_t status = s_run ("ERROR", s_bad_request);
    cr_assert_eq (status.error, HERALD_ERR_BAD_REQUEST);
    cr_assert (strstr (status.message, "bad_request") && strstr (status.message, "stock."),
               "%s", status.message);
}

//  ---------------------------------------------------------------------
//  not_leader: node 0 names a leader the member knew nothing of (its api
//  list and WELCOME name node 0 alone, so no rotation could find it)

static void
s_good_heartbeat (uint64_t rid, msgpack_sbuffer *body)
{
    msgpack_packer pk;
    msgpack_packer_init (&pk, body, msgpack_sbuffer_write);
    msgpack_pack_map (&pk, 8);
    const char *keys [] = { "rid", "generation", "partitions", "session_ms", "heartbeat_ms",
                            "head" };
    uint64_t values [] = { rid, 1, 4, 3000, 500, 0 };
    for (size_t index = 0; index < 6; index++) {
        msgpack_pack_str (&pk, strlen (keys [index]));
        msgpack_pack_str_body (&pk, keys [index], strlen (keys [index]));
        msgpack_pack_uint64 (&pk, values [index]);
    }
    msgpack_pack_str (&pk, 2);
    msgpack_pack_str_body (&pk, "op", 2);
    msgpack_pack_str (&pk, 9);
    msgpack_pack_str_body (&pk, "heartbeat", 9);
    msgpack_pack_str (&pk, 8);
    msgpack_pack_str_body (&pk, "assigned", 8);
    msgpack_pack_array (&pk, 0);
}

static void
s_not_leader (uint64_t rid, msgpack_sbuffer *body)
{
    herald_msg_t msg;
    memset (&msg, 0, sizeof msg);
    msg.type = HERALD_MSG_ERROR;
    msg.has_rid = true;
    msg.rid = rid;
    msg.error.code = HERALD_ERR_NOT_LEADER;
    msg.error.message = (herald_str_t) { "this node does not lead the cluster", 35 };
    msg.error.leader = (herald_str_t) { s_fake.leader_api, strlen (s_fake.leader_api) };
    herald_msg_encode (&msg, body);
}

Test (herald_member_refused, follows_not_leader_to_a_node_it_did_not_know)
{
    int port = bu_free_port ();
    cr_assert_gt (port, 0);
    snprintf (s_fake.leader_api, sizeof s_fake.leader_api, "tcp://127.0.0.1:%d", port);
    s_fake.leader = zsock_new (ZMQ_ROUTER);
    cr_assert_not_null (s_fake.leader);
    zsock_set_linger (s_fake.leader, 0);
    cr_assert_geq (zsock_bind (s_fake.leader, "%s", s_fake.leader_api), 0);
    s_fake.group_command = "ERROR";
    s_fake.group_body = s_not_leader;
    cr_assert_eq (pthread_create (&s_fake.thread, NULL, s_fake_run, NULL), 0);
    herald_agent_options_t options;
    herald_agent_options_init (&options);
    options.api = s_fake.api;
    options.fanout = s_fake.fanout;
    options.timeout_ms = 2000;
    options.on_error = s_on_error;
    s_agent = herald_agent_new ("refused", &options);
    cr_assert_not_null (s_agent, "%s", herald_agent_last_error ());
    herald_group_options_t group;
    herald_group_options_init (&group);
    cr_assert_eq (herald_agent_subscribe_group (s_agent, "billing", &group, s_handler, NULL),
                  HERALD_OK, "%s", herald_agent_last_error ());
    herald_group_status_t status;
    uint64_t deadline = tu_mono_ns () + WAIT_MS * 1000000ULL;
    do {
        cr_assert_eq (herald_agent_group_status (s_agent, "billing", &status), HERALD_OK);
        if (status.joined)
            break;
        usleep (5000);
    } while (tu_mono_ns () < deadline);
    cr_assert (status.joined, "the member never joined at the leader");
    cr_assert_eq (status.partitions, 4);
    cr_assert_geq (atomic_load (&s_fake.groups), 1, "node 0 was never asked");
    cr_assert_geq (atomic_load (&s_fake.leader_groups), 1);
    cr_assert_eq (atomic_load (&s_errors), 0, "on_error: %s", s_error);
}
