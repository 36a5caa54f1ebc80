/*  =========================================================================
    schema_child - a process that dies right after parking an event

    test_herald_schema runs it to kill the agent in the one window PARK
    has: the parked record is on disk, the checkpoint has not moved past
    the event.  It subscribes "refunds" (Refund wanted at schema 2, an
    upcaster that fails, PARK) and SIGKILLs itself from on_parked, which
    runs after the record is written and before the commit.

        schema_child API FANOUT STATE_DIR

    Exits 1 when nothing was parked within 30 s.
    =========================================================================
*/

#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include "herald.h"

static int
s_failing (const herald_delivery_t *event, herald_cast_result_t *result, void *arg)
{
    (void) event;
    (void) arg;
    snprintf (result->message, sizeof result->message, "qty is not a number");
    return HERALD_ERR_INVALID;
}

static void
s_die (const herald_delivery_t *event, const char *reason, void *arg)
{
    (void) event;
    (void) reason;
    (void) arg;
    kill (getpid (), SIGKILL);
}

static int
s_handler (const herald_delivery_t *event, void *arg)
{
    (void) event;
    (void) arg;
    return HERALD_OK;
}

int
main (int argc, char *argv [])
{
    if (argc != 4) {
        fprintf (stderr, "usage: schema_child API FANOUT STATE_DIR\n");
        return 2;
    }
    herald_agent_options_t options;
    herald_agent_options_init (&options);
    options.api = argv [1];
    options.fanout = argv [2];
    options.state_dir = argv [3];
    herald_agent_t *agent = herald_agent_new ("schema-child", &options);
    if (!agent) {
        fprintf (stderr, "schema_child: %s\n", herald_agent_last_error ());
        return 1;
    }
    herald_schema_want_t wants [] = { { "Refund", 2 } };
    herald_subscribe_options_t sub;
    herald_subscribe_options_init (&sub);
    sub.wants = wants;
    sub.want_count = 1;
    sub.on_incompatible = HERALD_SCHEMA_PARK;
    sub.on_parked = s_die;
    if (herald_agent_upcaster (agent, "Refund", 1, s_failing, NULL) != HERALD_OK
    ||  herald_agent_subscribe_with (agent, "refunds", &sub, s_handler, NULL) != HERALD_OK) {
        fprintf (stderr, "schema_child: %s\n", herald_agent_last_error ());
        herald_agent_destroy (&agent);
        return 1;
    }
    sleep (30);
    herald_agent_destroy (&agent);
    return 1;
}
