/*  =========================================================================
    herald_agent_deliver - the agent's delivery thread

    DESIGN

    One thread per agent runs every handler and every asynchronous publish
    completion, one at a time, in the order the I/O actor sent them.  It
    owns the subscriptions' checkpoints and is the only thread that writes
    them.  Per event of a subscription (herald_checkpoint.c has the file):

        seq <= done                 drop (counted as a duplicate)
        id in the window            drop, done = seq (counted)
        otherwise                   intent(seq, id); handler; commit
                                    (the first event after a crash between
                                    intent and commit is flagged redelivered)
        handler returns RETRY       sleep 10 ms, 20, 40 ... up to retry_max_ms,
                                    call again with attempt + 1 (the
                                    subscription waits: order is kept)
        handler returns an error    the subscription FAILS: the event stays
                                    in doubt, nothing more is delivered to it

    Dispatch mode (options.dispatch): everything above stays on this
    thread; only the calls into user code (handler, completions, on_error)
    are posted to agent->call, herald_agent_fd is made readable, and this
    thread waits until herald_agent_dispatch (any thread) has run the call,
    or herald_agent_complete has answered a deferred one.  Publish
    completions do not come here in dispatch mode: the I/O actor queues
    them for herald_agent_dispatch directly, so that they are not held
    behind a deferred handler call (which may be waiting for them).  A call not yet
    taken, or deferred, is abandoned when its subscription stops or the
    agent is destroyed (the event is then not committed, like a stop during
    a RETRY backoff); a call being run is always waited for.

    Stopping (agent->stopping): event batches are skipped, but publish
    completions still run, here, until STOP; what is owed after that
    (batches the I/O actor could not pipe, undispatched ones in dispatch
    mode, HERALD_ERR_TIMEOUT for events never acknowledged) runs on
    destroy's thread in herald_agent_run_last_completions.  Every async
    publish gets exactly one completion before destroy returns.

    Group subscriptions (below) come through a queue of their own, polled
    beside the pipe: their batches are the member threads', and the
    broker's positions are their checkpoint.

    After a batch, done moves to the batch's marker (every matching event up
    to it was passed), so a subscription whose topics are quiet does not
    replay the whole log after a restart.

    Unsubscribe and shutdown: `busy` is set before `stop` is checked, and
    unsubscribe sets `stop` before it waits for `busy` to clear (both
    sequentially consistent), so once unsubscribe returns the handler is
    not running and will not run again.
    =========================================================================
*/

#include <errno.h>
#include <inttypes.h>
#include <time.h>
#include <unistd.h>
#include "herald_agent_priv.h"
#include "herald_event.h"
#include "herald_member.h"
#include "herald_schema.h"
#include "herald_say.h"
#include "herald_text.h"

_Static_assert (sizeof (herald_meta_t) == sizeof (herald_kv_t), "meta layout");
_Static_assert (offsetof (herald_meta_t, value) == offsetof (herald_kv_t, value), "meta layout");
_Static_assert (offsetof (herald_meta_t, value_len) == offsetof (herald_kv_t, value_len),
                "meta layout");

typedef struct {
    herald_agent_t *agent;
    zsock_t *pipe;
    msgpack_zone zone;
    int64_t next_sync;
    herald_agent_many_t *many;      //  batch handlers (herald_agent_batch.c), on first use
} s_self_t;

//  ---------------------------------------------------------------------
//  Dispatch mode

//  The agent whose dispatched user code the calling thread is running.
static _Thread_local herald_agent_t *s_dispatching;

bool
herald_agent_in_handler (herald_agent_t *self)
{
    return s_dispatching == self || pthread_equal (pthread_self (), self->deliver_thread);
}

//  Make the eventfd readable (a saturated counter already is).
static void
s_poke (int fd)
{
    uint64_t one = 1;
    if (write (fd, &one, sizeof one) < 0) {
        //  EAGAIN: the counter is saturated, so it is readable
    }
}

