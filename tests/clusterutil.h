/*  =========================================================================
    clusterutil - run a real heraldd cluster on 127.0.0.1 and check its logs

    A cluster here is N heraldd processes, each with its own temporary data
    directory and free ports (api, fanout, raft), started together with
    `--cluster-state new` and the same `--peer` list.  The harness finds
    the leader through STATUS (role, leader, term), kills (-9), pauses
    (SIGSTOP/SIGCONT), stops (SIGTERM), restarts and wipes nodes, and at the
    end REPLAYs every node's log from seq 1 and checks DESIGN.md #8:

      - every node's log is the same sequence: same seq, id, topic, ver, ts
        and the same envelope bytes;
      - seq gapless from 1, ver gapless per topic, ts non-decreasing, each
        id once, and only ids the test published;
      - every ACKed (id, seq, ver) is in the log at that seq;
      - per Raft term, ACKs came from one node at most.

    With `proxies`, every directed Raft link i -> j goes through a
    raftproxy (tests/raftproxy.h): node i runs with HERALD_TEST_HOOKS=1 and
    HERALD_TEST_RAFT_CONNECT="ID=127.0.0.1:PORT,..." naming each peer's raft
    id (STATUS `raft_id`) and its proxy.  The ids exist only once a node has
    made its store, so the harness first starts the nodes without the hook
    (never all at once, so none bootstraps), reads their raft ids, stops
    them, and then starts them all with the map.

    Nothing here uses criterion: every helper returns its failure and, where
    it says so, writes why into a caller's buffer.  Every wait is bounded.
    =========================================================================
*/

#ifndef HERALD_CLUSTERUTIL_H_INCLUDED
#define HERALD_CLUSTERUTIL_H_INCLUDED

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <czmq.h>
#include "brokerutil.h"
#include "raftproxy.h"

#define CU_NODES_MAX    5
#define CU_WHY_MAX      1024        //  size of a caller's "why" buffer

typedef struct {
    unsigned election_ms;           //  --election-ms (0: the node's default)
    unsigned raft_heartbeat_ms;     //  --raft-heartbeat-ms (0: default)
    bool proxies;                   //  route every Raft link through a raftproxy
    const char *const *extra;       //  more heraldd flags, NULL-terminated, or NULL
    const char *const *hooks;       //  test hooks: "NAME=VALUE" in the nodes' environment
                                    //  (with HERALD_TEST_HOOKS=1), NULL-terminated, or NULL
} cu_options_t;

//  What a node said in STATUS (strings NUL-terminated; "" for nil or absent).
typedef struct {
    char role [16];                 //  leader, follower, standalone
    char node [64];
    char cluster_state [16];        //  member, bootstrapping, joining
    char leader [64];               //  the leader's node name
    char leader_api [128];
    char digest [24];
    uint64_t head;
    uint64_t term;
    uint64_t raft_id;
    uint64_t commit_index;
    uint64_t applied_index;
    uint64_t last_index;
    uint64_t voters;
} cu_status_t;

typedef struct {
    char name [16];                 //  --node: n1, n2, ...
    char *dir;                      //  the cluster's dir/NAME
    char *data_dir;                 //  dir/NAME/data
    char *log;                      //  dir/NAME/heraldd.log (every start appends)
    char api [64];                  //  tcp://127.0.0.1:PORT
    char fanout [64];
    char raft [32];                 //  127.0.0.1:PORT
    pid_t pid;                      //  0 when not running
    int status;                     //  waitpid status of the last exit
    bool paused;                    //  SIGSTOPped
    uint64_t raft_id;               //  learned from STATUS (0: not yet)
    char *connect_env;              //  HERALD_TEST_RAFT_CONNECT=... or NULL
    zsock_t *ctl;                   //  the harness's DEALER on api
    uint64_t rid;
    char metrics [32];              //  --metrics HOST:PORT at each start, when a test sets it
} cu_node_t;

typedef struct {
    char *dir;
    char *binary;
    size_t count;
    cu_options_t options;           //  extra points at owned copies below
    char *extra [BU_MAX_ARGS];
    char *hooks [BU_MAX_ARGS];
    cu_node_t nodes [CU_NODES_MAX];
    rp_proxy_t *proxies [CU_NODES_MAX][CU_NODES_MAX];   //  [from][to], NULL on the diagonal
} cu_cluster_t;

//  ---------------------------------------------------------------------
//  Cluster and nodes

