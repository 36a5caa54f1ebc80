/*  =========================================================================
    herald_store_reclaim - freeing the disk that trim points made unreadable

    DESIGN

    A trim op only records a point (herald_store_trim.c); reads stop at
    once.  This frees the disk afterwards, in budgeted steps, from a
    thread of the broker's own, while the writer appends and streams run:

      log       the whole log's point "" until U: every "events" run with
                last_seq <= U goes, by DeleteRange (one tombstone per
                step, whatever the count), in steps of about budget
                events.  A run straddling U stays whole: reads filter.
      pass      the prefix points: a pass over the runs from the lowest
                seq a raised point may cover to the highest such until,
                rewriting each run that holds an envelope trimmed under a
                prefix, the envelope replaced by a hole (0xc1 | id | ts,
                herald_store_priv.h: the ids digest and inspect still see
                every id, seq_at_ts every ts); then over "streams",
                deleting the runs whose seqs are all trimmed (never a
                topic's last: it holds the topic's ver).
      compact   RocksDB is asked to compact what was deleted or rewritten
                (after DeleteFilesInRange for whole files): sequential
                keys are rarely compacted again otherwise, and a deleted
                run frees nothing until compacted.

    Crash safety: every step writes its effects and its progress in one
    WriteBatch (CF default, "reclaim/..." keys, herald_store_priv.h), so
    a step is done or not, and the next call goes on from the last one
    done.  A pass works for the trim points as they were when it began
    (kept in "reclaim/pass"): its decisions do not change if a trim
    comes during it, and every hole it makes is an event those points
    trim (points only rise).  When it ends, "reclaim/prefix/" q records
    how far each point q is reclaimed; a later raise starts a new pass
    from there.

    Concurrency: appends only add runs above the head, and a pass only
    rewrites runs at or below a trim point's until, so the two never
    write the same key.  Scans read through iterators, which see the log
    as it was when they were made: a scan made before a step reads the
    old runs; one made after it was checked against trim points that
    cover everything the step removed (herald_scan.c).
    =========================================================================
*/

#include <stdio.h>
#include <stdlib.h>
#include "herald_store_priv.h"

#define KEY_LOG         "reclaim/log"       //  whole-log runs deleted up to this seq
#define KEY_PASS        "reclaim/pass"      //  the pass's trim points
#define KEY_STEP        "reclaim/step"      //  phase u8 | start | end | pos | streams key
#define KEY_PREFIX      "reclaim/prefix/"   //  + prefix -> until reclaimed
#define KEY_PREFIX_LEN  15

typedef enum { PHASE_REWRITE = 1, PHASE_STREAMS = 2, PHASE_COMPACT = 3 } s_phase_t;

//  A pass in progress, as stored
typedef struct {
    herald_trim_t *trims;           //  the points it works for, in prefix order
    size_t count;
    s_phase_t phase;
    uint64_t start;                 //  first seq to look at
    uint64_t end;                   //  last seq to look at
    uint64_t pos;                   //  rewrite: runs with last_seq <= pos done
    uint8_t streams_key [HERALD_STREAM_KEY_MAX];    //  streams: keys <= this done
    size_t streams_key_len;         //  0: none yet
} s_pass_t;

//  ---------------------------------------------------------------------
//  Reading and writing the progress

static herald_err
s_get (herald_store_t *self, const char *key, size_t key_len, char **value, size_t *len,
       herald_error_t *err)
{
    char *rocks_err = NULL;
    *value = rocksdb_get_cf (self->db, self->read_options, self->cf [CF_DEFAULT], key,
                             key_len, len, &rocks_err);
    if (rocks_err) {
        herald_store_rocks_error (rocks_err, err, "cannot read %.*s", (int) key_len, key);
        free (rocks_err);
        return HERALD_ERR_IO;
    }
    return HERALD_OK;
}

static herald_err
s_write (herald_store_t *self, rocksdb_writebatch_t *batch, herald_error_t *err)
{
    char *rocks_err = NULL;
    rocksdb_write (self->db, self->write_options, batch, &rocks_err);
    if (rocks_err) {
        herald_store_rocks_error (rocks_err, err, "reclaim: cannot write to %s", self->path);
        free (rocks_err);
        return HERALD_ERR_IO;
    }
    return HERALD_OK;
}

