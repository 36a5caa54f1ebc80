/*  =========================================================================
    herald_io_sub - one subscription inside the I/O actor

    DESIGN

    The agent's SUB socket takes the whole live stream (every topic), so
    seq on it is gapless: any jump is a loss, and a heartbeat's head above
    the last seq seen is a loss at the tail (the broker sends an event
    before any heartbeat that counts it).  herald_io.c tracks that
    and tells each subscription where the live stream is contiguous from
    (herald_io_sub_coverage).  A subscription forwards an event to the
    delivery thread only when every matching event before it was
    forwarded, so the handler sees each event once, in seq order.

    Two numbers per subscription:
      forwarded   the highest seq handed to the delivery thread
      examined    every matching event with seq <= examined was forwarded
                  (>= forwarded; a replay's END `last`, a heartbeat's head)
    Each batch to the delivery thread carries `examined` as a marker, so
    the checkpoint moves on even when nothing matched.

    State table (events down, states across):

                      CATCHUP                         LIVE
      start           replay from examined + 1        -
      live event      hold it if it matches           forward if seq > forwarded
                      (full: drop all held,           examined = seq
                      coverage from seq + 1)
      coverage(P)     drop held, buffer_from = P      P > examined + 1: -> CATCHUP
      heartbeat(H)    -                               examined = H
      EVENTS          forward seq > forwarded
      END(last)       examined = last; covered? -> LIVE (forward held
                      events > forwarded) else replay from examined + 1;
                      coverage unknown: wait for it
      ERROR           overloaded/internal: retry with backoff (internal:
                      counted, on_error once per run); else FAILED
      pipe full       -                               drop the batch, -> CATCHUP
                                                      from before it

    "Covered" means buffer_from <= examined + 1: every live event after the
    replay's end was seen while the replay ran.  Held events are bounded
    by the agent's live_buffer; when they overflow they are dropped and
    catch-up continues by replay instead of growing (DESIGN.md, invariant 5).
    =========================================================================
*/

#include "herald_io.h"
#include "herald_text.h"

#define BACKOFF_MIN_MS      50
#define BACKOFF_MAX_MS      5000

//  A replay that owes events or its END and sends nothing this long is
//  started again.  A lost connection is seen sooner, by the socket
//  monitor; this is for a stream lost some other way, so it is generous:
//  a sparse replay over a long log may scan for a while before it sends.
static int64_t
s_stall_ms (herald_io_t *io)
{
    int64_t ms = 10 * (int64_t) io->agent->options.heartbeat_ms;
    return ms < 30000? 30000: ms;
}

static void
s_set_state (herald_io_sub_t *self, herald_sub_state_t state)
{
    int current = atomic_load (&self->sub->state);
    while ((current == HERALD_SUB_CATCHING_UP || current == HERALD_SUB_LIVE)
       && !atomic_compare_exchange_weak (&self->sub->state, &current, (int) state))
        ;
}

static void
s_drop_held (herald_io_sub_t *self)
{
    for (size_t index = 0; index < self->held_count; index++)
        zframe_destroy (&self->held [index].frame);
    self->held_count = 0;
}

//  Append an envelope (owned) with seq to the batch being filled.
static void
s_forward (herald_io_t *io, herald_io_sub_t *self, uint64_t seq, zframe_t *frame)
{
    if (!self->batch) {
        self->batch = calloc (1, sizeof (herald_batch_t));
        if (!self->batch) {
            zframe_destroy (&frame);        //  out of memory: replayed later
            return;
        }
        self->batch->kind = HERALD_BATCH_EVENTS;
        self->batch->sub = self->sub;
    }
    self->batch->frames [self->batch->count++] = frame;
    self->forwarded = seq;
    if (self->examined < seq)
        self->examined = seq;
    if (self->batch->count == HERALD_BATCH_MAX)
        herald_io_sub_flush (io, self);
}

