/*  =========================================================================
    herald_auth - the broker's security: ZAP handler, ACL in force, reload

    DESIGN

    One ROUTER on inproc://zeromq.zap.01, made and bound by heraldd before
    any other socket (herald_auth_new) and then polled by the broker loop,
    which owns it from then on.  libzmq sends it one request per CURVE
    handshake, on the I/O thread's behalf, and holds that handshake until
    the answer comes: an answer is made at once, from the table in force,
    never deferred (a 300 "try later" would hang the client).

    A request (RFC 27): [routing id] [] "1.0" request-id domain address
    identity mechanism key.  The reply: [routing id] [] "1.0" request-id
    status text user-id metadata, the metadata in ZMTP property encoding
    (name-len:1 name value-len:4 BE value), which libzmq then attaches to
    every frame the client sends: the loop's per-request checks read
    User-Id and Key from there (herald_auth_user) and look the user up in
    the table in force, so a user removed by a reload is refused at its
    next request even on a connection admitted before.

    The table is immutable; a reload builds a new one (herald_acl_load)
    and swaps it in during herald_auth_tick, which the loop calls between
    two turns: nothing holds a user of the old table across a turn,
    except what the swap hook is told about.
    =========================================================================
*/

#include <errno.h>
#include <inttypes.h>
#include <sys/stat.h>
#include <time.h>
#include "herald_auth.h"
#include "herald_log.h"

#define SERVE_MAX           256         //  ZAP requests answered per turn
#define EXPIRY_CHECK_MS     1000        //  `until` is looked at this often
#define KEY_SHOWN           10          //  Z85 characters of a key in the audit

//  What identifies a version of the file on disk.
typedef struct {
    bool present;
    ino_t inode;
    off_t size;
    int64_t mtime_ns;
} s_stamp_t;

struct _herald_auth_t {
    zsock_t *zap;                       //  the handler's ROUTER
    zsock_t *squatter;                  //  test hook: what holds the endpoint
    char *path;                         //  the ACL file
    herald_acl_t *acl;                  //  the table in force (owned)
    s_stamp_t stamp;                    //  the file as last looked at
    uint64_t check_ms;
    bool audit_ok;                      //  auth_ok lines too (log level info or debug)
    int64_t next_check;                 //  zclock_mono
    int64_t next_expiry;
    bool reload_owed;                   //  SIGHUP: look now, changed or not
    bool swapped;                       //  the ACL command swapped a table in: tick says so
    int64_t loaded_ns;                  //  when the table in force was loaded (Unix ns)
    herald_auth_counts_t counts;
    herald_auth_swap_fn *swap_fn;
    void *swap_arg;
    herald_audit_t *audit;              //  the audit log (owned)
    herald_acl_user_t node;             //  `$node`: the broker's own key (peers catching up)
    herald_user_limits_t *limits;       //  rates per user, from the table in force
};

static int64_t
s_now_ns (void)
{
    struct timespec now;
    clock_gettime (CLOCK_REALTIME, &now);
    return (int64_t) now.tv_sec * 1000000000LL + now.tv_nsec;
}

//  The stamp of path now (present false when it cannot be stat()ed).
static s_stamp_t
s_stamp (const char *path)
{
    s_stamp_t stamp = { 0 };
    struct stat status;
    if (stat (path, &status) == 0) {
        stamp.present = true;
        stamp.inode = status.st_ino;
        stamp.size = status.st_size;
        stamp.mtime_ns = (int64_t) status.st_mtim.tv_sec * 1000000000LL
                       + status.st_mtim.tv_nsec;
    }
    return stamp;
}

static bool
s_stamp_eq (const s_stamp_t *a, const s_stamp_t *b)
{
    return a->present == b->present && a->inode == b->inode && a->size == b->size
        && a->mtime_ns == b->mtime_ns;
}

//  Every audit line leaves through here.
static void
s_audit (herald_auth_t *self, const char *event, const char *who, const char *fields)
{
    if (self->audit)
        herald_audit_event (self->audit, event, who, fields);
}

void
herald_auth_audit (herald_auth_t *self, const char *event, const char *who,
                   const char *json_fields)
{
    s_audit (self, event, who, json_fields);
}

void
herald_auth_json (const void *bytes, size_t len, char *out, size_t size)
{
    herald_audit_escape (bytes, len, out, size);
}

