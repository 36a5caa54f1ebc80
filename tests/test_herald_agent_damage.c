/*  =========================================================================
    test_herald_agent_damage - a subscription whose catch-up meets damage

    A real heraldd serves a log with a damaged table file (tests/
    tabledamage.c): its catch-up REPLAY ends with ERROR `internal` after
    the events before the damage.  The agent must deliver those, keep its
    checkpoint at or below the last of them, report the error through
    on_error (once) and stats (each time), keep the subscription running,
    and retry with a backoff, not in a tight loop.
    =========================================================================
*/

#include <criterion/criterion.h>
#include <dirent.h>
#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agenttest.h"
#include "tabledamage.h"
#include "testutil.h"

#define ROUNDS      3
#define PER_ROUND   1200                //  of DATA_BYTES: over the idle flush's 1 MiB
#define DATA_BYTES  1000
#define WAIT_MS     20000

static void
s_setup (void)
{
    //  at_setup's broker, but flushing 20 ms after each round of writes,
    //  so that the log lands in several table files
    zsys_handler_set (NULL);
    const char *extra [] = { "--durability", "async", "--idle-flush-ms", "20", NULL };
    at_broker = bu_broker_new ("agent-damage", extra);
    cr_assert_not_null (at_broker, "cannot set up a broker (HERALD_BUILDDIR=%s)",
                        getenv ("HERALD_BUILDDIR"));
    cr_assert_eq (bu_broker_start (at_broker, AT_START_MS), 0, "heraldd did not start");
    at_state = tu_tmpdir_new ("agent-damage-state");
    at_recorder = au_recorder_new ();
    cr_assert (at_state && at_recorder);
}

TestSuite (herald_agent_damage, .init = s_setup, .fini = at_teardown, .timeout = 120);

//  The STATUS counter name (0 when absent).
static uint64_t
s_status_extra (zsock_t *sock, uint64_t rid, const char *name)
{
    bu_reply_t reply = { 0 };
    cr_assert_eq (bu_status (sock, rid, &reply, 5000), 0, "no STATUS reply");
    uint64_t value = 0;
    for (size_t index = 0; index < reply.body.status.extra_count; index++)
        if (bu_str_eq (reply.body.status.extra_keys [index], name))
            value = reply.body.status.extra_values [index];
    bu_reply_fini (&reply);
    return value;
}

//  ROUNDS * PER_ROUND events of random bytes on g.0..g.9 in ROUNDS or
//  more table files (idle flushes, then a start and stop that writes what
//  the WAL holds); the broker stopped, 16 bytes flipped in the middle of
//  the largest events table, the broker started again.
static void
s_damaged_log (void)
{
    zsock_t *client = bu_dealer_new (at_broker->api);
    cr_assert_not_null (client);
    static uint8_t data [100][DATA_BYTES];
    static const char *topics [10] = { "g.0", "g.1", "g.2", "g.3", "g.4", "g.5", "g.6",
                                       "g.7", "g.8", "g.9" };
    bu_event_t batch [100];
    msgpack_sbuffer sbuf;
    msgpack_sbuffer_init (&sbuf);
    uint64_t rid = 1;
    for (int round = 1; round <= ROUNDS; round++) {
        for (size_t sent = 0; sent < PER_ROUND; sent += 100, rid++) {
            for (size_t index = 0; index < 100; index++) {
                tu_random_bytes (data [index], DATA_BYTES);
                bu_event_init (&batch [index], topics [index % 10], NULL);
                batch [index].data = data [index];
                batch [index].data_len = DATA_BYTES;
            }
            bu_pack_publish (&sbuf, rid, batch, 100);
            cr_assert_eq (bu_send_sbuf (client, "PUBLISH", &sbuf), 0);
            bu_reply_t reply = { 0 };
            cr_assert_eq (bu_recv_reply (client, &reply, 5000), 0, "no ACK");
            cr_assert_eq (reply.type, HERALD_MSG_ACK, "%s", reply.command);
            bu_reply_fini (&reply);
        }
        uint64_t flushes = 0;
        for (int poll = 0; poll < 1000 && flushes < (uint64_t) round; poll++) {
            flushes = s_status_extra (client, 1000 + poll, "idle_flushes");
            if (flushes < (uint64_t) round)
                zclock_sleep (10);
        }
        cr_assert_geq (flushes, (uint64_t) round, "no idle flush after round %d", round);
    }
    msgpack_sbuffer_destroy (&sbuf);
    zsock_destroy (&client);
    cr_assert_eq (bu_broker_stop (at_broker, 10000), 0, "heraldd did not stop");
    cr_assert_eq (bu_broker_restart (at_broker, 10000), 0, "heraldd did not start again");
    cr_assert_eq (bu_broker_stop (at_broker, 10000), 0, "heraldd did not stop");
    int64_t wal = tu_wal_bytes (at_broker->data_dir, false);
    cr_assert (wal >= 0 && wal < 64 * 1024, "the WAL was not written out (%" PRId64 " bytes)", wal);
    td_table_t table;
    size_t tables;
    cr_assert_eq (td_largest_table (at_broker->data_dir, "events", &table, &tables), 0);
    cr_assert_eq (td_flip (table.path, table.size / 2, 16), 0, "cannot damage %s", table.path);
    cr_assert_eq (bu_broker_restart (at_broker, 10000), 0, "heraldd did not start again");
}

