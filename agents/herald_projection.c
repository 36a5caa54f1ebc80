/*  =========================================================================
    herald_projection - read models with exactly-once effects

    A projection on an agent: its options, its database connection, its
    lifecycle (new, start, stop, rebuild, destroy) and the live batch
    handler.  The rules of one transaction are herald_projection_tx.c's,
    temporal projections herald_projection_temporal.c's.

    DESIGN

    Live, the projection is a batch subscription whose position the caller
    keeps (herald_subscribe_options_t.caller_position): it subscribes from
    the seq in its row + 1, and each delivery batch is applied in
    transactions of batch_max events (herald_projection_tx.c), the first
    `done` of them committed.  The handler's answers to the agent:

        all applied and committed       HERALD_OK, handled = count
        transient (busy, lost conn.)    rolled back; HERALD_RETRY, handled = done
        apply returned RETRY            rolled back; HERALD_RETRY, handled = done
        apply returned an error at i    rolled back; events [done, i) applied
                                        again and committed in a second
                                        transaction; FAILED; the error,
                                        handled = i
        any other database error        rolled back; FAILED; HERALD_ERR_IO,
                                        handled = done

    The agent keeps nothing on disk for the subscription: after a kill -9
    the row is the only position, and it moves only with the effects.

    Start asks the broker where it stands before anything: the agent's
    WELCOME gives the lineage (herald_agent_stats), a REPLAY of the stored
    seq alone says whether the broker has it (END's last is that seq only
    when it is at or below the head).  A lineage other than the row's, or
    a seq beyond the head, is HERALD_ERR_DATA_LOST.

    The backend is chosen in s_backend, one line per database.
    =========================================================================
*/

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "herald_projection_priv.h"

#define NAME_MAX_LEN        128
#define TABLE_MAX_LEN       63
#define PREFIXES_MAX        256     //  HWP/1: prefixes per REPLAY
#define LIVE_BATCH_MAX      256     //  the agent's delivery batch
#define TEMPORAL_BATCH_MAX  100000
#define OPEN_RETRIES        50      //  transient errors while opening, ~5 s in all
#define WELCOME_POLL_MS     5

//  The backend of a database kind: NULL when this build lacks it.
static const herald_projection_db_t *
s_backend (herald_projection_backend_t backend)
{
    switch (backend) {
        case HERALD_PROJECTION_SQLITE:
            return &herald_projection_sqlite;
        case HERALD_PROJECTION_POSTGRES:
            return &herald_projection_postgres;
    }
    return NULL;
}

void
herald_projection_options_init (herald_projection_options_t *options)
{
    memset (options, 0, sizeof *options);
    options->backend = HERALD_PROJECTION_SQLITE;
}

size_t
herald_projection_options_size (void)
{
    return sizeof (herald_projection_options_t);
}

size_t
herald_projection_status_size (void)
{
    return sizeof (herald_projection_status_t);
}

static herald_err
s_invalid (const char *format, ...)
{
    char message [HERALD_PROJECTION_MESSAGE];
    va_list args;
    va_start (args, format);
    vsnprintf (message, sizeof message, format, args);
    va_end (args);
    return herald_agent_set_last_error (HERALD_ERR_INVALID, message);
}

static bool
s_name_valid (const char *name)
{
    size_t len = name? strlen (name): 0;
    if (len == 0 || len > NAME_MAX_LEN || name [0] == '.')
        return false;
    for (size_t index = 0; index < len; index++) {
        char c = name [index];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')
          || c == '.' || c == '_' || c == '-'))
            return false;
    }
    return true;
}

//  A table name goes into SQL text (quoted): letters, digits, '_', not a
//  digit first
static bool
s_table_valid (const char *table)
{
    size_t len = strlen (table);
    if (len == 0 || len > TABLE_MAX_LEN || (table [0] >= '0' && table [0] <= '9'))
        return false;
    for (size_t index = 0; index < len; index++) {
        char c = table [index];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')
          || c == '_'))
            return false;
    }
    return true;
}

