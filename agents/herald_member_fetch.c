/*  =========================================================================
    herald_member_fetch - how a group member reads its partitions

    One REPLAY at a time over the group's prefixes, from the lowest
    position of the partitions held, with credit (buffered events plus
    credit outstanding stay under MEMBER_WINDOW: nothing is lost to a
    high-water mark, nothing piles up in memory).  Each event is kept
    only when its partition is held and its seq is above what that
    partition has committed and what this member already kept; the others
    are examined and forgotten.  At END (the head reached) the member
    waits for the doorbell, any message on its SUB (an event of the
    group's prefixes, or a `$hb` with a head above what was read), and
    then REPLAYs again from where the last one ended.  A new grant
    restarts the fetch from the new lowest position (CANCEL of the
    running one): the grant may be behind what is buffered.
    =========================================================================
*/

#include <inttypes.h>
#include "herald_member_priv.h"

static void
s_credit (herald_member_t *self, uint64_t credit)
{
    herald_msg_t msg;
    memset (&msg, 0, sizeof msg);
    msg.type = HERALD_MSG_CREDIT;
    msg.has_rid = true;
    msg.rid = self->fetch_rid;
    msg.credit.credit = credit;
    self->buffer.size = 0;
    if (herald_msg_encode (&msg, &self->buffer) == 0 && herald_member_send (self, "CREDIT") == 0)
        self->credit_out += credit;
}

static void
s_cancel (herald_member_t *self)
{
    if (!self->fetch_rid || self->fetch_ended)
        return;
    herald_msg_t msg;
    memset (&msg, 0, sizeof msg);
    msg.type = HERALD_MSG_CANCEL;
    msg.has_rid = true;
    msg.rid = self->fetch_rid;
    self->buffer.size = 0;
    if (herald_msg_encode (&msg, &self->buffer) == 0)
        herald_member_send (self, "CANCEL");
}

//  A REPLAY from `from`.
static void
s_replay (herald_member_t *self, uint64_t from)
{
    uint64_t room = MEMBER_WINDOW - self->event_count;
    herald_msg_t msg;
    memset (&msg, 0, sizeof msg);
    msg.type = HERALD_MSG_REPLAY;
    msg.has_rid = true;
    msg.rid = self->next_rid++;
    msg.replay.has_from = true;
    msg.replay.from = from;
    herald_str_t prefixes [HERALD_PREFIXES_MAX];
    for (size_t index = 0; index < self->prefix_count && index < HERALD_PREFIXES_MAX; index++)
        prefixes [index] = (herald_str_t) { self->prefixes [index],
                                            strlen (self->prefixes [index]) };
    msg.replay.prefixes = prefixes;
    msg.replay.prefix_count = self->prefix_count;
    msg.replay.credit = room;
    msg.replay.pack = true;
    self->buffer.size = 0;
    if (herald_msg_encode (&msg, &self->buffer) != 0 || herald_member_send (self, "REPLAY") != 0) {
        self->fetch_retry_at = herald_agent_now_ms () + 100;
        return;
    }
    self->fetch_rid = msg.rid;
    self->fetch_from = from;
    self->read_to = from - 1;
    self->credit_out = room;
    self->fetch_ended = false;
    self->fetch_more = false;
    self->fetch_overflow = false;
    self->doorbell = false;
    self->fetch_retry_at = 0;
}

//  The lowest position held, or 0 when nothing is held.
static uint64_t
s_lowest (herald_member_t *self)
{
    uint64_t lowest = UINT64_MAX;
    for (uint32_t p = 0; p < self->partitions; p++) {
        member_part_t *part = &self->parts [p];
        if (part->held && !part->revoked && part->taken < lowest)
            lowest = part->taken;
    }
    return lowest == UINT64_MAX? 0: lowest + 1;
}

