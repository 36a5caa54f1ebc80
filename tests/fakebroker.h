/*  =========================================================================
    fakebroker - a scripted broker for the agent's tests

    A real heraldd cannot be made to drop a chosen message, or to lose and
    renumber events on cue, so test_herald_agent_gaps and
    test_herald_agent_lineage play the broker themselves: a ROUTER and a PUB
    on free ports that speak HWP/1 (envelopes made with herald_event_encode,
    replies with herald_msg_encode) from a log held in memory.  It answers
    REPLAY (EVENTS then END, or ERROR bad_request when `refuse` is set) and
    HELLO (WELCOME with the lineage and losses), and fans out what a test
    chooses.  One agent, subscribed by the test, talks to it.  Criterion
    only; the fixture is freed by fb_teardown also when an assertion ended
    the test early.

    A cluster (fb_cluster_setup): FB_NODES_MAX fake nodes share the one log
    (fb_fake's, as a replicated log would be) and each has its own ROUTER
    and PUB (node 0's are fb_fake.router and fb_fake.pub), name ("fake",
    "fake1", ...), visible head (`lag`: it has applied only so far) and
    role: the leader stores PUBLISHed events (ACK, `dup` with the original
    seq for an id stored before); the others answer ERROR not_leader
    naming the leader's api, or nil.  WELCOME lists every node's api in
    `cluster`.  A node can be killed (its sockets closed).
    =========================================================================
*/

#ifndef HERALD_FAKEBROKER_H_INCLUDED
#define HERALD_FAKEBROKER_H_INCLUDED

#include <stdatomic.h>
#include "agentutil.h"

#define FB_WAIT_MS      10000
#define LOG_MAX         64
#define FB_NODES_MAX    3
#define FB_NIL          (-1)            //  fb_node_t.leader: not_leader with leader nil

//  One node of a fake cluster (node 0's sockets are fb_fake.router, .pub).
typedef struct {
    zsock_t *router;                    //  nodes 1..: their own
    zsock_t *pub;
    char api [64];
    char fanout [64];
    char name [16];
    bool dead;                          //  its sockets are closed
    bool mute;                          //  it sends no heartbeat (paused, cut off)
    uint64_t lag;                       //  0: it has the whole log; else its head
    const char *cluster_self;           //  WELCOME's `cluster` is only this (a
                                        //  standalone broker's own api), when set
    bool old_lineage;                   //  it has not applied the accepted losses:
                                        //  lineage 0, none listed
    int leader;                         //  PUBLISH: its own index stores; another
                                        //  index: not_leader naming it; FB_NIL: nil
    size_t store_then_refuse;           //  batches it stores yet answers not_leader
                                        //  naming `leader_after` (leadership lost)
    int leader_after;
    size_t publishes;                   //  PUBLISH requests it got
    size_t events_sent;                 //  events in them
    size_t events_refused_stored;       //  of those: stored, then not_leader
    size_t hellos;
} fb_node_t;

typedef struct {
    zsock_t *router;
    zsock_t *pub;
    char api [64];
    char fanout [64];
    msgpack_sbuffer envelopes [LOG_MAX + 1];    //  by seq
    uint8_t ids [LOG_MAX + 1][16];
    uint64_t head;
    size_t replays;                             //  REPLAY requests answered
    bool refuse;                                //  answer REPLAY with ERROR bad_request
    uint64_t lineage;                           //  in $hb, WELCOME and END
    herald_loss_t losses [4];                   //  in WELCOME
    size_t loss_count;
    size_t hellos;                              //  HELLO requests answered
    bool hold_hellos;                           //  keep HELLOs, answer none
    size_t hellos_held;                         //  ... how many came
    zframe_t *held_identity;                    //  ... and the last one
    zframe_t *held_body;
    const char *scope;                          //  WELCOME's `scope` (issue 14), when set
    size_t node_count;                          //  1 unless fb_cluster_setup
    fb_node_t nodes [FB_NODES_MAX];
} fb_fake_t;

extern fb_fake_t fb_fake;
extern atomic_int fb_errors;                    //  on_error calls
extern int fb_error_code;                       //  ... the last one's code
extern char fb_error_message [256];             //  ... and message
extern char *fb_state;                          //  the agent's state directory
extern herald_agent_t *fb_agent;
extern au_recorder_t *fb_recorder;

//  The agent's on_error: counts the calls and keeps the last one's code and
//  message (fb_errors, fb_error_code, fb_error_message).
void
    fb_on_error (const char *subscription, int code, const char *message, void *arg);

//  Bind the fake broker, make fb_state (tagged tag) and fb_recorder, and
//  start fb_agent (service) on it; asserts that each worked.
void
    fb_setup (const char *tag, const char *service);

//  fb_setup with a cluster of `count` nodes (every one the leader of
//  itself until the test says otherwise) and the agent's api the list of
//  their endpoints, no fanout given (each WELCOME names its own).
//  heartbeat_ms: the agent's option.
void
    fb_cluster_setup (const char *tag, const char *service, size_t count, int heartbeat_ms);

//  Node index's head: its lag, or the log's.
uint64_t
    fb_node_head (size_t index);

//  Send event seq, or a heartbeat, on node index's fanout.
void
    fb_node_fanout (size_t index, uint64_t seq);
void
    fb_node_heartbeat (size_t index);

//  Close node index's sockets: the agent's connections to it drop.
void
    fb_node_kill (size_t index);

//  Destroy the agent, the recorder, the state directory and the broker.
void
    fb_teardown (void);

//  Append an event on topic to the fake log; same_as (a seq, or 0) reuses
//  that event's id.
void
    fb_append (const char *topic, uint64_t same_as);

//  Send event seq on the fake fanout (topic "g.1").
void
    fb_fanout (uint64_t seq);

//  Send a heartbeat with the head and the lineage.
void
    fb_heartbeat (void);

//  Answer what the agent asks on api for up to ms.
void
    fb_serve (int ms);

//  Stop holding HELLOs back (hold_hellos), and answer the last one held.
void
    fb_release_hellos (void);

//  Subscribe "g" from the beginning and serve until it is live.
void
    fb_go_live (void);

#endif
