/*  =========================================================================
    herald_agent_stream - read, replay and start resolution, on the caller's thread

    herald_agent_read and herald_agent_replay run a READ or REPLAY on a
    DEALER of their own, opened for the call and closed after it (with
    CURVE, taken from a pool of up to 4 warm ones and given back when its
    stream ended, each with its own rids: a handshake per call would cost
    the broker ~0.8 ms of CPU and a ZAP round trip), and call
    the handler on the calling thread: a rehydration or a temporal query
    never waits behind the agent's subscriptions, and a slow handler slows
    only its own stream (credit is granted as events are handled, 1000 at
    a time).  Subscribe uses the same path to find where START_NOW (the
    STATUS head) and START_TS (the first event at or after the time)
    begin.
    =========================================================================
*/

#include <inttypes.h>
#include "herald_agent_priv.h"
#include "herald_msg.h"

#define CREDIT      1000

void
herald_agent_view (herald_delivery_t *view, const void *event_p, const void *envelope,
                   size_t envelope_len)
{
    const herald_event_t *event = (const herald_event_t *) event_p;
    memset (view, 0, sizeof *view);
    view->id = event->id;
    view->topic = event->topic;
    view->topic_len = event->topic_len;
    view->seq = event->seq;
    view->ver = event->ver;
    view->ts = event->ts;
    view->type = event->type;
    view->type_len = event->type_len;
    view->schema = event->has_schema? event->schema: 1;
    view->meta = (const herald_meta_t *) event->meta;
    view->meta_count = event->meta_count;
    view->data = event->data;
    view->data_len = event->data_len;
    view->envelope = envelope;
    view->envelope_len = envelope_len;
    view->attempt = 1;
}

typedef struct {
    herald_agent_t *agent;
    herald_agent_conn_t *conn;              //  its socket: pooled (CURVE) or its own
    zsock_t *sock;
    msgpack_sbuffer buffer;
    msgpack_zone zone;
    int timeout_ms;
    bool reusable;                          //  its last request was answered to the end
} s_conn_t;

static void
s_pooled_destroy (herald_agent_conn_t **conn_p)
{
    if (*conn_p) {
        zsock_destroy (&(*conn_p)->sock);
        free (*conn_p);
        *conn_p = NULL;
    }
}

void
herald_agent_pool_destroy (herald_agent_t *self)
{
    while (self->pool_count)
        s_pooled_destroy (&self->pool [--self->pool_count]);
}

//  A warm connection to api with the current broker key, or NULL.  Those
//  to another node, or made with a broker key the agent has moved from,
//  are closed: they would only hold places in the pool.
static herald_agent_conn_t *
s_pool_take (herald_agent_t *agent, const char *api)
{
    herald_agent_conn_t *conn = NULL;
    size_t server = herald_curve_server_index (agent->curve);
    pthread_mutex_lock (&agent->pool_lock);
    for (size_t index = agent->pool_count; index > 0 && !conn; index--) {
        herald_agent_conn_t *candidate = agent->pool [index - 1];
        bool current = streq (candidate->api, api) && candidate->server_index == server;
        agent->pool [index - 1] = agent->pool [--agent->pool_count];
        if (current)
            conn = candidate;
        else
            s_pooled_destroy (&candidate);
    }
    pthread_mutex_unlock (&agent->pool_lock);
    return conn;
}

static herald_err
s_conn_open (s_conn_t *self, herald_agent_t *agent, int timeout_ms)
{
    memset (self, 0, sizeof *self);
    self->agent = agent;
    msgpack_sbuffer_init (&self->buffer);
    msgpack_zone_init (&self->zone, 4096);
    self->timeout_ms = timeout_ms > 0? timeout_ms: agent->options.timeout_ms;
    //  The node the agent talks to (a cluster's: any member can read)
    char api [HERALD_AGENT_ENDPOINT_MAX];
    herald_agent_node_api (agent, api, sizeof api);
    self->conn = agent->curve? s_pool_take (agent, api): NULL;
    if (!self->conn) {
        self->conn = calloc (1, sizeof *self->conn);
        if (!self->conn)
            return herald_agent_set_error (HERALD_ERR_NOMEM, "out of memory");
        self->conn->next_rid = 1;
        snprintf (self->conn->api, sizeof self->conn->api, "%s", api);
        self->conn->sock = zsock_new (ZMQ_DEALER);
        if (!self->conn->sock)
            return herald_agent_set_error (HERALD_ERR_IO, "cannot make a socket");
        zsock_set_linger (self->conn->sock, 0);
        zsock_set_rcvhwm (self->conn->sock, 100000);
        if (agent->curve) {
            self->conn->server_index = herald_curve_server_index (agent->curve);
            herald_curve_apply (agent->curve, self->conn->sock);
        }
        if (zsock_connect (self->conn->sock, "%s", api) != 0)
            return herald_agent_set_error (HERALD_ERR_INVALID, "cannot connect to %s", api);
    }
    self->sock = self->conn->sock;
    zsock_set_sndtimeo (self->sock, self->timeout_ms);
    zsock_set_rcvtimeo (self->sock, self->timeout_ms);
    return HERALD_OK;
}

