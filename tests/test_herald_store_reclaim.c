/*  =========================================================================
    test_herald_store_reclaim - freeing the disk of trimmed events (issue 17)

    herald_store_reclaim after a whole-log trim (runs deleted, the disk
    clearly smaller) and after a prefix trim (runs rewritten with holes:
    the ids digest unchanged and equal to a BLAKE2b of the ids published,
    scans of other prefixes skipping the holes, seq_at_ts unchanged, each
    topic's ver kept, trimmed ids still duplicates); scans begun before a
    trim and its reclaim; appends during reclaim; a reclaim killed with
    SIGKILL mid-way, resumed by the next open.
    =========================================================================
*/

#include <criterion/criterion.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "testutil.h"
#include "groupops.h"
#include "trimtest.h"
#include "herald_backup.h"

static char *s_dir;

static void
s_setup (void)
{
    s_dir = tu_tmpdir_new ("reclaim");
    cr_assert (s_dir, "cannot make a temporary directory: %s", strerror (errno));
}

static void
s_teardown (void)
{
    tu_tmpdir_destroy (&s_dir);
}

TestSuite (store_reclaim, .init = s_setup, .fini = s_teardown, .timeout = 180);

//  Reclaim to the end in calls of budget; the stats added up
static void
s_reclaim_all (herald_store_t *store, size_t budget, herald_reclaim_stats_t *stats)
{
    memset (stats, 0, sizeof (*stats));
    bool more = true;
    for (int calls = 0; more; calls++) {
        cr_assert (calls < 100000, "reclaim never ends");
        herald_error_t err = { 0 };
        cr_assert_eq (herald_store_reclaim (store, budget, &more, stats, &err), HERALD_OK,
                      "%s", err.message);
    }
}

//  The disk a store takes once cleanly stopped (its WAL flushed away)
static uint64_t
s_disk_stopped (herald_store_t **store_p, const char *dir)
{
    herald_store_destroy (store_p);
    *store_p = tt_open (dir);
    return s_disk_of (*store_p);
}

static void
s_assert_digest (herald_store_t *store, const tt_ids_t *ids, uint64_t from, uint64_t to)
{
    uint8_t got [32], want [32];
    herald_error_t err = { 0 };
    cr_assert_eq (herald_store_ids_digest (store, from, to, got, NULL, &err), HERALD_OK, "%s",
                  err.message);
    tt_digest (ids, from, to, want);
    cr_assert_arr_eq (got, want, 32, "ids digest of %llu..%llu", (unsigned long long) from,
                      (unsigned long long) to);
}

