/*  =========================================================================
    store_bench - Herald's event store beside the raw RocksDB limit

    Prints figures for the store (store/herald_store.c) and, in the same
    run on the same disk, for plain RocksDB doing the least work that could
    hold the same log, so every Herald figure reads as a share of what the
    machine can do.  It never asserts a timing: targets are printed beside
    the figures as "met" or "MISSED", and the exit code only says whether
    the benchmark itself ran (0) or failed to (1).  bench/README.md says
    what each figure means and how to run it.  The raw DB and the general
    helpers (clock, files, the machine's description) are in bench_util.c.

    DESIGN

    Four parts, each bounded both in events and in seconds, so a slow disk
    makes a figure less precise but never makes the run endless:

    1. Appends.  Eight cases: batches of 1 and of 1000 events, payloads of
       100 B and 1 KiB, durability sync and async.  Herald: one
       herald_batch_t per herald_store_append call, each event with a fresh
       UUIDv7 id and one of 100 topics "bench.t<N>".  Raw: one
       rocksdb_writebatch per batch of 8-byte big-endian seq keys whose
       values are as long as Herald's stored envelope for that payload, so
       the raw side writes the same log bytes without ids, topic index or
       dedup.  Each case gets a fresh store, deleted afterwards.

    2. Build of the sparse store: --events events of 100 B (10,000,000 by
       default) appended async in batches of 1000, and a raw DB with the
       same count of envelope-sized values.  Among them one topic
       "rare.one" has 1000 events spread evenly, and 1000 more, as evenly,
       go to 100 topics "sparse.t<N>":

           index i (seq = i + 1), stride = events / 1000, k = i / stride
           i % stride == stride / 2   ->  "rare.one"
           i % stride == stride / 4   ->  "sparse.t<k % 100>"
           otherwise                  ->  "bench.t<i % 100>"

       With --dir the stores live in DIR/sparse-herald and DIR/sparse-raw
       and are reused by a later run with the same --events.

    3. Full scan of that store: herald_store_scan from seq 1 over every
       topic, against a raw iterator over every key of the raw DB.

    4. Sparse reads: herald_store_read of "rare.one" and herald_store_scan
       with prefixes "rare.one" and "sparse.", 1000 events each among all
       the others, in ms.  The raw figure is 1000 point Gets of the same
       seqs: what an index that knows the seqs would still have to pay.
       Each case runs first cold (store closed, its files dropped from the
       page cache with POSIX_FADV_DONTNEED, reopened: 1000 scattered events
       are ~1000 random disk reads, so this shows the disk), then cold-ish
       (closed and reopened again: RocksDB's block cache is empty but the
       page cache is warm, as for a broker restarted on a busy machine),
       then several warm runs give min and median.

    Only the store call is timed for Herald (making ids and filling event
    structs is the publisher's work, not the store's); the raw side is
    timed over building its WriteBatch and writing it, which is what the
    store does inside append.
    =========================================================================
*/

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <rocksdb/c.h>

#include "herald_store.h"
#include "herald_uuid.h"
#include "bench_util.h"

#define S_TOPICS            100             //  topics the events spread over
#define S_SPARSE_EVENTS     1000            //  events of "rare.one", and of "sparse."
#define S_BUILD_BATCH       1000            //  events per append while building
#define S_POOL_BYTES        (4u << 20)      //  random payload bytes to take slices of
#define S_MAX_BATCH         1000
#define S_MAX_REPS          50
#define S_MB                1e6             //  MB/s are 10^6 payload bytes a second

//  How much work each part may do; --quick shrinks every budget.
typedef struct {
    uint64_t events;                //  events in the sparse store
    const char *dir;                //  NULL: a fresh temp dir under /tmp
    bool keep;                      //  keep what this run built
    bool quick;
    double append_seconds;          //  per append case and side
    uint64_t append_max_single;     //  events per case with batches of 1
    uint64_t append_max_batched;    //  events per case with batches of 1000
    double scan_seconds;            //  per full scan run
    double build_seconds;           //  the build gives up after this long
    int reps;                       //  warm runs per sparse read
    const char *only;               //  NULL, "append", "scan" or "sparse"
} s_config_t;

//  One append case, both sides.
typedef struct {
    size_t batch;
    size_t payload;
    herald_durability_t durability;
    size_t envelope;                //  Herald's stored envelope bytes per event
    double herald_rate;             //  events/s; 0 when the side failed
    double raw_rate;
    uint64_t herald_events;         //  events timed
    uint64_t raw_events;
} s_append_row_t;

//  One sparse read case.
typedef struct {
    const char *name;
    double cold_ms;                 //  page cache dropped, reopened
    double reopen_ms;               //  reopened, page cache warm
    double min_ms;
    double median_ms;
    uint64_t got;                   //  events the last run returned
    double raw_cold_ms;
    double raw_reopen_ms;
    double raw_min_ms;
    double raw_median_ms;
} s_sparse_row_t;

static volatile sig_atomic_t s_interrupted = 0;
static uint8_t *s_pool = NULL;
static char s_topic_names [S_TOPICS][16];
static char s_sparse_names [S_TOPICS][16];


//  ---------------------------------------------------------------------
//  The Herald side

