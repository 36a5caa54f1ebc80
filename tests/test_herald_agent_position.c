/*  =========================================================================
    test_herald_agent_position - subscriptions whose caller keeps the position

    herald_subscribe_options_t.caller_position (issue 16, what projections
    stand on), against a real heraldd: the agent writes nothing of such a
    subscription (it may have no state_dir at all), starts it where the
    caller says on every subscribe, keeps its dedup window in memory,
    delivers in seq order without duplicates through a broker restart and
    the repair of a lossy live stream, and when the broker lost events the
    subscription had passed it stops it (FAILED, HERALD_ERR_DATA_LOST
    through on_error) instead of rewinding it.  Also
    herald_agent_subscribe_batch_with: batch handlers with upcasters (each
    event of a batch converted; SKIP and PARK leave events out of the
    batches while the position passes them; STOP fails at the event), and
    the options it refuses.
    =========================================================================
*/

#include <criterion/criterion.h>
#include <dirent.h>
#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "agenttest.h"
#include "herald_store.h"
#include "testutil.h"

#define WAIT_MS     20000

static void
s_setup (void)
{
    at_setup ("agent-position", "agent-position-state");
}

TestSuite (herald_agent_position, .init = s_setup, .fini = at_teardown, .timeout = 120);

//  ---------------------------------------------------------------------
//  Helpers

//  on_error calls, by subscription name (at most 8 names)
typedef struct {
    pthread_mutex_t lock;
    size_t count;
    struct {
        char name [64];
        int code;
        char message [512];
        int calls;
    } subs [8];
} s_errors_t;

static s_errors_t s_errors = { .lock = PTHREAD_MUTEX_INITIALIZER };

static void
s_on_error (const char *subscription, int code, const char *message, void *arg)
{
    (void) arg;
    pthread_mutex_lock (&s_errors.lock);
    size_t index = 0;
    while (index < s_errors.count && strcmp (s_errors.subs [index].name, subscription) != 0)
        index++;
    if (index < 8) {
        if (index == s_errors.count)
            s_errors.count++;
        snprintf (s_errors.subs [index].name, sizeof s_errors.subs [index].name, "%s",
                  subscription);
        s_errors.subs [index].code = code;
        snprintf (s_errors.subs [index].message, sizeof s_errors.subs [index].message, "%s",
                  message);
        s_errors.subs [index].calls++;
    }
    pthread_mutex_unlock (&s_errors.lock);
}

//  on_error calls for name so far, with the last code and message
static int
s_error_calls (const char *name, int *code, char *message, size_t size)
{
    int calls = 0;
    pthread_mutex_lock (&s_errors.lock);
    for (size_t index = 0; index < s_errors.count; index++)
        if (strcmp (s_errors.subs [index].name, name) == 0) {
            calls = s_errors.subs [index].calls;
            if (code)
                *code = s_errors.subs [index].code;
            if (message)
                snprintf (message, size, "%s", s_errors.subs [index].message);
        }
    pthread_mutex_unlock (&s_errors.lock);
    return calls;
}

//  Wait until on_error was called for name (a failure sets the state
//  before it calls on_error); returns its calls then.
static int
s_wait_error (const char *name, int *code, char *message, size_t size)
{
    uint64_t deadline = tu_mono_ns () + 20000 * 1000000ULL;
    int calls;
    while ((calls = s_error_calls (name, code, message, size)) == 0
       &&  tu_mono_ns () < deadline)
        usleep (2000);
    return calls;
}

static herald_agent_t *
s_agent (const char *state_dir)
{
    herald_agent_options_t options;
    au_options (&options, at_broker, state_dir);
    options.on_error = s_on_error;
    herald_agent_t *agent = herald_agent_new ("position-test", &options);
    cr_assert_not_null (agent, "herald_agent_new: %s", herald_agent_last_error ());
    return agent;
}

static void
s_publish (const char *format, size_t topics, size_t count)
{
    cr_assert_eq (au_publish (at_broker->api, format, topics, count, WAIT_MS), 0,
                  "publishing %zu events failed", count);
}

//  A batch handler that records each event of its batch in the recorder
//  given as arg (au_record), and counts the calls
static atomic_int s_batch_calls;

static int
s_batch_record (herald_delivery_batch_t *batch, void *arg)
{
    s_batch_calls++;
    for (size_t index = 0; index < batch->count; index++) {
        int rc = au_record (&batch->events [index], arg);
        if (rc != HERALD_OK) {
            batch->handled = index;
            return rc;
        }
    }
    return HERALD_OK;
}

//  Subscribe name with the caller's position: events from seq `from` on
//  (per event, or with a batch handler), into recorder.
static herald_err
s_subscribe (herald_agent_t *agent, const char *name, const char *const *prefixes,
             uint64_t from, bool batch, au_recorder_t *recorder)
{
    herald_subscribe_options_t options;
    herald_subscribe_options_init (&options);
    options.prefixes = prefixes;
    options.start = (herald_start_t) { HERALD_START_SEQ, from };
    options.caller_position = true;
    return batch? herald_agent_subscribe_batch_with (agent, name, &options, s_batch_record,
                                                     recorder)
                : herald_agent_subscribe_with (agent, name, &options, au_record, recorder);
}

