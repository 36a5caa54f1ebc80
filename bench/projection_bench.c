/*  =========================================================================
    projection_bench - projection throughput beside the raw limits of its
    parts (the agent's delivery, SQLite, PostgreSQL), C

        bench/projection_bench [COUNT [BIG [BIG_PG]]]

    Starts a heraldd (tests/brokerutil.h) and a private PostgreSQL server
    (tests/pgserver.sh: fsync=off, full_page_writes=off,
    synchronous_commit=on, shared_buffers=16MB), publishes COUNT events
    (default 100000) on 13 topics stock.sku0 .. stock.sku12, and prints
    one line per run, "WHAT EVENTS/s (detail)":

    - raw limits, without a projection: the agent's catch-up delivery into
      a no-op batch handler (herald_agent_subscribe_batch_with, the
      caller_position subscription a projection rides on); the read
      model's writes (a stock upsert and a ledger insert per event) with
      prepared statements in transactions of 256 events, without Herald,
      into SQLite (WAL, synchronous=NORMAL: the projection's settings)
      and into PostgreSQL: one statement at a time (PQexecPrepared),
      pipelined (libpq pipeline mode: a whole transaction in one round
      trip), and as two multi-row statements per transaction (unnest).
    - the C projection with the apply a careful user writes: statements
      prepared once per connection and cached in arg (an upsert and an
      insert per event), live (catch-up, one transaction per delivery
      batch of up to 256) and temporal (until_ts now, transactions of
      10000 events), into SQLite and PostgreSQL; for PostgreSQL also
      "cte", both writes in one statement (one round trip per event).
      The apply is called per event and is not told where its
      transaction ends, so it cannot pipeline or batch its statements
      (libpq's pipeline must be left before the projection's COMMIT).
    - then BIG more events (default 1000000 in all; 0: skip): a temporal
      and a live projection over them into SQLite beside the no-op
      delivery and raw SQLite, and, when BIG_PG is 1 (the default), the
      temporal projection into PostgreSQL.

    Figures only, never a failure on one.  Run from the build tree.
    =========================================================================
*/

#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sqlite3.h>
#include <libpq-fe.h>

#include "agentutil.h"
#include "brokerutil.h"
#include "herald_projection.h"
#include "pgutil.h"
#include "testutil.h"

#define S_TOPICS    13
#define S_TX        256

static double
s_now (void)
{
    struct timespec now;
    clock_gettime (CLOCK_MONOTONIC, &now);
    return now.tv_sec + now.tv_nsec / 1e9;
}

static void
s_line (const char *what, size_t events, double seconds, const char *detail)
{
    printf ("%-34s %9.0f events/s  (%zu events, %.2f s%s%s)\n", what,
            seconds > 0? events / seconds: 0, events, seconds, detail? ", ": "",
            detail? detail: "");
    fflush (stdout);
}

//  The event the raw runs write for seq: as the projection sees it
static void
s_event (uint64_t seq, char *sku, size_t size, int64_t *qty)
{
    snprintf (sku, size, "sku%" PRIu64, (seq - 1) % S_TOPICS);
    *qty = (int64_t) (seq % 7) + 1;
}

static const char *s_create =
    "CREATE TABLE IF NOT EXISTS stock (sku TEXT PRIMARY KEY, qty BIGINT NOT NULL);"
    "CREATE TABLE IF NOT EXISTS ledger (seq BIGINT PRIMARY KEY, sku TEXT NOT NULL, "
    "qty BIGINT NOT NULL, ts BIGINT NOT NULL)";
static const char *s_upsert =
    "INSERT INTO stock (sku, qty) VALUES ($1, $2) ON CONFLICT (sku) DO "
    "UPDATE SET qty = stock.qty + excluded.qty";
static const char *s_insert =
    "INSERT INTO ledger (seq, sku, qty, ts) VALUES ($1, $2, $3, $4)";
static const char *s_cte =
    "WITH s AS (INSERT INTO stock (sku, qty) VALUES ($1, $2) ON CONFLICT (sku) DO "
    "UPDATE SET qty = stock.qty + excluded.qty) "
    "INSERT INTO ledger (seq, sku, qty, ts) VALUES ($3, $1, $2, $4)";

//  ---------------------------------------------------------------------
//  Raw limits

