/*  =========================================================================
    herald_io_node - which node the I/O actor talks to

    DESIGN

    The `api` option may list several endpoints: a cluster's nodes.  The
    agent talks to ONE node at a time, for everything: its DEALER
    (PUBLISH, REPLAY, HELLO) and its SUB (the live stream and `$hb`) are
    both connected to that node only.  One SUB connected to several PUBs
    would interleave copies of the stream and make every seq jump look
    like a loss; a REPLAY on one node and the live stream of another would
    compare positions of two logs that may lag each other.

    Which node: the first endpoint given, then wherever the cluster sends
    the agent.  A WELCOME's `cluster` (every member's api endpoint)
    refreshes the known set (the endpoints given stay in it too, after the
    members: a member that names itself by an address the agent cannot
    reach does not strand it).  The agent moves:
      - at once to the leader an ERROR not_leader names (publishes go to
        the leader; a follower answers not_leader);
      - to the next known node when not_leader names none (an election),
        when the node refuses or closes the connection, when no WELCOME
        answers a HELLO within NODE_PATIENCE_MS, when its live stream is
        silent for 3 heartbeat intervals, or when its WELCOME says a lineage
        lower than another node said (it lags behind an accepted loss).
    Moves back off while they do not lead to an acknowledged publish: a
    rotation waits 50 ms, each further one twice as long, at most 1 s; a
    redirect is immediate, whatever rotations came before (a node that
    names the leader says the election is over), and only redirects that
    follow each other without an acknowledged publish back off the same way
    (nodes naming each other while leadership changes).  With a single known node nothing moves:
    ZeroMQ reconnects to it, as for a standalone broker.

    A move closes both sockets and opens new ones (a closed socket drops
    whatever the old node had queued for it: nothing of the old stream can
    be read as the new one's).  Every PUBLISH in flight goes back to the
    outbox and is sent again to the new node in outbox order with the SAME
    ids: the broker's durable dedup answers an event already stored with
    its original seq (`dup`), the same success for the caller, who hears
    of each event once.  Every subscription is told (herald_io_sub_moved):
    its replay is gone, its live position unknown, and it holds live
    events until the new node's WELCOME; then it replays from examined + 1,
    so the handler sees no gap, duplicate or reorder.

    A node whose head is lower than what another node showed is lagging,
    not lossy: heads and epochs are remembered per node (`$hb` names its
    sender), and "events were lost by the broker" is said only when the
    same node comes back in a new epoch with a lower head.  A subscription
    never passes an event twice whatever the heads (it forwards only seqs
    above what it forwarded).
    =========================================================================
*/

#include <inttypes.h>
#include "herald_io.h"

#define NODE_PATIENCE_MS    1000        //  connected, and no WELCOME
#define MOVE_BACKOFF_MIN_MS 50
#define MOVE_BACKOFF_MAX_MS 1000

//  Rate-limited like herald_io.c's: at most one line a second.
static _Thread_local int64_t s_log_last;
#define s_log(...) herald_agent_log_limited (&s_log_last, __VA_ARGS__)

//  ---------------------------------------------------------------------
//  Sockets

static zsock_t *
s_monitor (zsock_t *sock, const char *name, herald_io_t *io, int events)
{
    char endpoint [128];
    snprintf (endpoint, sizeof endpoint, "inproc://herald-mon-%s-%" PRIu64 "-%" PRIu64, name,
              io->agent->serial, io->generation);
    if (zmq_socket_monitor (zsock_resolve (sock), endpoint, events) != 0)
        return NULL;
    zsock_t *monitor = zsock_new (ZMQ_PAIR);
    if (monitor && zsock_connect (monitor, "%s", endpoint) != 0)
        zsock_destroy (&monitor);
    return monitor;
}

