/*  =========================================================================
    test_herald_agent_security - the agent with CURVE keys against heraldd

    A real heraldd with --curve-secret and --acl; every key is made with
    zcert_new / zcert_save in the test's temporary directory, and the ACL
    is written there (replaced by rename, then SIGHUP, to reload it).  The
    agent: publishes and subscribes with a granted key; with a key the
    broker does not know it counts auth_refused and, once the key is added
    to the ACL, reconnects by itself and goes on with nothing lost (libzmq
    alone never retries a refused handshake); a publish outside the key's
    grants completes with HERALD_ERR_UNAUTHORIZED and leaves the outbox; a
    subscription whose REPLAY is refused fails with on_error naming it;
    server_key = NEW,OLD follows a broker-key rotation; read and replay go
    through the warm connections; bad key options are refused at creation.
    =========================================================================
*/

#include <criterion/criterion.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agentutil.h"
#include "fakebroker.h"
#include "testutil.h"

#define WAIT_MS         20000
#define START_MS        15000

static char *s_dir;                     //  keys, ACL, the broker's files
static char *s_state;                   //  the agent's state directory
static bu_broker_t *s_broker;
static herald_agent_t *s_agent;
static au_recorder_t *s_recorder;
static int s_scope_port;                //  the orders-view scope's fanout
static char s_alice [41], s_bob [41], s_carol [41], s_audit [41], s_dave [41];
static bool s_dave_reads_all;           //  dave: read = * (else scope orders-view)
static char s_server [41], s_server_new [41];

//  A zcert keypair dir/NAME.key (+ _secret, 0600); its public key in z85.
static void
s_keygen (const char *name, char *z85)
{
    zcert_t *cert = zcert_new ();
    cr_assert_not_null (cert);
    char path [512];
    snprintf (path, sizeof path, "%s/%s.key", s_dir, name);
    cr_assert_eq (zcert_save (cert, path), 0, "zcert_save %s", path);
    snprintf (z85, 41, "%s", zcert_public_txt (cert));
    zcert_destroy (&cert);
}

static char *
s_file (const char *name)
{
    static char paths [8][512];
    static int next;
    char *path = paths [next++ % 8];
    snprintf (path, 512, "%s/%s", s_dir, name);
    return path;
}

//  Write the ACL (by rename: the broker never reads half a file), with bob
//  in it or not, and have a running broker reload it.
static bool s_with_bob;                 //  what the last s_acl wrote

static void
s_acl (bool with_bob)
{
    s_with_bob = with_bob;
    char text [8192];
    snprintf (text, sizeof text,
              "[scope orders-view]\n"
              "read = orders.\n"
              "fanout = tcp://127.0.0.1:%d\n"
              "\n"
              "[user alice]\n"
              "key = %s\n"
              "read = *\n"
              "publish = orders. stock.\n"
              "admin = status\n"
              "\n"
              "[user carol]\n"
              "key = %s\n"
              "scope = orders-view\n"
              "publish = orders.\n"
              "\n"
              "[user audit]\n"
              "key = %s\n"
              "publish = audit.\n"
              "\n"
              "[user dave]\n"
              "key = %s\n"
              "%s\n"
              "publish = orders.\n"
              "%s%s%s",
              s_scope_port, s_alice, s_carol, s_audit, s_dave,
              s_dave_reads_all? "read = *": "scope = orders-view",
              with_bob? "\n[user bob]\nkey = ": "", with_bob? s_bob: "",
              with_bob? "\nread = *\npublish = orders.\n": "");
    char *temp = s_file ("acl.new");
    cr_assert_eq (tu_write_file (temp, text, strlen (text)), 0);
    cr_assert_eq (chmod (temp, 0600), 0);
    cr_assert_eq (rename (temp, s_file ("acl")), 0);
    if (s_broker && s_broker->pid)
        kill (s_broker->pid, SIGHUP);
}

