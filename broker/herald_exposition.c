/*  =========================================================================
    herald_exposition - a STATUS reply as Prometheus or OpenMetrics text

    DESIGN

    The text is made from the reply's bytes, key by key in the broker's
    order, never from a list of expected keys: a figure a later broker
    adds shows up at once (as a gauge, with a generic HELP), and nothing
    the broker left out (disk_bytes when unmeasurable, security's counters
    with security off) is shown as 0.

    The two formats differ only where the specifications do: OpenMetrics
    names a counter's family without `_total` (its sample keeps it), has
    an `info` type for herald_node_info, and ends with `# EOF`.  Values
    are printed as exact integers; seconds (histograms of µs) as exact
    decimals, so the text of one reply is always the same bytes.
    =========================================================================
*/

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "herald_event.h"
#include "herald_exposition.h"

typedef enum { S_GAUGE, S_COUNTER } s_type_t;

typedef struct {
    const char *key;
    s_type_t type;
    const char *help;
} s_known_t;

//  Every STATUS key of docs/broker.md and docs/protocol.md
static const s_known_t s_known [] = {
    { "head", S_GAUGE, "the highest durable seq (a cluster node: applied)" },
    { "topics", S_GAUGE, "topics in the log" },
    { "events", S_GAUGE, "events in the log" },
    { "uptime_s", S_GAUGE, "seconds since the broker started" },
    { "lineage", S_GAUGE, "losses accepted on this store (herald repair --accept-loss)" },
    { "published", S_COUNTER, "events stored and fanned out since start" },
    { "duplicates", S_COUNTER, "events recognised by id and not stored again" },
    { "conflicts", S_COUNTER, "PUBLISH batches refused for expect" },
    { "refused", S_COUNTER, "ERROR replies to requests" },
    { "dropped", S_COUNTER, "messages no reply could address, and replies a full client queue would not take" },
    { "streams", S_GAUGE, "REPLAY and READ streams running now" },
    { "streams_served", S_COUNTER, "REPLAY and READ streams ended" },
    { "streams_abandoned", S_COUNTER, "streams given up without END (client gone or not reading)" },
    { "stream_events", S_COUNTER, "events sent by REPLAY and READ streams" },
    { "queued", S_GAUGE, "PUBLISH requests not answered yet" },
    { "epoch", S_GAUGE, "starts of this data directory's broker (a cluster node: its Raft term)" },
    { "disk_bytes", S_GAUGE, "size of the data directory in bytes" },
    { "durability_sync", S_GAUGE, "1 under durability sync, else 0" },
    { "memtable_bytes", S_GAUGE, "RocksDB memtables, all column families" },
    { "block_cache_bytes", S_GAUGE, "RocksDB block cache in use" },
    { "table_readers_bytes", S_GAUGE, "index and filter blocks of open tables" },
    { "idle_flushes", S_COUNTER, "memtable flushes started because the broker went idle" },
    { "disk_free_bytes", S_GAUGE, "free bytes on the data directory's file system (df Avail)" },
    { "min_free_bytes", S_GAUGE, "the min-free line in bytes; 0 when the guard is off" },
    { "disk_reserve_bytes", S_GAUGE, "memtable bytes kept free above min-free for their flush" },
    { "disk_low", S_GAUGE, "1 while PUBLISH is refused for disk space" },
    { "disk_refused", S_COUNTER, "PUBLISH requests refused for disk space" },
    { "ids_reused", S_COUNTER, "duplicates whose topic or data differ from the stored event" },
    { "stream_bytes", S_GAUGE, "bytes of stream events libzmq holds for all clients" },
    { "client_bytes_max", S_GAUGE, "the most stream bytes held for one client connection" },
    { "stream_clients", S_GAUGE, "client connections with streams or stream events queued" },
    { "streams_waiting_bytes", S_GAUGE, "streams that waited on client-max-bytes in the last turn" },
    { "stream_byte_waits", S_COUNTER, "times a stream began to wait on client-max-bytes" },
    { "stream_errors", S_COUNTER, "streams ended with ERROR internal: the store could not read" },
    { "auth_refused", S_COUNTER, "handshakes refused by the ZAP handler" },
    { "unauthorized", S_COUNTER, "requests answered unauthorized" },
    { "acl_reloads", S_COUNTER, "ACL files swapped in" },
    { "acl_errors", S_COUNTER, "ACL files refused" },
    { "rate_limited", S_COUNTER, "PUBLISH requests refused for a user's rate" },
    { "audit_dropped", S_COUNTER, "audit lines dropped" },
    { "groups", S_GAUGE, "consumer groups held in memory" },
    { "group_members", S_GAUGE, "live members of the consumer groups" },
    { "group_rebalances", S_COUNTER, "consumer group assignment changes" },
    { "group_grants", S_COUNTER, "partitions granted to group members" },
    { "group_commits", S_COUNTER, "GROUP commits applied" },
    { "group_fenced", S_COUNTER, "group positions refused for a stale epoch" },
    { "group_expired", S_COUNTER, "group members expired without heartbeat" },
    { "group_refused", S_COUNTER, "group heartbeats refused beyond max-groups or max-group-members" },
    //  A cluster node's
    { "term", S_GAUGE, "the node's current Raft term" },
    { "commit_index", S_GAUGE, "the highest Raft index this node knows committed" },
    { "applied_index", S_GAUGE, "the highest Raft index applied to this node's store" },
    { "last_index", S_GAUGE, "the highest Raft index in this node's Raft log" },
    { "voters", S_GAUGE, "voting members in the configuration this node knows" },
    { "apply_us_max", S_GAUGE, "the longest single apply to the store, in microseconds" },
    { "peers", S_GAUGE, "members of the cluster this node knows" },
    { "losses", S_GAUGE, "entries of the store's loss history" },
    //  Trimming (docs/operations.md "Trimming and retention")
    { "streams_trimmed", S_COUNTER, "REPLAY and READ streams refused or ended with ERROR trimmed" },
    { "trims_applied", S_COUNTER, "TRIM requests applied by this node since start" },
    { "retention_trims", S_COUNTER, "trims the retention policies applied since start" },
    { "reclaim_pending", S_GAUGE, "1 while trimmed events' disk is still being freed" },
    { "reclaimed_events", S_COUNTER, "trimmed events whose disk the reclaim freed since start" },
};
#define S_KNOWN_COUNT (sizeof (s_known) / sizeof (s_known [0]))

