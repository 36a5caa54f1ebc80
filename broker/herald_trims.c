/*  =========================================================================
    herald_trims - the broker's TRIM command and the disk's reclaim

    DESIGN
    The loop checks what it can at once (the body, leadership, until
    against the head and the prefix's trim point, ids_from against the
    log's first seq): a refusal costs nothing and names the field.  The
    store checks all of it again when the op is applied (the op is the
    authority: a retention trim or another TRIM may have raised the point
    between the two), and its refusal is answered the same way.

    The proof's digest is a scan of the range (minutes for a large one),
    so it runs on a zactor of its own, never on the loop, one at a time;
    the broker stopping sets its cancel flag, waits for it and answers
    nothing: nothing was trimmed, and the client retries.

    The reclaim is a plain thread: herald_store_reclaim does a budget of
    work per call, and the thread calls again while it says there is more,
    looking at its stop flag between calls.  It is woken when this node
    answered a TRIM or applied a retention trim, and otherwise looks every
    RECLAIM_LOOK_MS whether the trim points changed (a follower applies
    the leader's trims from its Raft log, a node restored from a snapshot
    imports them): the reclaim is the store's business, and it is
    idempotent, so a look too many costs one cheap call.
    =========================================================================
*/

#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <msgpack.h>
#include "herald_trims.h"
#include "herald_log.h"

#define S_RETRY_MS          1000        //  a second proof while one is checked
#define RECLAIM_BUDGET      100000      //  events' worth of work per reclaim call
#define RECLAIM_LOOK_MS     1000        //  between two looks at the trim points
#define RECLAIM_RETRY_MS    10000       //  after a reclaim that failed

typedef struct {
    herald_store_t *store;              //  borrowed from the broker
    uint64_t from, to;
    uint8_t digest [32];
    volatile bool cancel;               //  set by stop: the broker is stopping
    int64_t hold_ms;                    //  test hook: wait this long first
    herald_err rc;
    herald_error_t err;
} s_job_t;

//  A trim in the commit: what to answer once it is applied.
typedef struct {
    herald_trims_t *self;
    zframe_t *identity;                 //  NULL: a retention trim
    uint64_t rid;
    char prefix [HERALD_TOPIC_MAX + 1];
    uint64_t until;
    bool proof;
    uint64_t ids_from;
    int64_t started;
    char who [160];                     //  for the log: "user NAME", "peer ID"
    char user [128];                    //  for the audit: the user ("" none)
    char reason [320];                  //  a retention trim's
} s_trim_t;

struct _herald_trims_t {
    herald_store_t *store;
    herald_commit_t *commit;
    herald_reply_t *reply;
    herald_node_t *cluster;
    herald_auth_t *auth;
    zactor_t *worker;                   //  the proof being checked, or NULL
    s_job_t *job;
    s_trim_t *checking;                 //  ... and its request
    uint8_t ids [32];                   //  ... and the archive's digest
    bool retaining;                     //  a retention trim in flight
    int64_t hold_ms;                    //  HERALD_TEST_TRIM_HOLD_MS (tests only)
    uint64_t trims;
    uint64_t retention_trims;
    msgpack_sbuffer buffer;
    //  The reclaim thread
    pthread_t reclaimer;
    bool reclaimer_started;
    pthread_mutex_t mutex;
    pthread_cond_t wake;
    bool woken;                         //  under mutex
    volatile bool stopping;
    atomic_uint_fast64_t reclaim_pending;
    atomic_uint_fast64_t reclaimed;
};

//  ---------------------------------------------------------------------
//  The reclaim thread

//  A sum over the trim points: it changes whenever one rises or appears.
static uint64_t
s_trims_signature (herald_store_t *store)
{
    size_t count = herald_store_trims (store, NULL, 0);
    herald_trim_t *trims = (herald_trim_t *) calloc (count? count: 1, sizeof (herald_trim_t));
    if (!trims)
        return 0;
    size_t got = herald_store_trims (store, trims, count);
    count = got < count? got: count;
    uint64_t signature = count;
    for (size_t index = 0; index < count; index++)
        signature = signature * 1099511628211ULL + trims [index].until + trims [index].ts;
    free (trims);
    return signature;
}

