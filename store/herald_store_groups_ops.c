/*  =========================================================================
    herald_store_groups_ops - consumer groups' ops, applied by the store

    DESIGN

    An op is decided from the store as the append call sees it.  Every
    group an op of the call reads is loaded once into the call's overlay
    (herald_groups_call_t) and changed there, and its changed keys go
    into the call's WriteBatch at once; a later op of the same call reads
    the overlay, so ops apply "as if one by one", and a failed call leaves
    nothing (the overlay is dropped with the WriteBatch).  Nothing here
    reads a clock or a random source: the result and the bytes written
    depend on the store and the op alone, as herald_store_apply promises.
    The keys are herald_store_groups.c's.
    =========================================================================
*/

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include "herald_store_priv.h"
#include "herald_store_groups.h"

//  One group as the call sees it
typedef struct {
    char name [HERALD_GROUP_NAME_MAX + 1];
    bool exists;
    herald_group_record_t record;
} s_loaded_t;

struct _herald_groups_call_t {
    s_loaded_t *groups;
    size_t count;
    size_t capacity;
};

//  ---------------------------------------------------------------------
//  The call's overlay

void
herald_store_groups_call_reset (herald_store_t *self)
{
    herald_groups_call_t *call = self->groups_call;
    if (!call)
        return;
    for (size_t i = 0; i < call->count; i++)
        herald_group_record_fini (&call->groups [i].record);
    call->count = 0;
}

void
herald_store_groups_free (herald_store_t *self)
{
    herald_store_groups_call_reset (self);
    if (self->groups_call) {
        free (self->groups_call->groups);
        free (self->groups_call);
        self->groups_call = NULL;
    }
}

//  The group as the call sees it (loaded from the store the first time).
//  NULL with err filled when it cannot be read.
static s_loaded_t *
s_load (herald_store_t *self, const char *name, herald_error_t *err)
{
    if (!self->groups_call) {
        self->groups_call = calloc (1, sizeof (herald_groups_call_t));
        if (!self->groups_call) {
            herald_error_set (err, HERALD_ERR_NOMEM, "", "out of memory");
            return NULL;
        }
    }
    herald_groups_call_t *call = self->groups_call;
    for (size_t i = 0; i < call->count; i++)
        if (strcmp (call->groups [i].name, name) == 0)
            return &call->groups [i];
    if (call->count == call->capacity) {
        size_t capacity = call->capacity? call->capacity * 2: 8;
        s_loaded_t *grown = realloc (call->groups, capacity * sizeof (s_loaded_t));
        if (!grown) {
            herald_error_set (err, HERALD_ERR_NOMEM, "", "out of memory");
            return NULL;
        }
        call->groups = grown;
        call->capacity = capacity;
    }
    s_loaded_t *loaded = &call->groups [call->count];
    memset (loaded, 0, sizeof (*loaded));
    snprintf (loaded->name, sizeof (loaded->name), "%s", name);
    herald_err rc = herald_store_group_read (self, name, &loaded->record, err);
    if (rc != HERALD_OK && rc != HERALD_ERR_NOT_FOUND)
        return NULL;
    loaded->exists = rc == HERALD_OK;
    call->count++;
    return loaded;
}

//  ---------------------------------------------------------------------
//  Results

typedef struct {
    msgpack_sbuffer buffer;
    msgpack_packer pk;
} s_result_t;

static void
s_result_init (s_result_t *result, size_t keys, bool ok)
{
    msgpack_sbuffer_init (&result->buffer);
    msgpack_packer_init (&result->pk, &result->buffer, msgpack_sbuffer_write);
    msgpack_pack_map (&result->pk, keys + 1);
    herald_group_pack_str (&result->pk, "ok");
    if (ok)
        msgpack_pack_true (&result->pk);
    else
        msgpack_pack_false (&result->pk);
}

//  Hand the result to batch; -1 when out of memory
static int
s_result_set (s_result_t *result, herald_batch_t *batch)
{
    if (!result->buffer.data) {
        msgpack_sbuffer_destroy (&result->buffer);
        return -1;
    }
    batch->op_result = (uint8_t *) result->buffer.data;
    batch->op_result_len = result->buffer.size;
    return 0;
}

static int
s_refuse (herald_batch_t *batch, const char *format, ...)
    __attribute__ ((format (printf, 2, 3)));

