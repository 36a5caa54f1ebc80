/*  =========================================================================
    herald_event - the event envelope: encode, decode, validate

    An event as stored, published and replayed is one MessagePack map.  The
    broker writes it once, in this fixed key order, so the store can read
    the head of every envelope in a full scan without unpacking it:

        +--------+------+---------------+---------+-------+-------+------+
        | map(n) | "id" | bin8(16) 16 B | "topic" | str   | "seq" | uint |
        +--------+------+---------------+---------+-------+-------+------+
        | "ver"  | uint | "ts" | uint | ["type" str] ["schema" uint]        |
        +--------+------+------+------+-------------------------------------+
        | ["meta" map str->str] "data" bin                                 |
        +--------------------------------------------------------------------+

    uints use MessagePack's shortest form (msgpack-c does), keys are fixstr.
    herald_event_peek accepts exactly this head; anything else (a foreign
    encoder, an old layout) falls back to herald_event_decode.

    DESIGN
    Decoding never trusts a declared length.  msgpack-c allocates an array
    or map's slots from the header's count before it reads the elements, so
    five bytes (dd ff ff ff ff) would ask for 100 GB.  herald_event_unpack
    therefore first walks the raw bytes (herald_event_skip): every count
    and length is checked against the bytes left, nesting is capped, and
    the walk must end exactly at the end of the input.  Only then does
    msgpack_unpack run, so its allocations are bounded by the input size.
    Validation then works on msgpack_objects whose str and bin point into
    the caller's bytes.
    =========================================================================
*/

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "herald_event.h"
#include "herald_text.h"

//  Deepest nesting accepted anywhere in a body.  HWP/1 needs four levels
//  (body, events, event, meta); the rest is room for unknown keys.  Below
//  msgpack-c's own stack (32), so its NOMEM always means memory.
#define S_MAX_DEPTH 16

//  Room for a field name such as "events[999].meta"
#define S_FIELD_MAX 64


//  --------------------------------------------------------------------------
//  Errors

//  The message carries the field too ("events[3].topic: ..."), so the one
//  string sent on the wire is enough for a person to find the mistake.
herald_err
herald_error_set (herald_error_t *err, herald_err code, const char *field,
                  const char *format, ...)
{
    if (!err)
        return code;
    err->code = code;
    snprintf (err->field, sizeof (err->field), "%s", field ? field : "");
    size_t used = 0;
    if (err->field [0]) {
        used = strlen (err->field);
        memcpy (err->message, err->field, used);
        memcpy (err->message + used, ": ", 3);
        used += 2;
    }
    va_list args;
    va_start (args, format);
    herald_text_vformat (err->message + used, sizeof (err->message) - used, format, args);
    va_end (args);
    return code;
}

//  "prefix.name", or "name" at the top level.
static void
s_field_name (char *out, const char *prefix, const char *name)
{
    if (prefix && *prefix)
        snprintf (out, S_FIELD_MAX, "%s.%s", prefix, name);
    else
        snprintf (out, S_FIELD_MAX, "%s", name);
}

//  herald_error_set for the field prefix.key.  The name is built only
//  here, on failure: formatting it for every field of every event cost
//  a tenth of the broker's time on a publish storm.
static herald_err
s_field_error (herald_error_t *err, herald_err code, const char *prefix, const char *key,
               const char *format, ...)
{
    char name [S_FIELD_MAX];
    s_field_name (name, prefix, key);
    char message [sizeof (err->message)];
    va_list args;
    va_start (args, format);
    herald_text_vformat (message, sizeof (message), format, args);
    va_end (args);
    return herald_error_set (err, code, name, "%s", message);
}


//  --------------------------------------------------------------------------
//  Text rules

