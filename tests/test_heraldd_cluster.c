/*  =========================================================================
    test_heraldd_cluster - heraldd as a cluster node (issue 13)

    Three real heraldd processes on 127.0.0.1, every port chosen free at
    run time, bootstrapped with --cluster-state new: one leader is
    elected; PUBLISH to it is ACKed and to a follower refused not_leader
    naming the leader's api; every node holds the same log (REPLAY from 1
    gives the same bytes; STATUS the same head and digest); a follower
    fans the events out in seq order; kill -9 of the leader gives a new
    leader within a bound, publishing goes on, and the old leader rejoins
    with an identical log; many PUBLISH pipelined to a leader cut off
    mid-way (several proposals in flight) are each answered once, in the
    order sent; SIGTERM of the leader exits 0; a node whose
    data directory was wiped, started again with `new`, refuses to start;
    bad --peer flags are usage errors.  Every process a test starts is
    stopped by the fixture (bu_cluster_destroy), also when it fails.
    =========================================================================
*/

#include <criterion/criterion.h>
#include <dirent.h>
#include <inttypes.h>
#include <sys/stat.h>
#include <unistd.h>
#include <signal.h>
#include <sys/wait.h>
#include "brokertest.h"
#include "tcpproxy.h"

#define S_NODES         3
#define S_ELECT_MS      15000       //  a leader, all agreeing (election 500 ms, loaded CI)
#define S_SYNC_MS       10000       //  every node at one head

//  Short timeouts keep the file fast; the shared 2-core machine still
//  elects reliably with 500 ms (300 ms was fragile, design/CLUSTER.md).
static const char *s_flags [] = { "--election-ms", "500", "--raft-heartbeat-ms", "50",
                                  "--heartbeat-ms", "200", "--idle-flush-ms", "0", NULL };

static bu_cluster_t *s_cluster;
static tcpproxy_t *s_proxies [S_NODES][S_NODES];   //  [from][to]: one per Raft link

static void
s_setup (void)
{
    bt_setup ();
}

static void
s_teardown (void)
{
    bt_teardown ();
    bu_cluster_destroy (&s_cluster);
    for (size_t from = 0; from < S_NODES; from++)
        for (size_t to = 0; to < S_NODES; to++)
            tcpproxy_destroy (&s_proxies [from][to]);
}

TestSuite (heraldd_cluster, .init = s_setup, .fini = s_teardown, .timeout = 60);

//  ---------------------------------------------------------------------
//  Helpers

static void
s_fail_with_logs (const char *what)
{
    char text [8192] = "";
    size_t used = 0;
    for (size_t index = 0; s_cluster && index < s_cluster->count; index++) {
        char log [2048];
        bu_broker_log_tail (s_cluster->nodes [index], log, sizeof log);
        used += (size_t) snprintf (text + used, used < sizeof text? sizeof text - used: 0,
                                   "--- %s:\n%s\n", s_cluster->names [index], log);
    }
    cr_assert_fail ("%s\n%s", what, text);
}

static void
s_cluster_up (void)
{
    s_cluster = bu_cluster_new ("cluster", S_NODES, s_flags);
    cr_assert_not_null (s_cluster, "cannot set up the nodes (is broker/heraldd built?)");
    if (bu_cluster_start (s_cluster, BT_START_MS) != 0)
        s_fail_with_logs ("the nodes did not all start");
}

static int
s_leader (void)
{
    int leader = bu_cluster_leader (s_cluster, S_ELECT_MS);
    if (leader < 0)
        s_fail_with_logs ("no leader that every node names");
    return leader;
}

static zsock_t *
s_client (size_t index)
{
    return bt_keep (bu_dealer_new (s_cluster->nodes [index]->api));
}

//  Publish count batches of per events on topic (rids from first_rid)
//  to node index, pipelined, and check every ACK; returns the last seq.
static uint64_t
s_publish (size_t index, const char *topic, size_t count, size_t per, uint64_t first_rid)
{
    zsock_t *client = s_client (index);
    bu_event_t events [16];
    cr_assert_leq (per, 16);
    for (size_t batch = 0; batch < count; batch++) {
        for (size_t event = 0; event < per; event++)
            bu_event_init (&events [event], topic, "cluster event");
        bt_send_publish (client, first_rid + batch, events, per);
    }
    uint64_t last = 0;
    for (size_t batch = 0; batch < count; batch++) {
        bu_reply_t reply;
        bt_recv (client, &reply);
        if (reply.type == HERALD_MSG_ERROR)
            cr_assert_fail ("PUBLISH to %s: ERROR %s: %.*s", s_cluster->names [index],
                            herald_err_code (reply.body.error.code),
                            (int) reply.body.error.message.len, reply.body.error.message.ptr);
        bt_check_ack (&reply, first_rid + batch, per);
        for (size_t event = 0; event < per; event++) {
            cr_assert_not (reply.body.ack.dup [event]);
            if (reply.body.ack.seq [event] > last)
                last = reply.body.ack.seq [event];
        }
        bu_reply_fini (&reply);
    }
    bt_drop (&client);
    return last;
}

