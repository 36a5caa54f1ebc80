/*  =========================================================================
    herald_groups - the broker's consumer-group coordinator: GROUP

    DESIGN

    In memory, per group the node serving GROUP knows: its members (name,
    when last heard), and per partition its owner and whether the owner
    was told of it, must let it go (revoking), or is being granted it (a
    grant op in flight).  Positions and epochs are in the store and change
    only through ops (herald_commit_op); a reply that shows positions reads
    them from the store after the op it waited for was applied.

    Assignment (s_rebalance), sticky and balanced: with n members and P
    partitions, the members holding most (ties: by name) get ceil(P/n),
    the others floor(P/n); each keeps what it holds up to its quota (its
    lowest partitions) and is asked to let the rest go; free partitions go
    to members under quota, in name order.  A partition moves only once
    its owner let it go (a heartbeat without it in `owned`), left, or
    expired: so no two members ever hold one under live leases.

    After a start, or on becoming leader (s_serving), nothing is known of
    the members: a heartbeat's `owned` entry whose epoch is the stored one
    is kept by its claimant; a partition granted before (epoch > 0) and
    not claimed is `unknown` and is granted only once session_ms have
    passed since (its old owner's lease has ended by then).  Losing
    leadership forgets everything; waiting clients get not_leader.
    =========================================================================
*/

#include <inttypes.h>
#include "herald_groups_priv.h"
#include "herald_log.h"

typedef struct {
    char *name;
    int64_t seen;                       //  zclock_mono of its last heartbeat
} s_member_t;

typedef enum { S_FREE, S_HELD, S_GRANTING } s_state_t;

typedef struct {
    s_member_t *owner;                  //  NULL: free
    s_state_t state;
    bool revoking;                      //  the owner must let it go
    bool told;                          //  a reply listed it to its owner
    bool unknown;                       //  since the start: maybe held by one not heard
} s_part_t;

typedef struct {
    zframe_t *identity;
    uint64_t rid;
    char *member;
} s_waiter_t;

typedef struct {
    char *name;
    uint32_t partitions, session_ms;
    char **prefixes;
    size_t prefix_count;
    bool created;                       //  false while its create op is in flight
    bool deleting;
    uint64_t generation;
    zlistx_t *members;                  //  s_member_t *, sorted by name
    s_part_t *parts;
    zlistx_t *waiters;                  //  heartbeats waiting for their grants
    bool dirty;                         //  rebalance at the next turn
} s_group_t;

typedef enum { S_OP_CREATE, S_OP_GRANT, S_OP_COMMIT, S_OP_RESET, S_OP_DELETE } s_kind_t;

typedef struct {
    herald_groups_t *self;
    s_kind_t kind;
    uint64_t incarnation;               //  the serving term it was sent in
    char *group;
    char *member;
    zframe_t *identity;                 //  the client waiting (commit, reset, delete)
    uint64_t rid;
    uint64_t to;
    uint32_t *parts;                    //  a grant's
    size_t part_count;
} s_op_t;

struct _herald_groups_t {
    herald_store_t *store;
    herald_commit_t *commit;
    herald_reply_t *reply;
    herald_node_t *node;
    herald_guard_t *guard;
    zhashx_t *groups;                   //  name -> s_group_t
    bool serving;
    int64_t serving_since;              //  zclock_mono
    uint64_t incarnation;
    size_t ops_inflight;
    herald_groups_counts_t counts;
    msgpack_sbuffer buffer;
};

static void s_group_destroy (void **item);
static int s_member_compare (const void *a, const void *b);
static void s_reply_heartbeat (herald_groups_t *self, s_group_t *group, zframe_t *identity,
                               uint64_t rid, const char *member);

//  ---------------------------------------------------------------------
//  Errors

static void
s_refuse (herald_groups_t *self, zframe_t *identity, uint64_t rid, herald_err code,
          const char *format, ...)
{
    char message [HERALD_ERROR_MESSAGE_MAX];
    va_list args;
    va_start (args, format);
    vsnprintf (message, sizeof (message), format, args);
    va_end (args);
    herald_reply_refusal (self->reply, identity, rid, code, message, 0);
}

//  True when this node serves GROUP; else leader is the leader's api ("").
static bool
s_leads (herald_groups_t *self, char *leader, size_t size)
{
    leader [0] = 0;
    if (!self->node)
        return true;
    herald_raft_state_t state;
    herald_node_state (self->node, &state);
    if (state.role == HERALD_RAFT_LEADER && herald_node_raft (self->node))
        return true;
    snprintf (leader, size, "%s", state.leader_api);
    return false;
}

static void
s_not_leader (herald_groups_t *self, zframe_t *identity, uint64_t rid, bool unknown)
{
    char leader [256], message [512];
    s_leads (self, leader, sizeof (leader));
    snprintf (message, sizeof (message), "%s%s%s",
              unknown? "leadership was lost while this GROUP request ran: its outcome is "
                       "unknown; ": "this node does not lead the cluster; ",
              *leader? "send GROUP to the leader at ": "no leader is known yet; retry shortly",
              leader);
    herald_msg_t reply = { .type = HERALD_MSG_ERROR, .has_rid = true, .rid = rid };
    reply.error.code = HERALD_ERR_NOT_LEADER;
    reply.error.message = (herald_str_t) { message, strlen (message) };
    reply.error.topic = (herald_str_t) { "", 0 };
    if (*leader)
        reply.error.leader = (herald_str_t) { leader, strlen (leader) };
    herald_reply_msg (self->reply, identity, &reply);
    self->reply->refused++;
}

//  An op that failed, answered to its client.
static void
s_op_failed (herald_groups_t *self, zframe_t *identity, uint64_t rid, herald_err rc,
             const herald_error_t *err)
{
    if (rc == HERALD_ERR_NOT_LEADER)
        s_not_leader (self, identity, rid, true);
    else
    if (rc == HERALD_ERR_OVERLOADED)
        herald_reply_refusal (self->reply, identity, rid, HERALD_ERR_OVERLOADED,
                              err && *err->message? err->message
                                                  : "the broker is stopping or its queue is "
                                                    "full; retry", 1000);
    else
        s_refuse (self, identity, rid, HERALD_ERR_INTERNAL, "the group's change failed: %s",
                  err && *err->message? err->message: herald_strerror (rc));
}

//  ---------------------------------------------------------------------
//  Groups and members in memory

static s_group_t *
s_group_new (const char *name, uint32_t partitions, uint32_t session_ms, char **prefixes,
             size_t prefix_count)
{
    s_group_t *group = (s_group_t *) zmalloc (sizeof (s_group_t));
    group->name = strdup (name);
    group->partitions = partitions;
    group->session_ms = session_ms;
    group->prefixes = prefix_count? (char **) zmalloc (prefix_count * sizeof (char *)): NULL;
    for (size_t index = 0; index < prefix_count; index++)
        group->prefixes [index] = strdup (prefixes [index]);
    group->prefix_count = prefix_count;
    group->members = zlistx_new ();
    zlistx_set_comparator (group->members, s_member_compare);
    group->waiters = zlistx_new ();
    group->parts = (s_part_t *) zmalloc (partitions * sizeof (s_part_t));
    return group;
}