//  Fill event for global index index with a fresh id, topic and payload
//  slice.  The slice moves so compression sees random bytes, not one
//  repeated buffer; the raw side takes its values from the same pool.
static void
s_event_fill (herald_event_t *event, uint64_t index, const char *topic, size_t payload)
{
    memset (event, 0, sizeof *event);
    herald_uuid_v7 (event->id);
    event->topic = topic;
    event->topic_len = strlen (topic);
    size_t offset = (size_t) (((index + 1) * 2654435761u) % (S_POOL_BYTES - payload));
    event->data = s_pool + offset;
    event->data_len = payload;
    event->encoded_size = herald_event_encoded_size (event);
}

//  Bytes of the envelope Herald stores for a payload: an event of the
//  append benchmark's shape, with seq, ver and ts of a realistic size
//  (seq and ver ~10^6 take 5 bytes each in MessagePack; ts is 9).
static size_t
s_envelope_size (size_t payload)
{
    herald_event_t event;
    s_event_fill (&event, 0, s_topic_names [42], payload);
    event.seq = 1000000;
    event.ver = 100000;
    event.ts = 1700000000000000000ull;
    return herald_event_encoded_size (&event);
}

static herald_store_t *
s_store_open (const char *path, herald_durability_t durability)
{
    herald_store_options_t options = { .durability = durability };
    herald_error_t err;
    memset (&err, 0, sizeof err);
    herald_store_t *store = herald_store_open (path, &options, &err);
    if (!store)
        fprintf (stderr, "store_bench: herald_store_open %s: %s (%s: %s)\n", path,
                 herald_strerror (err.code), err.field, err.message);
    return store;
}

//  Append count events starting at global index first through one
//  herald_batch_t.  Adds the seconds spent inside herald_store_append to
//  *busy.  Returns 0, or -1 after printing why.
static int
s_herald_append (herald_store_t *store, herald_event_t *events,
                 herald_append_result_t *results, size_t count, double *busy)
{
    herald_batch_t batch = { .events = events, .count = count, .results = results };
    herald_error_t err;
    memset (&err, 0, sizeof err);
    double start = bench_now ();
    herald_err rc = herald_store_append (store, &batch, 1, &err);
    *busy += bench_now () - start;
    if (rc != HERALD_OK || batch.status != HERALD_OK) {
        fprintf (stderr, "store_bench: herald_store_append: %s (%s: %s), batch %s\n",
                 herald_strerror (rc), err.field, err.message,
                 herald_strerror (batch.status));
        return -1;
    }
    for (size_t i = 0; i < count; i++)
        if (results [i].dup) {
            fprintf (stderr, "store_bench: event %zu came back as a duplicate\n", i);
            return -1;
        }
    return 0;
}


//  ---------------------------------------------------------------------
//  Part 1: append cases

//  One side of an append case while it runs: what it has done so far.
typedef struct {
    uint64_t done;                  //  events appended
    double busy;                    //  seconds inside the timed calls
    double wall;                    //  seconds in its slices, fill included
    bool failed;
} s_side_t;

//  Append Herald batches for up to slice seconds, within the case's
//  budgets.
static void
s_herald_slice (herald_store_t *store, s_append_row_t *row, herald_event_t *events,
                herald_append_result_t *results, s_side_t *side, uint64_t budget,
                double slice)
{
    double start = bench_now ();
    while (side->done < budget && bench_now () - start < slice && !s_interrupted) {
        for (size_t i = 0; i < row->batch; i++)
            s_event_fill (&events [i], side->done + i,
                          s_topic_names [(side->done + i) % S_TOPICS], row->payload);
        if (s_herald_append (store, events, results, row->batch, &side->busy)) {
            side->failed = true;
            break;
        }
        side->done += row->batch;
    }
    side->wall += bench_now () - start;
}

static void
s_raw_slice (bench_raw_t *raw, s_append_row_t *row, s_side_t *side, uint64_t budget,
             double slice)
{
    double start = bench_now ();
    while (side->done < budget && bench_now () - start < slice && !s_interrupted) {
        double t0 = bench_now ();
        int rc = bench_raw_write (raw, side->done + 1, row->batch, row->envelope,
                                  s_pool, S_POOL_BYTES);
        side->busy += bench_now () - t0;
        if (rc) {
            side->failed = true;
            break;
        }
        side->done += row->batch;
    }
    side->wall += bench_now () - start;
}

//  Run one append case.  Both stores are open together and the sides take
//  turns in slices of a quarter of the budget, so a neighbour's load on a
//  shared machine falls on both alike rather than on whichever ran second.
static void
s_append_case (const s_config_t *config, const char *base, s_append_row_t *row)
{
    char herald_path [PATH_MAX], raw_path [PATH_MAX];
    uint64_t budget = row->batch == 1? config->append_max_single: config->append_max_batched;
    double slice = config->append_seconds / 4;
    herald_event_t *events = calloc (row->batch, sizeof *events);
    herald_append_result_t *results = calloc (row->batch, sizeof *results);
    bench_join (herald_path, base, "append-herald");
    bench_join (raw_path, base, "append-raw");
    bench_remove_tree (herald_path);
    bench_remove_tree (raw_path);
    herald_store_t *store = s_store_open (herald_path, row->durability);
    bench_raw_t raw;
    bool raw_open = bench_raw_open (&raw, raw_path,
                                row->durability == HERALD_DURABILITY_SYNC) == 0;
    s_side_t herald_side = { .failed = !store || !events || !results };
    s_side_t raw_side = { .failed = !raw_open };
    while (!s_interrupted) {
        bool herald_more = !herald_side.failed && herald_side.done < budget
                        && herald_side.wall < config->append_seconds;
        bool raw_more = !raw_side.failed && raw_side.done < budget
                     && raw_side.wall < config->append_seconds;
        if (!herald_more && !raw_more)
            break;
        if (herald_more)
            s_herald_slice (store, row, events, results, &herald_side, budget, slice);
        if (raw_more)
            s_raw_slice (&raw, row, &raw_side, budget, slice);
    }
    row->herald_events = herald_side.done;
    row->herald_rate = herald_side.failed || herald_side.busy <= 0
                     ? 0: (double) herald_side.done / herald_side.busy;
    row->raw_events = raw_side.done;
    row->raw_rate = raw_side.failed || raw_side.busy <= 0
                  ? 0: (double) raw_side.done / raw_side.busy;
    herald_store_destroy (&store);
    if (raw_open)
        bench_raw_close (&raw);
    bench_remove_tree (herald_path);
    bench_remove_tree (raw_path);
    free (events);
    free (results);
}


