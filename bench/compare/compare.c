/*  =========================================================================
    compare - one run of the comparison: Herald, NATS JetStream, Redis
    Streams and the raw limits, each figure one CSV row

    bench/compare/run.sh runs this several times and makes the table and
    the charts; see docs/benchmarks.md for the workloads and what each
    figure means.  This program starts every server it measures (on free
    127.0.0.1 ports, a fresh data directory under one temp dir) and stops
    it, bounded in time; it never fails on a figure: the exit code is 1
    only when a part could not run.

    DESIGN

    A run is four parts, each over every system in turn (the order rotated
    by the run number, so the drift of a shared machine does not always
    fall on the same system):

      raw       raw RocksDB batched puts (sync, async; envelope-sized
                values), ZeroMQ PUB/SUB to 1/4/16 SUBs and DEALER/ROUTER
                echo, RocksDB iteration of a log and 1,000 point Gets
      publish   one server per durability: 100 B and 1 KiB x 1 and 4
                publishers, CMP_WINDOW events in flight each; for Herald
                each case twice, CMP_BATCH events per PUBLISH (workload
                publish) and one per PUBLISH as NATS sends them
                (publish_one)
      fanout    one server (relaxed durability): 1, 4, 16 live readers
                while one publisher goes as fast as its window allows
                (saturated: the systems run at different loads); then a
                fresh server and the same at a fixed offered rate,
                --fanout-rate (S_FANOUT_RATE), the same for every system
                (workload fanout_paced: latency at equal load)
      log       one server (relaxed durability): build a log of
                --log-events, bytes on disk per event, catch-up from the
                first event, the sparse topic's CMP_SPARSE events

    Each server's peak RSS (VmHWM) is read just before it is stopped, and
    the CPU time it used (/proc/PID/stat) around each publish case.
    CSV columns: run, system, durability, class, workload, case, value,
    unit, p50_ms, p99_ms, p999_ms, count, note.
    =========================================================================
*/

#include "compare.h"
#include "herald_event.h"

#include <czmq.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <nats/nats.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

//  The paced fanout's offered rate, events/s published: 80,000 deliveries
//  a second at 16 subscribers, about a third of the slowest peer's
//  saturated figure here (NATS JetStream, ~225,000/s in
//  bench/results/summary.md), so that every system keeps up and the
//  latencies compare at one load.
#define S_FANOUT_RATE       5000

typedef struct {
    double seconds;                     //  per publish and fanout case
    double raw_seconds;                 //  per raw case
    uint64_t log_events;
    uint64_t max_events;                //  per publish case
    double fanout_rate;                 //  the paced fanout, events/s; 0: none
    int sparse_reads;                   //  per sparse variant; the best is kept
    int run;
    bool quick;
    const char *csv;
    const char *systems;                //  comma-separated, NULL: all
    const char *parts;                  //  comma-separated, NULL: all
} s_config_t;

static FILE *s_csv;
static int s_run;
static bool s_failed;
static uint64_t s_nonce;
static atomic_uint_fast64_t s_counter;

//  ---------------------------------------------------------------------
//  Events

void
cmp_event_id (uint64_t counter, uint8_t id [16], char *hex)
{
    uint8_t bytes [16];
    bench_put_be64 (bytes, s_nonce);
    bench_put_be64 (bytes + 8, counter);
    if (id)
        memcpy (id, bytes, sizeof bytes);
    if (hex)
        for (int i = 0; i < 16; i++)
            snprintf (hex + 2 * i, 3, "%02x", bytes [i]);
}

uint64_t
cmp_next_counter (void)
{
    return atomic_fetch_add (&s_counter, 1);
}

int
cmp_topic (uint64_t index, uint64_t total, char *out, size_t size)
{
    uint64_t stride = total / CMP_SPARSE;
    if (stride > 0 && index % stride == stride / 2 && index / stride < CMP_SPARSE)
        return snprintf (out, size, "%s", CMP_SPARSE_TOPIC);
    return snprintf (out, size, "bench.t%d", (int) (index % BB_TOPICS));
}