//  The limits of every user of the table in force; users gone forgotten.
static void
s_limits_set (herald_auth_t *self)
{
    for (size_t index = 0; index < herald_acl_user_count (self->acl); index++)
        herald_limits_set_user (self->limits, herald_acl_user_at (self->acl, index));
    herald_limits_sweep (self->limits);
}


//  --------------------------------------------------------------------------
//  Lifecycle

herald_auth_t *
herald_auth_new (const herald_config_t *config, herald_error_t *err)
{
    assert (herald_config_secure (config));
    herald_auth_t *self = (herald_auth_t *) zmalloc (sizeof (herald_auth_t));
    self->path = strdup (config->acl);
    self->check_ms = config->acl_check_ms;
    self->audit_ok = streq (config->log_level, "info") || streq (config->log_level, "debug");
    //  Fail closed: no valid ACL, no broker
    self->stamp = s_stamp (self->path);
    self->acl = herald_acl_load (self->path, err);
    self->limits = herald_limits_new ();
    if (!self->acl || !self->limits) {
        if (!self->limits)
            herald_error_set (err, HERALD_ERR_NOMEM, NULL, "out of memory");
        herald_auth_destroy (&self);
        return NULL;
    }
    self->loaded_ns = s_now_ns ();
    s_limits_set (self);
    //  The broker's own key: a peer node's catch-up connects with it
    zcert_t *cert = zcert_load (config->curve_secret);
    if (!cert) {
        herald_error_set (err, HERALD_ERR_INVALID, NULL, "--curve-secret %s is not a CURVE "
                          "secret key file (make one with herald keygen)", config->curve_secret);
        herald_auth_destroy (&self);
        return NULL;
    }
    snprintf (self->node.name, sizeof (self->node.name), "%s", HERALD_AUTH_NODE);
    memcpy (self->node.keys [0].key, zcert_public_key (cert), HERALD_ACL_KEY_BYTES);
    snprintf (self->node.keys [0].z85, sizeof (self->node.keys [0].z85), "%s",
              zcert_public_txt (cert));
    self->node.key_count = 1;
    self->node.read_all = true;
    self->node.admin = HERALD_ACL_ADMIN_STATUS;
    zcert_destroy (&cert);
    self->audit = herald_audit_new (config->audit_log, err);
    if (!self->audit) {
        herald_auth_destroy (&self);
        return NULL;
    }
    const char *hooks = getenv ("HERALD_TEST_HOOKS");
    const char *taken = getenv ("HERALD_TEST_ZAP_TAKEN");
    if (hooks && streq (hooks, "1") && taken && streq (taken, "1")) {
        self->squatter = zsock_new (ZMQ_ROUTER);
        if (self->squatter)
            zsock_bind (self->squatter, "%s", HERALD_AUTH_ENDPOINT);
    }
    self->zap = zsock_new (ZMQ_ROUTER);
    if (!self->zap || zsock_bind (self->zap, "%s", HERALD_AUTH_ENDPOINT) != 0) {
        herald_error_set (err, HERALD_ERR_UNAVAILABLE, NULL, "cannot bind the ZAP handler "
                          "on %s: %s; without it libzmq would admit every key, so the "
                          "broker does not start", HERALD_AUTH_ENDPOINT,
                          zmq_strerror (zmq_errno ()));
        herald_auth_destroy (&self);
        return NULL;
    }
    self->next_check = zclock_mono () + (int64_t) self->check_ms;
    self->next_expiry = zclock_mono () + EXPIRY_CHECK_MS;
    return self;
}

void
herald_auth_destroy (herald_auth_t **self_p)
{
    herald_auth_t *self = *self_p;
    if (!self)
        return;
    zsock_destroy (&self->zap);
    zsock_destroy (&self->squatter);
    herald_acl_destroy (&self->acl);
    herald_limits_destroy (&self->limits);
    herald_audit_destroy (&self->audit);
    free (self->path);
    free (self);
    *self_p = NULL;
}

zsock_t *
herald_auth_sock (herald_auth_t *self)
{
    return self->zap;
}

const herald_acl_t *
herald_auth_acl (herald_auth_t *self)
{
    return self->acl;
}

void
herald_auth_on_swap (herald_auth_t *self, herald_auth_swap_fn *fn, void *arg)
{
    self->swap_fn = fn;
    self->swap_arg = arg;
}

