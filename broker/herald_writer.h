/*  =========================================================================
    herald_writer - the store's appender, on a thread of its own

    The broker loop hands a group commit (every queued PUBLISH, as store
    batches) to this thread and goes on serving: streams are pumped, STATUS
    answered and the next commit's requests read while RocksDB writes and
    syncs the WAL.  When the socket turns readable the append is done and
    the loop collects its result, then ACKs and fans out.

    One commit is in flight at a time, and the loop reads the store's
    appended envelopes only between commits: the store allows one appending
    thread at a time, and reads from any thread (herald_store.h).
    =========================================================================
*/

#ifndef HERALD_WRITER_H_INCLUDED
#define HERALD_WRITER_H_INCLUDED

#include <czmq.h>
#include "herald_store.h"

typedef struct _herald_writer_t herald_writer_t;

//  Start the writer thread for store (borrowed: it must outlive the
//  writer).  Caller owns; NULL when the thread could not start.
herald_writer_t *
    herald_writer_new (herald_store_t *store);

//  Wait for an append in flight, stop the thread, free the writer.
void
    herald_writer_destroy (herald_writer_t **self_p);

//  Start appending count batches.  The batches (and the events they point
//  to) are borrowed until herald_writer_finish returns.  Not while another
//  append is in flight.
void
    herald_writer_start (herald_writer_t *self, herald_batch_t *batches, size_t count);

//  True while an append is in flight.
bool
    herald_writer_busy (herald_writer_t *self);

//  The socket that turns readable when the append in flight is done.
zsock_t *
    herald_writer_sock (herald_writer_t *self);

//  Wait for the append in flight (at once if the socket was readable) and
//  return herald_store_append's result; on failure err says why.
herald_err
    herald_writer_finish (herald_writer_t *self, herald_error_t *err);

#endif