//  STATUS answered on a CURVE DEALER with alice's key: the broker is up.
static bool
s_answers (const char *server_key, int timeout_ms)
{
    zcert_t *cert = zcert_load (s_file ("alice.key"));
    cr_assert_not_null (cert);
    int64_t deadline = zclock_mono () + timeout_ms;
    bool answered = false;
    while (!answered && zclock_mono () < deadline) {
        zsock_t *dealer = zsock_new (ZMQ_DEALER);
        zsock_set_linger (dealer, 0);
        zcert_apply (cert, dealer);
        zsock_set_curve_serverkey (dealer, server_key);
        zsock_connect (dealer, "%s", s_broker->api);
        zmsg_t *msg = zmsg_new ();
        zmsg_addstr (msg, "STATUS");
        const uint8_t body [] = { 0x81, 0xa3, 'r', 'i', 'd', 0x01 };     //  {rid: 1}
        zmsg_addmem (msg, body, sizeof body);
        zmsg_send (&msg, dealer);
        zpoller_t *poller = zpoller_new (dealer, NULL);
        answered = zpoller_wait (poller, 300) != NULL;
        zpoller_destroy (&poller);
        zsock_destroy (&dealer);
    }
    zcert_destroy (&cert);
    return answered;
}

//  Start the broker.  The scope's fanout port was chosen free when the
//  suite began, and a test that restarts the broker leaves it unbound for
//  a moment, when another test running beside this one may take it (seen:
//  "cannot bind the fanout of scope orders-view ... Address already in
//  use"): then choose another, rewrite the ACL, and start again.
static void
s_broker_start (void)
{
    char log [4096] = "";
    for (int tries = 0; tries < 3; tries++) {
        *log = 0;
        cr_assert_eq (bu_broker_spawn (s_broker), 0, "heraldd did not start");
        if (s_answers (s_server, START_MS))
            return;
        bu_broker_log_tail (s_broker, log, sizeof log);
        if (!strstr (log, "cannot bind the fanout of scope") || !strstr (log, "in use"))
            break;
        bu_broker_kill (s_broker);
        s_scope_port = bu_free_port ();
        cr_assert (s_scope_port > 0);
        s_acl (s_with_bob);
    }
    cr_assert (!*log, "heraldd with CURVE did not answer STATUS:\n%s", log);
}

static void
s_setup (void)
{
    zsys_handler_set (NULL);
    s_dir = tu_tmpdir_new ("agent-sec");
    s_state = tu_tmpdir_new ("agent-sec-state");
    s_recorder = au_recorder_new ();
    cr_assert (s_dir && s_state && s_recorder);
    s_keygen ("broker", s_server);
    s_keygen ("broker-new", s_server_new);
    s_keygen ("alice", s_alice);
    s_keygen ("bob", s_bob);
    s_keygen ("carol", s_carol);
    s_keygen ("audit", s_audit);
    s_keygen ("dave", s_dave);
    s_dave_reads_all = false;
    s_scope_port = bu_free_port ();
    cr_assert (s_scope_port > 0);
    s_acl (false);
    const char *extra [] = {
        "--curve-secret", s_file ("broker.key_secret"), "--acl", s_file ("acl"),
        "--acl-check-ms", "100", "--audit-log", s_file ("audit.log"), NULL
    };
    s_broker = bu_broker_new ("agent-sec-broker", extra);
    cr_assert_not_null (s_broker, "cannot set up a broker (HERALD_BUILDDIR=%s)",
                        getenv ("HERALD_BUILDDIR"));
    s_broker_start ();
}

static void
s_teardown (void)
{
    herald_agent_destroy (&s_agent);
    au_recorder_destroy (&s_recorder);
    bu_broker_destroy (&s_broker);
    tu_tmpdir_destroy (&s_state);
    tu_tmpdir_destroy (&s_dir);
}

TestSuite (herald_agent_security, .init = s_setup, .fini = s_teardown, .timeout = 120);

//  on_error: the last call's subscription, code and message.
typedef struct {
    pthread_mutex_t lock;
    char subscription [64];
    int code;
    char message [512];
    int calls;
} s_errors_t;

static s_errors_t s_errors = { .lock = PTHREAD_MUTEX_INITIALIZER };

static void
s_on_error (const char *subscription, int code, const char *message, void *arg)
{
    (void) arg;
    pthread_mutex_lock (&s_errors.lock);
    snprintf (s_errors.subscription, sizeof s_errors.subscription, "%s",
              subscription? subscription: "");
    snprintf (s_errors.message, sizeof s_errors.message, "%s", message? message: "");
    s_errors.code = code;
    s_errors.calls++;
    pthread_mutex_unlock (&s_errors.lock);
}

