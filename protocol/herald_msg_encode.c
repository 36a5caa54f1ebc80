/*  =========================================================================
    herald_msg_encode - HWP/1 message bodies: encoding

    The other half of herald_msg (herald_msg.c decodes).  Every body is one
    map with str keys, written with msgpack-c's shortest forms.  Optional
    keys are written only when their has_* flag (or non-NULL pointer) says
    they are present, so a decoded message encodes back to a body that
    decodes to the same message.  Keys come in the order docs/protocol.md lists
    them; receivers must not depend on it.
    =========================================================================
*/

#include <string.h>
#include "herald_msg.h"

//  msgpack-c's pack calls return the sbuffer's write result; OR-ing them
//  keeps each encoder straight-line and still reports out of memory.
static int
s_key (msgpack_packer *pk, const char *key)
{
    size_t len = strlen (key);
    return msgpack_pack_str (pk, len) | msgpack_pack_str_body (pk, key, len);
}

static int
s_str (msgpack_packer *pk, const char *ptr, size_t len)
{
    int rc = msgpack_pack_str (pk, ptr ? len : 0);
    if (ptr && len)
        rc |= msgpack_pack_str_body (pk, ptr, len);
    return rc;
}

static int
s_key_str (msgpack_packer *pk, const char *key, herald_str_t value)
{
    return s_key (pk, key) | s_str (pk, value.ptr, value.len);
}

static int
s_key_uint (msgpack_packer *pk, const char *key, uint64_t value)
{
    return s_key (pk, key) | msgpack_pack_uint64 (pk, value);
}

//  rid, or nil when the request's rid could not be read.
static int
s_rid (msgpack_packer *pk, const herald_msg_t *self)
{
    int rc = s_key (pk, "rid");
    return rc | (self->has_rid ? msgpack_pack_uint64 (pk, self->rid) : msgpack_pack_nil (pk));
}

int
herald_msg_pack_publisher_event (msgpack_packer *pk, const herald_event_t *event)
{
    size_t keys = 3 + (event->type != NULL) + event->has_schema
                + (event->meta != NULL) + event->has_expect;
    int rc = msgpack_pack_map (pk, keys);
    rc |= s_key (pk, "id") | msgpack_pack_bin (pk, HERALD_ID_BYTES)
       |  msgpack_pack_bin_body (pk, event->id, HERALD_ID_BYTES);
    rc |= s_key (pk, "topic") | s_str (pk, event->topic, event->topic_len);
    if (event->type)
        rc |= s_key (pk, "type") | s_str (pk, event->type, event->type_len);
    if (event->has_schema)
        rc |= s_key_uint (pk, "schema", event->schema);
    if (event->meta) {
        rc |= s_key (pk, "meta") | msgpack_pack_map (pk, event->meta_count);
        size_t index;
        for (index = 0; index < event->meta_count; index++)
            rc |= s_str (pk, event->meta [index].key, event->meta [index].key_len)
               |  s_str (pk, event->meta [index].value, event->meta [index].value_len);
    }
    rc |= s_key (pk, "data") | msgpack_pack_bin (pk, event->data_len);
    if (event->data_len)
        rc |= msgpack_pack_bin_body (pk, event->data, event->data_len);
    if (event->has_expect)
        rc |= s_key_uint (pk, "expect", event->expect);
    return rc;
}

static int
s_publish (msgpack_packer *pk, const herald_msg_t *self)
{
    int rc = msgpack_pack_map (pk, 2) | s_rid (pk, self);
    rc |= s_key (pk, "events") | msgpack_pack_array (pk, self->publish.count);
    size_t index;
    for (index = 0; index < self->publish.count; index++)
        rc |= herald_msg_pack_publisher_event (pk, &self->publish.events [index]);
    return rc;
}

