/*  =========================================================================
    herald_checkpoint - one subscription's position and dedup window, on disk
    (or in memory only: herald_checkpoint_new_memory)

    A small file per subscription, mapped MAP_SHARED, that the delivery
    thread updates around every handler call with plain stores: they
    survive kill -9 of the process without a system call per event.
    herald_checkpoint_sync (periodically, and on close) makes them survive
    power loss too.  Layout and recovery rules: herald_checkpoint.c.

    Not thread-safe: one thread (the agent's delivery thread) uses it once
    opened.
    =========================================================================
*/

#ifndef HERALD_CHECKPOINT_H_INCLUDED
#define HERALD_CHECKPOINT_H_INCLUDED

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "herald.h"

typedef struct _herald_checkpoint_t herald_checkpoint_t;

//  Open the checkpoint at path, creating it with `done` = start_done,
//  lineage start_lineage and a window of `window` ids when it does not
//  exist and create is true.
//  An existing file keeps its own window size.  On failure returns the
//  error (HERALD_ERR_CORRUPT, HERALD_ERR_IO, HERALD_ERR_NOT_FOUND when it
//  does not exist and create is false) with a message.  *recovered is set
//  when the newest slot was torn and the previous one was used (the next
//  event is then treated as in doubt).  Caller owns *self_p.
herald_err
    herald_checkpoint_open (herald_checkpoint_t **self_p, const char *path, size_t window,
                            bool create, uint64_t start_done, uint64_t start_lineage,
                            bool *recovered, char *message, size_t message_size);

//  A checkpoint in memory only (no file): the same calls, the same
//  rules, at `done` = start_done with lineage start_lineage, never in
//  doubt, gone with the process (a subscription whose caller keeps its
//  position: herald_subscribe_options_t.caller_position).  HERALD_OK or
//  HERALD_ERR_NOMEM.  Caller owns *self_p.
herald_err
    herald_checkpoint_new_memory (herald_checkpoint_t **self_p, size_t window,
                                  uint64_t start_done, uint64_t start_lineage);

//  True when path exists.
bool
    herald_checkpoint_exists (const char *path);

//  Sync and unmap, free, clear *self_p.  NULL-safe.
void
    herald_checkpoint_destroy (herald_checkpoint_t **self_p);

//  The last seq done: every matching event up to it was handled or skipped.
uint64_t
    herald_checkpoint_done (herald_checkpoint_t *self);

//  True while the first event after done is in doubt: its handler was
//  called before the process ended and did not record its return.
bool
    herald_checkpoint_in_doubt (herald_checkpoint_t *self);

//  True when id is in the window of recently handled ids.
bool
    herald_checkpoint_seen (herald_checkpoint_t *self, const uint8_t id [16]);

//  Record "delivering seq, id" before calling a handler.
void
    herald_checkpoint_intent (herald_checkpoint_t *self, uint64_t seq, const uint8_t id [16]);

//  herald_checkpoint_intent, and the events after seq up to last are in
//  doubt too (a batch handler's call: herald_agent_deliver.c).  A span
//  over 2^32 - 1 seqs is clamped (the events past it are then not
//  flagged).
void
    herald_checkpoint_intent_span (herald_checkpoint_t *self, uint64_t seq,
                                   const uint8_t id [16], uint64_t last);

//  The last seq in doubt when the file was opened (0: none): intent_seq
//  and its span, or done + 1 after a torn slot.  Cleared by rewind/reset.
uint64_t
    herald_checkpoint_doubt_until (herald_checkpoint_t *self);

//  Record that the intended event is done: done = its seq, its id joins
//  the window.
void
    herald_checkpoint_commit (herald_checkpoint_t *self);

//  herald_checkpoint_commit, keeping the events after it up to last in
//  doubt (the rest of a batch whose handler returned: committed next).
void
    herald_checkpoint_commit_span (herald_checkpoint_t *self, uint64_t last);

//  done = max(done, seq) without an event (skipped, or a replay's `last`).
void
    herald_checkpoint_advance (herald_checkpoint_t *self, uint64_t seq);

//  A new checkpoint's lineage when no broker was heard yet: the first
//  lineage heard is adopted (nothing was passed before it: replays wait
//  for the WELCOME).
#define HERALD_LINEAGE_UNKNOWN  UINT64_MAX

//  The broker lineage (its count of accepted losses) that done belongs
//  to; 0 for a file written before lineages existed.
uint64_t
    herald_checkpoint_lineage (herald_checkpoint_t *self);

//  done = min(done, seq) and lineage = lineage, in one update: the broker
//  lost the events after seq (docs/agent.md).  Clears an intent.
void
    herald_checkpoint_rewind (herald_checkpoint_t *self, uint64_t seq, uint64_t lineage);

//  The size of the dedup window (ids kept), as the file was made.
size_t
    herald_checkpoint_window (herald_checkpoint_t *self);

//  How many ids the window holds now (at most its size).
size_t
    herald_checkpoint_window_fill (herald_checkpoint_t *self);

//  done = done (lower or higher), lineage = lineage, no intent, and an
//  empty window, in one slot update: an operator moved the subscription
//  (herald sub reset).  The window is emptied so that the events after the
//  new done are delivered again rather than dropped as duplicates.
void
    herald_checkpoint_reset (herald_checkpoint_t *self, uint64_t done, uint64_t lineage);

//  msync the mapping (power-loss safety).  Returns 0 or -1.
int
    herald_checkpoint_sync (herald_checkpoint_t *self);

#endif
