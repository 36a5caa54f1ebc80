/*  =========================================================================
    clusterload - pipelined publishers against a cluster, recording every ACK

    See clusterload.h.  Each publisher thread owns everything it touches
    while it runs (its sockets, batches, rid table); the main thread reads
    only the atomic counters until cl_load_stop has joined it.
    =========================================================================
*/

#include "clusterload.h"
#include "testutil.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CL_PUBLISHERS_MAX   16
#define CL_DATA_MAX         96

typedef struct {
    uint32_t first;                 //  index of its first event
    uint32_t count;
    bool acked;
    uint64_t inflight_rid;          //  0: not in flight
    int inflight_node;
    uint64_t sent_ns;
} s_batch_t;

//  What one rid was: a PUBLISH of a batch, or a STATUS (batch 0).
typedef struct {
    uint32_t batch;                 //  index + 1; 0 for STATUS
    int node;
    uint64_t term_lo;               //  PUBLISH: the node's term known at send
    uint32_t gen;                   //  STATUS: its number on that node, from 1
} s_rid_t;

//  One ACK message's term record, before term_hi is known.
typedef struct {
    int node;
    uint64_t term_lo;
    uint32_t gen;                   //  STATUS sent to node before the ACK came
} s_ackrec_t;

typedef struct {
    cl_load_t *load;
    size_t number;
    pthread_t thread;
    bool started;
    uint64_t rng;
    //  Events: ids, topic index, and what the first ACK said
    uint8_t (*ids) [HERALD_ID_BYTES];
    uint16_t *topic;
    uint64_t *seq;
    uint64_t *ver;
    size_t events;
    size_t events_cap;
    s_batch_t *batches;
    size_t batch_count;
    size_t batch_cap;
    size_t *retry;                  //  ring of batch indexes to send again
    size_t retry_head, retry_len;
    size_t *inflight;               //  batch indexes sent and not yet answered
    size_t inflight_len;            //  (answered ones leave at the next scan)
    s_rid_t *rids;                  //  rid - 1 -> what it was
    size_t rid_count, rid_cap;
    s_ackrec_t *ackrecs;
    size_t ackrec_count, ackrec_cap;
    //  Per node: terms seen in STATUS replies, by their number
    uint64_t *terms [CU_NODES_MAX];
    size_t terms_cap [CU_NODES_MAX];
    uint32_t status_sent [CU_NODES_MAX];
    uint64_t status_rid [CU_NODES_MAX];
    uint64_t status_sent_ns [CU_NODES_MAX];
    uint64_t last_term [CU_NODES_MAX];
    bool need_probe [CU_NODES_MAX];
    cl_stats_t stats;
    char problem [512];
} s_publisher_t;

struct _cl_load_t {
    cl_options_t options;
    size_t nodes;
    char api [CU_NODES_MAX][64];
    s_publisher_t publishers [CL_PUBLISHERS_MAX];
    atomic_bool stop;
    atomic_uint_fast64_t drain_deadline;
    atomic_uint_fast64_t acked;
    atomic_uint_fast64_t acks_from [CU_NODES_MAX];
    bool joined;
    //  Merged after the join
    cu_acked_t *acked_events;
    size_t acked_count;
    cu_term_ack_t *term_acks;
    size_t term_count;
    cu_idset_t published;
    cl_stats_t stats;
    char problem [512];
};

static void
s_problem (s_publisher_t *self, const char *format, ...)
{
    if (self->problem [0])
        return;
    va_list args;
    va_start (args, format);
    vsnprintf (self->problem, sizeof self->problem, format, args);
    va_end (args);
}

//  Grow *array (of elem bytes each) to hold need entries.  0 or -1.
static int
s_grow (void **array, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap)
        return 0;
    size_t size = *cap? *cap * 2: 1024;
    while (size < need)
        size *= 2;
    void *grown = realloc (*array, size * elem);
    if (!grown)
        return -1;
    memset ((char *) grown + *cap * elem, 0, (size - *cap) * elem);
    *array = grown;
    *cap = size;
    return 0;
}

