/*  =========================================================================
    herald_reply - frames and HWP/1 replies on the broker's sockets
    =========================================================================
*/

#include <inttypes.h>
#include "herald_reply.h"
#include "herald_log.h"

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

//  ---------------------------------------------------------------------
//  Answering clients, counted

void
herald_reply_init (herald_reply_t *self)
{
    memset (self, 0, sizeof (*self));
    msgpack_sbuffer_init (&self->buffer);
}

void
herald_reply_destroy (herald_reply_t *self)
{
    msgpack_sbuffer_destroy (&self->buffer);
}

void
herald_reply_dropped (herald_reply_t *self, zframe_t *identity, const char *command)
{
    self->dropped++;
    if (herald_log_debug ()) {
        char peer [24];
        herald_log ("debug", "peer %s: %s dropped: %s", herald_log_peer (identity, peer),
                    command, zmq_errno () == EHOSTUNREACH? "the client is gone"
                                                         : "its queue is full");
    }
}

void
herald_reply_msg (herald_reply_t *self, zframe_t *identity, const herald_msg_t *reply)
{
    if (herald_reply_send (self->router, identity, reply, &self->buffer) != 0)
        herald_reply_dropped (self, identity, herald_msg_command (reply->type));
}

void
herald_reply_err (herald_reply_t *self, zframe_t *identity, const herald_error_t *err)
{
    self->refused++;
    if (herald_log_debug ()) {
        char peer [24];
        herald_log ("debug", "peer %s: rid %s%" PRIu64 ": ERROR %s: %s",
                    herald_log_peer (identity, peer),
                    err->has_rid? "": "nil ", err->has_rid? err->rid: 0,
                    herald_err_code (err->code)? herald_err_code (err->code): "internal",
                    err->message);
    }
    if (herald_reply_error (self->router, identity, err, &self->buffer) != 0)
        herald_reply_dropped (self, identity, "ERROR");
}

void
herald_reply_refusal (herald_reply_t *self, zframe_t *identity, uint64_t rid,
                      herald_err code, const char *message, uint64_t retry_ms)
{
    self->refused++;
    if (herald_log_debug ()) {
        char peer [24];
        herald_log ("debug", "peer %s: rid %" PRIu64 ": ERROR %s: %s",
                    herald_log_peer (identity, peer), rid, herald_err_code (code), message);
    }
    herald_msg_t reply = { .type = HERALD_MSG_ERROR, .has_rid = true, .rid = rid };
    reply.error.code = code;
    reply.error.message = (herald_str_t) { message, strlen (message) };
    reply.error.retry_ms = retry_ms;
    herald_reply_msg (self, identity, &reply);
}
