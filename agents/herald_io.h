/*  =========================================================================
    herald_io - the I/O actor's own state (internal to agents/)

    herald_io.c runs the loop (sockets, the live-stream tracker,
    heartbeats, the outbox sender); herald_io_sub.c is the state machine
    of one subscription inside it.  Only the I/O actor's thread touches
    anything declared here.
    =========================================================================
*/

#ifndef HERALD_IO_H_INCLUDED
#define HERALD_IO_H_INCLUDED

#include "herald_agent_priv.h"
#include "herald_msg.h"
#include "herald_live_scope.h"

#define HERALD_IO_FLIGHTS_MAX   16          //  PUBLISH batches in flight
#define HERALD_IO_PENDING_MAX   64          //  batches waiting for the delivery pipe
#define HERALD_IO_CREDIT        8192        //  replay credit window
#define HERALD_IO_PEERS_MAX     16          //  nodes whose heads are remembered

//  A subscription's state (the table is in herald_io_sub.c).
typedef enum {
    HERALD_IO_REPLAYING = 1,                //  a replay runs or is due; live is held
    HERALD_IO_WAITING,                      //  for the live position, the backlog to
                                            //  drain, or both; live is held
    HERALD_IO_LIVE,                         //  forwarding the live stream
    HERALD_IO_STOPPED
} herald_io_state_t;

typedef struct {
    uint64_t seq;
    zframe_t *frame;                        //  owned
} herald_io_held_t;

typedef struct {
    herald_agent_sub_t *sub;                //  borrowed from the agent
    herald_io_state_t state;
    uint64_t forwarded;                     //  highest seq handed to the delivery thread
    uint64_t examined;                      //  every matching event <= it was forwarded
    uint64_t marked;                        //  the last marker sent
    //  Catch-up
    uint64_t rid;                           //  the running replay (0: none)
    uint64_t credit_left;
    int64_t activity;                       //  last reply for it, or its request
    bool went_live;                         //  it was live once: later replays are repairs
    bool repairing;                         //  a gap was counted, not yet live again
    int64_t ended_at;                       //  END of the catch-up, for live_wait_ms
    int64_t retry_at;                       //  after a refusal (0: no wait)
    int backoff_ms;
    bool failing;                           //  replays end with ERROR internal; on_error told
    //  Live events held during catch-up: every live event from buffer_from
    //  on was seen (0: coverage unknown); the matching ones are held
    herald_io_held_t *held;
    size_t held_count;
    size_t held_size;
    uint64_t buffer_from;
    uint64_t lineage;                       //  the broker lineage it follows
    herald_batch_t *batch;                  //  being filled, or NULL
    uint64_t batch_seqs [HERALD_BATCH_MAX]; //  the seq of each of its frames
} herald_io_sub_t;

//  A known node: an api endpoint the caller gave or a WELCOME listed.
typedef struct {
    char api [HERALD_AGENT_ENDPOINT_MAX];
    char fanout [HERALD_AGENT_ENDPOINT_MAX];    //  given, or from its WELCOME; "": unknown
    bool fanout_given;
    bool seed;                              //  given by the caller: kept on a refresh
} herald_io_node_t;

//  What the live stream said of a node, by name ($hb): a head lower than
//  another node's is lag; lower than its own, in a new epoch, a loss.
typedef struct {
    char name [128];
    uint64_t epoch;
    uint64_t head;
} herald_io_peer_t;

typedef struct {
    uint64_t rid;
    size_t count;
    herald_outbox_item_t **items;           //  owned array; items borrowed from the outbox
    int64_t sent_at;
} herald_io_flight_t;

//  One socket's CURVE state (herald_io_auth.c).
typedef struct {
    bool refused;                           //  the broker refused our key; retry due
    int status;                             //  its ZAP status code (400, 500)
    int backoff_ms;                         //  the next retry's wait (1 s doubling to 30 s)
    int64_t retry_at;                       //  when to reconnect (0: not due)
    int no_detail;                          //  handshakes failed without detail in a row
    bool logged_refused;                    //  said once per change of state
} herald_io_auth_t;

