/*  =========================================================================
    test_heraldd_members - membership changes and leadership transfer
    (issue 13, CLUSTER.md §3.11): herald cluster add, remove, transfer
    against real heraldd processes on 127.0.0.1

    A cluster of three grows to four: the fourth node, started with
    --cluster-state existing (joining), is added with `herald cluster
    add` given a follower's endpoint first (the command follows
    not_leader); it catches up the events published before it joined
    (every node snapshots every 8 entries through the test hook, so it
    comes by a snapshot and HWP/1 REPLAY) and holds the same log byte for
    byte; every node's STATUS then lists it and counts four voters, and
    WELCOME names its api.  A follower is removed (three again).  A
    publisher runs through both changes and every PUBLISH is ACKed.  A
    wiped node (a new raft id) cannot be added while its old self is a
    member, and is once the old raft id is removed.  `herald cluster
    transfer NODE` makes NODE the leader (checked, not assumed), and a
    PUBLISH to the old leader is then answered not_leader naming it.
    A follower away during the add comes back by snapshot and takes the
    member table from it; n4 restarted keeps it (its --peer list is
    older).  Removing the leader itself hands leadership over first.  An
    add cut short by a kill of the leader resumes at the new leader.
    Refusals: a change asked of a follower (not_leader with the leader's
    api) or of a joining node, the removal of an unknown node and the add
    of a member (bad_request, nothing changes), a second change while one
    runs (overloaded), the add of a joining node whose Raft has not
    started, CLUSTER to a standalone broker (unknown_command).  The
    leader's graceful SIGTERM hands over:
    the gap between two ACKs of a publisher that follows not_leader is
    measured and printed (not asserted: a shared 2-core machine).
    =========================================================================
*/

#include <criterion/criterion.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/wait.h>
#include <unistd.h>
#include "membertest.h"

#define S_SYNC_MS       20000
#define S_CHANGE_MS     30000       //  herald cluster ... --wait


static void
s_setup (void)
{
    bt_setup ();
    //  Snapshots every 8 entries: a joining node catches up by snapshot
    //  (the manifest) and REPLAY of the events, not only from the log
    setenv ("HERALD_TEST_HOOKS", "1", 1);
    setenv ("HERALD_TEST_RAFT_SNAPSHOT", "8", 1);
}

static void
s_teardown (void)
{
    bt_teardown ();
    bu_cluster_destroy (&mt_cluster);
}

TestSuite (heraldd_members, .init = s_setup, .fini = s_teardown, .timeout = 90);

//  ---------------------------------------------------------------------
//  Helpers

//  Wait until node index counts voters and lists peers (a follower
//  learns a change a heartbeat after the leader); its STATUS.
static bu_node_status_t
s_wait_counts_within (size_t index, uint64_t voters, size_t peers, int timeout_ms)
{
    bu_node_status_t status;
    memset (&status, 0, sizeof status);
    uint64_t started = tu_mono_ns ();
    uint64_t deadline = started + (uint64_t) timeout_ms * 1000000ULL;
    for (int rounds = 0; rounds < 100000; rounds++) {
        if (bu_node_status (mt_cluster->nodes [index]->api, &status, 1000) == 0
        &&  status.voters == voters && status.peer_count == peers)
        {
            if (tu_mono_ns () - started > 2000000000ULL)
                fprintf (stderr, "members: %s took %.3f s to count %" PRIu64 " voters and "
                         "%zu peers\n", mt_cluster->names [index],
                         (double) (tu_mono_ns () - started) / 1e9, voters, peers);
            return status;
        }
        if (tu_mono_ns () >= deadline)
            break;
        zclock_sleep (20);
    }
    char what [200];
    snprintf (what, sizeof what, "%s counts %" PRIu64 " voters and lists %zu peers, not %"
              PRIu64 " and %zu (head %" PRIu64 ", applied %" PRIu64 ", commit %" PRIu64 ")",
              mt_cluster->names [index], status.voters, status.peer_count, voters, peers,
              status.head, status.applied_index, status.commit_index);
    mt_fail_with_logs (what);
    return status;
}

static bu_node_status_t
s_wait_counts (size_t index, uint64_t voters, size_t peers)
{
    return s_wait_counts_within (index, voters, peers, 5000);
}


//  REPLAY from 1 of node index: every envelope, length-prefixed.
static uint8_t *
s_replay_bytes (size_t index, uint64_t head, size_t *len)
{
    return bt_replay_bytes (mt_cluster->nodes [index]->api, mt_cluster->names [index], head, len);
}

