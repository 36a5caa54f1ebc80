/*  =========================================================================
    herald_member - one group subscription's member of a consumer group

    See herald_member.h for what the thread does.  This file: the nodes,
    the loop and the API; herald_member_group.c heartbeats, commits and
    batches; herald_member_fetch.c reads the events; herald_member_wire.c
    encodes and decodes GROUP.

    The thread is one loop over its DEALER (HELLO, GROUP, REPLAY), its SUB
    (the doorbell) and an eventfd (herald_member_done, destroy), with
    timers: the heartbeat, the patience with a silent node, the idle
    commit.  One commit is in flight at a time and nothing is handed over
    while one is: a batch is declared (commit, reply), then pushed to the
    delivery thread, then waited for; a revoke's release commit goes out
    only between batches.  So what the broker records is always what this
    member could have handed over, and a partition leaves only after its
    position is durable.

    Nodes: the agent's api endpoints, then the cluster a WELCOME names.
    An ERROR not_leader with a leader moves there at once; one without,
    or a node that answers nothing within PATIENCE_MS, moves to the next
    node after a short backoff (as herald_io_node.c does for the I/O
    actor, with a simpler set: this thread only heartbeats and reads).
    =========================================================================
*/

#include <inttypes.h>
#include <ctype.h>
#include <sys/eventfd.h>
#include <unistd.h>
#include "herald_member_priv.h"

#define PATIENCE_MS     1000            //  a request unanswered: the node is silent
#define MEMBER_NAME_MAX 128             //  a member name's bytes (docs/protocol.md)
#define MOVE_DELAY_MS   100             //  before moving to the next node

//  Rate-limited warnings (herald_say: the log callback or stderr): one a second at most.
static _Thread_local int64_t s_log_last;
#define s_log(...) herald_agent_log_limited (&s_log_last, __VA_ARGS__)

void
herald_member_fail (herald_member_t *self, int code, const char *format, ...)
{
    if (self->failed)
        return;
    char message [HERALD_ERROR_MESSAGE_MAX];
    va_list args;
    va_start (args, format);
    vsnprintf (message, sizeof message, format, args);
    va_end (args);
    self->failed = true;
    atomic_store (&self->lease_until, 0);
    atomic_store (&self->hold, true);
    herald_agent_sub_fail (self->agent, self->sub, code, message, false);
}

