/*  =========================================================================
    herald_store_priv - what herald_store.c and herald_scan.c share

    The store's state and its RocksDB key layouts, for the two files that
    make up the store.  Nothing outside store/ includes this header.

    KEY LAYOUTS (every integer big-endian, so byte order is numeric order
    and RocksDB's default comparator sorts keys the way we iterate them):

    CF "default": the store's identity, and the two stored counters
        "herald.format"                     -> "1"
        "herald.digest"                     -> head u64 | digest u64
        "meta.raft.applied"                 -> raft index u64
        The log digest at head (herald_store_digest) and the last raft
        index applied (cluster mode): each written in the same WriteBatch
        as the events it describes, so a crash can never separate them
        (herald_store_cluster.c).  Every other counter is recovered from
        the data on open.
        "group/" name, "group/" name 0x00 partition u32: consumer groups'
        configs and positions (herald_store_groups.c), written by their
        ops (herald_store_groups_ops.c) in the same WriteBatch as the
        call's events.
        "trim/" prefix                      -> until u64 | ts u64 | reason
        A trim point (herald_store_trim.c): the events of the topics
        beginning with prefix (0-255 bytes; "" is the whole log) with
        seq <= until are trimmed; ts is the apply's, reason (0-256 bytes,
        optional) is kept for people.  Written by the op {op: "trim"} in
        the call's WriteBatch (or by herald_store_trims_import, synced);
        loaded on open.  Only ever raised.
        "reclaim/done"                      -> seq u64
        herald_store_reclaim's progress (herald_store_reclaim.c): every
        run with last_seq <= seq was made to hold no trimmed envelope (and
        the streams runs of those seqs were cut), as of the trim points
        "reclaim/trims" names.
        "reclaim/trims"                     -> gen u64 | max until u64
        A digest of the trim points the pass in progress works for: when
        they change, the pass starts over from the lowest run.

    CF "events": the log itself, in runs of consecutive seqs
        +------------------+      +-----------+------------------+----------------+
        | last_seq u64 (8) | ---> | count u32 | end u32 x count  | envelopes ...  |
        +------------------+      +-----------+------------------+----------------+
        One append call writes its new events as runs of consecutive
        seqs, last_seq - count + 1 .. last_seq, each at most
        HERALD_RUN_MAX_EVENTS events and HERALD_RUN_MAX_BYTES of envelopes
        (about one RocksDB block, so fetching one event by seq reads one
        small block).  end[i] is where envelope i ends, counted from the
        first envelope byte; envelope i starts at end[i-1] (0 for i = 0).
        Like a Kafka record batch: a memtable insert per run instead of per
        event, and a scan steps the iterator once per run.  Keyed by the
        LAST seq so that a forward seek to s lands on the run holding s.
        Each envelope is stored once and handed out as a slice of its run,
        sent as it is on fanout and in replies: no re-encoding.
        A HOLE is an envelope that herald_store_reclaim cut out because a
        prefix trim point covers it: 0xc1 (the byte MessagePack never
        uses; an envelope always starts with a map header), its 16-byte
        id, its ts u64 (25 bytes).  The id keeps herald_store_ids_digest
        and herald inspect whole, the ts keeps herald_store_seq_at_ts's
        binary search.  Runs whose every seq is at or below the whole-log
        trim point ("" until) are deleted: the log then starts at the run
        holding until + 1 (which may begin below it: reads filter).
        Looking a run up by seq: the key's first HERALD_EVENTS_PREFIX bytes
        are RocksDB's prefix, naming a bucket of 256 seqs, with a prefix
        bloom in each SST file and memtable.  The log is appended in seq
        order, so a bucket lives in one sorted run (two at a boundary), and
        a lookup seek (prefix_same_as_start) skips every other memtable and
        file on a filter probe instead of seeking it.  Scans that walk in
        order use total_order_seek.  An option, not a format: files from
        before it have no filter, and are seeked as before.

    CF "ids": the dedup index; one key per event
        +--------------+                       +------------+------------+-------------+
        | id     (16)  |  -------------------> | seq u64    | ver u64    | content u64 |
        +--------------+                       +------------+------------+-------------+
        content is herald_hash_content (herald_hash.h): XXH64 of the
        event's topic and data, so that a duplicate whose content differs
        (an id reused for another event) is told from a retry and flagged
        in the ACK (`reused`) rather than passing as one.  Entries written
        before the hash was kept are 16 bytes, seq and ver only: readers
        take both sizes, and a duplicate of an old entry is a plain one.

    CF "streams": the topic index; one key per topic per append call
        +---------------+------+---------------+   +-----------+-----------+---
        | topic (1-255) | 0x00 | first_ver u64 | ->| seq u64   | seq u64   | ...
        +---------------+------+---------------+   +-----------+-----------+---
        A run: the seqs of vers first_ver, first_ver + 1, ... that one
        append call gave the topic (a topic's vers within one call are
        consecutive, so a run has no holes, and runs of a topic tile
        1..ver with no gap or overlap).  One key per topic per write rather
        than per event keeps memtable inserts few: a skiplist insert at a
        scattered key costs several times a sequential one.  A topic never
        contains NUL, so 0x00 ends it: its runs are contiguous and in ver
        order, and "a" sorts before "a.b" and "ab".  The run holding ver v
        is the last key at or before "topic 0x00 v"; the topic's current
        ver ends its last run.

    CF "topics": one key per topic, written when the topic is created
        +---------------+                       +------------+
        | topic (1-255) |  -------------------> | seq u64    |  (its first event)
        +---------------+                       +------------+
        Counting these keys on open gives the topic count; a prefix seek
        here lists the topics a REPLAY's prefixes select.
    =========================================================================
*/

