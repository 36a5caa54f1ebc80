/*  =========================================================================
    broker_bench_herald - running heraldd and talking to it as a client

    The Herald side of broker_bench (see broker_bench.c for the design):
    start and stop the broker (with tests/brokerutil.c, as the tests do),
    pipelined publishers, fanout subscribers and a credit-refilling replay.
    Plain czmq sockets and hand-packed MessagePack, as a third-party client
    would write them.
    =========================================================================
*/

#include "broker_bench.h"
#include "herald_event.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <msgpack.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <czmq.h>
#include <unistd.h>

#define S_STOP_MS           15000       //  SIGTERM to SIGKILL
#define S_START_MS          15000       //  spawn to first STATUS reply
#define S_CONNECT_S         0.05        //  publishers connect before they start

const char *bb_heraldd = NULL;
char bb_base [PATH_MAX];
char bb_problems [4096];
static atomic_uint_fast64_t s_next_id;  //  event ids: run nonce + counter
static uint64_t s_nonce;

void
bb_problem (const char *format, ...)
{
    size_t used = strlen (bb_problems);
    va_list args;
    va_start (args, format);
    vsnprintf (bb_problems + used, sizeof bb_problems - used, format, args);
    va_end (args);
    used = strlen (bb_problems);
    if (used + 1 < sizeof bb_problems)
        strcat (bb_problems, "\n");
}

//  ---------------------------------------------------------------------
//  Running heraldd: tests/brokerutil.c starts and stops it, as for the tests

//  Print the end of the broker's log to stderr.
static void
s_broker_log_tail (const bb_broker_t *self)
{
    char text [2048];
    bu_broker_log_tail (self->proc, text, sizeof text);
    fprintf (stderr, "broker_bench: --- end of %s ---\n%s\n", self->proc->log, text);
}

//  Start heraldd with a fresh data dir (durability as given) and wait until
//  it answers STATUS.  Returns 0, or -1 after printing why (then reaped).
void (*bb_socket_hook) (zsock_t *sock);

int
bb_broker_start (bb_broker_t *self, const char *tag, const char *durability)
{
    memset (self, 0, sizeof *self);
    snprintf (self->tag, sizeof self->tag, "%s", tag);
    const char *const extra [] = { "--durability", durability, NULL };
    self->proc = bu_broker_new_in (bb_base, tag, bb_heraldd, extra);
    if (!self->proc) {
        fprintf (stderr, "broker_bench: cannot set up heraldd (%s) in %s: is it built? "
                 "(or --heraldd PATH)\n", tag, bb_base);
        return -1;
    }
    if (bu_broker_start (self->proc, S_START_MS)) {
        fprintf (stderr, "broker_bench: heraldd (%s) did not answer STATUS\n", tag);
        bb_problem ("heraldd (%s) did not start or answer STATUS within %d ms", tag, S_START_MS);
        s_broker_log_tail (self);
        bu_broker_destroy (&self->proc);
        return -1;
    }
    fprintf (stderr, "broker_bench: heraldd (%s, %s) pid %d on %s, fanout %s\n", tag,
             durability, (int) self->proc->pid, self->proc->api, self->proc->fanout);
    return 0;
}

//  SIGTERM, wait up to S_STOP_MS, SIGKILL as the last resort; remove the
//  data dir.  A non-zero exit or a kill is recorded as a broker problem.
void
bb_broker_stop (bb_broker_t *self)
{
    if (!self->proc)
        return;
    double start = bench_now ();
    bool killed = bu_broker_stop (self->proc, S_STOP_MS) != 0;
    int status = self->proc->status;
    if (killed) {
        bb_problem ("heraldd (%s) ignored SIGTERM for %d ms and was SIGKILLed", self->tag,
                   S_STOP_MS);
        s_broker_log_tail (self);
    }
    else
    if (!WIFEXITED (status) || WEXITSTATUS (status) != 0) {
        bb_problem ("heraldd (%s) stopped with %s %d", self->tag,
                   WIFEXITED (status)? "exit status": "signal",
                   WIFEXITED (status)? WEXITSTATUS (status): WTERMSIG (status));
        s_broker_log_tail (self);
    }
    else
        fprintf (stderr, "broker_bench: heraldd (%s) stopped cleanly in %.0f ms\n",
                 self->tag, (bench_now () - start) * 1000);
    bu_broker_destroy (&self->proc);
}

//  ---------------------------------------------------------------------
//  Publishing

