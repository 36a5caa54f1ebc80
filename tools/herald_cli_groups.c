/*  =========================================================================
    herald_cli_groups - `herald groups` and `herald group`: the broker's
    consumer groups (HWP/1 GROUP, docs/protocol.md "Consumer groups")

        herald groups [--format table|json]
        herald group show NAME [--format table|json]
        herald group reset NAME --to-seq N|--to-ts T
        herald group delete NAME

    DESIGN
    Each command is one GROUP request (op list, show, reset, delete).  Only
    the node that serves GROUP answers it (a standalone broker, a cluster's
    leader); another answers not_leader naming the leader's api, which is
    followed (at most HOPS_MAX requests; while no leader is known, the next
    endpoint of --endpoint's list after a breath).  A broker from before
    groups answers unknown_command, said as "upgrade it".  Replies are read
    raw (msgpack objects): the GROUP reply is not one herald_msg knows, and
    every key a newer broker adds reaches --format json.
    =========================================================================
*/

#include "herald_cli.h"

#include <inttypes.h>
#include <string.h>

#define HOPS_MAX        16
#define PARTITIONS_MAX  1024        //  docs/protocol.md: partitions 1-1024

static const char *s_groups_usage =
    "usage: herald groups [--format table|json]\n"
    "       herald group show NAME [--format table|json]\n"
    "       herald group reset NAME --to-seq N|--to-ts T [--format table|json]\n"
    "       herald group delete NAME [--format table|json]\n"
    "       (each also takes --endpoint E1,E2,..., --timeout MS, --key, --server-key)\n"
    "\n"
    "The broker's consumer groups (docs/groups.md): named positions in the log,\n"
    "shared by the members that join them, kept by the broker (a cluster's leader,\n"
    "found from any node).\n"
    "\n"
    "  groups        every group: NAME PARTITIONS MEMBERS COMMITTED LAG PREFIXES\n"
    "                (COMMITTED: every event up to it was handled, in every\n"
    "                partition; LAG: the broker's head minus COMMITTED, in seqs)\n"
    "  group show    one group: its settings, its members (partitions owned,\n"
    "                committed, lag, last heartbeat) and every partition's\n"
    "                committed, delivered, epoch and owner\n"
    "  group reset   rewind (or skip ahead) every partition; live members are\n"
    "                fenced, let their partitions go and get them back from there\n"
    "      --to-seq N   deliver again from seq N\n"
    "      --to-ts T    from the first event at or after time T (2026-12-02T16:35:47Z,\n"
    "                   -1h, ...: as for replay)\n"
    "  group delete  forget the group; refused while it has members (stop them\n"
    "                first)\n"
    "\n"
    "Default format: table; --format json prints the broker's reply (without rid).\n"
    "With security on, list shows the groups whose prefixes the key may read; show\n"
    "needs read access to them; reset and delete also the grant admin = groups.\n"
    "Exit status: 0 done; 1 the broker refused (`herald: CODE: message`), or it\n"
    "does not support groups; 2 no broker answered; 64 a usage error.\n";

typedef struct {
    zmsg_t *msg;                    //  the reply (owned)
    char command [16];
    msgpack_unpacked unpacked;
    const msgpack_object *root;     //  the body, a map
    char endpoint [HERALD_CLI_ENDPOINT_MAX];
} s_reply_t;

static void
s_reply_fini (s_reply_t *reply)
{
    if (reply->root)
        msgpack_unpacked_destroy (&reply->unpacked);
    zmsg_destroy (&reply->msg);
    memset (reply, 0, sizeof *reply);
}

//  ---------------------------------------------------------------------
//  Reading the reply's values

static bool
s_uint (const msgpack_object *map, const char *key, uint64_t *value)
{
    const msgpack_object *item = herald_cli_map_get (map, key);
    if (!item || item->type != MSGPACK_OBJECT_POSITIVE_INTEGER)
        return false;
    *value = item->via.u64;
    return true;
}

//  A str value into buf ("" when absent or not a str).
static const char *
s_str (const msgpack_object *map, const char *key, char *buf, size_t size)
{
    const msgpack_object *item = herald_cli_map_get (map, key);
    if (item && item->type == MSGPACK_OBJECT_STR)
        snprintf (buf, size, "%.*s", (int) item->via.str.size, item->via.str.ptr);
    else
        *buf = 0;
    return buf;
}