static atomic_size_t s_seen;

static int
s_noop (herald_delivery_batch_t *batch, void *arg)
{
    (void) arg;
    atomic_fetch_add_explicit (&s_seen, batch->count, memory_order_relaxed);
    return HERALD_OK;
}

static void
s_raw_delivery (herald_agent_t *agent, const char *name, size_t count)
{
    static const char *prefixes [] = { "stock.", NULL };
    herald_subscribe_options_t options;
    herald_subscribe_options_init (&options);
    options.prefixes = prefixes;
    options.start.kind = HERALD_START_SEQ;
    options.start.value = 1;
    options.caller_position = true;
    atomic_store (&s_seen, 0);
    double start = s_now ();
    herald_err rc = herald_agent_subscribe_batch_with (agent, name, &options, s_noop, NULL);
    if (rc != HERALD_OK) {
        printf ("raw delivery: %s\n", herald_agent_last_error ());
        return;
    }
    //  Bounded: 10 minutes
    for (int step = 0; step < 600000 && atomic_load (&s_seen) < count; step++)
        usleep (1000);
    double seconds = s_now () - start;
    herald_agent_unsubscribe (agent, name);
    s_line ("raw delivery (no-op batch handler)", atomic_load (&s_seen), seconds, NULL);
}

static int
s_sqlite_exec (sqlite3 *db, const char *sql)
{
    char *error = NULL;
    if (sqlite3_exec (db, sql, NULL, NULL, &error) != SQLITE_OK) {
        printf ("raw sqlite: %s: %s\n", sql, error? error: "?");
        sqlite3_free (error);
        return -1;
    }
    return 0;
}

static void
s_raw_sqlite (const char *path, size_t count)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *upsert = NULL, *insert = NULL;
    if (sqlite3_open (path, &db) != SQLITE_OK
    ||  s_sqlite_exec (db, "PRAGMA journal_mode=WAL")
    ||  s_sqlite_exec (db, "PRAGMA synchronous=NORMAL")
    ||  s_sqlite_exec (db, s_create)
    ||  sqlite3_prepare_v2 (db, s_upsert, -1, &upsert, NULL) != SQLITE_OK
    ||  sqlite3_prepare_v2 (db, s_insert, -1, &insert, NULL) != SQLITE_OK) {
        printf ("raw sqlite: %s\n", db? sqlite3_errmsg (db): "?");
        goto done;
    }
    int64_t ts = 1;
    double start = s_now ();
    for (uint64_t seq = 1; seq <= count; seq++) {
        if ((seq - 1) % S_TX == 0 && s_sqlite_exec (db, "BEGIN"))
            goto done;
        char sku [32];
        int64_t qty;
        s_event (seq, sku, sizeof sku, &qty);
        sqlite3_bind_text (upsert, 1, sku, -1, SQLITE_STATIC);
        sqlite3_bind_int64 (upsert, 2, qty);
        sqlite3_bind_int64 (insert, 1, (int64_t) seq);
        sqlite3_bind_text (insert, 2, sku, -1, SQLITE_STATIC);
        sqlite3_bind_int64 (insert, 3, qty);
        sqlite3_bind_int64 (insert, 4, ts + (int64_t) seq);
        if (sqlite3_step (upsert) != SQLITE_DONE || sqlite3_step (insert) != SQLITE_DONE) {
            printf ("raw sqlite: %s\n", sqlite3_errmsg (db));
            goto done;
        }
        sqlite3_reset (upsert);
        sqlite3_reset (insert);
        if ((seq % S_TX == 0 || seq == count) && s_sqlite_exec (db, "COMMIT"))
            goto done;
    }
    s_line ("raw sqlite (prepared, tx 256)", count, s_now () - start, NULL);
done:
    sqlite3_finalize (upsert);
    sqlite3_finalize (insert);
    sqlite3_close (db);
}

static int
s_pg_ok (PGconn *conn, PGresult *result, const char *what)
{
    ExecStatusType status = PQresultStatus (result);
    int rc = status == PGRES_COMMAND_OK || status == PGRES_TUPLES_OK? 0: -1;
    if (rc)
        printf ("raw postgres: %s: %s", what, PQerrorMessage (conn));
    PQclear (result);
    return rc;
}

