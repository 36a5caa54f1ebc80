/*  =========================================================================
    herald_groups_priv - what the coordinator's files share: its state
    (herald_groups.c: memory and assignment; herald_groups_ops.c: ops and
    their replies; herald_groups_serve.c: the requests), and a GROUP
    request decoded and checked (herald_groups_request.c)
    =========================================================================
*/

#ifndef HERALD_GROUPS_PRIV_H_INCLUDED
#define HERALD_GROUPS_PRIV_H_INCLUDED

#include "herald_groups.h"
#include "herald_store_groups.h"

//  ---------------------------------------------------------------------
//  The coordinator's state (herald_groups.c's DESIGN)

typedef struct {
    char *name;
    int64_t seen;                       //  zclock_mono of its last heartbeat
} herald_groups_member_t;

typedef enum {
    HERALD_GROUPS_FREE, HERALD_GROUPS_HELD, HERALD_GROUPS_GRANTING
} herald_groups_state_t;

typedef struct {
    herald_groups_member_t *owner;                  //  NULL: free
    herald_groups_state_t state;
    bool revoking;                      //  the owner must let it go
    bool told;                          //  a reply listed it to its owner
    bool unknown;                       //  since the start: maybe held by one not heard
} herald_groups_part_t;

typedef struct {
    zframe_t *identity;
    uint64_t rid;
    char *member;
} herald_groups_waiter_t;

typedef struct {
    char *name;
    uint32_t partitions, session_ms;
    char **prefixes;
    size_t prefix_count;
    bool created;                       //  false while its create op is in flight
    bool deleting;
    uint64_t generation;
    zlistx_t *members;                  //  herald_groups_member_t *, sorted by name
    herald_groups_part_t *parts;
    zlistx_t *waiters;                  //  heartbeats waiting for their grants
    bool dirty;                         //  rebalance at the next turn
    bool graced;                        //  no partition is unknown (the grace is over)
} herald_groups_group_t;

typedef enum {
    HERALD_GROUPS_OP_CREATE, HERALD_GROUPS_OP_GRANT, HERALD_GROUPS_OP_COMMIT,
    HERALD_GROUPS_OP_RESET, HERALD_GROUPS_OP_DELETE
} herald_groups_kind_t;

typedef struct {
    herald_groups_t *self;
    herald_groups_kind_t kind;
    uint64_t incarnation;               //  the serving term it was sent in
    char *group;
    char *member;
    zframe_t *identity;                 //  the client waiting (commit, reset, delete)
    uint64_t rid;
    uint64_t to;
    uint32_t *parts;                    //  a grant's
    size_t part_count;
} herald_groups_opctx_t;

struct _herald_groups_t {
    herald_store_t *store;
    herald_commit_t *commit;
    herald_reply_t *reply;
    herald_node_t *node;
    herald_guard_t *guard;
    zhashx_t *groups;                   //  name -> herald_groups_group_t
    bool serving;
    uint64_t serving_term;              //  the Raft term it serves in (0 standalone)
    int64_t serving_since;              //  zclock_mono
    uint64_t incarnation;
    size_t ops_inflight;
    herald_groups_counts_t counts;
    msgpack_sbuffer buffer;
    size_t max_groups, max_members;     //  herald_groups_configure
    uint64_t grace_extra_ms;
    //  The groups the store keeps, but those in memory being made: read
    //  again only once it may have changed (an op made or deleted one, a
    //  Raft entry was applied), so that a client refused over and over
    //  costs no scan of the store
    size_t stored;
    bool stored_known;
    uint64_t stored_applied;            //  the store's applied index when read
};

//  herald_groups.c: answers, memory, assignment
void
    herald_groups_refuse (herald_groups_t *self, zframe_t *identity, uint64_t rid,
                          herald_err code, const char *format, ...);

bool
    herald_groups_leads (herald_groups_t *self, char *leader, size_t size);

bool
    herald_groups_serving (herald_groups_t *self);

void
    herald_groups_not_leader (herald_groups_t *self, zframe_t *identity, uint64_t rid,
                              bool unknown);

void
    herald_groups_op_failed (herald_groups_t *self, zframe_t *identity, uint64_t rid,
                             herald_err rc, const herald_error_t *err);

herald_groups_group_t *
    herald_groups_group_new (const char *name, uint32_t partitions, uint32_t session_ms,
                             char **prefixes, size_t prefix_count);

herald_groups_group_t *
    herald_groups_group_load (herald_groups_t *self, const herald_group_record_t *record);

void
    herald_groups_group_destroy (void **item);

herald_groups_member_t *
    herald_groups_member (herald_groups_group_t *group, const char *name);

