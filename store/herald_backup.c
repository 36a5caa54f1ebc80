/*  =========================================================================
    herald_backup - online backups of a store, checked and restored

    The manifest, herald-backup.manifest, is text, one "key value" per
    line, in this order:

        herald-backup 1                 the format
        node herald-1a2b3c4d5e6f        the broker's node id ("-": none)
        store_uuid 0190…                a cluster node's store identity ("-")
        lineage 0
        head 1000000                    the last seq, its ts, the counts
        head_ts 1796…
        events 1000000
        topics 12
        digest 1234…                    herald_store_digest at head
        raft_applied 0
        created 1796…                   Unix ns
        file 000012.sst 4123456 <sha256 hex>     one per file of store/
        files 7
        bytes 123456789
        sha256 <hex>                    of every byte before this line

    A reader refuses a manifest whose last line does not match, before it
    believes any other line.  Unknown keys before it are skipped (a later
    format can add some); a format above HERALD_BACKUP_FORMAT is refused.
    =========================================================================
*/

#include "herald_backup_priv.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

//  ---------------------------------------------------------------------
//  Create

herald_err
herald_backup_create (herald_store_t *store, const char *dir, const char *node,
                      const volatile bool *cancel, herald_backup_progress_fn *progress_fn,
                      void *arg, herald_backup_info_t *info_out, herald_error_t *err)
{
    assert (store);
    assert (dir);
    if (sodium_init () < 0)
        return herald_error_set (err, HERALD_ERR_INTERNAL, "", "libsodium failed to start");
    if (*dir != '/')
        return herald_error_set (err, HERALD_ERR_INVALID, "", "%s is not an absolute path: "
                                 "give the directory on the broker's host as /PATH", dir);
    if (strlen (dir) > PATH_MAX - 64)
        return herald_error_set (err, HERALD_ERR_INVALID, "", "the path is too long");
    if (herald_backup_vacant (dir, "backup directory", err) < 0)
        return err->code;
    char parent [PATH_MAX], name [PATH_MAX];
    herald_backup_split (dir, parent, name, sizeof parent);
    struct stat info;
    if (stat (parent, &info) != 0 || !S_ISDIR (info.st_mode))
        return herald_error_set (err, HERALD_ERR_INVALID, "", "%s: its parent directory %s "
                                 "does not exist", dir, parent);
    //  Not inside the store itself: RocksDB would find it among its files
    char real_parent [PATH_MAX], real_store [PATH_MAX];
    if (realpath (parent, real_parent) && realpath (herald_store_path (store), real_store)) {
        size_t len = strlen (real_store);
        if (strncmp (real_parent, real_store, len) == 0
        &&  (real_parent [len] == 0 || real_parent [len] == '/'))
            return herald_error_set (err, HERALD_ERR_INVALID, "", "%s is inside the data "
                                     "directory %s: give a directory outside it", dir,
                                     real_store);
    }
    //  Built under a name no reader takes for a backup, renamed at the end
    char temp [PATH_MAX];
    herald_backup_join (temp, sizeof temp, "%s/.%s.partial-XXXXXX", parent, name);
    if (!mkdtemp (temp))
        return herald_backup_io_error (err, "cannot create", temp);
    char store_dir [PATH_MAX], path [PATH_MAX];
    herald_backup_join (store_dir, sizeof store_dir, "%s/%s", temp, HERALD_BACKUP_STORE);
    herald_backup_manifest_t manifest = { .info = { .format = HERALD_BACKUP_FORMAT } };
    herald_backup_info_t *out = &manifest.info;
    herald_backup_meter_t progress = { progress_fn, arg, "checkpoint", 0, 0, 0 };
    struct timespec now;
    clock_gettime (CLOCK_REALTIME, &now);
    out->created = (uint64_t) now.tv_sec * 1000000000ull + (uint64_t) now.tv_nsec;
    snprintf (out->node, sizeof out->node, "%s", node? node: "");

    herald_err rc = herald_store_checkpoint (store, store_dir, err);
    if (rc == HERALD_OK)
        herald_backup_meter (&progress, 0, true);
    //  What it holds, read from the checkpoint itself (never from the
    //  running store, which has moved on).  The checkpoint is a store that
    //  was running: its clean-stop marker says so, and the WAL that marker
    //  names was flushed away before the copy (herald_store_damage.c would
    //  take that for a lost WAL).  So it is opened once without that check,
    //  its copied WAL (the appends after the flush) recovered, and stopped
    //  cleanly, which writes every table file and clears the marker; then
    //  opened read-only, as heraldd and herald inspect open a store, to
    //  prove that it opens and holds what it held.
    if (rc == HERALD_OK) {
        herald_store_options_t seal = { .accept_loss = true };
        herald_store_t *copy = herald_store_open (store_dir, &seal, err);
        if (!copy)
            rc = err->code;
        else {
            out->head = herald_store_head (copy);
            out->head_ts = herald_store_last_ts (copy);
            out->events = herald_store_event_count (copy);
            out->topics = herald_store_topic_count (copy);
            out->lineage = herald_store_lineage (copy);
            out->digest = herald_store_digest (copy);
            out->raft_applied = herald_store_applied_index (copy);
            char *value = NULL;
            size_t len = 0;
            if (herald_store_meta_get (copy, "store.uuid", &value, &len) == HERALD_OK) {
                snprintf (out->store_uuid, sizeof out->store_uuid, "%.*s", (int) len, value);
                free (value);
            }
            if (!*out->node && herald_store_meta_get (copy, "node", &value, &len) == HERALD_OK) {
                snprintf (out->node, sizeof out->node, "%.*s", (int) len, value);
                free (value);
            }
            rc = herald_store_stop (copy, err);
            herald_store_destroy (&copy);
        }
    }
    if (rc == HERALD_OK) {
        herald_store_options_t as_broker = { .read_only = true };
        herald_store_t *copy = herald_store_open (store_dir, &as_broker, err);
        if (!copy)
            rc = err->code;
        else
        if (herald_store_head (copy) != out->head || herald_store_digest (copy) != out->digest)
            rc = herald_error_set (err, HERALD_ERR_INTERNAL, "", "%s: the checkpoint reads "
                                   "head %" PRIu64 " once stopped, %" PRIu64 " before",
                                   store_dir, herald_store_head (copy), out->head);
        herald_store_destroy (&copy);
    }
    //  A name or id with a space would not read back
    if (rc == HERALD_OK && (strpbrk (out->node, " \n") || strpbrk (out->store_uuid, " \n")))
        rc = herald_error_set (err, HERALD_ERR_INVALID, "", "the node id '%s' has a space",
                               out->node);
    if (rc == HERALD_OK)
        rc = herald_backup_list (store_dir, &manifest.files, &manifest.count, err);
    progress.phase = "checksums";
    for (size_t index = 0; rc == HERALD_OK && index < manifest.count; index++)
        progress.total += manifest.files [index].size;
    for (size_t index = 0; rc == HERALD_OK && index < manifest.count; index++) {
        herald_backup_file_t *file = &manifest.files [index];
        herald_backup_join (path, sizeof path, "%s/%s", store_dir, file->name);
        //  A hard-linked table file is synced already; a copied one (the
        //  WAL, MANIFEST, OPTIONS) is synced here
        int fd = open (path, O_RDONLY | O_CLOEXEC);
        if (fd < 0 || fsync (fd) != 0)
            rc = herald_backup_io_error (err, "cannot sync", path);
        if (fd >= 0)
            close (fd);
        if (rc == HERALD_OK)
            rc = herald_backup_hash_file (path, -1, NULL, cancel, &progress, &file->size,
                                          file->sha256, err);
        out->bytes += file->size;
    }
    if (rc == HERALD_OK)
        herald_backup_meter (&progress, 0, true);
    out->files = manifest.count;
    if (rc == HERALD_OK)
        rc = herald_backup_fsync (store_dir, err);
    if (rc == HERALD_OK) {
        herald_backup_join (path, sizeof path, "%s/%s", temp, HERALD_BACKUP_MANIFEST);
        rc = herald_backup_manifest_write (path, &manifest, err);
    }
    if (rc == HERALD_OK)
        rc = herald_backup_fsync (temp, err);
    if (rc == HERALD_OK && cancel && *cancel)
        rc = herald_error_set (err, HERALD_ERR_INTERNAL, "", "the backup was cancelled (the "
                               "broker is stopping)");
    //  The backup appears whole or not at all (rename replaces an empty
    //  directory; one that was filled meanwhile makes it fail)
    if (rc == HERALD_OK && rename (temp, dir) != 0)
        rc = herald_backup_io_error (err, "cannot rename the finished backup to", dir);
    if (rc == HERALD_OK)
        rc = herald_backup_fsync (parent, err);
    else
        herald_backup_remove_tree (temp);
    if (rc == HERALD_OK && info_out)
        *info_out = manifest.info;
    free (manifest.files);
    return rc;
}

