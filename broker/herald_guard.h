/*  =========================================================================
    herald_guard - each api request checked against the ACL in force

    The broker loop's side of security (SECURITY.md §3.5, docs/security.md
    "Enforcement"): who sent a request (User-Id and Key, which the ZAP
    handler attached to every frame of the connection), looked up in the
    table in force (herald_auth), and what that user may do with each
    command.  A refusal is ERROR `unauthorized` (counted, audited) and
    says nothing about data the user may not see: a READ of a forbidden
    topic gets the same bytes whether the topic exists or not.

    Made only with security on; with it off the broker has none and every
    request is served as before.
    =========================================================================
*/

#ifndef HERALD_GUARD_H_INCLUDED
#define HERALD_GUARD_H_INCLUDED

#include <czmq.h>
#include "herald_auth.h"
#include "herald_commit.h"
#include "herald_reply.h"
#include "herald_streams.h"

typedef struct _herald_guard_t herald_guard_t;

//  A guard over auth's table for a broker's store, replies and streams
//  (all borrowed).  Caller owns.
herald_guard_t *
    herald_guard_new (herald_auth_t *auth, const herald_config_t *config,
                      herald_store_t *store, herald_reply_t *reply, herald_streams_t *streams);

void
    herald_guard_destroy (herald_guard_t **self_p);

//  Admit a request (command and body as received; body may be NULL):
//  its user, or NULL when refused (ERROR unauthorized answered, or a
//  CREDIT/CANCEL dropped).  A routing id whose streams belong to another
//  user has them dropped first (herald_streams_take_over).  The user is
//  valid until the next herald_auth_tick.
const herald_acl_user_t *
    herald_guard_admit (herald_guard_t *self, zframe_t *identity, zframe_t *command,
                        zframe_t *body, herald_msg_type_t type);

//  True when user holds the admin grant (herald_acl_admin_t bit); else
//  answers ERROR unauthorized to rid (has_rid false: nil) and returns false.
bool
    herald_guard_admin (herald_guard_t *self, const herald_acl_user_t *user, zframe_t *identity,
                        unsigned grant, const char *command, bool has_rid, uint64_t rid);

//  May user read every topic under each of a consumer group's prefixes
//  (count 0: every topic, so `read = *` only)?
bool
    herald_guard_may_read_group (const herald_acl_user_t *user, char **prefixes, size_t count);

//  GROUP op on group (its prefixes): true when user may read all of them
//  (herald_guard_may_read_group); else answers ERROR unauthorized to rid,
//  audited with the group, and returns false.
bool
    herald_guard_group (herald_guard_t *self, const herald_acl_user_t *user, zframe_t *identity,
                        const char *op, const char *group, char **prefixes, size_t count,
                        uint64_t rid);

//  Open a REPLAY (its prefixes narrowed to the user's read set: a broader
//  prefix is replaced by the read prefixes under it, a disjoint one
//  refuses the request) or a READ (its topic must be readable), bound to
//  user (and the key of the request herald_guard_admit admitted last),
//  within its stream quota.  Answers the ERROR itself.
void
    herald_guard_stream (herald_guard_t *self, const herald_acl_user_t *user,
                         zframe_t *identity, herald_msg_t *request);

//  The group commit's checks (herald_commit_set_guard): every topic of a
//  PUBLISH publishable when it arrives, and, just before its commit is
//  proposed, a duplicate's stored (or earlier proposed) topic too, or the
//  whole request is refused and nothing of it stored; the same once
//  applied, as a last line.
void
    herald_guard_commit (herald_guard_t *self, herald_commit_t *commit);

//  WELCOME's security keys (user, scope, read, publish, admin,
//  acl_version) appended to more (the cluster's raw keys, or none) in
//  buffer; *fanout set to the endpoint this user may use (NULL: none).
herald_msg_raw_t
    herald_guard_welcome (herald_guard_t *self, const herald_acl_user_t *user,
                          herald_msg_raw_t more, msgpack_sbuffer *buffer, const char **fanout);

//  STATUS: whether user sees the operator keys, and the security keys
//  (acl_version, a str) appended to more in buffer.
bool
    herald_guard_status_all (herald_guard_t *self, const herald_acl_user_t *user);
herald_msg_raw_t
    herald_guard_status_raw (herald_guard_t *self, herald_msg_raw_t more,
                             msgpack_sbuffer *buffer);

//  ACL {rid, op} from a user that holds `admin acl` (herald_guard_admin
//  checked it): reload answers ACL {rid, op, acl_version, previous, users,
//  scopes, revoked} or, the file refused, ERROR bad_request naming
//  PATH:LINE (internal when it cannot be read), the old table kept; show
//  answers the table in force (docs/protocol.md "Security: the ACL
//  command").  After a reload the admitted user is stale: not used again.
void
    herald_guard_acl (herald_guard_t *self, const herald_acl_user_t *user, zframe_t *identity,
                      const herald_msg_t *request);

//  After herald_auth_tick said the rights may have changed: end the
//  streams the table in force no longer allows.  Returns how many.
size_t
    herald_guard_revoke (herald_guard_t *self);

#endif
