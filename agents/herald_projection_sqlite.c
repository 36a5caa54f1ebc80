/*  =========================================================================
    herald_projection_sqlite - a projection's database in SQLite

    The operations of herald_projection_backend.h on a SQLite file.  The
    connection (sqlite3 *) is what the apply, setup and reset functions get
    as db.

    DESIGN

    The file is put in WAL mode with synchronous=NORMAL: a kill -9 of the
    process never loses a commit (only a power loss can, and then it loses
    the last whole transactions, position and effects together, so the
    projection replays them: still once).  Readers of the read model do not
    block the projection, nor it them.

    BEGIN IMMEDIATE takes the write lock at once, so that the row read next
    is the one this transaction will overwrite: two processes projecting
    the same name into one file serialize there, and the second skips what
    the first committed.  The lock is waited for up to BUSY_MS (SQLite's
    busy handler), then the batch is rolled back and retried by the core
    with the agent's backoff: busy and locked are the transient errors.
    =========================================================================
*/

#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <sqlite3.h>
#include "herald_projection_backend.h"

#define BUSY_MS     200             //  SQLite waits this long for a lock, then BUSY

static bool
s_transient (int code)
{
    code &= 0xff;                   //  the primary code of an extended one
    return code == SQLITE_BUSY || code == SQLITE_LOCKED;
}

//  The error of code while doing `what` into message; retry_p set for the
//  transient ones.
static herald_err
s_error (sqlite3 *db, int code, const char *what, bool *retry_p, char *message,
         size_t size)
{
    *retry_p = s_transient (code);
    const char *text = db? sqlite3_errmsg (db): sqlite3_errstr (code);
    if (code == SQLITE_NOTADB || (code & 0xff) == SQLITE_CORRUPT)
        snprintf (message, size, "SQLite: %s: %s (the file is not a SQLite database, or "
                  "is damaged)", what, text);
    else
        snprintf (message, size, "SQLite: %s: %s", what, text);
    return HERALD_ERR_IO;
}

static herald_err
s_exec (sqlite3 *db, const char *sql, const char *what, bool *retry_p, char *message,
        size_t size)
{
    int code = sqlite3_exec (db, sql, NULL, NULL, NULL);
    if (code != SQLITE_OK)
        return s_error (db, code, what, retry_p, message, size);
    return HERALD_OK;
}

static herald_err
s_open (void **conn_p, const char *database, bool *retry_p, char *message, size_t size)
{
    *retry_p = false;
    *conn_p = NULL;
    sqlite3 *db = NULL;
    int code = sqlite3_open_v2 (database, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE
                                              | SQLITE_OPEN_FULLMUTEX, NULL);
    if (code != SQLITE_OK) {
        s_error (db, code, "cannot open the database", retry_p, message, size);
        sqlite3_close (db);
        return HERALD_ERR_IO;
    }
    sqlite3_extended_result_codes (db, 1);
    sqlite3_busy_timeout (db, BUSY_MS);
    //  The first read of the file: a file that is not SQLite fails here,
    //  before anything is written to it
    herald_err rc = s_exec (db, "SELECT count(*) FROM sqlite_master", "cannot read the "
                            "database", retry_p, message, size);
    sqlite3_stmt *stmt = NULL;
    if (rc == HERALD_OK) {
        code = sqlite3_prepare_v2 (db, "PRAGMA journal_mode=WAL", -1, &stmt, NULL);
        if (code == SQLITE_OK)
            code = sqlite3_step (stmt);
        //  A database in memory, or on a file system without shared memory,
        //  keeps its mode: still transactional
        if (code == SQLITE_ROW)
            code = SQLITE_OK;
        if (code != SQLITE_OK && code != SQLITE_DONE)
            rc = s_error (db, code, "cannot set the journal mode", retry_p, message, size);
        sqlite3_finalize (stmt);
    }
    if (rc == HERALD_OK)
        rc = s_exec (db, "PRAGMA synchronous=NORMAL", "cannot set synchronous", retry_p,
                     message, size);
    if (rc != HERALD_OK) {
        sqlite3_close (db);
        return rc;
    }
    *conn_p = db;
    return HERALD_OK;
}

static void
s_close (void **conn_p)
{
    if (*conn_p) {
        sqlite3_close_v2 ((sqlite3 *) *conn_p);
        *conn_p = NULL;
    }
}

static herald_err
s_begin (void **conn_p, const char *database, bool *retry_p, char *message, size_t size)
{
    (void) database;
    return s_exec ((sqlite3 *) *conn_p, "BEGIN IMMEDIATE", "cannot begin a transaction",
                   retry_p, message, size);
}

static herald_err
s_commit (void *conn, bool *retry_p, char *message, size_t size)
{
    return s_exec ((sqlite3 *) conn, "COMMIT", "cannot commit", retry_p, message, size);
}

