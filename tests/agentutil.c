/*  =========================================================================
    agentutil - helpers for the agent's tests (no criterion)

    See agentutil.h.
    =========================================================================
*/

#include "agentutil.h"
#include "testutil.h"

#include <errno.h>
#include <inttypes.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

int
au_publish (const char *api, const char *topic_format, size_t topics, size_t count,
            int timeout_ms)
{
    zsock_t *dealer = bu_dealer_new (api);
    if (!dealer)
        return -1;
    uint64_t deadline = tu_mono_ns () + (uint64_t) timeout_ms * 1000000ULL;
    size_t sent = 0, acked = 0, outstanding = 0;
    uint64_t rid = 0;
    int rc = 0;
    char (*names) [64] = calloc (100, sizeof *names);
    char (*datas) [32] = calloc (100, sizeof *datas);
    while (acked < count && rc == 0) {
        while (sent < count && outstanding < 20) {
            bu_event_t events [100];
            size_t batch = count - sent < 100? count - sent: 100;
            for (size_t index = 0; index < batch; index++) {
                snprintf (names [index], sizeof names [index], topic_format,
                          (sent + index) % (topics? topics: 1));
                snprintf (datas [index], sizeof datas [index], "e%zu", sent + index);
                bu_event_init (&events [index], names [index], datas [index]);
            }
            msgpack_sbuffer sbuf;
            msgpack_sbuffer_init (&sbuf);
            bu_pack_publish (&sbuf, ++rid, events, batch);
            rc = bu_send_sbuf (dealer, "PUBLISH", &sbuf);
            msgpack_sbuffer_destroy (&sbuf);
            if (rc)
                break;
            sent += batch;
            outstanding++;
        }
        uint64_t now = tu_mono_ns ();
        if (rc || now >= deadline) {
            rc = -1;
            break;
        }
        bu_reply_t reply;
        if (bu_recv_reply (dealer, &reply, (int) ((deadline - now) / 1000000ULL) + 1) != 0
        ||  reply.rc != HERALD_OK || reply.type != HERALD_MSG_ACK)
            rc = -1;
        else {
            acked += reply.body.ack.count;
            outstanding--;
        }
        bu_reply_fini (&reply);
    }
    free (names);
    free (datas);
    zsock_destroy (&dealer);
    return rc;
}

int64_t
au_head (const char *api, int timeout_ms)
{
    zsock_t *dealer = bu_dealer_new (api);
    if (!dealer)
        return -1;
    bu_reply_t reply;
    int64_t head = -1;
    if (bu_status (dealer, 1, &reply, timeout_ms) == 0 && reply.rc == HERALD_OK)
        head = (int64_t) reply.body.status.head;
    bu_reply_fini (&reply);
    zsock_destroy (&dealer);
    return head;
}

//  ---------------------------------------------------------------------
//  Recorder

au_recorder_t *
au_recorder_new (void)
{
    au_recorder_t *self = calloc (1, sizeof *self);
    if (!self)
        return NULL;
    pthread_mutex_init (&self->lock, NULL);
    pthread_cond_init (&self->changed, NULL);
    return self;
}

void
au_recorder_destroy (au_recorder_t **self_p)
{
    au_recorder_t *self = *self_p;
    if (!self)
        return;
    pthread_mutex_destroy (&self->lock);
    pthread_cond_destroy (&self->changed);
    free (self->seqs);
    free (self->ids);
    free (self->redelivered);
    free (self->attempts);
    free (self);
    *self_p = NULL;
}

