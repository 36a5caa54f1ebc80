/*  =========================================================================
    inventory - the inventory service of the event-sourcing story

    Reacts to OrderPlaced events (topics "orders.<id>"): reserves the stock
    when there is enough (StockReserved on "inventory.<sku>") or refuses
    (ReservationRejected, a compensating event for the order service).
    Every SKU starts with 10 units.

    Its state (stock per SKU and the seq of the last event applied) is a
    snapshot saved after every event, so a restart loads it and goes on;
    the subscription's checkpoint takes care of the rest:
      - an event redelivered after a crash (flagged) whose seq the
        snapshot already holds is skipped: it was applied;
      - a reaction's id is derived from the order's event id, so a
        reaction published twice (a crash after publishing, before the
        snapshot) is stored once: the broker deduplicates by id.

        inventory [--api tcp://127.0.0.1:5580] [--state ./var/inventory]
    =========================================================================
*/

#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "herald.h"

#define SKUS_MAX    64

typedef struct {
    uint64_t seq;                   //  the last event applied
    size_t count;
    struct { char sku [32]; int stock; } skus [SKUS_MAX];
} state_t;

static state_t s_state;
static herald_agent_t *s_agent;
static volatile sig_atomic_t s_stop;

#define EX_USAGE    64              //  sysexits.h: the command was used wrongly

static const char *s_usage =
    "usage: inventory [--api ENDPOINT] [--state DIR]\n"
    "\n"
    "Reserves stock for the orders placed on orders.<id> (every SKU starts with 10)\n"
    "and publishes StockReserved or ReservationRejected on inventory.<sku>, until\n"
    "Ctrl-C.\n"
    "\n"
    "  --api ENDPOINT    the broker; default tcp://127.0.0.1:5580\n"
    "  --state DIR       the agent's state (checkpoints, outbox, the stock's\n"
    "                    snapshot); default ./var/inventory\n"
    "  -h, --help        this text\n";

static int
s_usage_error (const char *format, const char *arg)
{
    fprintf (stderr, "inventory: ");
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
        fprintf (stderr, "inventory: no broker answers at %s (is it running? ./run.sh "
                 "starts one); still trying\n", api);
        *warned = true;
    }
    else
    if (stats.broker_reachable && *warned) {
        fprintf (stderr, "inventory: the broker at %s answers\n", api);
        *warned = false;
    }
}

static void
s_on_signal (int signum)
{
    (void) signum;
    s_stop = 1;
}

static int *
s_stock (const char *sku)
{
    for (size_t index = 0; index < s_state.count; index++)
        if (strcmp (s_state.skus [index].sku, sku) == 0)
            return &s_state.skus [index].stock;
    if (s_state.count == SKUS_MAX)
        return NULL;
    snprintf (s_state.skus [s_state.count].sku, 32, "%s", sku);
    s_state.skus [s_state.count].stock = 10;
    return &s_state.skus [s_state.count++].stock;
}

