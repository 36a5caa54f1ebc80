/*  =========================================================================
    herald_groups_priv - what herald_groups.c and herald_groups_request.c
    share: a GROUP request decoded and checked (herald_groups_decode)
    =========================================================================
*/

#ifndef HERALD_GROUPS_PRIV_H_INCLUDED
#define HERALD_GROUPS_PRIV_H_INCLUDED

#include "herald_groups.h"
#include "herald_store_groups.h"

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
