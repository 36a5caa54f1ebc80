/*  =========================================================================
    bench_util - helpers and the raw-RocksDB side of store_bench

    Everything store_bench needs that is not the Herald store: a monotonic
    clock, thousands separators, big-endian keys, file trees (remove, size,
    drop from the page cache), the machine's description (/proc fields,
    filesystem, RocksDB version, load) and the raw DB that each Herald
    figure is compared with.  None of it includes a Herald header, so the
    raw side cannot quietly share code with the store it is the limit of.
    =========================================================================
*/

#include <assert.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <rocksdb/c.h>

#include "bench_util.h"

//  The raw DB deliberately repeats the RocksDB tuning that s_configure in
//  store/herald_store.c gives the "events" column family (the duplicates
//  tool pairs bench_raw_open with it; that is by design).  Why: a raw figure
//  is the limit of the same engine with the same tuning, so a gap between
//  it and Herald's figure is Herald's own cost, not a difference in
//  write buffers, compression or cache.  Why not share the code: the raw
//  side includes no Herald header (see the banner), so the baseline cannot
//  borrow anything from the code it measures.  The price is keeping three
//  places in step by hand: s_configure, bench_raw_open below, and
//  BENCH_RAW_OPTIONS_TEXT in bench_util.h, which the report prints.  Left
//  out on purpose: the store's max_total_wal_size, which matters only with
//  several column families (one CF frees its WAL files at every flush), and
//  the bloom filters of "ids" and "topics", which the raw DB does not have,
//  and the events CF's prefix bloom: it lets a seek for a seq skip the
//  memtables and files that do not hold its bucket, while the raw side
//  reads by exact key with Get, which skips files by their key ranges.
#define S_RAW_WRITE_BUFFER_MB   64
#define S_RAW_BLOCK_CACHE_BYTES (128u << 20)


//  ---------------------------------------------------------------------
//  Small helpers: clock, formatting, files

double
bench_now (void)
{
    struct timespec ts;
    clock_gettime (CLOCK_MONOTONIC, &ts);
    return (double) ts.tv_sec + (double) ts.tv_nsec / 1e9;
}

