/*  =========================================================================
    herald_commit_ops - a consumer group's op on its way through the group
    commit (herald_commit_op)

    herald_commit.c treats an op as one more queued request (so it keeps
    arrival order with PUBLISH, and every path that answers a request
    answers it); where a PUBLISH gets a reply frame, an op gets its done
    callback, through here, once.
    =========================================================================
*/

#include "herald_commit_ops.h"

struct _herald_commit_pending_op_t {
    uint8_t *bytes;
    size_t len;
    herald_commit_op_fn *done;
    void *arg;
    bool answered;
};

herald_commit_pending_op_t *
herald_commit_pending_op_new (const uint8_t *op, size_t len, herald_commit_op_fn *done,
                              void *arg)
{
    herald_commit_pending_op_t *self =
        (herald_commit_pending_op_t *) zmalloc (sizeof (herald_commit_pending_op_t));
    self->bytes = (uint8_t *) malloc (len? len: 1);
    assert (self->bytes);
    if (len)
        memcpy (self->bytes, op, len);
    self->len = len;
    self->done = done;
    self->arg = arg;
    return self;
}

const uint8_t *
herald_commit_pending_op_bytes (herald_commit_pending_op_t *self, size_t *len)
{
    *len = self->len;
    return self->bytes;
}

void
herald_commit_pending_op_answer (herald_commit_pending_op_t *self, herald_err rc,
                                 const uint8_t *result, size_t result_len,
                                 const herald_error_t *err)
{
    if (self->answered)
        return;
    self->answered = true;
    if (self->done)
        self->done (self->arg, rc, rc == HERALD_OK? result: NULL,
                    rc == HERALD_OK? result_len: 0, err);
}

void
herald_commit_pending_op_refuse (herald_commit_pending_op_t *self, herald_err code,
                                 const char *message)
{
    herald_error_t err = { 0 };
    herald_error_set (&err, code, "", "%s", message? message: herald_strerror (code));
    herald_commit_pending_op_answer (self, code, NULL, 0, &err);
}

void
herald_commit_pending_op_destroy (herald_commit_pending_op_t **self_p)
{
    herald_commit_pending_op_t *self = *self_p;
    if (!self)
        return;
    herald_commit_pending_op_refuse (self, HERALD_ERR_OVERLOADED,
                                     "the broker is stopping: the op's outcome is not known");
    free (self->bytes);
    free (self);
    *self_p = NULL;
}