const herald_auth_counts_t *
herald_auth_counts (herald_auth_t *self)
{
    self->counts.rate_limited = herald_limits_refused (self->limits);
    self->counts.audit_dropped = self->audit? herald_audit_dropped (self->audit): 0;
    return &self->counts;
}


//  --------------------------------------------------------------------------
//  The ZAP handler

//  Append one ZMTP property to a metadata buffer of size bytes.
static size_t
s_property (uint8_t *buffer, size_t used, size_t size, const char *name, const char *value)
{
    size_t name_len = strlen (name), value_len = strlen (value);
    if (used + 1 + name_len + 4 + value_len > size)
        return used;
    buffer [used++] = (uint8_t) name_len;
    memcpy (buffer + used, name, name_len);
    used += name_len;
    buffer [used++] = (uint8_t) (value_len >> 24);
    buffer [used++] = (uint8_t) (value_len >> 16);
    buffer [used++] = (uint8_t) (value_len >> 8);
    buffer [used++] = (uint8_t) value_len;
    memcpy (buffer + used, value, value_len);
    return used + value_len;
}

//  Send the reply to a request: envelope [routing id] [] taken.
static void
s_reply (herald_auth_t *self, zframe_t **routing, zframe_t **request_id, const char *status,
         const char *text, const char *user, const uint8_t *metadata, size_t metadata_len)
{
    zmsg_t *reply = zmsg_new ();
    zmsg_append (reply, routing);
    zmsg_addmem (reply, "", 0);
    zmsg_addstr (reply, "1.0");
    zmsg_append (reply, request_id);
    zmsg_addstr (reply, status);
    zmsg_addstr (reply, text);
    zmsg_addstr (reply, user);
    zmsg_addmem (reply, metadata, metadata_len);
    //  A handler that cannot answer leaves the handshake to handshake-ms
    if (zmsg_send (&reply, self->zap) != 0)
        zmsg_destroy (&reply);
}

//  The decision for a readable request: 200 with user and metadata, or
//  400 and why.  Returns the status.
static const char *
s_decide (herald_auth_t *self, const char *domain, const uint8_t *key, char *user,
          size_t user_size, uint8_t *metadata, size_t *metadata_len, char *why,
          size_t why_size)
{
    int64_t now = s_now_ns ();
    char z85 [41] = "";
    if (streq (domain, HERALD_AUTH_RAFT)) {
        const herald_acl_peer_t *peer = herald_acl_peer_by_key (self->acl, key, now);
        if (!peer) {
            snprintf (why, why_size, "not allowed on %s", domain);
            return "400";
        }
        snprintf (user, user_size, "%s", peer->name);
        zmq_z85_encode (z85, key, HERALD_ACL_KEY_BYTES);
        size_t used = s_property (metadata, 0, *metadata_len, "Key", z85);
        *metadata_len = s_property (metadata, used, *metadata_len, "Scope", "-");
        return "200";
    }
    const char *reason = NULL;
    size_t which = 0;
    const herald_acl_user_t *found = NULL;
    if (streq (domain, HERALD_AUTH_API)
    &&  memcmp (key, self->node.keys [0].key, HERALD_ACL_KEY_BYTES) == 0)
        found = &self->node;            //  a peer node of this cluster
    else
        found = herald_acl_user_by_key (self->acl, key, now, &reason, &which);
    if (!found) {
        snprintf (why, why_size, "%s", reason? reason: "unknown key");
        return "400";
    }
    bool allowed = streq (domain, HERALD_AUTH_API);
    size_t fanout_len = strlen (HERALD_AUTH_FANOUT);
    if (streq (domain, HERALD_AUTH_FANOUT))
        allowed = found->read_all;
    else
    if (strncmp (domain, HERALD_AUTH_FANOUT "/", fanout_len + 1) == 0)
        allowed = found->scope && streq (found->scope->name, domain + fanout_len + 1);
    if (!allowed) {
        snprintf (why, why_size, "not allowed on %s", domain);
        return "400";
    }
    snprintf (user, user_size, "%s", found->name);
    const char *scope = found->read_all? "*": found->scope? found->scope->name: "-";
    size_t used = s_property (metadata, 0, *metadata_len, "Key", found->keys [which].z85);
    *metadata_len = s_property (metadata, used, *metadata_len, "Scope", scope);
    return "200";
}

