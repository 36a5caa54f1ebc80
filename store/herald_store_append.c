/*  =========================================================================
    herald_store_append - herald_store_append(): the group commit

    DESIGN

    An append is one WriteBatch across the column families (layouts in
    herald_store_priv.h), so an event, its id, its stream run and (for a
    new topic) its topic key land together or not at all, and one WAL sync
    covers the whole group commit under durability sync.

    Appending runs in two passes per batch.  Pass one decides: for each
    event, is its id known (dedup), what is its topic's ver, does `expect`
    hold.  Decisions go into a per-call table (s_pending_t) so later events
    of the call, in this batch or the next, see earlier ones; an undo log
    rolls a batch's entries back when one of its `expect`s fails, leaving
    the other batches of the call untouched.  A duplicate's content hash
    (herald_hash.h) is compared with the one its id was stored with: a
    difference marks it `reused`, an id given to a second, different
    event; either way it is not stored.  Pass two encodes the
    envelopes of a batch that passed.  After the last batch, the call's new
    envelopes become "events" runs and each topic it touched one "streams"
    run.  Nothing in memory (head, counts, the topic cache) changes until
    RocksDB has accepted the write, so a failed write leaves the store as
    it was.

    A batch with no events and an `op` is a consumer group's op
    (herald_store_groups_ops.c) or a trim (herald_store_trim.c): decided
    in its turn among the batches,
    its keys put into the same WriteBatch; it leaves the log, the digest
    and the counters alone, yet makes the call write even when no event
    is new (self->groups_staged).

    Where a topic's ver comes from: the topic cache (a direct-mapped table
    of recently appended topics, bounded), else RocksDB: a point get in
    "topics" (bloom-filtered, so a new topic costs almost nothing) and,
    when the topic exists, a seek to its last stream run.  Whether an id
    is stored: one MultiGet for all of the call's ids.
    =========================================================================
*/

#include <assert.h>
#include <stdlib.h>
#include <time.h>
#include "herald_store_priv.h"
#include "herald_hash.h"

#define TOPIC_CACHE_DEFAULT     65536

//  ---------------------------------------------------------------------
//  Hash of a short key (a topic, an id): eight bytes per multiply, then
//  a final mix, so every input bit reaches the low bits a table masks.

static uint64_t
s_hash (const void *data, size_t len)
{
    const uint8_t *bytes = data;
    uint64_t hash = 0x9E3779B97F4A7C15ull ^ len;
    for (; len >= 8; bytes += 8, len -= 8) {
        uint64_t word;
        memcpy (&word, bytes, 8);
        hash = (hash ^ word) * 0xFF51AFD7ED558CCDull;
        hash ^= hash >> 32;
    }
    for (; len > 0; bytes++, len--)
        hash = (hash ^ *bytes) * 0x100000001B3ull;
    hash ^= hash >> 29;
    hash *= 0xBF58476D1CE4E5B9ull;
    return hash ^ (hash >> 32);
}

//  ---------------------------------------------------------------------
//  Topic cache: topic -> current ver, direct-mapped.  A collision evicts;
//  a miss costs a RocksDB lookup, never a wrong answer, because the cache
//  is written only after a successful write by the one appending thread.

typedef struct {
    char *topic;                    //  256-byte buffer, allocated on first use
    size_t len;
    uint64_t ver;
} s_cache_slot_t;

struct _s_topic_cache_t {
    s_cache_slot_t *slots;
    size_t mask;
};

static s_topic_cache_t *
s_topic_cache_new (size_t entries)
{
    size_t size = 1;
    while (size < entries)
        size <<= 1;
    s_topic_cache_t *self = calloc (1, sizeof (*self));
    if (!self)
        return NULL;
    self->slots = calloc (size, sizeof (s_cache_slot_t));
    if (!self->slots) {
        free (self);
        return NULL;
    }
    self->mask = size - 1;
    return self;
}

static void
s_topic_cache_destroy (s_topic_cache_t **self_p)
{
    s_topic_cache_t *self = *self_p;
    if (!self)
        return;
    for (size_t i = 0; i <= self->mask; i++)
        free (self->slots [i].topic);
    free (self->slots);
    free (self);
    *self_p = NULL;
}

static bool
s_topic_cache_get (s_topic_cache_t *self, const char *topic, size_t len, uint64_t *ver)
{
    s_cache_slot_t *slot = &self->slots [s_hash (topic, len) & self->mask];
    if (slot->topic && slot->len == len && memcmp (slot->topic, topic, len) == 0) {
        *ver = slot->ver;
        return true;
    }
    return false;
}

static void
s_topic_cache_put (s_topic_cache_t *self, const char *topic, size_t len, uint64_t ver)
{
    s_cache_slot_t *slot = &self->slots [s_hash (topic, len) & self->mask];
    if (!slot->topic) {
        slot->topic = malloc (HERALD_TOPIC_MAX + 1);
        if (!slot->topic)
            return;                 //  a cache may forget
    }
    memcpy (slot->topic, topic, len);
    slot->len = len;
    slot->ver = ver;
}

