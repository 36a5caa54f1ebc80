/*  =========================================================================
    herald_members - a cluster node's admin requests: CLUSTER add, remove,
    transfer (HWP/1 addition; docs/protocol.md "Membership changes")

    The broker hands every request whose command frame is CLUSTER to this
    unit, on a cluster node only (a standalone broker answers it
    unknown_command like any command it does not know).  It checks the
    body, refuses at once what it must (not_leader off the leader,
    overloaded while a change runs, bad_request), starts the change on the
    Raft node (herald_raft_change) and answers when it has ended: a
    CLUSTER reply, or an ERROR.  One change at a time per node.
    =========================================================================
*/

#ifndef HERALD_MEMBERS_H_INCLUDED
#define HERALD_MEMBERS_H_INCLUDED

#include <czmq.h>
#include "herald_node.h"
#include "herald_reply.h"

typedef struct _herald_members_t herald_members_t;

//  reply is borrowed (the broker's).
herald_members_t *
    herald_members_new (herald_reply_t *reply);

//  A request still waiting is answered not_leader (outcome unknown).
void
    herald_members_destroy (herald_members_t **self_p);

//  True when command is CLUSTER.
bool
    herald_members_is_request (zframe_t *command);

//  Take a CLUSTER request (identity and body borrowed).
void
    herald_members_request (herald_members_t *self, herald_node_t *node,
                            zframe_t *identity, zframe_t *body);

//  Answer the request waiting once its change has ended (every loop turn).
void
    herald_members_tick (herald_members_t *self, herald_node_t *node);

#endif
