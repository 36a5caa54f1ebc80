/*  =========================================================================
    herald_writer - the store's appender, on a thread of its own

    A zactor.  The pipe carries one pointer each way per append:

        loop   --- "p" job --->   writer thread: herald_store_append (job)
        loop   <-- "p" job ----   (job's rc and err filled in)

    The job lives in herald_writer_t and is touched by one side at a time:
    the message that hands it over orders the writes (libzmq's pipes are
    the synchronisation), so no lock is needed.
    =========================================================================
*/

#include "herald_writer.h"

typedef struct {
    herald_store_t *store;
    herald_batch_t *batches;
    size_t count;
    herald_err rc;
    herald_error_t err;
} s_job_t;

struct _herald_writer_t {
    zactor_t *actor;
    s_job_t job;
    bool busy;
};

static void
s_writer_actor (zsock_t *pipe, void *args)
{
    (void) args;
    zsock_signal (pipe, 0);
    while (true) {
        zmsg_t *msg = zmsg_recv (pipe);
        if (!msg && zmq_errno () == EINTR)
            continue;                   //  a signal for the main thread
        if (!msg)
            break;
        char *command = zmsg_popstr (msg);
        bool term = !command || streq (command, "$TERM");
        if (!term && streq (command, "APPEND")) {
            zframe_t *frame = zmsg_pop (msg);
            s_job_t *job = frame && zframe_size (frame) == sizeof (s_job_t *)
                         ? *(s_job_t **) zframe_data (frame): NULL;
            zframe_destroy (&frame);
            if (job) {
                memset (&job->err, 0, sizeof (job->err));
                job->rc = herald_store_append (job->store, job->batches, job->count,
                                               &job->err);
                zsock_send (pipe, "p", job);
            }
        }
        zstr_free (&command);
        zmsg_destroy (&msg);
        if (term)
            break;
    }
}

herald_writer_t *
herald_writer_new (herald_store_t *store)
{
    herald_writer_t *self = (herald_writer_t *) zmalloc (sizeof (herald_writer_t));
    self->job.store = store;
    self->actor = zactor_new (s_writer_actor, NULL);
    if (!self->actor) {
        free (self);
        return NULL;
    }
    return self;
}

void
herald_writer_destroy (herald_writer_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    herald_writer_t *self = *self_p;
    if (self->busy) {
        herald_error_t err;
        herald_writer_finish (self, &err);
    }
    zactor_destroy (&self->actor);
    free (self);
    *self_p = NULL;
}

void
herald_writer_start (herald_writer_t *self, herald_batch_t *batches, size_t count)
{
    assert (self && !self->busy);
    self->job.batches = batches;
    self->job.count = count;
    self->busy = true;
    s_job_t *job = &self->job;
    zmsg_t *msg = zmsg_new ();
    zmsg_addstr (msg, "APPEND");
    zmsg_addmem (msg, &job, sizeof (job));
    zmsg_send (&msg, self->actor);
}

bool
herald_writer_busy (herald_writer_t *self)
{
    return self->busy;
}

zsock_t *
herald_writer_sock (herald_writer_t *self)
{
    return zactor_sock (self->actor);
}

herald_err
herald_writer_finish (herald_writer_t *self, herald_error_t *err)
{
    assert (self && self->busy);
    void *job = NULL;
    int rc;
    while ((rc = zsock_recv (self->actor, "p", &job)) != 0 && zmq_errno () == EINTR)
        ;                               //  a signal: the append still ends
    if (rc != 0 || job != &self->job) {
        //  The thread is gone (interrupted): the append's outcome is unknown,
        //  so nothing of it may be ACKed.
        self->busy = false;
        herald_error_set (err, HERALD_ERR_INTERNAL, "", "the store writer stopped");
        return HERALD_ERR_INTERNAL;
    }
    self->busy = false;
    *err = self->job.err;
    return self->job.rc;
}
