/*  =========================================================================
    testutil - helpers shared by the store tests and the crash writer

    Temporary data directories (made with mkdtemp, removed recursively),
    events with fresh random ids, a one-batch append that reports what
    happened, and envelope decoding for checking stored fields.

    Nothing here uses criterion: tests/store_writer.c links this file too,
    so every helper reports failure by its return value and the tests
    assert on it.
    =========================================================================
*/

#ifndef HERALD_TESTUTIL_H_INCLUDED
#define HERALD_TESTUTIL_H_INCLUDED

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <msgpack.h>
#include "herald.h"
#include "herald_event.h"
#include "herald_store.h"

//  Make a fresh empty directory under $TMPDIR (or /tmp) named after tag.
//  Returns its path, which the caller owns (tu_tmpdir_destroy), or NULL.
char *
    tu_tmpdir_new (const char *tag);

//  Remove the directory *path_p and everything under it, free the path
//  and clear *path_p.  NULL-safe.
void
    tu_tmpdir_destroy (char **path_p);

//  Remove path and everything under it.  Returns 0, or -1 (errno set).
int
    tu_rmtree (const char *path);

//  A path under dir: "dir/name", malloc'd, caller owns.
char *
    tu_path (const char *dir, const char *name);

//  A program of the build, named by its path in the build tree
//  ("tests/store_writer"): $HERALD_BUILDDIR/relative (make check), else
//  beside this test's binary or in a directory above it (under libtool
//  the binary may sit in .libs/), as relative or by its last part.
//  malloc'd, caller owns; NULL when not found.
char *
    tu_build_program (const char *relative);

//  Write len bytes to the file at path (creating or truncating).  Returns 0 or -1.
int
    tu_write_file (const char *path, const void *bytes, size_t len);

//  A description of every file under dir: one line per entry, sorted, with
//  its relative path, type, size and a hash of its content.  Two equal
//  snapshots mean nothing under dir changed.  Caller owns (free).
char *
    tu_dir_snapshot (const char *dir);

//  Bytes of RocksDB's WAL files (NNNNNN.log) in the data directory dir;
//  with remove, each is deleted once counted.  -1 when dir cannot be
//  listed, or a file cannot be measured or removed.
int64_t
    tu_wal_bytes (const char *dir, bool remove);

//  len random bytes (getrandom, falling back to /dev/urandom).
void
    tu_random_bytes (void *buffer, size_t len);

//  A fresh random 16-byte id.
void
    tu_random_id (uint8_t id [HERALD_ID_BYTES]);

//  An event with a fresh random id, the given topic and data (borrowed:
//  they must outlive the event), no type, schema, meta or expect.
herald_event_t
    tu_event_n (const char *topic, size_t topic_len, const void *data, size_t data_len);

//  The same for NUL-terminated topic and data (data may be NULL: empty).
herald_event_t
    tu_event (const char *topic, const char *data);

//  What one single-batch append did.
typedef struct {
    herald_err call;                //  what herald_store_append returned
    herald_err status;              //  the batch's status
    size_t conflict_index;
    uint64_t expected;
    uint64_t actual;
    herald_error_t err;             //  filled by append when call != OK
} tu_append_info_t;

//  Append events[0..count) as one batch in one append call.  results (count
//  entries) receives what append assigned; info, when not NULL, the call's
//  return, the batch status and the conflict fields.  Returns the call's
//  error when it failed, else the batch's status.
herald_err
    tu_append (herald_store_t *store, const herald_event_t *events, size_t count,
               herald_append_result_t *results, tu_append_info_t *info);

//  A decoded envelope: a private copy of its bytes, the zone and the event,
//  whose pointers borrow both.  Do not copy or move one once decoded.
typedef struct {
    uint8_t *bytes;
    size_t len;
    msgpack_zone zone;
    bool zone_ready;
    herald_event_t event;
    herald_error_t err;
} tu_decoded_t;

//  Decode a copy of bytes[0..len) into self (herald_event_decode).
//  Returns its result; call tu_decoded_fini afterwards in every case.
herald_err
    tu_decode (tu_decoded_t *self, const void *bytes, size_t len);

//  herald_store_get(seq) and tu_decode.  Returns the first failure.
herald_err
    tu_get (herald_store_t *store, uint64_t seq, tu_decoded_t *self);

//  Free what tu_decode made; self may be zeroed or decoded.
void
    tu_decoded_fini (tu_decoded_t *self);

//  The top-level keys of an envelope, in order, written to keys as one
//  comma-separated string ("id,topic,seq,ver,ts,data").  Checks the raw
//  MessagePack without the protocol decoder.  Returns 0, or -1 when the
//  bytes are not exactly one map with str keys.
int
    tu_envelope_keys (const void *bytes, size_t len, char *keys, size_t keys_size);

//  Lower-case hex of bytes[0..len) into out (2 * len + 1 bytes).
void
    tu_hex (const void *bytes, size_t len, char *out);

//  Parse 2 * len hex characters into bytes.  Returns false if not hex.
bool
    tu_unhex (const char *text, void *bytes, size_t len);

//  Wall clock, Unix epoch nanoseconds.
uint64_t
    tu_now_ns (void);

//  Monotonic clock, nanoseconds.
uint64_t
    tu_mono_ns (void);

//  splitmix64: a deterministic generator for repeatable tests.
uint64_t
    tu_rand (uint64_t *state);

//  Big-endian 64-bit store and load.
void
    tu_put_be64 (uint8_t *out, uint64_t value);
uint64_t
    tu_get_be64 (const uint8_t *in);

#endif