void
cmp_payload (uint64_t counter, uint8_t *out, size_t payload, uint64_t stamp)
{
    size_t offset = (size_t) ((counter * 2654435761u) % (BB_POOL_BYTES - payload));
    memcpy (out, bb_pool + offset, payload);
    if (payload >= 16) {
        if (stamp == 0)
            stamp = bb_now_ns ();
        memcpy (out + payload - sizeof stamp, &stamp, sizeof stamp);
    }
}

uint64_t
cmp_payload_stamp (const void *data, size_t size)
{
    uint64_t stamp = 0;
    if (data && size >= 16)
        memcpy (&stamp, (const uint8_t *) data + size - sizeof stamp, sizeof stamp);
    return stamp;
}

//  ---------------------------------------------------------------------
//  CSV

//  One row; p50 < 0: no latency; p999 < 0: no p99.9.
static void
s_row (const char *system, const char *durability, const char *class_, const char *workload,
       const char *name, double value, const char *unit, double p50, double p99,
       double p999, uint64_t count, const char *note)
{
    char lat [96] = ",,";
    if (p50 >= 0) {
        if (p999 >= 0)
            snprintf (lat, sizeof lat, "%.4f,%.4f,%.4f", p50 * 1e3, p99 * 1e3, p999 * 1e3);
        else
            snprintf (lat, sizeof lat, "%.4f,%.4f,", p50 * 1e3, p99 * 1e3);
    }
    fprintf (s_csv, "%d,%s,%s,%s,%s,\"%s\",%.6g,%s,%s,%" PRIu64 ",\"%s\"\n", s_run, system,
             durability, class_, workload, name, value, unit, lat, count, note? note: "");
    fflush (s_csv);
    fprintf (stderr, "compare: %-7s %-9s %-9s %-36s %14.1f %s\n", system, durability,
             workload, name, value, unit);
}

static bool
s_listed (const char *list, const char *name)
{
    if (!list)
        return true;
    size_t len = strlen (name);
    for (const char *at = list; (at = strstr (at, name)); at += len)
        if ((at == list || at [-1] == ',') && (at [len] == 0 || at [len] == ','))
            return true;
    return false;
}

//  ---------------------------------------------------------------------
//  Raw limits

//  A raw RocksDB log of events envelope-sized values: iterate it all
//  (reading each value), then 1,000 Gets spread through it, warm.
static void
s_raw_log (const s_config_t *config)
{
    char path [PATH_MAX];
    bench_join (path, bb_base, "raw-log");
    bench_raw_t raw;
    if (bench_raw_open (&raw, path, false)) {
        s_failed = true;
        return;
    }
    size_t value = bb_envelope_size (100);
    for (uint64_t seq = 1; seq <= config->log_events && !bb_interrupted; seq += 1000)
        if (bench_raw_write (&raw, seq, 1000, value, bb_pool, BB_POOL_BYTES))
            break;
    double start = bench_now ();
    rocksdb_iterator_t *iter = rocksdb_create_iterator (raw.db, raw.read);
    uint64_t count = 0, bytes = 0;
    for (rocksdb_iter_seek_to_first (iter); rocksdb_iter_valid (iter); rocksdb_iter_next (iter)) {
        size_t len;
        const char *data = rocksdb_iter_value (iter, &len);
        bytes += len + (uint8_t) data [0];
        count++;
    }
    rocksdb_iter_destroy (iter);
    double elapsed = bench_now () - start;
    s_row ("raw", "-", "-", "catchup", "RocksDB iteration", (double) count / elapsed, "ev/s",
           -1, -1, -1, count, "iterator over envelope-sized values");
    for (int pass = 0; pass < 3; pass++) {
        start = bench_now ();
        uint64_t found = 0, stride = config->log_events / CMP_SPARSE;
        for (uint64_t i = 0; i < CMP_SPARSE; i++) {
            uint8_t key [8];
            bench_put_be64 (key, 1 + i * stride + stride / 2);
            size_t len;
            char *error = NULL;
            char *got = rocksdb_get (raw.db, raw.read, (const char *) key, sizeof key, &len, &error);
            found += got != NULL;
            rocksdb_free (got);
            rocksdb_free (error);
        }
        if (pass == 2)
            s_row ("raw", "-", "-", "sparse", "RocksDB 1,000 point Gets", (bench_now () - start) * 1e3,
                   "ms", -1, -1, -1, found, "warm, third pass");
    }
    bench_raw_close (&raw);
    bench_remove_tree (path);
}

