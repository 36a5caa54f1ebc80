/*  =========================================================================
    broker_bench - heraldd over the wire, beside the raw limits beneath it

    Starts the real broker (fork/exec broker/heraldd on 127.0.0.1, ports
    chosen at run time, a fresh data directory under a temp dir), drives it
    as any HWP/1 client would (czmq sockets, MessagePack packed by hand),
    stops it (SIGTERM, a bounded wait, SIGKILL as the last resort), and
    prints figures beside what this machine's ZeroMQ and RocksDB do alone
    (broker_bench_raw.c).  It never asserts on a figure: the exit code is 1
    only when a part could not run.  Every loop is bounded in count and time.

    DESIGN

    Publishers are threads, each with its own DEALER, keeping BB_WINDOW
    PUBLISH requests in flight and matching ACKs by rid (replies to one
    client come in request order, so a slot per rid % BB_WINDOW is enough).
    ACK latency is from the moment a request was due (its send time, or its
    slot in the schedule when rate-limited, so a stalled broker cannot hide
    its stall) to the moment its ACK arrived.  Fanout payloads carry the
    send time in their last 8 bytes, which are the envelope's last 8 bytes
    because herald_event_encode writes data last: a subscriber reads them
    without decoding.  Replay reads a log built for it, with credit
    1,000,000 refilled as events arrive, and counts envelope frames.
    =========================================================================
*/

#include "broker_bench.h"
#include "herald.h"
#include "herald_event.h"

#include <czmq.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct {
    double seconds;                     //  per case
    uint64_t replay_events;
    bool quick;
    uint64_t max_events;                //  per publish case
    uint64_t max_msgs;                  //  per raw ZeroMQ case
    const char *only;                   //  NULL, or the one part to run
} s_config_t;

//  One line of the table.  raw < 0: no raw figure; p50 < 0: no latency.
typedef enum { S_NONE, S_RATIO, S_RATE, S_P99 } s_target_t;

typedef struct {
    char name [48];
    double herald;
    double raw;
    double p50, p99;                    //  seconds
    s_target_t target;
    double goal;                        //  %, events/s or seconds
} s_row_t;

#define S_MAX_ROWS  32
static s_row_t s_rows [S_MAX_ROWS];
static size_t s_row_count;
static bool s_failed;

static void
s_row (const char *name, double herald, double raw, double p50, double p99,
       s_target_t target, double goal)
{
    if (s_row_count == S_MAX_ROWS)
        return;
    s_row_t *row = &s_rows [s_row_count++];
    snprintf (row->name, sizeof row->name, "%s", name);
    row->herald = herald;
    row->raw = raw;
    row->p50 = p50;
    row->p99 = p99;
    row->target = target;
    row->goal = goal;
}

static void
s_on_signal (int signum)
{
    (void) signum;
    bb_interrupted = 1;
}

//  CPU time of the whole machine from /proc/stat, in ticks: all of it and
//  the part stolen by the hypervisor (a VM's neighbours), so the report can
//  say how much of the run the bench did not have the CPUs it thought.
static void
s_cpu_ticks (uint64_t *total, uint64_t *steal)
{
    *total = *steal = 0;
    FILE *file = fopen ("/proc/stat", "r");
    if (!file)
        return;
    unsigned long long v [8] = { 0 };
    if (fscanf (file, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v [0], &v [1], &v [2],
                &v [3], &v [4], &v [5], &v [6], &v [7]) == 8) {
        for (int i = 0; i < 8; i++)
            *total += v [i];
        *steal = v [7];
    }
    fclose (file);
}

static void
s_print_machine (void)
{
    char cpu [256], memory [64], fs [512], version [64], load [64], probe [PATH_MAX];
    bench_proc_field ("/proc/cpuinfo", "model name", cpu, sizeof cpu);
    bench_proc_field ("/proc/meminfo", "MemTotal", memory, sizeof memory);
    bench_filesystem (bb_base, fs, sizeof fs);
    bench_join (probe, bb_base, "version-probe");
    bench_raw_t raw;
    if (bench_raw_open (&raw, probe, false) == 0)
        bench_raw_close (&raw);
    bench_rocksdb_version (probe, version, sizeof version);
    bench_remove_tree (probe);
    bench_loadavg (load, sizeof load);
    int major, minor, patch;
    zmq_version (&major, &minor, &patch);
    printf ("Herald broker benchmark (herald %s)\n", herald_version ());
    printf ("  cpus:       %ld online, %s\n", sysconf (_SC_NPROCESSORS_ONLN), cpu);
    printf ("  memory:     %s\n", memory);
    printf ("  load avg:   %s (above 0 means other work shares the machine)\n", load);
    printf ("  libzmq:     %d.%d.%d, czmq %d.%d.%d; rocksdb %s\n", major, minor, patch,
            CZMQ_VERSION_MAJOR, CZMQ_VERSION_MINOR, CZMQ_VERSION_PATCH, version);
    printf ("  data dir:   %s (%s)\n", bb_base, fs);
    printf ("  clients:    threads in this process, TCP on 127.0.0.1, %d requests in flight"
            " per DEALER\n\n", BB_WINDOW);
}

