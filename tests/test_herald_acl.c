/*  =========================================================================
    test_herald_acl - the ACL table: the file's syntax and rules, every
    error with its exact FILE:LINE message, normalisation, lookups, and
    herald_acl_narrow / herald_acl_scopes_of against brute force

    Keys are real CURVE keys made with zcert_new (a few are made from
    chosen bytes with zmq_z85_encode, to hold a '#').
    =========================================================================
*/

#include <criterion/criterion.h>
#include <czmq.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include "herald_acl.h"

#define S_NOW   ((int64_t) 1800000000 * 1000000000)     //  2027-01-15T08:00:00Z

static char s_keys [8][41];

//  Eight fresh public keys, s_keys[0..7].
static void
s_make_keys (void)
{
    for (int index = 0; index < 8; index++) {
        zcert_t *cert = zcert_new ();
        cr_assert (cert);
        snprintf (s_keys [index], sizeof (s_keys [index]), "%s", zcert_public_txt (cert));
        zcert_destroy (&cert);
    }
}

//  text with every %K0..%K7 replaced by s_keys[0..7]; caller frees.
static char *
s_expand (const char *text)
{
    char *out = malloc (strlen (text) * 20 + 1);
    cr_assert (out);
    size_t used = 0;
    for (const char *at = text; *at; at++) {
        if (at [0] == '%' && at [1] == 'K' && at [2] >= '0' && at [2] <= '7') {
            memcpy (out + used, s_keys [at [2] - '0'], 40);
            used += 40;
            at += 2;
        }
        else
            out [used++] = *at;
    }
    out [used] = 0;
    return out;
}

//  The table of text (with %Kn expanded), which must parse.
static herald_acl_t *
s_parse_ok (const char *text)
{
    char *expanded = s_expand (text);
    herald_error_t err = { 0 };
    herald_acl_t *acl = herald_acl_parse (expanded, strlen (expanded), "acl", &err);
    cr_assert (acl, "refused: %s\n--\n%s", err.message, expanded);
    free (expanded);
    return acl;
}

//  text must be refused with exactly message.
static void
s_parse_fails (const char *text, const char *message)
{
    char *expanded = s_expand (text);
    char *expected = s_expand (message);
    herald_error_t err = { 0 };
    herald_acl_t *acl = herald_acl_parse (expanded, strlen (expanded), "acl", &err);
    cr_assert_null (acl, "accepted:\n%s", expanded);
    cr_assert_eq (err.code, HERALD_ERR_INVALID);
    cr_assert_str_eq (err.message, expected, "for:\n%s", expanded);
    free (expanded);
    free (expected);
}

static bool
s_is (const herald_str_t *str, const char *text)
{
    return str->len == strlen (text) && memcmp (str->ptr, text, str->len) == 0;
}

static uint8_t *
s_key_bytes (int index)
{
    static uint8_t key [32];
    cr_assert (zmq_z85_decode (key, s_keys [index]));
    return key;
}

TestSuite (herald_acl, .init = s_make_keys);

//  --------------------------------------------------------------------------
//  Valid files

static const char *s_example =
    "# the design's example\n"
    "[scope orders-view]                 # a read view\n"
    "read    = orders. customers.\n"
    "fanout  = tcp://0.0.0.0:5591\n"
    "\n"
    "[scope billing-view]\n"
    "read    = billing. \"invoices with space.\"    # quoted\n"
    "fanout  = tcp://0.0.0.0:5592\n"
    "\n"
    "[role writer-orders]\n"
    "publish = orders.\n"
    "rate    = 20000/s burst 50000\n"
    "\n"
    "[user order-svc]\n"
    "key     = %K0\n"
    "key     = %K1  until 2027-01-31   # rotation\n"
    "role    = writer-orders\n"
    "scope   = orders-view\n"
    "\n"
    "[user inventory]\n"
    "key     = %K2\n"
    "scope   = orders-view\n"
    "publish = stock. inventory.\n"
    "streams = 8\n"
    "\n"
    "[user ops-alice]\n"
    "key     = %K3\n"
    "read    = *\n"
    "admin   = status acl\n"
    "\n"
    "[user audit]\n"
    "key     = %K4\n"
    "publish = audit.\n"
    "\n"
    "[peer node-2]\n"
    "key     = %K5\n";

Test (herald_acl, design_example_parses)
{
    herald_acl_t *acl = s_parse_ok (s_example);
    cr_assert_eq (herald_acl_scope_count (acl), 2);
    cr_assert_eq (herald_acl_user_count (acl), 4);
    cr_assert_eq (herald_acl_peer_count (acl), 1);

    const herald_acl_scope_t *orders = herald_acl_scope (acl, "orders-view");
    cr_assert (orders);
    cr_assert_eq (orders->index, 0);
    cr_assert_str_eq (orders->fanout, "tcp://0.0.0.0:5591");
    cr_assert_eq (orders->read.count, 2);
    cr_assert (s_is (&orders->read.prefixes [0], "customers."));
    cr_assert (s_is (&orders->read.prefixes [1], "orders."));
    const herald_acl_scope_t *billing = herald_acl_scope_at (acl, 1);
    cr_assert_str_eq (billing->name, "billing-view");
    cr_assert (s_is (&billing->read.prefixes [1], "invoices with space."));

    const herald_acl_user_t *svc = herald_acl_user (acl, "order-svc");
    cr_assert (svc);
    cr_assert_eq (svc->key_count, 2);
    cr_assert_str_eq (svc->keys [0].z85, s_keys [0]);
    cr_assert_eq (svc->keys [0].until_ns, 0);
    cr_assert_eq (svc->keys [1].until_ns, (int64_t) 1801353600 * 1000000000);
    cr_assert_eq (svc->scope, orders);
    cr_assert_not (svc->read_all);
    cr_assert_eq (svc->publish.count, 1);
    cr_assert (s_is (&svc->publish.prefixes [0], "orders."));
    cr_assert_eq (svc->rate, 20000);
    cr_assert_eq (svc->rate_burst, 50000);

    const herald_acl_user_t *inventory = herald_acl_user (acl, "inventory");
    cr_assert_eq (inventory->streams, 8);
    cr_assert_eq (inventory->rate, 0);
    cr_assert (s_is (&inventory->publish.prefixes [0], "inventory."));
    cr_assert (s_is (&inventory->publish.prefixes [1], "stock."));

    const herald_acl_user_t *alice = herald_acl_user (acl, "ops-alice");
    cr_assert (alice->read_all);
    cr_assert_null (alice->scope);
    cr_assert_eq (alice->admin, HERALD_ACL_ADMIN_STATUS | HERALD_ACL_ADMIN_ACL);
    cr_assert_eq (alice->publish.count, 0);
    cr_assert_not (alice->publish.all);

    const herald_acl_user_t *audit = herald_acl_user (acl, "audit");
    cr_assert_not (audit->read_all);
    cr_assert_null (audit->scope);
    cr_assert_null (herald_acl_user (acl, "nobody"));
    cr_assert_null (herald_acl_user (acl, "writer-orders"), "a role is not a user");

    //  users by name
    cr_assert_str_eq (herald_acl_user_at (acl, 0)->name, "audit");
    cr_assert_str_eq (herald_acl_user_at (acl, 3)->name, "order-svc");
    cr_assert_null (herald_acl_user_at (acl, 4));
    cr_assert_str_eq (herald_acl_peer_at (acl, 0)->name, "node-2");
    herald_acl_destroy (&acl);
    cr_assert_null (acl);
    herald_acl_destroy (&acl);
}

