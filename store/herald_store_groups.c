/*  =========================================================================
    herald_store_groups - consumer groups' positions in the store

    DESIGN

    Keys, in CF "default" (herald_store_priv.h), under "group/", which
    no other key of the store starts with ("herald.", "meta."):

        "group/" name                   -> [1, partitions, session_ms, created,
                                            epoch, [prefix, ...]]  (MessagePack)
        "group/" name 0x00 partition u32 -> committed u64 | delivered u64 | epoch u64

    A name is [A-Za-z0-9._-] (docs/protocol.md), never 0x00, so a group's
    keys are contiguous and its config key comes first; a commit rewrites
    only the partitions it lists, a grant those and the config (its epoch
    counter).  CF "default" updates in place (herald_store.c), which
    RocksDB makes safe for point gets but not for iterators' values: so
    values are only read by point gets (and MultiGet), iterators read keys.

    Applying: an op is decided from the store as the call sees it.  Every
    group an op of the call reads is loaded once into the call's overlay
    (s_call_t) and changed there, and its changed keys go into the call's
    WriteBatch at once; a later op of the same call reads the overlay, so
    ops apply "as if one by one".  Nothing here reads a clock or a random
    source: the result and the bytes written depend on the store and the
    op alone, as herald_store_apply promises.
    =========================================================================
*/

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include "herald_store_priv.h"
#include "herald_store_groups.h"

#define S_PREFIX        "group/"
#define S_PREFIX_LEN    6
#define S_FORMAT        1
#define S_KEY_MAX       (S_PREFIX_LEN + HERALD_GROUP_NAME_MAX + 1 + 4)
#define S_POSITION      24

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
//  Keys and values

static bool
s_valid_name (const char *name, size_t len)
{
    if (len < 1 || len > HERALD_GROUP_NAME_MAX || name [0] == '.')
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = name [i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')
            || c == '.' || c == '_' || c == '-'))
            return false;
    }
    return true;
}

static size_t
s_config_key (char *key, const char *name)
{
    size_t len = strlen (name);
    memcpy (key, S_PREFIX, S_PREFIX_LEN);
    memcpy (key + S_PREFIX_LEN, name, len);
    return S_PREFIX_LEN + len;
}

static size_t
s_position_key (char *key, const char *name, uint32_t partition)
{
    size_t len = s_config_key (key, name);
    key [len] = 0;
    s_put_u32 ((uint8_t *) key + len + 1, partition);
    return len + 5;
}

static int
s_pack_str (msgpack_packer *pk, const char *str)
{
    size_t len = strlen (str);
    return msgpack_pack_str (pk, len) || msgpack_pack_str_body (pk, str, len);
}

static int
s_pack_config (msgpack_sbuffer *buffer, const herald_group_record_t *record)
{
    msgpack_packer pk;
    msgpack_packer_init (&pk, buffer, msgpack_sbuffer_write);
    int rc = msgpack_pack_array (&pk, 6)
          || msgpack_pack_uint64 (&pk, S_FORMAT)
          || msgpack_pack_uint64 (&pk, record->partitions)
          || msgpack_pack_uint64 (&pk, record->session_ms)
          || msgpack_pack_uint64 (&pk, record->created)
          || msgpack_pack_uint64 (&pk, record->epoch)
          || msgpack_pack_array (&pk, record->prefix_count);
    for (size_t i = 0; rc == 0 && i < record->prefix_count; i++)
        rc = s_pack_str (&pk, record->prefixes [i]);
    return rc? -1: 0;
}

static char *
s_strndup (const char *str, size_t len)
{
    char *copy = malloc (len + 1);
    if (copy) {
        memcpy (copy, str, len);
        copy [len] = 0;
    }
    return copy;
}

static int
s_compare_str (const void *a, const void *b)
{
    return strcmp (*(char *const *) a, *(char *const *) b);
}

