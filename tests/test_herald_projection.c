/*  =========================================================================
    test_herald_projection - the contract of docs/projections.md

    On the real heraldd and real SQLite files, with tests/projutil.h's
    non-idempotent read model (stock qty = qty + n, a ledger row per event
    keyed by seq, a running total): the position table's contents; one
    transaction per batch; events at or below the stored seq skipped; RETRY
    and a busy database (another connection holding the write lock) rolled
    back and retried, never failed; an apply error mid-batch (the events
    before it committed, FAILED with its seq); two projections of one name
    on one file never applying an event twice; rebuild; temporal
    projections (ts == until_ts included, one ns earlier excluded, until_ts
    kept in the row and a mismatch refused); a position beyond the broker's
    head is DATA_LOST; a damaged file or bad options refused with nothing
    written; wait, status, stop.  The kill -9 proof is
    test_herald_projection_kill.c.
    =========================================================================
*/

#include <criterion/criterion.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <sqlite3.h>

#include "agenttest.h"
#include "projutil.h"
#include "testutil.h"

#define WAIT_MS         20000
#define TOPICS          "stock.sku%zu"

static char *s_dir;                 //  the SQLite files
static char *s_db;                  //  s_dir/model.db
static pu_model_t s_model;
static herald_projection_t *s_projection;
static herald_projection_t *s_other;
static herald_agent_t *s_agent2;

static void
s_setup (void)
{
    memset (&s_model, 0, sizeof s_model);
    s_model.backend = HERALD_PROJECTION_SQLITE;
    at_setup ("projection", "projection-state");
    s_dir = tu_tmpdir_new ("projection-db");
    cr_assert_not_null (s_dir);
    s_db = tu_path (s_dir, "model.db");
    herald_agent_options_t options;
    au_options (&options, at_broker, NULL);    //  a projection needs no state_dir
    options.retry_max_ms = 50;
    at_agent = herald_agent_new ("projection-test", &options);
    cr_assert_not_null (at_agent, "%s", herald_agent_last_error ());
}

static pid_t s_example;

static void
s_teardown (void)
{
    if (s_example > 0) {
        kill (s_example, SIGKILL);
        waitpid (s_example, NULL, 0);
        s_example = 0;
    }
    herald_projection_destroy (&s_projection);
    herald_projection_destroy (&s_other);
    herald_agent_destroy (&s_agent2);
    free (s_db);
    s_db = NULL;
    tu_tmpdir_destroy (&s_dir);
    at_teardown ();
}

TestSuite (herald_projection, .init = s_setup, .fini = s_teardown, .timeout = 120);

static const char *s_prefixes [] = { "stock.", NULL };

