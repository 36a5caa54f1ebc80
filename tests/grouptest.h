/*  =========================================================================
    grouptest - a raw consumer-group member for the criterion tests of the
    GROUP command (docs/protocol.md, "Consumer groups")

    What a member written from the doc does, packed by hand on a DEALER:
    heartbeat with what it owns, commit positions, GROUP show; each reply
    checked (command, rid, op).  For test_heraldd_groups*.c (with
    brokertest's broker).
    =========================================================================
*/

#ifndef HERALD_GROUPTEST_H_INCLUDED
#define HERALD_GROUPTEST_H_INCLUDED

#include "brokertest.h"
#include "replytest.h"

#define GT_PARTS_MAX    1024
#define GT_POLL_MS      100

typedef struct {
    uint64_t partition, epoch, committed, delivered;
} gt_pos_t;

typedef struct {
    zsock_t *sock;
    const char *name;
    const char *group;
    const char *prefix;             //  the group's one prefix, or NULL: every topic
    uint64_t session_ms;            //  at creation (0: default)
    uint64_t partitions;            //  at creation (0: default)
    gt_pos_t held [GT_PARTS_MAX];    //  the last assignment
    size_t count;
    uint64_t rid;
    uint64_t generation;
} gt_member_t;

//  Send GROUP with a body packed by format (rt_vpack).
void
    gt_send (zsock_t *sock, const char *format, ...);

//  The reply is GROUP, to rid, for op.
void
    gt_check_group (rt_reply_t *reply, uint64_t rid, const char *op);

//  A member of group named name (prefix: the group's one prefix, or NULL
//  for every topic) on a new brokertest client.
void
    gt_member_init (gt_member_t *member, const char *group, const char *name,
                    const char *prefix);

//  Heartbeat with owned = the first owned_count of owned; the reply's
//  assignment into held.  Returns the reply (caller fini's it).
void
    gt_beat_owned (gt_member_t *member, const gt_pos_t *owned, size_t owned_count,
                   rt_reply_t *reply);

//  Heartbeat owning what it was last assigned (what a member does).
void
    gt_beat (gt_member_t *member);

//  Its held position of partition, or NULL.
const gt_pos_t *
    gt_held (const gt_member_t *member, uint64_t partition);

//  Commit positions; the fenced partitions into fenced (returns the count).
size_t
    gt_commit (gt_member_t *member, const gt_pos_t *positions, size_t count, uint64_t *fenced);

//  GROUP show; the positions into positions[partition] (caller fini's reply).
void
    gt_show (zsock_t *sock, uint64_t rid, const char *group, gt_pos_t *positions,
             rt_reply_t *reply);

//  Heartbeat member until it holds want partitions, for at most
//  timeout_ms (then fails), pacing by GT_POLL_MS.
void
    gt_beat_until (gt_member_t *member, size_t want, int timeout_ms);

#endif
