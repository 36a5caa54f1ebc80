/*  =========================================================================
    cluster_bench - what cluster_bench.c and cluster_bench_failover.c share

    cluster_bench.c measures a 3-node heraldd cluster beside a single-node
    heraldd --durability sync in the same run (throughput, ACK latency,
    follower lag, catch-up, memory); cluster_bench_failover.c kills and
    stops its leader and measures how long no node ACKs.  Both run the
    nodes with tests/brokerutil.c's cluster helpers, as the tests do.
    =========================================================================
*/

#ifndef CLUSTER_BENCH_H_INCLUDED
#define CLUSTER_BENCH_H_INCLUDED

#include "broker_bench.h"

#define CB_NODES        3
#define CB_START_MS     30000       //  spawn to STATUS, and to an agreed leader
#define CB_STOP_MS      15000       //  SIGTERM to SIGKILL

//  The cluster run by the bench: the nodes (brokerutil's) and their timeouts.
//  heraldd's --election-ms and --raft-heartbeat-ms defaults (the set the
//  bench runs without flags)
#define CB_DEFAULT_ELECTION_MS      500
#define CB_DEFAULT_HEARTBEAT_MS     100

typedef struct {
    bu_cluster_t *cluster;
    unsigned election_ms, heartbeat_ms;
} cb_cluster_t;

//  Start CB_NODES nodes with --election-ms/--raft-heartbeat-ms (0: the
//  node's defaults) and wait for a leader every node names.  Returns 0,
//  or -1 after printing why (the nodes then stopped).
int
    cb_cluster_up (cb_cluster_t *self, const char *tag, unsigned election_ms,
                   unsigned heartbeat_ms);

//  SIGTERM every running node (a bounded wait, SIGKILL last), note a
//  non-zero exit with bb_problem, remove the directories.
void
    cb_cluster_down (cb_cluster_t *self);

//  The index of the node every running node names leader, or -1 after
//  timeout_ms.
int
    cb_leader (cb_cluster_t *self, int timeout_ms);

//  Wait until every running node answers STATUS with the same head and
//  applied index and they agree on a leader (timeout_ms at most).
//  Returns the leader's index, or -1 (noted with bb_problem).
int
    cb_converged (cb_cluster_t *self, int timeout_ms);

//  Print the end of every node's log to stderr (after a failure).
void
    cb_cluster_logs (cb_cluster_t *self);

//  One PUBLISH of one event to api on a fresh DEALER, its reply awaited
//  up to timeout_ms.  Returns 1 for an ACK; 0 for not_leader (leader gets
//  the api it names, "" for nil); -1 for no reply or another reply.
int
    cb_try_publish (const char *api, int timeout_ms, char *leader, size_t size);

//  What a failover series measured (seconds).
typedef struct {
    bb_samples_t gap;                   //  signal to first ACK by another node
    bb_samples_t exit;                  //  SIGTERM only: signal to process exit
    bb_samples_t client;                //  the same for one client that follows
                                        //  not_leader, else tries the next node
    int planned, done;
} cb_failover_t;

//  kills times: kill -9 (graceful false) or SIGTERM (true) the leader, with
//  one PUBLISH sent to it just before, then measure until a node other than
//  the old leader ACKs, two ways at once: every other node sent a PUBLISH
//  every 5 ms (gap), and one client thread that follows not_leader, else
//  tries the next node after 100 ms without a reply (client); restart the
//  old leader and wait for the cluster to converge before the next.  Fills
//  result (the caller frees its samples with cb_failover_fini).
void
    cb_failover (cb_cluster_t *self, bool graceful, int kills, cb_failover_t *result);

void
    cb_failover_fini (cb_failover_t *self);

#endif
