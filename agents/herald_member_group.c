/*  =========================================================================
    herald_member_group - the group's side of a member: heartbeats and the
    lease, assignments and revokes, commits, and the batches they frame

    Declare, then hand over: a batch's commit (delivered = each
    partition's last seq in the batch) is answered before the delivery
    thread gets it; what it handled is
    committed by the next commit.  A revoke waits for the batch in hand,
    commits with delivered = committed, and only then lets the partition
    go (the loop heartbeats at once without it).  A fenced partition is
    dropped the moment a commit says so.
    =========================================================================
*/

#include "herald_member_priv.h"

void
herald_member_status_update (herald_member_t *self)
{
    unsigned owned = 0;
    uint64_t lowest = UINT64_MAX;
    for (uint32_t p = 0; p < self->partitions; p++)
        if (self->parts [p].held) {
            owned++;
            uint64_t c = self->parts [p].committed;
            if (c < lowest)
                lowest = c;
        }
    pthread_mutex_lock (&self->lock);
    self->status.partitions = self->partitions;
    self->status.owned = owned;
    self->status.committed = owned? lowest: 0;
    self->status.lag = owned && self->head > lowest? self->head - lowest: 0;
    pthread_mutex_unlock (&self->lock);
}


//  ---------------------------------------------------------------------
//  Requests

void
herald_member_heartbeat (herald_member_t *self, int64_t now)
{
    herald_member_pos_t owned [MEMBER_PARTITIONS];
    size_t count = 0;
    for (uint32_t p = 0; p < self->partitions; p++)
        if (self->parts [p].held)
            owned [count++] = (herald_member_pos_t) { p, self->parts [p].epoch, 0, 0 };
    uint64_t rid = self->next_rid++;
    self->buffer.size = 0;
    //  What makes the group goes with the join only
    bool join = !self->joined;
    if (herald_member_encode_heartbeat (&self->buffer, rid, self->group, self->member,
                                        self->prefixes, self->prefix_count, owned, count,
                                        join? self->opt_partitions: 0,
                                        join? self->opt_session_ms: 0,
                                        join? self->from_seq: 0) != 0
    ||  herald_member_send (self, "GROUP") != 0) {
        self->hb_due = now + 10;
        return;
    }
    self->hb_rids [self->hb_next_slot] = rid;
    self->hb_sent [self->hb_next_slot] = now;
    self->hb_next_slot = (self->hb_next_slot + 1) % MEMBER_HB_RING;
    if (!self->hb_waiting_since)
        self->hb_waiting_since = now;
    self->hb_due = now + (int64_t) (self->heartbeat_ms? self->heartbeat_ms: 500);
}

//  Send the commit in self->commit_pos (again, after a move).
void
herald_member_commit_send (herald_member_t *self)
{
    self->commit_rid = self->next_rid++;
    self->commit_sent = herald_agent_now_ms ();
    self->buffer.size = 0;
    if (herald_member_encode_commit (&self->buffer, self->commit_rid, self->group, self->member,
                                     self->commit_pos, self->commit_count) != 0
    ||  herald_member_send (self, "GROUP") != 0)
        self->commit_sent = 0;          //  sent again by the patience timer
}

//  Commit every held partition: committed = what is done (never below
//  what it was granted with), delivered = for a declare, its last seq in
//  the batch (part->declared), else committed.
void
herald_member_commit (herald_member_t *self, member_commit_kind_t kind)
{
    self->commit_count = 0;
    for (uint32_t p = 0; p < self->partitions; p++) {
        member_part_t *part = &self->parts [p];
        if (!part->held)
            continue;
        uint64_t committed = part->done > part->committed? part->done: part->committed;
        uint64_t delivered = kind == COMMIT_DECLARE && !part->revoked
                          && part->declared > committed? part->declared: committed;
        //  What the previous owner declared stays declared until it is
        //  handled here: a lower `delivered` (a batch of older events, a
        //  release, the last commit) would let the next owner give those
        //  events again unflagged
        if (delivered < part->redeliver_to)
            delivered = part->redeliver_to;
        self->commit_pos [self->commit_count++] = (herald_member_pos_t) {
            p, part->epoch, committed, delivered };
        part->committed_sent = committed;
    }
    self->commit_kind = kind;
    herald_member_commit_send (self);
}

