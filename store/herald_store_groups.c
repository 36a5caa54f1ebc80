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

    The ops that change these keys are applied in
    herald_store_groups_ops.c; this file reads and writes the keys, and
    exports and imports them.
    =========================================================================
*/

#include <stdarg.h>
#include <stdio.h>
#include <sched.h>
#include <stdlib.h>
#include "herald_store_priv.h"
#include "herald_store_groups.h"

#define S_PREFIX        "group/"
#define S_PREFIX_LEN    6
#define S_FORMAT        1
#define S_KEY_MAX       (S_PREFIX_LEN + HERALD_GROUP_NAME_MAX + 1 + 4)
#define S_POSITION      24


//  ---------------------------------------------------------------------
//  Keys and values

bool
herald_group_name_valid (const char *name, size_t len)
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

int
herald_group_pack_str (msgpack_packer *pk, const char *str)
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
        rc = herald_group_pack_str (&pk, record->prefixes [i]);
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
bool
herald_group_prefixes_from (const msgpack_object *array, herald_group_record_t *record)
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

bool
herald_group_uint (const msgpack_object *object, uint64_t *out)
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
           && root.type == MSGPACK_OBJECT_ARRAY && root.via.array.size == 6;
    const msgpack_object *item = ok? root.via.array.ptr: NULL;
    ok = ok && herald_group_uint (&item [0], &format) && format == S_FORMAT
            && herald_group_uint (&item [1], &partitions)
            && partitions >= 1 && partitions <= HERALD_GROUP_PARTITIONS_MAX
            && herald_group_uint (&item [2], &session_ms) && session_ms <= UINT32_MAX
            && herald_group_uint (&item [3], &record->created)
            && herald_group_uint (&item [4], &record->epoch)
            && herald_group_prefixes_from (&item [5], record);
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
//  The write generation (herald_store_priv.h, groups_gen): odd while a
//  write of groups is under way.  Wait for an even one (bounded) and
//  return it.

#define S_READ_TRIES    1000

static uint64_t
s_groups_gen_wait (herald_store_t *self)
{
    uint64_t gen = atomic_load (&self->groups_gen);
    for (int spins = 0; (gen & 1) && spins < 100000; spins++) {
        sched_yield ();
        gen = atomic_load (&self->groups_gen);
    }
    return gen;
}

void
herald_store_groups_writing (herald_store_t *self)
{
    atomic_fetch_add (&self->groups_gen, 1);
}

//  ---------------------------------------------------------------------
//  Reading a group: its config by a point get, its positions by one
//  MultiGet.  HERALD_ERR_NOT_FOUND when there is none.

