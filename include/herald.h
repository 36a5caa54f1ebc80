/*  =========================================================================
    herald.h - the public API of libherald

    Herald is an event-sourcing message bus: a broker (heraldd) keeps an
    ordered log of MessagePack events in RocksDB and fans it out over ZeroMQ;
    this library is what a service embeds to talk to it.

    This header holds what every part of Herald shares (the error enum and
    version) and the agent API: subscribe, publish, read, replay, snapshots
    and stats.  docs/agent.md is the guide.
    =========================================================================
*/

#ifndef HERALD_H_INCLUDED
#define HERALD_H_INCLUDED

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define HERALD_VERSION_MAJOR 0
#define HERALD_VERSION_MINOR 1
#define HERALD_VERSION_PATCH 0

//  Every runtime failure in Herald is one of these.  The first block maps
//  one-to-one to the `code` strings of HWP/1 ERROR replies (docs/protocol.md);
//  the second block is local to a process and never sent on the wire.
//  Bindings map each to one exception class.
typedef enum {
    HERALD_OK = 0,
    //  Protocol error codes, in the order docs/protocol.md lists them
    HERALD_ERR_BAD_REQUEST = 1,         //  bad_request
    HERALD_ERR_TOO_LARGE = 2,           //  too_large
    HERALD_ERR_CONFLICT = 3,            //  conflict
    HERALD_ERR_NOT_LEADER = 4,          //  not_leader
    HERALD_ERR_UNAUTHORIZED = 5,        //  unauthorized
    HERALD_ERR_OVERLOADED = 6,          //  overloaded
    HERALD_ERR_UNKNOWN_COMMAND = 7,     //  unknown_command
    HERALD_ERR_UNSUPPORTED = 8,         //  unsupported
    HERALD_ERR_INTERNAL = 9,            //  internal
    HERALD_ERR_TRIMMED = 10,            //  trimmed: the events asked for were trimmed
                                        //  from the live log (an addition to HWP/1)
    //  Local conditions
    HERALD_ERR_IO = 20,                 //  the operating system or RocksDB failed
    HERALD_ERR_LOCKED = 21,             //  a data directory is in use by another process
    HERALD_ERR_NOT_A_STORE = 22,        //  a directory holds something that is not a Herald store
    HERALD_ERR_CORRUPT = 23,            //  stored or local data failed a check
    HERALD_ERR_NOT_FOUND = 24,          //  no such event, topic or stream
    HERALD_ERR_NOMEM = 25,              //  an allocation failed
    HERALD_ERR_TIMEOUT = 26,            //  no answer in time
    HERALD_ERR_UNAVAILABLE = 27,        //  the broker cannot be reached
    HERALD_ERR_INVALID = 28,            //  a caller passed arguments the API does not accept
    HERALD_ERR_DATA_LOST = 29,          //  the broker lost events it had stored; an operator
                                        //  accepted the loss (docs/broker.md, "Damaged stores")
    HERALD_ERR_ID_REUSED = 30           //  an event id already stored with a different topic
                                        //  or data: the new event was NOT stored
} herald_err;

//  A short, static English description of err ("bad request", ...).
const char *
    herald_strerror (herald_err err);

//  The HWP/1 `code` string for a protocol error ("bad_request", ...), or
//  NULL for HERALD_OK and for local conditions, which have no wire form.
const char *
    herald_err_code (herald_err err);

//  The herald_err for an HWP/1 `code` string of len bytes.  An unknown code
//  (from a newer broker) maps to HERALD_ERR_INTERNAL.
herald_err
    herald_err_from_code (const char *code, size_t len);

//  The library's version, "MAJOR.MINOR.PATCH".
const char *
    herald_version (void);

//  Where the library's log lines go.  The agent says what a service should
//  know but no call returns: a torn state record it recovered from, a
//  subscription that failed with no on_error, a broker it moves away from,
//  events an operator declared lost.  By default each is one line on stderr,
//  "herald agent: <message>".  herald_set_log (fn, arg) sends them to fn
//  instead, for the whole process (every agent, every thread); herald_set_log
//  (NULL, NULL) restores stderr.  fn is called on the library's threads, one
//  call at a time (never two at once), with the message (no newline; valid
//  for the call only) and the arg given here.  Once herald_set_log returns,
//  the previous fn is not called again.  fn must not call into the library:
//  herald_set_log returns HERALD_ERR_INVALID there, and an agent call from
//  the agent's own threads may deadlock.  It should return quickly: the
//  thread that logs waits for it.  Levels may be added; treat one you do not know
//  as HERALD_LOG_WARNING.  docs/agent.md ("Logging") lists the lines.
typedef enum {
    HERALD_LOG_ERROR = 1,               //  something failed: events lost, a subscription stopped
    HERALD_LOG_WARNING = 2              //  recovered from, retried or moved; worth a look
} herald_log_level_t;

typedef void (herald_log_fn) (herald_log_level_t level, const char *message, void *arg);

herald_err
    herald_set_log (herald_log_fn *fn, void *arg);

//  =========================================================================
//  The agent: what a service embeds
//
//  An agent is one service's connection to one broker.  It owns a state
//  directory (checkpoints, the window of recently delivered ids, the
//  outbox, snapshots) that no other agent may use at the same time.
//
//  THREADS.  Each agent runs two threads of its own:
//    - the I/O thread (a czmq actor) owns the DEALER on api and the SUB on
//      fanout, runs catch-up replays, watches heartbeats and sends the
//      outbox;
//    - the delivery thread runs every handler of every subscription of the
//      agent, and every asynchronous publish completion, one at a time.
//      A handler is therefore never called twice at once, and never at
//      the same time as another handler or completion of the same agent.
//  In dispatch mode (options.dispatch) the delivery thread hands each call
//  into user code to herald_agent_dispatch, on the application's thread.
//  Every herald_agent_* call is thread-safe and may be made from any
//  thread, including from a handler or a completion (publish from a
//  handler does not deadlock), except herald_agent_destroy, which must not
//  be called from a handler or completion.
//
//  Calls return HERALD_OK or an error; herald_agent_last_error () gives a
//  message for the last failure on the calling thread.  Messages are never
//  cut mid-word: one too long for its field keeps its head and its end and
//  loses the middle, marked with "…" (U+2026).
//  =========================================================================

