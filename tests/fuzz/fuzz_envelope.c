/*  =========================================================================
    fuzz_envelope - libFuzzer target for the stored-envelope decoder

    Feeds arbitrary bytes to herald_event_decode and herald_event_peek.  Both
    must return cleanly, never read out of bounds, and agree whenever both
    accept the bytes.  An envelope that decodes must encode again and that
    encoding must decode, peek, and give the same fields.
    =========================================================================
*/

#include <stdlib.h>
#include <string.h>
#include "herald_event.h"

static void
s_check (bool condition)
{
    if (!condition)
        abort ();
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
    msgpack_zone zone;
    msgpack_zone_init (&zone, 1024);
    herald_event_t event;
    herald_error_t err;
    herald_err rc = herald_event_decode (&event, data, size, &zone, &err);
    const char *topic;
    size_t topic_len;
    uint64_t seq, ver, ts;
    bool peeked = herald_event_peek (data, size, &topic, &topic_len, &seq, &ver, &ts);
    if (rc == HERALD_OK && peeked)
        s_check (topic == event.topic && topic_len == event.topic_len
                 && seq == event.seq && ver == event.ver && ts == event.ts);
    if (rc == HERALD_OK) {
        msgpack_sbuffer buffer;
        msgpack_sbuffer_init (&buffer);
        s_check (herald_event_encode (&event, &buffer) == 0);
        s_check (buffer.size == herald_event_encoded_size (&event));
        herald_event_t again;
        s_check (herald_event_decode (&again, buffer.data, buffer.size, &zone, &err) == HERALD_OK);
        s_check (herald_event_peek (buffer.data, buffer.size, &topic, &topic_len,
                                    &seq, &ver, &ts));
        s_check (seq == event.seq && ver == event.ver && ts == event.ts
                 && topic_len == event.topic_len
                 && memcmp (topic, event.topic, topic_len) == 0
                 && again.data_len == event.data_len
                 && again.meta_count == event.meta_count
                 && again.has_schema == event.has_schema
                 && memcmp (again.id, event.id, HERALD_ID_BYTES) == 0);
        msgpack_sbuffer_destroy (&buffer);
    }
    else
        s_check (err.code == rc && rc != HERALD_OK);
    msgpack_zone_destroy (&zone);
    return 0;
}
