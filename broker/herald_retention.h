/*  =========================================================================
    herald_retention - retention policies: trim what is older than an age

    `--retention PREFIX=AGE` (herald_config; repeatable, reloaded on
    SIGHUP): every retention-interval-ms the broker (a cluster: its leader)
    finds, for each policy, the last seq whose ts is older than now - AGE
    and, when it is above the prefix's trim point, trims up to it
    (herald_trims_retain: an op through the commit, replicated, without a
    proof: the events are deleted, no archive holds them).  Keep for ever
    when there is no policy.  docs/operations.md, "Trimming and retention".
    =========================================================================
*/

#ifndef HERALD_RETENTION_H_INCLUDED
#define HERALD_RETENTION_H_INCLUDED

#include <czmq.h>
#include "herald_config.h"
#include "herald_store.h"
#include "herald_trims.h"

typedef struct _herald_retention_t herald_retention_t;

//  The policies of config (copied); store and trims borrowed.
herald_retention_t *
    herald_retention_new (const herald_config_t *config, herald_store_t *store,
                          herald_trims_t *trims);

void
    herald_retention_destroy (herald_retention_t **self_p);

//  ms until the next pass is due (0: now); -1 with no policy.
int64_t
    herald_retention_wait (herald_retention_t *self);

//  One pass when it is due: at most one trim in flight at a time (the
//  next policy's waits for the next pass).
void
    herald_retention_tick (herald_retention_t *self);

//  SIGHUP: the main thread sends config's policies to the broker's pipe
//  as one message, "RETENTION" first ...
void
    herald_retention_send (zsock_t *pipe, const herald_config_t *config);

//  ... and the broker takes it (msg after its first frame, borrowed) in
//  place of its policies.
void
    herald_retention_reload (herald_retention_t *self, zmsg_t *msg);

#endif