//  ---------------------------------------------------------------------
//  Pending table: what the append in progress has decided, keyed by
//  borrowed bytes (an event's id or topic).  Open addressing, load <= 1/2,
//  cleared in O(1) by bumping a generation.  Every change is logged so a
//  batch that fails its `expect` can be undone exactly, newest first.

typedef struct {
    const void *key;
    uint32_t len;
    uint32_t gen;                   //  live when equal to the table's gen
    uint64_t a, b;                  //  ids: seq, ver;  topics: ver, created
    uint64_t c;                     //  ids: content hash (an id is set once
                                    //  per call, so the undo log need not keep it)
} s_slot_t;

typedef struct {
    size_t index;
    bool was_empty;
    uint64_t a, b;
} s_undo_t;

typedef struct {
    s_slot_t *slots;
    size_t capacity;                //  a power of two
    uint32_t gen;
    s_undo_t *undo;
    size_t undo_count;
    size_t undo_capacity;
} s_table_t;

struct _s_pending_t {
    s_table_t ids;
    s_table_t topics;
    s_table_t groups;               //  topic -> its s_stream_group_t, while staging streams
};

//  Empty the table and make room for at least entries keys.
static int
s_table_reset (s_table_t *self, size_t entries)
{
    size_t want = 16;
    while (want < entries * 2)
        want <<= 1;
    if (want > self->capacity) {
        s_slot_t *slots = calloc (want, sizeof (s_slot_t));
        s_undo_t *undo = malloc (entries * 2 * sizeof (s_undo_t) + sizeof (s_undo_t));
        if (!slots || !undo) {
            free (slots);
            free (undo);
            return -1;
        }
        free (self->slots);
        free (self->undo);
        self->slots = slots;
        self->capacity = want;
        self->undo = undo;
        self->undo_capacity = entries * 2 + 1;
        self->gen = 0;
    }
    else
    if (entries * 2 + 1 > self->undo_capacity) {
        s_undo_t *undo = realloc (self->undo, (entries * 2 + 1) * sizeof (s_undo_t));
        if (!undo)
            return -1;
        self->undo = undo;
        self->undo_capacity = entries * 2 + 1;
    }
    if (++self->gen == 0) {         //  wrapped: stale slots could look live
        memset (self->slots, 0, self->capacity * sizeof (s_slot_t));
        self->gen = 1;
    }
    self->undo_count = 0;
    return 0;
}

static void
s_table_destroy (s_table_t *self)
{
    free (self->slots);
    free (self->undo);
    memset (self, 0, sizeof (*self));
}

//  The slot holding key, or the empty slot where it would go.
static s_slot_t *
s_table_probe (s_table_t *self, const void *key, size_t len)
{
    size_t mask = self->capacity - 1;
    size_t index = s_hash (key, len) & mask;
    while (true) {
        s_slot_t *slot = &self->slots [index];
        if (slot->gen != self->gen)
            return slot;
        if (slot->len == len && memcmp (slot->key, key, len) == 0)
            return slot;
        index = (index + 1) & mask;
    }
}

static s_slot_t *
s_table_find (s_table_t *self, const void *key, size_t len)
{
    s_slot_t *slot = s_table_probe (self, key, len);
    return slot->gen == self->gen? slot: NULL;
}

static s_slot_t *
s_table_set (s_table_t *self, const void *key, size_t len, uint64_t a, uint64_t b)
{
    s_slot_t *slot = s_table_probe (self, key, len);
    //  Each event adds at most one entry to each table and reset sized
    //  the undo log for twice the events, so this cannot overflow.
    assert (self->undo_count < self->undo_capacity);
    s_undo_t *undo = &self->undo [self->undo_count++];
    undo->index = (size_t) (slot - self->slots);
    undo->was_empty = slot->gen != self->gen;
    undo->a = slot->a;
    undo->b = slot->b;
    slot->key = key;
    slot->len = (uint32_t) len;
    slot->gen = self->gen;
    slot->a = a;
    slot->b = b;
    return slot;
}

//  Undo every change made since the undo log had mark entries.
static void
s_table_rollback (s_table_t *self, size_t mark)
{
    while (self->undo_count > mark) {
        s_undo_t *undo = &self->undo [--self->undo_count];
        s_slot_t *slot = &self->slots [undo->index];
        if (undo->was_empty)
            slot->gen = self->gen - 1;
        else {
            slot->a = undo->a;
            slot->b = undo->b;
        }
    }
}


//  ---------------------------------------------------------------------
//  Appending

static uint64_t
s_now_ns (void)
{
    struct timespec now;
    clock_gettime (CLOCK_REALTIME, &now);
    return (uint64_t) now.tv_sec * 1000000000ULL + (uint64_t) now.tv_nsec;
}


