/*  =========================================================================
    herald_cli_cluster - `herald cluster status`: every node's view of the
    cluster, side by side, and whether they agree

        herald cluster status --endpoint tcp://a:5580,tcp://b:5580,...

    Asks each endpoint for its STATUS, learns the other members from the
    `peers` a node lists (so one endpoint is enough to find the rest), and
    prints one row per node: role, term, the leader it knows, commit and
    applied index, head, lag behind the leader's head, and the digest of
    its log at that head.  Then it judges:

      - exit 0: exactly one node leads, and every node that answered and
        stands at the same head as another has the same digest (a single
        standalone broker passes too: it is its own leader);
      - exit 1: nodes at the same head with different digests (their logs
        differ: never expected, say so loudly), no leader or more than one,
        or standalone brokers mixed with others;
      - exit 2: no node answered.
    Nodes that did not answer are named (stderr, and in the output) in every
    case; they do not change the verdict on the others.

    DESIGN (bounded time, whatever the network does)
    A node down on the same host refuses at once, but a host that is gone
    swallows the connect until a timeout, so the nodes are not asked one
    after the other.  The plain-socket probes (herald_cli_probe: "nothing
    listens" said at once) run on a thread each, then one DEALER per node
    that accepted sends STATUS and one poller waits for all of them under a
    single deadline: a round takes at most --timeout, and there are at most
    two rounds (the endpoints given, then the members they named).

    The reply is read raw (herald_event_unpack), not through
    herald_msg_decode, because the cluster's keys are strings, nils and an
    array (digest, leader, peers...), which the STATUS decoder leaves out.
    =========================================================================
*/

#include "herald_cli.h"

#include <pthread.h>
#include <stdarg.h>
#include <string.h>

#define S_NODES_MAX     16          //  endpoints asked, discovered ones included
#define S_WHY_MAX       600

static const char *s_cluster_usage =
    "usage: herald cluster status [--endpoint E1,E2,...] [--timeout MS] [--format table|json]\n"
    "\n"
    "Ask every node of a cluster for its STATUS and print one row per node: role,\n"
    "term, the leader it knows, commit and applied index, head, lag (how many\n"
    "events behind the leader's head), and the digest of its log at its head.\n"
    "The endpoints are api endpoints, comma-separated; one is enough, as each node\n"
    "names the other members (their api endpoints as configured with --peer), and\n"
    "those are asked too.  Every node is asked at once; the whole takes at most\n"
    "--timeout per round (two rounds at most: the endpoints given, then the members\n"
    "they named).\n"
    "\n"
    "  --format table   one row per node, then a summary line (the default here)\n"
    "  --format json    one object: {\"ok\",\"leader\",\"term\",\"asked\",\"answered\",\n"
    "                   \"problems\":[...],\"nodes\":[{\"endpoint\",\"answered\",\"node\",\n"
    "                   \"role\",\"term\",\"leader\",\"commit_index\",\"applied_index\",\n"
    "                   \"head\",\"lag\",\"digest\",...}]} (null where a node did not say)\n"
    "\n"
    "Exit status: 0 one leader, and every two nodes that answered at the same head\n"
    "have the same digest (a single standalone broker passes); 1 nodes disagree\n"
    "(same head, different digests), no leader or more than one, or standalone\n"
    "brokers given as a cluster; 2 no node answered.  Nodes that did not answer\n"
    "are named on stderr whatever the exit status.\n"
    "\n";

//  An optional unsigned figure of a STATUS reply.
typedef struct {
    bool has;
    uint64_t value;
} s_uint_t;

typedef struct {
    char *node;
    char *api;
} s_peer_t;

//  One endpoint asked, and what it said.
typedef struct {
    char endpoint [HERALD_CLI_ENDPOINT_MAX];
    char *name;                     //  learned from peers when it did not answer
    //  Asking
    int probe_timeout_ms;
    int probe_rc;
    herald_cli_conn_t *conn;
    uint64_t rid;
    bool done;
    bool answered;
    char why [S_WHY_MAX];
    //  Its STATUS (strings NULL when absent or nil)
    char *node;
    char *role;
    char *cluster_state;
    char *leader;
    char *leader_api;
    char *digest;
    char *durability;
    uint64_t head;
    s_uint_t term, commit_index, applied_index, last_index, voters, raft_id, apply_us_max;
    s_peer_t *peers;
    size_t peer_count;
    //  Judged
    s_uint_t lag;
} s_node_t;