//  A new rid for what; 0 when out of memory.
static uint64_t
s_rid_new (s_publisher_t *self, s_rid_t what)
{
    if (s_grow ((void **) &self->rids, &self->rid_cap, self->rid_count + 1, sizeof *self->rids))
        return 0;
    self->rids [self->rid_count++] = what;
    return self->rid_count;
}

static s_rid_t *
s_rid_get (s_publisher_t *self, uint64_t rid)
{
    return rid >= 1 && rid <= self->rid_count? &self->rids [rid - 1]: NULL;
}

//  Make one batch of fresh events.  Returns its index, or -1 when the
//  publisher made all it may.
static long
s_batch_new (s_publisher_t *self)
{
    const cl_options_t *options = &self->load->options;
    if (self->events >= self->events_cap || self->batch_count >= self->batch_cap)
        return -1;
    size_t count = 1 + (size_t) (tu_rand (&self->rng) % options->batch_max);
    if (count > self->events_cap - self->events)
        count = self->events_cap - self->events;
    s_batch_t *batch = &self->batches [self->batch_count];
    memset (batch, 0, sizeof *batch);
    batch->first = (uint32_t) self->events;
    batch->count = (uint32_t) count;
    for (size_t at = 0; at < count; at++) {
        size_t event = self->events + at;
        //  Unique by construction (publisher, event) in the second half;
        //  the first half random-looking from the seed
        uint64_t mix = options->seed ^ ((uint64_t) self->number << 32 | event);
        tu_put_be64 (self->ids [event], tu_rand (&mix));
        tu_put_be64 (self->ids [event] + 8, ((uint64_t) self->number << 32 | event)
                                            ^ options->seed);
        self->topic [event] = (uint16_t) (tu_rand (&self->rng) % options->topics);
    }
    self->events += count;
    self->stats.batches++;
    return (long) self->batch_count++;
}

static void
s_send_publish (s_publisher_t *self, zsock_t **dealers, size_t index, int node)
{
    s_batch_t *batch = &self->batches [index];
    uint64_t rid = s_rid_new (self, (s_rid_t) { .batch = (uint32_t) index + 1, .node = node,
                                                .term_lo = self->last_term [node] });
    if (!rid) {
        s_problem (self, "publisher %zu: out of memory", self->number);
        return;
    }
    bu_event_t events [1024];
    char topics [1024][16];
    char data [1024][CL_DATA_MAX];
    for (size_t at = 0; at < batch->count && at < 1024; at++) {
        size_t event = batch->first + at;
        snprintf (topics [at], sizeof topics [at], "load/%u", self->topic [event]);
        //  Data says who made it, so a log can be read by eye
        snprintf (data [at], sizeof data [at], "p%zu e%zu", self->number, event);
        memset (&events [at], 0, sizeof events [at]);
        memcpy (events [at].id, self->ids [event], HERALD_ID_BYTES);
        events [at].topic = topics [at];
        events [at].data = data [at];
        events [at].data_len = strlen (data [at]);
    }
    msgpack_sbuffer sbuf;
    msgpack_sbuffer_init (&sbuf);
    bu_pack_publish (&sbuf, rid, events, batch->count);
    bu_send_sbuf (dealers [node], "PUBLISH", &sbuf);
    msgpack_sbuffer_destroy (&sbuf);
    batch->inflight_rid = rid;
    batch->inflight_node = node;
    batch->sent_ns = tu_mono_ns ();
    self->stats.sends++;
}

static void
s_send_status (s_publisher_t *self, zsock_t **dealers, int node)
{
    uint32_t gen = ++self->status_sent [node];
    uint64_t rid = s_rid_new (self, (s_rid_t) { .batch = 0, .node = node, .gen = gen });
    if (!rid)
        return;
    msgpack_sbuffer sbuf;
    msgpack_sbuffer_init (&sbuf);
    bu_pack_rid (&sbuf, rid);
    bu_send_sbuf (dealers [node], "STATUS", &sbuf);
    msgpack_sbuffer_destroy (&sbuf);
    self->status_rid [node] = rid;
    self->status_sent_ns [node] = tu_mono_ns ();
    self->need_probe [node] = false;
}

