/*  =========================================================================
    herald_agent_priv - what the agent's three threads share

    herald_agent.c is the API (any thread), herald_io.c the I/O actor
    (sockets, catch-up, gap repair, the outbox sender), herald_io_sub.c
    the I/O actor's per-subscription state machine, herald_agent_deliver.c
    the delivery thread (handlers, checkpoints, completions).

    Ownership: the agent owns every herald_agent_sub_t until it is
    destroyed (a stopped one too: batches in the delivery pipe may still
    name it).  A herald_batch_t travels from the I/O actor to the delivery
    thread as a pointer over an inproc PAIR; whoever holds it frees it.

    Errors (the agent's convention, in every file of agents/): a failure
    is a herald_err return, with its message recorded for the caller's
    thread by herald_agent_set_error (or, below the API, written into a
    message buffer the caller passes); it is never a normal answer.  An
    actor that could not open its sockets does not report a good start;
    a full queue refuses (HERALD_ERR_OVERLOADED) or blocks with a bound,
    never drops; an encoder checks every pack call; what the caller
    cannot be told (a background thread) is logged, rate-limited, and
    counted.  Every async publish gets exactly one completion.
    =========================================================================
*/

#ifndef HERALD_AGENT_PRIV_H_INCLUDED
#define HERALD_AGENT_PRIV_H_INCLUDED

#include <czmq.h>
#include <pthread.h>
#include <stdatomic.h>
#include "herald.h"
#include "herald_checkpoint.h"
#include "herald_curve.h"
#include "herald_event.h"
#include "herald_outbox.h"

#define HERALD_AGENT_SUBS_MAX   64          //  subscriptions per agent, stopped included
#define HERALD_BATCH_MAX        256         //  envelopes per batch to the delivery thread
#define HERALD_AGENT_NODES_MAX  64          //  api endpoints known (given or learned)
#define HERALD_AGENT_ENDPOINT_MAX   256     //  bytes of one endpoint, NUL included
//  Commands queued for the I/O actor: one SUBSCRIBE and at most one
//  UNSUBSCRIBE per subscription (herald_agent_command)
#define HERALD_AGENT_COMMANDS_MAX   (HERALD_AGENT_SUBS_MAX * 2)
#define HERALD_AGENT_POOL_MAX       4       //  warm read/replay DEALERs (CURVE)
//  Group batches waiting for the delivery thread (herald_agent_group_push):
//  a member hands over one batch and waits for it, so one per group
//  subscription is the most there can be
#define HERALD_AGENT_GROUP_QUEUE    HERALD_AGENT_SUBS_MAX