static void *
s_reclaimer (void *arg)
{
    herald_trims_t *self = (herald_trims_t *) arg;
    uint64_t seen = 0;
    bool due = true;                    //  at start: a restart resumes
    bool failing = false;
    while (!self->stopping) {
        uint64_t signature = s_trims_signature (self->store);
        if (signature != seen)
            due = true;
        bool more = due;
        while (more && !self->stopping) {
            herald_reclaim_stats_t stats = { 0 };
            herald_error_t err = { 0 };
            atomic_store (&self->reclaim_pending, 1);
            herald_err rc = herald_store_reclaim (self->store, RECLAIM_BUDGET, &more, &stats,
                                                  &err);
            if (rc != HERALD_OK) {
                if (!failing)
                    herald_log ("warn", "reclaim: %s; trying again in %d s (the trimmed "
                                "events stay unreadable meanwhile)", err.message,
                                RECLAIM_RETRY_MS / 1000);
                failing = true;
                break;
            }
            failing = false;
            atomic_fetch_add (&self->reclaimed, stats.events_removed);
            if (!more) {
                due = false;
                seen = signature;
                atomic_store (&self->reclaim_pending, 0);
            }
        }
        pthread_mutex_lock (&self->mutex);
        if (!self->woken && !self->stopping) {
            struct timespec until;
            clock_gettime (CLOCK_REALTIME, &until);
            int64_t wait = failing? RECLAIM_RETRY_MS: RECLAIM_LOOK_MS;
            until.tv_sec += wait / 1000;
            until.tv_nsec += (wait % 1000) * 1000000;
            if (until.tv_nsec >= 1000000000) {
                until.tv_sec++;
                until.tv_nsec -= 1000000000;
            }
            pthread_cond_timedwait (&self->wake, &self->mutex, &until);
        }
        if (self->woken)
            due = true;
        self->woken = false;
        pthread_mutex_unlock (&self->mutex);
    }
    return NULL;
}

static void
s_reclaim_wake (herald_trims_t *self)
{
    pthread_mutex_lock (&self->mutex);
    self->woken = true;
    pthread_cond_signal (&self->wake);
    pthread_mutex_unlock (&self->mutex);
}

//  ---------------------------------------------------------------------
//  Lifecycle

herald_trims_t *
herald_trims_new (herald_store_t *store, herald_commit_t *commit, herald_reply_t *reply,
                  herald_node_t *cluster, herald_auth_t *auth)
{
    herald_trims_t *self = (herald_trims_t *) zmalloc (sizeof (herald_trims_t));
    self->store = store;
    self->commit = commit;
    self->reply = reply;
    self->cluster = cluster;
    self->auth = auth;
    //  Tests make a proof's check last (overloaded, a stop in the middle)
    const char *hooks = getenv ("HERALD_TEST_HOOKS");
    const char *hold = getenv ("HERALD_TEST_TRIM_HOLD_MS");
    if (hooks && streq (hooks, "1") && hold)
        self->hold_ms = atoll (hold);
    msgpack_sbuffer_init (&self->buffer);
    pthread_mutex_init (&self->mutex, NULL);
    pthread_cond_init (&self->wake, NULL);
    self->reclaimer_started = pthread_create (&self->reclaimer, NULL, s_reclaimer, self) == 0;
    if (!self->reclaimer_started)
        herald_log ("warn", "cannot start the reclaim's thread: trimmed events keep their "
                    "disk until the next start");
    return self;
}

static void
s_trim_free (s_trim_t **trim_p)
{
    if (*trim_p) {
        zframe_destroy (&(*trim_p)->identity);
        free (*trim_p);
        *trim_p = NULL;
    }
}

static void
s_job_end (herald_trims_t *self)
{
    zactor_destroy (&self->worker);
    free (self->job);
    self->job = NULL;
    s_trim_free (&self->checking);
}

void
herald_trims_stop (herald_trims_t *self)
{
    if (!self)
        return;
    if (self->worker) {
        herald_log ("info", "TRIM of '%s' up to %" PRIu64 ": its proof's check is cancelled, "
                    "the broker is stopping (nothing was trimmed)", self->checking->prefix,
                    self->checking->until);
        self->job->cancel = true;
        s_job_end (self);
    }
    if (self->reclaimer_started) {
        pthread_mutex_lock (&self->mutex);
        self->stopping = true;
        pthread_cond_signal (&self->wake);
        pthread_mutex_unlock (&self->mutex);
        pthread_join (self->reclaimer, NULL);
        self->reclaimer_started = false;
    }
    self->stopping = true;
}

