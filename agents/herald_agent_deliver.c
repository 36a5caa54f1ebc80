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

    After a batch, done moves to the batch's marker (every matching event up
    to it was passed), so a subscription whose topics are quiet does not
    replay the whole log after a restart.

    Unsubscribe and shutdown: `busy` is set before `stop` is checked, and
    unsubscribe sets `stop` before it waits for `busy` to clear (both
    sequentially consistent), so once unsubscribe returns the handler is
    not running and will not run again.
    =========================================================================
*/

#include <inttypes.h>
#include "herald_agent_priv.h"
#include "herald_event.h"

_Static_assert (sizeof (herald_meta_t) == sizeof (herald_kv_t), "meta layout");
_Static_assert (offsetof (herald_meta_t, value) == offsetof (herald_kv_t, value), "meta layout");
_Static_assert (offsetof (herald_meta_t, value_len) == offsetof (herald_kv_t, value_len),
                "meta layout");

typedef struct {
    herald_agent_t *agent;
    zsock_t *pipe;
    msgpack_zone zone;
    int64_t next_sync;
} s_self_t;

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

//  Hand one envelope to the handler.  Returns false when the subscription
//  must not go on (failed or stopping).
static bool
s_deliver_one (s_self_t *self, herald_agent_sub_t *sub, zframe_t *frame)
{
    herald_agent_t *agent = self->agent;
    herald_checkpoint_t *checkpoint = sub->checkpoint;
    herald_event_t event;
    herald_error_t err;
    msgpack_zone_clear (&self->zone);
    if (herald_event_decode (&event, zframe_data (frame), zframe_size (frame), &self->zone,
                             &err) != HERALD_OK) {
        char message [320];
        snprintf (message, sizeof message, "an event from the broker does not decode: %s: %s",
                  err.field, err.message);
        herald_agent_sub_fail (agent, sub, HERALD_ERR_CORRUPT, message, true);
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
    herald_checkpoint_intent (checkpoint, event.seq, event.id);
    int backoff = 10;
    while (true) {
        int rc = sub->handler (&view, sub->arg);
        if (rc == HERALD_OK)
            break;
        if (rc != HERALD_RETRY) {
            char message [256];
            snprintf (message, sizeof message, "the handler returned %d for seq %" PRIu64
                      " (%.*s)", rc, event.seq, (int) event.topic_len, event.topic);
            herald_agent_sub_fail (agent, sub, rc, message, true);
            return false;
        }
        atomic_fetch_add_explicit (&sub->retries, 1, memory_order_relaxed);
        if (!s_backoff (agent, sub, backoff))
            return false;
        backoff = backoff * 2 > agent->options.retry_max_ms? agent->options.retry_max_ms
                                                            : backoff * 2;
        view.attempt++;
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
    if (!atomic_load (&sub->stop) && !atomic_load (&self->agent->stopping)) {
        bool going = true;
        for (size_t index = 0; index < batch->count && going; index++)
            going = s_deliver_one (self, sub, batch->frames [index]);
        if (going && batch->marker > herald_checkpoint_done (sub->checkpoint)) {
            herald_checkpoint_advance (sub->checkpoint, batch->marker);
            atomic_store_explicit (&sub->done_seq, batch->marker, memory_order_relaxed);
        }
    }
    atomic_store (&sub->busy, false);
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
    if (!self.pipe || zsock_connect (self.pipe, "%s", agent->deliver_endpoint) != 0) {
        zsock_destroy (&self.pipe);
        return NULL;
    }
    zsock_set_rcvhwm (self.pipe, 64);
    zsock_set_rcvtimeo (self.pipe, 100);
    msgpack_zone_init (&self.zone, 8192);
    self.next_sync = herald_agent_now_ms () + agent->options.sync_interval_ms;
    while (true) {
        herald_batch_t *batch = NULL;
        int rc = zmq_recv (zsock_resolve (self.pipe), &batch, sizeof batch, 0);
        if (rc == (int) sizeof batch && batch) {
            if (batch->kind == HERALD_BATCH_STOP) {
                herald_batch_destroy (&batch);
                break;
            }
            if (!atomic_load (&agent->stopping)) {
                if (batch->kind == HERALD_BATCH_EVENTS)
                    s_deliver_batch (&self, batch);
                else
                if (batch->kind == HERALD_BATCH_FAILED) {
                    if (agent->options.on_error) {
                        char message [256];
                        pthread_mutex_lock (&agent->lock);
                        int code = batch->sub->error;
                        snprintf (message, sizeof message, "%s", batch->sub->message);
                        pthread_mutex_unlock (&agent->lock);
                        agent->options.on_error (batch->sub->name, code, message,
                                                 agent->options.on_error_arg);
                    }
                }
                else
                for (size_t index = 0; index < batch->count; index++)
                    batch->completions [index].done (&batch->completions [index].result,
                                                     batch->completions [index].arg);
            }
            herald_batch_destroy (&batch);
        }
        else
        if (atomic_load (&agent->io_gone))
            break;                  //  the I/O actor never sent STOP
        if (herald_agent_now_ms () >= self.next_sync)
            s_sync (&self);
    }
    msgpack_zone_destroy (&self.zone);
    zsock_destroy (&self.pipe);
    return NULL;
}
