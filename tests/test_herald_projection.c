/*  =========================================================================
    test_herald_projection - the contract of docs/projections.md, live

    On the real heraldd and real SQLite files, with tests/projutil.h's
    non-idempotent read model (stock qty = qty + n, a ledger row per event
    keyed by seq, a running total): the position table's contents; one
    transaction per batch; events at or below the stored seq skipped; RETRY
    and a busy database (another connection holding the write lock) rolled
    back and retried, never failed; an apply error mid-batch (the events
    before it committed, FAILED with its seq); two projections of one name
    on one file never applying an event twice; rebuild; a position beyond
    the broker's head or of another lineage is DATA_LOST; a damaged file
    or bad options refused with nothing written; wait, status, stop.
    Temporal projections, schemas, a loss while running and the example:
    test_herald_projection_time.c; the kill -9 proof:
    test_herald_projection_kill.c.
    =========================================================================
*/

#include <criterion/criterion.h>
#include <dirent.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <sqlite3.h>

#include "projtest.h"
#include "testutil.h"

TestSuite (herald_projection, .init = pt_setup, .fini = pt_teardown, .timeout = 120);

//  ---------------------------------------------------------------------
//  Live

Test (herald_projection, position_table_holds_seq_lineage_until_ts_and_commit_time)
{
    herald_projection_options_t options;
    pt_options (&options, pt_db);
    pt_projection = pt_open (at_agent, "inventory", &options);
    //  Opened: the table and a row at 0, the model's tables made by setup
    cr_assert_eq (pt_int ("SELECT seq FROM herald_projection WHERE name = 'inventory'"), 0);
    cr_assert_eq (pt_int ("SELECT count(*) FROM stock"), 0);
    struct timespec now;
    clock_gettime (CLOCK_REALTIME, &now);
    int64_t before = (int64_t) now.tv_sec * 1000000000 + now.tv_nsec;
    uint64_t head = pt_publish (40);
    cr_assert_eq (herald_projection_start (pt_projection, WAIT_MS), HERALD_OK,
                  "%s", herald_agent_last_error ());
    cr_assert_eq (herald_projection_wait (pt_projection, head, WAIT_MS), HERALD_OK,
                  "%s", herald_agent_last_error ());
    pt_assert_model (head);
    cr_assert_eq (pt_int ("SELECT seq FROM herald_projection WHERE name = 'inventory'"),
                  (int64_t) head);
    cr_assert_eq (pt_int ("SELECT lineage FROM herald_projection"), 0);
    cr_assert_eq (pt_int ("SELECT until_ts FROM herald_projection"), 0);
    cr_assert_geq (pt_int ("SELECT updated_ns FROM herald_projection"), before);
    cr_assert_eq (pt_int ("SELECT count(*) FROM herald_projection"), 1);
    herald_projection_status_t status = pt_status (pt_projection);
    cr_assert_eq (status.position, head);
    cr_assert_eq (status.applied, head);
    cr_assert_eq (status.skipped, 0);
    cr_assert_geq (status.transactions, 1);
    cr_assert_leq (status.transactions, head);
    cr_assert_eq (status.rollbacks, 0);
    cr_assert_eq (status.error, 0);
    //  Live events follow, each batch one more transaction
    uint64_t head2 = pt_publish (25);
    cr_assert_eq (herald_projection_wait (pt_projection, head2, WAIT_MS), HERALD_OK);
    pt_assert_model (head2);
    status = pt_status (pt_projection);
    int64_t deadline = (int64_t) tu_mono_ns () / 1000000 + WAIT_MS;
    while (status.state == HERALD_PROJECTION_CATCHING_UP
       &&  (int64_t) tu_mono_ns () / 1000000 < deadline) {
        usleep (10000);
        status = pt_status (pt_projection);
    }
    cr_assert_eq (status.state, HERALD_PROJECTION_LIVE);
    cr_assert_gt (status.transactions, 1);
}