//  Wait until every running node's STATUS says head; fails otherwise.
static void
s_wait_heads (uint64_t head)
{
    uint64_t deadline = tu_mono_ns () + (uint64_t) S_SYNC_MS * 1000000ULL;
    for (int rounds = 0; rounds < 10000; rounds++) {
        bool all = true;
        for (size_t index = 0; index < s_cluster->count && all; index++) {
            bu_node_status_t status;
            if (s_cluster->nodes [index]->pid > 0)
                all = bu_node_status (s_cluster->nodes [index]->api, &status, 1000) == 0
                   && status.head == head;
        }
        if (all)
            return;
        if (tu_mono_ns () >= deadline)
            break;
        zclock_sleep (20);
    }
    char what [64];
    snprintf (what, sizeof what, "not every node reached head %" PRIu64, head);
    s_fail_with_logs (what);
}

//  REPLAY from 1 of node index: every envelope, length-prefixed.
static uint8_t *
s_replay_bytes (size_t index, uint64_t head, size_t *len)
{
    return bt_replay_bytes (s_cluster->nodes [index]->api, s_cluster->names [index], head, len);
}

//  Every running node: the same REPLAY bytes, head and digest.
static void
s_check_identical (uint64_t head)
{
    s_wait_heads (head);
    uint8_t *first = NULL;
    size_t first_len = 0;
    char digest [24] = "";
    for (size_t index = 0; index < s_cluster->count; index++) {
        if (s_cluster->nodes [index]->pid <= 0)
            continue;
        size_t len;
        uint8_t *bytes = s_replay_bytes (index, head, &len);
        bu_node_status_t status;
        cr_assert_eq (bu_node_status (s_cluster->nodes [index]->api, &status, BT_WAIT_MS), 0);
        cr_assert_eq (status.head, head);
        cr_assert_eq (strlen (status.digest), 16, "digest '%s'", status.digest);
        if (!first) {
            first = bytes;
            first_len = len;
            snprintf (digest, sizeof digest, "%s", status.digest);
            continue;
        }
        cr_assert_eq (len, first_len, "%s's log differs in size", s_cluster->names [index]);
        cr_assert (memcmp (bytes, first, len) == 0, "%s's log differs in its bytes",
                   s_cluster->names [index]);
        cr_assert_str_eq (status.digest, digest, "%s's digest differs",
                          s_cluster->names [index]);
    }
}

//  ---------------------------------------------------------------------
//  Tests

Test (heraldd_cluster, a_pristine_node_waits_for_its_peers_and_refuses_publish_meanwhile)
{
    s_cluster = bu_cluster_new ("cluster", S_NODES, s_flags);
    cr_assert_not_null (s_cluster);
    //  One node alone: it serves STATUS while it waits
    cr_assert_eq (bu_broker_restart (s_cluster->nodes [0], BT_START_MS), 0);
    bu_node_status_t status;
    cr_assert_eq (bu_node_status (s_cluster->nodes [0]->api, &status, BT_WAIT_MS), 0);
    cr_assert_str_eq (status.cluster_state, "bootstrapping");
    cr_assert_str_eq (status.role, "follower");
    cr_assert_neq (status.raft_id, 0);
    cr_assert_str_eq (status.leader, "");
    cr_assert_eq (status.peer_count, S_NODES);
    zsock_t *client = s_client (0);
    bu_event_t event;
    bu_event_init (&event, "orders", "x");
    bt_send_publish (client, 1, &event, 1);
    bu_reply_t reply;
    bt_recv (client, &reply);
    bt_check_error (&reply, HERALD_ERR_NOT_LEADER, true, 1);
    cr_assert_null (reply.body.error.leader.ptr, "leader must be nil while none is known");
    bu_reply_fini (&reply);
    //  The others come: one cluster, one leader
    for (size_t index = 1; index < S_NODES; index++)
        cr_assert_eq (bu_broker_respawn (s_cluster->nodes [index]), 0);
    int leader = s_leader ();
    for (size_t index = 0; index < S_NODES; index++) {
        cr_assert_eq (bu_node_status (s_cluster->nodes [index]->api, &status, BT_WAIT_MS), 0);
        cr_assert_str_eq (status.cluster_state, "member");
        cr_assert_str_eq (status.durability, "raft-majority");
        cr_assert_eq (status.voters, S_NODES);
        cr_assert_str_eq (status.leader, s_cluster->names [leader]);
        cr_assert_str_eq (status.leader_api, s_cluster->nodes [leader]->api);
        cr_assert_str_eq (status.role, (int) index == leader? "leader": "follower");
    }
}