typedef enum { S_PG_EACH, S_PG_PIPELINE, S_PG_MULTIROW } s_pg_mode_t;

//  Text parameters of seq's two statements (upsert: 0-1, insert: 2-5)
typedef struct {
    char sku [32], qty [24], seq [24], ts [24];
} s_pg_row_t;

static void
s_pg_row (uint64_t seq, s_pg_row_t *row)
{
    int64_t qty;
    s_event (seq, row->sku, sizeof row->sku, &qty);
    snprintf (row->qty, sizeof row->qty, "%" PRId64, qty);
    snprintf (row->seq, sizeof row->seq, "%" PRIu64, seq);
    snprintf (row->ts, sizeof row->ts, "%" PRIu64, seq + 1);
}

//  One transaction of events first .. last in pipeline mode: one round trip
static int
s_pg_pipeline_tx (PGconn *conn, uint64_t first, uint64_t last)
{
    int rc = PQsendQueryParams (conn, "BEGIN", 0, NULL, NULL, NULL, NULL, 0)? 0: -1;
    for (uint64_t seq = first; rc == 0 && seq <= last; seq++) {
        s_pg_row_t row;
        s_pg_row (seq, &row);
        const char *up [] = { row.sku, row.qty };
        const char *in [] = { row.seq, row.sku, row.qty, row.ts };
        if (!PQsendQueryPrepared (conn, "up", 2, up, NULL, NULL, 0)
        ||  !PQsendQueryPrepared (conn, "in", 4, in, NULL, NULL, 0))
            rc = -1;
    }
    if (rc == 0 && (!PQsendQueryParams (conn, "COMMIT", 0, NULL, NULL, NULL, NULL, 0)
                ||  !PQpipelineSync (conn)))
        rc = -1;
    //  Every result up to the sync (each query's is followed by a NULL)
    size_t results = 0, bound = 4 * (last - first + 1) + 16;
    while (rc == 0 && results++ < bound) {
        PGresult *result = PQgetResult (conn);
        if (!result)
            continue;
        ExecStatusType status = PQresultStatus (result);
        PQclear (result);
        if (status == PGRES_PIPELINE_SYNC)
            return 0;
        if (status != PGRES_COMMAND_OK)
            rc = -1;
    }
    printf ("raw postgres pipeline: %s", PQerrorMessage (conn));
    return -1;
}

//  One transaction of events first .. last as two multi-row statements
static int
s_pg_multirow_tx (PGconn *conn, uint64_t first, uint64_t last)
{
    size_t rows = last - first + 1;
    char *skus = malloc (rows * 24 + 3), *qtys = malloc (rows * 24 + 3);
    char *seqs = malloc (rows * 24 + 3), *tss = malloc (rows * 24 + 3);
    int rc = -1;
    if (skus && qtys && seqs && tss) {
        size_t at_sku = 0, at_qty = 0, at_seq = 0, at_ts = 0;
        for (uint64_t seq = first; seq <= last; seq++) {
            s_pg_row_t row;
            s_pg_row (seq, &row);
            const char *sep = seq == first? "{": ",";
            at_sku += sprintf (skus + at_sku, "%s%s", sep, row.sku);
            at_qty += sprintf (qtys + at_qty, "%s%s", sep, row.qty);
            at_seq += sprintf (seqs + at_seq, "%s%s", sep, row.seq);
            at_ts += sprintf (tss + at_ts, "%s%s", sep, row.ts);
        }
        strcpy (skus + at_sku, "}");
        strcpy (qtys + at_qty, "}");
        strcpy (seqs + at_seq, "}");
        strcpy (tss + at_ts, "}");
        const char *up [] = { skus, qtys };
        const char *in [] = { seqs, skus, qtys, tss };
        rc = s_pg_ok (conn, PQexec (conn, "BEGIN"), "BEGIN")
          || s_pg_ok (conn, PQexecPrepared (conn, "up", 2, up, NULL, NULL, 0), "upsert")
          || s_pg_ok (conn, PQexecPrepared (conn, "in", 4, in, NULL, NULL, 0), "insert")
          || s_pg_ok (conn, PQexec (conn, "COMMIT"), "COMMIT")? -1: 0;
    }
    free (skus);
    free (qtys);
    free (seqs);
    free (tss);
    return rc;
}

