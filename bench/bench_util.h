/*  =========================================================================
    bench_util - what store_bench needs besides the store itself

    The general helpers (clock, number formatting, big-endian keys, file
    trees, the machine's description) and the raw-RocksDB side that every
    Herald figure is measured against.  None of it knows Herald, so the
    raw figures cannot borrow anything from the code they are the limit of.
    =========================================================================
*/

#ifndef BENCH_UTIL_H_INCLUDED
#define BENCH_UTIL_H_INCLUDED

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <rocksdb/c.h>

//  ---------------------------------------------------------------------
//  Clock, formatting, keys

//  Seconds on the monotonic clock; only differences mean anything.
double
    bench_now (void);

//  Sleep until bench_now () reaches when (at once when it has); an
//  absolute deadline, so a schedule of sleeps does not drift.
void
    bench_sleep_until (double when);

//  Format value with thousands separators ("12,345,678") into buffer;
//  returns buffer.
const char *
    bench_count (char *buffer, size_t size, double value);

//  8-byte big-endian integers, so that key order is numeric order.
void
    bench_put_be64 (uint8_t *out, uint64_t value);
uint64_t
    bench_get_be64 (const uint8_t *in);


//  ---------------------------------------------------------------------
//  Files

//  Remove path and everything under it; quiet when it does not exist.
void
    bench_remove_tree (const char *path);

//  out = dir "/" name; the caller keeps dir short enough (main checks
//  --dir), so truncation is a programming error.
void
    bench_join (char out [PATH_MAX], const char *dir, const char *name);

bool
    bench_exists (const char *path);

//  Drop every file under path from the page cache, so the next read comes
//  from the disk.  Call it with the DB under path closed.
void
    bench_drop_cache (const char *path);

//  Bytes of the regular files under path.
uint64_t
    bench_tree_size (const char *path);

//  Bytes the regular files under path take on disk: their allocated
//  blocks (RocksDB preallocates its write-ahead log, so this is what a
//  full disk would count).
uint64_t
    bench_tree_disk (const char *path);


//  ---------------------------------------------------------------------
//  The machine; each writes "?" into out when it cannot tell

//  The value of the first "key : value" line of a /proc file.
void
    bench_proc_field (const char *file, const char *key, char *out, size_t size);

//  "type on mount (device)" of the filesystem that holds path.
void
    bench_filesystem (const char *path, char *out, size_t size);

//  The RocksDB version that wrote the DB at db_path.
void
    bench_rocksdb_version (const char *db_path, char *out, size_t size);

//  The three load averages from /proc/loadavg.
void
    bench_loadavg (char *out, size_t size);


//  ---------------------------------------------------------------------
//  The raw side: one default column family, 8-byte big-endian seq keys

//  What bench_raw_open configures, for the report; kept beside the code
//  that sets it so the two cannot drift apart.
#define BENCH_RAW_OPTIONS_TEXT \
    "as the store's \"events\" CF: write_buffer_size 64 MiB x4, LZ4,\n" \
    "    no bloom filter (Herald's events CF has a prefix bloom to find runs by seq),\n" \
    "    128 MiB LRU block cache (index/filter blocks held by tables),\n" \
    "    dynamic level bytes, increase_parallelism(2), max_background_jobs 4,\n" \
    "    bytes_per_sync 1 MiB; one column family (Herald writes 4: events, ids,\n" \
    "    streams, topics)"

//  An open raw DB.  The caller owns the struct (usually on its stack);
//  bench_raw_close frees what it holds.  db and read are for the caller's
//  own iterators and Gets.
typedef struct {
    rocksdb_t *db;
    rocksdb_options_t *options;
    rocksdb_block_based_table_options_t *table;
    rocksdb_cache_t *cache;
    rocksdb_writeoptions_t *write;
    rocksdb_readoptions_t *read;
    rocksdb_writebatch_t *batch;
} bench_raw_t;

//  Open (creating) the raw DB at path with the store's engine options,
//  fsyncing each write when sync.  Returns 0, or -1 after printing why
//  (self is then closed).
int
    bench_raw_open (bench_raw_t *self, const char *path, bool sync);

//  Close the DB and free what self holds; self is zeroed.
void
    bench_raw_close (bench_raw_t *self);

//  Write one batch of count values of value_len bytes, keys first_seq on.
//  Values are slices of pool (pool_size bytes, more than value_len), at
//  offsets that move with the seq.  Returns 0, or -1 after printing why.
int
    bench_raw_write (bench_raw_t *self, uint64_t first_seq, size_t count,
                     size_t value_len, const uint8_t *pool, size_t pool_size);

//  The highest seq key in the raw DB, 0 when empty.
uint64_t
    bench_raw_last_seq (bench_raw_t *self);

#endif