//  ---------------------------------------------------------------------
//  The parts

static double s_raw_sync [2], s_raw_async [2];      //  [0] 100 B, [1] 1 KiB
static double s_raw_pubsub [3], s_raw_reqrep [2], s_raw_stream = -1;

//  Raw RocksDB batches at one durability, for both payload sizes: run
//  just before Herald's publish cases at that durability, so that the two
//  see the same machine (a VM's steal and its disk's neighbours vary).
static void
s_run_raw_rocksdb (const s_config_t *config, bool sync)
{
    static const size_t payloads [2] = { 100, 1024 };
    for (int p = 0; p < 2 && !bb_interrupted; p++) {
        char path [PATH_MAX];
        bench_join (path, bb_base, "raw");
        uint64_t done;
        size_t value = bb_envelope_size (payloads [p]);
        double rate = bb_raw_rocksdb (path, sync, value, 1000, config->seconds,
                                      config->max_events, &done);
        (sync? s_raw_sync: s_raw_async) [p] = rate;
        char a [32], b [32];
        printf ("  raw RocksDB, batches of 1000 x %4zu B values, %-6s %12s puts/s"
                " (%s puts)\n", value, sync? "sync:": "async:",
                bench_count (a, sizeof a, rate), bench_count (b, sizeof b, (double) done));
        if (rate < 0)
            s_failed = true;
    }
}

static void
s_run_raw (const s_config_t *config)
{
    static const int fans [3] = { 1, 4, 16 };
    for (int f = 0; f < 3 && !bb_interrupted; f++) {
        uint64_t sent, received;
        s_raw_pubsub [f] = bb_raw_pubsub (fans [f], 100, config->seconds, config->max_msgs,
                                         &sent, &received);
        char a [32], b [32], c [32];
        printf ("  raw PUB/SUB, 100 B, %2d subscribers:     %12s msgs/s delivered"
                " (%s sent, %s received)\n", fans [f],
                bench_count (a, sizeof a, s_raw_pubsub [f]),
                bench_count (b, sizeof b, (double) sent), bench_count (c, sizeof c, (double) received));
        if (s_raw_pubsub [f] < 0)
            s_failed = true;
    }
    static const int clients [2] = { 1, 4 };
    for (int c = 0; c < 2 && !bb_interrupted; c++) {
        bb_samples_t latency;
        bb_samples_init (&latency, 0);
        s_raw_reqrep [c] = bb_raw_reqrep (clients [c], 160, config->seconds,
                                          config->max_msgs, &latency);
        char a [32];
        printf ("  raw DEALER/ROUTER echo, %d client%s:      %12s req/s"
                " (round trip p50 %.3f ms, p99 %.3f ms)\n", clients [c],
                clients [c] > 1? "s": " ", bench_count (a, sizeof a, s_raw_reqrep [c]),
                bb_samples_percentile (&latency, 50) * 1e3,
                bb_samples_percentile (&latency, 99) * 1e3);
        bb_samples_fini (&latency);
        if (s_raw_reqrep [c] < 0)
            s_failed = true;
    }
    if (bb_interrupted)
        return;
    //  173 B: the stored envelope of a 100 B event, what the replay sends
    s_raw_stream = bb_raw_stream (173, config->replay_events, 600);
    char a [32], b [32];
    printf ("  raw ROUTER->DEALER stream, 173 B frames: %12s frames/s (%s frames, 256 per"
            " message)\n", bench_count (a, sizeof a, s_raw_stream),
            bench_count (b, sizeof b, (double) config->replay_events));
    if (s_raw_stream < 0)
        s_failed = true;
}