//  RFC 3629 UTF-8: the lead byte fixes the length; the second byte's range
//  is narrowed for E0 (overlong), ED (surrogates), F0 (overlong) and F4
//  (beyond U+10FFFF).  C0, C1 and F5..FF never appear.
bool
herald_utf8_valid (const char *s, size_t len)
{
    const unsigned char *p = (const unsigned char *) s;
    size_t i = 0;
    while (i < len) {
        unsigned char c = p [i];
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t need;
        unsigned char lo = 0x80, hi = 0xBF;
        if (c < 0xC2)
            return false;
        else
        if (c < 0xE0)
            need = 1;
        else
        if (c < 0xF0) {
            need = 2;
            if (c == 0xE0)
                lo = 0xA0;
            else
            if (c == 0xED)
                hi = 0x9F;
        }
        else
        if (c < 0xF5) {
            need = 3;
            if (c == 0xF0)
                lo = 0x90;
            else
            if (c == 0xF4)
                hi = 0x8F;
        }
        else
            return false;
        if (len - i - 1 < need)
            return false;
        if (p [i + 1] < lo || p [i + 1] > hi)
            return false;
        size_t k;
        for (k = 2; k <= need; k++)
            if ((p [i + k] & 0xC0) != 0x80)
                return false;
        i += need + 1;
    }
    return true;
}

//  Topics are filter strings on the fanout socket, so NUL (which some SUB
//  bindings cannot express) and the reserved "$" namespace are refused.
bool
herald_topic_valid (const char *topic, size_t len)
{
    if (!topic || len < 1 || len > HERALD_TOPIC_MAX)
        return false;
    if (topic [0] == '$')
        return false;
    if (memchr (topic, 0, len))
        return false;
    return herald_utf8_valid (topic, len);
}


//  --------------------------------------------------------------------------
//  Encoding

//  Header sizes of MessagePack's shortest forms, as msgpack-c packs them.
static size_t
s_uint_size (uint64_t value)
{
    if (value < 128)            return 1;
    if (value < 0x100)          return 2;
    if (value < 0x10000)        return 3;
    if (value < 0x100000000ULL) return 5;
    return 9;
}

static size_t
s_str_size (size_t len)
{
    if (len < 32)       return 1 + len;
    if (len < 0x100)    return 2 + len;
    if (len < 0x10000)  return 3 + len;
    return 5 + len;
}

static size_t
s_bin_size (size_t len)
{
    if (len < 0x100)    return 2 + len;
    if (len < 0x10000)  return 3 + len;
    return 5 + len;
}

static size_t
s_map_size (size_t count)
{
    if (count < 16)      return 1;
    if (count < 0x10000) return 3;
    return 5;
}

//  Keys of the envelope, in the order they are written.
static size_t
s_key_count (const herald_event_t *event)
{
    return 6 + (event->type != NULL) + event->has_schema + (event->meta != NULL);
}

size_t
herald_event_encoded_size (const herald_event_t *event)
{
    size_t size = s_map_size (s_key_count (event));
    size += s_str_size (2) + s_bin_size (HERALD_ID_BYTES);
    size += s_str_size (5) + s_str_size (event->topic_len);
    size += s_str_size (3) + s_uint_size (event->seq);
    size += s_str_size (3) + s_uint_size (event->ver);
    size += s_str_size (2) + s_uint_size (event->ts);
    if (event->type)
        size += s_str_size (4) + s_str_size (event->type_len);
    if (event->has_schema)
        size += s_str_size (6) + s_uint_size (event->schema);
    if (event->meta) {
        size += s_str_size (4) + s_map_size (event->meta_count);
        size_t index;
        for (index = 0; index < event->meta_count; index++)
            size += s_str_size (event->meta [index].key_len)
                  + s_str_size (event->meta [index].value_len);
    }
    size += s_str_size (4) + s_bin_size (event->data_len);
    return size;
}

//  msgpack-c's pack functions return the sbuffer's write result; OR-ing
//  them keeps the encoders straight-line and still reports out of memory.
static int
s_pack_key (msgpack_packer *pk, const char *key)
{
    size_t len = strlen (key);
    return msgpack_pack_str (pk, len) | msgpack_pack_str_body (pk, key, len);
}

static int
s_pack_str (msgpack_packer *pk, const char *str, size_t len)
{
    int rc = msgpack_pack_str (pk, len);
    if (len)
        rc |= msgpack_pack_str_body (pk, str, len);
    return rc;
}

static int
s_pack_bin (msgpack_packer *pk, const void *bin, size_t len)
{
    int rc = msgpack_pack_bin (pk, len);
    if (len)
        rc |= msgpack_pack_bin_body (pk, bin, len);
    return rc;
}

