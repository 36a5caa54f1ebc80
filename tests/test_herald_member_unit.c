/*  =========================================================================
    test_herald_member_unit - the group member's partitioning and its GROUP
    bodies: what it sends, and that every malformed reply a broker could
    send is refused with a clear reason (never a crash, never a leak)
    =========================================================================
*/

#include <criterion/criterion.h>
#include <string.h>
#include "herald_member_wire.h"

Test (member_partition, fnv1a32_vectors)
{
    cr_assert_eq (herald_member_partition ("orders.1", 8, 0), 0xa72831f5u);
    cr_assert_eq (herald_member_partition ("orders.1234", 11, 0), 0x78d87a42u);
    cr_assert_eq (herald_member_partition ("", 0, 0), 0x811c9dc5u);
    cr_assert_eq (herald_member_partition ("orders.1", 8, 32), 21);
    cr_assert_eq (herald_member_partition ("orders.1234", 11, 32), 2);
    cr_assert_eq (herald_member_partition ("orders.1", 8, 1), 0);
    //  Bytes, not a C string: a NUL inside counts
    cr_assert_neq (herald_member_partition ("a\0b", 3, 0), herald_member_partition ("a", 1, 0));
}

//  ---------------------------------------------------------------------
//  Encoders

static const msgpack_object *
s_key (const msgpack_object *map, const char *key)
{
    for (uint32_t index = 0; index < map->via.map.size; index++) {
        const msgpack_object *name = &map->via.map.ptr [index].key;
        if (name->type == MSGPACK_OBJECT_STR && name->via.str.size == strlen (key)
        &&  memcmp (name->via.str.ptr, key, strlen (key)) == 0)
            return &map->via.map.ptr [index].val;
    }
    return NULL;
}

static bool
s_str_is (const msgpack_object *object, const char *text)
{
    return object && object->type == MSGPACK_OBJECT_STR && object->via.str.size == strlen (text)
        && memcmp (object->via.str.ptr, text, strlen (text)) == 0;
}

Test (member_wire, heartbeat_body)
{
    msgpack_sbuffer buffer;
    msgpack_sbuffer_init (&buffer);
    char *prefixes [] = { "orders.", "stock." };
    herald_member_pos_t owned [] = { { 3, 17, 0, 0 }, { 9, 18, 0, 0 } };
    cr_assert_eq (herald_member_encode_heartbeat (&buffer, 5, "billing", "billing-h1-1-9f1c0a2e",
                                                  prefixes, 2, owned, 2, 64, 3000, 7), 0);
    msgpack_unpacked unpacked;
    msgpack_unpacked_init (&unpacked);
    size_t offset = 0;
    cr_assert_eq (msgpack_unpack_next (&unpacked, buffer.data, buffer.size, &offset),
                  MSGPACK_UNPACK_SUCCESS);
    cr_assert_eq (offset, buffer.size);
    const msgpack_object *map = &unpacked.data;
    cr_assert_eq (map->type, MSGPACK_OBJECT_MAP);
    cr_assert_eq (map->via.map.size, 9);
    cr_assert_eq (s_key (map, "rid")->via.u64, 5);
    cr_assert (s_str_is (s_key (map, "op"), "heartbeat"));
    cr_assert (s_str_is (s_key (map, "group"), "billing"));
    cr_assert (s_str_is (s_key (map, "member"), "billing-h1-1-9f1c0a2e"));
    const msgpack_object *list = s_key (map, "prefixes");
    cr_assert_eq (list->via.array.size, 2);
    cr_assert (s_str_is (&list->via.array.ptr [1], "stock."));
    list = s_key (map, "owned");
    cr_assert_eq (list->via.array.size, 2);
    cr_assert_eq (list->via.array.ptr [1].via.array.size, 2);
    cr_assert_eq (list->via.array.ptr [1].via.array.ptr [0].via.u64, 9);
    cr_assert_eq (list->via.array.ptr [1].via.array.ptr [1].via.u64, 18);
    cr_assert_eq (s_key (map, "partitions")->via.u64, 64);
    cr_assert_eq (s_key (map, "session_ms")->via.u64, 3000);
    cr_assert_eq (s_key (map, "from")->via.u64, 7);
    msgpack_unpacked_destroy (&unpacked);

    //  A renewal: none of what makes a group
    buffer.size = 0;
    cr_assert_eq (herald_member_encode_heartbeat (&buffer, 6, "billing", "m", NULL, 0, NULL, 0,
                                                  0, 0, 0), 0);
    msgpack_unpacked_init (&unpacked);
    offset = 0;
    cr_assert_eq (msgpack_unpack_next (&unpacked, buffer.data, buffer.size, &offset),
                  MSGPACK_UNPACK_SUCCESS);
    cr_assert_eq (unpacked.data.via.map.size, 6);
    cr_assert_null (s_key (&unpacked.data, "partitions"));
    cr_assert_null (s_key (&unpacked.data, "from"));
    cr_assert_eq (s_key (&unpacked.data, "owned")->via.array.size, 0);
    msgpack_unpacked_destroy (&unpacked);
    msgpack_sbuffer_destroy (&buffer);
}