//  The nodes in mask (bit per index): one head (waited for), one digest,
//  the same REPLAY bytes.
static void
s_check_identical (unsigned mask, uint64_t head)
{
    uint64_t deadline = tu_mono_ns () + (uint64_t) S_SYNC_MS * 1000000ULL;
    bool all = false;
    for (int rounds = 0; rounds < 10000 && !all; rounds++) {
        all = true;
        for (size_t index = 0; index < MT_ALL && all; index++) {
            bu_node_status_t status;
            if (mask & (1u << index))
                all = bu_node_status (mt_cluster->nodes [index]->api, &status, 1000) == 0
                   && status.head == head;
        }
        if (!all && tu_mono_ns () >= deadline)
            mt_fail_with_logs ("the nodes did not reach one head");
        if (!all)
            zclock_sleep (20);
    }
    uint8_t *first = NULL;
    size_t first_len = 0;
    char digest [24] = "";
    for (size_t index = 0; index < MT_ALL; index++) {
        if (!(mask & (1u << index)))
            continue;
        size_t len;
        uint8_t *bytes = s_replay_bytes (index, head, &len);
        bu_node_status_t status;
        cr_assert_eq (bu_node_status (mt_cluster->nodes [index]->api, &status, BT_WAIT_MS), 0);
        if (!first) {
            first = bytes;
            first_len = len;
            snprintf (digest, sizeof digest, "%s", status.digest);
            continue;
        }
        cr_assert_eq (len, first_len, "%s's log differs in size", mt_cluster->names [index]);
        cr_assert_eq (memcmp (bytes, first, len), 0, "%s's log differs",
                      mt_cluster->names [index]);
        cr_assert_str_eq (status.digest, digest);
    }
}

//  A CLUSTER request by hand: op, node (or NULL); the reply.
static void
s_cluster_request (size_t index, uint64_t rid, const char *op, const char *node,
                   bu_reply_t *reply)
{
    zsock_t *client = bt_keep (bu_dealer_new (mt_cluster->nodes [index]->api));
    msgpack_sbuffer sbuf;
    msgpack_sbuffer_init (&sbuf);
    msgpack_packer pk;
    msgpack_packer_init (&pk, &sbuf, msgpack_sbuffer_write);
    msgpack_pack_map (&pk, node? 3: 2);
    bu_pack_str (&pk, "rid");
    msgpack_pack_uint64 (&pk, rid);
    bu_pack_str (&pk, "op");
    bu_pack_str (&pk, op);
    if (node) {
        bu_pack_str (&pk, "node");
        bu_pack_str (&pk, node);
    }
    bu_send_sbuf (client, "CLUSTER", &sbuf);
    msgpack_sbuffer_destroy (&sbuf);
    cr_assert_eq (bu_recv_reply (client, reply, BT_WAIT_MS), 0, "no reply to CLUSTER %s", op);
    bt_drop (&client);
}

//  CLUSTER add by hand to node index; with reply NULL, not waited for
//  (the socket is kept open until the test ends).
static void
s_add_request (size_t index, uint64_t rid, const char *node, const char *raft,
               const char *api, const char *fanout, uint64_t raft_id, bu_reply_t *reply)
{
    zsock_t *client = bt_keep (bu_dealer_new (mt_cluster->nodes [index]->api));
    msgpack_sbuffer sbuf;
    msgpack_sbuffer_init (&sbuf);
    msgpack_packer pk;
    msgpack_packer_init (&pk, &sbuf, msgpack_sbuffer_write);
    msgpack_pack_map (&pk, 7);
    bu_pack_str (&pk, "rid");
    msgpack_pack_uint64 (&pk, rid);
    bu_pack_str (&pk, "op");
    bu_pack_str (&pk, "add");
    bu_pack_str (&pk, "node");
    bu_pack_str (&pk, node);
    bu_pack_str (&pk, "raft");
    bu_pack_str (&pk, raft);
    bu_pack_str (&pk, "api");
    bu_pack_str (&pk, api);
    bu_pack_str (&pk, "fanout");
    bu_pack_str (&pk, fanout);
    bu_pack_str (&pk, "raft_id");
    msgpack_pack_uint64 (&pk, raft_id);
    bu_send_sbuf (client, "CLUSTER", &sbuf);
    msgpack_sbuffer_destroy (&sbuf);
    if (reply) {
        cr_assert_eq (bu_recv_reply (client, reply, S_CHANGE_MS), 0, "no reply to CLUSTER add");
        bt_drop (&client);
    }
}

//  ---------------------------------------------------------------------
//  A publisher on a thread: batches of 5 to whichever node leads
//  (following not_leader), recording every ACK's time

typedef struct {
    atomic_bool stop;
    atomic_bool pause;                  //  send nothing while set
    size_t target;                      //  node index it sends to first
    size_t acks;                        //  batches ACKed
    size_t refusals;                    //  batches answered ERROR (any code)
    size_t silences;                    //  batches with no reply in 2 s
    uint64_t last_seq;
    uint64_t max_gap_ns;                //  longest time between two ACKs
    uint64_t gap_end_ns;                //  when that gap ended
    int reply_ms;                       //  how long a reply is waited for (0: 2000)
    _Atomic uint64_t signal_ns;         //  when the test signalled the leader (0: not yet)
    uint64_t last_before_ns;            //  the last ACK before it
    uint64_t first_after_ns;            //  the first ACK of a batch sent after it
    char first_refusal [256];
} s_publisher_t;

