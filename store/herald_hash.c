/*  =========================================================================
    herald_hash - XXH64, for the content hash of the dedup index

    DESIGN
    Why XXH64: it is specified (xxHash's doc/xxhash_spec.md), so the hash
    in the store means the same to any later reader or tool; it is fast
    (about 8 bytes per cycle on long inputs, a few ns on a short topic) and
    fits in a screenful, so it costs no new dependency; and 64 bits are
    plenty for what it must do.  It is not a defence against a publisher
    that crafts collisions (a publisher that can publish can do worse);
    it tells an accidental reuse of an id from a retry.  Two different
    contents under one id pass as a retry with probability 2^-64 per
    reuse: at a million reused ids a second, once in half a million years.
    Inputs are read little-endian byte by byte, so the value is the same
    on every machine.
    =========================================================================
*/

#include <string.h>
#include "herald_hash.h"

#define P1 0x9E3779B185EBCA87ull
#define P2 0xC2B2AE3D27D4EB4Full
#define P3 0x165667B19E3779F9ull
#define P4 0x85EBCA77C2B2AE63ull
#define P5 0x27D4EB2F165667C5ull

static inline uint64_t
s_rotl (uint64_t value, int bits)
{
    return (value << bits) | (value >> (64 - bits));
}

static inline uint64_t
s_read64 (const uint8_t *p)
{
    return (uint64_t) p [0]       | (uint64_t) p [1] << 8  | (uint64_t) p [2] << 16
         | (uint64_t) p [3] << 24 | (uint64_t) p [4] << 32 | (uint64_t) p [5] << 40
         | (uint64_t) p [6] << 48 | (uint64_t) p [7] << 56;
}

static inline uint64_t
s_read32 (const uint8_t *p)
{
    return (uint64_t) p [0] | (uint64_t) p [1] << 8 | (uint64_t) p [2] << 16
         | (uint64_t) p [3] << 24;
}

static inline uint64_t
s_round (uint64_t acc, uint64_t input)
{
    acc += input * P2;
    acc = s_rotl (acc, 31);
    return acc * P1;
}

static inline uint64_t
s_merge (uint64_t acc, uint64_t value)
{
    acc ^= s_round (0, value);
    return acc * P1 + P4;
}

uint64_t
herald_hash64 (const void *data, size_t len, uint64_t seed)
{
    const uint8_t *p = (const uint8_t *) data;
    const uint8_t *end = p + len;
    uint64_t hash;
    if (len >= 32) {
        uint64_t v1 = seed + P1 + P2, v2 = seed + P2, v3 = seed, v4 = seed - P1;
        const uint8_t *limit = end - 32;
        do {
            v1 = s_round (v1, s_read64 (p));
            v2 = s_round (v2, s_read64 (p + 8));
            v3 = s_round (v3, s_read64 (p + 16));
            v4 = s_round (v4, s_read64 (p + 24));
            p += 32;
        } while (p <= limit);
        hash = s_rotl (v1, 1) + s_rotl (v2, 7) + s_rotl (v3, 12) + s_rotl (v4, 18);
        hash = s_merge (hash, v1);
        hash = s_merge (hash, v2);
        hash = s_merge (hash, v3);
        hash = s_merge (hash, v4);
    }
    else
        hash = seed + P5;
    hash += (uint64_t) len;
    for (; end - p >= 8; p += 8) {
        hash ^= s_round (0, s_read64 (p));
        hash = s_rotl (hash, 27) * P1 + P4;
    }
    if (end - p >= 4) {
        hash ^= s_read32 (p) * P1;
        hash = s_rotl (hash, 23) * P2 + P3;
        p += 4;
    }
    for (; p < end; p++) {
        hash ^= *p * P5;
        hash = s_rotl (hash, 11) * P1;
    }
    hash ^= hash >> 33;
    hash *= P2;
    hash ^= hash >> 29;
    hash *= P3;
    hash ^= hash >> 32;
    return hash;
}

uint64_t
herald_hash_content (const herald_event_t *event)
{
    uint64_t seed = herald_hash64 (event->topic, event->topic_len, 0);
    return herald_hash64 (event->data? (const void *) event->data: "", event->data_len, seed);
}