static void
s_start_replay (herald_io_t *io, herald_io_sub_t *self)
{
    self->rid = 0;
    self->waiting = false;
    if (!io->dealer_up)
        return;                     //  tick starts it once connected
    herald_msg_t msg;
    memset (&msg, 0, sizeof msg);
    msg.type = HERALD_MSG_REPLAY;
    msg.has_rid = true;
    msg.rid = io->next_rid++;
    msg.replay.has_from = true;
    msg.replay.from = self->examined + 1;
    msg.replay.credit = HERALD_IO_CREDIT;
    herald_str_t prefixes [HERALD_PREFIXES_MAX];
    for (size_t index = 0; index < self->sub->prefix_count && index < HERALD_PREFIXES_MAX; index++)
        prefixes [index] = (herald_str_t) { self->sub->prefixes [index],
                                            strlen (self->sub->prefixes [index]) };
    msg.replay.prefixes = prefixes;
    msg.replay.prefix_count = self->sub->prefix_count;
    io->buffer.size = 0;
    if (herald_msg_encode (&msg, &io->buffer) != 0 || herald_io_send (io, "REPLAY") != 0)
        return;
    self->rid = msg.rid;
    self->credit_left = HERALD_IO_CREDIT;
    self->activity = herald_agent_now_ms ();
    atomic_fetch_add_explicit (&io->agent->replays, 1, memory_order_relaxed);
}

static void
s_send_rid (herald_io_t *io, const char *command, herald_msg_type_t type, uint64_t rid,
            uint64_t credit)
{
    herald_msg_t msg;
    memset (&msg, 0, sizeof msg);
    msg.type = type;
    msg.has_rid = true;
    msg.rid = rid;
    msg.credit.credit = credit;
    io->buffer.size = 0;
    if (herald_msg_encode (&msg, &io->buffer) == 0)
        herald_io_send (io, command);
}

//  Go (back) to catching up from examined + 1; live coverage from `from`.
static void
s_catch_up (herald_io_t *io, herald_io_sub_t *self, uint64_t from, bool repairing)
{
    herald_io_sub_flush (io, self);
    self->state = HERALD_IO_CATCHUP;
    s_set_state (self, HERALD_SUB_CATCHING_UP);
    s_drop_held (self);
    self->buffer_from = from;
    self->repairing = repairing;
    self->retry_at = 0;
    s_start_replay (io, self);
}

//  After a replay ended: go live when covered, else replay on.
static void
s_try_live (herald_io_t *io, herald_io_sub_t *self)
{
    if (self->buffer_from == 0) {
        self->waiting = true;
        herald_io_sub_flush (io, self);
        return;
    }
    if (self->buffer_from > self->examined + 1) {
        s_start_replay (io, self);
        herald_io_sub_flush (io, self);
        return;
    }
    for (size_t index = 0; index < self->held_count; index++) {
        if (self->held [index].seq > self->forwarded)
            s_forward (io, self, self->held [index].seq, self->held [index].frame);
        else
            zframe_destroy (&self->held [index].frame);
        self->held [index].frame = NULL;
    }
    self->held_count = 0;
    if (io->live_next > 0 && io->live_next - 1 > self->examined)
        self->examined = io->live_next - 1;
    self->state = HERALD_IO_LIVE;
    self->waiting = false;
    self->repairing = false;
    s_set_state (self, HERALD_SUB_LIVE);
    herald_io_sub_flush (io, self);
}

herald_io_sub_t *
herald_io_sub_new (herald_io_t *io, herald_agent_sub_t *sub)
{
    herald_io_sub_t *self = calloc (1, sizeof *self);
    if (!self)
        return NULL;
    self->sub = sub;
    self->forwarded = self->examined = self->marked = sub->start_done;
    self->backoff_ms = BACKOFF_MIN_MS;
    s_catch_up (io, self, io->live_next, false);
    return self;
}

void
herald_io_sub_destroy (herald_io_t *io, herald_io_sub_t **self_p)
{
    herald_io_sub_t *self = *self_p;
    if (!self)
        return;
    if (self->rid)
        s_send_rid (io, "CANCEL", HERALD_MSG_CANCEL, self->rid, 0);
    s_drop_held (self);
    free (self->held);
    herald_batch_destroy (&self->batch);
    free (self);
    *self_p = NULL;
}

