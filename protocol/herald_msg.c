/*  =========================================================================
    herald_msg - HWP/1 message bodies: command names and decoding

    A message is a command frame and a MessagePack map body (docs/protocol.md,
    "Messages on api").  This file names the commands and decodes and
    validates bodies; herald_msg_encode.c writes them.

    DESIGN
    Decoding runs in three steps, and the order is what a client sees in
    its ERROR:
      1. herald_event_unpack: the body must be exactly one well-formed
         MessagePack object (a pre-scan bounds every declared length, so a
         hostile header cannot make msgpack-c allocate gigabytes).
      2. rid: read first, on its own, so every later error can echo it.  In
         a request a missing, nil, non-uint or repeated rid is bad_request
         with rid nil.
      3. the command's own keys, in a fixed order; unknown keys are ignored,
         a str key present twice is bad_request, nil counts as absent for
         optional keys only.
    PUBLISH measures each event's size as received, in bytes of the body:
    after unpacking, the raw map is walked once more with the same bounded
    skip the pre-scan uses, to find the span of every element of `events`.
    That is exact whatever encoder the client used (non-canonical integer
    widths, str8 keys, nil-valued keys all count).
    =========================================================================
*/

#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include "herald_msg.h"

//  Longest str accepted where the contract sets no limit (node ids,
//  endpoints, client names, roles, reasons): generous, but bounded.
#define S_NAME_MAX      1024
//  Longest ERROR message accepted from a broker.
#define S_MESSAGE_MAX   65536

//  Command frames, indexed by herald_msg_type_t.
static const char *s_commands [] = {
    [HERALD_MSG_INVALID]        = NULL,
    [HERALD_MSG_PUBLISH]        = "PUBLISH",
    [HERALD_MSG_REPLAY]         = "REPLAY",
    [HERALD_MSG_READ]           = "READ",
    [HERALD_MSG_CREDIT]         = "CREDIT",
    [HERALD_MSG_CANCEL]         = "CANCEL",
    [HERALD_MSG_STATUS]         = "STATUS",
    [HERALD_MSG_HELLO]          = "HELLO",
    [HERALD_MSG_ACL]            = "ACL",
    [HERALD_MSG_ACK]            = "ACK",
    [HERALD_MSG_EVENTS]         = "EVENTS",
    [HERALD_MSG_END]            = "END",
    [HERALD_MSG_STATUS_REPLY]   = "STATUS",
    [HERALD_MSG_WELCOME]        = "WELCOME",
    [HERALD_MSG_ERROR]          = "ERROR",
    [HERALD_MSG_ACL_REPLY]      = "ACL",
    [HERALD_MSG_HEARTBEAT]      = "$hb"
};

//  NULL for HERALD_MSG_INVALID and for values outside the enum.
const char *
herald_msg_command (herald_msg_type_t type)
{
    if ((unsigned) type < sizeof (s_commands) / sizeof (s_commands [0]))
        return s_commands [type];
    return NULL;
}

//  Commands are matched exactly: "publish" is unknown, as is "STATUS\0".
herald_msg_type_t
herald_msg_type_from_command (const void *command, size_t len, bool reply)
{
    int first = reply ? HERALD_MSG_ACK : HERALD_MSG_PUBLISH;
    int last = reply ? HERALD_MSG_HEARTBEAT : HERALD_MSG_ACL;
    int type;
    if (!command)
        return HERALD_MSG_INVALID;
    for (type = first; type <= last; type++)
        if (strlen (s_commands [type]) == len
        &&  memcmp (s_commands [type], command, len) == 0)
            return (herald_msg_type_t) type;
    return HERALD_MSG_INVALID;
}


//  --------------------------------------------------------------------------
//  Field readers.  value is NULL when the key is absent; nil is absent for
//  optional keys and wrong for required ones.

static bool
s_absent (const msgpack_object *value)
{
    return !value || value->type == MSGPACK_OBJECT_NIL;
}

static herald_err
s_uint (const msgpack_object *value, bool required, const char *name,
        bool *has, uint64_t *out, herald_error_t *err)
{
    bool dummy;
    if (!has)
        has = &dummy;
    *has = false;
    if (s_absent (value) && !required)
        return HERALD_OK;
    if (!value)
        return herald_error_set (err, HERALD_ERR_BAD_REQUEST, name, "missing");
    if (value->type != MSGPACK_OBJECT_POSITIVE_INTEGER)
        return herald_error_set (err, HERALD_ERR_BAD_REQUEST, name,
                                 "must be an unsigned integer");
    *has = true;
    *out = value->via.u64;
    return HERALD_OK;
}

//  A present str, even empty, gets a non-NULL ptr; absent leaves ptr NULL.
static herald_err
s_str (const msgpack_object *value, bool required, const char *name, size_t max,
       herald_str_t *out, herald_error_t *err)
{
    out->ptr = NULL;
    out->len = 0;
    if (s_absent (value) && !required)
        return HERALD_OK;
    if (!value)
        return herald_error_set (err, HERALD_ERR_BAD_REQUEST, name, "missing");
    if (value->type != MSGPACK_OBJECT_STR)
        return herald_error_set (err, HERALD_ERR_BAD_REQUEST, name, "must be a str");
    if (value->via.str.size > max)
        return herald_error_set (err, HERALD_ERR_BAD_REQUEST, name,
                                 "longer than %zu bytes", max);
    if (!herald_utf8_valid (value->via.str.ptr, value->via.str.size))
        return herald_error_set (err, HERALD_ERR_BAD_REQUEST, name, "not valid UTF-8");
    out->ptr = value->via.str.size ? value->via.str.ptr : "";
    out->len = value->via.str.size;
    return HERALD_OK;
}

