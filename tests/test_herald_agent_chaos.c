/*  =========================================================================
    test_herald_agent_chaos - exactly once, in order, whatever crashes

    While an agent in this process publishes 100,000 events (through its
    outbox, across 60 topics), the broker is kill -9ed and restarted, a
    subscribing agent in another process (tests/agent_child, SUB high-water
    mark 50) is kill -9ed and restarted and paused with SIGSTOP.  Then:
      - the log holds exactly the 100,000 events, each id once (nothing
        published was lost or stored twice);
      - the subscriber's handler saw every matching event, in seq order,
        once — or twice when the second time is flagged `redelivered` (the
        one event in doubt when its process was killed inside a handler).
    Bounded: every wait has a deadline; .fini kills what is left.
    =========================================================================
*/

#include <criterion/criterion.h>
#include <inttypes.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "agentutil.h"
#include "testutil.h"

#define START_MS        10000
#define EVENTS          100000
#define CHUNK           1000

static bu_broker_t *s_broker;
static char *s_state;
static char *s_child_state;
static herald_agent_t *s_agent;
static pid_t s_child;
static char *s_log;
static char *s_out;

static void
s_child_kill (void)
{
    if (s_child > 0) {
        int status;
        kill (s_child, SIGCONT);
        kill (s_child, SIGKILL);
        waitpid (s_child, &status, 0);
        s_child = 0;
    }
}

static void
s_setup (void)
{
    zsys_handler_set (NULL);
    s_child = 0;
    const char *extra [] = { "--durability", "async", NULL };
    s_broker = bu_broker_new ("agent-chaos", extra);
    cr_assert_not_null (s_broker);
    cr_assert_eq (bu_broker_start (s_broker, START_MS), 0, "heraldd did not start");
    s_state = tu_tmpdir_new ("agent-chaos-pub");
    s_child_state = tu_tmpdir_new ("agent-chaos-sub");
    cr_assert (s_state && s_child_state);
    s_log = tu_path (s_state, "handled.log");
    s_out = tu_path (s_state, "child.out");
}

static void
s_teardown (void)
{
    s_child_kill ();
    herald_agent_destroy (&s_agent);
    free (s_log);
    free (s_out);
    tu_tmpdir_destroy (&s_state);
    tu_tmpdir_destroy (&s_child_state);
    bu_broker_destroy (&s_broker);
}

TestSuite (herald_agent_chaos, .init = s_setup, .fini = s_teardown, .timeout = 240);

static void
s_child_start (void)
{
    const char *args [] = { "subscribe", s_child_state, s_broker->api, s_broker->fanout, "chaos",
                            "c.", s_log, "0", "50", NULL };
    s_child = au_child_spawn (args, s_out);
    cr_assert_gt (s_child, 0);
}

typedef struct {
    herald_agent_t *agent;
    atomic_int published;
    int rc;
} s_publisher_t;

static void *
s_publisher (void *arg)
{
    s_publisher_t *self = (s_publisher_t *) arg;
    for (int index = 0; index < EVENTS && self->rc == 0; index++) {
        char topic [32], data [32];
        //  50 matching topics c.N, 10 others z.N
        if (index % 6 == 5)
            snprintf (topic, sizeof topic, "z.%d", index % 10);
        else
            snprintf (topic, sizeof topic, "c.%d", index % 50);
        snprintf (data, sizeof data, "%d", index);
        herald_outgoing_t event = { .topic = topic, .data = data, .data_len = strlen (data) };
        self->rc = herald_agent_publish_async (self->agent, &event, NULL, NULL, NULL);
        atomic_fetch_add (&self->published, 1);
        if (index % CHUNK == CHUNK - 1)
            usleep (60000);         //  spread the load over the chaos
    }
    return NULL;
}

//  The seqs the handler logged, in order, with their redelivered flags.
static size_t
s_read_log (uint64_t **seqs_p, int **flags_p)
{
    FILE *file = fopen (s_log, "r");
    size_t count = 0, size = 1024;
    uint64_t *seqs = malloc (size * sizeof *seqs);
    int *flags = malloc (size * sizeof *flags);
    char id [64];
    uint64_t seq;
    int flag;
    while (file && fscanf (file, "%" SCNu64 " %63s %d", &seq, id, &flag) == 3) {
        if (count == size) {
            size *= 2;
            seqs = realloc (seqs, size * sizeof *seqs);
            flags = realloc (flags, size * sizeof *flags);
        }
        seqs [count] = seq;
        flags [count++] = flag;
    }
    if (file)
        fclose (file);
    *seqs_p = seqs;
    *flags_p = flags;
    return count;
}

