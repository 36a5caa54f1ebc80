/*  =========================================================================
    test_heraldd_groups_cluster - GROUP on a real three-node cluster
    (issue 15): only the leader serves it (a follower answers not_leader
    naming the leader's api); positions committed on the leader are
    replicated, survive a kill -9 of the leader, and the new leader serves
    them, keeping a member's claim under the current epochs; a partition
    nobody claims is granted by the new leader only once session_ms +
    election-ms have passed since it was elected; a heartbeat waiting for
    its grant on a leader cut off is answered not_leader, never GROUP.
    =========================================================================
*/

#include <criterion/criterion.h>
#include <inttypes.h>
#include "clusterutil.h"
#include "replytest.h"
#include "testutil.h"

#define S_WAIT_MS       5000
#define S_ELECT_MS      30000

static cu_cluster_t *s_cluster;
static zsock_t *s_socks [8];
static size_t s_sock_count;

static void
s_setup (void)
{
    zsys_handler_set (NULL);
    s_cluster = NULL;
    s_sock_count = 0;
}

static void
s_teardown (void)
{
    for (size_t index = 0; index < s_sock_count; index++)
        zsock_destroy (&s_socks [index]);
    cu_cluster_destroy (&s_cluster);
}

TestSuite (heraldd_groups_cluster, .init = s_setup, .fini = s_teardown, .timeout = 180);

static zsock_t *
s_client (size_t node)
{
    zsock_t *sock = bu_dealer_new (s_cluster->nodes [node].api);
    cr_assert_not_null (sock);
    cr_assert_lt (s_sock_count, 8);
    s_socks [s_sock_count++] = sock;
    return sock;
}

typedef struct {
    uint64_t partition, epoch;
} s_claim_t;

//  A heartbeat of member "a" of group (every topic) claiming claims, with
//  session_ms and partitions (0: not sent) for its creation; the reply
//  (caller fini's it).
static void
s_heartbeat_to (zsock_t *sock, uint64_t rid, const char *group, uint64_t session_ms,
                uint64_t partitions, const s_claim_t *claims, size_t count, rt_reply_t *reply)
{
    msgpack_sbuffer sbuf;
    msgpack_sbuffer_init (&sbuf);
    msgpack_packer pk;
    msgpack_packer_init (&pk, &sbuf, msgpack_sbuffer_write);
    msgpack_pack_map (&pk, 6 + (partitions? 1: 0));
    bu_pack_str (&pk, "rid");
    msgpack_pack_uint64 (&pk, rid);
    bu_pack_str (&pk, "op");
    bu_pack_str (&pk, "heartbeat");
    bu_pack_str (&pk, "group");
    bu_pack_str (&pk, group);
    bu_pack_str (&pk, "member");
    bu_pack_str (&pk, "a");
    bu_pack_str (&pk, "session_ms");
    msgpack_pack_uint64 (&pk, session_ms);
    if (partitions) {
        bu_pack_str (&pk, "partitions");
        msgpack_pack_uint64 (&pk, partitions);
    }
    bu_pack_str (&pk, "owned");
    msgpack_pack_array (&pk, count);
    for (size_t index = 0; index < count; index++) {
        msgpack_pack_array (&pk, 2);
        msgpack_pack_uint64 (&pk, claims [index].partition);
        msgpack_pack_uint64 (&pk, claims [index].epoch);
    }
    cr_assert_eq (bu_send_sbuf (sock, "GROUP", &sbuf), 0);
    msgpack_sbuffer_destroy (&sbuf);
    rt_recv (sock, reply, S_WAIT_MS);
}

//  Group "g", session 5000 ms.
static void
s_heartbeat (zsock_t *sock, uint64_t rid, const s_claim_t *claims, size_t count,
             rt_reply_t *reply)
{
    s_heartbeat_to (sock, rid, "g", 5000, 0, claims, count, reply);
}

