/*  =========================================================================
    herald_store - the event log on RocksDB: open, recover, counters, get

    Appending lives in herald_store_append.c, scans in herald_scan.c.

    DESIGN

    One RocksDB database with five column families; their key layouts are
    drawn in herald_store_priv.h.  Opening refuses what is not ours before
    RocksDB may write a byte: a non-empty directory without a database, a
    database without Herald's column families or format marker.  RocksDB's
    own LOCK file keeps a second process out.

    Counters are never stored: head ends the last run of "events", the
    first seq is its first key, the topic count the number of keys in "topics", and
    the last ts is read from the head event.  A crash can therefore never
    leave a counter that disagrees with the data.  The two exceptions, the
    log digest and the applied raft index, are written in the WriteBatch
    of the events they describe (herald_store_cluster.c).

    ERRORS (the store's part of Herald's one convention, herald_err and
    herald_error_t): every function that reads RocksDB can fail and says
    so; none turns a failure into an answer ("not found", "version 0",
    "the end of the log").  HERALD_ERR_IO: RocksDB refused (a failed Get,
    an iterator that stopped on an error status, such as a table block
    whose checksum does not match); the message names what was being read
    and carries RocksDB's status.  HERALD_ERR_CORRUPT: RocksDB returned
    bytes that fail Herald's own checks (a run of the wrong shape, a hole
    in the log).  HERALD_ERR_NOT_FOUND: the data itself says "none".  An
    iterator that is not valid has either run out of keys or failed:
    herald_store_iter_error tells which, and every loop asks it.
    =========================================================================
*/

#include <assert.h>
#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include "herald_store_priv.h"

static const char *s_cf_names [CF_COUNT] = {
    "default", "events", "ids", "streams", "topics"
};

#define WRITE_BUFFER_MB_DEFAULT 64
#define BLOCK_CACHE_BYTES       (128u << 20)
#define MAX_TOTAL_WAL_BYTES     (256u << 20)
#define LOG_FILE_BYTES          (1u << 20)  //  RocksDB's LOG rolls at this size
#define LOG_FILES_KEPT          4           //  and keeps this many old ones

//  ---------------------------------------------------------------------
//  Opening

//  mkdir -p
static int
s_make_dirs (const char *path)
{
    char buffer [4096];
    size_t len = strlen (path);
    if (len == 0 || len >= sizeof (buffer)) {
        errno = ENAMETOOLONG;
        return -1;
    }
    memcpy (buffer, path, len + 1);
    for (char *slash = buffer + 1; *slash; slash++) {
        if (*slash == '/') {
            *slash = 0;
            if (mkdir (buffer, 0755) != 0 && errno != EEXIST)
                return -1;
            *slash = '/';
        }
    }
    if (mkdir (buffer, 0755) != 0 && errno != EEXIST)
        return -1;
    return 0;
}

//  True when path has an entry called name.
static bool
s_has_file (const char *path, const char *name)
{
    char file [4200];
    snprintf (file, sizeof (file), "%s/%s", path, name);
    struct stat info;
    return stat (file, &info) == 0;
}

static bool
s_dir_is_empty (const char *path)
{
    DIR *dir = opendir (path);
    if (!dir)
        return false;
    struct dirent *entry;
    bool empty = true;
    while ((entry = readdir (dir))) {
        if (strcmp (entry->d_name, ".") && strcmp (entry->d_name, "..")) {
            empty = false;
            break;
        }
    }
    closedir (dir);
    return empty;
}

//  True when path holds a file RocksDB makes: a store that lost its
//  CURRENT file is damaged, not "something else".
static bool
s_has_rocksdb_files (const char *path)
{
    DIR *dir = opendir (path);
    if (!dir)
        return false;
    struct dirent *entry;
    bool found = false;
    while (!found && (entry = readdir (dir))) {
        size_t len = strlen (entry->d_name);
        found = strncmp (entry->d_name, "MANIFEST-", 9) == 0
             || strcmp (entry->d_name, "IDENTITY") == 0
             || (len > 4 && (strcmp (entry->d_name + len - 4, ".sst") == 0
                          || strcmp (entry->d_name + len - 4, ".log") == 0));
    }
    closedir (dir);
    return found;
}

//  Refuse a directory that holds anything but a Herald store, before
//  RocksDB is allowed to create files in it.  Sets *existing when a store
//  is already there.
static herald_err
s_check_directory (const char *path, rocksdb_options_t *options, bool *existing,
                   herald_error_t *err)
{
    *existing = false;
    if (s_make_dirs (path) != 0)
        return herald_error_set (err, HERALD_ERR_IO, "data_dir",
            "cannot create data directory %s: %s", path, strerror (errno));
    struct stat info;
    if (stat (path, &info) != 0 || !S_ISDIR (info.st_mode))
        return herald_error_set (err, HERALD_ERR_NOT_A_STORE, "data_dir",
            "%s is not a directory", path);
    if (!s_has_file (path, "CURRENT")) {
        if (s_dir_is_empty (path))
            return HERALD_OK;
        if (s_has_rocksdb_files (path))
            return herald_error_set (err, HERALD_ERR_CORRUPT, "data_dir",
                "%s: RocksDB files but no CURRENT file: the store is damaged", path);
        return herald_error_set (err, HERALD_ERR_NOT_A_STORE, "data_dir",
            "%s is not empty and holds no Herald store; refusing to write into it", path);
    }
    char *rocks_err = NULL;
    size_t count = 0;
    char **names = rocksdb_list_column_families (options, path, &count, &rocks_err);
    if (rocks_err) {
        //  CURRENT is there: a RocksDB store whose MANIFEST cannot be read
        herald_error_set (err, HERALD_ERR_CORRUPT, "data_dir",
            "%s: damaged: %s", path, rocks_err);
        free (rocks_err);
        return err->code;
    }
    herald_err rc = HERALD_OK;
    for (int cf = 0; cf < CF_COUNT && rc == HERALD_OK; cf++) {
        bool found = false;
        for (size_t i = 0; i < count; i++)
            if (strcmp (names [i], s_cf_names [cf]) == 0)
                found = true;
        if (!found)
            rc = herald_error_set (err, HERALD_ERR_NOT_A_STORE, "data_dir",
                "%s is a RocksDB database but not a Herald store (no '%s' column family)",
                path, s_cf_names [cf]);
    }
    rocksdb_list_column_families_destroy (names, count);
    *existing = rc == HERALD_OK;
    return rc;
}

