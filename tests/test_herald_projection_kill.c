/*  =========================================================================
    test_herald_projection_kill - kill -9 never loses nor repeats an effect

    The proof issue 16 asks for.  tests/projection_child projects
    tests/projutil.h's non-idempotent read model (stock qty = qty + n, a
    ledger row per event keyed by seq, a running total) into one SQLite
    file; it is SIGKILLed at a random moment KILLS times in a row, while a
    thread publishes events and after, then run to the broker's head.  The
    read model must then be identical, row for row, to the one a single
    uninterrupted child builds into a fresh file, and hold each event
    exactly once (a double apply would also have failed its ledger INSERT).

    The moments are drawn from a seed printed at the start;
    HERALD_PROJECTION_SEED=N replays one.  HERALD_PROJECTION_KILLS=N
    changes the count (default 200).  The loop is tests/projkill.c's, for
    the PostgreSQL test to run on a conninfo.
    =========================================================================
*/

#include <criterion/criterion.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <sqlite3.h>

#include "agentutil.h"
#include "projkill.h"
#include "testutil.h"

#define START_MS        10000
#define KILLS           200
#define EVENTS          6000        //  published by the thread, in chunks, over
#define CHUNK           30          //  ~10 s: most of the kills
#define DELAY_MAX_US    100000      //  a kill comes 0-100 ms after the spawn

static bu_broker_t *s_broker;
static char *s_dir;
static pk_run_t s_run;
static pk_publisher_t s_publisher;

static void
s_setup (void)
{
    zsys_handler_set (NULL);
    s_broker = bu_broker_new ("projection-kill", NULL);
    cr_assert_not_null (s_broker);
    cr_assert_eq (bu_broker_start (s_broker, START_MS), 0, "heraldd did not start");
    s_dir = tu_tmpdir_new ("projection-kill-db");
    memset (&s_run, 0, sizeof s_run);
    s_run.child = tu_build_program ("tests/projection_child");
    cr_assert (s_dir && s_run.child, "tests/projection_child not found");
    s_run.backend = HERALD_PROJECTION_SQLITE;
    s_run.api = s_broker->api;
    s_run.fanout = s_broker->fanout;
    s_run.log = tu_path (s_dir, "child.log");
    s_run.kills = KILLS;
    s_run.delay_max_us = DELAY_MAX_US;
    memset (&s_publisher, 0, sizeof s_publisher);
}

static void
s_teardown (void)
{
    pk_publisher_join (&s_publisher);
    free ((char *) s_run.child);
    free ((char *) s_run.log);
    memset (&s_run, 0, sizeof s_run);
    tu_tmpdir_destroy (&s_dir);
    bu_broker_destroy (&s_broker);
}

TestSuite (herald_projection_kill, .init = s_setup, .fini = s_teardown, .timeout = 240);

//  Run a child on database to seq head; asserts it got there.
static void
s_run_to (const char *database, uint64_t head)
{
    char message [512];
    cr_assert_eq (pk_run_to (&s_run, database, head, 90000, message, sizeof message), 0,
                  "%s", message);
}

