/*  =========================================================================
    grouputil - run group members and a publisher, ask GROUP show

    See grouputil.h.
    =========================================================================
*/

#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <czmq.h>
#include <msgpack.h>
#include "brokerutil.h"
#include "grouputil.h"
#include "testutil.h"

uint64_t
gu_mono_ns (void)
{
    return tu_mono_ns ();
}

//  ---------------------------------------------------------------------
//  GROUP show, read with a plain MessagePack unpacker

static bool
s_key_is (const msgpack_object *key, const char *name)
{
    size_t len = strlen (name);
    return key->type == MSGPACK_OBJECT_STR && key->via.str.size == len
        && memcmp (key->via.str.ptr, name, len) == 0;
}

static uint64_t
s_uint (const msgpack_object *value)
{
    return value->type == MSGPACK_OBJECT_POSITIVE_INTEGER? value->via.u64: 0;
}

static void
s_str (const msgpack_object *value, char *out, size_t size)
{
    out [0] = 0;
    if (value->type != MSGPACK_OBJECT_STR)
        return;
    size_t len = value->via.str.size < size - 1? value->via.str.size: size - 1;
    memcpy (out, value->via.str.ptr, len);
    out [len] = 0;
}

static void
s_read_position (const msgpack_object *entry, gu_show_t *show)
{
    if (entry->type != MSGPACK_OBJECT_MAP)
        return;
    uint64_t partition = UINT64_MAX, committed = 0, delivered = 0, epoch = 0;
    char owner [64] = "";
    bool owned = false;
    for (uint32_t index = 0; index < entry->via.map.size; index++) {
        const msgpack_object *key = &entry->via.map.ptr [index].key;
        const msgpack_object *value = &entry->via.map.ptr [index].val;
        if (s_key_is (key, "partition"))
            partition = s_uint (value);
        else
        if (s_key_is (key, "committed"))
            committed = s_uint (value);
        else
        if (s_key_is (key, "delivered"))
            delivered = s_uint (value);
        else
        if (s_key_is (key, "epoch"))
            epoch = s_uint (value);
        else
        if (s_key_is (key, "owner") && value->type == MSGPACK_OBJECT_STR) {
            s_str (value, owner, sizeof owner);
            owned = true;
        }
    }
    if (partition >= GU_PARTITIONS_MAX)
        return;
    show->committed [partition] = committed;
    show->delivered [partition] = delivered;
    show->epoch [partition] = epoch;
    show->owned [partition] = owned;
    snprintf (show->owner [partition], sizeof show->owner [partition], "%s", owner);
    show->positions++;
    if (owned)
        show->owned_count++;
    if (committed < show->min_committed)
        show->min_committed = committed;
}

static int
s_read_show (const void *body, size_t len, gu_show_t *show)
{
    msgpack_unpacked unpacked;
    msgpack_unpacked_init (&unpacked);
    int rc = -1;
    if (msgpack_unpack_next (&unpacked, body, len, NULL) == MSGPACK_UNPACK_SUCCESS
    &&  unpacked.data.type == MSGPACK_OBJECT_MAP) {
        rc = 0;
        const msgpack_object_map *map = &unpacked.data.via.map;
        for (uint32_t index = 0; index < map->size; index++) {
            const msgpack_object *key = &map->ptr [index].key;
            const msgpack_object *value = &map->ptr [index].val;
            if (s_key_is (key, "head"))
                show->head = s_uint (value);
            else
            if (s_key_is (key, "partitions"))
                show->partitions = (unsigned) s_uint (value);
            else
            if (s_key_is (key, "generation"))
                show->generation = s_uint (value);
            else
            if (s_key_is (key, "members") && value->type == MSGPACK_OBJECT_ARRAY)
                show->members = value->via.array.size;
            else
            if (s_key_is (key, "positions") && value->type == MSGPACK_OBJECT_ARRAY)
                for (uint32_t at = 0; at < value->via.array.size; at++)
                    s_read_position (&value->via.array.ptr [at], show);
            else
            if (s_key_is (key, "code"))
                rc = -1;
        }
        if (rc && show->error [0] == 0) {
            //  an ERROR body: code and message
            char code [48] = "", message [100] = "";
            for (uint32_t index = 0; index < map->size; index++) {
                if (s_key_is (&map->ptr [index].key, "code"))
                    s_str (&map->ptr [index].val, code, sizeof code);
                if (s_key_is (&map->ptr [index].key, "message"))
                    s_str (&map->ptr [index].val, message, sizeof message);
            }
            snprintf (show->error, sizeof show->error, "%s: %s", code, message);
        }
    }
    msgpack_unpacked_destroy (&unpacked);
    return rc;
}