//  One subscription.  Written once by subscribe, then: state and the
//  counters by the delivery thread (atomics), error/message under the
//  agent's lock, `io` by the I/O actor only, checkpoint by the delivery
//  thread only (and closed by unsubscribe once the thread is out of it).
//  A group subscription (`group`) has no checkpoint and no `io`: the I/O
//  actor never hears of it; its member thread (herald_member.h) feeds the
//  delivery thread through herald_agent_group_push.  `member` is taken
//  (set NULL) under the agent's member_lock by whoever destroys it, once
//  the delivery thread is out of the subscription and its queued batches
//  were handed back (herald_agent_group_release).
typedef struct {
    char *name;
    char **prefixes;                        //  NULL-terminated copies
    size_t prefix_count;                    //  0: every topic
    herald_handler_fn *handler;
    herald_batch_handler_fn *batch_handler; //  set: called instead of handler (issue 16)
    void *arg;
    herald_checkpoint_t *checkpoint;        //  NULL for a group subscription
    struct _herald_member_t *member;        //  a group subscription's (herald_member.h)
    bool group;                             //  a group subscription
    //  Its caller keeps its position (herald_subscribe_options_t.
    //  caller_position): the checkpoint is in memory only, start applies
    //  on every subscribe, a broker loss past it fails it (DATA_LOST)
    bool caller_position;
    herald_group_status_t group_last;       //  its figures when the member was destroyed
    atomic_bool tell_error;                 //  its member failed it: on_error not yet called
    uint64_t start_done;                    //  the checkpoint's done at subscribe
    uint64_t start_lineage;                 //  and its lineage
    atomic_int state;                       //  herald_sub_state_t
    atomic_bool stop;                       //  no more handler calls
    atomic_bool busy;                       //  the delivery thread is inside it
    atomic_uint_fast64_t done_seq;
    atomic_uint_fast64_t delivered;
    atomic_uint_fast64_t duplicates;
    atomic_uint_fast64_t retries;
    bool unsubscribe_queued;                //  under the agent's lock
    atomic_uint_fast64_t gaps;              //  repairs: from live back to live by replay
    atomic_uint_fast64_t repair_replays;    //  REPLAY requests after it was first live
    atomic_uint_fast64_t live_wait_ms;      //  the last catch-up's END to live
    atomic_uint_fast64_t data_lost;         //  rewinds: the broker lost events it had
    atomic_uint_fast64_t lineage;           //  the checkpoint's broker lineage
    int error;                              //  under the agent's lock
    char message [HERALD_ERROR_MESSAGE_MAX];
    void *io;                               //  the I/O actor's s_sub_t
    //  Declared schemas (herald_agent_subscribe_with; herald_schema.h), or
    //  NULL: events reach the handler as stored.  Written once before the
    //  sub is listed; freed with it
    struct _herald_schema_sub_t *schema;
} herald_agent_sub_t;

//  What the I/O actor asks the delivery thread to do.
typedef enum {
    HERALD_BATCH_EVENTS = 1,                //  envelopes for one subscription
    HERALD_BATCH_COMPLETIONS,               //  async publish completions
    HERALD_BATCH_FAILED,                    //  the I/O actor failed `sub`: call on_error
    HERALD_BATCH_ERROR,                     //  an error that did not stop `sub`: on_error
    HERALD_BATCH_LINEAGE,                   //  the broker's lineage for `sub` changed
    HERALD_BATCH_STOP                       //  exit the thread
} herald_batch_kind_t;

typedef struct {
    herald_batch_kind_t kind;
    herald_agent_sub_t *sub;                //  EVENTS: borrowed
    uint64_t marker;                        //  EVENTS: then advance done to it (0: no)
    size_t count;
    zframe_t *frames [HERALD_BATCH_MAX];    //  EVENTS: owned envelopes, seq order
    bool redelivered [HERALD_BATCH_MAX];    //  EVENTS of a group subscription: flags
    herald_completion_t *completions;       //  COMPLETIONS: owned array
    int code;                               //  ERROR: for on_error
    char *message;                          //  ERROR: owned
    //  LINEAGE: adopt `lineage`; when the checkpoint is past `rewind_to`,
    //  report HERALD_ERR_DATA_LOST and rewind it there.  `lower`: the
    //  broker's lineage went down (a store restored from a backup) and
    //  rewind_to is its head.
    uint64_t lineage;
    uint64_t rewind_to;
    bool lower;
} herald_batch_t;

//  Dispatch mode: one call into user code, posted by the delivery thread
//  (it lives on that thread's stack) and run by herald_agent_dispatch.
//
//      POSTED --dispatch takes it--> TAKEN --user code returns--> DONE
//                                      |  (HERALD_DEFER after defer)
//                                      v
//                                   DEFERRED --herald_agent_complete--> DONE
//
//  The delivery thread abandons a POSTED or DEFERRED call when its
//  subscription stops or the agent is destroyed; never a TAKEN one.
typedef enum {
    HERALD_CALL_POSTED = 1,
    HERALD_CALL_TAKEN,
    HERALD_CALL_DEFERRED,
    HERALD_CALL_DONE
} herald_call_state_t;

typedef enum {
    HERALD_CALL_HANDLER = 1,
    HERALD_CALL_ON_ERROR
} herald_call_kind_t;