//  An array value, or NULL.
static const msgpack_object *
s_array (const msgpack_object *map, const char *key)
{
    const msgpack_object *item = herald_cli_map_get (map, key);
    return item && item->type == MSGPACK_OBJECT_ARRAY? item: NULL;
}

//  Prefixes as "orders. billing." ("*" for every topic) into buf.
static const char *
s_prefixes (const msgpack_object *map, char *buf, size_t size)
{
    const msgpack_object *prefixes = s_array (map, "prefixes");
    size_t used = 0;
    *buf = 0;
    for (uint32_t at = 0; prefixes && at < prefixes->via.array.size && used < size; at++) {
        const msgpack_object *item = &prefixes->via.array.ptr [at];
        if (item->type == MSGPACK_OBJECT_STR)
            used += (size_t) snprintf (buf + used, size - used, "%s%.*s", used? " ": "",
                                       (int) item->via.str.size, item->via.str.ptr);
    }
    if (!*buf)
        snprintf (buf, size, "*");
    return buf;
}

static int
s_compare_u64 (const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *) a, y = *(const uint64_t *) b;
    return x < y? -1: x > y;
}

//  A member's partitions as ranges, "0-7,12,20-21" ("-" for none).
static const char *
s_ranges (const msgpack_object *array, char *buf, size_t size)
{
    uint64_t list [PARTITIONS_MAX];
    size_t count = 0;
    for (uint32_t at = 0; array && at < array->via.array.size && count < PARTITIONS_MAX; at++)
        if (array->via.array.ptr [at].type == MSGPACK_OBJECT_POSITIVE_INTEGER)
            list [count++] = array->via.array.ptr [at].via.u64;
    qsort (list, count, sizeof list [0], s_compare_u64);
    size_t used = 0;
    *buf = 0;
    for (size_t at = 0; at < count && used < size; ) {
        size_t end = at;
        while (end + 1 < count && list [end + 1] == list [end] + 1)
            end++;
        if (end == at)
            used += (size_t) snprintf (buf + used, size - used, "%s%" PRIu64, used? ",": "",
                                       list [at]);
        else
            used += (size_t) snprintf (buf + used, size - used, "%s%" PRIu64 "-%" PRIu64,
                                       used? ",": "", list [at], list [end]);
        at = end + 1;
    }
    if (!*buf)
        snprintf (buf, size, "-");
    return buf;
}

//  The body as one JSON object, without rid.
static void
s_print_json (const msgpack_object *root)
{
    fputc ('{', stdout);
    bool first = true;
    for (uint32_t at = 0; root && at < root->via.map.size; at++) {
        const msgpack_object *key = &root->via.map.ptr [at].key;
        if (key->type != MSGPACK_OBJECT_STR
        ||  (key->via.str.size == 3 && memcmp (key->via.str.ptr, "rid", 3) == 0))
            continue;
        if (!first)
            fputc (',', stdout);
        first = false;
        herald_cli_json_string (stdout, key->via.str.ptr, key->via.str.size);
        fputc (':', stdout);
        herald_cli_json_object (stdout, &root->via.map.ptr [at].val);
    }
    fputs ("}\n", stdout);
}

//  ---------------------------------------------------------------------
//  Asking