//  A request id of this connection: a pooled one may still receive the
//  tail of an earlier call's stream (after a CANCEL), which s_recv skips.
static uint64_t
s_conn_rid (s_conn_t *self)
{
    return self->conn? self->conn->next_rid++: 1;
}

static void
s_conn_close (s_conn_t *self)
{
    herald_agent_t *agent = self->agent;
    herald_agent_conn_t *conn = self->conn;
    if (conn && conn->sock && self->reusable && agent->curve) {
        pthread_mutex_lock (&agent->pool_lock);
        if (agent->pool_count < HERALD_AGENT_POOL_MAX) {
            agent->pool [agent->pool_count++] = conn;
            conn = NULL;
        }
        pthread_mutex_unlock (&agent->pool_lock);
    }
    s_pooled_destroy (&conn);
    msgpack_sbuffer_destroy (&self->buffer);
    msgpack_zone_destroy (&self->zone);
}

static herald_err
s_send (s_conn_t *self, const herald_msg_t *msg)
{
    self->buffer.size = 0;
    if (herald_msg_encode (msg, &self->buffer) != 0)
        return herald_agent_set_error (HERALD_ERR_NOMEM, "out of memory");
    const char *command = herald_msg_command (msg->type);
    void *sock = zsock_resolve (self->sock);
    if (zmq_send (sock, command, strlen (command), ZMQ_SNDMORE) < 0
    ||  zmq_send (sock, self->buffer.data, self->buffer.size, 0) < 0)
        return herald_agent_set_error (HERALD_ERR_UNAVAILABLE, "cannot send %s: %s", command,
                                       zmq_strerror (zmq_errno ()));
    return HERALD_OK;
}

//  Receive one reply for rid into *msg_p (caller destroys) and decode its
//  body into reply.  Replies to other rids are skipped.
static herald_err
s_recv (s_conn_t *self, uint64_t rid, zmsg_t **msg_p, herald_msg_t *reply)
{
    int64_t deadline = herald_agent_now_ms () + self->timeout_ms;
    while (herald_agent_now_ms () < deadline) {
        zmsg_t *msg = zmsg_recv (self->sock);
        if (!msg)
            break;
        zframe_t *command = zmsg_first (msg);
        zframe_t *body = zmsg_next (msg);
        herald_msg_type_t type = herald_msg_type_from_command (zframe_data (command),
                                                               zframe_size (command), true);
        herald_error_t err;
        msgpack_zone_clear (&self->zone);
        if (body && type != HERALD_MSG_INVALID
        &&  herald_msg_decode (reply, type, zframe_data (body), zframe_size (body), NULL,
                               &self->zone, &err) == HERALD_OK
        &&  reply->has_rid && reply->rid == rid) {
            *msg_p = msg;
            return HERALD_OK;
        }
        zmsg_destroy (&msg);
    }
    //  A call's own connection is refused like the agent's: say why it
    //  hears nothing (libzmq only reports it on a monitor)
    if (self->agent->curve && atomic_load (&self->agent->key_refused))
        return herald_agent_set_error (HERALD_ERR_TIMEOUT, "no answer from the broker within "
                                       "%d ms: it refuses this key (unknown, revoked or "
                                       "expired; stats auth_refused)", self->timeout_ms);
    return herald_agent_set_error (HERALD_ERR_TIMEOUT, "no answer from %s within %d ms",
                                   "the broker", self->timeout_ms);
}

static herald_err
s_refused (const herald_msg_t *reply)
{
    //  trimmed (docs/protocol.md, "Trimming"): where the live log starts
    //  now, and where the rest is
    if (reply->error.code == HERALD_ERR_TRIMMED && reply->error.has_first)
        return herald_agent_set_error (reply->error.code, "trimmed: %.*s (first %" PRIu64 ": "
                                       "ask again from there; the trimmed events are only in "
                                       "the archive, herald replay --archive DIR)",
                                       (int) reply->error.message.len,
                                       reply->error.message.ptr, reply->error.first);
    return herald_agent_set_error (reply->error.code, "%s: %.*s",
                                   herald_err_code (reply->error.code),
                                   (int) reply->error.message.len, reply->error.message.ptr);
}