typedef struct {
    herald_agent_t *agent;
    zsock_t *pipe;
    zsock_t *dealer;
    zsock_t *sub;
    zsock_t *deliver;                       //  PAIR to the delivery thread
    zsock_t *mon_dealer;
    zsock_t *mon_sub;
    bool fanout_connected;
    bool dealer_up;
    uint64_t next_rid;
    //  The live stream: the next seq expected on it (0: unknown)
    uint64_t live_next;
    //  A scoped fanout (WELCOME's `scope` not nil: security on, a key
    //  that reads one scope): gaps by prev and last (herald_live_scope.h)
    bool scoped;
    herald_live_scope_t live_scope;
    int64_t last_hb;
    bool have_epoch;
    uint64_t epoch;
    //  HELLOs sent since the lineage must be read again: a WELCOME to any
    //  of them (rid >= hello_first) counts; to an older one, not
    uint64_t hello_first;
    int64_t hello_at;
    //  HELLO is due: the fanout is not known, or the broker's lineage must
    //  be read (on every connect, and when a $hb or END names another one)
    bool hello_due;
    //  A WELCOME (or a HELLO refused) since the DEALER connected: replays
    //  wait for it, so that a subscription never takes events of a broker
    //  whose losses it has not checked.  Only a WELCOME sets it: a broker
    //  that does not answer is not assumed to have none
    bool welcomed;
    int64_t welcome_wait;                   //  since when a WELCOME is awaited
    int64_t welcomed_at;
    //  The nodes (herald_io_node.c): the known ones, the current one and
    //  its name, a move decided and when it happens, its backoff
    herald_io_node_t nodes [HERALD_AGENT_NODES_MAX];
    size_t node_count;
    size_t node;
    char node_name [128];
    uint64_t generation;                    //  sockets opened: names their monitors
    int64_t node_since;
    bool moving;
    size_t move_to;
    int64_t move_at;
    bool move_redirect;
    int move_backoff_ms;                    //  the next rotation's wait
    int redirect_backoff_ms;                //  the next redirect's (0: at once)
    herald_io_peer_t peers [HERALD_IO_PEERS_MAX];
    size_t peer_count;
    //  The broker's lineage and accepted losses, from the last WELCOME
    bool have_lineage;
    uint64_t lineage;
    uint64_t lineage_head;                  //  the WELCOME's head
    char lineage_node [128];                //  the node that said it
    herald_loss_t *losses;                  //  owned copy
    size_t loss_count;
    herald_io_sub_t *subs [HERALD_AGENT_SUBS_MAX];
    size_t sub_count;
    herald_io_flight_t flights [HERALD_IO_FLIGHTS_MAX];
    size_t flight_count;
    int64_t publish_retry_at;
    int publish_backoff_ms;
    zlist_t *pending;                       //  herald_batch_t *, waiting for the pipe
    msgpack_sbuffer buffer;
    msgpack_zone zone;                      //  for decoding replies
    bool terminated;
    //  Security (herald_io_auth.c), with agent->curve only
    herald_io_auth_t auth_dealer;
    herald_io_auth_t auth_sub;
    bool fanout_none;                       //  WELCOME's fanout was nil: no SUB
} herald_io_t;

//  Send [command, buffer] on the DEALER without blocking; clears buffer.
//  Returns 0, or -1 (no connection: nothing was sent).
int
    herald_io_send (herald_io_t *self, const char *command);

//  Hand a batch to the delivery thread (queued when the pipe is full).
//  Takes ownership.
void
    herald_io_deliver (herald_io_t *self, herald_batch_t *batch);

//  Every PUBLISH in flight back to the outbox, to be sent again in order
//  with the same ids (a reconnect, another node).
void
    herald_io_flights_requeue (herald_io_t *self);

//  The broker's lineage must be read again before replays and live events
//  go on (a reconnect, another lineage, another node).
void
    herald_io_unwelcome (herald_io_t *self);

//  ---------------------------------------------------------------------
//  The nodes (herald_io_node.c)

//  The known nodes from the agent's endpoints, and sockets to the first.
//  -1 with why when a socket cannot be made.
int
    herald_io_node_start (herald_io_t *io, char *why, size_t size);

//  Close the current node's sockets.
void
    herald_io_node_stop (herald_io_t *io);

//  Move to the next known node, after the backoff (50 ms doubling to 1 s
//  while no publish succeeds).  False when there is no other node.
bool
    herald_io_node_rotate (herald_io_t *io, const char *why);

//  ERROR not_leader named the leader (api endpoint, len bytes): move there
//  at once (the backoff only when moves keep failing).  False when it is
//  the current node.
bool
    herald_io_node_redirect (herald_io_t *io, const char *leader, size_t len);

//  Timers: a move due, a node that does not welcome, a silent live stream.
void
    herald_io_node_tick (herald_io_t *io, int64_t now);

//  The earliest time the nodes need a tick (INT64_MAX: none).
int64_t
    herald_io_node_due (herald_io_t *io);