//  Credit: absent is the default, more than the cap counts as the cap.
static herald_err
s_credit (const msgpack_object *value, bool required, uint64_t *credit,
          herald_error_t *err)
{
    bool has;
    herald_err rc = s_uint (value, required, "credit", &has, credit, err);
    if (rc == HERALD_OK && !has)
        *credit = HERALD_CREDIT_DEFAULT;
    if (*credit > HERALD_CREDIT_MAX)
        *credit = HERALD_CREDIT_MAX;
    return rc;
}

//  An optional bool (absent or nil: false).
static herald_err
s_bool (const msgpack_object *value, const char *name, bool *out, herald_error_t *err)
{
    *out = false;
    if (s_absent (value))
        return HERALD_OK;
    if (value->type != MSGPACK_OBJECT_BOOLEAN)
        return herald_error_set (err, HERALD_ERR_BAD_REQUEST, name, "must be a bool");
    *out = value->via.boolean;
    return HERALD_OK;
}

//  A required array; *items points at its elements.
static herald_err
s_array (const msgpack_object *value, const char *name, const msgpack_object **items,
         size_t *count, herald_error_t *err)
{
    *items = NULL;
    *count = 0;
    if (!value)
        return herald_error_set (err, HERALD_ERR_BAD_REQUEST, name, "missing");
    if (value->type != MSGPACK_OBJECT_ARRAY)
        return herald_error_set (err, HERALD_ERR_BAD_REQUEST, name, "must be an array");
    *items = value->via.array.ptr;
    *count = value->via.array.size;
    return HERALD_OK;
}

//  An array of uint copied into the zone.
static herald_err
s_uint_array (const msgpack_object *value, const char *name, msgpack_zone *zone,
              const uint64_t **out, size_t *count, herald_error_t *err)
{
    const msgpack_object *items = NULL;
    herald_err rc = s_array (value, name, &items, count, err);
    if (rc)
        return rc;
    uint64_t *values = (uint64_t *) msgpack_zone_malloc (zone, (*count + 1) * sizeof (uint64_t));
    if (!values)
        return herald_error_set (err, HERALD_ERR_NOMEM, name, "out of memory");
    size_t index;
    for (index = 0; index < *count; index++) {
        if (items [index].type != MSGPACK_OBJECT_POSITIVE_INTEGER) {
            char item [64];
            snprintf (item, sizeof (item), "%s[%zu]", name, index);
            return herald_error_set (err, HERALD_ERR_BAD_REQUEST, item,
                                     "must be an unsigned integer");
        }
        values [index] = items [index].via.u64;
    }
    *out = values;
    return HERALD_OK;
}

//  An array of at most max str of at most max_len bytes, copied into the
//  zone as herald_str_t.  An empty array gives NULL and 0.
static herald_err
s_str_array (const msgpack_object *value, const char *name, size_t max, size_t max_len,
             msgpack_zone *zone, herald_str_t **out, size_t *count, herald_error_t *err)
{
    const msgpack_object *items = NULL;
    herald_err rc = s_array (value, name, &items, count, err);
    if (rc)
        return rc;
    if (*count > max)
        return herald_error_set (err, HERALD_ERR_BAD_REQUEST, name,
                                 "more than %zu entries", max);
    *out = NULL;
    if (*count == 0)
        return HERALD_OK;
    herald_str_t *strs = (herald_str_t *) msgpack_zone_malloc (zone, *count * sizeof (herald_str_t));
    if (!strs)
        return herald_error_set (err, HERALD_ERR_NOMEM, name, "out of memory");
    size_t index;
    for (index = 0; index < *count; index++) {
        char item [64];
        snprintf (item, sizeof (item), "%s[%zu]", name, index);
        if ((rc = s_str (&items [index], true, item, max_len, &strs [index], err)))
            return rc;
    }
    *out = strs;
    return HERALD_OK;
}


