/*  =========================================================================
    herald_broker - the broker actor: HWP/1 on a ROUTER and a PUB socket

    DESIGN

    One loop owns the sockets, the queue of PUBLISH requests and the open
    streams; one more thread, the writer (herald_writer), runs the store
    append of a group commit, so that the loop serves streams and reads
    the next commit's requests while RocksDB writes and syncs the WAL.

      wake on the api socket, the pipe or the writer, or when a heartbeat
      or a stream is due
        |
        +-- the writer is done: ACK or ERROR each request of its commit,
        |   in arrival order; then fan the new events out on PUB, in seq
        |   order, as the very bytes the store wrote
        +-- drain the requests already waiting (until DRAIN_EVENTS events
        |   or DRAIN_BYTES bytes are queued): answer STATUS/HELLO at once,
        |   open or feed streams, queue PUBLISH requests
        +-- writer free: every queued PUBLISH goes to it as ONE
        |   herald_store_append (one WriteBatch, one WAL sync)
        +-- heartbeat when due
        +-- give each stream with credit one slice (STREAM_SLICE events)

    What arrives while a commit is being written is queued and goes into
    the next one: the group commit the issue asks for.  The loop and the
    writer hand a commit over by message and never touch it at the same
    time; the store allows reads from any thread beside its one appender,
    and the loop reads the envelopes an append wrote only once it is done.
    Streams (REPLAY, READ) run in time slices beside ingest: each turn of
    the loop sends at most one slice per stream, so a 10M-event replay
    cannot hold an ACK up for more than a slice, and a commit's fsync no
    longer holds the replay up.

    Bounds: at most max_queued PUBLISH requests wait (then `overloaded`),
    and a drain ends at DRAIN_EVENTS events or DRAIN_BYTES bytes queued, so
    one commit holds at most that plus one request; behind it each client
    connection has at most ROUTER_RCVHWM requests read off its socket, and
    TCP holds the rest back.  At most max_streams streams run (then
    `overloaded`), and a stream never has more events outstanding than its
    credit.
    =========================================================================
*/

#include <inttypes.h>
#include "herald_broker.h"
#include "herald_msg.h"
#include "herald_slab.h"
#include "herald_writer.h"
#include "herald_uuid.h"

#define DRAIN_EVENTS        8192        //  queued events that end a drain
#define DRAIN_BYTES         (64u << 20) //  queued request bytes that end a drain
#define STREAM_SLICE        256         //  events per EVENTS message and turn
#define ROUTER_SNDHWM       100000
//  Requests waiting per client connection before libzmq stops reading its
//  TCP stream: a pipelining client is slowed by TCP, and what waits in the
//  broker stays bounded per connection.
#define ROUTER_RCVHWM       1000
#define SLAB_BLOCK          (32 * 1024) //  bytes per block of outgoing frames;
                                        //  below glibc's 64 KiB free that consolidates
//  One group commit publishes up to DRAIN_EVENTS events at once, and more
//  in a burst of commits; libzmq's default of 1000 dropped events even for
//  subscribers keeping up.  A subscriber that falls this far behind loses
//  messages (and its agent replays); its cost to the broker stays bounded.
#define FANOUT_SNDHWM       100000

typedef struct {
    zframe_t *identity;                 //  owned
    zframe_t *body;                     //  owned; the events point into it
    msgpack_zone zone;                  //  owns the decoded arrays
    herald_msg_t msg;
    herald_append_result_t *results;    //  msg.publish.count entries
} s_request_t;

typedef struct {
    zframe_t *identity;                 //  owned
    uint64_t rid;
    bool is_read;
    herald_scan_t *scan;                //  owned
    uint64_t credit;
    int64_t idle_since;                 //  when credit last ran out or was given
    //  When credit runs out the stream reads one event ahead, so that it
    //  can END at once when there is none (END needs no credit); a found
    //  one is held here, borrowed from the scan, and sent first next time.
    const uint8_t *held;
    size_t held_len;
} s_stream_t;

typedef struct {
    zsock_t *pipe;
    zsock_t *router;
    zsock_t *pub;
    herald_slab_t *slab;                //  the bytes of outgoing event frames
    herald_config_t *config;            //  borrowed
    herald_store_t *store;              //  borrowed
    char *node;
    uint64_t epoch;
    int64_t started;
    int64_t next_heartbeat;
    herald_writer_t *writer;            //  appends on its own thread
    zlistx_t *queue;                    //  s_request_t, in arrival order
    size_t queued_events;
    size_t queued_bytes;                //  PUBLISH bodies held by the queue
    //  The commit in flight: its requests, their store batches, the head
    //  before it and when it started
    zlistx_t *committing;               //  s_request_t, in arrival order
    size_t committing_events;
    herald_batch_t *batches;
    size_t batch_capacity;
    uint64_t commit_head;
    int64_t commit_started;
    uint64_t fanned;                    //  the last seq published on fanout
    zlistx_t *streams;                  //  s_stream_t
    msgpack_sbuffer buffer;
    msgpack_zone zone;                  //  scratch, for messages answered at once
    herald_limits_t limits;
    bool terminated;
    bool fatal;
    //  Counters shown by STATUS
    uint64_t published, duplicates, conflicts, refused, dropped, streams_served;
} self_t;