Test (herald_acl, names_are_unique_per_kind)
{
    herald_acl_t *acl = s_parse_ok ("[user x]\nkey = %K0\nrole = x\nscope = x\n[role x]\n"
                                    "publish = x.\n[scope x]\nread = x.\nfanout = tcp://h:1\n"
                                    "[peer x]\nkey = %K1\n");
    const herald_acl_user_t *user = herald_acl_user (acl, "x");
    cr_assert_eq (user->scope, herald_acl_scope (acl, "x"));
    cr_assert (herald_acl_may_publish (user, "x.1", 3));
    herald_acl_destroy (&acl);
}

Test (herald_acl, empty_file_is_an_empty_table)
{
    herald_acl_t *acl = s_parse_ok ("# nothing granted\n\n   \n");
    cr_assert_eq (herald_acl_user_count (acl), 0);
    cr_assert_eq (herald_acl_scopes_of (acl, "a", 1), 0);
    cr_assert_null (herald_acl_user_by_key (acl, s_key_bytes (0), S_NOW, NULL, NULL));
    herald_acl_destroy (&acl);
}

Test (herald_acl, crlf_tabs_and_comments)
{
    herald_acl_t *acl = s_parse_ok ("[user b] # c\nkey = %K1\n"
                                    "[user a]\t# comment\r\n\tkey\t=\t%K0\t# c\r\n"
                                    "publish = x.  # y.\r\n# publish = z.\n");
    const herald_acl_user_t *user = herald_acl_user (acl, "a");
    cr_assert_eq (user->publish.count, 1);
    cr_assert (s_is (&user->publish.prefixes [0], "x."));
    herald_acl_destroy (&acl);
}

//  --------------------------------------------------------------------------
//  Quoting and '#'

Test (herald_acl, hash_starts_a_comment_only_after_whitespace)
{
    herald_acl_t *acl = s_parse_ok ("[user a]\nkey = %K0\npublish = a#b \"#c\" d.#\n"
                                    "publish = e. #f.\n");
    const herald_acl_user_t *user = herald_acl_user (acl, "a");
    cr_assert_eq (user->publish.count, 4);
    cr_assert (s_is (&user->publish.prefixes [0], "#c"));
    cr_assert (s_is (&user->publish.prefixes [1], "a#b"));
    cr_assert (s_is (&user->publish.prefixes [2], "d.#"));
    cr_assert (s_is (&user->publish.prefixes [3], "e."));
    herald_acl_destroy (&acl);
}

Test (herald_acl, z85_key_holding_a_hash)
{
    //  bytes 00 00 00 54 encode as "0000#": '#' is Z85's last digit
    uint8_t bytes [32] = { 0, 0, 0, 0x54, 1, 2, 3, 4 };
    char z85 [41];
    cr_assert (zmq_z85_encode (z85, bytes, 32));
    cr_assert (strchr (z85, '#'), "%s", z85);
    char text [200];
    snprintf (text, sizeof (text), "[user a]\nkey = %s # the key\n", z85);
    herald_error_t err;
    herald_acl_t *acl = herald_acl_parse (text, strlen (text), "acl", &err);
    cr_assert (acl, "%s", err.message);
    const herald_acl_user_t *user = herald_acl_user_by_key (acl, bytes, S_NOW, NULL, NULL);
    cr_assert (user);
    cr_assert_str_eq (user->keys [0].z85, z85);
    herald_acl_destroy (&acl);
}

Test (herald_acl, quoted_words)
{
    herald_acl_t *acl = s_parse_ok ("[user a]\nkey = %K0\n"
                                    "publish = \"a b.\" \"tab\there\" \"q\\\"uote\" "
                                    "\"back\\\\slash\" \"*\" \"x\\y\"\n");
    const herald_acl_user_t *user = herald_acl_user (acl, "a");
    cr_assert_not (user->publish.all, "a quoted * is the topic '*'");
    cr_assert_eq (user->publish.count, 6);
    cr_assert (s_is (&user->publish.prefixes [0], "*"));
    cr_assert (s_is (&user->publish.prefixes [1], "a b."));
    cr_assert (s_is (&user->publish.prefixes [2], "back\\slash"));
    cr_assert (s_is (&user->publish.prefixes [3], "q\"uote"));
    cr_assert (s_is (&user->publish.prefixes [4], "tab\there"));
    cr_assert (s_is (&user->publish.prefixes [5], "x\\y"));
    cr_assert (herald_acl_may_publish (user, "*", 1));
    cr_assert_not (herald_acl_may_publish (user, "z", 1));
    herald_acl_destroy (&acl);
}

//  --------------------------------------------------------------------------
//  Normalisation

Test (herald_acl, covered_prefixes_are_dropped)
{
    herald_acl_t *acl = s_parse_ok ("[user a]\nkey = %K0\n"
                                    "publish = orders.eu. orders. oz ordinal stock. stock.\n"
                                    "publish = stock.A\n"
                                    "[user b]\nkey = %K1\npublish = x. * y.\n");
    const herald_acl_user_t *a = herald_acl_user (acl, "a");
    cr_assert_eq (a->publish.count, 4);
    cr_assert (s_is (&a->publish.prefixes [0], "orders."));
    cr_assert (s_is (&a->publish.prefixes [1], "ordinal"));
    cr_assert (s_is (&a->publish.prefixes [2], "oz"));
    cr_assert (s_is (&a->publish.prefixes [3], "stock."));
    const herald_acl_user_t *b = herald_acl_user (acl, "b");
    cr_assert (b->publish.all, "* absorbs everything");
    cr_assert_eq (b->publish.count, 0);
    cr_assert (herald_acl_may_publish (b, "anything", 8));
    herald_acl_destroy (&acl);
}