Test (herald_projection_kill, kill_9_at_random_moments_neither_loses_nor_repeats_an_effect)
{
    s_run.seed = (unsigned) time (NULL) ^ (unsigned) getpid ();
    const char *env = getenv ("HERALD_PROJECTION_SEED");
    if (env && *env)
        s_run.seed = (unsigned) strtoul (env, NULL, 10);
    env = getenv ("HERALD_PROJECTION_KILLS");
    if (env && *env)
        s_run.kills = atoi (env);
    fprintf (stderr, "test_herald_projection_kill: HERALD_PROJECTION_SEED=%u "
             "HERALD_PROJECTION_KILLS=%d\n", s_run.seed, s_run.kills);
    char *killed = tu_path (s_dir, "killed.db");
    char *clean = tu_path (s_dir, "clean.db");

    //  Some events first, then the publisher runs through most of the kills
    cr_assert_eq (au_publish (s_broker->api, "stock.sku%zu", 13, 500, 20000), 0);
    s_publisher.api = s_broker->api;
    s_publisher.chunks = EVENTS / CHUNK;
    s_publisher.chunk = CHUNK;
    s_publisher.pause_us = 50000;
    cr_assert_eq (pk_publisher_start (&s_publisher), 0);
    int moved = 0;
    char message [1024];
    cr_assert_eq (pk_kill_loop (&s_run, killed, &moved, message, sizeof message), 0,
                  "seed %u: %s", s_run.seed, message);
    cr_assert_eq (pk_publisher_join (&s_publisher), 0, "the publisher failed");
    int64_t progress = pu_query_int (HERALD_PROJECTION_SQLITE, killed,
                                     "SELECT seq FROM herald_projection");
    fprintf (stderr, "test_herald_projection_kill: %d kills, %d of them after a commit; "
             "position %" PRId64 " at the last kill\n", s_run.kills, moved, progress);
    //  The kills came while it was projecting, not only before it opened
    cr_assert_gt (moved, 0, "no batch was ever committed between the kills");

    int64_t head = au_head (s_broker->api, 20000);
    cr_assert_gt (head, 0);
    s_run_to (killed, (uint64_t) head);
    s_run_to (clean, (uint64_t) head);
    cr_assert_eq (pu_compare (HERALD_PROJECTION_SQLITE, clean, HERALD_PROJECTION_SQLITE,
                              killed, NULL, message, sizeof message), 0, "seed %u: %s",
                  s_run.seed, message);
    //  And the reference itself holds every event once
    cr_assert_eq (pu_query_int (HERALD_PROJECTION_SQLITE, killed,
                                "SELECT count(*) FROM ledger"), head);
    cr_assert_eq (pu_query_int (HERALD_PROJECTION_SQLITE, killed,
                                "SELECT events FROM totals"), head);
    cr_assert_eq (pu_query_int (HERALD_PROJECTION_SQLITE, killed,
                                "SELECT sum(qty) FROM stock"),
                  pu_query_int (HERALD_PROJECTION_SQLITE, killed,
                                "SELECT total FROM totals"));
    free (killed);
    free (clean);
}

//  The comparison itself: one changed row, one missing row, an extra
//  position are differences (so the test above cannot pass by comparing
//  nothing).
Test (herald_projection_kill, the_comparison_sees_one_row_of_difference)
{
    char *a = tu_path (s_dir, "a.db");
    char *b = tu_path (s_dir, "b.db");
    cr_assert_eq (au_publish (s_broker->api, "stock.sku%zu", 3, 50, 20000), 0);
    s_run_to (a, 50);
    s_run_to (b, 50);
    char message [1024];
    cr_assert_eq (pu_compare (HERALD_PROJECTION_SQLITE, a, HERALD_PROJECTION_SQLITE, b, NULL,
                              message, sizeof message), 0, "%s", message);
    const char *edits [] = {
        "UPDATE stock SET qty = qty + 1 WHERE sku = 'sku1'",
        "DELETE FROM ledger WHERE seq = 17",
        "UPDATE totals SET events = events - 1",
        "UPDATE herald_projection SET seq = seq - 1"
    };
    for (size_t index = 0; index < sizeof edits / sizeof edits [0]; index++) {
        char name [32];
        snprintf (name, sizeof name, "c%zu.db", index);
        char *c = tu_path (s_dir, name);
        s_run_to (c, 50);
        sqlite3 *db;
        cr_assert_eq (sqlite3_open (c, &db), SQLITE_OK);
        cr_assert_eq (sqlite3_exec (db, edits [index], NULL, NULL, NULL), SQLITE_OK);
        sqlite3_close (db);
        cr_assert_neq (pu_compare (HERALD_PROJECTION_SQLITE, a, HERALD_PROJECTION_SQLITE, c,
                                   NULL, message, sizeof message), 0, "%s", edits [index]);
        cr_assert_not_null (strstr (message, "differ"), "%s", message);
        free (c);
    }
    free (a);
    free (b);
}

