/*  =========================================================================
    herald_agent_batch - batch handlers on the agent's delivery thread

    DESIGN (issue 16: one call for many events)

    A run is the events of one pipe batch (or member batch) that go to the
    handler in one call: decoded into `events`, viewed in `views`, their
    envelopes copied back to back into `envelopes` (one buffer a binding
    reads in one go).  A local subscription's run ends before a duplicate
    (seq <= done, an id in the window or earlier in the run), which is
    dropped between two runs exactly as the per-event path drops it.

    Checkpoint (herald_checkpoint.c): intent (first, span to last) before
    each call; after it, each handled event is committed in order, the
    span kept over the rest.  A kill -9 during the call or the commits
    redelivers every uncommitted event of the run, each flagged
    redelivered (herald_checkpoint_doubt_until); the handled ones that
    were committed are not delivered again.

    Schemas (herald_agent_subscribe_batch_with): each event of a run is
    converted as it joins it (its bytes kept until the call returns).  An
    event that cannot be converted ends the run before it; as the first
    of the next run it meets the policy exactly as on the per-event path
    (herald_agent_deliver_schema): STOP fails the subscription, SKIP and
    PARK leave it out of every batch while the checkpoint passes it
    (intent, skip or park, commit), so the handler's batches hold only
    converted events and the events before it were committed first.

    herald_agent_deliver.c calls in here for a subscription with a
    batch_handler (herald_agent_subscribe_batch, _group_batch,
    _batch_with); the dispatch, failure and backoff steps are its own,
    shared.
    =========================================================================
*/

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include "herald_agent_priv.h"
#include "herald_event.h"
#include "herald_member.h"
#include "herald_text.h"

struct _herald_agent_many_t {
    msgpack_zone zone;
    herald_event_t events [HERALD_BATCH_MAX];
    herald_delivery_t views [HERALD_BATCH_MAX];
    uint8_t redelivered [HERALD_BATCH_MAX];
    size_t offsets [HERALD_BATCH_MAX + 1];  //  of each envelope in `envelopes`
    //  The run's ids, hashed: index + 1 of the event (0: empty), cleared
    //  per run; a linear scan would cost O(run) per event
    uint16_t ids [HERALD_BATCH_MAX * 2];
    //  Schemas: each event's converted data (NULL: as stored), freed after
    //  the run's call
    void *converted [HERALD_BATCH_MAX];
    uint8_t *envelopes;
    size_t capacity;
};

void
herald_agent_many_destroy (herald_agent_many_t **self_p)
{
    if (*self_p) {
        msgpack_zone_destroy (&(*self_p)->zone);
        free ((*self_p)->envelopes);
        free (*self_p);
        *self_p = NULL;
    }
}

//  Decode frame as the run's event number index (view and envelope).
//  False (the subscription failed) when it does not decode.
static bool
s_many_add (herald_agent_many_t *many, herald_agent_t *agent, herald_agent_sub_t *sub,
            size_t index, zframe_t *frame)
{
    herald_error_t err;
    if (herald_event_decode (&many->events [index], zframe_data (frame), zframe_size (frame),
                             &many->zone, &err) != HERALD_OK) {
        char message [HERALD_ERROR_MESSAGE_MAX];
        herald_text_format (message, sizeof message,
                            "an event from the broker does not decode: %s", err.message);
        herald_agent_deliver_fail (agent, sub, HERALD_ERR_CORRUPT, message);
        return false;
    }
    size_t at = many->offsets [index];
    if (at + zframe_size (frame) > many->capacity) {
        size_t capacity = (at + zframe_size (frame)) * 2;
        uint8_t *bigger = realloc (many->envelopes, capacity);
        if (!bigger) {
            herald_agent_deliver_fail (agent, sub, HERALD_ERR_NOMEM, "out of memory for a batch");
            return false;
        }
        many->envelopes = bigger;
        many->capacity = capacity;
    }
    memcpy (many->envelopes + at, zframe_data (frame), zframe_size (frame));
    many->offsets [index + 1] = at + zframe_size (frame);
    //  The view's envelope is set once the buffer stops moving (s_many_call)
    herald_agent_view (&many->views [index], &many->events [index], zframe_data (frame),
                       zframe_size (frame));
    many->views [index].subscription = sub->name;
    return true;
}

