/*  =========================================================================
    herald_scan - forward iterators over the log: REPLAY and READ streams

    DESIGN

    A scan is planned once, when it starts, and then pulled one envelope
    at a time, so the broker can stream it under credit from any thread
    while the writer appends.  The bound is fixed at the start (the head
    then, or `to`, or the last seq at `until_ts`): a stream never waits for
    the future.  Envelopes are handed out straight from RocksDB's iterator,
    never re-encoded.

    Three ways to walk:

      full    iterate "events" from `from` to the bound, filtering topics
              by prefix from the head of each envelope (herald_event_peek,
              no allocation).  Cost: the range.
      index   when the prefixes select few topics holding few events, walk
              each selected topic's stream ("streams" keys, in ver order,
              which is seq order within a topic) and merge the topics by
              seq with a min-heap, fetching each envelope by seq.  Cost:
              the events returned, plus a few seeks per topic.
      read    one topic's stream in ver order (READ).

    index and read fetch each envelope by seq through a lookup iterator,
    which seeks only the memtable or file that holds the seq's bucket
    (herald_store_priv.h); a long full scan iterates around the block
    cache, so a catch-up does not evict what sparse reads and live readers
    use (nor grow the cache to its cap for blocks it reads once).

    Choosing between full and index: index costs about INDEX_COST_EVENT
    full-scan steps per event and INDEX_COST_TOPIC per topic; it is used
    when that is cheaper than the range, and only for at most
    INDEX_TOPICS_MAX topics (the merge keeps a cursor per topic).
    =========================================================================
*/

#include <assert.h>
#include <stdlib.h>
#include "herald_store_priv.h"

#define INDEX_TOPICS_MAX    4096
#define INDEX_COST_EVENT    8
#define INDEX_COST_TOPIC    16
#define CURSOR_BUFFER       32
#define FULL_SCAN_UNCACHED  65536       //  seqs from which a full scan skips the cache

typedef enum { SCAN_FULL, SCAN_INDEX, SCAN_READ } s_mode_t;

//  One topic's place in an index scan: a window of its next seqs.
typedef struct {
    char *topic;                    //  owned
    size_t len;
    uint64_t next_ver;              //  first ver not yet in seqs
    uint64_t max_ver;               //  the topic's ver when the scan began
    uint64_t seqs [CURSOR_BUFFER];
    size_t pos;
    size_t count;
} s_cursor_t;

struct _herald_scan_t {
    herald_store_t *store;
    s_mode_t mode;
    uint64_t from;                  //  first seq (scan) or ver (read)
    uint64_t bound;                 //  last seq (scan) or ver (read) to return
    uint64_t head;
    uint64_t last;
    bool started;
    bool done;
    herald_str_t *prefixes;         //  normalised: none is a prefix of another
    size_t prefix_count;
    rocksdb_iterator_t *events;
    herald_run_t run;               //  the events run in hand (run.count 0: none)
    uint32_t run_index;             //  full: the next event of run to examine
    rocksdb_iterator_t *streams;
    s_cursor_t *cursors;
    size_t cursor_count;
    s_cursor_t **heap;              //  min-heap on each cursor's next seq
    size_t heap_count;
    char *topic;                    //  read: owned copy
    size_t topic_len;
    uint64_t run_first;             //  read: the streams run in hand
    const uint8_t *run_seqs;
    size_t run_count;
    msgpack_zone zone;              //  for envelopes peek cannot read
    herald_error_t error;
    //  Trim points (herald_store_trim.c) as the scan last looked
    uint64_t start_gen;             //  trims_gen when the scan checked its start
    uint64_t trims_gen;             //  trims_gen when trimmed_bound was computed
    uint64_t trimmed_bound;         //  no matching event above it is trimmed
};

static int s_fail_trimmed (herald_scan_t *self, uint64_t seq);
static bool s_trimmed_since (herald_scan_t *self);

static int
s_prefix_order (const void *a, const void *b)
{
    const herald_str_t *left = a, *right = b;
    return left->len < right->len? -1: left->len > right->len;
}