static herald_agent_t *
s_new_agent (const char *user, const char *server_key)
{
    herald_agent_options_t options;
    herald_agent_options_init (&options);
    options.api = s_broker->api;
    options.state_dir = s_state;
    options.timeout_ms = 5000;
    options.on_error = s_on_error;
    char key_name [64];
    snprintf (key_name, sizeof key_name, "%s.key_secret", user);
    options.key_file = s_file (key_name);
    options.server_key = server_key? server_key: s_server;
    herald_agent_t *agent = herald_agent_new ("sec-test", &options);
    cr_assert_not_null (agent, "herald_agent_new: %s", herald_agent_last_error ());
    return agent;
}

static herald_err
s_publish (herald_agent_t *agent, const char *topic, herald_publish_result_t *result)
{
    herald_outgoing_t event = { .topic = topic, .data = "{}", .data_len = 2 };
    return herald_agent_publish (agent, &event, result, 0);
}

static herald_agent_stats_t
s_stats (void)
{
    herald_agent_stats_t stats;
    herald_agent_stats (s_agent, &stats);
    return stats;
}

//  ---------------------------------------------------------------------

Test (herald_agent_security, a_granted_key_publishes_and_subscribes)
{
    s_agent = s_new_agent ("alice", NULL);
    const char *prefixes [] = { "orders.", NULL };
    herald_start_t start = { HERALD_START_BEGINNING, 0 };
    cr_assert_eq (herald_agent_subscribe (s_agent, "orders", prefixes, start, au_record,
                                          s_recorder), HERALD_OK, "%s",
                  herald_agent_last_error ());
    herald_publish_result_t result;
    for (int index = 0; index < 5; index++)
        cr_assert_eq (s_publish (s_agent, index % 2? "orders.1": "stock.1", &result), HERALD_OK,
                      "%s", herald_agent_last_error ());
    cr_assert_eq (au_wait_count (s_recorder, 2, WAIT_MS), 2, "the subscription got %zu of 2",
                  s_recorder->count);
    //  Live too: once live, an event reaches the handler through the fanout
    herald_sub_status_t status;
    int64_t deadline = zclock_mono () + WAIT_MS;
    while (herald_agent_sub_status (s_agent, "orders", &status) == HERALD_OK
       &&  status.state != HERALD_SUB_LIVE && zclock_mono () < deadline)
        usleep (10000);
    cr_assert_eq (status.state, HERALD_SUB_LIVE);
    cr_assert_eq (s_publish (s_agent, "orders.2", &result), HERALD_OK);
    cr_assert_eq (au_wait_count (s_recorder, 3, WAIT_MS), 3);
    char message [256];
    cr_assert_eq (au_check_once_in_order (s_recorder, message, sizeof message), 0, "%s",
                  message);
    cr_assert_eq (s_stats ().auth_refused, 0);
}