//  The topic's ver as this append call sees it: pending, cache, RocksDB.
int
herald_store_stage_topic_ver (herald_store_t *self, const herald_event_t *event,
                              uint64_t *ver, uint64_t *created, herald_error_t *err)
{
    s_slot_t *slot = s_table_find (&self->pending->topics, event->topic, event->topic_len);
    if (slot) {
        *ver = slot->a;
        *created = slot->b;
        return 0;
    }
    *created = 0;
    if (s_topic_cache_get (self->topic_cache, event->topic, event->topic_len, ver))
        return 0;
    return herald_store_lookup_ver (self, event->topic, event->topic_len, ver, err);
}

//  Look every id of the call up in one MultiGet: far cheaper than a get
//  per event.  The store cannot change during the call (one appender), so
//  the answers hold until it ends; ids the call itself adds are found in
//  the pending table first.
static int
s_prefetch_ids (herald_store_t *self, herald_batch_t *batches, size_t count, size_t total,
                herald_error_t *err)
{
    if (total > self->id_capacity) {
        free (self->id_keys);
        free (self->id_sizes);
        free (self->id_which);
        free (self->id_values);
        free (self->id_errors);
        free (self->id_found);
        free (self->id_hash);
        self->id_keys = malloc (total * sizeof (char *));
        self->id_sizes = malloc (total * sizeof (size_t));
        self->id_which = malloc (total * sizeof (size_t));
        self->id_values = malloc (total * sizeof (rocksdb_pinnableslice_t *));
        self->id_errors = malloc (total * sizeof (char *));
        self->id_found = malloc (total * sizeof (s_id_found_t));
        self->id_hash = malloc (total * sizeof (uint64_t));
        self->id_capacity = total;
        if (!self->id_keys || !self->id_sizes || !self->id_which || !self->id_values
        ||  !self->id_errors
        ||  !self->id_found || !self->id_hash) {
            self->id_capacity = 0;
            return herald_error_set (err, HERALD_ERR_NOMEM, "", "out of memory");
        }
    }
    //  Only ids at or below the greatest stored id can be stored already.
    size_t n = 0;
    for (size_t b = 0, k = 0; b < count; b++)
        for (size_t i = 0; i < batches [b].count; i++, k++) {
            const uint8_t *id = batches [b].events [i].id;
            self->id_found [k] = (s_id_found_t) { 0 };
            if (self->has_max_id && memcmp (id, self->max_id, HERALD_ID_BYTES) <= 0) {
                self->id_keys [n] = (const char *) id;
                self->id_sizes [n] = HERALD_ID_BYTES;
                self->id_which [n] = k;
                n++;
            }
        }
    if (n == 0)
        return 0;
    rocksdb_batched_multi_get_cf (self->db, self->read_options, self->cf [CF_IDS], n,
                                  self->id_keys, self->id_sizes, self->id_values,
                                  self->id_errors, false);
    int rc = 0;
    for (size_t j = 0; j < n; j++) {
        size_t k = self->id_which [j];
        if (self->id_errors [j]) {
            if (rc == 0)
                herald_error_set (err, HERALD_ERR_IO, "ids", "reading id index: %s",
                                  self->id_errors [j]);
            free (self->id_errors [j]);
            rc = -1;
        }
        if (self->id_values [j]) {
            size_t len;
            const uint8_t *bytes = (const uint8_t *) rocksdb_pinnableslice_value (
                self->id_values [j], &len);
            if (!herald_id_value_parse (bytes, len, &self->id_found [k]) && rc == 0) {
                herald_error_set (err, HERALD_ERR_CORRUPT, "ids",
                                  "id index entry of %zu bytes", len);
                rc = -1;
            }
            rocksdb_pinnableslice_destroy (self->id_values [j]);
        }
    }
    return rc;
}

//  Is the call's event number k (its id) already stored, or added earlier
//  in this call?  Fills result when it is: a duplicate, and reused when
//  the content it was stored with is known and differs from this event's
//  (self->id_hash [k]).
bool
herald_store_stage_find_id (herald_store_t *self, const herald_event_t *event, size_t k,
                            herald_append_result_t *result)
{
    s_slot_t *slot = s_table_find (&self->pending->ids, event->id, HERALD_ID_BYTES);
    if (slot) {
        *result = (herald_append_result_t) {
            .seq = slot->a, .ver = slot->b, .dup = true, .reused = slot->c != self->id_hash [k]
        };
        return true;
    }
    const s_id_found_t *found = &self->id_found [k];
    if (found->seq) {
        *result = (herald_append_result_t) {
            .seq = found->seq, .ver = found->ver, .dup = true,
            .reused = found->has_hash && found->hash != self->id_hash [k]
        };
        return true;
    }
    return false;
}