static atomic_int s_errors;
static atomic_int s_error_code;
static char s_error_message [512];

static void
s_on_error (const char *subscription, int code, const char *message, void *arg)
{
    (void) subscription;
    (void) arg;
    if (atomic_fetch_add (&s_errors, 1) == 0) {
        snprintf (s_error_message, sizeof (s_error_message), "%s", message);
        atomic_store (&s_error_code, code);
    }
}

//  The agent delivers up to the damage, reports it once, keeps its
//  checkpoint there, stays catching up and retries with a backoff.
Test (herald_agent_damage, catch_up_stops_at_the_damage_reports_it_and_retries_with_backoff)
{
    s_damaged_log ();
    s_errors = 0;
    herald_agent_options_t options;
    au_options (&options, at_broker, at_state);
    options.on_error = s_on_error;
    at_agent = herald_agent_new ("damage", &options);
    cr_assert_not_null (at_agent, "%s", herald_agent_last_error ());
    cr_assert_eq (herald_agent_subscribe (at_agent, "audit", NULL,
                                          (herald_start_t) { HERALD_START_BEGINNING, 0 },
                                          au_record, at_recorder),
                  HERALD_OK, "%s", herald_agent_last_error ());

    //  on_error, after the events before the damage
    uint64_t deadline = tu_mono_ns () + WAIT_MS * 1000000ULL;
    while (atomic_load (&s_errors) == 0 && tu_mono_ns () < deadline)
        zclock_sleep (10);
    herald_sub_status_t status;
    cr_assert_eq (herald_agent_sub_status (at_agent, "audit", &status), HERALD_OK);
    cr_assert_eq (atomic_load (&s_errors), 1, "on_error was not called within %d ms: "
                  "%zu events delivered, checkpoint %" PRIu64 ", state %d", WAIT_MS,
                  at_recorder->count, status.delivered_seq, status.state);
    cr_assert_eq (atomic_load (&s_error_code), HERALD_ERR_INTERNAL, "%s", s_error_message);
    cr_assert_not_null (strstr (s_error_message, "Corruption"), "%s", s_error_message);

    pthread_mutex_lock (&at_recorder->lock);
    size_t delivered = at_recorder->count;
    uint64_t last_delivered = delivered? at_recorder->seqs [delivered - 1]: 0;
    pthread_mutex_unlock (&at_recorder->lock);
    cr_assert_lt (delivered, ROUNDS * PER_ROUND);
    cr_assert_eq (last_delivered, delivered, "seqs 1..%zu delivered", delivered);
    char message [256];
    cr_assert_eq (au_check_once_in_order (at_recorder, message, sizeof (message)), 0, "%s",
                  message);
    char seq_text [48];
    snprintf (seq_text, sizeof (seq_text), "seq %zu:", delivered + 1);
    cr_assert_not_null (strstr (s_error_message, seq_text), "'%s' not in: %s", seq_text,
                        s_error_message);

    //  It retries, with a backoff: over 2 s a tight loop would make
    //  hundreds of REPLAYs; 50 ms doubling makes a handful
    herald_agent_stats_t before, after;
    herald_agent_stats (at_agent, &before);
    cr_assert_geq (before.replay_errors, 1);
    zclock_sleep (2000);
    herald_agent_stats (at_agent, &after);
    uint64_t attempts = after.replay_errors - before.replay_errors;
    cr_assert_geq (attempts, 1, "no retry within 2 s");
    cr_assert_leq (attempts, 8, "%" PRIu64 " retries in 2 s: not backing off", attempts);
    cr_assert_eq (after.replays - before.replays, attempts, "replays %" PRIu64 " vs errors %"
                  PRIu64, after.replays - before.replays, attempts);

    //  Nothing more delivered, the checkpoint at or below the last event
    //  delivered, the subscription still running, on_error not repeated
    cr_assert_eq (herald_agent_sub_status (at_agent, "audit", &status), HERALD_OK);
    cr_assert_eq (at_recorder->count, delivered);
    cr_assert_leq (status.delivered_seq, last_delivered, "checkpoint %" PRIu64 " past the "
                   "last event delivered, %" PRIu64, status.delivered_seq, last_delivered);
    cr_assert_eq (status.state, HERALD_SUB_CATCHING_UP, "state %d", status.state);
    cr_assert_eq (atomic_load (&s_errors), 1);

    //  And after the agent is gone, its checkpoint file says the same
    herald_agent_destroy (&at_agent);
    at_agent = herald_agent_new ("damage", &options);
    cr_assert_not_null (at_agent);
    au_recorder_t *again = au_recorder_new ();
    cr_assert_eq (herald_agent_subscribe (at_agent, "audit", NULL,
                                          (herald_start_t) { HERALD_START_BEGINNING, 0 },
                                          au_record, again), HERALD_OK);
    cr_assert_eq (herald_agent_sub_status (at_agent, "audit", &status), HERALD_OK);
    cr_assert_leq (status.delivered_seq, last_delivered);
    herald_agent_destroy (&at_agent);
    au_recorder_destroy (&again);
}