static void
s_retry_push (s_publisher_t *self, size_t index)
{
    if (self->retry_len < self->batch_cap)
        self->retry [(self->retry_head + self->retry_len++) % self->batch_cap] = index;
}

static long
s_retry_pop (s_publisher_t *self)
{
    while (self->retry_len) {
        size_t index = self->retry [self->retry_head];
        self->retry_head = (self->retry_head + 1) % self->batch_cap;
        self->retry_len--;
        if (!self->batches [index].acked && !self->batches [index].inflight_rid)
            return (long) index;
    }
    return -1;
}

static void
s_on_ack (s_publisher_t *self, int node, bu_reply_t *reply)
{
    s_rid_t *what = s_rid_get (self, reply->body.rid);
    if (!what || !what->batch || what->node != node) {
        s_problem (self, "publisher %zu: an ACK for rid %" PRIu64 " it did not send there",
                   self->number, reply->body.rid);
        return;
    }
    size_t index = what->batch - 1;
    s_batch_t *batch = &self->batches [index];
    if (reply->body.ack.count != batch->count) {
        s_problem (self, "publisher %zu: ACK of %zu entries for a batch of %u", self->number,
                   reply->body.ack.count, batch->count);
        self->stats.inconsistent++;
        return;
    }
    for (size_t at = 0; at < batch->count; at++) {
        size_t event = batch->first + at;
        uint64_t seq = reply->body.ack.seq [at], ver = reply->body.ack.ver [at];
        if (!batch->acked) {
            self->seq [event] = seq;
            self->ver [event] = ver;
        }
        else
        if (self->seq [event] != seq || self->ver [event] != ver) {
            self->stats.inconsistent++;
            s_problem (self, "publisher %zu: event %zu ACKed at seq %" PRIu64 " ver %" PRIu64
                       ", then by n%d at seq %" PRIu64 " ver %" PRIu64, self->number, event,
                       self->seq [event], self->ver [event], node + 1, seq, ver);
        }
    }
    if (!batch->acked) {
        batch->acked = true;
        atomic_fetch_add (&self->load->acked, batch->count);
        self->stats.acked_events += batch->count;
    }
    if (batch->inflight_rid == reply->body.rid)
        batch->inflight_rid = 0;
    self->stats.acks++;
    atomic_fetch_add (&self->load->acks_from [node], 1);
    if (!s_grow ((void **) &self->ackrecs, &self->ackrec_cap, self->ackrec_count + 1,
                 sizeof *self->ackrecs))
        self->ackrecs [self->ackrec_count++] = (s_ackrec_t) {
            .node = node, .term_lo = what->term_lo, .gen = self->status_sent [node] };
    self->need_probe [node] = true;
}

//  Returns the node to send to next.
static int
s_on_error (s_publisher_t *self, int node, int target, bu_reply_t *reply, uint64_t *hold_until)
{
    const cl_options_t *options = &self->load->options;
    if (!reply->body.has_rid)
        return target;
    s_rid_t *what = s_rid_get (self, reply->body.rid);
    if (!what || !what->batch)
        return target;
    s_batch_t *batch = &self->batches [what->batch - 1];
    if (batch->inflight_rid == reply->body.rid) {
        batch->inflight_rid = 0;
        if (!batch->acked)
            s_retry_push (self, what->batch - 1);
    }
    if (reply->body.error.code != HERALD_ERR_NOT_LEADER) {
        self->stats.other_errors++;
        s_problem (self, "publisher %zu: ERROR %s from n%d: %.*s", self->number,
                   herald_err_code (reply->body.error.code), node + 1,
                   (int) reply->body.error.message.len, reply->body.error.message.ptr);
        *hold_until = tu_mono_ns () + (uint64_t) options->backoff_ms * 1000000ULL;
        return target;
    }
    self->stats.not_leader++;
    herald_str_t leader = reply->body.error.leader;
    if (leader.ptr) {
        for (size_t index = 0; index < self->load->nodes; index++)
            if (strlen (self->load->api [index]) == leader.len
            &&  !memcmp (self->load->api [index], leader.ptr, leader.len))
                return (int) index == node? target: (int) index;
    }
    if (node == target) {
        *hold_until = tu_mono_ns () + (uint64_t) options->backoff_ms * 1000000ULL;
        return (target + 1) % (int) self->load->nodes;
    }
    return target;
}

