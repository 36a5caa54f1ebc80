/*  =========================================================================
    herald_commit - the group commit: queue PUBLISH, apply, ACK, fan out

    The broker loop hands each PUBLISH request here.  Requests queue until
    the applier (herald_writer) is free; then every queued request goes to
    it as ONE proposal (one store apply, one WriteBatch, one WAL sync),
    with the ts its events are to get, read from the clock now.  When the
    proposal comes back applied, each of its requests gets its ACK or
    ERROR, in arrival order, and then its new events go out on fanout, in
    seq order, as the very bytes the store wrote.

    The loop drives it: publish (queue), start (propose when free), sock
    and finish (the applied record is back).  Everything runs on the loop's
    thread; the applier runs the store apply on its own.  A replicated log
    (the cluster) replaces the applier under this unit, not the unit; a
    cluster leader keeps several proposals in flight (a pipeline), each
    answered when its own record comes, in proposal order.
    =========================================================================
*/

#ifndef HERALD_COMMIT_H_INCLUDED
#define HERALD_COMMIT_H_INCLUDED

#include <czmq.h>
#include "herald_config.h"
#include "herald_disk.h"
#include "herald_fanout.h"
#include "herald_histogram.h"
#include "herald_raft.h"
#include "herald_reply.h"
#include "herald_store.h"

typedef struct _herald_commit_t herald_commit_t;

//  What the group commit counts, for STATUS and heartbeats.
typedef struct {
    uint64_t published;             //  events fanned out
    uint64_t duplicates;            //  events ACKed as duplicates
    uint64_t conflicts;             //  requests refused on `expect`
    uint64_t ids_reused;            //  duplicates whose topic or data differed
    uint64_t fanned;                //  the last seq published on fanout
} herald_commit_counts_t;

//  A group commit for store, answering through reply and fanning out on
//  pub.  Everything is borrowed and must outlive it.  Caller owns; NULL
//  when the applier's thread could not start.
herald_commit_t *
    herald_commit_new (herald_config_t *config, herald_store_t *store, herald_disk_t *disk,
                       herald_reply_t *reply, zsock_t *pub);

//  A cluster node's group commit: no applier until herald_commit_attach;
//  PUBLISH gets ERROR not_leader (with the leader's api, or nil) whenever
//  this node does not lead.  Caller owns.
herald_commit_t *
    herald_commit_new_cluster (herald_config_t *config, herald_store_t *store,
                               herald_disk_t *disk, herald_reply_t *reply, zsock_t *pub);

//  The Raft node (borrowed) becomes the applier: proposals go to it, and
//  its records (every applied entry) come back through herald_commit_sock
//  and herald_commit_finish.
void
    herald_commit_attach (herald_commit_t *self, herald_raft_t *raft);

//  The Raft node was destroyed (it no longer touches the proposals'
//  batches): answer the proposals in flight not_leader (outcome unknown),
//  in order, then the queue not_leader; forget the node.  Returns how
//  many.
size_t
    herald_commit_raft_gone (herald_commit_t *self);

//  True when herald_commit_sock may turn readable: standalone, while a
//  commit is in flight; a cluster node, whenever Raft runs (records come
//  for entries other leaders proposed too).
bool
    herald_commit_waiting (herald_commit_t *self);

//  Wait for a commit in flight (standalone; its requests are not
//  answered), free the queued requests and a cluster's proposals in
//  flight (its Raft node is destroyed first) unanswered, free the unit.
void
    herald_commit_destroy (herald_commit_t **self_p);

//  Security (issue 14, herald_guard): publish is asked once a PUBLISH is
//  decoded, before it queues: HERALD_OK, or the ERROR (err) to answer,
//  and nothing of it is stored.  stored is asked for each queued request
//  just before its commit is proposed, when every earlier commit is in
//  the store (a cluster leader: or in a proposal in flight): earlier [i]
//  is the event of an earlier request of this proposal or of one in
//  flight with the id of event i (NULL: none); HERALD_OK, or the ERROR
//  (err) to answer at once, and the request leaves the commit, the others
//  go on.  So a publisher never learns the seq and ver of an event in a
//  topic it may not publish, and its refused batch stores nothing.
//  duplicate is asked, before an ACK, for each event found stored already
//  (at seq): false turns the ACK into ERROR unauthorized (a cluster
//  node's last line, with stored set: an entry committed by an earlier
//  leader and not yet applied here; a standalone broker skips it then).  body is the request's frame
//  (its metadata names the user).  publish may set *retry_ms (0 when
//  called), sent with its ERROR (a rate limit's overloaded).
typedef struct {
    herald_err (*publish) (void *arg, zframe_t *body, const herald_msg_t *msg,
                           herald_error_t *err, uint64_t *retry_ms);
    bool (*duplicate) (void *arg, zframe_t *body, uint64_t seq);
    void *arg;
    herald_err (*stored) (void *arg, zframe_t *body, const herald_msg_t *msg,
                          const herald_event_t *const *earlier, herald_error_t *err);
} herald_commit_guard_t;