static void
s_run_raw (const s_config_t *config)
{
    static const size_t payloads [2] = { 100, 1024 };
    for (int sync = 1; sync >= 0 && !bb_interrupted; sync--)
        for (int p = 0; p < 2 && !bb_interrupted; p++) {
            char path [PATH_MAX], name [64];
            bench_join (path, bb_base, "raw");
            uint64_t done;
            size_t value = bb_envelope_size (payloads [p]);
            double rate = bb_raw_rocksdb (path, sync, value, 1000, config->raw_seconds,
                                          config->max_events, &done);
            snprintf (name, sizeof name, "RocksDB batches of 1000, %zu B values", value);
            s_row ("raw", sync? "sync": "async", sync? "sync": "async", "publish", name, rate,
                   "ev/s", -1, -1, -1, done, p? "1 KiB events": "100 B events");
            if (rate < 0)
                s_failed = true;
        }
    static const int fans [3] = { 1, 4, 16 };
    for (int f = 0; f < 3 && !bb_interrupted; f++) {
        uint64_t sent, received;
        double rate = bb_raw_pubsub (fans [f], 100, config->raw_seconds, 50000000, &sent,
                                     &received);
        char name [64];
        snprintf (name, sizeof name, "ZeroMQ PUB/SUB, %d sub", fans [f]);
        s_row ("raw", "-", "-", "fanout", name, rate, "ev/s", -1, -1, -1, received, "100 B");
    }
    static const int clients [2] = { 1, 4 };
    for (int c = 0; c < 2 && !bb_interrupted; c++) {
        bb_samples_t latency;
        bb_samples_init (&latency, 0);
        double rate = bb_raw_reqrep (clients [c], 160, config->raw_seconds, 50000000, &latency);
        double p50, p99, p999;
        cmp_percentiles (&latency, &p50, &p99, &p999);
        char name [64];
        snprintf (name, sizeof name, "ZeroMQ DEALER/ROUTER echo, %d client", clients [c]);
        s_row ("raw", "-", "-", "reqrep", name, rate, "req/s", p50, p99, p999,
               (uint64_t) latency.count, "64 requests in flight per client");
        bb_samples_fini (&latency);
    }
    if (!bb_interrupted)
        s_raw_log (config);
}

//  ---------------------------------------------------------------------
//  The systems

static void
s_note_rss (const cmp_system_t *system, cmp_server_t *server, const char *what)
{
    char name [64];
    snprintf (name, sizeof name, "peak RSS, %s server", what);
    s_row (system->name, server->durability, "-", "resources", name,
           (double) server->peak_rss / (1024.0 * 1024.0), "MiB", -1, -1, -1, 0, "VmHWM");
}

static const char *
s_class (const cmp_system_t *system, const char *durability)
{
    for (int i = 0; system->durabilities [i]; i++)
        if (streq (system->durabilities [i], durability))
            return system->classes [i];
    return "-";
}

