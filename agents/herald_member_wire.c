/*  =========================================================================
    herald_member_wire - GROUP request bodies and GROUP reply decoding

    See herald_member_wire.h.  Encoders check every pack call (an sbuffer
    write fails only when out of memory); the decoder reads a reply
    through msgpack-c's object tree and checks each key it uses.
    =========================================================================
*/

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "herald_member_wire.h"

//  fnv1a32 (docs/protocol.md): here, with the wire, so that it is tested
//  without the rest of the agent
uint32_t
herald_member_partition (const char *topic, size_t len, uint32_t partitions)
{
    uint32_t hash = 2166136261u;
    for (size_t index = 0; index < len; index++) {
        hash ^= (uint8_t) topic [index];
        hash *= 16777619u;
    }
    return partitions? hash % partitions: hash;
}

static int
s_str (msgpack_packer *pk, const char *text)
{
    size_t len = strlen (text);
    return msgpack_pack_str (pk, len) | msgpack_pack_str_body (pk, text, len);
}

//  The keys every request has: rid, op, group, member.
static int
s_head (msgpack_packer *pk, size_t pairs, uint64_t rid, const char *op, const char *group,
        const char *member)
{
    return msgpack_pack_map (pk, pairs)
         | s_str (pk, "rid") | msgpack_pack_uint64 (pk, rid)
         | s_str (pk, "op") | s_str (pk, op)
         | s_str (pk, "group") | s_str (pk, group)
         | s_str (pk, "member") | s_str (pk, member);
}

int
herald_member_encode_heartbeat (msgpack_sbuffer *buffer, uint64_t rid, const char *group,
                                const char *member, char *const *prefixes, size_t prefix_count,
                                const herald_member_pos_t *owned, size_t owned_count,
                                uint32_t partitions, uint64_t session_ms, uint64_t from)
{
    msgpack_packer pk;
    msgpack_packer_init (&pk, buffer, msgpack_sbuffer_write);
    size_t pairs = 6 + (partitions != 0) + (session_ms != 0) + (from != 0);
    int rc = s_head (&pk, pairs, rid, "heartbeat", group, member);
    rc |= s_str (&pk, "prefixes") | msgpack_pack_array (&pk, prefix_count);
    for (size_t index = 0; index < prefix_count; index++)
        rc |= s_str (&pk, prefixes [index]);
    rc |= s_str (&pk, "owned") | msgpack_pack_array (&pk, owned_count);
    for (size_t index = 0; index < owned_count; index++)
        rc |= msgpack_pack_array (&pk, 2) | msgpack_pack_uint32 (&pk, owned [index].partition)
            | msgpack_pack_uint64 (&pk, owned [index].epoch);
    if (partitions)
        rc |= s_str (&pk, "partitions") | msgpack_pack_uint32 (&pk, partitions);
    if (session_ms)
        rc |= s_str (&pk, "session_ms") | msgpack_pack_uint64 (&pk, session_ms);
    if (from)
        rc |= s_str (&pk, "from") | msgpack_pack_uint64 (&pk, from);
    return rc? -1: 0;
}

int
herald_member_encode_commit (msgpack_sbuffer *buffer, uint64_t rid, const char *group,
                             const char *member, const herald_member_pos_t *positions,
                             size_t count)
{
    msgpack_packer pk;
    msgpack_packer_init (&pk, buffer, msgpack_sbuffer_write);
    int rc = s_head (&pk, 5, rid, "commit", group, member);
    rc |= s_str (&pk, "positions") | msgpack_pack_array (&pk, count);
    for (size_t index = 0; index < count; index++)
        rc |= msgpack_pack_array (&pk, 4)
            | msgpack_pack_uint32 (&pk, positions [index].partition)
            | msgpack_pack_uint64 (&pk, positions [index].epoch)
            | msgpack_pack_uint64 (&pk, positions [index].committed)
            | msgpack_pack_uint64 (&pk, positions [index].delivered);
    return rc? -1: 0;
}

int
herald_member_encode_leave (msgpack_sbuffer *buffer, uint64_t rid, const char *group,
                            const char *member)
{
    msgpack_packer pk;
    msgpack_packer_init (&pk, buffer, msgpack_sbuffer_write);
    return s_head (&pk, 4, rid, "leave", group, member)? -1: 0;
}