//  `losses` of WELCOME and STATUS (an addition to HWP/1, docs/protocol.md):
//  absent or nil is none; otherwise an array of maps, each with uint
//  lineage, lost_after and ts (other keys ignored), copied into the zone.
static herald_err
s_losses (const msgpack_object *value, msgpack_zone *zone, const herald_loss_t **out,
          size_t *count, herald_error_t *err)
{
    *out = NULL;
    *count = 0;
    if (s_absent (value))
        return HERALD_OK;
    const msgpack_object *items = NULL;
    size_t size = 0;
    herald_err rc = s_array (value, "losses", &items, &size, err);
    if (rc)
        return rc;
    herald_loss_t *losses = (herald_loss_t *) msgpack_zone_malloc (
        zone, (size + 1) * sizeof (herald_loss_t));
    if (!losses)
        return herald_error_set (err, HERALD_ERR_NOMEM, "losses", "out of memory");
    size_t index;
    for (index = 0; index < size; index++) {
        char prefix [32], name [64];
        snprintf (prefix, sizeof (prefix), "losses[%zu]", index);
        herald_field_t fields [] = { { "lineage" }, { "lost_after" }, { "ts" } };
        if ((rc = herald_event_fields (&items [index], fields, 3, zone, prefix, err)))
            return rc;
        uint64_t *targets [] = {
            &losses [index].lineage, &losses [index].lost_after, &losses [index].ts
        };
        size_t field;
        for (field = 0; field < 3; field++) {
            snprintf (name, sizeof (name), "%s.%s", prefix, fields [field].name);
            if ((rc = s_uint (fields [field].value, true, name, NULL, targets [field], err)))
                return rc;
        }
    }
    *out = losses;
    *count = size;
    return HERALD_OK;
}


//  --------------------------------------------------------------------------
//  rid

//  Read the body's rid into self and err before anything else is checked.
//  Only a single uint counts as readable: a repeated rid is ambiguous.
static void
s_read_rid (herald_msg_t *self, const msgpack_object *root, herald_error_t *err)
{
    const msgpack_object *rid = NULL;
    uint32_t index, seen = 0;
    for (index = 0; index < root->via.map.size; index++) {
        const msgpack_object *key = &root->via.map.ptr [index].key;
        if (key->type == MSGPACK_OBJECT_STR && key->via.str.size == 3
        &&  memcmp (key->via.str.ptr, "rid", 3) == 0) {
            rid = &root->via.map.ptr [index].val;
            seen++;
        }
    }
    if (seen == 1 && rid->type == MSGPACK_OBJECT_POSITIVE_INTEGER) {
        self->has_rid = err->has_rid = true;
        self->rid = err->rid = rid->via.u64;
    }
}

//  A request's rid is required; the reason names what was wrong with it.
static herald_err
s_require_rid (const herald_msg_t *self, const msgpack_object *rid, herald_error_t *err)
{
    if (self->has_rid)
        return HERALD_OK;
    if (!rid)
        return herald_error_set (err, HERALD_ERR_BAD_REQUEST, "rid", "missing");
    return herald_error_set (err, HERALD_ERR_BAD_REQUEST, "rid",
                             "must be one unsigned integer");
}


//  --------------------------------------------------------------------------
//  PUBLISH

//  Read a str header at *offset; false if the object there is not a str.
static bool
s_raw_str (const uint8_t *p, size_t len, size_t *offset, const uint8_t **str, size_t *n)
{
    if (*offset >= len)
        return false;
    uint8_t b = p [(*offset)++];
    size_t width = 0, index;
    uint64_t size = 0;
    if (b >= 0xa0 && b <= 0xbf)
        size = b & 0x1f;
    else
    if (b == 0xd9 || b == 0xda || b == 0xdb)
        width = (size_t) 1 << (b - 0xd9);
    else
        return false;
    if (len - *offset < width)
        return false;
    for (index = 0; index < width; index++)
        size = (size << 8) | p [(*offset)++];
    if (size > len - *offset)
        return false;
    *str = p + *offset;
    *n = (size_t) size;
    *offset += (size_t) size;
    return true;
}

//  Read a map (or array) header at *offset into its entry count.
static bool
s_raw_count (const uint8_t *p, size_t len, size_t *offset, bool map, uint64_t *count)
{
    if (*offset >= len)
        return false;
    uint8_t b = p [(*offset)++];
    uint8_t fix = map ? 0x80 : 0x90;
    uint8_t b16 = map ? 0xde : 0xdc;
    size_t width, index;
    if ((b & 0xf0) == fix) {
        *count = b & 0x0f;
        return true;
    }
    if (b == b16)
        width = 2;
    else
    if (b == b16 + 1)
        width = 4;
    else
        return false;
    if (len - *offset < width)
        return false;
    *count = 0;
    for (index = 0; index < width; index++)
        *count = (*count << 8) | p [(*offset)++];
    return true;
}

//  Bytes each element of the body's `events` array takes, as received.
//  Runs after a successful unpack, so the walk cannot fail on a body the
//  unpacker accepted; it still checks every step.
static bool
s_event_spans (const void *body, size_t len, size_t count, size_t *spans)
{
    const uint8_t *p = (const uint8_t *) body;
    size_t offset = 0;
    uint64_t pairs, index, items;
    if (!s_raw_count (p, len, &offset, true, &pairs))
        return false;
    for (index = 0; index < pairs; index++) {
        size_t key = offset, n;
        const uint8_t *str;
        bool events = s_raw_str (p, len, &key, &str, &n)
                   && n == 6 && memcmp (str, "events", 6) == 0;
        if (!herald_event_skip (p, len, &offset))
            return false;
        if (!events) {
            if (!herald_event_skip (p, len, &offset))
                return false;
            continue;
        }
        if (!s_raw_count (p, len, &offset, false, &items) || items != count)
            return false;
        size_t item;
        for (item = 0; item < count; item++) {
            size_t start = offset;
            if (!herald_event_skip (p, len, &offset))
                return false;
            spans [item] = offset - start;
        }
        return true;
    }
    return false;
}

