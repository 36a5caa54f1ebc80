/*  =========================================================================
    test_herald_auth - the ZAP handler, in process, request by request

    herald_auth made from a real config (a zcert key, an ACL file, an
    audit file in a temporary directory), and a DEALER on its inproc
    endpoint that speaks RFC 27 as libzmq does, and as libzmq never
    would: every decision per domain, then malformed frame lists and
    random ones, which must be answered 500 or dropped, never crash it,
    never answer 300.
    =========================================================================
*/

#include <criterion/criterion.h>
#include <string.h>
#include <sys/stat.h>
#include <czmq.h>

#include "herald_auth.h"
#include "testutil.h"

static char *s_dir;
static herald_config_t *s_config;
static herald_auth_t *s_auth;
static zsock_t *s_client;
static zcert_t *s_alice, *s_bob, *s_stranger;

static void
s_setup (void)
{
    s_dir = tu_tmpdir_new ("auth");
    cr_assert_not_null (s_dir);
    zcert_t *broker = zcert_new ();
    char *path = tu_path (s_dir, "broker.key");
    cr_assert_eq (zcert_save (broker, path), 0);
    zcert_destroy (&broker);
    s_alice = zcert_new ();
    s_bob = zcert_new ();
    s_stranger = zcert_new ();
    char *acl = NULL;
    cr_assert_geq (asprintf (&acl,
        "[scope view]\nread = orders.\nfanout = tcp://127.0.0.1:1\n\n"
        "[user alice]\nkey = %s\nread = *\n\n"
        "[user bob]\nkey = %s\nscope = view\n",
        zcert_public_txt (s_alice), zcert_public_txt (s_bob)), 0);
    char *acl_path = tu_path (s_dir, "acl");
    cr_assert_eq (tu_write_file (acl_path, acl, strlen (acl)), 0);
    chmod (acl_path, 0644);
    free (acl);
    s_config = herald_config_new ();
    char *secret = NULL, *audit = NULL;
    cr_assert_geq (asprintf (&secret, "%s_secret", path), 0);
    audit = tu_path (s_dir, "audit");
    free (s_config->curve_secret);
    s_config->curve_secret = secret;
    free (s_config->acl);
    s_config->acl = acl_path;
    free (s_config->audit_log);
    s_config->audit_log = audit;
    free (path);
    herald_error_t err = { 0 };
    s_auth = herald_auth_new (s_config, &err);
    cr_assert_not_null (s_auth, "%s", err.message);
    s_client = zsock_new (ZMQ_DEALER);
    zsock_set_linger (s_client, 0);
    cr_assert_eq (zsock_connect (s_client, "%s", HERALD_AUTH_ENDPOINT), 0);
}

static void
s_teardown (void)
{
    zsock_destroy (&s_client);
    herald_auth_destroy (&s_auth);
    herald_config_destroy (&s_config);
    zcert_destroy (&s_alice);
    zcert_destroy (&s_bob);
    zcert_destroy (&s_stranger);
    tu_tmpdir_destroy (&s_dir);
}

TestSuite (herald_auth, .init = s_setup, .fini = s_teardown, .timeout = 60);

//  Send frames (after the empty delimiter a REQ-like peer adds), let the
//  handler serve, and return its reply (NULL: none within 100 ms).
static zmsg_t *
s_ask (zmsg_t *request)
{
    zmsg_pushmem (request, "", 0);
    cr_assert_eq (zmsg_send (&request, s_client), 0);
    zsock_t *zap = herald_auth_sock (s_auth);
    zmq_pollitem_t item = { zsock_resolve (zap), 0, ZMQ_POLLIN, 0 };
    zmq_poll (&item, 1, 100);
    herald_auth_serve (s_auth);
    zmq_pollitem_t back = { zsock_resolve (s_client), 0, ZMQ_POLLIN, 0 };
    if (zmq_poll (&back, 1, 100) <= 0)
        return NULL;
    zmsg_t *reply = zmsg_recv (s_client);
    char *delimiter = zmsg_popstr (reply);
    cr_assert_str_eq (delimiter, "");
    free (delimiter);
    return reply;
}

