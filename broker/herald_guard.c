/*  =========================================================================
    herald_guard - each api request checked against the ACL in force

    DESIGN

    No table of connections: the ZAP handler's answer travels with every
    frame a client sends (User-Id, Key), so each request names its user,
    and the user is looked up in the table in force at that moment.  A
    reload that removed the user or its key refuses the very next request
    (`key revoked`), whatever connection it comes on.

    Per command (docs/security.md "Enforcement"):
      HELLO    any user; WELCOME says who it is and what it may do
      STATUS   the contract keys to any user, the rest with `admin status`
      PUBLISH  every topic publishable, or the whole batch is refused
               naming the first offender; a duplicate id stored in a
               topic the user may not publish is refused, not ACKed,
               and so is the whole batch: checked just before its
               commit is proposed (herald_commit's stored hook), with
               one batched id lookup, so nothing of it is stored
      REPLAY   prefixes narrowed to the read set (herald_acl_narrow), or
               refused when disjoint
      READ     the topic readable, else refused before the store is asked
      CLUSTER  `admin cluster`
      ACL      `admin acl`: reload the file now, or show the table
    Streams are bound to the user that opened them (herald_streams).
    =========================================================================
*/

#include <inttypes.h>
#include <time.h>
#include "herald_guard.h"
#include "herald_log.h"

#define PEEK_ZONE       512             //  bytes of zone for reading a rid

struct _herald_guard_t {
    herald_auth_t *auth;                //  borrowed: the table in force
    const herald_config_t *config;      //  borrowed
    herald_store_t *store;              //  borrowed
    herald_reply_t *reply;              //  borrowed
    herald_streams_t *streams;          //  borrowed
    msgpack_zone zone;                  //  scratch, for peeking at a rid
    const char *key;                    //  the Z85 key of the request admitted last
    zframe_t *frame;                    //  ... its command frame (User-Id, Peer-Address)
    uint64_t *seqs;                     //  scratch: a batch's ids looked up
    size_t seq_capacity;
};

static int64_t
s_now_ns (void)
{
    struct timespec now;
    clock_gettime (CLOCK_REALTIME, &now);
    return (int64_t) now.tv_sec * 1000000000LL + now.tv_nsec;
}

herald_guard_t *
herald_guard_new (herald_auth_t *auth, const herald_config_t *config, herald_store_t *store,
                  herald_reply_t *reply, herald_streams_t *streams)
{
    herald_guard_t *self = (herald_guard_t *) zmalloc (sizeof (herald_guard_t));
    self->auth = auth;
    self->config = config;
    self->store = store;
    self->reply = reply;
    self->streams = streams;
    msgpack_zone_init (&self->zone, PEEK_ZONE);
    return self;
}

void
herald_guard_destroy (herald_guard_t **self_p)
{
    herald_guard_t *self = *self_p;
    if (!self)
        return;
    msgpack_zone_destroy (&self->zone);
    free (self->seqs);
    free (self);
    *self_p = NULL;
}

//  A topic for a message or an audit field: printable, quoted, cut.
static void
s_topic_json (const char *topic, size_t len, char *out, size_t size)
{
    herald_auth_json (topic, len, out, size);
}

//  ERROR unauthorized to identity, counted and audited (the request
//  admitted last).
static void
s_refuse (herald_guard_t *self, zframe_t *identity, const char *command, herald_error_t *err,
          const char *fields)
{
    err->code = HERALD_ERR_UNAUTHORIZED;
    herald_auth_refused (self->auth, self->frame, command, fields);
    herald_reply_err (self->reply, identity, err);
}

//  The rid of a body, when one can be read (for a refusal's reply).
static void
s_peek_rid (herald_guard_t *self, zframe_t *body, herald_error_t *err)
{
    if (!body)
        return;
    herald_msg_t probe;
    herald_error_t probe_err = { 0 };
    msgpack_zone_clear (&self->zone);
    if (herald_msg_decode (&probe, HERALD_MSG_STATUS, zframe_data (body), zframe_size (body),
                           NULL, &self->zone, &probe_err) == HERALD_OK) {
        err->has_rid = true;
        err->rid = probe.rid;
    }
    else
    if (probe_err.has_rid) {
        err->has_rid = true;
        err->rid = probe_err.rid;
    }
}