//  RocksDB options for the whole database and for each column family.
//  The events CF is read by iterators in key order, the index CFs by point
//  lookups, which bloom filters make cheap when the key is absent: the
//  common case for a new event id or a new topic.
static herald_err
s_configure (herald_store_t *self, const herald_store_options_t *options,
             herald_error_t *err)
{
    size_t write_buffer_mb = options->write_buffer_mb? options->write_buffer_mb
                                                     : WRITE_BUFFER_MB_DEFAULT;
    self->db_options = rocksdb_options_create ();
    //  Recovery that refuses a damaged WAL (herald_store_damage.c)
    if (herald_store_wal_options (&self->db_options, options->accept_loss, err) != HERALD_OK)
        return err->code;
    rocksdb_options_increase_parallelism (self->db_options, 2);
    rocksdb_options_set_create_if_missing (self->db_options, !options->read_only);
    rocksdb_options_set_create_missing_column_families (self->db_options, !options->read_only);
    if (self->log_dir)
        rocksdb_options_set_db_log_dir (self->db_options, self->log_dir);
    rocksdb_options_set_max_background_jobs (self->db_options, 4);
    rocksdb_options_set_bytes_per_sync (self->db_options, 1 << 20);
    //  A WAL file can go only when every column family has flushed what it
    //  holds; "topics" and "default" are written rarely and would pin old
    //  WAL files for ever (RocksDB's default cap is 4x all write buffers,
    //  about 2 GB here).  This cap makes them flush, keeping the disk and
    //  the replay on open small.
    rocksdb_options_set_max_total_wal_size (self->db_options, MAX_TOTAL_WAL_BYTES);
    //  In-place updates in "default" (below) need this off; one thread
    //  appends, so memtable inserts never ran concurrently anyway.
    rocksdb_options_set_allow_concurrent_memtable_write (self->db_options, 0);
    //  RocksDB's own LOG, in the data directory.  Debian's librocksdb 7.8
    //  is built with assertions on, and its file writer asserts when it
    //  is written to again after a failed write: once a full disk made one
    //  LOG write fail, the next line RocksDB logged aborted heraldd
    //  (SIGABRT, often before the broker could log or answer anything).
    //  The lines that come then are ERROR and WARN ones: the no-space
    //  recovery's "free space ... is less than required disk buffer", the
    //  background error's report.  At FATAL only the header written on open
    //  is left (about 55 KB; heraldd refuses to open on a nearly full disk,
    //  broker/main.c), so the LOG is never written again after a failure.
    //  The C API of 7.8 cannot install a logger of our own.  Bounded too:
    //  rolled at 1 MiB, four old files kept.
    rocksdb_options_set_info_log_level (self->db_options, 4);       //  FATAL
    rocksdb_options_set_max_log_file_size (self->db_options, LOG_FILE_BYTES);
    rocksdb_options_set_keep_log_file_num (self->db_options, LOG_FILES_KEPT);
    self->block_cache = rocksdb_cache_create_lru (BLOCK_CACHE_BYTES);

    for (int cf = 0; cf < CF_COUNT; cf++) {
        rocksdb_options_t *cf_options = rocksdb_options_create_copy (self->db_options);
        rocksdb_block_based_table_options_t *table = rocksdb_block_based_options_create ();
        rocksdb_block_based_options_set_block_cache (table, self->block_cache);
        //  Index and filter blocks load when a table opens and stay with it,
        //  outside the block cache: the first read after opening the store
        //  does not pay for them (1,000 sparse reads among 10M: 12-24 ms
        //  after a reopen with them cached lazily, 14-18 ms without).
        rocksdb_block_based_options_set_cache_index_and_filter_blocks (table, 0);
        if (cf == CF_IDS || cf == CF_TOPICS)
            rocksdb_block_based_options_set_filter_policy (table,
                rocksdb_filterpolicy_create_bloom_full (10));
        if (cf == CF_EVENTS) {
            //  Buckets of 256 seqs (herald_store_priv.h): a sparse READ's
            //  seek probes a filter per memtable and file, and seeks only
            //  the one that holds the bucket.  Before, it seeked each: 1,000
            //  READ events among 1M cost ~4 child seeks apiece.  A memtable
            //  of 64 MB holds ~1,500 buckets; its bloom gets 64 KiB.
            rocksdb_options_set_prefix_extractor (cf_options,
                rocksdb_slicetransform_create_fixed_prefix (HERALD_EVENTS_PREFIX));
            rocksdb_options_set_memtable_prefix_bloom_size_ratio (cf_options, 0.001);
            rocksdb_block_based_options_set_filter_policy (table,
                rocksdb_filterpolicy_create_bloom_full (10));
            rocksdb_block_based_options_set_whole_key_filtering (table, 0);
        }
        if (cf == CF_TOPICS || cf == CF_IDS) {
            //  A memtable bloom makes "is this topic new?" and "is this id
            //  stored?" cheap when the answer is no.  One publisher's
            //  UUIDv7 ids mostly skip the id lookup (they are above every
            //  stored id: see herald_store_append.c), but several
            //  publishers' ids interleave, and then every id is looked up:
            //  with the bloom, 4 publishers cost the broker about a fifth
            //  less CPU per event.
            rocksdb_options_set_memtable_whole_key_filtering (cf_options, 1);
            rocksdb_options_set_memtable_prefix_bloom_size_ratio (cf_options, 0.05);
        }
        if (cf == CF_DEFAULT)
            //  Every append rewrites "herald.digest" (and every raft entry
            //  "meta.raft.applied") with a value of the same size: updated
            //  in place, the memtable keeps one entry per key instead of
            //  one per write.  Measured on an append of one event (CPU
            //  time, median of 9): the digest's put cost 690 ns a call
            //  appended, 365 in place; with the applied index too, 1,950
            //  and 600.  Nothing reads "default" with snapshots or
            //  backward iterators, which in-place updates do not support.
            rocksdb_options_set_inplace_update_support (cf_options, 1);
        rocksdb_options_set_block_based_table_factory (cf_options, table);
        rocksdb_block_based_options_destroy (table);
        rocksdb_options_set_compression (cf_options, rocksdb_lz4_compression);
        rocksdb_options_set_level_compaction_dynamic_level_bytes (cf_options, 1);
        size_t buffer = cf == CF_EVENTS? write_buffer_mb: (write_buffer_mb + 1) / 2;
        if (cf == CF_DEFAULT || cf == CF_TOPICS)
            buffer = 4;
        rocksdb_options_set_write_buffer_size (cf_options, buffer << 20);
        rocksdb_options_set_max_write_buffer_number (cf_options, 4);
        self->cf_options [cf] = cf_options;
    }
    self->write_options = rocksdb_writeoptions_create ();
    rocksdb_writeoptions_set_sync (self->write_options,
                                   options->durability == HERALD_DURABILITY_SYNC);
    self->read_options = rocksdb_readoptions_create ();
    rocksdb_readoptions_set_total_order_seek (self->read_options, 1);
    //  Finding a run by seq: one bucket per seek (herald_store_find_event)
    self->lookup_options = rocksdb_readoptions_create ();
    rocksdb_readoptions_set_prefix_same_as_start (self->lookup_options, 1);
    //  A long full scan (a catch-up REPLAY) reads the log once: through
    //  the block cache it would evict the hot blocks (recent events, what
    //  READs use) and grow the cache, and the broker's RSS, to its cap.
    //  Read around it (herald_scan.c); it is faster too: no inserts, no
    //  evictions.
    self->scan_options = rocksdb_readoptions_create ();
    rocksdb_readoptions_set_total_order_seek (self->scan_options, 1);
    rocksdb_readoptions_set_fill_cache (self->scan_options, 0);
    return HERALD_OK;
}