//  Run a READ or REPLAY request to its END, handing events to handler.
static herald_err
s_stream (herald_agent_t *agent, herald_msg_t *request, herald_handler_fn *handler, void *arg,
          int timeout_ms, uint64_t *last)
{
    s_conn_t conn;
    herald_err rc = s_conn_open (&conn, agent, timeout_ms);
    request->rid = s_conn_rid (&conn);
    if (rc == HERALD_OK)
        rc = s_send (&conn, request);
    uint64_t handed = 0;
    msgpack_zone event_zone;
    msgpack_zone_init (&event_zone, 4096);
    while (rc == HERALD_OK) {
        zmsg_t *msg = NULL;
        herald_msg_t reply;
        rc = s_recv (&conn, request->rid, &msg, &reply);
        if (rc)
            break;
        if (reply.type == HERALD_MSG_END) {
            if (last)
                *last = reply.end.last;
            zmsg_destroy (&msg);
            conn.reusable = true;
            break;
        }
        if (reply.type == HERALD_MSG_ERROR) {
            rc = s_refused (&reply);
            zmsg_destroy (&msg);
            conn.reusable = true;
            break;
        }
        zmsg_first (msg);
        zmsg_next (msg);
        zframe_t *frame;
        while (rc == HERALD_OK && (frame = zmsg_next (msg))) {
            //  One envelope, or several back to back (we ask for `pack`;
            //  a broker that ignores it sends one per frame)
            size_t offset = 0, len;
            const uint8_t *envelope;
            int more;
            while (rc == HERALD_OK
               &&  (more = herald_msg_events_next (zframe_data (frame), zframe_size (frame),
                                                   &offset, &envelope, &len)) != 0) {
                herald_event_t event;
                herald_error_t err;
                msgpack_zone_clear (&event_zone);
                if (more < 0
                ||  herald_event_decode (&event, envelope, len, &event_zone, &err) != HERALD_OK) {
                    rc = herald_agent_set_error (HERALD_ERR_CORRUPT, "an event from the broker "
                                                 "does not decode: %s: %s",
                                                 more < 0? "frame": err.field,
                                                 more < 0? "not MessagePack": err.message);
                    break;
                }
                herald_delivery_t view;
                herald_agent_view (&view, &event, envelope, len);
                int verdict = handler (&view, arg);
                if (verdict != HERALD_OK)
                    rc = herald_agent_set_error ((herald_err) verdict,
                                                 "the handler returned %d", verdict);
                //  Credit counts events, however they are framed
                if (++handed % (CREDIT / 2) == 0) {
                    herald_msg_t credit = { .type = HERALD_MSG_CREDIT, .has_rid = true,
                                            .rid = request->rid };
                    credit.credit.credit = CREDIT / 2;
                    s_send (&conn, &credit);
                }
            }
        }
        zmsg_destroy (&msg);
    }
    msgpack_zone_destroy (&event_zone);
    s_conn_close (&conn);
    return rc;
}

herald_err
herald_agent_read (herald_agent_t *self, const char *topic, uint64_t from_ver,
                   uint64_t to_ver, herald_handler_fn *handler, void *arg, int timeout_ms)
{
    if (!self || !topic || !handler || !herald_topic_valid (topic, strlen (topic))
    ||  (to_ver && to_ver < (from_ver? from_ver: 1)))
        return herald_agent_set_error (HERALD_ERR_INVALID, "read needs a valid topic, a "
                                       "handler and to_ver >= from_ver");
    herald_msg_t request;
    memset (&request, 0, sizeof request);
    request.type = HERALD_MSG_READ;
    request.has_rid = true;
    request.rid = 1;
    request.read.topic = (herald_str_t) { topic, strlen (topic) };
    request.read.from_ver = from_ver;
    request.read.has_to_ver = to_ver != 0;
    request.read.to_ver = to_ver;
    request.read.credit = CREDIT;
    request.read.pack = true;       //  fewer frames: much cheaper under CURVE
    return s_stream (self, &request, handler, arg, timeout_ms, NULL);
}

