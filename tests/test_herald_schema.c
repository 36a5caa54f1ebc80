/*  =========================================================================
    test_herald_schema - upcasters, downcasters and the incompatible policies

    The registry's and the chain's rules through herald_agent_convert, then
    delivery through a real heraldd and agent: a subscription declaring
    OrderPlaced at schema 2 gets schema 1 events upcast; one at schema 1
    gets schema 2 downcast; what cannot be converted (a gap, a failing
    caster, a newer schema with no downcaster) meets STOP, SKIP or PARK;
    parked events are listed and replayed; a group subscription converts
    too; the figures count each.

    The data is text to keep the casters readable: schema 1 is
    "sku=A;qty=3", schema 2 adds ";wh=main", schema 3 adds ";prio=0".
    =========================================================================
*/

#include <criterion/criterion.h>
#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include "agenttest.h"
#include "testutil.h"

#define WAIT_MS     20000
#define SEEN_MAX    64

static void
s_setup (void)
{
    at_setup ("schema", "schema-state");
}

TestSuite (herald_schema, .init = s_setup, .fini = at_teardown, .timeout = 90);

//  ---------------------------------------------------------------------
//  Casters

//  Append arg (a string) to the data: 1 -> 2 (";wh=main"), 2 -> 3 (";prio=0")
static int
s_append (const herald_delivery_t *event, herald_cast_result_t *result, void *arg)
{
    const char *tail = (const char *) arg;
    size_t len = event->data_len + strlen (tail);
    cr_assert_leq (len, result->capacity);
    memcpy (result->buffer, event->data, event->data_len);
    memcpy (result->buffer + event->data_len, tail, strlen (tail));
    result->data_len = len;
    return HERALD_OK;
}

//  The same, into malloc'd bytes of its own
static int
s_append_malloc (const herald_delivery_t *event, herald_cast_result_t *result, void *arg)
{
    const char *tail = (const char *) arg;
    size_t len = event->data_len + strlen (tail);
    result->data = malloc (len);
    memcpy (result->data, event->data, event->data_len);
    memcpy ((char *) result->data + event->data_len, tail, strlen (tail));
    result->data_len = len;
    return HERALD_OK;
}

//  Cut the data at the last ';' (the field the newer schema added)
static int
s_cut (const herald_delivery_t *event, herald_cast_result_t *result, void *arg)
{
    (void) arg;
    size_t len = event->data_len;
    while (len && ((const char *) event->data) [len - 1] != ';')
        len--;
    if (!len)
        return snprintf (result->message, sizeof result->message, "no field to cut"),
               HERALD_ERR_INVALID;
    memcpy (result->buffer, event->data, len - 1);
    result->data_len = len - 1;
    return HERALD_OK;
}

static int
s_failing (const herald_delivery_t *event, herald_cast_result_t *result, void *arg)
{
    (void) event;
    (void) arg;
    snprintf (result->message, sizeof result->message, "qty is not a number");
    return HERALD_ERR_INVALID;
}

static int
s_overrun (const herald_delivery_t *event, herald_cast_result_t *result, void *arg)
{
    (void) event;
    (void) arg;
    result->data_len = result->capacity + 1;
    return HERALD_OK;
}

//  ---------------------------------------------------------------------
//  What a handler saw

typedef struct {
    pthread_mutex_t lock;
    size_t count;
    uint64_t seq [SEEN_MAX];
    uint64_t schema [SEEN_MAX];
    uint64_t stored [SEEN_MAX];
    char data [SEEN_MAX][128];
    size_t errors;
    int error_code;
    char error [1024];
    size_t parked;
    char parked_reason [1024];
    uint64_t parked_seq;
} s_seen_t;

static s_seen_t s_seen = { .lock = PTHREAD_MUTEX_INITIALIZER };

static int
s_record (const herald_delivery_t *event, void *arg)
{
    (void) arg;
    pthread_mutex_lock (&s_seen.lock);
    if (s_seen.count < SEEN_MAX) {
        size_t at = s_seen.count++;
        s_seen.seq [at] = event->seq;
        s_seen.schema [at] = event->schema;
        s_seen.stored [at] = herald_delivery_stored_schema (event);
        snprintf (s_seen.data [at], sizeof s_seen.data [at], "%.*s", (int) event->data_len,
                  (const char *) event->data);
    }
    pthread_mutex_unlock (&s_seen.lock);
    return HERALD_OK;
}