static void
s_waiter_free (s_waiter_t **waiter_p)
{
    if (!*waiter_p)
        return;
    zframe_destroy (&(*waiter_p)->identity);
    free ((*waiter_p)->member);
    free (*waiter_p);
    *waiter_p = NULL;
}

static void
s_group_destroy (void **item)
{
    s_group_t *group = (s_group_t *) *item;
    if (!group)
        return;
    s_member_t *member;
    while ((member = (s_member_t *) zlistx_detach (group->members, NULL))) {
        free (member->name);
        free (member);
    }
    zlistx_destroy (&group->members);
    s_waiter_t *waiter;
    while ((waiter = (s_waiter_t *) zlistx_detach (group->waiters, NULL)))
        s_waiter_free (&waiter);
    zlistx_destroy (&group->waiters);
    for (size_t index = 0; index < group->prefix_count; index++)
        free (group->prefixes [index]);
    free (group->prefixes);
    free (group->parts);
    free (group->name);
    free (group);
    *item = NULL;
}

//  The group as the store has it, taken into memory: partitions granted
//  before are unknown until claimed or the grace has passed.
static s_group_t *
s_group_load (herald_groups_t *self, const herald_group_record_t *record)
{
    s_group_t *group = s_group_new (record->name, record->partitions, record->session_ms,
                                    record->prefixes, record->prefix_count);
    group->created = true;
    group->generation = record->epoch;  //  grows across starts, as epochs do
    for (uint32_t index = 0; index < group->partitions; index++)
        group->parts [index].unknown = record->positions [index].epoch > 0;
    zhashx_insert (self->groups, group->name, group);
    return group;
}

static s_member_t *
s_member (s_group_t *group, const char *name)
{
    s_member_t *member = (s_member_t *) zlistx_first (group->members);
    for (; member; member = (s_member_t *) zlistx_next (group->members))
        if (streq (member->name, name))
            return member;
    return NULL;
}

static int
s_member_compare (const void *a, const void *b)
{
    return strcmp (((const s_member_t *) a)->name, ((const s_member_t *) b)->name);
}

//  A new member, in name order: the assignment's order.
static s_member_t *
s_member_add (s_group_t *group, const char *name)
{
    s_member_t *member = (s_member_t *) zmalloc (sizeof (s_member_t));
    member->name = strdup (name);
    zlistx_insert (group->members, member, true);
    group->generation++;
    group->dirty = true;
    return member;
}

//  The member's partitions freed now (it left or expired): a grant in
//  flight stays (its done frees it).
static void
s_member_remove (s_group_t *group, s_member_t *member)
{
    for (uint32_t index = 0; index < group->partitions; index++) {
        s_part_t *part = &group->parts [index];
        if (part->owner == member) {
            if (part->state == S_GRANTING)
                part->owner = NULL;     //  freed when its grant comes back
            else
                *part = (s_part_t) { 0 };
        }
    }
    void *handle = zlistx_find (group->members, member);
    if (handle)
        zlistx_detach (group->members, handle);
    free (member->name);
    free (member);
    group->generation++;
    group->dirty = true;
}

//  Forget every group (leadership changed): waiting clients get
//  not_leader; ops in flight find their incarnation gone.
static void
s_forget (herald_groups_t *self)
{
    s_group_t *group = (s_group_t *) zhashx_first (self->groups);
    for (; group; group = (s_group_t *) zhashx_next (self->groups)) {
        s_waiter_t *waiter;
        while ((waiter = (s_waiter_t *) zlistx_detach (group->waiters, NULL))) {
            if (self->reply->router)
                s_not_leader (self, waiter->identity, waiter->rid, false);
            s_waiter_free (&waiter);
        }
    }
    zhashx_purge (self->groups);
    self->incarnation++;
}

//  ---------------------------------------------------------------------
//  Ops

static s_op_t *
s_op_new (herald_groups_t *self, s_kind_t kind, const char *group, const char *member,
          zframe_t *identity, uint64_t rid)
{
    s_op_t *op = (s_op_t *) zmalloc (sizeof (s_op_t));
    op->self = self;
    op->kind = kind;
    op->incarnation = self->incarnation;
    op->group = strdup (group);
    op->member = member? strdup (member): NULL;
    op->identity = identity? zframe_dup (identity): NULL;
    op->rid = rid;
    return op;
}

static void
s_op_free (s_op_t *op)
{
    free (op->group);
    free (op->member);
    free (op->parts);
    zframe_destroy (&op->identity);
    free (op);
}

static void s_op_done (void *arg, herald_err rc, const uint8_t *result, size_t result_len,
                       const herald_error_t *err);

//  Send the op packed in self->buffer.
static void
s_op_send (herald_groups_t *self, s_op_t *op)
{
    self->ops_inflight++;
    herald_commit_op (self->commit, (const uint8_t *) self->buffer.data, self->buffer.size,
                      s_op_done, op);
}

static void
s_pack_key (msgpack_packer *pk, const char *key)
{
    msgpack_pack_str_with_body (pk, key, strlen (key));
}

static void
s_pack_str (msgpack_packer *pk, const char *key, const char *value)
{
    s_pack_key (pk, key);
    if (value)
        msgpack_pack_str_with_body (pk, value, strlen (value));
    else
        msgpack_pack_nil (pk);
}

static void
s_pack_uint (msgpack_packer *pk, const char *key, uint64_t value)
{
    s_pack_key (pk, key);
    msgpack_pack_uint64 (pk, value);
}

static void
s_pack_prefixes (msgpack_packer *pk, char **prefixes, size_t count)
{
    s_pack_key (pk, "prefixes");
    msgpack_pack_array (pk, count);
    for (size_t index = 0; index < count; index++)
        msgpack_pack_str_with_body (pk, prefixes [index], strlen (prefixes [index]));
}

static void
s_packer (herald_groups_t *self, msgpack_packer *pk)
{
    msgpack_sbuffer_clear (&self->buffer);
    msgpack_packer_init (pk, &self->buffer, msgpack_sbuffer_write);
}

//  A result map: ok, error, and the value of one key (NULL when absent).
typedef struct {
    bool ok;
    char error [256];
    const msgpack_object *value;
    msgpack_unpacked unpacked;
} s_result_t;