typedef struct {
    s_node_t nodes [S_NODES_MAX];
    size_t count;
    int timeout_ms;
    size_t dropped;                 //  members beyond S_NODES_MAX, not asked
} s_cluster_t;

//  ---------------------------------------------------------------------
//  Reading a STATUS reply

//  Say why node gave no usable answer.
static void
s_why (s_node_t *node, const char *format, ...)
    __attribute__ ((format (printf, 2, 3)));

static void
s_why (s_node_t *node, const char *format, ...)
{
    va_list args;
    va_start (args, format);
    vsnprintf (node->why, sizeof node->why, format, args);
    va_end (args);
}

static char *
s_str_dup (const msgpack_object *value)
{
    if (!value || value->type != MSGPACK_OBJECT_STR)
        return NULL;
    return strndup (value->via.str.ptr, value->via.str.size);
}

static s_uint_t
s_uint (const msgpack_object *value)
{
    s_uint_t result = { false, 0 };
    if (value && value->type == MSGPACK_OBJECT_POSITIVE_INTEGER)
        result = (s_uint_t) { true, value->via.u64 };
    return result;
}

//  The peers array: [{node, raft, api, fanout}, ...]; entries without an
//  api are skipped (nothing to ask).
static void
s_read_peers (s_node_t *self, const msgpack_object *value, msgpack_zone *zone)
{
    if (!value || value->type != MSGPACK_OBJECT_ARRAY || value->via.array.size == 0)
        return;
    self->peers = calloc (value->via.array.size, sizeof (s_peer_t));
    if (!self->peers)
        return;
    uint32_t index;
    for (index = 0; index < value->via.array.size; index++) {
        const msgpack_object *item = &value->via.array.ptr [index];
        if (item->type != MSGPACK_OBJECT_MAP)
            continue;
        herald_field_t fields [] = { { "node" }, { "api" } };
        herald_error_t err;
        if (herald_event_fields (item, fields, 2, zone, "peers", &err) != HERALD_OK)
            continue;
        char *api = s_str_dup (fields [1].value);
        if (!api)
            continue;
        self->peers [self->peer_count].node = s_str_dup (fields [0].value);
        self->peers [self->peer_count++].api = api;
    }
}

//  Fill self from a STATUS body.  False (why filled) when it is not one.
static bool
s_read_status (s_node_t *self, const void *body, size_t size)
{
    msgpack_zone zone;
    msgpack_zone_init (&zone, 2048);
    msgpack_object root;
    herald_error_t err;
    bool ok = false;
    herald_field_t fields [] = {
        { "rid" }, { "head" }, { "role" }, { "node" }, { "cluster_state" }, { "term" },
        { "leader" }, { "leader_api" }, { "commit_index" }, { "applied_index" },
        { "last_index" }, { "voters" }, { "digest" }, { "durability" }, { "raft_id" },
        { "apply_us_max" }, { "peers" }
    };
    if (herald_event_unpack (body, size, &zone, &root, "body", &err) != HERALD_OK
    ||  root.type != MSGPACK_OBJECT_MAP
    ||  herald_event_fields (&root, fields, sizeof fields / sizeof fields [0], &zone, "",
                             &err) != HERALD_OK)
        s_why (self, "%s: its STATUS reply does not decode",
                  self->endpoint);
    else
    if (s_uint (fields [0].value).value != self->rid || !s_uint (fields [0].value).has)
        s_why (self, "%s: a STATUS reply to another request",
                  self->endpoint);
    else
    if (!s_uint (fields [1].value).has || !fields [2].value
    ||  fields [2].value->type != MSGPACK_OBJECT_STR
    ||  !fields [3].value || fields [3].value->type != MSGPACK_OBJECT_STR)
        s_why (self, "%s: its STATUS reply lacks head, role or "
                  "node", self->endpoint);
    else {
        self->head = fields [1].value->via.u64;
        self->role = s_str_dup (fields [2].value);
        self->node = s_str_dup (fields [3].value);
        self->cluster_state = s_str_dup (fields [4].value);
        self->term = s_uint (fields [5].value);
        self->leader = s_str_dup (fields [6].value);
        self->leader_api = s_str_dup (fields [7].value);
        self->commit_index = s_uint (fields [8].value);
        self->applied_index = s_uint (fields [9].value);
        self->last_index = s_uint (fields [10].value);
        self->voters = s_uint (fields [11].value);
        self->digest = s_str_dup (fields [12].value);
        self->durability = s_str_dup (fields [13].value);
        self->raft_id = s_uint (fields [14].value);
        self->apply_us_max = s_uint (fields [15].value);
        s_read_peers (self, fields [16].value, &zone);
        ok = self->role && self->node;
        if (!ok)
            s_why (self, "out of memory");
    }
    msgpack_zone_destroy (&zone);
    return ok;
}

