/*  =========================================================================
    herald_agent_schema - the agent's schema API (herald.h, "Schema evolution")

    Registration, subscribe_with, convert, the parked file's readers and
    the figures.  The registry and the chain walk are herald_schema.c; the
    delivery thread's use of them is herald_agent_deliver.c.

    subscribe_with (and subscribe_batch_with) hands its declarations to
    herald_agent_subscribe_local or herald_agent_subscribe_group(_batch)
    through a thread-local slot that
    herald_agent_sub_new takes: the sub has them before it is listed, so
    no event reaches it unconverted, and the two subscribe calls keep
    their code.
    =========================================================================
*/

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <string.h>
#include <unistd.h>
#include "herald_agent_priv.h"
#include "herald_event.h"
#include "herald_file.h"
#include "herald_schema.h"
#include "herald_text.h"

static _Thread_local herald_schema_sub_t *s_pending;

herald_schema_sub_t *
herald_agent_schema_take_pending (void)
{
    herald_schema_sub_t *pending = s_pending;
    s_pending = NULL;
    return pending;
}

herald_err
herald_agent_upcaster (herald_agent_t *self, const char *type, uint64_t from_schema,
                       herald_caster_fn *fn, void *arg)
{
    if (!self)
        return herald_agent_set_error (HERALD_ERR_INVALID, "no agent");
    return herald_schema_register (self->schemas, type, from_schema, false, fn, arg);
}

herald_err
herald_agent_downcaster (herald_agent_t *self, const char *type, uint64_t from_schema,
                         herald_caster_fn *fn, void *arg)
{
    if (!self)
        return herald_agent_set_error (HERALD_ERR_INVALID, "no agent");
    return herald_schema_register (self->schemas, type, from_schema, true, fn, arg);
}

void
herald_subscribe_options_init (herald_subscribe_options_t *options)
{
    memset (options, 0, sizeof *options);
}

size_t
herald_subscribe_options_size (void)
{
    return sizeof (herald_subscribe_options_t);
}

size_t
herald_schema_stats_size (void)
{
    return sizeof (herald_schema_stats_t);
}

//  subscribe_with and subscribe_batch_with: check, make the declarations,
//  hand them over (s_pending) to the subscribe that makes the sub.
static herald_err
s_subscribe_with (herald_agent_t *self, const char *name,
                  const herald_subscribe_options_t *options, herald_handler_fn *handler,
                  herald_batch_handler_fn *batch_handler, void *arg)
{
    if (!self || !options)
        return herald_agent_set_error (HERALD_ERR_INVALID, "subscribe_with needs an agent "
                                       "and options");
    if (!herald_agent_name_valid (name))
        return herald_agent_set_error (HERALD_ERR_INVALID, "a subscription name is 1-128 "
                                       "bytes of [A-Za-z0-9._-], not starting with '.'");
    if (!handler && !batch_handler)
        return herald_agent_set_error (HERALD_ERR_INVALID, "subscribe_with needs a handler");
    //  A group's positions are the broker's, shared by its members and
    //  committed by them: there is no position of one caller to start from
    if (options->caller_position && options->group)
        return herald_agent_set_error (HERALD_ERR_INVALID, "caller_position is for a local "
                                       "subscription: a group's positions are kept by the "
                                       "broker (set group or caller_position, not both)");
    //  Nothing of a caller_position subscription goes to state_dir: its
    //  parked events only to on_parked
    if (options->caller_position && options->on_incompatible == HERALD_SCHEMA_PARK
    &&  !options->on_parked)
        return herald_agent_set_error (HERALD_ERR_INVALID, "PARK with caller_position needs "
                                       "on_parked: nothing of such a subscription is written "
                                       "to state_dir, so there is no parked file");
    //  A group subscription's parked file is per member process: still
    //  this agent's state_dir, when it has one
    herald_schema_sub_t *schema = herald_schema_sub_new (options, name,
                                                         options->caller_position
                                                         ? NULL: self->state_dir);
    if (!schema)
        return herald_agent_last_errcode ();
    s_pending = schema;
    herald_err rc;
    if (options->group)
        rc = batch_handler
           ? herald_agent_subscribe_group_batch (self, name, options->group, batch_handler, arg)
           : herald_agent_subscribe_group (self, name, options->group, handler, arg);
    else
        rc = herald_agent_subscribe_local (self, name, options->prefixes, options->start,
                                           handler, batch_handler, options->caller_position,
                                           arg);
    //  Not taken: the call failed before it made the sub
    herald_schema_sub_t *left = herald_agent_schema_take_pending ();
    herald_schema_sub_destroy (&left);
    return rc;
}

