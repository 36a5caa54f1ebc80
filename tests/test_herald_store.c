/*  =========================================================================
    test_herald_store - the event log's contract, one behaviour per test

    Written from store/herald_store.h and docs/protocol.md ("PUBLISH"), not
    from the implementation: open and refusal, recovery of counters on
    open, seq / ver / ts rules, dedup by id, `expect`, batch atomicity,
    group commit, and reading back exactly what was stored.

    Every test gets its own temporary directory (removed in .fini) and the
    store lives in its subdirectory "db", which open must create.
    =========================================================================
*/

#include <criterion/criterion.h>
#include <errno.h>
#include <inttypes.h>
#include <ctype.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <ftw.h>
#include <rocksdb/c.h>

#include "testutil.h"

#include "storetest.h"

static char *s_dir;                 //  the test's temporary directory
static char *s_db;                  //  s_dir/db, the store's directory
static herald_store_t *s_store;

static void
s_setup (void)
{
    s_dir = tu_tmpdir_new ("store");
    cr_assert_not_null (s_dir, "cannot make a temporary directory: %s", strerror (errno));
    s_db = tu_path (s_dir, "db");
    cr_assert_not_null (s_db);
}

static void
s_teardown (void)
{
    herald_store_destroy (&s_store);
    free (s_db);
    s_db = NULL;
    tu_tmpdir_destroy (&s_dir);
}

TestSuite (herald_store, .init = s_setup, .fini = s_teardown, .timeout = 120);

//  Open (or reopen) the test's store with the given durability.
static void
s_open (herald_durability_t durability)
{
    herald_store_destroy (&s_store);
    herald_store_options_t options = { .durability = durability };
    herald_error_t err;
    memset (&err, 0, sizeof err);
    s_store = herald_store_open (s_db, &options, &err);
    cr_assert_not_null (s_store, "open %s: code %d: %s", s_db, err.code, err.message);
}

static void
s_reopen (void)
{
    herald_store_destroy (&s_store);
    cr_assert_null (s_store, "destroy must clear the caller's pointer");
    s_open (HERALD_DURABILITY_SYNC);
}

//  Append one batch that must succeed.
static void
s_append_ok (const herald_event_t *events, size_t count, herald_append_result_t *results)
{
    tu_append_info_t info;
    herald_err rc = tu_append (s_store, events, count, results, &info);
    cr_assert_eq (rc, HERALD_OK, "append: call %d, batch status %d (conflict at %zu: expected %"
                  PRIu64 ", actual %" PRIu64 "): %s", info.call, info.status,
                  info.conflict_index, info.expected, info.actual, info.err.message);
}

//  Append n events on topic, one batch; results optional.
static void
s_append_topic (const char *topic, size_t count, herald_append_result_t *results)
{
    herald_event_t *events = calloc (count, sizeof (herald_event_t));
    herald_append_result_t *own = results? results: calloc (count, sizeof *own);
    cr_assert (events && own);
    for (size_t index = 0; index < count; index++)
        events [index] = tu_event (topic, "payload");
    s_append_ok (events, count, own);
    if (!results)
        free (own);
    free (events);
}

//  Check that event seq is stored with this id, topic and ver.
static void
s_assert_stored (uint64_t seq, const uint8_t *id, const char *topic, uint64_t ver)
{
    tu_decoded_t decoded;
    herald_err rc = tu_get (s_store, seq, &decoded);
    cr_assert_eq (rc, HERALD_OK, "get %" PRIu64 ": %d %s", seq, rc, decoded.err.message);
    cr_assert_eq (decoded.event.seq, seq, "envelope of get(%" PRIu64 ") has seq %" PRIu64,
                  seq, decoded.event.seq);
    if (id)
        cr_assert_arr_eq (decoded.event.id, id, HERALD_ID_BYTES, "seq %" PRIu64 ": wrong id", seq);
    if (topic) {
        cr_assert_eq (decoded.event.topic_len, strlen (topic));
        cr_assert (memcmp (decoded.event.topic, topic, strlen (topic)) == 0,
                   "seq %" PRIu64 ": topic %.*s, expected %s", seq,
                   (int) decoded.event.topic_len, decoded.event.topic, topic);
    }
    if (ver)
        cr_assert_eq (decoded.event.ver, ver, "seq %" PRIu64 ": ver %" PRIu64 ", expected %"
                      PRIu64, seq, decoded.event.ver, ver);
    tu_decoded_fini (&decoded);
}

static uint64_t
s_ts_of (uint64_t seq)
{
    tu_decoded_t decoded;
    herald_err rc = tu_get (s_store, seq, &decoded);
    cr_assert_eq (rc, HERALD_OK, "get %" PRIu64 ": %d %s", seq, rc, decoded.err.message);
    uint64_t ts = decoded.event.ts;
    tu_decoded_fini (&decoded);
    return ts;
}

static uint64_t
s_topic_ver (const char *topic)
{
    return s_ver_of (s_store, topic, strlen (topic));
}

//  ---------------------------------------------------------------------
//  Open, refusal, recovery

Test (herald_store, open_creates_missing_dir)
{
    struct stat st;
    cr_assert_neq (stat (s_db, &st), 0, "the directory must not exist yet");
    s_open (HERALD_DURABILITY_SYNC);
    cr_assert_eq (stat (s_db, &st), 0, "open must create %s", s_db);
    cr_assert (S_ISDIR (st.st_mode));
    cr_assert_str_eq (herald_store_path (s_store), s_db);
    cr_assert_eq (herald_store_head (s_store), 0);
    cr_assert_eq (herald_store_event_count (s_store), 0);
    cr_assert_eq (herald_store_topic_count (s_store), 0);
    cr_assert_eq (herald_store_last_ts (s_store), 0);
}

Test (herald_store, open_existing_empty_dir_makes_a_store)
{
    cr_assert_eq (mkdir (s_db, 0700), 0);
    s_open (HERALD_DURABILITY_SYNC);
    s_append_topic ("t", 1, NULL);
    s_reopen ();
    cr_assert_eq (herald_store_head (s_store), 1);
}

Test (herald_store, destroy_is_null_safe)
{
    herald_store_t *none = NULL;
    herald_store_destroy (&none);       //  *self_p NULL is fine; self_p NULL is a
    cr_assert_null (none);              //  programming error (czmq's assert)
}

Test (herald_store, reopen_recovers_counters)
{
    s_open (HERALD_DURABILITY_SYNC);
    herald_store_set_clock (s_store, 1000);
    s_append_topic ("orders.1", 3, NULL);
    s_append_topic ("orders.2", 2, NULL);
    herald_store_set_clock (s_store, 5000);
    s_append_topic ("orders.1", 1, NULL);
    s_append_topic ("users.7", 4, NULL);
    cr_assert_eq (herald_store_head (s_store), 10);
    cr_assert_eq (herald_store_last_ts (s_store), 5000);

    s_reopen ();
    cr_assert_eq (herald_store_head (s_store), 10, "head after reopen: %" PRIu64,
                  herald_store_head (s_store));
    cr_assert_eq (herald_store_event_count (s_store), 10);
    cr_assert_eq (herald_store_topic_count (s_store), 3);
    cr_assert_eq (herald_store_last_ts (s_store), 5000, "last_ts after reopen: %" PRIu64,
                  herald_store_last_ts (s_store));
    cr_assert_eq (s_topic_ver ("orders.1"), 4);
    cr_assert_eq (s_topic_ver ("orders.2"), 2);
    cr_assert_eq (s_topic_ver ("users.7"), 4);

    //  And appends go on from the recovered counters
    herald_append_result_t result;
    herald_event_t event = tu_event ("orders.2", "more");
    herald_store_set_clock (s_store, 10);       //  behind the recovered last ts
    s_append_ok (&event, 1, &result);
    cr_assert_eq (result.seq, 11);
    cr_assert_eq (result.ver, 3);
    cr_assert_not (result.dup);
    cr_assert_eq (s_ts_of (11), 5000, "ts must not fall below the recovered last ts");
}

//  True for the names RocksDB gives its own files.
static bool
s_is_rocksdb_file (const char *name)
{
    size_t len = strlen (name);
    if (!strcmp (name, "CURRENT") || !strcmp (name, "IDENTITY") || !strcmp (name, "LOCK")
    ||  !strcmp (name, "LOG") || !strncmp (name, "LOG.old", 7)
    ||  !strncmp (name, "MANIFEST-", 9) || !strncmp (name, "OPTIONS-", 8))
        return true;
    const char *suffixes [] = { ".log", ".sst", ".blob", ".dbtmp" };
    for (size_t index = 0; index < 4; index++) {
        size_t slen = strlen (suffixes [index]);
        if (len > slen && !strcmp (name + len - slen, suffixes [index]))
            return true;
    }
    return false;
}

