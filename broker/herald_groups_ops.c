/*  =========================================================================
    herald_groups_ops - the coordinator's ops through the group commit
    (create, grant, commit, reset, delete: herald_store_groups.h) and
    what happens once each is applied; the GROUP replies

    An op carries the serving term it was sent in (incarnation): one that
    comes back after leadership changed touches no memory (it was all
    forgotten) and only answers its client.
    =========================================================================
*/

#include <inttypes.h>
#include "herald_groups_priv.h"
#include "herald_log.h"

//  ---------------------------------------------------------------------
//  Ops

herald_groups_opctx_t *
herald_groups_op_new (herald_groups_t *self, herald_groups_kind_t kind, const char *group,
                      const char *member, zframe_t *identity, uint64_t rid)
{
    herald_groups_opctx_t *op
        = (herald_groups_opctx_t *) zmalloc (sizeof (herald_groups_opctx_t));
    op->self = self;
    op->kind = kind;
    op->incarnation = self->incarnation;
    op->group = strdup (group);
    op->member = member? strdup (member): NULL;
    op->identity = identity? zframe_dup (identity): NULL;
    op->rid = rid;
    return op;
}

static void
s_op_free (herald_groups_opctx_t *op)
{
    free (op->group);
    free (op->member);
    free (op->parts);
    zframe_destroy (&op->identity);
    free (op);
}

static void s_op_done (void *arg, herald_err rc, const uint8_t *result, size_t result_len,
                       const herald_error_t *err);

//  Send the op packed in self->buffer.
void
herald_groups_op_send (herald_groups_t *self, herald_groups_opctx_t *op)
{
    self->ops_inflight++;
    herald_commit_op (self->commit, (const uint8_t *) self->buffer.data, self->buffer.size,
                      s_op_done, op);
}

void
herald_groups_pack_key (msgpack_packer *pk, const char *key)
{
    msgpack_pack_str_with_body (pk, key, strlen (key));
}

void
herald_groups_pack_str (msgpack_packer *pk, const char *key, const char *value)
{
    herald_groups_pack_key (pk, key);
    if (value)
        msgpack_pack_str_with_body (pk, value, strlen (value));
    else
        msgpack_pack_nil (pk);
}

void
herald_groups_pack_uint (msgpack_packer *pk, const char *key, uint64_t value)
{
    herald_groups_pack_key (pk, key);
    msgpack_pack_uint64 (pk, value);
}

void
herald_groups_pack_prefixes (msgpack_packer *pk, char **prefixes, size_t count)
{
    herald_groups_pack_key (pk, "prefixes");
    msgpack_pack_array (pk, count);
    for (size_t index = 0; index < count; index++)
        msgpack_pack_str_with_body (pk, prefixes [index], strlen (prefixes [index]));
}

void
herald_groups_packer (herald_groups_t *self, msgpack_packer *pk)
{
    msgpack_sbuffer_clear (&self->buffer);
    msgpack_packer_init (pk, &self->buffer, msgpack_sbuffer_write);
}

//  A result map: ok, error, and the value of one key (NULL when absent).
typedef struct {
    bool ok;
    char error [256];
    const msgpack_object *value;
    msgpack_unpacked unpacked;
} s_result_t;

static void
s_result (const uint8_t *bytes, size_t len, const char *key, s_result_t *result)
{
    result->ok = false;
    result->value = NULL;
    snprintf (result->error, sizeof (result->error), "the op's result does not decode");
    msgpack_unpacked_init (&result->unpacked);
    size_t offset = 0;
    if (!bytes || msgpack_unpack_next (&result->unpacked, (const char *) bytes, len, &offset)
            != MSGPACK_UNPACK_SUCCESS
    ||  result->unpacked.data.type != MSGPACK_OBJECT_MAP)
        return;
    *result->error = 0;
    const msgpack_object_map *map = &result->unpacked.data.via.map;
    for (uint32_t at = 0; at < map->size; at++) {
        const msgpack_object *name = &map->ptr [at].key, *value = &map->ptr [at].val;
        if (name->type != MSGPACK_OBJECT_STR)
            continue;
        size_t size = name->via.str.size;
        if (size == 2 && memcmp (name->via.str.ptr, "ok", 2) == 0)
            result->ok = value->type == MSGPACK_OBJECT_BOOLEAN && value->via.boolean;
        else
        if (size == 5 && memcmp (name->via.str.ptr, "error", 5) == 0
        &&  value->type == MSGPACK_OBJECT_STR)
            snprintf (result->error, sizeof (result->error), "%.*s", (int) value->via.str.size,
                      value->via.str.ptr);
        else
        if (key && size == strlen (key) && memcmp (name->via.str.ptr, key, size) == 0)
            result->value = value;
    }
    if (!result->ok && !*result->error)
        snprintf (result->error, sizeof (result->error), "refused by the store");
}