//  Send [GROUP, body] on conn and wait up to timeout_ms for the reply to
//  rid, into reply.  Returns 0, or the exit code with why filled (the
//  connection is quiet: its failures are written there).
static int
s_exchange (herald_cli_conn_t *conn, const msgpack_sbuffer *body, uint64_t rid, int timeout_ms,
            s_reply_t *reply, char *why, size_t why_size)
{
    zmsg_t *msg = zmsg_new ();
    zmsg_addstr (msg, "GROUP");
    zmsg_addmem (msg, body->data, body->size);
    if (zmsg_send (&msg, herald_cli_conn_sock (conn)) != 0) {
        zmsg_destroy (&msg);
        snprintf (why, why_size, "cannot send to %s", herald_cli_conn_endpoint (conn));
        return HERALD_CLI_EXIT_FAIL;
    }
    zsock_t *dealer = herald_cli_conn_sock (conn);
    zpoller_t *poller = zpoller_new (dealer, herald_cli_conn_watch_sock (conn), NULL);
    int64_t deadline = zclock_mono () + timeout_ms;
    int rc = -1;
    while (rc < 0 && poller) {
        int64_t wait = deadline - zclock_mono ();
        void *which = wait > 0? zpoller_wait (poller, (int) wait): NULL;
        if (!which) {
            snprintf (why, why_size, "broker at %s did not answer within %d ms",
                      herald_cli_conn_endpoint (conn), timeout_ms);
            rc = zpoller_terminated (poller)? HERALD_CLI_EXIT_FAIL: HERALD_CLI_EXIT_NO_ANSWER;
            break;
        }
        if (which != dealer) {
            if (!herald_cli_conn_check (conn))
                rc = herald_cli_conn_lost (conn);       //  why is filled
            continue;
        }
        zmsg_t *answer = zmsg_recv (dealer);
        zframe_t *command = answer? zmsg_first (answer): NULL;
        zframe_t *frame = command? zmsg_next (answer): NULL;
        if (!frame) {
            zmsg_destroy (&answer);
            continue;
        }
        s_reply_fini (reply);
        msgpack_unpacked_init (&reply->unpacked);
        reply->root = &reply->unpacked.data;
        reply->msg = answer;
        snprintf (reply->command, sizeof reply->command, "%.*s", (int) zframe_size (command),
                  (const char *) zframe_data (command));
        snprintf (reply->endpoint, sizeof reply->endpoint, "%s",
                  herald_cli_conn_endpoint (conn));
        uint64_t got = 0;
        if (msgpack_unpack_next (&reply->unpacked, (const char *) zframe_data (frame),
                                 zframe_size (frame), NULL) != MSGPACK_UNPACK_SUCCESS
        ||  reply->root->type != MSGPACK_OBJECT_MAP) {
            snprintf (why, why_size, "%s: a %s reply that does not decode", reply->endpoint,
                      reply->command);
            rc = HERALD_CLI_EXIT_FAIL;
        }
        else
        //  ERROR with rid nil: a request the broker could not read at all
        if ((s_uint (reply->root, "rid", &got) && got == rid)
        ||  (strcmp (reply->command, "ERROR") == 0 && !s_uint (reply->root, "rid", &got)))
            rc = 0;
    }
    zpoller_destroy (&poller);
    return rc < 0? HERALD_CLI_EXIT_FAIL: rc;
}

//  Ask the node that serves GROUP: the endpoints of --endpoint in turn,
//  following not_leader.  Returns 0 with reply set (GROUP or an ERROR
//  other than not_leader), or the exit code after printing why.
static int
s_ask (herald_cli_opts_t *opts, const char *what, const msgpack_sbuffer *body, uint64_t rid,
       s_reply_t *reply)
{
    char target [HERALD_CLI_ENDPOINT_MAX];
    snprintf (target, sizeof target, "%.*s", (int) strcspn (opts->endpoint, ","),
              opts->endpoint);
    size_t items = 1;
    for (const char *at = opts->endpoint; (at = strchr (at, ',')); at++)
        items++;
    char why [700] = "", whys [1400] = "";
    int rc = HERALD_CLI_EXIT_NO_ANSWER;
    size_t failed = 0;              //  endpoints in a row that did not answer
    for (int hops = 0; hops < HOPS_MAX; hops++) {
        herald_cli_conn_t *conn = NULL;
        rc = herald_cli_conn_open_to (target, opts->timeout_ms, why, sizeof why, &conn);
        if (rc == 0)
            rc = s_exchange (conn, body, rid, opts->timeout_ms, reply, why, sizeof why);
        herald_cli_conn_destroy (&conn);
        if (rc == HERALD_CLI_EXIT_USAGE)
            return herald_cli_fail (rc, "--endpoint: %s", why);
        bool not_leader = rc == 0 && strcmp (reply->command, "ERROR") == 0;
        char code [32], leader [HERALD_CLI_ENDPOINT_MAX];
        if (not_leader)
            not_leader = strcmp (s_str (reply->root, "code", code, sizeof code),
                                 "not_leader") == 0;
        if (rc == 0 && !not_leader)
            return 0;
        if (not_leader && *s_str (reply->root, "leader", leader, sizeof leader)
        &&  strcmp (leader, target) != 0
        &&  herald_cli_endpoint ("leader", leader, target, sizeof target)) {
            failed = 0;
            continue;
        }
        if (rc) {
            size_t used = strlen (whys);
            snprintf (whys + used, sizeof whys - used, "%s%s", used? "; ": "", why);
            if (++failed >= items)
                break;              //  none of them answers
        }
        else {
            //  not_leader without a leader: an election; the next node
            rc = HERALD_CLI_EXIT_FAIL;
            s_str (reply->root, "message", why, sizeof why);
            zclock_sleep (200);
        }
        //  The next node of the list (or, with one, the same again)
        char next [HERALD_CLI_ENDPOINT_MAX];
        if (herald_cli_endpoint_next (opts->endpoint, target, next, sizeof next))
            snprintf (target, sizeof target, "%s", next);
        else
            snprintf (target, sizeof target, "%.*s", (int) strcspn (opts->endpoint, ","),
                      opts->endpoint);
    }
    if (rc == HERALD_CLI_EXIT_NO_ANSWER || (rc && *whys))
        return herald_cli_fail (rc, "%s: %s", what, *whys? whys: why);
    return herald_cli_fail (HERALD_CLI_EXIT_FAIL, "%s: no node leads (not_leader: %s)", what,
                            why);
}