//  from and from_ts are written only when set: neither means from 1.
static int
s_replay (msgpack_packer *pk, const herald_msg_t *self)
{
    const __typeof__ (self->replay) *replay = &self->replay;
    size_t keys = 2 + replay->has_from + replay->has_from_ts + replay->has_to
                + replay->has_until_ts + (replay->prefix_count > 0) + replay->pack;
    int rc = msgpack_pack_map (pk, keys) | s_rid (pk, self);
    if (replay->has_from)
        rc |= s_key_uint (pk, "from", replay->from);
    if (replay->has_from_ts)
        rc |= s_key_uint (pk, "from_ts", replay->from_ts);
    if (replay->has_to)
        rc |= s_key_uint (pk, "to", replay->to);
    if (replay->has_until_ts)
        rc |= s_key_uint (pk, "until_ts", replay->until_ts);
    if (replay->prefix_count) {
        rc |= s_key (pk, "prefixes") | msgpack_pack_array (pk, replay->prefix_count);
        size_t index;
        for (index = 0; index < replay->prefix_count; index++)
            rc |= s_str (pk, replay->prefixes [index].ptr, replay->prefixes [index].len);
    }
    //  `pack` only when asked: a request without it is byte for byte today's
    if (replay->pack)
        rc |= s_key (pk, "pack") | msgpack_pack_true (pk);
    return rc | s_key_uint (pk, "credit", replay->credit);
}

//  from_ver 0 means "not given" (the broker's default is 1).
static int
s_read (msgpack_packer *pk, const herald_msg_t *self)
{
    const __typeof__ (self->read) *read = &self->read;
    size_t keys = 3 + (read->from_ver != 0) + read->has_to_ver + read->pack;
    int rc = msgpack_pack_map (pk, keys) | s_rid (pk, self);
    rc |= s_key_str (pk, "topic", read->topic);
    if (read->from_ver)
        rc |= s_key_uint (pk, "from_ver", read->from_ver);
    if (read->has_to_ver)
        rc |= s_key_uint (pk, "to_ver", read->to_ver);
    if (read->pack)
        rc |= s_key (pk, "pack") | msgpack_pack_true (pk);
    return rc | s_key_uint (pk, "credit", read->credit);
}

static int
s_hello (msgpack_packer *pk, const herald_msg_t *self)
{
    int rc = msgpack_pack_map (pk, 2 + (self->hello.client.ptr != NULL)) | s_rid (pk, self);
    rc |= s_key_uint (pk, "proto", self->hello.proto);
    if (self->hello.client.ptr)
        rc |= s_key_str (pk, "client", self->hello.client);
    return rc;
}

static int
s_ack (msgpack_packer *pk, const herald_msg_t *self)
{
    size_t count = self->ack.count, index;
    //  `reused` only when it says something: old clients see the ACK they know
    bool reused = false;
    for (index = 0; self->ack.reused && index < count && !reused; index++)
        reused = self->ack.reused [index];
    int rc = msgpack_pack_map (pk, 4 + reused) | s_rid (pk, self);
    rc |= s_key (pk, "seq") | msgpack_pack_array (pk, count);
    for (index = 0; index < count; index++)
        rc |= msgpack_pack_uint64 (pk, self->ack.seq [index]);
    rc |= s_key (pk, "ver") | msgpack_pack_array (pk, count);
    for (index = 0; index < count; index++)
        rc |= msgpack_pack_uint64 (pk, self->ack.ver [index]);
    rc |= s_key (pk, "dup") | msgpack_pack_array (pk, count);
    for (index = 0; index < count; index++)
        rc |= self->ack.dup [index] ? msgpack_pack_true (pk) : msgpack_pack_false (pk);
    if (reused) {
        rc |= s_key (pk, "reused") | msgpack_pack_array (pk, count);
        for (index = 0; index < count; index++)
            rc |= self->ack.reused [index] ? msgpack_pack_true (pk) : msgpack_pack_false (pk);
    }
    return rc;
}

//  `losses`, always written (empty when none): an addition to HWP/1.
static int
s_losses (msgpack_packer *pk, const herald_loss_t *losses, size_t count)
{
    int rc = s_key (pk, "losses") | msgpack_pack_array (pk, count);
    size_t index;
    for (index = 0; index < count; index++)
        rc |= msgpack_pack_map (pk, 3)
           |  s_key_uint (pk, "lineage", losses [index].lineage)
           |  s_key_uint (pk, "lost_after", losses [index].lost_after)
           |  s_key_uint (pk, "ts", losses [index].ts);
    return rc;
}