Test (herald_agent_security, an_unknown_key_is_retried_by_the_agent_until_the_acl_admits_it)
{
    //  bob is not in the ACL: every handshake is refused
    s_agent = s_new_agent ("bob", NULL);
    const char *prefixes [] = { "orders.", NULL };
    herald_start_t start = { HERALD_START_BEGINNING, 0 };
    //  (subscribe at the beginning needs no broker round trip)
    cr_assert_eq (herald_agent_subscribe (s_agent, "orders", prefixes, start, au_record,
                                          s_recorder), HERALD_OK, "%s",
                  herald_agent_last_error ());
    for (int index = 0; index < 5; index++) {
        herald_outgoing_t event = { .topic = "orders.bob", .data = "{}", .data_len = 2 };
        cr_assert_eq (herald_agent_publish_async (s_agent, &event, NULL, NULL, NULL), HERALD_OK);
    }
    int64_t deadline = zclock_mono () + WAIT_MS;
    while (s_stats ().auth_refused < 2 && zclock_mono () < deadline)
        usleep (20000);
    //  Two: the first refusal, and the agent's own retry a second later
    cr_assert_geq (s_stats ().auth_refused, 2, "auth_refused %" PRIu64,
                   s_stats ().auth_refused);
    cr_assert_eq (s_stats ().published, 0);
    cr_assert_eq (s_stats ().outbox_depth, 5);
    cr_assert_eq (s_recorder->count, 0);
    //  A read meanwhile times out, and says why
    au_recorder_t *none = au_recorder_new ();
    cr_assert_eq (herald_agent_read (s_agent, "orders.bob", 0, 0, au_record, none, 300),
                  HERALD_ERR_TIMEOUT);
    cr_assert (strstr (herald_agent_last_error (), "it refuses this key"), "%s",
               herald_agent_last_error ());
    au_recorder_destroy (&none);
    //  Admit bob: no restart of anything; the agent's next retry (within
    //  its backoff: 2 s, 4 s ...) goes through and everything flows
    s_acl (true);
    cr_assert_eq (herald_agent_flush (s_agent, WAIT_MS), HERALD_OK, "%s",
                  herald_agent_last_error ());
    cr_assert_eq (s_stats ().published, 5);
    cr_assert_eq (au_wait_count (s_recorder, 5, WAIT_MS), 5, "delivered %zu of 5",
                  s_recorder->count);
    char message [256];
    cr_assert_eq (au_check_once_in_order (s_recorder, message, sizeof message), 0, "%s",
                  message);
}

Test (herald_agent_security, a_publish_outside_the_grants_is_unauthorized_and_leaves_the_outbox)
{
    s_agent = s_new_agent ("alice", NULL);
    herald_publish_result_t result;
    cr_assert_eq (s_publish (s_agent, "orders.1", &result), HERALD_OK, "%s",
                  herald_agent_last_error ());
    cr_assert_eq (s_publish (s_agent, "billing.1", &result), HERALD_ERR_UNAUTHORIZED,
                  "publish to billing.1: %s", herald_agent_last_error ());
    cr_assert_eq (result.err, HERALD_ERR_UNAUTHORIZED);
    //  Several in one batch: only the forbidden one fails
    uint8_t ids [3][16];
    const char *topics [] = { "orders.2", "billing.2", "stock.2" };
    for (int index = 0; index < 3; index++) {
        herald_outgoing_t event = { .topic = topics [index], .data = "{}", .data_len = 2 };
        cr_assert_eq (herald_agent_publish_async (s_agent, &event, NULL, NULL, ids [index]),
                      HERALD_OK);
    }
    cr_assert_eq (herald_agent_flush (s_agent, WAIT_MS), HERALD_OK);
    herald_agent_stats_t stats = s_stats ();
    cr_assert_eq (stats.outbox_depth, 0, "the refused events left the outbox");
    cr_assert_eq (stats.published, 3);
    cr_assert_eq (stats.publish_errors, 2);
    //  What is stored: orders.1, orders.2, stock.2; nothing of billing
    au_recorder_t *all = au_recorder_new ();
    herald_range_t range = { 0 };
    cr_assert_eq (herald_agent_replay (s_agent, &range, au_record, all, 0, NULL), HERALD_OK,
                  "%s", herald_agent_last_error ());
    cr_assert_eq (all->count, 3);
    au_recorder_destroy (&all);
}

Test (herald_agent_security, a_subscription_whose_replay_is_refused_fails_with_on_error)
{
    //  carol reads through orders-view only
    s_agent = s_new_agent ("carol", NULL);
    const char *prefixes [] = { "billing.", NULL };
    herald_start_t start = { HERALD_START_BEGINNING, 0 };
    cr_assert_eq (herald_agent_subscribe (s_agent, "bills", prefixes, start, au_record,
                                          s_recorder), HERALD_OK);
    herald_sub_status_t status;
    int64_t deadline = zclock_mono () + WAIT_MS;
    while (herald_agent_sub_status (s_agent, "bills", &status) == HERALD_OK
       &&  status.state != HERALD_SUB_FAILED && zclock_mono () < deadline)
        usleep (10000);
    cr_assert_eq (status.state, HERALD_SUB_FAILED);
    cr_assert_eq (status.error, HERALD_ERR_UNAUTHORIZED, "error %d: %s", status.error,
                  status.message);
    deadline = zclock_mono () + WAIT_MS;
    while (!s_errors.calls && zclock_mono () < deadline)
        usleep (10000);
    pthread_mutex_lock (&s_errors.lock);
    cr_assert_str_eq (s_errors.subscription, "bills");
    cr_assert_eq (s_errors.code, HERALD_ERR_UNAUTHORIZED);
    cr_assert (strstr (s_errors.message, "replay refused"), "%s", s_errors.message);
    s_errors.calls = 0;
    pthread_mutex_unlock (&s_errors.lock);
}