//  Prefixes from a MessagePack array of str into record (sorted, without
//  duplicates).  false when it is not one (record's prefixes then freed
//  by herald_group_record_fini).
static bool
s_prefixes_from (const msgpack_object *array, herald_group_record_t *record)
{
    if (array->type != MSGPACK_OBJECT_ARRAY)
        return false;
    size_t count = array->via.array.size;
    if (count > 1024)
        return false;
    record->prefixes = calloc (count + 1, sizeof (char *));
    if (!record->prefixes)
        return false;
    for (size_t i = 0; i < count; i++) {
        const msgpack_object *item = &array->via.array.ptr [i];
        if (item->type != MSGPACK_OBJECT_STR || item->via.str.size > HERALD_TOPIC_MAX
        ||  memchr (item->via.str.ptr, 0, item->via.str.size))
            return false;
        record->prefixes [record->prefix_count] = s_strndup (item->via.str.ptr,
                                                             item->via.str.size);
        if (!record->prefixes [record->prefix_count])
            return false;
        record->prefix_count++;
    }
    qsort (record->prefixes, record->prefix_count, sizeof (char *), s_compare_str);
    size_t kept = 0;
    for (size_t i = 0; i < record->prefix_count; i++) {
        if (kept && strcmp (record->prefixes [kept - 1], record->prefixes [i]) == 0)
            free (record->prefixes [i]);
        else
            record->prefixes [kept++] = record->prefixes [i];
    }
    record->prefix_count = kept;
    return true;
}

static bool
s_uint (const msgpack_object *object, uint64_t *out)
{
    if (object->type != MSGPACK_OBJECT_POSITIVE_INTEGER)
        return false;
    *out = object->via.u64;
    return true;
}

//  Parse a config value into record (name set by the caller).
static bool
s_config_parse (const char *value, size_t len, herald_group_record_t *record)
{
    msgpack_zone zone;
    msgpack_zone_init (&zone, 256);
    msgpack_object root;
    uint64_t format, partitions, session_ms;
    bool ok = msgpack_unpack (value, len, NULL, &zone, &root) == MSGPACK_UNPACK_SUCCESS
           && root.type == MSGPACK_OBJECT_ARRAY && root.via.array.size == 6
           && s_uint (&root.via.array.ptr [0], &format) && format == S_FORMAT
           && s_uint (&root.via.array.ptr [1], &partitions)
           && partitions >= 1 && partitions <= HERALD_GROUP_PARTITIONS_MAX
           && s_uint (&root.via.array.ptr [2], &session_ms) && session_ms <= UINT32_MAX
           && s_uint (&root.via.array.ptr [3], &record->created)
           && s_uint (&root.via.array.ptr [4], &record->epoch)
           && s_prefixes_from (&root.via.array.ptr [5], record);
    if (ok) {
        record->partitions = (uint32_t) partitions;
        record->session_ms = (uint32_t) session_ms;
    }
    msgpack_zone_destroy (&zone);
    return ok;
}

void
herald_group_record_fini (herald_group_record_t *record)
{
    if (!record)
        return;
    free (record->name);
    for (size_t i = 0; i < record->prefix_count; i++)
        free (record->prefixes [i]);
    free (record->prefixes);
    free (record->positions);
    memset (record, 0, sizeof (*record));
}

//  ---------------------------------------------------------------------
//  Reading a group: its config by a point get, its positions by one
//  MultiGet.  HERALD_ERR_NOT_FOUND when there is none.

