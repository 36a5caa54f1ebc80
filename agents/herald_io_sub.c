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

    Live events that cannot be forwarded yet are held (in seq order), and
    `buffer_from` says from where the live stream was seen without a break
    (0: not known yet).  "Covered" means buffer_from <= examined + 1: the
    held events continue exactly where the forwarded ones end.  Held
    events are bounded by the agent's live_buffer; when they overflow they
    are dropped and the subscription catches up by replay instead of
    growing: memory stays bounded whatever the broker sends.

    "Backlog" means the delivery thread is behind: batches wait in the I/O
    actor's `pending` list.  A subscription never goes (back) to live, and
    never starts a replay, while there is a backlog: it holds live events
    instead, and when the backlog is gone it either goes live with what
    it holds (no request at all) or, when what it holds does not cover
    the gap, sends ONE replay from examined + 1 that covers every gap seen
    so far.  There is at most one replay in flight per subscription, so a
    slow handler after a broker restart costs a replay or two, not one per
    live batch (issue 11, item 10).

    State table (events down, states across; "try" is the WAITING check:
    position unknown, backlog, or the broker's lineage not read since the
    last connect -> stay; covered -> forward held, LIVE; else -> REPLAYING
    from examined + 1).  "unwelcome": the api connection dropped, or a $hb
    or END named another lineage: until the WELCOME, live events may be of
    a lineage the subscription has not checked, so they are held:

                   REPLAYING               WAITING            LIVE
      start        replay from             -                  -
                   examined + 1
      live event   hold if it matches      hold if it         forward if seq >
                   (full: drop all held,   matches (full:     forwarded;
                   buffer_from = seq + 1)  as REPLAYING);     examined = seq
                                           try
      coverage(P)  drop held,              drop held,         P > examined + 1:
                   buffer_from = P         buffer_from = P;   buffer_from = P,
                                           try                gap: -> WAITING; try
      heartbeat(H) -                       -                  examined = H
      EVENTS       forward seq > forwarded -                  -
      END(last)    examined = last,        -                  -
                   -> WAITING; try
      ERROR        overloaded/internal/not_leader: retry with backoff (internal:
                   counted in replay_errors, on_error once per run); else
                   -> STOPPED (on_error)
      tick         no replay running:      try                -
                   start one when due;
                   stalled: CANCEL, again
      backlog on   -                       -                  the batch goes
      flush                                                   back to held,
                                                              buffer_from = its
                                                              first seq
                                                              -> WAITING
      unwelcome    -                       -                  -> WAITING, covered
                                                              from examined + 1
      moved        the replay is gone;     drop held,         -> WAITING,
      (another     drop held,              buffer_from = 0    buffer_from = 0
      node)        buffer_from = 0
      lineage(N)   (any state but STOPPED; herald_io_sub_lineage) a LINEAGE batch
                   to the delivery thread (it rewinds the checkpoint past N);
                   examined > N: CANCEL, drop held, examined = N -> REPLAYING

    The public state is CATCHING_UP in REPLAYING and WAITING.  Counted:
    `gaps` (per subscription: a repair, i.e. a way from LIVE back to LIVE
    that needed a replay) and `repair_replays` (REPLAY requests of a
    subscription that has been live before); their ratio is the replays
    per repaired gap.  `live_wait_ms` is the time from the END of the
    replay that completed a catch-up to LIVE: the wait for the live
    position, i.e. for the first message on the SUB (issue 11, item 11).
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

//  The public state follows ours unless the subscription failed or stopped.
static void
s_set_state (herald_io_sub_t *self, herald_io_state_t state)
{
    self->state = state;
    int public = state == HERALD_IO_LIVE? HERALD_SUB_LIVE: HERALD_SUB_CATCHING_UP;
    if (state == HERALD_IO_STOPPED)
        return;
    int current = atomic_load (&self->sub->state);
    while ((current == HERALD_SUB_CATCHING_UP || current == HERALD_SUB_LIVE)
       && !atomic_compare_exchange_weak (&self->sub->state, &current, public))
        ;
}

static void
s_drop_held (herald_io_sub_t *self)
{
    for (size_t index = 0; index < self->held_count; index++)
        zframe_destroy (&self->held [index].frame);
    self->held_count = 0;
}