//  Log lines go to stderr, filtered by --log-level (set once, at start,
//  before the loop; read only by this thread).
static const char *s_levels [] = { "error", "warn", "info", "debug" };
static int s_log_level = 2;

static bool
s_debug_on (void)
{
    return s_log_level >= 3;
}

//  A client connection's name in log lines: its ROUTER identity in hex.
static const char *
s_peer (zframe_t *identity, char out [24])
{
    size_t len = identity? zframe_size (identity): 0;
    const uint8_t *bytes = identity? zframe_data (identity): NULL;
    size_t used = 0;
    for (size_t i = 0; i < len && used + 3 <= 24; i++)
        used += (size_t) snprintf (out + used, 24 - used, "%02x", bytes [i]);
    out [used] = 0;
    return out;
}

static void
s_log (const char *level, const char *format, ...)
{
    int rank = 0;
    while (rank < 3 && strcmp (s_levels [rank], level) != 0)
        rank++;
    if (rank > s_log_level)
        return;
    va_list args;
    va_start (args, format);
    fprintf (stderr, "heraldd: %s: ", level);
    vfprintf (stderr, format, args);
    fprintf (stderr, "\n");
    va_end (args);
}

static void
s_request_destroy (s_request_t **self_p)
{
    s_request_t *self = *self_p;
    if (!self)
        return;
    zframe_destroy (&self->identity);
    zframe_destroy (&self->body);
    msgpack_zone_destroy (&self->zone);
    free (self->results);
    free (self);
    *self_p = NULL;
}

static void
s_stream_destroy (s_stream_t **self_p)
{
    s_stream_t *self = *self_p;
    if (!self)
        return;
    zframe_destroy (&self->identity);
    herald_scan_destroy (&self->scan);
    free (self);
    *self_p = NULL;
}

//  ---------------------------------------------------------------------
//  Identity: the node id is kept in the store; the epoch grows each start

static int
s_identity (self_t *self)
{
    char *value = NULL;
    size_t len = 0;
    if (*self->config->node)
        self->node = strdup (self->config->node);
    else
    if (herald_store_meta_get (self->store, "node", &value, &len) == HERALD_OK) {
        self->node = strndup (value, len);
        free (value);
    }
    else {
        uint8_t id [16];
        herald_uuid_v7 (id);
        char text [40];
        snprintf (text, sizeof (text), "herald-%02x%02x%02x%02x%02x%02x",
                  id [10], id [11], id [12], id [13], id [14], id [15]);
        self->node = strdup (text);
        if (herald_store_meta_put (self->store, "node", text, strlen (text)) != HERALD_OK)
            return -1;
    }
    uint64_t epoch = 0;
    if (herald_store_meta_get (self->store, "epoch", &value, &len) == HERALD_OK) {
        char text [32] = "";
        memcpy (text, value, len < sizeof (text) - 1? len: sizeof (text) - 1);
        epoch = strtoull (text, NULL, 10);
        free (value);
    }
    self->epoch = epoch + 1;
    char text [32];
    snprintf (text, sizeof (text), "%" PRIu64, self->epoch);
    if (herald_store_meta_put (self->store, "epoch", text, strlen (text)) != HERALD_OK)
        return -1;
    return self->node? 0: -1;
}

static self_t *
s_self_new (zsock_t *pipe, herald_broker_args_t *args)
{
    self_t *self = (self_t *) zmalloc (sizeof (self_t));
    self->pipe = pipe;
    self->config = args->config;
    self->store = args->store;
    self->queue = zlistx_new ();
    self->committing = zlistx_new ();
    self->writer = herald_writer_new (self->store);
    assert (self->writer);
    self->fanned = herald_store_head (self->store);
    self->streams = zlistx_new ();
    self->slab = herald_slab_new (SLAB_BLOCK);
    assert (self->slab);
    msgpack_sbuffer_init (&self->buffer);
    msgpack_zone_init (&self->zone, 4096);
    self->limits.max_event_bytes = self->config->max_event_bytes;
    self->limits.max_batch = self->config->max_batch;
    self->started = zclock_mono ();
    for (int rank = 0; rank < 4; rank++)
        if (strcmp (s_levels [rank], self->config->log_level) == 0)
            s_log_level = rank;
    return self;
}

static void
s_self_destroy (self_t **self_p)
{
    self_t *self = *self_p;
    if (!self)
        return;
    //  An append still in flight is waited for (only after a failure: the
    //  loop finishes its commits before it ends).
    herald_writer_destroy (&self->writer);
    s_request_t *request = (s_request_t *) zlistx_first (self->queue);
    while (request) {
        s_request_destroy (&request);
        request = (s_request_t *) zlistx_next (self->queue);
    }
    zlistx_destroy (&self->queue);
    request = (s_request_t *) zlistx_first (self->committing);
    while (request) {
        s_request_destroy (&request);
        request = (s_request_t *) zlistx_next (self->committing);
    }
    zlistx_destroy (&self->committing);
    free (self->batches);
    s_stream_t *stream = (s_stream_t *) zlistx_first (self->streams);
    while (stream) {
        s_stream_destroy (&stream);
        stream = (s_stream_t *) zlistx_next (self->streams);
    }
    zlistx_destroy (&self->streams);
    zsock_destroy (&self->router);
    zsock_destroy (&self->pub);
    herald_slab_destroy (&self->slab);
    msgpack_sbuffer_destroy (&self->buffer);
    msgpack_zone_destroy (&self->zone);
    free (self->node);
    free (self);
    *self_p = NULL;
}