Test (herald_acl, scope_read_normalised_and_scopes_overlap)
{
    herald_acl_t *acl = s_parse_ok ("[scope all-orders]\nread = orders. orders.eu. or.x\n"
                                    "fanout = tcp://127.0.0.1:5601\n"
                                    "[scope eu]\nread = orders.eu.\n"
                                    "fanout = tcp://127.0.0.1:5602\n");
    const herald_acl_scope_t *all = herald_acl_scope (acl, "all-orders");
    cr_assert_eq (all->read.count, 2);
    cr_assert (s_is (&all->read.prefixes [0], "or.x"));
    cr_assert (s_is (&all->read.prefixes [1], "orders."));
    cr_assert_eq (herald_acl_scopes_of (acl, "orders.eu.1", 11), 3);
    cr_assert_eq (herald_acl_scopes_of (acl, "orders.us.1", 11), 1);
    cr_assert_eq (herald_acl_scopes_of (acl, "orders.eu", 9), 1);
    cr_assert_eq (herald_acl_scopes_of (acl, "or.x", 4), 1);
    cr_assert_eq (herald_acl_scopes_of (acl, "or.", 3), 0);
    cr_assert_eq (herald_acl_scopes_of (acl, "billing.1", 9), 0);
    herald_acl_destroy (&acl);
}

//  --------------------------------------------------------------------------
//  Roles

Test (herald_acl, roles_accumulate_grants)
{
    herald_acl_t *acl = s_parse_ok (
        "[user u]\nkey = %K0\nrole = w1 w2\nrole = reader\npublish = own.\nadmin = trim\n"
        "[role w1]\npublish = a.\nadmin = status\nrate = 10/s\nbytes = 2 MiB/s burst 3 MiB\n"
        "[role w2]\npublish = b. a.x\nrate = 10/s\nstreams = 3\nreplay = 500/s\n"
        "[role reader]\nscope = s\nadmin = cluster\n"
        "[scope s]\nread = s.\nfanout = tcp://127.0.0.1:5601\n");
    const herald_acl_user_t *user = herald_acl_user (acl, "u");
    cr_assert_eq (user->publish.count, 3);
    cr_assert (s_is (&user->publish.prefixes [0], "a."));
    cr_assert (s_is (&user->publish.prefixes [1], "b."));
    cr_assert (s_is (&user->publish.prefixes [2], "own."));
    cr_assert_eq (user->admin, HERALD_ACL_ADMIN_STATUS | HERALD_ACL_ADMIN_CLUSTER
                             | HERALD_ACL_ADMIN_TRIM);
    cr_assert_eq (user->scope, herald_acl_scope (acl, "s"));
    cr_assert_eq (user->rate, 10);
    cr_assert_eq (user->rate_burst, 10);
    cr_assert_eq (user->bytes, 2 << 20);
    cr_assert_eq (user->bytes_burst, 3 << 20);
    cr_assert_eq (user->streams, 3);
    cr_assert_eq (user->replay, 500);
    herald_acl_destroy (&acl);
}

Test (herald_acl, a_users_own_limit_wins_over_its_roles)
{
    herald_acl_t *acl = s_parse_ok ("[role r1]\nrate = 10/s\n[role r2]\nrate = 20/s\n"
                                    "[user u]\nkey = %K0\nrole = r1 r2\nrate = 5/s burst 7\n"
                                    "[role all]\nread = *\npublish = *\nadmin = *\n"
                                    "[user v]\nkey = %K1\nrole = all\nread = *\n");
    const herald_acl_user_t *user = herald_acl_user (acl, "u");
    cr_assert_eq (user->rate, 5);
    cr_assert_eq (user->rate_burst, 7);
    const herald_acl_user_t *v = herald_acl_user (acl, "v");
    cr_assert (v->read_all, "the same view twice is one view");
    cr_assert (v->publish.all);
    cr_assert_eq (v->admin, HERALD_ACL_ADMIN_ALL);
    herald_acl_destroy (&acl);
}

//  --------------------------------------------------------------------------
//  Errors, each with its exact message