//  Turn a RocksDB open failure into a clear error.  RocksDB takes an
//  fcntl lock on DIR/LOCK; its messages for a held lock mention "lock".
//  A refusal that point-in-time recovery (which stops at the first bad
//  WAL record) gets past was a damaged WAL: the probe opens read-only, so
//  it changes nothing.  Anything else is a table file's or the MANIFEST's,
//  and RocksDB's own message names the file.
static herald_err
s_open_error (herald_store_t *self, const char *rocks_err, const char *wal_names,
              herald_error_t *err)
{
    const char *path = self->path;
    if (strstr (rocks_err, "lock") || strstr (rocks_err, "LOCK"))
        return herald_error_set (err, HERALD_ERR_LOCKED, "data_dir",
            "data directory %s is in use by another process (is a broker already "
            "running on it?)", path);
    if (!strstr (rocks_err, "Corruption"))
        return herald_error_set (err, HERALD_ERR_IO, "data_dir",
            "cannot open the store in %s: %s", path, rocks_err);
    rocksdb_options_t *probe = rocksdb_options_create ();
    rocksdb_options_set_wal_recovery_mode (probe, 2);
    if (self->log_dir)
        rocksdb_options_set_db_log_dir (probe, self->log_dir);
    const rocksdb_options_t *cf_options [CF_COUNT];
    rocksdb_column_family_handle_t *handles [CF_COUNT];
    for (int cf = 0; cf < CF_COUNT; cf++)
        cf_options [cf] = probe;
    char *probe_err = NULL;
    rocksdb_t *db = rocksdb_open_for_read_only_column_families (
        probe, path, CF_COUNT, s_cf_names, cf_options, handles, 0, &probe_err);
    bool wal = db != NULL;
    if (db) {
        for (int cf = 0; cf < CF_COUNT; cf++)
            rocksdb_column_family_handle_destroy (handles [cf]);
        rocksdb_close (db);
    }
    free (probe_err);
    rocksdb_options_destroy (probe);
    if (wal)
        return herald_error_set (err, HERALD_ERR_CORRUPT, "data_dir",
            "%s: write-ahead log %s damaged (%s)", path,
            *wal_names? wal_names: "(none left)", rocks_err);
    return herald_error_set (err, HERALD_ERR_CORRUPT, "data_dir",
        "%s: damaged: %s", path, rocks_err);
}

//  The store's format marker: written when the store is created, checked
//  on every later open.
static herald_err
s_check_format (herald_store_t *self, bool existing, herald_error_t *err)
{
    char *rocks_err = NULL;
    size_t len = 0;
    char *format = rocksdb_get_cf (self->db, self->read_options, self->cf [CF_DEFAULT],
                                   HERALD_STORE_FORMAT_KEY, strlen (HERALD_STORE_FORMAT_KEY),
                                   &len, &rocks_err);
    if (rocks_err) {
        herald_error_set (err, HERALD_ERR_IO, "data_dir", "cannot read %s: %s",
                          self->path, rocks_err);
        free (rocks_err);
        return err->code;
    }
    if (format) {
        bool ok = len == strlen (HERALD_STORE_FORMAT)
               && memcmp (format, HERALD_STORE_FORMAT, len) == 0;
        free (format);
        if (!ok)
            return herald_error_set (err, HERALD_ERR_NOT_A_STORE, "data_dir",
                "%s holds a Herald store of an unknown format", self->path);
        return HERALD_OK;
    }
    //  No marker: a store we are creating, or one whose creation was cut
    //  short before the marker landed (then it holds no events yet).
    if (existing && herald_store_head (self) != 0)
        return herald_error_set (err, HERALD_ERR_NOT_A_STORE, "data_dir",
            "%s holds events but no Herald format marker", self->path);
    if (self->read_only)
        return HERALD_OK;
    rocksdb_writeoptions_t *sync = rocksdb_writeoptions_create ();
    rocksdb_writeoptions_set_sync (sync, 1);
    rocksdb_put_cf (self->db, sync, self->cf [CF_DEFAULT],
                    HERALD_STORE_FORMAT_KEY, strlen (HERALD_STORE_FORMAT_KEY),
                    HERALD_STORE_FORMAT, strlen (HERALD_STORE_FORMAT), &rocks_err);
    rocksdb_writeoptions_destroy (sync);
    if (rocks_err) {
        herald_error_set (err, HERALD_ERR_IO, "data_dir", "cannot write to %s: %s",
                          self->path, rocks_err);
        free (rocks_err);
        return err->code;
    }
    return HERALD_OK;
}

//  ---------------------------------------------------------------------
//  Errors

//  RocksDB's status text shortened for a message of at most size bytes:
//  each file path down to its last component (the data directory is
//  known), and, when it still does not fit, cut after a whole word with
//  "..." so that no word is ever cut.
static void
s_rocks_text (const char *status, char *out, size_t size)
{
    char full [1024];
    size_t used = 0;
    const char *cursor = status? status: "unknown error";
    while (*cursor && used + 1 < sizeof (full)) {
        bool path_start = *cursor == '/'
                       && (cursor == status || cursor [-1] == ' ' || cursor [-1] == '"'
                           || cursor [-1] == '\'');
        if (path_start) {
            const char *end = cursor + strcspn (cursor, " ,;:\t\n\"'");
            for (const char *scan = cursor; scan < end; scan++)
                if (*scan == '/')
                    cursor = scan + 1;
            continue;
        }
        if (*cursor == ' ' && used > 0 && full [used - 1] == ' ') {
            cursor++;                   //  one space for RocksDB's runs of them
            continue;
        }
        full [used++] = *cursor++;
    }
    while (used > 0 && full [used - 1] == ' ')
        used--;
    full [used] = 0;
    if (used < size) {
        memcpy (out, full, used + 1);
        return;
    }
    //  Room for "..." and the NUL; back to the last space that fits
    size_t cut = size > 4? size - 4: 0;
    while (cut > 0 && full [cut] != ' ')
        cut--;
    while (cut > 0 && full [cut - 1] == ' ')
        cut--;
    if (size < 4) {
        if (size)
            out [0] = 0;
        return;
    }
    memcpy (out, full, cut);
    memcpy (out + cut, "...", 4);
}

