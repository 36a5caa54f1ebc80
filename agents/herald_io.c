/*  =========================================================================
    herald_io - the agent's I/O actor

    DESIGN

    One thread owns every socket of the agent.  The DEALER and the SUB are
    connected to ONE node (a cluster's, or the one broker): which one, and
    the moves to another, are herald_io_node.c's.

      DEALER -> api      REPLAY/CREDIT/CANCEL for catch-up, PUBLISH from the
                         outbox, HELLO on every connect (the WELCOME names the
                         fanout when it is not given, and the broker's lineage
                         and accepted losses)
      SUB    <- fanout   the whole live stream and `$hb`
      PAIR   -> delivery batches of envelopes and publish completions, as
                         pointers (herald_batch_t), to the delivery thread
      PAIRs  <- monitors connect/disconnect events of the DEALER and SUB
      eventfd            API calls queued a command or an outbox entry

    The live stream is taken whole (SUB filter ""), not by prefix, because
    that makes loss detection exact: seq is gapless across the whole log,
    so a jump in seq on the SUB, or a heartbeat whose head is above the
    last seq seen (the broker sends events before the heartbeat that
    counts them), is a loss, at once.  A reconnect of the SUB makes the
    position unknown until the next event or heartbeat.  Each of these
    tells every subscription where the stream is contiguous from
    (herald_io_sub_coverage); a live subscription that may have missed
    something replays from its `examined` + 1 (herald_io_sub.c).  The
    price is bandwidth: a service subscribed to a small part of a busy log
    still receives all of it (filtering costs a peek at the envelope head).

    Publishing: API calls append to the outbox (herald_outbox.c) and wake
    this thread, which takes batches in order (at most 1000 events, 512 KiB;
    an event with `expect` alone, so its conflict fails only itself),
    pipelines up to 16 PUBLISH requests, and matches ACK/ERROR by rid.  A
    batch refused as bad_request/too_large/conflict is resent one event per
    request so only the faulty one fails; overloaded/internal are retried
    with backoff; not_leader moves to the leader it names, or to the next
    node (herald_io_node.c), with everything in flight sent again there
    (with a single node known, it is retried with backoff).  When the
    DEALER disconnects, or no answer
    comes within max(10 s, 2 x timeout), everything in flight is sent
    again with the same ids: the broker's dedup makes that safe.

    Start: the actor signals a good start only with every socket up (the
    DEALER and SUB connected, both monitored, the delivery pipe bound);
    otherwise herald_agent_new fails with the reason (io_start_error).
    Its inproc names carry the agent's serial, never an address that a
    later agent may reuse before libzmq's reaper has released the name.

    Stop: completions still waiting in `pending` are piped to the
    delivery thread ahead of STOP (it runs completions even while
    stopping), or left to herald_agent_destroy; every async publish gets
    its completion (herald_agent_deliver.c, herald_agent_run_last_completions).

    Lineage (issue 11): a broker that lost events it had stored, once an
    operator accepted the loss, says so by its lineage (in $hb, END,
    WELCOME) and lists the losses in WELCOME.  Replays wait for a WELCOME
    after each connect, and after a $hb or END naming another lineage, so
    that every subscription checks its checkpoint against the losses
    (herald_io_sub_lineage) before it takes events of the new lineage.  A
    HELLO unanswered for HELLO_RETRY_MS is sent again, never taken as a
    WELCOME: a late WELCOME after live events had passed would rewind
    their checkpoints (DATA_LOST) and deliver them twice.  A node that does
    not answer is left for another when there is one.

    Bounds: the delivery pipe holds 64 + 64 batches; batches that do not
    fit wait in `pending` (at most 64 more for live events, after which a
    live subscription holds its live events, bounded by live_buffer, until
    the backlog is gone; catch-up replay credit is only given while
    `pending` is short, and no replay starts while anything waits there);
    the outbox is bounded by its own limits.
    =========================================================================
*/

#include <inttypes.h>
#include <sys/eventfd.h>
#include <unistd.h>
#include "herald_io.h"
#include "herald_uuid.h"
#include "herald_text.h"

#define RECV_BURST          4096        //  messages per socket per turn
#define PUBLISH_EVENTS      1000
#define PUBLISH_BYTES       (512 * 1024)
#define HELLO_RETRY_MS      1000        //  no WELCOME to a HELLO sent
#define HELLO_SEND_RETRY_MS 10          //  HELLO could not be sent yet
#define DELIVER_HWM         64

//  Rate-limited warnings (herald_say: the log callback or stderr): one a second at most.
static _Thread_local int64_t s_log_last;
#define s_log(...) herald_agent_log_limited (&s_log_last, __VA_ARGS__)


//  ---------------------------------------------------------------------
//  Sockets

static void
    s_self_destroy (herald_io_t **self_p);

