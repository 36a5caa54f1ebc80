/*  =========================================================================
    projection_child - a process that projects tests/projutil.h's read model

        projection_child BACKEND DATABASE API FANOUT NAME PREFIX [UNTIL_SEQ
                         [UNTIL_TS [BATCH_MAX]]]

    BACKEND is sqlite or postgres; DATABASE a file path or a conninfo.  It
    opens projection NAME of the events whose topic begins with PREFIX on
    an agent without a state directory, starts it, and then:
      - without UNTIL_SEQ, runs until killed (the kill -9 tests; it gives
        up after 120 s, so that nothing outlives a lost test);
      - with UNTIL_SEQ (not 0), waits until the projection has committed
        it and exits 0 (the uninterrupted reference build), 1 on any error.
    UNTIL_TS (not 0) makes it a temporal projection (start applies every
    event up to it, then the process waits to be killed, or exits 0 when
    UNTIL_SEQ is given); BATCH_MAX is options.batch_max.
    It prints what happened on stdout (its log).
    =========================================================================
*/

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "herald_projection.h"
#include "projutil.h"

int
main (int argc, char *argv [])
{
    if (argc < 7 || argc > 10) {
        fprintf (stderr, "usage: projection_child sqlite|postgres DATABASE API FANOUT NAME "
                 "PREFIX [UNTIL_SEQ [UNTIL_TS [BATCH_MAX]]]\n");
        return 2;
    }
    setvbuf (stdout, NULL, _IOLBF, 0);
    static pu_model_t model;
    model.backend = strcmp (argv [1], "postgres") == 0? HERALD_PROJECTION_POSTGRES
                                                      : HERALD_PROJECTION_SQLITE;
    herald_agent_options_t agent_options;
    herald_agent_options_init (&agent_options);
    agent_options.api = argv [3];
    agent_options.fanout = argv [4];
    agent_options.timeout_ms = 5000;
    agent_options.retry_max_ms = 50;
    herald_agent_t *agent = herald_agent_new ("projection-child", &agent_options);
    if (!agent) {
        printf ("agent: %s\n", herald_agent_last_error ());
        return 1;
    }
    const char *prefixes [] = { argv [6], NULL };
    herald_projection_options_t options;
    herald_projection_options_init (&options);
    options.backend = model.backend;
    options.database = argv [2];
    options.prefixes = prefixes;
    options.setup = pu_model_setup;
    options.reset = pu_model_reset;
    options.apply = pu_model_apply;
    options.arg = &model;
    if (argc > 8)
        options.until_ts = strtoull (argv [8], NULL, 10);
    if (argc > 9)
        options.batch_max = strtoull (argv [9], NULL, 10);
    uint64_t until = argc > 7? strtoull (argv [7], NULL, 10): 0;
    herald_projection_t *projection = herald_projection_new (agent, argv [5], &options);
    int rc = 1;
    if (!projection)
        printf ("new: %s\n", herald_agent_last_error ());
    else
    if (herald_projection_start (projection, 10000) != HERALD_OK)
        printf ("start: %s\n", herald_agent_last_error ());
    else
    if (until) {
        if (herald_projection_wait (projection, until, 60000) == HERALD_OK)
            rc = 0;
        else
            printf ("wait: %s\n", herald_agent_last_error ());
    }
    else {
        for (int second = 0; second < 120; second++)
            sleep (1);
    }
    if (projection) {
        herald_projection_status_t status;
        herald_projection_status (projection, &status);
        printf ("state %d position %" PRIu64 " applied %" PRIu64 " skipped %" PRIu64
                " transactions %" PRIu64 " rollbacks %" PRIu64 " error %d %s\n",
                (int) status.state, status.position, status.applied, status.skipped,
                status.transactions, status.rollbacks, status.error, status.message);
    }
    herald_projection_destroy (&projection);
    herald_agent_destroy (&agent);
    return rc;
}
