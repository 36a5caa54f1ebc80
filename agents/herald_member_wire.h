/*  =========================================================================
    herald_member_wire - GROUP request bodies and GROUP reply decoding

    What herald_member.c sends and reads (docs/protocol.md "Consumer
    groups").  The decoder trusts nothing: a reply with a key of the wrong
    type, a missing key or a partition outside the group is refused with
    why, so the member fails its subscription with a clear error.
    =========================================================================
*/

#ifndef HERALD_MEMBER_WIRE_H_INCLUDED
#define HERALD_MEMBER_WIRE_H_INCLUDED

#include <msgpack.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

//  A partition's positions: an `assigned` entry, a commit's position, or
//  (committed and delivered unused) an `owned` entry.
typedef struct {
    uint32_t partition;
    uint64_t epoch;
    uint64_t committed;
    uint64_t delivered;
} herald_member_pos_t;

typedef enum {
    HERALD_MEMBER_OP_HEARTBEAT = 1,
    HERALD_MEMBER_OP_COMMIT,
    HERALD_MEMBER_OP_LEAVE
} herald_member_op_t;

//  A GROUP reply to heartbeat, commit or leave.
typedef struct {
    uint64_t rid;
    herald_member_op_t op;
    //  heartbeat
    uint64_t generation;            //  0 when absent
    uint32_t partitions;
    uint64_t session_ms;
    uint64_t heartbeat_ms;
    uint64_t head;                  //  0 when absent
    herald_member_pos_t *assigned;  //  owned array
    size_t assigned_count;
    //  commit
    uint32_t *fenced;               //  owned array
    size_t fenced_count;
} herald_member_reply_t;

//  Append a heartbeat body.  owned: [partition, epoch] of each; partitions
//  and session_ms are sent when nonzero, from when nonzero.  0, or -1 when
//  out of memory.
int
    herald_member_encode_heartbeat (msgpack_sbuffer *buffer, uint64_t rid, const char *group,
                                    const char *member, char *const *prefixes,
                                    size_t prefix_count, const herald_member_pos_t *owned,
                                    size_t owned_count, uint32_t partitions, uint64_t session_ms,
                                    uint64_t from);

//  Append a commit body: [partition, epoch, committed, delivered] each.
int
    herald_member_encode_commit (msgpack_sbuffer *buffer, uint64_t rid, const char *group,
                                 const char *member, const herald_member_pos_t *positions,
                                 size_t count);

//  Append a leave body.
int
    herald_member_encode_leave (msgpack_sbuffer *buffer, uint64_t rid, const char *group,
                                const char *member);

//  Decode a GROUP reply body (heartbeat, commit or leave).  0, or -1 with
//  why (the reply freed).  reply_fini frees what a 0 left in it.
int
    herald_member_decode_reply (herald_member_reply_t *reply, const void *body, size_t len,
                                char *why, size_t size);

void
    herald_member_reply_fini (herald_member_reply_t *reply);

//  herald_member_partition (herald_member.h) is defined in herald_member_wire.c.
uint32_t
    herald_member_partition (const char *topic, size_t len, uint32_t partitions);

#endif