//  A cluster of count nodes (2..CU_NODES_MAX) in a fresh temporary
//  directory named after tag, with free ports chosen; nothing runs yet.
//  Caller owns (cu_cluster_destroy); NULL on failure.
cu_cluster_t *
    cu_cluster_new (const char *tag, size_t count, const cu_options_t *options);

//  Kill every node (resumed first if paused), stop the proxies, remove the
//  directory unless HERALD_KEEP_CLUSTER is set (then print where it is),
//  free, clear *self_p.  NULL-safe.
void
    cu_cluster_destroy (cu_cluster_t **self_p);

//  Start every node with --cluster-state new (through the proxies when the
//  options ask for them, learning the raft ids first) and wait up to
//  timeout_ms for all of them to agree on one leader.  Returns the
//  leader's index, or -1 with why filled.
int
    cu_cluster_start (cu_cluster_t *self, int timeout_ms, char *why, size_t why_size);

//  Start node index with --cluster-state state ("new", "existing"; NULL:
//  "new", as at the first start) without waiting.  Returns 0 or -1.
int
    cu_node_spawn (cu_cluster_t *self, size_t index, const char *state);

//  Wait up to timeout_ms for node index to answer STATUS.  Returns 0, or
//  -1 when it did not or exited (then pid is 0 and status is set).
int
    cu_node_wait_up (cu_cluster_t *self, size_t index, int timeout_ms);

//  cu_node_spawn, then cu_node_wait_up; a bind race on the ports the last
//  process just left is retried a few times.  Returns 0 or -1.
int
    cu_node_restart (cu_cluster_t *self, size_t index, const char *state, int timeout_ms);

//  SIGKILL and reap (SIGCONT first if paused).  No-op when not running.
void
    cu_node_kill (cu_cluster_t *self, size_t index);

//  SIGSTOP / SIGCONT.  Return 0 or -1.
int
    cu_node_pause (cu_cluster_t *self, size_t index);
int
    cu_node_resume (cu_cluster_t *self, size_t index);

//  SIGTERM and wait up to timeout_ms.  Returns 0 when it exited (status
//  set), -1 when it had to be killed.
int
    cu_node_term (cu_cluster_t *self, size_t index, int timeout_ms);

//  Wait up to timeout_ms for node index to exit by itself.  Returns 0
//  (status set) or -1 when it still runs.
int
    cu_node_wait_exit (cu_cluster_t *self, size_t index, int timeout_ms);

//  Remove node index's data directory (the node must not run).  0 or -1.
int
    cu_node_wipe (cu_cluster_t *self, size_t index);

//  True while node index runs and is not paused.
bool
    cu_node_live (cu_cluster_t *self, size_t index);

//  The last max-1 bytes of node index's log into out.
void
    cu_node_log_tail (cu_cluster_t *self, size_t index, char *out, size_t max);

//  The index of the node whose api endpoint is api, or -1.
int
    cu_node_by_api (cu_cluster_t *self, const char *api, size_t len);

//  The index of the node named name, or -1.
int
    cu_node_by_name (cu_cluster_t *self, const char *name);

//  ---------------------------------------------------------------------
//  STATUS

//  Parse a STATUS reply body (raw MessagePack) into status.  0 or -1.
int
    cu_status_parse (const void *body, size_t len, cu_status_t *status);

//  STATUS to node index through the harness's DEALER, answered within
//  timeout_ms.  Returns 0 or -1.
int
    cu_status (cu_cluster_t *self, size_t index, cu_status_t *status, int timeout_ms);

//  Wait up to timeout_ms until exactly one of the live nodes not in
//  exclude (a bit mask of indexes) says role leader and every other of
//  them names it as leader, in the same term.  Returns its index or -1.
int
    cu_wait_leader (cu_cluster_t *self, uint32_t exclude, int timeout_ms);

//  Wait up to timeout_ms until every node in mask answers STATUS with the
//  same head and applied_index == commit_index, twice in a row 50 ms
//  apart.  Returns 0, or -1 with why filled (what each said, digest too).
int
    cu_wait_converged (cu_cluster_t *self, uint32_t mask, int timeout_ms, char *why,
                       size_t why_size);

//  Set the proxy of every link between node index and the others, both
//  directions, to mode (an isolation, or its healing).  0 or -1.
int
    cu_isolate (cu_cluster_t *self, size_t index, rp_mode_t mode);

#endif
