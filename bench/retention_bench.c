/*  =========================================================================
    retention_bench - the store's disk use over a long run with retention

    Starts two heraldd (durability sync, the default) on free 127.0.0.1
    ports, each with a fresh data directory, and offers both the same
    steady load for --minutes: pipelined PUBLISHes of --event-bytes events
    over 1000 topics, paced to --rate events/s each.  One broker keeps
    everything (the default); the other runs a retention policy on the
    whole log (`--retention =AGE`, checked every --interval-ms), so it trims
    what is older than --age-s and reclaims the space in the background.

    Every --sample-s seconds it prints, for both, the head, the first seq
    still in the live log and the data directory's size on disk (the sum of
    its files' allocated blocks), and at the end each one's growth over the
    lowest and highest disk use in each half of the run and the growth from
    one half's peak to the other's, in MiB and in bytes per event appended
    (the write-ahead log makes disk use a sawtooth: RocksDB drops it once
    the memtables are flushed, at the latest when it reaches 256 MiB).  With retention on, the events' part is bounded by what AGE
    holds; what still grows is the dedup index, which keeps every trimmed
    id for ever (a retry of a trimmed event stays a duplicate): that slope
    is the figure to read.  It prints figures and never fails on them; exit
    1 only when a broker could not run.
    =========================================================================
*/

#include <getopt.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "bench_util.h"
#include "brokerutil.h"
#include "herald_uuid.h"

#define TOPICS          1000
#define BATCH           100
#define WINDOW          16
#define BROKERS         2

typedef struct {
    double minutes;
    double rate;                    //  events/s offered to each broker
    double age_s;
    double interval_ms;
    double event_bytes;
    double sample_s;
} s_config_t;

typedef struct {
    const char *name;
    bu_broker_t *broker;
    pthread_t thread;
    atomic_uint_fast64_t acked;
    atomic_uint_fast64_t refused;
} s_side_t;

static atomic_bool s_stop;
static s_config_t s_config;

static void
s_on_signal (int signum)
{
    (void) signum;
    atomic_store (&s_stop, true);
}

//  ---------------------------------------------------------------------
//  The load: one pipelined publisher per broker

static void
s_pack_batch (msgpack_sbuffer *sbuf, uint64_t rid, uint64_t *counter, const uint8_t *payload,
              size_t payload_len)
{
    msgpack_packer pk;
    msgpack_packer_init (&pk, sbuf, msgpack_sbuffer_write);
    msgpack_pack_map (&pk, 2);
    bu_pack_str (&pk, "rid");
    msgpack_pack_uint64 (&pk, rid);
    bu_pack_str (&pk, "events");
    msgpack_pack_array (&pk, BATCH);
    for (int i = 0; i < BATCH; i++) {
        uint64_t n = (*counter)++;
        char topic [32];
        snprintf (topic, sizeof topic, "load.%" PRIu64, n % TOPICS);
        uint8_t id [16];
        herald_uuid_v7 (id);
        msgpack_pack_map (&pk, 3);
        bu_pack_str (&pk, "id");
        msgpack_pack_bin_with_body (&pk, id, sizeof id);
        bu_pack_str (&pk, "topic");
        bu_pack_str (&pk, topic);
        bu_pack_str (&pk, "data");
        msgpack_pack_bin_with_body (&pk, payload, payload_len);
    }
}

static void *
s_publisher (void *arg)
{
    s_side_t *side = (s_side_t *) arg;
    zsock_t *dealer = bu_dealer_new (side->broker->api);
    msgpack_sbuffer sbuf;
    msgpack_sbuffer_init (&sbuf);
    //  Varying bytes that compress about as much as JSON does
    size_t payload_len = (size_t) s_config.event_bytes;
    uint8_t *payload = (uint8_t *) malloc (payload_len);
    for (size_t i = 0; i < payload_len; i++)
        payload [i] = (uint8_t) ("{\"order\":1234,\"sku\":\"ab-77\",\"qty\":3}" [i % 36]
                                 ^ (rand () % 4 == 0? rand () & 0x1f: 0));
    uint64_t counter = 0, rid = 0, answered = 0;
    double start = bench_now ();
    double interval = BATCH / s_config.rate;
    while (!atomic_load (&s_stop)) {
        while (rid - answered < WINDOW && start + (double) rid * interval <= bench_now ()) {
            sbuf.size = 0;
            s_pack_batch (&sbuf, rid, &counter, payload, payload_len);
            bu_send_sbuf (dealer, "PUBLISH", &sbuf);
            rid++;
        }
        bu_reply_t reply = { 0 };
        if (bu_recv_reply (dealer, &reply, 5) == 0) {
            answered++;
            if (reply.type == HERALD_MSG_ACK)
                atomic_fetch_add (&side->acked, reply.body.ack.count);
            else
                atomic_fetch_add (&side->refused, 1);
        }
        bu_reply_fini (&reply);
    }
    free (payload);
    msgpack_sbuffer_destroy (&sbuf);
    zsock_destroy (&dealer);
    return NULL;
}