//  Copy prefixes, dropping any that another prefix already covers ("ab"
//  under "a"), so that each event matches at most one and the topic sets
//  of the prefixes are disjoint.  An empty prefix means everything: then
//  prefix_count ends up 0.
static int
s_set_prefixes (herald_scan_t *self, const herald_str_t *prefixes, size_t count)
{
    if (count == 0)
        return 0;
    herald_str_t *sorted = malloc (count * sizeof (herald_str_t));
    self->prefixes = calloc (count, sizeof (herald_str_t));
    if (!sorted || !self->prefixes) {
        free (sorted);
        return -1;
    }
    memcpy (sorted, prefixes, count * sizeof (herald_str_t));
    qsort (sorted, count, sizeof (herald_str_t), s_prefix_order);
    for (size_t i = 0; i < count; i++) {
        if (sorted [i].len == 0) {
            self->prefix_count = 0;             //  matches every topic
            break;
        }
        bool covered = false;
        for (size_t j = 0; j < self->prefix_count && !covered; j++)
            covered = self->prefixes [j].len <= sorted [i].len
                   && memcmp (self->prefixes [j].ptr, sorted [i].ptr, self->prefixes [j].len) == 0;
        if (covered)
            continue;
        char *copy = malloc (sorted [i].len);
        if (!copy) {
            free (sorted);
            return -1;
        }
        memcpy (copy, sorted [i].ptr, sorted [i].len);
        self->prefixes [self->prefix_count++] = (herald_str_t) { copy, sorted [i].len };
    }
    free (sorted);
    return 0;
}

static bool
s_topic_matches (herald_scan_t *self, const char *topic, size_t len)
{
    if (self->prefix_count == 0)
        return true;
    for (size_t i = 0; i < self->prefix_count; i++)
        if (self->prefixes [i].len <= len
        &&  memcmp (self->prefixes [i].ptr, topic, self->prefixes [i].len) == 0)
            return true;
    return false;
}

static herald_scan_t *
s_scan_new (herald_store_t *store, s_mode_t mode)
{
    herald_scan_t *self = calloc (1, sizeof (*self));
    if (!self)
        return NULL;
    self->store = store;
    self->mode = mode;
    msgpack_zone_init (&self->zone, 2048);
    return self;
}

void
herald_scan_destroy (herald_scan_t **self_p)
{
    assert (self_p);
    herald_scan_t *self = *self_p;
    if (!self)
        return;
    if (self->events)
        rocksdb_iter_destroy (self->events);
    if (self->streams)
        rocksdb_iter_destroy (self->streams);
    for (size_t i = 0; i < self->prefix_count; i++)
        free ((char *) self->prefixes [i].ptr);
    free (self->prefixes);
    for (size_t i = 0; i < self->cursor_count; i++)
        free (self->cursors [i].topic);
    free (self->cursors);
    free (self->heap);
    free (self->topic);
    msgpack_zone_destroy (&self->zone);
    free (self);
    *self_p = NULL;
}

static rocksdb_iterator_t *
s_iterator (herald_store_t *store, int cf)
{
    return rocksdb_create_iterator_cf (store->db, store->read_options, store->cf [cf]);
}

//  ---------------------------------------------------------------------
//  Index planning and the per-topic cursors

//  A topic's stream has no entry for ver, which it must have: corrupt.
static int
s_stream_missing (herald_scan_t *self, const char *topic, size_t len, uint64_t ver)
{
    if (s_trimmed_since (self))
        return s_fail_trimmed (self, self->last + 1);
    herald_error_set (&self->error, HERALD_ERR_CORRUPT, "",
                      "topic %.*s: stream entry %llu missing",
                      (int) len, topic, (unsigned long long) ver);
    return -1;
}

//  The seq of a topic's event ver, from the streams run holding it.
//  Returns 0, or -1 with self->error filled.
static int
s_stream_seq (herald_scan_t *self, const char *topic, size_t len, uint64_t ver, uint64_t *seq)
{
    uint64_t first_ver;
    const uint8_t *seqs;
    size_t count;
    herald_err rc = herald_store_find_run (self->streams, topic, len, ver, &first_ver, &seqs,
                                           &count, &self->error);
    if (rc == HERALD_ERR_NOT_FOUND)
        return s_stream_missing (self, topic, len, ver);
    if (rc != HERALD_OK)
        return -1;
    *seq = s_get_u64 (seqs + 8 * (ver - first_ver));
    return 0;
}

//  Load the cursor's next window of seqs from its topic's stream.
static int
s_cursor_fill (herald_scan_t *self, s_cursor_t *cursor)
{
    cursor->pos = cursor->count = 0;
    if (cursor->next_ver > cursor->max_ver)
        return 0;
    uint64_t first_ver;
    const uint8_t *seqs;
    size_t count;
    herald_err rc = herald_store_find_run (self->streams, cursor->topic, cursor->len,
                                           cursor->next_ver, &first_ver, &seqs, &count,
                                           &self->error);
    while (rc == HERALD_OK
       &&  cursor->count < CURSOR_BUFFER && cursor->next_ver <= cursor->max_ver) {
        if (cursor->next_ver - first_ver == count) {
            //  This run is used up; the next one must start where it ended.
            rocksdb_iter_next (self->streams);
            rc = herald_store_run_at (self->streams, cursor->topic, cursor->len,
                                      &first_ver, &seqs, &count, &self->error);
            if (rc == HERALD_OK && first_ver != cursor->next_ver)
                rc = HERALD_ERR_NOT_FOUND;
            if (rc != HERALD_OK)
                break;
        }
        cursor->seqs [cursor->count++] = s_get_u64 (seqs + 8 * (cursor->next_ver - first_ver));
        cursor->next_ver++;
    }
    if (rc == HERALD_ERR_NOT_FOUND)
        return s_stream_missing (self, cursor->topic, cursor->len, cursor->next_ver);
    return rc == HERALD_OK? 0: -1;
}