static herald_sub_status_t
s_status (herald_agent_t *agent, const char *name)
{
    herald_sub_status_t status;
    cr_assert_eq (herald_agent_sub_status (agent, name, &status), HERALD_OK);
    return status;
}

//  Wait until name's delivered_seq is at least seq and it is live.
static void
s_wait_done (herald_agent_t *agent, const char *name, uint64_t seq)
{
    uint64_t deadline = tu_mono_ns () + WAIT_MS * 1000000ULL;
    herald_sub_status_t status;
    do {
        status = s_status (agent, name);
        if (status.delivered_seq >= seq && status.state == HERALD_SUB_LIVE)
            return;
        usleep (5000);
    } while (tu_mono_ns () < deadline);
    cr_assert_fail ("%s stays at %" PRIu64 " (state %d), expected %" PRIu64, name,
                    status.delivered_seq, (int) status.state, seq);
}

static void
s_wait_state (herald_agent_t *agent, const char *name, herald_sub_state_t state)
{
    uint64_t deadline = tu_mono_ns () + WAIT_MS * 1000000ULL;
    herald_sub_status_t status;
    do {
        status = s_status (agent, name);
        if (status.state == state)
            return;
        usleep (5000);
    } while (tu_mono_ns () < deadline);
    cr_assert_fail ("%s is in state %d, expected %d", name, (int) status.state, (int) state);
}

//  The recorder holds exactly the seqs from..to, in order, once each.
static void
s_expect_range (au_recorder_t *recorder, size_t offset, uint64_t from, uint64_t to)
{
    size_t count = (size_t) (to - from + 1);
    cr_assert_eq (au_wait_count (recorder, offset + count, WAIT_MS), offset + count,
                  "%zu events, expected %zu", recorder->count, offset + count);
    pthread_mutex_lock (&recorder->lock);
    size_t got = recorder->count;
    pthread_mutex_unlock (&recorder->lock);
    cr_assert_eq (got, offset + count, "%zu events, expected %zu", got, offset + count);
    for (size_t index = 0; index < count; index++)
        cr_assert_eq (recorder->seqs [offset + index], from + index,
                      "event %zu has seq %" PRIu64 ", expected %" PRIu64, offset + index,
                      recorder->seqs [offset + index], from + index);
}

//  ---------------------------------------------------------------------
//  Where it starts, and what it writes

static void
s_projects_from_a_given_seq (bool batch)
{
    s_publish ("p.%zu", 5, 50);
    at_agent = s_agent (NULL);
    cr_assert_eq (s_subscribe (at_agent, "view", NULL, 21, batch, at_recorder), HERALD_OK,
                  "%s", herald_agent_last_error ());
    s_wait_done (at_agent, "view", 50);
    s_expect_range (at_recorder, 0, 21, 50);
    herald_sub_status_t status = s_status (at_agent, "view");
    cr_assert_eq (status.delivered_seq, 50);
    cr_assert_eq (status.delivered, 30);
    cr_assert_eq (status.duplicates, 0);
    //  Live after the catch-up: new events come too
    s_publish ("p.%zu", 5, 10);
    s_wait_done (at_agent, "view", 60);
    s_expect_range (at_recorder, 0, 21, 60);
    //  A plain subscription still needs the state_dir it has not got
    cr_assert_eq (herald_agent_subscribe (at_agent, "plain", NULL,
                  (herald_start_t) { HERALD_START_BEGINNING, 0 }, au_record, at_recorder),
                  HERALD_ERR_INVALID);
    cr_assert (strstr (herald_agent_last_error (), "caller_position"), "%s",
               herald_agent_last_error ());
}

Test (herald_agent_position, an_agent_without_state_dir_projects_from_a_given_seq)
{
    s_projects_from_a_given_seq (false);
}

Test (herald_agent_position, a_batch_handler_without_state_dir_projects_from_a_given_seq)
{
    s_projects_from_a_given_seq (true);
    cr_assert_lt (s_batch_calls, 30, "%d calls for 30 events: not batched", s_batch_calls);
}

