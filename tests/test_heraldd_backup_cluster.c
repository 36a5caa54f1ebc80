/*  =========================================================================
    test_heraldd_backup_cluster - a cluster node's backup seeds a new node

    Three real heraldd nodes on 127.0.0.1 (snapshots every 8 entries
    through the test hook, so a joining node catches up by a snapshot and
    HWP/1 REPLAY).  A follower is backed up (BACKUP) while the leader
    acknowledges; more events follow; the backup is restored (herald
    restore) into the data directory of a fourth node, which starts with
    --cluster-state existing and is added with `herald cluster add`.  It
    takes a new raft id (not the backed-up node's: the Raft log and vote
    are not in a backup), copies only the events after the backup's head
    from its peers (its log says which), and then holds the leader's log
    byte for byte, with the same digest.  The same backup restored for a
    standalone broker serves its events and takes new ones.  And a node whose data directory
    is lost comes back from its own backup under its own name: with a new
    raft id (the backup has no Raft term or vote: keeping the old id would
    let it vote twice in a term), so its old self is removed first, then
    it is added and catches up from the backup's head.
    =========================================================================
*/

#include <criterion/criterion.h>
#include <inttypes.h>
#include <stdarg.h>
#include <string.h>
#include <sys/wait.h>
#include "membertest.h"

#define S_SYNC_MS       30000
#define S_CHANGE_MS     30000       //  herald cluster ... --wait

static char *s_dir;

static void
s_setup (void)
{
    bt_setup ();
    setenv ("HERALD_TEST_HOOKS", "1", 1);
    setenv ("HERALD_TEST_RAFT_SNAPSHOT", "8", 1);
    s_dir = tu_tmpdir_new ("backup-cluster");
    cr_assert_not_null (s_dir);
}

static void
s_teardown (void)
{
    bt_teardown ();
    bu_cluster_destroy (&mt_cluster);
    tu_tmpdir_destroy (&s_dir);
}

TestSuite (heraldd_backup_cluster, .init = s_setup, .fini = s_teardown, .timeout = 180);

//  ---------------------------------------------------------------------
//  Helpers (the cluster's are tests/membertest's)

//  A BACKUP of node index into to; the head it holds.
static uint64_t
s_backup (size_t index, const char *to)
{
    char out [8192];
    int rc = mt_herald (out, sizeof out, "--endpoint %s --format json backup --to %s",
                        mt_cluster->nodes [index]->api, to);
    if (rc != 0) {
        char what [9000];
        snprintf (what, sizeof what, "herald backup exited %d:\n%s", rc, out);
        mt_fail_with_logs (what);
    }
    const char *head = strstr (out, "\"head\":");
    cr_assert_not_null (head, "%s", out);
    return strtoull (head + 7, NULL, 10);
}

