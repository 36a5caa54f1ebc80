/*  =========================================================================
    test_herald_groups_cluster - a consumer group through a leader's kill -9

    Three real heraldd nodes (tests/clusterutil.h, short election timeouts)
    and a group of two members (tests/group_member processes given every
    node's api endpoint, no state directory) while an agent publishes.
    Mid-run the leader (the only node that serves GROUP and keeps the
    members' sessions) is killed with SIGKILL.  Once a new leader is
    elected:

      - the group's positions there are at least those GROUP show gave on
        the old leader just before the kill (a commit is answered only once
        a majority has it: none is lost);
      - both members go on handling events;
      - at the end every event is handled, and the members' logs pass the
        checks of tests/grouplog.c (no unflagged duplicate; a flagged one
        only from what was in hand at the failover; per-topic order; no
        partition at two members at once).
    =========================================================================
*/

#include <criterion/criterion.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "clusterutil.h"
#include "grouplog.h"
#include "grouputil.h"
#include "testutil.h"

#define EVENTS          6000
#define TOPICS          100
#define RATE            1000            //  events a second: 6 s
#define COST_US         200
#define BATCH_MAX       20
#define PARTITIONS      32
#define SESSION_MS      3000
#define KILL_AT_MS      2500
#define GROUP           "failover"

static cu_cluster_t *s_cluster;
static char *s_member;
static gu_publisher_t *s_publisher;
static pid_t s_pids [2];
static char s_logs [2][512];
static char s_outs [2][512];

static void
s_teardown (void)
{
    for (size_t index = 0; index < 2; index++)
        if (s_pids [index] > 0) {
            gu_member_kill (s_pids [index]);
            s_pids [index] = 0;
        }
    gu_publisher_destroy (&s_publisher);
    cu_cluster_destroy (&s_cluster);
    free (s_member);
    s_member = NULL;
}

TestSuite (groups_cluster, .fini = s_teardown, .timeout = 180);

static void
s_print_outs (void)
{
    for (size_t index = 0; index < 2; index++) {
        FILE *file = fopen (s_outs [index], "r");
        if (!file)
            continue;
        char line [512];
        while (fgets (line, sizeof line, file))
            fprintf (stderr, "    member %zu: %s", index, line);
        fclose (file);
    }
}

static gl_run_t *
s_load_run (void)
{
    gl_run_t *run = gl_run_new (PARTITIONS, BATCH_MAX);
    cr_assert_not_null (run);
    gl_set_members (run, 2);
    for (size_t index = 0; index < 2; index++)
        gl_load (run, s_logs [index]);
    pthread_mutex_lock (&s_publisher->lock);
    for (size_t index = 0; index < s_publisher->count; index++)
        if (s_publisher->seqs [index]) {
            char topic [64];
            gu_publisher_topic (s_publisher, index, topic, sizeof topic);
            gl_published (run, s_publisher->seqs [index], topic);
        }
    pthread_mutex_unlock (&s_publisher->lock);
    return run;
}

//  Did pid start an event after t (its log)?
static bool
s_started_after (const char *log, uint64_t t)
{
    FILE *file = fopen (log, "r");
    if (!file)
        return false;
    char line [512];
    bool found = false;
    while (!found && fgets (line, sizeof line, file)) {
        uint64_t at;
        if (line [0] == 'S' && sscanf (line + 2, "%" SCNu64, &at) == 1 && at > t)
            found = true;
    }
    fclose (file);
    return found;
}

