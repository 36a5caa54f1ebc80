/*  =========================================================================
    test_heraldd_damage - heraldd on a table file RocksDB cannot read

    A real heraldd writes a log into several table files (idle flushes),
    stops; the test flips bytes in the middle of the events column
    family's largest table (tests/tabledamage.c) and starts it again.  A
    REPLAY or READ that meets the damaged block must end with ERROR
    `internal` naming it, after the events before it, never with END
    `done` (which tells the client every event up to `last` was sent);
    STATUS counts such streams; `herald replay` and `herald read` exit 1.
    =========================================================================
*/

#include <criterion/criterion.h>
#include <dirent.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "brokertest.h"
#include "tabledamage.h"

TestSuite (heraldd_damage, .init = bt_setup, .fini = bt_teardown, .timeout = 120);

#define ROUNDS      3
#define PER_ROUND   1200                //  of DATA_BYTES: over the idle flush's 1 MiB
#define DATA_BYTES  1000
#define TOPICS      10

static const char *s_topics [TOPICS] = {
    "d.0", "d.1", "d.2", "d.3", "d.4", "d.5", "d.6", "d.7", "d.8", "d.9"
};

//  The topic of seq n: published in order, topic (n - 1) % TOPICS.
static const char *
s_topic_of (uint64_t seq)
{
    return s_topics [(seq - 1) % TOPICS];
}

//  A log of ROUNDS * PER_ROUND events of random bytes in ROUNDS or more
//  table files (each round of over 1 MiB makes an idle flush; a start and
//  stop at the end writes what the WAL still holds into one more), the
//  broker stopped; then 16 bytes flipped in the middle of the largest
//  events table, and the broker started again.
static void
s_build_and_damage (void)
{
    const char *extra [] = { "--durability", "async", "--idle-flush-ms", "20", NULL };
    bt_start_with (extra);
    zsock_t *client = bt_client ();
    static uint8_t data [100][DATA_BYTES];
    bu_event_t batch [100];
    uint64_t rid = 1;
    for (int round = 1; round <= ROUNDS; round++) {
        for (size_t sent = 0; sent < PER_ROUND; sent += 100) {
            for (size_t index = 0; index < 100; index++) {
                tu_random_bytes (data [index], DATA_BYTES);
                bu_event_init (&batch [index], s_topics [index % TOPICS], NULL);
                batch [index].data = data [index];
                batch [index].data_len = DATA_BYTES;
            }
            bu_reply_t reply = { 0 };
            bt_publish (client, rid++, batch, 100, &reply);
            bu_reply_fini (&reply);
        }
        //  (On a busy machine the flush may come before the round ends,
        //  when the client is slow to send: what is left joins the next.)
        cr_assert_geq (bt_wait_status_extra (client, "idle_flushes", (uint64_t) round, 10000),
                       (uint64_t) round, "no idle flush after round %d", round);
    }
    bt_drop (&client);
    bt_stop_clean ();
    bt_start_with (extra);
    bt_stop_clean ();
    int64_t wal = tu_wal_bytes (bt_broker->data_dir, false);
    cr_assert (wal >= 0 && wal < 64 * 1024, "the WAL was not written out (%" PRId64 " bytes)", wal);

    td_table_t table;
    size_t tables;
    cr_assert_eq (td_largest_table (bt_broker->data_dir, "events", &table, &tables), 0);
    cr_assert_geq (tables, 2, "the log is in %zu table file", tables);
    cr_assert_eq (td_flip (table.path, table.size / 2, 16), 0, "cannot damage %s", table.path);
    bt_start_with (extra);
}

//  What came back for one stream: the events (their seqs, checked to be
//  those expected), then END or ERROR.
typedef struct {
    size_t events;
    uint64_t last_seq;
    bool ended;                     //  END came
    char reason [32];
    uint64_t end_last;
    bool failed;                    //  ERROR came
    herald_err code;
    char message [256];
} s_outcome_t;

