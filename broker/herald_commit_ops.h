/*  =========================================================================
    herald_commit_ops - a consumer group's op on its way through the group
    commit (herald_commit_op)

    An op rides in the group commit like a PUBLISH request: queued in
    arrival order, proposed in the same batch array (a herald_batch_t with
    count 0 and `op` set), applied by the store in the same WriteBatch.
    This holds what herald_commit.c keeps of one: its bytes, its caller's
    done callback, and the promise that done runs exactly once.
    =========================================================================
*/

#ifndef HERALD_COMMIT_OPS_H_INCLUDED
#define HERALD_COMMIT_OPS_H_INCLUDED

#include "herald_commit.h"

typedef struct _herald_commit_pending_op_t herald_commit_pending_op_t;

//  A copy of op[0..len) and who to tell.  Never NULL (aborts when out of
//  memory, as the rest of the loop's allocations).
herald_commit_pending_op_t *
    herald_commit_pending_op_new (const uint8_t *op, size_t len, herald_commit_op_fn *done,
                                  void *arg);

//  The op's bytes, borrowed while it lives.
const uint8_t *
    herald_commit_pending_op_bytes (herald_commit_pending_op_t *self, size_t *len);

//  Tell the caller: applied (rc HERALD_OK, result), or why not (result
//  NULL, err).  Only the first call of either does anything.
void
    herald_commit_pending_op_answer (herald_commit_pending_op_t *self, herald_err rc,
                                     const uint8_t *result, size_t result_len,
                                     const herald_error_t *err);

//  herald_commit_pending_op_answer with code and message, no result.
void
    herald_commit_pending_op_refuse (herald_commit_pending_op_t *self, herald_err code,
                                     const char *message);

//  Free it; an op never answered gets HERALD_ERR_OVERLOADED (the broker
//  is stopping) first, so done runs exactly once.  NULL-safe.
void
    herald_commit_pending_op_destroy (herald_commit_pending_op_t **self_p);

#endif
