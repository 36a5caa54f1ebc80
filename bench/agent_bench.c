/*  =========================================================================
    agent_bench - libherald's agent beside a raw SUB and a raw REPLAY

    Runs broker/heraldd (durability async, so the broker's disk is not what
    is measured) on free 127.0.0.1 ports and measures, in one run:

      live      one publisher sends 100 B events in batches of 100 as fast
                as the broker ACKs them, for --seconds; an agent subscribed
                to "bench." (handler on its delivery thread) and a raw SUB
                thread on the same fanout receive the same stream.  Events/s
                delivered to the handler beside events/s received by the raw
                SUB, and publish-to-handler latency beside publish-to-SUB.
      catch-up  a backlog of --backlog events, then a fresh agent subscribed
                from the beginning: events/s until its handler has seen
                them all, beside a raw REPLAY client draining the same log.
      publish   --publishes events through herald_agent_publish_async (the
                outbox, batching, pipelining) until flushed, beside a raw
                DEALER pipelining PUBLISH batches of 100; and the latency of
                herald_agent_publish (synchronous, one at a time).

    The payload's last 8 bytes are the send time (CLOCK_MONOTONIC ns), as in
    broker_bench.  Prints figures and never fails on them; exit 1 only when
    a part could not run.
    =========================================================================
*/

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "broker_bench.h"
#include "herald.h"

typedef struct {
    double seconds;
    uint64_t backlog;
    uint64_t publishes;
} s_config_t;

static bool s_failed;

static void
s_on_signal (int signum)
{
    (void) signum;
    bb_interrupted = 1;
}

//  What one receiver (the agent's handler or the raw SUB) saw
typedef struct {
    atomic_uint_fast64_t count;         //  "bench." events, warm-up excluded
    atomic_bool warm;                   //  it has seen a warm-up event
    double first, last;                 //  bench_now () of the first and last event
    bb_samples_t latency;
    uint64_t stride;
} s_receiver_t;

static void
s_receiver_init (s_receiver_t *self)
{
    memset (self, 0, sizeof *self);
    atomic_init (&self->count, 0);
    atomic_init (&self->warm, false);
    bb_samples_init (&self->latency, BB_MAX_SAMPLES);
    self->stride = 1;
}

//  Count one event whose payload (data, len) ends with its send time.
static void
s_receiver_take (s_receiver_t *self, const char *topic, size_t topic_len,
                 const uint8_t *data, size_t len)
{
    if (topic_len >= 10 && memcmp (topic, "bench.warm", 10) == 0) {
        atomic_store (&self->warm, true);
        return;
    }
    double now = bench_now ();
    uint64_t count = atomic_fetch_add (&self->count, 1);
    if (count == 0)
        self->first = now;
    self->last = now;
    if (len >= 8 && count % self->stride == 0) {
        uint64_t stamp, now_ns = bb_now_ns ();
        memcpy (&stamp, data + len - 8, 8);
        if (now_ns > stamp)
            bb_samples_add (&self->latency, (double) (now_ns - stamp) / 1e9);
    }
}

static int
s_handler (const herald_delivery_t *event, void *arg)
{
    s_receiver_take ((s_receiver_t *) arg, event->topic, event->topic_len,
                     (const uint8_t *) event->data, event->data_len);
    return HERALD_OK;
}

//  The raw SUB: the envelope ends with data, whose last 8 bytes are the
//  send time, so no decoding is needed.
typedef struct {
    const char *endpoint;
    s_receiver_t *receiver;
    atomic_bool *stop;
} s_raw_sub_t;

static void *
s_raw_sub (void *args)
{
    s_raw_sub_t *self = (s_raw_sub_t *) args;
    //  The high-water mark before connecting: a connection takes the
    //  options the socket had when it was made
    zsock_t *sub = zsock_new (ZMQ_SUB);
    if (!sub)
        return NULL;
    zsock_set_rcvhwm (sub, 100000);
    zsock_set_rcvtimeo (sub, 50);
    zsock_set_subscribe (sub, "bench.");
    if (zsock_connect (sub, "%s", self->endpoint) != 0) {
        zsock_destroy (&sub);
        return NULL;
    }
    void *handle = zsock_resolve (sub);
    zmq_msg_t topic, envelope;
    zmq_msg_init (&topic);
    zmq_msg_init (&envelope);
    while (!atomic_load (self->stop)) {
        if (zmq_msg_recv (&topic, handle, 0) < 0 || !zmq_msg_more (&topic))
            continue;
        if (zmq_msg_recv (&envelope, handle, 0) < 0)
            continue;
        s_receiver_take (self->receiver, zmq_msg_data (&topic), zmq_msg_size (&topic),
                         zmq_msg_data (&envelope), zmq_msg_size (&envelope));
    }
    zmq_msg_close (&topic);
    zmq_msg_close (&envelope);
    zsock_destroy (&sub);
    return NULL;
}