//  An ERROR reply as "CODE: message".
static void
s_read_error (s_node_t *self, const void *body, size_t size)
{
    herald_msg_t error;
    msgpack_zone zone;
    msgpack_zone_init (&zone, 1024);
    herald_error_t err;
    if (herald_msg_decode (&error, HERALD_MSG_ERROR, body, size, NULL, &zone, &err)
        == HERALD_OK) {
        const char *code = herald_err_code (error.error.code);
        s_why (self, "%s answered STATUS with an error: %s: %.*s",
                  self->endpoint, code ? code : "internal", (int) error.error.message.len,
                  error.error.message.ptr ? error.error.message.ptr : "");
    }
    else
        s_why (self, "%s answered STATUS with an error that does "
                  "not decode", self->endpoint);
    msgpack_zone_destroy (&zone);
}

static void
s_node_fini (s_node_t *self)
{
    herald_cli_conn_destroy (&self->conn);
    free (self->name);
    free (self->node);
    free (self->role);
    free (self->cluster_state);
    free (self->leader);
    free (self->leader_api);
    free (self->digest);
    free (self->durability);
    size_t index;
    for (index = 0; index < self->peer_count; index++) {
        free (self->peers [index].node);
        free (self->peers [index].api);
    }
    free (self->peers);
}

//  ---------------------------------------------------------------------
//  Asking

static void *
s_probe_thread (void *arg)
{
    s_node_t *self = (s_node_t *) arg;
    self->probe_rc = herald_cli_probe (self->endpoint, self->probe_timeout_ms, self->why,
                                       sizeof self->why);
    return NULL;
}

//  Probe nodes [first, count) at once, each on a thread of its own (a
//  thread that cannot start probes inline).
static void
s_probe_all (s_cluster_t *self, size_t first)
{
    pthread_t threads [S_NODES_MAX];
    bool started [S_NODES_MAX] = { false };
    size_t index;
    for (index = first; index < self->count; index++) {
        self->nodes [index].probe_timeout_ms = self->timeout_ms;
        started [index] = pthread_create (&threads [index], NULL, s_probe_thread,
                                          &self->nodes [index]) == 0;
        if (!started [index])
            s_probe_thread (&self->nodes [index]);
    }
    for (index = first; index < self->count; index++)
        if (started [index])
            pthread_join (threads [index], NULL);
}

//  Take the reply waiting on node's DEALER.
static void
s_receive (s_node_t *node)
{
    zmsg_t *msg = zmsg_recv (herald_cli_conn_sock (node->conn));
    zframe_t *command = msg ? zmsg_first (msg) : NULL;
    zframe_t *body = msg ? zmsg_next (msg) : NULL;
    herald_msg_type_t type = command
        ? herald_msg_type_from_command (zframe_data (command), zframe_size (command), true)
        : HERALD_MSG_INVALID;
    if (!body)
        s_why (node, "%s: a malformed reply", node->endpoint);
    else
    if (type == HERALD_MSG_ERROR)
        s_read_error (node, zframe_data (body), zframe_size (body));
    else
    if (type != HERALD_MSG_STATUS_REPLY)
        s_why (node, "%s answered STATUS with %s", node->endpoint,
                  type == HERALD_MSG_INVALID ? "an unknown command" : herald_msg_command (type));
    else
        node->answered = s_read_status (node, zframe_data (body), zframe_size (body));
    node->done = true;
    zmsg_destroy (&msg);
}