//  Pass one for a batch: decide seq, ver and dup for each event and check
//  `expect`.  On a conflict, undo the batch's decisions and say why.
static int
s_decide (herald_store_t *self, herald_batch_t *batch, size_t first_k, uint64_t *seq,
          herald_error_t *err)
{
    s_pending_t *pending = self->pending;
    size_t ids_mark = pending->ids.undo_count;
    size_t topics_mark = pending->topics.undo_count;
    uint64_t seq_mark = *seq;
    batch->status = HERALD_OK;

    for (size_t i = 0; i < batch->count; i++) {
        const herald_event_t *event = &batch->events [i];
        herald_append_result_t *result = &batch->results [i];
        self->id_hash [first_k + i] = herald_hash_content (event);
        if (herald_store_stage_find_id (self, event, first_k + i, result))
            continue;               //  a duplicate: `expect` is not checked
        uint64_t ver, created;
        if (herald_store_stage_topic_ver (self, event, &ver, &created, err) != 0)
            return -1;
        if (event->has_expect && event->expect != ver) {
            s_table_rollback (&pending->ids, ids_mark);
            s_table_rollback (&pending->topics, topics_mark);
            *seq = seq_mark;
            batch->status = HERALD_ERR_CONFLICT;
            batch->conflict_index = i;
            batch->expected = event->expect;
            batch->actual = ver;
            return 0;
        }
        *result = (herald_append_result_t) { .seq = ++*seq, .ver = ver + 1, .dup = false };
        herald_store_stage_decided (self, event, first_k + i, result->seq, result->ver,
                                    created || ver == 0);
    }
    return 0;
}

void
herald_store_stage_decided (herald_store_t *self, const herald_event_t *event, size_t k,
                            uint64_t seq, uint64_t ver, bool created)
{
    s_pending_t *pending = self->pending;
    s_table_set (&pending->topics, event->topic, event->topic_len, ver, created);
    s_table_set (&pending->ids, event->id, HERALD_ID_BYTES, seq, ver)->c = self->id_hash [k];
}

//  Remember (topic, ver, seq) of a new event for the streams index.
static int
s_note_stream (herald_store_t *self, const herald_event_t *event, uint64_t ver, uint64_t seq)
{
    if (self->stream_count == self->stream_capacity) {
        size_t capacity = self->stream_capacity? self->stream_capacity * 2: 1024;
        s_stream_entry_t *entries = realloc (self->streams, capacity * sizeof (s_stream_entry_t));
        if (!entries)
            return -1;
        self->streams = entries;
        self->stream_capacity = capacity;
    }
    self->streams [self->stream_count++] = (s_stream_entry_t) {
        .topic = event->topic, .len = event->topic_len, .ver = ver, .seq = seq
    };
    return 0;
}

//  The topics one append call touched, and where each one's seqs go.
typedef struct {
    const char *topic;
    size_t len;
    uint64_t first_ver;
    size_t count;                   //  its new events
    size_t start;                   //  where its seqs start
    size_t filled;                  //  how many of them are in place
} s_stream_group_t;

static int
s_group_order (const void *a, const void *b)
{
    const s_stream_group_t *left = *(s_stream_group_t *const *) a;
    const s_stream_group_t *right = *(s_stream_group_t *const *) b;
    size_t len = left->len < right->len? left->len: right->len;
    int order = memcmp (left->topic, right->topic, len);
    if (order == 0)
        order = left->len < right->len? -1: left->len > right->len;
    return order;
}

//  Put the call's new envelopes, seqs first_seq.., as runs: at most
//  RUN_MAX_EVENTS events and, unless one event is larger, RUN_MAX_BYTES.
static int
s_stage_events (herald_store_t *self, uint64_t first_seq)
{
    size_t total = self->stream_count;
    size_t start = 0;
    while (start < total) {
        size_t base = start? self->ends [start - 1]: 0;
        size_t end = start + 1;
        while (end < total && end - start < HERALD_RUN_MAX_EVENTS
           &&  self->ends [end] - base <= HERALD_RUN_MAX_BYTES)
            end++;
        size_t count = end - start;
        size_t data_len = self->ends [end - 1] - base;
        size_t header_len = 4 + 4 * count;
        if (header_len > self->run_capacity) {
            uint8_t *run = realloc (self->run, header_len);
            if (!run)
                return -1;
            self->run = run;
            self->run_capacity = header_len;
        }
        s_put_u32 (self->run, (uint32_t) count);
        for (size_t i = 0; i < count; i++)
            s_put_u32 (self->run + 4 + 4 * i, (uint32_t) (self->ends [start + i] - base));
        //  Header and envelopes go in as two slices: no copy of the data.
        uint8_t key [8];
        s_put_u64 (key, first_seq + end - 1);        //  a run is keyed by its last seq
        const char *key_parts [1] = { (const char *) key };
        size_t key_sizes [1] = { 8 };
        const char *value_parts [2] = { (const char *) self->run, self->envelopes.data + base };
        size_t value_sizes [2] = { header_len, data_len };
        rocksdb_writebatch_putv_cf (self->batch, self->cf [CF_EVENTS], 1, key_parts, key_sizes,
                                    2, value_parts, value_sizes);
        start = end;
    }
    return 0;
}

