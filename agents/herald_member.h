/*  =========================================================================
    herald_member - one group subscription's member of a consumer group

    The wire side of herald_agent_subscribe_group (docs/protocol.md
    "Consumer groups"; docs/groups.md): a thread of its own per group
    subscription, with its own DEALER to the api (following not_leader to
    the leader, moving to another node when one does not answer) and its
    own SUB on the fanout, used as a doorbell only.  It

      - heartbeats every heartbeat_ms and keeps the assignment and the
        lease (2/3 of session_ms from the send of the last answered
        heartbeat); with no valid lease it hands nothing over;
      - reads the events of its partitions with REPLAY (credit-based, so
        nothing is lost to a high-water mark) from the lowest position of
        what it holds, keeps those of its partitions above each one's
        committed, and flags redelivered those at or below the delivered
        it was granted them with;
      - declares each batch (commit `delivered` = each partition's last
        seq in it, waits for the reply), then hands it to the delivery thread
        (herald_agent_group_push) and waits for herald_member_done;
      - on a revoke, lets the batch in hand finish (the delivery thread
        stops early, between two events, when herald_member_admit says
        no), commits with delivered = committed, then heartbeats without
        the partition;
      - on destroy (unsubscribe, agent destroy, the handler failed)
        commits what was done and leaves.

    The delivery thread calls herald_member_admit before each event of a
    batch and herald_member_done once after the batch.  Everything else
    is the member thread's.
    =========================================================================
*/

#ifndef HERALD_MEMBER_H_INCLUDED
#define HERALD_MEMBER_H_INCLUDED

#include "herald_agent_priv.h"

typedef struct _herald_member_t herald_member_t;

//  Start sub's member of group (options copied; from_seq: the first seq of
//  a group this join creates).  The member thread's batches name sub.
//  NULL on failure (herald_agent_set_error done).
herald_member_t *
    herald_member_new (herald_agent_t *agent, herald_agent_sub_t *sub, const char *group,
                       const herald_group_options_t *options, uint64_t from_seq);

//  Commit what is done, leave the group (bounded by the agent's
//  timeout_ms), stop the thread, free.  The delivery thread must not be
//  inside one of sub's batches (unsubscribe waits for `busy` first).
//  NULL-safe.
void
    herald_member_destroy (herald_member_t **self_p);

//  Delivery thread: may the next event of the batch in hand be given to
//  the handler?  False once the lease has ended or a revoke or fence is
//  pending: the delivery thread then stops the batch there.
bool
    herald_member_admit (herald_member_t *self);

//  Delivery thread: the batch handed over is finished; its first
//  `handled` events were handled (the handler returned OK), the rest not
//  (stopped early, failed, or the subscription stops).
void
    herald_member_done (herald_member_t *self, size_t handled);

//  The member's figures (any thread).
void
    herald_member_status (herald_member_t *self, herald_group_status_t *status);

//  The partition of a topic in a group of `partitions` (fnv1a32 of its
//  bytes, mod partitions: docs/protocol.md).
uint32_t
    herald_member_partition (const char *topic, size_t len, uint32_t partitions);

//  Implemented by the agent (herald_agent_deliver.c): hand an EVENTS batch
//  of a group subscription (batch->sub set, batch->redelivered filled) to
//  the delivery thread; ownership passes.  Blocks while the delivery
//  thread's queue is full, up to timeout_ms; HERALD_ERR_TIMEOUT then (the
//  batch is freed), HERALD_ERR_INVALID once the agent is stopping.
herald_err
    herald_agent_group_push (herald_agent_t *agent, herald_batch_t *batch, int timeout_ms);

#endif
