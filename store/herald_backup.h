/*  =========================================================================
    herald_backup - online backups of a store, checked and restored

    A backup is a directory:

        DIR/herald-backup.manifest   what it holds, with checksums
        DIR/store/                   a RocksDB checkpoint of the store

    The manifest is text, one "key value" per line (format in
    herald_backup.c and docs/operations.md), ending with the SHA-256 of
    every line before it, so a manifest cut short or changed is refused
    like a damaged file.  Every file of store/ is listed with its size and
    SHA-256 (libsodium).

    Made under a temporary name beside DIR (.NAME.partial-XXXXXX) and
    renamed to DIR only once every file and the manifest are synced: a
    process killed on the way leaves the temporary directory, never a DIR
    that passes herald_backup_verify.  Restore copies into a temporary
    directory beside the data directory, checks it, then renames it.
    Used by the broker (BACKUP, broker/herald_backups.c) and the CLI
    (herald backup verify, herald restore).
    =========================================================================
*/

#ifndef HERALD_BACKUP_H_INCLUDED
#define HERALD_BACKUP_H_INCLUDED

#include <stdbool.h>
#include <stdint.h>
#include "herald_store.h"

#define HERALD_BACKUP_FORMAT        1
#define HERALD_BACKUP_MANIFEST      "herald-backup.manifest"
#define HERALD_BACKUP_STORE         "store"

//  What a backup holds, from its manifest.
typedef struct {
    uint32_t format;                //  HERALD_BACKUP_FORMAT
    char node [128];                //  the broker's node id ("" when none)
    char store_uuid [64];           //  a cluster node's store identity ("" when none)
    uint64_t lineage;               //  losses accepted before the backup
    uint64_t head;                  //  the last seq it holds (0: empty)
    uint64_t head_ts;               //  that event's ts (Unix ns)
    uint64_t events;
    uint64_t topics;
    uint64_t digest;                //  herald_store_digest at head
    uint64_t raft_applied;          //  a cluster node's applied raft index (0: standalone)
    uint64_t created;               //  when it was taken (Unix ns)
    uint64_t files;
    uint64_t bytes;                 //  the files' total size
} herald_backup_info_t;

//  Long work reports how far it is: phase ("checkpoint", "checksums",
//  "verify", "copy", "open"), and bytes done of total (0 when unknown).
//  Called at most every 64 MiB and at each phase's end.
typedef void (herald_backup_progress_fn) (const char *phase, uint64_t done, uint64_t total,
                                          void *arg);

//  A RocksDB checkpoint of the open store into dir, which must not exist
//  (store/herald_store_checkpoint.c).  Any thread, while the writer
//  appends: it holds every append that returned before the call.
//  HERALD_ERR_IO with err filled.
herald_err
    herald_store_checkpoint (herald_store_t *self, const char *dir, herald_error_t *err);

//  Delete the meta value key (herald_store_meta_put's), synced.  For a
//  restore that seeds a cluster node (store/herald_store_checkpoint.c).
//  HERALD_ERR_INVALID (read-only, a key too long), HERALD_ERR_IO.
herald_err
    herald_store_meta_delete (herald_store_t *self, const char *key);

//  Back up store into dir: an absolute path that does not exist, or an
//  empty directory, whose parent exists.  Refused with nothing written
//  (HERALD_ERR_INVALID): a relative path, a dir that holds anything.
//  node: the broker's node id, for the manifest.  cancel (may be NULL):
//  set from another thread to give up; the temporary directory is then
//  removed and HERALD_ERR_INTERNAL returned.  On success info (may be
//  NULL) says what the backup holds.  Errors: HERALD_ERR_INVALID,
//  HERALD_ERR_IO (a full disk among them), with err naming the path.
herald_err
    herald_backup_create (herald_store_t *store, const char *dir, const char *node,
                          const volatile bool *cancel, herald_backup_progress_fn *progress,
                          void *arg, herald_backup_info_t *info, herald_error_t *err);

//  Check dir: its manifest (format, its own checksum) and every file it
//  lists (present, its size, its SHA-256), and that store/ holds nothing
//  else.  Reads every byte.  HERALD_OK with info filled; otherwise
//  HERALD_ERR_CORRUPT (a damaged or missing file: err names it),
//  HERALD_ERR_NOT_A_STORE (no manifest: not a backup), HERALD_ERR_INVALID
//  (a format this version does not know), HERALD_ERR_IO.
herald_err
    herald_backup_verify (const char *dir, herald_backup_progress_fn *progress, void *arg,
                          herald_backup_info_t *info, herald_error_t *err);

//  Restore the backup in dir into data_dir, offline: data_dir must not
//  exist or be an empty directory no process holds; its parent is
//  created when missing.  Verifies every checksum first, then copies into
//  a temporary directory beside data_dir (checking each file again as it
//  is copied), syncs, opens the copy as a store and checks its head and
//  digest against the manifest, then:
//  - a standalone broker's backup: records the restore as an accepted
//    loss after the backup's head unless keep_lineage (the seqs after it
//    were given to events the backup does not hold: agents are told, as
//    after herald repair --accept-loss);
//  - a cluster node's backup (a store_uuid or a raft index in the
//    manifest): makes it the seed of a NEW node: the store's identity
//    (store.uuid, hence the raft id) and the bootstrap peers' raft ids
//    (raft.peers) are dropped, so the node started on it takes a new
//    identity, asks its peers, and is added with herald cluster add; the
//    Raft log is not in a backup, and the node applies only the entries
//    after the store's applied index.  Nothing is recorded as lost: the
//    cluster holds what came after.
//  Then it stops the store cleanly and renames the directory into place.
//  Nothing is left at data_dir on failure.
herald_err
    herald_backup_restore (const char *dir, const char *data_dir, bool keep_lineage,
                           herald_backup_progress_fn *progress, void *arg,
                           herald_backup_info_t *info, herald_error_t *err);

#endif