//  lineage (END, STATUS, WELCOME, $hb) is always written, 0 included: a
//  decoder reads its absence as 0, so the round trip holds either way.
static int
s_end (msgpack_packer *pk, const herald_msg_t *self)
{
    return msgpack_pack_map (pk, 5) | s_rid (pk, self)
         | s_key_uint (pk, "last", self->end.last)
         | s_key_uint (pk, "head", self->end.head)
         | s_key_str (pk, "reason", self->end.reason)
         | s_key_uint (pk, "lineage", self->end.lineage);
}

//  Pairs encoded by the caller, appended as they are.
static int
s_raw (msgpack_packer *pk, const herald_msg_raw_t *raw)
{
    return raw->len? msgpack_pack_str_body (pk, raw->data, raw->len): 0;
}

//  The fixed figures, then the operator's extras as str -> uint.
static int
s_status_reply (msgpack_packer *pk, const herald_msg_t *self)
{
    const __typeof__ (self->status) *status = &self->status;
    int rc = msgpack_pack_map (pk, 9 + status->extra_count + status->raw.count)
           | s_rid (pk, self)
           | s_key_uint (pk, "head", status->head)
           | s_key_uint (pk, "topics", status->topics)
           | s_key_uint (pk, "events", status->events)
           | s_key_str (pk, "role", status->role)
           | s_key_str (pk, "node", status->node)
           | s_key_uint (pk, "uptime_s", status->uptime_s)
           | s_key_uint (pk, "lineage", status->lineage)
           | s_losses (pk, status->losses, status->loss_count);
    size_t index;
    for (index = 0; index < status->extra_count; index++)
        rc |= s_str (pk, status->extra_keys [index].ptr, status->extra_keys [index].len)
           |  msgpack_pack_uint64 (pk, status->extra_values [index]);
    return rc | s_raw (pk, &status->raw);
}

static int
s_welcome (msgpack_packer *pk, const herald_msg_t *self)
{
    const __typeof__ (self->welcome) *welcome = &self->welcome;
    int rc = msgpack_pack_map (pk, 8 + welcome->raw.count) | s_rid (pk, self)
           | s_key_uint (pk, "proto", welcome->proto)
           | s_key_str (pk, "node", welcome->node)
           | s_key_uint (pk, "head", welcome->head)
           | s_key (pk, "fanout");
    //  nil: no fanout this client may use (security: a publish-only key)
    rc |= welcome->fanout.ptr? s_str (pk, welcome->fanout.ptr, welcome->fanout.len)
                             : msgpack_pack_nil (pk);
    rc |= s_key (pk, "cluster") | msgpack_pack_array (pk, welcome->cluster_count);
    size_t index;
    for (index = 0; index < welcome->cluster_count; index++)
        rc |= s_str (pk, welcome->cluster [index].ptr, welcome->cluster [index].len);
    return rc | s_key_uint (pk, "lineage", welcome->lineage)
              | s_losses (pk, welcome->losses, welcome->loss_count)
              | s_raw (pk, &welcome->raw);
}

//  Local conditions (HERALD_ERR_IO, ...) have no wire code: a peer is told
//  `internal`, the only code that promises nothing about its request.
static int
s_error (msgpack_packer *pk, const herald_msg_t *self)
{
    const __typeof__ (self->error) *error = &self->error;
    const char *code = herald_err_code (error->code);
    bool conflict = error->code == HERALD_ERR_CONFLICT;
    bool not_leader = error->code == HERALD_ERR_NOT_LEADER;
    if (!code)
        code = "internal";
    bool retry = error->retry_ms > 0;
    bool first = error->code == HERALD_ERR_TRIMMED && error->has_first;
    int rc = msgpack_pack_map (pk, 3 + 3 * conflict + not_leader + retry + first)
           | s_rid (pk, self);
    rc |= s_key (pk, "code") | s_str (pk, code, strlen (code));
    rc |= s_key_str (pk, "message", error->message);
    if (conflict)
        rc |= s_key_str (pk, "topic", error->topic)
           |  s_key_uint (pk, "expected", error->expected)
           |  s_key_uint (pk, "actual", error->actual);
    if (not_leader) {
        rc |= s_key (pk, "leader");
        rc |= error->leader.ptr ? s_str (pk, error->leader.ptr, error->leader.len)
                                : msgpack_pack_nil (pk);
    }
    if (retry)
        rc |= s_key_uint (pk, "retry_ms", error->retry_ms);
    if (first)
        rc |= s_key_uint (pk, "first", error->first);
    return rc;
}

