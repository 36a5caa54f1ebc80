/*  =========================================================================
    herald_writer - applies proposals to the store, on a thread of its own

    The broker loop proposes a group commit (every queued PUBLISH, as
    store batches, with the ts the events are to get) and goes on serving:
    streams are pumped, STATUS answered and the next commit's requests
    read while RocksDB writes and syncs the WAL.  When the socket turns
    readable the apply is done and the loop takes its record: the
    per-request results, the seq range and the envelopes written, which
    the record owns, so that they stay valid while the next apply runs.

    This is the seam a replicated log plugs into: a Raft node has the
    same shape (propose; applied records come back, the leader's with the
    cookie of its proposal), and applies each committed entry with the
    same herald_store_apply.  Standalone, proposing is applying at once.

    One proposal is in flight at a time, and its record is released
    before the next: the store allows one appending thread at a time, and
    reads from any thread (herald_store.h).
    =========================================================================
*/

#ifndef HERALD_WRITER_H_INCLUDED
#define HERALD_WRITER_H_INCLUDED

#include <czmq.h>
#include "herald_store.h"

typedef struct _herald_writer_t herald_writer_t;

//  One proposal, applied (or not): lent to the loop by herald_writer_take
//  until herald_writer_release.  The writer thread fills it; the loop
//  reads it only once taken.
typedef struct {
    void *cookie;                   //  as proposed (the writer never reads it)
    herald_batch_t *batches;        //  as proposed, results and status filled in
    size_t count;
    uint64_t ts;                    //  as proposed; new events got max (ts, last ts)
    herald_err rc;                  //  HERALD_OK: applied and durable; else nothing
    herald_error_t err;             //  of it may be ACKed, and err says why
    uint64_t first_seq;             //  the new events: first_seq .. last_seq
    uint64_t last_seq;              //  (last_seq < first_seq: none)
    herald_store_envelopes_t envelopes;     //  their envelopes, owned by the record
    uint64_t raft_index;            //  cluster: the last raft index applied (0: standalone)
    uint64_t term;                  //  cluster: the term of that entry
} herald_applied_t;

//  Start the writer thread for store (borrowed: it must outlive the
//  writer).  Caller owns; NULL when the thread could not start.
herald_writer_t *
    herald_writer_new (herald_store_t *store);

//  Wait for an apply in flight, stop the thread, free the writer.
void
    herald_writer_destroy (herald_writer_t **self_p);

//  Start applying count batches with ts (herald_store_apply).  The
//  batches (and the events they point to) are borrowed until the record
//  is released; cookie comes back in the record.  Not while a proposal is
//  in flight or its record not released.
void
    herald_writer_propose (herald_writer_t *self, herald_batch_t *batches, size_t count,
                           uint64_t ts, void *cookie);

//  True from propose until the record is taken.
bool
    herald_writer_busy (herald_writer_t *self);

//  The socket that turns readable when the proposal in flight is applied.
zsock_t *
    herald_writer_sock (herald_writer_t *self);

//  Wait for the proposal in flight (at once if the socket was readable)
//  and lend its record (never NULL; rc says whether it was applied).
herald_applied_t *
    herald_writer_take (herald_writer_t *self);

//  Give a taken record back; its envelopes' memory serves a later apply.
//  Clears *record_p.
void
    herald_writer_release (herald_writer_t *self, herald_applied_t **record_p);

#endif
