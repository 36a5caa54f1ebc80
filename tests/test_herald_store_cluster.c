/*  =========================================================================
    test_herald_store_cluster - the store's side of the cluster (issue 13)

    The applied raft index: written in the WriteBatch of its entry's
    effects, also when there are none; recovered on open; never lowered
    nor repeated (refused, nothing written); a writer killed with SIGKILL
    at any moment leaves a store exactly equal to one that applied the
    entries up to the index it recovered, no more, no less.

    The log digest: the same for two stores that applied the same entries
    (whatever their options, across reopens), different when any logical
    field of an event differs, kept across reopens, and computed once on
    open for a store that does not have it.

    herald_store_install: a store's whole log copied into an empty store
    in chunks gives a store indistinguishable from the original (REPLAY
    and READ bytes, topic vers, the dedup index and what a duplicate gets,
    the digest); every check refuses with a clear message and writes
    nothing.
    =========================================================================
*/

#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include <rocksdb/c.h>

#include "testutil.h"
#include "storetest.h"
#include "herald_hash.h"
#include "store_entries.h"
#include "herald_store_priv.h"      //  herald_store_digest_next, the keys

static char *s_dir;
static pid_t s_child;               //  the crash test's writer, 0 when none
static int s_child_out = -1;
static uint64_t s_kill_state;       //  when the crash test kills its writer

static void
s_setup (void)
{
    s_dir = tu_tmpdir_new ("cluster");
    cr_assert_not_null (s_dir, "cannot make a temporary directory: %s", strerror (errno));
}

static void
s_teardown (void)
{
    if (s_child > 0) {
        kill (s_child, SIGKILL);
        while (waitpid (s_child, NULL, 0) < 0 && errno == EINTR)
            ;
        s_child = 0;
    }
    if (s_child_out >= 0)
        close (s_child_out);
    s_child_out = -1;
    tu_tmpdir_destroy (&s_dir);
}

TestSuite (herald_store_cluster, .init = s_setup, .fini = s_teardown, .timeout = 240);

static herald_store_t *
s_open_with (const char *name, const herald_store_options_t *options)
{
    char *path = tu_path (s_dir, name);
    cr_assert_not_null (path);
    herald_error_t err = { 0 };
    herald_store_t *store = herald_store_open (path, options, &err);
    cr_assert_not_null (store, "open %s: %s", path, err.message);
    free (path);
    return store;
}

static herald_store_t *
s_open (const char *name)
{
    return s_open_with (name, NULL);
}

static herald_batch_t
s_batch (const herald_event_t *events, size_t count, herald_append_result_t *results)
{
    herald_batch_t batch;
    memset (&batch, 0, sizeof batch);
    batch.events = events;
    batch.count = count;
    batch.results = results;
    batch.status = (herald_err) -1;
    return batch;
}

static void
s_apply_entries (herald_store_t *store, uint64_t from, uint64_t to)
{
    se_entry_t *entry = malloc (sizeof *entry);
    cr_assert_not_null (entry);
    for (uint64_t index = from; index <= to; index++) {
        herald_error_t err = { 0 };
        cr_assert_eq (se_apply_entry (store, index, entry, &err), HERALD_OK,
                      "entry %" PRIu64 ": %s", index, err.message);
        cr_assert_eq (herald_store_applied_index (store), index);
    }
    free (entry);
}

//  ---------------------------------------------------------------------
//  Comparing stores

//  Every envelope of the log, copied: envelope i is seq i + 1.
typedef struct {
    uint8_t **bytes;
    size_t *lens;
    size_t count;
} s_log_t;

static void
s_log_read (herald_store_t *store, s_log_t *log)
{
    memset (log, 0, sizeof *log);
    uint64_t head = herald_store_head (store);
    log->bytes = calloc (head + 1, sizeof (uint8_t *));
    log->lens = calloc (head + 1, sizeof (size_t));
    cr_assert (log->bytes && log->lens);
    if (head == 0)
        return;
    herald_error_t err = { 0 };
    herald_scan_spec_t spec = { .from = 1 };
    herald_scan_t *scan = herald_store_scan (store, &spec, &err);
    cr_assert_not_null (scan, "scan: %s", err.message);
    const uint8_t *envelope;
    size_t len;
    uint64_t seq;
    int rc;
    while ((rc = herald_scan_next (scan, &envelope, &len, &seq)) == 1) {
        cr_assert_eq (seq, log->count + 1, "REPLAY gave seq %" PRIu64 " after %zu", seq,
                      log->count);
        log->bytes [log->count] = malloc (len);
        cr_assert_not_null (log->bytes [log->count]);
        memcpy (log->bytes [log->count], envelope, len);
        log->lens [log->count++] = len;
    }
    cr_assert_eq (rc, 0, "scan: %s", herald_scan_error (scan)->message);
    cr_assert_eq (log->count, head);
    herald_scan_destroy (&scan);
}

static void
s_log_free (s_log_t *log)
{
    for (size_t i = 0; i < log->count; i++)
        free (log->bytes [i]);
    free (log->bytes);
    free (log->lens);
    memset (log, 0, sizeof *log);
}

typedef struct {
    herald_store_t *a, *b;
} s_pair_t;

//  The id a walk of a found is in b with the same seq, ver and hash.
static int
s_check_id (const uint8_t id [HERALD_ID_BYTES], uint64_t seq, uint64_t ver, void *arg)
{
    s_pair_t *pair = arg;
    uint64_t seq_a, ver_a, hash_a, seq_b, ver_b, hash_b;
    bool has_a, has_b;
    if (herald_store_lookup_id_hash (pair->a, id, &seq_a, &ver_a, &hash_a, &has_a) != HERALD_OK
    ||  herald_store_lookup_id_hash (pair->b, id, &seq_b, &ver_b, &hash_b, &has_b) != HERALD_OK)
        return 1;
    return seq_a != seq || ver_a != ver || seq_b != seq || ver_b != ver
        || !has_a || !has_b || hash_a != hash_b;
}

static int
s_count_id (const uint8_t id [HERALD_ID_BYTES], uint64_t seq, uint64_t ver, void *arg)
{
    (void) id, (void) seq, (void) ver;
    (*(size_t *) arg)++;
    return 0;
}

