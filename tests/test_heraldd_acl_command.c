/*  =========================================================================
    test_heraldd_acl_command - the ACL admin command (reload, show)

    Real heraldd processes with --curve-secret and --acl, real CURVE keys
    made with zcert, and CURVE DEALER clients here.  The timed file check
    is set to a day, so only the command can make a change take effect
    during a test.  Each test tries to break one promise of
    docs/protocol.md "Security: the ACL command": a reload takes effect
    when its reply comes; a broken file is refused naming its line and the
    table in force stays; only `admin = acl` may ask; show says what the
    file says; with security off the command is refused.
    =========================================================================
*/

#include <criterion/criterion.h>
#include <inttypes.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>

#include "brokertest.h"
#include "replytest.h"

#define S_WAIT_MS       5000
#define S_KEY_SHOWN     10

static void s_setup (void);
static void s_teardown (void);
TestSuite (heraldd_acl_command, .init = s_setup, .fini = s_teardown, .timeout = 120);

enum { ALICE, BOB, CAROL, DAVE, EVE, S_USERS };
static char *s_dir;
static char *s_acl_path;
static rt_key_t s_broker_key;
static rt_key_t s_keys [S_USERS];
static int s_scope_port;

static void
s_setup (void)
{
    bt_setup ();
    s_dir = tu_tmpdir_new ("aclcmd");
    cr_assert_not_null (s_dir);
    s_acl_path = tu_path (s_dir, "acl");
    rt_key_make (&s_broker_key, "broker", s_dir, "broker.key");
    for (size_t index = 0; index < S_USERS; index++)
        rt_key_make (&s_keys [index], "user", NULL, NULL);
    s_scope_port = bu_free_port ();
}

static void
s_teardown (void)
{
    bt_teardown ();
    free (s_acl_path);
    s_acl_path = NULL;
    tu_tmpdir_destroy (&s_dir);
}

//  Write the ACL (by rename, as an operator's tool would), in whole.
static void
s_acl_write (const char *text)
{
    char *tmp = tu_path (s_dir, "acl.tmp");
    cr_assert_eq (tu_write_file (tmp, text, strlen (text)), 0);
    chmod (tmp, 0644);
    cr_assert_eq (rename (tmp, s_acl_path), 0);
    free (tmp);
}

//  alice: read-all, publishes orders., admin status and acl; bob: scope
//  orders-view, publishes stock.; carol: publishes billing., no grant;
//  dave: read-all, admin status only.  more is appended (eve).
static void
s_acl_standard (const char *more)
{
    char *text = NULL;
    cr_assert_geq (asprintf (&text,
        "[scope orders-view]\n"
        "read = orders. customers.\n"
        "fanout = tcp://127.0.0.1:%d\n"
        "\n"
        "[user alice]\n"
        "key = %s\n"
        "read = *\n"
        "publish = orders.\n"
        "admin = status acl\n"
        "\n"
        "[user bob]\n"
        "key = %s\n"
        "scope = orders-view\n"
        "publish = stock.\n"
        "\n"
        "[user carol]\n"
        "key = %s\n"
        "publish = billing.\n"
        "\n"
        "[user dave]\n"
        "key = %s\n"
        "read = *\n"
        "admin = status\n"
        "%s",
        s_scope_port, s_keys [ALICE].public_txt, s_keys [BOB].public_txt,
        s_keys [CAROL].public_txt, s_keys [DAVE].public_txt, more? more: ""), 0);
    s_acl_write (text);
    free (text);
}

static const char *
s_eve_entry (void)
{
    static char text [160];
    snprintf (text, sizeof text, "\n[user eve]\nkey = %s\nread = *\npublish = eve.\n",
              s_keys [EVE].public_txt);
    return text;
}

static zsock_t *
s_client (const rt_key_t *key)
{
    zsock_t *sock = zsock_new (ZMQ_DEALER);
    cr_assert_not_null (sock);
    zsock_set_linger (sock, 0);
    zsock_set_curve_serverkey (sock, s_broker_key.public_txt);
    zsock_set_curve_publickey (sock, key->public_txt);
    zsock_set_curve_secretkey (sock, key->secret_txt);
    cr_assert_eq (zsock_connect (sock, "%s", bt_broker->api), 0);
    return bt_keep (sock);
}