//  Publishing against one broker of each durability, then the same load
//  rate-limited to half of the peak just measured.
static void
s_run_publish (const s_config_t *config, bool sync)
{
    s_run_raw_rocksdb (config, sync);
    bb_broker_t broker;
    const char *durability = sync? "sync": "async";
    if (bb_broker_start (&broker, sync? "publish-sync": "publish-async", durability)) {
        s_failed = true;
        return;
    }
    static const struct { size_t payload, batch; int threads; } cases [] = {
        { 100, 100, 1 }, { 100, 100, 4 }, { 100, 1, 1 },
        { 1024, 100, 1 }, { 1024, 100, 4 }, { 1024, 1, 1 }
    };
    double peak = 0;
    for (size_t i = 0; i < sizeof cases / sizeof cases [0] && !bb_interrupted; i++) {
        bb_result_t result;
        int p = cases [i].payload == 100? 0: 1;
        if (bb_publish (broker.proc->api, cases [i].threads, cases [i].batch,
                        cases [i].payload, 0, config->seconds, config->max_events, &result))
            s_failed = true;
        char name [48], a [32];
        snprintf (name, sizeof name, "publish %s x%zu, %d pub, %s",
                  p? "1 KiB": "100 B", cases [i].batch, cases [i].threads, durability);
        if (cases [i].batch > 1)
            s_row (name, result.rate, (sync? s_raw_sync: s_raw_async) [p], result.p50,
                   result.p99, S_RATIO, sync? 60: 70);
        else
            s_row (name, result.rate, s_raw_reqrep [0], result.p50, result.p99, S_NONE, 0);
        if (p == 0 && cases [i].batch > 1 && result.rate > peak)
            peak = result.rate;
        fprintf (stderr, "broker_bench: %-34s %12s ev/s\n", name,
                 bench_count (a, sizeof a, result.rate));
    }
    if (peak > 0 && !bb_interrupted) {
        bb_result_t result;
        if (bb_publish (broker.proc->api, 4, 100, 100, peak / 2, config->seconds,
                        config->max_events, &result))
            s_failed = true;
        char name [48];
        snprintf (name, sizeof name, "50%% of peak, 100 B x100, 4 pub, %s", durability);
        s_row (name, result.rate, peak, result.p50, result.p99, S_P99, 0.002);
    }
    bb_broker_stop (&broker);
}

static void
s_run_fanout (const s_config_t *config)
{
    bb_broker_t broker;
    if (bb_broker_start (&broker, "fanout", "async")) {
        s_failed = true;
        return;
    }
    static const int fans [3] = { 1, 4, 16 };
    for (int f = 0; f < 3 && !bb_interrupted; f++) {
        bb_fan_result_t result;
        if (bb_fanout (&broker, fans [f], config->seconds, 0, &result))
            s_failed = true;
        char name [48];
        snprintf (name, sizeof name, "fanout 100 B to %d SUB, async", fans [f]);
        s_row (name, result.rate, s_raw_pubsub [f], result.p50, result.p99, S_RATIO, 70);
        char a [32], b [32];
        fprintf (stderr, "broker_bench: %-34s %12s ev/s delivered (%s published)\n", name,
                 bench_count (a, sizeof a, result.rate),
                 bench_count (b, sizeof b, (double) result.published));
    }
    bb_broker_stop (&broker);
}

static void
s_run_replay (const s_config_t *config)
{
    bb_broker_t broker;
    if (bb_broker_start (&broker, "replay", "async")) {
        s_failed = true;
        return;
    }
    //  Build the log: two publishers, batches of 100 x 100 B, async
    bb_result_t build;
    double start = bench_now ();
    bb_publish (broker.proc->api, 2, 100, 100, 0, 3600, config->replay_events, &build);
    char a [32], b [32];
    fprintf (stderr, "broker_bench: replay log built: %s events in %.1f s (%s ev/s)\n",
             bench_count (a, sizeof a, (double) build.acked), bench_now () - start,
             bench_count (b, sizeof b, build.rate));
    double best = -1;
    uint64_t events = 0;
    for (int run = 0; run < (config->quick? 1: 2) && !bb_interrupted; run++) {
        double rate = bb_replay (&broker, 1000 + (uint64_t) run, 600, &events);
        if (events != build.acked)
            bb_problem ("REPLAY sent %" PRIu64 " events of a %" PRIu64 "-event log",
                        events, build.acked);
        fprintf (stderr, "broker_bench: replay run %d: %s ev/s\n", run + 1,
                 bench_count (a, sizeof a, rate));
        if (rate > best)
            best = rate;
    }
    //  A client that reads as it goes must never meet --client-max-bytes
    zsock_t *admin = bu_dealer_new (broker.proc->api);
    bu_reply_t status = { 0 };
    if (admin && bu_status (admin, 1, &status, 5000) == 0)
        for (size_t i = 0; i < status.body.status.extra_count; i++)
            if (bu_str_eq (status.body.status.extra_keys [i], "stream_byte_waits"))
                fprintf (stderr, "broker_bench: replay: the streams waited on "
                         "client-max-bytes %" PRIu64 " times\n",
                         status.body.status.extra_values [i]);
    bu_reply_fini (&status);
    zsock_destroy (&admin);
    if (best < 0)
        s_failed = true;
    char name [48];
    snprintf (name, sizeof name, "replay %s events, credit 1M", bench_count (a, sizeof a,
              (double) events));
    s_row (name, best, s_raw_stream, -1, -1, S_RATE, 1.2e6);
    bb_broker_stop (&broker);
}

