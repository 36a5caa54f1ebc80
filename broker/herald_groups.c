/*  =========================================================================
    herald_groups - the broker's consumer-group coordinator: GROUP

    DESIGN

    In memory, per group the node serving GROUP knows: its members (name,
    when last heard), and per partition its owner and whether the owner
    was told of it, must let it go (revoking), or is being granted it (a
    grant op in flight).  Positions and epochs are in the store and change
    only through ops (herald_commit_op); a reply that shows positions reads
    them from the store after the op it waited for was applied.

    Assignment (herald_groups_rebalance), sticky and balanced: with n members and P
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
    passed since (its old owner's lease has ended by then), plus on a
    cluster node the election timeout: an old leader cut off from its
    majority keeps answering heartbeats (renewing leases) until libraft
    makes it step down, up to an election timeout after its last contact
    with a majority, and this node may have been elected before that.
    Losing leadership forgets everything; waiting clients get not_leader.

    Bounds (DESIGN.md: memory bounded whatever clients do): every new
    group name would be a group in the store and in memory, and every new
    member name a member, so a heartbeat that would make a group beyond
    max_groups (kept in the store, or being made) or a member beyond
    max_members is refused `overloaded` and changes nothing.  Members that
    expire or leave free their slot; a group's slot is freed by delete.
    =========================================================================
*/

#include <inttypes.h>
#include "herald_groups_priv.h"
#include "herald_log.h"

static int
    s_member_compare (const void *a, const void *b);

//  ---------------------------------------------------------------------
//  Errors

void
herald_groups_refuse (herald_groups_t *self, zframe_t *identity, uint64_t rid, herald_err code,
                      const char *format, ...)
{
    char message [HERALD_ERROR_MESSAGE_MAX];
    va_list args;
    va_start (args, format);
    vsnprintf (message, sizeof (message), format, args);
    va_end (args);
    herald_reply_refusal (self->reply, identity, rid, code, message, 0);
}

//  True when this node may serve GROUP (a cluster: it leads, in term
//  *term); else leader is the leader's api ("").
static bool
s_leads (herald_groups_t *self, char *leader, size_t size, uint64_t *term)
{
    leader [0] = 0;
    *term = 0;
    if (!self->node)
        return true;
    herald_raft_state_t state;
    herald_node_state (self->node, &state);
    *term = state.term;
    if (state.role == HERALD_RAFT_LEADER && herald_node_raft (self->node))
        return true;
    snprintf (leader, size, "%s", state.leader_api);
    return false;
}

bool
herald_groups_leads (herald_groups_t *self, char *leader, size_t size)
{
    uint64_t term;
    return s_leads (self, leader, size, &term);
}

//  True when this node serves GROUP right now, in the term its memory
//  belongs to: asked again when a heartbeat is answered, so that one
//  whose reply waited (for a grant) while leadership was lost, or lost
//  and won again, is answered not_leader and renews no lease.
bool
herald_groups_serving (herald_groups_t *self)
{
    char leader [256];
    uint64_t term;
    return s_leads (self, leader, sizeof (leader), &term) && self->serving
        && term == self->serving_term;
}