static void
s_raw_postgres (const char *conninfo, size_t count, s_pg_mode_t mode)
{
    PGconn *conn = PQconnectdb (conninfo);
    if (PQstatus (conn) != CONNECTION_OK) {
        printf ("raw postgres: %s", PQerrorMessage (conn));
        PQfinish (conn);
        return;
    }
    const char *up = mode == S_PG_MULTIROW
        ? "INSERT INTO stock (sku, qty) SELECT sku, sum (qty) FROM unnest ($1::text[], "
          "$2::bigint[]) AS t (sku, qty) GROUP BY sku ON CONFLICT (sku) DO UPDATE SET "
          "qty = stock.qty + excluded.qty": s_upsert;
    const char *in = mode == S_PG_MULTIROW
        ? "INSERT INTO ledger (seq, sku, qty, ts) SELECT * FROM unnest ($1::bigint[], "
          "$2::text[], $3::bigint[], $4::bigint[])": s_insert;
    if (s_pg_ok (conn, PQexec (conn, s_create), "create")
    ||  s_pg_ok (conn, PQprepare (conn, "up", up, 0, NULL), "prepare")
    ||  s_pg_ok (conn, PQprepare (conn, "in", in, 0, NULL), "prepare")) {
        PQfinish (conn);
        return;
    }
    if (mode == S_PG_PIPELINE && !PQenterPipelineMode (conn)) {
        printf ("raw postgres: no pipeline mode: %s", PQerrorMessage (conn));
        PQfinish (conn);
        return;
    }
    double start = s_now ();
    int rc = 0;
    for (uint64_t first = 1; rc == 0 && first <= count; first += S_TX) {
        uint64_t last = first + S_TX - 1 < count? first + S_TX - 1: count;
        if (mode == S_PG_PIPELINE)
            rc = s_pg_pipeline_tx (conn, first, last);
        else
        if (mode == S_PG_MULTIROW)
            rc = s_pg_multirow_tx (conn, first, last);
        else {
            rc = s_pg_ok (conn, PQexec (conn, "BEGIN"), "BEGIN");
            for (uint64_t seq = first; rc == 0 && seq <= last; seq++) {
                s_pg_row_t row;
                s_pg_row (seq, &row);
                const char *up_params [] = { row.sku, row.qty };
                const char *in_params [] = { row.seq, row.sku, row.qty, row.ts };
                rc = s_pg_ok (conn, PQexecPrepared (conn, "up", 2, up_params, NULL, NULL, 0),
                              "upsert")
                  || s_pg_ok (conn, PQexecPrepared (conn, "in", 4, in_params, NULL, NULL, 0),
                              "insert");
            }
            if (rc == 0)
                rc = s_pg_ok (conn, PQexec (conn, "COMMIT"), "COMMIT");
        }
    }
    double seconds = s_now () - start;
    if (rc == 0)
        s_line (mode == S_PG_PIPELINE? "raw postgres (pipelined, tx 256)"
              : mode == S_PG_MULTIROW? "raw postgres (multi-row, tx 256)"
              : "raw postgres (prepared, tx 256)", count, seconds, NULL);
    PQfinish (conn);
}

//  ---------------------------------------------------------------------
//  The projection, with the apply a careful user writes

typedef struct {
    herald_projection_backend_t backend;
    bool cte;                       //  postgres: one statement an event
    void *db;                       //  the connection the statements belong to
    sqlite3_stmt *upsert, *insert;  //  sqlite
    bool prepared;                  //  postgres: on db
} s_model_t;

static void
s_model_forget (s_model_t *model)
{
    sqlite3_finalize (model->upsert);
    sqlite3_finalize (model->insert);
    model->upsert = model->insert = NULL;
    model->prepared = false;
    model->db = NULL;
}

