/*  =========================================================================
    herald_commit_guard - the group commit's security checks of queued
    PUBLISH requests, just before they are proposed (herald_commit.c)

    Split out of herald_commit.c; herald_commit_priv.h is what they share.
    =========================================================================
*/

#include "herald_commit_priv.h"

//  The guard's table of proposed ids: keys are the 16 id bytes inside
//  the requests' bodies (borrowed), values their events.
static size_t
s_id_hash (const void *key)
{
    //  Ids are UUIDs: the second half is random even in a UUIDv7
    uint64_t low, high;
    memcpy (&high, key, 8);
    memcpy (&low, (const uint8_t *) key + 8, 8);
    return (size_t) ((low ^ (high * 0x9E3779B97F4A7C15ull)) * 0xBF58476D1CE4E5B9ull >> 7);
}

static int
s_id_compare (const void *one, const void *two)
{
    return memcmp (one, two, HERALD_ID_BYTES);
}

void
herald_commit_set_guard (herald_commit_t *self, const herald_commit_guard_t *guard)
{
    self->guard = *guard;
    if (guard->stored && !self->proposed) {
        self->proposed = zhashx_new ();
        assert (self->proposed);
        zhashx_set_key_hasher (self->proposed, s_id_hash);
        zhashx_set_key_comparator (self->proposed, s_id_compare);
        zhashx_set_key_duplicator (self->proposed, NULL);
        zhashx_set_key_destructor (self->proposed, NULL);
    }
}

//  A request's ids join the proposal being made (the first event with an
//  id stays: it is the one a later duplicate is a duplicate of).
static void
s_guard_remember (herald_commit_t *self, s_request_t *request)
{
    for (size_t i = 0; i < request->msg.publish.count; i++) {
        const herald_event_t *event = &request->msg.publish.events [i];
        zhashx_insert (self->proposed, event->id, (void *) event);
    }
}

//  Security: just before the queue is proposed, every request whose ids
//  name events the user may not publish (stored ones, or earlier ones of
//  this proposal or of proposals in flight) is answered and leaves the
//  queue, before anything of it can be stored; the others go on as if it
//  had never come.  With security off: nothing, not a lookup.
void
herald_commit_guard_queue (herald_commit_t *self)
{
    if (!self->guard.stored || zlistx_size (self->queue) == 0)
        return;
    zhashx_purge (self->proposed);
    //  A cluster leader's proposals in flight are not applied yet
    s_commit_t *commit = (s_commit_t *) zlistx_first (self->inflight);
    for (; commit; commit = (s_commit_t *) zlistx_next (self->inflight)) {
        s_request_t *request = (s_request_t *) zlistx_first (commit->requests);
        for (; request; request = (s_request_t *) zlistx_next (commit->requests))
            s_guard_remember (self, request);
    }
    size_t count = zlistx_size (self->queue);
    for (size_t taken = 0; taken < count; taken++) {
        s_request_t *request = (s_request_t *) zlistx_first (self->queue);
        zlistx_delete (self->queue, zlistx_cursor (self->queue));
        size_t events = request->msg.publish.count;
        if (request->refused || request->op) {
            //  Back from a proposal raft refused: refused already; an op
            //  is no PUBLISH: nothing to check
            zlistx_add_end (self->queue, request);
            continue;
        }
        if (events > self->earlier_capacity) {
            free (self->earlier);
            self->earlier = (const herald_event_t **) malloc (events * sizeof (void *));
            assert (self->earlier);
            self->earlier_capacity = events;
        }
        for (size_t i = 0; i < events; i++)
            self->earlier [i] = (const herald_event_t *) zhashx_lookup (
                self->proposed, request->msg.publish.events [i].id);
        herald_error_t err = { 0 };
        if (self->guard.stored (self->guard.arg, request->body, &request->msg,
                                self->earlier, &err) == HERALD_OK)
            s_guard_remember (self, request);
        else {
            //  Answered in its turn, after the requests before it
            request->refused = (herald_error_t *) malloc (sizeof (herald_error_t));
            assert (request->refused);
            *request->refused = err;
            self->queued_events -= events;
        }
        zlistx_add_end (self->queue, request);
    }
    zhashx_purge (self->proposed);
}
