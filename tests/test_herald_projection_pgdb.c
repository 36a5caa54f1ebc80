/*  =========================================================================
    test_herald_projection_pgdb - the PostgreSQL backend's operations

    herald_projection_postgres (agents/herald_projection_pg.c) driven
    directly, as the core drives it, against a real server the test starts
    (tests/pgserver.sh): what only PostgreSQL does.  The lock that keeps
    two writers of one projection apart, the row there or not; a backend
    terminated, the server stopped, a serialization failure and a deadlock
    are transient and the next begin reconnects; every other error says
    PostgreSQL's words and is not; bigint's limits; a COMMIT of an aborted
    transaction is no commit; the table's name is quoted.

    One server for the tests that leave it running (started before the
    first test, each test in a database of its own); the tests that stop
    it start their own.
    =========================================================================
*/

#include <criterion/criterion.h>
#include <criterion/hooks.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <libpq-fe.h>

#include "herald_projection_backend.h"
#include "pgutil.h"

static const herald_projection_db_t *db = &herald_projection_postgres;
static pgu_server_t s_shared;           //  the runner's
static char s_conninfo [256];           //  a database of this test's own

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

//  A fresh database on the shared server: s_conninfo
static void
s_database (const char *name)
{
    const char *shared = getenv ("HERALD_TEST_PG");
    cr_assert_not_null (shared, "the shared PostgreSQL server did not start");
    pgu_server_t server;
    memset (&server, 0, sizeof server);
    snprintf (server.conninfo, sizeof server.conninfo, "%s", shared);
    server.port = atoi (getenv ("HERALD_TEST_PG_PORT"));
    cr_assert_eq (pgu_database_new (&server, name, s_conninfo, sizeof s_conninfo), 0,
                  "%s", server.error);
}

static void
s_sql (const char *conninfo, const char *sql, char *out, size_t size)
{
    char error [512];
    cr_assert_eq (pgu_exec (conninfo, sql, out, size, error, sizeof error), 0,
                  "%s: %s", sql, error);
}

static PGconn *
s_open (const char *conninfo)
{
    void *conn = NULL;
    bool retry;
    char message [256];
    herald_err rc = db->open (&conn, conninfo, &retry, message, sizeof message);
    cr_assert_eq (rc, HERALD_OK, "open: %s", message);
    return (PGconn *) conn;
}

static void
s_ok (herald_err rc, const char *what, const char *message)
{
    cr_assert_eq (rc, HERALD_OK, "%s: %s", what, message);
}

//  begin + table_ensure + position_read
static void
s_begin_read (void **conn_p, const char *conninfo, const char *table, const char *name,
              herald_projection_position_t *position, bool *found_p)
{
    bool retry;
    char message [256];
    s_ok (db->begin (conn_p, conninfo, &retry, message, sizeof message), "begin", message);
    s_ok (db->table_ensure (*conn_p, table, &retry, message, sizeof message), "ensure",
          message);
    s_ok (db->position_read (*conn_p, table, name, position, found_p, &retry, message,
                             sizeof message), "read", message);
}

static void
s_write_commit (void *conn, const char *table, const char *name, uint64_t seq)
{
    bool retry;
    char message [256];
    herald_projection_position_t position = { seq, 1, 0 };
    s_ok (db->position_write (conn, table, name, &position, &retry, message, sizeof message),
          "write", message);
    s_ok (db->commit (conn, &retry, message, sizeof message), "commit", message);
}

//  How many sessions wait for a lock in this database
static int
s_waiting (const char *conninfo)
{
    char out [32];
    s_sql (conninfo, "SELECT count(*) FROM pg_stat_activity WHERE datname = "
           "current_database () AND wait_event_type = 'Lock'", out, sizeof out);
    return atoi (out);
}

static void
s_wait_for_waiter (const char *conninfo, int count)
{
    for (int tries = 0; tries < 1000 && s_waiting (conninfo) < count; tries++)
        usleep (10000);
    cr_assert_geq (s_waiting (conninfo), count, "nobody waits for the lock");
}

//  A second writer of the projection, on a thread: begin, read, report
typedef struct {
    const char *conninfo;
    const char *name;
    herald_projection_position_t position;
    bool found;
    bool done;
    void *conn;
} s_writer_t;