typedef struct _herald_agent_t herald_agent_t;

//  One `meta` entry.  Strings are not NUL-terminated.
typedef struct {
    const char *key;
    size_t key_len;
    const char *value;
    size_t value_len;
} herald_meta_t;

//  Settings of an agent.  Call herald_agent_options_init first; every
//  field left 0 or NULL takes its default.  Strings are copied by
//  herald_agent_new.
typedef struct {
    //  The broker's api endpoint ("tcp://127.0.0.1:5580"), or a cluster's:
    //  a comma-separated list ("tcp://a:5580,tcp://b:5580,tcp://c:5580").
    //  The agent talks to one node at a time (publishes, replays and the
    //  live stream), learns the members from each WELCOME, follows the
    //  leader (ERROR not_leader) and moves to another node when its node
    //  does not answer (docs/agent.md, "A cluster").
    const char *api;
    //  Fanout endpoint(s): NULL, learned from each node's WELCOME; or one
    //  per api endpoint, in the same order, comma-separated
    const char *fanout;
    //  This service's local state (outbox, subscription checkpoints).  NULL:
    //  none; then only group subscriptions and caller_position ones can be
    //  made (another local one is HERALD_ERR_INVALID), and publishes not yet
    //  acknowledged live in memory only (a crash loses them: use
    //  herald_agent_publish, which waits)
    const char *state_dir;
    int timeout_ms;                 //  sync calls (publish, subscribe "now"); 5000
    int heartbeat_ms;               //  the broker's heartbeat interval; 1000
    size_t dedup_window;            //  ids remembered per subscription; 4096
    size_t live_buffer;             //  live events held during catch-up; 65536
    size_t outbox_max_events;       //  unacknowledged publishes; 100000
    size_t outbox_max_bytes;        //  their encoded size; 64 MiB
    bool outbox_fsync;              //  fdatasync the outbox on every publish
    int sync_interval_ms;           //  msync of checkpoints; 1000
    int retry_max_ms;               //  RETRY backoff cap (from 10 ms, doubling); 1000
    int sub_rcvhwm;                 //  SUB receive high-water mark; 100000 (tests use tiny)
    //  Called on the delivery thread when a running subscription stops on
    //  an error: its handler's, an event that does not decode, a replay
    //  the broker refuses.  (Errors found by subscribe itself, such as a
    //  corrupt checkpoint, are its return value.)  Also, without stopping
    //  it, when the broker ends its catch-up replay with ERROR `internal`
    //  (data it cannot read): the checkpoint stays at the last event
    //  delivered, the replay is retried with a backoff (50 ms doubling to
    //  5 s), and on_error is called once per run of such failures (stats
    //  replay_errors counts each).  And, without stopping anything, with
    //  HERALD_ERR_DATA_LOST when the broker lost events the subscription had
    //  passed and its checkpoint is rewound (docs/agent.md, "When the broker
    //  lost events").
    void (*on_error) (const char *subscription, int code, const char *message, void *arg);
    void *on_error_arg;
    //  Dispatch mode (false: handlers run on the delivery thread).  When
    //  true, every handler call, asynchronous publish completion and
    //  on_error call is run by herald_agent_dispatch on the application's
    //  thread instead, woken by herald_agent_fd (an event loop's reader).
    //  See "Dispatching on your own thread" below.
    bool dispatch;
    //  Security (docs/security.md, "Clients").  Both NULL: no CURVE, every
    //  byte on the wire as without security.  Both set: CURVE on every
    //  connection of the agent.  key_file is this service's zcert secret
    //  file (NAME.key_secret; refused when group or others may read it);
    //  server_key the broker's public key, Z85 or "@FILE" (its zcert public
    //  cert), learned out of band; a comma-separated list ("NEW,OLD") while
    //  the broker's key is rotated.  The library reads no environment
    //  variables.  After a refusal (an unknown, revoked or expired key) the
    //  agent reconnects by itself, backing off from 1 s to 30 s (stats
    //  auth_refused counts refusals); a publish outside the key's grants
    //  completes with HERALD_ERR_UNAUTHORIZED.
    const char *key_file;
    const char *server_key;
} herald_agent_options_t;

//  Fill options with the defaults (all 0 / NULL, meaning "default").
void
    herald_agent_options_init (herald_agent_options_t *options);

//  sizeof (herald_agent_options_t) in this library: a binding that lays the
//  struct out itself checks it against its own before calling
//  herald_agent_options_init (which writes the whole struct).
size_t
    herald_agent_options_size (void);

//  A new agent for service_id (1-255 bytes: the client name in HELLO).
//  Opens (or creates) options->state_dir, locks it, loads the outbox and
//  starts the two threads; the broker need not be up.  It keeps czmq
//  from installing SIGINT/SIGTERM handlers (zsys_handler_set (NULL)):
//  signals stay the application's.  Returns NULL on
//  failure (herald_agent_last_error says why: HERALD_ERR_LOCKED when
//  another agent holds the directory, HERALD_ERR_CORRUPT for a corrupt
//  outbox, HERALD_ERR_IO also when the I/O thread could not open its
//  sockets, HERALD_ERR_INVALID).  Caller owns.
herald_agent_t *
    herald_agent_new (const char *service_id, const herald_agent_options_t *options);