//  ---------------------------------------------------------------------
//  Part 2: the sparse store, built once, reusable with --dir

static const char *
s_build_topic (uint64_t index, uint64_t stride)
{
    uint64_t phase = index % stride;
    if (phase == stride / 2)
        return "rare.one";
    if (phase == stride / 4)
        return s_sparse_names [(index / stride) % S_TOPICS];
    return s_topic_names [index % S_TOPICS];
}

//  The seqs of the rare.one and of the sparse. events, from the layout.
static void
s_sparse_seqs (uint64_t events, uint64_t *rare, uint64_t *sparse)
{
    uint64_t stride = events / S_SPARSE_EVENTS;
    for (uint64_t k = 0; k < S_SPARSE_EVENTS; k++) {
        rare [k] = k * stride + stride / 2 + 1;
        sparse [k] = k * stride + stride / 4 + 1;
    }
}

static void
s_progress (const char *what, uint64_t done, uint64_t total, double start)
{
    char a [32], b [32], c [32];
    double elapsed = bench_now () - start;
    fprintf (stderr, "\r  build %s: %s / %s events, %s ev/s, %.0f s   ", what,
             bench_count (a, sizeof a, (double) done),
             bench_count (b, sizeof b, (double) total),
             bench_count (c, sizeof c, elapsed > 0? (double) done / elapsed: 0), elapsed);
}

//  Build (or reuse) the Herald sparse store.  Returns 1 if built, 0 if
//  reused, -1 on failure.  *rate gets the build's events/s (0 if reused).
static int
s_build_herald (const s_config_t *config, const char *path, double *rate)
{
    *rate = 0;
    herald_store_t *store = s_store_open (path, HERALD_DURABILITY_ASYNC);
    if (!store)
        return -1;
    uint64_t have = herald_store_event_count (store);
    if (have > 0) {
        uint64_t rare = 0;
        bool match = have == config->events
                  && herald_store_topic_ver (store, "rare.one", 8, &rare, NULL) == HERALD_OK
                  && rare == S_SPARSE_EVENTS;
        herald_store_destroy (&store);
        if (match)
            return 0;
        fprintf (stderr, "store_bench: %s holds %" PRIu64 " events, not this bench's %"
                 PRIu64 ": pass --events %" PRIu64 " or another --dir\n",
                 path, have, config->events, have);
        return -1;
    }
    uint64_t stride = config->events / S_SPARSE_EVENTS;
    herald_event_t *events = calloc (S_BUILD_BATCH, sizeof *events);
    herald_append_result_t *results = calloc (S_BUILD_BATCH, sizeof *results);
    int rc = events && results? 1: -1;
    double busy = 0, start = bench_now (), shown = start;
    uint64_t done = 0;
    while (rc == 1 && done < config->events) {
        if (s_interrupted || bench_now () - start > config->build_seconds) {
            fprintf (stderr, "\nstore_bench: build stopped after %.0f s%s\n",
                     bench_now () - start, s_interrupted? " (interrupted)": "");
            rc = -1;
            break;
        }
        size_t count = S_BUILD_BATCH;
        if (config->events - done < count)
            count = (size_t) (config->events - done);
        for (size_t i = 0; i < count; i++)
            s_event_fill (&events [i], done + i, s_build_topic (done + i, stride), 100);
        if (s_herald_append (store, events, results, count, &busy))
            rc = -1;
        else
            done += count;
        if (bench_now () - shown >= 1) {
            s_progress ("herald", done, config->events, start);
            shown = bench_now ();
        }
    }
    if (rc == 1) {
        s_progress ("herald", done, config->events, start);
        fprintf (stderr, "\n");
        *rate = busy > 0? (double) done / busy: 0;
    }
    free (events);
    free (results);
    herald_store_destroy (&store);
    return rc;
}