static void
s_put_u64_key (herald_store_t *self, rocksdb_writebatch_t *batch, const char *key,
               uint64_t value)
{
    uint8_t bytes [8];
    s_put_u64 (bytes, value);
    rocksdb_writebatch_put_cf (batch, self->cf [CF_DEFAULT], key, strlen (key),
                               (const char *) bytes, 8);
}

static void
s_put_step (herald_store_t *self, rocksdb_writebatch_t *batch, const s_pass_t *pass)
{
    uint8_t value [1 + 24 + HERALD_STREAM_KEY_MAX];
    value [0] = (uint8_t) pass->phase;
    s_put_u64 (value + 1, pass->start);
    s_put_u64 (value + 9, pass->end);
    s_put_u64 (value + 17, pass->pos);
    memcpy (value + 25, pass->streams_key, pass->streams_key_len);
    rocksdb_writebatch_put_cf (batch, self->cf [CF_DEFAULT], KEY_STEP, strlen (KEY_STEP),
                               (const char *) value, 25 + pass->streams_key_len);
}

//  The pass in progress into pass (*found false: none)
static herald_err
s_load_pass (herald_store_t *self, s_pass_t *pass, bool *found, herald_error_t *err)
{
    memset (pass, 0, sizeof (*pass));
    *found = false;
    char *value;
    size_t len;
    herald_err rc = s_get (self, KEY_STEP, strlen (KEY_STEP), &value, &len, err);
    if (rc != HERALD_OK || !value)
        return rc;
    const uint8_t *bytes = (const uint8_t *) value;
    if (len < 25 || len > 25 + HERALD_STREAM_KEY_MAX || bytes [0] < PHASE_REWRITE
    ||  bytes [0] > PHASE_COMPACT) {
        free (value);
        return herald_error_set (err, HERALD_ERR_CORRUPT, "", "%s: %s has the wrong shape",
                                 self->path, KEY_STEP);
    }
    pass->phase = (s_phase_t) bytes [0];
    pass->start = s_get_u64 (bytes + 1);
    pass->end = s_get_u64 (bytes + 9);
    pass->pos = s_get_u64 (bytes + 17);
    pass->streams_key_len = len - 25;
    memcpy (pass->streams_key, bytes + 25, pass->streams_key_len);
    free (value);
    rc = s_get (self, KEY_PASS, strlen (KEY_PASS), &value, &len, err);
    if (rc != HERALD_OK)
        return rc;
    //  [len u8 | prefix | until u64] ...
    bytes = (const uint8_t *) value;
    size_t offset = 0;
    pass->trims = calloc (HERALD_TRIMS_MAX, sizeof (herald_trim_t));
    if (!pass->trims) {
        free (value);
        return herald_error_set (err, HERALD_ERR_NOMEM, "", "out of memory");
    }
    while (value && offset < len) {
        size_t prefix_len = bytes [offset];
        if (pass->count == HERALD_TRIMS_MAX || len - offset < 1 + prefix_len + 8)
            break;
        herald_trim_t *trim = &pass->trims [pass->count++];
        memcpy (trim->prefix, bytes + offset + 1, prefix_len);
        trim->prefix_len = prefix_len;
        trim->until = s_get_u64 (bytes + offset + 1 + prefix_len);
        offset += 1 + prefix_len + 8;
    }
    bool whole = value && offset == len;
    free (value);
    if (!whole) {
        free (pass->trims);
        pass->trims = NULL;
        return herald_error_set (err, HERALD_ERR_CORRUPT, "", "%s: %s has the wrong shape",
                                 self->path, KEY_PASS);
    }
    *found = true;
    return HERALD_OK;
}

static int
s_put_pass (herald_store_t *self, rocksdb_writebatch_t *batch, const s_pass_t *pass)
{
    uint8_t *value = malloc (pass->count * (1 + HERALD_TOPIC_MAX + 8) + 1);
    if (!value)
        return -1;
    size_t len = 0;
    for (size_t i = 0; i < pass->count; i++) {
        value [len] = (uint8_t) pass->trims [i].prefix_len;
        memcpy (value + len + 1, pass->trims [i].prefix, pass->trims [i].prefix_len);
        s_put_u64 (value + len + 1 + pass->trims [i].prefix_len, pass->trims [i].until);
        len += 1 + pass->trims [i].prefix_len + 8;
    }
    rocksdb_writebatch_put_cf (batch, self->cf [CF_DEFAULT], KEY_PASS, strlen (KEY_PASS),
                               (const char *) value, len);
    free (value);
    return 0;
}

