/*  =========================================================================
    herald_raft - a cluster node's replicated log: libraft on a thread of
    its own, applying committed entries to the store

    Every libraft call of Herald is in herald_raft.c (and nowhere else), so
    that another libraft release changes one file.

    The broker loop sees the same shape as herald_writer: propose a group
    commit (the leader only), and take "applied" records when the socket
    turns readable.  The difference: records come for EVERY committed
    entry applied to the store, the leader's own proposals (cookie set) and
    entries proposed by an earlier leader or received as a follower
    (cookie NULL, batches NULL: fan out only), in raft index order.

    Precisely: one record per applied publish entry, in index order.  A
    proposal cut into several entries has one record per entry; only the
    last carries its cookie and batches (every request's results filled
    in), the others are fan-out-only.  A proposal whose leadership was
    lost gets one record with its cookie and rc HERALD_ERR_NOT_LEADER and
    no events.  Events a snapshot's catch-up copied from a peer come as
    fan-out-only records with raft_index 0.

    Entries carry requests, not effects: every node decides seq, ver, dup
    and conflicts itself, with herald_store_apply_entry and the ts the
    leader put in the entry, so every store holds the same log.  The raft
    index goes into the same WriteBatch as the effects.
    =========================================================================
*/

#ifndef HERALD_RAFT_H_INCLUDED
#define HERALD_RAFT_H_INCLUDED

#include <czmq.h>
#include "herald_store.h"
#include "herald_writer.h"

typedef struct _herald_raft_t herald_raft_t;

//  One member as configured (--peer NAME,RAFT_ADDR,API,FANOUT).
typedef struct {
    char *name;                     //  node name, unique in the cluster
    char *raft;                     //  HOST:PORT of its Raft transport
    char *api;                      //  its api endpoint as clients reach it
    char *fanout;                   //  its fanout endpoint as clients reach it
    uint64_t raft_id;               //  raft_digest ("NAME/STORE-UUID", 0): the caller's
} herald_peer_t;

typedef struct {
    const char *node;               //  this node's name (one of peers)
    uint64_t self_id;               //  this node's raft id (its peer's raft_id when listed)
    const char *dir;                //  Raft state directory (created if missing)
    const herald_peer_t *peers;     //  every member, this node included
    size_t peer_count;
    bool bootstrap;                 //  --cluster-state new, pristine dir and store
    unsigned election_ms;           //  default 1000
    unsigned heartbeat_ms;          //  default 100
} herald_raft_options_t;

typedef enum {
    HERALD_RAFT_FOLLOWER,           //  also a candidate, or no leader known
    HERALD_RAFT_LEADER,             //  and ready: proposals are taken
    HERALD_RAFT_JOINING,            //  not a member yet (waiting to be added)
    HERALD_RAFT_STOPPED             //  closed, or failed (the node must stop)
} herald_raft_role_t;

//  A copy of the node's state, for STATUS, heartbeats and not_leader.
typedef struct {
    herald_raft_role_t role;
    uint64_t term;                  //  current term (the heartbeat's epoch)
    uint64_t raft_id;               //  this node's raft id
    char leader [64];               //  leader's node name, "" while unknown
    char leader_api [256];          //  leader's api endpoint, "" while unknown
    uint64_t commit_index;
    uint64_t applied_index;         //  applied to the store
    uint64_t last_index;
    size_t voters;                  //  voters in the configuration
    uint64_t apply_us_max;          //  longest single apply so far
} herald_raft_state_t;

//  Open (or create) the Raft state in options->dir and start the node's
//  thread on store (borrowed: it must outlive the node; the node is its
//  only appender from now on).  NULL with err filled when it cannot
//  start: bad options, a damaged raft directory, a port in use.
herald_raft_t *
    herald_raft_new (const herald_raft_options_t *options, herald_store_t *store,
                     herald_error_t *err);

//  Stop: a leader hands leadership over first (raft_transfer, bounded by
//  the election timeout); records not taken are freed.
void
    herald_raft_destroy (herald_raft_t **self_p);

//  Leader only: propose count batches with ts as one or more entries
//  (each <= 1 MiB of whole requests).  The batches are borrowed until
//  their record is released; cookie comes back in it (one record per
//  proposal, once all its entries are applied, or rc not_leader when
//  leadership was lost and the outcome is unknown).  Returns
//  HERALD_ERR_NOT_LEADER at once when this node does not lead.
herald_err
    herald_raft_propose (herald_raft_t *self, herald_batch_t *batches, size_t count,
                         uint64_t ts, void *cookie);

//  Readable when records wait.
zsock_t *
    herald_raft_sock (herald_raft_t *self);

//  The next record, in raft index order; NULL when none waits.
herald_applied_t *
    herald_raft_take (herald_raft_t *self);

//  Give a taken record back.  Clears *record_p.
void
    herald_raft_release (herald_raft_t *self, herald_applied_t **record_p);

//  The node's state now (any thread).
void
    herald_raft_state (herald_raft_t *self, herald_raft_state_t *state);

//  A raft id: raft_digest (text, 0), for text "NAME/STORE-UUID" (never 0
//  in practice; libraft refuses id 0).  Here so that libraft is called
//  from this unit only.
uint64_t
    herald_raft_digest (const char *text);

#endif