//  A WELCOME from the current node: its name, fanout and the cluster's
//  members.  False when it must not be taken: its lineage is lower than
//  the one another node said (it lags), and the agent moves on.
bool
    herald_io_node_welcome (herald_io_t *io, const herald_msg_t *reply);

//  A $hb from node (name) with epoch and head: false, logged, when that
//  node's head went down in a new epoch (it lost events); another node's
//  lower head is lag.
bool
    herald_io_node_heartbeat (herald_io_t *io, herald_str_t node, uint64_t epoch,
                              uint64_t head);

//  A PUBLISH was acknowledged: moves are going well.
void
    herald_io_node_acked (herald_io_t *io);

//  The current node's fanout, or NULL while unknown.
const char *
    herald_io_node_fanout (herald_io_t *io);

//  Connect the SUB to the current node's fanout when known.  -1 when libzmq
//  refused.
int
    herald_io_node_connect_fanout (herald_io_t *io);

//  A new subscription state; starts catching up.  NULL when out of memory.
herald_io_sub_t *
    herald_io_sub_new (herald_io_t *io, herald_agent_sub_t *sub);

//  Cancel its replay, free what it holds.  NULL-safe.
void
    herald_io_sub_destroy (herald_io_t *io, herald_io_sub_t **self_p);

//  A live event (frame owned, or NULL when it does not match the
//  subscription) with seq, arriving contiguously on the live stream.
void
    herald_io_sub_live (herald_io_t *io, herald_io_sub_t *self, uint64_t seq, zframe_t *frame);

//  The live stream is contiguous again from seq `from` (after a gap or a
//  reconnect): anything before it may have been lost.
void
    herald_io_sub_coverage (herald_io_t *io, herald_io_sub_t *self, uint64_t from);

//  A heartbeat with head, on a contiguous live stream.
void
    herald_io_sub_heartbeat (herald_io_t *io, herald_io_sub_t *self, uint64_t head);

//  EVENTS for the subscription's replay: envelopes are msg frames 2..
//  (msg borrowed; frames taken from it).
void
    herald_io_sub_events (herald_io_t *io, herald_io_sub_t *self, zmsg_t *msg);

//  END or ERROR for its replay.
void
    herald_io_sub_end (herald_io_t *io, herald_io_sub_t *self, const herald_msg_t *reply);

//  Timers: start or restart a replay, give credit.  now in ms.
void
    herald_io_sub_tick (herald_io_t *io, herald_io_sub_t *self, int64_t now);

//  The api connection was lost: the replay is gone.
void
    herald_io_sub_reset_replay (herald_io_t *io, herald_io_sub_t *self);

//  The broker's lineage (io->lineage, from a WELCOME) is not the
//  subscription's: tell the delivery thread (which rewinds the checkpoint
//  when the broker lost events it had passed) and, when what was passed
//  is no longer certain, catch up again from there.
void
    herald_io_sub_lineage (herald_io_t *io, herald_io_sub_t *self);

//  The broker's lineage must be read again (the api connection dropped, or
//  a $hb or END named another lineage): a live subscription holds live
//  events (WAITING) until a WELCOME.
void
    herald_io_sub_unwelcome (herald_io_t *io, herald_io_sub_t *self);

//  The agent moved to another node: the replay running is gone with the
//  old one and the live position is unknown (a new SUB): live events are
//  held until the new node's WELCOME and the first message on its stream,
//  then a replay from examined + 1 fills what the move missed.
void
    herald_io_sub_moved (herald_io_t *io, herald_io_sub_t *self);

//  Send the batch being filled, if any.
void
    herald_io_sub_flush (herald_io_t *io, herald_io_sub_t *self);

//  The earliest time the subscription needs a tick (INT64_MAX: none).
int64_t
    herald_io_sub_due (herald_io_t *io, herald_io_sub_t *self);

//  ---------------------------------------------------------------------
//  herald_io_auth.c: CURVE on the DEALER and SUB (agent->curve set)

//  A monitor event of the DEALER (is_dealer) or the SUB, with its value
//  (the ZAP status code of HANDSHAKE_FAILED_AUTH).
void
    herald_io_auth_event (herald_io_t *self, bool is_dealer, int event, uint32_t value);

//  Reconnect a socket whose retry is due.
void
    herald_io_auth_tick (herald_io_t *self, int64_t now);

//  When the next retry is due (INT64_MAX: none).
int64_t
    herald_io_auth_due (herald_io_t *self);

#endif