static void *
s_writer_run (void *arg)
{
    s_writer_t *self = (s_writer_t *) arg;
    bool retry;
    char message [256];
    if (db->begin (&self->conn, self->conninfo, &retry, message, sizeof message) == HERALD_OK
    &&  db->table_ensure (self->conn, "herald_projection", &retry, message,
                          sizeof message) == HERALD_OK
    &&  db->position_read (self->conn, "herald_projection", self->name, &self->position,
                           &self->found, &retry, message, sizeof message) == HERALD_OK)
        __atomic_store_n (&self->done, true, __ATOMIC_SEQ_CST);
    return NULL;
}

//  The second writer waits until the first commits, then reads its seq:
//  the table missing (round 0), the table there but not the row (1: no
//  row to lock yet), the row there (2)
Test (pgdb, second_writer_waits)
{
    s_database ("writers");
    for (int round = 0; round < 3; round++) {
        const char *name = round == 0? "p": "q";
        uint64_t seq = 10 * (uint64_t) (round + 1);
        void *conn = s_open (s_conninfo);
        herald_projection_position_t position;
        bool found;
        s_begin_read (&conn, s_conninfo, "herald_projection", name, &position, &found);
        cr_assert_eq (found, round == 2);
        cr_assert_eq (position.seq, round == 2? 20u: 0u);

        s_writer_t writer = { .conninfo = s_conninfo, .name = name };
        writer.conn = s_open (s_conninfo);
        pthread_t thread;
        cr_assert_eq (pthread_create (&thread, NULL, s_writer_run, &writer), 0);
        //  And the row itself is locked: a client that takes no advisory
        //  lock and just writes the row waits too
        PGconn *plain = NULL;
        if (round == 2) {
            plain = PQconnectdb (s_conninfo);
            cr_assert_eq (PQstatus (plain), CONNECTION_OK);
            cr_assert (PQsendQuery (plain, "UPDATE herald_projection SET updated_ns = 0 "
                                    "WHERE name = 'q'"));
        }
        s_wait_for_waiter (s_conninfo, round == 2? 2: 1);
        cr_assert_not (__atomic_load_n (&writer.done, __ATOMIC_SEQ_CST),
                       "round %d: the second writer read the row while the first held it",
                       round);
        s_write_commit (conn, "herald_projection", name, seq);
        pthread_join (thread, NULL);
        cr_assert (writer.done, "the second writer failed");
        cr_assert (writer.found, "round %d: the second writer did not see the first one's "
                   "row", round);
        cr_assert_eq (writer.position.seq, seq);
        db->rollback (writer.conn);
        if (plain) {
            PGresult *result;
            while ((result = PQgetResult (plain))) {
                cr_assert_eq (PQresultStatus (result), PGRES_COMMAND_OK);
                PQclear (result);
            }
            PQfinish (plain);
        }
        if (round == 2) {
            //  Another projection's row is not held
            herald_projection_position_t other;
            s_begin_read (&writer.conn, s_conninfo, "herald_projection", "r", &other,
                          &found);
            cr_assert_not (found);
            db->rollback (writer.conn);
        }
        db->close (&writer.conn);
        db->close (&conn);
    }
}

//  pg_terminate_backend in the middle of a batch: the error is transient,
//  nothing of the batch is kept, the next begin connects again
Test (pgdb, terminated_backend)
{
    s_database ("terminated");
    void *conn = s_open (s_conninfo);
    herald_projection_position_t position;
    bool found, retry;
    char message [256], sql [128];
    s_begin_read (&conn, s_conninfo, "herald_projection", "p", &position, &found);
    s_write_commit (conn, "herald_projection", "p", 5);

    s_begin_read (&conn, s_conninfo, "herald_projection", "p", &position, &found);
    cr_assert_eq (position.seq, 5u);
    PGresult *result = PQexec ((PGconn *) conn, "CREATE TABLE effects (n int)");
    cr_assert_eq (PQresultStatus (result), PGRES_COMMAND_OK);
    PQclear (result);
    snprintf (sql, sizeof sql, "SELECT pg_terminate_backend (%d)", PQbackendPID (conn));
    s_sql (s_conninfo, sql, NULL, 0);
    herald_projection_position_t next = { 6, 1, 0 };
    herald_err rc = db->position_write (conn, "herald_projection", "p", &next, &retry,
                                        message, sizeof message);
    cr_assert_neq (rc, HERALD_OK);
    cr_assert (retry, "a terminated backend is transient: %s", message);
    cr_assert (strstr (message, "PostgreSQL"), "%s", message);
    db->rollback (conn);

    //  The next batch: connected again, the row as before, no effects
    s_begin_read (&conn, s_conninfo, "herald_projection", "p", &position, &found);
    cr_assert (found);
    cr_assert_eq (position.seq, 5u);
    db->rollback (conn);
    char out [16];
    s_sql (s_conninfo, "SELECT count(*) FROM pg_tables WHERE tablename = 'effects'", out,
           sizeof out);
    cr_assert_str_eq (out, "0");

    //  Terminated while idle between batches: the begin reconnects at once
    snprintf (sql, sizeof sql, "SELECT pg_terminate_backend (%d)", PQbackendPID (conn));
    s_sql (s_conninfo, sql, NULL, 0);
    s_begin_read (&conn, s_conninfo, "herald_projection", "p", &position, &found);
    cr_assert_eq (position.seq, 5u);
    s_write_commit (conn, "herald_projection", "p", 7);
    db->close (&conn);
}

