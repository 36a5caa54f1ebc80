/*  =========================================================================
    test_herald_agent_state - the agent's local state, crashes, snapshots,
    read and replay

    Checkpoints and the outbox that fail their checks are reported
    (HERALD_ERR_CORRUPT), never trusted; a torn newest checkpoint slot is
    recovered from the one before with the next event flagged; a process
    killed inside a handler gets that one event again, flagged; snapshots
    round-trip and detect damage; read and replay feed a handler.
    =========================================================================
*/

#include <criterion/criterion.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "agenttest.h"
#include "testutil.h"

#define WAIT_MS         20000

static pid_t s_child;

static void
s_setup (void)
{
    zsys_handler_set (NULL);
    s_child = 0;
    at_setup ("agent-state", "agent-state");
}

static void
s_teardown (void)
{
    if (s_child > 0) {
        int status;
        kill (s_child, SIGKILL);
        waitpid (s_child, &status, 0);
    }
    at_teardown ();
}

TestSuite (herald_agent_state, .init = s_setup, .fini = s_teardown, .timeout = 90);

static herald_agent_t *
s_new_agent (void)
{
    herald_agent_options_t options;
    au_options (&options, at_broker, at_state);
    herald_agent_t *agent = herald_agent_new ("test", &options);
    cr_assert_not_null (agent, "herald_agent_new: %s", herald_agent_last_error ());
    return agent;
}

static void
s_publish (const char *format, size_t topics, size_t count)
{
    cr_assert_eq (au_publish (at_broker->api, format, topics, count, WAIT_MS), 0,
                  "publishing %zu events failed", count);
}

static herald_err
s_subscribe (const char *name)
{
    return herald_agent_subscribe (at_agent, name, NULL,
                                   (herald_start_t) { HERALD_START_BEGINNING, 0 },
                                   au_record, at_recorder);
}

//  Deliver count events to subscription "s", then stop the agent.
static void
s_deliver_and_stop (size_t count)
{
    s_publish ("c.%zu", 3, count);
    at_agent = s_new_agent ();
    cr_assert_eq (s_subscribe ("s"), HERALD_OK, "%s", herald_agent_last_error ());
    cr_assert_eq (au_wait_count (at_recorder, count, WAIT_MS), count);
    herald_agent_destroy (&at_agent);
}

static char *
s_checkpoint_path (void)
{
    char *subs = tu_path (at_state, "subs");
    char *path = tu_path (subs, "s.ckpt");
    free (subs);
    return path;
}

//  Overwrite len bytes at offset of the file at path with byte.
static void
s_damage (const char *path, off_t offset, size_t len, uint8_t byte)
{
    int fd = open (path, O_WRONLY);
    cr_assert_geq (fd, 0, "open %s", path);
    uint8_t bytes [256];
    memset (bytes, byte, sizeof bytes);
    cr_assert_eq (pwrite (fd, bytes, len, offset), (ssize_t) len);
    close (fd);
}

static void
s_expect_corrupt (void)
{
    at_agent = s_new_agent ();
    herald_err rc = s_subscribe ("s");
    cr_assert_eq (rc, HERALD_ERR_CORRUPT, "subscribe returned %d: %s", rc,
                  herald_agent_last_error ());
    cr_assert (strstr (herald_agent_last_error (), "corrupt checkpoint"), "message: %s",
               herald_agent_last_error ());
}

Test (herald_agent_state, both_checkpoint_slots_damaged_is_reported_corrupt)
{
    s_deliver_and_stop (10);
    char *path = s_checkpoint_path ();
    s_damage (path, 64, 128, 0xAB);
    free (path);
    s_expect_corrupt ();
}

Test (herald_agent_state, a_damaged_checkpoint_header_is_reported_corrupt)
{
    s_deliver_and_stop (10);
    char *path = s_checkpoint_path ();
    s_damage (path, 3, 1, 0x00);
    free (path);
    s_expect_corrupt ();
}

Test (herald_agent_state, a_truncated_checkpoint_is_reported_corrupt)
{
    s_deliver_and_stop (10);
    char *path = s_checkpoint_path ();
    cr_assert_eq (truncate (path, 100), 0);
    free (path);
    s_expect_corrupt ();
}

Test (herald_agent_state, a_damaged_dedup_window_entry_is_reported_corrupt)
{
    s_deliver_and_stop (10);
    char *path = s_checkpoint_path ();
    s_damage (path, 192 + 32 * 3 + 10, 1, 0x5A);
    free (path);
    s_expect_corrupt ();
}

