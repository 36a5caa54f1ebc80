/*  =========================================================================
    cmp_herald - Herald (heraldd) under the comparison's workloads

    heraldd runs as bench/broker_bench runs it (bb_broker_start: the real
    binary on free ports, a fresh data dir) with --durability sync (WAL
    fsynced before the ACK) or async.  Publishing and fanout are
    broker_bench's own clients (bb_publish_samples, bb_fanout): a DEALER
    per publisher keeping BB_WINDOW PUBLISH requests of CMP_BATCH events in
    flight (CMP_WINDOW events), SUB sockets on the fanout.  The paced
    fanout's publisher is bb_publish's rate limit, on the schedule that
    cmp_pacer_t keeps for the peers.  publish_one is the same publish with
    one event per PUBLISH, NATS's client pattern (s_publisher_one).  Every event carries its 16-byte id,
    the idempotency key the broker dedups by.

    The log for catch-up and the sparse read is built here (the rare
    topic's events spread through it), then read with REPLAY from seq 1
    (bb_replay) and with READ of the topic (variant 0) or REPLAY with the
    topic as prefix (variant 1).
    =========================================================================
*/

#include "compare.h"

#include <czmq.h>
#include <inttypes.h>
#include <msgpack.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const s_durabilities [] = { "sync", "async", NULL };
static const char *const s_classes [] = { "sync", "async", NULL };

static int
s_start (cmp_server_t *self, const char *tag, const char *durability)
{
    char full [64];
    snprintf (full, sizeof full, "herald-%s", tag);
    if (bb_broker_start (&self->herald, full, durability))
        return -1;
    snprintf (self->durability, sizeof self->durability, "%s", durability);
    snprintf (self->dir, sizeof self->dir, "%s", self->herald.proc->dir);
    snprintf (self->url, sizeof self->url, "%s", self->herald.proc->api);
    self->pid = self->herald.proc->pid;
    return 0;
}

static void
s_stop (cmp_server_t *self)
{
    if (!self->herald.proc)
        return;
    self->peak_rss = cmp_proc_peak_rss (self->pid);
    bb_broker_stop (&self->herald);
    self->pid = 0;
}

static int
s_publish (cmp_server_t *self, int threads, size_t payload, double seconds,
           uint64_t max_events, cmp_pub_t *result)
{
    memset (result, 0, sizeof *result);
    bb_samples_t latency;
    if (bb_samples_init (&latency, 0))
        return -1;
    bb_result_t got;
    int rc = bb_publish_samples (self->url, threads, CMP_BATCH, payload, 0, seconds,
                                 max_events, &got, &latency);
    result->rate = got.rate;
    result->acked = got.acked;
    result->errors = got.errors;
    cmp_percentiles (&latency, &result->p50, &result->p99, &result->p999);
    bb_samples_fini (&latency);
    return rc;
}

static int
s_fanout (cmp_server_t *self, int subscribers, double seconds, double rate,
          cmp_fan_t *result)
{
    memset (result, 0, sizeof *result);
    bb_fan_result_t got;
    int rc = bb_fanout (&self->herald, subscribers, seconds, rate, &got);
    result->rate = got.rate;
    result->p50 = got.p50;
    result->p99 = got.p99;
    result->p999 = got.p999;
    result->published = got.published;
    result->delivered = got.delivered;
    return rc;
}

//  ---------------------------------------------------------------------
//  One event per PUBLISH: NATS's client pattern, for a like-for-like row
//
//  s_publish batches CMP_BATCH events per PUBLISH (the protocol's unit, one
//  ACK per batch); NATS's js_PublishAsync sends one message per event with
//  an ACK each.  This publisher does what cmp_nats.c's does, over HWP/1:
//  one event per PUBLISH and one ACK each, CMP_WINDOW events (= requests)
//  in flight, places taken CMP_BATCH or more at a time once that many are
//  free, the event stamped as it is packed, its latency from that send to
//  its ACK.  NATS's ACK handler runs on the library's own thread; a DEALER
//  has one owner, so this thread reads the ACKs waiting after every
//  CMP_BATCH sends instead, and while it waits for free places.  Its queues
//  are unbounded (HWM 0): the window bounds what waits, and an ACK the
//  ZeroMQ I/O thread cannot queue would be lost, not slowed.