//  a and b hold the same log, indexes and counters: REPLAY bytes, READ
//  bytes and ver of every topic, the dedup index, counts, last ts, digest.
static void
s_assert_same (herald_store_t *a, herald_store_t *b)
{
    cr_assert_eq (herald_store_head (a), herald_store_head (b), "heads %" PRIu64 " and %" PRIu64,
                  herald_store_head (a), herald_store_head (b));
    cr_assert_eq (herald_store_event_count (a), herald_store_event_count (b));
    cr_assert_eq (herald_store_topic_count (a), herald_store_topic_count (b));
    cr_assert_eq (herald_store_last_ts (a), herald_store_last_ts (b));
    cr_assert_eq (herald_store_digest (a), herald_store_digest (b),
                  "digests %016" PRIx64 " and %016" PRIx64 " at head %" PRIu64,
                  herald_store_digest (a), herald_store_digest (b), herald_store_head (a));
    s_log_t log_a, log_b;
    s_log_read (a, &log_a);
    s_log_read (b, &log_b);
    char topics [64][HERALD_TOPIC_MAX + 1];
    size_t topic_count = 0;
    for (size_t i = 0; i < log_a.count; i++) {
        cr_assert (log_a.lens [i] == log_b.lens [i]
                   && memcmp (log_a.bytes [i], log_b.bytes [i], log_a.lens [i]) == 0,
                   "REPLAY differs at seq %zu", i + 1);
        const char *topic;
        size_t len;
        uint64_t seq, ver, ts;
        cr_assert (herald_event_peek (log_a.bytes [i], log_a.lens [i], &topic, &len, &seq, &ver,
                                      &ts));
        size_t t = 0;
        while (t < topic_count && !(strlen (topics [t]) == len && !memcmp (topics [t], topic, len)))
            t++;
        if (t == topic_count) {
            cr_assert_lt (topic_count, 64);
            memcpy (topics [topic_count], topic, len);
            topics [topic_count++][len] = 0;
        }
    }
    cr_assert_eq (topic_count, herald_store_topic_count (a));
    //  READ of every topic: same vers, same bytes
    for (size_t t = 0; t < topic_count; t++) {
        size_t len = strlen (topics [t]);
        uint64_t ver = s_ver_of (a, topics [t], len);
        cr_assert_eq (ver, s_ver_of (b, topics [t], len), "topic %s", topics [t]);
        herald_error_t err = { 0 };
        herald_scan_t *read_a = herald_store_read (a, topics [t], len, 1, 0, &err);
        herald_scan_t *read_b = herald_store_read (b, topics [t], len, 1, 0, &err);
        cr_assert (read_a && read_b, "read %s: %s", topics [t], err.message);
        const uint8_t *env_a, *env_b;
        size_t len_a, len_b;
        uint64_t seq_a, seq_b;
        int rc_a, rc_b;
        uint64_t read = 0;
        while ((rc_a = herald_scan_next (read_a, &env_a, &len_a, &seq_a)) == 1) {
            rc_b = herald_scan_next (read_b, &env_b, &len_b, &seq_b);
            cr_assert (rc_b == 1 && seq_a == seq_b && len_a == len_b
                       && memcmp (env_a, env_b, len_a) == 0,
                       "READ of %s differs at its event %" PRIu64, topics [t], read + 1);
            read++;
        }
        cr_assert_eq (rc_a, 0);
        cr_assert_eq (herald_scan_next (read_b, &env_b, &len_b, &seq_b), 0);
        cr_assert_eq (read, ver);
        herald_scan_destroy (&read_a);
        herald_scan_destroy (&read_b);
    }
    //  The dedup index: the same ids, each with the same seq, ver and hash
    herald_error_t err = { 0 };
    size_t ids_a = 0, ids_b = 0;
    cr_assert_eq (herald_store_walk_ids (a, s_count_id, &ids_a, &err), 0, "%s", err.message);
    cr_assert_eq (herald_store_walk_ids (b, s_count_id, &ids_b, &err), 0, "%s", err.message);
    cr_assert_eq (ids_a, ids_b, "%zu and %zu ids", ids_a, ids_b);
    cr_assert_eq (ids_a, herald_store_head (a));
    s_pair_t pair = { a, b };
    cr_assert_eq (herald_store_walk_ids (a, s_check_id, &pair, &err), 0,
                  "an id is indexed differently");
    s_log_free (&log_a);
    s_log_free (&log_b);
}

//  ---------------------------------------------------------------------
//  The applied index

Test (herald_store_cluster, the_applied_index_is_kept_and_recovered)
{
    herald_store_t *store = s_open ("db");
    cr_assert_eq (herald_store_applied_index (store), 0);
    herald_event_t events [2] = { tu_event ("a", "1"), tu_event ("b", "2") };
    herald_append_result_t results [2];
    herald_batch_t batch = s_batch (events, 2, results);
    herald_error_t err = { 0 };
    cr_assert_eq (herald_store_apply_entry (store, &batch, 1, 1000, 5, &err), HERALD_OK, "%s",
                  err.message);
    cr_assert_eq (herald_store_applied_index (store), 5);
    cr_assert_eq (herald_store_head (store), 2);
    cr_assert_eq (herald_store_set_applied (store, 9, &err), HERALD_OK, "%s", err.message);
    cr_assert_eq (herald_store_applied_index (store), 9);
    cr_assert_eq (herald_store_head (store), 2);
    herald_store_destroy (&store);

    store = s_open ("db");
    cr_assert_eq (herald_store_applied_index (store), 9);
    //  Where it lives: meta key "raft.applied", 8 bytes big-endian
    char *value = NULL;
    size_t len = 0;
    cr_assert_eq (herald_store_meta_get (store, "raft.applied", &value, &len), HERALD_OK);
    cr_assert_eq (len, 8);
    cr_assert_eq (tu_get_be64 ((const uint8_t *) value), 9);
    free (value);
    herald_store_destroy (&store);
}

Test (herald_store_cluster, standalone_apply_writes_no_index)
{
    herald_store_t *store = s_open ("db");
    herald_event_t event = tu_event ("a", "1");
    herald_append_result_t result;
    herald_batch_t batch = s_batch (&event, 1, &result);
    herald_error_t err = { 0 };
    cr_assert_eq (herald_store_apply (store, &batch, 1, 1000, &err), HERALD_OK, "%s", err.message);
    cr_assert_eq (tu_append (store, &event, 1, &result, NULL), HERALD_OK);
    cr_assert (result.dup);
    cr_assert_eq (herald_store_applied_index (store), 0);
    char *value = NULL;
    size_t len = 0;
    cr_assert_eq (herald_store_meta_get (store, "raft.applied", &value, &len),
                  HERALD_ERR_NOT_FOUND);
    herald_store_destroy (&store);
}