//  type, schema and meta: shared by the envelope and the publisher's map.
static int
s_pack_optional (msgpack_packer *pk, const herald_event_t *event)
{
    int rc = 0;
    if (event->type)
        rc |= s_pack_key (pk, "type") | s_pack_str (pk, event->type, event->type_len);
    if (event->has_schema)
        rc |= s_pack_key (pk, "schema") | msgpack_pack_uint64 (pk, event->schema);
    if (event->meta) {
        rc |= s_pack_key (pk, "meta") | msgpack_pack_map (pk, event->meta_count);
        size_t index;
        for (index = 0; index < event->meta_count; index++) {
            const herald_kv_t *kv = &event->meta [index];
            rc |= s_pack_str (pk, kv->key, kv->key_len)
               |  s_pack_str (pk, kv->value, kv->value_len);
        }
    }
    return rc;
}

int
herald_event_encode (const herald_event_t *event, msgpack_sbuffer *buffer)
{
    msgpack_packer pk;
    msgpack_packer_init (&pk, buffer, msgpack_sbuffer_write);
    int rc = msgpack_pack_map (&pk, s_key_count (event));
    rc |= s_pack_key (&pk, "id") | s_pack_bin (&pk, event->id, HERALD_ID_BYTES);
    rc |= s_pack_key (&pk, "topic") | s_pack_str (&pk, event->topic, event->topic_len);
    rc |= s_pack_key (&pk, "seq") | msgpack_pack_uint64 (&pk, event->seq);
    rc |= s_pack_key (&pk, "ver") | msgpack_pack_uint64 (&pk, event->ver);
    rc |= s_pack_key (&pk, "ts") | msgpack_pack_uint64 (&pk, event->ts);
    rc |= s_pack_optional (&pk, event);
    rc |= s_pack_key (&pk, "data") | s_pack_bin (&pk, event->data, event->data_len);
    return rc ? -1 : 0;
}


//  --------------------------------------------------------------------------
//  Safe unpacking

//  Read an n-byte big-endian integer at p.
static uint64_t
s_be (const uint8_t *p, size_t n)
{
    uint64_t value = 0;
    size_t index;
    for (index = 0; index < n; index++)
        value = (value << 8) | p [index];
    return value;
}

//  One object: a scalar is skipped by its size; a container recurses into
//  `items` children, each of which takes at least one byte, so a count
//  larger than the bytes left is refused before any work is done.
static bool
s_skip (const uint8_t *p, size_t len, size_t *offset, int depth)
{
    if (*offset >= len)
        return false;
    uint8_t b = p [(*offset)++];
    size_t left = len - *offset;
    uint64_t payload = 0;           //  bytes of payload to skip
    uint64_t items = 0;             //  child objects to skip
    size_t width = 0;               //  bytes of a length field
    bool container = false;

    if (b <= 0x7f || b >= 0xe0 || b == 0xc0 || b == 0xc2 || b == 0xc3)
        return true;
    if (b <= 0x8f) {
        items = (uint64_t) (b & 0x0f) * 2;
        container = true;
    }
    else
    if (b <= 0x9f) {
        items = b & 0x0f;
        container = true;
    }
    else
    if (b <= 0xbf)
        payload = b & 0x1f;
    else
    switch (b) {
        case 0xc4: case 0xd9:           width = 1; break;      //  bin8, str8
        case 0xc5: case 0xda:           width = 2; break;
        case 0xc6: case 0xdb:           width = 4; break;
        case 0xc7:                      width = 1; payload = 1; break;   //  ext + type
        case 0xc8:                      width = 2; payload = 1; break;
        case 0xc9:                      width = 4; payload = 1; break;
        case 0xca:                      payload = 4; break;
        case 0xcb:                      payload = 8; break;
        case 0xcc: case 0xd0:           payload = 1; break;
        case 0xcd: case 0xd1:           payload = 2; break;
        case 0xce: case 0xd2:           payload = 4; break;
        case 0xcf: case 0xd3:           payload = 8; break;
        case 0xd4:                      payload = 2; break;      //  fixext: type + data
        case 0xd5:                      payload = 3; break;
        case 0xd6:                      payload = 5; break;
        case 0xd7:                      payload = 9; break;
        case 0xd8:                      payload = 17; break;
        case 0xdc:                      width = 2; container = true; break;
        case 0xdd:                      width = 4; container = true; break;
        case 0xde:                      width = 2; container = true; break;
        case 0xdf:                      width = 4; container = true; break;
        default:                        return false;            //  0xc1
    }
    if (width) {
        if (left < width)
            return false;
        uint64_t n = s_be (p + *offset, width);
        *offset += width;
        left -= width;
        if (container)
            items = (b == 0xde || b == 0xdf) ? n * 2 : n;
        else
            payload += n;
    }
    if (!container) {
        if (payload > left)
            return false;
        *offset += (size_t) payload;
        return true;
    }
    if (depth >= S_MAX_DEPTH || items > left)
        return false;
    uint64_t index;
    for (index = 0; index < items; index++)
        if (!s_skip (p, len, offset, depth + 1))
            return false;
    return true;
}