static void
s_on_error (const char *name, int code, const char *message, void *arg)
{
    (void) name;
    (void) arg;
    pthread_mutex_lock (&s_seen.lock);
    s_seen.errors++;
    s_seen.error_code = code;
    snprintf (s_seen.error, sizeof s_seen.error, "%s", message);
    pthread_mutex_unlock (&s_seen.lock);
}

static void
s_on_parked (const herald_delivery_t *event, const char *reason, void *arg)
{
    (void) arg;
    pthread_mutex_lock (&s_seen.lock);
    s_seen.parked++;
    s_seen.parked_seq = event->seq;
    snprintf (s_seen.parked_reason, sizeof s_seen.parked_reason, "%s", reason);
    pthread_mutex_unlock (&s_seen.lock);
}

static size_t
s_count (void)
{
    pthread_mutex_lock (&s_seen.lock);
    size_t count = s_seen.count;
    pthread_mutex_unlock (&s_seen.lock);
    return count;
}

static void
s_wait_count (size_t count)
{
    int64_t deadline = tu_mono_ns () + WAIT_MS * 1000000LL;
    while (s_count () < count && (int64_t) tu_mono_ns () < deadline)
        usleep (2000);
    cr_assert_eq (s_count (), count, "%zu events seen, expected %zu", s_count (), count);
}

static herald_sub_status_t
s_wait_state (const char *name, herald_sub_state_t state, uint64_t seq)
{
    herald_sub_status_t status;
    int64_t deadline = tu_mono_ns () + WAIT_MS * 1000000LL;
    do {
        cr_assert_eq (herald_agent_sub_status (at_agent, name, &status), HERALD_OK);
        if (status.state == state && status.delivered_seq >= seq)
            break;
        usleep (2000);
    } while ((int64_t) tu_mono_ns () < deadline);
    cr_assert_eq (status.state, state, "state %d, expected %d (%s)", status.state, state,
                  status.message);
    cr_assert_geq (status.delivered_seq, seq);
    return status;
}

static void
s_agent (void)
{
    memset (&s_seen, 0, sizeof s_seen);
    pthread_mutex_init (&s_seen.lock, NULL);
    herald_agent_options_t options;
    au_options (&options, at_broker, at_state);
    options.on_error = s_on_error;
    at_agent = herald_agent_new ("schema-test", &options);
    cr_assert_not_null (at_agent, "%s", herald_agent_last_error ());
}

//  Publish one event; returns its seq.
static uint64_t
s_publish (const char *type, uint64_t schema, const char *data)
{
    herald_outgoing_t event = { .topic = "orders.1", .data = data,
                                .data_len = strlen (data), .type = type, .schema = schema };
    herald_publish_result_t result;
    cr_assert_eq (herald_agent_publish (at_agent, &event, &result, WAIT_MS), HERALD_OK,
                  "publish: %s", herald_agent_last_error ());
    return result.seq;
}

static void
s_subscribe (const char *name, uint64_t want, herald_schema_policy_t policy)
{
    herald_schema_want_t wants [] = { { "OrderPlaced", want } };
    herald_subscribe_options_t options;
    herald_subscribe_options_init (&options);
    options.wants = wants;
    options.want_count = 1;
    options.on_incompatible = policy;
    options.on_parked = s_on_parked;
    cr_assert_eq (herald_agent_subscribe_with (at_agent, name, &options, s_record, NULL),
                  HERALD_OK, "subscribe_with: %s", herald_agent_last_error ());
}

//  ---------------------------------------------------------------------
//  The registry and the chain, without delivery

static herald_delivery_t
s_view (const char *type, uint64_t schema, const char *data)
{
    static const uint8_t id [16] = { 1 };
    herald_delivery_t view = { .id = id, .topic = "orders.1", .topic_len = 8, .seq = 7,
                               .type = type, .type_len = type? strlen (type): 0,
                               .schema = schema, .data = data,
                               .data_len = strlen (data) };
    return view;
}