//  ---------------------------------------------------------------------
//  Sampling

static uint64_t
s_extra (const bu_reply_t *reply, const char *name)
{
    for (size_t i = 0; i < reply->body.status.extra_count; i++)
        if (bu_str_eq (reply->body.status.extra_keys [i], name))
            return reply->body.status.extra_values [i];
    return 0;
}

typedef struct {
    double t;
    uint64_t head [BROKERS];
    uint64_t bytes [BROKERS];
} s_sample_t;

static void
s_usage (FILE *out)
{
    fprintf (out,
        "usage: retention_bench [--minutes M] [--rate N] [--age-s S] [--interval-ms N]\n"
        "                       [--event-bytes N] [--sample-s S]\n"
        "\n"
        "Runs two heraldd under the same steady load, one keeping everything and one\n"
        "with a retention policy on the whole log, and prints their disk use.\n"
        "\n"
        "  --minutes M        how long (default 20)\n"
        "  --rate N           events/s offered to each broker (default 5000)\n"
        "  --age-s S          the retention broker keeps S seconds of events (default 120)\n"
        "  --interval-ms N    its --retention-interval-ms (default 5000)\n"
        "  --event-bytes N    bytes of data per event (default 500)\n"
        "  --sample-s S       seconds between samples (default 30)\n"
        "  --help             this text\n");
}

static int
s_parse (int argc, char **argv, s_config_t *config)
{
    static const struct option options [] = {
        { "minutes", required_argument, NULL, 0 },
        { "rate", required_argument, NULL, 0 },
        { "age-s", required_argument, NULL, 0 },
        { "interval-ms", required_argument, NULL, 0 },
        { "event-bytes", required_argument, NULL, 0 },
        { "sample-s", required_argument, NULL, 0 },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 }
    };
    double *fields [] = { &config->minutes, &config->rate, &config->age_s,
                          &config->interval_ms, &config->event_bytes, &config->sample_s };
    int option, index = 0;
    while ((option = getopt_long (argc, argv, "", options, &index)) != -1) {
        if (option == 'h') {
            s_usage (stdout);
            exit (0);
        }
        if (option != 0) {
            s_usage (stderr);
            return -1;
        }
        char *end = NULL;
        double value = strtod (optarg, &end);
        if (end == optarg || *end != '\0' || !(value > 0)) {
            fprintf (stderr, "retention_bench: --%s wants a number above 0, not '%s'\n",
                     options [index].name, optarg);
            return -1;
        }
        *fields [index] = value;
    }
    if (optind < argc) {
        fprintf (stderr, "retention_bench: unexpected argument '%s'\n", argv [optind]);
        return -1;
    }
    return 0;
}

//  Disk use in each half of the run (RocksDB's write-ahead log makes it a
//  sawtooth: the WAL is dropped when the memtables are flushed, at most
//  256 MiB of it), and the growth from the first half's peak to the
//  second's: with retention on, the events' part is bounded and what is
//  left is the dedup index's share.
static void
s_halves (const s_sample_t *samples, size_t count, int side, const char *name)
{
    double low [2] = { 1e300, 1e300 }, high [2] = { 0, 0 };
    uint64_t head_at_high [2] = { 0, 0 };
    for (size_t i = 0; i < count; i++) {
        int half = i >= count / 2;
        double bytes = (double) samples [i].bytes [side];
        if (bytes < low [half])
            low [half] = bytes;
        if (bytes > high [half]) {
            high [half] = bytes;
            head_at_high [half] = samples [i].head [side];
        }
    }
    double events = (double) head_at_high [1] - (double) head_at_high [0];
    printf ("%-10s disk: first half %.1f-%.1f MiB, second half %.1f-%.1f MiB; peak to peak "
            "%+.1f MiB over %.0f events appended (%+.1f bytes per event); at the end "
            "%.1f MiB for %" PRIu64 " events\n", name, low [0] / 1048576, high [0] / 1048576,
            low [1] / 1048576, high [1] / 1048576, (high [1] - high [0]) / 1048576, events,
            events > 0? (high [1] - high [0]) / events: 0,
            (double) samples [count - 1].bytes [side] / 1048576, samples [count - 1].head [side]);
}