//  Ask nodes [first, count): probe them all at once, send STATUS to each
//  that accepts, and wait for the replies under one deadline.
static void
s_ask (s_cluster_t *self, size_t first)
{
    int64_t deadline = zclock_mono () + self->timeout_ms;
    s_probe_all (self, first);
    zpoller_t *poller = zpoller_new (NULL);
    size_t index, waiting = 0;
    for (index = first; index < self->count; index++) {
        s_node_t *node = &self->nodes [index];
        node->done = true;
        if (node->probe_rc)
            continue;               //  why says what the probe found
        int64_t left = deadline - zclock_mono ();
        if (left < 1)
            left = 1;
        if (herald_cli_conn_open_to (node->endpoint, (int) left, node->why, sizeof node->why,
                                     &node->conn))
            continue;
        herald_msg_t request = { .type = HERALD_MSG_STATUS, .has_rid = true };
        request.rid = node->rid = herald_cli_conn_rid (node->conn);
        if (herald_cli_conn_send (node->conn, &request) != 0 || !poller
        ||  zpoller_add (poller, herald_cli_conn_sock (node->conn)) != 0
        ||  zpoller_add (poller, herald_cli_conn_watch_sock (node->conn)) != 0)
            continue;
        node->done = false;
        waiting++;
    }
    while (waiting > 0) {
        int64_t left = deadline - zclock_mono ();
        if (left <= 0)
            break;
        void *which = zpoller_wait (poller, (int) left);
        if (!which) {
            if (zpoller_terminated (poller))
                break;
            continue;
        }
        for (index = first; index < self->count; index++) {
            s_node_t *node = &self->nodes [index];
            if (node->done)
                continue;
            if (which == herald_cli_conn_sock (node->conn))
                s_receive (node);
            else
            if (which == herald_cli_conn_watch_sock (node->conn)
            &&  !herald_cli_conn_check (node->conn)) {
                herald_cli_conn_lost (node->conn);      //  writes why
                node->done = true;
            }
            else
                continue;
            if (node->done) {
                zpoller_remove (poller, herald_cli_conn_sock (node->conn));
                zpoller_remove (poller, herald_cli_conn_watch_sock (node->conn));
                waiting--;
            }
            break;
        }
    }
    for (index = first; index < self->count; index++) {
        s_node_t *node = &self->nodes [index];
        if (!node->done)
            s_why (node, "broker at %s did not answer within %d ms",
                      node->endpoint, self->timeout_ms);
        node->done = true;
        herald_cli_conn_destroy (&node->conn);
    }
    zpoller_destroy (&poller);
}

//  Add endpoint (normalized already) unless it is there.
static void
s_add (s_cluster_t *self, const char *endpoint)
{
    size_t index;
    for (index = 0; index < self->count; index++)
        if (strcmp (self->nodes [index].endpoint, endpoint) == 0)
            return;
    if (self->count == S_NODES_MAX || strlen (endpoint) >= HERALD_CLI_ENDPOINT_MAX)
        self->dropped++;
    else
        snprintf (self->nodes [self->count++].endpoint, HERALD_CLI_ENDPOINT_MAX, "%s",
                  endpoint);
}

//  The members the answers named that were not asked yet.  A member that
//  answered already under another spelling of its endpoint (localhost for
//  127.0.0.1) is known by its name and not asked twice.
static void
s_discover (s_cluster_t *self)
{
    size_t count = self->count, index, peer, other;
    for (index = 0; index < count; index++) {
        const s_node_t *node = &self->nodes [index];
        for (peer = 0; node->answered && peer < node->peer_count; peer++) {
            const s_peer_t *member = &node->peers [peer];
            bool known = false;
            for (other = 0; member->node && other < count && !known; other++)
                known = self->nodes [other].answered
                     && strcmp (self->nodes [other].node, member->node) == 0;
            if (!known)
                s_add (self, member->api);
        }
    }
}