//  Batch-level checks first (events present, 1..max_batch), then each event
//  in order; the first failing event names the error.  Size comes before
//  fields, so an event both too large and malformed is too_large.
//  "events[index]": the field prefix of one event.  Written by hand
//  because it is made for every event of every PUBLISH, and snprintf was
//  a visible share of the broker's time on a publish storm.
static void
s_event_prefix (char out [32], size_t index)
{
    char digits [24];
    size_t count = 0;
    do {
        digits [count++] = (char) ('0' + index % 10);
        index /= 10;
    } while (index);
    memcpy (out, "events[", 7);
    size_t used = 7;
    while (count)
        out [used++] = digits [--count];
    out [used++] = ']';
    out [used] = '\0';
}

static herald_err
s_decode_publish (herald_msg_t *self, const msgpack_object *root, const void *body,
                  size_t len, const herald_limits_t *limits, msgpack_zone *zone,
                  herald_error_t *err)
{
    herald_field_t fields [] = { { "rid" }, { "events" } };
    herald_err rc = herald_event_fields (root, fields, 2, zone, "", err);
    if (rc || (rc = s_require_rid (self, fields [0].value, err)))
        return rc;
    const msgpack_object *items = NULL;
    size_t count = 0;
    if ((rc = s_array (fields [1].value, "events", &items, &count, err)))
        return rc;
    if (count == 0)
        return herald_error_set (err, HERALD_ERR_BAD_REQUEST, "events", "empty batch");
    if (count > limits->max_batch)
        return herald_error_set (err, HERALD_ERR_TOO_LARGE, "events",
                                 "%zu events, more than max_batch %zu",
                                 count, limits->max_batch);
    size_t *spans = (size_t *) msgpack_zone_malloc (zone, count * sizeof (size_t));
    herald_event_t *events = (herald_event_t *)
        msgpack_zone_malloc (zone, count * sizeof (herald_event_t));
    if (!spans || !events)
        return herald_error_set (err, HERALD_ERR_NOMEM, "events", "out of memory");
    if (!s_event_spans (body, len, count, spans))
        return herald_error_set (err, HERALD_ERR_BAD_REQUEST, "events",
                                 "cannot measure the events");
    size_t index;
    for (index = 0; index < count; index++) {
        char prefix [32];
        s_event_prefix (prefix, index);
        if (spans [index] > limits->max_event_bytes)
            return herald_error_set (err, HERALD_ERR_TOO_LARGE, prefix,
                                     "%zu bytes, more than max_event_bytes %zu",
                                     spans [index], limits->max_event_bytes);
        if (items [index].type != MSGPACK_OBJECT_MAP)
            return herald_error_set (err, HERALD_ERR_BAD_REQUEST, prefix, "not a map");
        rc = herald_event_from_object_unsized (&events [index], &items [index], zone, prefix,
                                               err);
        if (rc)
            return rc;
        events [index].encoded_size = spans [index];
    }
    self->publish.events = events;
    self->publish.count = count;
    return HERALD_OK;
}


//  --------------------------------------------------------------------------
//  The other requests

//  No start means from 1 (has_from stays false); from 0, from with
//  from_ts, to with until_ts and to < from are bad_request.
static herald_err
s_decode_replay (herald_msg_t *self, const msgpack_object *root, msgpack_zone *zone,
                 herald_error_t *err)
{
    herald_field_t fields [] = {
        { "rid" }, { "from" }, { "from_ts" }, { "to" }, { "until_ts" },
        { "prefixes" }, { "credit" }, { "pack" }
    };
    herald_err rc = herald_event_fields (root, fields, 8, zone, "", err);
    if (rc || (rc = s_require_rid (self, fields [0].value, err)))
        return rc;
    __typeof__ (self->replay) *replay = &self->replay;
    if ((rc = s_uint (fields [1].value, false, "from", &replay->has_from, &replay->from, err))
    ||  (rc = s_uint (fields [2].value, false, "from_ts", &replay->has_from_ts,
                      &replay->from_ts, err))
    ||  (rc = s_uint (fields [3].value, false, "to", &replay->has_to, &replay->to, err))
    ||  (rc = s_uint (fields [4].value, false, "until_ts", &replay->has_until_ts,
                      &replay->until_ts, err)))
        return rc;
    if (replay->has_from && replay->has_from_ts)
        return herald_error_set (err, HERALD_ERR_BAD_REQUEST, "from",
                                 "from and from_ts together");
    if (replay->has_from && replay->from == 0)
        return herald_error_set (err, HERALD_ERR_BAD_REQUEST, "from", "must be >= 1");
    if (!replay->has_from && !replay->has_from_ts)
        replay->from = 1;
    if (replay->has_to && replay->has_until_ts)
        return herald_error_set (err, HERALD_ERR_BAD_REQUEST, "to",
                                 "to and until_ts together");
    if (replay->has_to && !replay->has_from_ts && replay->to < replay->from)
        return herald_error_set (err, HERALD_ERR_BAD_REQUEST, "to", "less than from");
    if (!s_absent (fields [5].value)
    &&  (rc = s_str_array (fields [5].value, "prefixes", HERALD_PREFIXES_MAX,
                           HERALD_TOPIC_MAX, zone, &replay->prefixes,
                           &replay->prefix_count, err)))
        return rc;
    if ((rc = s_bool (fields [7].value, "pack", &replay->pack, err)))
        return rc;
    return s_credit (fields [6].value, false, &replay->credit, err);
}