herald_err
herald_agent_replay (herald_agent_t *self, const herald_range_t *range,
                     herald_handler_fn *handler, void *arg, int timeout_ms, uint64_t *last)
{
    if (!self || !range || !handler || (range->from && range->from_ts)
    ||  (range->to && range->until_ts) || (range->to && range->to < (range->from? range->from: 1)))
        return herald_agent_set_error (HERALD_ERR_INVALID, "replay needs a handler, one start "
                                       "and one end, and to >= from");
    herald_msg_t request;
    memset (&request, 0, sizeof request);
    request.type = HERALD_MSG_REPLAY;
    request.has_rid = true;
    request.rid = 1;
    request.replay.has_from = range->from_ts == 0;
    request.replay.from = range->from? range->from: 1;
    request.replay.has_from_ts = range->from_ts != 0;
    request.replay.from_ts = range->from_ts;
    request.replay.has_to = range->to != 0;
    request.replay.to = range->to;
    request.replay.has_until_ts = range->until_ts != 0;
    request.replay.until_ts = range->until_ts;
    herald_str_t prefixes [HERALD_PREFIXES_MAX];
    size_t count = 0;
    while (range->prefixes && range->prefixes [count] && count < HERALD_PREFIXES_MAX) {
        prefixes [count] = (herald_str_t) { range->prefixes [count],
                                            strlen (range->prefixes [count]) };
        count++;
    }
    request.replay.prefixes = prefixes;
    request.replay.prefix_count = count;
    request.replay.credit = CREDIT;
    request.replay.pack = true;
    return s_stream (self, &request, handler, arg, timeout_ms, last);
}

herald_err
herald_agent_resolve_start (herald_agent_t *self, herald_start_t start, uint64_t *done_p)
{
    *done_p = 0;
    if (start.kind == HERALD_START_BEGINNING)
        return HERALD_OK;
    if (start.kind == HERALD_START_SEQ) {
        *done_p = start.value? start.value - 1: 0;
        return HERALD_OK;
    }
    if (start.kind != HERALD_START_NOW && start.kind != HERALD_START_TS)
        return herald_agent_set_error (HERALD_ERR_INVALID, "unknown start kind %d", start.kind);
    s_conn_t conn;
    herald_err rc = s_conn_open (&conn, self, 0);
    herald_msg_t request;
    memset (&request, 0, sizeof request);
    request.has_rid = true;
    request.rid = s_conn_rid (&conn);
    if (start.kind == HERALD_START_NOW)
        request.type = HERALD_MSG_STATUS;
    else {
        request.type = HERALD_MSG_REPLAY;
        request.replay.has_from_ts = true;
        request.replay.from_ts = start.value;
        request.replay.credit = 1;
    }
    if (rc == HERALD_OK)
        rc = s_send (&conn, &request);
    zmsg_t *msg = NULL;
    herald_msg_t reply;
    if (rc == HERALD_OK)
        rc = s_recv (&conn, request.rid, &msg, &reply);
    conn.reusable = rc == HERALD_OK;
    if (rc == HERALD_ERR_TIMEOUT)
        herald_agent_set_error (rc, "cannot find where the subscription starts: the broker did "
                                "not answer within %d ms", conn.timeout_ms);
    else
    if (rc == HERALD_OK && reply.type == HERALD_MSG_ERROR)
        rc = s_refused (&reply);
    else
    if (rc == HERALD_OK && reply.type == HERALD_MSG_STATUS_REPLY) {
        *done_p = reply.status.head;
        herald_agent_learn_lineage (self, reply.status.lineage);
    }
    else
    if (rc == HERALD_OK && reply.type == HERALD_MSG_END) {
        *done_p = reply.end.head;       //  no event at or after the time yet
        herald_agent_learn_lineage (self, reply.end.lineage);
    }
    else
    if (rc == HERALD_OK && reply.type == HERALD_MSG_EVENTS) {
        zmsg_first (msg);
        zmsg_next (msg);
        zframe_t *frame = zmsg_next (msg);
        const char *topic;
        size_t topic_len;
        uint64_t seq = 0, ver, ts;
        if (!frame || !herald_event_peek (zframe_data (frame), zframe_size (frame), &topic,
                                          &topic_len, &seq, &ver, &ts) || seq == 0)
            rc = herald_agent_set_error (HERALD_ERR_CORRUPT, "an event from the broker does "
                                         "not decode");
        else
            *done_p = seq - 1;
        herald_msg_t cancel = { .type = HERALD_MSG_CANCEL, .has_rid = true, .rid = request.rid };
        s_send (&conn, &cancel);        //  do not leave the stream to expire
    }
    zmsg_destroy (&msg);
    s_conn_close (&conn);
    return rc;
}