Test (member_wire, commit_and_leave_bodies)
{
    msgpack_sbuffer buffer;
    msgpack_sbuffer_init (&buffer);
    herald_member_pos_t positions [] = { { 3, 17, 9120, 9170 }, { 20, 21, 9120, 9120 } };
    cr_assert_eq (herald_member_encode_commit (&buffer, 6, "billing", "m", positions, 2), 0);
    msgpack_unpacked unpacked;
    msgpack_unpacked_init (&unpacked);
    size_t offset = 0;
    cr_assert_eq (msgpack_unpack_next (&unpacked, buffer.data, buffer.size, &offset),
                  MSGPACK_UNPACK_SUCCESS);
    cr_assert (s_str_is (s_key (&unpacked.data, "op"), "commit"));
    const msgpack_object *list = s_key (&unpacked.data, "positions");
    cr_assert_eq (list->via.array.size, 2);
    const msgpack_object *first = list->via.array.ptr [0].via.array.ptr;
    cr_assert_eq (first [0].via.u64, 3);
    cr_assert_eq (first [1].via.u64, 17);
    cr_assert_eq (first [2].via.u64, 9120);
    cr_assert_eq (first [3].via.u64, 9170);
    msgpack_unpacked_destroy (&unpacked);

    buffer.size = 0;
    cr_assert_eq (herald_member_encode_leave (&buffer, 11, "billing", "m"), 0);
    msgpack_unpacked_init (&unpacked);
    offset = 0;
    cr_assert_eq (msgpack_unpack_next (&unpacked, buffer.data, buffer.size, &offset),
                  MSGPACK_UNPACK_SUCCESS);
    cr_assert_eq (unpacked.data.via.map.size, 4);
    cr_assert (s_str_is (s_key (&unpacked.data, "op"), "leave"));
    cr_assert_eq (s_key (&unpacked.data, "rid")->via.u64, 11);
    msgpack_unpacked_destroy (&unpacked);
    msgpack_sbuffer_destroy (&buffer);
}

//  ---------------------------------------------------------------------
//  The decoder: replies built key by key, each variant breaking one thing

typedef enum {
    FINE = 0, NO_RID, RID_STR, NO_OP, OP_INT, OP_UNKNOWN, NO_PARTITIONS, PARTITIONS_ZERO,
    PARTITIONS_HUGE, SESSION_STR, NO_HEARTBEAT_MS, HEARTBEAT_ABOVE_SESSION, HEAD_STR,
    NO_ASSIGNED, ASSIGNED_MAP, ENTRY_INT, ENTRY_NO_EPOCH, ENTRY_EPOCH_NEG, ENTRY_PARTITION_OUT,
    ENTRY_DELIVERED_BELOW, ENTRY_TWICE, BREAKS
} s_break_t;

static void
s_str (msgpack_packer *pk, const char *text)
{
    msgpack_pack_str (pk, strlen (text));
    msgpack_pack_str_body (pk, text, strlen (text));
}

static void
s_entry (msgpack_packer *pk, s_break_t brk, uint64_t partition)
{
    if (brk == ENTRY_INT) {
        msgpack_pack_uint64 (pk, partition);
        return;
    }
    msgpack_pack_map (pk, brk == ENTRY_NO_EPOCH? 3: 4);
    s_str (pk, "partition");
    msgpack_pack_uint64 (pk, brk == ENTRY_PARTITION_OUT? 32: partition);
    if (brk != ENTRY_NO_EPOCH) {
        s_str (pk, "epoch");
        if (brk == ENTRY_EPOCH_NEG)
            msgpack_pack_int64 (pk, -1);
        else
            msgpack_pack_uint64 (pk, 17);
    }
    s_str (pk, "committed");
    msgpack_pack_uint64 (pk, 9050);
    s_str (pk, "delivered");
    msgpack_pack_uint64 (pk, brk == ENTRY_DELIVERED_BELOW? 9000: 9060);
}