Test (herald_agent_security, a_scoped_key_goes_live_on_the_fanout_welcome_names)
{
    //  carol reads through orders-view: its own fanout, which WELCOME names
    s_agent = s_new_agent ("carol", NULL);
    const char *mine [] = { "orders.", NULL };
    herald_start_t start = { HERALD_START_BEGINNING, 0 };
    herald_sub_status_t status;
    cr_assert_eq (herald_agent_subscribe (s_agent, "orders", mine, start, au_record,
                                          s_recorder), HERALD_OK);
    int64_t deadline = zclock_mono () + WAIT_MS;
    while (herald_agent_sub_status (s_agent, "orders", &status) == HERALD_OK
       &&  status.state != HERALD_SUB_LIVE && zclock_mono () < deadline)
        usleep (10000);
    cr_assert_eq (status.state, HERALD_SUB_LIVE, "state %d: %s", status.state, status.message);
    herald_publish_result_t result;
    cr_assert_eq (s_publish (s_agent, "orders.c", &result), HERALD_OK, "%s",
                  herald_agent_last_error ());
    cr_assert_eq (au_wait_count (s_recorder, 1, WAIT_MS), 1);
}

//  Wait until subscription name is live.
static void
s_wait_live (const char *name)
{
    herald_sub_status_t status;
    int64_t deadline = zclock_mono () + WAIT_MS;
    while (herald_agent_sub_status (s_agent, name, &status) == HERALD_OK
       &&  status.state != HERALD_SUB_LIVE && zclock_mono () < deadline)
        usleep (10000);
    cr_assert_eq (status.state, HERALD_SUB_LIVE, "state %d: %s", status.state, status.message);
}

Test (herald_agent_security, a_key_whose_read_view_moves_follows_the_fanout_welcome_names)
{
    //  dave reads through orders-view, then a reload makes it read-all:
    //  the broker cuts it from the scope socket, which refuses it from then
    //  on; the agent asks WELCOME again and moves to the main fanout
    s_agent = s_new_agent ("dave", NULL);
    const char *prefixes [] = { "orders.", NULL };
    herald_start_t start = { HERALD_START_BEGINNING, 0 };
    cr_assert_eq (herald_agent_subscribe (s_agent, "orders", prefixes, start, au_record,
                                          s_recorder), HERALD_OK);
    s_wait_live ("orders");
    herald_publish_result_t result;
    cr_assert_eq (s_publish (s_agent, "orders.1", &result), HERALD_OK, "%s",
                  herald_agent_last_error ());
    cr_assert_eq (au_wait_count (s_recorder, 1, WAIT_MS), 1);
    s_dave_reads_all = true;
    s_acl (false);
    int64_t deadline = zclock_mono () + WAIT_MS;
    while (s_stats ().auth_refused == 0 && zclock_mono () < deadline)
        usleep (10000);
    cr_assert_geq (s_stats ().auth_refused, 1, "the scope socket never refused dave");
    //  Live again, on the main fanout: events reach the handler, and the
    //  broker's heartbeats keep it reachable
    for (int index = 2; index <= 4; index++)
        cr_assert_eq (s_publish (s_agent, "orders.1", &result), HERALD_OK, "%s",
                      herald_agent_last_error ());
    cr_assert_eq (au_wait_count (s_recorder, 4, WAIT_MS), 4, "delivered %zu of 4",
                  s_recorder->count);
    s_wait_live ("orders");
    uint64_t head = s_stats ().broker_head;
    deadline = zclock_mono () + WAIT_MS;
    while (s_stats ().broker_head < 4 && zclock_mono () < deadline)
        usleep (10000);
    cr_assert_geq (s_stats ().broker_head, 4, "no heartbeat after the move (head %" PRIu64
                   ")", head);
    char message [256];
    cr_assert_eq (au_check_once_in_order (s_recorder, message, sizeof message), 0, "%s",
                  message);
}

