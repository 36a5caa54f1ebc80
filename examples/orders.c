/*  =========================================================================
    orders - the order service of the event-sourcing story

        orders place ID SKU QTY     publish OrderPlaced on orders.ID (a new
                                    order: expect 0, so an order id is used once)
        orders watch                react to inventory: StockReserved ->
                                    OrderConfirmed, ReservationRejected ->
                                    OrderCancelled (the compensation), until Ctrl-C
        orders show ID              the order's history, read from its stream
        orders flush                send what an earlier run left in the outbox

    Options: --api tcp://127.0.0.1:5580, --state DIR (the agent's state
    directory: its outbox and checkpoints).  `watch` is a service that runs
    beside the commands, so it has a directory of its own, ./var/orders-watch
    (an agent locks its directory); place, show and flush share ./var/orders,
    so any of them sends what an earlier one left in the outbox.
    =========================================================================
*/

#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "herald.h"

static herald_agent_t *s_agent;
static volatile sig_atomic_t s_stop;

#define EX_USAGE    64              //  sysexits.h: the command was used wrongly

static const char *s_usage =
    "usage: orders place ID SKU QTY | watch | show ID | flush [--api ENDPOINT] [--state DIR]\n"
    "\n"
    "  place ID SKU QTY  publish OrderPlaced on orders.ID (an order id is used once)\n"
    "  watch             react to the inventory (OrderConfirmed, OrderCancelled)\n"
    "                    until Ctrl-C\n"
    "  show ID           the order's history, read from its stream\n"
    "  flush             send what an earlier run left in the outbox\n"
    "\n"
    "  --api ENDPOINT    the broker; default tcp://127.0.0.1:5580\n"
    "  --state DIR       the agent's state (outbox, checkpoints); default\n"
    "                    ./var/orders-watch for watch, ./var/orders for the others\n"
    "  -h, --help        this text\n";

static int
s_usage_error (const char *format, const char *arg)
{
    fprintf (stderr, "orders: ");
    fprintf (stderr, format, arg);
    fprintf (stderr, "\n%s", s_usage);
    return EX_USAGE;
}

//  A service that starts against a broker that is not there must say so,
//  not wait in silence: the agent keeps trying (so the service goes on by
//  itself when the broker comes), and we say what we see, once per change.
//  At the start the broker gets 2 s (two heartbeats) to be heard; later the
//  agent's own rule holds (broker_reachable: no heartbeat for 3 s).
static void
s_report_broker (const char *api, int64_t waited_ms, bool *warned)
{
    herald_agent_stats_t stats;
    herald_agent_stats (s_agent, &stats);
    if (!stats.broker_reachable && !*warned && waited_ms >= 2000) {
        fprintf (stderr, "orders: no broker answers at %s (is it running? ./run.sh "
                 "starts one); still trying\n", api);
        *warned = true;
    }
    else
    if (stats.broker_reachable && *warned) {
        fprintf (stderr, "orders: the broker at %s answers\n", api);
        *warned = false;
    }
}

static void
s_on_signal (int signum)
{
    (void) signum;
    s_stop = 1;
}

static int
s_place (const char *order, const char *sku, const char *qty)
{
    char topic [300], data [256];
    snprintf (topic, sizeof topic, "orders.%s", order);
    snprintf (data, sizeof data, "{\"sku\":\"%s\",\"qty\":%d}", sku, atoi (qty));
    herald_outgoing_t event = { .topic = topic, .data = data, .data_len = strlen (data),
                                .type = "OrderPlaced", .has_expect = true, .expect = 0 };
    herald_publish_result_t result;
    herald_err rc = herald_agent_publish (s_agent, &event, &result, 0);
    if (rc == HERALD_OK)
        printf ("order %s placed: seq %" PRIu64 "\n", order, result.seq);
    else
    if (rc == HERALD_ERR_CONFLICT)
        printf ("order %s exists already (version %" PRIu64 ")\n", order, result.actual);
    else
    if (rc == HERALD_ERR_TIMEOUT)
        printf ("order %s queued: the broker is not answering; it is sent when it is back "
                "(run 'orders flush', or place another order)\n", order);
    else
        printf ("order %s refused: %s\n", order, herald_agent_last_error ());
    return rc == HERALD_OK || rc == HERALD_ERR_TIMEOUT? 0: 1;
}

//  The order's id from a reaction's data {"order":"ID",...}.
static void
s_order_of (const herald_delivery_t *event, char *order, size_t size)
{
    char data [256];
    snprintf (data, sizeof data, "%.*s", (int) event->data_len, (const char *) event->data);
    if (sscanf (data, "{\"order\":\"%127[^\"]\"", order) != 1)
        snprintf (order, size, "?");
}

