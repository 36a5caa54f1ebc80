/*  =========================================================================
    herald_writer - applies proposals to the store, on a thread of its own

    A zactor.  The pipe carries one pointer each way per proposal:

        loop   --- "p" record --->   writer thread: herald_store_apply,
        loop   <-- "p" record ----   then herald_store_take_appended

    The record lives in herald_writer_t and is touched by one side at a
    time: the message that hands it over orders the writes (libzmq's pipes
    are the synchronisation), so no lock is needed.  Taking the envelopes
    swaps the record's old buffers (released, already fanned out) into the
    store, so the two take turns and a steady load allocates nothing.
    =========================================================================
*/

#include "herald_writer.h"

struct _herald_writer_t {
    zactor_t *actor;
    herald_store_t *store;
    herald_applied_t record;
    bool busy;                      //  proposed, not yet taken
    bool lent;                      //  taken, not yet released
};

typedef struct {
    herald_store_t *store;
    herald_applied_t *record;
} s_job_t;

static void
s_writer_actor (zsock_t *pipe, void *args)
{
    herald_store_t *store = (herald_store_t *) args;
    zsock_signal (pipe, 0);
    while (true) {
        zmsg_t *msg = zmsg_recv (pipe);
        if (!msg && zmq_errno () == EINTR)
            continue;                   //  a signal for the main thread
        if (!msg)
            break;
        char *command = zmsg_popstr (msg);
        bool term = !command || streq (command, "$TERM");
        if (!term && streq (command, "APPLY")) {
            zframe_t *frame = zmsg_pop (msg);
            herald_applied_t *record =
                frame && zframe_size (frame) == sizeof (herald_applied_t *)
                ? *(herald_applied_t **) zframe_data (frame): NULL;
            zframe_destroy (&frame);
            if (record) {
                memset (&record->err, 0, sizeof (record->err));
                uint64_t head = herald_store_head (store);
                record->rc = herald_store_apply (store, record->batches, record->count,
                                                 record->ts, &record->err);
                record->first_seq = head + 1;
                record->last_seq = head;
                if (record->rc == HERALD_OK) {
                    record->last_seq = herald_store_head (store);
                    herald_store_take_appended (store, &record->envelopes);
                }
                zsock_send (pipe, "p", record);
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
    self->store = store;
    self->actor = zactor_new (s_writer_actor, store);
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
    if (self->busy)
        herald_writer_take (self);
    zactor_destroy (&self->actor);
    herald_store_envelopes_free (&self->record.envelopes);
    free (self);
    *self_p = NULL;
}

void
herald_writer_propose (herald_writer_t *self, herald_batch_t *batches, size_t count,
                       uint64_t ts, void *cookie)
{
    assert (self && !self->busy && !self->lent);
    herald_applied_t *record = &self->record;
    record->cookie = cookie;
    record->batches = batches;
    record->count = count;
    record->ts = ts;
    record->envelopes.count = 0;        //  the last record's, fanned out already
    self->busy = true;
    zmsg_t *msg = zmsg_new ();
    zmsg_addstr (msg, "APPLY");
    zmsg_addmem (msg, &record, sizeof (record));
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

herald_applied_t *
herald_writer_take (herald_writer_t *self)
{
    assert (self && self->busy);
    void *record = NULL;
    int rc;
    while ((rc = zsock_recv (self->actor, "p", &record)) != 0 && zmq_errno () == EINTR)
        ;                               //  a signal: the apply still ends
    self->busy = false;
    self->lent = true;
    if (rc != 0 || record != &self->record) {
        //  The thread is gone (interrupted): the apply's outcome is unknown,
        //  so nothing of it may be ACKed.
        self->record.rc = HERALD_ERR_INTERNAL;
        herald_error_set (&self->record.err, HERALD_ERR_INTERNAL, "",
                          "the store writer stopped");
        self->record.envelopes.count = 0;
        self->record.first_seq = 1;
        self->record.last_seq = 0;
    }
    return &self->record;
}

void
herald_writer_release (herald_writer_t *self, herald_applied_t **record_p)
{
    assert (self && self->lent && record_p && *record_p == &self->record);
    self->lent = false;
    *record_p = NULL;
}
