/*  =========================================================================
    herald_auth - the broker's security: ZAP handler, ACL in force, reload

    With --curve-secret every broker socket is a CURVE server, and libzmq
    asks the ZAP handler bound at inproc://zeromq.zap.01 (RFC 27) whether
    to admit each client key.  This class is that handler, run in the
    broker loop (a ROUTER polled beside the api socket), and it holds the
    ACL table in force, which the loop's per-request checks
    (herald_guard) read too: one table, no copy, no lock.

    It must be bound BEFORE any CURVE socket: without a handler libzmq
    4.3.4 admits every key (SECURITY.md exp 1), so heraldd makes this
    first and exits 1 when the bind fails.  It never answers 300 (that
    hangs the handshake): 200 with User-Id = the user's name and the
    metadata Key (the Z85 key used) and Scope (the scope's name, `*` for
    read-all, `-` for none); 400 with `unknown key`, `key expired` or
    `not allowed on DOMAIN`; 500 on a request it cannot read.

    Reload: the ACL file is stat()ed (inode, size, mtime ns) every
    acl-check-ms and at once on herald_auth_reload (SIGHUP); a changed
    file is parsed into a new table, which is swapped in between two loop
    turns; one that does not parse keeps the old table, is counted
    (acl_errors) and logged with its FILE:LINE.  After a swap the swap
    hook (the fanout's re-binds) runs with both tables, and the loop's
    revocation pass ends what the new table no longer allows.

    The nodes of a cluster share one broker key (clients pin one key for
    the whole cluster).  A node that catches up over REPLAY from a peer
    (herald_catchup) connects with that key: the handler admits the
    broker's own key on herald.api as the principal `$node`, which reads
    everything and holds admin status, and may do nothing else.

    Test hook (only with env HERALD_TEST_HOOKS=1): HERALD_TEST_ZAP_TAKEN=1
    binds another socket on the ZAP endpoint first, so that the handler's
    own bind fails as it would if something else held it.
    =========================================================================
*/

#ifndef HERALD_AUTH_H_INCLUDED
#define HERALD_AUTH_H_INCLUDED

#include <czmq.h>
#include "herald_acl.h"
#include "herald_audit.h"
#include "herald_config.h"
#include "herald_limits.h"

#define HERALD_AUTH_ENDPOINT    "inproc://zeromq.zap.01"
#define HERALD_AUTH_API         "herald.api"        //  ZAP domains
#define HERALD_AUTH_FANOUT      "herald.fanout"     //  ... and herald.fanout/SCOPE
#define HERALD_AUTH_RAFT        "herald.raft"

typedef struct _herald_auth_t herald_auth_t;

//  What the handler and the loop's checks count, for STATUS.
typedef struct {
    uint64_t auth_refused;          //  ZAP answers 400/500
    uint64_t unauthorized;          //  requests answered ERROR unauthorized
    uint64_t acl_reloads;           //  tables swapped in since start
    uint64_t acl_errors;            //  files refused (the old table kept)
    uint64_t rate_limited;          //  PUBLISH refused for a user's rate (herald_limits)
    uint64_t audit_dropped;         //  audit lines dropped, the queue full (herald_audit)
} herald_auth_counts_t;

//  After a reload swapped tables: old_acl is freed once this returns.
typedef void (herald_auth_swap_fn) (void *arg, const herald_acl_t *old_acl,
                                    const herald_acl_t *new_acl);

//  Load the ACL of config (fail closed: no table, no broker), open the
//  audit log (audit-log) and bind the ZAP handler.  NULL with err filled
//  when any fails.  Caller owns.
herald_auth_t *
    herald_auth_new (const herald_config_t *config, herald_error_t *err);

//  NULL-safe; clears *self_p.
void
    herald_auth_destroy (herald_auth_t **self_p);

//  The handler's socket, to poll for ZAP requests.
zsock_t *
    herald_auth_sock (herald_auth_t *self);

//  Answer the ZAP requests waiting (at most a bounded number a turn).
void
    herald_auth_serve (herald_auth_t *self);