//  Call sub's batch handler with the run's events [0, count) until they
//  are all handled, committing each handled one (checkpoint: when the
//  subscription has one).  Returns how many were handled; fewer than
//  count when the subscription must not go on (failed, stopping, or the
//  dispatched call was abandoned).
static size_t
s_many_call (herald_agent_many_t *many, herald_agent_t *agent, herald_agent_sub_t *sub,
             size_t count)
{
    herald_checkpoint_t *checkpoint = sub->checkpoint;
    for (size_t index = 0; index < count; index++) {
        many->views [index].envelope = many->envelopes + many->offsets [index];
        many->views [index].redelivered = many->redelivered [index];
    }
    uint64_t last = many->events [count - 1].seq;
    size_t done = 0;
    unsigned attempt = 1;
    int backoff = 10;
    while (done < count) {
        herald_delivery_batch_t batch = {
            .size = sizeof batch, .subscription = sub->name, .events = many->views + done,
            .count = count - done, .envelopes = many->envelopes + many->offsets [done],
            .envelopes_len = many->offsets [count] - many->offsets [done],
            .redelivered = many->redelivered + done, .attempt = attempt,
            .handled = count - done
        };
        for (size_t index = done; index < count; index++)
            many->views [index].attempt = attempt;
        if (checkpoint)
            herald_checkpoint_intent_span (checkpoint, many->events [done].seq,
                                           many->events [done].id, last);
        int rc;
        if (agent->dispatch_fd >= 0) {
            herald_call_t call = { .kind = HERALD_CALL_HANDLER, .sub = sub, .batch = &batch };
            if (!herald_agent_deliver_call (agent, &call, sub))
                return done;        //  abandoned: stopping; not committed
            rc = call.rc;
        }
        else
            rc = sub->batch_handler (&batch, sub->arg);
        size_t handled = batch.handled < batch.count? batch.handled: batch.count;
        for (size_t index = done; index < done + handled; index++) {
            if (checkpoint) {
                if (index > done)
                    herald_checkpoint_intent_span (checkpoint, many->events [index].seq,
                                                   many->events [index].id, last);
                herald_checkpoint_commit_span (checkpoint, last);
            }
            atomic_store_explicit (&sub->done_seq, many->events [index].seq,
                                   memory_order_relaxed);
            atomic_fetch_add_explicit (&sub->delivered, 1, memory_order_relaxed);
        }
        done += handled;
        if (handled)
            backoff = 10;           //  progress: the backoff starts over
        if (rc == HERALD_OK && (handled || done == count))
            continue;
        if (rc != HERALD_OK && rc != HERALD_RETRY) {
            char message [512];             //  a topic is at most 255 bytes
            herald_event_t *event = &many->events [done < count? done: count - 1];
            herald_text_format (message, sizeof message, "the batch handler returned %d for "
                                "seq %" PRIu64 " (%.*s)", rc, event->seq,
                                (int) event->topic_len, event->topic);
            herald_agent_deliver_fail (agent, sub, rc, message);
            return done;
        }
        //  RETRY, or OK having handled none: back off, offer the rest again
        if (done == count)
            break;
        atomic_fetch_add_explicit (&sub->retries, 1, memory_order_relaxed);
        if (!herald_agent_deliver_backoff (agent, sub, backoff))
            return done;
        backoff = backoff * 2 > agent->options.retry_max_ms? agent->options.retry_max_ms
                                                            : backoff * 2;
        attempt++;
    }
    return done;
}