//  A temporal projection (as of the ts of an event near the end of the
//  log, in transactions of 50) killed 100 times as it builds: the same
//  read model as one uninterrupted build, and nothing after until_ts.
#define TEMPORAL_EVENTS 80000       //  a few s of building: most kills land mid-build
#define TEMPORAL_AT     75000       //  as of this event's ts

typedef struct {
    uint64_t ts [TEMPORAL_EVENTS];
    size_t count;
} s_times_t;

static int
s_time (const herald_delivery_t *event, void *arg)
{
    s_times_t *times = (s_times_t *) arg;
    if (times->count < TEMPORAL_EVENTS)
        times->ts [times->count++] = event->ts;
    return HERALD_OK;
}

Test (herald_projection_kill, a_temporal_build_killed_at_random_moments_is_the_clean_one)
{
    for (int round = 0; round < TEMPORAL_EVENTS / 2000; round++)
        cr_assert_eq (au_publish (s_broker->api, "stock.sku%zu", 13, 2000, 20000), 0);
    herald_agent_options_t options;
    au_options (&options, s_broker, NULL);
    herald_agent_t *agent = herald_agent_new ("projection-kill", &options);
    cr_assert_not_null (agent);
    s_times_t *times = calloc (1, sizeof *times);
    herald_range_t range = { .from = 1 };
    herald_err rc = herald_agent_replay (agent, &range, s_time, times, 20000, NULL);
    herald_agent_destroy (&agent);
    cr_assert_eq (rc, HERALD_OK);
    cr_assert_eq (times->count, TEMPORAL_EVENTS);
    //  As of the ts of event TEMPORAL_AT: it and every event of that ts are in
    uint64_t until = times->ts [TEMPORAL_AT - 1];
    size_t included = TEMPORAL_AT;
    while (included < times->count && times->ts [included] <= until)
        included++;
    free (times);
    s_run.until_ts = until;
    s_run.batch_max = 50;
    s_run.kills = 100;
    s_run.seed = (unsigned) time (NULL) ^ (unsigned) getpid ();
    const char *env = getenv ("HERALD_PROJECTION_SEED");
    if (env && *env)
        s_run.seed = (unsigned) strtoul (env, NULL, 10);
    fprintf (stderr, "test_herald_projection_kill (temporal): HERALD_PROJECTION_SEED=%u\n",
             s_run.seed);
    char *killed = tu_path (s_dir, "killed-as-of.db");
    char *clean = tu_path (s_dir, "clean-as-of.db");
    int moved = 0;
    char message [1024];
    cr_assert_eq (pk_kill_loop (&s_run, killed, &moved, message, sizeof message), 0,
                  "seed %u: %s", s_run.seed, message);
    fprintf (stderr, "test_herald_projection_kill (temporal): %d kills, %d of them after a "
             "commit\n", s_run.kills, moved);
    cr_assert_gt (moved, 0, "no transaction was ever committed between the kills");
    s_run_to (killed, 1);
    s_run_to (clean, 1);
    cr_assert_eq (pu_compare (HERALD_PROJECTION_SQLITE, clean, HERALD_PROJECTION_SQLITE,
                              killed, NULL, message, sizeof message), 0, "seed %u: %s",
                  s_run.seed, message);
    cr_assert_eq (pu_query_int (HERALD_PROJECTION_SQLITE, killed,
                                "SELECT count(*) FROM ledger"), (int64_t) included);
    cr_assert_eq (pu_query_int (HERALD_PROJECTION_SQLITE, killed,
                                "SELECT max(seq) FROM ledger"), (int64_t) included);
    free (killed);
    free (clean);
}