//  ---------------------------------------------------------------------
//  Sending

//  Frames go out with zmq_send rather than as zmsg_t: a zframe_t and a
//  list node per frame cost two mallocs and two frees each, which was
//  most of the broker's time on a replay (one frame per event).

//  Send one frame of len bytes; more: further frames follow.
static void
s_send_frame (zsock_t *sock, const void *data, size_t len, bool more)
{
    zmq_send (zsock_resolve (sock), data, len, more? ZMQ_SNDMORE: 0);
}

//  Send frame (taken: sent or closed); more: further frames follow.
static void
s_send_msg (zsock_t *sock, zmq_msg_t *frame, bool more)
{
    if (zmq_msg_send (frame, zsock_resolve (sock), more? ZMQ_SNDMORE: 0) < 0)
        zmq_msg_close (frame);
}

//  Send [identity, command, body] on the api socket; the body is the
//  buffer's content.  identity is borrowed.
static void
s_reply (self_t *self, zframe_t *identity, const char *command)
{
    s_send_frame (self->router, zframe_data (identity), zframe_size (identity), true);
    s_send_frame (self->router, command, strlen (command), true);
    s_send_frame (self->router, self->buffer.data, self->buffer.size, false);
}

static void
s_reply_msg (self_t *self, zframe_t *identity, const herald_msg_t *reply)
{
    self->buffer.size = 0;
    if (herald_msg_encode (reply, &self->buffer) == 0)
        s_reply (self, identity, herald_msg_command (reply->type));
}

static void
s_reply_error (self_t *self, zframe_t *identity, const herald_error_t *err)
{
    self->refused++;
    if (s_debug_on ()) {
        char peer [24];
        s_log ("debug", "peer %s: rid %s%" PRIu64 ": ERROR %s: %s", s_peer (identity, peer),
               err->has_rid? "": "nil ", err->has_rid? err->rid: 0,
               herald_err_code (err->code)? herald_err_code (err->code): "internal",
               err->message);
    }
    self->buffer.size = 0;
    if (herald_msg_encode_error (err, &self->buffer) == 0)
        s_reply (self, identity, "ERROR");
}

static void
s_heartbeat (self_t *self)
{
    herald_msg_t beat = { .type = HERALD_MSG_HEARTBEAT };
    //  What subscribers can have seen: a commit is durable a moment before
    //  the loop fans it out.
    beat.heartbeat.head = self->fanned;
    struct timespec now;
    clock_gettime (CLOCK_REALTIME, &now);
    beat.heartbeat.ts = (uint64_t) now.tv_sec * 1000000000ULL + (uint64_t) now.tv_nsec;
    beat.heartbeat.node = (herald_str_t) { self->node, strlen (self->node) };
    beat.heartbeat.epoch = self->epoch;
    self->buffer.size = 0;
    if (herald_msg_encode (&beat, &self->buffer) == 0) {
        s_send_frame (self->pub, "$hb", 3, true);
        s_send_frame (self->pub, self->buffer.data, self->buffer.size, false);
    }
    self->next_heartbeat = zclock_mono () + (int64_t) self->config->heartbeat_ms;
}

//  ---------------------------------------------------------------------
//  Group commit

//  True while the queue takes more requests before the next commit.
static bool
s_queue_has_room (self_t *self)
{
    return self->queued_events < DRAIN_EVENTS && self->queued_bytes < DRAIN_BYTES;
}

//  Hand every queued PUBLISH to the writer as one store append, unless an
//  append is in flight: what arrives meanwhile goes into the next one.
static void
s_commit_start (self_t *self)
{
    size_t count = zlistx_size (self->queue);
    if (count == 0 || herald_writer_busy (self->writer))
        return;
    //  The queue becomes the commit in flight; an empty list the queue.
    zlistx_t *swap = self->committing;
    self->committing = self->queue;
    self->queue = swap;
    self->committing_events = self->queued_events;
    self->queued_events = 0;
    self->queued_bytes = 0;
    if (count > self->batch_capacity) {
        self->batches = (herald_batch_t *) realloc (self->batches, count * sizeof (herald_batch_t));
        assert (self->batches);
        self->batch_capacity = count;
    }
    memset (self->batches, 0, count * sizeof (herald_batch_t));
    size_t index = 0;
    s_request_t *request = (s_request_t *) zlistx_first (self->committing);
    for (; request; request = (s_request_t *) zlistx_next (self->committing), index++) {
        self->batches [index].events = request->msg.publish.events;
        self->batches [index].count = request->msg.publish.count;
        self->batches [index].results = request->results;
    }
    self->commit_head = herald_store_head (self->store);
    self->commit_started = zclock_usecs ();
    herald_writer_start (self->writer, self->batches, count);
}

