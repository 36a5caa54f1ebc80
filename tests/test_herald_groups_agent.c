/*  =========================================================================
    test_herald_groups_agent - group subscriptions through the agent's API

    herald_agent_subscribe_group against the real heraldd, with agents
    that have no state directory (options.state_dir NULL): the position
    lives in the broker, so a fresh agent resumes where the group left
    off; members of one group share the work, each event to one of them,
    per-topic order kept; an unsubscribe hands its partitions over with
    nothing flagged; a member kill -9'd in the middle of a batch
    (tests/group_child, a process of its own) leaves exactly that batch to
    be delivered again, flagged redelivered; RETRY, a failing handler and
    dispatch mode behave as for a local subscription; and what an agent
    without a state directory cannot do is refused.
    =========================================================================
*/

#include <criterion/criterion.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "agenttest.h"
#include "testutil.h"

#define WAIT_MS         30000
#define TOPICS          20
#define MAX_SEQ         4096

//  A test's second agent, destroyed also when an assertion ended it
static herald_agent_t *s_other;

static void
s_setup (void)
{
    at_setup ("groups-agent", "groups-agent-state");
}

static void
s_teardown (void)
{
    herald_agent_destroy (&s_other);
    at_teardown ();
}

TestSuite (herald_groups_agent, .init = s_setup, .fini = s_teardown, .timeout = 120);

//  ---------------------------------------------------------------------
//  What the handlers saw, in one global order (every agent of a test
//  lives in this process and records under one lock)

typedef struct {
    int member;                     //  which agent (the handler's arg)
    uint64_t seq;
    int topic;                      //  t.<topic>
    bool redelivered;
    unsigned attempt;
} s_rec_t;

static struct {
    pthread_mutex_t lock;
    s_rec_t *recs;
    size_t count, size;
    unsigned seen [MAX_SEQ + 1];    //  times each seq was handled
    size_t unique;
    int sleep_us;
    uint64_t retry_seq;             //  RETRY this seq retry_times times
    unsigned retry_times;
    uint64_t fail_seq;              //  and fail this one with fail_code
    int fail_code;
    atomic_int errors;              //  on_error calls
    int error_code;
} s_seen = { .lock = PTHREAD_MUTEX_INITIALIZER };

static void
s_seen_reset (void)
{
    pthread_mutex_lock (&s_seen.lock);
    free (s_seen.recs);
    s_seen.recs = NULL;
    s_seen.count = s_seen.size = s_seen.unique = 0;
    memset (s_seen.seen, 0, sizeof s_seen.seen);
    s_seen.sleep_us = 0;
    s_seen.retry_seq = s_seen.fail_seq = 0;
    s_seen.retry_times = 0;
    s_seen.fail_code = 0;
    atomic_store (&s_seen.errors, 0);
    s_seen.error_code = 0;
    pthread_mutex_unlock (&s_seen.lock);
}

static int
s_handler (const herald_delivery_t *event, void *arg)
{
    int member = (int) (intptr_t) arg;
    if (s_seen.sleep_us)
        usleep ((useconds_t) s_seen.sleep_us);
    pthread_mutex_lock (&s_seen.lock);
    if (event->seq == s_seen.fail_seq && s_seen.fail_code) {
        pthread_mutex_unlock (&s_seen.lock);
        return s_seen.fail_code;
    }
    if (event->seq == s_seen.retry_seq && s_seen.retry_times) {
        s_seen.retry_times--;
        pthread_mutex_unlock (&s_seen.lock);
        return HERALD_RETRY;
    }
    if (s_seen.count == s_seen.size) {
        s_seen.size = s_seen.size? s_seen.size * 2: 1024;
        s_seen.recs = realloc (s_seen.recs, s_seen.size * sizeof *s_seen.recs);
        if (!s_seen.recs)
            abort ();
    }
    s_rec_t *rec = &s_seen.recs [s_seen.count++];
    rec->member = member;
    rec->seq = event->seq;
    rec->topic = event->topic_len > 2? atoi (event->topic + 2): -1;
    rec->redelivered = event->redelivered;
    rec->attempt = event->attempt;
    if (event->seq <= MAX_SEQ && s_seen.seen [event->seq]++ == 0)
        s_seen.unique++;
    pthread_mutex_unlock (&s_seen.lock);
    return HERALD_OK;
}

static void
s_on_error (const char *name, int code, const char *message, void *arg)
{
    (void) name;
    (void) message;
    (void) arg;
    s_seen.error_code = code;
    atomic_fetch_add (&s_seen.errors, 1);
}