static herald_err
s_read (herald_store_t *self, const char *name, herald_group_record_t *record,
        herald_error_t *err)
{
    memset (record, 0, sizeof (*record));
    size_t name_len = strlen (name);
    if (!s_valid_name (name, name_len))
        return HERALD_ERR_NOT_FOUND;        //  no such name can be stored
    char key [S_KEY_MAX];
    size_t key_len = s_config_key (key, name);
    char *rocks_err = NULL;
    size_t len = 0;
    char *value = rocksdb_get_cf (self->db, self->read_options, self->cf [CF_DEFAULT],
                                  key, key_len, &len, &rocks_err);
    if (rocks_err) {
        herald_store_rocks_error (rocks_err, err, "reading group %s", name);
        free (rocks_err);
        return HERALD_ERR_IO;
    }
    if (!value)
        return HERALD_ERR_NOT_FOUND;
    bool ok = s_config_parse (value, len, record);
    free (value);
    record->name = strdup (name);
    if (!ok || !record->name) {
        herald_group_record_fini (record);
        return herald_error_set (err, ok? HERALD_ERR_NOMEM: HERALD_ERR_CORRUPT, "",
                                 "group %s: its record does not decode", name);
    }
    size_t n = record->partitions;
    record->positions = calloc (n, sizeof (herald_group_position_t));
    char *keys = malloc (n * S_KEY_MAX);
    const char **key_ptrs = malloc (n * sizeof (char *));
    size_t *key_sizes = malloc (n * sizeof (size_t));
    rocksdb_pinnableslice_t **values = calloc (n, sizeof (rocksdb_pinnableslice_t *));
    char **errors = calloc (n, sizeof (char *));
    herald_err rc = HERALD_OK;
    if (!record->positions || !keys || !key_ptrs || !key_sizes || !values || !errors)
        rc = herald_error_set (err, HERALD_ERR_NOMEM, "", "out of memory");
    else {
        for (size_t p = 0; p < n; p++) {
            key_ptrs [p] = keys + p * S_KEY_MAX;
            key_sizes [p] = s_position_key (keys + p * S_KEY_MAX, name, (uint32_t) p);
        }
        rocksdb_batched_multi_get_cf (self->db, self->read_options, self->cf [CF_DEFAULT],
                                      n, key_ptrs, key_sizes, values, errors, false);
        for (size_t p = 0; p < n; p++) {
            if (errors [p]) {
                if (rc == HERALD_OK)
                    rc = herald_store_rocks_error (errors [p], err,
                                                   "reading group %s partition %zu", name, p);
                free (errors [p]);
            }
            if (values [p]) {
                size_t value_len;
                const uint8_t *bytes = (const uint8_t *) rocksdb_pinnableslice_value (
                    values [p], &value_len);
                if (value_len == S_POSITION) {
                    record->positions [p].committed = s_get_u64 (bytes);
                    record->positions [p].delivered = s_get_u64 (bytes + 8);
                    record->positions [p].epoch = s_get_u64 (bytes + 16);
                }
                else
                if (rc == HERALD_OK)
                    rc = herald_error_set (err, HERALD_ERR_CORRUPT, "",
                        "group %s partition %zu: %zu bytes", name, p, value_len);
                rocksdb_pinnableslice_destroy (values [p]);
            }
            else
            if (rc == HERALD_OK && !errors [p])
                rc = herald_error_set (err, HERALD_ERR_CORRUPT, "",
                    "group %s: partition %zu is missing", name, p);
        }
    }
    free (keys);
    free (key_ptrs);
    free (key_sizes);
    free (values);
    free (errors);
    if (rc != HERALD_OK)
        herald_group_record_fini (record);
    return rc;
}

herald_err
herald_store_group_get (herald_store_t *self, const char *name,
                        herald_group_record_t *record, herald_error_t *err)
{
    assert (self && name && record);
    herald_error_t ignored;
    return s_read (self, name, record, err? err: &ignored);
}

