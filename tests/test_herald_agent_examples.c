/*  =========================================================================
    test_herald_agent_examples - the examples/README.md walk-through, run

    Starts the real heraldd, examples/inventory and `examples/orders
    watch`, places orders with `examples/orders place`, stops the
    inventory, places more, starts it again, and checks the log: one
    reaction per order (reserved or rejected as the stock allows), one
    confirmation or cancellation per reaction, nothing lost or doubled.
    =========================================================================
*/

#include <criterion/criterion.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "agentutil.h"
#include "testutil.h"

#define START_MS    10000
#define WAIT_MS     20000

static bu_broker_t *s_broker;
static char *s_dir;
static herald_agent_t *s_agent;
static pid_t s_inventory;
static pid_t s_watch;

static void
s_stop (pid_t *pid_p)
{
    if (*pid_p > 0) {
        int status;
        kill (*pid_p, SIGKILL);
        waitpid (*pid_p, &status, 0);
        *pid_p = 0;
    }
}

static void
s_setup (void)
{
    zsys_handler_set (NULL);
    s_inventory = s_watch = 0;
    s_broker = bu_broker_new ("agent-examples", NULL);
    cr_assert_not_null (s_broker);
    cr_assert_eq (bu_broker_start (s_broker, START_MS), 0, "heraldd did not start");
    s_dir = tu_tmpdir_new ("agent-examples");
    cr_assert_not_null (s_dir);
}

static void
s_teardown (void)
{
    s_stop (&s_inventory);
    s_stop (&s_watch);
    herald_agent_destroy (&s_agent);
    tu_tmpdir_destroy (&s_dir);
    bu_broker_destroy (&s_broker);
}

TestSuite (herald_agent_examples, .init = s_setup, .fini = s_teardown, .timeout = 120);

static char *
s_example (const char *name)
{
    char path [PATH_MAX];
    snprintf (path, sizeof path, "%s/examples/%s", getenv ("HERALD_BUILDDIR")
              ? getenv ("HERALD_BUILDDIR"): ".", name);
    return strdup (path);
}

static pid_t
s_run (const char *name, const char *const *args, const char *log)
{
    char *binary = s_example (name);
    pid_t pid = au_spawn (binary, args, log);
    free (binary);
    cr_assert_gt (pid, 0);
    return pid;
}

//  Run orders place; it exits 0, or 1 when the order exists (conflict).
static void
s_place (const char *order, const char *sku, const char *qty, int exit_code)
{
    char *state = tu_path (s_dir, "orders");
    char *log = tu_path (s_dir, "orders.log");
    const char *args [] = { "place", order, sku, qty, "--api", s_broker->api, "--state", state,
                            NULL };
    pid_t pid = s_run ("orders", args, log);
    int status = 0;
    cr_assert_eq (au_child_wait (pid, WAIT_MS, &status), 0);
    cr_assert (WIFEXITED (status) && WEXITSTATUS (status) == exit_code,
               "orders place %s exited %d", order, WEXITSTATUS (status));
    free (state);
    free (log);
}

static pid_t
s_start_inventory (void)
{
    char *state = tu_path (s_dir, "inventory");
    char *log = tu_path (s_dir, "inventory.log");
    const char *args [] = { "--api", s_broker->api, "--state", state, NULL };
    pid_t pid = s_run ("inventory", args, log);
    free (state);
    free (log);
    return pid;
}

//  Every event under prefix: "type data" lines, in seq order.
typedef struct {
    char lines [64][160];
    size_t count;
} s_events_t;

static int
s_collect (const herald_delivery_t *event, void *arg)
{
    s_events_t *self = (s_events_t *) arg;
    if (self->count < 64)
        snprintf (self->lines [self->count++], 160, "%.*s %.*s %.*s", (int) event->topic_len,
                  event->topic, (int) event->type_len, event->type? event->type: "",
                  (int) event->data_len, (const char *) event->data);
    return HERALD_OK;
}

//  Wait until the log holds count events under prefix; into events.
static void
s_wait_events (const char *prefix, size_t count, s_events_t *events)
{
    const char *prefixes [] = { prefix, NULL };
    herald_range_t range = { .prefixes = prefixes };
    uint64_t deadline = tu_mono_ns () + WAIT_MS * 1000000ULL;
    do {
        memset (events, 0, sizeof *events);
        cr_assert_eq (herald_agent_replay (s_agent, &range, s_collect, events, 5000, NULL),
                      HERALD_OK);
        if (events->count >= count)
            break;
        usleep (50000);
    } while (tu_mono_ns () < deadline);
    cr_assert_eq (events->count, count, "%zu events under %s, expected %zu", events->count,
                  prefix, count);
}

Test (herald_agent_examples, inventory_stopped_and_restarted_handles_every_order_once)
{
    char *state = tu_path (s_dir, "test");
    herald_agent_options_t options;
    au_options (&options, s_broker, state);
    s_agent = herald_agent_new ("checker", &options);
    cr_assert_not_null (s_agent);
    free (state);

    s_inventory = s_start_inventory ();
    char *watch_state = tu_path (s_dir, "watch");
    char *watch_log = tu_path (s_dir, "watch.log");
    const char *watch_args [] = { "watch", "--api", s_broker->api, "--state", watch_state, NULL };
    s_watch = s_run ("orders", watch_args, watch_log);
    free (watch_state);
    free (watch_log);

    s_place ("o1", "A7", "2", 0);
    s_place ("o2", "A7", "9", 0);              //  8 left: rejected
    s_events_t events;
    s_wait_events ("inventory.", 2, &events);

    //  Stop the inventory; orders go on
    kill (s_inventory, SIGTERM);
    int status = 0;
    cr_assert_eq (au_child_wait (s_inventory, WAIT_MS, &status), 0);
    cr_assert (WIFEXITED (status) && WEXITSTATUS (status) == 0, "inventory did not stop cleanly");
    s_inventory = 0;
    s_place ("o3", "A7", "3", 0);
    s_place ("o4", "B2", "4", 0);
    s_place ("o1", "A7", "1", 1);              //  a conflict: o1 exists; no new order

    s_inventory = s_start_inventory ();
    s_wait_events ("inventory.", 4, &events);
    cr_assert (strstr (events.lines [0], "StockReserved") && strstr (events.lines [0], "\"o1\""),
               "%s", events.lines [0]);
    cr_assert (strstr (events.lines [1], "ReservationRejected") && strstr (events.lines [1], "\"o2\""),
               "%s", events.lines [1]);
    cr_assert (strstr (events.lines [2], "StockReserved") && strstr (events.lines [2], "\"left\":5"),
               "%s", events.lines [2]);
    cr_assert (strstr (events.lines [3], "StockReserved") && strstr (events.lines [3], "\"o4\""),
               "%s", events.lines [3]);

    //  The orders: four placed, and one confirmation or cancellation each
    s_wait_events ("orders.", 8, &events);
    size_t placed = 0, confirmed = 0, cancelled = 0;
    for (size_t index = 0; index < events.count; index++) {
        placed += strstr (events.lines [index], "OrderPlaced") != NULL;
        confirmed += strstr (events.lines [index], "OrderConfirmed") != NULL;
        cancelled += strstr (events.lines [index], "OrderCancelled") != NULL;
    }
    cr_assert_eq (placed, 4);
    cr_assert_eq (confirmed, 3);
    cr_assert_eq (cancelled, 1);
}