static int
s_on_reaction (const herald_delivery_t *event, void *arg)
{
    (void) arg;
    bool reserved = event->type && event->type_len == 13
                 && memcmp (event->type, "StockReserved", 13) == 0;
    bool rejected = event->type && event->type_len == 19
                 && memcmp (event->type, "ReservationRejected", 19) == 0;
    if (!reserved && !rejected)
        return HERALD_OK;
    char order [128], topic [160];
    s_order_of (event, order, sizeof order);
    snprintf (topic, sizeof topic, "orders.%s", order);
    uint8_t id [16];                //  derived from the cause: published once
    memcpy (id, event->id, 16);
    id [15] ^= 0xA5;
    herald_outgoing_t out = { .topic = topic, .id = id,
                              .type = reserved? "OrderConfirmed": "OrderCancelled" };
    herald_err rc = herald_agent_publish (s_agent, &out, NULL, 0);
    if (rc != HERALD_OK && rc != HERALD_ERR_TIMEOUT)
        return HERALD_RETRY;
    printf ("order %s: %s\n", order, reserved? "confirmed": "cancelled (no stock)");
    fflush (stdout);
    return HERALD_OK;
}

static int
s_on_history (const herald_delivery_t *event, void *arg)
{
    (void) arg;
    printf ("  v%" PRIu64 "  seq %-6" PRIu64 " %-20.*s %.*s\n", event->ver, event->seq,
            (int) event->type_len, event->type? event->type: "", (int) event->data_len,
            (const char *) event->data);
    return HERALD_OK;
}

int
main (int argc, char *argv [])
{
    const char *api = "tcp://127.0.0.1:5580";
    const char *state_dir = NULL;
    const char *args [8];
    int count = 0;
    for (int index = 1; index < argc; index++) {
        const char *arg = argv [index];
        if (strcmp (arg, "-h") == 0 || strcmp (arg, "--help") == 0) {
            fputs (s_usage, stdout);
            return 0;
        }
        else
        if (strcmp (arg, "--api") == 0 || strcmp (arg, "--state") == 0) {
            if (index + 1 == argc)
                return s_usage_error ("%s needs a value", arg);
            if (strcmp (arg, "--api") == 0)
                api = argv [++index];
            else
                state_dir = argv [++index];
        }
        else
        if (arg [0] == '-' && arg [1])
            return s_usage_error ("unknown option %s", arg);
        else
        if (count < 8)
            args [count++] = arg;
        else
            return s_usage_error ("too many arguments (%s...)", arg);
    }
    if (count == 0)
        return s_usage_error ("%s", "which command?");
    const char *command = args [0];
    if (!((strcmp (command, "place") == 0 && count == 4)
       || (strcmp (command, "watch") == 0 && count == 1)
       || (strcmp (command, "show") == 0 && count == 2)
       || (strcmp (command, "flush") == 0 && count == 1))) {
        if (strcmp (command, "place") && strcmp (command, "watch")
        &&  strcmp (command, "show") && strcmp (command, "flush"))
            return s_usage_error ("unknown command %s", command);
        return s_usage_error ("wrong number of arguments for %s", command);
    }
    if (!state_dir)
        state_dir = strcmp (command, "watch") == 0? "./var/orders-watch": "./var/orders";
    signal (SIGINT, s_on_signal);
    signal (SIGTERM, s_on_signal);
    herald_agent_options_t options;
    herald_agent_options_init (&options);
    options.api = api;
    options.state_dir = state_dir;
    s_agent = herald_agent_new ("orders", &options);
    if (!s_agent) {
        fprintf (stderr, "orders: %s\n", herald_agent_last_error ());
        return 1;
    }
    int rc = 0;
    if (strcmp (command, "place") == 0)
        rc = s_place (args [1], args [2], args [3]);
    else
    if (strcmp (command, "watch") == 0) {
        const char *prefixes [] = { "inventory.", NULL };
        if (herald_agent_subscribe (s_agent, "orders-reactions", prefixes,
                                    (herald_start_t) { HERALD_START_BEGINNING, 0 },
                                    s_on_reaction, NULL) != HERALD_OK) {
            fprintf (stderr, "orders: %s\n", herald_agent_last_error ());
            rc = 1;
        }
        bool warned = false;
        for (int64_t waited_ms = 0; rc == 0 && !s_stop; waited_ms += 100) {
            s_report_broker (api, waited_ms, &warned);
            usleep (100000);
        }
    }
    else
    if (strcmp (command, "show") == 0) {
        char topic [300];
        snprintf (topic, sizeof topic, "orders.%s", args [1]);
        printf ("order %s:\n", args [1]);
        if (herald_agent_read (s_agent, topic, 0, 0, s_on_history, NULL, 0) != HERALD_OK) {
            fprintf (stderr, "orders: %s\n", herald_agent_last_error ());
            rc = 1;
        }
    }
    //  Whatever the command, leave nothing unsent if the broker answers
    herald_agent_stats_t stats;
    if (herald_agent_flush (s_agent, 2000) != HERALD_OK) {
        herald_agent_stats (s_agent, &stats);
        printf ("orders: %" PRIu64 " event(s) wait in the outbox for the broker\n",
                stats.outbox_depth);
    }
    else
    if (strcmp (command, "flush") == 0) {
        //  flush publishes nothing of its own: what was acknowledged came
        //  from the outbox
        herald_agent_stats (s_agent, &stats);
        printf ("orders: the outbox is empty (%" PRIu64 " event(s) sent now)\n",
                stats.published);
    }
    herald_agent_destroy (&s_agent);
    return rc;
}
