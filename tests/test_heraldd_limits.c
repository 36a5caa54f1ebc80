/*  =========================================================================
    test_heraldd_limits - a real heraldd with CURVE keys: the limits per
    user and the audit log

    Keys are real zcert certificates; the broker runs with --curve-secret,
    --acl and --audit-log; clients are CURVE DEALERs and the C agent with
    key_file and server_key.  What is checked:
    - a user publishing at twice its rate gets ERROR overloaded with
      retry_ms, is let through at its rate, and STATUS counts rate_limited;
      another user publishing beside it is never refused;
    - an agent publishing faster than its rate drains its outbox at that
      rate and loses nothing;
    - the audit file gets a line for each kind of refusal (auth_refused,
      unauthorized, rate_limited) and for a reload, and SIGHUP reopens it.
    =========================================================================
*/

#include <criterion/criterion.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <czmq.h>

#include "herald.h"
#include "brokerutil.h"
#include "testutil.h"

#define RATE        200             //  the limited user's events/s
#define BURST       20
#define BATCH       10
#define S_SLOW_MS   20000           //  waits that only tell slow (loaded, sanitized) from stuck
#define AGENT_RATE  1000            //  the agent's user: more than one agent batch
#define AGENT_BURST 100             //  (1000 events at most) per second
#define AGENT_BATCH 1000

typedef struct {
    char *dir;
    bu_broker_t *broker;
    zcert_t *server;
    char *acl;
    char *audit;
} s_fixture_t;

static s_fixture_t s_fx;

static int64_t
s_now_ms (void)
{
    return zclock_mono ();
}

//  A zcert saved as dir/NAME.key and dir/NAME.key_secret (0600).  Caller
//  owns the cert.
static zcert_t *
s_cert (const char *name)
{
    zcert_t *cert = zcert_new ();
    cr_assert_not_null (cert);
    char *path = zsys_sprintf ("%s/%s.key", s_fx.dir, name);
    cr_assert_eq (zcert_save (cert, path), 0);
    char *secret = zsys_sprintf ("%s_secret", path);
    chmod (secret, 0600);
    zstr_free (&secret);
    zstr_free (&path);
    return cert;
}

static void
s_write_acl (const char *text)
{
    //  Written aside and renamed: the broker never reads half a file
    char *temp = zsys_sprintf ("%s.new", s_fx.acl);
    cr_assert_eq (tu_write_file (temp, text, strlen (text)), 0);
    chmod (temp, 0600);
    cr_assert_eq (rename (temp, s_fx.acl), 0);
    zstr_free (&temp);
}

static zcert_t *s_limited, *s_free, *s_ops, *s_stranger, *s_bulk;

//  The ACL of these tests: limited (RATE/s burst BURST, publishes lim.),
//  free (no limits, publishes free.), ops (reads all, admin status), bulk
//  (AGENT_RATE/s burst AGENT_BURST, publishes bulk.).
static char *
s_acl_text (zcert_t *limited, zcert_t *free_user, zcert_t *ops, const char *extra)
{
    return zsys_sprintf (
        "[user limited]\n"
        "key     = %s\n"
        "publish = lim.\n"
        "read    = *\n"
        "rate    = %d/s burst %d\n"
        "\n"
        "[user free]\n"
        "key     = %s\n"
        "publish = free.\n"
        "read    = *\n"
        "\n"
        "[user ops]\n"
        "key     = %s\n"
        "read    = *\n"
        "admin   = status\n"
        "\n"
        "[user bulk]\n"
        "key     = %s\n"
        "publish = bulk.\n"
        "rate    = %d/s burst %d\n"
        "%s",
        zcert_public_txt (limited), RATE, BURST, zcert_public_txt (free_user),
        zcert_public_txt (ops), zcert_public_txt (s_bulk), AGENT_RATE, AGENT_BURST,
        extra? extra: "");
}

//  A CURVE DEALER of cert on the broker's api.
static zsock_t *
s_client (zcert_t *cert)
{
    zsock_t *sock = zsock_new (ZMQ_DEALER);
    cr_assert_not_null (sock);
    zsock_set_linger (sock, 0);
    //  A DEALER blocks a send until a connection is up, and a refused
    //  handshake never brings one
    zsock_set_sndtimeo (sock, 2000);
    zcert_apply (cert, sock);
    zsock_set_curve_serverkey (sock, zcert_public_txt (s_fx.server));
    cr_assert_eq (zsock_connect (sock, "%s", s_fx.broker->api), 0);
    return sock;
}