//  Build (or reuse) the raw DB beside it: the same count of envelope-sized
//  values.  Returns 1 if built, 0 if reused, -1 on failure.
static int
s_build_raw (const s_config_t *config, const char *path, size_t value_len, double *rate)
{
    *rate = 0;
    bench_raw_t raw;
    if (bench_raw_open (&raw, path, false))
        return -1;
    uint64_t have = bench_raw_last_seq (&raw);
    if (have > 0) {
        bench_raw_close (&raw);
        if (have == config->events)
            return 0;
        fprintf (stderr, "store_bench: %s holds %" PRIu64 " keys, not %" PRIu64 "\n",
                 path, have, config->events);
        return -1;
    }
    int rc = 1;
    double busy = 0, start = bench_now (), shown = start;
    uint64_t done = 0;
    while (done < config->events) {
        if (s_interrupted || bench_now () - start > config->build_seconds) {
            fprintf (stderr, "\nstore_bench: raw build stopped\n");
            rc = -1;
            break;
        }
        size_t count = S_BUILD_BATCH;
        if (config->events - done < count)
            count = (size_t) (config->events - done);
        double t0 = bench_now ();
        if (bench_raw_write (&raw, done + 1, count, value_len, s_pool, S_POOL_BYTES)) {
            rc = -1;
            break;
        }
        busy += bench_now () - t0;
        done += count;
        if (bench_now () - shown >= 1) {
            s_progress ("raw", done, config->events, start);
            shown = bench_now ();
        }
    }
    if (rc == 1) {
        s_progress ("raw", done, config->events, start);
        fprintf (stderr, "\n");
        *rate = busy > 0? (double) done / busy: 0;
    }
    bench_raw_close (&raw);
    return rc;
}


//  ---------------------------------------------------------------------
//  Part 3: full scans.  Each reads every envelope's length so neither side
//  can skip the value; bounded by scan_seconds.  Returns events/s, 0 on
//  failure; *seen gets how many events were read.

static double
s_herald_full_scan (herald_store_t *store, const s_config_t *config, uint64_t *seen)
{
    herald_scan_spec_t spec = { .from = 1 };
    herald_error_t err;
    memset (&err, 0, sizeof err);
    double start = bench_now ();
    herald_scan_t *scan = herald_store_scan (store, &spec, &err);
    if (!scan) {
        fprintf (stderr, "store_bench: herald_store_scan: %s\n", err.message);
        return 0;
    }
    const uint8_t *envelope;
    size_t len;
    uint64_t seq, count = 0, bytes = 0;
    int rc;
    while ((rc = herald_scan_next (scan, &envelope, &len, &seq)) == 1) {
        bytes += len + envelope [len - 1];
        if (++count % 65536 == 0
        && (s_interrupted || bench_now () - start > config->scan_seconds))
            break;
    }
    double elapsed = bench_now () - start;
    if (rc < 0)
        fprintf (stderr, "store_bench: herald_scan_next: %s\n",
                 herald_scan_error (scan)->message);
    herald_scan_destroy (&scan);
    *seen = count;
    return rc < 0 || bytes == 0? 0: (double) count / elapsed;
}

static double
s_raw_full_scan (bench_raw_t *raw, const s_config_t *config, uint64_t *seen)
{
    double start = bench_now ();
    rocksdb_iterator_t *iter = rocksdb_create_iterator (raw->db, raw->read);
    uint64_t count = 0, bytes = 0;
    for (rocksdb_iter_seek_to_first (iter); rocksdb_iter_valid (iter);
         rocksdb_iter_next (iter)) {
        size_t key_len, len;
        rocksdb_iter_key (iter, &key_len);
        const char *value = rocksdb_iter_value (iter, &len);
        bytes += len + (uint8_t) value [len - 1];
        if (++count % 65536 == 0
        && (s_interrupted || bench_now () - start > config->scan_seconds))
            break;
    }
    double elapsed = bench_now () - start;
    rocksdb_iter_destroy (iter);
    *seen = count;
    return bytes == 0? 0: (double) count / elapsed;
}


//  ---------------------------------------------------------------------
//  Part 4: sparse reads

typedef enum { S_READ_TOPIC, S_SCAN_PREFIX } s_sparse_kind_t;

//  One timed sparse read; returns ms, *got the events returned, -1 on error.
static double
s_herald_sparse_once (herald_store_t *store, s_sparse_kind_t kind, const char *what,
                      uint64_t *got)
{
    herald_error_t err;
    memset (&err, 0, sizeof err);
    herald_str_t prefix = { what, strlen (what) };
    herald_scan_spec_t spec = { .from = 1, .prefixes = &prefix, .prefix_count = 1 };
    double start = bench_now ();
    herald_scan_t *scan = kind == S_READ_TOPIC
        ? herald_store_read (store, what, strlen (what), 1, 0, &err)
        : herald_store_scan (store, &spec, &err);
    if (!scan) {
        fprintf (stderr, "store_bench: sparse %s: %s\n", what, err.message);
        return -1;
    }
    const uint8_t *envelope;
    size_t len;
    uint64_t seq, count = 0;
    int rc;
    //  Bounded: a sparse read wants 1000; a broken index returning
    //  everything must not turn this into a full scan of the store
    while (count < 100 * S_SPARSE_EVENTS
       && (rc = herald_scan_next (scan, &envelope, &len, &seq)) == 1)
        count++;
    double ms = (bench_now () - start) * 1e3;
    herald_scan_destroy (&scan);
    *got = count;
    return ms;
}