static int
s_on_order (const herald_delivery_t *event, void *arg)
{
    (void) arg;
    if (event->seq <= s_state.seq)
        return HERALD_OK;           //  redelivered, and already applied
    if (event->type && event->type_len == 11 && memcmp (event->type, "OrderPlaced", 11) == 0) {
        char data [256], sku [32];
        int qty = 0;
        snprintf (data, sizeof data, "%.*s", (int) event->data_len, (const char *) event->data);
        const char *order = event->topic + strlen ("orders.");
        int order_len = (int) (event->topic_len - strlen ("orders."));
        int *stock = NULL;
        if (sscanf (data, "{\"sku\":\"%31[^\"]\",\"qty\":%d}", sku, &qty) == 2 && qty > 0)
            stock = s_stock (sku);
        bool reserved = stock && *stock >= qty;
        if (reserved)
            *stock -= qty;
        char topic [64], reply [256];
        snprintf (topic, sizeof topic, "inventory.%s", stock? sku: "unknown");
        snprintf (reply, sizeof reply, "{\"order\":\"%.*s\",\"sku\":\"%s\",\"qty\":%d,"
                  "\"left\":%d}", order_len, order, stock? sku: "?", qty, stock? *stock: 0);
        //  The reaction's id: the order's, with its last byte changed
        uint8_t id [16];
        memcpy (id, event->id, 16);
        id [15] ^= 0x5A;
        herald_meta_t meta = { "causation_id", 12, NULL, 0 };
        char cause [40];
        for (int index = 0; index < 16; index++)
            snprintf (cause + index * 2, 3, "%02x", event->id [index]);
        meta.value = cause;
        meta.value_len = 32;
        herald_outgoing_t out = {
            .topic = topic, .data = reply, .data_len = strlen (reply),
            .type = reserved? "StockReserved": "ReservationRejected",
            .meta = &meta, .meta_count = 1, .id = id
        };
        herald_err rc = herald_agent_publish (s_agent, &out, NULL, 0);
        //  A timeout means queued in the outbox: it will be sent
        if (rc != HERALD_OK && rc != HERALD_ERR_TIMEOUT) {
            fprintf (stderr, "inventory: cannot publish: %s\n", herald_agent_last_error ());
            return HERALD_RETRY;
        }
        printf ("seq %" PRIu64 ": order %.*s, %d x %s: %s (%d left)%s\n", event->seq, order_len,
                order, qty, stock? sku: "?", reserved? "reserved": "REJECTED",
                stock? *stock: 0, event->redelivered? " [redelivered]": "");
        fflush (stdout);
    }
    s_state.seq = event->seq;
    herald_err rc = herald_agent_snapshot_save (s_agent, "inventory", s_state.seq, &s_state,
                                                sizeof s_state);
    return rc == HERALD_OK? HERALD_OK: HERALD_RETRY;
}

int
main (int argc, char *argv [])
{
    const char *api = "tcp://127.0.0.1:5580";
    const char *state_dir = "./var/inventory";
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
        if (arg [0] == '-')
            return s_usage_error ("unknown option %s", arg);
        else
            return s_usage_error ("unexpected argument %s", arg);
    }
    signal (SIGINT, s_on_signal);
    signal (SIGTERM, s_on_signal);
    herald_agent_options_t options;
    herald_agent_options_init (&options);
    options.api = api;
    options.state_dir = state_dir;
    s_agent = herald_agent_new ("inventory", &options);
    if (!s_agent) {
        fprintf (stderr, "inventory: %s\n", herald_agent_last_error ());
        return 1;
    }
    void *bytes;
    size_t len;
    uint64_t seq;
    if (herald_agent_snapshot_load (s_agent, "inventory", &seq, &bytes, &len) == HERALD_OK
    &&  len == sizeof s_state) {
        memcpy (&s_state, bytes, len);
        printf ("inventory: state as of seq %" PRIu64 "\n", s_state.seq);
        free (bytes);
    }
    const char *prefixes [] = { "orders.", NULL };
    if (herald_agent_subscribe (s_agent, "inventory-orders", prefixes,
                                (herald_start_t) { HERALD_START_SEQ, s_state.seq + 1 },
                                s_on_order, NULL) != HERALD_OK) {
        fprintf (stderr, "inventory: %s\n", herald_agent_last_error ());
        herald_agent_destroy (&s_agent);
        return 1;
    }
    printf ("inventory: reserving stock for orders (Ctrl-C to stop)\n");
    fflush (stdout);
    bool warned = false;
    for (int64_t waited_ms = 0; !s_stop; waited_ms += 100) {
        s_report_broker (api, waited_ms, &warned);
        usleep (100000);
    }
    herald_agent_stats_t stats;
    herald_agent_stats (s_agent, &stats);
    printf ("inventory: %" PRIu64 " events handled, %" PRIu64 " gaps repaired, outbox %"
            PRIu64 "\n", stats.delivered, stats.gaps_repaired, stats.outbox_depth);
    herald_agent_destroy (&s_agent);
    return 0;
}