//  Put one streams run per topic the call touched, in topic order.  The
//  entries come in seq order, so a topic's entries are its new vers in
//  order: grouping them by topic (a hash, then a counting sort) is enough,
//  and only the distinct topics are sorted.
static int
s_stage_streams (herald_store_t *self)
{
    size_t total = self->stream_count;
    s_table_t *index = &self->pending->groups;
    s_stream_group_t *groups = malloc (total * sizeof (s_stream_group_t) + 1);
    s_stream_group_t **order = malloc (total * sizeof (s_stream_group_t *) + 1);
    uint32_t *group_of = malloc (total * sizeof (uint32_t) + 1);
    uint8_t *seqs = malloc (total * 8 + 8);
    int rc = groups && order && group_of && seqs && s_table_reset (index, total) == 0? 0: -1;
    size_t group_count = 0;
    for (size_t i = 0; rc == 0 && i < total; i++) {
        const s_stream_entry_t *entry = &self->streams [i];
        s_slot_t *slot = s_table_find (index, entry->topic, entry->len);
        size_t group = slot? (size_t) slot->a: group_count;
        if (!slot) {
            groups [group] = (s_stream_group_t) {
                .topic = entry->topic, .len = entry->len, .first_ver = entry->ver
            };
            order [group] = &groups [group];
            s_table_set (index, entry->topic, entry->len, group, 0);
            group_count++;
        }
        group_of [i] = (uint32_t) group;
        groups [group].count++;
    }
    if (rc == 0) {
        qsort (order, group_count, sizeof (s_stream_group_t *), s_group_order);
        size_t at = 0;
        for (size_t g = 0; g < group_count; g++) {
            order [g]->start = at;
            at += order [g]->count;
        }
        for (size_t i = 0; i < total; i++) {
            s_stream_group_t *group = &groups [group_of [i]];
            assert (self->streams [i].ver == group->first_ver + group->filled);
            s_put_u64 (seqs + 8 * (group->start + group->filled++), self->streams [i].seq);
        }
        for (size_t g = 0; g < group_count; g++) {
            const s_stream_group_t *group = order [g];
            uint8_t key [HERALD_STREAM_KEY_MAX];
            size_t key_len = s_stream_key (key, group->topic, group->len, group->first_ver);
            rocksdb_writebatch_put_cf (self->batch, self->cf [CF_STREAMS],
                                       (const char *) key, key_len,
                                       (const char *) seqs + 8 * group->start, 8 * group->count);
        }
    }
    free (group_of);
    free (groups);
    free (order);
    free (seqs);
    return rc;
}

//  Pass two for a batch that passed: its new events into the WriteBatch.
//  first_k: the call's number of the batch's first event.
static int
s_stage (herald_store_t *self, const herald_batch_t *batch, size_t first_k, uint64_t ts,
         uint64_t *new_topics)
{
    for (size_t i = 0; i < batch->count; i++) {
        const herald_append_result_t *result = &batch->results [i];
        if (result->dup)
            continue;
        if (herald_store_stage_event (self, &batch->events [i], result->seq, result->ver, ts,
                                      first_k + i, NULL, 0, new_topics) != 0)
            return -1;
    }
    return 0;
}

int
herald_store_stage_event (herald_store_t *self, const herald_event_t *stored, uint64_t seq,
                          uint64_t ver, uint64_t ts, size_t k, const uint8_t *envelope,
                          size_t len, uint64_t *new_topics)
{
    herald_event_t copy = *stored;
    copy.seq = seq;
    copy.ver = ver;
    copy.ts = ts;
    const herald_event_t *event = &copy;
    if (envelope) {
        if (msgpack_sbuffer_write (&self->envelopes, (const char *) envelope, len) != 0)
            return -1;
    }
    else
    if (herald_event_encode (event, &self->envelopes) != 0)
        return -1;
    size_t index = self->stream_count;  //  one per new event, in seq order
    if (index == self->ends_capacity) {
        size_t capacity = self->ends_capacity? self->ends_capacity * 2: 1024;
        uint32_t *ends = realloc (self->ends, capacity * sizeof (uint32_t));
        if (!ends)
            return -1;
        self->ends = ends;
        self->ends_capacity = capacity;
    }
    self->ends [index] = (uint32_t) self->envelopes.size;

    uint8_t seq_key [8];
    s_put_u64 (seq_key, event->seq);
    if (self->staged_count == self->staged_capacity) {
        size_t capacity = self->staged_capacity? self->staged_capacity * 2: 1024;
        s_id_entry_t *staged = realloc (self->staged_ids, capacity * sizeof (s_id_entry_t));
        if (!staged)
            return -1;
        self->staged_ids = staged;
        self->staged_capacity = capacity;
    }
    s_id_entry_t *entry = &self->staged_ids [self->staged_count++];
    entry->id = stored->id;         //  borrowed: the caller's event outlives the call
    s_put_u64 (entry->value, event->seq);
    s_put_u64 (entry->value + 8, event->ver);
    s_put_u64 (entry->value + 16, self->id_hash [k]);
    if (s_note_stream (self, event, event->ver, event->seq) != 0)
        return -1;
    if (event->ver == 1) {
        rocksdb_writebatch_put_cf (self->batch, self->cf [CF_TOPICS],
                                   event->topic, event->topic_len,
                                   (const char *) seq_key, 8);
        (*new_topics)++;
    }
    //  The call's events are staged in seq order, so the digest chains
    self->staged_digest = herald_store_digest_next (self->staged_digest, event,
                                                    self->id_hash [k]);
    return 0;
}