//  Wait until count distinct seqs were handled; returns how many were.
static size_t
s_wait_unique (size_t count, int timeout_ms)
{
    uint64_t deadline = tu_mono_ns () + (uint64_t) timeout_ms * 1000000ULL;
    size_t unique = 0;
    while (true) {
        pthread_mutex_lock (&s_seen.lock);
        unique = s_seen.unique;
        pthread_mutex_unlock (&s_seen.lock);
        if (unique >= count || tu_mono_ns () >= deadline)
            break;
        usleep (5000);
    }
    return unique;
}

//  An agent with no state directory on the test's broker.
static herald_agent_t *
s_agent_new (bool dispatch)
{
    herald_agent_options_t options;
    au_options (&options, at_broker, NULL);
    options.dispatch = dispatch;
    options.on_error = s_on_error;
    herald_agent_t *agent = herald_agent_new ("groups-test", &options);
    cr_assert_not_null (agent, "herald_agent_new: %s", herald_agent_last_error ());
    return agent;
}

static herald_group_options_t
s_options (size_t batch_max, int session_ms)
{
    herald_group_options_t options;
    herald_group_options_init (&options);
    options.batch_max = batch_max;
    options.session_ms = session_ms;
    return options;
}

//  Wait until the members' group statuses say joined and that together
//  they hold every partition, each some; true when they did.
static bool
s_wait_shared (herald_agent_t **agents, size_t count, const char *group, int timeout_ms)
{
    uint64_t deadline = tu_mono_ns () + (uint64_t) timeout_ms * 1000000ULL;
    while (tu_mono_ns () < deadline) {
        unsigned owned = 0, partitions = 0;
        bool each = true;
        for (size_t index = 0; index < count; index++) {
            herald_group_status_t status;
            if (herald_agent_group_status (agents [index], group, &status) != HERALD_OK)
                return false;
            each &= status.joined && status.owned > 0;
            owned += status.owned;
            partitions = status.partitions;
        }
        if (each && partitions && owned == partitions)
            return true;
        usleep (20 * 1000);
    }
    return false;
}

//  Every seq of 1..count handled exactly once (none flagged), and each
//  topic's seqs increasing in the global order of handling.
static void
s_assert_once_in_order (uint64_t count)
{
    pthread_mutex_lock (&s_seen.lock);
    for (uint64_t seq = 1; seq <= count; seq++)
        cr_assert_eq (s_seen.seen [seq], 1, "seq %" PRIu64 " handled %u times", seq,
                      s_seen.seen [seq]);
    uint64_t last [TOPICS] = { 0 };
    for (size_t index = 0; index < s_seen.count; index++) {
        s_rec_t *rec = &s_seen.recs [index];
        cr_assert (!rec->redelivered, "seq %" PRIu64 " flagged redelivered", rec->seq);
        cr_assert (rec->topic >= 0 && rec->topic < TOPICS);
        cr_assert_gt (rec->seq, last [rec->topic], "t.%d: seq %" PRIu64 " after %" PRIu64,
                      rec->topic, rec->seq, last [rec->topic]);
        last [rec->topic] = rec->seq;
    }
    pthread_mutex_unlock (&s_seen.lock);
}

//  How many events member handled.
static size_t
s_count_of (int member)
{
    size_t count = 0;
    pthread_mutex_lock (&s_seen.lock);
    for (size_t index = 0; index < s_seen.count; index++)
        count += s_seen.recs [index].member == member;
    pthread_mutex_unlock (&s_seen.lock);
    return count;
}

//  ---------------------------------------------------------------------