//  1000 point Gets of the given seqs; returns ms, -1 on error.
static double
s_raw_gets_once (bench_raw_t *raw, const uint64_t *seqs, size_t count)
{
    double start = bench_now ();
    for (size_t i = 0; i < count; i++) {
        uint8_t key [8];
        bench_put_be64 (key, seqs [i]);
        char *error = NULL;
        rocksdb_pinnableslice_t *value = rocksdb_get_pinned (
            raw->db, raw->read, (const char *) key, sizeof key, &error);
        if (error || !value) {
            fprintf (stderr, "store_bench: raw get of %" PRIu64 ": %s\n", seqs [i],
                     error? error: "not found");
            rocksdb_free (error);
            return -1;
        }
        rocksdb_pinnableslice_destroy (value);
    }
    return (bench_now () - start) * 1e3;
}

static int
s_cmp_double (const void *a, const void *b)
{
    double x = *(const double *) a, y = *(const double *) b;
    return (x > y) - (x < y);
}

//  min and median of samples[0..count)
static void
s_min_median (double *samples, int count, double *min, double *median)
{
    qsort (samples, (size_t) count, sizeof *samples, s_cmp_double);
    *min = samples [0];
    *median = count % 2? samples [count / 2]
                       : (samples [count / 2 - 1] + samples [count / 2]) / 2;
}

//  Time one sparse case: cold (files dropped from the page cache, store
//  reopened), cold-ish (store reopened), then config->reps warm runs; the
//  same for raw point Gets of seqs.  Opening is never timed.  Returns 0,
//  or -1 on error.
static int
s_sparse_case (const s_config_t *config, const char *herald_path, const char *raw_path,
               s_sparse_kind_t kind, const uint64_t *seqs, s_sparse_row_t *row,
               const char *what)
{
    double samples [S_MAX_REPS];
    int reps = config->reps < S_MAX_REPS? config->reps: S_MAX_REPS;
    herald_store_t *store = NULL;
    for (int run = 0; run < 2; run++) {
        if (run == 0)
            bench_drop_cache (herald_path);
        store = s_store_open (herald_path, HERALD_DURABILITY_ASYNC);
        if (!store)
            return -1;
        double ms = s_herald_sparse_once (store, kind, what, &row->got);
        if (ms < 0) {
            herald_store_destroy (&store);
            return -1;
        }
        *(run == 0? &row->cold_ms: &row->reopen_ms) = ms;
        if (run == 0)
            herald_store_destroy (&store);
    }
    for (int rep = 0; rep < reps; rep++)
        samples [rep] = s_herald_sparse_once (store, kind, what, &row->got);
    herald_store_destroy (&store);
    s_min_median (samples, reps, &row->min_ms, &row->median_ms);

    bench_raw_t raw;
    for (int run = 0; run < 2; run++) {
        if (run == 0)
            bench_drop_cache (raw_path);
        if (bench_raw_open (&raw, raw_path, false))
            return -1;
        double ms = s_raw_gets_once (&raw, seqs, S_SPARSE_EVENTS);
        *(run == 0? &row->raw_cold_ms: &row->raw_reopen_ms) = ms;
        if (run == 0)
            bench_raw_close (&raw);
    }
    for (int rep = 0; rep < reps; rep++)
        samples [rep] = s_raw_gets_once (&raw, seqs, S_SPARSE_EVENTS);
    bench_raw_close (&raw);
    s_min_median (samples, reps, &row->raw_min_ms, &row->raw_median_ms);
    return 0;
}


//  ---------------------------------------------------------------------
//  Output

static const char *
s_verdict (bool met)
{
    return met? "met": "MISSED";
}

static void
s_print_machine (const char *base)
{
    char cpu [256], memory [64], fs [512], version [64], probe [PATH_MAX];
    bench_proc_field ("/proc/cpuinfo", "model name", cpu, sizeof cpu);
    bench_proc_field ("/proc/meminfo", "MemTotal", memory, sizeof memory);
    bench_filesystem (base, fs, sizeof fs);
    //  A throwaway DB, only to learn the RocksDB version from its OPTIONS
    bench_join (probe, base, "version-probe");
    bench_raw_t raw;
    if (bench_raw_open (&raw, probe, false) == 0)
        bench_raw_close (&raw);
    bench_rocksdb_version (probe, version, sizeof version);
    bench_remove_tree (probe);

    printf ("Herald store benchmark (herald %s)\n", herald_version ());
    printf ("  cpus:       %ld online, %s\n", sysconf (_SC_NPROCESSORS_ONLN), cpu);
    printf ("  memory:     %s\n", memory);
    char load [64];
    bench_loadavg (load, sizeof load);
    printf ("  load avg:   %s (above 0 means other work shares the machine)\n", load);
    printf ("  rocksdb:    %s\n", version);
    printf ("  data dir:   %s\n", base);
    printf ("  filesystem: %s\n", fs);
    printf ("  raw DB options (the store's): %s\n", BENCH_RAW_OPTIONS_TEXT);
    printf ("\n");
    fflush (stdout);
}