//  How far point prefix is reclaimed (0: not at all)
static herald_err
s_reclaimed (herald_store_t *self, const herald_trim_t *trim, uint64_t *until,
             herald_error_t *err)
{
    char key [KEY_PREFIX_LEN + HERALD_TOPIC_MAX];
    memcpy (key, KEY_PREFIX, KEY_PREFIX_LEN);
    memcpy (key + KEY_PREFIX_LEN, trim->prefix, trim->prefix_len);
    char *value;
    size_t len;
    *until = 0;
    herald_err rc = s_get (self, key, KEY_PREFIX_LEN + trim->prefix_len, &value, &len, err);
    if (rc == HERALD_OK && value && len == 8)
        *until = s_get_u64 ((const uint8_t *) value);
    free (value);
    return rc;
}

//  The greatest until in trims of the points beginning topic
static uint64_t
s_topic_trimmed (const s_pass_t *pass, const char *topic, size_t len)
{
    uint64_t until = 0;
    for (size_t i = 0; i < pass->count; i++)
        if (pass->trims [i].prefix_len <= len
        &&  memcmp (pass->trims [i].prefix, topic, pass->trims [i].prefix_len) == 0
        &&  pass->trims [i].until > until)
            until = pass->trims [i].until;
    return until;
}

//  Parse the run under it into run
static bool
s_load_ok (rocksdb_iterator_t *it, herald_run_t *run)
{
    size_t key_len, len;
    const char *key = rocksdb_iter_key (it, &key_len);
    const char *value = rocksdb_iter_value (it, &len);
    return herald_run_parse (key, key_len, value, len, run);
}

//  Compact cf's keys in [start, limit) (NULL: from the first, to the
//  last).  drop_files: every key in the range is deleted, so the files
//  wholly inside it go at once (DeleteFilesInRange), never read again.
static void
s_compact (herald_store_t *self, int cf, bool drop_files, const uint8_t *start,
           size_t start_len, const uint8_t *limit, size_t limit_len)
{
    char *rocks_err = NULL;
    if (drop_files && limit && limit_len == 8 && s_get_u64 (limit) > 0) {
        //  DeleteFilesInRange's end is INCLUSIVE (the C API passes
        //  include_end = true): give it the last key deleted, limit - 1.
        //  With limit itself, a file whose last key is limit — a run that
        //  ends just above the trim point, not trimmed — went with the rest
        //  (a REPLAY then met "seq gap: event 51 is missing from the log")
        uint8_t last [8];
        s_put_u64 (last, s_get_u64 (limit) - 1);
        rocksdb_delete_file_in_range_cf (self->db, self->cf [cf], (const char *) start,
                                         start_len, (const char *) last, 8, &rocks_err);
    }
    free (rocks_err);
    rocksdb_compactoptions_t *options = rocksdb_compactoptions_create ();
    rocksdb_compactoptions_set_exclusive_manual_compaction (options, 0);
    //  The bottom level too: that is where old runs lie
    rocksdb_compactoptions_set_bottommost_level_compaction (options, 3);   //  kForceOptimized
    rocksdb_compact_range_cf_opt (self->db, self->cf [cf], options, (const char *) start,
                                  start_len, (const char *) limit, limit_len);
    rocksdb_compactoptions_destroy (options);
}

//  ---------------------------------------------------------------------
//  The whole log: delete the runs at or below U