static void
s_run_publish (const s_config_t *config, const cmp_system_t *system)
{
    static const struct { size_t payload; int threads; } cases [] = {
        { 100, 1 }, { 100, 4 }, { 1024, 1 }, { 1024, 4 }
    };
    for (int d = 0; system->durabilities [d] && !bb_interrupted; d++) {
        const char *durability = system->durabilities [d];
        cmp_server_t server;
        memset (&server, 0, sizeof server);
        server.system = system->name;
        char tag [64];
        snprintf (tag, sizeof tag, "publish-%s", durability);
        if (system->start (&server, tag, durability)) {
            system->stop (&server);
            s_failed = true;
            continue;
        }
        for (size_t i = 0; i < sizeof cases / sizeof cases [0] && !bb_interrupted; i++) {
            cmp_pub_t result;
            double cpu = cmp_proc_cpu_seconds (server.pid);
            int rc = system->publish (&server, cases [i].threads, cases [i].payload,
                                      config->seconds, config->max_events, &result);
            cpu = cpu >= 0? cmp_proc_cpu_seconds (server.pid) - cpu: -1;
            char name [64];
            snprintf (name, sizeof name, "%s, %d pub", cases [i].payload == 100? "100 B": "1 KiB",
                      cases [i].threads);
            if (rc)
                s_failed = true;
            s_row (system->name, durability, s_class (system, durability), "publish", name,
                   rc? 0: result.rate, "ev/s", result.p50, result.p99, result.p999,
                   result.acked, result.errors? "errors: see problems": "");
            if (cpu >= 0 && result.acked > 0)
                s_row (system->name, durability, s_class (system, durability), "cpu", name,
                       cpu * 1e6 / (double) result.acked, "us/event", -1, -1, -1,
                       result.acked, "server CPU (all threads) per ACKed event");
            if (!system->publish_one || bb_interrupted)
                continue;
            //  The same case with one event per request, as NATS publishes
            cpu = cmp_proc_cpu_seconds (server.pid);
            rc = system->publish_one (&server, cases [i].threads, cases [i].payload,
                                      config->seconds, config->max_events, &result);
            cpu = cpu >= 0? cmp_proc_cpu_seconds (server.pid) - cpu: -1;
            if (rc)
                s_failed = true;
            s_row (system->name, durability, s_class (system, durability), "publish_one", name,
                   rc? 0: result.rate, "ev/s", result.p50, result.p99, result.p999,
                   result.acked, result.errors? "1 event per request; errors: see problems"
                                              : "1 event per request");
            if (cpu >= 0 && result.acked > 0)
                s_row (system->name, durability, s_class (system, durability), "cpu_one", name,
                       cpu * 1e6 / (double) result.acked, "us/event", -1, -1, -1,
                       result.acked, "server CPU (all threads) per ACKed event, 1 per request");
        }
        system->stop (&server);
        s_note_rss (system, &server, "publish");
    }
}

//  1, 4, 16 live readers on a fresh server: workload "fanout" with the
//  publisher as fast as its window allows (rate 0), "fanout_paced" at rate
//  events/s (its note starts "offered N ev/s", which report.py reads).
static void
s_run_fanout (const s_config_t *config, const cmp_system_t *system, double rate)
{
    const char *workload = rate > 0? "fanout_paced": "fanout";
    cmp_server_t server;
    memset (&server, 0, sizeof server);
    server.system = system->name;
    if (system->start (&server, rate > 0? "fanout-paced": "fanout", system->relaxed)) {
        system->stop (&server);
        s_failed = true;
        return;
    }
    static const int fans [3] = { 1, 4, 16 };
    for (int f = 0; f < 3 && !bb_interrupted; f++) {
        cmp_fan_t result;
        int rc = system->fanout (&server, fans [f], config->seconds, rate, &result);
        if (rc)
            s_failed = true;
        char name [32], offered [48] = "", note [160];
        snprintf (name, sizeof name, "%d sub", fans [f]);
        if (rate > 0)
            snprintf (offered, sizeof offered, "offered %.0f ev/s; ", rate);
        uint64_t expected = result.published * (uint64_t) fans [f];
        snprintf (note, sizeof note, "%s%" PRIu64 " published, %" PRIu64 " not delivered",
                  offered, result.published,
                  expected > result.delivered? expected - result.delivered: 0);
        s_row (system->name, server.durability, s_class (system, server.durability), workload,
               name, result.rate, "ev/s", result.p50, result.p99, result.p999,
               result.delivered, note);
        //  A paced publisher that fell behind its schedule (more than 5%
        //  short) means the system did not sustain the offered rate
        if (rate > 0 && !rc && (double) result.published < 0.95 * rate * config->seconds)
            bb_problem ("%s: paced fanout to %d published %" PRIu64 " of the %.0f offered",
                        system->name, fans [f], result.published, rate * config->seconds);
    }
    system->stop (&server);
    s_note_rss (system, &server, rate > 0? "paced fanout": "fanout");
}

