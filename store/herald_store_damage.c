/*  =========================================================================
    herald_store_damage - a damaged or lost write-ahead log, and the losses
    an operator accepted

    The rest of herald_store.c opens and closes the store; this file holds
    what decides whether what opened is the whole log, and what the store
    says about the times it was not.

    DESIGN

    RocksDB replays its write-ahead log (WAL, the *.log files) on open.
    Its default, point-in-time recovery, keeps the log up to the first
    record it cannot read and says nothing: a truncated, flipped or
    deleted WAL gave a shorter log served as complete (issue 11).  So:

      - The store opens with kTolerateCorruptedTailRecords: a record that
        fails its checksum anywhere stops the open; only an incomplete
        last record (the write in progress when the process died, never
        acknowledged) is dropped.  kAbsoluteConsistency would refuse that
        too, and with it the store after a kill -9 in the middle of a
        large group commit (RocksDB writes a record in 32 KiB fragments,
        with one write() per MB), for a loss of nothing acknowledged.
      - track_and_verify_wals_in_manifest: RocksDB records every closed
        WAL and its synced size in the MANIFEST and refuses to open when
        one is missing or shorter.  Not reachable from the C API's setters,
        so it is set through rocksdb_get_options_from_string.
      - A clean stop (herald_store_destroy) flushes every column family
        and waits: the WAL then holds nothing, and losing it loses nothing.
      - The live WAL is neither size-tracked by RocksDB nor recognisable
        when it is gone.  The store keeps a marker in "default":

            "herald.open" -> "1 N" written and FLUSHED (into a table file)
                                   when a read-write open succeeds; N is
                                   the number of the WAL RocksDB started
                          -> "0"   written and flushed by a clean stop

        A store whose marker says "1 N" was not stopped cleanly, so its
        live WAL may hold acknowledged events; if no WAL numbered N or
        above is left, they are gone, and the open refuses.  (An empty WAL
        from before, which RocksDB may keep, does not count.)  The marker is flushed so that
        it does not live in the WAL it vouches for.
      - A refusal found after RocksDB recovered (and so after RocksDB may
        have rewritten the directory) is latched, so the next start cannot
        pass it by:

            "herald.damage" -> the reason, as printed

        Only `herald repair --accept-loss` (accept_loss) clears it.

      - A live WAL cut short after a kill -9 looks like a crash in the
        middle of its last write, which RocksDB rightly drops.  So the
        broker writes, at most once a second, the head it has acknowledged
        to a file of its own beside RocksDB's (herald_store_mark_acked),
        outside the WAL it vouches for:

            HERALD-ACKED   "HRLDACK1" | head u64 (big-endian) | crc32c u32
                           | 0 u32     one 24-byte record, pwrite + fdatasync

        (under durability async, after syncing the WAL, so that the head
        named is on disk).  An open that recovers a head below it refuses:
        those events were acknowledged and are gone.  This is a check, not
        a counter: head, counts and ts are still recovered from the data.

    What no check can see: a live WAL cut short, after a kill -9, by less
    than what was acknowledged in the last second before it (the marker is
    written once a second, not per commit, to keep an fsync off every
    commit), or inside its last record; nor any damage to a WAL that a
    clean stop emptied (there is nothing in it to lose).

    Accepted losses, in "default" under "meta.losses" (herald_store_meta_*):

        [ { "lineage": 1, "lost_after": 4500, "ts": <ns>, "reason": "..." },
          { "lineage": 2, ... } ]       a MessagePack array, oldest first

    lineage counts them; the broker sends it in $hb, WELCOME, STATUS and
    END, and the list in WELCOME and STATUS, so that agents find out that
    seqs after lost_after were given again to new events.
    =========================================================================
*/

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include "herald_store_priv.h"

#define S_ACKED_FILE    "HERALD-ACKED"     //  the acknowledged head, beside RocksDB's files
#define S_ACKED_MAGIC   "HRLDACK1"
#define S_OPEN_KEY      "herald.open"
#define S_DAMAGE_KEY    "herald.damage"
#define S_LOSSES_META   "losses"

