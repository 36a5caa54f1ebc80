/*  =========================================================================
    cmp_redis - Redis Streams under the comparison's workloads

    redis-server runs with appendonly yes, appendfsync always (the reply
    is sent after the AOF is fsynced: Herald's "sync") or everysec (an
    fsync a second: Herald's "async"), no RDB snapshots, on a free port.

    DESIGN

    The log is one stream, "log": XADD log * id <16 B> topic <t> data <d>.
    One stream keeps Herald's total order, so catch-up is XRANGE over it
    in pages.  Redis Streams has no dedup by message id: XADD with an
    explicit entry id only refuses ids not above the last one, which is an
    ordering check, not idempotency, so the event id travels as a field
    and nothing checks it (docs/benchmarks.md says so).  The "+dedup"
    durabilities add what an application would write instead: a Lua
    script that SETs the id NX with a 2-minute expiry and XADDs only if
    it was new.  It has no index
    by field either: the sparse read either scans the log (variant 1,
    "scan") or reads a second stream "topic:rare.one" that the builder
    XADDs each rare event to as well (variant 0, "stream per topic"), the
    layout an application would choose, at the cost of writing every
    event twice if it did so for every topic.

    Publishers are threads with their own connection (hiredis, blocking),
    CMP_BATCH XADDs appended and flushed at a time and CMP_WINDOW in
    flight; the latency of an XADD is from its batch's flush to its reply.
    Fanout readers loop on XREAD BLOCK from the last id they saw.
    =========================================================================
*/

#include "compare.h"

#include <hiredis/hiredis.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#define S_SLOTS     (CMP_WINDOW / CMP_BATCH)
#define S_PAGE      10000               //  entries per XRANGE / XREAD

static const char *const s_durabilities [] = {
    "always", "everysec", "always+dedup", "everysec+dedup", NULL
};
static const char *const s_classes [] = { "sync", "async", "sync", "async", NULL };

//  "+dedup": what an application must do for idempotent appends, as Redis
//  has none: remember each event id for 2 minutes (NATS's default
//  duplicate window) and XADD only when the id is new, atomically.
static const char *s_dedup_script =
    "if redis.call('SET', KEYS[2], '1', 'NX', 'EX', 120) then "
    "return redis.call('XADD', KEYS[1], '*', 'id', ARGV[1], 'topic', ARGV[2], 'data', ARGV[3]) "
    "end return false";

static redisContext *
s_connect (const cmp_server_t *server)
{
    struct timeval tv = { 10, 0 };
    redisContext *redis = redisConnectWithTimeout ("127.0.0.1", server->port, tv);
    if (!redis || redis->err) {
        fprintf (stderr, "compare: redis connect: %s\n", redis? redis->errstr: "out of memory");
        redisFree (redis);
        return NULL;
    }
    redisSetTimeout (redis, tv);
    return redis;
}