//  The actor's state with every socket up, or NULL with why: the actor
//  must not report a good start without them (no DEALER monitor, no
//  publish is ever sent; no delivery pipe, no handler or completion ever
//  runs).
static herald_io_t *
s_self_new (zsock_t *pipe, herald_agent_t *agent, char *why, size_t size)
{
    herald_io_t *self = calloc (1, sizeof *self);
    if (!self) {
        snprintf (why, size, "out of memory");
        return NULL;
    }
    self->agent = agent;
    self->pipe = pipe;
    self->next_rid = 1;
    msgpack_sbuffer_init (&self->buffer);
    msgpack_zone_init (&self->zone, 4096);
    self->pending = zlist_new ();
    self->deliver = zsock_new (ZMQ_PAIR);
    if (!self->pending || !self->deliver) {
        snprintf (why, size, "cannot create its sockets: %s", zmq_strerror (zmq_errno ()));
        s_self_destroy (&self);
        return NULL;
    }
    zsock_set_linger (self->deliver, 0);
    zsock_set_sndhwm (self->deliver, DELIVER_HWM);
    if (zsock_bind (self->deliver, "%s", agent->deliver_endpoint) != 0)
        snprintf (why, size, "cannot bind %s: %s", agent->deliver_endpoint,
                  zmq_strerror (zmq_errno ()));
    else
    if (herald_io_node_start (self, why, size) == 0)
        return self;
    s_self_destroy (&self);
    return NULL;
}

static void
s_self_destroy (herald_io_t **self_p)
{
    herald_io_t *self = *self_p;
    if (!self)
        return;
    for (size_t index = 0; index < self->sub_count; index++)
        herald_io_sub_destroy (self, &self->subs [index]);
    for (size_t index = 0; index < self->flight_count; index++)
        free (self->flights [index].items);
    if (self->pending) {
        herald_batch_t *batch;
        while ((batch = zlist_pop (self->pending)))
            herald_batch_destroy (&batch);
        zlist_destroy (&self->pending);
    }
    herald_io_node_stop (self);
    zsock_destroy (&self->deliver);
    msgpack_sbuffer_destroy (&self->buffer);
    msgpack_zone_destroy (&self->zone);
    free (self->losses);
    free (self);
    *self_p = NULL;
}

int
herald_io_send (herald_io_t *self, const char *command)
{
    void *sock = zsock_resolve (self->dealer);
    int rc = -1;
    if (zmq_send (sock, command, strlen (command), ZMQ_SNDMORE | ZMQ_DONTWAIT) >= 0) {
        //  The first part was taken, so the rest of the message will be
        zmq_send (sock, self->buffer.data, self->buffer.size, 0);
        rc = 0;
    }
    self->buffer.size = 0;
    return rc;
}

//  ---------------------------------------------------------------------
//  To the delivery thread

static bool
s_try_deliver (herald_io_t *self, herald_batch_t *batch)
{
    return zmq_send (zsock_resolve (self->deliver), &batch, sizeof batch, ZMQ_DONTWAIT)
           == (int) sizeof batch;
}

void
herald_io_deliver (herald_io_t *self, herald_batch_t *batch)
{
    if (zlist_size (self->pending) == 0 && s_try_deliver (self, batch))
        return;
    zlist_append (self->pending, batch);
}

static void
s_drain_pending (herald_io_t *self)
{
    herald_batch_t *batch;
    while ((batch = zlist_first (self->pending)) && s_try_deliver (self, batch))
        zlist_pop (self->pending);
}

//  ---------------------------------------------------------------------
//  The live stream

static herald_io_sub_t *
s_sub_by_rid (herald_io_t *self, uint64_t rid)
{
    for (size_t index = 0; index < self->sub_count; index++)
        if (self->subs [index]->rid == rid)
            return self->subs [index];
    return NULL;
}

//  The live stream is contiguous from seq `from` on: tell every subscription.
static void
s_coverage (herald_io_t *self, uint64_t from)
{
    self->live_next = from;
    for (size_t index = 0; index < self->sub_count; index++)
        herald_io_sub_coverage (self, self->subs [index], from);
}

//  The value of key in a msgpack map body, or NULL (key absent, or the
//  body is not a map).  unpacked holds it; the caller destroys it.
static const msgpack_object *
s_map_value (const void *data, size_t size, const char *key, msgpack_unpacked *unpacked)
{
    msgpack_unpacked_init (unpacked);
    if (msgpack_unpack_next (unpacked, (const char *) data, size, NULL)
        != MSGPACK_UNPACK_SUCCESS
    ||  unpacked->data.type != MSGPACK_OBJECT_MAP)
        return NULL;
    size_t len = strlen (key);
    const msgpack_object_map *map = &unpacked->data.via.map;
    for (uint32_t index = 0; index < map->size; index++) {
        const msgpack_object *name = &map->ptr [index].key;
        if (name->type == MSGPACK_OBJECT_STR && name->via.str.size == len
        &&  memcmp (name->via.str.ptr, key, len) == 0)
            return &map->ptr [index].val;
    }
    return NULL;
}