//  Side files: every regular file under the store that RocksDB did not name.
#define MAX_SIDE_FILES 32
static struct {
    char *path [MAX_SIDE_FILES];
    uint8_t *bytes [MAX_SIDE_FILES];
    size_t len [MAX_SIDE_FILES];
    size_t count;
} s_side;

static int
s_side_entry (const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    if (flag != FTW_F || !S_ISREG (st->st_mode) || s_is_rocksdb_file (path + ftw->base))
        return 0;
    cr_assert_lt (s_side.count, MAX_SIDE_FILES);
    FILE *file = fopen (path, "rb");
    cr_assert_not_null (file);
    size_t index = s_side.count++;
    s_side.path [index] = strdup (path);
    s_side.len [index] = (size_t) st->st_size;
    s_side.bytes [index] = malloc (s_side.len [index] + 1);
    cr_assert_eq (fread (s_side.bytes [index], 1, s_side.len [index], file), s_side.len [index]);
    fclose (file);
    return 0;
}

Test (herald_store, reopen_recovers_counters_from_data_not_side_file)
{
    //  Whatever files the store keeps beside RocksDB's own, put back their
    //  stale copies from an earlier session: the counters must still come
    //  from the data (a crash must never leave a counter that disagrees with the log).
    s_open (HERALD_DURABILITY_SYNC);
    herald_store_set_clock (s_store, 100);
    s_append_topic ("a", 3, NULL);
    s_append_topic ("b", 2, NULL);
    herald_store_destroy (&s_store);
    memset (&s_side, 0, sizeof s_side);
    cr_assert_eq (nftw (s_db, s_side_entry, 16, FTW_PHYS), 0);

    s_open (HERALD_DURABILITY_SYNC);
    herald_store_set_clock (s_store, 200);
    s_append_topic ("a", 4, NULL);
    s_append_topic ("c", 1, NULL);
    herald_store_destroy (&s_store);
    for (size_t index = 0; index < s_side.count; index++) {
        cr_log_info ("restoring stale side file %s", s_side.path [index]);
        cr_assert_eq (tu_write_file (s_side.path [index], s_side.bytes [index],
                                     s_side.len [index]), 0);
        free (s_side.path [index]);
        free (s_side.bytes [index]);
    }
    s_open (HERALD_DURABILITY_SYNC);
    cr_assert_eq (herald_store_head (s_store), 10, "head %" PRIu64, herald_store_head (s_store));
    cr_assert_eq (herald_store_event_count (s_store), 10);
    cr_assert_eq (herald_store_topic_count (s_store), 3);
    cr_assert_eq (herald_store_last_ts (s_store), 200);
    cr_assert_eq (s_topic_ver ("a"), 7);
    cr_assert_eq (s_topic_ver ("c"), 1);
    herald_append_result_t result;
    herald_event_t event = tu_event ("a", "x");
    s_append_ok (&event, 1, &result);
    cr_assert_eq (result.seq, 11);
    cr_assert_eq (result.ver, 8);
}

static bool
s_mentions_lock (const char *message)
{
    char lower [256];
    size_t index;
    for (index = 0; message [index] && index < sizeof lower - 1; index++)
        lower [index] = (char) tolower ((unsigned char) message [index]);
    lower [index] = 0;
    return strstr (lower, "lock") || strstr (lower, "in use") || strstr (lower, "another");
}

Test (herald_store, second_open_in_same_process_is_locked)
{
    s_open (HERALD_DURABILITY_SYNC);
    herald_error_t err;
    memset (&err, 0, sizeof err);
    herald_store_t *second = herald_store_open (s_db, NULL, &err);
    cr_assert_null (second, "a second open of an open store must fail");
    cr_assert_eq (err.code, HERALD_ERR_LOCKED, "code %d (%s), expected HERALD_ERR_LOCKED",
                  err.code, err.message);
    cr_assert (strlen (err.message) > 0, "LOCKED needs a message for people");
    cr_assert (s_mentions_lock (err.message), "message does not say the store is locked / in use: \"%s\"",
               err.message);
    //  The first store is unharmed, and the lock goes with it
    s_append_topic ("t", 1, NULL);
    herald_store_destroy (&s_store);
    s_open (HERALD_DURABILITY_SYNC);
    cr_assert_eq (herald_store_head (s_store), 1);
}

Test (herald_store, open_held_by_another_process_is_locked)
{
    //  The child forks before any RocksDB use, waits until the parent has
    //  the store open, tries to open it, and reports code and message.
    int go [2], report [2];
    cr_assert_eq (pipe (go), 0);
    cr_assert_eq (pipe (report), 0);
    pid_t pid = fork ();
    cr_assert_geq (pid, 0);
    if (pid == 0) {
        close (go [1]);
        close (report [0]);
        char byte;
        if (read (go [0], &byte, 1) != 1)
            _exit (100);
        herald_error_t err;
        memset (&err, 0, sizeof err);
        herald_store_t *store = herald_store_open (s_db, NULL, &err);
        int code = store? 101: (int) err.code;
        herald_store_destroy (&store);
        ssize_t rc = write (report [1], err.message, strlen (err.message));
        (void) rc;
        close (report [1]);
        _exit (code);
    }
    close (go [0]);
    close (report [1]);
    s_open (HERALD_DURABILITY_SYNC);
    cr_assert_eq (write (go [1], "g", 1), 1);
    close (go [1]);
    char message [256] = "";
    size_t used = 0;
    ssize_t got;
    while (used < sizeof message - 1
    &&    (got = read (report [0], message + used, sizeof message - 1 - used)) > 0)
        used += (size_t) got;
    message [used] = 0;
    close (report [0]);
    int status = 0;
    cr_assert_eq (waitpid (pid, &status, 0), pid);
    cr_assert (WIFEXITED (status), "child died: status %d", status);
    cr_assert_neq (WEXITSTATUS (status), 101, "another process opened a store that is open here");
    cr_assert_eq (WEXITSTATUS (status), HERALD_ERR_LOCKED, "child got code %d (%s)",
                  WEXITSTATUS (status), message);
    cr_assert (s_mentions_lock (message), "message does not say the store is locked / in use: \"%s\"",
               message);
}

Test (herald_store, refuses_dir_with_unrelated_files)
{
    cr_assert_eq (mkdir (s_db, 0700), 0);
    char *notes = tu_path (s_db, "notes.txt");
    cr_assert_eq (tu_write_file (notes, "my thesis, do not delete\n", 25), 0);
    free (notes);
    char *before = tu_dir_snapshot (s_db);
    cr_assert_not_null (before);

    herald_error_t err;
    memset (&err, 0, sizeof err);
    s_store = herald_store_open (s_db, NULL, &err);
    cr_assert_null (s_store, "a directory of unrelated files must be refused");
    cr_assert_eq (err.code, HERALD_ERR_NOT_A_STORE, "code %d (%s)", err.code, err.message);
    cr_assert (strlen (err.message) > 0);
    char *after = tu_dir_snapshot (s_db);
    cr_assert_str_eq (after, before, "the refused directory was modified");
    free (before);
    free (after);
}

//  Make a RocksDB database at path with the raw C API: no Herald marker.
static void
s_make_foreign_rocksdb (const char *path)
{
    rocksdb_options_t *options = rocksdb_options_create ();
    rocksdb_options_set_create_if_missing (options, 1);
    char *error = NULL;
    rocksdb_t *db = rocksdb_open (options, path, &error);
    cr_assert_null (error, "rocksdb_open: %s", error);
    rocksdb_writeoptions_t *write_options = rocksdb_writeoptions_create ();
    rocksdb_put (db, write_options, "user", 4, "data", 4, &error);
    cr_assert_null (error, "rocksdb_put: %s", error);
    rocksdb_put (db, write_options, "\x00\x00\x00\x01", 4, "seq-like", 8, &error);
    cr_assert_null (error);
    rocksdb_writeoptions_destroy (write_options);
    rocksdb_close (db);
    rocksdb_options_destroy (options);
}

Test (herald_store, refuses_foreign_rocksdb_database)
{
    s_make_foreign_rocksdb (s_db);
    char *before = tu_dir_snapshot (s_db);
    cr_assert_not_null (before);

    herald_error_t err;
    memset (&err, 0, sizeof err);
    s_store = herald_store_open (s_db, NULL, &err);
    cr_assert_null (s_store, "a RocksDB database without Herald's marker must be refused");
    cr_assert_eq (err.code, HERALD_ERR_NOT_A_STORE, "code %d (%s)", err.code, err.message);
    cr_assert (strlen (err.message) > 0);
    char *after = tu_dir_snapshot (s_db);
    cr_assert_str_eq (after, before, "the foreign database was modified");
    free (before);
    free (after);

    //  And its data is still there
    rocksdb_options_t *options = rocksdb_options_create ();
    char *error = NULL;
    rocksdb_t *db = rocksdb_open_for_read_only (options, s_db, 0, &error);
    cr_assert_null (error, "%s", error);
    rocksdb_readoptions_t *read_options = rocksdb_readoptions_create ();
    size_t len = 0;
    char *value = rocksdb_get (db, read_options, "user", 4, &len, &error);
    cr_assert_null (error);
    cr_assert (value && len == 4 && !memcmp (value, "data", 4));
    rocksdb_free (value);
    rocksdb_readoptions_destroy (read_options);
    rocksdb_close (db);
    rocksdb_options_destroy (options);
}

