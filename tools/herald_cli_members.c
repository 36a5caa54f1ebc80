/*  =========================================================================
    herald_cli_members - `herald cluster add|remove|transfer`: membership
    changes and leadership transfer (HWP/1 CLUSTER, docs/protocol.md)

        herald cluster add NODE RAFT_ADDR API FANOUT --endpoint E1,E2,...
        herald cluster remove NODE|RAFT_ID --endpoint E1,E2,...
        herald cluster transfer [NODE] --endpoint E1,E2,...

    DESIGN
    The leader runs every change, so the request goes to the endpoints in
    turn and follows not_leader's `leader` (at most HOPS_MAX hops) until a
    node takes it; a node that does not answer within --timeout is passed
    over.  add first asks the joining node itself (at API) for its STATUS:
    it must say cluster_state "joining" under the name NODE, and its
    raft_id goes into the request (the leader cannot guess it: it is the
    digest of the name and the joining store's uuid).  Once a node took
    the request, the reply comes when the change has ended, which for an
    add includes the new member's catch-up: that wait is --wait (default
    120 s, for the whole command), not --timeout.  A not_leader that comes
    after the change began (leadership moved: a remove of the leader
    itself hands leadership over first) is followed too, and so is a
    connection the node closes before answering (it died): the request
    goes to the next endpoint, and a new leader resumes an add cut short.
    While nodes answer not_leader without a leader (an election), the
    list is asked again, within HOPS_MAX requests.

    Replies are read raw: the CLUSTER reply is not one herald_msg knows.
    =========================================================================
*/

#include "herald_cli.h"

#include <inttypes.h>
#include <string.h>

#define HOPS_MAX        32
#define WAIT_MS         120000

static const char *s_members_usage =
    "usage: herald cluster add NODE RAFT_ADDR API FANOUT [--endpoint E1,E2,...]\n"
    "       herald cluster remove NODE|RAFT_ID [--endpoint E1,E2,...]\n"
    "       herald cluster transfer [NODE] [--endpoint E1,E2,...]\n"
    "       (each also takes --timeout MS, --wait MS, --format json|table)\n"
    "\n"
    "Change a cluster's membership, one change at a time; the leader runs it, and\n"
    "the command finds the leader itself from the endpoints given (following the\n"
    "not_leader answers of the others).\n"
    "\n"
    "  add        add NODE, a heraldd started with --cluster-state existing and an\n"
    "             empty data directory (it waits, role joining): its raft id is\n"
    "             asked of it at API; the leader adds it, catches it up and makes\n"
    "             it a voter, then records RAFT_ADDR, API and FANOUT in the member\n"
    "             table every node serves (STATUS peers, WELCOME cluster)\n"
    "  remove     remove a member by name, or by raft id (a wiped node's old self);\n"
    "             removing the leader hands leadership over first\n"
    "  transfer   make NODE (default: the most up-to-date voter) the leader;\n"
    "             the outcome is checked, and said as it is\n"
    "\n"
    "  --timeout MS   how long one node may take to answer (default 5000)\n"
    "  --wait MS      how long the change may take once a node took it\n"
    "                 (default 120000: an add waits for the new member's catch-up)\n"
    "\n"
    "Output: one JSON object {\"ok\",\"op\",\"node\",\"raft_id\",\"leader\",\"voters\",\n"
    "\"message\"} (or a line of text with --format table).  Exit status: 0 done;\n"
    "1 refused or failed (the message says why, and where the change stands);\n"
    "2 no node answered; 64 usage.\n";

typedef struct {
    //  The reply
    char command [16];
    char code [32];
    char message [600];
    char leader_api [HERALD_CLI_ENDPOINT_MAX];
    char leader [64];
    char node [64];
    char state [32];                //  STATUS: cluster_state
    uint64_t raft_id;
    uint64_t voters;
    size_t unknown_ids;             //  STATUS: peers listed without a raft_id
    bool has_rid;
    uint64_t rid;
} s_reply_t;

static bool
s_key_is (const msgpack_object *key, const char *name)
{
    return key->type == MSGPACK_OBJECT_STR && key->via.str.size == strlen (name)
        && memcmp (key->via.str.ptr, name, key->via.str.size) == 0;
}

static void
s_copy (char *into, size_t size, const msgpack_object *value)
{
    if (value->type == MSGPACK_OBJECT_STR)
        snprintf (into, size, "%.*s", (int) value->via.str.size, value->via.str.ptr);
}

