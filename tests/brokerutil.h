/*  =========================================================================
    brokerutil - run the real heraldd and talk to it as a third party would

    The broker integration tests start $HERALD_BUILDDIR/broker/heraldd on
    TCP ports chosen at run time (bind 127.0.0.1:0, read the port, close),
    with a fresh temporary data directory, and stop it with SIGTERM and a
    bounded waitpid (SIGKILL as the last resort).  Clients are plain czmq
    sockets: a DEALER on api that sends [COMMAND, body] and a SUB on fanout.
    Request bodies are packed by hand with msgpack_packer; replies are
    decoded with herald_msg_decode, envelopes with herald_event_decode.

    Nothing here uses criterion: every helper reports failure by its return
    value, and the tests assert on it.  Every wait is bounded.  So
    bench/broker_bench links this file (and testutil.c) too, to run the
    broker it measures the same way the tests run theirs.
    =========================================================================
*/

#ifndef HERALD_BROKERUTIL_H_INCLUDED
#define HERALD_BROKERUTIL_H_INCLUDED

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <czmq.h>
#include <msgpack.h>
#include "herald_event.h"
#include "herald_msg.h"

#define BU_MAX_ARGS     32

//  One heraldd: its temporary directory (data dir and log inside), its
//  endpoints and, while it runs, its pid.
typedef struct {
    char *dir;                      //  the test's temporary directory
    char *data_dir;                 //  dir/data, the broker's --data-dir
    char *log;                      //  dir/heraldd.log, stdout and stderr
    char *binary;                   //  path of heraldd
    char api [64];                  //  tcp://127.0.0.1:PORT of the last start
    char fanout [64];
    char *extra [BU_MAX_ARGS];      //  extra flags, owned, NULL-terminated
    pid_t pid;                      //  0 when not running
    int status;                     //  waitpid status of the last exit
} bu_broker_t;

//  A TCP port free on 127.0.0.1 now, below the kernel's ephemeral range
//  (so no connect's source port takes it while its server is down), or -1.
int
    bu_free_port (void);

//  Where heraldd is: $HERALD_BUILDDIR/broker/heraldd, else broker/heraldd
//  in a directory above this program (a test or a bench).  Caller owns; NULL when not found.
char *
    bu_heraldd_path (void);

//  A broker description with a fresh temporary directory named after tag
//  and extra flags (a NULL-terminated list, copied; may be NULL).  It is
//  not started.  Caller owns (bu_broker_destroy); NULL on failure.
bu_broker_t *
    bu_broker_new (const char *tag, const char *const *extra);

//  The same in a new directory parent/tag (parent must exist, parent/tag
//  must not), running binary (NULL: bu_heraldd_path).  For a caller that
//  keeps its runs under one directory of its own, like bench/broker_bench.
//  Caller owns (bu_broker_destroy removes parent/tag); NULL on failure.
bu_broker_t *
    bu_broker_new_in (const char *parent, const char *tag, const char *binary,
                      const char *const *extra);

//  Kill (SIGKILL) and reap the broker if it runs, remove its directory,
//  free it, clear *self_p.  NULL-safe.
void
    bu_broker_destroy (bu_broker_t **self_p);

//  Start heraldd on new free ports with the data dir and extra flags, and
//  wait until it answers STATUS (up to timeout_ms).  Returns 0, or -1 when
//  it did not start or answer (then it is killed and reaped; see the log).
int
    bu_broker_start (bu_broker_t *self, int timeout_ms);

//  Start heraldd as above but do not wait for readiness.  Returns 0 or -1.
int
    bu_broker_spawn (bu_broker_t *self);

//  Start the broker again (after a stop or kill) on the api and fanout
//  ports of its last start, same data dir and flags, and wait up to
//  timeout_ms for STATUS; a bind race on the just-released ports is
//  retried.  Returns 0 or -1.
int
    bu_broker_restart (bu_broker_t *self, int timeout_ms);

//  Start heraldd again on the api and fanout already in self (set by the
//  caller, or by the last start), without waiting for readiness.  For a
//  cluster, whose members' endpoints are chosen before any starts.
//  Returns 0 or -1.
int
    bu_broker_respawn (bu_broker_t *self);