//  A scope socket's $hb says `last` (uint): true with it.
static bool
s_heartbeat_last (zframe_t *body, uint64_t *last)
{
    msgpack_unpacked unpacked;
    const msgpack_object *value = s_map_value (zframe_data (body), zframe_size (body),
                                               "last", &unpacked);
    bool found = value && value->type == MSGPACK_OBJECT_POSITIVE_INTEGER;
    if (found)
        *last = value->via.u64;
    msgpack_unpacked_destroy (&unpacked);
    return found;
}

//  The live position is unknown from here: a reconnect, `$hello`, a new
//  epoch.
static void
s_live_unknown (herald_io_t *self)
{
    self->live_next = 0;
    herald_live_scope_reset (&self->live_scope);
}

static void
s_on_heartbeat (herald_io_t *self, zframe_t *body)
{
    herald_msg_t msg;
    herald_error_t err;
    msgpack_zone_clear (&self->zone);
    if (herald_msg_decode (&msg, HERALD_MSG_HEARTBEAT, zframe_data (body), zframe_size (body),
                           NULL, &self->zone, &err) != HERALD_OK)
        return;
    herald_agent_t *agent = self->agent;
    uint64_t head = msg.heartbeat.head;
    //  Another lineage: the broker accepted a loss.  Read it (HELLO) before
    //  any replay, which would take events of the new lineage before the
    //  subscriptions know where their checkpoints stand in it
    if (self->have_lineage && msg.heartbeat.lineage != self->lineage)
        herald_io_unwelcome (self);
    self->last_hb = herald_agent_now_ms ();
    atomic_store (&agent->broker_reachable, true);
    atomic_store (&agent->broker_head, head);
    atomic_store (&agent->broker_epoch, msg.heartbeat.epoch);
    //  Heads and epochs per node: another node's lower head is lag, only
    //  the same node's in a new epoch a loss (herald_io_node.c)
    herald_io_node_heartbeat (self, msg.heartbeat.node, msg.heartbeat.epoch, head);
    if (self->have_epoch && self->epoch != msg.heartbeat.epoch)
        herald_live_scope_reset (&self->live_scope);    //  prev and last restart at 0
    self->have_epoch = true;
    self->epoch = msg.heartbeat.epoch;
    //  A scope socket's $hb says `last`.  Its position is followed
    //  whatever WELCOME said so far (a WELCOME may come after the first
    //  messages of the fanout); only a scoped agent acts on it
    uint64_t last, from = 0;
    bool has_last = s_heartbeat_last (body, &last);
    if (has_last)
        from = herald_live_scope_beat (&self->live_scope, head, last);
    else
        herald_live_scope_reset (&self->live_scope);
    if (self->scoped && has_last) {
        //  The scope's last event at or before head is the one we hold:
        //  nothing of the scope up to head was lost
        if (from)
            s_coverage (self, from);
    }
    else
    //  Everything up to head was sent before this heartbeat: anything of it
    //  not seen is lost (or the position was unknown)
    if (self->live_next == 0 || head + 1 != self->live_next)
        s_coverage (self, head + 1);
    for (size_t index = 0; index < self->sub_count; index++)
        herald_io_sub_heartbeat (self, self->subs [index], head);
}

static void
s_on_live_event (herald_io_t *self, zframe_t *frame0, zframe_t *frame)
{
    const char *topic;
    size_t topic_len;
    uint64_t seq, ver, ts;
    if (!herald_event_peek (zframe_data (frame), zframe_size (frame), &topic, &topic_len,
                            &seq, &ver, &ts)) {
        herald_event_t event;
        herald_error_t err;
        msgpack_zone_clear (&self->zone);
        if (herald_event_decode (&event, zframe_data (frame), zframe_size (frame),
                                 &self->zone, &err) != HERALD_OK) {
            s_log ("a live event does not decode: %s: %s", err.field, err.message);
            zframe_destroy (&frame);
            return;
        }
        topic = event.topic;
        topic_len = event.topic_len;
        seq = event.seq;
    }
    //  On a scope socket frame 0 names the scope's previous event (a
    //  topic holds no NUL: no other frame 0 has this form); elsewhere the
    //  scoped position is unknown
    uint64_t prev = 0, from = 0;
    if (herald_live_scope_prev (zframe_data (frame0), zframe_size (frame0), topic_len, &prev))
        from = herald_live_scope_event (&self->live_scope, seq, prev);
    else
        herald_live_scope_reset (&self->live_scope);
    if (self->scoped) {
        //  Not a scope socket's frame: position unknown, from here on
        if (!self->live_scope.known)
            from = seq;
        if (from)
            s_coverage (self, from);
    }
    else
    if (self->live_next == 0 || seq != self->live_next)
        s_coverage (self, seq);
    self->live_next = seq + 1;
    //  The last matching subscription takes the frame, the others a copy
    size_t last = SIZE_MAX;
    for (size_t index = 0; index < self->sub_count; index++)
        if (herald_agent_sub_matches (self->subs [index]->sub, topic, topic_len))
            last = index;
    for (size_t index = 0; index < self->sub_count; index++) {
        zframe_t *mine = NULL;
        if (index == last)
            mine = frame;
        else
        if (last != SIZE_MAX && index < last
        &&  herald_agent_sub_matches (self->subs [index]->sub, topic, topic_len))
            mine = zframe_dup (frame);
        herald_io_sub_live (self, self->subs [index], seq, mine);
    }
    if (last == SIZE_MAX)
        zframe_destroy (&frame);
}