Test (heraldd_cluster, leader_acks_followers_redirect_and_every_node_holds_the_same_log)
{
    s_cluster_up ();
    int leader = s_leader ();
    size_t follower = (size_t) (leader + 1) % S_NODES;
    //  A subscriber on a follower's fanout, live before anything is published
    const char *prefixes [] = { "", NULL };
    zsock_t *sub = bt_keep (bu_sub_new (s_cluster->nodes [follower]->fanout, prefixes));
    herald_msg_t hb;
    char node [32];
    bt_wait_heartbeat (sub, &hb, node, sizeof node);
    cr_assert_str_eq (node, s_cluster->names [follower]);
    bu_node_status_t status;
    cr_assert_eq (bu_node_status (s_cluster->nodes [follower]->api, &status, BT_WAIT_MS), 0);
    cr_assert_eq (hb.heartbeat.epoch, status.term, "$hb epoch is the term");
    cr_assert_gt (status.term, 0);

    //  A follower refuses, naming the leader's api
    zsock_t *client = s_client (follower);
    bu_event_t event;
    bu_event_init (&event, "orders", "x");
    bt_send_publish (client, 1, &event, 1);
    bu_reply_t reply;
    bt_recv (client, &reply);
    bt_check_error (&reply, HERALD_ERR_NOT_LEADER, true, 1);
    cr_assert (bu_str_eq (reply.body.error.leader, s_cluster->nodes [leader]->api),
               "not_leader names '%.*s', not the leader's api %s",
               (int) reply.body.error.leader.len, reply.body.error.leader.ptr,
               s_cluster->nodes [leader]->api);
    bu_reply_fini (&reply);

    //  WELCOME lists every member's api
    msgpack_sbuffer sbuf;
    msgpack_sbuffer_init (&sbuf);
    bu_pack_hello (&sbuf, 2, 1, "test");
    bu_send_sbuf (client, "HELLO", &sbuf);
    msgpack_sbuffer_destroy (&sbuf);
    bt_recv (client, &reply);
    cr_assert_eq (reply.type, HERALD_MSG_WELCOME);
    cr_assert_eq (reply.body.welcome.cluster_count, S_NODES);
    for (size_t index = 0; index < S_NODES; index++)
        cr_assert (bu_str_eq (reply.body.welcome.cluster [index],
                              s_cluster->nodes [index]->api));
    cr_assert (bu_str_eq (reply.body.welcome.fanout, s_cluster->nodes [follower]->fanout));
    bu_reply_fini (&reply);

    //  The leader ACKs; 30 batches of 10, pipelined
    uint64_t last = s_publish ((size_t) leader, "orders", 30, 10, 100);
    cr_assert_eq (last, 300);
    s_check_identical (300);

    //  The follower fanned every event out, in seq order
    uint64_t seen = 0;
    uint64_t deadline = tu_mono_ns () + (uint64_t) BT_WAIT_MS * 1000000ULL;
    while (seen < 300 && tu_mono_ns () < deadline) {
        zmsg_t *msg = bu_recv (sub, 1000);
        if (!msg)
            continue;
        char *topic = zmsg_popstr (msg);
        if (topic && strcmp (topic, "$hb") != 0) {
            tu_decoded_t decoded;
            bt_decode (zmsg_first (msg), &decoded);
            cr_assert_eq (decoded.event.seq, seen + 1, "fanout gave seq %" PRIu64
                          " after %" PRIu64, decoded.event.seq, seen);
            seen = decoded.event.seq;
            tu_decoded_fini (&decoded);
        }
        free (topic);
        zmsg_destroy (&msg);
    }
    cr_assert_eq (seen, 300, "the follower fanned out %" PRIu64 " of 300 events", seen);
}

