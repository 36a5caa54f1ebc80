/*  =========================================================================
    herald_groups - the broker's consumer-group coordinator: GROUP
    requests (HWP/1 addition, docs/protocol.md "Consumer groups")

    Sessions, assignments and revocations live here, in memory, on the node
    that serves GROUP (a standalone broker, a cluster's leader); positions,
    epochs and the groups themselves live in the store and change only
    through ops applied by the group commit (herald_commit_op,
    herald_store_groups.h), so that a cluster replicates them.  After a
    start, or on becoming leader, members are re-learned from their
    heartbeats, and a partition nobody claims is granted only once a
    session has passed (its old owner's lease has ended).
    =========================================================================
*/

#ifndef HERALD_GROUPS_H_INCLUDED
#define HERALD_GROUPS_H_INCLUDED

#include <czmq.h>
#include "herald_acl.h"
#include "herald_commit.h"
#include "herald_guard.h"
#include "herald_node.h"
#include "herald_reply.h"
#include "herald_store.h"

typedef struct _herald_groups_t herald_groups_t;

//  Everything borrowed (the broker's) and must outlive it; node NULL
//  standalone, guard NULL with security off.
herald_groups_t *
    herald_groups_new (herald_store_t *store, herald_commit_t *commit, herald_reply_t *reply,
                       herald_node_t *node, herald_guard_t *guard);

void
    herald_groups_destroy (herald_groups_t **self_p);

//  Settings (until called: 1024, 256, 0).  A heartbeat that would make a
//  group beyond max_groups (those the store keeps, and those being made),
//  or add a member beyond max_members to one, is refused `overloaded` and
//  changes nothing.  grace_extra_ms is added to the grace after a start or
//  a change of leader: a cluster node's election timeout, the time a
//  leader cut off from its majority may still answer heartbeats before it
//  steps down (docs/groups.md "Sessions, and the broker's restarts").
void
    herald_groups_configure (herald_groups_t *self, size_t max_groups, size_t max_members,
                             uint64_t grace_extra_ms);

//  True when command is GROUP.
bool
    herald_groups_is_request (zframe_t *command);

//  Take a GROUP request (identity and body borrowed; user: security's, or
//  NULL).  Answered at once or once its ops are applied.
void
    herald_groups_request (herald_groups_t *self, zframe_t *identity, zframe_t *body,
                           const herald_acl_user_t *user);

//  Every loop turn: expire sessions, grant what is free, notice a change
//  of leadership.  Returns the ms until it wants its next turn (-1: none).
int64_t
    herald_groups_tick (herald_groups_t *self);

//  STATUS figures: groups known in memory, live members, rebalances
//  (assignment changes), grants, commits applied, fenced positions,
//  sessions expired, heartbeats refused for max-groups or
//  max-group-members.
typedef struct {
    uint64_t groups, members, rebalances, grants, commits, fenced, expired, refused;
} herald_groups_counts_t;

void
    herald_groups_counts (herald_groups_t *self, herald_groups_counts_t *counts);

#endif