//  Answer the heartbeats that wait and whose member has no grant in flight.
void
herald_groups_flush_waiters (herald_groups_t *self, herald_groups_group_t *group)
{
    if (!group->created)
        return;
    //  Those ready are taken off first: a reply does not touch the list
    zlistx_t *ready = zlistx_new ();
    herald_groups_waiter_t *waiter = (herald_groups_waiter_t *) zlistx_first (group->waiters);
    while (waiter) {
        herald_groups_member_t *member = herald_groups_member (group, waiter->member);
        bool granting = false;
        for (uint32_t index = 0; member && index < group->partitions && !granting; index++)
            granting = group->parts [index].owner == member
                    && group->parts [index].state == HERALD_GROUPS_GRANTING;
        if (!granting) {
            zlistx_detach_cur (group->waiters);
            zlistx_add_end (ready, waiter);
            waiter = (herald_groups_waiter_t *) zlistx_first (group->waiters);
        }
        else
            waiter = (herald_groups_waiter_t *) zlistx_next (group->waiters);
    }
    while ((waiter = (herald_groups_waiter_t *) zlistx_detach (ready, NULL))) {
        herald_groups_reply_heartbeat (self, group, waiter->identity, waiter->rid,
                                       waiter->member);
        herald_groups_waiter_free (&waiter);
    }
    zlistx_destroy (&ready);
}

static void
s_grant_done (herald_groups_t *self, herald_groups_opctx_t *op, herald_groups_group_t *group,
              herald_err rc,
              const uint8_t *bytes, size_t len)
{
    s_result_t result;
    s_result (rc == HERALD_OK? bytes: NULL, len, "assigned", &result);
    for (size_t index = 0; index < op->part_count; index++) {
        herald_groups_part_t *part = &group->parts [op->parts [index]];
        if (part->state != HERALD_GROUPS_GRANTING)
            continue;
        if (rc == HERALD_OK && result.ok && part->owner) {
            part->state = HERALD_GROUPS_HELD;
            part->told = false;
            self->counts.grants++;
        }
        else
            *part = (herald_groups_part_t) { 0 };   //  not granted (or its member went): free
        //  A grant applied to a member gone: the partition is free at its
        //  new epoch (nobody was told of it)
        if (rc == HERALD_OK && result.ok && !part->owner)
            *part = (herald_groups_part_t) { 0 };
    }
    if (rc == HERALD_OK && !result.ok)
        herald_log ("warn", "group %s: a grant was refused: %s", group->name, result.error);
    msgpack_unpacked_destroy (&result.unpacked);
    group->dirty = true;
    herald_groups_flush_waiters (self, group);
}

static void
s_create_done (herald_groups_t *self, herald_groups_opctx_t *op, herald_groups_group_t *group,
               herald_err rc,
               const uint8_t *bytes, size_t len, const herald_error_t *err)
{
    (void) op;
    s_result_t result;
    s_result (rc == HERALD_OK? bytes: NULL, len, "created", &result);
    bool created = rc == HERALD_OK && result.ok;
    //  Made by another (its record may differ from the request's): the
    //  store's record is the group
    herald_group_record_t record = { 0 };
    herald_error_t get_err = { 0 };
    if (created && herald_store_group_get (self->store, group->name, &record, &get_err)
        != HERALD_OK) {
        created = false;
        snprintf (result.error, sizeof (result.error), "%.200s", get_err.message);
        rc = HERALD_ERR_IO;
    }
    if (!created) {
        herald_groups_waiter_t *waiter;
        while ((waiter = (herald_groups_waiter_t *) zlistx_detach (group->waiters, NULL))) {
            if (rc == HERALD_OK)
                herald_groups_refuse (self, waiter->identity, waiter->rid,
                                      HERALD_ERR_BAD_REQUEST, "%s", result.error);
            else
                herald_groups_op_failed (self, waiter->identity, waiter->rid, rc, err);
            herald_groups_waiter_free (&waiter);
        }
        zhashx_delete (self->groups, group->name);
    }
    else {
        bool same = record.partitions == group->partitions
                 && herald_groups_same_prefixes (record.prefixes, record.prefix_count,
                                                 group->prefixes, group->prefix_count);
        if (!same) {
            char text [512];
            herald_groups_prefixes_text (record.prefixes, record.prefix_count, text,
                                         sizeof (text));
            herald_groups_waiter_t *waiter;
            while ((waiter = (herald_groups_waiter_t *) zlistx_detach (group->waiters, NULL))) {
                herald_groups_refuse (self, waiter->identity, waiter->rid,
                                      HERALD_ERR_BAD_REQUEST,
                                      "prefixes: group '%s' has %u partitions and prefixes %s",
                                      group->name, record.partitions, text);
                herald_groups_waiter_free (&waiter);
            }
            zhashx_delete (self->groups, group->name);
        }
        else {
            group->created = true;
            group->session_ms = record.session_ms;
            group->graced = true;
            for (uint32_t index = 0; index < group->partitions; index++)
                if ((group->parts [index].unknown = record.positions [index].epoch > 0
                                                 && !group->parts [index].owner))
                    group->graced = false;
            group->dirty = true;
        }
    }
    herald_group_record_fini (&record);
    msgpack_unpacked_destroy (&result.unpacked);
}