typedef struct {
    herald_call_kind_t kind;
    herald_call_state_t state;              //  under dispatch_lock
    uint64_t ticket;
    bool deferred;                          //  herald_agent_defer was called
    bool more;                              //  HANDLER: more of its batch follows
    int rc;                                 //  HANDLER: what the user code said
    herald_agent_sub_t *sub;                //  HANDLER
    const herald_delivery_t *view;          //  HANDLER
    herald_delivery_batch_t *batch;         //  HANDLER of a batch handler (view NULL)
    const char *name;                       //  ON_ERROR
    int code;
    const char *message;
} herald_call_t;

//  Commands from API calls to the I/O actor, queued under the lock.
typedef enum {
    HERALD_CMD_SUBSCRIBE = 1,
    HERALD_CMD_UNSUBSCRIBE                  //  also sent when a handler failed
} herald_cmd_kind_t;

typedef struct {
    herald_cmd_kind_t kind;
    herald_agent_sub_t *sub;
} herald_cmd_t;

//  A pooled read/replay connection (herald_agent_stream.c).
typedef struct {
    zsock_t *sock;
    char api [HERALD_AGENT_ENDPOINT_MAX];   //  where it is connected
    size_t server_index;                    //  with which broker key
    uint64_t next_rid;                      //  its own rid space
} herald_agent_conn_t;

struct _herald_agent_t {
    char *service;
    herald_agent_options_t options;         //  strings point at the copies below
    char *api;                              //  the option as given (a list)
    char *fanout;                           //  the option as given, or NULL
    //  api and fanout split at commas: endpoint_count api endpoints, and
    //  a fanout for each (fanouts NULL when none was given)
    char **endpoints;
    char **fanouts;
    size_t endpoint_count;
    //  The node the I/O actor talks to now (under the lock): for stats
    //  and for the calls that open a connection of their own (read, replay,
    //  subscribe's start)
    char node_api [HERALD_AGENT_ENDPOINT_MAX];
    char node_name [128];
    atomic_uint_fast64_t failovers, leader_redirects, nodes_known;
    char *state_dir;
    int lock_fd;                            //  flock on state_dir/LOCK
    herald_outbox_t *outbox;
    pthread_mutex_t lock;
    herald_cmd_t commands [HERALD_AGENT_COMMANDS_MAX];
    size_t command_count;
    uint64_t commands_refused;              //  under the lock; never, by construction
    herald_agent_sub_t *subs [HERALD_AGENT_SUBS_MAX];
    size_t sub_count;
    int wake_fd;                            //  eventfd: wakes the I/O actor
    atomic_bool wake_pending;               //  written to wake_fd, not yet read
    zactor_t *io;
    uint64_t serial;                        //  names its inproc endpoints (never reused)
    char deliver_endpoint [64];             //  inproc PAIR, bound by the I/O actor
    pthread_t deliver_thread;
    bool deliver_started;
    atomic_bool stopping;
    atomic_bool io_gone;                    //  the I/O actor has exited
    //  Stats (relaxed atomics)
    atomic_uint_fast64_t gaps_repaired, replays, repair_replays, live_overflows, published,
                         publish_errors, broker_head, broker_epoch, state_recovered;
    atomic_bool broker_reachable;
    atomic_uint_fast64_t replay_errors;     //  catch-up REPLAYs ended with ERROR internal
    atomic_uint_fast64_t data_lost;         //  all subscriptions' rewinds
    atomic_uint_fast64_t broker_lineage;    //  the last lineage heard (WELCOME, $hb, ...)
    atomic_bool lineage_known;              //  broker_lineage was heard at all
    //  Dispatch mode (options.dispatch; herald_agent_deliver.c)
    int dispatch_fd;                        //  eventfd, -1 when not in dispatch mode
    pthread_mutex_t dispatch_lock;
    pthread_cond_t dispatch_cond;
    herald_call_t *call;                    //  the posted call, or NULL
    uint64_t call_serial;
    //  Completion batches the I/O actor queued for dispatch: they do not
    //  wait behind a deferred handler call (a handler may await its own
    //  publish).  Under dispatch_lock; each holds acknowledged results.
    zlist_t *dispatch_completions;
    //  Completion batches the exiting I/O actor could not pipe to the
    //  delivery thread (it was stuck in a handler): destroy runs them once
    //  that thread has exited.  Under the lock.
    zlist_t *kept_completions;
    //  The I/O actor's start: 0 when its sockets are up, else the error
    //  (and io_message why); written before it signals, read after.
    atomic_int io_start_error;
    char io_message [256];
    //  Security: NULL when off.  Read by the I/O actor and the read/replay
    //  calls; the broker key index inside moves with a rotation
    herald_curve_t *curve;
    char *key_file;                         //  the options as given
    char *server_key;
    atomic_uint_fast64_t auth_refused;      //  handshakes the broker refused
    atomic_bool key_refused;                //  the api refuses the key now (the DEALER's
                                            //  last handshake): said by calls that time out
    //  Warm DEALERs for herald_agent_read/replay when CURVE is on (a
    //  handshake per call costs the broker ~0.8 ms of CPU and a ZAP round
    //  trip): taken and given back under pool_lock
    pthread_mutex_t pool_lock;
    herald_agent_conn_t *pool [HERALD_AGENT_POOL_MAX];
    size_t pool_count;
    //  Group subscriptions (herald_agent_deliver.c): the batches their
    //  member threads hand over, a ring under group_lock, with an eventfd
    //  the delivery thread polls beside its PAIR (readable while the ring
    //  is not empty) and a condition a full ring's pusher waits on
    pthread_mutex_t group_lock;
    pthread_cond_t group_cond;
    herald_batch_t *group_queue [HERALD_AGENT_GROUP_QUEUE];
    size_t group_head, group_count;
    int group_fd;
    atomic_bool group_reap;                 //  a group sub stopped: its member to destroy
    pthread_mutex_t member_lock;            //  sub->member taken vs. its figures read
    pthread_mutex_t release_lock;           //  one herald_agent_group_release at a time
    //  Upcasters and downcasters (herald_schema.c; its own lock)
    struct _herald_schema_t *schemas;
};