void
herald_trims_destroy (herald_trims_t **self_p)
{
    herald_trims_t *self = *self_p;
    if (!self)
        return;
    herald_trims_stop (self);
    pthread_mutex_destroy (&self->mutex);
    pthread_cond_destroy (&self->wake);
    msgpack_sbuffer_destroy (&self->buffer);
    free (self);
    *self_p = NULL;
}

bool
herald_trims_is_request (zframe_t *command)
{
    return command && zframe_streq (command, "TRIM");
}

//  ---------------------------------------------------------------------
//  Leadership

bool
herald_trims_leads (herald_trims_t *self)
{
    if (!self->cluster)
        return true;
    herald_raft_state_t state;
    herald_node_state (self->cluster, &state);
    return state.role == HERALD_RAFT_LEADER && herald_node_raft (self->cluster);
}

static void
s_not_leader (herald_trims_t *self, zframe_t *identity, uint64_t rid, bool unknown)
{
    herald_raft_state_t state = { 0 };
    if (self->cluster)
        herald_node_state (self->cluster, &state);
    char message [512];
    snprintf (message, sizeof (message), "%s%s%s",
              unknown? "leadership was lost while this TRIM ran: its outcome is unknown "
                       "(STATUS trims says); ": "this node does not lead the cluster; ",
              *state.leader_api? "send TRIM to the leader at ": "no leader is known yet; "
                                                                 "retry shortly",
              state.leader_api);
    herald_msg_t reply = { .type = HERALD_MSG_ERROR, .has_rid = true, .rid = rid };
    reply.error.code = HERALD_ERR_NOT_LEADER;
    reply.error.message = (herald_str_t) { message, strlen (message) };
    reply.error.topic = (herald_str_t) { "", 0 };
    if (*state.leader_api)
        reply.error.leader = (herald_str_t) { state.leader_api, strlen (state.leader_api) };
    herald_reply_msg (self->reply, identity, &reply);
    self->reply->refused++;
}

//  ---------------------------------------------------------------------
//  Sending the trim through the commit, and its answer

static void
s_pack_str (msgpack_packer *pk, const char *key, const char *value, size_t len)
{
    msgpack_pack_str_with_body (pk, key, strlen (key));
    msgpack_pack_str_with_body (pk, value, len);
}

static void
s_pack_uint (msgpack_packer *pk, const char *key, uint64_t value)
{
    msgpack_pack_str_with_body (pk, key, strlen (key));
    msgpack_pack_uint64 (pk, value);
}

//  The fields a store refusal may name (its message begins "FIELD: ").
static const char *
s_refused_field (const char *message)
{
    static const char *fields [] = { "prefix", "until", "ids_from", "ids", "unarchived" };
    for (size_t index = 0; index < sizeof (fields) / sizeof (fields [0]); index++) {
        size_t len = strlen (fields [index]);
        if (strncmp (message, fields [index], len) == 0 && message [len] == ':')
            return fields [index];
    }
    return "until";
}

static void
s_audit (herald_trims_t *self, s_trim_t *trim, uint64_t first)
{
    if (!self->auth)
        return;
    char prefix [600], who [400], reason [700];
    herald_auth_json (trim->prefix, strlen (trim->prefix), prefix, sizeof (prefix));
    herald_auth_json (trim->user, strlen (trim->user), who, sizeof (who));
    herald_auth_json (trim->reason, strlen (trim->reason), reason, sizeof (reason));
    char fields [2048];
    snprintf (fields, sizeof (fields), "\"user\":%s,\"prefix\":%s,\"until\":%" PRIu64
              ",\"first\":%" PRIu64 ",\"proof\":%s,\"reason\":%s", who, prefix, trim->until,
              first, trim->proof? "true": "false", reason);
    herald_auth_audit (self->auth, "trim", trim->user, fields);
}

