/*  =========================================================================
    test_herald_projection_pg - projections into a real PostgreSQL server

    docs/projections.md's contract on PostgreSQL, through the public API,
    on the real heraldd and a real server the test starts
    (tests/pgserver.sh), with tests/projutil.h's non-idempotent read model
    (as test_herald_projection.c does on SQLite): the position table in
    bigint columns; resume from the row; RETRY and an apply error; two
    projections of one name never applying an event twice; rebuild; a
    temporal projection; a bad connection string and an unreachable server
    refused with nothing written.  And what only a server has: its backend
    terminated (pg_terminate_backend) again and again, from inside a batch
    and at random moments, retried, nothing doubled; the server stopped, and killed -9, and started again
    mid-run, the projection resuming; two processes projecting one name at
    once.  Each time the read model is compared row for row with one a
    single uninterrupted projection builds into a fresh database.  The
    kill -9 proof is test_herald_projection_pg_kill.c.

    One server for the tests that leave it running (started before the
    first test, a database per test); the tests that stop it start their
    own.  pgutil's watcher stops every server when the test ends, failed
    or not.
    =========================================================================
*/

#include <criterion/criterion.h>
#include <criterion/hooks.h>
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
#include <libpq-fe.h>

#include "agenttest.h"
#include "pgutil.h"
#include "projutil.h"
#include "testutil.h"

#define WAIT_MS         30000
#define TOPICS          "stock.sku%zu"
#define PG              HERALD_PROJECTION_POSTGRES

static pgu_server_t s_shared;           //  the runner's

ReportHook (PRE_ALL) (struct criterion_test_set *set)
{
    (void) set;
    if (pgu_server_start (&s_shared) == 0) {
        setenv ("HERALD_TEST_PG", s_shared.conninfo, 1);
        char port [16];
        snprintf (port, sizeof port, "%d", s_shared.port);
        setenv ("HERALD_TEST_PG_PORT", port, 1);
    }
    else
        fprintf (stderr, "cannot start PostgreSQL: %s\n", s_shared.error);
}

ReportHook (POST_ALL) (struct criterion_global_stats *stats)
{
    (void) stats;
    pgu_server_destroy (&s_shared);
}

static pgu_server_t s_server;           //  this test's view of its server
static pgu_server_t s_own;              //  a server of this test's own (restarts)
static char s_db [256];                 //  the database under test
static char s_clean [256];              //  the reference, built uninterrupted
static pu_model_t s_model;
static pu_model_t s_clean_model;
static herald_projection_t *s_projection;
static herald_projection_t *s_other;
static herald_agent_t *s_agent2;
static char *s_child_bin;
static char *s_logs;                    //  the children's logs
static pid_t s_children [2];

static void
s_setup (void)
{
    memset (&s_model, 0, sizeof s_model);
    memset (&s_clean_model, 0, sizeof s_clean_model);
    s_model.backend = s_clean_model.backend = PG;
    s_own.watch_fd = -1;
    at_setup ("projection-pg", "projection-pg-state");
    herald_agent_options_t options;
    au_options (&options, at_broker, NULL);
    options.retry_max_ms = 50;
    at_agent = herald_agent_new ("projection-pg-test", &options);
    cr_assert_not_null (at_agent, "%s", herald_agent_last_error ());
}

static void
s_teardown (void)
{
    for (int index = 0; index < 2; index++)
        if (s_children [index] > 0) {
            kill (s_children [index], SIGKILL);
            waitpid (s_children [index], NULL, 0);
            s_children [index] = 0;
        }
    free (s_child_bin);
    s_child_bin = NULL;
    tu_tmpdir_destroy (&s_logs);
    herald_projection_destroy (&s_projection);
    herald_projection_destroy (&s_other);
    herald_agent_destroy (&s_agent2);
    at_teardown ();
    pgu_server_destroy (&s_own);
}

TestSuite (pg, .init = s_setup, .fini = s_teardown, .timeout = 120);