static void
s_run_log (const s_config_t *config, const cmp_system_t *system)
{
    cmp_server_t server;
    memset (&server, 0, sizeof server);
    server.system = system->name;
    if (system->start (&server, "log", system->relaxed)) {
        system->stop (&server);
        s_failed = true;
        return;
    }
    const char *durability = server.durability;
    const char *class_ = s_class (system, durability);
    double rate = system->build (&server, config->log_events);
    s_row (system->name, durability, class_, "build", "log of 100 B events", rate, "ev/s",
           -1, -1, -1, config->log_events, "2 publishers");
    if (rate < 0)
        s_failed = true;
    //  Let the server write out what it buffers, then weigh its files
    zclock_sleep (2000);
    char data [PATH_MAX + 8];
    snprintf (data, sizeof data, "%s/data", server.dir);
    uint64_t bytes = bench_tree_size (data);
    s_row (system->name, durability, "-", "resources", "disk per event",
           (double) bytes / (double) config->log_events, "B/event", -1, -1, -1, bytes,
           "data dir while running, 2 s after the build");
    uint64_t count = 0;
    double catchup = system->catchup (&server, 600, &count);
    s_row (system->name, durability, class_, "catchup", "replay from the first event", catchup,
           "ev/s", -1, -1, -1, count, "");
    if (count != config->log_events)
        bb_problem ("%s: catch-up read %" PRIu64 " of %" PRIu64 " events", system->name,
                    count, config->log_events);
    for (int variant = 0; variant < 2 && !bb_interrupted; variant++) {
        if (!system->sparse_names [variant])
            continue;
        //  The best of three: the first is cold-ish (the server's caches).
        //  More with --sparse-reads, to profile the server while it reads.
        double best = -1;
        for (int pass = 0; pass < config->sparse_reads && !bb_interrupted; pass++) {
            double ms = system->sparse (&server, variant, 120, &count);
            if (count != CMP_SPARSE)
                bb_problem ("%s: sparse read (%s) got %" PRIu64 " of %d events", system->name,
                            system->sparse_names [variant], count, CMP_SPARSE);
            if (ms >= 0 && (best < 0 || ms < best))
                best = ms;
            fprintf (stderr, "compare: %s sparse read (%s), pass %d: %.2f ms\n", system->name,
                     system->sparse_names [variant], pass + 1, ms);
        }
        char note [32];
        snprintf (note, sizeof note, "best of %d", config->sparse_reads);
        s_row (system->name, durability, class_, "sparse", system->sparse_names [variant], best,
               "ms", -1, -1, -1, count, note);
    }
    //  Again after the reads, tens of seconds later in a full run: what
    //  flushes, compactions or an AOF rewrite have made of it by then
    bytes = bench_tree_size (data);
    s_row (system->name, durability, "-", "resources", "disk per event, at the end",
           (double) bytes / (double) config->log_events, "B/event", -1, -1, -1, bytes,
           "data dir while running, after catch-up and sparse reads");
    system->stop (&server);
    s_note_rss (system, &server, "log");
}

//  ---------------------------------------------------------------------
//  main

static void
s_on_signal (int signum)
{
    (void) signum;
    bb_interrupted = 1;
}