//  The op's result: {prefix, until, first} applied, {error} refused.
static void
s_trim_done (void *arg, herald_err rc, const uint8_t *result, size_t result_len,
             const herald_error_t *err)
{
    s_trim_t *trim = (s_trim_t *) arg;
    herald_trims_t *self = trim->self;
    if (!trim->identity)
        self->retaining = false;
    char error [HERALD_ERROR_MESSAGE_MAX] = "";
    uint64_t first = 0;
    bool have_first = false;
    if (rc == HERALD_OK) {
        msgpack_unpacked unpacked;
        msgpack_unpacked_init (&unpacked);
        if (!result || msgpack_unpack_next (&unpacked, (const char *) result, result_len, NULL)
                != MSGPACK_UNPACK_SUCCESS || unpacked.data.type != MSGPACK_OBJECT_MAP)
            snprintf (error, sizeof (error), "until: the trim's result does not decode");
        else {
            const msgpack_object_map *map = &unpacked.data.via.map;
            for (uint32_t at = 0; at < map->size; at++) {
                const msgpack_object *key = &map->ptr [at].key, *value = &map->ptr [at].val;
                if (key->type != MSGPACK_OBJECT_STR)
                    continue;
                if (key->via.str.size == 5 && memcmp (key->via.str.ptr, "error", 5) == 0)
                    snprintf (error, sizeof (error), "%.*s",
                              value->type == MSGPACK_OBJECT_STR? (int) value->via.str.size: 7,
                              value->type == MSGPACK_OBJECT_STR? value->via.str.ptr
                                                                : "refused");
                else
                if (key->via.str.size == 5 && memcmp (key->via.str.ptr, "first", 5) == 0
                &&  value->type == MSGPACK_OBJECT_POSITIVE_INTEGER) {
                    first = value->via.u64;
                    have_first = true;
                }
            }
        }
        msgpack_unpacked_destroy (&unpacked);
    }
    if (rc == HERALD_OK && !*error && !have_first) {
        herald_str_t prefix = { trim->prefix, strlen (trim->prefix) };
        first = herald_store_first (self->store, &prefix, 1);
    }
    if (!trim->identity) {
        //  A retention trim: nobody to answer, the log says what happened
        if (rc == HERALD_OK && !*error) {
            self->retention_trims++;
            herald_log ("info", "%s: trimmed '%s' up to seq %" PRIu64 " (deleted: no archive "
                        "holds them); its first seq is now %" PRIu64, trim->reason,
                        trim->prefix, trim->until, first);
            s_audit (self, trim, first);
            s_reclaim_wake (self);
        }
        else
        if (rc == HERALD_OK)
            herald_log ("warn", "%s: the trim of '%s' up to seq %" PRIu64 " was refused: %s",
                        trim->reason, trim->prefix, trim->until, error);
        else
        if (rc != HERALD_ERR_NOT_LEADER)
            herald_log ("warn", "%s: the trim of '%s' up to seq %" PRIu64 " failed: %s",
                        trim->reason, trim->prefix, trim->until,
                        err && *err->message? err->message: herald_strerror (rc));
        s_trim_free (&trim);
        return;
    }
    if (rc == HERALD_ERR_NOT_LEADER)
        s_not_leader (self, trim->identity, trim->rid, true);
    else
    if (rc == HERALD_ERR_OVERLOADED)
        herald_reply_refusal (self->reply, trim->identity, trim->rid, HERALD_ERR_OVERLOADED,
                              err && *err->message? err->message: "the broker is stopping "
                              "or its queue is full; retry", S_RETRY_MS);
    else
    if (rc != HERALD_OK) {
        herald_error_t reply = { .has_rid = true, .rid = trim->rid };
        herald_error_set (&reply, HERALD_ERR_INTERNAL, "", "the trim failed: %s",
                          err && *err->message? err->message: herald_strerror (rc));
        herald_reply_err (self->reply, trim->identity, &reply);
    }
    else
    if (*error) {
        herald_log ("info", "TRIM by %s of '%s' up to seq %" PRIu64 " refused: %s", trim->who,
                    trim->prefix, trim->until, error);
        herald_error_t reply = { .has_rid = true, .rid = trim->rid };
        //  The store's message names its field ("until: ..."), or it is until's
        const char *field = s_refused_field (error);
        bool named = strncmp (error, field, strlen (field)) == 0
                  && error [strlen (field)] == ':';
        herald_error_set (&reply, HERALD_ERR_BAD_REQUEST, named? "": field, "%s", error);
        herald_reply_err (self->reply, trim->identity, &reply);
    }
    else {
        self->trims++;
        int64_t ms = zclock_mono () - trim->started;
        herald_log ("info", "TRIM by %s: '%s' trimmed up to seq %" PRIu64 " (%s); its first "
                    "seq is now %" PRIu64 ", in %" PRId64 " ms", trim->who, trim->prefix,
                    trim->until, trim->proof? "the archive's proof checked"
                                            : "unarchived: no archive holds them",
                    first, ms);
        s_audit (self, trim, first);
        s_reclaim_wake (self);
        msgpack_sbuffer_clear (&self->buffer);
        msgpack_packer pk;
        msgpack_packer_init (&pk, &self->buffer, msgpack_sbuffer_write);
        msgpack_pack_map (&pk, 5);
        s_pack_uint (&pk, "rid", trim->rid);
        s_pack_str (&pk, "prefix", trim->prefix, strlen (trim->prefix));
        s_pack_uint (&pk, "until", trim->until);
        s_pack_uint (&pk, "first", first);
        s_pack_uint (&pk, "trimmed_ms", (uint64_t) ms);
        zsock_t *router = self->reply->router;
        if (herald_reply_begin (router, trim->identity) == 0) {
            herald_reply_frame (router, "TRIM", 4, true);
            herald_reply_frame (router, self->buffer.data, self->buffer.size, false);
        }
        else
            herald_reply_dropped (self->reply, trim->identity, "TRIM");
    }
    s_trim_free (&trim);
}