static int
s_id_order (const void *a, const void *b)
{
    return memcmp (((const s_id_entry_t *) a)->id, ((const s_id_entry_t *) b)->id,
                   HERALD_ID_BYTES);
}

//  Put the new ids into the WriteBatch in id order.  RocksDB inserts a
//  batch's entries into the memtable's skiplist one after another, and an
//  insert near the previous one is cheap; several publishers' UUIDv7 ids
//  interleave, and in arrival order every insert searched the skiplist
//  from its top (the memtable was a third of the broker's time with four).
//  One publisher's UUIDv7 ids usually come already in order: then
//  checking is all the sorting they need.
static void
s_stage_ids (herald_store_t *self)
{
    size_t sorted = 1;
    while (sorted < self->staged_count
       &&  memcmp (self->staged_ids [sorted - 1].id, self->staged_ids [sorted].id,
                   HERALD_ID_BYTES) < 0)
        sorted++;
    if (sorted < self->staged_count)
        qsort (self->staged_ids, self->staged_count, sizeof (s_id_entry_t), s_id_order);
    for (size_t i = 0; i < self->staged_count; i++)
        rocksdb_writebatch_put_cf (self->batch, self->cf [CF_IDS],
                                   (const char *) self->staged_ids [i].id, HERALD_ID_BYTES,
                                   (const char *) self->staged_ids [i].value,
                                   HERALD_ID_VALUE);
}

herald_err
herald_store_append (herald_store_t *self, herald_batch_t *batches, size_t count,
                     herald_error_t *err)
{
    return herald_store_apply (self, batches, count, herald_store_now (self), err);
}

uint64_t
herald_store_now (herald_store_t *self)
{
    assert (self);
    return self->pinned_clock? self->pinned_clock: s_now_ns ();
}

herald_err
herald_store_stage_begin (herald_store_t *self, herald_batch_t *batches, size_t count,
                          size_t total, herald_error_t *err)
{
    //  RocksDB counts into a thread-local perf context on every memtable
    //  insert and lookup unless told not to, per thread.
    static _Thread_local bool perf_disabled = false;
    if (!perf_disabled) {
        rocksdb_set_perf_level (rocksdb_disable);
        perf_disabled = true;
    }
    self->appended_count = 0;
    if (s_table_reset (&self->pending->ids, total) != 0
    ||  s_table_reset (&self->pending->topics, total) != 0)
        return herald_error_set (err, HERALD_ERR_NOMEM, "", "out of memory");
    rocksdb_writebatch_clear (self->batch);
    self->stream_count = 0;
    self->staged_count = 0;
    self->envelopes.size = 0;
    self->staged_digest = atomic_load (&self->digest);
    herald_store_groups_call_reset (self);
    self->groups_staged = false;
    herald_store_trims_call_reset (self);
    if (total && s_prefetch_ids (self, batches, count, total, err) != 0)
        return err->code;
    return HERALD_OK;
}