Test (herald_acl, errors_name_the_line_and_why)
{
    struct {
        const char *text;
        const char *message;
    } cases [] = {
        { "publish = a.\n",
          "acl:1: publish: outside any section: start one with [user NAME], [role NAME], "
          "[scope NAME] or [peer NAME]" },
        { "[user a]\nkey = %K0\npublish = \"\"\n",
          "acl:3: publish: an empty prefix: write * for every topic" },
        { "[user a]\nkey = %K0\npublish = a. $hb\n",
          "acl:3: publish: prefix '$hb' starts with $, which no topic does" },
        { "[scope s]\nread = \"$x\"\nfanout = tcp://h:1\n",
          "acl:2: read: prefix '$x' starts with $, which no topic does" },
        { "[user a]\nkey = %K0\npublish =\n",
          "acl:3: publish: give prefixes, or * for every topic" },
        { "[user a]\nkey = %K0\npublish = a \"b\n",
          "acl:3: publish: a quote is not closed" },
        { "[user a]\nkey = %K0\npublish = \"a\"b\n",
          "acl:3: publish: a closing quote must be followed by a space" },
        { "[user a]\nkey = %K0\npublish = a\"b\"\n",
          "acl:3: publish: a quote inside a word: quote the whole word (\"...\")" },
        { "\n\n[scope s]\nread = a.\n",
          "acl:3: scope 's' has no endpoint: give fanout = tcp://HOST:PORT" },
        { "[scope s]\nfanout = tcp://h:1\n",
          "acl:1: scope 's' reads nothing: give read = PREFIX ..." },
        { "[scope s]\nread = *\nfanout = tcp://h:1\n",
          "acl:2: read: a scope cannot read every topic (*): give its users read = * instead" },
        { "[scope s]\nread = a.\nfanout = tcp://h:1\nfanout = tcp://h:2\n",
          "acl:4: fanout: given twice in this section (line 3)" },
        { "[scope s]\nread = a.\nfanout = udp://h:1\n",
          "acl:3: fanout: 'udp://h:1' is not an endpoint: tcp://HOST:PORT (PORT 1-65535)" },
        { "[scope s]\nread = a.\nfanout = \"tcp://h:1\"\n",
          "acl:3: fanout: 'tcp://h:1' is not an endpoint: tcp://HOST:PORT (PORT 1-65535)" },
        { "[scope s]\nread = a.\nfanout = tcp://h\x01:1\n",
          "acl:3: fanout: 'tcp://h\x01:1' is not an endpoint: tcp://HOST:PORT (PORT 1-65535)" },
        { "[scope s]\nread = a.\nfanout = tcp://h:70000\n",
          "acl:3: fanout: 'tcp://h:70000' is not an endpoint: tcp://HOST:PORT (PORT 1-65535)" },
        { "[scope s]\nread = a.\nfanout = tcp://h:1\n[scope t]\nread = b.\nfanout = tcp://h:1\n",
          "acl:6: fanout: tcp://h:1 is already the endpoint of scope 's' (line 3)" },
        { "[scope s]\nread = a.\nfanout = tcp://*:5591\n"
          "[scope t]\nread = b.\nfanout = tcp://127.0.0.1:5591\n",
          "acl:6: fanout: tcp://127.0.0.1:5591 is already the endpoint of scope 's' (line 3)" },
        { "[user a]\nkey = %K0\n[user a]\nkey = %K1\n",
          "acl:3: user 'a' is already defined at line 1" },
        { "[scope s]\nread = a.\nfanout = tcp://h:1\n[scope s]\n",
          "acl:4: scope 's' is already defined at line 1" },
        { "[user a]\nkey = %K0\n[user a]\n[user a]\n",
          "acl:3: user 'a' is already defined at line 1" },
        { "[user a]\nkey = %K0\n[user b]\nkey = %K1\n[user b]\n[user a]\n",
          "acl:5: user 'b' is already defined at line 3" },
        { "[role r]\n[user a]\nkey = %K0\n[role r]\npublish = *\n",
          "acl:4: role 'r' is already defined at line 1" },
        { "[user a]\nkey = %K0\n[user b]\nkey = %K0\n",
          "acl:4: key: already the key of user 'a' (line 2)" },
        { "[user b]\nkey = %K0\n[user a]\nkey = %K0\n",
          "acl:4: key: already the key of user 'b' (line 2)" },
        { "[peer n]\nkey = %K0\n[user a]\nkey = %K0\n",
          "acl:4: key: already the key of peer 'n' (line 2)" },
        { "[user a]\nkey = %K0\nkey = %K0\n",
          "acl:3: key: already the key of user 'a' (line 2)" },
        { "[user a]\nkey = %K0\nkey = %K1\nkey = %K2\n",
          "acl:4: key: a user has at most two keys (one more during a rotation)" },
        { "[user a]\nkey = abc\n",
          "acl:2: key: 'abc' is not a public key: 40 characters of Z85 (herald keygen makes one)" },
        { "[user a]\nkey = \"0123456789012345678901234567890123456789\"x\n",
          "acl:2: key: a closing quote must be followed by a space" },
        { "[user a]\nkey = 012345678901234567890123456789012345678~\n",
          "acl:2: key: '012345678901234567890123456789012345678~' is not a public key: "
          "40 characters of Z85 (herald keygen makes one)" },
        { "[user a]\nkey = $$$$$$$$$$$$$$$$$$$$$$$$$$$$$$$$$$$$$$$$\n",
          "acl:2: key: '$$$$$$$$$$$$$$$$$$$$$$$$$$$$$$$$$$$$$$$$' is not a public key: "
          "40 characters of Z85 (herald keygen makes one)" },
        { "[user a]\nkey = %%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%\n",
          "acl:2: key: '%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%' is not a public key: "
          "40 characters of Z85 (herald keygen makes one)" },
        { "[user a]\nkey = #0000000000000000000000000000000000000000\n",
          "acl:2: key: give the public key (40 characters of Z85) and optionally 'until "
          "YYYY-MM-DD' or 'until' an RFC 3339 time" },
        { "[user a]\nkey = %K0 until\n",
          "acl:2: key: give the public key (40 characters of Z85) and optionally 'until "
          "YYYY-MM-DD' or 'until' an RFC 3339 time" },
        { "[user a]\nkey = %K0 until 2027-02-30\n",
          "acl:2: key: until '2027-02-30' is not a date: YYYY-MM-DD (00:00 UTC) or RFC 3339 "
          "(2027-01-31T12:00:00Z)" },
        { "[user a]\nkey = %K0 until 2027-01-31T25:00:00Z\n",
          "acl:2: key: until '2027-01-31T25:00:00Z' is not a date: YYYY-MM-DD (00:00 UTC) or "
          "RFC 3339 (2027-01-31T12:00:00Z)" },
        { "[user a]\nkey = %K0 until 2027-01-31T10:00:00\n",
          "acl:2: key: until '2027-01-31T10:00:00' is not a date: YYYY-MM-DD (00:00 UTC) or "
          "RFC 3339 (2027-01-31T12:00:00Z)" },
        { "[user a]\npublish = a.\n",
          "acl:1: user 'a' has no key: give key = Z85 (herald keygen makes one)" },
        { "[peer n]\n",
          "acl:1: peer 'n' has no key: give key = Z85" },
        { "[peer n]\nkey = %K0\npublish = a.\n",
          "acl:3: publish: not a key of [peer] sections (key)" },
        { "[role r]\nkey = %K0\n",
          "acl:2: key: not a key of [role] sections (publish read scope admin rate bytes "
          "streams replay)" },
        { "[role r]\nrole = q\n",
          "acl:2: role: not a key of [role] sections (publish read scope admin rate bytes "
          "streams replay)" },
        { "[scope s]\npublish = a.\n",
          "acl:2: publish: not a key of [scope] sections (read fanout)" },
        { "[user a]\nkey = %K0\nfoo = bar\n",
          "acl:3: foo: not a key of [user] sections (key role publish read scope admin rate "
          "bytes streams replay)" },
        { "[user a]\nkey = %K0\njust text\n",
          "acl:3: expected 'key = value' or '[kind NAME]', found 'just text'" },
        { "[group g]\n",
          "acl:1: unknown section [group]: [user NAME], [role NAME], [scope NAME] or [peer NAME]" },
        { "[user]\n",
          "acl:1: [user] needs a name: [user NAME]" },
        { "[user a b]\n",
          "acl:1: a section header is [KIND NAME], found [user a b]" },
        { "[user a\n",
          "acl:1: a section header needs its ']': [user NAME], [role NAME], [scope NAME] or "
          "[peer NAME]" },
        { "[user a]x\n",
          "acl:1: unexpected text after ']': 'x'" },
        { "[user a]#x\n",
          "acl:1: unexpected text after ']': '#x'" },
        { "[user a/b]\n",
          "acl:1: user name 'a/b' is not valid: 1-64 characters of A-Z a-z 0-9 . _ -" },
        { "[user a]\nkey = %K0\nread = orders.\n",
          "acl:3: read: a user reads every topic (read = *) or through a scope (scope = NAME); "
          "prefixes to read belong in a [scope] section" },
        { "[user a]\nkey = %K0\nread = * orders.\n",
          "acl:3: read: a user reads every topic (read = *) or through a scope (scope = NAME); "
          "prefixes to read belong in a [scope] section" },
        { "[user a]\nkey = %K0\nread = *\nread = *\n",
          "acl:4: read: given twice in this section (line 3)" },
        { "[user a]\nkey = %K0\nrole = r\n",
          "acl:3: role: 'r' is not defined" },
        { "[user a]\nkey = %K0\nscope = s\n",
          "acl:3: scope: 's' is not defined" },
        { "[role r]\nscope = s\n",
          "acl:2: scope: 's' is not defined" },
        { "[user a]\nkey = %K0\nscope = s t\n",
          "acl:3: scope: give one scope name" },
        { "[scope s]\nread = a.\nfanout = tcp://h:1\n[scope t]\nread = b.\nfanout = tcp://h:2\n"
          "[user a]\nkey = %K0\nscope = s\nscope = t\n",
          "acl:10: scope: given twice in this section (line 9): a user reads through one scope" },
        { "[scope s]\nread = a.\nfanout = tcp://h:1\n[scope t]\nread = b.\nfanout = tcp://h:2\n"
          "[role r]\nscope = t\n[user a]\nkey = %K0\nscope = s\nrole = r\n",
          "acl:12: role: user 'a' would read through scope 's' (its own) and scope 't' of "
          "role r: a user reads through one view, read = * or one scope" },
        { "[scope s]\nread = a.\nfanout = tcp://h:1\n"
          "[user a]\nkey = %K0\nread = *\nscope = s\n",
          "acl:7: scope: user 'a' would read through read = * (its own) and scope 's': a user "
          "reads through one view, read = * or one scope" },
        { "[role r1]\nrate = 1/s\n[role r2]\nrate = 2/s\n[user a]\nkey = %K0\nrole = r1\n"
          "role = r2\n",
          "acl:8: role: roles 'r1' and 'r2' give user 'a' different rate limits: set rate on "
          "the user" },
        { "[user a]\nkey = %K0\nrate = 10\n",
          "acl:3: rate: expected N/s [burst M] (events per second)" },
        { "[user a]\nkey = %K0\nrate = 0/s\n",
          "acl:3: rate: expected N/s [burst M] (events per second)" },
        { "[user a]\nkey = %K0\nrate = 10/s burst\n",
          "acl:3: rate: expected N/s [burst M] (events per second)" },
        { "[user a]\nkey = %K0\nrate = 10/s\nrate = 10/s\n",
          "acl:4: rate: given twice in this section (line 3)" },
        { "[user a]\nkey = %K0\nbytes = 10/s\n",
          "acl:3: bytes: expected N MiB/s [burst M MiB] (or B, KiB, GiB)" },
        { "[user a]\nkey = %K0\nbytes = 10 MB/s\n",
          "acl:3: bytes: expected N MiB/s [burst M MiB] (or B, KiB, GiB)" },
        { "[user a]\nkey = %K0\nbytes = 99999999999999999999 B/s\n",
          "acl:3: bytes: expected N MiB/s [burst M MiB] (or B, KiB, GiB)" },
        { "[user a]\nkey = %K0\nbytes = 17179869184 GiB/s\n",
          "acl:3: bytes: expected N MiB/s [burst M MiB] (or B, KiB, GiB)" },
        { "[user a]\nkey = %K0\nstreams = 2/s\n",
          "acl:3: streams: expected N (streams at once)" },
        { "[user a]\nkey = %K0\nstreams = 1000001\n",
          "acl:3: streams: at most 1000000" },
        { "[user a]\nkey = %K0\nreplay = 5/s burst 6\n",
          "acl:3: replay: expected N/s (events per second)" },
        { "[user a]\nkey = %K0\nadmin = status root\n",
          "acl:3: admin: unknown grant 'root': status acl cluster groups trim backup, or *" },
        { "[user a]\nkey = %K0\nrole = ok bad!\n",
          "acl:3: role: 'bad!' is not a valid name: 1-64 characters of A-Z a-z 0-9 . _ -" },
    };
    for (size_t index = 0; index < sizeof (cases) / sizeof (cases [0]); index++)
        s_parse_fails (cases [index].text, cases [index].message);
}