Test (herald_projection, resumes_from_its_row_after_stop_and_reopen)
{
    herald_projection_options_t options;
    pt_options (&options, pt_db);
    pt_projection = pt_open (at_agent, "inventory", &options);
    uint64_t head = pt_publish (30);
    cr_assert_eq (herald_projection_start (pt_projection, WAIT_MS), HERALD_OK);
    cr_assert_eq (herald_projection_wait (pt_projection, head, WAIT_MS), HERALD_OK);
    cr_assert_eq (herald_projection_stop (pt_projection), HERALD_OK);
    cr_assert_eq (herald_projection_stop (pt_projection), HERALD_OK);     //  not running
    cr_assert_eq (pt_status (pt_projection).state, HERALD_PROJECTION_IDLE);
    herald_projection_destroy (&pt_projection);
    cr_assert_null (pt_projection);
    uint64_t head2 = pt_publish (30);
    atomic_store (&pt_model.calls, 0);
    pt_projection = pt_open (at_agent, "inventory", &options);
    cr_assert_eq (pt_status (pt_projection).position, head);
    cr_assert_eq (herald_projection_start (pt_projection, WAIT_MS), HERALD_OK);
    cr_assert_eq (herald_projection_start (pt_projection, WAIT_MS), HERALD_ERR_INVALID);
    cr_assert_eq (herald_projection_wait (pt_projection, head2, WAIT_MS), HERALD_OK);
    pt_assert_model (head2);
    //  Only the new events were offered to apply
    cr_assert_eq (atomic_load (&pt_model.calls), head2 - head);
}

Test (herald_projection, retry_rolls_back_and_offers_the_batch_again)
{
    uint64_t head = pt_publish (50);
    pt_model.retry_seq = 17;
    atomic_store (&pt_model.retry_times, 3);
    herald_projection_options_t options;
    pt_options (&options, pt_db);
    options.batch_max = 5;              //  a delivery batch in transactions of 5
    pt_projection = pt_open (at_agent, "inventory", &options);
    cr_assert_eq (herald_projection_start (pt_projection, WAIT_MS), HERALD_OK);
    cr_assert_eq (herald_projection_wait (pt_projection, head, WAIT_MS), HERALD_OK,
                  "%s", herald_agent_last_error ());
    pt_assert_model (head);
    herald_projection_status_t status = pt_status (pt_projection);
    cr_assert_geq (status.transactions, head / 5);
    cr_assert_eq (status.rollbacks, 3);
    cr_assert_eq (status.applied, head);
    cr_assert_eq (status.error, 0);
    cr_assert_eq (atomic_load (&pt_model.retry_times), 0);
}

Test (herald_projection, apply_error_commits_the_events_before_it_and_fails_with_its_seq)
{
    uint64_t head = pt_publish (60);     //  before start: one batch holds them all
    pt_model.fail_seq = 23;
    pt_model.fail_code = HERALD_ERR_CONFLICT;
    herald_projection_options_t options;
    pt_options (&options, pt_db);
    pt_projection = pt_open (at_agent, "inventory", &options);
    cr_assert_eq (herald_projection_start (pt_projection, WAIT_MS), HERALD_OK);
    herald_err rc = herald_projection_wait (pt_projection, head, WAIT_MS);
    cr_assert_eq (rc, HERALD_ERR_CONFLICT, "wait: %d %s", rc, herald_agent_last_error ());
    herald_projection_status_t status = pt_status (pt_projection);
    cr_assert_eq (status.state, HERALD_PROJECTION_FAILED);
    cr_assert_eq (status.error, HERALD_ERR_CONFLICT);
    cr_assert_not_null (strstr (status.message, "seq 23"), "%s", status.message);
    cr_assert_eq (status.position, 22);
    pt_assert_model (22);
    cr_assert_eq (pt_int ("SELECT seq FROM herald_projection"), 22);
    cr_assert_geq (status.rollbacks, 1);
    //  Fixed and started again: it goes on from 23
    pt_model.fail_seq = 0;
    herald_projection_stop (pt_projection);
    cr_assert_eq (herald_projection_start (pt_projection, WAIT_MS), HERALD_OK);
    cr_assert_eq (herald_projection_wait (pt_projection, head, WAIT_MS), HERALD_OK);
    pt_assert_model (head);
}

//  Hold the write lock of the file from another connection until told to
//  let go (at most 10 s)
typedef struct {
    const char *path;
    bool answered;                  //  BEGIN IMMEDIATE answered: locked says how
    bool locked;
    bool release;
    pthread_mutex_t lock;
    pthread_cond_t changed;
} s_holder_t;