static herald_err
s_decode_read (herald_msg_t *self, const msgpack_object *root, msgpack_zone *zone,
               herald_error_t *err)
{
    herald_field_t fields [] = {
        { "rid" }, { "topic" }, { "from_ver" }, { "to_ver" }, { "credit" }, { "pack" }
    };
    herald_err rc = herald_event_fields (root, fields, 6, zone, "", err);
    if (rc || (rc = s_require_rid (self, fields [0].value, err)))
        return rc;
    __typeof__ (self->read) *read = &self->read;
    const msgpack_object *topic = fields [1].value;
    if (!topic)
        return herald_error_set (err, HERALD_ERR_BAD_REQUEST, "topic", "missing");
    if (topic->type != MSGPACK_OBJECT_STR
    ||  !herald_topic_valid (topic->via.str.ptr, topic->via.str.size))
        return herald_error_set (err, HERALD_ERR_BAD_REQUEST, "topic",
            "must be 1-255 bytes of UTF-8 without NUL, not beginning with '$'");
    read->topic.ptr = topic->via.str.ptr;
    read->topic.len = topic->via.str.size;
    bool has_from;
    if ((rc = s_uint (fields [2].value, false, "from_ver", &has_from, &read->from_ver, err))
    ||  (rc = s_uint (fields [3].value, false, "to_ver", &read->has_to_ver,
                      &read->to_ver, err)))
        return rc;
    if (!has_from)
        read->from_ver = 1;
    else
    if (read->from_ver == 0)
        return herald_error_set (err, HERALD_ERR_BAD_REQUEST, "from_ver", "must be >= 1");
    if (read->has_to_ver && read->to_ver < read->from_ver)
        return herald_error_set (err, HERALD_ERR_BAD_REQUEST, "to_ver", "less than from_ver");
    if ((rc = s_bool (fields [5].value, "pack", &read->pack, err)))
        return rc;
    return s_credit (fields [4].value, false, &read->credit, err);
}

//  CREDIT, CANCEL and STATUS: rid, and credit for CREDIT.
static herald_err
s_decode_simple (herald_msg_t *self, const msgpack_object *root, msgpack_zone *zone,
                 herald_error_t *err)
{
    herald_field_t fields [] = { { "rid" }, { "credit" } };
    size_t count = self->type == HERALD_MSG_CREDIT ? 2 : 1;
    herald_err rc = herald_event_fields (root, fields, count, zone, "", err);
    if (rc || (rc = s_require_rid (self, fields [0].value, err)))
        return rc;
    if (self->type == HERALD_MSG_CREDIT)
        rc = s_credit (fields [1].value, true, &self->credit.credit, err);
    return rc;
}

//  proto is checked before anything else the body holds: a client from a
//  later version must learn `unsupported`, whatever its other keys are.
static herald_err
s_decode_hello (herald_msg_t *self, const msgpack_object *root, msgpack_zone *zone,
                herald_error_t *err)
{
    herald_field_t fields [] = { { "rid" }, { "proto" }, { "client" } };
    herald_err rc = herald_event_fields (root, fields, 3, zone, "", err);
    if (rc || (rc = s_require_rid (self, fields [0].value, err)))
        return rc;
    if ((rc = s_uint (fields [1].value, true, "proto", NULL, &self->hello.proto, err)))
        return rc;
    if (self->hello.proto != HERALD_PROTO_VERSION)
        return herald_error_set (err, HERALD_ERR_UNSUPPORTED, "proto",
                                 "protocol %" PRIu64 " is not supported; this broker speaks %d",
                                 self->hello.proto, HERALD_PROTO_VERSION);
    return s_str (fields [2].value, false, "client", HERALD_TOPIC_MAX, &self->hello.client, err);
}

//  ACL (request and reply): rid and op, "reload" or "show".  The reply's
//  other keys are the caller's to read from the body.
static herald_err
s_decode_acl (herald_msg_t *self, const msgpack_object *root, msgpack_zone *zone,
              herald_error_t *err)
{
    herald_field_t fields [] = { { "rid" }, { "op" } };
    herald_err rc = herald_event_fields (root, fields, 2, zone, "", err);
    if (rc || (rc = s_require_rid (self, fields [0].value, err)))
        return rc;
    herald_str_t op = { NULL, 0 };
    if ((rc = s_str (fields [1].value, true, "op", 16, &op, err)))
        return rc;
    if (op.len == 6 && memcmp (op.ptr, "reload", 6) == 0)
        self->acl.op = HERALD_MSG_ACL_RELOAD;
    else
    if (op.len == 4 && memcmp (op.ptr, "show", 4) == 0)
        self->acl.op = HERALD_MSG_ACL_SHOW;
    else
        return herald_error_set (err, HERALD_ERR_BAD_REQUEST, "op",
                                 "must be \"reload\" or \"show\"");
    return HERALD_OK;
}