static void
s_convert_expect (const herald_delivery_t *view, uint64_t want, const char *expected)
{
    void *data = NULL;
    size_t len = 0;
    cr_assert_eq (herald_agent_convert (at_agent, view, want, &data, &len), HERALD_OK,
                  "convert: %s", herald_agent_last_error ());
    cr_assert_eq (len, strlen (expected));
    cr_assert_eq (memcmp (data, expected, len), 0, "got %.*s", (int) len, (char *) data);
    free (data);
}

static void
s_convert_fails (const herald_delivery_t *view, uint64_t want, const char *words)
{
    void *data = NULL;
    size_t len = 0;
    cr_assert_eq (herald_agent_convert (at_agent, view, want, &data, &len),
                  HERALD_ERR_UNSUPPORTED);
    cr_assert_null (data);
    cr_assert_not_null (strstr (herald_agent_last_error (), words), "message: %s",
                        herald_agent_last_error ());
}

Test (herald_schema, registry_rules)
{
    s_agent ();
    cr_assert_eq (herald_subscribe_options_size (), sizeof (herald_subscribe_options_t));
    cr_assert_eq (herald_schema_stats_size (), sizeof (herald_schema_stats_t));
    cr_assert_eq (herald_agent_upcaster (at_agent, "OrderPlaced", 1, s_append, ";wh=main"),
                  HERALD_OK);
    //  Never replaced
    cr_assert_eq (herald_agent_upcaster (at_agent, "OrderPlaced", 1, s_append, "x"),
                  HERALD_ERR_INVALID);
    cr_assert_not_null (strstr (herald_agent_last_error (), "registered already"));
    //  Bad steps and arguments
    cr_assert_eq (herald_agent_upcaster (at_agent, "OrderPlaced", 0, s_append, "x"),
                  HERALD_ERR_INVALID);
    cr_assert_eq (herald_agent_downcaster (at_agent, "OrderPlaced", 1, s_cut, NULL),
                  HERALD_ERR_INVALID);
    cr_assert_eq (herald_agent_upcaster (at_agent, "", 1, s_append, "x"), HERALD_ERR_INVALID);
    cr_assert_eq (herald_agent_upcaster (at_agent, NULL, 1, s_append, "x"), HERALD_ERR_INVALID);
    cr_assert_eq (herald_agent_upcaster (at_agent, "OrderPlaced", 2, NULL, NULL),
                  HERALD_ERR_INVALID);
    //  A downcaster of the same step is another function
    cr_assert_eq (herald_agent_downcaster (at_agent, "OrderPlaced", 2, s_cut, NULL), HERALD_OK);
    //  Bad declarations
    herald_schema_want_t twice [] = { { "A", 1 }, { "A", 2 } };
    herald_schema_want_t zero [] = { { "A", 0 } };
    herald_subscribe_options_t options;
    herald_subscribe_options_init (&options);
    options.wants = twice;
    options.want_count = 2;
    cr_assert_eq (herald_agent_subscribe_with (at_agent, "bad", &options, s_record, NULL),
                  HERALD_ERR_INVALID);
    cr_assert_not_null (strstr (herald_agent_last_error (), "declared twice"));
    options.wants = zero;
    options.want_count = 1;
    cr_assert_eq (herald_agent_subscribe_with (at_agent, "bad", &options, s_record, NULL),
                  HERALD_ERR_INVALID);
    options.want_count = 0;
    options.on_incompatible = (herald_schema_policy_t) 7;
    cr_assert_eq (herald_agent_subscribe_with (at_agent, "bad", &options, s_record, NULL),
                  HERALD_ERR_INVALID);
    //  None of them made a subscription
    herald_sub_status_t status;
    cr_assert_eq (herald_agent_sub_status (at_agent, "bad", &status), HERALD_ERR_NOT_FOUND);
    //  PARK needs somewhere to park: an agent without state_dir and no on_parked
    herald_agent_options_t bare;
    au_options (&bare, at_broker, NULL);
    herald_agent_t *stateless = herald_agent_new ("schema-bare", &bare);
    cr_assert_not_null (stateless);
    herald_group_options_t group;
    herald_group_options_init (&group);
    herald_subscribe_options_init (&options);
    options.group = &group;
    options.on_incompatible = HERALD_SCHEMA_PARK;
    cr_assert_eq (herald_agent_subscribe_with (stateless, "g", &options, s_record, NULL),
                  HERALD_ERR_INVALID);
    cr_assert_not_null (strstr (herald_agent_last_error (), "on_parked"));
    herald_agent_destroy (&stateless);
}

