/*  =========================================================================
    herald_cli_output - events and replies as JSON lines or a table

    JSON (the default) is one object per line, so the output pipes into jq
    or `wc -l`.  An event is

        {"seq":7,"ver":2,"ts":1763796961000000000,"topic":"orders.eu",
         "id":"0190c3c2-...","type":"OrderPlaced","schema":1,
         "meta":{"k":"v"},"data":"..."}

    with "type" null when absent and "schema" 1 when absent (the envelope's
    rule).  `data` is a JSON string when the payload is valid UTF-8;
    otherwise the key is "data_b64" and the value standard base64, so a
    consumer can always recover the exact bytes.

    The table is for people: fixed columns, ts in UTC, data cut to fit and
    control bytes shown as '.'.  It is not meant to be parsed.
    =========================================================================
*/

#include "herald_cli.h"
#include "herald_uuid.h"

#include <string.h>
#include <time.h>

//  Table columns, in characters
#define S_TABLE_TOPIC       24
#define S_TABLE_TYPE        16
#define S_TABLE_DATA        48

//  Length of the UTF-8 sequence at s[0..len), or 0 when it is not valid.
static size_t
s_utf8_char (const unsigned char *s, size_t len)
{
    size_t need = s [0] < 0x80 ? 1 : (s [0] & 0xE0) == 0xC0 ? 2
                : (s [0] & 0xF0) == 0xE0 ? 3 : (s [0] & 0xF8) == 0xF0 ? 4 : 0;
    if (need == 0 || need > len)
        return 0;
    if (!herald_utf8_valid ((const char *) s, need))
        return 0;
    return need;
}

void
herald_cli_json_string (FILE *out, const char *s, size_t len)
{
    const unsigned char *bytes = (const unsigned char *) s;
    fputc ('"', out);
    size_t index = 0;
    while (index < len) {
        unsigned char c = bytes [index];
        if (c == '"' || c == '\\') {
            fputc ('\\', out);
            fputc (c, out);
            index++;
        }
        else
        if (c < 0x20) {
            switch (c) {
                case '\n': fputs ("\\n", out); break;
                case '\r': fputs ("\\r", out); break;
                case '\t': fputs ("\\t", out); break;
                case '\b': fputs ("\\b", out); break;
                case '\f': fputs ("\\f", out); break;
                default:   fprintf (out, "\\u%04x", c); break;
            }
            index++;
        }
        else
        if (c < 0x80) {
            fputc (c, out);
            index++;
        }
        else {
            size_t n = s_utf8_char (bytes + index, len - index);
            if (n) {
                fwrite (bytes + index, 1, n, out);
                index += n;
            }
            else {
                fputs ("\\ufffd", out);
                index++;
            }
        }
    }
    fputc ('"', out);
}

void
herald_cli_base64 (FILE *out, const void *bytes, size_t len)
{
    static const char alphabet [] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    const unsigned char *in = bytes;
    size_t index;
    for (index = 0; index + 3 <= len; index += 3) {
        uint32_t group = (uint32_t) in [index] << 16 | (uint32_t) in [index + 1] << 8
                       | in [index + 2];
        fputc (alphabet [group >> 18 & 63], out);
        fputc (alphabet [group >> 12 & 63], out);
        fputc (alphabet [group >> 6 & 63], out);
        fputc (alphabet [group & 63], out);
    }
    if (len - index == 1) {
        uint32_t group = (uint32_t) in [index] << 16;
        fputc (alphabet [group >> 18 & 63], out);
        fputc (alphabet [group >> 12 & 63], out);
        fputs ("==", out);
    }
    else
    if (len - index == 2) {
        uint32_t group = (uint32_t) in [index] << 16 | (uint32_t) in [index + 1] << 8;
        fputc (alphabet [group >> 18 & 63], out);
        fputc (alphabet [group >> 12 & 63], out);
        fputc (alphabet [group >> 6 & 63], out);
        fputc ('=', out);
    }
}