//  Hand the trim (taken) to the commit as the op the store applies.
static void
s_commit (herald_trims_t *self, s_trim_t *trim, const uint8_t *ids)
{
    msgpack_sbuffer_clear (&self->buffer);
    msgpack_packer pk;
    msgpack_packer_init (&pk, &self->buffer, msgpack_sbuffer_write);
    msgpack_pack_map (&pk, ids? 6: 4);
    s_pack_str (&pk, "op", "trim", 4);
    s_pack_str (&pk, "prefix", trim->prefix, strlen (trim->prefix));
    s_pack_uint (&pk, "until", trim->until);
    if (ids) {
        s_pack_uint (&pk, "ids_from", trim->ids_from);
        msgpack_pack_str_with_body (&pk, "ids", 3);
        msgpack_pack_bin_with_body (&pk, ids, 32);
    }
    s_pack_str (&pk, "reason", trim->reason, strlen (trim->reason));
    herald_commit_op (self->commit, (const uint8_t *) self->buffer.data, self->buffer.size,
                      s_trim_done, trim);
}

bool
herald_trims_retain (herald_trims_t *self, const char *prefix, uint64_t until,
                     const char *reason)
{
    if (self->retaining || self->stopping)
        return false;
    s_trim_t *trim = (s_trim_t *) zmalloc (sizeof (s_trim_t));
    trim->self = self;
    snprintf (trim->prefix, sizeof (trim->prefix), "%s", prefix);
    trim->until = until;
    trim->started = zclock_mono ();
    snprintf (trim->who, sizeof (trim->who), "retention");
    snprintf (trim->reason, sizeof (trim->reason), "%s", reason);
    self->retaining = true;
    s_commit (self, trim, NULL);
    return true;
}

bool
herald_trims_retaining (herald_trims_t *self)
{
    return self->retaining;
}

//  ---------------------------------------------------------------------
//  The request

static void
s_worker (zsock_t *pipe, void *arg)
{
    s_job_t *job = (s_job_t *) arg;
    zsock_signal (pipe, 0);
    for (int64_t held = 0; held < job->hold_ms && !job->cancel; held += 10)
        zclock_sleep (10);
    job->rc = herald_store_ids_digest (job->store, job->from, job->to, job->digest,
                                       &job->cancel, &job->err);
    zstr_send (pipe, "DONE");
    while (true) {
        char *command = zstr_recv (pipe);
        bool term = !command || streq (command, "$TERM");
        zstr_free (&command);
        if (term)
            break;
    }
}