const herald_acl_user_t *
herald_guard_admit (herald_guard_t *self, zframe_t *identity, zframe_t *command,
                    zframe_t *body, herald_msg_type_t type)
{
    herald_error_t err = { 0 };
    self->frame = command;
    const herald_acl_user_t *user = herald_auth_user (self->auth, command, &self->key, &err);
    if (!user) {
        if (type == HERALD_MSG_CREDIT || type == HERALD_MSG_CANCEL) {
            self->reply->dropped++;     //  never a reply of their own
            herald_auth_refused (self->auth, command, herald_msg_command (type),
                                 "\"reason\":\"revoked\"");
            return NULL;
        }
        herald_error_t reply = { 0 };
        s_peek_rid (self, body, &reply);
        herald_error_set (&reply, HERALD_ERR_UNAUTHORIZED, "", "%s", err.message);
        char shown [64];
        herald_auth_json (zframe_data (command), zframe_size (command), shown, sizeof (shown));
        char fields [128];
        snprintf (fields, sizeof (fields), "\"reason\":\"revoked\",\"request\":%s", shown);
        s_refuse (self, identity, type == HERALD_MSG_INVALID? "?": herald_msg_command (type),
                  &reply, fields);
        return NULL;
    }
    //  Streams this routing id opened for another user are not this one's
    herald_streams_take_over (self->streams, identity, user->name);
    return user;
}

bool
herald_guard_admin (herald_guard_t *self, const herald_acl_user_t *user, zframe_t *identity,
                    unsigned grant, const char *command, bool has_rid, uint64_t rid)
{
    if (user->admin & grant)
        return true;
    const char *name = grant == HERALD_ACL_ADMIN_CLUSTER? "cluster":
                       grant == HERALD_ACL_ADMIN_STATUS? "status":
                       grant == HERALD_ACL_ADMIN_ACL? "acl":
                       grant == HERALD_ACL_ADMIN_GROUPS? "groups":
                       grant == HERALD_ACL_ADMIN_BACKUP? "backup":
                       grant == HERALD_ACL_ADMIN_TRIM? "trim": "admin";
    herald_error_t err = { .has_rid = has_rid, .rid = rid };
    herald_error_set (&err, HERALD_ERR_UNAUTHORIZED, "", "%s needs the grant 'admin = %s', "
                      "which user '%s' does not hold", command, name, user->name);
    char fields [96];
    if (has_rid)
        snprintf (fields, sizeof (fields), "\"rid\":%" PRIu64 ",\"grant\":\"%s\"", rid, name);
    else
        snprintf (fields, sizeof (fields), "\"grant\":\"%s\"", name);
    s_refuse (self, identity, command, &err, fields);
    return false;
}

bool
herald_guard_may_read_group (const herald_acl_user_t *user, char **prefixes, size_t count)
{
    if (count == 0)
        return user->read_all;
    //  A prefix is readable whole when a read prefix starts it, which is
    //  what may_read of the prefix as a topic asks
    for (size_t index = 0; index < count; index++)
        if (!herald_acl_may_read (user, prefixes [index], strlen (prefixes [index])))
            return false;
    return true;
}

bool
herald_guard_group (herald_guard_t *self, const herald_acl_user_t *user, zframe_t *identity,
                    const char *op, const char *group, char **prefixes, size_t count,
                    uint64_t rid)
{
    if (herald_guard_may_read_group (user, prefixes, count))
        return true;
    herald_error_t err = { .has_rid = true, .rid = rid };
    herald_error_set (&err, HERALD_ERR_UNAUTHORIZED, "", "GROUP %s of group '%s' needs read "
                      "access to every prefix of the group, which user '%s' does not have",
                      op, group, user->name);
    char fields [400];
    snprintf (fields, sizeof (fields), "\"rid\":%" PRIu64 ",\"op\":\"%s\",\"group\":\"%s\"",
              rid, op, group);
    s_refuse (self, identity, "GROUP", &err, fields);
    return false;
}


//  --------------------------------------------------------------------------
//  Streams

//  The read set of user, for a message: its scope, or none.
static const char *
s_read_view (const herald_acl_user_t *user)
{
    return user->read_all? "*": user->scope? user->scope->name: NULL;
}

