/*  =========================================================================
    herald_projection.h - read models with exactly-once effects

    A projection builds a read model (tables in SQLite or PostgreSQL) from
    the events of some topic prefixes.  It keeps its position (the last seq
    it applied) in a table of the same database and writes it in the same
    transaction as the effects of the events up to that seq: one
    transaction per batch.  A kill -9 at any moment leaves the database as
    it was after some whole batch, position included, and the projection
    resumes from that position: no effect is lost or applied twice, and
    there is no "redelivered" caveat for the apply function to handle.

    It runs on an agent (herald.h) and uses only the agent's public API: a
    subscription whose position the caller keeps
    (herald_subscribe_options_t.caller_position).  It lives in its own
    library, libherald_projection (pkg-config: herald-projection), so that
    a service that has no read model does not link SQLite or libpq.

    docs/projections.md is the guide: the position table, rebuilds,
    temporal projections (as of a time), errors, and the worked examples.
    =========================================================================
*/

#ifndef HERALD_PROJECTION_H_INCLUDED
#define HERALD_PROJECTION_H_INCLUDED

#include "herald.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct _herald_projection_t herald_projection_t;

typedef enum {
    HERALD_PROJECTION_SQLITE = 1,   //  database: a file path (created when missing)
    HERALD_PROJECTION_POSTGRES      //  database: a libpq connection string
} herald_projection_backend_t;

//  db is the open connection of the projection (sqlite3 * or PGconn *),
//  inside the transaction of the batch: run statements on it, never
//  BEGIN, COMMIT, ROLLBACK or close it.  Called on the agent's delivery
//  thread (or the dispatching thread in dispatch mode).
//
//  apply: one event (converted to the declared schemas, as a handler gets
//  it).  Returns HERALD_OK; HERALD_RETRY to roll back the batch and offer
//  it again after the agent's RETRY backoff; anything else rolls back the
//  batch, applies and commits the events before this one, and stops the
//  projection (state FAILED, the code and message in its status).
typedef int (herald_projection_apply_fn) (void *db, const herald_delivery_t *event,
                                          void *arg);

//  setup: create the read model (CREATE TABLE IF NOT EXISTS ...).  Called
//  in a transaction each time the projection opens, before anything is
//  applied.  reset: drop it (for herald_projection_rebuild), in the
//  transaction that also resets the position.  Same returns as apply
//  (RETRY is an error here).
typedef int (herald_projection_setup_fn) (void *db, void *arg);

typedef struct {
    herald_projection_backend_t backend;
    const char *database;
    //  The topic prefixes projected (NULL-terminated; required)
    const char *const *prefixes;
    herald_projection_setup_fn *setup;  //  may be NULL
    herald_projection_setup_fn *reset;  //  NULL: rebuild refuses (nothing to drop)
    herald_projection_apply_fn *apply;  //  required
    void *arg;
    //  Schemas, as in herald_subscribe_options_t (PARK needs on_parked)
    const herald_schema_want_t *wants;
    size_t want_count;
    uint64_t default_schema;
    herald_schema_policy_t on_incompatible;
    herald_parked_fn *on_parked;
    void *on_parked_arg;
    //  0: follow the log, live.  Otherwise a temporal projection: the read
    //  model as of that instant (Unix ns, inclusive, the broker's ts):
    //  herald_projection_start applies every event with ts <= until_ts and
    //  returns; it never goes live.  Kept in the position table: opening
    //  the same name with another until_ts is HERALD_ERR_INVALID (rebuild,
    //  or use another name or database).
    uint64_t until_ts;
    //  Events per transaction: live, at most one agent delivery batch
    //  (1-256); temporal, this many (1-100000).  0: 256 live, 10000 temporal.
    size_t batch_max;
    //  The position table's name; NULL: "herald_projection".  One table
    //  holds the rows of every projection of a database (key: name).
    const char *table;
} herald_projection_options_t;

void
    herald_projection_options_init (herald_projection_options_t *options);
size_t
    herald_projection_options_size (void);

//  Open (or create) projection name (1-128 bytes of [A-Za-z0-9._-]) on
//  agent: connect to the database, create the position table and the
//  projection's row when missing, run setup.  Does not start it.  NULL on
//  error, with herald_agent_last_errcode () / herald_agent_last_error ()
//  set: HERALD_ERR_INVALID (bad options; until_ts not the one stored),
//  HERALD_ERR_IO (the database cannot be opened or written: its message),
//  HERALD_ERR_UNSUPPORTED (a backend this build lacks).  The agent must
//  outlive the projection; an agent without state_dir will do.
herald_projection_t *
    herald_projection_new (herald_agent_t *agent, const char *name,
                           const herald_projection_options_t *options);

//  Stop it (as herald_projection_stop) and close the database.  Nulls *self_p.
void
    herald_projection_destroy (herald_projection_t **self_p);

//  Live: subscribe from the stored position + 1 and return; the events are
//  applied on the agent's delivery thread.  Temporal: apply every event up
//  to until_ts from the stored position, then return (state DONE), or
//  return the error that stopped it.  Before anything, the broker is asked
//  for its head and lineage: a stored position beyond the head, or a
//  lineage (the broker's count of accepted losses) other than the one
//  stored, is HERALD_ERR_DATA_LOST (the read model has effects of events
//  the broker no longer has: rebuild it); so is a loss reported while
//  running (state FAILED).
herald_err
    herald_projection_start (herald_projection_t *self, int timeout_ms);

//  Unsubscribe (waits for the batch in hand to commit or roll back).
//  HERALD_OK when it was not running.
herald_err
    herald_projection_stop (herald_projection_t *self);

//  Stop, then in one transaction reset (drop the read model) and reset the
//  position to 0, then setup; start again when it was running.  Refused
//  (HERALD_ERR_INVALID) without a reset function.
herald_err
    herald_projection_rebuild (herald_projection_t *self, int timeout_ms);

//  Wait until the committed position is at least seq (HERALD_OK), the
//  projection fails (its error), or timeout_ms passes (HERALD_ERR_TIMEOUT).
herald_err
    herald_projection_wait (herald_projection_t *self, uint64_t seq, int timeout_ms);

typedef enum {
    HERALD_PROJECTION_IDLE = 0,         //  opened, not started (or stopped)
    HERALD_PROJECTION_CATCHING_UP,
    HERALD_PROJECTION_LIVE,
    HERALD_PROJECTION_DONE,             //  temporal: everything up to until_ts applied
    HERALD_PROJECTION_FAILED
} herald_projection_state_t;

typedef struct {
    herald_projection_state_t state;
    uint64_t position;                  //  the last seq committed with its effects
    uint64_t lineage;                   //  the broker lineage stored with it
    uint64_t until_ts;                  //  0: live
    uint64_t applied;                   //  events applied and committed, since new
    uint64_t skipped;                   //  events at or below the position (never applied)
    uint64_t transactions;              //  committed, since new
    uint64_t rollbacks;                 //  batches rolled back (RETRY, busy, errors)
    uint64_t rebuilds;                  //  since new
    int error;                          //  when FAILED
    char message [256];
} herald_projection_status_t;

size_t
    herald_projection_status_size (void);
herald_err
    herald_projection_status (herald_projection_t *self, herald_projection_status_t *status);

#ifdef __cplusplus
}
#endif

#endif