static void
s_name_silent (s_cluster_t *self)
{
    size_t index, other, peer;
    for (index = 0; index < self->count; index++) {
        s_node_t *node = &self->nodes [index];
        for (other = 0; !node->answered && !node->name && other < self->count; other++) {
            const s_node_t *them = &self->nodes [other];
            for (peer = 0; them->answered && peer < them->peer_count; peer++)
                if (them->peers [peer].node && strcmp (them->peers [peer].api, node->endpoint) == 0) {
                    node->name = strdup (them->peers [peer].node);
                    break;
                }
        }
    }
}

//  ---------------------------------------------------------------------
//  Judging

typedef struct {
    const s_node_t *leader;         //  the node leading in the highest term
    size_t leaders;                 //  nodes that say they lead
    size_t answered;
    size_t standalone;
    bool disagree;
    char problems [4][400];
    size_t problem_count;
} s_verdict_t;

static void
s_problem (s_verdict_t *verdict, const char *format, ...)
    __attribute__ ((format (printf, 2, 3)));

static void
s_problem (s_verdict_t *verdict, const char *format, ...)
{
    if (verdict->problem_count == 4)
        return;
    va_list args;
    va_start (args, format);
    vsnprintf (verdict->problems [verdict->problem_count++], sizeof verdict->problems [0],
               format, args);
    va_end (args);
}

static int
s_judge (s_cluster_t *self, s_verdict_t *verdict)
{
    memset (verdict, 0, sizeof *verdict);
    size_t index, other;
    char names [300] = "";
    for (index = 0; index < self->count; index++) {
        s_node_t *node = &self->nodes [index];
        if (!node->answered)
            continue;
        verdict->answered++;
        if (strcmp (node->role, "standalone") == 0)
            verdict->standalone++;
        if (strcmp (node->role, "leader") == 0 || strcmp (node->role, "standalone") == 0) {
            verdict->leaders++;
            size_t used = strlen (names);
            if (node->term.has)
                snprintf (names + used, sizeof names - used, "%s%s (term %" PRIu64 ")",
                          used ? ", " : "", node->node, node->term.value);
            else
                snprintf (names + used, sizeof names - used, "%s%s", used ? ", " : "",
                          node->node);
            if (!verdict->leader
            ||  node->term.value > verdict->leader->term.value)
                verdict->leader = node;
        }
    }
    if (verdict->answered == 0)
        return HERALD_CLI_EXIT_NO_ANSWER;
    for (index = 0; index < self->count; index++) {
        s_node_t *node = &self->nodes [index];
        if (node->answered && verdict->leader && verdict->leader->head >= node->head)
            node->lag = (s_uint_t) { true, verdict->leader->head - node->head };
        else
        if (node->answered && verdict->leader)
            node->lag = (s_uint_t) { true, 0 };     //  ahead of a leader still applying
    }
    //  Two logs at the same head must be the same log
    for (index = 0; index < self->count && !verdict->disagree; index++) {
        const s_node_t *one = &self->nodes [index];
        for (other = index + 1; one->answered && one->digest && other < self->count; other++) {
            const s_node_t *two = &self->nodes [other];
            if (two->answered && two->digest && two->head == one->head
            &&  strcmp (two->digest, one->digest) != 0) {
                verdict->disagree = true;
                s_problem (verdict, "nodes disagree: %s and %s are both at head %" PRIu64
                           " but their logs differ (digest %s against %s); this must never "
                           "happen: stop writing and keep both data directories", one->node,
                           two->node, one->head, one->digest, two->digest);
                break;
            }
        }
    }
    if (verdict->standalone > 0 && verdict->answered > 1)
        s_problem (verdict, "%zu of the %zu brokers that answered are standalone (not "
                   "cluster members): each keeps a log of its own", verdict->standalone,
                   verdict->answered);
    else
    if (verdict->leaders == 0)
        s_problem (verdict, "no leader: none of the %zu nodes that answered leads (an "
                   "election under way, or too few nodes up to elect one)",
                   verdict->answered);
    else
    if (verdict->leaders > 1)
        s_problem (verdict, "%zu nodes say they lead: %s (a leader cut off from the others "
                   "keeps saying so for up to two election timeouts; only the one of the "
                   "highest term can commit)", verdict->leaders, names);
    if (verdict->problem_count == 0)
        return HERALD_CLI_EXIT_OK;
    return HERALD_CLI_EXIT_FAIL;
}

