/*  =========================================================================
    herald_streams - the broker's REPLAY and READ streams, under credit

    When credit runs out a stream reads one event ahead, so that it can END
    at once when there is none (END needs no credit); the event found is
    held, borrowed from the scan, and sent first when credit comes.  END's
    `last` then stops just before it.
    =========================================================================
*/

#include <errno.h>
#include <inttypes.h>
#include "herald_log.h"
#include "herald_reply.h"
#include "herald_streams.h"

#define SLAB_BLOCK          (32 * 1024) //  bytes per block of a stream's frames

typedef struct {
    zframe_t *identity;                 //  owned
    uint64_t rid;
    bool is_read;
    herald_scan_t *scan;                //  owned
    //  The stream's own frames: a block is shared only by frames of one
    //  stream, so a slow client keeps at most a block beyond its credit.
    herald_slab_t *slab;                //  owned
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
} s_stream_t;

struct _herald_streams_t {
    herald_store_t *store;              //  borrowed
    zsock_t *router;                    //  borrowed
    size_t max_streams;
    uint64_t idle_ms;
    zlistx_t *streams;                  //  s_stream_t
    msgpack_sbuffer buffer;             //  replies being encoded
    uint64_t served;
    uint64_t abandoned;                 //  their client gone, or never reading
    bool out_of_memory;
};

static void
s_stream_destroy (s_stream_t **self_p)
{
    s_stream_t *self = *self_p;
    if (!self)
        return;
    zframe_destroy (&self->identity);
    herald_scan_destroy (&self->scan);
    herald_slab_destroy (&self->slab);
    free (self);
    *self_p = NULL;
}

herald_streams_t *
herald_streams_new (herald_store_t *store, zsock_t *router,
                    size_t max_streams, uint64_t idle_ms)
{
    herald_streams_t *self = (herald_streams_t *) zmalloc (sizeof (herald_streams_t));
    self->store = store;
    self->router = router;
    self->max_streams = max_streams;
    self->idle_ms = idle_ms;
    self->streams = zlistx_new ();
    msgpack_sbuffer_init (&self->buffer);
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
    msgpack_sbuffer_destroy (&self->buffer);
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
    void *handle = zlistx_find (self->streams, stream);
    if (handle)
        zlistx_delete (self->streams, handle);
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

//  One slice of a stream: up to HERALD_STREAM_SLICE events within its credit, in
//  one EVENTS message; END when the scan is done.
static void
s_stream_pump (herald_streams_t *self, s_stream_t *stream)
{
    //  Each envelope is copied into a frame as it is read (the scan's
    //  pointer lives only until the next read) and sent once the next one
    //  is known, so that the last frame goes out without ZMQ_SNDMORE.
    zmq_msg_t frame;
    bool pending = false;
    size_t sent = 0;
    int rc = 1;
    while (stream->credit > 0 && sent < HERALD_STREAM_SLICE) {
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
            herald_reply_zmq_msg (self->router, &frame, true);
        else {
            //  The client's queue must take the message before an event is
            //  spent on it: refused, the event is held for the next turn.
            if (herald_reply_begin (self->router, stream->identity) != 0) {
                stream->held = envelope;
                stream->held_len = len;
                s_stream_block (self, stream);  //  may abandon (free) the stream
                return;
            }
            stream->blocked_since = 0;
            herald_msg_t events = { .type = HERALD_MSG_EVENTS, .has_rid = true,
                                    .rid = stream->rid };
            self->buffer.size = 0;
            herald_msg_encode (&events, &self->buffer);
            herald_reply_frame (self->router, "EVENTS", 6, true);
            herald_reply_frame (self->router, self->buffer.data, self->buffer.size, true);
        }
        if (herald_slab_frame (stream->slab, &frame, envelope, len) != 0) {
            //  Out of memory: stop loudly rather than skip an event.
            herald_log ("error", "out of memory for a frame of %zu bytes; stopping", len);
            self->out_of_memory = true;
            break;
        }
        pending = true;
        stream->credit--;
        sent++;
    }
    if (pending)
        herald_reply_zmq_msg (self->router, &frame, false);
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
        herald_log ("error", "stream %" PRIu64 ": %s", stream->rid,
                    herald_scan_error (stream->scan)->message);
        s_stream_end (self, stream, "done");
    }
}

int
herald_streams_pump (herald_streams_t *self, bool *blocked)
{
    int64_t now = zclock_mono ();
    *blocked = false;
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
        if (stream->ending)
            s_stream_end (self, stream, stream->ending);
        else
        if (stream->credit > 0)
            s_stream_pump (self, stream);
        else
        if (now - stream->idle_since >= (int64_t) self->idle_ms)
            s_stream_end (self, stream, "expired");
        if (!zlistx_find (self->streams, stream))
            continue;                   //  ended or abandoned
        if (stream->blocked_since)
            *blocked = true;
        else
        if (stream->credit > 0)
            busy = true;
    }
    zlistx_destroy (&ready);
    return self->out_of_memory? -1: busy;
}

herald_err
herald_streams_open (herald_streams_t *self, zframe_t *identity, const herald_msg_t *msg,
                     herald_error_t *err)
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
    if (!scan) {
        err->has_rid = true;
        err->rid = msg->rid;
        return err->code? err->code: HERALD_ERR_INTERNAL;
    }
    s_stream_t *stream = (s_stream_t *) zmalloc (sizeof (s_stream_t));
    stream->identity = zframe_dup (identity);
    stream->rid = msg->rid;
    stream->is_read = msg->type == HERALD_MSG_READ;
    stream->scan = scan;
    stream->slab = herald_slab_new (SLAB_BLOCK);
    assert (stream->slab);
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
    return HERALD_OK;
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