//  Partition p is no longer this member's: forget it and its events.
static void
s_let_go (herald_member_t *self, uint32_t p)
{
    member_part_t *part = &self->parts [p];
    part->held = false;
    part->revoked = false;
    //  The batch in hand keeps its events (the delivery thread has them);
    //  a batch being declared loses this partition's
    if (self->batch_state == BATCH_HANDED) {
        herald_member_fetch_drop (self, p, self->batch_count);
        return;
    }
    if (self->batch_state == BATCH_DECLARING) {
        //  Counted first: the batch is the first batch_count events, and
        //  only those of p leave it (a count taken while it shrinks would
        //  miss some and pull undeclared events into the batch)
        size_t of_p = 0;
        for (size_t index = 0; index < self->batch_count; index++)
            of_p += self->events [index].partition == p;
        self->batch_count -= of_p;
    }
    herald_member_fetch_drop (self, p, 0);
}

//  ---------------------------------------------------------------------
//  Batches

//  Below what is every kept event handled, from the buffer's event
//  `from` on: what the stream examined, and below the lowest event still
//  buffered.  Not events [from] alone: after a grant the buffer holds the
//  batch in hand (or its unhandled rest) ahead of the new stream's older
//  events, so it is not in seq order.
static uint64_t
s_examined_below (herald_member_t *self, size_t from)
{
    uint64_t bound = self->read_to;
    for (size_t index = from; index < self->event_count; index++)
        if (self->events [index].seq - 1 < bound)
            bound = self->events [index].seq - 1;
    return bound;
}

//  Events handled: done advances for every partition covered when the
//  batch was built (the stream read them all up to `to`).
static void
s_advance (herald_member_t *self, uint64_t to, uint64_t serial)
{
    for (uint32_t p = 0; p < self->partitions; p++) {
        member_part_t *part = &self->parts [p];
        if (part->held && !part->revoked && part->since < serial && to > part->done)
            part->done = to;
    }
}

void
herald_member_batch_build (herald_member_t *self)
{
    size_t count = self->event_count < self->batch_max? self->event_count: self->batch_max;
    self->batch_count = count;
    self->batch_serial++;
    //  Per partition, its last seq in the batch: the batch is not in seq
    //  order after a grant (the rest of the batch in hand, then the new
    //  partition's older events), so its last event is not its highest,
    //  and one `delivered` for all would declare too little for some
    //  partitions (their events handed over undeclared) and too much for
    //  others (flagged after a kill though never given)
    for (uint32_t p = 0; p < self->partitions; p++)
        self->parts [p].declared = 0;
    self->batch_last = 0;
    for (size_t index = 0; index < count; index++) {
        member_event_t *event = &self->events [index];
        if (event->seq > self->parts [event->partition].declared)
            self->parts [event->partition].declared = event->seq;
        if (event->seq > self->batch_last)
            self->batch_last = event->seq;
    }
    self->batch_state = BATCH_DECLARING;
    herald_member_commit (self, COMMIT_DECLARE);
}

bool
herald_member_lease_valid (herald_member_t *self)
{
    return herald_agent_now_ms () < atomic_load (&self->lease_until);
}