herald_err
herald_store_stage_write (herald_store_t *self, uint64_t head, uint64_t seq, uint64_t ts,
                          uint64_t new_topics, uint64_t raft_index, herald_error_t *err)
{
    if (seq == head && raft_index == 0 && !self->groups_staged && !self->trims_staged)
        return HERALD_OK;           //  only duplicates and conflicts: nothing to write
    if (seq != head) {
        if (s_stage_events (self, head + 1) != 0 || s_stage_streams (self) != 0)
            return herald_error_set (err, HERALD_ERR_NOMEM, "", "out of memory");
        s_stage_ids (self);
        //  The digest goes with the head it is at (herald_store_cluster.c)
        uint8_t digest [16];
        s_put_u64 (digest, seq);
        s_put_u64 (digest + 8, self->staged_digest);
        rocksdb_writebatch_put_cf (self->batch, self->cf [CF_DEFAULT],
                                   HERALD_STORE_DIGEST_KEY, strlen (HERALD_STORE_DIGEST_KEY),
                                   (const char *) digest, sizeof (digest));
    }
    if (raft_index) {
        //  The entry's index with its effects, or alone when it had none:
        //  "applied" and what it did can never disagree after a crash
        uint8_t applied [8];
        s_put_u64 (applied, raft_index);
        rocksdb_writebatch_put_cf (self->batch, self->cf [CF_DEFAULT],
                                   HERALD_STORE_APPLIED_KEY, strlen (HERALD_STORE_APPLIED_KEY),
                                   (const char *) applied, sizeof (applied));
    }
    char *rocks_err = NULL;
    if (self->groups_staged)
        herald_store_groups_writing (self);
    rocksdb_write (self->db, self->write_options, self->batch, &rocks_err);
    if (self->groups_staged)
        herald_store_groups_writing (self);
    if (rocks_err) {
        herald_error_set (err, HERALD_ERR_IO, "", "writing to %s: %s", self->path, rocks_err);
        free (rocks_err);
        return err->code;
    }
    //  Durable: now the in-memory state may follow.
    herald_store_trims_publish (self);
    if (raft_index)
        atomic_store (&self->applied, raft_index);
    if (seq == head)
        return HERALD_OK;
    s_table_t *topics = &self->pending->topics;
    for (size_t i = 0; i < topics->undo_count; i++) {
        s_slot_t *slot = &topics->slots [topics->undo [i].index];
        s_topic_cache_put (self->topic_cache, slot->key, slot->len, slot->a);
    }
    s_table_t *ids = &self->pending->ids;
    for (size_t i = 0; i < ids->undo_count; i++) {
        s_slot_t *slot = &ids->slots [ids->undo [i].index];
        if (!self->has_max_id || memcmp (slot->key, self->max_id, HERALD_ID_BYTES) > 0) {
            memcpy (self->max_id, slot->key, HERALD_ID_BYTES);
            self->has_max_id = true;
        }
    }
    self->appended_first = head + 1;
    self->appended_count = (size_t) (seq - head);
    atomic_fetch_add (&self->topic_count, new_topics);
    atomic_store (&self->last_ts, ts);
    atomic_store (&self->digest, self->staged_digest);
    atomic_store (&self->head, seq);
    return HERALD_OK;
}

//  herald_store_apply, and herald_store_apply_entry when raft_index is not
//  0 (its index checked by the caller).
static herald_err
s_apply (herald_store_t *self, herald_batch_t *batches, size_t count, uint64_t ts,
         uint64_t raft_index, herald_error_t *err)
{
    size_t total = 0;
    for (size_t b = 0; b < count; b++)
        total += batches [b].count;
    if (herald_store_stage_begin (self, batches, count, total, err) != HERALD_OK)
        return err->code;

    //  One ts for the whole call: the one proposed, but never behind the
    //  log (a clock that stepped back, or a new leader's clock behind the
    //  last one's), so ts never decreases along seq.
    uint64_t last_ts = atomic_load (&self->last_ts);
    if (ts < last_ts)
        ts = last_ts;
    self->call_ts = ts;             //  a trim op's ts (herald_store_trim.c)

    uint64_t head = atomic_load (&self->head);
    uint64_t seq = head;
    uint64_t new_topics = 0;
    for (size_t b = 0, k = 0; b < count; k += batches [b].count, b++) {
        if (batches [b].op && batches [b].count == 0) {
            //  A group's op: its writes go into the same WriteBatch, in
            //  batch order; the log (head, digest, counts) is untouched
            if (herald_store_groups_stage (self, &batches [b], err) != 0)
                return err->code;
            continue;
        }
        if (s_decide (self, &batches [b], k, &seq, err) != 0)
            return err->code;
        if (batches [b].status == HERALD_OK
        &&  s_stage (self, &batches [b], k, ts, &new_topics) != 0)
            return herald_error_set (err, HERALD_ERR_NOMEM, "", "out of memory");
    }
    return herald_store_stage_write (self, head, seq, ts, new_topics, raft_index, err);
}

//  s_apply, with every op result dropped when the call fails as a whole
//  (herald_store.h: NULL when the apply failed)
static herald_err
s_apply_call (herald_store_t *self, herald_batch_t *batches, size_t count, uint64_t ts,
              uint64_t raft_index, herald_error_t *err)
{
    for (size_t b = 0; b < count; b++)
        if (batches [b].op && batches [b].count == 0) {
            batches [b].op_result = NULL;
            batches [b].op_result_len = 0;
        }
    herald_err rc = s_apply (self, batches, count, ts, raft_index, err);
    if (rc != HERALD_OK)
        for (size_t b = 0; b < count; b++)
            if (batches [b].op && batches [b].count == 0) {
                free (batches [b].op_result);
                batches [b].op_result = NULL;
                batches [b].op_result_len = 0;
            }
    herald_store_groups_call_reset (self);
    herald_store_trims_call_reset (self);
    return rc;
}

