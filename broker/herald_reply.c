/*  =========================================================================
    herald_reply - frames and HWP/1 replies on the broker's sockets
    =========================================================================
*/

#include "herald_reply.h"

void
herald_reply_frame (zsock_t *sock, const void *data, size_t len, bool more)
{
    zmq_send (zsock_resolve (sock), data, len, more? ZMQ_SNDMORE: 0);
}

void
herald_reply_zmq_msg (zsock_t *sock, zmq_msg_t *frame, bool more)
{
    if (zmq_msg_send (frame, zsock_resolve (sock), more? ZMQ_SNDMORE: 0) < 0)
        zmq_msg_close (frame);
}

int
herald_reply_begin (zsock_t *router, zframe_t *identity)
{
    return zmq_send (zsock_resolve (router), zframe_data (identity), zframe_size (identity),
                     ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0? -1: 0;
}

static int
s_send (zsock_t *router, zframe_t *identity, const char *command, msgpack_sbuffer *buffer)
{
    if (herald_reply_begin (router, identity) != 0)
        return -1;
    herald_reply_frame (router, command, strlen (command), true);
    herald_reply_frame (router, buffer->data, buffer->size, false);
    return 0;
}

int
herald_reply_send (zsock_t *router, zframe_t *identity, const herald_msg_t *reply,
                   msgpack_sbuffer *buffer)
{
    buffer->size = 0;
    if (herald_msg_encode (reply, buffer) != 0)
        return -1;
    return s_send (router, identity, herald_msg_command (reply->type), buffer);
}

int
herald_reply_error (zsock_t *router, zframe_t *identity, const herald_error_t *err,
                    msgpack_sbuffer *buffer)
{
    buffer->size = 0;
    if (herald_msg_encode_error (err, buffer) != 0)
        return -1;
    return s_send (router, identity, "ERROR", buffer);
}