static void
s_recv_sub (herald_io_t *self)
{
    for (int count = 0; count < RECV_BURST; count++) {
        zframe_t *topic = zframe_recv (self->sub);
        if (!topic)
            break;
        zframe_t *body = zframe_more (topic)? zframe_recv (self->sub): NULL;
        while (body && zframe_more (body)) {        //  ignore extra frames
            zframe_t *extra = zframe_recv (self->sub);
            bool more = extra && zframe_more (extra);
            zframe_destroy (&extra);
            if (!more)
                break;
        }
        //  A broker message this agent does not know ($ and a body, e.g. a
        //  newer broker's): not an event, never taken for one
        if (body && zframe_size (topic) && *zframe_data (topic) == '$'
        &&  !(zframe_size (topic) == 3 && memcmp (zframe_data (topic), "$hb", 3) == 0))
            zframe_destroy (&body);
        if (body) {
            if (zframe_size (topic) == 3 && memcmp (zframe_data (topic), "$hb", 3) == 0)
                s_on_heartbeat (self, body);
            else {
                s_on_live_event (self, topic, body);
                body = NULL;
            }
        }
        else
        //  A secure broker's welcome message: the first of each connection
        if (zframe_size (topic) == 6 && memcmp (zframe_data (topic), "$hello", 6) == 0)
            s_live_unknown (self);
        zframe_destroy (&topic);
        zframe_destroy (&body);
    }
}

//  ---------------------------------------------------------------------
//  Publishing

static void
s_flight_remove (herald_io_t *self, size_t index)
{
    free (self->flights [index].items);
    memmove (&self->flights [index], &self->flights [index + 1],
             (self->flight_count - index - 1) * sizeof (herald_io_flight_t));
    self->flight_count--;
}

void
herald_io_flights_requeue (herald_io_t *self)
{
    while (self->flight_count)
        s_flight_remove (self, 0);
    herald_outbox_requeue_all (self->agent->outbox);
}

static void
s_publish_send (herald_io_t *self)
{
    int64_t now = herald_agent_now_ms ();
    while (self->flight_count < HERALD_IO_FLIGHTS_MAX && self->dealer_up && !self->moving
       &&  now >= self->publish_retry_at) {
        herald_outbox_item_t **items = malloc (PUBLISH_EVENTS * sizeof *items);
        if (!items)
            return;
        size_t count = herald_outbox_take (self->agent->outbox, items, PUBLISH_EVENTS,
                                           PUBLISH_BYTES);
        if (count == 0) {
            free (items);
            return;
        }
        uint64_t rid = self->next_rid++;
        msgpack_packer pk;
        msgpack_packer_init (&pk, &self->buffer, msgpack_sbuffer_write);
        self->buffer.size = 0;
        msgpack_pack_map (&pk, 2);
        msgpack_pack_str_with_body (&pk, "rid", 3);
        msgpack_pack_uint64 (&pk, rid);
        msgpack_pack_str_with_body (&pk, "events", 6);
        msgpack_pack_array (&pk, count);
        for (size_t index = 0; index < count; index++)
            msgpack_sbuffer_write (&self->buffer, (const char *) items [index]->map,
                                   items [index]->map_len);
        if (herald_io_send (self, "PUBLISH") != 0) {
            herald_outbox_requeue (self->agent->outbox, items, count, false);
            free (items);
            return;
        }
        self->flights [self->flight_count++] = (herald_io_flight_t) { rid, count, items, now };
    }
}

//  Finish flight's items with results and pass their async completions on:
//  to the delivery thread, or in dispatch mode to herald_agent_dispatch.
//  Everything is allocated before the outbox is told, so a completion is
//  never lost to memory: without it the items are sent again (the broker
//  answers the resend as a duplicate, with the same seq).
static void
s_complete (herald_io_t *self, herald_io_flight_t *flight, herald_publish_result_t *results)
{
    herald_agent_t *agent = self->agent;
    herald_completion_t *completions = calloc (flight->count, sizeof *completions);
    herald_batch_t *batch = calloc (1, sizeof *batch);
    if (!completions || !batch) {
        s_log ("out of memory for %zu publish completions: sending them again",
               flight->count);
        free (completions);
        free (batch);
        herald_outbox_requeue (agent->outbox, flight->items, flight->count, false);
        return;
    }
    size_t count = herald_outbox_finish (agent->outbox, flight->items, results,
                                         flight->count, completions);
    if (count == 0) {
        free (completions);
        free (batch);
        return;
    }
    batch->kind = HERALD_BATCH_COMPLETIONS;
    batch->completions = completions;
    batch->count = count;
    if (agent->dispatch_fd >= 0) {
        //  Queued is as far as the agent can take them: herald_agent_dispatch
        //  runs them on the application's thread (destroy, if it never does)
        herald_agent_queue_completions (agent, batch);
        herald_outbox_completed (agent->outbox, count);
    }
    else
        herald_io_deliver (self, batch);
}