//  Wake the I/O actor (commands or outbox work waiting).
void
    herald_agent_wake (herald_agent_t *self);

//  Free a batch and what it owns.  NULL-safe.
void
    herald_batch_destroy (herald_batch_t **self_p);

//  The I/O actor (zactor body); args is the agent.
void
    herald_io_actor (zsock_t *pipe, void *args);

//  The delivery thread's body; arg is the agent.  Connects to
//  deliver_endpoint and runs until a STOP batch or `stopping`.
void *
    herald_agent_deliver_thread (void *arg);

//  True when the calling thread is running user code of self: the
//  delivery thread, or a thread inside herald_agent_dispatch.
bool
    herald_agent_in_handler (herald_agent_t *self);

//  Dispatch mode: queue a COMPLETIONS batch (ownership passes) for
//  herald_agent_dispatch and make the fd readable.  From the I/O actor.
void
    herald_agent_queue_completions (herald_agent_t *self, herald_batch_t *batch);

//  The exiting I/O actor hands destroy a COMPLETIONS batch (ownership
//  passes) it could not pipe to the delivery thread.
void
    herald_agent_keep_completions (herald_agent_t *self, herald_batch_t *batch);

//  From herald_agent_destroy, once both threads have exited: run on the
//  calling thread every completion still owed, in order (the kept and,
//  in dispatch mode, the undispatched batches, then HERALD_ERR_TIMEOUT for
//  every event still in the outbox), as user code of self.
void
    herald_agent_run_last_completions (herald_agent_t *self);
//  The broker said its lineage is `lineage` (any thread).
void
    herald_agent_learn_lineage (herald_agent_t *self, uint64_t lineage);

