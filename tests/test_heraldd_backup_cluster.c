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
#include "brokertest.h"

#define S_ALL           4           //  nodes made; n4 joins later
#define S_MEMBERS       3           //  the bootstrap members
#define S_ELECT_MS      15000
#define S_SYNC_MS       30000
#define S_CHANGE_MS     30000       //  herald cluster ... --wait

static const char *s_flags [] = { "--election-ms", "500", "--raft-heartbeat-ms", "50",
                                  "--heartbeat-ms", "200", "--idle-flush-ms", "0", NULL };

static bu_cluster_t *s_cluster;
static char s_peer [S_ALL][160];    //  each node's --peer value
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
    bu_cluster_destroy (&s_cluster);
    tu_tmpdir_destroy (&s_dir);
}

TestSuite (heraldd_backup_cluster, .init = s_setup, .fini = s_teardown, .timeout = 180);

//  ---------------------------------------------------------------------
//  Helpers (as tests/test_heraldd_members.c's)

static void
s_fail_with_logs (const char *what)
{
    char text [12000] = "";
    size_t used = 0;
    for (size_t index = 0; s_cluster && index < s_cluster->count; index++) {
        char log [2500];
        bu_broker_log_tail (s_cluster->nodes [index], log, sizeof log);
        used += (size_t) snprintf (text + used, used < sizeof text? sizeof text - used: 0,
                                   "--- %s:\n%s\n", s_cluster->names [index], log);
    }
    cr_assert_fail ("%s\n%s", what, text);
}

//  Remove the pair "--peer SPEC" from node's flags.
static void
s_drop_peer (bu_broker_t *node, const char *spec)
{
    size_t count = 0;
    while (node->extra [count])
        count++;
    for (size_t index = 0; index + 1 < count; index++)
        if (streq (node->extra [index], "--peer") && streq (node->extra [index + 1], spec)) {
            free (node->extra [index]);
            free (node->extra [index + 1]);
            memmove (&node->extra [index], &node->extra [index + 2],
                     (count - index - 1) * sizeof (char *));
            node->extra [count - 1] = NULL;     //  moved: freed once, by destroy
            return;
        }
}

static void
s_add_flags (bu_broker_t *node, const char *flag, const char *value)
{
    size_t count = 0;
    while (node->extra [count])
        count++;
    cr_assert_lt (count + 2, BU_MAX_ARGS);
    node->extra [count] = strdup (flag);
    node->extra [count + 1] = strdup (value);
    node->extra [count + 2] = NULL;
}

//  Wait until node answers STATUS with cluster_state state.
static bu_node_status_t
s_wait_state (size_t index, const char *state)
{
    bu_node_status_t status;
    memset (&status, 0, sizeof status);
    uint64_t deadline = tu_mono_ns () + (uint64_t) S_ELECT_MS * 1000000ULL;
    for (int rounds = 0; rounds < 10000 && tu_mono_ns () < deadline; rounds++) {
        if (bu_node_status (s_cluster->nodes [index]->api, &status, 1000) == 0
        &&  streq (status.cluster_state, state) && status.raft_id)
            return status;
        zclock_sleep (50);
    }
    char what [128];
    snprintf (what, sizeof what, "%s is not %s", s_cluster->names [index], state);
    s_fail_with_logs (what);
    return status;
}

//  Wait until node index's Raft runs (a joining node first learns its
//  peers' raft ids, saying joining already; only then can it be added).
static void
s_wait_raft (size_t index)
{
    char want [64], log [20000];
    snprintf (want, sizeof want, "raft: node %s (raft id", s_cluster->names [index]);
    uint64_t deadline = tu_mono_ns () + (uint64_t) S_ELECT_MS * 1000000ULL;
    for (int rounds = 0; rounds < 10000 && tu_mono_ns () < deadline; rounds++) {
        bu_broker_log (s_cluster->nodes [index], log, sizeof log);
        const char *line = strstr (log, want);
        while (line && !strstr (line, ") started, state in"))
            line = strstr (line + 1, want);
        if (line && strstr (line, ") started, state in"))
            return;
        zclock_sleep (50);
    }
    s_fail_with_logs ("a joining node's Raft did not start");
}