//  The trim point of exactly prefix (0: none) and how many there are.
static uint64_t
s_current (herald_trims_t *self, const char *prefix, size_t *count)
{
    *count = herald_store_trims (self->store, NULL, 0);
    herald_trim_t *trims = (herald_trim_t *) calloc (*count? *count: 1, sizeof (herald_trim_t));
    if (!trims)
        return 0;
    size_t got = herald_store_trims (self->store, trims, *count);
    uint64_t until = 0;
    for (size_t index = 0; index < got && index < *count; index++)
        if (strcmp (trims [index].prefix, prefix) == 0)
            until = trims [index].until;
    free (trims);
    return until;
}

void
herald_trims_request (herald_trims_t *self, zframe_t *identity, zframe_t *body,
                      const char *who)
{
    herald_error_t err = { 0 };
    msgpack_unpacked unpacked;
    msgpack_unpacked_init (&unpacked);
    const msgpack_object *prefix = NULL, *until = NULL, *ids_from = NULL, *ids = NULL,
                         *unarchived = NULL;
    if (!body
    ||  msgpack_unpack_next (&unpacked, (const char *) zframe_data (body), zframe_size (body),
                             NULL) != MSGPACK_UNPACK_SUCCESS
    ||  unpacked.data.type != MSGPACK_OBJECT_MAP) {
        herald_error_set (&err, HERALD_ERR_BAD_REQUEST, "body", "a TRIM body is a map");
        goto refuse;
    }
    const msgpack_object_map *map = &unpacked.data.via.map;
    for (uint32_t index = 0; index < map->size; index++) {
        const msgpack_object *key = &map->ptr [index].key, *value = &map->ptr [index].val;
        if (value->type == MSGPACK_OBJECT_NIL)
            continue;                   //  nil is absent (the protocol's rule)
        if (herald_event_key_is (key, "rid") && value->type == MSGPACK_OBJECT_POSITIVE_INTEGER) {
            err.has_rid = true;
            err.rid = value->via.u64;
        }
        else if (herald_event_key_is (key, "prefix"))     prefix = value;
        else if (herald_event_key_is (key, "until"))      until = value;
        else if (herald_event_key_is (key, "ids_from"))   ids_from = value;
        else if (herald_event_key_is (key, "ids"))        ids = value;
        else if (herald_event_key_is (key, "unarchived")) unarchived = value;
    }
    if (!err.has_rid) {
        herald_error_set (&err, HERALD_ERR_BAD_REQUEST, "rid", "rid must be a uint");
        goto refuse;
    }
    if (!herald_trims_leads (self)) {
        s_not_leader (self, identity, err.rid, false);
        goto done;
    }
    if (prefix && (prefix->type != MSGPACK_OBJECT_STR || prefix->via.str.size > HERALD_TOPIC_MAX
               ||  (prefix->via.str.size
                    && !herald_topic_valid (prefix->via.str.ptr, prefix->via.str.size)))) {
        herald_error_set (&err, HERALD_ERR_BAD_REQUEST, "prefix", "prefix must be a topic "
                          "prefix: a str of 0 to %d bytes of UTF-8, not beginning with '$' "
                          "(absent or \"\": the whole log)", HERALD_TOPIC_MAX);
        goto refuse;
    }
    if (!until || until->type != MSGPACK_OBJECT_POSITIVE_INTEGER || until->via.u64 == 0) {
        herald_error_set (&err, HERALD_ERR_BAD_REQUEST, "until", "until must be a uint of 1 "
                          "or more: the last seq to trim");
        goto refuse;
    }
    if (unarchived && unarchived->type != MSGPACK_OBJECT_BOOLEAN) {
        herald_error_set (&err, HERALD_ERR_BAD_REQUEST, "unarchived", "unarchived must be "
                          "true (a bool), or absent with the archive's proof");
        goto refuse;
    }
    bool no_proof = unarchived && unarchived->via.boolean;
    if (no_proof && (ids_from || ids)) {
        herald_error_set (&err, HERALD_ERR_BAD_REQUEST, "unarchived", "give either the "
                          "archive's proof (ids_from and ids) or unarchived, not both");
        goto refuse;
    }
    if (!no_proof && !ids_from && !ids) {
        herald_error_set (&err, HERALD_ERR_BAD_REQUEST, "ids", "give the archive's proof "
                          "(ids_from and ids: herald trim --archive DIR) or unarchived: true "
                          "(herald trim --unarchived: the events are deleted)");
        goto refuse;
    }
    if (!no_proof && (!ids_from || ids_from->type != MSGPACK_OBJECT_POSITIVE_INTEGER)) {
        herald_error_set (&err, HERALD_ERR_BAD_REQUEST, "ids_from", "ids_from must be a "
                          "uint: the log's first seq (STATUS first), where the ids begin");
        goto refuse;
    }
    if (!no_proof && (!ids || ids->type != MSGPACK_OBJECT_BIN || ids->via.bin.size != 32)) {
        herald_error_set (&err, HERALD_ERR_BAD_REQUEST, "ids", "ids must be bin of 32 bytes: "
                          "the BLAKE2b-256 of the ids of seqs ids_from..until");
        goto refuse;
    }
    s_trim_t *trim = (s_trim_t *) zmalloc (sizeof (s_trim_t));
    trim->self = self;
    if (prefix)
        memcpy (trim->prefix, prefix->via.str.ptr, prefix->via.str.size);
    trim->until = until->via.u64;
    trim->proof = !no_proof;
    trim->ids_from = no_proof? 0: ids_from->via.u64;
    trim->rid = err.rid;
    trim->started = zclock_mono ();
    char peer [24];
    snprintf (trim->who, sizeof (trim->who), "%s%s", who? "user ": "peer ",
              who? who: herald_log_peer (identity, peer));
    snprintf (trim->user, sizeof (trim->user), "%s", who? who: "");
    snprintf (trim->reason, sizeof (trim->reason), "TRIM by %s, %s", trim->who,
              no_proof? "unarchived": "with the archive's proof");
    uint64_t head = herald_store_head (self->store);
    size_t count = 0;
    uint64_t current = s_current (self, trim->prefix, &count);
    uint64_t first = herald_store_log_first (self->store);
    if (trim->until > head)
        herald_error_set (&err, HERALD_ERR_BAD_REQUEST, "until", "%" PRIu64 " is above "
                          "the head %" PRIu64, trim->until, head);
    else
    if (trim->until <= current)
        herald_error_set (&err, HERALD_ERR_BAD_REQUEST, "until", "'%s' is already "
                          "trimmed up to %" PRIu64, trim->prefix, current);
    else
    if (!current && count >= HERALD_TRIMS_MAX)
        herald_error_set (&err, HERALD_ERR_BAD_REQUEST, "prefix", "the store keeps "
                          "%d trim prefixes already (trim a shorter prefix)", HERALD_TRIMS_MAX);
    else
    if (trim->proof && trim->ids_from != first)
        herald_error_set (&err, HERALD_ERR_BAD_REQUEST, "ids_from", "%" PRIu64 " is "
                          "not the log's first seq %" PRIu64 " (an archive's ids begin there)",
                          trim->ids_from, first);
    else
    if (trim->proof && trim->until < trim->ids_from)
        herald_error_set (&err, HERALD_ERR_BAD_REQUEST, "until", "%" PRIu64 " is below "
                          "ids_from %" PRIu64 ": the whole log is trimmed up to %" PRIu64
                          " already", trim->until, trim->ids_from, first - 1);
    if (err.code) {
        s_trim_free (&trim);
        goto refuse;
    }
    trim->identity = zframe_dup (identity);
    if (!trim->proof) {
        s_commit (self, trim, NULL);
        goto done;
    }
    if (self->worker) {
        s_trim_free (&trim);
        herald_reply_refusal (self->reply, identity, err.rid, HERALD_ERR_OVERLOADED,
                              "another TRIM's proof is being checked (one at a time): try "
                              "again once it is answered", S_RETRY_MS);
        goto done;
    }
    memcpy (self->ids, ids->via.bin.ptr, 32);
    s_job_t *job = (s_job_t *) zmalloc (sizeof (s_job_t));
    job->store = self->store;
    job->from = trim->ids_from;
    job->to = trim->until;
    job->hold_ms = self->hold_ms;
    self->job = job;
    self->checking = trim;
    self->worker = zactor_new (s_worker, job);
    if (!self->worker) {
        herald_error_set (&err, HERALD_ERR_INTERNAL, "", "cannot start the proof's check");
        s_job_end (self);
        goto refuse;
    }
    goto done;
refuse:
    herald_reply_err (self->reply, identity, &err);
done:
    msgpack_unpacked_destroy (&unpacked);
}