//  ---------------------------------------------------------------------
//  Printing

static void
s_json_str (const char *key, const char *value)
{
    printf (",\"%s\":", key);
    if (value)
        herald_cli_json_string (stdout, value, strlen (value));
    else
        fputs ("null", stdout);
}

static void
s_json_uint (const char *key, s_uint_t value)
{
    if (value.has)
        printf (",\"%s\":%" PRIu64, key, value.value);
    else
        printf (",\"%s\":null", key);
}

static void
s_print_json (const s_cluster_t *self, const s_verdict_t *verdict, int rc)
{
    size_t index;
    printf ("{\"ok\":%s", rc == 0 ? "true" : "false");
    s_json_str ("leader", verdict->leader ? verdict->leader->node : NULL);
    s_json_uint ("term", verdict->leader ? verdict->leader->term : (s_uint_t) { 0 });
    printf (",\"asked\":%zu,\"answered\":%zu,\"agree\":%s,\"problems\":[", self->count,
            verdict->answered, verdict->disagree ? "false" : "true");
    for (index = 0; index < verdict->problem_count; index++) {
        if (index)
            fputc (',', stdout);
        herald_cli_json_string (stdout, verdict->problems [index],
                                strlen (verdict->problems [index]));
    }
    fputs ("],\"nodes\":[", stdout);
    for (index = 0; index < self->count; index++) {
        const s_node_t *node = &self->nodes [index];
        printf ("%s{\"endpoint\":", index ? "," : "");
        herald_cli_json_string (stdout, node->endpoint, strlen (node->endpoint));
        printf (",\"answered\":%s", node->answered ? "true" : "false");
        if (!node->answered) {
            s_json_str ("node", node->name);
            s_json_str ("error", node->why);
            fputc ('}', stdout);
            continue;
        }
        s_json_str ("node", node->node);
        s_json_str ("role", node->role);
        s_json_str ("cluster_state", node->cluster_state);
        s_json_uint ("term", node->term);
        s_json_str ("leader", node->leader);
        s_json_str ("leader_api", node->leader_api);
        s_json_uint ("commit_index", node->commit_index);
        s_json_uint ("applied_index", node->applied_index);
        s_json_uint ("last_index", node->last_index);
        s_json_uint ("head", (s_uint_t) { true, node->head });
        s_json_uint ("lag", node->lag);
        s_json_str ("digest", node->digest);
        s_json_uint ("voters", node->voters);
        s_json_uint ("raft_id", node->raft_id);
        s_json_uint ("apply_us_max", node->apply_us_max);
        s_json_str ("durability", node->durability);
        fputc ('}', stdout);
    }
    fputs ("]}\n", stdout);
}

//  A cell: the text, or "-" when there is none.
static const char *
s_cell_uint (s_uint_t value, char *buffer, size_t size)
{
    if (!value.has)
        return "-";
    snprintf (buffer, size, "%" PRIu64, value.value);
    return buffer;
}

#define S_COLUMNS 10