//  Text keys: labels of herald_node_info (digest changes with every event)
static const char *s_labels [] = {
    "node", "role", "cluster_state", "leader", "leader_api", "durability", "acl_version",
    "raft_id"
};
#define S_LABEL_COUNT (sizeof (s_labels) / sizeof (s_labels [0]))

static const struct {
    const char *key;
    const char *name;
    const char *help;
} s_histograms [] = {
    { "commit_us", "herald_commit_seconds",
      "a commit's time from proposed to applied (one WriteBatch and its WAL sync; a cluster: "
      "replicated and applied)" },
    { "ack_us", "herald_ack_seconds", "a PUBLISH from read off the socket to its ACK sent" },
    { "commit_events", "herald_commit_events", "events per commit" }
};
#define S_HISTOGRAM_COUNT (sizeof (s_histograms) / sizeof (s_histograms [0]))

typedef struct {
    char *data;
    size_t len;
    size_t size;
    bool failed;
    char **names;                       //  every family and sample name written
    size_t name_count;
    size_t name_size;
} s_text_t;

//  Take the names of a family: name and name + each suffix (NULL-ended).
//  False, and nothing taken, when one is taken already: two keys that
//  map to one name (a duplicate key, "a-b" and "a_b", a key named like a
//  histogram's sample) must not make two families of one name.
static bool
s_claim (s_text_t *self, const char *name, const char *const *suffixes)
{
    char candidates [5][192];
    size_t count = 0;
    snprintf (candidates [count++], sizeof (candidates [0]), "%s", name);
    for (size_t index = 0; suffixes && suffixes [index] && count < 5; index++)
        snprintf (candidates [count++], sizeof (candidates [0]), "%s%s", name,
                  suffixes [index]);
    for (size_t index = 0; index < count; index++)
        for (size_t at = 0; at < self->name_count; at++)
            if (strcmp (self->names [at], candidates [index]) == 0)
                return false;
    if (self->name_count + count > self->name_size) {
        size_t size = (self->name_size + count) * 2;
        char **names = (char **) realloc (self->names, size * sizeof (char *));
        if (!names) {
            self->failed = true;
            return false;
        }
        self->names = names;
        self->name_size = size;
    }
    for (size_t index = 0; index < count; index++) {
        self->names [self->name_count] = strdup (candidates [index]);
        if (!self->names [self->name_count]) {
            self->failed = true;
            return false;
        }
        self->name_count++;
    }
    return true;
}