//  A fresh agent on broker with its state under bb_base/name.  NULL after
//  printing why.
static herald_agent_t *
s_agent_new (const bb_broker_t *broker, const char *name)
{
    char dir [PATH_MAX];
    bench_join (dir, bb_base, name);
    herald_agent_options_t options;
    herald_agent_options_init (&options);
    options.api = broker->proc->api;
    options.fanout = broker->proc->fanout;
    options.state_dir = dir;
    herald_agent_t *agent = herald_agent_new (name, &options);
    if (!agent)
        fprintf (stderr, "agent_bench: cannot start an agent: %s\n", herald_agent_last_error ());
    return agent;
}

//  Publish one warm-up event on "bench.warm" with a raw DEALER.
static void
s_publish_warm (const char *api, zsock_t **dealer, uint64_t rid)
{
    if (!*dealer)
        *dealer = bu_dealer_new (api);
    bu_event_t event;
    bu_event_init (&event, "bench.warm", "warm");
    msgpack_sbuffer sbuf;
    msgpack_sbuffer_init (&sbuf);
    bu_pack_publish (&sbuf, rid, &event, 1);
    bu_send_sbuf (*dealer, "PUBLISH", &sbuf);
    msgpack_sbuffer_destroy (&sbuf);
    zmsg_t *reply = bu_recv (*dealer, 1000);
    zmsg_destroy (&reply);
}

static void
s_print_receiver (const char *name, s_receiver_t *self, double start)
{
    uint64_t count = atomic_load (&self->count);
    double elapsed = self->last - start;
    char rate [32];
    bench_count (rate, sizeof rate, elapsed > 0? (double) count / elapsed: 0);
    printf ("  %-24s %12" PRIu64 " events %12s ev/s   p50 %7.3f ms   p99 %7.3f ms\n",
            name, count, rate, bb_samples_percentile (&self->latency, 50) * 1e3,
            bb_samples_percentile (&self->latency, 99) * 1e3);
}

//  ---------------------------------------------------------------------
//  Live delivery

static void
s_run_live (const s_config_t *config)
{
    bb_broker_t broker;
    if (bb_broker_start (&broker, "live", "async")) {
        s_failed = true;
        return;
    }
    s_receiver_t agent_seen, raw_seen;
    s_receiver_init (&agent_seen);
    s_receiver_init (&raw_seen);
    atomic_bool stop;
    atomic_init (&stop, false);
    s_raw_sub_t raw = { broker.proc->fanout, &raw_seen, &stop };
    pthread_t thread;
    pthread_create (&thread, NULL, s_raw_sub, &raw);
    herald_agent_t *agent = s_agent_new (&broker, "live-agent");
    const char *prefixes [] = { "bench.", NULL };
    if (!agent
    ||  herald_agent_subscribe (agent, "live", prefixes,
                                (herald_start_t) { HERALD_START_NOW, 0 },
                                s_handler, &agent_seen) != HERALD_OK) {
        fprintf (stderr, "agent_bench: live: cannot subscribe: %s\n",
                 herald_agent_last_error ());
        s_failed = true;
    }
    //  Both receivers must be connected before the run: warm-up events
    //  until each has seen one (bounded: 10 s)
    zsock_t *dealer = NULL;
    double deadline = bench_now () + 10;
    uint64_t rid = 1;
    while (!s_failed && !bb_interrupted && bench_now () < deadline
       &&  !(atomic_load (&agent_seen.warm) && atomic_load (&raw_seen.warm))) {
        s_publish_warm (broker.proc->api, &dealer, rid++);
        zclock_sleep (20);
    }
    zsock_destroy (&dealer);
    if (!s_failed && !(atomic_load (&agent_seen.warm) && atomic_load (&raw_seen.warm))) {
        fprintf (stderr, "agent_bench: live: the receivers did not connect within 10 s\n");
        s_failed = true;
    }
    if (!s_failed && !bb_interrupted) {
        bb_result_t published;
        double start = bench_now ();
        bb_publish (broker.proc->api, 1, 100, 100, 0, config->seconds, 100000000, &published);
        //  Let both drain: until neither has moved for 1 s (at most 30 s)
        uint64_t before = UINT64_MAX;
        double settle = bench_now () + 30;
        while (!bb_interrupted && bench_now () < settle) {
            uint64_t now = atomic_load (&agent_seen.count) + atomic_load (&raw_seen.count);
            if (now == before)
                break;
            before = now;
            zclock_sleep (1000);
        }
        printf ("live: 1 publisher, 100 B x 100 per PUBLISH, %.1f s: %" PRIu64
                " events ACKed (%.0f ev/s)\n", config->seconds, published.acked,
                published.rate);
        s_print_receiver ("raw SUB", &raw_seen, start);
        s_print_receiver ("agent handler", &agent_seen, start);
        uint64_t raw_count = atomic_load (&raw_seen.count);
        uint64_t agent_count = atomic_load (&agent_seen.count);
        double raw_rate = raw_seen.last > start? raw_count / (raw_seen.last - start): 0;
        double agent_rate = agent_seen.last > start? agent_count / (agent_seen.last - start): 0;
        printf ("  agent / raw SUB: %.1f %% of the rate (target >= 70 %%); "
                "%" PRIu64 " of %" PRIu64 " ACKed events reached the handler\n\n",
                raw_rate > 0? 100 * agent_rate / raw_rate: 0, agent_count, published.acked);
        if (agent_count != published.acked)
            bb_problem ("live: the handler saw %" PRIu64 " events, %" PRIu64 " were ACKed",
                        agent_count, published.acked);
    }
    herald_agent_destroy (&agent);
    atomic_store (&stop, true);
    pthread_join (thread, NULL);
    bb_samples_fini (&agent_seen.latency);
    bb_samples_fini (&raw_seen.latency);
    bb_broker_stop (&broker);
}