static void
s_print_table (const s_cluster_t *self, const s_verdict_t *verdict)
{
    static const char *titles [S_COLUMNS] = {
        "NODE", "ROLE", "TERM", "LEADER", "COMMIT", "APPLIED", "HEAD", "LAG", "DIGEST",
        "ENDPOINT"
    };
    //  Numbers right-aligned, text left-aligned
    static const bool right [S_COLUMNS] = {
        false, false, true, false, true, true, true, true, false, false
    };
    char cells [S_NODES_MAX][S_COLUMNS][HERALD_CLI_ENDPOINT_MAX];
    int width [S_COLUMNS];
    size_t index, column;
    for (column = 0; column < S_COLUMNS; column++)
        width [column] = (int) strlen (titles [column]);
    for (index = 0; index < self->count; index++) {
        const s_node_t *node = &self->nodes [index];
        char (*row)[HERALD_CLI_ENDPOINT_MAX] = cells [index];
        size_t size = sizeof row [0];
        for (column = 0; column < S_COLUMNS; column++)
            snprintf (row [column], size, "-");
        snprintf (row [0], size, "%s", node->answered ? node->node
                                       : node->name ? node->name : "?");
        if (node->answered) {
            //  A node not yet a voting member says so instead of follower
            const char *role = node->role;
            if (node->cluster_state && strcmp (node->cluster_state, "member") != 0)
                role = node->cluster_state;
            snprintf (row [1], size, "%s", role);
            char number [32];
            snprintf (row [2], size, "%s", s_cell_uint (node->term, number, sizeof number));
            snprintf (row [3], size, "%s", node->leader ? node->leader : "-");
            snprintf (row [4], size, "%s", s_cell_uint (node->commit_index, number,
                                                        sizeof number));
            snprintf (row [5], size, "%s", s_cell_uint (node->applied_index, number,
                                                        sizeof number));
            snprintf (row [6], size, "%" PRIu64, node->head);
            snprintf (row [7], size, "%s", s_cell_uint (node->lag, number, sizeof number));
            snprintf (row [8], size, "%s", node->digest ? node->digest : "-");
        }
        else
            snprintf (row [1], size, "(no answer)");
        snprintf (row [9], size, "%s", node->endpoint);
        for (column = 0; column < S_COLUMNS; column++)
            if ((int) strlen (row [column]) > width [column])
                width [column] = (int) strlen (row [column]);
    }
    for (column = 0; column + 1 < S_COLUMNS; column++)
        printf ("%*s  ", right [column] ? width [column] : -width [column], titles [column]);
    printf ("%s\n", titles [S_COLUMNS - 1]);
    for (index = 0; index < self->count; index++)
        for (column = 0; column < S_COLUMNS; column++)
            if (column + 1 < S_COLUMNS)
                printf ("%*s  ", right [column] ? width [column] : -width [column],
                        cells [index][column]);
            else
                printf ("%s\n", cells [index][column]);
    //  The summary: what a person checks first
    printf ("%zu of %zu node%s answered", verdict->answered, self->count,
            self->count == 1 ? "" : "s");
    if (verdict->standalone > 0 && verdict->answered > 1)
        printf ("; %zu standalone broker%s, not one cluster", verdict->standalone,
                verdict->standalone == 1 ? "" : "s");
    else
    if (verdict->leader && verdict->leaders == 1 && verdict->standalone == 1)
        printf ("; a standalone broker (not a cluster)");
    else
    if (verdict->leader && verdict->leaders == 1)
        printf ("; leader %s (term %" PRIu64 ")", verdict->leader->node,
                verdict->leader->term.value);
    else
        printf ("; %s", verdict->leaders ? "more than one leader" : "no leader");
    if (verdict->disagree)
        printf ("; LOGS DIFFER\n");
    else
        printf ("; no two nodes at the same head differ\n");
}

//  ---------------------------------------------------------------------

//  Add each endpoint of list (comma-separated) to self, normalized when
//  normalize is set.  False after printing a usage error.
static bool
s_add_list (s_cluster_t *self, const char *list, bool normalize)
{
    while (true) {
        size_t length = strcspn (list, ",");
        char item [HERALD_CLI_ENDPOINT_MAX], normal [HERALD_CLI_ENDPOINT_MAX];
        if (length == 0 || length >= sizeof item) {
            herald_cli_fail (HERALD_CLI_EXIT_USAGE, "--endpoint: %s in the list (give "
                             "E1,E2,...)", length ? "an endpoint too long" : "an empty item");
            return false;
        }
        memcpy (item, list, length);
        item [length] = 0;
        if (normalize && !herald_cli_endpoint ("--endpoint", item, normal, sizeof normal))
            return false;
        s_add (self, normalize ? normal : item);
        if (list [length] == 0)
            return true;
        list += length + 1;
    }
}

