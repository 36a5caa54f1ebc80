/*  =========================================================================
    membertest - a cluster whose membership changes

    Four heraldd nodes made, three bootstrapped as members and n4 (ports
    chosen, not started) set to join with --cluster-state existing; waits
    for a node's state, its Raft, the leader every member names; `herald`
    run as a subprocess; PUBLISH batches acknowledged.  For
    test_heraldd_members and test_heraldd_backup_cluster (with brokertest).
    Each failure is a criterion assertion that shows every node's log.
    =========================================================================
*/

#ifndef HERALD_MEMBERTEST_H_INCLUDED
#define HERALD_MEMBERTEST_H_INCLUDED

#include "brokertest.h"

#define MT_ALL          4           //  nodes made; n4 joins later
#define MT_MEMBERS      3           //  the bootstrap members
#define MT_ELECT_MS     15000

extern bu_cluster_t *mt_cluster;        //  destroyed by the test's teardown
extern char mt_peer [MT_ALL][160];      //  each node's --peer value

//  Fail with what, and the end of every node's log.
void
    mt_fail_with_logs (const char *what);

//  Remove the pair "--peer SPEC" from node's flags.
void
    mt_drop_peer (bu_broker_t *node, const char *spec);

//  Append "flag value" to node's flags.
void
    mt_add_flags (bu_broker_t *node, const char *flag, const char *value);

//  Wait until node index answers STATUS with cluster_state state.
bu_node_status_t
    mt_wait_state (size_t index, const char *state);

//  Wait until node index's Raft runs.
void
    mt_wait_raft (size_t index);

//  Make the four nodes (tag "members"), start the three members.
void
    mt_cluster_up (void);

//  The leader as every running member agrees; -1 after timeout_ms.
int
    mt_leader_within (int timeout_ms);

//  The same within MT_ELECT_MS, or fail.
int
    mt_leader (void);

//  "E1,E2,..." of the members' api endpoints, starting with first.
void
    mt_endpoints (size_t first, char *out, size_t size);

//  Run `herald ARGS`; stdout and stderr into out; its exit status (-1
//  when it did not exit).
int
    mt_herald (char *out, size_t size, const char *format, ...);

//  A PUBLISH of count events on topic to node index; the reply, decoded.
void
    mt_publish_once (size_t index, const char *topic, size_t count, uint64_t rid,
                     bu_reply_t *reply);

//  count batches of 5 to node index, each ACKed; the last seq.
uint64_t
    mt_publish (size_t index, const char *topic, size_t count, uint64_t first_rid);

#endif