static void
s_commit_done (herald_groups_t *self, herald_groups_opctx_t *op, const uint8_t *bytes,
               size_t len)
{
    s_result_t result;
    s_result (bytes, len, "fenced", &result);
    if (!result.ok) {
        herald_groups_refuse (self, op->identity, op->rid, HERALD_ERR_BAD_REQUEST, "%s",
                              result.error);
        msgpack_unpacked_destroy (&result.unpacked);
        return;
    }
    self->counts.commits++;
    msgpack_packer pk;
    herald_groups_packer (self, &pk);
    msgpack_pack_map (&pk, 5);
    herald_groups_pack_uint (&pk, "rid", op->rid);
    herald_groups_pack_str (&pk, "op", "commit");
    herald_groups_pack_str (&pk, "group", op->group);
    herald_groups_pack_str (&pk, "member", op->member);
    herald_groups_pack_key (&pk, "fenced");
    const msgpack_object *fenced = result.value;
    size_t count = fenced && fenced->type == MSGPACK_OBJECT_ARRAY? fenced->via.array.size: 0;
    msgpack_pack_array (&pk, count);
    for (size_t index = 0; index < count; index++)
        msgpack_pack_uint64 (&pk, fenced->via.array.ptr [index].via.u64);
    self->counts.fenced += count;
    msgpack_unpacked_destroy (&result.unpacked);
    if (herald_reply_begin (self->reply->router, op->identity) == 0) {
        herald_reply_frame (self->reply->router, "GROUP", 5, true);
        herald_reply_frame (self->reply->router, self->buffer.data, self->buffer.size, false);
    }
    else
        herald_reply_dropped (self->reply, op->identity, "GROUP");
}


static void
s_reset_done (herald_groups_t *self, herald_groups_opctx_t *op, herald_groups_group_t *group,
              const uint8_t *bytes,
              size_t len)
{
    s_result_t result;
    s_result (bytes, len, NULL, &result);
    if (!result.ok) {
        herald_groups_refuse (self, op->identity, op->rid, HERALD_ERR_BAD_REQUEST, "%s",
                              result.error);
        msgpack_unpacked_destroy (&result.unpacked);
        return;
    }
    msgpack_unpacked_destroy (&result.unpacked);
    //  Every partition revoked: each owner lets go, then it is granted
    //  again from the new position under a new epoch
    uint64_t fenced = 0;
    zlistx_t *owners = zlistx_new ();
    for (uint32_t index = 0; group && index < group->partitions; index++) {
        herald_groups_part_t *part = &group->parts [index];
        if (!part->owner)
            continue;
        part->revoking = true;
        if (!zlistx_find (owners, part->owner)) {
            zlistx_add_end (owners, part->owner);
            fenced++;
        }
    }
    zlistx_destroy (&owners);
    if (group)
        group->dirty = true;
    msgpack_packer pk;
    herald_groups_packer (self, &pk);
    msgpack_pack_map (&pk, 5);
    herald_groups_pack_uint (&pk, "rid", op->rid);
    herald_groups_pack_str (&pk, "op", "reset");
    herald_groups_pack_str (&pk, "group", op->group);
    herald_groups_pack_uint (&pk, "to", op->to);
    herald_groups_pack_uint (&pk, "fenced", fenced);
    herald_groups_send (self, op->identity);
}

static void
s_delete_done (herald_groups_t *self, herald_groups_opctx_t *op, const uint8_t *bytes,
               size_t len)
{
    s_result_t result;
    s_result (bytes, len, NULL, &result);
    if (!result.ok) {
        herald_groups_refuse (self, op->identity, op->rid, HERALD_ERR_BAD_REQUEST, "%s",
                              result.error);
        msgpack_unpacked_destroy (&result.unpacked);
        return;
    }
    msgpack_unpacked_destroy (&result.unpacked);
    if (op->incarnation == self->incarnation)
        zhashx_delete (self->groups, op->group);
    msgpack_packer pk;
    herald_groups_packer (self, &pk);
    msgpack_pack_map (&pk, 3);
    herald_groups_pack_uint (&pk, "rid", op->rid);
    herald_groups_pack_str (&pk, "op", "delete");
    herald_groups_pack_str (&pk, "group", op->group);
    herald_groups_send (self, op->identity);
}