void
    herald_commit_set_guard (herald_commit_t *self, const herald_commit_guard_t *guard);

//  A PUBLISH from identity, its body: both taken.  Decoded with limits and
//  queued for the next commit, or refused at once (ERROR): a bad body,
//  disk space low (--min-free), max_queued requests already queued.
void
    herald_commit_publish (herald_commit_t *self, zframe_t **identity_p, zframe_t **body_p,
                           const herald_limits_t *limits);

//  A consumer group's op (herald_store_groups.h: its MessagePack map,
//  op[0..len), copied) for the next commit, queued beside the PUBLISH
//  requests and applied in the same proposal, in arrival order.  done is
//  called once, on the loop's thread, from herald_commit_finish (or
//  destroy / raft_gone / refuse_queue): rc HERALD_OK with the op's result
//  map (result[0..result_len), valid during the call) once it is applied
//  and durable (a cluster: committed and applied here); otherwise rc says
//  why nothing is known to be applied (HERALD_ERR_NOT_LEADER: this node
//  does not lead, or lost leadership with the op in flight: its outcome
//  is unknown; HERALD_ERR_OVERLOADED: the queue is full or the broker is
//  stopping; the store's error) and result is NULL.  Ops are not refused
//  for disk space (they are tiny, and a member must be able to commit).
typedef void (herald_commit_op_fn) (void *arg, herald_err rc, const uint8_t *result,
                                    size_t result_len, const herald_error_t *err);

void
    herald_commit_op (herald_commit_t *self, const uint8_t *op, size_t len,
                      herald_commit_op_fn *done, void *arg);

//  True while the queue takes more requests before the next commit (a
//  drain of the api socket stops when it is false).
bool
    herald_commit_has_room (herald_commit_t *self);

//  Unless a commit is in flight (a cluster leader: unless its pipeline
//  is full), propose every queued request as one.
//  Refused instead (ERROR overloaded) when it could take the disk below
//  --min-free.  Returns the PUBLISH bytes proposed (0: none).
size_t
    herald_commit_start (herald_commit_t *self);

//  True while a commit (a cluster: any proposal) is in flight.
bool
    herald_commit_busy (herald_commit_t *self);

//  Readable when the commit in flight is applied (a cluster node: when
//  Raft has records; NULL until a Raft node is attached).
zsock_t *
    herald_commit_sock (herald_commit_t *self);

//  The commit in flight is applied (waits for it if not yet): ACK or
//  ERROR each of its requests in arrival order, then fan its events out.
//  A cluster node takes every record Raft has ready instead (never
//  waits): its own proposals' requests are answered (ACK, conflict, or
//  not_leader when leadership was lost), in proposal order, and every
//  record's events are fanned out, in order.
//  Returns 0, or -1 when the store failed: then its requests got ERROR
//  internal, the failure is logged and the broker must stop
//  (herald_commit_stop_reason says why, in a few words).
int
    herald_commit_finish (herald_commit_t *self);

//  Answer every queued request (not the one in flight) ERROR code with
//  message (NULL: the disk guard's refusal) and retry_ms; nothing of them
//  was written.  Returns how many.
size_t
    herald_commit_refuse_queue (herald_commit_t *self, herald_err code, const char *message,
                                uint64_t retry_ms);

//  Requests queued or in flight.
size_t
    herald_commit_queued (herald_commit_t *self);

//  True when nothing is queued or in flight.
bool
    herald_commit_idle (herald_commit_t *self);

const herald_commit_counts_t *
    herald_commit_counts (herald_commit_t *self);

//  The histograms the group commit keeps, for STATUS (herald_histogram):
//  commit_us (a commit's time from proposed to applied: the WriteBatch and
//  its WAL sync standalone, replication and apply in a cluster), ack_us
//  (a PUBLISH from read off the socket to its ACK sent), commit_events.
#define HERALD_COMMIT_HISTOGRAMS 3
const herald_histogram_t *
    herald_commit_histograms (herald_commit_t *self);

//  Fan out through fanout (borrowed: the main PUB and the scope sockets)
//  rather than the pub given to new.
void
    herald_commit_set_fanout (herald_commit_t *self, herald_fanout_t *fanout);

//  Static text: why the store failed, after herald_commit_finish's -1.
const char *
    herald_commit_stop_reason (herald_commit_t *self);

#endif