#ifndef HERALD_STORE_PRIV_H_INCLUDED
#define HERALD_STORE_PRIV_H_INCLUDED

#include <assert.h>
#include <inttypes.h>
#include <pthread.h>
#include <rocksdb/c.h>
#include <stdatomic.h>
#include <string.h>
#include "herald_store.h"
#include "herald_store_groups.h"

#define HERALD_STORE_FORMAT_KEY   "herald.format"
#define HERALD_STORE_FORMAT       "1"
#define HERALD_STORE_DIGEST_KEY   "herald.digest"
#define HERALD_STORE_APPLIED_KEY  "meta.raft.applied"   //  herald_store_meta_get "raft.applied"
#define HERALD_STREAM_KEY_MAX     (HERALD_TOPIC_MAX + 1 + 8)
#define HERALD_ID_VALUE_OLD       16    //  an "ids" value: seq, ver
#define HERALD_ID_VALUE           24    //  seq, ver, content hash
#define HERALD_RUN_MAX_EVENTS     1024
#define HERALD_RUN_MAX_BYTES      4096
#define HERALD_EVENTS_PREFIX      7     //  "events" key bytes that name a bucket
#define HERALD_EVENTS_BUCKET      ((uint64_t) 1 << 8 * (8 - HERALD_EVENTS_PREFIX))
#define HERALD_HOLE_BYTE          0xc1
#define HERALD_HOLE_LEN           (1 + HERALD_ID_BYTES + 8)

//  A run of events as stored in "events", parsed; pointers borrow the value.
typedef struct {
    uint64_t first_seq;
    uint32_t count;
    const uint8_t *ends;            //  count big-endian u32s
    const uint8_t *data;
} herald_run_t;

enum { CF_DEFAULT, CF_EVENTS, CF_IDS, CF_STREAMS, CF_TOPICS, CF_COUNT };

typedef struct _s_topic_cache_t s_topic_cache_t;
typedef struct _s_pending_t s_pending_t;
typedef struct _herald_groups_call_t herald_groups_call_t;

//  A new event's id and the value its ids entry gets (seq | ver | content
//  hash, big-endian).
typedef struct {
    const uint8_t *id;              //  borrowed from the event
    uint8_t value [HERALD_ID_VALUE];
} s_id_entry_t;

