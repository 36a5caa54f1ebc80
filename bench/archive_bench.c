/*  =========================================================================
    archive_bench - herald archive's format: compression ratio, write and
    read rates

    Usage: bench/archive_bench [EVENTS] [DIR]   (default 1000000, a temp dir)

    Makes EVENTS stored envelopes as the broker encodes them (UUIDv7 ids,
    1000 topics under three prefixes, a type, one meta entry, JSON data of
    150-300 bytes with varying numbers and names, ts rising by ~50 us),
    writes them through the archive writer (default segment sizes: 64 MiB
    or 1M events), then reads them back through the checking reader twice:
    as replay --archive does (every checksum, envelope peeked), and as
    archive verify does (plus a full decode and id check of every event).
    Prints the figures; no assertion.  Runs in well under a minute.
    =========================================================================
*/

#include "herald_archive.h"
#include "herald_event.h"
#include "herald_uuid.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

//  CPU seconds of this process: on a shared, loaded machine the wall
//  clock says more about the neighbours than about the archive
static double
s_cpu (void)
{
    struct timespec now;
    clock_gettime (CLOCK_PROCESS_CPUTIME_ID, &now);
    return now.tv_sec + now.tv_nsec / 1e9;
}

static double
s_now (void)
{
    struct timespec now;
    clock_gettime (CLOCK_MONOTONIC, &now);
    return now.tv_sec + now.tv_nsec / 1e9;
}

static const char *
s_loadavg (void)
{
    static char line [128] = "unknown\n";
    FILE *file = fopen ("/proc/loadavg", "r");
    if (file) {
        if (!fgets (line, sizeof line, file))
            snprintf (line, sizeof line, "unknown\n");
        fclose (file);
    }
    return line;
}