Test (herald_agent_chaos, kill_restart_and_pause_everything_and_nothing_is_lost_or_repeated)
{
    herald_agent_options_t options;
    au_options (&options, s_broker, s_state);
    s_agent = herald_agent_new ("chaos-publisher", &options);
    cr_assert_not_null (s_agent, "%s", herald_agent_last_error ());
    s_child_start ();
    s_publisher_t publisher = { .agent = s_agent };
    pthread_t thread;
    cr_assert_eq (pthread_create (&thread, NULL, s_publisher, &publisher), 0);

    //  The chaos, in rounds while the publisher runs
    int broker_kills = 0, agent_kills = 0, pauses = 0;
    uint64_t rng = tu_mono_ns ();
    for (int round = 0; atomic_load (&publisher.published) < EVENTS && round < 200; round++) {
        usleep (400000 + (useconds_t) (tu_rand (&rng) % 300000));
        switch (round % 4) {
            case 0:
                bu_broker_kill (s_broker);
                cr_assert_eq (bu_broker_restart (s_broker, START_MS), 0, "heraldd did not restart");
                broker_kills++;
                break;
            case 1:
                s_child_kill ();
                s_child_start ();
                agent_kills++;
                break;
            case 2:
                kill (s_child, SIGSTOP);
                usleep (500000);
                kill (s_child, SIGCONT);
                pauses++;
                break;
            default:
                break;
        }
    }
    pthread_join (thread, NULL);
    cr_assert_eq (publisher.rc, HERALD_OK, "publishing failed: %s", herald_agent_last_error ());
    cr_assert_eq (herald_agent_flush (s_agent, 60000), HERALD_OK, "the outbox did not drain");
    cr_log_info ("broker kills %d, agent kills %d, pauses %d", broker_kills, agent_kills, pauses);
    cr_assert_geq (broker_kills, 2, "too few broker kills (%d) to mean anything", broker_kills);
    cr_assert_geq (agent_kills, 2);

    //  Everything published is stored, once
    au_recorder_t *all = au_recorder_new ();
    herald_range_t range = { 0 };
    cr_assert_eq (herald_agent_replay (s_agent, &range, au_record, all, 30000, NULL), HERALD_OK,
                  "%s", herald_agent_last_error ());
    cr_assert_eq (all->count, EVENTS, "%zu events stored, %d published", all->count, EVENTS);
    char message [256];
    cr_assert_eq (au_check_once_in_order (all, message, sizeof message), 0, "%s", message);
    au_recorder_destroy (&all);

    //  The matching seqs, from the broker
    au_recorder_t *matching = au_recorder_new ();
    const char *prefixes [] = { "c.", NULL };
    herald_range_t c_range = { .prefixes = prefixes };
    cr_assert_eq (herald_agent_replay (s_agent, &c_range, au_record, matching, 30000, NULL),
                  HERALD_OK);
    size_t expected = matching->count;
    cr_assert_gt (expected, 0);
    uint64_t last = matching->seqs [expected - 1];

    //  Wait for the subscriber to handle the last one, then stop it
    uint64_t deadline = tu_mono_ns () + 60000 * 1000000ULL;
    uint64_t *seqs = NULL;
    int *flags = NULL;
    size_t count = 0;
    while (tu_mono_ns () < deadline) {
        free (seqs);
        free (flags);
        count = s_read_log (&seqs, &flags);
        if (count && seqs [count - 1] >= last)
            break;
        usleep (50000);
    }
    kill (s_child, SIGTERM);
    int status = 0;
    cr_assert_eq (au_child_wait (s_child, 10000, &status), 0);
    s_child = 0;
    free (seqs);
    free (flags);
    count = s_read_log (&seqs, &flags);

    //  Once, in order; a repeat only as the flagged redelivery of the last one
    size_t unique = 0, redelivered = 0;
    uint64_t previous = 0;
    for (size_t index = 0; index < count; index++) {
        if (seqs [index] == previous && index > 0) {
            cr_assert (flags [index], "seq %" PRIu64 " handled twice without the flag",
                       seqs [index]);
            redelivered++;
            continue;
        }
        cr_assert_gt (seqs [index], previous, "seq %" PRIu64 " after %" PRIu64, seqs [index],
                      previous);
        cr_assert_lt (unique, expected, "more events handled than match");
        cr_assert_eq (seqs [index], matching->seqs [unique], "handled seq %" PRIu64
                      ", expected %" PRIu64, seqs [index], matching->seqs [unique]);
        unique++;
        previous = seqs [index];
    }
    cr_assert_eq (unique, expected, "%zu of %zu matching events handled", unique, expected);
    cr_log_info ("%zu events handled once, %zu redelivered flagged", unique, redelivered);
    free (seqs);
    free (flags);
    au_recorder_destroy (&matching);
}
