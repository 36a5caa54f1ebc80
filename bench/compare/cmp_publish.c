/*  =========================================================================
    cmp_publish - what the peers' clients share: publisher threads and
    waiting for fanout subscribers to drain

    cmp_nats.c and cmp_redis.c each write the body of a publisher thread
    for their own client library; starting the threads, giving each its
    share of the events, merging their latency samples and figures, and
    numbering the events are the same for both, and live here.  (Herald's
    publishers are bench/broker_bench_herald.c's.)
    =========================================================================
*/

#include "compare.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define S_MAX_THREADS   16

double
cmp_run_publishers (const cmp_server_t *server, const char *what, void *(*body) (void *),
                    int threads, size_t payload, double seconds, uint64_t max_events,
                    uint64_t log_total, double rate, cmp_pub_t *result)
{
    memset (result, 0, sizeof *result);
    cmp_publisher_t pub [S_MAX_THREADS];
    pthread_t thread [S_MAX_THREADS];
    atomic_uint_fast64_t log_index;
    atomic_init (&log_index, 0);
    if (threads > S_MAX_THREADS)
        threads = S_MAX_THREADS;
    //  Time for every thread to start and connect
    double start = bench_now () + 0.1;
    int started = 0;
    for (; started < threads; started++) {
        cmp_publisher_t *self = &pub [started];
        memset (self, 0, sizeof *self);
        self->server = server;
        self->payload = payload;
        self->start = start;
        self->deadline = start + seconds;
        self->rate = log_total? 0: rate / threads;
        self->max_events = log_total? UINT64_MAX
                                    : (max_events + (uint64_t) threads - 1) / (uint64_t) threads;
        self->log_index = log_total? &log_index: NULL;
        self->log_total = log_total;
        if (bb_samples_init (&self->latency, BB_MAX_SAMPLES))
            break;
        pthread_mutex_init (&self->mutex, NULL);
        pthread_cond_init (&self->space, NULL);
        if (pthread_create (&thread [started], NULL, body, self)) {
            pthread_mutex_destroy (&self->mutex);
            pthread_cond_destroy (&self->space);
            bb_samples_fini (&self->latency);
            break;
        }
    }
    bb_samples_t all;
    bb_samples_init (&all, 0);
    double finished = start;
    for (int i = 0; i < started; i++) {
        pthread_join (thread [i], NULL);
        result->acked += pub [i].acked;
        result->errors += pub [i].errors;
        if (pub [i].errors)
            bb_problem ("%s: %" PRIu64 " errors (%s)", what, pub [i].errors, pub [i].error);
        if (pub [i].finished > finished)
            finished = pub [i].finished;
        bb_samples_merge (&all, &pub [i].latency);
        bb_samples_fini (&pub [i].latency);
        pthread_mutex_destroy (&pub [i].mutex);
        pthread_cond_destroy (&pub [i].space);
    }
    result->rate = finished > start? (double) result->acked / (finished - start): 0;
    cmp_percentiles (&all, &result->p50, &result->p99, &result->p999);
    bb_samples_fini (&all);
    return result->acked > 0? result->rate: -1;
}

void
cmp_pacer_init (cmp_pacer_t *self, double start, double rate, double end)
{
    self->batch = bb_pace_batch (rate);
    self->interval = rate > 0? (double) self->batch / rate: 0;
    self->next = start;
    self->end = end;
}

bool
cmp_pacer_more (const cmp_pacer_t *self)
{
    return self->next < self->end && bench_now () < self->end + BB_PACE_GRACE_S;
}

double
cmp_pacer_wait (cmp_pacer_t *self, size_t *batch)
{
    double due = self->next;
    bench_sleep_until (due);
    self->next += self->interval;
    *batch = self->batch;
    return due;
}

int
cmp_next_event (cmp_publisher_t *self, uint64_t *counter, char *topic, size_t size)
{
    *counter = cmp_next_counter ();
    if (!self->log_index)
        return cmp_topic (*counter, 0, topic, size);
    uint64_t index = atomic_fetch_add (self->log_index, 1);
    if (index >= self->log_total)
        return -1;
    return cmp_topic (index, self->log_total, topic, size);
}

void
cmp_wait_delivered (atomic_uint_fast64_t *const *counters, int count, uint64_t expected)
{
    uint64_t seen = 0;
    int quiet = 0;
    double deadline = bench_now () + 10;
    while (quiet < 5 && bench_now () < deadline) {
        uint64_t total = 0;
        for (int i = 0; i < count; i++)
            total += atomic_load (counters [i]);
        if (total >= expected)
            break;
        quiet = total == seen? quiet + 1: 0;
        seen = total;
        usleep (100000);
    }
}