//  The append in flight is done: answer each of its requests in arrival
//  order, then fan the new events out in seq order.
static void
s_commit_finish (self_t *self)
{
    herald_error_t err = { 0 };
    herald_err rc = herald_writer_finish (self->writer, &err);
    size_t count = zlistx_size (self->committing);
    uint64_t head = self->commit_head;
    if (rc != HERALD_OK) {
        //  Never ACK what RocksDB did not take; and do not run on with a
        //  store that failed: stop loudly.
        s_log ("error", "store append failed: %s; stopping", err.message);
        self->fatal = true;
    }
    else
    if (s_debug_on ())
        s_log ("debug", "commit: %zu requests, %zu events, seq %" PRIu64 "..%" PRIu64
               " durable in %.3f ms", count, self->committing_events, head + 1,
               herald_store_head (self->store),
               (double) (zclock_usecs () - self->commit_started) / 1e3);
    size_t index = 0;
    s_request_t *request = (s_request_t *) zlistx_first (self->committing);
    for (; request; request = (s_request_t *) zlistx_next (self->committing), index++) {
        herald_batch_t *batch = &self->batches [index];
        herald_msg_t reply = { .has_rid = true, .rid = request->msg.rid };
        if (rc != HERALD_OK) {
            herald_error_t internal = { .code = HERALD_ERR_INTERNAL, .has_rid = true,
                                        .rid = request->msg.rid };
            snprintf (internal.message, sizeof (internal.message), "store failure: %.150s",
                      err.message);
            s_reply_error (self, request->identity, &internal);
            continue;
        }
        if (batch->status == HERALD_ERR_CONFLICT) {
            const herald_event_t *event = &batch->events [batch->conflict_index];
            reply.type = HERALD_MSG_ERROR;
            reply.error.code = HERALD_ERR_CONFLICT;
            //  The topic has its own field; the message does not repeat
            //  it, so it can never be cut inside a UTF-8 character.
            char message [160];
            snprintf (message, sizeof (message),
                      "events[%zu]: the topic is at version %" PRIu64 ", not %" PRIu64,
                      batch->conflict_index, batch->actual, batch->expected);
            reply.error.message = (herald_str_t) { message, strlen (message) };
            reply.error.topic = (herald_str_t) { event->topic, event->topic_len };
            reply.error.expected = batch->expected;
            reply.error.actual = batch->actual;
            self->conflicts++;
            s_reply_msg (self, request->identity, &reply);
            continue;
        }
        uint64_t *seqs = (uint64_t *) zmalloc (batch->count * sizeof (uint64_t));
        uint64_t *vers = (uint64_t *) zmalloc (batch->count * sizeof (uint64_t));
        bool *dups = (bool *) zmalloc (batch->count * sizeof (bool));
        for (size_t i = 0; i < batch->count; i++) {
            seqs [i] = batch->results [i].seq;
            vers [i] = batch->results [i].ver;
            dups [i] = batch->results [i].dup;
            if (dups [i])
                self->duplicates++;
        }
        reply.type = HERALD_MSG_ACK;
        reply.ack.seq = seqs;
        reply.ack.ver = vers;
        reply.ack.dup = dups;
        reply.ack.count = batch->count;
        s_reply_msg (self, request->identity, &reply);
        free (seqs);
        free (vers);
        free (dups);
    }
    while ((request = (s_request_t *) zlistx_first (self->committing))) {
        zlistx_delete (self->committing, zlistx_cursor (self->committing));
        s_request_destroy (&request);
    }
    self->committing_events = 0;
    if (rc != HERALD_OK)
        return;

    uint64_t new_head = herald_store_head (self->store);
    for (uint64_t seq = head + 1; seq <= new_head; seq++) {
        const uint8_t *envelope;
        size_t len;
        const char *topic;
        size_t topic_len;
        uint64_t s, v, t;
        if (!herald_store_appended (self->store, seq, &envelope, &len)
        ||  !herald_event_peek (envelope, len, &topic, &topic_len, &s, &v, &t))
            continue;
        zmq_msg_t frame;
        if (herald_slab_frame (self->slab, &frame, envelope, len) != 0) {
            s_log ("error", "out of memory for a frame of %zu bytes; stopping", len);
            self->fatal = true;
            return;
        }
        s_send_frame (self->pub, topic, topic_len, true);
        s_send_msg (self->pub, &frame, false);
        self->published++;
        self->fanned = seq;
    }
}

//  ---------------------------------------------------------------------
//  Streams

static s_stream_t *
s_stream_find (self_t *self, zframe_t *identity, uint64_t rid)
{
    s_stream_t *stream = (s_stream_t *) zlistx_first (self->streams);
    for (; stream; stream = (s_stream_t *) zlistx_next (self->streams))
        if (stream->rid == rid && zframe_eq (stream->identity, identity))
            return stream;
    return NULL;
}

