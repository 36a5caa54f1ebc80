/*  =========================================================================
    projutil - a non-idempotent read model, and the comparison of two

    See projutil.h.
    =========================================================================
*/

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sqlite3.h>
#include <libpq-fe.h>
#include "projutil.h"

int
pu_exec (herald_projection_backend_t backend, void *db, const char *sql, char *message,
         size_t size)
{
    if (backend == HERALD_PROJECTION_SQLITE) {
        char *error = NULL;
        if (sqlite3_exec ((sqlite3 *) db, sql, NULL, NULL, &error) != SQLITE_OK) {
            snprintf (message, size, "%s: %s", sql, error? error: "?");
            sqlite3_free (error);
            return -1;
        }
        return 0;
    }
    PGresult *result = PQexec ((PGconn *) db, sql);
    ExecStatusType status = PQresultStatus (result);
    int rc = status == PGRES_COMMAND_OK || status == PGRES_TUPLES_OK? 0: -1;
    if (rc) {
        snprintf (message, size, "%s: %s", sql, PQerrorMessage ((PGconn *) db));
        //  What an apply function does with PostgreSQL's transient errors
        //  (docs/projections.md, "PostgreSQL"): a lost connection, class 40
        //  (serialization failure, deadlock), 08 and 57P0x are RETRY
        const char *state = PQresultErrorField (result, PG_DIAG_SQLSTATE);
        if (PQstatus ((PGconn *) db) == CONNECTION_BAD
        ||  (state && (!strncmp (state, "40", 2) || !strncmp (state, "08", 2)
                   ||  !strncmp (state, "57P0", 4))))
            rc = -2;
    }
    PQclear (result);
    return rc;
}

int
pu_model_setup (void *db, void *arg)
{
    pu_model_t *model = (pu_model_t *) arg;
    if (model->setup_fails)
        return model->setup_fails;
    char message [512];
    const char *sql =
        "CREATE TABLE IF NOT EXISTS stock (sku TEXT PRIMARY KEY, qty BIGINT NOT NULL);"
        "CREATE TABLE IF NOT EXISTS ledger (seq BIGINT PRIMARY KEY, sku TEXT NOT NULL, "
        "qty BIGINT NOT NULL, ts BIGINT NOT NULL);"
        "CREATE TABLE IF NOT EXISTS totals (id INTEGER PRIMARY KEY, total BIGINT NOT NULL, "
        "events BIGINT NOT NULL);"
        "INSERT INTO totals (id, total, events) VALUES (1, 0, 0) ON CONFLICT (id) DO NOTHING";
    if (pu_exec (model->backend, db, sql, message, sizeof message)) {
        fprintf (stderr, "projutil: setup: %s\n", message);
        return HERALD_ERR_IO;
    }
    return HERALD_OK;
}

int
pu_model_reset (void *db, void *arg)
{
    pu_model_t *model = (pu_model_t *) arg;
    atomic_fetch_add (&model->resets, 1);
    char message [512];
    if (pu_exec (model->backend, db, "DROP TABLE IF EXISTS stock; DROP TABLE IF EXISTS "
                 "ledger; DROP TABLE IF EXISTS totals", message, sizeof message)) {
        fprintf (stderr, "projutil: reset: %s\n", message);
        return HERALD_ERR_IO;
    }
    return HERALD_OK;
}