herald_groups_member_t *
    herald_groups_member_add (herald_groups_group_t *group, const char *name);

void
    herald_groups_member_remove (herald_groups_group_t *group, herald_groups_member_t *member);

void
    herald_groups_rebalance (herald_groups_t *self, herald_groups_group_t *group);

//  Expire the group's members not heard of for its session_ms (now:
//  zclock_mono); the ms until the next is due into *wait (kept when
//  sooner, -1: none).
void
    herald_groups_expire (herald_groups_t *self, herald_groups_group_t *group, int64_t now,
                          int64_t *wait);

//  When the grace after serving began ends for group (zclock_mono):
//  session_ms, plus the election timeout on a cluster node.
int64_t
    herald_groups_grace_end (herald_groups_t *self, herald_groups_group_t *group);

//  True when one more group may be made; else answered overloaded (or
//  internal, the store unreadable), counted, and false.
bool
    herald_groups_room_for_group (herald_groups_t *self, zframe_t *identity, uint64_t rid);

//  True when group may take one more member (members due to expire are
//  expired first); else answered overloaded, counted, and false.
bool
    herald_groups_room_for_member (herald_groups_t *self, herald_groups_group_t *group,
                                   zframe_t *identity, uint64_t rid);


//  herald_groups_ops.c: ops through the group commit, and replies
herald_groups_opctx_t *
    herald_groups_op_new (herald_groups_t *self, herald_groups_kind_t kind, const char *group,
                          const char *member, zframe_t *identity, uint64_t rid);

void
    herald_groups_op_send (herald_groups_t *self, herald_groups_opctx_t *op);

void
    herald_groups_pack_key (msgpack_packer *pk, const char *key);

void
    herald_groups_pack_str (msgpack_packer *pk, const char *key, const char *value);

void
    herald_groups_pack_uint (msgpack_packer *pk, const char *key, uint64_t value);

void
    herald_groups_pack_prefixes (msgpack_packer *pk, char **prefixes, size_t count);

void
    herald_groups_packer (herald_groups_t *self, msgpack_packer *pk);

void
    herald_groups_flush_waiters (herald_groups_t *self, herald_groups_group_t *group);

void
    herald_groups_reply_heartbeat (herald_groups_t *self, herald_groups_group_t *group,
                                   zframe_t *identity, uint64_t rid, const char *name);

void
    herald_groups_send (herald_groups_t *self, zframe_t *identity);

void
    herald_groups_waiter_free (herald_groups_waiter_t **waiter_p);


typedef enum {
    HERALD_GROUPS_HEARTBEAT = 1, HERALD_GROUPS_COMMIT, HERALD_GROUPS_LEAVE,
    HERALD_GROUPS_LIST, HERALD_GROUPS_SHOW, HERALD_GROUPS_RESET, HERALD_GROUPS_DELETE
} herald_groups_op_t;

#define HERALD_GROUPS_SESSION_MIN       300
#define HERALD_GROUPS_SESSION_MAX       60000
#define HERALD_GROUPS_SESSION_DEFAULT   3000
#define HERALD_GROUPS_PARTITIONS_DEFAULT 32

//  A GROUP request body, every key checked for its type and range (what
//  needs the group, such as a partition below its count, is checked by
//  the coordinator).  Strings are NUL-terminated copies.
typedef struct {
    uint64_t rid;
    herald_groups_op_t op;
    const char *op_name;                //  static
    char group [HERALD_GROUP_NAME_MAX + 1];
    char member [HERALD_GROUP_NAME_MAX + 1];
    char **prefixes;                    //  sorted, no duplicates; NULL when none
    size_t prefix_count;
    uint64_t *owned;                    //  [partition, epoch] pairs
    size_t owned_count;
    uint64_t *positions;                //  [partition, epoch, committed, delivered]
    size_t position_count;
    bool has_partitions, has_session, has_from, has_to, has_to_ts;
    uint64_t partitions, session_ms, from, to, to_ts;
} herald_groups_req_t;

//  Decode body into req (zeroed first).  HERALD_OK, or the error to answer
//  in err (has_rid false when the rid is missing or not a uint).
herald_err
    herald_groups_decode (const uint8_t *body, size_t len, herald_groups_req_t *req,
                          herald_error_t *err);

//  Free what req holds.  NULL-safe.
void
    herald_groups_req_fini (herald_groups_req_t *req);

//  True when the two sorted prefix sets are the same.
bool
    herald_groups_same_prefixes (char **a, size_t a_count, char **b, size_t b_count);

//  "a", "b", ... into out: a set of prefixes for people ("every topic"
//  when none).
void
    herald_groups_prefixes_text (char **prefixes, size_t count, char *out, size_t size);

#endif