//  Stop the threads (a running handler finishes first), sync and close
//  every state file, free the agent and clear *self_p.  Publishes not yet
//  acknowledged stay in the outbox and are sent by the next agent on the
//  same state directory (call herald_agent_flush first to wait for them).
//  Every asynchronous publish has had its one completion when this
//  returns: the broker's answer if it came, else HERALD_ERR_TIMEOUT
//  "queued in the outbox" (see herald_agent_publish_async).  Completions
//  still owed once the threads have stopped run here, on the calling
//  thread.  NULL-safe.  Never call it from a handler or a completion, nor
//  while another thread is inside a call on this agent.
void
    herald_agent_destroy (herald_agent_t **self_p);

//  The error code and a message (static or thread-local: valid until the
//  next herald_agent_* call on this thread) of the calling thread's last
//  failed call.
herald_err
    herald_agent_last_errcode (void);
const char *
    herald_agent_last_error (void);

//  Set the calling thread's last error to code and message (copied; a
//  longer one than the field loses its middle) and return code: for the
//  libraries built on the agent (libherald_projection) that report through
//  herald_agent_last_errcode / herald_agent_last_error as the agent does.
herald_err
    herald_agent_set_last_error (herald_err code, const char *message);

//  ---------------------------------------------------------------------
//  Subscribing

//  Where a new subscription starts.  Ignored when the subscription's
//  checkpoint exists: it then resumes after its last delivered event.
typedef enum {
    HERALD_START_BEGINNING = 0,     //  seq 1
    HERALD_START_NOW,               //  after the broker's head when subscribing
    HERALD_START_SEQ,               //  at seq `value` (inclusive)
    HERALD_START_TS                 //  at the first event with ts >= `value` (ns)
} herald_start_kind_t;

typedef struct {
    herald_start_kind_t kind;
    uint64_t value;
} herald_start_t;

//  An event as given to a handler.  Every pointer borrows memory that is
//  valid only during the call.  Strings are not NUL-terminated.
typedef struct {
    const uint8_t *id;              //  16 bytes
    const char *topic;
    size_t topic_len;
    uint64_t seq;
    uint64_t ver;
    uint64_t ts;                    //  Unix ns, the broker's ingest time
    const char *type;               //  NULL when absent
    size_t type_len;
    uint64_t schema;                //  1 when absent
    const herald_meta_t *meta;      //  NULL when absent
    size_t meta_count;
    const void *data;
    size_t data_len;
    const void *envelope;           //  the stored MessagePack envelope
    size_t envelope_len;
    const char *subscription;       //  its name; NULL for read / replay calls
    //  True for the one event a subscription was delivering when the
    //  process died (its handler may or may not have completed): check
    //  your own effects by `id` before applying it again.
    bool redelivered;
    unsigned attempt;               //  1, then 2, 3 ... after RETRY
} herald_delivery_t;

//  What a handler returns: HERALD_OK (the event is done; the checkpoint
//  advances), HERALD_RETRY (call again with the same event after a
//  backoff), or any other value (stop the subscription; the value is its
//  error code, reported by on_error and herald_agent_sub_status).
#define HERALD_RETRY (-1)
typedef int (herald_handler_fn) (const herald_delivery_t *event, void *arg);

//  Subscribe under a durable name (1-128 bytes of [A-Za-z0-9._-]) to the
//  events whose topic begins with one of prefixes (a NULL-terminated
//  array; NULL or empty: every topic).  handler(event, arg) is called on
//  the delivery thread for each matching event exactly once, in seq order,
//  across restarts of this process and of the broker (see docs/agent.md
//  for the exact contract).  Returns once the checkpoint is loaded or
//  created (START_NOW and START_TS ask the broker where to start: they
//  need it reachable within timeout_ms); catch-up then runs in the
//  background.  Errors: HERALD_ERR_INVALID (bad name, name already
//  subscribed), HERALD_ERR_CORRUPT (the checkpoint file failed a check:
//  nothing is delivered; remove the file to start over), HERALD_ERR_IO,
//  HERALD_ERR_TIMEOUT / HERALD_ERR_UNAVAILABLE (could not resolve start).
herald_err
    herald_agent_subscribe (herald_agent_t *self, const char *name,
                            const char *const *prefixes, herald_start_t start,
                            herald_handler_fn *handler, void *arg);

//  Stop delivering to a subscription (its checkpoint stays; subscribing
//  again resumes).  When it returns, the handler is not running and will
//  not be called again (unless called from that handler itself, which
//  finishes its current event).  HERALD_ERR_NOT_FOUND if not subscribed.
herald_err
    herald_agent_unsubscribe (herald_agent_t *self, const char *name);

typedef enum {
    HERALD_SUB_CATCHING_UP = 1,     //  replaying from the broker
    HERALD_SUB_LIVE,                //  following the live stream
    HERALD_SUB_FAILED,              //  stopped by an error; see error
    HERALD_SUB_STOPPED              //  unsubscribed
} herald_sub_state_t;

typedef struct {
    herald_sub_state_t state;
    uint64_t delivered_seq;         //  checkpoint: last seq done (handled or skipped)
    uint64_t delivered;             //  handler calls that returned OK, since subscribe
    uint64_t duplicates;            //  events dropped as already delivered
    uint64_t retries;               //  handler RETRY returns
    int error;                      //  the code that stopped it, when FAILED
    char message [256];             //  a longer one loses its middle, marked "…"
    //  Repairs: a gap is a way from LIVE back to LIVE that
    //  needed a replay; repair_replays / gaps is the replays per gap
    uint64_t gaps;
    uint64_t repair_replays;        //  REPLAY requests made after it was first live
    uint64_t live_wait_ms;          //  the last catch-up: from its replay's END to LIVE
    //  The broker lost events it had stored (an operator accepted the
    //  loss): times the checkpoint was rewound for it (HERALD_ERR_DATA_LOST
    //  through on_error), and the broker lineage the checkpoint is on
    //  (UINT64_MAX: a new one, until the broker's is heard)
    uint64_t data_lost;
    uint64_t lineage;
} herald_sub_status_t;