void
herald_guard_stream (herald_guard_t *self, const herald_acl_user_t *user, zframe_t *identity,
                     herald_msg_t *request)
{
    herald_error_t err = { .has_rid = true, .rid = request->rid };
    bool is_read = request->type == HERALD_MSG_READ;
    const char *command = is_read? "READ": "REPLAY";
    herald_str_t *narrowed = NULL;
    if (is_read) {
        //  Before the store is asked: the same reply whether the topic
        //  exists or not
        if (!herald_acl_may_read (user, request->read.topic.ptr, request->read.topic.len)) {
            char topic [600];
            s_topic_json (request->read.topic.ptr, request->read.topic.len, topic,
                          sizeof (topic));
            herald_error_set (&err, HERALD_ERR_UNAUTHORIZED, "", "topic %s is outside what "
                              "user '%s' may read", topic, user->name);
            char fields [700];
            snprintf (fields, sizeof (fields), "\"rid\":%" PRIu64 ",\"topic\":%s",
                      request->rid, topic);
            s_refuse (self, identity, command, &err, fields);
            return;
        }
    }
    else {
        size_t count = 0;
        if (herald_acl_narrow (user, request->replay.prefixes, request->replay.prefix_count,
                               &narrowed, &count, &err) != HERALD_OK) {
            err.has_rid = true;
            err.rid = request->rid;
            if (!s_read_view (user))
                herald_error_set (&err, HERALD_ERR_UNAUTHORIZED, "", "user '%s' may not read",
                                  user->name);
            //  The first prefix outside the read set (all of them, when none
            //  was asked: then the user reads nothing)
            char prefix [600] = "\"\"";
            for (size_t index = 0; index < request->replay.prefix_count; index++) {
                const herald_str_t *asked = &request->replay.prefixes [index];
                herald_str_t *one = NULL;
                size_t one_count = 0;
                herald_error_t ignored = { 0 };
                bool disjoint = herald_acl_narrow (user, asked, 1, &one, &one_count,
                                                   &ignored) != HERALD_OK;
                free (one);
                if (disjoint) {
                    s_topic_json (asked->ptr, asked->len, prefix, sizeof (prefix));
                    break;
                }
            }
            char fields [700];
            snprintf (fields, sizeof (fields), "\"rid\":%" PRIu64 ",\"prefix\":%s",
                      request->rid, prefix);
            s_refuse (self, identity, command, &err, fields);
            free (narrowed);
            return;
        }
        request->replay.prefixes = narrowed;
        request->replay.prefix_count = count;
    }
    herald_streams_owner_t owner = {
        .user = user->name,
        .key = self->key,
        .max_streams = user->streams? user->streams: self->config->max_streams_per_user
    };
    herald_err rc = herald_streams_open_as (self->streams, identity, request, &owner, &err);
    free (narrowed);
    if (rc != HERALD_OK)
        herald_reply_err (self->reply, identity, &err);
}

//  The stream's owner may still read what it reads (herald_streams_revoke).
static bool
s_stream_allowed (void *arg, const char *name, const char *key, bool is_read,
                  const herald_str_t *prefixes, size_t count)
{
    herald_guard_t *self = (herald_guard_t *) arg;
    const herald_acl_user_t *user = herald_auth_lookup (self->auth, name);
    if (!user || !herald_auth_key_valid (user, key, s_now_ns ()))
        return false;
    if (!is_read && count == 0)
        return user->read_all;
    //  A narrowed prefix lies inside a read prefix: readable as a topic is
    for (size_t index = 0; index < count; index++)
        if (!herald_acl_may_read (user, prefixes [index].ptr, prefixes [index].len))
            return false;
    return true;
}

size_t
herald_guard_revoke (herald_guard_t *self)
{
    size_t ended = herald_streams_revoke (self->streams, s_stream_allowed, self,
                                          "key revoked or expired, or the ACL no longer lets "
                                          "this user read what this stream reads");
    if (ended)
        herald_log ("info", "ACL: %zu streams ended unauthorized", ended);
    return ended;
}


//  --------------------------------------------------------------------------
//  PUBLISH (the group commit's guard)