//  A secure broker whose file check is a day apart: only SIGHUP or the
//  ACL command reloads during a test.
static void
s_start_secure (void)
{
    char *secret = tu_path (s_dir, "broker.key_secret");
    const char *extra [] = { "--curve-secret", secret, "--acl", s_acl_path,
                             "--acl-check-ms", "86400000", "--audit-log", "-", NULL };
    bt_broker = bu_broker_new ("aclcmd", extra);
    free (secret);
    cr_assert_not_null (bt_broker);
    cr_assert_eq (bu_broker_spawn (bt_broker), 0);
    zsock_t *alice = s_client (&s_keys [ALICE]);
    int64_t deadline = zclock_mono () + BT_START_MS;
    bool ready = false;
    for (uint64_t rid = 1; !ready && zclock_mono () < deadline; rid++) {
        bt_send_rid (alice, "STATUS", rid);
        zmsg_t *msg = bu_recv (alice, 200);
        ready = msg != NULL;
        zmsg_destroy (&msg);
        if (!ready && bu_broker_wait (bt_broker, 0) == 0)
            break;
    }
    if (!ready) {
        char log [4096];
        bu_broker_log (bt_broker, log, sizeof log);
        cr_assert_fail ("the secure broker did not answer alice; its log:\n%s", log);
    }
    bt_drop (&alice);
}

//  An array of str equal to the words of list (space-separated; "" none).
static bool
s_words_eq (const msgpack_object *obj, const char *list)
{
    if (!obj || obj->type != MSGPACK_OBJECT_ARRAY)
        return false;
    char copy [256];
    snprintf (copy, sizeof copy, "%s", list);
    uint32_t index = 0;
    for (char *save = NULL, *word = strtok_r (copy, " ", &save); word;
         word = strtok_r (NULL, " ", &save), index++)
        if (index >= obj->via.array.size || !rt_str_is (&obj->via.array.ptr [index], word))
            return false;
    return index == obj->via.array.size;
}

//  Send ACL {rid, op} (op as given: tests send wrong ones too).
static void
s_acl_send (zsock_t *sock, uint64_t rid, const char *op)
{
    msgpack_sbuffer sbuf;
    msgpack_sbuffer_init (&sbuf);
    msgpack_packer pk;
    msgpack_packer_init (&pk, &sbuf, msgpack_sbuffer_write);
    msgpack_pack_map (&pk, 2);
    msgpack_pack_str_with_body (&pk, "rid", 3);
    msgpack_pack_uint64 (&pk, rid);
    msgpack_pack_str_with_body (&pk, "op", 2);
    msgpack_pack_str_with_body (&pk, op, strlen (op));
    bu_send_sbuf (sock, "ACL", &sbuf);
    msgpack_sbuffer_destroy (&sbuf);
}

//  ACL op and its reply (an ACL reply for rid, op checked).
static void
s_acl (zsock_t *sock, uint64_t rid, const char *op, rt_reply_t *raw)
{
    s_acl_send (sock, rid, op);
    rt_recv (sock, raw, S_WAIT_MS);
    const msgpack_object *message = rt_get (raw->body, "message");
    cr_assert_str_eq (raw->command, "ACL", "ACL %s answered %s: %.*s", op, raw->command,
                      message && message->type == MSGPACK_OBJECT_STR
                      ? (int) message->via.str.size: 0,
                      message && message->type == MSGPACK_OBJECT_STR
                      ? message->via.str.ptr: "");
    const msgpack_object *got = rt_get (raw->body, "rid");
    cr_assert (got && got->type == MSGPACK_OBJECT_POSITIVE_INTEGER && got->via.u64 == rid);
    cr_assert (rt_str_is (rt_get (raw->body, "op"), op));
}

//  Expect an ERROR with code for rid; its message (static).
static const char *
s_expect_error (zsock_t *sock, herald_err code, uint64_t rid)
{
    static char message [1024];
    bu_reply_t reply = { 0 };
    bt_recv (sock, &reply);
    bt_check_error (&reply, code, true, rid);
    snprintf (message, sizeof message, "%.*s", (int) reply.body.error.message.len,
              reply.body.error.message.ptr);
    bu_reply_fini (&reply);
    return message;
}