//  What the dedup index holds for one id, parsed.
typedef struct {
    uint64_t seq;                   //  0: the id is not stored
    uint64_t ver;
    uint64_t hash;                  //  content hash, when has_hash
    bool has_hash;                  //  false in an entry from before hashes
} s_id_found_t;

//  Parse an "ids" value of len bytes; false when it has the wrong size.
static inline bool
herald_id_value_parse (const uint8_t *value, size_t len, s_id_found_t *found);

//  A new event's place in its topic's stream, gathered during an append.
typedef struct {
    const char *topic;              //  borrowed from the event
    size_t len;
    uint64_t ver;
    uint64_t seq;
} s_stream_entry_t;

struct _herald_store_t {
    char *path;
    rocksdb_t *db;
    rocksdb_options_t *db_options;
    rocksdb_options_t *cf_options [CF_COUNT];
    rocksdb_column_family_handle_t *cf [CF_COUNT];
    rocksdb_cache_t *block_cache;
    rocksdb_writeoptions_t *write_options;
    rocksdb_readoptions_t *read_options;    //  total order
    rocksdb_readoptions_t *lookup_options;  //  "events" runs by seq: one bucket per seek
    rocksdb_readoptions_t *scan_options;    //  "events" in order, around the block cache
    herald_durability_t durability;
    //  How it was opened, and its clean-stop marker (herald_store_damage.c)
    bool read_only;
    bool accept_loss;
    bool running;                   //  "herald.open" is "1": destroy must stop it
    char *log_dir;                  //  read-only: RocksDB's LOG goes here, not the store
    //  The accepted losses, loaded on open (herald_store_damage.c)
    herald_loss_t *losses;
    char **loss_reasons;
    size_t loss_count;

    //  Counters: written by the appending thread after each write,
    //  read by any thread.
    _Atomic uint64_t head;
    _Atomic uint64_t first;         //  lowest seq stored (1 until trimming exists)
    _Atomic uint64_t topic_count;
    _Atomic uint64_t last_ts;
    _Atomic uint64_t digest;        //  the log digest at head
    _Atomic uint64_t applied;       //  the last raft index applied (0: none)
    uint64_t pinned_clock;          //  herald_store_set_clock; 0: the real clock

    //  Owned by the appending thread
    s_topic_cache_t *topic_cache;
    s_pending_t *pending;
    msgpack_sbuffer envelopes;      //  envelopes of the append in progress
    uint32_t *ends;                 //  where each of them ends in envelopes
    uint64_t appended_first;        //  seq of the last append's first new event
    size_t appended_count;          //  its new events (0 after a failed append)
    size_t ends_capacity;
    uint8_t *run;                   //  a run's value, being built
    size_t run_capacity;
    //  The ids of the append in progress, looked up together (MultiGet)
    const char **id_keys;
    size_t *id_sizes;
    rocksdb_pinnableslice_t **id_values;
    char **id_errors;
    size_t *id_which;               //  the event each looked-up id belongs to
    s_id_found_t *id_found;         //  seq 0: not stored
    uint64_t *id_hash;              //  each event's content hash
    size_t id_capacity;
    //  The new ids of the append in progress, put into the WriteBatch in id
    //  order once every batch is staged (see s_stage_ids)
    s_id_entry_t *staged_ids;
    size_t staged_count;
    size_t staged_capacity;
    //  The greatest id stored: an id above it cannot be a duplicate, so it
    //  needs no lookup (most UUIDv7 ids, which grow with time)
    uint8_t max_id [HERALD_ID_BYTES];
    bool has_max_id;
    rocksdb_writebatch_t *batch;
    s_stream_entry_t *streams;      //  this append's new events, for the runs
    size_t stream_count;
    size_t stream_capacity;
    uint64_t staged_digest;         //  the digest after the call's last staged event
    //  Consumer groups' ops of the call in progress (herald_store_groups.c)
    herald_groups_call_t *groups_call;  //  the groups as the call sees them
    bool groups_staged;             //  an op put something into the WriteBatch
    _Atomic uint64_t groups_gen;    //  odd while groups are written: readers on
                                    //  other threads read a record again
    //  Trim points (herald_store_trim.c): the points in force, sorted by
    //  prefix, under trims_lock; what scans check without the lock
    pthread_mutex_t trims_lock;
    bool trims_lock_ready;
    herald_trim_t *trims;
    size_t trim_count;
    _Atomic uint64_t trims_gen;     //  rises with every change of trims
    _Atomic uint64_t trims_max_until;   //  the greatest until (0: no trim point)
    _Atomic uint64_t log_first;     //  1 + the whole log's trim point
    //  The call in progress: its copy of the trim points, when a trim op
    //  changed them (published once the call is written)
    herald_trim_t *trims_call;
    size_t trims_call_count;
    bool trims_staged;
    uint64_t call_ts;               //  the ts of the call in progress
    //  herald_store_reclaim (herald_store_reclaim.c): one thread at a time
    pthread_mutex_t reclaim_lock;
};

