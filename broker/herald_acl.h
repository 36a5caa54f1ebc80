/*  =========================================================================
    herald_acl - who may connect, publish, read and administer (issue 14)

    The ACL file (docs/security.md; ../shared/design/SECURITY.md §3.3)
    parsed into an immutable table: users with one or two CURVE public
    keys, their publish prefixes, the one read view each reads through
    (`read = *`, or a named scope with its own fanout endpoint), admin
    grants and limits; roles that bundle grants; peers (other brokers of
    a cluster, admitted on the raft domain only).  Everything not granted
    is refused.  A file that does not parse gives no table at all: the
    caller keeps the previous one.

    A table is never changed once built; a reload builds a new one and the
    broker swaps it in between two loop turns, so a pointer into a table
    (a user, a scope) stays valid as long as that table lives.

    Prefix sets are normalised (a prefix covered by a shorter one is
    dropped; `*` absorbs everything) and matched through a trie: a check
    costs O(topic length), whatever the number of users or prefixes.
    =========================================================================
*/

#ifndef HERALD_ACL_H_INCLUDED
#define HERALD_ACL_H_INCLUDED

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include "herald_event.h"
#include "herald_msg.h"

#define HERALD_ACL_KEY_BYTES    32      //  a CURVE public key
#define HERALD_ACL_NAME_MAX     64      //  user, role, scope, peer names: [A-Za-z0-9._-]
#define HERALD_ACL_MAX_KEYS     2       //  per user or peer: two during a rotation
#define HERALD_ACL_MAX_SCOPES   64      //  scopes per file (a bitset of 64)
#define HERALD_ACL_VERSION_LEN  12      //  hex digits of the file's digest

//  Admin grants (`admin = ...`); `*` is every bit.
typedef enum {
    HERALD_ACL_ADMIN_STATUS  = 1 << 0,  //  STATUS keys beyond the contract's
    HERALD_ACL_ADMIN_ACL     = 1 << 1,  //  the ACL admin command (reload, show)
    HERALD_ACL_ADMIN_CLUSTER = 1 << 2,  //  CLUSTER add/remove/transfer
    HERALD_ACL_ADMIN_TRIM    = 1 << 3,  //  TRIM (retention is the config's)
    HERALD_ACL_ADMIN_BACKUP  = 1 << 4,  //  future: online backup
    HERALD_ACL_ADMIN_GROUPS  = 1 << 5,  //  GROUP reset and delete (consumer groups)
    HERALD_ACL_ADMIN_ALL     = 0x3f
} herald_acl_admin_t;

//  A set of topic prefixes, normalised; all is `*` (every topic).
typedef struct {
    bool all;
    herald_str_t *prefixes;         //  sorted, none covering another
    size_t count;
} herald_acl_prefixes_t;

typedef struct {
    uint8_t key [HERALD_ACL_KEY_BYTES];
    char z85 [41];                  //  the key as written (40 Z85 characters)
    int64_t until_ns;               //  expiry (Unix ns); 0: never
} herald_acl_key_t;

typedef struct {
    char name [HERALD_ACL_NAME_MAX + 1];
    size_t index;                   //  0 .. scope_count-1: the bit of this scope
    herald_acl_prefixes_t read;     //  never `all`
    char *fanout;                   //  its own PUB endpoint (tcp://HOST:PORT)
} herald_acl_scope_t;

typedef struct {
    char name [HERALD_ACL_NAME_MAX + 1];
    herald_acl_key_t keys [HERALD_ACL_MAX_KEYS];
    size_t key_count;               //  1 or 2
    bool read_all;                  //  `read = *`: every topic, the main fanout
    const herald_acl_scope_t *scope;    //  the scope read through; NULL: read_all or none
    herald_acl_prefixes_t publish;  //  accumulated over the user and its roles
    unsigned admin;                 //  herald_acl_admin_t bits
    //  Limits; 0 means none (streams: the broker's default per user)
    uint64_t rate;                  //  events per second published
    uint64_t rate_burst;            //  bucket size in events (default: rate)
    uint64_t bytes;                 //  request bytes per second published
    uint64_t bytes_burst;
    size_t streams;                 //  REPLAY/READ streams open at once
    uint64_t replay;                //  events per second streamed to this user
} herald_acl_user_t;

typedef struct {
    char name [HERALD_ACL_NAME_MAX + 1];
    herald_acl_key_t keys [HERALD_ACL_MAX_KEYS];
    size_t key_count;
} herald_acl_peer_t;

