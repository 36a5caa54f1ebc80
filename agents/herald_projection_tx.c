/*  =========================================================================
    herald_projection_tx - one transaction of a projection

    The rules every backend shares, in one place: begin a write transaction
    that locks the projection's row, skip every event at or below the seq
    it holds, apply the rest, write the seq of the last one applied with
    the lineage and until_ts, commit.  The backend (SQLite, PostgreSQL)
    only says how to begin, read, write, commit and roll back, and whether
    an error is transient (herald_projection_backend.h).

    A commit whose outcome is unknown (a connection lost during COMMIT) is
    reported transient; the batch is offered again, and the row read at
    the next begin says what was committed: events at or below it are
    skipped, never applied twice.
    =========================================================================
*/

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include "herald_projection_priv.h"

static herald_err
s_fault (herald_projection_fault_t *fault, herald_err code)
{
    fault->code = code;
    return code;
}

herald_err
herald_projection_tx_begin (herald_projection_t *self, herald_projection_tx_t *tx,
                            herald_projection_fault_t *fault)
{
    memset (tx, 0, sizeof *tx);
    memset (fault, 0, sizeof *fault);
    herald_err rc = self->db->begin (&self->conn, self->database, &fault->retry,
                                     fault->message, sizeof fault->message);
    if (rc != HERALD_OK) {
        //  Busy: the batch is not applied now, as if rolled back
        pthread_mutex_lock (&self->lock);
        self->status.rollbacks++;
        pthread_mutex_unlock (&self->lock);
        return s_fault (fault, rc);
    }
    tx->open = true;
    bool found;
    rc = self->db->position_read (self->conn, self->table, self->name, &tx->stored, &found,
                                  &fault->retry, fault->message, sizeof fault->message);
    if (rc == HERALD_OK && !found)
        tx->stored.until_ts = self->options.until_ts;
    if (rc == HERALD_OK && tx->stored.until_ts != self->options.until_ts) {
        snprintf (fault->message, sizeof fault->message, "the row of projection %s in %s "
                  "says until_ts %" PRIu64 ", this projection's is %" PRIu64 ": another "
                  "process changed it", self->name, self->table, tx->stored.until_ts,
                  self->options.until_ts);
        fault->retry = false;
        rc = HERALD_ERR_INVALID;
    }
    if (rc != HERALD_OK) {
        herald_projection_tx_rollback (self, tx);
        return s_fault (fault, rc);
    }
    return HERALD_OK;
}

int
herald_projection_tx_event (herald_projection_t *self, herald_projection_tx_t *tx,
                            const herald_delivery_t *event)
{
    if (event->seq <= tx->stored.seq || event->seq <= tx->last) {
        tx->skipped++;
        return HERALD_OK;
    }
    int verdict = self->options.apply (self->conn, event, self->options.arg);
    if (verdict == HERALD_OK) {
        tx->applied++;
        tx->last = event->seq;
    }
    else
    if (verdict != HERALD_RETRY && self->db->lost && self->db->lost (self->conn))
        verdict = HERALD_RETRY;     //  the server went away under it: reconnect, again
    return verdict;
}

herald_err
herald_projection_tx_commit (herald_projection_t *self, herald_projection_tx_t *tx,
                             herald_projection_fault_t *fault)
{
    memset (fault, 0, sizeof *fault);
    herald_projection_position_t position = tx->stored;
    herald_err rc = HERALD_OK;
    if (tx->last > tx->stored.seq) {
        position.seq = tx->last;
        position.lineage = self->lineage;
        position.until_ts = self->options.until_ts;
        rc = self->db->position_write (self->conn, self->table, self->name, &position,
                                       &fault->retry, fault->message, sizeof fault->message);
    }
    if (rc == HERALD_OK)
        rc = self->db->commit (self->conn, &fault->retry, fault->message,
                               sizeof fault->message);
    if (rc != HERALD_OK) {
        herald_projection_tx_rollback (self, tx);
        return s_fault (fault, rc);
    }
    tx->open = false;
    pthread_mutex_lock (&self->lock);
    self->status.position = position.seq;
    self->status.lineage = position.lineage;
    self->status.applied += tx->applied;
    self->status.skipped += tx->skipped;
    self->status.transactions++;
    pthread_cond_broadcast (&self->changed);
    pthread_mutex_unlock (&self->lock);
    return HERALD_OK;
}

void
herald_projection_tx_rollback (herald_projection_t *self, herald_projection_tx_t *tx)
{
    if (!tx->open)
        return;
    self->db->rollback (self->conn);
    tx->open = false;
    pthread_mutex_lock (&self->lock);
    self->status.rollbacks++;
    pthread_mutex_unlock (&self->lock);
}

herald_err
herald_projection_tx_peek (herald_projection_t *self, herald_projection_position_t *position,
                           herald_projection_fault_t *fault)
{
    herald_projection_tx_t tx;
    herald_err rc = herald_projection_tx_begin (self, &tx, fault);
    if (rc == HERALD_OK) {
        *position = tx.stored;
        self->db->rollback (self->conn);        //  read only: not a rollback to count
    }
    return rc;
}

int
herald_projection_fail (herald_projection_t *self, int code, const char *format, ...)
{
    char message [HERALD_PROJECTION_MESSAGE];
    va_list args;
    va_start (args, format);
    vsnprintf (message, sizeof message, format, args);
    va_end (args);
    pthread_mutex_lock (&self->lock);
    self->status.state = HERALD_PROJECTION_FAILED;
    self->status.error = code;
    snprintf (self->status.message, sizeof self->status.message, "%s", message);
    pthread_cond_broadcast (&self->changed);
    pthread_mutex_unlock (&self->lock);
    herald_agent_set_last_error (code > 0? (herald_err) code: HERALD_ERR_INTERNAL, message);
    return code;
}

void
herald_projection_set_state (herald_projection_t *self, herald_projection_state_t state)
{
    pthread_mutex_lock (&self->lock);
    self->status.state = state;
    if (state != HERALD_PROJECTION_FAILED) {
        self->status.error = 0;
        self->status.message [0] = 0;
    }
    pthread_cond_broadcast (&self->changed);
    pthread_mutex_unlock (&self->lock);
}

void
herald_projection_sleep_ms (int ms)
{
    struct timespec pause = { ms / 1000, (long) (ms % 1000) * 1000000 };
    nanosleep (&pause, NULL);
}