herald_err
herald_agent_subscribe_with (herald_agent_t *self, const char *name,
                             const herald_subscribe_options_t *options,
                             herald_handler_fn *handler, void *arg)
{
    if (!handler)
        return herald_agent_set_error (HERALD_ERR_INVALID, "subscribe_with needs a handler");
    return s_subscribe_with (self, name, options, handler, NULL, arg);
}

herald_err
herald_agent_subscribe_batch_with (herald_agent_t *self, const char *name,
                                   const herald_subscribe_options_t *options,
                                   herald_batch_handler_fn *handler, void *arg)
{
    if (!handler)
        return herald_agent_set_error (HERALD_ERR_INVALID, "subscribe_batch_with needs a "
                                       "handler");
    return s_subscribe_with (self, name, options, NULL, handler, arg);
}

herald_err
herald_agent_convert (herald_agent_t *self, const herald_delivery_t *event, uint64_t want,
                      void **data_p, size_t *len_p)
{
    if (!self || !event || !data_p || !len_p || (event->data_len && !event->data))
        return herald_agent_set_error (HERALD_ERR_INVALID, "convert needs an agent, an event "
                                       "and where to put the data");
    herald_delivery_t view = *event;
    void *owned = NULL;
    int direction;
    char message [1024];
    if (herald_schema_convert (self->schemas, &view, want, &owned, &direction, message,
                               sizeof message) != HERALD_OK)
        return herald_agent_set_error (HERALD_ERR_UNSUPPORTED, "%s", message);
    if (!owned) {
        owned = malloc (view.data_len? view.data_len: 1);
        if (!owned)
            return herald_agent_set_error (HERALD_ERR_NOMEM, "out of memory");
        if (view.data_len)
            memcpy (owned, view.data, view.data_len);
    }
    *data_p = owned;
    *len_p = view.data_len;
    return HERALD_OK;
}

uint64_t
herald_delivery_stored_schema (const herald_delivery_t *event)
{
    if (!event || !event->envelope)
        return 0;
    msgpack_zone zone;
    msgpack_zone_init (&zone, 1024);
    herald_event_t decoded;
    herald_error_t err;
    uint64_t schema = 0;
    if (herald_event_decode (&decoded, event->envelope, event->envelope_len, &zone,
                             &err) == HERALD_OK)
        schema = decoded.has_schema? decoded.schema: 1;
    msgpack_zone_destroy (&zone);
    return schema;
}

//  ---------------------------------------------------------------------
//  Parked events

static herald_err
s_parked_path (herald_agent_t *self, const char *name, char *path, size_t size)
{
    if (!self || !herald_agent_name_valid (name))
        return herald_agent_set_error (HERALD_ERR_INVALID, "a subscription name is 1-128 "
                                       "bytes of [A-Za-z0-9._-]");
    if (!self->state_dir)
        return herald_agent_set_error (HERALD_ERR_INVALID, "parked events are kept in "
                                       "state_dir; this agent has none (use on_parked)");
    snprintf (path, size, "%s/parked/%s.parked", self->state_dir, name);
    return HERALD_OK;
}

typedef struct {
    herald_parked_fn *fn;
    void *arg;
    herald_err rc;
} s_list_t;