typedef struct _herald_acl_t herald_acl_t;

//  Read and parse the ACL file at path.  Refused whole (NULL, err filled
//  with "PATH:LINE: why", HERALD_ERR_INVALID) when any line is wrong, when
//  the file is writable by group or others, or cannot be read
//  (HERALD_ERR_IO).  Keys whose `until` has passed are kept (they are
//  refused at lookup); herald_acl_expired counts them.
herald_acl_t *
    herald_acl_load (const char *path, herald_error_t *err);

//  The same from text in memory (name is used in errors in place of the
//  path; no permission check).  For tests and the fuzz target.
herald_acl_t *
    herald_acl_parse (const char *text, size_t len, const char *name, herald_error_t *err);

//  NULL-safe; clears *self_p.
void
    herald_acl_destroy (herald_acl_t **self_p);

//  HERALD_ACL_VERSION_LEN hex digits of the digest of the file's bytes:
//  two nodes with the same file show the same version.
const char *
    herald_acl_version (const herald_acl_t *self);

//  The user holding this public key; NULL when no user does, or when the
//  key expired at now_ns (Unix ns).  *why, when given, is set to "unknown
//  key" or "key expired" on NULL.  *which (0 or 1) tells which of the
//  user's keys matched.
const herald_acl_user_t *
    herald_acl_user_by_key (const herald_acl_t *self, const uint8_t *key, int64_t now_ns,
                            const char **why, size_t *which);

//  The user of that name, NULL when none (a User-Id from ZAP that a reload
//  has since removed).
const herald_acl_user_t *
    herald_acl_user (const herald_acl_t *self, const char *name);

//  The peer holding this key (raft domain); NULL when none or expired.
const herald_acl_peer_t *
    herald_acl_peer_by_key (const herald_acl_t *self, const uint8_t *key, int64_t now_ns);

size_t
    herald_acl_user_count (const herald_acl_t *self);
const herald_acl_user_t *
    herald_acl_user_at (const herald_acl_t *self, size_t index);
size_t
    herald_acl_scope_count (const herald_acl_t *self);
const herald_acl_scope_t *
    herald_acl_scope_at (const herald_acl_t *self, size_t index);
const herald_acl_scope_t *
    herald_acl_scope (const herald_acl_t *self, const char *name);
size_t
    herald_acl_peer_count (const herald_acl_t *self);
const herald_acl_peer_t *
    herald_acl_peer_at (const herald_acl_t *self, size_t index);

//  How many keys (users' and peers') have expired at now_ns: a load can
//  warn of them.
size_t
    herald_acl_expired (const herald_acl_t *self, int64_t now_ns);

//  May this user publish to / read this topic?  user must come from a
//  table (herald_acl_user, _user_by_key, _user_at): the checks find the
//  table's tries through it.
bool
    herald_acl_may_publish (const herald_acl_user_t *user, const char *topic, size_t len);
bool
    herald_acl_may_read (const herald_acl_user_t *user, const char *topic, size_t len);

//  The scopes whose read prefixes match this topic, as a bitset (bit i:
//  scope i).  O(topic length): called once per event fanned out.
uint64_t
    herald_acl_scopes_of (const herald_acl_t *self, const char *topic, size_t len);

//  Narrow a REPLAY's prefix list to what user may read (SECURITY.md §3.5):
//  an empty list means "all I may read"; a prefix broader than some read
//  prefixes is replaced by them; one inside a read prefix is kept; one
//  disjoint from the read set fails the whole request (HERALD_ERR_UNAUTHORIZED,
//  "prefix P is outside your scope S").  A user who reads everything gets
//  the list back unchanged.  *out (malloc'd array, strings pointing into
//  the request or the table: both must outlive it) and *out_count; free
//  with free (*out).  A topic matches the result if and only if it matches
//  both the request and the read set.  A user who cannot read at all:
//  HERALD_ERR_UNAUTHORIZED.
herald_err
    herald_acl_narrow (const herald_acl_user_t *user, const herald_str_t *prefixes,
                       size_t count, herald_str_t **out, size_t *out_count,
                       herald_error_t *err);

//  Print the normalised table (scopes, roles resolved, users, peers) in
//  the file's own syntax, for `herald acl check`.
void
    herald_acl_print (const herald_acl_t *self, FILE *out);

#endif