//  True when topic[0..len) matches one of sub's prefixes.
bool
    herald_agent_sub_matches (const herald_agent_sub_t *sub, const char *topic, size_t len);

//  Mark sub failed with code and message (from any thread), and tell the
//  I/O actor to stop it.  Calls on_error when call_back is true (the
//  caller must then be the delivery thread).  False when sub was not
//  running (already failed or stopped): nothing changed.
bool
    herald_agent_sub_fail (herald_agent_t *self, herald_agent_sub_t *sub, int code,
                           const char *message, bool call_back);

//  Queue a command for the I/O actor and wake it.  HERALD_ERR_OVERLOADED
//  (counted, logged, message set) when the queue is full, which its bound
//  makes impossible; a repeated UNSUBSCRIBE of one sub is queued once.
herald_err
    herald_agent_command (herald_agent_t *self, herald_cmd_kind_t kind,
                          herald_agent_sub_t *sub);

//  Record the calling thread's last error (herald_agent_last_error);
//  returns code.
herald_err
    herald_agent_set_error (herald_err code, const char *format, ...)
    __attribute__ ((format (printf, 2, 3)));

//  True when name is 1-128 bytes of [A-Za-z0-9._-], not starting with '.'.
bool
    herald_agent_name_valid (const char *name);

//  Where a new subscription starts: *done_p is the seq before its first
//  event.  NOW and TS ask the broker (herald_agent_stream.c).
herald_err
    herald_agent_resolve_start (herald_agent_t *self, herald_start_t start, uint64_t *done_p);

//  Fill view from a decoded event and its envelope bytes.
void
    herald_agent_view (herald_delivery_t *view, const void *event, const void *envelope,
                       size_t envelope_len);

//  Split the api and fanout options into endpoints (and fanouts) and check
//  each (herald_agent_endpoints.c).  HERALD_ERR_INVALID with the error set
//  when one is bad.
herald_err
    herald_agent_endpoints_init (herald_agent_t *self);

//  Free what herald_agent_endpoints_init made.  Safe on a partial init.
void
    herald_agent_endpoints_fini (herald_agent_t *self);

//  The api endpoint of the node the agent talks to now, into buf.
void
    herald_agent_node_api (herald_agent_t *self, char *buf, size_t size);

//  Close the warm read/replay connections (herald_agent_destroy).
void
    herald_agent_pool_destroy (herald_agent_t *self);

//  The newest subscription called name, or NULL.  Under the lock.
herald_agent_sub_t *
    herald_agent_find_sub (herald_agent_t *self, const char *name);

//  Count and check prefixes (NULL-terminated, or NULL).  The error set.
herald_err
    herald_agent_prefixes_check (const char *const *prefixes, size_t *count_p);

//  A new subscription: name and prefixes copied, not listed.  NULL with
//  the error set when out of memory.
herald_agent_sub_t *
    herald_agent_sub_new (const char *name, const char *const *prefixes, size_t count,
                          herald_handler_fn *handler, void *arg);

//  herald_agent_subscribe and its variants: a local subscription with a
//  handler, or a batch_handler (then handler is never called), whose
//  position the agent keeps in state_dir or, with caller_position, the
//  caller (herald.h, herald_subscribe_options_t).  The error set.
herald_err
    herald_agent_subscribe_local (herald_agent_t *self, const char *name,
                                  const char *const *prefixes, herald_start_t start,
                                  herald_handler_fn *handler,
                                  herald_batch_handler_fn *batch_handler,
                                  bool caller_position, void *arg);

//  Free a subscription (its checkpoint closed).  NULL-safe.
void
    herald_agent_sub_destroy (herald_agent_sub_t **sub_p);

//  A group subscription goes from CATCHING_UP to LIVE once figures say
//  its member joined and has no lag (herald_agent_group.c).
void
    herald_agent_group_state (herald_agent_sub_t *sub, const herald_group_status_t *figures);

