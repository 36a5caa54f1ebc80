/*  =========================================================================
    herald_agent - the agent's public API (include/herald.h)

    Every call here runs on the caller's thread.  It opens the state
    directory, starts the I/O actor (herald_io.c) and the delivery
    thread (herald_agent_deliver.c), queues commands for the actor under
    the agent's lock and wakes it through an eventfd, and appends publishes
    to the outbox (herald_outbox.c).  Read, replay and the resolution of a
    subscription's start use their own short-lived connection
    (herald_agent_stream.c); snapshots are herald_agent_snapshot.c.

    State directory:
        LOCK                flock()ed by the one agent using the directory
        outbox              herald_outbox.c
        subs/<name>.ckpt    herald_checkpoint.c, one per subscription
        snapshots/<name>    herald_agent_snapshot.c

    With no state directory (options.state_dir NULL) the outbox is kept in
    memory only and there are no checkpoint files or snapshots: only group
    subscriptions, whose positions the broker keeps, and local ones whose
    caller keeps their position (caller_position: a checkpoint in memory,
    herald_checkpoint_new_memory) can be made.  Those write nothing to a
    state_dir either when the agent has one.

    A group subscription (herald_agent_subscribe_group) is never given to
    the I/O actor: its member thread (herald_member.c) reads and commits
    on its own connection and hands batches to the delivery thread
    (herald_agent_deliver.c, "Group subscriptions").
    =========================================================================
*/

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <sys/eventfd.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>
#include "herald_agent_priv.h"
#include "herald_event.h"
#include "herald_member.h"
#include "herald_schema.h"
#include "herald_say.h"
#include "herald_text.h"
#include "herald_uuid.h"

static _Thread_local herald_err s_last_code;
static _Thread_local char s_last_message [HERALD_ERROR_MESSAGE_MAX];

//  Record the calling thread's last error; returns code.
herald_err
herald_agent_set_error (herald_err code, const char *format, ...)
{
    s_last_code = code;
    va_list args;
    va_start (args, format);
    herald_text_vformat (s_last_message, sizeof s_last_message, format, args);
    va_end (args);
    return code;
}

herald_err
herald_agent_last_errcode (void)
{
    return s_last_code;
}

const char *
herald_agent_last_error (void)
{
    return s_last_code? s_last_message: "no error";
}

herald_err
herald_agent_set_last_error (herald_err code, const char *message)
{
    return herald_agent_set_error (code, "%s", message? message: "");
}

int64_t
herald_agent_now_ms (void)
{
    return zclock_mono ();
}

void
herald_agent_log_limited (int64_t *last, const char *format, ...)
{
    int64_t now = herald_agent_now_ms ();
    if (now - *last < 1000)
        return;
    *last = now;
    va_list args;
    va_start (args, format);
    herald_vsay (HERALD_LOG_WARNING, format, args);
    va_end (args);
}

void
herald_agent_options_init (herald_agent_options_t *options)
{
    memset (options, 0, sizeof *options);
}

size_t
herald_agent_options_size (void)
{
    return sizeof (herald_agent_options_t);
}

void
herald_batch_destroy (herald_batch_t **self_p)
{
    herald_batch_t *self = *self_p;
    if (!self)
        return;
    for (size_t index = 0; self->kind == HERALD_BATCH_EVENTS && index < self->count; index++)
        zframe_destroy (&self->frames [index]);
    free (self->completions);
    free (self->message);
    free (self);
    *self_p = NULL;
}

void
herald_agent_keep_completions (herald_agent_t *self, herald_batch_t *batch)
{
    size_t lost = 0;
    pthread_mutex_lock (&self->lock);
    if (!self->kept_completions)
        self->kept_completions = zlist_new ();
    if (!self->kept_completions || zlist_append (self->kept_completions, batch) != 0) {
        lost = batch->count;
        herald_batch_destroy (&batch);
    }
    pthread_mutex_unlock (&self->lock);
    //  Said outside the lock: the log callback is the application's code
    if (lost)
        herald_say (HERALD_LOG_ERROR, "out of memory: %zu publish completions are not "
                    "called (their events were stored)", lost);
}

void
herald_agent_learn_lineage (herald_agent_t *self, uint64_t lineage)
{
    atomic_store (&self->broker_lineage, lineage);
    atomic_store (&self->lineage_known, true);
}

void
herald_agent_wake (herald_agent_t *self)
{
    //  One write per wake-up, not per call: a burst of publishes costs
    //  the actor one system call
    if (atomic_exchange (&self->wake_pending, true))
        return;
    uint64_t one = 1;
    if (write (self->wake_fd, &one, sizeof one) < 0)
        return;                     //  the counter is saturated: it is awake
}

//  The queue is bounded by construction: a subscription queues one
//  SUBSCRIBE and at most one UNSUBSCRIBE in its life (a second stop, say
//  unsubscribe after a failure, finds it queued and adds nothing), and an
//  agent has at most HERALD_AGENT_SUBS_MAX of them, stopped ones included.
//  A full queue would be a broken invariant: it is refused, loudly and
//  counted, never dropped in silence.
herald_err
herald_agent_command (herald_agent_t *self, herald_cmd_kind_t kind, herald_agent_sub_t *sub)
{
    herald_err rc = HERALD_OK;
    pthread_mutex_lock (&self->lock);
    if (kind == HERALD_CMD_UNSUBSCRIBE && sub->unsubscribe_queued)
        ;                           //  the I/O actor stops it once
    else
    if (self->command_count < HERALD_AGENT_COMMANDS_MAX) {
        self->commands [self->command_count++] = (herald_cmd_t) { kind, sub };
        if (kind == HERALD_CMD_UNSUBSCRIBE)
            sub->unsubscribe_queued = true;
    }
    else {
        self->commands_refused++;
        rc = HERALD_ERR_OVERLOADED;
    }
    pthread_mutex_unlock (&self->lock);
    if (rc) {
        herald_say (HERALD_LOG_WARNING, "the command queue is full (%d): %s of %s refused",
                    HERALD_AGENT_COMMANDS_MAX, kind == HERALD_CMD_SUBSCRIBE? "subscribe"
                                                                           : "unsubscribe",
                    sub->name);
        return herald_agent_set_error (rc, "the agent's command queue is full (%d): "
                                       "subscription %s not %s", HERALD_AGENT_COMMANDS_MAX,
                                       sub->name, kind == HERALD_CMD_SUBSCRIBE? "started"
                                                                              : "stopped");
    }
    herald_agent_wake (self);
    return HERALD_OK;
}