Test (herald_acl, nul_byte_and_overlong_prefix_refused)
{
    const char text [] = "[user a]\nkey = x\0y\n";
    herald_error_t err;
    cr_assert_null (herald_acl_parse (text, sizeof (text) - 1, "f", &err));
    cr_assert_str_eq (err.message, "f:2: NUL byte in line");

    char long_text [600];
    char prefix [257];
    memset (prefix, 'p', 256);
    prefix [256] = 0;
    snprintf (long_text, sizeof (long_text), "[user a]\nkey = %s\npublish = %s\n", s_keys [0],
              prefix);
    cr_assert_null (herald_acl_parse (long_text, strlen (long_text), "f", &err));
    cr_assert (strstr (err.message, "f:3: publish: prefix 'pppp"), "%s", err.message);
    cr_assert (strstr (err.message, "is not the start of a topic: 1-255 bytes of UTF-8"),
               "%s", err.message);
    //  255 bytes is a topic
    prefix [255] = 0;
    snprintf (long_text, sizeof (long_text), "[user a]\nkey = %s\npublish = %s\n", s_keys [0],
              prefix);
    herald_acl_t *acl = herald_acl_parse (long_text, strlen (long_text), "f", &err);
    cr_assert (acl, "%s", err.message);
    herald_acl_destroy (&acl);
    const char bad_utf8 [] = "[user a]\nkey = %K0\npublish = \xff\xfe\n";
    s_parse_fails (bad_utf8, "acl:3: publish: prefix '\xff\xfe' is not the start of a topic: "
                             "1-255 bytes of UTF-8");
}

Test (herald_acl, at_most_64_scopes)
{
    char *text = malloc (65 * 80);
    size_t used = 0;
    for (int index = 0; index < 65; index++)
        used += sprintf (text + used, "[scope s%d]\nread = t%d.\nfanout = tcp://h:%d\n",
                         index, index, 1000 + index);
    herald_error_t err;
    cr_assert_null (herald_acl_parse (text, used, "acl", &err));
    cr_assert_str_eq (err.message, "acl:193: more than 64 scopes");
    //  64 are fine, and the 64th has bit 63
    herald_acl_t *acl = herald_acl_parse (text, used - strlen (strstr (text, "[scope s64]")),
                                          "acl", &err);
    cr_assert (acl, "%s", err.message);
    cr_assert_eq (herald_acl_scopes_of (acl, "t63.x", 5), 1ULL << 63);
    herald_acl_destroy (&acl);
    free (text);
}