Test (herald_agent_position, nothing_of_it_is_written_in_the_agents_state_dir)
{
    at_agent = s_agent (at_state);
    //  A plain subscription and its checkpoint first, for contrast
    au_recorder_t *plain = au_recorder_new ();
    cr_assert_eq (herald_agent_subscribe (at_agent, "plain", NULL,
                  (herald_start_t) { HERALD_START_BEGINNING, 0 }, au_record, plain),
                  HERALD_OK);
    s_publish ("n.%zu", 3, 100);
    cr_assert_eq (au_wait_count (plain, 100, WAIT_MS), 100);
    herald_agent_unsubscribe (at_agent, "plain");
    char *before = tu_dir_snapshot (at_state);
    cr_assert_not_null (before);
    cr_assert (strstr (before, "subs/plain.ckpt"), "%s", before);

    //  Per event, batch, with schemas declared (SKIP and PARK with on_parked):
    //  started, delivered to, unsubscribed, started again
    herald_schema_want_t wants [] = { { "Anything", 2 } };
    au_recorder_t *batched = au_recorder_new ();
    au_recorder_t *converted = au_recorder_new ();
    for (int round = 0; round < 2; round++) {
        cr_assert_eq (s_subscribe (at_agent, "events", NULL, 1, false, at_recorder), HERALD_OK,
                      "%s", herald_agent_last_error ());
        cr_assert_eq (s_subscribe (at_agent, "batches", NULL, 1, true, batched), HERALD_OK,
                      "%s", herald_agent_last_error ());
        herald_subscribe_options_t options;
        herald_subscribe_options_init (&options);
        options.caller_position = true;
        options.wants = wants;
        options.want_count = 1;
        options.on_incompatible = HERALD_SCHEMA_SKIP;
        cr_assert_eq (herald_agent_subscribe_with (at_agent, "schemas", &options, au_record,
                      converted), HERALD_OK, "%s", herald_agent_last_error ());
        s_wait_done (at_agent, "events", 100);
        s_wait_done (at_agent, "batches", 100);
        s_wait_done (at_agent, "schemas", 100);
        herald_agent_unsubscribe (at_agent, "events");
        herald_agent_unsubscribe (at_agent, "batches");
        herald_agent_unsubscribe (at_agent, "schemas");
    }
    cr_assert_eq (at_recorder->count, 200);
    cr_assert_eq (batched->count, 200);
    cr_assert_eq (converted->count, 200);
    herald_agent_destroy (&at_agent);
    char *after = tu_dir_snapshot (at_state);
    cr_assert_not_null (after);
    cr_assert_str_eq (before, after, "the state directory changed:\nbefore\n%s\nafter\n%s",
                      before, after);
    free (before);
    free (after);
    au_recorder_destroy (&plain);
    au_recorder_destroy (&batched);
    au_recorder_destroy (&converted);
}

Test (herald_agent_position, start_applies_on_every_subscribe)
{
    s_publish ("s.%zu", 4, 40);
    //  One agent: subscribe, unsubscribe, subscribe again lower than
    //  where it was (the events come again: nothing was kept, not even
    //  the dedup window), then higher
    at_agent = s_agent (at_state);
    cr_assert_eq (s_subscribe (at_agent, "view", NULL, 11, false, at_recorder), HERALD_OK);
    s_expect_range (at_recorder, 0, 11, 40);
    s_wait_done (at_agent, "view", 40);
    cr_assert_eq (herald_agent_unsubscribe (at_agent, "view"), HERALD_OK);
    cr_assert_eq (s_status (at_agent, "view").state, HERALD_SUB_STOPPED);
    cr_assert_eq (s_subscribe (at_agent, "view", NULL, 5, true, at_recorder), HERALD_OK);
    s_expect_range (at_recorder, 30, 5, 40);
    s_wait_done (at_agent, "view", 40);
    cr_assert_eq (herald_agent_unsubscribe (at_agent, "view"), HERALD_OK);
    cr_assert_eq (s_subscribe (at_agent, "view", NULL, 38, false, at_recorder), HERALD_OK);
    s_expect_range (at_recorder, 66, 38, 40);
    herald_agent_destroy (&at_agent);

    //  Another agent on the same state_dir, in turn: where the caller says
    au_recorder_destroy (&at_recorder);
    at_recorder = au_recorder_new ();
    at_agent = s_agent (at_state);
    cr_assert_eq (s_subscribe (at_agent, "view", NULL, 2, true, at_recorder), HERALD_OK);
    s_expect_range (at_recorder, 0, 2, 40);
    s_wait_done (at_agent, "view", 40);
    //  Past the head: nothing until events come
    cr_assert_eq (herald_agent_unsubscribe (at_agent, "view"), HERALD_OK);
    cr_assert_eq (s_subscribe (at_agent, "view", NULL, 45, false, at_recorder), HERALD_OK);
    s_publish ("s.%zu", 4, 10);
    s_expect_range (at_recorder, 39, 45, 50);
    herald_agent_destroy (&at_agent);
}

Test (herald_agent_position, a_failed_subscription_starts_again_where_the_caller_says)
{
    s_publish ("f.%zu", 2, 30);
    at_recorder->fail_seq = 20;
    at_recorder->fail_code = 77;
    at_agent = s_agent (NULL);
    cr_assert_eq (s_subscribe (at_agent, "view", NULL, 1, false, at_recorder), HERALD_OK);
    s_wait_state (at_agent, "view", HERALD_SUB_FAILED);
    herald_sub_status_t status = s_status (at_agent, "view");
    cr_assert_eq (status.error, 77);
    cr_assert_eq (status.delivered_seq, 19);
    s_expect_range (at_recorder, 0, 1, 19);
    int code = 0;
    cr_assert_eq (s_wait_error ("view", &code, NULL, 0), 1);
    cr_assert_eq (code, 77);
    //  The caller fixed what failed and starts at the event that failed
    at_recorder->fail_seq = 0;
    cr_assert_eq (s_subscribe (at_agent, "view", NULL, 20, true, at_recorder), HERALD_OK,
                  "%s", herald_agent_last_error ());
    s_expect_range (at_recorder, 19, 20, 30);
    s_wait_done (at_agent, "view", 30);
}