void
herald_member_fetch_restart (herald_member_t *self)
{
    s_cancel (self);
    self->fetch_rid = 0;
    self->fetch_ended = false;
    self->credit_out = 0;
    //  Keep the batch in hand (or being declared); forget the rest, and
    //  where each partition was kept to, down to what is in hand or done
    size_t keep = self->batch_state == BATCH_NONE? 0: self->batch_count;
    while (self->event_count > keep)
        zframe_destroy (&self->events [--self->event_count].frame);
    for (uint32_t p = 0; p < self->partitions; p++) {
        member_part_t *part = &self->parts [p];
        part->taken = part->done > part->committed? part->done: part->committed;
    }
    for (size_t index = 0; index < self->event_count; index++) {
        member_part_t *part = &self->parts [self->events [index].partition];
        if (self->events [index].seq > part->taken)
            part->taken = self->events [index].seq;
    }
    if (!self->welcomed || self->failed)
        return;
    uint64_t from = s_lowest (self);
    if (from)
        s_replay (self, from);
}

void
herald_member_fetch_drop (herald_member_t *self, uint32_t partition, size_t keep)
{
    size_t to = keep;
    for (size_t index = keep; index < self->event_count; index++) {
        if (self->events [index].partition == partition)
            zframe_destroy (&self->events [index].frame);
        else
            self->events [to++] = self->events [index];
    }
    self->event_count = to;
}

void
herald_member_fetch_consume (herald_member_t *self, size_t count)
{
    if (count > self->event_count)
        count = self->event_count;
    for (size_t index = 0; index < count; index++)
        zframe_destroy (&self->events [index].frame);
    memmove (self->events, self->events + count,
             (self->event_count - count) * sizeof self->events [0]);
    self->event_count -= count;
}

//  One envelope of the fetch: kept or forgotten.
static int
s_event (herald_member_t *self, const uint8_t *envelope, size_t len)
{
    const char *topic;
    size_t topic_len;
    uint64_t seq = 0, ver, ts;
    if (!herald_event_peek (envelope, len, &topic, &topic_len, &seq, &ver, &ts) || seq == 0)
        return -1;
    if (self->credit_out)
        self->credit_out--;
    if (self->fetch_overflow)
        return 0;                       //  read again from what was kept
    if (seq <= self->read_to)
        return 0;                       //  never twice, whatever the broker sends
    self->read_to = seq;
    uint32_t p = herald_member_partition (topic, topic_len, self->partitions);
    member_part_t *part = &self->parts [p];
    if (!part->held || part->revoked || seq <= part->committed || seq <= part->taken)
        return 0;
    if (self->event_count == MEMBER_WINDOW) {
        //  More than the credit allowed: never dropped, read again later
        //  from the partitions' positions (herald_member_fetch_tick)
        self->read_to = seq - 1;
        self->fetch_overflow = true;
        return 0;
    }
    zframe_t *frame = zframe_new (envelope, len);
    if (!frame)
        return -1;
    self->events [self->event_count++] = (member_event_t) { frame, seq, p };
    part->taken = seq;
    return 0;
}