//  --------------------------------------------------------------------------
//  Replies

static herald_err
s_decode_ack (herald_msg_t *self, const msgpack_object *root, msgpack_zone *zone,
              herald_error_t *err)
{
    herald_field_t fields [] = {
        { "rid" }, { "seq" }, { "ver" }, { "dup" }, { "reused" }
    };
    herald_err rc = herald_event_fields (root, fields, 5, zone, "", err);
    if (rc || (rc = s_require_rid (self, fields [0].value, err)))
        return rc;
    size_t seqs = 0, vers = 0, dups = 0, index;
    const msgpack_object *items = NULL;
    if ((rc = s_uint_array (fields [1].value, "seq", zone, &self->ack.seq, &seqs, err))
    ||  (rc = s_uint_array (fields [2].value, "ver", zone, &self->ack.ver, &vers, err))
    ||  (rc = s_array (fields [3].value, "dup", &items, &dups, err)))
        return rc;
    if (seqs != vers || seqs != dups)
        return herald_error_set (err, HERALD_ERR_BAD_REQUEST, "dup",
                                 "seq, ver and dup differ in length");
    bool *dup = (bool *) msgpack_zone_malloc (zone, dups + 1);
    if (!dup)
        return herald_error_set (err, HERALD_ERR_NOMEM, "dup", "out of memory");
    for (index = 0; index < dups; index++) {
        if (items [index].type != MSGPACK_OBJECT_BOOLEAN) {
            char item [32];
            snprintf (item, sizeof (item), "dup[%zu]", index);
            return herald_error_set (err, HERALD_ERR_BAD_REQUEST, item, "must be a bool");
        }
        dup [index] = items [index].via.boolean;
    }
    self->ack.dup = dup;
    self->ack.count = seqs;
    self->ack.reused = NULL;
    //  `reused` (an addition): absent or nil means no entry is true
    if (s_absent (fields [4].value))
        return HERALD_OK;
    size_t reuses = 0;
    if ((rc = s_array (fields [4].value, "reused", &items, &reuses, err)))
        return rc;
    if (reuses != seqs)
        return herald_error_set (err, HERALD_ERR_BAD_REQUEST, "reused",
                                 "reused and seq differ in length");
    bool *reused = (bool *) msgpack_zone_malloc (zone, reuses + 1);
    if (!reused)
        return herald_error_set (err, HERALD_ERR_NOMEM, "reused", "out of memory");
    for (index = 0; index < reuses; index++) {
        if (items [index].type != MSGPACK_OBJECT_BOOLEAN) {
            char item [32];
            snprintf (item, sizeof (item), "reused[%zu]", index);
            return herald_error_set (err, HERALD_ERR_BAD_REQUEST, item, "must be a bool");
        }
        if (items [index].via.boolean && !dup [index]) {
            char item [32];
            snprintf (item, sizeof (item), "reused[%zu]", index);
            return herald_error_set (err, HERALD_ERR_BAD_REQUEST, item,
                                     "true for an event that is not a duplicate");
        }
        reused [index] = items [index].via.boolean;
    }
    self->ack.reused = reused;
    return HERALD_OK;
}

static herald_err
s_decode_end (herald_msg_t *self, const msgpack_object *root, msgpack_zone *zone,
              herald_error_t *err)
{
    herald_field_t fields [] = {
        { "rid" }, { "last" }, { "head" }, { "reason" }, { "lineage" }
    };
    herald_err rc = herald_event_fields (root, fields, 5, zone, "", err);
    if (rc || (rc = s_require_rid (self, fields [0].value, err))
    ||  (rc = s_uint (fields [1].value, true, "last", NULL, &self->end.last, err))
    ||  (rc = s_uint (fields [2].value, true, "head", NULL, &self->end.head, err))
    ||  (rc = s_uint (fields [4].value, false, "lineage", NULL, &self->end.lineage, err)))
        return rc;
    return s_str (fields [3].value, true, "reason", S_NAME_MAX, &self->end.reason, err);
}