Test (store_reclaim, whole_log_frees_the_disk)
{
    herald_store_t *store = tt_open (s_dir);
    tt_ids_t ids = { .data_size = 500 };
    tt_publish (store, &ids, "w.", 16, 200000);
    uint64_t before = s_disk_stopped (&store, s_dir);
    tt_trim_ok (store, "", 180000, NULL);
    herald_reclaim_stats_t stats;
    s_reclaim_all (store, 20000, &stats);
    cr_assert_gt (stats.runs_deleted, 0);
    cr_assert_leq (stats.events_removed, 180000);
    cr_assert_gt (stats.events_removed, 179000, "all but the straddling run's");
    cr_assert_gt (stats.stream_runs_deleted, 0);
    uint64_t after = s_disk_stopped (&store, s_dir);
    cr_assert_lt (after, before / 3, "disk %llu before, %llu after",
                  (unsigned long long) before, (unsigned long long) after);
    //  What is left reads as before
    cr_assert_eq (herald_store_log_first (store), 180001);
    cr_assert_eq (herald_store_head (store), 200000);
    s_assert_digest (store, &ids, 180001, 200000);
    tt_scan_expect (store, 180001, NULL, 0, 180001, 200000);
    const char *w3 = "w.3";
    tt_scan_expect_topics (store, 180001, &w3, 1, 1250);
    tt_scan_refused (store, 180000, NULL, 0, 180001);
    uint64_t ver;
    herald_error_t err = { 0 };
    cr_assert_eq (herald_store_topic_first_ver (store, "w.3", 3, &ver, &err), HERALD_OK, "%s",
                  err.message);
    cr_assert_eq (ver, 11251);
    cr_assert_eq (s_ver_of (store, "w.3", 3), 12500);
    herald_scan_t *read = herald_store_read (store, "w.3", 3, 11251, 0, &err);
    cr_assert_not_null (read, "%s", err.message);
    const uint8_t *bytes;
    size_t len;
    uint64_t seq, count = 0;
    int rc;
    while ((rc = herald_scan_next (read, &bytes, &len, &seq)) == 1)
        count++;
    cr_assert_eq (rc, 0, "%s", herald_scan_error (read)->message);
    cr_assert_eq (count, 1250);
    herald_scan_destroy (&read);
    //  A trimmed id is still a duplicate, with its seq and ver
    char data [600];
    size_t data_len = tt_data (500, 20, data, sizeof data);
    herald_event_t event = tu_event_n ("w.3", 3, data, data_len);
    memcpy (event.id, ids.ids [19], HERALD_ID_BYTES);
    herald_append_result_t result;
    cr_assert_eq (tu_append (store, &event, 1, &result, NULL), HERALD_OK);
    cr_assert (result.dup && !result.reused);
    cr_assert_eq (result.seq, 20);
    cr_assert_eq (result.ver, 2);
    //  Nothing more to do
    bool more = true;
    memset (&stats, 0, sizeof stats);
    cr_assert_eq (herald_store_reclaim (store, 1000, &more, &stats, &err), HERALD_OK);
    cr_assert_not (more);
    cr_assert_eq (stats.runs_deleted + stats.runs_rewritten + stats.stream_runs_deleted, 0);
    herald_store_destroy (&store);
    tt_ids_fini (&ids);
}

//  keep.0 drop.0 keep.1 drop.1 ... round robin over four topics
static const char *s_topics [] = { "keep.0", "drop.0", "keep.1", "drop.1" };