//  Everything herald_projection_new refuses, checked before any I/O.
static herald_err
s_options_check (herald_agent_t *agent, const char *name,
                 const herald_projection_options_t *options)
{
    if (!agent)
        return s_invalid ("a projection needs an agent");
    if (!s_name_valid (name))
        return s_invalid ("a projection name is 1-%d bytes of [A-Za-z0-9._-], not starting "
                          "with '.'", NAME_MAX_LEN);
    if (!options)
        return s_invalid ("projection %s: no options", name);
    if (options->backend != HERALD_PROJECTION_SQLITE
    &&  options->backend != HERALD_PROJECTION_POSTGRES)
        return s_invalid ("projection %s: unknown backend %d", name, (int) options->backend);
    if (!options->database || !*options->database)
        return s_invalid ("projection %s: no database", name);
    if (!options->apply)
        return s_invalid ("projection %s: no apply function", name);
    size_t count = 0;
    while (options->prefixes && options->prefixes [count] && count <= PREFIXES_MAX)
        if (strlen (options->prefixes [count++]) > 255)
            return s_invalid ("projection %s: a topic prefix is at most 255 bytes", name);
    if (count == 0 || count > PREFIXES_MAX)
        return s_invalid ("projection %s: give 1-%d topic prefixes (a NULL-terminated "
                          "array; \"\" for every topic)", name, PREFIXES_MAX);
    if (options->until_ts > INT64_MAX)
        return s_invalid ("projection %s: until_ts is at most %" PRId64 " (Unix ns)", name,
                          INT64_MAX);
    size_t batch_cap = options->until_ts? TEMPORAL_BATCH_MAX: LIVE_BATCH_MAX;
    if (options->batch_max > batch_cap)
        return s_invalid ("projection %s: batch_max is 1-%zu for a %s projection (0: the "
                          "default)", name, batch_cap, options->until_ts? "temporal": "live");
    if (options->table && !s_table_valid (options->table))
        return s_invalid ("projection %s: the position table's name is 1-%d bytes of "
                          "[A-Za-z0-9_], not starting with a digit", name, TABLE_MAX_LEN);
    if (options->on_incompatible != HERALD_SCHEMA_STOP
    &&  options->on_incompatible != HERALD_SCHEMA_SKIP
    &&  options->on_incompatible != HERALD_SCHEMA_PARK)
        return s_invalid ("projection %s: unknown schema policy %d", name,
                          (int) options->on_incompatible);
    if (options->on_incompatible == HERALD_SCHEMA_PARK && !options->on_parked)
        return s_invalid ("projection %s: the PARK policy needs on_parked (a projection "
                          "keeps no parked file)", name);
    if (options->want_count && !options->wants)
        return s_invalid ("projection %s: want_count without wants", name);
    for (size_t index = 0; index < options->want_count; index++) {
        const herald_schema_want_t *want = &options->wants [index];
        if (!want->type || !*want->type || strlen (want->type) > 255 || want->schema == 0)
            return s_invalid ("projection %s: a declared schema needs a type (1-255 bytes) "
                              "and a schema >= 1", name);
        for (size_t other = 0; other < index; other++)
            if (strcmp (options->wants [other].type, want->type) == 0)
                return s_invalid ("projection %s: type %s declared twice", name, want->type);
    }
    return HERALD_OK;
}

//  Copy what options points to into self (strings, prefixes, wants).
static bool
s_options_copy (herald_projection_t *self, const herald_projection_options_t *options)
{
    self->options = *options;
    self->database = strdup (options->database);
    self->table = strdup (options->table? options->table: "herald_projection");
    size_t count = 0;
    while (options->prefixes [count])
        count++;
    self->prefixes = calloc (count + 1, sizeof (char *));
    if (!self->database || !self->table || !self->prefixes)
        return false;
    for (size_t index = 0; index < count; index++)
        if (!(self->prefixes [index] = strdup (options->prefixes [index])))
            return false;
    if (options->want_count) {
        self->wants = calloc (options->want_count, sizeof *self->wants);
        if (!self->wants)
            return false;
        for (size_t index = 0; index < options->want_count; index++) {
            self->wants [index].schema = options->wants [index].schema;
            if (!(self->wants [index].type = strdup (options->wants [index].type)))
                return false;
        }
    }
    self->options.database = self->database;
    self->options.table = self->table;
    self->options.prefixes = (const char *const *) self->prefixes;
    self->options.wants = self->wants;
    self->batch_max = options->batch_max? options->batch_max
                    : options->until_ts? 10000: LIVE_BATCH_MAX;
    return true;
}