Test (herald_schema, chain_rules)
{
    s_agent ();
    cr_assert_eq (herald_agent_upcaster (at_agent, "OrderPlaced", 1, s_append, ";wh=main"),
                  HERALD_OK);
    cr_assert_eq (herald_agent_upcaster (at_agent, "OrderPlaced", 2, s_append_malloc,
                                         ";prio=0"), HERALD_OK);
    cr_assert_eq (herald_agent_downcaster (at_agent, "OrderPlaced", 3, s_cut, NULL), HERALD_OK);
    //  Up two steps (buffer, then malloc'd), down one, nothing to do
    herald_delivery_t v1 = s_view ("OrderPlaced", 1, "sku=A;qty=3");
    s_convert_expect (&v1, 3, "sku=A;qty=3;wh=main;prio=0");
    s_convert_expect (&v1, 2, "sku=A;qty=3;wh=main");
    s_convert_expect (&v1, 1, "sku=A;qty=3");
    herald_delivery_t v3 = s_view ("OrderPlaced", 3, "sku=A;qty=3;wh=main;prio=0");
    s_convert_expect (&v3, 2, "sku=A;qty=3;wh=main");
    //  Down past the last downcaster: 2 -> 1 is not registered
    s_convert_fails (&v3, 1, "no downcaster 2 -> 1");
    //  A gap: ShipmentSent has 2 -> 3 only
    cr_assert_eq (herald_agent_upcaster (at_agent, "ShipmentSent", 2, s_append, ";x"),
                  HERALD_OK);
    herald_delivery_t s1 = s_view ("ShipmentSent", 1, "id=9");
    s_convert_fails (&s1, 3, "no upcaster 1 -> 2");
    //  The message names type, stored and wanted schema and seq
    s_convert_fails (&s1, 3, "seq 7 of type ShipmentSent is stored at schema 1, the "
                     "handler wants 3");
    //  A failing caster: its message is kept
    cr_assert_eq (herald_agent_upcaster (at_agent, "Refund", 1, s_failing, NULL), HERALD_OK);
    herald_delivery_t r1 = s_view ("Refund", 1, "x");
    s_convert_fails (&r1, 2, "qty is not a number");
    //  A caster that says it wrote past the lent buffer is not trusted
    cr_assert_eq (herald_agent_upcaster (at_agent, "Liar", 1, s_overrun, NULL), HERALD_OK);
    herald_delivery_t l1 = s_view ("Liar", 1, "x");
    s_convert_fails (&l1, 2, "the upcaster 1 -> 2 failed");
    //  No type: as is
    herald_delivery_t untyped = s_view (NULL, 1, "raw");
    s_convert_expect (&untyped, 5, "raw");
    //  The stored schema comes from the envelope; a made-up view has none
    cr_assert_eq (herald_delivery_stored_schema (&v1), 0);
}

//  ---------------------------------------------------------------------
//  Delivery through heraldd

