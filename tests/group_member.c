/*  =========================================================================
    group_member - one member of a consumer group in a process of its own

    A plain program (no criterion, whose runner state it would inherit),
    for the group tests and bench/group_bench to start, kill -9, restart
    and stop:

      group_member API GROUP PREFIXES LOG COST_US BATCH_MAX [options]

        API         the broker's api endpoint(s), comma-separated for a cluster
        GROUP       the group's name
        PREFIXES    comma-separated topic prefixes; "-" for every topic
        LOG         the file to append one line to at each handler START
                    and END; "-" for none (the bench's throughput runs)
        COST_US     what the handler costs per event, in microseconds:
                    slept (an I/O-bound handler; timer slack set to 1 us
                    so the sleep is close to it) unless --spin
        BATCH_MAX   herald_group_options_t.batch_max (0: the default)

      options: --spin (burn COST_US of CPU: a CPU-bound handler),
               --partitions N, --session-ms N (a new group's),
               --from SEQ (a new group's first seq; default 1)

    The agent has no state directory: the group's positions are the
    broker's.  Each line is written with one write() on an O_APPEND file,
    so a kill -9 leaves only whole lines:

      S <mono_ns> <pid> <seq> <topic> <partition> <redelivered>
      E <mono_ns> <pid> <seq> <topic> <partition> <redelivered>

    mono_ns is CLOCK_MONOTONIC, which every process of the machine shares,
    so the lines of several members (and the test's own kill times) can be
    put on one time line.  partition is fnv1a32(topic) mod partitions,
    computed here as docs/protocol.md gives it (the agent's own function is
    not public).

    SIGTERM or SIGINT: unsubscribe (which leaves the group: what was handled
    is committed, the partitions go to the others at once), destroy the
    agent, print the member's figures to stdout and exit 0.  Exit 1 when
    the agent or the subscription could not be made, 2 on usage errors,
    3 when the subscription failed while running.
    =========================================================================
*/

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <time.h>
#include <unistd.h>
#include "herald.h"

#define MAX_PREFIXES    16

static volatile sig_atomic_t s_stop;
static int s_log = -1;
static unsigned s_cost_us;
static bool s_spin;
static unsigned s_partitions = 32;
static pid_t s_pid;

static void
s_on_term (int signum)
{
    (void) signum;
    s_stop = 1;
}

static uint64_t
s_mono_ns (void)
{
    struct timespec now;
    clock_gettime (CLOCK_MONOTONIC, &now);
    return (uint64_t) now.tv_sec * 1000000000ULL + (uint64_t) now.tv_nsec;
}

//  docs/protocol.md, "Consumer groups"
static uint32_t
s_fnv1a32 (const char *bytes, size_t len)
{
    uint32_t hash = 2166136261u;
    for (size_t index = 0; index < len; index++) {
        hash ^= (uint8_t) bytes [index];
        hash *= 16777619u;
    }
    return hash;
}

//  One line, one write(): a kill -9 between two writes leaves whole lines.
static int
s_log_line (char kind, const herald_delivery_t *event, uint32_t partition)
{
    if (s_log < 0)
        return 0;
    char line [512];
    int topic_len = event->topic_len > 255? 255: (int) event->topic_len;
    int len = snprintf (line, sizeof line, "%c %" PRIu64 " %d %" PRIu64 " %.*s %u %d\n",
                        kind, s_mono_ns (), (int) s_pid, event->seq, topic_len,
                        event->topic, partition, event->redelivered? 1: 0);
    if (len <= 0 || (size_t) len >= sizeof line)
        return -1;
    return write (s_log, line, (size_t) len) == len? 0: -1;
}

static void
s_work (void)
{
    if (s_cost_us == 0)
        return;
    if (s_spin) {
        uint64_t until = s_mono_ns () + (uint64_t) s_cost_us * 1000ULL;
        volatile uint64_t sink = 0;
        while (s_mono_ns () < until)
            for (int index = 0; index < 64; index++)
                sink += (uint64_t) index;
    }
    else {
        struct timespec pause = { s_cost_us / 1000000u, (long) (s_cost_us % 1000000u) * 1000L };
        while (nanosleep (&pause, &pause) == -1 && errno == EINTR)
            ;
    }
}

static int
s_handler (const herald_delivery_t *event, void *arg)
{
    (void) arg;
    uint32_t partition = s_fnv1a32 (event->topic, event->topic_len) % s_partitions;
    if (s_log_line ('S', event, partition))
        return 99;
    s_work ();
    if (s_log_line ('E', event, partition))
        return 99;
    return HERALD_OK;
}

static void
s_on_error (const char *subscription, int code, const char *message, void *arg)
{
    (void) arg;
    fprintf (stderr, "group_member %d: %s: error %d: %s\n", (int) s_pid,
             subscription? subscription: "-", code, message? message: "");
}