//  STATUS's extra value name, as user cert sees it (ops: all keys).
static uint64_t
s_status (zsock_t *sock, const char *name)
{
    static uint64_t rid = 900000;
    bu_reply_t reply = { 0 };
    cr_assert_eq (bu_status (sock, ++rid, &reply, S_SLOW_MS), 0, "no STATUS reply");
    uint64_t value = UINT64_MAX;
    for (size_t i = 0; i < reply.body.status.extra_count; i++)
        if (bu_str_eq (reply.body.status.extra_keys [i], name))
            value = reply.body.status.extra_values [i];
    bu_reply_fini (&reply);
    return value;
}

static uint64_t
s_head (zsock_t *sock)
{
    static uint64_t rid = 950000;
    bu_reply_t reply = { 0 };
    cr_assert_eq (bu_status (sock, ++rid, &reply, S_SLOW_MS), 0, "no STATUS reply");
    uint64_t head = reply.body.status.head;
    bu_reply_fini (&reply);
    return head;
}

static void
s_setup (void)
{
    memset (&s_fx, 0, sizeof s_fx);
    s_fx.dir = tu_tmpdir_new ("limits-keys");
    cr_assert_not_null (s_fx.dir);
    s_fx.server = s_cert ("broker");
    s_limited = s_cert ("limited");
    s_free = s_cert ("free");
    s_ops = s_cert ("ops");
    s_stranger = s_cert ("stranger");
    s_bulk = s_cert ("bulk");
    s_fx.acl = tu_path (s_fx.dir, "acl");
    s_fx.audit = tu_path (s_fx.dir, "audit.jsonl");
    char *text = s_acl_text (s_limited, s_free, s_ops, NULL);
    s_write_acl (text);
    zstr_free (&text);
    char *secret = zsys_sprintf ("%s/broker.key_secret", s_fx.dir);
    const char *extra [] = { "--curve-secret", secret, "--acl", s_fx.acl,
                             "--audit-log", s_fx.audit, NULL };
    s_fx.broker = bu_broker_new ("limits", extra);
    zstr_free (&secret);
    cr_assert_not_null (s_fx.broker);
    bu_broker_spawn (s_fx.broker);      //  s_ready checks it, in the test's body
}

//  Wait for the broker to answer a CURVE STATUS (a plain one never is).
//  In each test's body, not in the fixture: criterion runs no .fini after
//  a failed .init, and the broker and its directory would stay.
static void
s_ready (void)
{
    cr_assert_gt (s_fx.broker->pid, 0, "heraldd was not started");
    zsock_t *ops = s_client (s_ops);
    bu_reply_t reply = { 0 };
    int64_t deadline = s_now_ms () + 15000;
    bool ready = false;
    for (uint64_t rid = 1; !ready && s_now_ms () < deadline; rid++) {
        ready = bu_status (ops, rid, &reply, 200) == 0;
        bu_reply_fini (&reply);
    }
    zsock_destroy (&ops);
    char log [4096];
    bu_broker_log_tail (s_fx.broker, log, sizeof log);
    cr_assert (ready, "heraldd did not answer STATUS over CURVE: %s", log);
}

static void
s_teardown (void)
{
    if (s_fx.broker)
        bu_broker_stop (s_fx.broker, 10000);
    bu_broker_destroy (&s_fx.broker);
    zcert_destroy (&s_fx.server);
    zcert_destroy (&s_limited);
    zcert_destroy (&s_free);
    zcert_destroy (&s_ops);
    zcert_destroy (&s_stranger);
    zcert_destroy (&s_bulk);
    free (s_fx.acl);
    free (s_fx.audit);
    tu_tmpdir_destroy (&s_fx.dir);
}

TestSuite (heraldd_limits, .init = s_setup, .fini = s_teardown, .timeout = 120);