//  herald_store_damage.c, for herald_store.c's open and close
herald_err
    herald_store_wal_options (rocksdb_options_t **options, bool accept_loss,
                              herald_error_t *err);
herald_err
    herald_store_check_wal (herald_store_t *self, uint64_t newest_wal, herald_error_t *err);
herald_err
    herald_store_losses_load (herald_store_t *self, herald_error_t *err);
void
    herald_store_losses_free (herald_store_t *self);

//  Big-endian u64 to and from 8 bytes.
static inline void
s_put_u64 (uint8_t *out, uint64_t value)
{
    for (int i = 7; i >= 0; i--) {
        out [i] = (uint8_t) value;
        value >>= 8;
    }
}

static inline uint64_t
s_get_u64 (const uint8_t *in)
{
    uint64_t value = 0;
    for (int i = 0; i < 8; i++)
        value = (value << 8) | in [i];
    return value;
}

static inline bool
herald_id_value_parse (const uint8_t *value, size_t len, s_id_found_t *found)
{
    if (len != HERALD_ID_VALUE && len != HERALD_ID_VALUE_OLD)
        return false;
    found->seq = s_get_u64 (value);
    found->ver = s_get_u64 (value + 8);
    found->has_hash = len == HERALD_ID_VALUE;
    found->hash = found->has_hash? s_get_u64 (value + 16): 0;
    return true;
}

static inline uint32_t
s_get_u32 (const uint8_t *in)
{
    return (uint32_t) in [0] << 24 | (uint32_t) in [1] << 16 | (uint32_t) in [2] << 8 | in [3];
}

static inline void
s_put_u32 (uint8_t *out, uint32_t value)
{
    out [0] = (uint8_t) (value >> 24);
    out [1] = (uint8_t) (value >> 16);
    out [2] = (uint8_t) (value >> 8);
    out [3] = (uint8_t) value;
}

//  Parse an "events" key and value as a run; false when they are not one
//  (wrong sizes, ends out of order or past the value).
static inline bool
herald_run_parse (const char *key, size_t key_len, const char *value, size_t len,
                  herald_run_t *run)
{
    if (key_len != 8 || len < 4)
        return false;
    const uint8_t *bytes = (const uint8_t *) value;
    uint32_t count = s_get_u32 (bytes);
    if (count == 0 || (len - 4) / 4 < count)
        return false;
    size_t data_len = len - 4 - 4 * (size_t) count;
    uint32_t previous = 0;
    for (uint32_t i = 0; i < count; i++) {
        uint32_t end = s_get_u32 (bytes + 4 + 4 * (size_t) i);
        if (end <= previous || end > data_len)
            return false;
        previous = end;
    }
    if (previous != data_len)
        return false;
    uint64_t last_seq = s_get_u64 ((const uint8_t *) key);
    if (last_seq < count)
        return false;
    run->first_seq = last_seq - count + 1;
    run->count = count;
    run->ends = bytes + 4;
    run->data = bytes + 4 + 4 * (size_t) count;
    return true;
}