Test (herald_store_cluster, an_entry_of_duplicates_and_conflicts_still_advances_the_index)
{
    herald_store_t *store = s_open ("db");
    herald_event_t events [3] = { tu_event ("a", "1"), tu_event ("a", "2"), tu_event ("b", "3") };
    herald_append_result_t results [3];
    herald_batch_t batch = s_batch (events, 3, results);
    herald_error_t err = { 0 };
    cr_assert_eq (herald_store_apply_entry (store, &batch, 1, 1000, 1, &err), HERALD_OK);
    uint64_t digest = herald_store_digest (store);
    uint64_t last_ts = herald_store_last_ts (store);

    //  All duplicates
    batch = s_batch (events, 3, results);
    cr_assert_eq (herald_store_apply_entry (store, &batch, 1, 2000, 2, &err), HERALD_OK, "%s",
                  err.message);
    cr_assert (results [0].dup && results [1].dup && results [2].dup);
    cr_assert_eq (herald_store_applied_index (store), 2);

    //  A failed `expect` (and a duplicate in another batch)
    herald_event_t conflicted = tu_event ("a", "x");
    conflicted.has_expect = true;
    conflicted.expect = 7;
    herald_append_result_t more [1];
    herald_batch_t two [2] = { s_batch (&conflicted, 1, more), s_batch (&events [2], 1, results) };
    cr_assert_eq (herald_store_apply_entry (store, two, 2, 3000, 3, &err), HERALD_OK, "%s",
                  err.message);
    cr_assert_eq (two [0].status, HERALD_ERR_CONFLICT);
    cr_assert_eq (two [0].actual, 2);
    cr_assert (results [0].dup);
    cr_assert_eq (herald_store_applied_index (store), 3);

    //  No batch at all
    cr_assert_eq (herald_store_apply_entry (store, NULL, 0, 4000, 4, &err), HERALD_OK);
    cr_assert_eq (herald_store_applied_index (store), 4);

    //  Nothing else changed, and the index survives a reopen
    cr_assert_eq (herald_store_head (store), 3);
    cr_assert_eq (herald_store_digest (store), digest);
    cr_assert_eq (herald_store_last_ts (store), last_ts);
    herald_store_destroy (&store);
    store = s_open ("db");
    cr_assert_eq (herald_store_applied_index (store), 4);
    cr_assert_eq (herald_store_head (store), 3);
    cr_assert_eq (herald_store_digest (store), digest);
    herald_store_destroy (&store);
}

Test (herald_store_cluster, an_index_not_after_the_applied_one_is_refused_and_writes_nothing)
{
    herald_store_t *store = s_open ("db");
    herald_event_t first = tu_event ("a", "1");
    herald_append_result_t result;
    herald_batch_t batch = s_batch (&first, 1, &result);
    herald_error_t err = { 0 };
    cr_assert_eq (herald_store_apply_entry (store, &batch, 1, 1000, 5, &err), HERALD_OK);
    uint64_t digest = herald_store_digest (store);

    herald_event_t late = tu_event ("a", "2");
    uint64_t refused [] = { 5, 4, 1 };
    for (size_t i = 0; i < sizeof refused / sizeof refused [0]; i++) {
        batch = s_batch (&late, 1, &result);
        memset (&err, 0, sizeof err);
        cr_assert_eq (herald_store_apply_entry (store, &batch, 1, 2000, refused [i], &err),
                      HERALD_ERR_INTERNAL, "entry %" PRIu64 " after 5 was not refused",
                      refused [i]);
        cr_assert (strstr (err.message, "not after the last one applied (5)"), "%s",
                   err.message);
        memset (&err, 0, sizeof err);
        cr_assert_eq (herald_store_set_applied (store, refused [i], &err), HERALD_ERR_INTERNAL);
        cr_assert (strstr (err.message, "not after"), "%s", err.message);
    }
    //  Index 0 is "standalone": never a raft entry
    cr_assert_eq (herald_store_set_applied (store, 0, &err), HERALD_ERR_INTERNAL);
    cr_assert_eq (herald_store_applied_index (store), 5);
    cr_assert_eq (herald_store_head (store), 1);
    cr_assert_eq (s_ver_of (store, "a", 1), 1);
    cr_assert_eq (herald_store_digest (store), digest);
    uint64_t seq, ver;
    cr_assert_eq (herald_store_lookup_id (store, late.id, &seq, &ver), HERALD_ERR_NOT_FOUND);
    herald_store_destroy (&store);

    store = s_open ("db");
    cr_assert_eq (herald_store_applied_index (store), 5);
    cr_assert_eq (herald_store_head (store), 1);
    cr_assert_eq (herald_store_lookup_id (store, late.id, &seq, &ver), HERALD_ERR_NOT_FOUND);
    //  And the next index goes through
    batch = s_batch (&late, 1, &result);
    cr_assert_eq (herald_store_apply_entry (store, &batch, 1, 2000, 6, &err), HERALD_OK);
    cr_assert_eq (result.seq, 2);
    herald_store_destroy (&store);
}

//  ---------------------------------------------------------------------
//  kill -9 of a writer applying entries (tests/store_entry_writer, which
//  prints each index once apply_entry has returned): the store it leaves
//  is exactly the one entries 1..applied make, whatever the moment.

#define CRASH_CYCLES    6
#define CRASH_DEADLINE  (100ULL * 1000000000ULL)

//  Where store_entry_writer is: $HERALD_BUILDDIR/tests (make check), else
//  beside this test's binary (or one level up from libtool's .libs/).
static char *
s_writer_path (void)
{
    char *path = tu_build_program ("tests/store_entry_writer");
    if (!path)
        cr_assert_fail ("cannot find store_entry_writer (set HERALD_BUILDDIR or build it)");
    return path;
}

//  Run the writer until it acknowledged target entries, kill it, and
//  return the greatest index it acknowledged.
static uint64_t
s_crash_cycle (const char *path, const char *durability, size_t target, uint64_t deadline)
{
    char *writer = s_writer_path ();
    char *log = tu_path (s_dir, "writer.log");
    int pipe_fds [2];
    cr_assert_eq (pipe (pipe_fds), 0);
    int log_fd = open (log, O_WRONLY | O_CREAT | O_APPEND, 0600);
    cr_assert_geq (log_fd, 0, "open %s: %s", log, strerror (errno));
    pid_t pid = fork ();
    cr_assert_geq (pid, 0, "fork: %s", strerror (errno));
    if (pid == 0) {
        dup2 (pipe_fds [1], STDOUT_FILENO);
        dup2 (log_fd, STDERR_FILENO);
        close (pipe_fds [0]);
        close (pipe_fds [1]);
        close (log_fd);
        char *argv [] = { writer, (char *) path, (char *) durability, NULL };
        execv (writer, argv);
        _exit (127);
    }
    close (log_fd);
    close (pipe_fds [1]);
    s_child = pid;
    s_child_out = pipe_fds [0];
    char buffer [4096];
    size_t used = 0, lines = 0;
    uint64_t acked = 0;
    bool killed = false;
    uint64_t kill_at = 0;
    while (true) {
        uint64_t now = tu_mono_ns ();
        //  Killed at once after a report, the writer would always die at
        //  the start of an entry: a random delay of up to 3 ms (a few
        //  entries) spreads the moment over the whole apply
        if (!killed && lines >= target && !kill_at)
            kill_at = now + tu_rand (&s_kill_state) % 3000000;
        if (!killed && kill_at && now >= kill_at) {
            kill (s_child, SIGKILL);
            killed = true;
        }
        cr_assert_lt (now, deadline, "deadline passed with %zu of %zu entries", lines, target);
        uint64_t wake = killed || !kill_at? deadline: kill_at;
        struct pollfd item = { .fd = s_child_out, .events = POLLIN };
        int rc = poll (&item, 1, (int) ((wake - now) / 1000000));
        if (rc < 0 && errno == EINTR)
            continue;
        cr_assert_geq (rc, 0, "poll: %s", strerror (errno));
        if (rc == 0)
            continue;
        ssize_t got = read (s_child_out, buffer + used, sizeof buffer - used);
        if (got < 0 && errno == EINTR)
            continue;
        cr_assert_geq (got, 0, "read: %s", strerror (errno));
        if (got == 0)
            break;                              //  the writer is gone
        used += (size_t) got;
        char *start = buffer, *newline;
        while ((newline = memchr (start, '\n', (size_t) (buffer + used - start)))) {
            *newline = 0;
            uint64_t index = strtoull (start, NULL, 10);
            cr_assert_gt (index, acked, "entry %" PRIu64 " acknowledged after %" PRIu64, index,
                          acked);
            acked = index;
            lines++;
            start = newline + 1;
        }
        used = (size_t) (buffer + used - start);
        memmove (buffer, start, used);
    }
    int status = 0;
    while (waitpid (s_child, &status, 0) < 0 && errno == EINTR)
        ;
    s_child = 0;
    close (s_child_out);
    s_child_out = -1;
    if (!killed) {
        char said [512] = "";
        FILE *file = fopen (log, "r");
        if (file) {
            size_t got = fread (said, 1, sizeof said - 1, file);
            said [got] = 0;
            fclose (file);
        }
        cr_assert_fail ("the writer ended by itself (status %d) after %zu entries: %s", status,
                        lines, said);
    }
    cr_assert (WIFSIGNALED (status) && WTERMSIG (status) == SIGKILL,
               "the writer did not die by SIGKILL (status %d)", status);
    free (writer);
    free (log);
    return acked;
}