Test (herald_groups_agent, no_state_dir_refuses_what_needs_one)
{
    s_seen_reset ();
    at_agent = s_agent_new (false);
    herald_start_t start = { HERALD_START_BEGINNING, 0 };
    cr_assert_eq (herald_agent_subscribe (at_agent, "local", NULL, start, s_handler, NULL),
                  HERALD_ERR_INVALID);
    cr_assert (strstr (herald_agent_last_error (), "use a group subscription"), "%s",
               herald_agent_last_error ());
    cr_assert_eq (herald_agent_snapshot_save (at_agent, "snap", 1, "x", 1), HERALD_ERR_INVALID);
    cr_assert (strstr (herald_agent_last_error (), "state_dir"), "%s",
               herald_agent_last_error ());
    uint64_t seq;
    void *bytes;
    size_t len;
    cr_assert_eq (herald_agent_snapshot_load (at_agent, "snap", &seq, &bytes, &len),
                  HERALD_ERR_INVALID);

    //  Publishing works, from memory
    herald_outgoing_t event = { .topic = "t.1", .data = "x", .data_len = 1 };
    herald_publish_result_t result;
    cr_assert_eq (herald_agent_publish (at_agent, &event, &result, 0), HERALD_OK, "%s",
                  herald_agent_last_error ());
    cr_assert_eq (result.seq, 1);

    //  Bad names and options: refused, nothing started
    herald_group_options_t options = s_options (0, 0);
    cr_assert_eq (herald_agent_subscribe_group (at_agent, ".hidden", &options, s_handler,
                                                NULL), HERALD_ERR_INVALID);
    cr_assert_eq (herald_agent_subscribe_group (at_agent, "a b", &options, s_handler, NULL),
                  HERALD_ERR_INVALID);
    cr_assert_eq (herald_agent_subscribe_group (at_agent, "g", &options, NULL, NULL),
                  HERALD_ERR_INVALID);
    options.partitions = 1025;
    cr_assert_eq (herald_agent_subscribe_group (at_agent, "g", &options, s_handler, NULL),
                  HERALD_ERR_INVALID);
    cr_assert (strstr (herald_agent_last_error (), "partitions"));
    options = s_options (257, 0);
    cr_assert_eq (herald_agent_subscribe_group (at_agent, "g", &options, s_handler, NULL),
                  HERALD_ERR_INVALID);
    cr_assert (strstr (herald_agent_last_error (), "batch_max"));
    options = s_options (0, 299);
    cr_assert_eq (herald_agent_subscribe_group (at_agent, "g", &options, s_handler, NULL),
                  HERALD_ERR_INVALID);
    cr_assert (strstr (herald_agent_last_error (), "session_ms"));
    options = s_options (0, 0);
    options.start.kind = (herald_start_kind_t) 9;
    cr_assert_eq (herald_agent_subscribe_group (at_agent, "g", &options, s_handler, NULL),
                  HERALD_ERR_INVALID);
    char bad [] = "t.\xff";
    const char *prefixes [] = { bad, NULL };
    options = s_options (0, 0);
    options.prefixes = prefixes;
    cr_assert_eq (herald_agent_subscribe_group (at_agent, "g", &options, s_handler, NULL),
                  HERALD_ERR_INVALID);
    herald_group_status_t status;
    cr_assert_eq (herald_agent_group_status (at_agent, "g", &status), HERALD_ERR_NOT_FOUND);
    herald_sub_status_t sub_status;
    cr_assert_eq (herald_agent_sub_status (at_agent, "g", &sub_status), HERALD_ERR_NOT_FOUND);

    //  A good one runs; a second of the same name is refused
    options = s_options (0, 0);
    cr_assert_eq (herald_agent_subscribe_group (at_agent, "g", &options, s_handler, NULL),
                  HERALD_OK, "%s", herald_agent_last_error ());
    cr_assert_eq (herald_agent_subscribe_group (at_agent, "g", &options, s_handler, NULL),
                  HERALD_ERR_INVALID);
    cr_assert_eq (s_wait_unique (1, WAIT_MS), 1);
    cr_assert_eq (herald_agent_group_status (at_agent, "g", &status), HERALD_OK);
    cr_assert_eq (herald_group_options_size (), sizeof (herald_group_options_t));
}