typedef struct {
    const char *api;
    size_t batch;                       //  events per PUBLISH
    size_t payload;                     //  data bytes, the last 8 the send time
    double rate;                        //  events/s for this thread; 0: no limit
    double start;                       //  the same for every publisher
    double phase;                       //  rate-limited: offset of the schedule
    double deadline;                    //  stop sending
    uint64_t max_requests;
    //  Results
    uint64_t acked;                     //  events ACKed
    uint64_t requests;
    uint64_t errors;                    //  ERROR replies (first code kept)
    char error [64];
    double finished;                    //  bench_now of the last reply
    bb_samples_t latency;
} s_publisher_t;

//  Pack {rid, events: [{id, topic, data} x batch]} into sbuf, stamp (ns,
//  bb_now_ns's clock) the send time in the last 8 bytes of each data.
static void
s_pack_publish (msgpack_sbuffer *sbuf, uint64_t rid, size_t batch, size_t payload,
                uint64_t stamp)
{
    msgpack_packer pk;
    msgpack_packer_init (&pk, sbuf, msgpack_sbuffer_write);
    msgpack_pack_map (&pk, 2);
    msgpack_pack_str_with_body (&pk, "rid", 3);
    msgpack_pack_uint64 (&pk, rid);
    msgpack_pack_str_with_body (&pk, "events", 6);
    msgpack_pack_array (&pk, batch);
    for (size_t i = 0; i < batch; i++) {
        uint64_t counter = atomic_fetch_add (&s_next_id, 1);
        uint8_t id [16];
        bench_put_be64 (id, s_nonce);
        bench_put_be64 (id + 8, counter);
        char topic [16];
        int topic_len = snprintf (topic, sizeof topic, "bench.t%d", (int) (counter % BB_TOPICS));
        msgpack_pack_map (&pk, 3);
        msgpack_pack_str_with_body (&pk, "id", 2);
        msgpack_pack_bin_with_body (&pk, id, sizeof id);
        msgpack_pack_str_with_body (&pk, "topic", 5);
        msgpack_pack_str_with_body (&pk, topic, (size_t) topic_len);
        msgpack_pack_str_with_body (&pk, "data", 4);
        msgpack_pack_bin (&pk, payload);
        size_t offset = (size_t) ((counter * 2654435761u) % (BB_POOL_BYTES - payload));
        msgpack_pack_bin_body (&pk, bb_pool + offset, payload - sizeof stamp);
        msgpack_pack_bin_body (&pk, &stamp, sizeof stamp);
    }
}

//  The rid of a reply body, or false when it has none.
static bool
s_reply_rid (const void *data, size_t size, uint64_t *rid)
{
    //  rid is the first key the broker writes; look there before decoding
    msgpack_unpacked result;
    msgpack_unpacked_init (&result);
    bool found = false;
    if (msgpack_unpack_next (&result, data, size, NULL) == MSGPACK_UNPACK_SUCCESS
    &&  result.data.type == MSGPACK_OBJECT_MAP) {
        msgpack_object_map *map = &result.data.via.map;
        for (uint32_t i = 0; i < map->size && !found; i++) {
            msgpack_object *key = &map->ptr [i].key;
            if (key->type == MSGPACK_OBJECT_STR && key->via.str.size == 3
            &&  memcmp (key->via.str.ptr, "rid", 3) == 0
            &&  map->ptr [i].val.type == MSGPACK_OBJECT_POSITIVE_INTEGER) {
                *rid = map->ptr [i].val.via.u64;
                found = true;
            }
        }
    }
    msgpack_unpacked_destroy (&result);
    return found;
}