void
herald_member_fetch_reply (herald_member_t *self, const herald_msg_t *reply, zmsg_t *msg)
{
    if (reply->type == HERALD_MSG_END) {
        //  Not past an overflow: what came beyond it was not kept
        if (!self->fetch_overflow && reply->end.last > self->read_to)
            self->read_to = reply->end.last;
        if (reply->end.head > self->head)
            self->head = reply->end.head;
        self->fetch_ended = true;
        self->fetch_more = reply->end.last < reply->end.head;
        return;
    }
    if (reply->type == HERALD_MSG_ERROR) {
        //  A stream that met damage ends with internal: read on from what
        //  came, a moment later.  Anything else is the subscription's end
        if (reply->error.code == HERALD_ERR_INTERNAL || reply->error.code == HERALD_ERR_OVERLOADED) {
            self->fetch_ended = true;
            self->fetch_more = true;
            self->fetch_retry_at = herald_agent_now_ms () + 1000;
        }
        else
        if (reply->error.code == HERALD_ERR_TRIMMED && reply->error.has_first)
            //  Its committed position is behind a trim: stopped, nothing
            //  skipped; the operator moves the group on (or replays the
            //  archive into it first)
            herald_member_fail (self, reply->error.code, "group %s: its REPLAY was refused: "
                                "trimmed: %.*s. Stopped, nothing skipped; to go on from seq %"
                                PRIu64 ": herald group reset %s --to-seq %" PRIu64 " (the "
                                "trimmed events are only in the archive: herald replay "
                                "--archive DIR)", self->group, (int) reply->error.message.len,
                                reply->error.message.ptr, reply->error.first, self->group,
                                reply->error.first);
        else
            herald_member_fail (self, reply->error.code, "group %s: its REPLAY was refused: "
                                "%s: %.*s", self->group, herald_err_code (reply->error.code),
                                (int) reply->error.message.len, reply->error.message.ptr);
        return;
    }
    zmsg_first (msg);
    zmsg_next (msg);
    zframe_t *frame;
    while ((frame = zmsg_next (msg))) {
        size_t offset = 0, len;
        const uint8_t *envelope;
        int more;
        while ((more = herald_msg_events_next (zframe_data (frame), zframe_size (frame),
                                               &offset, &envelope, &len)) > 0)
            if (s_event (self, envelope, len) != 0) {
                more = -1;
                break;
            }
        if (more < 0) {
            herald_member_fail (self, HERALD_ERR_CORRUPT, "group %s: an event from the broker "
                                "does not decode", self->group);
            return;
        }
    }
}

void
herald_member_fetch_doorbell (herald_member_t *self, zframe_t *topic, zframe_t *body)
{
    size_t size = zframe_size (topic);
    const char *data = (const char *) zframe_data (topic);
    if (size == 3 && memcmp (data, "$hb", 3) == 0) {
        herald_msg_t msg;
        herald_error_t err;
        msgpack_zone_clear (&self->zone);
        if (body && herald_msg_decode (&msg, HERALD_MSG_HEARTBEAT, zframe_data (body),
                                       zframe_size (body), NULL, &self->zone, &err) == HERALD_OK) {
            //  A new epoch: the node restarted (or, in a cluster, a new
            //  term began).  A stream it was sending died with the old
            //  process, and no END will come: read again
            bool restarted = self->hb_epoch_known && msg.heartbeat.epoch != self->hb_epoch;
            self->hb_epoch = msg.heartbeat.epoch;
            self->hb_epoch_known = true;
            if (restarted && self->fetch_rid && !self->fetch_ended)
                herald_member_fetch_restart (self);
            if (msg.heartbeat.head > self->head)
                self->head = msg.heartbeat.head;
            if (msg.heartbeat.head > self->read_to)
                self->doorbell = true;
        }
        return;
    }
    if (size && *data == '$')
        return;                         //  $hello and what a newer broker adds
    self->doorbell = true;
}

void
herald_member_fetch_tick (herald_member_t *self, int64_t now)
{
    if (!self->welcomed || self->failed)
        return;
    if (self->fetch_overflow) {
        s_cancel (self);
        self->fetch_rid = 0;
        self->fetch_overflow = false;
    }
    if (self->fetch_rid && !self->fetch_ended) {
        //  Credit as the buffer drains: buffered plus outstanding stay
        //  under the window
        uint64_t used = self->event_count + self->credit_out;
        if (used < MEMBER_WINDOW / 2)
            s_credit (self, MEMBER_WINDOW - used);
        return;
    }
    if (self->fetch_retry_at && now < self->fetch_retry_at)
        return;
    if (self->event_count > MEMBER_WINDOW / 2)
        return;                         //  read on once the handler has caught up
    uint64_t lowest = s_lowest (self);
    if (!lowest)
        return;
    if (!self->fetch_rid)
        s_replay (self, lowest);
    else
    if (self->fetch_more || self->doorbell || self->fetch_retry_at)
        s_replay (self, self->read_to + 1 > lowest? self->read_to + 1: lowest);
}