static void
s_result (const uint8_t *bytes, size_t len, const char *key, s_result_t *result)
{
    result->ok = false;
    result->value = NULL;
    snprintf (result->error, sizeof (result->error), "the op's result does not decode");
    msgpack_unpacked_init (&result->unpacked);
    size_t offset = 0;
    if (!bytes || msgpack_unpack_next (&result->unpacked, (const char *) bytes, len, &offset)
            != MSGPACK_UNPACK_SUCCESS
    ||  result->unpacked.data.type != MSGPACK_OBJECT_MAP)
        return;
    *result->error = 0;
    const msgpack_object_map *map = &result->unpacked.data.via.map;
    for (uint32_t at = 0; at < map->size; at++) {
        const msgpack_object *name = &map->ptr [at].key, *value = &map->ptr [at].val;
        if (name->type != MSGPACK_OBJECT_STR)
            continue;
        size_t size = name->via.str.size;
        if (size == 2 && memcmp (name->via.str.ptr, "ok", 2) == 0)
            result->ok = value->type == MSGPACK_OBJECT_BOOLEAN && value->via.boolean;
        else
        if (size == 5 && memcmp (name->via.str.ptr, "error", 5) == 0
        &&  value->type == MSGPACK_OBJECT_STR)
            snprintf (result->error, sizeof (result->error), "%.*s", (int) value->via.str.size,
                      value->via.str.ptr);
        else
        if (key && size == strlen (key) && memcmp (name->via.str.ptr, key, size) == 0)
            result->value = value;
    }
    if (!result->ok && !*result->error)
        snprintf (result->error, sizeof (result->error), "refused by the store");
}

//  Answer the heartbeats that wait and whose member has no grant in flight.
static void
s_flush_waiters (herald_groups_t *self, s_group_t *group)
{
    if (!group->created)
        return;
    //  Those ready are taken off first: a reply does not touch the list
    zlistx_t *ready = zlistx_new ();
    s_waiter_t *waiter = (s_waiter_t *) zlistx_first (group->waiters);
    while (waiter) {
        s_member_t *member = s_member (group, waiter->member);
        bool granting = false;
        for (uint32_t index = 0; member && index < group->partitions && !granting; index++)
            granting = group->parts [index].owner == member
                    && group->parts [index].state == S_GRANTING;
        if (!granting) {
            zlistx_detach_cur (group->waiters);
            zlistx_add_end (ready, waiter);
            waiter = (s_waiter_t *) zlistx_first (group->waiters);
        }
        else
            waiter = (s_waiter_t *) zlistx_next (group->waiters);
    }
    while ((waiter = (s_waiter_t *) zlistx_detach (ready, NULL))) {
        s_reply_heartbeat (self, group, waiter->identity, waiter->rid, waiter->member);
        s_waiter_free (&waiter);
    }
    zlistx_destroy (&ready);
}

static void
s_grant_done (herald_groups_t *self, s_op_t *op, s_group_t *group, herald_err rc,
              const uint8_t *bytes, size_t len)
{
    s_result_t result;
    s_result (rc == HERALD_OK? bytes: NULL, len, "assigned", &result);
    for (size_t index = 0; index < op->part_count; index++) {
        s_part_t *part = &group->parts [op->parts [index]];
        if (part->state != S_GRANTING)
            continue;
        if (rc == HERALD_OK && result.ok && part->owner) {
            part->state = S_HELD;
            part->told = false;
            self->counts.grants++;
        }
        else
            *part = (s_part_t) { 0 };   //  not granted (or its member went): free
        //  A grant applied to a member gone: the partition is free at its
        //  new epoch (nobody was told of it)
        if (rc == HERALD_OK && result.ok && !part->owner)
            *part = (s_part_t) { 0 };
    }
    if (rc == HERALD_OK && !result.ok)
        herald_log ("warn", "group %s: a grant was refused: %s", group->name, result.error);
    msgpack_unpacked_destroy (&result.unpacked);
    group->dirty = true;
    s_flush_waiters (self, group);
}

static void
s_create_done (herald_groups_t *self, s_op_t *op, s_group_t *group, herald_err rc,
               const uint8_t *bytes, size_t len, const herald_error_t *err)
{
    (void) op;
    s_result_t result;
    s_result (rc == HERALD_OK? bytes: NULL, len, "created", &result);
    bool created = rc == HERALD_OK && result.ok;
    //  Made by another (its record may differ from the request's): the
    //  store's record is the group
    herald_group_record_t record = { 0 };
    herald_error_t get_err = { 0 };
    if (created && herald_store_group_get (self->store, group->name, &record, &get_err)
        != HERALD_OK) {
        created = false;
        snprintf (result.error, sizeof (result.error), "%.200s", get_err.message);
        rc = HERALD_ERR_IO;
    }
    if (!created) {
        s_waiter_t *waiter;
        while ((waiter = (s_waiter_t *) zlistx_detach (group->waiters, NULL))) {
            if (rc == HERALD_OK)
                s_refuse (self, waiter->identity, waiter->rid, HERALD_ERR_BAD_REQUEST, "%s",
                          result.error);
            else
                s_op_failed (self, waiter->identity, waiter->rid, rc, err);
            s_waiter_free (&waiter);
        }
        zhashx_delete (self->groups, group->name);
    }
    else {
        bool same = record.partitions == group->partitions
                 && herald_groups_same_prefixes (record.prefixes, record.prefix_count,
                                                 group->prefixes, group->prefix_count);
        if (!same) {
            char text [512];
            herald_groups_prefixes_text (record.prefixes, record.prefix_count, text,
                                         sizeof (text));
            s_waiter_t *waiter;
            while ((waiter = (s_waiter_t *) zlistx_detach (group->waiters, NULL))) {
                s_refuse (self, waiter->identity, waiter->rid, HERALD_ERR_BAD_REQUEST,
                          "prefixes: group '%s' has %u partitions and prefixes %s",
                          group->name, record.partitions, text);
                s_waiter_free (&waiter);
            }
            zhashx_delete (self->groups, group->name);
        }
        else {
            group->created = true;
            group->session_ms = record.session_ms;
            for (uint32_t index = 0; index < group->partitions; index++)
                group->parts [index].unknown = record.positions [index].epoch > 0
                                            && !group->parts [index].owner;
            group->dirty = true;
        }
    }
    herald_group_record_fini (&record);
    msgpack_unpacked_destroy (&result.unpacked);
}

static void
s_commit_done (herald_groups_t *self, s_op_t *op, const uint8_t *bytes, size_t len)
{
    s_result_t result;
    s_result (bytes, len, "fenced", &result);
    if (!result.ok) {
        s_refuse (self, op->identity, op->rid, HERALD_ERR_BAD_REQUEST, "%s", result.error);
        msgpack_unpacked_destroy (&result.unpacked);
        return;
    }
    self->counts.commits++;
    msgpack_packer pk;
    s_packer (self, &pk);
    msgpack_pack_map (&pk, 5);
    s_pack_uint (&pk, "rid", op->rid);
    s_pack_str (&pk, "op", "commit");
    s_pack_str (&pk, "group", op->group);
    s_pack_str (&pk, "member", op->member);
    s_pack_key (&pk, "fenced");
    const msgpack_object *fenced = result.value;
    size_t count = fenced && fenced->type == MSGPACK_OBJECT_ARRAY? fenced->via.array.size: 0;
    msgpack_pack_array (&pk, count);
    for (size_t index = 0; index < count; index++)
        msgpack_pack_uint64 (&pk, fenced->via.array.ptr [index].via.u64);
    self->counts.fenced += count;
    msgpack_unpacked_destroy (&result.unpacked);
    if (herald_reply_begin (self->reply->router, op->identity) == 0) {
        herald_reply_frame (self->reply->router, "GROUP", 5, true);
        herald_reply_frame (self->reply->router, self->buffer.data, self->buffer.size, false);
    }
    else
        herald_reply_dropped (self->reply, op->identity, "GROUP");
}