//  ---------------------------------------------------------------------
//  Verify

//  Check every file of manifest in dir/store (and copy each into
//  copy_dir when not NULL, synced), and that store/ holds nothing else.
static herald_err
s_check_files (const char *dir, const herald_backup_manifest_t *manifest, const char *copy_dir,
               herald_backup_meter_t *progress, herald_error_t *err)
{
    char store_dir [PATH_MAX];
    herald_backup_join (store_dir, sizeof store_dir, "%s/%s", dir, HERALD_BACKUP_STORE);
    herald_backup_file_t *present = NULL;
    size_t count = 0;
    herald_err rc = herald_backup_list (store_dir, &present, &count, err);
    //  Both lists are sorted: a walk finds what is missing or extra
    for (size_t listed = 0, found = 0; rc == HERALD_OK && (listed < manifest->count
                                                          || found < count); ) {
        int order = listed == manifest->count? 1: found == count? -1
                  : strcmp (manifest->files [listed].name, present [found].name);
        if (order < 0)
            rc = herald_error_set (err, HERALD_ERR_CORRUPT, "", "%s/%s is missing",
                                   store_dir, manifest->files [listed].name);
        else
        if (order > 0)
            rc = herald_error_set (err, HERALD_ERR_CORRUPT, "", "%s/%s is not in the "
                                   "manifest", store_dir, present [found].name);
        else
        if (present [found].size != manifest->files [listed].size)
            rc = herald_error_set (err, HERALD_ERR_CORRUPT, "", "%s/%s is damaged: %" PRIu64
                                   " bytes, the manifest says %" PRIu64, store_dir,
                                   present [found].name, present [found].size,
                                   manifest->files [listed].size);
        listed++, found++;
    }
    free (present);
    for (size_t index = 0; rc == HERALD_OK && index < manifest->count; index++) {
        const herald_backup_file_t *file = &manifest->files [index];
        char path [PATH_MAX], out_path [PATH_MAX] = "";
        herald_backup_join (path, sizeof path, "%s/%s", store_dir, file->name);
        int out_fd = -1;
        if (copy_dir) {
            herald_backup_join (out_path, sizeof out_path, "%s/%s", copy_dir, file->name);
            out_fd = open (out_path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
            if (out_fd < 0) {
                rc = herald_backup_io_error (err, "cannot create", out_path);
                break;
            }
        }
        uint64_t size = 0;
        char sha256 [65];
        rc = herald_backup_hash_file (path, out_fd, out_path, NULL, progress, &size, sha256, err);
        if (out_fd >= 0)
            close (out_fd);
        if (rc == HERALD_OK && (size != file->size || strcmp (sha256, file->sha256) != 0))
            rc = herald_error_set (err, HERALD_ERR_CORRUPT, "", "%s is damaged: its SHA-256 "
                                   "does not match the manifest's", path);
    }
    if (rc == HERALD_OK)
        herald_backup_meter (progress, 0, true);
    return rc;
}

herald_err
herald_backup_verify (const char *dir, herald_backup_progress_fn *progress_fn, void *arg,
                      herald_backup_info_t *info, herald_error_t *err)
{
    assert (dir);
    if (sodium_init () < 0)
        return herald_error_set (err, HERALD_ERR_INTERNAL, "", "libsodium failed to start");
    herald_backup_manifest_t manifest;
    herald_err rc = herald_backup_manifest_read (dir, &manifest, err);
    if (rc != HERALD_OK)
        return rc;
    herald_backup_meter_t progress = { progress_fn, arg, "verify", 0, manifest.info.bytes, 0 };
    rc = s_check_files (dir, &manifest, NULL, &progress, err);
    if (rc == HERALD_OK && info)
        *info = manifest.info;
    free (manifest.files);
    return rc;
}

//  ---------------------------------------------------------------------
//  Restore

static herald_err
s_mkdirs (const char *path, herald_error_t *err)
{
    char copy [PATH_MAX];
    snprintf (copy, sizeof copy, "%s", path);
    for (char *at = copy + 1; *at; at++)
        if (*at == '/') {
            *at = 0;
            if (mkdir (copy, 0755) != 0 && errno != EEXIST)
                return herald_backup_io_error (err, "cannot create", copy);
            *at = '/';
        }
    if (mkdir (copy, 0755) != 0 && errno != EEXIST)
        return herald_backup_io_error (err, "cannot create", copy);
    return HERALD_OK;
}

herald_err
herald_backup_restore (const char *dir, const char *data_dir, bool keep_lineage,
                       herald_backup_progress_fn *progress_fn, void *arg,
                       herald_backup_info_t *info, herald_error_t *err)
{
    assert (dir);
    assert (data_dir);
    if (sodium_init () < 0)
        return herald_error_set (err, HERALD_ERR_INTERNAL, "", "libsodium failed to start");
    if (strlen (data_dir) > PATH_MAX - 64 || strlen (dir) > PATH_MAX - 64)
        return herald_error_set (err, HERALD_ERR_INVALID, "", "the path is too long");
    //  The target first: refusing it costs nothing, verifying reads it all
    struct stat status;
    if (stat (data_dir, &status) == 0 && S_ISDIR (status.st_mode)
    &&  herald_store_locked (data_dir))
        return herald_error_set (err, HERALD_ERR_LOCKED, "", "data directory %s is in use by "
                                 "another process (a running broker): stop it, and restore "
                                 "into a new or an empty directory", data_dir);
    if (herald_backup_vacant (data_dir, "data directory", err) < 0)
        return err->code;
    herald_backup_manifest_t manifest;
    herald_err rc = herald_backup_manifest_read (dir, &manifest, err);
    if (rc != HERALD_OK)
        return rc;
    herald_backup_meter_t progress = { progress_fn, arg, "verify", 0, manifest.info.bytes, 0 };
    rc = s_check_files (dir, &manifest, NULL, &progress, err);
    if (rc != HERALD_OK) {
        free (manifest.files);
        return rc;
    }
    char parent [PATH_MAX], name [PATH_MAX], temp [PATH_MAX];
    herald_backup_split (data_dir, parent, name, sizeof parent);
    rc = s_mkdirs (parent, err);
    herald_backup_join (temp, sizeof temp, "%s/.%s.restore-XXXXXX", parent, name);
    if (rc == HERALD_OK && !mkdtemp (temp))
        rc = herald_backup_io_error (err, "cannot create", temp);
    if (rc != HERALD_OK) {
        free (manifest.files);
        return rc;
    }
    //  Copied and checked again on the way: the backup may have changed
    //  since it was verified
    progress = (herald_backup_meter_t) { progress_fn, arg, "copy", 0, manifest.info.bytes, 0 };
    rc = s_check_files (dir, &manifest, temp, &progress, err);
    if (rc == HERALD_OK)
        rc = herald_backup_fsync (temp, err);
    //  Open it as the broker would, and check it is what the manifest says
    if (rc == HERALD_OK) {
        progress = (herald_backup_meter_t) { progress_fn, arg, "open", 0, 0, 0 };
        herald_store_t *store = herald_store_open (temp, NULL, err);
        if (!store)
            rc = err->code;
        else
        if (herald_store_head (store) != manifest.info.head
        ||  herald_store_digest (store) != manifest.info.digest
        ||  herald_store_lineage (store) != manifest.info.lineage)
            rc = herald_error_set (err, HERALD_ERR_CORRUPT, "", "%s: the restored store has "
                                   "head %" PRIu64 " (digest %" PRIu64 ", lineage %" PRIu64 "), "
                                   "the manifest says head %" PRIu64 " (digest %" PRIu64
                                   ", lineage %" PRIu64 ")", dir, herald_store_head (store),
                                   herald_store_digest (store), herald_store_lineage (store),
                                   manifest.info.head, manifest.info.digest,
                                   manifest.info.lineage);
        bool seed = *manifest.info.store_uuid || manifest.info.raft_applied;
        if (rc == HERALD_OK && seed)
            if (herald_store_meta_delete (store, "store.uuid") != HERALD_OK
            ||  herald_store_meta_delete (store, "raft.peers") != HERALD_OK)
                rc = herald_error_set (err, HERALD_ERR_IO, "", "%s: cannot drop the cluster "
                                       "node's identity from the restored store", temp);
        if (rc == HERALD_OK && !seed && !keep_lineage) {
            char reason [PATH_MAX + 128], taken [32] = "?";
            time_t seconds = (time_t) (manifest.info.created / 1000000000ull);
            struct tm utc;
            if (gmtime_r (&seconds, &utc))
                strftime (taken, sizeof taken, "%Y-%m-%dT%H:%M:%SZ", &utc);
            snprintf (reason, sizeof reason, "restored from the backup %s (head %" PRIu64
                      ", taken %s)", dir, manifest.info.head, taken);
            rc = herald_store_accept_loss (store, reason, err);
        }
        if (store) {
            herald_error_t stop_err = { 0 };
            if (herald_store_stop (store, &stop_err) != HERALD_OK && rc == HERALD_OK) {
                *err = stop_err;
                rc = stop_err.code;
            }
            herald_store_destroy (&store);
        }
        herald_backup_meter (&progress, 0, true);
    }
    //  Into place: rename replaces an empty directory
    if (rc == HERALD_OK && rename (temp, data_dir) != 0)
        rc = herald_backup_io_error (err, "cannot rename the restored store to", data_dir);
    if (rc == HERALD_OK)
        rc = herald_backup_fsync (parent, err);
    else
        herald_backup_remove_tree (temp);
    if (rc == HERALD_OK && info)
        *info = manifest.info;
    free (manifest.files);
    return rc;
}