static void
s_heartbeat_reply (msgpack_sbuffer *buffer, s_break_t brk)
{
    msgpack_packer pk;
    msgpack_packer_init (&pk, buffer, msgpack_sbuffer_write);
    size_t pairs = 9 - (brk == NO_RID) - (brk == NO_OP) - (brk == NO_PARTITIONS)
                 - (brk == NO_HEARTBEAT_MS) - (brk == NO_ASSIGNED);
    msgpack_pack_map (&pk, pairs);
    if (brk != NO_RID) {
        s_str (&pk, "rid");
        if (brk == RID_STR)
            s_str (&pk, "5");
        else
            msgpack_pack_uint64 (&pk, 5);
    }
    if (brk != NO_OP) {
        s_str (&pk, "op");
        if (brk == OP_INT)
            msgpack_pack_uint64 (&pk, 1);
        else
            s_str (&pk, brk == OP_UNKNOWN? "list": "heartbeat");
    }
    s_str (&pk, "generation");
    msgpack_pack_uint64 (&pk, 12);
    if (brk != NO_PARTITIONS) {
        s_str (&pk, "partitions");
        msgpack_pack_uint64 (&pk, brk == PARTITIONS_ZERO? 0: brk == PARTITIONS_HUGE? 5000: 32);
    }
    s_str (&pk, "session_ms");
    if (brk == SESSION_STR)
        s_str (&pk, "3000");
    else
        msgpack_pack_uint64 (&pk, 3000);
    if (brk != NO_HEARTBEAT_MS) {
        s_str (&pk, "heartbeat_ms");
        msgpack_pack_uint64 (&pk, brk == HEARTBEAT_ABOVE_SESSION? 4000: 500);
    }
    s_str (&pk, "head");
    if (brk == HEAD_STR)
        s_str (&pk, "9120");
    else
        msgpack_pack_uint64 (&pk, 9120);
    s_str (&pk, "prefixes");
    msgpack_pack_array (&pk, 1);
    s_str (&pk, "orders.");
    if (brk != NO_ASSIGNED) {
        s_str (&pk, "assigned");
        if (brk == ASSIGNED_MAP)
            msgpack_pack_map (&pk, 0);
        else {
            msgpack_pack_array (&pk, 2);
            s_entry (&pk, brk, 3);
            s_entry (&pk, FINE, brk == ENTRY_TWICE? 3: 20);
        }
    }
}

Test (member_wire, heartbeat_reply)
{
    msgpack_sbuffer buffer;
    msgpack_sbuffer_init (&buffer);
    s_heartbeat_reply (&buffer, FINE);
    herald_member_reply_t reply;
    char why [256] = "";
    cr_assert_eq (herald_member_decode_reply (&reply, buffer.data, buffer.size, why,
                                              sizeof why), 0, "%s", why);
    cr_assert_eq (reply.op, HERALD_MEMBER_OP_HEARTBEAT);
    cr_assert_eq (reply.rid, 5);
    cr_assert_eq (reply.generation, 12);
    cr_assert_eq (reply.partitions, 32);
    cr_assert_eq (reply.session_ms, 3000);
    cr_assert_eq (reply.heartbeat_ms, 500);
    cr_assert_eq (reply.head, 9120);
    cr_assert_eq (reply.assigned_count, 2);
    cr_assert_eq (reply.assigned [0].partition, 3);
    cr_assert_eq (reply.assigned [0].epoch, 17);
    cr_assert_eq (reply.assigned [0].committed, 9050);
    cr_assert_eq (reply.assigned [0].delivered, 9060);
    cr_assert_eq (reply.assigned [1].partition, 20);
    herald_member_reply_fini (&reply);
    msgpack_sbuffer_destroy (&buffer);
}