//  The proof's "a server-side subscription of a service restarted without
//  any state directory resumes where it left off".
Test (herald_groups_agent, resumes_after_restart_without_state_dir)
{
    s_seen_reset ();
    cr_assert_eq (au_publish (at_broker->api, "t.%zu", TOPICS, 400, WAIT_MS), 0);
    s_seen.sleep_us = 5000;             //  the first instance stops part way
    at_agent = s_agent_new (false);
    herald_group_options_t options = s_options (10, 0);
    cr_assert_eq (herald_agent_subscribe_group (at_agent, "billing", &options, s_handler,
                                                (void *) 1), HERALD_OK, "%s",
                  herald_agent_last_error ());
    cr_assert_geq (s_wait_unique (60, WAIT_MS), 60);
    herald_agent_destroy (&at_agent);   //  commits what was handled and leaves
    size_t first = s_count_of (1);
    cr_assert_lt (first, 400, "the first instance handled everything: nothing to resume");

    //  A fresh instance, no state directory either: only what is left
    s_seen.sleep_us = 0;
    at_agent = s_agent_new (false);
    cr_assert_eq (herald_agent_subscribe_group (at_agent, "billing", &options, s_handler,
                                                (void *) 2), HERALD_OK, "%s",
                  herald_agent_last_error ());
    cr_assert_eq (s_wait_unique (400, WAIT_MS), 400);
    s_assert_once_in_order (400);
    cr_assert_eq (s_count_of (2), 400 - first);

    //  Caught up: LIVE, the committed position at the head, no lag
    uint64_t deadline = tu_mono_ns () + (uint64_t) WAIT_MS * 1000000ULL;
    herald_sub_status_t status;
    do {
        cr_assert_eq (herald_agent_sub_status (at_agent, "billing", &status), HERALD_OK);
        if (status.state == HERALD_SUB_LIVE && status.delivered_seq == 400)
            break;
        usleep (20 * 1000);
    } while (tu_mono_ns () < deadline);
    cr_assert_eq (status.state, HERALD_SUB_LIVE);
    cr_assert_eq (status.delivered_seq, 400);
    cr_assert_eq (status.delivered, 400 - first);
    herald_group_status_t group;
    cr_assert_eq (herald_agent_group_status (at_agent, "billing", &group), HERALD_OK);
    cr_assert (group.joined);
    cr_assert_eq (group.partitions, 32);
    cr_assert_eq (group.owned, 32);
    cr_assert_eq (group.committed, 400);
    cr_assert_eq (group.lag, 0);
    cr_assert_eq (group.redelivered, 0);
}

Test (herald_groups_agent, two_members_share_the_work)
{
    s_seen_reset ();
    at_agent = s_agent_new (false);
    s_other = s_agent_new (false);
    herald_agent_t *other = s_other;
    herald_group_options_t options = s_options (20, 0);
    cr_assert_eq (herald_agent_subscribe_group (at_agent, "shared", &options, s_handler,
                                                (void *) 1), HERALD_OK);
    cr_assert_eq (herald_agent_subscribe_group (other, "shared", &options, s_handler,
                                                (void *) 2), HERALD_OK);
    herald_agent_t *agents [] = { at_agent, other };
    cr_assert (s_wait_shared (agents, 2, "shared", WAIT_MS), "the partitions were not shared");
    cr_assert_eq (au_publish (at_broker->api, "t.%zu", TOPICS, 1000, WAIT_MS), 0);
    cr_assert_eq (s_wait_unique (1000, WAIT_MS), 1000);
    s_assert_once_in_order (1000);
    cr_assert_gt (s_count_of (1), 0);
    cr_assert_gt (s_count_of (2), 0);
    //  A topic is one partition's, so at one member: never at both
    pthread_mutex_lock (&s_seen.lock);
    int owner [TOPICS] = { 0 };
    for (size_t index = 0; index < s_seen.count; index++) {
        s_rec_t *rec = &s_seen.recs [index];
        if (!owner [rec->topic])
            owner [rec->topic] = rec->member;
        cr_assert_eq (owner [rec->topic], rec->member, "t.%d at both members", rec->topic);
    }
    pthread_mutex_unlock (&s_seen.lock);
    herald_agent_stats_t stats;
    herald_agent_stats (at_agent, &stats);
    cr_assert_eq (stats.delivered, s_count_of (1));
    herald_agent_destroy (&s_other);
}

Test (herald_groups_agent, unsubscribe_hands_partitions_over)
{
    s_seen_reset ();
    at_agent = s_agent_new (false);
    s_other = s_agent_new (false);
    herald_agent_t *other = s_other;
    herald_group_options_t options = s_options (10, 0);
    cr_assert_eq (herald_agent_subscribe_group (at_agent, "handover", &options, s_handler,
                                                (void *) 1), HERALD_OK);
    cr_assert_eq (herald_agent_subscribe_group (other, "handover", &options, s_handler,
                                                (void *) 2), HERALD_OK);
    herald_agent_t *agents [] = { at_agent, other };
    cr_assert (s_wait_shared (agents, 2, "handover", WAIT_MS));
    s_seen.sleep_us = 1000;
    cr_assert_eq (au_publish (at_broker->api, "t.%zu", TOPICS, 600, WAIT_MS), 0);
    cr_assert_geq (s_wait_unique (150, WAIT_MS), 150);
    cr_assert_eq (herald_agent_unsubscribe (other, "handover"), HERALD_OK);
    size_t other_count = s_count_of (2);
    cr_assert_lt (other_count, 600);
    s_seen.sleep_us = 0;
    cr_assert_eq (s_wait_unique (600, WAIT_MS), 600);
    s_assert_once_in_order (600);           //  nothing twice, nothing flagged
    cr_assert_eq (s_count_of (2), other_count, "handled after its unsubscribe returned");
    herald_sub_status_t status;
    cr_assert_eq (herald_agent_sub_status (other, "handover", &status), HERALD_OK);
    cr_assert_eq (status.state, HERALD_SUB_STOPPED);
    uint64_t deadline = tu_mono_ns () + (uint64_t) WAIT_MS * 1000000ULL;
    herald_group_status_t group;
    do {
        cr_assert_eq (herald_agent_group_status (at_agent, "handover", &group), HERALD_OK);
        if (group.owned == 32 && group.committed == 600)
            break;
        usleep (20 * 1000);
    } while (tu_mono_ns () < deadline);
    cr_assert_eq (group.owned, 32);
    cr_assert_eq (group.committed, 600);
    herald_agent_destroy (&s_other);
}