int
pu_model_apply (void *db, const herald_delivery_t *event, void *arg)
{
    pu_model_t *model = (pu_model_t *) arg;
    atomic_fetch_add (&model->calls, 1);
    if (model->fail_seq && event->seq == model->fail_seq)
        return model->fail_code;
    if (model->retry_seq && event->seq == model->retry_seq) {
        unsigned left = atomic_load (&model->retry_times);
        while (left && !atomic_compare_exchange_weak (&model->retry_times, &left, left - 1))
            ;
        if (left)
            return HERALD_RETRY;
    }
    //  The sku: the topic after its last '.', letters and digits only
    char sku [64];
    size_t start = event->topic_len;
    while (start > 0 && event->topic [start - 1] != '.')
        start--;
    size_t len = 0;
    for (size_t index = start; index < event->topic_len && len < sizeof sku - 1; index++) {
        char c = event->topic [index];
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
            sku [len++] = c;
    }
    if (len == 0)
        sku [len++] = 'x';
    sku [len] = 0;
    int64_t qty = (int64_t) (event->seq % 7) + 1;
    char sql [768];
    snprintf (sql, sizeof sql,
              "INSERT INTO stock (sku, qty) VALUES ('%s', %" PRId64 ") ON CONFLICT (sku) DO "
              "UPDATE SET qty = stock.qty + excluded.qty;"
              "INSERT INTO ledger (seq, sku, qty, ts) VALUES (%" PRIu64 ", '%s', %" PRId64
              ", %" PRId64 ");"
              "UPDATE totals SET total = total + %" PRId64 ", events = events + 1 WHERE id = 1",
              sku, qty, event->seq, sku, qty, (int64_t) event->ts, qty);
    char message [1024];
    int rc = pu_exec (model->backend, db, sql, message, sizeof message);
    if (rc == -2)
        return HERALD_RETRY;
    if (rc) {
        fprintf (stderr, "projutil: apply seq %" PRIu64 ": %s\n", event->seq, message);
        return HERALD_ERR_CONFLICT;
    }
    return HERALD_OK;
}

//  ---------------------------------------------------------------------
//  Dumps

typedef struct {
    char *text;
    size_t len;
    size_t size;
} s_text_t;

static int
s_append (s_text_t *text, const char *piece)
{
    size_t len = strlen (piece);
    if (text->len + len + 1 > text->size) {
        size_t size = (text->size + len + 1) * 2;
        char *bigger = realloc (text->text, size);
        if (!bigger)
            return -1;
        text->text = bigger;
        text->size = size;
    }
    memcpy (text->text + text->len, piece, len + 1);
    text->len += len;
    return 0;
}

//  Every row of sql as "a|b|c\n" after a header line
static int
s_dump_sqlite (sqlite3 *db, const char *sql, s_text_t *text, char *message, size_t size)
{
    sqlite3_stmt *stmt = NULL;
    if (sqlite3_prepare_v2 (db, sql, -1, &stmt, NULL) != SQLITE_OK) {
        snprintf (message, size, "%s: %s", sql, sqlite3_errmsg (db));
        return -1;
    }
    s_append (text, "# ");
    s_append (text, sql);
    s_append (text, "\n");
    int code;
    while ((code = sqlite3_step (stmt)) == SQLITE_ROW) {
        for (int column = 0; column < sqlite3_column_count (stmt); column++) {
            const unsigned char *value = sqlite3_column_text (stmt, column);
            s_append (text, column? "|": "");
            s_append (text, value? (const char *) value: "NULL");
        }
        s_append (text, "\n");
    }
    if (code != SQLITE_DONE)
        snprintf (message, size, "%s: %s", sql, sqlite3_errmsg (db));
    sqlite3_finalize (stmt);
    return code == SQLITE_DONE? 0: -1;
}

static int
s_dump_pg (PGconn *conn, const char *sql, s_text_t *text, char *message, size_t size)
{
    PGresult *result = PQexec (conn, sql);
    if (PQresultStatus (result) != PGRES_TUPLES_OK) {
        snprintf (message, size, "%s: %s", sql, PQerrorMessage (conn));
        PQclear (result);
        return -1;
    }
    s_append (text, "# ");
    s_append (text, sql);
    s_append (text, "\n");
    for (int row = 0; row < PQntuples (result); row++) {
        for (int column = 0; column < PQnfields (result); column++) {
            s_append (text, column? "|": "");
            s_append (text, PQgetisnull (result, row, column)
                            ? "NULL": PQgetvalue (result, row, column));
        }
        s_append (text, "\n");
    }
    PQclear (result);
    return 0;
}