//  Fresh databases (the model's and the reference's) on the shared
//  server, or with own on a server of this test's own
static void
s_databases (bool own)
{
    if (own) {
        cr_assert_eq (pgu_server_start (&s_own), 0, "%s", s_own.error);
        s_server = s_own;
    }
    else {
        const char *shared = getenv ("HERALD_TEST_PG");
        cr_assert_not_null (shared, "the shared PostgreSQL server did not start");
        memset (&s_server, 0, sizeof s_server);
        snprintf (s_server.conninfo, sizeof s_server.conninfo, "%s", shared);
        s_server.port = atoi (getenv ("HERALD_TEST_PG_PORT"));
    }
    //  Named after the test's pid: the shared server has every test's
    char name [64];
    snprintf (name, sizeof name, "model_%d", (int) getpid ());
    cr_assert_eq (pgu_database_new (&s_server, name, s_db, sizeof s_db), 0, "%s",
                  s_server.error);
    snprintf (name, sizeof name, "clean_%d", (int) getpid ());
    cr_assert_eq (pgu_database_new (&s_server, name, s_clean, sizeof s_clean), 0, "%s",
                  s_server.error);
}

static const char *s_prefixes [] = { "stock.", NULL };

static void
s_options (herald_projection_options_t *options, const char *database, pu_model_t *model)
{
    herald_projection_options_init (options);
    options->backend = PG;
    options->database = database;
    options->prefixes = s_prefixes;
    options->setup = pu_model_setup;
    options->reset = pu_model_reset;
    options->apply = pu_model_apply;
    options->arg = model;
}

static herald_projection_t *
s_open (herald_agent_t *agent, const char *name, const herald_projection_options_t *options)
{
    herald_projection_t *projection = herald_projection_new (agent, name, options);
    cr_assert_not_null (projection, "herald_projection_new: %s", herald_agent_last_error ());
    return projection;
}

static uint64_t
s_publish (size_t count)
{
    cr_assert_eq (au_publish (at_broker->api, TOPICS, 5, count, WAIT_MS), 0);
    int64_t head = au_head (at_broker->api, WAIT_MS);
    cr_assert_gt (head, 0);
    return (uint64_t) head;
}

static int64_t
s_int (const char *database, const char *sql)
{
    return pu_query_int (PG, database, sql);
}

static herald_projection_status_t
s_status (herald_projection_t *projection)
{
    herald_projection_status_t status;
    cr_assert_eq (herald_projection_status (projection, &status), HERALD_OK);
    return status;
}

//  The model is exactly events 1..head, each once
static void
s_assert_model (const char *database, uint64_t head)
{
    cr_assert_eq (s_int (database, "SELECT count(*) FROM ledger"), (int64_t) head);
    if (head) {
        cr_assert_eq (s_int (database, "SELECT min(seq) FROM ledger"), 1);
        cr_assert_eq (s_int (database, "SELECT max(seq) FROM ledger"), (int64_t) head);
    }
    int64_t total = 0;
    for (uint64_t seq = 1; seq <= head; seq++)
        total += (int64_t) (seq % 7) + 1;
    cr_assert_eq (s_int (database, "SELECT total FROM totals"), total);
    cr_assert_eq (s_int (database, "SELECT coalesce (sum(qty), 0) FROM stock"), total);
    cr_assert_eq (s_int (database, "SELECT events FROM totals"), (int64_t) head);
}

//  A second agent (a projection of the same name on one agent would be a
//  second subscription of that name)
static herald_agent_t *
s_agent_2 (void)
{
    if (!s_agent2) {
        herald_agent_options_t options;
        au_options (&options, at_broker, NULL);
        options.retry_max_ms = 50;
        s_agent2 = herald_agent_new ("projection-pg-test-2", &options);
        cr_assert_not_null (s_agent2, "%s", herald_agent_last_error ());
    }
    return s_agent2;
}

