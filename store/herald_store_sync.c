/*  =========================================================================
    herald_store_sync - sync the store's WAL on demand

    Under durability async (a cluster node's: the Raft log is its WAL) the
    store's writes reach the OS, not the disk.  A Raft snapshot must only
    describe state that survives a power loss, because libraft drops the
    log below it; herald_store_sync makes it so before the snapshot is
    taken.  Kept apart from herald_store_mark_acked, which also writes the
    acknowledged-head marker a cluster node must not have.
    =========================================================================
*/

#include "herald_store_priv.h"

herald_err
herald_store_sync (herald_store_t *self, herald_error_t *err)
{
    assert (self);
    if (self->read_only)
        return HERALD_OK;
    char *rocks_err = NULL;
    rocksdb_flush_wal (self->db, 1, &rocks_err);
    if (rocks_err) {
        herald_store_rocks_error (rocks_err, err, "cannot sync the write-ahead log");
        free (rocks_err);
        return err->code;
    }
    return HERALD_OK;
}