//  ---------------------------------------------------------------------
//  Catch-up from a backlog

static void
s_run_catchup (const s_config_t *config)
{
    bb_broker_t broker;
    if (bb_broker_start (&broker, "catchup", "async")) {
        s_failed = true;
        return;
    }
    bb_result_t build;
    bb_publish (broker.proc->api, 2, 100, 100, 0, 600, config->backlog, &build);
    uint64_t backlog = build.acked;
    fprintf (stderr, "agent_bench: catch-up backlog built: %" PRIu64 " events\n", backlog);
    uint64_t replayed = 0;
    double raw_rate = bb_replay (&broker, 1, 600, &replayed);

    s_receiver_t seen;
    s_receiver_init (&seen);
    seen.stride = 1000;
    double start = bench_now ();
    herald_agent_t *agent = s_agent_new (&broker, "catchup-agent");
    if (!agent
    ||  herald_agent_subscribe (agent, "catchup", NULL,
                                (herald_start_t) { HERALD_START_BEGINNING, 0 },
                                s_handler, &seen) != HERALD_OK) {
        fprintf (stderr, "agent_bench: catch-up: cannot subscribe: %s\n",
                 herald_agent_last_error ());
        s_failed = true;
    }
    double deadline = start + 600;
    while (agent && !bb_interrupted && bench_now () < deadline
       &&  atomic_load (&seen.count) < backlog)
        zclock_sleep (5);
    uint64_t count = atomic_load (&seen.count);
    double elapsed = seen.last - start;
    char a [32], b [32];
    printf ("catch-up: a backlog of %" PRIu64 " events of 100 B\n", backlog);
    printf ("  %-24s %12" PRIu64 " events %12s ev/s\n", "raw REPLAY client", replayed,
            bench_count (a, sizeof a, raw_rate));
    printf ("  %-24s %12" PRIu64 " events %12s ev/s   (target >= 1,000,000 ev/s;"
            " %.1f %% of raw REPLAY)\n\n", "agent, from the beginning", count,
            bench_count (b, sizeof b, elapsed > 0? count / elapsed: 0),
            raw_rate > 0 && elapsed > 0? 100 * (count / elapsed) / raw_rate: 0);
    if (count != backlog)
        bb_problem ("catch-up: the handler saw %" PRIu64 " of %" PRIu64 " events",
                    count, backlog);
    herald_agent_destroy (&agent);
    bb_samples_fini (&seen.latency);
    bb_broker_stop (&broker);
}

//  ---------------------------------------------------------------------
//  Readiness: a restarted subscriber, from its catch-up's END to live

static int
s_compare_u64 (const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *) a, y = *(const uint64_t *) b;
    return x < y? -1: x > y;
}