static bool
s_list_one (const herald_parked_record_t *record, void *arg)
{
    s_list_t *list = (s_list_t *) arg;
    msgpack_zone zone;
    msgpack_zone_init (&zone, 2048);
    herald_event_t event;
    herald_error_t err;
    if (herald_event_decode (&event, record->envelope, record->envelope_len, &zone,
                             &err) != HERALD_OK) {
        list->rc = herald_agent_set_error (HERALD_ERR_CORRUPT, "a parked event does not "
                                           "decode: %s", err.message);
        msgpack_zone_destroy (&zone);
        return false;
    }
    herald_delivery_t view;
    herald_agent_view (&view, &event, record->envelope, record->envelope_len);
    char reason [1024];
    herald_text_fit (reason, sizeof reason, record->reason, record->reason_len);
    list->fn (&view, reason, list->arg);
    msgpack_zone_destroy (&zone);
    return true;
}

herald_err
herald_agent_parked (herald_agent_t *self, const char *name, herald_parked_fn *fn, void *arg)
{
    char path [4096];
    herald_err rc = s_parked_path (self, name, path, sizeof path);
    if (rc)
        return rc;
    if (!fn)
        return herald_agent_set_error (HERALD_ERR_INVALID, "parked needs a function");
    s_list_t list = { .fn = fn, .arg = arg, .rc = HERALD_OK };
    uint8_t *bytes;
    size_t len, good;
    rc = herald_schema_parked_scan (path, &bytes, &len, &good, s_list_one, &list);
    free (bytes);
    return rc? rc: list.rc;
}

typedef struct {
    herald_agent_t *agent;
    herald_schema_sub_t *schema;
    herald_handler_fn *handler;
    void *arg;
    const char *name;
    herald_err rc;
    size_t kept_from;                       //  the first record not handled
} s_replay_t;

static bool
s_replay_one (const herald_parked_record_t *record, void *arg)
{
    s_replay_t *replay = (s_replay_t *) arg;
    replay->kept_from = record->offset;
    msgpack_zone zone;
    msgpack_zone_init (&zone, 2048);
    herald_event_t event;
    herald_error_t err;
    if (herald_event_decode (&event, record->envelope, record->envelope_len, &zone,
                             &err) != HERALD_OK) {
        replay->rc = herald_agent_set_error (HERALD_ERR_CORRUPT, "a parked event does not "
                                             "decode: %s", err.message);
        msgpack_zone_destroy (&zone);
        return false;
    }
    herald_delivery_t view;
    herald_agent_view (&view, &event, record->envelope, record->envelope_len);
    view.subscription = replay->name;
    uint64_t want = herald_schema_sub_want (replay->schema, view.type, view.type_len);
    void *owned = NULL;
    int direction;
    char message [1024];
    herald_err rc = herald_schema_convert (replay->agent->schemas, &view, want, &owned,
                                           &direction, message, sizeof message);
    if (rc) {
        replay->rc = herald_agent_set_error (HERALD_ERR_UNSUPPORTED, "%s", message);
        msgpack_zone_destroy (&zone);
        return false;
    }
    int verdict = replay->handler (&view, replay->arg);
    free (owned);
    msgpack_zone_destroy (&zone);
    if (verdict != HERALD_OK) {
        replay->rc = herald_agent_set_error ((herald_err) verdict, "the handler returned %d "
                                             "for parked seq %" PRIu64, verdict, event.seq);
        return false;
    }
    replay->kept_from = record->end;
    return true;
}