static void
s_sockets_destroy (zsock_t **dealer, zsock_t **sub, zsock_t **mon_dealer, zsock_t **mon_sub)
{
    if (*mon_dealer)
        zmq_socket_monitor (zsock_resolve (*dealer), NULL, 0);
    if (*mon_sub)
        zmq_socket_monitor (zsock_resolve (*sub), NULL, 0);
    zsock_destroy (mon_dealer);
    zsock_destroy (mon_sub);
    zsock_destroy (dealer);
    zsock_destroy (sub);
}

//  New sockets to node `index`, replacing the current ones only when all
//  of them are up.  -1 with why (the current ones kept).
static int
s_open (herald_io_t *io, size_t index, char *why, size_t size)
{
    herald_agent_t *agent = io->agent;
    const char *api = io->nodes [index].api;
    io->generation++;
    zsock_t *dealer = zsock_new (ZMQ_DEALER);
    zsock_t *sub = zsock_new (ZMQ_SUB);
    zsock_t *mon_dealer = NULL, *mon_sub = NULL;
    if (!dealer || !sub) {
        snprintf (why, size, "cannot create its sockets: %s", zmq_strerror (zmq_errno ()));
        s_sockets_destroy (&dealer, &sub, &mon_dealer, &mon_sub);
        return -1;
    }
    zsock_set_linger (dealer, 0);
    zsock_set_immediate (dealer, 1);
    zsock_set_sndhwm (dealer, 10000);
    zsock_set_rcvhwm (dealer, 100000);
    zsock_set_reconnect_ivl (dealer, 100);
    zsock_set_reconnect_ivl_max (dealer, 1000);
    zsock_set_rcvtimeo (dealer, 0);
    zsock_set_linger (sub, 0);
    zsock_set_rcvhwm (sub, agent->options.sub_rcvhwm);
    zsock_set_reconnect_ivl (sub, 100);
    zsock_set_reconnect_ivl_max (sub, 1000);
    zsock_set_rcvtimeo (sub, 0);
    zsock_set_subscribe (sub, "");
    //  CURVE: our keys and the broker's, before connecting; the monitors
    //  also watch the handshakes (a refused key is ours to retry:
    //  herald_io_auth.c)
    int auth_events = 0;
    if (agent->curve) {
        herald_curve_apply (agent->curve, dealer);
        herald_curve_apply (agent->curve, sub);
        auth_events = ZMQ_EVENT_HANDSHAKE_SUCCEEDED | ZMQ_EVENT_HANDSHAKE_FAILED_AUTH
                    | ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL;
    }
    //  A refused connect (CONNECT_RETRIED) is a node that is not there
    mon_dealer = s_monitor (dealer, "api", io, ZMQ_EVENT_CONNECTED | ZMQ_EVENT_DISCONNECTED
                                             | ZMQ_EVENT_CONNECT_RETRIED | auth_events);
    mon_sub = mon_dealer? s_monitor (sub, "fanout", io, ZMQ_EVENT_CONNECTED
                                                       | ZMQ_EVENT_DISCONNECTED
                                                       | auth_events): NULL;
    if (!mon_dealer || !mon_sub) {
        snprintf (why, size, "cannot monitor its sockets: %s", zmq_strerror (zmq_errno ()));
        s_sockets_destroy (&dealer, &sub, &mon_dealer, &mon_sub);
        return -1;
    }
    if (zsock_connect (dealer, "%s", api) != 0) {
        snprintf (why, size, "cannot connect to api %s: %s", api, zmq_strerror (zmq_errno ()));
        s_sockets_destroy (&dealer, &sub, &mon_dealer, &mon_sub);
        return -1;
    }
    s_sockets_destroy (&io->dealer, &io->sub, &io->mon_dealer, &io->mon_sub);
    io->dealer = dealer;
    io->sub = sub;
    io->mon_dealer = mon_dealer;
    io->mon_sub = mon_sub;
    io->node = index;
    io->node_since = herald_agent_now_ms ();
    io->dealer_up = false;
    io->fanout_connected = false;
    io->live_next = 0;
    io->last_hb = 0;
    io->node_name [0] = 0;
    io->auth_dealer.retry_at = io->auth_sub.retry_at = 0;
    io->auth_dealer.no_detail = 0;
    io->fanout_none = false;
    pthread_mutex_lock (&agent->lock);
    snprintf (agent->node_api, sizeof agent->node_api, "%s", api);
    agent->node_name [0] = 0;
    pthread_mutex_unlock (&agent->lock);
    //  With CURVE the fanout is the one WELCOME names for this key (its
    //  scope's, the main one, or none): the SUB waits for it
    if (!agent->curve && herald_io_node_connect_fanout (io) != 0) {
        snprintf (why, size, "cannot connect to fanout %s: %s", io->nodes [index].fanout,
                  zmq_strerror (zmq_errno ()));
        return -1;
    }
    return 0;
}

