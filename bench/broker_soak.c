/*  =========================================================================
    broker_soak - heraldd's memory under a long mixed load

    Starts broker/heraldd (durability sync, the default) on free 127.0.0.1
    ports with a fresh data directory and runs, for --minutes, everything a
    fleet of well- and badly-behaved clients does at once:

      publishers    2 pipelined DEALERs, 100 events per PUBLISH, 100 B and
                    1 KiB events over 500 topics, paced to --rate events/s
                    in all; one request in 200 is invalid (refused)
      subscribers   2 that keep up; 1 that reads 1,000 messages/s and so
                    falls behind the PUB high-water mark; 1 that never reads
      replayers     1 that replays from a random seq to the head, refilling
                    credit; 1 that opens a REPLAY every 2 s and never grants
                    more credit (expires after --stream-idle-ms); 1 that
                    opens a REPLAY and vanishes mid-stream
      readers       1 that READs a random topic to its end, again and again
      churn         a new connection every 50 ms: STATUS, a garbage frame,
                    HELLO, gone

    Every --sample-s seconds it prints the broker's resident set (VmRSS of
    /proc/PID/status) beside STATUS figures (RocksDB's memtables, block
    cache and table readers in MiB among them), and at the end the RSS
    growth over the second half of the run.  It prints figures and never
    fails on them; exit 1 only when the broker could not run.
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
#include "brokerutil.h"
#include "herald_uuid.h"

#define TOPICS          500
#define BATCH           100
#define WINDOW          16
#define BAD_EVERY       200

typedef struct {
    double minutes;
    double rate;
    double sample_s;
    int stream_idle_ms;
    const char *heraldd;
} s_config_t;

static atomic_bool s_stop;
static const char *s_api;
static const char *s_fanout;
static double s_rate_each;

//  What the clients did, for the summary line
static atomic_uint_fast64_t s_acked, s_refused, s_received, s_replayed, s_read,
                            s_connections;

static double
s_now (void)
{
    struct timespec now;
    clock_gettime (CLOCK_MONOTONIC, &now);
    return (double) now.tv_sec + (double) now.tv_nsec / 1e9;
}

static void
s_on_signal (int signum)
{
    (void) signum;
    atomic_store (&s_stop, true);
}

//  The broker's head, from a STATUS on sock; 0 when it does not answer.
static uint64_t
s_head (zsock_t *sock, uint64_t rid)
{
    bu_reply_t reply = { 0 };
    uint64_t head = 0;
    if (bu_status (sock, rid, &reply, 2000) == 0)
        head = reply.body.status.head;
    bu_reply_fini (&reply);
    return head;
}

//  ---------------------------------------------------------------------
//  Publishers

//  Pack a PUBLISH of BATCH events into sbuf; bad: one event has a '$'
//  topic, which the broker must refuse without writing anything.
static void
s_pack_batch (msgpack_sbuffer *sbuf, uint64_t rid, uint64_t *counter, bool bad)
{
    static const uint8_t payload [1024];
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
        snprintf (topic, sizeof topic, bad && i == BATCH / 2? "$soak": "soak.%" PRIu64,
                  n % TOPICS);
        uint8_t id [16];
        herald_uuid_v7 (id);
        msgpack_pack_map (&pk, 3);
        bu_pack_str (&pk, "id");
        msgpack_pack_bin_with_body (&pk, id, sizeof id);
        bu_pack_str (&pk, "topic");
        bu_pack_str (&pk, topic);
        bu_pack_str (&pk, "data");
        msgpack_pack_bin_with_body (&pk, payload, n % 4 == 0? 1024: 100);
    }
}

static void *
s_publisher (void *arg)
{
    (void) arg;
    zsock_t *dealer = bu_dealer_new (s_api);
    msgpack_sbuffer sbuf;
    msgpack_sbuffer_init (&sbuf);
    uint64_t counter = 0, rid = 0, answered = 0;
    double start = s_now ();
    double interval = BATCH / s_rate_each;
    while (!atomic_load (&s_stop)) {
        //  Send what the schedule says is due, within the window
        while (rid - answered < WINDOW && start + (double) rid * interval <= s_now ()) {
            sbuf.size = 0;
            s_pack_batch (&sbuf, rid, &counter, rid % BAD_EVERY == BAD_EVERY - 1);
            bu_send_sbuf (dealer, "PUBLISH", &sbuf);
            rid++;
        }
        bu_reply_t reply = { 0 };
        if (bu_recv_reply (dealer, &reply, 5) == 0) {
            answered++;
            if (reply.type == HERALD_MSG_ACK)
                atomic_fetch_add (&s_acked, reply.body.ack.count);
            else
                atomic_fetch_add (&s_refused, 1);
        }
        bu_reply_fini (&reply);
    }
    msgpack_sbuffer_destroy (&sbuf);
    zsock_destroy (&dealer);
    return NULL;
}

//  ---------------------------------------------------------------------
//  Subscribers: arg is the most messages to read per second (0: all)

static void *
s_subscriber (void *arg)
{
    long per_second = (long) (intptr_t) arg;
    const char *all [] = { "", NULL };
    zsock_t *sub = bu_sub_new (s_fanout, all);
    double window = s_now ();
    long in_window = 0;
    while (!atomic_load (&s_stop)) {
        if (per_second && in_window >= per_second) {
            if (s_now () - window < 1.0) {
                zclock_sleep (5);
                continue;
            }
            window = s_now ();
            in_window = 0;
        }
        zmsg_t *msg = bu_recv (sub, 100);
        if (msg) {
            atomic_fetch_add (&s_received, 1);
            in_window++;
            zmsg_destroy (&msg);
        }
    }
    zsock_destroy (&sub);
    return NULL;
}

static void *
s_deaf_subscriber (void *arg)
{
    (void) arg;
    const char *all [] = { "", NULL };
    zsock_t *sub = bu_sub_new (s_fanout, all);
    while (!atomic_load (&s_stop))
        zclock_sleep (100);
    zsock_destroy (&sub);
    return NULL;
}

//  ---------------------------------------------------------------------
//  Streams

//  Read one stream (REPLAY or READ, already requested with rid and credit)
//  to its END, granting credit back as events arrive.  Returns events.
static uint64_t
s_drain_stream (zsock_t *dealer, uint64_t rid, uint64_t credit)
{
    msgpack_sbuffer sbuf;
    msgpack_sbuffer_init (&sbuf);
    uint64_t events = 0, spent = 0;
    while (!atomic_load (&s_stop)) {
        bu_reply_t reply = { 0 };
        if (bu_recv_reply (dealer, &reply, 10000) != 0) {
            bu_reply_fini (&reply);
            break;
        }
        bool more = reply.type == HERALD_MSG_EVENTS;
        events += reply.envelope_count;
        spent += reply.envelope_count;
        bu_reply_fini (&reply);
        if (!more)
            break;
        if (spent >= credit / 2) {
            bu_pack_credit (&sbuf, rid, spent);
            bu_send_sbuf (dealer, "CREDIT", &sbuf);
            spent = 0;
        }
    }
    msgpack_sbuffer_destroy (&sbuf);
    return events;
}

static void *
s_replayer (void *arg)
{
    (void) arg;
    zsock_t *dealer = bu_dealer_new (s_api);
    msgpack_sbuffer sbuf;
    msgpack_sbuffer_init (&sbuf);
    uint64_t rid = 1;
    unsigned seed = 7;
    while (!atomic_load (&s_stop)) {
        uint64_t head = s_head (dealer, rid++);
        bu_replay_t replay = { .has_from = true, .has_credit = true, .credit = 5000 };
        replay.from = head? 1 + (uint64_t) rand_r (&seed) % head: 1;
        bu_pack_replay (&sbuf, rid, &replay);
        bu_send_sbuf (dealer, "REPLAY", &sbuf);
        atomic_fetch_add (&s_replayed, s_drain_stream (dealer, rid, replay.credit));
        rid++;
    }
    msgpack_sbuffer_destroy (&sbuf);
    zsock_destroy (&dealer);
    return NULL;
}

//  Streams that misbehave: one that never grants more credit (the broker
//  ends it as expired) and one whose client disappears mid-stream.
static void *
s_bad_replayer (void *arg)
{
    (void) arg;
    zsock_t *stalled = bu_dealer_new (s_api);
    msgpack_sbuffer sbuf;
    msgpack_sbuffer_init (&sbuf);
    uint64_t rid = 1;
    while (!atomic_load (&s_stop)) {
        bu_replay_t replay = { .has_from = true, .from = 1, .has_credit = true, .credit = 100 };
        bu_pack_replay (&sbuf, rid++, &replay);
        bu_send_sbuf (stalled, "REPLAY", &sbuf);
        zsock_t *vanishing = bu_dealer_new (s_api);
        replay.credit = 100000;
        bu_pack_replay (&sbuf, 1, &replay);
        bu_send_sbuf (vanishing, "REPLAY", &sbuf);
        zmsg_t *first = bu_recv (vanishing, 2000);
        zmsg_destroy (&first);
        zsock_destroy (&vanishing);
        //  Read (and drop) what the stalled streams send, and their ENDs
        for (int i = 0; i < 40 && !atomic_load (&s_stop); i++) {
            zmsg_t *msg = bu_recv (stalled, 50);
            zmsg_destroy (&msg);
        }
    }
    msgpack_sbuffer_destroy (&sbuf);
    zsock_destroy (&stalled);
    return NULL;
}

static void *
s_reader (void *arg)
{
    (void) arg;
    zsock_t *dealer = bu_dealer_new (s_api);
    msgpack_sbuffer sbuf;
    msgpack_sbuffer_init (&sbuf);
    uint64_t rid = 1;
    unsigned seed = 11;
    while (!atomic_load (&s_stop)) {
        char topic [32];
        snprintf (topic, sizeof topic, "soak.%d", rand_r (&seed) % TOPICS);
        bu_pack_read (&sbuf, rid, topic);
        bu_send_sbuf (dealer, "READ", &sbuf);
        atomic_fetch_add (&s_read, s_drain_stream (dealer, rid, 1000));
        rid++;
        zclock_sleep (20);
    }
    msgpack_sbuffer_destroy (&sbuf);
    zsock_destroy (&dealer);
    return NULL;
}

static void *
s_churn (void *arg)
{
    (void) arg;
    msgpack_sbuffer sbuf;
    msgpack_sbuffer_init (&sbuf);
    while (!atomic_load (&s_stop)) {
        zsock_t *dealer = bu_dealer_new (s_api);
        bu_reply_t reply = { 0 };
        bu_status (dealer, 1, &reply, 2000);
        bu_reply_fini (&reply);
        bu_send (dealer, "PUBLISH", "\xc1\xc1\xc1", 3);
        bu_pack_hello (&sbuf, 2, 1, "soak-churn");
        bu_send_sbuf (dealer, "HELLO", &sbuf);
        zmsg_t *msg = bu_recv (dealer, 100);
        zmsg_destroy (&msg);
        zsock_destroy (&dealer);
        atomic_fetch_add (&s_connections, 1);
        zclock_sleep (50);
    }
    msgpack_sbuffer_destroy (&sbuf);
    return NULL;
}

//  ---------------------------------------------------------------------
//  Sampling

//  VmRSS of pid in KiB, or -1.
static long
s_rss_kib (pid_t pid)
{
    char path [64], line [256];
    snprintf (path, sizeof path, "/proc/%d/status", (int) pid);
    FILE *file = fopen (path, "r");
    if (!file)
        return -1;
    long kib = -1;
    while (fgets (line, sizeof line, file))
        if (sscanf (line, "VmRSS: %ld kB", &kib) == 1)
            break;
    fclose (file);
    return kib;
}

//  A STATUS extra figure by name, or 0.
static uint64_t
s_extra (const bu_reply_t *reply, const char *name)
{
    for (size_t i = 0; i < reply->body.status.extra_count; i++)
        if (bu_str_eq (reply->body.status.extra_keys [i], name))
            return reply->body.status.extra_values [i];
    return 0;
}

static void
s_usage (FILE *out)
{
    fprintf (out,
        "usage: broker_soak [--minutes M] [--rate N] [--sample-s S] [--stream-idle-ms N]\n"
        "                   [--heraldd PATH]\n"
        "\n"
        "Runs broker/heraldd under a mixed load of publishers, keeping-up, slow and\n"
        "deaf subscribers, replays, reads, stalled and vanishing streams and\n"
        "connection churn, and prints the broker's resident memory every S seconds.\n"
        "\n"
        "  --minutes M          how long (default 10)\n"
        "  --rate N             events/s the publishers offer in all (default 20000)\n"
        "  --sample-s S         seconds between samples (default 10)\n"
        "  --stream-idle-ms N   the broker's --stream-idle-ms (default 5000)\n"
        "  --heraldd PATH       the broker binary (default: $HERALD_BUILDDIR/broker/heraldd\n"
        "                       or ../broker/heraldd beside this program)\n"
        "  --help               this text\n");
}

static int
s_parse (int argc, char **argv, s_config_t *config)
{
    static const struct option options [] = {
        { "minutes", required_argument, NULL, 'm' },
        { "rate", required_argument, NULL, 'r' },
        { "sample-s", required_argument, NULL, 's' },
        { "stream-idle-ms", required_argument, NULL, 'i' },
        { "heraldd", required_argument, NULL, 'b' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 }
    };
    int option;
    while ((option = getopt_long (argc, argv, "", options, NULL)) != -1) {
        char *end = NULL;
        double value = optarg? strtod (optarg, &end): 0;
        bool number = optarg && end != optarg && *end == '\0' && value > 0;
        switch (option) {
            case 'm': config->minutes = value; break;
            case 'r': config->rate = value; break;
            case 's': config->sample_s = value; break;
            case 'i': config->stream_idle_ms = (int) value; break;
            case 'b': config->heraldd = optarg; number = true; break;
            case 'h': s_usage (stdout); exit (0);
            default: s_usage (stderr); return -1;
        }
        if (!number) {
            fprintf (stderr, "broker_soak: --%s wants a number above 0, not '%s'\n",
                     options [option == 'm'? 0: option == 'r'? 1: option == 's'? 2: 3].name,
                     optarg);
            return -1;
        }
    }
    if (optind < argc) {
        fprintf (stderr, "broker_soak: unexpected argument '%s'\n", argv [optind]);
        return -1;
    }
    return 0;
}

int
main (int argc, char **argv)
{
    s_config_t config = { .minutes = 10, .rate = 20000, .sample_s = 10,
                          .stream_idle_ms = 5000 };
    if (s_parse (argc, argv, &config))
        return 64;
    zsys_init ();
    zsys_handler_set (NULL);
    signal (SIGINT, s_on_signal);
    signal (SIGTERM, s_on_signal);

    char idle [32];
    snprintf (idle, sizeof idle, "%d", config.stream_idle_ms);
    const char *extra [] = { "--stream-idle-ms", idle, NULL };
    bu_broker_t *broker = config.heraldd
        ? bu_broker_new_in ("/tmp", "herald-soak", config.heraldd, extra)
        : bu_broker_new ("soak", extra);
    if (!broker || bu_broker_start (broker, 10000)) {
        fprintf (stderr, "broker_soak: heraldd did not start%s\n",
                 broker? " (see its log below)": "");
        if (broker) {
            char log [2048];
            bu_broker_log_tail (broker, log, sizeof log);
            fputs (log, stderr);
        }
        bu_broker_destroy (&broker);
        return 1;
    }
    s_api = broker->api;
    s_fanout = broker->fanout;
    s_rate_each = config.rate / 2;

    struct { void *(*fn) (void *); intptr_t arg; } workers [] = {
        { s_publisher, 0 }, { s_publisher, 1 },
        { s_subscriber, 0 }, { s_subscriber, 0 }, { s_subscriber, 1000 },
        { s_deaf_subscriber, 0 }, { s_replayer, 0 }, { s_bad_replayer, 0 },
        { s_reader, 0 }, { s_churn, 0 }
    };
    enum { WORKERS = sizeof workers / sizeof workers [0] };
    pthread_t threads [WORKERS];
    for (int i = 0; i < WORKERS; i++)
        pthread_create (&threads [i], NULL, workers [i].fn, (void *) workers [i].arg);

    printf ("broker_soak: heraldd pid %d, %g min, %.0f events/s offered, sample every %g s\n",
            (int) broker->pid, config.minutes, config.rate, config.sample_s);
    printf ("%6s %8s %8s %8s %8s %11s %7s %7s %9s %9s %11s %11s\n", "t s", "rss MiB",
            "memtab", "cache", "tables", "head", "queued", "streams", "refused", "dropped",
            "delivered", "replayed");
    zsock_t *probe = bu_dealer_new (s_api);
    double start = s_now (), end = start + config.minutes * 60;
    enum { MAX_SAMPLES = 100000 };
    static double sample_t [MAX_SAMPLES];
    static long sample_rss [MAX_SAMPLES];
    size_t samples = 0;
    uint64_t rid = 1;
    while (!atomic_load (&s_stop) && s_now () < end && samples < MAX_SAMPLES) {
        double due = start + (double) (samples + 1) * config.sample_s;
        while (!atomic_load (&s_stop) && s_now () < due)
            zclock_sleep (100);
        long rss = s_rss_kib (broker->pid);
        bu_reply_t reply = { 0 };
        if (rss < 0 || bu_status (probe, rid++, &reply, 5000) != 0) {
            fprintf (stderr, "broker_soak: the broker stopped answering\n");
            bu_reply_fini (&reply);
            break;
        }
        sample_t [samples] = s_now () - start;
        sample_rss [samples] = rss;
        printf ("%6.0f %8.1f %8.1f %8.1f %8.1f %11" PRIu64 " %7" PRIu64 " %7" PRIu64
                " %9" PRIu64 " %9" PRIu64 " %11" PRIu64 " %11" PRIu64 "\n",
                sample_t [samples], (double) rss / 1024,
                (double) s_extra (&reply, "memtable_bytes") / 1048576,
                (double) s_extra (&reply, "block_cache_bytes") / 1048576,
                (double) s_extra (&reply, "table_readers_bytes") / 1048576,
                reply.body.status.head, s_extra (&reply, "queued"), s_extra (&reply, "streams"),
                s_extra (&reply, "refused"), s_extra (&reply, "dropped"),
                (uint64_t) atomic_load (&s_received), (uint64_t) atomic_load (&s_replayed));
        fflush (stdout);
        bu_reply_fini (&reply);
        samples++;
    }
    atomic_store (&s_stop, true);
    for (int i = 0; i < WORKERS; i++)
        pthread_join (threads [i], NULL);
    zsock_destroy (&probe);

    long max_rss = 0;
    for (size_t i = 0; i < samples; i++)
        if (sample_rss [i] > max_rss)
            max_rss = sample_rss [i];
    printf ("\nclients: %" PRIu64 " events ACKed, %" PRIu64 " requests refused, %" PRIu64
            " delivered to subscribers, %" PRIu64 " replayed, %" PRIu64 " read, %" PRIu64
            " connections\n", (uint64_t) s_acked, (uint64_t) s_refused, (uint64_t) s_received,
            (uint64_t) s_replayed, (uint64_t) s_read, (uint64_t) s_connections);
    if (samples >= 2) {
        size_t half = samples / 2;
        printf ("rss: %.1f MiB at %.0f s (half-way), %.1f MiB at the end (%.0f s), "
                "%.1f MiB at most; growth over the second half %+.1f MiB\n",
                (double) sample_rss [half] / 1024, sample_t [half],
                (double) sample_rss [samples - 1] / 1024, sample_t [samples - 1],
                (double) max_rss / 1024,
                (double) (sample_rss [samples - 1] - sample_rss [half]) / 1024);
    }
    int stopped = bu_broker_stop (broker, 30000);
    printf ("heraldd %s\n", stopped == 0? "stopped on SIGTERM": "had to be killed");
    bu_broker_destroy (&broker);
    return 0;
}