static int
s_refuse (herald_batch_t *batch, const char *format, ...)
{
    char message [256];
    va_list args;
    va_start (args, format);
    vsnprintf (message, sizeof (message), format, args);
    va_end (args);
    s_result_t result;
    s_result_init (&result, 1, false);
    herald_group_pack_str (&result.pk, "error");
    herald_group_pack_str (&result.pk, message);
    return s_result_set (&result, batch);
}

//  ---------------------------------------------------------------------
//  The ops


static bool
s_is (const msgpack_object *value, const char *str)
{
    return value && value->type == MSGPACK_OBJECT_STR && value->via.str.size == strlen (str)
        && memcmp (value->via.str.ptr, str, value->via.str.size) == 0;
}

//  Make the group, or find it as it is.  -1: the call fails (out of memory)
static int
s_create (herald_store_t *self, herald_batch_t *batch, const msgpack_object *op,
          s_loaded_t *group)
{
    uint64_t partitions, session_ms, from, ts;
    if (!herald_store_map_uint (op, "partitions", &partitions) || partitions < 1
    ||  partitions > HERALD_GROUP_PARTITIONS_MAX)
        return s_refuse (batch, "create: partitions must be 1 to %d",
                         HERALD_GROUP_PARTITIONS_MAX);
    if (!herald_store_map_uint (op, "session_ms", &session_ms) || session_ms > UINT32_MAX)
        return s_refuse (batch, "create: session_ms must be a uint32");
    if (!herald_store_map_uint (op, "from", &from) || from < 1)
        return s_refuse (batch, "create: from must be a uint >= 1");
    if (!herald_store_map_uint (op, "ts", &ts))
        return s_refuse (batch, "create: ts must be a uint");
    herald_group_record_t wanted = { 0 };
    const msgpack_object *prefixes = herald_store_map_get (op, "prefixes");
    msgpack_object none = { .type = MSGPACK_OBJECT_ARRAY };
    if (!herald_group_prefixes_from (prefixes? prefixes: &none, &wanted)) {
        herald_group_record_fini (&wanted);
        return s_refuse (batch, "create: prefixes must be an array of topic prefixes");
    }
    if (group->exists) {
        herald_group_record_t *record = &group->record;
        bool same = record->partitions == partitions
                 && record->prefix_count == wanted.prefix_count;
        for (size_t i = 0; same && i < wanted.prefix_count; i++)
            same = strcmp (record->prefixes [i], wanted.prefixes [i]) == 0;
        herald_group_record_fini (&wanted);
        if (!same) {
            char list [200] = "";
            size_t used = 0;
            for (size_t i = 0; i < record->prefix_count && used < sizeof (list); i++)
                used += (size_t) snprintf (list + used, sizeof (list) - used, "%s\"%s\"",
                                           i? ", ": "", record->prefixes [i]);
            return s_refuse (batch, "group %s has prefixes [%s] and %" PRIu32 " partitions",
                             record->name, list, record->partitions);
        }
        s_result_t result;
        s_result_init (&result, 1, true);
        herald_group_pack_str (&result.pk, "created");
        msgpack_pack_false (&result.pk);
        return s_result_set (&result, batch);
    }
    wanted.name = strdup (group->name);
    wanted.partitions = (uint32_t) partitions;
    wanted.session_ms = (uint32_t) session_ms;
    wanted.created = ts;
    wanted.epoch = 0;
    wanted.positions = calloc (partitions, sizeof (herald_group_position_t));
    if (!wanted.name || !wanted.positions) {
        herald_group_record_fini (&wanted);
        return -1;
    }
    for (size_t p = 0; p < partitions; p++)
        wanted.positions [p].committed = wanted.positions [p].delivered = from - 1;
    if (herald_store_group_put_config (self, self->batch, &wanted) != 0) {
        herald_group_record_fini (&wanted);
        return -1;
    }
    for (uint32_t p = 0; p < wanted.partitions; p++)
        herald_store_group_put_position (self, self->batch, &wanted, p);
    herald_group_record_fini (&group->record);
    group->record = wanted;
    group->exists = true;
    self->groups_staged = true;
    s_result_t result;
    s_result_init (&result, 1, true);
    herald_group_pack_str (&result.pk, "created");
    msgpack_pack_true (&result.pk);
    return s_result_set (&result, batch);
}