static void *
s_publisher (void *args)
{
    s_publisher_t *self = (s_publisher_t *) args;
    zsock_t *dealer = zsock_new (ZMQ_DEALER);
    if (!dealer)
        return NULL;
    if (bb_socket_hook)
        bb_socket_hook (dealer);
    if (zsock_connect (dealer, "%s", self->api) != 0) {
        zsock_destroy (&dealer);
        return NULL;
    }
    //  Connected; every publisher starts at the same moment, self->start,
    //  set before the thread was created
    double wait = self->start - bench_now ();
    if (wait > 0)
        zclock_sleep ((int) (wait * 1000));
    void *handle = zsock_resolve (dealer);
    msgpack_sbuffer sbuf;
    msgpack_sbuffer_init (&sbuf);
    double due_at [BB_WINDOW];
    uint64_t slot_rid [BB_WINDOW];
    uint64_t inflight = 0;
    double interval = self->rate > 0? (double) self->batch / self->rate: 0;
    double due = self->start + self->phase;
    double drain_deadline = self->deadline + 10;
    //  Paced: every request due before the deadline, however late (bounded)
    double last_send = interval > 0? self->deadline + BB_PACE_GRACE_S: self->deadline;
    zmq_pollitem_t item = { handle, 0, ZMQ_POLLIN, 0 };
    zmq_msg_t frame;
    zmq_msg_init (&frame);
    while (true) {
        double now = bench_now ();
        bool sending = !bb_interrupted && now < last_send && due < self->deadline
                    && self->requests < self->max_requests;
        if (!sending && (inflight == 0 || now > drain_deadline || bb_interrupted))
            break;
        //  Rate-limited: send when the request is due, not before
        while (sending && inflight < BB_WINDOW && (interval == 0 || now >= due)) {
            uint64_t rid = ++self->requests;
            //  Latency counts from the scheduled time when sent late (a
            //  stalled broker cannot hide its stall), else from the send;
            //  the events carry the same time for their fanout latency
            double sent_at = bench_now ();
            due_at [rid % BB_WINDOW] = interval > 0 && due < sent_at? due: sent_at;
            sbuf.size = 0;
            s_pack_publish (&sbuf, rid, self->batch, self->payload,
                            (uint64_t) (due_at [rid % BB_WINDOW] * 1e9));
            slot_rid [rid % BB_WINDOW] = rid;
            zmq_send (handle, "PUBLISH", 7, ZMQ_SNDMORE);
            zmq_send (handle, sbuf.data, sbuf.size, 0);
            inflight++;
            due += interval;
            now = bench_now ();
            sending = now < last_send && due < self->deadline
                   && self->requests < self->max_requests;
        }
        //  Paced: the poll (reading ACKs) until the last whole ms before
        //  the deadline, then the replies already there and a plain sleep
        //  to it: no busy wait stealing the broker's CPU, no request sent
        //  early, and no ACK left unread for longer than a sleep
        long timeout = 100;
        bool sleep_to_due = false;
        if (sending && interval > 0 && inflight < BB_WINDOW) {
            sleep_to_due = due - now < 0.001;
            timeout = sleep_to_due? 0: (long) ((due - now) * 1000);
        }
        if (zmq_poll (&item, 1, timeout) <= 0) {
            if (sleep_to_due)
                bench_sleep_until (due);
            continue;
        }
        //  Every reply already waiting: [command, body]
        while (zmq_msg_recv (&frame, handle, ZMQ_DONTWAIT) >= 0) {
            char command [8] = "";
            size_t len = zmq_msg_size (&frame);
            memcpy (command, zmq_msg_data (&frame), len < 7? len: 7);
            if (!zmq_msg_more (&frame) || zmq_msg_recv (&frame, handle, 0) < 0)
                continue;
            uint64_t rid = 0;
            bool has_rid = s_reply_rid (zmq_msg_data (&frame), zmq_msg_size (&frame), &rid);
            while (zmq_msg_more (&frame) && zmq_msg_recv (&frame, handle, 0) >= 0)
                ;
            double at = bench_now ();
            if (!has_rid || slot_rid [rid % BB_WINDOW] != rid)
                continue;               //  not one of ours in flight
            slot_rid [rid % BB_WINDOW] = 0;
            inflight--;
            self->finished = at;
            if (streq (command, "ACK")) {
                self->acked += self->batch;
                bb_samples_add (&self->latency, at - due_at [rid % BB_WINDOW]);
            }
            else
            if (self->errors++ == 0)
                snprintf (self->error, sizeof self->error, "%s", command);
        }
        if (sleep_to_due)
            bench_sleep_until (due);
    }
    zmq_msg_close (&frame);
    msgpack_sbuffer_destroy (&sbuf);
    zsock_destroy (&dealer);
    return NULL;
}


//  threads publishers for seconds (or total_events), rate events/s in
//  all (0: as fast as they go).  Returns 0, or -1 when nothing was ACKed.
int
bb_publish (const char *api, int threads, size_t batch, size_t payload, double rate,
           double seconds, uint64_t total_events, bb_result_t *result)
{
    bb_samples_t all;
    bb_samples_init (&all, 0);
    int rc = bb_publish_samples (api, threads, batch, payload, rate, seconds, total_events,
                                 result, &all);
    bb_samples_fini (&all);
    return rc;
}