static void *
s_publisher_run (void *arg)
{
    s_publisher_t *self = (s_publisher_t *) arg;
    size_t target = self->target;
    zsock_t *client = bu_dealer_new (mt_cluster->nodes [target]->api);
    uint64_t rid = 1000000, last_ack = tu_mono_ns ();
    for (int rounds = 0; rounds < 100000 && !atomic_load (&self->stop); rounds++) {
        if (atomic_load (&self->pause)) {
            zclock_sleep (10);
            last_ack = tu_mono_ns ();       //  a pause is no gap
            continue;
        }
        uint64_t sent = tu_mono_ns ();
        bu_event_t events [5];
        for (size_t event = 0; event < 5; event++)
            bu_event_init (&events [event], "load", "publisher event");
        msgpack_sbuffer sbuf;
        msgpack_sbuffer_init (&sbuf);
        bu_pack_publish (&sbuf, ++rid, events, 5);
        bu_send_sbuf (client, "PUBLISH", &sbuf);
        msgpack_sbuffer_destroy (&sbuf);
        bu_reply_t reply;
        memset (&reply, 0, sizeof reply);
        bool answered = false;
        for (int tries = 0; tries < 10 && !answered; tries++) {
            if (bu_recv_reply (client, &reply, self->reply_ms? self->reply_ms: 2000) != 0)
                break;
            answered = reply.body.rid == rid;
            if (!answered)
                bu_reply_fini (&reply);
        }
        if (answered && reply.type == HERALD_MSG_ACK) {
            uint64_t now = tu_mono_ns ();
            if (now - last_ack > self->max_gap_ns) {
                self->max_gap_ns = now - last_ack;
                self->gap_end_ns = now;
            }
            last_ack = now;
            self->acks++;
            uint64_t signal = atomic_load (&self->signal_ns);
            if (!signal)
                self->last_before_ns = now;
            else
            if (sent >= signal && !self->first_after_ns)
                self->first_after_ns = now;
            self->last_seq = reply.body.ack.seq [4];
        }
        else {
            const char *leader = NULL;
            if (answered) {
                self->refusals++;
                if (!*self->first_refusal)
                    snprintf (self->first_refusal, sizeof self->first_refusal, "%s: %.*s",
                              herald_err_code (reply.body.error.code),
                              (int) reply.body.error.message.len,
                              reply.body.error.message.ptr);
                if (reply.body.error.code == HERALD_ERR_NOT_LEADER
                &&  reply.body.error.leader.ptr)
                    for (size_t index = 0; index < mt_cluster->count; index++)
                        if (bu_str_eq (reply.body.error.leader, mt_cluster->nodes [index]->api))
                            leader = mt_cluster->nodes [index]->api, target = index;
            }
            else
                self->silences++;
            if (!leader) {
                target = (target + 1) % MT_MEMBERS;
                zclock_sleep (20);
            }
            zsock_destroy (&client);
            client = bu_dealer_new (mt_cluster->nodes [target]->api);
        }
        bu_reply_fini (&reply);
    }
    zsock_destroy (&client);
    return NULL;
}

//  ---------------------------------------------------------------------
//  Tests