//  Send END for the stream at the list's cursor and drop it.
static void
s_stream_end (self_t *self, s_stream_t *stream, const char *reason)
{
    herald_msg_t end = { .type = HERALD_MSG_END, .has_rid = true, .rid = stream->rid };
    //  A held event was read but not sent: last stops just before it.
    end.end.last = herald_scan_last (stream->scan) - (stream->held? 1: 0);
    end.end.head = stream->is_read? herald_scan_head (stream->scan)
                                   : herald_store_head (self->store);
    end.end.reason = (herald_str_t) { reason, strlen (reason) };
    s_reply_msg (self, stream->identity, &end);
    if (s_debug_on ()) {
        char peer [24];
        s_log ("debug", "peer %s: %s rid %" PRIu64 " ended %s, last %" PRIu64,
               s_peer (stream->identity, peer), stream->is_read? "READ": "REPLAY",
               stream->rid, reason, end.end.last);
    }
    void *handle = zlistx_find (self->streams, stream);
    if (handle)
        zlistx_delete (self->streams, handle);
    s_stream_destroy (&stream);
    self->streams_served++;
}

//  One slice of a stream: up to STREAM_SLICE events within its credit, in
//  one EVENTS message; END when the scan is done.
static void
s_stream_pump (self_t *self, s_stream_t *stream)
{
    //  Each envelope is copied into a frame as it is read (the scan's
    //  pointer lives only until the next read) and sent once the next one
    //  is known, so that the last frame goes out without ZMQ_SNDMORE.
    zmq_msg_t frame;
    bool pending = false;
    size_t sent = 0;
    int rc = 1;
    while (stream->credit > 0 && sent < STREAM_SLICE) {
        const uint8_t *envelope = stream->held;
        size_t len = stream->held_len;
        stream->held = NULL;
        if (!envelope) {
            uint64_t seq;
            rc = herald_scan_next (stream->scan, &envelope, &len, &seq);
            if (rc != 1)
                break;
        }
        if (pending)
            s_send_msg (self->router, &frame, true);
        else {
            herald_msg_t events = { .type = HERALD_MSG_EVENTS, .has_rid = true,
                                    .rid = stream->rid };
            self->buffer.size = 0;
            herald_msg_encode (&events, &self->buffer);
            s_send_frame (self->router, zframe_data (stream->identity),
                          zframe_size (stream->identity), true);
            s_send_frame (self->router, "EVENTS", 6, true);
            s_send_frame (self->router, self->buffer.data, self->buffer.size, true);
        }
        if (herald_slab_frame (self->slab, &frame, envelope, len) != 0) {
            //  Out of memory: stop loudly rather than skip an event.
            s_log ("error", "out of memory for a frame of %zu bytes; stopping", len);
            self->fatal = true;
            break;
        }
        pending = true;
        stream->credit--;
        sent++;
    }
    if (pending)
        s_send_msg (self->router, &frame, false);
    if (rc == 1 && stream->credit == 0 && !stream->held) {
        //  Out of credit: look one event ahead, to END now if none is left.
        uint64_t seq;
        rc = herald_scan_next (stream->scan, &stream->held, &stream->held_len, &seq);
        if (rc != 1)
            stream->held = NULL;
    }
    if (stream->credit == 0 && sent)
        stream->idle_since = zclock_mono ();
    if (rc == 0)
        s_stream_end (self, stream, "done");
    else
    if (rc < 0) {
        s_log ("error", "stream %" PRIu64 ": %s", stream->rid,
               herald_scan_error (stream->scan)->message);
        s_stream_end (self, stream, "done");
    }
}

//  Give every stream with credit one slice; end those idle too long.
//  Returns true when some stream still has credit to spend.
static bool
s_pump_streams (self_t *self)
{
    int64_t now = zclock_mono ();
    zlistx_t *ready = zlistx_new ();
    s_stream_t *stream = (s_stream_t *) zlistx_first (self->streams);
    for (; stream; stream = (s_stream_t *) zlistx_next (self->streams))
        zlistx_add_end (ready, stream);
    bool busy = false;
    stream = (s_stream_t *) zlistx_first (ready);
    for (; stream; stream = (s_stream_t *) zlistx_next (ready)) {
        if (stream->credit > 0) {
            s_stream_pump (self, stream);
            if (zlistx_find (self->streams, stream) && stream->credit > 0)
                busy = true;
        }
        else
        if (now - stream->idle_since >= (int64_t) self->config->stream_idle_ms)
            s_stream_end (self, stream, "expired");
    }
    zlistx_destroy (&ready);
    return busy;
}