//  A COMMIT on a connection lost during the commit: uncertain, transient;
//  the row read next says what happened.  Here: terminated before the
//  COMMIT reaches the server, so nothing is committed.
Test (pgdb, commit_lost)
{
    s_database ("commitlost");
    void *conn = s_open (s_conninfo);
    herald_projection_position_t position;
    bool found, retry;
    char message [256], sql [128];
    s_begin_read (&conn, s_conninfo, "herald_projection", "p", &position, &found);
    herald_projection_position_t next = { 9, 1, 0 };
    s_ok (db->position_write (conn, "herald_projection", "p", &next, &retry, message,
                              sizeof message), "write", message);
    snprintf (sql, sizeof sql, "SELECT pg_terminate_backend (%d)", PQbackendPID (conn));
    s_sql (s_conninfo, sql, NULL, 0);
    cr_assert_neq (db->commit (conn, &retry, message, sizeof message), HERALD_OK);
    cr_assert (retry, "%s", message);
    db->rollback (conn);
    s_begin_read (&conn, s_conninfo, "herald_projection", "p", &position, &found);
    cr_assert_not (found);
    db->rollback (conn);
    db->close (&conn);
}

//  A statement of the batch failed (the apply went on): COMMIT is refused,
//  not reported done (libpq answers it with ROLLBACK and success)
Test (pgdb, aborted_transaction_is_no_commit)
{
    s_database ("aborted");
    void *conn = s_open (s_conninfo);
    herald_projection_position_t position;
    bool found, retry;
    char message [256];
    s_begin_read (&conn, s_conninfo, "herald_projection", "p", &position, &found);
    herald_projection_position_t next = { 3, 1, 0 };
    s_ok (db->position_write (conn, "herald_projection", "p", &next, &retry, message,
                              sizeof message), "write", message);
    PQclear (PQexec ((PGconn *) conn, "SELECT * FROM no_such_table"));
    cr_assert_neq (db->commit (conn, &retry, message, sizeof message), HERALD_OK);
    cr_assert_not (retry);
    cr_assert (strstr (message, "statement of this transaction failed"), "%s", message);
    db->rollback (conn);
    s_begin_read (&conn, s_conninfo, "herald_projection", "p", &position, &found);
    cr_assert_not (found, "the batch of an aborted transaction was committed");
    db->rollback (conn);
    db->close (&conn);
}

//  bigint: 2^63-1 round trips; 2^63 is refused before anything is written;
//  a negative value in the row was not written by Herald
Test (pgdb, bigint_limits)
{
    s_database ("bigint");
    void *conn = s_open (s_conninfo);
    herald_projection_position_t position;
    bool found, retry;
    char message [256];
    s_begin_read (&conn, s_conninfo, "herald_projection", "p", &position, &found);
    herald_projection_position_t top = { INT64_MAX, INT64_MAX, INT64_MAX };
    s_ok (db->position_write (conn, "herald_projection", "p", &top, &retry, message,
                              sizeof message), "write", message);
    s_ok (db->commit (conn, &retry, message, sizeof message), "commit", message);
    s_begin_read (&conn, s_conninfo, "herald_projection", "p", &position, &found);
    cr_assert (found);
    cr_assert_eq (position.seq, (uint64_t) INT64_MAX);
    cr_assert_eq (position.lineage, (uint64_t) INT64_MAX);
    cr_assert_eq (position.until_ts, (uint64_t) INT64_MAX);
    for (int field = 0; field < 3; field++) {
        herald_projection_position_t beyond = { 1, 1, 1 };
        uint64_t *value = field == 0? &beyond.seq: field == 1? &beyond.lineage
                                                             : &beyond.until_ts;
        *value = (uint64_t) INT64_MAX + 1;
        herald_err rc = db->position_write (conn, "herald_projection", "p", &beyond, &retry,
                                            message, sizeof message);
        cr_assert_eq (rc, HERALD_ERR_INVALID);
        cr_assert_not (retry);
        cr_assert (strstr (message, "beyond bigint"), "%s", message);
    }
    db->rollback (conn);
    s_sql (s_conninfo, "UPDATE herald_projection SET seq = -1", NULL, 0);
    s_ok (db->begin (&conn, s_conninfo, &retry, message, sizeof message), "begin", message);
    herald_err rc = db->position_read (conn, "herald_projection", "p", &position, &found,
                                       &retry, message, sizeof message);
    cr_assert_eq (rc, HERALD_ERR_CORRUPT, "%s", message);
    cr_assert_not (found);
    db->rollback (conn);
    db->close (&conn);
}