//  ts (Unix ns) as 2026-11-22T07:36:01.123456789Z.
static void
s_print_ts (FILE *out, uint64_t ts)
{
    char text [40];
    fputs (herald_cli_time_format (ts, text, sizeof text), out);
}

//  One table cell of `width` columns: UTF-8 characters as they are,
//  control bytes, DEL and bytes that are not UTF-8 as '.' (one column
//  each, so a payload cannot move the cursor or break the row).  Text that
//  does not fit ends in "..." within the width, so a cut is always seen;
//  pad fills the rest with spaces (not for the last column).  A character
//  counts one column (wide CJK characters will push the row by one).
static void
s_print_cell (FILE *out, const void *bytes, size_t len, size_t width, bool pad)
{
    const unsigned char *s = bytes;
    //  First pass: how many characters, to know whether a cut is needed
    size_t chars = 0, index = 0;
    while (index < len) {
        size_t n = s [index] >= 0x80 ? s_utf8_char (s + index, len - index) : 1;
        index += n ? n : 1;
        chars++;
    }
    size_t shown = chars <= width ? chars : width - 3;
    size_t column;
    for (index = 0, column = 0; column < shown; column++) {
        size_t n = s [index] >= 0x80 ? s_utf8_char (s + index, len - index) : 1;
        if (n > 1)
            fwrite (s + index, 1, n, out);
        else
            fputc (n == 1 && s [index] >= 0x20 && s [index] < 0x7F ? s [index] : '.', out);
        index += n ? n : 1;
    }
    if (chars > width) {
        fputs ("...", out);
        column += 3;
    }
    if (pad)
        fprintf (out, "%*s", (int) (width - column), "");
}

static void
s_print_json_event (const herald_event_t *event)
{
    char id [HERALD_UUID_STR_LEN + 1];
    herald_uuid_format (event->id, id);
    printf ("{\"seq\":%" PRIu64 ",\"ver\":%" PRIu64 ",\"ts\":%" PRIu64 ",\"topic\":",
            event->seq, event->ver, event->ts);
    herald_cli_json_string (stdout, event->topic, event->topic_len);
    printf (",\"id\":\"%s\",\"type\":", id);
    if (event->type)
        herald_cli_json_string (stdout, event->type, event->type_len);
    else
        fputs ("null", stdout);
    printf (",\"schema\":%" PRIu64 ",\"meta\":{", event->has_schema ? event->schema : 1);
    size_t index;
    for (index = 0; index < event->meta_count; index++) {
        if (index)
            fputc (',', stdout);
        herald_cli_json_string (stdout, event->meta [index].key, event->meta [index].key_len);
        fputc (':', stdout);
        herald_cli_json_string (stdout, event->meta [index].value,
                                event->meta [index].value_len);
    }
    fputs ("},", stdout);
    const char *data = (const char *) event->data;
    if (event->data_len == 0 || herald_utf8_valid (data, event->data_len)) {
        fputs ("\"data\":", stdout);
        herald_cli_json_string (stdout, data, event->data_len);
    }
    else {
        fputs ("\"data_b64\":\"", stdout);
        herald_cli_base64 (stdout, data, event->data_len);
        fputc ('"', stdout);
    }
    fputs ("}\n", stdout);
}

void
herald_cli_print_table_header (herald_cli_format_t format)
{
    if (format == HERALD_CLI_TABLE)
        printf ("%-8s %-6s %-30s %-*s %-*s %s\n", "SEQ", "VER", "TS", S_TABLE_TOPIC, "TOPIC",
                S_TABLE_TYPE, "TYPE", "DATA");
}