static void s_send (herald_groups_t *self, zframe_t *identity);

static void
s_reset_done (herald_groups_t *self, s_op_t *op, s_group_t *group, const uint8_t *bytes,
              size_t len)
{
    s_result_t result;
    s_result (bytes, len, NULL, &result);
    if (!result.ok) {
        s_refuse (self, op->identity, op->rid, HERALD_ERR_BAD_REQUEST, "%s", result.error);
        msgpack_unpacked_destroy (&result.unpacked);
        return;
    }
    msgpack_unpacked_destroy (&result.unpacked);
    //  Every partition revoked: each owner lets go, then it is granted
    //  again from the new position under a new epoch
    uint64_t fenced = 0;
    zlistx_t *owners = zlistx_new ();
    for (uint32_t index = 0; group && index < group->partitions; index++) {
        s_part_t *part = &group->parts [index];
        if (!part->owner)
            continue;
        part->revoking = true;
        if (!zlistx_find (owners, part->owner)) {
            zlistx_add_end (owners, part->owner);
            fenced++;
        }
    }
    zlistx_destroy (&owners);
    if (group)
        group->dirty = true;
    msgpack_packer pk;
    s_packer (self, &pk);
    msgpack_pack_map (&pk, 5);
    s_pack_uint (&pk, "rid", op->rid);
    s_pack_str (&pk, "op", "reset");
    s_pack_str (&pk, "group", op->group);
    s_pack_uint (&pk, "to", op->to);
    s_pack_uint (&pk, "fenced", fenced);
    s_send (self, op->identity);
}

static void
s_delete_done (herald_groups_t *self, s_op_t *op, const uint8_t *bytes, size_t len)
{
    s_result_t result;
    s_result (bytes, len, NULL, &result);
    if (!result.ok) {
        s_refuse (self, op->identity, op->rid, HERALD_ERR_BAD_REQUEST, "%s", result.error);
        msgpack_unpacked_destroy (&result.unpacked);
        return;
    }
    msgpack_unpacked_destroy (&result.unpacked);
    if (op->incarnation == self->incarnation)
        zhashx_delete (self->groups, op->group);
    msgpack_packer pk;
    s_packer (self, &pk);
    msgpack_pack_map (&pk, 3);
    s_pack_uint (&pk, "rid", op->rid);
    s_pack_str (&pk, "op", "delete");
    s_pack_str (&pk, "group", op->group);
    s_send (self, op->identity);
}

static void
s_op_done (void *arg, herald_err rc, const uint8_t *result, size_t result_len,
           const herald_error_t *err)
{
    s_op_t *op = (s_op_t *) arg;
    herald_groups_t *self = op->self;
    self->ops_inflight--;
    //  Sent in another serving term: what was kept in memory is gone
    s_group_t *group = op->incarnation == self->incarnation
                     ? (s_group_t *) zhashx_lookup (self->groups, op->group): NULL;
    if (op->kind == S_OP_GRANT) {
        if (group)
            s_grant_done (self, op, group, rc, result, result_len);
    }
    else
    if (op->kind == S_OP_CREATE) {
        if (group && !group->created)
            s_create_done (self, op, group, rc, result, result_len, err);
    }
    else
    if (rc != HERALD_OK)
        s_op_failed (self, op->identity, op->rid, rc, err);
    else
    if (op->kind == S_OP_COMMIT)
        s_commit_done (self, op, result, result_len);
    else
    if (op->kind == S_OP_RESET)
        s_reset_done (self, op, group, result, result_len);
    else
        s_delete_done (self, op, result, result_len);
    if (op->kind == S_OP_DELETE && group)
        group->deleting = false;
    s_op_free (op);
}

//  ---------------------------------------------------------------------
//  Assignment

typedef struct {
    s_member_t *member;
    uint32_t held;                      //  owned and not revoking
    uint32_t quota;
} s_share_t;

static int
s_share_by_held (const void *a, const void *b)
{
    const s_share_t *left = (const s_share_t *) a, *right = (const s_share_t *) b;
    if (left->held != right->held)
        return left->held > right->held? -1: 1;
    return strcmp (left->member->name, right->member->name);
}

static int
s_share_by_name (const void *a, const void *b)
{
    return strcmp (((const s_share_t *) a)->member->name, ((const s_share_t *) b)->member->name);
}

//  Revoke what is over quota and grant what is free (see DESIGN).
static void
s_rebalance (herald_groups_t *self, s_group_t *group)
{
    group->dirty = false;
    size_t count = zlistx_size (group->members);
    if (!group->created || group->deleting || count == 0)
        return;
    s_share_t *shares = (s_share_t *) zmalloc (count * sizeof (s_share_t));
    size_t at = 0;
    s_member_t *member = (s_member_t *) zlistx_first (group->members);
    for (; member; member = (s_member_t *) zlistx_next (group->members))
        shares [at++].member = member;
    for (uint32_t index = 0; index < group->partitions; index++) {
        s_part_t *part = &group->parts [index];
        for (at = 0; part->owner && !part->revoking && at < count; at++)
            if (shares [at].member == part->owner)
                shares [at].held++;
    }
    qsort (shares, count, sizeof (s_share_t), s_share_by_held);
    for (at = 0; at < count; at++)
        shares [at].quota = group->partitions / (uint32_t) count
                          + (at < group->partitions % count? 1: 0);
    qsort (shares, count, sizeof (s_share_t), s_share_by_name);
    bool changed = false;
    //  Keep the lowest partitions up to quota; the rest is to be let go
    for (at = 0; at < count; at++) {
        uint32_t kept = 0;
        for (uint32_t index = 0; index < group->partitions; index++) {
            s_part_t *part = &group->parts [index];
            if (part->owner != shares [at].member || part->revoking)
                continue;
            if (kept < shares [at].quota)
                kept++;
            else {
                part->revoking = true;
                changed = true;
            }
        }
        shares [at].held = kept;
    }
    //  Free partitions to members under quota, in name order
    bool grace = zclock_mono () < self->serving_since + (int64_t) group->session_ms;
    uint32_t *grants = (uint32_t *) zmalloc (group->partitions * sizeof (uint32_t));
    uint32_t next = 0;
    for (at = 0; at < count; at++) {
        size_t granted = 0;
        for (; next < group->partitions && shares [at].held < shares [at].quota; next++) {
            s_part_t *part = &group->parts [next];
            if (part->owner || part->state != S_FREE || (part->unknown && grace))
                continue;
            *part = (s_part_t) { .owner = shares [at].member, .state = S_GRANTING };
            grants [granted++] = next;
            shares [at].held++;
        }
        if (granted == 0)
            continue;
        changed = true;
        s_op_t *op = s_op_new (self, S_OP_GRANT, group->name, shares [at].member->name,
                               NULL, 0);
        op->parts = (uint32_t *) malloc (granted * sizeof (uint32_t));
        memcpy (op->parts, grants, granted * sizeof (uint32_t));
        op->part_count = granted;
        msgpack_packer pk;
        s_packer (self, &pk);
        msgpack_pack_map (&pk, 4);
        s_pack_str (&pk, "op", "grant");
        s_pack_str (&pk, "group", group->name);
        s_pack_str (&pk, "member", shares [at].member->name);
        s_pack_key (&pk, "partitions");
        msgpack_pack_array (&pk, granted);
        for (size_t index = 0; index < granted; index++)
            msgpack_pack_uint32 (&pk, grants [index]);
        s_op_send (self, op);
    }
    free (grants);
    free (shares);
    if (changed)
        self->counts.rebalances++;
}