//  Send a batch of BATCH events to topic with rid.
static void
s_send_batch (zsock_t *sock, const char *topic, uint64_t rid)
{
    bu_event_t events [BATCH];
    for (size_t i = 0; i < BATCH; i++)
        bu_event_init (&events [i], topic, "x");
    msgpack_sbuffer sbuf;
    msgpack_sbuffer_init (&sbuf);
    bu_pack_publish (&sbuf, rid, events, BATCH);
    cr_assert_eq (bu_send_sbuf (sock, "PUBLISH", &sbuf), 0);
    msgpack_sbuffer_destroy (&sbuf);
}

typedef struct {
    size_t acked_events;
    size_t overloaded;
    size_t other;
    uint64_t retry_min, retry_max;
} s_tally_t;

//  Take every reply waiting on sock into tally (wait at most wait_ms for
//  the first).
static size_t
s_drain (zsock_t *sock, s_tally_t *tally, int wait_ms)
{
    size_t replies = 0;
    bu_reply_t reply = { 0 };
    while (bu_recv_reply (sock, &reply, replies? 0: wait_ms) == 0) {
        replies++;
        if (reply.type == HERALD_MSG_ACK)
            tally->acked_events += reply.body.ack.count;
        else
        if (reply.type == HERALD_MSG_ERROR && reply.body.error.code == HERALD_ERR_OVERLOADED) {
            tally->overloaded++;
            uint64_t retry = reply.body.error.retry_ms;
            if (tally->retry_min == 0 || retry < tally->retry_min)
                tally->retry_min = retry;
            if (retry > tally->retry_max)
                tally->retry_max = retry;
        }
        else
            tally->other++;
        bu_reply_fini (&reply);
    }
    bu_reply_fini (&reply);
    return replies;
}

Test (heraldd_limits, twice_the_rate_is_overloaded_with_retry_ms_and_others_unaffected)
{
    s_ready ();
    zsock_t *limited = s_client (s_limited);
    zsock_t *other = s_client (s_free);
    s_tally_t lim = { 0 }, free_tally = { 0 };
    //  2 s at twice RATE: a batch of BATCH every BATCH/(2 RATE) s = 25 ms
    int64_t start = s_now_ms ();
    size_t sent = 0;
    uint64_t rid = 1;
    while (s_now_ms () - start < 2000) {
        s_send_batch (limited, "lim.a", rid);
        s_send_batch (other, "free.a", rid);
        rid++;
        sent++;
        int64_t next = start + (int64_t) sent * 1000 * BATCH / (2 * RATE);
        while (s_now_ms () < next) {
            s_drain (limited, &lim, 0);
            s_drain (other, &free_tally, 0);
            zclock_sleep (1);
        }
    }
    int64_t spent = s_now_ms () - start;
    //  Every request answered (20 s only tell slow from stuck)
    int64_t deadline = s_now_ms () + 20000;
    while ((lim.acked_events / BATCH + lim.overloaded + lim.other < sent
            || free_tally.acked_events / BATCH + free_tally.overloaded + free_tally.other < sent)
           && s_now_ms () < deadline) {
        s_drain (limited, &lim, 50);
        s_drain (other, &free_tally, 50);
    }
    //  The broker decided on the last request before its answer came: the
    //  tokens it could have earned are bounded by the time up to now, not
    //  by the time the test took to send (a broker behind its queue on a
    //  loaded machine decides later, with more tokens earned)
    int64_t answered = s_now_ms () - start;
    cr_assert_eq (lim.other, 0);
    cr_assert_eq (lim.acked_events / BATCH + lim.overloaded, sent);
    cr_assert_gt (lim.overloaded, 0, "twice the rate was never refused");
    cr_assert_geq (lim.retry_min, 1, "overloaded without retry_ms");
    cr_assert_leq (lim.retry_max, 1000 * BATCH / RATE + 10, "a retry hint beyond one batch's "
                   "debt: %" PRIu64 " ms", lim.retry_max);
    //  Let through at the rate: RATE × time, plus the burst and one batch
    double allowed = (double) RATE * (double) answered / 1000.0 + BURST + BATCH;
    cr_assert_leq ((double) lim.acked_events, allowed, "%zu events in %" PRId64 " ms",
                   lim.acked_events, answered);
    cr_assert_geq ((double) lim.acked_events, 0.8 * RATE * (double) spent / 1000.0,
                   "%zu events in %" PRId64 " ms", lim.acked_events, spent);
    //  The other user, same pace: never refused
    cr_assert_eq (free_tally.overloaded, 0);
    cr_assert_eq (free_tally.other, 0);
    cr_assert_eq (free_tally.acked_events, sent * BATCH);
    //  Counted in STATUS, seen by a user with admin status
    zsock_t *ops = s_client (s_ops);
    cr_assert_eq (s_status (ops, "rate_limited"), lim.overloaded);
    cr_assert_eq (s_status (ops, "audit_dropped"), 0);
    //  ... and not by one without it
    cr_assert_eq (s_status (limited, "rate_limited"), UINT64_MAX);
    zsock_destroy (&ops);
    zsock_destroy (&other);
    zsock_destroy (&limited);
}