//  Every group's name, in key order (that is name order: one byte per
//  char, no name a prefix of another's key but its own).
herald_err
herald_store_group_names (herald_store_t *self, char ***names_p, size_t *count_p,
                          herald_error_t *err)
{
    assert (self && names_p && count_p);
    herald_error_t ignored;
    if (!err)
        err = &ignored;
    *names_p = NULL;
    *count_p = 0;
    char **names = NULL;
    size_t count = 0, capacity = 0;
    rocksdb_iterator_t *it = rocksdb_create_iterator_cf (self->db, self->read_options,
                                                         self->cf [CF_DEFAULT]);
    rocksdb_iter_seek (it, S_PREFIX, S_PREFIX_LEN);
    herald_err rc = HERALD_OK;
    while (rocksdb_iter_valid (it)) {
        size_t len;
        const char *key = rocksdb_iter_key (it, &len);
        if (len < S_PREFIX_LEN || memcmp (key, S_PREFIX, S_PREFIX_LEN) != 0)
            break;
        const char *name = key + S_PREFIX_LEN;
        size_t name_len = len - S_PREFIX_LEN;
        if (memchr (name, 0, name_len)) {
            //  A position without a config key before it: not ours to skip
            rc = herald_error_set (err, HERALD_ERR_CORRUPT, "",
                                   "a group's position without its group");
            break;
        }
        if (count == capacity) {
            capacity = capacity? capacity * 2: 16;
            char **grown = realloc (names, capacity * sizeof (char *));
            if (!grown) {
                rc = herald_error_set (err, HERALD_ERR_NOMEM, "", "out of memory");
                break;
            }
            names = grown;
        }
        names [count] = s_strndup (name, name_len);
        if (!names [count]) {
            rc = herald_error_set (err, HERALD_ERR_NOMEM, "", "out of memory");
            break;
        }
        count++;
        //  Past this group's positions: name 0x01 sorts after every one
        char next [S_KEY_MAX];
        memcpy (next, key, len);
        next [len] = 1;
        rocksdb_iter_seek (it, next, len + 1);
    }
    if (rc == HERALD_OK && !rocksdb_iter_valid (it))
        rc = herald_store_iter_error (it, err, "listing groups");
    rocksdb_iter_destroy (it);
    if (rc != HERALD_OK) {
        for (size_t i = 0; i < count; i++)
            free (names [i]);
        free (names);
        return rc;
    }
    *names_p = names;
    *count_p = count;
    return HERALD_OK;
}

//  ---------------------------------------------------------------------
//  Writing a record's keys into a WriteBatch

static int
s_put_config (herald_store_t *self, rocksdb_writebatch_t *batch,
              const herald_group_record_t *record)
{
    msgpack_sbuffer buffer;
    msgpack_sbuffer_init (&buffer);
    if (s_pack_config (&buffer, record) != 0) {
        msgpack_sbuffer_destroy (&buffer);
        return -1;
    }
    char key [S_KEY_MAX];
    size_t key_len = s_config_key (key, record->name);
    rocksdb_writebatch_put_cf (batch, self->cf [CF_DEFAULT], key, key_len,
                               buffer.data, buffer.size);
    msgpack_sbuffer_destroy (&buffer);
    return 0;
}

static void
s_put_position (herald_store_t *self, rocksdb_writebatch_t *batch,
                const herald_group_record_t *record, uint32_t partition)
{
    char key [S_KEY_MAX];
    size_t key_len = s_position_key (key, record->name, partition);
    uint8_t value [S_POSITION];
    const herald_group_position_t *position = &record->positions [partition];
    s_put_u64 (value, position->committed);
    s_put_u64 (value + 8, position->delivered);
    s_put_u64 (value + 16, position->epoch);
    rocksdb_writebatch_put_cf (batch, self->cf [CF_DEFAULT], key, key_len,
                               (const char *) value, S_POSITION);
}

