/*  =========================================================================
    herald_commit_priv - what herald_commit.c and herald_commit_guard.c
    share: a queued request, a commit in flight, the unit's state

    Nothing outside those two files includes this header.
    =========================================================================
*/

#ifndef HERALD_COMMIT_PRIV_H_INCLUDED
#define HERALD_COMMIT_PRIV_H_INCLUDED

#include "herald_commit.h"
#include "herald_commit_ops.h"
#include "herald_histogram.h"
#include "herald_writer.h"

//  A queued request: a PUBLISH, or (op set) a group's op, which has no
//  identity, body or message and is answered through its done callback.
typedef struct {
    zframe_t *identity;                 //  owned
    zframe_t *body;                     //  owned; the events point into it
    msgpack_zone zone;                  //  owns the decoded arrays
    herald_msg_t msg;
    herald_append_result_t *results;    //  msg.publish.count entries
    herald_error_t *refused;            //  the guard's refusal: not proposed, answered
                                        //  in its turn (owned; NULL: proposed)
    herald_commit_pending_op_t *op;     //  a group's op instead of a PUBLISH (owned)
    int64_t arrived;                    //  zclock_usecs when it was read: ACK latency
} s_request_t;

//  One commit in flight: its requests, their store batches (borrowed by
//  the applier until its record is released), its bytes, when it started.
typedef struct {
    uint64_t number;                    //  cluster: the proposal number, its cookie
    zlistx_t *requests;                 //  s_request_t, in arrival order
    size_t events;
    size_t bytes;
    herald_batch_t *batches;
    size_t capacity;
    int64_t started;
    bool answered;                      //  cluster: answered before its record came
    size_t proposed;                    //  batches: its requests the guard did not refuse
} s_commit_t;

struct _herald_commit_t {
    herald_config_t *config;            //  borrowed
    herald_store_t *store;              //  borrowed
    herald_disk_t *disk;                //  borrowed: the free-space guard
    herald_reply_t *reply;              //  borrowed: the api socket, counted
    zsock_t *pub;                       //  borrowed: fanout
    herald_fanout_t *fanout;            //  borrowed: every fanout socket, when set
    herald_writer_t *writer;            //  applies on its own thread (standalone)
    bool clustered;                     //  a cluster node: raft applies, once attached
    herald_raft_t *raft;                //  borrowed; NULL until attached
    uint64_t proposal;                  //  cluster: the last proposal's number (never 0)
    zlistx_t *queue;                    //  s_request_t, in arrival order
    size_t queued_events;
    size_t queued_bytes;                //  PUBLISH bodies held by the queue
    s_commit_t *single;                 //  standalone: the commit, in flight or not
    zlistx_t *inflight;                 //  cluster: s_commit_t, in proposal order
    size_t inflight_bytes;              //  ... their PUBLISH bytes
    size_t inflight_requests;           //  ... their requests not answered yet
    const char *stop_reason;
    herald_commit_counts_t counts;
    //  STATUS `histograms`: commit_us (proposed to applied), ack_us (read
    //  to ACK sent), commit_events (events per commit)
    herald_histogram_t histograms [HERALD_COMMIT_HISTOGRAMS];
    herald_commit_guard_t guard;        //  security's checks; none when off
    zhashx_t *proposed;                 //  guard: id -> event, of the proposal being made
    const herald_event_t **earlier;     //  guard: per event of a request, its id's earlier
    size_t earlier_capacity;
};

//  Security: just before the queue is proposed, refuse what the guard
//  refuses (herald_commit_guard.c).
void
    herald_commit_guard_queue (herald_commit_t *self);

#endif