static void
s_op_done (void *arg, herald_err rc, const uint8_t *result, size_t result_len,
           const herald_error_t *err)
{
    herald_groups_opctx_t *op = (herald_groups_opctx_t *) arg;
    herald_groups_t *self = op->self;
    self->ops_inflight--;
    if (op->kind == HERALD_GROUPS_OP_CREATE || op->kind == HERALD_GROUPS_OP_DELETE)
        self->stored_known = false;     //  the store's groups may have changed
    //  Sent in another serving term: what was kept in memory is gone
    herald_groups_group_t *group = op->incarnation == self->incarnation
                     ? (herald_groups_group_t *) zhashx_lookup (self->groups, op->group): NULL;
    if (op->kind == HERALD_GROUPS_OP_DELETE && group)
        group->deleting = false;        //  (deleted below when it was)
    if (op->kind == HERALD_GROUPS_OP_GRANT) {
        if (group)
            s_grant_done (self, op, group, rc, result, result_len);
    }
    else
    if (op->kind == HERALD_GROUPS_OP_CREATE) {
        if (group && !group->created)
            s_create_done (self, op, group, rc, result, result_len, err);
    }
    else
    if (rc != HERALD_OK)
        herald_groups_op_failed (self, op->identity, op->rid, rc, err);
    else
    if (op->kind == HERALD_GROUPS_OP_COMMIT)
        s_commit_done (self, op, result, result_len);
    else
    if (op->kind == HERALD_GROUPS_OP_RESET)
        s_reset_done (self, op, group, result, result_len);
    else
        s_delete_done (self, op, result, result_len);
    s_op_free (op);
}

//  ---------------------------------------------------------------------
//  Replies

void
herald_groups_send (herald_groups_t *self, zframe_t *identity)
{
    if (herald_reply_begin (self->reply->router, identity) == 0) {
        herald_reply_frame (self->reply->router, "GROUP", 5, true);
        herald_reply_frame (self->reply->router, self->buffer.data, self->buffer.size, false);
    }
    else
        herald_reply_dropped (self->reply, identity, "GROUP");
}

void
herald_groups_reply_heartbeat (herald_groups_t *self, herald_groups_group_t *group,
                               zframe_t *identity, uint64_t rid, const char *name)
{
    //  A reply renews the member's lease: only while this node leads now
    //  (one that waited for a grant may find leadership lost meanwhile)
    if (!herald_groups_serving (self)) {
        herald_groups_not_leader (self, identity, rid, false);
        return;
    }
    herald_group_record_t record = { 0 };
    herald_error_t err = { 0 };
    if (herald_store_group_get (self->store, group->name, &record, &err) != HERALD_OK) {
        herald_groups_refuse (self, identity, rid, HERALD_ERR_INTERNAL,
                              "group '%s' cannot be read: %s", group->name, err.message);
        return;
    }
    herald_groups_member_t *member = herald_groups_member (group, name);
    size_t assigned = 0;
    for (uint32_t index = 0; member && index < group->partitions; index++) {
        herald_groups_part_t *part = &group->parts [index];
        assigned += part->owner == member && part->state == HERALD_GROUPS_HELD
                 && !part->revoking;
    }
    msgpack_packer pk;
    herald_groups_packer (self, &pk);
    msgpack_pack_map (&pk, 11);
    herald_groups_pack_uint (&pk, "rid", rid);
    herald_groups_pack_str (&pk, "op", "heartbeat");
    herald_groups_pack_str (&pk, "group", group->name);
    herald_groups_pack_str (&pk, "member", name);
    herald_groups_pack_uint (&pk, "generation", group->generation);
    herald_groups_pack_uint (&pk, "partitions", group->partitions);
    herald_groups_pack_prefixes (&pk, record.prefixes, record.prefix_count);
    herald_groups_pack_uint (&pk, "session_ms", record.session_ms);
    herald_groups_pack_uint (&pk, "heartbeat_ms", record.session_ms / 6);
    herald_groups_pack_uint (&pk, "head", herald_store_head (self->store));
    herald_groups_pack_key (&pk, "assigned");
    msgpack_pack_array (&pk, assigned);
    for (uint32_t index = 0; member && index < group->partitions; index++) {
        herald_groups_part_t *part = &group->parts [index];
        if (part->owner != member || part->state != HERALD_GROUPS_HELD || part->revoking)
            continue;
        part->told = true;
        msgpack_pack_map (&pk, 4);
        herald_groups_pack_uint (&pk, "partition", index);
        herald_groups_pack_uint (&pk, "epoch", record.positions [index].epoch);
        herald_groups_pack_uint (&pk, "committed", record.positions [index].committed);
        herald_groups_pack_uint (&pk, "delivered", record.positions [index].delivered);
    }
    herald_group_record_fini (&record);
    herald_groups_send (self, identity);
}