//  Read group_child's log: seq, flag and topic of each line, in order.
static size_t
s_read_child_log (const char *path, uint64_t *seqs, int *topics, size_t max)
{
    FILE *file = fopen (path, "r");
    if (!file)
        return 0;
    size_t count = 0;
    uint64_t seq;
    int flag, topic;
    while (count < max && fscanf (file, "%" SCNu64 " %d t.%d", &seq, &flag, &topic) == 3) {
        seqs [count] = seq;
        topics [count] = topic;
        count++;
    }
    fclose (file);
    return count;
}

Test (herald_groups_agent, member_killed_mid_batch_leaves_that_batch_flagged)
{
    s_seen_reset ();
    cr_assert_eq (au_publish (at_broker->api, "t.%zu", TOPICS, 300, WAIT_MS), 0);
    char *child = tu_build_program ("tests/group_child");
    cr_assert_not_null (child);
    char log [4096], out [4096];
    snprintf (log, sizeof log, "%s/child.log", at_state);
    snprintf (out, sizeof out, "%s/child.out", at_state);
    //  Batches of 10 from seq 1: seq 137 is the 7th of the batch 131-140
    const char *args [] = { at_broker->api, at_broker->fanout, "crash", log, "137", "1000",
                            "10", "1000", NULL };
    pid_t pid = au_spawn (child, args, out);
    free (child);
    cr_assert_gt (pid, 0);
    int status = 0;
    int waited = au_child_wait (pid, WAIT_MS, &status);
    if (waited != 0) {
        kill (pid, SIGKILL);            //  every process a test starts, it stops
        au_child_wait (pid, WAIT_MS, &status);
    }
    cr_assert_eq (waited, 0, "the child did not reach seq 137");
    cr_assert (WIFSIGNALED (status) && WTERMSIG (status) == SIGKILL, "status %d", status);
    static uint64_t child_seqs [MAX_SEQ];
    static int child_topics [MAX_SEQ];
    size_t child_count = s_read_child_log (log, child_seqs, child_topics, MAX_SEQ);
    cr_assert_eq (child_count, 137, "the child handled %zu", child_count);
    for (size_t index = 0; index < child_count; index++)
        cr_assert_eq (child_seqs [index], index + 1);

    //  The next owner: the killed batch again, flagged, then the rest.  The
    //  batch is what the child declared last: seqs first..last around 137,
    //  at most 10 of them (a batch is what the fetch had buffered)
    at_agent = s_agent_new (false);
    herald_group_options_t options = s_options (10, 0);
    cr_assert_eq (herald_agent_subscribe_group (at_agent, "crash", &options, s_handler,
                                                (void *) 1), HERALD_OK);
    uint64_t deadline = tu_mono_ns () + (uint64_t) WAIT_MS * 1000000ULL;
    while (tu_mono_ns () < deadline) {
        pthread_mutex_lock (&s_seen.lock);
        bool all = s_seen.seen [300] > 0;
        pthread_mutex_unlock (&s_seen.lock);
        if (all)
            break;
        usleep (10 * 1000);
    }
    pthread_mutex_lock (&s_seen.lock);
    cr_assert (s_seen.count > 0 && s_seen.seen [300], "the next owner did not catch up");
    uint64_t first = s_seen.recs [0].seq, last = first;
    for (size_t index = 0; index < s_seen.count && s_seen.recs [index].redelivered; index++)
        last = s_seen.recs [index].seq;
    cr_assert (s_seen.recs [0].redelivered, "the first event (%" PRIu64 ") is not flagged",
               first);
    cr_assert (first <= 137 && 137 <= last && last - first < 10,
               "flagged %" PRIu64 "-%" PRIu64 ": not the batch of seq 137", first, last);
    //  Every seq from the batch's first on exactly once, in order, flagged
    //  only inside the batch; nothing before the batch again
    for (uint64_t seq = 1; seq <= 300; seq++)
        cr_assert_eq (s_seen.seen [seq], seq < first? 0: 1, "seq %" PRIu64 " handled %u "
                      "times", seq, s_seen.seen [seq]);
    for (size_t index = 0; index < s_seen.count; index++) {
        s_rec_t *rec = &s_seen.recs [index];
        cr_assert_eq (rec->seq, first + index);
        cr_assert_eq (rec->redelivered, rec->seq <= last, "seq %" PRIu64 " flagged %d",
                      rec->seq, rec->redelivered);
    }
    pthread_mutex_unlock (&s_seen.lock);
    herald_group_status_t group;
    cr_assert_eq (herald_agent_group_status (at_agent, "crash", &group), HERALD_OK);
    cr_assert_eq (group.redelivered, last - first + 1);
}