static void
s_put (s_text_t *self, const char *format, ...)
{
    if (self->failed)
        return;
    for (int round = 0; round < 2; round++) {
        va_list args;
        va_start (args, format);
        int wrote = vsnprintf (self->data + self->len, self->size - self->len, format, args);
        va_end (args);
        if (wrote < 0) {
            self->failed = true;
            return;
        }
        if ((size_t) wrote < self->size - self->len) {
            self->len += (size_t) wrote;
            return;
        }
        size_t size = self->size * 2 + (size_t) wrote;
        char *data = (char *) realloc (self->data, size);
        if (!data) {
            self->failed = true;
            return;
        }
        self->data = data;
        self->size = size;
    }
}

//  A metric name from a key: herald_ and the key, every byte outside
//  [a-zA-Z0-9_] as _.
static void
s_name (char *name, size_t size, const char *ptr, size_t len)
{
    int at = snprintf (name, size, "herald_");
    for (size_t index = 0; index < len && (size_t) at + 1 < size; index++) {
        char c = ptr [index];
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
        name [at++] = ok? c: '_';
    }
    name [at] = 0;
}

static const s_known_t *
s_find (const char *ptr, size_t len)
{
    for (size_t index = 0; index < S_KNOWN_COUNT; index++)
        if (strlen (s_known [index].key) == len && memcmp (s_known [index].key, ptr, len) == 0)
            return &s_known [index];
    return NULL;
}

static bool
s_key_is (const msgpack_object *key, const char *text)
{
    return key->type == MSGPACK_OBJECT_STR && key->via.str.size == strlen (text)
        && memcmp (key->via.str.ptr, text, key->via.str.size) == 0;
}

//  HELP and TYPE of a family; a counter's family is name without _total
//  in OpenMetrics, name_total in 0.0.4 (name is without _total here).
static void
s_meta (s_text_t *text, herald_exposition_format_t format, const char *name, const char *type,
        const char *help)
{
    bool counter = strcmp (type, "counter") == 0;
    const char *suffix = counter && format == HERALD_EXPOSITION_PROMETHEUS? "_total": "";
    s_put (text, "# HELP %s%s %s\n", name, suffix, help);
    s_put (text, "# TYPE %s%s %s\n", name, suffix, type);
}

//  A uint as seconds when scale is 1000000 (µs), exact: "0.00005", "1.0"
static void
s_scaled (char *out, size_t size, uint64_t value, uint64_t scale)
{
    if (scale == 1) {
        snprintf (out, size, "%" PRIu64 ".0", value);
        return;
    }
    char fraction [16];
    snprintf (fraction, sizeof fraction, "%06" PRIu64, value % scale);
    size_t len = strlen (fraction);
    while (len > 1 && fraction [len - 1] == '0')
        fraction [--len] = 0;
    snprintf (out, size, "%" PRIu64 ".%s", value / scale, fraction);
}