bool
herald_agent_sub_matches (const herald_agent_sub_t *sub, const char *topic, size_t len)
{
    if (sub->prefix_count == 0)
        return true;
    for (size_t index = 0; index < sub->prefix_count; index++) {
        size_t prefix_len = strlen (sub->prefixes [index]);
        if (prefix_len <= len && memcmp (sub->prefixes [index], topic, prefix_len) == 0)
            return true;
    }
    return false;
}

bool
herald_agent_sub_fail (herald_agent_t *self, herald_agent_sub_t *sub, int code,
                       const char *message, bool call_back)
{
    pthread_mutex_lock (&self->lock);
    int state = atomic_load (&sub->state);
    bool failed = state == HERALD_SUB_CATCHING_UP || state == HERALD_SUB_LIVE;
    if (failed) {
        atomic_store (&sub->state, HERALD_SUB_FAILED);
        sub->error = code;
        herald_text_fit (sub->message, sizeof sub->message, message, strlen (message));
    }
    atomic_store (&sub->stop, true);
    pthread_mutex_unlock (&self->lock);
    if (!failed)
        return false;
    if (sub->group) {
        //  No I/O actor state to stop: its member leaves, destroyed by
        //  the delivery thread once out of the subscription, which also
        //  calls on_error when the member thread failed it
        if (!call_back && !pthread_equal (pthread_self (), self->deliver_thread))
            atomic_store (&sub->tell_error, true);
        atomic_store (&self->group_reap, true);
        uint64_t one = 1;
        if (write (self->group_fd, &one, sizeof one) < 0) {
            //  EAGAIN: saturated, so readable
        }
    }
    else
        herald_agent_command (self, HERALD_CMD_UNSUBSCRIBE, sub);
    if (call_back && self->options.on_error)
        self->options.on_error (sub->name, code, message, self->options.on_error_arg);
    else
    if (!self->options.on_error)
        herald_say (HERALD_LOG_ERROR, "subscription %s failed: %s", sub->name, message);
    return true;
}

//  ---------------------------------------------------------------------
//  Lifecycle

static int
s_mkdirs (const char *path)
{
    char copy [4096];
    if (strlen (path) >= sizeof copy) {
        errno = ENAMETOOLONG;           //  never make a directory of a cut path
        return -1;
    }
    memcpy (copy, path, strlen (path) + 1);
    for (char *slash = copy + 1; *slash; slash++)
        if (*slash == '/') {
            *slash = 0;
            if (mkdir (copy, 0755) != 0 && errno != EEXIST)
                return -1;
            *slash = '/';
        }
    return mkdir (copy, 0755) != 0 && errno != EEXIST? -1: 0;
}

void
herald_agent_sub_destroy (herald_agent_sub_t **sub_p)
{
    herald_agent_sub_t *sub = *sub_p;
    if (!sub)
        return;
    herald_checkpoint_destroy (&sub->checkpoint);
    for (size_t index = 0; index < sub->prefix_count; index++)
        free (sub->prefixes [index]);
    free (sub->prefixes);
    free (sub->name);
    herald_schema_sub_destroy (&sub->schema);
    free (sub);
    *sub_p = NULL;
}