static herald_err
s_publish_check (void *arg, zframe_t *body, const herald_msg_t *msg, herald_error_t *err,
                 uint64_t *retry_ms)
{
    herald_guard_t *self = (herald_guard_t *) arg;
    herald_error_t why = { 0 };
    const herald_acl_user_t *user = herald_auth_user (self->auth, body, NULL, &why);
    *err = (herald_error_t) { .has_rid = true, .rid = msg->rid };
    if (!user) {
        herald_error_set (err, HERALD_ERR_UNAUTHORIZED, "", "%s", why.message);
        herald_auth_refused (self->auth, body, "PUBLISH", "\"reason\":\"revoked\"");
        return err->code;
    }
    if (herald_auth_is_node (self->auth, user)) {
        herald_error_set (err, HERALD_ERR_UNAUTHORIZED, "", "the broker's own key does not "
                          "publish");
        herald_auth_refused (self->auth, body, "PUBLISH", NULL);
        return err->code;
    }
    for (size_t index = 0; index < msg->publish.count; index++) {
        const herald_event_t *event = &msg->publish.events [index];
        if (herald_acl_may_publish (user, event->topic, event->topic_len))
            continue;
        //  The whole batch: one atomic request, nothing of it stored
        char topic [600];
        s_topic_json (event->topic, event->topic_len, topic, sizeof (topic));
        herald_error_set (err, HERALD_ERR_UNAUTHORIZED, "", "events[%zu]: user '%s' may not "
                          "publish to topic %s; nothing of this batch was stored", index,
                          user->name, topic);
        char fields [700];
        snprintf (fields, sizeof (fields), "\"rid\":%" PRIu64 ",\"index\":%zu,\"topic\":%s",
                  msg->rid, index, topic);
        herald_auth_refused (self->auth, body, "PUBLISH", fields);
        return err->code;
    }
    //  Within its rate: the agent retries overloaded after retry_ms, so a
    //  limited publisher slows down and its outbox holds the rest
    if (!herald_auth_take (self->auth, user, msg->publish.count, zframe_size (body),
                           retry_ms))
        return herald_error_set (err, HERALD_ERR_OVERLOADED, "", "user '%s' publishes above "
                                 "its rate; retry in %" PRIu64 " ms", user->name, *retry_ms);
    return HERALD_OK;
}

//  The topic a stored event (seq) or an earlier one of the proposal has:
//  false when it cannot be read (then refused: fail closed).
static bool
s_original_topic (herald_guard_t *self, uint64_t seq, const herald_event_t *earlier,
                  uint8_t **envelope, const char **topic, size_t *topic_len)
{
    if (!seq) {
        *topic = earlier->topic;
        *topic_len = earlier->topic_len;
        return true;
    }
    size_t len = 0;
    uint64_t s, v, t;
    return herald_store_get (self->store, seq, envelope, &len, NULL) == HERALD_OK
        && herald_event_peek (*envelope, len, topic, topic_len, &s, &v, &t);
}

//  Just before the commit is proposed: a request whose id is stored (or
//  earlier in the proposal) under a topic this user may not publish is
//  refused whole, naming the first such event, like a topic outside the
//  grants; a duplicate of its own topics goes on and is ACKed as one.
//  The ids are read in one batched lookup; only a duplicate's envelope
//  is read more.
static herald_err
s_stored_check (void *arg, zframe_t *body, const herald_msg_t *msg,
                const herald_event_t *const *earlier, herald_error_t *err)
{
    herald_guard_t *self = (herald_guard_t *) arg;
    *err = (herald_error_t) { .has_rid = true, .rid = msg->rid };
    herald_error_t why = { 0 };
    const herald_acl_user_t *user = herald_auth_user (self->auth, body, NULL, &why);
    if (!user) {
        //  Revoked since it was queued
        herald_error_set (err, HERALD_ERR_UNAUTHORIZED, "", "%s", why.message);
        herald_auth_refused (self->auth, body, "PUBLISH", "\"reason\":\"revoked\"");
        return err->code;
    }
    size_t count = msg->publish.count;
    if (count > self->seq_capacity) {
        free (self->seqs);
        self->seqs = (uint64_t *) malloc (count * sizeof (uint64_t));
        self->seq_capacity = self->seqs? count: 0;
        if (!self->seqs)
            return herald_error_set (err, HERALD_ERR_INTERNAL, "", "out of memory");
    }
    if (herald_store_lookup_ids (self->store, msg->publish.events, count, self->seqs,
                                 &why) != HERALD_OK) {
        herald_log ("error", "PUBLISH rid %" PRIu64 ": its ids could not be checked: %s",
                    msg->rid, why.message);
        return herald_error_set (err, HERALD_ERR_INTERNAL, "", "the ids of this batch could "
                                 "not be checked (%s); nothing of it was stored", why.message);
    }
    for (size_t index = 0; index < count; index++) {
        if (!self->seqs [index] && !earlier [index])
            continue;                   //  a new id
        uint8_t *envelope = NULL;
        const char *topic = NULL;
        size_t topic_len = 0;
        bool allowed = s_original_topic (self, self->seqs [index], earlier [index], &envelope,
                                         &topic, &topic_len)
                    && herald_acl_may_publish (user, topic, topic_len);
        free (envelope);
        if (allowed)
            continue;
        //  Neither the stored topic nor the seq is named: that is the secret
        herald_error_set (err, HERALD_ERR_UNAUTHORIZED, "", "events[%zu]: this id is stored "
                          "already, in a topic user '%s' may not publish; nothing of this "
                          "batch was stored", index, user->name);
        char fields [128];
        snprintf (fields, sizeof (fields), "\"rid\":%" PRIu64 ",\"index\":%zu,"
                  "\"reason\":\"duplicate\"", msg->rid, index);
        herald_auth_refused (self->auth, body, "PUBLISH", fields);
        return err->code;
    }
    return HERALD_OK;
}

