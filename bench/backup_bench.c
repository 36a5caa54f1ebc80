/*  =========================================================================
    backup_bench - how long an online backup, its check and a restore take

        bench/backup_bench [--events N] [--payload BYTES] [--topics T]
                           [--dir DIR] [--writers]

    Fills a store with N events (default 1,000,000) of BYTES of random
    payload (default 200) over T topics (default 100), in appends of 1,000
    events, then measures what `herald backup`, `herald backup verify` and
    `herald restore` do, by calling the same functions (store/
    herald_backup.c) in this process:

    - backup: herald_backup_create (a RocksDB checkpoint: table files hard
      linked, the memtables flushed first; then the copy opened, stopped
      cleanly, re-opened read-only, and every file's SHA-256), with
      --writers an appender running on another thread meanwhile, as the
      broker's writer would (its rate during the backup is printed);
    - verify: herald_backup_verify (reads every byte);
    - restore: herald_backup_restore (verify, copy with the SHA-256 checked
      again, fsync, open, stop, rename).

    Prints the store's size, the backup's (and how much of it is new disk
    space: files not hard-linked), and the times and rates.  It runs in
    DIR (default /tmp) on one file system, so the backup's table files are
    hard links; a backup on another file system copies them (about the
    restore's copy rate).  Everything it made is removed at the end.
    =========================================================================
*/

#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <dirent.h>
#include <unistd.h>

#include "bench_util.h"
#include "herald_backup.h"
#include "herald_store.h"
#include "herald_uuid.h"

#define S_APPEND        1000

typedef struct {
    herald_store_t *store;
    size_t payload;
    size_t topics;
    atomic_bool stop;
    atomic_uint_fast64_t written;
    pthread_t thread;
} s_writer_t;

static char s_topics [1000][32];

//  Append count events (ids v7, random payloads) in one call.
static int
s_append (herald_store_t *store, size_t count, size_t payload, size_t topics, uint64_t serial)
{
    static __thread herald_event_t *events;
    static __thread herald_append_result_t *results;
    static __thread uint8_t *data;
    if (!events) {
        events = calloc (S_APPEND, sizeof *events);
        results = calloc (S_APPEND, sizeof *results);
        data = malloc ((size_t) S_APPEND * payload + 1);
        if (!events || !results || !data)
            return -1;
    }
    FILE *random = fopen ("/dev/urandom", "r");
    if (!random || fread (data, 1, count * payload, random) != count * payload) {
        if (random)
            fclose (random);
        return -1;
    }
    fclose (random);
    for (size_t index = 0; index < count; index++) {
        herald_event_t *event = &events [index];
        memset (event, 0, sizeof *event);
        herald_uuid_v7 (event->id);
        const char *topic = s_topics [(serial + index) % topics];
        event->topic = topic;
        event->topic_len = strlen (topic);
        event->data = data + index * payload;
        event->data_len = payload;
    }
    herald_batch_t batch = { .events = events, .count = count, .results = results };
    herald_error_t err = { 0 };
    if (herald_store_append (store, &batch, 1, &err) != HERALD_OK
    ||  batch.status != HERALD_OK) {
        fprintf (stderr, "backup_bench: append: %s\n", err.message);
        return -1;
    }
    return 0;
}

static void *
s_writer_run (void *arg)
{
    s_writer_t *writer = (s_writer_t *) arg;
    for (uint64_t serial = 0; !writer->stop; serial += S_APPEND) {
        if (s_append (writer->store, S_APPEND, writer->payload, writer->topics, serial) != 0)
            break;
        writer->written += S_APPEND;
    }
    return NULL;
}

//  Bytes under dir (one level, as a store and a backup are), and those
//  of files with one link only (new disk space).
static void
s_du (const char *dir, uint64_t *bytes, uint64_t *own)
{
    *bytes = *own = 0;
    DIR *handle = opendir (dir);
    if (!handle)
        return;
    struct dirent *entry;
    while ((entry = readdir (handle))) {
        char path [PATH_MAX];
        struct stat info;
        snprintf (path, sizeof path, "%s/%s", dir, entry->d_name);
        if (lstat (path, &info) != 0)
            continue;
        if (S_ISDIR (info.st_mode)) {
            if (strcmp (entry->d_name, ".") && strcmp (entry->d_name, "..")) {
                uint64_t sub_bytes, sub_own;
                s_du (path, &sub_bytes, &sub_own);
                *bytes += sub_bytes;
                *own += sub_own;
            }
            continue;
        }
        *bytes += (uint64_t) info.st_size;
        if (info.st_nlink == 1)
            *own += (uint64_t) info.st_size;
    }
    closedir (handle);
}

static double
s_mib (uint64_t bytes)
{
    return (double) bytes / 1048576.0;
}

