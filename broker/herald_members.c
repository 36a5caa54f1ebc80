/*  =========================================================================
    herald_members - a cluster node's admin requests: CLUSTER add, remove,
    transfer

    DESIGN

    Request body (a map): rid (uint), op ("add", "remove", "transfer"),
    and per op
        add       node (str), raft (HOST:PORT), api, fanout (str),
                  raft_id (uint: the joining node's, from its STATUS)
        remove    node (str: a name, or a raft id in decimal) or raft_id
        transfer  node (optional: a name or raft id; absent: the most
                  up-to-date voter)
    Answers: CLUSTER {rid, op, node, raft_id, leader, leader_api, voters,
    message} when the change is done; ERROR not_leader (leader: the
    leader's api or nil) off the leader or when leadership moved during
    the change; overloaded (retry_ms) while another change runs;
    bad_request for a bad body or a change refused (nothing changed);
    internal for a change that failed part way (the message says where it
    stands).

    The change itself runs on the Raft node's thread (herald_raft.c: every
    libraft call is there); this unit keeps the one client waiting and
    answers it from herald_members_tick, which the broker calls every
    loop turn (at least every Raft heartbeat).
    =========================================================================
*/

#include <inttypes.h>
#include "herald_members.h"
#include "herald_log.h"

#define S_RETRY_MS          1000
#define S_FIELD_MAX         256

struct _herald_members_t {
    herald_reply_t *reply;              //  borrowed
    zframe_t *identity;                 //  the client waiting, or NULL
    uint64_t rid;
    herald_raft_op_t op;
};

static const char *s_ops [] = { "", "add", "remove", "transfer" };

herald_members_t *
herald_members_new (herald_reply_t *reply)
{
    herald_members_t *self = (herald_members_t *) zmalloc (sizeof (herald_members_t));
    self->reply = reply;
    return self;
}

static void
s_error (herald_members_t *self, zframe_t *identity, bool has_rid, uint64_t rid,
         herald_err code, const char *message, const char *leader, uint64_t retry_ms)
{
    herald_msg_t reply = { .type = HERALD_MSG_ERROR, .has_rid = has_rid, .rid = rid };
    reply.error.code = code;
    reply.error.message = (herald_str_t) { message, strlen (message) };
    reply.error.topic = (herald_str_t) { "", 0 };
    if (code == HERALD_ERR_NOT_LEADER && leader && *leader)
        reply.error.leader = (herald_str_t) { leader, strlen (leader) };
    reply.error.retry_ms = retry_ms;
    herald_reply_msg (self->reply, identity, &reply);
    self->reply->refused++;
}

void
herald_members_destroy (herald_members_t **self_p)
{
    herald_members_t *self = *self_p;
    if (!self)
        return;
    if (self->identity && self->reply->router)
        s_error (self, self->identity, true, self->rid, HERALD_ERR_NOT_LEADER,
                 "this node stopped while the change ran; its outcome is unknown: see "
                 "herald cluster status", NULL, 0);
    zframe_destroy (&self->identity);
    free (self);
    *self_p = NULL;
}

bool
herald_members_is_request (zframe_t *command)
{
    return command && zframe_streq (command, "CLUSTER");
}

static bool
s_key_is (const msgpack_object *key, const char *name)
{
    return key->type == MSGPACK_OBJECT_STR && key->via.str.size == strlen (name)
        && memcmp (key->via.str.ptr, name, key->via.str.size) == 0;
}

//  A str field into buffer; false (message set) when present but not a
//  1..S_FIELD_MAX-1 byte string without NUL.
static bool
s_str (const msgpack_object *value, const char *name, char *buffer, char *message,
       size_t size)
{
    if (value->type != MSGPACK_OBJECT_STR || value->via.str.size == 0
    ||  value->via.str.size >= S_FIELD_MAX
    ||  memchr (value->via.str.ptr, 0, value->via.str.size)) {
        snprintf (message, size, "%s: must be a string of 1-%d bytes", name, S_FIELD_MAX - 1);
        return false;
    }
    memcpy (buffer, value->via.str.ptr, value->via.str.size);
    buffer [value->via.str.size] = 0;
    return true;
}