//  A subscription's state into status.  HERALD_ERR_NOT_FOUND if unknown.
herald_err
    herald_agent_sub_status (herald_agent_t *self, const char *name,
                             herald_sub_status_t *status);

//  ---------------------------------------------------------------------
//  Consumer groups: positions kept by the broker (docs/groups.md)
//
//  A group subscription keeps its position in the broker, not in
//  state_dir: a service with no state directory (options.state_dir NULL)
//  can use it, and a restarted instance resumes where the group left off.
//  Instances that subscribe to the same group share the work: each
//  partition of the group's topics (a hash of the topic) is handled by one
//  member at a time, in seq order.  The handler contract is the one of
//  herald_agent_subscribe, except that the events of the batch a member was
//  handling when it died are delivered again, to whichever member holds
//  their partition next, each flagged `redelivered`.

typedef struct {
    const char *const *prefixes;    //  the group's topic prefixes (NULL-terminated;
                                    //  NULL or empty: every topic)
    herald_start_t start;           //  where a new group starts (ignored once it exists)
    unsigned partitions;            //  a new group's partitions, 1-1024; 0: 32
    int session_ms;                 //  a new group's session, 300-60000 ms; 0: 3000
    size_t batch_max;               //  events declared, handled and committed at once,
                                    //  1-256; 0: 100
} herald_group_options_t;

//  Fill options with the defaults (all 0 / NULL).
void
    herald_group_options_init (herald_group_options_t *options);

//  sizeof (herald_group_options_t) in this library (for bindings).
size_t
    herald_group_options_size (void);

//  Join `group` (1-128 bytes of [A-Za-z0-9._-], not starting with '.') as a
//  new member and call handler(event, arg) for the events of the partitions
//  this member is given.  The subscription's name (herald_agent_sub_status,
//  herald_agent_unsubscribe, on_error, the delivery's `subscription`) is the
//  group's name.  Returns at once; joining, catching up and going live run
//  in the background.  Errors: HERALD_ERR_INVALID (bad name or options, a
//  subscription of that name exists), HERALD_ERR_TIMEOUT /
//  HERALD_ERR_UNAVAILABLE (START_NOW or START_TS could not be resolved).
//  herald_agent_unsubscribe leaves the group: what was handled is
//  committed and the member's partitions go to the other members at once.
herald_err
    herald_agent_subscribe_group (herald_agent_t *self, const char *group,
                                  const herald_group_options_t *options,
                                  herald_handler_fn *handler, void *arg);

typedef struct {
    char member [192];              //  this member's name in the group
    uint64_t generation;            //  the group's, as last heard
    unsigned partitions;            //  the group's partitions (0 until joined)
    unsigned owned;                 //  partitions this member holds now
    uint64_t committed;             //  the lowest committed seq of those
    uint64_t lag;                   //  broker head - committed (0 when none held)
    uint64_t commits;               //  commits the broker acknowledged
    uint64_t redelivered;           //  events handed to the handler flagged redelivered
    uint64_t rebalances;            //  assignments that changed what this member holds
    uint64_t fenced;                //  partitions taken away by a commit found fenced
    bool joined;                    //  the broker answered a heartbeat, lease valid now
} herald_group_status_t;

//  The member's figures for group into status.  HERALD_ERR_NOT_FOUND when
//  no group subscription of that name exists.
herald_err
    herald_agent_group_status (herald_agent_t *self, const char *group,
                               herald_group_status_t *status);

//  ---------------------------------------------------------------------
//  Publishing

//  An event to publish.  Only topic is required.  Pointers are borrowed
//  for the duration of the call only (the agent copies the event).
typedef struct {
    const char *topic;              //  NUL-terminated, 1-255 bytes, not "$..."
    const void *data;
    size_t data_len;
    const char *type;               //  NULL: none; NUL-terminated
    uint64_t schema;                //  0: absent (which means 1)
    const herald_meta_t *meta;
    size_t meta_count;
    bool has_expect;                //  optimistic concurrency: the topic's
    uint64_t expect;                //  version must be this (0: must not exist)
    const uint8_t *id;              //  16 bytes; NULL: a fresh UUIDv7
} herald_outgoing_t;

//  An event may gain fields: herald_outgoing_init zeroes every one (each
//  new field keeps today's behaviour at 0 or NULL), as `= { .topic = ... }`
//  does; herald_outgoing_size gives the library's sizeof, for a binding
//  that lays the struct out itself (docs/compatibility.md).
void
    herald_outgoing_init (herald_outgoing_t *event);

size_t
    herald_outgoing_size (void);

//  What became of one publish.
typedef struct {
    uint8_t id [16];                //  the event's id (the one given or made)
    herald_err err;                 //  HERALD_OK, or why it failed
    uint64_t seq;                   //  when OK: where it is stored
    uint64_t ver;
    bool dup;                       //  it had been stored before (same id; also when
                                    //  an earlier send of this very call was stored
                                    //  and its ACK lost to a reconnect)
    uint64_t expected;              //  HERALD_ERR_CONFLICT: what was expected,
    uint64_t actual;                //  and the topic's actual version
    char message [192];             //  the broker's message, when err; a longer
                                    //  one loses its middle, marked "…"
} herald_publish_result_t;

//  Publish one event and wait up to timeout_ms (<= 0: the agent's
//  timeout) for the broker to store it; result (may be NULL) gets the id
//  and, when acknowledged, seq/ver/dup or the broker's refusal.  The event
//  is written to the durable outbox first, so:
//    - HERALD_ERR_TIMEOUT (broker down or slow) means it is QUEUED, not
//      lost: the agent keeps sending it, with the same id, until the
//      broker stores it, also after a restart of this process.  Do not
//      publish it again with a new id; waiting with herald_agent_flush or
//      publishing again with the same id (result->id) is safe.
//    - HERALD_ERR_CONFLICT: `expect` failed; result->actual is the topic's
//      version.  HERALD_ERR_INVALID: refused locally, nothing queued.
//    - HERALD_ERR_OVERLOADED: the outbox stayed full for timeout_ms;
//      nothing queued.
herald_err
    herald_agent_publish (herald_agent_t *self, const herald_outgoing_t *event,
                          herald_publish_result_t *result, int timeout_ms);