zsock_t *
herald_trims_sock (herald_trims_t *self)
{
    return self->worker? zactor_sock (self->worker): NULL;
}

void
herald_trims_finish (herald_trims_t *self)
{
    if (!self->worker)
        return;
    char *done = zstr_recv (zactor_sock (self->worker));
    zstr_free (&done);
    s_job_t *job = self->job;
    s_trim_t *trim = self->checking;
    herald_error_t err = { .has_rid = true, .rid = trim->rid };
    if (job->rc == HERALD_ERR_TRIMMED || job->rc == HERALD_ERR_BAD_REQUEST)
        //  Trimmed meanwhile (a retention trim), or the head moved under it
        herald_error_set (&err, HERALD_ERR_BAD_REQUEST, "ids_from", "%s",
                          job->err.message);
    else
    if (job->rc != HERALD_OK)
        herald_error_set (&err, HERALD_ERR_INTERNAL, "", "the log could not be read to check "
                          "the proof: %s", job->err.message);
    else
    if (memcmp (job->digest, self->ids, 32) != 0)
        herald_error_set (&err, HERALD_ERR_BAD_REQUEST, "ids", "the archive's ids of "
                          "seqs %" PRIu64 "..%" PRIu64 " differ from the log's: this archive is "
                          "not of this log", trim->ids_from, trim->until);
    if (err.code) {
        herald_log ("info", "TRIM by %s of '%s' up to seq %" PRIu64 " refused: %s", trim->who,
                    trim->prefix, trim->until, err.message);
        herald_reply_err (self->reply, trim->identity, &err);
        s_job_end (self);
        return;
    }
    //  Leadership may have gone while the proof was checked
    if (!herald_trims_leads (self)) {
        s_not_leader (self, trim->identity, trim->rid, false);
        s_job_end (self);
        return;
    }
    self->checking = NULL;              //  the commit's now
    uint8_t ids [32];
    memcpy (ids, self->ids, 32);
    s_job_end (self);
    s_commit (self, trim, ids);
}

