/*  =========================================================================
    herald_streams - the broker's REPLAY and READ streams, under credit

    When credit runs out a stream reads one event ahead, so that it can END
    at once when there is none (END needs no credit); the event found is
    held, borrowed from the scan, and sent first when credit comes.  END's
    `last` then stops just before it.

    A scan that fails (data RocksDB cannot read, a hole in the log, an
    envelope that does not decode) ends its stream with ERROR `internal`
    naming the damage, never END: END `done` would tell the client that
    every event up to `last` was sent, and a client checkpoints that.  The
    events sent before the ERROR are good; the client may retry from after
    the last one.  Such streams are counted (STATUS `stream_errors`) and
    logged, at most one line a second.

    TRIMMED EVENTS
    A scan the store refuses because its start was trimmed, or that meets
    an event trimmed after it began (docs/protocol.md "Trimming"), ends
    with ERROR `trimmed` and `first`: the first seq still there for the
    REPLAY's prefixes (herald_store_first), or the READ topic's first ver.
    Not a failure of the broker: counted apart (STATUS `streams_trimmed`),
    not logged.  So every stream keeps what it reads (its prefixes or its
    topic), not only an owned one.

    MEMORY PER CLIENT
    The api socket queues what a client has not read (libzmq's pipe, up to
    client-hwm messages), and each EVENTS message holds up to a slice of
    events: without more, six unread REPLAYs of a 200k-event log from one
    connection held 250 MiB of the broker.  So the frames of a client's
    streams come from one slab per client connection (s_client_t), which
    counts what libzmq still holds of them (herald_slab_held: envelope
    bytes plus libzmq's own per-frame cost).  Before each event a stream
    looks at that count, and while it is at max_bytes (--client-max-bytes)
    the stream waits, as it does on a full queue: nothing is lost or
    ended, it goes on as the client reads.  A client that reads keeps the
    count near zero (libzmq releases a frame once it is in the kernel's
    socket buffer), so it is never slowed.  A client that takes nothing
    for idle_ms while its streams wait has them abandoned, like one whose
    queue stays full.  A client gone drops its queue in libzmq: the count
    falls to 0, the next send finds it gone (EHOSTUNREACH) and abandons its
    streams, and the record and its slab are freed with the last of them.
    glibc keeps freed memory in its arenas, so after a client that held a
    lot (TRIM_BYTES) is freed the broker returns it with malloc_trim.  That
    walks every arena and took 40-210 ms on a loaded 2-core machine, so it
    runs on a thread of its own (the loop then waits only where it
    allocates from an arena being trimmed), at most once every
    TRIM_EVERY_MS.
    =========================================================================
*/

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#if defined (__GLIBC__)
#   include <malloc.h>
#endif
#include "herald_log.h"
#include "herald_reply.h"
#include "herald_streams.h"

#define SLAB_BLOCK          (32 * 1024) //  bytes per block of a client's frames
#define TRIM_BYTES          (8u << 20)  //  a client freed after holding this: malloc_trim
#define TRIM_EVERY_MS       10000       //  at most one malloc_trim per this
//  With pack, envelopes are gathered into frames of up to this many bytes.
//  CURVE costs ~0.5-0.9 us per frame and ~1-1.5 ns per byte (SECURITY.md
//  1.4): at 64 KiB the per-frame part is about 1 % of the per-byte part,
//  while a frame stays well below the memory a client may hold
//  (--client-max-bytes, checked with the pack counted) and small enough
//  for a client to copy the events out without a noticeable pause.
#define PACK_BYTES          (64 * 1024)

//  A client connection with streams, or with frames of ended ones still
//  queued.  Owned by the streams' list of clients; freed once it has no
//  stream and libzmq holds none of its frames.
typedef struct {
    zframe_t *identity;                 //  owned
    //  The frames of all its streams: blocks are shared only by frames to
    //  one client, which leave through one pipe, in order.
    herald_slab_t *slab;                //  owned
    size_t streams;                     //  its streams running
    size_t held_seen;                   //  herald_slab_held after the last pump
    int64_t stalled_since;              //  at max_bytes and taking nothing; 0: not
    size_t peak;                        //  the most it held
} s_client_t;