void
herald_members_request (herald_members_t *self, herald_node_t *node, zframe_t *identity,
                        zframe_t *body)
{
    char message [600] = "";
    if (!body) {
        s_error (self, identity, false, 0, HERALD_ERR_BAD_REQUEST,
                 "body: a request is a command frame and a body frame", NULL, 0);
        return;
    }
    msgpack_unpacked unpacked;
    msgpack_unpacked_init (&unpacked);
    bool has_rid = false;
    uint64_t rid = 0, raft_id = 0;
    char op [S_FIELD_MAX] = "", name [S_FIELD_MAX] = "", raft [S_FIELD_MAX] = "";
    char api [S_FIELD_MAX] = "", fanout [S_FIELD_MAX] = "";
    size_t offset = 0;
    if (msgpack_unpack_next (&unpacked, (const char *) zframe_data (body), zframe_size (body),
                             &offset) != MSGPACK_UNPACK_SUCCESS
    ||  offset != zframe_size (body) || unpacked.data.type != MSGPACK_OBJECT_MAP)
        snprintf (message, sizeof (message), "body: must be one MessagePack map");
    else {
        const msgpack_object_map *map = &unpacked.data.via.map;
        for (uint32_t at = 0; at < map->size && !*message; at++) {
            const msgpack_object *key = &map->ptr [at].key, *value = &map->ptr [at].val;
            if (s_key_is (key, "rid")) {
                if (value->type == MSGPACK_OBJECT_POSITIVE_INTEGER) {
                    has_rid = true;
                    rid = value->via.u64;
                }
                else
                    snprintf (message, sizeof (message), "rid: must be a uint");
            }
            else
            if (s_key_is (key, "raft_id")) {
                if (value->type == MSGPACK_OBJECT_POSITIVE_INTEGER && value->via.u64)
                    raft_id = value->via.u64;
                else
                    snprintf (message, sizeof (message), "raft_id: must be a uint above 0");
            }
            else
            if (s_key_is (key, "op"))
                s_str (value, "op", op, message, sizeof (message));
            else
            if (s_key_is (key, "node"))
                s_str (value, "node", name, message, sizeof (message));
            else
            if (s_key_is (key, "raft"))
                s_str (value, "raft", raft, message, sizeof (message));
            else
            if (s_key_is (key, "api"))
                s_str (value, "api", api, message, sizeof (message));
            else
            if (s_key_is (key, "fanout"))
                s_str (value, "fanout", fanout, message, sizeof (message));
        }
    }
    msgpack_unpacked_destroy (&unpacked);
    herald_raft_change_t change = { 0 };
    if (!*message && !has_rid)
        snprintf (message, sizeof (message), "rid: required");
    if (!*message) {
        for (int index = HERALD_RAFT_ADD; index <= HERALD_RAFT_TRANSFER; index++)
            if (streq (op, s_ops [index]))
                change.op = (herald_raft_op_t) index;
        if (!change.op)
            snprintf (message, sizeof (message), "op: must be add, remove or transfer");
    }
    if (!*message && change.op == HERALD_RAFT_ADD
    &&  (!*name || !*raft || !*api || !*fanout || !raft_id))
        snprintf (message, sizeof (message), "add: node, raft, api, fanout and raft_id are "
                  "required");
    if (!*message && change.op == HERALD_RAFT_ADD && strpbrk (name, ",/ "))
        snprintf (message, sizeof (message), "node: a name has no ',', '/' or blank");
    if (!*message && change.op == HERALD_RAFT_REMOVE && !*name) {
        if (raft_id)
            snprintf (name, sizeof (name), "%" PRIu64, raft_id);
        else
            snprintf (message, sizeof (message), "remove: node or raft_id is required");
    }
    if (*message) {
        s_error (self, identity, has_rid, rid, HERALD_ERR_BAD_REQUEST, message, NULL, 0);
        return;
    }
    if (change.op == HERALD_RAFT_TRANSFER && !*name && raft_id)
        snprintf (name, sizeof (name), "%" PRIu64, raft_id);
    change.node = *name? name: NULL;
    change.raft = raft;
    change.api = api;
    change.fanout = fanout;
    change.raft_id = raft_id;

    herald_raft_t *raft_node = herald_node_raft (node);
    herald_raft_state_t state;
    herald_node_state (node, &state);
    if (!raft_node || state.role != HERALD_RAFT_LEADER) {
        snprintf (message, sizeof (message), "this node does not lead the cluster; %s%s",
                  *state.leader_api? "send membership changes to the leader at ":
                  "no leader is known yet; retry shortly", state.leader_api);
        s_error (self, identity, true, rid, HERALD_ERR_NOT_LEADER, message,
                 state.leader_api, 0);
        return;
    }
    herald_error_t err = { 0 };
    herald_err rc = self->identity? herald_error_set (&err, HERALD_ERR_OVERLOADED, "",
                                                      "a membership change runs already "
                                                      "(%s); one at a time: retry once it "
                                                      "has ended", s_ops [self->op])
                                  : herald_raft_change (raft_node, &change, &err);
    if (rc == HERALD_OK) {
        self->identity = zframe_dup (identity);
        self->rid = rid;
        self->op = change.op;
        herald_log ("info", "cluster: %s %s asked", s_ops [change.op], *name? name: "");
        return;
    }
    s_error (self, identity, true, rid, rc, err.message,
             rc == HERALD_ERR_NOT_LEADER? state.leader_api: NULL,
             rc == HERALD_ERR_OVERLOADED? S_RETRY_MS: 0);
}

