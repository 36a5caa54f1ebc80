/*  =========================================================================
    herald_projection_backend.h - what a projection needs of a database

    herald_projection.c (the core: subscription, batches, the position
    rules) drives a database only through these operations; one file per
    database implements them (herald_projection_sqlite.c,
    herald_projection_pg.c).  Private to libherald_projection.

    Every operation returns HERALD_OK or an error with message filled
    (the database's own words, and what was being done).  An error is
    *transient* (retry_p set true) when the same work may succeed later
    without anyone changing anything: SQLite busy/locked, PostgreSQL
    serialization failure, deadlock, or a lost connection (the backend
    reconnects on its next begin).  The core rolls back and retries those
    (RETRY) and stops on the others.
    =========================================================================
*/

#ifndef HERALD_PROJECTION_BACKEND_H_INCLUDED
#define HERALD_PROJECTION_BACKEND_H_INCLUDED

#include "herald_projection.h"

typedef struct {
    uint64_t seq;                   //  the last seq applied (0: none)
    uint64_t lineage;               //  the broker lineage it was applied in
    uint64_t until_ts;              //  0: live
} herald_projection_position_t;

typedef struct {
    const char *name;               //  "sqlite", "postgres"
    //  Connect (create the SQLite file when missing).  *conn_p is what
    //  apply/setup/reset get as db (sqlite3 *, PGconn *) and is valid
    //  until close; after a lost connection the backend replaces it in
    //  begin, so the core reads conn_p again after each begin.
    herald_err (*open) (void **conn_p, const char *database, bool *retry_p,
                        char *message, size_t size);
    void (*close) (void **conn_p);
    //  A write transaction that excludes every other writer of this
    //  projection's row until commit or rollback (SQLite BEGIN IMMEDIATE;
    //  PostgreSQL BEGIN, then the row read FOR UPDATE by position_read)
    herald_err (*begin) (void **conn_p, const char *database, bool *retry_p,
                         char *message, size_t size);
    herald_err (*commit) (void *conn, bool *retry_p, char *message, size_t size);
    //  Never fails in a way the core can act on (a lost connection rolls
    //  back by itself)
    void (*rollback) (void *conn);
    //  In a transaction: create the position table when missing.  Columns:
    //  name text primary key, seq, lineage, until_ts (64-bit integers),
    //  updated_ns (Unix ns of the commit that wrote the row)
    herald_err (*table_ensure) (void *conn, const char *table, bool *retry_p,
                                char *message, size_t size);
    //  In a transaction: the row of name, locked for this transaction;
    //  *found_p false (and position zeroed) when there is none
    herald_err (*position_read) (void *conn, const char *table, const char *name,
                                 herald_projection_position_t *position, bool *found_p,
                                 bool *retry_p, char *message, size_t size);
    //  In a transaction: insert or update the row of name
    herald_err (*position_write) (void *conn, const char *table, const char *name,
                                  const herald_projection_position_t *position,
                                  bool *retry_p, char *message, size_t size);
    //  May be NULL.  True when conn's connection to the server is gone:
    //  an error the apply function returned then is transient whatever it
    //  says (its statement failed with the connection, not on its merits)
    bool (*lost) (void *conn);
} herald_projection_db_t;

//  The backends this build has (NULL when it lacks one)
extern const herald_projection_db_t herald_projection_sqlite;
extern const herald_projection_db_t herald_projection_postgres;

#endif