const char *
herald_io_node_fanout (herald_io_t *io)
{
    const char *fanout = io->nodes [io->node].fanout;
    return *fanout? fanout: NULL;
}

int
herald_io_node_connect_fanout (herald_io_t *io)
{
    const char *fanout = herald_io_node_fanout (io);
    if (!fanout || io->fanout_connected)
        return 0;
    if (zsock_connect (io->sub, "%s", fanout) != 0)
        return -1;
    io->fanout_connected = true;
    return 0;
}

//  ---------------------------------------------------------------------
//  The known nodes

static size_t
s_find (herald_io_t *io, const char *api, size_t len)
{
    for (size_t index = 0; index < io->node_count; index++)
        if (strlen (io->nodes [index].api) == len && memcmp (io->nodes [index].api, api, len) == 0)
            return index;
    return SIZE_MAX;
}

static size_t
s_add (herald_io_t *io, const char *api, size_t len, bool seed)
{
    size_t index = s_find (io, api, len);
    if (index != SIZE_MAX || io->node_count == HERALD_AGENT_NODES_MAX
    ||  len == 0 || len >= HERALD_AGENT_ENDPOINT_MAX)
        return index;
    herald_io_node_t *node = &io->nodes [io->node_count];
    memset (node, 0, sizeof *node);
    memcpy (node->api, api, len);
    node->seed = seed;
    atomic_store (&io->agent->nodes_known, io->node_count + 1);
    return io->node_count++;
}

int
herald_io_node_start (herald_io_t *io, char *why, size_t size)
{
    herald_agent_t *agent = io->agent;
    for (size_t index = 0; index < agent->endpoint_count; index++) {
        const char *api = agent->endpoints [index];
        size_t at = s_add (io, api, strlen (api), true);
        if (at != SIZE_MAX && agent->fanouts && !io->nodes [at].fanout_given) {
            snprintf (io->nodes [at].fanout, sizeof io->nodes [at].fanout, "%s",
                      agent->fanouts [index]);
            io->nodes [at].fanout_given = true;
        }
    }
    if (io->node_count == 0) {
        snprintf (why, size, "no api endpoint");
        return -1;
    }
    io->welcome_wait = herald_agent_now_ms ();
    return s_open (io, 0, why, size);
}

void
herald_io_node_stop (herald_io_t *io)
{
    s_sockets_destroy (&io->dealer, &io->sub, &io->mon_dealer, &io->mon_sub);
}

//  An endpoint a node names for itself may be its bind address ("*" or
//  0.0.0.0, every interface): reach it by the host of the api endpoint the
//  agent connected to.  Into out.
static void
s_reachable (const char *named, size_t len, const char *api, char *out, size_t size)
{
    snprintf (out, size, "%.*s", (int) len, named);
    char *host = strstr (out, "://");
    const char *api_host = strstr (api, "://");
    if (host && api_host && (strncmp (host + 3, "0.0.0.0:", 8) == 0 || strncmp (host + 3, "*:", 2) == 0)) {
        char port [16];
        snprintf (port, sizeof port, "%s", strrchr (host + 3, ':'));
        const char *api_port = strrchr (api_host + 3, ':');
        snprintf (out, size, "%.*s%s", (int) (api_port? api_port - api: (long) strlen (api)),
                  api, port);
    }
}