//  The declare was answered: hand the batch over.
static void
s_batch_hand (herald_member_t *self)
{
    if (self->batch_count == 0 || !herald_member_lease_valid (self) || atomic_load (&self->hold)
    ||  atomic_load (&self->stop) || self->failed) {
        self->batch_state = BATCH_NONE;
        return;
    }
    herald_batch_t *batch = calloc (1, sizeof *batch);
    if (!batch) {
        self->batch_state = BATCH_NONE;
        return;
    }
    batch->kind = HERALD_BATCH_EVENTS;
    batch->sub = self->sub;
    for (size_t index = 0; index < self->batch_count; index++) {
        member_event_t *event = &self->events [index];
        batch->frames [index] = zframe_dup (event->frame);
        if (!batch->frames [index]) {
            herald_batch_destroy (&batch);
            self->batch_state = BATCH_NONE;
            return;
        }
        batch->redelivered [index] = event->seq <= self->parts [event->partition].redeliver_to;
        batch->count++;
    }
    atomic_store (&self->done_posted, false);
    self->batch_state = BATCH_HANDED;
    int timeout = (int) (self->heartbeat_ms? self->heartbeat_ms: 500);
    herald_err rc = herald_agent_group_push (self->agent, batch, timeout);
    if (rc != HERALD_OK)
        self->batch_state = BATCH_NONE;     //  freed; built again in a moment
    if (rc == HERALD_ERR_INVALID)
        self->push_refused = true;          //  the agent is stopping
}

//  herald_member_done came: handled events are done.
void
herald_member_batch_done (herald_member_t *self)
{
    size_t handled = atomic_load (&self->handled);
    if (handled > self->batch_count)
        handled = self->batch_count;
    if (handled) {
        uint64_t redelivered = 0;
        for (size_t index = 0; index < handled; index++) {
            member_event_t *event = &self->events [index];
            member_part_t *part = &self->parts [event->partition];
            if (event->seq <= part->redeliver_to)
                redelivered++;
            if (event->seq > part->done)
                part->done = event->seq;
        }
        uint64_t to = handled == self->batch_count? self->batch_last
                                                  : self->events [handled - 1].seq;
        uint64_t below = s_examined_below (self, handled);
        s_advance (self, to < below? to: below, self->batch_serial);
        herald_member_fetch_consume (self, handled);
        pthread_mutex_lock (&self->lock);
        self->status.redelivered += redelivered;
        pthread_mutex_unlock (&self->lock);
    }
    self->batch_state = BATCH_NONE;
    self->batch_count = 0;
}

//  ---------------------------------------------------------------------
//  Replies

void
herald_member_on_heartbeat (herald_member_t *self, herald_member_reply_t *reply)
{
    int64_t sent = 0;
    for (size_t slot = 0; slot < MEMBER_HB_RING; slot++)
        if (self->hb_rids [slot] == reply->rid)
            sent = self->hb_sent [slot];
    if (!sent || reply->rid <= self->hb_last_answered)
        return;                         //  an older one than already heard
    self->hb_last_answered = reply->rid;
    self->redirect_backoff_ms = self->rotate_backoff_ms = 0;
    self->hb_waiting_since = 0;
    if (self->joined && reply->partitions != self->partitions) {
        herald_member_fail (self, HERALD_ERR_BAD_REQUEST, "group %s: the broker says %u "
                            "partitions, it said %u", self->group, reply->partitions,
                            self->partitions);
        return;
    }
    self->joined = true;
    self->partitions = reply->partitions;
    self->session_ms = reply->session_ms;
    self->heartbeat_ms = reply->heartbeat_ms;
    if (reply->head > self->head)
        self->head = reply->head;
    bool listed [MEMBER_PARTITIONS] = { false };
    bool granted = false, changed = false;
    for (size_t index = 0; index < reply->assigned_count; index++) {
        herald_member_pos_t *pos = &reply->assigned [index];
        member_part_t *part = &self->parts [pos->partition];
        listed [pos->partition] = true;
        if (part->held && part->epoch == pos->epoch) {
            if (pos->committed > part->committed)
                part->committed = pos->committed;
            continue;
        }
        if (part->held) {
            //  Held under another epoch: it was someone else's since.  Let
            //  it go the ordinary way; it comes back in a later reply
            if (!part->revoked)
                changed = true;
            part->revoked = true;
            continue;
        }
        *part = (member_part_t) {
            .held = true, .epoch = pos->epoch, .committed = pos->committed,
            .committed_sent = pos->committed, .redeliver_to = pos->delivered,
            .done = pos->committed, .taken = pos->committed, .since = self->batch_serial };
        granted = changed = true;
    }
    for (uint32_t p = 0; p < self->partitions; p++)
        if (self->parts [p].held && !listed [p] && !self->parts [p].revoked) {
            self->parts [p].revoked = true;
            changed = true;
        }
    bool revoking = false;
    for (uint32_t p = 0; p < self->partitions; p++)
        revoking |= self->parts [p].held && self->parts [p].revoked;
    if (revoking)
        atomic_store (&self->hold, true);
    //  The lease after the hold: a member whose lease had ended (and whose
    //  partition went to another meanwhile) is renewed by a reply that
    //  revokes; the delivery thread must never see the new lease without
    //  the hold, or it would admit an event of the partition now another's
    atomic_store (&self->lease_until, sent + (int64_t) (2 * reply->session_ms / 3));
    pthread_mutex_lock (&self->lock);
    self->status.generation = reply->generation;
    self->status.rebalances += changed;
    pthread_mutex_unlock (&self->lock);
    if (granted)
        herald_member_fetch_restart (self);
    herald_member_status_update (self);
}