//  Free the converted data of the run's events [0, count).
static void
s_many_release (herald_agent_many_t *many, size_t count)
{
    for (size_t index = 0; index < count; index++) {
        free (many->converted [index]);
        many->converted [index] = NULL;
    }
}

//  Schemas: convert the run's event number count (its view) before it
//  joins the run.  HANDLE: it joins; UNCONVERTED (count > 0: the policy is
//  not applied yet): the run ends before it; PASSED (a run's first, skipped
//  or parked: its intent written when there is a checkpoint) and FAILED.
static herald_agent_verdict_t
s_many_convert (herald_agent_many_t *many, herald_agent_t *agent, herald_agent_sub_t *sub,
                size_t count, herald_checkpoint_t *checkpoint)
{
    many->converted [count] = NULL;
    if (!sub->schema)
        return HERALD_AGENT_HANDLE;
    many->views [count].redelivered = many->redelivered [count];
    return herald_agent_deliver_schema (agent, sub, &many->views [count], checkpoint,
                                        count == 0, &many->converted [count]);
}

//  True when id is one of the run's events already in `ids`; else adds
//  event index (whose id it is) there.
static bool
s_many_has (herald_agent_many_t *many, size_t index, const uint8_t id [16])
{
    uint64_t key;
    memcpy (&key, id + 8, sizeof key);      //  UUIDv7: the random half
    size_t mask = HERALD_BATCH_MAX * 2 - 1;
    size_t pos = (size_t) (key * 0x9E3779B97F4A7C15ULL >> 40) & mask;
    while (many->ids [pos]) {
        if (memcmp (many->events [many->ids [pos] - 1].id, id, 16) == 0)
            return true;
        pos = (pos + 1) & mask;
    }
    many->ids [pos] = (uint16_t) (index + 1);
    return false;
}

//  *self_p, made on first use; NULL when out of memory.
static herald_agent_many_t *
s_many_ready (herald_agent_many_t **self_p)
{
    if (!*self_p && (*self_p = calloc (1, sizeof (herald_agent_many_t)))
    &&  !msgpack_zone_init (&(*self_p)->zone, 8192)) {
        free (*self_p);
        *self_p = NULL;
    }
    return *self_p;
}

//  A pipe batch of a local subscription with a batch handler (`busy` set,
//  not stopping).
void
herald_agent_many_deliver (herald_agent_many_t **self_p, herald_agent_t *agent,
                           herald_batch_t *batch)
{
    herald_agent_sub_t *sub = batch->sub;
    herald_checkpoint_t *checkpoint = sub->checkpoint;
    herald_agent_many_t *many = s_many_ready (self_p);
    if (!many) {
        herald_agent_deliver_fail (agent, sub, HERALD_ERR_NOMEM, "out of memory for a batch");
        return;
    }
    uint64_t doubt_until = herald_checkpoint_doubt_until (checkpoint);
    size_t index = 0;
    while (index < batch->count) {
        if (atomic_load (&sub->stop) || atomic_load (&agent->stopping))
            return;
        msgpack_zone_clear (&many->zone);
        size_t count = 0;
        many->offsets [0] = 0;
        memset (many->ids, 0, sizeof many->ids);
        for (; index < batch->count; index++) {
            if (!s_many_add (many, agent, sub, count, batch->frames [index])) {
                s_many_release (many, count);
                return;
            }
            herald_event_t *event = &many->events [count];
            bool duplicate = event->seq <= herald_checkpoint_done (checkpoint)
                          || herald_checkpoint_seen (checkpoint, event->id);
            if (count && (duplicate || s_many_has (many, count, event->id)))
                break;              //  the run ends before it; seen again next turn
            if (!count && !duplicate)
                s_many_has (many, count, event->id);    //  the run's first: added
            if (duplicate) {
                atomic_fetch_add_explicit (&sub->duplicates, 1, memory_order_relaxed);
                if (event->seq > herald_checkpoint_done (checkpoint)) {
                    herald_checkpoint_advance (checkpoint, event->seq);
                    atomic_store_explicit (&sub->done_seq, event->seq, memory_order_relaxed);
                }
                msgpack_zone_clear (&many->zone);
                continue;
            }
            //  The first event after a crash inside a call, and the rest
            //  of that call's batch, are in doubt
            many->redelivered [count] = (count == 0 && herald_checkpoint_in_doubt (checkpoint))
                                     || event->seq <= doubt_until;
            herald_agent_verdict_t verdict = s_many_convert (many, agent, sub, count,
                                                             checkpoint);
            if (verdict == HERALD_AGENT_UNCONVERTED)
                break;              //  the run ends before it: next turn's first
            if (verdict == HERALD_AGENT_FAILED)
                return;             //  count is 0: nothing converted to free
            if (verdict == HERALD_AGENT_PASSED) {
                //  Skipped or parked, alone: the checkpoint passes it (its
                //  id, added as the run's first, leaves the run's ids)
                herald_checkpoint_commit (checkpoint);
                atomic_store_explicit (&sub->done_seq, event->seq, memory_order_relaxed);
                atomic_fetch_add_explicit (&sub->delivered, 1, memory_order_relaxed);
                memset (many->ids, 0, sizeof many->ids);
                msgpack_zone_clear (&many->zone);
                continue;
            }
            count++;
        }
        size_t handled = count? s_many_call (many, agent, sub, count): 0;
        s_many_release (many, count);
        if (handled < count)
            return;
    }
    if (!atomic_load (&sub->stop) && !atomic_load (&agent->stopping)
    &&  batch->marker > herald_checkpoint_done (checkpoint)) {
        herald_checkpoint_advance (checkpoint, batch->marker);
        atomic_store_explicit (&sub->done_seq, batch->marker, memory_order_relaxed);
    }
}