Test (herald_agent_state, a_torn_newest_slot_is_recovered_and_the_next_event_flagged)
{
    s_deliver_and_stop (10);
    char *path = s_checkpoint_path ();
    //  The newest slot is the one with the higher counter (first 8 bytes)
    int fd = open (path, O_RDONLY);
    uint64_t counters [2];
    cr_assert_eq (pread (fd, &counters [0], 8, 64), 8);
    cr_assert_eq (pread (fd, &counters [1], 8, 128), 8);
    close (fd);
    s_damage (path, counters [0] > counters [1]? 64 + 8: 128 + 8, 4, 0xEE);
    free (path);
    au_recorder_destroy (&at_recorder);
    at_recorder = au_recorder_new ();
    at_agent = s_new_agent ();
    cr_assert_eq (s_subscribe ("s"), HERALD_OK, "%s", herald_agent_last_error ());
    s_publish ("c.%zu", 3, 1);
    cr_assert_eq (au_wait_count (at_recorder, 2, WAIT_MS), 2);
    cr_assert_eq (at_recorder->seqs [0], 10);
    cr_assert (at_recorder->redelivered [0]);
    cr_assert_eq (at_recorder->seqs [1], 11);
    cr_assert (!at_recorder->redelivered [1]);
    herald_agent_stats_t stats;
    herald_agent_stats (at_agent, &stats);
    cr_assert_eq (stats.state_recovered, 1);
}

//  Lines "seq uuid redelivered" written by agent_child's handler.
static size_t
s_read_child_log (const char *path, uint64_t *seqs, int *flags, size_t max)
{
    FILE *file = fopen (path, "r");
    if (!file)
        return 0;
    size_t count = 0;
    char id [64];
    while (count < max && fscanf (file, "%" SCNu64 " %63s %d", &seqs [count], id,
                                  &flags [count]) == 3)
        count++;
    fclose (file);
    return count;
}

Test (herald_agent_state, a_crash_inside_a_handler_redelivers_that_event_once_flagged)
{
    s_publish ("d.%zu", 3, 10);
    char *log = tu_path (at_state, "child.log");
    char *out = tu_path (at_state, "child.out");
    const char *args [] = { "subscribe", at_state, at_broker->api, at_broker->fanout, "s", "-",
                            log, "5", NULL };
    s_child = au_child_spawn (args, out);
    cr_assert_gt (s_child, 0);
    int status = 0;
    cr_assert_eq (au_child_wait (s_child, WAIT_MS, &status), 0, "the child did not die");
    s_child = 0;
    cr_assert (WIFSIGNALED (status) && WTERMSIG (status) == SIGKILL, "status %d", status);
    uint64_t seqs [16];
    int flags [16];
    cr_assert_eq (s_read_child_log (log, seqs, flags, 16), 5);
    cr_assert_eq (seqs [4], 5);

    at_agent = s_new_agent ();
    cr_assert_eq (s_subscribe ("s"), HERALD_OK, "%s", herald_agent_last_error ());
    cr_assert_eq (au_wait_count (at_recorder, 6, WAIT_MS), 6);
    cr_assert_eq (at_recorder->seqs [0], 5);
    cr_assert (at_recorder->redelivered [0], "the in-doubt event is not flagged");
    for (size_t index = 1; index < 6; index++) {
        cr_assert_eq (at_recorder->seqs [index], 5 + index);
        cr_assert (!at_recorder->redelivered [index]);
    }
    free (log);
    free (out);
}

Test (herald_agent_state, a_damaged_outbox_is_reported_and_a_torn_tail_is_cut)
{
    //  With the broker stopped the events stay in the outbox
    cr_assert_eq (bu_broker_stop (at_broker, 10000), 0);
    at_agent = s_new_agent ();
    for (int index = 0; index < 3; index++) {
        herald_outgoing_t event = { .topic = "o.1", .data = "x", .data_len = 1 };
        cr_assert_eq (herald_agent_publish_async (at_agent, &event, NULL, NULL, NULL), HERALD_OK);
    }
    herald_agent_destroy (&at_agent);
    char *path = tu_path (at_state, "outbox");
    //  Garbage after the last record: a torn append, cut off
    int fd = open (path, O_WRONLY | O_APPEND);
    cr_assert_eq (write (fd, "\x40\x00\x00\x00\x01", 5), 5);
    close (fd);
    at_agent = s_new_agent ();
    herald_agent_stats_t stats;
    herald_agent_stats (at_agent, &stats);
    cr_assert_eq (stats.outbox_depth, 3);
    cr_assert_eq (stats.state_recovered, 1);
    herald_agent_destroy (&at_agent);
    //  A damaged record in the middle: corrupt
    s_damage (path, 16 + 12 + 3, 1, 0x77);
    herald_agent_options_t options;
    au_options (&options, at_broker, at_state);
    cr_assert_null (herald_agent_new ("test", &options));
    cr_assert_eq (herald_agent_last_errcode (), HERALD_ERR_CORRUPT);
    cr_assert (strstr (herald_agent_last_error (), "corrupt outbox"), "%s",
               herald_agent_last_error ());
    free (path);
}

