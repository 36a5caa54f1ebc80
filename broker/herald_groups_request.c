/*  =========================================================================
    herald_groups_request - a GROUP request body decoded and checked

    Every key is checked for its type and range before anything is done
    (docs/protocol.md "Consumer groups"): a request is answered
    bad_request naming the first key that is wrong, and nothing is
    changed.  As for every HWP/1 request, a body without a uint rid is
    answered with rid nil.  Unknown keys are ignored; nil is absent.
    =========================================================================
*/

#include <inttypes.h>
#include "herald_groups_priv.h"

#define S_PREFIXES_MAX      256
#define S_PREFIX_LEN_MAX    255
#define S_LIST_MAX          HERALD_GROUP_PARTITIONS_MAX

static const struct {
    const char *name;
    herald_groups_op_t op;
} s_ops [] = {
    { "heartbeat", HERALD_GROUPS_HEARTBEAT }, { "commit", HERALD_GROUPS_COMMIT },
    { "leave", HERALD_GROUPS_LEAVE }, { "list", HERALD_GROUPS_LIST },
    { "show", HERALD_GROUPS_SHOW }, { "reset", HERALD_GROUPS_RESET },
    { "delete", HERALD_GROUPS_DELETE }
};
#define S_OP_COUNT  (sizeof (s_ops) / sizeof (s_ops [0]))

static bool
s_key_is (const msgpack_object *key, const char *name)
{
    return key->type == MSGPACK_OBJECT_STR && key->via.str.size == strlen (name)
        && memcmp (key->via.str.ptr, name, key->via.str.size) == 0;
}

static herald_err
s_bad (herald_error_t *err, const char *field, const char *message)
{
    return herald_error_set (err, HERALD_ERR_BAD_REQUEST, field, "%s", message);
}

//  A group or member name: 1-128 bytes of [A-Za-z0-9._-], not starting
//  with '.'.
static herald_err
s_name (const msgpack_object *value, const char *field, char *out, herald_error_t *err)
{
    if (value->type != MSGPACK_OBJECT_STR)
        return s_bad (err, field, "must be a string");
    size_t len = value->via.str.size;
    const char *ptr = value->via.str.ptr;
    bool good = len >= 1 && len <= HERALD_GROUP_NAME_MAX && ptr [0] != '.';
    for (size_t index = 0; good && index < len; index++)
        good = isalnum ((unsigned char) ptr [index]) || ptr [index] == '.'
            || ptr [index] == '_' || ptr [index] == '-';
    if (!good)
        return herald_error_set (err, HERALD_ERR_BAD_REQUEST, field, "must be 1-%d bytes of "
                                 "[A-Za-z0-9._-], not starting with '.'",
                                 HERALD_GROUP_NAME_MAX);
    memcpy (out, ptr, len);
    out [len] = 0;
    return HERALD_OK;
}

static herald_err
s_uint (const msgpack_object *value, const char *field, uint64_t min, uint64_t max,
        uint64_t *out, herald_error_t *err)
{
    if (value->type != MSGPACK_OBJECT_POSITIVE_INTEGER || value->via.u64 < min
    ||  value->via.u64 > max) {
        if (max == UINT64_MAX)
            return herald_error_set (err, HERALD_ERR_BAD_REQUEST, field, "must be a uint "
                                     "of at least %" PRIu64, min);
        return herald_error_set (err, HERALD_ERR_BAD_REQUEST, field, "must be a uint of "
                                 "%" PRIu64 "-%" PRIu64, min, max);
    }
    *out = value->via.u64;
    return HERALD_OK;
}

static int
s_strcmp (const void *a, const void *b)
{
    return strcmp (*(char *const *) a, *(char *const *) b);
}

static herald_err
s_prefixes (const msgpack_object *value, herald_groups_req_t *req, herald_error_t *err)
{
    if (value->type != MSGPACK_OBJECT_ARRAY)
        return s_bad (err, "prefixes", "must be an array of strings");
    size_t count = value->via.array.size;
    if (count > S_PREFIXES_MAX)
        return herald_error_set (err, HERALD_ERR_BAD_REQUEST, "prefixes", "more than %d "
                                 "entries", S_PREFIXES_MAX);
    if (count == 0)
        return HERALD_OK;
    req->prefixes = (char **) zmalloc (count * sizeof (char *));
    for (size_t index = 0; index < count; index++) {
        const msgpack_object *item = &value->via.array.ptr [index];
        char field [32];
        snprintf (field, sizeof (field), "prefixes[%zu]", index);
        if (item->type != MSGPACK_OBJECT_STR || item->via.str.size == 0
        ||  item->via.str.size > S_PREFIX_LEN_MAX
        ||  memchr (item->via.str.ptr, 0, item->via.str.size))
            return herald_error_set (err, HERALD_ERR_BAD_REQUEST, field, "must be a string "
                                     "of 1-%d bytes", S_PREFIX_LEN_MAX);
        if (item->via.str.ptr [0] == '$')
            return s_bad (err, field, "must not start with '$' (the broker's own topics)");
        req->prefixes [req->prefix_count++] = strndup (item->via.str.ptr, item->via.str.size);
    }
    //  A set: sorted, each once
    qsort (req->prefixes, req->prefix_count, sizeof (char *), s_strcmp);
    size_t kept = 1;
    for (size_t index = 1; index < req->prefix_count; index++)
        if (strcmp (req->prefixes [index], req->prefixes [kept - 1]) == 0)
            free (req->prefixes [index]);
        else
            req->prefixes [kept++] = req->prefixes [index];
    req->prefix_count = kept;
    return HERALD_OK;
}