//  Completions of the agent's publishes, by outcome (delivery thread).
typedef struct {
    _Atomic size_t ok, failed;
    _Atomic int last_err;
    char message [192];
} s_done_t;

static void
s_done (const herald_publish_result_t *result, void *arg)
{
    s_done_t *done = (s_done_t *) arg;
    if (result->err == HERALD_OK)
        done->ok++;
    else {
        done->failed++;
        done->last_err = result->err;
        snprintf (done->message, sizeof done->message, "%s", result->message);
    }
}

Test (heraldd_limits, an_agent_drains_its_outbox_at_the_rate_and_loses_nothing)
{
    s_ready ();
    char *state = tu_path (s_fx.dir, "agent");
    char *key = zsys_sprintf ("%s/bulk.key_secret", s_fx.dir);
    char *server = zsys_sprintf ("@%s/broker.key", s_fx.dir);
    herald_agent_options_t options;
    herald_agent_options_init (&options);
    options.api = s_fx.broker->api;
    options.state_dir = state;
    options.timeout_ms = 5000;
    options.key_file = key;
    options.server_key = server;
    herald_agent_t *agent = herald_agent_new ("bulk-svc", &options);
    cr_assert_not_null (agent, "%s", herald_agent_last_error ());
    //  5 s of events at AGENT_RATE, queued at once: the agent sends them
    //  in batches of AGENT_BATCH, each of which may pass on a bucket that
    //  is not in debt, so the last batch is free and the rest wait
    static s_done_t done;
    memset (&done, 0, sizeof done);
    size_t count = 5 * AGENT_RATE;
    int64_t start = s_now_ms ();
    size_t queued = 0;
    for (size_t i = 0; i < count; i++) {
        herald_outgoing_t event = { 0 };
        event.topic = "bulk.agent";
        event.data = "x";
        event.data_len = 1;
        queued += herald_agent_publish_async (agent, &event, s_done, &done, NULL) == HERALD_OK;
    }
    herald_err flushed = herald_agent_flush (agent, 30000);
    int64_t spent = s_now_ms () - start;
    herald_agent_stats_t stats;
    herald_agent_stats (agent, &stats);
    //  Asserted once the agent is gone: criterion's teardown cannot end it
    herald_agent_destroy (&agent);
    cr_log_info ("%zu events drained in %" PRId64 " ms at %d/s", count, spent, AGENT_RATE);
    cr_assert_eq (queued, count);
    cr_assert_eq (flushed, HERALD_OK);
    cr_assert_eq (done.failed, 0, "%zu refused, the last with %d: %s", (size_t) done.failed,
                  done.last_err, done.message);
    cr_assert_eq (done.ok, count);
    cr_assert_eq (stats.published, count);
    cr_assert_eq (stats.outbox_depth, 0);
    //  At the rate: no faster than the bucket allows, and not much slower
    int64_t least = (int64_t) ((count - AGENT_BURST - AGENT_BATCH) * 1000 / AGENT_RATE);
    cr_assert_geq (spent, least - 100, "%zu events in %" PRId64 " ms", count, spent);
    cr_assert_leq (spent, 2 * least + 1000, "%zu events in %" PRId64 " ms: far below the rate",
                   count, spent);
    //  Nothing lost: every event stored once
    zsock_t *ops = s_client (s_ops);
    cr_assert_eq (s_head (ops), count);
    cr_assert_geq (s_status (ops, "rate_limited"), 1, "the agent was never limited");
    zsock_destroy (&ops);
    zstr_free (&server);
    zstr_free (&key);
    free (state);
}