Test (heraldd_cluster, kill_9_of_the_leader_elects_another_and_the_old_one_rejoins_identical)
{
    s_cluster_up ();
    int leader = s_leader ();
    cr_assert_eq (s_publish ((size_t) leader, "a", 10, 5, 1), 50);
    s_wait_heads (50);
    bu_node_status_t before;
    cr_assert_eq (bu_node_status (s_cluster->nodes [leader]->api, &before, BT_WAIT_MS), 0);

    uint64_t killed = tu_mono_ns ();
    bu_broker_kill (s_cluster->nodes [leader]);
    int next = bu_cluster_leader (s_cluster, S_ELECT_MS);
    if (next < 0)
        s_fail_with_logs ("no new leader after kill -9 of the leader");
    double seconds = (double) (tu_mono_ns () - killed) / 1e9;
    cr_assert_neq (next, leader);
    //  Election 500 ms, randomised up to twice: well under 10 s even here
    cr_assert_lt (seconds, 10.0, "a new leader took %.1f s", seconds);
    bu_node_status_t after;
    cr_assert_eq (bu_node_status (s_cluster->nodes [next]->api, &after, BT_WAIT_MS), 0);
    cr_assert_gt (after.term, before.term);

    //  Publishing goes on at the new leader, seqs following on
    cr_assert_eq (s_publish ((size_t) next, "b", 10, 5, 100), 100);

    //  The old leader comes back and catches up
    if (bu_broker_restart (s_cluster->nodes [leader], BT_START_MS) != 0)
        s_fail_with_logs ("the old leader did not restart");
    s_check_identical (100);
    bu_node_status_t back;
    cr_assert_eq (bu_node_status (s_cluster->nodes [leader]->api, &back, BT_WAIT_MS), 0);
    cr_assert_str_eq (back.cluster_state, "member");
    cr_assert_str_eq (back.leader, s_cluster->names [next]);
}

Test (heraldd_cluster, sigterm_stops_the_leader_cleanly_and_another_takes_over)
{
    s_cluster_up ();
    int leader = s_leader ();
    cr_assert_eq (s_publish ((size_t) leader, "a", 4, 5, 1), 20);
    s_wait_heads (20);
    cr_assert_eq (bu_broker_stop (s_cluster->nodes [leader], BT_STOP_MS), 0,
                  "the leader did not stop on SIGTERM");
    cr_assert (WIFEXITED (s_cluster->nodes [leader]->status));
    cr_assert_eq (WEXITSTATUS (s_cluster->nodes [leader]->status), 0);
    int next = bu_cluster_leader (s_cluster, S_ELECT_MS);
    if (next < 0)
        s_fail_with_logs ("no new leader after the leader stopped");
    cr_assert_eq (s_publish ((size_t) next, "b", 4, 5, 100), 40);
}

//  Every node signalled at once, twice (a terminal's SIGINT, then a
//  process manager's SIGTERM): each stops within a bound, never hangs and
//  never frees what a running thread still uses (a signal handled on
//  another thread went unseen by the main wait; a second one cut the stop
//  short: nodes that ran on, "dangling socket" lines, a freed name logged).
//  Run three rounds: the hang came about one round in three.
Test (heraldd_cluster, every_node_signalled_twice_at_once_stops_within_a_bound)
{
    for (int round = 0; round < 3; round++) {
        s_cluster_up ();
        (void) s_leader ();
        for (size_t index = 0; index < s_cluster->count; index++)
            kill (s_cluster->nodes [index]->pid, SIGINT);
        for (size_t index = 0; index < s_cluster->count; index++)
            kill (s_cluster->nodes [index]->pid, SIGTERM);
        for (size_t index = 0; index < s_cluster->count; index++) {
            bu_broker_t *node = s_cluster->nodes [index];
            if (bu_broker_wait (node, 10000) != 0)
                s_fail_with_logs ("a node still runs 10 s after SIGINT and SIGTERM");
            cr_assert (WIFEXITED (node->status), "%s ended by signal %d",
                       s_cluster->names [index], WTERMSIG (node->status));
            char log [4096];
            bu_broker_log_tail (node, log, sizeof log);
            cr_assert (!strstr (log, "dangling"), "%s left sockets dangling:\n%s",
                       s_cluster->names [index], log);
            cr_assert (strstr (log, "stopped") || strstr (log, "second signal"),
                       "%s stopped without saying so:\n%s", s_cluster->names [index], log);
        }
        bu_cluster_destroy (&s_cluster);
    }
}