//  A STATUS reply's value for name: uint into *value, str into text.
static void
s_status (zsock_t *sock, const char *name, uint64_t *value, char *text, size_t size)
{
    static uint64_t rid = 90000;
    bt_send_rid (sock, "STATUS", ++rid);
    rt_reply_t raw;
    rt_recv (sock, &raw, S_WAIT_MS);
    cr_assert_str_eq (raw.command, "STATUS");
    const msgpack_object *got = rt_get (raw.body, name);
    cr_assert_not_null (got, "STATUS has no %s", name);
    if (value)
        *value = got->type == MSGPACK_OBJECT_POSITIVE_INTEGER? got->via.u64: UINT64_MAX;
    if (text)
        snprintf (text, size, "%.*s", got->type == MSGPACK_OBJECT_STR
                  ? (int) got->via.str.size: 0, got->via.str.ptr);
    rt_reply_fini (&raw);
}

static uint64_t
s_status_uint (zsock_t *sock, const char *name)
{
    uint64_t value = 0;
    s_status (sock, name, &value, NULL, 0);
    return value;
}

//  True when key gets an answer to STATUS within timeout_ms (a fresh
//  connection each try: libzmq does not retry a refused handshake).
static bool
s_admitted (const rt_key_t *key, int timeout_ms)
{
    int64_t deadline = zclock_mono () + timeout_ms;
    for (uint64_t rid = 1; rid == 1 || zclock_mono () < deadline; rid++) {
        zsock_t *sock = s_client (key);
        bt_send_rid (sock, "STATUS", rid);
        zmsg_t *msg = bu_recv (sock, 100);
        bt_drop (&sock);
        if (msg) {
            zmsg_destroy (&msg);
            return true;
        }
    }
    return false;
}


//  --------------------------------------------------------------------------
//  reload

Test (heraldd_acl_command, reload_takes_effect_when_its_reply_comes)
{
    s_acl_standard (NULL);
    s_start_secure ();
    zsock_t *alice = s_client (&s_keys [ALICE]);
    char before [16];
    s_status (alice, "acl_version", NULL, before, sizeof before);
    s_acl_standard (s_eve_entry ());
    cr_assert_not (s_admitted (&s_keys [EVE], 300), "eve got in before the reload");
    rt_reply_t raw;
    s_acl (alice, 7, "reload", &raw);
    cr_assert (rt_str_is (rt_get (raw.body, "previous"), before));
    const msgpack_object *version = rt_get (raw.body, "acl_version");
    cr_assert (version && version->type == MSGPACK_OBJECT_STR
               && version->via.str.size == 12 && !rt_str_is (version, before));
    char after [16];
    snprintf (after, sizeof after, "%.*s", 12, version->via.str.ptr);
    cr_assert_eq (rt_get (raw.body, "users")->via.u64, 5);
    cr_assert_eq (rt_get (raw.body, "scopes")->via.u64, 1);
    cr_assert (s_words_eq (rt_get (raw.body, "revoked"), ""));
    rt_reply_fini (&raw);
    //  At once: the first try of a new connection is admitted
    zsock_t *eve = s_client (&s_keys [EVE]);
    bt_send_rid (eve, "STATUS", 1);
    zmsg_t *msg = bu_recv (eve, 2000);
    cr_assert_not_null (msg, "eve was not admitted right after the reload's reply");
    zmsg_destroy (&msg);
    char now [16];
    s_status (alice, "acl_version", NULL, now, sizeof now);
    cr_assert_str_eq (now, after);
    cr_assert_eq (s_status_uint (alice, "acl_reloads"), 1);
    //  The audit (stderr here, written by its own thread) names who asked
    char log [16384];
    int64_t deadline = zclock_mono () + S_WAIT_MS;
    do {
        bu_broker_log (bt_broker, log, sizeof log);
        if (strstr (log, "\"by\":\"alice\"}"))
            break;
        zclock_sleep (20);
    } while (zclock_mono () < deadline);
    cr_assert_not_null (strstr (log, "\"event\":\"acl_reload\",\"result\":\"ok\""), "%s", log);
    cr_assert_not_null (strstr (log, "\"by\":\"alice\"}"), "no by in the audit:\n%s", log);

    //  bob removed: the reply names him, his running stream ends, his next
    //  request is refused, on the connection he already has
    bu_event_t event;
    bu_event_init (&event, "orders.1", "x");
    bt_send_publish (alice, 30, &event, 1);
    bu_reply_t ack = { 0 };
    bt_recv (alice, &ack);
    cr_assert_eq (ack.type, HERALD_MSG_ACK);
    bu_reply_fini (&ack);
    zsock_t *bob = s_client (&s_keys [BOB]);
    bu_replay_t replay = { .has_credit = true, .credit = 0 };
    bt_send_replay (bob, 50, &replay);      //  no credit: it waits, open
    bt_send_rid (bob, "STATUS", 1);
    msg = bu_recv (bob, S_WAIT_MS);
    cr_assert_not_null (msg);
    zmsg_destroy (&msg);
    char *text = NULL;
    cr_assert_geq (asprintf (&text, "[user alice]\nkey = %s\nread = *\nadmin = acl status\n",
                             s_keys [ALICE].public_txt), 0);
    s_acl_write (text);
    free (text);
    s_acl (alice, 8, "reload", &raw);
    cr_assert (s_words_eq (rt_get (raw.body, "revoked"), "bob carol dave eve"),
               "revoked is not the four users removed");
    cr_assert_eq (rt_get (raw.body, "users")->via.u64, 1);
    cr_assert_eq (rt_get (raw.body, "scopes")->via.u64, 0);
    rt_reply_fini (&raw);
    //  The revocation pass runs at the loop's next turn, not at the next
    //  once-a-second expiry pass: the stream's end follows the reply at once
    //  (without the command's own signal to the loop it came 0-1000 ms later)
    int64_t replied = zclock_mono ();
    const char *message = s_expect_error (bob, HERALD_ERR_UNAUTHORIZED, 50);
    cr_assert_lt (zclock_mono () - replied, 200, "the stream ended %" PRId64 " ms after the "
                  "reload's reply", zclock_mono () - replied);
    cr_assert_not_null (strstr (message, "revoked"), "%s", message);
    bt_send_rid (bob, "STATUS", 2);
    message = s_expect_error (bob, HERALD_ERR_UNAUTHORIZED, 2);
    cr_assert_not_null (strstr (message, "key revoked"), "%s", message);
    //  The same file again: a reload all the same, nothing revoked
    s_acl (alice, 9, "reload", &raw);
    cr_assert (s_words_eq (rt_get (raw.body, "revoked"), ""));
    rt_reply_fini (&raw);
    cr_assert_eq (s_status_uint (alice, "acl_reloads"), 3);
    cr_assert_eq (bu_broker_stop (bt_broker, BT_STOP_MS), 0);
    cr_assert (WIFEXITED (bt_broker->status) && WEXITSTATUS (bt_broker->status) == 0);
}