static herald_err
s_reclaim_log (herald_store_t *self, size_t *budget, herald_reclaim_stats_t *stats,
               herald_error_t *err)
{
    uint64_t until = atomic_load (&self->log_first) - 1;
    if (until == 0)
        return HERALD_OK;
    char *value;
    size_t len;
    herald_err rc = s_get (self, KEY_LOG, strlen (KEY_LOG), &value, &len, err);
    if (rc != HERALD_OK)
        return rc;
    uint64_t done = value && len == 8? s_get_u64 ((const uint8_t *) value): 0;
    free (value);
    if (done >= until)
        return HERALD_OK;
    rocksdb_iterator_t *it = rocksdb_create_iterator_cf (self->db, self->scan_options,
                                                         self->cf [CF_EVENTS]);
    //  Never the last run, even all trimmed: it holds the head (and its
    //  ts), which open recovers from it
    rocksdb_iter_seek_to_last (it);
    if (rocksdb_iter_valid (it)) {
        size_t key_len;
        const char *key = rocksdb_iter_key (it, &key_len);
        const char *run_value = rocksdb_iter_value (it, &len);
        herald_run_t run;
        if (herald_run_parse (key, key_len, run_value, len, &run) && run.first_seq <= until)
            until = run.first_seq - 1;
    }
    if (done >= until) {
        rocksdb_iter_destroy (it);
        return HERALD_OK;
    }
    uint8_t from_key [8], to_key [8];
    s_put_u64 (from_key, done + 1);
    rocksdb_iter_seek (it, (const char *) from_key, 8);
    uint64_t last = done, runs = 0, events = 0;
    bool finished = false;
    while (*budget) {
        if (!rocksdb_iter_valid (it)) {
            rc = herald_store_iter_error (it, err, "reclaim: cannot read the log after %llu",
                                          (unsigned long long) last);
            finished = true;
            break;
        }
        size_t key_len;
        const char *key = rocksdb_iter_key (it, &key_len);
        const char *run_value = rocksdb_iter_value (it, &len);
        herald_run_t run;
        if (!herald_run_parse (key, key_len, run_value, len, &run)) {
            rc = herald_error_set (err, HERALD_ERR_CORRUPT, "",
                                   "reclaim: the run after seq %llu has the wrong shape",
                                   (unsigned long long) last);
            break;
        }
        uint64_t run_last = run.first_seq + run.count - 1;
        if (run_last > until) {
            finished = true;        //  the run straddling U, or above: stays
            break;
        }
        last = run_last;
        runs++;
        events += run.count;
        *budget = *budget > run.count? *budget - run.count: 0;
        rocksdb_iter_next (it);
    }
    rocksdb_iter_destroy (it);
    if (rc != HERALD_OK)
        return rc;
    if (last >= until)
        finished = true;
    if (finished)
        last = until;
    rocksdb_writebatch_t *batch = rocksdb_writebatch_create ();
    s_put_u64 (from_key, 0);
    s_put_u64 (to_key, last + 1);
    //  From 0: a run below done may be left by a crash between DeleteRange
    //  and compaction; the tombstone costs the same
    rocksdb_writebatch_delete_range_cf (batch, self->cf [CF_EVENTS], (const char *) from_key,
                                        8, (const char *) to_key, 8);
    s_put_u64_key (self, batch, KEY_LOG, last);
    rc = s_write (self, batch, err);
    rocksdb_writebatch_destroy (batch);
    if (rc != HERALD_OK)
        return rc;
    if (stats) {
        stats->runs_deleted += runs;
        stats->events_removed += events;
    }
    if (finished)
        s_compact (self, CF_EVENTS, true, from_key, 8, to_key, 8);
    return HERALD_OK;
}

//  ---------------------------------------------------------------------
//  A pass for the prefix points

//  Start a pass when a point rose above what was reclaimed; *started
//  false when there is nothing to do
static herald_err
s_begin_pass (herald_store_t *self, s_pass_t *pass, bool *started, herald_error_t *err)
{
    *started = false;
    memset (pass, 0, sizeof (*pass));
    pass->trims = calloc (HERALD_TRIMS_MAX, sizeof (herald_trim_t));
    if (!pass->trims)
        return herald_error_set (err, HERALD_ERR_NOMEM, "", "out of memory");
    pass->count = herald_store_trims (self, pass->trims, HERALD_TRIMS_MAX);
    uint64_t start = UINT64_MAX, end = 0;
    bool raised = false;
    for (size_t i = 0; i < pass->count; i++) {
        uint64_t reclaimed;
        herald_err rc = s_reclaimed (self, &pass->trims [i], &reclaimed, err);
        if (rc != HERALD_OK)
            return rc;
        if (pass->trims [i].until <= reclaimed)
            continue;
        raised = true;
        if (pass->trims [i].prefix_len == 0)
            continue;               //  its runs go whole (s_reclaim_log)
        if (reclaimed + 1 < start)
            start = reclaimed + 1;
        if (pass->trims [i].until > end)
            end = pass->trims [i].until;
    }
    if (!raised)
        return HERALD_OK;
    uint64_t log_first = 1;
    for (size_t i = 0; i < pass->count; i++)
        if (pass->trims [i].prefix_len == 0)
            log_first = pass->trims [i].until + 1;
    if (start < log_first)
        start = log_first;
    pass->phase = start <= end? PHASE_REWRITE: PHASE_STREAMS;
    pass->start = start <= end? start: 0;
    pass->end = end;
    pass->pos = pass->start? pass->start - 1: 0;
    rocksdb_writebatch_t *batch = rocksdb_writebatch_create ();
    herald_err rc = HERALD_OK;
    if (s_put_pass (self, batch, pass) != 0)
        rc = herald_error_set (err, HERALD_ERR_NOMEM, "", "out of memory");
    else {
        s_put_step (self, batch, pass);
        rc = s_write (self, batch, err);
    }
    rocksdb_writebatch_destroy (batch);
    *started = rc == HERALD_OK;
    return rc;
}