bool
herald_event_skip (const void *bytes, size_t len, size_t *offset)
{
    return s_skip ((const uint8_t *) bytes, len, offset, 0);
}

herald_err
herald_event_unpack (const void *bytes, size_t len, msgpack_zone *zone,
                     msgpack_object *object, const char *field,
                     herald_error_t *err)
{
    if (!bytes || len == 0)
        return herald_error_set (err, HERALD_ERR_BAD_REQUEST, field, "empty body");
    size_t offset = 0;
    if (!s_skip ((const uint8_t *) bytes, len, &offset, 0))
        return herald_error_set (err, HERALD_ERR_BAD_REQUEST, field,
                                 "malformed, truncated or too deeply nested MessagePack");
    if (offset != len)
        return herald_error_set (err, HERALD_ERR_BAD_REQUEST, field,
                                 "%zu trailing bytes after the body", len - offset);
    offset = 0;
    msgpack_unpack_return rc = msgpack_unpack ((const char *) bytes, len, &offset,
                                               zone, object);
    if (rc == MSGPACK_UNPACK_NOMEM_ERROR)
        return herald_error_set (err, HERALD_ERR_NOMEM, field, "out of memory");
    if (rc != MSGPACK_UNPACK_SUCCESS)
        return herald_error_set (err, HERALD_ERR_BAD_REQUEST, field,
                                 "unreadable MessagePack");
    return HERALD_OK;
}


//  --------------------------------------------------------------------------
//  Map fields

static bool
s_key_is (const msgpack_object *key, const char *name, size_t name_len)
{
    return key->type == MSGPACK_OBJECT_STR
        && key->via.str.size == name_len
        && memcmp (key->via.str.ptr, name, name_len) == 0;
}

static int
s_str_compare (const void *a, const void *b)
{
    const msgpack_object_str *x = *(const msgpack_object_str *const *) a;
    const msgpack_object_str *y = *(const msgpack_object_str *const *) b;
    size_t common = x->size < y->size ? x->size : y->size;
    int rc = common ? memcmp (x->ptr, y->ptr, common) : 0;
    if (rc == 0)
        rc = (x->size > y->size) - (x->size < y->size);
    return rc;
}

//  True when two str keys of map are equal.  Small maps (every HWP/1 map)
//  are compared pairwise; large ones (a hostile body with thousands of
//  unknown keys) are sorted, so the check stays O(n log n).
static bool
s_has_duplicate_keys (const msgpack_object_map *map, msgpack_zone *zone, bool *nomem)
{
    uint32_t i, j;
    if (map->size <= 32) {
        for (i = 0; i < map->size; i++) {
            const msgpack_object *a = &map->ptr [i].key;
            if (a->type != MSGPACK_OBJECT_STR)
                continue;
            for (j = i + 1; j < map->size; j++)
                if (s_key_is (&map->ptr [j].key, a->via.str.ptr, a->via.str.size))
                    return true;
        }
        return false;
    }
    const msgpack_object_str **keys = (const msgpack_object_str **)
        msgpack_zone_malloc (zone, map->size * sizeof (*keys));
    if (!keys) {
        *nomem = true;
        return false;
    }
    size_t count = 0;
    for (i = 0; i < map->size; i++)
        if (map->ptr [i].key.type == MSGPACK_OBJECT_STR)
            keys [count++] = &map->ptr [i].key.via.str;
    qsort (keys, count, sizeof (*keys), s_str_compare);
    size_t index;
    for (index = 1; index < count; index++)
        if (s_str_compare (&keys [index - 1], &keys [index]) == 0)
            return true;
    return false;
}

