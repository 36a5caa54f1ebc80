/*  =========================================================================
    test_herald_projection_trim - a C projection (SQLite) on a trimmed log

    A projection whose position is exactly the trim point, or below
    another prefix's trim point, starts again and goes on (its start-up
    check of the stored seq must not take a trimmed seq for a lost one); a
    projection that would need trimmed events (a new one, from seq 1)
    FAILS with HERALD_ERR_TRIMMED naming the first seq, nothing applied.
    Real heraldd, trims sent as TRIM {unarchived: true}.
    =========================================================================
*/

#include <criterion/criterion.h>
#include <string.h>

#include "projtest.h"
#include "testutil.h"
#include "trimclient.h"

TestSuite (herald_projection_trim, .init = pt_setup, .fini = pt_teardown, .timeout = 120);

Test (herald_projection_trim, at_the_trim_point_it_goes_on_and_from_seq_1_it_fails)
{
    herald_projection_options_t options;
    pt_options (&options, pt_db);
    pt_projection = pt_open (at_agent, "inventory", &options);
    uint64_t head = pt_publish (40);
    cr_assert_eq (herald_projection_start (pt_projection, WAIT_MS), HERALD_OK,
                  "%s", herald_agent_last_error ());
    cr_assert_eq (herald_projection_wait (pt_projection, head, WAIT_MS), HERALD_OK,
                  "%s", herald_agent_last_error ());
    herald_projection_destroy (&pt_projection);
    //  Trimmed exactly to its position, and another prefix beyond it
    cr_assert_eq (tc_trim (at_broker->api, "", head, WAIT_MS), head + 1);
    cr_assert_eq (au_publish (at_broker->api, "other.%zu", 2, 20, WAIT_MS), 0);
    cr_assert_eq (tc_trim (at_broker->api, "other.", head + 20, WAIT_MS), head + 21);
    uint64_t head2 = pt_publish (30);
    pt_projection = pt_open (at_agent, "inventory", &options);
    cr_assert_eq (herald_projection_start (pt_projection, WAIT_MS), HERALD_OK,
                  "a projection at the trim point did not start: %s",
                  herald_agent_last_error ());
    cr_assert_eq (herald_projection_wait (pt_projection, head2, WAIT_MS), HERALD_OK,
                  "%s", herald_agent_last_error ());
    cr_assert_eq (pt_int ("SELECT seq FROM herald_projection WHERE name = 'inventory'"),
                  (int64_t) head2);
    //  A new one, from seq 1: stops at the trim, applies nothing
    char *fresh = zsys_sprintf ("%s/fresh.db", pt_dir);
    herald_projection_options_t other;
    pt_options (&other, fresh);
    pt_other = pt_open (at_agent, "fresh", &other);
    herald_err rc = herald_projection_start (pt_other, WAIT_MS);
    if (rc == HERALD_OK)
        rc = herald_projection_wait (pt_other, head2, WAIT_MS);
    cr_assert_eq (rc, HERALD_ERR_TRIMMED, "%d: %s", rc, herald_agent_last_error ());
    cr_assert (strstr (herald_agent_last_error (), "is 41"), "%s", herald_agent_last_error ());
    herald_projection_status_t status = pt_status (pt_other);
    cr_assert_eq (status.state, HERALD_PROJECTION_FAILED);
    cr_assert_eq (status.error, HERALD_ERR_TRIMMED);
    cr_assert_eq (status.position, 0);
    zstr_free (&fresh);
}