//  The first ver of the cursor's topic whose seq >= from: ver 1 when the
//  topic began at or after from, else a binary search over the stream.
//  Returns 0, or -1 with self->error filled (never "the topic has nothing
//  in range", which would skip it).
static int
s_cursor_start (herald_scan_t *self, s_cursor_t *cursor, uint64_t first_seq)
{
    cursor->next_ver = 1;
    if (self->from <= first_seq)
        return 0;
    uint64_t low = 1, high = cursor->max_ver + 1;
    if (atomic_load (&self->store->trims_max_until)) {
        //  Reclaim deletes a topic's oldest streams runs once all their
        //  events are trimmed (all below from): start at its first one
        uint8_t key [HERALD_STREAM_KEY_MAX];
        size_t key_len = s_stream_key (key, cursor->topic, cursor->len, 0);
        rocksdb_iter_seek (self->streams, (const char *) key, key_len);
        const uint8_t *seqs;
        size_t count;
        herald_err rc = herald_store_run_at (self->streams, cursor->topic, cursor->len, &low,
                                             &seqs, &count, &self->error);
        if (rc == HERALD_ERR_NOT_FOUND)
            return s_stream_missing (self, cursor->topic, cursor->len, 1);
        if (rc != HERALD_OK)
            return -1;
    }
    while (low < high) {
        uint64_t middle = low + (high - low) / 2;
        uint64_t seq = 0;
        if (s_stream_seq (self, cursor->topic, cursor->len, middle, &seq) != 0)
            return -1;
        if (seq >= self->from)
            high = middle;
        else
            low = middle + 1;
    }
    cursor->next_ver = low;
    return 0;
}

static bool
s_heap_less (s_cursor_t *a, s_cursor_t *b)
{
    return a->seqs [a->pos] < b->seqs [b->pos];
}

static void
s_heap_down (herald_scan_t *self, size_t index)
{
    while (true) {
        size_t smallest = index, left = 2 * index + 1, right = left + 1;
        if (left < self->heap_count && s_heap_less (self->heap [left], self->heap [smallest]))
            smallest = left;
        if (right < self->heap_count && s_heap_less (self->heap [right], self->heap [smallest]))
            smallest = right;
        if (smallest == index)
            return;
        s_cursor_t *swap = self->heap [index];
        self->heap [index] = self->heap [smallest];
        self->heap [smallest] = swap;
        index = smallest;
    }
}