//  sub (a group subscription, `stop` set) is ending: hand its queued
//  batches back to the member (herald_member_done 0), wait until the
//  delivery thread is out of it, then destroy its member (commit, leave;
//  bounded by timeout_ms), keeping its last figures.  From user code of
//  the agent (a handler) it only asks the delivery thread to do it after
//  the call.  Whoever takes the member first destroys it; safe to repeat.
void
    herald_agent_group_release (herald_agent_t *self, herald_agent_sub_t *sub);

//  The same, now, from a thread that is not inside sub's handler (the
//  delivery thread between batches, or any thread outside user code).
void
    herald_agent_group_release_now (herald_agent_t *self, herald_agent_sub_t *sub);

//  A group subscription's figures (member's, or the last ones once it is
//  gone).  Any thread.
void
    herald_agent_group_figures (herald_agent_t *self, herald_agent_sub_t *sub,
                                herald_group_status_t *status);

//  Schemas (herald_agent_schema.c): the declarations herald_agent_subscribe_with
//  made for the calling thread's subscribe call in progress, taken (the
//  caller owns them) by herald_agent_sub_new; NULL when none.
struct _herald_schema_sub_t *
    herald_agent_schema_take_pending (void);

//  A monotonic clock in ms.
int64_t
    herald_agent_now_ms (void);

//  A warning through herald_say (herald_set_log's callback, or stderr), at
//  most one a second per limiter: *last is the caller's (each file keeps
//  its own, per thread).
void
    herald_agent_log_limited (int64_t *last, const char *format, ...)
    __attribute__ ((format (printf, 2, 3)));

//  Batch handlers (issue 16).  herald_agent_deliver.c's steps that
//  herald_agent_batch.c shares, on the delivery thread:
bool
    herald_agent_deliver_call (herald_agent_t *agent, herald_call_t *call,
                               herald_agent_sub_t *sub);
void
    herald_agent_deliver_fail (herald_agent_t *agent, herald_agent_sub_t *sub, int code,
                               const char *message);
bool
    herald_agent_deliver_backoff (herald_agent_t *agent, herald_agent_sub_t *sub, int ms);

//  A subscription with schemas (sub->schema), before its handler: view's
//  data converted to the schema it wants (*converted_p: the bytes to free
//  after the call, or NULL), or the policy applied to an event that cannot
//  be converted: PASSED (skipped or parked; with a checkpoint, its intent
//  was written: commit it), FAILED (the subscription failed: STOP, or a
//  park that could not be written).  Without policy, such an event is
//  only UNCONVERTED (nothing done: a batch run ends before it, and it
//  meets the policy as the next run's first).
typedef enum {
    HERALD_AGENT_HANDLE = 0,                //  call the handler with view
    HERALD_AGENT_PASSED,                    //  skipped or parked: done, no handler
    HERALD_AGENT_FAILED,                    //  the subscription failed
    HERALD_AGENT_UNCONVERTED                //  cannot be converted; policy not applied
} herald_agent_verdict_t;
herald_agent_verdict_t
    herald_agent_deliver_schema (herald_agent_t *agent, herald_agent_sub_t *sub,
                                 herald_delivery_t *view, herald_checkpoint_t *checkpoint,
                                 bool policy, void **converted_p);

//  herald_agent_batch.c: the delivery thread's buffers for batch handlers
//  (*self_p made on first use).  deliver: a pipe batch of a local
//  subscription (`busy` set, not stopping); group: a member batch,
//  returns how many were handled (for herald_member_done).
typedef struct _herald_agent_many_t herald_agent_many_t;
void
    herald_agent_many_deliver (herald_agent_many_t **self_p, herald_agent_t *agent,
                               herald_batch_t *batch);
size_t
    herald_agent_many_group (herald_agent_many_t **self_p, herald_agent_t *agent,
                             herald_batch_t *batch);
void
    herald_agent_many_destroy (herald_agent_many_t **self_p);

#endif