//  An ERROR reply said for people.  Returns 1.
static int
s_refused (const s_reply_t *reply, const char *what)
{
    char code [32], message [600];
    s_str (reply->root, "code", code, sizeof code);
    s_str (reply->root, "message", message, sizeof message);
    if (strcmp (code, "unknown_command") == 0)
        return herald_cli_fail (HERALD_CLI_EXIT_FAIL, "this broker does not support consumer "
                                "groups (HWP/1 GROUP): upgrade it (%s at %s)", code,
                                reply->endpoint);
    herald_cli_fail (HERALD_CLI_EXIT_FAIL, "%s: %s", *code? code: "internal", message);
    if (strcmp (what, "group delete") == 0 && strcmp (code, "bad_request") == 0
    &&  strstr (message, "member"))
        herald_cli_fail (HERALD_CLI_EXIT_FAIL, "group delete: refused while the group has live "
                         "members: stop them (a member that died leaves once its session "
                         "expires), then delete it");
    return HERALD_CLI_EXIT_FAIL;
}

static void
s_pack_str (msgpack_packer *pk, const char *key, const char *value)
{
    msgpack_pack_str_with_body (pk, key, strlen (key));
    msgpack_pack_str_with_body (pk, value, strlen (value));
}

static void
s_pack_uint (msgpack_packer *pk, const char *key, uint64_t value)
{
    msgpack_pack_str_with_body (pk, key, strlen (key));
    msgpack_pack_uint64 (pk, value);
}

//  ---------------------------------------------------------------------
//  Printing

static void
s_print_list (const msgpack_object *root)
{
    const msgpack_object *groups = s_array (root, "groups");
    size_t count = groups? groups->via.array.size: 0;
    uint64_t head = 0;
    s_uint (root, "head", &head);
    int width = 4;
    char name [160], prefixes [2048];
    for (size_t at = 0; at < count; at++)
        if ((int) strlen (s_str (&groups->via.array.ptr [at], "group", name, sizeof name))
            > width)
            width = (int) strlen (name);
    if (count)
        printf ("%-*s  %10s  %7s  %12s  %10s  %s\n", width, "NAME", "PARTITIONS", "MEMBERS",
                "COMMITTED", "LAG", "PREFIXES");
    for (size_t at = 0; at < count; at++) {
        const msgpack_object *group = &groups->via.array.ptr [at];
        uint64_t partitions = 0, members = 0, committed = 0, lag = 0;
        s_uint (group, "partitions", &partitions);
        s_uint (group, "members", &members);
        bool has_committed = s_uint (group, "committed", &committed);
        bool has_lag = s_uint (group, "lag", &lag);
        char committed_text [24] = "-", lag_text [24] = "-";
        if (has_committed)
            snprintf (committed_text, sizeof committed_text, "%" PRIu64, committed);
        if (has_lag)
            snprintf (lag_text, sizeof lag_text, "%" PRIu64, lag);
        printf ("%-*s  %10" PRIu64 "  %7" PRIu64 "  %12s  %10s  %s\n", width,
                s_str (group, "group", name, sizeof name), partitions, members, committed_text,
                lag_text, s_prefixes (group, prefixes, sizeof prefixes));
    }
    if (count)
        printf ("%zu group%s; the broker's head is %" PRIu64 "\n", count, count == 1? "": "s",
                head);
    else
        printf ("no groups (the broker's head is %" PRIu64 ")\n", head);
}