//  ---------------------------------------------------------------------
//  The table

static void
s_print_table (void)
{
    printf ("%-38s %13s %13s %7s %8s %8s  %s\n", "case", "Herald", "raw", "H/raw",
            "p50 ms", "p99 ms", "target");
    for (size_t i = 0; i < s_row_count; i++) {
        s_row_t *row = &s_rows [i];
        char herald [32], raw [32], ratio [16], p50 [16], p99 [16], target [48];
        bench_count (herald, sizeof herald, row->herald);
        snprintf (raw, sizeof raw, "-");
        snprintf (ratio, sizeof ratio, "-");
        if (row->raw > 0) {
            bench_count (raw, sizeof raw, row->raw);
            snprintf (ratio, sizeof ratio, "%.1f%%", 100 * row->herald / row->raw);
        }
        snprintf (p50, sizeof p50, "-");
        snprintf (p99, sizeof p99, "-");
        if (row->p50 >= 0) {
            snprintf (p50, sizeof p50, "%.3f", row->p50 * 1e3);
            snprintf (p99, sizeof p99, "%.3f", row->p99 * 1e3);
        }
        bool met = false;
        switch (row->target) {
            case S_RATIO:
                met = row->raw > 0 && 100 * row->herald / row->raw >= row->goal;
                snprintf (target, sizeof target, ">= %.0f%% of raw: %s", row->goal,
                          row->raw > 0? (met? "met": "MISSED"): "no raw figure");
                break;
            case S_RATE:
                met = row->herald >= row->goal;
                snprintf (target, sizeof target, ">= 1.2M ev/s: %s", met? "met": "MISSED");
                break;
            case S_P99:
                met = row->p99 > 0 && row->p99 <= row->goal;
                snprintf (target, sizeof target, "p99 <= %.0f ms: %s", row->goal * 1e3,
                          met? "met": "MISSED");
                break;
            default:
                snprintf (target, sizeof target, "-");
        }
        printf ("%-38s %13s %13s %7s %8s %8s  %s\n", row->name, herald, raw, ratio, p50, p99,
                target);
    }
    printf ("\n  Figures are events/s (publish: ACKed; fanout: delivered, all subscribers\n"
            "  together; replay: received).  raw: publish x100 rows, RocksDB batches of 1000\n"
            "  puts of envelope-sized values at the same durability; publish x1 rows, the\n"
            "  1-client DEALER/ROUTER echo (requests/s); 50%% rows, the peak they were run at;\n"
            "  fanout, raw PUB/SUB with as many subscribers.  Latency: publish, request due\n"
            "  to ACK; fanout, publisher's send to delivery.\n");
}

//  ---------------------------------------------------------------------
//  main

static void
s_usage (FILE *out)
{
    fprintf (out,
        "usage: broker_bench [--quick] [--seconds S] [--replay-events N] [--heraldd PATH]\n"
        "                    [--only raw|publish|fanout|replay]\n"
        "\n"
        "Runs broker/heraldd on free 127.0.0.1 ports with a fresh temp data dir and\n"
        "measures publish throughput and ACK latency, fanout and replay beside raw\n"
        "ZeroMQ and RocksDB limits measured in the same run.  Prints figures; never\n"
        "fails on a timing (exit 1 only when a part could not run).\n"
        "\n"
        "  --quick            smoke run: 0.2 s per case, a 20,000-event replay log\n"
        "  --seconds S        time budget per case (default 3)\n"
        "  --replay-events N  events in the replay log (default 1,000,000)\n"
        "  --heraldd PATH     the broker binary (default: $HERALD_BUILDDIR/broker/heraldd\n"
        "                     or ../broker/heraldd beside this program)\n"
        "  --only PART        run one part (raw figures of other parts print as -)\n"
        "  --help             this text\n");
}