static void *
s_hold (void *arg)
{
    s_holder_t *holder = (s_holder_t *) arg;
    sqlite3 *db = NULL;
    sqlite3_open (holder->path, &db);
    int code = sqlite3_exec (db, "BEGIN IMMEDIATE", NULL, NULL, NULL);
    pthread_mutex_lock (&holder->lock);
    holder->answered = true;
    holder->locked = code == SQLITE_OK;
    pthread_cond_broadcast (&holder->changed);
    struct timespec until;
    clock_gettime (CLOCK_REALTIME, &until);
    until.tv_sec += 10;
    while (!holder->release
       &&  pthread_cond_timedwait (&holder->changed, &holder->lock, &until) == 0)
        ;
    pthread_mutex_unlock (&holder->lock);
    sqlite3_exec (db, "ROLLBACK", NULL, NULL, NULL);
    sqlite3_close (db);
    return NULL;
}

Test (herald_projection, a_busy_database_is_retried_not_failed)
{
    herald_projection_options_t options;
    pt_options (&options, pt_db);
    pt_projection = pt_open (at_agent, "inventory", &options);
    cr_assert_eq (herald_projection_start (pt_projection, WAIT_MS), HERALD_OK);
    s_holder_t holder = { .path = pt_db };
    pthread_mutex_init (&holder.lock, NULL);
    pthread_cond_init (&holder.changed, NULL);
    pthread_t thread;
    pthread_create (&thread, NULL, s_hold, &holder);
    pthread_mutex_lock (&holder.lock);
    while (!holder.answered)
        pthread_cond_wait (&holder.changed, &holder.lock);
    bool locked = holder.locked;
    pthread_mutex_unlock (&holder.lock);
    uint64_t head = 0;
    herald_projection_status_t status = pt_status (pt_projection);
    if (locked) {
        head = pt_publish (20);
        //  Let go once the projection met the lock twice (busy, retried)
        int64_t deadline = (int64_t) tu_mono_ns () / 1000000 + WAIT_MS;
        while (status.rollbacks < 2 && status.state != HERALD_PROJECTION_FAILED
           &&  (int64_t) tu_mono_ns () / 1000000 < deadline) {
            usleep (10000);
            status = pt_status (pt_projection);
        }
    }
    pthread_mutex_lock (&holder.lock);
    holder.release = true;
    pthread_cond_broadcast (&holder.changed);
    pthread_mutex_unlock (&holder.lock);
    pthread_join (thread, NULL);
    cr_assert (locked, "the other connection could not take the write lock");
    cr_assert_geq (status.rollbacks, 2, "the lock was never met");
    cr_assert_eq (status.error, 0, "%s", status.message);
    cr_assert_eq (herald_projection_wait (pt_projection, head, WAIT_MS), HERALD_OK,
                  "%s", herald_agent_last_error ());
    pt_assert_model (head);
    status = pt_status (pt_projection);
    cr_assert_eq (status.error, 0);
    cr_assert_neq (status.state, HERALD_PROJECTION_FAILED);
}

Test (herald_projection, two_projections_of_one_name_on_one_file_never_apply_twice)
{
    herald_agent_options_t agent_options;
    au_options (&agent_options, at_broker, NULL);
    agent_options.retry_max_ms = 50;
    pt_agent2 = herald_agent_new ("projection-test-2", &agent_options);
    cr_assert_not_null (pt_agent2);
    herald_projection_options_t options;
    pt_options (&options, pt_db);
    pt_projection = pt_open (at_agent, "inventory", &options);
    pt_other = pt_open (pt_agent2, "inventory", &options);
    cr_assert_eq (herald_projection_start (pt_projection, WAIT_MS), HERALD_OK);
    cr_assert_eq (herald_projection_start (pt_other, WAIT_MS), HERALD_OK);
    uint64_t head = 0;
    for (int round = 0; round < 10; round++)
        head = pt_publish (100);
    cr_assert_eq (herald_projection_wait (pt_projection, head, WAIT_MS), HERALD_OK,
                  "%s", herald_agent_last_error ());
    cr_assert_eq (herald_projection_wait (pt_other, head, WAIT_MS), HERALD_OK,
                  "%s", herald_agent_last_error ());
    pt_assert_model (head);
    herald_projection_status_t one = pt_status (pt_projection), two = pt_status (pt_other);
    cr_assert_eq (one.applied + two.applied, head, "%" PRIu64 " + %" PRIu64, one.applied,
                  two.applied);
    //  Each sees every event: what one applied the other skips (a wait
    //  returns once the row is at head, which the other may have written)
    int64_t deadline = (int64_t) tu_mono_ns () / 1000000 + WAIT_MS;
    while (one.skipped + two.skipped < head && (int64_t) tu_mono_ns () / 1000000 < deadline) {
        usleep (10000);
        one = pt_status (pt_projection);
        two = pt_status (pt_other);
    }
    cr_assert_eq (one.applied + two.applied, head);
    cr_assert_eq (one.skipped + two.skipped, head, "%" PRIu64 " + %" PRIu64, one.skipped,
                  two.skipped);
    cr_assert_eq (one.error + two.error, 0);
}