herald_err
herald_store_apply (herald_store_t *self, herald_batch_t *batches, size_t count,
                    uint64_t ts, herald_error_t *err)
{
    assert (self);
    return s_apply_call (self, batches, count, ts, 0, err);
}

herald_err
herald_store_apply_entry (herald_store_t *self, herald_batch_t *batches, size_t count,
                          uint64_t ts, uint64_t raft_index, herald_error_t *err)
{
    assert (self);
    uint64_t applied = atomic_load (&self->applied);
    for (size_t b = 0; raft_index <= applied && b < count; b++)
        if (batches [b].op && batches [b].count == 0) {
            batches [b].op_result = NULL;
            batches [b].op_result_len = 0;
        }
    if (raft_index <= applied)
        return herald_error_set (err, HERALD_ERR_INTERNAL, "",
            "raft entry %llu is not after the last one applied (%llu): not applied again",
            (unsigned long long) raft_index, (unsigned long long) applied);
    return s_apply_call (self, batches, count, ts, raft_index, err);
}

herald_err
herald_store_set_applied (herald_store_t *self, uint64_t raft_index, herald_error_t *err)
{
    assert (self);
    return herald_store_apply_entry (self, NULL, 0, 0, raft_index, err);
}

void
herald_store_set_clock (herald_store_t *self, uint64_t now_ns)
{
    assert (self);
    self->pinned_clock = now_ns;
}


bool
herald_store_appended (herald_store_t *self, uint64_t seq, const uint8_t **envelope,
                       size_t *len)
{
    assert (self);
    if (seq < self->appended_first || seq - self->appended_first >= self->appended_count)
        return false;
    size_t index = (size_t) (seq - self->appended_first);
    size_t start = index? self->ends [index - 1]: 0;
    *envelope = (const uint8_t *) self->envelopes.data + start;
    *len = self->ends [index] - start;
    return true;
}

void
herald_store_take_appended (herald_store_t *self, herald_store_envelopes_t *envelopes)
{
    assert (self && envelopes);
    herald_store_envelopes_t taken = {
        .first = self->appended_first, .count = self->appended_count,
        .buffer = self->envelopes, .ends = self->ends, .ends_capacity = self->ends_capacity
    };
    self->envelopes = envelopes->buffer;
    self->envelopes.size = 0;
    self->ends = envelopes->ends;
    self->ends_capacity = envelopes->ends_capacity;
    self->appended_count = 0;
    *envelopes = taken;
}

bool
herald_store_envelope (const herald_store_envelopes_t *envelopes, uint64_t seq,
                       const uint8_t **envelope, size_t *len)
{
    assert (envelopes);
    if (seq < envelopes->first || seq - envelopes->first >= envelopes->count)
        return false;
    size_t index = (size_t) (seq - envelopes->first);
    size_t start = index? envelopes->ends [index - 1]: 0;
    *envelope = (const uint8_t *) envelopes->buffer.data + start;
    *len = envelopes->ends [index] - start;
    return true;
}

void
herald_store_envelopes_free (herald_store_envelopes_t *envelopes)
{
    if (!envelopes)
        return;
    msgpack_sbuffer_destroy (&envelopes->buffer);
    free (envelopes->ends);
    memset (envelopes, 0, sizeof (*envelopes));
}

//  ---------------------------------------------------------------------
//  The append state's lifecycle, called by open and destroy

int
herald_store_append_init (herald_store_t *self, size_t topic_cache)
{
    self->topic_cache = s_topic_cache_new (topic_cache? topic_cache: TOPIC_CACHE_DEFAULT);
    self->pending = calloc (1, sizeof (s_pending_t));
    self->batch = rocksdb_writebatch_create ();
    msgpack_sbuffer_init (&self->envelopes);
    return self->topic_cache && self->pending && self->batch? 0: -1;
}

void
herald_store_append_free (herald_store_t *self)
{
    if (self->batch)
        rocksdb_writebatch_destroy (self->batch);
    if (self->pending) {
        s_table_destroy (&self->pending->ids);
        s_table_destroy (&self->pending->topics);
        s_table_destroy (&self->pending->groups);
        free (self->pending);
    }
    herald_store_groups_free (self);
    s_topic_cache_destroy (&self->topic_cache);
    free (self->streams);
    free (self->ends);
    free (self->run);
    free (self->id_keys);
    free (self->id_sizes);
    free (self->id_which);
    free (self->id_values);
    free (self->id_errors);
    free (self->id_found);
    free (self->id_hash);
    free (self->staged_ids);
    msgpack_sbuffer_destroy (&self->envelopes);
}