static bool
s_duplicate_check (void *arg, zframe_t *body, uint64_t seq)
{
    herald_guard_t *self = (herald_guard_t *) arg;
    herald_error_t why = { 0 };
    const herald_acl_user_t *user = herald_auth_user (self->auth, body, NULL, &why);
    uint8_t *envelope = NULL;
    size_t len = 0;
    const char *topic = NULL;
    size_t topic_len = 0;
    uint64_t s, v, t;
    //  Fail closed: a stored event that cannot be read is not confirmed
    bool allowed = user && !herald_auth_is_node (self->auth, user)
                && herald_store_get (self->store, seq, &envelope, &len, NULL) == HERALD_OK
                && herald_event_peek (envelope, len, &topic, &topic_len, &s, &v, &t)
                && herald_acl_may_publish (user, topic, topic_len);
    free (envelope);
    if (!allowed) {
        char fields [64];
        snprintf (fields, sizeof (fields), "\"reason\":\"duplicate\",\"seq\":%" PRIu64, seq);
        herald_auth_refused (self->auth, body, "PUBLISH", fields);
    }
    return allowed;
}

void
herald_guard_commit (herald_guard_t *self, herald_commit_t *commit)
{
    herald_commit_guard_t guard = { s_publish_check, s_duplicate_check, self,
                                    s_stored_check };
    herald_commit_set_guard (commit, &guard);
}


//  --------------------------------------------------------------------------
//  WELCOME and STATUS

static int
s_pack_str (msgpack_packer *pk, const char *text, size_t len)
{
    return msgpack_pack_str (pk, len) | msgpack_pack_str_body (pk, text, len);
}

static int
s_pack_cstr (msgpack_packer *pk, const char *text)
{
    return s_pack_str (pk, text, strlen (text));
}

static int
s_pack_prefixes (msgpack_packer *pk, const herald_acl_prefixes_t *set)
{
    if (set->all)
        return msgpack_pack_array (pk, 1) | s_pack_cstr (pk, "*");
    int rc = msgpack_pack_array (pk, set->count);
    for (size_t index = 0; index < set->count; index++)
        rc |= s_pack_str (pk, set->prefixes [index].ptr, set->prefixes [index].len);
    return rc;
}

static const struct {
    unsigned bit;
    const char *name;
} s_grants [] = {
    { HERALD_ACL_ADMIN_STATUS, "status" }, { HERALD_ACL_ADMIN_ACL, "acl" },
    { HERALD_ACL_ADMIN_CLUSTER, "cluster" }, { HERALD_ACL_ADMIN_TRIM, "trim" },
    { HERALD_ACL_ADMIN_BACKUP, "backup" }, { HERALD_ACL_ADMIN_GROUPS, "groups" }
};
#define S_GRANT_COUNT   (sizeof (s_grants) / sizeof (s_grants [0]))

//  The admin grants of a user, as an array of names.
static void
s_pack_grants (msgpack_packer *pk, unsigned admin)
{
    size_t held = 0;
    for (size_t index = 0; index < S_GRANT_COUNT; index++)
        held += (admin & s_grants [index].bit) != 0;
    msgpack_pack_array (pk, held);
    for (size_t index = 0; index < S_GRANT_COUNT; index++)
        if (admin & s_grants [index].bit)
            s_pack_cstr (pk, s_grants [index].name);
}