int
main (int argc, char **argv)
{
    uint64_t events = argc > 1 ? strtoull (argv [1], NULL, 10) : 1000000;
    char dir [4096];
    if (argc > 2)
        snprintf (dir, sizeof dir, "%s", argv [2]);
    else {
        snprintf (dir, sizeof dir, "%s/archive_bench.XXXXXX", getenv ("TMPDIR") ? getenv ("TMPDIR") : "/tmp");
        if (!mkdtemp (dir)) {
            perror ("mkdtemp");
            return 1;
        }
    }
    mkdir (dir, 0755);
    static const char *names [] = { "alice", "bob", "carol", "dmitri", "eve", "fatima", "li" };
    static const char *skus [] = { "SKU-1", "SKU-77", "SKU-1203", "SKU-9", "SKU-450" };
    msgpack_sbuffer buffer;
    msgpack_sbuffer_init (&buffer);
    char why [HERALD_ARCHIVE_WHY_MAX];
    herald_archive_index_t index;
    memset (&index, 0, sizeof index);
    herald_archive_writer_t *writer = NULL;
    uint64_t raw_bytes = 0, ts = 1796229347000000000ULL;
    srand (42);
    double started = s_now (), cpu = s_cpu ();
    for (uint64_t seq = 1; seq <= events; seq++) {
        char topic [64], data [400];
        int t = rand () % 1000;
        snprintf (topic, sizeof topic, "%s.%d", t < 600 ? "orders" : t < 900 ? "stock" : "payments", t);
        int len = snprintf (data, sizeof data,
            "{\"order\":\"A-%07d\",\"customer\":\"%s-%05d\",\"items\":[{\"sku\":\"%s\",\"qty\":%d,"
            "\"price\":%d.%02d}%s],\"currency\":\"EUR\",\"total\":%d.%02d,\"note\":\"%s\"}",
            rand () % 10000000, names [rand () % 7], rand () % 100000, skus [rand () % 5],
            1 + rand () % 5, rand () % 200, rand () % 100,
            rand () % 3 ? ",{\"sku\":\"SKU-2\",\"qty\":1,\"price\":5.50}" : "",
            rand () % 1000, rand () % 100, rand () % 4 ? "" : "leave at the door");
        herald_kv_t meta = { "source", 6, rand () % 2 ? "web" : "mobile", 0 };
        meta.value_len = strlen (meta.value);
        ts += 30000 + rand () % 40000;
        herald_event_t event = {
            .topic = topic, .topic_len = strlen (topic), .seq = seq, .ver = 1 + seq / 1000,
            .ts = ts, .type = "order.placed", .type_len = 12, .meta = &meta, .meta_count = 1,
            .data = (const uint8_t *) data, .data_len = (size_t) len
        };
        herald_uuid_v7 (event.id);
        msgpack_sbuffer_clear (&buffer);
        if (herald_event_encode (&event, &buffer) != 0)
            return 1;
        raw_bytes += buffer.size;
        if (!writer)
            writer = herald_archive_writer_new (dir, "bench", 5, 0, why, sizeof why);
        if (!writer || herald_archive_writer_add (writer, buffer.data, buffer.size, seq, ts,
                                                  event.id)) {
            fprintf (stderr, "archive_bench: %s\n", writer ? herald_archive_writer_why (writer) : why);
            return 1;
        }
        if (herald_archive_writer_count (writer) >= 1000000
        ||  herald_archive_writer_bytes (writer) >= 64ULL * 1024 * 1024 || seq == events) {
            herald_archive_seg_t seg;
            if (herald_archive_writer_commit (&writer, &seg)
            ||  herald_archive_index_add (&index, &seg)
            ||  herald_archive_index_save (dir, &index, why, sizeof why)) {
                fprintf (stderr, "archive_bench: cannot commit\n");
                return 1;
            }
        }
    }
    double wrote = s_now () - started, wrote_cpu = s_cpu () - cpu;
    uint64_t archive_bytes = 0;
    for (size_t at = 0; at < index.count; at++)
        archive_bytes += index.segs [at].bytes;
    printf ("archive_bench: load average %s", s_loadavg ());
    printf ("archive_bench: %" PRIu64 " events, envelopes %.1f MB (%.0f bytes each), archive "
            "%.1f MB in %zu segment%s: ratio %.2f:1\n", events, raw_bytes / 1e6,
            (double) raw_bytes / events, archive_bytes / 1e6, index.count,
            index.count == 1 ? "" : "s", (double) raw_bytes / archive_bytes);
    printf ("archive_bench: write (making the events included, fsync at each segment) %.2f s "
            "(%.2f s CPU), %.0f events/s, %.1f MB/s of envelopes (per CPU s: %.0f events/s)\n",
            wrote, wrote_cpu, events / wrote, raw_bytes / 1e6 / wrote, events / wrote_cpu);
    msgpack_zone zone;
    msgpack_zone_init (&zone, 4096);
    for (int pass = 0; pass < 2; pass++) {
        started = s_now ();
        cpu = s_cpu ();
        uint64_t read = 0, read_bytes = 0;
        for (size_t at = 0; at < index.count; at++) {
            herald_archive_reader_t *reader = herald_archive_reader_new (dir, &index.segs [at],
                                                                         why, sizeof why);
            if (!reader) {
                fprintf (stderr, "archive_bench: %s\n", why);
                return 1;
            }
            const uint8_t *envelope;
            size_t len;
            uint64_t seq, ets;
            int more;
            while ((more = herald_archive_reader_next (reader, &envelope, &len, &seq, &ets)) > 0) {
                read++;
                read_bytes += len;
                if (pass == 1) {
                    herald_event_t event;
                    herald_error_t err;
                    msgpack_zone_clear (&zone);
                    if (herald_event_decode (&event, envelope, len, &zone, &err) != HERALD_OK
                    ||  memcmp (event.id, herald_archive_reader_id (reader), 16) != 0) {
                        fprintf (stderr, "archive_bench: seq %" PRIu64 " is wrong\n", seq);
                        return 1;
                    }
                }
            }
            if (more < 0) {
                fprintf (stderr, "archive_bench: %s\n", why);
                return 1;
            }
            herald_archive_reader_destroy (&reader);
        }
        double took = s_now () - started, took_cpu = s_cpu () - cpu;
        printf ("archive_bench: read (%s) %.2f s (%.2f s CPU), %.0f events/s, %.1f MB/s of "
                "envelopes, %.1f MB/s of archive (per CPU s: %.0f events/s, %.1f MB/s of "
                "envelopes)\n", pass ? "as verify: every checksum, full decode, ids"
                                      : "as replay --archive: every checksum",
                took, took_cpu, read / took, read_bytes / 1e6 / took, archive_bytes / 1e6 / took,
                read / took_cpu, read_bytes / 1e6 / took_cpu);
        if (read != events)
            return 1;
    }
    msgpack_zone_destroy (&zone);
    msgpack_sbuffer_destroy (&buffer);
    herald_archive_index_fini (&index);
    if (argc <= 2) {
        char command [4200];
        snprintf (command, sizeof command, "rm -rf '%s'", dir);
        if (system (command) != 0)
            return 1;
    }
    return 0;
}
