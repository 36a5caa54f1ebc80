/*  =========================================================================
    projkill - kill -9 a projecting process at random moments

    See projkill.h.
    =========================================================================
*/

#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include "agentutil.h"
#include "projkill.h"

static pid_t
s_spawn (const pk_run_t *run, const char *database, const char *until)
{
    char until_ts [32], batch_max [32];
    snprintf (until_ts, sizeof until_ts, "%" PRIu64, run->until_ts);
    snprintf (batch_max, sizeof batch_max, "%zu", run->batch_max);
    const char *args [] = { run->backend == HERALD_PROJECTION_POSTGRES? "postgres": "sqlite",
                            database, run->api, run->fanout, "inventory", "stock.",
                            until? until: "0", until_ts, batch_max, NULL };
    return au_spawn (run->child, args, run->log);
}

static int64_t
s_position (const pk_run_t *run, const char *database)
{
    return pu_query_int (run->backend, database, "SELECT seq FROM herald_projection "
                         "WHERE name = 'inventory'");
}

int
pk_kill_loop (const pk_run_t *run, const char *database, int *moved_p, char *message,
              size_t size)
{
    srand (run->seed);
    int64_t position = 0;
    int moved = 0;
    for (int round = 0; round < run->kills; round++) {
        pid_t child = s_spawn (run, database, NULL);
        if (child <= 0) {
            snprintf (message, size, "round %d: cannot start %s", round, run->child);
            return -1;
        }
        usleep ((useconds_t) (rand () % (run->delay_max_us > 0? run->delay_max_us: 1)));
        kill (child, SIGKILL);
        int status = 0;
        waitpid (child, &status, 0);
        //  Killed, not dead of an error of its own
        if (!WIFSIGNALED (status) || WTERMSIG (status) != SIGKILL) {
            snprintf (message, size, "round %d: the child exited by itself (status %d): see "
                      "%s", round, status, run->log);
            return -1;
        }
        int64_t now = s_position (run, database);
        moved += now > position;
        position = now > position? now: position;
    }
    if (moved_p)
        *moved_p = moved;
    return 0;
}

int
pk_run_to (const pk_run_t *run, const char *database, uint64_t head, int timeout_ms,
           char *message, size_t size)
{
    char until [32];
    snprintf (until, sizeof until, "%" PRIu64, head);
    pid_t child = s_spawn (run, database, until);
    if (child <= 0) {
        snprintf (message, size, "cannot start %s", run->child);
        return -1;
    }
    int status = 0;
    if (au_child_wait (child, timeout_ms, &status) != 0) {
        kill (child, SIGKILL);
        waitpid (child, NULL, 0);
        snprintf (message, size, "the child did not reach seq %" PRIu64 " in %d ms (see %s)",
                  head, timeout_ms, run->log);
        return -1;
    }
    if (!WIFEXITED (status) || WEXITSTATUS (status) != 0) {
        snprintf (message, size, "the child failed (status %d, see %s)", status, run->log);
        return -1;
    }
    return 0;
}

static void *
s_publish (void *arg)
{
    pk_publisher_t *self = (pk_publisher_t *) arg;
    for (size_t chunk = 0; chunk < self->chunks; chunk++) {
        if (au_publish (self->api, "stock.sku%zu", 13, self->chunk, 20000) != 0) {
            atomic_store (&self->failed, true);
            break;
        }
        usleep ((useconds_t) self->pause_us);
    }
    return NULL;
}

int
pk_publisher_start (pk_publisher_t *self)
{
    atomic_store (&self->failed, false);
    self->started = pthread_create (&self->thread, NULL, s_publish, self) == 0;
    return self->started? 0: -1;
}

int
pk_publisher_join (pk_publisher_t *self)
{
    if (!self || !self->started)
        return 0;
    pthread_join (self->thread, NULL);
    self->started = false;
    return atomic_load (&self->failed)? -1: 0;
}