//  Lock the state directory and open its outbox; with none, an outbox in
//  memory.  The error set on failure.
static herald_err
s_open_state (herald_agent_t *self)
{
    herald_agent_options_t *o = &self->options;
    char path [4096] = "";
    if (self->state_dir) {
        snprintf (path, sizeof path, "%s/subs", self->state_dir);
        if (s_mkdirs (path) != 0)
            return herald_agent_set_error (HERALD_ERR_IO, "%s: cannot create: %s", path,
                                           strerror (errno));
        snprintf (path, sizeof path, "%s/LOCK", self->state_dir);
        self->lock_fd = open (path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
        if (self->lock_fd < 0 || flock (self->lock_fd, LOCK_EX | LOCK_NB) != 0) {
            if (self->lock_fd >= 0 && errno == EWOULDBLOCK)
                return herald_agent_set_error (HERALD_ERR_LOCKED, "state directory %s is in "
                                               "use by another agent", self->state_dir);
            return herald_agent_set_error (HERALD_ERR_IO, "%s: %s", path, strerror (errno));
        }
        snprintf (path, sizeof path, "%s/outbox", self->state_dir);
    }
    char message [HERALD_ERROR_MESSAGE_MAX];
    uint64_t recovered = 0;
    herald_err rc = herald_outbox_open (&self->outbox, self->state_dir? path: NULL,
                                        o->outbox_max_events, o->outbox_max_bytes,
                                        o->outbox_fsync, &recovered, message, sizeof message);
    if (rc)
        return herald_agent_set_error (rc, "%s", message);
    if (recovered) {
        herald_say (HERALD_LOG_WARNING, "%s: cut off a record torn by a crash inside a "
                    "publish call (it had not returned)", path);
        atomic_fetch_add (&self->state_recovered, recovered);
    }
    return HERALD_OK;
}

herald_agent_t *
herald_agent_new (const char *service_id, const herald_agent_options_t *options)
{
    if (!service_id || !*service_id || strlen (service_id) > 255 || !options
    ||  (options->state_dir && !*options->state_dir)) {
        herald_agent_set_error (HERALD_ERR_INVALID, "herald_agent_new needs a service id of "
                                "1-255 bytes and options (state_dir: a directory, or NULL "
                                "for none)");
        return NULL;
    }
    herald_agent_t *self = calloc (1, sizeof *self);
    if (!self) {
        herald_agent_set_error (HERALD_ERR_NOMEM, "out of memory");
        return NULL;
    }
    //  A library must not take the application's SIGINT and SIGTERM: czmq
    //  would install its own handlers when it first starts
    zsys_handler_set (NULL);
    self->options = *options;
    herald_agent_options_t *o = &self->options;
    o->timeout_ms = o->timeout_ms > 0? o->timeout_ms: 5000;
    o->heartbeat_ms = o->heartbeat_ms > 0? o->heartbeat_ms: 1000;
    o->dedup_window = o->dedup_window? o->dedup_window: 4096;
    o->live_buffer = o->live_buffer? o->live_buffer: 65536;
    o->outbox_max_events = o->outbox_max_events? o->outbox_max_events: 100000;
    o->outbox_max_bytes = o->outbox_max_bytes? o->outbox_max_bytes: 64 * 1024 * 1024;
    o->sync_interval_ms = o->sync_interval_ms > 0? o->sync_interval_ms: 1000;
    o->retry_max_ms = o->retry_max_ms > 0? o->retry_max_ms: 1000;
    o->sub_rcvhwm = o->sub_rcvhwm > 0? o->sub_rcvhwm: 100000;
    self->service = strdup (service_id);
    self->api = strdup (options->api? options->api: "tcp://127.0.0.1:5580");
    self->fanout = options->fanout? strdup (options->fanout): NULL;
    self->state_dir = options->state_dir? strdup (options->state_dir): NULL;
    self->key_file = options->key_file? strdup (options->key_file): NULL;
    self->server_key = options->server_key? strdup (options->server_key): NULL;
    o->api = self->api;
    o->fanout = NULL;
    o->state_dir = self->state_dir;
    o->key_file = self->key_file;
    o->server_key = self->server_key;
    self->lock_fd = self->wake_fd = self->dispatch_fd = self->group_fd = -1;
    pthread_mutex_init (&self->lock, NULL);
    pthread_mutex_init (&self->group_lock, NULL);
    pthread_mutex_init (&self->member_lock, NULL);
    pthread_mutex_init (&self->release_lock, NULL);
    pthread_condattr_t attr;
    pthread_condattr_init (&attr);
    pthread_condattr_setclock (&attr, CLOCK_MONOTONIC);
    pthread_cond_init (&self->group_cond, &attr);
    pthread_condattr_destroy (&attr);
    pthread_mutex_init (&self->dispatch_lock, NULL);
    pthread_mutex_init (&self->pool_lock, NULL);
    pthread_cond_init (&self->dispatch_cond, NULL);
    if (!self->service || !self->api || (options->state_dir && !self->state_dir)
    ||  (options->fanout && !self->fanout)
    ||  (options->key_file && !self->key_file) || (options->server_key && !self->server_key)) {
        herald_agent_set_error (HERALD_ERR_NOMEM, "out of memory");
        herald_agent_destroy (&self);
        return NULL;
    }
    //  Schemas: the casters' registry (herald_schema.c)
    self->schemas = herald_schema_new ();
    if (!self->schemas) {
        herald_agent_set_error (HERALD_ERR_NOMEM, "out of memory");
        herald_agent_destroy (&self);
        return NULL;
    }
    //  Keys first: a bad one is the caller's to fix before anything is
    //  created on disk or on the network
    if (self->key_file || self->server_key) {
        char why [600];
        self->curve = herald_curve_new (self->key_file, self->server_key, why, sizeof why);
        if (!self->curve) {
            herald_agent_set_error (HERALD_ERR_INVALID, "%s", why);
            herald_agent_destroy (&self);
            return NULL;
        }
    }
    if (herald_agent_endpoints_init (self)) {
        herald_agent_destroy (&self);
        return NULL;
    }
    if (s_open_state (self) != HERALD_OK) {
        herald_agent_destroy (&self);
        return NULL;
    }
    self->wake_fd = eventfd (0, EFD_NONBLOCK | EFD_CLOEXEC);
    self->group_fd = eventfd (0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (self->wake_fd < 0 || self->group_fd < 0) {
        herald_agent_set_error (HERALD_ERR_IO, "eventfd: %s", strerror (errno));
        herald_agent_destroy (&self);
        return NULL;
    }
    if (o->dispatch && (!(self->dispatch_completions = zlist_new ())
                    ||  (self->dispatch_fd = eventfd (0, EFD_NONBLOCK | EFD_CLOEXEC)) < 0)) {
        herald_agent_set_error (HERALD_ERR_IO, "eventfd: %s", strerror (errno));
        herald_agent_destroy (&self);
        return NULL;
    }
    //  Named by a serial, not the agent's address: a closed socket's inproc
    //  name is released by libzmq's reaper some time later, so the next
    //  agent malloc'd at the same address could not bind it
    static atomic_uint_fast64_t s_serial;
    self->serial = atomic_fetch_add (&s_serial, 1) + 1;
    snprintf (self->deliver_endpoint, sizeof self->deliver_endpoint,
              "inproc://herald-deliver-%" PRIu64, self->serial);
    self->io = self->wake_fd >= 0? zactor_new (herald_io_actor, self): NULL;
    if (self->io && atomic_load (&self->io_start_error)) {
        herald_agent_set_error (atomic_load (&self->io_start_error), "the agent's I/O thread "
                                "%s", self->io_message);
        herald_agent_destroy (&self);
        return NULL;
    }
    if (!self->io
    ||  pthread_create (&self->deliver_thread, NULL, herald_agent_deliver_thread, self) != 0) {
        herald_agent_set_error (HERALD_ERR_IO, "cannot start the agent's threads");
        herald_agent_destroy (&self);
        return NULL;
    }
    self->deliver_started = true;
    return self;
}

void
herald_agent_destroy (herald_agent_t **self_p)
{
    herald_agent_t *self = *self_p;
    if (!self)
        return;
    //  Group members first, while the delivery thread runs: each commits
    //  what its handler did and leaves, so its partitions go to the other
    //  members at once (bounded by timeout_ms each)
    herald_agent_sub_t *groups [HERALD_AGENT_SUBS_MAX];
    size_t group_count = 0;
    pthread_mutex_lock (&self->lock);
    for (size_t index = 0; index < self->sub_count; index++)
        if (self->subs [index]->group) {
            herald_agent_sub_t *sub = self->subs [index];
            int state = atomic_load (&sub->state);
            if (state == HERALD_SUB_CATCHING_UP || state == HERALD_SUB_LIVE)
                atomic_store (&sub->state, HERALD_SUB_STOPPED);
            atomic_store (&sub->stop, true);
            groups [group_count++] = sub;
        }
    pthread_mutex_unlock (&self->lock);
    if (group_count && self->dispatch_fd >= 0) {
        pthread_mutex_lock (&self->dispatch_lock);
        pthread_cond_broadcast (&self->dispatch_cond);
        pthread_mutex_unlock (&self->dispatch_lock);
    }
    for (size_t index = 0; index < group_count; index++)
        herald_agent_group_release (self, groups [index]);
    atomic_store (&self->stopping, true);
    pthread_mutex_lock (&self->group_lock);
    pthread_cond_broadcast (&self->group_cond);
    pthread_mutex_unlock (&self->group_lock);
    if (self->dispatch_fd >= 0) {
        pthread_mutex_lock (&self->dispatch_lock);
        pthread_cond_broadcast (&self->dispatch_cond);
        pthread_mutex_unlock (&self->dispatch_lock);
    }
    zactor_destroy (&self->io);
    atomic_store (&self->io_gone, true);
    if (self->deliver_started)
        pthread_join (self->deliver_thread, NULL);
    //  Both threads are gone: whatever completion is still owed runs here,
    //  so every async publish has had exactly one before destroy returns
    herald_agent_run_last_completions (self);
    for (size_t index = 0; index < self->sub_count; index++)
        herald_agent_sub_destroy (&self->subs [index]);
    //  Every member was destroyed above and refused pushes since: a batch
    //  still queued names no member
    while (self->group_count) {
        herald_batch_destroy (&self->group_queue [self->group_head]);
        self->group_head = (self->group_head + 1) % HERALD_AGENT_GROUP_QUEUE;
        self->group_count--;
    }
    herald_outbox_destroy (&self->outbox);
    herald_agent_pool_destroy (self);
    pthread_mutex_destroy (&self->pool_lock);
    herald_curve_destroy (&self->curve);
    free (self->key_file);
    free (self->server_key);
    if (self->wake_fd >= 0)
        close (self->wake_fd);
    if (self->dispatch_fd >= 0)
        close (self->dispatch_fd);
    if (self->group_fd >= 0)
        close (self->group_fd);
    pthread_cond_destroy (&self->group_cond);
    pthread_mutex_destroy (&self->release_lock);
    pthread_mutex_destroy (&self->member_lock);
    pthread_mutex_destroy (&self->group_lock);
    zlist_destroy (&self->dispatch_completions);
    zlist_destroy (&self->kept_completions);
    pthread_cond_destroy (&self->dispatch_cond);
    pthread_mutex_destroy (&self->dispatch_lock);
    if (self->lock_fd >= 0)
        close (self->lock_fd);
    pthread_mutex_destroy (&self->lock);
    free (self->service);
    free (self->api);
    free (self->fanout);
    herald_agent_endpoints_fini (self);
    free (self->state_dir);
    herald_schema_destroy (&self->schemas);
    free (self);
    *self_p = NULL;
}

//  ---------------------------------------------------------------------
//  Subscriptions

bool
herald_agent_name_valid (const char *name)
{
    size_t len = name? strlen (name): 0;
    if (len == 0 || len > 128 || name [0] == '.')
        return false;
    for (size_t index = 0; index < len; index++) {
        char c = name [index];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')
           || c == '.' || c == '_' || c == '-'))
            return false;
    }
    return true;
}