//  List the topics the prefixes select, with their vers.  Returns 1 when
//  the index should be used, 0 for a full scan, -1 on error.
static int
s_plan_index (herald_scan_t *self)
{
    if (self->prefix_count == 0 || self->bound < self->from)
        return 0;
    herald_store_t *store = self->store;
    self->cursors = calloc (INDEX_TOPICS_MAX, sizeof (s_cursor_t));
    if (!self->cursors)
        return -1;
    uint64_t *first_seqs = calloc (INDEX_TOPICS_MAX, sizeof (uint64_t));
    if (!first_seqs)
        return -1;
    rocksdb_iterator_t *it = s_iterator (store, CF_TOPICS);
    self->streams = s_iterator (store, CF_STREAMS);
    uint64_t cost = 0, range = self->bound - self->from + 1;
    bool use_index = true;
    for (size_t p = 0; p < self->prefix_count && use_index; p++) {
        rocksdb_iter_seek (it, self->prefixes [p].ptr, self->prefixes [p].len);
        for (; true; rocksdb_iter_next (it)) {
            //  The end of the topics, or a failure: a topic not listed
            //  would be left out of the stream in silence
            if (!rocksdb_iter_valid (it)) {
                if (herald_store_iter_error (it, &self->error,
                                             "cannot list the topics under a prefix")
                    != HERALD_OK) {
                    rocksdb_iter_destroy (it);
                    free (first_seqs);
                    return -1;
                }
                break;
            }
            size_t len, value_len;
            const char *topic = rocksdb_iter_key (it, &len);
            const char *value = rocksdb_iter_value (it, &value_len);
            if (len < self->prefixes [p].len
            ||  memcmp (topic, self->prefixes [p].ptr, self->prefixes [p].len) != 0)
                break;
            if (self->cursor_count == INDEX_TOPICS_MAX || value_len != 8) {
                use_index = false;
                break;
            }
            uint64_t first_seq = s_get_u64 ((const uint8_t *) value);
            if (first_seq > self->bound)
                continue;           //  created after the scan's range
            //  The topic's ver ends its last streams run.
            s_cursor_t *cursor = &self->cursors [self->cursor_count];
            uint64_t run_first;
            const uint8_t *run_seqs;
            size_t run_count;
            herald_err rc = herald_store_find_run (self->streams, topic, len, UINT64_MAX,
                                                   &run_first, &run_seqs, &run_count,
                                                   &self->error);
            if (rc != HERALD_OK) {
                if (rc == HERALD_ERR_NOT_FOUND)
                    herald_error_set (&self->error, HERALD_ERR_CORRUPT, "",
                                      "topic %.*s has no stream",
                                      (int) len, topic);
                rocksdb_iter_destroy (it);
                free (first_seqs);
                return -1;
            }
            cursor->max_ver = run_first + run_count - 1;
            cursor->topic = malloc (len);
            if (!cursor->topic) {
                rocksdb_iter_destroy (it);
                free (first_seqs);
                return -1;
            }
            memcpy (cursor->topic, topic, len);
            cursor->len = len;
            first_seqs [self->cursor_count++] = first_seq;
            cost += INDEX_COST_TOPIC + INDEX_COST_EVENT * cursor->max_ver;
            if (cost >= range) {
                use_index = false;
                break;
            }
        }
    }
    rocksdb_iter_destroy (it);
    if (!use_index) {
        free (first_seqs);
        return 0;
    }
    self->heap = calloc (self->cursor_count? self->cursor_count: 1, sizeof (s_cursor_t *));
    if (!self->heap) {
        free (first_seqs);
        return -1;
    }
    for (size_t i = 0; i < self->cursor_count; i++) {
        s_cursor_t *cursor = &self->cursors [i];
        if (s_cursor_start (self, cursor, first_seqs [i]) != 0
        ||  s_cursor_fill (self, cursor) != 0) {
            free (first_seqs);
            return -1;
        }
        if (cursor->count)
            self->heap [self->heap_count++] = cursor;
    }
    free (first_seqs);
    for (size_t i = self->heap_count; i-- > 0;)
        s_heap_down (self, i);
    return 1;
}

//  ---------------------------------------------------------------------
//  Starting scans