Test (heraldd_acl_command, a_broken_file_is_refused_naming_its_line_and_the_table_stays)
{
    s_acl_standard (NULL);
    s_start_secure ();
    zsock_t *alice = s_client (&s_keys [ALICE]);
    char before [16];
    s_status (alice, "acl_version", NULL, before, sizeof before);
    //  eve in a good part, a broken line after it: refused whole.  The
    //  standard file has 23 lines, eve's entry 5 (a blank line first),
    //  then a blank line, zed's header on 30 and his bad key on 31
    char *broken = NULL;
    cr_assert_geq (asprintf (&broken, "%s\n[user zed]\nkey = short\n", s_eve_entry ()), 0);
    s_acl_standard (broken);
    free (broken);
    s_acl_send (alice, 11, "reload");
    const char *message = s_expect_error (alice, HERALD_ERR_BAD_REQUEST, 11);
    char where [600];
    snprintf (where, sizeof where, "%s:31:", s_acl_path);
    cr_assert_not_null (strstr (message, where), "the ERROR does not name %s: %s", where,
                        message);
    cr_assert_not_null (strstr (message, before), "the ERROR does not say which version "
                        "stays: %s", message);
    //  The old table is in force: same version, eve out, bob in
    char now [16];
    s_status (alice, "acl_version", NULL, now, sizeof now);
    cr_assert_str_eq (now, before);
    cr_assert_eq (s_status_uint (alice, "acl_errors"), 1);
    cr_assert_eq (s_status_uint (alice, "acl_reloads"), 0);
    cr_assert_not (s_admitted (&s_keys [EVE], 300), "a refused file let eve in");
    cr_assert (s_admitted (&s_keys [BOB], 1000), "the old table was dropped");
    //  A file that cannot be read: refused too, the table stays
    cr_assert_eq (unlink (s_acl_path), 0);
    s_acl_send (alice, 12, "reload");
    message = s_expect_error (alice, HERALD_ERR_INTERNAL, 12);
    cr_assert_not_null (strstr (message, s_acl_path), "%s", message);
    cr_assert (s_admitted (&s_keys [BOB], 1000), "the old table was dropped");
    //  Fixed: the next reload takes it
    s_acl_standard (s_eve_entry ());
    rt_reply_t raw;
    s_acl (alice, 13, "reload", &raw);
    rt_reply_fini (&raw);
    cr_assert (s_admitted (&s_keys [EVE], 1000));
}