//  True when the delivery thread is behind: batches wait in `pending`.
static bool
s_backlog (herald_io_t *io)
{
    return zlist_size (io->pending) > 0;
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
    self->batch_seqs [self->batch->count] = seq;
    self->batch->frames [self->batch->count++] = frame;
    self->forwarded = seq;
    if (self->examined < seq)
        self->examined = seq;
    if (self->batch->count == HERALD_BATCH_MAX)
        herald_io_sub_flush (io, self);
}

//  Hold a live event (owned) until the subscription can forward it.  When
//  the buffer is full (or memory is), everything held is dropped: the live
//  stream is then covered only from the next event on.
static void
s_hold (herald_io_t *io, herald_io_sub_t *self, uint64_t seq, zframe_t *frame)
{
    if (self->held_count >= io->agent->options.live_buffer) {
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

static void
s_start_replay (herald_io_t *io, herald_io_sub_t *self)
{
    self->rid = 0;
    if (!io->dealer_up || !io->welcomed)
        return;                     //  tick starts it once connected and welcomed
    herald_msg_t msg;
    memset (&msg, 0, sizeof msg);
    msg.type = HERALD_MSG_REPLAY;
    msg.has_rid = true;
    msg.rid = io->next_rid++;
    msg.replay.has_from = true;
    msg.replay.from = self->examined + 1;
    msg.replay.credit = HERALD_IO_CREDIT;
    msg.replay.pack = true;         //  fewer frames: much cheaper under CURVE
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
    if (self->went_live) {
        atomic_fetch_add_explicit (&io->agent->repair_replays, 1, memory_order_relaxed);
        atomic_fetch_add_explicit (&self->sub->repair_replays, 1, memory_order_relaxed);
    }
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

//  -> REPLAYING: one replay from examined + 1 (live events are held).
static void
s_replay (herald_io_t *io, herald_io_sub_t *self)
{
    herald_io_sub_flush (io, self);
    if (self->went_live && !self->repairing) {
        self->repairing = true;     //  a new gap: later replays extend its repair
        atomic_fetch_add_explicit (&self->sub->gaps, 1, memory_order_relaxed);
    }
    s_set_state (self, HERALD_IO_REPLAYING);
    self->retry_at = 0;
    s_start_replay (io, self);
}

//  WAITING: go live when the position is known, there is no backlog, the
//  broker's lineage was read since the last connect, and the held events
//  cover the gap; replay when they do not.
static void
s_try (herald_io_t *io, herald_io_sub_t *self)
{
    if (self->buffer_from == 0 || s_backlog (io) || !io->welcomed) {
        herald_io_sub_flush (io, self);     //  a marker, when there is room
        return;
    }
    if (self->buffer_from > self->examined + 1) {
        s_replay (io, self);
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
    if (self->ended_at) {
        atomic_store (&self->sub->live_wait_ms,
                      (uint64_t) (herald_agent_now_ms () - self->ended_at));
        self->ended_at = 0;
    }
    self->went_live = true;
    self->repairing = false;
    s_set_state (self, HERALD_IO_LIVE);
    herald_io_sub_flush (io, self);
}

//  -> WAITING with the live stream covered from `from` (0: unknown).
static void
s_wait (herald_io_t *io, herald_io_sub_t *self, uint64_t from)
{
    herald_io_sub_flush (io, self);
    s_drop_held (self);
    self->buffer_from = from;
    s_set_state (self, HERALD_IO_WAITING);
    s_try (io, self);
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
    self->buffer_from = io->live_next;
    self->lineage = sub->start_lineage;
    s_replay (io, self);
    if (io->have_lineage && io->lineage != self->lineage)
        herald_io_sub_lineage (io, self);
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
    switch (self->state) {
        case HERALD_IO_LIVE:
            if (frame && seq > self->forwarded)
                s_forward (io, self, seq, frame);
            else
                zframe_destroy (&frame);
            if (self->examined < seq)
                self->examined = seq;
            break;
        case HERALD_IO_REPLAYING:
            if (frame)
                s_hold (io, self, seq, frame);
            break;
        case HERALD_IO_WAITING:
            if (frame)
                s_hold (io, self, seq, frame);
            s_try (io, self);
            break;
        case HERALD_IO_STOPPED:
            zframe_destroy (&frame);
            break;
    }
}

void
herald_io_sub_coverage (herald_io_t *io, herald_io_sub_t *self, uint64_t from)
{
    switch (self->state) {
        case HERALD_IO_LIVE:
            if (from > self->examined + 1) {
                atomic_fetch_add_explicit (&io->agent->gaps_repaired, 1, memory_order_relaxed);
                s_wait (io, self, from);
            }
            break;
        case HERALD_IO_REPLAYING:
            s_drop_held (self);
            self->buffer_from = from;
            break;
        case HERALD_IO_WAITING:
            s_drop_held (self);
            self->buffer_from = from;
            s_try (io, self);
            break;
        case HERALD_IO_STOPPED:
            break;
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
        //  One envelope per frame, or several back to back (we ask for
        //  `pack`; a broker that ignores it sends one): each is an event,
        //  and spends one credit
        const uint8_t *data = zframe_data (frame);
        size_t size = zframe_size (frame), offset = 0, len;
        const uint8_t *envelope;
        int rc;
        while ((rc = herald_msg_events_next (data, size, &offset, &envelope, &len)) == 1) {
            bool whole = envelope == data && len == size;   //  not packed
            if (self->credit_left)
                self->credit_left--;
            const char *topic;
            size_t topic_len;
            uint64_t seq, ver, ts;
            if (self->state != HERALD_IO_REPLAYING
            ||  !herald_event_peek (envelope, len, &topic, &topic_len, &seq, &ver, &ts)
            ||  seq <= self->forwarded
            ||  !herald_agent_sub_matches (self->sub, topic, topic_len))
                continue;
            //  An unpacked frame is forwarded as it is; a packed one's
            //  envelopes are copied out
            zframe_t *event = whole? frame: zframe_new (envelope, len);
            if (whole)
                frame = NULL;
            if (event)
                s_forward (io, self, seq, event);
        }
        if (rc < 0 && self->credit_left)
            self->credit_left--;    //  unreadable: as before, one event spent
        zframe_destroy (&frame);
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

//  ERROR trimmed (docs/protocol.md, "Trimming"): the events the replay
//  needed were trimmed from the live log.  The subscription stops rather
//  than skip them; the message says where the live log starts for its
//  prefixes and the two ways on (the caller chooses: a service whose
//  state needs every event replays the rest from the archive first).
static void
s_trimmed_message (herald_io_sub_t *self, const herald_msg_t *reply, char *message,
                   size_t size)
{
    herald_agent_sub_t *sub = self->sub;
    uint64_t from = self->examined + 1;
    if (!reply->error.has_first) {
        herald_text_format (message, size, "replay from seq %" PRIu64 " refused: trimmed from "
                            "the live log: %.*s", from, (int) reply->error.message.len,
                            reply->error.message.ptr? reply->error.message.ptr: "");
        return;
    }
    uint64_t first = reply->error.first;
    char how [400];
    if (sub->caller_position)
        herald_text_format (how, sizeof how, "subscribe again with start HERALD_START_SEQ %"
                            PRIu64, first);
    else
        herald_text_format (how, sizeof how, "stop the agent and run herald sub reset %s "
                            "--state-dir DIR --to-seq %" PRIu64 ", or subscribe under a new "
                            "name with start HERALD_START_SEQ %" PRIu64, sub->name, first, first);
    herald_text_format (message, size, "trimmed: subscription %s needs seq %" PRIu64 " on, but "
                        "the live log was trimmed (herald trim): the first seq still there for "
                        "its prefixes is %" PRIu64 ". Stopped, nothing skipped: its checkpoint "
                        "stays at the last event handled. To go on from seq %" PRIu64 " without "
                        "the trimmed events: %s; to handle them first, replay them from the "
                        "archive (herald replay --archive DIR --from %" PRIu64 " --to %" PRIu64
                        ", with its prefixes), then go on from seq %" PRIu64, sub->name, from,
                        first, first, how, from, first - 1, first);
}

void
herald_io_sub_end (herald_io_t *io, herald_io_sub_t *self, const herald_msg_t *reply)
{
    self->rid = 0;
    self->activity = herald_agent_now_ms ();
    if (self->state != HERALD_IO_REPLAYING)
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
        if (code == HERALD_ERR_TRIMMED)
            s_trimmed_message (self, reply, message, sizeof message);
        else
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
    self->ended_at = self->activity;
    herald_io_sub_flush (io, self);
    s_set_state (self, HERALD_IO_WAITING);
    s_try (io, self);
}

void
herald_io_sub_tick (herald_io_t *io, herald_io_sub_t *self, int64_t now)
{
    if (self->state == HERALD_IO_WAITING) {
        s_try (io, self);
        return;
    }
    if (self->state != HERALD_IO_REPLAYING)
        return;
    if (!self->rid) {
        if (io->dealer_up && io->welcomed && now >= self->retry_at)
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
herald_io_sub_unwelcome (herald_io_t *io, herald_io_sub_t *self)
{
    //  Live was contiguous up to examined: hold from examined + 1 on
    if (self->state == HERALD_IO_LIVE)
        s_wait (io, self, self->examined + 1);
}

void
herald_io_sub_moved (herald_io_t *io, herald_io_sub_t *self)
{
    //  Nothing of the old node's stream is known to continue on the new
    //  one: its first message (coverage) says where the new stream is
    //  contiguous from, and a replay on the new node from examined + 1
    //  fills the rest once it has welcomed the agent
    switch (self->state) {
        case HERALD_IO_REPLAYING:
            self->rid = 0;
            self->credit_left = 0;
            self->retry_at = 0;
            s_drop_held (self);
            self->buffer_from = 0;
            break;
        case HERALD_IO_WAITING:
        case HERALD_IO_LIVE:
            s_wait (io, self, 0);
            break;
        case HERALD_IO_STOPPED:
            break;
    }
}

void
herald_io_sub_lineage (herald_io_t *io, herald_io_sub_t *self)
{
    if (self->state == HERALD_IO_STOPPED || self->lineage == io->lineage)
        return;
    //  Where the events passed are certain up to: before the first loss
    //  the subscription has not seen (its lineage is lower), or the head
    //  of a broker whose lineage went down (restored from a backup)
    bool lower = io->lineage < self->lineage && self->lineage != HERALD_LINEAGE_UNKNOWN;
    uint64_t rewind_to = UINT64_MAX;
    if (self->lineage == HERALD_LINEAGE_UNKNOWN)
        ;                           //  a new checkpoint: adopt the first lineage heard
    else
    if (lower)
        rewind_to = io->lineage_head;
    else
        for (size_t index = 0; index < io->loss_count; index++)
            if (io->losses [index].lineage > self->lineage
            &&  io->losses [index].lost_after < rewind_to)
                rewind_to = io->losses [index].lost_after;
    self->lineage = io->lineage;
    //  No loss listed for it (a broker that lists none): nothing to rewind to
    if (rewind_to == UINT64_MAX)
        rewind_to = self->examined;
    herald_io_sub_flush (io, self);
    herald_batch_t *batch = calloc (1, sizeof *batch);
    if (batch) {
        batch->kind = HERALD_BATCH_LINEAGE;
        batch->sub = self->sub;
        batch->lineage = io->lineage;
        batch->rewind_to = rewind_to;
        batch->lower = lower;
        herald_io_deliver (io, batch);
    }
    if (self->examined <= rewind_to)
        return;
    //  Passed beyond it: those seqs are other events now.  Forget what is
    //  held and running, and catch up from rewind_to + 1
    if (self->rid)
        s_send_rid (io, "CANCEL", HERALD_MSG_CANCEL, self->rid, 0);
    self->rid = 0;
    s_drop_held (self);
    self->forwarded = self->examined = self->marked = rewind_to;
    self->buffer_from = io->live_next;
    s_replay (io, self);
}

void
herald_io_sub_flush (herald_io_t *io, herald_io_sub_t *self)
{
    herald_batch_t *batch = self->batch;
    if (!batch) {
        //  A marker alone, when the checkpoint would move and there is room
        if (self->examined <= self->marked || s_backlog (io))
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
        //  The handlers are far behind: take this batch's events back and
        //  hold them, with the live events after them (bounded by
        //  live_buffer), until the backlog is gone.  No replay unless what
        //  is held overflows.  Live was contiguous, so the held events
        //  cover the stream from the batch's first seq on.
        uint64_t first = self->batch_seqs [0];
        self->forwarded = self->examined = first - 1;
        self->buffer_from = first;
        s_set_state (self, HERALD_IO_WAITING);
        for (size_t index = 0; index < batch->count; index++) {
            s_hold (io, self, self->batch_seqs [index], batch->frames [index]);
            batch->frames [index] = NULL;
        }
        batch->count = 0;
        herald_batch_destroy (&batch);
        return;
    }
    batch->marker = self->examined;
    self->marked = self->examined;
    herald_io_deliver (io, batch);
}

int64_t
herald_io_sub_due (herald_io_t *io, herald_io_sub_t *self)
{
    if (self->state != HERALD_IO_REPLAYING)
        return INT64_MAX;
    if (!self->rid)                 //  a connect or a WELCOME wakes the loop
        return io->dealer_up && io->welcomed? self->retry_at: INT64_MAX;
    return self->activity + 100;
}