static void
s_crash_test (herald_durability_t durability)
{
    char *path = tu_path (s_dir, "crashed");
    herald_store_t *reference = s_open ("reference");
    uint64_t deadline = tu_mono_ns () + CRASH_DEADLINE;
    uint64_t state = (uint64_t) getpid () ^ tu_mono_ns ();
    s_kill_state = state;
    uint64_t acked = 0;
    for (int cycle = 0; cycle < CRASH_CYCLES; cycle++) {
        size_t target = 20 + tu_rand (&state) % 150;
        uint64_t cycle_acked = s_crash_cycle (
            path, durability == HERALD_DURABILITY_SYNC? "sync": "async", target, deadline);
        if (cycle_acked > acked)
            acked = cycle_acked;
        herald_store_options_t options = { .durability = durability };
        herald_error_t err = { 0 };
        herald_store_t *crashed = herald_store_open (path, &options, &err);
        cr_assert_not_null (crashed, "open after kill -9: %s", err.message);
        uint64_t applied = herald_store_applied_index (crashed);
        cr_assert_geq (applied, acked, "entry %" PRIu64 " was acknowledged, the store applied %"
                       PRIu64, acked, applied);
        //  The reference applies exactly entries 1..applied
        s_apply_entries (reference, herald_store_applied_index (reference) + 1, applied);
        s_assert_same (crashed, reference);
        cr_log_info ("cycle %d: %zu entries asked, %" PRIu64 " applied, head %" PRIu64, cycle,
                     target, applied, herald_store_head (crashed));
        herald_store_destroy (&crashed);
    }
    herald_store_destroy (&reference);
    free (path);
}

Test (herald_store_cluster, kill_9_never_separates_an_entry_from_its_index_sync)
{
    s_crash_test (HERALD_DURABILITY_SYNC);
}

Test (herald_store_cluster, kill_9_never_separates_an_entry_from_its_index_async)
{
    s_crash_test (HERALD_DURABILITY_ASYNC);
}

//  ---------------------------------------------------------------------
//  The log digest

//  d(head) computed here from the log, event by event, as documented.
static uint64_t
s_digest_of_log (herald_store_t *store)
{
    s_log_t log;
    s_log_read (store, &log);
    uint64_t digest = 0;
    for (size_t i = 0; i < log.count; i++) {
        tu_decoded_t decoded = { 0 };
        cr_assert_eq (tu_decode (&decoded, log.bytes [i], log.lens [i]), HERALD_OK);
        digest = herald_store_digest_next (digest, &decoded.event,
                                           herald_hash_content (&decoded.event));
        tu_decoded_fini (&decoded);
    }
    s_log_free (&log);
    return digest;
}

Test (herald_store_cluster, the_digest_is_the_same_for_the_same_entries)
{
    herald_store_t *a = s_open ("a");
    herald_store_options_t small = {
        .durability = HERALD_DURABILITY_ASYNC, .topic_cache = 1, .write_buffer_mb = 1
    };
    herald_store_t *b = s_open_with ("b", &small);
    herald_store_t *c = s_open ("c");
    cr_assert_eq (herald_store_digest (a), 0, "the digest of an empty log is 0");
    se_entry_t *entry = malloc (sizeof *entry);
    cr_assert_not_null (entry);
    uint64_t previous = 0, previous_head = 0;
    size_t changes = 0;
    for (uint64_t index = 1; index <= 80; index++) {
        herald_error_t err = { 0 };
        cr_assert_eq (se_apply_entry (a, index, entry, &err), HERALD_OK, "%s", err.message);
        cr_assert_eq (se_apply_entry (b, index, entry, &err), HERALD_OK, "%s", err.message);
        //  The standalone apply keeps the same digest (no raft index)
        if (!entry->barrier)
            cr_assert_eq (herald_store_apply (c, entry->batches, entry->count, entry->ts, &err),
                          HERALD_OK, "%s", err.message);
        cr_assert_eq (herald_store_digest (a), herald_store_digest (b),
                      "entry %" PRIu64 ": digests differ", index);
        cr_assert_eq (herald_store_digest (a), herald_store_digest (c),
                      "entry %" PRIu64 ": the standalone apply's digest differs", index);
        //  It moves exactly when the head does
        cr_assert_eq (herald_store_digest (a) != previous, herald_store_head (a) != previous_head,
                      "entry %" PRIu64 ": head %" PRIu64 " -> %" PRIu64 ", digest %s", index,
                      previous_head, herald_store_head (a),
                      herald_store_digest (a) != previous? "changed": "did not change");
        if (herald_store_digest (a) != previous)
            changes++;
        previous = herald_store_digest (a);
        previous_head = herald_store_head (a);
        if (index == 40) {
            herald_store_destroy (&b);
            b = s_open_with ("b", &small);
            cr_assert_eq (herald_store_digest (b), herald_store_digest (a),
                          "the digest changed across a reopen");
        }
    }
    cr_assert_gt (changes, 40);
    free (entry);
    //  What it is: the documented chain over the log's events
    cr_assert_eq (herald_store_digest (a), s_digest_of_log (a));
    s_assert_same (a, b);
    s_assert_same (a, c);
    herald_store_destroy (&a);
    herald_store_destroy (&b);
    herald_store_destroy (&c);
}

