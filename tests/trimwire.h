/*  =========================================================================
    trimwire - helpers of the trimming tests (test_heraldd_trim*.c)

    TRIM requests packed by hand, any reply read whole (its body kept as
    a MessagePack map to look keys up in), streams read to their END or
    ERROR, STATUS `first` and `trims`, the BLAKE2b-256 of the ids of a
    range of seqs as an archive computes it (libsodium, from a REPLAY).
    Uses criterion: linked only into those tests.
    =========================================================================
*/

#ifndef HERALD_TRIMWIRE_H_INCLUDED
#define HERALD_TRIMWIRE_H_INCLUDED

#include <stdbool.h>
#include <stdint.h>
#include <czmq.h>
#include <msgpack.h>

//  One reply, whole.
typedef struct {
    char command [16];
    msgpack_unpacked unpacked;      //  the body
    bool ok;                        //  the body is a map
    zmsg_t *msg;                    //  the frames (EVENTS: envelopes after the body)
} tw_reply_t;

//  A TRIM request; has_ flags false leave the key out.
typedef struct {
    bool has_prefix;
    const char *prefix;
    bool has_until;
    uint64_t until;
    bool has_ids_from;
    uint64_t ids_from;
    const uint8_t *ids;             //  NULL: no ids key
    size_t ids_len;
    bool has_unarchived;
    bool unarchived;
} tw_trim_t;

void
    tw_send_trim (zsock_t *sock, uint64_t rid, const tw_trim_t *trim);

//  The next reply to rid within timeout_ms (replies to other rids are
//  skipped); fails the test without one.  tw_reply_fini afterwards.
void
    tw_recv (zsock_t *sock, uint64_t rid, tw_reply_t *reply, int timeout_ms);

void
    tw_reply_fini (tw_reply_t *reply);

//  A key of the reply's body: a uint (0 when absent), or a str.
uint64_t
    tw_uint (const tw_reply_t *reply, const char *key);
bool
    tw_has (const tw_reply_t *reply, const char *key);
void
    tw_str (const tw_reply_t *reply, const char *key, char *out, size_t size);

//  Send TRIM and require the refusal code, its message naming field
//  (NULL: not checked); returns nothing.
void
    tw_trim_refused (zsock_t *sock, uint64_t rid, const tw_trim_t *trim, const char *code,
                     const char *field);

//  Send TRIM and require TRIM {rid, prefix, until, first}; returns first.
uint64_t
    tw_trim_ok (zsock_t *sock, uint64_t rid, const tw_trim_t *trim, int timeout_ms);

//  STATUS `first`, and its `trims` as text "PREFIX:UNTIL,..." (in the
//  reply's order) into out.
uint64_t
    tw_status_trims (zsock_t *sock, char *out, size_t size);

//  Poll STATUS (every 20 ms, up to timeout_ms) until its trims text holds
//  want; returns whether it did.
bool
    tw_wait_trims (zsock_t *sock, const char *want, int timeout_ms);

//  What a stream gave: its envelopes' seqs (or vers for a READ), and how
//  it ended: "END" with reason, or "ERROR" with code and first.
typedef struct {
    uint64_t seqs [4096];
    uint64_t vers [4096];
    uint8_t ids [4096][16];
    size_t count;
    char ended [8];                 //  "END", "ERROR", "" (none in time)
    char reason [32];               //  END's reason, ERROR's code
    uint64_t first;                 //  ERROR trimmed's first
    bool has_first;
    char message [512];
} tw_stream_t;

//  Send REPLAY {rid, from, prefixes, credit} (from 0: no from key).
void
    tw_send_replay (zsock_t *sock, uint64_t rid, uint64_t from, const char *const *prefixes,
                    size_t count, uint64_t credit);

//  Send READ {rid, topic, from_ver, credit}.
void
    tw_send_read (zsock_t *sock, uint64_t rid, const char *topic, uint64_t from_ver,
                  uint64_t credit);

//  Read rid's stream (adding to what stream holds) until it ends, or want
//  events came (0: until it ends), within timeout_ms.
void
    tw_stream_read (zsock_t *sock, uint64_t rid, tw_stream_t *stream, size_t want,
                    int timeout_ms);

//  REPLAY {from, prefixes} to its end: the whole answer.
void
    tw_replay (zsock_t *sock, uint64_t rid, uint64_t from, const char *const *prefixes,
               size_t count, tw_stream_t *stream);

//  READ {topic, from_ver} to its end.
void
    tw_read (zsock_t *sock, uint64_t rid, const char *topic, uint64_t from_ver,
             tw_stream_t *stream);

//  The archive's digest of seqs from..to: REPLAY them and hash their ids
//  (crypto_generichash, 32 bytes, no key).
void
    tw_ids_digest (zsock_t *sock, uint64_t rid, uint64_t from, uint64_t to,
                   uint8_t digest [32]);

#endif