static bool
s_parse (s_reply_t *reply, const void *body, size_t size)
{
    msgpack_unpacked unpacked;
    msgpack_unpacked_init (&unpacked);
    bool ok = msgpack_unpack_next (&unpacked, body, size, NULL) == MSGPACK_UNPACK_SUCCESS
           && unpacked.data.type == MSGPACK_OBJECT_MAP;
    for (uint32_t at = 0; ok && at < unpacked.data.via.map.size; at++) {
        const msgpack_object *key = &unpacked.data.via.map.ptr [at].key;
        const msgpack_object *value = &unpacked.data.via.map.ptr [at].val;
        if (s_key_is (key, "rid") && value->type == MSGPACK_OBJECT_POSITIVE_INTEGER) {
            reply->has_rid = true;
            reply->rid = value->via.u64;
        }
        if (s_key_is (key, "code"))
            s_copy (reply->code, sizeof reply->code, value);
        if (s_key_is (key, "message"))
            s_copy (reply->message, sizeof reply->message, value);
        if (s_key_is (key, "leader_api"))
            s_copy (reply->leader_api, sizeof reply->leader_api, value);
        //  ERROR not_leader's leader is an api; CLUSTER's is a name
        if (s_key_is (key, "leader"))
            s_copy (strcmp (reply->command, "ERROR") == 0? reply->leader_api: reply->leader,
                    strcmp (reply->command, "ERROR") == 0? sizeof reply->leader_api
                                                          : sizeof reply->leader, value);
        if (s_key_is (key, "node"))
            s_copy (reply->node, sizeof reply->node, value);
        if (s_key_is (key, "cluster_state"))
            s_copy (reply->state, sizeof reply->state, value);
        if (s_key_is (key, "raft_id") && value->type == MSGPACK_OBJECT_POSITIVE_INTEGER)
            reply->raft_id = value->via.u64;
        if (s_key_is (key, "voters") && value->type == MSGPACK_OBJECT_POSITIVE_INTEGER)
            reply->voters = value->via.u64;
        if (s_key_is (key, "peers") && value->type == MSGPACK_OBJECT_ARRAY)
            for (uint32_t peer = 0; peer < value->via.array.size; peer++) {
                const msgpack_object *map = &value->via.array.ptr [peer];
                bool has_id = false;
                for (uint32_t field = 0; map->type == MSGPACK_OBJECT_MAP
                                         && field < map->via.map.size; field++)
                    has_id = has_id || s_key_is (&map->via.map.ptr [field].key, "raft_id");
                reply->unknown_ids += !has_id;
            }
    }
    msgpack_unpacked_destroy (&unpacked);
    return ok;
}

