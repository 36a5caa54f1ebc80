/*  =========================================================================
    trim_bench - trimming the live log: the ids digest, the op, reclaim

    Prints figures (never asserts a timing; exit 0 when the run itself
    worked).  One store of --events events (1,000,000 by default) of
    --size bytes of data (200), over 100 topics: "keep.t<N>" and
    "drop.t<N>" alternating, appended async in batches of 1000.  Then:

      1. herald_store_ids_digest over the whole log (what the broker
         computes to check a TRIM's proof, and the op re-checks at apply)
      2. the op {op: "trim", prefix: "drop.", until: 90%} without proof,
         then herald_store_reclaim (budget 100000 per call): the pass
         that cuts the drop. events out as holes; the time, and the disk
         before and after (the store cleanly stopped and reopened for
         each figure, so WAL files are not counted)
      3. the ids digest again (over the holes), the op {prefix: "", until:
         90%, ids_from, ids} (its apply checks the digest again), and
         reclaim of that whole-log point: runs deleted

    Usage: trim_bench [--events N] [--size BYTES] [--dir DIR]
    =========================================================================
*/

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <msgpack.h>
#include "herald_store.h"
#include "herald_uuid.h"
#include "bench_util.h"

static herald_store_t *
s_open (const char *dir)
{
    herald_error_t err = { 0 };
    herald_store_options_t options = { .durability = HERALD_DURABILITY_ASYNC };
    herald_store_t *store = herald_store_open (dir, &options, &err);
    if (!store)
        fprintf (stderr, "trim_bench: open %s: %s\n", dir, err.message);
    return store;
}

static uint64_t
s_disk (herald_store_t **store, const char *dir)
{
    herald_store_destroy (store);
    *store = s_open (dir);
    uint64_t bytes = 0;
    herald_error_t err = { 0 };
    if (*store)
        herald_store_disk_size (*store, &bytes, &err);
    return bytes;
}

//  The op; returns the batch status and prints the result's error
static herald_err
s_trim (herald_store_t *store, const char *prefix, uint64_t until, uint64_t from,
        const uint8_t *ids)
{
    msgpack_sbuffer buffer;
    msgpack_sbuffer_init (&buffer);
    msgpack_packer pk;
    msgpack_packer_init (&pk, &buffer, msgpack_sbuffer_write);
    msgpack_pack_map (&pk, ids? 5: 3);
    msgpack_pack_str_with_body (&pk, "op", 2);
    msgpack_pack_str_with_body (&pk, "trim", 4);
    msgpack_pack_str_with_body (&pk, "prefix", 6);
    msgpack_pack_str_with_body (&pk, prefix, strlen (prefix));
    msgpack_pack_str_with_body (&pk, "until", 5);
    msgpack_pack_uint64 (&pk, until);
    if (ids) {
        msgpack_pack_str_with_body (&pk, "ids_from", 8);
        msgpack_pack_uint64 (&pk, from);
        msgpack_pack_str_with_body (&pk, "ids", 3);
        msgpack_pack_bin_with_body (&pk, ids, 32);
    }
    herald_batch_t batch = { .op = (const uint8_t *) buffer.data, .op_len = buffer.size };
    herald_error_t err = { 0 };
    herald_err rc = herald_store_append (store, &batch, 1, &err);
    if (rc == HERALD_OK)
        rc = batch.status;
    else
        fprintf (stderr, "trim_bench: trim: %s\n", err.message);
    if (batch.status != HERALD_OK && batch.op_result)
        fprintf (stderr, "trim_bench: trim refused (%zu bytes of result)\n",
                 batch.op_result_len);
    free (batch.op_result);
    msgpack_sbuffer_destroy (&buffer);
    return rc;
}

static int
s_reclaim (herald_store_t *store, double *seconds, herald_reclaim_stats_t *stats)
{
    memset (stats, 0, sizeof (*stats));
    double start = bench_now ();
    bool more = true;
    while (more) {
        herald_error_t err = { 0 };
        if (herald_store_reclaim (store, 100000, &more, stats, &err) != HERALD_OK) {
            fprintf (stderr, "trim_bench: reclaim: %s\n", err.message);
            return -1;
        }
    }
    *seconds = bench_now () - start;
    return 0;
}