//  Open a REPLAY or READ stream for a decoded request.
static void
s_stream_open (self_t *self, zframe_t *identity, const herald_msg_t *msg)
{
    herald_error_t err = { .has_rid = true, .rid = msg->rid };
    if (s_stream_find (self, identity, msg->rid)) {
        herald_error_set (&err, HERALD_ERR_BAD_REQUEST, "rid",
                          "rid %" PRIu64 " is a stream still running", msg->rid);
        s_reply_error (self, identity, &err);
        return;
    }
    if (zlistx_size (self->streams) >= self->config->max_streams) {
        herald_error_set (&err, HERALD_ERR_OVERLOADED, "",
                          "%zu streams are running; try again later",
                          zlistx_size (self->streams));
        s_reply_error (self, identity, &err);
        return;
    }
    herald_scan_t *scan;
    uint64_t credit;
    if (msg->type == HERALD_MSG_REPLAY) {
        herald_scan_spec_t spec = {
            .has_from_ts = msg->replay.has_from_ts,
            .from = msg->replay.has_from? msg->replay.from: 1,
            .from_ts = msg->replay.from_ts,
            .has_to = msg->replay.has_to,
            .to = msg->replay.to,
            .has_until_ts = msg->replay.has_until_ts,
            .until_ts = msg->replay.until_ts,
            .prefixes = msg->replay.prefixes,
            .prefix_count = msg->replay.prefix_count
        };
        scan = herald_store_scan (self->store, &spec, &err);
        credit = msg->replay.credit;
    }
    else {
        scan = herald_store_read (self->store, msg->read.topic.ptr, msg->read.topic.len,
                                  msg->read.from_ver,
                                  msg->read.has_to_ver? msg->read.to_ver: 0, &err);
        credit = msg->read.credit;
    }
    if (!scan) {
        err.has_rid = true;
        err.rid = msg->rid;
        s_reply_error (self, identity, &err);
        return;
    }
    s_stream_t *stream = (s_stream_t *) zmalloc (sizeof (s_stream_t));
    stream->identity = zframe_dup (identity);
    stream->rid = msg->rid;
    stream->is_read = msg->type == HERALD_MSG_READ;
    stream->scan = scan;
    stream->credit = credit;
    stream->idle_since = zclock_mono ();
    zlistx_add_end (self->streams, stream);
    if (credit == 0) {
        //  No credit yet: look ahead anyway, so an empty stream ENDs now.
        uint64_t seq;
        int rc = herald_scan_next (scan, &stream->held, &stream->held_len, &seq);
        if (rc != 1) {
            stream->held = NULL;
            s_stream_end (self, stream, "done");
        }
    }
}

//  ---------------------------------------------------------------------
//  Requests

static void
s_status (self_t *self, zframe_t *identity, uint64_t rid)
{
    static const char *names [] = {
        "published", "duplicates", "conflicts", "refused", "dropped",
        "streams", "streams_served", "queued", "epoch", "disk_bytes", "durability_sync"
    };
    herald_str_t keys [sizeof (names) / sizeof (names [0])];
    for (size_t i = 0; i < sizeof (names) / sizeof (names [0]); i++)
        keys [i] = (herald_str_t) { names [i], strlen (names [i]) };
    uint64_t values [] = {
        self->published, self->duplicates, self->conflicts, self->refused, self->dropped,
        zlistx_size (self->streams), self->streams_served,
        zlistx_size (self->queue) + zlistx_size (self->committing),
        self->epoch, herald_store_disk_size (self->store),
        self->config->durability == HERALD_DURABILITY_SYNC
    };
    herald_msg_t reply = { .type = HERALD_MSG_STATUS_REPLY, .has_rid = true, .rid = rid };
    reply.status.head = herald_store_head (self->store);
    reply.status.topics = herald_store_topic_count (self->store);
    reply.status.events = herald_store_event_count (self->store);
    reply.status.role = (herald_str_t) { "standalone", 10 };
    reply.status.node = (herald_str_t) { self->node, strlen (self->node) };
    reply.status.uptime_s = (uint64_t) ((zclock_mono () - self->started) / 1000);
    reply.status.extra_keys = keys;
    reply.status.extra_values = values;
    reply.status.extra_count = sizeof (values) / sizeof (values [0]);
    s_reply_msg (self, identity, &reply);
}

static void
s_welcome (self_t *self, zframe_t *identity, uint64_t rid)
{
    herald_str_t cluster [1] = { { self->config->api, strlen (self->config->api) } };
    herald_msg_t reply = { .type = HERALD_MSG_WELCOME, .has_rid = true, .rid = rid };
    reply.welcome.proto = HERALD_PROTO_VERSION;
    reply.welcome.node = (herald_str_t) { self->node, strlen (self->node) };
    reply.welcome.head = herald_store_head (self->store);
    reply.welcome.fanout = (herald_str_t) { self->config->fanout, strlen (self->config->fanout) };
    reply.welcome.cluster = cluster;
    reply.welcome.cluster_count = 1;
    s_reply_msg (self, identity, &reply);
}

//  The rid of a body whose command is unknown, when one can be read.
static void
s_peek_rid (self_t *self, zframe_t *body, herald_error_t *err)
{
    if (!body)
        return;
    herald_msg_t probe;
    herald_error_t probe_err = { 0 };
    msgpack_zone_clear (&self->zone);
    if (herald_msg_decode (&probe, HERALD_MSG_STATUS, zframe_data (body), zframe_size (body),
                           NULL, &self->zone, &probe_err) == HERALD_OK) {
        err->has_rid = true;
        err->rid = probe.rid;
    }
    else
    if (probe_err.has_rid) {
        err->has_rid = true;
        err->rid = probe_err.rid;
    }
}

