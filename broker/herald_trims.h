/*  =========================================================================
    herald_trims - the broker's TRIM command and the disk's reclaim

    TRIM {rid, prefix, until, ids_from + ids | unarchived} (an addition to
    HWP/1, docs/protocol.md "Trimming") raises a trim point: the events of
    the topics beginning with prefix, up to seq until, leave the live log.
    The loop checks the body and the grant (`admin = trim`, before the body
    is looked at); with the archive's proof a worker thread computes the
    digest of the ids of seqs ids_from..until from the log
    (herald_store_ids_digest) and refuses on any difference; then the trim
    goes through the group commit as an op (herald_commit_op: in a cluster
    it is replicated and applied by every node at the same point of the
    log), and TRIM {rid, prefix, until, first, trimmed_ms} answers once it
    is applied.  One proof is checked at a time (`overloaded` for a second
    one); a follower answers not_leader.  Retention (herald_retention)
    sends its trims through here too, without a proof.

    The disk is freed after, by a thread of its own calling
    herald_store_reclaim in slices while there is more to do: woken after
    each trim this node applied, and at start (a restart resumes).
    =========================================================================
*/

#ifndef HERALD_TRIMS_H_INCLUDED
#define HERALD_TRIMS_H_INCLUDED

#include <stdbool.h>
#include <czmq.h>
#include "herald_auth.h"
#include "herald_commit.h"
#include "herald_node.h"
#include "herald_reply.h"
#include "herald_store.h"

typedef struct _herald_trims_t herald_trims_t;

//  What STATUS shows of trimming (docs/broker.md).
typedef struct {
    uint64_t trims;                 //  TRIM requests answered TRIM (applied)
    uint64_t retention_trims;       //  trims the retention policies applied
    uint64_t reclaim_pending;       //  1 while the reclaim has more to do
    uint64_t reclaimed_events;      //  events whose disk the reclaim freed, since start
} herald_trims_counts_t;

//  Everything is borrowed and outlives it; cluster NULL standalone, auth
//  NULL with security off (no audit lines).  Starts the reclaim thread.
herald_trims_t *
    herald_trims_new (herald_store_t *store, herald_commit_t *commit, herald_reply_t *reply,
                      herald_node_t *cluster, herald_auth_t *auth);

//  Cancel a proof being checked (its request gets no reply, nothing is
//  trimmed) and stop the reclaim, waiting for both.  Called first when
//  the broker stops, so that neither holds it up.  Idempotent.
void
    herald_trims_stop (herald_trims_t *self);

//  herald_trims_stop, then free.  After herald_commit_destroy: the ops in
//  flight are answered through it until then.  NULL-safe.
void
    herald_trims_destroy (herald_trims_t **self_p);

//  True when command is TRIM.
bool
    herald_trims_is_request (zframe_t *command);

//  Take one TRIM request (identity and body borrowed) from who (the user,
//  NULL with security off): start it, or answer an ERROR at once.
void
    herald_trims_request (herald_trims_t *self, zframe_t *identity, zframe_t *body,
                          const char *who);

//  The proof check running: its socket, readable when it is done (NULL:
//  none runs).
zsock_t *
    herald_trims_sock (herald_trims_t *self);

//  The proof check is done (its socket was readable): refuse, or send the
//  trim to the commit.
void
    herald_trims_finish (herald_trims_t *self);

//  A retention policy's trim: prefix up to until, no proof, reason kept
//  by the store.  Nothing when one is in flight already (false).
bool
    herald_trims_retain (herald_trims_t *self, const char *prefix, uint64_t until,
                         const char *reason);

//  True while a retention trim is in flight.
bool
    herald_trims_retaining (herald_trims_t *self);

//  True when this node may trim now: standalone, or the cluster's leader.
bool
    herald_trims_leads (herald_trims_t *self);

//  STATUS `first` and `trims` (docs/protocol.md), for every user:
//  appended to more (copied into buffer).
herald_msg_raw_t
    herald_trims_status_raw (herald_trims_t *self, herald_msg_raw_t more,
                             msgpack_sbuffer *buffer);

void
    herald_trims_counts (herald_trims_t *self, herald_trims_counts_t *counts);

#endif