static int
s_grant (herald_store_t *self, herald_batch_t *batch, const msgpack_object *op,
         s_loaded_t *group)
{
    herald_group_record_t *record = &group->record;
    const msgpack_object *list = herald_store_map_get (op, "partitions");
    if (!list || list->type != MSGPACK_OBJECT_ARRAY)
        return s_refuse (batch, "grant: partitions must be an array of uints");
    for (uint32_t i = 0; i < list->via.array.size; i++) {
        uint64_t partition;
        if (!herald_group_uint (&list->via.array.ptr [i], &partition))
            return s_refuse (batch, "grant: partitions must be an array of uints");
        if (partition >= record->partitions)
            return s_refuse (batch, "grant: group %s has no partition %" PRIu64,
                             record->name, partition);
    }
    s_result_t result;
    s_result_init (&result, 1, true);
    herald_group_pack_str (&result.pk, "assigned");
    msgpack_pack_array (&result.pk, list->via.array.size);
    for (uint32_t i = 0; i < list->via.array.size; i++) {
        uint32_t partition = (uint32_t) list->via.array.ptr [i].via.u64;
        herald_group_position_t *position = &record->positions [partition];
        position->epoch = ++record->epoch;
        herald_store_group_put_position (self, self->batch, record, partition);
        msgpack_pack_array (&result.pk, 4);
        msgpack_pack_uint32 (&result.pk, partition);
        msgpack_pack_uint64 (&result.pk, position->epoch);
        msgpack_pack_uint64 (&result.pk, position->committed);
        msgpack_pack_uint64 (&result.pk, position->delivered);
    }
    if (list->via.array.size
    &&  herald_store_group_put_config (self, self->batch, record) != 0) {
        msgpack_sbuffer_destroy (&result.buffer);
        return -1;
    }
    self->groups_staged = true;
    return s_result_set (&result, batch);
}

static int
s_commit (herald_store_t *self, herald_batch_t *batch, const msgpack_object *op,
          s_loaded_t *group)
{
    herald_group_record_t *record = &group->record;
    const msgpack_object *list = herald_store_map_get (op, "positions");
    if (!list || list->type != MSGPACK_OBJECT_ARRAY)
        return s_refuse (batch, "commit: positions must be an array");
    uint64_t fenced = 0;
    for (uint32_t i = 0; i < list->via.array.size; i++) {
        const msgpack_object *item = &list->via.array.ptr [i];
        uint64_t v [4];
        if (item->type != MSGPACK_OBJECT_ARRAY || item->via.array.size != 4
        ||  !herald_group_uint (&item->via.array.ptr [0], &v [0])
        ||  !herald_group_uint (&item->via.array.ptr [1], &v [1])
        ||  !herald_group_uint (&item->via.array.ptr [2], &v [2])
        ||  !herald_group_uint (&item->via.array.ptr [3], &v [3]))
            return s_refuse (batch, "commit: a position is [partition, epoch, committed, "
                             "delivered], uints");
        if (v [0] >= record->partitions)
            return s_refuse (batch, "commit: group %s has no partition %" PRIu64,
                             record->name, v [0]);
        if (v [2] > v [3])
            return s_refuse (batch, "commit: partition %" PRIu64 ": committed %" PRIu64
                             " is above delivered %" PRIu64, v [0], v [2], v [3]);
        if (v [1] != record->positions [v [0]].epoch)
            fenced++;
    }
    s_result_t result;
    s_result_init (&result, 1, true);
    herald_group_pack_str (&result.pk, "fenced");
    msgpack_pack_array (&result.pk, fenced);
    for (uint32_t i = 0; i < list->via.array.size; i++) {
        const msgpack_object *item = list->via.array.ptr [i].via.array.ptr;
        uint32_t partition = (uint32_t) item [0].via.u64;
        herald_group_position_t *position = &record->positions [partition];
        //  Compared with the epoch as the op found it: a partition listed
        //  twice is judged the same way both times
        if (item [1].via.u64 != position->epoch) {
            msgpack_pack_uint32 (&result.pk, partition);
            continue;
        }
        position->committed = item [2].via.u64;
        position->delivered = item [3].via.u64;
        herald_store_group_put_position (self, self->batch, record, partition);
        self->groups_staged = true;
    }
    return s_result_set (&result, batch);
}

static int
s_reset (herald_store_t *self, herald_batch_t *batch, const msgpack_object *op,
         s_loaded_t *group)
{
    herald_group_record_t *record = &group->record;
    uint64_t to;
    if (!herald_store_map_uint (op, "to", &to) || to < 1)
        return s_refuse (batch, "reset: to must be a uint >= 1");
    for (uint32_t p = 0; p < record->partitions; p++) {
        herald_group_position_t *position = &record->positions [p];
        position->committed = position->delivered = to - 1;
        position->epoch = ++record->epoch;
        herald_store_group_put_position (self, self->batch, record, p);
    }
    if (herald_store_group_put_config (self, self->batch, record) != 0)
        return -1;
    self->groups_staged = true;
    s_result_t result;
    s_result_init (&result, 1, true);
    herald_group_pack_str (&result.pk, "epoch");
    msgpack_pack_uint64 (&result.pk, record->epoch);
    return s_result_set (&result, batch);
}