//  An array of arrays of width uints: owned (2) or positions (4).
static herald_err
s_tuples (const msgpack_object *value, const char *field, size_t width, uint64_t **out,
          size_t *count, herald_error_t *err)
{
    const char *shape = width == 2? "[partition, epoch]"
                                  : "[partition, epoch, committed, delivered]";
    if (value->type != MSGPACK_OBJECT_ARRAY)
        return herald_error_set (err, HERALD_ERR_BAD_REQUEST, field, "must be an array of "
                                 "%s", shape);
    size_t size = value->via.array.size;
    if (size > S_LIST_MAX)
        return herald_error_set (err, HERALD_ERR_BAD_REQUEST, field, "more than %d entries",
                                 S_LIST_MAX);
    *out = size? (uint64_t *) zmalloc (size * width * sizeof (uint64_t)): NULL;
    *count = size;
    for (size_t index = 0; index < size; index++) {
        const msgpack_object *item = &value->via.array.ptr [index];
        char name [48];
        snprintf (name, sizeof (name), "%s[%zu]", field, index);
        if (item->type != MSGPACK_OBJECT_ARRAY || item->via.array.size != width)
            return herald_error_set (err, HERALD_ERR_BAD_REQUEST, name, "must be %s", shape);
        for (size_t at = 0; at < width; at++) {
            const msgpack_object *number = &item->via.array.ptr [at];
            if (number->type != MSGPACK_OBJECT_POSITIVE_INTEGER)
                return herald_error_set (err, HERALD_ERR_BAD_REQUEST, name, "must be %s, "
                                         "each a uint", shape);
            (*out) [index * width + at] = number->via.u64;
        }
        if ((*out) [index * width] >= HERALD_GROUP_PARTITIONS_MAX)
            return herald_error_set (err, HERALD_ERR_BAD_REQUEST, name, "partition %" PRIu64
                                     " is not below %d", (*out) [index * width],
                                     HERALD_GROUP_PARTITIONS_MAX);
        if (width == 4 && (*out) [index * 4 + 2] > (*out) [index * 4 + 3])
            return herald_error_set (err, HERALD_ERR_BAD_REQUEST, name, "committed %" PRIu64
                                     " is above delivered %" PRIu64, (*out) [index * 4 + 2],
                                     (*out) [index * 4 + 3]);
    }
    return HERALD_OK;
}

//  One key of the body; HERALD_OK for a key not known (ignored).
static herald_err
s_field (const msgpack_object *key, const msgpack_object *value, herald_groups_req_t *req,
         const msgpack_object **op, herald_error_t *err)
{
    if (s_key_is (key, "op")) {
        *op = value;
        return HERALD_OK;
    }
    if (s_key_is (key, "group"))
        return s_name (value, "group", req->group, err);
    if (s_key_is (key, "member"))
        return s_name (value, "member", req->member, err);
    if (s_key_is (key, "prefixes"))
        return s_prefixes (value, req, err);
    if (s_key_is (key, "owned"))
        return s_tuples (value, "owned", 2, &req->owned, &req->owned_count, err);
    if (s_key_is (key, "positions"))
        return s_tuples (value, "positions", 4, &req->positions, &req->position_count, err);
    if (s_key_is (key, "partitions")) {
        req->has_partitions = true;
        return s_uint (value, "partitions", 1, HERALD_GROUP_PARTITIONS_MAX, &req->partitions,
                       err);
    }
    if (s_key_is (key, "session_ms")) {
        req->has_session = true;
        return s_uint (value, "session_ms", HERALD_GROUPS_SESSION_MIN,
                       HERALD_GROUPS_SESSION_MAX, &req->session_ms, err);
    }
    if (s_key_is (key, "from")) {
        req->has_from = true;
        return s_uint (value, "from", 1, UINT64_MAX, &req->from, err);
    }
    if (s_key_is (key, "to")) {
        req->has_to = true;
        return s_uint (value, "to", 1, UINT64_MAX, &req->to, err);
    }
    if (s_key_is (key, "to_ts")) {
        req->has_to_ts = true;
        return s_uint (value, "to_ts", 0, UINT64_MAX, &req->to_ts, err);
    }
    return HERALD_OK;
}

