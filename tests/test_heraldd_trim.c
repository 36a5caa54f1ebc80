/*  =========================================================================
    test_heraldd_trim - TRIM, ERROR trimmed, STATUS first/trims, retention

    The real heraldd, RocksDB underneath, clients as plain sockets.  Each
    test tries to break one promise of docs/protocol.md "Trimming" and
    docs/operations.md "Trimming and retention":

    - every refusal of TRIM names its field and trims nothing (a wrong
      digest above all); with security on only `admin = trim` may ask,
      while every user sees STATUS first and trims;
    - a trim with the archive's proof (BLAKE2b-256 of the ids, computed
      here from a REPLAY with libsodium) is applied, and REPLAY and READ
      below it are refused `trimmed` with the exact `first`, for the whole
      log and for prefixes (nested ones overlap, others are served whole);
    - a PUBLISH retrying a trimmed id is a duplicate with its seq and ver,
      and the topic's ver goes on;
    - a stream running while a trim is applied ends ERROR trimmed, never
      END done with a hole;
    - trims survive a restart and a kill -9 right after the reply;
    - retention trims by age (polled, never slept on), a bad policy stops
      heraldd with 64 (flag) or 78 (file), SIGHUP reloads the policies.
    =========================================================================
*/

#include <criterion/criterion.h>
#include <inttypes.h>
#include <signal.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include "brokertest.h"
#include "trimwire.h"

TestSuite (heraldd_trim, .init = bt_setup, .fini = bt_teardown, .timeout = 60);

//  n events, event i on topics[i % count], one PUBLISH each; their ACKed
//  seqs and vers into seqs/vers (may be NULL).
static void
s_publish (zsock_t *sock, const char *const *topics, size_t count, size_t n, uint64_t rid,
           uint64_t *seqs, uint64_t *vers, uint8_t (*ids) [HERALD_ID_BYTES])
{
    for (size_t index = 0; index < n; index++) {
        bu_event_t event;
        bu_event_init (&event, topics [index % count], "x");
        bu_reply_t reply;
        bt_publish (sock, rid + index, &event, 1, &reply);
        if (seqs)
            seqs [index] = reply.body.ack.seq [0];
        if (vers)
            vers [index] = reply.body.ack.ver [0];
        if (ids)
            memcpy (ids [index], event.id, HERALD_ID_BYTES);
        bu_reply_fini (&reply);
    }
}

static tw_trim_t
s_unarchived (const char *prefix, uint64_t until)
{
    return (tw_trim_t) { .has_prefix = prefix != NULL, .prefix = prefix, .has_until = true,
                         .until = until, .has_unarchived = true, .unarchived = true };
}

static tw_stream_t *
s_stream (void)
{
    return (tw_stream_t *) bt_calloc (1, sizeof (tw_stream_t));
}

static void
s_expect_trimmed (const tw_stream_t *stream, uint64_t first)
{
    cr_assert_str_eq (stream->ended, "ERROR", "%s %s (%zu events), not ERROR trimmed",
                      stream->ended, stream->reason, stream->count);
    cr_assert_str_eq (stream->reason, "trimmed", "%s: %s", stream->reason, stream->message);
    cr_assert (stream->has_first, "ERROR trimmed without first");
    cr_assert_eq (stream->first, first, "first %" PRIu64 ", expected %" PRIu64 " (%s)",
                  stream->first, first, stream->message);
    cr_assert_eq (stream->count, 0);
}

static void
s_expect_done (const tw_stream_t *stream, size_t count)
{
    cr_assert_str_eq (stream->ended, "END", "%s %s: %s", stream->ended, stream->reason,
                      stream->message);
    cr_assert_str_eq (stream->reason, "done");
    cr_assert_eq (stream->count, count, "%zu events, expected %zu", stream->count, count);
}

//  ---------------------------------------------------------------------
//  Refusals