//  Called exactly once per asynchronous publish, with the broker's answer,
//  before herald_agent_destroy returns; result is valid during the call
//  only.  It runs on the delivery thread (in dispatch mode: in
//  herald_agent_dispatch), or, for what is still owed when destroy has
//  stopped the threads, on destroy's thread.  When destroy came before
//  the answer, result->err is HERALD_ERR_TIMEOUT with the message "not
//  acknowledged before the agent was destroyed: queued in the outbox,
//  will be sent by the next agent on this state directory": the event is
//  in the outbox file and is sent, with the same id, by the next agent on
//  the directory (it may be stored already: that send then gets dup).
//  An agent without a state_dir keeps nothing: its message says "this
//  agent has no state directory, so the event is not kept (it may have
//  been stored: publish it again with the same id to know)".
typedef void (herald_publish_fn) (const herald_publish_result_t *result, void *arg);

//  Queue one event in the outbox and return at once (the id into id_out
//  when not NULL); done(result, arg), if not NULL, is called once: when the
//  broker stores or refuses it, or at destroy (herald_publish_fn).  Many
//  may be in flight; they are sent in
//  call order, batched, and pipelined.  When the outbox is full this
//  blocks up to the agent's timeout_ms, then returns HERALD_ERR_OVERLOADED
//  (nothing queued).  HERALD_ERR_INVALID when the event is refused
//  locally.  A completion of an event queued by an earlier process (after
//  a restart) is not called: no callback survives a process.
herald_err
    herald_agent_publish_async (herald_agent_t *self, const herald_outgoing_t *event,
                                herald_publish_fn *done, void *arg, uint8_t *id_out);

//  Wait up to timeout_ms (<= 0: the agent's timeout) until every event
//  published before the call, by any thread, has been answered by the
//  broker (stored or refused: the outbox holds none of them) and the
//  completion of each asynchronous one has returned.  Where waiting for
//  completions would wait for itself it waits for the answers only: when
//  called from a handler or completion of this agent; and in dispatch
//  mode, where completions are then queued for herald_agent_dispatch
//  (herald_agent_fd readable), not yet run.  HERALD_ERR_TIMEOUT otherwise
//  (what is unanswered stays queued in the outbox and is still sent).
herald_err
    herald_agent_flush (herald_agent_t *self, int timeout_ms);

//  ---------------------------------------------------------------------
//  Reading the log into a handler (on the calling thread)

//  Read one topic's stream in ver order, from_ver (0 means 1) to to_ver
//  (0: to its head), calling handler on the calling thread for each
//  event; a handler returning anything but HERALD_OK stops the read and
//  that value is returned (HERALD_RETRY is not special here).  Uses its
//  own connection; waits at most timeout_ms (the agent's when <= 0) for
//  each reply.  HERALD_OK when the stream ended with END: every event of
//  the range was passed.  An ERROR from the broker (HERALD_ERR_INTERNAL
//  when it met data it cannot read) is returned after the events before it.
herald_err
    herald_agent_read (herald_agent_t *self, const char *topic, uint64_t from_ver,
                       uint64_t to_ver, herald_handler_fn *handler, void *arg,
                       int timeout_ms);

//  A range of the log: from seq `from` (0: 1) or from the first event with
//  ts >= from_ts (when from_ts != 0), to seq `to` or until ts `until_ts`
//  inclusive (0: to the head), for topics with one of prefixes (NULL:
//  all).  Temporal queries ("as of midnight") use until_ts.
typedef struct {
    uint64_t from;
    uint64_t from_ts;
    uint64_t to;
    uint64_t until_ts;
    const char *const *prefixes;
} herald_range_t;

//  The same pair for a range: herald_range_init zeroes it (the whole log,
//  every topic); herald_range_size is the library's sizeof.
void
    herald_range_init (herald_range_t *range);

size_t
    herald_range_size (void);

//  Replay range into handler as herald_agent_read does.  When last is not
//  NULL it receives the END's `last` (every matching event up to it was
//  passed), so a caller can continue from last + 1.  A stream the broker
//  ends with ERROR (HERALD_ERR_INTERNAL: data it cannot read, named in
//  herald_agent_last_error) returns that error after the events before
//  it, and leaves last as it was: the range was not passed whole.
herald_err
    herald_agent_replay (herald_agent_t *self, const herald_range_t *range,
                         herald_handler_fn *handler, void *arg, int timeout_ms,
                         uint64_t *last);

//  ---------------------------------------------------------------------
//  Snapshots of the service's own state

//  Save bytes[0..len) as snapshot `name` (same rules as subscription
//  names) taken at seq: written to a new file, fsynced and renamed over
//  the previous one, so a crash leaves the old or the new, never a mix.
herald_err
    herald_agent_snapshot_save (herald_agent_t *self, const char *name, uint64_t seq,
                                const void *bytes, size_t len);

//  Load snapshot `name`: *seq_p and a malloc'd copy in *bytes_p (caller
//  owns, free) of *len_p bytes.  HERALD_ERR_NOT_FOUND when there is none,
//  HERALD_ERR_CORRUPT when it fails its checksum.  Subscribe with
//  { HERALD_START_SEQ, seq + 1 } to continue after it.
herald_err
    herald_agent_snapshot_load (herald_agent_t *self, const char *name, uint64_t *seq_p,
                                void **bytes_p, size_t *len_p);

//  ---------------------------------------------------------------------
//  Stats