static void
s_print_show (const msgpack_object *root)
{
    char text [2048], when [48];
    uint64_t value = 0, head = 0;
    s_uint (root, "head", &head);
    printf ("%-11s %s\n", "group", s_str (root, "group", text, sizeof text));
    printf ("%-11s %s\n", "prefixes", s_prefixes (root, text, sizeof text));
    static const char *const names [] = { "partitions", "session_ms", "generation" };
    for (size_t at = 0; at < sizeof names / sizeof names [0]; at++)
        if (s_uint (root, names [at], &value))
            printf ("%-11s %" PRIu64 "\n", names [at], value);
    if (s_uint (root, "created", &value))
        printf ("%-11s %s\n", "created", herald_cli_time_format (value, when, sizeof when));
    //  The group's committed: the lowest of its partitions'
    const msgpack_object *positions = s_array (root, "positions");
    size_t count = positions? positions->via.array.size: 0;
    uint64_t lowest = UINT64_MAX;
    for (size_t at = 0; at < count; at++)
        if (s_uint (&positions->via.array.ptr [at], "committed", &value) && value < lowest)
            lowest = value;
    printf ("%-11s %" PRIu64 "\n", "head", head);
    if (lowest != UINT64_MAX)
        printf ("%-11s %" PRIu64 " (lag %" PRIu64 ")\n", "committed", lowest,
                head > lowest? head - lowest: 0);

    const msgpack_object *members = s_array (root, "members");
    size_t member_count = members? members->via.array.size: 0;
    char name [160], owned [4096];
    int width = 6;
    for (size_t at = 0; at < member_count; at++)
        if ((int) strlen (s_str (&members->via.array.ptr [at], "member", name, sizeof name))
            > width)
            width = (int) strlen (name);
    printf ("\n%zu member%s\n", member_count, member_count == 1? "": "s");
    if (member_count)
        printf ("%-*s  %-20s  %12s  %10s  %8s\n", width, "MEMBER", "PARTITIONS", "COMMITTED",
                "LAG", "SEEN_MS");
    for (size_t at = 0; at < member_count; at++) {
        const msgpack_object *member = &members->via.array.ptr [at];
        char committed [24] = "-", lag [24] = "-", seen [24] = "-";
        if (s_uint (member, "committed", &value))
            snprintf (committed, sizeof committed, "%" PRIu64, value);
        if (s_uint (member, "lag", &value))
            snprintf (lag, sizeof lag, "%" PRIu64, value);
        if (s_uint (member, "seen_ms", &value))
            snprintf (seen, sizeof seen, "%" PRIu64, value);
        printf ("%-*s  %-20s  %12s  %10s  %8s\n", width,
                s_str (member, "member", name, sizeof name),
                s_ranges (s_array (member, "partitions"), owned, sizeof owned), committed, lag,
                seen);
    }

    printf ("\n%-9s  %12s  %12s  %8s  %s\n", "PARTITION", "COMMITTED", "DELIVERED", "EPOCH",
            "OWNER");
    for (size_t at = 0; at < count; at++) {
        const msgpack_object *position = &positions->via.array.ptr [at];
        uint64_t partition = 0, committed = 0, delivered = 0, epoch = 0;
        s_uint (position, "partition", &partition);
        s_uint (position, "committed", &committed);
        s_uint (position, "delivered", &delivered);
        s_uint (position, "epoch", &epoch);
        s_str (position, "owner", name, sizeof name);
        printf ("%9" PRIu64 "  %12" PRIu64 "  %12" PRIu64 "  %8" PRIu64 "  %s\n", partition,
                committed, delivered, epoch, *name? name: "-");
    }
}

//  ---------------------------------------------------------------------
//  The commands

//  A group name as the broker takes it: 1-128 bytes of [A-Za-z0-9._-],
//  not starting with '.'.
static bool
s_name_ok (const char *name)
{
    size_t len = strlen (name);
    if (len == 0 || len > 128 || name [0] == '.')
        return false;
    for (size_t at = 0; at < len; at++) {
        char c = name [at];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')
           || c == '.' || c == '_' || c == '-'))
            return false;
    }
    return true;
}