Test (heraldd_trim, every_refusal_names_its_field_and_trims_nothing)
{
    bt_start ();
    zsock_t *sock = bt_client ();
    const char *topics [] = { "a.1", "b.1" };
    s_publish (sock, topics, 2, 20, 100, NULL, NULL, NULL);
    uint8_t zeros [32] = { 0 }, digest [32];
    char long_prefix [300];
    memset (long_prefix, 'p', 256);
    long_prefix [256] = 0;
    tw_trim_t trim;
    //  A bad prefix, a bad until
    trim = s_unarchived ("$sys.", 5);
    tw_trim_refused (sock, 1, &trim, "bad_request", "prefix");
    trim = s_unarchived (long_prefix, 5);
    tw_trim_refused (sock, 2, &trim, "bad_request", "prefix");
    trim = s_unarchived (NULL, 0);
    tw_trim_refused (sock, 3, &trim, "bad_request", "until");
    trim = s_unarchived (NULL, 0);
    trim.has_until = false;
    tw_trim_refused (sock, 4, &trim, "bad_request", "until");
    trim = s_unarchived (NULL, 21);
    tw_trim_refused (sock, 5, &trim, "bad_request", "until");
    //  The proof and unarchived: both, neither, halves, a bad size
    trim = s_unarchived (NULL, 5);
    trim.has_ids_from = true;
    trim.ids_from = 1;
    trim.ids = zeros;
    trim.ids_len = 32;
    tw_trim_refused (sock, 6, &trim, "bad_request", "unarchived");
    trim = (tw_trim_t) { .has_until = true, .until = 5 };
    tw_trim_refused (sock, 7, &trim, "bad_request", "ids");
    trim.has_unarchived = true;             //  unarchived: false is no proof either
    tw_trim_refused (sock, 8, &trim, "bad_request", "ids");
    trim = (tw_trim_t) { .has_until = true, .until = 5, .has_ids_from = true, .ids_from = 1 };
    tw_trim_refused (sock, 9, &trim, "bad_request", "ids");
    trim = (tw_trim_t) { .has_until = true, .until = 5, .ids = zeros, .ids_len = 32 };
    tw_trim_refused (sock, 10, &trim, "bad_request", "ids_from");
    trim = (tw_trim_t) { .has_until = true, .until = 5, .has_ids_from = true, .ids_from = 1,
                         .ids = zeros, .ids_len = 31 };
    tw_trim_refused (sock, 11, &trim, "bad_request", "ids");
    //  ids_from not the log's first seq, even with the right digest of its range
    tw_ids_digest (sock, 12, 2, 5, digest);
    trim = (tw_trim_t) { .has_until = true, .until = 5, .has_ids_from = true, .ids_from = 2,
                         .ids = digest, .ids_len = 32 };
    tw_trim_refused (sock, 13, &trim, "bad_request", "ids_from");
    //  The wrong digest: refused after the check, naming ids
    trim = (tw_trim_t) { .has_until = true, .until = 5, .has_ids_from = true, .ids_from = 1,
                         .ids = zeros, .ids_len = 32 };
    tw_trim_refused (sock, 14, &trim, "bad_request", "ids");
    //  The digest of another range (1..4 offered for 1..5)
    tw_ids_digest (sock, 15, 1, 4, digest);
    trim.ids = digest;
    tw_trim_refused (sock, 16, &trim, "bad_request", "ids");
    //  Nothing was trimmed by any of them
    char text [256];
    cr_assert_eq (tw_status_trims (sock, text, sizeof text), 1);
    cr_assert_str_eq (text, "");
    tw_stream_t *stream = s_stream ();
    tw_replay (sock, 17, 1, NULL, 0, stream);
    s_expect_done (stream, 20);
    //  Not above the current trim point
    trim = s_unarchived (NULL, 5);
    cr_assert_eq (tw_trim_ok (sock, 18, &trim, BT_WAIT_MS), 6);
    tw_trim_refused (sock, 19, &trim, "bad_request", "already trimmed up to 5");
    trim = s_unarchived ("", 3);
    tw_trim_refused (sock, 20, &trim, "bad_request", "until");
    //  ids_from 1 is no longer the first seq
    trim = (tw_trim_t) { .has_until = true, .until = 8, .has_ids_from = true, .ids_from = 1,
                         .ids = zeros, .ids_len = 32 };
    tw_trim_refused (sock, 21, &trim, "bad_request", "ids_from");
    cr_assert_eq (tw_status_trims (sock, text, sizeof text), 6);
    cr_assert_str_eq (text, ":5");
}

//  ---------------------------------------------------------------------
//  Security: admin = trim; first and trims for every user

static zcert_t *
s_cert (const char *save_in, const char *name)
{
    zcert_t *cert = zcert_new ();
    cr_assert_not_null (cert);
    if (save_in) {
        char *path = tu_path (save_in, name);
        cr_assert_eq (zcert_save (cert, path), 0);
        free (path);
    }
    return cert;
}

static zsock_t *
s_secure_client (zcert_t *server, zcert_t *key)
{
    zsock_t *sock = zsock_new (ZMQ_DEALER);
    cr_assert_not_null (sock);
    zsock_set_linger (sock, 0);
    zsock_set_curve_serverkey (sock, zcert_public_txt (server));
    zsock_set_curve_publickey (sock, zcert_public_txt (key));
    zsock_set_curve_secretkey (sock, zcert_secret_txt (key));
    cr_assert_eq (zsock_connect (sock, "%s", bt_broker->api), 0);
    return bt_keep (sock);
}