Test (heraldd_backup_cluster, a_followers_backup_seeds_a_new_node_that_copies_only_what_came_after)
{
    mt_cluster_up ();
    int leader = mt_leader ();
    size_t follower = (size_t) (leader + 1) % MT_MEMBERS;
    uint64_t head = mt_publish ((size_t) leader, "before", 24, 1);
    cr_assert_eq (head, 120);
    //  The follower has applied them all once its head says so
    bu_node_status_t status;
    uint64_t deadline = tu_mono_ns () + (uint64_t) S_SYNC_MS * 1000000ULL;
    for (int rounds = 0; rounds < 100000; rounds++) {
        if (bu_node_status (mt_cluster->nodes [follower]->api, &status, 1000) == 0
        &&  status.head == head)
            break;
        cr_assert (tu_mono_ns () < deadline, "the follower did not apply seq %" PRIu64, head);
        zclock_sleep (20);
    }
    char *to = tu_path (s_dir, "n2-backup");
    uint64_t backed = s_backup (follower, to);
    cr_assert_eq (backed, head);
    //  The cluster moves on past it (and past more snapshots)
    uint64_t last = mt_publish ((size_t) leader, "after", 24, 100);
    cr_assert_eq (last, 240);

    //  The same backup read by a standalone broker (every node's data lost):
    //  it serves the backup's events and takes new ones after them
    bt_second = bu_broker_new ("backup-standalone", NULL);
    cr_assert_not_null (bt_second);
    char out [8192];
    int rc = mt_herald (out, sizeof out, "restore --from %s --data-dir %s", to,
                        bt_second->data_dir);
    cr_assert_eq (rc, 0, "%s", out);
    cr_assert_eq (bu_broker_start (bt_second, BT_START_MS), 0);
    zsock_t *alone = bt_keep (bu_dealer_new (bt_second->api));
    cr_assert_eq (bt_head (alone), backed);
    bt_publish_many (alone, "standalone", 2, 1);
    cr_assert_eq (bt_head (alone), backed + 2);
    bt_drop (&alone);
    bu_broker_destroy (&bt_second);

    //  Restored into n4's data directory: the seed of a new node
    bu_broker_t *n4 = mt_cluster->nodes [3];
    rc = mt_herald (out, sizeof out, "restore --from %s --data-dir %s", to, n4->data_dir);
    cr_assert_eq (rc, 0, "%s", out);
    cr_assert_not_null (strstr (out, "seed of a NEW node"), "%s", out);
    cr_assert_eq (bu_broker_respawn (n4), 0);
    bu_node_status_t joining = mt_wait_state (3, "joining");
    mt_wait_raft (3);
    cr_assert_eq (joining.head, backed, "the seed serves the backup's events");
    //  A raft id of its own: not the follower's
    bu_node_status_t original;
    cr_assert_eq (bu_node_status (mt_cluster->nodes [follower]->api, &original, BT_WAIT_MS), 0);
    cr_assert_neq (joining.raft_id, original.raft_id);

    char endpoints [1024];
    mt_endpoints ((size_t) leader, endpoints, sizeof endpoints);
    rc = mt_herald (out, sizeof out, "cluster add n4 %s %s %s --endpoint %s --wait %d",
                    mt_cluster->raft [3], n4->api, n4->fanout, endpoints, S_CHANGE_MS);
    if (rc != 0) {
        char what [9000];
        snprintf (what, sizeof what, "herald cluster add exited %d:\n%s", rc, out);
        mt_fail_with_logs (what);
    }
    cr_assert_not_null (strstr (out, "\"voters\":4"), "%s", out);

    //  It catches up to the leader: the same head and digest
    bu_node_status_t lead;
    cr_assert_eq (bu_node_status (mt_cluster->nodes [leader]->api, &lead, BT_WAIT_MS), 0);
    deadline = tu_mono_ns () + (uint64_t) S_SYNC_MS * 1000000ULL;
    for (int rounds = 0; rounds < 100000; rounds++) {
        if (bu_node_status (n4->api, &status, 1000) == 0 && status.head == lead.head
        &&  streq (status.cluster_state, "member"))
            break;
        if (tu_mono_ns () >= deadline)
            mt_fail_with_logs ("n4 did not catch up");
        zclock_sleep (20);
    }
    cr_assert_str_eq (status.digest, lead.digest, "n4 and the leader hold different logs");
    size_t len_leader = 0, len_n4 = 0;
    uint8_t *bytes_leader = bt_replay_bytes (mt_cluster->nodes [leader]->api, "leader",
                                             lead.head, &len_leader);
    uint8_t *bytes_n4 = bt_replay_bytes (n4->api, "n4", lead.head, &len_n4);
    cr_assert_eq (len_leader, len_n4);
    cr_assert_eq (memcmp (bytes_leader, bytes_n4, len_n4), 0, "n4's log differs");

    //  Nothing was lost: n4 is at the cluster's lineage (0), not a restore's
    zsock_t *client = bt_keep (bu_dealer_new (n4->api));
    bu_reply_t reply;
    bt_status (client, 5, &reply);
    cr_assert_eq (reply.body.status.lineage, 0, "the seed recorded a loss");
    bu_reply_fini (&reply);
    bt_drop (&client);

    //  Only what came after the backup was copied (a snapshot's catch-up
    //  from head + 1), never the backup's own events
    char log [60000], want [96];
    bu_broker_log (n4, log, sizeof log);
    snprintf (want, sizeof want, "copied events %" PRIu64 "..", backed + 1);
    cr_assert_not_null (strstr (log, want), "n4's log:\n%s", log);
    cr_assert_null (strstr (log, "copied events 1.."), "n4's log:\n%s", log);
    free (to);
}

