/*  =========================================================================
    projkill - kill -9 a projecting process at random moments

    The loop of the kill -9 proof (test_herald_projection_kill.c), for any
    backend: tests/projection_child projects tests/projutil.h's read model
    into a database (a SQLite file, a PostgreSQL conninfo) and is SIGKILLed
    at a random moment (seeded) `kills` times, while a publisher thread
    adds events; then it runs to the broker's head, and so does a child on
    a fresh database, and pu_compare says whether the two are identical.

    Criterion-free: every function cleans up its own child and returns 0,
    or -1 with a message.
    =========================================================================
*/

#ifndef HERALD_PROJKILL_H_INCLUDED
#define HERALD_PROJKILL_H_INCLUDED

#include <pthread.h>
#include <stdatomic.h>
#include "projutil.h"

typedef struct {
    const char *child;              //  path of tests/projection_child
    herald_projection_backend_t backend;
    const char *api;                //  the broker's
    const char *fanout;
    const char *log;                //  the children's stdout and stderr
    int kills;
    unsigned seed;                  //  srand's, for the moments
    int delay_max_us;               //  a kill comes 0 .. this after the spawn
    uint64_t until_ts;              //  not 0: a temporal projection
    size_t batch_max;               //  0: the default
} pk_run_t;

//  Kill -9 a child projecting into database run->kills times.  *moved_p
//  (may be NULL): the rounds after which the position had moved.
int
    pk_kill_loop (const pk_run_t *run, const char *database, int *moved_p, char *message,
                  size_t size);

//  Run a child projecting into database until it committed head (it
//  exits 0 then); up to timeout_ms.
int
    pk_run_to (const pk_run_t *run, const char *database, uint64_t head, int timeout_ms,
               char *message, size_t size);

//  A thread publishing events chunks of chunk events on topics
//  "stock.sku<i % 13>" to api, pause_us between them
typedef struct {
    const char *api;
    size_t chunks;
    size_t chunk;
    int pause_us;
    pthread_t thread;
    bool started;
    atomic_bool failed;
} pk_publisher_t;

int
    pk_publisher_start (pk_publisher_t *self);
//  Join it; -1 when a publish failed.  NULL-safe, idempotent.
int
    pk_publisher_join (pk_publisher_t *self);

#endif