//  Forget node index (it cannot be connected to).
static void
s_forget (herald_io_t *io, size_t index)
{
    if (io->node_count < 2 || index == io->node)
        return;
    memmove (&io->nodes [index], &io->nodes [index + 1],
             (io->node_count - index - 1) * sizeof io->nodes [0]);
    io->node_count--;
    if (io->node > index)
        io->node--;
    atomic_store (&io->agent->nodes_known, io->node_count);
}

//  The cluster's members from a WELCOME, then the endpoints given that are
//  not among them; the current node stays known (its index may change).
//  A list of one is the node itself (a standalone broker names its own
//  api, maybe its bind address): nothing to learn.
static void
s_refresh (herald_io_t *io, const herald_str_t *cluster, size_t count)
{
    if (count < 2)
        return;
    herald_io_node_t *old = malloc (sizeof io->nodes);
    if (!old)
        return;                     //  keep the known set as it is
    size_t old_count = io->node_count;
    memcpy (old, io->nodes, sizeof io->nodes);
    herald_io_node_t current = old [io->node];
    io->node_count = 0;
    for (size_t index = 0; index < count; index++) {
        char api [HERALD_AGENT_ENDPOINT_MAX];
        s_reachable (cluster [index].ptr, cluster [index].len, current.api, api, sizeof api);
        s_add (io, api, strlen (api), false);
    }
    for (size_t index = 0; index < old_count; index++)
        if (old [index].seed || index == io->node)
            s_add (io, old [index].api, strlen (old [index].api), old [index].seed);
    //  What was known of each (a fanout given or learned) stays
    for (size_t index = 0; index < io->node_count; index++)
        for (size_t was = 0; was < old_count; was++)
            if (streq (io->nodes [index].api, old [was].api)) {
                bool seed = io->nodes [index].seed || old [was].seed;
                io->nodes [index] = old [was];
                io->nodes [index].seed = seed;
            }
    io->node = s_find (io, current.api, strlen (current.api));
    if (io->node == SIZE_MAX) {                 //  the set was full: it takes the last place
        io->node = io->node_count - 1;
        io->nodes [io->node] = current;
    }
    atomic_store (&io->agent->nodes_known, io->node_count);
    free (old);
}

//  ---------------------------------------------------------------------
//  Moving

//  Decide to move to node `index` after delay_ms.  Publishing and replays
//  stop now (what is in flight goes back to the outbox); the sockets are
//  replaced when the move is due (herald_io_node_tick).
static void
s_move (herald_io_t *io, size_t index, int delay_ms, bool redirect)
{
    int64_t at = herald_agent_now_ms () + delay_ms;
    //  A leader named beats a rotation already decided; otherwise the
    //  first decision stands
    if (io->moving && !(redirect && !io->move_redirect))
        return;
    io->moving = true;
    io->move_to = index;
    io->move_at = at;
    io->move_redirect = redirect;
    herald_io_flights_requeue (io);
    herald_io_unwelcome (io);
}

//  The delay of a move by *backoff_ms, which doubles for the next one (from
//  least, at most MOVE_BACKOFF_MAX_MS).
static int
s_backoff (int *backoff_ms, int least)
{
    int delay = *backoff_ms > least? *backoff_ms: least;
    *backoff_ms = delay? delay * 2: MOVE_BACKOFF_MIN_MS;
    if (*backoff_ms > MOVE_BACKOFF_MAX_MS)
        *backoff_ms = MOVE_BACKOFF_MAX_MS;
    return delay > MOVE_BACKOFF_MAX_MS? MOVE_BACKOFF_MAX_MS: delay;
}