//  Send [command, body] to endpoint and wait up to wait_ms for the reply
//  to rid.  Returns 0 with reply filled, 2 (why filled) when nothing
//  answered, 1 when the answer does not decode.
static int
s_ask (const char *endpoint, const char *command, const msgpack_sbuffer *body,
       uint64_t rid, int probe_ms, int wait_ms, s_reply_t *reply, char *why, size_t why_size)
{
    memset (reply, 0, sizeof *reply);
    int rc = herald_cli_security_load (why, why_size);
    if (rc != 0)
        return rc;
    rc = herald_cli_probe (endpoint, probe_ms, why, why_size);
    if (rc != 0)
        return rc == HERALD_CLI_EXIT_USAGE? HERALD_CLI_EXIT_USAGE: HERALD_CLI_EXIT_NO_ANSWER;
    zsock_t *dealer = zsock_new (ZMQ_DEALER);
    if (!dealer) {
        snprintf (why, why_size, "cannot make a socket");
        return HERALD_CLI_EXIT_FAIL;
    }
    zsock_set_linger (dealer, 0);
    herald_cli_secure (dealer);
    //  A node that dies while the change runs closes the connection: that
    //  ends the wait (the leader that follows resumes the change)
    zsock_t *watch = herald_cli_watch (dealer);
    if (zsock_connect (dealer, "%s", endpoint) != 0) {
        herald_cli_unwatch (dealer, &watch);
        zsock_destroy (&dealer);
        snprintf (why, why_size, "%s: cannot connect", endpoint);
        return HERALD_CLI_EXIT_NO_ANSWER;
    }
    zmsg_t *msg = zmsg_new ();
    zmsg_addstr (msg, command);
    zmsg_addmem (msg, body->data, body->size);
    zmsg_send (&msg, dealer);
    int64_t deadline = zclock_mono () + wait_ms;
    rc = HERALD_CLI_EXIT_NO_ANSWER;
    snprintf (why, why_size, "broker at %s did not answer within %d ms", endpoint, wait_ms);
    zpoller_t *poller = zpoller_new (dealer, watch, NULL);
    while (rc == HERALD_CLI_EXIT_NO_ANSWER && zclock_mono () < deadline) {
        void *which = zpoller_wait (poller, (int) (deadline - zclock_mono ()));
        if (!which)
            continue;
        if (which == watch) {
            int event = herald_cli_watch_event (watch);
            //  A key refused, a broker key not proven: said as such
            int failed = herald_cli_handshake_failure (event, endpoint, why, why_size);
            if (failed) {
                rc = failed;
                break;
            }
            if (event == ZMQ_EVENT_DISCONNECTED
            &&  !(zsock_events (dealer) & ZMQ_POLLIN)) {
                snprintf (why, why_size, "broker at %s closed the connection before it "
                          "answered", endpoint);
                break;
            }
            continue;
        }
        zmsg_t *answer = zmsg_recv (dealer);
        if (!answer)
            break;
        char *name = zmsg_popstr (answer);
        zframe_t *frame = zmsg_pop (answer);
        if (name && frame) {
            snprintf (reply->command, sizeof reply->command, "%s", name);
            if (!s_parse (reply, zframe_data (frame), zframe_size (frame))) {
                snprintf (why, why_size, "%s: a %s reply that does not decode", endpoint, name);
                rc = HERALD_CLI_EXIT_FAIL;
            }
            else
            if (reply->has_rid && reply->rid == rid)
                rc = 0;
        }
        free (name);
        zframe_destroy (&frame);
        zmsg_destroy (&answer);
    }
    zpoller_destroy (&poller);
    herald_cli_unwatch (dealer, &watch);
    zsock_destroy (&dealer);
    return rc;
}

static void
s_pack_str (msgpack_packer *pk, const char *key, const char *value)
{
    msgpack_pack_str_with_body (pk, key, strlen (key));
    msgpack_pack_str_with_body (pk, value, strlen (value));
}

//  The endpoints of a comma-separated list, in order.
static size_t
s_split (const char *list, char items [][HERALD_CLI_ENDPOINT_MAX], size_t max)
{
    size_t count = 0;
    while (list && *list && count < max) {
        size_t length = strcspn (list, ",");
        snprintf (items [count++], HERALD_CLI_ENDPOINT_MAX, "%.*s", (int) length, list);
        list += length + (list [length] == ',');
    }
    return count;
}

static void
s_print (const herald_cli_opts_t *opts, bool ok, const char *op, const s_reply_t *reply,
         const char *message)
{
    if (opts->format_set && opts->format == HERALD_CLI_TABLE) {
        printf ("%s %s: %s\n", op, ok? "done": "failed", message);
        return;
    }
    printf ("{\"ok\":%s,\"op\":\"%s\",\"node\":", ok? "true": "false", op);
    if (*reply->node)
        herald_cli_json_string (stdout, reply->node, strlen (reply->node));
    else
        printf ("null");
    printf (",\"raft_id\":");
    if (reply->raft_id)
        printf ("%" PRIu64, reply->raft_id);
    else
        printf ("null");
    printf (",\"leader\":");
    if (*reply->leader)
        herald_cli_json_string (stdout, reply->leader, strlen (reply->leader));
    else
        printf ("null");
    printf (",\"leader_api\":");
    if (*reply->leader_api)
        herald_cli_json_string (stdout, reply->leader_api, strlen (reply->leader_api));
    else
        printf ("null");
    printf (",\"voters\":");
    if (reply->voters)
        printf ("%" PRIu64, reply->voters);
    else
        printf ("null");
    printf (",\"message\":");
    herald_cli_json_string (stdout, message, strlen (message));
    printf ("}\n");
}

//  The usage text, for herald cluster --help.
void
herald_cli_members_usage (FILE *out)
{
    fputs (s_members_usage, out);
}