static void
s_on_status (s_publisher_t *self, int node, zmsg_t *msg)
{
    zframe_t *body = zmsg_next (msg);
    if (!body)
        return;
    cu_status_t status;
    if (cu_status_parse (zframe_data (body), zframe_size (body), &status) != 0)
        return;
    msgpack_unpacked unpacked;
    msgpack_unpacked_init (&unpacked);
    uint64_t rid = 0;
    if (msgpack_unpack_next (&unpacked, (const char *) zframe_data (body), zframe_size (body), NULL)
        == MSGPACK_UNPACK_SUCCESS && unpacked.data.type == MSGPACK_OBJECT_MAP)
        for (uint32_t at = 0; at < unpacked.data.via.map.size; at++) {
            msgpack_object_kv *kv = &unpacked.data.via.map.ptr [at];
            if (kv->key.type == MSGPACK_OBJECT_STR && kv->key.via.str.size == 3
            &&  !memcmp (kv->key.via.str.ptr, "rid", 3)
            &&  kv->val.type == MSGPACK_OBJECT_POSITIVE_INTEGER)
                rid = kv->val.via.u64;
        }
    msgpack_unpacked_destroy (&unpacked);
    s_rid_t *what = s_rid_get (self, rid);
    if (!what || what->batch || what->node != node || !status.term)
        return;
    if (!s_grow ((void **) &self->terms [node], &self->terms_cap [node], what->gen + 1,
                 sizeof (uint64_t)))
        self->terms [node][what->gen] = status.term;
    if (status.term > self->last_term [node])
        self->last_term [node] = status.term;
    if (self->status_rid [node] == rid)
        self->status_rid [node] = 0;
}

static void
s_receive (s_publisher_t *self, zsock_t **dealers, int node, int *target, uint64_t *hold_until)
{
    //  Everything waiting now, bounded
    for (int count = 0; count < 1000; count++) {
        zmq_pollitem_t item = { zsock_resolve (dealers [node]), 0, ZMQ_POLLIN, 0 };
        if (zmq_poll (&item, 1, 0) <= 0)
            return;
        bu_reply_t reply;
        if (bu_recv_reply (dealers [node], &reply, 0) != 0) {
            bu_reply_fini (&reply);
            return;
        }
        if (!strcmp (reply.command, "STATUS")) {
            zmsg_first (reply.msg);
            s_on_status (self, node, reply.msg);
        }
        else
        if (reply.type == HERALD_MSG_ACK && reply.rc == HERALD_OK)
            s_on_ack (self, node, &reply);
        else
        if (reply.type == HERALD_MSG_ERROR && reply.rc == HERALD_OK)
            *target = s_on_error (self, node, *target, &reply, hold_until);
        else {
            self->stats.other_errors++;
            s_problem (self, "publisher %zu: a reply '%s' from n%d that does not decode (%s)",
                       self->number, reply.command, node + 1, reply.err.message);
        }
        bu_reply_fini (&reply);
    }
}

static bool
s_all_acked (s_publisher_t *self)
{
    for (size_t index = 0; index < self->batch_count; index++)
        if (!self->batches [index].acked)
            return false;
    return true;
}