static void
s_free (herald_projection_t *self)
{
    if (self->conn)
        self->db->close (&self->conn);
    for (size_t index = 0; self->prefixes && self->prefixes [index]; index++)
        free (self->prefixes [index]);
    free (self->prefixes);
    for (size_t index = 0; self->wants && index < self->options.want_count; index++)
        free ((char *) self->wants [index].type);
    free (self->wants);
    free (self->database);
    free (self->table);
    free (self->name);
    pthread_mutex_destroy (&self->lock);
    pthread_cond_destroy (&self->changed);
    free (self);
}

//  Run step (setup or reset) in tx: its verdict as an error.
static herald_err
s_step (herald_projection_t *self, herald_projection_setup_fn *step, const char *what,
        herald_projection_fault_t *fault)
{
    if (!step)
        return HERALD_OK;
    int verdict = step (self->conn, self->options.arg);
    if (verdict == HERALD_OK)
        return HERALD_OK;
    fault->retry = false;
    fault->code = verdict > 0? (herald_err) verdict: HERALD_ERR_INTERNAL;
    snprintf (fault->message, sizeof fault->message, "projection %s: %s returned %d",
              self->name, what, verdict);
    return fault->code;
}

//  The transaction of new: the position table, the row (created, or
//  checked against until_ts), setup.
static herald_err
s_open_tx (herald_projection_t *self, herald_projection_fault_t *fault)
{
    memset (fault, 0, sizeof *fault);
    herald_err rc = self->db->begin (&self->conn, self->database, &fault->retry,
                                     fault->message, sizeof fault->message);
    if (rc != HERALD_OK)
        return fault->code = rc;
    herald_projection_position_t stored;
    bool found = false;
    rc = self->db->table_ensure (self->conn, self->table, &fault->retry, fault->message,
                                 sizeof fault->message);
    if (rc == HERALD_OK)
        rc = self->db->position_read (self->conn, self->table, self->name, &stored, &found,
                                      &fault->retry, fault->message, sizeof fault->message);
    //  until_ts matters once effects exist: a row at 0 (never applied, or
    //  rebuilt) takes this projection's
    if (rc == HERALD_OK && found && stored.seq > 0
    &&  stored.until_ts != self->options.until_ts) {
        fault->retry = false;
        snprintf (fault->message, sizeof fault->message, "projection %s in %s was built "
                  "with until_ts %" PRIu64 ", not %" PRIu64 ": rebuild it (opened with its "
                  "until_ts), or use another name or database", self->name, self->table,
                  stored.until_ts, self->options.until_ts);
        rc = HERALD_ERR_INVALID;
    }
    if (rc == HERALD_OK && (!found || stored.until_ts != self->options.until_ts)) {
        if (!found)
            memset (&stored, 0, sizeof stored);
        stored.until_ts = self->options.until_ts;
        rc = self->db->position_write (self->conn, self->table, self->name, &stored,
                                       &fault->retry, fault->message, sizeof fault->message);
    }
    if (rc == HERALD_OK)
        rc = s_step (self, self->options.setup, "setup", fault);
    if (rc == HERALD_OK)
        rc = self->db->commit (self->conn, &fault->retry, fault->message,
                               sizeof fault->message);
    if (rc != HERALD_OK) {
        self->db->rollback (self->conn);
        return fault->code = rc;
    }
    self->status.position = stored.seq;
    self->status.lineage = stored.lineage;
    return HERALD_OK;
}