int
au_record (const herald_delivery_t *event, void *arg)
{
    au_recorder_t *self = (au_recorder_t *) arg;
    if (self->sleep_us)
        usleep ((useconds_t) self->sleep_us);
    pthread_mutex_lock (&self->lock);
    if (event->seq == self->fail_seq && self->fail_code) {
        pthread_mutex_unlock (&self->lock);
        return self->fail_code;
    }
    if (event->seq == self->retry_seq && self->retry_times) {
        self->retry_times--;
        pthread_mutex_unlock (&self->lock);
        return HERALD_RETRY;
    }
    if (self->count == self->size) {
        size_t size = self->size? self->size * 2: 1024;
        self->seqs = realloc (self->seqs, size * sizeof *self->seqs);
        self->ids = realloc (self->ids, size * sizeof *self->ids);
        self->redelivered = realloc (self->redelivered, size * sizeof *self->redelivered);
        self->attempts = realloc (self->attempts, size * sizeof *self->attempts);
        if (!self->seqs || !self->ids || !self->redelivered || !self->attempts)
            abort ();
        self->size = size;
    }
    self->seqs [self->count] = event->seq;
    memcpy (self->ids [self->count], event->id, 16);
    self->redelivered [self->count] = event->redelivered;
    self->attempts [self->count] = event->attempt;
    self->count++;
    pthread_cond_broadcast (&self->changed);
    pthread_mutex_unlock (&self->lock);
    return HERALD_OK;
}

size_t
au_wait_count (au_recorder_t *self, size_t count, int timeout_ms)
{
    uint64_t deadline = tu_mono_ns () + (uint64_t) timeout_ms * 1000000ULL;
    pthread_mutex_lock (&self->lock);
    while (self->count < count && tu_mono_ns () < deadline) {
        pthread_mutex_unlock (&self->lock);
        usleep (2000);
        pthread_mutex_lock (&self->lock);
    }
    size_t held = self->count;
    pthread_mutex_unlock (&self->lock);
    return held;
}

static int
s_id_compare (const void *a, const void *b)
{
    return memcmp (a, b, 16);
}

int
au_check_once_in_order (au_recorder_t *self, char *message, size_t size)
{
    pthread_mutex_lock (&self->lock);
    int rc = 0;
    for (size_t index = 1; index < self->count && rc == 0; index++)
        if (self->seqs [index] <= self->seqs [index - 1]) {
            snprintf (message, size, "event %zu has seq %" PRIu64 " after seq %" PRIu64, index,
                      self->seqs [index], self->seqs [index - 1]);
            rc = -1;
        }
    uint8_t (*ids) [16] = malloc ((self->count + 1) * 16);
    if (rc == 0 && ids) {
        memcpy (ids, self->ids, self->count * 16);
        qsort (ids, self->count, 16, s_id_compare);
        for (size_t index = 1; index < self->count && rc == 0; index++)
            if (memcmp (ids [index], ids [index - 1], 16) == 0) {
                snprintf (message, size, "an id was delivered twice");
                rc = -1;
            }
    }
    free (ids);
    pthread_mutex_unlock (&self->lock);
    return rc;
}

void
au_options (herald_agent_options_t *options, const bu_broker_t *broker, const char *state_dir)
{
    herald_agent_options_init (options);
    options->api = broker->api;
    options->fanout = broker->fanout;
    options->state_dir = state_dir;
    options->timeout_ms = 5000;
}

//  ---------------------------------------------------------------------
//  The child process

char *
au_child_path (void)
{
    return tu_build_program ("tests/agent_child");
}

pid_t
au_child_spawn (const char *const *args, const char *log)
{
    char *binary = au_child_path ();
    if (!binary)
        return -1;
    char *argv [32];
    size_t argc = 0;
    argv [argc++] = binary;
    for (size_t index = 0; args [index] && argc < 31; index++)
        argv [argc++] = (char *) args [index];
    argv [argc] = NULL;
    pid_t pid = bu_spawn (binary, argv, log);
    free (binary);
    return pid;
}

pid_t
au_spawn (const char *binary, const char *const *args, const char *log)
{
    char *argv [32];
    size_t argc = 0;
    argv [argc++] = (char *) binary;
    for (size_t index = 0; args [index] && argc < 31; index++)
        argv [argc++] = (char *) args [index];
    argv [argc] = NULL;
    return bu_spawn (binary, argv, log);
}

int
au_child_wait (pid_t pid, int timeout_ms, int *status)
{
    uint64_t deadline = tu_mono_ns () + (uint64_t) timeout_ms * 1000000ULL;
    while (true) {
        pid_t rc = waitpid (pid, status, WNOHANG);
        if (rc == pid)
            return 0;
        if (rc < 0 && errno != EINTR)
            return -1;
        if (tu_mono_ns () >= deadline)
            return -1;
        usleep (5000);
    }
}