void
herald_io_sub_live (herald_io_t *io, herald_io_sub_t *self, uint64_t seq, zframe_t *frame)
{
    if (self->state == HERALD_IO_LIVE) {
        if (frame && seq > self->forwarded)
            s_forward (io, self, seq, frame);
        else
            zframe_destroy (&frame);
        if (self->examined < seq)
            self->examined = seq;
    }
    else
    if (self->state == HERALD_IO_CATCHUP && frame) {
        if (self->held_count >= io->agent->options.live_buffer) {
            //  Full: forget what is held; coverage restarts after this one
            s_drop_held (self);
            zframe_destroy (&frame);
            self->buffer_from = seq + 1;
            atomic_fetch_add_explicit (&io->agent->live_overflows, 1, memory_order_relaxed);
            return;
        }
        if (self->held_count == self->held_size) {
            size_t size = self->held_size? self->held_size * 2: 256;
            herald_io_held_t *held = realloc (self->held, size * sizeof *held);
            if (!held) {
                s_drop_held (self);
                zframe_destroy (&frame);
                self->buffer_from = seq + 1;
                return;
            }
            self->held = held;
            self->held_size = size;
        }
        self->held [self->held_count++] = (herald_io_held_t) { seq, frame };
    }
    else
        zframe_destroy (&frame);
}

void
herald_io_sub_coverage (herald_io_t *io, herald_io_sub_t *self, uint64_t from)
{
    if (self->state == HERALD_IO_LIVE) {
        if (from > self->examined + 1) {
            atomic_fetch_add_explicit (&io->agent->gaps_repaired, 1, memory_order_relaxed);
            s_catch_up (io, self, from, true);
        }
    }
    else
    if (self->state == HERALD_IO_CATCHUP) {
        s_drop_held (self);
        self->buffer_from = from;
        if (self->waiting)
            s_try_live (io, self);
    }
}

void
herald_io_sub_heartbeat (herald_io_t *io, herald_io_sub_t *self, uint64_t head)
{
    (void) io;
    if (self->state == HERALD_IO_LIVE && head > self->examined)
        self->examined = head;
}

void
herald_io_sub_events (herald_io_t *io, herald_io_sub_t *self, zmsg_t *msg)
{
    self->activity = herald_agent_now_ms ();
    zframe_t *frame;
    while ((frame = zmsg_pop (msg))) {
        if (self->credit_left)
            self->credit_left--;
        const char *topic;
        size_t topic_len;
        uint64_t seq, ver, ts;
        if (self->state != HERALD_IO_CATCHUP
        ||  !herald_event_peek (zframe_data (frame), zframe_size (frame), &topic, &topic_len,
                                &seq, &ver, &ts)
        ||  seq <= self->forwarded
        ||  !herald_agent_sub_matches (self->sub, topic, topic_len)) {
            zframe_destroy (&frame);
            continue;
        }
        s_forward (io, self, seq, frame);
    }
}

//  The broker ended the replay with ERROR internal (it met data it cannot
//  read): the events before it were forwarded, and `examined` stays at the
//  last of them, so the checkpoint never passes the damage.  Count it;
//  tell on_error once per run of failures, after those events (the pipe
//  keeps order), without stopping the subscription: the replay is retried
//  with the backoff, from after the last event delivered.
static void
s_replay_failed (herald_io_t *io, herald_io_sub_t *self, const herald_msg_t *reply)
{
    atomic_fetch_add_explicit (&io->agent->replay_errors, 1, memory_order_relaxed);
    herald_io_sub_flush (io, self);
    if (self->failing)
        return;
    self->failing = true;
    herald_batch_t *report = calloc (1, sizeof *report);
    char *message = malloc (256);
    if (!report || !message) {
        free (report);
        free (message);
        return;                     //  out of memory: counted, and retried all the same
    }
    snprintf (message, 256, "replay from seq %" PRIu64 " failed, retrying in %d ms: %.*s",
              self->examined + 1, self->backoff_ms, (int) reply->error.message.len,
              reply->error.message.ptr);
    report->kind = HERALD_BATCH_ERROR;
    report->sub = self->sub;
    report->code = HERALD_ERR_INTERNAL;
    report->message = message;
    herald_io_deliver (io, report);
}