Test (groups_cluster, positions_survive_a_leader_kill_9)
{
    s_member = gu_member_path ();
    cr_assert_not_null (s_member, "tests/group_member not built");
    cu_options_t options = { .election_ms = 500, .raft_heartbeat_ms = 50 };
    s_cluster = cu_cluster_new ("groups-cluster", 3, &options);
    cr_assert_not_null (s_cluster);
    char why [CU_WHY_MAX];
    int leader = cu_cluster_start (s_cluster, 30000, why, sizeof why);
    cr_assert_geq (leader, 0, "the cluster did not start: %s", why);
    char api [512] = "";
    for (size_t index = 0; index < 3; index++)
        snprintf (api + strlen (api), sizeof api - strlen (api), "%s%s", index? ",": "",
                  s_cluster->nodes [index].api);

    char partitions [16], session [16];
    snprintf (partitions, sizeof partitions, "%d", PARTITIONS);
    snprintf (session, sizeof session, "%d", SESSION_MS);
    const char *extra [] = { "--partitions", partitions, "--session-ms", session, NULL };
    for (size_t index = 0; index < 2; index++) {
        snprintf (s_logs [index], sizeof s_logs [index], "%s/member-%zu.log", s_cluster->dir,
                  index);
        snprintf (s_outs [index], sizeof s_outs [index], "%s/member-%zu.out", s_cluster->dir,
                  index);
        s_pids [index] = gu_member_spawn (s_member, api, GROUP, "fo.", s_logs [index], COST_US,
                                          BATCH_MAX, extra, s_outs [index]);
        cr_assert_gt (s_pids [index], 0);
    }
    gu_show_t show;
    uint64_t deadline = gu_mono_ns () + 30000ULL * 1000000ULL;
    while (true) {
        if (gu_group_show (s_cluster->nodes [leader].api, GROUP, &show, 2000) == 0
        &&  show.members == 2 && show.owned_count == PARTITIONS)
            break;
        if (gu_mono_ns () >= deadline)
            s_print_outs ();
        cr_assert_lt (gu_mono_ns (), deadline, "the group did not form on the leader: "
                      "members %zu, owned %zu (%s)", show.members, show.owned_count, show.error);
        usleep (50000);
    }

    s_publisher = gu_publisher_start (api, "fo.%zu", TOPICS, EVENTS, RATE);
    cr_assert_not_null (s_publisher);
    usleep (KILL_AT_MS * 1000);

    //  The positions on the old leader, then its kill
    gu_show_t before;
    cr_assert_eq (gu_group_show (s_cluster->nodes [leader].api, GROUP, &before, 2000), 0,
                  "no GROUP show before the kill: %s", before.error);
    cr_assert_gt (before.min_committed, 0, "nothing committed before the kill");
    cu_node_kill (s_cluster, (size_t) leader);
    uint64_t killed_at = gu_mono_ns ();
    int old_leader = leader;
    leader = cu_wait_leader (s_cluster, 1u << old_leader, 30000);
    cr_assert_geq (leader, 0, "no new leader");
    uint64_t elected_at = gu_mono_ns ();
    uint64_t head_after = gu_head (s_cluster->nodes [leader].api, 5000);
    fprintf (stderr, "groups_cluster: killed %s; %s leads after %" PRIu64 " ms (head %" PRIu64
             " before, %" PRIu64 " after)\n", s_cluster->nodes [old_leader].name,
             s_cluster->nodes [leader].name, (uint64_t) ((elected_at - killed_at) / 1000000ULL), before.head,
             head_after);

    //  No committed position lost (GROUP show is served by the new leader
    //  from its store at once; its members come back as they heartbeat)
    gu_show_t after;
    deadline = gu_mono_ns () + 20000ULL * 1000000ULL;
    while (gu_group_show (s_cluster->nodes [leader].api, GROUP, &after, 2000) != 0) {
        cr_assert_lt (gu_mono_ns (), deadline, "no GROUP show on the new leader: %s",
                      after.error);
        usleep (50000);
    }
    cr_assert_eq (after.positions, before.positions);
    for (size_t partition = 0; partition < PARTITIONS; partition++) {
        cr_assert_geq (after.committed [partition], before.committed [partition],
                       "partition %zu: committed %" PRIu64 " before the failover, %" PRIu64
                       " after", partition, before.committed [partition],
                       after.committed [partition]);
        cr_assert_geq (after.epoch [partition], before.epoch [partition],
                       "partition %zu: epoch went back", partition);
    }

    //  The rest of the storm, every event handled, lag 0 on the new leader
    cr_assert_eq (gu_publisher_wait (s_publisher, 90000), 0,
                  "the publisher did not finish: %zu acked, %zu failed (%d)",
                  s_publisher->acked, s_publisher->failed, s_publisher->last_error);
    uint64_t head = gu_head (s_cluster->nodes [leader].api, 5000);
    deadline = gu_mono_ns () + 60000ULL * 1000000ULL;
    size_t handled = 0;
    while (gu_mono_ns () < deadline) {
        gl_run_t *run = s_load_run ();
        handled = gl_handled_published (run);
        gl_run_destroy (&run);
        if (handled == EVENTS)
            break;
        usleep (250000);
    }
    if (handled != EVENTS)
        s_print_outs ();
    cr_assert_eq (handled, EVENTS, "only %zu of %d events handled", handled, EVENTS);
    deadline = gu_mono_ns () + 20000ULL * 1000000ULL;
    while (true) {
        int rc = gu_group_show (s_cluster->nodes [leader].api, GROUP, &show, 2000);
        if (rc == 0 && show.min_committed >= head)
            break;
        cr_assert_lt (gu_mono_ns (), deadline, "the group's lag stayed above 0: committed %"
                      PRIu64 ", head %" PRIu64 " (%s)", show.min_committed, head, show.error);
        usleep (100000);
    }
    for (size_t index = 0; index < 2; index++)
        cr_assert (s_started_after (s_logs [index], elected_at),
                   "member %zu handled nothing after the failover", index);
    for (size_t index = 0; index < 2; index++) {
        int code = gu_member_stop (s_pids [index], 20000);
        s_pids [index] = 0;
        if (code != 0)
            s_print_outs ();
        cr_assert_eq (code, 0, "member %zu exited %d on SIGTERM", index, code);
    }

    gl_run_t *run = s_load_run ();
    uint64_t failover_head = head_after > before.head? head_after: before.head;
    gl_killed (run, 0, killed_at, failover_head);
    gl_summary_t summary;
    char report [4096];
    size_t violations = gl_check (run, &summary, report, sizeof report);
    gl_run_destroy (&run);
    fprintf (stderr, "groups_cluster: %zu deliveries, %zu seqs handled, %zu duplicates, %zu "
             "flagged (%zu seqs); %zu violations\n", summary.deliveries, summary.handled,
             summary.duplicates, summary.flagged, summary.flagged_seqs, violations);
    cr_assert_eq (violations, 0, "the members' logs break the contract:\n%s", report);
}
