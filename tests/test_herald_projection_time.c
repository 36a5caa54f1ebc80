/*  =========================================================================
    test_herald_projection_time - temporal projections, schemas, losses

    The rest of docs/projections.md's contract (test_herald_projection.c
    has the live rules): until_ts (ts == until_ts included, one ns earlier
    excluded, transactions of batch_max, the instant kept in the row and
    another refused, an apply error); apply getting events converted to
    the declared schemas, live and temporal; a loss the broker reports
    while the projection runs; and examples/orders_view, the C example of
    the docs.
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
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <sqlite3.h>

#include "projtest.h"
#include "testutil.h"

TestSuite (herald_projection_time, .init = pt_setup, .fini = pt_teardown, .timeout = 120);

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

Test (herald_projection_time, temporal_includes_ts_equal_to_until_ts_and_excludes_one_ns_after)
{
    //  Three publishes: ts grows between them
    pt_publish (30);
    pt_publish (30);
    uint64_t head = pt_publish (30);
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
    pt_options (&options, pt_db);
    options.until_ts = until;
    options.batch_max = 7;
    pt_projection = pt_open (at_agent, "as-of", &options);
    cr_assert_eq (pt_status (pt_projection).until_ts, until);
    cr_assert_eq (herald_projection_start (pt_projection, WAIT_MS), HERALD_OK,
                  "%s", herald_agent_last_error ());
    herald_projection_status_t status = pt_status (pt_projection);
    cr_assert_eq (status.state, HERALD_PROJECTION_DONE);
    cr_assert_eq (status.position, log.seqs [included - 1]);
    cr_assert_eq (status.applied, included);
    cr_assert_eq (status.transactions, (included + 6) / 7);
    pt_assert_model (log.seqs [included - 1]);
    cr_assert_eq (pt_int ("SELECT until_ts FROM herald_projection WHERE name = 'as-of'"),
                  (int64_t) until);
    cr_assert_eq (herald_projection_wait (pt_projection, head, 100), HERALD_OK);   //  DONE
    //  Started again: nothing more (no event of later ts comes under it)
    cr_assert_eq (herald_projection_start (pt_projection, WAIT_MS), HERALD_OK);
    cr_assert_eq (pt_status (pt_projection).applied, included);
    herald_projection_destroy (&pt_projection);

    //  One ns before the event's ts: it is not in
    char *db2 = tu_path (pt_dir, "before.db");
    options.database = db2;
    options.until_ts = until - 1;
    options.batch_max = 0;
    pt_projection = pt_open (at_agent, "as-of", &options);
    cr_assert_eq (herald_projection_start (pt_projection, WAIT_MS), HERALD_OK);
    status = pt_status (pt_projection);
    cr_assert_eq (status.position, log.seqs [at - 1]);
    cr_assert_eq (pu_query_int (HERALD_PROJECTION_SQLITE, db2, "SELECT count(*) FROM ledger"),
                  (int64_t) at);
    cr_assert_eq (status.transactions, 1);
    free (db2);
}

Test (herald_projection_time, until_ts_is_kept_in_the_row_and_another_is_refused)
{
    pt_publish (10);
    herald_projection_options_t options;
    pt_options (&options, pt_db);
    struct timespec now;
    clock_gettime (CLOCK_REALTIME, &now);
    options.until_ts = (uint64_t) now.tv_sec * 1000000000 + (uint64_t) now.tv_nsec;
    pt_projection = pt_open (at_agent, "as-of", &options);
    cr_assert_eq (herald_projection_start (pt_projection, WAIT_MS), HERALD_OK);
    cr_assert_eq (pt_status (pt_projection).position, 10);
    herald_projection_destroy (&pt_projection);
    //  Another instant, or live, under that name: refused, the row kept
    uint64_t until = options.until_ts;
    options.until_ts = until + 1;
    cr_assert_null (herald_projection_new (at_agent, "as-of", &options));
    cr_assert_eq (herald_agent_last_errcode (), HERALD_ERR_INVALID);
    cr_assert_not_null (strstr (herald_agent_last_error (), "until_ts"));
    options.until_ts = 0;
    cr_assert_null (herald_projection_new (at_agent, "as-of", &options));
    cr_assert_eq (herald_agent_last_errcode (), HERALD_ERR_INVALID);
    cr_assert_eq (pt_int ("SELECT until_ts FROM herald_projection"), (int64_t) until);
    cr_assert_eq (pt_int ("SELECT seq FROM herald_projection"), 10);
    //  Rebuilt (opened with its own until_ts), the name takes another
    options.until_ts = until;
    pt_projection = pt_open (at_agent, "as-of", &options);
    cr_assert_eq (herald_projection_rebuild (pt_projection, WAIT_MS), HERALD_OK);
    herald_projection_destroy (&pt_projection);
    options.until_ts = until + 1;
    pt_projection = pt_open (at_agent, "as-of", &options);
    cr_assert_eq (pt_int ("SELECT until_ts FROM herald_projection"), (int64_t) until + 1);
}

Test (herald_projection_time, temporal_apply_error_commits_the_events_before_it)
{
    uint64_t head = pt_publish (40);
    pt_model.fail_seq = 26;
    pt_model.fail_code = HERALD_ERR_CONFLICT;
    pt_model.retry_seq = 9;
    atomic_store (&pt_model.retry_times, 2);
    herald_projection_options_t options;
    pt_options (&options, pt_db);
    options.until_ts = INT64_MAX;
    options.batch_max = 10;
    pt_projection = pt_open (at_agent, "as-of", &options);
    herald_err rc = herald_projection_start (pt_projection, WAIT_MS);
    cr_assert_eq (rc, HERALD_ERR_CONFLICT, "%d %s", rc, herald_agent_last_error ());
    herald_projection_status_t status = pt_status (pt_projection);
    cr_assert_eq (status.state, HERALD_PROJECTION_FAILED);
    cr_assert_not_null (strstr (status.message, "seq 26"), "%s", status.message);
    cr_assert_eq (status.position, 25);
    pt_assert_model (25);
    cr_assert_geq (status.rollbacks, 3);
    pt_model.fail_seq = 0;
    cr_assert_eq (herald_projection_start (pt_projection, WAIT_MS), HERALD_OK);
    pt_assert_model (head);
    cr_assert_eq (pt_status (pt_projection).state, HERALD_PROJECTION_DONE);
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
    char *log = tu_path (pt_dir, "example.log");
    unlink (log);
    pt_example = au_spawn (binary, args, log);
    cr_assert_gt (pt_example, 0);
    int status = 0;
    cr_assert_eq (au_child_wait (pt_example, WAIT_MS, &status), 0, "orders_view hangs");
    pt_example = 0;
    FILE *file = fopen (log, "r");
    size_t len = file? fread (out, 1, size - 1, file): 0;
    out [len] = 0;
    if (file)
        fclose (file);
    free (log);
    free (binary);
    return WIFEXITED (status)? WEXITSTATUS (status): -1;
}

Test (herald_projection_time, the_orders_view_example_projects_live_and_as_of)
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
    char *past = tu_path (pt_dir, "as-of.db");
    const char *temporal [] = { "--api", at_broker->api, "--db", past, "--as-of", as_of, NULL };
    cr_assert_eq (s_run_example (temporal, out, sizeof out), 0, "%s", out);
    const char *show_past [] = { "--db", past, "--show", NULL };
    cr_assert_eq (s_run_example (show_past, out, sizeof out), 0, "%s", out);
    cr_assert_str_eq (out, "A7 2 units in 1 orders\nB2 1 units in 1 orders\n");

    //  Live, in another file: follows until SIGTERM
    char *binary = tu_build_program ("examples/orders_view");
    char *log = tu_path (pt_dir, "live.log");
    const char *live [] = { "--api", at_broker->api, "--db", pt_db, NULL };
    pt_example = au_spawn (binary, live, log);
    cr_assert_gt (pt_example, 0);
    s_place ("o4", "B2", 4);
    int64_t deadline = (int64_t) tu_mono_ns () / 1000000 + WAIT_MS;
    while (pt_int ("SELECT sum(orders) FROM ordered") != 4
       &&  (int64_t) tu_mono_ns () / 1000000 < deadline)
        usleep (20000);
    kill (pt_example, SIGTERM);
    int status = 0;
    cr_assert_eq (au_child_wait (pt_example, WAIT_MS, &status), 0);
    pt_example = 0;
    cr_assert (WIFEXITED (status) && WEXITSTATUS (status) == 0, "status %d", status);
    const char *show [] = { "--db", pt_db, "--show", NULL };
    cr_assert_eq (s_run_example (show, out, sizeof out), 0, "%s", out);
    cr_assert_str_eq (out, "A7 5 units in 2 orders\nB2 5 units in 2 orders\n");
    free (past);
    free (log);
    free (binary);
}

//  ---------------------------------------------------------------------
//  A loss the broker reports while the projection runs

static void
s_delete_wal (const char *dir)
{
    DIR *handle = opendir (dir);
    cr_assert_not_null (handle);
    struct dirent *entry;
    while ((entry = readdir (handle))) {
        size_t len = strlen (entry->d_name);
        if (len >= 5 && strcmp (entry->d_name + len - 4, ".log") == 0) {
            char *path = tu_path (dir, entry->d_name);
            cr_assert_eq (unlink (path), 0);
            free (path);
        }
    }
    closedir (handle);
}

Test (herald_projection_time, a_loss_reported_while_running_fails_it_until_rebuilt)
{
    //  A broker whose newest events live in its WAL only
    herald_agent_destroy (&at_agent);
    bu_broker_destroy (&at_broker);
    const char *extra [] = { "--durability", "async", NULL };
    at_broker = bu_broker_new ("projection-loss", extra);
    cr_assert_not_null (at_broker);
    cr_assert_eq (bu_broker_start (at_broker, AT_START_MS), 0);
    herald_agent_options_t agent_options;
    au_options (&agent_options, at_broker, NULL);
    agent_options.fanout = NULL;
    at_agent = herald_agent_new ("projection-test", &agent_options);
    cr_assert_not_null (at_agent);
    herald_projection_options_t options;
    pt_options (&options, pt_db);
    pt_projection = pt_open (at_agent, "inventory", &options);
    cr_assert_eq (herald_projection_start (pt_projection, WAIT_MS), HERALD_OK);
    uint64_t head = pt_publish (200);
    cr_assert_eq (herald_projection_wait (pt_projection, head, WAIT_MS), HERALD_OK);
    //  kill -9, the WAL gone, the loss accepted by the operator's command
    bu_broker_kill (at_broker);
    s_delete_wal (at_broker->data_dir);
    char *herald = tu_build_program ("tools/herald");
    cr_assert_not_null (herald);
    char *log = tu_path (pt_dir, "repair.log");
    const char *args [] = { "repair", "--data-dir", at_broker->data_dir, "--accept-loss", NULL };
    pid_t repair = au_spawn (herald, args, log);
    int status = 0;
    cr_assert_eq (au_child_wait (repair, WAIT_MS, &status), 0);
    cr_assert (WIFEXITED (status) && WEXITSTATUS (status) == 0, "herald repair failed: %s",
               log);
    free (herald);
    free (log);
    cr_assert_eq (bu_broker_restart (at_broker, AT_START_MS), 0);
    int64_t kept = au_head (at_broker->api, WAIT_MS);
    cr_assert_lt (kept, (int64_t) head, "nothing was lost: the test proves nothing");
    //  The projection hears it: FAILED, DATA_LOST, nothing more applied
    herald_err rc = herald_projection_wait (pt_projection, head + 1000, WAIT_MS);
    cr_assert_eq (rc, HERALD_ERR_DATA_LOST, "%d %s", rc, herald_agent_last_error ());
    herald_projection_status_t st = pt_status (pt_projection);
    cr_assert_eq (st.state, HERALD_PROJECTION_FAILED);
    cr_assert_eq (st.error, HERALD_ERR_DATA_LOST);
    cr_assert_eq (st.position, head);
    //  Started again as it is: refused (another lineage)
    herald_projection_stop (pt_projection);
    rc = herald_projection_start (pt_projection, WAIT_MS);
    cr_assert_eq (rc, HERALD_ERR_DATA_LOST, "%d %s", rc, herald_agent_last_error ());
    //  Rebuilt, it projects the log as it is now, in the new lineage
    uint64_t head2 = pt_publish (30);
    cr_assert_eq (herald_projection_rebuild (pt_projection, WAIT_MS), HERALD_OK);
    cr_assert_eq (herald_projection_start (pt_projection, WAIT_MS), HERALD_OK,
                  "%s", herald_agent_last_error ());
    cr_assert_eq (herald_projection_wait (pt_projection, head2, WAIT_MS), HERALD_OK,
                  "%s", herald_agent_last_error ());
    pt_assert_model (head2);
    cr_assert_eq (pt_int ("SELECT lineage FROM herald_projection"), 1);
}

//  ---------------------------------------------------------------------
//  Schemas: apply gets each event converted, live and temporal

static int
s_upcast (const herald_delivery_t *event, herald_cast_result_t *result, void *arg)
{
    (void) arg;
    int len = snprintf ((char *) result->buffer, result->capacity, "%.*s+v2",
                        (int) event->data_len, (const char *) event->data);
    result->data_len = (size_t) len;
    return HERALD_OK;
}

static int
s_seen_setup (void *db, void *arg)
{
    (void) arg;
    return sqlite3_exec ((sqlite3 *) db, "CREATE TABLE IF NOT EXISTS seen (seq INTEGER "
                         "PRIMARY KEY, schema INTEGER, data TEXT)", NULL, NULL, NULL)
           == SQLITE_OK? HERALD_OK: HERALD_ERR_IO;
}

static int
s_seen_apply (void *db, const herald_delivery_t *event, void *arg)
{
    (void) arg;
    char sql [256];
    snprintf (sql, sizeof sql, "INSERT INTO seen VALUES (%" PRIu64 ", %" PRIu64 ", '%.*s')",
              event->seq, event->schema, (int) event->data_len, (const char *) event->data);
    return sqlite3_exec ((sqlite3 *) db, sql, NULL, NULL, NULL) == SQLITE_OK
           ? HERALD_OK: HERALD_ERR_IO;
}

static int64_t
s_seen (const char *database, const char *sql)
{
    return pu_query_int (HERALD_PROJECTION_SQLITE, database, sql);
}

Test (herald_projection_time, apply_gets_events_converted_to_the_declared_schemas)
{
    cr_assert_eq (herald_agent_upcaster (at_agent, "StockMoved", 1, s_upcast, NULL), HERALD_OK);
    for (int index = 0; index < 3; index++) {
        char data [16];
        snprintf (data, sizeof data, "m%d", index);
        herald_outgoing_t event = { .topic = "stock.A7", .data = data,
                                    .data_len = strlen (data), .type = "StockMoved" };
        cr_assert_eq (herald_agent_publish (at_agent, &event, NULL, WAIT_MS), HERALD_OK);
    }
    herald_schema_want_t wants [] = { { "StockMoved", 2 } };
    herald_projection_options_t options;
    pt_options (&options, pt_db);
    options.setup = s_seen_setup;
    options.reset = NULL;
    options.apply = s_seen_apply;
    options.wants = wants;
    options.want_count = 1;
    pt_projection = pt_open (at_agent, "seen", &options);
    cr_assert_eq (herald_projection_start (pt_projection, WAIT_MS), HERALD_OK);
    cr_assert_eq (herald_projection_wait (pt_projection, 3, WAIT_MS), HERALD_OK);
    cr_assert_eq (s_seen (pt_db, "SELECT count(*) FROM seen WHERE schema = 2 AND data LIKE "
                          "'m_+v2'"), 3);
    //  Temporal, the same conversion
    char *past = tu_path (pt_dir, "past.db");
    options.database = past;
    options.until_ts = INT64_MAX;
    pt_other = pt_open (at_agent, "seen", &options);
    cr_assert_eq (herald_projection_start (pt_other, WAIT_MS), HERALD_OK,
                  "%s", herald_agent_last_error ());
    cr_assert_eq (s_seen (past, "SELECT count(*) FROM seen WHERE schema = 2 AND data LIKE "
                          "'m_+v2'"), 3);
    herald_projection_destroy (&pt_other);
    //  Schema 3 has no caster: SKIP applies nothing and is DONE ...
    char *skip = tu_path (pt_dir, "skip.db");
    wants [0].schema = 3;
    options.database = skip;
    options.on_incompatible = HERALD_SCHEMA_SKIP;
    pt_other = pt_open (at_agent, "seen", &options);
    cr_assert_eq (herald_projection_start (pt_other, WAIT_MS), HERALD_OK);
    cr_assert_eq (pt_status (pt_other).state, HERALD_PROJECTION_DONE);
    cr_assert_eq (s_seen (skip, "SELECT count(*) FROM seen"), 0);
    herald_projection_destroy (&pt_other);
    //  ... STOP fails at the first, naming it
    char *stop = tu_path (pt_dir, "stop.db");
    options.database = stop;
    options.on_incompatible = HERALD_SCHEMA_STOP;
    pt_other = pt_open (at_agent, "seen", &options);
    herald_err rc = herald_projection_start (pt_other, WAIT_MS);
    cr_assert_eq (rc, HERALD_ERR_UNSUPPORTED, "%d %s", rc, herald_agent_last_error ());
    herald_projection_status_t status = pt_status (pt_other);
    cr_assert_eq (status.state, HERALD_PROJECTION_FAILED);
    cr_assert_not_null (strstr (status.message, "seq 1"), "%s", status.message);
    cr_assert_eq (s_seen (stop, "SELECT count(*) FROM seen"), 0);
    free (past);
    free (skip);
    free (stop);
}

//  ---------------------------------------------------------------------
//  A full disk (the file size limit of this process, RLIMIT_FSIZE)

Test (herald_projection_time, a_full_disk_fails_it_cleanly_and_it_resumes_when_there_is_room)
{
    herald_projection_options_t options;
    pt_options (&options, pt_db);
    pt_projection = pt_open (at_agent, "inventory", &options);
    uint64_t head = pt_publish (100);
    cr_assert_eq (herald_projection_start (pt_projection, WAIT_MS), HERALD_OK);
    cr_assert_eq (herald_projection_wait (pt_projection, head, WAIT_MS), HERALD_OK);
    //  From now on no file of this process grows past 256 KiB (the broker,
    //  started before, is not limited): the WAL soon cannot
    signal (SIGXFSZ, SIG_IGN);
    struct rlimit saved, limit;
    cr_assert_eq (getrlimit (RLIMIT_FSIZE, &saved), 0);
    limit = saved;
    limit.rlim_cur = 256 * 1024;
    cr_assert_eq (setrlimit (RLIMIT_FSIZE, &limit), 0);
    uint64_t head2 = 0;
    for (int round = 0; round < 20; round++)
        head2 = pt_publish (500);
    herald_err rc = herald_projection_wait (pt_projection, head2, WAIT_MS);
    herald_projection_status_t status = pt_status (pt_projection);
    setrlimit (RLIMIT_FSIZE, &saved);
    cr_assert_eq (rc, HERALD_ERR_IO, "%d %s", rc, herald_agent_last_error ());
    cr_assert_eq (status.state, HERALD_PROJECTION_FAILED);
    cr_assert_eq (status.error, HERALD_ERR_IO);
    cr_assert (strstr (status.message, "full") || strstr (status.message, "I/O"), "%s",
               status.message);
    //  What is committed is whole: the model is exactly 1..position
    cr_assert_lt (status.position, head2);
    pt_assert_model (status.position);
    cr_assert_eq (pt_int ("SELECT seq FROM herald_projection"), (int64_t) status.position);
    //  Room again: started, it goes on from there
    cr_assert_eq (herald_projection_start (pt_projection, WAIT_MS), HERALD_OK,
                  "%s", herald_agent_last_error ());
    cr_assert_eq (herald_projection_wait (pt_projection, head2, WAIT_MS), HERALD_OK,
                  "%s", herald_agent_last_error ());
    pt_assert_model (head2);
}
