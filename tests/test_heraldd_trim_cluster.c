/*  =========================================================================
    test_heraldd_trim_cluster - trims in a 3-node cluster of real heraldd

    - TRIM goes to the leader (a follower answers not_leader) and is
      replicated: every node's STATUS first and trims are the same, and a
      follower refuses REPLAY below them `trimmed`; the leader killed -9,
      the new leader has them and trims on;
    - retention, applied by the leader, reaches every node;
    - a node restored from a Raft snapshot gets the trim points from the
      manifest (a trim writes no event: nothing else would bring it), and
      one too far behind the trims to copy what it lacks stops, saying to
      seed it from a backup, rather than retry in silence.
    =========================================================================
*/

#include <criterion/criterion.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include "brokertest.h"
#include "trimwire.h"

#define S_NODES         3
#define S_ELECT_MS      15000
#define S_SYNC_MS       15000

static bu_cluster_t *s_cluster;

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
    unsetenv ("HERALD_TEST_HOOKS");
    unsetenv ("HERALD_TEST_RAFT_SNAPSHOT");
}

TestSuite (heraldd_trim_cluster, .init = s_setup, .fini = s_teardown, .timeout = 90);

static void
s_fail_with_logs (const char *what)
{
    char text [12000] = "";
    size_t used = 0;
    for (size_t index = 0; s_cluster && index < s_cluster->count; index++) {
        char log [3000];
        bu_broker_log_tail (s_cluster->nodes [index], log, sizeof log);
        used += (size_t) snprintf (text + used, used < sizeof text? sizeof text - used: 0,
                                   "--- %s:\n%s\n", s_cluster->names [index], log);
    }
    cr_assert_fail ("%s\n%s", what, text);
}

