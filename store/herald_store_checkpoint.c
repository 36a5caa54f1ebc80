/*  =========================================================================
    herald_store_checkpoint - a consistent copy of a running store

    RocksDB's checkpoint: the table files hard-linked (copied when dir is
    on another filesystem), MANIFEST, OPTIONS and the write-ahead logs
    copied up to their length at one moment.  Every append is one
    WriteBatch that carries its events, their index entries, the head and
    the digest, so the checkpoint holds the log as it was between two
    appends: every append that had returned before the call (so every
    event acknowledged before it) and none half-written.  It may run on
    any thread while the writer appends; the memtables are flushed first
    so that the copied WAL is short.  herald_backup.c builds backups on it.
    =========================================================================
*/

#include "herald_store_priv.h"
#include "herald_backup.h"

herald_err
herald_store_checkpoint (herald_store_t *self, const char *dir, herald_error_t *err)
{
    assert (self);
    assert (dir);
    char *rocks_err = NULL;
    rocksdb_checkpoint_t *checkpoint = rocksdb_checkpoint_object_create (self->db, &rocks_err);
    if (!rocks_err)
        //  log_size_for_flush 0: always flush the memtables first
        rocksdb_checkpoint_create (checkpoint, dir, 0, &rocks_err);
    if (checkpoint)
        rocksdb_checkpoint_object_destroy (checkpoint);
    if (rocks_err) {
        herald_store_rocks_error (rocks_err, err, "cannot take a checkpoint");
        free (rocks_err);
        return err? err->code: HERALD_ERR_IO;
    }
    return HERALD_OK;
}

//  The meta keys' layout is herald_store.c's: "meta." and the name, in
//  "default".
herald_err
herald_store_meta_delete (herald_store_t *self, const char *key)
{
    assert (self);
    char name [256];
    int len = snprintf (name, sizeof (name), "meta.%s", key);
    if (len < 0 || (size_t) len >= sizeof (name) || self->read_only)
        return HERALD_ERR_INVALID;
    rocksdb_writeoptions_t *sync = rocksdb_writeoptions_create ();
    rocksdb_writeoptions_set_sync (sync, 1);
    char *rocks_err = NULL;
    rocksdb_delete_cf (self->db, sync, self->cf [CF_DEFAULT], name, (size_t) len, &rocks_err);
    rocksdb_writeoptions_destroy (sync);
    if (rocks_err) {
        free (rocks_err);
        return HERALD_ERR_IO;
    }
    return HERALD_OK;
}