Test (herald_schema, upcast_on_delivery)
{
    s_agent ();
    cr_assert_eq (herald_agent_upcaster (at_agent, "OrderPlaced", 1, s_append, ";wh=main"),
                  HERALD_OK);
    uint64_t first = s_publish ("OrderPlaced", 0, "sku=A;qty=3");    //  absent: 1
    s_publish ("OrderPlaced", 2, "sku=B;qty=1;wh=east");
    s_publish (NULL, 0, "untyped");
    uint64_t last = s_publish ("OrderCancelled", 1, "sku=A");
    s_subscribe ("inventory", 2, HERALD_SCHEMA_STOP);
    s_wait_count (4);
    s_wait_state ("inventory", HERALD_SUB_LIVE, last);
    cr_assert_eq (s_seen.seq [0], first);
    cr_assert_str_eq (s_seen.data [0], "sku=A;qty=3;wh=main");
    cr_assert_eq (s_seen.schema [0], 2);
    cr_assert_eq (s_seen.stored [0], 1, "the envelope stays as stored");
    cr_assert_str_eq (s_seen.data [1], "sku=B;qty=1;wh=east");
    cr_assert_eq (s_seen.schema [1], 2);
    cr_assert_eq (s_seen.stored [1], 2);
    cr_assert_str_eq (s_seen.data [2], "untyped");
    cr_assert_str_eq (s_seen.data [3], "sku=A");        //  a type not declared: as stored
    herald_schema_stats_t stats;
    cr_assert_eq (herald_agent_schema_stats (at_agent, "inventory", &stats), HERALD_OK);
    cr_assert_eq (stats.upcast, 1);
    cr_assert_eq (stats.downcast + stats.skipped + stats.parked + stats.stopped, 0);
    cr_assert_eq (herald_agent_schema_stats (at_agent, "nope", &stats), HERALD_ERR_NOT_FOUND);
    //  The log was not rewritten: a plain subscription sees schema 1 data
    cr_assert_eq (herald_agent_subscribe (at_agent, "plain", NULL,
                                          (herald_start_t) { HERALD_START_BEGINNING, 0 },
                                          s_record, NULL), HERALD_OK);
    s_wait_count (8);
    cr_assert_str_eq (s_seen.data [4], "sku=A;qty=3");
    cr_assert_eq (s_seen.schema [4], 1);
}

Test (herald_schema, downcast_for_an_old_reader)
{
    s_agent ();
    cr_assert_eq (herald_agent_downcaster (at_agent, "OrderPlaced", 2, s_cut, NULL), HERALD_OK);
    s_publish ("OrderPlaced", 1, "sku=A;qty=3");
    uint64_t last = s_publish ("OrderPlaced", 2, "sku=B;qty=1;wh=east");
    s_subscribe ("old-inventory", 1, HERALD_SCHEMA_STOP);
    s_wait_count (2);
    s_wait_state ("old-inventory", HERALD_SUB_LIVE, last);
    cr_assert_str_eq (s_seen.data [0], "sku=A;qty=3");
    cr_assert_str_eq (s_seen.data [1], "sku=B;qty=1");
    cr_assert_eq (s_seen.schema [1], 1);
    cr_assert_eq (s_seen.stored [1], 2);
    herald_schema_stats_t stats;
    cr_assert_eq (herald_agent_schema_stats (at_agent, NULL, &stats), HERALD_OK);
    cr_assert_eq (stats.downcast, 1);
    cr_assert_eq (stats.upcast, 0);
}

Test (herald_schema, stop_names_the_event_and_resumes_once_fixed)
{
    s_agent ();
    uint64_t before = s_publish ("OrderPlaced", 1, "sku=A;qty=3");
    uint64_t newer = s_publish ("OrderPlaced", 2, "sku=B;qty=1;wh=east");
    s_publish ("OrderPlaced", 1, "sku=C;qty=2");
    s_subscribe ("old", 1, HERALD_SCHEMA_STOP);
    herald_sub_status_t status = s_wait_state ("old", HERALD_SUB_FAILED, before);
    cr_assert_eq (status.delivered_seq, before, "the checkpoint stays before the event");
    cr_assert_eq (status.error, HERALD_ERR_UNSUPPORTED);
    char words [160];
    snprintf (words, sizeof words, "event seq %" PRIu64 " of type OrderPlaced is stored at "
              "schema 2, the handler wants 1: no downcaster 2 -> 1", newer);
    cr_assert_not_null (strstr (status.message, words), "message: %s", status.message);
    cr_assert_eq (s_count (), 1, "nothing after the event");
    herald_schema_stats_t stats;
    cr_assert_eq (herald_agent_schema_stats (at_agent, "old", &stats), HERALD_OK);
    cr_assert_eq (stats.stopped, 1);
    //  Registered now: subscribing again delivers it, and what follows
    cr_assert_eq (herald_agent_downcaster (at_agent, "OrderPlaced", 2, s_cut, NULL), HERALD_OK);
    s_subscribe ("old", 1, HERALD_SCHEMA_STOP);
    s_wait_count (3);
    cr_assert_eq (s_seen.seq [1], newer);
    cr_assert_str_eq (s_seen.data [1], "sku=B;qty=1");
    cr_assert_str_eq (s_seen.data [2], "sku=C;qty=2");
}