//  Rewrite the runs after pass->pos up to pass->end, about budget events
static herald_err
s_rewrite (herald_store_t *self, s_pass_t *pass, size_t *budget,
           herald_reclaim_stats_t *stats, herald_error_t *err)
{
    rocksdb_iterator_t *it = rocksdb_create_iterator_cf (self->db, self->scan_options,
                                                         self->cf [CF_EVENTS]);
    herald_run_t run;
    herald_err rc = herald_store_find_event (it, pass->pos + 1, &run, err);
    if (rc == HERALD_ERR_NOT_FOUND)
        rc = rocksdb_iter_valid (it) && s_load_ok (it, &run)? HERALD_OK: HERALD_ERR_NOT_FOUND;
    rocksdb_writebatch_t *batch = rocksdb_writebatch_create ();
    uint8_t *value = NULL;
    size_t capacity = 0;
    uint64_t rewritten = 0, removed = 0;
    bool done = false;
    while (rc == HERALD_OK && *budget) {
        if (run.first_seq > pass->end) {
            done = true;
            break;
        }
        //  The run anew: holes for what the pass's points trim
        size_t data_len = s_get_u32 (run.ends + 4 * (size_t) (run.count - 1));
        size_t need = 4 + 4 * (size_t) run.count + data_len + HERALD_HOLE_LEN * run.count;
        if (need > capacity) {
            uint8_t *grown = realloc (value, need);
            if (!grown) {
                rc = herald_error_set (err, HERALD_ERR_NOMEM, "", "out of memory");
                break;
            }
            value = grown;
            capacity = need;
        }
        s_put_u32 (value, run.count);
        uint8_t *data = value + 4 + 4 * (size_t) run.count;
        size_t used = 0;
        uint32_t cut = 0;
        for (uint32_t i = 0; i < run.count; i++) {
            uint64_t seq = run.first_seq + i;
            const uint8_t *bytes;
            size_t len;
            herald_run_event (&run, i, &bytes, &len);
            const char *topic;
            size_t topic_len;
            uint64_t stored_seq, ver, ts;
            if (!herald_envelope_is_hole (bytes, len)
            &&  seq <= pass->end
            &&  herald_event_peek (bytes, len, &topic, &topic_len, &stored_seq, &ver, &ts)
            &&  s_topic_trimmed (pass, topic, topic_len) >= seq) {
                data [used] = HERALD_HOLE_BYTE;
                if (!herald_envelope_id (bytes, len, data + used + 1)) {
                    rc = herald_error_set (err, HERALD_ERR_CORRUPT, "",
                                           "reclaim: event %llu cannot be decoded",
                                           (unsigned long long) seq);
                    break;
                }
                s_put_u64 (data + used + 1 + HERALD_ID_BYTES, ts);
                used += HERALD_HOLE_LEN;
                cut++;
            }
            else {
                memcpy (data + used, bytes, len);
                used += len;
            }
            s_put_u32 (value + 4 + 4 * (size_t) i, (uint32_t) used);
        }
        if (rc != HERALD_OK)
            break;
        uint64_t run_last = run.first_seq + run.count - 1;
        if (cut) {
            uint8_t key [8];
            s_put_u64 (key, run_last);
            rocksdb_writebatch_put_cf (batch, self->cf [CF_EVENTS], (const char *) key, 8,
                                       (const char *) value,
                                       4 + 4 * (size_t) run.count + used);
            rewritten++;
            removed += cut;
        }
        pass->pos = run_last;
        *budget = *budget > run.count? *budget - run.count: 0;
        if (run_last >= pass->end) {
            done = true;
            break;
        }
        rocksdb_iter_next (it);
        if (!rocksdb_iter_valid (it)) {
            rc = herald_store_iter_error (it, err, "reclaim: cannot read the log after %llu",
                                          (unsigned long long) run_last);
            done = true;            //  the end of the log
            break;
        }
        if (!s_load_ok (it, &run))
            rc = herald_error_set (err, HERALD_ERR_CORRUPT, "",
                                   "reclaim: the run after seq %llu has the wrong shape",
                                   (unsigned long long) run_last);
    }
    if (rc == HERALD_ERR_NOT_FOUND) {
        done = true;                //  nothing stored from pos + 1 on
        rc = HERALD_OK;
    }
    rocksdb_iter_destroy (it);
    free (value);
    if (rc == HERALD_OK) {
        if (done)
            pass->phase = PHASE_STREAMS;
        s_put_step (self, batch, pass);
        rc = s_write (self, batch, err);
    }
    rocksdb_writebatch_destroy (batch);
    if (rc == HERALD_OK && stats) {
        stats->runs_rewritten += rewritten;
        stats->events_removed += removed;
    }
    return rc;
}

