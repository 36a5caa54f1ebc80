/*  =========================================================================
    broker_bench_raw - the raw limits heraldd is measured against

    What this machine's ZeroMQ and RocksDB do with no broker in between:
    PUB/SUB fan-out of small messages, pipelined DEALER/ROUTER round trips
    through one ROUTER thread (the broker's shape: one loop answering many
    clients), and RocksDB batched puts with and without a sync per batch.
    Nothing here knows Herald, so a raw figure cannot borrow from the code
    it is the limit of.  Also the latency-sample helpers both sides use.
    =========================================================================
*/

#include "broker_bench.h"

#include <czmq.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

volatile sig_atomic_t bb_interrupted = 0;
uint8_t *bb_pool = NULL;

int
bb_setup (const char *program, const char *dir_tag)
{
    bb_pool = malloc (BB_POOL_BYTES);
    if (!bb_pool) {
        fprintf (stderr, "%s: out of memory\n", program);
        return -1;
    }
    uint64_t state = 0x9E3779B97F4A7C15ull;
    for (size_t i = 0; i < BB_POOL_BYTES; i++) {
        state ^= state << 13; state ^= state >> 7; state ^= state << 17;
        bb_pool [i] = (uint8_t) (state >> 24);
    }
    snprintf (bb_base, sizeof bb_base, "/tmp/herald-%s-XXXXXX", dir_tag);
    if (!mkdtemp (bb_base)) {
        fprintf (stderr, "%s: mkdtemp: %s\n", program, strerror (errno));
        return -1;
    }
    return 0;
}

uint64_t
bb_now_ns (void)
{
    struct timespec ts;
    clock_gettime (CLOCK_MONOTONIC, &ts);
    return (uint64_t) ts.tv_sec * 1000000000ull + (uint64_t) ts.tv_nsec;
}

//  ---------------------------------------------------------------------
//  Latency samples

int
bb_samples_init (bb_samples_t *self, size_t cap)
{
    memset (self, 0, sizeof *self);
    self->cap = cap;
    self->values = malloc ((cap? cap: 1) * sizeof (double));
    return self->values? 0: -1;
}

void
bb_samples_add (bb_samples_t *self, double value)
{
    if (self->count < self->cap)
        self->values [self->count++] = value;
    else
        self->skipped++;
}

int
bb_samples_merge (bb_samples_t *self, const bb_samples_t *from)
{
    if (self->count + from->count > self->cap) {
        size_t cap = self->count + from->count;
        double *values = realloc (self->values, cap * sizeof (double));
        if (!values)
            return -1;
        self->values = values;
        self->cap = cap;
    }
    memcpy (self->values + self->count, from->values, from->count * sizeof (double));
    self->count += from->count;
    self->skipped += from->skipped;
    return 0;
}

static int
s_compare_double (const void *a, const void *b)
{
    double x = *(const double *) a, y = *(const double *) b;
    return x < y? -1: x > y? 1: 0;
}

double
bb_samples_percentile (bb_samples_t *self, double p)
{
    if (self->count == 0)
        return 0;
    qsort (self->values, self->count, sizeof (double), s_compare_double);
    size_t index = (size_t) (p / 100.0 * (double) (self->count - 1) + 0.5);
    return self->values [index < self->count? index: self->count - 1];
}

void
bb_samples_fini (bb_samples_t *self)
{
    free (self->values);
    memset (self, 0, sizeof *self);
}

//  ---------------------------------------------------------------------
//  RocksDB batched puts

double
bb_raw_rocksdb (const char *path, bool sync, size_t value_len, size_t batch,
                double seconds, uint64_t max_events, uint64_t *done)
{
    bench_raw_t raw;
    *done = 0;
    if (bench_raw_open (&raw, path, sync))
        return -1;
    double start = bench_now (), now = start;
    uint64_t seq = 1;
    while (!bb_interrupted && now - start < seconds && seq - 1 < max_events) {
        if (bench_raw_write (&raw, seq, batch, value_len, bb_pool, BB_POOL_BYTES)) {
            bench_raw_close (&raw);
            bench_remove_tree (path);
            return -1;
        }
        seq += batch;
        now = bench_now ();
    }
    bench_raw_close (&raw);
    bench_remove_tree (path);
    *done = seq - 1;
    return now > start? (double) (seq - 1) / (now - start): 0;
}

//  ---------------------------------------------------------------------
//  PUB/SUB

typedef struct {
    char endpoint [64];
    atomic_uint_fast64_t received;
    atomic_bool stop;
    atomic_int ready;                   //  subscribers that got a message
    pthread_mutex_t lock;               //  guards last
    double last;                        //  bench_now of the last message
} s_fan_t;