Test (herald_agent_security, a_publish_only_key_publishes_without_a_fanout)
{
    s_agent = s_new_agent ("audit", NULL);
    herald_publish_result_t result;
    cr_assert_eq (s_publish (s_agent, "audit.1", &result), HERALD_OK, "%s",
                  herald_agent_last_error ());
    cr_assert_eq (s_publish (s_agent, "orders.1", &result), HERALD_ERR_UNAUTHORIZED);
    cr_assert_eq (s_stats ().auth_refused, 0, "no fanout was tried (it would be refused)");
}

//  read and replay from several threads at once, many times: each call on
//  a warm connection of the pool, none mixing another's replies.
typedef struct {
    herald_agent_t *agent;
    int failures;
    char why [256];
} s_reader_t;

static int
s_count (const herald_delivery_t *event, void *arg)
{
    (void) event;
    (*(size_t *) arg)++;
    return HERALD_OK;
}

static void *
s_reader (void *arg)
{
    s_reader_t *self = (s_reader_t *) arg;
    for (int round = 0; round < 25 && !self->failures; round++) {
        size_t count = 0;
        herald_err rc = herald_agent_read (self->agent, "orders.r", 0, 0, s_count, &count, 0);
        if (rc != HERALD_OK || count != 10) {
            self->failures++;
            snprintf (self->why, sizeof self->why, "read: rc %d, %zu events: %s", rc, count,
                      herald_agent_last_error ());
        }
        count = 0;
        const char *prefixes [] = { "orders.", NULL };
        herald_range_t range = { .prefixes = prefixes };
        uint64_t last = 0;
        rc = herald_agent_replay (self->agent, &range, s_count, &count, 0, &last);
        if (rc != HERALD_OK || count != 10 || last == 0) {
            self->failures++;
            snprintf (self->why, sizeof self->why, "replay: rc %d, %zu events: %s", rc, count,
                      herald_agent_last_error ());
        }
    }
    return NULL;
}

//  Lines of the broker's audit log holding every one of needles (NULL-
//  terminated).  The ZAP handler writes one auth_ok line per admitted
//  handshake (the default log level): that count is the connections a key
//  opened, and unlike the host's TIME_WAIT sockets it counts only this
//  broker's, whatever else runs on the machine.
static size_t
s_audit_count (const char *const *needles)
{
    FILE *file = fopen (s_file ("audit.log"), "r");
    if (!file)
        return 0;
    char line [2048];
    size_t count = 0;
    while (fgets (line, sizeof line, file)) {
        bool all = true;
        for (size_t index = 0; needles [index] && all; index++)
            all = strstr (line, needles [index]) != NULL;
        count += all;
    }
    fclose (file);
    return count;
}