//  The table's name is an identifier, quoted: any text is a name, never SQL
Test (pgdb, table_name_quoted)
{
    s_database ("quoted");
    const char *table = "Views \"x\"; DROP TABLE keep; --";
    s_sql (s_conninfo, "CREATE TABLE keep (n int)", NULL, 0);
    void *conn = s_open (s_conninfo);
    herald_projection_position_t position;
    bool found;
    s_begin_read (&conn, s_conninfo, table, "p", &position, &found);
    s_write_commit (conn, table, "p", 4);
    s_begin_read (&conn, s_conninfo, table, "p", &position, &found);
    cr_assert (found);
    cr_assert_eq (position.seq, 4u);
    db->rollback (conn);
    char out [128];
    s_sql (s_conninfo, "SELECT string_agg (tablename, ',' ORDER BY tablename) FROM "
           "pg_tables WHERE schemaname = 'public'", out, sizeof out);
    cr_assert_str_eq (out, "Views \"x\"; DROP TABLE keep; --,keep");
    db->close (&conn);
}

//  Another writer updated the row after a REPEATABLE READ batch took its
//  snapshot: SQLSTATE 40001, transient
Test (pgdb, serialization_failure_is_transient)
{
    s_database ("serial");
    void *conn = s_open (s_conninfo);
    herald_projection_position_t position;
    bool found, retry;
    char message [256];
    s_begin_read (&conn, s_conninfo, "herald_projection", "p", &position, &found);
    s_write_commit (conn, "herald_projection", "p", 1);
    s_ok (db->begin (&conn, s_conninfo, &retry, message, sizeof message), "begin", message);
    PQclear (PQexec ((PGconn *) conn, "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ"));
    PQclear (PQexec ((PGconn *) conn, "SELECT count(*) FROM herald_projection"));
    s_sql (s_conninfo, "UPDATE herald_projection SET seq = 2", NULL, 0);
    herald_err rc = db->position_read (conn, "herald_projection", "p", &position, &found,
                                       &retry, message, sizeof message);
    cr_assert_neq (rc, HERALD_OK);
    cr_assert (retry, "%s", message);
    cr_assert (strstr (message, "40001"), "%s", message);
    db->rollback (conn);
    db->close (&conn);
}

//  A deadlock between an apply's statement of one process and the
//  projection's lock taken by another: SQLSTATE 40P01, transient
typedef struct {
    void *conn;
    herald_err rc;
    bool retry;
    char message [256];
} s_reader_t;

static void *
s_reader_run (void *arg)
{
    s_reader_t *self = (s_reader_t *) arg;
    herald_projection_position_t position;
    bool found;
    self->rc = db->position_read (self->conn, "herald_projection", "p", &position, &found,
                                  &self->retry, self->message, sizeof self->message);
    return NULL;
}