Test (herald_projection, rebuild_drops_the_model_and_projects_again_from_1)
{
    uint64_t head = pt_publish (45);
    herald_projection_options_t options;
    pt_options (&options, pt_db);
    pt_projection = pt_open (at_agent, "inventory", &options);
    cr_assert_eq (herald_projection_start (pt_projection, WAIT_MS), HERALD_OK);
    cr_assert_eq (herald_projection_wait (pt_projection, head, WAIT_MS), HERALD_OK);
    char message [256];
    char *before = pu_dump (HERALD_PROJECTION_SQLITE, pt_db, NULL, message, sizeof message);
    cr_assert_not_null (before, "%s", message);
    //  Damage the read model by hand: the rebuild must not keep any of it
    sqlite3 *db;
    cr_assert_eq (sqlite3_open (pt_db, &db), SQLITE_OK);
    sqlite3_busy_timeout (db, 5000);
    cr_assert_eq (sqlite3_exec (db, "UPDATE stock SET qty = qty + 1000", NULL, NULL, NULL),
                  SQLITE_OK);
    sqlite3_close (db);
    cr_assert_eq (herald_projection_rebuild (pt_projection, WAIT_MS), HERALD_OK,
                  "%s", herald_agent_last_error ());
    cr_assert_eq (atomic_load (&pt_model.resets), 1);
    cr_assert_eq (herald_projection_wait (pt_projection, head, WAIT_MS), HERALD_OK);
    char *after = pu_dump (HERALD_PROJECTION_SQLITE, pt_db, NULL, message, sizeof message);
    cr_assert_not_null (after, "%s", message);
    cr_assert_str_eq (after, before);
    herald_projection_status_t status = pt_status (pt_projection);
    cr_assert_eq (status.rebuilds, 1);
    cr_assert_eq (status.applied, 2 * head);
    free (before);
    free (after);
    //  Not running: rebuild leaves it stopped at 0
    herald_projection_stop (pt_projection);
    cr_assert_eq (herald_projection_rebuild (pt_projection, WAIT_MS), HERALD_OK);
    cr_assert_eq (pt_int ("SELECT seq FROM herald_projection"), 0);
    cr_assert_eq (pt_int ("SELECT count(*) FROM ledger"), 0);
    cr_assert_eq (pt_status (pt_projection).state, HERALD_PROJECTION_IDLE);
    //  Without a reset function there is nothing to drop
    herald_projection_destroy (&pt_projection);
    options.reset = NULL;
    pt_projection = pt_open (at_agent, "inventory", &options);
    cr_assert_eq (herald_projection_rebuild (pt_projection, WAIT_MS), HERALD_ERR_INVALID);
}