//  Unknown keys with uint values are the operator's extra figures; other
//  unknown keys are ignored as everywhere else.
static herald_err
s_decode_status_reply (herald_msg_t *self, const msgpack_object *root,
                       msgpack_zone *zone, herald_error_t *err)
{
    herald_field_t fields [] = {
        { "rid" }, { "head" }, { "topics" }, { "events" }, { "role" }, { "node" },
        { "uptime_s" }, { "lineage" }, { "losses" }
    };
    const size_t known = sizeof (fields) / sizeof (fields [0]);
    __typeof__ (self->status) *status = &self->status;
    herald_err rc = herald_event_fields (root, fields, known, zone, "", err);
    if (rc || (rc = s_require_rid (self, fields [0].value, err))
    ||  (rc = s_uint (fields [1].value, true, "head", NULL, &status->head, err))
    ||  (rc = s_uint (fields [2].value, true, "topics", NULL, &status->topics, err))
    ||  (rc = s_uint (fields [3].value, true, "events", NULL, &status->events, err))
    ||  (rc = s_str (fields [4].value, true, "role", S_NAME_MAX, &status->role, err))
    ||  (rc = s_str (fields [5].value, true, "node", S_NAME_MAX, &status->node, err))
    ||  (rc = s_uint (fields [6].value, true, "uptime_s", NULL, &status->uptime_s, err))
    ||  (rc = s_uint (fields [7].value, false, "lineage", NULL, &status->lineage, err))
    ||  (rc = s_losses (fields [8].value, zone, &status->losses, &status->loss_count, err)))
        return rc;
    uint32_t size = root->via.map.size, index;
    herald_str_t *keys = (herald_str_t *) msgpack_zone_malloc (zone, (size + 1) * sizeof (herald_str_t));
    uint64_t *values = (uint64_t *) msgpack_zone_malloc (zone, (size + 1) * sizeof (uint64_t));
    if (!keys || !values)
        return herald_error_set (err, HERALD_ERR_NOMEM, "body", "out of memory");
    size_t count = 0, field;
    for (index = 0; index < size; index++) {
        const msgpack_object_kv *kv = &root->via.map.ptr [index];
        if (kv->key.type != MSGPACK_OBJECT_STR
        ||  kv->val.type != MSGPACK_OBJECT_POSITIVE_INTEGER
        ||  kv->key.via.str.size > S_NAME_MAX
        ||  !herald_utf8_valid (kv->key.via.str.ptr, kv->key.via.str.size))
            continue;
        for (field = 0; field < known; field++)
            if (fields [field].value == &kv->val)
                break;
        if (field < known)
            continue;
        keys [count].ptr = kv->key.via.str.size ? kv->key.via.str.ptr : "";
        keys [count].len = kv->key.via.str.size;
        values [count++] = kv->val.via.u64;
    }
    status->extra_keys = keys;
    status->extra_values = values;
    status->extra_count = count;
    return HERALD_OK;
}

static herald_err
s_decode_welcome (herald_msg_t *self, const msgpack_object *root, msgpack_zone *zone,
                  herald_error_t *err)
{
    herald_field_t fields [] = {
        { "rid" }, { "proto" }, { "node" }, { "head" }, { "fanout" }, { "cluster" },
        { "lineage" }, { "losses" }
    };
    __typeof__ (self->welcome) *welcome = &self->welcome;
    herald_str_t *cluster;
    herald_err rc = herald_event_fields (root, fields, 8, zone, "", err);
    if (rc || (rc = s_require_rid (self, fields [0].value, err))
    ||  (rc = s_uint (fields [1].value, true, "proto", NULL, &welcome->proto, err))
    ||  (rc = s_str (fields [2].value, true, "node", S_NAME_MAX, &welcome->node, err))
    ||  (rc = s_uint (fields [3].value, true, "head", NULL, &welcome->head, err))
    //  fanout nil: a key with no read view (security on: a publish-only
    //  user); present all the same
    ||  (rc = s_str (fields [4].value, !fields [4].value
                                       || fields [4].value->type != MSGPACK_OBJECT_NIL,
                     "fanout", S_NAME_MAX, &welcome->fanout, err))
    ||  (rc = s_str_array (fields [5].value, "cluster", HERALD_CLUSTER_MAX, S_NAME_MAX,
                           zone, &cluster, &welcome->cluster_count, err))
    ||  (rc = s_uint (fields [6].value, false, "lineage", NULL, &welcome->lineage, err))
    ||  (rc = s_losses (fields [7].value, zone, &welcome->losses, &welcome->loss_count, err)))
        return rc;
    welcome->cluster = cluster;
    return HERALD_OK;
}

//  rid nil (or absent) is the reply to a request whose rid was unreadable.
//  A code this build does not know reads as internal.
static herald_err
s_decode_error (herald_msg_t *self, const msgpack_object *root, msgpack_zone *zone,
                herald_error_t *err)
{
    herald_field_t fields [] = {
        { "rid" }, { "code" }, { "message" }, { "topic" }, { "expected" }, { "actual" },
        { "leader" }, { "retry_ms" }, { "first" }
    };
    __typeof__ (self->error) *error = &self->error;
    herald_str_t code;
    herald_err rc = herald_event_fields (root, fields, 9, zone, "", err);
    if (rc)
        return rc;
    if (!self->has_rid && !s_absent (fields [0].value))
        return herald_error_set (err, HERALD_ERR_BAD_REQUEST, "rid",
                                 "must be an unsigned integer or nil");
    if ((rc = s_str (fields [1].value, true, "code", S_NAME_MAX, &code, err))
    ||  (rc = s_str (fields [2].value, true, "message", S_MESSAGE_MAX, &error->message, err)))
        return rc;
    error->code = herald_err_from_code (code.ptr, code.len);
    //  A hint only: one that is not an unsigned integer is ignored, never
    //  a reason to lose the error it came with.
    error->retry_ms = fields [7].value && fields [7].value->type == MSGPACK_OBJECT_POSITIVE_INTEGER
                    ? fields [7].value->via.u64: 0;
    if (error->code == HERALD_ERR_CONFLICT) {
        if ((rc = s_str (fields [3].value, true, "topic", HERALD_TOPIC_MAX, &error->topic, err))
        ||  (rc = s_uint (fields [4].value, true, "expected", NULL, &error->expected, err))
        ||  (rc = s_uint (fields [5].value, true, "actual", NULL, &error->actual, err)))
            return rc;
    }
    else
    if (error->code == HERALD_ERR_NOT_LEADER)
        rc = s_str (fields [6].value, false, "leader", S_NAME_MAX, &error->leader, err);
    else
    if (error->code == HERALD_ERR_TRIMMED && !s_absent (fields [8].value)) {
        rc = s_uint (fields [8].value, false, "first", NULL, &error->first, err);
        error->has_first = rc == HERALD_OK;
    }
    return rc;
}

