/*  =========================================================================
    herald_projection_pg - a projection's database in PostgreSQL

    The operations of herald_projection_backend.h on a PostgreSQL server,
    through libpq.  The connection (PGconn *) is what the apply, setup and
    reset functions get as db.  database is a libpq connection string
    ("host=127.0.0.1 port=5432 dbname=shop user=shop") or URI.

    DESIGN

    One transaction per batch, at PostgreSQL's default isolation (READ
    COMMITTED).  position_read first takes a transaction-scoped advisory
    lock on the projection (its key: the first 64 bits of md5(table ":"
    name)), then reads the row FOR UPDATE in a statement of its own.  The
    row lock alone would not do the first time, when there is no row to
    lock yet: two processes would both find none and both apply the first
    batch.  The advisory lock is held until commit or rollback whether the
    row exists or not; the SELECT that follows it starts after the other
    writer committed, so it sees that writer's row and skips what it
    applied.  The Python projections take the same lock with the same key
    (docs/projections.md, "PostgreSQL").

    Transient errors (the core rolls back and retries with the agent's
    backoff): SQLSTATE class 40 (40001 serialization failure, 40P01
    deadlock, 40003 completion unknown), class 08 (connection
    exceptions), 57P01/57P02/57P03 (the server shutting down, crashed,
    starting), 53300 (too many connections), 55P03 (lock_timeout), and a
    connection that is gone (no SQLSTATE: libpq's own "server closed the
    connection").  The connection is made again at the next begin
    (PQreset, same connection string).  A COMMIT whose connection broke is
    uncertain: reported transient, and the row read at the next begin
    settles what was committed.

    Everything else (a syntax or privilege error, a full disk, a bad
    connection string) is an error with PostgreSQL's own words and the
    SQLSTATE.  libpq answers a COMMIT of a transaction that an earlier
    error aborted with success and the tag ROLLBACK; commit checks the tag
    and the transaction's state, so such a batch is never counted as
    committed.

    Integers are bigint: seq, lineage and until_ts up to 2^63-1 (until_ts
    in ns: the year 2262).  A value beyond is refused at the write
    (HERALD_ERR_INVALID: the projection stops with a clear message)
    rather than stored wrapped; a negative value read back was not
    written by Herald (HERALD_ERR_CORRUPT).
    =========================================================================
*/

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <libpq-fe.h>
#include "herald_projection_backend.h"

//  Defaults the connection string may override: a connect that hangs
//  (an address that drops packets) gives up, and a server that vanished
//  without closing the connection is noticed, both in bounded time
static const char *s_default_keys [] = {
    "connect_timeout", "keepalives_idle", "keepalives_interval", "keepalives_count",
    "fallback_application_name", "dbname", NULL
};

//  Notices ("relation ... already exists, skipping") are not errors; the
//  default processor would print them on stderr
static void
s_notice_quiet (void *arg, const char *message)
{
    (void) arg;
    (void) message;
}

//  Copy text into message without its trailing newlines (libpq ends its
//  messages with one)
static void
s_trim (char *message)
{
    size_t len = strlen (message);
    while (len && (message [len - 1] == '\n' || message [len - 1] == ' '))
        message [--len] = 0;
}

static bool
s_transient_state (const char *state)
{
    if (!state || strlen (state) != 5)
        return false;
    return strncmp (state, "40", 2) == 0        //  serialization, deadlock, unknown
        || strncmp (state, "08", 2) == 0        //  connection exceptions
        || strcmp (state, "57P01") == 0         //  admin shutdown
        || strcmp (state, "57P02") == 0         //  crash shutdown
        || strcmp (state, "57P03") == 0         //  cannot connect now (starting)
        || strcmp (state, "53300") == 0         //  too many connections
        || strcmp (state, "55P03") == 0;        //  lock not available (lock_timeout)
}