Test (herald_projection, a_position_beyond_the_brokers_head_is_data_lost)
{
    uint64_t head = pt_publish (50);
    herald_projection_options_t options;
    pt_options (&options, pt_db);
    pt_projection = pt_open (at_agent, "inventory", &options);
    cr_assert_eq (herald_projection_start (pt_projection, WAIT_MS), HERALD_OK);
    cr_assert_eq (herald_projection_wait (pt_projection, head, WAIT_MS), HERALD_OK);
    herald_projection_destroy (&pt_projection);
    //  The broker loses its store: a new one, with fewer events
    herald_agent_destroy (&at_agent);
    bu_broker_destroy (&at_broker);
    at_broker = bu_broker_new ("projection-lost", NULL);
    cr_assert_not_null (at_broker);
    cr_assert_eq (bu_broker_start (at_broker, AT_START_MS), 0);
    uint64_t head2 = pt_publish (10);
    cr_assert_lt (head2, head);
    herald_agent_options_t agent_options;
    au_options (&agent_options, at_broker, NULL);
    at_agent = herald_agent_new ("projection-test", &agent_options);
    cr_assert_not_null (at_agent);
    atomic_store (&pt_model.calls, 0);
    pt_projection = pt_open (at_agent, "inventory", &options);
    herald_err rc = herald_projection_start (pt_projection, WAIT_MS);
    cr_assert_eq (rc, HERALD_ERR_DATA_LOST, "%d %s", rc, herald_agent_last_error ());
    herald_projection_status_t status = pt_status (pt_projection);
    cr_assert_eq (status.state, HERALD_PROJECTION_FAILED);
    cr_assert_eq (status.error, HERALD_ERR_DATA_LOST);
    cr_assert_not_null (strstr (status.message, "rebuild"), "%s", status.message);
    cr_assert_eq (atomic_load (&pt_model.calls), 0);
    cr_assert_eq (pt_int ("SELECT seq FROM herald_projection"), (int64_t) head);
    //  Rebuilt, it projects the new log
    cr_assert_eq (herald_projection_rebuild (pt_projection, WAIT_MS), HERALD_OK);
    cr_assert_eq (herald_projection_start (pt_projection, WAIT_MS), HERALD_OK);
    cr_assert_eq (herald_projection_wait (pt_projection, head2, WAIT_MS), HERALD_OK);
    pt_assert_model (head2);
}

Test (herald_projection, a_lineage_other_than_the_rows_is_data_lost)
{
    uint64_t head = pt_publish (20);
    herald_projection_options_t options;
    pt_options (&options, pt_db);
    pt_projection = pt_open (at_agent, "inventory", &options);
    cr_assert_eq (herald_projection_start (pt_projection, WAIT_MS), HERALD_OK);
    cr_assert_eq (herald_projection_wait (pt_projection, head, WAIT_MS), HERALD_OK);
    herald_projection_stop (pt_projection);
    //  As if built before the broker accepted a loss (lineage 3)
    sqlite3 *db;
    cr_assert_eq (sqlite3_open (pt_db, &db), SQLITE_OK);
    cr_assert_eq (sqlite3_exec (db, "UPDATE herald_projection SET lineage = 3", NULL, NULL,
                                NULL), SQLITE_OK);
    sqlite3_close (db);
    herald_err rc = herald_projection_start (pt_projection, WAIT_MS);
    cr_assert_eq (rc, HERALD_ERR_DATA_LOST, "%d %s", rc, herald_agent_last_error ());
    cr_assert_not_null (strstr (herald_agent_last_error (), "lineage"));
}

Test (herald_projection, wait_times_out_and_status_reports)
{
    herald_projection_options_t options;
    pt_options (&options, pt_db);
    pt_projection = pt_open (at_agent, "inventory", &options);
    herald_projection_status_t status = pt_status (pt_projection);
    cr_assert_eq (status.state, HERALD_PROJECTION_IDLE);
    cr_assert_eq (status.position, 0);
    cr_assert_eq (status.until_ts, 0);
    cr_assert_eq (herald_projection_wait (pt_projection, 1, 100), HERALD_ERR_TIMEOUT);
    cr_assert_eq (herald_projection_start (pt_projection, WAIT_MS), HERALD_OK);
    cr_assert_eq (herald_projection_wait (pt_projection, 5, 100), HERALD_ERR_TIMEOUT);
    cr_assert_eq (herald_projection_status (NULL, &status), HERALD_ERR_INVALID);
    cr_assert_eq (herald_projection_status (pt_projection, NULL), HERALD_ERR_INVALID);
    cr_assert_eq (herald_projection_wait (NULL, 1, 1), HERALD_ERR_INVALID);
    cr_assert_eq (herald_projection_start (NULL, 1), HERALD_ERR_INVALID);
    cr_assert_eq (herald_projection_stop (NULL), HERALD_ERR_INVALID);
    cr_assert_eq (herald_projection_rebuild (NULL, 1), HERALD_ERR_INVALID);
    herald_projection_destroy (NULL);
    cr_assert_eq (herald_projection_options_size (), sizeof (herald_projection_options_t));
    cr_assert_eq (herald_projection_status_size (), sizeof (herald_projection_status_t));
    //  Events of other topics do not hold a wait for the head back
    cr_assert_eq (au_publish (at_broker->api, "other.t%zu", 1, 5, WAIT_MS), 0);
    uint64_t head = pt_publish (5);
    cr_assert_eq (au_publish (at_broker->api, "other.t%zu", 1, 5, WAIT_MS), 0);
    int64_t head2 = au_head (at_broker->api, WAIT_MS);
    cr_assert_eq (herald_projection_wait (pt_projection, (uint64_t) head2, WAIT_MS), HERALD_OK,
                  "%s", herald_agent_last_error ());
    cr_assert_eq (pt_int ("SELECT count(*) FROM ledger"), 5);
    cr_assert_eq (pt_int ("SELECT max(seq) FROM ledger"), (int64_t) head);
}