typedef struct {
    zframe_t *identity;                 //  owned
    uint64_t rid;
    bool is_read;
    herald_scan_t *scan;                //  owned
    s_client_t *client;                 //  borrowed; counts this stream
    void *handle;                       //  in the streams' list
    uint64_t credit;
    int64_t idle_since;                 //  when credit last ran out or was given
    //  When credit runs out the stream reads one event ahead, so that it
    //  can END at once when there is none (END needs no credit); a found
    //  one is held here, borrowed from the scan, and sent first next time.
    const uint8_t *held;
    size_t held_len;
    //  The client's queue was full (the api socket refused the message):
    //  since when, and the END still owed when the stream is over.
    int64_t blocked_since;              //  0: not blocked
    const char *ending;                 //  static; NULL: not over
    bool waiting_bytes;                 //  its client held max_bytes, this pump
    bool waited_bytes;                  //  ... and the pump before
    bool failing;                       //  the scan failed: ERROR owed
    bool pack;                          //  several envelopes per frame
    //  Security: its owner and what it reads (herald_streams_revoke)
    char *user;                         //  NULL: security off
    char *key;
    herald_str_t *reads;                //  copies: the REPLAY's prefixes, or READ's topic
    size_t read_count;
} s_stream_t;

struct _herald_streams_t {
    herald_store_t *store;              //  borrowed
    zsock_t *router;                    //  borrowed
    size_t max_streams;
    uint64_t idle_ms;
    zlistx_t *streams;                  //  s_stream_t
    size_t max_bytes;                   //  held per client before its streams wait
    zlistx_t *clients;                  //  s_client_t
    msgpack_sbuffer buffer;             //  replies being encoded
    msgpack_sbuffer pack;               //  a packed frame being gathered
    uint64_t served;
    uint64_t events_sent;               //  stream events sent since start (STATUS)
    uint64_t abandoned;                 //  their client gone, or never reading
    size_t waiting_bytes;               //  streams that waited on max_bytes, last pump
    uint64_t byte_waits;                //  times a stream began to wait on max_bytes
    bool trim_owed;                     //  a client that held a lot was freed
    int64_t trimmed_at;
    pthread_t trimmer;                  //  the last malloc_trim's thread, joined
    bool trimmer_started;               //  before the next or at destroy
    uint64_t errors;                    //  ended with ERROR: the store failed
    uint64_t trimmed;                   //  ended with ERROR trimmed
    int64_t error_logged_at;            //  their log lines, at most one a second
    uint64_t errors_unlogged;
    bool out_of_memory;
};

static void
s_client_destroy (s_client_t **self_p)
{
    s_client_t *self = *self_p;
    if (!self)
        return;
    zframe_destroy (&self->identity);
    herald_slab_destroy (&self->slab);
    free (self);
    *self_p = NULL;
}

//  The record of identity's client, made if it has none.  NULL when out
//  of memory.
static s_client_t *
s_client_require (herald_streams_t *self, zframe_t *identity)
{
    s_client_t *client = (s_client_t *) zlistx_first (self->clients);
    for (; client; client = (s_client_t *) zlistx_next (self->clients))
        if (zframe_eq (client->identity, identity))
            return client;
    client = (s_client_t *) calloc (1, sizeof (s_client_t));
    if (!client)
        return NULL;
    client->identity = zframe_dup (identity);
    client->slab = herald_slab_new (SLAB_BLOCK);
    if (!client->identity || !client->slab) {
        s_client_destroy (&client);
        return NULL;
    }
    zlistx_add_end (self->clients, client);
    return client;
}

static void
s_stream_destroy (s_stream_t **self_p)
{
    s_stream_t *self = *self_p;
    if (!self)
        return;
    zframe_destroy (&self->identity);
    herald_scan_destroy (&self->scan);
    for (size_t index = 0; index < self->read_count; index++)
        free ((char *) self->reads [index].ptr);
    free (self->reads);
    free (self->user);
    free (self->key);
    //  The client's last stream: let go of the half-filled block, so that
    //  what it holds can fall to 0 and the record be freed.
    if (self->client && --self->client->streams == 0)
        herald_slab_flush (self->client->slab);
    free (self);
    *self_p = NULL;
}

