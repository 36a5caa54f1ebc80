/*  =========================================================================
    herald_entry - a Raft log entry of the cluster: encode, decode

    The layout is drawn in herald_entry.h.

    DESIGN
    The frame (magic, header, counts, lengths, crc) is hand-written
    big-endian, so a reader checks every count against the bytes left
    before it allocates anything: a count can ask for at most one slot per
    remaining byte pair of input, never the 100 GB a forged u32 could.
    Each event map is then unpacked by herald_event_unpack (which walks
    and bounds the MessagePack first) and validated by
    herald_event_from_object, the very check PUBLISH decoding runs, so a
    follower applies exactly what the leader's validation let through.
    The crc32c covers the whole frame: a flipped bit anywhere is found
    before any of it is trusted.
    =========================================================================
*/

#include <string.h>
#include "herald_entry.h"
#include "herald_msg.h"
#include "../agents/herald_crc.h"

#define HEADER_BYTES    32

static void
s_put32 (uint8_t *out, uint32_t value)
{
    out [0] = (uint8_t) (value >> 24);
    out [1] = (uint8_t) (value >> 16);
    out [2] = (uint8_t) (value >> 8);
    out [3] = (uint8_t) value;
}

static void
s_put64 (uint8_t *out, uint64_t value)
{
    s_put32 (out, (uint32_t) (value >> 32));
    s_put32 (out + 4, (uint32_t) value);
}

static uint32_t
s_get32 (const uint8_t *in)
{
    return ((uint32_t) in [0] << 24) | ((uint32_t) in [1] << 16)
         | ((uint32_t) in [2] << 8) | (uint32_t) in [3];
}

static uint64_t
s_get64 (const uint8_t *in)
{
    return ((uint64_t) s_get32 (in) << 32) | s_get32 (in + 4);
}

//  --------------------------------------------------------------------------
//  Encoding

static int
s_count_write (void *data, const char *buf, size_t len)
{
    (void) buf;
    *(size_t *) data += len;
    return 0;
}

static size_t
s_event_map_size (const herald_event_t *event)
{
    size_t size = 0;
    msgpack_packer counter;
    msgpack_packer_init (&counter, &size, s_count_write);
    herald_msg_pack_publisher_event (&counter, event);
    return size;
}

size_t
herald_entry_request_size (const herald_event_t *events, size_t count)
{
    size_t size = 4;
    size_t index;
    for (index = 0; index < count; index++)
        size += 4 + s_event_map_size (&events [index]);
    return size;
}

size_t
herald_entry_op_size (size_t len)
{
    return 8 + len;
}

static int
s_write32 (msgpack_sbuffer *buffer, uint32_t value)
{
    uint8_t bytes [4];
    s_put32 (bytes, value);
    return msgpack_sbuffer_write (buffer, (const char *) bytes, 4);
}

static int
s_encode_publish (const herald_entry_t *entry, msgpack_sbuffer *buffer)
{
    if (entry->count > UINT32_MAX)
        return -1;
    int rc = s_write32 (buffer, (uint32_t) entry->count);
    msgpack_packer pk;
    msgpack_packer_init (&pk, buffer, msgpack_sbuffer_write);
    size_t request;
    for (request = 0; request < entry->count && rc == 0; request++) {
        const herald_entry_request_t *item = &entry->requests [request];
        if (item->count > UINT32_MAX)
            return -1;
        if (item->count == 0) {
            //  A group's op: 0, its length, its bytes
            if (!item->op || item->op_len > UINT32_MAX
            ||  entry->rules < HERALD_ENTRY_RULES_OPS)
                return -1;
            rc |= s_write32 (buffer, 0);
            rc |= s_write32 (buffer, (uint32_t) item->op_len);
            if (rc == 0 && item->op_len)
                rc |= msgpack_sbuffer_write (buffer, (const char *) item->op, item->op_len);
            continue;
        }
        rc |= s_write32 (buffer, (uint32_t) item->count);
        size_t index;
        for (index = 0; index < item->count && rc == 0; index++) {
            //  The map's length goes before it: reserve, pack, fill in.
            size_t at = buffer->size;
            rc |= s_write32 (buffer, 0);
            rc |= herald_msg_pack_publisher_event (&pk, &item->events [index]);
            if (rc == 0) {
                size_t len = buffer->size - at - 4;
                if (len > UINT32_MAX)
                    return -1;
                s_put32 ((uint8_t *) buffer->data + at, (uint32_t) len);
            }
        }
    }
    return rc ? -1: 0;
}