static void
s_cluster_up (const char *const *more)
{
    const char *flags [16] = { "--election-ms", "500", "--raft-heartbeat-ms", "50",
                               "--heartbeat-ms", "200", "--idle-flush-ms", "0" };
    size_t count = 8;
    for (size_t index = 0; more && more [index] && count < 15; index++)
        flags [count++] = more [index];
    flags [count] = NULL;
    s_cluster = bu_cluster_new ("trim", S_NODES, flags);
    cr_assert_not_null (s_cluster);
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

//  n single-event PUBLISH requests to node index, each ACKed (one Raft
//  entry each); the last seq.
static uint64_t
s_publish (size_t index, const char *const *topics, size_t count, size_t n, uint64_t rid)
{
    zsock_t *sock = s_client (index);
    uint64_t last = 0;
    for (size_t at = 0; at < n; at++) {
        bu_event_t event;
        bu_event_init (&event, topics [at % count], "x");
        bu_reply_t reply;
        bt_publish (sock, rid + at, &event, 1, &reply);
        last = reply.body.ack.seq [0];
        bu_reply_fini (&reply);
    }
    bt_drop (&sock);
    return last;
}

//  Every running node (skip: one that is not) shows trims want and first,
//  polled within S_SYNC_MS.
static void
s_wait_trims (int skip, const char *want, uint64_t first)
{
    for (size_t index = 0; index < S_NODES; index++) {
        if ((int) index == skip)
            continue;
        zsock_t *sock = s_client (index);
        if (!tw_wait_trims (sock, want, S_SYNC_MS)) {
            char text [512], what [800];
            tw_status_trims (sock, text, sizeof text);
            snprintf (what, sizeof what, "%s: trims '%s', not '%s'", s_cluster->names [index],
                      text, want);
            s_fail_with_logs (what);
        }
        char text [512];
        cr_assert_eq (tw_status_trims (sock, text, sizeof text), first, "%s",
                      s_cluster->names [index]);
        cr_assert_str_eq (text, want, "%s", s_cluster->names [index]);
        bt_drop (&sock);
    }
}

//  Node index at head within S_SYNC_MS.
static void
s_wait_head (size_t index, uint64_t head)
{
    bu_node_status_t status;
    int64_t deadline = zclock_mono () + S_SYNC_MS;
    while (bu_node_status (s_cluster->nodes [index]->api, &status, 1000) != 0
       ||  status.head < head) {
        if (zclock_mono () > deadline) {
            char what [128];
            snprintf (what, sizeof what, "%s not at head %" PRIu64, s_cluster->names [index],
                      head);
            s_fail_with_logs (what);
        }
        zclock_sleep (20);
    }
}

static tw_trim_t
s_unarchived (const char *prefix, uint64_t until)
{
    return (tw_trim_t) { .has_prefix = prefix != NULL, .prefix = prefix, .has_until = true,
                         .until = until, .has_unarchived = true, .unarchived = true };
}

Test (heraldd_trim_cluster, a_trim_is_replicated_followers_refuse_and_the_next_leader_has_it)
{
    s_cluster_up (NULL);
    int leader = s_leader ();
    int follower = (leader + 1) % S_NODES;
    const char *topics [] = { "orders.1", "m.1" };
    cr_assert_eq (s_publish ((size_t) leader, topics, 2, 20, 100), 20);
    //  A follower's TRIM: not_leader, whatever it asks
    zsock_t *to_follower = s_client ((size_t) follower);
    tw_trim_t trim = s_unarchived (NULL, 8);
    tw_trim_refused (to_follower, 1, &trim, "not_leader", "leader");
    //  The leader's, with the archive's proof
    zsock_t *to_leader = s_client ((size_t) leader);
    uint8_t digest [32];
    tw_ids_digest (to_leader, 2, 1, 8, digest);
    trim = (tw_trim_t) { .has_until = true, .until = 8, .has_ids_from = true, .ids_from = 1,
                         .ids = digest, .ids_len = 32 };
    cr_assert_eq (tw_trim_ok (to_leader, 3, &trim, BT_WAIT_MS), 9);
    trim = s_unarchived ("orders.", 15);
    cr_assert_eq (tw_trim_ok (to_leader, 4, &trim, BT_WAIT_MS), 16);
    s_wait_trims (-1, ":8,orders.:15", 9);
    //  A follower serves only what is left
    tw_stream_t *stream = (tw_stream_t *) bt_calloc (1, sizeof (tw_stream_t));
    tw_replay (to_follower, 5, 1, NULL, 0, stream);
    cr_assert_str_eq (stream->reason, "trimmed", "%s %s", stream->ended, stream->message);
    cr_assert_eq (stream->first, 16);
    const char *m [] = { "m." };
    tw_replay (to_follower, 6, 9, m, 1, stream);
    cr_assert_str_eq (stream->ended, "END", "%s %s", stream->reason, stream->message);
    cr_assert_eq (stream->count, 6);            //  seqs 10, 12, .., 20
    //  kill -9 the leader: the next one has the trims and trims on
    bt_drop (&to_leader);
    bt_drop (&to_follower);
    bu_broker_kill (s_cluster->nodes [leader]);
    int next = bu_cluster_leader (s_cluster, S_ELECT_MS);
    if (next < 0)
        s_fail_with_logs ("no new leader after kill -9 of the leader");
    cr_assert_neq (next, leader);
    s_wait_trims (leader, ":8,orders.:15", 9);
    zsock_t *to_next = s_client ((size_t) next);
    trim = s_unarchived (NULL, 12);
    //  first: where a REPLAY of every topic may start, above orders.'s 15
    cr_assert_eq (tw_trim_ok (to_next, 7, &trim, BT_WAIT_MS), 16);
    //  The old leader comes back and catches up with the trim it missed
    if (bu_broker_restart (s_cluster->nodes [leader], BT_START_MS) != 0)
        s_fail_with_logs ("the old leader did not restart");
    s_wait_trims (-1, ":12,orders.:15", 13);
}

Test (heraldd_trim_cluster, retention_applied_by_the_leader_reaches_every_node)
{
    const char *more [] = { "--retention", "m.=1s", "--retention-interval-ms", "20", NULL };
    s_cluster_up (more);
    int leader = s_leader ();
    const char *topics [] = { "orders.1", "m.1" };
    cr_assert_eq (s_publish ((size_t) leader, topics, 2, 6, 100), 6);
    s_wait_trims (-1, "m.:6", 1);
    char log [65536];
    bu_broker_log (s_cluster->nodes [leader], log, sizeof log);
    cr_assert_not_null (strstr (log, "retention 'm.' 1s: trimmed"), "%s", log);
}

Test (heraldd_trim_cluster, a_snapshot_carries_the_trims_and_a_node_too_far_behind_is_told_to_seed)
{
    //  Snapshots every 8 entries: a node down for more restores from one
    setenv ("HERALD_TEST_HOOKS", "1", 1);
    setenv ("HERALD_TEST_RAFT_SNAPSHOT", "8", 1);
    s_cluster_up (NULL);
    int leader = s_leader ();
    int near = (leader + 1) % S_NODES, far = (leader + 2) % S_NODES;
    const char *topics [] = { "s.1" };
    //  near stops at seq 20 (one node down at a time: two keep the majority)
    cr_assert_eq (s_publish ((size_t) leader, topics, 1, 20, 100), 20);
    s_wait_head ((size_t) near, 20);
    cr_assert_eq (bu_broker_stop (s_cluster->nodes [near], BT_STOP_MS), 0);
    //  The trim, then well past the snapshot threshold
    zsock_t *to_leader = s_client ((size_t) leader);
    cr_assert_eq (s_publish ((size_t) leader, topics, 1, 5, 300), 25);
    tw_trim_t trim = s_unarchived (NULL, 12);
    cr_assert_eq (tw_trim_ok (to_leader, 2, &trim, BT_WAIT_MS), 13);
    cr_assert_eq (s_publish ((size_t) leader, topics, 1, 60, 400), 85);
    //  near (head 20 >= 12) copies 21.. and takes the trims from the manifest
    if (bu_broker_restart (s_cluster->nodes [near], BT_START_MS) != 0)
        s_fail_with_logs ("near did not restart");
    s_wait_head ((size_t) near, 85);
    zsock_t *sock = s_client ((size_t) near);
    if (!tw_wait_trims (sock, ":12", S_SYNC_MS))
        s_fail_with_logs ("near did not get the trim");
    char log [65536];
    bu_broker_log (s_cluster->nodes [near], log, sizeof log);
    cr_assert_not_null (strstr (log, "trim point(s) of the snapshot"),
                        "near did not restore from a snapshot: %s", log);
    //  far stops at 85; the log is trimmed to 90 meanwhile
    s_wait_head ((size_t) far, 85);
    cr_assert_eq (bu_broker_stop (s_cluster->nodes [far], BT_STOP_MS), 0);
    cr_assert_eq (s_publish ((size_t) leader, topics, 1, 10, 500), 95);
    trim = s_unarchived (NULL, 90);
    cr_assert_eq (tw_trim_ok (to_leader, 3, &trim, BT_WAIT_MS), 91);
    cr_assert_eq (s_publish ((size_t) leader, topics, 1, 30, 600), 125);
    //  far (head 85 < 90) cannot copy 86..90: it stops and says what to do
    cr_assert_eq (bu_broker_respawn (s_cluster->nodes [far]), 0);
    if (bu_broker_wait (s_cluster->nodes [far], 30000) != 0)
        s_fail_with_logs ("far, too far behind the trims, did not stop");
    bu_broker_log (s_cluster->nodes [far], log, sizeof log);
    const char *said = strstr (log, "Seed it from a backup");
    cr_assert_not_null (said, "%s", log);
    //  Shown: what an operator reads
    const char *line = said;
    while (line > log && line [-1] != '\n')
        line--;
    const char *end = strchr (said, '\n');
    fprintf (stderr, "trim_cluster: the node too far behind said: %.*s\n",
             (int) (end? end - line: (long) strlen (line)), line);
    cr_assert_neq (WEXITSTATUS (s_cluster->nodes [far]->status), 0);
    //  The leader, which made the snapshots, stops cleanly (under ASan:
    //  nothing leaked by the manifests' trims).  Not near: under ASan, a
    //  node that installed snapshots reports ~1 KB leaked inside libraft
    //  at exit (no Herald frame), which is not this test's to judge
    bt_drop (&sock);
    bt_drop (&to_leader);
    bu_broker_t *node = s_cluster->nodes [leader];
    cr_assert_eq (bu_broker_stop (node, BT_STOP_MS), 0, "the leader did not stop");
    if (!WIFEXITED (node->status) || WEXITSTATUS (node->status) != 0)
        s_fail_with_logs ("the leader did not stop cleanly");
}