herald_streams_t *
herald_streams_new (herald_store_t *store, zsock_t *router,
                    size_t max_streams, uint64_t idle_ms, size_t max_bytes)
{
    herald_streams_t *self = (herald_streams_t *) zmalloc (sizeof (herald_streams_t));
    self->store = store;
    self->router = router;
    self->max_streams = max_streams;
    self->idle_ms = idle_ms;
    self->max_bytes = max_bytes;
    self->streams = zlistx_new ();
    self->clients = zlistx_new ();
    msgpack_sbuffer_init (&self->buffer);
    msgpack_sbuffer_init (&self->pack);
    return self;
}

void
herald_streams_destroy (herald_streams_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    herald_streams_t *self = *self_p;
    s_stream_t *stream = (s_stream_t *) zlistx_first (self->streams);
    while (stream) {
        s_stream_destroy (&stream);
        stream = (s_stream_t *) zlistx_next (self->streams);
    }
    zlistx_destroy (&self->streams);
    s_client_t *client = (s_client_t *) zlistx_first (self->clients);
    while (client) {
        s_client_destroy (&client);
        client = (s_client_t *) zlistx_next (self->clients);
    }
    zlistx_destroy (&self->clients);
    if (self->trimmer_started)
        pthread_join (self->trimmer, NULL);
    msgpack_sbuffer_destroy (&self->buffer);
    msgpack_sbuffer_destroy (&self->pack);
    free (self);
    *self_p = NULL;
}

static s_stream_t *
s_stream_find (herald_streams_t *self, zframe_t *identity, uint64_t rid)
{
    s_stream_t *stream = (s_stream_t *) zlistx_first (self->streams);
    for (; stream; stream = (s_stream_t *) zlistx_next (self->streams))
        if (stream->rid == rid && zframe_eq (stream->identity, identity))
            return stream;
    return NULL;
}

//  Drop a stream from the list and free it.
static void
s_stream_remove (herald_streams_t *self, s_stream_t *stream)
{
    zlistx_delete (self->streams, stream->handle);
    s_stream_destroy (&stream);
}

//  Give up a stream whose client is gone or has not read for idle_ms:
//  no END can reach it.
static void
s_stream_abandon (herald_streams_t *self, s_stream_t *stream, const char *why)
{
    if (herald_log_debug ()) {
        char peer [24];
        herald_log ("debug", "peer %s: %s rid %" PRIu64 " abandoned: %s",
                    herald_log_peer (stream->identity, peer), stream->is_read? "READ": "REPLAY",
                    stream->rid, why);
    }
    s_stream_remove (self, stream);
    self->abandoned++;
}

//  The client's queue refused a message: remember since when.  EHOSTUNREACH
//  (the client is gone) abandons the stream; returns false then.
static bool
s_stream_block (herald_streams_t *self, s_stream_t *stream)
{
    if (zmq_errno () == EHOSTUNREACH) {
        s_stream_abandon (self, stream, "the client is gone");
        return false;
    }
    if (!stream->blocked_since)
        stream->blocked_since = zclock_mono ();
    return true;
}

//  Send END and drop the stream; if the client's queue is full, the END is
//  owed (stream->ending) and sent by a later pump.
static void
s_stream_end (herald_streams_t *self, s_stream_t *stream, const char *reason)
{
    herald_msg_t end = { .type = HERALD_MSG_END, .has_rid = true, .rid = stream->rid };
    //  A held event was read but not sent: last stops just before it.
    end.end.last = herald_scan_last (stream->scan) - (stream->held? 1: 0);
    end.end.head = stream->is_read? herald_scan_head (stream->scan)
                                   : herald_store_head (self->store);
    end.end.reason = (herald_str_t) { reason, strlen (reason) };
    end.end.lineage = herald_store_lineage (self->store);
    if (herald_reply_send (self->router, stream->identity, &end, &self->buffer) != 0) {
        stream->ending = reason;
        s_stream_block (self, stream);
        return;
    }
    if (herald_log_debug ()) {
        char peer [24];
        herald_log ("debug", "peer %s: %s rid %" PRIu64 " ended %s, last %" PRIu64,
                    herald_log_peer (stream->identity, peer), stream->is_read? "READ": "REPLAY",
                    stream->rid, reason, end.end.last);
    }
    s_stream_remove (self, stream);
    self->served++;
}