static void *
s_subscriber (void *args)
{
    s_fan_t *fan = (s_fan_t *) args;
    zsock_t *sub = zsock_new_sub (fan->endpoint, "bench.");
    if (!sub)
        return NULL;
    zsock_set_rcvtimeo (sub, 50);
    void *handle = zsock_resolve (sub);
    zmq_msg_t frame;
    zmq_msg_init (&frame);
    bool counted = false;
    uint64_t count = 0;
    double last = 0;
    while (!atomic_load (&fan->stop)) {
        if (zmq_msg_recv (&frame, handle, 0) < 0)
            continue;                   //  timeout: look at stop again
        if (zmq_msg_more (&frame))
            continue;                   //  the topic frame
        if (!counted) {
            atomic_fetch_add (&fan->ready, 1);
            counted = true;
        }
        //  Batch the shared counter: one atomic add per 64 messages
        if (++count % 64 == 0)
            atomic_fetch_add (&fan->received, 64);
        last = bench_now ();
    }
    atomic_fetch_add (&fan->received, count % 64);
    zmq_msg_close (&frame);
    zsock_destroy (&sub);
    pthread_mutex_lock (&fan->lock);
    if (last > fan->last)
        fan->last = last;
    pthread_mutex_unlock (&fan->lock);
    return NULL;
}

double
bb_raw_pubsub (int subscribers, size_t payload, double seconds, uint64_t max_msgs,
               uint64_t *sent_p, uint64_t *received_p)
{
    *sent_p = *received_p = 0;
    zsock_t *pub = zsock_new_pub ("tcp://127.0.0.1:*");
    if (!pub)
        return -1;
    s_fan_t fan;
    memset (&fan, 0, sizeof fan);
    snprintf (fan.endpoint, sizeof fan.endpoint, "%s", zsock_endpoint (pub));
    atomic_init (&fan.received, 0);
    atomic_init (&fan.stop, false);
    atomic_init (&fan.ready, 0);
    pthread_mutex_init (&fan.lock, NULL);
    pthread_t threads [64];
    int started = 0;
    for (; started < subscribers && started < 64; started++)
        if (pthread_create (&threads [started], NULL, s_subscriber, &fan))
            break;
    void *handle = zsock_resolve (pub);
    //  Until every subscriber has seen a message (the slow-joiner problem)
    double deadline = bench_now () + 10;
    while (atomic_load (&fan.ready) < started && bench_now () < deadline && !bb_interrupted) {
        zmq_send (handle, "bench.warm", 10, ZMQ_SNDMORE);
        zmq_send (handle, bb_pool, payload, 0);
        zclock_sleep (10);
    }
    zclock_sleep (100);
    uint64_t before = atomic_load (&fan.received);
    double start = bench_now (), now = start;
    uint64_t sent = 0;
    while (!bb_interrupted && sent < max_msgs) {
        zmq_send (handle, "bench.t1", 8, ZMQ_SNDMORE);
        zmq_send (handle, bb_pool + (sent * 64) % (BB_POOL_BYTES - payload), payload, 0);
        sent++;
        if (sent % 1024 == 0 && (now = bench_now ()) - start >= seconds)
            break;
    }
    //  Let the subscribers drain what is queued: until the count stops moving
    uint64_t seen = atomic_load (&fan.received), quiet = 0;
    deadline = bench_now () + 5;
    while (quiet < 3 && bench_now () < deadline) {
        zclock_sleep (100);
        uint64_t next = atomic_load (&fan.received);
        quiet = next == seen? quiet + 1: 0;
        seen = next;
    }
    atomic_store (&fan.stop, true);
    for (int i = 0; i < started; i++)
        pthread_join (threads [i], NULL);
    zsock_destroy (&pub);
    pthread_mutex_destroy (&fan.lock);
    *sent_p = sent;
    *received_p = atomic_load (&fan.received) - before;
    double elapsed = fan.last - start;
    if (started < subscribers || elapsed <= 0)
        return -1;
    return (double) *received_p / elapsed;
}

//  ---------------------------------------------------------------------
//  DEALER/ROUTER round trips

typedef struct {
    char endpoint [64];
    size_t body_len;
    double deadline;
    uint64_t max_msgs;                  //  per client
    uint64_t replies;
    double finished;
    bb_samples_t latency;
} s_client_t;

typedef struct {
    zsock_t *router;
    atomic_bool stop;
} s_echo_t;