//  The error of a failed statement (result may be NULL) while doing what
static herald_err
s_error (PGconn *conn, PGresult *result, const char *what, bool *retry_p, char *message,
         size_t size)
{
    const char *state = result? PQresultErrorField (result, PG_DIAG_SQLSTATE): NULL;
    const char *primary = result? PQresultErrorField (result, PG_DIAG_MESSAGE_PRIMARY): NULL;
    bool gone = !conn || PQstatus (conn) == CONNECTION_BAD;
    *retry_p = gone || s_transient_state (state);
    char text [256];
    snprintf (text, sizeof text, "%s", primary? primary
                                     : conn? PQerrorMessage (conn): "no connection");
    s_trim (text);
    if (state)
        snprintf (message, size, "PostgreSQL: %s: %s (SQLSTATE %s)", what, text, state);
    else
    if (gone)
        snprintf (message, size, "PostgreSQL: %s: the connection is lost: %s", what, text);
    else
        snprintf (message, size, "PostgreSQL: %s: %s", what, text);
    return HERALD_ERR_IO;
}

//  Run sql (no parameters, no rows wanted)
static herald_err
s_exec (PGconn *conn, const char *sql, const char *what, bool *retry_p, char *message,
        size_t size)
{
    PGresult *result = PQexec (conn, sql);
    herald_err rc = HERALD_OK;
    if (PQresultStatus (result) != PGRES_COMMAND_OK
    &&  PQresultStatus (result) != PGRES_TUPLES_OK)
        rc = s_error (conn, result, what, retry_p, message, size);
    PQclear (result);
    return rc;
}

//  A connection string check that needs no server: a bad one is no
//  transient error
static herald_err
s_check_conninfo (const char *database, char *message, size_t size)
{
    char *error = NULL;
    PQconninfoOption *options = PQconninfoParse (database, &error);
    if (!options) {
        snprintf (message, size, "PostgreSQL: not a connection string: %s",
                  error? error: "out of memory");
        s_trim (message);
        PQfreemem (error);
        return HERALD_ERR_INVALID;
    }
    PQconninfoFree (options);
    return HERALD_OK;
}

static PGconn *
s_connect (const char *database)
{
    const char *values [] = { "10", "10", "5", "3", "herald-projection", database, NULL };
    return PQconnectdbParams (s_default_keys, values, 1);
}

//  After a connect or a reset: the session as every batch expects it
static herald_err
s_session (PGconn *conn, bool *retry_p, char *message, size_t size)
{
    PQsetNoticeProcessor (conn, s_notice_quiet, NULL);
    return s_exec (conn, "SET client_min_messages = warning", "cannot set up the session",
                   retry_p, message, size);
}

static herald_err
s_open (void **conn_p, const char *database, bool *retry_p, char *message, size_t size)
{
    *retry_p = false;
    *conn_p = NULL;
    herald_err rc = s_check_conninfo (database, message, size);
    if (rc != HERALD_OK)
        return rc;
    PGconn *conn = s_connect (database);
    if (!conn) {
        snprintf (message, size, "PostgreSQL: cannot connect: out of memory");
        return HERALD_ERR_NOMEM;
    }
    if (PQstatus (conn) != CONNECTION_OK) {
        //  Refused, the server starting or shutting down, a password
        //  refused: libpq gives no SQLSTATE for a failed connect.  At open
        //  the caller hears it at once (herald_projection_new fails with
        //  libpq's words); once running, begin retries it (s_reconnect)
        *retry_p = false;
        snprintf (message, size, "PostgreSQL: cannot connect: %s", PQerrorMessage (conn));
        s_trim (message);
        PQfinish (conn);
        return HERALD_ERR_IO;
    }
    rc = s_session (conn, retry_p, message, size);
    if (rc != HERALD_OK) {
        PQfinish (conn);
        return rc;
    }
    *conn_p = conn;
    return HERALD_OK;
}

static void
s_close (void **conn_p)
{
    if (*conn_p) {
        PQfinish ((PGconn *) *conn_p);
        *conn_p = NULL;
    }
}