//  Log a store failure behind a stream (or a stream that could not
//  start), at most one line a second: a client that retries a damaged
//  range at once must not flood the log.  The count is STATUS's.
static void
s_log_failure (herald_streams_t *self, zframe_t *identity, bool is_read, uint64_t rid,
               const char *message)
{
    self->errors++;
    int64_t now = zclock_mono ();
    if (self->error_logged_at && now - self->error_logged_at < 1000) {
        self->errors_unlogged++;
        return;
    }
    char peer [24];
    char more [64] = "";
    if (self->errors_unlogged)
        snprintf (more, sizeof (more), " (and %" PRIu64 " more stream errors before it)",
                  self->errors_unlogged);
    herald_log ("error", "peer %s: %s rid %" PRIu64 " failed: %s%s",
                herald_log_peer (identity, peer), is_read? "READ": "REPLAY", rid, message, more);
    self->error_logged_at = now;
    self->errors_unlogged = 0;
}

//  ERROR trimmed with first to identity: the first seq still there for
//  what reads[0..count) (a REPLAY's prefixes, none: every topic), or the
//  first ver of the topic reads[0] of a READ.  Returns -1 when the
//  client's queue refused it.
static int
s_send_trimmed (herald_streams_t *self, zframe_t *identity, uint64_t rid, bool is_read,
                const herald_str_t *reads, size_t count, const char *message)
{
    herald_msg_t reply = { .type = HERALD_MSG_ERROR, .has_rid = true, .rid = rid };
    reply.error.code = HERALD_ERR_TRIMMED;
    reply.error.message = (herald_str_t) { message, strlen (message) };
    reply.error.has_first = true;
    if (is_read) {
        herald_error_t err = { 0 };
        if (herald_store_topic_first_ver (self->store, reads [0].ptr, reads [0].len,
                                          &reply.error.first, &err) != HERALD_OK)
            reply.error.has_first = false;
    }
    else
        reply.error.first = herald_store_first (self->store, reads, count);
    return herald_reply_send (self->router, identity, &reply, &self->buffer);
}

//  The scan failed: end the stream with ERROR `internal` naming what the
//  store could not read (never END: the client would take `last` as
//  complete).  If the client's queue is full, the ERROR is owed
//  (stream->failing) and sent by a later pump.
static void
s_stream_fail (herald_streams_t *self, s_stream_t *stream)
{
    const herald_error_t *scan_err = herald_scan_error (stream->scan);
    if (scan_err->code == HERALD_ERR_TRIMMED) {
        if (!stream->failing)
            self->trimmed++;
        stream->failing = true;
        if (s_send_trimmed (self, stream->identity, stream->rid, stream->is_read,
                            stream->reads, stream->read_count, scan_err->message) != 0) {
            s_stream_block (self, stream);  //  may abandon (free) the stream
            return;
        }
        s_stream_remove (self, stream);
        return;
    }
    if (!stream->failing) {
        stream->failing = true;
        s_log_failure (self, stream->identity, stream->is_read, stream->rid, scan_err->message);
    }
    herald_error_t err = { .code = HERALD_ERR_INTERNAL, .has_rid = true, .rid = stream->rid };
    memcpy (err.message, scan_err->message, sizeof (err.message));
    if (herald_reply_error (self->router, stream->identity, &err, &self->buffer) != 0) {
        s_stream_block (self, stream);      //  may abandon (free) the stream
        return;
    }
    s_stream_remove (self, stream);
}

//  Begin an EVENTS message to the stream's client: identity, "EVENTS",
//  {rid}.  The client's queue must take it before an event is spent on it:
//  returns -1 when it is refused.
static int
s_events_begin (herald_streams_t *self, s_stream_t *stream)
{
    if (herald_reply_begin (self->router, stream->identity) != 0)
        return -1;
    herald_msg_t events = { .type = HERALD_MSG_EVENTS, .has_rid = true, .rid = stream->rid };
    self->buffer.size = 0;
    herald_msg_encode (&events, &self->buffer);
    herald_reply_frame (self->router, "EVENTS", 6, true);
    herald_reply_frame (self->router, self->buffer.data, self->buffer.size, true);
    return 0;
}

//  Send the packed envelopes gathered so far as one frame (more: another
//  frame of the message follows).  Returns -1 when out of memory.
static int
s_pack_send (herald_streams_t *self, s_stream_t *stream, bool more)
{
    zmq_msg_t frame;
    if (herald_slab_frame (stream->client->slab, &frame, self->pack.data, self->pack.size) != 0)
        return -1;
    herald_reply_zmq_msg (self->router, &frame, more);
    self->pack.size = 0;
    return 0;
}