typedef struct {
    uint64_t delivered;             //  handler calls returning OK, all subscriptions
    uint64_t duplicates;            //  events dropped as already delivered
    uint64_t gaps_repaired;         //  live-stream losses detected and replayed
    uint64_t replays;               //  REPLAY requests made (catch-up and repair)
    uint64_t live_overflows;        //  catch-up live buffers discarded when full
    uint64_t retries;               //  handler RETRY returns
    uint64_t published;             //  events acknowledged by the broker
    uint64_t publish_errors;        //  events refused by the broker
    uint64_t outbox_depth;          //  events in the outbox not yet acknowledged
    uint64_t outbox_bytes;
    uint64_t broker_head;           //  from the latest heartbeat
    uint64_t broker_epoch;
    uint64_t lag;                   //  broker_head - the lowest subscription checkpoint
    bool broker_reachable;          //  false after 3 heartbeats of silence
    uint64_t state_recovered;       //  torn state records recovered from (logged)
    uint64_t replay_errors;         //  catch-up/repair REPLAYs the broker ended with ERROR
                                    //  internal (data it cannot read); each retried
    uint64_t repair_replays;        //  the REPLAY requests of `replays` that repaired a
                                    //  subscription which had been live
    uint64_t gaps;                  //  repairs, all subscriptions (herald_sub_status_t)
    uint64_t data_lost;             //  checkpoints rewound because the broker lost events
    uint64_t broker_lineage;        //  the broker's count of accepted losses, last heard
    //  The node the agent talks to: publishes, replays and the live stream
    //  all go to this one node (a cluster's leader, once it said which)
    char node [128];                //  its name (WELCOME's `node`); "" until welcomed
    char node_api [256];            //  its api endpoint; the first given until then
    uint64_t failovers;             //  moves to another node (not_leader, a node that did
                                    //  not answer, closed, or fell silent)
    uint64_t leader_redirects;      //  of those: to the leader a not_leader named
    uint64_t nodes_known;           //  api endpoints known (given, and WELCOME's `cluster`)
    uint64_t auth_refused;          //  CURVE handshakes the broker refused (unknown,
                                    //  revoked or expired key); each retried, 1 s -> 30 s
} herald_agent_stats_t;

//  The agent's counters into stats.  Never fails.
void
    herald_agent_stats (herald_agent_t *self, herald_agent_stats_t *stats);

//  ---------------------------------------------------------------------
//  Schema evolution: upcasters and downcasters (docs/schemas.md)
//
//  An event's `type` names what happened and its `schema` (1, 2, 3 ...
//  per type; absent means 1) the shape of its data.  A service registers
//  casters on the agent: an upcaster turns the data of (type, schema n)
//  into schema n + 1, a downcaster (type, schema n + 1) into schema n.  A
//  subscription made with herald_agent_subscribe_with declares the schema
//  it understands per type; every event of such a type reaches its handler
//  converted through the chain, step by step, on the delivery thread
//  (also in dispatch mode: casters must be pure functions of their input).
//  The log is never rewritten: the delivery's data and schema are the
//  converted ones, its envelope the stored one (herald_delivery_stored_schema
//  reads the stored schema from it).  A converted event is the same event
//  (same id, seq): the exactly-once contract of herald_agent_subscribe holds.
//
//  When an event cannot be converted (newer than wanted with no
//  downcaster, a missing step, a caster that fails) the subscription's
//  policy decides:
//    HERALD_SCHEMA_STOP   the subscription FAILS (HERALD_ERR_UNSUPPORTED,
//                         the message names type, stored and wanted schema
//                         and seq); the event is not passed, so subscribing
//                         again once a caster is registered delivers it;
//    HERALD_SCHEMA_SKIP   on_error is told (HERALD_ERR_UNSUPPORTED, the same
//                         message after "skipped: "), the event is counted
//                         and skipped: the checkpoint moves past it;
//    HERALD_SCHEMA_PARK   the event is recorded for later (its stored
//                         envelope appended to state_dir/parked/NAME.parked,
//                         fsynced, when the agent has a state_dir; then
//                         on_parked, when given) and skipped: the
//                         checkpoint moves past it once it is recorded.
//                         A kill between the two parks it once, not twice.
//  ---------------------------------------------------------------------

//  What a caster writes.  The agent lends `buffer` (capacity bytes): a
//  caster writes the new data there and sets data_len; or, for more, sets
//  data to bytes from malloc (the agent frees them) and data_len.  On
//  failure it returns an error and may say why in message.
typedef struct {
    uint8_t *buffer;
    size_t capacity;
    void *data;                     //  NULL: the result is in buffer
    size_t data_len;
    char message [256];
} herald_cast_result_t;

//  A caster: event is the event as converted so far (event->schema and
//  event->data are this step's input; type, meta, id, seq, topic, ts as
//  stored).  Returns HERALD_OK with result filled, or any other value: the
//  conversion failed (the policy applies).
typedef int (herald_caster_fn) (const herald_delivery_t *event, herald_cast_result_t *result,
                                void *arg);

//  Register an upcaster of type (NUL-terminated, 1-255 bytes) from schema
//  from_schema (>= 1) to from_schema + 1; a downcaster from from_schema
//  (>= 2) to from_schema - 1.  arg is passed to each call.  Any thread, any
//  time (a registration applies to the next conversion).
//  HERALD_ERR_INVALID for bad arguments or when that step is registered
//  already (casters are never replaced nor removed: an agent's lifetime).
herald_err
    herald_agent_upcaster (herald_agent_t *self, const char *type, uint64_t from_schema,
                           herald_caster_fn *fn, void *arg);
herald_err
    herald_agent_downcaster (herald_agent_t *self, const char *type, uint64_t from_schema,
                             herald_caster_fn *fn, void *arg);

typedef enum {
    HERALD_SCHEMA_STOP = 0,
    HERALD_SCHEMA_SKIP,
    HERALD_SCHEMA_PARK
} herald_schema_policy_t;

//  One declaration: events of `type` (NUL-terminated) reach the handler
//  at `schema` (>= 1).
typedef struct {
    const char *type;
    uint64_t schema;
} herald_schema_want_t;

