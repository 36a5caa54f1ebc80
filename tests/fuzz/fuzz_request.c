/*  =========================================================================
    fuzz_request - libFuzzer target for the request decoders

    The first byte picks the request type (PUBLISH..ACL) and, by its high
    bit, small limits (max_batch 8, max_event_bytes 4096) or the defaults;
    the rest is the body.  Decoding must return cleanly; a request that
    decodes must encode again, and that body must decode to the same type.
    A failure must produce an ERROR reply that itself decodes.
    =========================================================================
*/

#include <stdlib.h>
#include "herald_msg.h"

static void
s_check (bool condition)
{
    if (!condition)
        abort ();
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    herald_msg_type_t type = (herald_msg_type_t)
        (HERALD_MSG_PUBLISH + (data [0] & 0x7f) % (HERALD_MSG_ACL - HERALD_MSG_PUBLISH + 1));
    herald_limits_t small = { .max_event_bytes = 4096, .max_batch = 8 };
    const herald_limits_t *limits = (data [0] & 0x80) ? &small : NULL;

    msgpack_zone zone;
    msgpack_zone_init (&zone, 1024);
    msgpack_sbuffer buffer;
    msgpack_sbuffer_init (&buffer);
    herald_msg_t msg, again;
    herald_error_t err;
    herald_err rc = herald_msg_decode (&msg, type, data + 1, size - 1, limits, &zone, &err);
    if (rc == HERALD_OK) {
        s_check (msg.type == type && msg.has_rid);
        s_check (herald_msg_encode (&msg, &buffer) == 0);
        rc = herald_msg_decode (&again, type, buffer.data, buffer.size, limits, &zone, &err);
        s_check (rc == HERALD_OK);
        s_check (again.rid == msg.rid);
        if (type == HERALD_MSG_PUBLISH)
            s_check (again.publish.count == msg.publish.count);
        if (type == HERALD_MSG_REPLAY)
            s_check (again.replay.pack == msg.replay.pack
                  && again.replay.credit == msg.replay.credit);
        if (type == HERALD_MSG_READ)
            s_check (again.read.pack == msg.read.pack && again.read.credit == msg.read.credit);
        if (type == HERALD_MSG_ACL)
            s_check (again.acl.op == msg.acl.op);
    }
    else {
        s_check (err.code == rc);
        s_check (herald_msg_encode_error (&err, &buffer) == 0);
        rc = herald_msg_decode (&again, HERALD_MSG_ERROR, buffer.data, buffer.size,
                                NULL, &zone, NULL);
        s_check (rc == HERALD_OK && again.has_rid == err.has_rid);
    }
    msgpack_sbuffer_destroy (&buffer);
    msgpack_zone_destroy (&zone);
    return 0;
}
