/*  =========================================================================
    herald_outbox - the agent's durable queue of publishes not yet stored

    Every publish is appended to a checksummed file in the state directory
    before it is sent, and marked done once the broker acknowledges or
    refuses it; a new agent on the same directory sends what is left, with
    the same ids (the broker's dedup makes that safe).  The file format and
    recovery rules are in herald_outbox.c.

    Thread-safe: callers append and wait from any thread; the agent's I/O
    thread takes batches to send and finishes them.  An item taken by the
    I/O thread stays valid until it finishes or requeues it.
    =========================================================================
*/

#ifndef HERALD_OUTBOX_H_INCLUDED
#define HERALD_OUTBOX_H_INCLUDED

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "herald.h"

typedef struct _herald_outbox_t herald_outbox_t;

//  One queued publish.  Fields are the outbox's; the I/O thread reads
//  id, map and flags of items it took.
typedef struct _herald_outbox_item_t {
    uint64_t number;                //  its record number in the file
    uint8_t id [16];
    bool has_expect;                //  sent alone: a conflict fails only it
    bool solo;                      //  sent alone after its batch was refused
    bool inflight;
    uint8_t *map;                   //  the publisher map, MessagePack
    size_t map_len;
    herald_publish_fn *done;        //  async completion, or NULL
    void *arg;
    struct _herald_outbox_waiter_t *waiter;     //  a sync caller, or NULL
    struct _herald_outbox_item_t *prev, *next;
} herald_outbox_item_t;

//  A synchronous publisher waiting for its item; lives on its stack.
typedef struct _herald_outbox_waiter_t {
    bool done;
    herald_publish_result_t result;
} herald_outbox_waiter_t;

//  An asynchronous completion to run (on the delivery thread).
typedef struct {
    herald_publish_fn *done;
    void *arg;
    herald_publish_result_t result;
} herald_completion_t;

//  Open or create the outbox file at path (NULL: an outbox in memory
//  only, for an agent with no state_dir).  A record torn at the tail
//  (a crash during an append, before the publish call returned) is cut
//  off and counted in *recovered; anything else that fails its checks is
//  HERALD_ERR_CORRUPT with a message.  Caller owns *self_p.
herald_err
    herald_outbox_open (herald_outbox_t **self_p, const char *path, size_t max_events,
                        size_t max_bytes, bool fsync, uint64_t *recovered,
                        char *message, size_t message_size);

//  Close the file and free every item (pending ones stay in the file).
//  NULL-safe.
void
    herald_outbox_destroy (herald_outbox_t **self_p);

//  Append one event (its publisher map of len bytes, copied) with its
//  completion (done/arg, or waiter, or neither), waiting up to timeout_ms
//  for room.  HERALD_ERR_OVERLOADED when still full, HERALD_ERR_IO when
//  the write failed (nothing queued).
herald_err
    herald_outbox_append (herald_outbox_t *self, const uint8_t id [16], bool has_expect,
                          const void *map, size_t len, herald_publish_fn *done, void *arg,
                          herald_outbox_waiter_t *waiter, int timeout_ms);

//  Wait up to timeout_ms for waiter's item to finish.  Returns true when
//  it did (waiter->result holds the answer); on timeout detaches the
//  waiter from the item (which stays queued) and returns false.
bool
    herald_outbox_wait (herald_outbox_t *self, herald_outbox_waiter_t *waiter, int timeout_ms);

//  Wait up to timeout_ms for the outbox to be empty and, when completions
//  is true, for every async completion herald_outbox_finish handed out to
//  be reported run (herald_outbox_completed).  True when it is so.
bool
    herald_outbox_drain (herald_outbox_t *self, int timeout_ms, bool completions);

//  count async completions handed out by herald_outbox_finish have run
//  (or, in dispatch mode, are queued for herald_agent_dispatch).
void
    herald_outbox_completed (herald_outbox_t *self, size_t count);

//  The agent is being destroyed and its I/O thread has exited: every
//  pending item with an async completion gets one saying
//  HERALD_ERR_TIMEOUT, "queued in the outbox" (true: its record is in the
//  file, sent by the next agent on the directory), into a malloc'd array
//  *completions_p (caller owns; NULL when none).  The items stay pending,
//  their completion detached.  Returns the count.
size_t
    herald_outbox_abandon (herald_outbox_t *self, herald_completion_t **completions_p);

//  Events and bytes pending.
void
    herald_outbox_depth (herald_outbox_t *self, uint64_t *events, uint64_t *bytes);

//  I/O thread: take the next batch of unsent items in order, at most
//  max_items and about max_bytes of maps, into items; an item with
//  `expect` or `solo` is always taken alone.  Marks them in flight.
//  Returns the count (0: nothing to send).
size_t
    herald_outbox_take (herald_outbox_t *self, herald_outbox_item_t **items,
                        size_t max_items, size_t max_bytes);

//  I/O thread: put taken items back to be sent again (marked solo when
//  solo is true).
void
    herald_outbox_requeue (herald_outbox_t *self, herald_outbox_item_t **items, size_t count,
                           bool solo);

//  I/O thread: every item in flight back to unsent (a reconnect).
void
    herald_outbox_requeue_all (herald_outbox_t *self);

//  I/O thread: items[0..count) are answered with results[0..count): wake
//  sync waiters, copy async completions into completions (count entries;
//  returns how many, each owed until herald_outbox_completed), record them
//  done in the file and free them.
size_t
    herald_outbox_finish (herald_outbox_t *self, herald_outbox_item_t **items,
                          const herald_publish_result_t *results, size_t count,
                          herald_completion_t *completions);

#endif