herald_scan_t *
herald_store_scan (herald_store_t *store, const herald_scan_spec_t *spec, herald_error_t *err)
{
    assert (store);
    assert (spec);
    if (!spec->has_from_ts && spec->from == 0) {
        herald_error_set (err, HERALD_ERR_BAD_REQUEST, "from", "from must be at least 1");
        return NULL;
    }
    if (spec->has_to && spec->has_until_ts) {
        herald_error_set (err, HERALD_ERR_BAD_REQUEST, "until_ts",
                          "to and until_ts cannot be given together");
        return NULL;
    }
    if (!spec->has_from_ts && spec->has_to && spec->to < spec->from) {
        herald_error_set (err, HERALD_ERR_BAD_REQUEST, "to", "to (%llu) is before from (%llu)",
                          (unsigned long long) spec->to, (unsigned long long) spec->from);
        return NULL;
    }
    herald_scan_t *self = s_scan_new (store, SCAN_FULL);
    if (!self || s_set_prefixes (self, spec->prefixes, spec->prefix_count) != 0) {
        herald_scan_destroy (&self);
        herald_error_set (err, HERALD_ERR_NOMEM, "", "out of memory");
        return NULL;
    }
    //  Read head before creating any iterator: every seq up to it is then
    //  visible to the iterators.
    self->head = herald_store_head (store);
    self->from = spec->from;
    if (spec->has_from_ts
    &&  herald_store_seq_at_ts (store, spec->from_ts, &self->from, err) != HERALD_OK) {
        herald_scan_destroy (&self);
        return NULL;
    }
    self->bound = self->head;
    if (spec->has_to && spec->to < self->bound)
        self->bound = spec->to;
    if (spec->has_until_ts) {
        uint64_t until = self->head;
        if (spec->until_ts != UINT64_MAX) {
            if (herald_store_seq_at_ts (store, spec->until_ts + 1, &until, err) != HERALD_OK) {
                herald_scan_destroy (&self);
                return NULL;
            }
            until--;
        }
        if (until < self->bound)
            self->bound = until;
    }
    self->last = self->from - 1;
    //  Trimmed: refused when it would start at a trimmed event
    self->start_gen = self->trims_gen = atomic_load (&store->trims_gen);
    herald_trim_t point;
    uint64_t first = herald_store_first_point (store, self->prefixes, self->prefix_count,
                                               &point);
    self->trimmed_bound = first - 1;
    //  A start at a time: the live log's first event at or after it says
    //  nothing of the trimmed events before it; any of those with a ts at
    //  or after it (the point's until_ts bounds them) would be skipped
    if (spec->has_from_ts && first > 1 && spec->from_ts <= point.until_ts) {
        herald_error_set (err, HERALD_ERR_TRIMMED, "from_ts",
            "events with ts %llu or later were trimmed from the live log (trim point "
            "\"%.*s\" until seq %llu, ts %llu); the first seq still there for these "
            "prefixes is %llu", (unsigned long long) spec->from_ts, (int) point.prefix_len,
            point.prefix, (unsigned long long) point.until,
            (unsigned long long) point.until_ts, (unsigned long long) first);
        herald_scan_destroy (&self);
        return NULL;
    }
    if (self->from < first) {
        herald_error_set (err, HERALD_ERR_TRIMMED, spec->has_from_ts? "from_ts": "from",
            "seq %llu was trimmed from the live log (trim point \"%.*s\" until %llu); "
            "the first seq still there for these prefixes is %llu",
            (unsigned long long) self->from, (int) point.prefix_len, point.prefix,
            (unsigned long long) point.until, (unsigned long long) first);
        herald_scan_destroy (&self);
        return NULL;
    }
    int plan = s_plan_index (self);
    if (plan < 0) {
        if (err)
            *err = self->error;
        herald_scan_destroy (&self);
        return NULL;
    }
    self->mode = plan? SCAN_INDEX: SCAN_FULL;
    //  A long full scan reads around the block cache: it would only
    //  evict what others read (a short one, a gap repair near the head,
    //  may well be read again, and is cached)
    bool long_scan = self->bound >= self->from
                  && self->bound - self->from >= FULL_SCAN_UNCACHED;
    self->events = plan? herald_store_lookup_iterator (store)
                       : rocksdb_create_iterator_cf (store->db, long_scan? store->scan_options
                                                                        : store->read_options,
                                                     store->cf [CF_EVENTS]);
    return self;
}

herald_scan_t *
herald_store_read (herald_store_t *store, const char *topic, size_t topic_len,
                   uint64_t from_ver, uint64_t to_ver, herald_error_t *err)
{
    assert (store);
    if (!herald_topic_valid (topic, topic_len)) {
        herald_error_set (err, HERALD_ERR_BAD_REQUEST, "topic", "not a valid topic");
        return NULL;
    }
    if (from_ver == 0) {
        herald_error_set (err, HERALD_ERR_BAD_REQUEST, "from_ver", "from_ver must be at least 1");
        return NULL;
    }
    if (to_ver && to_ver < from_ver) {
        herald_error_set (err, HERALD_ERR_BAD_REQUEST, "to_ver",
                          "to_ver (%llu) is before from_ver (%llu)",
                          (unsigned long long) to_ver, (unsigned long long) from_ver);
        return NULL;
    }
    herald_scan_t *self = s_scan_new (store, SCAN_READ);
    if (self)
        self->topic = malloc (topic_len);
    if (!self || !self->topic) {
        herald_scan_destroy (&self);
        herald_error_set (err, HERALD_ERR_NOMEM, "", "out of memory");
        return NULL;
    }
    memcpy (self->topic, topic, topic_len);
    self->topic_len = topic_len;
    if (herald_store_lookup_ver (store, topic, topic_len, &self->head, err) != 0) {
        herald_scan_destroy (&self);
        return NULL;
    }
    self->from = from_ver;
    self->bound = to_ver && to_ver < self->head? to_ver: self->head;
    self->last = from_ver - 1;
    self->events = herald_store_lookup_iterator (store);
    self->streams = s_iterator (store, CF_STREAMS);
    //  Checked after the iterators are made: whatever reclaim removed
    //  before them was trimmed by a point this check sees
    self->start_gen = self->trims_gen = atomic_load (&store->trims_gen);
    self->trimmed_bound = herald_store_topic_trimmed (store, topic, topic_len);
    if (self->trimmed_bound && from_ver <= self->head) {
        uint64_t first_ver;
        if (herald_store_topic_first_ver (store, topic, topic_len, &first_ver, err)
                != HERALD_OK) {
            herald_scan_destroy (&self);
            return NULL;
        }
        if (from_ver < first_ver) {
            herald_error_set (err, HERALD_ERR_TRIMMED, "from_ver",
                "ver %llu of %.*s was trimmed from the live log (trim point up to "
                "seq %llu); its first ver still there is %llu", (unsigned long long) from_ver,
                (int) topic_len, topic, (unsigned long long) self->trimmed_bound,
                (unsigned long long) first_ver);
            herald_scan_destroy (&self);
            return NULL;
        }
    }
    return self;
}