//  ---------------------------------------------------------------------
//  Replies

static void
s_send (herald_groups_t *self, zframe_t *identity)
{
    if (herald_reply_begin (self->reply->router, identity) == 0) {
        herald_reply_frame (self->reply->router, "GROUP", 5, true);
        herald_reply_frame (self->reply->router, self->buffer.data, self->buffer.size, false);
    }
    else
        herald_reply_dropped (self->reply, identity, "GROUP");
}

static void
s_reply_heartbeat (herald_groups_t *self, s_group_t *group, zframe_t *identity, uint64_t rid,
                   const char *name)
{
    herald_group_record_t record = { 0 };
    herald_error_t err = { 0 };
    if (herald_store_group_get (self->store, group->name, &record, &err) != HERALD_OK) {
        s_refuse (self, identity, rid, HERALD_ERR_INTERNAL, "group '%s' cannot be read: %s",
                  group->name, err.message);
        return;
    }
    s_member_t *member = s_member (group, name);
    size_t assigned = 0;
    for (uint32_t index = 0; member && index < group->partitions; index++) {
        s_part_t *part = &group->parts [index];
        assigned += part->owner == member && part->state == S_HELD && !part->revoking;
    }
    msgpack_packer pk;
    s_packer (self, &pk);
    msgpack_pack_map (&pk, 11);
    s_pack_uint (&pk, "rid", rid);
    s_pack_str (&pk, "op", "heartbeat");
    s_pack_str (&pk, "group", group->name);
    s_pack_str (&pk, "member", name);
    s_pack_uint (&pk, "generation", group->generation);
    s_pack_uint (&pk, "partitions", group->partitions);
    s_pack_prefixes (&pk, record.prefixes, record.prefix_count);
    s_pack_uint (&pk, "session_ms", record.session_ms);
    s_pack_uint (&pk, "heartbeat_ms", record.session_ms / 6);
    s_pack_uint (&pk, "head", herald_store_head (self->store));
    s_pack_key (&pk, "assigned");
    msgpack_pack_array (&pk, assigned);
    for (uint32_t index = 0; member && index < group->partitions; index++) {
        s_part_t *part = &group->parts [index];
        if (part->owner != member || part->state != S_HELD || part->revoking)
            continue;
        part->told = true;
        msgpack_pack_map (&pk, 4);
        s_pack_uint (&pk, "partition", index);
        s_pack_uint (&pk, "epoch", record.positions [index].epoch);
        s_pack_uint (&pk, "committed", record.positions [index].committed);
        s_pack_uint (&pk, "delivered", record.positions [index].delivered);
    }
    herald_group_record_fini (&record);
    s_send (self, identity);
}

//  ---------------------------------------------------------------------
//  Requests

//  The group's record into *record: HERALD_OK, or answered (no group:
//  bad_request; a store failure: internal) and false.
static bool
s_record (herald_groups_t *self, zframe_t *identity, uint64_t rid, const char *name,
          herald_group_record_t *record)
{
    herald_error_t err = { 0 };
    herald_err rc = herald_store_group_get (self->store, name, record, &err);
    if (rc == HERALD_OK)
        return true;
    if (rc == HERALD_ERR_NOT_FOUND)
        s_refuse (self, identity, rid, HERALD_ERR_BAD_REQUEST, "no group '%s'", name);
    else
        s_refuse (self, identity, rid, HERALD_ERR_INTERNAL, "group '%s' cannot be read: %s",
                  name, err.message);
    return false;
}

//  Each listed partition below the group's count, else answered.
static bool
s_in_range (herald_groups_t *self, zframe_t *identity, uint64_t rid, const char *field,
            const uint64_t *tuples, size_t count, size_t width, uint32_t partitions)
{
    for (size_t index = 0; index < count; index++)
        if (tuples [index * width] >= partitions) {
            s_refuse (self, identity, rid, HERALD_ERR_BAD_REQUEST, "%s[%zu]: partition %"
                      PRIu64 " is not below the group's %u partitions", field, index,
                      tuples [index * width], partitions);
            return false;
        }
    return true;
}

static bool
s_granting (s_group_t *group, s_member_t *member)
{
    for (uint32_t index = 0; member && index < group->partitions; index++)
        if (group->parts [index].owner == member && group->parts [index].state == S_GRANTING)
            return true;
    return false;
}

//  The member's `owned`: what it let go is free; what it claims under the
//  current epoch, held by nobody, is its own.
static void
s_claims (s_group_t *group, s_member_t *member, const herald_groups_req_t *req,
          const herald_group_record_t *record)
{
    uint64_t *claim = (uint64_t *) zmalloc (group->partitions * sizeof (uint64_t));
    bool *claimed = (bool *) zmalloc (group->partitions * sizeof (bool));
    for (size_t index = 0; index < req->owned_count; index++) {
        claimed [req->owned [index * 2]] = true;
        claim [req->owned [index * 2]] = req->owned [index * 2 + 1];
    }
    for (uint32_t index = 0; index < group->partitions; index++) {
        s_part_t *part = &group->parts [index];
        if (part->owner == member) {
            //  Let go: only what it knew it had (a grant it has not heard
            //  of yet is not in its `owned`)
            if (!claimed [index] && part->state == S_HELD && (part->told || part->revoking)) {
                *part = (s_part_t) { 0 };
                group->dirty = true;
            }
        }
        else
        if (!part->owner && part->state == S_FREE && claimed [index] && claim [index] > 0
        &&  record && claim [index] == record->positions [index].epoch) {
            *part = (s_part_t) { .owner = member, .state = S_HELD, .told = true };
            group->dirty = true;
        }
    }
    free (claim);
    free (claimed);
}