Test (herald_schema, skip_reports_and_moves_on)
{
    s_agent ();
    //  A gap: 2 -> 3 registered, 1 -> 2 not
    cr_assert_eq (herald_agent_upcaster (at_agent, "OrderPlaced", 2, s_append, ";prio=0"),
                  HERALD_OK);
    uint64_t gap = s_publish ("OrderPlaced", 1, "sku=A;qty=3");
    uint64_t last = s_publish ("OrderPlaced", 2, "sku=B;qty=1;wh=east");
    s_subscribe ("new", 3, HERALD_SCHEMA_SKIP);
    s_wait_count (1);
    s_wait_state ("new", HERALD_SUB_LIVE, last);
    cr_assert_eq (s_seen.seq [0], last);
    cr_assert_str_eq (s_seen.data [0], "sku=B;qty=1;wh=east;prio=0");
    cr_assert_eq (s_seen.errors, 1);
    cr_assert_eq (s_seen.error_code, HERALD_ERR_UNSUPPORTED);
    char words [160];
    snprintf (words, sizeof words, "seq %" PRIu64 " of type OrderPlaced is stored at schema "
              "1, the handler wants 3: no upcaster 1 -> 2", gap);
    cr_assert_not_null (strstr (s_seen.error, words), "on_error: %s", s_seen.error);
    herald_schema_stats_t stats;
    cr_assert_eq (herald_agent_schema_stats (at_agent, "new", &stats), HERALD_OK);
    cr_assert_eq (stats.skipped, 1);
    cr_assert_eq (stats.upcast, 1);
    //  Skipped for good: a restart does not bring it back
    herald_agent_destroy (&at_agent);
    s_agent ();
    cr_assert_eq (herald_agent_upcaster (at_agent, "OrderPlaced", 1, s_append, ";wh=main"),
                  HERALD_OK);
    s_subscribe ("new", 2, HERALD_SCHEMA_SKIP);
    uint64_t after = s_publish ("OrderPlaced", 1, "sku=D;qty=1");
    s_wait_count (1);
    cr_assert_eq (s_seen.seq [0], after);
}

static int s_replayed_count;
static char s_replayed [128];

static int
s_replay_handler (const herald_delivery_t *event, void *arg)
{
    (void) arg;
    s_replayed_count++;
    snprintf (s_replayed, sizeof s_replayed, "%.*s", (int) event->data_len,
              (const char *) event->data);
    return HERALD_OK;
}

static int s_listed;
static uint64_t s_listed_seq;

static void
s_list (const herald_delivery_t *event, const char *reason, void *arg)
{
    (void) arg;
    s_listed++;
    s_listed_seq = event->seq;
    cr_assert_not_null (strstr (reason, "qty is not a number"), "reason: %s", reason);
}