//  Connect again when the connection is lost (or was never made)
static herald_err
s_reconnect (void **conn_p, const char *database, bool *retry_p, char *message,
             size_t size)
{
    PGconn *conn = (PGconn *) *conn_p;
    if (conn)
        PQreset (conn);
    else {
        herald_err rc = s_check_conninfo (database, message, size);
        if (rc != HERALD_OK) {
            *retry_p = false;
            return rc;
        }
        conn = s_connect (database);
        if (!conn) {
            *retry_p = true;
            snprintf (message, size, "PostgreSQL: cannot connect: out of memory");
            return HERALD_ERR_NOMEM;
        }
        *conn_p = conn;
    }
    if (PQstatus (conn) != CONNECTION_OK) {
        *retry_p = true;
        snprintf (message, size, "PostgreSQL: cannot connect again: %s",
                  PQerrorMessage (conn));
        s_trim (message);
        return HERALD_ERR_IO;
    }
    return s_session (conn, retry_p, message, size);
}

static herald_err
s_begin (void **conn_p, const char *database, bool *retry_p, char *message, size_t size)
{
    *retry_p = false;
    herald_err rc = HERALD_OK;
    PGconn *conn = (PGconn *) *conn_p;
    if (!conn || PQstatus (conn) != CONNECTION_OK) {
        rc = s_reconnect (conn_p, database, retry_p, message, size);
        if (rc != HERALD_OK)
            return rc;
        conn = (PGconn *) *conn_p;
    }
    //  A transaction left open (a rollback that could not be sent) ends here
    if (PQtransactionStatus (conn) != PQTRANS_IDLE)
        PQclear (PQexec (conn, "ROLLBACK"));
    rc = s_exec (conn, "BEGIN", "cannot begin a transaction", retry_p, message, size);
    //  The connection broke while idle (the server restarted, or the
    //  backend was terminated between batches): libpq learns it only now.
    //  Once at once, rather than after a backoff.
    if (rc != HERALD_OK && PQstatus (conn) == CONNECTION_BAD) {
        rc = s_reconnect (conn_p, database, retry_p, message, size);
        conn = (PGconn *) *conn_p;
        if (rc == HERALD_OK)
            rc = s_exec (conn, "BEGIN", "cannot begin a transaction", retry_p, message,
                         size);
    }
    return rc;
}

static herald_err
s_commit (void *conn_, bool *retry_p, char *message, size_t size)
{
    PGconn *conn = (PGconn *) conn_;
    *retry_p = false;
    if (PQtransactionStatus (conn) == PQTRANS_INERROR) {
        snprintf (message, size, "PostgreSQL: cannot commit: a statement of this "
                  "transaction failed (an apply or setup function went on after an error "
                  "instead of returning it)");
        return HERALD_ERR_IO;
    }
    PGresult *result = PQexec (conn, "COMMIT");
    herald_err rc = HERALD_OK;
    if (PQresultStatus (result) != PGRES_COMMAND_OK)
        rc = s_error (conn, result, "cannot commit", retry_p, message, size);
    else
    if (strcmp (PQcmdStatus (result), "COMMIT") != 0) {
        //  The server rolled it back instead (an error earlier in it)
        snprintf (message, size, "PostgreSQL: cannot commit: the server answered %s",
                  PQcmdStatus (result));
        rc = HERALD_ERR_IO;
    }
    PQclear (result);
    return rc;
}

static void
s_rollback (void *conn_)
{
    PGconn *conn = (PGconn *) conn_;
    if (conn && PQstatus (conn) == CONNECTION_OK
    &&  PQtransactionStatus (conn) != PQTRANS_IDLE)
        PQclear (PQexec (conn, "ROLLBACK"));
}

//  The table's name as an SQL identifier (quoted); NULL when it cannot be
static char *
s_ident (PGconn *conn, const char *table, const char *what, bool *retry_p, char *message,
         size_t size)
{
    char *ident = PQescapeIdentifier (conn, table, strlen (table));
    if (!ident)
        s_error (conn, NULL, what, retry_p, message, size);
    return ident;
}