Test (heraldd_groups_cluster, the_leader_serves_and_positions_survive_its_kill)
{
    cu_options_t options = { .election_ms = 500, .raft_heartbeat_ms = 50 };
    s_cluster = cu_cluster_new ("groups", 3, &options);
    cr_assert_not_null (s_cluster);
    char why [CU_WHY_MAX] = "";
    int leader = cu_cluster_start (s_cluster, S_ELECT_MS, why, sizeof (why));
    cr_assert_geq (leader, 0, "no leader: %s", why);
    size_t follower = ((size_t) leader + 1) % 3;
    //  A follower: not_leader, naming the leader's api
    zsock_t *to_follower = s_client (follower);
    rt_reply_t reply;
    s_heartbeat (to_follower, 1, NULL, 0, &reply);
    cr_assert_str_eq (reply.command, "ERROR");
    cr_assert (rt_str_is (rt_get (reply.body, "code"), "not_leader"));
    cr_assert (rt_str_is (rt_get (reply.body, "leader"), s_cluster->nodes [leader].api),
               "not_leader names the leader's api");
    rt_reply_fini (&reply);
    //  The leader: a member joins, holds all 32, commits a position each
    zsock_t *to_leader = s_client ((size_t) leader);
    s_heartbeat (to_leader, 2, NULL, 0, &reply);
    cr_assert_str_eq (reply.command, "GROUP");
    const msgpack_object *assigned = rt_get (reply.body, "assigned");
    cr_assert_eq (assigned->via.array.size, 32);
    s_claim_t claims [32];
    for (size_t index = 0; index < 32; index++) {
        claims [index].partition = rt_uint (&assigned->via.array.ptr [index], "partition");
        claims [index].epoch = rt_uint (&assigned->via.array.ptr [index], "epoch");
    }
    rt_reply_fini (&reply);
    msgpack_sbuffer sbuf;
    msgpack_sbuffer_init (&sbuf);
    msgpack_packer pk;
    msgpack_packer_init (&pk, &sbuf, msgpack_sbuffer_write);
    msgpack_pack_map (&pk, 5);
    bu_pack_str (&pk, "rid");
    msgpack_pack_uint64 (&pk, 3);
    bu_pack_str (&pk, "op");
    bu_pack_str (&pk, "commit");
    bu_pack_str (&pk, "group");
    bu_pack_str (&pk, "g");
    bu_pack_str (&pk, "member");
    bu_pack_str (&pk, "a");
    bu_pack_str (&pk, "positions");
    msgpack_pack_array (&pk, 32);
    for (size_t index = 0; index < 32; index++) {
        msgpack_pack_array (&pk, 4);
        msgpack_pack_uint64 (&pk, claims [index].partition);
        msgpack_pack_uint64 (&pk, claims [index].epoch);
        msgpack_pack_uint64 (&pk, 100 + claims [index].partition);
        msgpack_pack_uint64 (&pk, 200 + claims [index].partition);
    }
    cr_assert_eq (bu_send_sbuf (to_leader, "GROUP", &sbuf), 0);
    msgpack_sbuffer_destroy (&sbuf);
    rt_recv (to_leader, &reply, S_WAIT_MS);
    cr_assert_str_eq (reply.command, "GROUP");
    cr_assert_eq (rt_get (reply.body, "fenced")->via.array.size, 0);
    rt_reply_fini (&reply);
    //  The commit was answered once a majority had it: the leader dies
    cu_node_kill (s_cluster, (size_t) leader);
    int next = cu_wait_leader (s_cluster, 1u << leader, S_ELECT_MS);
    cr_assert_geq (next, 0, "no new leader");
    zsock_t *to_next = s_client ((size_t) next);
    //  The new leader serves the positions (asked until it answers as
    //  leader: its barrier is applied first)
    int64_t deadline = zclock_mono () + S_ELECT_MS;
    uint64_t rid = 10;
    while (true) {
        msgpack_sbuffer_init (&sbuf);
        msgpack_packer_init (&pk, &sbuf, msgpack_sbuffer_write);
        msgpack_pack_map (&pk, 3);
        bu_pack_str (&pk, "rid");
        msgpack_pack_uint64 (&pk, ++rid);
        bu_pack_str (&pk, "op");
        bu_pack_str (&pk, "show");
        bu_pack_str (&pk, "group");
        bu_pack_str (&pk, "g");
        cr_assert_eq (bu_send_sbuf (to_next, "GROUP", &sbuf), 0);
        msgpack_sbuffer_destroy (&sbuf);
        rt_recv (to_next, &reply, S_WAIT_MS);
        if (streq (reply.command, "GROUP"))
            break;
        cr_assert (rt_str_is (rt_get (reply.body, "code"), "not_leader"));
        rt_reply_fini (&reply);
        cr_assert (zclock_mono () < deadline, "the new leader never served GROUP");
        zclock_sleep (100);
    }
    const msgpack_object *positions = rt_get (reply.body, "positions");
    cr_assert_eq (positions->via.array.size, 32);
    for (size_t index = 0; index < 32; index++) {
        const msgpack_object *item = &positions->via.array.ptr [index];
        cr_assert_eq (rt_uint (item, "committed"), 100 + index);
        cr_assert_eq (rt_uint (item, "delivered"), 200 + index);
    }
    rt_reply_fini (&reply);
    //  The member comes back to the new leader: its claims are kept
    s_heartbeat (to_next, ++rid, claims, 32, &reply);
    cr_assert_str_eq (reply.command, "GROUP");
    assigned = rt_get (reply.body, "assigned");
    cr_assert_eq (assigned->via.array.size, 32, "claims under the current epochs are kept");
    for (size_t index = 0; index < 32; index++) {
        const msgpack_object *item = &assigned->via.array.ptr [index];
        cr_assert_eq (rt_uint (item, "epoch"), claims [index].epoch);
        cr_assert_eq (rt_uint (item, "committed"), 100 + rt_uint (item, "partition"));
    }
    rt_reply_fini (&reply);
}