Test (heraldd_trim, only_the_trim_grant_may_trim_and_every_user_sees_the_trims)
{
    char *dir = tu_tmpdir_new ("trim-acl");
    zcert_t *server = s_cert (dir, "broker.key");
    zcert_t *ops_key = s_cert (NULL, NULL), *app_key = s_cert (NULL, NULL);
    char *acl = tu_path (dir, "acl");
    char text [1024];
    snprintf (text, sizeof text, "[user ops]\nkey = %s\nread = *\npublish = *\n"
              "admin = trim\n\n[user app]\nkey = %s\nread = *\npublish = *\n"
              "admin = backup acl cluster groups\n", zcert_public_txt (ops_key),
              zcert_public_txt (app_key));
    cr_assert_eq (tu_write_file (acl, text, strlen (text)), 0);
    chmod (acl, 0644);
    char *secret = tu_path (dir, "broker.key_secret");
    const char *extra [] = { "--curve-secret", secret, "--acl", acl, NULL };
    bt_broker = bu_broker_new ("trim-acl", extra);
    cr_assert_not_null (bt_broker);
    cr_assert_eq (bu_broker_spawn (bt_broker), 0);
    zsock_t *probe = s_secure_client (server, app_key);
    bool ready = false;
    for (uint64_t rid = 1000; !ready && rid < 1100; rid++) {
        bt_send_rid (probe, "STATUS", rid);
        zmsg_t *msg = bu_recv (probe, 100);
        ready = msg != NULL;
        zmsg_destroy (&msg);
    }
    cr_assert (ready, "the secure broker did not answer");
    bt_drop (&probe);                   //  with late answers to its probes
    zsock_t *app = s_secure_client (server, app_key);
    const char *topics [] = { "sec.1" };
    s_publish (app, topics, 1, 10, 100, NULL, NULL, NULL);
    tw_trim_t trim = s_unarchived (NULL, 5);
    tw_trim_refused (app, 1, &trim, "unauthorized", "admin = trim");
    //  Whatever the body
    trim = s_unarchived ("$bad", 0);
    tw_trim_refused (app, 2, &trim, "unauthorized", "trim");
    cr_assert_eq (tw_status_trims (app, text, sizeof text), 1);
    cr_assert_str_eq (text, "");
    zsock_t *ops = s_secure_client (server, ops_key);
    trim = s_unarchived (NULL, 5);
    cr_assert_eq (tw_trim_ok (ops, 3, &trim, BT_WAIT_MS), 6);
    //  app holds no `admin = status`: it sees first and trims all the same
    cr_assert_eq (tw_status_trims (app, text, sizeof text), 6);
    cr_assert_str_eq (text, ":5");
    //  The audit log (stderr here) has who trimmed what, and how
    char log [65536];
    bool audited = false;
    for (int tries = 0; !audited && tries < 500; tries++) {
        bu_broker_log (bt_broker, log, sizeof log);
        audited = strstr (log, "\"event\":\"trim\",\"user\":\"ops\",\"prefix\":\"\","
                               "\"until\":5,\"first\":6,\"proof\":false") != NULL;
        if (!audited)
            zclock_sleep (10);
    }
    cr_assert (audited, "no audit line of the trim: %s", log);
    zcert_destroy (&server);
    zcert_destroy (&ops_key);
    zcert_destroy (&app_key);
    free (secret);
    free (acl);
    bu_broker_kill (bt_broker);
    tu_tmpdir_destroy (&dir);
}

//  ---------------------------------------------------------------------
//  The proof, and what is refused after it