//  PostgreSQL's transient errors are RETRY (docs/projections.md); so is a
//  prepared statement gone with a connection that was reset
static int
s_pg_result (s_model_t *model, PGconn *conn, PGresult *result)
{
    ExecStatusType status = PQresultStatus (result);
    if (status == PGRES_COMMAND_OK || status == PGRES_TUPLES_OK) {
        PQclear (result);
        return HERALD_OK;
    }
    const char *state = PQresultErrorField (result, PG_DIAG_SQLSTATE);
    int rc = HERALD_ERR_IO;
    if (PQstatus (conn) == CONNECTION_BAD
    ||  (state && (!strncmp (state, "40", 2) || !strncmp (state, "08", 2)
               ||  !strncmp (state, "57P0", 4) || !strcmp (state, "26000")))) {
        model->prepared = false;
        rc = HERALD_RETRY;
    }
    else
        fprintf (stderr, "projection_bench: %s", PQerrorMessage (conn));
    PQclear (result);
    return rc;
}

static int
s_model_setup (void *db, void *arg)
{
    s_model_t *model = (s_model_t *) arg;
    if (model->backend == HERALD_PROJECTION_SQLITE)
        return sqlite3_exec ((sqlite3 *) db, s_create, NULL, NULL, NULL) == SQLITE_OK
               ? HERALD_OK: HERALD_ERR_IO;
    return s_pg_result (model, (PGconn *) db, PQexec ((PGconn *) db, s_create)) == HERALD_OK
           ? HERALD_OK: HERALD_ERR_IO;
}

static int
s_model_reset (void *db, void *arg)
{
    s_model_t *model = (s_model_t *) arg;
    s_model_forget (model);
    const char *sql = "DROP TABLE IF EXISTS stock; DROP TABLE IF EXISTS ledger";
    if (model->backend == HERALD_PROJECTION_SQLITE)
        return sqlite3_exec ((sqlite3 *) db, sql, NULL, NULL, NULL) == SQLITE_OK
               ? HERALD_OK: HERALD_ERR_IO;
    return s_pg_result (model, (PGconn *) db, PQexec ((PGconn *) db, sql)) == HERALD_OK
           ? HERALD_OK: HERALD_ERR_IO;
}

static int
s_model_apply (void *db, const herald_delivery_t *event, void *arg)
{
    s_model_t *model = (s_model_t *) arg;
    //  The sku: the topic after its last '.'
    char sku [64];
    size_t start = event->topic_len;
    while (start > 0 && event->topic [start - 1] != '.')
        start--;
    size_t len = event->topic_len - start < sizeof sku - 1
               ? event->topic_len - start: sizeof sku - 1;
    memcpy (sku, event->topic + start, len);
    sku [len] = 0;
    int64_t qty = (int64_t) (event->seq % 7) + 1;
    if (model->db != db)
        s_model_forget (model);
    model->db = db;
    if (model->backend == HERALD_PROJECTION_SQLITE) {
        sqlite3 *lite = (sqlite3 *) db;
        if (!model->upsert
        &&  (sqlite3_prepare_v2 (lite, s_upsert, -1, &model->upsert, NULL) != SQLITE_OK
        ||   sqlite3_prepare_v2 (lite, s_insert, -1, &model->insert, NULL) != SQLITE_OK)) {
            fprintf (stderr, "projection_bench: %s\n", sqlite3_errmsg (lite));
            s_model_forget (model);
            return HERALD_ERR_IO;
        }
        sqlite3_bind_text (model->upsert, 1, sku, (int) len, SQLITE_STATIC);
        sqlite3_bind_int64 (model->upsert, 2, qty);
        sqlite3_bind_int64 (model->insert, 1, (int64_t) event->seq);
        sqlite3_bind_text (model->insert, 2, sku, (int) len, SQLITE_STATIC);
        sqlite3_bind_int64 (model->insert, 3, qty);
        sqlite3_bind_int64 (model->insert, 4, (int64_t) event->ts);
        int code = sqlite3_step (model->upsert);
        if (code == SQLITE_DONE)
            code = sqlite3_step (model->insert);
        sqlite3_reset (model->upsert);
        sqlite3_reset (model->insert);
        if (code == SQLITE_DONE)
            return HERALD_OK;
        if (code == SQLITE_BUSY || code == SQLITE_LOCKED)
            return HERALD_RETRY;
        fprintf (stderr, "projection_bench: %s\n", sqlite3_errmsg (lite));
        return HERALD_ERR_IO;
    }
    PGconn *conn = (PGconn *) db;
    if (!model->prepared) {
        int rc = model->cte
               ? s_pg_result (model, conn, PQprepare (conn, "cte", s_cte, 0, NULL))
               : s_pg_result (model, conn, PQprepare (conn, "up", s_upsert, 0, NULL));
        if (rc == HERALD_OK && !model->cte)
            rc = s_pg_result (model, conn, PQprepare (conn, "in", s_insert, 0, NULL));
        if (rc != HERALD_OK)
            return rc;
        model->prepared = true;
    }
    char qty_text [24], seq_text [24], ts_text [24];
    snprintf (qty_text, sizeof qty_text, "%" PRId64, qty);
    snprintf (seq_text, sizeof seq_text, "%" PRIu64, event->seq);
    snprintf (ts_text, sizeof ts_text, "%" PRIu64, event->ts);
    if (model->cte) {
        const char *params [] = { sku, qty_text, seq_text, ts_text };
        return s_pg_result (model, conn, PQexecPrepared (conn, "cte", 4, params, NULL, NULL, 0));
    }
    const char *up [] = { sku, qty_text };
    const char *in [] = { seq_text, sku, qty_text, ts_text };
    int rc = s_pg_result (model, conn, PQexecPrepared (conn, "up", 2, up, NULL, NULL, 0));
    if (rc == HERALD_OK)
        rc = s_pg_result (model, conn, PQexecPrepared (conn, "in", 4, in, NULL, NULL, 0));
    return rc;
}