//  ---------------------------------------------------------------------
//  Decoding

static const msgpack_object *
s_key (const msgpack_object *map, const char *key)
{
    size_t len = strlen (key);
    for (uint32_t index = 0; index < map->via.map.size; index++) {
        const msgpack_object *name = &map->via.map.ptr [index].key;
        if (name->type == MSGPACK_OBJECT_STR && name->via.str.size == len
        &&  memcmp (name->via.str.ptr, key, len) == 0)
            return &map->via.map.ptr [index].val;
    }
    return NULL;
}

//  A uint under key into *value: 0, 1 when absent and optional, -1 (why
//  said) when absent and required or not a uint.
static int
s_uint (const msgpack_object *map, const char *key, bool required, uint64_t *value,
        char *why, size_t size)
{
    const msgpack_object *object = s_key (map, key);
    *value = 0;
    if (!object && !required)
        return 1;
    if (!object) {
        snprintf (why, size, "GROUP reply without `%s`", key);
        return -1;
    }
    if (object->type != MSGPACK_OBJECT_POSITIVE_INTEGER) {
        snprintf (why, size, "GROUP reply's `%s` is not a uint", key);
        return -1;
    }
    *value = object->via.u64;
    return 0;
}

static int
s_assigned (herald_member_reply_t *reply, const msgpack_object *map, char *why, size_t size)
{
    const msgpack_object *array = s_key (map, "assigned");
    if (!array || array->type != MSGPACK_OBJECT_ARRAY) {
        snprintf (why, size, "GROUP heartbeat reply %s `assigned` array",
                  array? "with a non-array": "without an");
        return -1;
    }
    size_t count = array->via.array.size;
    if (count > reply->partitions) {
        snprintf (why, size, "GROUP heartbeat reply assigns %zu partitions of %u", count,
                  reply->partitions);
        return -1;
    }
    reply->assigned = calloc (count? count: 1, sizeof *reply->assigned);
    if (!reply->assigned) {
        snprintf (why, size, "out of memory");
        return -1;
    }
    for (size_t index = 0; index < count; index++) {
        const msgpack_object *entry = &array->via.array.ptr [index];
        if (entry->type != MSGPACK_OBJECT_MAP) {
            snprintf (why, size, "GROUP heartbeat reply's `assigned` holds a non-map");
            return -1;
        }
        herald_member_pos_t *pos = &reply->assigned [index];
        uint64_t partition;
        if (s_uint (entry, "partition", true, &partition, why, size)
        ||  s_uint (entry, "epoch", true, &pos->epoch, why, size)
        ||  s_uint (entry, "committed", true, &pos->committed, why, size)
        ||  s_uint (entry, "delivered", true, &pos->delivered, why, size))
            return -1;
        if (partition >= reply->partitions) {
            snprintf (why, size, "GROUP heartbeat reply assigns partition %llu of %u",
                      (unsigned long long) partition, reply->partitions);
            return -1;
        }
        if (pos->delivered < pos->committed) {
            snprintf (why, size, "GROUP heartbeat reply's partition %llu has delivered "
                      "below committed", (unsigned long long) partition);
            return -1;
        }
        for (size_t was = 0; was < index; was++)
            if (reply->assigned [was].partition == partition) {
                snprintf (why, size, "GROUP heartbeat reply assigns partition %llu twice",
                          (unsigned long long) partition);
                return -1;
            }
        pos->partition = (uint32_t) partition;
        reply->assigned_count++;
    }
    return 0;
}