//  The newest subscription called name, or NULL.  Under the lock.
herald_agent_sub_t *
herald_agent_find_sub (herald_agent_t *self, const char *name)
{
    for (size_t index = self->sub_count; index > 0; index--)
        if (streq (self->subs [index - 1]->name, name))
            return self->subs [index - 1];
    return NULL;
}

//  Count and check prefixes (NULL-terminated, or NULL).  The error set.
herald_err
herald_agent_prefixes_check (const char *const *prefixes, size_t *count_p)
{
    size_t count = 0;
    while (prefixes && prefixes [count]) {
        size_t len = strlen (prefixes [count]);
        if (len > HERALD_TOPIC_MAX || !herald_utf8_valid (prefixes [count], len))
            return herald_agent_set_error (HERALD_ERR_INVALID, "prefix %zu is not 0-255 bytes "
                                           "of UTF-8", count);
        if (++count > 256)
            return herald_agent_set_error (HERALD_ERR_INVALID, "more than 256 prefixes");
    }
    *count_p = count;
    return HERALD_OK;
}

//  Set by the _batch subscribes below around their call to the plain one,
//  on the calling thread, for herald_agent_sub_new to pick up.
static _Thread_local herald_batch_handler_fn *s_batch_pending;

//  The per-event handler of a subscription with a batch handler: never
//  called (the delivery thread calls batch_handler)
static int
s_batch_only (const herald_delivery_t *event, void *arg)
{
    (void) event;
    (void) arg;
    return HERALD_ERR_INVALID;
}