herald_projection_t *
herald_projection_new (herald_agent_t *agent, const char *name,
                       const herald_projection_options_t *options)
{
    if (s_options_check (agent, name, options) != HERALD_OK)
        return NULL;
    const herald_projection_db_t *db = s_backend (options->backend);
    if (!db) {
        herald_agent_set_last_error (HERALD_ERR_UNSUPPORTED, options->backend
                                     == HERALD_PROJECTION_POSTGRES
                                     ? "this build of libherald_projection has no "
                                       "PostgreSQL backend"
                                     : "this build of libherald_projection lacks that "
                                       "backend");
        return NULL;
    }
    herald_projection_t *self = calloc (1, sizeof *self);
    if (!self) {
        herald_agent_set_last_error (HERALD_ERR_NOMEM, "out of memory");
        return NULL;
    }
    pthread_mutex_init (&self->lock, NULL);
    //  wait's deadlines are on the monotonic clock: a wall clock step
    //  neither cuts them short nor stretches them
    pthread_condattr_t attr;
    pthread_condattr_init (&attr);
    pthread_condattr_setclock (&attr, CLOCK_MONOTONIC);
    pthread_cond_init (&self->changed, &attr);
    pthread_condattr_destroy (&attr);
    self->agent = agent;
    self->db = db;
    self->name = strdup (name);
    if (!self->name || !s_options_copy (self, options)) {
        s_free (self);
        herald_agent_set_last_error (HERALD_ERR_NOMEM, "out of memory");
        return NULL;
    }
    self->status.until_ts = options->until_ts;
    //  Transient errors (the file locked by another writer) are waited out
    herald_projection_fault_t fault = { 0 };
    herald_err rc = HERALD_OK;
    int pause = 10;
    for (int attempt = 0; attempt < OPEN_RETRIES; attempt++) {
        if (!self->conn)
            rc = db->open (&self->conn, self->database, &fault.retry, fault.message,
                           sizeof fault.message);
        if (self->conn)
            rc = s_open_tx (self, &fault);
        if (rc == HERALD_OK || !fault.retry)
            break;
        herald_projection_sleep_ms (pause);
        pause = pause < 200? pause * 2: 200;
    }
    if (rc != HERALD_OK) {
        char message [HERALD_PROJECTION_MESSAGE + 64];
        snprintf (message, sizeof message, "projection %s: %s", name, fault.message);
        s_free (self);
        herald_agent_set_last_error (rc, message);
        return NULL;
    }
    return self;
}

void
herald_projection_destroy (herald_projection_t **self_p)
{
    if (self_p && *self_p) {
        herald_projection_stop (*self_p);
        s_free (*self_p);
        *self_p = NULL;
    }
}

//  ---------------------------------------------------------------------
//  Live: the batch handler

//  A failure of the database in the batch handler, the events before
//  `done` committed: transient ones are retried from there, the others
//  stop the projection.
static int
s_batch_fault (herald_projection_t *self, herald_delivery_batch_t *batch, size_t done,
               const herald_projection_fault_t *fault)
{
    batch->handled = done;
    if (fault->retry)
        return HERALD_RETRY;
    herald_projection_fail (self, fault->code, "projection %s: %s", self->name,
                            fault->message);
    return fault->code;
}

//  apply failed at event index of the transaction that began at `done`:
//  commit the events [done, index) on their own, then stop.
static int
s_batch_failed (herald_projection_t *self, herald_delivery_batch_t *batch, size_t done,
                size_t index, int verdict)
{
    herald_projection_tx_t tx;
    herald_projection_fault_t fault;
    if (herald_projection_tx_begin (self, &tx, &fault) != HERALD_OK)
        return s_batch_fault (self, batch, done, &fault);
    for (size_t before = done; before < index; before++) {
        int again = herald_projection_tx_event (self, &tx, &batch->events [before]);
        if (again != HERALD_OK) {
            //  It applied a moment ago: the apply function is not a
            //  function of the event and the database alone
            herald_projection_tx_rollback (self, &tx);
            if (again == HERALD_RETRY) {
                batch->handled = done;
                return HERALD_RETRY;
            }
            index = before;
            verdict = again;
            break;
        }
    }
    if (tx.open && herald_projection_tx_commit (self, &tx, &fault) != HERALD_OK)
        return s_batch_fault (self, batch, done, &fault);
    uint64_t seq = batch->events [index].seq;
    herald_projection_fail (self, verdict, "projection %s: apply returned %d at seq %" PRIu64
                            " (the events before it are committed)", self->name, verdict,
                            seq);
    batch->handled = index;
    //  The agent fails the subscription with this code: never one of its
    //  special answers
    return verdict > 0? verdict: HERALD_ERR_INTERNAL;
}

//  A delivery batch in transactions of batch_max events
static int
s_on_batch (herald_delivery_batch_t *batch, void *arg)
{
    herald_projection_t *self = (herald_projection_t *) arg;
    size_t done = 0;
    while (done < batch->count) {
        size_t end = batch->count - done > self->batch_max? done + self->batch_max
                                                           : batch->count;
        herald_projection_tx_t tx;
        herald_projection_fault_t fault;
        if (herald_projection_tx_begin (self, &tx, &fault) != HERALD_OK)
            return s_batch_fault (self, batch, done, &fault);
        for (size_t index = done; index < end; index++) {
            int verdict = herald_projection_tx_event (self, &tx, &batch->events [index]);
            if (verdict == HERALD_OK)
                continue;
            herald_projection_tx_rollback (self, &tx);
            if (verdict == HERALD_RETRY) {
                batch->handled = done;
                return HERALD_RETRY;
            }
            return s_batch_failed (self, batch, done, index, verdict);
        }
        if (herald_projection_tx_commit (self, &tx, &fault) != HERALD_OK)
            return s_batch_fault (self, batch, done, &fault);
        done = end;
    }
    batch->handled = batch->count;
    return HERALD_OK;
}

