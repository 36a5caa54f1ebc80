/*  =========================================================================
    cmp_nats - NATS JetStream under the comparison's workloads

    nats-server runs with JetStream on file storage in a fresh store_dir,
    on a free port.  Debian 12's nats-server is 2.9: it has no sync
    setting (its config refuses `sync_interval`, which came in 2.10), so
    the file store ACKs once a message is written to the OS and fsyncs on
    a timer.  Its durability is reported as "default", of class "async".

    DESIGN

    One stream, "BENCH", on subjects "ev.>": an event of topic T is a
    message on "ev.T" with its event id, as 32 hex digits, in the
    Nats-Msg-Id header (the stream's duplicate window, 2 minutes by
    default, drops a repeat).  Publishers use js_PublishAsync with an ACK
    handler; each keeps up to CMP_WINDOW messages in flight by its own
    count, taking places CMP_BATCH or more at a time (a condition variable
    the handler signals), so a message's latency runs
    from its send to its ACK, as for the others, never including the wait
    for a free place in the window.  Live readers (fanout), catch-up and
    the sparse read are ordered push consumers (ephemeral, no acks, flow
    control), the client library's fast way to read a stream in order;
    the sparse read's consumer filters on "ev.rare.one".
    =========================================================================
*/

#include "compare.h"

#include <inttypes.h>
#include <nats/nats.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define S_STREAM    "BENCH"

static const char *const s_durabilities [] = { "default", NULL };
static const char *const s_classes [] = { "async", NULL };

static int
s_connect (const cmp_server_t *server, natsConnection **nc, jsCtx **js, jsOptions *options)
{
    *nc = NULL;
    *js = NULL;
    natsStatus status = natsConnection_ConnectTo (nc, server->url);
    if (status == NATS_OK)
        status = natsConnection_JetStream (js, *nc, options);
    if (status != NATS_OK) {
        fprintf (stderr, "compare: nats connect %s: %s\n", server->url,
                 natsStatus_GetText (status));
        jsCtx_Destroy (*js);
        natsConnection_Destroy (*nc);
        *js = NULL;
        *nc = NULL;
        return -1;
    }
    return 0;
}

static void
s_disconnect (natsConnection *nc, jsCtx *js)
{
    jsCtx_Destroy (js);
    natsConnection_Destroy (nc);
}

static int
s_start (cmp_server_t *self, const char *tag, const char *durability)
{
    char path [PATH_MAX + 32], data [PATH_MAX + 16], config [PATH_MAX + 512];
    snprintf (self->dir, sizeof self->dir, "%.3900s/nats-%.60s", bb_base, tag);
    snprintf (data, sizeof data, "%s/data", self->dir);
    if (mkdir (self->dir, 0755) || mkdir (data, 0755))
        return -1;
    self->port = bu_free_port ();
    snprintf (self->durability, sizeof self->durability, "%s", durability);
    snprintf (config, sizeof config,
              "listen: 127.0.0.1:%d\n"
              "jetstream {\n  store_dir: \"%s\"\n}\n", self->port, data);
    snprintf (path, sizeof path, "%s/nats.conf", self->dir);
    if (cmp_write_file (path, config))
        return -1;
    char log [PATH_MAX + 32];
    snprintf (log, sizeof log, "%s/nats.log", self->dir);
    char *argv [] = { "nats-server", "-c", path, NULL };
    self->pid = cmp_proc_spawn (argv, log);
    snprintf (self->url, sizeof self->url, "nats://127.0.0.1:%d", self->port);
    if (self->pid < 0 || cmp_proc_wait_port (self->pid, self->port, CMP_START_MS)) {
        fprintf (stderr, "compare: nats-server did not start\n");
        cmp_log_tail (log);
        if (self->pid > 0)
            cmp_proc_stop (self->pid, SIGINT, "nats-server", CMP_STOP_MS);
        self->pid = 0;
        return -1;
    }
    //  The stream, once JetStream answers (bounded retries)
    natsConnection *nc;
    jsCtx *js;
    if (s_connect (self, &nc, &js, NULL))
        return -1;
    jsStreamConfig stream;
    jsStreamConfig_Init (&stream);
    const char *subjects [] = { "ev.>" };
    stream.Name = S_STREAM;
    stream.Subjects = subjects;
    stream.SubjectsLen = 1;
    stream.Storage = js_FileStorage;
    natsStatus status = NATS_ERR;
    for (int attempt = 0; attempt < 50 && status != NATS_OK; attempt++) {
        jsErrCode error = 0;
        status = js_AddStream (NULL, js, &stream, NULL, &error);
        if (status != NATS_OK)
            usleep (100000);
    }
    s_disconnect (nc, js);
    if (status != NATS_OK) {
        fprintf (stderr, "compare: nats: cannot add the stream: %s\n",
                 natsStatus_GetText (status));
        return -1;
    }
    fprintf (stderr, "compare: nats-server (%s) pid %d on %s\n", tag, (int) self->pid,
             self->url);
    return 0;
}