Test (store_reclaim, prefix_cuts_holes)
{
    herald_store_t *store = tt_open (s_dir);
    tt_ids_t ids = { .data_size = 300 };
    tt_publish_topics (store, &ids, s_topics, 4, 40000);
    //  A few ts to look up again after
    uint64_t probes [] = { 1, 2, 5000, 20002, 39999, 40000 };
    uint64_t ts [6], at_ts [6];
    for (size_t i = 0; i < 6; i++) {
        tu_decoded_t decoded = { 0 };
        cr_assert_eq (tu_get (store, probes [i], &decoded), HERALD_OK);
        ts [i] = decoded.event.ts;
        at_ts [i] = s_seq_at (store, ts [i]);
        tu_decoded_fini (&decoded);
    }
    uint64_t before = s_disk_stopped (&store, s_dir);
    //  Every drop. event, up to the head (so the head is a hole)
    tt_trim_ok (store, "drop.", 40000, NULL);
    herald_reclaim_stats_t stats;
    s_reclaim_all (store, 3000, &stats);
    cr_assert_eq (stats.events_removed, 20000);
    cr_assert_gt (stats.runs_rewritten, 0);
    cr_assert_eq (stats.runs_deleted, 0);
    cr_assert_gt (stats.stream_runs_deleted, 0);
    uint64_t after = s_disk_stopped (&store, s_dir);
    cr_assert_lt (after, before * 3 / 4, "disk %llu before, %llu after",
                  (unsigned long long) before, (unsigned long long) after);
    //  Reopened (last ts from a hole): the same head, digest of every id
    cr_assert_eq (herald_store_head (store), 40000);
    cr_assert_gt (herald_store_last_ts (store), 0);
    s_assert_digest (store, &ids, 1, 40000);
    s_assert_digest (store, &ids, 3, 39998);
    for (size_t i = 0; i < 6; i++) {
        tu_decoded_t decoded = { 0 };
        if (probes [i] % 2)
            cr_assert_eq (tu_get (store, probes [i], &decoded), HERALD_OK);
        tu_decoded_fini (&decoded);
        cr_assert_eq (s_seq_at (store, ts [i]), at_ts [i], "seq_at_ts over holes");
        cr_assert_eq (s_seq_at (store, ts [i] + 1), s_seq_at (store, ts [i] + 1));
    }
    cr_assert_eq (s_seq_at (store, UINT64_MAX), 40001);
    //  keep. scans skip the holes: full (every keep) and sparse (one topic)
    const char *keep = "keep.", *keep1 = "keep.1";
    tt_scan_expect_topics (store, 1, &keep, 1, 20000);
    tt_scan_expect_topics (store, 30000, &keep1, 1, 2500);
    tt_scan_refused (store, 1, NULL, 0, 40001);
    const char *drop = "drop.", *d = "d";
    tt_scan_refused (store, 40000, &drop, 1, 40001);
    tt_scan_refused (store, 1, &d, 1, 40001);
    tt_scan_expect_topics (store, 40001, &drop, 1, 0);
    //  get of a hole: trimmed
    uint8_t *envelope;
    size_t len;
    herald_error_t err = { 0 };
    cr_assert_eq (herald_store_get (store, 2, &envelope, &len, &err), HERALD_ERR_TRIMMED);
    //  Each topic keeps its ver; the next event goes on from it
    cr_assert_eq (s_ver_of (store, "drop.1", 6), 10000);
    uint64_t ver;
    cr_assert_eq (herald_store_topic_first_ver (store, "drop.1", 6, &ver, &err), HERALD_OK,
                  "%s", err.message);
    cr_assert_eq (ver, 10001);
    herald_event_t event = tu_event ("drop.1", "next");
    herald_append_result_t result;
    cr_assert_eq (tu_append (store, &event, 1, &result, NULL), HERALD_OK);
    cr_assert_eq (result.ver, 10001);
    //  A retry of a cut-out event: a duplicate with its seq and ver
    char data [400];
    size_t data_len = tt_data (300, 4, data, sizeof data);
    event = tu_event_n ("drop.1", 6, data, data_len);
    memcpy (event.id, ids.ids [3], HERALD_ID_BYTES);
    cr_assert_eq (tu_append (store, &event, 1, &result, NULL), HERALD_OK);
    cr_assert (result.dup && !result.reused);
    cr_assert_eq (result.seq, 4);
    cr_assert_eq (result.ver, 1);
    herald_store_destroy (&store);
    tt_ids_fini (&ids);
}

Test (store_reclaim, scans_begun_before)
{
    herald_store_t *store = tt_open (s_dir);
    tt_ids_t ids = { 0 };
    tt_publish_topics (store, &ids, s_topics, 4, 8000);
    herald_error_t err = { 0 };
    const uint8_t *bytes;
    size_t len;
    uint64_t seq;
    //  Three scans, begun before: keep. (not concerned), everything, drop.0 (sparse)
    herald_str_t keep = { "keep.", 5 }, drop0 = { "drop.0", 6 };
    herald_scan_spec_t spec_keep = { .from = 1, .prefixes = &keep, .prefix_count = 1 };
    herald_scan_spec_t spec_all = { .from = 1 };
    herald_scan_spec_t spec_drop = { .from = 1, .prefixes = &drop0, .prefix_count = 1 };
    herald_scan_t *scans [3] = {
        herald_store_scan (store, &spec_keep, &err),
        herald_store_scan (store, &spec_all, &err),
        herald_store_scan (store, &spec_drop, &err),
    };
    for (int i = 0; i < 3; i++) {
        cr_assert_not_null (scans [i]);
        cr_assert_eq (herald_scan_next (scans [i], &bytes, &len, &seq), 1);
    }
    tt_trim_ok (store, "drop.", 6000, NULL);
    herald_reclaim_stats_t stats;
    s_reclaim_all (store, 500, &stats);
    cr_assert_eq (stats.events_removed, 3000);
    //  Scans begun after the reclaim, too
    herald_scan_t *after_keep = herald_store_scan (store, &spec_keep, &err);
    cr_assert_not_null (after_keep);
    uint64_t count = 1;
    int rc;
    while ((rc = herald_scan_next (scans [0], &bytes, &len, &seq)) == 1)
        count++;
    cr_assert_eq (rc, 0, "%s", herald_scan_error (scans [0])->message);
    cr_assert_eq (count, 4000);
    count = 0;
    while ((rc = herald_scan_next (after_keep, &bytes, &len, &seq)) == 1)
        count++;
    cr_assert_eq (rc, 0, "%s", herald_scan_error (after_keep)->message);
    cr_assert_eq (count, 4000);
    //  The others meet a trimmed event of theirs at once: TRIMMED
    for (int i = 1; i < 3; i++) {
        rc = herald_scan_next (scans [i], &bytes, &len, &seq);
        cr_assert_eq (rc, -1, "scan %d: returned %llu", i, (unsigned long long) seq);
        cr_assert_eq (herald_scan_error (scans [i])->code, HERALD_ERR_TRIMMED, "%s",
                      herald_scan_error (scans [i])->message);
    }
    for (int i = 0; i < 3; i++)
        herald_scan_destroy (&scans [i]);
    herald_scan_destroy (&after_keep);
    herald_store_destroy (&store);
    tt_ids_fini (&ids);
}

