/*  =========================================================================
    herald_backups - the broker's BACKUP command: online backups

    The work runs on a thread of its own (a zactor), never on the loop:
    checksumming a large store takes minutes, and the loop goes on
    committing and streaming meanwhile.  The checkpoint is consistent by
    itself (store/herald_store_checkpoint.c): it holds every append that
    returned before it was taken, so every event acknowledged before the
    request arrived, whatever the writer does meanwhile.
    =========================================================================
*/

#include <inttypes.h>
#include <msgpack.h>
#include "herald_backups.h"
#include "herald_backup.h"
#include "herald_log.h"

#define S_RETRY_MS      1000        //  a second BACKUP while one runs: try again after
#define S_PATH_MAX      3072

typedef struct {
    herald_store_t *store;          //  borrowed from the broker
    char dir [S_PATH_MAX + 1];
    char node [128];
    volatile bool cancel;           //  set by destroy: the broker is stopping
    herald_err rc;
    herald_backup_info_t info;
    herald_error_t err;
} s_job_t;

struct _herald_backups_t {
    herald_store_t *store;
    herald_reply_t *reply;
    char *node;
    zactor_t *worker;               //  the backup running, or NULL
    s_job_t *job;
    zframe_t *identity;             //  who asked for it
    uint64_t rid;
    int64_t started;
    msgpack_sbuffer buffer;
};

herald_backups_t *
herald_backups_new (herald_store_t *store, herald_reply_t *reply, const char *node)
{
    herald_backups_t *self = (herald_backups_t *) zmalloc (sizeof (herald_backups_t));
    self->store = store;
    self->reply = reply;
    self->node = strdup (node? node: "");
    msgpack_sbuffer_init (&self->buffer);
    return self;
}

static void
s_job_end (herald_backups_t *self)
{
    zactor_destroy (&self->worker);
    free (self->job);
    self->job = NULL;
    zframe_destroy (&self->identity);
}

void
herald_backups_destroy (herald_backups_t **self_p)
{
    herald_backups_t *self = *self_p;
    if (!self)
        return;
    if (self->worker) {
        herald_log ("info", "backup to %s: cancelled, the broker is stopping", self->job->dir);
        self->job->cancel = true;
        s_job_end (self);
    }
    msgpack_sbuffer_destroy (&self->buffer);
    free (self->node);
    free (self);
    *self_p = NULL;
}

bool
herald_backups_is_request (zframe_t *command)
{
    return command && zframe_streq (command, "BACKUP");
}

static void
s_worker (zsock_t *pipe, void *arg)
{
    s_job_t *job = (s_job_t *) arg;
    zsock_signal (pipe, 0);
    job->rc = herald_backup_create (job->store, job->dir, job->node, &job->cancel, NULL, NULL,
                                    &job->info, &job->err);
    zstr_send (pipe, "DONE");
    while (true) {
        char *command = zstr_recv (pipe);
        bool term = !command || streq (command, "$TERM");
        zstr_free (&command);
        if (term)
            break;
    }
}