//  rounds times: a new agent on the same state (a restarted process)
//  subscribes, catches up the events published since, and goes live on an
//  idle broker (default heartbeat, 1 s); its status's live_wait_ms is the
//  wait for the first message on the SUB.  Rounds start at random phases
//  of the heartbeat.  With the fanout given, and learned from WELCOME.
static void
s_run_ready (const s_config_t *config)
{
    bb_broker_t broker;
    if (bb_broker_start (&broker, "ready", "async")) {
        s_failed = true;
        return;
    }
    bb_result_t build;
    bb_publish (broker.proc->api, 1, 100, 100, 0, 60, 1000, &build);
    int rounds = config->seconds < 1? 4: 10;
    printf ("readiness: a restarted subscriber on an idle broker (heartbeat 1 s), %d rounds "
            "each: its catch-up replay's END to live\n", rounds);
    for (int learn = 0; learn < 2 && !bb_interrupted; learn++) {
        uint64_t waits [16];
        int count = 0;
        for (int round = 0; round < rounds && !bb_interrupted; round++) {
            zclock_sleep ((int) (random () % 1000));
            char dir [PATH_MAX];
            bench_join (dir, bb_base, learn? "ready-learned": "ready-given");
            herald_agent_options_t options;
            herald_agent_options_init (&options);
            options.api = broker.proc->api;
            options.fanout = learn? NULL: broker.proc->fanout;
            options.state_dir = dir;
            herald_agent_t *agent = herald_agent_new ("ready", &options);
            s_receiver_t seen;
            s_receiver_init (&seen);
            herald_sub_status_t status = { 0 };
            if (agent && herald_agent_subscribe (agent, "ready", NULL,
                                                 (herald_start_t) { HERALD_START_BEGINNING, 0 },
                                                 s_handler, &seen) == HERALD_OK) {
                double deadline = bench_now () + 10;
                while (bench_now () < deadline && !bb_interrupted
                   &&  herald_agent_sub_status (agent, "ready", &status) == HERALD_OK
                   &&  status.state != HERALD_SUB_LIVE)
                    zclock_sleep (1);
            }
            if (status.state == HERALD_SUB_LIVE)
                waits [count++] = status.live_wait_ms;
            else
                bb_problem ("readiness: round %d did not go live within 10 s", round);
            herald_agent_destroy (&agent);
            bb_samples_fini (&seen.latency);
            zsock_t *dealer = NULL;             //  a few events for the next round
            s_publish_warm (broker.proc->api, &dealer, 1);
            zsock_destroy (&dealer);
        }
        if (count) {
            qsort (waits, count, sizeof waits [0], s_compare_u64);
            printf ("  %-24s min %5" PRIu64 " ms   median %5" PRIu64 " ms   max %5" PRIu64
                    " ms   (promise: up to one heartbeat, 1000 ms)\n",
                    learn? "fanout from WELCOME": "fanout given", waits [0],
                    waits [count / 2], waits [count - 1]);
        }
    }
    printf ("\n");
    bb_broker_stop (&broker);
}

//  ---------------------------------------------------------------------
//  Publishing through the agent

static void
s_published (const herald_publish_result_t *result, void *arg)
{
    atomic_uint_fast64_t *acked = (atomic_uint_fast64_t *) arg;
    if (result->err == HERALD_OK)
        atomic_fetch_add (acked, 1);
}

static void
s_run_publish (const s_config_t *config)
{
    bb_broker_t broker;
    if (bb_broker_start (&broker, "publish", "async")) {
        s_failed = true;
        return;
    }
    bb_result_t raw;
    bb_publish (broker.proc->api, 1, 100, 100, 0, config->seconds, 100000000, &raw);

    herald_agent_t *agent = s_agent_new (&broker, "publish-agent");
    atomic_uint_fast64_t acked;
    atomic_init (&acked, 0);
    uint8_t data [100];
    memcpy (data, bb_pool, sizeof data);
    herald_outgoing_t event = { .topic = "bench.agent", .data = data, .data_len = sizeof data };
    double start = bench_now ();
    uint64_t queued = 0;
    while (agent && !bb_interrupted && queued < config->publishes) {
        if (herald_agent_publish_async (agent, &event, s_published, &acked, NULL) != HERALD_OK) {
            fprintf (stderr, "agent_bench: publish_async: %s\n", herald_agent_last_error ());
            break;
        }
        queued++;
    }
    if (agent && herald_agent_flush (agent, 600000) != HERALD_OK)
        bb_problem ("publish: the outbox did not empty within 600 s");
    double async_rate = (double) atomic_load (&acked) / (bench_now () - start);

    bb_samples_t latency;
    bb_samples_init (&latency, 100000);
    double sync_start = bench_now ();
    while (agent && !bb_interrupted && bench_now () - sync_start < config->seconds) {
        double before = bench_now ();
        herald_publish_result_t result;
        if (herald_agent_publish (agent, &event, &result, 0) != HERALD_OK)
            break;
        bb_samples_add (&latency, bench_now () - before);
    }
    char a [32], b [32];
    printf ("publish: 100 B events\n");
    printf ("  %-34s %12s ev/s   ACK p50 %7.3f ms   p99 %7.3f ms\n",
            "raw DEALER, 100 per PUBLISH, 64 deep", bench_count (a, sizeof a, raw.rate),
            raw.p50 * 1e3, raw.p99 * 1e3);
    printf ("  %-34s %12s ev/s   (%" PRIu64 " events; %.1f %% of raw)\n",
            "agent, publish_async + flush", bench_count (b, sizeof b, async_rate),
            (uint64_t) atomic_load (&acked), raw.rate > 0? 100 * async_rate / raw.rate: 0);
    printf ("  %-34s %12zu calls          p50 %7.3f ms   p99 %7.3f ms\n\n",
            "agent, publish (sync, one at a time)", latency.count,
            bb_samples_percentile (&latency, 50) * 1e3,
            bb_samples_percentile (&latency, 99) * 1e3);
    bb_samples_fini (&latency);
    herald_agent_destroy (&agent);
    bb_broker_stop (&broker);
}