//  Build the reference, uninterrupted, into s_clean up to head, and
//  compare it with s_db row for row (the position row included)
static void
s_assert_same_as_clean (uint64_t head)
{
    herald_projection_options_t options;
    s_options (&options, s_clean, &s_clean_model);
    herald_projection_t *clean = s_open (s_agent_2 (), "inventory", &options);
    cr_assert_eq (herald_projection_start (clean, WAIT_MS), HERALD_OK, "%s",
                  herald_agent_last_error ());
    herald_err rc = herald_projection_wait (clean, head, WAIT_MS);
    herald_projection_destroy (&clean);
    cr_assert_eq (rc, HERALD_OK, "%s", herald_agent_last_error ());
    char message [1024];
    cr_assert_eq (pu_compare (PG, s_clean, PG, s_db, NULL, message, sizeof message), 0,
                  "%s", message);
    s_assert_model (s_db, head);
}

//  ---------------------------------------------------------------------
//  The contract on PostgreSQL

Test (pg, position_table_in_bigint_columns_holds_the_position)
{
    s_databases (false);
    herald_projection_options_t options;
    s_options (&options, s_db, &s_model);
    s_projection = s_open (at_agent, "inventory", &options);
    cr_assert_eq (s_int (s_db, "SELECT count(*) FROM stock"), 0);
    cr_assert_eq (s_int (s_db, "SELECT count(*) FROM information_schema.columns WHERE "
                         "table_name = 'herald_projection' AND data_type = 'bigint' AND "
                         "column_name IN ('seq', 'lineage', 'until_ts', 'updated_ns')"), 4);
    struct timespec now;
    clock_gettime (CLOCK_REALTIME, &now);
    int64_t before = (int64_t) now.tv_sec * 1000000000 + now.tv_nsec;
    uint64_t head = s_publish (40);
    cr_assert_eq (herald_projection_start (s_projection, WAIT_MS), HERALD_OK,
                  "%s", herald_agent_last_error ());
    cr_assert_eq (herald_projection_wait (s_projection, head, WAIT_MS), HERALD_OK,
                  "%s", herald_agent_last_error ());
    s_assert_model (s_db, head);
    cr_assert_eq (s_int (s_db, "SELECT seq FROM herald_projection WHERE name = 'inventory'"),
                  (int64_t) head);
    cr_assert_eq (s_int (s_db, "SELECT lineage FROM herald_projection"), 0);
    cr_assert_eq (s_int (s_db, "SELECT until_ts FROM herald_projection"), 0);
    cr_assert_geq (s_int (s_db, "SELECT updated_ns FROM herald_projection"), before);
    herald_projection_status_t status = s_status (s_projection);
    cr_assert_eq (status.position, head);
    cr_assert_eq (status.applied, head);
    cr_assert_eq (status.rollbacks, 0);
    //  Live events follow
    uint64_t head2 = s_publish (25);
    cr_assert_eq (herald_projection_wait (s_projection, head2, WAIT_MS), HERALD_OK);
    s_assert_model (s_db, head2);
    cr_assert_eq (s_status (s_projection).state, HERALD_PROJECTION_LIVE);
}

Test (pg, resumes_from_its_row_and_retries_and_fails_as_on_sqlite)
{
    s_databases (false);
    uint64_t head = s_publish (60);
    s_model.retry_seq = 17;
    atomic_store (&s_model.retry_times, 3);
    herald_projection_options_t options;
    s_options (&options, s_db, &s_model);
    s_projection = s_open (at_agent, "inventory", &options);
    cr_assert_eq (herald_projection_start (s_projection, WAIT_MS), HERALD_OK);
    cr_assert_eq (herald_projection_wait (s_projection, head, WAIT_MS), HERALD_OK,
                  "%s", herald_agent_last_error ());
    s_assert_model (s_db, head);
    cr_assert_eq (s_status (s_projection).rollbacks, 3);
    herald_projection_destroy (&s_projection);

    //  Reopened: only the new events are offered; one fails mid-batch
    uint64_t head2 = s_publish (60);
    atomic_store (&s_model.calls, 0);
    s_model.fail_seq = head + 23;
    s_model.fail_code = HERALD_ERR_CONFLICT;
    s_projection = s_open (at_agent, "inventory", &options);
    cr_assert_eq (s_status (s_projection).position, head);
    cr_assert_eq (herald_projection_start (s_projection, WAIT_MS), HERALD_OK);
    herald_err rc = herald_projection_wait (s_projection, head2, WAIT_MS);
    cr_assert_eq (rc, HERALD_ERR_CONFLICT, "wait: %d %s", rc, herald_agent_last_error ());
    herald_projection_status_t status = s_status (s_projection);
    cr_assert_eq (status.state, HERALD_PROJECTION_FAILED);
    cr_assert_eq (status.position, head + 22);
    s_assert_model (s_db, head + 22);
    //  Fixed and started again: it goes on from there
    s_model.fail_seq = 0;
    herald_projection_stop (s_projection);
    cr_assert_eq (herald_projection_start (s_projection, WAIT_MS), HERALD_OK);
    cr_assert_eq (herald_projection_wait (s_projection, head2, WAIT_MS), HERALD_OK);
    s_assert_model (s_db, head2);
}