static int
s_delete (herald_store_t *self, herald_batch_t *batch, s_loaded_t *group)
{
    herald_store_group_delete_keys (self, self->batch, &group->record);
    herald_group_record_fini (&group->record);
    group->exists = false;
    self->groups_staged = true;
    s_result_t result;
    s_result_init (&result, 0, true);
    return s_result_set (&result, batch);
}

int
herald_store_groups_stage (herald_store_t *self, herald_batch_t *batch,
                           herald_error_t *err)
{
    batch->status = HERALD_OK;
    batch->op_result = NULL;
    batch->op_result_len = 0;
    msgpack_zone zone;
    msgpack_zone_init (&zone, 1024);
    msgpack_object op;
    size_t offset = 0;
    int rc;
    char name [HERALD_GROUP_NAME_MAX + 1];
    const msgpack_object *kind = NULL;
    if (msgpack_unpack ((const char *) batch->op, batch->op_len, &offset, &zone, &op)
            != MSGPACK_UNPACK_SUCCESS
    ||  offset != batch->op_len || op.type != MSGPACK_OBJECT_MAP) {
        rc = s_refuse (batch, "the op is not one MessagePack map");
        goto done;
    }
    kind = herald_store_map_get (&op, "op");
    if (s_is (kind, "trim")) {
        //  Not a group's: the trim point's op (herald_store_trim.c)
        rc = herald_store_trim_stage (self, batch, &op, err);
        msgpack_zone_destroy (&zone);
        if (rc != 0) {
            free (batch->op_result);
            batch->op_result = NULL;
            batch->op_result_len = 0;
        }
        return rc;
    }
    const msgpack_object *group_name = herald_store_map_get (&op, "group");
    if (!group_name || group_name->type != MSGPACK_OBJECT_STR
    ||  !herald_group_name_valid (group_name->via.str.ptr, group_name->via.str.size)) {
        rc = s_refuse (batch, "group must be 1-%d bytes of [A-Za-z0-9._-], not starting "
                       "with '.'", HERALD_GROUP_NAME_MAX);
        goto done;
    }
    memcpy (name, group_name->via.str.ptr, group_name->via.str.size);
    name [group_name->via.str.size] = 0;
    bool known = s_is (kind, "create") || s_is (kind, "grant") || s_is (kind, "commit")
              || s_is (kind, "reset") || s_is (kind, "delete");
    if (!known) {
        rc = s_refuse (batch, "op must be create, grant, commit, reset or delete");
        goto done;
    }
    if (s_is (kind, "grant") || s_is (kind, "commit")) {
        const msgpack_object *member = herald_store_map_get (&op, "member");
        if (!member || member->type != MSGPACK_OBJECT_STR
        ||  !herald_group_name_valid (member->via.str.ptr, member->via.str.size)) {
            rc = s_refuse (batch, "member must be 1-%d bytes of [A-Za-z0-9._-], not "
                           "starting with '.'", HERALD_GROUP_NAME_MAX);
            goto done;
        }
    }
    s_loaded_t *group = s_load (self, name, err);
    if (!group) {
        msgpack_zone_destroy (&zone);
        return -1;                  //  the store cannot be read: the apply fails
    }
    if (s_is (kind, "create"))
        rc = s_create (self, batch, &op, group);
    else
    if (!group->exists)
        rc = s_refuse (batch, "no group %s", name);
    else
    if (s_is (kind, "grant"))
        rc = s_grant (self, batch, &op, group);
    else
    if (s_is (kind, "commit"))
        rc = s_commit (self, batch, &op, group);
    else
    if (s_is (kind, "reset"))
        rc = s_reset (self, batch, &op, group);
    else
        rc = s_delete (self, batch, group);
done:
    msgpack_zone_destroy (&zone);
    if (rc != 0) {
        free (batch->op_result);
        batch->op_result = NULL;
        batch->op_result_len = 0;
        herald_error_set (err, HERALD_ERR_NOMEM, "", "out of memory");
        return -1;
    }
    return 0;
}