//  ---------------------------------------------------------------------

//  ---------------------------------------------------------------------
//  Bad input

Test (herald_projection, a_file_that_is_not_sqlite_is_refused_and_left_as_it_was)
{
    char bytes [4096];
    for (size_t index = 0; index < sizeof bytes; index++)
        bytes [index] = (char) (index * 7 + 3);
    cr_assert_eq (tu_write_file (pt_db, bytes, sizeof bytes), 0);
    char *before = tu_dir_snapshot (pt_dir);
    herald_projection_options_t options;
    pt_options (&options, pt_db);
    cr_assert_null (herald_projection_new (at_agent, "inventory", &options));
    cr_assert_eq (herald_agent_last_errcode (), HERALD_ERR_IO);
    cr_assert_not_null (strstr (herald_agent_last_error (), "not a database"), "%s",
                        herald_agent_last_error ());
    char *after = tu_dir_snapshot (pt_dir);
    cr_assert_str_eq (after, before);
    free (before);
    free (after);
    //  A SQLite file whose header was damaged, likewise
    herald_projection_options_t good;
    pt_options (&good, pt_db);
    unlink (pt_db);
    pt_projection = pt_open (at_agent, "inventory", &good);
    herald_projection_destroy (&pt_projection);
    FILE *file = fopen (pt_db, "r+b");
    cr_assert_not_null (file);
    fwrite ("not the magic!!!", 1, 16, file);
    fclose (file);
    before = tu_dir_snapshot (pt_dir);
    cr_assert_null (herald_projection_new (at_agent, "inventory", &good));
    cr_assert_eq (herald_agent_last_errcode (), HERALD_ERR_IO);
    after = tu_dir_snapshot (pt_dir);
    cr_assert_str_eq (after, before);
    free (before);
    free (after);
    //  A directory that does not exist
    good.database = "/nonexistent-herald-dir/model.db";
    cr_assert_null (herald_projection_new (at_agent, "inventory", &good));
    cr_assert_eq (herald_agent_last_errcode (), HERALD_ERR_IO);
}

Test (herald_projection, a_setup_that_fails_is_refused_and_rolled_back)
{
    pt_model.setup_fails = HERALD_ERR_CONFLICT;
    herald_projection_options_t options;
    pt_options (&options, pt_db);
    cr_assert_null (herald_projection_new (at_agent, "inventory", &options));
    cr_assert_eq (herald_agent_last_errcode (), HERALD_ERR_CONFLICT);
    cr_assert_not_null (strstr (herald_agent_last_error (), "setup"));
    //  The row was not written either
    cr_assert_eq (pt_int ("SELECT count(*) FROM sqlite_master WHERE name = "
                         "'herald_projection'"), 0);
}

static void
s_refused (const char *name, const herald_projection_options_t *options, herald_err code,
           const char *what)
{
    cr_assert_null (herald_projection_new (at_agent, name, options), "%s", what);
    cr_assert_eq (herald_agent_last_errcode (), code, "%s: %d %s", what,
                  herald_agent_last_errcode (), herald_agent_last_error ());
}