//  One request off the socket, answered.
static void
s_serve_one (herald_auth_t *self, zmsg_t *request)
{
    zframe_t *routing = zmsg_pop (request);
    zframe_t *delimiter = zmsg_pop (request);
    char *version = zmsg_popstr (request);
    zframe_t *request_id = zmsg_pop (request);
    char *domain = zmsg_popstr (request);
    char *address = zmsg_popstr (request);
    zframe_t *identity = zmsg_pop (request);
    char *mechanism = zmsg_popstr (request);
    zframe_t *key = zmsg_pop (request);
    if (!routing || !delimiter || zframe_size (delimiter) != 0 || !request_id) {
        //  Not a request that can be answered: nothing to address (only
        //  libzmq writes here; it never sends one)
        if (herald_log_debug ())
            herald_log ("debug", "ZAP: a request that cannot be answered was dropped");
    }
    else {
        char user [HERALD_ACL_NAME_MAX + 1] = "";
        uint8_t metadata [256];
        size_t metadata_len = sizeof (metadata);
        char why [160] = "";
        const char *status;
        if (!version || !streq (version, "1.0") || !domain || !address || !mechanism) {
            status = "500";
            snprintf (why, sizeof (why), "malformed ZAP request");
        }
        else
        if (!streq (mechanism, "CURVE") || !key || zframe_size (key) != HERALD_ACL_KEY_BYTES) {
            status = "400";
            snprintf (why, sizeof (why), "CURVE keys only");
        }
        else
            status = s_decide (self, domain, zframe_data (key), user, sizeof (user), metadata,
                               &metadata_len, why, sizeof (why));
        bool ok = streq (status, "200");
        char shown [KEY_SHOWN + 1] = "-";
        if (key && zframe_size (key) == HERALD_ACL_KEY_BYTES) {
            char z85 [41];
            zmq_z85_encode (z85, zframe_data (key), HERALD_ACL_KEY_BYTES);
            snprintf (shown, sizeof (shown), "%.*s", KEY_SHOWN, z85);
        }
        char quoted_key [64], quoted_ip [96], quoted_domain [160];
        herald_auth_json (shown, strlen (shown), quoted_key, sizeof (quoted_key));
        herald_auth_json (address? address: "", address? strlen (address): 0, quoted_ip,
                          sizeof (quoted_ip));
        herald_auth_json (domain? domain: "", domain? strlen (domain): 0, quoted_domain,
                          sizeof (quoted_domain));
        char fields [512];
        if (ok)
            snprintf (fields, sizeof (fields), "\"user\":\"%s\",\"ip\":%s,\"domain\":%s,"
                      "\"key\":%s", user, quoted_ip, quoted_domain, quoted_key);
        else {
            self->counts.auth_refused++;
            snprintf (fields, sizeof (fields), "\"domain\":%s,\"ip\":%s,\"key\":%s,"
                      "\"reason\":\"%s\"", quoted_domain, quoted_ip, quoted_key, why);
            if (herald_log_debug ())
                herald_log ("debug", "ZAP: %s refused on %s from %s: %s", shown,
                            domain? domain: "?", address? address: "?", why);
        }
        if (!ok || self->audit_ok)
            s_audit (self, ok? "auth_ok": "auth_refused", ok? user: address, fields);
        s_reply (self, &routing, &request_id, status, ok? "OK": why, user, metadata,
                 ok? metadata_len: 0);
    }
    zframe_destroy (&routing);
    zframe_destroy (&delimiter);
    zframe_destroy (&request_id);
    zframe_destroy (&identity);
    zframe_destroy (&key);
    zstr_free (&version);
    zstr_free (&domain);
    zstr_free (&address);
    zstr_free (&mechanism);
    zmsg_destroy (&request);
}

void
herald_auth_serve (herald_auth_t *self)
{
    for (size_t served = 0; served < SERVE_MAX
                         && (zsock_events (self->zap) & ZMQ_POLLIN); served++) {
        zmsg_t *request = zmsg_recv (self->zap);
        if (!request)
            break;
        s_serve_one (self, request);
    }
}


//  --------------------------------------------------------------------------
//  Per request

const herald_acl_user_t *
herald_auth_lookup (herald_auth_t *self, const char *name)
{
    return streq (name, HERALD_AUTH_NODE)? &self->node: herald_acl_user (self->acl, name);
}

bool
herald_auth_is_node (herald_auth_t *self, const herald_acl_user_t *user)
{
    return user == &self->node;
}

