/*  =========================================================================
    fuzz_entry - libFuzzer target for the cluster's Raft entry codec

    The input is an entry as a follower would receive it.  Most random
    bytes fail the crc at once, so the target decodes the input twice: as
    it is, and with its last four bytes replaced by the right crc32c, so
    the fuzzer reaches the frame and event-map checks behind it.  Decoding
    must return cleanly, with HERALD_ERR_CORRUPT (or NOMEM) on failure; an
    entry that decodes must encode again, and that must decode to the
    same header and request count.
    =========================================================================
*/

#include <stdlib.h>
#include <string.h>
#include "herald_entry.h"
#include "../../agents/herald_crc.h"

static void
s_check (bool condition)
{
    if (!condition)
        abort ();
}

static void
s_try (const uint8_t *data, size_t size)
{
    msgpack_zone zone;
    msgpack_zone_init (&zone, 1024);
    herald_entry_t entry;
    herald_error_t err;
    herald_err rc = herald_entry_decode (&entry, data, size, &zone, &err);
    if (rc == HERALD_OK) {
        msgpack_sbuffer buffer;
        msgpack_sbuffer_init (&buffer);
        s_check (herald_entry_encode (&entry, &buffer) == 0);
        herald_entry_t again;
        s_check (herald_entry_decode (&again, buffer.data, buffer.size, &zone, &err)
                 == HERALD_OK);
        s_check (again.kind == entry.kind && again.count == entry.count
                 && again.ts == entry.ts && again.term == entry.term);
        msgpack_sbuffer_destroy (&buffer);
    }
    else
        s_check (err.code == rc && (rc == HERALD_ERR_CORRUPT || rc == HERALD_ERR_NOMEM));
    msgpack_zone_destroy (&zone);
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
    s_try (data, size);
    if (size >= 4) {
        uint8_t *sealed = (uint8_t *) malloc (size);
        memcpy (sealed, data, size);
        uint32_t crc = herald_crc32c (0, sealed, size - 4);
        sealed [size - 4] = (uint8_t) (crc >> 24);
        sealed [size - 3] = (uint8_t) (crc >> 16);
        sealed [size - 2] = (uint8_t) (crc >> 8);
        sealed [size - 1] = (uint8_t) crc;
        s_try (sealed, size);
        free (sealed);
    }
    return 0;
}
