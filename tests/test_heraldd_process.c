/*  =========================================================================
    test_heraldd_process - the broker as a process: STATUS and HELLO,
    heartbeats, SIGTERM, restarts, the data dir's lock, kill -9

    What a supervisor and a client see of heraldd's life: it answers STATUS
    (with every documented counter) and HELLO, logs each request at level
    debug and none at info, sends `$hb` with its head (never ahead of what
    fanout has sent), node and an epoch that grows on a restart, exits 0 on
    SIGTERM, refuses a data dir another broker holds, and after kill -9 in
    a pipelined publish storm has lost no ACKed event.
    Each test starts the real heraldd (tests/brokertest.c) on ports chosen
    at run time with a fresh data directory, and stops it.
    =========================================================================
*/

#include <criterion/criterion.h>
#include <criterion/logging.h>
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "brokertest.h"

TestSuite (heraldd_process, .init = bt_setup, .fini = bt_teardown, .timeout = 90);

//  ---------------------------------------------------------------------
//  STATUS and HELLO

Test (heraldd_process, status_reports_a_standalone_broker)
{
    bt_start ();
    zsock_t *client = bt_client ();
    bu_reply_t reply;
    bt_status (client, 42, &reply);
    cr_assert_eq (reply.body.rid, 42);
    cr_assert_eq (reply.body.status.head, 0);
    cr_assert_eq (reply.body.status.topics, 0);
    cr_assert_eq (reply.body.status.events, 0);
    cr_assert (bu_str_eq (reply.body.status.role, "standalone"), "role %.*s",
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
    bu_pack_hello (&sbuf, rid, proto, "test-service");
    cr_assert_eq (bu_send_sbuf (sock, "HELLO", &sbuf), 0);
    msgpack_sbuffer_destroy (&sbuf);
}

Test (heraldd_process, hello_proto_1_gets_welcome)
{
    bt_start ();
    zsock_t *client = bt_client ();
    bt_publish_many (client, "orders.1", 1, 1);
    bu_reply_t reply;
    bt_status (client, 2, &reply);
    char node [256];
    snprintf (node, sizeof node, "%.*s", (int) reply.body.status.node.len,
              reply.body.status.node.ptr);
    bu_reply_fini (&reply);

    s_send_hello (client, 3, 1);
    bt_recv (client, &reply);
    cr_assert_eq (reply.type, HERALD_MSG_WELCOME, "expected WELCOME, got %s", reply.command);
    cr_assert_eq (reply.body.rid, 3);
    cr_assert_eq (reply.body.welcome.proto, 1);
    cr_assert (bu_str_eq (reply.body.welcome.node, node), "WELCOME node differs from STATUS");
    cr_assert_eq (reply.body.welcome.head, 1);
    cr_assert (bu_str_eq (reply.body.welcome.fanout, bt_broker->fanout), "fanout %.*s, expected %s",
               (int) reply.body.welcome.fanout.len, reply.body.welcome.fanout.ptr,
               bt_broker->fanout);
    cr_assert_eq (reply.body.welcome.cluster_count, 1);
    cr_assert (bu_str_eq (reply.body.welcome.cluster [0], bt_broker->api), "cluster[0] %.*s, "
               "expected %s", (int) reply.body.welcome.cluster [0].len,
               reply.body.welcome.cluster [0].ptr, bt_broker->api);
    bu_reply_fini (&reply);
}

Test (heraldd_process, hello_proto_2_is_unsupported)
{
    bt_start ();
    zsock_t *client = bt_client ();
    s_send_hello (client, 5, 2);
    bt_expect_error (client, HERALD_ERR_UNSUPPORTED, true, 5);
}

//  Every counter docs/broker.md lists, RocksDB's memory last, each a uint
//  (checked on the raw body: the decoder would drop a key of another type).
Test (heraldd_process, status_carries_every_documented_counter_as_a_uint)
{
    static const char *names [] = {
        "published", "duplicates", "conflicts", "refused", "dropped", "streams",
        "streams_served", "queued", "epoch", "disk_bytes", "durability_sync",
        "memtable_bytes", "block_cache_bytes", "table_readers_bytes", "streams_abandoned",
        "idle_flushes"
    };
    enum { NAMES = sizeof names / sizeof names [0] };
    bt_start ();
    zsock_t *client = bt_client ();
    bt_publish_many (client, "status.1", 3, 1);
    bt_send_rid (client, "STATUS", 77);
    zmsg_t *msg = bu_recv (client, BT_WAIT_MS);
    cr_assert_not_null (msg, "no STATUS reply within %d ms", BT_WAIT_MS);
    zframe_t *command = zmsg_first (msg);
    zframe_t *body = zmsg_next (msg);
    bool is_status = zframe_streq (command, "STATUS") && body;
    msgpack_unpacked unpacked;
    msgpack_unpacked_init (&unpacked);
    bool unpacked_ok = is_status && msgpack_unpack_next (&unpacked,
        (const char *) zframe_data (body), zframe_size (body), NULL) == MSGPACK_UNPACK_SUCCESS
        && unpacked.data.type == MSGPACK_OBJECT_MAP;
    uint64_t values [NAMES];
    int found [NAMES] = { 0 };
    msgpack_object_type types [NAMES];
    for (size_t index = 0; unpacked_ok && index < unpacked.data.via.map.size; index++) {
        const msgpack_object_kv *pair = &unpacked.data.via.map.ptr [index];
        if (pair->key.type != MSGPACK_OBJECT_STR)
            continue;
        for (size_t which = 0; which < NAMES; which++)
            if (pair->key.via.str.size == strlen (names [which])
            &&  memcmp (pair->key.via.str.ptr, names [which], pair->key.via.str.size) == 0) {
                found [which]++;
                types [which] = pair->val.type;
                values [which] = pair->val.via.u64;
            }
    }
    msgpack_unpacked_destroy (&unpacked);
    zmsg_destroy (&msg);
    cr_assert (is_status, "expected a STATUS reply with a body");
    cr_assert (unpacked_ok, "the STATUS body is not a MessagePack map");
    for (size_t which = 0; which < NAMES; which++) {
        cr_assert_eq (found [which], 1, "STATUS has %d '%s' keys, expected 1", found [which],
                      names [which]);
        cr_assert_eq (types [which], MSGPACK_OBJECT_POSITIVE_INTEGER,
                      "STATUS '%s' is msgpack type %d, not a uint", names [which],
                      types [which]);
    }
    cr_assert_eq (values [0], 3, "published %" PRIu64, values [0]);
    cr_assert_gt (values [11], 0, "memtable_bytes 0 with three events in the memtable");
    cr_assert_leq (values [12], 128ULL << 20, "block_cache_bytes %" PRIu64 " above its cap",
                   values [12]);

    //  The decoded reply gives the same figures as extras
    bu_reply_t reply;
    bt_status (client, 78, &reply);
    size_t extras = 0;
    for (size_t index = 0; index < reply.body.status.extra_count; index++)
        for (size_t which = 11; which < 14; which++)      //  the memory figures
            if (bu_str_eq (reply.body.status.extra_keys [index], names [which]))
                extras++;
    bu_reply_fini (&reply);
    cr_assert_eq (extras, 3, "the decoder found %zu of RocksDB's three memory figures", extras);
}

//  ---------------------------------------------------------------------
//  Logging

//  Start bt_broker with extra flags, send it a STATUS (rid 4242) and a
//  PUBLISH (rid 4243), stop it cleanly and read its log into a kept buffer.
static char *
s_log_of_a_session (const char *const *extra)
{
    bt_start_with (extra);
    zsock_t *client = bt_client ();
    bu_reply_t reply;
    bt_status (client, 4242, &reply);
    bu_reply_fini (&reply);
    bu_event_t event;
    bu_event_init (&event, "log.1", "logged");
    bt_publish (client, 4243, &event, 1, &reply);
    bu_reply_fini (&reply);
    bt_drop (&client);
    bt_stop_clean ();
    enum { LOG_MAX = 1 << 20 };
    char *log = bt_calloc (LOG_MAX, 1);
    bu_broker_log (bt_broker, log, LOG_MAX);
    return log;
}

Test (heraldd_process, log_level_debug_logs_each_request_and_commit)
{
    const char *const extra [] = { "--log-level", "debug", NULL };
    char *log = s_log_of_a_session (extra);
    cr_assert_not_null (strstr (log, "STATUS rid 4242"), "no STATUS line in the log:\n%.4000s",
                        log);
    cr_assert_not_null (strstr (log, "PUBLISH rid 4243"), "no PUBLISH line in the log:\n%.4000s",
                        log);
    cr_assert_not_null (strstr (log, "commit:"), "no commit line in the log:\n%.4000s", log);
}

Test (heraldd_process, log_level_info_logs_no_request)
{
    char *log = s_log_of_a_session (NULL);
    cr_assert_gt (strlen (log), 0, "the broker logged nothing at all (not even its start)");
    cr_assert_null (strstr (log, "STATUS rid"), "a STATUS line at level info:\n%.4000s", log);
    cr_assert_null (strstr (log, "PUBLISH rid"), "a PUBLISH line at level info:\n%.4000s", log);
    cr_assert_null (strstr (log, "commit:"), "a commit line at level info:\n%.4000s", log);
}

//  ---------------------------------------------------------------------
//  Heartbeats on fanout

Test (heraldd_process, heartbeat_carries_head_and_node)
{
    const char *const prefixes [] = { "$hb", NULL };
    herald_msg_t hb;
    char node [256];
    zsock_t *sub = bt_start_heartbeats (prefixes, &hb, node, sizeof node);
    cr_assert_gt (strlen (node), 0);

    zsock_t *client = bt_client ();
    bt_publish_many (client, "hb.1", 3, 1);
    bu_reply_t reply;
    bt_status (client, 10, &reply);
    uint64_t head = reply.body.status.head;
    cr_assert_eq (head, 3);
    cr_assert (bu_str_eq (reply.body.status.node, node), "STATUS node %.*s, $hb node %s",
               (int) reply.body.status.node.len, reply.body.status.node.ptr, node);
    bu_reply_fini (&reply);

    //  Heartbeats sent before the ACKs may show less; one soon shows head
    uint64_t epoch = hb.heartbeat.epoch, previous_ts = hb.heartbeat.ts;
    bool seen = false;
    for (size_t index = 0; index < 100 && !seen; index++) {
        char hb_node [256];
        bt_wait_heartbeat (sub, &hb, hb_node, sizeof hb_node);
        cr_assert_str_eq (hb_node, node);
        cr_assert_leq (hb.heartbeat.head, head);
        cr_assert_eq (hb.heartbeat.epoch, epoch, "epoch changed without a restart");
        cr_assert_geq (hb.heartbeat.ts, previous_ts);
        previous_ts = hb.heartbeat.ts;
        seen = hb.heartbeat.head == head;
    }
    cr_assert (seen, "no $hb showed head %" PRIu64, head);
}

Test (heraldd_process, heartbeat_epoch_grows_after_restart)
{
    const char *const prefixes [] = { "$hb", NULL };
    herald_msg_t hb;
    char node1 [256], node2 [256];
    zsock_t *sub = bt_start_heartbeats (prefixes, &hb, node1, sizeof node1);
    uint64_t epoch1 = hb.heartbeat.epoch;
    bt_drop (&sub);
    bt_stop_clean ();

    bt_start ();
    sub = bt_subscriber (prefixes);
    bt_wait_heartbeat (sub, &hb, node2, sizeof node2);
    cr_assert_gt (hb.heartbeat.epoch, epoch1, "epoch %" PRIu64 " after a restart from %" PRIu64,
                  hb.heartbeat.epoch, epoch1);
    cr_assert_str_eq (node2, node1, "node changed across a restart");
}

//  $hb's head is what fanout has already sent, never only what the store
//  holds: a subscriber that compares a heartbeat's head with what it
//  received must never see a gap that is not there.  One SUB takes
//  everything ("" matches $hb too) while three clients pipeline PUBLISH
//  batches and heartbeats come every 20 ms.  Payloads are small, so the
//  whole run fits under the fanout's high-water mark: nothing is dropped.

#define HB_CLIENTS      3
#define HB_REQUESTS     20          //  per client
#define HB_BATCH        50
#define HB_WINDOW       4           //  requests in flight per client
#define HB_EVENTS       (HB_CLIENTS * HB_REQUESTS * HB_BATCH)

typedef struct {
    bool seen [HB_EVENTS + 1];      //  seqs received on the SUB
    uint64_t contiguous;            //  every seq 1..contiguous received
    uint64_t last_seq;              //  the last event received
    size_t events;
    size_t heartbeats;
    size_t heartbeats_mid;          //  with 0 < head < HB_EVENTS: during the load
    uint64_t hb_head;               //  the last heartbeat's head
} s_hb_fanout_t;

//  Take one message from the SUB: an event must come after the previous
//  one in seq order; a $hb's head must be no more than what arrived.
static void
s_hb_take (zsock_t *sub, s_hb_fanout_t *fanout)
{
    zmsg_t *msg = bu_recv (sub, 0);
    cr_assert_not_null (msg, "SUB polled readable but gave no message");
    cr_assert_eq (zmsg_size (msg), 2, "fanout message of %zu frames", zmsg_size (msg));
    zframe_t *topic = zmsg_first (msg);
    zframe_t *body = zmsg_next (msg);
    if (zframe_streq (topic, "$hb")) {
        herald_msg_t hb;
        msgpack_zone zone;
        msgpack_zone_init (&zone, 1024);
        herald_error_t err;
        herald_err rc = herald_msg_decode (&hb, HERALD_MSG_HEARTBEAT, zframe_data (body),
                                           zframe_size (body), NULL, &zone, &err);
        msgpack_zone_destroy (&zone);
        zmsg_destroy (&msg);
        cr_assert_eq (rc, HERALD_OK, "$hb does not decode: %s: %s", err.field, err.message);
        cr_assert_leq (hb.heartbeat.head, fanout->contiguous, "$hb %zu says head %" PRIu64
                       " but only seq 1..%" PRIu64 " had come on fanout before it",
                       fanout->heartbeats + 1, hb.heartbeat.head, fanout->contiguous);
        cr_assert_geq (hb.heartbeat.head, fanout->hb_head, "$hb head went back");
        fanout->hb_head = hb.heartbeat.head;
        fanout->heartbeats++;
        if (hb.heartbeat.head > 0 && hb.heartbeat.head < HB_EVENTS)
            fanout->heartbeats_mid++;
        return;
    }
    tu_decoded_t decoded;
    bt_decode (body, &decoded);
    uint64_t seq = decoded.event.seq;
    bool topic_ok = zframe_size (topic) == decoded.event.topic_len
                 && memcmp (zframe_data (topic), decoded.event.topic,
                            decoded.event.topic_len) == 0;
    tu_decoded_fini (&decoded);
    zmsg_destroy (&msg);
    cr_assert (topic_ok, "seq %" PRIu64 ": frame 0 is not the event's topic", seq);
    cr_assert (seq >= 1 && seq <= HB_EVENTS, "fanout sent seq %" PRIu64, seq);
    cr_assert_not (fanout->seen [seq], "fanout sent seq %" PRIu64 " twice", seq);
    cr_assert_gt (seq, fanout->last_seq, "fanout sent seq %" PRIu64 " after seq %" PRIu64,
                  seq, fanout->last_seq);
    fanout->seen [seq] = true;
    fanout->last_seq = seq;
    fanout->events++;
    while (fanout->contiguous < HB_EVENTS && fanout->seen [fanout->contiguous + 1])
        fanout->contiguous++;
}

static void
s_hb_send (zsock_t *client, size_t which, size_t request)
{
    bu_event_t events [HB_BATCH];
    char topic [32];
    snprintf (topic, sizeof topic, "hb.c%zu.t%zu", which, request % 4);
    for (size_t index = 0; index < HB_BATCH; index++)
        bu_event_init (&events [index], topic, "e");
    bt_send_publish (client, request + 1, events, HB_BATCH);
}

static void
s_hb_test (const char *heartbeat_ms, const char *durability)
{
    const char *const extra [] = {
        "--heartbeat-ms", heartbeat_ms, "--durability", durability, NULL
    };
    bt_start_with (extra);
    const char *const everything [] = { "", NULL };
    zsock_t *sub = bt_subscriber (everything);
    herald_msg_t hb;
    char node [256];
    bt_wait_heartbeat (sub, &hb, node, sizeof node);    //  the subscription is live
    cr_assert_eq (hb.heartbeat.head, 0);

    s_hb_fanout_t *fanout = bt_calloc (1, sizeof *fanout);
    zsock_t *clients [HB_CLIENTS];
    size_t sent [HB_CLIENTS] = { 0 }, acked [HB_CLIENTS] = { 0 };
    size_t acked_all = 0;
    for (size_t which = 0; which < HB_CLIENTS; which++)
        clients [which] = bt_client ();

    //  Until every event is ACKed and has come on fanout, and a heartbeat
    //  has shown the final head
    uint64_t deadline = tu_mono_ns () + 30ULL * 1000000000ULL;
    while (acked_all < HB_CLIENTS * HB_REQUESTS || fanout->contiguous < HB_EVENTS
       ||  fanout->hb_head < HB_EVENTS) {
        cr_assert_lt (tu_mono_ns (), deadline, "after 30 s: %zu requests ACKed, %zu events "
                      "and %zu heartbeats (last head %" PRIu64 ") on fanout", acked_all,
                      fanout->events, fanout->heartbeats, fanout->hb_head);
        zmq_pollitem_t items [HB_CLIENTS + 1];
        for (size_t which = 0; which < HB_CLIENTS; which++) {
            while (sent [which] < HB_REQUESTS && sent [which] - acked [which] < HB_WINDOW)
                s_hb_send (clients [which], which, sent [which]++);
            items [which] = (zmq_pollitem_t) { zsock_resolve (clients [which]), 0, ZMQ_POLLIN, 0 };
        }
        items [HB_CLIENTS] = (zmq_pollitem_t) { zsock_resolve (sub), 0, ZMQ_POLLIN, 0 };
        int rc = zmq_poll (items, HB_CLIENTS + 1, BT_WAIT_MS);
        cr_assert_geq (rc, 0, "zmq_poll: %s", zmq_strerror (errno));
        cr_assert_gt (rc, 0, "neither an ACK nor fanout within %d ms (heartbeats every %s)",
                      BT_WAIT_MS, heartbeat_ms);
        if (items [HB_CLIENTS].revents & ZMQ_POLLIN)
            s_hb_take (sub, fanout);
        for (size_t which = 0; which < HB_CLIENTS; which++) {
            if (!(items [which].revents & ZMQ_POLLIN))
                continue;
            bu_reply_t reply;
            bt_recv (clients [which], &reply);
            bt_check_ack (&reply, acked [which] + 1, HB_BATCH);
            bu_reply_fini (&reply);
            acked [which]++;
            acked_all++;
        }
    }
    cr_assert_eq (fanout->events, HB_EVENTS, "fanout sent %zu events, %d were stored",
                  fanout->events, HB_EVENTS);
    cr_assert_eq (fanout->last_seq, HB_EVENTS);
    cr_assert_eq (bt_head (clients [0]), HB_EVENTS);
    cr_log_info ("heartbeat vs fanout (every %s ms, %s): %zu heartbeats, %zu of them during "
                 "the load", heartbeat_ms, durability, fanout->heartbeats,
                 fanout->heartbeats_mid);
}

Test (heraldd_process, heartbeat_head_is_never_ahead_of_fanout)
{
    s_hb_test ("20", "sync");
}

//  The same with a heartbeat every millisecond and fast async commits:
//  many heartbeats fall while a commit is being written and fanned out.
Test (heraldd_process, heartbeat_head_is_never_ahead_of_fanout_every_ms)
{
    s_hb_test ("1", "async");
}

//  ---------------------------------------------------------------------
//  Signals, restarts and the data dir's lock

Test (heraldd_process, sigterm_exits_zero)
{
    bt_start ();
    zsock_t *client = bt_client ();
    bt_publish_many (client, "life.1", 3, 1);
    bt_stop_clean ();
}

Test (heraldd_process, restart_on_the_same_dir_keeps_head)
{
    bt_start ();
    zsock_t *client = bt_client ();
    bt_publish_many (client, "life.1", 5, 1);
    bt_drop (&client);
    bt_stop_clean ();

    bt_start ();
    client = bt_client ();
    bu_reply_t reply;
    bt_status (client, 1, &reply);
    cr_assert_eq (reply.body.status.head, 5, "head %" PRIu64 " after a restart",
                  reply.body.status.head);
    cr_assert_eq (reply.body.status.events, 5);
    cr_assert_eq (reply.body.status.topics, 1);
    bu_reply_fini (&reply);
    bu_event_t event;
    bu_event_init (&event, "life.1", "after");
    bt_publish (client, 2, &event, 1, &reply);
    cr_assert_eq (reply.body.ack.seq [0], 6);
    cr_assert_eq (reply.body.ack.ver [0], 6);
    bu_reply_fini (&reply);
}

Test (heraldd_process, second_broker_on_the_same_dir_exits_nonzero)
{
    bt_start ();
    bt_second = bu_broker_new ("heraldd2", NULL);
    cr_assert_not_null (bt_second);
    free (bt_second->data_dir);
    bt_second->data_dir = strdup (bt_broker->data_dir);
    cr_assert_not_null (bt_second->data_dir);
    cr_assert_eq (bu_broker_spawn (bt_second), 0);
    int rc = bu_broker_wait (bt_second, 5000);
    cr_assert_eq (rc, 0, "a second heraldd on the same data dir still runs after 5 s");
    int status = bt_second->status;
    cr_assert (WIFEXITED (status) && WEXITSTATUS (status) != 0,
               "second heraldd ended with %s %d, expected a non-zero exit",
               WIFEXITED (status)? "exit": "signal",
               WIFEXITED (status)? WEXITSTATUS (status): WTERMSIG (status));
    char log [1024];
    bu_broker_log (bt_second, log, sizeof log);
    cr_assert_gt (strlen (log), 0, "second heraldd said nothing on stderr");

    //  The first one is unharmed
    zsock_t *client = bt_client ();
    bt_publish_many (client, "life.1", 1, 1);
    cr_assert_eq (bt_head (client), 1);
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
    bt_send_publish (sock, batch + 1, events, STORM_BATCH);
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
    bt_start_with (extra);
    s_storm_t *storms = bt_calloc (STORM_CLIENTS, sizeof (s_storm_t));
    zsock_t *clients [STORM_CLIENTS];
    for (size_t client = 0; client < STORM_CLIENTS; client++) {
        clients [client] = bt_client ();
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
        int rc = zmq_poll (items, STORM_CLIENTS, BT_WAIT_MS);
        cr_assert_geq (rc, 0, "zmq_poll: %s", zmq_strerror (errno));
        cr_assert_gt (rc, 0, "no ACK within %d ms during the storm", BT_WAIT_MS);
        for (size_t client = 0; client < STORM_CLIENTS; client++) {
            if (!(items [client].revents & ZMQ_POLLIN))
                continue;
            s_storm_t *storm = &storms [client];
            bu_reply_t reply;
            bt_recv (clients [client], &reply);
            size_t batch = storm->received++;
            bt_check_ack (&reply, batch + 1, STORM_BATCH);
            for (size_t index = 0; index < STORM_BATCH; index++) {
                storm->seq [batch][index] = reply.body.ack.seq [index];
                storm->ver [batch][index] = reply.body.ack.ver [index];
            }
            storm->acked [batch] = true;
            acked += STORM_BATCH;
            bu_reply_fini (&reply);
        }
    }
    bu_broker_kill (bt_broker);
    cr_assert (WIFSIGNALED (bt_broker->status) && WTERMSIG (bt_broker->status) == SIGKILL,
               "heraldd was not killed by SIGKILL (status %d)", bt_broker->status);
    size_t in_flight = 0;
    for (size_t client = 0; client < STORM_CLIENTS; client++) {
        in_flight += storms [client].sent - storms [client].received;
        bt_drop (&clients [client]);
    }
    cr_log_info ("storm: killed with %zu events ACKed, %zu requests in flight", acked, in_flight);

    //  Restart: the log is 1..head without a gap, each id once
    bt_start ();
    zsock_t *client = bt_client ();
    uint64_t head = bt_head (client);
    cr_assert_geq (head, acked, "head %" PRIu64 " below the %zu ACKed events", head, acked);
    bt_stream_t *stream = bt_stream_new ();
    bu_replay_t replay = { .has_from = true, .from = 1, .has_credit = true, .credit = 1000000 };
    bt_send_replay (client, 1, &replay);
    bt_stream_read_to_end (client, 1, stream, 30000);
    cr_assert_eq (stream->count, head, "REPLAY sent %zu events, head %" PRIu64, stream->count,
                  head);
    cr_assert_eq (stream->last, head);
    uint8_t (*logged) [HERALD_ID_BYTES] = bt_calloc (head + 1, HERALD_ID_BYTES);
    for (size_t index = 0; index < stream->count; index++) {
        tu_decoded_t decoded;
        bt_decode (stream->envelopes [index], &decoded);
        cr_assert_eq (decoded.event.seq, index + 1, "REPLAY: seq %" PRIu64 " at position %zu",
                      decoded.event.seq, index + 1);
        memcpy (logged [index + 1], decoded.event.id, HERALD_ID_BYTES);
        tu_decoded_fini (&decoded);
    }
    bt_stream_destroy (&stream);

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

    //  Publishing the ACKed batches again: every event a duplicate
    size_t resent = 0;
    for (size_t which = 0; which < STORM_CLIENTS; which++)
        for (size_t batch = 0; batch < STORM_BATCHES; batch++) {
            if (!storms [which].acked [batch])
                continue;
            s_storm_send (client, &storms [which], which, batch);
            bu_reply_t reply;
            bt_recv (client, &reply);
            bt_check_ack (&reply, batch + 1, STORM_BATCH);
            for (size_t index = 0; index < STORM_BATCH; index++) {
                cr_assert (reply.body.ack.dup [index], "an ACKed id is not a duplicate");
                cr_assert_eq (reply.body.ack.seq [index], storms [which].seq [batch][index]);
                cr_assert_eq (reply.body.ack.ver [index], storms [which].ver [batch][index]);
            }
            bu_reply_fini (&reply);
            resent += STORM_BATCH;
        }
    cr_assert_eq (resent, acked);
    cr_assert_eq (bt_head (client), head, "re-publishing ACKed ids stored something");
}

Test (heraldd_process, kill9_during_publish_storm_loses_no_ack_sync)
{
    s_storm_test ("sync");
}

Test (heraldd_process, kill9_during_publish_storm_loses_no_ack_async)
{
    s_storm_test ("async");
}


//  --------------------------------------------------------------------------
//  Idle flush

//  Once the broker has had nothing to commit for --idle-flush-ms after a
//  megabyte or more was committed, it flushes the memtables: the WAL is
//  cut to almost nothing, and a kill -9 right after loses nothing.  Less
//  than a megabyte never triggers a flush, however long the broker idles.
Test (heraldd_process, idle_flush_cuts_the_wal_and_loses_nothing)
{
    const char *extra [] = { "--durability", "async", "--idle-flush-ms", "20",
                             "--heartbeat-ms", "10", NULL };
    bt_start_with (extra);
    zsock_t *client = bt_client ();
    const char *beats [] = { "$hb", NULL };
    zsock_t *sub = bt_subscriber (beats);
    bt_publish_many (client, "idle.small", 10, 1);
    //  Twenty heartbeats: ten times --idle-flush-ms with nothing to commit
    herald_msg_t hb;
    char node [128];
    for (int beat = 0; beat < 20; beat++)
        bt_wait_heartbeat (sub, &hb, node, sizeof (node));
    cr_assert_eq (bt_status_extra (client, 20, "idle_flushes"), 0,
                  "a flush after only 10 small events");

    //  2,000 events of 1 KiB, pipelined: sent one request after another
    //  with no reply waited for, so that no pause between them (a slow,
    //  sanitized build) lets an idle flush in half-way
    static char data [1024];
    memset (data, 'i', sizeof (data) - 1);
    bu_event_t batch [100];
    bu_reply_t reply = { 0 };
    for (uint64_t rid = 100; rid < 120; rid++) {
        for (size_t i = 0; i < 100; i++)
            bu_event_init (&batch [i], "idle.big", data);
        bt_send_publish (client, rid, batch, 100);
    }
    for (uint64_t rid = 100; rid < 120; rid++) {
        bt_recv (client, &reply);
        cr_assert_eq (reply.type, HERALD_MSG_ACK, "PUBLISH %" PRIu64 ": %s", reply.body.rid,
                      reply.command);
        bu_reply_fini (&reply);
    }
    cr_assert_eq (bt_wait_status_extra (client, "idle_flushes", 1, 10000), 1,
                  "no idle flush within 10 s of 2 MiB of writes");
    int64_t wal = tu_wal_bytes (bt_broker->data_dir, false);
    cr_assert_geq (wal, 0, "cannot list %s", bt_broker->data_dir);
    for (int poll = 0; poll < 1000 && wal >= 64 * 1024; poll++) {
        zclock_sleep (10);
        wal = tu_wal_bytes (bt_broker->data_dir, false);
        cr_assert_geq (wal, 0, "cannot list %s", bt_broker->data_dir);
    }
    cr_assert_lt (wal, 64 * 1024, "the WAL still holds %" PRId64 " bytes after the flush", wal);
    cr_assert_lt (bt_status_extra (client, 21, "memtable_bytes"), 1u << 20);
    cr_assert_eq (bt_status_extra (client, 22, "idle_flushes"), 1, "flushed again while idle");

    bt_drop (&client);
    bt_drop (&sub);
    bu_broker_kill (bt_broker);
    bt_start_with (extra);
    client = bt_client ();
    bu_reply_t status;
    bt_status (client, 23, &status);
    cr_assert_eq (status.body.status.head, 2010, "head %" PRIu64 " after kill -9",
                  status.body.status.head);
    cr_assert_eq (status.body.status.topics, 2);
    bu_reply_fini (&status);
}


//  --------------------------------------------------------------------------
//  A subscriber that does not read

//  With --fanout-hwm 10 and a subscriber that reads nothing while 4 MiB
//  of events are published, the broker drops that subscriber's messages
//  (more than TCP's buffers hold) instead of holding them: every publish
//  is still ACKed, STATUS still answers, and what the subscriber does get
//  is in seq order.
Test (heraldd_process, fanout_hwm_drops_for_a_stalled_subscriber_not_the_broker)
{
    const char *extra [] = { "--fanout-hwm", "10", "--durability", "async", NULL };
    bt_start_with (extra);
    //  The small receive HWM is set before the connect, so that it holds
    //  for the pipe from the start.
    zsock_t *sub = bt_keep (zsock_new (ZMQ_SUB));
    zsock_set_linger (sub, 0);
    zsock_set_rcvhwm (sub, 10);
    zsock_set_subscribe (sub, "drop.");
    cr_assert_eq (zsock_connect (sub, "%s", bt_broker->fanout), 0);
    zsock_t *client = bt_client ();
    //  The subscription must be in place before the flood: wait for an event
    static char data [1024];
    memset (data, 'x', sizeof (data) - 1);
    bu_event_t event;
    bu_reply_t reply = { 0 };
    zmsg_t *first = NULL;
    for (uint64_t rid = 1; rid < 100 && !first; rid++) {
        //  A new id each time: the same event again is a duplicate, ACKed
        //  and never fanned out, so a subscriber that missed the first
        //  (its subscription not yet at the broker) would wait for ever
        bu_event_init (&event, "drop.warm", "warm");
        bt_publish (client, rid, &event, 1, &reply);
        bu_reply_fini (&reply);
        first = bu_recv (sub, 100);
    }
    cr_assert_not_null (first, "the subscriber never got a warm-up event");
    zmsg_destroy (&first);
    //  4,000 events of 1 KiB in batches of 100, all ACKed while sub sleeps
    bu_event_t batch [100];
    for (size_t i = 0; i < 100; i++)
        bu_event_init (&batch [i], "drop.flood", data);
    for (uint64_t rid = 1000; rid < 1040; rid++) {
        for (size_t i = 0; i < 100; i++)
            bu_event_init (&batch [i], "drop.flood", data);
        bt_publish (client, rid, batch, 100, &reply);
        bu_reply_fini (&reply);
    }
    uint64_t head = bt_head (client);
    //  Now read what reached the subscriber: fewer than 4,000, in order
    uint64_t received = 0, last_seq = 0;
    zmsg_t *msg;
    while ((msg = bu_recv (sub, 500))) {
        zframe_t *topic = zmsg_first (msg);
        zframe_t *envelope = zmsg_next (msg);
        cr_assert_not_null (envelope);
        cr_assert (zframe_streq (topic, "drop.flood") || zframe_streq (topic, "drop.warm"));
        tu_decoded_t decoded;
        bt_decode (envelope, &decoded);
        cr_assert_gt (decoded.event.seq, last_seq, "fanout out of order");
        last_seq = decoded.event.seq;
        tu_decoded_fini (&decoded);
        received++;
        zmsg_destroy (&msg);
    }
    cr_assert_lt (received, 4000, "nothing was dropped: %" PRIu64 " received", received);
    cr_assert_leq (last_seq, head);
    bu_reply_t status = { 0 };
    bt_status (client, 9999, &status);
    cr_assert_eq (status.body.status.head, head);
    bu_reply_fini (&status);
}