static void
s_stop (cmp_server_t *self)
{
    if (self->pid <= 0)
        return;
    self->peak_rss = cmp_proc_peak_rss (self->pid);
    cmp_proc_stop (self->pid, SIGINT, "nats-server", CMP_STOP_MS);
    self->pid = 0;
    bench_remove_tree (self->dir);
}

//  ---------------------------------------------------------------------
//  Publishing


static void
s_on_ack (jsCtx *js, natsMsg *msg, jsPubAck *ack, jsPubAckErr *error, void *closure)
{
    (void) js;
    cmp_publisher_t *self = (cmp_publisher_t *) closure;
    double at = bench_now ();
    if (ack) {
        uint64_t stamp = cmp_payload_stamp (natsMsg_GetData (msg),
                                            (size_t) natsMsg_GetDataLength (msg));
        uint64_t now = bb_now_ns ();
        if (stamp && now > stamp)
            bb_samples_add (&self->latency, (double) (now - stamp) / 1e9);
        self->acked++;
        self->finished = at;
    }
    else
    if (self->errors++ == 0)
        snprintf (self->error, sizeof self->error, "%s",
                  error && error->ErrText? error->ErrText: "error");
    natsMsg_Destroy (msg);
    pthread_mutex_lock (&self->mutex);
    if (--self->inflight == CMP_WINDOW - CMP_BATCH)
        pthread_cond_signal (&self->space);
    pthread_mutex_unlock (&self->mutex);
}

static void *
s_publisher (void *args)
{
    cmp_publisher_t *self = (cmp_publisher_t *) args;
    jsOptions options;
    jsOptions_Init (&options);
    options.PublishAsync.MaxPending = CMP_WINDOW * 2;
    options.PublishAsync.AckHandler = s_on_ack;
    options.PublishAsync.AckHandlerClosure = self;
    options.PublishAsync.StallWait = 10000;
    natsConnection *nc;
    jsCtx *js;
    if (s_connect (self->server, &nc, &js, &options))
        return NULL;
    double wait = self->start - bench_now ();
    if (wait > 0)
        usleep ((useconds_t) (wait * 1e6));
    uint8_t data [2048], id [16];
    char hex [33], topic [32], subject [40];
    uint64_t sent = 0;
    uint64_t reserved = 0;              //  window places taken, not yet used
    //  Paced: a tick's events at a time, stamped with its deadline
    cmp_pacer_t pacer;
    cmp_pacer_init (&pacer, self->start, self->rate, self->deadline);
    size_t tick_left = 0;
    uint64_t stamp = 0;
    while (!bb_interrupted && sent < self->max_events
       &&  (self->rate > 0? tick_left > 0 || cmp_pacer_more (&pacer)
                          : bench_now () < self->deadline)) {
        if (self->rate > 0 && tick_left == 0)
            stamp = (uint64_t) (cmp_pacer_wait (&pacer, &tick_left) * 1e9);
        if (reserved == 0) {
            //  Wait for CMP_BATCH free places at least (not one at a time:
            //  that would wake this thread once per ACK), then take them
            pthread_mutex_lock (&self->mutex);
            double give_up = bench_now () + 10;
            while (self->inflight > CMP_WINDOW - CMP_BATCH && !bb_interrupted
               &&  bench_now () < give_up) {
                struct timespec until;
                clock_gettime (CLOCK_REALTIME, &until);
                until.tv_nsec += 100000000;
                if (until.tv_nsec >= 1000000000) {
                    until.tv_sec++;
                    until.tv_nsec -= 1000000000;
                }
                pthread_cond_timedwait (&self->space, &self->mutex, &until);
            }
            if (self->inflight <= CMP_WINDOW - CMP_BATCH) {
                reserved = CMP_WINDOW - self->inflight;
                self->inflight = CMP_WINDOW;
            }
            pthread_mutex_unlock (&self->mutex);
            if (reserved == 0)
                break;                  //  no ACK for 10 s
        }
        uint64_t counter;
        if (cmp_next_event (self, &counter, topic, sizeof topic) < 0)
            break;
        cmp_event_id (counter, id, hex);
        snprintf (subject, sizeof subject, "ev.%s", topic);
        jsPubOptions publish;
        jsPubOptions_Init (&publish);
        publish.MsgId = hex;
        cmp_payload (counter, data, self->payload, stamp);
        natsStatus status = js_PublishAsync (js, subject, data, (int) self->payload, &publish);
        if (status != NATS_OK) {
            if (self->errors++ == 0)
                snprintf (self->error, sizeof self->error, "%s", natsStatus_GetText (status));
            break;
        }
        reserved--;
        sent++;
        if (tick_left > 0)
            tick_left--;
    }
    //  Give back the places taken and not used
    pthread_mutex_lock (&self->mutex);
    self->inflight -= reserved;
    pthread_mutex_unlock (&self->mutex);
    jsPubOptions complete;
    jsPubOptions_Init (&complete);
    complete.MaxWait = 15000;
    js_PublishAsyncComplete (js, &complete);
    s_disconnect (nc, js);
    return NULL;
}