bool
herald_event_key_is (const msgpack_object *key, const char *name)
{
    return s_key_is (key, name, strlen (name));
}

herald_err
herald_event_fields (const msgpack_object *map, herald_field_t *fields,
                     size_t count, msgpack_zone *zone, const char *prefix,
                     herald_error_t *err)
{
    char name [S_FIELD_MAX];
    size_t j;
    for (j = 0; j < count; j++)
        fields [j].value = NULL;
    if (map->type != MSGPACK_OBJECT_MAP)
        return herald_error_set (err, HERALD_ERR_BAD_REQUEST,
                                 prefix && *prefix ? prefix : "body", "not a map");
    uint32_t i;
    for (i = 0; i < map->via.map.size; i++) {
        const msgpack_object_kv *kv = &map->via.map.ptr [i];
        for (j = 0; j < count; j++)
            if (s_key_is (&kv->key, fields [j].name, strlen (fields [j].name))) {
                if (fields [j].value) {
                    s_field_name (name, prefix, fields [j].name);
                    return herald_error_set (err, HERALD_ERR_BAD_REQUEST, name,
                                             "key appears twice");
                }
                fields [j].value = &kv->val;
                break;
            }
    }
    bool nomem = false;
    if (s_has_duplicate_keys (&map->via.map, zone, &nomem))
        return herald_error_set (err, HERALD_ERR_BAD_REQUEST,
                                 prefix && *prefix ? prefix : "body",
                                 "a key appears twice");
    if (nomem)
        return herald_error_set (err, HERALD_ERR_NOMEM, prefix, "out of memory");
    return HERALD_OK;
}


//  --------------------------------------------------------------------------
//  Field readers: each checks one value's type and limits and names the
//  field in the error.  A NULL value is an absent key; nil counts as absent
//  for optional keys only.

static herald_err
s_read_uint (const msgpack_object *value, bool required, const char *prefix,
             const char *key, bool *has, uint64_t *out, herald_error_t *err)
{
    *has = false;
    if (!value || (!required && value->type == MSGPACK_OBJECT_NIL)) {
        if (!required)
            return HERALD_OK;
        return s_field_error (err, HERALD_ERR_BAD_REQUEST, prefix, key, "missing");
    }
    if (value->type != MSGPACK_OBJECT_POSITIVE_INTEGER)
        return s_field_error (err, HERALD_ERR_BAD_REQUEST, prefix, key,
                              "must be an unsigned integer");
    *has = true;
    *out = value->via.u64;
    return HERALD_OK;
}

static herald_err
s_read_str (const msgpack_object *value, bool required, const char *prefix,
            const char *key, size_t max, const char **out, size_t *out_len,
            herald_error_t *err)
{
    *out = NULL;
    *out_len = 0;
    if (!value || (!required && value->type == MSGPACK_OBJECT_NIL)) {
        if (!required)
            return HERALD_OK;
        return s_field_error (err, HERALD_ERR_BAD_REQUEST, prefix, key, "missing");
    }
    if (value->type != MSGPACK_OBJECT_STR)
        return s_field_error (err, HERALD_ERR_BAD_REQUEST, prefix, key, "must be a str");
    if (value->via.str.size > max)
        return s_field_error (err, HERALD_ERR_BAD_REQUEST, prefix, key,
                              "longer than %zu bytes", max);
    if (!herald_utf8_valid (value->via.str.ptr, value->via.str.size))
        return s_field_error (err, HERALD_ERR_BAD_REQUEST, prefix, key, "not valid UTF-8");
    //  A present empty str must not read as absent
    *out = value->via.str.size ? value->via.str.ptr : "";
    *out_len = value->via.str.size;
    return HERALD_OK;
}