//  The audit file's lines holding every one of the NULL-terminated needles,
//  waited for up to timeout_ms.
static size_t
s_audit_lines (const char *path, const char *const *needles, int timeout_ms)
{
    int64_t deadline = s_now_ms () + timeout_ms;
    while (true) {
        size_t found = 0;
        FILE *file = fopen (path, "r");
        if (file) {
            char *line = NULL;
            size_t size = 0;
            while (getline (&line, &size, file) > 0) {
                cr_assert_eq (strncmp (line, "{\"ts\":\"", 7), 0, "%s", line);
                bool all = true;
                for (size_t i = 0; needles [i]; i++)
                    all = all && strstr (line, needles [i]);
                found += all;
            }
            free (line);
            fclose (file);
        }
        if (found || s_now_ms () >= deadline)
            return found;
        zclock_sleep (20);
    }
}

Test (heraldd_limits, the_audit_log_has_a_line_per_refusal_kind_and_reopens_on_sighup)
{
    s_ready ();
    //  auth_refused: a key the ACL does not know
    zsock_t *stranger = s_client (s_stranger);
    bu_reply_t reply = { 0 };
    cr_assert_neq (bu_status (stranger, 1, &reply, 300), 0, "an unknown key was answered");
    bu_reply_fini (&reply);
    //  The key by its first 10 Z85 characters only (Z85 has no '"' or '\\')
    char *prefix = zsys_sprintf ("\"key\":\"%.10s\"", zcert_public_txt (s_stranger));
    char *whole = zsys_sprintf ("%.40s", zcert_public_txt (s_stranger));
    const char *refused [] = { "\"event\":\"auth_refused\"", "\"domain\":\"herald.api\"",
                               "\"ip\":\"127.0.0.1\"", prefix, NULL };
    cr_assert_geq (s_audit_lines (s_fx.audit, refused, S_SLOW_MS), 1);
    //  Admitted connections too, at the default log level (info)
    const char *admitted [] = { "\"event\":\"auth_ok\"", "\"user\":\"ops\"",
                                "\"domain\":\"herald.api\"", NULL };
    cr_assert_geq (s_audit_lines (s_fx.audit, admitted, S_SLOW_MS), 1);
    const char *secret [] = { whole, NULL };
    cr_assert_eq (s_audit_lines (s_fx.audit, secret, 0), 0, "a whole key in the audit log");
    zsock_destroy (&stranger);

    //  unauthorized: a topic outside the user's grants
    zsock_t *limited = s_client (s_limited);
    s_send_batch (limited, "free.not-mine", 7);
    cr_assert_eq (bu_recv_reply (limited, &reply, S_SLOW_MS), 0);
    cr_assert_eq (reply.type, HERALD_MSG_ERROR);
    cr_assert_eq (reply.body.error.code, HERALD_ERR_UNAUTHORIZED);
    bu_reply_fini (&reply);
    const char *unauthorized [] = { "\"event\":\"unauthorized\"", "\"user\":\"limited\"",
                                    "\"command\":\"PUBLISH\"", "\"rid\":7",
                                    "\"topic\":\"free.not-mine\"", NULL };
    cr_assert_geq (s_audit_lines (s_fx.audit, unauthorized, S_SLOW_MS), 1);

    //  rate_limited: more than the burst at once
    s_tally_t tally = { 0 };
    for (uint64_t rid = 100; rid < 100 + 2 * BURST / BATCH + 2; rid++)
        s_send_batch (limited, "lim.b", rid);
    int64_t deadline = s_now_ms () + S_SLOW_MS;
    while (tally.acked_events / BATCH + tally.overloaded < 2 * BURST / BATCH + 2
           && s_now_ms () < deadline)
        s_drain (limited, &tally, 100);
    cr_assert_gt (tally.overloaded, 0);
    const char *limited_line [] = { "\"event\":\"rate_limited\"", "\"user\":\"limited\"",
                                    "\"retry_ms\":", NULL };
    cr_assert_geq (s_audit_lines (s_fx.audit, limited_line, S_SLOW_MS), 1);

    //  logrotate: move the file, SIGHUP; the ACL changed meanwhile, so
    //  the reload's line is the new file's
    char *rotated = zsys_sprintf ("%s.1", s_fx.audit);
    cr_assert_eq (rename (s_fx.audit, rotated), 0);
    char *text = s_acl_text (s_limited, s_free, s_ops, "\n[user extra]\nkey = ");
    char *more = zsys_sprintf ("%s%s\npublish = extra.\n", text, zcert_public_txt (s_stranger));
    s_write_acl (more);
    zstr_free (&more);
    zstr_free (&text);
    cr_assert_eq (kill (s_fx.broker->pid, SIGHUP), 0);
    const char *reload [] = { "\"event\":\"acl_reload\"", "\"result\":\"ok\"",
                              "\"users\":5", NULL };
    cr_assert_geq (s_audit_lines (s_fx.audit, reload, S_SLOW_MS), 1, "no acl_reload in the new file");
    //  What went before stayed in the old one
    cr_assert_geq (s_audit_lines (rotated, refused, 0), 1);
    cr_assert_geq (s_audit_lines (rotated, unauthorized, 0), 1);
    zstr_free (&rotated);
    zstr_free (&prefix);
    zstr_free (&whole);
    zsock_destroy (&limited);
}