void
bench_sleep_until (double when)
{
    if (!(when > bench_now ()))
        return;
    struct timespec ts;
    ts.tv_sec = (time_t) when;
    ts.tv_nsec = (long) ((when - (double) ts.tv_sec) * 1e9);
    if (ts.tv_nsec >= 1000000000L)
        ts.tv_nsec = 999999999L;
    while (clock_nanosleep (CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
        ;
}

//  Format value with thousands separators ("12,345,678") into buffer.
const char *
bench_count (char *buffer, size_t size, double value)
{
    char digits [32];
    snprintf (digits, sizeof digits, "%.0f", value < 0? 0: value);
    size_t len = strlen (digits);
    size_t out = 0;
    for (size_t i = 0; i < len && out + 2 < size; i++) {
        if (i > 0 && (len - i) % 3 == 0)
            buffer [out++] = ',';
        buffer [out++] = digits [i];
    }
    buffer [out] = 0;
    return buffer;
}

void
bench_put_be64 (uint8_t *out, uint64_t value)
{
    for (int i = 7; i >= 0; i--) {
        out [i] = (uint8_t) value;
        value >>= 8;
    }
}

uint64_t
bench_get_be64 (const uint8_t *in)
{
    uint64_t value = 0;
    for (int i = 0; i < 8; i++)
        value = (value << 8) | in [i];
    return value;
}

static int
s_remove_entry (const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void) st; (void) flag; (void) ftw;
    if (remove (path) != 0 && errno != ENOENT)
        fprintf (stderr, "store_bench: cannot remove %s: %s\n", path, strerror (errno));
    return 0;
}

//  Remove path and everything under it; quiet when it does not exist.
void
bench_remove_tree (const char *path)
{
    nftw (path, s_remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

//  out = dir "/" name.  Paths come from --dir, whose length main checks,
//  so truncation here is a programming error.
void
bench_join (char out [PATH_MAX], const char *dir, const char *name)
{
    int len = snprintf (out, PATH_MAX, "%s/%s", dir, name);
    assert (len > 0 && len < PATH_MAX);
    (void) len;
}

bool
bench_exists (const char *path)
{
    struct stat st;
    return stat (path, &st) == 0;
}

//  Drop every file under path from the page cache, so the next read comes
//  from the disk (or at least from below the page cache).  Needs no root:
//  POSIX_FADV_DONTNEED evicts clean pages of a file we can open.  Called
//  with the store closed, so no RocksDB cache survives either.
static int
s_drop_entry (const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void) ftw;
    if (flag == FTW_F && S_ISREG (st->st_mode)) {
        int fd = open (path, O_RDONLY);
        if (fd >= 0) {
            fdatasync (fd);
            posix_fadvise (fd, 0, 0, POSIX_FADV_DONTNEED);
            close (fd);
        }
    }
    return 0;
}

void
bench_drop_cache (const char *path)
{
    nftw (path, s_drop_entry, 16, FTW_PHYS);
}

//  Bytes of the regular files under path.
static uint64_t s_tree_bytes;
static bool s_tree_blocks;         //  allocated blocks rather than sizes
static int
s_size_entry (const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void) path; (void) ftw;
    if (flag == FTW_F && S_ISREG (st->st_mode))
        s_tree_bytes += s_tree_blocks? (uint64_t) st->st_blocks * 512: (uint64_t) st->st_size;
    return 0;
}

static uint64_t
s_tree_walk (const char *path, bool blocks)
{
    s_tree_bytes = 0;
    s_tree_blocks = blocks;
    nftw (path, s_size_entry, 16, FTW_PHYS);
    return s_tree_bytes;
}

uint64_t
bench_tree_size (const char *path)
{
    return s_tree_walk (path, false);
}

uint64_t
bench_tree_disk (const char *path)
{
    return s_tree_walk (path, true);
}


//  ---------------------------------------------------------------------
//  The machine: store_bench prints it first, since every figure depends on it

//  The value of the first "key : value" line of a /proc file, or "?".
void
bench_proc_field (const char *file, const char *key, char *out, size_t size)
{
    snprintf (out, size, "?");
    FILE *handle = fopen (file, "r");
    if (!handle)
        return;
    char line [512];
    size_t key_len = strlen (key);
    while (fgets (line, sizeof line, handle)) {
        if (strncmp (line, key, key_len) == 0) {
            char *value = strchr (line, ':');
            if (value) {
                value++;
                while (*value == ' ' || *value == '\t')
                    value++;
                value [strcspn (value, "\n")] = 0;
                snprintf (out, size, "%s", value);
            }
            break;
        }
    }
    fclose (handle);
}

//  Filesystem type and device of the mount that holds path: the longest
//  mount point in /proc/self/mounts that prefixes its real path.
void
bench_filesystem (const char *path, char *out, size_t size)
{
    snprintf (out, size, "?");
    char real [PATH_MAX];
    if (!realpath (path, real))
        return;
    FILE *handle = fopen ("/proc/self/mounts", "r");
    if (!handle)
        return;
    char device [256], mount [PATH_MAX], type [64];
    size_t best = 0;
    while (fscanf (handle, "%255s %4095s %63s %*[^\n]", device, mount, type) == 3) {
        size_t len = strlen (mount);
        bool under = strncmp (real, mount, len) == 0
                  && (real [len] == '/' || real [len] == 0 || len == 1);
        if (under && len >= best) {
            best = len;
            if (snprintf (out, size, "%s on %s (%s)", type, mount, device) >= (int) size)
                out [size - 1] = 0;     //  a truncated device name is still useful
        }
    }
    fclose (handle);
}

//  RocksDB's C API has no version call and rocksdb/version.h is C++, but
//  every DB writes its version into its OPTIONS file: read it from there.
void
bench_rocksdb_version (const char *db_path, char *out, size_t size)
{
    snprintf (out, size, "?");
    DIR *dir = opendir (db_path);
    if (!dir)
        return;
    struct dirent *entry;
    while ((entry = readdir (dir))) {
        if (strncmp (entry->d_name, "OPTIONS-", 8) != 0)
            continue;
        char file [PATH_MAX];
        bench_join (file, db_path, entry->d_name);
        FILE *handle = fopen (file, "r");
        if (!handle)
            continue;
        char line [256];
        while (fgets (line, sizeof line, handle)) {
            char *at = strstr (line, "rocksdb_version=");
            if (at) {
                at += strlen ("rocksdb_version=");
                at [strcspn (at, "\r\n")] = 0;
                snprintf (out, size, "%s", at);
                break;
            }
        }
        fclose (handle);
        break;
    }
    closedir (dir);
}

//  The three load averages from /proc/loadavg, or "?".
void
bench_loadavg (char *out, size_t size)
{
    snprintf (out, size, "?");
    FILE *handle = fopen ("/proc/loadavg", "r");
    if (!handle)
        return;
    double one, five, fifteen;
    if (fscanf (handle, "%lf %lf %lf", &one, &five, &fifteen) == 3)
        snprintf (out, size, "%.2f %.2f %.2f", one, five, fifteen);
    fclose (handle);
}


//  ---------------------------------------------------------------------
//  The raw side: one default column family, 8-byte big-endian seq keys

void
bench_raw_close (bench_raw_t *self)
{
    if (self->db)
        rocksdb_close (self->db);
    if (self->batch)
        rocksdb_writebatch_destroy (self->batch);
    if (self->write)
        rocksdb_writeoptions_destroy (self->write);
    if (self->read)
        rocksdb_readoptions_destroy (self->read);
    if (self->options)
        rocksdb_options_destroy (self->options);
    if (self->table)
        rocksdb_block_based_options_destroy (self->table);
    if (self->cache)
        rocksdb_cache_destroy (self->cache);
    memset (self, 0, sizeof *self);
}

//  Open (creating) the raw DB at path with the store's engine options.
//  Returns 0, or -1 after printing why.
int
bench_raw_open (bench_raw_t *self, const char *path, bool sync)
{
    memset (self, 0, sizeof *self);
    //  As s_configure in store/herald_store.c sets them for the "events"
    //  column family, the one that holds the same keys and values: the
    //  same tuning on purpose (see S_RAW_WRITE_BUFFER_MB above)
    self->options = rocksdb_options_create ();
    rocksdb_options_increase_parallelism (self->options, 2);
    rocksdb_options_set_create_if_missing (self->options, 1);
    rocksdb_options_set_max_background_jobs (self->options, 4);
    rocksdb_options_set_bytes_per_sync (self->options, 1 << 20);
    rocksdb_options_set_info_log_level (self->options, 2);
    rocksdb_options_set_keep_log_file_num (self->options, 4);
    rocksdb_options_set_compression (self->options, rocksdb_lz4_compression);
    rocksdb_options_set_level_compaction_dynamic_level_bytes (self->options, 1);
    rocksdb_options_set_write_buffer_size (self->options,
                                           (size_t) S_RAW_WRITE_BUFFER_MB << 20);
    rocksdb_options_set_max_write_buffer_number (self->options, 4);
    self->table = rocksdb_block_based_options_create ();
    self->cache = rocksdb_cache_create_lru (S_RAW_BLOCK_CACHE_BYTES);
    rocksdb_block_based_options_set_block_cache (self->table, self->cache);
    rocksdb_block_based_options_set_cache_index_and_filter_blocks (self->table, 0);
    rocksdb_options_set_block_based_table_factory (self->options, self->table);

    self->write = rocksdb_writeoptions_create ();
    rocksdb_writeoptions_set_sync (self->write, sync);
    self->read = rocksdb_readoptions_create ();
    self->batch = rocksdb_writebatch_create ();

    char *error = NULL;
    self->db = rocksdb_open (self->options, path, &error);
    if (!self->db) {
        fprintf (stderr, "store_bench: raw rocksdb_open %s: %s\n", path, error);
        rocksdb_free (error);
        bench_raw_close (self);
        return -1;
    }
    return 0;
}

//  Write one batch of count values of value_len bytes, keys first_seq on,
//  values sliced from pool as the Herald side slices its payloads.
int
bench_raw_write (bench_raw_t *self, uint64_t first_seq, size_t count, size_t value_len,
                 const uint8_t *pool, size_t pool_size)
{
    rocksdb_writebatch_clear (self->batch);
    for (size_t i = 0; i < count; i++) {
        uint64_t seq = first_seq + i;
        uint8_t key [8];
        bench_put_be64 (key, seq);
        size_t offset = (size_t) ((seq * 2654435761u) % (pool_size - value_len));
        rocksdb_writebatch_put (self->batch, (const char *) key, sizeof key,
                                (const char *) pool + offset, value_len);
    }
    char *error = NULL;
    rocksdb_write (self->db, self->write, self->batch, &error);
    if (error) {
        fprintf (stderr, "store_bench: raw rocksdb_write: %s\n", error);
        rocksdb_free (error);
        return -1;
    }
    return 0;
}

//  The highest seq key in the raw DB, 0 when empty.
uint64_t
bench_raw_last_seq (bench_raw_t *self)
{
    rocksdb_iterator_t *iter = rocksdb_create_iterator (self->db, self->read);
    rocksdb_iter_seek_to_last (iter);
    uint64_t seq = 0;
    if (rocksdb_iter_valid (iter)) {
        size_t len;
        const char *key = rocksdb_iter_key (iter, &len);
        if (len == 8)
            seq = bench_get_be64 ((const uint8_t *) key);
    }
    rocksdb_iter_destroy (iter);
    return seq;
}
