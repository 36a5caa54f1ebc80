/*  =========================================================================
    herald_hash - the content hash kept beside each id in the dedup index

    An event id is the idempotency key: a second event with a stored id is
    not stored.  A true retry carries the same topic and data; a different
    event under a reused id (a forked publisher's copied generator, a
    publisher's bug) does not.  The store keeps this 64-bit hash of an
    event's topic and data beside its id, so that such a duplicate is told
    apart from a retry and flagged (`reused` in the ACK) instead of passing
    as one.  The hash is part of the on-disk format: it must never change.
    =========================================================================
*/

#ifndef HERALD_HASH_H_INCLUDED
#define HERALD_HASH_H_INCLUDED

#include <stddef.h>
#include <stdint.h>
#include "herald_event.h"

//  XXH64 (xxHash's 64-bit function, as its specification defines it) of
//  data[0..len) with seed.
uint64_t
    herald_hash64 (const void *data, size_t len, uint64_t seed);

//  The content hash of an event: XXH64 of its data, seeded with XXH64 of
//  its topic (seed 0).  The seed keeps (topic, data) unambiguous: "ab"+"c"
//  and "a"+"bc" hash apart.
uint64_t
    herald_hash_content (const herald_event_t *event);

#endif