int
main (int argc, char **argv)
{
    uint64_t events = 1000000;
    size_t payload = 200, topics = 100;
    const char *base = "/tmp";
    bool writers = false;
    for (int index = 1; index < argc; index++) {
        if (!strcmp (argv [index], "--events") && index + 1 < argc)
            events = strtoull (argv [++index], NULL, 10);
        else
        if (!strcmp (argv [index], "--payload") && index + 1 < argc)
            payload = (size_t) strtoull (argv [++index], NULL, 10);
        else
        if (!strcmp (argv [index], "--topics") && index + 1 < argc)
            topics = (size_t) strtoull (argv [++index], NULL, 10);
        else
        if (!strcmp (argv [index], "--dir") && index + 1 < argc)
            base = argv [++index];
        else
        if (!strcmp (argv [index], "--writers"))
            writers = true;
        else {
            fprintf (stderr, "usage: backup_bench [--events N] [--payload BYTES] [--topics T] "
                     "[--dir DIR] [--writers]\n");
            return 64;
        }
    }
    if (events == 0 || payload == 0 || payload > 65536 || topics == 0 || topics > 1000
    ||  strlen (base) > 200) {
        fprintf (stderr, "backup_bench: --events >= 1, --payload 1..65536, --topics 1..1000, "
                 "--dir at most 200 bytes\n");
        return 64;
    }
    for (size_t index = 0; index < topics; index++)
        snprintf (s_topics [index], sizeof s_topics [index], "bench.topic.%zu", index);
    char root [256], data_dir [300], backup_dir [300], restore_dir [300];
    snprintf (root, sizeof root, "%s/backup_bench.XXXXXX", base);
    if (!mkdtemp (root)) {
        perror ("backup_bench: mkdtemp");
        return 1;
    }
    snprintf (data_dir, sizeof data_dir, "%s/data", root);
    snprintf (backup_dir, sizeof backup_dir, "%s/backup", root);
    snprintf (restore_dir, sizeof restore_dir, "%s/restored", root);
    herald_error_t err = { 0 };
    herald_store_t *store = herald_store_open (data_dir, NULL, &err);
    if (!store) {
        fprintf (stderr, "backup_bench: %s\n", err.message);
        return 1;
    }
    char count_text [32];
    printf ("backup_bench: %s events of %zu bytes over %zu topics in %s\n",
            bench_count (count_text, sizeof count_text, (double) events), payload, topics, root);
    double started = bench_now ();
    int rc = 0;
    for (uint64_t done = 0; done < events && rc == 0; done += S_APPEND) {
        size_t count = events - done < S_APPEND? (size_t) (events - done): S_APPEND;
        rc = s_append (store, count, payload, topics, done);
    }
    if (rc != 0)
        return 1;
    double fill = bench_now () - started;
    printf ("fill:    %.1f s (%.0f events/s)\n", fill, (double) events / fill);
    uint64_t store_bytes, store_own;
    s_du (data_dir, &store_bytes, &store_own);

    s_writer_t writer = { .store = store, .payload = payload, .topics = topics };
    if (writers && pthread_create (&writer.thread, NULL, s_writer_run, &writer) != 0)
        return 1;
    started = bench_now ();
    herald_backup_info_t info;
    rc = herald_backup_create (store, backup_dir, "bench", NULL, NULL, NULL, &info, &err);
    double backup = bench_now () - started;
    uint64_t during = 0;
    if (writers) {
        writer.stop = true;
        pthread_join (writer.thread, NULL);
        during = writer.written;
    }
    if (rc != HERALD_OK) {
        fprintf (stderr, "backup_bench: backup: %s\n", err.message);
        return 1;
    }
    uint64_t backup_bytes, backup_own;
    s_du (backup_dir, &backup_bytes, &backup_own);
    printf ("store:   %.1f MiB on disk (%" PRIu64 " events)\n", s_mib (store_bytes), events);
    printf ("backup:  %.2f s, head %" PRIu64 ", %" PRIu64 " files, %.1f MiB (%.1f MiB of it "
            "new disk space: the rest is hard links), %.0f MiB/s checksummed\n", backup,
            info.head, info.files, s_mib (backup_bytes), s_mib (backup_own),
            s_mib (info.bytes) / backup);
    if (writers)
        printf ("         an appender on another thread wrote %" PRIu64 " events meanwhile "
                "(%.0f events/s)\n", during, (double) during / backup);
    herald_store_destroy (&store);

    started = bench_now ();
    rc = herald_backup_verify (backup_dir, NULL, NULL, &info, &err);
    double verify = bench_now () - started;
    if (rc != HERALD_OK) {
        fprintf (stderr, "backup_bench: verify: %s\n", err.message);
        return 1;
    }
    printf ("verify:  %.2f s (%.0f MiB/s)\n", verify, s_mib (info.bytes) / verify);
    started = bench_now ();
    rc = herald_backup_restore (backup_dir, restore_dir, false, NULL, NULL, &info, &err);
    double restore = bench_now () - started;
    if (rc != HERALD_OK) {
        fprintf (stderr, "backup_bench: restore: %s\n", err.message);
        return 1;
    }
    printf ("restore: %.2f s (verify, copy %.1f MiB, open, stop, rename: %.0f MiB/s "
            "overall)\n", restore, s_mib (info.bytes), s_mib (info.bytes) / restore);
    bench_remove_tree (root);
    return 0;
}
