/*  =========================================================================
    fuzz_reply - libFuzzer target for the reply and heartbeat decoders

    The first byte picks the type (ACK..$hb, ACL included); the rest is the body.
    Decoding must return cleanly; a reply that decodes must encode again,
    and that body must decode to the same type and rid.

    The rest is also read as an EVENTS frame, packed or not (`pack`):
    herald_msg_events_next must end cleanly, every envelope it gives must
    lie inside the frame, right after the one before, and decode (or fail)
    cleanly as an event; when the walk ends without error the envelopes
    tile the frame exactly.
    =========================================================================
*/

#include <stdlib.h>
#include "herald_msg.h"

//  Walk frame[0..size) as an EVENTS frame, as the clients do.
static void
s_check_frame (const uint8_t *frame, size_t size, msgpack_zone *zone);

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
        if (type == HERALD_MSG_ACL_REPLY)
            s_check (again.acl.op == msg.acl.op);
        msgpack_sbuffer_destroy (&buffer);
    }
    else
        s_check (err.code == rc);
    s_check_frame (data + 1, size - 1, &zone);
    msgpack_zone_destroy (&zone);
    return 0;
}

static void
s_check_frame (const uint8_t *frame, size_t size, msgpack_zone *zone)
{
    size_t offset = 0, covered = 0, len, count = 0;
    const uint8_t *envelope;
    int rc;
    while ((rc = herald_msg_events_next (frame, size, &offset, &envelope, &len)) == 1) {
        s_check (envelope == frame + covered && len > 0 && covered + len == offset);
        s_check (offset <= size);
        covered = offset;
        s_check (++count <= size);          //  each takes a byte at least: it ends
        herald_event_t event;
        herald_error_t err;
        msgpack_zone_clear (zone);
        herald_err decoded = herald_event_decode (&event, envelope, len, zone, &err);
        s_check (decoded == HERALD_OK || err.code == decoded);
    }
    s_check (rc == 0 || rc == -1);
    s_check (offset == covered);            //  a failed step leaves offset where it was
    if (rc == 0)
        s_check (covered == size && size > 0);
    else
        s_check (size == 0 || covered < size);
    //  The end stays the end
    if (rc == 0)
        s_check (herald_msg_events_next (frame, size, &offset, &envelope, &len) == 0);
}