bool
herald_io_node_rotate (herald_io_t *io, const char *why)
{
    if (io->node_count < 2 || io->moving)
        return io->moving;
    size_t next = (io->node + 1) % io->node_count;
    s_log ("%s (%s): moving to %s", io->nodes [io->node].api, why, io->nodes [next].api);
    s_move (io, next, s_backoff (&io->move_backoff_ms, MOVE_BACKOFF_MIN_MS), false);
    return true;
}

bool
herald_io_node_redirect (herald_io_t *io, const char *leader, size_t len)
{
    size_t index = s_add (io, leader, len, false);
    if (index == SIZE_MAX || (index == io->node && !io->moving))
        return false;
    if (io->moving && io->move_redirect)
        return true;                //  already going to a leader
    //  At once, however many rotations came before (an election is over
    //  when a node names the leader); only redirects that keep failing
    //  (nodes naming each other during a change) back off
    s_move (io, index, s_backoff (&io->redirect_backoff_ms, 0), true);
    return true;
}

void
herald_io_node_acked (herald_io_t *io)
{
    io->move_backoff_ms = 0;
    io->redirect_backoff_ms = 0;
}

void
herald_io_node_tick (herald_io_t *io, int64_t now)
{
    herald_agent_t *agent = io->agent;
    if (io->moving && now >= io->move_at) {
        char why [300];
        if (s_open (io, io->move_to, why, sizeof why) != 0) {
            //  Not an endpoint libzmq takes (a WELCOME's, or out of
            //  sockets): forget it, stay, and let the timers decide again
            s_log ("cannot move to %s: %s", io->nodes [io->move_to].api, why);
            if (!io->nodes [io->move_to].seed)
                s_forget (io, io->move_to);
            io->moving = false;
            io->welcome_wait = now;
            herald_io_unwelcome (io);
            return;
        }
        io->moving = false;
        io->welcome_wait = now;
        atomic_fetch_add_explicit (&agent->failovers, 1, memory_order_relaxed);
        if (io->move_redirect)
            atomic_fetch_add_explicit (&agent->leader_redirects, 1, memory_order_relaxed);
        herald_io_flights_requeue (io);
        herald_io_unwelcome (io);
        for (size_t index = 0; index < io->sub_count; index++)
            herald_io_sub_moved (io, io->subs [index]);
        return;
    }
    if (io->moving || io->node_count < 2)
        return;
    if (!io->welcomed && now - io->welcome_wait > NODE_PATIENCE_MS)
        herald_io_node_rotate (io, io->dealer_up? "no WELCOME to HELLO": "no connection");
    else
    if (io->welcomed) {
        int64_t heard = io->last_hb > io->welcomed_at? io->last_hb: io->welcomed_at;
        if (now - heard > 3 * (int64_t) agent->options.heartbeat_ms)
            herald_io_node_rotate (io, "no $hb for 3 heartbeat intervals");
    }
}

int64_t
herald_io_node_due (herald_io_t *io)
{
    if (io->moving)
        return io->move_at;
    if (io->node_count < 2)
        return INT64_MAX;
    if (!io->welcomed)
        return io->welcome_wait + NODE_PATIENCE_MS + 1;
    int64_t heard = io->last_hb > io->welcomed_at? io->last_hb: io->welcomed_at;
    return heard + 3 * (int64_t) io->agent->options.heartbeat_ms + 1;
}

//  ---------------------------------------------------------------------
//  What nodes say