//  One slice of a stream: up to HERALD_STREAM_SLICE events within its credit, in
//  one EVENTS message; END when the scan is done.  Each event is one frame,
//  or with pack, envelopes are gathered back to back into frames of up to
//  PACK_BYTES (one bigger event alone in its own): the events, their order
//  and the credit they spend are the same, only the frames differ.
static void
s_stream_pump (herald_streams_t *self, s_stream_t *stream)
{
    //  Each envelope is copied into a frame (or the pack) as it is read
    //  (the scan's pointer lives only until the next read) and sent once
    //  the next one is known, so that the last frame goes out without
    //  ZMQ_SNDMORE.
    zmq_msg_t frame;
    bool pending = false;
    size_t sent = 0;
    int rc = 1;
    herald_slab_t *slab = stream->client->slab;
    self->pack.size = 0;
    while (stream->credit > 0 && sent < HERALD_STREAM_SLICE) {
        if (sent && herald_slab_held (slab) + self->pack.size >= self->max_bytes) {
            //  The client holds its share now: this stream goes last
            //  next turn, so that its client's other streams get theirs.
            zlistx_move_end (self->streams, stream->handle);
            break;
        }
        const uint8_t *envelope = stream->held;
        size_t len = stream->held_len;
        stream->held = NULL;
        if (!envelope) {
            uint64_t seq;
            rc = herald_scan_next (stream->scan, &envelope, &len, &seq);
            if (rc != 1)
                break;
        }
        if (!sent) {
            if (s_events_begin (self, stream) != 0) {
                //  Refused: the event is held for the next turn
                stream->held = envelope;
                stream->held_len = len;
                s_stream_block (self, stream);  //  may abandon (free) the stream
                return;
            }
            stream->blocked_since = 0;
        }
        if (stream->pack) {
            if (self->pack.size && self->pack.size + len > PACK_BYTES
            &&  s_pack_send (self, stream, true) != 0)
                goto out_of_memory;
            if (msgpack_sbuffer_write (&self->pack, (const char *) envelope, len) != 0)
                goto out_of_memory;
        }
        else {
            if (pending)
                herald_reply_zmq_msg (self->router, &frame, true);
            if (herald_slab_frame (slab, &frame, envelope, len) != 0) {
                pending = false;
                goto out_of_memory;
            }
            pending = true;
        }
        stream->credit--;
        sent++;
    }
    if (pending)
        herald_reply_zmq_msg (self->router, &frame, false);
    if (self->pack.size && s_pack_send (self, stream, false) != 0)
        goto out_of_memory;
    self->events_sent += sent;
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
    if (rc < 0)
        s_stream_fail (self, stream);
    return;

out_of_memory:
    //  Stop loudly rather than skip an event: the broker stops.  The
    //  message is closed with what it holds.
    herald_log ("error", "out of memory for a frame of a %s stream; stopping",
                stream->is_read? "READ": "REPLAY");
    self->out_of_memory = true;
    if (pending)
        herald_reply_zmq_msg (self->router, &frame, false);
}

//  A stream with credit whose client holds max_bytes waits, as on a full
//  queue; when the client has taken nothing for idle_ms it is abandoned.
static void
s_stream_wait_bytes (herald_streams_t *self, s_stream_t *stream, int64_t now)
{
    s_client_t *client = stream->client;
    if (client->stalled_since && now - client->stalled_since >= (int64_t) self->idle_ms) {
        s_stream_abandon (self, stream, "its client has not read for stream_idle_ms");
        return;
    }
    stream->waiting_bytes = true;
    self->waiting_bytes++;
    if (!stream->waited_bytes)
        self->byte_waits++;
}

//  Before the streams' turn: which clients at max_bytes took nothing since
//  the last one.
static void
s_clients_look (herald_streams_t *self, int64_t now)
{
    s_client_t *client = (s_client_t *) zlistx_first (self->clients);
    for (; client; client = (s_client_t *) zlistx_next (self->clients)) {
        size_t held = herald_slab_held (client->slab);
        if (held < client->held_seen || held < self->max_bytes)
            client->stalled_since = 0;
        else
        if (!client->stalled_since)
            client->stalled_since = now;
    }
}