Test (heraldd_cluster, a_wiped_node_started_as_new_refuses_to_start)
{
    s_cluster_up ();
    int leader = s_leader ();
    cr_assert_eq (s_publish ((size_t) leader, "a", 2, 5, 1), 10);
    s_wait_heads (10);
    size_t wiped = (size_t) (leader + 1) % S_NODES;
    bu_broker_t *node = s_cluster->nodes [wiped];
    cr_assert_eq (bu_broker_stop (node, BT_STOP_MS), 0);
    cr_assert_eq (tu_rmtree (node->data_dir), 0);
    //  Same flags (--cluster-state new), an empty data directory
    truncate (node->log, 0);
    cr_assert_eq (bu_broker_respawn (node), 0);
    if (bu_broker_wait (node, BT_START_MS) != 0)
        s_fail_with_logs ("the wiped node did not refuse to start");
    cr_assert (WIFEXITED (node->status) && WEXITSTATUS (node->status) != 0);
    char log [8192];
    bu_broker_log (node, log, sizeof log);
    cr_assert_not_null (strstr (log, "the cluster exists already; this node's raft state is "
                                "empty (a wiped disk?): start it with --cluster-state "
                                "existing and add it with herald cluster add"), "log:\n%s", log);
    //  The two others still serve
    leader = bu_cluster_leader (s_cluster, S_ELECT_MS);
    cr_assert_geq (leader, 0);
    cr_assert_eq (s_publish ((size_t) leader, "b", 1, 5, 100), 15);

    //  As the message says: --cluster-state existing (the last flag wins).
    //  It starts, learns its peers' raft ids, and waits to be added under
    //  its new id: a follower that is not a member, and no voter
    size_t extra = 0;
    while (node->extra [extra])
        extra++;
    cr_assert_lt (extra + 2, BU_MAX_ARGS);
    node->extra [extra] = strdup ("--cluster-state");
    node->extra [extra + 1] = strdup ("existing");
    if (bu_broker_restart (node, BT_START_MS) != 0)
        s_fail_with_logs ("the wiped node did not start with --cluster-state existing");
    bu_node_status_t status;
    uint64_t deadline = tu_mono_ns () + (uint64_t) S_ELECT_MS * 1000000ULL;
    do {
        cr_assert_eq (bu_node_status (node->api, &status, BT_WAIT_MS), 0);
        if (strcmp (status.cluster_state, "joining") == 0 && status.raft_id != 0)
            break;
        zclock_sleep (50);
    } while (tu_mono_ns () < deadline);
    cr_assert_str_eq (status.cluster_state, "joining");
    cr_assert_str_eq (status.role, "follower");
    //  Its new raft id is not the one the cluster holds for its name
    bu_node_status_t member;
    cr_assert_eq (bu_node_status (s_cluster->nodes [leader]->api, &member, BT_WAIT_MS), 0);
    cr_assert_eq (member.voters, S_NODES);
    //  The cluster goes on with its two members; the node still waits
    cr_assert_eq (s_publish ((size_t) leader, "c", 1, 5, 200), 20);
    cr_assert_eq (bu_node_status (node->api, &status, BT_WAIT_MS), 0);
    cr_assert_str_eq (status.cluster_state, "joining");
}

//  The leader among the running nodes but skip, as the others agree.
static int
s_leader_without (size_t skip, int timeout_ms)
{
    uint64_t deadline = tu_mono_ns () + (uint64_t) timeout_ms * 1000000ULL;
    for (int rounds = 0; rounds < 10000 && tu_mono_ns () < deadline; rounds++) {
        bu_node_status_t status [S_NODES];
        int leader = -1;
        bool agreed = true;
        for (size_t index = 0; index < S_NODES; index++) {
            if (index == skip)
                continue;
            agreed = agreed && bu_node_status (s_cluster->nodes [index]->api, &status [index],
                                               500) == 0;
            if (agreed && strcmp (status [index].role, "leader") == 0)
                leader = (int) index;
        }
        for (size_t index = 0; agreed && leader >= 0 && index < S_NODES; index++)
            if (index != skip)
                agreed = strcmp (status [index].leader, s_cluster->names [leader]) == 0;
        if (agreed && leader >= 0)
            return leader;
        zclock_sleep (50);
    }
    return -1;
}

//  The cluster up, then every node again with its Raft links through a
//  proxy each (herald_raft's test hook), so that a test can cut one.
static void
s_proxied_cluster_up (void)
{
    s_cluster_up ();
    (void) s_leader ();
    //  The raft ids are known now
    uint64_t ids [S_NODES];
    for (size_t index = 0; index < S_NODES; index++) {
        bu_node_status_t status;
        cr_assert_eq (bu_node_status (s_cluster->nodes [index]->api, &status, BT_WAIT_MS), 0);
        ids [index] = status.raft_id;
    }
    for (size_t index = 0; index < S_NODES; index++)
        cr_assert_eq (bu_broker_stop (s_cluster->nodes [index], BT_STOP_MS), 0);
    //  The proxies must not take a port of the nodes, down for now
    int ports [3 * S_NODES];
    for (size_t index = 0; index < S_NODES; index++) {
        ports [3 * index] = atoi (strrchr (s_cluster->raft [index], ':') + 1);
        ports [3 * index + 1] = atoi (strrchr (s_cluster->nodes [index]->api, ':') + 1);
        ports [3 * index + 2] = atoi (strrchr (s_cluster->nodes [index]->fanout, ':') + 1);
    }
    for (size_t from = 0; from < S_NODES; from++) {
        char spec [256] = "";
        size_t used = 0;
        for (size_t to = 0; to < S_NODES; to++) {
            if (to == from)
                continue;
            int port = atoi (strchr (s_cluster->raft [to], ':') + 1);
            s_proxies [from][to] = tcpproxy_new_avoiding (port, ports, 3 * S_NODES);
            cr_assert_not_null (s_proxies [from][to]);
            used += (size_t) snprintf (spec + used, sizeof spec - used, "%s%" PRIu64
                                       "=127.0.0.1:%d", used? ",": "", ids [to],
                                       tcpproxy_port (s_proxies [from][to]));
        }
        setenv ("HERALD_TEST_HOOKS", "1", 1);
        setenv ("HERALD_TEST_RAFT_CONNECT", spec, 1);
        int rc = bu_broker_restart (s_cluster->nodes [from], BT_START_MS);
        unsetenv ("HERALD_TEST_RAFT_CONNECT");
        unsetenv ("HERALD_TEST_HOOKS");
        if (rc != 0)
            s_fail_with_logs ("a node did not restart with its proxies");
    }
}