void
herald_member_on_commit (herald_member_t *self, herald_member_reply_t *reply)
{
    if (reply->rid != self->commit_rid)
        return;
    self->commit_rid = 0;
    size_t fenced = 0;
    for (size_t index = 0; index < reply->fenced_count; index++) {
        uint32_t p = reply->fenced [index];
        if (p < self->partitions && self->parts [p].held) {
            s_let_go (self, p);
            fenced++;
        }
    }
    //  What was sent is now the broker's
    for (size_t index = 0; index < self->commit_count; index++) {
        member_part_t *part = &self->parts [self->commit_pos [index].partition];
        if (part->held && part->epoch == self->commit_pos [index].epoch
        &&  self->commit_pos [index].committed > part->committed)
            part->committed = self->commit_pos [index].committed;
    }
    if (self->commit_kind == COMMIT_DECLARE && self->batch_state == BATCH_DECLARING) {
        //  (a fenced partition's events left the batch with it)
        s_batch_hand (self);
    }
    if (self->commit_kind == COMMIT_RELEASE) {
        for (uint32_t p = 0; p < self->partitions; p++)
            if (self->parts [p].held && self->parts [p].revoked)
                s_let_go (self, p);
        self->hb_due = 0;               //  say so at once
    }
    //  Nothing left to let go: the hold ends.  Also when the revoked
    //  partitions left by a fence, in a declare or idle commit sent
    //  before the revoke was heard: no release commit follows then
    if (!herald_member_revoking (self) && !self->failed)
        atomic_store (&self->hold, false);
    pthread_mutex_lock (&self->lock);
    self->status.commits++;
    self->status.fenced += fenced;
    pthread_mutex_unlock (&self->lock);
    if (fenced)
        self->hb_due = 0;
    herald_member_status_update (self);
}


//  ---------------------------------------------------------------------
//  Between batches

//  Nothing kept is left unhandled up to the first buffered event (or, with
//  none, what the fetch examined): every partition's done is at least that.
void
herald_member_floor (herald_member_t *self)
{
    if (self->batch_state != BATCH_NONE || !self->fetch_rid)
        return;
    uint64_t floor = s_examined_below (self, 0);
    for (uint32_t p = 0; p < self->partitions; p++) {
        member_part_t *part = &self->parts [p];
        if (part->held && !part->revoked && floor > part->done)
            part->done = floor;
    }
}

bool
herald_member_revoking (herald_member_t *self)
{
    for (uint32_t p = 0; p < self->partitions; p++)
        if (self->parts [p].held && self->parts [p].revoked)
            return true;
    return false;
}

//  Something done that the broker has not recorded.
bool
herald_member_uncommitted (herald_member_t *self)
{
    for (uint32_t p = 0; p < self->partitions; p++) {
        member_part_t *part = &self->parts [p];
        uint64_t committed = part->done > part->committed? part->done: part->committed;
        if (part->held && committed > part->committed_sent)
            return true;
    }
    return false;
}