//  Return the arenas' free memory to the system; the trimmer thread.  It
//  touches no broker state.
static void *
s_trim (void *args)
{
    (void) args;
#if defined (__GLIBC__)
    int64_t started = zclock_mono ();
    malloc_trim (0);
    if (herald_log_debug ())
        herald_log ("debug", "malloc_trim after a client's streams: %" PRId64 " ms",
                    zclock_mono () - started);
#endif
    return NULL;
}

//  After the streams' turn: note what each client holds, and free the
//  records of clients with no stream and nothing held.  Return the memory
//  to the system after one that held a lot (glibc keeps it otherwise), at
//  most once every TRIM_EVERY_MS.
static void
s_clients_sweep (herald_streams_t *self, int64_t now)
{
    s_client_t *client = (s_client_t *) zlistx_first (self->clients);
    while (client) {
        void *handle = zlistx_cursor (self->clients);
        client->held_seen = herald_slab_held (client->slab);
        if (client->held_seen > client->peak)
            client->peak = client->held_seen;
        s_client_t *next = (s_client_t *) zlistx_next (self->clients);
        if (client->streams == 0 && client->held_seen == 0) {
            if (client->peak >= TRIM_BYTES)
                self->trim_owed = true;
            zlistx_delete (self->clients, handle);
            s_client_destroy (&client);
        }
        client = next;
    }
    if (self->trim_owed && now - self->trimmed_at >= TRIM_EVERY_MS) {
        //  The last one started TRIM_EVERY_MS ago: long done
        if (self->trimmer_started)
            pthread_join (self->trimmer, NULL);
        self->trimmer_started = pthread_create (&self->trimmer, NULL, s_trim, NULL) == 0;
        self->trim_owed = false;
        self->trimmed_at = now;
    }
}

int
herald_streams_pump (herald_streams_t *self, bool *blocked)
{
    int64_t now = zclock_mono ();
    *blocked = false;
    self->waiting_bytes = 0;
    s_clients_look (self, now);
    zlistx_t *ready = zlistx_new ();
    s_stream_t *stream = (s_stream_t *) zlistx_first (self->streams);
    for (; stream; stream = (s_stream_t *) zlistx_next (self->streams))
        zlistx_add_end (ready, stream);
    bool busy = false;
    stream = (s_stream_t *) zlistx_first (ready);
    for (; stream && !self->out_of_memory; stream = (s_stream_t *) zlistx_next (ready)) {
        //  A client that has taken nothing for idle_ms is not reading
        if (stream->blocked_since
        &&  now - stream->blocked_since >= (int64_t) self->idle_ms) {
            s_stream_abandon (self, stream, "its client has not read for stream_idle_ms");
            continue;
        }
        stream->waited_bytes = stream->waiting_bytes;
        stream->waiting_bytes = false;
        if (stream->ending)
            s_stream_end (self, stream, stream->ending);
        else
        if (stream->failing)
            s_stream_fail (self, stream);
        else
        if (stream->credit > 0) {
            if (herald_slab_held (stream->client->slab) >= self->max_bytes)
                s_stream_wait_bytes (self, stream, now);
            else
                s_stream_pump (self, stream);
        }
        else
        if (now - stream->idle_since >= (int64_t) self->idle_ms)
            s_stream_end (self, stream, "expired");
        if (!zlistx_find (self->streams, stream))
            continue;                   //  ended or abandoned
        if (stream->blocked_since || stream->waiting_bytes)
            *blocked = true;
        else
        if (stream->credit > 0)
            busy = true;
    }
    zlistx_destroy (&ready);
    s_clients_sweep (self, now);
    return self->out_of_memory? -1: busy;
}

herald_err
herald_streams_open (herald_streams_t *self, zframe_t *identity, const herald_msg_t *msg,
                     herald_error_t *err)
{
    return herald_streams_open_as (self, identity, msg, NULL, err);
}

//  The streams user runs now.
static size_t
s_user_streams (herald_streams_t *self, const char *user)
{
    size_t count = 0;
    s_stream_t *stream = (s_stream_t *) zlistx_first (self->streams);
    for (; stream; stream = (s_stream_t *) zlistx_next (self->streams))
        count += stream->user && streq (stream->user, user);
    return count;
}