Test (herald_groups_agent, retry_then_a_failing_handler)
{
    s_seen_reset ();
    cr_assert_eq (au_publish (at_broker->api, "t.%zu", TOPICS, 100, WAIT_MS), 0);
    s_seen.retry_seq = 20;
    s_seen.retry_times = 3;
    s_seen.fail_seq = 55;
    s_seen.fail_code = 42;
    at_agent = s_agent_new (false);
    herald_group_options_t options = s_options (10, 0);
    cr_assert_eq (herald_agent_subscribe_group (at_agent, "fails", &options, s_handler,
                                                (void *) 1), HERALD_OK);
    uint64_t deadline = tu_mono_ns () + (uint64_t) WAIT_MS * 1000000ULL;
    herald_sub_status_t status;
    do {
        cr_assert_eq (herald_agent_sub_status (at_agent, "fails", &status), HERALD_OK);
        if (status.state == HERALD_SUB_FAILED && atomic_load (&s_seen.errors))
            break;
        usleep (20 * 1000);
    } while (tu_mono_ns () < deadline);
    cr_assert_eq (status.state, HERALD_SUB_FAILED);
    cr_assert_eq (status.error, 42);
    cr_assert (strstr (status.message, "seq 55"), "%s", status.message);
    cr_assert_eq (status.retries, 3);
    cr_assert_eq (atomic_load (&s_seen.errors), 1);
    cr_assert_eq (s_seen.error_code, 42);
    pthread_mutex_lock (&s_seen.lock);
    cr_assert_eq (s_seen.count, 54);
    for (size_t index = 0; index < s_seen.count; index++) {
        cr_assert_eq (s_seen.recs [index].seq, index + 1);
        cr_assert_eq (s_seen.recs [index].attempt, index + 1 == 20? 4u: 1u);
    }
    pthread_mutex_unlock (&s_seen.lock);

    //  The failed member left, having committed what was handled: another
    //  takes over at once, from the event that failed (not flagged: it
    //  was not handled)
    s_seen.fail_code = 0;
    s_other = s_agent_new (false);
    herald_agent_t *other = s_other;
    cr_assert_eq (herald_agent_subscribe_group (other, "fails", &options, s_handler,
                                                (void *) 2), HERALD_OK);
    cr_assert_eq (s_wait_unique (100, WAIT_MS), 100);
    s_assert_once_in_order (100);
    cr_assert_eq (s_count_of (2), 100 - 54);
    herald_agent_destroy (&s_other);
}

//  Dispatch mode (Python's AsyncAgent): the group's handler runs on the
//  thread that calls herald_agent_dispatch.
Test (herald_groups_agent, dispatch_mode)
{
    s_seen_reset ();
    cr_assert_eq (au_publish (at_broker->api, "t.%zu", TOPICS, 300, WAIT_MS), 0);
    at_agent = s_agent_new (true);
    herald_group_options_t options = s_options (25, 0);
    cr_assert_eq (herald_agent_subscribe_group (at_agent, "dispatched", &options, s_handler,
                                                (void *) 1), HERALD_OK);
    uint64_t deadline = tu_mono_ns () + (uint64_t) WAIT_MS * 1000000ULL;
    while (s_wait_unique (300, 0) < 300 && tu_mono_ns () < deadline) {
        struct pollfd item = { herald_agent_fd (at_agent), POLLIN, 0 };
        poll (&item, 1, 50);
        cr_assert_geq (herald_agent_dispatch (at_agent, 100), 0);
    }
    cr_assert_eq (s_wait_unique (300, 0), 300);
    s_assert_once_in_order (300);
    //  Unsubscribe with a call posted and not dispatched: abandoned, and
    //  the member commits what was handled and leaves
    cr_assert_eq (herald_agent_unsubscribe (at_agent, "dispatched"), HERALD_OK);
}