static int
s_start (cmp_server_t *self, const char *tag, const char *durability)
{
    char path [PATH_MAX + 32], data [PATH_MAX + 16], config [PATH_MAX + 1024];
    snprintf (self->dir, sizeof self->dir, "%.3900s/redis-%.60s", bb_base, tag);
    snprintf (data, sizeof data, "%s/data", self->dir);
    if (mkdir (self->dir, 0755) || mkdir (data, 0755))
        return -1;
    self->port = bu_free_port ();
    snprintf (self->durability, sizeof self->durability, "%s", durability);
    char fsync [16];
    snprintf (fsync, sizeof fsync, "%.*s", (int) strcspn (durability, "+"), durability);
    snprintf (config, sizeof config,
              "bind 127.0.0.1\nport %d\nprotected-mode yes\ndaemonize no\n"
              "dir %s\nappendonly yes\nappendfsync %s\nsave \"\"\n"
              "logfile \"\"\nloglevel warning\n", self->port, data, fsync);
    snprintf (path, sizeof path, "%s/redis.conf", self->dir);
    if (cmp_write_file (path, config))
        return -1;
    char log [PATH_MAX + 32];
    snprintf (log, sizeof log, "%s/redis.log", self->dir);
    char *argv [] = { "redis-server", path, NULL };
    self->pid = cmp_proc_spawn (argv, log);
    if (self->pid < 0 || cmp_proc_wait_port (self->pid, self->port, CMP_START_MS)) {
        fprintf (stderr, "compare: redis-server did not start\n");
        cmp_log_tail (log);
        if (self->pid > 0)
            cmp_proc_stop (self->pid, SIGTERM, "redis-server", CMP_STOP_MS);
        self->pid = 0;
        return -1;
    }
    //  Up when it answers PING (it may still be loading)
    redisContext *redis = s_connect (self);
    redisReply *reply = redis? redisCommand (redis, "PING"): NULL;
    bool ok = reply && reply->type == REDIS_REPLY_STATUS;
    freeReplyObject (reply);
    redisFree (redis);
    snprintf (self->url, sizeof self->url, "127.0.0.1:%d", self->port);
    fprintf (stderr, "compare: redis-server (%s, appendfsync %s) pid %d on %s\n", tag,
             durability, (int) self->pid, self->url);
    return ok? 0: -1;
}

static void
s_stop (cmp_server_t *self)
{
    if (self->pid <= 0)
        return;
    self->peak_rss = cmp_proc_peak_rss (self->pid);
    cmp_proc_stop (self->pid, SIGTERM, "redis-server", CMP_STOP_MS);
    self->pid = 0;
    bench_remove_tree (self->dir);
}

//  ---------------------------------------------------------------------
//  Publishing: one thread per connection


static void
s_read_reply (cmp_publisher_t *self, redisContext *redis, double sent_at)
{
    redisReply *reply = NULL;
    if (redisGetReply (redis, (void **) &reply) != REDIS_OK || !reply) {
        if (self->errors++ == 0)
            snprintf (self->error, sizeof self->error, "%.90s", redis->errstr);
        return;
    }
    double at = bench_now ();
    if (reply->type == REDIS_REPLY_ERROR) {
        if (self->errors++ == 0)
            snprintf (self->error, sizeof self->error, "%s", reply->str);
    }
    else {
        self->acked++;
        self->finished = at;
        bb_samples_add (&self->latency, at - sent_at);
    }
    freeReplyObject (reply);
}

