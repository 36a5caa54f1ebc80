/*  =========================================================================
    herald_groups_serve - the GROUP requests: heartbeat, commit, leave,
    list, show, reset, delete (docs/protocol.md "Consumer groups")

    Each is decoded and checked first (herald_groups_request.c), then
    refused off the leader (not_leader) and, with security on, unless
    the user may read every prefix of the group (and holds admin =
    groups for reset and delete).
    =========================================================================
*/

#include <inttypes.h>
#include "herald_groups_priv.h"
#include "herald_log.h"

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
        herald_groups_refuse (self, identity, rid, HERALD_ERR_BAD_REQUEST, "no group '%s'",
                              name);
    else
        herald_groups_refuse (self, identity, rid, HERALD_ERR_INTERNAL,
                              "group '%s' cannot be read: %s", name, err.message);
    return false;
}

//  Each listed partition below the group's count, else answered.
static bool
s_in_range (herald_groups_t *self, zframe_t *identity, uint64_t rid, const char *field,
            const uint64_t *tuples, size_t count, size_t width, uint32_t partitions)
{
    for (size_t index = 0; index < count; index++)
        if (tuples [index * width] >= partitions) {
            herald_groups_refuse (self, identity, rid, HERALD_ERR_BAD_REQUEST,
                                  "%s[%zu]: partition %" PRIu64 " is not below the "
                                  "group's %u partitions",
                                  field, index, tuples [index * width], partitions);
            return false;
        }
    return true;
}

static bool
s_granting (herald_groups_group_t *group, herald_groups_member_t *member)
{
    for (uint32_t index = 0; member && index < group->partitions; index++)
        if (group->parts [index].owner == member
        &&  group->parts [index].state == HERALD_GROUPS_GRANTING)
            return true;
    return false;
}