//  ---------------------------------------------------------------------
//  seq, ver, ts

Test (herald_store, seq_gapless_across_batches_and_reopen)
{
    s_open (HERALD_DURABILITY_SYNC);
    uint64_t expected = 1;
    for (size_t round = 0; round < 2; round++) {
        for (size_t size = 1; size <= 7; size++) {
            herald_event_t events [7];
            herald_append_result_t results [7];
            for (size_t index = 0; index < size; index++)
                events [index] = tu_event (index % 2? "odd": "even", "x");
            s_append_ok (events, size, results);
            for (size_t index = 0; index < size; index++) {
                cr_assert_eq (results [index].seq, expected, "got seq %" PRIu64 ", expected %"
                              PRIu64, results [index].seq, expected);
                cr_assert_not (results [index].dup);
                expected++;
            }
            cr_assert_eq (herald_store_head (s_store), expected - 1);
        }
        s_reopen ();
    }
    for (uint64_t seq = 1; seq < expected; seq++)
        s_assert_stored (seq, NULL, NULL, 0);
    cr_assert_eq (herald_store_event_count (s_store), expected - 1);
}

Test (herald_store, ver_gapless_per_topic)
{
    s_open (HERALD_DURABILITY_SYNC);
    const char *topics [] = { "alpha", "beta", "alpha.1", "gamma" };
    uint64_t vers [4] = { 0 };
    uint64_t state = 42;
    for (size_t round = 0; round < 20; round++) {
        size_t size = 1 + tu_rand (&state) % 9;
        herald_event_t events [9];
        size_t which [9];
        herald_append_result_t results [9];
        for (size_t index = 0; index < size; index++) {
            which [index] = tu_rand (&state) % 4;
            events [index] = tu_event (topics [which [index]], "v");
        }
        s_append_ok (events, size, results);
        for (size_t index = 0; index < size; index++) {
            vers [which [index]]++;
            cr_assert_eq (results [index].ver, vers [which [index]],
                          "topic %s: ver %" PRIu64 ", expected %" PRIu64,
                          topics [which [index]], results [index].ver, vers [which [index]]);
            s_assert_stored (results [index].seq, events [index].id, topics [which [index]],
                             vers [which [index]]);
        }
        if (round == 10)
            s_reopen ();
    }
    for (size_t index = 0; index < 4; index++)
        cr_assert_eq (s_topic_ver (topics [index]), vers [index]);
}

Test (herald_store, ts_never_decreases_when_clock_goes_back)
{
    s_open (HERALD_DURABILITY_SYNC);
    herald_store_set_clock (s_store, 5000000);
    s_append_topic ("t", 2, NULL);
    herald_store_set_clock (s_store, 1000);
    s_append_topic ("t", 3, NULL);
    herald_store_set_clock (s_store, 4999999);
    s_append_topic ("u", 1, NULL);
    for (uint64_t seq = 1; seq <= 6; seq++)
        cr_assert_eq (s_ts_of (seq), 5000000, "seq %" PRIu64 ": ts %" PRIu64
                      " (ts = max(clock, last ts))", seq, s_ts_of (seq));
    cr_assert_eq (herald_store_last_ts (s_store), 5000000);
}

Test (herald_store, ts_follows_clock_forwards)
{
    s_open (HERALD_DURABILITY_SYNC);
    uint64_t clocks [] = { 1000, 1000, 2000, 2001, 1999, 900000, 900001 };
    uint64_t expect [] = { 1000, 1000, 2000, 2001, 2001, 900000, 900001 };
    for (size_t index = 0; index < 7; index++) {
        herald_store_set_clock (s_store, clocks [index]);
        herald_append_result_t result;
        herald_event_t event = tu_event ("clock", "tick");
        s_append_ok (&event, 1, &result);
        cr_assert_eq (s_ts_of (result.seq), expect [index], "clock %" PRIu64 ": ts %" PRIu64
                      ", expected %" PRIu64, clocks [index], s_ts_of (result.seq), expect [index]);
        cr_assert_eq (herald_store_last_ts (s_store), expect [index]);
    }
}

Test (herald_store, ts_never_decreases_across_reopen)
{
    s_open (HERALD_DURABILITY_SYNC);
    herald_store_set_clock (s_store, 7000000);
    s_append_topic ("t", 2, NULL);
    s_reopen ();
    herald_store_set_clock (s_store, 6000000);
    s_append_topic ("t", 1, NULL);
    cr_assert_eq (s_ts_of (3), 7000000, "ts %" PRIu64 " after reopen with the clock behind",
                  s_ts_of (3));
}

Test (herald_store, ts_is_real_time_in_ns_by_default)
{
    s_open (HERALD_DURABILITY_SYNC);
    uint64_t before = tu_now_ns ();
    s_append_topic ("t", 1, NULL);
    uint64_t after = tu_now_ns ();
    uint64_t ts = s_ts_of (1);
    cr_assert (ts + 1000000000ULL >= before && ts <= after + 1000000000ULL,
               "ts %" PRIu64 " is not the wall clock in ns (between %" PRIu64 " and %" PRIu64 ")",
               ts, before, after);
}

Test (herald_store, set_clock_zero_restores_real_clock)
{
    s_open (HERALD_DURABILITY_SYNC);
    herald_store_set_clock (s_store, 1000);
    s_append_topic ("t", 1, NULL);
    cr_assert_eq (s_ts_of (1), 1000);
    herald_store_set_clock (s_store, 0);
    uint64_t before = tu_now_ns ();
    s_append_topic ("t", 1, NULL);
    uint64_t ts = s_ts_of (2);
    cr_assert (ts + 1000000000ULL >= before, "ts %" PRIu64 " after set_clock (0): not the real clock",
               ts);
}

//  ---------------------------------------------------------------------
//  Dedup by id

Test (herald_store, duplicate_id_returns_original_seq)
{
    s_open (HERALD_DURABILITY_SYNC);
    herald_event_t first [3] = {
        tu_event ("t", "a"), tu_event ("t", "b"), tu_event ("u", "c")
    };
    herald_append_result_t results [3];
    s_append_ok (first, 3, results);
    s_append_topic ("t", 2, NULL);              //  seq 4, 5; t at ver 4

    herald_event_t again [2] = { first [1], tu_event ("t", "new") };
    herald_append_result_t again_results [2];
    s_append_ok (again, 2, again_results);
    cr_assert (again_results [0].dup, "a stored id must come back as a duplicate");
    cr_assert_eq (again_results [0].seq, results [1].seq);
    cr_assert_eq (again_results [0].ver, results [1].ver);
    cr_assert_not (again_results [1].dup);
    cr_assert_eq (again_results [1].seq, 6, "a duplicate must not take a seq");
    cr_assert_eq (again_results [1].ver, 5, "a duplicate must not take a ver");
    cr_assert_eq (herald_store_head (s_store), 6);
    cr_assert_eq (herald_store_event_count (s_store), 6);
    cr_assert_eq (s_topic_ver ("t"), 5);
    uint8_t *envelope = NULL;
    size_t len;
    cr_assert_eq (herald_store_get (s_store, 7, &envelope, &len, NULL), HERALD_ERR_NOT_FOUND);
    free (envelope);
}

//  The store skips the id lookup for ids above the greatest id stored;
//  the greatest itself, resent after a reopen, must still be a duplicate.
Test (herald_store, greatest_id_is_a_duplicate_after_reopen)
{
    s_open (HERALD_DURABILITY_SYNC);
    herald_event_t events [3] = {
        tu_event ("t", "a"), tu_event ("t", "b"), tu_event ("t", "c")
    };
    memset (events [0].id, 0x00, HERALD_ID_BYTES);
    memset (events [1].id, 0xff, HERALD_ID_BYTES);      //  the greatest possible id
    memset (events [2].id, 0x7f, HERALD_ID_BYTES);
    herald_append_result_t results [3];
    s_append_ok (events, 3, results);
    s_reopen ();
    herald_append_result_t again [3];
    s_append_ok (events, 3, again);
    for (int i = 0; i < 3; i++) {
        cr_assert (again [i].dup, "event %d must be a duplicate after reopen", i);
        cr_assert_eq (again [i].seq, results [i].seq);
    }
    cr_assert_eq (herald_store_head (s_store), 3);
}