static void *
s_publisher (void *args)
{
    cmp_publisher_t *self = (cmp_publisher_t *) args;
    redisContext *redis = s_connect (self->server);
    if (!redis)
        return NULL;
    double wait = self->start - bench_now ();
    if (wait > 0)
        usleep ((useconds_t) (wait * 1e6));
    uint8_t data [2048], id [16];
    char topic [32], hex [33], id_key [40], sha [64] = "";
    bool dedup = strstr (self->server->durability, "+dedup") != NULL;
    if (dedup) {
        redisReply *reply = redisCommand (redis, "SCRIPT LOAD %s", s_dedup_script);
        if (reply && reply->type == REDIS_REPLY_STRING)
            snprintf (sha, sizeof sha, "%s", reply->str);
        freeReplyObject (reply);
        if (!*sha) {
            snprintf (self->error, sizeof self->error, "SCRIPT LOAD failed");
            self->errors++;
            redisFree (redis);
            return NULL;
        }
    }
    double sent_at [S_SLOTS];
    size_t commands [S_SLOTS];
    uint64_t sent_batches = 0, done_batches = 0, sent = 0;
    //  Paced: a tick's events a batch, stamped with its deadline; the
    //  replies in hand are read before sleeping to the next tick
    cmp_pacer_t pacer;
    cmp_pacer_init (&pacer, self->start, self->rate, self->deadline);
    while (true) {
        bool sending = !bb_interrupted && sent < self->max_events
                    && (self->rate > 0? cmp_pacer_more (&pacer)
                                      : bench_now () < self->deadline);
        if (sending && self->rate > 0 && sent_batches > done_batches
        &&  bench_now () < pacer.next)
            sending = false;            //  take a batch's replies first
        else
        if (sending && sent_batches - done_batches < S_SLOTS) {
            size_t limit = CMP_BATCH;
            uint64_t stamp = 0;
            if (self->rate > 0)
                stamp = (uint64_t) (cmp_pacer_wait (&pacer, &limit) * 1e9);
            size_t count = 0;
            for (size_t i = 0; i < limit && sent < self->max_events; i++) {
                uint64_t counter;
                int topic_len = cmp_next_event (self, &counter, topic, sizeof topic);
                if (topic_len < 0) {
                    self->max_events = sent;
                    break;
                }
                cmp_event_id (counter, id, hex);
                cmp_payload (counter, data, self->payload, stamp);
                const char *argv [9] = { "XADD", "log", "*", "id", (const char *) id,
                                         "topic", topic, "data", (const char *) data };
                size_t lens [9] = { 4, 3, 1, 2, sizeof id, 5, (size_t) topic_len, 4,
                                    self->payload };
                if (dedup) {
                    snprintf (id_key, sizeof id_key, "id:%s", hex);
                    const char *eval [8] = { "EVALSHA", sha, "2", "log", id_key,
                                             (const char *) id, topic, (const char *) data };
                    size_t eval_lens [8] = { 7, strlen (sha), 1, 3, strlen (id_key), sizeof id,
                                             (size_t) topic_len, self->payload };
                    redisAppendCommandArgv (redis, 8, eval, eval_lens);
                }
                else
                    redisAppendCommandArgv (redis, 9, argv, lens);
                count++;
                sent++;
                //  The log's rare topic also gets a stream of its own
                if (self->log_index && streq (topic, CMP_SPARSE_TOPIC)) {
                    argv [1] = "topic:" CMP_SPARSE_TOPIC;
                    lens [1] = strlen (argv [1]);
                    redisAppendCommandArgv (redis, 9, argv, lens);
                    count++;
                }
            }
            if (count > 0) {
                int done = 0;
                while (!done && redis->err == 0)
                    if (redisBufferWrite (redis, &done) != REDIS_OK)
                        break;
                sent_at [sent_batches % S_SLOTS] = bench_now ();
                commands [sent_batches % S_SLOTS] = count;
                sent_batches++;
                continue;
            }
        }
        if (sent_batches == done_batches || redis->err)
            break;
        //  The window is full, or sending is over: take a batch's replies
        size_t slot = done_batches % S_SLOTS;
        for (size_t i = 0; i < commands [slot] && !redis->err; i++)
            s_read_reply (self, redis, sent_at [slot]);
        done_batches++;
    }
    redisFree (redis);
    return NULL;
}