static double
s_run (cmp_server_t *self, int threads, size_t payload, double seconds, uint64_t max_events,
       uint64_t log_total, double rate, cmp_pub_t *result)
{
    return cmp_run_publishers (self, "nats publish", s_publisher, threads, payload, seconds,
                               max_events, log_total, rate, result);
}

static int
s_publish (cmp_server_t *self, int threads, size_t payload, double seconds,
           uint64_t max_events, cmp_pub_t *result)
{
    return s_run (self, threads, payload, seconds, max_events, 0, 0, result) < 0? -1: 0;
}

static double
s_build (cmp_server_t *self, uint64_t events)
{
    cmp_pub_t result;
    double rate = s_run (self, 2, 100, 3600, 0, events, 0, &result);
    if (result.acked != events)
        bb_problem ("nats: building the log, %" PRIu64 " of %" PRIu64 " ACKed",
                    result.acked, events);
    return rate;
}

//  ---------------------------------------------------------------------
//  Reading: ordered push consumers

typedef struct {
    size_t stride;                      //  keep one latency sample in stride; 0: none
    atomic_uint_fast64_t delivered;
    _Atomic double last;
    bb_samples_t latency;               //  the subscription's one delivery thread
} s_reader_t;

static void
s_on_msg (natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *closure)
{
    (void) nc;
    (void) sub;
    s_reader_t *self = (s_reader_t *) closure;
    uint64_t count = atomic_fetch_add (&self->delivered, 1);
    uint64_t now = bb_now_ns ();
    if (self->stride && count % self->stride == 0) {
        uint64_t stamp = cmp_payload_stamp (natsMsg_GetData (msg),
                                            (size_t) natsMsg_GetDataLength (msg));
        if (stamp && now > stamp)
            bb_samples_add (&self->latency, (double) (now - stamp) / 1e9);
    }
    atomic_store (&self->last, (double) now / 1e9);
    natsMsg_Destroy (msg);
}

//  An ordered consumer on subject from the stream's start (all) or its
//  end.  Returns 0 or -1.
static int
s_reader_open (const cmp_server_t *server, const char *subject, bool all, s_reader_t *reader,
               natsConnection **nc, jsCtx **js, natsSubscription **sub)
{
    *sub = NULL;
    if (s_connect (server, nc, js, NULL))
        return -1;
    jsSubOptions options;
    jsSubOptions_Init (&options);
    options.Stream = S_STREAM;
    options.Ordered = true;
    options.Config.DeliverPolicy = all? js_DeliverAll: js_DeliverNew;
    jsErrCode error = 0;
    natsStatus status = js_Subscribe (sub, *js, subject, s_on_msg, reader, NULL, &options,
                                      &error);
    if (status == NATS_OK)
        status = natsSubscription_SetPendingLimits (*sub, 1000000, 1 << 30);
    if (status != NATS_OK) {
        fprintf (stderr, "compare: nats subscribe %s: %s (%d)\n", subject,
                 natsStatus_GetText (status), (int) error);
        natsSubscription_Destroy (*sub);
        s_disconnect (*nc, *js);
        return -1;
    }
    return 0;
}

static void
s_reader_close (natsConnection *nc, jsCtx *js, natsSubscription *sub)
{
    natsSubscription_Unsubscribe (sub);
    natsSubscription_Destroy (sub);
    s_disconnect (nc, js);
}