static void
s_print_appends (const s_append_row_t *rows, size_t count)
{
    printf ("Appends (one herald_batch_t per herald_store_append; raw: one WriteBatch per batch)\n");
    printf ("  raw values are as long as Herald's stored envelope for that payload\n");
    printf ("  %-28s %5s %12s %9s %12s %9s %8s  %-12s\n", "case", "env B",
            "Herald ev/s", "MB/s", "raw ev/s", "MB/s", "H/raw", "target");
    for (size_t i = 0; i < count; i++) {
        const s_append_row_t *row = &rows [i];
        char name [64], a [32], b [32], target [32];
        snprintf (name, sizeof name, "batch %4zu, %4zu B, %s", row->batch, row->payload,
                  row->durability == HERALD_DURABILITY_SYNC? "sync": "async");
        double ratio = row->raw_rate > 0? 100 * row->herald_rate / row->raw_rate: 0;
        if (row->batch > 1)
            snprintf (target, sizeof target, ">=50%% %s", s_verdict (ratio >= 50));
        else
            snprintf (target, sizeof target, "-");
        printf ("  %-28s %5zu %12s %9.1f %12s %9.1f %7.1f%%  %-12s\n", name, row->envelope,
                bench_count (a, sizeof a, row->herald_rate),
                row->herald_rate * (double) row->payload / S_MB,
                bench_count (b, sizeof b, row->raw_rate),
                row->raw_rate * (double) row->payload / S_MB, ratio, target);
    }
    printf ("  (MB/s counts payload bytes, 10^6 per MB; events timed per case: Herald / raw)\n");
    for (size_t i = 0; i < count; i++) {
        char a [32], b [32];
        printf ("    batch %4zu, %4zu B, %-5s: %s / %s\n", rows [i].batch, rows [i].payload,
                rows [i].durability == HERALD_DURABILITY_SYNC? "sync": "async",
                bench_count (a, sizeof a, (double) rows [i].herald_events),
                bench_count (b, sizeof b, (double) rows [i].raw_events));
    }
    printf ("\n");
    fflush (stdout);
}


//  ---------------------------------------------------------------------
//  main

//  Ask every loop to stop at its next check; the run then prints what it
//  has, marked partial, and cleans up.
static void
s_on_signal (int signum)
{
    (void) signum;
    s_interrupted = 1;
}

static void
s_usage (FILE *out)
{
    fprintf (out,
        "usage: store_bench [--events N] [--dir DIR] [--keep] [--quick] [--seconds S]\n"
        "                   [--only append|scan|sparse]\n"
        "\n"
        "Benchmarks Herald's store against raw RocksDB in one run and prints a table;\n"
        "it never fails on a timing.  See bench/README.md.\n"
        "\n"
        "  --events N   events in the sparse/scan store (default 10000000, min 10000)\n"
        "  --dir DIR    keep data under DIR; a store built there with --keep is reused\n"
        "               by a later run with the same --events (default: a temp dir\n"
        "               under /tmp, removed at the end)\n"
        "  --keep       keep the sparse/scan stores this run built\n"
        "  --quick      smoke run: 200000 events, short budgets (for tests and CI)\n"
        "  --seconds S  time budget per append case and side (default 3, quick 0.3)\n"
        "  --only PART  run one part: append, scan or sparse (the last two build or\n"
        "               reuse the sparse store); for profiling\n"
        "  --help       this text\n");
}

static int
s_parse (int argc, char *argv [], s_config_t *config)
{
    static const struct option longopts [] = {
        { "events", required_argument, NULL, 'e' },
        { "dir", required_argument, NULL, 'd' },
        { "keep", no_argument, NULL, 'k' },
        { "quick", no_argument, NULL, 'q' },
        { "seconds", required_argument, NULL, 's' },
        { "only", required_argument, NULL, 'o' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 }
    };
    uint64_t events = 0;
    double seconds = 0;
    int option;
    while ((option = getopt_long (argc, argv, "e:d:kqs:o:h", longopts, NULL)) != -1) {
        char *end = NULL;
        switch (option) {
            case 'e':
                events = strtoull (optarg, &end, 10);
                if (*end || events < 10000 || events > 1000000000) {
                    fprintf (stderr, "store_bench: --events wants 10000..1000000000\n");
                    return -1;
                }
                break;
            case 'd': config->dir = optarg; break;
            case 'k': config->keep = true; break;
            case 'q': config->quick = true; break;
            case 's':
                seconds = strtod (optarg, &end);
                if (*end || !(seconds > 0 && seconds <= 600)) {
                    fprintf (stderr, "store_bench: --seconds wants 0..600\n");
                    return -1;
                }
                break;
            case 'o':
                if (strcmp (optarg, "append") && strcmp (optarg, "scan")
                &&  strcmp (optarg, "sparse")) {
                    fprintf (stderr, "store_bench: --only wants append, scan or sparse\n");
                    return -1;
                }
                config->only = optarg;
                break;
            case 'h': s_usage (stdout); exit (0);
            default: s_usage (stderr); return -1;
        }
    }
    if (optind < argc) {
        s_usage (stderr);
        return -1;
    }
    if (config->quick) {
        config->events = 200000;
        config->append_seconds = 0.3;
        config->append_max_single = 5000;
        config->append_max_batched = 100000;
        config->scan_seconds = 10;
        config->reps = 3;
    }
    if (events)
        config->events = events;
    if (seconds > 0)
        config->append_seconds = seconds;
    return 0;
}