//  A new subscription: name and prefixes copied, not listed.  NULL with
//  the error set when out of memory.
herald_agent_sub_t *
herald_agent_sub_new (const char *name, const char *const *prefixes, size_t count,
                      herald_handler_fn *handler, void *arg)
{
    herald_agent_sub_t *sub = calloc (1, sizeof *sub);
    if (!sub) {
        herald_agent_set_error (HERALD_ERR_NOMEM, "out of memory");
        return NULL;
    }
    sub->name = strdup (name);
    sub->prefixes = calloc (count + 1, sizeof (char *));
    for (size_t index = 0; sub->prefixes && index < count; index++)
        if ((sub->prefixes [index] = strdup (prefixes [index])))
            sub->prefix_count++;
    if (!sub->name || !sub->prefixes || sub->prefix_count != count) {
        herald_agent_sub_destroy (&sub);
        herald_agent_set_error (HERALD_ERR_NOMEM, "out of memory");
        return NULL;
    }
    sub->handler = handler;
    sub->batch_handler = s_batch_pending;
    sub->arg = arg;
    //  Schemas: herald_agent_subscribe_with's declarations for this call
    sub->schema = herald_agent_schema_take_pending ();
    return sub;
}

herald_err
herald_agent_subscribe (herald_agent_t *self, const char *name, const char *const *prefixes,
                        herald_start_t start, herald_handler_fn *handler, void *arg)
{
    return herald_agent_subscribe_local (self, name, prefixes, start, handler, NULL, false,
                                         arg);
}

//  The position of a new subscription: its checkpoint file in state_dir
//  (resumed when it exists, else made at the resolved start), or with
//  caller_position a checkpoint in memory at the resolved start, every
//  time.  The error set.
static herald_err
s_sub_checkpoint (herald_agent_t *self, herald_agent_sub_t *sub, herald_start_t start)
{
    //  A new checkpoint belongs to the lineage heard last, or to the first
    //  one heard: a start chosen on today's log (a seq) is not rewound for
    //  a loss before it
    uint64_t lineage = atomic_load (&self->lineage_known)? atomic_load (&self->broker_lineage)
                                                         : HERALD_LINEAGE_UNKNOWN;
    uint64_t start_done = 0;
    herald_err rc;
    if (sub->caller_position) {
        rc = herald_agent_resolve_start (self, start, &start_done);
        if (rc)
            return rc;              //  the message is set
        rc = herald_checkpoint_new_memory (&sub->checkpoint, self->options.dedup_window,
                                           start_done, lineage);
        return rc? herald_agent_set_error (rc, "out of memory"): HERALD_OK;
    }
    char path [4096];
    snprintf (path, sizeof path, "%s/subs/%s.ckpt", self->state_dir, sub->name);
    if (!herald_checkpoint_exists (path)) {
        rc = herald_agent_resolve_start (self, start, &start_done);
        if (rc)
            return rc;
    }
    bool recovered = false;
    char message [HERALD_ERROR_MESSAGE_MAX];
    rc = herald_checkpoint_open (&sub->checkpoint, path, self->options.dedup_window, true,
                                 start_done, lineage, &recovered, message, sizeof message);
    if (rc)
        return herald_agent_set_error (rc, "%s", message);
    if (recovered) {
        herald_say (HERALD_LOG_WARNING, "%s: the newest checkpoint slot was torn; resumed "
                    "from the one before (the next event is flagged redelivered)", path);
        atomic_fetch_add (&self->state_recovered, 1);
    }
    return HERALD_OK;
}

herald_err
herald_agent_subscribe_local (herald_agent_t *self, const char *name,
                              const char *const *prefixes, herald_start_t start,
                              herald_handler_fn *handler,
                              herald_batch_handler_fn *batch_handler, bool caller_position,
                              void *arg)
{
    if (batch_handler)
        handler = s_batch_only;
    if (!self || !herald_agent_name_valid (name) || !handler)
        return herald_agent_set_error (HERALD_ERR_INVALID, "subscribe needs a name of 1-128 "
                                       "bytes of [A-Za-z0-9._-] and a handler");
    if (!self->state_dir && !caller_position)
        return herald_agent_set_error (HERALD_ERR_INVALID, "a local subscription keeps its "
                                       "checkpoint in state_dir; this agent has none: use a "
                                       "group subscription (herald_agent_subscribe_group), or "
                                       "keep the position yourself (caller_position)");
    size_t count = 0;
    herald_err check = herald_agent_prefixes_check (prefixes, &count);
    if (check)
        return check;
    pthread_mutex_lock (&self->lock);
    herald_agent_sub_t *old = herald_agent_find_sub (self, name);
    int old_state = old? atomic_load (&old->state): 0;
    bool full = self->sub_count >= HERALD_AGENT_SUBS_MAX;
    pthread_mutex_unlock (&self->lock);
    if (old && (old_state == HERALD_SUB_CATCHING_UP || old_state == HERALD_SUB_LIVE))
        return herald_agent_set_error (HERALD_ERR_INVALID, "subscription %s is already "
                                       "running", name);
    if (full)
        return herald_agent_set_error (HERALD_ERR_INVALID, "more than %d subscriptions",
                                       HERALD_AGENT_SUBS_MAX);
    if (old && !atomic_load (&old->busy))
        herald_checkpoint_destroy (&old->checkpoint);

    s_batch_pending = batch_handler;
    herald_agent_sub_t *sub = herald_agent_sub_new (name, prefixes, count, handler, arg);
    s_batch_pending = NULL;
    if (!sub)
        return HERALD_ERR_NOMEM;
    sub->caller_position = caller_position;
    herald_err rc = s_sub_checkpoint (self, sub, start);
    if (rc) {
        herald_agent_sub_destroy (&sub);
        return rc;                  //  the message is set
    }
    sub->start_done = herald_checkpoint_done (sub->checkpoint);
    sub->start_lineage = herald_checkpoint_lineage (sub->checkpoint);
    atomic_store (&sub->done_seq, sub->start_done);
    atomic_store (&sub->lineage, sub->start_lineage);
    atomic_store (&sub->state, HERALD_SUB_CATCHING_UP);
    pthread_mutex_lock (&self->lock);
    //  Checked again: another thread may have subscribed since
    full = self->sub_count >= HERALD_AGENT_SUBS_MAX;
    if (!full)
        self->subs [self->sub_count++] = sub;
    pthread_mutex_unlock (&self->lock);
    if (full) {
        herald_agent_sub_destroy (&sub);
        return herald_agent_set_error (HERALD_ERR_INVALID, "more than %d subscriptions",
                                       HERALD_AGENT_SUBS_MAX);
    }
    rc = herald_agent_command (self, HERALD_CMD_SUBSCRIBE, sub);
    if (rc) {
        //  Kept (the agent owns every sub it listed) but never started
        pthread_mutex_lock (&self->lock);
        atomic_store (&sub->state, HERALD_SUB_FAILED);
        sub->error = rc;
        snprintf (sub->message, sizeof sub->message, "%s", herald_agent_last_error ());
        pthread_mutex_unlock (&self->lock);
        atomic_store (&sub->stop, true);
    }
    return rc;
}