static void
s_on_publish_reply (herald_io_t *self, size_t index, const herald_msg_t *reply)
{
    herald_io_flight_t *flight = &self->flights [index];
    herald_agent_t *agent = self->agent;
    if (reply->type == HERALD_MSG_ACK && reply->ack.count != flight->count) {
        s_log ("an ACK with %zu entries for %zu events: sending them again",
               reply->ack.count, flight->count);
        herald_outbox_requeue (agent->outbox, flight->items, flight->count, true);
        s_flight_remove (self, index);
        return;
    }
    herald_err code = reply->type == HERALD_MSG_ACK? HERALD_OK: reply->error.code;
    //  Not the leader: go where it says, or try the next node.  Everything
    //  in flight goes back to the outbox and is sent there in order with
    //  the same ids (events it had stored come back `dup`, with their seq)
    if (code == HERALD_ERR_NOT_LEADER
    &&  (reply->error.leader.ptr? herald_io_node_redirect (self, reply->error.leader.ptr,
                                                           reply->error.leader.len)
                                : herald_io_node_rotate (self, "not the leader, none known"))) {
        herald_io_flights_requeue (self);
        return;
    }
    bool transient = code == HERALD_ERR_OVERLOADED || code == HERALD_ERR_INTERNAL
                  || code == HERALD_ERR_NOT_LEADER;
    if (transient || (code != HERALD_OK && flight->count > 1)) {
        herald_outbox_requeue (agent->outbox, flight->items, flight->count, !transient);
        if (transient) {
            //  The broker's hint (retry_ms: a disk below min-free, the
            //  user's rate limit) is the wait, within the same 5 s bound:
            //  it knows when a retry passes, and doubling on top of it
            //  (several batches in flight are refused at once) would send
            //  a rate-limited publisher far below its rate.  Without a
            //  hint, a backoff doubling from 50 ms
            uint64_t hint = reply->type == HERALD_MSG_ERROR? reply->error.retry_ms: 0;
            if (hint)
                self->publish_backoff_ms = hint > 5000? 5000: (int) hint;
            else
                self->publish_backoff_ms = self->publish_backoff_ms?
                                           self->publish_backoff_ms * 2: 50;
            if (self->publish_backoff_ms > 5000)
                self->publish_backoff_ms = 5000;
            self->publish_retry_at = herald_agent_now_ms () + self->publish_backoff_ms;
        }
        s_flight_remove (self, index);
        return;
    }
    self->publish_backoff_ms = 0;
    if (code == HERALD_OK)
        herald_io_node_acked (self);
    herald_publish_result_t *results = calloc (flight->count, sizeof *results);
    if (!results)
        return;                     //  answered again after a resend
    size_t reused = 0;
    for (size_t item = 0; item < flight->count; item++) {
        herald_publish_result_t *result = &results [item];
        memcpy (result->id, flight->items [item]->id, 16);
        result->err = code;
        if (code == HERALD_OK) {
            result->seq = reply->ack.seq [item];
            result->ver = reply->ack.ver [item];
            result->dup = reply->ack.dup [item];
            //  The id was stored with another topic or data: this event
            //  was not stored, and sending it again cannot change that,
            //  so it is final, like a conflict.
            if (reply->ack.reused && reply->ack.reused [item]) {
                char id [HERALD_UUID_STR_LEN + 1];
                herald_uuid_format (result->id, id);
                result->err = HERALD_ERR_ID_REUSED;
                snprintf (result->message, sizeof result->message,
                          "id %s is already stored, at seq %" PRIu64 ", with another topic "
                          "or data: this event was not stored", id, result->seq);
                reused++;
            }
        }
        else {
            result->expected = reply->error.expected;
            result->actual = reply->error.actual;
            //  A fixed public field: a long message is cut in the middle, at words
            herald_text_fit (result->message, sizeof result->message,
                             reply->error.message.ptr? reply->error.message.ptr: "",
                             reply->error.message.len);
        }
    }
    if (code == HERALD_OK) {
        atomic_fetch_add_explicit (&agent->published, flight->count - reused,
                                   memory_order_relaxed);
        atomic_fetch_add_explicit (&agent->publish_errors, reused, memory_order_relaxed);
    }
    else
        atomic_fetch_add_explicit (&agent->publish_errors, flight->count, memory_order_relaxed);
    s_complete (self, flight, results);
    free (results);
    s_flight_remove (self, index);
}

//  ---------------------------------------------------------------------
//  Replies on api

//  The broker's lineage must be read (again) before any replay, and before
//  live subscriptions pass more live events: they may be of a lineage the
//  subscriptions have not checked their checkpoints against.
void
herald_io_unwelcome (herald_io_t *self)
{
    self->hello_due = true;
    self->hello_at = 0;
    self->hello_first = 0;
    if (self->welcomed)
        self->welcome_wait = herald_agent_now_ms ();
    self->welcomed = false;
    for (size_t index = 0; index < self->sub_count; index++)
        herald_io_sub_unwelcome (self, self->subs [index]);
}