void
herald_groups_not_leader (herald_groups_t *self, zframe_t *identity, uint64_t rid, bool unknown)
{
    char leader [256], message [512];
    herald_groups_leads (self, leader, sizeof (leader));
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
void
herald_groups_op_failed (herald_groups_t *self, zframe_t *identity, uint64_t rid, herald_err rc,
                         const herald_error_t *err)
{
    if (rc == HERALD_ERR_NOT_LEADER)
        herald_groups_not_leader (self, identity, rid, true);
    else
    if (rc == HERALD_ERR_OVERLOADED)
        herald_reply_refusal (self->reply, identity, rid, HERALD_ERR_OVERLOADED,
                              err && *err->message? err->message
                                                  : "the broker is stopping or its queue is "
                                                    "full; retry", 1000);
    else
        herald_groups_refuse (self, identity, rid, HERALD_ERR_INTERNAL,
                              "the group's change failed: %s",
                              err && *err->message? err->message: herald_strerror (rc));
}

//  ---------------------------------------------------------------------
//  Groups and members in memory

herald_groups_group_t *
herald_groups_group_new (const char *name, uint32_t partitions, uint32_t session_ms,
                         char **prefixes, size_t prefix_count)
{
    herald_groups_group_t *group
        = (herald_groups_group_t *) zmalloc (sizeof (herald_groups_group_t));
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
    group->graced = true;               //  a new group: no partition was granted
    group->parts = (herald_groups_part_t *)
        zmalloc (partitions * sizeof (herald_groups_part_t));
    return group;
}

void
herald_groups_waiter_free (herald_groups_waiter_t **waiter_p)
{
    if (!*waiter_p)
        return;
    zframe_destroy (&(*waiter_p)->identity);
    free ((*waiter_p)->member);
    free (*waiter_p);
    *waiter_p = NULL;
}

void
herald_groups_group_destroy (void **item)
{
    herald_groups_group_t *group = (herald_groups_group_t *) *item;
    if (!group)
        return;
    herald_groups_member_t *member;
    while ((member = (herald_groups_member_t *) zlistx_detach (group->members, NULL))) {
        free (member->name);
        free (member);
    }
    zlistx_destroy (&group->members);
    herald_groups_waiter_t *waiter;
    while ((waiter = (herald_groups_waiter_t *) zlistx_detach (group->waiters, NULL)))
        herald_groups_waiter_free (&waiter);
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
herald_groups_group_t *
herald_groups_group_load (herald_groups_t *self, const herald_group_record_t *record)
{
    herald_groups_group_t *group = herald_groups_group_new (record->name, record->partitions,
                                                            record->session_ms,
                                    record->prefixes, record->prefix_count);
    group->created = true;
    group->generation = record->epoch;  //  grows across starts, as epochs do
    group->graced = true;
    for (uint32_t index = 0; index < group->partitions; index++)
        if ((group->parts [index].unknown = record->positions [index].epoch > 0))
            group->graced = false;
    zhashx_insert (self->groups, group->name, group);
    return group;
}

herald_groups_member_t *
herald_groups_member (herald_groups_group_t *group, const char *name)
{
    herald_groups_member_t *member = (herald_groups_member_t *) zlistx_first (group->members);
    for (; member; member = (herald_groups_member_t *) zlistx_next (group->members))
        if (streq (member->name, name))
            return member;
    return NULL;
}

static int
s_member_compare (const void *a, const void *b)
{
    return strcmp (((const herald_groups_member_t *) a)->name,
                   ((const herald_groups_member_t *) b)->name);
}

//  A new member, in name order: the assignment's order.
herald_groups_member_t *
herald_groups_member_add (herald_groups_group_t *group, const char *name)
{
    herald_groups_member_t *member
        = (herald_groups_member_t *) zmalloc (sizeof (herald_groups_member_t));
    member->name = strdup (name);
    zlistx_insert (group->members, member, true);
    group->generation++;
    group->dirty = true;
    return member;
}

//  The member's partitions freed now (it left or expired): a grant in
//  flight stays (its done frees it).
void
herald_groups_member_remove (herald_groups_group_t *group, herald_groups_member_t *member)
{
    for (uint32_t index = 0; index < group->partitions; index++) {
        herald_groups_part_t *part = &group->parts [index];
        if (part->owner == member) {
            if (part->state == HERALD_GROUPS_GRANTING)
                part->owner = NULL;     //  freed when its grant comes back
            else
                *part = (herald_groups_part_t) { 0 };
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
    herald_groups_group_t *group = (herald_groups_group_t *) zhashx_first (self->groups);
    for (; group; group = (herald_groups_group_t *) zhashx_next (self->groups)) {
        herald_groups_waiter_t *waiter;
        while ((waiter = (herald_groups_waiter_t *) zlistx_detach (group->waiters, NULL))) {
            if (self->reply->router)
                herald_groups_not_leader (self, waiter->identity, waiter->rid, false);
            herald_groups_waiter_free (&waiter);
        }
    }
    zhashx_purge (self->groups);
    self->incarnation++;
    self->stored_known = false;
}

//  ---------------------------------------------------------------------
//  Assignment

typedef struct {
    herald_groups_member_t *member;
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
    return strcmp (((const s_share_t *) a)->member->name,
                   ((const s_share_t *) b)->member->name);
}

//  Revoke what is over quota and grant what is free (see DESIGN).
void
herald_groups_rebalance (herald_groups_t *self, herald_groups_group_t *group)
{
    group->dirty = false;
    size_t count = zlistx_size (group->members);
    if (!group->created || group->deleting || count == 0)
        return;
    s_share_t *shares = (s_share_t *) zmalloc (count * sizeof (s_share_t));
    size_t at = 0;
    herald_groups_member_t *member = (herald_groups_member_t *) zlistx_first (group->members);
    for (; member; member = (herald_groups_member_t *) zlistx_next (group->members))
        shares [at++].member = member;
    for (uint32_t index = 0; index < group->partitions; index++) {
        herald_groups_part_t *part = &group->parts [index];
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
            herald_groups_part_t *part = &group->parts [index];
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
    bool grace = zclock_mono () < herald_groups_grace_end (self, group);
    uint32_t *grants = (uint32_t *) zmalloc (group->partitions * sizeof (uint32_t));
    uint32_t next = 0;
    for (at = 0; at < count; at++) {
        size_t granted = 0;
        for (; next < group->partitions && shares [at].held < shares [at].quota; next++) {
            herald_groups_part_t *part = &group->parts [next];
            if (part->owner || part->state != HERALD_GROUPS_FREE || (part->unknown && grace))
                continue;
            *part = (herald_groups_part_t) { .owner = shares [at].member,
                .state = HERALD_GROUPS_GRANTING };
            grants [granted++] = next;
            shares [at].held++;
        }
        if (granted == 0)
            continue;
        changed = true;
        herald_groups_opctx_t *op = herald_groups_op_new (self, HERALD_GROUPS_OP_GRANT,
                                                          group->name, shares [at].member->name,
                               NULL, 0);
        op->parts = (uint32_t *) malloc (granted * sizeof (uint32_t));
        memcpy (op->parts, grants, granted * sizeof (uint32_t));
        op->part_count = granted;
        msgpack_packer pk;
        herald_groups_packer (self, &pk);
        msgpack_pack_map (&pk, 4);
        herald_groups_pack_str (&pk, "op", "grant");
        herald_groups_pack_str (&pk, "group", group->name);
        herald_groups_pack_str (&pk, "member", shares [at].member->name);
        herald_groups_pack_key (&pk, "partitions");
        msgpack_pack_array (&pk, granted);
        for (size_t index = 0; index < granted; index++)
            msgpack_pack_uint32 (&pk, grants [index]);
        herald_groups_op_send (self, op);
    }
    free (grants);
    free (shares);
    if (changed)
        self->counts.rebalances++;
}

//  ---------------------------------------------------------------------
//  Sessions, grace and bounds

void
herald_groups_expire (herald_groups_t *self, herald_groups_group_t *group, int64_t now,
                      int64_t *wait)
{
    //  Sessions not heard of for session_ms end
    herald_groups_member_t *member = (herald_groups_member_t *) zlistx_first (group->members);
    while (member) {
        int64_t due = member->seen + (int64_t) group->session_ms;
        if (due <= now) {
            herald_log ("info", "group %s: member %s expired (no heartbeat for %u ms)",
                        group->name, member->name, group->session_ms);
            herald_groups_member_remove (group, member);
            self->counts.expired++;
            member = (herald_groups_member_t *) zlistx_first (group->members);
            continue;
        }
        if (*wait < 0 || due - now < *wait)
            *wait = due - now;
        member = (herald_groups_member_t *) zlistx_next (group->members);
    }
}

int64_t
herald_groups_grace_end (herald_groups_t *self, herald_groups_group_t *group)
{
    return self->serving_since + (int64_t) group->session_ms + (int64_t) self->grace_extra_ms;
}

//  The groups counted against max_groups: those the store keeps and
//  those being made (in memory, their create op in flight; left out of
//  the store's count, so that one applied and not yet done counts once).
static herald_err
s_group_count (herald_groups_t *self, size_t *count, herald_error_t *err)
{
    uint64_t applied = herald_store_applied_index (self->store);
    if (!self->stored_known || applied != self->stored_applied) {
        char **names = NULL;
        size_t total = 0;
        herald_err rc = herald_store_group_names (self->store, &names, &total, err);
        if (rc != HERALD_OK)
            return rc;
        self->stored = 0;
        for (size_t index = 0; index < total; index++) {
            herald_groups_group_t *group
                = (herald_groups_group_t *) zhashx_lookup (self->groups, names [index]);
            if (!group || group->created)
                self->stored++;
            free (names [index]);
        }
        free (names);
        self->stored_known = true;
        self->stored_applied = applied;
    }
    size_t making = 0;
    herald_groups_group_t *group = (herald_groups_group_t *) zhashx_first (self->groups);
    for (; group; group = (herald_groups_group_t *) zhashx_next (self->groups))
        making += !group->created;
    *count = self->stored + making;
    return HERALD_OK;
}

bool
herald_groups_room_for_group (herald_groups_t *self, zframe_t *identity, uint64_t rid)
{
    size_t count = 0;
    herald_error_t err = { 0 };
    if (s_group_count (self, &count, &err) != HERALD_OK) {
        herald_groups_refuse (self, identity, rid, HERALD_ERR_INTERNAL,
                              "the groups cannot be counted: %s", err.message);
        return false;
    }
    if (count < self->max_groups)
        return true;
    self->counts.refused++;
    char message [HERALD_ERROR_MESSAGE_MAX];
    snprintf (message, sizeof (message), "group limit reached: %zu groups (max-groups); "
              "delete unused groups with `herald group delete`", self->max_groups);
    herald_reply_refusal (self->reply, identity, rid, HERALD_ERR_OVERLOADED, message, 0);
    return false;
}

bool
herald_groups_room_for_member (herald_groups_t *self, herald_groups_group_t *group,
                               zframe_t *identity, uint64_t rid)
{
    if (zlistx_size (group->members) >= self->max_members) {
        //  One whose session ended frees its slot now, not at the next turn
        int64_t wait = -1;
        herald_groups_expire (self, group, zclock_mono (), &wait);
    }
    if (zlistx_size (group->members) < self->max_members)
        return true;
    self->counts.refused++;
    char message [HERALD_ERROR_MESSAGE_MAX];
    snprintf (message, sizeof (message), "member limit reached: group '%s' has %zu members "
              "(max-group-members); a member that leaves or expires frees its slot",
              group->name, self->max_members);
    //  A slot frees when a member expires: at the latest a session from now
    herald_reply_refusal (self->reply, identity, rid, HERALD_ERR_OVERLOADED, message,
                          group->session_ms);
    return false;
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
    zhashx_set_destructor (self->groups, herald_groups_group_destroy);
    char leader [256];
    self->serving = s_leads (self, leader, sizeof (leader), &self->serving_term);
    self->serving_since = zclock_mono ();
    msgpack_sbuffer_init (&self->buffer);
    self->max_groups = 1024;
    self->max_members = 256;
    return self;
}

void
herald_groups_configure (herald_groups_t *self, size_t max_groups, size_t max_members,
                         uint64_t grace_extra_ms)
{
    self->max_groups = max_groups;
    self->max_members = max_members;
    self->grace_extra_ms = grace_extra_ms;
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

int64_t
herald_groups_tick (herald_groups_t *self)
{
    char leader [256];
    uint64_t term;
    bool serving = s_leads (self, leader, sizeof (leader), &term);
    //  Leadership lost, won, or lost and won again since the last turn
    //  (another leader may have granted meanwhile): memory starts afresh
    if (serving != self->serving || (serving && term != self->serving_term)) {
        s_forget (self);
        self->serving = serving;
        self->serving_term = term;
        self->serving_since = zclock_mono ();
        if (self->node)
            herald_log ("info", "groups: %s", serving? "serving GROUP (members are learned "
                        "from their heartbeats)": "no longer leader: sessions forgotten");
    }
    if (!serving)
        return -1;
    int64_t now = zclock_mono (), wait = -1;
    herald_groups_group_t *group = (herald_groups_group_t *) zhashx_first (self->groups);
    for (; group; group = (herald_groups_group_t *) zhashx_next (self->groups)) {
        herald_groups_expire (self, group, now, &wait);
        int64_t grace = herald_groups_grace_end (self, group);
        if (!group->graced && grace <= now) {
            //  The grace is over: what nobody claimed is free to grant
            for (uint32_t index = 0; index < group->partitions; index++)
                group->parts [index].unknown = false;
            group->graced = true;
            group->dirty = true;
        }
        else
        if (!group->graced && zlistx_size (group->members) && (wait < 0 || grace - now < wait))
            wait = grace - now;
        if (group->dirty) {
            herald_groups_rebalance (self, group);
            herald_groups_flush_waiters (self, group);
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
    herald_groups_group_t *group = (herald_groups_group_t *) zhashx_first (self->groups);
    for (; group; group = (herald_groups_group_t *) zhashx_next (self->groups))
        counts->members += zlistx_size (group->members);
}