Test (heraldd_trim, a_trim_with_the_archives_proof_refuses_replay_and_read_below_it)
{
    bt_start ();
    zsock_t *sock = bt_client ();
    const char *topics [] = { "t.1", "t.2" };
    uint64_t seqs [30], vers [30];
    s_publish (sock, topics, 2, 30, 100, seqs, vers, NULL);
    uint8_t digest [32];
    tw_ids_digest (sock, 1, 1, 10, digest);
    tw_trim_t trim = { .has_until = true, .until = 10, .has_ids_from = true, .ids_from = 1,
                       .ids = digest, .ids_len = 32 };
    cr_assert_eq (tw_trim_ok (sock, 2, &trim, BT_WAIT_MS), 11);
    char text [256];
    cr_assert_eq (tw_status_trims (sock, text, sizeof text), 11);
    cr_assert_str_eq (text, ":10");
    tw_stream_t *stream = s_stream ();
    tw_replay (sock, 3, 1, NULL, 0, stream);
    s_expect_trimmed (stream, 11);
    tw_replay (sock, 4, 10, NULL, 0, stream);
    s_expect_trimmed (stream, 11);
    tw_replay (sock, 5, 11, NULL, 0, stream);
    s_expect_done (stream, 20);
    cr_assert_eq (stream->seqs [0], 11);
    //  READ: t.1's vers 1..5 were seqs 1, 3, .., 9: its first ver is 6
    tw_read (sock, 6, "t.1", 1, stream);
    s_expect_trimmed (stream, 6);
    tw_read (sock, 7, "t.1", 5, stream);
    s_expect_trimmed (stream, 6);
    tw_read (sock, 8, "t.1", 6, stream);
    s_expect_done (stream, 10);
    cr_assert_eq (stream->vers [0], 6);
    //  A second proof, from the new first seq
    tw_ids_digest (sock, 9, 11, 14, digest);
    trim.ids_from = 11;
    trim.until = 14;
    cr_assert_eq (tw_trim_ok (sock, 10, &trim, BT_WAIT_MS), 15);
    cr_assert_eq (tw_status_trims (sock, text, sizeof text), 15);
    cr_assert_eq (bt_status_extra (sock, 11, "trims_applied"), 2);
    //  Prometheus text, as `herald status --format prometheus` prints it
    char *herald = tu_build_program ("tools/herald");
    cr_assert_not_null (herald);
    char command [1024], out [65536];
    snprintf (command, sizeof command, "%s --endpoint %s status --format prometheus 2>&1",
              herald, bt_broker->api);
    FILE *pipe = popen (command, "r");
    cr_assert_not_null (pipe);
    size_t used = fread (out, 1, sizeof out - 1, pipe);
    out [used] = 0;
    cr_assert_eq (pclose (pipe), 0, "%s", out);
    cr_assert_not_null (strstr (out, "\nherald_first_seq 15\n"), "%s", out);
    cr_assert_not_null (strstr (out, "\nherald_trim_until_seq{prefix=\"\"} 14\n"), "%s", out);
    cr_assert_not_null (strstr (out, "\nherald_trims_applied_total 2\n"), "%s", out);
    free (herald);
    cr_assert_geq (bt_status_extra (sock, 12, "streams_trimmed"), 4);
    cr_assert_eq (bt_status_extra (sock, 13, "stream_errors"), 0);
}

Test (heraldd_trim, prefix_trims_refuse_what_overlaps_and_serve_the_rest)
{
    bt_start ();
    zsock_t *sock = bt_client ();
    const char *topics [] = { "orders.eu.1", "orders.us.1", "metrics.cpu" };
    uint64_t seqs [30], vers [30];
    s_publish (sock, topics, 3, 30, 100, seqs, vers, NULL);
    tw_trim_t trim = s_unarchived ("orders.", 12);
    cr_assert_eq (tw_trim_ok (sock, 1, &trim, BT_WAIT_MS), 13);
    char text [256];
    cr_assert_eq (tw_status_trims (sock, text, sizeof text), 1);
    cr_assert_str_eq (text, "orders.:12");
    tw_stream_t *stream = s_stream ();
    //  No prefixes: every trim point concerns it
    tw_replay (sock, 2, 1, NULL, 0, stream);
    s_expect_trimmed (stream, 13);
    //  Nested both ways
    const char *eu [] = { "orders.eu." }, *all [] = { "o" }, *metrics [] = { "metrics." };
    tw_replay (sock, 3, 1, eu, 1, stream);
    s_expect_trimmed (stream, 13);
    tw_replay (sock, 4, 1, all, 1, stream);
    s_expect_trimmed (stream, 13);
    tw_replay (sock, 5, 13, eu, 1, stream);
    s_expect_done (stream, 6);              //  seqs 13, 16, .., 28
    //  Not overlapping: served whole, from seq 1
    tw_replay (sock, 6, 1, metrics, 1, stream);
    s_expect_done (stream, 10);
    cr_assert_eq (stream->seqs [0], 3);
    tw_read (sock, 7, "metrics.cpu", 1, stream);
    s_expect_done (stream, 10);
    //  A nested trim point above: its prefix and the wider one see it
    trim = s_unarchived ("orders.eu.", 20);
    cr_assert_eq (tw_trim_ok (sock, 8, &trim, BT_WAIT_MS), 21);
    tw_replay (sock, 9, 1, eu, 1, stream);
    s_expect_trimmed (stream, 21);
    const char *orders [] = { "orders." }, *us [] = { "orders.us." };
    tw_replay (sock, 10, 13, orders, 1, stream);
    s_expect_trimmed (stream, 21);
    tw_replay (sock, 11, 13, us, 1, stream);
    s_expect_done (stream, 6);
    const char *two [] = { "metrics.", "orders.us." };
    tw_replay (sock, 12, 1, two, 2, stream);
    s_expect_trimmed (stream, 13);
    //  READ of orders.eu.1: its events were seqs 1, 4, .., 28 (vers 1..10);
    //  seq 22 (ver 8) is the first above 20
    tw_read (sock, 13, "orders.eu.1", 1, stream);
    s_expect_trimmed (stream, 8);
    tw_read (sock, 14, "orders.eu.1", 8, stream);
    s_expect_done (stream, 3);
    cr_assert_eq (tw_status_trims (sock, text, sizeof text), 1);
    cr_assert_str_eq (text, "orders.:12,orders.eu.:20");
}

