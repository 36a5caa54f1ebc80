/*  =========================================================================
    herald_member - one group subscription's member of a consumer group

    See herald_member.h for what the thread does; herald_member_fetch.c
    reads the events, herald_member_wire.c encodes and decodes GROUP.

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

static void
s_log (const char *format, ...) __attribute__ ((format (printf, 1, 2)));

static void
s_log (const char *format, ...)
{
    static _Thread_local int64_t last;
    int64_t now = herald_agent_now_ms ();
    if (now - last < 1000)
        return;
    last = now;
    va_list args;
    va_start (args, format);
    fprintf (stderr, "herald agent: ");
    vfprintf (stderr, format, args);
    fprintf (stderr, "\n");
    va_end (args);
}

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

static void
s_status_update (herald_member_t *self)
{
    unsigned owned = 0;
    uint64_t lowest = UINT64_MAX;
    for (uint32_t p = 0; p < self->partitions; p++)
        if (self->parts [p].held) {
            owned++;
            uint64_t c = self->parts [p].committed;
            if (c < lowest)
                lowest = c;
        }
    pthread_mutex_lock (&self->lock);
    self->status.partitions = self->partitions;
    self->status.owned = owned;
    self->status.committed = owned? lowest: 0;
    self->status.lag = owned && self->head > lowest? self->head - lowest: 0;
    pthread_mutex_unlock (&self->lock);
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
    zsock_destroy (&self->dealer);
    zsock_destroy (&self->sub_sock);
    self->welcomed = false;
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
    if (self->move_at)
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
    s_move (self, next, MOVE_DELAY_MS);
}

//  ---------------------------------------------------------------------
//  Requests

static void
s_heartbeat (herald_member_t *self, int64_t now)
{
    herald_member_pos_t owned [MEMBER_PARTITIONS];
    size_t count = 0;
    for (uint32_t p = 0; p < self->partitions; p++)
        if (self->parts [p].held)
            owned [count++] = (herald_member_pos_t) { p, self->parts [p].epoch, 0, 0 };
    uint64_t rid = self->next_rid++;
    self->buffer.size = 0;
    //  What makes the group goes with the join only
    bool join = !self->joined;
    if (herald_member_encode_heartbeat (&self->buffer, rid, self->group, self->member,
                                        self->prefixes, self->prefix_count, owned, count,
                                        join? self->opt_partitions: 0,
                                        join? self->opt_session_ms: 0,
                                        join? self->from_seq: 0) != 0
    ||  herald_member_send (self, "GROUP") != 0) {
        self->hb_due = now + 10;
        return;
    }
    self->hb_rids [self->hb_next_slot] = rid;
    self->hb_sent [self->hb_next_slot] = now;
    self->hb_next_slot = (self->hb_next_slot + 1) % MEMBER_HB_RING;
    if (!self->hb_waiting_since)
        self->hb_waiting_since = now;
    self->hb_due = now + (int64_t) (self->heartbeat_ms? self->heartbeat_ms: 500);
}

//  Send the commit in self->commit_pos (again, after a move).
static void
s_commit_send (herald_member_t *self)
{
    self->commit_rid = self->next_rid++;
    self->commit_sent = herald_agent_now_ms ();
    self->buffer.size = 0;
    if (herald_member_encode_commit (&self->buffer, self->commit_rid, self->group, self->member,
                                     self->commit_pos, self->commit_count) != 0
    ||  herald_member_send (self, "GROUP") != 0)
        self->commit_sent = 0;          //  sent again by the patience timer
}

//  Commit every held partition: committed = what is done (never below
//  what it was granted with), delivered = `declared` or committed.
static void
s_commit (herald_member_t *self, member_commit_kind_t kind, uint64_t declared)
{
    self->commit_count = 0;
    for (uint32_t p = 0; p < self->partitions; p++) {
        member_part_t *part = &self->parts [p];
        if (!part->held)
            continue;
        uint64_t committed = part->done > part->committed? part->done: part->committed;
        uint64_t delivered = kind == COMMIT_DECLARE && !part->revoked && declared > committed?
                             declared: committed;
        self->commit_pos [self->commit_count++] = (herald_member_pos_t) {
            p, part->epoch, committed, delivered };
        part->committed_sent = committed;
    }
    self->commit_kind = kind;
    s_commit_send (self);
}

//  Partition p is no longer this member's: forget it and its events.
static void
s_let_go (herald_member_t *self, uint32_t p)
{
    member_part_t *part = &self->parts [p];
    part->held = false;
    part->revoked = false;
    size_t keep = self->batch_state == BATCH_HANDED? self->batch_count: 0;
    herald_member_fetch_drop (self, p, keep);
}

//  ---------------------------------------------------------------------
//  Batches

//  Events handled: done advances for every partition covered when the
//  batch was built (the stream read them all up to `to`).
static void
s_advance (herald_member_t *self, uint64_t to, uint64_t serial)
{
    for (uint32_t p = 0; p < self->partitions; p++) {
        member_part_t *part = &self->parts [p];
        if (part->held && !part->revoked && part->since < serial && to > part->done)
            part->done = to;
    }
}

static void
s_batch_build (herald_member_t *self)
{
    size_t count = self->event_count < self->batch_max? self->event_count: self->batch_max;
    self->batch_count = count;
    self->batch_serial++;
    self->batch_last = self->events [count - 1].seq;
    self->batch_state = BATCH_DECLARING;
    s_commit (self, COMMIT_DECLARE, self->batch_last);
}

static bool
s_lease_valid (herald_member_t *self)
{
    return herald_agent_now_ms () < atomic_load (&self->lease_until);
}

//  The declare was answered: hand the batch over.
static void
s_batch_hand (herald_member_t *self)
{
    if (self->batch_count == 0 || !s_lease_valid (self) || atomic_load (&self->hold)
    ||  atomic_load (&self->stop) || self->failed) {
        self->batch_state = BATCH_NONE;
        return;
    }
    herald_batch_t *batch = calloc (1, sizeof *batch);
    if (!batch) {
        self->batch_state = BATCH_NONE;
        return;
    }
    batch->kind = HERALD_BATCH_EVENTS;
    batch->sub = self->sub;
    for (size_t index = 0; index < self->batch_count; index++) {
        member_event_t *event = &self->events [index];
        batch->frames [index] = zframe_dup (event->frame);
        if (!batch->frames [index]) {
            herald_batch_destroy (&batch);
            self->batch_state = BATCH_NONE;
            return;
        }
        batch->redelivered [index] = event->seq <= self->parts [event->partition].redeliver_to;
        batch->count++;
    }
    atomic_store (&self->done_posted, false);
    self->batch_state = BATCH_HANDED;
    int timeout = (int) (self->heartbeat_ms? self->heartbeat_ms: 500);
    herald_err rc = herald_agent_group_push (self->agent, batch, timeout);
    if (rc != HERALD_OK)
        self->batch_state = BATCH_NONE;     //  freed; built again in a moment
}

//  herald_member_done came: handled events are done.
static void
s_batch_done (herald_member_t *self)
{
    size_t handled = atomic_load (&self->handled);
    if (handled > self->batch_count)
        handled = self->batch_count;
    if (handled) {
        uint64_t redelivered = 0;
        for (size_t index = 0; index < handled; index++) {
            member_event_t *event = &self->events [index];
            member_part_t *part = &self->parts [event->partition];
            if (event->seq <= part->redeliver_to)
                redelivered++;
            if (event->seq > part->done)
                part->done = event->seq;
        }
        uint64_t to = handled == self->batch_count? self->batch_last
                                                  : self->events [handled - 1].seq;
        s_advance (self, to, self->batch_serial);
        herald_member_fetch_consume (self, handled);
        pthread_mutex_lock (&self->lock);
        self->status.redelivered += redelivered;
        pthread_mutex_unlock (&self->lock);
    }
    self->batch_state = BATCH_NONE;
    self->batch_count = 0;
}

//  ---------------------------------------------------------------------
//  Replies

static void
s_on_heartbeat (herald_member_t *self, herald_member_reply_t *reply)
{
    int64_t sent = 0;
    for (size_t slot = 0; slot < MEMBER_HB_RING; slot++)
        if (self->hb_rids [slot] == reply->rid)
            sent = self->hb_sent [slot];
    if (!sent || reply->rid <= self->hb_last_answered)
        return;                         //  an older one than already heard
    self->hb_last_answered = reply->rid;
    self->hb_waiting_since = 0;
    if (self->joined && reply->partitions != self->partitions) {
        herald_member_fail (self, HERALD_ERR_BAD_REQUEST, "group %s: the broker says %u "
                            "partitions, it said %u", self->group, reply->partitions,
                            self->partitions);
        return;
    }
    self->joined = true;
    self->partitions = reply->partitions;
    self->session_ms = reply->session_ms;
    self->heartbeat_ms = reply->heartbeat_ms;
    if (reply->head > self->head)
        self->head = reply->head;
    atomic_store (&self->lease_until, sent + (int64_t) (2 * reply->session_ms / 3));
    bool listed [MEMBER_PARTITIONS] = { false };
    bool granted = false, changed = false;
    for (size_t index = 0; index < reply->assigned_count; index++) {
        herald_member_pos_t *pos = &reply->assigned [index];
        member_part_t *part = &self->parts [pos->partition];
        listed [pos->partition] = true;
        if (part->held && part->epoch == pos->epoch) {
            if (pos->committed > part->committed)
                part->committed = pos->committed;
            continue;
        }
        if (part->held) {
            //  Held under another epoch: it was someone else's since.  Let
            //  it go the ordinary way; it comes back in a later reply
            if (!part->revoked)
                changed = true;
            part->revoked = true;
            continue;
        }
        *part = (member_part_t) {
            .held = true, .epoch = pos->epoch, .committed = pos->committed,
            .committed_sent = pos->committed, .redeliver_to = pos->delivered,
            .done = pos->committed, .taken = pos->committed, .since = self->batch_serial };
        granted = changed = true;
    }
    for (uint32_t p = 0; p < self->partitions; p++)
        if (self->parts [p].held && !listed [p] && !self->parts [p].revoked) {
            self->parts [p].revoked = true;
            changed = true;
        }
    bool revoking = false;
    for (uint32_t p = 0; p < self->partitions; p++)
        revoking |= self->parts [p].held && self->parts [p].revoked;
    if (revoking)
        atomic_store (&self->hold, true);
    pthread_mutex_lock (&self->lock);
    self->status.generation = reply->generation;
    self->status.rebalances += changed;
    pthread_mutex_unlock (&self->lock);
    if (granted)
        herald_member_fetch_restart (self);
    s_status_update (self);
}

static void
s_on_commit (herald_member_t *self, herald_member_reply_t *reply)
{
    if (reply->rid != self->commit_rid)
        return;
    self->commit_rid = 0;
    size_t fenced = 0;
    for (size_t index = 0; index < reply->fenced_count; index++) {
        uint32_t p = reply->fenced [index];
        if (p < self->partitions && self->parts [p].held) {
            s_let_go (self, p);
            fenced++;
        }
    }
    //  What was sent is now the broker's
    for (size_t index = 0; index < self->commit_count; index++) {
        member_part_t *part = &self->parts [self->commit_pos [index].partition];
        if (part->held && part->epoch == self->commit_pos [index].epoch
        &&  self->commit_pos [index].committed > part->committed)
            part->committed = self->commit_pos [index].committed;
    }
    if (self->commit_kind == COMMIT_DECLARE && self->batch_state == BATCH_DECLARING) {
        //  A fenced partition's events of the batch are not handed over
        if (fenced) {
            size_t to = 0;
            for (size_t index = 0; index < self->event_count; index++) {
                member_event_t *event = &self->events [index];
                if (self->parts [event->partition].held)
                    self->events [to++] = *event;
                else {
                    zframe_destroy (&event->frame);
                    if (index < self->batch_count)
                        self->batch_count--;
                }
            }
            self->event_count = to;
        }
        s_batch_hand (self);
    }
    if (self->commit_kind == COMMIT_RELEASE) {
        for (uint32_t p = 0; p < self->partitions; p++)
            if (self->parts [p].held && self->parts [p].revoked)
                s_let_go (self, p);
        atomic_store (&self->hold, false);
        self->hb_due = 0;               //  say so at once
    }
    pthread_mutex_lock (&self->lock);
    self->status.commits++;
    self->status.fenced += fenced;
    pthread_mutex_unlock (&self->lock);
    if (fenced)
        self->hb_due = 0;
    s_status_update (self);
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
        s_commit_send (self);           //  the one the last node did not answer
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
                atomic_fetch_add_explicit (&self->agent->leader_redirects, 1,
                                           memory_order_relaxed);
                s_move (self, index, 0);
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
                    s_on_heartbeat (self, &reply);
                else
                if (reply.op == HERALD_MEMBER_OP_COMMIT)
                    s_on_commit (self, &reply);
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
        if (type == HERALD_MSG_WELCOME && reply.rid == self->hello_rid)
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

//  Nothing kept is left unhandled up to the first buffered event (or, with
//  none, what the fetch examined): every partition's done is at least that.
static void
s_floor (herald_member_t *self)
{
    if (self->batch_state != BATCH_NONE || !self->fetch_rid)
        return;
    uint64_t floor = self->event_count? self->events [0].seq - 1: self->read_to;
    for (uint32_t p = 0; p < self->partitions; p++) {
        member_part_t *part = &self->parts [p];
        if (part->held && !part->revoked && floor > part->done)
            part->done = floor;
    }
}

static bool
s_revoking (herald_member_t *self)
{
    for (uint32_t p = 0; p < self->partitions; p++)
        if (self->parts [p].held && self->parts [p].revoked)
            return true;
    return false;
}

//  Something done that the broker has not recorded.
static bool
s_uncommitted (herald_member_t *self)
{
    for (uint32_t p = 0; p < self->partitions; p++) {
        member_part_t *part = &self->parts [p];
        uint64_t committed = part->done > part->committed? part->done: part->committed;
        if (part->held && committed > part->committed_sent)
            return true;
    }
    return false;
}

static void
s_tick (herald_member_t *self, int64_t now, bool stopping)
{
    if (self->move_at && now >= self->move_at) {
        self->move_at = 0;
        atomic_fetch_add_explicit (&self->agent->failovers, 1, memory_order_relaxed);
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
        s_batch_done (self);
    if (!stopping && now >= self->hb_due)
        s_heartbeat (self, now);
    //  A silent node: the heartbeat's or the commit's answer is overdue
    int64_t patience = PATIENCE_MS + (int64_t) self->heartbeat_ms;
    if ((self->hb_waiting_since && now - self->hb_waiting_since > patience)
    ||  (self->commit_rid && now - self->commit_sent > patience)) {
        if (self->node_count > 1)
            s_rotate (self, "no answer to GROUP");
        else {
            self->hb_waiting_since = 0;
            if (self->commit_rid)
                s_commit_send (self);
        }
    }
    if (self->batch_state == BATCH_NONE && !self->commit_rid && s_revoking (self))
        s_commit (self, COMMIT_RELEASE, 0);
    if (self->batch_state == BATCH_NONE && !self->commit_rid && !stopping
    &&  !atomic_load (&self->hold) && self->event_count && s_lease_valid (self))
        s_batch_build (self);
    s_floor (self);
    if (self->batch_state == BATCH_NONE && !self->commit_rid && now >= self->idle_commit_at
    &&  s_uncommitted (self)) {
        s_commit (self, COMMIT_IDLE, 0);
        self->idle_commit_at = now + (int64_t) (self->heartbeat_ms? self->heartbeat_ms: 500);
    }
    if (!stopping)
        herald_member_fetch_tick (self, now);
    s_status_update (self);
}

static void
s_wait (herald_member_t *self, int timeout_ms)
{
    zmq_pollitem_t items [3] = {
        { self->dealer? zsock_resolve (self->dealer): NULL, 0, ZMQ_POLLIN, 0 },
        { self->sub_sock? zsock_resolve (self->sub_sock): NULL, 0, ZMQ_POLLIN, 0 },
        { NULL, self->wake_fd, ZMQ_POLLIN, 0 } };
    size_t first = self->dealer? 0: 2;
    if (zmq_poll (items + first, 3 - (int) first, timeout_ms) <= 0)
        return;
    if (items [2].revents & ZMQ_POLLIN) {
        uint64_t value;
        if (read (self->wake_fd, &value, sizeof value) < 0)
            value = 0;
    }
    if (self->dealer && (items [0].revents & ZMQ_POLLIN))
        s_on_dealer (self);
    if (self->sub_sock && (items [1].revents & ZMQ_POLLIN))
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
        s_batch_done (self);
    if (!self->welcomed || !self->joined || self->failed)
        return;
    s_floor (self);
    if (!self->commit_rid) {
        bool held = false;
        for (uint32_t p = 0; p < self->partitions; p++)
            held |= self->parts [p].held;
        if (held)
            s_commit (self, COMMIT_IDLE, 0);
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
    return !atomic_load (&self->stop) && !atomic_load (&self->hold)
        && herald_agent_now_ms () < atomic_load (&self->lease_until);
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
