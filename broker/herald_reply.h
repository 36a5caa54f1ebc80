/*  =========================================================================
    herald_reply - frames and HWP/1 replies on the broker's sockets

    Frames go out with zmq_send rather than as zmsg_t: a zframe_t and a
    list node per frame cost two mallocs and two frees each, which was
    most of the broker's time on a replay (one frame per event).  Sends on
    ROUTER and PUB never block: libzmq drops what a peer's high-water mark
    cannot take.
    =========================================================================
*/

#ifndef HERALD_REPLY_H_INCLUDED
#define HERALD_REPLY_H_INCLUDED

#include <stdbool.h>
#include <czmq.h>
#include "herald_msg.h"

//  Send one frame of len bytes; more: further frames follow.
void
    herald_reply_frame (zsock_t *sock, const void *data, size_t len, bool more);

//  Send frame (taken: sent or closed); more: further frames follow.
void
    herald_reply_zmq_msg (zsock_t *sock, zmq_msg_t *frame, bool more);

//  Send the identity frame that starts a message to one client, with more
//  frames to follow.  The api ROUTER routes mandatorily and this never
//  waits, so a client whose queue is full (zmq_errno EAGAIN) or who is gone
//  (EHOSTUNREACH) gets -1 and nothing is sent, instead of the message
//  being dropped unseen.  Once it returned 0 the rest of the message
//  cannot be refused: libzmq checks the high-water mark per message.
int
    herald_reply_begin (zsock_t *router, zframe_t *identity);

//  Encode reply into buffer (cleared first) and send [identity, command,
//  body] on the api socket.  identity is borrowed.  Returns 0, or -1 when
//  it was not sent: not encodable, or herald_reply_begin refused it.
int
    herald_reply_send (zsock_t *router, zframe_t *identity, const herald_msg_t *reply,
                       msgpack_sbuffer *buffer);

//  The same for an ERROR.
int
    herald_reply_error (zsock_t *router, zframe_t *identity, const herald_error_t *err,
                        msgpack_sbuffer *buffer);

//  ---------------------------------------------------------------------
//  Answering clients on the api socket, counted for STATUS.  One per
//  broker, shared by the parts of its loop (the loop itself and the group
//  commit, herald_commit), all on the loop's thread.

typedef struct {
    zsock_t *router;                //  the api socket (borrowed); NULL until bound
    msgpack_sbuffer buffer;         //  scratch, for encoding
    uint64_t refused;               //  ERRORs answered
    uint64_t dropped;               //  replies a client's queue would not take,
                                    //  and requests ignored without a reply
} herald_reply_t;

//  Zero self and make its buffer; destroy frees it.
void
    herald_reply_init (herald_reply_t *self);
void
    herald_reply_destroy (herald_reply_t *self);

//  Send reply to identity (borrowed).  A reply the client's queue would
//  not take (full, or the client gone) is dropped and counted: the loop
//  never waits for one client.
void
    herald_reply_msg (herald_reply_t *self, zframe_t *identity, const herald_msg_t *reply);

//  Answer ERROR err to identity, counted as refused.
void
    herald_reply_err (herald_reply_t *self, zframe_t *identity, const herald_error_t *err);

//  Answer ERROR code with message (borrowed, any length: never cut) and,
//  when not 0, the retry hint retry_ms, to rid.  Counted like every ERROR.
void
    herald_reply_refusal (herald_reply_t *self, zframe_t *identity, uint64_t rid,
                          herald_err code, const char *message, uint64_t retry_ms);

//  Count a reply to identity, of command, that could not be sent.
void
    herald_reply_dropped (herald_reply_t *self, zframe_t *identity, const char *command);

#endif