static int
s_fenced (herald_member_reply_t *reply, const msgpack_object *map, char *why, size_t size)
{
    const msgpack_object *array = s_key (map, "fenced");
    if (!array || array->type != MSGPACK_OBJECT_ARRAY) {
        snprintf (why, size, "GROUP commit reply %s `fenced` array",
                  array? "with a non-array": "without a");
        return -1;
    }
    size_t count = array->via.array.size;
    reply->fenced = calloc (count? count: 1, sizeof *reply->fenced);
    if (!reply->fenced) {
        snprintf (why, size, "out of memory");
        return -1;
    }
    for (size_t index = 0; index < count; index++) {
        const msgpack_object *entry = &array->via.array.ptr [index];
        if (entry->type != MSGPACK_OBJECT_POSITIVE_INTEGER || entry->via.u64 > UINT32_MAX) {
            snprintf (why, size, "GROUP commit reply's `fenced` holds a non-partition");
            return -1;
        }
        reply->fenced [reply->fenced_count++] = (uint32_t) entry->via.u64;
    }
    return 0;
}

static int
s_decode (herald_member_reply_t *reply, const msgpack_object *map, char *why, size_t size)
{
    if (map->type != MSGPACK_OBJECT_MAP) {
        snprintf (why, size, "GROUP reply body is not a map");
        return -1;
    }
    if (s_uint (map, "rid", true, &reply->rid, why, size))
        return -1;
    const msgpack_object *op = s_key (map, "op");
    if (!op || op->type != MSGPACK_OBJECT_STR) {
        snprintf (why, size, "GROUP reply %s `op`", op? "with a non-str": "without");
        return -1;
    }
    const char *name = op->via.str.ptr;
    size_t len = op->via.str.size;
    if (len == 9 && memcmp (name, "heartbeat", 9) == 0) {
        reply->op = HERALD_MEMBER_OP_HEARTBEAT;
        uint64_t partitions;
        if (s_uint (map, "partitions", true, &partitions, why, size)
        ||  s_uint (map, "session_ms", true, &reply->session_ms, why, size)
        ||  s_uint (map, "heartbeat_ms", true, &reply->heartbeat_ms, why, size)
        ||  s_uint (map, "generation", false, &reply->generation, why, size) < 0
        ||  s_uint (map, "head", false, &reply->head, why, size) < 0)
            return -1;
        if (partitions < 1 || partitions > 1024) {
            snprintf (why, size, "GROUP heartbeat reply's `partitions` %llu is not 1-1024",
                      (unsigned long long) partitions);
            return -1;
        }
        if (reply->session_ms < 1 || reply->heartbeat_ms < 1
        ||  reply->heartbeat_ms > reply->session_ms) {
            snprintf (why, size, "GROUP heartbeat reply's `session_ms` %llu and "
                      "`heartbeat_ms` %llu do not make sense",
                      (unsigned long long) reply->session_ms,
                      (unsigned long long) reply->heartbeat_ms);
            return -1;
        }
        reply->partitions = (uint32_t) partitions;
        return s_assigned (reply, map, why, size);
    }
    if (len == 6 && memcmp (name, "commit", 6) == 0) {
        reply->op = HERALD_MEMBER_OP_COMMIT;
        return s_fenced (reply, map, why, size);
    }
    if (len == 5 && memcmp (name, "leave", 5) == 0) {
        reply->op = HERALD_MEMBER_OP_LEAVE;
        return 0;
    }
    snprintf (why, size, "GROUP reply with op '%.*s', not one a member sends",
              (int) (len > 32? 32: len), name);
    return -1;
}

int
herald_member_decode_reply (herald_member_reply_t *reply, const void *body, size_t len,
                            char *why, size_t size)
{
    memset (reply, 0, sizeof *reply);
    msgpack_unpacked unpacked;
    msgpack_unpacked_init (&unpacked);
    size_t offset = 0;
    int rc = -1;
    if (msgpack_unpack_next (&unpacked, (const char *) body, len, &offset)
        != MSGPACK_UNPACK_SUCCESS)
        snprintf (why, size, "GROUP reply body is not MessagePack");
    else
    if (offset != len)
        snprintf (why, size, "GROUP reply body has bytes after its map");
    else
        rc = s_decode (reply, &unpacked.data, why, size);
    msgpack_unpacked_destroy (&unpacked);
    if (rc)
        herald_member_reply_fini (reply);
    return rc;
}

void
herald_member_reply_fini (herald_member_reply_t *reply)
{
    free (reply->assigned);
    free (reply->fenced);
    reply->assigned = NULL;
    reply->fenced = NULL;
    reply->assigned_count = reply->fenced_count = 0;
}
