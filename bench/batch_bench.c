/*  =========================================================================
    batch_bench - the C agent's delivery into a trivial handler, per event
    and through a batch handler (herald_agent_subscribe_batch), on a
    broker that bench/python_bench.py runs and filled

        batch_bench API FANOUT COUNT

    Catch-up of the first COUNT events under "bench." into a new
    subscription, once with a per-event handler and once with a batch
    handler; prints "event RATE" and "batch RATE" (events/s).  Figures
    only, never a failure on one.
    =========================================================================
*/

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include "herald.h"

static atomic_size_t s_seen;

static int
s_one (const herald_delivery_t *event, void *arg)
{
    (void) event;
    (void) arg;
    atomic_fetch_add_explicit (&s_seen, 1, memory_order_relaxed);
    return HERALD_OK;
}

static int
s_many (herald_delivery_batch_t *batch, void *arg)
{
    (void) arg;
    atomic_fetch_add_explicit (&s_seen, batch->count, memory_order_relaxed);
    return HERALD_OK;
}

static double
s_now (void)
{
    struct timespec now;
    clock_gettime (CLOCK_MONOTONIC, &now);
    return now.tv_sec + now.tv_nsec / 1e9;
}

//  Events per second into a new subscription of a new agent; 0 on error.
static double
s_run (const char *api, const char *fanout, size_t count, bool batch)
{
    char dir [] = "/tmp/herald-batch-bench-XXXXXX";
    if (!mkdtemp (dir))
        return 0;
    herald_agent_options_t options;
    herald_agent_options_init (&options);
    options.api = api;
    options.fanout = fanout;
    options.state_dir = dir;
    herald_agent_t *agent = herald_agent_new (batch? "c-batch": "c-event", &options);
    if (!agent)
        return 0;
    const char *prefixes [] = { "bench.", NULL };
    herald_start_t start = { HERALD_START_BEGINNING, 0 };
    atomic_store (&s_seen, 0);
    double began = s_now ();
    herald_err rc = batch
                  ? herald_agent_subscribe_batch (agent, "b", prefixes, start, s_many, NULL)
                  : herald_agent_subscribe (agent, "b", prefixes, start, s_one, NULL);
    double rate = 0;
    if (rc == HERALD_OK) {
        //  Bounded: 10 minutes at most
        for (int step = 0; step < 600000 && atomic_load (&s_seen) < count; step++)
            usleep (1000);
        rate = atomic_load (&s_seen) / (s_now () - began);
    }
    else
        fprintf (stderr, "batch_bench: subscribe: %s\n", herald_strerror (rc));
    herald_agent_destroy (&agent);
    char command [128];
    snprintf (command, sizeof command, "rm -rf %s", dir);
    if (system (command) != 0) {
        //  a temporary directory left behind: not a figure
    }
    return rate;
}

int
main (int argc, char *argv [])
{
    if (argc != 4) {
        fprintf (stderr, "usage: batch_bench API FANOUT COUNT\n");
        return 64;
    }
    size_t count = strtoull (argv [3], NULL, 10);
    printf ("event %.0f\n", s_run (argv [1], argv [2], count, false));
    printf ("batch %.0f\n", s_run (argv [1], argv [2], count, true));
    return 0;
}