int
main (int argc, char *argv [])
{
    s_config_t config = {
        .events = 10000000,
        .append_seconds = 3,
        .append_max_single = 200000,
        .append_max_batched = 5000000,
        .scan_seconds = 60,
        .build_seconds = 3600,
        .reps = 9
    };
    if (s_parse (argc, argv, &config))
        return 1;
    setvbuf (stdout, NULL, _IOLBF, 0);
    signal (SIGINT, s_on_signal);
    signal (SIGTERM, s_on_signal);

    //  Random payloads, from a fixed seed so runs compare
    s_pool = malloc (S_POOL_BYTES);
    if (!s_pool)
        return 1;
    uint64_t state = 0x9E3779B97F4A7C15ull;
    for (size_t i = 0; i < S_POOL_BYTES; i++) {
        state ^= state << 13; state ^= state >> 7; state ^= state << 17;
        s_pool [i] = (uint8_t) (state >> 24);
    }
    for (int i = 0; i < S_TOPICS; i++) {
        snprintf (s_topic_names [i], sizeof s_topic_names [i], "bench.t%d", i);
        snprintf (s_sparse_names [i], sizeof s_sparse_names [i], "sparse.t%d", i);
    }

    char base [PATH_MAX];
    bool temp = config.dir == NULL;
    if (temp) {
        snprintf (base, sizeof base, "/tmp/herald-bench-XXXXXX");
        if (!mkdtemp (base)) {
            fprintf (stderr, "store_bench: mkdtemp: %s\n", strerror (errno));
            return 1;
        }
    }
    else {
        if (strlen (config.dir) > PATH_MAX / 2) {
            fprintf (stderr, "store_bench: --dir is too long\n");
            return 1;
        }
        snprintf (base, sizeof base, "%s", config.dir);
        if (mkdir (base, 0755) && errno != EEXIST) {
            fprintf (stderr, "store_bench: mkdir %s: %s\n", base, strerror (errno));
            return 1;
        }
    }
    s_print_machine (base);
    //  The sparse store's paths; what existed before this run is never removed
    char herald_path [PATH_MAX], raw_path [PATH_MAX];
    bench_join (herald_path, base, "sparse-herald");
    bench_join (raw_path, base, "sparse-raw");
    bool herald_existed = bench_exists (herald_path);
    bool raw_existed = bench_exists (raw_path);
    int status = 0;
    double bench_start = bench_now ();

    //  Part 1: appends
    s_append_row_t rows [8];
    size_t row_count = 0;
    static const size_t batches [] = { 1, 1000 };
    static const size_t payloads [] = { 100, 1024 };
    static const herald_durability_t durabilities [] = {
        HERALD_DURABILITY_SYNC, HERALD_DURABILITY_ASYNC
    };
    bool run_append = !config.only || strcmp (config.only, "append") == 0;
    bool run_scan = !config.only || strcmp (config.only, "scan") == 0;
    bool run_sparse = !config.only || strcmp (config.only, "sparse") == 0;
    for (int b = 0; b < 2 && run_append; b++)
    for (int p = 0; p < 2; p++)
    for (int d = 0; d < 2 && !s_interrupted; d++) {
        s_append_row_t *row = &rows [row_count++];
        memset (row, 0, sizeof *row);
        row->batch = batches [b];
        row->payload = payloads [p];
        row->durability = durabilities [d];
        row->envelope = s_envelope_size (row->payload);
        fprintf (stderr, "  append: batch %zu, %zu B, %s ...\n", row->batch, row->payload,
                 row->durability == HERALD_DURABILITY_SYNC? "sync": "async");
        s_append_case (&config, base, row);
        if (row->herald_rate == 0 || row->raw_rate == 0)
            status = 1;
    }
    if (run_append)
        s_print_appends (rows, row_count);
    if (!run_scan && !run_sparse)
        goto cleanup;

    //  Part 2: build or reuse the sparse store and its raw twin
    size_t envelope = s_envelope_size (100);
    double herald_build_rate = 0, raw_build_rate = 0;
    char a [32], b [32];
    fprintf (stderr, "  sparse store: %s events of 100 B in %s\n",
             bench_count (a, sizeof a, (double) config.events), base);
    int herald_built = s_build_herald (&config, herald_path, &herald_build_rate);
    int raw_built = herald_built < 0? -1:
                    s_build_raw (&config, raw_path, envelope, &raw_build_rate);
    if (herald_built < 0 || raw_built < 0) {
        status = 1;
        goto cleanup;
    }
    printf ("Sparse/scan store: %s events of 100 B, %zu B envelopes, %d topics \"bench.t<N>\",\n"
            "  %d events of \"rare.one\" and %d of 100 topics \"sparse.t<N>\" spread evenly\n",
            bench_count (a, sizeof a, (double) config.events), envelope, S_TOPICS,
            S_SPARSE_EVENTS, S_SPARSE_EVENTS);
    if (herald_built == 1 && raw_built == 1) {
        double ratio = raw_build_rate > 0? 100 * herald_build_rate / raw_build_rate: 0;
        printf ("  build (async, batches of 1000, growing to full size): Herald %s ev/s, "
                "raw %s ev/s, %.1f%%  (>=50%% %s)\n",
                bench_count (a, sizeof a, herald_build_rate),
                bench_count (b, sizeof b, raw_build_rate), ratio, s_verdict (ratio >= 50));
    }
    else
        printf ("  reused from %s (built by an earlier run)\n", base);
    uint64_t herald_disk = bench_tree_size (herald_path), raw_disk = bench_tree_size (raw_path);
    printf ("  on disk: Herald %.1f MB (%.0f B/event), raw %.1f MB (%.0f B/event)\n\n",
            (double) herald_disk / S_MB, (double) herald_disk / (double) config.events,
            (double) raw_disk / S_MB, (double) raw_disk / (double) config.events);

    //  Part 3: full scans, two runs each, best kept (the first warms caches)
    if (run_scan) {
        double herald_best = 0, raw_best = 0;
        uint64_t herald_seen = 0, raw_seen = 0;
        herald_store_t *store = s_store_open (herald_path, HERALD_DURABILITY_ASYNC);
        for (int run = 0; store && run < 2 && !s_interrupted; run++) {
            fprintf (stderr, "  full scan herald, run %d ...\n", run + 1);
            double rate = s_herald_full_scan (store, &config, &herald_seen);
            if (rate > herald_best)
                herald_best = rate;
        }
        herald_store_destroy (&store);
        bench_raw_t raw;
        if (bench_raw_open (&raw, raw_path, false) == 0) {
            for (int run = 0; run < 2 && !s_interrupted; run++) {
                fprintf (stderr, "  full scan raw, run %d ...\n", run + 1);
                double rate = s_raw_full_scan (&raw, &config, &raw_seen);
                if (rate > raw_best)
                    raw_best = rate;
            }
            bench_raw_close (&raw);
        }
        if (herald_best == 0 || raw_best == 0)
            status = 1;
        double ratio = raw_best > 0? 100 * herald_best / raw_best: 0;
        printf ("Full scan (herald_store_scan from seq 1, every topic; raw: iterator over every key)\n");
        printf ("  %-28s %12s %12s %8s  %-12s\n", "case", "Herald ev/s", "raw ev/s",
                "H/raw", "target");
        printf ("  %-28s %12s %12s %7.1f%%  >=70%% %s\n", "full scan, best of 2",
                bench_count (a, sizeof a, herald_best), bench_count (b, sizeof b, raw_best),
                ratio, s_verdict (ratio >= 70));
        printf ("  (events read in the last run: Herald %s, raw %s; each run stops after %.0f s)\n\n",
                bench_count (a, sizeof a, (double) herald_seen),
                bench_count (b, sizeof b, (double) raw_seen), config.scan_seconds);
    }

    //  Part 4: sparse reads
    if (run_sparse) {
        uint64_t *rare = calloc (S_SPARSE_EVENTS, sizeof *rare);
        uint64_t *sparse = calloc (S_SPARSE_EVENTS, sizeof *sparse);
        s_sparse_row_t sparse_rows [3] = {
            { .name = "read topic rare.one" },
            { .name = "scan prefix rare.one" },
            { .name = "scan prefix sparse." }
        };
        static const char *whats [3] = { "rare.one", "rare.one", "sparse." };
        static const s_sparse_kind_t kinds [3] = {
            S_READ_TOPIC, S_SCAN_PREFIX, S_SCAN_PREFIX
        };
        if (!rare || !sparse) {
            free (rare);
            free (sparse);
            status = 1;
            goto cleanup;
        }
        s_sparse_seqs (config.events, rare, sparse);
        printf ("Sparse reads: 1,000 events among %s, in ms\n",
                bench_count (a, sizeof a, (double) config.events));
        printf ("  cold: page cache dropped and store reopened (disk-bound: ~1000 random reads)\n"
                "  reopen: store reopened, page cache warm; then %d warm runs: min, median\n"
                "  raw: 1,000 point Gets of the same seqs in the raw DB, timed the same way\n",
                config.reps);
        printf ("  %-21s %6s %7s %7s %7s %7s | %7s %7s %7s %7s %6s  %-12s\n", "case",
                "events", "cold", "reopen", "min", "median", "cold", "reopen", "min",
                "median", "H/raw", "target");
        for (int i = 0; i < 3 && !s_interrupted; i++) {
            s_sparse_row_t *row = &sparse_rows [i];
            fprintf (stderr, "  sparse: %s ...\n", row->name);
            if (s_sparse_case (&config, herald_path, raw_path, kinds [i],
                               i == 2? sparse: rare, row, whats [i])) {
                status = 1;
                continue;
            }
            double ratio = row->raw_median_ms > 0
                         ? 100 * row->median_ms / row->raw_median_ms: 0;
            printf ("  %-21s %6" PRIu64 " %7.2f %7.2f %7.2f %7.2f | %7.2f %7.2f %7.2f %7.2f"
                    " %5.0f%%  <20 ms %s%s\n",
                    row->name, row->got, row->cold_ms, row->reopen_ms, row->min_ms,
                    row->median_ms, row->raw_cold_ms, row->raw_reopen_ms, row->raw_min_ms,
                    row->raw_median_ms, ratio,
                    s_verdict (row->median_ms < 20 && row->reopen_ms < 20),
                    row->got == S_SPARSE_EVENTS? "": " (WRONG COUNT)");
        }
        printf ("  (H/raw: Herald's median over raw's, above 100%% is slower; the target is\n"
                "   met when the reopen run and the median are under 20 ms)\n\n");
        free (rare);
        free (sparse);
    }

cleanup:
    char load [64];
    bench_loadavg (load, sizeof load);
    printf ("Total bench time: %.0f s, load avg at the end: %s%s\n", bench_now () - bench_start,
            load, s_interrupted? " (interrupted: figures above are partial)": "");
    if (config.keep)
        printf ("Kept: %s\n", base);
    else
    if (temp)
        bench_remove_tree (base);
    else {
        //  Remove only what this run built; a reused store stays
        if (!herald_existed)
            bench_remove_tree (herald_path);
        if (!raw_existed)
            bench_remove_tree (raw_path);
    }
    free (s_pool);
    return status || s_interrupted? 1: 0;
}
