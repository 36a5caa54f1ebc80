/*  =========================================================================
    herald_node - what makes a broker a cluster node: identity, bootstrap,
    its Raft node, and the cluster's keys of STATUS, WELCOME and $hb

    A broker started with --peer is a cluster node (herald_config).  This
    unit gives it its raft id (herald_raft_digest of its name and the store's
    uuid, made once and kept in the store), decides what it is at start,
    runs the bootstrap rule while it has to, owns the herald_raft_t once
    it runs, and says what the broker tells clients about the cluster.

      member         its raft directory holds state: Raft starts at once
      joining        --cluster-state existing, no raft state: Raft starts
                     and waits to be added (herald cluster add)
      bootstrapping  --cluster-state new, no raft state, a pristine store:
                     every peer is asked STATUS until each is pristine too
                     (or a member bootstrapped with this very node); then
                     all bootstrap the same configuration.  A peer that is
                     a member of a cluster without this node's raft id
                     (a wiped disk: a new store uuid) stops it.

    Everything runs on the broker loop's thread.
    =========================================================================
*/

#ifndef HERALD_NODE_H_INCLUDED
#define HERALD_NODE_H_INCLUDED

#include <czmq.h>
#include "herald_config.h"
#include "herald_msg.h"
#include "herald_raft.h"
#include "herald_store.h"

typedef struct _herald_node_t herald_node_t;

//  The node of a clustered config (borrowed, as store: both outlive it).
//  Reads or makes the store's uuid and decides the start state; a member
//  or a joining node starts Raft now.  NULL with err filled when it
//  cannot: the store unreadable, `new` on a store that holds events
//  already, Raft failing to start.
herald_node_t *
    herald_node_new (herald_config_t *config, herald_store_t *store, herald_error_t *err);

//  Destroy the Raft node (herald_node_stop_raft) and free.
void
    herald_node_destroy (herald_node_t **self_p);

//  One turn of the loop: while bootstrapping, read the peers' answers,
//  ask again when due, and start Raft once the rule allows.  Returns 0,
//  or -1 when the node must stop: a peer is a member of a cluster
//  without this node, or the Raft node stopped or failed to start (the
//  reason is logged; herald_node_stop_reason says it in a few words).
int
    herald_node_tick (herald_node_t *self);

//  ms until herald_node_tick wants to run again (-1: not before a wake).
int64_t
    herald_node_wait (herald_node_t *self);

//  The Raft node, NULL while bootstrapping (or once stopped).
herald_raft_t *
    herald_node_raft (herald_node_t *self);

//  Stop the Raft node: a leader hands leadership over first.  Records
//  not taken are dropped; the proposal's batches are no longer touched.
void
    herald_node_stop_raft (herald_node_t *self);

//  The Raft state now; zeros and role FOLLOWER (or JOINING) before Raft
//  runs, with this node's raft id.
void
    herald_node_state (herald_node_t *self, herald_raft_state_t *state);

//  The cluster's keys of STATUS (cluster_state, raft_id, term, leader,
//  leader_api, commit/applied/last index, voters, digest, apply_us_max,
//  durability, peers), of WELCOME (leader: api or nil) and of $hb (role,
//  leader), encoded into buffer (an empty one, which the caller frees
//  after sending), as pairs for herald_msg_t's raw.
herald_msg_raw_t
    herald_node_status_raw (herald_node_t *self, msgpack_sbuffer *buffer);
herald_msg_raw_t
    herald_node_welcome_raw (herald_node_t *self, msgpack_sbuffer *buffer);
herald_msg_raw_t
    herald_node_heartbeat_raw (herald_node_t *self, msgpack_sbuffer *buffer);

//  The current term: a cluster node's epoch in $hb and STATUS.
uint64_t
    herald_node_term (herald_node_t *self);

//  "leader" or "follower" (a candidate or a node not yet a member).
const char *
    herald_node_role (herald_node_t *self);

//  Static text, after herald_node_tick's -1.
const char *
    herald_node_stop_reason (herald_node_t *self);

#endif