//  A member the broker refuses (its prefixes differ from the group's):
//  the member thread fails the subscription, on_error hears it once, and
//  the group's other member goes on alone.
Test (herald_groups_agent, a_member_refused_by_the_broker_fails_with_on_error)
{
    s_seen_reset ();
    at_agent = s_agent_new (false);
    const char *orders [] = { "t.", NULL };
    const char *other_prefixes [] = { "u.", NULL };
    herald_group_options_t options = s_options (10, 0);
    options.prefixes = orders;
    cr_assert_eq (herald_agent_subscribe_group (at_agent, "prefixed", &options, s_handler,
                                                (void *) 1), HERALD_OK);
    herald_agent_t *agents [] = { at_agent };
    cr_assert (s_wait_shared (agents, 1, "prefixed", WAIT_MS));
    s_other = s_agent_new (false);
    options.prefixes = other_prefixes;
    cr_assert_eq (herald_agent_subscribe_group (s_other, "prefixed", &options, s_handler,
                                                (void *) 2), HERALD_OK);
    uint64_t deadline = tu_mono_ns () + (uint64_t) WAIT_MS * 1000000ULL;
    herald_sub_status_t status;
    do {
        cr_assert_eq (herald_agent_sub_status (s_other, "prefixed", &status), HERALD_OK);
        if (status.state == HERALD_SUB_FAILED && atomic_load (&s_seen.errors))
            break;
        usleep (20 * 1000);
    } while (tu_mono_ns () < deadline);
    cr_assert_eq (status.state, HERALD_SUB_FAILED);
    cr_assert_eq (status.error, HERALD_ERR_BAD_REQUEST, "%d: %s", status.error, status.message);
    cr_assert_eq (atomic_load (&s_seen.errors), 1);
    cr_assert_eq (s_seen.error_code, HERALD_ERR_BAD_REQUEST);
    cr_assert_eq (au_publish (at_broker->api, "t.%zu", TOPICS, 100, WAIT_MS), 0);
    cr_assert_eq (s_wait_unique (100, WAIT_MS), 100);
    s_assert_once_in_order (100);
    cr_assert_eq (s_count_of (2), 0);
    cr_assert_eq (herald_agent_unsubscribe (s_other, "prefixed"), HERALD_OK);
    herald_agent_destroy (&s_other);
}

//  Unsubscribe from the group's own handler: that call finishes, no other
//  comes, and the member commits it and leaves (after the call).
static herald_agent_t *s_self_agent;
static atomic_int s_self_calls;

static int
s_unsubscribing_handler (const herald_delivery_t *event, void *arg)
{
    if (atomic_fetch_add (&s_self_calls, 1) == 0) {
        herald_err rc = herald_agent_unsubscribe (s_self_agent, "selfstop");
        if (rc != HERALD_OK)
            return 77;
    }
    return s_handler (event, arg);
}

Test (herald_groups_agent, unsubscribe_from_its_own_handler)
{
    s_seen_reset ();
    atomic_store (&s_self_calls, 0);
    cr_assert_eq (au_publish (at_broker->api, "t.%zu", TOPICS, 50, WAIT_MS), 0);
    at_agent = s_self_agent = s_agent_new (false);
    herald_group_options_t options = s_options (10, 0);
    cr_assert_eq (herald_agent_subscribe_group (at_agent, "selfstop", &options,
                                                s_unsubscribing_handler, (void *) 1),
                  HERALD_OK);
    //  Its member leaves: another member of the group gets everything after
    //  the first event, which was committed
    s_other = s_agent_new (false);
    uint64_t deadline = tu_mono_ns () + (uint64_t) WAIT_MS * 1000000ULL;
    herald_sub_status_t status;
    do {
        cr_assert_eq (herald_agent_sub_status (at_agent, "selfstop", &status), HERALD_OK);
        if (status.state == HERALD_SUB_STOPPED)
            break;
        usleep (20 * 1000);
    } while (tu_mono_ns () < deadline);
    cr_assert_eq (status.state, HERALD_SUB_STOPPED);
    cr_assert_eq (herald_agent_subscribe_group (s_other, "selfstop", &options, s_handler,
                                                (void *) 2), HERALD_OK);
    cr_assert_eq (s_wait_unique (50, WAIT_MS), 50);
    s_assert_once_in_order (50);
    cr_assert_eq (s_count_of (1), 1);
    cr_assert_eq (atomic_load (&s_self_calls), 1);
    herald_agent_destroy (&s_other);
}