Test (heraldd_trim, a_retry_of_a_trimmed_event_is_a_duplicate_and_vers_go_on)
{
    bt_start ();
    zsock_t *sock = bt_client ();
    bu_event_t events [6];
    uint64_t seqs [6], vers [6];
    for (size_t index = 0; index < 6; index++) {
        bu_event_init (&events [index], "topic.a", "x");
        bu_reply_t reply;
        bt_publish (sock, 100 + index, &events [index], 1, &reply);
        seqs [index] = reply.body.ack.seq [0];
        vers [index] = reply.body.ack.ver [0];
        bu_reply_fini (&reply);
    }
    tw_trim_t trim = s_unarchived (NULL, 6);
    cr_assert_eq (tw_trim_ok (sock, 1, &trim, BT_WAIT_MS), 7);
    //  Every trimmed id still answers as the duplicate it is
    for (size_t index = 0; index < 6; index++) {
        bu_reply_t reply;
        bt_publish (sock, 200 + index, &events [index], 1, &reply);
        cr_assert (reply.body.ack.dup [0], "a retry of trimmed seq %" PRIu64 " was stored "
                   "again", seqs [index]);
        cr_assert_eq (reply.body.ack.seq [0], seqs [index]);
        cr_assert_eq (reply.body.ack.ver [0], vers [index]);
        bu_reply_fini (&reply);
    }
    bu_event_t next;
    bu_event_init (&next, "topic.a", "y");
    bu_reply_t reply;
    bt_publish (sock, 300, &next, 1, &reply);
    cr_assert (!reply.body.ack.dup [0]);
    cr_assert_eq (reply.body.ack.seq [0], 7);
    cr_assert_eq (reply.body.ack.ver [0], 7, "the topic's ver went back to %" PRIu64,
                  reply.body.ack.ver [0]);
    bu_reply_fini (&reply);
    tw_stream_t *stream = s_stream ();
    tw_read (sock, 2, "topic.a", 7, stream);
    s_expect_done (stream, 1);
}

//  ---------------------------------------------------------------------
//  A stream that meets a trim

Test (heraldd_trim, a_stream_running_during_a_trim_ends_error_trimmed)
{
    bt_start ();
    zsock_t *sock = bt_client ();
    const char *topics [] = { "s.1" };
    s_publish (sock, topics, 1, 40, 100, NULL, NULL, NULL);
    tw_stream_t *stream = s_stream ();
    tw_send_replay (sock, 1, 1, NULL, 0, 5);
    tw_stream_read (sock, 1, stream, 5, BT_WAIT_MS);
    cr_assert_eq (stream->count, 5);
    cr_assert_str_eq (stream->ended, "");
    //  The same for a READ
    tw_stream_t *read = s_stream ();
    tw_send_read (sock, 2, "s.1", 1, 5);
    tw_stream_read (sock, 2, read, 5, BT_WAIT_MS);
    cr_assert_eq (read->count, 5);
    tw_trim_t trim = s_unarchived (NULL, 30);
    cr_assert_eq (tw_trim_ok (sock, 3, &trim, BT_WAIT_MS), 31);
    bt_send_credit (sock, 1, 1000);
    tw_stream_read (sock, 1, stream, 0, BT_WAIT_MS);
    cr_assert_str_eq (stream->ended, "ERROR", "the stream ended %s %s after %zu events: a "
                      "hole taken for done", stream->ended, stream->reason, stream->count);
    cr_assert_str_eq (stream->reason, "trimmed", "%s", stream->message);
    cr_assert (stream->has_first);
    cr_assert_eq (stream->first, 31);
    //  The events it sent are contiguous from 1 (the one it held read before)
    for (size_t index = 0; index < stream->count; index++)
        cr_assert_eq (stream->seqs [index], index + 1);
    cr_assert_leq (stream->count, 6);
    bt_send_credit (sock, 2, 1000);
    tw_stream_read (sock, 2, read, 0, BT_WAIT_MS);
    cr_assert_str_eq (read->ended, "ERROR", "the READ ended %s %s after %zu events",
                      read->ended, read->reason, read->count);
    cr_assert_str_eq (read->reason, "trimmed");
    cr_assert_eq (read->first, 31);
    cr_assert_eq (bt_status_extra (sock, 4, "stream_errors"), 0);
    cr_assert_eq (bt_status_extra (sock, 5, "streams_trimmed"), 2);
}