//  Ids that arrive in descending order are each below the greatest stored
//  id, so each is looked up: all are new and stored once.
Test (herald_store, descending_ids_are_new_then_duplicates)
{
    s_open (HERALD_DURABILITY_SYNC);
    enum { COUNT = 50 };
    herald_event_t events [COUNT];
    herald_append_result_t results [COUNT];
    for (int i = 0; i < COUNT; i++) {
        events [i] = tu_event ("down", "x");
        memset (events [i].id, 0, HERALD_ID_BYTES);
        events [i].id [0] = (uint8_t) (200 - i);
        s_append_ok (&events [i], 1, &results [i]);
        cr_assert_not (results [i].dup, "id %d is new", i);
        cr_assert_eq (results [i].seq, (uint64_t) i + 1);
    }
    herald_append_result_t again [COUNT];
    s_append_ok (events, COUNT, again);
    for (int i = 0; i < COUNT; i++) {
        cr_assert (again [i].dup, "id %d was stored", i);
        cr_assert_eq (again [i].seq, (uint64_t) i + 1);
    }
    cr_assert_eq (herald_store_event_count (s_store), COUNT);
}

Test (herald_store, duplicate_is_recognised_by_id_alone)
{
    s_open (HERALD_DURABILITY_SYNC);
    herald_event_t event = tu_event ("orders.1", "original");
    herald_append_result_t result;
    s_append_ok (&event, 1, &result);
    herald_event_t impostor = tu_event ("other.topic", "different data");
    memcpy (impostor.id, event.id, HERALD_ID_BYTES);
    impostor.type = "Changed";
    impostor.type_len = 7;
    herald_append_result_t again;
    s_append_ok (&impostor, 1, &again);
    cr_assert (again.dup);
    cr_assert_eq (again.seq, 1);
    cr_assert_eq (again.ver, 1);
    cr_assert_eq (herald_store_topic_count (s_store), 1);
    cr_assert_eq (s_topic_ver ("other.topic"), 0);
    tu_decoded_t decoded;
    cr_assert_eq (tu_get (s_store, 1, &decoded), HERALD_OK);
    cr_assert_eq (decoded.event.data_len, 8);
    cr_assert (!memcmp (decoded.event.data, "original", 8), "the duplicate overwrote the event");
    cr_assert_null (decoded.event.type);
    tu_decoded_fini (&decoded);
}

Test (herald_store, duplicate_id_within_one_batch)
{
    s_open (HERALD_DURABILITY_SYNC);
    herald_event_t events [4] = {
        tu_event ("t", "a"), tu_event ("t", "b"), tu_event ("t", "c"), tu_event ("u", "d")
    };
    events [2] = events [0];                    //  same id twice in the batch
    herald_append_result_t results [4];
    s_append_ok (events, 4, results);
    cr_assert_not (results [0].dup);
    cr_assert_not (results [1].dup);
    cr_assert (results [2].dup, "the second copy in a batch is a duplicate of the first");
    cr_assert_eq (results [2].seq, results [0].seq);
    cr_assert_eq (results [2].ver, results [0].ver);
    cr_assert_not (results [3].dup);
    cr_assert_eq (results [0].seq, 1);
    cr_assert_eq (results [1].seq, 2);
    cr_assert_eq (results [3].seq, 3, "the in-batch duplicate must not take a seq");
    cr_assert_eq (results [1].ver, 2);
    cr_assert_eq (herald_store_head (s_store), 3);
    cr_assert_eq (herald_store_event_count (s_store), 3);
    cr_assert_eq (s_topic_ver ("t"), 2);
}

Test (herald_store, duplicate_id_across_batches_in_one_call)
{
    s_open (HERALD_DURABILITY_SYNC);
    herald_event_t a = tu_event ("t", "a");
    herald_event_t b [2] = { tu_event ("t", "b"), a };
    herald_append_result_t results_a, results_b [2];
    herald_batch_t batches [2] = {
        { .events = &a, .count = 1, .results = &results_a },
        { .events = b, .count = 2, .results = results_b },
    };
    herald_error_t err;
    memset (&err, 0, sizeof err);
    cr_assert_eq (herald_store_append (s_store, batches, 2, &err), HERALD_OK, "%s", err.message);
    cr_assert_eq (batches [0].status, HERALD_OK);
    cr_assert_eq (batches [1].status, HERALD_OK);
    cr_assert_not (results_a.dup);
    cr_assert_eq (results_a.seq, 1);
    cr_assert_not (results_b [0].dup);
    cr_assert_eq (results_b [0].seq, 2);
    cr_assert (results_b [1].dup, "an id stored by an earlier batch of the call is a duplicate");
    cr_assert_eq (results_b [1].seq, 1);
    cr_assert_eq (results_b [1].ver, 1);
    cr_assert_eq (herald_store_event_count (s_store), 2);
    cr_assert_eq (herald_store_head (s_store), 2);
}

Test (herald_store, duplicates_survive_reopen)
{
    s_open (HERALD_DURABILITY_SYNC);
    herald_event_t events [3] = { tu_event ("t", "a"), tu_event ("u", "b"), tu_event ("t", "c") };
    herald_append_result_t results [3];
    s_append_ok (events, 3, results);
    s_reopen ();
    herald_append_result_t again [3];
    s_append_ok (events, 3, again);
    for (size_t index = 0; index < 3; index++) {
        cr_assert (again [index].dup, "event %zu not a duplicate after reopen", index);
        cr_assert_eq (again [index].seq, results [index].seq);
        cr_assert_eq (again [index].ver, results [index].ver);
    }
    cr_assert_eq (herald_store_head (s_store), 3);
    cr_assert_eq (herald_store_event_count (s_store), 3);
}

//  ---------------------------------------------------------------------
//  The dedup index, read directly (herald inspect checks it)

Test (herald_store, lookup_id_finds_an_appended_event)
{
    s_open (HERALD_DURABILITY_SYNC);
    s_append_topic ("t", 2, NULL);
    herald_event_t events [2] = { tu_event ("t", "a"), tu_event ("u", "b") };
    herald_append_result_t results [2];
    s_append_ok (events, 2, results);
    for (size_t index = 0; index < 2; index++) {
        uint64_t seq = 99, ver = 99;
        herald_err rc = herald_store_lookup_id (s_store, events [index].id, &seq, &ver);
        cr_assert_eq (rc, HERALD_OK, "lookup of event %zu: %d", index, rc);
        cr_assert_eq (seq, results [index].seq);
        cr_assert_eq (ver, results [index].ver);
    }
    cr_assert_eq (results [0].seq, 3);
    cr_assert_eq (results [0].ver, 3);
    cr_assert_eq (results [1].ver, 1);
}

Test (herald_store, lookup_id_of_a_fresh_id_is_not_found)
{
    s_open (HERALD_DURABILITY_SYNC);
    uint8_t id [HERALD_ID_BYTES];
    tu_random_id (id);
    uint64_t seq = 99, ver = 99;
    cr_assert_eq (herald_store_lookup_id (s_store, id, &seq, &ver), HERALD_ERR_NOT_FOUND,
                  "an empty store holds no id");
    cr_assert_eq (seq, 0);
    cr_assert_eq (ver, 0);
    s_append_topic ("t", 3, NULL);
    tu_random_id (id);
    cr_assert_eq (herald_store_lookup_id (s_store, id, &seq, &ver), HERALD_ERR_NOT_FOUND);
    s_reopen ();
    cr_assert_eq (herald_store_lookup_id (s_store, id, &seq, &ver), HERALD_ERR_NOT_FOUND);
}

Test (herald_store, lookup_id_of_a_duplicate_gives_the_original_seq_and_ver)
{
    s_open (HERALD_DURABILITY_SYNC);
    herald_event_t event = tu_event ("t", "first");
    herald_append_result_t first;
    s_append_ok (&event, 1, &first);
    s_append_topic ("t", 2, NULL);
    herald_event_t again [2] = { tu_event ("u", "x"), event };
    herald_append_result_t results [2];
    s_append_ok (again, 2, results);
    cr_assert (results [1].dup);
    uint64_t seq, ver;
    cr_assert_eq (herald_store_lookup_id (s_store, event.id, &seq, &ver), HERALD_OK);
    cr_assert_eq (seq, first.seq, "the duplicate moved the id to seq %" PRIu64, seq);
    cr_assert_eq (ver, first.ver);
    s_reopen ();
    cr_assert_eq (herald_store_lookup_id (s_store, event.id, &seq, &ver), HERALD_OK);
    cr_assert_eq (seq, 1);
    cr_assert_eq (ver, 1);
}

typedef struct {
    uint8_t ids [8][HERALD_ID_BYTES];
    uint64_t seqs [8];
    uint64_t vers [8];
    size_t count;
    size_t stop_after;              //  0: never stop
} s_walk_t;

static int
s_walk_fn (const uint8_t id [HERALD_ID_BYTES], uint64_t seq, uint64_t ver, void *arg)
{
    s_walk_t *walk = arg;
    cr_assert_lt (walk->count, 8, "the walk visits more entries than ids stored");
    memcpy (walk->ids [walk->count], id, HERALD_ID_BYTES);
    walk->seqs [walk->count] = seq;
    walk->vers [walk->count] = ver;
    walk->count++;
    return walk->stop_after && walk->count == walk->stop_after? 7: 0;
}

