/*  =========================================================================
    agenttest - the criterion fixture of the agent's tests (agenttest.h)
    =========================================================================
*/

#include <criterion/criterion.h>
#include <stdlib.h>

#include "agenttest.h"
#include "testutil.h"

bu_broker_t *at_broker = NULL;
char *at_state = NULL;
herald_agent_t *at_agent = NULL;
au_recorder_t *at_recorder = NULL;

void
at_setup (const char *broker_tag, const char *state_tag)
{
    zsys_handler_set (NULL);
    at_broker = bu_broker_new (broker_tag, NULL);
    cr_assert_not_null (at_broker, "cannot set up a broker (HERALD_BUILDDIR=%s)",
                        getenv ("HERALD_BUILDDIR"));
    cr_assert_eq (bu_broker_start (at_broker, AT_START_MS), 0, "heraldd did not start");
    at_state = tu_tmpdir_new (state_tag);
    at_recorder = au_recorder_new ();
    cr_assert (at_state && at_recorder);
}

void
at_teardown (void)
{
    herald_agent_destroy (&at_agent);
    au_recorder_destroy (&at_recorder);
    tu_tmpdir_destroy (&at_state);
    bu_broker_destroy (&at_broker);
}