//  ---------------------------------------------------------------------
//  Order and duplicates: a lossy live stream, a broker restart

static void
s_restart_and_repair (bool batch)
{
    bu_broker_destroy (&at_broker);
    const char *extra [] = { "--fanout-hwm", "5", NULL };
    at_broker = bu_broker_new ("agent-position-drops", extra);
    cr_assert_not_null (at_broker);
    cr_assert_eq (bu_broker_start (at_broker, AT_START_MS), 0, "heraldd did not start");
    herald_agent_options_t options;
    au_options (&options, at_broker, NULL);
    options.sub_rcvhwm = 5;
    options.on_error = s_on_error;
    at_agent = herald_agent_new ("position-test", &options);
    cr_assert_not_null (at_agent);
    s_publish ("r.%zu", 50, 100);
    cr_assert_eq (s_subscribe (at_agent, "view", NULL, 1, batch, at_recorder), HERALD_OK);
    s_wait_done (at_agent, "view", 100);
    at_recorder->sleep_us = 2;
    s_publish ("r.%zu", 50, 10000);
    cr_assert_geq (au_wait_count (at_recorder, 3000, WAIT_MS), 3000);
    //  The broker stops while events flow, and comes back
    cr_assert_eq (bu_broker_stop (at_broker, 10000), 0);
    cr_assert_eq (bu_broker_restart (at_broker, AT_START_MS), 0);
    s_publish ("r.%zu", 50, 10000);
    s_wait_done (at_agent, "view", 20100);
    char message [256];
    cr_assert_eq (au_check_once_in_order (at_recorder, message, sizeof message), 0, "%s",
                  message);
    s_expect_range (at_recorder, 0, 1, 20100);
    herald_agent_stats_t stats;
    herald_agent_stats (at_agent, &stats);
    cr_assert_gt (stats.gaps_repaired, 0, "no loss on the live stream was seen: the test"
                  " did not make the broker drop anything");
    cr_assert_eq (s_error_calls ("view", NULL, NULL, 0), 0);
    fprintf (stderr, "position (%s): 20100 events through a restart, %" PRIu64 " gaps "
             "repaired, %" PRIu64 " duplicates dropped\n", batch? "batch": "per event",
             stats.gaps_repaired, stats.duplicates);
}

Test (herald_agent_position, in_order_once_through_a_restart_and_gap_repairs)
{
    s_restart_and_repair (false);
}

Test (herald_agent_position, a_batch_handler_in_order_once_through_a_restart_and_gap_repairs)
{
    s_restart_and_repair (true);
}

//  ---------------------------------------------------------------------
//  A broker that lost events the subscription had passed

static void
s_delete_wal (const char *dir)
{
    DIR *handle = opendir (dir);
    cr_assert_not_null (handle);
    struct dirent *entry;
    while ((entry = readdir (handle))) {
        size_t len = strlen (entry->d_name);
        if (len >= 5 && strcmp (entry->d_name + len - 4, ".log") == 0) {
            char path [4200];
            snprintf (path, sizeof path, "%s/%s", dir, entry->d_name);
            cr_assert_eq (unlink (path), 0);
        }
    }
    closedir (handle);
}

static void
s_accept_loss (const char *dir)
{
    herald_store_options_t options = { .accept_loss = true };
    herald_error_t err;
    herald_store_t *store = herald_store_open (dir, &options, &err);
    cr_assert_not_null (store, "open for repair: %s", err.message);
    cr_assert_eq (herald_store_accept_loss (store, "test: WAL deleted", &err), HERALD_OK, "%s",
                  err.message);
    cr_assert_eq (herald_store_stop (store, &err), HERALD_OK, "%s", err.message);
    herald_store_destroy (&store);
}