//  threads publishers; log_total > 0 builds the log instead (max_events
//  ignored, topics from cmp_topic).  Returns events/s, -1 when nothing.
static double
s_run (cmp_server_t *self, int threads, size_t payload, double seconds, uint64_t max_events,
       uint64_t log_total, double rate, cmp_pub_t *result)
{
    return cmp_run_publishers (self, "redis XADD", s_publisher, threads, payload, seconds,
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
    //  The extra XADDs to topic:rare.one are counted in acked
    double rate = s_run (self, 2, 100, 3600, 0, events, 0, &result);
    if (result.acked != events + CMP_SPARSE)
        bb_problem ("redis: building the log, %" PRIu64 " of %" PRIu64 " XADDs answered",
                    result.acked, events + CMP_SPARSE);
    return rate < 0? -1: rate * (double) events / (double) (events + CMP_SPARSE);
}

//  ---------------------------------------------------------------------
//  Reading: entries are [id, [field, value, ...]]

//  The value of field name in an entry, or NULL.
static const redisReply *
s_field (const redisReply *entry, const char *name)
{
    if (entry->type != REDIS_REPLY_ARRAY || entry->elements < 2
    ||  entry->element [1]->type != REDIS_REPLY_ARRAY)
        return NULL;
    const redisReply *fields = entry->element [1];
    for (size_t i = 0; i + 1 < fields->elements; i += 2)
        if (fields->element [i]->type == REDIS_REPLY_STRING
        &&  streq (fields->element [i]->str, name))
            return fields->element [i + 1];
    return NULL;
}

typedef struct {
    const cmp_server_t *server;
    const char *from;                   //  the id to read after
    size_t stride;
    atomic_bool *stop;
    atomic_uint_fast64_t delivered;
    double last;
    bb_samples_t latency;
} s_sub_t;

static void *
s_subscriber (void *args)
{
    s_sub_t *self = (s_sub_t *) args;
    redisContext *redis = s_connect (self->server);
    if (!redis)
        return NULL;
    char last_id [64];
    snprintf (last_id, sizeof last_id, "%s", self->from);
    uint64_t count = 0;
    while (!atomic_load (self->stop) && !bb_interrupted) {
        redisReply *reply = redisCommand (redis, "XREAD COUNT %d BLOCK 100 STREAMS log %s",
                                          S_PAGE, last_id);
        if (!reply)
            break;
        if (reply->type == REDIS_REPLY_ARRAY && reply->elements == 1
        &&  reply->element [0]->elements == 2) {
            const redisReply *entries = reply->element [0]->element [1];
            uint64_t now = bb_now_ns ();
            for (size_t i = 0; i < entries->elements; i++) {
                const redisReply *entry = entries->element [i];
                const redisReply *data = s_field (entry, "data");
                if (count++ % self->stride == 0 && data) {
                    uint64_t stamp = cmp_payload_stamp (data->str, data->len);
                    if (stamp && now > stamp)
                        bb_samples_add (&self->latency, (double) (now - stamp) / 1e9);
                }
            }
            if (entries->elements > 0) {
                const redisReply *tail = entries->element [entries->elements - 1];
                snprintf (last_id, sizeof last_id, "%s", tail->element [0]->str);
                atomic_fetch_add (&self->delivered, entries->elements);
                self->last = (double) now / 1e9;
            }
        }
        freeReplyObject (reply);
    }
    redisFree (redis);
    return NULL;
}

//  The id of the log's last entry, "0-0" when empty.
static void
s_last_id (const cmp_server_t *server, char *out, size_t size)
{
    snprintf (out, size, "0-0");
    redisContext *redis = s_connect (server);
    if (!redis)
        return;
    redisReply *reply = redisCommand (redis, "XREVRANGE log + - COUNT 1");
    if (reply && reply->type == REDIS_REPLY_ARRAY && reply->elements == 1)
        snprintf (out, size, "%s", reply->element [0]->element [0]->str);
    freeReplyObject (reply);
    redisFree (redis);
}

static int
s_fanout (cmp_server_t *self, int subscribers, double seconds, double rate,
          cmp_fan_t *result)
{
    memset (result, 0, sizeof *result);
    char from [64];
    s_last_id (self, from, sizeof from);
    s_sub_t sub [16];
    pthread_t thread [16];
    atomic_bool stop;
    atomic_init (&stop, false);
    int started = 0;
    for (; started < subscribers && started < 16; started++) {
        s_sub_t *one = &sub [started];
        memset (one, 0, sizeof *one);
        atomic_init (&one->delivered, 0);
        one->server = self;
        one->from = from;
        one->stride = rate > 0? 1: (size_t) subscribers;     //  as bb_fanout's
        one->stop = &stop;
        if (bb_samples_init (&one->latency, BB_MAX_SAMPLES))
            break;
        if (pthread_create (&thread [started], NULL, s_subscriber, one)) {
            bb_samples_fini (&one->latency);
            break;
        }
    }
    cmp_pub_t pub;
    //  cmp_run_publishers starts its publishers 0.1 s from now (as NATS's)
    double start = bench_now () + 0.1;
    s_run (self, 1, 100, seconds, UINT64_MAX / 2, 0, rate, &pub);
    result->published = pub.acked;
    //  Until every subscriber has everything, or they stop receiving
    uint64_t expected = pub.acked * (uint64_t) started;
    atomic_uint_fast64_t *counters [16];
    for (int i = 0; i < started; i++)
        counters [i] = &sub [i].delivered;
    cmp_wait_delivered (counters, started, expected);
    atomic_store (&stop, true);
    bb_samples_t all;
    bb_samples_init (&all, 0);
    double last = start;
    for (int i = 0; i < started; i++) {
        pthread_join (thread [i], NULL);
        result->delivered += atomic_load (&sub [i].delivered);
        if (sub [i].last > last)
            last = sub [i].last;
        bb_samples_merge (&all, &sub [i].latency);
        bb_samples_fini (&sub [i].latency);
    }
    result->rate = last > start? (double) result->delivered / (last - start): 0;
    cmp_percentiles (&all, &result->p50, &result->p99, &result->p999);
    bb_samples_fini (&all);
    if (result->delivered < expected)
        bb_problem ("redis fanout to %d: %" PRIu64 " of %" PRIu64 " delivered", started,
                    result->delivered, expected);
    return started == subscribers && result->delivered > 0? 0: -1;
}

//  XRANGE key in pages from the start; counts entries, or only those of
//  topic when topic is given.  Returns events/s or -1.
static double
s_range (const cmp_server_t *server, const char *key, const char *topic, double timeout,
         uint64_t *count)
{
    *count = 0;
    redisContext *redis = s_connect (server);
    if (!redis)
        return -1;
    char from [72] = "-";
    double start = bench_now ();
    bool done = false;
    while (!done && !bb_interrupted && bench_now () - start < timeout) {
        redisReply *reply = redisCommand (redis, "XRANGE %s %s + COUNT %d", key, from, S_PAGE);
        if (!reply || reply->type != REDIS_REPLY_ARRAY) {
            freeReplyObject (reply);
            break;
        }
        done = reply->elements < S_PAGE;
        for (size_t i = 0; i < reply->elements; i++) {
            const redisReply *entry = reply->element [i];
            if (!topic)
                (*count)++;
            else {
                const redisReply *value = s_field (entry, "topic");
                if (value && streq (value->str, topic))
                    (*count)++;
            }
        }
        if (reply->elements > 0)
            snprintf (from, sizeof from, "(%s",
                      reply->element [reply->elements - 1]->element [0]->str);
        freeReplyObject (reply);
    }
    double elapsed = bench_now () - start;
    redisFree (redis);
    if (!done)
        return -1;
    return elapsed > 0? (double) *count / elapsed: 0;
}

static double
s_catchup (cmp_server_t *self, double timeout, uint64_t *count)
{
    return s_range (self, "log", NULL, timeout, count);
}

static double
s_sparse (cmp_server_t *self, int variant, double timeout, uint64_t *count)
{
    double start = bench_now ();
    double rate = variant == 0
                ? s_range (self, "topic:" CMP_SPARSE_TOPIC, NULL, timeout, count)
                : s_range (self, "log", CMP_SPARSE_TOPIC, timeout, count);
    return rate < 0? -1: (bench_now () - start) * 1e3;
}

const cmp_system_t cmp_redis = {
    .name = "redis",
    .durabilities = s_durabilities,
    .classes = s_classes,
    .relaxed = "everysec",
    .start = s_start,
    .stop = s_stop,
    .publish = s_publish,
    .fanout = s_fanout,
    .build = s_build,
    .catchup = s_catchup,
    .sparse = s_sparse,
    .sparse_names = { "stream per topic", "scan of the log" }
};