static void
s_pack_str (msgpack_packer *pk, const char *key, const char *value)
{
    msgpack_pack_str_with_body (pk, key, strlen (key));
    if (value && *value)
        msgpack_pack_str_with_body (pk, value, strlen (value));
    else
        msgpack_pack_nil (pk);
}

static void
s_done (herald_members_t *self, const herald_raft_outcome_t *outcome)
{
    if (outcome->rc != HERALD_OK) {
        herald_err code = outcome->rc == HERALD_ERR_INVALID? HERALD_ERR_BAD_REQUEST
                        : outcome->rc == HERALD_ERR_NOT_LEADER? HERALD_ERR_NOT_LEADER
                        : outcome->rc == HERALD_ERR_OVERLOADED? HERALD_ERR_OVERLOADED
                        : HERALD_ERR_INTERNAL;
        s_error (self, self->identity, true, self->rid, code, outcome->message,
                 outcome->leader_api, code == HERALD_ERR_OVERLOADED? S_RETRY_MS: 0);
        return;
    }
    msgpack_sbuffer buffer;
    msgpack_sbuffer_init (&buffer);
    msgpack_packer pk;
    msgpack_packer_init (&pk, &buffer, msgpack_sbuffer_write);
    msgpack_pack_map (&pk, 8);
    msgpack_pack_str_with_body (&pk, "rid", 3);
    msgpack_pack_uint64 (&pk, self->rid);
    s_pack_str (&pk, "op", s_ops [outcome->op]);
    s_pack_str (&pk, "node", outcome->node);
    msgpack_pack_str_with_body (&pk, "raft_id", 7);
    msgpack_pack_uint64 (&pk, outcome->raft_id);
    s_pack_str (&pk, "leader", outcome->leader);
    s_pack_str (&pk, "leader_api", outcome->leader_api);
    msgpack_pack_str_with_body (&pk, "voters", 6);
    msgpack_pack_uint64 (&pk, outcome->voters);
    s_pack_str (&pk, "message", outcome->message);
    if (herald_reply_begin (self->reply->router, self->identity) == 0) {
        herald_reply_frame (self->reply->router, "CLUSTER", 7, true);
        herald_reply_frame (self->reply->router, buffer.data, buffer.size, false);
    }
    else
        herald_reply_dropped (self->reply, self->identity, "CLUSTER");
    msgpack_sbuffer_destroy (&buffer);
}

void
herald_members_tick (herald_members_t *self, herald_node_t *node)
{
    if (!self->identity)
        return;
    herald_raft_t *raft = herald_node_raft (node);
    herald_raft_outcome_t outcome;
    if (!raft) {
        memset (&outcome, 0, sizeof (outcome));
        outcome.op = self->op;
        outcome.rc = HERALD_ERR_NOT_LEADER;
        snprintf (outcome.message, sizeof (outcome.message), "the Raft node stopped while "
                  "the change ran; its outcome is unknown: see herald cluster status");
    }
    else
    if (!herald_raft_change_done (raft, &outcome))
        return;
    s_done (self, &outcome);
    zframe_destroy (&self->identity);
}