//  ---------------------------------------------------------------------
//  The directory

size_t
herald_store_wal_files (const char *path, char *names, size_t size, uint64_t *newest)
{
    if (names && size)
        names [0] = 0;
    if (newest)
        *newest = 0;
    DIR *dir = opendir (path);
    if (!dir)
        return 0;
    size_t count = 0, used = 0;
    struct dirent *entry;
    while ((entry = readdir (dir))) {
        size_t len = strlen (entry->d_name);
        if (len < 5 || strcmp (entry->d_name + len - 4, ".log") != 0)
            continue;
        count++;
        uint64_t number = strtoull (entry->d_name, NULL, 10);
        if (newest && number > *newest)
            *newest = number;
        if (names && used + len + 3 < size) {
            used += (size_t) snprintf (names + used, size - used, "%s%s",
                                       used? ", ": "", entry->d_name);
        }
    }
    closedir (dir);
    return count;
}

bool
herald_store_locked (const char *path)
{
    char file [4200];
    snprintf (file, sizeof (file), "%s/LOCK", path);
    int fd = open (file, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return false;
    //  RocksDB holds an fcntl write lock on LOCK; F_GETLK asks about it
    //  without taking anything (and works on a read-only descriptor).
    struct flock probe = { .l_type = F_WRLCK, .l_whence = SEEK_SET };
    bool locked = fcntl (fd, F_GETLK, &probe) == 0 && probe.l_type != F_UNLCK;
    close (fd);
    return locked;
}

//  ---------------------------------------------------------------------
//  Options

herald_err
herald_store_wal_options (rocksdb_options_t **options, bool accept_loss,
                          herald_error_t *err)
{
    //  0: kTolerateCorruptedTailRecords; 2: kPointInTimeRecovery (repair)
    rocksdb_options_set_wal_recovery_mode (*options, accept_loss? 2: 0);
    if (accept_loss)
        return HERALD_OK;
    rocksdb_options_t *tracked = rocksdb_options_create ();
    char *rocks_err = NULL;
    rocksdb_get_options_from_string (*options, "track_and_verify_wals_in_manifest=true",
                                     tracked, &rocks_err);
    if (rocks_err) {
        rocksdb_options_destroy (tracked);
        herald_error_set (err, HERALD_ERR_IO, "data_dir", "RocksDB options: %s", rocks_err);
        free (rocks_err);
        return err->code;
    }
    rocksdb_options_destroy (*options);
    *options = tracked;
    return HERALD_OK;
}

//  ---------------------------------------------------------------------
//  Raw keys of "default"

static herald_err
s_get (herald_store_t *self, const char *key, char **value, size_t *len)
{
    char *rocks_err = NULL;
    *value = rocksdb_get_cf (self->db, self->read_options, self->cf [CF_DEFAULT],
                             key, strlen (key), len, &rocks_err);
    if (rocks_err) {
        free (rocks_err);
        return HERALD_ERR_IO;
    }
    return *value? HERALD_OK: HERALD_ERR_NOT_FOUND;
}

static herald_err
s_put (herald_store_t *self, const char *key, const char *value, herald_error_t *err)
{
    rocksdb_writeoptions_t *sync = rocksdb_writeoptions_create ();
    rocksdb_writeoptions_set_sync (sync, 1);
    char *rocks_err = NULL;
    if (value)
        rocksdb_put_cf (self->db, sync, self->cf [CF_DEFAULT], key, strlen (key),
                        value, strlen (value), &rocks_err);
    else
        rocksdb_delete_cf (self->db, sync, self->cf [CF_DEFAULT], key, strlen (key),
                           &rocks_err);
    rocksdb_writeoptions_destroy (sync);
    if (rocks_err) {
        herald_error_set (err, HERALD_ERR_IO, "data_dir", "cannot write to %s: %s",
                          self->path, rocks_err);
        free (rocks_err);
        return err->code;
    }
    return HERALD_OK;
}

//  Flush the given column family, or all when cf < 0, and wait.
static herald_err
s_flush (herald_store_t *self, int only, herald_error_t *err)
{
    rocksdb_flushoptions_t *options = rocksdb_flushoptions_create ();
    rocksdb_flushoptions_set_wait (options, 1);
    char *rocks_err = NULL;
    for (int cf = 0; cf < CF_COUNT && !rocks_err; cf++)
        if (only < 0 || cf == only)
            rocksdb_flush_cf (self->db, options, self->cf [cf], &rocks_err);
    rocksdb_flushoptions_destroy (options);
    if (rocks_err) {
        herald_error_set (err, HERALD_ERR_IO, "data_dir", "cannot flush the store in %s: %s",
                          self->path, rocks_err);
        free (rocks_err);
        return err->code;
    }
    return HERALD_OK;
}

//  ---------------------------------------------------------------------
//  The acknowledged head (HERALD-ACKED)

#define S_ACKED_BYTES   24

static uint32_t
s_crc (const uint8_t *bytes, size_t len)
{
    //  CRC-32C, bitwise: 24 bytes once a second
    uint32_t crc = 0xFFFFFFFFu;
    for (size_t index = 0; index < len; index++) {
        crc ^= bytes [index];
        for (int bit = 0; bit < 8; bit++)
            crc = (crc >> 1) ^ (0x82F63B78u & (0u - (crc & 1u)));
    }
    return ~crc;
}

//  The head the file names: HERALD_OK, HERALD_ERR_NOT_FOUND when there is
//  no file, HERALD_ERR_CORRUPT when it fails its check.
static herald_err
s_acked_read (const char *dir, uint64_t *head)
{
    char path [HERALD_ERROR_MESSAGE_MAX];
    snprintf (path, sizeof (path), "%s/%s", dir, S_ACKED_FILE);
    int fd = open (path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT? HERALD_ERR_NOT_FOUND: HERALD_ERR_IO;
    uint8_t record [S_ACKED_BYTES];
    ssize_t got = pread (fd, record, sizeof (record), 0);
    close (fd);
    if (got != S_ACKED_BYTES || memcmp (record, S_ACKED_MAGIC, 8) != 0)
        return HERALD_ERR_CORRUPT;
    uint32_t crc = 0;
    for (int index = 0; index < 4; index++)
        crc = crc << 8 | record [16 + index];
    if (crc != s_crc (record, 16))
        return HERALD_ERR_CORRUPT;
    uint64_t value = 0;
    for (int index = 0; index < 8; index++)
        value = value << 8 | record [8 + index];
    *head = value;
    return HERALD_OK;
}

//  A write of the acknowledged head that failed: closes fd (when open),
//  removes the half-written new file (when named), and says why.
static herald_err
s_acked_failed (int fd, const char *fresh, const char *path, herald_error_t *err)
{
    int saved = errno;
    if (fd >= 0)
        close (fd);
    if (fresh)
        unlink (fresh);
    return herald_error_set (err, HERALD_ERR_IO, "data_dir", "%s: %s", path,
                             strerror (saved? saved: EIO));
}

herald_err
herald_store_mark_acked (herald_store_t *self, uint64_t head, herald_error_t *err)
{
    assert (self);
    if (self->read_only)
        return HERALD_OK;
    if (self->durability == HERALD_DURABILITY_ASYNC) {
        char *rocks_err = NULL;
        rocksdb_flush_wal (self->db, 1, &rocks_err);
        if (rocks_err) {
            herald_store_rocks_error (rocks_err, err, "cannot sync the write-ahead log");
            free (rocks_err);
            return err->code;
        }
    }
    uint8_t record [S_ACKED_BYTES] = { 0 };
    memcpy (record, S_ACKED_MAGIC, 8);
    for (int index = 0; index < 8; index++)
        record [8 + index] = (uint8_t) (head >> (56 - 8 * index));
    uint32_t crc = s_crc (record, 16);
    for (int index = 0; index < 4; index++)
        record [16 + index] = (uint8_t) (crc >> (24 - 8 * index));
    char path [HERALD_ERROR_MESSAGE_MAX];
    snprintf (path, sizeof (path), "%s/%s", self->path, S_ACKED_FILE);
    //  An existing file is overwritten in place: its block is already
    //  allocated, so a full disk cannot refuse it.  A new one is written
    //  whole beside it and renamed: a write the disk refuses (ENOSPC, a
    //  file size limit) or a crash before the sync leaves no file rather
    //  than a short one, which would fail its check at the next start.
    int fd = open (path, O_WRONLY | O_CLOEXEC);
    if (fd >= 0) {
        if (pwrite (fd, record, sizeof (record), 0) != (ssize_t) sizeof (record)
        ||  fdatasync (fd) != 0)
            return s_acked_failed (fd, NULL, path, err);
        close (fd);
        return HERALD_OK;
    }
    if (errno != ENOENT)
        return s_acked_failed (-1, NULL, path, err);
    char fresh [HERALD_ERROR_MESSAGE_MAX + 8];
    snprintf (fresh, sizeof (fresh), "%s.new", path);
    fd = open (fresh, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0
    ||  pwrite (fd, record, sizeof (record), 0) != (ssize_t) sizeof (record)
    ||  fdatasync (fd) != 0)
        return s_acked_failed (fd, fresh, path, err);
    close (fd);
    if (rename (fresh, path) != 0)
        return s_acked_failed (-1, fresh, path, err);
    //  The new name must be durable too
    int dir = open (self->path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dir >= 0) {
        fsync (dir);
        close (dir);
    }
    return HERALD_OK;
}

//  ---------------------------------------------------------------------
//  Opening and closing

herald_err
herald_store_check_wal (herald_store_t *self, uint64_t newest_wal, herald_error_t *err)
{
    char *value;
    size_t len;
    if (!self->accept_loss) {
        herald_err rc = s_get (self, S_DAMAGE_KEY, &value, &len);
        if (rc == HERALD_OK) {
            herald_error_set (err, HERALD_ERR_CORRUPT, "data_dir", "%.*s", (int) len, value);
            free (value);
            return err->code;
        }
        if (rc != HERALD_ERR_NOT_FOUND)
            return herald_error_set (err, HERALD_ERR_IO, "data_dir", "cannot read %s",
                                     self->path);
        //  "1 N": running since RocksDB started WAL number N
        bool unclean = false;
        uint64_t live = 0;
        if (s_get (self, S_OPEN_KEY, &value, &len) == HERALD_OK) {
            char text [32] = "";
            memcpy (text, value, len < sizeof (text) - 1? len: sizeof (text) - 1);
            unclean = text [0] == '1';
            if (unclean && text [1] == ' ')
                live = strtoull (text + 2, NULL, 10);
            free (value);
        }
        if (unclean && (newest_wal == 0 || newest_wal < live)) {
            herald_error_set (err, HERALD_ERR_CORRUPT, "data_dir",
                "%s: write-ahead log deleted after an unclean stop; events after seq %"
                PRIu64 " may be lost", self->path, herald_store_head (self));
            //  RocksDB made a new, empty WAL: latch the finding
            if (!self->read_only) {
                herald_error_t ignored;
                const char *reason = err->message + strlen (err->field) + 2;
                s_put (self, S_DAMAGE_KEY, reason, &ignored);
                s_flush (self, CF_DEFAULT, &ignored);
            }
            return err->code;
        }
    }
    if (!self->accept_loss) {
        uint64_t acked = 0;
        herald_err rc = s_acked_read (self->path, &acked);
        if (rc == HERALD_ERR_CORRUPT || rc == HERALD_ERR_IO)
            return herald_error_set (err, rc, "data_dir", "%s/%s: %s", self->path,
                                     S_ACKED_FILE, rc == HERALD_ERR_IO? "cannot be read"
                                     : "fails its check (remove it only if the store is known "
                                       "to be whole)");
        if (rc == HERALD_OK && acked > herald_store_head (self)) {
            char names [512] = "";
            uint64_t newest = 0;
            herald_store_wal_files (self->path, names, sizeof (names), &newest);
            herald_error_set (err, HERALD_ERR_CORRUPT, "data_dir",
                "%s: the log ends at seq %" PRIu64 " but seq %" PRIu64 " had been "
                "acknowledged: events %" PRIu64 "..%" PRIu64 " are lost (write-ahead log %s "
                "cut short or damaged)", self->path, herald_store_head (self), acked,
                herald_store_head (self) + 1, acked, *names? names: "missing");
            if (!self->read_only) {
                herald_error_t ignored;
                const char *reason = err->message + strlen (err->field) + 2;
                s_put (self, S_DAMAGE_KEY, reason, &ignored);
                s_flush (self, CF_DEFAULT, &ignored);
            }
            return err->code;
        }
    }
    if (self->read_only)
        return HERALD_OK;
    //  The WAL RocksDB just started is the newest; a later start of the
    //  store must find it, or a newer one, unless stopped cleanly.
    uint64_t live;
    herald_store_wal_files (self->path, NULL, 0, &live);
    char text [32];
    snprintf (text, sizeof (text), "1 %" PRIu64, live);
    if (s_put (self, S_OPEN_KEY, text, err) != HERALD_OK
    ||  s_flush (self, CF_DEFAULT, err) != HERALD_OK)
        return err->code;
    self->running = true;
    return HERALD_OK;
}

herald_err
herald_store_stop (herald_store_t *self, herald_error_t *err)
{
    assert (self);
    if (!self->running)
        return HERALD_OK;
    //  Everything into table files first; only then say so.  A failure
    //  leaves the marker at "1": the next open then treats the WAL as
    //  holding acknowledged events, which it may.
    if (s_flush (self, -1, err) != HERALD_OK
    ||  s_put (self, S_OPEN_KEY, "0", err) != HERALD_OK
    ||  s_flush (self, CF_DEFAULT, err) != HERALD_OK)
        return err->code;
    self->running = false;
    return HERALD_OK;
}

//  ---------------------------------------------------------------------
//  Accepted losses

void
herald_store_losses_free (herald_store_t *self)
{
    for (size_t index = 0; index < self->loss_count; index++)
        free (self->loss_reasons [index]);
    free (self->loss_reasons);
    free (self->losses);
    self->loss_reasons = NULL;
    self->losses = NULL;
    self->loss_count = 0;
}

herald_err
herald_store_losses_load (herald_store_t *self, herald_error_t *err)
{
    herald_store_losses_free (self);
    char *value;
    size_t len;
    herald_err rc = herald_store_meta_get (self, S_LOSSES_META, &value, &len);
    if (rc == HERALD_ERR_NOT_FOUND)
        return HERALD_OK;
    if (rc != HERALD_OK)
        return herald_error_set (err, rc, "data_dir", "%s: cannot read the loss history",
                                 self->path);
    msgpack_zone zone;
    msgpack_zone_init (&zone, 1024);
    msgpack_object root;
    bool ok = msgpack_unpack (value, len, NULL, &zone, &root) == MSGPACK_UNPACK_SUCCESS
           && root.type == MSGPACK_OBJECT_ARRAY;
    size_t count = ok? root.via.array.size: 0;
    if (ok && count) {
        self->losses = calloc (count, sizeof (herald_loss_t));
        self->loss_reasons = calloc (count, sizeof (char *));
        ok = self->losses && self->loss_reasons;
    }
    for (size_t index = 0; ok && index < count; index++) {
        const msgpack_object *entry = &root.via.array.ptr [index];
        herald_loss_t *loss = &self->losses [index];
        ok = entry->type == MSGPACK_OBJECT_MAP
          && herald_store_map_uint (entry, "lineage", &loss->lineage)
          && herald_store_map_uint (entry, "lost_after", &loss->lost_after)
          && herald_store_map_uint (entry, "ts", &loss->ts)
          && loss->lineage == index + 1;
        const msgpack_object *reason = ok? herald_store_map_get (entry, "reason"): NULL;
        if (reason && reason->type == MSGPACK_OBJECT_STR)
            self->loss_reasons [index] = strndup (reason->via.str.ptr, reason->via.str.size);
        else
            self->loss_reasons [index] = strdup ("");
        ok = ok && self->loss_reasons [index];
        self->loss_count = index + 1;
    }
    msgpack_zone_destroy (&zone);
    free (value);
    if (!ok) {
        herald_store_losses_free (self);
        return herald_error_set (err, HERALD_ERR_CORRUPT, "data_dir",
                                 "%s: the loss history (meta.losses) is damaged", self->path);
    }
    return HERALD_OK;
}

uint64_t
herald_store_lineage (herald_store_t *self)
{
    assert (self);
    return self->loss_count;
}

const herald_loss_t *
herald_store_losses (herald_store_t *self, size_t *count)
{
    assert (self);
    *count = self->loss_count;
    return self->losses;
}

const char *
herald_store_loss_reason (herald_store_t *self, size_t index)
{
    assert (self);
    return index < self->loss_count? self->loss_reasons [index]: NULL;
}

herald_err
herald_store_accept_loss (herald_store_t *self, const char *reason, herald_error_t *err)
{
    assert (self);
    if (self->read_only)
        return herald_error_set (err, HERALD_ERR_INVALID, "data_dir",
                                 "the store is open read-only");
    struct timespec now;
    clock_gettime (CLOCK_REALTIME, &now);
    uint64_t ts = (uint64_t) now.tv_sec * 1000000000ULL + (uint64_t) now.tv_nsec;
    msgpack_sbuffer buffer;
    msgpack_sbuffer_init (&buffer);
    msgpack_packer pk;
    msgpack_packer_init (&pk, &buffer, msgpack_sbuffer_write);
    int rc = msgpack_pack_array (&pk, self->loss_count + 1);
    for (size_t index = 0; index <= self->loss_count; index++) {
        bool new_one = index == self->loss_count;
        const char *text = new_one? reason: self->loss_reasons [index];
        size_t text_len = strlen (text);
        rc |= msgpack_pack_map (&pk, 4);
        rc |= msgpack_pack_str_with_body (&pk, "lineage", 7)
           |  msgpack_pack_uint64 (&pk, index + 1);
        rc |= msgpack_pack_str_with_body (&pk, "lost_after", 10)
           |  msgpack_pack_uint64 (&pk, new_one? herald_store_head (self)
                                               : self->losses [index].lost_after);
        rc |= msgpack_pack_str_with_body (&pk, "ts", 2)
           |  msgpack_pack_uint64 (&pk, new_one? ts: self->losses [index].ts);
        rc |= msgpack_pack_str_with_body (&pk, "reason", 6)
           |  msgpack_pack_str_with_body (&pk, text, text_len);
    }
    herald_err code = rc? HERALD_ERR_NOMEM
                        : herald_store_meta_put (self, S_LOSSES_META, buffer.data, buffer.size);
    msgpack_sbuffer_destroy (&buffer);
    if (code != HERALD_OK)
        return herald_error_set (err, code, "data_dir", "%s: cannot record the loss",
                                 self->path);
    //  The history is written: the latched damage is now accepted, and the
    //  acknowledged head that no longer holds goes with it.
    if (s_put (self, S_DAMAGE_KEY, NULL, err) != HERALD_OK
    ||  s_flush (self, -1, err) != HERALD_OK
    ||  herald_store_mark_acked (self, herald_store_head (self), err) != HERALD_OK)
        return err->code;
    return herald_store_losses_load (self, err);
}