//  Appends on another thread while reclaim runs
typedef struct {
    herald_store_t *store;
    size_t count;
    herald_err status;
} s_appender_t;

static void *
s_appender (void *arg)
{
    s_appender_t *self = arg;
    for (size_t i = 0; i < self->count && self->status == HERALD_OK; i++) {
        herald_event_t event = tu_event (s_topics [i % 4], "during");
        herald_append_result_t result;
        self->status = tu_append (self->store, &event, 1, &result, NULL);
    }
    return NULL;
}

Test (store_reclaim, appends_go_on)
{
    herald_store_t *store = tt_open (s_dir);
    tt_ids_t ids = { 0 };
    tt_publish_topics (store, &ids, s_topics, 4, 30000);
    tt_trim_ok (store, "", 10000, NULL);
    tt_trim_ok (store, "drop.", 30000, NULL);
    s_appender_t appender = { .store = store, .count = 3000 };
    pthread_t thread;
    cr_assert_eq (pthread_create (&thread, NULL, s_appender, &appender), 0);
    herald_reclaim_stats_t stats;
    s_reclaim_all (store, 1000, &stats);
    pthread_join (thread, NULL);
    cr_assert_eq (appender.status, HERALD_OK);
    cr_assert_eq (herald_store_head (store), 33000);
    s_assert_digest (store, &ids, 10001, 30000);
    const char *all = "";
    tt_scan_expect_topics (store, 30001, &all, 1, 3000);
    const char *keep = "keep.";
    tt_scan_expect_topics (store, 10001, &keep, 1, 10000 + 1500);
    herald_store_destroy (&store);
    store = tt_open (s_dir);
    cr_assert_eq (herald_store_head (store), 33000);
    tt_scan_expect_topics (store, 10001, &keep, 1, 10000 + 1500);
    herald_store_destroy (&store);
    tt_ids_fini (&ids);
}

//  ---------------------------------------------------------------------
//  Killed mid-way

static void
s_child_publish (const char *dir)
{
    herald_error_t err = { 0 };
    herald_store_t *store = herald_store_open (dir, NULL, &err);
    if (!store)
        _exit (2);
    tt_ids_t ids = { .data_size = 200 };
    tt_publish_topics (store, &ids, s_topics, 4, 60000);
    tt_trim_ok (store, "", 8000, NULL);
    tt_trim_ok (store, "drop.", 50000, NULL);
    uint8_t digest [32];
    tt_digest (&ids, 8001, 60000, digest);
    char *path = tu_path (dir, "../digest");
    FILE *file = fopen (path, "wb");
    bool ok = file && fwrite (digest, 1, 32, file) == 32;
    if (file)
        fclose (file);
    free (path);
    herald_store_destroy (&store);
    _exit (ok? 0: 3);
}

//  Reclaim in small steps, a byte down the pipe after each
static void
s_child_reclaim (const char *dir, int fd)
{
    herald_error_t err = { 0 };
    herald_store_t *store = herald_store_open (dir, NULL, &err);
    if (!store)
        _exit (2);
    bool more = true;
    while (more) {
        if (herald_store_reclaim (store, 200, &more, NULL, &err) != HERALD_OK)
            _exit (4);
        if (write (fd, "s", 1) != 1)
            _exit (5);
    }
    _exit (0);
}