//  The grace of a new leader.  An old leader cut off from its majority
//  answers heartbeats (renewing leases) until libraft makes it step down,
//  up to an election timeout after it last heard from a majority; the
//  new one may have been elected before that.  So a partition nobody
//  claims is granted by the new leader only once session_ms + election
//  ms have passed since it began to lead.  When it began is bounded from
//  below by the last STATUS it answered as a follower (or in an older
//  term): sent at `since`, the grant must not come before since +
//  session_ms + election_ms.  Only that order is asserted, not a speed.
Test (heraldd_groups_cluster, a_new_leader_grants_what_nobody_claims_only_after_session_and_election)
{
    enum { S_SESSION = 600, S_ELECTION = 1000, S_PARTS = 4 };
    cu_options_t options = { .election_ms = S_ELECTION, .raft_heartbeat_ms = 100 };
    s_cluster = cu_cluster_new ("groups-grace", 3, &options);
    cr_assert_not_null (s_cluster);
    char why [CU_WHY_MAX] = "";
    int leader = cu_cluster_start (s_cluster, S_ELECT_MS, why, sizeof (why));
    cr_assert_geq (leader, 0, "no leader: %s", why);
    //  A member holds all 4 partitions of a group made with session 600 ms
    zsock_t *to_leader = s_client ((size_t) leader);
    rt_reply_t reply;
    s_heartbeat_to (to_leader, 1, "late", S_SESSION, S_PARTS, NULL, 0, &reply);
    cr_assert_str_eq (reply.command, "GROUP");
    const msgpack_object *assigned = rt_get (reply.body, "assigned");
    cr_assert_eq (assigned->via.array.size, S_PARTS);
    s_claim_t claims [S_PARTS];
    for (size_t index = 0; index < S_PARTS; index++) {
        claims [index].partition = rt_uint (&assigned->via.array.ptr [index], "partition");
        claims [index].epoch = rt_uint (&assigned->via.array.ptr [index], "epoch");
        cr_assert_eq (claims [index].partition, index);
    }
    rt_reply_fini (&reply);
    //  Its grants are on a majority (answered once applied): the leader dies
    cu_status_t status;
    cr_assert_eq (cu_status (s_cluster, (size_t) leader, &status, S_WAIT_MS), 0);
    uint64_t old_term = status.term;
    int64_t since [3] = { 0, 0, 0 };        //  last sent STATUS answered not leading
    for (size_t index = 0; index < 3; index++)
        if ((int) index != leader) {
            since [index] = zclock_mono ();
            cr_assert_eq (cu_status (s_cluster, index, &status, S_WAIT_MS), 0);
            cr_assert_str_neq (status.role, "leader");
        }
    cu_node_kill (s_cluster, (size_t) leader);
    //  Poll the others until one leads in a newer term
    int next = -1;
    int64_t deadline = zclock_mono () + S_ELECT_MS;
    while (next < 0) {
        cr_assert (zclock_mono () < deadline, "no new leader");
        for (size_t index = 0; index < 3 && next < 0; index++) {
            if ((int) index == leader)
                continue;
            int64_t sent = zclock_mono ();
            if (cu_status (s_cluster, index, &status, 200) != 0)
                continue;
            if (streq (status.role, "leader") && status.term > old_term)
                next = (int) index;
            else
                since [index] = sent;
        }
        if (next < 0)
            zclock_sleep (10);
    }
    int64_t not_before = since [next] + S_SESSION + S_ELECTION;
    //  The member claims 0..2 from the new leader, not 3: those are kept at
    //  once, 3 waits the grace
    zsock_t *to_next = s_client ((size_t) next);
    uint64_t rid = 10;
    bool served = false, granted = false;
    deadline = not_before + 20000;
    while (!granted) {
        cr_assert (zclock_mono () < deadline, "partition 3 was never granted");
        s_heartbeat_to (to_next, ++rid, "late", S_SESSION, 0, claims, S_PARTS - 1, &reply);
        int64_t received = zclock_mono ();
        if (streq (reply.command, "GROUP")) {
            served = true;
            assigned = rt_get (reply.body, "assigned");
            for (size_t index = 0; index < assigned->via.array.size; index++) {
                const msgpack_object *item = &assigned->via.array.ptr [index];
                uint64_t partition = rt_uint (item, "partition");
                if (partition < S_PARTS - 1)
                    cr_assert_eq (rt_uint (item, "epoch"), claims [partition].epoch,
                                  "a claim under the current epoch is kept");
                else {
                    cr_assert_geq (received, not_before, "partition %" PRIu64 " was granted "
                                   "%" PRId64 " ms before session_ms + election_ms had "
                                   "passed since the new leader was elected", partition,
                                   not_before - received);
                    cr_assert_gt (rt_uint (item, "epoch"), claims [partition].epoch);
                    granted = true;
                }
            }
            cr_assert_geq (assigned->via.array.size, S_PARTS - 1);
        }
        else
            cr_assert (!served && rt_str_is (rt_get (reply.body, "code"), "not_leader"),
                       "only not_leader before the new leader serves GROUP");
        rt_reply_fini (&reply);
        zclock_sleep (50);
    }
}

