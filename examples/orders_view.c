/*  =========================================================================
    orders_view - a read model of the orders placed, in SQLite

    The C walk-through of docs/projections.md.  It projects the OrderPlaced
    events of examples/orders (topics "orders.<id>", data
    {"sku":"A7","qty":2}) into one table of a SQLite file,

        ordered (sku TEXT PRIMARY KEY, units INTEGER, orders INTEGER)

    with units = units + qty: not idempotent, and still exactly once,
    because the projection commits the effects of each batch and its
    position in one transaction.

        orders_view [--api ENDPOINT] [--db FILE]            follow the log (Ctrl-C stops)
        orders_view [--api ENDPOINT] --db FILE --as-of NS   the orders placed up to NS
                                                            (Unix ns), then exit
        orders_view --db FILE --show                        print the table
    =========================================================================
*/

#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sqlite3.h>
#include "herald_projection.h"

#define EX_USAGE    64

static volatile sig_atomic_t s_stop;

static void
s_on_signal (int signal)
{
    (void) signal;
    s_stop = 1;
}

//  setup: the read model's table (in the projection's transaction)
static int
s_setup (void *db, void *arg)
{
    (void) arg;
    return sqlite3_exec ((sqlite3 *) db, "CREATE TABLE IF NOT EXISTS ordered (sku TEXT "
                         "PRIMARY KEY, units INTEGER NOT NULL, orders INTEGER NOT NULL)",
                         NULL, NULL, NULL) == SQLITE_OK? HERALD_OK: HERALD_ERR_IO;
}

//  reset: drop it (herald_projection_rebuild)
static int
s_reset (void *db, void *arg)
{
    (void) arg;
    return sqlite3_exec ((sqlite3 *) db, "DROP TABLE IF EXISTS ordered", NULL, NULL,
                         NULL) == SQLITE_OK? HERALD_OK: HERALD_ERR_IO;
}

//  apply: one event, inside the batch's transaction.  Never BEGIN or
//  COMMIT here: the projection does, with its position.
static int
s_apply (void *db, const herald_delivery_t *event, void *arg)
{
    (void) arg;
    if (!event->type || event->type_len != 11 || memcmp (event->type, "OrderPlaced", 11))
        return HERALD_OK;               //  other events of orders.: nothing to do
    char data [256], sku [32];
    int qty;
    snprintf (data, sizeof data, "%.*s", (int) event->data_len, (const char *) event->data);
    if (sscanf (data, "{\"sku\":\"%31[^\"]\",\"qty\":%d}", sku, &qty) != 2)
        return HERALD_OK;               //  not ours to judge: the order service checks
    sqlite3_stmt *stmt;
    if (sqlite3_prepare_v2 ((sqlite3 *) db, "INSERT INTO ordered (sku, units, orders) "
                            "VALUES (?1, ?2, 1) ON CONFLICT (sku) DO UPDATE SET units = "
                            "units + excluded.units, orders = orders + 1", -1, &stmt,
                            NULL) != SQLITE_OK)
        return HERALD_ERR_IO;
    sqlite3_bind_text (stmt, 1, sku, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int (stmt, 2, qty);
    int code = sqlite3_step (stmt);
    sqlite3_finalize (stmt);
    //  Busy cannot happen here (the projection holds the write lock); any
    //  error stops the projection, the events before this one committed
    return code == SQLITE_DONE? HERALD_OK: HERALD_ERR_IO;
}

static int
s_show (const char *path)
{
    sqlite3 *db;
    sqlite3_stmt *stmt;
    if (sqlite3_open_v2 (path, &db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK
    ||  sqlite3_prepare_v2 (db, "SELECT sku, units, orders FROM ordered ORDER BY sku", -1,
                            &stmt, NULL) != SQLITE_OK) {
        fprintf (stderr, "orders_view: %s: %s\n", path, sqlite3_errmsg (db));
        sqlite3_close (db);
        return 1;
    }
    while (sqlite3_step (stmt) == SQLITE_ROW)
        printf ("%s %d units in %d orders\n", sqlite3_column_text (stmt, 0),
                sqlite3_column_int (stmt, 1), sqlite3_column_int (stmt, 2));
    sqlite3_finalize (stmt);
    sqlite3_close (db);
    return 0;
}

int
main (int argc, char *argv [])
{
    const char *api = "tcp://127.0.0.1:5580";
    const char *path = "var/orders-view.db";
    uint64_t as_of = 0;
    bool show = false;
    for (int index = 1; index < argc; index++) {
        if (strcmp (argv [index], "--api") == 0 && index + 1 < argc)
            api = argv [++index];
        else
        if (strcmp (argv [index], "--db") == 0 && index + 1 < argc)
            path = argv [++index];
        else
        if (strcmp (argv [index], "--as-of") == 0 && index + 1 < argc)
            as_of = strtoull (argv [++index], NULL, 10);
        else
        if (strcmp (argv [index], "--show") == 0)
            show = true;
        else {
            fprintf (stderr, "usage: orders_view [--api ENDPOINT] [--db FILE] "
                     "[--as-of NS | --show]\n");
            return EX_USAGE;
        }
    }
    if (show)
        return s_show (path);

    //  An agent without a state directory will do: the projection's
    //  position is in its database
    herald_agent_options_t agent_options;
    herald_agent_options_init (&agent_options);
    agent_options.api = api;
    herald_agent_t *agent = herald_agent_new ("orders-view", &agent_options);
    if (!agent) {
        fprintf (stderr, "orders_view: %s\n", herald_agent_last_error ());
        return 1;
    }
    const char *prefixes [] = { "orders.", NULL };
    herald_projection_options_t options;
    herald_projection_options_init (&options);
    options.backend = HERALD_PROJECTION_SQLITE;
    options.database = path;
    options.prefixes = prefixes;
    options.setup = s_setup;
    options.reset = s_reset;
    options.apply = s_apply;
    options.until_ts = as_of;           //  0: live
    herald_projection_t *view = herald_projection_new (agent, "orders-view", &options);
    int rc = 1;
    if (!view)
        fprintf (stderr, "orders_view: %s\n", herald_agent_last_error ());
    else
    if (herald_projection_start (view, 5000) != HERALD_OK)
        fprintf (stderr, "orders_view: %s\n", herald_agent_last_error ());
    else
    if (as_of)
        rc = 0;                         //  DONE: every event up to as_of is in
    else {
        signal (SIGINT, s_on_signal);
        signal (SIGTERM, s_on_signal);
        herald_projection_status_t status;
        while (!s_stop && herald_projection_status (view, &status) == HERALD_OK
           &&  status.state != HERALD_PROJECTION_FAILED)
            usleep (100000);
        rc = status.state == HERALD_PROJECTION_FAILED? 1: 0;
        if (rc)
            fprintf (stderr, "orders_view: %s\n", status.message);
    }
    if (view) {
        herald_projection_status_t status;
        herald_projection_status (view, &status);
        printf ("orders-view: position %" PRIu64 ", %" PRIu64 " events applied in %"
                PRIu64 " transactions\n", status.position, status.applied,
                status.transactions);
    }
    herald_projection_destroy (&view);
    herald_agent_destroy (&agent);
    return rc;
}