//  The digest of a store holding one event, with ts.
static uint64_t
s_digest_one (const char *name, const herald_event_t *event, uint64_t ts)
{
    herald_store_t *store = s_open (name);
    herald_append_result_t result;
    herald_batch_t batch = s_batch (event, 1, &result);
    herald_error_t err = { 0 };
    cr_assert_eq (herald_store_apply (store, &batch, 1, ts, &err), HERALD_OK, "%s", err.message);
    cr_assert_eq (herald_store_head (store), 1);
    uint64_t digest = herald_store_digest (store);
    cr_assert_eq (digest, s_digest_of_log (store));
    herald_store_destroy (&store);
    return digest;
}

Test (herald_store_cluster, the_digest_changes_with_every_logical_field)
{
    static const herald_kv_t meta [2] = { { "k", 1, "v", 1 }, { "trace", 5, "abc", 3 } };
    herald_event_t base = tu_event ("orders.eu", "payload");
    base.type = "order.placed";
    base.type_len = 12;
    base.has_schema = true;
    base.schema = 2;
    base.meta = meta;
    base.meta_count = 2;
    const uint64_t ts = 1700000000000000000ULL;
    uint64_t digest = s_digest_one ("base", &base, ts);
    cr_assert_eq (s_digest_one ("same", &base, ts), digest, "the same event, another digest");

    static const herald_kv_t meta_key [2] = { { "K", 1, "v", 1 }, { "trace", 5, "abc", 3 } };
    static const herald_kv_t meta_value [2] = { { "k", 1, "w", 1 }, { "trace", 5, "abc", 3 } };
    static const herald_kv_t meta_order [2] = { { "trace", 5, "abc", 3 }, { "k", 1, "v", 1 } };
    static const herald_kv_t meta_shift [2] = { { "k", 1, "vt", 2 }, { "race", 4, "abc", 3 } };
    typedef struct {
        const char *what;
        herald_event_t event;
        uint64_t ts;
    } s_variant_t;
    s_variant_t variants [20];
    size_t count = 0;
#define VARIANT(name, change) do { \
        herald_event_t event = base; change; \
        variants [count++] = (s_variant_t) { name, event, ts }; \
    } while (0)
    VARIANT ("id", event.id [15] ^= 1);
    VARIANT ("topic", event.topic = "orders.eX");
    VARIANT ("data", event.data = (const uint8_t *) "paYload");
    VARIANT ("empty data", event.data_len = 0);
    VARIANT ("type", event.type = "order.placeX");
    VARIANT ("no type", event.type = NULL; event.type_len = 0);
    VARIANT ("schema", event.schema = 3);
    VARIANT ("no schema", event.has_schema = false; event.schema = 0);
    VARIANT ("schema 1 given", event.schema = 1);
    VARIANT ("meta key", event.meta = meta_key);
    VARIANT ("meta value", event.meta = meta_value);
    VARIANT ("meta order", event.meta = meta_order);
    VARIANT ("meta boundary", event.meta = meta_shift);
    VARIANT ("one meta entry", event.meta_count = 1);
    VARIANT ("no meta", event.meta = NULL; event.meta_count = 0);
    VARIANT ("empty meta", event.meta_count = 0);
    VARIANT ("ts", (void) 0);
    variants [count - 1].ts = ts + 1;
#undef VARIANT
    uint64_t seen [21] = { digest };
    for (size_t i = 0; i < count; i++) {
        char name [32];
        snprintf (name, sizeof name, "v%zu", i);
        uint64_t other = s_digest_one (name, &variants [i].event, variants [i].ts);
        for (size_t j = 0; j <= i; j++)
            cr_assert_neq (other, seen [j], "%s: the digest did not change", variants [i].what);
        seen [i + 1] = other;
    }
    //  "no schema" and "schema 1 given" mean the same schema, but they are
    //  not the same envelope, and the digest tells them apart like "no
    //  meta" and "empty meta" (the envelope's bytes would differ).

    //  seq, ver and the digest before: the chain itself
    herald_event_t event = base;
    event.seq = 7;
    event.ver = 3;
    event.ts = ts;
    uint64_t content = herald_hash_content (&event);
    uint64_t next = herald_store_digest_next (11, &event, content);
    cr_assert_neq (herald_store_digest_next (12, &event, content), next, "previous");
    event.seq = 8;
    cr_assert_neq (herald_store_digest_next (11, &event, content), next, "seq");
    event.seq = 7;
    event.ver = 4;
    cr_assert_neq (herald_store_digest_next (11, &event, content), next, "ver");
    event.ver = 3;
    cr_assert_eq (herald_store_digest_next (11, &event, content), next);
}

//  Put (value) or delete (NULL) key of key_len bytes in column family cf
//  (0: "default", 1: "events") of the closed store in directory name,
//  with RocksDB alone.
static void
s_raw_write (const char *name, int cf, const void *key, size_t key_len, const void *value,
             size_t len)
{
    char *path = tu_path (s_dir, name);
    rocksdb_options_t *options = rocksdb_options_create ();
    const char *names [] = { "default", "events", "ids", "streams", "topics" };
    const rocksdb_options_t *cf_options [5] = { options, options, options, options, options };
    rocksdb_column_family_handle_t *handles [5];
    char *rocks_err = NULL;
    rocksdb_t *db = rocksdb_open_column_families (options, path, 5, names, cf_options, handles,
                                                  &rocks_err);
    cr_assert_null (rocks_err, "raw open %s: %s", path, rocks_err);
    rocksdb_writeoptions_t *write = rocksdb_writeoptions_create ();
    rocksdb_writeoptions_set_sync (write, 1);
    if (value)
        rocksdb_put_cf (db, write, handles [cf], key, key_len, value, len, &rocks_err);
    else
        rocksdb_delete_cf (db, write, handles [cf], key, key_len, &rocks_err);
    cr_assert_null (rocks_err, "raw write: %s", rocks_err);
    rocksdb_writeoptions_destroy (write);
    for (int i = 0; i < 5; i++)
        rocksdb_column_family_handle_destroy (handles [i]);
    rocksdb_close (db);
    rocksdb_options_destroy (options);
    free (path);
}

static void
s_raw_default (const char *name, const char *key, const void *value, size_t len)
{
    s_raw_write (name, 0, key, strlen (key), value, len);
}

