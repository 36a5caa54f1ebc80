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

#define HERALD_IO_FLIGHTS_MAX   16          //  PUBLISH batches in flight
#define HERALD_IO_PENDING_MAX   64          //  batches waiting for the delivery pipe
#define HERALD_IO_CREDIT        8192        //  replay credit window

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

typedef struct {
    uint64_t rid;
    size_t count;
    herald_outbox_item_t **items;           //  owned array; items borrowed from the outbox
    int64_t sent_at;
} herald_io_flight_t;

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
    int64_t last_hb;
    bool have_epoch;
    uint64_t epoch;
    uint64_t hello_rid;
    int64_t hello_at;
    //  HELLO is due: the fanout is not known, or the broker's lineage must
    //  be read (on every connect, and when a $hb or END names another one)
    bool hello_due;
    //  A WELCOME (or a HELLO refused) since the DEALER connected: replays
    //  wait for it, so that a subscription never takes events of a broker
    //  whose losses it has not checked
    bool welcomed;
    //  The broker's lineage and accepted losses, from the last WELCOME
    bool have_lineage;
    uint64_t lineage;
    uint64_t lineage_head;                  //  the WELCOME's head
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
} herald_io_t;

//  Send [command, buffer] on the DEALER without blocking; clears buffer.
//  Returns 0, or -1 (no connection: nothing was sent).
int
    herald_io_send (herald_io_t *self, const char *command);

//  Hand a batch to the delivery thread (queued when the pipe is full).
//  Takes ownership.
void
    herald_io_deliver (herald_io_t *self, herald_batch_t *batch);

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

//  Send the batch being filled, if any.
void
    herald_io_sub_flush (herald_io_t *io, herald_io_sub_t *self);

//  The earliest time the subscription needs a tick (INT64_MAX: none).
int64_t
    herald_io_sub_due (herald_io_t *io, herald_io_sub_t *self);

#endif