static void
s_rollback (void *conn)
{
    sqlite3 *db = (sqlite3 *) conn;
    //  A failed COMMIT or statement may have ended the transaction already
    if (db && !sqlite3_get_autocommit (db))
        sqlite3_exec (db, "ROLLBACK", NULL, NULL, NULL);
}

static herald_err
s_table_ensure (void *conn, const char *table, bool *retry_p, char *message, size_t size)
{
    char sql [256];
    snprintf (sql, sizeof sql, "CREATE TABLE IF NOT EXISTS \"%s\" (name TEXT PRIMARY KEY, "
              "seq INTEGER NOT NULL, lineage INTEGER NOT NULL, until_ts INTEGER NOT NULL, "
              "updated_ns INTEGER NOT NULL)", table);
    return s_exec ((sqlite3 *) conn, sql, "cannot create the position table", retry_p,
                   message, size);
}

static herald_err
s_position_read (void *conn, const char *table, const char *name,
                 herald_projection_position_t *position, bool *found_p, bool *retry_p,
                 char *message, size_t size)
{
    sqlite3 *db = (sqlite3 *) conn;
    memset (position, 0, sizeof *position);
    *found_p = false;
    *retry_p = false;
    char sql [256];
    snprintf (sql, sizeof sql, "SELECT seq, lineage, until_ts FROM \"%s\" WHERE name = ?1",
              table);
    sqlite3_stmt *stmt = NULL;
    int code = sqlite3_prepare_v2 (db, sql, -1, &stmt, NULL);
    if (code == SQLITE_OK)
        code = sqlite3_bind_text (stmt, 1, name, -1, SQLITE_STATIC);
    if (code == SQLITE_OK)
        code = sqlite3_step (stmt);
    if (code == SQLITE_ROW) {
        sqlite3_int64 seq = sqlite3_column_int64 (stmt, 0);
        sqlite3_int64 lineage = sqlite3_column_int64 (stmt, 1);
        sqlite3_int64 until_ts = sqlite3_column_int64 (stmt, 2);
        if (seq < 0 || lineage < 0 || until_ts < 0) {
            sqlite3_finalize (stmt);
            snprintf (message, size, "SQLite: the row of projection %s in %s holds a "
                      "negative number: it was not written by Herald", name, table);
            return HERALD_ERR_CORRUPT;
        }
        position->seq = (uint64_t) seq;
        position->lineage = (uint64_t) lineage;
        position->until_ts = (uint64_t) until_ts;
        *found_p = true;
        code = SQLITE_DONE;
    }
    herald_err rc = HERALD_OK;
    if (code != SQLITE_DONE)
        rc = s_error (db, code, "cannot read the position", retry_p, message, size);
    sqlite3_finalize (stmt);
    return rc;
}

static herald_err
s_position_write (void *conn, const char *table, const char *name,
                  const herald_projection_position_t *position, bool *retry_p,
                  char *message, size_t size)
{
    sqlite3 *db = (sqlite3 *) conn;
    *retry_p = false;
    char sql [384];
    snprintf (sql, sizeof sql, "INSERT INTO \"%s\" (name, seq, lineage, until_ts, "
              "updated_ns) VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (name) DO UPDATE SET "
              "seq = excluded.seq, lineage = excluded.lineage, until_ts = excluded.until_ts, "
              "updated_ns = excluded.updated_ns", table);
    struct timespec now;
    clock_gettime (CLOCK_REALTIME, &now);
    sqlite3_stmt *stmt = NULL;
    int code = sqlite3_prepare_v2 (db, sql, -1, &stmt, NULL);
    if (code == SQLITE_OK)
        code = sqlite3_bind_text (stmt, 1, name, -1, SQLITE_STATIC);
    if (code == SQLITE_OK)
        code = sqlite3_bind_int64 (stmt, 2, (sqlite3_int64) position->seq);
    if (code == SQLITE_OK)
        code = sqlite3_bind_int64 (stmt, 3, (sqlite3_int64) position->lineage);
    if (code == SQLITE_OK)
        code = sqlite3_bind_int64 (stmt, 4, (sqlite3_int64) position->until_ts);
    if (code == SQLITE_OK)
        code = sqlite3_bind_int64 (stmt, 5, (sqlite3_int64) now.tv_sec * 1000000000
                                            + now.tv_nsec);
    if (code == SQLITE_OK)
        code = sqlite3_step (stmt);
    herald_err rc = HERALD_OK;
    if (code != SQLITE_DONE)
        rc = s_error (db, code, "cannot write the position", retry_p, message, size);
    sqlite3_finalize (stmt);
    return rc;
}

const herald_projection_db_t herald_projection_sqlite = {
    .name = "sqlite",
    .open = s_open,
    .close = s_close,
    .begin = s_begin,
    .commit = s_commit,
    .rollback = s_rollback,
    .table_ensure = s_table_ensure,
    .position_read = s_position_read,
    .position_write = s_position_write
};