Test (herald_store, walk_ids_visits_each_stored_id_once_in_id_order)
{
    s_open (HERALD_DURABILITY_SYNC);
    herald_event_t events [4] = {
        tu_event ("t", "a"), tu_event ("u", "b"), tu_event ("t", "c"), tu_event ("t", "d")
    };
    for (size_t index = 0; index < 4; index++) {
        memset (events [index].id, 0, HERALD_ID_BYTES);
        events [index].id [0] = (uint8_t) (40 - index);        //  descending ids
    }
    events [3] = events [1];                                    //  a duplicate
    herald_append_result_t results [4];
    s_append_ok (events, 4, results);
    s_walk_t walk = { .count = 0 };
    herald_error_t err;
    cr_assert_eq (herald_store_walk_ids (s_store, s_walk_fn, &walk, &err), 0, "%s",
                  err.message);
    cr_assert_eq (walk.count, 3);
    for (size_t index = 0; index < 3; index++) {
        //  In id order: event 2 (id 38), event 1 (39), event 0 (40)
        size_t which = 2 - index;
        cr_assert_arr_eq (walk.ids [index], events [which].id, HERALD_ID_BYTES);
        cr_assert_eq (walk.seqs [index], results [which].seq);
        cr_assert_eq (walk.vers [index], results [which].ver);
    }
    s_walk_t stopped = { .stop_after = 2 };
    cr_assert_eq (herald_store_walk_ids (s_store, s_walk_fn, &stopped, &err), 7,
                  "fn's non-zero return ends the walk and is returned");
    cr_assert_eq (stopped.count, 2);
}

//  ---------------------------------------------------------------------
//  expect

Test (herald_store, expect_zero_on_new_topic_succeeds)
{
    s_open (HERALD_DURABILITY_SYNC);
    herald_event_t event = tu_event ("new.topic", "x");
    event.has_expect = true;
    event.expect = 0;
    herald_append_result_t result;
    s_append_ok (&event, 1, &result);
    cr_assert_eq (result.ver, 1);
}

Test (herald_store, expect_zero_on_existing_topic_conflicts)
{
    s_open (HERALD_DURABILITY_SYNC);
    s_append_topic ("t", 1, NULL);
    herald_event_t event = tu_event ("t", "x");
    event.has_expect = true;
    event.expect = 0;
    herald_append_result_t result;
    tu_append_info_t info;
    tu_append (s_store, &event, 1, &result, &info);
    cr_assert_eq (info.call, HERALD_OK, "a conflict is a batch status, not a failed write: %d %s",
                  info.call, info.err.message);
    cr_assert_eq (info.status, HERALD_ERR_CONFLICT);
    cr_assert_eq (info.conflict_index, 0);
    cr_assert_eq (info.expected, 0);
    cr_assert_eq (info.actual, 1);
    cr_assert_eq (herald_store_head (s_store), 1);
    cr_assert_eq (s_topic_ver ("t"), 1);
}

Test (herald_store, expect_exact_version_succeeds)
{
    s_open (HERALD_DURABILITY_SYNC);
    s_append_topic ("t", 3, NULL);
    herald_event_t event = tu_event ("t", "x");
    event.has_expect = true;
    event.expect = 3;
    herald_append_result_t result;
    s_append_ok (&event, 1, &result);
    cr_assert_eq (result.ver, 4);
    cr_assert_eq (result.seq, 4);
}

Test (herald_store, expect_wrong_version_conflicts)
{
    s_open (HERALD_DURABILITY_SYNC);
    s_append_topic ("t", 2, NULL);
    s_append_topic ("other", 1, NULL);
    herald_event_t events [3] = { tu_event ("other", "ok"), tu_event ("t", "x"), tu_event ("t", "y") };
    events [1].has_expect = true;
    events [1].expect = 5;
    herald_append_result_t results [3];
    tu_append_info_t info;
    tu_append (s_store, events, 3, results, &info);
    cr_assert_eq (info.call, HERALD_OK, "%d %s", info.call, info.err.message);
    cr_assert_eq (info.status, HERALD_ERR_CONFLICT);
    cr_assert_eq (info.conflict_index, 1);
    cr_assert_eq (info.expected, 5);
    cr_assert_eq (info.actual, 2);
    cr_assert_eq (herald_store_head (s_store), 3, "nothing of a conflicting batch is written");
    cr_assert_eq (s_topic_ver ("other"), 1);
    cr_assert_eq (s_topic_ver ("t"), 2);
}

Test (herald_store, expect_checked_per_event_within_batch)
{
    s_open (HERALD_DURABILITY_SYNC);
    herald_event_t events [3] = { tu_event ("t", "a"), tu_event ("t", "b"), tu_event ("u", "c") };
    events [0].has_expect = true;
    events [0].expect = 0;
    events [1].has_expect = true;
    events [1].expect = 1;
    events [2].has_expect = true;
    events [2].expect = 0;
    herald_append_result_t results [3];
    s_append_ok (events, 3, results);
    cr_assert_eq (results [1].ver, 2);

    //  Both expecting the same version: the second sees the first
    herald_event_t pair [2] = { tu_event ("v", "a"), tu_event ("v", "b") };
    pair [0].has_expect = pair [1].has_expect = true;
    pair [0].expect = pair [1].expect = 0;
    herald_append_result_t pair_results [2];
    tu_append_info_t info;
    tu_append (s_store, pair, 2, pair_results, &info);
    cr_assert_eq (info.status, HERALD_ERR_CONFLICT);
    cr_assert_eq (info.conflict_index, 1);
    cr_assert_eq (info.expected, 0);
    cr_assert_eq (info.actual, 1, "actual is the topic's ver before that event, within the batch");
    cr_assert_eq (s_topic_ver ("v"), 0);
    cr_assert_eq (herald_store_head (s_store), 3);
}

Test (herald_store, duplicate_expect_is_not_checked)
{
    s_open (HERALD_DURABILITY_SYNC);
    herald_event_t events [2] = { tu_event ("t", "a"), tu_event ("t", "b") };
    events [0].has_expect = true;
    events [0].expect = 0;
    events [1].has_expect = true;
    events [1].expect = 1;
    herald_append_result_t results [2];
    s_append_ok (events, 2, results);
    s_append_topic ("t", 1, NULL);              //  t at ver 3: the expects would now fail

    herald_append_result_t retry [2];
    tu_append_info_t info;
    herald_err rc = tu_append (s_store, events, 2, retry, &info);
    cr_assert_eq (rc, HERALD_OK, "a retry turned into status %d (conflict at %zu, expected %"
                  PRIu64 ", actual %" PRIu64 ")", info.status, info.conflict_index,
                  info.expected, info.actual);
    for (size_t index = 0; index < 2; index++) {
        cr_assert (retry [index].dup);
        cr_assert_eq (retry [index].seq, results [index].seq);
        cr_assert_eq (retry [index].ver, results [index].ver);
    }
    cr_assert_eq (herald_store_head (s_store), 3);
}

Test (herald_store, duplicate_in_same_batch_expect_is_not_checked)
{
    s_open (HERALD_DURABILITY_SYNC);
    herald_event_t events [2] = { tu_event ("t", "a"), tu_event ("t", "b") };
    events [0].has_expect = true;
    events [0].expect = 0;
    events [1] = events [0];                    //  same id, same expect 0
    herald_append_result_t results [2];
    s_append_ok (events, 2, results);
    cr_assert (results [1].dup);
    cr_assert_eq (results [1].seq, 1);
    cr_assert_eq (results [1].ver, 1);
}

//  ---------------------------------------------------------------------
//  Atomicity and group commit