//  The key number index (from 0) of column family cf of the closed store
//  in directory name, into key (8 bytes); returns how many keys cf has.
static size_t
s_raw_key (const char *name, int cf, size_t index, uint8_t key [8])
{
    char *path = tu_path (s_dir, name);
    rocksdb_options_t *options = rocksdb_options_create ();
    const char *names [] = { "default", "events", "ids", "streams", "topics" };
    const rocksdb_options_t *cf_options [5] = { options, options, options, options, options };
    rocksdb_column_family_handle_t *handles [5];
    char *rocks_err = NULL;
    rocksdb_t *db = rocksdb_open_for_read_only_column_families (
        options, path, 5, names, cf_options, handles, 0, &rocks_err);
    cr_assert_null (rocks_err, "raw open %s: %s", path, rocks_err);
    rocksdb_readoptions_t *read = rocksdb_readoptions_create ();
    rocksdb_iterator_t *it = rocksdb_create_iterator_cf (db, read, handles [cf]);
    size_t count = 0;
    for (rocksdb_iter_seek_to_first (it); rocksdb_iter_valid (it); rocksdb_iter_next (it)) {
        size_t len;
        const char *found = rocksdb_iter_key (it, &len);
        if (count++ == index) {
            cr_assert_eq (len, 8);
            memcpy (key, found, 8);
        }
    }
    rocksdb_iter_destroy (it);
    rocksdb_readoptions_destroy (read);
    for (int i = 0; i < 5; i++)
        rocksdb_column_family_handle_destroy (handles [i]);
    rocksdb_close (db);
    rocksdb_options_destroy (options);
    free (path);
    return count;
}

//  Whether key is in CF "default" of the closed store in directory name.
static bool
s_raw_has (const char *name, const char *key)
{
    char *path = tu_path (s_dir, name);
    rocksdb_options_t *options = rocksdb_options_create ();
    const char *names [] = { "default", "events", "ids", "streams", "topics" };
    const rocksdb_options_t *cf_options [5] = { options, options, options, options, options };
    rocksdb_column_family_handle_t *handles [5];
    char *rocks_err = NULL;
    rocksdb_t *db = rocksdb_open_for_read_only_column_families (
        options, path, 5, names, cf_options, handles, 0, &rocks_err);
    cr_assert_null (rocks_err, "raw open %s: %s", path, rocks_err);
    rocksdb_readoptions_t *read = rocksdb_readoptions_create ();
    size_t len = 0;
    char *value = rocksdb_get_cf (db, read, handles [0], key, strlen (key), &len, &rocks_err);
    cr_assert_null (rocks_err, "raw get: %s", rocks_err);
    free (value);
    rocksdb_readoptions_destroy (read);
    for (int cf = 0; cf < 5; cf++)
        rocksdb_column_family_handle_destroy (handles [cf]);
    rocksdb_close (db);
    rocksdb_options_destroy (options);
    free (path);
    return value != NULL;
}

Test (herald_store_cluster, a_store_without_its_digest_gets_it_computed_on_open)
{
    herald_store_t *store = s_open ("db");
    s_apply_entries (store, 1, 30);
    uint64_t digest = herald_store_digest (store);
    uint64_t head = herald_store_head (store);
    cr_assert_gt (head, 0);
    herald_store_destroy (&store);
    cr_assert (s_raw_has ("db", HERALD_STORE_DIGEST_KEY));

    //  A store from before the digest: computed on open, and stored
    s_raw_default ("db", HERALD_STORE_DIGEST_KEY, NULL, 0);
    cr_assert (!s_raw_has ("db", HERALD_STORE_DIGEST_KEY));
    herald_store_options_t read_only = { .read_only = true };
    store = s_open_with ("db", &read_only);
    cr_assert_eq (herald_store_digest (store), digest, "computed on a read-only open");
    herald_store_destroy (&store);
    cr_assert (!s_raw_has ("db", HERALD_STORE_DIGEST_KEY), "a read-only open wrote");
    store = s_open ("db");
    cr_assert_eq (herald_store_digest (store), digest, "computed on open");
    herald_store_destroy (&store);
    cr_assert (s_raw_has ("db", HERALD_STORE_DIGEST_KEY), "the computed digest was not stored");

    //  A digest stored for another head is not believed
    uint8_t stale [16];
    tu_put_be64 (stale, head - 1);
    tu_put_be64 (stale + 8, 12345);
    s_raw_default ("db", HERALD_STORE_DIGEST_KEY, stale, sizeof stale);
    store = s_open ("db");
    cr_assert_eq (herald_store_digest (store), digest, "a stale digest was believed");
    //  and the store goes on from it
    s_apply_entries (store, 31, 40);
    herald_store_t *reference = s_open ("reference");
    s_apply_entries (reference, 1, 40);
    cr_assert_eq (herald_store_digest (store), herald_store_digest (reference));
    herald_store_destroy (&reference);
    herald_store_destroy (&store);

    //  A digest key of the wrong size: the store says so
    s_raw_default ("db", HERALD_STORE_DIGEST_KEY, stale, 5);
    herald_error_t err = { 0 };
    char *path = tu_path (s_dir, "db");
    store = herald_store_open (path, NULL, &err);
    cr_assert_null (store);
    cr_assert_eq (err.code, HERALD_ERR_CORRUPT);
    cr_assert (strstr (err.message, "herald.digest has 5 bytes"), "%s", err.message);

    //  No digest and a hole in the log: a broker's open refuses, naming
    //  the hole; herald inspect's (read-only) opens, to report it
    s_raw_default ("db", HERALD_STORE_DIGEST_KEY, NULL, 0);
    uint8_t run [8];
    size_t runs = s_raw_key ("db", 1, 1, run);
    cr_assert_geq (runs, 3, "the log has %zu runs", runs);
    s_raw_write ("db", 1, run, 8, NULL, 0);
    memset (&err, 0, sizeof err);
    store = herald_store_open (path, NULL, &err);
    cr_assert_null (store, "a store with a hole and no digest opened");
    cr_assert_eq (err.code, HERALD_ERR_CORRUPT, "%d %s", err.code, err.message);
    cr_assert (strstr (err.message, "computing the log digest"), "%s", err.message);
    store = herald_store_open (path, &read_only, &err);
    cr_assert_not_null (store, "read-only: %s", err.message);
    herald_store_destroy (&store);
    free (path);
}

//  ---------------------------------------------------------------------
//  Install

//  Install log envelopes [from, from + count) with raft_index.
static herald_err
s_install (herald_store_t *store, const s_log_t *log, size_t from, size_t count,
           uint64_t raft_index, herald_error_t *err)
{
    return herald_store_install (store, (const uint8_t *const *) log->bytes + from,
                                 log->lens + from, count, raft_index, err);
}