//  Delete the streams runs whose seqs are all trimmed, never a topic's
//  last, after pass->streams_key; about budget entries
static herald_err
s_streams (herald_store_t *self, s_pass_t *pass, size_t *budget,
           herald_reclaim_stats_t *stats, herald_error_t *err)
{
    rocksdb_iterator_t *it = rocksdb_create_iterator_cf (self->db, self->read_options,
                                                         self->cf [CF_STREAMS]);
    if (pass->streams_key_len) {
        rocksdb_iter_seek (it, (const char *) pass->streams_key, pass->streams_key_len);
        if (rocksdb_iter_valid (it)) {
            size_t key_len;
            const char *key = rocksdb_iter_key (it, &key_len);
            if (key_len == pass->streams_key_len
            &&  memcmp (key, pass->streams_key, key_len) == 0)
                rocksdb_iter_next (it);
        }
    }
    else
        rocksdb_iter_seek_to_first (it);
    rocksdb_writebatch_t *batch = rocksdb_writebatch_create ();
    herald_err rc = HERALD_OK;
    uint64_t deleted = 0;
    bool done = false;
    while (*budget) {
        if (!rocksdb_iter_valid (it)) {
            rc = herald_store_iter_error (it, err, "reclaim: cannot read the streams");
            done = true;
            break;
        }
        size_t key_len, len;
        const char *key = rocksdb_iter_key (it, &key_len);
        const uint8_t *value = (const uint8_t *) rocksdb_iter_value (it, &len);
        const char *nul = key_len > 9? memchr (key, 0, key_len - 8): NULL;
        if (!nul || (size_t) (nul - key) != key_len - 9 || len == 0 || len % 8) {
            rc = herald_error_set (err, HERALD_ERR_CORRUPT, "",
                                   "reclaim: a streams entry has the wrong shape");
            break;
        }
        size_t topic_len = key_len - 9;
        uint8_t current [HERALD_STREAM_KEY_MAX];
        memcpy (current, key, key_len);
        uint64_t trimmed = s_topic_trimmed (pass, key, topic_len);
        uint64_t last_seq = s_get_u64 (value + len - 8);
        (*budget)--;
        pass->streams_key_len = key_len;
        memcpy (pass->streams_key, current, key_len);
        rocksdb_iter_next (it);
        if (trimmed == 0 || last_seq > trimmed) {
            if (trimmed == 0 && rocksdb_iter_valid (it)) {
                //  Nothing of this topic is trimmed: past its runs
                uint8_t past [HERALD_STREAM_KEY_MAX];
                size_t past_len = s_stream_key (past, (const char *) current, topic_len,
                                                UINT64_MAX);
                rocksdb_iter_seek (it, (const char *) past, past_len);
                if (rocksdb_iter_valid (it)) {
                    const char *next = rocksdb_iter_key (it, &len);
                    if (len == past_len && memcmp (next, past, past_len) == 0)
                        rocksdb_iter_next (it);
                }
            }
            continue;
        }
        //  All trimmed: deleted unless it is the topic's last run
        bool last = true;
        if (rocksdb_iter_valid (it)) {
            size_t next_len;
            const char *next = rocksdb_iter_key (it, &next_len);
            last = !(next_len == key_len && memcmp (next, current, topic_len + 1) == 0);
        }
        if (!last) {
            rocksdb_writebatch_delete_cf (batch, self->cf [CF_STREAMS], (const char *) current,
                                          key_len);
            deleted++;
        }
    }
    rocksdb_iter_destroy (it);
    if (rc == HERALD_OK) {
        if (done)
            pass->phase = PHASE_COMPACT;
        s_put_step (self, batch, pass);
        rc = s_write (self, batch, err);
    }
    rocksdb_writebatch_destroy (batch);
    if (rc == HERALD_OK && stats)
        stats->stream_runs_deleted += deleted;
    return rc;
}