Test (herald_store, conflict_at_last_event_writes_nothing)
{
    s_open (HERALD_DURABILITY_SYNC);
    herald_store_set_clock (s_store, 1000);
    s_append_topic ("t", 2, NULL);
    uint64_t head = herald_store_head (s_store);
    uint64_t count = herald_store_event_count (s_store);
    uint64_t topics = herald_store_topic_count (s_store);
    uint64_t last_ts = herald_store_last_ts (s_store);

    herald_event_t events [5] = {
        tu_event ("t", "1"), tu_event ("fresh", "2"), tu_event ("t", "3"),
        tu_event ("fresh2", "4"), tu_event ("t", "5")
    };
    events [4].has_expect = true;
    events [4].expect = 2;                      //  t will be at 4 by then
    herald_append_result_t results [5];
    tu_append_info_t info;
    herald_store_set_clock (s_store, 9000);
    tu_append (s_store, events, 5, results, &info);
    cr_assert_eq (info.call, HERALD_OK, "%d %s", info.call, info.err.message);
    cr_assert_eq (info.status, HERALD_ERR_CONFLICT);
    cr_assert_eq (info.conflict_index, 4);
    cr_assert_eq (info.expected, 2);
    cr_assert_eq (info.actual, 4);
    cr_assert_eq (herald_store_head (s_store), head);
    cr_assert_eq (herald_store_event_count (s_store), count);
    cr_assert_eq (herald_store_topic_count (s_store), topics);
    cr_assert_eq (herald_store_last_ts (s_store), last_ts);
    cr_assert_eq (s_topic_ver ("t"), 2);
    cr_assert_eq (s_topic_ver ("fresh"), 0);
    cr_assert_eq (s_topic_ver ("fresh2"), 0);
    uint8_t *envelope = NULL;
    size_t len;
    cr_assert_eq (herald_store_get (s_store, head + 1, &envelope, &len, NULL), HERALD_ERR_NOT_FOUND);
    free (envelope);

    //  None of its ids was remembered: re-appending them stores them fresh
    events [4].has_expect = false;
    s_append_ok (events, 5, results);
    for (size_t index = 0; index < 5; index++) {
        cr_assert_not (results [index].dup, "event %zu of a rejected batch was remembered", index);
        cr_assert_eq (results [index].seq, head + 1 + index);
    }
    cr_assert_eq (results [4].ver, 5);
    cr_assert_eq (results [1].ver, 1);

    s_reopen ();
    cr_assert_eq (herald_store_head (s_store), head + 5);
    cr_assert_eq (herald_store_event_count (s_store), count + 5);
}

Test (herald_store, conflicting_batch_rejected_others_land)
{
    s_open (HERALD_DURABILITY_SYNC);
    herald_event_t b0 [1] = { tu_event ("x", "A") };
    herald_event_t b1 [2] = { tu_event ("y", "B"), tu_event ("x", "C") };
    b1 [1].has_expect = true;
    b1 [1].expect = 0;                          //  b0 made x exist
    herald_event_t b2 [2] = { tu_event ("x", "D"), tu_event ("y", "E") };
    b2 [0].has_expect = true;
    b2 [0].expect = 1;
    herald_append_result_t r0 [1], r1 [2], r2 [2];
    herald_batch_t batches [3] = {
        { .events = b0, .count = 1, .results = r0 },
        { .events = b1, .count = 2, .results = r1 },
        { .events = b2, .count = 2, .results = r2 },
    };
    herald_error_t err;
    memset (&err, 0, sizeof err);
    cr_assert_eq (herald_store_append (s_store, batches, 3, &err), HERALD_OK, "%s", err.message);
    cr_assert_eq (batches [0].status, HERALD_OK);
    cr_assert_eq (batches [1].status, HERALD_ERR_CONFLICT);
    cr_assert_eq (batches [1].conflict_index, 1);
    cr_assert_eq (batches [1].expected, 0);
    cr_assert_eq (batches [1].actual, 1, "a later batch sees an earlier batch's events");
    cr_assert_eq (batches [2].status, HERALD_OK);
    cr_assert_eq (r0 [0].seq, 1);
    cr_assert_eq (r0 [0].ver, 1);
    cr_assert_eq (r2 [0].seq, 2, "the rejected batch must not use up seqs");
    cr_assert_eq (r2 [0].ver, 2);
    cr_assert_eq (r2 [1].seq, 3);
    cr_assert_eq (r2 [1].ver, 1, "the rejected batch must not use up y's vers");
    cr_assert_eq (herald_store_head (s_store), 3);
    cr_assert_eq (herald_store_event_count (s_store), 3);
    cr_assert_eq (herald_store_topic_count (s_store), 2);

    s_reopen ();
    s_assert_stored (1, b0 [0].id, "x", 1);
    s_assert_stored (2, b2 [0].id, "x", 2);
    s_assert_stored (3, b2 [1].id, "y", 1);
    herald_append_result_t again [2];
    s_append_ok (b1, 1, again);
    cr_assert_not (again [0].dup, "an event of the rejected batch was stored");
    cr_assert_eq (again [0].seq, 4);
}

Test (herald_store, rejected_batch_ids_are_new_to_later_batches_of_the_call)
{
    s_open (HERALD_DURABILITY_SYNC);
    herald_event_t b0 [2] = { tu_event ("t", "A"), tu_event ("t", "B") };
    b0 [1].has_expect = true;
    b0 [1].expect = 7;                          //  conflicts: A is not stored
    herald_event_t b1 [1] = { b0 [0] };          //  A again, in a later batch
    herald_append_result_t r0 [2], r1 [1];
    herald_batch_t batches [2] = {
        { .events = b0, .count = 2, .results = r0 },
        { .events = b1, .count = 1, .results = r1 },
    };
    herald_error_t err;
    memset (&err, 0, sizeof err);
    cr_assert_eq (herald_store_append (s_store, batches, 2, &err), HERALD_OK, "%s", err.message);
    cr_assert_eq (batches [0].status, HERALD_ERR_CONFLICT);
    cr_assert_eq (batches [0].actual, 1);
    cr_assert_eq (batches [1].status, HERALD_OK);
    cr_assert_not (r1 [0].dup, "A was in a rejected batch, so it is not stored yet");
    cr_assert_eq (r1 [0].seq, 1);
    cr_assert_eq (r1 [0].ver, 1);
    cr_assert_eq (herald_store_head (s_store), 1);
    s_assert_stored (1, b0 [0].id, "t", 1);
}

Test (herald_store, large_batch_in_one_append)
{
    s_open (HERALD_DURABILITY_ASYNC);
    enum { COUNT = HERALD_MAX_BATCH };
    herald_event_t *events = calloc (COUNT, sizeof *events);
    herald_append_result_t *results = calloc (COUNT, sizeof *results);
    char (*topics) [16] = calloc (COUNT, 16);
    cr_assert (events && results && topics);
    for (size_t index = 0; index < COUNT; index++) {
        snprintf (topics [index], 16, "big.%zu", index % 37);
        events [index] = tu_event (topics [index], "payload");
    }
    s_append_ok (events, COUNT, results);
    for (size_t index = 0; index < COUNT; index++) {
        cr_assert_eq (results [index].seq, index + 1);
        cr_assert_eq (results [index].ver, index / 37 + 1);
    }
    cr_assert_eq (herald_store_topic_count (s_store), 37);
    free (topics);
    free (results);
    free (events);
}

//  ---------------------------------------------------------------------
//  Reading back

Test (herald_store, get_returns_exact_envelope)
{
    s_open (HERALD_DURABILITY_SYNC);
    herald_store_set_clock (s_store, 1700000000123456789ULL);
    s_append_topic ("noise", 2, NULL);
    uint8_t data [300];
    tu_random_bytes (data, sizeof data);
    herald_kv_t meta [2] = {
        { "correlation_id", 14, "c-42", 4 },
        { "content_type", 12, "application/json", 16 },
    };
    herald_event_t event = tu_event_n ("orders.1234", 11, data, sizeof data);
    event.type = "OrderPlaced";
    event.type_len = 11;
    event.has_schema = true;
    event.schema = 3;
    event.meta = meta;
    event.meta_count = 2;
    herald_append_result_t result;
    s_append_ok (&event, 1, &result);
    cr_assert_eq (result.seq, 3);

    tu_decoded_t decoded;
    herald_err rc = tu_get (s_store, 3, &decoded);
    cr_assert_eq (rc, HERALD_OK, "%d %s", rc, decoded.err.message);
    const herald_event_t *got = &decoded.event;
    cr_assert_arr_eq (got->id, event.id, HERALD_ID_BYTES);
    cr_assert_eq (got->topic_len, 11);
    cr_assert (!memcmp (got->topic, "orders.1234", 11));
    cr_assert_eq (got->seq, 3);
    cr_assert_eq (got->ver, 1);
    cr_assert_eq (got->ts, 1700000000123456789ULL);
    cr_assert_eq (got->type_len, 11);
    cr_assert (got->type && !memcmp (got->type, "OrderPlaced", 11));
    cr_assert (got->has_schema);
    cr_assert_eq (got->schema, 3);
    cr_assert_eq (got->meta_count, 2);
    for (size_t index = 0; index < 2; index++) {
        cr_assert_eq (got->meta [index].key_len, meta [index].key_len);
        cr_assert (!memcmp (got->meta [index].key, meta [index].key, meta [index].key_len));
        cr_assert_eq (got->meta [index].value_len, meta [index].value_len);
        cr_assert (!memcmp (got->meta [index].value, meta [index].value, meta [index].value_len));
    }
    cr_assert_eq (got->data_len, sizeof data);
    cr_assert (!memcmp (got->data, data, sizeof data));
    char keys [128];
    cr_assert_eq (tu_envelope_keys (decoded.bytes, decoded.len, keys, sizeof keys), 0);
    cr_assert_str_eq (keys, "id,topic,seq,ver,ts,type,schema,meta,data");
    tu_decoded_fini (&decoded);
}