//  Called for a parked event, on the delivery thread (also in dispatch
//  mode, like casters), after the parked file has it: event as stored (not
//  converted), reason says why it was parked.
typedef void (herald_parked_fn) (const herald_delivery_t *event, const char *reason,
                                 void *arg);

//  A subscription with declared schemas.  Call herald_subscribe_options_init
//  first.  Everything is copied by herald_agent_subscribe_with.
typedef struct {
    //  Where: a local subscription (group NULL) with prefixes and start,
    //  or, with group set, a group subscription with those options (its
    //  own prefixes and start; the ones here are then ignored)
    const char *const *prefixes;
    herald_start_t start;
    const herald_group_options_t *group;
    //  What the handler understands
    const herald_schema_want_t *wants;
    size_t want_count;
    //  The schema of every type not in wants (0: such events, and events
    //  without a type, reach the handler as stored)
    uint64_t default_schema;
    herald_schema_policy_t on_incompatible;
    //  PARK: called for each parked event (may be NULL when the agent has
    //  a state_dir, which gets the parked file; one of the two is needed)
    herald_parked_fn *on_parked;
    void *on_parked_arg;
    //  Who keeps the position (a local subscription's; with group set,
    //  HERALD_ERR_INVALID: a group's positions are the broker's).
    //  false: the agent, in state_dir (a checkpoint and a dedup window;
    //  start applies only when none exists).  true: the caller, e.g. a
    //  projection in its database (herald_projection.h): nothing of this
    //  subscription is written to state_dir (an agent without one may make
    //  it), start applies on every subscribe (HERALD_START_SEQ with the
    //  caller's position + 1), the dedup window is kept in memory only,
    //  and a loss the broker reports (HERALD_ERR_DATA_LOST) stops the
    //  subscription (FAILED, on_error) instead of rewinding it: the caller
    //  decides (a projection is rebuilt).  PARK then needs on_parked.
    bool caller_position;
} herald_subscribe_options_t;

void
    herald_subscribe_options_init (herald_subscribe_options_t *options);
size_t
    herald_subscribe_options_size (void);

//  herald_agent_subscribe, or herald_agent_subscribe_group when
//  options->group is set, with schemas declared.  Same errors, and
//  HERALD_ERR_INVALID for bad declarations (a type twice, schema 0, an
//  unknown policy, PARK with neither state_dir nor on_parked, or with
//  caller_position and no on_parked) and for caller_position with a group.
herald_err
    herald_agent_subscribe_with (herald_agent_t *self, const char *name,
                                 const herald_subscribe_options_t *options,
                                 herald_handler_fn *handler, void *arg);

//  Convert event's data to schema `want` with the agent's casters, as a
//  subscription would (for read and replay handlers, projections, parked
//  events).  *data_p receives malloc'd bytes (caller frees; also when no
//  step was needed: a copy) of *len_p bytes.  HERALD_ERR_UNSUPPORTED when
//  a step is missing or a caster failed (herald_agent_last_error says
//  which).  An event without a type is copied as is.
herald_err
    herald_agent_convert (herald_agent_t *self, const herald_delivery_t *event,
                          uint64_t want, void **data_p, size_t *len_p);

//  The schema of event as stored in the log: read from its envelope (1
//  when absent; 0 when the envelope does not decode).  For a delivery of
//  a subscription with schemas, event->schema is the converted one.
uint64_t
    herald_delivery_stored_schema (const herald_delivery_t *event);

//  Parked events of subscription `name` (state_dir/parked/NAME.parked),
//  oldest first: fn (event as stored, reason, arg) for each.  Works with
//  or without that subscription running.  HERALD_OK when there are none.
//  A torn last record (a crash while parking) is ignored.
herald_err
    herald_agent_parked (herald_agent_t *self, const char *name, herald_parked_fn *fn,
                         void *arg);

//  Replay the parked events of `name` into handler (on the calling
//  thread), each converted to the subscription's declared schema with the
//  casters registered now (herald_agent_convert), oldest first.  The ones
//  handled (HERALD_OK) are removed from the file; the first that fails
//  (a conversion or the handler) and every one after it stay parked, and
//  its error is returned.  At least once: a crash between a handler and
//  the file's rewrite passes that event again.  The subscription must be
//  known to this agent (running or not), for its declarations.
herald_err
    herald_agent_parked_replay (herald_agent_t *self, const char *name,
                                herald_handler_fn *handler, void *arg);

typedef struct {
    uint64_t upcast;                //  events converted up (one or more steps)
    uint64_t downcast;              //  events converted down
    uint64_t skipped;               //  incompatible events skipped (SKIP)
    uint64_t parked;                //  incompatible events parked (PARK)
    uint64_t stopped;               //  subscriptions stopped by an incompatible event
} herald_schema_stats_t;

size_t
    herald_schema_stats_size (void);

//  Schema figures of subscription name, or of every subscription of the
//  agent when name is NULL.  HERALD_ERR_NOT_FOUND for an unknown name.
herald_err
    herald_agent_schema_stats (herald_agent_t *self, const char *name,
                               herald_schema_stats_t *stats);

//  ---------------------------------------------------------------------
//  Dispatching on your own thread (options.dispatch)
//
//  For event loops (asyncio, libuv, zloop, a GUI) that want user code on
//  their own thread.  The delivery thread keeps doing everything it does
//  (ordering, checkpoints, deduplication, RETRY backoff, markers); only
//  the calls into user code (handlers, completions, on_error) are handed
//  to the application, one at a time: the delivery thread posts a call,
//  makes herald_agent_fd readable, and waits until herald_agent_dispatch
//  has run it.  The checkpoint's intent is written before the call is
//  posted and its commit after the handler's HERALD_OK: the contract of
//  docs/agent.md is unchanged.  While nothing is dispatched, nothing is
//  delivered (and the agent's pipes back up within their bounds).

