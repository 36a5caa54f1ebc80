/*  =========================================================================
    herald_cli_whoami - who the broker takes this client's key for

        herald [--key FILE --server-key KEY|@FILE] whoami [--format json|table]

    One HELLO; the WELCOME of a broker with security on names the user
    its ACL maps the key to, the user's scope (its read view), read and
    publish prefixes, admin grants and the version of the ACL that
    decided (docs/protocol.md, "Security").  A WELCOME without `user` is
    a broker with security off: it admits every client.  The keys of the
    WELCOME are read from its raw body, so this file needs no decoder of
    its own in protocol/.
    =========================================================================
*/

#include "herald_cli.h"

#include <string.h>

static const char *s_whoami_usage =
    "usage: herald whoami [--format table|json] [--key FILE] [--server-key KEY|@FILE]\n"
    "\n"
    "Say who the broker takes this client's key for: one HELLO, and from its\n"
    "WELCOME the user, scope (its read view; * reads everything), read and publish\n"
    "prefixes, admin grants, the fanout this key may use and the ACL version\n"
    "(acl_version) that decided.  Against a broker with security off it says so.\n"
    "Default format: table (one `name value` line each).\n";

//  The same as text: items space-separated, "-" for none.
static void
s_text (const char *name, const msgpack_object *value)
{
    printf ("%-12s ", name);
    if (value && value->type == MSGPACK_OBJECT_STR)
        printf ("%.*s", (int) value->via.str.size, value->via.str.ptr);
    else
    if (value && value->type == MSGPACK_OBJECT_ARRAY && value->via.array.size) {
        for (uint32_t index = 0; index < value->via.array.size; index++) {
            const msgpack_object *item = &value->via.array.ptr [index];
            if (item->type == MSGPACK_OBJECT_STR)
                printf ("%s%.*s", index? " ": "", (int) item->via.str.size, item->via.str.ptr);
        }
    }
    else
        fputs ("-", stdout);
    fputc ('\n', stdout);
}

int
herald_cli_whoami (herald_cli_opts_t *opts, int argc, char **argv)
{
    int index = 1;
    bool bad = false;
    while (index < argc && !bad) {
        if (strcmp (argv [index], "--help") == 0) {
            fputs (s_whoami_usage, stdout);
            return HERALD_CLI_EXIT_OK;
        }
        if (!herald_cli_common_opt (opts, argc, argv, &index, &bad))
            return herald_cli_fail (HERALD_CLI_EXIT_USAGE, "whoami: unexpected '%s' "
                                    "(see herald whoami --help)", argv [index]);
    }
    if (bad)
        return HERALD_CLI_EXIT_USAGE;
    herald_cli_format_t format = opts->format_set? opts->format: HERALD_CLI_TABLE;
    herald_cli_conn_t *conn = NULL;
    int rc = herald_cli_conn_open (opts, &conn);
    if (rc)
        return rc;
    herald_msg_t hello = { .type = HERALD_MSG_HELLO, .has_rid = true };
    hello.rid = herald_cli_conn_rid (conn);
    hello.hello.proto = HERALD_PROTO_VERSION;
    hello.hello.client = (herald_str_t) { "herald-cli", 10 };
    rc = herald_cli_conn_send (conn, &hello);
    herald_cli_reply_t reply;
    memset (&reply, 0, sizeof reply);
    if (rc == 0)
        rc = herald_cli_conn_recv (conn, &reply);
    if (rc == 0 && reply.type == HERALD_MSG_ERROR)
        rc = herald_cli_print_error (&reply);
    else
    if (rc == 0 && reply.type != HERALD_MSG_WELCOME)
        rc = herald_cli_fail (HERALD_CLI_EXIT_FAIL, "unexpected %s reply to HELLO",
                              herald_msg_command (reply.type));
    msgpack_unpacked unpacked;
    msgpack_unpacked_init (&unpacked);
    zframe_t *body = rc == 0 && zmsg_first (reply.msg)? zmsg_next (reply.msg): NULL;
    if (rc == 0 && (!body || msgpack_unpack_next (&unpacked, (const char *) zframe_data (body),
                                                  zframe_size (body), NULL)
                             != MSGPACK_UNPACK_SUCCESS))
        rc = herald_cli_fail (HERALD_CLI_EXIT_FAIL, "bad WELCOME from %s",
                              herald_cli_conn_endpoint (conn));
    if (rc == 0) {
        const msgpack_object *root = &unpacked.data;
        const char *endpoint = herald_cli_conn_endpoint (conn);
        const msgpack_object *user = herald_cli_map_get (root, "user");
        static const char *const names [] = {
            "user", "scope", "read", "publish", "admin", "fanout", "acl_version"
        };
        if (!user || user->type != MSGPACK_OBJECT_STR) {
            if (format == HERALD_CLI_JSON) {
                fputs ("{\"endpoint\":", stdout);
                herald_cli_json_string (stdout, endpoint, strlen (endpoint));
                fputs (",\"security\":\"off\"}\n", stdout);
            }
            else
                printf ("security is off at %s: the broker admits every client, and a key "
                        "names no one\n", endpoint);
        }
        else
        if (format == HERALD_CLI_JSON) {
            fputs ("{\"endpoint\":", stdout);
            herald_cli_json_string (stdout, endpoint, strlen (endpoint));
            for (size_t at = 0; at < sizeof names / sizeof names [0]; at++) {
                printf (",\"%s\":", names [at]);
                herald_cli_json_object (stdout, herald_cli_map_get (root, names [at]));
            }
            fputs ("}\n", stdout);
        }
        else {
            printf ("%-12s %s\n", "endpoint", endpoint);
            for (size_t at = 0; at < sizeof names / sizeof names [0]; at++) {
                const msgpack_object *value = herald_cli_map_get (root, names [at]);
                //  scope nil is a read-all key, or one that reads nothing
                //  (read []): a publish-only key has no view at all
                const msgpack_object *read = herald_cli_map_get (root, "read");
                bool reads = read && read->type == MSGPACK_OBJECT_ARRAY
                          && read->via.array.size > 0;
                if (at == 1 && (!value || value->type == MSGPACK_OBJECT_NIL) && reads)
                    printf ("%-12s * (reads every topic, on the main fanout)\n", "scope");
                else
                if (at == 1 && (!value || value->type == MSGPACK_OBJECT_NIL))
                    printf ("%-12s - (reads nothing: a publish-only key)\n", "scope");
                else
                    s_text (names [at], value);
            }
        }
    }
    msgpack_unpacked_destroy (&unpacked);
    herald_cli_reply_fini (&reply);
    herald_cli_conn_destroy (&conn);
    return rc;
}
