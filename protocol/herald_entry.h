/*  =========================================================================
    herald_entry - a Raft log entry of the cluster: encode, decode

    What the leader proposes and every node applies (docs: CLUSTER.md
    §3.2).  An entry carries requests, not effects: whole PUBLISH
    requests with their validated event maps, and the ts the leader chose;
    every node decides seq, ver, dup and conflicts itself at apply time.

    Layout, big-endian like the store:

        +--------+---------+----------+-----------+
        | "HRE1" | kind u8 | flags u8 | rules u16 |
        +--------+---------+----------+-----------+
        | proposer term u64 | proposer raft id u64 | ts u64 |
        +-------------------+----------------------+--------+
        | body (by kind)                                    |
        +---------------------------------------------------+
        | crc32c u32 over every byte before it              |
        +---------------------------------------------------+
        | padding: flags & 7 zero bytes                     |
        +---------------------------------------------------+

    flags: bits 0-2 count the zero bytes after the crc that make the
    entry's length a multiple of 8 (libraft 0.22's disk append refuses
    any other length); the other bits are 0 (reserved).

        body of kind 1 (publish):
            request count u32
            per request: event count u32
                         per event: len u32, the event map (MessagePack)
                     or, rules 2 only, a consumer group's op:
                         0 u32, op len u32, the op (MessagePack map,
                         herald_store_groups.h; checked by the store at
                         apply time, not here: a bad op is a result)
        body of kind 2 (node table):  len u32, the table (MessagePack,
                                      opaque to this codec)
        body of kind 3 (no-op):       nothing

    An event map is a publisher's map (id, topic, type, schema, meta,
    data, expect: the fields of the request as validated on the leader),
    packed again from the decoded event: what the broker keeps of a
    request is its decoded fields, and these decode to the same ones.

    Decoding checks everything (magic, kind, rules, every length against
    the bytes left, the crc, each event map as PUBLISH validates it) and
    never reads outside the input: a corrupt entry is an error, never a
    crash.  It applies no size limits: limits are the leader's job, and a
    follower must not refuse a committed entry a smaller limit would have.
    =========================================================================
*/

#ifndef HERALD_ENTRY_H_INCLUDED
#define HERALD_ENTRY_H_INCLUDED

#include "herald_event.h"

#define HERALD_ENTRY_MAGIC          "HRE1"
//  The decision rules an entry was proposed under: what apply does with
//  its requests (herald_store_apply_entry).  A node refuses an entry
//  whose rules it does not implement (it stops; it never guesses).
//  Rules 1: requests are PUBLISH requests.  Rules 2 adds requests that
//  carry a consumer group's op (event count 0).  A node of this build
//  accepts both; a proposal is written under the lowest rules its
//  requests need, so nodes of rules 1 can apply entries without ops.
#define HERALD_ENTRY_RULES          2
#define HERALD_ENTRY_RULES_MIN      1
#define HERALD_ENTRY_RULES_OPS      2
//  Bytes of an entry around its body: header 32, crc 4.
#define HERALD_ENTRY_OVERHEAD       36

typedef enum {
    HERALD_ENTRY_PUBLISH = 1,
    HERALD_ENTRY_NODE_TABLE = 2,
    HERALD_ENTRY_NOOP = 3
} herald_entry_kind_t;

//  One request: its events (a store batch's, or decoded), or (count 0)
//  a consumer group's op (decoded: borrowed from the input).
typedef struct {
    const herald_event_t *events;
    size_t count;
    const uint8_t *op;
    size_t op_len;
} herald_entry_request_t;

typedef struct {
    herald_entry_kind_t kind;
    uint8_t flags;                  //  padding count (encode sets it)
    uint16_t rules;                 //  HERALD_ENTRY_RULES
    uint64_t term;                  //  the proposer's term when it proposed
    uint64_t proposer;              //  the proposer's raft id
    uint64_t ts;                    //  ns, the leader's clock (herald_store_now)
    //  kind publish: the requests, in order (decoded: the array and the
    //  events in the zone)
    const herald_entry_request_t *requests;
    size_t count;
    //  kind node table: its bytes (decoded: borrowed from the input)
    const uint8_t *table;
    size_t table_len;
} herald_entry_t;

//  The bytes a request of count events takes in an entry's body (its
//  event count and, per event, len and map).  For cutting a group commit
//  into entries.
size_t
    herald_entry_request_size (const herald_event_t *events, size_t count);

//  The bytes an op request of len bytes takes in an entry's body.
size_t
    herald_entry_op_size (size_t len);

//  Append entry to buffer, padded to a multiple of 8 bytes (entry->flags
//  is ignored).  Returns 0, or -1 if out of memory, a count or length
//  does not fit its field, or a request has no event and no op (or an op
//  under rules 1).
int
    herald_entry_encode (const herald_entry_t *entry, msgpack_sbuffer *buffer);

//  Decode bytes[0..len) into entry.  The requests and their events are
//  allocated in zone; event fields borrow bytes (which must outlive
//  entry).  Returns HERALD_OK, or HERALD_ERR_CORRUPT (err says
//  what: bad magic, unknown kind or rules, truncated, crc mismatch, an
//  event map that does not validate); HERALD_ERR_NOMEM.
herald_err
    herald_entry_decode (herald_entry_t *entry, const void *bytes, size_t len,
                         msgpack_zone *zone, herald_error_t *err);

#endif