//  Asynchronous publish completions are queued for herald_agent_dispatch
//  as soon as the broker answers; they do not wait for the delivery
//  thread, nor behind a deferred handler call (which may be waiting for
//  them).
//
//  A handler running in dispatch mode may answer later: it calls
//  herald_agent_defer, returns HERALD_DEFER, and the subscription waits
//  for herald_agent_complete with the ticket.  Outside dispatch mode, or
//  without herald_agent_defer, HERALD_DEFER is an error like any other.
#define HERALD_DEFER (-2)

//  The file descriptor to watch for reading in dispatch mode (an eventfd:
//  poll it, never read it): readable when a call is waiting for
//  herald_agent_dispatch.  It may be readable with nothing to run.  -1
//  (HERALD_ERR_INVALID) when the agent is not in dispatch mode.  Borrowed:
//  valid until herald_agent_destroy.
int
    herald_agent_fd (herald_agent_t *self);

//  Run, on the calling thread, up to max (at least 1) waiting calls:
//  handlers, publish completions, on_error.  Between two handler calls
//  of one batch it waits up to 2 ms for the next, so a burst costs one
//  wake-up of the event loop, not one per event.  Returns how many ran
//  (0 when none was waiting), or -1 (HERALD_ERR_INVALID) when the agent
//  is not in dispatch mode.  One thread at a time; a call made from a
//  dispatched handler returns 0.  Handlers run from here may make every
//  call a delivery-thread handler may (unsubscribe their own
//  subscription too), but not herald_agent_destroy.
int
    herald_agent_dispatch (herald_agent_t *self, int max);

//  From a handler run by herald_agent_dispatch: make this call deferred
//  and return its ticket (never 0); the handler then returns
//  HERALD_DEFER.  0 when the calling thread is not running a dispatched
//  handler of this agent.  While the call is deferred the event stays
//  "delivering" (its intent is on disk) and the agent's other handlers
//  wait, as they would for a slow handler.
uint64_t
    herald_agent_defer (herald_agent_t *self);

//  Answer deferred call ticket with what the handler would have returned
//  (HERALD_OK, HERALD_RETRY, an error), from any thread.  HERALD_OK, or
//  HERALD_ERR_NOT_FOUND when ticket is not the call deferred now: it was
//  answered already, or abandoned because its subscription stopped
//  (unsubscribe, failure) or the agent is being destroyed; an abandoned
//  event is not checkpointed and is delivered again (flagged
//  redelivered) when the subscription resumes.
herald_err
    herald_agent_complete (herald_agent_t *self, uint64_t ticket, int rc);

//  ---------------------------------------------------------------------
//  Batch handlers (one call for many events)
//
//  A batch handler is called with up to a delivery batch of events at
//  once (at most 256), in seq order, for bindings and projections that
//  pay per call (a Python callback, a database transaction).  The
//  exactly-once contract is the per-event one (docs/agent.md, "Batch
//  handlers"): before the call the checkpoint records the batch as in
//  doubt; after it each handled event is committed in order.  After a
//  kill -9 during the call, every event of that batch comes again and
//  each is flagged redelivered.

typedef struct {
    size_t size;                    //  sizeof (herald_delivery_batch_t) of the library
    const char *subscription;       //  its name
    const herald_delivery_t *events;    //  count of them, seq order (borrowed)
    size_t count;                   //  1 .. 256
    //  The count stored MessagePack envelopes back to back (each one map,
    //  as herald_delivery_t.envelope), for decoding in bulk
    const uint8_t *envelopes;
    size_t envelopes_len;
    const uint8_t *redelivered;     //  count flags, 1: as herald_delivery_t.redelivered
    //  1, then 2, 3 ... each RETRY (the events after `handled` were all
    //  offered before; a partial HERALD_OK does not count)
    unsigned attempt;
    //  In/out: count when called.  The handler lowers it to the number of
    //  leading events it handled when it returns RETRY or an error (they
    //  are committed; the rest is not), or when it returns HERALD_OK
    //  having handled only some (the rest is offered again at once; 0
    //  with HERALD_OK counts as RETRY).
    size_t handled;
} herald_delivery_batch_t;

//  What it returns: as herald_handler_fn, for the events after `handled`.
typedef int (herald_batch_handler_fn) (herald_delivery_batch_t *batch, void *arg);

//  herald_agent_subscribe with a batch handler: same name rules, start,
//  checkpoint and errors; handler(batch, arg) is called instead of one
//  call per event.  In dispatch mode one call is posted per batch (and
//  may be deferred: the batch stays valid until herald_agent_complete).
herald_err
    herald_agent_subscribe_batch (herald_agent_t *self, const char *name,
                                  const char *const *prefixes, herald_start_t start,
                                  herald_batch_handler_fn *handler, void *arg);

//  herald_agent_subscribe_group with a batch handler: each call carries
//  events of one member batch (options->batch_max) that the member
//  admitted; `handled` tells the member how many were done.
herald_err
    herald_agent_subscribe_group_batch (herald_agent_t *self, const char *group,
                                        const herald_group_options_t *options,
                                        herald_batch_handler_fn *handler, void *arg);

//  herald_agent_subscribe_with with a batch handler: schemas (each event of
//  a batch converted as a handler's would be; a skipped or parked event
//  is not in the batch), caller_position, or options->group.
herald_err
    herald_agent_subscribe_batch_with (herald_agent_t *self, const char *name,
                                       const herald_subscribe_options_t *options,
                                       herald_batch_handler_fn *handler, void *arg);

//  herald_agent_complete for a deferred batch handler call, with how many
//  leading events of its batch were handled (clamped to its count): the
//  batch itself may be gone by then (abandoned), so never write its
//  `handled` after deferring (herald_agent_complete on such a call means
//  all handled for HERALD_OK, none otherwise).  Same returns as
//  herald_agent_complete.
herald_err
    herald_agent_complete_batch (herald_agent_t *self, uint64_t ticket, int rc,
                                 size_t handled);

#ifdef __cplusplus
}
#endif

#endif
