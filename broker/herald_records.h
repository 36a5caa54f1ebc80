/*  =========================================================================
    herald_records - the bounded hand-over of applied records from the
    raft thread to the broker thread

    Split out of herald_raft.c (herald_raft_sock, _take and _release are
    this class's); nothing here calls libraft.
    =========================================================================
*/

#ifndef HERALD_RECORDS_H_INCLUDED
#define HERALD_RECORDS_H_INCLUDED

#include <czmq.h>
#include "herald_writer.h"

//  Records out (pushed, not yet released) before a push waits.
#define HERALD_RECORDS_MAX  64

typedef struct _herald_records_t herald_records_t;

//  The record pipe (an inproc PAIR under a name never used before).  NULL
//  when its sockets cannot be opened.
herald_records_t *
    herald_records_new (void);

//  Free records pushed and never taken, the free list and the pipe.
//  NULL-safe; clears the caller's pointer.
void
    herald_records_destroy (herald_records_t **self_p);

//  A blank record (raft thread): a released one when there is one (its
//  envelope buffers serve again), count 0, first_seq 1, every other field
//  0.  The caller fills it, then pushes or frees it.
herald_applied_t *
    herald_records_get (herald_records_t *self);

//  Free a record never pushed.  NULL-safe; clears the caller's pointer.
void
    herald_records_free (herald_applied_t **record_p);

//  Hand record to the broker thread (raft thread), waiting while
//  HERALD_RECORDS_MAX are out; once stopping, nobody takes it and it is
//  freed.  Takes ownership of the record in every case.
void
    herald_records_push (herald_records_t *self, herald_applied_t *record);

//  No more waiting in push: the node stops (any thread).
void
    herald_records_stop (herald_records_t *self);

//  Broker thread: readable when records wait; the next record or NULL;
//  give a taken record back (clears *record_p).
zsock_t *
    herald_records_sock (herald_records_t *self);
herald_applied_t *
    herald_records_take (herald_records_t *self);
void
    herald_records_release (herald_records_t *self, herald_applied_t **record_p);

#endif