//  Compact what the pass changed and record it done
static herald_err
s_end_pass (herald_store_t *self, s_pass_t *pass, herald_error_t *err)
{
    if (pass->start) {
        //  The runs rewritten: keys from start to the run holding end
        uint8_t start [8], limit [8];
        s_put_u64 (start, pass->start);
        s_put_u64 (limit, pass->end + HERALD_RUN_MAX_EVENTS);
        s_compact (self, CF_EVENTS, false, start, 8, limit, 8);
    }
    s_compact (self, CF_STREAMS, false, NULL, 0, NULL, 0);
    rocksdb_writebatch_t *batch = rocksdb_writebatch_create ();
    for (size_t i = 0; i < pass->count; i++) {
        char key [KEY_PREFIX_LEN + HERALD_TOPIC_MAX];
        memcpy (key, KEY_PREFIX, KEY_PREFIX_LEN);
        memcpy (key + KEY_PREFIX_LEN, pass->trims [i].prefix, pass->trims [i].prefix_len);
        uint8_t value [8];
        s_put_u64 (value, pass->trims [i].until);
        rocksdb_writebatch_put_cf (batch, self->cf [CF_DEFAULT], key,
                                   KEY_PREFIX_LEN + pass->trims [i].prefix_len,
                                   (const char *) value, 8);
    }
    rocksdb_writebatch_delete_cf (batch, self->cf [CF_DEFAULT], KEY_PASS, strlen (KEY_PASS));
    rocksdb_writebatch_delete_cf (batch, self->cf [CF_DEFAULT], KEY_STEP, strlen (KEY_STEP));
    herald_err rc = s_write (self, batch, err);
    rocksdb_writebatch_destroy (batch);
    return rc;
}

herald_err
herald_store_reclaim (herald_store_t *self, size_t budget, bool *more,
                      herald_reclaim_stats_t *stats, herald_error_t *err)
{
    assert (self);
    assert (more);
    *more = false;
    herald_error_t local = { 0 };
    if (!err)
        err = &local;
    if (self->read_only)
        return herald_error_set (err, HERALD_ERR_IO, "", "the store is open read-only");
    if (budget == 0)
        budget = 1;
    pthread_mutex_lock (&self->reclaim_lock);
    herald_err rc = s_reclaim_log (self, &budget, stats, err);
    s_pass_t pass = { 0 };
    bool found = false;
    if (rc == HERALD_OK && budget)
        rc = s_load_pass (self, &pass, &found, err);
    if (rc == HERALD_OK && budget && !found) {
        free (pass.trims);
        rc = s_begin_pass (self, &pass, &found, err);
    }
    while (rc == HERALD_OK && found && budget) {
        if (pass.phase == PHASE_REWRITE)
            rc = s_rewrite (self, &pass, &budget, stats, err);
        else
        if (pass.phase == PHASE_STREAMS)
            rc = s_streams (self, &pass, &budget, stats, err);
        else {
            rc = s_end_pass (self, &pass, err);
            break;
        }
    }
    free (pass.trims);
    if (rc == HERALD_OK) {
        //  More: a step left, or a point raised since
        if (budget == 0)
            *more = true;
        else {
            s_pass_t next = { 0 };
            rc = s_load_pass (self, &next, &found, err);
            free (next.trims);
            if (rc == HERALD_OK && !found) {
                herald_trim_t *trims = calloc (HERALD_TRIMS_MAX, sizeof (herald_trim_t));
                size_t count = trims? herald_store_trims (self, trims, HERALD_TRIMS_MAX): 0;
                for (size_t i = 0; i < count && rc == HERALD_OK && !*more; i++) {
                    uint64_t reclaimed;
                    rc = s_reclaimed (self, &trims [i], &reclaimed, err);
                    *more = trims [i].until > reclaimed;
                }
                free (trims);
            }
            else
                *more = found;
        }
    }
    pthread_mutex_unlock (&self->reclaim_lock);
    return rc;
}