static void
s_projection (herald_agent_t *agent, herald_projection_backend_t backend, const char *database,
              bool temporal, bool cte, uint64_t head)
{
    static const char *prefixes [] = { "stock.", NULL };
    s_model_t model;
    memset (&model, 0, sizeof model);
    model.backend = backend;
    model.cte = cte;
    herald_projection_options_t options;
    herald_projection_options_init (&options);
    options.backend = backend;
    options.database = database;
    options.prefixes = prefixes;
    options.setup = s_model_setup;
    options.reset = s_model_reset;
    options.apply = s_model_apply;
    options.arg = &model;
    if (temporal) {
        struct timespec now;
        clock_gettime (CLOCK_REALTIME, &now);
        options.until_ts = (uint64_t) now.tv_sec * 1000000000 + (uint64_t) now.tv_nsec;
    }
    char what [64];
    snprintf (what, sizeof what, "projection %s %s%s",
              backend == HERALD_PROJECTION_POSTGRES? "postgres": "sqlite",
              temporal? "temporal": "live", cte? " cte": "");
    herald_projection_t *projection = herald_projection_new (agent, "bench", &options);
    if (!projection) {
        printf ("%s: %s\n", what, herald_agent_last_error ());
        s_model_forget (&model);
        return;
    }
    double start = s_now ();
    herald_err rc = herald_projection_start (projection, 1800000);
    if (rc == HERALD_OK && !temporal)
        rc = herald_projection_wait (projection, head, 1800000);
    double seconds = s_now () - start;
    herald_projection_status_t status;
    herald_projection_status (projection, &status);
    if (rc != HERALD_OK)
        printf ("%s: %s\n", what, herald_agent_last_error ());
    else {
        char detail [64];
        snprintf (detail, sizeof detail, "%" PRIu64 " transactions", status.transactions);
        s_line (what, status.applied, seconds, detail);
    }
    herald_projection_destroy (&projection);
    //  After the close: sqlite3_close_v2 waits for these to go
    s_model_forget (&model);
}

//  ---------------------------------------------------------------------

static int s_databases;

//  A fresh PostgreSQL database (its conninfo) or SQLite file (its path)
static char *
s_database (pgu_server_t *server, const char *dir, herald_projection_backend_t backend)
{
    char name [32];
    snprintf (name, sizeof name, "bench_%d", ++s_databases);
    if (backend == HERALD_PROJECTION_SQLITE) {
        strcat (name, ".db");
        return tu_path (dir, name);
    }
    char conninfo [256];
    if (pgu_database_new (server, name, conninfo, sizeof conninfo)) {
        printf ("postgres: cannot make database %s: %s\n", name, server->error);
        return NULL;
    }
    return strdup (conninfo);
}

