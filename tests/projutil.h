/*  =========================================================================
    projutil - a non-idempotent read model, and the comparison of two

    The projection tests (tests/test_herald_projection*.c) and the process
    they kill -9 (tests/projection_child.c) project the same read model,
    into SQLite or PostgreSQL alike (the same SQL text for both):

        stock  (sku TEXT PRIMARY KEY, qty BIGINT)       qty = qty + n
        ledger (seq BIGINT PRIMARY KEY, sku, qty, ts)   one row per event
        totals (id INTEGER PRIMARY KEY, total, events)  total = total + n

    from events on topics "<prefix><sku>": n = seq % 7 + 1, so the model
    depends on the log alone.  Applying an event twice adds to stock and
    totals twice, and its ledger INSERT fails (primary key): the apply
    function then returns HERALD_ERR_CONFLICT and the projection FAILS.

    pu_dump writes a read model as text (its rows in key order, and the
    position table's rows without updated_ns); pu_compare says where two
    differ.  The PostgreSQL test reuses both with a conninfo.

    Criterion-free: failures are return values.
    =========================================================================
*/

#ifndef HERALD_PROJUTIL_H_INCLUDED
#define HERALD_PROJUTIL_H_INCLUDED

#include <stdatomic.h>
#include "herald_projection.h"

//  The model's arg (setup, reset, apply)
typedef struct {
    herald_projection_backend_t backend;
    uint64_t fail_seq;              //  apply returns fail_code for it
    int fail_code;
    uint64_t retry_seq;             //  apply returns HERALD_RETRY for it ...
    atomic_uint retry_times;        //  ... this many times
    atomic_uint_fast64_t calls;     //  apply calls (committed or not)
    atomic_uint_fast64_t resets;
    int setup_fails;                //  setup returns this when not 0
} pu_model_t;

herald_projection_setup_fn pu_model_setup;
herald_projection_setup_fn pu_model_reset;
herald_projection_apply_fn pu_model_apply;

//  Run sql on db (a sqlite3 * or PGconn * of backend).  Returns 0, or -1
//  with the database's message in message; -2 for PostgreSQL's transient
//  errors (a lost connection, SQLSTATE 40xxx, 08xxx, 57P0x), which
//  pu_model_apply answers with HERALD_RETRY.
int
    pu_exec (herald_projection_backend_t backend, void *db, const char *sql, char *message,
             size_t size);

//  The read model of database as text (malloc'd, caller frees): the rows
//  of stock, ledger, totals in key order and of the position table
//  `table` (name, seq, lineage, until_ts).  NULL with message on failure.
char *
    pu_dump (herald_projection_backend_t backend, const char *database, const char *table,
             char *message, size_t size);

//  0 when the two read models are identical row for row; else -1 with
//  the first difference (or the failure) in message.
int
    pu_compare (herald_projection_backend_t backend_a, const char *database_a,
                herald_projection_backend_t backend_b, const char *database_b,
                const char *table, char *message, size_t size);

//  One number of database: the first column of the first row of sql, or
//  -1 on failure.
int64_t
    pu_query_int (herald_projection_backend_t backend, const char *database,
                  const char *sql);

#endif
