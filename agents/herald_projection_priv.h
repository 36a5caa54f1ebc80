/*  =========================================================================
    herald_projection_priv - what the projection's files share

    herald_projection.c (lifecycle, options, status, the live batch
    handler), herald_projection_tx.c (one transaction: the rules every
    backend shares) and herald_projection_temporal.c (until_ts: a replay in
    transactions of batch_max).  Private to libherald_projection.
    =========================================================================
*/

#ifndef HERALD_PROJECTION_PRIV_H_INCLUDED
#define HERALD_PROJECTION_PRIV_H_INCLUDED

#include <pthread.h>
#include "herald_projection_backend.h"

#define HERALD_PROJECTION_MESSAGE   256

//  Threads: the fields above `lock` are set by new and then only read,
//  except conn and lineage, which belong to whichever thread runs the
//  projection's transactions: the caller of new, start, rebuild and
//  destroy while it is not subscribed; the agent's delivery thread (or
//  the dispatching thread) while it is.  status is under lock.
struct _herald_projection_t {
    herald_agent_t *agent;
    const herald_projection_db_t *db;
    void *conn;                     //  the backend's connection (sqlite3 *, PGconn *)
    char *name;
    char *database;
    char *table;
    char **prefixes;                //  NULL-terminated, owned
    herald_schema_want_t *wants;    //  types owned
    herald_projection_options_t options;    //  pointers into the owned copies above
    size_t batch_max;
    uint64_t lineage;               //  the broker's, learnt by start
    bool subscribed;                //  owned by the caller's thread

    pthread_mutex_t lock;
    pthread_cond_t changed;
    herald_projection_status_t status;
};

//  One transaction of a batch: the row read at begin, what was done since
typedef struct {
    herald_projection_position_t stored;
    uint64_t last;                  //  the last seq applied in it (0: none)
    uint64_t applied;
    uint64_t skipped;
    bool open;
} herald_projection_tx_t;

//  What a failed step says: a herald_err, transient or not, and why
typedef struct {
    herald_err code;
    bool retry;
    char message [HERALD_PROJECTION_MESSAGE];
} herald_projection_fault_t;

//  Begin a write transaction and read (lock) the row.  A missing row is
//  position 0; a row for another until_ts is HERALD_ERR_INVALID.
herald_err
    herald_projection_tx_begin (herald_projection_t *self, herald_projection_tx_t *tx,
                                herald_projection_fault_t *fault);

//  In tx: skip event when at or below the stored seq, else apply it.
//  Returns what apply returned (HERALD_OK for a skipped one).
int
    herald_projection_tx_event (herald_projection_t *self, herald_projection_tx_t *tx,
                                const herald_delivery_t *event);

//  Write the position (when something was applied) and commit; the
//  status counts it.  On failure the transaction is rolled back.
herald_err
    herald_projection_tx_commit (herald_projection_t *self, herald_projection_tx_t *tx,
                                 herald_projection_fault_t *fault);

//  Roll tx back (counted) when it is open.
void
    herald_projection_tx_rollback (herald_projection_t *self, herald_projection_tx_t *tx);

//  The row as it is (a transaction begun and rolled back), into position.
herald_err
    herald_projection_tx_peek (herald_projection_t *self,
                               herald_projection_position_t *position,
                               herald_projection_fault_t *fault);

//  State FAILED with code and message (also the thread's last error).
//  Returns code.
int
    herald_projection_fail (herald_projection_t *self, int code, const char *format, ...)
    __attribute__ ((format (printf, 3, 4)));

//  Set the state (under lock, waking wait).
void
    herald_projection_set_state (herald_projection_t *self, herald_projection_state_t state);

//  Temporal: apply every event up to until_ts (herald_projection_start).
herald_err
    herald_projection_temporal_run (herald_projection_t *self, int timeout_ms);

//  Sleep ms milliseconds (a retry's backoff).
void
    herald_projection_sleep_ms (int ms);

#endif
