/*  =========================================================================
    grouputil - run group members and a publisher, ask GROUP show

    For the group tests and bench/group_bench (no criterion): start
    tests/group_member processes, publish a storm of events through an
    agent (recording each event's seq and topic as the broker acknowledged
    it), and read a group's positions with GROUP show on a raw DEALER
    (docs/protocol.md, "Consumer groups"), as a third-party client would.
    Every wait is bounded; failures are return values.
    =========================================================================
*/

#ifndef HERALD_GROUPUTIL_H_INCLUDED
#define HERALD_GROUPUTIL_H_INCLUDED

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include "herald.h"

#define GU_PARTITIONS_MAX   1024

//  What GROUP show said.
typedef struct {
    uint64_t head;
    unsigned partitions;
    uint64_t generation;
    size_t members;
    size_t positions;               //  entries read
    uint64_t committed [GU_PARTITIONS_MAX];
    uint64_t delivered [GU_PARTITIONS_MAX];
    uint64_t epoch [GU_PARTITIONS_MAX];
    bool owned [GU_PARTITIONS_MAX];
    char owner [GU_PARTITIONS_MAX][64];
    uint64_t min_committed;         //  lowest committed of every partition
    size_t owned_count;             //  partitions with an owner
    char error [160];               //  an ERROR reply's code and message
} gu_show_t;

//  GROUP show of group at api (one endpoint), answered within timeout_ms.
//  Returns 0, or -1 (no answer, an ERROR: in show->error, or unreadable).
int
    gu_group_show (const char *api, const char *group, gu_show_t *show, int timeout_ms);

//  Path of tests/group_member (caller owns), or NULL.
char *
    gu_member_path (void);

//  Start tests/group_member with its arguments (see group_member.c) and
//  extra (NULL-terminated, may be NULL), stdout and stderr appended to
//  out_log.  Returns its pid, or -1.
pid_t
    gu_member_spawn (const char *binary, const char *api, const char *group,
                     const char *prefixes, const char *log, unsigned cost_us,
                     unsigned batch_max, const char *const *extra, const char *out_log);

//  SIGTERM pid and wait up to timeout_ms.  Returns its exit code (0..255),
//  or -1 when it did not exit (it is then killed) or died of a signal.
int
    gu_member_stop (pid_t pid, int timeout_ms);

//  SIGKILL pid and reap it.  Returns the monotonic ns once reaped.
uint64_t
    gu_member_kill (pid_t pid);

//  A publisher thread: count events, topic printf (topic_format, i %
//  topics), through an agent (no state directory) on api, paced to rate
//  events a second (0: as fast as the agent takes them).  Every event's
//  acknowledgement is recorded (seq, topic index).
typedef struct {
    char *api;
    char *topic_format;
    size_t topics;
    size_t count;
    unsigned rate;
    pthread_t thread;
    pthread_mutex_t lock;
    herald_agent_t *agent;
    uint64_t *seqs;                 //  [count]: 0 until acknowledged OK
    size_t acked;                   //  OK acknowledgements
    size_t failed;                  //  publishes refused (err in last_error)
    size_t queued;                  //  published so far
    herald_err last_error;
    bool done;                      //  every publish queued and flushed
    bool started;
} gu_publisher_t;

//  Start the publisher.  NULL on failure.
gu_publisher_t *
    gu_publisher_start (const char *api, const char *topic_format, size_t topics,
                        size_t count, unsigned rate);

//  Wait up to timeout_ms until every event is acknowledged.  0 or -1.
int
    gu_publisher_wait (gu_publisher_t *self, int timeout_ms);

//  The topic of event index into out.
void
    gu_publisher_topic (gu_publisher_t *self, size_t index, char *out, size_t size);

//  Join the thread, destroy the agent, free.  NULL-safe.
void
    gu_publisher_destroy (gu_publisher_t **self_p);

//  The broker's head (STATUS on a fresh DEALER), or 0 on no answer.
uint64_t
    gu_head (const char *api, int timeout_ms);

//  Monotonic ns.
uint64_t
    gu_mono_ns (void);

#endif