static herald_err
s_read_meta (const msgpack_object *value, const char *prefix, msgpack_zone *zone,
             herald_event_t *event, herald_error_t *err)
{
    if (!value || value->type == MSGPACK_OBJECT_NIL)
        return HERALD_OK;
    if (value->type != MSGPACK_OBJECT_MAP)
        return s_field_error (err, HERALD_ERR_BAD_REQUEST, prefix, "meta", "must be a map");
    const msgpack_object_map *map = &value->via.map;
    if (map->size > HERALD_META_MAX_ENTRIES)
        return s_field_error (err, HERALD_ERR_BAD_REQUEST, prefix, "meta",
                              "more than %d entries", HERALD_META_MAX_ENTRIES);
    bool nomem = false;
    if (s_has_duplicate_keys (map, zone, &nomem))
        return s_field_error (err, HERALD_ERR_BAD_REQUEST, prefix, "meta", "a key appears twice");
    //  One extra slot so an empty meta map is still a non-NULL pointer
    herald_kv_t *entries = (herald_kv_t *)
        msgpack_zone_malloc (zone, (map->size + 1) * sizeof (herald_kv_t));
    if (!entries)
        return s_field_error (err, HERALD_ERR_NOMEM, prefix, "meta", "out of memory");
    uint32_t index;
    for (index = 0; index < map->size; index++) {
        const msgpack_object *key = &map->ptr [index].key;
        const msgpack_object *val = &map->ptr [index].val;
        if (key->type != MSGPACK_OBJECT_STR || val->type != MSGPACK_OBJECT_STR)
            return s_field_error (err, HERALD_ERR_BAD_REQUEST, prefix, "meta",
                                  "keys and values must be str");
        if (key->via.str.size > HERALD_META_KEY_MAX)
            return s_field_error (err, HERALD_ERR_BAD_REQUEST, prefix, "meta",
                                  "key longer than %d bytes", HERALD_META_KEY_MAX);
        if (val->via.str.size > HERALD_META_VALUE_MAX)
            return s_field_error (err, HERALD_ERR_BAD_REQUEST, prefix, "meta",
                                  "value longer than %d bytes", HERALD_META_VALUE_MAX);
        if (!herald_utf8_valid (key->via.str.ptr, key->via.str.size)
        ||  !herald_utf8_valid (val->via.str.ptr, val->via.str.size))
            return s_field_error (err, HERALD_ERR_BAD_REQUEST, prefix, "meta",
                                  "keys and values must be valid UTF-8");
        entries [index].key = key->via.str.ptr;
        entries [index].key_len = key->via.str.size;
        entries [index].value = val->via.str.ptr;
        entries [index].value_len = val->via.str.size;
    }
    event->meta = entries;
    event->meta_count = map->size;
    return HERALD_OK;
}

//  The fields an envelope and a publisher's map share, in the order keys
//  are validated (so the first bad field named is predictable).
enum {
    S_F_ID, S_F_TOPIC, S_F_TYPE, S_F_SCHEMA, S_F_META, S_F_DATA,
    S_F_SEQ, S_F_VER, S_F_TS, S_F_EXPECT, S_F_COUNT
};