static void
s_label_value (s_text_t *text, const msgpack_object *value)
{
    if (value->type == MSGPACK_OBJECT_POSITIVE_INTEGER) {
        s_put (text, "%" PRIu64, value->via.u64);
        return;
    }
    if (value->type != MSGPACK_OBJECT_STR)
        return;                         //  nil: ""
    //  Label values are UTF-8 text: a control byte (a NUL would end the
    //  text), or any byte of a value that is not UTF-8, is shown as '?'
    bool utf8 = herald_utf8_valid (value->via.str.ptr, value->via.str.size);
    for (uint32_t index = 0; index < value->via.str.size; index++) {
        unsigned char c = (unsigned char) value->via.str.ptr [index];
        if (c == '\\' || c == '"')
            s_put (text, "\\%c", c);
        else
        if (c == '\n')
            s_put (text, "\\n");
        else
        if (c < 0x20 || c == 0x7f || (c >= 0x80 && !utf8))
            s_put (text, "?");
        else
            s_put (text, "%c", c);
    }
}

static void
s_node_info (s_text_t *text, herald_exposition_format_t format, const msgpack_object *map)
{
    bool open = format == HERALD_EXPOSITION_OPENMETRICS;
    static const char *const info [] = { "_info", NULL };
    s_claim (text, "herald_node", info);
    s_meta (text, format, open? "herald_node": "herald_node_info", open? "info": "gauge",
            "the broker's identity and role; the text keys of STATUS as labels");
    s_put (text, "herald_node_info");
    bool first = true;
    for (size_t index = 0; index < S_LABEL_COUNT; index++) {
        const msgpack_object *value = herald_exposition_get (map, s_labels [index]);
        if (!value)
            continue;
        s_put (text, "%s%s=\"", first? "{": ",", s_labels [index]);
        s_label_value (text, value);
        s_put (text, "\"");
        first = false;
    }
    s_put (text, "%s 1\n", first? "": "}");
}

//  True when a histogram's arrays make a Prometheus histogram: uint
//  bounds strictly ascending, uint counts adding up (without overflow) to
//  count.  Else its text would not be one (buckets going down, a _count
//  that is not the +Inf bucket's).
static bool
s_histogram_valid (const msgpack_object *bounds, const msgpack_object *counts, uint64_t count)
{
    for (uint32_t index = 0; index < bounds->via.array.size; index++) {
        const msgpack_object *bound = &bounds->via.array.ptr [index];
        if (bound->type != MSGPACK_OBJECT_POSITIVE_INTEGER
        ||  (index && bound->via.u64 <= bounds->via.array.ptr [index - 1].via.u64))
            return false;
    }
    uint64_t total = 0;
    for (uint32_t index = 0; index < counts->via.array.size; index++) {
        const msgpack_object *bucket = &counts->via.array.ptr [index];
        if (bucket->type != MSGPACK_OBJECT_POSITIVE_INTEGER
        ||  bucket->via.u64 > UINT64_MAX - total)
            return false;
        total += bucket->via.u64;
    }
    return total == count;
}

