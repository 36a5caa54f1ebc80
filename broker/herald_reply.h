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

#endif
