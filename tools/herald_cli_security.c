/*  =========================================================================
    herald_cli_security - `herald keygen` and `herald acl` (issue 14)

        herald keygen NAME [--dir DIR]     a CURVE keypair for a user, peer or broker
        herald keygen --show FILE          the public key of a key file
        herald acl check FILE [USER TOPIC] the ACL file, offline, as heraldd reads it
        herald acl reload [--json]         heraldd re-reads its ACL file now (HWP/1 ACL)
        herald acl show [--json]           the ACL table heraldd has in force

    Key files are czmq's certificates (zcert): NAME.key holds the public
    key, NAME.key_secret both keys and is made mode 0600.  Both files are
    created with O_EXCL before zcert_save fills them, so an existing key is
    never overwritten, not even by a second keygen racing this one.  What
    keygen prints on stdout is itself valid ACL text (comments, then the
    [user NAME] section), so `herald keygen svc >> acl` works.

    acl check parses with the broker's own parser (broker/herald_acl.c) and
    permission check, so what it accepts heraldd accepts.

    acl reload and acl show send one ACL request (docs/protocol.md,
    "Security: the ACL command"), which needs the grant `admin = acl`; the
    reply's keys are read from its raw body, as whoami reads WELCOME.

    Exit status: 0 ok; 1 a file refused (its errors printed as PATH:LINE:
    why), a key file that cannot be written or read, an ERROR reply
    (unauthorized, the broker's file refused, security off); 2 no broker
    answered; 64 a usage error.
    =========================================================================
*/

#include "herald_cli.h"
#include "herald_acl.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static const char *s_keygen_usage =
    "usage: herald keygen NAME [--dir DIR]\n"
    "       herald keygen --show FILE\n"
    "\n"
    "Make a CURVE keypair for a user, a peer broker or the broker itself, as\n"
    "czmq certificates: DIR/NAME.key (the public key) and DIR/NAME.key_secret\n"
    "(both keys, mode 0600: give it only to the program it identifies).  An\n"
    "existing file is never overwritten.  Prints the lines to paste into the ACL\n"
    "file ([user NAME], key = ...); the output is itself valid ACL text.\n"
    "\n"
    "  --dir DIR     where to write the files (default: the current directory)\n"
    "  --show FILE   print the public key (Z85) of a .key or .key_secret file: the\n"
    "                broker's, for clients to pin (--server-key), or a user's\n"
    "\n"
    "NAME: 1-64 characters of A-Z a-z 0-9 . _ - (the user name in the ACL).\n"
    "Exit status: 0 ok; 1 a file exists or cannot be written or read; 64 a usage\n"
    "error.\n";

static const char *s_acl_usage =
    "usage: herald acl check FILE [USER TOPIC]\n"
    "       herald acl reload [--json] [--endpoint E] [--key FILE] [--server-key KEY|@FILE]\n"
    "       herald acl show [--json] [--endpoint E] [--key FILE] [--server-key KEY|@FILE]\n"
    "\n"
    "check:\n"
    "Read the ACL file as heraldd --acl reads it, offline, and print it\n"
    "normalised: roles folded into their users, prefixes sorted, a prefix covered\n"
    "by a shorter one dropped, with the file's acl_version (the first 12 hex\n"
    "digits of its SHA-256, which heraldd shows in STATUS and WELCOME).  A file\n"
    "that heraldd would refuse is refused here with the same errors, FILE:LINE:\n"
    "why, and so is a file writable by group or others.\n"
    "\n"
    "With USER and TOPIC, print instead whether that user may publish and read\n"
    "TOPIC, and through which view.\n"
    "\n"
    "reload: ask heraldd to re-read its ACL file now, as SIGHUP does, and say\n"
    "what it did: the new acl_version, its users and scopes, and the users whose\n"
    "keys it revoked (their next request is refused).  A file that does not parse\n"
    "is refused with its FILE:LINE: why, and the table in force stays.\n"
    "\n"
    "show: print the table heraldd has in force: its acl_version, file and load\n"
    "time, each scope (fanout endpoint, read prefixes) and each user (scope, * for\n"
    "read-all; publish prefixes; admin grants; the first 10 characters of each\n"
    "key).\n"
    "\n"
    "Both need a key whose user holds `admin = acl`, and a broker with security\n"
    "on.  --json prints the reply as one JSON object.\n"
    "\n"
    "Exit status: check: 0 the file is valid; 1 it is refused, or USER is not in\n"
    "it.  reload, show: 0 done; 1 refused (unauthorized, the file refused,\n"
    "security off: the broker's ERROR is printed); 2 no broker answered.  64 a\n"
    "usage error.\n";