//  ms until herald_auth_tick has work (a file check or an expiry pass).
int64_t
    herald_auth_wait (herald_auth_t *self);

//  Check the ACL file when due (or at once after herald_auth_reload) and
//  swap a changed one in.  Returns true when what users may do may have
//  changed since the last true: a table swapped in, or a second passed
//  (keys expire by `until`): the caller then runs its revocation pass.
bool
    herald_auth_tick (herald_auth_t *self);

//  SIGHUP: look at the file at the next tick, changed or not; reopen the
//  audit log (logrotate moved it).
void
    herald_auth_reload (herald_auth_t *self);

//  The ACL command's reload: re-read the file now, changed or not, as
//  SIGHUP does but at once.  True when a new table is in force (the one
//  before is freed: a user of it must not be used after this call; the
//  next herald_auth_tick returns true, so the loop's revocation pass
//  runs); revoked (when given, a zlist with autofree set: it copies what
//  is appended) gets the names of the users removed or whose every key
//  changed.  False when the file was refused:
//  the table in force stays, err says why ("PATH:LINE: why").  by (the
//  user who asked) is named in the audit line (`"by"`).
bool
    herald_auth_reload_now (herald_auth_t *self, const char *by, herald_error_t *err,
                            zlist_t *revoked);

//  The ACL file's path, and when the table in force was loaded (Unix ns).
const char *
    herald_auth_path (herald_auth_t *self);
int64_t
    herald_auth_loaded (herald_auth_t *self);

//  The table in force.  Valid until the next herald_auth_tick.
const herald_acl_t *
    herald_auth_acl (herald_auth_t *self);

//  The user that sent frame (a frame received on a CURVE socket this
//  handler admitted): its User-Id looked up in the table in force, and
//  the key it used (metadata Key) still one of the user's, unexpired.
//  NULL with err filled (unauthorized, "key revoked" or "key expired")
//  otherwise.  *key_p, when given, is set to the Z85 key used.
const herald_acl_user_t *
    herald_auth_user (herald_auth_t *self, zframe_t *frame, const char **key_p,
                      herald_error_t *err);

//  The user of that name in the table in force, or the principal `$node`
//  (HERALD_AUTH_NODE); NULL when none.
#define HERALD_AUTH_NODE        "$node"
const herald_acl_user_t *
    herald_auth_lookup (herald_auth_t *self, const char *name);

//  True when user is the principal `$node` (a peer broker catching up).
bool
    herald_auth_is_node (herald_auth_t *self, const herald_acl_user_t *user);

//  True when key (Z85) is still one of user's, unexpired at now_ns.
bool
    herald_auth_key_valid (const herald_acl_user_t *user, const char *key, int64_t now_ns);

//  Count a request answered unauthorized and audit it: frame is one of
//  the request's (its User-Id and Peer-Address), fields more `"k":v`
//  members, escaped, or NULL.
void
    herald_auth_refused (herald_auth_t *self, zframe_t *frame, const char *command,
                         const char *fields);

//  A PUBLISH of events and bytes by user within its rate (herald_limits,
//  set from the table in force)?  False (counted, audited) with the wait
//  in *retry_ms when not.
bool
    herald_auth_take (herald_auth_t *self, const herald_acl_user_t *user, uint64_t events,
                      uint64_t bytes, uint64_t *retry_ms);

//  Hook: the fanout's re-binds after a swap.
void
    herald_auth_on_swap (herald_auth_t *self, herald_auth_swap_fn *fn, void *arg);

const herald_auth_counts_t *
    herald_auth_counts (herald_auth_t *self);

//  Write bytes[0..len) as a JSON string (quotes included) into out, NUL-
//  terminated, cut to size (herald_audit_escape); for audit fields and
//  messages holding a client's bytes.
void
    herald_auth_json (const void *bytes, size_t len, char *out, size_t size);

//  One audit line of what an admin did (a TRIM applied): event and
//  json_fields as herald_audit_event takes them.
void
    herald_auth_audit (herald_auth_t *self, const char *event, const char *who,
                       const char *json_fields);

#endif
