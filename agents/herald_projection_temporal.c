/*  =========================================================================
    herald_projection_temporal - a read model as of a time (until_ts)

    herald_projection_start of a projection with until_ts: a REPLAY from
    the row's seq + 1 with until_ts (every event with ts <= until_ts, the
    broker's ingest time), on the calling thread, in transactions of
    batch_max events (herald_projection_tx.c's rules).  It never goes live.

    A transient error (busy, RETRY from apply) rolls the open transaction
    back and replays again from the row, after a backoff; an apply error
    rolls it back, applies and commits the events before the failing one
    again (a REPLAY up to its seq - 1: their ts are at most its ts), and
    stops (FAILED).  Events are converted to the declared schemas with the
    agent's casters (herald_agent_convert), as a subscription would.
    =========================================================================
*/

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "herald_projection_priv.h"

#define RETRIES_MAX         100     //  transient failures in a row, then FAILED
#define RETRY_PAUSE_MAX     1000    //  ms, as the agent's default RETRY cap

typedef struct {
    herald_projection_t *self;
    herald_projection_tx_t tx;
    herald_projection_fault_t fault;
    bool faulted;                   //  the database failed: fault says how
    int verdict;                    //  what apply returned, when not OK
    uint64_t verdict_seq;           //  at which event
    uint64_t progress;              //  events committed by this run
} s_run_t;

//  The schema event must reach apply at (0: as stored).
static uint64_t
s_wanted (herald_projection_t *self, const herald_delivery_t *event)
{
    if (!event->type)
        return 0;
    for (size_t index = 0; index < self->options.want_count; index++) {
        const herald_schema_want_t *want = &self->options.wants [index];
        if (strlen (want->type) == event->type_len
        &&  memcmp (want->type, event->type, event->type_len) == 0)
            return want->schema;
    }
    return self->options.default_schema;
}

//  Apply event in the run's transaction (begun when none is open), through
//  the declared schemas; commit every batch_max events.
static int
s_apply (s_run_t *run, const herald_delivery_t *event)
{
    herald_projection_t *self = run->self;
    herald_delivery_t view = *event;
    void *data = NULL;
    uint64_t want = s_wanted (self, event);
    if (want && want != event->schema) {
        size_t len;
        herald_err rc = herald_agent_convert (self->agent, event, want, &data, &len);
        if (rc != HERALD_OK) {
            char reason [HERALD_PROJECTION_MESSAGE];
            snprintf (reason, sizeof reason, "%s", herald_agent_last_error ());
            if (self->options.on_incompatible == HERALD_SCHEMA_STOP) {
                run->verdict = HERALD_ERR_UNSUPPORTED;
                run->verdict_seq = event->seq;
                snprintf (run->fault.message, sizeof run->fault.message, "%s", reason);
                return HERALD_ERR_UNSUPPORTED;
            }
            if (self->options.on_incompatible == HERALD_SCHEMA_PARK)
                self->options.on_parked (event, reason, self->options.on_parked_arg);
            return HERALD_OK;               //  skipped (or parked): not applied
        }
        view.data = data;
        view.data_len = len;
        view.schema = want;
    }
    if (!run->tx.open
    &&  herald_projection_tx_begin (self, &run->tx, &run->fault) != HERALD_OK) {
        free (data);
        run->faulted = true;
        return run->fault.code;
    }
    int verdict = herald_projection_tx_event (self, &run->tx, &view);
    free (data);
    if (verdict != HERALD_OK) {
        herald_projection_tx_rollback (self, &run->tx);
        run->verdict = verdict;
        run->verdict_seq = event->seq;
        return verdict == HERALD_RETRY? HERALD_ERR_INTERNAL: verdict;
    }
    if (run->tx.applied + run->tx.skipped >= self->batch_max) {
        uint64_t count = run->tx.applied;
        if (herald_projection_tx_commit (self, &run->tx, &run->fault) != HERALD_OK) {
            run->faulted = true;
            return run->fault.code;
        }
        run->progress += count;
    }
    return HERALD_OK;
}

static int
s_on_event (const herald_delivery_t *event, void *arg)
{
    int rc = s_apply ((s_run_t *) arg, event);
    //  A replay handler's answer stops the replay whatever it is: never
    //  HERALD_OK for a failure
    return rc == HERALD_OK || rc > 0? rc: HERALD_ERR_INTERNAL;
}