Test (heraldd_limits, an_audit_log_that_cannot_be_opened_stops_the_start)
{
    s_ready ();
    char *secret = zsys_sprintf ("%s/broker.key_secret", s_fx.dir);
    const char *extra [] = { "--curve-secret", secret, "--acl", s_fx.acl,
                             "--audit-log", "/nonexistent-herald-dir/audit.jsonl", NULL };
    bu_broker_t *broker = bu_broker_new ("limits-bad-audit", extra);
    zstr_free (&secret);
    cr_assert_not_null (broker);
    cr_assert_eq (bu_broker_spawn (broker), 0);
    int exited = bu_broker_wait (broker, 10000);
    char log [4096];
    bu_broker_log (broker, log, sizeof log);
    int status = broker->status;
    bu_broker_destroy (&broker);
    cr_assert_eq (exited, 0, "heraldd runs without its audit log: %s", log);
    cr_assert (WIFEXITED (status) && WEXITSTATUS (status) == 1, "status %d: %s", status, log);
    cr_assert (strstr (log, "audit-log /nonexistent-herald-dir/audit.jsonl: cannot open (No "
                       "such file or directory)"), "%s", log);
}

Test (heraldd_limits, auth_ok_lines_follow_the_log_level)
{
    s_ready ();
    //  A second broker on the same keys, at --log-level warn
    char *secret = zsys_sprintf ("%s/broker.key_secret", s_fx.dir);
    char *audit = zsys_sprintf ("%s/quiet.jsonl", s_fx.dir);
    const char *extra [] = { "--curve-secret", secret, "--acl", s_fx.acl,
                             "--audit-log", audit, "--log-level", "warn", NULL };
    bu_broker_t *quiet = bu_broker_new ("limits-quiet", extra);
    cr_assert_not_null (quiet);
    cr_assert_eq (bu_broker_spawn (quiet), 0);
    bu_broker_t *first = s_fx.broker;
    s_fx.broker = quiet;                //  s_client connects to it
    zsock_t *limited = s_client (s_limited);
    s_fx.broker = first;
    bu_reply_t reply = { 0 };
    bool answered = false;
    int64_t deadline = s_now_ms () + 15000;
    for (uint64_t rid = 1; !answered && s_now_ms () < deadline; rid++) {
        answered = bu_status (limited, rid, &reply, 200) == 0;
        bu_reply_fini (&reply);
    }
    //  A refusal after the connection: its line is written after auth_ok's
    //  would have been
    if (answered)
        s_send_batch (limited, "free.not-mine", 9);
    const char *unauthorized [] = { "\"event\":\"unauthorized\"", "\"rid\":9", NULL };
    size_t refusals = answered? s_audit_lines (audit, unauthorized, S_SLOW_MS): 0;
    const char *admitted [] = { "\"event\":\"auth_ok\"", NULL };
    size_t oks = s_audit_lines (audit, admitted, 0);
    zsock_destroy (&limited);
    bu_broker_stop (quiet, 10000);
    bu_broker_destroy (&quiet);
    zstr_free (&audit);
    zstr_free (&secret);
    cr_assert (answered, "the second broker did not answer");
    cr_assert_eq (refusals, 1);
    cr_assert_eq (oks, 0, "auth_ok written at --log-level warn");
}