//  Show up to 32 bytes of a peer's frame as printable ASCII, others as
//  \xNN, so an ERROR message is always valid UTF-8.
static void
s_printable (const uint8_t *bytes, size_t len, char *out, size_t size)
{
    size_t used = 0;
    for (size_t i = 0; i < len && i < 32 && used + 5 <= size; i++) {
        if (bytes [i] >= 0x20 && bytes [i] < 0x7f && bytes [i] != '\\')
            out [used++] = (char) bytes [i];
        else
            used += (size_t) snprintf (out + used, size - used, "\\x%02x", bytes [i]);
    }
    out [used] = 0;
}

//  Handle one message from the api socket.  Takes ownership of msg.
static void
s_handle_request (self_t *self, zmsg_t *msg)
{
    zframe_t *identity = zmsg_pop (msg);
    zframe_t *command = zmsg_pop (msg);
    zframe_t *body = zmsg_pop (msg);
    zmsg_destroy (&msg);
    if (!identity || !command) {
        self->dropped++;                //  no peer to address: drop and count
        goto done;
    }
    herald_error_t err = { 0 };
    herald_msg_type_t type = herald_msg_type_from_command (zframe_data (command),
                                                           zframe_size (command), false);
    if (type == HERALD_MSG_INVALID) {
        s_peek_rid (self, body, &err);
        char shown [32 * 4 + 1];
        s_printable (zframe_data (command), zframe_size (command), shown, sizeof (shown));
        herald_error_set (&err, HERALD_ERR_UNKNOWN_COMMAND, "command",
                          "unknown command '%s'", shown);
        s_reply_error (self, identity, &err);
        goto done;
    }
    if (!body && (type == HERALD_MSG_CREDIT || type == HERALD_MSG_CANCEL)) {
        self->dropped++;                //  never a reply of their own: ignored, counted
        goto done;
    }
    if (!body) {
        herald_error_set (&err, HERALD_ERR_BAD_REQUEST, "body",
                          "a request is a command frame and a body frame");
        s_reply_error (self, identity, &err);
        goto done;
    }
    if (type == HERALD_MSG_PUBLISH) {
        s_request_t *request = (s_request_t *) zmalloc (sizeof (s_request_t));
        msgpack_zone_init (&request->zone, 4096);
        request->identity = identity;
        request->body = body;
        identity = body = NULL;
        if (herald_msg_decode (&request->msg, type, zframe_data (request->body),
                               zframe_size (request->body), &self->limits,
                               &request->zone, &err) != HERALD_OK) {
            s_reply_error (self, request->identity, &err);
            s_request_destroy (&request);
            goto done;
        }
        if (zlistx_size (self->queue) >= self->config->max_queued) {
            herald_error_t busy = { .has_rid = true, .rid = request->msg.rid };
            herald_error_set (&busy, HERALD_ERR_OVERLOADED, "",
                              "%zu requests are queued; try again later",
                              zlistx_size (self->queue));
            s_reply_error (self, request->identity, &busy);
            s_request_destroy (&request);
            goto done;
        }
        request->results = (herald_append_result_t *) zmalloc (
            request->msg.publish.count * sizeof (herald_append_result_t));
        self->queued_events += request->msg.publish.count;
        self->queued_bytes += zframe_size (request->body);
        zlistx_add_end (self->queue, request);
        if (s_debug_on ()) {
            char peer [24];
            s_log ("debug", "peer %s: PUBLISH rid %" PRIu64 ", %zu events, %zu bytes",
                   s_peer (request->identity, peer), request->msg.rid,
                   request->msg.publish.count, zframe_size (request->body));
        }
        goto done;
    }
    msgpack_zone_clear (&self->zone);
    herald_msg_t request;
    if (herald_msg_decode (&request, type, zframe_data (body), zframe_size (body),
                           &self->limits, &self->zone, &err) != HERALD_OK) {
        if (type == HERALD_MSG_CREDIT || type == HERALD_MSG_CANCEL)
            self->dropped++;            //  the contract: ignored and counted
        else
            s_reply_error (self, identity, &err);
        goto done;
    }
    if (s_debug_on ()) {
        char peer [24];
        s_log ("debug", "peer %s: %s rid %" PRIu64, s_peer (identity, peer),
               herald_msg_command (type), request.rid);
    }
    switch (type) {
        case HERALD_MSG_REPLAY:
        case HERALD_MSG_READ:
            s_stream_open (self, identity, &request);
            break;
        case HERALD_MSG_CREDIT:
        case HERALD_MSG_CANCEL: {
            s_stream_t *stream = s_stream_find (self, identity, request.rid);
            if (!stream)
                self->dropped++;
            else
            if (type == HERALD_MSG_CANCEL)
                s_stream_end (self, stream, "cancelled");
            else {
                uint64_t credit = stream->credit + request.credit.credit;
                stream->credit = credit > HERALD_CREDIT_MAX? HERALD_CREDIT_MAX: credit;
                stream->idle_since = zclock_mono ();
            }
            break;
        }
        case HERALD_MSG_STATUS:
            s_status (self, identity, request.rid);
            break;
        case HERALD_MSG_HELLO:
            s_welcome (self, identity, request.rid);
            break;
        default:
            break;
    }
done:
    zframe_destroy (&identity);
    zframe_destroy (&command);
    zframe_destroy (&body);
}