void
herald_io_sub_end (herald_io_t *io, herald_io_sub_t *self, const herald_msg_t *reply)
{
    self->rid = 0;
    self->activity = herald_agent_now_ms ();
    if (self->state != HERALD_IO_CATCHUP)
        return;
    if (reply->type == HERALD_MSG_ERROR) {
        herald_err code = reply->error.code;
        if (code == HERALD_ERR_OVERLOADED || code == HERALD_ERR_INTERNAL
        ||  code == HERALD_ERR_NOT_LEADER) {
            self->retry_at = self->activity + self->backoff_ms;
            if (code == HERALD_ERR_INTERNAL)
                s_replay_failed (io, self, reply);
            self->backoff_ms = self->backoff_ms * 2 > BACKOFF_MAX_MS? BACKOFF_MAX_MS
                                                                  : self->backoff_ms * 2;
            return;
        }
        char message [HERALD_ERROR_MESSAGE_MAX];
        herald_text_format (message, sizeof message, "replay refused: %s: %.*s",
                            herald_strerror (code), (int) reply->error.message.len,
                            reply->error.message.ptr? reply->error.message.ptr: "");
        herald_io_sub_flush (io, self);
        self->state = HERALD_IO_STOPPED;
        //  on_error runs on the delivery thread, like every callback
        herald_batch_t *failed = NULL;
        if (herald_agent_sub_fail (io->agent, self->sub, code, message, false))
            failed = calloc (1, sizeof *failed);
        if (failed) {
            failed->kind = HERALD_BATCH_FAILED;
            failed->sub = self->sub;
            herald_io_deliver (io, failed);
        }
        return;
    }
    self->backoff_ms = BACKOFF_MIN_MS;
    self->failing = false;
    //  `last` of a replay that started beyond the head is from - 1: no news
    if (reply->end.last > self->examined)
        self->examined = reply->end.last;
    s_try_live (io, self);
}

void
herald_io_sub_tick (herald_io_t *io, herald_io_sub_t *self, int64_t now)
{
    if (self->state != HERALD_IO_CATCHUP)
        return;
    if (!self->rid) {
        if (!self->waiting && io->dealer_up && now >= self->retry_at)
            s_start_replay (io, self);
        return;
    }
    if (self->credit_left < HERALD_IO_CREDIT / 2 && zlist_size (io->pending) < 4) {
        s_send_rid (io, "CREDIT", HERALD_MSG_CREDIT, self->rid,
                    HERALD_IO_CREDIT - self->credit_left);
        self->credit_left = HERALD_IO_CREDIT;
        self->activity = now;
    }
    //  Owed events or an END, and nothing for a long while: start again
    if (self->credit_left > 0 && now - self->activity > s_stall_ms (io)) {
        s_send_rid (io, "CANCEL", HERALD_MSG_CANCEL, self->rid, 0);
        s_start_replay (io, self);
    }
}

void
herald_io_sub_reset_replay (herald_io_t *io, herald_io_sub_t *self)
{
    (void) io;
    self->rid = 0;
    self->credit_left = 0;
}

void
herald_io_sub_flush (herald_io_t *io, herald_io_sub_t *self)
{
    herald_batch_t *batch = self->batch;
    if (!batch) {
        //  A marker alone, when the checkpoint would move and there is room
        if (self->examined <= self->marked || zlist_size (io->pending) > 0)
            return;
        batch = calloc (1, sizeof *batch);
        if (!batch)
            return;
        batch->kind = HERALD_BATCH_EVENTS;
        batch->sub = self->sub;
    }
    self->batch = NULL;
    if (self->state == HERALD_IO_LIVE && batch->count > 0
    &&  zlist_size (io->pending) >= HERALD_IO_PENDING_MAX) {
        //  The handlers are far behind: forget this batch and catch up
        //  from before it by replay, with credit, instead of growing
        const char *topic;
        size_t topic_len;
        uint64_t seq = 0, ver, ts;
        herald_event_peek (zframe_data (batch->frames [0]), zframe_size (batch->frames [0]),
                           &topic, &topic_len, &seq, &ver, &ts);
        herald_batch_destroy (&batch);
        self->forwarded = self->examined = seq? seq - 1: self->forwarded;
        atomic_fetch_add_explicit (&io->agent->live_overflows, 1, memory_order_relaxed);
        s_catch_up (io, self, io->live_next, false);
        return;
    }
    batch->marker = self->examined;
    self->marked = self->examined;
    herald_io_deliver (io, batch);
}

int64_t
herald_io_sub_due (herald_io_sub_t *self)
{
    if (self->state != HERALD_IO_CATCHUP)
        return INT64_MAX;
    if (!self->rid && !self->waiting)
        return self->retry_at;
    return self->rid? self->activity + 100: INT64_MAX;
}