//  ---------------------------------------------------------------------
//  Start, stop, rebuild

static int
s_ignore (const herald_delivery_t *event, void *arg)
{
    (void) event;
    (void) arg;
    return HERALD_OK;
}

//  Where the broker stands against the row: the lineage (from the agent's
//  WELCOME) and whether it has the stored seq.  Sets self->lineage.
static herald_err
s_broker_check (herald_projection_t *self, const herald_projection_position_t *stored,
                int timeout_ms)
{
    herald_agent_stats_t stats;
    int64_t waited = 0;
    herald_agent_stats (self->agent, &stats);
    while (!stats.node [0] && waited < timeout_ms) {
        herald_projection_sleep_ms (WELCOME_POLL_MS);
        waited += WELCOME_POLL_MS;
        herald_agent_stats (self->agent, &stats);
    }
    if (!stats.node [0])
        return herald_projection_fail (self, HERALD_ERR_UNAVAILABLE, "projection %s: the "
                                       "broker did not answer the agent within %d ms",
                                       self->name, timeout_ms);
    //  The REPLAY of the stored seq alone: END's last is that seq only when
    //  the broker has it (at or below its head).  It also orders this
    //  check after the WELCOME's lineage was stored.
    uint64_t seq = stored->seq? stored->seq: 1;
    uint64_t last = 0;
    herald_range_t range = { .from = seq, .to = seq };
    herald_err rc = herald_agent_replay (self->agent, &range, s_ignore, NULL, timeout_ms,
                                         &last);
    //  Trimmed (herald trim; any prefix's trim point counts, this REPLAY
    //  has none): the broker stored that seq, so it is at or below its
    //  head.  Whether the events after it are still there is the
    //  subscription's to find out (HERALD_ERR_TRIMMED, with the first seq)
    if (rc == HERALD_ERR_TRIMMED) {
        rc = HERALD_OK;
        last = seq;
    }
    if (rc != HERALD_OK)
        return herald_projection_fail (self, rc, "projection %s: cannot ask the broker "
                                       "for its head: %s", self->name,
                                       herald_agent_last_error ());
    herald_agent_stats (self->agent, &stats);
    if (stored->seq && last != stored->seq)
        return herald_projection_fail (self, HERALD_ERR_DATA_LOST, "projection %s: its "
                                       "position %" PRIu64 " is beyond the broker's head "
                                       "%" PRIu64 ": the read model has effects of events "
                                       "the broker does not have; rebuild it", self->name,
                                       stored->seq, last);
    if (stored->seq && stored->lineage != stats.broker_lineage)
        return herald_projection_fail (self, HERALD_ERR_DATA_LOST, "projection %s: built "
                                       "in broker lineage %" PRIu64 ", the broker is at "
                                       "%" PRIu64 " (it lost events): rebuild it",
                                       self->name, stored->lineage, stats.broker_lineage);
    self->lineage = stats.broker_lineage;
    return HERALD_OK;
}

static herald_err
s_subscribe (herald_projection_t *self, uint64_t position)
{
    herald_subscribe_options_t sub;
    herald_subscribe_options_init (&sub);
    sub.prefixes = self->options.prefixes;
    sub.start.kind = HERALD_START_SEQ;
    sub.start.value = position + 1;
    sub.wants = self->options.wants;
    sub.want_count = self->options.want_count;
    sub.default_schema = self->options.default_schema;
    sub.on_incompatible = self->options.on_incompatible;
    sub.on_parked = self->options.on_parked;
    sub.on_parked_arg = self->options.on_parked_arg;
    sub.caller_position = true;
    herald_err rc = herald_agent_subscribe_batch_with (self->agent, self->name, &sub,
                                                       s_on_batch, self);
    if (rc != HERALD_OK)
        return herald_projection_fail (self, rc, "projection %s: cannot subscribe: %s",
                                       self->name, herald_agent_last_error ());
    self->subscribed = true;
    return HERALD_OK;
}