static void
s_heartbeat (herald_groups_t *self, zframe_t *identity, herald_groups_req_t *req,
             const herald_acl_user_t *user)
{
    s_group_t *group = (s_group_t *) zhashx_lookup (self->groups, req->group);
    herald_group_record_t record = { 0 };
    herald_error_t err = { 0 };
    herald_err rc = herald_store_group_get (self->store, req->group, &record, &err);
    if (rc != HERALD_OK && rc != HERALD_ERR_NOT_FOUND) {
        s_refuse (self, identity, req->rid, HERALD_ERR_INTERNAL, "group '%s' cannot be read: "
                  "%s", req->group, err.message);
        return;
    }
    bool stored = rc == HERALD_OK;
    char **prefixes = group? group->prefixes: stored? record.prefixes: req->prefixes;
    size_t prefix_count = group? group->prefix_count: stored? record.prefix_count
                                                           : req->prefix_count;
    uint32_t partitions = group? group->partitions: stored? record.partitions
                        : req->has_partitions? (uint32_t) req->partitions
                        : HERALD_GROUPS_PARTITIONS_DEFAULT;
    if (user && !herald_guard_group (self->guard, user, identity, "heartbeat", req->group,
                                     prefixes, prefix_count, req->rid))
        goto done;
    if ((group || stored)
    &&  (!herald_groups_same_prefixes (req->prefixes, req->prefix_count, prefixes, prefix_count)
    ||   (req->has_partitions && req->partitions != partitions))) {
        char text [512];
        herald_groups_prefixes_text (prefixes, prefix_count, text, sizeof (text));
        s_refuse (self, identity, req->rid, HERALD_ERR_BAD_REQUEST, "prefixes: group '%s' has "
                  "%u partitions and prefixes %s", req->group, partitions, text);
        goto done;
    }
    if (group && group->deleting) {
        s_refuse (self, identity, req->rid, HERALD_ERR_BAD_REQUEST, "group '%s' is "
                  "being deleted", req->group);
        goto done;
    }
    if (!s_in_range (self, identity, req->rid, "owned", req->owned, req->owned_count, 2,
                     partitions))
        goto done;
    if (!group && stored)
        group = s_group_load (self, &record);
    if (!group) {
        //  The first heartbeat makes the group
        uint32_t session = req->has_session? (uint32_t) req->session_ms
                                           : HERALD_GROUPS_SESSION_DEFAULT;
        group = s_group_new (req->group, partitions, session, req->prefixes, req->prefix_count);
        zhashx_insert (self->groups, group->name, group);
        struct timespec now;
        clock_gettime (CLOCK_REALTIME, &now);
        s_op_t *op = s_op_new (self, S_OP_CREATE, req->group, NULL, NULL, 0);
        msgpack_packer pk;
        s_packer (self, &pk);
        msgpack_pack_map (&pk, 7);
        s_pack_str (&pk, "op", "create");
        s_pack_str (&pk, "group", req->group);
        s_pack_prefixes (&pk, req->prefixes, req->prefix_count);
        s_pack_uint (&pk, "partitions", partitions);
        s_pack_uint (&pk, "session_ms", session);
        s_pack_uint (&pk, "from", req->has_from? req->from: 1);
        s_pack_uint (&pk, "ts", (uint64_t) now.tv_sec * 1000000000ULL
                                + (uint64_t) now.tv_nsec);
        s_op_send (self, op);
    }
    s_member_t *member = s_member (group, req->member);
    if (!member)
        member = s_member_add (group, req->member);
    member->seen = zclock_mono ();
    if (group->created)
        s_claims (group, member, req, stored? &record: NULL);
    s_rebalance (self, group);
    if (group->created && !s_granting (group, member))
        s_reply_heartbeat (self, group, identity, req->rid, req->member);
    else {
        s_waiter_t *waiter = (s_waiter_t *) zmalloc (sizeof (s_waiter_t));
        waiter->identity = zframe_dup (identity);
        waiter->rid = req->rid;
        waiter->member = strdup (req->member);
        zlistx_add_end (group->waiters, waiter);
    }
done:
    herald_group_record_fini (&record);
}

static void
s_commit (herald_groups_t *self, zframe_t *identity, herald_groups_req_t *req,
          const herald_acl_user_t *user)
{
    herald_group_record_t record = { 0 };
    if (!s_record (self, identity, req->rid, req->group, &record))
        return;
    if ((!user || herald_guard_group (self->guard, user, identity, "commit", req->group,
                                      record.prefixes, record.prefix_count, req->rid))
    &&  s_in_range (self, identity, req->rid, "positions", req->positions,
                    req->position_count, 4, record.partitions)) {
        s_op_t *op = s_op_new (self, S_OP_COMMIT, req->group, req->member, identity, req->rid);
        msgpack_packer pk;
        s_packer (self, &pk);
        msgpack_pack_map (&pk, 4);
        s_pack_str (&pk, "op", "commit");
        s_pack_str (&pk, "group", req->group);
        s_pack_str (&pk, "member", req->member);
        s_pack_key (&pk, "positions");
        msgpack_pack_array (&pk, req->position_count);
        for (size_t index = 0; index < req->position_count; index++) {
            msgpack_pack_array (&pk, 4);
            for (size_t at = 0; at < 4; at++)
                msgpack_pack_uint64 (&pk, req->positions [index * 4 + at]);
        }
        s_op_send (self, op);
    }
    herald_group_record_fini (&record);
}

static void
s_leave (herald_groups_t *self, zframe_t *identity, herald_groups_req_t *req,
         const herald_acl_user_t *user)
{
    herald_group_record_t record = { 0 };
    herald_error_t err = { 0 };
    bool stored = herald_store_group_get (self->store, req->group, &record, &err) == HERALD_OK;
    s_group_t *group = (s_group_t *) zhashx_lookup (self->groups, req->group);
    //  A group not known anywhere has nothing to guard: answered all the same
    bool allowed = !user || (!group && !stored)
                || herald_guard_group (self->guard, user, identity, "leave", req->group,
                                       group? group->prefixes: record.prefixes,
                                       group? group->prefix_count: record.prefix_count,
                                       req->rid);
    herald_group_record_fini (&record);
    if (!allowed)
        return;
    s_member_t *member = group? s_member (group, req->member): NULL;
    if (member) {
        s_member_remove (group, member);
        herald_log ("info", "group %s: member %s left", group->name, req->member);
        s_rebalance (self, group);
        s_flush_waiters (self, group);
    }
    msgpack_packer pk;
    s_packer (self, &pk);
    msgpack_pack_map (&pk, 4);
    s_pack_uint (&pk, "rid", req->rid);
    s_pack_str (&pk, "op", "leave");
    s_pack_str (&pk, "group", req->group);
    s_pack_str (&pk, "member", req->member);
    s_send (self, identity);
}