//  The broker's lineage from a WELCOME: keep it with its losses, and let
//  every subscription on another lineage check what it passed.
static void
s_lineage (herald_io_t *self, const herald_msg_t *reply)
{
    herald_loss_t *losses = NULL;
    if (reply->welcome.loss_count) {
        losses = malloc (reply->welcome.loss_count * sizeof *losses);
        if (!losses) {
            self->hello_due = true;         //  ask again
            return;
        }
        memcpy (losses, reply->welcome.losses, reply->welcome.loss_count * sizeof *losses);
    }
    free (self->losses);
    self->losses = losses;
    self->loss_count = reply->welcome.loss_count;
    self->lineage = reply->welcome.lineage;
    self->lineage_head = reply->welcome.head;
    self->have_lineage = true;
    herald_agent_learn_lineage (self->agent, self->lineage);
    for (size_t index = 0; index < self->sub_count; index++)
        herald_io_sub_lineage (self, self->subs [index]);
}

static void
s_on_welcome (herald_io_t *self, const herald_msg_t *reply)
{
    self->hello_first = 0;
    self->hello_due = false;
    if (!herald_io_node_welcome (self, reply))
        return;                     //  a node that lags: the agent moves on
    self->welcomed = true;
    self->welcomed_at = herald_agent_now_ms ();
    s_lineage (self, reply);
}

//  WELCOME's `scope` (issue 14): a str when this key reads one scope,
//  through that scope's own fanout; nil or absent otherwise.
static void
s_welcome_scope (herald_io_t *self, zframe_t *body)
{
    msgpack_unpacked unpacked;
    const msgpack_object *value = s_map_value (zframe_data (body), zframe_size (body),
                                               "scope", &unpacked);
    self->scoped = value && value->type == MSGPACK_OBJECT_STR;
    msgpack_unpacked_destroy (&unpacked);
}

static void
s_recv_dealer (herald_io_t *self)
{
    for (int count = 0; count < RECV_BURST; count++) {
        zmsg_t *msg = zmsg_recv (self->dealer);
        if (!msg)
            break;
        zframe_t *command = zmsg_pop (msg);
        zframe_t *body = zmsg_pop (msg);
        herald_msg_type_t type = command? herald_msg_type_from_command (
            zframe_data (command), zframe_size (command), true): HERALD_MSG_INVALID;
        herald_msg_t reply;
        herald_error_t err;
        msgpack_zone_clear (&self->zone);
        if (type == HERALD_MSG_INVALID || !body
        ||  herald_msg_decode (&reply, type, zframe_data (body), zframe_size (body), NULL,
                               &self->zone, &err) != HERALD_OK
        ||  !reply.has_rid) {
            if (type == HERALD_MSG_ERROR)
                s_log ("the broker refused a request it could not read");
        }
        else
        if (type == HERALD_MSG_EVENTS) {
            herald_io_sub_t *sub = s_sub_by_rid (self, reply.rid);
            if (sub)
                herald_io_sub_events (self, sub, msg);
        }
        else
        if (type == HERALD_MSG_WELCOME && self->hello_first && reply.rid >= self->hello_first) {
            s_welcome_scope (self, body);
            s_on_welcome (self, &reply);
        }
        else
        if (type == HERALD_MSG_ACK || type == HERALD_MSG_ERROR || type == HERALD_MSG_END) {
            if (type == HERALD_MSG_END && self->have_lineage
            &&  reply.end.lineage != self->lineage)
                herald_io_unwelcome (self);         //  the broker accepted a loss: read it
            bool found = false;
            for (size_t index = 0; index < self->flight_count && !found; index++)
                if (self->flights [index].rid == reply.rid && type != HERALD_MSG_END) {
                    s_on_publish_reply (self, index, &reply);
                    found = true;
                }
            herald_io_sub_t *sub = found? NULL: s_sub_by_rid (self, reply.rid);
            if (sub && type != HERALD_MSG_ACK)
                herald_io_sub_end (self, sub, &reply);
            else
            if (!found && type == HERALD_MSG_ERROR && self->hello_first
            &&  reply.rid >= self->hello_first) {
                //  An answer: the broker has no lineage to tell
                s_log ("HELLO refused: %.*s", (int) reply.error.message.len,
                       reply.error.message.ptr);
                self->welcomed = true;      //  no lineage to check: replays go on
                self->welcomed_at = herald_agent_now_ms ();
                self->hello_first = 0;
                self->hello_due = false;
            }

        }
        zframe_destroy (&command);
        zframe_destroy (&body);
        zmsg_destroy (&msg);
    }
}

//  ---------------------------------------------------------------------
//  Monitors, commands, timers