static void
s_usage (FILE *out)
{
    fprintf (out,
        "usage: compare [--quick] [--run N] [--csv FILE] [--seconds S] [--log-events N]\n"
        "               [--systems herald,nats,redis] [--parts raw,publish,fanout,log]\n"
        "               [--fanout-rate N] [--heraldd PATH] [--sparse-reads N]\n"
        "\n"
        "One run of the comparison (bench/compare/run.sh repeats it and makes the\n"
        "table and charts).  Starts heraldd, nats-server and redis-server on free\n"
        "127.0.0.1 ports with fresh data dirs, runs the workloads, stops them, and\n"
        "appends one CSV row per figure to FILE (default: stdout).\n"
        "\n"
        "  --quick          short: 1 s per case, a 100,000-event log\n"
        "  --seconds S      per publish and fanout case (default 5)\n"
        "  --log-events N   events in the catch-up/sparse log (default 1,000,000)\n"
        "  --run N          the run number written in each row (rotates the order\n"
        "                   of the systems)\n"
        "  --csv FILE       append the rows to FILE\n"
        "  --systems LIST   which of herald, nats, redis (default: all)\n"
        "  --parts LIST     which of raw, publish, fanout, log (default: all);\n"
        "                   fanout is both fanout cases, fanout_paced the paced one;\n"
        "                   publish runs Herald's cases twice: 100 events per\n"
        "                   PUBLISH, then 1 per PUBLISH as NATS sends them\n"
        "  --fanout-rate N  the paced fanout's offered rate, events/s published\n"
        "                   (default %d; 0: no paced fanout)\n"
        "  --heraldd PATH   the broker (default: $HERALD_BUILDDIR/broker/heraldd, or\n"
        "                   broker/heraldd above this program)\n"
        "  --sparse-reads N sparse reads per variant, the best kept (default 3; more\n"
        "                   to profile the servers while they read)\n", S_FANOUT_RATE);
}

