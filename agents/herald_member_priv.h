/*  =========================================================================
    herald_member_priv - the member's state, shared by its two files

    herald_member.c: the API, the seam with the delivery thread, the
    nodes and the thread's loop.
    herald_member_group.c: heartbeats, commits, batches.
    herald_member_fetch.c: the REPLAY that reads the member's partitions,
    the buffer of kept events, and the doorbell.
    Everything below `thread only` is touched by the member thread alone.
    =========================================================================
*/

#ifndef HERALD_MEMBER_PRIV_H_INCLUDED
#define HERALD_MEMBER_PRIV_H_INCLUDED

#include "herald_member.h"
#include "herald_member_wire.h"
#include "herald_msg.h"

#define MEMBER_WINDOW       2000        //  events buffered + credit outstanding
#define MEMBER_PARTITIONS   1024        //  the most a group has
#define MEMBER_HB_RING      16          //  heartbeats remembered by rid (send times)

typedef struct {
    zframe_t *frame;                    //  one envelope
    uint64_t seq;
    uint32_t partition;
} member_event_t;

typedef struct {
    bool held;
    bool revoked;                       //  held, but let go as soon as the batch is done
    uint64_t epoch;
    uint64_t committed;                 //  the broker's, as granted or acknowledged
    uint64_t committed_sent;            //  the last committed sent for it
    uint64_t redeliver_to;              //  the delivered it was granted with
    uint64_t done;                      //  handled by this member
    uint64_t taken;                     //  the highest seq kept in the buffer
    uint64_t since;                     //  the batch serial when granted
    uint64_t declared;                  //  its last seq in the batch being built (0: none)
} member_part_t;

typedef enum {
    BATCH_NONE = 0,
    BATCH_DECLARING,                    //  its commit is in flight
    BATCH_HANDED                        //  the delivery thread has it
} member_batch_state_t;

typedef enum {
    COMMIT_IDLE = 1,                    //  delivered = committed, to keep lag fresh
    COMMIT_DECLARE,                     //  a batch's
    COMMIT_RELEASE                      //  before letting revoked partitions go
} member_commit_kind_t;

struct _herald_member_t {
    herald_agent_t *agent;
    herald_agent_sub_t *sub;
    char *group;
    char member [192];
    char **prefixes;                    //  the sub's
    size_t prefix_count;
    uint32_t opt_partitions;            //  0: the broker's default
    uint64_t opt_session_ms;
    uint64_t from_seq;
    size_t batch_max;
    pthread_t thread;
    bool started;
    int wake_fd;                        //  eventfd: done, destroy
    atomic_bool stop;
    atomic_bool hold;                   //  a revoke or fence pending: admit says no
    atomic_int_fast64_t lease_until;    //  monotonic ms; 0: none
    atomic_bool done_posted;
    atomic_size_t handled;
    pthread_mutex_t lock;               //  status
    herald_group_status_t status;