//  A member batch of a group subscription with a batch handler: the
//  events the member admits, up to the first it refuses, in one run.
//  Returns how many were handled (for herald_member_done).
size_t
herald_agent_many_group (herald_agent_many_t **self_p, herald_agent_t *agent,
                         herald_batch_t *batch)
{
    herald_agent_sub_t *sub = batch->sub;
    herald_agent_many_t *many = s_many_ready (self_p);
    if (!many) {
        herald_agent_deliver_fail (agent, sub, HERALD_ERR_NOMEM, "out of memory for a batch");
        return 0;
    }
    //  Runs of admitted events; with schemas, one ends before an event that
    //  cannot be converted, which meets the policy alone (PASSED counts as
    //  handled: the member commits past it)
    size_t handled = 0, index = 0;
    bool halted = false;
    while (index < batch->count && !halted) {
        msgpack_zone_clear (&many->zone);
        many->offsets [0] = 0;
        size_t count = 0;
        for (; index < batch->count; index++) {
            if (atomic_load (&sub->stop) || atomic_load (&agent->stopping)
            ||  !herald_member_admit (sub->member)) {
                halted = true;
                break;
            }
            if (!s_many_add (many, agent, sub, count, batch->frames [index])) {
                s_many_release (many, count);
                return handled;
            }
            many->redelivered [count] = batch->redelivered [index];
            herald_agent_verdict_t verdict = s_many_convert (many, agent, sub, count, NULL);
            if (verdict == HERALD_AGENT_UNCONVERTED)
                break;
            if (verdict == HERALD_AGENT_FAILED)
                return handled;     //  count is 0
            if (verdict == HERALD_AGENT_PASSED) {
                atomic_store_explicit (&sub->done_seq, many->events [count].seq,
                                       memory_order_relaxed);
                atomic_fetch_add_explicit (&sub->delivered, 1, memory_order_relaxed);
                handled++;
                msgpack_zone_clear (&many->zone);
                continue;
            }
            count++;
        }
        size_t done = count? s_many_call (many, agent, sub, count): 0;
        s_many_release (many, count);
        handled += done;
        if (done < count)
            break;
    }
    return handled;
}