Test (heraldd_members, grow_to_four_with_catch_up_then_shrink_to_three_acking_throughout)
{
    mt_cluster_up ();
    int leader = mt_leader ();
    size_t follower = (size_t) (leader + 1) % MT_MEMBERS;
    //  Events before n4 exists: 8 entries, past a snapshot
    uint64_t head = mt_publish ((size_t) leader, "before", 24, 1);
    cr_assert_eq (head, 120);

    //  n4 starts, learns its peers' raft ids and waits to be added
    bu_broker_t *n4 = mt_cluster->nodes [3];
    cr_assert_eq (bu_broker_respawn (n4), 0);
    bu_node_status_t joining = mt_wait_state (3, "joining");
    mt_wait_raft (3);
    cr_assert_eq (joining.head, 0);
    //  A change asked of it: not_leader (it knows no leader yet: nil)
    bu_reply_t refused;
    s_cluster_request (3, 70, "transfer", NULL, &refused);
    bt_check_error (&refused, HERALD_ERR_NOT_LEADER, true, 70);
    bu_reply_fini (&refused);

    s_publisher_t publisher = { .target = (size_t) leader };
    pthread_t thread;
    cr_assert_eq (pthread_create (&thread, NULL, s_publisher_run, &publisher), 0);

    //  A follower is away while n4 is added: it comes back by a snapshot
    //  past the member table's entry, and must learn the table from it
    cr_assert_eq (bu_broker_stop (mt_cluster->nodes [follower], BT_STOP_MS), 0);

    //  Added through the endpoints from that follower's on: nothing
    //  listens there, the next one follows not_leader to the leader
    char endpoints [1024], out [8192];
    mt_endpoints (follower, endpoints, sizeof endpoints);
    int rc = mt_herald (out, sizeof out, "cluster add n4 %s %s %s --endpoint %s --wait %d",
                        mt_cluster->raft [3], n4->api, n4->fanout, endpoints, S_CHANGE_MS);
    if (rc != 0) {
        atomic_store (&publisher.stop, true);
        pthread_join (thread, NULL);
        char what [9000];
        snprintf (what, sizeof what, "herald cluster add exited %d:\n%s", rc, out);
        mt_fail_with_logs (what);
    }
    cr_assert_not_null (strstr (out, "\"ok\":true"), "%s", out);
    cr_assert_not_null (strstr (out, "\"node\":\"n4\""), "%s", out);
    char raft_id [32];
    snprintf (raft_id, sizeof raft_id, "\"raft_id\":%" PRIu64, joining.raft_id);
    cr_assert_not_null (strstr (out, raft_id), "%s", out);
    cr_assert_not_null (strstr (out, "\"voters\":4"), "%s", out);

    //  Asked again: herald sees n4 is a member (its STATUS); the leader
    //  refuses the request too, and nothing changes
    rc = mt_herald (out, sizeof out, "cluster add n4 %s %s %s --endpoint %s",
                    mt_cluster->raft [3], n4->api, n4->fanout, endpoints);
    cr_assert_eq (rc, 1, "%s", out);
    cr_assert_not_null (strstr (out, "(cluster_state member), not as n4 waiting"), "%s", out);
    bu_reply_t again;
    s_add_request ((size_t) leader, 60, "n4", mt_cluster->raft [3], n4->api, n4->fanout,
                   joining.raft_id, &again);
    bt_check_error (&again, HERALD_ERR_BAD_REQUEST, true, 60);
    cr_assert_not_null (strstr (again.body.error.message.ptr, "is a member already"));
    bu_reply_fini (&again);

    //  The leader's log moves 24 entries on (3 snapshots), then the
    //  follower comes back
    bu_node_status_t status;
    cr_assert_eq (bu_node_status (mt_cluster->nodes [leader]->api, &status, BT_WAIT_MS), 0);
    uint64_t added_at = status.commit_index;
    uint64_t deadline = tu_mono_ns () + (uint64_t) S_SYNC_MS * 1000000ULL;
    while (status.commit_index < added_at + 24 && tu_mono_ns () < deadline) {
        zclock_sleep (20);
        bu_node_status (mt_cluster->nodes [leader]->api, &status, BT_WAIT_MS);
    }
    cr_assert_geq (status.commit_index, added_at + 24, "the publisher stalled");
    cr_assert_eq (bu_broker_respawn (mt_cluster->nodes [follower]), 0);

    //  Every node: four voters, four peers; n4 a member following the leader
    for (size_t index = 0; index < MT_ALL; index++) {
        mt_wait_state (index, "member");
        status = s_wait_counts (index, 4, 4);
        cr_assert_str_eq (status.leader, mt_cluster->names [leader]);
    }
    //  The follower that was away catches up.  libraft's leader sometimes
    //  resumes sending to a follower that installed a snapshot only after
    //  its install_snapshot_timeout (30 s): seen in about one run in four
    //  here (a snapshot every 8 entries, under load); the time is printed
    //  (the publisher pauses meanwhile: 30 s of events would be a long
    //  REPLAY to compare)
    atomic_store (&publisher.pause, true);
    zclock_sleep (50);
    cr_assert_eq (bu_node_status (mt_cluster->nodes [leader]->api, &status, BT_WAIT_MS), 0);
    uint64_t target = status.commit_index, started = tu_mono_ns ();
    deadline = started + 45000000000ULL;
    for (int rounds = 0; rounds < 100000; rounds++) {
        if (bu_node_status (mt_cluster->nodes [follower]->api, &status, 1000) == 0
        &&  status.applied_index >= target)
            break;
        if (tu_mono_ns () >= deadline)
            mt_fail_with_logs ("the follower that was away did not catch up");
        zclock_sleep (20);
    }
    fprintf (stderr, "members: %s, back by snapshot, caught up in %.3f s\n",
             mt_cluster->names [follower], (double) (tu_mono_ns () - started) / 1e9);
    atomic_store (&publisher.pause, false);
    //  WELCOME's cluster names n4's api (from a node whose --peer list
    //  does not hold it)
    zsock_t *client = bt_keep (bu_dealer_new (mt_cluster->nodes [follower]->api));
    msgpack_sbuffer sbuf;
    msgpack_sbuffer_init (&sbuf);
    bu_pack_hello (&sbuf, 5, 1, "test");
    bu_send_sbuf (client, "HELLO", &sbuf);
    msgpack_sbuffer_destroy (&sbuf);
    bu_reply_t welcome;
    bt_recv (client, &welcome);
    cr_assert_eq (welcome.type, HERALD_MSG_WELCOME);
    cr_assert_eq (welcome.body.welcome.cluster_count, 4);
    bool named = false;
    for (size_t index = 0; index < 4; index++)
        named = named || bu_str_eq (welcome.body.welcome.cluster [index], n4->api);
    cr_assert (named, "WELCOME's cluster lacks n4's api");
    bu_reply_fini (&welcome);
    bt_drop (&client);

    //  Remove a follower (not n4): three voters again
    size_t removed = (size_t) (leader + 2) % MT_MEMBERS;
    rc = mt_herald (out, sizeof out, "cluster remove %s --endpoint %s --format table",
                    mt_cluster->names [removed], endpoints);
    cr_assert_eq (rc, 0, "herald cluster remove exited %d:\n%s", rc, out);
    cr_assert_not_null (strstr (out, "remove done"), "%s", out);
    zclock_sleep (300);                 //  a few more ACKs after the removal
    atomic_store (&publisher.stop, true);
    pthread_join (thread, NULL);
    cr_assert_eq (publisher.refusals + publisher.silences, 0,
                  "the publisher was refused %zu times, unanswered %zu times (first: %s)",
                  publisher.refusals, publisher.silences, publisher.first_refusal);
    cr_assert_gt (publisher.acks, 5, "only %zu ACKs during the changes", publisher.acks);
    fprintf (stderr, "members: %zu batches ACKed while n4 was added and %s removed; longest "
             "gap between two ACKs %.3f s\n", publisher.acks, mt_cluster->names [removed],
             (double) publisher.max_gap_ns / 1e9);
    unsigned mask = 0;
    for (size_t index = 0; index < MT_ALL; index++)
        if (index != removed) {
            s_wait_counts (index, 3, 3);
            mask |= 1u << index;
        }
    bu_broker_stop (mt_cluster->nodes [removed], BT_STOP_MS);
    //  n4 restarted keeps the member table (its --peer list still names
    //  all four): it is read back from the store, not from the flags
    cr_assert_eq (bu_broker_stop (n4, BT_STOP_MS), 0);
    cr_assert_eq (bu_broker_respawn (n4), 0);
    bu_node_status_t back = mt_wait_state (3, "member");
    cr_assert_eq (back.peer_count, 3, "n4 restarted lists %zu peers", back.peer_count);
    cr_assert_eq (mt_leader (), leader);
    //  The three go on, and hold one log with n4's catch-up in it
    head = mt_publish ((size_t) leader, "after", 2, 500);
    cr_assert_eq (head, 120 + publisher.acks * 5 + 10);
    s_check_identical (mask, head);
}