static int
s_parse (int argc, char *argv [], s_config_t *config)
{
    static const struct option longopts [] = {
        { "quick", no_argument, NULL, 'q' },
        { "seconds", required_argument, NULL, 's' },
        { "replay-events", required_argument, NULL, 'r' },
        { "heraldd", required_argument, NULL, 'b' },
        { "only", required_argument, NULL, 'o' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 }
    };
    double seconds = -1;
    long long events = -1;
    int option;
    while ((option = getopt_long (argc, argv, "qs:r:b:o:h", longopts, NULL)) != -1) {
        char *end = NULL;
        switch (option) {
            case 'q': config->quick = true; break;
            case 's':
                seconds = strtod (optarg, &end);
                if (*end || !(seconds > 0 && seconds <= 3600)) {
                    fprintf (stderr, "broker_bench: --seconds wants 0 < S <= 3600\n");
                    return -1;
                }
                break;
            case 'r':
                events = strtoll (optarg, &end, 10);
                if (*end || events < 1000 || events > 1000000000) {
                    fprintf (stderr, "broker_bench: --replay-events wants 1000..10^9\n");
                    return -1;
                }
                break;
            case 'b': bb_heraldd = optarg; break;
            case 'o':
                if (strcmp (optarg, "raw") && strcmp (optarg, "publish")
                &&  strcmp (optarg, "fanout") && strcmp (optarg, "replay")) {
                    fprintf (stderr, "broker_bench: --only wants raw, publish, fanout or replay\n");
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
        config->seconds = 0.2;
        config->replay_events = 20000;
        config->max_events = 2000000;
        config->max_msgs = 5000000;
    }
    if (seconds > 0)
        config->seconds = seconds;
    if (events > 0)
        config->replay_events = (uint64_t) events;
    return 0;
}

int
main (int argc, char *argv [])
{
    s_config_t config = {
        .seconds = 3,
        .replay_events = 1000000,
        .max_events = 100000000,
        .max_msgs = 500000000
    };
    if (s_parse (argc, argv, &config))
        return 1;
    setvbuf (stdout, NULL, _IOLBF, 0);
    //  czmq would install its own handlers; ours stop every loop instead
    zsys_handler_set (NULL);
    signal (SIGINT, s_on_signal);
    signal (SIGTERM, s_on_signal);
    signal (SIGPIPE, SIG_IGN);
    if (bb_setup ("broker_bench", "broker-bench"))
        return 1;
    double start = bench_now ();
    uint64_t total_before, steal_before;
    s_cpu_ticks (&total_before, &steal_before);
    s_print_machine ();
    printf ("Raw limits (%.1f s per case; RocksDB measured just before Herald's publish"
            " cases\n  at the same durability)\n", config.seconds);
    const char *only = config.only;
    if (!only || streq (only, "raw"))
        s_run_raw (&config);
    if (!bb_interrupted && (!only || streq (only, "publish")))
        s_run_publish (&config, true);
    if (!bb_interrupted && (!only || streq (only, "publish")))
        s_run_publish (&config, false);
    printf ("\n");
    if (!bb_interrupted && (!only || streq (only, "fanout")))
        s_run_fanout (&config);
    if (!bb_interrupted && (!only || streq (only, "replay")))
        s_run_replay (&config);
    printf ("Herald beside the raw limits%s\n", bb_interrupted? " (INTERRUPTED: partial)": "");
    s_print_table ();
    char load [64];
    bench_loadavg (load, sizeof load);
    uint64_t total_after, steal_after;
    s_cpu_ticks (&total_after, &steal_after);
    double stolen = total_after > total_before
                  ? 100.0 * (double) (steal_after - steal_before)
                          / (double) (total_after - total_before): 0;
    printf ("\n  load avg at the end: %s; CPU stolen by the hypervisor during the run:"
            " %.1f%%;\n  run took %.0f s\n", load, stolen, bench_now () - start);
    if (*bb_problems)
        printf ("\nBroker problems seen:\n%s", bb_problems);
    bench_remove_tree (bb_base);
    free (bb_pool);
    zsys_shutdown ();
    return s_failed || bb_interrupted? 1: 0;
}