herald_msg_raw_t
herald_guard_welcome (herald_guard_t *self, const herald_acl_user_t *user,
                      herald_msg_raw_t more, msgpack_sbuffer *buffer, const char **fanout)
{
    buffer->size = 0;
    if (more.len)
        msgpack_sbuffer_write (buffer, more.data, more.len);
    msgpack_packer pk;
    msgpack_packer_init (&pk, buffer, msgpack_sbuffer_write);
    s_pack_cstr (&pk, "user");
    s_pack_cstr (&pk, user->name);
    s_pack_cstr (&pk, "scope");
    if (user->scope)
        s_pack_cstr (&pk, user->scope->name);
    else
        msgpack_pack_nil (&pk);
    s_pack_cstr (&pk, "read");
    if (user->read_all)
        msgpack_pack_array (&pk, 1), s_pack_cstr (&pk, "*");
    else
    if (user->scope)
        s_pack_prefixes (&pk, &user->scope->read);
    else
        msgpack_pack_array (&pk, 0);
    s_pack_cstr (&pk, "publish");
    s_pack_prefixes (&pk, &user->publish);
    s_pack_cstr (&pk, "admin");
    s_pack_grants (&pk, user->admin);
    s_pack_cstr (&pk, "acl_version");
    s_pack_cstr (&pk, herald_acl_version (herald_auth_acl (self->auth)));
    *fanout = user->read_all? self->config->fanout: user->scope? user->scope->fanout: NULL;
    return (herald_msg_raw_t) { buffer->data, buffer->size, more.count + 6 };
}

bool
herald_guard_status_all (herald_guard_t *self, const herald_acl_user_t *user)
{
    (void) self;
    return (user->admin & HERALD_ACL_ADMIN_STATUS) != 0;
}

herald_msg_raw_t
herald_guard_status_raw (herald_guard_t *self, herald_msg_raw_t more, msgpack_sbuffer *buffer)
{
    buffer->size = 0;
    if (more.len)
        msgpack_sbuffer_write (buffer, more.data, more.len);
    msgpack_packer pk;
    msgpack_packer_init (&pk, buffer, msgpack_sbuffer_write);
    s_pack_cstr (&pk, "acl_version");
    s_pack_cstr (&pk, herald_acl_version (herald_auth_acl (self->auth)));
    return (herald_msg_raw_t) { buffer->data, buffer->size, more.count + 1 };
}


//  --------------------------------------------------------------------------
//  ACL (the admin command)

//  A key as show prints it: its first KEY_SHOWN Z85 characters (public
//  keys are not secret; a prefix tells them apart and keeps lines short).
#define KEY_SHOWN       10

static void
s_acl_reply (herald_guard_t *self, zframe_t *identity, const herald_msg_t *request,
             msgpack_sbuffer *buffer, size_t count)
{
    herald_msg_t reply = { .type = HERALD_MSG_ACL_REPLY, .has_rid = true, .rid = request->rid };
    reply.acl.op = request->acl.op;
    reply.acl.raw = (herald_msg_raw_t) { buffer->data, buffer->size, count };
    herald_reply_msg (self->reply, identity, &reply);
}