//  The rid of a reply body, or false when it has none.
static bool
s_reply_rid (const void *data, size_t size, uint64_t *rid)
{
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

typedef struct {
    double sent_at [CMP_WINDOW];        //  by rid % CMP_WINDOW
    uint64_t rid [CMP_WINDOW];          //  0: the slot is free
} s_window_t;

//  Read every reply already waiting: ACKs free their places.  Returns the
//  replies read.
static uint64_t
s_read_acks (cmp_publisher_t *self, void *handle, s_window_t *window, zmq_msg_t *frame)
{
    uint64_t read = 0;
    while (zmq_msg_recv (frame, handle, ZMQ_DONTWAIT) >= 0) {
        char command [8] = "";
        size_t len = zmq_msg_size (frame);
        memcpy (command, zmq_msg_data (frame), len < 7? len: 7);
        if (!zmq_msg_more (frame) || zmq_msg_recv (frame, handle, 0) < 0)
            continue;
        uint64_t rid = 0;
        bool has_rid = s_reply_rid (zmq_msg_data (frame), zmq_msg_size (frame), &rid);
        while (zmq_msg_more (frame) && zmq_msg_recv (frame, handle, 0) >= 0)
            ;
        double at = bench_now ();
        if (!has_rid || window->rid [rid % CMP_WINDOW] != rid)
            continue;                   //  not one of ours in flight
        window->rid [rid % CMP_WINDOW] = 0;
        self->inflight--;
        read++;
        if (streq (command, "ACK")) {
            self->acked++;
            self->finished = at;
            bb_samples_add (&self->latency, at - window->sent_at [rid % CMP_WINDOW]);
        }
        else
        if (self->errors++ == 0)
            snprintf (self->error, sizeof self->error, "%s", command);
    }
    return read;
}

static void *
s_publisher_one (void *args)
{
    cmp_publisher_t *self = (cmp_publisher_t *) args;
    s_window_t *window = (s_window_t *) calloc (1, sizeof *window);
    zsock_t *dealer = zsock_new (ZMQ_DEALER);
    if (!window || !dealer) {
        free (window);
        zsock_destroy (&dealer);
        return NULL;
    }
    zsock_set_sndhwm (dealer, 0);
    zsock_set_rcvhwm (dealer, 0);
    if (zsock_connect (dealer, "%s", self->server->url)) {
        snprintf (self->error, sizeof self->error, "cannot connect to %.70s", self->server->url);
        self->errors++;
        zsock_destroy (&dealer);
        free (window);
        return NULL;
    }
    void *handle = zsock_resolve (dealer);
    double wait = self->start - bench_now ();
    if (wait > 0)
        zclock_sleep ((int) (wait * 1000));
    msgpack_sbuffer sbuf;
    msgpack_sbuffer_init (&sbuf);
    zmq_msg_t frame;
    zmq_msg_init (&frame);
    uint8_t data [2048], id [16];
    char topic [32];
    uint64_t rid = 0, sent = 0;
    double last_progress = bench_now ();
    bool sending = true;
    while (!bb_interrupted) {
        double now = bench_now ();
        sending = sending && now < self->deadline && sent < self->max_events;
        if (!sending && self->inflight == 0)
            break;
        if (now - last_progress > 10) {
            //  No ACK for 10 s, as cmp_nats.c gives up
            if (self->errors++ == 0)
                snprintf (self->error, sizeof self->error, "no ACK for 10 s, %" PRIu64
                          " in flight", self->inflight);
            break;
        }
        if (sending && self->inflight <= CMP_WINDOW - CMP_BATCH) {
            uint64_t places = CMP_WINDOW - self->inflight;
            for (uint64_t i = 0; i < places && sent < self->max_events; i++) {
                uint64_t counter;
                int topic_len = cmp_next_event (self, &counter, topic, sizeof topic);
                if (topic_len < 0) {
                    sending = false;
                    break;
                }
                cmp_event_id (counter, id, NULL);
                rid++;
                sbuf.size = 0;
                msgpack_packer pk;
                msgpack_packer_init (&pk, &sbuf, msgpack_sbuffer_write);
                msgpack_pack_map (&pk, 2);
                msgpack_pack_str_with_body (&pk, "rid", 3);
                msgpack_pack_uint64 (&pk, rid);
                msgpack_pack_str_with_body (&pk, "events", 6);
                msgpack_pack_array (&pk, 1);
                msgpack_pack_map (&pk, 3);
                msgpack_pack_str_with_body (&pk, "id", 2);
                msgpack_pack_bin_with_body (&pk, id, sizeof id);
                msgpack_pack_str_with_body (&pk, "topic", 5);
                msgpack_pack_str_with_body (&pk, topic, (size_t) topic_len);
                msgpack_pack_str_with_body (&pk, "data", 4);
                cmp_payload (counter, data, self->payload, 0);
                msgpack_pack_bin_with_body (&pk, data, self->payload);
                window->rid [rid % CMP_WINDOW] = rid;
                window->sent_at [rid % CMP_WINDOW] = bench_now ();
                zmq_send (handle, "PUBLISH", 7, ZMQ_SNDMORE);
                zmq_send (handle, sbuf.data, sbuf.size, 0);
                self->inflight++;
                sent++;
                if (sent % CMP_BATCH == 0 && s_read_acks (self, handle, window, &frame))
                    last_progress = bench_now ();
            }
        }
        //  Wait for ACKs: CMP_BATCH free places, or the last ones
        zmq_pollitem_t item = { handle, 0, ZMQ_POLLIN, 0 };
        if (zmq_poll (&item, 1, 100) > 0 && s_read_acks (self, handle, window, &frame))
            last_progress = bench_now ();
    }
    zmq_msg_close (&frame);
    msgpack_sbuffer_destroy (&sbuf);
    zsock_destroy (&dealer);
    free (window);
    return NULL;
}

static int
s_publish_one (cmp_server_t *self, int threads, size_t payload, double seconds,
               uint64_t max_events, cmp_pub_t *result)
{
    return cmp_run_publishers (self, "herald publish, 1 event per PUBLISH", s_publisher_one,
                               threads, payload, seconds, max_events, 0, 0, result) < 0? -1: 0;
}

//  ---------------------------------------------------------------------
//  Building the log: 2 DEALERs, BB_WINDOW requests of CMP_BATCH in flight

typedef struct {
    const char *api;
    uint64_t total;
    atomic_uint_fast64_t *next;         //  the next event index
    uint64_t acked, errors;
} s_builder_t;

//  Pack a PUBLISH of up to CMP_BATCH events from *next on.  Returns the
//  events packed (0 when the log is complete).
static size_t
s_pack_build (msgpack_sbuffer *sbuf, uint64_t rid, s_builder_t *self)
{
    uint64_t first = atomic_fetch_add (self->next, CMP_BATCH);
    if (first >= self->total)
        return 0;
    size_t count = self->total - first < CMP_BATCH? (size_t) (self->total - first): CMP_BATCH;
    msgpack_packer pk;
    msgpack_packer_init (&pk, sbuf, msgpack_sbuffer_write);
    msgpack_pack_map (&pk, 2);
    msgpack_pack_str_with_body (&pk, "rid", 3);
    msgpack_pack_uint64 (&pk, rid);
    msgpack_pack_str_with_body (&pk, "events", 6);
    msgpack_pack_array (&pk, count);
    uint8_t id [16], data [100];
    char topic [32];
    for (size_t i = 0; i < count; i++) {
        uint64_t counter = cmp_next_counter ();
        cmp_event_id (counter, id, NULL);
        int topic_len = cmp_topic (first + i, self->total, topic, sizeof topic);
        cmp_payload (counter, data, sizeof data, 0);
        msgpack_pack_map (&pk, 3);
        msgpack_pack_str_with_body (&pk, "id", 2);
        msgpack_pack_bin_with_body (&pk, id, sizeof id);
        msgpack_pack_str_with_body (&pk, "topic", 5);
        msgpack_pack_str_with_body (&pk, topic, (size_t) topic_len);
        msgpack_pack_str_with_body (&pk, "data", 4);
        msgpack_pack_bin_with_body (&pk, data, sizeof data);
    }
    return count;
}

static void *
s_builder (void *args)
{
    s_builder_t *self = (s_builder_t *) args;
    zsock_t *dealer = zsock_new_dealer (self->api);
    if (!dealer)
        return NULL;
    void *handle = zsock_resolve (dealer);
    msgpack_sbuffer sbuf;
    msgpack_sbuffer_init (&sbuf);
    size_t batch [BB_WINDOW];
    uint64_t sent = 0, done = 0;
    bool more = true;
    double deadline = bench_now () + 3600;
    zmq_msg_t frame;
    zmq_msg_init (&frame);
    while (!bb_interrupted && bench_now () < deadline) {
        while (more && sent - done < BB_WINDOW) {
            sbuf.size = 0;
            size_t count = s_pack_build (&sbuf, sent + 1, self);
            if (count == 0) {
                more = false;
                break;
            }
            batch [sent % BB_WINDOW] = count;
            zmq_send (handle, "PUBLISH", 7, ZMQ_SNDMORE);
            zmq_send (handle, sbuf.data, sbuf.size, 0);
            sent++;
        }
        if (done == sent)
            break;
        zmq_pollitem_t item = { handle, 0, ZMQ_POLLIN, 0 };
        if (zmq_poll (&item, 1, 1000) <= 0)
            continue;
        //  Replies come in request order: [command, body]
        if (zmq_msg_recv (&frame, handle, 0) < 0)
            continue;
        bool ack = zmq_msg_size (&frame) == 3 && memcmp (zmq_msg_data (&frame), "ACK", 3) == 0;
        while (zmq_msg_more (&frame) && zmq_msg_recv (&frame, handle, 0) >= 0)
            ;
        if (ack)
            self->acked += batch [done % BB_WINDOW];
        else
            self->errors++;
        done++;
    }
    zmq_msg_close (&frame);
    msgpack_sbuffer_destroy (&sbuf);
    zsock_destroy (&dealer);
    return NULL;
}

static double
s_build (cmp_server_t *self, uint64_t events)
{
    atomic_uint_fast64_t next;
    atomic_init (&next, 0);
    s_builder_t builder [2];
    pthread_t thread [2];
    double start = bench_now ();
    int started = 0;
    for (; started < 2; started++) {
        builder [started] = (s_builder_t) { .api = self->url, .total = events, .next = &next };
        if (pthread_create (&thread [started], NULL, s_builder, &builder [started]))
            break;
    }
    uint64_t acked = 0, errors = 0;
    for (int i = 0; i < started; i++) {
        pthread_join (thread [i], NULL);
        acked += builder [i].acked;
        errors += builder [i].errors;
    }
    double elapsed = bench_now () - start;
    if (acked != events || errors)
        bb_problem ("herald: building the log, %" PRIu64 " of %" PRIu64 " ACKed, %" PRIu64
                    " errors", acked, events, errors);
    return acked > 0 && elapsed > 0? (double) acked / elapsed: -1;
}

//  ---------------------------------------------------------------------
//  Reading

static double
s_catchup (cmp_server_t *self, double timeout, uint64_t *count)
{
    static uint64_t rid = 5000;
    return bb_replay (&self->herald, ++rid, timeout, count);
}

//  READ of the rare topic (variant 0) or REPLAY from 1 with it as prefix
//  (variant 1), credit 1,000,000; counts envelopes until END.  Returns ms.
static double
s_sparse (cmp_server_t *self, int variant, double timeout, uint64_t *count)
{
    *count = 0;
    zsock_t *dealer = zsock_new_dealer (self->url);
    if (!dealer)
        return -1;
    void *handle = zsock_resolve (dealer);
    msgpack_sbuffer sbuf;
    msgpack_sbuffer_init (&sbuf);
    msgpack_packer pk;
    msgpack_packer_init (&pk, &sbuf, msgpack_sbuffer_write);
    msgpack_pack_map (&pk, 3);
    msgpack_pack_str_with_body (&pk, "rid", 3);
    msgpack_pack_uint64 (&pk, 77);
    if (variant == 0) {
        msgpack_pack_str_with_body (&pk, "topic", 5);
        msgpack_pack_str_with_body (&pk, CMP_SPARSE_TOPIC, strlen (CMP_SPARSE_TOPIC));
    }
    else {
        msgpack_pack_str_with_body (&pk, "prefixes", 8);
        msgpack_pack_array (&pk, 1);
        msgpack_pack_str_with_body (&pk, CMP_SPARSE_TOPIC, strlen (CMP_SPARSE_TOPIC));
    }
    msgpack_pack_str_with_body (&pk, "credit", 6);
    msgpack_pack_uint64 (&pk, 1000000);
    //  Connected before the clock starts, as the peers' clients are
    zclock_sleep (50);
    double start = bench_now ();
    const char *command = variant == 0? "READ": "REPLAY";
    zmq_send (handle, command, strlen (command), ZMQ_SNDMORE);
    zmq_send (handle, sbuf.data, sbuf.size, 0);
    zmq_msg_t frame;
    zmq_msg_init (&frame);
    bool ended = false, ok = false;
    zmq_pollitem_t item = { handle, 0, ZMQ_POLLIN, 0 };
    while (!ended && !bb_interrupted && bench_now () - start < timeout) {
        if (zmq_poll (&item, 1, 100) <= 0)
            continue;
        while (zmq_msg_recv (&frame, handle, ZMQ_DONTWAIT) >= 0) {
            bool events = zmq_msg_size (&frame) == 6
                       && memcmp (zmq_msg_data (&frame), "EVENTS", 6) == 0;
            ok = zmq_msg_size (&frame) == 3 && memcmp (zmq_msg_data (&frame), "END", 3) == 0;
            size_t frames = 1;
            while (zmq_msg_more (&frame) && zmq_msg_recv (&frame, handle, 0) >= 0)
                frames++;
            if (events && frames > 2)
                *count += frames - 2;
            else
            if (!events) {
                ended = true;
                break;
            }
        }
    }
    double elapsed = bench_now () - start;
    zmq_msg_close (&frame);
    msgpack_sbuffer_destroy (&sbuf);
    zsock_destroy (&dealer);
    if (!ended || !ok)
        bb_problem ("herald %s %s: %s after %" PRIu64 " events", command, CMP_SPARSE_TOPIC,
                    ended? "ended with an ERROR": "no END", *count);
    return ended && ok? elapsed * 1e3: -1;
}

const cmp_system_t cmp_herald = {
    .name = "herald",
    .durabilities = s_durabilities,
    .classes = s_classes,
    .relaxed = "async",
    .start = s_start,
    .stop = s_stop,
    .publish = s_publish,
    .publish_one = s_publish_one,
    .fanout = s_fanout,
    .build = s_build,
    .catchup = s_catchup,
    .sparse = s_sparse,
    .sparse_names = { "READ of the topic", "REPLAY with the topic as prefix" }
};