//  ---------------------------------------------------------------------
//  keygen

static bool
s_name_ok (const char *name)
{
    size_t len = strlen (name);
    return len >= 1 && len <= HERALD_ACL_NAME_MAX
        && strspn (name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")
           == len;
}

//  Create path, empty, with mode; false (errno set) when it exists or
//  cannot be made.
static bool
s_create (const char *path, mode_t mode)
{
    int fd = open (path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
    if (fd < 0)
        return false;
    close (fd);
    return true;
}

//  A key as the ACL file takes it: quoted when it starts with '#'.
static void
s_print_key (const char *z85)
{
    printf (z85 [0] == '#' ? "key     = \"%s\"\n" : "key     = %s\n", z85);
}

static int
s_show (const char *path)
{
    struct stat info;
    if (stat (path, &info) != 0)
        return herald_cli_fail (HERALD_CLI_EXIT_FAIL, "keygen: %s: %s", path, strerror (errno));
    zcert_t *cert = S_ISREG (info.st_mode) ? zcert_load (path) : NULL;
    if (!cert)
        return herald_cli_fail (HERALD_CLI_EXIT_FAIL, "keygen: %s is not a key file (a czmq "
                                "certificate, as herald keygen writes)", path);
    printf ("%s\n", zcert_public_txt (cert));
    zcert_destroy (&cert);
    return HERALD_CLI_EXIT_OK;
}

int
herald_cli_keygen (herald_cli_opts_t *opts, int argc, char **argv)
{
    const char *name = NULL, *dir = ".", *show = NULL;
    bool bad = false;
    int index = 1;
    while (index < argc && !bad) {
        if (strcmp (argv [index], "--help") == 0) {
            fputs (s_keygen_usage, stdout);
            return HERALD_CLI_EXIT_OK;
        }
        if (herald_cli_opt (argc, argv, &index, "--dir", &dir, &bad)
        ||  herald_cli_opt (argc, argv, &index, "--show", &show, &bad)
        ||  herald_cli_common_opt (opts, argc, argv, &index, &bad))
            continue;
        if (argv [index][0] == '-' || name)
            return herald_cli_fail (HERALD_CLI_EXIT_USAGE, "keygen: unexpected '%s' (see "
                                    "herald keygen --help)", argv [index]);
        name = argv [index++];
    }
    if (bad)
        return HERALD_CLI_EXIT_USAGE;
    if (show && name)
        return herald_cli_fail (HERALD_CLI_EXIT_USAGE, "keygen: give NAME or --show FILE, "
                                "not both");
    if (show)
        return s_show (show);
    if (!name)
        return herald_cli_fail (HERALD_CLI_EXIT_USAGE, "keygen: give a NAME (see herald keygen "
                                "--help)");
    if (!s_name_ok (name))
        return herald_cli_fail (HERALD_CLI_EXIT_USAGE, "keygen: name '%s' is not valid: 1-64 "
                                "characters of A-Z a-z 0-9 . _ -", name);
    struct stat info;
    if (stat (dir, &info) != 0 || !S_ISDIR (info.st_mode))
        return herald_cli_fail (HERALD_CLI_EXIT_FAIL, "keygen: %s is not a directory", dir);

    char *public_path = zsys_sprintf ("%s/%s.key", dir, name);
    char *secret_path = zsys_sprintf ("%s/%s.key_secret", dir, name);
    zcert_t *cert = NULL;
    bool made_secret = false, made_public = false;
    int rc = HERALD_CLI_EXIT_OK;
    if (!public_path || !secret_path)
        rc = herald_cli_fail (HERALD_CLI_EXIT_FAIL, "keygen: out of memory");
    else
    if (!(made_secret = s_create (secret_path, 0600))
    ||  !(made_public = s_create (public_path, 0644)))
        rc = herald_cli_fail (HERALD_CLI_EXIT_FAIL, "keygen: %s: %s%s",
                              made_secret ? public_path : secret_path, strerror (errno),
                              errno == EEXIST ? " (not overwritten: remove it, or choose "
                                                "another NAME)" : "");
    else {
        //  zcert_save rewrites both files in place: the secret keeps its 0600
        cert = zcert_new ();
        if (cert) {
            zcert_set_meta (cert, "name", "%s", name);
            char made [64];
            time_t now = time (NULL);
            strftime (made, sizeof (made), "%Y-%m-%dT%H:%M:%SZ", gmtime (&now));
            zcert_set_meta (cert, "created", "%s", made);
        }
        if (!cert || zcert_save (cert, public_path) != 0 || chmod (secret_path, 0600) != 0)
            rc = herald_cli_fail (HERALD_CLI_EXIT_FAIL, "keygen: cannot write %s: %s",
                                  public_path, strerror (errno));
    }
    if (rc == HERALD_CLI_EXIT_OK) {
        printf ("# herald keygen: %s (public) and %s (secret, mode 0600)\n"
                "# paste into the ACL file, then grant (publish, scope or read, admin):\n"
                "[user %s]\n", public_path, secret_path, name);
        s_print_key (zcert_public_txt (cert));
    }
    else {
        //  remove what this run made, never what was there before
        if (made_public)
            unlink (public_path);
        if (made_secret)
            unlink (secret_path);
    }
    zcert_destroy (&cert);
    zstr_free (&public_path);
    zstr_free (&secret_path);
    return rc;
}

//  ---------------------------------------------------------------------
//  acl check

static int
s_verdict (const herald_acl_t *acl, const char *path, const char *name, const char *topic)
{
    const herald_acl_user_t *user = herald_acl_user (acl, name);
    if (!user)
        return herald_cli_fail (HERALD_CLI_EXIT_FAIL, "acl check: %s has no user '%s'", path,
                                name);
    size_t len = strlen (topic);
    bool publish = herald_acl_may_publish (user, topic, len);
    bool read = herald_acl_may_read (user, topic, len);
    printf ("user %s, topic %s: publish %s, read %s", name, topic,
            publish ? "allowed" : "refused", read ? "allowed" : "refused");
    if (user->read_all)
        printf (" (read = *: the main fanout)\n");
    else
    if (user->scope)
        printf (" (scope %s: %s)\n", user->scope->name, user->scope->fanout);
    else
        printf (" (this user reads nothing)\n");
    return HERALD_CLI_EXIT_OK;
}

//  ---------------------------------------------------------------------
//  acl reload, acl show (online)

//  A str, or the items of an array of str space-separated; none for
//  nothing (absent, nil, an empty array).
static void
s_words (const msgpack_object *value, const char *none)
{
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
        fputs (none, stdout);
}

static uint64_t
s_uint (const msgpack_object *value)
{
    return value && value->type == MSGPACK_OBJECT_POSITIVE_INTEGER? value->via.u64: 0;
}

static void
s_print_reload (const msgpack_object *root, const char *endpoint)
{
    printf ("ACL reloaded at %s: version ", endpoint);
    s_words (herald_cli_map_get (root, "acl_version"), "?");
    printf (" (was ");
    s_words (herald_cli_map_get (root, "previous"), "?");
    printf ("), %" PRIu64 " users, %" PRIu64 " scopes; revoked: ",
            s_uint (herald_cli_map_get (root, "users")),
            s_uint (herald_cli_map_get (root, "scopes")));
    s_words (herald_cli_map_get (root, "revoked"), "none");
    fputc ('\n', stdout);
}

static void
s_print_show (const msgpack_object *root)
{
    char when [48] = "?";
    const msgpack_object *loaded = herald_cli_map_get (root, "loaded");
    if (loaded && loaded->type == MSGPACK_OBJECT_POSITIVE_INTEGER)
        herald_cli_time_format (loaded->via.u64, when, sizeof when);
    printf ("acl_version  ");
    s_words (herald_cli_map_get (root, "acl_version"), "?");
    printf ("\npath         ");
    s_words (herald_cli_map_get (root, "path"), "?");
    printf ("\nloaded       %s\n", when);
    const msgpack_object *scopes = herald_cli_map_get (root, "scopes");
    uint32_t count = scopes && scopes->type == MSGPACK_OBJECT_ARRAY? scopes->via.array.size: 0;
    for (uint32_t index = 0; index < count; index++) {
        const msgpack_object *scope = &scopes->via.array.ptr [index];
        printf ("scope ");
        s_words (herald_cli_map_get (scope, "name"), "?");
        printf ("  fanout ");
        s_words (herald_cli_map_get (scope, "fanout"), "-");
        printf ("  read ");
        s_words (herald_cli_map_get (scope, "read"), "-");
        fputc ('\n', stdout);
    }
    const msgpack_object *users = herald_cli_map_get (root, "users");
    count = users && users->type == MSGPACK_OBJECT_ARRAY? users->via.array.size: 0;
    for (uint32_t index = 0; index < count; index++) {
        const msgpack_object *user = &users->via.array.ptr [index];
        printf ("user ");
        s_words (herald_cli_map_get (user, "name"), "?");
        printf ("  scope ");
        s_words (herald_cli_map_get (user, "scope"), "-");
        printf ("  publish ");
        s_words (herald_cli_map_get (user, "publish"), "-");
        printf ("  admin ");
        s_words (herald_cli_map_get (user, "admin"), "-");
        printf ("  keys ");
        s_words (herald_cli_map_get (user, "keys"), "-");
        fputc ('\n', stdout);
    }
}

//  One ACL request (op) and its reply printed.
static int
s_online (herald_cli_opts_t *opts, herald_msg_acl_op_t op, bool json)
{
    herald_cli_conn_t *conn = NULL;
    int rc = herald_cli_conn_open (opts, &conn);
    if (rc)
        return rc;
    herald_msg_t request = { .type = HERALD_MSG_ACL, .has_rid = true };
    request.rid = herald_cli_conn_rid (conn);
    request.acl.op = op;
    rc = herald_cli_conn_send (conn, &request);
    herald_cli_reply_t reply;
    memset (&reply, 0, sizeof reply);
    if (rc == 0)
        rc = herald_cli_conn_recv (conn, &reply);
    if (rc == 0 && reply.type == HERALD_MSG_ERROR)
        rc = herald_cli_print_error (&reply);
    else
    if (rc == 0 && (reply.type != HERALD_MSG_ACL_REPLY || reply.body.rid != request.rid
                    || reply.body.acl.op != op))
        rc = herald_cli_fail (HERALD_CLI_EXIT_FAIL, "unexpected %s reply to ACL",
                              herald_msg_command (reply.type));
    msgpack_unpacked unpacked;
    msgpack_unpacked_init (&unpacked);
    zframe_t *body = rc == 0 && zmsg_first (reply.msg)? zmsg_next (reply.msg): NULL;
    if (rc == 0 && (!body || msgpack_unpack_next (&unpacked, (const char *) zframe_data (body),
                                                  zframe_size (body), NULL)
                             != MSGPACK_UNPACK_SUCCESS))
        rc = herald_cli_fail (HERALD_CLI_EXIT_FAIL, "bad ACL reply from %s",
                              herald_cli_conn_endpoint (conn));
    if (rc == 0) {
        if (json) {
            herald_cli_json_object (stdout, &unpacked.data);
            fputc ('\n', stdout);
        }
        else
        if (op == HERALD_MSG_ACL_RELOAD)
            s_print_reload (&unpacked.data, herald_cli_conn_endpoint (conn));
        else
            s_print_show (&unpacked.data);
    }
    msgpack_unpacked_destroy (&unpacked);
    herald_cli_reply_fini (&reply);
    herald_cli_conn_destroy (&conn);
    return rc;
}

int
herald_cli_acl (herald_cli_opts_t *opts, int argc, char **argv)
{
    const char *operands [4] = { NULL };
    int operand_count = 0;
    bool bad = false, json = false;
    int index = 1;
    while (index < argc && !bad) {
        if (strcmp (argv [index], "--help") == 0) {
            fputs (s_acl_usage, stdout);
            return HERALD_CLI_EXIT_OK;
        }
        if (strcmp (argv [index], "--json") == 0) {
            json = true;
            index++;
            continue;
        }
        if (herald_cli_common_opt (opts, argc, argv, &index, &bad))
            continue;
        if (argv [index][0] == '-' || operand_count == 4)
            return herald_cli_fail (HERALD_CLI_EXIT_USAGE, "acl: unexpected '%s' (see "
                                    "herald acl --help)", argv [index]);
        operands [operand_count++] = argv [index++];
    }
    if (bad)
        return HERALD_CLI_EXIT_USAGE;
    if (operand_count == 0)
        return herald_cli_fail (HERALD_CLI_EXIT_USAGE, "acl: give a subcommand: check FILE, "
                                "reload or show (see herald acl --help)");
    bool reload = strcmp (operands [0], "reload") == 0;
    if (reload || strcmp (operands [0], "show") == 0) {
        if (operand_count != 1)
            return herald_cli_fail (HERALD_CLI_EXIT_USAGE, "acl %s: unexpected '%s' (see "
                                    "herald acl --help)", operands [0], operands [1]);
        if (opts->format_set && opts->format == HERALD_CLI_JSON)
            json = true;
        return s_online (opts, reload? HERALD_MSG_ACL_RELOAD: HERALD_MSG_ACL_SHOW, json);
    }
    if (json)
        return herald_cli_fail (HERALD_CLI_EXIT_USAGE, "acl check: --json is for reload and "
                                "show (see herald acl --help)");
    if (strcmp (operands [0], "check") != 0)
        return herald_cli_fail (HERALD_CLI_EXIT_USAGE, "acl: unknown subcommand '%s' (see "
                                "herald acl --help)", operands [0]);
    if (operand_count != 2 && operand_count != 4)
        return herald_cli_fail (HERALD_CLI_EXIT_USAGE, "acl check: give FILE, or FILE USER "
                                "TOPIC (see herald acl --help)");
    if (operand_count == 4 && !herald_cli_topic_ok ("acl check", operands [3]))
        return HERALD_CLI_EXIT_USAGE;
    herald_error_t err;
    herald_acl_t *acl = herald_acl_load (operands [1], &err);
    if (!acl)
        return herald_cli_fail (HERALD_CLI_EXIT_FAIL, "%s", err.message);
    int rc = HERALD_CLI_EXIT_OK;
    if (operand_count == 4)
        rc = s_verdict (acl, operands [1], operands [2], operands [3]);
    else {
        herald_acl_print (acl, stdout);
        struct timespec now;
        clock_gettime (CLOCK_REALTIME, &now);
        size_t expired = herald_acl_expired (acl, (int64_t) now.tv_sec * 1000000000
                                                  + now.tv_nsec);
        if (expired)
            fprintf (stderr, "herald: acl check: %zu key%s expired (kept, refused at "
                     "connection)\n", expired, expired == 1 ? " has" : "s have");
    }
    herald_acl_destroy (&acl);
    return rc;
}