int
gu_group_show (const char *api, const char *group, gu_show_t *show, int timeout_ms)
{
    memset (show, 0, sizeof *show);
    show->min_committed = UINT64_MAX;
    zsock_t *dealer = bu_dealer_new (api);
    if (!dealer)
        return -1;
    msgpack_sbuffer sbuf;
    msgpack_sbuffer_init (&sbuf);
    msgpack_packer pk;
    msgpack_packer_init (&pk, &sbuf, msgpack_sbuffer_write);
    msgpack_pack_map (&pk, 3);
    bu_pack_str (&pk, "rid");
    msgpack_pack_uint64 (&pk, 1);
    bu_pack_str (&pk, "op");
    bu_pack_str (&pk, "show");
    bu_pack_str (&pk, "group");
    bu_pack_str (&pk, group);
    int rc = bu_send_sbuf (dealer, "GROUP", &sbuf);
    msgpack_sbuffer_destroy (&sbuf);
    zmsg_t *reply = rc == 0? bu_recv (dealer, timeout_ms): NULL;
    rc = -1;
    if (reply && zmsg_size (reply) >= 2) {
        zframe_t *command = zmsg_first (reply);
        zframe_t *body = zmsg_next (reply);
        if (zframe_streq (command, "GROUP"))
            rc = s_read_show (zframe_data (body), zframe_size (body), show);
        else {
            s_read_show (zframe_data (body), zframe_size (body), show);
            rc = -1;
        }
    }
    zmsg_destroy (&reply);
    zsock_destroy (&dealer);
    if (rc == 0 && show->positions == 0)
        show->min_committed = 0;
    return rc;
}

uint64_t
gu_head (const char *api, int timeout_ms)
{
    zsock_t *dealer = bu_dealer_new (api);
    if (!dealer)
        return 0;
    bu_reply_t reply;
    uint64_t head = 0;
    if (bu_status (dealer, 1, &reply, timeout_ms) == 0)
        head = reply.body.status.head;
    bu_reply_fini (&reply);
    zsock_destroy (&dealer);
    return head;
}

//  ---------------------------------------------------------------------
//  Members

char *
gu_member_path (void)
{
    return tu_build_program ("tests/group_member");
}

pid_t
gu_member_spawn (const char *binary, const char *api, const char *group,
                 const char *prefixes, const char *log, unsigned cost_us,
                 unsigned batch_max, const char *const *extra, const char *out_log)
{
    char cost [24], batch [24];
    snprintf (cost, sizeof cost, "%u", cost_us);
    snprintf (batch, sizeof batch, "%u", batch_max);
    char *argv [BU_MAX_ARGS];
    size_t argc = 0;
    argv [argc++] = (char *) binary;
    argv [argc++] = (char *) api;
    argv [argc++] = (char *) group;
    argv [argc++] = (char *) prefixes;
    argv [argc++] = (char *) log;
    argv [argc++] = cost;
    argv [argc++] = batch;
    for (size_t index = 0; extra && extra [index] && argc < BU_MAX_ARGS - 1; index++)
        argv [argc++] = (char *) extra [index];
    argv [argc] = NULL;
    return bu_spawn (binary, argv, out_log);
}

int
gu_member_stop (pid_t pid, int timeout_ms)
{
    kill (pid, SIGTERM);
    uint64_t deadline = tu_mono_ns () + (uint64_t) timeout_ms * 1000000ULL;
    int status = 0;
    while (true) {
        pid_t rc = waitpid (pid, &status, WNOHANG);
        if (rc == pid)
            return WIFEXITED (status)? WEXITSTATUS (status): -1;
        if ((rc < 0 && errno != EINTR) || tu_mono_ns () >= deadline)
            break;
        usleep (5000);
    }
    kill (pid, SIGKILL);
    waitpid (pid, &status, 0);
    return -1;
}

uint64_t
gu_member_kill (pid_t pid)
{
    kill (pid, SIGKILL);
    int status;
    while (waitpid (pid, &status, 0) < 0 && errno == EINTR)
        ;
    return tu_mono_ns ();
}

//  ---------------------------------------------------------------------
//  The publisher

typedef struct {
    gu_publisher_t *publisher;
    size_t index;
} s_ticket_t;