herald_err
herald_agent_unsubscribe (herald_agent_t *self, const char *name)
{
    pthread_mutex_lock (&self->lock);
    herald_agent_sub_t *sub = name? herald_agent_find_sub (self, name): NULL;
    int state = sub? atomic_load (&sub->state): 0;
    if (sub && (state == HERALD_SUB_CATCHING_UP || state == HERALD_SUB_LIVE))
        atomic_store (&sub->state, HERALD_SUB_STOPPED);
    pthread_mutex_unlock (&self->lock);
    if (!sub || state == HERALD_SUB_STOPPED)
        return herald_agent_set_error (HERALD_ERR_NOT_FOUND, "no subscription %s",
                                       name? name: "(null)");
    atomic_store (&sub->stop, true);
    if (!sub->group)
        herald_agent_command (self, HERALD_CMD_UNSUBSCRIBE, sub);
    if (self->dispatch_fd >= 0) {
        //  A call of sub posted or deferred is abandoned now, not at the
        //  delivery thread's next look
        pthread_mutex_lock (&self->dispatch_lock);
        pthread_cond_broadcast (&self->dispatch_cond);
        pthread_mutex_unlock (&self->dispatch_lock);
    }
    if (sub->group) {
        //  Waits for the delivery thread to be out of it, then its member
        //  commits and leaves (from a handler: done after the call)
        herald_agent_group_release (self, sub);
        return HERALD_OK;
    }
    if (herald_agent_in_handler (self))
        return HERALD_OK;           //  from a handler: it finishes its event
    while (atomic_load (&sub->busy))
        zclock_sleep (1);
    herald_checkpoint_destroy (&sub->checkpoint);
    return HERALD_OK;
}

herald_err
herald_agent_sub_status (herald_agent_t *self, const char *name, herald_sub_status_t *status)
{
    memset (status, 0, sizeof *status);
    pthread_mutex_lock (&self->lock);
    herald_agent_sub_t *sub = name? herald_agent_find_sub (self, name): NULL;
    pthread_mutex_unlock (&self->lock);
    if (sub && sub->group) {
        //  Its figures outside the agent's lock: a member thread may take
        //  that lock while its own is held
        herald_group_status_t figures;
        herald_agent_group_figures (self, sub, &figures);
        herald_agent_group_state (sub, &figures);
        status->delivered_seq = figures.committed;
    }
    pthread_mutex_lock (&self->lock);
    if (sub) {
        status->state = (herald_sub_state_t) atomic_load (&sub->state);
        if (!sub->group)
            status->delivered_seq = atomic_load (&sub->done_seq);
        status->delivered = atomic_load (&sub->delivered);
        status->duplicates = atomic_load (&sub->duplicates);
        status->retries = atomic_load (&sub->retries);
        status->gaps = atomic_load (&sub->gaps);
        status->repair_replays = atomic_load (&sub->repair_replays);
        status->live_wait_ms = atomic_load (&sub->live_wait_ms);
        status->data_lost = atomic_load (&sub->data_lost);
        status->lineage = atomic_load (&sub->lineage);
        status->error = sub->error;
        //  A fixed public field: a long message is cut in the middle, at words
        herald_text_fit (status->message, sizeof status->message, sub->message,
                         strlen (sub->message));
    }
    pthread_mutex_unlock (&self->lock);
    return sub? HERALD_OK: herald_agent_set_error (HERALD_ERR_NOT_FOUND, "no subscription %s",
                                                   name? name: "(null)");
}

void
herald_agent_stats (herald_agent_t *self, herald_agent_stats_t *stats)
{
    memset (stats, 0, sizeof *stats);
    uint64_t lowest = UINT64_MAX;
    herald_agent_sub_t *groups [HERALD_AGENT_SUBS_MAX];
    size_t group_count = 0;
    pthread_mutex_lock (&self->lock);
    for (size_t index = 0; index < self->sub_count; index++) {
        herald_agent_sub_t *sub = self->subs [index];
        stats->delivered += atomic_load (&sub->delivered);
        stats->duplicates += atomic_load (&sub->duplicates);
        stats->retries += atomic_load (&sub->retries);
        stats->gaps += atomic_load (&sub->gaps);
        int state = atomic_load (&sub->state);
        bool running = state == HERALD_SUB_CATCHING_UP || state == HERALD_SUB_LIVE;
        uint64_t done = atomic_load (&sub->done_seq);
        if (running && sub->group)
            groups [group_count++] = sub;
        else
        if (running && done < lowest)
            lowest = done;
    }
    pthread_mutex_unlock (&self->lock);
    //  A group member's lag is the broker's head - its committed: the
    //  largest one counts (read outside the agent's lock, as in sub_status)
    uint64_t group_lag = 0;
    for (size_t index = 0; index < group_count; index++) {
        herald_group_status_t figures;
        herald_agent_group_figures (self, groups [index], &figures);
        if (figures.lag > group_lag)
            group_lag = figures.lag;
    }
    stats->gaps_repaired = atomic_load (&self->gaps_repaired);
    stats->replays = atomic_load (&self->replays);
    stats->repair_replays = atomic_load (&self->repair_replays);
    stats->data_lost = atomic_load (&self->data_lost);
    stats->broker_lineage = atomic_load (&self->broker_lineage);
    stats->live_overflows = atomic_load (&self->live_overflows);
    stats->published = atomic_load (&self->published);
    stats->publish_errors = atomic_load (&self->publish_errors);
    herald_outbox_depth (self->outbox, &stats->outbox_depth, &stats->outbox_bytes);
    stats->broker_head = atomic_load (&self->broker_head);
    stats->broker_epoch = atomic_load (&self->broker_epoch);
    stats->broker_reachable = atomic_load (&self->broker_reachable);
    stats->state_recovered = atomic_load (&self->state_recovered);
    stats->replay_errors = atomic_load (&self->replay_errors);
    stats->failovers = atomic_load (&self->failovers);
    stats->leader_redirects = atomic_load (&self->leader_redirects);
    stats->nodes_known = atomic_load (&self->nodes_known);
    stats->auth_refused = atomic_load (&self->auth_refused);
    pthread_mutex_lock (&self->lock);
    snprintf (stats->node, sizeof stats->node, "%s", self->node_name);
    snprintf (stats->node_api, sizeof stats->node_api, "%s", self->node_api);
    pthread_mutex_unlock (&self->lock);
    if (lowest != UINT64_MAX && stats->broker_head > lowest)
        stats->lag = stats->broker_head - lowest;
    if (group_lag > stats->lag)
        stats->lag = group_lag;
}