//  Keep what the stream reads.  False when out of memory.
static bool
s_stream_reads (s_stream_t *stream, const herald_msg_t *msg)
{
    const herald_str_t *reads = msg->type == HERALD_MSG_READ? &msg->read.topic
                                                             : msg->replay.prefixes;
    size_t count = msg->type == HERALD_MSG_READ? 1: msg->replay.prefix_count;
    stream->reads = (herald_str_t *) calloc (count? count: 1, sizeof (herald_str_t));
    if (!stream->reads)
        return false;
    for (size_t index = 0; index < count; index++) {
        char *copy = (char *) malloc (reads [index].len + 1);
        if (!copy)
            return false;
        memcpy (copy, reads [index].ptr, reads [index].len);
        copy [reads [index].len] = 0;
        stream->reads [stream->read_count++] = (herald_str_t) { copy, reads [index].len };
    }
    return true;
}

//  Keep the owner.  False when out of memory.
static bool
s_stream_own (s_stream_t *stream, const herald_streams_owner_t *owner)
{
    stream->user = strdup (owner->user);
    stream->key = strdup (owner->key? owner->key: "");
    return stream->user && stream->key;
}

herald_err
herald_streams_open_as (herald_streams_t *self, zframe_t *identity, const herald_msg_t *msg,
                        const herald_streams_owner_t *owner, herald_error_t *err)
{
    memset (err, 0, sizeof (*err));
    err->has_rid = true;
    err->rid = msg->rid;
    if (s_stream_find (self, identity, msg->rid)) {
        return herald_error_set (err, HERALD_ERR_BAD_REQUEST, "rid",
                                 "rid %" PRIu64 " is a stream still running", msg->rid);
    }
    if (zlistx_size (self->streams) >= self->max_streams) {
        return herald_error_set (err, HERALD_ERR_OVERLOADED, "",
                                 "%zu streams are running; try again later",
                                 zlistx_size (self->streams));
    }
    //  One key must not take every stream the broker runs
    if (owner && owner->user && owner->max_streams
    &&  s_user_streams (self, owner->user) >= owner->max_streams) {
        return herald_error_set (err, HERALD_ERR_OVERLOADED, "",
                                 "user '%s' runs %zu streams, its limit; try again once one "
                                 "ends", owner->user, owner->max_streams);
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
        scan = herald_store_scan (self->store, &spec, err);
        credit = msg->replay.credit;
    }
    else {
        scan = herald_store_read (self->store, msg->read.topic.ptr, msg->read.topic.len,
                                  msg->read.from_ver,
                                  msg->read.has_to_ver? msg->read.to_ver: 0, err);
        credit = msg->read.credit;
    }
    if (!scan && err->code == HERALD_ERR_TRIMMED) {
        //  Answered here: the ERROR carries first, which err cannot
        bool is_read = msg->type == HERALD_MSG_READ;
        self->trimmed++;
        if (s_send_trimmed (self, identity, msg->rid, is_read,
                            is_read? &msg->read.topic: msg->replay.prefixes,
                            is_read? 1: msg->replay.prefix_count, err->message) != 0)
            self->abandoned++;          //  its client's queue is full: nothing more to do
        return HERALD_OK;
    }
    if (!scan) {
        err->has_rid = true;
        err->rid = msg->rid;
        if (!err->code || !herald_err_code (err->code)) {
            //  Not a refusal of the request: the store failed (IO,
            //  CORRUPT, NOMEM).  ERROR `internal`, counted and logged.
            s_log_failure (self, identity, msg->type == HERALD_MSG_READ, msg->rid,
                           err->message);
            err->code = HERALD_ERR_INTERNAL;
        }
        return err->code;
    }
    s_client_t *client = s_client_require (self, identity);
    if (!client) {
        herald_scan_destroy (&scan);
        return herald_error_set (err, HERALD_ERR_OVERLOADED, "",
                                 "out of memory for a stream; try again later");
    }
    s_stream_t *stream = (s_stream_t *) zmalloc (sizeof (s_stream_t));
    stream->identity = zframe_dup (identity);
    stream->rid = msg->rid;
    stream->is_read = msg->type == HERALD_MSG_READ;
    stream->pack = stream->is_read? msg->read.pack: msg->replay.pack;
    stream->scan = scan;
    stream->client = client;
    client->streams++;
    stream->credit = credit;
    stream->idle_since = zclock_mono ();
    stream->handle = zlistx_add_end (self->streams, stream);
    if (!s_stream_reads (stream, msg) || (owner && owner->user && !s_stream_own (stream, owner))) {
        s_stream_remove (self, stream);
        return herald_error_set (err, HERALD_ERR_OVERLOADED, "",
                                 "out of memory for a stream; try again later");
    }
    if (credit == 0) {
        //  No credit yet: look ahead anyway, so an empty stream ENDs now.
        uint64_t seq;
        int rc = herald_scan_next (scan, &stream->held, &stream->held_len, &seq);
        if (rc != 1)
            stream->held = NULL;
        if (rc == 0)
            s_stream_end (self, stream, "done");
        else
        if (rc < 0)
            s_stream_fail (self, stream);
    }
    return HERALD_OK;
}