int
main (int argc, char **argv)
{
    s_config = (s_config_t) { .minutes = 20, .rate = 5000, .age_s = 120, .interval_ms = 5000,
                              .event_bytes = 500, .sample_s = 30 };
    if (s_parse (argc, argv, &s_config))
        return 64;
    zsys_init ();
    zsys_handler_set (NULL);
    signal (SIGINT, s_on_signal);
    signal (SIGTERM, s_on_signal);

    char retention [64], interval [32];
    snprintf (retention, sizeof retention, "=%.0fs", s_config.age_s);
    snprintf (interval, sizeof interval, "%.0f", s_config.interval_ms);
    const char *with [] = { "--retention", retention, "--retention-interval-ms", interval,
                            NULL };
    s_side_t sides [BROKERS] = { { .name = "keep-all" }, { .name = "retention" } };
    sides [0].broker = bu_broker_new ("retention-keep", NULL);
    sides [1].broker = bu_broker_new ("retention-on", with);
    for (int i = 0; i < BROKERS; i++)
        if (!sides [i].broker || bu_broker_start (sides [i].broker, 20000)) {
            fprintf (stderr, "retention_bench: heraldd (%s) did not start\n", sides [i].name);
            if (sides [i].broker) {
                char log [2048];
                bu_broker_log_tail (sides [i].broker, log, sizeof log);
                fputs (log, stderr);
            }
            for (int j = 0; j < BROKERS; j++)
                bu_broker_destroy (&sides [j].broker);
            return 1;
        }
    for (int i = 0; i < BROKERS; i++)
        pthread_create (&sides [i].thread, NULL, s_publisher, &sides [i]);

    printf ("retention_bench: %g min, %.0f events/s of %.0f data bytes to each broker; "
            "retention on the whole log: %.0f s, checked every %.0f ms\n",
            s_config.minutes, s_config.rate, s_config.event_bytes, s_config.age_s,
            s_config.interval_ms);
    printf ("%6s | %11s %9s | %11s %11s %9s %9s %11s\n", "t s", "keep head", "MiB",
            "ret. head", "first", "MiB", "pending", "reclaimed");
    zsock_t *probe [BROKERS];
    for (int i = 0; i < BROKERS; i++)
        probe [i] = bu_dealer_new (sides [i].broker->api);
    enum { MAX_SAMPLES = 10000 };
    static s_sample_t samples [MAX_SAMPLES];
    size_t count = 0;
    uint64_t rid = 1;
    double start = bench_now (), end = start + s_config.minutes * 60;
    while (!atomic_load (&s_stop) && bench_now () < end && count < MAX_SAMPLES) {
        double due = start + (double) (count + 1) * s_config.sample_s;
        while (!atomic_load (&s_stop) && bench_now () < due)
            zclock_sleep (100);
        s_sample_t *sample = &samples [count];
        sample->t = bench_now () - start;
        bu_reply_t replies [BROKERS] = { { 0 } };
        bool answered = true;
        for (int i = 0; i < BROKERS; i++) {
            if (bu_status (probe [i], rid++, &replies [i], 10000) != 0) {
                fprintf (stderr, "retention_bench: heraldd (%s) stopped answering\n",
                         sides [i].name);
                answered = false;
            }
            sample->head [i] = replies [i].body.status.head;
            sample->bytes [i] = bench_tree_disk (sides [i].broker->data_dir);
        }
        if (answered)
            printf ("%6.0f | %11" PRIu64 " %9.1f | %11" PRIu64 " %11" PRIu64 " %9.1f %9"
                    PRIu64 " %11" PRIu64 "\n", sample->t, sample->head [0],
                    (double) sample->bytes [0] / 1048576, sample->head [1],
                    s_extra (&replies [1], "first"), (double) sample->bytes [1] / 1048576,
                    s_extra (&replies [1], "reclaim_pending"),
                    s_extra (&replies [1], "reclaimed_events"));
        fflush (stdout);
        for (int i = 0; i < BROKERS; i++)
            bu_reply_fini (&replies [i]);
        if (!answered)
            break;
        count++;
    }
    atomic_store (&s_stop, true);
    for (int i = 0; i < BROKERS; i++) {
        pthread_join (sides [i].thread, NULL);
        zsock_destroy (&probe [i]);
    }
    printf ("\n");
    for (int i = 0; i < BROKERS; i++)
        printf ("%-10s %" PRIu64 " events ACKed, %" PRIu64 " requests refused\n",
                sides [i].name, (uint64_t) sides [i].acked, (uint64_t) sides [i].refused);
    if (count >= 4)
        for (int i = 0; i < BROKERS; i++)
            s_halves (samples, count, i, sides [i].name);
    for (int i = 0; i < BROKERS; i++) {
        bu_broker_stop (sides [i].broker, 60000);
        bu_broker_destroy (&sides [i].broker);
    }
    return 0;
}