int
herald_cli_members (herald_cli_opts_t *opts, int argc, char **argv)
{
    const char *op = argv [0];
    const char *positional [4] = { NULL };
    size_t count = 0;
    uint64_t wait_ms = WAIT_MS;
    const char *list = NULL;
    bool bad = false;
    for (int index = 1; index < argc && !bad; ) {
        const char *value = NULL;
        if (strcmp (argv [index], "--help") == 0 || strcmp (argv [index], "-h") == 0) {
            fputs (s_members_usage, stdout);
            return HERALD_CLI_EXIT_OK;
        }
        //  --endpoint after the command: a list, each item normalized below
        //  (before the command it is the common option's)
        if (herald_cli_opt (argc, argv, &index, "--endpoint", &value, &bad)) {
            list = value;
            continue;
        }
        if (herald_cli_common_opt (opts, argc, argv, &index, &bad))
            continue;
        if (herald_cli_opt (argc, argv, &index, "--wait", &value, &bad)) {
            if (value && !herald_cli_positive ("--wait", value, &wait_ms))
                bad = true;
            continue;
        }
        if (argv [index][0] == '-' && argv [index][1]) {
            herald_cli_fail (HERALD_CLI_EXIT_USAGE, "cluster %s: unknown option '%s'", op,
                             argv [index]);
            bad = true;
            break;
        }
        if (count == 4) {
            herald_cli_fail (HERALD_CLI_EXIT_USAGE, "cluster %s: too many arguments", op);
            bad = true;
            break;
        }
        positional [count++] = argv [index++];
    }
    if (bad)
        return HERALD_CLI_EXIT_USAGE;
    bool add = strcmp (op, "add") == 0, remove = strcmp (op, "remove") == 0;
    size_t wanted_min = add? 4: remove? 1: 0, wanted_max = add? 4: 1;
    if (count < wanted_min || count > wanted_max) {
        herald_cli_fail (HERALD_CLI_EXIT_USAGE, "cluster %s: %s", op,
                         add? "give NODE RAFT_ADDR API FANOUT"
                         : remove? "give one NODE or RAFT_ID": "give at most one NODE");
        return HERALD_CLI_EXIT_USAGE;
    }
    char api [HERALD_CLI_ENDPOINT_MAX] = "", fanout [HERALD_CLI_ENDPOINT_MAX] = "";
    if (add && (!herald_cli_endpoint ("API", positional [2], api, sizeof api)
            ||  !herald_cli_endpoint ("FANOUT", positional [3], fanout, sizeof fanout)))
        return HERALD_CLI_EXIT_USAGE;
    char why [700] = "";
    s_reply_t reply;
    uint64_t rid = (uint64_t) zclock_time ();
    uint64_t raft_id = 0;
    if (add) {
        //  The joining node's raft id, from itself
        msgpack_sbuffer body;
        msgpack_sbuffer_init (&body);
        msgpack_packer pk;
        msgpack_packer_init (&pk, &body, msgpack_sbuffer_write);
        msgpack_pack_map (&pk, 1);
        msgpack_pack_str_with_body (&pk, "rid", 3);
        msgpack_pack_uint64 (&pk, rid);
        int rc = s_ask (api, "STATUS", &body, rid, opts->timeout_ms, opts->timeout_ms, &reply,
                        why, sizeof why);
        msgpack_sbuffer_destroy (&body);
        if (rc != 0)
            return herald_cli_fail (rc, "cluster add: the new node must answer at its api "
                                    "%s: %s", api, why);
        if (strcmp (reply.node, positional [0]) != 0 || strcmp (reply.state, "joining") != 0
        ||  !reply.raft_id)
            return herald_cli_fail (HERALD_CLI_EXIT_FAIL, "cluster add: %s answers as node "
                                    "'%s' (cluster_state %s), not as %s waiting to be added "
                                    "(start it with --node %s --cluster-state existing and "
                                    "an empty --data-dir)", api, reply.node,
                                    *reply.state? reply.state: "none: standalone",
                                    positional [0], positional [0]);
        //  A joining node learns its peers' raft ids before its Raft node
        //  starts (herald_node): until then nothing listens at RAFT_ADDR
        if (reply.unknown_ids)
            return herald_cli_fail (HERALD_CLI_EXIT_FAIL, "cluster add: %s has not started "
                                    "its Raft node yet: it is still asking %zu of its --peer "
                                    "nodes for their raft ids (is each of them up?); retry "
                                    "once it has", positional [0], reply.unknown_ids);
        raft_id = reply.raft_id;
    }
    //  The request
    msgpack_sbuffer body;
    msgpack_sbuffer_init (&body);
    msgpack_packer pk;
    msgpack_packer_init (&pk, &body, msgpack_sbuffer_write);
    msgpack_pack_map (&pk, 2 + (count > 0) + (add? 4: 0));
    rid++;
    msgpack_pack_str_with_body (&pk, "rid", 3);
    msgpack_pack_uint64 (&pk, rid);
    s_pack_str (&pk, "op", op);
    if (count > 0)
        s_pack_str (&pk, "node", positional [0]);
    if (add) {
        s_pack_str (&pk, "raft", positional [1]);
        s_pack_str (&pk, "api", api);
        s_pack_str (&pk, "fanout", fanout);
        msgpack_pack_str_with_body (&pk, "raft_id", 7);
        msgpack_pack_uint64 (&pk, raft_id);
    }
    char endpoints [16][HERALD_CLI_ENDPOINT_MAX];
    size_t endpoint_count = s_split (list? list: opts->endpoint, endpoints, 16);
    for (size_t at = 0; list && at < endpoint_count; at++) {
        char normal [HERALD_CLI_ENDPOINT_MAX];
        if (!*endpoints [at]) {
            msgpack_sbuffer_destroy (&body);
            return herald_cli_fail (HERALD_CLI_EXIT_USAGE, "--endpoint: an empty item in "
                                    "the list (give E1,E2,...)");
        }
        if (!herald_cli_endpoint ("--endpoint", endpoints [at], normal, sizeof normal)) {
            msgpack_sbuffer_destroy (&body);
            return HERALD_CLI_EXIT_USAGE;
        }
        snprintf (endpoints [at], sizeof endpoints [at], "%s", normal);
    }
    //  Ask the endpoints in turn; follow not_leader to the leader it names
    char target [HERALD_CLI_ENDPOINT_MAX] = "";
    size_t next = 0, hops = 0;
    int rc = HERALD_CLI_EXIT_NO_ANSWER;
    char whys [1400] = "";
    //  Round the list again while some node answers but no leader is
    //  known yet (an election), within HOPS_MAX requests and --wait
    bool again = false;
    int64_t give_up = zclock_mono () + (int64_t) wait_ms;
    while (hops < HOPS_MAX + endpoint_count && zclock_mono () < give_up) {
        if (!*target) {
            if (next == endpoint_count && again) {
                next = 0;
                again = false;
            }
            if (next == endpoint_count)
                break;
            snprintf (target, sizeof target, "%s", endpoints [next++]);
        }
        hops++;
        int64_t left = give_up - zclock_mono ();
        rc = s_ask (target, "CLUSTER", &body, rid, opts->timeout_ms,
                    (int) (left > INT32_MAX? INT32_MAX: left > 0? left: 1), &reply, why,
                    sizeof why);
        if (rc != 0) {
            size_t used = strlen (whys);
            snprintf (whys + used, sizeof whys - used, "%s%s", used? "; ": "", why);
            *target = 0;
            continue;
        }
        if (strcmp (reply.command, "ERROR") == 0 && strcmp (reply.code, "not_leader") == 0) {
            if (*reply.leader_api && strcmp (reply.leader_api, target) != 0) {
                snprintf (target, sizeof target, "%s", reply.leader_api);
                continue;
            }
            //  No leader known yet: the next endpoint, after a breath
            *target = 0;
            again = true;
            zclock_sleep (200);
            rc = HERALD_CLI_EXIT_FAIL;
            snprintf (why, sizeof why, "not_leader: %s", reply.message);
            continue;
        }
        break;
    }
    msgpack_sbuffer_destroy (&body);
    if (rc == HERALD_CLI_EXIT_NO_ANSWER)
        return herald_cli_fail (rc, "cluster %s: no node answered: %s", op, whys);
    if (rc != 0)
        return herald_cli_fail (rc, "cluster %s: %s", op, why);
    if (strcmp (reply.command, "CLUSTER") == 0) {
        s_print (opts, true, op, &reply, reply.message);
        return HERALD_CLI_EXIT_OK;
    }
    char message [700];
    snprintf (message, sizeof message, "%s: %s", *reply.code? reply.code: reply.command,
              reply.message);
    s_print (opts, false, op, &reply, message);
    return herald_cli_fail (HERALD_CLI_EXIT_FAIL, "cluster %s: %s", op, message);
}