herald_err
herald_groups_decode (const uint8_t *body, size_t len, herald_groups_req_t *req,
                      herald_error_t *err)
{
    memset (req, 0, sizeof (*req));
    memset (err, 0, sizeof (*err));
    msgpack_unpacked unpacked;
    msgpack_unpacked_init (&unpacked);
    size_t offset = 0;
    herald_err rc = HERALD_OK;
    if (!body
    ||  msgpack_unpack_next (&unpacked, (const char *) body, len, &offset)
            != MSGPACK_UNPACK_SUCCESS
    ||  offset != len || unpacked.data.type != MSGPACK_OBJECT_MAP) {
        msgpack_unpacked_destroy (&unpacked);
        return s_bad (err, "body", "must be one MessagePack map");
    }
    const msgpack_object_map *map = &unpacked.data.via.map;
    //  The rid first, so that every other error is answered to it
    for (uint32_t at = 0; at < map->size; at++)
        if (s_key_is (&map->ptr [at].key, "rid")) {
            const msgpack_object *value = &map->ptr [at].val;
            if (value->type != MSGPACK_OBJECT_POSITIVE_INTEGER) {
                msgpack_unpacked_destroy (&unpacked);
                return s_bad (err, "rid", "must be a uint");
            }
            err->has_rid = true;
            err->rid = req->rid = value->via.u64;
        }
    if (!err->has_rid) {
        msgpack_unpacked_destroy (&unpacked);
        return s_bad (err, "rid", "required");
    }
    const msgpack_object *op = NULL;
    for (uint32_t at = 0; at < map->size && rc == HERALD_OK; at++) {
        if (map->ptr [at].val.type == MSGPACK_OBJECT_NIL)
            continue;                   //  nil: absent
        rc = s_field (&map->ptr [at].key, &map->ptr [at].val, req, &op, err);
    }
    if (rc == HERALD_OK) {
        for (size_t index = 0; op && op->type == MSGPACK_OBJECT_STR && index < S_OP_COUNT;
             index++)
            if (op->via.str.size == strlen (s_ops [index].name)
            &&  memcmp (op->via.str.ptr, s_ops [index].name, op->via.str.size) == 0) {
                req->op = s_ops [index].op;
                req->op_name = s_ops [index].name;
            }
        if (!req->op)
            rc = s_bad (err, "op", "must be heartbeat, commit, leave, list, show, reset or "
                        "delete");
    }
    msgpack_unpacked_destroy (&unpacked);
    if (rc == HERALD_OK && req->op != HERALD_GROUPS_LIST && !*req->group)
        rc = s_bad (err, "group", "required");
    if (rc == HERALD_OK && !*req->member
    &&  (req->op == HERALD_GROUPS_HEARTBEAT || req->op == HERALD_GROUPS_COMMIT
    ||   req->op == HERALD_GROUPS_LEAVE))
        rc = s_bad (err, "member", "required");
    if (rc == HERALD_OK && req->op == HERALD_GROUPS_COMMIT && !req->positions)
        rc = s_bad (err, "positions", "required");
    if (rc == HERALD_OK && req->op == HERALD_GROUPS_RESET && req->has_to == req->has_to_ts)
        rc = s_bad (err, "to", "give exactly one of to (a seq) and to_ts (Unix ns)");
    if (rc != HERALD_OK) {
        herald_groups_req_fini (req);
        err->has_rid = true;
        err->rid = req->rid;
    }
    return rc;
}

void
herald_groups_req_fini (herald_groups_req_t *req)
{
    if (!req)
        return;
    for (size_t index = 0; index < req->prefix_count; index++)
        free (req->prefixes [index]);
    free (req->prefixes);
    free (req->owned);
    free (req->positions);
    req->prefixes = NULL;
    req->prefix_count = 0;
    req->owned = req->positions = NULL;
    req->owned_count = req->position_count = 0;
}

bool
herald_groups_same_prefixes (char **a, size_t a_count, char **b, size_t b_count)
{
    if (a_count != b_count)
        return false;
    for (size_t index = 0; index < a_count; index++)
        if (strcmp (a [index], b [index]) != 0)
            return false;
    return true;
}

void
herald_groups_prefixes_text (char **prefixes, size_t count, char *out, size_t size)
{
    size_t used = 0;
    out [0] = 0;
    if (count == 0) {
        snprintf (out, size, "every topic");
        return;
    }
    for (size_t index = 0; index < count && used + 8 < size; index++) {
        int wrote = snprintf (out + used, size - used, "%s\"%s\"", index? ", ": "",
                              prefixes [index]);
        if (wrote < 0 || (size_t) wrote >= size - used) {
            snprintf (out + (size > 4? size - 4: 0), size > 4? 4: size, "...");
            return;
        }
        used += (size_t) wrote;
    }
}
