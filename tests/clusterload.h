/*  =========================================================================
    clusterload - pipelined publishers against a cluster, recording every ACK

    Each publisher is a thread with one DEALER per node.  It keeps `window`
    PUBLISH batches in flight to the node it believes leads, and when a
    batch gets not_leader (with a leader: go there at once; nil: the next
    node, after a short backoff) or no answer within timeout_ms (the node
    died or hangs), it sends the SAME batch (same ids) again to the other
    node: the id index makes a retry safe, a stored one comes back dup.

    It records every ACK, also late ones for a batch already resent: the
    seq and ver of each event (a second ACK for one id must say the same),
    and the Raft term its sender led in, as far as it can be known from
    outside: a STATUS on the same DEALER answered before the PUBLISH was
    sent gives term_lo (terms never go down), one sent after the ACK came
    gives term_hi.  Equal, the term is exact (clusterlog's cu_check_terms).

    Topics are shared by all publishers ("load/0".."load/N-1"), so per
    topic ver interleaves between them.  Ids come from the seed.
    =========================================================================
*/

#ifndef HERALD_CLUSTERLOAD_H_INCLUDED
#define HERALD_CLUSTERLOAD_H_INCLUDED

#include "clusterlog.h"

typedef struct {
    size_t publishers;              //  threads
    size_t window;                  //  batches in flight per publisher
    size_t batch_max;               //  events per batch: 1..batch_max (seeded)
    size_t events_max;              //  per publisher, then it only retries
    size_t topics;                  //  shared topics
    int timeout_ms;                 //  unanswered this long: sent elsewhere
    int backoff_ms;                 //  pause after not_leader nil or a timeout
    unsigned rate;                  //  new events per second per publisher (0: as fast
                                    //  as the window allows); retries are not paced
    uint64_t seed;
} cl_options_t;

typedef struct {
    uint64_t batches;               //  batches made
    uint64_t sends;                 //  PUBLISH sent (first sends and retries)
    uint64_t not_leader;            //  ERROR not_leader received
    uint64_t timeouts;              //  PUBLISH given up on for want of a reply
    uint64_t other_errors;          //  any other ERROR
    uint64_t acks;                  //  ACK messages (dup ones too)
    uint64_t acked_events;          //  events with an ACK
    uint64_t unknown_batches;       //  never ACKed by the end (outcome unknown)
    uint64_t inconsistent;          //  ACKs for one id that disagree
} cl_stats_t;

typedef struct _cl_load_t cl_load_t;

//  Start the publishers on cluster's nodes (their api endpoints are
//  copied: the cluster may kill and restart nodes meanwhile).  NULL on
//  failure.
cl_load_t *
    cl_load_start (cu_cluster_t *cluster, const cl_options_t *options);

//  Stop making batches; keep resending those not ACKed for up to drain_ms;
//  join the threads.  Returns how many batches stayed without an ACK.
size_t
    cl_load_stop (cl_load_t *self, int drain_ms);

//  Stop if running, free everything, clear *self_p.  NULL-safe.
void
    cl_load_destroy (cl_load_t **self_p);

//  Events ACKed so far (any thread, while running).
uint64_t
    cl_load_acked (cl_load_t *self);

//  ACK messages received so far from node index (while running).
uint64_t
    cl_load_acks_from (cl_load_t *self, size_t index);

//  After stop: the counters, every ACKed event (first ACK), one record per
//  ACK message with its sender's term bounds, every id published (sent at
//  least once), and the first inconsistency or other error in words ("").
void
    cl_load_stats (cl_load_t *self, cl_stats_t *stats);
const cu_acked_t *
    cl_load_acked_events (cl_load_t *self, size_t *count);
const cu_term_ack_t *
    cl_load_term_acks (cl_load_t *self, size_t *count);
const cu_idset_t *
    cl_load_published (cl_load_t *self);
const char *
    cl_load_problem (cl_load_t *self);

#endif