herald_err
herald_projection_start (herald_projection_t *self, int timeout_ms)
{
    if (!self)
        return s_invalid ("herald_projection_start: no projection");
    if (self->subscribed) {
        herald_projection_status_t status;
        herald_projection_status (self, &status);
        if (status.state != HERALD_PROJECTION_FAILED)
            return s_invalid ("projection %s is running already", self->name);
        herald_projection_stop (self);      //  failed: start over from the row
    }
    if (timeout_ms <= 0)
        timeout_ms = 5000;
    herald_projection_position_t stored;
    herald_projection_fault_t fault;
    herald_err rc = HERALD_OK;
    int pause = 10;
    for (int attempt = 0; attempt < OPEN_RETRIES; attempt++) {
        rc = herald_projection_tx_peek (self, &stored, &fault);
        if (rc == HERALD_OK || !fault.retry)
            break;
        herald_projection_sleep_ms (pause);
        pause = pause < 200? pause * 2: 200;
    }
    if (rc != HERALD_OK)
        return herald_projection_fail (self, rc, "projection %s: %s", self->name,
                                       fault.message);
    pthread_mutex_lock (&self->lock);
    self->status.position = stored.seq;
    self->status.lineage = stored.lineage;
    pthread_mutex_unlock (&self->lock);
    herald_projection_set_state (self, HERALD_PROJECTION_CATCHING_UP);
    rc = s_broker_check (self, &stored, timeout_ms);
    if (rc != HERALD_OK)
        return rc;
    if (self->options.until_ts)
        return herald_projection_temporal_run (self, timeout_ms);
    return s_subscribe (self, stored.seq);
}

herald_err
herald_projection_stop (herald_projection_t *self)
{
    if (!self)
        return s_invalid ("herald_projection_stop: no projection");
    if (!self->subscribed)
        return HERALD_OK;
    herald_err rc = herald_agent_unsubscribe (self->agent, self->name);
    self->subscribed = false;
    pthread_mutex_lock (&self->lock);
    if (self->status.state != HERALD_PROJECTION_FAILED)
        self->status.state = HERALD_PROJECTION_IDLE;
    pthread_cond_broadcast (&self->changed);
    pthread_mutex_unlock (&self->lock);
    return rc == HERALD_ERR_NOT_FOUND? HERALD_OK: rc;
}

//  The transaction of rebuild: reset, position 0, setup.
static herald_err
s_rebuild_tx (herald_projection_t *self, herald_projection_fault_t *fault)
{
    herald_projection_tx_t tx;
    herald_err rc = herald_projection_tx_begin (self, &tx, fault);
    if (rc != HERALD_OK)
        return rc;
    rc = s_step (self, self->options.reset, "reset", fault);
    herald_projection_position_t zero = { 0, 0, self->options.until_ts };
    if (rc == HERALD_OK)
        rc = self->db->position_write (self->conn, self->table, self->name, &zero,
                                       &fault->retry, fault->message, sizeof fault->message);
    if (rc == HERALD_OK)
        rc = s_step (self, self->options.setup, "setup", fault);
    if (rc == HERALD_OK)
        rc = self->db->commit (self->conn, &fault->retry, fault->message,
                               sizeof fault->message);
    if (rc != HERALD_OK) {
        herald_projection_tx_rollback (self, &tx);
        return fault->code = rc;
    }
    pthread_mutex_lock (&self->lock);
    self->status.position = 0;
    self->status.lineage = 0;
    self->status.rebuilds++;
    self->status.state = HERALD_PROJECTION_IDLE;
    self->status.error = 0;
    self->status.message [0] = 0;
    pthread_cond_broadcast (&self->changed);
    pthread_mutex_unlock (&self->lock);
    return HERALD_OK;
}