static void
s_delete_group (herald_store_t *self, rocksdb_writebatch_t *batch,
                const herald_group_record_t *record)
{
    char key [S_KEY_MAX];
    size_t key_len = s_config_key (key, record->name);
    rocksdb_writebatch_delete_cf (batch, self->cf [CF_DEFAULT], key, key_len);
    for (uint32_t p = 0; p < record->partitions; p++) {
        key_len = s_position_key (key, record->name, p);
        rocksdb_writebatch_delete_cf (batch, self->cf [CF_DEFAULT], key, key_len);
    }
}

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
    herald_err rc = s_read (self, name, &loaded->record, err);
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
    s_pack_str (&result->pk, "ok");
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
    s_pack_str (&result.pk, "error");
    s_pack_str (&result.pk, message);
    return s_result_set (&result, batch);
}

//  ---------------------------------------------------------------------
//  The ops

static const msgpack_object *
s_get (const msgpack_object *map, const char *key)
{
    size_t len = strlen (key);
    for (uint32_t i = 0; i < map->via.map.size; i++) {
        const msgpack_object_kv *kv = &map->via.map.ptr [i];
        if (kv->key.type == MSGPACK_OBJECT_STR && kv->key.via.str.size == len
        &&  memcmp (kv->key.via.str.ptr, key, len) == 0)
            return &kv->val;
    }
    return NULL;
}

static bool
s_get_uint (const msgpack_object *map, const char *key, uint64_t *out)
{
    const msgpack_object *value = s_get (map, key);
    return value && s_uint (value, out);
}

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
    if (!s_get_uint (op, "partitions", &partitions) || partitions < 1
    ||  partitions > HERALD_GROUP_PARTITIONS_MAX)
        return s_refuse (batch, "create: partitions must be 1 to %d",
                         HERALD_GROUP_PARTITIONS_MAX);
    if (!s_get_uint (op, "session_ms", &session_ms) || session_ms > UINT32_MAX)
        return s_refuse (batch, "create: session_ms must be a uint32");
    if (!s_get_uint (op, "from", &from) || from < 1)
        return s_refuse (batch, "create: from must be a uint >= 1");
    if (!s_get_uint (op, "ts", &ts))
        return s_refuse (batch, "create: ts must be a uint");
    herald_group_record_t wanted = { 0 };
    const msgpack_object *prefixes = s_get (op, "prefixes");
    msgpack_object none = { .type = MSGPACK_OBJECT_ARRAY };
    if (!s_prefixes_from (prefixes? prefixes: &none, &wanted)) {
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
        s_pack_str (&result.pk, "created");
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
    if (s_put_config (self, self->batch, &wanted) != 0) {
        herald_group_record_fini (&wanted);
        return -1;
    }
    for (uint32_t p = 0; p < wanted.partitions; p++)
        s_put_position (self, self->batch, &wanted, p);
    herald_group_record_fini (&group->record);
    group->record = wanted;
    group->exists = true;
    self->groups_staged = true;
    s_result_t result;
    s_result_init (&result, 1, true);
    s_pack_str (&result.pk, "created");
    msgpack_pack_true (&result.pk);
    return s_result_set (&result, batch);
}