int
main (int argc, char **argv)
{
    uint64_t events = 1000000;
    size_t size = 200;
    const char *parent = NULL;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (strcmp (argv [i], "--events") == 0)
            events = strtoull (argv [i + 1], NULL, 10);
        else
        if (strcmp (argv [i], "--size") == 0)
            size = strtoul (argv [i + 1], NULL, 10);
        else
        if (strcmp (argv [i], "--dir") == 0)
            parent = argv [i + 1];
    }
    if (events < 1000 || size == 0 || size > 65536) {
        fprintf (stderr, "usage: trim_bench [--events N>=1000] [--size BYTES] [--dir DIR]\n");
        return 1;
    }
    char dir [PATH_MAX];
    snprintf (dir, sizeof dir, "%s/trim-bench-%d", parent? parent: "/tmp", (int) getpid ());
    herald_store_t *store = s_open (dir);
    if (!store)
        return 1;
    //  Publish
    enum { BATCH = 1000 };
    herald_event_t *batch = calloc (BATCH, sizeof (herald_event_t));
    herald_append_result_t *results = calloc (BATCH, sizeof (herald_append_result_t));
    char *data = malloc (size * BATCH);
    uint64_t state = 0x9E3779B97F4A7C15ull;
    char (*topics) [16] = calloc (100, 16);
    for (int t = 0; t < 100; t++)
        snprintf (topics [t], 16, "%s.t%d", t % 2? "drop": "keep", t);
    double start = bench_now ();
    for (uint64_t done = 0; done < events; done += BATCH) {
        size_t n = events - done < BATCH? (size_t) (events - done): BATCH;
        for (size_t i = 0; i < n; i++) {
            memset (&batch [i], 0, sizeof batch [i]);
            herald_uuid_v7 (batch [i].id);
            batch [i].topic = topics [(done + i) % 100];
            batch [i].topic_len = strlen (batch [i].topic);
            //  Letters drawn per event: the figures are about events, not
            //  about padding that compresses away
            char *bytes = data + i * size;
            for (size_t b = 0; b < size; b++) {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                bytes [b] = (char) ('a' + state % 26);
            }
            batch [i].data = (const uint8_t *) bytes;
            batch [i].data_len = size;
        }
        herald_batch_t call = { .events = batch, .count = n, .results = results };
        herald_error_t err = { 0 };
        if (herald_store_append (store, &call, 1, &err) != HERALD_OK) {
            fprintf (stderr, "trim_bench: append: %s\n", err.message);
            return 1;
        }
    }
    printf ("trim_bench: %llu events of %zu bytes over 100 topics in %s (%.1f s to publish)\n",
            (unsigned long long) events, size, dir, bench_now () - start);
    uint64_t disk_full = s_disk (&store, dir);
    if (!store)
        return 1;
    //  1. the digest
    uint8_t ids [32];
    herald_error_t err = { 0 };
    start = bench_now ();
    if (herald_store_ids_digest (store, 1, events, ids, NULL, &err) != HERALD_OK) {
        fprintf (stderr, "trim_bench: ids digest: %s\n", err.message);
        return 1;
    }
    double digest_s = bench_now () - start;
    printf ("ids digest of seqs 1..%llu:          %8.3f s (%.0f ids/s)\n",
            (unsigned long long) events, digest_s, events / digest_s);
    //  2. a prefix trim of 90% of the log, and its reclaim: the pass
    uint64_t until = events / 10 * 9;
    double seconds;
    herald_reclaim_stats_t stats;
    start = bench_now ();
    if (s_trim (store, "drop.", until, 0, NULL) != HERALD_OK)
        return 1;
    printf ("trim \"drop.\" until %llu, no proof:  %8.3f s\n", (unsigned long long) until,
            bench_now () - start);
    if (s_reclaim (store, &seconds, &stats) != 0)
        return 1;
    uint64_t disk_prefix = s_disk (&store, dir);
    if (!store)
        return 1;
    printf ("reclaim (prefix drop.):              %8.3f s: %llu runs rewritten, %llu events "
            "cut out, %llu stream runs deleted; disk %.1f MB -> %.1f MB\n", seconds,
            (unsigned long long) stats.runs_rewritten, (unsigned long long) stats.events_removed,
            (unsigned long long) stats.stream_runs_deleted, disk_full / 1e6,
            disk_prefix / 1e6);
    //  3. the whole log up to the same seq, with its proof (over the
    //     holes), and its reclaim
    start = bench_now ();
    if (herald_store_ids_digest (store, 1, until, ids, NULL, &err) != HERALD_OK) {
        fprintf (stderr, "trim_bench: ids digest: %s\n", err.message);
        return 1;
    }
    printf ("ids digest of seqs 1..%llu (holes):   %8.3f s\n", (unsigned long long) until,
            bench_now () - start);
    start = bench_now ();
    if (s_trim (store, "", until, 1, ids) != HERALD_OK)
        return 1;
    printf ("trim \"\" until %llu with proof:      %8.3f s (the apply re-checks the digest)\n",
            (unsigned long long) until, bench_now () - start);
    if (s_reclaim (store, &seconds, &stats) != 0)
        return 1;
    uint64_t disk_whole = s_disk (&store, dir);
    if (!store)
        return 1;
    printf ("reclaim (whole log):                 %8.3f s: %llu runs, %llu events deleted; "
            "disk %.1f MB -> %.1f MB\n", seconds, (unsigned long long) stats.runs_deleted,
            (unsigned long long) stats.events_removed, disk_prefix / 1e6, disk_whole / 1e6);
    herald_store_destroy (&store);
    bench_remove_tree (dir);
    free (batch);
    free (results);
    free (data);
    free (topics);
    return 0;
}