static herald_err
s_read_event (herald_event_t *event, const msgpack_object *object, bool stored,
              msgpack_zone *zone, const char *prefix, herald_error_t *err)
{
    herald_field_t fields [S_F_COUNT] = {
        [S_F_ID] = { "id" },        [S_F_TOPIC] = { "topic" },
        [S_F_TYPE] = { "type" },    [S_F_SCHEMA] = { "schema" },
        [S_F_META] = { "meta" },    [S_F_DATA] = { "data" },
        [S_F_SEQ] = { "seq" },      [S_F_VER] = { "ver" },
        [S_F_TS] = { "ts" },        [S_F_EXPECT] = { "expect" }
    };
    memset (event, 0, sizeof (*event));
    //  All ten are looked for (a duplicate of any is refused), but only the
    //  stored ones (seq, ver, ts) or the publisher's (expect) are read: a
    //  publisher's seq, ver and ts are the broker's to set, and ignored.
    herald_err rc = herald_event_fields (object, fields, S_F_COUNT, zone, prefix, err);
    if (rc)
        return rc;
    bool has;

    const msgpack_object *id = fields [S_F_ID].value;
    if (!id)
        return s_field_error (err, HERALD_ERR_BAD_REQUEST, prefix, "id", "missing");
    if (id->type != MSGPACK_OBJECT_BIN || id->via.bin.size != HERALD_ID_BYTES)
        return s_field_error (err, HERALD_ERR_BAD_REQUEST, prefix, "id",
                              "must be a bin of %d bytes", HERALD_ID_BYTES);
    memcpy (event->id, id->via.bin.ptr, HERALD_ID_BYTES);

    const msgpack_object *topic = fields [S_F_TOPIC].value;
    if (!topic)
        return s_field_error (err, HERALD_ERR_BAD_REQUEST, prefix, "topic", "missing");
    if (topic->type != MSGPACK_OBJECT_STR)
        return s_field_error (err, HERALD_ERR_BAD_REQUEST, prefix, "topic", "must be a str");
    if (!herald_topic_valid (topic->via.str.ptr, topic->via.str.size))
        return s_field_error (err, HERALD_ERR_BAD_REQUEST, prefix, "topic",
            "must be 1-255 bytes of UTF-8 without NUL, not beginning with '$'");
    event->topic = topic->via.str.ptr;
    event->topic_len = topic->via.str.size;

    if (stored) {
        if ((rc = s_read_uint (fields [S_F_SEQ].value, true, prefix, "seq",
                               &has, &event->seq, err))
        ||  (rc = s_read_uint (fields [S_F_VER].value, true, prefix, "ver",
                               &has, &event->ver, err))
        ||  (rc = s_read_uint (fields [S_F_TS].value, true, prefix, "ts",
                               &has, &event->ts, err)))
            return rc;
        if (event->seq == 0 || event->ver == 0)
            return s_field_error (err, HERALD_ERR_BAD_REQUEST, prefix,
                                  event->seq == 0 ? "seq" : "ver", "must be >= 1");
    }
    if ((rc = s_read_str (fields [S_F_TYPE].value, false, prefix, "type",
                          HERALD_TYPE_MAX, &event->type, &event->type_len, err))
    ||  (rc = s_read_uint (fields [S_F_SCHEMA].value, false, prefix, "schema",
                           &event->has_schema, &event->schema, err))
    ||  (rc = s_read_meta (fields [S_F_META].value, prefix, zone, event, err)))
        return rc;

    const msgpack_object *data = fields [S_F_DATA].value;
    if (!data)
        return s_field_error (err, HERALD_ERR_BAD_REQUEST, prefix, "data", "missing");
    if (data->type != MSGPACK_OBJECT_BIN)
        return s_field_error (err, HERALD_ERR_BAD_REQUEST, prefix, "data", "must be a bin");
    event->data = data->via.bin.size ? (const uint8_t *) data->via.bin.ptr : NULL;
    event->data_len = data->via.bin.size;

    if (!stored)
        rc = s_read_uint (fields [S_F_EXPECT].value, false, prefix, "expect",
                          &event->has_expect, &event->expect, err);
    return rc;
}

herald_err
herald_event_decode (herald_event_t *event, const void *bytes, size_t len,
                     msgpack_zone *zone, herald_error_t *err)
{
    msgpack_object object;
    memset (event, 0, sizeof (*event));
    herald_err rc = herald_event_unpack (bytes, len, zone, &object, "envelope", err);
    if (rc == HERALD_OK)
        rc = s_read_event (event, &object, true, zone, "", err);
    if (rc == HERALD_OK)
        event->encoded_size = len;
    return rc;
}

//  A packer that writes nothing and counts what it would have written.
static int
s_count_write (void *data, const char *buf, size_t len)
{
    (void) buf;
    *(size_t *) data += len;
    return 0;
}