bool
herald_io_node_welcome (herald_io_t *io, const herald_msg_t *reply)
{
    herald_agent_t *agent = io->agent;
    const herald_str_t *node = &reply->welcome.node;
    //  A lower lineage than another node said: that node has not yet
    //  applied an accepted loss (it lags); its seqs after the loss may be
    //  the lost events.  Read elsewhere.  The same node going lower is a
    //  store restored from a backup: herald_io_sub_lineage's business.
    bool same = strlen (io->lineage_node) == node->len
             && memcmp (io->lineage_node, node->ptr, node->len) == 0;
    if (io->have_lineage && reply->welcome.lineage < io->lineage && !same
    &&  io->node_count > 1) {
        s_log ("node %.*s is at lineage %" PRIu64 ", behind %" PRIu64 " (node %s): it lags",
               (int) node->len, node->ptr, reply->welcome.lineage, io->lineage,
               io->lineage_node);
        herald_io_node_rotate (io, "lags behind the lineage");
        return false;
    }
    snprintf (io->node_name, sizeof io->node_name, "%.*s", (int) node->len,
              node->ptr? node->ptr: "");
    snprintf (io->lineage_node, sizeof io->lineage_node, "%s", io->node_name);
    pthread_mutex_lock (&agent->lock);
    snprintf (agent->node_name, sizeof agent->node_name, "%s", io->node_name);
    pthread_mutex_unlock (&agent->lock);
    s_refresh (io, reply->welcome.cluster, reply->welcome.cluster_count);
    herald_io_node_t *current = &io->nodes [io->node];
    //  With CURVE, WELCOME's fanout wins over one given: it is the one
    //  this key may use (its scope's endpoint).  Nil: a publish-only key,
    //  no SUB at all (it would be refused)
    if (agent->curve && !reply->welcome.fanout.len) {
        if (io->fanout_connected)
            zsock_disconnect (io->sub, "%s", current->fanout);
        io->fanout_connected = false;
        io->fanout_none = true;
        current->fanout [0] = 0;
        return true;
    }
    io->fanout_none = false;
    if ((current->fanout_given && !agent->curve) || !reply->welcome.fanout.len)
        return true;
    //  A node bound to every interface names 0.0.0.0 or *: use the api's host
    char endpoint [HERALD_AGENT_ENDPOINT_MAX];
    s_reachable (reply->welcome.fanout.ptr, reply->welcome.fanout.len, current->api, endpoint,
                 sizeof endpoint);
    if (io->fanout_connected && !streq (endpoint, current->fanout)) {
        //  The node moved its fanout: the SUB follows, the position is unknown
        zsock_disconnect (io->sub, "%s", current->fanout);
        io->fanout_connected = false;
        io->live_next = 0;
    }
    snprintf (current->fanout, sizeof current->fanout, "%s", endpoint);
    if (herald_io_node_connect_fanout (io) != 0)
        s_log ("cannot connect to fanout %s", endpoint);
    return true;
}

bool
herald_io_node_heartbeat (herald_io_t *io, herald_str_t node, uint64_t epoch, uint64_t head)
{
    herald_io_peer_t *peer = NULL;
    for (size_t index = 0; index < io->peer_count && !peer; index++)
        if (strlen (io->peers [index].name) == node.len
        &&  memcmp (io->peers [index].name, node.ptr, node.len) == 0)
            peer = &io->peers [index];
    if (!peer) {
        //  The oldest entry makes room (a cluster has a handful of nodes)
        if (io->peer_count == HERALD_IO_PEERS_MAX) {
            memmove (&io->peers [0], &io->peers [1], (HERALD_IO_PEERS_MAX - 1) * sizeof *peer);
            io->peer_count--;
        }
        peer = &io->peers [io->peer_count++];
        snprintf (peer->name, sizeof peer->name, "%.*s", (int) node.len,
                  node.ptr? node.ptr: "");
        peer->epoch = epoch;
        peer->head = head;
        return true;
    }
    bool lost = epoch != peer->epoch && head < peer->head;
    if (lost)
        s_log ("node %s epoch %" PRIu64 " has head %" PRIu64 ", below what it showed (%"
               PRIu64 "): events were lost by the broker", peer->name, epoch, head, peer->head);
    peer->epoch = epoch;
    peer->head = head;
    return !lost;
}