//  err = HERALD_ERR_IO, "<context>: <RocksDB's status, shortened to fit>"
static herald_err
s_rocks_error_v (const char *rocks_err, herald_error_t *err, const char *format,
                 va_list args)
{
    if (!err)
        return HERALD_ERR_IO;
    char context [sizeof (err->message)];
    vsnprintf (context, sizeof (context), format, args);
    size_t used = strlen (context) + 2;         //  and ": "
    size_t room = used < sizeof (err->message)? sizeof (err->message) - used: 1;
    char text [sizeof (err->message)];
    s_rocks_text (rocks_err, text, room);
    return herald_error_set (err, HERALD_ERR_IO, "", "%s: %s", context, text);
}

herald_err
herald_store_rocks_error (const char *rocks_err, herald_error_t *err, const char *format, ...)
{
    va_list args;
    va_start (args, format);
    s_rocks_error_v (rocks_err, err, format, args);
    va_end (args);
    return HERALD_ERR_IO;
}

herald_err
herald_store_iter_error (rocksdb_iterator_t *it, herald_error_t *err, const char *format, ...)
{
    char *rocks_err = NULL;
    rocksdb_iter_get_error (it, &rocks_err);
    if (!rocks_err)
        return HERALD_OK;
    va_list args;
    va_start (args, format);
    s_rocks_error_v (rocks_err, err, format, args);
    va_end (args);
    free (rocks_err);
    return HERALD_ERR_IO;
}

//  ---------------------------------------------------------------------
//  Finding runs

herald_err
herald_store_find_event (rocksdb_iterator_t *it, uint64_t seq, herald_run_t *run,
                         herald_error_t *err)
{
    //  A lookup iterator sees one bucket per seek, and the run holding seq
    //  may end in a later bucket than seq (at most HERALD_RUN_MAX_EVENTS - 1
    //  seqs on): walk the buckets up to there.  The first one almost always
    //  holds it; the others cost a few filter probes each.  On a total
    //  order iterator the first seek decides.  A seek that stops on an
    //  error is not an empty bucket: it is the answer.
    uint64_t last = seq > UINT64_MAX - HERALD_RUN_MAX_EVENTS? UINT64_MAX
                                                             : seq + HERALD_RUN_MAX_EVENTS - 1;
    uint64_t target = seq;
    while (true) {
        uint8_t key [8];
        s_put_u64 (key, target);
        rocksdb_iter_seek (it, (const char *) key, 8);
        if (rocksdb_iter_valid (it))
            break;
        if (herald_store_iter_error (it, err, "cannot read the log at seq %llu",
                                     (unsigned long long) seq) != HERALD_OK)
            return HERALD_ERR_IO;
        uint64_t next = (target | (HERALD_EVENTS_BUCKET - 1)) + 1;
        if (next == 0 || next > last)
            return HERALD_ERR_NOT_FOUND;
        target = next;
    }
    size_t key_len, len;
    const char *found = rocksdb_iter_key (it, &key_len);
    const char *value = rocksdb_iter_value (it, &len);
    if (!herald_run_parse (found, key_len, value, len, run))
        return herald_error_set (err, HERALD_ERR_CORRUPT, "",
                                 "the run of events holding seq %llu has the wrong shape",
                                 (unsigned long long) seq);
    //  The key, its last seq, is >= seq
    return seq >= run->first_seq? HERALD_OK: HERALD_ERR_NOT_FOUND;
}

rocksdb_iterator_t *
herald_store_lookup_iterator (herald_store_t *self)
{
    return rocksdb_create_iterator_cf (self->db, self->lookup_options, self->cf [CF_EVENTS]);
}

//  The ts stored in event seq's envelope, which must be stored: a seq
//  that no run holds is a hole in the log (HERALD_ERR_CORRUPT).
herald_err
herald_store_event_ts (herald_store_t *self, uint64_t seq, uint64_t *ts, herald_error_t *err)
{
    rocksdb_iterator_t *it = herald_store_lookup_iterator (self);
    herald_run_t run;
    herald_err rc = herald_store_find_event (it, seq, &run, err);
    if (rc == HERALD_ERR_NOT_FOUND)
        herald_error_set (err, HERALD_ERR_CORRUPT, "", "event %llu is missing from the log",
                          (unsigned long long) seq);
    if (rc == HERALD_OK) {
        const uint8_t *bytes;
        size_t len;
        herald_run_event (&run, (uint32_t) (seq - run.first_seq), &bytes, &len);
        const char *topic;
        size_t topic_len;
        uint64_t stored_seq, ver;
        if (herald_envelope_is_hole (bytes, len))
            //  Cut out by reclaim: the hole keeps the ts (herald_store_priv.h)
            *ts = s_get_u64 (bytes + 1 + HERALD_ID_BYTES);
        else
        if (!herald_event_peek (bytes, len, &topic, &topic_len, &stored_seq, &ver, ts)) {
            //  Not our layout (cannot happen for envelopes we wrote); decode.
            msgpack_zone zone;
            msgpack_zone_init (&zone, 1024);
            herald_event_t event;
            herald_error_t error;
            if (herald_event_decode (&event, bytes, len, &zone, &error) == HERALD_OK)
                *ts = event.ts;
            else
                rc = herald_error_set (err, HERALD_ERR_CORRUPT, "",
                                       "event %llu cannot be decoded: %s",
                                       (unsigned long long) seq, error.message);
            msgpack_zone_destroy (&zone);
        }
    }
    rocksdb_iter_destroy (it);
    return rc == HERALD_ERR_NOT_FOUND? HERALD_ERR_CORRUPT: rc;
}

