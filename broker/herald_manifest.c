/*  =========================================================================
    herald_manifest - a cluster node's Raft snapshot: a manifest, not data

    DESIGN
    Restore decides from three numbers of the store (head, digest at
    head, applied raft index) against the manifest's:

        applied >= index and head >= manifest head   nothing (a restart)
        head > manifest head, applied < index        diverged: stop
        head < manifest head                         catch up, then below
        head = manifest head                         digest equal: set the
                                                     applied index; else
                                                     diverged: stop

    (head can exceed the manifest's only with the index past it too: the
    entries up to the manifest's index made exactly its head.)

    Consumer groups change by ops that write no event, so a store at the
    manifest's head may still lack some; trims likewise (a trim op writes
    no event): whenever the applied index is raised to the manifest's, the
    groups are first replaced by the manifest's and the trim points raised
    to its (an import only raises: twice is once) (a crash between the two imports them again at the next
    restore; an import is a whole replacement, so twice is once).  Catching
    up installs with raft index 0, and the applied index is written only
    once the digest matched, so a crash in the middle resumes: the
    snapshot is on disk, restore runs again from the store's new head.
    =========================================================================
*/

#include <inttypes.h>
#include "herald_manifest.h"
#include "herald_store_groups.h"
#include "herald_log.h"

static int
s_key (msgpack_packer *pk, const char *key)
{
    return msgpack_pack_str_with_body (pk, key, strlen (key));
}

static int
s_key_str (msgpack_packer *pk, const char *key, const char *value)
{
    value = value? value: "";
    return s_key (pk, key) | msgpack_pack_str_with_body (pk, value, strlen (value));
}

static int
s_key_uint (msgpack_packer *pk, const char *key, uint64_t value)
{
    return s_key (pk, key) | msgpack_pack_uint64 (pk, value);
}

int
herald_manifest_encode (herald_store_t *store, uint64_t index, const char *node,
                        const char *api, const herald_peer_t *peers, size_t peer_count,
                        msgpack_sbuffer *buffer)
{
    msgpack_packer pk;
    msgpack_packer_init (&pk, buffer, msgpack_sbuffer_write);
    int rc = msgpack_pack_map (&pk, 10);
    rc |= s_key_uint (&pk, "format", HERALD_MANIFEST_FORMAT);
    rc |= s_key_uint (&pk, "index", index);
    rc |= s_key_uint (&pk, "head", herald_store_head (store));
    rc |= s_key_uint (&pk, "last_ts", herald_store_last_ts (store));
    rc |= s_key_uint (&pk, "digest", herald_store_digest (store));
    rc |= s_key_str (&pk, "node", node);
    rc |= s_key_str (&pk, "api", api);
    rc |= s_key (&pk, "peers") | msgpack_pack_array (&pk, peer_count);
    for (size_t at = 0; at < peer_count; at++) {
        //  raft and fanout too: with them the peers are the member table,
        //  which a node restored from this snapshot takes (herald_raft.c)
        rc |= msgpack_pack_map (&pk, 5);
        rc |= s_key_str (&pk, "node", peers [at].name);
        rc |= s_key_uint (&pk, "raft_id", peers [at].raft_id);
        rc |= s_key_str (&pk, "api", peers [at].api);
        rc |= s_key_str (&pk, "raft", peers [at].raft);
        rc |= s_key_str (&pk, "fanout", peers [at].fanout);
    }
    //  On the raft thread, between applies: the trim points and the
    //  groups as of index
    size_t count = herald_store_trims (store, NULL, 0);
    herald_trim_t *trims = (herald_trim_t *) calloc (count? count: 1, sizeof (herald_trim_t));
    if (!trims)
        return -1;
    size_t got = herald_store_trims (store, trims, count);
    count = got < count? got: count;
    rc |= s_key (&pk, "trims") | msgpack_pack_array (&pk, count);
    for (size_t at = 0; at < count; at++) {
        rc |= msgpack_pack_map (&pk, 4);
        rc |= s_key (&pk, "prefix")
            | msgpack_pack_str_with_body (&pk, trims [at].prefix, trims [at].prefix_len);
        rc |= s_key_uint (&pk, "until", trims [at].until);
        rc |= s_key_uint (&pk, "ts", trims [at].ts);
        rc |= s_key_uint (&pk, "until_ts", trims [at].until_ts);
    }
    free (trims);
    rc |= s_key (&pk, "groups");
    if (rc == 0) {
        herald_error_t err = { 0 };
        if (herald_store_groups_export (store, buffer, &err) != HERALD_OK) {
            herald_log ("warn", "raft: a snapshot cannot export the groups: %s",
                        err.message);
            rc = -1;
        }
    }
    return rc? -1: 0;
}