static void
s_recv_monitor (herald_io_t *self, zsock_t *monitor, bool is_dealer)
{
    zmsg_t *msg = zmsg_recv (monitor);
    if (!msg)
        return;
    zframe_t *frame = zmsg_first (msg);
    uint16_t event = 0;
    uint32_t value = 0;
    if (frame && zframe_size (frame) >= 2)
        memcpy (&event, zframe_data (frame), 2);
    if (frame && zframe_size (frame) >= 6)
        memcpy (&value, zframe_data (frame) + 2, 4);
    zmsg_destroy (&msg);
    if (self->agent->curve)
        herald_io_auth_event (self, is_dealer, event, value);
    if (is_dealer) {
        if (event == ZMQ_EVENT_CONNECTED) {
            self->dealer_up = true;
            herald_io_unwelcome (self);     //  the lineage, on every connect
        }
        else
        if (event == ZMQ_EVENT_DISCONNECTED) {
            //  Requests in flight are gone with the connection
            self->dealer_up = false;
            herald_io_unwelcome (self);
            herald_io_flights_requeue (self);
            for (size_t index = 0; index < self->sub_count; index++)
                herald_io_sub_reset_replay (self, self->subs [index]);
            herald_io_node_rotate (self, "closed the connection");
        }
        else
        if (event == ZMQ_EVENT_CONNECT_RETRIED && !self->dealer_up)
            herald_io_node_rotate (self, "refused the connection");
    }
    else
    if (event == ZMQ_EVENT_DISCONNECTED)
        s_live_unknown (self);          //  position unknown until the next message
    else
    if (event == ZMQ_EVENT_CONNECTED)
        //  Only the seq rule's position: a scope socket says so in-band
        //  (`$hello`, the first message of the connection), while the
        //  monitor's word comes out of band, perhaps after messages of the
        //  new connection, and would cost a needless replay
        self->live_next = 0;
}

static void
s_commands (herald_io_t *self)
{
    //  Read the eventfd first, then clear wake_pending: cleared first, a
    //  wake-up written in between would be read here and leave
    //  wake_pending set with nothing to read, and every later wake-up
    //  skipped (commands then never processed).  In this order a wake-up
    //  that saw wake_pending set queued its command before the commands
    //  are taken below.
    uint64_t value;
    if (read (self->agent->wake_fd, &value, sizeof value) < 0)
        value = 0;
    atomic_store (&self->agent->wake_pending, false);
    herald_agent_t *agent = self->agent;
    herald_cmd_t commands [HERALD_AGENT_COMMANDS_MAX];
    pthread_mutex_lock (&agent->lock);
    size_t count = agent->command_count;
    memcpy (commands, agent->commands, count * sizeof commands [0]);
    agent->command_count = 0;
    pthread_mutex_unlock (&agent->lock);
    for (size_t index = 0; index < count; index++) {
        herald_agent_sub_t *sub = commands [index].sub;
        if (commands [index].kind == HERALD_CMD_SUBSCRIBE) {
            herald_io_sub_t *state = self->sub_count < HERALD_AGENT_SUBS_MAX
                                   ? herald_io_sub_new (self, sub): NULL;
            if (state)
                self->subs [self->sub_count++] = state;
            else
                herald_agent_sub_fail (agent, sub, HERALD_ERR_NOMEM, "out of memory", false);
        }
        else
        for (size_t at = 0; at < self->sub_count; at++)
            if (self->subs [at]->sub == sub) {
                herald_io_sub_destroy (self, &self->subs [at]);
                self->subs [at] = self->subs [--self->sub_count];
                break;
            }
    }
}

static void
s_timers (herald_io_t *self, int64_t now)
{
    herald_agent_t *agent = self->agent;
    if (self->last_hb && now - self->last_hb > 3 * (int64_t) agent->options.heartbeat_ms)
        atomic_store (&agent->broker_reachable, false);
    herald_io_node_tick (self, now);
    herald_io_auth_tick (self, now);
    if ((self->hello_due || (!herald_io_node_fanout (self) && !self->fanout_none))
    &&  self->dealer_up && !self->moving
    &&  now >= self->hello_at) {
        //  No WELCOME to the last one for HELLO_RETRY_MS: ask again (a
        //  WELCOME to any HELLO since the lineage had to be read counts).
        //  Never assume one: live events and replays of a lineage not read
        //  would pass checkpoints over a loss (then DATA_LOST, and events
        //  delivered twice).  With other nodes known, herald_io_node.c
        //  moves on from a node that does not answer
        herald_msg_t msg;
        memset (&msg, 0, sizeof msg);
        msg.type = HERALD_MSG_HELLO;
        msg.has_rid = true;
        msg.rid = self->next_rid++;
        msg.hello.proto = HERALD_PROTO_VERSION;
        msg.hello.client = (herald_str_t) { agent->service, strlen (agent->service) };
        self->buffer.size = 0;
        //  The DEALER is "connected" (monitor) before its handshake is
        //  done, and with ZMQ_IMMEDIATE a send fails until then: try again
        //  in a moment, not after HELLO_RETRY_MS, or the SUB would connect
        //  (and the subscription go live) a second later than it can
        if (herald_msg_encode (&msg, &self->buffer) == 0 && herald_io_send (self, "HELLO") == 0) {
            if (!self->hello_first)
                self->hello_first = msg.rid;
            self->hello_at = now + HELLO_RETRY_MS;
        }
        else
            self->hello_at = now + HELLO_SEND_RETRY_MS;
    }
    int64_t patience = 2 * (int64_t) agent->options.timeout_ms;
    if (patience < 10000)
        patience = 10000;
    if (self->flight_count && now - self->flights [0].sent_at > patience) {
        s_log ("no answer to PUBLISH for %" PRId64 " ms: sending again", patience);
        herald_io_flights_requeue (self);
    }
    for (size_t index = 0; index < self->sub_count; index++)
        herald_io_sub_tick (self, self->subs [index], now);
}