//  Recover head, first seq, topic count and last ts from the data.
static herald_err
s_recover (herald_store_t *self, herald_error_t *err)
{
    rocksdb_iterator_t *it = rocksdb_create_iterator_cf (self->db, self->read_options,
                                                         self->cf [CF_EVENTS]);
    uint64_t head = 0, first = 0;
    bool corrupt = false;
    //  An iterator that stops on an error must not read as an empty log
    //  (head 0: the broker would hand the seqs out again)
    herald_err rc = HERALD_OK;
    rocksdb_iter_seek_to_last (it);
    if (!rocksdb_iter_valid (it))
        rc = herald_store_iter_error (it, err, "cannot read the last run of the log");
    if (rocksdb_iter_valid (it)) {
        size_t key_len, len;
        const char *key = rocksdb_iter_key (it, &key_len);
        const char *value = rocksdb_iter_value (it, &len);
        herald_run_t run;
        if (herald_run_parse (key, key_len, value, len, &run))
            head = run.first_seq + run.count - 1;
        else
            corrupt = true;
        rocksdb_iter_seek_to_first (it);
        if (!rocksdb_iter_valid (it)) {
            rc = herald_store_iter_error (it, err, "cannot read the first run of the log");
            corrupt = true;
        }
        else {
            key = rocksdb_iter_key (it, &key_len);
            value = rocksdb_iter_value (it, &len);
            if (herald_run_parse (key, key_len, value, len, &run))
                first = run.first_seq;
            else
                corrupt = true;
        }
    }
    rocksdb_iter_destroy (it);
    if (rc != HERALD_OK)
        return rc;

    //  The greatest id stored is the last key of "ids".
    //  (Unread, every id would look new: no duplicate would be found.)
    it = rocksdb_create_iterator_cf (self->db, self->read_options, self->cf [CF_IDS]);
    rocksdb_iter_seek_to_last (it);
    if (!rocksdb_iter_valid (it))
        rc = herald_store_iter_error (it, err, "cannot read the last key of the id index");
    if (rocksdb_iter_valid (it)) {
        size_t key_len;
        const char *key = rocksdb_iter_key (it, &key_len);
        if (key_len == HERALD_ID_BYTES) {
            memcpy (self->max_id, key, HERALD_ID_BYTES);
            self->has_max_id = true;
        }
        else
            corrupt = true;
    }
    rocksdb_iter_destroy (it);
    if (rc != HERALD_OK)
        return rc;
    if (corrupt)
        return herald_error_set (err, HERALD_ERR_CORRUPT, "events",
            "%s: a record in the events or ids column family has the wrong shape",
            self->path);

    uint64_t topics = 0;
    it = rocksdb_create_iterator_cf (self->db, self->read_options, self->cf [CF_TOPICS]);
    for (rocksdb_iter_seek_to_first (it); rocksdb_iter_valid (it); rocksdb_iter_next (it))
        topics++;
    rc = herald_store_iter_error (it, err, "cannot count the topics (after %llu)",
                                  (unsigned long long) topics);
    rocksdb_iter_destroy (it);
    if (rc != HERALD_OK)
        return rc;

    uint64_t last_ts = 0;
    if (head && (rc = herald_store_event_ts (self, head, &last_ts, err)) != HERALD_OK)
        return rc;
    atomic_store (&self->head, head);
    atomic_store (&self->first, first? first: 1);
    atomic_store (&self->topic_count, topics);
    atomic_store (&self->last_ts, last_ts);
    return HERALD_OK;
}

herald_store_t *
herald_store_open (const char *path, const herald_store_options_t *options,
                   herald_error_t *err)
{
    assert (path);
    herald_store_options_t defaults = { .durability = HERALD_DURABILITY_SYNC };
    if (!options)
        options = &defaults;
    herald_store_t *self = calloc (1, sizeof (*self));
    if (!self) {
        herald_error_set (err, HERALD_ERR_NOMEM, "", "out of memory");
        return NULL;
    }
    self->path = strdup (path);
    self->durability = options->durability;
    self->read_only = options->read_only;
    self->accept_loss = options->accept_loss;
    if (!self->path || herald_store_append_init (self, options->topic_cache) != 0
    ||  herald_store_trims_init (self) != 0) {
        herald_error_set (err, HERALD_ERR_NOMEM, "", "out of memory");
        herald_store_destroy (&self);
        return NULL;
    }
    //  Read-only: RocksDB would still write its LOG (renaming the old one)
    //  into the directory; it goes to a directory of our own instead.
    if (self->read_only) {
        char log_dir [] = "/tmp/herald-store-log.XXXXXX";
        if (mkdtemp (log_dir))
            self->log_dir = strdup (log_dir);
        if (!self->log_dir) {
            herald_error_set (err, HERALD_ERR_IO, "data_dir",
                              "cannot make a directory for RocksDB's log: %s", strerror (errno));
            herald_store_destroy (&self);
            return NULL;
        }
    }
    if (s_configure (self, options, err) != HERALD_OK) {
        herald_store_destroy (&self);
        return NULL;
    }

    bool existing = true;
    herald_err rc = HERALD_OK;
    if (!self->read_only)
        rc = s_check_directory (path, self->db_options, &existing, err);
    else
    if (!s_has_file (path, "CURRENT"))
        rc = herald_error_set (err, s_has_rocksdb_files (path)? HERALD_ERR_CORRUPT
                                                               : HERALD_ERR_NOT_A_STORE,
            "data_dir", "%s: no CURRENT file: %s", path,
            s_has_rocksdb_files (path)? "the store is damaged": "not a Herald store");
    else
    if (herald_store_locked (path))
        rc = herald_error_set (err, HERALD_ERR_LOCKED, "data_dir",
            "data directory %s is in use by another process (is a broker already "
            "running on it?)", path);
    if (rc != HERALD_OK) {
        herald_store_destroy (&self);
        return NULL;
    }
    char wal_names [160];
    uint64_t newest_wal;
    herald_store_wal_files (path, wal_names, sizeof (wal_names), &newest_wal);
    char *rocks_err = NULL;
    if (self->read_only)
        self->db = rocksdb_open_for_read_only_column_families (
            self->db_options, path, CF_COUNT, s_cf_names,
            (const rocksdb_options_t * const *) self->cf_options, self->cf, 0, &rocks_err);
    else
        self->db = rocksdb_open_column_families (
            self->db_options, path, CF_COUNT, s_cf_names,
            (const rocksdb_options_t * const *) self->cf_options, self->cf, &rocks_err);
    if (rocks_err) {
        s_open_error (self, rocks_err, wal_names, err);
        free (rocks_err);
        self->db = NULL;
        herald_store_destroy (&self);
        return NULL;
    }
    if (s_recover (self, err) != HERALD_OK
    ||  herald_store_trims_load (self, err) != HERALD_OK
    ||  s_check_format (self, existing, err) != HERALD_OK
    ||  herald_store_losses_load (self, err) != HERALD_OK
    ||  herald_store_check_wal (self, newest_wal, err) != HERALD_OK
    ||  herald_store_recover_cluster (self, err) != HERALD_OK) {
        herald_store_destroy (&self);
        return NULL;
    }
    return self;
}

void
herald_store_destroy (herald_store_t **self_p)
{
    assert (self_p);
    herald_store_t *self = *self_p;
    if (!self)
        return;
    if (self->db) {
        herald_error_t ignored;
        herald_store_stop (self, &ignored);
        for (int cf = 0; cf < CF_COUNT; cf++)
            if (self->cf [cf])
                rocksdb_column_family_handle_destroy (self->cf [cf]);
        rocksdb_close (self->db);
    }
    for (int cf = 0; cf < CF_COUNT; cf++)
        if (self->cf_options [cf])
            rocksdb_options_destroy (self->cf_options [cf]);
    if (self->db_options)
        rocksdb_options_destroy (self->db_options);
    if (self->block_cache)
        rocksdb_cache_destroy (self->block_cache);
    if (self->write_options)
        rocksdb_writeoptions_destroy (self->write_options);
    if (self->read_options)
        rocksdb_readoptions_destroy (self->read_options);
    if (self->lookup_options)
        rocksdb_readoptions_destroy (self->lookup_options);
    if (self->scan_options)
        rocksdb_readoptions_destroy (self->scan_options);
    herald_store_append_free (self);
    herald_store_trims_free (self);
    herald_store_losses_free (self);
    if (self->log_dir) {
        //  RocksDB's log of a read-only open: ours to remove
        DIR *dir = opendir (self->log_dir);
        struct dirent *entry;
        while (dir && (entry = readdir (dir))) {
            char file [4200];
            snprintf (file, sizeof (file), "%s/%s", self->log_dir, entry->d_name);
            if (strcmp (entry->d_name, ".") && strcmp (entry->d_name, ".."))
                unlink (file);
        }
        if (dir)
            closedir (dir);
        rmdir (self->log_dir);
        free (self->log_dir);
    }
    free (self->path);
    free (self);
    *self_p = NULL;
}