//  Where the value of the top-level key name lies in a manifest's bytes
//  (already unpacked once: well formed).  False when it has none.
static bool
s_find_key (const uint8_t *bytes, size_t len, const char *name, const uint8_t **at,
            size_t *at_len)
{
    size_t offset;
    uint32_t count;
    if (len >= 1 && bytes [0] >= 0x80 && bytes [0] <= 0x8f) {
        count = bytes [0] & 0x0f;
        offset = 1;
    }
    else
    if (len >= 3 && bytes [0] == 0xde) {
        count = (uint32_t) bytes [1] << 8 | bytes [2];
        offset = 3;
    }
    else
    if (len >= 5 && bytes [0] == 0xdf) {
        count = (uint32_t) bytes [1] << 24 | (uint32_t) bytes [2] << 16
              | (uint32_t) bytes [3] << 8 | bytes [4];
        offset = 5;
    }
    else
        return false;
    bool found = false;
    msgpack_unpacked item;
    msgpack_unpacked_init (&item);
    for (uint32_t index = 0; index < count && !found; index++) {
        if (msgpack_unpack_next (&item, (const char *) bytes, len, &offset)
                != MSGPACK_UNPACK_SUCCESS)
            break;
        bool is_groups = item.data.type == MSGPACK_OBJECT_STR
                      && item.data.via.str.size == strlen (name)
                      && memcmp (item.data.via.str.ptr, name, strlen (name)) == 0;
        size_t start = offset;
        if (msgpack_unpack_next (&item, (const char *) bytes, len, &offset)
                != MSGPACK_UNPACK_SUCCESS)
            break;
        if (is_groups) {
            *at = bytes + start;
            *at_len = offset - start;
            found = true;
        }
    }
    msgpack_unpacked_destroy (&item);
    return found;
}

static void
s_copy_str (char *into, size_t size, const msgpack_object *value)
{
    if (value && value->type == MSGPACK_OBJECT_STR && value->via.str.size < size) {
        memcpy (into, value->via.str.ptr, value->via.str.size);
        into [value->via.str.size] = 0;
    }
}

herald_err
herald_manifest_decode (herald_manifest_t *self, const void *bytes, size_t len,
                        herald_error_t *err)
{
    memset (self, 0, sizeof (*self));
    msgpack_zone zone;
    msgpack_zone_init (&zone, 1024);
    msgpack_object root;
    herald_error_t inner = { 0 };
    herald_field_t fields [] = { { "format" }, { "index" }, { "head" }, { "last_ts" },
                                 { "digest" }, { "api" }, { "peers" } };
    herald_err rc = HERALD_OK;
    if (herald_event_unpack (bytes, len, &zone, &root, "snapshot", &inner) != HERALD_OK
    ||  root.type != MSGPACK_OBJECT_MAP
    ||  herald_event_fields (&root, fields, 7, &zone, "snapshot", &inner) != HERALD_OK)
        rc = herald_error_set (err, HERALD_ERR_CORRUPT, "snapshot", "not a manifest %s",
                               inner.message);
    uint64_t *numbers [] = { NULL, &self->index, &self->head, &self->last_ts, &self->digest };
    for (size_t at = 0; rc == HERALD_OK && at < 5; at++) {
        const msgpack_object *value = fields [at].value;
        if (!value || value->type != MSGPACK_OBJECT_POSITIVE_INTEGER)
            rc = herald_error_set (err, HERALD_ERR_CORRUPT, "snapshot",
                                   "manifest without %s", fields [at].name);
        else
        if (at == 0 && value->via.u64 != HERALD_MANIFEST_FORMAT)
            rc = herald_error_set (err, HERALD_ERR_CORRUPT, "snapshot",
                                   "manifest format %" PRIu64 " unknown", value->via.u64);
        else
        if (numbers [at])
            *numbers [at] = value->via.u64;
    }
    if (rc == HERALD_OK) {
        s_copy_str (self->api, sizeof (self->api), fields [5].value);
        const msgpack_object *peers = fields [6].value;
        if (peers && peers->type == MSGPACK_OBJECT_ARRAY)
            for (size_t at = 0; at < peers->via.array.size
                             && self->api_count < HERALD_MANIFEST_APIS; at++) {
                herald_field_t peer_fields [] = { { "api" } };
                const msgpack_object *peer = &peers->via.array.ptr [at];
                if (peer->type == MSGPACK_OBJECT_MAP
                &&  herald_event_fields (peer, peer_fields, 1, &zone, "", &inner) == HERALD_OK) {
                    char *into = self->apis [self->api_count];
                    s_copy_str (into, sizeof (self->apis [0]), peer_fields [0].value);
                    if (*into)
                        self->api_count++;
                }
            }
    }
    msgpack_zone_destroy (&zone);
    if (rc == HERALD_OK
    &&  !s_find_key ((const uint8_t *) bytes, len, "groups", &self->groups, &self->groups_len)) {
        self->groups = NULL;
        self->groups_len = 0;
    }
    if (rc == HERALD_OK
    &&  !s_find_key ((const uint8_t *) bytes, len, "trims", &self->trims, &self->trims_len)) {
        self->trims = NULL;
        self->trims_len = 0;
    }
    return rc;
}