//  A heartbeat whose reply waits for its grant, on a leader cut off from
//  the others: the grant cannot commit, and once the leader steps down the
//  heartbeat is answered not_leader, never GROUP (a GROUP reply would
//  renew the member's lease from a node that no longer leads).
Test (heraldd_groups_cluster, a_heartbeat_waiting_on_a_cut_off_leader_is_answered_not_leader)
{
    cu_options_t options = { .election_ms = 500, .raft_heartbeat_ms = 50, .proxies = true };
    s_cluster = cu_cluster_new ("groups-cut", 3, &options);
    cr_assert_not_null (s_cluster);
    char why [CU_WHY_MAX] = "";
    int leader = cu_cluster_start (s_cluster, S_ELECT_MS, why, sizeof (why));
    cr_assert_geq (leader, 0, "no leader: %s", why);
    zsock_t *to_leader = s_client ((size_t) leader);
    rt_reply_t reply;
    //  Group "cut" is made (a holds all 4), then a leaves: all 4 are free
    s_heartbeat_to (to_leader, 1, "cut", 5000, 4, NULL, 0, &reply);
    cr_assert_str_eq (reply.command, "GROUP");
    cr_assert_eq (rt_get (reply.body, "assigned")->via.array.size, 4);
    rt_reply_fini (&reply);
    msgpack_sbuffer sbuf;
    msgpack_sbuffer_init (&sbuf);
    msgpack_packer pk;
    msgpack_packer_init (&pk, &sbuf, msgpack_sbuffer_write);
    msgpack_pack_map (&pk, 4);
    bu_pack_str (&pk, "rid");
    msgpack_pack_uint64 (&pk, 2);
    bu_pack_str (&pk, "op");
    bu_pack_str (&pk, "leave");
    bu_pack_str (&pk, "group");
    bu_pack_str (&pk, "cut");
    bu_pack_str (&pk, "member");
    bu_pack_str (&pk, "a");
    cr_assert_eq (bu_send_sbuf (to_leader, "GROUP", &sbuf), 0);
    msgpack_sbuffer_destroy (&sbuf);
    rt_recv (to_leader, &reply, S_WAIT_MS);
    cr_assert_str_eq (reply.command, "GROUP");
    rt_reply_fini (&reply);
    //  The leader is cut off; a comes back: the grant of 0..3 it makes
    //  cannot reach a majority, so its heartbeat waits
    cr_assert_eq (cu_isolate (s_cluster, (size_t) leader, RP_DROP), 0);
    s_heartbeat_to (to_leader, 3, "cut", 5000, 0, NULL, 0, &reply);
    const msgpack_object *message = rt_get (reply.body, "message");
    cr_assert_str_eq (reply.command, "ERROR", "answered %s (%.*s) by a leader cut off",
                      reply.command, message? (int) message->via.str.size: 0,
                      message? message->via.str.ptr: "");
    cr_assert (rt_str_is (rt_get (reply.body, "code"), "not_leader"));
    rt_reply_fini (&reply);
    cr_assert_eq (cu_isolate (s_cluster, (size_t) leader, RP_PASS), 0);
}
