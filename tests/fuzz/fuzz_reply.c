/*  =========================================================================
    fuzz_reply - libFuzzer target for the reply and heartbeat decoders

    The first byte picks the type (ACK..$hb); the rest is the body.
    Decoding must return cleanly; a reply that decodes must encode again,
    and that body must decode to the same type and rid.
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
        (HERALD_MSG_ACK + data [0] % (HERALD_MSG_HEARTBEAT - HERALD_MSG_ACK + 1));
    msgpack_zone zone;
    msgpack_zone_init (&zone, 1024);
    herald_msg_t msg, again;
    herald_error_t err;
    herald_err rc = herald_msg_decode (&msg, type, data + 1, size - 1, NULL, &zone, &err);
    if (rc == HERALD_OK) {
        msgpack_sbuffer buffer;
        msgpack_sbuffer_init (&buffer);
        s_check (herald_msg_encode (&msg, &buffer) == 0);
        rc = herald_msg_decode (&again, type, buffer.data, buffer.size, NULL, &zone, &err);
        s_check (rc == HERALD_OK);
        s_check (again.has_rid == msg.has_rid && again.rid == msg.rid);
        if (type == HERALD_MSG_ERROR)
            s_check (again.error.code == msg.error.code);
        msgpack_sbuffer_destroy (&buffer);
    }
    else
        s_check (err.code == rc);
    msgpack_zone_destroy (&zone);
    return 0;
}