//  fork and exec binary with argv (NULL-terminated, argv[0] included),
//  stdout and stderr appended to log_path, stdin /dev/null.  The child
//  dies with its parent (PR_SET_PDEATHSIG) and starts with default signal
//  handling.  Returns its pid, or -1.
pid_t
    bu_spawn (const char *binary, char *const *argv, const char *log_path);

//  bu_spawn with the environment envp (NULL: this process's), built by
//  the caller before the fork (the child of a threaded parent must not
//  allocate).
pid_t
    bu_spawn_env (const char *binary, char *const *argv, char *const *envp,
                  const char *log_path);

//  Wait up to timeout_ms for the broker to exit by itself.  Returns 0 with
//  self->status set, or -1 when it still runs.
int
    bu_broker_wait (bu_broker_t *self, int timeout_ms);

//  SIGTERM, and wait up to timeout_ms.  Returns 0 when it exited (status
//  in self->status), -1 when it had to be SIGKILLed.
int
    bu_broker_stop (bu_broker_t *self, int timeout_ms);

//  SIGKILL now and reap.  NULL-safe.
void
    bu_broker_kill (bu_broker_t *self);

//  The first max-1 bytes of the broker's log, NUL-terminated, into out.
void
    bu_broker_log (const bu_broker_t *self, char *out, size_t max);

//  The last max-1 bytes of the broker's log, NUL-terminated, into out.
void
    bu_broker_log_tail (const bu_broker_t *self, char *out, size_t max);

//  ---------------------------------------------------------------------
//  Clients

//  A DEALER connected to endpoint, linger 0.  Caller owns (zsock_destroy).
zsock_t *
    bu_dealer_new (const char *endpoint);

//  A SUB connected to endpoint, subscribed to each of the NULL-terminated
//  prefixes.  Caller owns (zsock_destroy).
zsock_t *
    bu_sub_new (const char *endpoint, const char *const *prefixes);

//  Send [command, body].  Returns 0 or -1.
int
    bu_send (zsock_t *sock, const char *command, const void *body, size_t len);

//  Send [command, sbuffer's bytes] and clear the sbuffer.
int
    bu_send_sbuf (zsock_t *sock, const char *command, msgpack_sbuffer *sbuf);

//  Send count raw frames.  Returns 0 or -1.
int
    bu_send_frames (zsock_t *sock, const void *const *frames, const size_t *sizes,
                    size_t count);

//  Receive one message within timeout_ms.  Caller owns; NULL on timeout.
zmsg_t *
    bu_recv (zsock_t *sock, int timeout_ms);

//  A received reply decoded: the message (owned), its command, the body
//  decoded with herald_msg_decode (reply=true), whose pointers borrow the
//  message and the zone.  For EVENTS, frames 2.. are envelopes.
typedef struct {
    zmsg_t *msg;
    char command [32];
    herald_msg_type_t type;
    msgpack_zone zone;
    bool zone_ready;
    herald_msg_t body;
    herald_err rc;                  //  herald_msg_decode's result
    herald_error_t err;
    size_t envelope_count;          //  EVENTS: frames after the body
} bu_reply_t;

//  Receive and decode one reply into self within timeout_ms.  Returns 0
//  (check self->rc for the decode), or -1 on timeout or a message with no
//  frames.  Call bu_reply_fini afterwards in every case.
int
    bu_recv_reply (zsock_t *sock, bu_reply_t *self, int timeout_ms);

//  Envelope index (0-based) of an EVENTS reply; NULL when out of range.
zframe_t *
    bu_reply_envelope (bu_reply_t *self, size_t index);

//  Free what bu_recv_reply made; self may be zeroed.
void
    bu_reply_fini (bu_reply_t *self);

//  STATUS with rid, and wait up to timeout_ms for its reply (other replies
//  are skipped, at most 10000).  Returns 0 and fills self (a STATUS reply
//  with that rid), or -1.
int
    bu_status (zsock_t *sock, uint64_t rid, bu_reply_t *self, int timeout_ms);

//  ---------------------------------------------------------------------
//  Packing request bodies by hand

//  A str key or value.
void
    bu_pack_str (msgpack_packer *pk, const char *text);

//  An event for PUBLISH: id, topic, data and, when has_expect, expect.
typedef struct {
    uint8_t id [HERALD_ID_BYTES];
    const char *topic;
    const void *data;
    size_t data_len;
    bool has_expect;
    uint64_t expect;
} bu_event_t;