//  Post call for herald_agent_dispatch and wait for it.  False when it was
//  abandoned (sub stopping, or the agent): user code did not finish it.
static bool
s_call (herald_agent_t *agent, herald_call_t *call, herald_agent_sub_t *sub)
{
    pthread_mutex_lock (&agent->dispatch_lock);
    call->state = HERALD_CALL_POSTED;
    call->ticket = ++agent->call_serial;
    agent->call = call;
    pthread_cond_broadcast (&agent->dispatch_cond);
    pthread_mutex_unlock (&agent->dispatch_lock);
    s_poke (agent->dispatch_fd);
    bool done = true;
    pthread_mutex_lock (&agent->dispatch_lock);
    while (call->state != HERALD_CALL_DONE) {
        if ((call->state == HERALD_CALL_POSTED || call->state == HERALD_CALL_DEFERRED)
        &&  (atomic_load (&agent->stopping) || (sub && atomic_load (&sub->stop)))) {
            done = false;
            break;
        }
        struct timespec deadline;
        clock_gettime (CLOCK_REALTIME, &deadline);
        deadline.tv_nsec += 50 * 1000000L;
        if (deadline.tv_nsec >= 1000000000L) {
            deadline.tv_sec++;
            deadline.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait (&agent->dispatch_cond, &agent->dispatch_lock, &deadline);
    }
    agent->call = NULL;
    pthread_mutex_unlock (&agent->dispatch_lock);
    return done;
}

//  Run call's user code on the calling thread; returns the handler's code.
static int
s_run (herald_agent_t *agent, herald_call_t *call)
{
    if (call->kind == HERALD_CALL_HANDLER && call->batch)
        return call->sub->batch_handler (call->batch, call->sub->arg);
    if (call->kind == HERALD_CALL_HANDLER)
        return call->sub->handler (call->view, call->sub->arg);
    agent->options.on_error (call->name, call->code, call->message,
                             agent->options.on_error_arg);
    return HERALD_OK;
}

//  Run batch's completions on the calling thread (the caller frees it).
static void
s_run_completions (herald_batch_t *batch)
{
    for (size_t index = 0; index < batch->count; index++)
        batch->completions [index].done (&batch->completions [index].result,
                                         batch->completions [index].arg);
}

void
herald_agent_run_last_completions (herald_agent_t *self)
{
    s_dispatching = self;               //  user code of self: it may not destroy it
    herald_batch_t *batch;
    while (self->kept_completions && (batch = zlist_pop (self->kept_completions))) {
        s_run_completions (batch);
        herald_outbox_completed (self->outbox, batch->count);
        herald_batch_destroy (&batch);
    }
    //  Queued for herald_agent_dispatch, which was not called again
    while (self->dispatch_completions && (batch = zlist_pop (self->dispatch_completions))) {
        s_run_completions (batch);
        herald_batch_destroy (&batch);
    }
    //  Never acknowledged: the truth is that they wait in the outbox file
    herald_completion_t *completions = NULL;
    size_t count = self->outbox? herald_outbox_abandon (self->outbox, &completions): 0;
    for (size_t index = 0; index < count; index++)
        completions [index].done (&completions [index].result, completions [index].arg);
    free (completions);
    s_dispatching = NULL;
}

void
herald_agent_queue_completions (herald_agent_t *self, herald_batch_t *batch)
{
    pthread_mutex_lock (&self->dispatch_lock);
    zlist_append (self->dispatch_completions, batch);
    pthread_mutex_unlock (&self->dispatch_lock);
    s_poke (self->dispatch_fd);
}

int
herald_agent_fd (herald_agent_t *self)
{
    if (!self || self->dispatch_fd < 0)
        return herald_agent_set_error (HERALD_ERR_INVALID, "the agent is not in dispatch "
                                       "mode"), -1;
    return self->dispatch_fd;
}

int
herald_agent_dispatch (herald_agent_t *self, int max)
{
    if (!self || self->dispatch_fd < 0)
        return herald_agent_set_error (HERALD_ERR_INVALID, "the agent is not in dispatch "
                                       "mode"), -1;
    if (s_dispatching)
        return 0;                   //  from dispatched user code
    uint64_t value;
    if (read (self->dispatch_fd, &value, sizeof value) < 0) {
        //  EAGAIN: nothing was posted since the last time
    }
    s_dispatching = self;
    int count = 0;
    bool wait_more = false;
    pthread_mutex_lock (&self->dispatch_lock);
    while (count < (max > 0? max: 1)) {
        herald_batch_t *completions = zlist_pop (self->dispatch_completions);
        if (completions) {
            pthread_mutex_unlock (&self->dispatch_lock);
            s_run_completions (completions);
            herald_batch_destroy (&completions);
            pthread_mutex_lock (&self->dispatch_lock);
            count++;
            continue;
        }
        herald_call_t *call = self->call;
        if (!call || call->state != HERALD_CALL_POSTED) {
            if (!wait_more)
                break;
            //  The rest of a batch comes within microseconds: wait for it
            //  here rather than through one more turn of the caller's loop
            wait_more = false;
            struct timespec deadline;
            clock_gettime (CLOCK_REALTIME, &deadline);
            deadline.tv_nsec += 2 * 1000000L;
            if (deadline.tv_nsec >= 1000000000L) {
                deadline.tv_sec++;
                deadline.tv_nsec -= 1000000000L;
            }
            pthread_cond_timedwait (&self->dispatch_cond, &self->dispatch_lock, &deadline);
            continue;
        }
        call->state = HERALD_CALL_TAKEN;
        pthread_mutex_unlock (&self->dispatch_lock);
        int rc = s_run (self, call);
        pthread_mutex_lock (&self->dispatch_lock);
        count++;
        wait_more = false;
        if (call->kind == HERALD_CALL_HANDLER && rc == HERALD_DEFER && call->deferred)
            call->state = HERALD_CALL_DEFERRED;
        else {
            call->rc = rc;
            call->state = HERALD_CALL_DONE;
            wait_more = call->more && rc == HERALD_OK;
        }
        pthread_cond_broadcast (&self->dispatch_cond);
    }
    if ((self->call && self->call->state == HERALD_CALL_POSTED)
    ||  zlist_size (self->dispatch_completions))
        s_poke (self->dispatch_fd); //  left for the next call: stay readable
    pthread_mutex_unlock (&self->dispatch_lock);
    s_dispatching = NULL;
    return count;
}

uint64_t
herald_agent_defer (herald_agent_t *self)
{
    if (!self || s_dispatching != self)
        return 0;
    uint64_t ticket = 0;
    pthread_mutex_lock (&self->dispatch_lock);
    herald_call_t *call = self->call;
    if (call && call->state == HERALD_CALL_TAKEN && call->kind == HERALD_CALL_HANDLER) {
        call->deferred = true;
        ticket = call->ticket;
    }
    pthread_mutex_unlock (&self->dispatch_lock);
    return ticket;
}

herald_err
herald_agent_complete (herald_agent_t *self, uint64_t ticket, int rc)
{
    if (!self)
        return herald_agent_set_error (HERALD_ERR_INVALID, "no agent");
    bool found = false;
    pthread_mutex_lock (&self->dispatch_lock);
    herald_call_t *call = self->call;
    if (call && ticket && call->ticket == ticket && call->state == HERALD_CALL_DEFERRED) {
        if (call->batch)            //  a batch handler's: all or none
            call->batch->handled = rc == HERALD_OK? call->batch->count: 0;
        call->rc = rc;
        call->state = HERALD_CALL_DONE;
        pthread_cond_broadcast (&self->dispatch_cond);
        found = true;
    }
    pthread_mutex_unlock (&self->dispatch_lock);
    return found? HERALD_OK: herald_agent_set_error (HERALD_ERR_NOT_FOUND, "no deferred call "
                                                     "%llu", (unsigned long long) ticket);
}

herald_err
herald_agent_complete_batch (herald_agent_t *self, uint64_t ticket, int rc, size_t handled)
{
    if (!self)
        return herald_agent_set_error (HERALD_ERR_INVALID, "no agent");
    bool found = false;
    pthread_mutex_lock (&self->dispatch_lock);
    herald_call_t *call = self->call;
    if (call && ticket && call->ticket == ticket && call->state == HERALD_CALL_DEFERRED
    &&  call->batch) {
        call->batch->handled = handled < call->batch->count? handled: call->batch->count;
        call->rc = rc;
        call->state = HERALD_CALL_DONE;
        pthread_cond_broadcast (&self->dispatch_cond);
        found = true;
    }
    pthread_mutex_unlock (&self->dispatch_lock);
    return found? HERALD_OK: herald_agent_set_error (HERALD_ERR_NOT_FOUND, "no deferred batch "
                                                     "call %llu", (unsigned long long) ticket);
}

//  on_error, on this thread or through dispatch.
static void
s_on_error (herald_agent_t *agent, const char *name, int code, const char *message)
{
    if (!agent->options.on_error)
        return;
    if (agent->dispatch_fd < 0) {
        agent->options.on_error (name, code, message, agent->options.on_error_arg);
        return;
    }
    herald_call_t call = { .kind = HERALD_CALL_ON_ERROR, .name = name, .code = code,
                           .message = message };
    s_call (agent, &call, NULL);
}

//  Fail sub (the I/O actor stops it) and tell on_error.
static void
s_fail (herald_agent_t *agent, herald_agent_sub_t *sub, int code, const char *message)
{
    if (herald_agent_sub_fail (agent, sub, code, message, false))
        s_on_error (agent, sub->name, code, message);
}

//  ---------------------------------------------------------------------

//  Sleep ms in short steps; false when the subscription or agent stops.
static bool
s_backoff (herald_agent_t *agent, herald_agent_sub_t *sub, int ms)
{
    int64_t until = herald_agent_now_ms () + ms;
    while (herald_agent_now_ms () < until) {
        if (atomic_load (&sub->stop) || atomic_load (&agent->stopping))
            return false;
        zclock_sleep (10);
    }
    return true;
}

//  For herald_agent_batch.c, which runs on this thread (herald_agent_priv.h).
bool
herald_agent_deliver_call (herald_agent_t *agent, herald_call_t *call, herald_agent_sub_t *sub)
{
    return s_call (agent, call, sub);
}

void
herald_agent_deliver_fail (herald_agent_t *agent, herald_agent_sub_t *sub, int code,
                           const char *message)
{
    s_fail (agent, sub, code, message);
}

bool
herald_agent_deliver_backoff (herald_agent_t *agent, herald_agent_sub_t *sub, int ms)
{
    return s_backoff (agent, sub, ms);
}

//  Call sub's handler with view (of event) until it returns OK: RETRY
//  backs off and calls again, an error fails sub.  False when the
//  subscription must not go on (failed, stopping, or the dispatched call
//  was abandoned): the event was not handled.
static bool
s_handle (herald_agent_t *agent, herald_agent_sub_t *sub, herald_delivery_t *view,
          const herald_event_t *event, bool more)
{
    int backoff = 10;
    while (true) {
        int rc;
        if (agent->dispatch_fd >= 0) {
            herald_call_t call = { .kind = HERALD_CALL_HANDLER, .sub = sub, .view = view,
                                   .more = more };
            if (!s_call (agent, &call, sub))
                return false;       //  abandoned: stopping; not committed
            rc = call.rc;
        }
        else
            rc = sub->handler (view, sub->arg);
        if (rc == HERALD_OK)
            return true;
        if (rc != HERALD_RETRY) {
            char message [512];             //  a topic is at most 255 bytes
            herald_text_format (message, sizeof message, "the handler returned %d for seq %"
                                PRIu64 " (%.*s)", rc, event->seq, (int) event->topic_len,
                                event->topic);
            s_fail (agent, sub, rc, message);
            return false;
        }
        atomic_fetch_add_explicit (&sub->retries, 1, memory_order_relaxed);
        if (!s_backoff (agent, sub, backoff))
            return false;
        //  A group's event is offered again only while its member may hand
        //  it over (lease, no revoke): past the lease its partition may be
        //  another member's.  The batch stops here, the event not handled
        if (sub->group && (!sub->member || !herald_member_admit (sub->member)))
            return false;
        backoff = backoff * 2 > agent->options.retry_max_ms? agent->options.retry_max_ms
                                                            : backoff * 2;
        view->attempt++;
    }
}

//  ---------------------------------------------------------------------
//  Schemas (herald_schema.c, docs/schemas.md)
//
//  Before a handler: a subscription with declared schemas gets view's
//  data converted to the schema it wants for the event's type.  What
//  cannot be converted meets the subscription's policy here.  A local
//  subscription (checkpoint) records the intent before parking, so that
//  a crash after the park passes the event again flagged redelivered,
//  which the park then recognises.

//  (herald_agent_verdict_t, herald_agent_priv.h: the batch path shares it)
static herald_agent_verdict_t
s_schema_gate (herald_agent_t *agent, herald_agent_sub_t *sub, herald_delivery_t *view,
               herald_checkpoint_t *checkpoint, bool policy, void **converted_p)
{
    herald_schema_sub_t *schema = sub->schema;
    uint64_t want = herald_schema_sub_want (schema, view->type, view->type_len);
    int direction = 0;
    char message [1024];
    if (herald_schema_convert (agent->schemas, view, want, converted_p, &direction, message,
                               sizeof message) == HERALD_OK) {
        if (direction > 0)
            atomic_fetch_add_explicit (&schema->upcast, 1, memory_order_relaxed);
        if (direction < 0)
            atomic_fetch_add_explicit (&schema->downcast, 1, memory_order_relaxed);
        return HERALD_AGENT_HANDLE;
    }
    if (!policy)
        return HERALD_AGENT_UNCONVERTED;
    if (schema->policy == HERALD_SCHEMA_STOP) {
        atomic_fetch_add (&schema->stopped, 1);
        s_fail (agent, sub, HERALD_ERR_UNSUPPORTED, message);
        return HERALD_AGENT_FAILED;
    }
    if (checkpoint)
        herald_checkpoint_intent (checkpoint, view->seq, view->id);
    if (schema->policy == HERALD_SCHEMA_SKIP) {
        atomic_fetch_add (&schema->skipped, 1);
        char told [1100];
        herald_text_format (told, sizeof told, "skipped: %s", message);
        s_on_error (agent, sub->name, HERALD_ERR_UNSUPPORTED, told);
        return HERALD_AGENT_PASSED;
    }
    char why [HERALD_ERROR_MESSAGE_MAX];
    herald_err rc = herald_schema_park (schema, view, message, view->redelivered, why,
                                        sizeof why);
    if (rc) {
        s_fail (agent, sub, rc, why);
        return HERALD_AGENT_FAILED;
    }
    atomic_fetch_add (&schema->parked, 1);
    if (schema->on_parked)
        schema->on_parked (view, message, schema->on_parked_arg);
    return HERALD_AGENT_PASSED;
}

herald_agent_verdict_t
herald_agent_deliver_schema (herald_agent_t *agent, herald_agent_sub_t *sub,
                             herald_delivery_t *view, herald_checkpoint_t *checkpoint,
                             bool policy, void **converted_p)
{
    return s_schema_gate (agent, sub, view, checkpoint, policy, converted_p);
}

//  Hand one envelope to the handler.  Returns false when the subscription
//  must not go on (failed or stopping).
static bool
s_deliver_one (s_self_t *self, herald_agent_sub_t *sub, zframe_t *frame, bool more)
{
    herald_agent_t *agent = self->agent;
    herald_checkpoint_t *checkpoint = sub->checkpoint;
    herald_event_t event;
    herald_error_t err;
    msgpack_zone_clear (&self->zone);
    if (herald_event_decode (&event, zframe_data (frame), zframe_size (frame), &self->zone,
                             &err) != HERALD_OK) {
        char message [HERALD_ERROR_MESSAGE_MAX];
        herald_text_format (message, sizeof message,
                            "an event from the broker does not decode: %s", err.message);
        s_fail (agent, sub, HERALD_ERR_CORRUPT, message);
        return false;
    }
    if (event.seq <= herald_checkpoint_done (checkpoint)) {
        atomic_fetch_add_explicit (&sub->duplicates, 1, memory_order_relaxed);
        return true;
    }
    if (herald_checkpoint_seen (checkpoint, event.id)) {
        atomic_fetch_add_explicit (&sub->duplicates, 1, memory_order_relaxed);
        herald_checkpoint_advance (checkpoint, event.seq);
        atomic_store_explicit (&sub->done_seq, event.seq, memory_order_relaxed);
        return true;
    }
    herald_delivery_t view;
    herald_agent_view (&view, &event, zframe_data (frame), zframe_size (frame));
    view.subscription = sub->name;
    view.redelivered = herald_checkpoint_in_doubt (checkpoint);
    //  Schemas: converted, or skipped / parked (intent written), or failed
    void *converted = NULL;
    herald_agent_verdict_t verdict = HERALD_AGENT_HANDLE;
    if (sub->schema)
        verdict = s_schema_gate (agent, sub, &view, checkpoint, true, &converted);
    if (verdict == HERALD_AGENT_FAILED)
        return false;
    if (verdict == HERALD_AGENT_HANDLE) {
        herald_checkpoint_intent (checkpoint, event.seq, event.id);
        bool handled = s_handle (agent, sub, &view, &event, more);
        free (converted);
        if (!handled)
            return false;
    }
    herald_checkpoint_commit (checkpoint);
    atomic_store_explicit (&sub->done_seq, event.seq, memory_order_relaxed);
    atomic_fetch_add_explicit (&sub->delivered, 1, memory_order_relaxed);
    return true;
}

static void
s_deliver_batch (s_self_t *self, herald_batch_t *batch)
{
    herald_agent_sub_t *sub = batch->sub;
    atomic_store (&sub->busy, true);
    if (sub->batch_handler) {
        if (!atomic_load (&sub->stop) && !atomic_load (&self->agent->stopping))
            herald_agent_many_deliver (&self->many, self->agent, batch);
    }
    else
    if (!atomic_load (&sub->stop) && !atomic_load (&self->agent->stopping)) {
        //  Stop between two events, not at the end of the batch: a
        //  destroy or unsubscribe waits for one handler call, not for up
        //  to HERALD_BATCH_MAX of them (and the marker is then not passed)
        bool going = true;
        for (size_t index = 0; index < batch->count && going; index++) {
            going = s_deliver_one (self, sub, batch->frames [index],
                                   index + 1 < batch->count);
            if (atomic_load (&sub->stop) || atomic_load (&self->agent->stopping))
                going = false;
        }
        if (going && batch->marker > herald_checkpoint_done (sub->checkpoint)) {
            herald_checkpoint_advance (sub->checkpoint, batch->marker);
            atomic_store_explicit (&sub->done_seq, batch->marker, memory_order_relaxed);
        }
    }
    atomic_store (&sub->busy, false);
}

//  The broker's lineage for sub is batch->lineage (herald_io_sub.c decided
//  where its events are certain up to): when the checkpoint went past
//  rewind_to, the events after it that the subscription passed are gone
//  from the broker and the seqs after it belong to other events now, so
//  the checkpoint is rewound there (one slot update, with the lineage),
//  and on_error hears HERALD_ERR_DATA_LOST; a subscription whose caller
//  keeps its position is failed instead (FAILED, DATA_LOST through
//  on_error), its position untouched.  Otherwise the lineage is adopted
//  silently.  Decided here, in pipe order, so that a batch passed
//  before the loss was known is counted in the checkpoint it moved.
static void
s_lineage (s_self_t *self, herald_batch_t *batch)
{
    herald_agent_t *agent = self->agent;
    herald_agent_sub_t *sub = batch->sub;
    atomic_store (&sub->busy, true);
    if (atomic_load (&sub->stop) || atomic_load (&agent->stopping) || !sub->checkpoint) {
        atomic_store (&sub->busy, false);
        return;
    }
    herald_checkpoint_t *checkpoint = sub->checkpoint;
    uint64_t done = herald_checkpoint_done (checkpoint);
    uint64_t own = herald_checkpoint_lineage (checkpoint);
    char message [512];
    bool lost = done > batch->rewind_to;
    if (lost && batch->lower)
        snprintf (message, sizeof message, "broker lineage %" PRIu64 " is below this "
                  "subscription's %" PRIu64 " (a store restored from an older copy?): "
                  "rewinding subscription %s from %" PRIu64 " to its head %" PRIu64 "; events "
                  "after %" PRIu64 " are gone", batch->lineage, own, sub->name, done,
                  batch->rewind_to, batch->rewind_to);
    else
    if (lost)
        snprintf (message, sizeof message, "broker lost events after seq %" PRIu64
                  " (lineage %" PRIu64 "): rewinding subscription %s from %" PRIu64 " to %"
                  PRIu64 "; events after %" PRIu64 " published before the loss are gone",
                  batch->rewind_to, batch->lineage, sub->name, done, batch->rewind_to,
                  batch->rewind_to);
    if (lost && sub->caller_position) {
        //  Its caller keeps the position (a projection's read model holds
        //  effects of the events that are gone): not rewound behind its
        //  back, stopped; the caller decides (rebuilds)
        snprintf (message, sizeof message, "broker lost events after seq %" PRIu64
                  " (lineage %" PRIu64 "%s): subscription %s had passed seq %" PRIu64
                  " and its caller keeps its position: stopped, not rewound (what was "
                  "built from the events after %" PRIu64 " must be rebuilt)",
                  batch->rewind_to, batch->lineage, batch->lower? ", lower than before": "",
                  sub->name, done, batch->rewind_to);
        atomic_fetch_add (&sub->data_lost, 1);
        atomic_fetch_add (&agent->data_lost, 1);
        herald_say (HERALD_LOG_ERROR, "%s", message);
        atomic_store (&sub->busy, false);
        s_fail (agent, sub, HERALD_ERR_DATA_LOST, message);
        return;
    }
    herald_checkpoint_rewind (checkpoint, lost? batch->rewind_to: done, batch->lineage);
    atomic_store (&sub->lineage, batch->lineage);
    if (lost) {
        atomic_store_explicit (&sub->done_seq, batch->rewind_to, memory_order_relaxed);
        atomic_fetch_add (&sub->data_lost, 1);
        atomic_fetch_add (&agent->data_lost, 1);
        herald_say (HERALD_LOG_ERROR, "%s", message);
    }
    atomic_store (&sub->busy, false);
    if (lost)
        s_on_error (agent, sub->name, HERALD_ERR_DATA_LOST, message);
}

//  ---------------------------------------------------------------------
//  Group subscriptions
//
//  A member thread (herald_member.c) hands a batch over with
//  herald_agent_group_push (herald_agent_group.c, which also says how a
//  batch is never lost nor finished twice when the subscription ends) and
//  waits for herald_member_done.  The broker's positions are the
//  checkpoint: no intent, no dedup window, no marker.  Each event is first
//  admitted by the member (its lease holds, nothing revoked or fenced);
//  the first refused stops the batch there, and the member is told how
//  many were handled, exactly once per batch.

//  The next group batch, with its subscription's `busy` set, or NULL.
static herald_batch_t *
s_group_pop (herald_agent_t *agent)
{
    herald_batch_t *batch = NULL;
    pthread_mutex_lock (&agent->group_lock);
    if (agent->group_count) {
        batch = agent->group_queue [agent->group_head];
        agent->group_head = (agent->group_head + 1) % HERALD_AGENT_GROUP_QUEUE;
        agent->group_count--;
        atomic_store (&batch->sub->busy, true);
        pthread_cond_broadcast (&agent->group_cond);
        if (agent->group_count)
            s_poke (agent->group_fd);   //  stay readable for the rest
    }
    pthread_mutex_unlock (&agent->group_lock);
    return batch;
}

//  Hand one event of a group batch to the handler.  False when the batch
//  must stop here (the event was not handled).
static bool
s_group_one (s_self_t *self, herald_agent_sub_t *sub, zframe_t *frame, bool redelivered,
             bool more)
{
    herald_agent_t *agent = self->agent;
    herald_event_t event;
    herald_error_t err;
    msgpack_zone_clear (&self->zone);
    if (herald_event_decode (&event, zframe_data (frame), zframe_size (frame), &self->zone,
                             &err) != HERALD_OK) {
        char message [HERALD_ERROR_MESSAGE_MAX];
        herald_text_format (message, sizeof message,
                            "an event from the broker does not decode: %s", err.message);
        s_fail (agent, sub, HERALD_ERR_CORRUPT, message);
        return false;
    }
    herald_delivery_t view;
    herald_agent_view (&view, &event, zframe_data (frame), zframe_size (frame));
    view.subscription = sub->name;
    view.redelivered = redelivered;
    //  Schemas: converted, or skipped / parked, or failed
    void *converted = NULL;
    herald_agent_verdict_t verdict = HERALD_AGENT_HANDLE;
    if (sub->schema)
        verdict = s_schema_gate (agent, sub, &view, NULL, true, &converted);
    if (verdict == HERALD_AGENT_FAILED)
        return false;
    if (verdict == HERALD_AGENT_HANDLE) {
        bool handled = s_handle (agent, sub, &view, &event, more);
        free (converted);
        if (!handled)
            return false;
    }
    atomic_store_explicit (&sub->done_seq, event.seq, memory_order_relaxed);
    atomic_fetch_add_explicit (&sub->delivered, 1, memory_order_relaxed);
    return true;
}

//  A batch s_group_pop took (`busy` set).
static void
s_deliver_group (s_self_t *self, herald_batch_t *batch)
{
    herald_agent_t *agent = self->agent;
    herald_agent_sub_t *sub = batch->sub;
    struct _herald_member_t *member = sub->member;
    size_t handled = 0;
    if (member && sub->batch_handler)
        handled = herald_agent_many_group (&self->many, agent, batch);
    else
    for (size_t index = 0; member && index < batch->count; index++) {
        if (atomic_load (&sub->stop) || atomic_load (&agent->stopping)
        ||  !herald_member_admit (member))
            break;
        if (!s_group_one (self, sub, batch->frames [index], batch->redelivered [index],
                          index + 1 < batch->count))
            break;
        handled++;
    }
    if (member)
        herald_member_done (member, handled);
    atomic_store (&sub->busy, false);
    //  A failed handler ends the subscription: its member commits what
    //  was done and leaves, from here (this thread is out of it now)
    if (atomic_load (&sub->stop))
        herald_agent_group_release_now (agent, sub);
}

//  Destroy the members of group subscriptions stopped from user code or
//  by a failure the member reported (herald_agent_group_release).
static void
s_reap (herald_agent_t *agent)
{
    herald_agent_sub_t *subs [HERALD_AGENT_SUBS_MAX];
    pthread_mutex_lock (&agent->lock);
    size_t count = agent->sub_count;
    memcpy (subs, agent->subs, count * sizeof subs [0]);
    pthread_mutex_unlock (&agent->lock);
    for (size_t index = 0; index < count; index++) {
        herald_agent_sub_t *sub = subs [index];
        if (sub->group && atomic_load (&sub->stop))
            herald_agent_group_release_now (agent, sub);    //  at once when done already
        if (sub->group && atomic_exchange (&sub->tell_error, false)) {
            char message [sizeof sub->message];
            pthread_mutex_lock (&agent->lock);
            int code = sub->error;
            memcpy (message, sub->message, sizeof message);
            pthread_mutex_unlock (&agent->lock);
            s_on_error (agent, sub->name, code, message);
        }
    }
}

//  msync every live checkpoint (power-loss safety), every sync_interval_ms.
static void
s_sync (s_self_t *self)
{
    herald_agent_t *agent = self->agent;
    herald_agent_sub_t *subs [HERALD_AGENT_SUBS_MAX];
    pthread_mutex_lock (&agent->lock);
    size_t count = agent->sub_count;
    memcpy (subs, agent->subs, count * sizeof subs [0]);
    pthread_mutex_unlock (&agent->lock);
    for (size_t index = 0; index < count; index++) {
        if (subs [index]->group)
            continue;               //  no checkpoint; `busy` is its batches'
        atomic_store (&subs [index]->busy, true);
        if (!atomic_load (&subs [index]->stop) && subs [index]->checkpoint)
            herald_checkpoint_sync (subs [index]->checkpoint);
        atomic_store (&subs [index]->busy, false);
    }
    self->next_sync = herald_agent_now_ms () + agent->options.sync_interval_ms;
}

void *
herald_agent_deliver_thread (void *arg)
{
    s_self_t self = { .agent = (herald_agent_t *) arg };
    herald_agent_t *agent = self.agent;
    self.pipe = zsock_new (ZMQ_PAIR);
    //  The high-water mark before connect: set after, it would not apply
    //  to the pipe, which would hold 1000 batches instead of 64
    if (self.pipe)
        zsock_set_rcvhwm (self.pipe, 64);
    if (!self.pipe || zsock_connect (self.pipe, "%s", agent->deliver_endpoint) != 0) {
        zsock_destroy (&self.pipe);
        return NULL;
    }
    msgpack_zone_init (&self.zone, 8192);
    self.next_sync = herald_agent_now_ms () + agent->options.sync_interval_ms;
    while (true) {
        //  The pipe from the I/O actor and the group batches, in turn
        zmq_pollitem_t items [] = { { zsock_resolve (self.pipe), 0, ZMQ_POLLIN, 0 },
                                    { NULL, agent->group_fd, ZMQ_POLLIN, 0 } };
        if (zmq_poll (items, 2, 100) < 0 && errno != EINTR)
            break;                  //  the context is gone
        if (items [1].revents & ZMQ_POLLIN) {
            uint64_t value;
            if (read (agent->group_fd, &value, sizeof value) < 0) {
                //  EAGAIN: read already
            }
        }
        herald_batch_t *group = s_group_pop (agent);
        if (group) {
            s_deliver_group (&self, group);
            herald_batch_destroy (&group);
        }
        if (atomic_exchange (&agent->group_reap, false))
            s_reap (agent);
        herald_batch_t *batch = NULL;
        int rc = (items [0].revents & ZMQ_POLLIN)
               ? zmq_recv (zsock_resolve (self.pipe), &batch, sizeof batch, ZMQ_DONTWAIT): -1;
        if (rc == (int) sizeof batch && batch) {
            if (batch->kind == HERALD_BATCH_STOP) {
                herald_batch_destroy (&batch);
                break;
            }
            if (batch->kind == HERALD_BATCH_COMPLETIONS) {
                //  Also when stopping: every async publish gets its one
                //  completion before destroy returns (herald.h)
                s_run_completions (batch);
                herald_outbox_completed (agent->outbox, batch->count);
            }
            else
            if (!atomic_load (&agent->stopping)) {
                if (batch->kind == HERALD_BATCH_EVENTS)
                    s_deliver_batch (&self, batch);
                else
                if (batch->kind == HERALD_BATCH_LINEAGE)
                    s_lineage (&self, batch);
                else
                if (batch->kind == HERALD_BATCH_FAILED) {
                    if (agent->options.on_error) {
                        char message [sizeof batch->sub->message];
                        pthread_mutex_lock (&agent->lock);
                        int code = batch->sub->error;
                        memcpy (message, batch->sub->message, sizeof message);
                        pthread_mutex_unlock (&agent->lock);
                        s_on_error (agent, batch->sub->name, code, message);
                    }
                }
                else
                if (batch->kind == HERALD_BATCH_ERROR) {
                    //  After the events before it, which this pipe carried first
                    if (!atomic_load (&batch->sub->stop))
                        s_on_error (agent, batch->sub->name, batch->code, batch->message);
                }
            }
            herald_batch_destroy (&batch);
        }
        else
        if (!group && atomic_load (&agent->io_gone))
            break;                  //  the I/O actor never sent STOP
        if (herald_agent_now_ms () >= self.next_sync)
            s_sync (&self);
    }
    herald_agent_many_destroy (&self.many);
    msgpack_zone_destroy (&self.zone);
    zsock_destroy (&self.pipe);
    return NULL;
}