Test (herald_agent_security, read_and_replay_run_on_warm_connections)
{
    s_agent = s_new_agent ("alice", NULL);
    herald_publish_result_t result;
    for (int index = 0; index < 10; index++)
        cr_assert_eq (s_publish (s_agent, "orders.r", &result), HERALD_OK);
    s_reader_t readers [3];
    pthread_t threads [3];
    int64_t started = zclock_mono ();
    for (int index = 0; index < 3; index++) {
        readers [index] = (s_reader_t) { .agent = s_agent };
        cr_assert_eq (pthread_create (&threads [index], NULL, s_reader, &readers [index]), 0);
    }
    for (int index = 0; index < 3; index++)
        pthread_join (threads [index], NULL);
    for (int index = 0; index < 3; index++)
        cr_assert_eq (readers [index].failures, 0, "%s", readers [index].why);
    int64_t took = zclock_mono () - started;
    //  A READ outside the key's read set is refused as such
    au_recorder_t *none = au_recorder_new ();
    herald_agent_destroy (&s_agent);
    s_agent = s_new_agent ("carol", NULL);
    cr_assert_eq (herald_agent_read (s_agent, "stock.1", 0, 0, au_record, none, 0),
                  HERALD_ERR_UNAUTHORIZED, "%s", herald_agent_last_error ());
    au_recorder_destroy (&none);
    //  150 calls from 3 threads on at most 4 connections, not one each
    //  (each would be a CURVE handshake and a ZAP round trip).  The audit
    //  log is written in order by one thread: once carol's handshake is in
    //  it, every one of alice's before it is too
    const char *carol_api [] = { "\"event\":\"auth_ok\"", "\"user\":\"carol\"",
                                 "\"domain\":\"herald.api\"", NULL };
    int64_t deadline = zclock_mono () + WAIT_MS;
    while (s_audit_count (carol_api) == 0 && zclock_mono () < deadline)
        usleep (10000);
    cr_assert_gt (s_audit_count (carol_api), 0, "carol's handshake is not in the audit log");
    const char *alice_api [] = { "\"event\":\"auth_ok\"", "\"user\":\"alice\"",
                                 "\"domain\":\"herald.api\"", NULL };
    size_t handshakes = s_audit_count (alice_api);
    cr_assert_gt (handshakes, 0, "no auth_ok line for alice: the count would prove nothing");
    cr_assert_lt (handshakes, 10, "%zu api handshakes for 10 publishes and 150 calls",
                  handshakes);
    cr_log_info ("150 read/replay calls in %" PRId64 " ms", took);
}

Test (herald_agent_security, server_key_new_old_follows_a_broker_key_rotation)
{
    //  The broker runs with the OLD key; the agent lists NEW first
    char keys [100];
    snprintf (keys, sizeof keys, "%s,%s", s_server_new, s_server);
    s_agent = s_new_agent ("alice", keys);
    const char *prefixes [] = { "orders.", NULL };
    herald_start_t start = { HERALD_START_BEGINNING, 0 };
    cr_assert_eq (herald_agent_subscribe (s_agent, "orders", prefixes, start, au_record,
                                          s_recorder), HERALD_OK);
    herald_publish_result_t result;
    cr_assert_eq (s_publish (s_agent, "orders.1", &result), HERALD_OK, "%s",
                  herald_agent_last_error ());
    cr_assert_eq (au_wait_count (s_recorder, 1, WAIT_MS), 1);
    herald_range_t range = { 0 };
    size_t count = 0;
    cr_assert_eq (herald_agent_replay (s_agent, &range, s_count, &count, 0, NULL), HERALD_OK,
                  "%s", herald_agent_last_error ());
    //  Rotate: the broker restarts with the NEW secret (same ports)
    cr_assert_eq (bu_broker_stop (s_broker, 10000), 0);
    for (size_t index = 0; s_broker->extra [index]; index++)
        if (strcmp (s_broker->extra [index], "--curve-secret") == 0) {
            free (s_broker->extra [index + 1]);
            s_broker->extra [index + 1] = strdup (s_file ("broker-new.key_secret"));
        }
    cr_assert_eq (bu_broker_respawn (s_broker), 0);
    cr_assert (s_answers (s_server_new, START_MS), "heraldd did not come back with its new key");
    for (int index = 2; index <= 3; index++) {
        herald_outgoing_t event = { .topic = "orders.1", .data = "{}", .data_len = 2 };
        cr_assert_eq (herald_agent_publish_async (s_agent, &event, NULL, NULL, NULL), HERALD_OK);
    }
    cr_assert_eq (herald_agent_flush (s_agent, WAIT_MS), HERALD_OK, "%s",
                  herald_agent_last_error ());
    cr_assert_eq (au_wait_count (s_recorder, 3, WAIT_MS), 3, "delivered %zu of 3",
                  s_recorder->count);
    char message [256];
    cr_assert_eq (au_check_once_in_order (s_recorder, message, sizeof message), 0, "%s",
                  message);
    cr_assert_eq (s_stats ().auth_refused, 0);
    //  read/replay follow: their warm connection had the old key
    count = 0;
    cr_assert_eq (herald_agent_replay (s_agent, &range, s_count, &count, 0, NULL), HERALD_OK,
                  "%s", herald_agent_last_error ());
    cr_assert_eq (count, 3);
}