//  Raise the store's trim points to the manifest's (none in a manifest
//  from before trimming).
static herald_err
s_trims_import (const herald_manifest_t *self, herald_store_t *store, herald_error_t *err)
{
    if (!self->trims)
        return HERALD_OK;
    msgpack_zone zone;
    msgpack_zone_init (&zone, 1024);
    msgpack_object root;
    herald_error_t inner = { 0 };
    herald_err rc = HERALD_OK;
    if (herald_event_unpack (self->trims, self->trims_len, &zone, &root, "trims", &inner)
            != HERALD_OK || root.type != MSGPACK_OBJECT_ARRAY
    ||  root.via.array.size > HERALD_TRIMS_MAX)
        rc = herald_error_set (err, HERALD_ERR_CORRUPT, "snapshot", "the manifest's trims "
                               "are not an array of at most %d trim points", HERALD_TRIMS_MAX);
    size_t count = rc == HERALD_OK? root.via.array.size: 0;
    herald_trim_t *trims = (herald_trim_t *) calloc (count? count: 1, sizeof (herald_trim_t));
    if (!trims) {
        msgpack_zone_destroy (&zone);
        return herald_error_set (err, HERALD_ERR_NOMEM, "snapshot", "out of memory");
    }
    for (size_t at = 0; rc == HERALD_OK && at < count; at++) {
        herald_field_t fields [] = { { "prefix" }, { "until" }, { "ts" }, { "until_ts" } };
        const msgpack_object *item = &root.via.array.ptr [at];
        if (item->type != MSGPACK_OBJECT_MAP
        ||  herald_event_fields (item, fields, 4, &zone, "trims", &inner) != HERALD_OK
        ||  !fields [0].value || fields [0].value->type != MSGPACK_OBJECT_STR
        ||  fields [0].value->via.str.size > HERALD_TOPIC_MAX
        ||  !fields [1].value || fields [1].value->type != MSGPACK_OBJECT_POSITIVE_INTEGER
        ||  (fields [2].value && fields [2].value->type != MSGPACK_OBJECT_POSITIVE_INTEGER)
        ||  (fields [3].value && fields [3].value->type != MSGPACK_OBJECT_POSITIVE_INTEGER)) {
            rc = herald_error_set (err, HERALD_ERR_CORRUPT, "snapshot", "the manifest's "
                                   "trims[%zu] is not {prefix, until, ts}", at);
            break;
        }
        memcpy (trims [at].prefix, fields [0].value->via.str.ptr,
                fields [0].value->via.str.size);
        trims [at].prefix_len = fields [0].value->via.str.size;
        trims [at].until = fields [1].value->via.u64;
        trims [at].ts = fields [2].value? fields [2].value->via.u64: 0;
        //  Absent (no manifest without it was ever released): from_ts
        //  below every event's ts is then refused, the safe side
        trims [at].until_ts = fields [3].value? fields [3].value->via.u64: UINT64_MAX;
    }
    msgpack_zone_destroy (&zone);
    if (rc == HERALD_OK && count) {
        rc = herald_store_trims_import (store, trims, count, err);
        if (rc == HERALD_ERR_INVALID)
            rc = HERALD_ERR_CORRUPT;
        if (rc == HERALD_OK)
            herald_log ("info", "raft: the %zu trim point(s) of the snapshot at index %"
                        PRIu64 " taken", count, self->index);
    }
    free (trims);
    return rc;
}

//  Add api to sources unless it is there already or is this node's own:
//  a source that cannot serve costs up to the catch-up's idle limit, and
//  the manifest's peer list names this node and the maker again.
static void
s_add_source (const char **sources, size_t *count, const char *api, const char *own_api)
{
    if (!api || !*api || (own_api && streq (api, own_api)))
        return;
    for (size_t at = 0; at < *count; at++)
        if (streq (sources [at], api))
            return;
    sources [(*count)++] = api;
}