//  ---------------------------------------------------------------------
//  Publishing

//  Check event and pack its publisher map into buffer, with id.
static herald_err
s_pack_event (const herald_outgoing_t *event, const uint8_t id [16], msgpack_sbuffer *buffer)
{
    if (!event || !event->topic || !herald_topic_valid (event->topic, strlen (event->topic)))
        return herald_agent_set_error (HERALD_ERR_INVALID, "topic: must be 1-255 bytes of "
                                       "UTF-8, no NUL, not starting with $");
    if (event->data_len && !event->data)
        return herald_agent_set_error (HERALD_ERR_INVALID, "data: NULL with a length");
    size_t type_len = event->type? strlen (event->type): 0;
    if (event->type && (type_len > HERALD_TYPE_MAX || !herald_utf8_valid (event->type, type_len)))
        return herald_agent_set_error (HERALD_ERR_INVALID, "type: must be 0-255 bytes of UTF-8");
    if (event->meta_count > HERALD_META_MAX_ENTRIES || (event->meta_count && !event->meta))
        return herald_agent_set_error (HERALD_ERR_INVALID, "meta: at most %d entries",
                                       HERALD_META_MAX_ENTRIES);
    for (size_t index = 0; index < event->meta_count; index++) {
        const herald_meta_t *kv = &event->meta [index];
        if (kv->key_len > HERALD_META_KEY_MAX || kv->value_len > HERALD_META_VALUE_MAX
        ||  (kv->key_len && !kv->key) || (kv->value_len && !kv->value)
        ||  !herald_utf8_valid (kv->key, kv->key_len)
        ||  !herald_utf8_valid (kv->value, kv->value_len))
            return herald_agent_set_error (HERALD_ERR_INVALID, "meta[%zu]: keys of at most 64 "
                                           "and values of at most 4096 bytes of UTF-8", index);
        for (size_t other = 0; other < index; other++)
            if (event->meta [other].key_len == kv->key_len
            &&  memcmp (event->meta [other].key, kv->key, kv->key_len) == 0)
                return herald_agent_set_error (HERALD_ERR_INVALID, "meta[%zu]: duplicate key",
                                               index);
    }
    //  Every pack call can fail (the buffer's realloc): one that failed
    //  leaves a shorter map that is still valid MessagePack (a bin32
    //  header for data_len >= 4 GiB says its length mod 2^32, and no body
    //  follows), which would be published as a different event
    msgpack_packer pk;
    msgpack_packer_init (&pk, buffer, msgpack_sbuffer_write);
    size_t keys = 3 + (event->type != NULL) + (event->schema != 0) + (event->meta_count > 0)
                + event->has_expect;
    int rc = msgpack_pack_map (&pk, keys);
    rc |= msgpack_pack_str_with_body (&pk, "id", 2);
    rc |= msgpack_pack_bin_with_body (&pk, id, 16);
    rc |= msgpack_pack_str_with_body (&pk, "topic", 5);
    rc |= msgpack_pack_str_with_body (&pk, event->topic, strlen (event->topic));
    if (event->type) {
        rc |= msgpack_pack_str_with_body (&pk, "type", 4);
        rc |= msgpack_pack_str_with_body (&pk, event->type, type_len);
    }
    if (event->schema) {
        rc |= msgpack_pack_str_with_body (&pk, "schema", 6);
        rc |= msgpack_pack_uint64 (&pk, event->schema);
    }
    if (event->meta_count) {
        rc |= msgpack_pack_str_with_body (&pk, "meta", 4);
        rc |= msgpack_pack_map (&pk, event->meta_count);
        for (size_t index = 0; index < event->meta_count; index++) {
            rc |= msgpack_pack_str_with_body (&pk, event->meta [index].key,
                                              event->meta [index].key_len);
            rc |= msgpack_pack_str_with_body (&pk, event->meta [index].value,
                                              event->meta [index].value_len);
        }
    }
    if (event->has_expect) {
        rc |= msgpack_pack_str_with_body (&pk, "expect", 6);
        rc |= msgpack_pack_uint64 (&pk, event->expect);
    }
    rc |= msgpack_pack_str_with_body (&pk, "data", 4);
    rc |= msgpack_pack_bin_with_body (&pk, event->data, event->data_len);
    if (rc != 0)
        return herald_agent_set_error (HERALD_ERR_NOMEM, "out of memory encoding the event "
                                       "(%zu bytes of data): nothing was queued",
                                       event->data_len);
    if (buffer->size > HERALD_MAX_EVENT_BYTES)
        return herald_agent_set_error (HERALD_ERR_INVALID, "the event is %zu bytes, over the "
                                       "%d of max_event_bytes", buffer->size,
                                       HERALD_MAX_EVENT_BYTES);
    return HERALD_OK;
}