static void
s_histogram (s_text_t *text, herald_exposition_format_t format, const msgpack_object *key,
             const msgpack_object *value)
{
    const char *name = NULL, *help = NULL;
    char own [160], own_help [200];
    for (size_t index = 0; index < S_HISTOGRAM_COUNT; index++)
        if (s_key_is (key, s_histograms [index].key)) {
            name = s_histograms [index].name;
            help = s_histograms [index].help;
        }
    uint64_t scale = 1;
    if (key->via.str.size > 3
    &&  memcmp (key->via.str.ptr + key->via.str.size - 3, "_us", 3) == 0)
        scale = 1000000;
    if (!name) {
        s_name (own, sizeof own - 8, key->via.str.ptr,
                key->via.str.size - (scale > 1? 3: 0));
        if (scale > 1)
            strcat (own, "_seconds");
        //  The key as the name has it: its bytes need no escaping in HELP
        snprintf (own_help, sizeof own_help, "STATUS histogram %s", own + 7);
        name = own;
        help = own_help;
    }
    const msgpack_object *bounds = herald_exposition_get (value, "bounds");
    const msgpack_object *counts = herald_exposition_get (value, "counts");
    uint64_t sum = 0, count = 0;
    if (!bounds || !counts || bounds->type != MSGPACK_OBJECT_ARRAY
    ||  counts->type != MSGPACK_OBJECT_ARRAY
    ||  counts->via.array.size != bounds->via.array.size + 1
    ||  !herald_exposition_uint (value, "sum", &sum)
    ||  !herald_exposition_uint (value, "count", &count)
    ||  !s_histogram_valid (bounds, counts, count))
        return;                         //  not one this unit can read: left out
    static const char *const samples [] = { "_bucket", "_sum", "_count", NULL };
    if (!s_claim (text, name, samples))
        return;                         //  its name is another figure's
    s_meta (text, format, name, "histogram", help);
    uint64_t cumulative = 0;
    char number [48];
    for (uint32_t index = 0; index <= bounds->via.array.size; index++) {
        cumulative += counts->via.array.ptr [index].via.u64;
        if (index < bounds->via.array.size) {
            s_scaled (number, sizeof number, bounds->via.array.ptr [index].via.u64, scale);
            s_put (text, "%s_bucket{le=\"%s\"} %" PRIu64 "\n", name, number, cumulative);
        }
        else
            s_put (text, "%s_bucket{le=\"+Inf\"} %" PRIu64 "\n", name, cumulative);
    }
    if (scale > 1) {
        s_scaled (number, sizeof number, sum, scale);
        s_put (text, "%s_sum %s\n", name, number);
    }
    else
        s_put (text, "%s_sum %" PRIu64 "\n", name, sum);
    s_put (text, "%s_count %" PRIu64 "\n", name, count);
}

const char *
herald_exposition_content_type (herald_exposition_format_t format)
{
    return format == HERALD_EXPOSITION_OPENMETRICS
         ? "application/openmetrics-text; version=1.0.0; charset=utf-8"
         : "text/plain; version=0.0.4; charset=utf-8";
}

bool
herald_exposition_unpack (const void *body, size_t size, msgpack_zone *zone,
                          msgpack_object *map)
{
    //  herald_event_unpack checks every declared length against the bytes
    //  first: msgpack-c alone would allocate a map's slots from its header
    herald_error_t err = { 0 };
    return herald_event_unpack (body, size, zone, map, "body", &err) == HERALD_OK
        && map->type == MSGPACK_OBJECT_MAP;
}

const msgpack_object *
herald_exposition_get (const msgpack_object *map, const char *key)
{
    if (!map || map->type != MSGPACK_OBJECT_MAP)
        return NULL;
    for (uint32_t index = 0; index < map->via.map.size; index++)
        if (s_key_is (&map->via.map.ptr [index].key, key))
            return &map->via.map.ptr [index].val;
    return NULL;
}

bool
herald_exposition_uint (const msgpack_object *map, const char *key, uint64_t *value)
{
    const msgpack_object *found = herald_exposition_get (map, key);
    if (!found || found->type != MSGPACK_OBJECT_POSITIVE_INTEGER)
        return false;
    *value = found->via.u64;
    return true;
}

//  STATUS `first` and `trims` (docs/protocol.md "Trimming"): the log's
//  first seq, and one sample per trim point labelled with its prefix
static void
s_first (s_text_t *text, herald_exposition_format_t format, uint64_t first)
{
    if (!s_claim (text, "herald_first_seq", NULL))
        return;
    s_meta (text, format, "herald_first_seq", "gauge",
            "the log's first seq: 1 + the whole log's trim point (1: never trimmed)");
    s_put (text, "herald_first_seq %" PRIu64 "\n", first);
}