Test (herald_agent_position, a_broker_loss_stops_it_with_data_lost_instead_of_rewinding)
{
    bu_broker_destroy (&at_broker);
    const char *extra [] = { "--durability", "async", NULL };
    at_broker = bu_broker_new ("agent-position-lost", extra);
    cr_assert_not_null (at_broker);
    cr_assert_eq (bu_broker_start (at_broker, AT_START_MS), 0);
    at_agent = s_agent (at_state);
    au_recorder_t *batched = au_recorder_new ();
    au_recorder_t *witness = au_recorder_new ();
    //  Two with the caller's position (per event, batch), and a plain one
    //  that the agent rewinds, as a witness that events flow again
    cr_assert_eq (s_subscribe (at_agent, "events", NULL, 1, false, at_recorder), HERALD_OK);
    cr_assert_eq (s_subscribe (at_agent, "batches", NULL, 1, true, batched), HERALD_OK);
    cr_assert_eq (herald_agent_subscribe (at_agent, "witness", NULL,
                  (herald_start_t) { HERALD_START_BEGINNING, 0 }, au_record, witness),
                  HERALD_OK);
    s_publish ("l.%zu", 5, 200);
    cr_assert_eq (au_wait_count (at_recorder, 200, WAIT_MS), 200);
    cr_assert_eq (au_wait_count (batched, 200, WAIT_MS), 200);
    cr_assert_eq (au_wait_count (witness, 200, WAIT_MS), 200);
    bu_broker_kill (at_broker);
    s_delete_wal (at_broker->data_dir);
    cr_assert_eq (bu_broker_restart (at_broker, 2000), -1, "served a log without its WAL");
    s_accept_loss (at_broker->data_dir);
    cr_assert_eq (bu_broker_restart (at_broker, AT_START_MS), 0);
    int64_t kept = au_head (at_broker->api, 5000);
    cr_assert_geq (kept, 0);
    cr_assert_lt (kept, 200, "nothing was lost: the test proves nothing");
    s_publish ("l.%zu", 5, 300);
    //  The witness was rewound and got the new events at the reused seqs
    cr_assert_eq (au_wait_count (witness, 500, WAIT_MS), 500);
    s_wait_state (at_agent, "events", HERALD_SUB_FAILED);
    s_wait_state (at_agent, "batches", HERALD_SUB_FAILED);
    const char *names [] = { "events", "batches" };
    for (int index = 0; index < 2; index++) {
        herald_sub_status_t status = s_status (at_agent, names [index]);
        cr_assert_eq (status.error, HERALD_ERR_DATA_LOST);
        cr_assert_eq (status.delivered_seq, 200, "%s was rewound to %" PRIu64,
                      names [index], status.delivered_seq);
        cr_assert_eq (status.data_lost, 1);
        int code = 0;
        char message [512];
        cr_assert_eq (s_wait_error (names [index], &code, message, sizeof message), 1);
        cr_assert_eq (code, HERALD_ERR_DATA_LOST);
        char want [200];
        snprintf (want, sizeof want, "broker lost events after seq %" PRId64 " (lineage 1): "
                  "subscription %s had passed seq 200", kept, names [index]);
        cr_assert (strstr (message, want), "%s", message);
        cr_assert (strstr (status.message, "not rewound"), "%s", status.message);
    }
    //  None of the new events reached them
    cr_assert_eq (at_recorder->count, 200);
    cr_assert_eq (batched->count, 200);
    int code = 0;
    cr_assert_eq (s_wait_error ("witness", &code, NULL, 0), 1);
    cr_assert_eq (code, HERALD_ERR_DATA_LOST);
    s_wait_done (at_agent, "witness", (uint64_t) kept + 300);
    //  The caller rebuilds: from seq 1 again, in the new lineage
    au_recorder_destroy (&at_recorder);
    at_recorder = au_recorder_new ();
    cr_assert_eq (s_subscribe (at_agent, "events", NULL, 1, false, at_recorder), HERALD_OK,
                  "%s", herald_agent_last_error ());
    s_expect_range (at_recorder, 0, 1, (uint64_t) kept + 300);
    s_wait_done (at_agent, "events", (uint64_t) kept + 300);
    cr_assert_eq (s_status (at_agent, "events").lineage, 1);
    au_recorder_destroy (&batched);
    au_recorder_destroy (&witness);
}

//  ---------------------------------------------------------------------
//  Batch handlers with schemas

//  Upcaster OrderPlaced 1 -> 2: appends ";wh=main"
static int
s_upcast (const herald_delivery_t *event, herald_cast_result_t *result, void *arg)
{
    (void) arg;
    const char *tail = ";wh=main";
    cr_assert_leq (event->data_len + strlen (tail), result->capacity);
    memcpy (result->buffer, event->data, event->data_len);
    memcpy (result->buffer + event->data_len, tail, strlen (tail));
    result->data_len = event->data_len + strlen (tail);
    return HERALD_OK;
}

//  Downcaster OrderPlaced 3 -> 2: cuts the data at its last ';'
static int
s_downcast (const herald_delivery_t *event, herald_cast_result_t *result, void *arg)
{
    (void) arg;
    const char *data = (const char *) event->data;
    size_t len = event->data_len;
    while (len > 0 && data [len - 1] != ';')
        len--;
    if (len == 0)
        return HERALD_ERR_INVALID;
    memcpy (result->buffer, data, len - 1);
    result->data_len = len - 1;
    return HERALD_OK;
}

//  What a batch handler saw: seq, schema and data of each event, and the
//  batches' first seqs
#define SEEN_MAX    64
static struct {
    pthread_mutex_t lock;
    size_t count;
    uint64_t seqs [SEEN_MAX];
    uint64_t schemas [SEEN_MAX];
    char data [SEEN_MAX][64];
    size_t batches;
    size_t parked;
    uint64_t parked_seq;
    char parked_data [64];
} s_seen = { .lock = PTHREAD_MUTEX_INITIALIZER };

static void
s_seen_reset (void)
{
    pthread_mutex_lock (&s_seen.lock);
    s_seen.count = s_seen.batches = s_seen.parked = 0;
    s_seen.parked_seq = 0;
    s_seen.parked_data [0] = 0;
    pthread_mutex_unlock (&s_seen.lock);
}