int
herald_member_send (herald_member_t *self, const char *command)
{
    if (!self->dealer)
        return -1;
    void *sock = zsock_resolve (self->dealer);
    if (zmq_send (sock, command, strlen (command), ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0
    ||  zmq_send (sock, self->buffer.data, self->buffer.size, ZMQ_DONTWAIT) < 0)
        return -1;
    return 0;
}

//  ---------------------------------------------------------------------
//  Nodes

static void
s_add_node (herald_member_t *self, const char *api, size_t len, const char *fanout)
{
    if (len == 0 || len >= HERALD_AGENT_ENDPOINT_MAX || self->node_count == HERALD_AGENT_NODES_MAX)
        return;
    for (size_t index = 0; index < self->node_count; index++)
        if (strlen (self->nodes [index]) == len && memcmp (self->nodes [index], api, len) == 0)
            return;
    memcpy (self->nodes [self->node_count], api, len);
    self->nodes [self->node_count][len] = 0;
    snprintf (self->fanouts [self->node_count], HERALD_AGENT_ENDPOINT_MAX, "%s",
              fanout? fanout: "");
    self->node_count++;
}

static size_t
s_find_node (herald_member_t *self, const char *api, size_t len)
{
    for (size_t index = 0; index < self->node_count; index++)
        if (strlen (self->nodes [index]) == len && memcmp (self->nodes [index], api, len) == 0)
            return index;
    return SIZE_MAX;
}

//  A node names its bind address (0.0.0.0 or *): reach it by the host of
//  the api endpoint connected to (as herald_io_node.c does).
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

static void
s_close (herald_member_t *self)
{
    if (self->monitor)
        zmq_socket_monitor (zsock_resolve (self->dealer), NULL, 0);
    zsock_destroy (&self->monitor);
    zsock_destroy (&self->dealer);
    zsock_destroy (&self->sub_sock);
    self->welcomed = false;
    self->hb_epoch_known = false;
    self->fetch_rid = 0;
    self->fetch_ended = false;
    self->hb_waiting_since = 0;
    self->hello_rid = 0;
}

static void
s_hello (herald_member_t *self)
{
    herald_msg_t msg;
    memset (&msg, 0, sizeof msg);
    msg.type = HERALD_MSG_HELLO;
    msg.has_rid = true;
    msg.rid = self->next_rid++;
    msg.hello.proto = HERALD_PROTO_VERSION;
    msg.hello.client = (herald_str_t) { self->agent->service, strlen (self->agent->service) };
    self->buffer.size = 0;
    self->hello_at = herald_agent_now_ms ();
    if (herald_msg_encode (&msg, &self->buffer) == 0 && herald_member_send (self, "HELLO") == 0)
        self->hello_rid = msg.rid;
}

static int
s_open (herald_member_t *self, size_t index)
{
    s_close (self);
    herald_agent_t *agent = self->agent;
    self->node = index;
    self->dealer = zsock_new (ZMQ_DEALER);
    self->sub_sock = zsock_new (ZMQ_SUB);
    if (!self->dealer || !self->sub_sock) {
        s_close (self);
        return -1;
    }
    zsock_set_linger (self->dealer, 0);
    zsock_set_sndhwm (self->dealer, 10000);
    zsock_set_rcvhwm (self->dealer, 100000);
    zsock_set_reconnect_ivl (self->dealer, 100);
    zsock_set_reconnect_ivl_max (self->dealer, 1000);
    zsock_set_linger (self->sub_sock, 0);
    zsock_set_rcvhwm (self->sub_sock, 1000);     //  a doorbell: losing some is harmless
    zsock_set_reconnect_ivl (self->sub_sock, 100);
    zsock_set_reconnect_ivl_max (self->sub_sock, 1000);
    zsock_set_rcvtimeo (self->dealer, 0);
    zsock_set_rcvtimeo (self->sub_sock, 0);
    zsock_set_subscribe (self->sub_sock, "$hb");
    if (self->prefix_count == 0)
        zsock_set_subscribe (self->sub_sock, "");
    for (size_t at = 0; at < self->prefix_count; at++)
        zsock_set_subscribe (self->sub_sock, self->prefixes [at]);
    if (agent->curve) {
        herald_curve_apply (agent->curve, self->dealer);
        herald_curve_apply (agent->curve, self->sub_sock);
    }
    //  A connection that drops takes the broker's state of it along (a
    //  REPLAY in progress never ENDs; a restarted broker does not know
    //  the stream): the monitor says so, and the member starts afresh
    char endpoint [96];
    snprintf (endpoint, sizeof endpoint, "inproc://herald-member-mon-%p-%" PRIu64, (void *) self,
              ++self->monitor_serial);
    if (zmq_socket_monitor (zsock_resolve (self->dealer), endpoint, ZMQ_EVENT_DISCONNECTED) == 0) {
        self->monitor = zsock_new (ZMQ_PAIR);
        if (self->monitor && zsock_connect (self->monitor, "%s", endpoint) != 0)
            zsock_destroy (&self->monitor);
    }
    if (!self->monitor) {
        zmq_socket_monitor (zsock_resolve (self->dealer), NULL, 0);
        s_close (self);
        return -1;
    }
    zsock_set_rcvtimeo (self->monitor, 0);
    if (zsock_connect (self->dealer, "%s", self->nodes [index]) != 0) {
        s_close (self);
        return -1;
    }
    s_hello (self);
    return 0;
}

static void
s_move (herald_member_t *self, size_t index, int delay_ms)
{
    //  A leader named beats a rotation already decided
    if (self->move_at && delay_ms >= MOVE_DELAY_MS)
        return;
    self->move_to = index;
    self->move_at = herald_agent_now_ms () + delay_ms;
}

static void
s_rotate (herald_member_t *self, const char *why)
{
    if (self->node_count < 2)
        return;
    size_t next = (self->node + 1) % self->node_count;
    s_log ("group %s: %s (%s): moving to %s", self->group, self->nodes [self->node], why,
           self->nodes [next]);
    //  Rotations that do not lead to an answered heartbeat back off
    int delay = self->rotate_backoff_ms > MOVE_DELAY_MS? self->rotate_backoff_ms: MOVE_DELAY_MS;
    s_move (self, next, delay);
    self->rotate_backoff_ms = delay * 2 > 1000? 1000: delay * 2;
}

static void
s_on_welcome (herald_member_t *self, const herald_msg_t *reply)
{
    herald_agent_t *agent = self->agent;
    const char *api = self->nodes [self->node];
    char current [HERALD_AGENT_ENDPOINT_MAX];
    snprintf (current, sizeof current, "%s", api);
    if (reply->welcome.cluster_count > 1)
        for (size_t index = 0; index < reply->welcome.cluster_count; index++) {
            char named [HERALD_AGENT_ENDPOINT_MAX];
            s_reachable (reply->welcome.cluster [index].ptr, reply->welcome.cluster [index].len,
                         current, named, sizeof named);
            s_add_node (self, named, strlen (named), NULL);
        }
    char fanout [HERALD_AGENT_ENDPOINT_MAX] = "";
    if (agent->curve && !reply->welcome.fanout.len) {
        herald_member_fail (self, HERALD_ERR_UNAUTHORIZED, "group %s: this key may not read "
                            "(the broker names no fanout for it)", self->group);
        return;
    }
    if (*self->fanouts [self->node] && !agent->curve)
        snprintf (fanout, sizeof fanout, "%s", self->fanouts [self->node]);
    else
    if (reply->welcome.fanout.len)
        s_reachable (reply->welcome.fanout.ptr, reply->welcome.fanout.len, current, fanout,
                     sizeof fanout);
    if (!*fanout || zsock_connect (self->sub_sock, "%s", fanout) != 0) {
        herald_member_fail (self, HERALD_ERR_UNAVAILABLE, "group %s: no fanout to connect to "
                            "at %s", self->group, current);
        return;
    }
    self->welcomed = true;
    self->hello_rid = 0;
    self->hb_due = 0;
    if (self->commit_rid)
        herald_member_commit_send (self);           //  the one the last node did not answer
    herald_member_fetch_restart (self);
}

static void
s_on_error (herald_member_t *self, const herald_msg_t *reply, bool group)
{
    if (reply->error.code == HERALD_ERR_NOT_LEADER) {
        if (reply->error.leader.ptr && reply->error.leader.len) {
            char leader [HERALD_AGENT_ENDPOINT_MAX];
            s_reachable (reply->error.leader.ptr, reply->error.leader.len,
                         self->nodes [self->node], leader, sizeof leader);
            s_add_node (self, leader, strlen (leader), NULL);
            size_t index = s_find_node (self, leader, strlen (leader));
            if (index != SIZE_MAX && index != self->node) {
                //  At once; but nodes naming each other while leadership
                //  changes back off (50 ms, doubling to 1 s) until a
                //  heartbeat is answered
                s_move (self, index, self->redirect_backoff_ms);
                self->redirect_backoff_ms = self->redirect_backoff_ms?
                    (self->redirect_backoff_ms * 2 > 1000? 1000: self->redirect_backoff_ms * 2): 50;
                return;
            }
        }
        s_rotate (self, "not_leader, no leader named");
        return;
    }
    if (reply->error.code == HERALD_ERR_OVERLOADED || reply->error.code == HERALD_ERR_INTERNAL) {
        s_log ("group %s: %s: %.*s", self->group, herald_err_code (reply->error.code),
               (int) reply->error.message.len, reply->error.message.ptr);
        return;                         //  asked again by the timers
    }
    herald_member_fail (self, reply->error.code, "group %s: the broker refused %s: %s: %.*s",
                        self->group, group? "GROUP": "HELLO", herald_err_code (reply->error.code),
                        (int) reply->error.message.len, reply->error.message.ptr);
}

static void
s_on_dealer (herald_member_t *self)
{
    for (int count = 0; count < 100; count++) {
        zmsg_t *msg = zmsg_recv (self->dealer);
        if (!msg)
            return;
        zframe_t *command = zmsg_first (msg);
        zframe_t *body = zmsg_next (msg);
        if (!body) {
            zmsg_destroy (&msg);
            continue;
        }
        if (zframe_streq (command, "GROUP")) {
            herald_member_reply_t reply;
            char why [256];
            if (herald_member_decode_reply (&reply, zframe_data (body), zframe_size (body),
                                            why, sizeof why) != 0)
                herald_member_fail (self, HERALD_ERR_INTERNAL, "group %s: a bad reply from the "
                                    "broker: %s", self->group, why);
            else {
                if (reply.op == HERALD_MEMBER_OP_HEARTBEAT)
                    herald_member_on_heartbeat (self, &reply);
                else
                if (reply.op == HERALD_MEMBER_OP_COMMIT)
                    herald_member_on_commit (self, &reply);
                else
                if (reply.rid == self->leave_rid)
                    self->left = true;
                herald_member_reply_fini (&reply);
            }
            zmsg_destroy (&msg);
            continue;
        }
        herald_msg_type_t type = herald_msg_type_from_command (zframe_data (command),
                                                               zframe_size (command), true);
        herald_msg_t reply;
        herald_error_t err;
        msgpack_zone_clear (&self->zone);
        if (type == HERALD_MSG_INVALID
        ||  herald_msg_decode (&reply, type, zframe_data (body), zframe_size (body), NULL,
                               &self->zone, &err) != HERALD_OK) {
            zmsg_destroy (&msg);
            continue;
        }
        if (self->fetch_rid && reply.has_rid && reply.rid == self->fetch_rid
        &&  (type == HERALD_MSG_EVENTS || type == HERALD_MSG_END || type == HERALD_MSG_ERROR))
            herald_member_fetch_reply (self, &reply, msg);
        else
        if (type == HERALD_MSG_WELCOME && !self->welcomed)
            s_on_welcome (self, &reply);
        else
        if (type == HERALD_MSG_ERROR) {
            //  A GROUP request's (or HELLO's); a cancelled stream's is not ours
            bool mine = !reply.has_rid || reply.rid == self->hello_rid
                     || reply.rid == self->commit_rid || reply.rid == self->leave_rid;
            for (size_t slot = 0; slot < MEMBER_HB_RING; slot++)
                mine |= reply.has_rid && reply.rid == self->hb_rids [slot];
            if (mine)
                s_on_error (self, &reply, reply.rid != self->hello_rid);
        }
        zmsg_destroy (&msg);
    }
}

static void
s_on_sub (herald_member_t *self)
{
    for (int count = 0; count < 1000; count++) {
        zmsg_t *msg = zmsg_recv (self->sub_sock);
        if (!msg)
            return;
        zframe_t *topic = zmsg_first (msg);
        herald_member_fetch_doorbell (self, topic, zmsg_next (msg));
        zmsg_destroy (&msg);
    }
}

//  ---------------------------------------------------------------------
//  The loop

static void
s_tick (herald_member_t *self, int64_t now, bool stopping)
{
    if (self->reopen && !self->move_at) {
        //  The same node again, with fresh sockets (a WELCOME, the fetch
        //  restarted, the commit in flight sent again)
        self->reopen = false;
        s_move (self, self->node, 0);
    }
    if (self->move_at && now >= self->move_at) {
        self->move_at = 0;
        if (s_open (self, self->move_to) != 0)
            s_log ("group %s: cannot connect to %s", self->group, self->nodes [self->move_to]);
    }
    if (!self->dealer) {
        if (!self->move_at)
            s_move (self, (self->node + 1) % self->node_count, MOVE_DELAY_MS);
        return;
    }
    if (self->failed)
        return;
    if (!self->welcomed) {
        if (now - self->hello_at > PATIENCE_MS) {
            if (self->node_count > 1)
                s_rotate (self, "no WELCOME to HELLO");
            else
                s_hello (self);
        }
        return;
    }
    if (self->batch_state == BATCH_HANDED && atomic_load (&self->done_posted))
        herald_member_batch_done (self);
    if (!stopping && now >= self->hb_due)
        herald_member_heartbeat (self, now);
    //  A silent node: the heartbeat's or the commit's answer is overdue
    int64_t patience = PATIENCE_MS + (int64_t) self->heartbeat_ms;
    if ((self->hb_waiting_since && now - self->hb_waiting_since > patience)
    ||  (self->commit_rid && now - self->commit_sent > patience)) {
        if (self->node_count > 1)
            s_rotate (self, "no answer to GROUP");
        else {
            self->hb_waiting_since = 0;
            if (self->commit_rid)
                herald_member_commit_send (self);
        }
    }
    if (self->batch_state == BATCH_NONE && !self->commit_rid && herald_member_revoking (self))
        herald_member_commit (self, COMMIT_RELEASE);
    if (self->batch_state == BATCH_NONE && !self->commit_rid && !stopping
    &&  !atomic_load (&self->hold) && self->event_count && herald_member_lease_valid (self)
    &&  !self->push_refused)
        herald_member_batch_build (self);
    herald_member_floor (self);
    if (self->batch_state == BATCH_NONE && !self->commit_rid && now >= self->idle_commit_at
    &&  herald_member_uncommitted (self)) {
        herald_member_commit (self, COMMIT_IDLE);
        self->idle_commit_at = now + (int64_t) (self->heartbeat_ms? self->heartbeat_ms: 500);
    }
    if (!stopping)
        herald_member_fetch_tick (self, now);
    herald_member_status_update (self);
}

static void
s_wait (herald_member_t *self, int timeout_ms)
{
    zmq_pollitem_t items [4] = {
        { NULL, self->wake_fd, ZMQ_POLLIN, 0 },
        { self->dealer? zsock_resolve (self->dealer): NULL, 0, ZMQ_POLLIN, 0 },
        { self->sub_sock? zsock_resolve (self->sub_sock): NULL, 0, ZMQ_POLLIN, 0 },
        { self->monitor? zsock_resolve (self->monitor): NULL, 0, ZMQ_POLLIN, 0 } };
    int count = self->dealer? 4: 1;
    if (zmq_poll (items, count, timeout_ms) <= 0)
        return;
    if (count == 4 && (items [3].revents & ZMQ_POLLIN)) {
        zmsg_t *event = zmsg_recv (self->monitor);
        if (event) {
            s_log ("group %s: %s closed the connection", self->group, self->nodes [self->node]);
            self->reopen = true;
        }
        zmsg_destroy (&event);
    }
    if (items [0].revents & ZMQ_POLLIN) {
        uint64_t value;
        if (read (self->wake_fd, &value, sizeof value) < 0)
            value = 0;
    }
    if (count == 4 && (items [1].revents & ZMQ_POLLIN))
        s_on_dealer (self);
    if (count == 4 && (items [2].revents & ZMQ_POLLIN))
        s_on_sub (self);
}

//  Destroy: the batch in hand finished, what is done committed with
//  delivered = committed, then leave; all within the agent's timeout_ms.
static void
s_finish (herald_member_t *self)
{
    int64_t deadline = herald_agent_now_ms () + self->agent->options.timeout_ms;
    //  The batch in hand, and a declare in flight (its batch is not handed)
    while (herald_agent_now_ms () < deadline
       &&  (self->batch_state != BATCH_NONE || self->commit_rid) && !self->failed) {
        s_wait (self, 20);
        s_tick (self, herald_agent_now_ms (), true);
    }
    if (self->batch_state == BATCH_HANDED && atomic_load (&self->done_posted))
        herald_member_batch_done (self);
    //  A member that failed (a bad reply, a refusal) still says what it did
    //  and leaves, when it was in the group: its partitions go on at once
    if (!self->welcomed || !self->joined)
        return;
    herald_member_floor (self);
    if (!self->commit_rid) {
        bool held = false;
        for (uint32_t p = 0; p < self->partitions; p++)
            held |= self->parts [p].held;
        if (held)
            herald_member_commit (self, COMMIT_IDLE);
    }
    while (herald_agent_now_ms () < deadline && self->commit_rid && self->welcomed)
        s_wait (self, 20);
    self->leave_rid = self->next_rid++;
    self->buffer.size = 0;
    if (herald_member_encode_leave (&self->buffer, self->leave_rid, self->group,
                                    self->member) != 0
    ||  herald_member_send (self, "GROUP") != 0)
        return;
    while (herald_agent_now_ms () < deadline && !self->left && self->welcomed)
        s_wait (self, 20);
}

static void *
s_thread (void *arg)
{
    herald_member_t *self = (herald_member_t *) arg;
    if (s_open (self, 0) != 0)
        s_log ("group %s: cannot connect to %s", self->group, self->nodes [0]);
    while (!atomic_load (&self->stop)) {
        s_wait (self, 50);
        s_tick (self, herald_agent_now_ms (), false);
    }
    atomic_store (&self->lease_until, 0);
    s_finish (self);
    s_close (self);
    return NULL;
}

//  ---------------------------------------------------------------------
//  The API

static void
s_name (herald_member_t *self)
{
    char host [256] = "host";
    if (gethostname (host, sizeof host) != 0)
        snprintf (host, sizeof host, "host");
    host [sizeof host - 1] = 0;
    uint32_t random = 0;
    FILE *file = fopen ("/dev/urandom", "rb");
    if (!file || fread (&random, sizeof random, 1, file) != 1)
        random = (uint32_t) (herald_agent_now_ms () * 2654435761u) ^ (uint32_t) getpid ();
    if (file)
        fclose (file);
    char name [512];
    snprintf (name, sizeof name, "%s-%s-%d-%08x", self->agent->service, host, (int) getpid (),
              random);
    for (char *c = name; *c; c++)
        if (!(isalnum ((unsigned char) *c) || *c == '.' || *c == '_' || *c == '-'))
            *c = '_';
    if (name [0] == '.')
        name [0] = '_';
    //  Cut to 128, keeping the random tail that makes it unique
    size_t len = strlen (name);
    if (len > MEMBER_NAME_MAX)
        memmove (name + MEMBER_NAME_MAX - 20, name + len - 20, 21);
    snprintf (self->member, sizeof self->member, "%s", name);
}

static void
s_free (herald_member_t *self)
{
    s_close (self);
    for (size_t index = 0; index < self->event_count; index++)
        zframe_destroy (&self->events [index].frame);
    for (size_t index = 0; index < self->prefix_count; index++)
        free (self->prefixes [index]);
    free (self->prefixes);
    free (self->events);
    free (self->parts);
    free (self->commit_pos);
    free (self->group);
    msgpack_sbuffer_destroy (&self->buffer);
    msgpack_zone_destroy (&self->zone);
    if (self->wake_fd >= 0)
        close (self->wake_fd);
    pthread_mutex_destroy (&self->lock);
    free (self);
}

herald_member_t *
herald_member_new (herald_agent_t *agent, herald_agent_sub_t *sub, const char *group,
                   const herald_group_options_t *options, uint64_t from_seq)
{
    herald_member_t *self = calloc (1, sizeof *self);
    if (!self) {
        herald_agent_set_error (HERALD_ERR_NOMEM, "out of memory");
        return NULL;
    }
    self->agent = agent;
    self->sub = sub;
    self->wake_fd = -1;
    pthread_mutex_init (&self->lock, NULL);
    msgpack_sbuffer_init (&self->buffer);
    msgpack_zone_init (&self->zone, 4096);
    self->group = strdup (group);
    size_t count = 0;
    while (options->prefixes && options->prefixes [count])
        count++;
    self->prefixes = calloc (count + 1, sizeof (char *));
    self->parts = calloc (MEMBER_PARTITIONS, sizeof *self->parts);
    self->events = calloc (MEMBER_WINDOW, sizeof *self->events);
    self->commit_pos = calloc (MEMBER_PARTITIONS, sizeof *self->commit_pos);
    self->wake_fd = eventfd (0, EFD_NONBLOCK | EFD_CLOEXEC);
    bool ok = self->group && self->prefixes && self->parts && self->events && self->commit_pos
           && self->wake_fd >= 0;
    for (size_t index = 0; ok && index < count; index++) {
        self->prefixes [index] = strdup (options->prefixes [index]);
        ok = self->prefixes [index] != NULL;
        self->prefix_count += ok;
    }
    if (!ok) {
        s_free (self);
        herald_agent_set_error (HERALD_ERR_NOMEM, "cannot start group %s's member: out of "
                                "memory or file descriptors", group);
        return NULL;
    }
    self->opt_partitions = options->partitions;
    self->opt_session_ms = options->session_ms > 0? (uint64_t) options->session_ms: 0;
    self->from_seq = from_seq? from_seq: 1;
    self->batch_max = options->batch_max? options->batch_max: 100;
    if (self->batch_max > HERALD_BATCH_MAX)
        self->batch_max = HERALD_BATCH_MAX;
    self->partitions = options->partitions? options->partitions: 32;
    self->next_rid = 1;
    for (size_t index = 0; index < agent->endpoint_count; index++)
        s_add_node (self, agent->endpoints [index], strlen (agent->endpoints [index]),
                    agent->fanouts? agent->fanouts [index]: NULL);
    s_name (self);
    snprintf (self->status.member, sizeof self->status.member, "%s", self->member);
    if (self->node_count == 0 || pthread_create (&self->thread, NULL, s_thread, self) != 0) {
        s_free (self);
        herald_agent_set_error (HERALD_ERR_IO, "cannot start group %s's member thread", group);
        return NULL;
    }
    self->started = true;
    return self;
}

static void
s_wake (herald_member_t *self)
{
    uint64_t one = 1;
    if (write (self->wake_fd, &one, sizeof one) < 0)
        return;                         //  full: it is awake already
}

void
herald_member_destroy (herald_member_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    herald_member_t *self = *self_p;
    *self_p = NULL;
    atomic_store (&self->stop, true);
    s_wake (self);
    if (self->started)
        pthread_join (self->thread, NULL);
    s_free (self);
}

bool
herald_member_admit (herald_member_t *self)
{
    //  The lease read before the hold: the member thread stores a revoke's
    //  hold before the lease its reply renews, so a renewed lease seen
    //  here comes with that hold
    bool lease = herald_agent_now_ms () < atomic_load (&self->lease_until);
    return lease && !atomic_load (&self->hold) && !atomic_load (&self->stop);
}

void
herald_member_done (herald_member_t *self, size_t handled)
{
    atomic_store (&self->handled, handled);
    atomic_store (&self->done_posted, true);
    s_wake (self);
}

void
herald_member_status (herald_member_t *self, herald_group_status_t *status)
{
    pthread_mutex_lock (&self->lock);
    *status = self->status;
    pthread_mutex_unlock (&self->lock);
    status->joined = herald_agent_now_ms () < atomic_load (&self->lease_until);
}