//  ---------------------------------------------------------------------
//  Durability

Test (heraldd_trim, trims_survive_a_restart_and_a_kill_right_after_the_reply)
{
    bt_start ();
    zsock_t *sock = bt_client ();
    const char *topics [] = { "k.1", "j.1" };
    s_publish (sock, topics, 2, 20, 100, NULL, NULL, NULL);
    tw_trim_t trim = s_unarchived ("k.", 9);
    cr_assert_eq (tw_trim_ok (sock, 1, &trim, BT_WAIT_MS), 10);
    bt_stop_clean ();
    bt_drop (&sock);
    cr_assert_eq (bu_broker_restart (bt_broker, BT_START_MS), 0);
    sock = bt_client ();
    char text [256];
    cr_assert_eq (tw_status_trims (sock, text, sizeof text), 1);
    cr_assert_str_eq (text, "k.:9");
    //  kill -9 the moment the reply is in
    trim = s_unarchived (NULL, 12);
    cr_assert_eq (tw_trim_ok (sock, 2, &trim, BT_WAIT_MS), 13);
    bu_broker_kill (bt_broker);
    bt_drop (&sock);
    cr_assert_eq (bu_broker_restart (bt_broker, BT_START_MS), 0);
    sock = bt_client ();
    cr_assert_eq (tw_status_trims (sock, text, sizeof text), 13);
    cr_assert_str_eq (text, ":12,k.:9");
    tw_stream_t *stream = s_stream ();
    tw_replay (sock, 3, 1, NULL, 0, stream);
    s_expect_trimmed (stream, 13);
    tw_replay (sock, 4, 13, NULL, 0, stream);
    s_expect_done (stream, 8);
}

Test (heraldd_trim, the_reclaim_frees_what_was_trimmed_and_ends)
{
    bt_start ();
    zsock_t *sock = bt_client ();
    const char *topics [] = { "r.1", "q.1" };
    s_publish (sock, topics, 2, 40, 100, NULL, NULL, NULL);
    tw_trim_t trim = s_unarchived (NULL, 30);
    cr_assert_eq (tw_trim_ok (sock, 1, &trim, BT_WAIT_MS), 31);
    //  Polled: reclaim_pending back to 0 with events reclaimed
    int64_t deadline = zclock_mono () + 20000;
    uint64_t pending = 1, reclaimed = 0;
    for (uint64_t rid = 10; zclock_mono () < deadline; rid += 2) {
        pending = bt_status_extra (sock, rid, "reclaim_pending");
        reclaimed = bt_status_extra (sock, rid + 1, "reclaimed_events");
        if (!pending && reclaimed >= 30)
            break;
        zclock_sleep (20);
    }
    cr_assert_eq (pending, 0);
    cr_assert_geq (reclaimed, 30, "reclaimed_events %" PRIu64, reclaimed);
    tw_stream_t *stream = s_stream ();
    tw_replay (sock, 2, 31, NULL, 0, stream);
    s_expect_done (stream, 10);
    tw_replay (sock, 3, 1, NULL, 0, stream);
    s_expect_trimmed (stream, 31);
}

//  ---------------------------------------------------------------------
//  Retention

Test (heraldd_trim, retention_trims_what_is_older_than_its_age)
{
    const char *extra [] = { "--retention", "orders.=1s", "--retention-interval-ms", "20",
                             NULL };
    bt_start_with (extra);
    zsock_t *sock = bt_client ();
    const char *topics [] = { "orders.1", "metrics.1" };
    s_publish (sock, topics, 2, 6, 100, NULL, NULL, NULL);
    cr_assert (tw_wait_trims (sock, "orders.:6", 15000), "no retention trim within 15 s");
    char text [256];
    cr_assert_eq (tw_status_trims (sock, text, sizeof text), 1);
    cr_assert_str_eq (text, "orders.:6");
    tw_stream_t *stream = s_stream ();
    const char *metrics [] = { "metrics." }, *orders [] = { "orders." };
    tw_replay (sock, 1, 1, metrics, 1, stream);
    s_expect_done (stream, 3);
    tw_replay (sock, 2, 1, orders, 1, stream);
    s_expect_trimmed (stream, 7);
    cr_assert_geq (bt_status_extra (sock, 3, "retention_trims"), 1);
    char log [65536];
    bu_broker_log (bt_broker, log, sizeof log);
    cr_assert_not_null (strstr (log, "retention 'orders.' 1s: trimmed 'orders.' up to seq 6"),
                        "%s", log);
}

