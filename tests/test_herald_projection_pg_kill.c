/*  =========================================================================
    test_herald_projection_pg_kill - kill -9 into PostgreSQL never loses
    nor repeats an effect

    The proof issue 16 asks for, on a real PostgreSQL server the test
    starts (tests/pgserver.sh): tests/projection_child projects
    tests/projutil.h's non-idempotent read model (stock qty = qty + n, a
    ledger row per event keyed by seq, a running total) into one database;
    it is SIGKILLed at a random moment KILLS times in a row while a thread
    publishes events (500/s, all along), then run to the broker's head.  The read model must
    then be identical, row for row, to the one a single uninterrupted child
    builds into a fresh database, and hold each event exactly once (a
    double apply would also have failed its ledger INSERT and the child).

    A killed child leaves its server session behind for a moment, maybe
    inside a transaction holding the projection's lock: the server rolls
    it back when it sees the connection closed, and the next child waits
    for the lock meanwhile.  So this also shows that a dead writer's
    half-done batch never shows.

    A child needs some tens of ms to connect and open before it projects,
    more on a loaded machine: when the position moved after fewer than 3
    of the last 10 kills, the range of the moments widens by a quarter (up
    to 1 s), and narrows by a fifth after more than 7, so that about half
    the kills come while batches are in flight, the others while it opens.

    The moments are drawn from a seed printed at the start;
    HERALD_PROJECTION_SEED=N replays one.  HERALD_PROJECTION_KILLS=N
    changes the count (default 200).
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

#include "agentutil.h"
#include "pgutil.h"
#include "projkill.h"
#include "projutil.h"
#include "testutil.h"

#define START_MS        10000
#define KILLS           200
#define EVENTS_MAX      40000       //  published by the thread while it kills, at most
#define CHUNK           10          //  ... every CHUNK_US
#define CHUNK_US        20000
#define DELAY_MAX_US    80000       //  a kill comes 0-80 ms after the spawn, at first
#define DELAY_CAP_US    1000000     //  ... widened up to this on a slow machine
#define PG              HERALD_PROJECTION_POSTGRES

static bu_broker_t *s_broker;
static pgu_server_t s_server;
static char *s_dir;                 //  the children's log
static char *s_child_bin;
static pid_t s_child;
static pthread_t s_publisher;
static bool s_publishing;
static atomic_bool s_publish_failed;
static atomic_bool s_publish_stop;

static void
s_setup (void)
{
    zsys_handler_set (NULL);
    s_server.watch_fd = -1;
    cr_assert_eq (pgu_server_start (&s_server), 0, "%s", s_server.error);
    s_broker = bu_broker_new ("projection-pg-kill", NULL);
    cr_assert_not_null (s_broker);
    cr_assert_eq (bu_broker_start (s_broker, START_MS), 0, "heraldd did not start");
    s_dir = tu_tmpdir_new ("projection-pg-kill");
    s_child_bin = tu_build_program ("tests/projection_child");
    cr_assert (s_dir && s_child_bin, "tests/projection_child not found");
}

static void
s_teardown (void)
{
    if (s_child > 0) {
        kill (s_child, SIGKILL);
        waitpid (s_child, NULL, 0);
        s_child = 0;
    }
    if (s_publishing) {
        atomic_store (&s_publish_stop, true);
        pthread_join (s_publisher, NULL);
        s_publishing = false;
    }
    free (s_child_bin);
    s_child_bin = NULL;
    tu_tmpdir_destroy (&s_dir);
    bu_broker_destroy (&s_broker);
    pgu_server_destroy (&s_server);
}

TestSuite (herald_projection_pg_kill, .init = s_setup, .fini = s_teardown, .timeout = 240);

static void *
s_publish (void *arg)
{
    (void) arg;
    for (size_t sent = 0; sent < EVENTS_MAX && !atomic_load (&s_publish_stop);
         sent += CHUNK) {
        if (au_publish (s_broker->api, "stock.sku%zu", 13, CHUNK, 20000) != 0) {
            atomic_store (&s_publish_failed, true);
            break;
        }
        usleep (CHUNK_US);
    }
    return NULL;
}

static pid_t
s_spawn (const char *database, const char *until, const char *log)
{
    const char *args [] = { "postgres", database, s_broker->api, s_broker->fanout,
                            "inventory", "stock.", until, NULL };
    return au_spawn (s_child_bin, args, log);
}

//  Run a child to seq head (projkill's, as the SQLite test); asserts it got there.
static void
s_run_to (const char *database, uint64_t head, const char *log)
{
    pk_run_t run = { .child = s_child_bin, .backend = PG, .api = s_broker->api,
                     .fanout = s_broker->fanout, .log = log };
    char message [512];
    cr_assert_eq (pk_run_to (&run, database, head, 90000, message, sizeof message), 0, "%s",
                  message);
}

Test (herald_projection_pg_kill, kill_9_at_random_moments_neither_loses_nor_repeats_an_effect)
{
    unsigned seed = (unsigned) time (NULL) ^ (unsigned) getpid ();
    const char *env = getenv ("HERALD_PROJECTION_SEED");
    if (env && *env)
        seed = (unsigned) strtoul (env, NULL, 10);
    int kills = KILLS;
    env = getenv ("HERALD_PROJECTION_KILLS");
    if (env && *env)
        kills = atoi (env);
    fprintf (stderr, "test_herald_projection_pg_kill: HERALD_PROJECTION_SEED=%u "
             "HERALD_PROJECTION_KILLS=%d\n", seed, kills);
    srand (seed);
    char killed [256], clean [256];
    cr_assert_eq (pgu_database_new (&s_server, "killed", killed, sizeof killed), 0, "%s",
                  s_server.error);
    cr_assert_eq (pgu_database_new (&s_server, "clean", clean, sizeof clean), 0, "%s",
                  s_server.error);
    char *log = tu_path (s_dir, "child.log");

    //  Some events first, then the publisher runs through the first kills
    cr_assert_eq (au_publish (s_broker->api, "stock.sku%zu", 13, 500, 20000), 0);
    s_publishing = pthread_create (&s_publisher, NULL, s_publish, NULL) == 0;
    cr_assert (s_publishing);
    int64_t progress_at_half = -1;
    int moved = 0;                  //  kills after which the position had moved
    int moved_recently = 0;         //  ... of the last 10
    int64_t last = 0;
    unsigned delay_max = DELAY_MAX_US;
    for (int round = 0; round < kills; round++) {
        s_child = s_spawn (killed, NULL, log);
        cr_assert_gt (s_child, 0);
        usleep ((useconds_t) ((unsigned) rand () % delay_max));
        kill (s_child, SIGKILL);
        int status;
        cr_assert_eq (waitpid (s_child, &status, 0), s_child);
        s_child = 0;
        //  Killed, not dead of an error of its own
        cr_assert (WIFSIGNALED (status) && WTERMSIG (status) == SIGKILL,
                   "round %d: the child exited by itself (status %d): see %s", round, status,
                   log);
        int64_t position = pu_query_int (PG, killed, "SELECT seq FROM herald_projection");
        if (position > last)
            moved++, moved_recently++, last = position;
        if (round % 10 == 9) {
            if (moved_recently < 3)
                delay_max = delay_max + delay_max / 4 < DELAY_CAP_US
                          ? delay_max + delay_max / 4: DELAY_CAP_US;
            else
            if (moved_recently > 7 && delay_max > 20000)
                delay_max -= delay_max / 5;
            moved_recently = 0;
        }
        if (round == kills / 2)
            progress_at_half = position;
    }
    atomic_store (&s_publish_stop, true);
    pthread_join (s_publisher, NULL);
    s_publishing = false;
    cr_assert_not (atomic_load (&s_publish_failed), "the publisher failed");
    int64_t progress = pu_query_int (PG, killed, "SELECT seq FROM herald_projection");
    fprintf (stderr, "test_herald_projection_pg_kill: %d kills (at last within %u ms of the "
             "spawn); the position moved during %d of them; %" PRId64 " at half, %" PRId64
             " at the end\n", kills, delay_max / 1000, moved, progress_at_half, progress);
    //  The kills came while it was projecting, not only before it opened
    cr_assert_gt (moved, kills / 10, "few kills came while it projected");

    int64_t head = au_head (s_broker->api, 20000);
    cr_assert_gt (head, 0);
    s_run_to (killed, (uint64_t) head, log);
    s_run_to (clean, (uint64_t) head, log);
    char message [1024];
    cr_assert_eq (pu_compare (PG, clean, PG, killed, NULL, message, sizeof message), 0,
                  "seed %u: %s", seed, message);
    //  And each event is there once
    cr_assert_eq (pu_query_int (PG, killed, "SELECT count(*) FROM ledger"), head);
    cr_assert_eq (pu_query_int (PG, killed, "SELECT events FROM totals"), head);
    cr_assert_eq (pu_query_int (PG, killed, "SELECT sum(qty) FROM stock"),
                  pu_query_int (PG, killed, "SELECT total FROM totals"));
    //  The comparison sees one row of difference (it compares something)
    char error [512];
    cr_assert_eq (pgu_exec (clean, "UPDATE stock SET qty = qty + 1 WHERE sku = "
                            "(SELECT min(sku) FROM stock)", NULL, 0, error, sizeof error), 0,
                  "%s", error);
    cr_assert_neq (pu_compare (PG, clean, PG, killed, NULL, message, sizeof message), 0);
    cr_assert_not_null (strstr (message, "differ"), "%s", message);
    free (log);
}