static int
s_heartbeat (msgpack_packer *pk, const herald_msg_t *self)
{
    return msgpack_pack_map (pk, 5 + self->heartbeat.raw.count)
         | s_key_uint (pk, "head", self->heartbeat.head)
         | s_key_uint (pk, "ts", self->heartbeat.ts)
         | s_key_str (pk, "node", self->heartbeat.node)
         | s_key_uint (pk, "epoch", self->heartbeat.epoch)
         | s_key_uint (pk, "lineage", self->heartbeat.lineage)
         | s_raw (pk, &self->heartbeat.raw);
}

//  ACL request {rid, op}; its reply adds the broker's keys (raw).
static int
s_acl (msgpack_packer *pk, const herald_msg_t *self)
{
    const char *op = self->acl.op == HERALD_MSG_ACL_SHOW? "show": "reload";
    bool reply = self->type == HERALD_MSG_ACL_REPLY;
    return msgpack_pack_map (pk, 2 + (reply? self->acl.raw.count: 0)) | s_rid (pk, self)
         | s_key (pk, "op") | s_str (pk, op, strlen (op))
         | (reply? s_raw (pk, &self->acl.raw): 0);
}

//  HERALD_MSG_INVALID has no body: -1, and nothing is written.
int
herald_msg_encode (const herald_msg_t *self, msgpack_sbuffer *buffer)
{
    msgpack_packer pk;
    msgpack_packer_init (&pk, buffer, msgpack_sbuffer_write);
    int rc;
    switch (self->type) {
        case HERALD_MSG_PUBLISH:        rc = s_publish (&pk, self); break;
        case HERALD_MSG_REPLAY:         rc = s_replay (&pk, self); break;
        case HERALD_MSG_READ:           rc = s_read (&pk, self); break;
        case HERALD_MSG_CREDIT:
            rc = msgpack_pack_map (&pk, 2) | s_rid (&pk, self)
               | s_key_uint (&pk, "credit", self->credit.credit);
            break;
        case HERALD_MSG_CANCEL:
        case HERALD_MSG_EVENTS:
            rc = msgpack_pack_map (&pk, 1) | s_rid (&pk, self);
            break;
        case HERALD_MSG_STATUS:
            //  A request's own additions (histograms: true), when given
            rc = msgpack_pack_map (&pk, 1 + self->status.raw.count) | s_rid (&pk, self);
            if (self->status.raw.len)
                rc |= msgpack_sbuffer_write (buffer, (const char *) self->status.raw.data,
                                             self->status.raw.len);
            break;
        case HERALD_MSG_HELLO:          rc = s_hello (&pk, self); break;
        case HERALD_MSG_ACK:            rc = s_ack (&pk, self); break;
        case HERALD_MSG_END:            rc = s_end (&pk, self); break;
        case HERALD_MSG_STATUS_REPLY:   rc = s_status_reply (&pk, self); break;
        case HERALD_MSG_WELCOME:        rc = s_welcome (&pk, self); break;
        case HERALD_MSG_ERROR:          rc = s_error (&pk, self); break;
        case HERALD_MSG_HEARTBEAT:      rc = s_heartbeat (&pk, self); break;
        case HERALD_MSG_ACL:
        case HERALD_MSG_ACL_REPLY:      rc = s_acl (&pk, self); break;
        default:                        rc = -1; break;
    }
    return rc ? -1 : 0;
}

//  A decoder's err carries no conflict details (conflicts come from the
//  store, and the broker encodes those with herald_msg_encode); a conflict
//  here gets an empty topic and zero versions so the body stays valid.
int
herald_msg_encode_error (const herald_error_t *err, msgpack_sbuffer *buffer)
{
    herald_msg_t msg;
    memset (&msg, 0, sizeof (msg));
    msg.type = HERALD_MSG_ERROR;
    msg.has_rid = err->has_rid;
    msg.rid = err->rid;
    msg.error.code = err->code;
    msg.error.message.ptr = err->message;
    msg.error.message.len = strnlen (err->message, sizeof (err->message));
    msg.error.topic.ptr = "";
    return herald_msg_encode (&msg, buffer);
}