Test (heraldd_acl_command, only_admin_acl_may_ask)
{
    s_acl_standard (NULL);
    s_start_secure ();
    s_acl_standard (s_eve_entry ());
    const int askers [] = { BOB, CAROL, DAVE };
    const char *names [] = { "bob", "carol", "dave" };
    for (size_t at = 0; at < 3; at++) {
        zsock_t *sock = s_client (&s_keys [askers [at]]);
        s_acl_send (sock, 20 + at, "reload");
        const char *message = s_expect_error (sock, HERALD_ERR_UNAUTHORIZED, 20 + at);
        cr_assert_not_null (strstr (message, "admin = acl"), "%s", message);
        cr_assert_not_null (strstr (message, names [at]), "%s", message);
        s_acl_send (sock, 30 + at, "show");
        s_expect_error (sock, HERALD_ERR_UNAUTHORIZED, 30 + at);
        //  Refused before its body is read: a bad op is unauthorized too
        s_acl_send (sock, 40 + at, "drop");
        s_expect_error (sock, HERALD_ERR_UNAUTHORIZED, 40 + at);
    }
    //  Nothing was reloaded: eve is still out
    cr_assert_not (s_admitted (&s_keys [EVE], 300), "a refused reload took effect");
    zsock_t *alice = s_client (&s_keys [ALICE]);
    cr_assert_eq (s_status_uint (alice, "acl_reloads"), 0);
    cr_assert_geq (s_status_uint (alice, "unauthorized"), 9);
    //  alice may; her bad op is bad_request naming op
    s_acl_send (alice, 50, "drop");
    bu_reply_t reply = { 0 };
    bt_recv (alice, &reply);
    bt_check_error (&reply, HERALD_ERR_BAD_REQUEST, true, 50);
    cr_assert_not_null (memmem (reply.body.error.message.ptr, reply.body.error.message.len,
                                "op", 2));
    bu_reply_fini (&reply);
}

//  --------------------------------------------------------------------------
//  show

//  The user named name in a show reply's users, or NULL.
static const msgpack_object *
s_user (const msgpack_object *users, const char *name)
{
    for (uint32_t index = 0; users && index < users->via.array.size; index++)
        if (rt_str_is (rt_get (&users->via.array.ptr [index], "name"), name))
            return &users->via.array.ptr [index];
    return NULL;
}

static bool
s_keys_eq (const msgpack_object *user, const rt_key_t *key)
{
    char prefix [S_KEY_SHOWN + 1];
    snprintf (prefix, sizeof prefix, "%.*s", S_KEY_SHOWN, key->public_txt);
    const msgpack_object *keys = rt_get (user, "keys");
    return keys && keys->type == MSGPACK_OBJECT_ARRAY && keys->via.array.size == 1
        && rt_str_is (&keys->via.array.ptr [0], prefix);
}