//  The member's `owned`: what it let go is free; what it claims under the
//  current epoch, held by nobody, is its own.
static void
s_claims (herald_groups_group_t *group, herald_groups_member_t *member,
          const herald_groups_req_t *req,
          const herald_group_record_t *record)
{
    uint64_t *claim = (uint64_t *) zmalloc (group->partitions * sizeof (uint64_t));
    bool *claimed = (bool *) zmalloc (group->partitions * sizeof (bool));
    for (size_t index = 0; index < req->owned_count; index++) {
        claimed [req->owned [index * 2]] = true;
        claim [req->owned [index * 2]] = req->owned [index * 2 + 1];
    }
    for (uint32_t index = 0; index < group->partitions; index++) {
        herald_groups_part_t *part = &group->parts [index];
        if (part->owner == member) {
            //  Let go: only what it knew it had (a grant it has not heard
            //  of yet is not in its `owned`)
            if (!claimed [index] && part->state == HERALD_GROUPS_HELD
            &&  (part->told || part->revoking)) {
                *part = (herald_groups_part_t) { 0 };
                group->dirty = true;
            }
        }
        else
        if (!part->owner && part->state == HERALD_GROUPS_FREE && claimed [index]
        &&  claim [index] > 0
        &&  record && claim [index] == record->positions [index].epoch) {
            *part = (herald_groups_part_t) { .owner = member, .state = HERALD_GROUPS_HELD,
                .told = true };
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
    herald_groups_group_t *group = (herald_groups_group_t *) zhashx_lookup (self->groups,
                                                                            req->group);
    herald_group_record_t record = { 0 };
    herald_error_t err = { 0 };
    herald_err rc = herald_store_group_get (self->store, req->group, &record, &err);
    if (rc != HERALD_OK && rc != HERALD_ERR_NOT_FOUND) {
        herald_groups_refuse (self, identity, req->rid, HERALD_ERR_INTERNAL,
                              "group '%s' cannot be read: " "%s", req->group, err.message);
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
        herald_groups_refuse (self, identity, req->rid, HERALD_ERR_BAD_REQUEST,
                              "prefixes: group '%s' has " "%u partitions and prefixes %s",
                              req->group, partitions, text);
        goto done;
    }
    if (group && group->deleting) {
        herald_groups_refuse (self, identity, req->rid, HERALD_ERR_BAD_REQUEST,
                              "group '%s' is " "being deleted", req->group);
        goto done;
    }
    if (!s_in_range (self, identity, req->rid, "owned", req->owned, req->owned_count, 2,
                     partitions))
        goto done;
    //  A new group, or a new member, only within the limits
    if (!group && !stored && !herald_groups_room_for_group (self, identity, req->rid))
        goto done;
    if (!group && stored)
        group = herald_groups_group_load (self, &record);
    if (group && !herald_groups_member (group, req->member)
    &&  !herald_groups_room_for_member (self, group, identity, req->rid))
        goto done;
    if (!group) {
        //  The first heartbeat makes the group
        uint32_t session = req->has_session? (uint32_t) req->session_ms
                                           : HERALD_GROUPS_SESSION_DEFAULT;
        group = herald_groups_group_new (req->group, partitions, session, req->prefixes,
                                         req->prefix_count);
        zhashx_insert (self->groups, group->name, group);
        struct timespec now;
        clock_gettime (CLOCK_REALTIME, &now);
        herald_groups_opctx_t *op = herald_groups_op_new (self, HERALD_GROUPS_OP_CREATE,
                                                          req->group, NULL, NULL, 0);
        msgpack_packer pk;
        herald_groups_packer (self, &pk);
        msgpack_pack_map (&pk, 7);
        herald_groups_pack_str (&pk, "op", "create");
        herald_groups_pack_str (&pk, "group", req->group);
        herald_groups_pack_prefixes (&pk, req->prefixes, req->prefix_count);
        herald_groups_pack_uint (&pk, "partitions", partitions);
        herald_groups_pack_uint (&pk, "session_ms", session);
        herald_groups_pack_uint (&pk, "from", req->has_from? req->from: 1);
        herald_groups_pack_uint (&pk, "ts", (uint64_t) now.tv_sec * 1000000000ULL
                                            + (uint64_t) now.tv_nsec);
        herald_groups_op_send (self, op);
    }
    herald_groups_member_t *member = herald_groups_member (group, req->member);
    if (!member)
        member = herald_groups_member_add (group, req->member);
    member->seen = zclock_mono ();
    if (group->created)
        s_claims (group, member, req, stored? &record: NULL);
    herald_groups_rebalance (self, group);
    if (group->created && !s_granting (group, member))
        herald_groups_reply_heartbeat (self, group, identity, req->rid, req->member);
    else {
        herald_groups_waiter_t *waiter
            = (herald_groups_waiter_t *) zmalloc (sizeof (herald_groups_waiter_t));
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
        herald_groups_opctx_t *op = herald_groups_op_new (self, HERALD_GROUPS_OP_COMMIT,
                                                          req->group, req->member, identity,
                                                          req->rid);
        msgpack_packer pk;
        herald_groups_packer (self, &pk);
        msgpack_pack_map (&pk, 4);
        herald_groups_pack_str (&pk, "op", "commit");
        herald_groups_pack_str (&pk, "group", req->group);
        herald_groups_pack_str (&pk, "member", req->member);
        herald_groups_pack_key (&pk, "positions");
        msgpack_pack_array (&pk, req->position_count);
        for (size_t index = 0; index < req->position_count; index++) {
            msgpack_pack_array (&pk, 4);
            for (size_t at = 0; at < 4; at++)
                msgpack_pack_uint64 (&pk, req->positions [index * 4 + at]);
        }
        herald_groups_op_send (self, op);
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
    herald_groups_group_t *group = (herald_groups_group_t *) zhashx_lookup (self->groups,
                                                                            req->group);
    //  A group not known anywhere has nothing to guard: answered all the same
    bool allowed = !user || (!group && !stored)
                || herald_guard_group (self->guard, user, identity, "leave", req->group,
                                       group? group->prefixes: record.prefixes,
                                       group? group->prefix_count: record.prefix_count,
                                       req->rid);
    herald_group_record_fini (&record);
    if (!allowed)
        return;
    herald_groups_member_t *member = group? herald_groups_member (group, req->member): NULL;
    if (member) {
        herald_groups_member_remove (group, member);
        herald_log ("info", "group %s: member %s left", group->name, req->member);
        herald_groups_rebalance (self, group);
        herald_groups_flush_waiters (self, group);
    }
    msgpack_packer pk;
    herald_groups_packer (self, &pk);
    msgpack_pack_map (&pk, 4);
    herald_groups_pack_uint (&pk, "rid", req->rid);
    herald_groups_pack_str (&pk, "op", "leave");
    herald_groups_pack_str (&pk, "group", req->group);
    herald_groups_pack_str (&pk, "member", req->member);
    herald_groups_send (self, identity);
}

//  True when member holds partition index: its grant is written (what
//  show gives as the partition's owner).
static bool
s_holds (herald_groups_group_t *group, herald_groups_member_t *member, uint32_t index)
{
    return group && index < group->partitions && group->parts [index].owner == member
        && group->parts [index].state == HERALD_GROUPS_HELD;
}

//  The lowest committed of the partitions member holds (any member: NULL
//  and all true); false when there is none.
static bool
s_lowest (const herald_group_record_t *record, herald_groups_group_t *group,
          herald_groups_member_t *member, bool all,
          uint64_t *lowest)
{
    bool found = false;
    for (uint32_t index = 0; index < record->partitions; index++) {
        if (!all && !s_holds (group, member, index))
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
        herald_groups_refuse (self, identity, req->rid, HERALD_ERR_INTERNAL,
                              "the groups cannot be " "listed: %s", err.message);
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
    herald_groups_packer (self, &pk);
    msgpack_pack_map (&pk, 4);
    herald_groups_pack_uint (&pk, "rid", req->rid);
    herald_groups_pack_str (&pk, "op", "list");
    herald_groups_pack_uint (&pk, "head", head);
    herald_groups_pack_key (&pk, "groups");
    msgpack_pack_array (&pk, shown);
    for (size_t index = 0; index < shown; index++) {
        herald_group_record_t *record = &records [index];
        herald_groups_group_t *group = (herald_groups_group_t *) zhashx_lookup (self->groups,
                                                                                record->name);
        uint64_t committed = 0;
        s_lowest (record, NULL, NULL, true, &committed);
        msgpack_pack_map (&pk, 7);
        herald_groups_pack_str (&pk, "group", record->name);
        herald_groups_pack_uint (&pk, "partitions", record->partitions);
        herald_groups_pack_prefixes (&pk, record->prefixes, record->prefix_count);
        herald_groups_pack_uint (&pk, "generation", group? group->generation: record->epoch);
        herald_groups_pack_uint (&pk, "members", group? zlistx_size (group->members): 0);
        herald_groups_pack_uint (&pk, "committed", committed);
        herald_groups_pack_uint (&pk, "lag", head > committed? head - committed: 0);
        herald_group_record_fini (record);
    }
    free (records);
    for (size_t index = 0; index < count; index++)
        free (names [index]);
    free (names);
    herald_groups_send (self, identity);
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
    herald_groups_group_t *group = (herald_groups_group_t *) zhashx_lookup (self->groups,
                                                                            req->group);
    if (group && group->partitions != record.partitions)
        group = NULL;                   //  deleted and made again since: not this one
    uint64_t head = herald_store_head (self->store);
    int64_t now = zclock_mono ();
    msgpack_packer pk;
    herald_groups_packer (self, &pk);
    msgpack_pack_map (&pk, 11);
    herald_groups_pack_uint (&pk, "rid", req->rid);
    herald_groups_pack_str (&pk, "op", "show");
    herald_groups_pack_str (&pk, "group", req->group);
    herald_groups_pack_uint (&pk, "head", head);
    herald_groups_pack_uint (&pk, "partitions", record.partitions);
    herald_groups_pack_prefixes (&pk, record.prefixes, record.prefix_count);
    herald_groups_pack_uint (&pk, "session_ms", record.session_ms);
    herald_groups_pack_uint (&pk, "generation", group? group->generation: record.epoch);
    herald_groups_pack_uint (&pk, "created", record.created);
    herald_groups_pack_key (&pk, "members");
    msgpack_pack_array (&pk, group? zlistx_size (group->members): 0);
    herald_groups_member_t *member
        = group? (herald_groups_member_t *) zlistx_first (group->members): NULL;
    for (; member; member = (herald_groups_member_t *) zlistx_next (group->members)) {
        msgpack_pack_map (&pk, 5);
        herald_groups_pack_str (&pk, "member", member->name);
        herald_groups_pack_key (&pk, "partitions");
        //  What it holds, as positions' owner says (not a grant being written)
        size_t owned = 0;
        for (uint32_t index = 0; index < group->partitions; index++)
            owned += s_holds (group, member, index);
        msgpack_pack_array (&pk, owned);
        for (uint32_t index = 0; index < group->partitions; index++)
            if (s_holds (group, member, index))
                msgpack_pack_uint32 (&pk, index);
        uint64_t committed = 0;
        if (s_lowest (&record, group, member, false, &committed)) {
            herald_groups_pack_uint (&pk, "committed", committed);
            herald_groups_pack_uint (&pk, "lag", head > committed? head - committed: 0);
        }
        else {
            herald_groups_pack_str (&pk, "committed", NULL);
            herald_groups_pack_str (&pk, "lag", NULL);
        }
        herald_groups_pack_uint (&pk, "seen_ms", (uint64_t) (now - member->seen));
    }
    herald_groups_pack_key (&pk, "positions");
    msgpack_pack_array (&pk, record.partitions);
    for (uint32_t index = 0; index < record.partitions; index++) {
        herald_groups_part_t *part = group? &group->parts [index]: NULL;
        msgpack_pack_map (&pk, 5);
        herald_groups_pack_uint (&pk, "partition", index);
        herald_groups_pack_uint (&pk, "committed", record.positions [index].committed);
        herald_groups_pack_uint (&pk, "delivered", record.positions [index].delivered);
        herald_groups_pack_uint (&pk, "epoch", record.positions [index].epoch);
        bool held = part && part->owner && part->state == HERALD_GROUPS_HELD;
        herald_groups_pack_str (&pk, "owner", held? part->owner->name: NULL);
    }
    herald_group_record_fini (&record);
    herald_groups_send (self, identity);
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
        herald_groups_refuse (self, identity, req->rid, HERALD_ERR_INTERNAL,
                              "to_ts: the time index " "cannot be read: %s", err.message);
        return;
    }
    herald_groups_opctx_t *op = herald_groups_op_new (self, HERALD_GROUPS_OP_RESET,
                                                      req->group, NULL, identity, req->rid);
    op->to = to;
    msgpack_packer pk;
    herald_groups_packer (self, &pk);
    msgpack_pack_map (&pk, 3);
    herald_groups_pack_str (&pk, "op", "reset");
    herald_groups_pack_str (&pk, "group", req->group);
    herald_groups_pack_uint (&pk, "to", to);
    herald_groups_op_send (self, op);
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
    herald_groups_group_t *group = (herald_groups_group_t *) zhashx_lookup (self->groups,
                                                                            req->group);
    size_t members = group? zlistx_size (group->members): 0;
    if (members) {
        herald_groups_refuse (self, identity, req->rid, HERALD_ERR_BAD_REQUEST,
                              "group '%s' has " "%zu member%s; stop them first", req->group,
                              members, members == 1? "": "s");
        return;
    }
    if (group)
        group->deleting = true;
    herald_groups_opctx_t *op = herald_groups_op_new (self, HERALD_GROUPS_OP_DELETE,
                                                      req->group, NULL, identity, req->rid);
    msgpack_packer pk;
    herald_groups_packer (self, &pk);
    msgpack_pack_map (&pk, 2);
    herald_groups_pack_str (&pk, "op", "delete");
    herald_groups_pack_str (&pk, "group", req->group);
    herald_groups_op_send (self, op);
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
    if (!herald_groups_serving (self))
        herald_groups_not_leader (self, identity, req.rid, false);
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