static s_ticket_t *s_tickets;

static void
s_on_published (const herald_publish_result_t *result, void *arg)
{
    s_ticket_t *ticket = arg;
    gu_publisher_t *self = ticket->publisher;
    pthread_mutex_lock (&self->lock);
    if (result->err == HERALD_OK) {
        if (self->seqs [ticket->index] == 0)
            self->acked++;
        self->seqs [ticket->index] = result->seq;
    }
    else {
        self->failed++;
        self->last_error = result->err;
    }
    pthread_mutex_unlock (&self->lock);
}

void
gu_publisher_topic (gu_publisher_t *self, size_t index, char *out, size_t size)
{
    snprintf (out, size, self->topic_format, index % (self->topics? self->topics: 1));
}

static void *
s_publisher_run (void *arg)
{
    gu_publisher_t *self = arg;
    uint64_t start = tu_mono_ns ();
    for (size_t index = 0; index < self->count; index++) {
        if (self->rate && index % 20 == 0) {
            uint64_t due = start + (uint64_t) index * 1000000000ULL / self->rate;
            uint64_t now = tu_mono_ns ();
            if (due > now)
                usleep ((useconds_t) ((due - now) / 1000));
        }
        char topic [128], data [32];
        gu_publisher_topic (self, index, topic, sizeof topic);
        snprintf (data, sizeof data, "g%zu", index);
        herald_outgoing_t event = { .topic = topic, .data = data, .data_len = strlen (data) };
        herald_err rc = HERALD_ERR_OVERLOADED;
        for (int attempt = 0; attempt < 100 && rc == HERALD_ERR_OVERLOADED; attempt++)
            rc = herald_agent_publish_async (self->agent, &event, s_on_published,
                                             &s_tickets [index], NULL);
        pthread_mutex_lock (&self->lock);
        if (rc != HERALD_OK) {
            self->failed++;
            self->last_error = rc;
        }
        self->queued++;
        pthread_mutex_unlock (&self->lock);
    }
    herald_agent_flush (self->agent, 60000);
    pthread_mutex_lock (&self->lock);
    self->done = true;
    pthread_mutex_unlock (&self->lock);
    return NULL;
}

gu_publisher_t *
gu_publisher_start (const char *api, const char *topic_format, size_t topics,
                    size_t count, unsigned rate)
{
    gu_publisher_t *self = calloc (1, sizeof *self);
    if (!self)
        return NULL;
    self->api = strdup (api);
    self->topic_format = strdup (topic_format);
    self->topics = topics;
    self->count = count;
    self->rate = rate;
    self->seqs = calloc (count + 1, sizeof *self->seqs);
    s_tickets = calloc (count + 1, sizeof *s_tickets);
    pthread_mutex_init (&self->lock, NULL);
    if (!self->api || !self->topic_format || !self->seqs || !s_tickets) {
        gu_publisher_destroy (&self);
        return NULL;
    }
    for (size_t index = 0; index < count; index++) {
        s_tickets [index].publisher = self;
        s_tickets [index].index = index;
    }
    herald_agent_options_t options;
    herald_agent_options_init (&options);
    options.api = api;
    options.timeout_ms = 20000;
    self->agent = herald_agent_new ("group-publisher", &options);
    if (!self->agent
    ||  pthread_create (&self->thread, NULL, s_publisher_run, self) != 0) {
        gu_publisher_destroy (&self);
        return NULL;
    }
    self->started = true;
    return self;
}

int
gu_publisher_wait (gu_publisher_t *self, int timeout_ms)
{
    uint64_t deadline = tu_mono_ns () + (uint64_t) timeout_ms * 1000000ULL;
    while (tu_mono_ns () < deadline) {
        pthread_mutex_lock (&self->lock);
        bool done = self->done && self->acked + self->failed >= self->count;
        pthread_mutex_unlock (&self->lock);
        if (done)
            return self->acked == self->count? 0: -1;
        usleep (10000);
    }
    return -1;
}

void
gu_publisher_destroy (gu_publisher_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    gu_publisher_t *self = *self_p;
    if (self->started)
        pthread_join (self->thread, NULL);
    herald_agent_destroy (&self->agent);
    pthread_mutex_destroy (&self->lock);
    free (self->seqs);
    free (self->api);
    free (self->topic_format);
    free (s_tickets);
    s_tickets = NULL;
    free (self);
    *self_p = NULL;
}