//  Three members n1..n3 bootstrapped; n4 made (ports chosen, not
//  started) to join later with --cluster-state existing.
static void
s_cluster_up (void)
{
    s_cluster = bu_cluster_new ("members", S_ALL, s_flags);
    cr_assert_not_null (s_cluster, "cannot set up the nodes (is broker/heraldd built?)");
    for (size_t index = 0; index < S_ALL; index++)
        snprintf (s_peer [index], sizeof s_peer [index], "%s,%s,%s,%s",
                  s_cluster->names [index], s_cluster->raft [index],
                  s_cluster->nodes [index]->api, s_cluster->nodes [index]->fanout);
    for (size_t index = 0; index < S_MEMBERS; index++)
        s_drop_peer (s_cluster->nodes [index], s_peer [S_ALL - 1]);
    s_add_flags (s_cluster->nodes [S_ALL - 1], "--cluster-state", "existing");
    s_cluster->count = S_MEMBERS;
    int rc = bu_cluster_start (s_cluster, BT_START_MS);
    s_cluster->count = S_ALL;
    if (rc != 0)
        s_fail_with_logs ("the three members did not start");
}

//  The leader as every running member agrees (joining or removed nodes
//  know no leader, and are left out); -1 after timeout_ms.
static int
s_leader_within (int timeout_ms)
{
    uint64_t deadline = tu_mono_ns () + (uint64_t) timeout_ms * 1000000ULL;
    for (int rounds = 0; rounds < 100000; rounds++) {
        bu_node_status_t status [S_ALL];
        bool member [S_ALL] = { false };
        int leader = -1;
        bool agreed = true;
        for (size_t index = 0; index < s_cluster->count; index++) {
            if (s_cluster->nodes [index]->pid <= 0)
                continue;
            member [index] = bu_node_status (s_cluster->nodes [index]->api, &status [index],
                                             500) == 0
                          && streq (status [index].cluster_state, "member");
            if (member [index] && streq (status [index].role, "leader")) {
                if (leader >= 0)
                    agreed = false;
                leader = (int) index;
            }
        }
        for (size_t index = 0; leader >= 0 && index < s_cluster->count; index++)
            if (member [index] && !streq (status [index].leader, s_cluster->names [leader]))
                agreed = false;
        if (leader >= 0 && agreed)
            return leader;
        if (tu_mono_ns () >= deadline)
            break;
        zclock_sleep (50);
    }
    return -1;
}

static int
s_leader (void)
{
    int leader = s_leader_within (S_ELECT_MS);
    if (leader < 0)
        s_fail_with_logs ("no leader that every member names");
    return leader;
}

//  "E1,E2,..." of the nodes in order, starting with first.
static void
s_endpoints (size_t first, char *out, size_t size)
{
    size_t used = 0;
    for (size_t step = 0; step < S_MEMBERS; step++) {
        size_t index = (first + step) % S_MEMBERS;
        used += (size_t) snprintf (out + used, size - used, "%s%s", used? ",": "",
                                   s_cluster->nodes [index]->api);
    }
}

//  Run `herald ARGS`; its stdout and stderr into out; returns its exit
//  status (-1 when it did not exit).
static int
s_herald (char *out, size_t size, const char *format, ...)
{
    char *heraldd = bu_heraldd_path ();
    cr_assert_not_null (heraldd);
    char *slash = strrchr (heraldd, '/');
    *slash = 0;
    char command [4096];
    int used = snprintf (command, sizeof command, "'%s/../tools/herald' ", heraldd);
    free (heraldd);
    va_list args;
    va_start (args, format);
    vsnprintf (command + used, sizeof command - (size_t) used, format, args);
    va_end (args);
    strncat (command, " 2>&1", sizeof command - strlen (command) - 1);
    FILE *pipe = popen (command, "r");
    cr_assert_not_null (pipe);
    size_t got = fread (out, 1, size - 1, pipe);
    out [got] = 0;
    int status = pclose (pipe);
    return WIFEXITED (status)? WEXITSTATUS (status): -1;
}

//  A PUBLISH of count events on topic to node index; the reply, decoded.
static void
s_publish_once (size_t index, const char *topic, size_t count, uint64_t rid,
                bu_reply_t *reply)
{
    zsock_t *client = bt_keep (bu_dealer_new (s_cluster->nodes [index]->api));
    bu_event_t events [16];
    for (size_t event = 0; event < count; event++)
        bu_event_init (&events [event], topic, "member event");
    bt_send_publish (client, rid, events, count);
    bt_recv (client, reply);
    bt_drop (&client);
}