//  Envelope index of a parsed run.
static inline void
herald_run_event (const herald_run_t *run, uint32_t index, const uint8_t **envelope,
                  size_t *len)
{
    uint32_t start = index? s_get_u32 (run->ends + 4 * (size_t) (index - 1)): 0;
    *envelope = run->data + start;
    *len = s_get_u32 (run->ends + 4 * (size_t) index) - start;
}

//  Write the streams key for (topic, ver) into key; returns its length.
static inline size_t
s_stream_key (uint8_t *key, const char *topic, size_t topic_len, uint64_t ver)
{
    memcpy (key, topic, topic_len);
    key [topic_len] = 0;
    s_put_u64 (key + topic_len + 1, ver);
    return topic_len + 9;
}

//  Position it (a "streams" iterator) at the run holding (topic, ver).
//  HERALD_OK when there is one; then *first_ver, *seqs (count big-endian
//  u64s, borrowed from the iterator) describe it, and ver - *first_ver <
//  count.  HERALD_ERR_NOT_FOUND when the topic has no such run,
//  HERALD_ERR_CORRUPT when its entry has the wrong shape, HERALD_ERR_IO
//  when RocksDB could not read (err filled for these two).
herald_err
    herald_store_find_run (rocksdb_iterator_t *it, const char *topic, size_t len,
                           uint64_t ver, uint64_t *first_ver, const uint8_t **seqs,
                           size_t *count, herald_error_t *err);

//  Decode the run at the iterator if it belongs to topic: HERALD_OK;
//  HERALD_ERR_NOT_FOUND when the iterator is past the topic's runs;
//  HERALD_ERR_CORRUPT, HERALD_ERR_IO as above.
herald_err
    herald_store_run_at (rocksdb_iterator_t *it, const char *topic, size_t len,
                         uint64_t *first_ver, const uint8_t **seqs, size_t *count,
                         herald_error_t *err);

//  An "events" iterator for herald_store_find_event: one bucket per seek.
//  Caller destroys it.
rocksdb_iterator_t *
    herald_store_lookup_iterator (herald_store_t *self);

//  Position it (an "events" iterator, lookup_options or total order) at
//  the run holding seq and parse it into run.  HERALD_OK; HERALD_ERR_NOT_FOUND
//  when no run holds seq (then, on a total order iterator, it rests on the
//  first run after seq, or is not valid); HERALD_ERR_CORRUPT when the run
//  found has the wrong shape; HERALD_ERR_IO when RocksDB could not read.
//  err is filled for the last two, naming seq.
herald_err
    herald_store_find_event (rocksdb_iterator_t *it, uint64_t seq, herald_run_t *run,
                             herald_error_t *err);

//  it is not valid: HERALD_OK when it simply ran out of keys; when it
//  stopped on a RocksDB error, fill err with HERALD_ERR_IO and "<what>:
//  <RocksDB's status>" (what: printf-style, naming the seq or key range)
//  and return HERALD_ERR_IO.
herald_err
    herald_store_iter_error (rocksdb_iterator_t *it, herald_error_t *err,
                             const char *format, ...) __attribute__ ((format (printf, 3, 4)));

//  Fill err with HERALD_ERR_IO and "<what>: <RocksDB's status>" for a
//  failed RocksDB call (rocks_err, which the caller still frees); returns
//  HERALD_ERR_IO.
herald_err
    herald_store_rocks_error (const char *rocks_err, herald_error_t *err,
                              const char *format, ...) __attribute__ ((format (printf, 3, 4)));

//  Make and free the state herald_store_append keeps between calls.
int
    herald_store_append_init (herald_store_t *self, size_t topic_cache);
void
    herald_store_append_free (herald_store_t *self);

//  ---------------------------------------------------------------------
//  The write pipeline of herald_store_append.c, shared with
//  herald_store_install (herald_store_cluster.c).  One call: begin, then
//  for each new event topic_ver (its ver as this call sees it), decided
//  (the call's later events see it), staged (into the WriteBatch), then
//  write.  Nothing in memory changes until write has written.