//  Fill event with a fresh random id, topic and data (both borrowed: they
//  must outlive the event; data NULL: empty), no expect.
void
    bu_event_init (bu_event_t *event, const char *topic, const char *data);

//  Pack a PUBLISH body {rid, events: [...]} into sbuf.
void
    bu_pack_publish (msgpack_sbuffer *sbuf, uint64_t rid, const bu_event_t *events,
                     size_t count);

//  Pack {rid} (STATUS, CANCEL).
void
    bu_pack_rid (msgpack_sbuffer *sbuf, uint64_t rid);

//  Pack {rid, credit} (CREDIT).
void
    bu_pack_credit (msgpack_sbuffer *sbuf, uint64_t rid, uint64_t credit);

//  A REPLAY request; a has_ flag false leaves the key out.
typedef struct {
    bool has_from;
    uint64_t from;
    bool has_to;
    uint64_t to;
    const char *const *prefixes;    //  NULL: no prefixes key
    size_t prefix_count;
    bool has_credit;
    uint64_t credit;
} bu_replay_t;

void
    bu_pack_replay (msgpack_sbuffer *sbuf, uint64_t rid, const bu_replay_t *replay);

//  Pack {rid, topic} (READ from ver 1, no credit key).
void
    bu_pack_read (msgpack_sbuffer *sbuf, uint64_t rid, const char *topic);

//  Pack {rid, proto, client} (HELLO).
void
    bu_pack_hello (msgpack_sbuffer *sbuf, uint64_t rid, uint64_t proto, const char *client);

//  True when str holds exactly text.
bool
    bu_str_eq (herald_str_t str, const char *text);

//  ---------------------------------------------------------------------
//  A cluster of heraldd nodes on 127.0.0.1 (issue 13)

#define BU_CLUSTER_MAX  5

//  count nodes named n1, n2, ...: each a bu_broker_t with its own
//  directory, and free api, fanout and Raft ports chosen before any
//  starts, since every node's flags list every member.
typedef struct {
    size_t count;
    bu_broker_t *nodes [BU_CLUSTER_MAX];
    char names [BU_CLUSTER_MAX][8];
    char raft [BU_CLUSTER_MAX][32];         //  127.0.0.1:PORT
} bu_cluster_t;

//  A cluster of count nodes, none started: each runs with --node, one
//  --peer per member, --cluster-state new, and the extra flags (NULL-
//  terminated, may be NULL; e.g. shorter timeouts).  Caller owns; NULL
//  on failure.
bu_cluster_t *
    bu_cluster_new (const char *tag, size_t count, const char *const *extra);

//  Kill every node that runs, remove every directory, free.  NULL-safe.
void
    bu_cluster_destroy (bu_cluster_t **self_p);

//  Start every node without waiting (they wait for each other to
//  bootstrap), then wait up to timeout_ms for each to answer STATUS.
//  Returns 0, or -1 (see the nodes' logs).
int
    bu_cluster_start (bu_cluster_t *self, int timeout_ms);

//  The STATUS reply of a cluster node, read whole: the keys a cluster
//  adds are not all uints, which herald_msg_decode keeps.
typedef struct {
    uint64_t head;
    char role [16];
    char node [16];
    char cluster_state [16];
    uint64_t raft_id;
    uint64_t term;
    char leader [16];                       //  "" when nil
    char leader_api [64];                   //  "" when nil
    uint64_t commit_index;
    uint64_t applied_index;
    uint64_t voters;
    char digest [24];
    char durability [24];
    size_t peer_count;
    uint64_t last_index;                    //  (added for bench/cluster_bench)
    uint64_t apply_us_max;
} bu_node_status_t;

//  STATUS to api (a fresh DEALER), read within timeout_ms.  Returns 0,
//  or -1 when no reply came or it could not be read.
int
    bu_node_status (const char *api, bu_node_status_t *status, int timeout_ms);

//  The index of the node that leads, as every running node that answers
//  agrees (a leader that says so, and no other running node saying it
//  leads in the same term), waited for up to timeout_ms; -1 when none.
int
    bu_cluster_leader (bu_cluster_t *self, int timeout_ms);

#endif
