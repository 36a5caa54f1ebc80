/*  =========================================================================
    groupops - consumer groups' ops (herald_store_groups.h) for tests

    Packs the ops the store applies, reads their results, and compares
    group records.  Criterion only; header-only (static inline).
    =========================================================================
*/

#ifndef HERALD_GROUPOPS_H_INCLUDED
#define HERALD_GROUPOPS_H_INCLUDED

#include <criterion/criterion.h>
#include <msgpack.h>
#include <string.h>
#include "herald_store_groups.h"

static inline void
go_str (msgpack_packer *pk, const char *str)
{
    msgpack_pack_str (pk, strlen (str));
    msgpack_pack_str_body (pk, str, strlen (str));
}

static inline void
go_head (msgpack_sbuffer *buffer, msgpack_packer *pk, size_t keys, const char *op,
         const char *group)
{
    msgpack_sbuffer_init (buffer);
    msgpack_packer_init (pk, buffer, msgpack_sbuffer_write);
    msgpack_pack_map (pk, keys);
    go_str (pk, "op");
    go_str (pk, op);
    go_str (pk, "group");
    go_str (pk, group);
}

static inline void
go_create (msgpack_sbuffer *buffer, const char *group, const char *const *prefixes,
           size_t prefix_count, uint64_t partitions, uint64_t from, uint64_t ts)
{
    msgpack_packer pk;
    go_head (buffer, &pk, 7, "create", group);
    go_str (&pk, "prefixes");
    msgpack_pack_array (&pk, prefix_count);
    for (size_t i = 0; i < prefix_count; i++)
        go_str (&pk, prefixes [i]);
    go_str (&pk, "partitions");
    msgpack_pack_uint64 (&pk, partitions);
    go_str (&pk, "session_ms");
    msgpack_pack_uint64 (&pk, 3000);
    go_str (&pk, "from");
    msgpack_pack_uint64 (&pk, from);
    go_str (&pk, "ts");
    msgpack_pack_uint64 (&pk, ts);
}

static inline void
go_grant (msgpack_sbuffer *buffer, const char *group, const char *member,
          const uint64_t *partitions, size_t count)
{
    msgpack_packer pk;
    go_head (buffer, &pk, 4, "grant", group);
    go_str (&pk, "member");
    go_str (&pk, member);
    go_str (&pk, "partitions");
    msgpack_pack_array (&pk, count);
    for (size_t i = 0; i < count; i++)
        msgpack_pack_uint64 (&pk, partitions [i]);
}

//  positions: count rows of [partition, epoch, committed, delivered]
static inline void
go_commit (msgpack_sbuffer *buffer, const char *group, const char *member,
           const uint64_t (*positions) [4], size_t count)
{
    msgpack_packer pk;
    go_head (buffer, &pk, 4, "commit", group);
    go_str (&pk, "member");
    go_str (&pk, member);
    go_str (&pk, "positions");
    msgpack_pack_array (&pk, count);
    for (size_t i = 0; i < count; i++) {
        msgpack_pack_array (&pk, 4);
        for (int j = 0; j < 4; j++)
            msgpack_pack_uint64 (&pk, positions [i][j]);
    }
}

static inline void
go_reset (msgpack_sbuffer *buffer, const char *group, uint64_t to)
{
    msgpack_packer pk;
    go_head (buffer, &pk, 3, "reset", group);
    go_str (&pk, "to");
    msgpack_pack_uint64 (&pk, to);
}

static inline void
go_delete (msgpack_sbuffer *buffer, const char *group)
{
    msgpack_packer pk;
    go_head (buffer, &pk, 2, "delete", group);
}

//  A result, unpacked (zone owned: go_result_fini)
typedef struct {
    msgpack_zone zone;
    msgpack_object root;
} go_result_t;

static inline void
go_result_init (go_result_t *result, const uint8_t *bytes, size_t len)
{
    cr_assert_not_null (bytes, "the op has no result");
    msgpack_zone_init (&result->zone, 1024);
    size_t offset = 0;
    cr_assert_eq (msgpack_unpack ((const char *) bytes, len, &offset, &result->zone,
                                  &result->root), MSGPACK_UNPACK_SUCCESS);
    cr_assert_eq (offset, len);
    cr_assert_eq (result->root.type, MSGPACK_OBJECT_MAP);
}

static inline void
go_result_fini (go_result_t *result)
{
    msgpack_zone_destroy (&result->zone);
}

static inline const msgpack_object *
go_get (const go_result_t *result, const char *key)
{
    for (uint32_t i = 0; i < result->root.via.map.size; i++) {
        const msgpack_object_kv *kv = &result->root.via.map.ptr [i];
        if (kv->key.type == MSGPACK_OBJECT_STR && kv->key.via.str.size == strlen (key)
        &&  memcmp (kv->key.via.str.ptr, key, strlen (key)) == 0)
            return &kv->val;
    }
    return NULL;
}

static inline bool
go_ok (const go_result_t *result)
{
    const msgpack_object *ok = go_get (result, "ok");
    cr_assert_not_null (ok);
    cr_assert_eq (ok->type, MSGPACK_OBJECT_BOOLEAN);
    return ok->via.boolean;
}

//  Two records equal, field by field
static inline void
go_assert_same (const herald_group_record_t *a, const herald_group_record_t *b)
{
    cr_assert_str_eq (a->name, b->name);
    cr_assert_eq (a->prefix_count, b->prefix_count);
    for (size_t i = 0; i < a->prefix_count; i++)
        cr_assert_str_eq (a->prefixes [i], b->prefixes [i]);
    cr_assert_eq (a->partitions, b->partitions);
    cr_assert_eq (a->session_ms, b->session_ms);
    cr_assert_eq (a->created, b->created);
    cr_assert_eq (a->epoch, b->epoch, "%s: epoch %" PRIu64 " and %" PRIu64, a->name,
                  a->epoch, b->epoch);
    for (uint32_t p = 0; p < a->partitions; p++) {
        cr_assert_eq (a->positions [p].committed, b->positions [p].committed,
                      "%s partition %u", a->name, p);
        cr_assert_eq (a->positions [p].delivered, b->positions [p].delivered);
        cr_assert_eq (a->positions [p].epoch, b->positions [p].epoch);
    }
}

#endif