Test (heraldd_cluster, a_leader_cut_off_answers_its_proposal_not_leader_and_rejoins_identical)
{
    s_proxied_cluster_up ();
    int leader = s_leader ();
    cr_assert_eq (s_publish ((size_t) leader, "a", 2, 5, 1), 10);

    //  Cut the leader off both ways, and publish to it at once: it still
    //  believes it leads, proposes, and can never commit
    for (size_t other = 0; other < S_NODES; other++)
        if ((int) other != leader) {
            tcpproxy_cut (s_proxies [leader][other], true);
            tcpproxy_cut (s_proxies [other][leader], true);
        }
    zsock_t *client = s_client ((size_t) leader);
    bu_event_t events [3];
    for (size_t index = 0; index < 3; index++)
        bu_event_init (&events [index], "lost", "x");
    bt_send_publish (client, 50, events, 3);
    //  It steps down within about two election timeouts: not_leader, the
    //  outcome unknown, never an ACK
    bu_reply_t reply;
    cr_assert_eq (bu_recv_reply (client, &reply, 10000), 0, "no answer from the cut leader");
    bt_check_error (&reply, HERALD_ERR_NOT_LEADER, true, 50);
    cr_assert_not_null (memmem (reply.body.error.message.ptr, reply.body.error.message.len,
                                "may or may not be stored", 24),
                        "%.*s", (int) reply.body.error.message.len,
                        reply.body.error.message.ptr);
    bu_reply_fini (&reply);

    //  The other two elect and go on
    int next = s_leader_without ((size_t) leader, S_ELECT_MS);
    if (next < 0)
        s_fail_with_logs ("the majority elected no leader");
    cr_assert_eq (s_publish ((size_t) next, "b", 1, 5, 100), 15);

    //  Healed, the old leader takes the majority's log, its own
    //  uncommitted entry dropped: one log everywhere
    for (size_t from = 0; from < S_NODES; from++)
        for (size_t to = 0; to < S_NODES; to++)
            if (s_proxies [from][to])
                tcpproxy_cut (s_proxies [from][to], false);
    s_check_identical (15);
}

//  Cut the leader off both ways (from and to every other node).
static void
s_cut (int leader, bool cut)
{
    for (size_t other = 0; other < S_NODES; other++)
        if ((int) other != leader) {
            tcpproxy_cut (s_proxies [leader][other], cut);
            tcpproxy_cut (s_proxies [other][leader], cut);
        }
}

#define S_PIPE_PER      5           //  events a request
#define S_PIPE_WINDOW   400         //  requests sent, not answered yet, at most
#define S_PIPE_AFTER    3000        //  requests sent after the cut, at most