Test (pgdb, deadlock_is_transient)
{
    s_database ("deadlock");
    s_sql (s_conninfo, "CREATE TABLE stock (sku text PRIMARY KEY, n int); "
           "INSERT INTO stock VALUES ('a', 0)", NULL, 0);
    void *a = s_open (s_conninfo), *b = s_open (s_conninfo);
    bool retry, found;
    char message [256];
    herald_projection_position_t position;
    //  a: a batch that touched the row 'a' (its deadlock check comes first)
    s_ok (db->begin (&a, s_conninfo, &retry, message, sizeof message), "begin", message);
    PQclear (PQexec ((PGconn *) a, "SET deadlock_timeout = '100ms'"));
    PQclear (PQexec ((PGconn *) a, "UPDATE stock SET n = n + 1 WHERE sku = 'a'"));
    //  b: holds the projection's lock
    s_begin_read (&b, s_conninfo, "herald_projection", "p", &position, &found);
    PQclear (PQexec ((PGconn *) b, "SET deadlock_timeout = '60s'"));
    //  a waits for the projection's lock; b then waits for the row 'a'
    s_reader_t reader = { .conn = a };
    pthread_t thread;
    cr_assert_eq (pthread_create (&thread, NULL, s_reader_run, &reader), 0);
    s_wait_for_waiter (s_conninfo, 1);
    PGresult *result = PQexec ((PGconn *) b, "UPDATE stock SET n = n + 1 WHERE sku = 'a'");
    cr_assert_eq (PQresultStatus (result), PGRES_COMMAND_OK, "%s",
                  PQresultErrorMessage (result));
    PQclear (result);
    pthread_join (thread, NULL);
    cr_assert_neq (reader.rc, HERALD_OK);
    cr_assert (reader.retry, "%s", reader.message);
    cr_assert (strstr (reader.message, "40P01"), "%s", reader.message);
    db->rollback (a);
    db->rollback (b);
    db->close (&a);
    db->close (&b);
}

//  Errors that are not transient: PostgreSQL's words, retry false
Test (pgdb, other_errors_are_not_transient)
{
    s_database ("others");
    void *conn = NULL;
    bool retry = true;
    char message [256];
    //  Not a connection string at all
    herald_err rc = db->open (&conn, "this is not a conninfo", &retry, message,
                              sizeof message);
    cr_assert_eq (rc, HERALD_ERR_INVALID);
    cr_assert_not (retry);
    cr_assert (strstr (message, "not a connection string"), "%s", message);
    cr_assert_null (conn);
    //  A privilege: a role that may not create the position table
    s_sql (s_conninfo, "CREATE ROLE reader LOGIN; REVOKE CREATE ON SCHEMA public FROM "
           "PUBLIC", NULL, 0);
    char conninfo [300];
    snprintf (conninfo, sizeof conninfo, "%s user=reader", s_conninfo);
    conn = s_open (conninfo);
    s_ok (db->begin (&conn, conninfo, &retry, message, sizeof message), "begin", message);
    rc = db->table_ensure (conn, "herald_projection", &retry, message, sizeof message);
    cr_assert_neq (rc, HERALD_OK);
    cr_assert_not (retry);
    cr_assert (strstr (message, "permission denied") && strstr (message, "42501"), "%s",
               message);
    db->rollback (conn);
    db->close (&conn);
    s_sql (s_conninfo, "DROP ROLE reader", NULL, 0);
}

//  The server stopped: begin fails, transient (open fails at once), with
//  libpq's words; started again (same port), the next begin reconnects
Test (pgdb, server_restart, .timeout = 60)
{
    pgu_server_t server;
    cr_assert_eq (pgu_server_start (&server), 0, "%s", server.error);
    void *conn = s_open (server.conninfo);
    herald_projection_position_t position;
    bool found, retry;
    char message [256];
    s_begin_read (&conn, server.conninfo, "herald_projection", "p", &position, &found);
    s_write_commit (conn, "herald_projection", "p", 11);
    cr_assert_eq (pgu_server_stop (&server), 0, "%s", server.error);

    herald_err rc = db->begin (&conn, server.conninfo, &retry, message, sizeof message);
    cr_assert_neq (rc, HERALD_OK);
    cr_assert (retry, "%s", message);
    void *other = NULL;
    //  At open: an error at once (herald_projection_new fails), libpq's words
    rc = db->open (&other, server.conninfo, &retry, message, sizeof message);
    cr_assert_neq (rc, HERALD_OK);
    cr_assert_not (retry, "%s", message);
    cr_assert (strstr (message, "cannot connect") && strstr (message, "refused"), "%s",
               message);

    cr_assert_eq (pgu_server_restart (&server), 0, "%s", server.error);
    s_begin_read (&conn, server.conninfo, "herald_projection", "p", &position, &found);
    cr_assert (found);
    cr_assert_eq (position.seq, 11u);
    s_write_commit (conn, "herald_projection", "p", 12);
    //  kill -9 of the server: the last commit survives (its WAL replays)
    cr_assert_eq (pgu_server_kill (&server), 0, "%s", server.error);
    cr_assert_eq (pgu_server_restart (&server), 0, "%s", server.error);
    s_begin_read (&conn, server.conninfo, "herald_projection", "p", &position, &found);
    cr_assert_eq (position.seq, 12u);
    db->rollback (conn);
    db->close (&conn);
    pgu_server_destroy (&server);
}