Test (herald_projection, bad_options_are_refused_and_nothing_is_written)
{
    herald_projection_options_t options;
    pt_options (&options, pt_db);
    cr_assert_null (herald_projection_new (NULL, "inventory", &options));
    cr_assert_eq (herald_agent_last_errcode (), HERALD_ERR_INVALID);
    s_refused ("inventory", NULL, HERALD_ERR_INVALID, "no options");
    s_refused ("", &options, HERALD_ERR_INVALID, "empty name");
    s_refused (".hidden", &options, HERALD_ERR_INVALID, "dot name");
    s_refused ("in ventory", &options, HERALD_ERR_INVALID, "space");
    char long_name [140];
    memset (long_name, 'a', 129);
    long_name [129] = 0;
    s_refused (long_name, &options, HERALD_ERR_INVALID, "long name");
    s_refused (NULL, &options, HERALD_ERR_INVALID, "NULL name");
    herald_projection_options_t bad = options;
    bad.database = NULL;
    s_refused ("inventory", &bad, HERALD_ERR_INVALID, "no database");
    bad = options;
    bad.database = "";
    s_refused ("inventory", &bad, HERALD_ERR_INVALID, "empty database");
    bad = options;
    bad.prefixes = NULL;
    s_refused ("inventory", &bad, HERALD_ERR_INVALID, "no prefixes");
    const char *none [] = { NULL };
    bad.prefixes = none;
    s_refused ("inventory", &bad, HERALD_ERR_INVALID, "empty prefixes");
    bad = options;
    bad.apply = NULL;
    s_refused ("inventory", &bad, HERALD_ERR_INVALID, "no apply");
    bad = options;
    bad.backend = (herald_projection_backend_t) 99;
    s_refused ("inventory", &bad, HERALD_ERR_INVALID, "backend 99");
    bad = options;
    bad.batch_max = 257;
    s_refused ("inventory", &bad, HERALD_ERR_INVALID, "live batch 257");
    bad.until_ts = 1;
    bad.batch_max = 100001;
    s_refused ("inventory", &bad, HERALD_ERR_INVALID, "temporal batch 100001");
    bad = options;
    bad.until_ts = (uint64_t) INT64_MAX + 1;
    s_refused ("inventory", &bad, HERALD_ERR_INVALID, "until_ts beyond int64");
    bad = options;
    bad.table = "positions; DROP TABLE x";
    s_refused ("inventory", &bad, HERALD_ERR_INVALID, "table with SQL");
    bad.table = "9lives";
    s_refused ("inventory", &bad, HERALD_ERR_INVALID, "table starting with a digit");
    bad = options;
    bad.on_incompatible = HERALD_SCHEMA_PARK;
    s_refused ("inventory", &bad, HERALD_ERR_INVALID, "PARK without on_parked");
    bad = options;
    bad.on_incompatible = (herald_schema_policy_t) 7;
    s_refused ("inventory", &bad, HERALD_ERR_INVALID, "policy 7");
    herald_schema_want_t twice [] = { { "order.placed", 2 }, { "order.placed", 1 } };
    bad = options;
    bad.wants = twice;
    bad.want_count = 2;
    s_refused ("inventory", &bad, HERALD_ERR_INVALID, "a type twice");
    herald_schema_want_t zero [] = { { "order.placed", 0 } };
    bad.wants = zero;
    bad.want_count = 1;
    s_refused ("inventory", &bad, HERALD_ERR_INVALID, "schema 0");
    bad.wants = NULL;
    s_refused ("inventory", &bad, HERALD_ERR_INVALID, "want_count without wants");
    //  Nothing was created by any of them
    struct stat info;
    cr_assert_neq (stat (pt_db, &info), 0, "a refused projection created its database");
    //  PostgreSQL where nothing listens: a clear error either way (UNSUPPORTED
    //  in a build without the backend, IO with it: test_herald_projection_pg
    //  has the rest)
    bad = options;
    bad.backend = HERALD_PROJECTION_POSTGRES;
    bad.database = "host=127.0.0.1 port=1 dbname=nothing connect_timeout=2";
    cr_assert_null (herald_projection_new (at_agent, "inventory", &bad));
    herald_err code = herald_agent_last_errcode ();
    cr_assert (code == HERALD_ERR_UNSUPPORTED || code == HERALD_ERR_IO, "%d %s", code,
               herald_agent_last_error ());
    //  A table name of one's own holds the rows
    options.table = "read_positions";
    pt_projection = pt_open (at_agent, "inventory", &options);
    cr_assert_eq (pt_int ("SELECT count(*) FROM read_positions"), 1);
}