//  Read the stream rid to its END or ERROR (within 30 s).  seq_step: the
//  seqs must rise by it (1 for a full REPLAY, TOPICS for one topic).
static void
s_read_outcome (zsock_t *sock, uint64_t rid, uint64_t first_seq, uint64_t seq_step,
                s_outcome_t *out)
{
    memset (out, 0, sizeof (*out));
    uint64_t deadline = tu_mono_ns () + 30000000000ULL;
    while (!out->ended && !out->failed && tu_mono_ns () < deadline) {
        bu_reply_t reply = { 0 };
        if (bu_recv_reply (sock, &reply, BT_WAIT_MS) != 0) {
            bu_reply_fini (&reply);
            cr_assert_fail ("no reply to stream %" PRIu64 " after %zu events", rid,
                            out->events);
        }
        cr_assert_eq (reply.rc, HERALD_OK, "a reply that does not decode");
        if (reply.type == HERALD_MSG_EVENTS) {
            for (size_t index = 0; index < reply.envelope_count; index++) {
                tu_decoded_t decoded = { 0 };
                bt_decode (bu_reply_envelope (&reply, index), &decoded);
                uint64_t want = out->events? out->last_seq + seq_step: first_seq;
                uint64_t seq = decoded.event.seq;
                tu_decoded_fini (&decoded);
                cr_assert_eq (seq, want, "event %zu of the stream is seq %" PRIu64
                              ", not %" PRIu64, out->events, seq, want);
                out->last_seq = seq;
                out->events++;
            }
        }
        else
        if (reply.type == HERALD_MSG_END) {
            out->ended = true;
            out->end_last = reply.body.end.last;
            snprintf (out->reason, sizeof (out->reason), "%.*s",
                      (int) reply.body.end.reason.len, reply.body.end.reason.ptr);
        }
        else
        if (reply.type == HERALD_MSG_ERROR) {
            out->failed = true;
            out->code = reply.body.error.code;
            snprintf (out->message, sizeof (out->message), "%.*s",
                      (int) reply.body.error.message.len, reply.body.error.message.ptr);
        }
        else
            cr_assert_fail ("unexpected %s on stream %" PRIu64, reply.command, rid);
        bu_reply_fini (&reply);
    }
    cr_assert (out->ended || out->failed, "stream %" PRIu64 " did not end within 30 s", rid);
}

//  The stream ended with ERROR internal naming the damage, not END.
static void
s_check_failed (const s_outcome_t *out, const char *what)
{
    cr_assert (out->failed, "%s ended with END %s, last %" PRIu64 ", after %zu events",
               what, out->reason, out->end_last, out->events);
    cr_assert_eq (out->code, HERALD_ERR_INTERNAL, "%s: ERROR %d: %s", what, out->code,
                  out->message);
    cr_assert_not_null (strstr (out->message, "Corruption"), "%s: %s", what, out->message);
    cr_assert_not_null (strstr (out->message, ".sst"), "%s: %s", what, out->message);
}

