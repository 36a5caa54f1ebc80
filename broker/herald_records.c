/*  =========================================================================
    herald_records - the bounded hand-over of applied records from the
    raft thread to the broker thread

    DESIGN

    The raft thread pushes one record per applied entry (herald_raft.h
    says which); the broker takes them when herald_records_sock turns
    readable, and releases each when done with it.  A record travels as
    a pointer over an inproc PAIR whose high-water mark is off: the bound
    is HERALD_RECORDS_MAX records out (pushed and not released), kept
    here, so a send never blocks and never drops.

    Back-pressure: when HERALD_RECORDS_MAX are out, push waits on a
    condition variable (in slices of 100 ms, checking for stop) until the
    broker releases one.  The raft thread's loop is blocked meanwhile:
    heartbeats stop, and a leader that stays blocked past the election
    timeout loses its leadership, which is right: it cannot serve.  Each
    record holds one entry's envelopes (<= ~1 MiB), so the bound is
    ~HERALD_RECORDS_MAX MiB.  Once stopping, a push frees its record.

    Released records go to a free list (at most HERALD_RECORDS_MAX), so
    their envelope buffers serve again.

    Threads: the mutex guards records_out, the free list and stopping;
    feed is the raft thread's, sock the broker thread's (and, after the
    raft thread ended, herald_records_destroy's).
    =========================================================================
*/

#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <time.h>
#include "herald_records.h"

typedef struct _s_record_t {
    herald_applied_t applied;           //  first: what the broker sees
    struct _s_record_t *next;           //  in the free list
} s_record_t;

struct _herald_records_t {
    zsock_t *sock;                      //  broker's end of the record pipe
    zsock_t *feed;                      //  raft thread's end
    //  Under mutex
    pthread_mutex_t mutex;
    pthread_cond_t cond;                //  a record released, or stopping
    bool stopping;
    size_t records_out;                 //  pushed and not released
    s_record_t *free_records;
    size_t free_count;
};

herald_records_t *
herald_records_new (void)
{
    herald_records_t *self = (herald_records_t *) zmalloc (sizeof (herald_records_t));
    pthread_mutex_init (&self->mutex, NULL);
    pthread_cond_init (&self->cond, NULL);
    //  No high-water mark: HERALD_RECORDS_MAX bounds the pipe.
    //  A name never used before: libzmq releases an inproc name some time
    //  after its socket closes, and a new node may get the same address
    static atomic_uint_fast64_t pipes;
    char endpoint [64];
    snprintf (endpoint, sizeof (endpoint), "inproc://herald-raft-%" PRIu64,
              (uint64_t) atomic_fetch_add (&pipes, 1));
    self->sock = zsock_new (ZMQ_PAIR);
    self->feed = zsock_new (ZMQ_PAIR);
    if (self->sock && self->feed) {
        zsock_set_rcvhwm (self->sock, 0);
        zsock_set_sndhwm (self->feed, 0);
    }
    if (!self->sock || !self->feed || zsock_bind (self->sock, "%s", endpoint) != 0
    ||  zsock_connect (self->feed, "%s", endpoint) != 0)
        herald_records_destroy (&self);
    return self;
}

static void
s_record_free (s_record_t *record)
{
    if (record) {
        herald_store_envelopes_free (&record->applied.envelopes);
        free (record);
    }
}

void
herald_records_destroy (herald_records_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    herald_records_t *self = *self_p;
    //  Records pushed and never taken
    void *pointer;
    while (self->sock           //  NULL when herald_records_new failed half-way
       &&  zmq_recv (zsock_resolve (self->sock), &pointer, sizeof (pointer), ZMQ_DONTWAIT)
           == (int) sizeof (pointer))
        s_record_free ((s_record_t *) pointer);
    zsock_destroy (&self->feed);
    zsock_destroy (&self->sock);
    while (self->free_records) {
        s_record_t *next = self->free_records->next;
        s_record_free (self->free_records);
        self->free_records = next;
    }
    pthread_cond_destroy (&self->cond);
    pthread_mutex_destroy (&self->mutex);
    free (self);
    *self_p = NULL;
}

herald_applied_t *
herald_records_get (herald_records_t *self)
{
    pthread_mutex_lock (&self->mutex);
    s_record_t *record = self->free_records;
    if (record) {
        self->free_records = record->next;
        self->free_count--;
    }
    pthread_mutex_unlock (&self->mutex);
    if (!record)
        record = (s_record_t *) zmalloc (sizeof (s_record_t));
    herald_store_envelopes_t envelopes = record->applied.envelopes;
    memset (record, 0, sizeof (*record));
    record->applied.envelopes = envelopes;      //  its buffers serve again
    record->applied.envelopes.count = 0;
    record->applied.first_seq = 1;
    return &record->applied;
}

void
herald_records_free (herald_applied_t **record_p)
{
    if (record_p && *record_p) {
        s_record_free ((s_record_t *) *record_p);
        *record_p = NULL;
    }
}

void
herald_records_push (herald_records_t *self, herald_applied_t *applied)
{
    s_record_t *record = (s_record_t *) applied;
    pthread_mutex_lock (&self->mutex);
    while (self->records_out >= HERALD_RECORDS_MAX && !self->stopping) {
        struct timespec until;
        clock_gettime (CLOCK_REALTIME, &until);
        until.tv_nsec += 100 * 1000000L;
        if (until.tv_nsec >= 1000000000L) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait (&self->cond, &self->mutex, &until);
    }
    bool stopping = self->stopping;
    if (!stopping)
        self->records_out++;
    pthread_mutex_unlock (&self->mutex);
    if (stopping) {
        s_record_free (record);
        return;
    }
    //  The pipe has no high-water mark (HERALD_RECORDS_MAX bounds it), so
    //  this never blocks; it fails only when the context is terminated.
    if (zsock_send (self->feed, "p", record) != 0) {
        pthread_mutex_lock (&self->mutex);
        self->records_out--;
        pthread_mutex_unlock (&self->mutex);
        s_record_free (record);
    }
}

void
herald_records_stop (herald_records_t *self)
{
    pthread_mutex_lock (&self->mutex);
    self->stopping = true;
    pthread_cond_broadcast (&self->cond);
    pthread_mutex_unlock (&self->mutex);
}

zsock_t *
herald_records_sock (herald_records_t *self)
{
    return self->sock;
}

herald_applied_t *
herald_records_take (herald_records_t *self)
{
    void *pointer = NULL;
    int size = zmq_recv (zsock_resolve (self->sock), &pointer, sizeof (pointer), ZMQ_DONTWAIT);
    if (size != (int) sizeof (pointer))
        return NULL;
    return &((s_record_t *) pointer)->applied;
}

void
herald_records_release (herald_records_t *self, herald_applied_t **record_p)
{
    if (!record_p || !*record_p)
        return;
    s_record_t *record = (s_record_t *) *record_p;
    *record_p = NULL;
    pthread_mutex_lock (&self->mutex);
    self->records_out--;
    if (self->free_count < HERALD_RECORDS_MAX) {
        record->next = self->free_records;
        self->free_records = record;
        self->free_count++;
        record = NULL;
    }
    pthread_cond_broadcast (&self->cond);
    pthread_mutex_unlock (&self->mutex);
    s_record_free (record);
}