//  The lowest committed of the partitions whose owner is member (any
//  member: NULL and all true); false when there is none.
static bool
s_lowest (const herald_group_record_t *record, s_group_t *group, s_member_t *member, bool all,
          uint64_t *lowest)
{
    bool found = false;
    for (uint32_t index = 0; index < record->partitions; index++) {
        if (!all && (!group || index >= group->partitions
                     || group->parts [index].owner != member))
            continue;
        if (!found || record->positions [index].committed < *lowest)
            *lowest = record->positions [index].committed;
        found = true;
    }
    return found;
}

static void
s_list (herald_groups_t *self, zframe_t *identity, herald_groups_req_t *req,
        const herald_acl_user_t *user)
{
    char **names = NULL;
    size_t count = 0;
    herald_error_t err = { 0 };
    if (herald_store_group_names (self->store, &names, &count, &err) != HERALD_OK) {
        s_refuse (self, identity, req->rid, HERALD_ERR_INTERNAL, "the groups cannot be "
                  "listed: %s", err.message);
        return;
    }
    herald_group_record_t *records = (herald_group_record_t *)
        zmalloc ((count? count: 1) * sizeof (herald_group_record_t));
    size_t shown = 0;
    for (size_t index = 0; index < count; index++) {
        herald_group_record_t *record = &records [shown];
        if (herald_store_group_get (self->store, names [index], record, &err) != HERALD_OK)
            continue;                   //  deleted since, or unreadable: not listed
        if (user && !herald_guard_may_read_group (user, record->prefixes, record->prefix_count))
            herald_group_record_fini (record);
        else
            shown++;
    }
    uint64_t head = herald_store_head (self->store);
    msgpack_packer pk;
    s_packer (self, &pk);
    msgpack_pack_map (&pk, 4);
    s_pack_uint (&pk, "rid", req->rid);
    s_pack_str (&pk, "op", "list");
    s_pack_uint (&pk, "head", head);
    s_pack_key (&pk, "groups");
    msgpack_pack_array (&pk, shown);
    for (size_t index = 0; index < shown; index++) {
        herald_group_record_t *record = &records [index];
        s_group_t *group = (s_group_t *) zhashx_lookup (self->groups, record->name);
        uint64_t committed = 0;
        s_lowest (record, NULL, NULL, true, &committed);
        msgpack_pack_map (&pk, 7);
        s_pack_str (&pk, "group", record->name);
        s_pack_uint (&pk, "partitions", record->partitions);
        s_pack_prefixes (&pk, record->prefixes, record->prefix_count);
        s_pack_uint (&pk, "generation", group? group->generation: record->epoch);
        s_pack_uint (&pk, "members", group? zlistx_size (group->members): 0);
        s_pack_uint (&pk, "committed", committed);
        s_pack_uint (&pk, "lag", head > committed? head - committed: 0);
        herald_group_record_fini (record);
    }
    free (records);
    for (size_t index = 0; index < count; index++)
        free (names [index]);
    free (names);
    s_send (self, identity);
}

static void
s_show (herald_groups_t *self, zframe_t *identity, herald_groups_req_t *req,
        const herald_acl_user_t *user)
{
    herald_group_record_t record = { 0 };
    if (!s_record (self, identity, req->rid, req->group, &record))
        return;
    if (user && !herald_guard_group (self->guard, user, identity, "show", req->group,
                                     record.prefixes, record.prefix_count, req->rid)) {
        herald_group_record_fini (&record);
        return;
    }
    s_group_t *group = (s_group_t *) zhashx_lookup (self->groups, req->group);
    if (group && group->partitions != record.partitions)
        group = NULL;                   //  deleted and made again since: not this one
    uint64_t head = herald_store_head (self->store);
    int64_t now = zclock_mono ();
    msgpack_packer pk;
    s_packer (self, &pk);
    msgpack_pack_map (&pk, 11);
    s_pack_uint (&pk, "rid", req->rid);
    s_pack_str (&pk, "op", "show");
    s_pack_str (&pk, "group", req->group);
    s_pack_uint (&pk, "head", head);
    s_pack_uint (&pk, "partitions", record.partitions);
    s_pack_prefixes (&pk, record.prefixes, record.prefix_count);
    s_pack_uint (&pk, "session_ms", record.session_ms);
    s_pack_uint (&pk, "generation", group? group->generation: record.epoch);
    s_pack_uint (&pk, "created", record.created);
    s_pack_key (&pk, "members");
    msgpack_pack_array (&pk, group? zlistx_size (group->members): 0);
    s_member_t *member = group? (s_member_t *) zlistx_first (group->members): NULL;
    for (; member; member = (s_member_t *) zlistx_next (group->members)) {
        msgpack_pack_map (&pk, 5);
        s_pack_str (&pk, "member", member->name);
        s_pack_key (&pk, "partitions");
        size_t owned = 0;
        for (uint32_t index = 0; index < group->partitions; index++)
            owned += group->parts [index].owner == member;
        msgpack_pack_array (&pk, owned);
        for (uint32_t index = 0; index < group->partitions; index++)
            if (group->parts [index].owner == member)
                msgpack_pack_uint32 (&pk, index);
        uint64_t committed = 0;
        if (s_lowest (&record, group, member, false, &committed)) {
            s_pack_uint (&pk, "committed", committed);
            s_pack_uint (&pk, "lag", head > committed? head - committed: 0);
        }
        else {
            s_pack_str (&pk, "committed", NULL);
            s_pack_str (&pk, "lag", NULL);
        }
        s_pack_uint (&pk, "seen_ms", (uint64_t) (now - member->seen));
    }
    s_pack_key (&pk, "positions");
    msgpack_pack_array (&pk, record.partitions);
    for (uint32_t index = 0; index < record.partitions; index++) {
        s_part_t *part = group? &group->parts [index]: NULL;
        msgpack_pack_map (&pk, 5);
        s_pack_uint (&pk, "partition", index);
        s_pack_uint (&pk, "committed", record.positions [index].committed);
        s_pack_uint (&pk, "delivered", record.positions [index].delivered);
        s_pack_uint (&pk, "epoch", record.positions [index].epoch);
        s_pack_str (&pk, "owner", part && part->owner && part->state == S_HELD
                                  ? part->owner->name: NULL);
    }
    herald_group_record_fini (&record);
    s_send (self, identity);
}

static void
s_reset (herald_groups_t *self, zframe_t *identity, herald_groups_req_t *req,
         const herald_acl_user_t *user)
{
    herald_group_record_t record = { 0 };
    if (!s_record (self, identity, req->rid, req->group, &record))
        return;
    bool allowed = !user || herald_guard_group (self->guard, user, identity, "reset",
                                                req->group, record.prefixes,
                                                record.prefix_count, req->rid);
    herald_group_record_fini (&record);
    if (!allowed)
        return;
    uint64_t to = req->to;
    herald_error_t err = { 0 };
    if (req->has_to_ts
    &&  herald_store_seq_at_ts (self->store, req->to_ts, &to, &err) != HERALD_OK) {
        s_refuse (self, identity, req->rid, HERALD_ERR_INTERNAL, "to_ts: the time index "
                  "cannot be read: %s", err.message);
        return;
    }
    s_op_t *op = s_op_new (self, S_OP_RESET, req->group, NULL, identity, req->rid);
    op->to = to;
    msgpack_packer pk;
    s_packer (self, &pk);
    msgpack_pack_map (&pk, 3);
    s_pack_str (&pk, "op", "reset");
    s_pack_str (&pk, "group", req->group);
    s_pack_uint (&pk, "to", to);
    s_op_send (self, op);
}