Test (store_reclaim, killed_mid_way_resumes)
{
    char *dir = tu_path (s_dir, "store");
    //  This process opens no store before its last fork
    pid_t pid = fork ();
    cr_assert_geq (pid, 0);
    if (pid == 0)
        s_child_publish (dir);
    int status;
    cr_assert_eq (waitpid (pid, &status, 0), pid);
    cr_assert (WIFEXITED (status) && WEXITSTATUS (status) == 0, "publisher: %d", status);

    //  Kill reclaim several times, each after some steps
    for (int round = 0; round < 3; round++) {
        int fds [2];
        cr_assert_eq (pipe (fds), 0);
        pid = fork ();
        cr_assert_geq (pid, 0);
        if (pid == 0) {
            close (fds [0]);
            s_child_reclaim (dir, fds [1]);
        }
        close (fds [1]);
        char byte;
        int steps = 0;
        while (steps < 15 + 20 * round && read (fds [0], &byte, 1) == 1)
            steps++;
        kill (pid, SIGKILL);
        cr_assert_eq (waitpid (pid, &status, 0), pid);
        close (fds [0]);
        cr_assert (WIFSIGNALED (status), "round %d: the reclaim ended (%d steps) before "
                   "it was killed", round, steps);
    }
    herald_store_t *store = tt_open (dir);
    herald_reclaim_stats_t stats;
    s_reclaim_all (store, 5000, &stats);
    cr_assert_eq (stats.runs_deleted, 0, "the whole-log part was done before");
    //  What was left, done; the digest of every id still there
    uint8_t want [32], got [32];
    char *path = tu_path (s_dir, "digest");
    FILE *file = fopen (path, "rb");
    cr_assert (file && fread (want, 1, 32, file) == 32);
    fclose (file);
    free (path);
    herald_error_t err = { 0 };
    cr_assert_eq (herald_store_ids_digest (store, 8001, 60000, got, NULL, &err), HERALD_OK,
                  "%s", err.message);
    cr_assert_arr_eq (got, want, 32);
    const char *keep = "keep.", *drop = "drop.";
    tt_scan_expect_topics (store, 8001, &keep, 1, 26000);
    tt_scan_expect_topics (store, 50001, &drop, 1, 5000);
    tt_scan_refused (store, 50000, &drop, 1, 50001);
    cr_assert_eq (s_ver_of (store, "drop.0", 6), 15000);
    bool more = true;
    memset (&stats, 0, sizeof stats);
    cr_assert_eq (herald_store_reclaim (store, 100000, &more, &stats, &err), HERALD_OK);
    cr_assert_not (more);
    cr_assert_eq (stats.runs_rewritten + stats.stream_runs_deleted + stats.runs_deleted, 0);
    herald_store_destroy (&store);
    free (dir);
}

//  ---------------------------------------------------------------------
//  herald inspect of a trimmed store

//  In a child (this process opens no store: it runs herald after): the
//  store trimmed, then reclaimed in budget-sized steps, at most steps
//  calls (0: none)
static void
s_child_trimmed (const char *dir, int steps)
{
    pid_t pid = fork ();
    cr_assert_geq (pid, 0);
    if (pid == 0) {
        herald_error_t err = { 0 };
        herald_store_t *store = herald_store_open (dir, NULL, &err);
        if (!store)
            _exit (2);
        if (herald_store_head (store) == 0) {
            tt_ids_t ids = { 0 };
            tt_publish_topics (store, &ids, s_topics, 4, 12000);
            const char *gone [] = { "gone.0" };
            tt_publish_topics (store, &ids, gone, 1, 10);
            tt_publish_topics (store, &ids, s_topics, 4, 2000);
            tt_trim_ok (store, "", 3001, NULL);
            tt_trim_ok (store, "drop.", 13000, NULL);
            tt_trim_ok (store, "gone.", 12010, NULL);
            tt_ids_fini (&ids);
        }
        bool more = true;
        for (int i = 0; i < steps && more; i++)
            if (herald_store_reclaim (store, 700, &more, NULL, &err) != HERALD_OK)
                _exit (3);
        herald_store_destroy (&store);
        _exit (0);
    }
    int status;
    cr_assert_eq (waitpid (pid, &status, 0), pid);
    cr_assert (WIFEXITED (status) && WEXITSTATUS (status) == 0, "child: %d", status);
}