//  Pack and append to the outbox; id filled.
static herald_err
s_enqueue (herald_agent_t *self, const herald_outgoing_t *event, uint8_t id [16],
           herald_publish_fn *done, void *arg, herald_outbox_waiter_t *waiter, int timeout_ms)
{
    if (atomic_load (&self->io_gone))
        //  From a completion run by destroy: nothing would send it, and
        //  no completion of it could be called any more
        return herald_agent_set_error (HERALD_ERR_INVALID, "the agent is being destroyed: "
                                       "nothing was queued");
    if (event && event->id)
        memcpy (id, event->id, 16);
    else
        herald_uuid_v7 (id);
    msgpack_sbuffer buffer;
    msgpack_sbuffer_init (&buffer);
    herald_err rc = s_pack_event (event, id, &buffer);
    if (rc == HERALD_OK) {
        rc = herald_outbox_append (self->outbox, id, event->has_expect, buffer.data,
                                   buffer.size, done, arg, waiter, timeout_ms);
        if (rc == HERALD_ERR_OVERLOADED)
            herald_agent_set_error (rc, "the outbox stayed full for %d ms", timeout_ms);
        else
        if (rc)
            herald_agent_set_error (rc, "cannot write to the outbox: %s", strerror (errno));
    }
    msgpack_sbuffer_destroy (&buffer);
    if (rc == HERALD_OK)
        herald_agent_wake (self);
    return rc;
}

herald_err
herald_agent_publish (herald_agent_t *self, const herald_outgoing_t *event,
                      herald_publish_result_t *result, int timeout_ms)
{
    herald_publish_result_t scratch;
    if (!result)
        result = &scratch;
    memset (result, 0, sizeof *result);
    if (timeout_ms <= 0)
        timeout_ms = self->options.timeout_ms;
    int64_t start = herald_agent_now_ms ();
    herald_outbox_waiter_t waiter;
    memset (&waiter, 0, sizeof waiter);
    herald_err rc = s_enqueue (self, event, result->id, NULL, NULL, &waiter, timeout_ms);
    if (rc) {
        result->err = rc;
        return rc;
    }
    int left = (int) (timeout_ms - (herald_agent_now_ms () - start));
    if (!herald_outbox_wait (self->outbox, &waiter, left > 0? left: 0)) {
        result->err = HERALD_ERR_TIMEOUT;
        return herald_agent_set_error (HERALD_ERR_TIMEOUT, "no acknowledgement within %d ms: "
                                       "the event is queued in the outbox and will be sent "
                                       "with the same id", timeout_ms);
    }
    uint8_t id [16];
    memcpy (id, result->id, 16);
    *result = waiter.result;
    memcpy (result->id, id, 16);
    if (result->err == HERALD_ERR_CONFLICT)
        return herald_agent_set_error (result->err, "conflict: expected version %llu, the "
                                       "topic is at %llu",
                                       (unsigned long long) result->expected,
                                       (unsigned long long) result->actual);
    if (result->err)
        return herald_agent_set_error (result->err, "%s", result->message);
    return HERALD_OK;
}

herald_err
herald_agent_publish_async (herald_agent_t *self, const herald_outgoing_t *event,
                            herald_publish_fn *done, void *arg, uint8_t *id_out)
{
    uint8_t id [16];
    herald_err rc = s_enqueue (self, event, id, done, arg, NULL, self->options.timeout_ms);
    if (rc == HERALD_OK && id_out)
        memcpy (id_out, id, 16);
    return rc;
}

herald_err
herald_agent_flush (herald_agent_t *self, int timeout_ms)
{
    if (timeout_ms <= 0)
        timeout_ms = self->options.timeout_ms;
    if (atomic_load (&self->io_gone))
        timeout_ms = 0;             //  from a completion run by destroy
    //  The outbox counts completions owed: finished there, and not yet run
    //  by the delivery thread, or in dispatch mode not yet queued for
    //  herald_agent_dispatch (which the caller may be the thread to run).
    //  Flush waits for them too, except from user code of the agent,
    //  where that would wait for itself
    bool completions = !herald_agent_in_handler (self);
    if (herald_outbox_drain (self->outbox, timeout_ms, completions))
        return HERALD_OK;
    return herald_agent_set_error (HERALD_ERR_TIMEOUT, "not everything was answered and "
                                   "completed within %d ms: what is unanswered stays queued "
                                   "in the outbox and will be sent", timeout_ms);
}

//  ---------------------------------------------------------------------
//  Batch handlers (issue 16): the plain subscribes, with the batch
//  handler handed to herald_agent_sub_new; the per-event handler they
//  are given is never called (the delivery thread calls batch_handler).

herald_err
herald_agent_subscribe_batch (herald_agent_t *self, const char *name,
                              const char *const *prefixes, herald_start_t start,
                              herald_batch_handler_fn *handler, void *arg)
{
    if (!handler)
        return herald_agent_set_error (HERALD_ERR_INVALID, "subscribe_batch needs a handler");
    return herald_agent_subscribe_local (self, name, prefixes, start, NULL, handler, false,
                                         arg);
}

herald_err
herald_agent_subscribe_group_batch (herald_agent_t *self, const char *group,
                                    const herald_group_options_t *options,
                                    herald_batch_handler_fn *handler, void *arg)
{
    if (!handler)
        return herald_agent_set_error (HERALD_ERR_INVALID, "subscribe_group_batch needs a "
                                       "handler");
    s_batch_pending = handler;
    herald_err rc = herald_agent_subscribe_group (self, group, options, s_batch_only, arg);
    s_batch_pending = NULL;
    return rc;
}