static int64_t
s_wait_ms (herald_io_t *self, int64_t now)
{
    int64_t due = now + 200;
    for (size_t index = 0; index < self->sub_count; index++) {
        int64_t sub_due = herald_io_sub_due (self, self->subs [index]);
        if (sub_due < due)
            due = sub_due;
    }
    if (self->publish_retry_at > now && self->publish_retry_at < due)
        due = self->publish_retry_at;
    if ((self->hello_due || (!herald_io_node_fanout (self) && !self->fanout_none))
    &&  self->dealer_up && !self->moving && self->hello_at < due)
        due = self->hello_at;
    int64_t node_due = herald_io_node_due (self);
    if (node_due < due)
        due = node_due;
    int64_t auth_due = herald_io_auth_due (self);
    if (auth_due < due)
        due = auth_due;
    return due > now? due - now: 0;
}

void
herald_io_actor (zsock_t *pipe, void *args)
{
    herald_agent_t *agent = (herald_agent_t *) args;
    char why [200] = "";
    herald_io_t *self = s_self_new (pipe, agent, why, sizeof why);
    if (!self) {
        //  herald_agent_new reads these once zactor_new has our signal
        snprintf (agent->io_message, sizeof agent->io_message, "%s", why);
        atomic_store (&agent->io_start_error, HERALD_ERR_IO);
        zsock_signal (pipe, 1);
        return;
    }
    zsock_signal (pipe, 0);
    while (!self->terminated) {
        int64_t now = herald_agent_now_ms ();
        zmq_pollitem_t items [] = {
            { zsock_resolve (pipe), 0, ZMQ_POLLIN, 0 },
            { zsock_resolve (self->dealer), 0, ZMQ_POLLIN, 0 },
            { zsock_resolve (self->sub), 0, ZMQ_POLLIN, 0 },
            { NULL, agent->wake_fd, ZMQ_POLLIN, 0 },
            { self->mon_dealer? zsock_resolve (self->mon_dealer): NULL, -1, ZMQ_POLLIN, 0 },
            { self->mon_sub? zsock_resolve (self->mon_sub): NULL, -1, ZMQ_POLLIN, 0 },
            { zsock_resolve (self->deliver), 0, ZMQ_POLLOUT, 0 }
        };
        int count = zlist_size (self->pending)? 7: 6;
        if (zmq_poll (items, count, s_wait_ms (self, now)) < 0 && zmq_errno () != EINTR)
            break;
        if (items [0].revents & ZMQ_POLLIN) {
            char *command = zstr_recv (pipe);
            if (!command || streq (command, "$TERM"))
                self->terminated = true;
            zstr_free (&command);
        }
        if (items [3].revents & ZMQ_POLLIN)
            s_commands (self);
        if (items [4].revents & ZMQ_POLLIN)
            s_recv_monitor (self, self->mon_dealer, true);
        if (items [5].revents & ZMQ_POLLIN)
            s_recv_monitor (self, self->mon_sub, false);
        s_recv_sub (self);
        s_recv_dealer (self);
        s_drain_pending (self);
        s_publish_send (self);
        s_timers (self, herald_agent_now_ms ());
        for (size_t index = 0; index < self->sub_count; index++)
            herald_io_sub_flush (self, self->subs [index]);
        s_drain_pending (self);
    }
    //  Tell the delivery thread to stop.  It skips the events sent before,
    //  but runs every publish completion: those still waiting here go
    //  through the pipe first, and what cannot (the thread is stuck in a
    //  handler) is left to herald_agent_destroy, which runs it after the
    //  thread has exited.  Events still waiting here are dropped (their
    //  checkpoints were not moved: they are delivered again).
    zsock_set_sndtimeo (self->deliver, 5000);
    bool piped = true;
    herald_batch_t *batch;
    while ((batch = zlist_pop (self->pending))) {
        if (batch->kind != HERALD_BATCH_COMPLETIONS)
            herald_batch_destroy (&batch);
        else
        if (!(piped = piped && zmq_send (zsock_resolve (self->deliver), &batch, sizeof batch,
                                         0) == (int) sizeof batch))
            herald_agent_keep_completions (agent, batch);
    }
    herald_batch_t *stop = calloc (1, sizeof *stop);
    if (stop && piped) {
        stop->kind = HERALD_BATCH_STOP;
        if (zmq_send (zsock_resolve (self->deliver), &stop, sizeof stop, 0) == (int) sizeof stop)
            stop = NULL;
    }
    herald_batch_destroy (&stop);
    s_self_destroy (&self);
}