//  One ROUTER loop answering every request [id, command, body] with
//  [id, "ACK", body]: the broker's shape without the broker's work.
static void *
s_echo (void *args)
{
    s_echo_t *echo = (s_echo_t *) args;
    zsock_t *router = echo->router;
    void *handle = zsock_resolve (router);
    zsock_set_rcvtimeo (router, 50);
    zmq_msg_t identity, command, body;
    zmq_msg_init (&identity);
    zmq_msg_init (&command);
    zmq_msg_init (&body);
    while (!atomic_load (&echo->stop)) {
        if (zmq_msg_recv (&identity, handle, 0) < 0)
            continue;                   //  timeout: look at stop again
        if (zmq_msg_recv (&command, handle, 0) < 0 || zmq_msg_recv (&body, handle, 0) < 0)
            continue;
        zmq_msg_send (&identity, handle, ZMQ_SNDMORE);
        zmq_send (handle, "ACK", 3, ZMQ_SNDMORE);
        zmq_msg_send (&body, handle, 0);
    }
    zmq_msg_close (&identity);
    zmq_msg_close (&command);
    zmq_msg_close (&body);
    return NULL;
}

static void *
s_client (void *args)
{
    s_client_t *self = (s_client_t *) args;
    zsock_t *dealer = zsock_new_dealer (self->endpoint);
    if (!dealer)
        return NULL;
    void *handle = zsock_resolve (dealer);
    uint8_t body [4096];
    size_t len = self->body_len < sizeof body? self->body_len: sizeof body;
    if (len < 16)
        len = 16;
    memcpy (body, bb_pool, len);
    double sent_at [BB_WINDOW];
    uint64_t sent = 0, inflight = 0;
    zmq_pollitem_t item = { handle, 0, ZMQ_POLLIN, 0 };
    double drain_deadline = self->deadline + 5;
    while (true) {
        double now = bench_now ();
        bool sending = !bb_interrupted && now < self->deadline && sent < self->max_msgs;
        if (!sending && (inflight == 0 || now > drain_deadline))
            break;
        while (sending && inflight < BB_WINDOW) {
            uint64_t rid = sent++;
            memcpy (body, &rid, sizeof rid);
            sent_at [rid % BB_WINDOW] = bench_now ();
            zmq_send (handle, "PUBLISH", 7, ZMQ_SNDMORE);
            zmq_send (handle, body, len, 0);
            inflight++;
            sending = sent < self->max_msgs;
        }
        if (zmq_poll (&item, 1, 100) <= 0)
            continue;
        uint8_t reply [4096];
        while (true) {
            char command [16];
            if (zmq_recv (handle, command, sizeof command, ZMQ_DONTWAIT) < 0)
                break;
            int size = zmq_recv (handle, reply, sizeof reply, 0);
            if (size < 8)
                continue;
            uint64_t rid;
            memcpy (&rid, reply, sizeof rid);
            double at = bench_now ();
            bb_samples_add (&self->latency, at - sent_at [rid % BB_WINDOW]);
            self->replies++;
            self->finished = at;
            inflight--;
        }
    }
    zsock_destroy (&dealer);
    return NULL;
}

double
bb_raw_reqrep (int clients, size_t body_len, double seconds, uint64_t max_msgs,
               bb_samples_t *latency)
{
    zsock_t *router = zsock_new (ZMQ_ROUTER);
    if (!router)
        return -1;
    zsock_set_sndhwm (router, 100000);      //  before bind: see bb_raw_stream
    zsock_set_rcvhwm (router, 100000);
    if (zsock_bind (router, "tcp://127.0.0.1:*") < 0) {
        zsock_destroy (&router);
        return -1;
    }
    char endpoint [64];
    snprintf (endpoint, sizeof endpoint, "%s", zsock_endpoint (router));
    s_echo_t echo_args = { .router = router };
    atomic_init (&echo_args.stop, false);
    pthread_t echo;
    if (pthread_create (&echo, NULL, s_echo, &echo_args)) {
        zsock_destroy (&router);
        return -1;
    }
    s_client_t *client = calloc ((size_t) clients, sizeof *client);
    pthread_t *threads = calloc ((size_t) clients, sizeof *threads);
    int started = 0;
    double start = bench_now ();
    for (; client && threads && started < clients; started++) {
        s_client_t *self = &client [started];
        snprintf (self->endpoint, sizeof self->endpoint, "%s", endpoint);
        self->body_len = body_len;
        self->deadline = start + seconds;
        self->max_msgs = max_msgs / (uint64_t) clients + 1;
        if (bb_samples_init (&self->latency, BB_MAX_SAMPLES)
        ||  pthread_create (&threads [started], NULL, s_client, self)) {
            bb_samples_fini (&self->latency);
            break;
        }
    }
    uint64_t replies = 0;
    double finished = start;
    for (int i = 0; i < started; i++) {
        pthread_join (threads [i], NULL);
        replies += client [i].replies;
        if (client [i].finished > finished)
            finished = client [i].finished;
        bb_samples_merge (latency, &client [i].latency);
        bb_samples_fini (&client [i].latency);
    }
    atomic_store (&echo_args.stop, true);
    pthread_join (echo, NULL);
    zsock_destroy (&router);
    free (client);
    free (threads);
    if (started < clients || finished <= start)
        return -1;
    return (double) replies / (finished - start);
}