//  A well-formed request for key (32 bytes) on domain.
static zmsg_t *
s_request (const char *domain, const char *mechanism, const uint8_t *key, size_t key_len)
{
    zmsg_t *request = zmsg_new ();
    zmsg_addstr (request, "1.0");
    zmsg_addstr (request, "42");
    zmsg_addstr (request, domain);
    zmsg_addstr (request, "127.0.0.1");
    zmsg_addmem (request, "", 0);
    zmsg_addstr (request, mechanism);
    if (key)
        zmsg_addmem (request, key, key_len);
    return request;
}

//  The reply's status, text and user; metadata value of name into value.
static void
s_check (zmsg_t *reply, const char *status, const char *text, const char *user)
{
    cr_assert_not_null (reply, "no reply");
    cr_assert_eq (zmsg_size (reply), 6);
    char *version = zmsg_popstr (reply);
    char *id = zmsg_popstr (reply);
    char *got_status = zmsg_popstr (reply);
    char *got_text = zmsg_popstr (reply);
    char *got_user = zmsg_popstr (reply);
    cr_assert_str_eq (version, "1.0");
    cr_assert_str_eq (id, "42");
    cr_assert_str_eq (got_status, status);
    cr_assert_neq (strcmp (got_status, "300"), 0);
    if (text)
        cr_assert_str_eq (got_text, text);
    cr_assert_str_eq (got_user, user);
    free (version);
    free (id);
    free (got_status);
    free (got_text);
    free (got_user);
}

//  The metadata property name of a 200 reply's last frame.
static bool
s_metadata_has (zframe_t *frame, const char *name, const char *value)
{
    const uint8_t *data = zframe_data (frame);
    size_t size = zframe_size (frame), at = 0;
    while (at < size) {
        size_t name_len = data [at++];
        if (at + name_len + 4 > size)
            return false;
        bool match = name_len == strlen (name) && memcmp (data + at, name, name_len) == 0;
        at += name_len;
        size_t value_len = ((size_t) data [at] << 24) | ((size_t) data [at + 1] << 16)
                         | ((size_t) data [at + 2] << 8) | data [at + 3];
        at += 4;
        if (at + value_len > size)
            return false;
        if (match)
            return value_len == strlen (value) && memcmp (data + at, value, value_len) == 0;
        at += value_len;
    }
    return false;
}

Test (herald_auth, each_domain_admits_whom_the_acl_says)
{
    zmsg_t *reply = s_ask (s_request ("herald.api", "CURVE", zcert_public_key (s_alice), 32));
    s_check (reply, "200", NULL, "alice");
    zframe_t *metadata = zmsg_first (reply);
    cr_assert (s_metadata_has (metadata, "Key", zcert_public_txt (s_alice)));
    cr_assert (s_metadata_has (metadata, "Scope", "*"));
    zmsg_destroy (&reply);

    reply = s_ask (s_request ("herald.fanout", "CURVE", zcert_public_key (s_alice), 32));
    s_check (reply, "200", NULL, "alice");
    zmsg_destroy (&reply);
    reply = s_ask (s_request ("herald.fanout/view", "CURVE", zcert_public_key (s_alice), 32));
    s_check (reply, "400", "not allowed on herald.fanout/view", "");
    zmsg_destroy (&reply);

    reply = s_ask (s_request ("herald.fanout", "CURVE", zcert_public_key (s_bob), 32));
    s_check (reply, "400", "not allowed on herald.fanout", "");
    zmsg_destroy (&reply);
    reply = s_ask (s_request ("herald.fanout/view", "CURVE", zcert_public_key (s_bob), 32));
    s_check (reply, "200", NULL, "bob");
    cr_assert (s_metadata_has (zmsg_first (reply), "Scope", "view"));
    zmsg_destroy (&reply);
    reply = s_ask (s_request ("herald.fanout/viewx", "CURVE", zcert_public_key (s_bob), 32));
    s_check (reply, "400", NULL, "");
    zmsg_destroy (&reply);

    reply = s_ask (s_request ("herald.api", "CURVE", zcert_public_key (s_stranger), 32));
    s_check (reply, "400", "unknown key", "");
    zmsg_destroy (&reply);
    reply = s_ask (s_request ("herald.raft", "CURVE", zcert_public_key (s_alice), 32));
    s_check (reply, "400", "not allowed on herald.raft", "");
    zmsg_destroy (&reply);
    reply = s_ask (s_request ("elsewhere", "CURVE", zcert_public_key (s_alice), 32));
    s_check (reply, "400", "not allowed on elsewhere", "");
    zmsg_destroy (&reply);
    cr_assert_eq (herald_auth_counts (s_auth)->auth_refused, 6);
}