static void
s_delete (herald_groups_t *self, zframe_t *identity, herald_groups_req_t *req,
          const herald_acl_user_t *user)
{
    herald_group_record_t record = { 0 };
    if (!s_record (self, identity, req->rid, req->group, &record))
        return;
    bool allowed = !user || herald_guard_group (self->guard, user, identity, "delete",
                                                req->group, record.prefixes,
                                                record.prefix_count, req->rid);
    herald_group_record_fini (&record);
    if (!allowed)
        return;
    s_group_t *group = (s_group_t *) zhashx_lookup (self->groups, req->group);
    size_t members = group? zlistx_size (group->members): 0;
    if (members) {
        s_refuse (self, identity, req->rid, HERALD_ERR_BAD_REQUEST, "group '%s' has "
                  "%zu member%s; stop them first", req->group, members, members == 1? "": "s");
        return;
    }
    if (group)
        group->deleting = true;
    s_op_t *op = s_op_new (self, S_OP_DELETE, req->group, NULL, identity, req->rid);
    msgpack_packer pk;
    s_packer (self, &pk);
    msgpack_pack_map (&pk, 2);
    s_pack_str (&pk, "op", "delete");
    s_pack_str (&pk, "group", req->group);
    s_op_send (self, op);
}

//  ---------------------------------------------------------------------
//  The interface

herald_groups_t *
herald_groups_new (herald_store_t *store, herald_commit_t *commit, herald_reply_t *reply,
                   herald_node_t *node, herald_guard_t *guard)
{
    herald_groups_t *self = (herald_groups_t *) zmalloc (sizeof (herald_groups_t));
    self->store = store;
    self->commit = commit;
    self->reply = reply;
    self->node = node;
    self->guard = guard;
    self->groups = zhashx_new ();
    zhashx_set_destructor (self->groups, s_group_destroy);
    char leader [256];
    self->serving = s_leads (self, leader, sizeof (leader));
    self->serving_since = zclock_mono ();
    msgpack_sbuffer_init (&self->buffer);
    return self;
}

void
herald_groups_destroy (herald_groups_t **self_p)
{
    herald_groups_t *self = *self_p;
    if (!self)
        return;
    //  Heartbeats still waiting are answered (the broker stops: another
    //  node, or this one restarted, serves them)
    s_forget (self);
    zhashx_destroy (&self->groups);
    msgpack_sbuffer_destroy (&self->buffer);
    free (self);
    *self_p = NULL;
}

bool
herald_groups_is_request (zframe_t *command)
{
    return command && zframe_streq (command, "GROUP");
}

void
herald_groups_request (herald_groups_t *self, zframe_t *identity, zframe_t *body,
                       const herald_acl_user_t *user)
{
    herald_groups_req_t req;
    herald_error_t err;
    if (herald_groups_decode (body? zframe_data (body): NULL, body? zframe_size (body): 0,
                              &req, &err) != HERALD_OK) {
        herald_reply_err (self->reply, identity, &err);
        return;
    }
    char leader [256];
    if (!s_leads (self, leader, sizeof (leader)) || !self->serving)
        s_not_leader (self, identity, req.rid, false);
    else
    if (user && (req.op == HERALD_GROUPS_RESET || req.op == HERALD_GROUPS_DELETE)
    &&  !herald_guard_admin (self->guard, user, identity, HERALD_ACL_ADMIN_GROUPS, "GROUP",
                             true, req.rid))
        ;                               //  answered unauthorized
    else
    switch (req.op) {
        case HERALD_GROUPS_HEARTBEAT: s_heartbeat (self, identity, &req, user); break;
        case HERALD_GROUPS_COMMIT:    s_commit (self, identity, &req, user);    break;
        case HERALD_GROUPS_LEAVE:     s_leave (self, identity, &req, user);     break;
        case HERALD_GROUPS_LIST:      s_list (self, identity, &req, user);      break;
        case HERALD_GROUPS_SHOW:      s_show (self, identity, &req, user);      break;
        case HERALD_GROUPS_RESET:     s_reset (self, identity, &req, user);     break;
        case HERALD_GROUPS_DELETE:    s_delete (self, identity, &req, user);    break;
    }
    herald_groups_req_fini (&req);
}

int64_t
herald_groups_tick (herald_groups_t *self)
{
    char leader [256];
    bool serving = s_leads (self, leader, sizeof (leader));
    if (serving != self->serving) {
        s_forget (self);
        self->serving = serving;
        self->serving_since = zclock_mono ();
        if (self->node)
            herald_log ("info", "groups: %s", serving? "serving GROUP (members are learned "
                        "from their heartbeats)": "no longer leader: sessions forgotten");
    }
    if (!serving)
        return -1;
    int64_t now = zclock_mono (), wait = -1;
    s_group_t *group = (s_group_t *) zhashx_first (self->groups);
    for (; group; group = (s_group_t *) zhashx_next (self->groups)) {
        //  Sessions not heard of for session_ms end
        s_member_t *member = (s_member_t *) zlistx_first (group->members);
        while (member) {
            int64_t due = member->seen + (int64_t) group->session_ms;
            if (due <= now) {
                herald_log ("info", "group %s: member %s expired (no heartbeat for %u ms)",
                            group->name, member->name, group->session_ms);
                s_member_remove (group, member);
                self->counts.expired++;
                member = (s_member_t *) zlistx_first (group->members);
                continue;
            }
            if (wait < 0 || due - now < wait)
                wait = due - now;
            member = (s_member_t *) zlistx_next (group->members);
        }
        int64_t grace = self->serving_since + (int64_t) group->session_ms;
        bool unknown = false;
        for (uint32_t index = 0; index < group->partitions && !unknown; index++)
            unknown = group->parts [index].unknown;
        if (unknown && grace <= now)
            group->dirty = true;        //  the grace is over: grant what nobody claimed
        else
        if (unknown && zlistx_size (group->members) && (wait < 0 || grace - now < wait))
            wait = grace - now;
        if (group->dirty) {
            s_rebalance (self, group);
            s_flush_waiters (self, group);
        }
    }
    return wait;
}

void
herald_groups_counts (herald_groups_t *self, herald_groups_counts_t *counts)
{
    *counts = self->counts;
    counts->groups = zhashx_size (self->groups);
    counts->members = 0;
    s_group_t *group = (s_group_t *) zhashx_first (self->groups);
    for (; group; group = (s_group_t *) zhashx_next (self->groups))
        counts->members += zlistx_size (group->members);
}