size_t
herald_streams_take_over (herald_streams_t *self, zframe_t *identity, const char *user)
{
    size_t dropped = 0;
    s_stream_t *stream = (s_stream_t *) zlistx_first (self->streams);
    while (stream) {
        s_stream_t *next = (s_stream_t *) zlistx_next (self->streams);
        if (stream->user && !streq (stream->user, user)
        &&  zframe_eq (stream->identity, identity)) {
            herald_log ("warn", "routing id of user '%s' taken over by '%s': its stream "
                        "rid %" PRIu64 " is dropped", stream->user, user, stream->rid);
            s_stream_remove (self, stream);
            self->abandoned++;
            dropped++;
        }
        stream = next;
    }
    return dropped;
}

size_t
herald_streams_revoke (herald_streams_t *self, herald_streams_allowed_fn *allowed, void *arg,
                       const char *message)
{
    size_t ended = 0;
    s_stream_t *stream = (s_stream_t *) zlistx_first (self->streams);
    while (stream) {
        s_stream_t *next = (s_stream_t *) zlistx_next (self->streams);
        if (stream->user && !allowed (arg, stream->user, stream->key, stream->is_read,
                                      stream->reads, stream->read_count)) {
            herald_error_t err = { .code = HERALD_ERR_UNAUTHORIZED, .has_rid = true,
                                   .rid = stream->rid };
            snprintf (err.message, sizeof (err.message), "%s", message);
            //  A client whose queue is full gets nothing more: the
            //  stream ends all the same
            if (herald_reply_error (self->router, stream->identity, &err, &self->buffer) != 0)
                self->abandoned++;
            else
                self->served++;
            s_stream_remove (self, stream);
            ended++;
        }
        stream = next;
    }
    return ended;
}

bool
herald_streams_credit (herald_streams_t *self, zframe_t *identity, uint64_t rid,
                       uint64_t credit)
{
    s_stream_t *stream = s_stream_find (self, identity, rid);
    if (!stream)
        return false;
    uint64_t total = stream->credit + credit;
    stream->credit = total > HERALD_CREDIT_MAX? HERALD_CREDIT_MAX: total;
    stream->idle_since = zclock_mono ();
    return true;
}

bool
herald_streams_cancel (herald_streams_t *self, zframe_t *identity, uint64_t rid)
{
    s_stream_t *stream = s_stream_find (self, identity, rid);
    if (!stream)
        return false;
    s_stream_end (self, stream, "cancelled");
    return true;
}

size_t
herald_streams_size (herald_streams_t *self)
{
    return zlistx_size (self->streams);
}

uint64_t
herald_streams_served (herald_streams_t *self)
{
    return self->served;
}

uint64_t
herald_streams_abandoned (herald_streams_t *self)
{
    return self->abandoned;
}

void
herald_streams_memory (herald_streams_t *self, herald_streams_memory_t *memory)
{
    memset (memory, 0, sizeof (*memory));
    s_client_t *client = (s_client_t *) zlistx_first (self->clients);
    for (; client; client = (s_client_t *) zlistx_next (self->clients)) {
        size_t held = herald_slab_held (client->slab);
        memory->bytes += held;
        if (held > memory->client_bytes_max)
            memory->client_bytes_max = held;
        memory->clients++;
    }
    memory->waiting_bytes = self->waiting_bytes;
    memory->byte_waits = self->byte_waits;
}

uint64_t
herald_streams_trimmed (herald_streams_t *self)
{
    return self->trimmed;
}

uint64_t
herald_streams_errors (herald_streams_t *self)
{
    return self->errors;
}

uint64_t
herald_streams_events (herald_streams_t *self)
{
    return self->events_sent;
}