//  Run herald inspect on dir; its exit status, its output into out
static int
s_inspect (const char *dir, const char *format, char *out, size_t size)
{
    char *herald = tu_build_program ("tools/herald");
    cr_assert_not_null (herald, "tools/herald not built");
    char command [8192];
    snprintf (command, sizeof command, "'%s' inspect --data-dir '%s' %s 2>&1", herald, dir,
              format);
    free (herald);
    FILE *pipe = popen (command, "r");
    cr_assert_not_null (pipe);
    size_t len = fread (out, 1, size - 1, pipe);
    out [len] = 0;
    int status = pclose (pipe);
    return WIFEXITED (status)? WEXITSTATUS (status): -1;
}

Test (store_reclaim, inspect_of_a_trimmed_store)
{
    char *dir = tu_path (s_dir, "store");
    char out [8192];
    //  Trimmed, nothing reclaimed; then half; then all
    int steps [] = { 0, 8, 100000 };
    for (int round = 0; round < 3; round++) {
        s_child_trimmed (dir, steps [round]);
        int status = s_inspect (dir, "--format table", out, sizeof out);
        cr_assert_eq (status, 0, "round %d: %s", round, out);
        cr_assert (strstr (out, "consistent"), "%s", out);
        cr_assert (strstr (out, "trimmed first seq 3002; 3 trim points"), "%s", out);
        cr_assert (strstr (out, "\"drop.\" until 13000"), "%s", out);
        cr_assert (strstr (out, "events  11009 (seq 3002..14010"), "%s", out);
        //  drop. in 3002..13000 (4500 + 495), gone. (10), and seq 3001,
        //  trimmed by "" in the run that straddles 3001 | 3002
        if (round == 2)
            cr_assert (strstr (out, "5006 events cut out, 3000 seqs reclaimed whole"), "%s",
                       out);
        status = s_inspect (dir, "--format json", out, sizeof out);
        cr_assert_eq (status, 0, "%s", out);
        cr_assert (strstr (out, "\"first\":3002"), "%s", out);
        cr_assert (strstr (out, "\"prefix\":\"gone.\",\"until\":12010"), "%s", out);
    }
    free (dir);
}

//  ---------------------------------------------------------------------
//  Backups of a trimmed store

Test (store_reclaim, backup_of_a_trimmed_store)
{
    char *dir = tu_path (s_dir, "store");
    char *backup = tu_path (s_dir, "backup");
    char *restored = tu_path (s_dir, "restored");
    herald_store_t *store = tt_open (dir);
    tt_ids_t ids = { 0 };
    tt_publish_topics (store, &ids, s_topics, 4, 12000);
    tt_trim_ok (store, "", 4000, "retention");
    tt_trim_ok (store, "drop.", 9000, NULL);
    herald_reclaim_stats_t stats;
    s_reclaim_all (store, 100000, &stats);
    uint64_t digest = herald_store_digest (store);
    herald_error_t err = { 0 };
    herald_backup_info_t info;
    cr_assert_eq (herald_backup_create (store, backup, "n1", NULL, NULL, NULL, &info, &err),
                  HERALD_OK, "%s", err.message);
    cr_assert_eq (info.head, 12000);
    cr_assert_eq (info.digest, digest);
    herald_store_destroy (&store);
    cr_assert_eq (herald_backup_verify (backup, NULL, NULL, &info, &err), HERALD_OK, "%s",
                  err.message);
    cr_assert_eq (herald_backup_restore (backup, restored, true, NULL, NULL, &info, &err),
                  HERALD_OK, "%s", err.message);
    store = tt_open (restored);
    cr_assert_eq (herald_store_head (store), 12000);
    cr_assert_eq (herald_store_digest (store), digest);
    cr_assert_eq (herald_store_log_first (store), 4001);
    cr_assert_eq (herald_store_trims (store, NULL, 0), 2);
    cr_assert_eq (herald_store_topic_trimmed (store, "drop.1", 6), 9000);
    s_assert_digest (store, &ids, 4001, 12000);
    const char *keep = "keep.", *drop = "drop.";
    tt_scan_expect_topics (store, 4001, &keep, 1, 4000);
    tt_scan_refused (store, 9000, &drop, 1, 9001);
    tt_scan_expect_topics (store, 9001, &drop, 1, 1500);
    //  Reclaim has nothing left to do there
    bool more = true;
    memset (&stats, 0, sizeof stats);
    cr_assert_eq (herald_store_reclaim (store, 100000, &more, &stats, &err), HERALD_OK);
    cr_assert_not (more);
    cr_assert_eq (stats.runs_rewritten + stats.runs_deleted, 0);
    herald_store_destroy (&store);
    tt_ids_fini (&ids);
    free (dir);
    free (backup);
    free (restored);
}