//  A leader keeps several proposals in flight: many PUBLISH pipelined
//  from one DEALER, and the leader cut off mid-way.  Every request is
//  answered exactly once and in the order sent: no lost proposal's
//  not_leader overtakes an earlier proposal's ACK, nor does a refusal of
//  what arrives after the step-down overtake a proposal still in flight;
//  ACKs come with increasing seqs, and what was ACKed is what the
//  cluster holds.
Test (heraldd_cluster, pipelined_publish_to_a_leader_cut_off_mid_way_is_answered_once_in_order)
{
    s_proxied_cluster_up ();
    int leader = s_leader ();
    zsock_t *client = s_client ((size_t) leader);
    bu_event_t events [S_PIPE_PER];
    uint64_t sent = 0, answered = 0, acked = 0, unknown = 0, refused = 0, last_seq = 0;
    uint64_t cut_sent = 0;              //  sent when the links were cut (0: not yet)
    uint64_t deadline = tu_mono_ns () + 40ULL * 1000000000ULL;
    for (int rounds = 0; rounds < 1000000; rounds++) {
        //  After the cut, until the step-down is well behind (50 refused)
        bool sending = cut_sent == 0 || (refused < 50 && sent < cut_sent + S_PIPE_AFTER);
        if (!sending && answered == sent)
            break;
        cr_assert_lt (tu_mono_ns (), deadline, "%" PRIu64 " of %" PRIu64 " requests "
                      "answered after 40 s", answered, sent);
        //  Keep the leader busy: requests in flight the whole time, also
        //  as it steps down
        for (int burst = 0; sending && burst < 20 && sent - answered < S_PIPE_WINDOW;
             burst++) {
            for (size_t index = 0; index < S_PIPE_PER; index++)
                bu_event_init (&events [index], "pipe", "a pipelined event");
            bt_send_publish (client, ++sent, events, S_PIPE_PER);
        }
        bu_reply_t reply;
        if (bu_recv_reply (client, &reply, sending? 5: 10000) != 0) {
            bu_reply_fini (&reply);
            cr_assert (sending, "no answer to request %" PRIu64 " of %" PRIu64 " in 10 s",
                       answered + 1, sent);
            continue;
        }
        cr_assert_eq (reply.rc, HERALD_OK);
        answered++;
        if (reply.type == HERALD_MSG_ACK) {
            //  rid first: an answer out of order, or twice, fails here
            bt_check_ack (&reply, answered, S_PIPE_PER);
            for (size_t event = 0; event < S_PIPE_PER; event++) {
                cr_assert_not (reply.body.ack.dup [event]);
                cr_assert_gt (reply.body.ack.seq [event], last_seq, "request %" PRIu64
                              ": seq %" PRIu64 " after %" PRIu64, answered,
                              reply.body.ack.seq [event], last_seq);
                last_seq = reply.body.ack.seq [event];
            }
            acked++;
        }
        else {
            //  Before the cut every proposal commits: each request its ACK
            cr_assert (cut_sent, "request %" PRIu64 " refused before the cut", answered);
            bt_check_error (&reply, HERALD_ERR_NOT_LEADER, true, answered);
            if (memmem (reply.body.error.message.ptr, reply.body.error.message.len,
                        "may or may not be stored", 24))
                unknown++;              //  in a proposal when leadership was lost
            else
                refused++;              //  refused at once, or queued behind them
        }
        bu_reply_fini (&reply);
        //  Mid-way, with requests in flight: cut the leader off
        if (cut_sent == 0 && acked >= 200) {
            s_cut (leader, true);
            cut_sent = sent;
        }
    }
    cr_assert_eq (answered, sent);
    cr_assert_geq (acked, 200);
    cr_assert_geq (unknown, 1, "no proposal was in flight at the cut (%" PRIu64 " ACKed, "
                   "%" PRIu64 " refused)", acked, refused);
    cr_assert_geq (refused, 1);
    cr_assert_eq (acked + unknown + refused, sent);

    //  The majority elects; healed, every node holds its log, every ACKed
    //  event in it (outcome-unknown ones may be there too)
    int next = s_leader_without ((size_t) leader, S_ELECT_MS);
    if (next < 0)
        s_fail_with_logs ("the majority elected no leader");
    bu_node_status_t status;
    cr_assert_eq (bu_node_status (s_cluster->nodes [next]->api, &status, BT_WAIT_MS), 0);
    cr_assert_geq (status.head, acked * S_PIPE_PER);
    cr_assert_geq (status.head, last_seq);
    s_cut (leader, false);
    s_check_identical (status.head);
}

//  The live WAL of RocksDB in dir (the NNNNNN.log with the greatest
//  number), cut to half its size: what a power cut leaves of a WAL that
//  was written but never synced.  Returns the bytes cut.
static off_t
s_cut_live_wal (const char *dir)
{
    DIR *handle = opendir (dir);
    cr_assert_not_null (handle);
    char newest [256] = "";
    unsigned long number = 0;
    struct dirent *entry;
    while ((entry = readdir (handle))) {
        size_t len = strlen (entry->d_name);
        if (len < 5 || strcmp (entry->d_name + len - 4, ".log") != 0)
            continue;
        unsigned long this = strtoul (entry->d_name, NULL, 10);
        if (!*newest || this > number) {
            number = this;
            snprintf (newest, sizeof newest, "%s", entry->d_name);
        }
    }
    closedir (handle);
    cr_assert (*newest, "no WAL in %s", dir);
    char *path = tu_path (dir, newest);
    struct stat info;
    cr_assert_eq (stat (path, &info), 0);
    cr_assert_eq (truncate (path, info.st_size / 2), 0);
    free (path);
    return info.st_size - info.st_size / 2;
}

