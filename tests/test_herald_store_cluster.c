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
    char path [PATH_MAX + 32];
    const char *builddir = getenv ("HERALD_BUILDDIR");
    if (builddir && *builddir) {
        snprintf (path, sizeof path, "%s/tests/store_entry_writer", builddir);
        if (access (path, X_OK) == 0)
            return strdup (path);
    }
    char self [PATH_MAX];
    ssize_t len = readlink ("/proc/self/exe", self, sizeof self - 1);
    cr_assert_gt (len, 0, "readlink /proc/self/exe: %s", strerror (errno));
    self [len] = 0;
    for (int up = 0; up < 2; up++) {
        char *slash = strrchr (self, '/');
        cr_assert_not_null (slash);
        *slash = 0;
        snprintf (path, sizeof path, "%s/store_entry_writer", self);
        if (access (path, X_OK) == 0)
            return strdup (path);
    }
    cr_assert_fail ("cannot find store_entry_writer (set HERALD_BUILDDIR or build it)");
    return NULL;
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