void
herald_backups_request (herald_backups_t *self, zframe_t *identity, zframe_t *body)
{
    herald_error_t err = { 0 };
    msgpack_unpacked unpacked;
    msgpack_unpacked_init (&unpacked);
    const msgpack_object *to = NULL;
    if (!body
    ||  msgpack_unpack_next (&unpacked, (const char *) zframe_data (body), zframe_size (body),
                             NULL) != MSGPACK_UNPACK_SUCCESS
    ||  unpacked.data.type != MSGPACK_OBJECT_MAP) {
        herald_error_set (&err, HERALD_ERR_BAD_REQUEST, "body", "a BACKUP body is a map");
        goto refuse;
    }
    const msgpack_object_map *map = &unpacked.data.via.map;
    for (uint32_t index = 0; index < map->size; index++) {
        const msgpack_object *key = &map->ptr [index].key, *value = &map->ptr [index].val;
        if (herald_event_key_is (key, "rid") && value->type == MSGPACK_OBJECT_POSITIVE_INTEGER) {
            err.has_rid = true;
            err.rid = value->via.u64;
        }
        else
        if (herald_event_key_is (key, "to") && value->type != MSGPACK_OBJECT_NIL)
            to = value;
    }
    if (!err.has_rid) {
        herald_error_set (&err, HERALD_ERR_BAD_REQUEST, "rid", "rid must be a uint");
        goto refuse;
    }
    if (!to || to->type != MSGPACK_OBJECT_STR || to->via.str.size == 0
    ||  to->via.str.size > S_PATH_MAX || memchr (to->via.str.ptr, 0, to->via.str.size)) {
        herald_error_set (&err, HERALD_ERR_BAD_REQUEST, "to", "to must be the backup "
                          "directory on the broker's host, an absolute path (a str of 1 to %d "
                          "bytes)", S_PATH_MAX);
        goto refuse;
    }
    if (to->via.str.ptr [0] != '/') {
        herald_error_set (&err, HERALD_ERR_BAD_REQUEST, "to", "%.*s is not an absolute path: "
                          "give the directory on the broker's host as /PATH",
                          (int) to->via.str.size, to->via.str.ptr);
        goto refuse;
    }
    if (self->worker) {
        herald_reply_refusal (self->reply, identity, err.rid, HERALD_ERR_OVERLOADED,
                              "a backup is running already (one at a time): try again once "
                              "it is done", S_RETRY_MS);
        goto done;
    }
    s_job_t *job = (s_job_t *) zmalloc (sizeof (s_job_t));
    job->store = self->store;
    memcpy (job->dir, to->via.str.ptr, to->via.str.size);
    snprintf (job->node, sizeof job->node, "%s", self->node);
    self->job = job;
    self->identity = zframe_dup (identity);
    self->rid = err.rid;
    self->started = zclock_mono ();
    herald_log ("info", "backup to %s: started, head %" PRIu64, job->dir,
                herald_store_head (self->store));
    self->worker = zactor_new (s_worker, job);
    if (!self->worker) {
        herald_error_set (&err, HERALD_ERR_INTERNAL, "", "cannot start the backup's thread");
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
herald_backups_sock (herald_backups_t *self)
{
    return self->worker? zactor_sock (self->worker): NULL;
}

static void
s_pack_str (msgpack_packer *pk, const char *text)
{
    size_t len = strlen (text);
    msgpack_pack_str (pk, len);
    msgpack_pack_str_body (pk, text, len);
}

static void
s_pack_uint (msgpack_packer *pk, const char *key, uint64_t value)
{
    s_pack_str (pk, key);
    msgpack_pack_uint64 (pk, value);
}

void
herald_backups_finish (herald_backups_t *self)
{
    if (!self->worker)
        return;
    char *done = zstr_recv (zactor_sock (self->worker));
    zstr_free (&done);
    s_job_t *job = self->job;
    int64_t ms = zclock_mono () - self->started;
    if (job->rc != HERALD_OK) {
        herald_log ("error", "backup to %s failed: %s", job->dir, job->err.message);
        herald_error_t err = { .has_rid = true, .rid = self->rid };
        //  What the client can fix (the path) is its request's fault; the
        //  rest (I/O, a full disk) is the broker's
        herald_err code = job->rc == HERALD_ERR_INVALID? HERALD_ERR_BAD_REQUEST
                                                       : HERALD_ERR_INTERNAL;
        herald_error_set (&err, code, code == HERALD_ERR_BAD_REQUEST? "to": "", "%s",
                          job->err.message);
        herald_reply_err (self->reply, self->identity, &err);
        s_job_end (self);
        return;
    }
    const herald_backup_info_t *info = &job->info;
    herald_log ("info", "backup to %s: done in %" PRId64 " ms, head %" PRIu64 ", %" PRIu64
                " events, %" PRIu64 " files, %" PRIu64 " bytes", job->dir, ms, info->head,
                info->events, info->files, info->bytes);
    self->buffer.size = 0;
    msgpack_packer pk;
    msgpack_packer_init (&pk, &self->buffer, msgpack_sbuffer_write);
    msgpack_pack_map (&pk, 15);
    s_pack_uint (&pk, "rid", self->rid);
    s_pack_str (&pk, "to");
    s_pack_str (&pk, job->dir);
    s_pack_str (&pk, "node");
    s_pack_str (&pk, info->node);
    s_pack_uint (&pk, "head", info->head);
    s_pack_uint (&pk, "head_ts", info->head_ts);
    s_pack_uint (&pk, "events", info->events);
    s_pack_uint (&pk, "topics", info->topics);
    s_pack_uint (&pk, "lineage", info->lineage);
    s_pack_uint (&pk, "digest", info->digest);
    s_pack_uint (&pk, "raft_applied", info->raft_applied);
    s_pack_uint (&pk, "files", info->files);
    s_pack_uint (&pk, "bytes", info->bytes);
    s_pack_uint (&pk, "created", info->created);
    s_pack_uint (&pk, "ms", (uint64_t) ms);
    s_pack_uint (&pk, "format", info->format);
    zsock_t *router = self->reply->router;
    if (herald_reply_begin (router, self->identity) == 0) {
        herald_reply_frame (router, "BACKUP", 6, true);
        herald_reply_frame (router, self->buffer.data, self->buffer.size, false);
    }
    else
        herald_reply_dropped (self->reply, self->identity, "BACKUP");
    s_job_end (self);
}