//  ---------------------------------------------------------------------
//  Pulling events

//  Point at the envelope of seq: from the run in hand when it holds seq
//  (an index scan often fetches neighbours), else by a seek.
static bool
s_fetch (herald_scan_t *self, uint64_t seq, const uint8_t **envelope, size_t *len)
{
    if (self->run.count == 0 || seq - self->run.first_seq >= self->run.count) {
        herald_err rc = herald_store_find_event (self->events, seq, &self->run, &self->error);
        if (rc != HERALD_OK) {
            self->run.count = 0;
            if (rc == HERALD_ERR_NOT_FOUND && s_trimmed_since (self)) {
                s_fail_trimmed (self, seq);
                self->done = false;         //  the caller fails
            }
            else
            if (rc == HERALD_ERR_NOT_FOUND)
                herald_error_set (&self->error, HERALD_ERR_CORRUPT, "",
                                  "event %llu is indexed but missing from the log",
                                  (unsigned long long) seq);
            return false;
        }
    }
    herald_run_event (&self->run, (uint32_t) (seq - self->run.first_seq), envelope, len);
    return true;
}

//  The topic of an envelope: from its head when we wrote it, else by a
//  full decode (only for bytes some other writer produced).
static bool
s_envelope_topic (herald_scan_t *self, const char *bytes, size_t len,
                  const char **topic, size_t *topic_len)
{
    uint64_t seq, ver, ts;
    if (herald_event_peek (bytes, len, topic, topic_len, &seq, &ver, &ts))
        return true;
    msgpack_zone_clear (&self->zone);
    herald_event_t event;
    herald_error_t error;
    if (herald_event_decode (&event, bytes, len, &self->zone, &error) != HERALD_OK)
        return false;
    *topic = event.topic;
    *topic_len = event.topic_len;
    return true;
}

static int
s_end (herald_scan_t *self)
{
    self->done = true;
    if (self->mode != SCAN_READ && self->bound >= self->from)
        self->last = self->bound;
    return 0;
}

static int
s_fail (herald_scan_t *self)
{
    self->done = true;
    return -1;
}

//  ---------------------------------------------------------------------
//  Trimmed events

//  No event the scan matches above the returned seq is trimmed: the
//  greatest until among the trim points overlapping its prefixes (a
//  read: those beginning its topic), looked up again only when the trim
//  points changed.  Below it, an event needs herald_store_topic_trimmed.
static uint64_t
s_trimmed_bound (herald_scan_t *self)
{
    herald_store_t *store = self->store;
    uint64_t gen = atomic_load (&store->trims_gen);
    if (gen != self->trims_gen) {
        self->trims_gen = gen;
        if (self->mode == SCAN_READ)
            self->trimmed_bound = herald_store_topic_trimmed (store, self->topic,
                                                              self->topic_len);
        else
            self->trimmed_bound = herald_store_first (store, self->prefixes,
                                                      self->prefix_count) - 1;
    }
    return self->trimmed_bound;
}

//  Is the event seq of topic, which the scan matches, trimmed?
static bool
s_is_trimmed (herald_scan_t *self, const char *topic, size_t len, uint64_t seq)
{
    return seq <= s_trimmed_bound (self)
        && herald_store_topic_trimmed (self->store, topic, len) >= seq;
}

//  The scan met seq, an event it matches (or a hole that may be one)
//  that a trim applied since it began made unreadable: it ends -1 with
//  HERALD_ERR_TRIMMED rather than skip it.
static int
s_fail_trimmed (herald_scan_t *self, uint64_t seq)
{
    herald_store_t *store = self->store;
    if (self->mode == SCAN_READ) {
        uint64_t first_ver = 0;
        herald_error_t ignored;
        herald_store_topic_first_ver (store, self->topic, self->topic_len, &first_ver,
                                      &ignored);
        herald_error_set (&self->error, HERALD_ERR_TRIMMED, "from_ver",
            "ver %llu of %.*s was trimmed from the live log while the read ran; its first "
            "ver still there is %llu", (unsigned long long) self->last + 1,
            (int) self->topic_len, self->topic, (unsigned long long) first_ver);
    }
    else {
        herald_trim_t point;
        uint64_t first = herald_store_first_point (store, self->prefixes, self->prefix_count,
                                                   &point);
        herald_error_set (&self->error, HERALD_ERR_TRIMMED, "from",
            "seq %llu was trimmed from the live log while the stream ran (trim point "
            "\"%.*s\" until %llu); the first seq still there for these prefixes is %llu",
            (unsigned long long) seq, (int) point.prefix_len, point.prefix,
            (unsigned long long) point.until, (unsigned long long) first);
    }
    return s_fail (self);
}