Test (pg, rebuild_drops_the_model_and_projects_again)
{
    s_databases (false);
    uint64_t head = s_publish (45);
    herald_projection_options_t options;
    s_options (&options, s_db, &s_model);
    s_projection = s_open (at_agent, "inventory", &options);
    cr_assert_eq (herald_projection_start (s_projection, WAIT_MS), HERALD_OK);
    cr_assert_eq (herald_projection_wait (s_projection, head, WAIT_MS), HERALD_OK);
    char error [512];
    cr_assert_eq (pgu_exec (s_db, "UPDATE stock SET qty = qty + 1000", NULL, 0, error,
                            sizeof error), 0, "%s", error);
    cr_assert_eq (herald_projection_rebuild (s_projection, WAIT_MS), HERALD_OK,
                  "%s", herald_agent_last_error ());
    cr_assert_eq (herald_projection_wait (s_projection, head, WAIT_MS), HERALD_OK);
    cr_assert_eq (atomic_load (&s_model.resets), 1);
    s_assert_same_as_clean (head);
}

//  A temporal projection: transactions of batch_max, until_ts in the row
Test (pg, temporal_projection_in_transactions_of_batch_max)
{
    s_databases (false);
    s_publish (30);
    struct timespec now;
    clock_gettime (CLOCK_REALTIME, &now);
    uint64_t until = (uint64_t) now.tv_sec * 1000000000 + (uint64_t) now.tv_nsec;
    uint64_t head = s_publish (30);
    //  The second publish is after until (its ts is the broker's, later)
    herald_projection_options_t options;
    s_options (&options, s_db, &s_model);
    options.until_ts = until;
    options.batch_max = 7;
    s_projection = s_open (at_agent, "as-of", &options);
    cr_assert_eq (herald_projection_start (s_projection, WAIT_MS), HERALD_OK,
                  "%s", herald_agent_last_error ());
    herald_projection_status_t status = s_status (s_projection);
    cr_assert_eq (status.state, HERALD_PROJECTION_DONE);
    cr_assert_eq (status.position, 30);
    cr_assert_eq (status.transactions, (30 + 6) / 7);
    s_assert_model (s_db, 30);
    cr_assert_eq (s_int (s_db, "SELECT until_ts FROM herald_projection WHERE name = 'as-of'"),
                  (int64_t) until);
    cr_assert_lt (30, head);
    herald_projection_destroy (&s_projection);
    //  Another instant under that name: refused, the row kept
    options.until_ts = until + 1;
    cr_assert_null (herald_projection_new (at_agent, "as-of", &options));
    cr_assert_eq (herald_agent_last_errcode (), HERALD_ERR_INVALID);
    cr_assert_eq (s_int (s_db, "SELECT until_ts FROM herald_projection WHERE name = 'as-of'"),
                  (int64_t) until);
}