Test (store_reclaim, everything_trimmed_keeps_the_head)
{
    herald_store_t *store = tt_open (s_dir);
    tt_ids_t ids = { 0 };
    tt_publish_topics (store, &ids, s_topics, 4, 5000);
    uint64_t last_ts = herald_store_last_ts (store);
    uint64_t digest = herald_store_digest (store);
    tt_trim_ok (store, "", 5000, NULL);
    herald_reclaim_stats_t stats;
    s_reclaim_all (store, 100000, &stats);
    cr_assert_lt (stats.events_removed, 5000, "the head's run stays");
    herald_store_destroy (&store);
    store = tt_open (s_dir);
    cr_assert_eq (herald_store_head (store), 5000);
    cr_assert_eq (herald_store_last_ts (store), last_ts);
    cr_assert_eq (herald_store_digest (store), digest);
    cr_assert_eq (herald_store_log_first (store), 5001);
    cr_assert_eq (herald_store_event_count (store), 0);
    cr_assert_eq (s_seq_at (store, 0), 5001);
    tt_scan_expect (store, 5001, NULL, 0, 5001, 5000);
    //  The log goes on from the head, each topic from its ver
    herald_event_t event = tu_event ("keep.1", "after");
    herald_append_result_t result;
    cr_assert_eq (tu_append (store, &event, 1, &result, NULL), HERALD_OK);
    cr_assert_eq (result.seq, 5001);
    cr_assert_eq (result.ver, 1251);
    tt_scan_expect (store, 5001, NULL, 0, 5001, 5001);
    herald_store_destroy (&store);
    tt_ids_fini (&ids);
}