//  Start a call over batches[0..count) (total events): empty the call's
//  tables and the WriteBatch, and look every id up (then
//  herald_store_stage_find_id answers from memory).  HERALD_OK, or
//  HERALD_ERR_NOMEM, _IO, _CORRUPT with err filled.
herald_err
    herald_store_stage_begin (herald_store_t *self, herald_batch_t *batches, size_t count,
                              size_t total, herald_error_t *err);

//  Is the call's event number k stored already, or decided earlier in the
//  call?  Fills result (dup, reused) when it is.  Needs self->id_hash [k]
//  (the event's content hash).
bool
    herald_store_stage_find_id (herald_store_t *self, const herald_event_t *event, size_t k,
                                herald_append_result_t *result);

//  The event's topic's ver as the call sees it: decided earlier in the
//  call, cached, or read.  *created: the call made the topic.  0, or -1
//  with err filled.
int
    herald_store_stage_topic_ver (herald_store_t *self, const herald_event_t *event,
                                  uint64_t *ver, uint64_t *created, herald_error_t *err);

//  Record that the call's event number k gets seq and ver.
void
    herald_store_stage_decided (herald_store_t *self, const herald_event_t *event, size_t k,
                                uint64_t seq, uint64_t ver, bool created);

//  Put the call's new event number k, event with seq, ver and ts, into
//  the call: its envelope (envelope NULL: encoded; else these bytes, as
//  they are), its id, its stream entry, its topic key when ver is 1, and
//  the running digest.  event is borrowed until the write (its id and
//  topic are).  0, or -1 when out of memory.
int
    herald_store_stage_event (herald_store_t *self, const herald_event_t *event, uint64_t seq,
                              uint64_t ver, uint64_t ts, size_t k, const uint8_t *envelope,
                              size_t len, uint64_t *new_topics);

//  Write the call: its events (seqs head + 1 .. seq), their indexes and
//  the digest when it has any, raft_index when not 0, in one WriteBatch;
//  then head, last ts (ts), the topic count, the caches, the digest and
//  the applied index follow.  With no event and raft_index 0, writes
//  nothing.  HERALD_OK, or HERALD_ERR_NOMEM, _IO with err filled (then
//  nothing was written and nothing in memory changed).
herald_err
    herald_store_stage_write (herald_store_t *self, uint64_t head, uint64_t seq, uint64_t ts,
                              uint64_t new_topics, uint64_t raft_index, herald_error_t *err);

//  ---------------------------------------------------------------------
//  herald_store_groups.c: the groups' keys, for herald_store_groups_ops.c

//  A group or member name as docs/protocol.md allows: 1-128 bytes of
//  [A-Za-z0-9._-], not starting with '.'.
bool
    herald_group_name_valid (const char *name, size_t len);

//  herald_store_group_get with err never NULL.
herald_err
    herald_store_group_read (herald_store_t *self, const char *name,
                             herald_group_record_t *record, herald_error_t *err);

//  Put record's config key (-1: out of memory), one partition's key, or
//  delete every key of the record's group, into batch.
int
    herald_store_group_put_config (herald_store_t *self, rocksdb_writebatch_t *batch,
                                   const herald_group_record_t *record);
void
    herald_store_group_put_position (herald_store_t *self, rocksdb_writebatch_t *batch,
                                     const herald_group_record_t *record, uint32_t partition);
void
    herald_store_group_delete_keys (herald_store_t *self, rocksdb_writebatch_t *batch,
                                    const herald_group_record_t *record);

//  Prefixes from a MessagePack array of str into record (sorted, no
//  duplicates); false when it is not one (herald_group_record_fini frees
//  what was taken).
bool
    herald_group_prefixes_from (const msgpack_object *array, herald_group_record_t *record);

//  MessagePack helpers: a str; a uint; a map's value by str key (NULL:
//  none); a map's uint by key (false: absent or not a uint).
int
    herald_group_pack_str (msgpack_packer *pk, const char *str);
bool
    herald_group_uint (const msgpack_object *object, uint64_t *out);
const msgpack_object *
    herald_store_map_get (const msgpack_object *map, const char *key);