size_t
bb_envelope_size (size_t payload)
{
    herald_event_t event;
    memset (&event, 0, sizeof event);
    event.topic = "bench.t42";
    event.topic_len = strlen (event.topic);
    event.seq = 1000000;
    event.ver = 10000;
    event.ts = 1700000000000000000ull;
    event.data = bb_pool;
    event.data_len = payload;
    return herald_event_encoded_size (&event);
}

size_t
bb_pace_batch (double rate)
{
    double events = rate * BB_TICK_S;
    size_t batch = events > 0? (size_t) events: 0;
    if ((double) batch < events)
        batch++;
    return batch? batch: 1;
}

//  ---------------------------------------------------------------------
//  Fanout

typedef struct {
    const char *endpoint;
    size_t stride;                      //  keep one latency sample in stride
    atomic_bool *stop;
    atomic_int *ready;
    atomic_uint_fast64_t delivered;     //  events received
    double last;
    bb_samples_t latency;
} s_subscriber_t;

static void *
s_subscriber (void *args)
{
    s_subscriber_t *self = (s_subscriber_t *) args;
    //  The high-water mark before connecting: a connection takes the
    //  options the socket had when it was made
    zsock_t *sub = zsock_new (ZMQ_SUB);
    if (!sub)
        return NULL;
    if (bb_socket_hook)
        bb_socket_hook (sub);
    zsock_set_rcvhwm (sub, 100000);
    zsock_set_rcvtimeo (sub, 50);
    zsock_set_subscribe (sub, "bench.");
    if (zsock_connect (sub, "%s", self->endpoint) != 0) {
        zsock_destroy (&sub);
        return NULL;
    }
    void *handle = zsock_resolve (sub);
    zmq_msg_t frame;
    zmq_msg_init (&frame);
    bool warm = false;
    uint64_t count = 0;
    while (!atomic_load (self->stop)) {
        if (zmq_msg_recv (&frame, handle, 0) < 0 || zmq_msg_more (&frame))
            continue;                   //  a timeout, or the topic frame
        //  The warm-up events are "bench.warm": counted apart
        if (!warm) {
            warm = true;
            atomic_fetch_add (self->ready, 1);
        }
        size_t size = zmq_msg_size (&frame);
        if (size < 16)
            continue;
        //  The envelope ends with data, whose last 8 bytes are the send time
        uint64_t stamp;
        memcpy (&stamp, (const uint8_t *) zmq_msg_data (&frame) + size - sizeof stamp,
                sizeof stamp);
        uint64_t now = bb_now_ns ();
        atomic_fetch_add_explicit (&self->delivered, 1, memory_order_relaxed);
        self->last = (double) now / 1e9;
        if (count++ % self->stride == 0 && now > stamp)
            bb_samples_add (&self->latency, (double) (now - stamp) / 1e9);
    }
    zmq_msg_close (&frame);
    zsock_destroy (&sub);
    return NULL;
}