Test (heraldd_members, a_wiped_node_is_added_again_under_its_new_id_once_the_old_is_removed)
{
    mt_cluster_up ();
    int leader = mt_leader ();
    uint64_t head = mt_publish ((size_t) leader, "a", 3, 1);
    size_t wiped = (size_t) (leader + 1) % MT_MEMBERS;
    bu_broker_t *node = mt_cluster->nodes [wiped];
    bu_node_status_t old;
    cr_assert_eq (bu_node_status (node->api, &old, BT_WAIT_MS), 0);
    cr_assert_eq (bu_broker_stop (node, BT_STOP_MS), 0);
    cr_assert_eq (tu_rmtree (node->data_dir), 0);
    mt_add_flags (node, "--cluster-state", "existing");
    cr_assert_eq (bu_broker_respawn (node), 0);
    bu_node_status_t fresh = mt_wait_state (wiped, "joining");
    mt_wait_raft (wiped);
    cr_assert_neq (fresh.raft_id, old.raft_id);
    head = mt_publish ((size_t) leader, "b", 2, 100);

    //  Its name is a member still (the old raft id): refused, nothing changes
    char endpoints [1024], out [8192];
    mt_endpoints ((size_t) leader, endpoints, sizeof endpoints);
    int rc = mt_herald (out, sizeof out, "cluster add %s %s %s %s --endpoint %s",
                        mt_cluster->names [wiped], mt_cluster->raft [wiped], node->api,
                        node->fanout, endpoints);
    cr_assert_eq (rc, 1, "%s", out);
    cr_assert_not_null (strstr (out, "remove it first"), "%s", out);
    bu_node_status_t status;
    cr_assert_eq (bu_node_status (mt_cluster->nodes [leader]->api, &status, BT_WAIT_MS), 0);
    cr_assert_eq (status.voters, 3);

    //  The old self removed by its raft id, the new one added
    rc = mt_herald (out, sizeof out, "cluster remove %" PRIu64 " --endpoint %s", old.raft_id,
                    endpoints);
    cr_assert_eq (rc, 0, "%s", out);
    cr_assert_eq (bu_node_status (mt_cluster->nodes [leader]->api, &status, BT_WAIT_MS), 0);
    cr_assert_eq (status.voters, 2);
    head = mt_publish ((size_t) leader, "c", 2, 200);
    rc = mt_herald (out, sizeof out, "cluster add %s %s %s %s --endpoint %s --wait %d",
                    mt_cluster->names [wiped], mt_cluster->raft [wiped], node->api,
                    node->fanout, endpoints, S_CHANGE_MS);
    if (rc != 0) {
        char what [9000];
        snprintf (what, sizeof what, "herald cluster add exited %d:\n%s", rc, out);
        mt_fail_with_logs (what);
    }
    status = mt_wait_state (wiped, "member");
    cr_assert_eq (status.raft_id, fresh.raft_id);
    for (size_t index = 0; index < MT_MEMBERS; index++)
        s_wait_counts (index, 3, 3);
    head = mt_publish ((size_t) leader, "d", 2, 300);
    s_check_identical (7, head);
}

