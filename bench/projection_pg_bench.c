/*  =========================================================================
    projection_pg_bench - projection throughput into PostgreSQL (and
    SQLite beside it), C

        bench/projection_pg_bench [COUNT [BATCH_MAX]]

    Starts a heraldd (tests/brokerutil.c) and a private PostgreSQL server
    (tests/pgserver.sh, as the tests do: fsync off, see its header), and
    publishes COUNT events (default 50000) on 13 topics.  Then projects
    them with tests/projutil.h's read model (three statements per event:
    an upsert, a ledger insert, an update) into a fresh database each
    time: live (a catch-up subscription, batches of up to 256, one
    transaction each) and temporal (until_ts now, transactions of
    BATCH_MAX events, default 10000),
    into PostgreSQL and into a SQLite file.  Prints one line per run:
    "BACKEND MODE EVENTS/s (N events, T transactions)".  Figures only,
    never a failure on one.  Run from the build tree (after make).
    =========================================================================
*/

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "agentutil.h"
#include "brokerutil.h"
#include "herald_projection.h"
#include "pgutil.h"
#include "projutil.h"
#include "testutil.h"

static double
s_now (void)
{
    struct timespec now;
    clock_gettime (CLOCK_MONOTONIC, &now);
    return now.tv_sec + now.tv_nsec / 1e9;
}

static size_t s_batch_max;

static void
s_run (herald_agent_t *agent, herald_projection_backend_t backend, const char *database,
       bool temporal, uint64_t head)
{
    static const char *prefixes [] = { "stock.", NULL };
    pu_model_t model;
    memset (&model, 0, sizeof model);
    model.backend = backend;
    herald_projection_options_t options;
    herald_projection_options_init (&options);
    options.backend = backend;
    options.database = database;
    options.prefixes = prefixes;
    options.setup = pu_model_setup;
    options.reset = pu_model_reset;
    options.apply = pu_model_apply;
    options.arg = &model;
    if (temporal) {
        struct timespec now;
        clock_gettime (CLOCK_REALTIME, &now);
        options.until_ts = (uint64_t) now.tv_sec * 1000000000 + (uint64_t) now.tv_nsec;
        options.batch_max = s_batch_max;
    }
    const char *name = backend == HERALD_PROJECTION_POSTGRES? "postgres": "sqlite";
    const char *mode = temporal? "temporal": "live";
    herald_projection_t *projection = herald_projection_new (agent, mode, &options);
    if (!projection) {
        printf ("%s %s: %s\n", name, mode, herald_agent_last_error ());
        return;
    }
    double start = s_now ();
    herald_err rc = herald_projection_start (projection, 600000);
    if (rc == HERALD_OK && !temporal)
        rc = herald_projection_wait (projection, head, 600000);
    double seconds = s_now () - start;
    herald_projection_status_t status;
    herald_projection_status (projection, &status);
    if (rc != HERALD_OK)
        printf ("%s %s: %s\n", name, mode, herald_agent_last_error ());
    else
        printf ("%s %s %.0f events/s (%" PRIu64 " events, %" PRIu64 " transactions)\n",
                name, mode, status.applied / seconds, status.applied, status.transactions);
    fflush (stdout);
    herald_projection_destroy (&projection);
}

int
main (int argc, char *argv [])
{
    size_t count = argc > 1? strtoul (argv [1], NULL, 10): 50000;
    s_batch_max = argc > 2? strtoul (argv [2], NULL, 10): 0;
    if (count == 0 || s_batch_max > 100000) {
        fprintf (stderr, "usage: projection_pg_bench [COUNT [BATCH_MAX]]\n");
        return 2;
    }
    zsys_handler_set (NULL);
    pgu_server_t server;
    if (pgu_server_start (&server)) {
        fprintf (stderr, "projection_pg_bench: PostgreSQL: %s\n", server.error);
        pgu_server_destroy (&server);
        return 1;
    }
    bu_broker_t *broker = bu_broker_new ("projection-pg-bench", NULL);
    char *dir = tu_tmpdir_new ("projection-pg-bench");
    int rc = 1;
    if (!broker || !dir || bu_broker_start (broker, 10000)) {
        fprintf (stderr, "projection_pg_bench: heraldd did not start\n");
        goto done;
    }
    if (au_publish (broker->api, "stock.sku%zu", 13, count, 600000)) {
        fprintf (stderr, "projection_pg_bench: publishing failed\n");
        goto done;
    }
    int64_t head = au_head (broker->api, 10000);
    herald_agent_options_t options;
    au_options (&options, broker, NULL);
    herald_agent_t *agent = herald_agent_new ("projection-pg-bench", &options);
    if (!agent || head <= 0) {
        fprintf (stderr, "projection_pg_bench: %s\n", herald_agent_last_error ());
        goto done;
    }
    printf ("projection_pg_bench: %zu events, tests/projutil.h's model (3 statements an "
            "event)\n", count);
    for (int temporal = 0; temporal < 2; temporal++) {
        char conninfo [256];
        if (pgu_database_new (&server, temporal? "bench_temporal": "bench_live", conninfo,
                              sizeof conninfo) == 0)
            s_run (agent, HERALD_PROJECTION_POSTGRES, conninfo, temporal, (uint64_t) head);
        char *file = tu_path (dir, temporal? "temporal.db": "live.db");
        s_run (agent, HERALD_PROJECTION_SQLITE, file, temporal, (uint64_t) head);
        free (file);
    }
    herald_agent_destroy (&agent);
    rc = 0;
done:
    tu_tmpdir_destroy (&dir);
    bu_broker_destroy (&broker);
    pgu_server_destroy (&server);
    return rc;
}
