/*  =========================================================================
    herald_proposal - one herald_raft_propose call on its way through
    Raft: cut into entries, encoded, and answered by one record

    Split out of herald_raft.c; nothing here calls libraft (herald_raft.c
    submits the entries and counts their callbacks here).
    =========================================================================
*/

#ifndef HERALD_PROPOSAL_H_INCLUDED
#define HERALD_PROPOSAL_H_INCLUDED

#include <msgpack.h>
#include "herald_writer.h"

//  Bytes of whole requests per entry (a bigger single request travels
//  alone).
#define HERALD_PROPOSAL_ENTRY_MAX   (1u << 20)

typedef struct _herald_proposal_t herald_proposal_t;

//  Fields: next is the broker -> raft queue's (herald_raft.c, under its
//  mutex); the rest belongs to the raft thread once it took the proposal.
struct _herald_proposal_t {
    herald_proposal_t *next;            //  in the broker -> raft queue
    herald_batch_t *batches;            //  borrowed from the broker
    size_t count;
    uint64_t ts;
    void *cookie;
    size_t entries;                     //  submitted to raft_apply
    size_t callbacks;                   //  their callbacks fired
    bool lost;                          //  not all of it submitted or applied
    bool done;                          //  its record (with the cookie) pushed
};

//  A proposal of count batches (borrowed until its record is released).
herald_proposal_t *
    herald_proposal_new (herald_batch_t *batches, size_t count, uint64_t ts, void *cookie);

//  NULL-safe; clears the caller's pointer.  The batches are the broker's.
void
    herald_proposal_destroy (herald_proposal_t **self_p);

//  Where the entry that starts at request first ends: first + the most
//  whole requests that fit HERALD_PROPOSAL_ENTRY_MAX bytes, at least one.
size_t
    herald_proposal_cut (herald_proposal_t *self, size_t first);

//  Encode requests first .. first + count - 1 as a publish entry of this
//  term and proposer into buffer (initialised by the caller).  -1 when
//  out of memory or the encoder fails.
int
    herald_proposal_encode (herald_proposal_t *self, size_t first, size_t count,
                            uint64_t term, uint64_t proposer, msgpack_sbuffer *buffer);

//  Copy the results of an applied entry (its count batches) into the
//  proposal's batches first .. first + count - 1: an op's result is a
//  malloc'd copy, the broker's to free (herald_commit.c frees it with
//  its commit).
void
    herald_proposal_set_results (herald_proposal_t *self, size_t first,
                                 const herald_batch_t *batches, size_t count);

//  The proposal's last entry was applied: when none was lost, record gets
//  the cookie, the batches, the count and the ts, and the proposal is done.
void
    herald_proposal_answer (herald_proposal_t *self, herald_applied_t *record);

//  Fill record as the proposal's not_leader answer (cookie, batches,
//  rc HERALD_ERR_NOT_LEADER, no events); the proposal is done.
void
    herald_proposal_answer_lost (herald_proposal_t *self, herald_applied_t *record);

//  One of its entries' callbacks fired (applied: status 0).  True once
//  every submitted entry's has: the proposal is settled, and needs its
//  not_leader record if it is not done.
bool
    herald_proposal_settle (herald_proposal_t *self, bool applied);

#endif