//  Wait until node index's log holds text.
static void
s_wait_log (size_t index, const char *text)
{
    char log [30000];
    uint64_t deadline = tu_mono_ns () + (uint64_t) MT_ELECT_MS * 1000000ULL;
    for (int rounds = 0; rounds < 10000 && tu_mono_ns () < deadline; rounds++) {
        bu_broker_log (mt_cluster->nodes [index], log, sizeof log);
        if (strstr (log, text))
            return;
        zclock_sleep (20);
    }
    char what [256];
    snprintf (what, sizeof what, "%s never logged '%s'", mt_cluster->names [index], text);
    mt_fail_with_logs (what);
}

Test (heraldd_members, an_add_cut_short_by_a_leader_kill_resumes_at_the_new_leader)
{
    mt_cluster_up ();
    int leader = mt_leader ();
    uint64_t head = mt_publish ((size_t) leader, "a", 4, 1);
    bu_broker_t *n4 = mt_cluster->nodes [3];
    cr_assert_eq (bu_broker_respawn (n4), 0);
    bu_node_status_t joining = mt_wait_state (3, "joining");
    mt_wait_raft (3);
    //  n4 frozen: the leader adds it as a spare, and its catch-up waits
    cr_assert_eq (kill (n4->pid, SIGSTOP), 0);
    s_add_request ((size_t) leader, 50, "n4", mt_cluster->raft [3], n4->api, n4->fanout,
                   joining.raft_id, NULL);
    s_wait_log ((size_t) leader, "n4 added as a spare; catching it up");
    //  The leader dies mid-change; n4 wakes up
    bu_broker_kill (mt_cluster->nodes [leader]);
    kill (n4->pid, SIGCONT);
    int next = mt_leader ();
    cr_assert_neq (next, leader);
    //  The same add, asked again: the new leader finds n4 a spare and
    //  resumes (promotion, then the member table)
    char endpoints [1024], out [8192];
    mt_endpoints ((size_t) next, endpoints, sizeof endpoints);
    int rc = mt_herald (out, sizeof out, "cluster add n4 %s %s %s --endpoint %s --wait %d",
                        mt_cluster->raft [3], n4->api, n4->fanout, endpoints, S_CHANGE_MS);
    if (rc != 0) {
        char what [9000];
        snprintf (what, sizeof what, "herald cluster add exited %d:\n%s", rc, out);
        mt_fail_with_logs (what);
    }
    s_wait_log ((size_t) next, "n4 is in the configuration already (a spare): the add resumes");
    mt_wait_state (3, "member");
    s_wait_counts (3, 4, 4);
    head = mt_publish ((size_t) next, "b", 2, 100);
    unsigned mask = 1u << 3;
    for (size_t index = 0; index < MT_MEMBERS; index++)
        if ((int) index != leader)
            mask |= 1u << index;
    s_check_identical (mask, head);
}

//  The leader's log from byte from on (heap; the caller frees it).
static char *
s_log_from (size_t index, size_t from)
{
    size_t size = 1 << 20;
    char *log = (char *) malloc (size);
    cr_assert_not_null (log);
    bu_broker_log (mt_cluster->nodes [index], log, size);
    size_t len = strlen (log);
    memmove (log, log + (from < len? from: len), len - (from < len? from: len) + 1);
    return log;
}