//  The projection's lock key: the first 64 bits of md5 (table ":" name),
//  computed by the server so that every client computes the same
#define S_LOCK_KEY  "('x' || left(md5($1 || ':' || $2), 16))::bit(64)::bigint"

static herald_err
s_table_ensure (void *conn_, const char *table, bool *retry_p, char *message, size_t size)
{
    PGconn *conn = (PGconn *) conn_;
    *retry_p = false;
    char *ident = s_ident (conn, table, "cannot create the position table", retry_p,
                           message, size);
    if (!ident)
        return HERALD_ERR_IO;
    //  When the table is there already, nothing to create (a role with no
    //  CREATE on the schema may still run the projection)
    const char *exists_params [] = { ident };
    PGresult *result = PQexecParams (conn, "SELECT to_regclass ($1) IS NOT NULL", 1,
                                     NULL, exists_params, NULL, NULL, 0);
    herald_err rc = HERALD_OK;
    bool exists = false;
    if (PQresultStatus (result) != PGRES_TUPLES_OK || PQntuples (result) != 1)
        rc = s_error (conn, result, "cannot look for the position table", retry_p,
                      message, size);
    else
        exists = strcmp (PQgetvalue (result, 0, 0), "t") == 0;
    PQclear (result);
    if (rc == HERALD_OK && !exists) {
        //  Two processes creating it at once would collide in the catalog
        //  (unique_violation): the first creates, the second waits here
        //  and then finds it
        const char *lock_params [] = { table, "" };
        result = PQexecParams (conn, "SELECT pg_advisory_xact_lock (" S_LOCK_KEY ")", 2,
                               NULL, lock_params, NULL, NULL, 0);
        if (PQresultStatus (result) != PGRES_TUPLES_OK)
            rc = s_error (conn, result, "cannot lock the position table", retry_p,
                          message, size);
        PQclear (result);
    }
    if (rc == HERALD_OK && !exists) {
        char sql [512];
        snprintf (sql, sizeof sql, "CREATE TABLE IF NOT EXISTS %s (name text PRIMARY KEY, "
                  "seq bigint NOT NULL, lineage bigint NOT NULL, until_ts bigint NOT NULL, "
                  "updated_ns bigint NOT NULL)", ident);
        result = PQexec (conn, sql);
        if (PQresultStatus (result) != PGRES_COMMAND_OK) {
            rc = s_error (conn, result, "cannot create the position table", retry_p,
                          message, size);
            //  Created by a client that took no lock: there now
            const char *state = PQresultErrorField (result, PG_DIAG_SQLSTATE);
            if (state && (!strcmp (state, "23505") || !strcmp (state, "42P07")))
                *retry_p = true;
        }
        PQclear (result);
    }
    PQfreemem (ident);
    return rc;
}

//  A bigint column's text as a uint64_t; false when negative or not one
static bool
s_uint64 (const char *text, uint64_t *value_p)
{
    if (!text || *text < '0' || *text > '9')
        return false;
    errno = 0;
    char *end;
    unsigned long long value = strtoull (text, &end, 10);
    if (errno || *end)
        return false;
    *value_p = value;
    return true;
}