static int
s_usage (void)
{
    fprintf (stderr, "usage: group_member API GROUP PREFIXES LOG COST_US BATCH_MAX "
             "[--spin] [--partitions N] [--session-ms N] [--from SEQ]\n");
    return 2;
}

int
main (int argc, char *argv [])
{
    if (argc < 7)
        return s_usage ();
    const char *api = argv [1];
    const char *group = argv [2];
    char *prefix_text = strdup (argv [3]);
    const char *log_path = argv [4];
    s_cost_us = (unsigned) strtoul (argv [5], NULL, 10);
    herald_group_options_t options;
    herald_group_options_init (&options);
    options.batch_max = (size_t) strtoul (argv [6], NULL, 10);
    for (int index = 7; index < argc; index++) {
        if (strcmp (argv [index], "--spin") == 0)
            s_spin = true;
        else
        if (strcmp (argv [index], "--partitions") == 0 && index + 1 < argc)
            options.partitions = (unsigned) strtoul (argv [++index], NULL, 10);
        else
        if (strcmp (argv [index], "--session-ms") == 0 && index + 1 < argc)
            options.session_ms = atoi (argv [++index]);
        else
        if (strcmp (argv [index], "--from") == 0 && index + 1 < argc) {
            options.start.kind = HERALD_START_SEQ;
            options.start.value = strtoull (argv [++index], NULL, 10);
        }
        else
            return s_usage ();
    }
    if (options.partitions)
        s_partitions = options.partitions;
    s_pid = getpid ();

    //  The prefixes, split in place
    const char *prefixes [MAX_PREFIXES + 1] = { NULL };
    if (strcmp (prefix_text, "-") != 0) {
        size_t count = 0;
        char *save = NULL;
        for (char *item = strtok_r (prefix_text, ",", &save); item && count < MAX_PREFIXES;
             item = strtok_r (NULL, ",", &save))
            prefixes [count++] = item;
        options.prefixes = prefixes;
    }
    if (strcmp (log_path, "-") != 0) {
        s_log = open (log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
        if (s_log < 0) {
            fprintf (stderr, "group_member: %s: %s\n", log_path, strerror (errno));
            return 1;
        }
    }
    struct sigaction action;
    memset (&action, 0, sizeof action);
    action.sa_handler = s_on_term;
    sigemptyset (&action.sa_mask);
    sigaction (SIGTERM, &action, NULL);
    sigaction (SIGINT, &action, NULL);

    //  A sleep of COST_US, not COST_US + the default 50 us of timer slack
    //  (the agent's threads, the handler's among them, inherit it)
    prctl (PR_SET_TIMERSLACK, 1000UL, 0, 0, 0);
    herald_agent_options_t agent_options;
    herald_agent_options_init (&agent_options);
    agent_options.api = api;
    agent_options.state_dir = NULL;
    agent_options.timeout_ms = 10000;
    agent_options.on_error = s_on_error;
    herald_agent_t *agent = herald_agent_new ("group_member", &agent_options);
    if (!agent) {
        fprintf (stderr, "group_member: herald_agent_new: %s\n", herald_agent_last_error ());
        return 1;
    }
    herald_err rc = herald_agent_subscribe_group (agent, group, &options, s_handler, NULL);
    if (rc != HERALD_OK) {
        fprintf (stderr, "group_member: subscribe_group: %s\n", herald_agent_last_error ());
        herald_agent_destroy (&agent);
        return 1;
    }
    int exit_code = 0;
    while (!s_stop) {
        struct timespec pause = { 0, 10 * 1000000L };
        nanosleep (&pause, NULL);
        herald_sub_status_t status;
        if (herald_agent_sub_status (agent, group, &status) == HERALD_OK
        &&  status.state == HERALD_SUB_FAILED) {
            fprintf (stderr, "group_member %d: subscription failed: %d %s\n", (int) s_pid,
                     status.error, status.message);
            exit_code = 3;
            break;
        }
    }
    herald_group_status_t figures;
    memset (&figures, 0, sizeof figures);
    herald_agent_group_status (agent, group, &figures);
    rc = herald_agent_unsubscribe (agent, group);
    if (rc != HERALD_OK && exit_code == 0) {
        fprintf (stderr, "group_member %d: unsubscribe: %s\n", (int) s_pid,
                 herald_agent_last_error ());
        exit_code = 1;
    }
    herald_agent_destroy (&agent);
    printf ("group_member %d: member %s generation %" PRIu64 " owned %u commits %" PRIu64
            " redelivered %" PRIu64 " rebalances %" PRIu64 " fenced %" PRIu64 "\n",
            (int) s_pid, figures.member, figures.generation, figures.owned, figures.commits,
            figures.redelivered, figures.rebalances, figures.fenced);
    if (s_log >= 0)
        close (s_log);
    free (prefix_text);
    return exit_code;
}
