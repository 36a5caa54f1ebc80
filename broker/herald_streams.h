/*  =========================================================================
    herald_streams - the broker's REPLAY and READ streams, under credit

    Each stream is a store scan (herald_scan_t) sending EVENTS to one
    client (ROUTER identity + rid) while it has credit, and END when the
    scan is done, when the client CANCELs, or when it has had no credit
    for idle_ms (`expired`); with ERROR `internal` when the scan fails, and
    ERROR `trimmed` (with `first`) when what it asks for was trimmed from
    the live log, at its start or while it ran.  The broker loop calls herald_streams_pump
    once a turn: each stream with credit sends at most one slice, so
    streams share the loop fairly with each other and with ingest.
    =========================================================================
*/

#ifndef HERALD_STREAMS_H_INCLUDED
#define HERALD_STREAMS_H_INCLUDED

#include <czmq.h>
#include "herald_msg.h"
#include "herald_slab.h"
#include "herald_store.h"

#define HERALD_STREAM_SLICE     256     //  events per EVENTS message and turn

typedef struct _herald_streams_t herald_streams_t;

//  Streams of store, replying on router (both borrowed), at most
//  max_streams at once; a client's streams wait while libzmq holds
//  max_bytes of their frames for it.  Caller owns.
herald_streams_t *
    herald_streams_new (herald_store_t *store, zsock_t *router, size_t max_streams,
                        uint64_t idle_ms, size_t max_bytes);

//  End nothing, send nothing: drop every stream and free.
void
    herald_streams_destroy (herald_streams_t **self_p);

//  Open a stream for a decoded REPLAY or READ from identity (borrowed).
//  Returns HERALD_OK, or an error in err (with the request's rid) for the
//  caller to send: a rid still running (bad_request), too many streams
//  (overloaded), a request the store refuses.
herald_err
    herald_streams_open (herald_streams_t *self, zframe_t *identity, const herald_msg_t *msg,
                         herald_error_t *err);

//  Security (issue 14): who opens a stream, so that it stays bound to
//  that user (SECURITY.md §3.5) and counts against its quota.
typedef struct {
    const char *user;               //  User-Id; NULL: security off (no owner)
    const char *key;                //  the Z85 key it used
    size_t max_streams;             //  the user's streams at once; 0: no limit
} herald_streams_owner_t;

//  herald_streams_open on behalf of owner (NULL: none): refused
//  overloaded when the user runs max_streams already.  What the stream
//  reads (a REPLAY's prefixes, already narrowed to the user's read set,
//  or a READ's topic) is kept, for herald_streams_revoke.
herald_err
    herald_streams_open_as (herald_streams_t *self, zframe_t *identity, const herald_msg_t *msg,
                            const herald_streams_owner_t *owner, herald_error_t *err);

//  A request from user on identity's routing id: that routing id's
//  streams owned by another user (its first owner left, and another key
//  took the routing id over) are dropped at once, without a word (the
//  new peer must get nothing of them).  Returns how many.
size_t
    herald_streams_take_over (herald_streams_t *self, zframe_t *identity, const char *user);

//  Is what a stream reads still allowed (a reload, an expired key)?
//  prefixes[0..count) of a REPLAY (count 0: every topic), or the topic
//  of a READ (is_read, count 1).
typedef bool (herald_streams_allowed_fn) (void *arg, const char *user, const char *key,
                                          bool is_read, const herald_str_t *prefixes,
                                          size_t count);

//  End every owned stream allowed refuses with ERROR unauthorized for its
//  rid (message says why).  Returns how many.
size_t
    herald_streams_revoke (herald_streams_t *self, herald_streams_allowed_fn *allowed,
                           void *arg, const char *message);

//  Add credit to stream rid of identity.  False when no such stream runs.
bool
    herald_streams_credit (herald_streams_t *self, zframe_t *identity, uint64_t rid,
                           uint64_t credit);

//  End stream rid of identity with END `cancelled`.  False when none runs.
bool
    herald_streams_cancel (herald_streams_t *self, zframe_t *identity, uint64_t rid);

//  Give each stream with credit one slice; end those idle too long.
//  Returns 1 when some stream still has credit to spend, 0 when none has,
//  -1 when memory ran out for a frame (the broker must stop).  *blocked
//  is set when some stream waits for its client's queue to drain (the api
//  socket refused its next message): pump again soon, not at once.  A
//  stream whose client is gone, or has not taken a message for idle_ms,
//  is abandoned without END.
int
    herald_streams_pump (herald_streams_t *self, bool *blocked);

//  Streams running now.
size_t
    herald_streams_size (herald_streams_t *self);

//  Streams ended since start.
uint64_t
    herald_streams_served (herald_streams_t *self);

//  Events sent by REPLAY and READ streams since start (a rate's counter).
uint64_t
    herald_streams_events (herald_streams_t *self);

//  Streams abandoned since start: the client gone or not reading.
uint64_t
    herald_streams_abandoned (herald_streams_t *self);

//  What the streams' frames hold in libzmq's queues now, for STATUS.
typedef struct {
    uint64_t bytes;                 //  all clients (herald_slab_held)
    uint64_t client_bytes_max;      //  the client holding most
    uint64_t clients;               //  client connections with streams or frames held
    uint64_t waiting_bytes;         //  streams that waited on max_bytes in the last pump
    uint64_t byte_waits;            //  times a stream began to wait on max_bytes, since start
} herald_streams_memory_t;

void
    herald_streams_memory (herald_streams_t *self, herald_streams_memory_t *memory);

//  Streams refused or ended with ERROR `trimmed` since start (their
//  events were trimmed from the live log; docs/protocol.md "Trimming").
//  Open answers such a REPLAY or READ itself (the ERROR carries first)
//  and returns HERALD_OK.
uint64_t
    herald_streams_trimmed (herald_streams_t *self);

//  Streams ended with ERROR `internal` since start, because the store
//  could not read what they asked for (or could not start them).
uint64_t
    herald_streams_errors (herald_streams_t *self);

#endif