static void
s_print_table_event (const herald_event_t *event)
{
    printf ("%-8" PRIu64 " %-6" PRIu64 " ", event->seq, event->ver);
    s_print_ts (stdout, event->ts);
    fputc (' ', stdout);
    s_print_cell (stdout, event->topic, event->topic_len, S_TABLE_TOPIC, true);
    fputc (' ', stdout);
    if (event->type)
        s_print_cell (stdout, event->type, event->type_len, S_TABLE_TYPE, true);
    else
        printf ("%-*s", S_TABLE_TYPE, "-");
    fputc (' ', stdout);
    s_print_cell (stdout, event->data, event->data_len, S_TABLE_DATA, false);
    fputc ('\n', stdout);
}

void
herald_cli_print_event (herald_cli_format_t format, const herald_event_t *event)
{
    if (format == HERALD_CLI_TABLE)
        s_print_table_event (event);
    else
        s_print_json_event (event);
}

int
herald_cli_print_envelope (herald_cli_format_t format, const void *bytes, size_t len)
{
    msgpack_zone zone;
    msgpack_zone_init (&zone, 512);
    herald_event_t event;
    herald_error_t err;
    int rc = 0;
    if (herald_event_decode (&event, bytes, len, &zone, &err) == HERALD_OK)
        herald_cli_print_event (format, &event);
    else
        rc = herald_cli_fail (HERALD_CLI_EXIT_FAIL, "undecodable event from the broker: %s: %s",
                              err.field, err.message);
    msgpack_zone_destroy (&zone);
    return rc;
}

//  A MessagePack value as JSON (the STATUS keys the decoder does not keep,
//  WELCOME's security keys, the ACL command's reply).  Depth-bounded.
static void
s_json_object (FILE *out, const msgpack_object *value, int depth)
{
    uint32_t index;
    switch (value->type) {
        case MSGPACK_OBJECT_NIL:
            fputs ("null", out);
            break;
        case MSGPACK_OBJECT_BOOLEAN:
            fputs (value->via.boolean? "true": "false", out);
            break;
        case MSGPACK_OBJECT_POSITIVE_INTEGER:
            fprintf (out, "%" PRIu64, value->via.u64);
            break;
        case MSGPACK_OBJECT_NEGATIVE_INTEGER:
            fprintf (out, "%" PRId64, value->via.i64);
            break;
        case MSGPACK_OBJECT_FLOAT32:
        case MSGPACK_OBJECT_FLOAT64:
            fprintf (out, "%.17g", value->via.f64);
            break;
        case MSGPACK_OBJECT_STR:
            herald_cli_json_string (out, value->via.str.ptr, value->via.str.size);
            break;
        case MSGPACK_OBJECT_ARRAY:
            fputc ('[', out);
            for (index = 0; index < value->via.array.size && depth < 8; index++) {
                if (index)
                    fputc (',', out);
                s_json_object (out, &value->via.array.ptr [index], depth + 1);
            }
            fputc (']', out);
            break;
        case MSGPACK_OBJECT_MAP:
            fputc ('{', out);
            for (index = 0; index < value->via.map.size && depth < 8; index++) {
                const msgpack_object_kv *pair = &value->via.map.ptr [index];
                if (index)
                    fputc (',', out);
                if (pair->key.type == MSGPACK_OBJECT_STR)
                    herald_cli_json_string (out, pair->key.via.str.ptr, pair->key.via.str.size);
                else
                    fputs ("\"?\"", out);
                fputc (':', out);
                s_json_object (out, &pair->val, depth + 1);
            }
            fputc ('}', out);
            break;
        default:                            //  bin, ext: not in HWP/1 replies
            fputs ("null", out);
            break;
    }
}

void
herald_cli_json_object (FILE *out, const msgpack_object *value)
{
    if (value)
        s_json_object (out, value, 0);
    else
        fputs ("null", out);
}

const msgpack_object *
herald_cli_map_get (const msgpack_object *map, const char *key)
{
    if (!map || map->type != MSGPACK_OBJECT_MAP)
        return NULL;
    size_t len = strlen (key);
    for (uint32_t index = 0; index < map->via.map.size; index++) {
        const msgpack_object_kv *kv = &map->via.map.ptr [index];
        if (kv->key.type == MSGPACK_OBJECT_STR && kv->key.via.str.size == len
        &&  memcmp (kv->key.via.str.ptr, key, len) == 0)
            return &kv->val;
    }
    return NULL;
}