Test (herald_agent_state, a_snapshot_round_trips_and_damage_is_detected)
{
    at_agent = s_new_agent ();
    uint64_t seq;
    void *bytes;
    size_t len;
    cr_assert_eq (herald_agent_snapshot_load (at_agent, "inv", &seq, &bytes, &len),
                  HERALD_ERR_NOT_FOUND);
    cr_assert_eq (herald_agent_snapshot_save (at_agent, "inv", 41, "state-1", 7), HERALD_OK);
    cr_assert_eq (herald_agent_snapshot_save (at_agent, "inv", 42, "state-two", 9), HERALD_OK);
    cr_assert_eq (herald_agent_snapshot_load (at_agent, "inv", &seq, &bytes, &len), HERALD_OK);
    cr_assert_eq (seq, 42);
    cr_assert_eq (len, 9);
    cr_assert_eq (memcmp (bytes, "state-two", 9), 0);
    free (bytes);
    cr_assert_eq (herald_agent_snapshot_save (at_agent, "../x", 1, "", 0), HERALD_ERR_INVALID);
    char *dir = tu_path (at_state, "snapshots");
    char *path = tu_path (dir, "inv");
    s_damage (path, 34, 1, 'X');
    cr_assert_eq (herald_agent_snapshot_load (at_agent, "inv", &seq, &bytes, &len),
                  HERALD_ERR_CORRUPT);
    free (path);
    free (dir);
}

Test (herald_agent_state, a_subscription_continues_after_a_snapshot)
{
    s_publish ("n.%zu", 2, 30);
    at_agent = s_new_agent ();
    cr_assert_eq (herald_agent_snapshot_save (at_agent, "snap", 20, "s", 1), HERALD_OK);
    uint64_t seq;
    void *bytes;
    size_t len;
    cr_assert_eq (herald_agent_snapshot_load (at_agent, "snap", &seq, &bytes, &len), HERALD_OK);
    free (bytes);
    cr_assert_eq (herald_agent_subscribe (at_agent, "after", NULL,
                  (herald_start_t) { HERALD_START_SEQ, seq + 1 }, au_record, at_recorder),
                  HERALD_OK);
    cr_assert_eq (au_wait_count (at_recorder, 10, WAIT_MS), 10);
    cr_assert_eq (at_recorder->seqs [0], 21);
}

Test (herald_agent_state, read_feeds_one_topics_stream_in_version_order)
{
    s_publish ("agg.%zu", 3, 30);           //  agg.0, agg.1, agg.2: 10 each
    at_agent = s_new_agent ();
    cr_assert_eq (herald_agent_read (at_agent, "agg.1", 0, 0, au_record, at_recorder, 0),
                  HERALD_OK, "%s", herald_agent_last_error ());
    cr_assert_eq (at_recorder->count, 10);
    cr_assert_eq (at_recorder->seqs [0], 2);
    cr_assert_eq (at_recorder->seqs [9], 29);
    au_recorder_destroy (&at_recorder);
    at_recorder = au_recorder_new ();
    cr_assert_eq (herald_agent_read (at_agent, "agg.2", 2, 3, au_record, at_recorder, 0), HERALD_OK);
    cr_assert_eq (at_recorder->count, 2);
    cr_assert_eq (at_recorder->seqs [0], 6);
    cr_assert_eq (herald_agent_read (at_agent, "$bad", 0, 0, au_record, at_recorder, 0),
                  HERALD_ERR_INVALID);
}

Test (herald_agent_state, replay_feeds_a_range_a_prefix_and_a_time_window)
{
    s_publish ("x.%zu", 2, 20);
    uint64_t midnight = tu_now_ns ();
    s_publish ("y.%zu", 2, 20);
    at_agent = s_new_agent ();
    herald_range_t range = { .from = 5, .to = 10 };
    uint64_t last = 0;
    cr_assert_eq (herald_agent_replay (at_agent, &range, au_record, at_recorder, 0, &last),
                  HERALD_OK, "%s", herald_agent_last_error ());
    cr_assert_eq (at_recorder->count, 6);
    cr_assert_eq (last, 10);
    au_recorder_destroy (&at_recorder);
    at_recorder = au_recorder_new ();
    //  "As of midnight": everything up to the time, and only x.
    const char *prefixes [] = { "x.", NULL };
    herald_range_t asof = { .until_ts = midnight, .prefixes = prefixes };
    cr_assert_eq (herald_agent_replay (at_agent, &asof, au_record, at_recorder, 0, &last),
                  HERALD_OK);
    cr_assert_eq (at_recorder->count, 20);
    cr_assert_eq (last, 20);
    //  A handler's error stops the replay and comes back
    at_recorder->fail_seq = 3;
    at_recorder->fail_code = 77;
    herald_range_t all = { 0 };
    cr_assert_eq (herald_agent_replay (at_agent, &all, au_record, at_recorder, 0, NULL), 77);
}