//  A sparse scan (the topic index) and a read after reclaim deleted the
//  oldest streams runs of their topics
Test (store_reclaim, sparse_after_streams_deleted)
{
    herald_store_t *store = tt_open (s_dir);
    tt_ids_t ids = { 0 };
    const char *rare [] = { "rare.a", "rare.b" };
    for (int round = 0; round < 40; round++) {
        tt_publish (store, &ids, "bulk.", 4, 500);
        tt_publish_topics (store, &ids, rare, 2, 4);    //  one streams run of two events per topic per round
    }
    uint64_t head = herald_store_head (store);          //  40 * 504
    tt_trim_ok (store, "", 5040, NULL);                 //  rounds 0..9
    tt_trim_ok (store, "rare.a", 10080, NULL);          //  rare.a of rounds 0..19
    herald_reclaim_stats_t stats;
    s_reclaim_all (store, 100000, &stats);
    cr_assert_geq (stats.stream_runs_deleted, 30, "rare.a 20, rare.b 10 at least");
    herald_str_t prefix = { "rare.", 5 };
    cr_assert_eq (herald_store_first (store, &prefix, 1), 10081);
    const char *rare_prefix = "rare.";
    tt_scan_refused (store, 10080, &rare_prefix, 1, 10081);
    //  From 10081: rare.a and rare.b of rounds 20..39, 4 events each
    tt_scan_expect_topics (store, 10081, &rare_prefix, 1, 20 * 4);
    const char *b = "rare.b";
    tt_scan_expect_topics (store, 5041, &b, 1, 30 * 2);
    //  Reads: rare.a from its first ver still there (41), refused below
    uint64_t ver;
    herald_error_t err = { 0 };
    cr_assert_eq (herald_store_topic_first_ver (store, "rare.a", 6, &ver, &err), HERALD_OK,
                  "%s", err.message);
    cr_assert_eq (ver, 41);
    herald_scan_t *read = herald_store_read (store, "rare.a", 6, 3, 0, &err);
    cr_assert_null (read);
    cr_assert_eq (err.code, HERALD_ERR_TRIMMED, "%s", err.message);
    read = herald_store_read (store, "rare.a", 6, 41, 0, &err);
    cr_assert_not_null (read, "%s", err.message);
    const uint8_t *bytes;
    size_t len;
    uint64_t seq, count = 0;
    int rc;
    while ((rc = herald_scan_next (read, &bytes, &len, &seq)) == 1)
        count++;
    cr_assert_eq (rc, 0, "%s", herald_scan_error (read)->message);
    cr_assert_eq (count, 40);
    herald_scan_destroy (&read);
    cr_assert_eq (s_ver_of (store, "rare.a", 6), 80);
    cr_assert_eq (herald_store_head (store), head);
    herald_store_destroy (&store);
    tt_ids_fini (&ids);
}

//  The whole-log reclaim drops the table files wholly inside the deleted
//  range (DeleteFilesInRange, levels 1 and below, whose end is INCLUSIVE):
//  a file whose last run straddles the trim point is not inside it.  A
//  first trim and reclaim leave the runs [51..51] and [52..55] compacted
//  into one file of the bottom level; the log trimmed up to 54: seq 55
//  must stay (with the trim point's key + 1 as the end the file went, and
//  a REPLAY met "seq gap: event 55 is missing from the log").
Test (store_reclaim, a_file_straddling_the_point_stays)
{
    herald_store_t *store = tt_open (s_dir);
    tt_ids_t ids = { 0 };
    tt_publish (store, &ids, "a.", 2, 50);          //  runs ending at 50
    tt_publish (store, &ids, "b.", 1, 1);           //  the run [51..51]
    tt_publish (store, &ids, "b.", 1, 4);           //  the run [52..55]
    herald_store_destroy (&store);                  //  flushed
    store = tt_open (s_dir);
    msgpack_sbuffer op;
    go_result_t result;
    tt_op (&op, "", 0, false, 50, false, 0, NULL, 0, NULL);
    cr_assert_eq (tt_apply_op (store, &op, &result), HERALD_OK);
    go_result_fini (&result);
    herald_reclaim_stats_t stats = { 0 };
    s_reclaim_all (store, 1000, &stats);            //  compacted: 51 and 55 in one file
    tt_publish (store, &ids, "a.", 2, 5);           //  56..60, the last run
    herald_store_destroy (&store);
    store = tt_open (s_dir);
    tt_op (&op, "", 0, false, 54, false, 0, NULL, 0, NULL);
    cr_assert_eq (tt_apply_op (store, &op, &result), HERALD_OK);
    go_result_fini (&result);
    s_reclaim_all (store, 1000, &stats);
    for (int pass = 0; pass < 2; pass++) {
        uint8_t *envelope = NULL;
        size_t len;
        herald_error_t err = { 0 };
        cr_assert_eq (herald_store_get (store, 55, &envelope, &len, &err), HERALD_OK,
                      "pass %d: %s", pass, err.message);
        free (envelope);
        tt_scan_expect (store, 55, NULL, 0, 55, 60);
        uint8_t got [32], want [32];
        cr_assert_eq (herald_store_ids_digest (store, 55, 60, got, NULL, &err), HERALD_OK,
                      "%s", err.message);
        tt_digest (&ids, 55, 60, want);
        cr_assert_arr_eq (got, want, 32);
        herald_store_destroy (&store);
        store = tt_open (s_dir);
    }
    herald_store_destroy (&store);
    tt_ids_fini (&ids);
}