//  Refused at new, with nothing written: a connection string that is not
//  one, a server that is not there, a role without the rights
Test (pg, bad_connection_strings_and_rights_are_refused)
{
    s_databases (false);
    herald_projection_options_t options;
    s_options (&options, "this is not a conninfo", &s_model);
    cr_assert_null (herald_projection_new (at_agent, "inventory", &options));
    cr_assert_eq (herald_agent_last_errcode (), HERALD_ERR_INVALID, "%s",
                  herald_agent_last_error ());
    cr_assert_not_null (strstr (herald_agent_last_error (), "connection string"), "%s",
                        herald_agent_last_error ());
    //  A port nobody listens on (the server's port + 1 is not it)
    char conninfo [300];
    snprintf (conninfo, sizeof conninfo, "host=127.0.0.1 port=%d dbname=x user=herald "
              "connect_timeout=2", s_server.port == 65535? 1: s_server.port + 1);
    s_options (&options, conninfo, &s_model);
    cr_assert_null (herald_projection_new (at_agent, "inventory", &options));
    cr_assert_eq (herald_agent_last_errcode (), HERALD_ERR_IO, "%s",
                  herald_agent_last_error ());
    cr_assert_not_null (strstr (herald_agent_last_error (), "cannot connect"), "%s",
                        herald_agent_last_error ());
    //  A role that may not create tables: refused, nothing created
    char error [512];
    cr_assert_eq (pgu_exec (s_db, "DROP ROLE IF EXISTS pgtest_reader; CREATE ROLE "
                            "pgtest_reader LOGIN", NULL, 0, error, sizeof error), 0, "%s",
                  error);
    snprintf (conninfo, sizeof conninfo, "%s user=pgtest_reader", s_db);
    s_options (&options, conninfo, &s_model);
    cr_assert_null (herald_projection_new (at_agent, "inventory", &options));
    cr_assert_eq (herald_agent_last_errcode (), HERALD_ERR_IO);
    cr_assert_not_null (strstr (herald_agent_last_error (), "permission denied"), "%s",
                        herald_agent_last_error ());
    cr_assert_eq (s_int (s_db, "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"),
                  0);
    pgu_exec (s_db, "DROP ROLE pgtest_reader", NULL, 0, error, sizeof error);
}

//  ---------------------------------------------------------------------
//  What only a server has

//  Terminates the projection's backends (application_name
//  herald-projection, in the database under test) at random moments
typedef struct {
    const char *database;
    const char *name;               //  the database's name
    atomic_bool stop;
    atomic_int terminated;
    int max;
} s_terminator_t;

static void *
s_terminate (void *arg)
{
    s_terminator_t *self = (s_terminator_t *) arg;
    char sql [256];
    snprintf (sql, sizeof sql, "SELECT count(pg_terminate_backend (pid)) FROM "
              "pg_stat_activity WHERE datname = '%s' AND application_name = "
              "'herald-projection' AND pid <> pg_backend_pid ()", self->name);
    unsigned seed = (unsigned) getpid ();
    for (int round = 0; round < 2000 && !atomic_load (&self->stop)
                     && atomic_load (&self->terminated) < self->max; round++) {
        usleep ((useconds_t) (5000 + rand_r (&seed) % 30000));
        char out [16], error [256];
        if (pgu_exec (self->database, sql, out, sizeof out, error, sizeof error) == 0)
            atomic_fetch_add (&self->terminated, atoi (out));
    }
    return NULL;
}

static const char *
s_dbname (const char *conninfo)
{
    const char *name = strstr (conninfo, "dbname=");
    cr_assert_not_null (name);
    static char copy [64];
    snprintf (copy, sizeof copy, "%s", name + 7);
    char *space = strchr (copy, ' ');
    if (space)
        *space = 0;
    return copy;
}

//  The model's apply, which first terminates its own backend at seqs 250,
//  750, 1250 ... (once each): always inside a batch's transaction, after
//  the events before it in the batch were applied
static atomic_int s_self_kills;
static uint64_t s_self_killed;          //  the last seq it did so at

static int
s_apply_terminating (void *db, const herald_delivery_t *event, void *arg)
{
    if (event->seq % 500 == 250 && event->seq > s_self_killed) {
        s_self_killed = event->seq;
        PQclear (PQexec ((PGconn *) db, "SELECT pg_terminate_backend (pg_backend_pid ())"));
        atomic_fetch_add (&s_self_kills, 1);
    }
    return pu_model_apply (db, event, arg);
}