bool
herald_auth_key_valid (const herald_acl_user_t *user, const char *key, int64_t now_ns)
{
    for (size_t index = 0; key && index < user->key_count; index++)
        if (streq (user->keys [index].z85, key))
            return user->keys [index].until_ns == 0 || user->keys [index].until_ns > now_ns;
    return false;
}

const herald_acl_user_t *
herald_auth_user (herald_auth_t *self, zframe_t *frame, const char **key_p,
                  herald_error_t *err)
{
    const char *name = zframe_meta (frame, "User-Id");
    const char *key = zframe_meta (frame, "Key");
    if (key_p)
        *key_p = key;
    const herald_acl_user_t *user = name? herald_auth_lookup (self, name): NULL;
    if (!user || !key) {
        herald_error_set (err, HERALD_ERR_UNAUTHORIZED, "", "key revoked: '%s' is no "
                          "longer in the ACL", name? name: "?");
        return NULL;
    }
    int64_t now = s_now_ns ();
    for (size_t index = 0; index < user->key_count; index++)
        if (streq (user->keys [index].z85, key)) {
            if (user->keys [index].until_ns && user->keys [index].until_ns <= now) {
                herald_error_set (err, HERALD_ERR_UNAUTHORIZED, "", "key expired");
                return NULL;
            }
            return user;
        }
    herald_error_set (err, HERALD_ERR_UNAUTHORIZED, "", "key revoked: this key is no "
                      "longer one of '%s''s", name);
    return NULL;
}

bool
herald_auth_take (herald_auth_t *self, const herald_acl_user_t *user, uint64_t events,
                  uint64_t bytes, uint64_t *retry_ms)
{
    if (herald_limits_take (self->limits, user->name, events, bytes,
                            (int64_t) zclock_usecs () * 1000, retry_ms))
        return true;
    char fields [160];
    snprintf (fields, sizeof (fields), "\"user\":\"%s\",\"events\":%" PRIu64 ",\"bytes\":%"
              PRIu64 ",\"retry_ms\":%" PRIu64, user->name, events, bytes, *retry_ms);
    s_audit (self, "rate_limited", user->name, fields);
    return false;
}

void
herald_auth_refused (herald_auth_t *self, zframe_t *frame, const char *command,
                     const char *fields)
{
    self->counts.unauthorized++;
    const char *user = zframe_meta (frame, "User-Id");
    const char *ip = zframe_meta (frame, "Peer-Address");
    char quoted_user [160], quoted_ip [96];
    herald_auth_json (user? user: "", user? strlen (user): 0, quoted_user, sizeof (quoted_user));
    herald_auth_json (ip? ip: "", ip? strlen (ip): 0, quoted_ip, sizeof (quoted_ip));
    char line [2048];
    snprintf (line, sizeof (line), "\"user\":%s,\"ip\":%s,\"command\":\"%s\"%s%s",
              quoted_user, quoted_ip, command, fields && *fields? ",": "", fields? fields: "");
    s_audit (self, "unauthorized", user, line);
}


//  --------------------------------------------------------------------------
//  Reload

int64_t
herald_auth_wait (herald_auth_t *self)
{
    if (self->reload_owed || self->swapped)
        return 0;
    int64_t next = self->next_check < self->next_expiry? self->next_check: self->next_expiry;
    int64_t wait = next - zclock_mono ();
    return wait > 0? wait: 0;
}

void
herald_auth_reload (herald_auth_t *self)
{
    self->reload_owed = true;
    herald_audit_reopen (self->audit);
}

//  The users of old that new removed, or whose every key it changed, as
//  JSON strings separated by commas (names are [A-Za-z0-9._-]), cut to
//  size; and, when names is given, appended to it (an autofree list: it
//  copies each name itself).
static void
s_revoked (const herald_acl_t *old, const herald_acl_t *new_acl, char *out, size_t size,
           zlist_t *names)
{
    size_t used = 0;
    out [0] = 0;
    for (size_t index = 0; index < herald_acl_user_count (old); index++) {
        const herald_acl_user_t *was = herald_acl_user_at (old, index);
        const herald_acl_user_t *now = herald_acl_user (new_acl, was->name);
        bool kept = false;
        for (size_t key = 0; now && key < was->key_count && !kept; key++)
            for (size_t other = 0; other < now->key_count && !kept; other++)
                kept = memcmp (was->keys [key].key, now->keys [other].key,
                               HERALD_ACL_KEY_BYTES) == 0;
        if (kept)
            continue;
        if (names)
            zlist_append (names, (void *) was->name);
        if (used + strlen (was->name) + 4 >= size)
            continue;
        used += (size_t) snprintf (out + used, size - used, "%s\"%s\"", used? ",": "",
                                   was->name);
    }
}

