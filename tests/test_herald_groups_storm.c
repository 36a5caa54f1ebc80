/*  =========================================================================
    test_herald_groups_storm - a consumer group under a publish storm

    The proof of issue 15 on a real heraldd: three members (tests/
    group_member, each a process of its own with no state directory) of one
    group while a publisher stores EVENTS events over TOPICS topics; at
    random moments one member is killed with SIGKILL and started again
    (KILLS times), a fourth joins and one leaves (SIGTERM).  At the end
    (every event handled, the group's lag 0 by GROUP show) the members' logs
    are checked by tests/grouplog.c: every event handled, duplicates only
    flagged and only from a killed member's last batch, per-topic order at
    every member, no partition at two members at once.

    The `groups_check` suite runs the checker on made-up logs, one broken
    rule each, so each check is seen to fail.
    The random schedule's seed is printed; HERALD_STORM_SEED replays one.
    =========================================================================
*/

#include <criterion/criterion.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "brokerutil.h"
#include "grouplog.h"
#include "grouputil.h"
#include "testutil.h"

#define EVENTS          20000
#define TOPICS          200
#define RATE            2500            //  events a second: 8 s of storm
#define COST_US         200             //  the handler's sleep per event
#define BATCH_MAX       20
#define SESSION_MS      1500
#define PARTITIONS      32
#define KILLS           5
#define INSTANCES_MAX   16
#define GROUP           "storm"

static bu_broker_t *s_broker;
static char *s_member;
static gu_publisher_t *s_publisher;

typedef struct {
    pid_t pid;
    char log [512];
    char out [512];
    bool running;
} s_instance_t;

static s_instance_t s_instances [INSTANCES_MAX];
static size_t s_instance_count;

static void
s_teardown (void)
{
    for (size_t index = 0; index < s_instance_count; index++)
        if (s_instances [index].running) {
            gu_member_kill (s_instances [index].pid);
            s_instances [index].running = false;
        }
    //  HERALD_GROUPS_KEEP=DIR: the members' logs and outputs kept there
    const char *keep = getenv ("HERALD_GROUPS_KEEP");
    if (keep && *keep && s_broker) {
        mkdir (keep, 0755);
        for (size_t index = 0; index < s_instance_count; index++) {
            char path [1024];
            snprintf (path, sizeof path, "%s/member-%zu.log", keep, index);
            rename (s_instances [index].log, path);
            snprintf (path, sizeof path, "%s/member-%zu.out", keep, index);
            rename (s_instances [index].out, path);
        }
        char path [1024];
        snprintf (path, sizeof path, "%s/heraldd.log", keep);
        rename (s_broker->log, path);
        fprintf (stderr, "groups_storm: logs kept in %s\n", keep);
    }
    s_instance_count = 0;
    gu_publisher_destroy (&s_publisher);
    bu_broker_destroy (&s_broker);
    free (s_member);
    s_member = NULL;
}

TestSuite (groups_storm, .fini = s_teardown, .timeout = 150);

static s_instance_t *
s_start (void)
{
    cr_assert_lt (s_instance_count, INSTANCES_MAX);
    s_instance_t *instance = &s_instances [s_instance_count];
    snprintf (instance->log, sizeof instance->log, "%s/member-%zu.log", s_broker->dir,
              s_instance_count);
    snprintf (instance->out, sizeof instance->out, "%s/member-%zu.out", s_broker->dir,
              s_instance_count);
    char partitions [16], session [16];
    snprintf (partitions, sizeof partitions, "%d", PARTITIONS);
    snprintf (session, sizeof session, "%d", SESSION_MS);
    const char *extra [] = { "--partitions", partitions, "--session-ms", session, NULL };
    instance->pid = gu_member_spawn (s_member, s_broker->api, GROUP, "storm.", instance->log,
                                     COST_US, BATCH_MAX, extra, instance->out);
    cr_assert_gt (instance->pid, 0, "group_member did not start");
    instance->running = true;
    s_instance_count++;
    return instance;
}