Test (herald_schema, park_failing_upcaster_then_replay)
{
    s_agent ();
    cr_assert_eq (herald_agent_upcaster (at_agent, "Refund", 1, s_failing, NULL), HERALD_OK);
    herald_schema_want_t wants [] = { { "Refund", 2 } };
    herald_subscribe_options_t options;
    herald_subscribe_options_init (&options);
    options.wants = wants;
    options.want_count = 1;
    options.on_incompatible = HERALD_SCHEMA_PARK;
    options.on_parked = s_on_parked;
    uint64_t parked = s_publish ("Refund", 1, "amount=x");
    uint64_t last = s_publish ("Refund", 2, "amount=3;why=late");
    cr_assert_eq (herald_agent_subscribe_with (at_agent, "refunds", &options, s_record, NULL),
                  HERALD_OK);
    s_wait_count (1);
    s_wait_state ("refunds", HERALD_SUB_LIVE, last);
    cr_assert_eq (s_seen.seq [0], last);
    cr_assert_eq (s_seen.parked, 1);
    cr_assert_eq (s_seen.parked_seq, parked);
    cr_assert_not_null (strstr (s_seen.parked_reason, "the upcaster 1 -> 2 failed"));
    cr_assert_eq (s_seen.errors, 0, "parking is not an error");
    //  The file lists it, as stored
    s_listed = 0;
    cr_assert_eq (herald_agent_parked (at_agent, "refunds", s_list, NULL), HERALD_OK);
    cr_assert_eq (s_listed, 1);
    cr_assert_eq (s_listed_seq, parked);
    herald_schema_stats_t stats;
    cr_assert_eq (herald_agent_schema_stats (at_agent, "refunds", &stats), HERALD_OK);
    cr_assert_eq (stats.parked, 1);
    //  Replay with the caster still failing: it stays parked
    s_replayed_count = 0;
    cr_assert_eq (herald_agent_parked_replay (at_agent, "refunds", s_replay_handler, NULL),
                  HERALD_ERR_UNSUPPORTED);
    cr_assert_eq (s_replayed_count, 0);
    s_listed = 0;
    cr_assert_eq (herald_agent_parked (at_agent, "refunds", s_list, NULL), HERALD_OK);
    cr_assert_eq (s_listed, 1);
    //  A new agent (the fixed service) with a working caster replays it
    herald_agent_destroy (&at_agent);
    s_agent ();
    cr_assert_eq (herald_agent_upcaster (at_agent, "Refund", 1, s_append, ";why=none"),
                  HERALD_OK);
    cr_assert_eq (herald_agent_subscribe_with (at_agent, "refunds", &options, s_record, NULL),
                  HERALD_OK);
    cr_assert_eq (herald_agent_parked_replay (at_agent, "refunds", s_replay_handler, NULL),
                  HERALD_OK, "%s", herald_agent_last_error ());
    cr_assert_eq (s_replayed_count, 1);
    cr_assert_str_eq (s_replayed, "amount=x;why=none");
    s_listed = 0;
    cr_assert_eq (herald_agent_parked (at_agent, "refunds", s_list, NULL), HERALD_OK);
    cr_assert_eq (s_listed, 0, "replayed events leave the file");
    //  And the subscription did not pass it again (its checkpoint moved)
    usleep (100 * 1000);
    cr_assert_eq (s_count (), 0);
}

Test (herald_schema, group_subscription_converts)
{
    s_agent ();
    cr_assert_eq (herald_agent_upcaster (at_agent, "OrderPlaced", 1, s_append, ";wh=main"),
                  HERALD_OK);
    s_publish ("OrderPlaced", 1, "sku=A;qty=3");
    s_publish ("OrderPlaced", 3, "sku=B;qty=1;wh=east;prio=1");
    s_publish ("OrderPlaced", 2, "sku=C;qty=1;wh=east");
    herald_group_options_t group;
    herald_group_options_init (&group);
    group.partitions = 1;
    herald_schema_want_t wants [] = { { "OrderPlaced", 2 } };
    herald_subscribe_options_t options;
    herald_subscribe_options_init (&options);
    options.group = &group;
    options.wants = wants;
    options.want_count = 1;
    options.on_incompatible = HERALD_SCHEMA_SKIP;
    cr_assert_eq (herald_agent_subscribe_with (at_agent, "inv-group", &options, s_record, NULL),
                  HERALD_OK, "%s", herald_agent_last_error ());
    s_wait_count (2);
    cr_assert_str_eq (s_seen.data [0], "sku=A;qty=3;wh=main");
    cr_assert_str_eq (s_seen.data [1], "sku=C;qty=1;wh=east");
    cr_assert_eq (s_seen.errors, 1, "schema 3 with no downcaster: skipped and told");
    herald_schema_stats_t stats;
    cr_assert_eq (herald_agent_schema_stats (at_agent, "inv-group", &stats), HERALD_OK);
    cr_assert_eq (stats.upcast, 1);
    cr_assert_eq (stats.skipped, 1);
}

