/*  =========================================================================
    herald_uuid - UUIDv7 event ids for publishers

    A publisher names each event with a 16-byte id, the idempotency key.
    UUIDv7 (RFC 9562) puts a millisecond Unix timestamp in the top 48 bits,
    so ids made later sort later, which keeps RocksDB's id index append-
    mostly.  Within one process ids are strictly increasing even when many
    are made in the same millisecond (a 12-bit counter in rand_a, seeded
    randomly each millisecond; the timestamp is advanced if it overflows).
    Fork-safe: a child process reseeds before its first id, so parent and
    children never share an id or its random bits (herald_uuid.c, FORK).
    =========================================================================
*/

#ifndef HERALD_UUID_H_INCLUDED
#define HERALD_UUID_H_INCLUDED

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define HERALD_UUID_STR_LEN 36      //  "xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx"

//  Write a fresh UUIDv7 to id.  Thread-safe and fork-safe.
void
    herald_uuid_v7 (uint8_t id [16]);

//  Write id as 36 lower-case hex characters with dashes, plus a NUL.
void
    herald_uuid_format (const uint8_t id [16], char out [HERALD_UUID_STR_LEN + 1]);

//  Parse a 36-character dashed or 32-character plain hex string of len
//  bytes into id.  Returns false when text is not a UUID.
bool
    herald_uuid_parse (const char *text, size_t len, uint8_t id [16]);

//  The Unix millisecond timestamp of a UUIDv7 (its top 48 bits).
uint64_t
    herald_uuid_v7_ms (const uint8_t id [16]);

#endif