//  No rid: a heartbeat answers nobody.
static herald_err
s_decode_heartbeat (herald_msg_t *self, const msgpack_object *root, msgpack_zone *zone,
                    herald_error_t *err)
{
    herald_field_t fields [] = { { "head" }, { "ts" }, { "node" }, { "epoch" }, { "lineage" } };
    __typeof__ (self->heartbeat) *hb = &self->heartbeat;
    herald_err rc = herald_event_fields (root, fields, 5, zone, "", err);
    if (rc
    ||  (rc = s_uint (fields [0].value, true, "head", NULL, &hb->head, err))
    ||  (rc = s_uint (fields [1].value, true, "ts", NULL, &hb->ts, err))
    ||  (rc = s_str (fields [2].value, true, "node", S_NAME_MAX, &hb->node, err))
    ||  (rc = s_uint (fields [3].value, true, "epoch", NULL, &hb->epoch, err))
    ||  (rc = s_uint (fields [4].value, false, "lineage", NULL, &hb->lineage, err)))
        return rc;
    return HERALD_OK;
}


//  --------------------------------------------------------------------------
//  Entry point

herald_err
herald_msg_decode (herald_msg_t *self, herald_msg_type_t type,
                   const void *body, size_t len, const herald_limits_t *limits,
                   msgpack_zone *zone, herald_error_t *err)
{
    herald_error_t local;
    herald_limits_t effective = { HERALD_MAX_EVENT_BYTES, HERALD_MAX_BATCH };
    if (!err)
        err = &local;
    memset (err, 0, sizeof (*err));
    memset (self, 0, sizeof (*self));
    self->type = type;
    //  A zero limit means the default, so a zeroed struct is usable
    if (limits && limits->max_event_bytes)
        effective.max_event_bytes = limits->max_event_bytes;
    if (limits && limits->max_batch)
        effective.max_batch = limits->max_batch;

    if (type <= HERALD_MSG_INVALID || type > HERALD_MSG_HEARTBEAT)
        return herald_error_set (err, HERALD_ERR_UNKNOWN_COMMAND, "", "unknown command");
    msgpack_object root;
    herald_err rc = herald_event_unpack (body, len, zone, &root, "body", err);
    if (rc)
        return rc;
    if (root.type != MSGPACK_OBJECT_MAP)
        return herald_error_set (err, HERALD_ERR_BAD_REQUEST, "body", "not a map");
    if (type != HERALD_MSG_HEARTBEAT)
        s_read_rid (self, &root, err);

    switch (type) {
        case HERALD_MSG_PUBLISH:
            rc = s_decode_publish (self, &root, body, len, &effective, zone, err);
            break;
        case HERALD_MSG_REPLAY:
            rc = s_decode_replay (self, &root, zone, err);
            break;
        case HERALD_MSG_READ:
            rc = s_decode_read (self, &root, zone, err);
            break;
        case HERALD_MSG_CREDIT:
        case HERALD_MSG_CANCEL:
        case HERALD_MSG_STATUS:
        case HERALD_MSG_EVENTS:
            rc = s_decode_simple (self, &root, zone, err);
            break;
        case HERALD_MSG_HELLO:
            rc = s_decode_hello (self, &root, zone, err);
            break;
        case HERALD_MSG_ACL:
        case HERALD_MSG_ACL_REPLY:
            rc = s_decode_acl (self, &root, zone, err);
            break;
        case HERALD_MSG_ACK:
            rc = s_decode_ack (self, &root, zone, err);
            break;
        case HERALD_MSG_END:
            rc = s_decode_end (self, &root, zone, err);
            break;
        case HERALD_MSG_STATUS_REPLY:
            rc = s_decode_status_reply (self, &root, zone, err);
            break;
        case HERALD_MSG_WELCOME:
            rc = s_decode_welcome (self, &root, zone, err);
            break;
        case HERALD_MSG_ERROR:
            rc = s_decode_error (self, &root, zone, err);
            break;
        case HERALD_MSG_HEARTBEAT:
            rc = s_decode_heartbeat (self, &root, zone, err);
            break;
        default:
            rc = herald_error_set (err, HERALD_ERR_UNKNOWN_COMMAND, "", "unknown command");
            break;
    }
    return rc;
}

int
herald_msg_events_next (const void *frame, size_t size, size_t *offset,
                        const uint8_t **envelope, size_t *envelope_len)
{
    if (!frame || size == 0)
        return -1;
    if (*offset >= size)
        return 0;
    size_t start = *offset;
    if (!herald_event_skip (frame, size, offset)) {
        *offset = start;
        return -1;
    }
    *envelope = (const uint8_t *) frame + start;
    *envelope_len = *offset - start;
    return 1;
}