//  encoded_size here is the object's canonical packed size: exact for the
//  shortest-form encoders clients use.  herald_msg_decode overwrites it
//  with the byte span measured in the body as received.
herald_err
herald_event_from_object_unsized (herald_event_t *event, const msgpack_object *object,
                                  msgpack_zone *zone, const char *field_prefix,
                                  herald_error_t *err)
{
    return s_read_event (event, object, false, zone, field_prefix, err);
}

herald_err
herald_event_from_object (herald_event_t *event, const msgpack_object *object,
                          msgpack_zone *zone, const char *field_prefix,
                          herald_error_t *err)
{
    herald_err rc = herald_event_from_object_unsized (event, object, zone, field_prefix, err);
    if (rc == HERALD_OK) {
        size_t size = 0;
        msgpack_packer counter;
        msgpack_packer_init (&counter, &size, s_count_write);
        msgpack_pack_object (&counter, *object);
        event->encoded_size = size;
    }
    return rc;
}


//  --------------------------------------------------------------------------
//  Peek

//  Match the literal bytes lit[0..n) at *offset.
static bool
s_peek_literal (const uint8_t *p, size_t len, size_t *offset, const char *lit, size_t n)
{
    if (len - *offset < n || memcmp (p + *offset, lit, n) != 0)
        return false;
    *offset += n;
    return true;
}

//  A uint in any of MessagePack's unsigned forms.
static bool
s_peek_uint (const uint8_t *p, size_t len, size_t *offset, uint64_t *value)
{
    if (*offset >= len)
        return false;
    uint8_t b = p [(*offset)++];
    size_t width;
    if (b <= 0x7f) {
        *value = b;
        return true;
    }
    switch (b) {
        case 0xcc: width = 1; break;
        case 0xcd: width = 2; break;
        case 0xce: width = 4; break;
        case 0xcf: width = 8; break;
        default:   return false;
    }
    if (len - *offset < width)
        return false;
    *value = s_be (p + *offset, width);
    *offset += width;
    return true;
}

//  The store calls this on every event of a full scan: straight-line
//  compares, no allocation, every read checked against len.
bool
herald_event_peek (const void *bytes, size_t len, const char **topic,
                   size_t *topic_len, uint64_t *seq, uint64_t *ver, uint64_t *ts)
{
    const uint8_t *p = (const uint8_t *) bytes;
    size_t offset = 0;
    uint64_t count, v_seq, v_ver, v_ts, n;
    if (!p || len < 1)
        return false;
    uint8_t b = p [offset++];
    if (b >= 0x80 && b <= 0x8f)
        count = b & 0x0f;
    else
    if ((b == 0xde && len - offset >= 2) || (b == 0xdf && len - offset >= 4)) {
        size_t width = b == 0xde ? 2 : 4;
        count = s_be (p + offset, width);
        offset += width;
    }
    else
        return false;
    //  id, topic, seq, ver, ts and data at least
    if (count < 6)
        return false;
    if (!s_peek_literal (p, len, &offset, "\xa2" "id" "\xc4\x10", 5)
    ||  len - offset < HERALD_ID_BYTES)
        return false;
    offset += HERALD_ID_BYTES;
    if (!s_peek_literal (p, len, &offset, "\xa5" "topic", 6) || offset >= len)
        return false;
    b = p [offset++];
    if (b >= 0xa0 && b <= 0xbf)
        n = b & 0x1f;
    else
    if (b == 0xd9 && offset < len)
        n = p [offset++];
    else
        return false;
    if (n < 1 || n > len - offset)
        return false;
    const char *t = (const char *) p + offset;
    offset += n;
    if (!s_peek_literal (p, len, &offset, "\xa3" "seq", 4)
    ||  !s_peek_uint (p, len, &offset, &v_seq)
    ||  !s_peek_literal (p, len, &offset, "\xa3" "ver", 4)
    ||  !s_peek_uint (p, len, &offset, &v_ver)
    ||  !s_peek_literal (p, len, &offset, "\xa2" "ts", 3)
    ||  !s_peek_uint (p, len, &offset, &v_ts))
        return false;
    if (topic)
        *topic = t;
    if (topic_len)
        *topic_len = n;
    if (seq)
        *seq = v_seq;
    if (ver)
        *ver = v_ver;
    if (ts)
        *ts = v_ts;
    return true;
}