static void
s_usage (FILE *out)
{
    fprintf (out,
        "usage: agent_bench [--quick] [--seconds S] [--backlog N] [--publishes N]\n"
        "                   [--heraldd PATH]\n"
        "\n"
        "Measures libherald's agent beside a raw SUB, a raw REPLAY client and a raw\n"
        "publisher on one heraldd (durability async).  Prints figures; never fails on one.\n"
        "\n"
        "  --quick          smoke run: 0.5 s cases, a 20,000-event backlog\n"
        "  --seconds S      length of the live and publish cases (default 3)\n"
        "  --backlog N      events in the catch-up backlog (default 1,000,000)\n"
        "  --publishes N    events published through publish_async (default 200,000)\n"
        "  --heraldd PATH   the broker binary (default: $HERALD_BUILDDIR/broker/heraldd\n"
        "                   or ../broker/heraldd beside this program)\n"
        "  --help           this text\n");
}

static int
s_parse (int argc, char **argv, s_config_t *config)
{
    static const struct option options [] = {
        { "quick", no_argument, NULL, 'q' },
        { "seconds", required_argument, NULL, 's' },
        { "backlog", required_argument, NULL, 'b' },
        { "publishes", required_argument, NULL, 'p' },
        { "heraldd", required_argument, NULL, 'd' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 }
    };
    int option;
    while ((option = getopt_long (argc, argv, "", options, NULL)) != -1) {
        char *end = NULL;
        double value = optarg? strtod (optarg, &end): 0;
        bool number = optarg && end != optarg && *end == '\0' && value > 0;
        switch (option) {
            case 'q':
                config->seconds = 0.5;
                config->backlog = 20000;
                config->publishes = 20000;
                continue;
            case 's': config->seconds = value; break;
            case 'b': config->backlog = (uint64_t) value; break;
            case 'p': config->publishes = (uint64_t) value; break;
            case 'd': bb_heraldd = optarg; continue;
            case 'h': s_usage (stdout); exit (0);
            default: s_usage (stderr); return -1;
        }
        if (!number) {
            fprintf (stderr, "agent_bench: a number above 0 is needed, not '%s'\n", optarg);
            return -1;
        }
    }
    if (optind < argc) {
        fprintf (stderr, "agent_bench: unexpected argument '%s'\n", argv [optind]);
        return -1;
    }
    return 0;
}

int
main (int argc, char *argv [])
{
    s_config_t config = { .seconds = 3, .backlog = 1000000, .publishes = 200000 };
    if (s_parse (argc, argv, &config))
        return 64;
    setvbuf (stdout, NULL, _IOLBF, 0);
    zsys_handler_set (NULL);
    signal (SIGINT, s_on_signal);
    signal (SIGTERM, s_on_signal);
    signal (SIGPIPE, SIG_IGN);
    if (bb_setup ("agent_bench", "agent-bench"))
        return 1;
    char load [64];
    bench_loadavg (load, sizeof load);
    printf ("agent_bench: load average %s at the start\n\n", load);
    s_run_live (&config);
    if (!bb_interrupted)
        s_run_catchup (&config);
    if (!bb_interrupted)
        s_run_publish (&config);
    if (!bb_interrupted)
        s_run_ready (&config);
    bench_loadavg (load, sizeof load);
    printf ("load average %s at the end\n", load);
    if (*bb_problems)
        printf ("\nProblems seen:\n%s", bb_problems);
    bench_remove_tree (bb_base);
    free (bb_pool);
    zsys_shutdown ();
    return s_failed || bb_interrupted? 1: 0;
}