//  Data the scan needs is missing: when the trim points changed since it
//  began, a trim (and reclaim) took it, not a fault of the log
static bool
s_trimmed_since (herald_scan_t *self)
{
    return atomic_load (&self->store->trims_gen) != self->start_gen;
}

//  Parse the run under the events iterator into self->run.
static bool
s_load_run (herald_scan_t *self)
{
    size_t key_len, len;
    const char *key = rocksdb_iter_key (self->events, &key_len);
    const char *value = rocksdb_iter_value (self->events, &len);
    if (herald_run_parse (key, key_len, value, len, &self->run))
        return true;
    self->run.count = 0;
    herald_error_set (&self->error, HERALD_ERR_CORRUPT, "",
                      "the run of events after seq %llu has the wrong shape",
                      (unsigned long long) self->last);
    return false;
}

//  The log has no run for seqs first..: a hole, or a tail missing below
//  the bound (every seq up to the head the scan began at is stored).
static int
s_fail_missing (herald_scan_t *self, uint64_t first, uint64_t next)
{
    if (s_trimmed_since (self))
        return s_fail_trimmed (self, first);
    if (next > first + 1)
        herald_error_set (&self->error, HERALD_ERR_CORRUPT, "",
                          "seq gap: events %llu to %llu are missing from the log",
                          (unsigned long long) first, (unsigned long long) next - 1);
    else
        herald_error_set (&self->error, HERALD_ERR_CORRUPT, "",
                          "seq gap: event %llu is missing from the log",
                          (unsigned long long) first);
    return s_fail (self);
}

//  A full scan steps through runs, and through each run's envelopes.
//  Runs must follow each other with no gap up to the bound: the end of
//  the iterator before it is a failure (RocksDB's, or a hole), never the
//  end of the stream.
static int
s_next_full (herald_scan_t *self, const uint8_t **envelope, size_t *len, uint64_t *seq)
{
    if (!self->started) {
        self->started = true;
        if (self->bound < self->from)
            return s_end (self);
        herald_err rc = herald_store_find_event (self->events, self->from, &self->run,
                                                 &self->error);
        if (rc == HERALD_ERR_NOT_FOUND) {
            if (self->from < atomic_load (&self->store->first)
            &&  rocksdb_iter_valid (self->events))
                //  Before the first stored seq (none is, until trimming
                //  exists): start at the first run
                rc = HERALD_OK;
            else
                return s_fail_missing (self, self->from,
                                       rocksdb_iter_valid (self->events)
                                       && self->run.first_seq <= self->bound
                                       ? self->run.first_seq: self->bound + 1);
        }
        if (rc != HERALD_OK) {
            self->run.count = 0;
            return s_fail (self);
        }
        self->run_index = self->from >= self->run.first_seq
                        ? (uint32_t) (self->from - self->run.first_seq): 0;
    }
    while (true) {
        if (self->run_index == self->run.count) {
            uint64_t expected = self->run.first_seq + self->run.count;
            if (expected > self->bound)
                return s_end (self);
            rocksdb_iter_next (self->events);
            if (!rocksdb_iter_valid (self->events)) {
                if (herald_store_iter_error (self->events, &self->error,
                                             "cannot read the log at seq %llu",
                                             (unsigned long long) expected) != HERALD_OK)
                    return s_fail (self);
                return s_fail_missing (self, expected, self->bound + 1);
            }
            if (!s_load_run (self))
                return s_fail (self);
            if (self->run.first_seq != expected)
                return s_fail_missing (self, expected,
                                       self->run.first_seq <= self->bound
                                       ? self->run.first_seq: self->bound + 1);
            self->run_index = 0;
        }
        uint64_t found = self->run.first_seq + self->run_index;
        if (found > self->bound)
            return s_end (self);
        const uint8_t *bytes;
        size_t bytes_len;
        herald_run_event (&self->run, self->run_index++, &bytes, &bytes_len);
        if (herald_envelope_is_hole (bytes, bytes_len)) {
            //  An event cut out under a prefix trim point q.  Had it
            //  matched a prefix p of the scan, p and q would overlap, so
            //  the scan's first seq would be above it: at or above that
            //  first it cannot be one of ours.  Below, it may be (a trim
            //  since the scan began): end rather than skip it.
            if (found <= s_trimmed_bound (self))
                return s_fail_trimmed (self, found);
            self->last = found;
            continue;
        }
        const char *topic;
        size_t topic_len;
        if (!s_envelope_topic (self, (const char *) bytes, bytes_len, &topic, &topic_len)) {
            herald_error_set (&self->error, HERALD_ERR_CORRUPT, "",
                              "event %llu cannot be decoded", (unsigned long long) found);
            return s_fail (self);
        }
        if (s_topic_matches (self, topic, topic_len)) {
            if (s_is_trimmed (self, topic, topic_len, found))
                return s_fail_trimmed (self, found);
            self->last = found;
            *seq = found;
            *envelope = bytes;
            *len = bytes_len;
            return 1;
        }
        self->last = found;
    }
}