int
herald_entry_encode (const herald_entry_t *entry, msgpack_sbuffer *buffer)
{
    size_t start = buffer->size;
    uint8_t header [HEADER_BYTES];
    memcpy (header, HERALD_ENTRY_MAGIC, 4);
    header [4] = (uint8_t) entry->kind;
    header [5] = 0;                     //  the padding count, set below
    header [6] = (uint8_t) (entry->rules >> 8);
    header [7] = (uint8_t) entry->rules;
    s_put64 (header + 8, entry->term);
    s_put64 (header + 16, entry->proposer);
    s_put64 (header + 24, entry->ts);
    if (msgpack_sbuffer_write (buffer, (const char *) header, HEADER_BYTES))
        return -1;
    int rc = 0;
    switch (entry->kind) {
        case HERALD_ENTRY_PUBLISH:
            rc = s_encode_publish (entry, buffer);
            break;
        case HERALD_ENTRY_NODE_TABLE:
            if (entry->table_len > UINT32_MAX)
                return -1;
            rc = s_write32 (buffer, (uint32_t) entry->table_len);
            if (rc == 0 && entry->table_len)
                rc = msgpack_sbuffer_write (buffer, (const char *) entry->table,
                                            entry->table_len);
            break;
        case HERALD_ENTRY_NOOP:
            break;
        default:
            return -1;
    }
    if (rc)
        return -1;
    size_t padding = (8 - (buffer->size - start + 4) % 8) % 8;
    buffer->data [start + 5] = (char) padding;
    uint32_t crc = herald_crc32c (0, buffer->data + start, buffer->size - start);
    static const char zeros [8] = { 0 };
    if (s_write32 (buffer, crc)
    ||  (padding && msgpack_sbuffer_write (buffer, zeros, padding)))
        return -1;
    return 0;
}

//  --------------------------------------------------------------------------
//  Decoding

typedef struct {
    const uint8_t *at;
    size_t left;
} s_reader_t;

static bool
s_read32 (s_reader_t *reader, uint32_t *value)
{
    if (reader->left < 4)
        return false;
    *value = s_get32 (reader->at);
    reader->at += 4;
    reader->left -= 4;
    return true;
}

static herald_err
s_corrupt (herald_error_t *err, const char *field, const char *what)
{
    return herald_error_set (err, HERALD_ERR_CORRUPT, field, "raft entry: %s", what);
}

static herald_err
s_decode_publish (herald_entry_t *entry, s_reader_t *reader, msgpack_zone *zone,
                  herald_error_t *err)
{
    uint32_t count;
    if (!s_read32 (reader, &count))
        return s_corrupt (err, "requests", "truncated before the request count");
    //  Each request takes at least its 4-byte event count: a count beyond
    //  that is a lie, refused before anything is allocated for it.
    if (count > reader->left / 4)
        return s_corrupt (err, "requests", "request count larger than the entry");
    herald_entry_request_t *requests = NULL;
    if (count) {
        requests = (herald_entry_request_t *)
            msgpack_zone_malloc (zone, count * sizeof (herald_entry_request_t));
        if (!requests)
            return herald_error_set (err, HERALD_ERR_NOMEM, "requests", "out of memory");
    }
    uint32_t request;
    for (request = 0; request < count; request++) {
        uint32_t events;
        if (!s_read32 (reader, &events))
            return s_corrupt (err, "requests", "truncated before an event count");
        if (events == 0 && entry->rules >= HERALD_ENTRY_RULES_OPS) {
            //  A group's op: its bytes are the store's to judge
            uint32_t op_len;
            if (!s_read32 (reader, &op_len) || op_len > reader->left)
                return s_corrupt (err, "requests", "truncated op");
            requests [request] = (herald_entry_request_t) {
                .op = reader->at, .op_len = op_len
            };
            reader->at += op_len;
            reader->left -= op_len;
            continue;
        }
        //  An event takes at least its length and a map of three keys.
        if (events == 0 || events > reader->left / 8)
            return s_corrupt (err, "requests", "event count empty or larger than the entry");
        herald_event_t *items = (herald_event_t *)
            msgpack_zone_malloc (zone, events * sizeof (herald_event_t));
        if (!items)
            return herald_error_set (err, HERALD_ERR_NOMEM, "requests", "out of memory");
        uint32_t index;
        for (index = 0; index < events; index++) {
            uint32_t len;
            if (!s_read32 (reader, &len) || len > reader->left)
                return s_corrupt (err, "events", "truncated event map");
            msgpack_object object;
            char prefix [48];
            snprintf (prefix, sizeof (prefix), "requests[%u].events[%u]", request, index);
            herald_error_t inner = { 0 };
            herald_err rc = herald_event_unpack (reader->at, len, zone, &object, prefix,
                                                 &inner);
            if (rc == HERALD_OK && object.type != MSGPACK_OBJECT_MAP)
                rc = herald_error_set (&inner, HERALD_ERR_BAD_REQUEST, prefix, "not a map");
            if (rc == HERALD_OK)
                rc = herald_event_from_object (&items [index], &object, zone, prefix, &inner);
            if (rc == HERALD_ERR_NOMEM)
                return herald_error_set (err, rc, prefix, "out of memory");
            if (rc)
                return herald_error_set (err, HERALD_ERR_CORRUPT, "events",
                                         "raft entry: %s", inner.message);
            reader->at += len;
            reader->left -= len;
        }
        //  The whole request: the zone's memory is not zeroed, and a stale
        //  op pointer would make a publish request read as a group's op
        requests [request] = (herald_entry_request_t) { .events = items, .count = events };
    }
    entry->requests = requests;
    entry->count = count;
    return HERALD_OK;
}