herald_err
herald_projection_rebuild (herald_projection_t *self, int timeout_ms)
{
    if (!self)
        return s_invalid ("herald_projection_rebuild: no projection");
    if (!self->options.reset)
        return s_invalid ("projection %s has no reset function: nothing to drop, so no "
                          "rebuild", self->name);
    bool running = self->subscribed;
    herald_err rc = herald_projection_stop (self);
    if (rc != HERALD_OK)
        return rc;
    herald_projection_fault_t fault;
    int pause = 10;
    for (int attempt = 0; attempt < OPEN_RETRIES; attempt++) {
        rc = s_rebuild_tx (self, &fault);
        if (rc == HERALD_OK || !fault.retry)
            break;
        herald_projection_sleep_ms (pause);
        pause = pause < 200? pause * 2: 200;
    }
    if (rc != HERALD_OK)
        return herald_projection_fail (self, rc, "projection %s: rebuild: %s", self->name,
                                       fault.message);
    return running? herald_projection_start (self, timeout_ms): HERALD_OK;
}

//  ---------------------------------------------------------------------
//  Status and wait

//  The status, with the subscription's state folded in: CATCHING_UP or
//  LIVE as the agent says, FAILED when the agent stopped it (a loss the
//  broker reported, an incompatible event under STOP).
static void
s_status (herald_projection_t *self, herald_projection_status_t *status,
          uint64_t *delivered_p)
{
    herald_sub_status_t sub;
    bool have_sub = self->subscribed
                 && herald_agent_sub_status (self->agent, self->name, &sub) == HERALD_OK;
    pthread_mutex_lock (&self->lock);
    if (have_sub && self->status.state != HERALD_PROJECTION_FAILED) {
        if (sub.state == HERALD_SUB_FAILED) {
            self->status.state = HERALD_PROJECTION_FAILED;
            self->status.error = sub.error;
            snprintf (self->status.message, sizeof self->status.message, "projection %s: "
                      "%.200s", self->name, sub.message);
        }
        else
        if (sub.state == HERALD_SUB_LIVE)
            self->status.state = HERALD_PROJECTION_LIVE;
        else
        if (sub.state == HERALD_SUB_CATCHING_UP)
            self->status.state = HERALD_PROJECTION_CATCHING_UP;
    }
    *status = self->status;
    pthread_mutex_unlock (&self->lock);
    *delivered_p = have_sub && sub.state != HERALD_SUB_FAILED? sub.delivered_seq: 0;
}

herald_err
herald_projection_status (herald_projection_t *self, herald_projection_status_t *status)
{
    if (!self || !status)
        return s_invalid ("herald_projection_status needs a projection and a status");
    uint64_t delivered;
    s_status (self, status, &delivered);
    return HERALD_OK;
}

herald_err
herald_projection_wait (herald_projection_t *self, uint64_t seq, int timeout_ms)
{
    if (!self)
        return s_invalid ("herald_projection_wait: no projection");
    struct timespec deadline;
    clock_gettime (CLOCK_MONOTONIC, &deadline);
    int64_t until = (int64_t) deadline.tv_sec * 1000 + deadline.tv_nsec / 1000000
                  + (timeout_ms > 0? timeout_ms: 0);
    while (true) {
        herald_projection_status_t status;
        uint64_t delivered;
        s_status (self, &status, &delivered);
        //  The subscription passed seq: every event up to it that the
        //  projection's prefixes match is committed
        if (status.position >= seq || delivered >= seq
        ||  status.state == HERALD_PROJECTION_DONE)
            return HERALD_OK;
        if (status.state == HERALD_PROJECTION_FAILED) {
            herald_err code = status.error > 0? (herald_err) status.error
                                              : HERALD_ERR_INTERNAL;
            return herald_agent_set_last_error (code, status.message);
        }
        struct timespec now;
        clock_gettime (CLOCK_MONOTONIC, &now);
        int64_t now_ms = (int64_t) now.tv_sec * 1000 + now.tv_nsec / 1000000;
        if (now_ms >= until)
            return herald_agent_set_last_error (HERALD_ERR_TIMEOUT, "the projection did "
                                                "not reach that seq in time");
        //  Woken by each commit; the agent's side (failures) polled
        int64_t step = until - now_ms < 50? until - now_ms: 50;
        struct timespec wake = { now.tv_sec + (now.tv_nsec / 1000000 + step) / 1000,
                                 ((now.tv_nsec / 1000000 + step) % 1000) * 1000000 };
        pthread_mutex_lock (&self->lock);
        if (self->status.position < seq && self->status.state != HERALD_PROJECTION_FAILED)
            pthread_cond_timedwait (&self->changed, &self->lock, &wake);
        pthread_mutex_unlock (&self->lock);
    }
}