//  --------------------------------------------------------------------------
//  Keys

Test (herald_acl, keys_found_and_expired_keys_refused_at_lookup)
{
    herald_acl_t *acl = s_parse_ok (
        "[user a]\nkey = %K0 until 2027-01-15T08:00:00Z\n"
        "key = %K1 until 2027-01-15T09:00:00+01:00\n"
        "[user b]\nkey = %K2 until 2027-01-15T08:00:00.000000001Z\n"
        "[peer n]\nkey = %K3 until 2001-01-01\nkey = %K4\n");
    const char *why = NULL;
    size_t which = 9;
    //  %K0's until is S_NOW: expired at S_NOW, fine a nanosecond before
    cr_assert_null (herald_acl_user_by_key (acl, s_key_bytes (0), S_NOW, &why, &which));
    cr_assert_str_eq (why, "key expired");
    cr_assert_eq (herald_acl_user_by_key (acl, s_key_bytes (0), S_NOW - 1, &why, &which),
                  herald_acl_user (acl, "a"));
    cr_assert_eq (which, 0);
    //  +01:00: the same instant
    cr_assert_null (herald_acl_user_by_key (acl, s_key_bytes (1), S_NOW, &why, NULL));
    cr_assert_eq (herald_acl_user_by_key (acl, s_key_bytes (1), S_NOW - 1, NULL, &which),
                  herald_acl_user (acl, "a"));
    cr_assert_eq (which, 1);
    cr_assert_eq (herald_acl_user_by_key (acl, s_key_bytes (2), S_NOW, NULL, NULL),
                  herald_acl_user (acl, "b"));
    cr_assert_null (herald_acl_user_by_key (acl, s_key_bytes (2), S_NOW + 1, NULL, NULL));
    //  a peer's key is no user's, and the other way round
    why = NULL;
    cr_assert_null (herald_acl_user_by_key (acl, s_key_bytes (4), S_NOW, &why, NULL));
    cr_assert_str_eq (why, "unknown key");
    cr_assert_null (herald_acl_user_by_key (acl, s_key_bytes (5), S_NOW, &why, NULL));
    cr_assert_str_eq (why, "unknown key");
    cr_assert_null (herald_acl_peer_by_key (acl, s_key_bytes (2), S_NOW - 1));
    cr_assert_str_eq (herald_acl_peer_by_key (acl, s_key_bytes (4), S_NOW)->name, "n");
    cr_assert_null (herald_acl_peer_by_key (acl, s_key_bytes (3), S_NOW));
    cr_assert_eq (herald_acl_expired (acl, S_NOW), 3);
    cr_assert_eq (herald_acl_expired (acl, S_NOW - 1), 1);
    herald_acl_destroy (&acl);
}

//  --------------------------------------------------------------------------
//  Checks

Test (herald_acl, may_publish_and_may_read)
{
    herald_acl_t *acl = s_parse_ok (s_example);
    const herald_acl_user_t *svc = herald_acl_user (acl, "order-svc");
    cr_assert (herald_acl_may_publish (svc, "orders.1", 8));
    cr_assert (herald_acl_may_publish (svc, "orders.", 7));
    cr_assert_not (herald_acl_may_publish (svc, "orders", 6));
    cr_assert_not (herald_acl_may_publish (svc, "stock.1", 7));
    cr_assert (herald_acl_may_read (svc, "customers.9", 11));
    cr_assert_not (herald_acl_may_read (svc, "billing.9", 9));
    //  the length counts, not a NUL
    cr_assert_not (herald_acl_may_publish (svc, "orders.1", 6));

    const herald_acl_user_t *alice = herald_acl_user (acl, "ops-alice");
    cr_assert (herald_acl_may_read (alice, "anything", 8));
    cr_assert_not (herald_acl_may_publish (alice, "anything", 8));
    const herald_acl_user_t *audit = herald_acl_user (acl, "audit");
    cr_assert_not (herald_acl_may_read (audit, "audit.1", 7));
    cr_assert (herald_acl_may_publish (audit, "audit.1", 7));
    herald_acl_destroy (&acl);
}

//  --------------------------------------------------------------------------
//  Narrowing

static herald_str_t
s_str (const char *text)
{
    return (herald_str_t) { text, strlen (text) };
}

Test (herald_acl, narrow_examples)
{
    herald_acl_t *acl = s_parse_ok (s_example);
    const herald_acl_user_t *svc = herald_acl_user (acl, "order-svc");
    herald_str_t *out;
    size_t count;
    herald_error_t err;

    //  nothing asked: everything it may read
    cr_assert_eq (herald_acl_narrow (svc, NULL, 0, &out, &count, &err), HERALD_OK);
    cr_assert_eq (count, 2);
    cr_assert (s_is (&out [0], "customers.") && s_is (&out [1], "orders."));
    free (out);

    //  broader: replaced; inside: kept; both covering one: once
    herald_str_t asked [] = { s_str ("o"), s_str ("customers.eu."), s_str ("orders."),
                              s_str ("") };
    cr_assert_eq (herald_acl_narrow (svc, asked, 3, &out, &count, &err), HERALD_OK);
    cr_assert_eq (count, 2);
    cr_assert (s_is (&out [0], "customers.eu.") && s_is (&out [1], "orders."));
    free (out);
    //  the empty prefix is every topic: the read set
    cr_assert_eq (herald_acl_narrow (svc, asked + 3, 1, &out, &count, &err), HERALD_OK);
    cr_assert_eq (count, 2);
    free (out);

    //  disjoint: the whole request refused
    herald_str_t outside [] = { s_str ("orders.1"), s_str ("billing.") };
    cr_assert_eq (herald_acl_narrow (svc, outside, 2, &out, &count, &err),
                  HERALD_ERR_UNAUTHORIZED);
    cr_assert_str_eq (err.message, "prefix billing. is outside your scope orders-view");
    cr_assert_null (out);
    cr_assert_eq (count, 0);
    herald_str_t odd [] = { s_str ("bad\x01") };
    cr_assert_eq (herald_acl_narrow (svc, odd, 1, &out, &count, &err), HERALD_ERR_UNAUTHORIZED);
    cr_assert_str_eq (err.message, "prefix bad\\x01 is outside your scope orders-view");

    //  read = *: the list as it was, even redundant
    const herald_acl_user_t *alice = herald_acl_user (acl, "ops-alice");
    cr_assert_eq (herald_acl_narrow (alice, outside, 2, &out, &count, &err), HERALD_OK);
    cr_assert_eq (count, 2);
    cr_assert_eq (out [0].ptr, outside [0].ptr);
    cr_assert_eq (out [1].ptr, outside [1].ptr);
    free (out);
    cr_assert_eq (herald_acl_narrow (alice, NULL, 0, &out, &count, &err), HERALD_OK);
    cr_assert_eq (count, 0);
    cr_assert (out, "success gives an array, even empty");
    free (out);

    //  cannot read at all
    const herald_acl_user_t *audit = herald_acl_user (acl, "audit");
    cr_assert_eq (herald_acl_narrow (audit, NULL, 0, &out, &count, &err),
                  HERALD_ERR_UNAUTHORIZED);
    cr_assert_str_eq (err.message, "user audit may not read");
    herald_acl_destroy (&acl);
}