herald_err
herald_entry_decode (herald_entry_t *entry, const void *bytes, size_t len,
                     msgpack_zone *zone, herald_error_t *err)
{
    memset (entry, 0, sizeof (*entry));
    const uint8_t *in = (const uint8_t *) bytes;
    if (!in || len < HERALD_ENTRY_OVERHEAD)
        return s_corrupt (err, "", "shorter than its header");
    if (memcmp (in, HERALD_ENTRY_MAGIC, 4) != 0)
        return s_corrupt (err, "magic", "not HRE1");
    if (in [5] > 7)
        return s_corrupt (err, "flags", "reserved flags set");
    size_t padding = in [5];
    if (len < HERALD_ENTRY_OVERHEAD + padding)
        return s_corrupt (err, "", "shorter than its header and padding");
    len -= padding;
    size_t index;
    for (index = 0; index < padding; index++)
        if (in [len + index] != 0)
            return s_corrupt (err, "flags", "padding is not zero");
    uint32_t crc = s_get32 (in + len - 4);
    if (herald_crc32c (0, in, len - 4) != crc)
        return s_corrupt (err, "crc", "crc32c mismatch (damaged)");
    entry->kind = (herald_entry_kind_t) in [4];
    entry->flags = in [5];
    entry->rules = (uint16_t) ((in [6] << 8) | in [7]);
    entry->term = s_get64 (in + 8);
    entry->proposer = s_get64 (in + 16);
    entry->ts = s_get64 (in + 24);
    if (entry->rules < HERALD_ENTRY_RULES_MIN || entry->rules > HERALD_ENTRY_RULES)
        return herald_error_set (err, HERALD_ERR_CORRUPT, "rules",
                                 "raft entry: rules %u, this build implements %u to %u",
                                 entry->rules, HERALD_ENTRY_RULES_MIN, HERALD_ENTRY_RULES);
    s_reader_t reader = { in + HEADER_BYTES, len - HERALD_ENTRY_OVERHEAD };
    herald_err rc = HERALD_OK;
    switch (entry->kind) {
        case HERALD_ENTRY_PUBLISH:
            rc = s_decode_publish (entry, &reader, zone, err);
            break;
        case HERALD_ENTRY_NODE_TABLE: {
            uint32_t table_len;
            if (!s_read32 (&reader, &table_len) || table_len > reader.left)
                return s_corrupt (err, "table", "truncated node table");
            entry->table = reader.at;
            entry->table_len = table_len;
            reader.at += table_len;
            reader.left -= table_len;
            break;
        }
        case HERALD_ENTRY_NOOP:
            break;
        default:
            return herald_error_set (err, HERALD_ERR_CORRUPT, "kind",
                                     "raft entry: unknown kind %u", (unsigned) in [4]);
    }
    if (rc)
        return rc;
    if (reader.left)
        return herald_error_set (err, HERALD_ERR_CORRUPT, "",
                                 "raft entry: %zu bytes after the body", reader.left);
    return HERALD_OK;
}