static int
s_fanout (cmp_server_t *self, int subscribers, double seconds, double rate,
          cmp_fan_t *result)
{
    memset (result, 0, sizeof *result);
    s_reader_t reader [16];
    natsConnection *nc [16];
    jsCtx *js [16];
    natsSubscription *sub [16];
    int started = 0;
    for (; started < subscribers && started < 16; started++) {
        s_reader_t *one = &reader [started];
        memset (one, 0, sizeof *one);
        atomic_init (&one->delivered, 0);
        atomic_init (&one->last, 0);
        one->stride = rate > 0? 1: (size_t) subscribers;     //  as bb_fanout's
        if (bb_samples_init (&one->latency, BB_MAX_SAMPLES))
            break;
        if (s_reader_open (self, "ev.>", false, one, &nc [started], &js [started],
                           &sub [started])) {
            bb_samples_fini (&one->latency);
            break;
        }
    }
    cmp_pub_t pub;
    double start = bench_now () + 0.1;
    if (started == subscribers)
        s_run (self, 1, 100, seconds, UINT64_MAX / 2, 0, rate, &pub);
    else
        memset (&pub, 0, sizeof pub);
    result->published = pub.acked;
    uint64_t expected = pub.acked * (uint64_t) started;
    atomic_uint_fast64_t *counters [16];
    for (int i = 0; i < started; i++)
        counters [i] = &reader [i].delivered;
    cmp_wait_delivered (counters, started, expected);
    bb_samples_t all;
    bb_samples_init (&all, 0);
    double last = start;
    for (int i = 0; i < started; i++) {
        s_reader_close (nc [i], js [i], sub [i]);
        result->delivered += atomic_load (&reader [i].delivered);
        if (atomic_load (&reader [i].last) > last)
            last = atomic_load (&reader [i].last);
        bb_samples_merge (&all, &reader [i].latency);
        bb_samples_fini (&reader [i].latency);
    }
    result->rate = last > start? (double) result->delivered / (last - start): 0;
    cmp_percentiles (&all, &result->p50, &result->p99, &result->p999);
    bb_samples_fini (&all);
    if (result->delivered < expected)
        bb_problem ("nats fanout to %d: %" PRIu64 " of %" PRIu64 " delivered", started,
                    result->delivered, expected);
    return started == subscribers && result->delivered > 0? 0: -1;
}

//  Read subject from the stream's start until expected messages arrived,
//  or none for 3 s, or timeout.  Returns seconds to the last one, or -1.
static double
s_read_all (const cmp_server_t *server, const char *subject, uint64_t expected,
            double timeout, uint64_t *count)
{
    *count = 0;
    s_reader_t reader;
    memset (&reader, 0, sizeof reader);
    atomic_init (&reader.delivered, 0);
    atomic_init (&reader.last, 0);
    natsConnection *nc;
    jsCtx *js;
    natsSubscription *sub;
    double start = bench_now ();
    if (s_reader_open (server, subject, true, &reader, &nc, &js, &sub))
        return -1;
    uint64_t seen = 0;
    double moved = bench_now ();
    while (!bb_interrupted && bench_now () - start < timeout) {
        uint64_t now_count = atomic_load (&reader.delivered);
        if (now_count >= expected)
            break;
        if (now_count != seen) {
            seen = now_count;
            moved = bench_now ();
        }
        else
        if (bench_now () - moved > 3)
            break;
        usleep (1000);
    }
    *count = atomic_load (&reader.delivered);
    double last = atomic_load (&reader.last);
    s_reader_close (nc, js, sub);
    if (*count < expected)
        bb_problem ("nats: read %" PRIu64 " of %" PRIu64 " messages on %s", *count,
                    expected, subject);
    return *count > 0 && last > start? last - start: -1;
}

//  Messages in the stream, 0 when unknown.
static uint64_t
s_stream_messages (const cmp_server_t *server)
{
    natsConnection *nc;
    jsCtx *js;
    if (s_connect (server, &nc, &js, NULL))
        return 0;
    jsStreamInfo *info = NULL;
    uint64_t messages = 0;
    if (js_GetStreamInfo (&info, js, S_STREAM, NULL, NULL) == NATS_OK && info)
        messages = info->State.Msgs;
    jsStreamInfo_Destroy (info);
    s_disconnect (nc, js);
    return messages;
}

static double
s_catchup (cmp_server_t *self, double timeout, uint64_t *count)
{
    uint64_t expected = s_stream_messages (self);
    double elapsed = s_read_all (self, "ev.>", expected? expected: UINT64_MAX, timeout, count);
    return elapsed > 0? (double) *count / elapsed: -1;
}

static double
s_sparse (cmp_server_t *self, int variant, double timeout, uint64_t *count)
{
    if (variant != 0)
        return -2;
    double elapsed = s_read_all (self, "ev." CMP_SPARSE_TOPIC, CMP_SPARSE, timeout, count);
    return elapsed > 0? elapsed * 1e3: -1;
}

const cmp_system_t cmp_nats = {
    .name = "nats",
    .durabilities = s_durabilities,
    .classes = s_classes,
    .relaxed = "default",
    .start = s_start,
    .stop = s_stop,
    .publish = s_publish,
    .fanout = s_fanout,
    .build = s_build,
    .catchup = s_catchup,
    .sparse = s_sparse,
    .sparse_names = { "ordered consumer, subject filter", NULL }
};