//  Start heraldd with extra flags; it must exit with status within 10 s
//  and its log say want.
static void
s_exits (const char *const *extra, int status, const char *want)
{
    bu_broker_t *broker = bu_broker_new ("trim-bad", extra);
    cr_assert_not_null (broker);
    cr_assert_eq (bu_broker_spawn (broker), 0);
    cr_assert_eq (bu_broker_wait (broker, 10000), 0, "heraldd did not exit");
    char log [8192];
    bu_broker_log (broker, log, sizeof log);
    cr_assert (WIFEXITED (broker->status) && WEXITSTATUS (broker->status) == status,
               "exit %d, expected %d: %s", WEXITSTATUS (broker->status), status, log);
    cr_assert_not_null (strstr (log, want), "'%s' not in: %s", want, log);
    bu_broker_destroy (&broker);
}

Test (heraldd_trim, a_bad_retention_policy_stops_heraldd_64_or_78)
{
    const char *bad_unit [] = { "--retention", "orders.=7x", NULL };
    s_exits (bad_unit, 64, "--retention");
    const char *no_age [] = { "--retention", "orders.=", NULL };
    s_exits (no_age, 64, "the age");
    const char *zero [] = { "--retention", "=0d", NULL };
    s_exits (zero, 64, "the age");
    const char *dollar [] = { "--retention", "$sys.=1d", NULL };
    s_exits (dollar, 64, "prefix");
    const char *twice [] = { "--retention", "a.=1d", "--retention", "a.=2d", NULL };
    s_exits (twice, 64, "has a policy already");
    const char *interval [] = { "--retention-interval-ms", "5", NULL };
    s_exits (interval, 64, "--retention-interval-ms");
    char *dir = tu_tmpdir_new ("trim-conf");
    char *path = tu_path (dir, "heraldd.conf");
    const char *text = "# retention\nretention = orders. 7x\n";
    cr_assert_eq (tu_write_file (path, text, strlen (text)), 0);
    const char *file [] = { "--config", path, NULL };
    s_exits (file, 78, "heraldd.conf:2: retention");
    free (path);
    tu_tmpdir_destroy (&dir);
}

Test (heraldd_trim, sighup_reloads_the_retention_policies)
{
    char *dir = tu_tmpdir_new ("trim-hup");
    char *path = tu_path (dir, "heraldd.conf");
    const char *before = "retention-interval-ms = 20\n";
    cr_assert_eq (tu_write_file (path, before, strlen (before)), 0);
    const char *extra [] = { "--config", path, NULL };
    bt_start_with (extra);
    zsock_t *sock = bt_client ();
    const char *topics [] = { "h.1" };
    s_publish (sock, topics, 1, 4, 100, NULL, NULL, NULL);
    const char *after = "retention-interval-ms = 20\n# the whole log\nretention = 1s\n";
    cr_assert_eq (tu_write_file (path, after, strlen (after)), 0);
    cr_assert_eq (kill (bt_broker->pid, SIGHUP), 0);
    cr_assert (tw_wait_trims (sock, ":4", 15000), "no retention trim after SIGHUP");
    char log [65536];
    bu_broker_log (bt_broker, log, sizeof log);
    cr_assert_not_null (strstr (log, "retention reloaded: '' 1s"), "%s", log);
    //  And back to none: what comes after stays
    cr_assert_eq (tu_write_file (path, before, strlen (before)), 0);
    cr_assert_eq (kill (bt_broker->pid, SIGHUP), 0);
    int64_t deadline = zclock_mono () + 10000;
    bool said = false;
    while (!said && zclock_mono () < deadline) {
        bu_broker_log (bt_broker, log, sizeof log);
        said = strstr (log, "retention reloaded: none") != NULL;
        if (!said)
            zclock_sleep (20);
    }
    cr_assert (said, "%s", log);
    free (path);
    tu_tmpdir_destroy (&dir);
}

//  ---------------------------------------------------------------------
//  The reclaim and stopping

//  STATUS reclaim_pending polled until 0 (within 30 s); reclaimed_events.
static uint64_t
s_reclaim_done (zsock_t *sock)
{
    int64_t deadline = zclock_mono () + 30000;
    for (uint64_t rid = 5000; zclock_mono () < deadline; rid += 2) {
        if (bt_status_extra (sock, rid, "reclaim_pending") == 0)
            return bt_status_extra (sock, rid + 1, "reclaimed_events");
        zclock_sleep (20);
    }
    cr_assert_fail ("reclaim_pending still 1 after 30 s");
    return 0;
}