static int
s_next_index (herald_scan_t *self, const uint8_t **envelope, size_t *len, uint64_t *seq)
{
    self->started = true;
    if (self->heap_count == 0)
        return s_end (self);
    s_cursor_t *cursor = self->heap [0];
    uint64_t next = cursor->seqs [cursor->pos];
    if (next > self->bound)
        return s_end (self);
    if (s_is_trimmed (self, cursor->topic, cursor->len, next))
        return s_fail_trimmed (self, next);
    if (++cursor->pos == cursor->count) {
        if (s_cursor_fill (self, cursor) != 0)
            return s_fail (self);
        if (cursor->count == 0)
            self->heap [0] = self->heap [--self->heap_count];
    }
    s_heap_down (self, 0);
    if (!s_fetch (self, next, envelope, len))
        return s_fail (self);
    if (herald_envelope_is_hole (*envelope, *len))
        return s_fail_trimmed (self, next);
    *seq = next;
    self->last = next;
    return 1;
}

//  A read walks its topic's runs; the current run stays pinned by the
//  streams iterator while the events iterator fetches each envelope.
static int
s_next_read (herald_scan_t *self, const uint8_t **envelope, size_t *len, uint64_t *seq)
{
    uint64_t ver = self->last + 1;
    if (ver > self->bound)
        return s_end (self);
    herald_err rc = HERALD_OK;
    if (!self->started) {
        self->started = true;
        rc = herald_store_find_run (self->streams, self->topic, self->topic_len, ver,
                                    &self->run_first, &self->run_seqs, &self->run_count,
                                    &self->error);
    }
    else
    if (ver - self->run_first == self->run_count) {
        rocksdb_iter_next (self->streams);
        rc = herald_store_run_at (self->streams, self->topic, self->topic_len,
                                  &self->run_first, &self->run_seqs, &self->run_count,
                                  &self->error);
        if (rc == HERALD_OK && self->run_first != ver)
            rc = HERALD_ERR_NOT_FOUND;
    }
    if (rc == HERALD_ERR_NOT_FOUND && s_trimmed_since (self))
        return s_fail_trimmed (self, 0);
    if (rc == HERALD_ERR_NOT_FOUND) {
        herald_error_set (&self->error, HERALD_ERR_CORRUPT, "",
                          "topic %.*s: ver %llu missing",
                          (int) self->topic_len, self->topic,
                          (unsigned long long) ver);
        return s_fail (self);
    }
    if (rc != HERALD_OK)
        return s_fail (self);
    uint64_t found_seq = s_get_u64 (self->run_seqs + 8 * (ver - self->run_first));
    if (s_is_trimmed (self, self->topic, self->topic_len, found_seq))
        return s_fail_trimmed (self, found_seq);
    if (!s_fetch (self, found_seq, envelope, len))
        return s_fail (self);
    if (herald_envelope_is_hole (*envelope, *len))
        return s_fail_trimmed (self, found_seq);
    *seq = found_seq;
    self->last = ver;
    return 1;
}

int
herald_scan_next (herald_scan_t *self, const uint8_t **envelope, size_t *len, uint64_t *seq)
{
    assert (self);
    if (self->done)
        return self->error.code? -1: 0;
    switch (self->mode) {
        case SCAN_FULL:  return s_next_full (self, envelope, len, seq);
        case SCAN_INDEX: return s_next_index (self, envelope, len, seq);
        case SCAN_READ:  return s_next_read (self, envelope, len, seq);
    }
    return -1;
}

uint64_t
herald_scan_last (herald_scan_t *self)
{
    assert (self);
    return self->last;
}

uint64_t
herald_scan_head (herald_scan_t *self)
{
    assert (self);
    return self->head;
}

const herald_error_t *
herald_scan_error (herald_scan_t *self)
{
    assert (self);
    return &self->error;
}