//  subscribers SUB threads on the broker's fanout while one publisher
//  publishes 100 B events for seconds, as fast as it can (rate 0) or at
//  rate events/s.  Returns 0 or -1.
int
bb_fanout (const bb_broker_t *broker, int subscribers, double seconds, double rate,
           bb_fan_result_t *result)
{
    memset (result, 0, sizeof *result);
    s_subscriber_t sub [16];
    pthread_t thread [16];
    atomic_bool stop;
    atomic_int ready;
    atomic_init (&stop, false);
    atomic_init (&ready, 0);
    int started = 0;
    for (; started < subscribers && started < 16; started++) {
        s_subscriber_t *self = &sub [started];
        memset (self, 0, sizeof *self);
        atomic_init (&self->delivered, 0);
        self->endpoint = broker->proc->fanout;
        //  Saturated, a sample per published event in all; paced (a few
        //  thousand a second), every delivery, for a steadier p99.9
        self->stride = rate > 0? 1: (size_t) subscribers;
        self->stop = &stop;
        self->ready = &ready;
        if (bb_samples_init (&self->latency, BB_MAX_SAMPLES))
            break;
        if (pthread_create (&thread [started], NULL, s_subscriber, self)) {
            bb_samples_fini (&self->latency);
            break;
        }
    }
    //  Publish single events until every subscriber has one (the slow-
    //  joiner problem), then forget them
    bb_result_t warm;
    double deadline = bench_now () + 10;
    while (atomic_load (&ready) < started && bench_now () < deadline && !bb_interrupted)
        bb_publish (broker->proc->api, 1, 1, 100, 0, 0.05, 1, &warm);
    zclock_sleep (200);
    uint64_t before [16];
    for (int i = 0; i < started; i++)
        before [i] = atomic_load (&sub [i].delivered);
    double start = bench_now ();
    bb_result_t pub;
    bb_publish (broker->proc->api, 1, rate > 0? bb_pace_batch (rate): 100, 100, rate, seconds,
                UINT64_MAX / 2, &pub);
    result->published = pub.acked;
    //  Until the subscribers stop receiving (bounded)
    uint64_t seen = 0, quiet = 0;
    deadline = bench_now () + 5;
    while (quiet < 3 && bench_now () < deadline) {
        zclock_sleep (100);
        uint64_t total = 0;
        for (int i = 0; i < started; i++)
            total += atomic_load (&sub [i].delivered) - before [i];
        quiet = total == seen? quiet + 1: 0;
        seen = total;
    }
    atomic_store (&stop, true);
    bb_samples_t all;
    bb_samples_init (&all, 0);
    double last = start;
    for (int i = 0; i < started; i++) {
        pthread_join (thread [i], NULL);
        result->delivered += atomic_load (&sub [i].delivered) - before [i];
        if (sub [i].last > last)
            last = sub [i].last;
        bb_samples_merge (&all, &sub [i].latency);
        bb_samples_fini (&sub [i].latency);
    }
    //  start is S_CONNECT_S before the publisher's first request (bb_publish)
    double elapsed = last - (start + S_CONNECT_S);
    result->rate = elapsed > 0? (double) result->delivered / elapsed: 0;
    result->p50 = bb_samples_percentile (&all, 50);
    result->p99 = bb_samples_percentile (&all, 99);
    result->p999 = bb_samples_percentile (&all, 99.9);
    bb_samples_fini (&all);
    uint64_t expected = result->published * (uint64_t) started;
    if (result->delivered < expected)
        bb_problem ("fanout to %d subscribers: %" PRIu64 " of %" PRIu64 " events delivered "
                   "(%" PRIu64 " dropped: PUB high-water mark)", started,
                   result->delivered, expected, expected - result->delivered);
    return started == subscribers && result->delivered > 0? 0: -1;
}

//  ---------------------------------------------------------------------
//  Replay

//  REPLAY from 1 with credit 1,000,000, refilled as events arrive, until
//  END (or timeout s).  Returns events/s, or -1; *events is the count.
double
bb_replay (const bb_broker_t *broker, uint64_t rid, double timeout, uint64_t *events)
{
    *events = 0;
    zsock_t *dealer = zsock_new (ZMQ_DEALER);
    if (!dealer)
        return -1;
    if (bb_socket_hook)
        bb_socket_hook (dealer);
    zsock_set_rcvhwm (dealer, 100000);     //  before connecting, to apply
    if (zsock_connect (dealer, "%s", broker->proc->api) != 0) {
        zsock_destroy (&dealer);
        return -1;
    }
    void *handle = zsock_resolve (dealer);
    msgpack_sbuffer sbuf;
    msgpack_sbuffer_init (&sbuf);
    msgpack_packer pk;
    msgpack_packer_init (&pk, &sbuf, msgpack_sbuffer_write);
    msgpack_pack_map (&pk, 3);
    msgpack_pack_str_with_body (&pk, "rid", 3);
    msgpack_pack_uint64 (&pk, rid);
    msgpack_pack_str_with_body (&pk, "from", 4);
    msgpack_pack_uint64 (&pk, 1);
    msgpack_pack_str_with_body (&pk, "credit", 6);
    msgpack_pack_uint64 (&pk, 1000000);
    double start = bench_now (), last = start;
    zmq_send (handle, "REPLAY", 6, ZMQ_SNDMORE);
    zmq_send (handle, sbuf.data, sbuf.size, 0);
    zmq_msg_t frame;
    zmq_msg_init (&frame);
    zmq_pollitem_t item = { handle, 0, ZMQ_POLLIN, 0 };
    uint64_t count = 0, unrefilled = 0;
    bool ended = false;
    char command [8] = "";
    while (!ended && !bb_interrupted && bench_now () - start < timeout) {
        if (zmq_poll (&item, 1, 100) <= 0)
            continue;
        while (zmq_msg_recv (&frame, handle, ZMQ_DONTWAIT) >= 0) {
            size_t len = zmq_msg_size (&frame);
            memset (command, 0, sizeof command);
            memcpy (command, zmq_msg_data (&frame), len < 7? len: 7);
            size_t frames = 1;
            while (zmq_msg_more (&frame) && zmq_msg_recv (&frame, handle, 0) >= 0)
                frames++;
            if (streq (command, "EVENTS") && frames > 2) {
                count += frames - 2;
                unrefilled += frames - 2;
            }
            else
            if (!streq (command, "EVENTS")) {
                ended = true;           //  END, or an ERROR
                break;
            }
            //  Keep the broker's credit near 1,000,000
            if (unrefilled >= 100000)
                break;
        }
        last = bench_now ();
        if (!ended && unrefilled >= 100000) {
            sbuf.size = 0;
            msgpack_pack_map (&pk, 2);
            msgpack_pack_str_with_body (&pk, "rid", 3);
            msgpack_pack_uint64 (&pk, rid);
            msgpack_pack_str_with_body (&pk, "credit", 6);
            msgpack_pack_uint64 (&pk, unrefilled);
            zmq_send (handle, "CREDIT", 6, ZMQ_SNDMORE);
            zmq_send (handle, sbuf.data, sbuf.size, 0);
            unrefilled = 0;
        }
    }
    zmq_msg_close (&frame);
    msgpack_sbuffer_destroy (&sbuf);
    zsock_destroy (&dealer);
    *events = count;
    if (!ended)
        bb_problem ("REPLAY did not END within %.0f s (%" PRIu64 " events)", timeout, count);
    else
    if (!streq (command, "END"))
        bb_problem ("REPLAY ended with %s after %" PRIu64 " events", command, count);
    return ended && streq (command, "END") && last > start? (double) count / (last - start): -1;
}