static void
s_options (herald_projection_options_t *options, const char *database)
{
    herald_projection_options_init (options);
    options->database = database;
    options->prefixes = s_prefixes;
    options->setup = pu_model_setup;
    options->reset = pu_model_reset;
    options->apply = pu_model_apply;
    options->arg = &s_model;
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
s_int (const char *sql)
{
    return pu_query_int (HERALD_PROJECTION_SQLITE, s_db, sql);
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
s_assert_model (uint64_t head)
{
    cr_assert_eq (s_int ("SELECT count(*) FROM ledger"), (int64_t) head);
    cr_assert_eq (s_int ("SELECT min(seq) FROM ledger"), 1);
    cr_assert_eq (s_int ("SELECT max(seq) FROM ledger"), (int64_t) head);
    int64_t total = 0;
    for (uint64_t seq = 1; seq <= head; seq++)
        total += (int64_t) (seq % 7) + 1;
    cr_assert_eq (s_int ("SELECT total FROM totals"), total);
    cr_assert_eq (s_int ("SELECT sum(qty) FROM stock"), total);
    cr_assert_eq (s_int ("SELECT events FROM totals"), (int64_t) head);
}

//  ---------------------------------------------------------------------
//  Live

Test (herald_projection, position_table_holds_seq_lineage_until_ts_and_commit_time)
{
    herald_projection_options_t options;
    s_options (&options, s_db);
    s_projection = s_open (at_agent, "inventory", &options);
    //  Opened: the table and a row at 0, the model's tables made by setup
    cr_assert_eq (s_int ("SELECT seq FROM herald_projection WHERE name = 'inventory'"), 0);
    cr_assert_eq (s_int ("SELECT count(*) FROM stock"), 0);
    struct timespec now;
    clock_gettime (CLOCK_REALTIME, &now);
    int64_t before = (int64_t) now.tv_sec * 1000000000 + now.tv_nsec;
    uint64_t head = s_publish (40);
    cr_assert_eq (herald_projection_start (s_projection, WAIT_MS), HERALD_OK,
                  "%s", herald_agent_last_error ());
    cr_assert_eq (herald_projection_wait (s_projection, head, WAIT_MS), HERALD_OK,
                  "%s", herald_agent_last_error ());
    s_assert_model (head);
    cr_assert_eq (s_int ("SELECT seq FROM herald_projection WHERE name = 'inventory'"),
                  (int64_t) head);
    cr_assert_eq (s_int ("SELECT lineage FROM herald_projection"), 0);
    cr_assert_eq (s_int ("SELECT until_ts FROM herald_projection"), 0);
    cr_assert_geq (s_int ("SELECT updated_ns FROM herald_projection"), before);
    cr_assert_eq (s_int ("SELECT count(*) FROM herald_projection"), 1);
    herald_projection_status_t status = s_status (s_projection);
    cr_assert_eq (status.position, head);
    cr_assert_eq (status.applied, head);
    cr_assert_eq (status.skipped, 0);
    cr_assert_geq (status.transactions, 1);
    cr_assert_leq (status.transactions, head);
    cr_assert_eq (status.rollbacks, 0);
    cr_assert_eq (status.error, 0);
    //  Live events follow, each batch one more transaction
    uint64_t head2 = s_publish (25);
    cr_assert_eq (herald_projection_wait (s_projection, head2, WAIT_MS), HERALD_OK);
    s_assert_model (head2);
    status = s_status (s_projection);
    cr_assert_eq (status.state, HERALD_PROJECTION_LIVE);
    cr_assert_gt (status.transactions, 1);
}

Test (herald_projection, resumes_from_its_row_after_stop_and_reopen)
{
    herald_projection_options_t options;
    s_options (&options, s_db);
    s_projection = s_open (at_agent, "inventory", &options);
    uint64_t head = s_publish (30);
    cr_assert_eq (herald_projection_start (s_projection, WAIT_MS), HERALD_OK);
    cr_assert_eq (herald_projection_wait (s_projection, head, WAIT_MS), HERALD_OK);
    cr_assert_eq (herald_projection_stop (s_projection), HERALD_OK);
    cr_assert_eq (herald_projection_stop (s_projection), HERALD_OK);     //  not running
    cr_assert_eq (s_status (s_projection).state, HERALD_PROJECTION_IDLE);
    herald_projection_destroy (&s_projection);
    cr_assert_null (s_projection);
    uint64_t head2 = s_publish (30);
    atomic_store (&s_model.calls, 0);
    s_projection = s_open (at_agent, "inventory", &options);
    cr_assert_eq (s_status (s_projection).position, head);
    cr_assert_eq (herald_projection_start (s_projection, WAIT_MS), HERALD_OK);
    cr_assert_eq (herald_projection_start (s_projection, WAIT_MS), HERALD_ERR_INVALID);
    cr_assert_eq (herald_projection_wait (s_projection, head2, WAIT_MS), HERALD_OK);
    s_assert_model (head2);
    //  Only the new events were offered to apply
    cr_assert_eq (atomic_load (&s_model.calls), head2 - head);
}

Test (herald_projection, retry_rolls_back_and_offers_the_batch_again)
{
    uint64_t head = s_publish (50);
    s_model.retry_seq = 17;
    atomic_store (&s_model.retry_times, 3);
    herald_projection_options_t options;
    s_options (&options, s_db);
    s_projection = s_open (at_agent, "inventory", &options);
    cr_assert_eq (herald_projection_start (s_projection, WAIT_MS), HERALD_OK);
    cr_assert_eq (herald_projection_wait (s_projection, head, WAIT_MS), HERALD_OK,
                  "%s", herald_agent_last_error ());
    s_assert_model (head);
    herald_projection_status_t status = s_status (s_projection);
    cr_assert_eq (status.rollbacks, 3);
    cr_assert_eq (status.applied, head);
    cr_assert_eq (status.error, 0);
    cr_assert_eq (atomic_load (&s_model.retry_times), 0);
}

Test (herald_projection, apply_error_commits_the_events_before_it_and_fails_with_its_seq)
{
    uint64_t head = s_publish (60);     //  before start: one batch holds them all
    s_model.fail_seq = 23;
    s_model.fail_code = HERALD_ERR_CONFLICT;
    herald_projection_options_t options;
    s_options (&options, s_db);
    s_projection = s_open (at_agent, "inventory", &options);
    cr_assert_eq (herald_projection_start (s_projection, WAIT_MS), HERALD_OK);
    herald_err rc = herald_projection_wait (s_projection, head, WAIT_MS);
    cr_assert_eq (rc, HERALD_ERR_CONFLICT, "wait: %d %s", rc, herald_agent_last_error ());
    herald_projection_status_t status = s_status (s_projection);
    cr_assert_eq (status.state, HERALD_PROJECTION_FAILED);
    cr_assert_eq (status.error, HERALD_ERR_CONFLICT);
    cr_assert_not_null (strstr (status.message, "seq 23"), "%s", status.message);
    cr_assert_eq (status.position, 22);
    s_assert_model (22);
    cr_assert_eq (s_int ("SELECT seq FROM herald_projection"), 22);
    cr_assert_geq (status.rollbacks, 1);
    //  Fixed and started again: it goes on from 23
    s_model.fail_seq = 0;
    herald_projection_stop (s_projection);
    cr_assert_eq (herald_projection_start (s_projection, WAIT_MS), HERALD_OK);
    cr_assert_eq (herald_projection_wait (s_projection, head, WAIT_MS), HERALD_OK);
    s_assert_model (head);
}

//  Hold the write lock of the file for a while from another connection
typedef struct {
    const char *path;
    int hold_ms;
    bool locked;
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
    holder->locked = code == SQLITE_OK;
    pthread_cond_broadcast (&holder->changed);
    pthread_mutex_unlock (&holder->lock);
    usleep ((useconds_t) holder->hold_ms * 1000);
    sqlite3_exec (db, "ROLLBACK", NULL, NULL, NULL);
    sqlite3_close (db);
    return NULL;
}

Test (herald_projection, a_busy_database_is_retried_not_failed)
{
    herald_projection_options_t options;
    s_options (&options, s_db);
    s_projection = s_open (at_agent, "inventory", &options);
    cr_assert_eq (herald_projection_start (s_projection, WAIT_MS), HERALD_OK);
    s_holder_t holder = { .path = s_db, .hold_ms = 1500 };
    pthread_mutex_init (&holder.lock, NULL);
    pthread_cond_init (&holder.changed, NULL);
    pthread_t thread;
    pthread_create (&thread, NULL, s_hold, &holder);
    pthread_mutex_lock (&holder.lock);
    while (!holder.locked)
        pthread_cond_wait (&holder.changed, &holder.lock);
    pthread_mutex_unlock (&holder.lock);
    uint64_t head = s_publish (20);
    herald_err rc = herald_projection_wait (s_projection, head, WAIT_MS);
    pthread_join (thread, NULL);
    cr_assert_eq (rc, HERALD_OK, "%s", herald_agent_last_error ());
    s_assert_model (head);
    herald_projection_status_t status = s_status (s_projection);
    cr_assert_geq (status.rollbacks, 1, "the lock was never met");
    cr_assert_eq (status.error, 0);
    cr_assert_neq (status.state, HERALD_PROJECTION_FAILED);
}

Test (herald_projection, two_projections_of_one_name_on_one_file_never_apply_twice)
{
    herald_agent_options_t agent_options;
    au_options (&agent_options, at_broker, NULL);
    agent_options.retry_max_ms = 50;
    s_agent2 = herald_agent_new ("projection-test-2", &agent_options);
    cr_assert_not_null (s_agent2);
    herald_projection_options_t options;
    s_options (&options, s_db);
    s_projection = s_open (at_agent, "inventory", &options);
    s_other = s_open (s_agent2, "inventory", &options);
    cr_assert_eq (herald_projection_start (s_projection, WAIT_MS), HERALD_OK);
    cr_assert_eq (herald_projection_start (s_other, WAIT_MS), HERALD_OK);
    uint64_t head = 0;
    for (int round = 0; round < 10; round++)
        head = s_publish (100);
    cr_assert_eq (herald_projection_wait (s_projection, head, WAIT_MS), HERALD_OK,
                  "%s", herald_agent_last_error ());
    cr_assert_eq (herald_projection_wait (s_other, head, WAIT_MS), HERALD_OK,
                  "%s", herald_agent_last_error ());
    s_assert_model (head);
    herald_projection_status_t one = s_status (s_projection), two = s_status (s_other);
    cr_assert_eq (one.applied + two.applied, head, "%" PRIu64 " + %" PRIu64, one.applied,
                  two.applied);
    //  Each saw every event: what one applied the other skipped
    cr_assert_eq (one.skipped + two.skipped, head, "%" PRIu64 " + %" PRIu64, one.skipped,
                  two.skipped);
    cr_assert_eq (one.error + two.error, 0);
}

Test (herald_projection, rebuild_drops_the_model_and_projects_again_from_1)
{
    uint64_t head = s_publish (45);
    herald_projection_options_t options;
    s_options (&options, s_db);
    s_projection = s_open (at_agent, "inventory", &options);
    cr_assert_eq (herald_projection_start (s_projection, WAIT_MS), HERALD_OK);
    cr_assert_eq (herald_projection_wait (s_projection, head, WAIT_MS), HERALD_OK);
    char message [256];
    char *before = pu_dump (HERALD_PROJECTION_SQLITE, s_db, NULL, message, sizeof message);
    cr_assert_not_null (before, "%s", message);
    //  Damage the read model by hand: the rebuild must not keep any of it
    sqlite3 *db;
    cr_assert_eq (sqlite3_open (s_db, &db), SQLITE_OK);
    sqlite3_busy_timeout (db, 5000);
    cr_assert_eq (sqlite3_exec (db, "UPDATE stock SET qty = qty + 1000", NULL, NULL, NULL),
                  SQLITE_OK);
    sqlite3_close (db);
    cr_assert_eq (herald_projection_rebuild (s_projection, WAIT_MS), HERALD_OK,
                  "%s", herald_agent_last_error ());
    cr_assert_eq (atomic_load (&s_model.resets), 1);
    cr_assert_eq (herald_projection_wait (s_projection, head, WAIT_MS), HERALD_OK);
    char *after = pu_dump (HERALD_PROJECTION_SQLITE, s_db, NULL, message, sizeof message);
    cr_assert_not_null (after, "%s", message);
    cr_assert_str_eq (after, before);
    herald_projection_status_t status = s_status (s_projection);
    cr_assert_eq (status.rebuilds, 1);
    cr_assert_eq (status.applied, 2 * head);
    free (before);
    free (after);
    //  Not running: rebuild leaves it stopped at 0
    herald_projection_stop (s_projection);
    cr_assert_eq (herald_projection_rebuild (s_projection, WAIT_MS), HERALD_OK);
    cr_assert_eq (s_int ("SELECT seq FROM herald_projection"), 0);
    cr_assert_eq (s_int ("SELECT count(*) FROM ledger"), 0);
    cr_assert_eq (s_status (s_projection).state, HERALD_PROJECTION_IDLE);
    //  Without a reset function there is nothing to drop
    herald_projection_destroy (&s_projection);
    options.reset = NULL;
    s_projection = s_open (at_agent, "inventory", &options);
    cr_assert_eq (herald_projection_rebuild (s_projection, WAIT_MS), HERALD_ERR_INVALID);
}

Test (herald_projection, a_position_beyond_the_brokers_head_is_data_lost)
{
    uint64_t head = s_publish (50);
    herald_projection_options_t options;
    s_options (&options, s_db);
    s_projection = s_open (at_agent, "inventory", &options);
    cr_assert_eq (herald_projection_start (s_projection, WAIT_MS), HERALD_OK);
    cr_assert_eq (herald_projection_wait (s_projection, head, WAIT_MS), HERALD_OK);
    herald_projection_destroy (&s_projection);
    //  The broker loses its store: a new one, with fewer events
    herald_agent_destroy (&at_agent);
    bu_broker_destroy (&at_broker);
    at_broker = bu_broker_new ("projection-lost", NULL);
    cr_assert_not_null (at_broker);
    cr_assert_eq (bu_broker_start (at_broker, AT_START_MS), 0);
    uint64_t head2 = s_publish (10);
    cr_assert_lt (head2, head);
    herald_agent_options_t agent_options;
    au_options (&agent_options, at_broker, NULL);
    at_agent = herald_agent_new ("projection-test", &agent_options);
    cr_assert_not_null (at_agent);
    atomic_store (&s_model.calls, 0);
    s_projection = s_open (at_agent, "inventory", &options);
    herald_err rc = herald_projection_start (s_projection, WAIT_MS);
    cr_assert_eq (rc, HERALD_ERR_DATA_LOST, "%d %s", rc, herald_agent_last_error ());
    herald_projection_status_t status = s_status (s_projection);
    cr_assert_eq (status.state, HERALD_PROJECTION_FAILED);
    cr_assert_eq (status.error, HERALD_ERR_DATA_LOST);
    cr_assert_not_null (strstr (status.message, "rebuild"), "%s", status.message);
    cr_assert_eq (atomic_load (&s_model.calls), 0);
    cr_assert_eq (s_int ("SELECT seq FROM herald_projection"), (int64_t) head);
    //  Rebuilt, it projects the new log
    cr_assert_eq (herald_projection_rebuild (s_projection, WAIT_MS), HERALD_OK);
    cr_assert_eq (herald_projection_start (s_projection, WAIT_MS), HERALD_OK);
    cr_assert_eq (herald_projection_wait (s_projection, head2, WAIT_MS), HERALD_OK);
    s_assert_model (head2);
}

Test (herald_projection, a_lineage_other_than_the_rows_is_data_lost)
{
    uint64_t head = s_publish (20);
    herald_projection_options_t options;
    s_options (&options, s_db);
    s_projection = s_open (at_agent, "inventory", &options);
    cr_assert_eq (herald_projection_start (s_projection, WAIT_MS), HERALD_OK);
    cr_assert_eq (herald_projection_wait (s_projection, head, WAIT_MS), HERALD_OK);
    herald_projection_stop (s_projection);
    //  As if built before the broker accepted a loss (lineage 3)
    sqlite3 *db;
    cr_assert_eq (sqlite3_open (s_db, &db), SQLITE_OK);
    cr_assert_eq (sqlite3_exec (db, "UPDATE herald_projection SET lineage = 3", NULL, NULL,
                                NULL), SQLITE_OK);
    sqlite3_close (db);
    herald_err rc = herald_projection_start (s_projection, WAIT_MS);
    cr_assert_eq (rc, HERALD_ERR_DATA_LOST, "%d %s", rc, herald_agent_last_error ());
    cr_assert_not_null (strstr (herald_agent_last_error (), "lineage"));
}

Test (herald_projection, wait_times_out_and_status_reports)
{
    herald_projection_options_t options;
    s_options (&options, s_db);
    s_projection = s_open (at_agent, "inventory", &options);
    herald_projection_status_t status = s_status (s_projection);
    cr_assert_eq (status.state, HERALD_PROJECTION_IDLE);
    cr_assert_eq (status.position, 0);
    cr_assert_eq (status.until_ts, 0);
    cr_assert_eq (herald_projection_wait (s_projection, 1, 100), HERALD_ERR_TIMEOUT);
    cr_assert_eq (herald_projection_start (s_projection, WAIT_MS), HERALD_OK);
    cr_assert_eq (herald_projection_wait (s_projection, 5, 100), HERALD_ERR_TIMEOUT);
    cr_assert_eq (herald_projection_status (NULL, &status), HERALD_ERR_INVALID);
    cr_assert_eq (herald_projection_status (s_projection, NULL), HERALD_ERR_INVALID);
    cr_assert_eq (herald_projection_wait (NULL, 1, 1), HERALD_ERR_INVALID);
    cr_assert_eq (herald_projection_start (NULL, 1), HERALD_ERR_INVALID);
    cr_assert_eq (herald_projection_stop (NULL), HERALD_ERR_INVALID);
    cr_assert_eq (herald_projection_rebuild (NULL, 1), HERALD_ERR_INVALID);
    herald_projection_destroy (NULL);
    cr_assert_eq (herald_projection_options_size (), sizeof (herald_projection_options_t));
    cr_assert_eq (herald_projection_status_size (), sizeof (herald_projection_status_t));
    //  Events of other topics do not hold a wait for the head back
    cr_assert_eq (au_publish (at_broker->api, "other.t%zu", 1, 5, WAIT_MS), 0);
    uint64_t head = s_publish (5);
    cr_assert_eq (au_publish (at_broker->api, "other.t%zu", 1, 5, WAIT_MS), 0);
    int64_t head2 = au_head (at_broker->api, WAIT_MS);
    cr_assert_eq (herald_projection_wait (s_projection, (uint64_t) head2, WAIT_MS), HERALD_OK,
                  "%s", herald_agent_last_error ());
    cr_assert_eq (s_int ("SELECT count(*) FROM ledger"), 5);
    cr_assert_eq (s_int ("SELECT max(seq) FROM ledger"), (int64_t) head);
}

//  ---------------------------------------------------------------------
//  Temporal

typedef struct {
    uint64_t seqs [512];
    uint64_t ts [512];
    size_t count;
} s_log_t;

static int
s_collect (const herald_delivery_t *event, void *arg)
{
    s_log_t *log = (s_log_t *) arg;
    if (log->count < 512) {
        log->seqs [log->count] = event->seq;
        log->ts [log->count++] = event->ts;
    }
    return HERALD_OK;
}

//  The event of the log at index `at` or after whose ts is above the one before
static size_t
s_distinct_ts (const s_log_t *log, size_t at)
{
    while (at < log->count && log->ts [at] == log->ts [at - 1])
        at++;
    cr_assert_lt (at, log->count, "no two distinct ts");
    return at;
}

Test (herald_projection, temporal_includes_ts_equal_to_until_ts_and_excludes_one_ns_after)
{
    //  Three publishes: ts grows between them
    s_publish (30);
    s_publish (30);
    uint64_t head = s_publish (30);
    s_log_t log = { .count = 0 };
    herald_range_t range = { .from = 1 };
    cr_assert_eq (herald_agent_replay (at_agent, &range, s_collect, &log, WAIT_MS, NULL),
                  HERALD_OK);
    cr_assert_eq (log.count, head);
    size_t at = s_distinct_ts (&log, 35);       //  within the second publish or after
    uint64_t until = log.ts [at];
    //  Every event with ts <= until: the first index with a greater ts
    size_t included = at;
    while (included < log.count && log.ts [included] <= until)
        included++;
    herald_projection_options_t options;
    s_options (&options, s_db);
    options.until_ts = until;
    options.batch_max = 7;
    s_projection = s_open (at_agent, "as-of", &options);
    cr_assert_eq (s_status (s_projection).until_ts, until);
    cr_assert_eq (herald_projection_start (s_projection, WAIT_MS), HERALD_OK,
                  "%s", herald_agent_last_error ());
    herald_projection_status_t status = s_status (s_projection);
    cr_assert_eq (status.state, HERALD_PROJECTION_DONE);
    cr_assert_eq (status.position, log.seqs [included - 1]);
    cr_assert_eq (status.applied, included);
    cr_assert_eq (status.transactions, (included + 6) / 7);
    s_assert_model (log.seqs [included - 1]);
    cr_assert_eq (s_int ("SELECT until_ts FROM herald_projection WHERE name = 'as-of'"),
                  (int64_t) until);
    cr_assert_eq (herald_projection_wait (s_projection, head, 100), HERALD_OK);   //  DONE
    //  Started again: nothing more (no event of later ts comes under it)
    cr_assert_eq (herald_projection_start (s_projection, WAIT_MS), HERALD_OK);
    cr_assert_eq (s_status (s_projection).applied, included);
    herald_projection_destroy (&s_projection);

    //  One ns before the event's ts: it is not in
    char *db2 = tu_path (s_dir, "before.db");
    options.database = db2;
    options.until_ts = until - 1;
    options.batch_max = 0;
    s_projection = s_open (at_agent, "as-of", &options);
    cr_assert_eq (herald_projection_start (s_projection, WAIT_MS), HERALD_OK);
    status = s_status (s_projection);
    cr_assert_eq (status.position, log.seqs [at - 1]);
    cr_assert_eq (pu_query_int (HERALD_PROJECTION_SQLITE, db2, "SELECT count(*) FROM ledger"),
                  (int64_t) at);
    cr_assert_eq (status.transactions, 1);
    free (db2);
}

Test (herald_projection, until_ts_is_kept_in_the_row_and_another_is_refused)
{
    s_publish (10);
    herald_projection_options_t options;
    s_options (&options, s_db);
    struct timespec now;
    clock_gettime (CLOCK_REALTIME, &now);
    options.until_ts = (uint64_t) now.tv_sec * 1000000000 + (uint64_t) now.tv_nsec;
    s_projection = s_open (at_agent, "as-of", &options);
    cr_assert_eq (herald_projection_start (s_projection, WAIT_MS), HERALD_OK);
    cr_assert_eq (s_status (s_projection).position, 10);
    herald_projection_destroy (&s_projection);
    //  Another instant, or live, under that name: refused, the row kept
    uint64_t until = options.until_ts;
    options.until_ts = until + 1;
    cr_assert_null (herald_projection_new (at_agent, "as-of", &options));
    cr_assert_eq (herald_agent_last_errcode (), HERALD_ERR_INVALID);
    cr_assert_not_null (strstr (herald_agent_last_error (), "until_ts"));
    options.until_ts = 0;
    cr_assert_null (herald_projection_new (at_agent, "as-of", &options));
    cr_assert_eq (herald_agent_last_errcode (), HERALD_ERR_INVALID);
    cr_assert_eq (s_int ("SELECT until_ts FROM herald_projection"), (int64_t) until);
    cr_assert_eq (s_int ("SELECT seq FROM herald_projection"), 10);
    //  Rebuilt (opened with its own until_ts), the name takes another
    options.until_ts = until;
    s_projection = s_open (at_agent, "as-of", &options);
    cr_assert_eq (herald_projection_rebuild (s_projection, WAIT_MS), HERALD_OK);
    herald_projection_destroy (&s_projection);
    options.until_ts = until + 1;
    s_projection = s_open (at_agent, "as-of", &options);
    cr_assert_eq (s_int ("SELECT until_ts FROM herald_projection"), (int64_t) until + 1);
}

Test (herald_projection, temporal_apply_error_commits_the_events_before_it)
{
    uint64_t head = s_publish (40);
    s_model.fail_seq = 26;
    s_model.fail_code = HERALD_ERR_CONFLICT;
    s_model.retry_seq = 9;
    atomic_store (&s_model.retry_times, 2);
    herald_projection_options_t options;
    s_options (&options, s_db);
    options.until_ts = INT64_MAX;
    options.batch_max = 10;
    s_projection = s_open (at_agent, "as-of", &options);
    herald_err rc = herald_projection_start (s_projection, WAIT_MS);
    cr_assert_eq (rc, HERALD_ERR_CONFLICT, "%d %s", rc, herald_agent_last_error ());
    herald_projection_status_t status = s_status (s_projection);
    cr_assert_eq (status.state, HERALD_PROJECTION_FAILED);
    cr_assert_not_null (strstr (status.message, "seq 26"), "%s", status.message);
    cr_assert_eq (status.position, 25);
    s_assert_model (25);
    cr_assert_geq (status.rollbacks, 3);
    s_model.fail_seq = 0;
    cr_assert_eq (herald_projection_start (s_projection, WAIT_MS), HERALD_OK);
    s_assert_model (head);
    cr_assert_eq (s_status (s_projection).state, HERALD_PROJECTION_DONE);
}

//  ---------------------------------------------------------------------
//  Bad input

Test (herald_projection, a_file_that_is_not_sqlite_is_refused_and_left_as_it_was)
{
    char bytes [4096];
    for (size_t index = 0; index < sizeof bytes; index++)
        bytes [index] = (char) (index * 7 + 3);
    cr_assert_eq (tu_write_file (s_db, bytes, sizeof bytes), 0);
    char *before = tu_dir_snapshot (s_dir);
    herald_projection_options_t options;
    s_options (&options, s_db);
    cr_assert_null (herald_projection_new (at_agent, "inventory", &options));
    cr_assert_eq (herald_agent_last_errcode (), HERALD_ERR_IO);
    cr_assert_not_null (strstr (herald_agent_last_error (), "not a database"), "%s",
                        herald_agent_last_error ());
    char *after = tu_dir_snapshot (s_dir);
    cr_assert_str_eq (after, before);
    free (before);
    free (after);
    //  A SQLite file whose header was damaged, likewise
    herald_projection_options_t good;
    s_options (&good, s_db);
    unlink (s_db);
    s_projection = s_open (at_agent, "inventory", &good);
    herald_projection_destroy (&s_projection);
    FILE *file = fopen (s_db, "r+b");
    cr_assert_not_null (file);
    fwrite ("not the magic!!!", 1, 16, file);
    fclose (file);
    before = tu_dir_snapshot (s_dir);
    cr_assert_null (herald_projection_new (at_agent, "inventory", &good));
    cr_assert_eq (herald_agent_last_errcode (), HERALD_ERR_IO);
    after = tu_dir_snapshot (s_dir);
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
    s_model.setup_fails = HERALD_ERR_CONFLICT;
    herald_projection_options_t options;
    s_options (&options, s_db);
    cr_assert_null (herald_projection_new (at_agent, "inventory", &options));
    cr_assert_eq (herald_agent_last_errcode (), HERALD_ERR_CONFLICT);
    cr_assert_not_null (strstr (herald_agent_last_error (), "setup"));
    //  The row was not written either
    cr_assert_eq (s_int ("SELECT count(*) FROM sqlite_master WHERE name = "
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
    s_options (&options, s_db);
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
    cr_assert_neq (stat (s_db, &info), 0, "a refused projection created its database");
    //  PostgreSQL is not in this build yet
    bad = options;
    bad.backend = HERALD_PROJECTION_POSTGRES;
    bad.database = "host=127.0.0.1 port=1 dbname=nothing";
    s_refused ("inventory", &bad, HERALD_ERR_UNSUPPORTED, "postgres");
    //  A table name of one's own holds the rows
    options.table = "read_positions";
    s_projection = s_open (at_agent, "inventory", &options);
    cr_assert_eq (s_int ("SELECT count(*) FROM read_positions"), 1);
}

//  ---------------------------------------------------------------------
//  The example of docs/projections.md (examples/orders_view)

static void
s_place (const char *order, const char *sku, int qty)
{
    char topic [64], data [64];
    snprintf (topic, sizeof topic, "orders.%s", order);
    snprintf (data, sizeof data, "{\"sku\":\"%s\",\"qty\":%d}", sku, qty);
    herald_outgoing_t event = { .topic = topic, .data = data, .data_len = strlen (data),
                                .type = "OrderPlaced" };
    herald_publish_result_t result;
    cr_assert_eq (herald_agent_publish (at_agent, &event, &result, WAIT_MS), HERALD_OK,
                  "%s", herald_agent_last_error ());
}

//  Run examples/orders_view with args, wait for it; its stdout into out.
static int
s_run_example (const char *const *args, char *out, size_t size)
{
    char *binary = tu_build_program ("examples/orders_view");
    cr_assert_not_null (binary);
    char *log = tu_path (s_dir, "example.log");
    unlink (log);
    s_example = au_spawn (binary, args, log);
    cr_assert_gt (s_example, 0);
    int status = 0;
    cr_assert_eq (au_child_wait (s_example, WAIT_MS, &status), 0, "orders_view hangs");
    s_example = 0;
    FILE *file = fopen (log, "r");
    size_t len = file? fread (out, 1, size - 1, file): 0;
    out [len] = 0;
    if (file)
        fclose (file);
    free (log);
    free (binary);
    return WIFEXITED (status)? WEXITSTATUS (status): -1;
}

Test (herald_projection, the_orders_view_example_projects_live_and_as_of)
{
    herald_agent_destroy (&at_agent);
    herald_agent_options_t options;
    au_options (&options, at_broker, at_state);     //  it publishes: an outbox
    at_agent = herald_agent_new ("projection-orders", &options);
    cr_assert_not_null (at_agent);
    s_place ("o1", "A7", 2);
    s_place ("o2", "B2", 1);
    struct timespec now;
    clock_gettime (CLOCK_REALTIME, &now);
    char as_of [32];
    snprintf (as_of, sizeof as_of, "%" PRIu64, (uint64_t) now.tv_sec * 1000000000
                                               + (uint64_t) now.tv_nsec);
    usleep (2000);
    s_place ("o3", "A7", 3);
    char out [4096];
    char *past = tu_path (s_dir, "as-of.db");
    const char *temporal [] = { "--api", at_broker->api, "--db", past, "--as-of", as_of, NULL };
    cr_assert_eq (s_run_example (temporal, out, sizeof out), 0, "%s", out);
    const char *show_past [] = { "--db", past, "--show", NULL };
    cr_assert_eq (s_run_example (show_past, out, sizeof out), 0, "%s", out);
    cr_assert_str_eq (out, "A7 2 units in 1 orders\nB2 1 units in 1 orders\n");

    //  Live, in another file: follows until SIGTERM
    char *binary = tu_build_program ("examples/orders_view");
    char *log = tu_path (s_dir, "live.log");
    const char *live [] = { "--api", at_broker->api, "--db", s_db, NULL };
    s_example = au_spawn (binary, live, log);
    cr_assert_gt (s_example, 0);
    s_place ("o4", "B2", 4);
    int64_t deadline = (int64_t) tu_mono_ns () / 1000000 + WAIT_MS;
    while (s_int ("SELECT sum(orders) FROM ordered") != 4
       &&  (int64_t) tu_mono_ns () / 1000000 < deadline)
        usleep (20000);
    kill (s_example, SIGTERM);
    int status = 0;
    cr_assert_eq (au_child_wait (s_example, WAIT_MS, &status), 0);
    s_example = 0;
    cr_assert (WIFEXITED (status) && WEXITSTATUS (status) == 0, "status %d", status);
    const char *show [] = { "--db", s_db, "--show", NULL };
    cr_assert_eq (s_run_example (show, out, sizeof out), 0, "%s", out);
    cr_assert_str_eq (out, "A7 5 units in 2 orders\nB2 5 units in 2 orders\n");
    free (past);
    free (log);
    free (binary);
}