Test (heraldd_trim, sigterm_and_kill_during_the_reclaim_stop_it_and_a_restart_resumes)
{
    bt_start ();
    zsock_t *sock = bt_client ();
    static bu_event_t events [1000];
    for (uint64_t batch = 0; batch < 20; batch++) {
        for (size_t index = 0; index < 1000; index++)
            bu_event_init (&events [index], index % 2? "big.a": "big.b", "reclaim me");
        bu_reply_t reply;
        bt_publish (sock, 100 + batch, events, 1000, &reply);
        bu_reply_fini (&reply);
    }
    tw_trim_t trim = s_unarchived (NULL, 19990);
    cr_assert_eq (tw_trim_ok (sock, 1, &trim, BT_WAIT_MS), 19991);
    //  SIGTERM at once, the reclaim running or not: a clean stop, in time
    bt_stop_clean ();
    bt_drop (&sock);
    cr_assert_eq (bu_broker_restart (bt_broker, BT_START_MS), 0);
    sock = bt_client ();
    trim = s_unarchived ("big.a", 19999);
    cr_assert_eq (tw_trim_ok (sock, 2, &trim, BT_WAIT_MS), 20000);
    bu_broker_kill (bt_broker);
    bt_drop (&sock);
    cr_assert_eq (bu_broker_restart (bt_broker, BT_START_MS), 0);
    sock = bt_client ();
    s_reclaim_done (sock);
    //  What is left reads whole; what is gone is refused
    tw_stream_t *stream = s_stream ();
    tw_replay (sock, 3, 19991, NULL, 0, stream);
    s_expect_trimmed (stream, 20000);
    const char *b [] = { "big.b" };
    tw_replay (sock, 4, 19991, b, 1, stream);
    s_expect_done (stream, 5);
    tw_replay (sock, 5, 20000, NULL, 0, stream);
    s_expect_done (stream, 1);
    char text [256];
    cr_assert_eq (tw_status_trims (sock, text, sizeof text), 19991);
    cr_assert_str_eq (text, ":19990,big.a:19999");
    bt_stop_clean ();
}

//  ---------------------------------------------------------------------
//  One proof at a time; a stop in the middle of one

Test (heraldd_trim, one_proof_at_a_time_and_a_stop_during_the_check_trims_nothing)
{
    //  The check of a proof held for a minute (herald_trims' test hook)
    setenv ("HERALD_TEST_HOOKS", "1", 1);
    setenv ("HERALD_TEST_TRIM_HOLD_MS", "60000", 1);
    bt_start ();
    unsetenv ("HERALD_TEST_TRIM_HOLD_MS");
    unsetenv ("HERALD_TEST_HOOKS");
    zsock_t *sock = bt_client ();
    const char *topics [] = { "p.1" };
    s_publish (sock, topics, 1, 10, 100, NULL, NULL, NULL);
    uint8_t digest [32];
    tw_ids_digest (sock, 1, 1, 5, digest);
    tw_trim_t trim = { .has_until = true, .until = 5, .has_ids_from = true, .ids_from = 1,
                       .ids = digest, .ids_len = 32 };
    tw_send_trim (sock, 2, &trim);
    //  A second proof while the first is checked: overloaded, retry_ms
    zsock_t *other = bt_client ();
    tw_send_trim (other, 3, &trim);
    tw_reply_t reply;
    tw_recv (other, 3, &reply, BT_WAIT_MS);
    char code [32], message [512];
    tw_str (&reply, "code", code, sizeof code);
    tw_str (&reply, "message", message, sizeof message);
    cr_assert_str_eq (code, "overloaded", "%s %s: %s", reply.command, code, message);
    cr_assert_not_null (strstr (message, "one at a time"), "%s", message);
    cr_assert_gt (tw_uint (&reply, "retry_ms"), 0);
    tw_reply_fini (&reply);
    //  An unarchived trim has nothing to check: it goes meanwhile
    trim = s_unarchived ("p.", 3);
    cr_assert_eq (tw_trim_ok (other, 4, &trim, BT_WAIT_MS), 4);
    //  SIGTERM: the check is cancelled (a clean stop well within the hold)
    //  and rid 2 gets no reply
    bt_stop_clean ();
    zmsg_t *late = bu_recv (sock, 200);
    cr_assert_null (late, "a reply came to the cancelled TRIM");
    bt_drop (&sock);
    bt_drop (&other);
    char log [65536];
    bu_broker_log (bt_broker, log, sizeof log);
    cr_assert_not_null (strstr (log, "its proof's check is cancelled"), "%s", log);
    cr_assert_eq (bu_broker_restart (bt_broker, BT_START_MS), 0);
    sock = bt_client ();
    char text [256];
    cr_assert_eq (tw_status_trims (sock, text, sizeof text), 1);
    cr_assert_str_eq (text, "p.:3", "the cancelled TRIM trimmed: %s", text);
}