//  True when the STATUS key is printed from the decoded reply already:
//  the fixed fields and the uint extras.
static bool
s_status_key_known (const __typeof__ (((herald_msg_t *) 0)->status) *status,
                    const msgpack_object_str *key)
{
    static const char *const fixed [] = { "rid", "head", "topics", "events", "role", "node",
                                          "uptime_s", "lineage", "losses", NULL };
    for (size_t index = 0; fixed [index]; index++)
        if (key->size == strlen (fixed [index])
        &&  memcmp (key->ptr, fixed [index], key->size) == 0)
            return true;
    for (size_t index = 0; index < status->extra_count; index++)
        if (status->extra_keys [index].len == key->size
        &&  memcmp (status->extra_keys [index].ptr, key->ptr, key->size) == 0)
            return true;
    return false;
}

//  The STATUS body's other keys (str, nil, arrays, maps): each as key and
//  JSON value, after a comma (json) or as a row of width (table).
//  STATUS `trims` (docs/protocol.md, "Trimming") in a table: one line a
//  trim point, as the losses are; false when value is not that array.
static bool
s_print_trims (const msgpack_object *key, const msgpack_object *value, int width)
{
    if (key->via.str.size != 5 || memcmp (key->via.str.ptr, "trims", 5) != 0
    ||  value->type != MSGPACK_OBJECT_ARRAY)
        return false;
    const msgpack_object_array *trims = &value->via.array;
    for (uint32_t index = 0; index < trims->size; index++) {
        const msgpack_object *prefix = herald_cli_map_get (&trims->ptr [index], "prefix");
        const msgpack_object *until = herald_cli_map_get (&trims->ptr [index], "until");
        if (!prefix || prefix->type != MSGPACK_OBJECT_STR
        ||  !until || until->type != MSGPACK_OBJECT_POSITIVE_INTEGER)
            return false;           //  not what the contract says: printed as JSON
    }
    if (trims->size == 0)
        printf ("%-*s none\n", width, "trims");
    for (uint32_t index = 0; index < trims->size; index++) {
        const msgpack_object *prefix = herald_cli_map_get (&trims->ptr [index], "prefix");
        const msgpack_object *until = herald_cli_map_get (&trims->ptr [index], "until");
        const msgpack_object *ts = herald_cli_map_get (&trims->ptr [index], "ts");
        char when [48] = "-";
        if (ts && ts->type == MSGPACK_OBJECT_POSITIVE_INTEGER)
            herald_cli_time_format (ts->via.u64, when, sizeof when);
        printf ("%-*s ", width, index? "": "trims");
        if (prefix->via.str.size)
            herald_cli_json_string (stdout, prefix->via.str.ptr, prefix->via.str.size);
        else
            fputs ("(all topics)", stdout);
        printf (" up to seq %" PRIu64 ", trimmed at %s\n", until->via.u64, when);
    }
    return true;
}

static void
s_print_status_rest (herald_cli_format_t format, const herald_msg_t *reply,
                     const void *body, size_t size, int width)
{
    if (!body || !size)
        return;
    msgpack_unpacked unpacked;
    msgpack_unpacked_init (&unpacked);
    if (msgpack_unpack_next (&unpacked, body, size, NULL) == MSGPACK_UNPACK_SUCCESS
    &&  unpacked.data.type == MSGPACK_OBJECT_MAP) {
        const msgpack_object_map *map = &unpacked.data.via.map;
        for (uint32_t index = 0; index < map->size; index++) {
            const msgpack_object_kv *pair = &map->ptr [index];
            if (pair->key.type != MSGPACK_OBJECT_STR
            ||  s_status_key_known (&reply->status, &pair->key.via.str))
                continue;
            if (format == HERALD_CLI_TABLE && s_print_trims (&pair->key, &pair->val, width))
                continue;
            if (format == HERALD_CLI_TABLE) {
                printf ("%-*.*s ", width, (int) pair->key.via.str.size, pair->key.via.str.ptr);
                if (pair->val.type == MSGPACK_OBJECT_STR)
                    printf ("%.*s", (int) pair->val.via.str.size, pair->val.via.str.ptr);
                else
                    s_json_object (stdout, &pair->val, 0);
                fputc ('\n', stdout);
            }
            else {
                fputc (',', stdout);
                herald_cli_json_string (stdout, pair->key.via.str.ptr, pair->key.via.str.size);
                fputc (':', stdout);
                s_json_object (stdout, &pair->val, 0);
            }
        }
    }
    msgpack_unpacked_destroy (&unpacked);
}