static void *
s_publisher_thread (void *arg)
{
    s_publisher_t *self = arg;
    cl_load_t *load = self->load;
    const cl_options_t *options = &load->options;
    int nodes = (int) load->nodes;
    zsock_t *dealers [CU_NODES_MAX] = { NULL };
    for (int node = 0; node < nodes; node++)
        if (!(dealers [node] = bu_dealer_new (load->api [node]))) {
            s_problem (self, "publisher %zu: no socket", self->number);
            goto done;
        }
    int target = (int) (self->number % (size_t) nodes);
    uint64_t hold_until = 0;
    uint64_t timeout_ns = (uint64_t) options->timeout_ms * 1000000ULL;
    //  Bounded: a publisher never runs longer than ten minutes
    uint64_t started = tu_mono_ns ();
    uint64_t hard_deadline = started + 600ULL * 1000000000ULL;
    while (true) {
        uint64_t now = tu_mono_ns ();
        bool stopping = atomic_load (&load->stop);
        if (stopping && (s_all_acked (self) || now >= atomic_load (&load->drain_deadline)))
            break;
        if (now >= hard_deadline) {
            s_problem (self, "publisher %zu: ran ten minutes", self->number);
            break;
        }
        //  Scan what is in flight: answered ones leave; unanswered too long
        //  go to the retry queue (the node died or hangs; a late ACK still
        //  counts when it comes: the rid is kept)
        size_t kept = 0;
        for (size_t at = 0; at < self->inflight_len; at++) {
            size_t index = self->inflight [at];
            s_batch_t *batch = &self->batches [index];
            if (!batch->inflight_rid)
                continue;
            if (now - batch->sent_ns >= timeout_ns) {
                self->stats.timeouts++;
                batch->inflight_rid = 0;
                s_retry_push (self, index);
                if (batch->inflight_node == target) {
                    target = (target + 1) % nodes;
                    hold_until = now + (uint64_t) options->backoff_ms * 1000000ULL;
                }
                continue;
            }
            self->inflight [kept++] = index;
        }
        self->inflight_len = kept;
        size_t inflight = kept;
        //  Fill the window, retries first
        while (now >= hold_until && inflight < options->window) {
            long index = s_retry_pop (self);
            //  Paced: events made so far stay within rate * seconds run
            bool paced = options->rate
                      && (double) self->events >= (double) options->rate
                                                 * (double) (now - started) / 1e9;
            if (index < 0 && !stopping && !paced)
                index = s_batch_new (self);
            if (index < 0)
                break;
            s_send_publish (self, dealers, (size_t) index, target);
            self->inflight [self->inflight_len++] = (size_t) index;
            inflight++;
        }
        //  Keep a STATUS going to every node that ACKed since the last one
        //  (term_hi) and to the target (term_lo); one outstanding per node
        for (int node = 0; node < nodes; node++) {
            if (self->status_rid [node] && now - self->status_sent_ns [node] >= timeout_ns)
                self->status_rid [node] = 0;        //  a late reply is still used
            if (!self->status_rid [node]
            &&  (self->need_probe [node] || (node == target && !self->last_term [node])))
                s_send_status (self, dealers, node);
        }
        zmq_pollitem_t items [CU_NODES_MAX];
        for (int node = 0; node < nodes; node++)
            items [node] = (zmq_pollitem_t) { zsock_resolve (dealers [node]), 0, ZMQ_POLLIN, 0 };
        if (zmq_poll (items, nodes, 10) < 0)
            continue;
        for (int node = 0; node < nodes; node++)
            if (items [node].revents & ZMQ_POLLIN)
                s_receive (self, dealers, node, &target, &hold_until);
    }
    //  Term bounds for the last ACKs: one more STATUS where one is due,
    //  waited for up to a second
    for (int node = 0; node < nodes; node++)
        if (self->need_probe [node])
            s_send_status (self, dealers, node);
    uint64_t end = tu_mono_ns () + 1000000000ULL;
    while (tu_mono_ns () < end) {
        bool waiting = false;
        for (int node = 0; node < nodes; node++)
            waiting |= self->status_rid [node] != 0;
        if (!waiting)
            break;
        zmq_pollitem_t items [CU_NODES_MAX];
        for (int node = 0; node < nodes; node++)
            items [node] = (zmq_pollitem_t) { zsock_resolve (dealers [node]), 0, ZMQ_POLLIN, 0 };
        if (zmq_poll (items, nodes, 10) > 0)
            for (int node = 0; node < nodes; node++)
                if (items [node].revents & ZMQ_POLLIN)
                    s_receive (self, dealers, node, &target, &hold_until);
    }
done:
    for (int node = 0; node < nodes; node++)
        zsock_destroy (&dealers [node]);
    return NULL;
}