//  ---------------------------------------------------------------------
//  Appending

int
herald_store_lookup_ver (herald_store_t *self, const char *topic, size_t len,
                         uint64_t *ver, herald_error_t *err)
{
    *ver = 0;
    char *rocks_err = NULL;
    rocksdb_pinnableslice_t *exists = rocksdb_get_pinned_cf (
        self->db, self->read_options, self->cf [CF_TOPICS], topic, len, &rocks_err);
    if (rocks_err) {
        herald_store_rocks_error (rocks_err, err, "cannot read topic %.*s",
                                  (int) len, topic);
        free (rocks_err);
        return -1;
    }
    if (!exists)
        return 0;
    rocksdb_pinnableslice_destroy (exists);

    //  The topic's last run is the last key at or before "topic 0x00 FF*8".
    //  The topic exists, so a run that cannot be found is an error, never
    //  ver 0: an append would hand ver 1 out again.
    rocksdb_iterator_t *it = rocksdb_create_iterator_cf (self->db, self->read_options,
                                                         self->cf [CF_STREAMS]);
    uint64_t first_ver;
    const uint8_t *seqs;
    size_t count;
    herald_err rc = herald_store_find_run (it, topic, len, UINT64_MAX, &first_ver, &seqs,
                                           &count, err);
    if (rc == HERALD_OK)
        *ver = first_ver + count - 1;
    else
    if (rc == HERALD_ERR_NOT_FOUND)
        herald_error_set (err, HERALD_ERR_CORRUPT, "", "topic %.*s exists but has no stream",
                          (int) len, topic);
    rocksdb_iter_destroy (it);
    return rc == HERALD_OK? 0: -1;
}

herald_err
herald_store_run_at (rocksdb_iterator_t *it, const char *topic, size_t len,
                     uint64_t *first_ver, const uint8_t **seqs, size_t *count,
                     herald_error_t *err)
{
    if (!rocksdb_iter_valid (it)) {
        herald_err rc = herald_store_iter_error (it, err, "cannot read the stream of topic %.*s",
                                                 (int) len, topic);
        return rc != HERALD_OK? rc: HERALD_ERR_NOT_FOUND;
    }
    size_t key_len, value_len;
    const char *key = rocksdb_iter_key (it, &key_len);
    if (key_len != len + 9 || memcmp (key, topic, len) != 0 || key [len] != 0)
        return HERALD_ERR_NOT_FOUND;
    const char *value = rocksdb_iter_value (it, &value_len);
    *first_ver = s_get_u64 ((const uint8_t *) key + len + 1);
    if (value_len == 0 || value_len % 8)
        return herald_error_set (err, HERALD_ERR_CORRUPT, "",
                                 "topic %.*s: the stream entry at ver %llu has %zu bytes",
                                 (int) len, topic,
                                 (unsigned long long) *first_ver, value_len);
    *seqs = (const uint8_t *) value;
    *count = value_len / 8;
    return HERALD_OK;
}

herald_err
herald_store_find_run (rocksdb_iterator_t *it, const char *topic, size_t len, uint64_t ver,
                       uint64_t *first_ver, const uint8_t **seqs, size_t *count,
                       herald_error_t *err)
{
    uint8_t key [HERALD_STREAM_KEY_MAX];
    size_t key_len = s_stream_key (key, topic, len, ver);
    rocksdb_iter_seek_for_prev (it, (const char *) key, key_len);
    herald_err rc = herald_store_run_at (it, topic, len, first_ver, seqs, count, err);
    if (rc == HERALD_OK && ver != UINT64_MAX && ver - *first_ver >= *count)
        rc = HERALD_ERR_NOT_FOUND;
    return rc;
}


//  ---------------------------------------------------------------------
//  Reading and counting

//  HERALD_ERR_TRIMMED for seq, of topic when known (NULL: a hole, or
//  below the log's first seq), naming the first seq still there.
static herald_err
s_trimmed_seq (herald_store_t *self, uint64_t seq, const char *topic, size_t topic_len,
               herald_error_t *err)
{
    herald_trim_t point;
    if (topic) {
        herald_str_t prefix = { topic, topic_len };
        herald_store_first_point (self, &prefix, 1, &point);
        uint64_t until = herald_store_topic_trimmed (self, topic, topic_len);
        return herald_error_set (err, HERALD_ERR_TRIMMED, "seq",
            "seq %llu was trimmed from the live log (trim point \"%.*s\" until %llu); "
            "the first seq still there for %.*s is %llu", (unsigned long long) seq,
            (int) point.prefix_len, point.prefix, (unsigned long long) point.until,
            (int) topic_len, topic, (unsigned long long) until + 1);
    }
    uint64_t first = atomic_load (&self->log_first);
    if (seq < first)
        return herald_error_set (err, HERALD_ERR_TRIMMED, "seq",
            "seq %llu was trimmed from the live log (trim point \"\" until %llu); "
            "the first seq still there is %llu", (unsigned long long) seq,
            (unsigned long long) first - 1, (unsigned long long) first);
    return herald_error_set (err, HERALD_ERR_TRIMMED, "seq",
        "seq %llu was trimmed from the live log under a prefix trim point; the log's "
        "first seq is %llu", (unsigned long long) seq, (unsigned long long) first);
}