//  count batches of 5 to node index, each ACKed; the last seq.
static uint64_t
s_publish (size_t index, const char *topic, size_t count, uint64_t first_rid)
{
    uint64_t last = 0;
    for (size_t batch = 0; batch < count; batch++) {
        bu_reply_t reply;
        s_publish_once (index, topic, 5, first_rid + batch, &reply);
        if (reply.type == HERALD_MSG_ERROR)
            cr_assert_fail ("PUBLISH to %s: ERROR %s: %.*s", s_cluster->names [index],
                            herald_err_code (reply.body.error.code),
                            (int) reply.body.error.message.len, reply.body.error.message.ptr);
        bt_check_ack (&reply, first_rid + batch, 5);
        last = reply.body.ack.seq [4];
        bu_reply_fini (&reply);
    }
    return last;
}


//  A BACKUP of node index into to; the head it holds.
static uint64_t
s_backup (size_t index, const char *to)
{
    char out [8192];
    int rc = s_herald (out, sizeof out, "--endpoint %s --format json backup --to %s",
                       s_cluster->nodes [index]->api, to);
    if (rc != 0) {
        char what [9000];
        snprintf (what, sizeof what, "herald backup exited %d:\n%s", rc, out);
        s_fail_with_logs (what);
    }
    const char *head = strstr (out, "\"head\":");
    cr_assert_not_null (head, "%s", out);
    return strtoull (head + 7, NULL, 10);
}

