/*  =========================================================================
    test_heraldd_process - the broker as a process: STATUS and HELLO,
    heartbeats, SIGTERM, restarts, the data dir's lock, kill -9

    What a supervisor and a client see of heraldd's life: it answers STATUS
    and HELLO, sends `$hb` with its head, node and an epoch that grows on a
    restart, exits 0 on SIGTERM, refuses a data dir another broker holds,
    and after kill -9 in a pipelined publish storm has lost no ACKed event.
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