//  Look at the file; swap a changed (or, forced, any) good table in.
//  Returns true when a table was swapped in; else err (when given) says
//  why a file was refused.  names, when given, gets the users revoked;
//  by names the user whose ACL command asked (NULL: SIGHUP or the timed
//  check), for the audit.
static bool
s_check_file (herald_auth_t *self, bool forced, const char *by, herald_error_t *why,
              zlist_t *names)
{
    char asked [HERALD_ACL_NAME_MAX + 16] = "";
    if (by)                             //  names are [A-Za-z0-9._-]: no escaping
        snprintf (asked, sizeof (asked), ",\"by\":\"%s\"", by);
    s_stamp_t stamp = s_stamp (self->path);
    if (!forced && s_stamp_eq (&stamp, &self->stamp))
        return false;
    self->stamp = stamp;                //  a bad file is tried again once it changes
    herald_error_t err = { 0 };
    herald_acl_t *acl = herald_acl_load (self->path, &err);
    if (!acl && why)
        *why = err;
    if (!acl) {
        self->counts.acl_errors++;
        herald_log ("error", "ACL not reloaded, version %s stays in force: %s",
                    herald_acl_version (self->acl), err.message);
        char message [1024];
        herald_auth_json (err.message, strlen (err.message), message, sizeof (message));
        char fields [1200];
        snprintf (fields, sizeof (fields), "\"result\":\"error\",\"acl_version\":\"%s\","
                  "\"error\":%s%s", herald_acl_version (self->acl), message, asked);
        s_audit (self, "acl_reload", by? by: "", fields);
        return false;
    }
    herald_acl_t *old = self->acl;
    self->acl = acl;
    self->counts.acl_reloads++;
    char revoked [1024];
    s_revoked (old, acl, revoked, sizeof (revoked), names);
    self->loaded_ns = s_now_ns ();
    herald_log ("info", "ACL reloaded from %s: version %s (was %s), %zu users, %zu scopes",
                self->path, herald_acl_version (acl), herald_acl_version (old),
                herald_acl_user_count (acl), herald_acl_scope_count (acl));
    char fields [1400];
    snprintf (fields, sizeof (fields), "\"result\":\"ok\",\"acl_version\":\"%s\","
              "\"previous\":\"%s\",\"users\":%zu,\"scopes\":%zu,\"revoked\":[%s]%s",
              herald_acl_version (acl), herald_acl_version (old), herald_acl_user_count (acl),
              herald_acl_scope_count (acl), revoked, asked);
    s_audit (self, "acl_reload", by? by: "", fields);
    s_limits_set (self);
    if (self->swap_fn)
        self->swap_fn (self->swap_arg, old, acl);
    herald_acl_destroy (&old);
    return true;
}

bool
herald_auth_tick (herald_auth_t *self)
{
    int64_t now = zclock_mono ();
    //  The ACL command swapped a table in since the last turn
    bool changed = self->swapped;
    self->swapped = false;
    if (self->reload_owed || now >= self->next_check) {
        changed = s_check_file (self, self->reload_owed, NULL, NULL, NULL) || changed;
        self->reload_owed = false;
        self->next_check = now + (int64_t) self->check_ms;
    }
    if (now >= self->next_expiry) {
        self->next_expiry = now + EXPIRY_CHECK_MS;
        changed = true;
    }
    return changed;
}

bool
herald_auth_reload_now (herald_auth_t *self, const char *by, herald_error_t *err,
                        zlist_t *revoked)
{
    //  The same path as SIGHUP's, at once: the stat stamp is refreshed, so
    //  the next timed check does not load the same file again
    memset (err, 0, sizeof (*err));
    if (s_check_file (self, true, by, err, revoked)) {
        self->swapped = true;           //  the loop's revocation pass runs next tick
        return true;
    }
    return false;
}

const char *
herald_auth_path (herald_auth_t *self)
{
    return self->path;
}

int64_t
herald_auth_loaded (herald_auth_t *self)
{
    return self->loaded_ns;
}