Test (herald_auth, malformed_requests_are_answered_500_or_dropped)
{
    //  Not CURVE, or a key of the wrong size: 400
    zmsg_t *reply = s_ask (s_request ("herald.api", "PLAIN", zcert_public_key (s_alice), 32));
    s_check (reply, "400", NULL, "");
    zmsg_destroy (&reply);
    reply = s_ask (s_request ("herald.api", "CURVE", zcert_public_key (s_alice), 31));
    s_check (reply, "400", NULL, "");
    zmsg_destroy (&reply);
    reply = s_ask (s_request ("herald.api", "CURVE", NULL, 0));
    s_check (reply, "400", NULL, "");
    zmsg_destroy (&reply);
    //  Another version, or frames missing after the request id: 500
    zmsg_t *request = s_request ("herald.api", "CURVE", zcert_public_key (s_alice), 32);
    zframe_t *version = zmsg_first (request);
    zframe_reset (version, "2.0", 3);
    reply = s_ask (request);
    cr_assert_not_null (reply);
    zmsg_destroy (&reply);
    request = zmsg_new ();
    zmsg_addstr (request, "1.0");
    zmsg_addstr (request, "42");
    reply = s_ask (request);
    s_check (reply, "500", NULL, "");
    zmsg_destroy (&reply);
    //  Nothing to answer to: dropped
    request = zmsg_new ();
    zmsg_addstr (request, "1.0");
    cr_assert_null (s_ask (request));
    //  Still serving
    reply = s_ask (s_request ("herald.api", "CURVE", zcert_public_key (s_alice), 32));
    s_check (reply, "200", NULL, "alice");
    zmsg_destroy (&reply);
}

Test (herald_auth, random_frame_lists_never_crash_it_nor_get_300)
{
    uint64_t state = 0x5eed;
    for (int round = 0; round < 2000; round++) {
        zmsg_t *request = zmsg_new ();
        size_t frames = (size_t) (tu_rand (&state) % 12);
        for (size_t index = 0; index < frames; index++) {
            uint8_t bytes [64];
            size_t len = (size_t) (tu_rand (&state) % sizeof bytes);
            for (size_t at = 0; at < len; at++)
                bytes [at] = (uint8_t) tu_rand (&state);
            //  Sometimes the expected values, so that later frames are reached
            if (index == 0 && tu_rand (&state) % 2)
                zmsg_addstr (request, "1.0");
            else
            if (index == 2 && tu_rand (&state) % 2)
                zmsg_addstr (request, "herald.api");
            else
            if (index == 5 && tu_rand (&state) % 2)
                zmsg_addstr (request, "CURVE");
            else
                zmsg_addmem (request, bytes, len);
        }
        zmsg_t *reply = s_ask (request);
        if (reply) {
            cr_assert_eq (zmsg_size (reply), 6);
            zmsg_first (reply);
            zmsg_next (reply);
            char *status = zframe_strdup (zmsg_next (reply));
            cr_assert (streq (status, "200") || streq (status, "400") || streq (status, "500"),
                       "status %s", status);
            cr_assert_str_neq (status, "200", "a random key was admitted");
            free (status);
            zmsg_destroy (&reply);
        }
    }
    zmsg_t *reply = s_ask (s_request ("herald.api", "CURVE", zcert_public_key (s_alice), 32));
    s_check (reply, "200", NULL, "alice");
    zmsg_destroy (&reply);
}