int
main (int argc, char *argv [])
{
    size_t count = argc > 1? strtoul (argv [1], NULL, 10): 100000;
    size_t big = argc > 2? strtoul (argv [2], NULL, 10): 1000000;
    bool big_pg = argc > 3? atoi (argv [3]) != 0: true;
    if (count == 0 || (big && big <= count)) {
        fprintf (stderr, "usage: projection_bench [COUNT [BIG [BIG_PG]]] (BIG 0 or > COUNT)\n");
        return 2;
    }
    zsys_handler_set (NULL);
    pgu_server_t server;
    if (pgu_server_start (&server)) {
        fprintf (stderr, "projection_bench: PostgreSQL: %s\n", server.error);
        pgu_server_destroy (&server);
        return 1;
    }
    bu_broker_t *broker = bu_broker_new ("projection-bench", NULL);
    char *dir = tu_tmpdir_new ("projection-bench");
    herald_agent_t *agent = NULL;
    int rc = 1;
    if (!broker || !dir || bu_broker_start (broker, 10000)) {
        fprintf (stderr, "projection_bench: heraldd did not start\n");
        goto done;
    }
    double start = s_now ();
    if (au_publish (broker->api, "stock.sku%zu", S_TOPICS, count, 600000)) {
        fprintf (stderr, "projection_bench: publishing failed\n");
        goto done;
    }
    s_line ("(publish, for the setup)", count, s_now () - start, NULL);
    int64_t head = au_head (broker->api, 10000);
    herald_agent_options_t options;
    au_options (&options, broker, NULL);
    agent = herald_agent_new ("projection-bench", &options);
    if (!agent || head <= 0) {
        fprintf (stderr, "projection_bench: %s\n", herald_agent_last_error ());
        goto done;
    }
    printf ("# %zu events; read model: a stock upsert and a ledger insert per event\n", count);
    s_raw_delivery (agent, "raw-1", count);
    char *database = s_database (&server, dir, HERALD_PROJECTION_SQLITE);
    s_raw_sqlite (database, count);
    free (database);
    for (s_pg_mode_t mode = S_PG_EACH; mode <= S_PG_MULTIROW; mode++) {
        if ((database = s_database (&server, dir, HERALD_PROJECTION_POSTGRES)))
            s_raw_postgres (database, count, mode);
        free (database);
    }
    struct {
        herald_projection_backend_t backend;
        bool temporal, cte;
    } runs [] = {
        { HERALD_PROJECTION_SQLITE, false, false },
        { HERALD_PROJECTION_SQLITE, true, false },
        { HERALD_PROJECTION_POSTGRES, false, false },
        { HERALD_PROJECTION_POSTGRES, false, true },
        { HERALD_PROJECTION_POSTGRES, true, false },
        { HERALD_PROJECTION_POSTGRES, true, true },
    };
    for (size_t index = 0; index < sizeof runs / sizeof runs [0]; index++) {
        if ((database = s_database (&server, dir, runs [index].backend)))
            s_projection (agent, runs [index].backend, database, runs [index].temporal,
                          runs [index].cte, (uint64_t) head);
        free (database);
    }
    if (big) {
        start = s_now ();
        if (au_publish (broker->api, "stock.sku%zu", S_TOPICS, big - count, 1800000)) {
            fprintf (stderr, "projection_bench: publishing failed\n");
            goto done;
        }
        s_line ("(publish, for the setup)", big - count, s_now () - start, NULL);
        head = au_head (broker->api, 10000);
        printf ("# %" PRId64 " events\n", head);
        s_raw_delivery (agent, "raw-2", (size_t) head);
        database = s_database (&server, dir, HERALD_PROJECTION_SQLITE);
        s_raw_sqlite (database, (size_t) head);
        free (database);
        for (int temporal = 1; temporal >= 0; temporal--) {
            if ((database = s_database (&server, dir, HERALD_PROJECTION_SQLITE)))
                s_projection (agent, HERALD_PROJECTION_SQLITE, database, temporal, false,
                              (uint64_t) head);
            free (database);
        }
        if (big_pg && (database = s_database (&server, dir, HERALD_PROJECTION_POSTGRES))) {
            s_projection (agent, HERALD_PROJECTION_POSTGRES, database, true, true,
                          (uint64_t) head);
            free (database);
        }
    }
    rc = 0;
done:
    herald_agent_destroy (&agent);
    tu_tmpdir_destroy (&dir);
    bu_broker_destroy (&broker);
    pgu_server_destroy (&server);
    return rc;
}