Test (heraldd_cluster, a_node_that_lost_its_unsynced_wal_tail_is_made_whole_from_raft)
{
    s_cluster_up ();
    int leader = s_leader ();
    size_t follower = (size_t) (leader + 1) % S_NODES;
    cr_assert_eq (s_publish ((size_t) leader, "a", 20, 10, 1), 200);
    s_wait_heads (200);
    //  A standalone broker records its acknowledged head once a second
    //  (HERALD-ACKED), and a store that opens below it refuses to start.
    //  A cluster node must not: a full second gives it the chance to.
    zclock_sleep (1500);
    char *marker = tu_path (s_cluster->nodes [follower]->data_dir, "HERALD-ACKED");
    struct stat info;
    cr_assert_neq (stat (marker, &info), 0, "a cluster node wrote %s", marker);
    free (marker);
    //  kill -9 and the WAL's unsynced tail gone: the store opens shorter,
    //  and Raft applies the entries it lost again
    bu_broker_kill (s_cluster->nodes [follower]);
    cr_assert_gt (s_cut_live_wal (s_cluster->nodes [follower]->data_dir), 0);
    if (bu_broker_restart (s_cluster->nodes [follower], BT_START_MS) != 0)
        s_fail_with_logs ("the node with a cut WAL did not start");
    cr_assert_eq (s_publish ((size_t) leader, "b", 2, 10, 100), 220);
    s_check_identical (220);
}

//  Run heraldd with args and return its exit status (it must exit
//  within BT_STOP_MS); its output goes to log.
static int
s_run (const char *const *args, const char *log)
{
    char *binary = bu_heraldd_path ();
    cr_assert_not_null (binary);
    char *argv [32];
    size_t argc = 0;
    argv [argc++] = binary;
    for (; args [argc - 1] && argc < 31; argc++)
        argv [argc] = (char *) args [argc - 1];
    argv [argc] = NULL;
    pid_t pid = bu_spawn (binary, argv, log);
    cr_assert_gt (pid, 0);
    int status = 0;
    uint64_t deadline = tu_mono_ns () + (uint64_t) BT_STOP_MS * 1000000ULL;
    while (waitpid (pid, &status, WNOHANG) == 0) {
        if (tu_mono_ns () >= deadline) {
            kill (pid, SIGKILL);
            waitpid (pid, &status, 0);
            cr_assert_fail ("heraldd did not exit");
        }
        zclock_sleep (10);
    }
    free (binary);
    cr_assert (WIFEXITED (status));
    return WEXITSTATUS (status);
}

Test (heraldd_cluster, bad_peer_flags_are_usage_errors)
{
    char *dir = tu_tmpdir_new ("cluster_usage");
    char *log = tu_path (dir, "log");
    char *data = tu_path (dir, "data");
    const char *a = "a,127.0.0.1:7001,tcp://127.0.0.1:5001,tcp://127.0.0.1:6001";
    const char *fields [] = { "--data-dir", data, "--node", "a", "--peer", "a,127.0.0.1:7001",
                              NULL };
    cr_assert_eq (s_run (fields, log), 64);
    const char *twice [] = { "--data-dir", data, "--node", "a", "--peer", a, "--peer", a, NULL };
    cr_assert_eq (s_run (twice, log), 64);
    const char *absent [] = { "--data-dir", data, "--node", "z", "--peer", a, NULL };
    cr_assert_eq (s_run (absent, log), 64);
    const char *port [] = { "--data-dir", data, "--node", "a", "--peer",
                            "a,127.0.0.1:0,tcp://127.0.0.1:5001,tcp://127.0.0.1:6001", NULL };
    cr_assert_eq (s_run (port, log), 64);
    char text [4096];
    FILE *file = fopen (log, "r");
    cr_assert_not_null (file);
    size_t got = fread (text, 1, sizeof text - 1, file);
    text [got] = 0;
    fclose (file);
    cr_assert_not_null (strstr (text, "--peer: 'a,127.0.0.1:7001' is not NAME,RAFT_ADDR,API,"
                                "FANOUT"), "%s", text);
    cr_assert_not_null (strstr (text, "node 'a' is given twice"), "%s", text);
    cr_assert_not_null (strstr (text, "--node: 'z' is not one of the --peer names (a)"), "%s",
                        text);
    cr_assert_not_null (strstr (text, "Raft address '127.0.0.1:0' is not HOST:PORT"), "%s",
                        text);
    cr_assert_not_null (strstr (text, "(see heraldd --help)"));
    //  In the config file: exit 78
    char *conf = tu_path (dir, "herald.conf");
    const char *lines = "node = a\npeer = a,127.0.0.1:7001\n";
    cr_assert_eq (tu_write_file (conf, lines, strlen (lines)), 0);
    const char *file_args [] = { "--data-dir", data, "--config", conf, NULL };
    cr_assert_eq (s_run (file_args, log), 78);
    //  Nothing was made
    struct stat info;
    cr_assert_neq (stat (data, &info), 0, "a refused start made the data directory");
    free (conf);
    free (data);
    free (log);
    tu_tmpdir_destroy (&dir);
}