cl_load_t *
cl_load_start (cu_cluster_t *cluster, const cl_options_t *options)
{
    if (!options->publishers || options->publishers > CL_PUBLISHERS_MAX || !options->window
    ||  !options->batch_max || options->batch_max > 1000 || !options->events_max
    ||  !options->topics || options->topics > 65535)
        return NULL;
    cl_load_t *self = calloc (1, sizeof *self);
    if (!self)
        return NULL;
    self->options = *options;
    self->nodes = cluster->count;
    for (size_t node = 0; node < cluster->count; node++)
        snprintf (self->api [node], sizeof self->api [node], "%s", cluster->nodes [node].api);
    bool ok = true;
    for (size_t number = 0; ok && number < options->publishers; number++) {
        s_publisher_t *publisher = &self->publishers [number];
        publisher->load = self;
        publisher->number = number;
        publisher->rng = options->seed ^ (0x9E3779B97F4A7C15ULL * (number + 1));
        publisher->events_cap = options->events_max;
        publisher->batch_cap = options->events_max;
        publisher->ids = calloc (options->events_max, sizeof *publisher->ids);
        publisher->topic = calloc (options->events_max, sizeof *publisher->topic);
        publisher->seq = calloc (options->events_max, sizeof *publisher->seq);
        publisher->ver = calloc (options->events_max, sizeof *publisher->ver);
        publisher->batches = calloc (options->events_max, sizeof *publisher->batches);
        publisher->retry = calloc (options->events_max, sizeof *publisher->retry);
        publisher->inflight = calloc (options->window, sizeof *publisher->inflight);
        ok = publisher->inflight && publisher->ids && publisher->topic && publisher->seq && publisher->ver
          && publisher->batches && publisher->retry;
    }
    for (size_t number = 0; ok && number < options->publishers; number++) {
        s_publisher_t *publisher = &self->publishers [number];
        ok = pthread_create (&publisher->thread, NULL, s_publisher_thread, publisher) == 0;
        publisher->started = ok;
    }
    if (!ok)
        cl_load_destroy (&self);
    return self;
}