//  libraft 0.22.1 sends an InstallSnapshot once the snapshot is loaded
//  (a read on libuv's threadpool), to the follower's address as it was in
//  the configuration when it chose to send; a configuration change in
//  between freed that address, and the send read it: under ASan the
//  leader aborted (heap-use-after-free in libraft's uvGetClient, 3 runs
//  of 5 of the test above).  The test hook holds every loaded snapshot
//  2 s, and n4 is added while the one for a follower back from away is
//  held (the leader's log says the configuration changed meanwhile):
//  herald_raft.c's s_io_send gives libraft the follower's address as it
//  is now, and the follower catches up.  Without s_io_send this aborted
//  in every run under ./test.sh --sanitize; a plain build reads the freed
//  bytes unnoticed (the snapshot goes astray and is sent again later).
Test (heraldd_members, a_change_while_a_snapshot_waits_to_be_sent)
{
    setenv ("HERALD_TEST_RAFT_SNAPSHOT_HOLD_MS", "2000", 1);
    mt_cluster_up ();
    int leader = mt_leader ();
    size_t follower = (size_t) (leader + 1) % MT_MEMBERS;
    bu_broker_t *n4 = mt_cluster->nodes [3];
    cr_assert_eq (bu_broker_respawn (n4), 0);
    bu_node_status_t joining = mt_wait_state (3, "joining");
    mt_wait_raft (3);
    //  The follower away while the leader's log moves 3 snapshots on
    cr_assert_eq (bu_broker_stop (mt_cluster->nodes [follower], BT_STOP_MS), 0);
    uint64_t head = mt_publish ((size_t) leader, "away", 24, 1);
    char *log = s_log_from ((size_t) leader, 0);
    size_t seen = strlen (log);
    free (log);
    cr_assert_eq (bu_broker_respawn (mt_cluster->nodes [follower]), 0);

    //  The leader holds the snapshot it loaded for the follower
    unsigned number = 0;
    uint64_t deadline = tu_mono_ns () + (uint64_t) S_SYNC_MS * 1000000ULL;
    for (int rounds = 0; rounds < 10000 && !number && tu_mono_ns () < deadline; rounds++) {
        log = s_log_from ((size_t) leader, seen);
        const char *line = strstr (log, "raft: test hook: snapshot load ");
        if (!line || sscanf (line, "raft: test hook: snapshot load %u held", &number) != 1)
            zclock_sleep (10);
        free (log);
    }
    if (!number)
        mt_fail_with_logs ("the leader held no snapshot for the follower back from away");
    //  n4 added meanwhile (raft_add: a new configuration)
    s_add_request ((size_t) leader, 50, "n4", mt_cluster->raft [3], n4->api, n4->fanout,
                   joining.raft_id, NULL);
    char sent [96];
    snprintf (sent, sizeof sent, "raft: test hook: snapshot load %u goes to libraft", number);
    const char *line = NULL;
    log = NULL;
    deadline = tu_mono_ns () + (uint64_t) S_SYNC_MS * 1000000ULL;
    for (int rounds = 0; rounds < 10000 && !line && tu_mono_ns () < deadline; rounds++) {
        free (log);
        log = s_log_from ((size_t) leader, seen);
        line = strstr (log, sent);
        if (!line)
            zclock_sleep (20);
    }
    if (!line) {
        free (log);
        mt_fail_with_logs ("the held snapshot never went to libraft (did the leader abort?)");
    }
    const char *changed = strstr (line, "changed meanwhile");
    const char *end = strchr (line, '\n');
    bool hit = changed && (!end || changed < end);
    free (log);
    cr_assert (hit, "the add did not land while snapshot load %u was held", number);

    //  The change completes; the follower is caught up, the four agree
    mt_wait_state (3, "member");
    for (size_t index = 0; index < MT_ALL; index++)
        s_wait_counts_within (index, 4, 4, S_CHANGE_MS);
    head = mt_publish ((size_t) leader, "back", 2, 100);
    s_check_identical (0xf, head);
}

Test (heraldd_members, transfer_to_a_named_node_and_the_refusals)
{
    mt_cluster_up ();
    int leader = mt_leader ();
    size_t follower = (size_t) (leader + 1) % MT_MEMBERS;
    size_t other = (size_t) (leader + 2) % MT_MEMBERS;
    mt_publish ((size_t) leader, "a", 2, 1);

    //  Asked of a follower: not_leader naming the leader's api
    bu_reply_t reply;
    s_cluster_request (follower, 11, "transfer", NULL, &reply);
    bt_check_error (&reply, HERALD_ERR_NOT_LEADER, true, 11);
    cr_assert (bu_str_eq (reply.body.error.leader, mt_cluster->nodes [leader]->api));
    bu_reply_fini (&reply);
    //  An unknown node: bad_request, nothing changes
    s_cluster_request ((size_t) leader, 12, "remove", "nobody", &reply);
    bt_check_error (&reply, HERALD_ERR_BAD_REQUEST, true, 12);
    bu_reply_fini (&reply);
    s_cluster_request ((size_t) leader, 13, "grow", "n9", &reply);
    bt_check_error (&reply, HERALD_ERR_BAD_REQUEST, true, 13);
    bu_reply_fini (&reply);
    bu_node_status_t status;
    cr_assert_eq (bu_node_status (mt_cluster->nodes [leader]->api, &status, BT_WAIT_MS), 0);
    cr_assert_eq (status.voters, 3);

    //  Transfer to a named node: it leads, and the old leader says so
    char endpoints [1024], out [8192];
    mt_endpoints (follower, endpoints, sizeof endpoints);
    int rc = mt_herald (out, sizeof out, "cluster transfer %s --endpoint %s",
                        mt_cluster->names [other], endpoints);
    cr_assert_eq (rc, 0, "%s", out);
    char leads [64];
    snprintf (leads, sizeof leads, "\"leader\":\"%s\"", mt_cluster->names [other]);
    cr_assert_not_null (strstr (out, leads), "%s", out);
    cr_assert_eq (mt_leader (), (int) other);
    mt_publish_once ((size_t) leader, "b", 1, 20, &reply);
    bt_check_error (&reply, HERALD_ERR_NOT_LEADER, true, 20);
    cr_assert (bu_str_eq (reply.body.error.leader, mt_cluster->nodes [other]->api),
               "not_leader names %.*s", (int) reply.body.error.leader.len,
               reply.body.error.leader.ptr);
    bu_reply_fini (&reply);
    //  Without a name: the most up-to-date voter, whichever it is
    rc = mt_herald (out, sizeof out, "cluster transfer --endpoint %s", endpoints);
    cr_assert_eq (rc, 0, "%s", out);
    int now = mt_leader ();
    cr_assert_neq (now, (int) other);

    //  Removing the leader itself: it hands leadership over first, and
    //  the command follows not_leader to the new leader, which removes it
    rc = mt_herald (out, sizeof out, "cluster remove %s --endpoint %s",
                    mt_cluster->names [now], endpoints);
    cr_assert_eq (rc, 0, "%s", out);
    int old = now;
    now = mt_leader ();
    cr_assert_neq (now, old);
    cr_assert_eq (bu_node_status (mt_cluster->nodes [now]->api, &status, BT_WAIT_MS), 0);
    cr_assert_eq (status.voters, 2);
    cr_assert_eq (status.peer_count, 2);
    bu_broker_stop (mt_cluster->nodes [old], BT_STOP_MS);

    //  n4 lists the stopped node among its peers: it keeps asking it its
    //  raft id, its Raft node does not start, and herald refuses to add it
    bu_broker_t *n4 = mt_cluster->nodes [3];
    cr_assert_eq (bu_broker_respawn (n4), 0);
    mt_wait_state (3, "joining");
    rc = mt_herald (out, sizeof out, "cluster add n4 %s %s %s --endpoint %s",
                    mt_cluster->raft [3], n4->api, n4->fanout, endpoints);
    cr_assert_eq (rc, 1, "%s", out);
    cr_assert_not_null (strstr (out, "has not started its Raft node yet"), "%s", out);
    cr_assert_eq (bu_node_status (mt_cluster->nodes [now]->api, &status, BT_WAIT_MS), 0);
    cr_assert_eq (status.voters, 2);

    //  One change at a time: an add that cannot finish (nothing listens
    //  at its raft address) holds the slot; a second change is refused
    char ghost [32];
    snprintf (ghost, sizeof ghost, "127.0.0.1:%d", bu_free_port ());
    s_add_request ((size_t) now, 30, "ghost", ghost, "tcp://127.0.0.1:9", "tcp://127.0.0.1:9",
                   4242, NULL);
    s_wait_log ((size_t) now, "cluster: add ghost asked");
    s_cluster_request ((size_t) now, 31, "transfer", NULL, &reply);
    bt_check_error (&reply, HERALD_ERR_OVERLOADED, true, 31);
    cr_assert_not_null (strstr (reply.body.error.message.ptr, "one at a time"));
    bu_reply_fini (&reply);
    //  Publishing goes on meanwhile
    mt_publish ((size_t) now, "c", 1, 40);
}