int
herald_cli_groups (herald_cli_opts_t *opts, int argc, char **argv)
{
    bool list = strcmp (argv [0], "groups") == 0;
    int index = 1;
    const char *op = "list";
    if (argc >= 2 && strcmp (argv [1], "--help") == 0) {
        fputs (s_groups_usage, stdout);
        return HERALD_CLI_EXIT_OK;
    }
    if (!list) {
        if (argc < 2) {
            fputs (s_groups_usage, stderr);
            return HERALD_CLI_EXIT_USAGE;
        }
        op = argv [1];
        index = 2;
        if (strcmp (op, "list") == 0)
            list = true;
        else
        if (strcmp (op, "show") != 0 && strcmp (op, "reset") != 0 && strcmp (op, "delete") != 0)
            return herald_cli_fail (HERALD_CLI_EXIT_USAGE, "group: unknown command '%s': give "
                                    "show, reset or delete (see herald group --help)", op);
    }
    char what [32];
    snprintf (what, sizeof what, "%s%s", list? "groups": "group ", list? "": op);
    bool reset = strcmp (op, "reset") == 0;
    const char *name = NULL;
    bool has_seq = false, has_ts = false, bad = false;
    uint64_t seq = 0, ts = 0;
    while (index < argc && !bad) {
        const char *arg = argv [index], *text = NULL;
        if (herald_cli_common_opt (opts, argc, argv, &index, &bad))
            continue;
        if (reset && herald_cli_opt (argc, argv, &index, "--to-seq", &text, &bad)) {
            if (text && !herald_cli_positive ("--to-seq", text, &seq))
                bad = true;
            has_seq = true;
        }
        else
        if (reset && herald_cli_opt (argc, argv, &index, "--to-ts", &text, &bad)) {
            if (text && !herald_cli_ts ("--to-ts", text, &ts))
                bad = true;
            has_ts = true;
        }
        else
        if (arg [0] == '-' && arg [1])
            return herald_cli_fail (HERALD_CLI_EXIT_USAGE, "%s: unknown option '%s' (see "
                                    "herald group --help)", what, arg);
        else
        if (!list && !name) {
            name = arg;
            index++;
        }
        else
            return herald_cli_fail (HERALD_CLI_EXIT_USAGE, "%s: unexpected '%s' (see herald "
                                    "group --help)", what, arg);
    }
    if (bad)
        return HERALD_CLI_EXIT_USAGE;
    if (!list && !name)
        return herald_cli_fail (HERALD_CLI_EXIT_USAGE, "%s: give the group's NAME", what);
    if (name && !s_name_ok (name))
        return herald_cli_fail (HERALD_CLI_EXIT_USAGE, "%s: '%s' is not a group name: 1-128 "
                                "bytes of [A-Za-z0-9._-], not starting with '.'", what, name);
    if (reset && has_seq == has_ts)
        return herald_cli_fail (HERALD_CLI_EXIT_USAGE, "group reset: give one of --to-seq N "
                                "and --to-ts T");

    uint64_t rid = (uint64_t) zclock_time ();
    msgpack_sbuffer body;
    msgpack_sbuffer_init (&body);
    msgpack_packer pk;
    msgpack_packer_init (&pk, &body, msgpack_sbuffer_write);
    msgpack_pack_map (&pk, 2 + (name != NULL) + reset);
    s_pack_uint (&pk, "rid", rid);
    s_pack_str (&pk, "op", list? "list": op);
    if (name)
        s_pack_str (&pk, "group", name);
    if (reset && has_seq)
        s_pack_uint (&pk, "to", seq);
    if (reset && has_ts)
        s_pack_uint (&pk, "to_ts", ts);
    s_reply_t reply;
    memset (&reply, 0, sizeof reply);
    int rc = s_ask (opts, what, &body, rid, &reply);
    msgpack_sbuffer_destroy (&body);
    if (rc == 0 && strcmp (reply.command, "GROUP") != 0)
        rc = strcmp (reply.command, "ERROR") == 0? s_refused (&reply, what)
           : herald_cli_fail (HERALD_CLI_EXIT_FAIL, "%s: unexpected %s reply from %s", what,
                              reply.command, reply.endpoint);
    herald_cli_format_t format = opts->format_set? opts->format: HERALD_CLI_TABLE;
    if (rc == 0 && format == HERALD_CLI_JSON)
        s_print_json (reply.root);
    else
    if (rc == 0 && list)
        s_print_list (reply.root);
    else
    if (rc == 0 && strcmp (op, "show") == 0)
        s_print_show (reply.root);
    else
    if (rc == 0 && reset) {
        uint64_t to = 0, fenced = 0;
        s_uint (reply.root, "to", &to);
        s_uint (reply.root, "fenced", &fenced);
        printf ("group %s reset: delivery starts again at seq %" PRIu64 " (every partition's "
                "committed is now %" PRIu64 "); %" PRIu64 " member%s fenced: %s\n", name, to,
                to? to - 1: 0, fenced, fenced == 1? "": "s",
                fenced? "each lets its partitions go and is granted them again from there"
                      : "the next members start from there");
    }
    else
    if (rc == 0)
        printf ("group %s deleted\n", name);
    s_reply_fini (&reply);
    return rc;
}