Test (herald_store_cluster, install_copies_a_whole_log_into_an_empty_store)
{
    herald_store_t *source = s_open ("source");
    s_apply_entries (source, 1, 150);
    s_log_t log;
    s_log_read (source, &log);
    cr_assert_gt (log.count, 500);
    //  The digest at each seq, from the log
    uint64_t *digests = calloc (log.count + 1, sizeof (uint64_t));
    cr_assert_not_null (digests);
    for (size_t i = 0; i < log.count; i++) {
        tu_decoded_t decoded = { 0 };
        cr_assert_eq (tu_decode (&decoded, log.bytes [i], log.lens [i]), HERALD_OK);
        digests [i + 1] = herald_store_digest_next (digests [i], &decoded.event,
                                                    herald_hash_content (&decoded.event));
        tu_decoded_fini (&decoded);
    }
    cr_assert_eq (digests [log.count], herald_store_digest (source));

    //  In chunks of many sizes; the raft index with the last one only
    herald_store_t *target = s_open ("target");
    static const size_t chunks [] = { 1, 2, 7, 64, 3, 300, 1, 129 };
    size_t done = 0;
    for (size_t c = 0; done < log.count; c++) {
        size_t count = chunks [c % (sizeof chunks / sizeof chunks [0])];
        if (count > log.count - done)
            count = log.count - done;
        bool last = done + count == log.count;
        uint64_t raft_index = last? herald_store_applied_index (source): 0;
        herald_error_t err = { 0 };
        cr_assert_eq (s_install (target, &log, done, count, raft_index, &err), HERALD_OK,
                      "install of seqs %zu..%zu: %s", done + 1, done + count, err.message);
        done += count;
        cr_assert_eq (herald_store_head (target), done);
        cr_assert_eq (herald_store_digest (target), digests [done], "digest at %zu", done);
        cr_assert_eq (herald_store_applied_index (target), raft_index);
        //  What was installed is what the broker fans out, as for an append
        const uint8_t *envelope;
        size_t len;
        cr_assert (herald_store_appended (target, done, &envelope, &len));
        cr_assert (len == log.lens [done - 1] && !memcmp (envelope, log.bytes [done - 1], len));
    }
    cr_assert_eq (herald_store_applied_index (target), herald_store_applied_index (source));
    s_assert_same (source, target);

    //  Indistinguishable afterwards: the same entries decide the same
    //  (duplicates of installed ids, `expect` against installed vers)
    se_entry_t *entry = malloc (sizeof *entry);
    cr_assert_not_null (entry);
    for (uint64_t index = 151; index <= 175; index++) {
        herald_error_t err = { 0 };
        cr_assert_eq (se_apply_entry (source, index, entry, &err), HERALD_OK, "%s", err.message);
        se_entry_t *other = malloc (sizeof *other);
        cr_assert_not_null (other);
        cr_assert_eq (se_apply_entry (target, index, other, &err), HERALD_OK, "%s", err.message);
        for (size_t b = 0; b < entry->count; b++) {
            cr_assert_eq (entry->batches [b].status, other->batches [b].status);
            cr_assert (!memcmp (entry->results [b], other->results [b],
                                entry->batches [b].count * sizeof (herald_append_result_t)),
                       "entry %" PRIu64 " batch %zu decided differently", index, b);
        }
        free (other);
    }
    //  An entry of installed ids only: every one a duplicate at its seq
    se_make_entry (2, entry);
    herald_error_t err = { 0 };
    cr_assert_eq (herald_store_apply_entry (target, entry->batches, entry->count, 0, 176, &err),
                  HERALD_OK, "%s", err.message);
    for (size_t b = 0; b < entry->count; b++)
        for (size_t i = 0; i < entry->batches [b].count; i++) {
            uint64_t seq, ver;
            cr_assert (entry->results [b][i].dup, "an installed id was not recognised");
            cr_assert_eq (herald_store_lookup_id (source, entry->events [b][i].id, &seq, &ver),
                          HERALD_OK);
            cr_assert_eq (entry->results [b][i].seq, seq);
            cr_assert_eq (entry->results [b][i].ver, ver);
        }
    free (entry);
    cr_assert_eq (herald_store_set_applied (source, 176, &err), HERALD_OK);
    s_assert_same (source, target);
    herald_store_destroy (&target);
    target = s_open ("target");
    cr_assert_eq (herald_store_applied_index (target), 176);
    s_assert_same (source, target);
    herald_store_destroy (&target);
    herald_store_destroy (&source);
    free (digests);
    s_log_free (&log);
}

//  The envelope of event with seq, ver and ts, into buffer (emptied).
static void
s_envelope (herald_event_t event, uint64_t seq, uint64_t ver, uint64_t ts,
            msgpack_sbuffer *buffer)
{
    event.seq = seq;
    event.ver = ver;
    event.ts = ts;
    buffer->size = 0;
    cr_assert_eq (herald_event_encode (&event, buffer), 0);
}

//  What must not change when an install is refused.
typedef struct {
    uint64_t head, digest, applied, last_ts, topics, ver_a, ver_new;
} s_state_t;

static s_state_t
s_state (herald_store_t *store)
{
    return (s_state_t) {
        herald_store_head (store), herald_store_digest (store),
        herald_store_applied_index (store), herald_store_last_ts (store),
        herald_store_topic_count (store), s_ver_of (store, "a", 1),
        s_ver_of (store, "new.topic", 9)
    };
}

//  Install envelopes[0..count); it must be refused with a message holding
//  text, and change nothing.
static void
s_refused (herald_store_t *store, const uint8_t *const *envelopes, const size_t *lens,
           size_t count, uint64_t raft_index, const char *text, const char *what)
{
    s_state_t before = s_state (store);
    herald_error_t err = { 0 };
    cr_assert_eq (herald_store_install (store, envelopes, lens, count, raft_index, &err),
                  HERALD_ERR_INTERNAL, "%s: not refused (%s)", what, err.message);
    cr_assert (strstr (err.message, text), "%s: the message \"%s\" does not say \"%s\"", what,
               err.message, text);
    cr_assert (strstr (err.message, "nothing written"), "%s: %s", what, err.message);
    s_state_t after = s_state (store);
    cr_assert (!memcmp (&before, &after, sizeof before), "%s: the store changed", what);
    //  No id of the call was stored
    for (size_t i = 0; i < count; i++) {
        tu_decoded_t decoded = { 0 };
        if (lens [i] && tu_decode (&decoded, envelopes [i], lens [i]) == HERALD_OK) {
            uint64_t seq, ver;
            bool stored_before = herald_store_lookup_id (store, decoded.event.id, &seq, &ver)
                              == HERALD_OK && seq <= before.head;
            cr_assert (stored_before || herald_store_lookup_id (store, decoded.event.id, &seq,
                                                                &ver) == HERALD_ERR_NOT_FOUND,
                       "%s: envelope %zu's id was stored", what, i);
        }
        tu_decoded_fini (&decoded);
    }
}