herald_err
herald_store_get (herald_store_t *self, uint64_t seq, uint8_t **envelope, size_t *len,
                  herald_error_t *err)
{
    assert (self);
    *envelope = NULL;
    *len = 0;
    //  Head before the iterator: every seq up to it is then visible
    uint64_t head = atomic_load (&self->head);
    if (seq == 0 || seq > head)
        return herald_error_set (err, HERALD_ERR_NOT_FOUND, "", "no event %llu (head %llu)",
                                 (unsigned long long) seq, (unsigned long long) head);
    if (seq < atomic_load (&self->log_first))
        return s_trimmed_seq (self, seq, NULL, 0, err);
    rocksdb_iterator_t *it = herald_store_lookup_iterator (self);
    herald_run_t run;
    herald_err rc = herald_store_find_event (it, seq, &run, err);
    if (rc == HERALD_ERR_NOT_FOUND && seq < atomic_load (&self->log_first))
        rc = s_trimmed_seq (self, seq, NULL, 0, err);      //  reclaimed meanwhile
    else
    if (rc == HERALD_ERR_NOT_FOUND && seq >= atomic_load (&self->first))
        rc = herald_error_set (err, HERALD_ERR_CORRUPT, "", "event %llu is missing from the log",
                               (unsigned long long) seq);
    else
    if (rc == HERALD_ERR_NOT_FOUND)
        herald_error_set (err, HERALD_ERR_NOT_FOUND, "", "no event %llu (the log starts at %llu)",
                          (unsigned long long) seq,
                          (unsigned long long) atomic_load (&self->first));
    const uint8_t *bytes = NULL;
    size_t size = 0;
    if (rc == HERALD_OK) {
        herald_run_event (&run, (uint32_t) (seq - run.first_seq), &bytes, &size);
        //  Trimmed under a prefix: cut out already (a hole), or not yet
        const char *topic;
        size_t topic_len;
        uint64_t ver, ts, stored_seq;
        if (herald_envelope_is_hole (bytes, size))
            rc = s_trimmed_seq (self, seq, NULL, 0, err);
        else
        if (seq <= atomic_load (&self->trims_max_until)
        &&  herald_event_peek (bytes, size, &topic, &topic_len, &stored_seq, &ver, &ts)
        &&  herald_store_topic_trimmed (self, topic, topic_len) >= seq)
            rc = s_trimmed_seq (self, seq, topic, topic_len, err);
    }
    if (rc == HERALD_OK) {
        *envelope = malloc (size);
        if (*envelope) {
            memcpy (*envelope, bytes, size);
            *len = size;
        }
        else
            rc = herald_error_set (err, HERALD_ERR_NOMEM, "", "out of memory");
    }
    rocksdb_iter_destroy (it);
    return rc;
}

herald_err
herald_store_lookup_id_hash (herald_store_t *self, const uint8_t id [HERALD_ID_BYTES],
                             uint64_t *seq, uint64_t *ver, uint64_t *hash, bool *has_hash)
{
    assert (self);
    *seq = 0;
    *ver = 0;
    *hash = 0;
    *has_hash = false;
    char *rocks_err = NULL;
    rocksdb_pinnableslice_t *value = rocksdb_get_pinned_cf (
        self->db, self->read_options, self->cf [CF_IDS], (const char *) id, HERALD_ID_BYTES,
        &rocks_err);
    if (rocks_err) {
        free (rocks_err);
        return HERALD_ERR_IO;
    }
    if (!value)
        return HERALD_ERR_NOT_FOUND;
    size_t len;
    const uint8_t *bytes = (const uint8_t *) rocksdb_pinnableslice_value (value, &len);
    herald_err rc = HERALD_ERR_CORRUPT;
    s_id_found_t found;
    if (herald_id_value_parse (bytes, len, &found)) {
        *seq = found.seq;
        *ver = found.ver;
        *hash = found.hash;
        *has_hash = found.has_hash;
        rc = HERALD_OK;
    }
    rocksdb_pinnableslice_destroy (value);
    return rc;
}

herald_err
herald_store_lookup_id (herald_store_t *self, const uint8_t id [HERALD_ID_BYTES],
                        uint64_t *seq, uint64_t *ver)
{
    uint64_t hash;
    bool has_hash;
    return herald_store_lookup_id_hash (self, id, seq, ver, &hash, &has_hash);
}

herald_err
herald_store_lookup_ids (herald_store_t *self, const herald_event_t *events, size_t count,
                         uint64_t *seqs, herald_error_t *err)
{
    assert (self);
    if (count == 0)
        return HERALD_OK;
    //  One block for the four arrays MultiGet takes (the appender's own
    //  arrays belong to its thread)
    const char **keys = malloc (count * (sizeof (char *) + sizeof (size_t)
                                         + sizeof (rocksdb_pinnableslice_t *)
                                         + sizeof (char *)));
    if (!keys)
        return herald_error_set (err, HERALD_ERR_NOMEM, "", "out of memory");
    size_t *sizes = (size_t *) (keys + count);
    rocksdb_pinnableslice_t **values = (rocksdb_pinnableslice_t **) (sizes + count);
    char **errors = (char **) (values + count);
    for (size_t i = 0; i < count; i++) {
        keys [i] = (const char *) events [i].id;
        sizes [i] = HERALD_ID_BYTES;
        seqs [i] = 0;
    }
    rocksdb_batched_multi_get_cf (self->db, self->read_options, self->cf [CF_IDS], count,
                                  keys, sizes, values, errors, false);
    herald_err rc = HERALD_OK;
    for (size_t i = 0; i < count; i++) {
        if (errors [i]) {
            if (rc == HERALD_OK)
                rc = herald_error_set (err, HERALD_ERR_IO, "ids", "reading id index: %s",
                                       errors [i]);
            free (errors [i]);
        }
        if (values [i]) {
            size_t len;
            const uint8_t *bytes = (const uint8_t *) rocksdb_pinnableslice_value (values [i],
                                                                                &len);
            s_id_found_t found;
            if (herald_id_value_parse (bytes, len, &found))
                seqs [i] = found.seq;
            else
            if (rc == HERALD_OK)
                rc = herald_error_set (err, HERALD_ERR_CORRUPT, "ids",
                                       "id index entry of %zu bytes", len);
            rocksdb_pinnableslice_destroy (values [i]);
        }
    }
    free (keys);
    return rc;
}

int
herald_store_walk_ids (herald_store_t *self, herald_store_id_fn *fn, void *arg,
                       herald_error_t *err)
{
    assert (self);
    assert (fn);
    rocksdb_iterator_t *it = rocksdb_create_iterator_cf (self->db, self->read_options,
                                                         self->cf [CF_IDS]);
    int rc = 0;
    for (rocksdb_iter_seek_to_first (it); rc == 0 && rocksdb_iter_valid (it);
         rocksdb_iter_next (it)) {
        size_t key_len, len;
        const uint8_t *key = (const uint8_t *) rocksdb_iter_key (it, &key_len);
        const uint8_t *value = (const uint8_t *) rocksdb_iter_value (it, &len);
        s_id_found_t found;
        if (key_len != HERALD_ID_BYTES || !herald_id_value_parse (value, len, &found)) {
            herald_error_set (err, HERALD_ERR_CORRUPT, "ids",
                              "id index entry with a %zu-byte key and a %zu-byte value",
                              key_len, len);
            rc = -1;
        }
        else
            rc = fn (key, found.seq, found.ver, arg);
    }
    char *rocks_err = NULL;
    if (rc == 0)
        rocksdb_iter_get_error (it, &rocks_err);
    if (rocks_err) {
        herald_error_set (err, HERALD_ERR_IO, "ids", "reading id index: %s", rocks_err);
        free (rocks_err);
        rc = -1;
    }
    rocksdb_iter_destroy (it);
    return rc;
}