//  bb_publish, also handing back every ACK latency sample (for other
//  percentiles than p50 and p99): latency, set up by the caller with
//  bb_samples_init, gets them all merged in.  bench/compare uses it.
int
bb_publish_samples (const char *api, int threads, size_t batch, size_t payload, double rate,
                    double seconds, uint64_t total_events, bb_result_t *result,
                    bb_samples_t *latency)
{
    memset (result, 0, sizeof *result);
    if (s_nonce == 0)
        s_nonce = (uint64_t) time (NULL) << 20 ^ (uint64_t) getpid ();
    s_publisher_t pub [16];
    pthread_t thread [16];
    if (threads > 16)
        threads = 16;
    //  Time for every thread to start and connect its DEALER
    double start = bench_now () + S_CONNECT_S;
    int started = 0;
    for (; started < threads; started++) {
        s_publisher_t *self = &pub [started];
        memset (self, 0, sizeof *self);
        self->api = api;
        self->batch = batch;
        self->payload = payload;
        self->rate = rate / threads;
        //  Rounded up: the events sent are a whole number of requests
        uint64_t per_round = (uint64_t) batch * (uint64_t) threads;
        self->max_requests = (total_events + per_round - 1) / per_round;
        self->start = start;
        self->deadline = start + seconds;
        //  Spread the publishers' schedules evenly, so that their requests
        //  are not all due at the same instant
        if (self->rate > 0)
            self->phase = (double) batch / self->rate * started / threads;
        if (bb_samples_init (&self->latency, BB_MAX_SAMPLES))
            break;
        if (pthread_create (&thread [started], NULL, s_publisher, self)) {
            bb_samples_fini (&self->latency);
            break;
        }
    }
    double finished = start;
    for (int i = 0; i < started; i++) {
        pthread_join (thread [i], NULL);
        result->acked += pub [i].acked;
        result->errors += pub [i].errors;
        if (pub [i].errors)
            bb_problem ("PUBLISH got %" PRIu64 " ERROR replies (%s) with %d publishers",
                       pub [i].errors, pub [i].error, threads);
        if (pub [i].finished > finished)
            finished = pub [i].finished;
        bb_samples_merge (latency, &pub [i].latency);
        bb_samples_fini (&pub [i].latency);
    }
    result->rate = finished > start? (double) result->acked / (finished - start): 0;
    result->p50 = bb_samples_percentile (latency, 50);
    result->p99 = bb_samples_percentile (latency, 99);
    return result->acked > 0? 0: -1;
}