static int
s_batch_seen (herald_delivery_batch_t *batch, void *arg)
{
    (void) arg;
    pthread_mutex_lock (&s_seen.lock);
    s_seen.batches++;
    for (size_t index = 0; index < batch->count && s_seen.count < SEEN_MAX; index++) {
        const herald_delivery_t *event = &batch->events [index];
        s_seen.seqs [s_seen.count] = event->seq;
        s_seen.schemas [s_seen.count] = event->schema;
        snprintf (s_seen.data [s_seen.count], 64, "%.*s", (int) event->data_len,
                  (const char *) event->data);
        s_seen.count++;
    }
    pthread_mutex_unlock (&s_seen.lock);
    return HERALD_OK;
}

static void
s_on_parked (const herald_delivery_t *event, const char *reason, void *arg)
{
    (void) reason, (void) arg;
    pthread_mutex_lock (&s_seen.lock);
    s_seen.parked++;
    s_seen.parked_seq = event->seq;
    snprintf (s_seen.parked_data, 64, "%.*s", (int) event->data_len,
              (const char *) event->data);
    pthread_mutex_unlock (&s_seen.lock);
}

static uint64_t
s_publish_typed (const char *type, uint64_t schema, const char *data)
{
    herald_outgoing_t event = { .topic = "orders.1", .data = data, .data_len = strlen (data),
                                .type = type, .schema = schema };
    herald_publish_result_t result;
    cr_assert_eq (herald_agent_publish (at_agent, &event, &result, WAIT_MS), HERALD_OK,
                  "publish: %s", herald_agent_last_error ());
    return result.seq;
}

//  Publish seq 1 .. 6: OrderPlaced schema 1, 2, 3 (newer than wanted, no
//  downcaster: incompatible), an untyped event, OrderPlaced 1, and 1 again.
//  Then subscribe the batch handler (caller_position, wanting OrderPlaced
//  2) with policy.
static void
s_schema_run (herald_schema_policy_t policy, bool caller_position)
{
    s_seen_reset ();
    at_agent = s_agent (at_state);
    cr_assert_eq (herald_agent_upcaster (at_agent, "OrderPlaced", 1, s_upcast, NULL),
                  HERALD_OK);
    cr_assert_eq (s_publish_typed ("OrderPlaced", 1, "a"), 1);
    cr_assert_eq (s_publish_typed ("OrderPlaced", 2, "b;wh=x"), 2);
    cr_assert_eq (s_publish_typed ("OrderPlaced", 3, "c;wh=y;prio=1"), 3);
    cr_assert_eq (s_publish_typed (NULL, 0, "d"), 4);
    cr_assert_eq (s_publish_typed ("OrderPlaced", 1, "e"), 5);
    cr_assert_eq (s_publish_typed ("OrderPlaced", 0, "f"), 6);
    herald_schema_want_t wants [] = { { "OrderPlaced", 2 } };
    herald_subscribe_options_t options;
    herald_subscribe_options_init (&options);
    options.caller_position = caller_position;
    options.wants = wants;
    options.want_count = 1;
    options.on_incompatible = policy;
    options.on_parked = s_on_parked;
    cr_assert_eq (herald_agent_subscribe_batch_with (at_agent, "orders", &options,
                  s_batch_seen, NULL), HERALD_OK, "%s", herald_agent_last_error ());
}

static void
s_expect_seen (size_t index, uint64_t seq, uint64_t schema, const char *data)
{
    cr_assert_eq (s_seen.seqs [index], seq, "event %zu: seq %" PRIu64, index,
                  s_seen.seqs [index]);
    cr_assert_eq (s_seen.schemas [index], schema, "seq %" PRIu64 ": schema %" PRIu64, seq,
                  s_seen.schemas [index]);
    cr_assert_str_eq (s_seen.data [index], data, "seq %" PRIu64, seq);
}

//  The converted events of seq 1, 2, 4, 5, 6 (3 left out; 4 has no type:
//  as stored, schema 1)
static void
s_expect_converted (void)
{
    pthread_mutex_lock (&s_seen.lock);
    cr_assert_eq (s_seen.count, 5, "%zu events in the batches", s_seen.count);
    s_expect_seen (0, 1, 2, "a;wh=main");
    s_expect_seen (1, 2, 2, "b;wh=x");
    s_expect_seen (2, 4, 1, "d");
    s_expect_seen (3, 5, 2, "e;wh=main");
    s_expect_seen (4, 6, 2, "f;wh=main");
    //  One run before the incompatible event, one after it
    cr_assert_eq (s_seen.batches, 2, "%zu batches", s_seen.batches);
    pthread_mutex_unlock (&s_seen.lock);
    herald_schema_stats_t stats;
    cr_assert_eq (herald_agent_schema_stats (at_agent, "orders", &stats), HERALD_OK);
    cr_assert_eq (stats.upcast, 3);
}

Test (herald_agent_position, a_batch_handler_gets_upcast_events_and_skip_leaves_one_out)
{
    s_schema_run (HERALD_SCHEMA_SKIP, true);
    s_wait_done (at_agent, "orders", 6);
    s_expect_converted ();
    herald_schema_stats_t stats;
    herald_agent_schema_stats (at_agent, "orders", &stats);
    cr_assert_eq (stats.skipped, 1);
    int code = 0;
    char message [512];
    cr_assert_eq (s_error_calls ("orders", &code, message, sizeof message), 1);
    cr_assert_eq (code, HERALD_ERR_UNSUPPORTED);
    cr_assert (strstr (message, "skipped: "), "%s", message);
    herald_sub_status_t status = s_status (at_agent, "orders");
    cr_assert_eq (status.delivered, 6, "skipped counts as passed: %" PRIu64, status.delivered);
}