static herald_err
s_position_read (void *conn_, const char *table, const char *name,
                 herald_projection_position_t *position, bool *found_p, bool *retry_p,
                 char *message, size_t size)
{
    PGconn *conn = (PGconn *) conn_;
    memset (position, 0, sizeof *position);
    *found_p = false;
    *retry_p = false;
    //  The lock first, in a statement of its own: the SELECT that follows
    //  takes its snapshot after any other writer of this row committed
    const char *lock_params [] = { table, name };
    PGresult *result = PQexecParams (conn, "SELECT pg_advisory_xact_lock (" S_LOCK_KEY ")",
                                     2, NULL, lock_params, NULL, NULL, 0);
    herald_err rc = HERALD_OK;
    if (PQresultStatus (result) != PGRES_TUPLES_OK)
        rc = s_error (conn, result, "cannot lock the position", retry_p, message, size);
    PQclear (result);
    if (rc != HERALD_OK)
        return rc;
    char *ident = s_ident (conn, table, "cannot read the position", retry_p, message, size);
    if (!ident)
        return HERALD_ERR_IO;
    char sql [384];
    snprintf (sql, sizeof sql, "SELECT seq, lineage, until_ts FROM %s WHERE name = $1 "
              "FOR UPDATE", ident);
    PQfreemem (ident);
    const char *params [] = { name };
    result = PQexecParams (conn, sql, 1, NULL, params, NULL, NULL, 0);
    if (PQresultStatus (result) != PGRES_TUPLES_OK)
        rc = s_error (conn, result, "cannot read the position", retry_p, message, size);
    else
    if (PQntuples (result) == 1) {
        if (!s_uint64 (PQgetvalue (result, 0, 0), &position->seq)
        ||  !s_uint64 (PQgetvalue (result, 0, 1), &position->lineage)
        ||  !s_uint64 (PQgetvalue (result, 0, 2), &position->until_ts)) {
            memset (position, 0, sizeof *position);
            snprintf (message, size, "PostgreSQL: the row of projection %s in %s holds a "
                      "negative number: it was not written by Herald", name, table);
            rc = HERALD_ERR_CORRUPT;
        }
        else
            *found_p = true;
    }
    PQclear (result);
    return rc;
}

static herald_err
s_position_write (void *conn_, const char *table, const char *name,
                  const herald_projection_position_t *position, bool *retry_p,
                  char *message, size_t size)
{
    PGconn *conn = (PGconn *) conn_;
    *retry_p = false;
    const char *field = position->seq > INT64_MAX? "seq"
                      : position->lineage > INT64_MAX? "lineage"
                      : position->until_ts > INT64_MAX? "until_ts": NULL;
    if (field) {
        snprintf (message, size, "PostgreSQL: cannot write the position of %s: its %s is "
                  "beyond bigint (2^63-1)", name, field);
        return HERALD_ERR_INVALID;
    }
    char *ident = s_ident (conn, table, "cannot write the position", retry_p, message, size);
    if (!ident)
        return HERALD_ERR_IO;
    char sql [512];
    snprintf (sql, sizeof sql, "INSERT INTO %s (name, seq, lineage, until_ts, updated_ns) "
              "VALUES ($1, $2, $3, $4, $5) ON CONFLICT (name) DO UPDATE SET "
              "seq = excluded.seq, lineage = excluded.lineage, until_ts = excluded.until_ts, "
              "updated_ns = excluded.updated_ns", ident);
    PQfreemem (ident);
    struct timespec now;
    clock_gettime (CLOCK_REALTIME, &now);
    char seq [24], lineage [24], until_ts [24], updated_ns [24];
    snprintf (seq, sizeof seq, "%" PRIu64, position->seq);
    snprintf (lineage, sizeof lineage, "%" PRIu64, position->lineage);
    snprintf (until_ts, sizeof until_ts, "%" PRIu64, position->until_ts);
    snprintf (updated_ns, sizeof updated_ns, "%" PRId64,
              (int64_t) now.tv_sec * 1000000000 + now.tv_nsec);
    const char *params [] = { name, seq, lineage, until_ts, updated_ns };
    PGresult *result = PQexecParams (conn, sql, 5, NULL, params, NULL, NULL, 0);
    herald_err rc = HERALD_OK;
    if (PQresultStatus (result) != PGRES_COMMAND_OK)
        rc = s_error (conn, result, "cannot write the position", retry_p, message, size);
    PQclear (result);
    return rc;
}

static bool
s_lost (void *conn)
{
    return !conn || PQstatus ((PGconn *) conn) == CONNECTION_BAD;
}

const herald_projection_db_t herald_projection_postgres = {
    .name = "postgres",
    .open = s_open,
    .close = s_close,
    .begin = s_begin,
    .commit = s_commit,
    .rollback = s_rollback,
    .table_ensure = s_table_ensure,
    .position_read = s_position_read,
    .position_write = s_position_write,
    .lost = s_lost
};