static void
s_trims (s_text_t *text, herald_exposition_format_t format, const msgpack_object *trims)
{
    if (trims->type != MSGPACK_OBJECT_ARRAY || !s_claim (text, "herald_trim_until_seq", NULL))
        return;
    s_meta (text, format, "herald_trim_until_seq", "gauge",
            "the last seq trimmed from the live log for the topics beginning with prefix "
            "(\"\": every topic)");
    for (uint32_t index = 0; index < trims->via.array.size; index++) {
        const msgpack_object *trim = &trims->via.array.ptr [index];
        const msgpack_object *prefix = herald_exposition_get (trim, "prefix");
        uint64_t until;
        if (!prefix || prefix->type != MSGPACK_OBJECT_STR
        ||  !herald_exposition_uint (trim, "until", &until))
            continue;
        s_put (text, "herald_trim_until_seq{prefix=\"");
        s_label_value (text, prefix);
        s_put (text, "\"} %" PRIu64 "\n", until);
    }
}

static bool
s_is_label (const msgpack_object *key)
{
    for (size_t index = 0; index < S_LABEL_COUNT; index++)
        if (s_key_is (key, s_labels [index]))
            return true;
    return s_key_is (key, "digest") || s_key_is (key, "rid");
}

char *
herald_exposition_text (const void *body, size_t size, herald_exposition_format_t format,
                        size_t *len)
{
    msgpack_zone zone;
    msgpack_zone_init (&zone, 4096);
    msgpack_object root;
    if (!herald_exposition_unpack (body, size, &zone, &root)) {
        msgpack_zone_destroy (&zone);
        return NULL;
    }
    const msgpack_object *map = &root;
    s_text_t text = { .size = 8192 };
    text.data = (char *) malloc (text.size);
    if (!text.data) {
        msgpack_zone_destroy (&zone);
        return NULL;
    }
    text.data [0] = 0;
    s_node_info (&text, format, map);
    for (uint32_t index = 0; index < map->via.map.size; index++) {
        const msgpack_object *key = &map->via.map.ptr [index].key;
        const msgpack_object *value = &map->via.map.ptr [index].val;
        if (key->type != MSGPACK_OBJECT_STR || s_is_label (key))
            continue;
        if (s_key_is (key, "first") && value->type == MSGPACK_OBJECT_POSITIVE_INTEGER) {
            s_first (&text, format, value->via.u64);
            continue;
        }
        if (s_key_is (key, "trims") && value->type == MSGPACK_OBJECT_ARRAY) {
            s_trims (&text, format, value);
            continue;
        }
        if (s_key_is (key, "histograms")) {
            for (uint32_t at = 0; value->type == MSGPACK_OBJECT_MAP && at < value->via.map.size;
                 at++)
                if (value->via.map.ptr [at].key.type == MSGPACK_OBJECT_STR)
                    s_histogram (&text, format, &value->via.map.ptr [at].key,
                                 &value->via.map.ptr [at].val);
            continue;
        }
        uint64_t number;
        if (value->type == MSGPACK_OBJECT_POSITIVE_INTEGER)
            number = value->via.u64;
        else
        if (value->type == MSGPACK_OBJECT_ARRAY)
            number = value->via.array.size;
        else
            continue;                   //  other text keys, nil, maps
        char name [160], help [200];
        s_name (name, sizeof name, key->via.str.ptr, key->via.str.size);
        const s_known_t *known = s_find (key->via.str.ptr, key->via.str.size);
        snprintf (help, sizeof help, "STATUS key %s", name + 7);
        bool counter = known && known->type == S_COUNTER;
        static const char *const total [] = { "_total", NULL };
        if (!s_claim (&text, name, counter? total: NULL))
            continue;                   //  a key seen already, or one of the same name
        s_meta (&text, format, name, counter? "counter": "gauge", known? known->help: help);
        s_put (&text, "%s%s %" PRIu64 "\n", name, counter? "_total": "", number);
    }
    if (format == HERALD_EXPOSITION_OPENMETRICS)
        s_put (&text, "# EOF\n");
    msgpack_zone_destroy (&zone);
    for (size_t index = 0; index < text.name_count; index++)
        free (text.names [index]);
    free (text.names);
    if (text.failed) {
        free (text.data);
        return NULL;
    }
    *len = text.len;
    return text.data;
}
