/*  =========================================================================
    orders - the order service of the event-sourcing story

        orders place ID SKU QTY     publish OrderPlaced on orders.ID (a new
                                    order: expect 0, so an order id is used once)
        orders watch                react to inventory: StockReserved ->
                                    OrderConfirmed, ReservationRejected ->
                                    OrderCancelled (the compensation), until Ctrl-C
        orders show ID              the order's history, read from its stream
        orders flush                send what an earlier run left in the outbox

    Options: --api tcp://127.0.0.1:5580, --state ./var/orders (the agent's
    state directory: its outbox and checkpoints).
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
                "(run 'orders flush' or any orders command)\n", order);
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
    const char *state_dir = "./var/orders";
    const char *args [8];
    int count = 0;
    for (int index = 1; index < argc; index++) {
        if (strcmp (argv [index], "--api") == 0 && index + 1 < argc)
            api = argv [++index];
        else
        if (strcmp (argv [index], "--state") == 0 && index + 1 < argc)
            state_dir = argv [++index];
        else
        if (count < 8)
            args [count++] = argv [index];
    }
    if (count == 0) {
        fprintf (stderr, "usage: orders place ID SKU QTY | watch | show ID | flush "
                 "[--api ENDPOINT] [--state DIR]\n");
        return 2;
    }
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
    if (strcmp (args [0], "place") == 0 && count == 4)
        rc = s_place (args [1], args [2], args [3]);
    else
    if (strcmp (args [0], "watch") == 0) {
        const char *prefixes [] = { "inventory.", NULL };
        if (herald_agent_subscribe (s_agent, "orders-reactions", prefixes,
                                    (herald_start_t) { HERALD_START_BEGINNING, 0 },
                                    s_on_reaction, NULL) != HERALD_OK) {
            fprintf (stderr, "orders: %s\n", herald_agent_last_error ());
            rc = 1;
        }
        while (rc == 0 && !s_stop)
            usleep (100000);
    }
    else
    if (strcmp (args [0], "show") == 0 && count == 2) {
        char topic [300];
        snprintf (topic, sizeof topic, "orders.%s", args [1]);
        printf ("order %s:\n", args [1]);
        if (herald_agent_read (s_agent, topic, 0, 0, s_on_history, NULL, 0) != HERALD_OK) {
            fprintf (stderr, "orders: %s\n", herald_agent_last_error ());
            rc = 1;
        }
    }
    else
    if (strcmp (args [0], "flush") != 0) {
        fprintf (stderr, "orders: unknown command %s\n", args [0]);
        rc = 2;
    }
    //  Whatever the command, leave nothing unsent if the broker answers
    if (herald_agent_flush (s_agent, 2000) != HERALD_OK) {
        herald_agent_stats_t stats;
        herald_agent_stats (s_agent, &stats);
        printf ("orders: %" PRIu64 " event(s) wait in the outbox for the broker\n",
                stats.outbox_depth);
    }
    herald_agent_destroy (&s_agent);
    return rc;
}