//  Random prefixes over a small alphabet, so that they often cover each other.
static void
s_random_word (char *out, size_t max, unsigned *seed)
{
    size_t len = 1 + rand_r (seed) % max;
    for (size_t index = 0; index < len; index++)
        out [index] = "ab."[rand_r (seed) % 3];
    out [len] = 0;
}

static bool
s_matches_any (const char *topic, const herald_str_t *set, size_t count)
{
    for (size_t index = 0; index < count; index++)
        if (strncmp (topic, set [index].ptr, set [index].len) == 0)
            return true;
    return false;
}

Test (herald_acl, narrow_matches_brute_force)
{
    unsigned seed = 20261205;
    int narrowed = 0, refused = 0;
    for (int round = 0; round < 400; round++) {
        //  a scope of 1-5 random prefixes
        char raw [5][8];
        size_t read_count = 1 + rand_r (&seed) % 5;
        char text [512];
        size_t used = snprintf (text, sizeof (text), "[scope s]\nread =");
        for (size_t index = 0; index < read_count; index++) {
            s_random_word (raw [index], 4, &seed);
            used += snprintf (text + used, sizeof (text) - used, " %s", raw [index]);
        }
        used += snprintf (text + used, sizeof (text) - used,
                          "\nfanout = tcp://h:1\n[user u]\nkey = %s\nscope = s\n", s_keys [0]);
        herald_error_t err;
        herald_acl_t *acl = herald_acl_parse (text, used, "acl", &err);
        cr_assert (acl, "%s", err.message);
        const herald_acl_user_t *user = herald_acl_user (acl, "u");
        const herald_acl_prefixes_t *read = &user->scope->read;

        char wanted_text [6][8];
        herald_str_t wanted [6];
        size_t wanted_count = rand_r (&seed) % 6;
        for (size_t index = 0; index < wanted_count; index++) {
            s_random_word (wanted_text [index], 5, &seed);
            wanted [index] = s_str (wanted_text [index]);
        }
        herald_str_t *out;
        size_t count;
        herald_err rc = herald_acl_narrow (user, wanted, wanted_count, &out, &count, &err);
        //  refused exactly when some asked prefix shares no topic with the read set
        bool disjoint = false;
        for (size_t index = 0; index < wanted_count; index++) {
            bool meets = false;
            for (size_t r = 0; r < read->count; r++) {
                size_t len = read->prefixes [r].len < wanted [index].len
                           ? read->prefixes [r].len : wanted [index].len;
                meets |= memcmp (read->prefixes [r].ptr, wanted [index].ptr, len) == 0;
            }
            disjoint |= !meets;
        }
        if (disjoint) {
            cr_assert_eq (rc, HERALD_ERR_UNAUTHORIZED);
            refused++;
            herald_acl_destroy (&acl);
            continue;
        }
        cr_assert_eq (rc, HERALD_OK, "%s", err.message);
        narrowed++;
        //  the result is normalised: sorted, none covering another
        for (size_t index = 1; index < count; index++) {
            cr_assert (memcmp (out [index - 1].ptr, out [index].ptr,
                               out [index - 1].len < out [index].len
                               ? out [index - 1].len : out [index].len) <= 0);
            cr_assert_not (out [index].len >= out [index - 1].len
                        && memcmp (out [index].ptr, out [index - 1].ptr,
                                   out [index - 1].len) == 0);
        }
        //  every topic up to 6 bytes of the alphabet
        char topic [8];
        for (size_t len = 1; len <= 6; len++) {
            size_t total = 1;
            for (size_t index = 0; index < len; index++)
                total *= 3;
            for (size_t code = 0; code < total; code++) {
                size_t rest = code;
                for (size_t index = 0; index < len; index++, rest /= 3)
                    topic [index] = "ab."[rest % 3];
                topic [len] = 0;
                bool expected = (wanted_count == 0
                                 || s_matches_any (topic, wanted, wanted_count))
                             && s_matches_any (topic, read->prefixes, read->count);
                cr_assert_eq (s_matches_any (topic, out, count), expected,
                              "topic %s; round %d", topic, round);
                cr_assert_eq (herald_acl_may_read (user, topic, len),
                              s_matches_any (topic, read->prefixes, read->count));
            }
        }
        free (out);
        herald_acl_destroy (&acl);
    }
    //  both branches were exercised
    cr_assert_gt (narrowed, 50);
    cr_assert_gt (refused, 50);
}

Test (herald_acl, scopes_of_matches_brute_force)
{
    unsigned seed = 777;
    for (int round = 0; round < 100; round++) {
        size_t scope_count = 1 + rand_r (&seed) % 8;
        char words [8][4][8];
        size_t counts [8];
        char text [4096];
        size_t used = 0;
        for (size_t scope = 0; scope < scope_count; scope++) {
            counts [scope] = 1 + rand_r (&seed) % 4;
            used += snprintf (text + used, sizeof (text) - used, "[scope s%zu]\nread =", scope);
            for (size_t index = 0; index < counts [scope]; index++) {
                s_random_word (words [scope][index], 4, &seed);
                used += snprintf (text + used, sizeof (text) - used, " %s",
                                  words [scope][index]);
            }
            used += snprintf (text + used, sizeof (text) - used, "\nfanout = tcp://h:%zu\n",
                              scope + 1);
        }
        herald_error_t err;
        herald_acl_t *acl = herald_acl_parse (text, used, "acl", &err);
        cr_assert (acl, "%s", err.message);
        for (int probe = 0; probe < 300; probe++) {
            char topic [8];
            s_random_word (topic, 6, &seed);
            uint64_t expected = 0;
            for (size_t scope = 0; scope < scope_count; scope++)
                for (size_t index = 0; index < counts [scope]; index++)
                    if (strncmp (topic, words [scope][index], strlen (words [scope][index])) == 0)
                        expected |= 1ULL << scope;
            cr_assert_eq (herald_acl_scopes_of (acl, topic, strlen (topic)), expected,
                          "topic %s round %d", topic, round);
        }
        herald_acl_destroy (&acl);
    }
}