Test (herald_store_cluster, install_refuses_what_would_not_match_and_writes_nothing)
{
    //  The source's log: a:1 a:2 b:1 a:3 b:2
    herald_store_t *source = s_open ("source");
    static const herald_kv_t meta [1] = { { "k", 1, "v", 1 } };
    herald_event_t events [5] = {
        tu_event ("a", "1"), tu_event ("a", "2"), tu_event ("b", "3"), tu_event ("a", "4"),
        tu_event ("b", "5")
    };
    events [1].type = "t", events [1].type_len = 1, events [1].meta = meta;
    events [1].meta_count = 1;
    herald_append_result_t results [5];
    for (size_t i = 0; i < 5; i++) {
        herald_batch_t batch = s_batch (&events [i], 1, &results [i]);
        herald_error_t err = { 0 };
        cr_assert_eq (herald_store_apply (source, &batch, 1, 1000 * (i + 1), &err), HERALD_OK);
    }
    s_log_t log;
    s_log_read (source, &log);
    cr_assert_eq (log.count, 5);

    herald_store_t *target = s_open ("target");
    herald_error_t err = { 0 };
    cr_assert_eq (herald_store_set_applied (target, 10, &err), HERALD_OK);
    cr_assert_eq (s_install (target, &log, 0, 3, 0, &err), HERALD_OK, "%s", err.message);
    cr_assert_eq (herald_store_head (target), 3);
    const uint8_t *next = log.bytes [3];        //  seq 4, a:3: what may come next
    size_t next_len = log.lens [3];
    msgpack_sbuffer bad, other;
    msgpack_sbuffer_init (&bad);
    msgpack_sbuffer_init (&other);
    herald_event_t fresh = tu_event ("new.topic", "x");

    //  seq
    s_refused (target, (const uint8_t *const []) { log.bytes [4] },
               (const size_t []) { log.lens [4] }, 1, 0, "seq is not head + 1 (4)", "a gap");
    s_refused (target, (const uint8_t *const []) { next, next },
               (const size_t []) { next_len, next_len }, 2, 0, "seq is not head + 1 (5)",
               "the same seq twice");
    s_refused (target, (const uint8_t *const []) { log.bytes [0] },
               (const size_t []) { log.lens [0] }, 1, 0, "seq is not head + 1", "a stored seq");
    //  ver
    s_envelope (events [3], 4, 4, 4000, &bad);
    s_refused (target, (const uint8_t *const []) { (uint8_t *) bad.data },
               (const size_t []) { bad.size }, 1, 0, "ver 4 of topic a is not its ver + 1 (3)",
               "a ver gap");
    s_envelope (events [3], 4, 2, 4000, &bad);
    s_refused (target, (const uint8_t *const []) { (uint8_t *) bad.data },
               (const size_t []) { bad.size }, 1, 0, "ver 2 of topic a", "a stored ver");
    s_envelope (fresh, 5, 2, 5000, &bad);
    s_refused (target, (const uint8_t *const []) { next, (uint8_t *) bad.data },
               (const size_t []) { next_len, bad.size }, 2, 0,
               "ver 2 of topic new.topic is not its ver + 1 (1)", "a new topic at ver 2");
    //  ts
    s_envelope (fresh, 4, 1, 2999, &bad);
    s_refused (target, (const uint8_t *const []) { (uint8_t *) bad.data },
               (const size_t []) { bad.size }, 1, 0, "ts 2999 is before the last ts 3000",
               "a ts before the last");
    s_envelope (fresh, 5, 1, 3500, &bad);
    s_refused (target, (const uint8_t *const []) { next, (uint8_t *) bad.data },
               (const size_t []) { next_len, bad.size }, 2, 0,
               "ts 3500 is before the last ts 4000", "a ts before the call's last");
    //  id
    herald_event_t copy = fresh;
    memcpy (copy.id, events [0].id, HERALD_ID_BYTES);
    s_envelope (copy, 4, 1, 4000, &bad);
    s_refused (target, (const uint8_t *const []) { (uint8_t *) bad.data },
               (const size_t []) { bad.size }, 1, 0, "is stored already (seq 1)", "a stored id");
    memcpy (copy.id, events [3].id, HERALD_ID_BYTES);
    s_envelope (copy, 5, 1, 4000, &bad);
    s_refused (target, (const uint8_t *const []) { next, (uint8_t *) bad.data },
               (const size_t []) { next_len, bad.size }, 2, 0, "is stored already (seq 4)",
               "an id twice in the call");
    //  well formed
    static const uint8_t garbage [] = { 0xc1, 0x00 };
    s_refused (target, (const uint8_t *const []) { next, garbage },
               (const size_t []) { next_len, sizeof garbage }, 2, 0, "not a well-formed envelope",
               "garbage");
    s_refused (target, (const uint8_t *const []) { next }, (const size_t []) { next_len - 1 }, 1,
               0, "not a well-formed envelope", "a cut envelope");
    s_refused (target, (const uint8_t *const []) { next }, (const size_t []) { 0 }, 1, 0,
               "empty", "an empty envelope");
    //  A publisher's event map (no seq, ver, ts)
    other.size = 0;
    msgpack_packer pk;
    msgpack_packer_init (&pk, &other, msgpack_sbuffer_write);
    msgpack_pack_map (&pk, 3);
    msgpack_pack_str_with_body (&pk, "id", 2);
    msgpack_pack_bin_with_body (&pk, fresh.id, HERALD_ID_BYTES);
    msgpack_pack_str_with_body (&pk, "topic", 5);
    msgpack_pack_str_with_body (&pk, "new.topic", 9);
    msgpack_pack_str_with_body (&pk, "data", 4);
    msgpack_pack_bin_with_body (&pk, "x", 1);
    s_refused (target, (const uint8_t *const []) { (uint8_t *) other.data },
               (const size_t []) { other.size }, 1, 0, "not a well-formed envelope",
               "an event map without seq");
    //  Valid MessagePack that decodes, but not as Herald writes it: one
    //  more key (the map's count raised, a key appended)
    cr_assert_eq (next [0] & 0xf0, 0x80, "a fixmap");
    other.size = 0;
    msgpack_sbuffer_write (&other, (const char *) next, next_len);
    other.data [0] = (char) (next [0] + 1);
    msgpack_sbuffer_write (&other, "\xa1x\x01", 3);
    s_refused (target, (const uint8_t *const []) { (uint8_t *) other.data },
               (const size_t []) { other.size }, 1, 0,
               "its bytes are not the ones Herald writes", "an extra key");
    //  The raft index
    s_refused (target, (const uint8_t *const []) { next }, (const size_t []) { next_len }, 1, 10,
               "raft index 10 is not after the last one applied (10)", "an old raft index");

    //  Still whole: the rest goes in, and the store equals the source
    herald_store_destroy (&target);
    target = s_open ("target");
    cr_assert_eq (herald_store_head (target), 3);
    cr_assert_eq (s_install (target, &log, 3, 2, 11, &err), HERALD_OK, "%s", err.message);
    cr_assert_eq (herald_store_applied_index (target), 11);
    s_assert_same (source, target);
    //  An empty install with an index only moves the index
    cr_assert_eq (herald_store_install (target, NULL, NULL, 0, 12, &err), HERALD_OK);
    cr_assert_eq (herald_store_applied_index (target), 12);
    cr_assert_eq (herald_store_head (target), 5);
    msgpack_sbuffer_destroy (&bad);
    msgpack_sbuffer_destroy (&other);
    s_log_free (&log);
    herald_store_destroy (&target);
    herald_store_destroy (&source);
}