Test (member_wire, bad_heartbeat_replies_refused)
{
    for (int brk = NO_RID; brk < BREAKS; brk++) {
        msgpack_sbuffer buffer;
        msgpack_sbuffer_init (&buffer);
        s_heartbeat_reply (&buffer, (s_break_t) brk);
        herald_member_reply_t reply;
        char why [256] = "";
        cr_assert_eq (herald_member_decode_reply (&reply, buffer.data, buffer.size, why,
                                                  sizeof why), -1, "variant %d accepted", brk);
        cr_assert (strlen (why) > 10, "variant %d: no reason", brk);
        cr_assert (strstr (why, "GROUP"), "variant %d: %s", brk, why);
        cr_assert_null (reply.assigned);
        //  Every cut of the good reply is refused too (truncated bytes)
        msgpack_sbuffer good;
        msgpack_sbuffer_init (&good);
        s_heartbeat_reply (&good, FINE);
        size_t cut = (size_t) brk * good.size / BREAKS;
        cr_assert_eq (herald_member_decode_reply (&reply, good.data, cut, why, sizeof why), -1,
                      "cut at %zu accepted", cut);
        msgpack_sbuffer_destroy (&good);
        msgpack_sbuffer_destroy (&buffer);
    }
}

static int
s_commit_reply (const char *variant, char *why, size_t size, herald_member_reply_t *reply)
{
    msgpack_sbuffer buffer;
    msgpack_sbuffer_init (&buffer);
    msgpack_packer pk;
    msgpack_packer_init (&pk, &buffer, msgpack_sbuffer_write);
    bool no_fenced = strcmp (variant, "no_fenced") == 0;
    msgpack_pack_map (&pk, no_fenced? 2: 3);
    s_str (&pk, "rid");
    msgpack_pack_uint64 (&pk, 6);
    s_str (&pk, "op");
    s_str (&pk, "commit");
    if (!no_fenced) {
        s_str (&pk, "fenced");
        if (strcmp (variant, "fenced_str") == 0)
            s_str (&pk, "3");
        else {
            bool bad = strcmp (variant, "fenced_entry") == 0;
            msgpack_pack_array (&pk, 2);
            msgpack_pack_uint64 (&pk, 3);
            if (bad)
                msgpack_pack_nil (&pk);
            else
                msgpack_pack_uint64 (&pk, 9);
        }
    }
    if (strcmp (variant, "trailing") == 0)
        msgpack_pack_nil (&pk);
    int rc = herald_member_decode_reply (reply, buffer.data, buffer.size, why, size);
    msgpack_sbuffer_destroy (&buffer);
    return rc;
}

Test (member_wire, commit_reply)
{
    herald_member_reply_t reply;
    char why [256] = "";
    cr_assert_eq (s_commit_reply ("fine", why, sizeof why, &reply), 0, "%s", why);
    cr_assert_eq (reply.op, HERALD_MEMBER_OP_COMMIT);
    cr_assert_eq (reply.fenced_count, 2);
    cr_assert_eq (reply.fenced [0], 3);
    cr_assert_eq (reply.fenced [1], 9);
    herald_member_reply_fini (&reply);
    const char *bad [] = { "no_fenced", "fenced_str", "fenced_entry", "trailing" };
    for (size_t index = 0; index < 4; index++) {
        why [0] = 0;
        cr_assert_eq (s_commit_reply (bad [index], why, sizeof why, &reply), -1, "%s accepted",
                      bad [index]);
        cr_assert (strstr (why, "GROUP"), "%s: %s", bad [index], why);
        cr_assert_null (reply.fenced);
    }
}

Test (member_wire, not_a_map)
{
    herald_member_reply_t reply;
    char why [256] = "";
    const char garbage [] = "\xc1\xc1";
    cr_assert_eq (herald_member_decode_reply (&reply, garbage, 2, why, sizeof why), -1);
    cr_assert (strstr (why, "not MessagePack"), "%s", why);
    const char array [] = "\x91\x01";           //  [1]
    cr_assert_eq (herald_member_decode_reply (&reply, array, 2, why, sizeof why), -1);
    cr_assert (strstr (why, "not a map"), "%s", why);
    cr_assert_eq (herald_member_decode_reply (&reply, "", 0, why, sizeof why), -1);
    //  A leave reply: rid and op are all it needs
    const char leave [] = "\x82\xa3rid\x0b\xa2op\xa5leave";
    cr_assert_eq (herald_member_decode_reply (&reply, leave, sizeof leave - 1, why,
                                              sizeof why), 0, "%s", why);
    cr_assert_eq (reply.op, HERALD_MEMBER_OP_LEAVE);
    cr_assert_eq (reply.rid, 11);
    herald_member_reply_fini (&reply);
}