//  Run the herald CLI with args (NULL-terminated, after the endpoint) and
//  return its exit status; its stdout goes to dir/name.out (the events),
//  its stderr to dir/name.err, whose first bytes come back in err_text.
static int
s_run_cli (const char *name, const char *const *args, char *err_text, size_t err_size)
{
    char *heraldd = bu_heraldd_path ();
    cr_assert_not_null (heraldd);
    char binary [4200];
    snprintf (binary, sizeof (binary), "%.*s/tools/herald",
              (int) (strlen (heraldd) - strlen ("/broker/heraldd")), heraldd);
    free (heraldd);
    char out_path [4200], err_path [4200];
    snprintf (out_path, sizeof (out_path), "%s/%s.out", bt_broker->dir, name);
    snprintf (err_path, sizeof (err_path), "%s/%s.err", bt_broker->dir, name);
    char *argv [16] = { "herald", "--endpoint", bt_broker->api };
    size_t argc = 3;
    for (size_t index = 0; args [index] && argc < 15; index++)
        argv [argc++] = (char *) args [index];
    argv [argc] = NULL;
    pid_t pid = fork ();
    cr_assert_geq (pid, 0, "fork");
    if (pid == 0) {
        int out = open (out_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        int err = open (err_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (out < 0 || err < 0 || dup2 (out, 1) < 0 || dup2 (err, 2) < 0)
            _exit (126);
        execv (binary, argv);
        _exit (127);
    }
    int status = 0;
    uint64_t deadline = tu_mono_ns () + 60000000000ULL;
    pid_t done = 0;
    while ((done = waitpid (pid, &status, WNOHANG)) == 0 && tu_mono_ns () < deadline)
        zclock_sleep (10);
    if (done == 0) {
        kill (pid, SIGKILL);
        waitpid (pid, &status, 0);
        cr_assert_fail ("%s did not exit within 60 s", name);
    }
    FILE *file = fopen (err_path, "rb");
    cr_assert_not_null (file);
    size_t got = fread (err_text, 1, err_size - 1, file);
    err_text [got] = 0;
    fclose (file);
    cr_assert (WIFEXITED (status), "%s died of signal %d", name, WTERMSIG (status));
    return WEXITSTATUS (status);
}

//  How many lines (events) the file at path holds.
static size_t
s_lines (const char *path)
{
    FILE *file = fopen (path, "rb");
    cr_assert_not_null (file);
    size_t lines = 0;
    int c;
    while ((c = fgetc (file)) != EOF)
        lines += c == '\n';
    fclose (file);
    return lines;
}

//  REPLAY of the whole log: the events before the damaged block, then
//  ERROR internal naming the first seq it could not read and the file.
//  STATUS counts the stream; the broker logs it; it goes on serving.
Test (heraldd_damage, replay_over_a_damaged_table_ends_with_error_internal)
{
    s_build_and_damage ();
    zsock_t *client = bt_client ();
    cr_assert_eq (bt_head (client), ROUNDS * PER_ROUND);
    cr_assert_eq (bt_status_extra (client, 1, "stream_errors"), 0);

    bu_replay_t replay = { .has_from = true, .from = 1, .has_credit = true, .credit = 1000000 };
    bt_send_replay (client, 10, &replay);
    s_outcome_t out;
    s_read_outcome (client, 10, 1, 1, &out);
    s_check_failed (&out, "REPLAY");
    cr_assert_lt (out.events, ROUNDS * PER_ROUND);
    char seq_text [48];
    snprintf (seq_text, sizeof (seq_text), "seq %zu:", out.events + 1);
    cr_assert_not_null (strstr (out.message, seq_text), "'%s' not in: %s", seq_text,
                        out.message);
    cr_assert_eq (bt_status_extra (client, 2, "stream_errors"), 1);

    //  With no credit: the look-ahead meets the damage at once
    replay.from = out.events + 1;
    replay.credit = 0;
    bt_send_replay (client, 11, &replay);
    s_outcome_t again;
    s_read_outcome (client, 11, out.events + 1, 1, &again);
    s_check_failed (&again, "REPLAY from the damage, credit 0");
    cr_assert_eq (again.events, 0);
    cr_assert_eq (bt_status_extra (client, 3, "stream_errors"), 2);

    //  Past the damage the log is served as before
    replay.from = ROUNDS * PER_ROUND - 99;
    replay.credit = 1000;
    bt_send_replay (client, 12, &replay);
    s_outcome_t tail;
    s_read_outcome (client, 12, replay.from, 1, &tail);
    cr_assert (tail.ended && strcmp (tail.reason, "done") == 0);
    cr_assert_eq (tail.events, 100);
    cr_assert_eq (tail.end_last, ROUNDS * PER_ROUND);

    char log [8192];
    bu_broker_log_tail (bt_broker, log, sizeof (log));
    cr_assert_not_null (strstr (log, "heraldd: error: "), "not logged as an error:\n%s", log);
    cr_assert_not_null (strstr (log, seq_text), "the log does not name %s:\n%s", seq_text,
                        log);
}

//  READ of a topic with an event in the damaged block, and a REPLAY of
//  its prefix (the topic index), end the same way; STATUS counts both.
Test (heraldd_damage, read_of_a_topic_in_a_damaged_table_ends_with_error_internal)
{
    s_build_and_damage ();
    zsock_t *client = bt_client ();
    bu_replay_t replay = { .has_from = true, .from = 1, .has_credit = true, .credit = 1000000 };
    bt_send_replay (client, 10, &replay);
    s_outcome_t all;
    s_read_outcome (client, 10, 1, 1, &all);
    s_check_failed (&all, "REPLAY");
    uint64_t damaged = all.events + 1;
    const char *topic = s_topic_of (damaged);
    uint64_t first = (damaged - 1) % TOPICS + 1;        //  the topic's first seq

    msgpack_sbuffer sbuf;
    msgpack_sbuffer_init (&sbuf);
    bu_pack_read (&sbuf, 20, topic);
    cr_assert_eq (bu_send_sbuf (client, "READ", &sbuf), 0);
    msgpack_sbuffer_destroy (&sbuf);
    s_outcome_t read;
    s_read_outcome (client, 20, first, TOPICS, &read);
    s_check_failed (&read, "READ");
    cr_assert_eq (read.events, (damaged - first) / TOPICS, "READ %s sent %zu events", topic,
                  read.events);

    const char *prefixes [] = { topic };
    bu_replay_t by_topic = { .has_from = true, .from = 1, .prefixes = prefixes,
                             .prefix_count = 1, .has_credit = true, .credit = 1000000 };
    bt_send_replay (client, 21, &by_topic);
    s_outcome_t indexed;
    s_read_outcome (client, 21, first, TOPICS, &indexed);
    s_check_failed (&indexed, "REPLAY of one topic");
    cr_assert_eq (indexed.events, read.events);
    cr_assert_eq (bt_status_extra (client, 3, "stream_errors"), 3);
}

//  `herald replay` and `herald read` that get ERROR exit 1 and print the
//  broker's message on stderr; the events before it are printed.
Test (heraldd_damage, the_cli_exits_1_on_a_damaged_stream)
{
    s_build_and_damage ();
    zsock_t *client = bt_client ();
    bu_replay_t all = { .has_from = true, .from = 1, .has_credit = true, .credit = 1000000 };
    bt_send_replay (client, 10, &all);
    s_outcome_t out;
    s_read_outcome (client, 10, 1, 1, &out);
    s_check_failed (&out, "REPLAY");

    char err [1024];
    const char *replay [] = { "replay", NULL };
    int status = s_run_cli ("replay", replay, err, sizeof (err));
    cr_assert_eq (status, 1, "herald replay exited %d; stderr:\n%s", status, err);
    char expected [96];
    snprintf (expected, sizeof (expected), "herald: internal: cannot read the log at seq %zu: ",
              out.events + 1);
    cr_assert_not_null (strstr (err, expected), "'%s' not in: %s", expected, err);
    cr_assert_not_null (strstr (err, "Corruption"), "%s", err);
    char path [4200];
    snprintf (path, sizeof (path), "%s/replay.out", bt_broker->dir);
    cr_assert_eq (s_lines (path), out.events, "herald replay printed %zu events",
                  s_lines (path));

    const char *topic = s_topic_of (out.events + 1);
    const char *read [] = { "read", topic, NULL };
    status = s_run_cli ("read", read, err, sizeof (err));
    cr_assert_eq (status, 1, "herald read exited %d; stderr:\n%s", status, err);
    cr_assert_not_null (strstr (err, "herald: internal: "), "%s", err);
    cr_assert_not_null (strstr (err, "Corruption"), "%s", err);
    snprintf (path, sizeof (path), "%s/read.out", bt_broker->dir);
    cr_assert_eq (s_lines (path), out.events / TOPICS, "herald read printed %zu events",
                  s_lines (path));
}

//  A PUBLISH to a topic whose stream (its version) cannot be read: the
//  store must not take "version 0" and store a second ver 1.  The batch
//  is answered ERROR internal naming the damage, nothing is written, and
//  the broker stops loudly (exit 1) rather than run on with a store that
//  fails; started again, its log is as it was.
Test (heraldd_damage, publish_to_a_topic_whose_version_cannot_be_read_writes_nothing)
{
    const char *extra [] = { "--durability", "async", NULL };
    bt_start_with (extra);
    zsock_t *client = bt_client ();
    bt_publish_many (client, "v.one", 20, 1);
    bt_drop (&client);
    bt_stop_clean ();
    //  Once more, so that RocksDB writes what the WAL holds into tables
    bt_start_with (extra);
    bt_stop_clean ();
    td_table_t table;
    size_t tables;
    cr_assert_eq (td_largest_table (bt_broker->data_dir, "streams", &table, &tables), 0);
    cr_assert_eq (td_flip (table.path, 16, 16), 0, "cannot damage %s", table.path);
    bt_start_with (extra);

    client = bt_client ();
    cr_assert_eq (bt_head (client), 20);
    bu_event_t event;
    bu_event_init (&event, "v.one", "after the damage");
    bt_send_publish (client, 50, &event, 1);
    bu_reply_t reply = { 0 };
    bt_recv (client, &reply);
    cr_assert_eq (reply.type, HERALD_MSG_ERROR, "%s: a publish on an unreadable topic was "
                  "taken (ver %" PRIu64 ")", reply.command,
                  reply.type == HERALD_MSG_ACK? reply.body.ack.ver [0]: 0);
    cr_assert_eq (reply.body.error.code, HERALD_ERR_INTERNAL);
    char message [256];
    snprintf (message, sizeof (message), "%.*s", (int) reply.body.error.message.len,
              reply.body.error.message.ptr);
    bu_reply_fini (&reply);
    cr_assert_not_null (strstr (message, "v.one"), "%s", message);
    cr_assert_not_null (strstr (message, "Corruption"), "%s", message);
    bt_drop (&client);

    cr_assert_eq (bu_broker_wait (bt_broker, BT_STOP_MS), 0, "heraldd runs on after a store "
                  "failure");
    cr_assert (WIFEXITED (bt_broker->status) && WEXITSTATUS (bt_broker->status) == 1,
               "heraldd ended with status %d", bt_broker->status);
    char log [8192];
    bu_broker_log_tail (bt_broker, log, sizeof (log));
    cr_assert_not_null (strstr (log, "store append failed"), "%s", log);

    bt_start_with (extra);
    client = bt_client ();
    cr_assert_eq (bt_head (client), 20, "the failed publish wrote");
}
