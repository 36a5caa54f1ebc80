/*  =========================================================================
    herald_backups - the broker's BACKUP command: online backups

    BACKUP {rid, to} (an addition to HWP/1, docs/protocol.md) backs the
    store up into the directory `to` on the broker's host while the broker
    serves: a worker thread takes a RocksDB checkpoint, reads what it holds,
    checksums every file and writes the manifest (store/herald_backup.c).
    The loop polls the worker's socket and answers BACKUP {rid, to, head,
    head_ts, events, topics, lineage, digest, raft_applied, files, bytes,
    created, ms} when it is done, or an ERROR.  One backup at a time: a
    second is answered `overloaded`.  The grant (`admin = backup`) is
    checked by the loop before the body is looked at.
    =========================================================================
*/

#ifndef HERALD_BACKUPS_H_INCLUDED
#define HERALD_BACKUPS_H_INCLUDED

#include <stdbool.h>
#include <czmq.h>
#include "herald_reply.h"
#include "herald_store.h"

typedef struct _herald_backups_t herald_backups_t;

//  store and reply are borrowed; node is the broker's node id (copied).
herald_backups_t *
    herald_backups_new (herald_store_t *store, herald_reply_t *reply, const char *node);

//  A backup still running is cancelled (its temporary directory removed)
//  and waited for.  NULL-safe.
void
    herald_backups_destroy (herald_backups_t **self_p);

//  True when command is BACKUP.
bool
    herald_backups_is_request (zframe_t *command);

//  Take one BACKUP request (identity and body borrowed): start the backup
//  or answer an ERROR at once.
void
    herald_backups_request (herald_backups_t *self, zframe_t *identity, zframe_t *body);

//  The running backup's socket, readable when it is done (NULL: none).
zsock_t *
    herald_backups_sock (herald_backups_t *self);

//  The running backup is done (its socket was readable): answer it.
void
    herald_backups_finish (herald_backups_t *self);

#endif