char *
pu_dump (herald_projection_backend_t backend, const char *database, const char *table,
         char *message, size_t size)
{
    char position [256];
    snprintf (position, sizeof position, "SELECT name, seq, lineage, until_ts FROM %s "
              "ORDER BY name", table? table: "herald_projection");
    const char *queries [] = {
        "SELECT sku, qty FROM stock ORDER BY sku",
        "SELECT seq, sku, qty, ts FROM ledger ORDER BY seq",
        "SELECT id, total, events FROM totals ORDER BY id",
        position
    };
    s_text_t text = { NULL, 0, 0 };
    int rc = 0;
    if (backend == HERALD_PROJECTION_SQLITE) {
        sqlite3 *db = NULL;
        if (sqlite3_open_v2 (database, &db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK) {
            snprintf (message, size, "%s: %s", database, db? sqlite3_errmsg (db): "?");
            rc = -1;
        }
        for (size_t index = 0; rc == 0 && index < sizeof queries / sizeof queries [0]; index++)
            rc = s_dump_sqlite (db, queries [index], &text, message, size);
        sqlite3_close (db);
    }
    else {
        PGconn *conn = PQconnectdb (database);
        if (PQstatus (conn) != CONNECTION_OK) {
            snprintf (message, size, "%s: %s", database, PQerrorMessage (conn));
            rc = -1;
        }
        for (size_t index = 0; rc == 0 && index < sizeof queries / sizeof queries [0]; index++)
            rc = s_dump_pg (conn, queries [index], &text, message, size);
        PQfinish (conn);
    }
    if (rc == 0 && !text.text)
        rc = s_append (&text, "");
    if (rc) {
        free (text.text);
        return NULL;
    }
    return text.text;
}

int
pu_compare (herald_projection_backend_t backend_a, const char *database_a,
            herald_projection_backend_t backend_b, const char *database_b,
            const char *table, char *message, size_t size)
{
    char *a = pu_dump (backend_a, database_a, table, message, size);
    char *b = a? pu_dump (backend_b, database_b, table, message, size): NULL;
    int rc = a && b? 0: -1;
    if (rc == 0 && strcmp (a, b)) {
        //  The first line that differs, and its number
        const char *line_a = a, *line_b = b;
        size_t line = 1;
        while (true) {
            const char *end_a = strchr (line_a, '\n'), *end_b = strchr (line_b, '\n');
            size_t len_a = end_a? (size_t) (end_a - line_a): strlen (line_a);
            size_t len_b = end_b? (size_t) (end_b - line_b): strlen (line_b);
            if (len_a != len_b || memcmp (line_a, line_b, len_a) || !end_a || !end_b) {
                snprintf (message, size, "the read models differ at line %zu: '%.*s' in %s, "
                          "'%.*s' in %s", line, (int) (len_a < 200? len_a: 200), line_a,
                          database_a, (int) (len_b < 200? len_b: 200), line_b, database_b);
                break;
            }
            line_a = end_a + 1;
            line_b = end_b + 1;
            line++;
        }
        rc = -1;
    }
    free (a);
    free (b);
    return rc;
}

int64_t
pu_query_int (herald_projection_backend_t backend, const char *database, const char *sql)
{
    int64_t value = -1;
    if (backend == HERALD_PROJECTION_SQLITE) {
        sqlite3 *db = NULL;
        sqlite3_stmt *stmt = NULL;
        if (sqlite3_open_v2 (database, &db, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK
        &&  sqlite3_prepare_v2 (db, sql, -1, &stmt, NULL) == SQLITE_OK
        &&  sqlite3_step (stmt) == SQLITE_ROW)
            value = sqlite3_column_int64 (stmt, 0);
        sqlite3_finalize (stmt);
        sqlite3_close (db);
    }
    else {
        PGconn *conn = PQconnectdb (database);
        if (PQstatus (conn) == CONNECTION_OK) {
            PGresult *result = PQexec (conn, sql);
            if (PQresultStatus (result) == PGRES_TUPLES_OK && PQntuples (result) > 0)
                value = strtoll (PQgetvalue (result, 0, 0), NULL, 10);
            PQclear (result);
        }
        PQfinish (conn);
    }
    return value;
}