//  A node that lost its data directory comes back from its own backup,
//  under its own name: a new raft id (its old term and vote are gone with
//  raft/), so its old self is removed first, as for a wiped node.
Test (heraldd_backup_cluster, a_lost_node_comes_back_from_its_backup_under_its_name)
{
    mt_cluster_up ();
    int leader = mt_leader ();
    size_t lost = (size_t) (leader + 1) % MT_MEMBERS;
    bu_broker_t *node = mt_cluster->nodes [lost];
    uint64_t head = mt_publish ((size_t) leader, "before", 24, 1);
    bu_node_status_t old;
    uint64_t deadline = tu_mono_ns () + (uint64_t) S_SYNC_MS * 1000000ULL;
    for (int rounds = 0; rounds < 100000; rounds++) {
        if (bu_node_status (node->api, &old, 1000) == 0 && old.head == head)
            break;
        cr_assert (tu_mono_ns () < deadline, "the follower did not apply seq %" PRIu64, head);
        zclock_sleep (20);
    }
    char *to = tu_path (s_dir, "lost-backup");
    uint64_t backed = s_backup (lost, to);
    cr_assert_eq (backed, head);
    mt_publish ((size_t) leader, "after", 24, 100);

    //  The disk is lost; the backup is restored in its place
    bu_broker_kill (node);
    cr_assert_eq (tu_rmtree (node->data_dir), 0);
    char out [8192];
    int rc = mt_herald (out, sizeof out, "restore --from %s --data-dir %s", to, node->data_dir);
    cr_assert_eq (rc, 0, "%s", out);
    mt_add_flags (node, "--cluster-state", "existing");
    cr_assert_eq (bu_broker_respawn (node), 0);
    bu_node_status_t fresh = mt_wait_state (lost, "joining");
    mt_wait_raft (lost);
    cr_assert_neq (fresh.raft_id, old.raft_id, "the restored node votes as its old self");
    cr_assert_eq (fresh.head, backed);

    char endpoints [1024];
    mt_endpoints ((size_t) leader, endpoints, sizeof endpoints);
    rc = mt_herald (out, sizeof out, "cluster add %s %s %s %s --endpoint %s",
                    mt_cluster->names [lost], mt_cluster->raft [lost], node->api, node->fanout,
                    endpoints);
    cr_assert_eq (rc, 1, "%s", out);
    cr_assert_not_null (strstr (out, "remove it first"), "%s", out);
    rc = mt_herald (out, sizeof out, "cluster remove %" PRIu64 " --endpoint %s", old.raft_id,
                    endpoints);
    cr_assert_eq (rc, 0, "%s", out);
    rc = mt_herald (out, sizeof out, "cluster add %s %s %s %s --endpoint %s --wait %d",
                    mt_cluster->names [lost], mt_cluster->raft [lost], node->api, node->fanout,
                    endpoints, S_CHANGE_MS);
    if (rc != 0) {
        char what [9000];
        snprintf (what, sizeof what, "herald cluster add exited %d:\n%s", rc, out);
        mt_fail_with_logs (what);
    }
    uint64_t last = mt_publish ((size_t) leader, "back", 2, 300);
    bu_node_status_t lead, status;
    deadline = tu_mono_ns () + (uint64_t) S_SYNC_MS * 1000000ULL;
    for (int rounds = 0; rounds < 100000; rounds++) {
        if (bu_node_status (node->api, &status, 1000) == 0 && status.head == last
        &&  streq (status.cluster_state, "member"))
            break;
        if (tu_mono_ns () >= deadline)
            mt_fail_with_logs ("the restored node did not catch up");
        zclock_sleep (20);
    }
    cr_assert_eq (bu_node_status (mt_cluster->nodes [leader]->api, &lead, BT_WAIT_MS), 0);
    cr_assert_eq (lead.head, last);
    cr_assert_str_eq (status.digest, lead.digest, "the restored node holds another log");
    cr_assert_eq (lead.voters, 3);
    char log [60000], want [96];
    bu_broker_log (node, log, sizeof log);
    snprintf (want, sizeof want, "copied events %" PRIu64 "..", backed + 1);
    cr_assert_not_null (strstr (log, want), "its log:\n%s", log);
    free (to);
}