Test (heraldd_members, a_standalone_broker_does_not_know_cluster)
{
    bt_start ();
    zsock_t *client = bt_client ();
    msgpack_sbuffer sbuf;
    msgpack_sbuffer_init (&sbuf);
    bu_pack_rid (&sbuf, 3);
    bu_send_sbuf (client, "CLUSTER", &sbuf);
    msgpack_sbuffer_destroy (&sbuf);
    bt_expect_error (client, HERALD_ERR_UNKNOWN_COMMAND, true, 3);
}

Test (heraldd_members, sigterm_of_the_leader_hands_over_and_the_gap_is_measured)
{
    mt_cluster_up ();
    int leader = mt_leader ();
    mt_publish ((size_t) leader, "a", 1, 1);
    //  A client that gives up on a reply after 200 ms: a PUBLISH that
    //  reached the leader after it stopped reading is never answered
    s_publisher_t publisher = { .target = (size_t) leader, .reply_ms = 200 };
    pthread_t thread;
    cr_assert_eq (pthread_create (&thread, NULL, s_publisher_run, &publisher), 0);
    zclock_sleep (500);
    uint64_t signalled = tu_mono_ns ();
    atomic_store (&publisher.signal_ns, signalled);
    int rc = bu_broker_stop (mt_cluster->nodes [leader], BT_STOP_MS);
    uint64_t exited = tu_mono_ns ();
    int next = mt_leader_within (MT_ELECT_MS);
    //  Until ACKs come again (bounded), then a little more
    for (int rounds = 0; rounds < 200 && !publisher.first_after_ns; rounds++)
        zclock_sleep (50);
    zclock_sleep (200);
    atomic_store (&publisher.stop, true);
    pthread_join (thread, NULL);
    cr_assert_eq (rc, 0, "the leader did not stop on SIGTERM");
    cr_assert (WIFEXITED (mt_cluster->nodes [leader]->status)
               && WEXITSTATUS (mt_cluster->nodes [leader]->status) == 0);
    cr_assert_geq (next, 0);
    cr_assert_neq (next, leader);
    cr_assert_neq (publisher.first_after_ns, 0, "no ACK after the leader stopped");
    //  Reported, not asserted (the goal is <= 0.3 s; a loaded 2-core
    //  machine decides the figure as much as the code does)
    fprintf (stderr, "members: SIGTERM of the leader: it exited after %.3f s; publishing "
             "stopped %.3f s (last ACK before the signal to the first ACK of a batch sent "
             "after it; %.3f s from the signal); %zu ACKs, %zu refusals, %zu unanswered "
             "(200 ms each)\n", (double) (exited - signalled) / 1e9,
             (double) (publisher.first_after_ns - publisher.last_before_ns) / 1e9,
             (double) (publisher.first_after_ns - signalled) / 1e9,
             publisher.acks, publisher.refusals, publisher.silences);
}