Test (herald_schema, torn_parked_tail_is_cut_and_appends_stay_readable)
{
    s_agent ();
    cr_assert_eq (herald_agent_upcaster (at_agent, "Refund", 1, s_failing, NULL), HERALD_OK);
    herald_schema_want_t wants [] = { { "Refund", 2 } };
    herald_subscribe_options_t options;
    herald_subscribe_options_init (&options);
    options.wants = wants;
    options.want_count = 1;
    options.on_incompatible = HERALD_SCHEMA_PARK;
    uint64_t first = s_publish ("Refund", 1, "amount=x");
    cr_assert_eq (herald_agent_subscribe_with (at_agent, "refunds", &options, s_record, NULL),
                  HERALD_OK);
    s_wait_state ("refunds", HERALD_SUB_LIVE, first);
    herald_agent_destroy (&at_agent);
    //  A crash while parking left half a record
    char path [4096];
    snprintf (path, sizeof path, "%s/parked/refunds.parked", at_state);
    FILE *file = fopen (path, "ab");
    cr_assert_not_null (file);
    fwrite ("\x40\x00\x00\x00\x01\x02", 1, 6, file);
    fclose (file);
    s_agent ();
    cr_assert_eq (herald_agent_upcaster (at_agent, "Refund", 1, s_failing, NULL), HERALD_OK);
    cr_assert_eq (herald_agent_subscribe_with (at_agent, "refunds", &options, s_record, NULL),
                  HERALD_OK);
    uint64_t second = s_publish ("Refund", 1, "amount=y");
    s_wait_state ("refunds", HERALD_SUB_LIVE, second);
    s_listed = 0;
    cr_assert_eq (herald_agent_parked (at_agent, "refunds", s_list, NULL), HERALD_OK);
    cr_assert_eq (s_listed, 2, "both parked events readable after the torn tail");
    cr_assert_eq (s_listed_seq, second);
}

Test (herald_schema, killed_after_park_before_checkpoint_parks_once)
{
    //  The child parks seq `first` and is SIGKILLed before its checkpoint
    //  moves: the event is in doubt, and passed again to the next agent
    s_agent ();
    uint64_t first = s_publish ("Refund", 1, "amount=x");
    herald_agent_destroy (&at_agent);
    char *child = tu_build_program ("tests/schema_child");
    cr_assert_not_null (child);
    char log [4200];
    snprintf (log, sizeof log, "%s/child.log", at_state);
    char state [4200];
    snprintf (state, sizeof state, "%s/child", at_state);
    const char *args [] = { at_broker->api, at_broker->fanout, state, NULL };
    pid_t pid = au_spawn (child, args, log);
    free (child);
    cr_assert_gt (pid, 0);
    int status = 0;
    cr_assert_eq (au_child_wait (pid, WAIT_MS, &status), 0, "the child did not end");
    cr_assert (WIFSIGNALED (status) && WTERMSIG (status) == SIGKILL,
               "the child was not killed from on_parked (status %d)", status);
    //  Same state directory, same subscription: parked again, not twice
    herald_agent_options_t options;
    au_options (&options, at_broker, state);
    at_agent = herald_agent_new ("schema-test", &options);
    cr_assert_not_null (at_agent, "%s", herald_agent_last_error ());
    cr_assert_eq (herald_agent_upcaster (at_agent, "Refund", 1, s_failing, NULL), HERALD_OK);
    herald_schema_want_t wants [] = { { "Refund", 2 } };
    herald_subscribe_options_t sub;
    herald_subscribe_options_init (&sub);
    sub.wants = wants;
    sub.want_count = 1;
    sub.on_incompatible = HERALD_SCHEMA_PARK;
    sub.on_parked = s_on_parked;
    cr_assert_eq (herald_agent_subscribe_with (at_agent, "refunds", &sub, s_record, NULL),
                  HERALD_OK);
    s_wait_state ("refunds", HERALD_SUB_LIVE, first);
    cr_assert_eq (s_seen.parked, 1, "passed again (it was in doubt)");
    s_listed = 0;
    cr_assert_eq (herald_agent_parked (at_agent, "refunds", s_list, NULL), HERALD_OK);
    cr_assert_eq (s_listed, 1, "parked once, not twice");
    cr_assert_eq (s_listed_seq, first);
}