Test (heraldd_backup_cluster, a_followers_backup_seeds_a_new_node_that_copies_only_what_came_after)
{
    s_cluster_up ();
    int leader = s_leader ();
    size_t follower = (size_t) (leader + 1) % S_MEMBERS;
    uint64_t head = s_publish ((size_t) leader, "before", 24, 1);
    cr_assert_eq (head, 120);
    //  The follower has applied them all once its head says so
    bu_node_status_t status;
    uint64_t deadline = tu_mono_ns () + (uint64_t) S_SYNC_MS * 1000000ULL;
    for (int rounds = 0; rounds < 100000; rounds++) {
        if (bu_node_status (s_cluster->nodes [follower]->api, &status, 1000) == 0
        &&  status.head == head)
            break;
        cr_assert (tu_mono_ns () < deadline, "the follower did not apply seq %" PRIu64, head);
        zclock_sleep (20);
    }
    char *to = tu_path (s_dir, "n2-backup");
    uint64_t backed = s_backup (follower, to);
    cr_assert_eq (backed, head);
    //  The cluster moves on past it (and past more snapshots)
    uint64_t last = s_publish ((size_t) leader, "after", 24, 100);
    cr_assert_eq (last, 240);

    //  The same backup read by a standalone broker (every node's data lost):
    //  it serves the backup's events and takes new ones after them
    bt_second = bu_broker_new ("backup-standalone", NULL);
    cr_assert_not_null (bt_second);
    char out [8192];
    int rc = s_herald (out, sizeof out, "restore --from %s --data-dir %s", to,
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
    bu_broker_t *n4 = s_cluster->nodes [3];
    rc = s_herald (out, sizeof out, "restore --from %s --data-dir %s", to, n4->data_dir);
    cr_assert_eq (rc, 0, "%s", out);
    cr_assert_not_null (strstr (out, "seed of a NEW node"), "%s", out);
    cr_assert_eq (bu_broker_respawn (n4), 0);
    bu_node_status_t joining = s_wait_state (3, "joining");
    s_wait_raft (3);
    cr_assert_eq (joining.head, backed, "the seed serves the backup's events");
    //  A raft id of its own: not the follower's
    bu_node_status_t original;
    cr_assert_eq (bu_node_status (s_cluster->nodes [follower]->api, &original, BT_WAIT_MS), 0);
    cr_assert_neq (joining.raft_id, original.raft_id);

    char endpoints [1024];
    s_endpoints ((size_t) leader, endpoints, sizeof endpoints);
    rc = s_herald (out, sizeof out, "cluster add n4 %s %s %s --endpoint %s --wait %d",
                   s_cluster->raft [3], n4->api, n4->fanout, endpoints, S_CHANGE_MS);
    if (rc != 0) {
        char what [9000];
        snprintf (what, sizeof what, "herald cluster add exited %d:\n%s", rc, out);
        s_fail_with_logs (what);
    }
    cr_assert_not_null (strstr (out, "\"voters\":4"), "%s", out);

    //  It catches up to the leader: the same head and digest
    bu_node_status_t lead;
    cr_assert_eq (bu_node_status (s_cluster->nodes [leader]->api, &lead, BT_WAIT_MS), 0);
    deadline = tu_mono_ns () + (uint64_t) S_SYNC_MS * 1000000ULL;
    for (int rounds = 0; rounds < 100000; rounds++) {
        if (bu_node_status (n4->api, &status, 1000) == 0 && status.head == lead.head
        &&  streq (status.cluster_state, "member"))
            break;
        if (tu_mono_ns () >= deadline)
            s_fail_with_logs ("n4 did not catch up");
        zclock_sleep (20);
    }
    cr_assert_str_eq (status.digest, lead.digest, "n4 and the leader hold different logs");
    size_t len_leader = 0, len_n4 = 0;
    uint8_t *bytes_leader = bt_replay_bytes (s_cluster->nodes [leader]->api, "leader",
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
    s_cluster_up ();
    int leader = s_leader ();
    size_t lost = (size_t) (leader + 1) % S_MEMBERS;
    bu_broker_t *node = s_cluster->nodes [lost];
    uint64_t head = s_publish ((size_t) leader, "before", 24, 1);
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
    s_publish ((size_t) leader, "after", 24, 100);

    //  The disk is lost; the backup is restored in its place
    bu_broker_kill (node);
    cr_assert_eq (tu_rmtree (node->data_dir), 0);
    char out [8192];
    int rc = s_herald (out, sizeof out, "restore --from %s --data-dir %s", to, node->data_dir);
    cr_assert_eq (rc, 0, "%s", out);
    s_add_flags (node, "--cluster-state", "existing");
    cr_assert_eq (bu_broker_respawn (node), 0);
    bu_node_status_t fresh = s_wait_state (lost, "joining");
    s_wait_raft (lost);
    cr_assert_neq (fresh.raft_id, old.raft_id, "the restored node votes as its old self");
    cr_assert_eq (fresh.head, backed);

    char endpoints [1024];
    s_endpoints ((size_t) leader, endpoints, sizeof endpoints);
    rc = s_herald (out, sizeof out, "cluster add %s %s %s %s --endpoint %s",
                   s_cluster->names [lost], s_cluster->raft [lost], node->api, node->fanout,
                   endpoints);
    cr_assert_eq (rc, 1, "%s", out);
    cr_assert_not_null (strstr (out, "remove it first"), "%s", out);
    rc = s_herald (out, sizeof out, "cluster remove %" PRIu64 " --endpoint %s", old.raft_id,
                   endpoints);
    cr_assert_eq (rc, 0, "%s", out);
    rc = s_herald (out, sizeof out, "cluster add %s %s %s %s --endpoint %s --wait %d",
                   s_cluster->names [lost], s_cluster->raft [lost], node->api, node->fanout,
                   endpoints, S_CHANGE_MS);
    if (rc != 0) {
        char what [9000];
        snprintf (what, sizeof what, "herald cluster add exited %d:\n%s", rc, out);
        s_fail_with_logs (what);
    }
    uint64_t last = s_publish ((size_t) leader, "back", 2, 300);
    bu_node_status_t lead, status;
    deadline = tu_mono_ns () + (uint64_t) S_SYNC_MS * 1000000ULL;
    for (int rounds = 0; rounds < 100000; rounds++) {
        if (bu_node_status (node->api, &status, 1000) == 0 && status.head == last
        &&  streq (status.cluster_state, "member"))
            break;
        if (tu_mono_ns () >= deadline)
            s_fail_with_logs ("the restored node did not catch up");
        zclock_sleep (20);
    }
    cr_assert_eq (bu_node_status (s_cluster->nodes [leader]->api, &lead, BT_WAIT_MS), 0);
    cr_assert_eq (lead.head, last);
    cr_assert_str_eq (status.digest, lead.digest, "the restored node holds another log");
    cr_assert_eq (lead.voters, 3);
    char log [60000], want [96];
    bu_broker_log (node, log, sizeof log);
    snprintf (want, sizeof want, "copied events %" PRIu64 "..", backed + 1);
    cr_assert_not_null (strstr (log, want), "its log:\n%s", log);
    free (to);
}