static int
s_parse (int argc, char *argv [], s_config_t *config)
{
    static const struct option longopts [] = {
        { "quick", no_argument, NULL, 'q' },
        { "run", required_argument, NULL, 'r' },
        { "csv", required_argument, NULL, 'c' },
        { "seconds", required_argument, NULL, 's' },
        { "log-events", required_argument, NULL, 'l' },
        { "systems", required_argument, NULL, 'y' },
        { "parts", required_argument, NULL, 'p' },
        { "heraldd", required_argument, NULL, 'b' },
        { "fanout-rate", required_argument, NULL, 'f' },
        { "sparse-reads", required_argument, NULL, 'n' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 }
    };
    double seconds = -1;
    long long events = -1;
    int option;
    while ((option = getopt_long (argc, argv, "qr:c:s:l:y:p:b:f:n:h", longopts, NULL)) != -1) {
        char *end = NULL;
        switch (option) {
            case 'q': config->quick = true; break;
            case 'r': config->run = atoi (optarg); break;
            case 'c': config->csv = optarg; break;
            case 's':
                seconds = strtod (optarg, &end);
                if (*end || !(seconds > 0 && seconds <= 600)) {
                    fprintf (stderr, "compare: --seconds wants 0 < S <= 600\n");
                    return -1;
                }
                break;
            case 'l':
                events = strtoll (optarg, &end, 10);
                if (*end || events < 10000 || events > 100000000) {
                    fprintf (stderr, "compare: --log-events wants 10000..10^8\n");
                    return -1;
                }
                break;
            case 'y': config->systems = optarg; break;
            case 'p': config->parts = optarg; break;
            case 'b': bb_heraldd = optarg; break;
            case 'f':
                config->fanout_rate = strtod (optarg, &end);
                if (*end || !(config->fanout_rate >= 0 && config->fanout_rate <= 1e6)) {
                    fprintf (stderr, "compare: --fanout-rate wants 0 <= N <= 1,000,000\n");
                    return -1;
                }
                break;
            case 'n':
                config->sparse_reads = (int) strtol (optarg, &end, 10);
                if (*end || config->sparse_reads < 1 || config->sparse_reads > 10000) {
                    fprintf (stderr, "compare: --sparse-reads wants 1..10000\n");
                    return -1;
                }
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
        config->seconds = 1;
        config->raw_seconds = 0.5;
        config->log_events = 100000;
        config->max_events = 5000000;
    }
    if (seconds > 0)
        config->seconds = config->raw_seconds = seconds;
    if (events > 0)
        config->log_events = (uint64_t) events;
    //  A whole number of CMP_SPARSE strides and of build batches
    config->log_events = (config->log_events + 999) / 1000 * 1000;
    return 0;
}

int
main (int argc, char *argv [])
{
    s_config_t config = {
        .seconds = 5,
        .raw_seconds = 3,
        .log_events = 1000000,
        .max_events = 100000000,
        .fanout_rate = S_FANOUT_RATE,
        .sparse_reads = 3,
        .run = 1
    };
    if (s_parse (argc, argv, &config))
        return 1;
    s_run = config.run;
    s_csv = stdout;
    if (config.csv && !(s_csv = fopen (config.csv, "a"))) {
        fprintf (stderr, "compare: %s: %s\n", config.csv, strerror (errno));
        return 1;
    }
    zsys_handler_set (NULL);
    signal (SIGINT, s_on_signal);
    signal (SIGTERM, s_on_signal);
    signal (SIGPIPE, SIG_IGN);
    if (bb_setup ("compare", "compare"))
        return 1;
    s_nonce = ((uint64_t) time (NULL) << 24) ^ ((uint64_t) getpid () << 4) ^ 0xC0;
    atomic_init (&s_counter, 0);
    fprintf (stderr, "compare: run %d in %s\n", config.run, bb_base);
    const cmp_system_t *all [3] = { &cmp_herald, &cmp_nats, &cmp_redis };
    const cmp_system_t *order [3];
    int systems = 0;
    for (int i = 0; i < 3; i++) {
        const cmp_system_t *system = all [(i + config.run - 1) % 3];
        if (s_listed (config.systems, system->name))
            order [systems++] = system;
    }
    double start = bench_now ();
    if (s_listed (config.parts, "raw"))
        s_run_raw (&config);
    if (s_listed (config.parts, "publish"))
        for (int i = 0; i < systems && !bb_interrupted; i++)
            s_run_publish (&config, order [i]);
    if (s_listed (config.parts, "fanout"))
        for (int i = 0; i < systems && !bb_interrupted; i++)
            s_run_fanout (&config, order [i], 0);
    if (config.fanout_rate > 0
    &&  (s_listed (config.parts, "fanout") || s_listed (config.parts, "fanout_paced")))
        for (int i = 0; i < systems && !bb_interrupted; i++)
            s_run_fanout (&config, order [i], config.fanout_rate);
    if (s_listed (config.parts, "log"))
        for (int i = 0; i < systems && !bb_interrupted; i++)
            s_run_log (&config, order [i]);
    char load [64];
    bench_loadavg (load, sizeof load);
    fprintf (stderr, "compare: run %d took %.0f s; load average at the end %s\n", config.run,
             bench_now () - start, load);
    if (*bb_problems)
        fprintf (stderr, "compare: problems seen:\n%s", bb_problems);
    //  Problems go to the CSV too, one row each, so the report can show them
    for (char *line = bb_problems, *next; line && *line; line = next) {
        next = strchr (line, '\n');
        if (next)
            *next++ = 0;
        for (char *c = line; *c; c++)
            if (*c == '"')
                *c = '\'';
        s_row ("-", "-", "-", "problem", line, 0, "-", -1, -1, -1, 0, "");
    }
    if (s_csv != stdout)
        fclose (s_csv);
    bench_remove_tree (bb_base);
    free (bb_pool);
    nats_Close ();
    zsys_shutdown ();
    return s_failed || bb_interrupted? 1: 0;
}