Test (herald_agent_position, a_batch_handler_with_park_gives_the_event_to_on_parked)
{
    s_schema_run (HERALD_SCHEMA_PARK, true);
    s_wait_done (at_agent, "orders", 6);
    s_expect_converted ();
    pthread_mutex_lock (&s_seen.lock);
    cr_assert_eq (s_seen.parked, 1);
    cr_assert_eq (s_seen.parked_seq, 3);
    cr_assert_str_eq (s_seen.parked_data, "c;wh=y;prio=1", "parked as stored");
    pthread_mutex_unlock (&s_seen.lock);
    herald_schema_stats_t stats;
    herald_agent_schema_stats (at_agent, "orders", &stats);
    cr_assert_eq (stats.parked, 1);
    //  No parked file, no checkpoint: nothing of it in state_dir
    herald_agent_destroy (&at_agent);
    char *after = tu_dir_snapshot (at_state);
    cr_assert_not_null (after);
    cr_assert (!strstr (after, "orders") && !strstr (after, "parked"), "%s", after);
    free (after);
}

Test (herald_agent_position, a_batch_handler_with_a_checkpoint_parks_in_its_file)
{
    //  The same with the agent keeping the position: the parked file
    s_schema_run (HERALD_SCHEMA_PARK, false);
    s_wait_done (at_agent, "orders", 6);
    s_expect_converted ();
    char path [4200];
    snprintf (path, sizeof path, "%s/parked/orders.parked", at_state);
    cr_assert_eq (access (path, F_OK), 0, "%s is missing", path);
    pthread_mutex_lock (&s_seen.lock);
    cr_assert_eq (s_seen.parked, 1);
    pthread_mutex_unlock (&s_seen.lock);
}

Test (herald_agent_position, a_batch_handler_with_stop_fails_at_the_incompatible_event)
{
    s_schema_run (HERALD_SCHEMA_STOP, true);
    s_wait_state (at_agent, "orders", HERALD_SUB_FAILED);
    herald_sub_status_t status = s_status (at_agent, "orders");
    cr_assert_eq (status.error, HERALD_ERR_UNSUPPORTED);
    cr_assert_eq (status.delivered_seq, 2);
    cr_assert (strstr (status.message, "seq 3"), "%s", status.message);
    pthread_mutex_lock (&s_seen.lock);
    cr_assert_eq (s_seen.count, 2);
    s_expect_seen (0, 1, 2, "a;wh=main");
    s_expect_seen (1, 2, 2, "b;wh=x");
    pthread_mutex_unlock (&s_seen.lock);
    //  A downcaster arrives; the caller starts again at the event that failed
    cr_assert_eq (herald_agent_downcaster (at_agent, "OrderPlaced", 3, s_downcast, NULL),
                  HERALD_OK);
    s_seen_reset ();
    herald_schema_want_t wants [] = { { "OrderPlaced", 2 } };
    herald_subscribe_options_t options;
    herald_subscribe_options_init (&options);
    options.caller_position = true;
    options.start = (herald_start_t) { HERALD_START_SEQ, 3 };
    options.wants = wants;
    options.want_count = 1;
    cr_assert_eq (herald_agent_subscribe_batch_with (at_agent, "orders", &options,
                  s_batch_seen, NULL), HERALD_OK, "%s", herald_agent_last_error ());
    s_wait_done (at_agent, "orders", 6);
    pthread_mutex_lock (&s_seen.lock);
    cr_assert_eq (s_seen.count, 4);
    s_expect_seen (0, 3, 2, "c;wh=y");
    s_expect_seen (1, 4, 1, "d");
    s_expect_seen (2, 5, 2, "e;wh=main");
    s_expect_seen (3, 6, 2, "f;wh=main");
    pthread_mutex_unlock (&s_seen.lock);
}