//  herald_agent_replay and herald_agent_read over the damage: the events
//  before it reach the handler, then the broker's error is returned (with
//  its message), and replay's `last` is left as it was: the range was not
//  passed whole.
Test (herald_agent_damage, replay_and_read_return_the_broker_error_after_the_events_before_it)
{
    s_damaged_log ();
    herald_agent_options_t options;
    au_options (&options, at_broker, at_state);
    at_agent = herald_agent_new ("damage", &options);
    cr_assert_not_null (at_agent, "%s", herald_agent_last_error ());

    herald_range_t all = { 0 };
    uint64_t last = 12345;
    herald_err rc = herald_agent_replay (at_agent, &all, au_record, at_recorder, 0, &last);
    cr_assert_eq (rc, HERALD_ERR_INTERNAL, "replay returned %d (%s), last %" PRIu64, rc,
                  herald_strerror (rc), last);
    cr_assert_eq (last, 12345, "last set to %" PRIu64 " by a failed replay", last);
    cr_assert_not_null (strstr (herald_agent_last_error (), "Corruption"), "%s",
                        herald_agent_last_error ());
    size_t delivered = at_recorder->count;
    cr_assert_gt (delivered, 0);
    cr_assert_lt (delivered, ROUNDS * PER_ROUND);
    cr_assert_eq (at_recorder->seqs [delivered - 1], delivered);
    char seq_text [48];
    snprintf (seq_text, sizeof (seq_text), "seq %zu:", delivered + 1);
    cr_assert_not_null (strstr (herald_agent_last_error (), seq_text), "%s",
                        herald_agent_last_error ());

    //  The damaged event's topic, g.N for seq n: N = (n - 1) % 10
    char topic [8];
    snprintf (topic, sizeof (topic), "g.%zu", delivered % 10);
    au_recorder_t *read = au_recorder_new ();
    rc = herald_agent_read (at_agent, topic, 1, 0, au_record, read, 0);
    cr_assert_eq (rc, HERALD_ERR_INTERNAL, "read returned %d", rc);
    cr_assert_eq (read->count, delivered / 10, "read passed %zu events", read->count);
    au_recorder_destroy (&read);
}