    //  Thread only
    char nodes [HERALD_AGENT_NODES_MAX][HERALD_AGENT_ENDPOINT_MAX];
    char fanouts [HERALD_AGENT_NODES_MAX][HERALD_AGENT_ENDPOINT_MAX];
    size_t node_count;
    size_t node;
    zsock_t *dealer;
    zsock_t *sub_sock;
    zsock_t *monitor;                   //  the DEALER's: a dropped connection
    uint64_t monitor_serial;            //  names its inproc endpoint
    bool reopen;                        //  the connection dropped: open again
    bool welcomed;
    int64_t hello_at;                   //  when the last HELLO went
    uint64_t hello_rid;
    int64_t move_at;                    //  a move decided: when (0: none)
    size_t move_to;
    int redirect_backoff_ms;            //  the next redirect's delay
    int rotate_backoff_ms;              //  the next rotation's
    uint64_t next_rid;
    msgpack_sbuffer buffer;
    msgpack_zone zone;
    bool failed;
    bool push_refused;                  //  the agent stops: no more batches
    //  The group
    bool joined;
    uint32_t partitions;
    uint64_t session_ms, heartbeat_ms, head;
    member_part_t *parts;               //  MEMBER_PARTITIONS
    //  Heartbeats
    uint64_t hb_rids [MEMBER_HB_RING];
    int64_t hb_sent [MEMBER_HB_RING];
    size_t hb_next_slot;
    uint64_t hb_last_answered;          //  rid
    int64_t hb_due;
    int64_t hb_waiting_since;           //  the oldest unanswered (0: none)
    //  The commit in flight (one at a time)
    uint64_t commit_rid;
    int64_t commit_sent;
    member_commit_kind_t commit_kind;
    herald_member_pos_t *commit_pos;    //  MEMBER_PARTITIONS
    size_t commit_count;
    int64_t idle_commit_at;
    //  The leave (destroy)
    uint64_t leave_rid;
    bool left;
    //  The fetch (herald_member_fetch.c)
    uint64_t fetch_rid;
    uint64_t fetch_from;
    uint64_t read_to;                   //  every event up to it was examined
    uint64_t credit_out;
    bool fetch_ended;                   //  at END: the doorbell starts the next
    bool fetch_more;                    //  END below head: read on at once
    bool fetch_overflow;                //  the broker sent beyond the credit
    bool doorbell;
    uint64_t hb_epoch;                  //  the node's, from its $hb
    bool hb_epoch_known;
    int64_t fetch_retry_at;
    member_event_t *events;             //  MEMBER_WINDOW, events [0..event_count)
    size_t event_count;
    //  The batch
    member_batch_state_t batch_state;
    size_t batch_count;                 //  the first batch_count events
    uint64_t batch_serial;
    uint64_t batch_last;
};

//  herald_member_group.c

//  The status figures from the thread's state.
void
    herald_member_status_update (herald_member_t *self);

//  Heartbeat now, with what is held as `owned`.
void
    herald_member_heartbeat (herald_member_t *self, int64_t now);

//  Commit every held partition (committed = what is done; delivered =
//  for a batch's declare, the partition's last seq in it, else
//  committed); one at a time.
void
    herald_member_commit (herald_member_t *self, member_commit_kind_t kind);

//  Send the commit in flight again (a new node, a silent one).
void
    herald_member_commit_send (herald_member_t *self);

//  Declare a batch of what is buffered (its commit goes out).
void
    herald_member_batch_build (herald_member_t *self);

//  herald_member_done came for the batch in hand.
void
    herald_member_batch_done (herald_member_t *self);

//  The lease holds now.
bool
    herald_member_lease_valid (herald_member_t *self);

//  GROUP replies (decoded).
void
    herald_member_on_heartbeat (herald_member_t *self, herald_member_reply_t *reply);
void
    herald_member_on_commit (herald_member_t *self, herald_member_reply_t *reply);

//  Between batches: done rises to what the fetch examined with nothing
//  kept unhandled below it.
void
    herald_member_floor (herald_member_t *self);

//  A held partition is revoked, not yet let go.
bool
    herald_member_revoking (herald_member_t *self);

//  Something is done that no commit has said.
bool
    herald_member_uncommitted (herald_member_t *self);

//  herald_member_fetch.c

//  Start a REPLAY from the lowest position of what is held (buffered
//  events beyond the batch in hand are dropped), cancelling the one running.
void
    herald_member_fetch_restart (herald_member_t *self);

//  An EVENTS or END or ERROR for the fetch's rid (msg's frames borrowed).
void
    herald_member_fetch_reply (herald_member_t *self, const herald_msg_t *reply, zmsg_t *msg);

//  A message on the SUB.
void
    herald_member_fetch_doorbell (herald_member_t *self, zframe_t *topic, zframe_t *body);

//  Timers and credit: start the next REPLAY when rung and there is room.
void
    herald_member_fetch_tick (herald_member_t *self, int64_t now);

//  Drop the buffered events of partition (from `keep` on: the batch in hand stays).
void
    herald_member_fetch_drop (herald_member_t *self, uint32_t partition, size_t keep);

//  Remove the first count events.
void
    herald_member_fetch_consume (herald_member_t *self, size_t count);

//  Send a request (command and body in self->buffer); 0 or -1.
int
    herald_member_send (herald_member_t *self, const char *command);

//  Fail the subscription with a clear error; the thread then only waits
//  to be destroyed.
void
    herald_member_fail (herald_member_t *self, int code, const char *format, ...)
    __attribute__ ((format (printf, 3, 4)));

#endif