//  --------------------------------------------------------------------------
//  Printing, version, loading

//  What herald_acl_print writes, after its two header lines.
static char *
s_printed (const herald_acl_t *acl)
{
    char *text = NULL;
    size_t size = 0;
    FILE *out = open_memstream (&text, &size);
    herald_acl_print (acl, out);
    fclose (out);
    char *body = strchr (strchr (text, '\n') + 1, '\n') + 1;
    char *copy = strdup (body);
    free (text);
    return copy;
}

Test (herald_acl, print_parses_back_to_the_same_table)
{
    const char *files [] = {
        s_example,
        "[user q]\nkey = %K0 until 2027-01-31T12:30:00.5+02:00\nkey = %K1 until 2030-06-01\n"
        "publish = \"a b\" \"#x\" \"*\" \"q\\\"\" \"\\\\\" c#d\n"
        "bytes = 1536 KiB/s burst 2 GiB\nrate = 7/s\nadmin = *\n"
        "[user r]\nkey = %K2\nbytes = 1000 B/s\nadmin = backup trim\n",
        //  found by fuzz_acl: a word ending in \r, printed last on its line
        "[scope a]\nread = o.x ab x)a\r\r ab\nfanout = ipc:///t;p/x\n"
        "[user s]\nkey = %K3\npublish = \"tab\there\" del\x7f z\x01\r y.\n",
    };
    for (size_t index = 0; index < 3; index++) {
        herald_acl_t *acl = s_parse_ok (files [index]);
        char *first = s_printed (acl);
        herald_error_t err;
        herald_acl_t *again = herald_acl_parse (first, strlen (first), "printed", &err);
        cr_assert (again, "%s\n--\n%s", err.message, first);
        char *second = s_printed (again);
        cr_assert_str_eq (first, second);
        free (first);
        free (second);
        herald_acl_destroy (&acl);
        herald_acl_destroy (&again);
    }
}

Test (herald_acl, print_shows_the_normalised_table)
{
    herald_acl_t *acl = s_parse_ok ("[role r]\npublish = b. a.\nrate = 10/s burst 20\n"
                                    "[user u]\nkey = %K0\nrole = r\npublish = a.x\n"
                                    "bytes = 1 MiB/s\n");
    char *printed = s_printed (acl);
    char *expected = s_expand ("\n[user u]\nkey     = %K0\npublish = a. b.\n"
                               "rate    = 10/s burst 20\nbytes   = 1 MiB/s\n");
    cr_assert_str_eq (printed, expected);
    free (printed);
    free (expected);
    herald_acl_destroy (&acl);
}

Test (herald_acl, version_is_the_sha256_of_the_bytes)
{
    char *text = s_expand (s_example);
    herald_acl_t *acl = herald_acl_parse (text, strlen (text), "acl", NULL);
    cr_assert (acl);
    uint8_t digest [32];
    crypto_hash_sha256 (digest, (const uint8_t *) text, strlen (text));
    char hex [13];
    for (int index = 0; index < 6; index++)
        sprintf (hex + 2 * index, "%02x", digest [index]);
    cr_assert_str_eq (herald_acl_version (acl), hex);
    //  a comment changes the version, not the table
    text [0] = '%';
    herald_acl_t *other = herald_acl_parse (text, strlen (text), "acl", NULL);
    cr_assert_null (other, "'%%' is no comment");
    text [0] = '#';
    text [1] = '#';
    other = herald_acl_parse (text, strlen (text), "acl", NULL);
    cr_assert (other);
    cr_assert_str_neq (herald_acl_version (acl), herald_acl_version (other));
    herald_acl_destroy (&acl);
    herald_acl_destroy (&other);
    free (text);
}

Test (herald_acl, load_checks_the_file, .timeout = 10)
{
    char dir [] = "/tmp/test_herald_acl.XXXXXX";
    cr_assert (mkdtemp (dir));
    char path [100];
    snprintf (path, sizeof (path), "%s/acl", dir);
    herald_error_t err;

    cr_assert_null (herald_acl_load (path, &err));
    cr_assert_eq (err.code, HERALD_ERR_IO);
    char expected [300];
    snprintf (expected, sizeof (expected), "%s: No such file or directory", path);
    cr_assert_str_eq (err.message, expected);

    char *text = s_expand (s_example);
    FILE *file = fopen (path, "w");
    fputs (text, file);
    fclose (file);
    chmod (path, 0644);
    herald_acl_t *acl = herald_acl_load (path, &err);
    cr_assert (acl, "%s", err.message);
    herald_acl_t *parsed = herald_acl_parse (text, strlen (text), "x", NULL);
    cr_assert_str_eq (herald_acl_version (acl), herald_acl_version (parsed));
    herald_acl_destroy (&acl);
    herald_acl_destroy (&parsed);

    //  writable by group or others: refused
    mode_t modes [] = { 0664, 0646, 0666 };
    for (int index = 0; index < 3; index++) {
        chmod (path, modes [index]);
        cr_assert_null (herald_acl_load (path, &err));
        cr_assert_eq (err.code, HERALD_ERR_INVALID);
        snprintf (expected, sizeof (expected), "%s: writable by group or others, so anyone in "
                  "them could grant themselves access (chmod go-w %s)", path, path);
        cr_assert_str_eq (err.message, expected);
    }
    //  errors carry the path
    chmod (path, 0600);
    file = fopen (path, "a");
    fputs ("[user bad]\n", file);
    fclose (file);
    cr_assert_null (herald_acl_load (path, &err));
    snprintf (expected, sizeof (expected), "%s:37: user 'bad' has no key: give key = Z85 "
              "(herald keygen makes one)", path);
    cr_assert_str_eq (err.message, expected);
    //  a FIFO: refused at once, not waited on
    char fifo [120];
    snprintf (fifo, sizeof (fifo), "%s/fifo", dir);
    cr_assert_eq (mkfifo (fifo, 0600), 0);
    cr_assert_null (herald_acl_load (fifo, &err));
    snprintf (expected, sizeof (expected), "%s: not a regular file", fifo);
    cr_assert_str_eq (err.message, expected);
    unlink (fifo);
    //  a directory
    cr_assert_null (herald_acl_load (dir, &err));
    snprintf (expected, sizeof (expected), "%s: not a regular file", dir);
    cr_assert_str_eq (err.message, expected);
    unlink (path);
    rmdir (dir);
    free (text);
}