bool
    herald_store_map_uint (const msgpack_object *map, const char *key, uint64_t *out);

//  Around every write of groups (twice: before and after), so that a
//  reader on another thread never takes half of one.
void
    herald_store_groups_writing (herald_store_t *self);

//  herald_store_groups_ops.c: apply batch's op (count 0, op set) into the
//  call's WriteBatch, after what the call did before it, and set its
//  op_result.  A bad op is a
//  result (ok false), never an error: -1 (err filled) only when the store
//  cannot be read or memory runs out, and then the apply fails as a whole.
int
    herald_store_groups_stage (herald_store_t *self, herald_batch_t *batch,
                               herald_error_t *err);

//  Forget the call's view of the groups (each call starts afresh), and
//  free it all (destroy).
void
    herald_store_groups_call_reset (herald_store_t *self);
void
    herald_store_groups_free (herald_store_t *self);

//  ---------------------------------------------------------------------
//  herald_store_trim.c

//  A hole: an envelope reclaim cut out (see "events" above).
static inline bool
herald_envelope_is_hole (const uint8_t *bytes, size_t len)
{
    return len == HERALD_HOLE_LEN && bytes [0] == HERALD_HOLE_BYTE;
}

//  The id of an envelope or a hole into id; false when the bytes are
//  neither.
bool
    herald_envelope_id (const uint8_t *bytes, size_t len, uint8_t id [HERALD_ID_BYTES]);

//  A prefix a trim point may have: 0-255 bytes, no NUL, not starting '$'.
bool
    herald_trim_prefix_valid (const char *prefix, size_t len);

//  Make the trim state (open, before anything else; -1: out of
//  resources), free it (destroy), load the points (open, after the
//  column families).
int
    herald_store_trims_init (herald_store_t *self);
void
    herald_store_trims_free (herald_store_t *self);
herald_err
    herald_store_trims_load (herald_store_t *self, herald_error_t *err);

//  The ts of event seq as the log holds it (an event or a hole cut out by
//  reclaim); HERALD_ERR_CORRUPT when no run holds seq.  herald_store.c.
herald_err
    herald_store_event_ts (herald_store_t *self, uint64_t seq, uint64_t *ts,
                           herald_error_t *err);

//  herald_store_first, and the trim point that decides it into *point
//  (all zero when none).
uint64_t
    herald_store_first_point (herald_store_t *self, const herald_str_t *prefixes,
                              size_t count, herald_trim_t *point);

//  The op {op: "trim"} of batch, decoded into op: into the call's
//  WriteBatch and overlay, its result set.  -1 with err filled when the
//  log cannot be read for the proof or memory runs out (the apply fails).
int
    herald_store_trim_stage (herald_store_t *self, herald_batch_t *batch,
                             const msgpack_object *op, herald_error_t *err);

//  The call's trim points: dropped (each call starts afresh, and a failed
//  one), or made the store's once its WriteBatch is written.
void
    herald_store_trims_call_reset (herald_store_t *self);
void
    herald_store_trims_publish (herald_store_t *self);

//  ---------------------------------------------------------------------
//  herald_store_cluster.c

//  The digest after previous of an event (seq, ver, ts set) whose content
//  hash (herald_hash_content) is content.  Deterministic, machine
//  independent; the definition is in herald_store_cluster.c.
uint64_t
    herald_store_digest_next (uint64_t previous, const herald_event_t *event,
                              uint64_t content);

//  On open, after head is recovered: the applied index, and the digest
//  (read, or computed from the log when not stored for this head).
herald_err
    herald_store_recover_cluster (herald_store_t *self, herald_error_t *err);

//  Look a topic's current ver up in RocksDB (no cache): 0 when none.
//  Returns -1 when it cannot be known (then err is filled: HERALD_ERR_IO,
//  RocksDB failed; HERALD_ERR_CORRUPT, the topic exists without a stream).
int
    herald_store_lookup_ver (herald_store_t *self, const char *topic, size_t len,
                             uint64_t *ver, herald_error_t *err);

#endif