Test (herald_store, absent_optional_fields_and_expect_are_not_stored)
{
    s_open (HERALD_DURABILITY_SYNC);
    herald_event_t event = tu_event ("t", "x");
    event.has_expect = true;
    event.expect = 0;
    herald_append_result_t result;
    s_append_ok (&event, 1, &result);
    tu_decoded_t decoded;
    cr_assert_eq (tu_get (s_store, 1, &decoded), HERALD_OK, "%s", decoded.err.message);
    char keys [128];
    cr_assert_eq (tu_envelope_keys (decoded.bytes, decoded.len, keys, sizeof keys), 0);
    cr_assert_str_eq (keys, "id,topic,seq,ver,ts,data", "stored keys: %s", keys);
    cr_assert_null (decoded.event.type);
    cr_assert_not (decoded.event.has_schema);
    cr_assert_eq (decoded.event.meta_count, 0);
    cr_assert_not (decoded.event.has_expect);
    tu_decoded_fini (&decoded);
}

Test (herald_store, empty_data_round_trips)
{
    s_open (HERALD_DURABILITY_SYNC);
    herald_event_t event = tu_event_n ("t", 1, NULL, 0);
    herald_append_result_t result;
    s_append_ok (&event, 1, &result);
    tu_decoded_t decoded;
    cr_assert_eq (tu_get (s_store, 1, &decoded), HERALD_OK, "%s", decoded.err.message);
    cr_assert_eq (decoded.event.data_len, 0);
    tu_decoded_fini (&decoded);
}

Test (herald_store, topic_is_read_by_length_not_nul)
{
    s_open (HERALD_DURABILITY_SYNC);
    const char buffer [] = "orders.12345678";
    herald_event_t event = tu_event_n (buffer, 8, "d", 1);     //  "orders.1"
    herald_append_result_t result;
    s_append_ok (&event, 1, &result);
    s_assert_stored (1, event.id, "orders.1", 1);
    cr_assert_eq (s_ver_of (s_store, buffer, 8), 1);
    cr_assert_eq (s_ver_of (s_store, buffer, 9), 0);
    cr_assert_eq (s_ver_of (s_store, buffer, 7), 0);
    cr_assert_eq (s_topic_ver ("orders.1"), 1);
}

Test (herald_store, get_out_of_range_is_not_found)
{
    s_open (HERALD_DURABILITY_SYNC);
    uint8_t *envelope = NULL;
    size_t len = 0;
    cr_assert_eq (herald_store_get (s_store, 1, &envelope, &len, NULL), HERALD_ERR_NOT_FOUND);
    free (envelope);
    envelope = NULL;
    s_append_topic ("t", 3, NULL);
    cr_assert_eq (herald_store_get (s_store, 0, &envelope, &len, NULL), HERALD_ERR_NOT_FOUND);
    free (envelope);
    envelope = NULL;
    cr_assert_eq (herald_store_get (s_store, 4, &envelope, &len, NULL), HERALD_ERR_NOT_FOUND);
    free (envelope);
    envelope = NULL;
    cr_assert_eq (herald_store_get (s_store, UINT64_MAX, &envelope, &len, NULL), HERALD_ERR_NOT_FOUND);
    free (envelope);
    envelope = NULL;
    cr_assert_eq (herald_store_get (s_store, 3, &envelope, &len, NULL), HERALD_OK);
    cr_assert_not_null (envelope);
    cr_assert_gt (len, 0);
    free (envelope);
}

Test (herald_store, async_durability_works)
{
    s_open (HERALD_DURABILITY_ASYNC);
    herald_event_t events [3] = { tu_event ("a", "1"), tu_event ("b", "2"), tu_event ("a", "3") };
    herald_append_result_t results [3];
    s_append_ok (events, 3, results);
    cr_assert_eq (results [2].ver, 2);
    s_assert_stored (2, events [1].id, "b", 1);
    herald_store_destroy (&s_store);
    s_open (HERALD_DURABILITY_ASYNC);
    cr_assert_eq (herald_store_head (s_store), 3);
    s_assert_stored (3, events [2].id, "a", 2);
    herald_append_result_t again;
    s_append_ok (&events [0], 1, &again);
    cr_assert (again.dup);
    cr_assert_eq (again.seq, 1);
}

Test (herald_store, topic_ver_and_topic_count)
{
    s_open (HERALD_DURABILITY_SYNC);
    cr_assert_eq (s_topic_ver ("nothing"), 0);
    s_append_topic ("a", 2, NULL);
    s_append_topic ("ab", 3, NULL);
    s_append_topic ("a", 1, NULL);
    s_append_topic ("b", 1, NULL);
    cr_assert_eq (s_topic_ver ("a"), 3);
    cr_assert_eq (s_topic_ver ("ab"), 3);
    cr_assert_eq (s_topic_ver ("b"), 1);
    cr_assert_eq (s_topic_ver ("abc"), 0);
    cr_assert_eq (s_topic_ver ("nothing"), 0);
    cr_assert_eq (herald_store_topic_count (s_store), 3);
    s_reopen ();
    cr_assert_eq (s_topic_ver ("a"), 3);
    cr_assert_eq (s_topic_ver ("ab"), 3);
    cr_assert_eq (herald_store_topic_count (s_store), 3);
}

Test (herald_store, topic_ver_correct_beyond_topic_cache)
{
    //  A tiny cache: most topics' vers must come back from the data
    herald_store_options_t options = { .durability = HERALD_DURABILITY_ASYNC, .topic_cache = 2 };
    herald_error_t err;
    memset (&err, 0, sizeof err);
    s_store = herald_store_open (s_db, &options, &err);
    cr_assert_not_null (s_store, "%s", err.message);
    enum { TOPICS = 20 };
    char names [TOPICS][16];
    uint64_t vers [TOPICS] = { 0 };
    for (size_t index = 0; index < TOPICS; index++)
        snprintf (names [index], sizeof names [index], "cache.%zu", index);
    uint64_t state = 7;
    for (size_t round = 0; round < 40; round++) {
        herald_event_t events [8];
        size_t which [8];
        herald_append_result_t results [8];
        for (size_t index = 0; index < 8; index++) {
            which [index] = tu_rand (&state) % TOPICS;
            events [index] = tu_event (names [which [index]], "c");
            events [index].has_expect = (index == 0);
            events [index].expect = vers [which [index]];
        }
        s_append_ok (events, 8, results);
        for (size_t index = 0; index < 8; index++) {
            vers [which [index]]++;
            cr_assert_eq (results [index].ver, vers [which [index]],
                          "round %zu: %s got ver %" PRIu64 ", expected %" PRIu64, round,
                          names [which [index]], results [index].ver, vers [which [index]]);
        }
    }
    uint64_t topics = 0;
    for (size_t index = 0; index < TOPICS; index++) {
        cr_assert_eq (s_topic_ver (names [index]), vers [index]);
        topics += vers [index] > 0;
    }
    cr_assert_eq (herald_store_topic_count (s_store), topics);
}

Test (herald_store, seq_at_ts_finds_first_seq_at_or_after)
{
    s_open (HERALD_DURABILITY_SYNC);
    cr_assert_eq (s_seq_at (s_store, 0), 1, "empty store: head + 1");
    cr_assert_eq (s_seq_at (s_store, 12345), 1);
    herald_store_set_clock (s_store, 1000);
    s_append_topic ("t", 3, NULL);              //  1..3 at 1000
    herald_store_set_clock (s_store, 2000);
    s_append_topic ("t", 2, NULL);              //  4..5 at 2000
    herald_store_set_clock (s_store, 3000);
    s_append_topic ("u", 1, NULL);              //  6 at 3000
    cr_assert_eq (s_seq_at (s_store, 0), 1);
    cr_assert_eq (s_seq_at (s_store, 999), 1);
    cr_assert_eq (s_seq_at (s_store, 1000), 1);
    cr_assert_eq (s_seq_at (s_store, 1001), 4);
    cr_assert_eq (s_seq_at (s_store, 2000), 4);
    cr_assert_eq (s_seq_at (s_store, 2999), 6);
    cr_assert_eq (s_seq_at (s_store, 3000), 6);
    cr_assert_eq (s_seq_at (s_store, 3001), 7);
    cr_assert_eq (s_seq_at (s_store, UINT64_MAX), 7);
    s_reopen ();
    cr_assert_eq (s_seq_at (s_store, 1500), 4);
}

Test (herald_store, disk_size_counts_appended_data)
{
    s_open (HERALD_DURABILITY_SYNC);
    uint64_t empty = s_disk_of (s_store);
    enum { SIZE = 64 * 1024 };
    uint8_t *data = malloc (SIZE);
    cr_assert_not_null (data);
    for (size_t round = 0; round < 16; round++) {        //  1 MiB of random data
        tu_random_bytes (data, SIZE);
        herald_event_t event = tu_event_n ("blob", 4, data, SIZE);
        herald_append_result_t result;
        s_append_ok (&event, 1, &result);
    }
    free (data);
    uint64_t size = s_disk_of (s_store);
    cr_assert_gt (size, 0);
    cr_assert_geq (size, empty + 512 * 1024, "1 MiB appended and synced, but disk_size %" PRIu64
                   " (was %" PRIu64 " empty)", size, empty);
    s_reopen ();
    cr_assert_geq (s_disk_of (s_store), 512 * 1024);
}