//  Merge the publishers' records once they are joined.
static void
s_merge (cl_load_t *self)
{
    size_t events = 0, acks = 0;
    for (size_t number = 0; number < self->options.publishers; number++) {
        events += self->publishers [number].events;
        acks += self->publishers [number].ackrec_count;
    }
    self->acked_events = calloc (events + 1, sizeof *self->acked_events);
    self->term_acks = calloc (acks + 1, sizeof *self->term_acks);
    if (!self->acked_events || !self->term_acks || cu_idset_init (&self->published, events)) {
        snprintf (self->problem, sizeof self->problem, "out of memory merging the records");
        return;
    }
    for (size_t number = 0; number < self->options.publishers; number++) {
        s_publisher_t *publisher = &self->publishers [number];
        cl_stats_t *stats = &publisher->stats;
        for (size_t index = 0; index < publisher->batch_count; index++) {
            s_batch_t *batch = &publisher->batches [index];
            //  Only sent batches are published (every batch made is sent)
            for (size_t at = 0; at < batch->count; at++) {
                size_t event = batch->first + at;
                cu_idset_add (&self->published, publisher->ids [event]);
                if (batch->acked) {
                    cu_acked_t *acked = &self->acked_events [self->acked_count++];
                    memcpy (acked->id, publisher->ids [event], HERALD_ID_BYTES);
                    acked->seq = publisher->seq [event];
                    acked->ver = publisher->ver [event];
                }
            }
            if (!batch->acked)
                stats->unknown_batches++;
        }
        for (size_t index = 0; index < publisher->ackrec_count; index++) {
            s_ackrec_t *record = &publisher->ackrecs [index];
            uint32_t after = record->gen + 1;
            uint64_t hi = after < publisher->terms_cap [record->node]
                        ? publisher->terms [record->node][after]: 0;
            self->term_acks [self->term_count++] = (cu_term_ack_t) {
                .node = record->node, .term_lo = record->term_lo, .term_hi = hi };
        }
        self->stats.batches += stats->batches;
        self->stats.sends += stats->sends;
        self->stats.not_leader += stats->not_leader;
        self->stats.timeouts += stats->timeouts;
        self->stats.other_errors += stats->other_errors;
        self->stats.acks += stats->acks;
        self->stats.acked_events += stats->acked_events;
        self->stats.unknown_batches += stats->unknown_batches;
        self->stats.inconsistent += stats->inconsistent;
        if (!self->problem [0] && publisher->problem [0])
            snprintf (self->problem, sizeof self->problem, "%s", publisher->problem);
    }
}

size_t
cl_load_stop (cl_load_t *self, int drain_ms)
{
    if (!self->joined) {
        atomic_store (&self->drain_deadline,
                      tu_mono_ns () + (uint64_t) (drain_ms > 0? drain_ms: 0) * 1000000ULL);
        atomic_store (&self->stop, true);
        for (size_t number = 0; number < self->options.publishers; number++)
            if (self->publishers [number].started)
                pthread_join (self->publishers [number].thread, NULL);
        self->joined = true;
        s_merge (self);
    }
    return (size_t) self->stats.unknown_batches;
}

void
cl_load_destroy (cl_load_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    cl_load_t *self = *self_p;
    bool started = false;
    for (size_t number = 0; number < CL_PUBLISHERS_MAX; number++)
        started |= self->publishers [number].started;
    if (started)
        cl_load_stop (self, 0);
    for (size_t number = 0; number < CL_PUBLISHERS_MAX; number++) {
        s_publisher_t *publisher = &self->publishers [number];
        free (publisher->ids);
        free (publisher->topic);
        free (publisher->seq);
        free (publisher->ver);
        free (publisher->batches);
        free (publisher->retry);
        free (publisher->inflight);
        free (publisher->rids);
        free (publisher->ackrecs);
        for (size_t node = 0; node < CU_NODES_MAX; node++)
            free (publisher->terms [node]);
    }
    free (self->acked_events);
    free (self->term_acks);
    cu_idset_fini (&self->published);
    free (self);
    *self_p = NULL;
}

uint64_t
cl_load_acked (cl_load_t *self)
{
    return atomic_load (&self->acked);
}

uint64_t
cl_load_acks_from (cl_load_t *self, size_t index)
{
    return index < CU_NODES_MAX? atomic_load (&self->acks_from [index]): 0;
}

void
cl_load_stats (cl_load_t *self, cl_stats_t *stats)
{
    *stats = self->stats;
}

const cu_acked_t *
cl_load_acked_events (cl_load_t *self, size_t *count)
{
    *count = self->acked_count;
    return self->acked_events;
}

const cu_term_ack_t *
cl_load_term_acks (cl_load_t *self, size_t *count)
{
    *count = self->term_count;
    return self->term_acks;
}

const cu_idset_t *
cl_load_published (cl_load_t *self)
{
    return &self->published;
}

const char *
cl_load_problem (cl_load_t *self)
{
    return self->problem;
}