herald_err
herald_store_group_read (herald_store_t *self, const char *name, herald_group_record_t *record,
        herald_error_t *err)
{
    memset (record, 0, sizeof (*record));
    size_t name_len = strlen (name);
    if (!herald_group_name_valid (name, name_len))
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
    if (!err)
        err = &ignored;
    //  A record is several keys, and the default column family takes
    //  in-place updates (herald_store.c), so no snapshot can hold a write
    //  still: a read that a write of groups (on the appender's thread)
    //  overlapped may mix partitions written before it and by it.  Each
    //  partition's position is one key, read whole, and a mix is what a
    //  reader one moment earlier or later would have seen for each; what
    //  cannot be taken is a record that does not hold together (a group
    //  deleted and made again with other partitions between its config
    //  and its positions): that one is read again, once the write is
    //  over.  Waiting for every write instead held the broker's loop up
    //  for each WAL sync (a profile of 4 members: 70 % of heraldd's
    //  samples in that wait).  Bounded: after S_READ_TRIES the last read
    //  stands.
    herald_err rc = HERALD_OK;
    for (int tries = 0; tries < S_READ_TRIES; tries++) {
        uint64_t before = atomic_load (&self->groups_gen);
        rc = herald_store_group_read (self, name, record, err);
        uint64_t after = atomic_load (&self->groups_gen);
        bool overlapped = (before & 1) || after != before;
        if (!overlapped || rc == HERALD_OK || rc == HERALD_ERR_NOT_FOUND
        ||  tries + 1 == S_READ_TRIES)
            break;
        s_groups_gen_wait (self);       //  torn by a write: read again after it
    }
    return rc;
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

int
herald_store_group_put_config (herald_store_t *self, rocksdb_writebatch_t *batch,
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

void
herald_store_group_put_position (herald_store_t *self, rocksdb_writebatch_t *batch,
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

void
herald_store_group_delete_keys (herald_store_t *self, rocksdb_writebatch_t *batch,
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

const msgpack_object *
herald_store_map_get (const msgpack_object *map, const char *key)
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

bool
herald_store_map_uint (const msgpack_object *map, const char *key, uint64_t *out)
{
    const msgpack_object *value = herald_store_map_get (map, key);
    return value && herald_group_uint (value, out);
}

//  ---------------------------------------------------------------------
//  Export and import (a cluster's snapshot manifest)

static int
s_pack_record (msgpack_packer *pk, const herald_group_record_t *record)
{
    int rc = msgpack_pack_map (pk, 8)
          || herald_group_pack_str (pk, "name")
          || herald_group_pack_str (pk, record->name)
          || herald_group_pack_str (pk, "prefixes")
          || msgpack_pack_array (pk, record->prefix_count);
    for (size_t i = 0; rc == 0 && i < record->prefix_count; i++)
        rc = herald_group_pack_str (pk, record->prefixes [i]);
    rc = rc
      || herald_group_pack_str (pk, "partitions")
      || msgpack_pack_uint32 (pk, record->partitions)
      || herald_group_pack_str (pk, "session_ms")
      || msgpack_pack_uint32 (pk, record->session_ms)
      || herald_group_pack_str (pk, "created") || msgpack_pack_uint64 (pk, record->created)
      || herald_group_pack_str (pk, "epoch") || msgpack_pack_uint64 (pk, record->epoch)
      || herald_group_pack_str (pk, "format") || msgpack_pack_uint64 (pk, S_FORMAT)
      || herald_group_pack_str (pk, "positions")
      || msgpack_pack_array (pk, record->partitions);
    for (uint32_t p = 0; rc == 0 && p < record->partitions; p++)
        rc = msgpack_pack_array (pk, 3)
          || msgpack_pack_uint64 (pk, record->positions [p].committed)
          || msgpack_pack_uint64 (pk, record->positions [p].delivered)
          || msgpack_pack_uint64 (pk, record->positions [p].epoch);
    return rc? -1: 0;
}

static herald_err
    s_export (herald_store_t *self, msgpack_sbuffer *buffer, herald_error_t *err);

herald_err
herald_store_groups_export (herald_store_t *self, msgpack_sbuffer *buffer,
                            herald_error_t *err)
{
    assert (self && buffer);
    herald_error_t ignored;
    if (!err)
        err = &ignored;
    //  As herald_store_group_get: not across a write of groups
    herald_err rc = HERALD_OK;
    size_t mark = buffer->size;
    for (int tries = 0; tries < S_READ_TRIES; tries++) {
        uint64_t before = s_groups_gen_wait (self);
        buffer->size = mark;
        rc = s_export (self, buffer, err);
        if (atomic_load (&self->groups_gen) == before)
            break;
    }
    return rc;
}

static herald_err
s_export (herald_store_t *self, msgpack_sbuffer *buffer, herald_error_t *err)
{
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
        rc = herald_store_group_read (self, names [i], &records [i], err);
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
    const msgpack_object *name = herald_store_map_get (item, "name");
    const msgpack_object *prefixes = herald_store_map_get (item, "prefixes");
    const msgpack_object *positions = herald_store_map_get (item, "positions");
    uint64_t partitions, session_ms, format;
    if (!name || name->type != MSGPACK_OBJECT_STR
    ||  !herald_group_name_valid (name->via.str.ptr, name->via.str.size)
    ||  !prefixes || !herald_group_prefixes_from (prefixes, record)
    ||  !herald_store_map_uint (item, "format", &format) || format != S_FORMAT
    ||  !herald_store_map_uint (item, "partitions", &partitions)
    ||  partitions < 1 || partitions > HERALD_GROUP_PARTITIONS_MAX
    ||  !herald_store_map_uint (item, "session_ms", &session_ms) || session_ms > UINT32_MAX
    ||  !herald_store_map_uint (item, "created", &record->created)
    ||  !herald_store_map_uint (item, "epoch", &record->epoch)
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
        ||  !herald_group_uint (&entry->via.array.ptr [0], &position->committed)
        ||  !herald_group_uint (&entry->via.array.ptr [1], &position->delivered)
        ||  !herald_group_uint (&entry->via.array.ptr [2], &position->epoch)
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
        rc = herald_store_group_read (self, names [i], &old, err);
        if (rc == HERALD_OK)
            herald_store_group_delete_keys (self, batch, &old);
        herald_group_record_fini (&old);
    }
    for (size_t i = 0; batch && rc == HERALD_OK && i < count; i++) {
        if (herald_store_group_put_config (self, batch, &records [i]) != 0)
            rc = herald_error_set (err, HERALD_ERR_NOMEM, "", "out of memory");
        for (uint32_t p = 0; rc == HERALD_OK && p < records [i].partitions; p++)
            herald_store_group_put_position (self, batch, &records [i], p);
    }
    if (batch && rc == HERALD_OK) {
        char *rocks_err = NULL;
        herald_store_groups_writing (self);
        rocksdb_write (self->db, self->write_options, batch, &rocks_err);
        herald_store_groups_writing (self);
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