//  ---------------------------------------------------------------------
//  STATUS

herald_msg_raw_t
herald_trims_status_raw (herald_trims_t *self, herald_msg_raw_t more, msgpack_sbuffer *buffer)
{
    buffer->size = 0;
    if (more.len)
        msgpack_sbuffer_write (buffer, more.data, more.len);
    msgpack_packer pk;
    msgpack_packer_init (&pk, buffer, msgpack_sbuffer_write);
    s_pack_uint (&pk, "first", herald_store_log_first (self->store));
    size_t count = herald_store_trims (self->store, NULL, 0);
    herald_trim_t *trims = (herald_trim_t *) calloc (count? count: 1, sizeof (herald_trim_t));
    size_t got = trims? herald_store_trims (self->store, trims, count): 0;
    count = got < count? got: count;
    msgpack_pack_str_with_body (&pk, "trims", 5);
    msgpack_pack_array (&pk, count);
    for (size_t index = 0; index < count; index++) {
        msgpack_pack_map (&pk, 3);
        s_pack_str (&pk, "prefix", trims [index].prefix, trims [index].prefix_len);
        s_pack_uint (&pk, "until", trims [index].until);
        s_pack_uint (&pk, "ts", trims [index].ts);
    }
    free (trims);
    return (herald_msg_raw_t) { buffer->data, buffer->size, more.count + 2 };
}

void
herald_trims_counts (herald_trims_t *self, herald_trims_counts_t *counts)
{
    counts->trims = self->trims;
    counts->retention_trims = self->retention_trims;
    counts->reclaim_pending = atomic_load (&self->reclaim_pending);
    counts->reclaimed_events = atomic_load (&self->reclaimed);
}