static int
s_grant (herald_store_t *self, herald_batch_t *batch, const msgpack_object *op,
         s_loaded_t *group)
{
    herald_group_record_t *record = &group->record;
    const msgpack_object *list = s_get (op, "partitions");
    if (!list || list->type != MSGPACK_OBJECT_ARRAY)
        return s_refuse (batch, "grant: partitions must be an array of uints");
    for (uint32_t i = 0; i < list->via.array.size; i++) {
        uint64_t partition;
        if (!s_uint (&list->via.array.ptr [i], &partition))
            return s_refuse (batch, "grant: partitions must be an array of uints");
        if (partition >= record->partitions)
            return s_refuse (batch, "grant: group %s has no partition %" PRIu64,
                             record->name, partition);
    }
    s_result_t result;
    s_result_init (&result, 1, true);
    s_pack_str (&result.pk, "assigned");
    msgpack_pack_array (&result.pk, list->via.array.size);
    for (uint32_t i = 0; i < list->via.array.size; i++) {
        uint32_t partition = (uint32_t) list->via.array.ptr [i].via.u64;
        herald_group_position_t *position = &record->positions [partition];
        position->epoch = ++record->epoch;
        s_put_position (self, self->batch, record, partition);
        msgpack_pack_array (&result.pk, 4);
        msgpack_pack_uint32 (&result.pk, partition);
        msgpack_pack_uint64 (&result.pk, position->epoch);
        msgpack_pack_uint64 (&result.pk, position->committed);
        msgpack_pack_uint64 (&result.pk, position->delivered);
    }
    if (list->via.array.size && s_put_config (self, self->batch, record) != 0) {
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
    const msgpack_object *list = s_get (op, "positions");
    if (!list || list->type != MSGPACK_OBJECT_ARRAY)
        return s_refuse (batch, "commit: positions must be an array");
    uint64_t fenced = 0;
    for (uint32_t i = 0; i < list->via.array.size; i++) {
        const msgpack_object *item = &list->via.array.ptr [i];
        uint64_t v [4];
        if (item->type != MSGPACK_OBJECT_ARRAY || item->via.array.size != 4
        ||  !s_uint (&item->via.array.ptr [0], &v [0])
        ||  !s_uint (&item->via.array.ptr [1], &v [1])
        ||  !s_uint (&item->via.array.ptr [2], &v [2])
        ||  !s_uint (&item->via.array.ptr [3], &v [3]))
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
    s_pack_str (&result.pk, "fenced");
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
        s_put_position (self, self->batch, record, partition);
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
    if (!s_get_uint (op, "to", &to) || to < 1)
        return s_refuse (batch, "reset: to must be a uint >= 1");
    for (uint32_t p = 0; p < record->partitions; p++) {
        herald_group_position_t *position = &record->positions [p];
        position->committed = position->delivered = to - 1;
        position->epoch = ++record->epoch;
        s_put_position (self, self->batch, record, p);
    }
    if (s_put_config (self, self->batch, record) != 0)
        return -1;
    self->groups_staged = true;
    s_result_t result;
    s_result_init (&result, 1, true);
    s_pack_str (&result.pk, "epoch");
    msgpack_pack_uint64 (&result.pk, record->epoch);
    return s_result_set (&result, batch);
}

static int
s_delete (herald_store_t *self, herald_batch_t *batch, s_loaded_t *group)
{
    s_delete_group (self, self->batch, &group->record);
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
    kind = s_get (&op, "op");
    const msgpack_object *group_name = s_get (&op, "group");
    if (!group_name || group_name->type != MSGPACK_OBJECT_STR
    ||  !s_valid_name (group_name->via.str.ptr, group_name->via.str.size)) {
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
        const msgpack_object *member = s_get (&op, "member");
        if (!member || member->type != MSGPACK_OBJECT_STR
        ||  !s_valid_name (member->via.str.ptr, member->via.str.size)) {
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

//  ---------------------------------------------------------------------
//  Export and import (a cluster's snapshot manifest)

static int
s_pack_record (msgpack_packer *pk, const herald_group_record_t *record)
{
    int rc = msgpack_pack_map (pk, 8)
          || s_pack_str (pk, "name") || s_pack_str (pk, record->name)
          || s_pack_str (pk, "prefixes") || msgpack_pack_array (pk, record->prefix_count);
    for (size_t i = 0; rc == 0 && i < record->prefix_count; i++)
        rc = s_pack_str (pk, record->prefixes [i]);
    rc = rc
      || s_pack_str (pk, "partitions") || msgpack_pack_uint32 (pk, record->partitions)
      || s_pack_str (pk, "session_ms") || msgpack_pack_uint32 (pk, record->session_ms)
      || s_pack_str (pk, "created") || msgpack_pack_uint64 (pk, record->created)
      || s_pack_str (pk, "epoch") || msgpack_pack_uint64 (pk, record->epoch)
      || s_pack_str (pk, "format") || msgpack_pack_uint64 (pk, S_FORMAT)
      || s_pack_str (pk, "positions") || msgpack_pack_array (pk, record->partitions);
    for (uint32_t p = 0; rc == 0 && p < record->partitions; p++)
        rc = msgpack_pack_array (pk, 3)
          || msgpack_pack_uint64 (pk, record->positions [p].committed)
          || msgpack_pack_uint64 (pk, record->positions [p].delivered)
          || msgpack_pack_uint64 (pk, record->positions [p].epoch);
    return rc? -1: 0;
}

herald_err
herald_store_groups_export (herald_store_t *self, msgpack_sbuffer *buffer,
                            herald_error_t *err)
{
    assert (self && buffer);
    herald_error_t ignored;
    if (!err)
        err = &ignored;
    char **names;
    size_t count;
    herald_err rc = herald_store_group_names (self, &names, &count, err);
    if (rc != HERALD_OK)
        return rc;
    //  Read every record before packing any, so that a failure leaves
    //  buffer as it was
    herald_group_record_t *records = calloc (count + 1, sizeof (herald_group_record_t));
    if (!records)
        rc = herald_error_set (err, HERALD_ERR_NOMEM, "", "out of memory");
    for (size_t i = 0; rc == HERALD_OK && i < count; i++) {
        rc = s_read (self, names [i], &records [i], err);
        if (rc == HERALD_ERR_NOT_FOUND)     //  deleted since it was listed: an appender ran
            rc = herald_error_set (err, HERALD_ERR_INTERNAL, "",
                                   "group %s went away while exported", names [i]);
    }
    if (rc == HERALD_OK) {
        size_t mark = buffer->size;
        msgpack_packer pk;
        msgpack_packer_init (&pk, buffer, msgpack_sbuffer_write);
        int packed = msgpack_pack_array (&pk, count);
        for (size_t i = 0; packed == 0 && i < count; i++)
            packed = s_pack_record (&pk, &records [i]);
        if (packed) {
            buffer->size = mark;
            rc = herald_error_set (err, HERALD_ERR_NOMEM, "", "out of memory");
        }
    }
    for (size_t i = 0; i < count; i++) {
        if (records)
            herald_group_record_fini (&records [i]);
        free (names [i]);
    }
    free (records);
    free (names);
    return rc;
}

//  One exported record into record; false when it is not one.
static bool
s_record_from (const msgpack_object *item, herald_group_record_t *record)
{
    if (item->type != MSGPACK_OBJECT_MAP)
        return false;
    const msgpack_object *name = s_get (item, "name");
    const msgpack_object *prefixes = s_get (item, "prefixes");
    const msgpack_object *positions = s_get (item, "positions");
    uint64_t partitions, session_ms, format;
    if (!name || name->type != MSGPACK_OBJECT_STR
    ||  !s_valid_name (name->via.str.ptr, name->via.str.size)
    ||  !prefixes || !s_prefixes_from (prefixes, record)
    ||  !s_get_uint (item, "format", &format) || format != S_FORMAT
    ||  !s_get_uint (item, "partitions", &partitions)
    ||  partitions < 1 || partitions > HERALD_GROUP_PARTITIONS_MAX
    ||  !s_get_uint (item, "session_ms", &session_ms) || session_ms > UINT32_MAX
    ||  !s_get_uint (item, "created", &record->created)
    ||  !s_get_uint (item, "epoch", &record->epoch)
    ||  !positions || positions->type != MSGPACK_OBJECT_ARRAY
    ||  positions->via.array.size != partitions)
        return false;
    record->name = s_strndup (name->via.str.ptr, name->via.str.size);
    record->partitions = (uint32_t) partitions;
    record->session_ms = (uint32_t) session_ms;
    record->positions = calloc (partitions, sizeof (herald_group_position_t));
    if (!record->name || !record->positions)
        return false;
    for (uint32_t p = 0; p < partitions; p++) {
        const msgpack_object *entry = &positions->via.array.ptr [p];
        herald_group_position_t *position = &record->positions [p];
        if (entry->type != MSGPACK_OBJECT_ARRAY || entry->via.array.size != 3
        ||  !s_uint (&entry->via.array.ptr [0], &position->committed)
        ||  !s_uint (&entry->via.array.ptr [1], &position->delivered)
        ||  !s_uint (&entry->via.array.ptr [2], &position->epoch)
        ||  position->committed > position->delivered
        ||  position->epoch > record->epoch)
            return false;
    }
    return true;
}

herald_err
herald_store_groups_import (herald_store_t *self, const void *bytes, size_t len,
                            herald_error_t *err)
{
    assert (self);
    herald_error_t ignored;
    if (!err)
        err = &ignored;
    if (self->read_only)
        return herald_error_set (err, HERALD_ERR_INVALID, "", "the store is read-only");
    msgpack_zone zone;
    msgpack_zone_init (&zone, 4096);
    msgpack_object root;
    size_t offset = 0;
    herald_err rc = HERALD_OK;
    herald_group_record_t *records = NULL;
    size_t count = 0;
    if (!bytes
    ||  msgpack_unpack (bytes, len, &offset, &zone, &root) != MSGPACK_UNPACK_SUCCESS
    ||  offset != len || root.type != MSGPACK_OBJECT_ARRAY)
        rc = herald_error_set (err, HERALD_ERR_CORRUPT, "", "groups: not an export");
    else {
        count = root.via.array.size;
        records = calloc (count + 1, sizeof (herald_group_record_t));
        if (!records)
            rc = herald_error_set (err, HERALD_ERR_NOMEM, "", "out of memory");
    }
    for (size_t i = 0; rc == HERALD_OK && i < count; i++) {
        if (!s_record_from (&root.via.array.ptr [i], &records [i]))
            rc = herald_error_set (err, HERALD_ERR_CORRUPT, "",
                                   "groups: record %zu is not a group", i);
        for (size_t j = 0; rc == HERALD_OK && j < i; j++)
            if (strcmp (records [i].name, records [j].name) == 0)
                rc = herald_error_set (err, HERALD_ERR_CORRUPT, "",
                                       "groups: group %s twice", records [i].name);
    }
    msgpack_zone_destroy (&zone);
    char **names = NULL;
    size_t name_count = 0;
    if (rc == HERALD_OK)
        rc = herald_store_group_names (self, &names, &name_count, err);
    rocksdb_writebatch_t *batch = rc == HERALD_OK? rocksdb_writebatch_create (): NULL;
    for (size_t i = 0; batch && rc == HERALD_OK && i < name_count; i++) {
        herald_group_record_t old;
        rc = s_read (self, names [i], &old, err);
        if (rc == HERALD_OK)
            s_delete_group (self, batch, &old);
        herald_group_record_fini (&old);
    }
    for (size_t i = 0; batch && rc == HERALD_OK && i < count; i++) {
        if (s_put_config (self, batch, &records [i]) != 0)
            rc = herald_error_set (err, HERALD_ERR_NOMEM, "", "out of memory");
        for (uint32_t p = 0; rc == HERALD_OK && p < records [i].partitions; p++)
            s_put_position (self, batch, &records [i], p);
    }
    if (batch && rc == HERALD_OK) {
        char *rocks_err = NULL;
        rocksdb_write (self->db, self->write_options, batch, &rocks_err);
        if (rocks_err) {
            rc = herald_store_rocks_error (rocks_err, err, "writing groups");
            free (rocks_err);
        }
    }
    if (batch)
        rocksdb_writebatch_destroy (batch);
    for (size_t i = 0; i < name_count; i++)
        free (names [i]);
    free (names);
    for (size_t i = 0; records && i < count; i++)
        herald_group_record_fini (&records [i]);
    free (records);
    return rc;
}