//  Meta keys live in "default" beside the format marker, under "meta.".
static size_t
s_meta_key (char *out, size_t size, const char *key)
{
    int len = snprintf (out, size, "meta.%s", key);
    return len < 0 || (size_t) len >= size? 0: (size_t) len;
}

herald_err
herald_store_meta_get (herald_store_t *self, const char *key, char **value, size_t *len)
{
    assert (self);
    *value = NULL;
    *len = 0;
    char name [256];
    size_t name_len = s_meta_key (name, sizeof (name), key);
    if (name_len == 0)
        return HERALD_ERR_INVALID;
    char *rocks_err = NULL;
    *value = rocksdb_get_cf (self->db, self->read_options, self->cf [CF_DEFAULT],
                             name, name_len, len, &rocks_err);
    if (rocks_err) {
        free (rocks_err);
        return HERALD_ERR_IO;
    }
    return *value? HERALD_OK: HERALD_ERR_NOT_FOUND;
}

herald_err
herald_store_meta_put (herald_store_t *self, const char *key, const void *value, size_t len)
{
    assert (self);
    char name [256];
    size_t name_len = s_meta_key (name, sizeof (name), key);
    if (name_len == 0)
        return HERALD_ERR_INVALID;
    rocksdb_writeoptions_t *sync = rocksdb_writeoptions_create ();
    rocksdb_writeoptions_set_sync (sync, 1);
    char *rocks_err = NULL;
    rocksdb_put_cf (self->db, sync, self->cf [CF_DEFAULT], name, name_len,
                    value, len, &rocks_err);
    rocksdb_writeoptions_destroy (sync);
    if (rocks_err) {
        free (rocks_err);
        return HERALD_ERR_IO;
    }
    return HERALD_OK;
}

uint64_t
herald_store_head (herald_store_t *self)
{
    return atomic_load (&self->head);
}

uint64_t
herald_store_event_count (herald_store_t *self)
{
    //  The log's seqs from its first (herald_store.h)
    uint64_t head = atomic_load (&self->head);
    uint64_t first = atomic_load (&self->log_first);
    if (first < atomic_load (&self->first))
        first = atomic_load (&self->first);
    return head >= first? head - first + 1: 0;
}

uint64_t
herald_store_topic_count (herald_store_t *self)
{
    return atomic_load (&self->topic_count);
}

uint64_t
herald_store_last_ts (herald_store_t *self)
{
    return atomic_load (&self->last_ts);
}

herald_err
herald_store_topic_ver (herald_store_t *self, const char *topic, size_t len, uint64_t *ver,
                        herald_error_t *err)
{
    assert (self);
    herald_error_t local = { 0 };
    if (herald_store_lookup_ver (self, topic, len, ver, &local) != 0) {
        *ver = 0;
        if (err)
            *err = local;
        return local.code;
    }
    return HERALD_OK;
}

//  ts never decreases with seq, so a binary search over seq finds the
//  first event at or after a time in O(log n) point reads, with no index.
//  An event that cannot be read fails the search: guessing would start a
//  stream at the wrong place.
herald_err
herald_store_seq_at_ts (herald_store_t *self, uint64_t ts, uint64_t *seq, herald_error_t *err)
{
    assert (self);
    //  The live log only: a ts before its first event gives its first seq
    uint64_t low = atomic_load (&self->first);
    if (low < atomic_load (&self->log_first))
        low = atomic_load (&self->log_first);
    uint64_t high = atomic_load (&self->head) + 1;
    if (low > high)
        low = high;
    while (low < high) {
        uint64_t middle = low + (high - low) / 2;
        uint64_t event_ts;
        herald_err rc = herald_store_event_ts (self, middle, &event_ts, err);
        if (rc != HERALD_OK) {
            *seq = 0;
            return rc;
        }
        if (event_ts >= ts)
            high = middle;
        else
            low = middle + 1;
    }
    *seq = low;
    return HERALD_OK;
}

void
herald_store_memory (herald_store_t *self, herald_store_memory_t *memory)
{
    assert (self && memory);
    memset (memory, 0, sizeof (*memory));
    for (int cf = 0; cf < CF_COUNT; cf++) {
        uint64_t value;
        if (rocksdb_property_int_cf (self->db, self->cf [cf],
                                     "rocksdb.size-all-mem-tables", &value) == 0)
            memory->memtables += value;
        if (rocksdb_property_int_cf (self->db, self->cf [cf],
                                     "rocksdb.estimate-table-readers-mem", &value) == 0)
            memory->table_readers += value;
    }
    memory->block_cache = rocksdb_cache_get_usage (self->block_cache);
}

herald_err
herald_store_disk_size (herald_store_t *self, uint64_t *bytes, herald_error_t *err)
{
    assert (self);
    *bytes = 0;
    DIR *dir = opendir (self->path);
    if (!dir)
        return herald_error_set (err, HERALD_ERR_IO, "", "cannot list the data directory: %s",
                                 strerror (errno));
    uint64_t total = 0;
    struct dirent *entry;
    herald_err rc = HERALD_OK;
    while (rc == HERALD_OK && (entry = readdir (dir))) {
        char file [4200];
        snprintf (file, sizeof (file), "%s/%s", self->path, entry->d_name);
        struct stat info;
        if (stat (file, &info) == 0) {
            if (S_ISREG (info.st_mode))
                total += (uint64_t) info.st_size;
        }
        else
        if (errno != ENOENT)            //  gone since readdir: compaction deleted it
            rc = herald_error_set (err, HERALD_ERR_IO, "", "cannot stat %.64s: %s",
                                   entry->d_name, strerror (errno));
    }
    closedir (dir);
    if (rc == HERALD_OK)
        *bytes = total;
    return rc;
}

herald_err
herald_store_flush (herald_store_t *self, herald_error_t *err)
{
    assert (self);
    rocksdb_flushoptions_t *options = rocksdb_flushoptions_create ();
    rocksdb_flushoptions_set_wait (options, 0);
    char *rocks_err = NULL;
    for (int cf = 0; cf < CF_COUNT && !rocks_err; cf++)
        rocksdb_flush_cf (self->db, options, self->cf [cf], &rocks_err);
    rocksdb_flushoptions_destroy (options);
    if (rocks_err) {
        herald_error_set (err, HERALD_ERR_IO, "", "cannot flush the store in %s: %s",
                          self->path, rocks_err);
        free (rocks_err);
        return err->code;
    }
    return HERALD_OK;
}

const char *
herald_store_path (herald_store_t *self)
{
    assert (self);
    return self->path;
}