herald_err
herald_manifest_restore (const herald_manifest_t *self, herald_store_t *store,
                         const char *own_api, const char *const *apis, size_t count,
                         herald_catchup_fn *installed, void *arg, herald_error_t *err)
{
    uint64_t head = herald_store_head (store);
    uint64_t applied = herald_store_applied_index (store);
    if (applied >= self->index && head >= self->head)
        return HERALD_OK;
    if (head > self->head)
        return herald_error_set (err, HERALD_ERR_CORRUPT, "snapshot",
                                 "the store's head %" PRIu64 " is past the snapshot's %"
                                 PRIu64 " but its raft index %" PRIu64 " is before %"
                                 PRIu64 ": the logs diverged", head, self->head,
                                 applied, self->index);
    if (head < self->head) {
        const char *sources [1 + HERALD_MANIFEST_APIS + 16];
        size_t sources_count = 0;
        if (self->api [0])
            s_add_source (sources, &sources_count, self->api, own_api);
        for (size_t at = 0; at < self->api_count; at++)
            s_add_source (sources, &sources_count, self->apis [at], own_api);
        for (size_t at = 0; at < count && at < 16; at++)
            s_add_source (sources, &sources_count, apis [at], own_api);
        //  Said before and after: a node restarted in the middle of a
        //  catch-up does this before it serves, and its silence then
        //  must be explained by its log
        herald_log ("info", "raft: the store is behind the snapshot at index %" PRIu64
                    " (head %" PRIu64 ", the snapshot's %" PRIu64 "): copying the events "
                    "from %zu peer(s)", self->index, head, self->head, sources_count);
        int64_t started = zclock_mono ();
        herald_err rc = HERALD_ERR_UNAVAILABLE;
        herald_error_t tried = { 0 };
        herald_error_t trimmed = { 0 };
        for (size_t at = 0; at < sources_count && rc != HERALD_OK; at++) {
            rc = herald_catchup_run (store, sources [at], self->head, installed, arg, &tried);
            if (rc != HERALD_OK)
                herald_log ("warn", "raft: catch-up from %s: %s", sources [at],
                            tried.message);
            if (rc == HERALD_ERR_TRIMMED)
                trimmed = tried;        //  the next peer has trimmed the same: told below
            if (rc == HERALD_ERR_CORRUPT) {
                *err = tried;
                return rc;              //  what a peer sent does not fit: stop
            }
            if (rc == HERALD_ERR_IO) {
                *err = tried;
                return rc;              //  the store failed
            }
        }
        if (rc == HERALD_OK)
            herald_log ("info", "raft: copied events %" PRIu64 "..%" PRIu64 " in %.1f s",
                        head + 1, self->head, (double) (zclock_mono () - started) / 1000.0);
        if (rc != HERALD_OK && trimmed.code) {
            //  Not a fault to retry: the events are gone from every live log
            herald_log ("error", "raft: this node's store ends at seq %" PRIu64 ", and the "
                        "cluster has trimmed the events after it from its live log (%s): a "
                        "node this far behind cannot catch up by copying them. Seed it from "
                        "a backup of a member taken after the trim: stop it, `herald restore "
                        "--from BACKUP --data-dir DIR`, start it and add it again "
                        "(docs/operations.md, \"Backup and restore\", Clusters)",
                        herald_store_head (store), trimmed.message);
            return herald_error_set (err, HERALD_ERR_CORRUPT, "snapshot",
                                     "cannot catch up to seq %" PRIu64 ": the peers have "
                                     "trimmed the events after this node's head %" PRIu64
                                     "; seed this node from a recent backup "
                                     "(docs/operations.md, \"Backup and restore\")",
                                     self->head, herald_store_head (store));
        }
        if (rc != HERALD_OK)
            return herald_error_set (err, HERALD_ERR_CORRUPT, "snapshot",
                                     "cannot catch up to seq %" PRIu64 " from any of %zu "
                                     "peers: %s", self->head, sources_count,
                                     sources_count? tried.message: "none known");
    }
    if (herald_store_head (store) != self->head || herald_store_digest (store) != self->digest)
        return herald_error_set (err, HERALD_ERR_CORRUPT, "snapshot",
                                 "at seq %" PRIu64 " the store's digest %016" PRIx64
                                 " is not the snapshot's %016" PRIx64 ": the logs diverged",
                                 herald_store_head (store), herald_store_digest (store),
                                 self->digest);
    if (herald_store_applied_index (store) < self->index) {
        if (self->groups) {
            herald_err rc = herald_store_groups_import (store, self->groups, self->groups_len,
                                                        err);
            if (rc != HERALD_OK)
                return rc;
            herald_log ("info", "raft: the consumer groups of the snapshot at index %"
                        PRIu64 " taken", self->index);
        }
        herald_err rc = s_trims_import (self, store, err);
        if (rc != HERALD_OK)
            return rc;
        return herald_store_set_applied (store, self->index, err);
    }
    return HERALD_OK;
}