//  Replay range into the run and commit what is left open.
static herald_err
s_replay (s_run_t *run, const herald_range_t *range, int timeout_ms)
{
    herald_projection_t *self = run->self;
    uint64_t last = 0;
    herald_err rc = herald_agent_replay (self->agent, range, s_on_event, run, timeout_ms,
                                         &last);
    if (rc == HERALD_OK && run->tx.open) {
        uint64_t count = run->tx.applied;
        if (herald_projection_tx_commit (self, &run->tx, &run->fault) != HERALD_OK) {
            run->faulted = true;
            return run->fault.code;
        }
        run->progress += count;
    }
    if (rc != HERALD_OK)
        herald_projection_tx_rollback (self, &run->tx);
    return rc;
}

//  apply failed at run->verdict_seq: commit the events before it that the
//  row does not have, then stop.
static herald_err
s_failed (s_run_t *run, int timeout_ms)
{
    herald_projection_t *self = run->self;
    int verdict = run->verdict;
    uint64_t seq = run->verdict_seq;
    char why [HERALD_PROJECTION_MESSAGE];
    snprintf (why, sizeof why, "%s", run->fault.message);
    herald_projection_position_t stored;
    herald_err rc = herald_projection_tx_peek (self, &stored, &run->fault);
    if (rc == HERALD_OK && seq > stored.seq + 1) {
        herald_range_t range = { .from = stored.seq + 1, .to = seq - 1,
                                 .prefixes = self->options.prefixes };
        run->verdict = 0;
        rc = s_replay (run, &range, timeout_ms);
        if (rc == HERALD_OK && run->verdict)
            rc = HERALD_ERR_INTERNAL;       //  an event before it failed now
    }
    if (rc != HERALD_OK)
        return herald_projection_fail (self, rc, "projection %s: apply returned %d at seq "
                                       "%" PRIu64 ", and the events before it could not be "
                                       "committed: %s", self->name, verdict, seq,
                                       run->faulted? run->fault.message
                                                   : herald_agent_last_error ());
    if (verdict == HERALD_ERR_UNSUPPORTED && why [0])
        return herald_projection_fail (self, verdict, "projection %s: seq %" PRIu64 ": %s",
                                       self->name, seq, why);
    return herald_projection_fail (self, verdict, "projection %s: apply returned %d at seq "
                                   "%" PRIu64 " (the events before it are committed)",
                                   self->name, verdict, seq);
}

herald_err
herald_projection_temporal_run (herald_projection_t *self, int timeout_ms)
{
    int pause = 10;
    int failures = 0;
    while (true) {
        s_run_t run;
        memset (&run, 0, sizeof run);
        run.self = self;
        herald_projection_position_t stored;
        herald_err rc = herald_projection_tx_peek (self, &stored, &run.fault);
        if (rc != HERALD_OK)
            run.faulted = true;
        else {
            herald_range_t range = { .from = stored.seq + 1,
                                     .until_ts = self->options.until_ts,
                                     .prefixes = self->options.prefixes };
            rc = s_replay (&run, &range, timeout_ms);
        }
        if (rc == HERALD_OK) {
            herald_projection_set_state (self, HERALD_PROJECTION_DONE);
            return HERALD_OK;
        }
        bool transient = run.faulted? run.fault.retry: run.verdict == HERALD_RETRY;
        if (run.verdict && run.verdict != HERALD_RETRY)
            return s_failed (&run, timeout_ms);
        if (!transient) {
            if (run.faulted)
                return herald_projection_fail (self, run.fault.code, "projection %s: %s",
                                               self->name, run.fault.message);
            return herald_projection_fail (self, rc, "projection %s: the replay stopped: %s",
                                           self->name, herald_agent_last_error ());
        }
        if (run.progress)
            failures = 0;
        if (++failures > RETRIES_MAX)
            return herald_projection_fail (self, run.faulted? run.fault.code: HERALD_ERR_TIMEOUT,
                                           "projection %s: still failing after %d retries: %s",
                                           self->name, RETRIES_MAX, run.faulted
                                           ? run.fault.message: "apply returned RETRY");
        herald_projection_sleep_ms (pause);
        pause = pause * 2 < RETRY_PAUSE_MAX? pause * 2: RETRY_PAUSE_MAX;
    }
}