//  Rewrite path to hold bytes[from..len) of what was read, then what was
//  appended since (bytes after `read` in the file now).  Under park_lock.
static herald_err
s_parked_rewrite (const char *path, const uint8_t *bytes, size_t from, size_t read_len)
{
    uint8_t *now;
    size_t now_len, good;
    herald_err rc = herald_schema_parked_scan (path, &now, &now_len, &good, NULL, NULL);
    (void) good;
    if (rc)
        return rc;
    char tmp [4200];
    snprintf (tmp, sizeof tmp, "%s.tmp", path);
    int fd = open (tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    bool ok = fd >= 0;
    const uint8_t *parts [2] = { bytes + from, now + (now_len > read_len? read_len: now_len) };
    size_t sizes [2] = { read_len - from, now_len > read_len? now_len - read_len: 0 };
    for (int part = 0; ok && part < 2; part++) {
        size_t written = 0;
        while (ok && written < sizes [part]) {
            ssize_t put = write (fd, parts [part] + written, sizes [part] - written);
            ok = put > 0;
            if (ok)
                written += (size_t) put;
        }
    }
    free (now);
    if (!ok) {
        rc = herald_agent_set_error (HERALD_ERR_IO, "%s: %s", tmp, strerror (errno));
        if (fd >= 0)
            close (fd);
        unlink (tmp);
        return rc;
    }
    if (herald_file_replace (fd, tmp, path, NULL) != 0)
        return herald_agent_set_error (HERALD_ERR_IO, "%s: %s", path, strerror (errno));
    return HERALD_OK;
}

herald_err
herald_agent_parked_replay (herald_agent_t *self, const char *name, herald_handler_fn *handler,
                            void *arg)
{
    char path [4096];
    herald_err rc = s_parked_path (self, name, path, sizeof path);
    if (rc)
        return rc;
    if (!handler)
        return herald_agent_set_error (HERALD_ERR_INVALID, "parked_replay needs a handler");
    pthread_mutex_lock (&self->lock);
    herald_agent_sub_t *sub = herald_agent_find_sub (self, name);
    herald_schema_sub_t *schema = sub? sub->schema: NULL;
    pthread_mutex_unlock (&self->lock);
    if (!schema)
        return herald_agent_set_error (HERALD_ERR_NOT_FOUND, "no subscription %s with schemas "
                                       "in this agent", name);
    //  Read under park_lock, handle outside it (the delivery thread may
    //  park meanwhile), rewrite under it keeping what was appended since
    pthread_mutex_lock (&schema->park_lock);
    uint8_t *bytes;
    size_t len, good;
    rc = herald_schema_parked_scan (path, &bytes, &len, &good, NULL, NULL);
    pthread_mutex_unlock (&schema->park_lock);
    if (rc)
        return rc;
    free (bytes);
    s_replay_t replay = { .agent = self, .schema = schema, .handler = handler, .arg = arg,
                          .name = sub->name, .rc = HERALD_OK, .kept_from = 0 };
    size_t read_len;
    rc = herald_schema_parked_scan (path, &bytes, &read_len, &good, s_replay_one, &replay);
    if (rc == HERALD_OK && replay.rc == HERALD_OK)
        replay.kept_from = good;
    if (rc == HERALD_OK && replay.kept_from > 0) {
        pthread_mutex_lock (&schema->park_lock);
        rc = s_parked_rewrite (path, bytes, replay.kept_from, good);
        pthread_mutex_unlock (&schema->park_lock);
    }
    free (bytes);
    return rc? rc: replay.rc;
}

herald_err
herald_agent_schema_stats (herald_agent_t *self, const char *name,
                           herald_schema_stats_t *stats)
{
    memset (stats, 0, sizeof *stats);
    bool found = false;
    pthread_mutex_lock (&self->lock);
    for (size_t index = 0; index < self->sub_count; index++) {
        herald_agent_sub_t *sub = self->subs [index];
        if (name && strcmp (sub->name, name) != 0)
            continue;
        found = true;
        if (!sub->schema)
            continue;
        stats->upcast += atomic_load (&sub->schema->upcast);
        stats->downcast += atomic_load (&sub->schema->downcast);
        stats->skipped += atomic_load (&sub->schema->skipped);
        stats->parked += atomic_load (&sub->schema->parked);
        stats->stopped += atomic_load (&sub->schema->stopped);
    }
    pthread_mutex_unlock (&self->lock);
    return found || !name? HERALD_OK
                         : herald_agent_set_error (HERALD_ERR_NOT_FOUND, "no subscription %s",
                                                   name);
}