//  ---------------------------------------------------------------------
//  The loop

static int
s_bind (self_t *self)
{
    self->router = zsock_new (ZMQ_ROUTER);
    self->pub = zsock_new (ZMQ_PUB);
    if (!self->router || !self->pub)
        return -1;
    zsock_set_sndhwm (self->router, ROUTER_SNDHWM);
    zsock_set_sndhwm (self->pub, FANOUT_SNDHWM);
    zsock_set_rcvhwm (self->router, ROUTER_RCVHWM);
    //  The largest legal PUBLISH, plus room for its framing; a larger frame
    //  makes libzmq drop the connection rather than allocate it.
    uint64_t max_body = (uint64_t) self->config->max_batch * self->config->max_event_bytes
                      + (1u << 20);
    zsock_set_maxmsgsize (self->router, max_body > INT64_MAX? -1: (int64_t) max_body);
    zsock_set_linger (self->router, 1000);
    zsock_set_linger (self->pub, 1000);
    if (zsock_bind (self->router, "%s", self->config->api) < 0) {
        s_log ("error", "cannot bind api %s: %s", self->config->api, zmq_strerror (zmq_errno ()));
        return -1;
    }
    if (zsock_bind (self->pub, "%s", self->config->fanout) < 0) {
        s_log ("error", "cannot bind fanout %s: %s", self->config->fanout,
               zmq_strerror (zmq_errno ()));
        return -1;
    }
    return 0;
}

void
herald_broker_actor (zsock_t *pipe, void *args)
{
    self_t *self = s_self_new (pipe, (herald_broker_args_t *) args);
    //  zactor_new waits for this signal; a failure is reported after it.
    self->fatal = s_identity (self) != 0 || s_bind (self) != 0;
    zsock_signal (pipe, 0);
    if (!self->fatal) {
        s_heartbeat (self);             //  the first, as soon as fanout is bound
        s_log ("info", "node %s epoch %" PRIu64 " serving api %s, fanout %s, head %" PRIu64,
               self->node, self->epoch, self->config->api, self->config->fanout,
               herald_store_head (self->store));
    }

    bool busy = false;
    while (!self->terminated && !self->fatal) {
        int64_t wait = self->next_heartbeat - zclock_mono ();
        if (busy || wait < 0)
            wait = 0;
        //  With the queue full, requests wait in libzmq (and TCP) until
        //  the commit in flight is done.
        zmq_pollitem_t items [] = {
            { zsock_resolve (self->pipe), 0, ZMQ_POLLIN, 0 },
            { zsock_resolve (herald_writer_sock (self->writer)), 0, ZMQ_POLLIN, 0 },
            { zsock_resolve (self->router), 0, s_queue_has_room (self)? ZMQ_POLLIN: 0, 0 }
        };
        if (zmq_poll (items, 3, (long) wait) < 0 && zmq_errno () != EINTR)
            break;
        if (items [0].revents & ZMQ_POLLIN) {
            char *command = zstr_recv (self->pipe);
            if (!command || streq (command, "$TERM"))
                self->terminated = true;
            zstr_free (&command);
        }
        if ((items [1].revents & ZMQ_POLLIN) && herald_writer_busy (self->writer))
            s_commit_finish (self);
        //  Drain what is waiting; it is committed as one batch as soon as
        //  the writer is free.
        while (s_queue_has_room (self) && (zsock_events (self->router) & ZMQ_POLLIN)) {
            zmsg_t *msg = zmsg_recv (self->router);
            if (!msg)
                break;
            s_handle_request (self, msg);
        }
        if (!self->fatal)
            s_commit_start (self);
        if (zclock_mono () >= self->next_heartbeat)
            s_heartbeat (self);
        busy = !self->fatal && s_pump_streams (self);
    }
    //  Finish and answer what is in hand: the commit in flight, then the
    //  requests already queued behind it.
    if (!self->fatal && herald_writer_busy (self->writer))
        s_commit_finish (self);
    if (!self->fatal) {
        s_commit_start (self);
        if (herald_writer_busy (self->writer))
            s_commit_finish (self);
    }
    if (self->fatal)
        zstr_send (pipe, "FATAL");
    else
        s_log ("info", "stopped: %" PRIu64 " events published, head %" PRIu64,
               self->published, herald_store_head (self->store));
    bool terminated = self->terminated;
    s_self_destroy (&self);
    //  Stopped on its own (a failure): the actor still owes zactor_destroy
    //  its $TERM.
    while (!terminated) {
        char *command = zstr_recv (pipe);
        terminated = !command || streq (command, "$TERM");
        zstr_free (&command);
    }
}