Test (herald_store, rejected_batch_does_not_create_its_topics)
{
    s_open (HERALD_DURABILITY_SYNC);
    herald_event_t b0 [3] = { tu_event ("new.x", "1"), tu_event ("new.x", "2"), tu_event ("y", "3") };
    b0 [2].has_expect = true;
    b0 [2].expect = 9;                          //  y is at 0: conflict
    herald_event_t b1 [1] = { tu_event ("new.x", "4") };
    herald_append_result_t r0 [3], r1 [1];
    herald_batch_t batches [2] = {
        { .events = b0, .count = 3, .results = r0 },
        { .events = b1, .count = 1, .results = r1 },
    };
    herald_error_t err;
    memset (&err, 0, sizeof err);
    cr_assert_eq (herald_store_append (s_store, batches, 2, &err), HERALD_OK, "%s", err.message);
    cr_assert_eq (batches [0].status, HERALD_ERR_CONFLICT);
    cr_assert_eq (batches [0].conflict_index, 2);
    cr_assert_eq (batches [0].actual, 0);
    cr_assert_eq (batches [1].status, HERALD_OK);
    cr_assert_eq (r1 [0].seq, 1);
    cr_assert_eq (r1 [0].ver, 1, "the rejected batch's vers of new.x must be undone");
    cr_assert_eq (herald_store_topic_count (s_store), 1);
    cr_assert_eq (s_topic_ver ("y"), 0);
    s_reopen ();
    cr_assert_eq (herald_store_topic_count (s_store), 1, "a rejected batch's topic was stored");
    cr_assert_eq (s_topic_ver ("new.x"), 1);
    cr_assert_eq (s_topic_ver ("y"), 0);
}

Test (herald_store, topic_of_255_bytes)
{
    s_open (HERALD_DURABILITY_SYNC);
    char topic [HERALD_TOPIC_MAX + 1];
    memset (topic, 'z', HERALD_TOPIC_MAX);
    topic [HERALD_TOPIC_MAX] = 0;
    topic [0] = 'l';
    herald_event_t events [3] = {
        tu_event_n (topic, HERALD_TOPIC_MAX, "a", 1),
        tu_event_n (topic, HERALD_TOPIC_MAX - 1, "b", 1),     //  a different, shorter topic
        tu_event_n (topic, HERALD_TOPIC_MAX, "c", 1),
    };
    herald_append_result_t results [3];
    s_append_ok (events, 3, results);
    cr_assert_eq (results [2].ver, 2);
    cr_assert_eq (results [1].ver, 1);
    cr_assert_eq (s_ver_of (s_store, topic, HERALD_TOPIC_MAX), 2);
    cr_assert_eq (s_ver_of (s_store, topic, HERALD_TOPIC_MAX - 1), 1);
    s_assert_stored (3, events [2].id, topic, 2);
    s_reopen ();
    cr_assert_eq (s_ver_of (s_store, topic, HERALD_TOPIC_MAX), 2);
    cr_assert_eq (herald_store_topic_count (s_store), 2);
}

Test (herald_store, same_new_topic_twice_in_a_batch_counts_once)
{
    s_open (HERALD_DURABILITY_SYNC);
    herald_event_t events [3] = { tu_event ("n", "1"), tu_event ("n", "2"), tu_event ("m", "3") };
    herald_append_result_t results [3];
    s_append_ok (events, 3, results);
    cr_assert_eq (herald_store_topic_count (s_store), 2);
    s_reopen ();
    cr_assert_eq (herald_store_topic_count (s_store), 2);
}

//  Read all of topic and check vers 1..ver in seq order; returns the count.
static uint64_t
s_read_all (const char *topic)
{
    herald_error_t err;
    memset (&err, 0, sizeof err);
    herald_scan_t *read = herald_store_read (s_store, topic, strlen (topic), 1, 0, &err);
    cr_assert_not_null (read, "read %s: %s", topic, err.message);
    const uint8_t *envelope;
    size_t len;
    uint64_t seq, previous = 0, count = 0;
    int rc;
    bool ordered = true;
    while ((rc = herald_scan_next (read, &envelope, &len, &seq)) == 1) {
        ordered = ordered && seq > previous;
        previous = seq;
        count++;
    }
    uint64_t head = herald_scan_head (read);
    herald_scan_destroy (&read);
    cr_assert_eq (rc, 0, "read %s failed", topic);
    cr_assert (ordered, "read %s: seqs out of order", topic);
    cr_assert_eq (count, head);
    return count;
}

Test (herald_store, works_across_memtable_flushes)
{
    //  A 1 MB memtable and ~6 MB of events: most of the log, its id index
    //  and its topic index end up in SST files, not the memtable
    herald_store_options_t options = { .durability = HERALD_DURABILITY_ASYNC, .write_buffer_mb = 1,
                                       .topic_cache = 4 };
    herald_error_t err;
    memset (&err, 0, sizeof err);
    s_store = herald_store_open (s_db, &options, &err);
    cr_assert_not_null (s_store, "%s", err.message);
    enum { COUNT = 6000, BATCH = 100, TOPICS = 12 };
    static char names [TOPICS][16];
    for (size_t index = 0; index < TOPICS; index++)
        snprintf (names [index], sizeof names [index], "flush.%zu", index);
    uint8_t (*ids) [HERALD_ID_BYTES] = calloc (COUNT, HERALD_ID_BYTES);
    uint64_t *vers = calloc (COUNT, sizeof (uint64_t));
    uint8_t *data = malloc (1000);
    cr_assert (ids && vers && data);
    memset (data, 0x5a, 1000);
    uint64_t topic_vers [TOPICS] = { 0 };
    for (size_t done = 0; done < COUNT; done += BATCH) {
        herald_event_t events [BATCH];
        herald_append_result_t results [BATCH];
        for (size_t index = 0; index < BATCH; index++) {
            size_t topic = (done + index) * 7 % TOPICS;
            events [index] = tu_event_n (names [topic], strlen (names [topic]), data, 1000);
            if (index == 0) {
                events [index].has_expect = true;
                events [index].expect = topic_vers [topic];
            }
            topic_vers [topic]++;
            memcpy (ids [done + index], events [index].id, HERALD_ID_BYTES);
        }
        s_append_ok (events, BATCH, results);
        for (size_t index = 0; index < BATCH; index++) {
            cr_assert_eq (results [index].seq, done + index + 1);
            vers [done + index] = results [index].ver;
        }
    }
    for (size_t round = 0; round < 2; round++) {
        for (size_t index = 0; index < TOPICS; index++) {
            cr_assert_eq (s_topic_ver (names [index]), topic_vers [index]);
            cr_assert_eq (s_read_all (names [index]), topic_vers [index]);
        }
        cr_assert_eq (herald_store_head (s_store), COUNT);
        cr_assert_eq (herald_store_topic_count (s_store), TOPICS);
        //  Every id is still known
        for (size_t done = 0; done < COUNT; done += BATCH) {
            herald_event_t events [BATCH];
            herald_append_result_t results [BATCH];
            for (size_t index = 0; index < BATCH; index++) {
                events [index] = tu_event ("flush.retry", "x");
                memcpy (events [index].id, ids [done + index], HERALD_ID_BYTES);
            }
            s_append_ok (events, BATCH, results);
            for (size_t index = 0; index < BATCH; index++) {
                cr_assert (results [index].dup, "round %zu: id of seq %zu not recognised", round,
                           done + index + 1);
                cr_assert_eq (results [index].seq, done + index + 1);
                cr_assert_eq (results [index].ver, vers [done + index]);
            }
        }
        s_assert_stored (1, ids [0], names [0], 1);
        s_assert_stored (COUNT, ids [COUNT - 1], NULL, vers [COUNT - 1]);
        herald_store_destroy (&s_store);
        s_store = herald_store_open (s_db, &options, &err);
        cr_assert_not_null (s_store, "reopen: %s", err.message);
    }
    cr_assert_eq (herald_store_topic_count (s_store), TOPICS, "flush.retry must not exist");
    free (data);
    free (vers);
    free (ids);
}

Test (herald_store, refuses_a_path_that_is_a_file)
{
    cr_assert_eq (tu_write_file (s_db, "not a directory\n", 16), 0);
    char *before = tu_dir_snapshot (s_dir);
    herald_error_t err;
    memset (&err, 0, sizeof err);
    s_store = herald_store_open (s_db, NULL, &err);
    cr_assert_null (s_store, "a regular file is not a store");
    cr_assert_neq (err.code, HERALD_OK);
    cr_assert (strlen (err.message) > 0);
    char *after = tu_dir_snapshot (s_dir);
    cr_assert_str_eq (after, before, "the file was modified");
    free (before);
    free (after);
}