static void
s_acl_reload (herald_guard_t *self, const herald_acl_user_t *user, zframe_t *identity,
              const herald_msg_t *request)
{
    //  user is of the table the reload may free: its name is copied first
    char by [HERALD_ACL_NAME_MAX + 1];
    snprintf (by, sizeof (by), "%s", user->name);
    user = NULL;
    const herald_acl_t *acl = herald_auth_acl (self->auth);
    char previous [HERALD_ACL_VERSION_LEN + 1];
    snprintf (previous, sizeof (previous), "%s", herald_acl_version (acl));
    herald_error_t why;
    zlist_t *revoked = zlist_new ();
    zlist_autofree (revoked);
    if (!herald_auth_reload_now (self->auth, by, &why, revoked)) {
        herald_error_t err = { .has_rid = true, .rid = request->rid };
        herald_error_set (&err, why.code == HERALD_ERR_INVALID? HERALD_ERR_BAD_REQUEST
                                                              : HERALD_ERR_INTERNAL, "",
                          "ACL not reloaded, version %s stays in force: %s", previous,
                          why.message);
        herald_reply_err (self->reply, identity, &err);
        zlist_destroy (&revoked);
        return;
    }
    acl = herald_auth_acl (self->auth);
    msgpack_sbuffer buffer;
    msgpack_sbuffer_init (&buffer);
    msgpack_packer pk;
    msgpack_packer_init (&pk, &buffer, msgpack_sbuffer_write);
    s_pack_cstr (&pk, "acl_version");
    s_pack_cstr (&pk, herald_acl_version (acl));
    s_pack_cstr (&pk, "previous");
    s_pack_cstr (&pk, previous);
    s_pack_cstr (&pk, "users");
    msgpack_pack_uint64 (&pk, herald_acl_user_count (acl));
    s_pack_cstr (&pk, "scopes");
    msgpack_pack_uint64 (&pk, herald_acl_scope_count (acl));
    s_pack_cstr (&pk, "revoked");
    msgpack_pack_array (&pk, zlist_size (revoked));
    for (const char *name = (const char *) zlist_first (revoked); name;
         name = (const char *) zlist_next (revoked))
        s_pack_cstr (&pk, name);
    s_acl_reply (self, identity, request, &buffer, 5);
    msgpack_sbuffer_destroy (&buffer);
    zlist_destroy (&revoked);
}

static void
s_acl_show (herald_guard_t *self, zframe_t *identity, const herald_msg_t *request)
{
    const herald_acl_t *acl = herald_auth_acl (self->auth);
    msgpack_sbuffer buffer;
    msgpack_sbuffer_init (&buffer);
    msgpack_packer pk;
    msgpack_packer_init (&pk, &buffer, msgpack_sbuffer_write);
    s_pack_cstr (&pk, "acl_version");
    s_pack_cstr (&pk, herald_acl_version (acl));
    s_pack_cstr (&pk, "path");
    s_pack_cstr (&pk, herald_auth_path (self->auth));
    s_pack_cstr (&pk, "loaded");
    msgpack_pack_uint64 (&pk, (uint64_t) herald_auth_loaded (self->auth));
    s_pack_cstr (&pk, "users");
    size_t users = herald_acl_user_count (acl);
    msgpack_pack_array (&pk, users);
    for (size_t index = 0; index < users; index++) {
        const herald_acl_user_t *user = herald_acl_user_at (acl, index);
        msgpack_pack_map (&pk, 5);
        s_pack_cstr (&pk, "name");
        s_pack_cstr (&pk, user->name);
        //  scope: its name, "*" for read-all, nil for a user who reads nothing
        s_pack_cstr (&pk, "scope");
        if (user->read_all)
            s_pack_cstr (&pk, "*");
        else
        if (user->scope)
            s_pack_cstr (&pk, user->scope->name);
        else
            msgpack_pack_nil (&pk);
        s_pack_cstr (&pk, "publish");
        s_pack_prefixes (&pk, &user->publish);
        s_pack_cstr (&pk, "admin");
        s_pack_grants (&pk, user->admin);
        s_pack_cstr (&pk, "keys");
        msgpack_pack_array (&pk, user->key_count);
        for (size_t key = 0; key < user->key_count; key++)
            s_pack_str (&pk, user->keys [key].z85, KEY_SHOWN);
    }
    s_pack_cstr (&pk, "scopes");
    size_t scopes = herald_acl_scope_count (acl);
    msgpack_pack_array (&pk, scopes);
    for (size_t index = 0; index < scopes; index++) {
        const herald_acl_scope_t *scope = herald_acl_scope_at (acl, index);
        msgpack_pack_map (&pk, 3);
        s_pack_cstr (&pk, "name");
        s_pack_cstr (&pk, scope->name);
        s_pack_cstr (&pk, "fanout");
        s_pack_cstr (&pk, scope->fanout);
        s_pack_cstr (&pk, "read");
        s_pack_prefixes (&pk, &scope->read);
    }
    s_acl_reply (self, identity, request, &buffer, 5);
    msgpack_sbuffer_destroy (&buffer);
}

void
herald_guard_acl (herald_guard_t *self, const herald_acl_user_t *user, zframe_t *identity,
                  const herald_msg_t *request)
{
    if (request->acl.op == HERALD_MSG_ACL_RELOAD)
        s_acl_reload (self, user, identity, request);
    else
        s_acl_show (self, identity, request);
}