//  ---------------------------------------------------------------------
//  ROUTER to DEALER stream: what a REPLAY is on the wire, without the log

typedef struct {
    zsock_t *router;
    size_t frame_len;
    uint64_t frames;
} s_streamer_t;

//  Wait for the client's request, then send frames frames of frame_len
//  bytes as [identity, "EVENTS", body, 256 frames] messages and an END.
static void *
s_streamer (void *args)
{
    s_streamer_t *self = (s_streamer_t *) args;
    void *handle = zsock_resolve (self->router);
    zmq_pollitem_t item = { handle, 0, ZMQ_POLLIN, 0 };
    if (zmq_poll (&item, 1, 10000) <= 0)
        return NULL;
    uint8_t identity [256], request [64];
    int identity_len = zmq_recv (handle, identity, sizeof identity, 0);
    while (identity_len > 0 && zmq_recv (handle, request, sizeof request, ZMQ_DONTWAIT) >= 0) {
        int more = 0;
        size_t more_len = sizeof more;
        zmq_getsockopt (handle, ZMQ_RCVMORE, &more, &more_len);
        if (!more)
            break;
    }
    if (identity_len <= 0)
        return NULL;
    static const uint8_t body [] = { 0x81, 0xa3, 'r', 'i', 'd', 0x01 };      //  {rid: 1}
    uint64_t sent = 0;
    while (sent < self->frames && !bb_interrupted) {
        zmq_send (handle, identity, (size_t) identity_len, ZMQ_SNDMORE);
        zmq_send (handle, "EVENTS", 6, ZMQ_SNDMORE);
        zmq_send (handle, body, sizeof body, ZMQ_SNDMORE);
        for (int i = 0; i < 256 && sent < self->frames; i++, sent++) {
            bool last = i == 255 || sent + 1 == self->frames;
            zmq_send (handle, bb_pool + (sent * 61) % (BB_POOL_BYTES - self->frame_len),
                      self->frame_len, last? 0: ZMQ_SNDMORE);
        }
    }
    zmq_send (handle, identity, (size_t) identity_len, ZMQ_SNDMORE);
    zmq_send (handle, "END", 3, ZMQ_SNDMORE);
    zmq_send (handle, body, sizeof body, 0);
    return NULL;
}

double
bb_raw_stream (size_t frame_len, uint64_t frames, double timeout)
{
    //  Options before bind: a listener copies them when it binds, and a
    //  high-water mark set afterwards never reaches accepted connections.
    //  Mandatory routing makes a full pipe block the sender (backpressure,
    //  as credit gives the broker) instead of dropping messages.
    zsock_t *router = zsock_new (ZMQ_ROUTER);
    if (!router)
        return -1;
    zsock_set_sndhwm (router, 100000);
    zsock_set_router_mandatory (router, 1);
    if (zsock_bind (router, "tcp://127.0.0.1:*") < 0) {
        zsock_destroy (&router);
        return -1;
    }
    s_streamer_t streamer = { router, frame_len, frames };
    pthread_t thread;
    if (pthread_create (&thread, NULL, s_streamer, &streamer)) {
        zsock_destroy (&router);
        return -1;
    }
    zsock_t *dealer = zsock_new (ZMQ_DEALER);
    zsock_set_rcvhwm (dealer, 100000);
    zsock_connect (dealer, "%s", zsock_endpoint (router));
    void *handle = zsock_resolve (dealer);
    double start = bench_now (), last = start;
    zmq_send (handle, "REPLAY", 6, ZMQ_SNDMORE);
    zmq_send (handle, "\x80", 1, 0);
    zmq_msg_t frame;
    zmq_msg_init (&frame);
    zmq_pollitem_t item = { handle, 0, ZMQ_POLLIN, 0 };
    uint64_t count = 0;
    bool ended = false;
    while (!ended && !bb_interrupted && bench_now () - start < timeout) {
        if (zmq_poll (&item, 1, 100) <= 0)
            continue;
        while (zmq_msg_recv (&frame, handle, ZMQ_DONTWAIT) >= 0) {
            bool events = zmq_msg_size (&frame) == 6
                       && memcmp (zmq_msg_data (&frame), "EVENTS", 6) == 0;
            size_t frames_in = 1;
            while (zmq_msg_more (&frame) && zmq_msg_recv (&frame, handle, 0) >= 0)
                frames_in++;
            if (events && frames_in > 2)
                count += frames_in - 2;
            else {
                ended = true;
                break;
            }
        }
        last = bench_now ();
    }
    zmq_msg_close (&frame);
    pthread_join (thread, NULL);
    zsock_destroy (&dealer);
    zsock_destroy (&router);
    return ended && count == frames && last > start? (double) count / (last - start): -1;
}