static int
s_status (herald_cli_opts_t *opts, int argc, char **argv)
{
    int index = 1;
    bool bad = false;
    const char *list = NULL;
    while (index < argc && !bad) {
        if (strcmp (argv [index], "--help") == 0) {
            fputs (s_cluster_usage, stdout);
            return HERALD_CLI_EXIT_OK;
        }
        //  --endpoint after the command: a list, each item normalized here
        //  (before the command it is the common option's)
        const char *value = NULL;
        if (herald_cli_opt (argc, argv, &index, "--endpoint", &value, &bad))
            list = value;
        else
        if (!herald_cli_common_opt (opts, argc, argv, &index, &bad))
            return herald_cli_fail (HERALD_CLI_EXIT_USAGE, "cluster status: unexpected '%s' "
                                    "(see herald cluster --help)", argv [index]);
    }
    if (bad)
        return HERALD_CLI_EXIT_USAGE;
    s_cluster_t *self = calloc (1, sizeof *self);
    if (!self)
        return herald_cli_fail (HERALD_CLI_EXIT_FAIL, "out of memory");
    self->timeout_ms = opts->timeout_ms;
    //  opts->endpoint is normalized already: one endpoint, or a list
    if (!s_add_list (self, list ? list : opts->endpoint, list != NULL)) {
        free (self);
        return HERALD_CLI_EXIT_USAGE;
    }
    s_ask (self, 0);
    size_t asked = self->count;
    s_discover (self);
    if (self->count > asked)
        s_ask (self, asked);
    s_name_silent (self);

    s_verdict_t verdict;
    int rc = s_judge (self, &verdict);
    if (rc != HERALD_CLI_EXIT_NO_ANSWER) {
        if (opts->format == HERALD_CLI_JSON && opts->format_set)
            s_print_json (self, &verdict, rc);
        else
            s_print_table (self, &verdict);
    }
    fflush (stdout);
    //  stderr: who did not answer, then what is wrong
    for (index = 0; index < (int) self->count; index++) {
        const s_node_t *node = &self->nodes [index];
        if (!node->answered)
            fprintf (stderr, "herald: %s%s%s\n", node->name ? node->name : "",
                     node->name ? ": " : "", node->why);
    }
    if (self->dropped)
        fprintf (stderr, "herald: %zu more members were named and not asked (at most %d "
                 "endpoints)\n", self->dropped, S_NODES_MAX);
    if (rc == HERALD_CLI_EXIT_NO_ANSWER)
        herald_cli_fail (rc, "no node answered (%zu asked)", self->count);
    for (index = 0; index < (int) verdict.problem_count; index++)
        herald_cli_fail (rc, "%s", verdict.problems [index]);
    for (index = 0; index < (int) self->count; index++)
        s_node_fini (&self->nodes [index]);
    free (self);
    return rc;
}

int
herald_cli_cluster (herald_cli_opts_t *opts, int argc, char **argv)
{
    if (argc < 2 || strcmp (argv [1], "--help") == 0) {
        fputs (s_cluster_usage, argc < 2 ? stderr : stdout);
        herald_cli_members_usage (argc < 2 ? stderr : stdout);     //  herald_cli_members.c
        return argc < 2 ? HERALD_CLI_EXIT_USAGE : HERALD_CLI_EXIT_OK;
    }
    if (strcmp (argv [1], "status") == 0)
        return s_status (opts, argc - 1, argv + 1);
    if (strcmp (argv [1], "add") == 0 || strcmp (argv [1], "remove") == 0
    ||  strcmp (argv [1], "transfer") == 0)
        return herald_cli_members (opts, argc - 1, argv + 1);      //  herald_cli_members.c
    return herald_cli_fail (HERALD_CLI_EXIT_USAGE, "cluster: unknown subcommand '%s' (see "
                            "herald cluster --help)", argv [1]);
}
