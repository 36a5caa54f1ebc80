/*  =========================================================================
    agenttest - the criterion fixture of the agent's tests

    test_herald_agent.c, _publish, _state and _dispatch each start a real
    heraldd, give the agent a fresh state directory and record what its
    handlers receive.  That fixture is here, freed by at_teardown also when
    an assertion ended the test early.  A test file declares

        static void s_setup (void) { at_setup ("agent", "agent-state"); }
        TestSuite (herald_agent, .init = s_setup, .fini = at_teardown);

    This file uses criterion and is linked only into those tests;
    agentutil.c stays criterion-free.
    =========================================================================
*/

#ifndef HERALD_AGENTTEST_H_INCLUDED
#define HERALD_AGENTTEST_H_INCLUDED

#include "agentutil.h"

#define AT_START_MS     10000           //  for heraldd to start and answer STATUS

extern bu_broker_t *at_broker;          //  the broker under test, started
extern char *at_state;                  //  a fresh state directory
extern herald_agent_t *at_agent;        //  NULL until a test makes one
extern au_recorder_t *at_recorder;

//  Start at_broker (tagged broker_tag), make at_state (tagged state_tag)
//  and at_recorder; asserts that each worked.
void
    at_setup (const char *broker_tag, const char *state_tag);

//  Destroy the agent, the recorder, the state directory and the broker.
void
    at_teardown (void);

#endif