//  herald_agent_stats's lag counts a group member's (head - committed).
Test (herald_groups_agent, stats_lag_counts_the_members)
{
    s_seen_reset ();
    cr_assert_eq (au_publish (at_broker->api, "t.%zu", TOPICS, 300, WAIT_MS), 0);
    s_seen.sleep_us = 3000;
    at_agent = s_agent_new (false);
    herald_group_options_t options = s_options (10, 0);
    cr_assert_eq (herald_agent_subscribe_group (at_agent, "lagging", &options, s_handler,
                                                (void *) 1), HERALD_OK);
    uint64_t deadline = tu_mono_ns () + (uint64_t) WAIT_MS * 1000000ULL;
    herald_agent_stats_t stats;
    herald_group_status_t group;
    bool lagged = false;
    do {
        herald_agent_stats (at_agent, &stats);
        cr_assert_eq (herald_agent_group_status (at_agent, "lagging", &group), HERALD_OK);
        if (stats.lag > 0 && group.lag > 0)
            lagged = true;
        usleep (5 * 1000);
    } while (!lagged && s_wait_unique (300, 0) < 300 && tu_mono_ns () < deadline);
    cr_assert (lagged, "no lag was seen while 300 events took 900 ms to handle");
    s_seen.sleep_us = 0;
    cr_assert_eq (s_wait_unique (300, WAIT_MS), 300);
    do {
        herald_agent_stats (at_agent, &stats);
        if (stats.lag == 0)
            break;
        usleep (20 * 1000);
    } while (tu_mono_ns () < deadline);
    cr_assert_eq (stats.lag, 0);
    cr_assert_eq (stats.delivered, 300);
}

//  Unsubscribe a group from another subscription's handler: the idle
//  group's member leaves at once (the delivery thread destroys it after
//  the call), so a new member gets every partition.
static int
s_stopping_other_handler (const herald_delivery_t *event, void *arg)
{
    if (atomic_fetch_add (&s_self_calls, 1) == 0
    &&  herald_agent_unsubscribe (s_self_agent, "idle") != HERALD_OK)
        return 77;
    return s_handler (event, arg);
}

Test (herald_groups_agent, unsubscribe_another_group_from_a_handler)
{
    s_seen_reset ();
    atomic_store (&s_self_calls, 0);
    at_agent = s_self_agent = s_agent_new (false);
    const char *idle_prefixes [] = { "u.", NULL };
    herald_group_options_t idle = s_options (10, 0);
    idle.prefixes = idle_prefixes;
    cr_assert_eq (herald_agent_subscribe_group (at_agent, "idle", &idle, s_handler,
                                                (void *) 1), HERALD_OK);
    herald_agent_t *agents [] = { at_agent };
    cr_assert (s_wait_shared (agents, 1, "idle", WAIT_MS));
    herald_group_options_t trigger = s_options (10, 0);
    cr_assert_eq (herald_agent_subscribe_group (at_agent, "trigger", &trigger,
                                                s_stopping_other_handler, (void *) 1),
                  HERALD_OK);
    cr_assert_eq (au_publish (at_broker->api, "t.%zu", TOPICS, 5, WAIT_MS), 0);
    cr_assert_eq (s_wait_unique (5, WAIT_MS), 5);
    herald_sub_status_t status;
    cr_assert_eq (herald_agent_sub_status (at_agent, "idle", &status), HERALD_OK);
    cr_assert_eq (status.state, HERALD_SUB_STOPPED);
    s_other = s_agent_new (false);
    cr_assert_eq (herald_agent_subscribe_group (s_other, "idle", &idle, s_handler,
                                                (void *) 2), HERALD_OK);
    agents [0] = s_other;
    cr_assert (s_wait_shared (agents, 1, "idle", WAIT_MS),
               "the stopped member still holds partitions");
    herald_agent_destroy (&s_other);
}