Test (herald_agent_position, a_group_batch_handler_with_schemas_converts_and_skips)
{
    //  batch_with with options->group: a member batch split in runs
    s_seen_reset ();
    at_agent = s_agent (at_state);
    cr_assert_eq (herald_agent_upcaster (at_agent, "OrderPlaced", 1, s_upcast, NULL),
                  HERALD_OK);
    cr_assert_eq (s_publish_typed ("OrderPlaced", 1, "a"), 1);
    cr_assert_eq (s_publish_typed ("OrderPlaced", 2, "b;wh=x"), 2);
    cr_assert_eq (s_publish_typed ("OrderPlaced", 3, "c;wh=y;prio=1"), 3);
    cr_assert_eq (s_publish_typed (NULL, 0, "d"), 4);
    cr_assert_eq (s_publish_typed ("OrderPlaced", 1, "e"), 5);
    cr_assert_eq (s_publish_typed ("OrderPlaced", 0, "f"), 6);
    herald_group_options_t group;
    herald_group_options_init (&group);
    group.partitions = 1;
    herald_schema_want_t wants [] = { { "OrderPlaced", 2 } };
    herald_subscribe_options_t options;
    herald_subscribe_options_init (&options);
    options.group = &group;
    options.wants = wants;
    options.want_count = 1;
    options.on_incompatible = HERALD_SCHEMA_SKIP;
    cr_assert_eq (herald_agent_subscribe_batch_with (at_agent, "orders", &options,
                  s_batch_seen, NULL), HERALD_OK, "%s", herald_agent_last_error ());
    s_wait_done (at_agent, "orders", 6);
    pthread_mutex_lock (&s_seen.lock);
    cr_assert_eq (s_seen.count, 5, "%zu events in the batches", s_seen.count);
    s_expect_seen (0, 1, 2, "a;wh=main");
    s_expect_seen (1, 2, 2, "b;wh=x");
    s_expect_seen (2, 4, 1, "d");
    s_expect_seen (3, 5, 2, "e;wh=main");
    s_expect_seen (4, 6, 2, "f;wh=main");
    pthread_mutex_unlock (&s_seen.lock);
    herald_schema_stats_t stats;
    cr_assert_eq (herald_agent_schema_stats (at_agent, "orders", &stats), HERALD_OK);
    cr_assert_eq (stats.upcast, 3);
    cr_assert_eq (stats.skipped, 1);
    herald_group_status_t figures;
    cr_assert_eq (herald_agent_group_status (at_agent, "orders", &figures), HERALD_OK);
    cr_assert_geq (figures.committed, 6);
}

//  ---------------------------------------------------------------------
//  What is refused

Test (herald_agent_position, bad_options_are_refused_and_nothing_is_written)
{
    at_agent = s_agent (at_state);
    char *before = tu_dir_snapshot (at_state);
    cr_assert_not_null (before);
    herald_subscribe_options_t options;
    herald_subscribe_options_init (&options);
    options.caller_position = true;
    //  With a group: the broker keeps a group's positions
    herald_group_options_t group;
    herald_group_options_init (&group);
    options.group = &group;
    cr_assert_eq (herald_agent_subscribe_with (at_agent, "g", &options, au_record, NULL),
                  HERALD_ERR_INVALID);
    cr_assert (strstr (herald_agent_last_error (), "caller_position"), "%s",
               herald_agent_last_error ());
    cr_assert_eq (herald_agent_subscribe_batch_with (at_agent, "g", &options, s_batch_record,
                  NULL), HERALD_ERR_INVALID);
    options.group = NULL;
    //  PARK needs on_parked: there is no parked file
    herald_schema_want_t wants [] = { { "T", 2 } };
    options.wants = wants;
    options.want_count = 1;
    options.on_incompatible = HERALD_SCHEMA_PARK;
    cr_assert_eq (herald_agent_subscribe_batch_with (at_agent, "p", &options, s_batch_record,
                  NULL), HERALD_ERR_INVALID);
    cr_assert (strstr (herald_agent_last_error (), "on_parked"), "%s",
               herald_agent_last_error ());
    options.on_incompatible = HERALD_SCHEMA_SKIP;
    //  No handler, no options, a bad name, a bad start
    cr_assert_eq (herald_agent_subscribe_batch_with (at_agent, "p", &options, NULL, NULL),
                  HERALD_ERR_INVALID);
    cr_assert_eq (herald_agent_subscribe_with (at_agent, "p", &options, NULL, NULL),
                  HERALD_ERR_INVALID);
    cr_assert_eq (herald_agent_subscribe_batch_with (at_agent, "p", NULL, s_batch_record,
                  NULL), HERALD_ERR_INVALID);
    cr_assert_eq (herald_agent_subscribe_batch_with (at_agent, ".p", &options, s_batch_record,
                  NULL), HERALD_ERR_INVALID);
    options.start = (herald_start_t) { (herald_start_kind_t) 99, 0 };
    cr_assert_eq (herald_agent_subscribe_batch_with (at_agent, "p", &options, s_batch_record,
                  NULL), HERALD_ERR_INVALID);
    cr_assert (strstr (herald_agent_last_error (), "start"), "%s", herald_agent_last_error ());
    //  None of them made a subscription
    herald_sub_status_t status;
    cr_assert_eq (herald_agent_sub_status (at_agent, "p", &status), HERALD_ERR_NOT_FOUND);
    cr_assert_eq (herald_agent_sub_status (at_agent, "g", &status), HERALD_ERR_NOT_FOUND);
    //  Running already
    options.start = (herald_start_t) { HERALD_START_BEGINNING, 0 };
    cr_assert_eq (herald_agent_subscribe_batch_with (at_agent, "p", &options, s_batch_record,
                  at_recorder), HERALD_OK);
    cr_assert_eq (herald_agent_subscribe_with (at_agent, "p", &options, au_record, NULL),
                  HERALD_ERR_INVALID);
    cr_assert (strstr (herald_agent_last_error (), "already running"), "%s",
               herald_agent_last_error ());
    herald_agent_destroy (&at_agent);
    char *after = tu_dir_snapshot (at_state);
    cr_assert_str_eq (before, after, "before\n%s\nafter\n%s", before, after);
    free (before);
    free (after);
}
