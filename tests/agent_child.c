/*  =========================================================================
    agent_child - an agent in a process of its own, for tests to kill -9

    A plain program (no criterion, whose runner state it would inherit):

      agent_child subscribe STATE API FANOUT NAME PREFIX LOG KILL_AT [HWM]
          subscribe NAME to PREFIX ("-": every topic) from the beginning;
          the handler appends "seq uuid redelivered" to LOG for each event,
          and when seq is KILL_AT (0: never) kills the process with SIGKILL
          right after writing its line: a crash inside a handler.  HWM sets
          the SUB's receive high-water mark.  Runs until SIGTERM.

      agent_child subscribe-batch STATE API FANOUT NAME PREFIX LOG KILL_AT [HWM]
          the same with a batch handler (herald_agent_subscribe_batch):
          the lines are written event by event inside the batch, and
          KILL_AT kills the process in the middle of its batch.

      agent_child publish STATE API FANOUT COUNT TOPIC
          publish COUNT events asynchronously (topics TOPIC.<i % 10>, data
          "p<i>"), print "queued", then SIGKILL itself: a crash with the
          outbox not yet sent.
    =========================================================================
*/

#include <fcntl.h>
#include <stdbool.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "herald.h"
#include "herald_uuid.h"

static volatile sig_atomic_t s_stop;
static int s_log = -1;
static uint64_t s_kill_at;

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
    char id [HERALD_UUID_STR_LEN + 1];
    herald_uuid_format (event->id, id);
    char line [128];
    int len = snprintf (line, sizeof line, "%" PRIu64 " %s %d\n", event->seq, id,
                        event->redelivered? 1: 0);
    if (write (s_log, line, (size_t) len) != len)
        return 99;
    if (s_kill_at && event->seq == s_kill_at)
        raise (SIGKILL);
    return HERALD_OK;
}

static int
s_batch_handler (herald_delivery_batch_t *batch, void *arg)
{
    for (size_t index = 0; index < batch->count; index++) {
        int rc = s_handler (&batch->events [index], arg);
        if (rc != HERALD_OK)
            return rc;
    }
    return HERALD_OK;
}

int
main (int argc, char *argv [])
{
    if (argc < 7) {
        fprintf (stderr, "usage: agent_child subscribe|publish STATE API FANOUT ...\n");
        return 2;
    }
    herald_agent_options_t options;
    herald_agent_options_init (&options);
    options.state_dir = argv [2];
    options.api = argv [3];
    options.fanout = argv [4];
    bool batch = strcmp (argv [1], "subscribe-batch") == 0;
    if ((batch || strcmp (argv [1], "subscribe") == 0) && argc >= 9) {
        if (argc >= 10)
            options.sub_rcvhwm = atoi (argv [9]);
        s_log = open (argv [7], O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
        s_kill_at = strtoull (argv [8], NULL, 10);
        signal (SIGTERM, s_on_term);
        herald_agent_t *agent = herald_agent_new ("agent_child", &options);
        if (!agent || s_log < 0) {
            fprintf (stderr, "agent_child: %s\n", herald_agent_last_error ());
            return 1;
        }
        const char *prefixes [] = { argv [6], NULL };
        const char *const *topics = strcmp (argv [6], "-") == 0? NULL: prefixes;
        herald_start_t start = { HERALD_START_BEGINNING, 0 };
        herald_err rc = batch
            ? herald_agent_subscribe_batch (agent, argv [5], topics, start, s_batch_handler,
                                            NULL)
            : herald_agent_subscribe (agent, argv [5], topics, start, s_handler, NULL);
        if (rc) {
            fprintf (stderr, "agent_child: subscribe: %s\n", herald_agent_last_error ());
            herald_agent_destroy (&agent);
            return 1;
        }
        printf ("subscribed\n");
        fflush (stdout);
        while (!s_stop)
            usleep (10000);
        herald_agent_destroy (&agent);
        close (s_log);
        return 0;
    }
    if (strcmp (argv [1], "publish") == 0) {
        herald_agent_t *agent = herald_agent_new ("agent_child", &options);
        if (!agent) {
            fprintf (stderr, "agent_child: %s\n", herald_agent_last_error ());
            return 1;
        }
        size_t count = strtoull (argv [5], NULL, 10);
        for (size_t index = 0; index < count; index++) {
            char topic [300], data [32];
            snprintf (topic, sizeof topic, "%s.%zu", argv [6], index % 10);
            snprintf (data, sizeof data, "p%zu", index);
            herald_outgoing_t event = { .topic = topic, .data = data, .data_len = strlen (data) };
            if (herald_agent_publish_async (agent, &event, NULL, NULL, NULL) != HERALD_OK) {
                fprintf (stderr, "agent_child: publish: %s\n", herald_agent_last_error ());
                return 1;
            }
        }
        printf ("queued\n");
        fflush (stdout);
        raise (SIGKILL);
    }
    fprintf (stderr, "agent_child: unknown mode %s\n", argv [1]);
    return 2;
}