static void
s_print_file (const char *path)
{
    FILE *file = fopen (path, "r");
    if (!file)
        return;
    char line [512];
    while (fgets (line, sizeof line, file))
        fprintf (stderr, "    %s", line);
    fclose (file);
}

static bool
s_has_started (const s_instance_t *instance)
{
    struct stat info;
    return stat (instance->log, &info) == 0 && info.st_size > 0;
}

//  A run made of every instance's log so far and what was acknowledged
static gl_run_t *
s_load_run (void)
{
    gl_run_t *run = gl_run_new (PARTITIONS, BATCH_MAX);
    cr_assert_not_null (run);
    for (size_t index = 0; index < s_instance_count; index++)
        gl_load (run, s_instances [index].log);
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

//  Wait until GROUP show says `members` members hold every partition.
static void
s_wait_members (size_t members, int timeout_ms)
{
    uint64_t deadline = gu_mono_ns () + (uint64_t) timeout_ms * 1000000ULL;
    gu_show_t show;
    while (true) {
        if (gu_group_show (s_broker->api, GROUP, &show, 2000) == 0
        &&  show.members == members && show.owned_count == PARTITIONS)
            return;
        if (gu_mono_ns () >= deadline)
            break;
        usleep (50000);
    }
    for (size_t index = 0; index < s_instance_count; index++)
        s_print_file (s_instances [index].out);
    cr_assert_fail ("the group did not reach %zu members holding every partition in %d ms "
                    "(members %zu, owned %zu, error '%s')", members, timeout_ms, show.members,
                    show.owned_count, show.error);
}

Test (groups_storm, three_members_kill_9_join_and_leave)
{
    s_member = gu_member_path ();
    cr_assert_not_null (s_member, "tests/group_member not built");
    s_broker = bu_broker_new ("groups-storm", NULL);
    cr_assert_not_null (s_broker);
    cr_assert_eq (bu_broker_start (s_broker, 10000), 0, "heraldd did not start");

    uint64_t seed = tu_now_ns ();
    const char *seed_text = getenv ("HERALD_STORM_SEED");
    if (seed_text && *seed_text)
        seed = strtoull (seed_text, NULL, 10);
    fprintf (stderr, "groups_storm: seed %" PRIu64 " (HERALD_STORM_SEED replays it)\n", seed);
    uint64_t rand_state = seed;

    s_instance_t *first = s_start ();
    s_instance_t *leaving = s_start ();
    s_instance_t *victim = s_start ();
    (void) first;
    s_wait_members (3, 20000);

    //  The schedule, in ms after the storm starts: KILLS kills of the
    //  victim (restarted at once), the fourth's join, one member's leave
    const uint64_t storm_ms = (uint64_t) EVENTS * 1000 / RATE;
    uint64_t kill_at [KILLS];
    for (size_t index = 0; index < KILLS; index++)
        kill_at [index] = 300 + tu_rand (&rand_state) % (storm_ms - 600);
    for (size_t index = 1; index < KILLS; index++)             //  sorted
        for (size_t at = index; at > 0 && kill_at [at - 1] > kill_at [at]; at--) {
            uint64_t swap = kill_at [at];
            kill_at [at] = kill_at [at - 1];
            kill_at [at - 1] = swap;
        }
    uint64_t join_at = storm_ms / 8 + tu_rand (&rand_state) % (storm_ms / 3);
    uint64_t leave_at = storm_ms / 2 + tu_rand (&rand_state) % (storm_ms / 3);

    s_publisher = gu_publisher_start (s_broker->api, "storm.%zu", TOPICS, EVENTS, RATE);
    cr_assert_not_null (s_publisher);
    uint64_t start = gu_mono_ns ();
    pid_t killed [KILLS];
    uint64_t killed_at [KILLS], killed_head [KILLS];
    size_t kills = 0;
    bool joined = false, left = false;
    while (kills < KILLS || !joined || !left) {
        uint64_t now_ms = (gu_mono_ns () - start) / 1000000ULL;
        cr_assert_lt (now_ms, storm_ms * 4, "the schedule did not finish");
        //  A kill hits a member at work: once the victim has started an
        //  event (or 3 s after its moment, whatever it does)
        if (kills < KILLS && now_ms >= kill_at [kills]
        &&  (s_has_started (victim) || now_ms >= kill_at [kills] + 3000)) {
            killed [kills] = victim->pid;
            killed_at [kills] = gu_member_kill (victim->pid);
            victim->running = false;
            killed_head [kills] = gu_head (s_broker->api, 5000);
            cr_assert_gt (killed_head [kills], 0, "no STATUS after a kill");
            fprintf (stderr, "groups_storm: %" PRIu64 " ms: killed pid %d (head %" PRIu64 ")\n",
                     now_ms, (int) killed [kills], killed_head [kills]);
            kills++;
            victim = s_start ();
        }
        else
        if (!joined && now_ms >= join_at) {
            s_instance_t *fourth = s_start ();
            fprintf (stderr, "groups_storm: %" PRIu64 " ms: started pid %d\n", now_ms,
                     (int) fourth->pid);
            joined = true;
        }
        else
        if (!left && now_ms >= leave_at) {
            int code = gu_member_stop (leaving->pid, 20000);
            leaving->running = false;
            fprintf (stderr, "groups_storm: %" PRIu64 " ms: stopped pid %d (exit %d)\n", now_ms,
                     (int) leaving->pid, code);
            if (code != 0)
                s_print_file (leaving->out);
            cr_assert_eq (code, 0, "a member did not leave cleanly on SIGTERM");
            left = true;
        }
        else
            usleep (5000);
    }
    cr_assert_eq (gu_publisher_wait (s_publisher, 60000), 0,
                  "the publisher did not finish: %zu acked, %zu failed (%d)",
                  s_publisher->acked, s_publisher->failed, s_publisher->last_error);
    uint64_t head = gu_head (s_broker->api, 5000);

    //  The end: every published event handled, then the group's lag 0
    uint64_t deadline = gu_mono_ns () + 60000ULL * 1000000ULL;
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
        for (size_t index = 0; index < s_instance_count; index++)
            s_print_file (s_instances [index].out);
    cr_assert_eq (handled, EVENTS, "only %zu of %d events handled", handled, EVENTS);
    gu_show_t show;
    deadline = gu_mono_ns () + 20000ULL * 1000000ULL;
    while (true) {
        int rc = gu_group_show (s_broker->api, GROUP, &show, 2000);
        if (rc == 0 && show.min_committed >= head)
            break;
        cr_assert_lt (gu_mono_ns (), deadline, "the group's lag stayed above 0: committed %"
                      PRIu64 ", head %" PRIu64 " (%s)", show.min_committed, head, show.error);
        usleep (100000);
    }
    cr_assert_eq (show.members, 3, "GROUP show lists %zu members, not 3", show.members);

    //  Every member still running leaves cleanly
    for (size_t index = 0; index < s_instance_count; index++)
        if (s_instances [index].running) {
            int code = gu_member_stop (s_instances [index].pid, 20000);
            s_instances [index].running = false;
            if (code != 0)
                s_print_file (s_instances [index].out);
            cr_assert_eq (code, 0, "pid %d exited %d on SIGTERM", (int) s_instances [index].pid,
                          code);
        }

    gl_run_t *run = s_load_run ();
    for (size_t index = 0; index < kills; index++)
        gl_killed (run, killed [index], killed_at [index], killed_head [index]);
    gl_summary_t summary;
    char why [4096];
    size_t violations = gl_check (run, &summary, why, sizeof why);
    gl_run_destroy (&run);
    fprintf (stderr, "groups_storm: %zu processes, %zu deliveries, %zu seqs handled, %zu "
             "duplicates, %zu flagged deliveries (%zu seqs), %zu restarts; %zu violations\n",
             summary.pids, summary.deliveries, summary.handled, summary.duplicates,
             summary.flagged, summary.flagged_seqs, summary.restarts, violations);
    cr_assert_eq (violations, 0, "the members' logs break the contract:\n%s", why);
    //  Each kill hit a member at work, whose last batch is uncommitted
    //  until its next declare: without a redelivery the flag went untested
    cr_assert_gt (summary.flagged, 0, "%zu kills and not one redelivery", kills);
}

//  ---------------------------------------------------------------------
//  The checker on made-up logs: each rule, broken once, is reported

static gl_run_t *
s_made_up (const char *const *lines, size_t published)
{
    gl_run_t *run = gl_run_new (4, 3);
    cr_assert_not_null (run);
    for (size_t index = 0; lines [index]; index++)
        cr_assert_eq (gl_add_line (run, lines [index]), 0, "%s", lines [index]);
    for (uint64_t seq = 1; seq <= published; seq++) {
        char topic [16];
        snprintf (topic, sizeof topic, "t.%" PRIu64, seq % 2);
        gl_published (run, seq, topic);
    }
    return run;
}

static size_t
s_check (gl_run_t *run, const char *expect)
{
    char why [2048];
    size_t violations = gl_check (run, NULL, why, sizeof why);
    if (expect)
        cr_assert_not_null (strstr (why, expect), "expected a '%s' violation, got:\n%s",
                            expect, why);
    return violations;
}

TestSuite (groups_check);

//  t.0 is partition 1 of 4, t.1 partition 2 (fnv1a32 mod 4)
Test (groups_check, partitions_as_documented)
{
    cr_assert_eq (gl_partition ("orders.1", 8, 32), 21);
    cr_assert_eq (gl_partition ("orders.1234", 11, 32), 2);
    cr_assert_eq (gl_partition ("orders.1", 8, 0), 0xa72831f5u);
    cr_assert_eq (gl_partition ("t.0", 3, 4), 1);
    cr_assert_eq (gl_partition ("t.1", 3, 4), 2);
}

Test (groups_check, a_clean_run_with_a_kill_passes)
{
    //  pid 10 holds both partitions, is killed in seq 3 (started, not
    //  ended); pid 20 gets 3 and 4 flagged (its last batch), then 5
    const char *lines [] = {
        "S 100 10 1 t.1 2 0", "E 110 10 1 t.1 2 0",
        "S 120 10 2 t.0 1 0", "E 130 10 2 t.0 1 0",
        "S 140 10 3 t.1 2 0",
        "S 300 20 3 t.1 2 1", "E 310 20 3 t.1 2 1",
        "S 320 20 4 t.0 1 1", "E 330 20 4 t.0 1 1",
        "S 340 20 5 t.1 2 0", "E 350 20 5 t.1 2 0", NULL };
    gl_run_t *run = s_made_up (lines, 5);
    gl_killed (run, 10, 200, 5);
    cr_assert_eq (s_check (run, NULL), 0);
    gl_run_destroy (&run);
}

Test (groups_check, a_missing_event_fails)
{
    const char *lines [] = { "S 100 10 1 t.1 2 0", "E 110 10 1 t.1 2 0", NULL };
    gl_run_t *run = s_made_up (lines, 2);
    cr_assert_eq (s_check (run, "coverage: seq 2"), 1);
    gl_run_destroy (&run);
}

Test (groups_check, an_unflagged_duplicate_fails)
{
    const char *lines [] = {
        "S 100 10 1 t.1 2 0", "E 110 10 1 t.1 2 0",
        "S 300 20 1 t.1 2 0", "E 310 20 1 t.1 2 0", NULL };
    gl_run_t *run = s_made_up (lines, 1);
    gl_killed (run, 10, 200, 1);
    cr_assert_geq (s_check (run, "flagged: seq 1"), 1);
    gl_run_destroy (&run);
}

Test (groups_check, a_flag_without_a_kill_fails)
{
    const char *lines [] = {
        "S 100 10 1 t.1 2 0", "E 110 10 1 t.1 2 0",
        "S 300 20 1 t.1 2 1", "E 310 20 1 t.1 2 1", NULL };
    gl_run_t *run = s_made_up (lines, 1);
    cr_assert_geq (s_check (run, "attributed: seq 1"), 1);
    gl_run_destroy (&run);
}

Test (groups_check, a_redelivery_beyond_the_last_batch_fails)
{
    //  pid 10 handled 1..6 (batch_max 3); seq 1 flagged again after its kill
    const char *lines [] = {
        "S 100 10 1 t.1 2 0", "E 101 10 1 t.1 2 0", "S 102 10 2 t.0 1 0", "E 103 10 2 t.0 1 0",
        "S 104 10 3 t.1 2 0", "E 105 10 3 t.1 2 0", "S 106 10 4 t.0 1 0", "E 107 10 4 t.0 1 0",
        "S 108 10 5 t.1 2 0", "E 109 10 5 t.1 2 0", "S 110 10 6 t.0 1 0", "E 111 10 6 t.0 1 0",
        "S 300 20 1 t.1 2 1", "E 310 20 1 t.1 2 1", NULL };
    gl_run_t *run = s_made_up (lines, 6);
    gl_killed (run, 10, 200, 6);
    cr_assert_geq (s_check (run, "attributed: seq 1"), 1);
    gl_run_destroy (&run);
}

Test (groups_check, more_redeliveries_than_a_batch_fail)
{
    //  batch_max 3: pid 10 was killed before seq 1; four seqs come flagged
    const char *lines [] = {
        "S 300 20 1 t.1 2 1", "E 301 20 1 t.1 2 1", "S 302 20 2 t.0 1 1", "E 303 20 2 t.0 1 1",
        "S 304 20 3 t.1 2 1", "E 305 20 3 t.1 2 1", "S 306 20 4 t.0 1 1", "E 307 20 4 t.0 1 1",
        NULL };
    gl_run_t *run = s_made_up (lines, 4);
    gl_killed (run, 10, 200, 4);
    cr_assert_eq (s_check (run, "attributed: 4 seqs redelivered after 1 kills"), 1);
    gl_run_destroy (&run);
}

Test (groups_check, a_topic_out_of_order_fails)
{
    const char *lines [] = {
        "S 100 10 3 t.1 2 0", "E 110 10 3 t.1 2 0",
        "S 120 10 1 t.1 2 0", "E 130 10 1 t.1 2 0", NULL };
    gl_run_t *run = s_made_up (lines, 3);
    //  seq 2 (t.0) is missing too: two violations, one of them order
    cr_assert_eq (s_check (run, "order: pid 10 handled t.1 seq 1 after seq 3"), 2);
    gl_run_destroy (&run);
}

Test (groups_check, a_partition_at_two_members_fails)
{
    //  seq 1 and 3 are both t.1 (partition 2): pid 20 starts 3 inside 1
    const char *lines [] = {
        "S 100 10 1 t.1 2 0", "S 105 20 3 t.1 2 0", "E 108 20 3 t.1 2 0",
        "E 110 10 1 t.1 2 0", "S 120 10 2 t.0 1 0", "E 130 10 2 t.0 1 0", NULL };
    gl_run_t *run = s_made_up (lines, 3);
    cr_assert_eq (s_check (run, "exclusive: partition 2"), 1);
    gl_run_destroy (&run);
}

Test (groups_check, a_killed_member_holds_until_its_kill)
{
    //  pid 10 started seq 1 and was killed at 200: pid 20 starting at 150
    //  overlaps it; at 250 it would not
    const char *lines [] = {
        "S 100 10 1 t.1 2 0", "S 150 20 1 t.1 2 1", "E 160 20 1 t.1 2 1", NULL };
    gl_run_t *run = s_made_up (lines, 1);
    gl_killed (run, 10, 200, 1);
    cr_assert_geq (s_check (run, "exclusive: partition 2"), 1);
    gl_run_destroy (&run);
}

Test (groups_check, a_start_without_end_of_a_live_member_fails)
{
    const char *lines [] = { "S 100 10 1 t.1 2 0", NULL };
    gl_run_t *run = s_made_up (lines, 1);
    cr_assert_geq (s_check (run, "exclusive: pid 10 (not killed)"), 1);
    gl_run_destroy (&run);
}