Test (pg, backend_terminated_mid_batch_is_retried_nothing_doubled)
{
    s_databases (false);
    herald_projection_options_t options;
    s_options (&options, s_db, &s_model);
    options.apply = s_apply_terminating;
    s_projection = s_open (at_agent, "inventory", &options);
    cr_assert_eq (herald_projection_start (s_projection, WAIT_MS), HERALD_OK);
    s_terminator_t terminator = { .database = s_db, .name = s_dbname (s_db), .max = 25 };
    pthread_t thread;
    cr_assert_eq (pthread_create (&thread, NULL, s_terminate, &terminator), 0);
    uint64_t head = 0;
    for (int round = 0; round < 30; round++)
        head = s_publish (100);
    herald_err rc = herald_projection_wait (s_projection, head, WAIT_MS);
    atomic_store (&terminator.stop, true);
    pthread_join (thread, NULL);
    cr_assert_eq (rc, HERALD_OK, "%s", herald_agent_last_error ());
    herald_projection_status_t status = s_status (s_projection);
    fprintf (stderr, "test_herald_projection_pg: %d backends terminated mid-batch by "
             "apply, %d at random; %" PRIu64 " rollbacks, %" PRIu64 " transactions\n",
             atomic_load (&s_self_kills), atomic_load (&terminator.terminated),
             status.rollbacks, status.transactions);
    cr_assert_eq (atomic_load (&s_self_kills), (int) (head / 500));
    cr_assert_geq (status.rollbacks, (uint64_t) atomic_load (&s_self_kills));
    cr_assert_eq (status.error, 0, "%s", status.message);
    cr_assert_eq (status.applied, head);
    s_assert_same_as_clean (head);
}

//  An apply written without RETRY in mind: every failed statement is an
//  error.  A statement that failed because the server dropped the
//  connection is no fault of the event: the projection reconnects and
//  offers the batch again instead of stopping
static int
s_apply_naive (void *db, const herald_delivery_t *event, void *arg)
{
    int rc = s_apply_terminating (db, event, arg);
    return rc == HERALD_RETRY? HERALD_ERR_IO: rc;
}

Test (pg, an_apply_error_on_a_lost_connection_is_retried_not_fatal)
{
    s_databases (false);
    herald_projection_options_t options;
    s_options (&options, s_db, &s_model);
    options.apply = s_apply_naive;
    s_projection = s_open (at_agent, "inventory", &options);
    cr_assert_eq (herald_projection_start (s_projection, WAIT_MS), HERALD_OK);
    uint64_t head = 0;
    for (int round = 0; round < 12; round++)
        head = s_publish (100);
    herald_err rc = herald_projection_wait (s_projection, head, WAIT_MS);
    cr_assert_eq (rc, HERALD_OK, "%s", herald_agent_last_error ());
    herald_projection_status_t status = s_status (s_projection);
    cr_assert_eq (atomic_load (&s_self_kills), (int) (head / 500));
    cr_assert_geq (status.rollbacks, (uint64_t) atomic_load (&s_self_kills));
    cr_assert_eq (status.error, 0, "%s", status.message);
    cr_assert_eq (status.applied, head);
    s_assert_same_as_clean (head);
}

//  The same for a temporal projection (its own loop of retries)
Test (pg, backend_terminated_mid_temporal_run_is_retried)
{
    s_databases (false);
    uint64_t head = 0;
    for (int round = 0; round < 20; round++)
        head = s_publish (100);
    struct timespec now;
    clock_gettime (CLOCK_REALTIME, &now);
    herald_projection_options_t options;
    s_options (&options, s_db, &s_model);
    options.until_ts = (uint64_t) now.tv_sec * 1000000000 + (uint64_t) now.tv_nsec;
    options.batch_max = 50;
    s_projection = s_open (at_agent, "as-of", &options);
    s_terminator_t terminator = { .database = s_db, .name = s_dbname (s_db), .max = 10 };
    pthread_t thread;
    cr_assert_eq (pthread_create (&thread, NULL, s_terminate, &terminator), 0);
    herald_err rc = herald_projection_start (s_projection, WAIT_MS);
    atomic_store (&terminator.stop, true);
    pthread_join (thread, NULL);
    cr_assert_eq (rc, HERALD_OK, "%s", herald_agent_last_error ());
    herald_projection_status_t status = s_status (s_projection);
    cr_assert_eq (status.state, HERALD_PROJECTION_DONE);
    cr_assert_eq (status.position, head);
    s_assert_model (s_db, head);
}