Test (herald_agent_security, bad_key_options_are_refused_at_creation)
{
    herald_agent_options_t options;
    struct {
        const char *key_file;
        const char *server_key;
        const char *expect;
    } cases [] = {
        { s_file ("alice.key"), s_server, "holds no secret key" },
        { s_file ("nobody.key_secret"), s_server, "No such file" },
        { s_file ("alice.key_secret"), "not-a-key", "neither a Z85 public key" },
        { s_file ("alice.key_secret"), "@/nonexistent/broker.key", "No such file" },
        { s_file ("alice.key_secret"), NULL, "without server_key" },
        { NULL, s_server, "without key_file" },
        { s_file ("alice.key_secret"), ",", "empty item" },
        { s_file ("acl"), s_server, "not a zcert key file" },
    };
    for (size_t index = 0; index < sizeof cases / sizeof cases [0]; index++) {
        herald_agent_options_init (&options);
        options.api = s_broker->api;
        options.state_dir = s_state;
        options.key_file = cases [index].key_file;
        options.server_key = cases [index].server_key;
        herald_agent_t *agent = herald_agent_new ("sec-test", &options);
        cr_assert_null (agent, "case %zu accepted", index);
        cr_assert_eq (herald_agent_last_errcode (), HERALD_ERR_INVALID);
        cr_assert (strstr (herald_agent_last_error (), cases [index].expect),
                   "case %zu: '%s' does not say '%s'", index, herald_agent_last_error (),
                   cases [index].expect);
    }
    //  A secret readable by the group is refused, and nothing is created
    char *state = tu_path (s_state, "fresh");
    cr_assert_eq (chmod (s_file ("alice.key_secret"), 0640), 0);
    herald_agent_options_init (&options);
    options.api = s_broker->api;
    options.state_dir = state;
    options.key_file = s_file ("alice.key_secret");
    options.server_key = s_server;
    cr_assert_null (herald_agent_new ("sec-test", &options));
    cr_assert (strstr (herald_agent_last_error (), "group or others"), "%s",
               herald_agent_last_error ());
    struct stat status;
    cr_assert_neq (stat (state, &status), 0, "the state directory was created");
    free (state);
    cr_assert_eq (herald_agent_options_size (), sizeof (herald_agent_options_t));
}

//  ---------------------------------------------------------------------
//  The fanout's broker messages (a scripted broker: a real one sends only
//  those it knows).  A secure broker opens every fanout connection with a
//  single-frame `$hello`; a newer one may send other `$` topics with a
//  body.  Neither is an event, whatever its body holds.

static void
s_fake_setup (void)
{
    zsys_handler_set (NULL);
    fb_setup ("agent-sec-fake", "sec-fake");
}

TestSuite (herald_agent_fanout_messages, .init = s_fake_setup, .fini = fb_teardown,
           .timeout = 60);

Test (herald_agent_fanout_messages, unknown_dollar_topics_with_a_body_are_never_events)
{
    fb_append ("g.1", 0);
    fb_go_live ();
    cr_assert_eq (au_wait_count (fb_recorder, 1, FB_WAIT_MS), 1);
    //  Event 2 is stored; its very envelope comes first under `$future`,
    //  then `$hello` alone: the handler must see neither
    fb_append ("g.2", 0);
    zsock_t *pub = fb_fake.pub;
    zmq_send (zsock_resolve (pub), "$future", 7, ZMQ_SNDMORE);
    zmq_send (zsock_resolve (pub), fb_fake.envelopes [2].data, fb_fake.envelopes [2].size, 0);
    zmq_send (zsock_resolve (pub), "$hello", 6, 0);
    fb_serve (300);
    cr_assert_eq (fb_recorder->count, 1, "a $ topic's body was delivered as an event");
    cr_assert_eq (fb_errors, 0);
    //  The live stream goes on: the real event 2 arrives, once
    fb_fanout (2);
    fb_heartbeat ();
    fb_serve (100);
    cr_assert_eq (au_wait_count (fb_recorder, 2, FB_WAIT_MS), 2);
    char message [256];
    cr_assert_eq (au_check_once_in_order (fb_recorder, message, sizeof message), 0, "%s",
                  message);
}
