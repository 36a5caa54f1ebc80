/*  =========================================================================
    group_child - a group member in a process of its own, for tests to kill -9

    A plain program (no criterion, whose runner state it would inherit):

      group_child API FANOUT GROUP LOG KILL_AT SESSION_MS BATCH_MAX SLEEP_US
          join GROUP (every topic, from the beginning, a new group's
          session SESSION_MS and every member's batch BATCH_MAX) with an
          agent that has no state directory; the handler sleeps SLEEP_US,
          appends "seq redelivered topic" to LOG for each event, and when
          seq is KILL_AT (0: never) kills the process with SIGKILL right
          after writing its line: a crash inside a handler, in the middle
          of a batch.  Runs until SIGTERM, then destroys the agent (its
          member commits and leaves).
    =========================================================================
*/

#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "herald.h"

static volatile sig_atomic_t s_stop;
static int s_log = -1;
static uint64_t s_kill_at;
static useconds_t s_sleep_us;

static void
s_on_term (int signum)
{
    (void) signum;
    s_stop = 1;
}

static int
s_handler (const herald_delivery_t *event, void *arg)
{
    (void) arg;
    if (s_sleep_us)
        usleep (s_sleep_us);
    char line [320];
    int len = snprintf (line, sizeof line, "%" PRIu64 " %d %.*s\n", event->seq,
                        event->redelivered? 1: 0, (int) event->topic_len, event->topic);
    if (write (s_log, line, (size_t) len) != len)
        return 99;
    if (s_kill_at && event->seq == s_kill_at)
        raise (SIGKILL);
    return HERALD_OK;
}

int
main (int argc, char *argv [])
{
    if (argc != 9) {
        fprintf (stderr, "usage: group_child API FANOUT GROUP LOG KILL_AT SESSION_MS "
                 "BATCH_MAX SLEEP_US\n");
        return 2;
    }
    herald_agent_options_t options;
    herald_agent_options_init (&options);
    options.api = argv [1];
    options.fanout = argv [2];
    options.state_dir = NULL;
    s_log = open (argv [4], O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    s_kill_at = strtoull (argv [5], NULL, 10);
    s_sleep_us = (useconds_t) strtoul (argv [8], NULL, 10);
    signal (SIGTERM, s_on_term);
    herald_agent_t *agent = herald_agent_new ("group_child", &options);
    if (!agent || s_log < 0) {
        fprintf (stderr, "group_child: %s\n", herald_agent_last_error ());
        return 1;
    }
    herald_group_options_t group;
    herald_group_options_init (&group);
    group.session_ms = atoi (argv [6]);
    group.batch_max = strtoul (argv [7], NULL, 10);
    if (herald_agent_subscribe_group (agent, argv [3], &group, s_handler, NULL) != HERALD_OK) {
        fprintf (stderr, "group_child: %s\n", herald_agent_last_error ());
        herald_agent_destroy (&agent);
        return 1;
    }
    printf ("joining\n");
    fflush (stdout);
    //  Bounded: a test that forgets this process ends it within ten minutes
    for (int tick = 0; !s_stop && tick < 600 * 20; tick++)
        usleep (50 * 1000);
    herald_agent_destroy (&agent);
    close (s_log);
    return 0;
}