//  The server stopped (cleanly, then kill -9) and started again while
//  events arrive: the projection waits, reconnects, resumes
Test (pg, server_stopped_and_killed_mid_run_resumes_identical)
{
    s_databases (true);
    herald_projection_options_t options;
    s_options (&options, s_db, &s_model);
    s_projection = s_open (at_agent, "inventory", &options);
    cr_assert_eq (herald_projection_start (s_projection, WAIT_MS), HERALD_OK);
    uint64_t head = s_publish (300);
    for (int round = 0; round < 2; round++) {
        //  Down while a stream of events comes in
        if (round == 0)
            cr_assert_eq (pgu_server_stop (&s_own), 0, "%s", s_own.error);
        else
            cr_assert_eq (pgu_server_kill (&s_own), 0, "%s", s_own.error);
        for (int chunk = 0; chunk < 5; chunk++)
            head = s_publish (100);
        herald_projection_status_t status = s_status (s_projection);
        cr_assert_neq (status.state, HERALD_PROJECTION_FAILED, "%s", status.message);
        cr_assert_lt (status.position, head, "it projected with the server down?");
        cr_assert_eq (pgu_server_restart (&s_own), 0, "%s", s_own.error);
        head = s_publish (100);
        cr_assert_eq (herald_projection_wait (s_projection, head, WAIT_MS), HERALD_OK,
                      "round %d: %s", round, herald_agent_last_error ());
    }
    //  (while it was down, the position stayed below the head: asserted above)
    herald_projection_status_t status = s_status (s_projection);
    cr_assert_eq (status.error, 0, "%s", status.message);
    s_assert_same_as_clean (head);
}

//  Two processes project one name into one database at once (and a
//  third starts while they run): every event applied once in all
Test (pg, two_processes_projecting_one_name_never_apply_twice)
{
    s_databases (false);
    s_child_bin = tu_build_program ("tests/projection_child");
    cr_assert_not_null (s_child_bin, "tests/projection_child not found");
    s_logs = tu_tmpdir_new ("projection-pg-logs");
    cr_assert_not_null (s_logs);
    uint64_t head = s_publish (200);
    char *logs [2];
    char until [32];
    //  The children run to a head that is not published yet: they project
    //  the events below while the rest arrive
    uint64_t final = head + 3000;
    snprintf (until, sizeof until, "%" PRIu64, final);
    for (int index = 0; index < 2; index++) {
        logs [index] = tu_path (s_logs, index? "child1.log": "child0.log");
        const char *args [] = { "postgres", s_db, at_broker->api, at_broker->fanout,
                                "inventory", "stock.", until, NULL };
        s_children [index] = au_spawn (s_child_bin, args, logs [index]);
        cr_assert_gt (s_children [index], 0);
    }
    for (int round = 0; round < 30; round++)
        head = s_publish (100);
    cr_assert_eq (head, final);
    for (int index = 0; index < 2; index++) {
        int status = 0;
        cr_assert_eq (au_child_wait (s_children [index], 90000, &status), 0,
                      "child %d did not finish (%s)", index, logs [index]);
        s_children [index] = 0;
        cr_assert (WIFEXITED (status) && WEXITSTATUS (status) == 0,
                   "child %d failed (status %d, see %s)", index, status, logs [index]);
    }
    free (logs [0]);
    free (logs [1]);
    //  A double apply would have failed a ledger INSERT and the child
    s_assert_same_as_clean (head);
}