void
herald_cli_print_status (herald_cli_format_t format, const herald_msg_t *reply,
                         const void *body, size_t size)
{
    const __typeof__ (reply->status) *status = &reply->status;
    size_t index;
    if (format == HERALD_CLI_TABLE) {
        //  One column of names as wide as the longest, the broker's own
        //  counters included (they grow with each release)
        int width = 8;
        for (index = 0; index < status->extra_count; index++)
            if (status->extra_keys [index].len > (size_t) width
            &&  status->extra_keys [index].len <= HERALD_TOPIC_MAX)
                width = (int) status->extra_keys [index].len;
        printf ("%-*s %" PRIu64 "\n", width, "head", status->head);
        printf ("%-*s %" PRIu64 "\n", width, "topics", status->topics);
        printf ("%-*s %" PRIu64 "\n", width, "events", status->events);
        printf ("%-*s %.*s\n", width, "role", (int) status->role.len, status->role.ptr);
        printf ("%-*s %.*s\n", width, "node", (int) status->node.len, status->node.ptr);
        printf ("%-*s %" PRIu64 "\n", width, "uptime_s", status->uptime_s);
        printf ("%-*s %" PRIu64 "\n", width, "lineage", status->lineage);
        for (index = 0; index < status->loss_count; index++) {
            char ts [40];
            printf ("%-*s lineage %" PRIu64 ": events after seq %" PRIu64 " lost, accepted "
                    "at %s\n", width, index? "": "losses", status->losses [index].lineage,
                    status->losses [index].lost_after,
                    herald_cli_time_format (status->losses [index].ts, ts, sizeof ts));
        }
        for (index = 0; index < status->extra_count; index++)
            printf ("%-*.*s %" PRIu64 "\n", width, (int) status->extra_keys [index].len,
                    status->extra_keys [index].ptr, status->extra_values [index]);
        s_print_status_rest (format, reply, body, size, width);
        return;
    }
    printf ("{\"head\":%" PRIu64 ",\"topics\":%" PRIu64 ",\"events\":%" PRIu64 ",\"role\":",
            status->head, status->topics, status->events);
    herald_cli_json_string (stdout, status->role.ptr, status->role.len);
    fputs (",\"node\":", stdout);
    herald_cli_json_string (stdout, status->node.ptr, status->node.len);
    printf (",\"uptime_s\":%" PRIu64 ",\"lineage\":%" PRIu64 ",\"losses\":[",
            status->uptime_s, status->lineage);
    for (index = 0; index < status->loss_count; index++)
        printf ("%s{\"lineage\":%" PRIu64 ",\"lost_after\":%" PRIu64 ",\"ts\":%" PRIu64 "}",
                index? ",": "", status->losses [index].lineage,
                status->losses [index].lost_after, status->losses [index].ts);
    fputc (']', stdout);
    for (index = 0; index < status->extra_count; index++) {
        fputc (',', stdout);
        herald_cli_json_string (stdout, status->extra_keys [index].ptr,
                                status->extra_keys [index].len);
        printf (":%" PRIu64, status->extra_values [index]);
    }
    s_print_status_rest (format, reply, body, size, 0);
    fputs ("}\n", stdout);
}