Test (heraldd_acl_command, show_says_what_the_file_says)
{
    s_acl_standard (NULL);
    struct timespec start;
    clock_gettime (CLOCK_REALTIME, &start);
    uint64_t started = (uint64_t) start.tv_sec * 1000000000ULL + (uint64_t) start.tv_nsec;
    s_start_secure ();
    zsock_t *alice = s_client (&s_keys [ALICE]);
    char version [16];
    s_status (alice, "acl_version", NULL, version, sizeof version);
    rt_reply_t raw;
    s_acl (alice, 3, "show", &raw);
    cr_assert (rt_str_is (rt_get (raw.body, "acl_version"), version));
    cr_assert (rt_str_is (rt_get (raw.body, "path"), s_acl_path));
    const msgpack_object *loaded = rt_get (raw.body, "loaded");
    cr_assert (loaded && loaded->type == MSGPACK_OBJECT_POSITIVE_INTEGER);
    cr_assert_geq (loaded->via.u64, started);
    cr_assert_leq (loaded->via.u64, started + 60000000000ULL);
    const msgpack_object *scopes = rt_get (raw.body, "scopes");
    cr_assert (scopes && scopes->type == MSGPACK_OBJECT_ARRAY && scopes->via.array.size == 1);
    const msgpack_object *scope = &scopes->via.array.ptr [0];
    char fanout [64];
    snprintf (fanout, sizeof fanout, "tcp://127.0.0.1:%d", s_scope_port);
    cr_assert (rt_str_is (rt_get (scope, "name"), "orders-view"));
    cr_assert (rt_str_is (rt_get (scope, "fanout"), fanout));
    cr_assert (s_words_eq (rt_get (scope, "read"), "customers. orders."));
    const msgpack_object *users = rt_get (raw.body, "users");
    cr_assert (users && users->type == MSGPACK_OBJECT_ARRAY && users->via.array.size == 4);
    const msgpack_object *user = s_user (users, "alice");
    cr_assert_not_null (user);
    cr_assert (rt_str_is (rt_get (user, "scope"), "*"));
    cr_assert (s_words_eq (rt_get (user, "publish"), "orders."));
    cr_assert (s_words_eq (rt_get (user, "admin"), "status acl"));
    cr_assert (s_keys_eq (user, &s_keys [ALICE]));
    user = s_user (users, "bob");
    cr_assert_not_null (user);
    cr_assert (rt_str_is (rt_get (user, "scope"), "orders-view"));
    cr_assert (s_words_eq (rt_get (user, "publish"), "stock."));
    cr_assert (s_words_eq (rt_get (user, "admin"), ""));
    cr_assert (s_keys_eq (user, &s_keys [BOB]));
    user = s_user (users, "carol");
    cr_assert_not_null (user);
    const msgpack_object *none = rt_get (user, "scope");
    cr_assert (none && none->type == MSGPACK_OBJECT_NIL, "carol reads nothing: scope nil");
    cr_assert (s_words_eq (rt_get (user, "publish"), "billing."));
    user = s_user (users, "dave");
    cr_assert (s_words_eq (rt_get (user, "publish"), ""));
    cr_assert (s_words_eq (rt_get (user, "admin"), "status"));
    //  No whole key anywhere in the reply
    zframe_t *body = zmsg_last (raw.msg);
    for (size_t index = 0; index < S_USERS; index++)
        cr_assert_null (memmem (zframe_data (body), zframe_size (body),
                                s_keys [index].public_txt, 40), "a whole key was shown");
    rt_reply_fini (&raw);
    //  After a reload, show follows the new table
    s_acl_standard (s_eve_entry ());
    s_acl (alice, 4, "reload", &raw);
    rt_reply_fini (&raw);
    s_acl (alice, 5, "show", &raw);
    cr_assert_eq (rt_get (raw.body, "users")->via.array.size, 5);
    cr_assert (s_keys_eq (s_user (rt_get (raw.body, "users"), "eve"), &s_keys [EVE]));
    cr_assert_not (rt_str_is (rt_get (raw.body, "acl_version"), version));
    rt_reply_fini (&raw);
}

//  --------------------------------------------------------------------------
//  security off

Test (heraldd_acl_command, with_security_off_it_is_bad_request)
{
    bt_start ();
    zsock_t *client = bt_client ();
    s_acl_send (client, 5, "show");
    const char *message = s_expect_error (client, HERALD_ERR_BAD_REQUEST, 5);
    cr_assert_not_null (strstr (message, "security is off"), "%s", message);
    s_acl_send (client, 6, "reload");
    message = s_expect_error (client, HERALD_ERR_BAD_REQUEST, 6);
    cr_assert_not_null (strstr (message, "security is off"), "%s", message);
    //  A bad body is named as such first
    s_acl_send (client, 7, "drop");
    bu_reply_t reply = { 0 };
    bt_recv (client, &reply);
    bt_check_error (&reply, HERALD_ERR_BAD_REQUEST, true, 7);
    cr_assert_null (memmem (reply.body.error.message.ptr, reply.body.error.message.len,
                            "security is off", 15));
    bu_reply_fini (&reply);
    //  and the broker serves on
    cr_assert_eq (bt_head (client), 0);
}
