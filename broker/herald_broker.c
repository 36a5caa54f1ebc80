/*  =========================================================================
    herald_broker - the broker actor: HWP/1 on a ROUTER and a PUB socket

    DESIGN

    One loop owns the sockets and the open streams, and drives the group
    commit (herald_commit: the queue of PUBLISH requests, ACKs and fanout),
    whose applier (herald_writer) runs the store apply on a thread of its
    own, so that the loop serves streams and reads the next commit's
    requests while RocksDB writes and syncs the WAL.

      wake on the api socket, the pipe or the applier, or when a heartbeat
      or a stream is due
        |
        +-- the applier is done: ACK or ERROR each request of its commit,
        |   in arrival order; then fan the new events out on PUB, in seq
        |   order, as the very bytes the store wrote (herald_commit_finish)
        +-- drain the requests already waiting (until the commit's queue
        |   is full: herald_commit_has_room): answer STATUS/HELLO at once,
        |   open or feed streams, queue PUBLISH requests
        +-- applier free: every queued PUBLISH goes to it as ONE proposal,
        |   one herald_store_apply (one WriteBatch, one WAL sync)
        +-- --metrics: answer the HTTP endpoint's STATUS requests
        |   (herald_metrics; at most one per 100 ms, never waiting on it)
        +-- heartbeat when due
        +-- give each stream with credit one slice (herald_streams_pump)

    What arrives while a commit is being written is queued and goes into
    the next one: the group commit the issue asks for (herald_commit.c).

    A cluster node (--peer, herald_node) runs the same loop with a Raft
    node as the applier: the leader proposes, every node takes a record
    per applied entry (ACKing its own proposals, fanning every one out),
    and STATUS, WELCOME and $hb carry the cluster's keys.  It never marks
    the acknowledged head in the store (herald_store_mark_acked): an ACK
    is durable in a majority's Raft logs, and whatever tail of RocksDB's
    unsynced WAL a node loses is applied again from its Raft log.
    Streams (REPLAY, READ) run in time slices beside ingest: each turn of
    the loop sends at most one slice per stream, so a 10M-event replay
    cannot hold an ACK up for more than a slice, and a commit's fsync no
    longer holds the replay up.

    Bounds: at most max_queued PUBLISH requests wait (then `overloaded`),
    and a drain ends when the commit's queue is full (DRAIN_EVENTS events
    or DRAIN_BYTES bytes, herald_commit.c), so one commit holds at most
    that plus one request; behind it each client
    connection has at most ROUTER_RCVHWM requests read off its socket, and
    TCP holds the rest back.  At most max_streams streams run (then
    `overloaded`), and a stream never has more events outstanding than its
    credit.
    =========================================================================
*/

#include <inttypes.h>
#include "herald_broker.h"
#include "herald_commit.h"
#include "herald_disk.h"
#include "herald_groups.h"
#include "herald_guard.h"
#include "herald_msg.h"
#include "herald_log.h"
#include "herald_members.h"
#include "herald_backups.h"
#include "herald_retention.h"
#include "herald_trims.h"
#include "herald_node.h"
#include "herald_reply.h"
#include "herald_streams.h"
#include "herald_uuid.h"

//  ROUTER_RCVHWM: herald_broker_bind.c
#define STREAM_RETRY_MS     5           //  a stream blocked on its client's queue
#define IDLE_FLUSH_BYTES    (1u << 20)  //  less written since the last flush: no idle flush
#define ACKED_MARK_MS       1000        //  between two records of the acknowledged head
#define SPACE_FLUSH_MIN     (1u << 20)  //  memtables worth a flush when disk space is low
#define STOP_QUIET_MS       100         //  stopping on a failure: the api socket is drained
#define STOP_DRAIN_MS       2000        //  until quiet this long, for at most this long,
#define STOP_DRAIN_MAX      1000000     //  and at most this many requests
#define STOP_COMMIT_MS      3000        //  a cluster node stopping: its proposal's wait

typedef struct {
    zsock_t *pipe;
    zsock_t *router;
    zsock_t *pub;                       //  taken over by fanout once bound
    herald_fanout_t *fanout;            //  the main PUB and the scope sockets
    herald_config_t *config;            //  borrowed
    herald_store_t *store;              //  borrowed
    char *node;
    uint64_t epoch;
    int64_t started;
    int64_t next_heartbeat;
    herald_commit_t *commit;            //  the group commit, made once bound
    herald_node_t *cluster;             //  a cluster node's part; NULL standalone
    herald_members_t *members;          //  its CLUSTER requests (herald_members)
    herald_groups_t *groups;            //  GROUP: the consumer-group coordinator
    herald_backups_t *backups;          //  BACKUP: an online backup on its own thread
    herald_trims_t *trims;              //  TRIM, and the reclaim's thread
    herald_retention_t *retention;      //  --retention: the policies applied
    herald_disk_t *disk;                //  the free-space guard (--min-free)
    herald_reply_t reply;               //  answers on the api socket, counted
    int64_t last_commit;                //  when the last commit ended (zclock_mono)
    int64_t space_flushed;              //  the last flush for disk space (zclock_mono)
    bool space_stuck;                   //  too little space for that flush (logged once)
    uint64_t marked_head;               //  the last head herald_store_mark_acked wrote
    int64_t marked_at;
    bool mark_failing;                  //  its failure is logged once
    size_t unflushed_bytes;             //  PUBLISH bytes committed since the last idle flush
    herald_streams_t *streams;          //  REPLAY and READ, made once bound
    herald_auth_t *auth;                //  security on: the ZAP handler and the ACL
    herald_guard_t *guard;              //  ... and each request's checks
    msgpack_sbuffer buffer;             //  scratch, for heartbeats
    msgpack_zone zone;                  //  scratch, for messages answered at once
    herald_limits_t limits;
    bool terminated;
    bool serving_said;                  //  SERVING sent to main (sd_notify READY=1)
    bool fatal;
    const char *stop_reason;            //  static text: why the broker stopped, when fatal
    uint64_t idle_flushes;              //  shown by STATUS, with the commit's counts
    herald_metrics_t *metrics;          //  --metrics: the HTTP endpoint (borrowed), or NULL
    zsock_t *metrics_sock;              //  ... its STATUS requests (herald_metrics_loop_sock)
} self_t;

static uint64_t
    s_memtable_bytes (void *arg);

//  ---------------------------------------------------------------------
//  Identity: the node id is kept in the store; the epoch grows each start

static int
s_identity (self_t *self)
{
    char *value = NULL;
    size_t len = 0;
    //  A value that cannot be read is a failure, not "none yet": that
    //  would give the broker a new node id, or start its epoch again at 1
    herald_err rc = *self->config->node? HERALD_ERR_NOT_FOUND
                  : herald_store_meta_get (self->store, "node", &value, &len);
    if (rc != HERALD_OK && rc != HERALD_ERR_NOT_FOUND) {
        herald_log ("error", "cannot read the node id from the store: %s", herald_strerror (rc));
        return -1;
    }
    if (*self->config->node)
        self->node = strdup (self->config->node);
    else
    if (rc == HERALD_OK) {
        self->node = strndup (value, len);
        free (value);
    }
    else {
        uint8_t id [16];
        herald_uuid_v7 (id);
        char text [40];
        snprintf (text, sizeof (text), "herald-%02x%02x%02x%02x%02x%02x",
                  id [10], id [11], id [12], id [13], id [14], id [15]);
        self->node = strdup (text);
        if (herald_store_meta_put (self->store, "node", text, strlen (text)) != HERALD_OK)
            return -1;
    }
    uint64_t epoch = 0;
    rc = herald_store_meta_get (self->store, "epoch", &value, &len);
    if (rc != HERALD_OK && rc != HERALD_ERR_NOT_FOUND) {
        herald_log ("error", "cannot read the epoch from the store: %s", herald_strerror (rc));
        return -1;
    }
    if (rc == HERALD_OK) {
        char text [32] = "";
        memcpy (text, value, len < sizeof (text) - 1? len: sizeof (text) - 1);
        epoch = strtoull (text, NULL, 10);
        free (value);
    }
    self->epoch = epoch + 1;
    char text [32];
    snprintf (text, sizeof (text), "%" PRIu64, self->epoch);
    if (herald_store_meta_put (self->store, "epoch", text, strlen (text)) != HERALD_OK)
        return -1;
    return self->node? 0: -1;
}

static self_t *
s_self_new (zsock_t *pipe, herald_broker_args_t *args)
{
    self_t *self = (self_t *) zmalloc (sizeof (self_t));
    self->pipe = pipe;
    self->config = args->config;
    self->store = args->store;
    self->auth = args->auth;            //  taken over, like the sockets
    self->metrics = args->metrics;
    self->metrics_sock = self->metrics? herald_metrics_loop_sock (self->metrics): NULL;
    herald_reply_init (&self->reply);
    self->disk = herald_disk_new (self->config->data_dir, self->config->min_free);
    assert (self->disk);
    herald_disk_set_reserve (self->disk, s_memtable_bytes, self->store);
    herald_disk_poll (self->disk);
    msgpack_sbuffer_init (&self->buffer);
    msgpack_zone_init (&self->zone, 4096);
    self->limits.max_event_bytes = self->config->max_event_bytes;
    self->limits.max_batch = self->config->max_batch;
    self->started = zclock_mono ();
    herald_log_set_level (self->config->log_level);
    return self;
}

static void
s_self_destroy (self_t **self_p)
{
    self_t *self = *self_p;
    if (!self)
        return;
    //  A cluster node's Raft node goes first: then nothing touches the
    //  batches of the proposal in flight, which is answered not_leader.
    herald_members_destroy (&self->members);
    //  A backup still running is cancelled and waited for: it reads the store
    herald_backups_destroy (&self->backups);
    //  A proof being checked is cancelled (no reply: nothing was trimmed),
    //  the reclaim stopped; the ops in flight are answered until the
    //  commit goes
    herald_trims_stop (self->trims);
    herald_retention_destroy (&self->retention);
    if (self->cluster) {
        herald_node_stop_raft (self->cluster);
        if (self->commit)
            herald_commit_raft_gone (self->commit);
    }
    //  A commit still in flight is waited for (only after a failure: the
    //  loop finishes its commits before it ends).  Its group ops' answers
    //  go through the coordinator, which goes once they are given, and
    //  before the node it asks who leads.
    herald_commit_destroy (&self->commit);
    herald_trims_destroy (&self->trims);
    herald_groups_destroy (&self->groups);
    herald_node_destroy (&self->cluster);
    herald_disk_destroy (&self->disk);
    herald_guard_destroy (&self->guard);
    herald_streams_destroy (&self->streams);
    herald_auth_destroy (&self->auth);
    zsock_destroy (&self->router);
    zsock_destroy (&self->pub);
    herald_fanout_destroy (&self->fanout);
    msgpack_sbuffer_destroy (&self->buffer);
    herald_reply_destroy (&self->reply);
    msgpack_zone_destroy (&self->zone);
    free (self->node);
    free (self);
    *self_p = NULL;
}

//  ---------------------------------------------------------------------
//  Sending

static void
s_heartbeat (self_t *self)
{
    herald_msg_t beat = { .type = HERALD_MSG_HEARTBEAT };
    //  What subscribers can have seen: a commit is durable a moment before
    //  the loop fans it out.
    beat.heartbeat.head = herald_commit_counts (self->commit)->fanned;
    struct timespec now;
    clock_gettime (CLOCK_REALTIME, &now);
    beat.heartbeat.ts = (uint64_t) now.tv_sec * 1000000000ULL + (uint64_t) now.tv_nsec;
    beat.heartbeat.node = (herald_str_t) { self->node, strlen (self->node) };
    beat.heartbeat.epoch = self->epoch;
    beat.heartbeat.lineage = herald_store_lineage (self->store);
    msgpack_sbuffer raw;
    msgpack_sbuffer_init (&raw);
    if (self->cluster) {
        //  A cluster node's epoch is its current term, and it says its role
        //  and whom it follows
        beat.heartbeat.epoch = herald_node_term (self->cluster);
        beat.heartbeat.raw = herald_node_heartbeat_raw (self->cluster, &raw);
    }
    //  The main fanout, and each scope's with its scope and last
    herald_fanout_heartbeat (self->fanout, &beat, &self->buffer);
    msgpack_sbuffer_destroy (&raw);
    self->next_heartbeat = zclock_mono () + (int64_t) self->config->heartbeat_ms;
}

//  ---------------------------------------------------------------------
//  Group commit (herald_commit): the loop's bookkeeping around it

//  Propose what is queued, unless a commit is in flight.
static void
s_commit_start (self_t *self)
{
    self->unflushed_bytes += herald_commit_start (self->commit);
}

//  The commit in flight is applied: ACK and fan out; a store that failed
//  stops the broker.
static void
s_commit_finish (self_t *self)
{
    if (herald_commit_finish (self->commit) != 0) {
        self->fatal = true;
        self->stop_reason = herald_commit_stop_reason (self->commit);
    }
    self->last_commit = zclock_mono ();
}

//  ---------------------------------------------------------------------
//  A cluster node (herald_node)

//  One turn: bootstrap or watch Raft; attach the Raft node to the group
//  commit once it runs.  A node that must stop stops the broker.
//  Tell main, once, that the broker serves (main tells systemd READY=1):
//  a standalone broker as its loop starts, a cluster node once its Raft
//  node runs (a node whose Raft cannot start is never ready).
static void
s_serving_say (self_t *self)
{
    if (self->serving_said || self->fatal || self->terminated
    ||  (self->cluster && !herald_node_raft (self->cluster)))
        return;
    self->serving_said = true;
    zstr_sendf (self->pipe, "SERVING head %" PRIu64 "%s", herald_store_head (self->store),
                self->cluster? ", a cluster node": "");
}

static void
s_cluster_turn (self_t *self)
{
    if (herald_node_tick (self->cluster) != 0) {
        self->fatal = true;
        self->stop_reason = herald_node_stop_reason (self->cluster);
        return;
    }
    herald_raft_t *raft = herald_node_raft (self->cluster);
    if (raft && !herald_commit_waiting (self->commit))
        herald_commit_attach (self->commit, raft);
    herald_members_tick (self->members, self->cluster);
    s_serving_say (self);
}

//  Stopping ($TERM): take no more PUBLISH, wait up to STOP_COMMIT_MS for
//  the proposal in flight, then stop Raft (a leader transfers leadership
//  first) and answer what is left not_leader.
static void
s_cluster_stop (self_t *self)
{
    int64_t deadline = zclock_mono () + STOP_COMMIT_MS;
    while (herald_commit_busy (self->commit) && !self->fatal && zclock_mono () < deadline) {
        zsock_t *applier = herald_commit_sock (self->commit);
        zmq_pollitem_t item = { zsock_resolve (applier), 0, ZMQ_POLLIN, 0 };
        zmq_poll (&item, 1, 10);
        s_commit_finish (self);
    }
    herald_node_stop_raft (self->cluster);
    size_t refused = herald_commit_raft_gone (self->commit);
    if (refused)
        herald_log ("info", "stopping: %zu PUBLISH requests answered not_leader", refused);
}

//  ---------------------------------------------------------------------
//  Flushes and marks

//  ms until an idle flush is due (0: now), or -1 when none is pending.  A
//  flush is due once idle_flush_ms have passed with nothing to commit
//  after at least IDLE_FLUSH_BYTES were committed: a trickle of writes
//  never makes a stream of tiny table files.
static int64_t
s_idle_flush_wait (self_t *self)
{
    if (self->config->idle_flush_ms == 0 || self->unflushed_bytes < IDLE_FLUSH_BYTES
    ||  !herald_commit_idle (self->commit))
        return -1;
    int64_t wait = self->last_commit + (int64_t) self->config->idle_flush_ms - zclock_mono ();
    return wait > 0? wait: 0;
}

//  Write the memtables out once the broker has gone idle, so that the
//  disk holds the log once (not also in the WAL) and a restart has no WAL
//  to replay.
static void
s_idle_flush (self_t *self)
{
    if (s_idle_flush_wait (self) != 0)
        return;
    herald_error_t err = { 0 };
    if (herald_store_flush (self->store, &err) != HERALD_OK)
        herald_log ("warn", "idle flush: %s", err.message);
    else {
        self->idle_flushes++;
        if (herald_log_debug ())
            herald_log ("debug", "idle flush: %zu bytes committed since the last one",
                        self->unflushed_bytes);
    }
    self->unflushed_bytes = 0;
}

//  The guard's reserve: what the memtables hold, written again at their
//  next flush.
static uint64_t
s_memtable_bytes (void *arg)
{
    herald_store_memory_t memory;
    herald_store_memory ((herald_store_t *) arg, &memory);
    return memory.memtables;
}

//  At most once a second, the head that is durable, in a file outside the
//  WAL (herald_store_mark_acked): a WAL cut short later is then refused on
//  open, naming the acknowledged events it lost, not served as a shorter log.
static void
s_mark_acked (self_t *self)
{
    if (self->cluster)
        return;                         //  the Raft log makes an ACK durable
    uint64_t head = herald_store_head (self->store);
    if (head <= self->marked_head || zclock_mono () - self->marked_at < ACKED_MARK_MS)
        return;
    herald_error_t err = { 0 };
    if (herald_store_mark_acked (self->store, head, &err) != HERALD_OK) {
        if (!self->mark_failing)
            herald_log ("warn", "cannot record the acknowledged head: %s", err.message);
        self->mark_failing = true;
        return;
    }
    self->mark_failing = false;
    self->marked_head = head;
    self->marked_at = zclock_mono ();
}

//  Publishing refused while the memtables hold what the guard keeps room
//  for: flush them now, whatever idle-flush-ms says, since nothing else
//  would (no commit fills a memtable while PUBLISH is refused).  Once the
//  tables are written, the WAL goes, the reserve falls, and publishing
//  resumes by itself.  At most once a second.
static void
s_space_flush (self_t *self)
{
    uint64_t reserve = herald_disk_reserve (self->disk);
    if (!herald_disk_low (self->disk) || reserve < SPACE_FLUSH_MIN
    ||  zclock_mono () - self->space_flushed < 1000)
        return;
    //  The flush writes at most what the memtables hold (their size counts
    //  the skiplist's overhead too): only when that fits, or it would be
    //  the write that fills the disk
    if (herald_disk_free (self->disk) < reserve + SPACE_FLUSH_MIN) {
        if (!self->space_stuck)
            herald_log ("warn", "disk space low: the memtables (%" PRIu64 " bytes) cannot be "
                        "flushed in the %" PRIu64 " bytes free; publishing resumes when space "
                        "returns", reserve, herald_disk_free (self->disk));
        self->space_stuck = true;
        return;
    }
    self->space_stuck = false;
    self->space_flushed = zclock_mono ();
    herald_error_t err = { 0 };
    if (herald_store_flush (self->store, &err) != HERALD_OK)
        herald_log ("warn", "flush for disk space: %s", err.message);
    else
        herald_log ("info", "disk space low: flushing %" PRIu64 " bytes of memtables, so "
                    "that their WAL can go", reserve);
}

//  ---------------------------------------------------------------------
//  Metrics (herald_metrics): STATUS with histograms, and its channel

//  A STATUS body to the metrics endpoint; never waits (a reply it does
//  not take is dropped: it asks again).
static void
s_metrics_send (self_t *self, const herald_msg_t *reply)
{
    msgpack_sbuffer body;
    msgpack_sbuffer_init (&body);
    if (herald_msg_encode (reply, &body) == 0)
        zmq_send (zsock_resolve (self->metrics_sock), body.data, body.size, ZMQ_DONTWAIT);
    msgpack_sbuffer_destroy (&body);
}

static void
    s_status (self_t *self, zframe_t *identity, uint64_t rid, const herald_acl_user_t *user,
              bool histograms);

//  The metrics endpoint's requests waiting: each a rid, answered at once.
static void
s_metrics_serve (self_t *self)
{
    for (int taken = 0; taken < 16 && (zsock_events (self->metrics_sock) & ZMQ_POLLIN);
         taken++) {
        zframe_t *frame = zframe_recv (self->metrics_sock);
        if (!frame)
            break;
        if (zframe_size (frame) == 8) {
            uint64_t rid = 0;
            for (int at = 0; at < 8; at++)
                rid = (rid << 8) | zframe_data (frame) [at];
            s_status (self, NULL, rid, NULL, true);
        }
        zframe_destroy (&frame);
    }
}

//  ---------------------------------------------------------------------
//  Requests

//  STATUS to identity on the api socket, or (identity NULL) to the
//  metrics endpoint, with every key; histograms: the group commit's too.
static void
s_status (self_t *self, zframe_t *identity, uint64_t rid, const herald_acl_user_t *user,
          bool histograms)
{
    static const char *names [] = {
        "published", "duplicates", "conflicts", "refused", "dropped",
        "streams", "streams_served", "queued", "epoch", "disk_bytes", "durability_sync",
        "memtable_bytes", "block_cache_bytes", "table_readers_bytes", "streams_abandoned",
        "idle_flushes", "disk_free_bytes", "min_free_bytes", "disk_low", "disk_refused",
        "disk_reserve_bytes",
        "ids_reused",
        "stream_bytes", "client_bytes_max", "stream_clients", "streams_waiting_bytes", "stream_byte_waits",
        "stream_errors", "stream_events",
        //  security on
        "auth_refused", "unauthorized", "acl_reloads", "acl_errors", "rate_limited",
        "audit_dropped",
        //  consumer groups (the node serving GROUP; 0 elsewhere)
        "groups", "group_members", "group_rebalances", "group_grants", "group_commits",
        "group_fenced", "group_expired", "group_refused",
        //  trimming (docs/operations.md "Trimming and retention")
        "streams_trimmed", "trims_applied", "retention_trims", "reclaim_pending", "reclaimed_events"
    };
    herald_store_memory_t memory;
    herald_store_memory (self->store, &memory);
    herald_streams_memory_t streams;
    herald_streams_memory (self->streams, &streams);
    const herald_commit_counts_t *counts = herald_commit_counts (self->commit);
    herald_str_t keys [sizeof (names) / sizeof (names [0])];
    for (size_t i = 0; i < sizeof (names) / sizeof (names [0]); i++)
        keys [i] = (herald_str_t) { names [i], strlen (names [i]) };
    uint64_t values [] = {
        counts->published, counts->duplicates, counts->conflicts, self->reply.refused,
        self->reply.dropped,
        herald_streams_size (self->streams), herald_streams_served (self->streams),
        herald_commit_queued (self->commit),
        self->epoch, 0,             //  disk_bytes, below
        self->config->durability == HERALD_DURABILITY_SYNC && !self->cluster,
        memory.memtables, memory.block_cache, memory.table_readers,
        herald_streams_abandoned (self->streams), self->idle_flushes,
        herald_disk_free (self->disk), herald_disk_threshold (self->disk),
        herald_disk_low (self->disk), herald_disk_refused (self->disk),
        herald_disk_reserve (self->disk), counts->ids_reused,
        streams.bytes, streams.client_bytes_max, streams.clients, streams.waiting_bytes, streams.byte_waits,
        herald_streams_errors (self->streams), herald_streams_events (self->streams),
        0, 0, 0, 0, 0, 0,           //  security's, below
        0, 0, 0, 0, 0, 0, 0, 0,     //  the groups', below
        0, 0, 0, 0, 0               //  trimming's, below
    };
    size_t count = sizeof (values) / sizeof (values [0]);
    herald_trims_counts_t trimming = { 0 };
    if (self->trims)
        herald_trims_counts (self->trims, &trimming);
    uint64_t trim_values [] = {
        herald_streams_trimmed (self->streams), trimming.trims, trimming.retention_trims,
        trimming.reclaim_pending, trimming.reclaimed_events
    };
    size_t trim_count = sizeof (trim_values) / sizeof (trim_values [0]);
    memcpy (&values [count - trim_count], trim_values, sizeof (trim_values));
    herald_groups_counts_t groups = { 0 };
    if (self->groups)
        herald_groups_counts (self->groups, &groups);
    uint64_t group_values [] = {
        groups.groups, groups.members, groups.rebalances, groups.grants, groups.commits,
        groups.fenced, groups.expired, groups.refused
    };
    size_t group_count = sizeof (group_values) / sizeof (group_values [0]);
    memcpy (&values [count - trim_count - group_count], group_values, sizeof (group_values));
    //  What follows security's keys moves down with them when they go
    group_count += trim_count;
    size_t security = count - group_count - 6;
    if (self->auth) {
        const herald_auth_counts_t *auth = herald_auth_counts (self->auth);
        values [security] = auth->auth_refused;
        values [security + 1] = auth->unauthorized;
        values [security + 2] = auth->acl_reloads;
        values [security + 3] = auth->acl_errors;
        values [security + 4] = auth->rate_limited;
        values [security + 5] = auth->audit_dropped;
    }
    else {
        //  Security off: its keys are left out (STATUS as before)
        memmove (&keys [security], &keys [security + 6], group_count * sizeof (keys [0]));
        memmove (&values [security], &values [security + 6], group_count * sizeof (values [0]));
        count -= 6;
    }
    //  A size that cannot be measured is left out, not shown as 0
    size_t disk = 0;
    while (strcmp (names [disk], "disk_bytes") != 0)
        disk++;
    herald_error_t disk_err = { 0 };
    if (herald_store_disk_size (self->store, &values [disk], &disk_err) != HERALD_OK) {
        herald_log ("warn", "STATUS: disk_bytes left out: %s", disk_err.message);
        memmove (&keys [disk], &keys [disk + 1], (count - disk - 1) * sizeof (keys [0]));
        memmove (&values [disk], &values [disk + 1], (count - disk - 1) * sizeof (values [0]));
        count--;
    }
    herald_msg_t reply = { .type = HERALD_MSG_STATUS_REPLY, .has_rid = true, .rid = rid };
    msgpack_sbuffer raw;
    msgpack_sbuffer_init (&raw);
    if (self->cluster) {
        values [8] = herald_node_term (self->cluster);     //  epoch: the term, as in $hb
        reply.status.raw = herald_node_status_raw (self->cluster, &raw);
        reply.status.role = (herald_str_t) { herald_node_role (self->cluster),
                                             strlen (herald_node_role (self->cluster)) };
    }
    else
        reply.status.role = (herald_str_t) { "standalone", 10 };
    if (histograms) {
        //  The addition `histograms`, after what raw holds (a cluster's keys)
        herald_histogram_pack_status (herald_commit_histograms (self->commit),
                                      HERALD_COMMIT_HISTOGRAMS, &raw);
        reply.status.raw = (herald_msg_raw_t) { raw.data, raw.size, reply.status.raw.count + 1 };
    }
    reply.status.head = herald_store_head (self->store);
    reply.status.topics = herald_store_topic_count (self->store);
    reply.status.events = herald_store_event_count (self->store);
    reply.status.node = (herald_str_t) { self->node, strlen (self->node) };
    reply.status.uptime_s = (uint64_t) ((zclock_mono () - self->started) / 1000);
    reply.status.lineage = herald_store_lineage (self->store);
    reply.status.losses = herald_store_losses (self->store, &reply.status.loss_count);
    reply.status.extra_keys = keys;
    reply.status.extra_values = values;
    reply.status.extra_count = count;
    msgpack_sbuffer secure;
    msgpack_sbuffer_init (&secure);
    if (self->guard) {
        //  The contract keys to every user (the agent needs head); the
        //  operator's figures with `admin status`, and to the metrics
        //  endpoint (the operator's: docs/metrics.md)
        if (!identity || herald_guard_status_all (self->guard, user))
            reply.status.raw = herald_guard_status_raw (self->guard, reply.status.raw, &secure);
        else {
            reply.status.extra_count = 0;
            reply.status.raw = (herald_msg_raw_t) { 0 };
        }
    }
    //  first and trims: every user's (docs/protocol.md, "Trimming")
    msgpack_sbuffer trimmed;
    msgpack_sbuffer_init (&trimmed);
    if (self->trims)
        reply.status.raw = herald_trims_status_raw (self->trims, reply.status.raw, &trimmed);
    if (identity)
        herald_reply_msg (&self->reply, identity, &reply);
    else
        s_metrics_send (self, &reply);
    msgpack_sbuffer_destroy (&trimmed);
    msgpack_sbuffer_destroy (&secure);
    msgpack_sbuffer_destroy (&raw);
}

static void
s_welcome (self_t *self, zframe_t *identity, uint64_t rid, const herald_acl_user_t *user)
{
    //  Standalone: its own api; a cluster node: every member's, as the
    //  clients reach them
    //  (the member table, which membership changes update)
    herald_peer_t *peers = NULL;
    size_t members = self->cluster? herald_node_members (self->cluster, &peers): 1;
    herald_str_t cluster [members? members: 1];
    cluster [0] = (herald_str_t) { self->config->api, strlen (self->config->api) };
    for (size_t index = 0; self->cluster && index < members; index++)
        cluster [index] = (herald_str_t) { peers [index].api, strlen (peers [index].api) };
    herald_msg_t reply = { .type = HERALD_MSG_WELCOME, .has_rid = true, .rid = rid };
    reply.welcome.proto = HERALD_PROTO_VERSION;
    reply.welcome.node = (herald_str_t) { self->node, strlen (self->node) };
    reply.welcome.head = herald_store_head (self->store);
    reply.welcome.fanout = (herald_str_t) { self->config->fanout, strlen (self->config->fanout) };
    reply.welcome.cluster = cluster;
    reply.welcome.cluster_count = members;
    reply.welcome.lineage = herald_store_lineage (self->store);
    reply.welcome.losses = herald_store_losses (self->store, &reply.welcome.loss_count);
    msgpack_sbuffer raw;
    msgpack_sbuffer_init (&raw);
    if (self->cluster)
        reply.welcome.raw = herald_node_welcome_raw (self->cluster, &raw);
    //  Security on: who this user is, what it may do, and the fanout it
    //  may use (nil: none)
    msgpack_sbuffer secure;
    msgpack_sbuffer_init (&secure);
    if (self->guard) {
        const char *fanout = NULL;
        reply.welcome.raw = herald_guard_welcome (self->guard, user, reply.welcome.raw,
                                                  &secure, &fanout);
        reply.welcome.fanout = (herald_str_t) { fanout, fanout? strlen (fanout): 0 };
    }
    herald_reply_msg (&self->reply, identity, &reply);
    msgpack_sbuffer_destroy (&secure);
    msgpack_sbuffer_destroy (&raw);
    herald_raft_members_free (&peers, members);
}

//  The rid of a body whose command is unknown, when one can be read.
static void
s_peek_rid (self_t *self, zframe_t *body, herald_error_t *err)
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

//  Show up to 32 bytes of a peer's frame as printable ASCII, others as
//  \xNN, so an ERROR message is always valid UTF-8.
static void
s_printable (const uint8_t *bytes, size_t len, char *out, size_t size)
{
    size_t used = 0;
    for (size_t i = 0; i < len && i < 32 && used + 5 <= size; i++) {
        if (bytes [i] >= 0x20 && bytes [i] < 0x7f && bytes [i] != '\\')
            out [used++] = (char) bytes [i];
        else
            used += (size_t) snprintf (out + used, size - used, "\\x%02x", bytes [i]);
    }
    out [used] = 0;
}

//  Handle one message from the api socket.  Takes ownership of msg.
static void
s_handle_request (self_t *self, zmsg_t *msg)
{
    zframe_t *identity = zmsg_pop (msg);
    zframe_t *command = zmsg_pop (msg);
    zframe_t *body = zmsg_pop (msg);
    zmsg_destroy (&msg);
    if (!identity || !command) {
        self->reply.dropped++;          //  no peer to address: drop and count
        goto done;
    }
    herald_error_t err = { 0 };
    herald_msg_type_t type = herald_msg_type_from_command (zframe_data (command),
                                                           zframe_size (command), false);
    //  Security on: every request names its user (herald_guard)
    const herald_acl_user_t *user = NULL;
    if (self->guard
    &&  !(user = herald_guard_admit (self->guard, identity, command, body, type)))
        goto done;
    //  A cluster node's admin requests (a standalone broker does not know
    //  the command: unknown_command below)
    if (self->cluster && herald_members_is_request (command)) {
        if (user) {
            s_peek_rid (self, body, &err);
            if (!herald_guard_admin (self->guard, user, identity, HERALD_ACL_ADMIN_CLUSTER,
                                     "CLUSTER", err.has_rid, err.rid))
                goto done;
        }
        herald_members_request (self->members, self->cluster, identity, body);
        goto done;
    }
    //  BACKUP (an addition to HWP/1): the grant before the body is looked at
    if (herald_backups_is_request (command)) {
        if (user) {
            s_peek_rid (self, body, &err);
            if (!herald_guard_admin (self->guard, user, identity, HERALD_ACL_ADMIN_BACKUP,
                                     "BACKUP", err.has_rid, err.rid))
                goto done;
        }
        if (self->backups)
            herald_backups_request (self->backups, identity, body);
        else
            self->reply.dropped++;
        goto done;
    }
    //  TRIM (an addition to HWP/1): the grant before the body is looked at
    if (herald_trims_is_request (command)) {
        if (user) {
            s_peek_rid (self, body, &err);
            if (!herald_guard_admin (self->guard, user, identity, HERALD_ACL_ADMIN_TRIM,
                                     "TRIM", err.has_rid, err.rid))
                goto done;
        }
        if (self->trims)
            herald_trims_request (self->trims, identity, body, user? user->name: NULL);
        else
            self->reply.dropped++;
        goto done;
    }
    //  Consumer groups (an addition to HWP/1): the coordinator decodes and
    //  checks the body itself
    if (herald_groups_is_request (command)) {
        if (self->groups)
            herald_groups_request (self->groups, identity, body, user);
        else
            self->reply.dropped++;
        goto done;
    }
    //  ACL needs `admin acl` before anything of its body is looked at
    if (type == HERALD_MSG_ACL && user) {
        s_peek_rid (self, body, &err);
        if (!herald_guard_admin (self->guard, user, identity, HERALD_ACL_ADMIN_ACL, "ACL",
                                 err.has_rid, err.rid))
            goto done;
    }
    if (type == HERALD_MSG_INVALID) {
        s_peek_rid (self, body, &err);
        char shown [32 * 4 + 1];
        s_printable (zframe_data (command), zframe_size (command), shown, sizeof (shown));
        herald_error_set (&err, HERALD_ERR_UNKNOWN_COMMAND, "command",
                          "unknown command '%s'", shown);
        herald_reply_err (&self->reply, identity, &err);
        goto done;
    }
    if (!body && (type == HERALD_MSG_CREDIT || type == HERALD_MSG_CANCEL)) {
        self->reply.dropped++;          //  never a reply of their own: ignored, counted
        goto done;
    }
    if (!body) {
        herald_error_set (&err, HERALD_ERR_BAD_REQUEST, "body",
                          "a request is a command frame and a body frame");
        herald_reply_err (&self->reply, identity, &err);
        goto done;
    }
    if (type == HERALD_MSG_PUBLISH) {
        herald_commit_publish (self->commit, &identity, &body, &self->limits);
        goto done;
    }
    msgpack_zone_clear (&self->zone);
    herald_msg_t request;
    if (herald_msg_decode (&request, type, zframe_data (body), zframe_size (body),
                           &self->limits, &self->zone, &err) != HERALD_OK) {
        if (type == HERALD_MSG_CREDIT || type == HERALD_MSG_CANCEL)
            self->reply.dropped++;      //  the contract: ignored and counted
        else
            herald_reply_err (&self->reply, identity, &err);
        goto done;
    }
    if (herald_log_debug ()) {
        char peer [24];
        herald_log ("debug", "peer %s: %s rid %" PRIu64, herald_log_peer (identity, peer),
                    herald_msg_command (type), request.rid);
    }
    switch (type) {
        case HERALD_MSG_REPLAY:
        case HERALD_MSG_READ:
            if (user)
                herald_guard_stream (self->guard, user, identity, &request);
            else
            if (herald_streams_open (self->streams, identity, &request, &err) != HERALD_OK)
                herald_reply_err (&self->reply, identity, &err);
            break;
        case HERALD_MSG_CREDIT:
        case HERALD_MSG_CANCEL: {
            bool found = type == HERALD_MSG_CANCEL
                       ? herald_streams_cancel (self->streams, identity, request.rid)
                       : herald_streams_credit (self->streams, identity, request.rid,
                                                request.credit.credit);
            if (!found)
                self->reply.dropped++;
            break;
        }
        case HERALD_MSG_STATUS:
            s_status (self, identity, request.rid, user,
                      herald_histogram_wanted (zframe_data (body), zframe_size (body)));
            break;
        case HERALD_MSG_HELLO:
            s_welcome (self, identity, request.rid, user);
            break;
        case HERALD_MSG_ACL:
            //  An addition for security (docs/protocol.md); user is stale
            //  after a reload: nothing below uses it
            if (self->guard)
                herald_guard_acl (self->guard, user, identity, &request);
            else {
                err = (herald_error_t) { .has_rid = true, .rid = request.rid };
                herald_error_set (&err, HERALD_ERR_BAD_REQUEST, "", "security is off: this "
                                  "broker has no ACL (start it with --curve-secret and --acl)");
                herald_reply_err (&self->reply, identity, &err);
            }
            break;
        default:
            break;
    }
done:
    zframe_destroy (&identity);
    zframe_destroy (&command);
    zframe_destroy (&body);
}

//  ---------------------------------------------------------------------
//  The loop

//  The broker is stopping after a failure: answer every request in hand,
//  so no client is left waiting for a reply that will never come.  The
//  queued PUBLISH requests, then whatever already waits on the api socket
//  (at most ROUTER_RCVHWM per connection): an ERROR `overloaded` each,
//  since nothing of them was written; CREDIT and CANCEL have no reply.
static void
s_refuse_all (self_t *self)
{
    char message [160];
    snprintf (message, sizeof (message), "the broker is stopping: %s (see its log); "
              "nothing of this request was written", self->stop_reason? self->stop_reason
                                                                          : "it failed");
    size_t refused = self->commit? herald_commit_refuse_queue (self->commit,
                                                               HERALD_ERR_OVERLOADED, message,
                                                               HERALD_DISK_RETRY_MS): 0;
    //  Requests still in flight over TCP arrive within moments: read until
    //  the socket has been quiet for STOP_QUIET_MS, for at most STOP_DRAIN_MS.
    size_t drained = 0;
    int64_t deadline = zclock_mono () + STOP_DRAIN_MS;
    while (self->router && drained < STOP_DRAIN_MAX && zclock_mono () < deadline) {
        zmq_pollitem_t item = { zsock_resolve (self->router), 0, ZMQ_POLLIN, 0 };
        if (zmq_poll (&item, 1, STOP_QUIET_MS) <= 0)
            break;
        zmsg_t *msg = zmsg_recv (self->router);
        if (!msg)
            break;
        drained++;
        zframe_t *identity = zmsg_pop (msg);
        zframe_t *command = zmsg_pop (msg);
        zframe_t *body = zmsg_pop (msg);
        herald_msg_type_t type = command
            ? herald_msg_type_from_command (zframe_data (command), zframe_size (command), false)
            : HERALD_MSG_INVALID;
        herald_error_t err = { 0 };
        s_peek_rid (self, body, &err);
        if (identity && type != HERALD_MSG_CREDIT && type != HERALD_MSG_CANCEL) {
            if (err.has_rid)
                herald_reply_refusal (&self->reply, identity, err.rid, HERALD_ERR_OVERLOADED,
                                      message, HERALD_DISK_RETRY_MS);
            else {
                herald_error_set (&err, HERALD_ERR_OVERLOADED, "", "%s", message);
                herald_reply_err (&self->reply, identity, &err);
            }
            refused++;
        }
        else
            self->reply.dropped++;
        zframe_destroy (&identity);
        zframe_destroy (&command);
        zframe_destroy (&body);
        zmsg_destroy (&msg);
    }
    if (refused)
        herald_log ("error", "stopping: %zu requests not yet written were answered "
                    "ERROR overloaded", refused);
}

//  Security on: the fanout's scope sockets, with the broker's key; the
//  reload hook re-binds what a new table takes away.
static void
s_fanout_swap (void *arg, const herald_acl_t *old_acl, const herald_acl_t *new_acl)
{
    herald_fanout_reload (((self_t *) arg)->fanout, old_acl, new_acl);
}

static int
s_fanout_secure (self_t *self)
{
    zcert_t *cert = zcert_load (self->config->curve_secret);
    if (!cert) {
        herald_log ("error", "cannot read --curve-secret %s", self->config->curve_secret);
        return -1;
    }
    herald_error_t err = { 0 };
    int rc = herald_fanout_secure (self->fanout, zcert_secret_key (cert),
                                   (int) self->config->handshake_ms,
                                   herald_auth_acl (self->auth), !self->cluster, &err);
    zcert_destroy (&cert);
    if (rc != 0)
        herald_log ("error", "%s", err.message);
    else
        herald_auth_on_swap (self->auth, s_fanout_swap, self);
    return rc;
}

//  The sockets heraldd bound, or bind them here (tests start the actor
//  without herald_broker_bind).
static int
s_bind (self_t *self, herald_broker_args_t *args)
{
    if (args->router && args->pub) {
        self->router = args->router;
        self->pub = args->pub;
        return 0;
    }
    herald_error_t err = { 0 };
    if (herald_config_secure (self->config) && !self->auth) {
        herald_log ("error", "security is on but no ZAP handler is bound: not binding");
        return -1;
    }
    if (herald_broker_bind (self->config, &self->router, &self->pub, &err) != HERALD_OK) {
        herald_log ("error", "%s", err.message);
        return -1;
    }
    return 0;
}

void
herald_broker_actor (zsock_t *pipe, void *args)
{
    self_t *self = s_self_new (pipe, (herald_broker_args_t *) args);
    //  zactor_new waits for this signal; a failure is reported after it.
    self->fatal = s_bind (self, (herald_broker_args_t *) args) != 0 || s_identity (self) != 0;
    if (!self->fatal) {
        self->reply.router = self->router;
        bool clustered = herald_config_clustered (self->config);
        self->commit = clustered
            ? herald_commit_new_cluster (self->config, self->store, self->disk, &self->reply,
                                         self->pub)
            : herald_commit_new (self->config, self->store, self->disk, &self->reply,
                                 self->pub);
        assert (self->commit);
        self->fanout = herald_fanout_new (self->config, &self->pub);
        herald_commit_set_fanout (self->commit, self->fanout);
        if (clustered) {
            herald_error_t err = { 0 };
            self->cluster = herald_node_new (self->config, self->store, &err);
            self->members = herald_members_new (&self->reply);
            if (!self->cluster) {
                herald_log ("error", "%s", err.message);
                self->fatal = true;
                self->stop_reason = "it could not start as a cluster node";
            }
        }
    }
    if (!self->fatal)
        self->streams = herald_streams_new (self->store, self->router,
                                            self->config->max_streams,
                                            self->config->stream_idle_ms,
                                            self->config->client_max_bytes);
    if (!self->fatal && self->auth) {
        self->guard = herald_guard_new (self->auth, self->config, self->store, &self->reply,
                                        self->streams);
        herald_guard_commit (self->guard, self->commit);
        //  A PUB per scope, $hello on all; re-binds after each reload
        if (s_fanout_secure (self) != 0) {
            self->fatal = true;
            self->stop_reason = "it could not bind a scope's fanout";
        }
    }
    if (!self->fatal) {
        self->groups = herald_groups_new (self->store, self->commit, &self->reply,
                                          self->cluster, self->guard);
        //  A cluster node's grace after becoming leader covers the old
        //  leader's last answers: it steps down up to an election timeout
        //  after it lost its majority (docs/groups.md)
        herald_groups_configure (self->groups, self->config->max_groups,
                                 self->config->max_group_members,
                                 self->cluster? self->config->election_ms: 0);
    }
    if (!self->fatal)
        self->backups = herald_backups_new (self->store, &self->reply, self->node);
    if (!self->fatal) {
        self->trims = herald_trims_new (self->store, self->commit, &self->reply,
                                        self->cluster, self->auth);
        self->retention = herald_retention_new (self->config, self->store, self->trims);
    }
    zsock_signal (pipe, 0);
    if (!self->fatal) {
        s_heartbeat (self);             //  the first, as soon as fanout is bound
        herald_log ("info", "node %s epoch %" PRIu64 " serving api %s, fanout %s, head %" PRIu64,
                    self->node, self->epoch, self->config->api, self->config->fanout,
                    herald_store_head (self->store));
    }
    if (!self->fatal && self->cluster)
        s_cluster_turn (self);
    s_serving_say (self);

    bool busy = false, streams_blocked = false;
    while (!self->terminated && !self->fatal) {
        int64_t wait = self->next_heartbeat - zclock_mono ();
        if (busy || wait < 0)
            wait = 0;
        //  A stream waiting for its client's queue: look again soon
        if (streams_blocked && wait > STREAM_RETRY_MS)
            wait = STREAM_RETRY_MS;
        int64_t flush_wait = s_idle_flush_wait (self);
        if (flush_wait >= 0 && flush_wait < wait)
            wait = flush_wait;
        int64_t disk_wait;
        herald_disk_due (self->disk, zclock_mono (), &disk_wait);
        if (disk_wait < wait)
            wait = disk_wait;
        if (self->cluster && herald_node_wait (self->cluster) < wait)
            wait = herald_node_wait (self->cluster);
        if (self->auth && herald_auth_wait (self->auth) < wait)
            wait = herald_auth_wait (self->auth);
        //  Sessions to expire, a grace to end
        int64_t groups_wait = self->groups? herald_groups_tick (self->groups): -1;
        if (groups_wait >= 0 && groups_wait < wait)
            wait = groups_wait;
        int64_t retention_wait = herald_retention_wait (self->retention);
        if (retention_wait >= 0 && retention_wait < wait)
            wait = retention_wait;
        //  With the queue full, requests wait in libzmq (and TCP) until
        //  the commit in flight is done.  A cluster node bootstrapping has
        //  no applier yet: no socket (fd -1 is never polled).
        zsock_t *applier = herald_commit_sock (self->commit);
        zsock_t *backup = self->backups? herald_backups_sock (self->backups): NULL;
        zsock_t *proof = self->trims? herald_trims_sock (self->trims): NULL;
        zmq_pollitem_t items [] = {
            { zsock_resolve (self->pipe), 0, ZMQ_POLLIN, 0 },
            { applier? zsock_resolve (applier): NULL, -1, applier? ZMQ_POLLIN: 0, 0 },
            { zsock_resolve (self->router), 0,
              herald_commit_has_room (self->commit)? ZMQ_POLLIN: 0, 0 },
            //  Security on: the ZAP handler, answered whatever else waits
            { self->auth? zsock_resolve (herald_auth_sock (self->auth)): NULL, -1,
              self->auth? ZMQ_POLLIN: 0, 0 },
            //  A backup running: its end
            { backup? zsock_resolve (backup): NULL, -1, backup? ZMQ_POLLIN: 0, 0 },
            //  --metrics: the HTTP endpoint's STATUS requests (read with
            //  zsock_events, never by its index here)
            { self->metrics_sock? zsock_resolve (self->metrics_sock): NULL, -1,
              self->metrics_sock? ZMQ_POLLIN: 0, 0 },
            //  A TRIM's proof being checked: its end
            { proof? zsock_resolve (proof): NULL, -1, proof? ZMQ_POLLIN: 0, 0 }
        };
        if (zmq_poll (items, sizeof (items) / sizeof (items [0]), (long) wait) < 0
        &&  zmq_errno () != EINTR)
            break;
        if (items [4].revents & ZMQ_POLLIN)
            herald_backups_finish (self->backups);
        if (items [6].revents & ZMQ_POLLIN)
            herald_trims_finish (self->trims);
        if (items [0].revents & ZMQ_POLLIN) {
            zmsg_t *message = zmsg_recv (self->pipe);
            char *command = message? zmsg_popstr (message): NULL;
            if (!command || streq (command, "$TERM")) {
                self->terminated = true;
                if (self->metrics)
                    herald_metrics_set_stopping (self->metrics);
            }
            else
            if (streq (command, "RELOAD") && self->auth)
                herald_auth_reload (self->auth);
            else
            if (streq (command, "RETENTION"))
                herald_retention_reload (self->retention, message);
            zstr_free (&command);
            zmsg_destroy (&message);
        }
        if (self->auth) {
            herald_auth_serve (self->auth);
            //  Between two turns: a reloaded ACL swapped in, and what it
            //  (or a key's `until`) no longer allows ended
            if (herald_auth_tick (self->auth)) {
                herald_guard_revoke (self->guard);
                herald_fanout_tick (self->fanout);      //  keys expired: re-binds
            }
        }
        //  A cluster node takes Raft's records every turn (taking none is
        //  cheap), so none waits on how its socket signals
        if (((items [1].revents & ZMQ_POLLIN) || self->cluster)
        &&  herald_commit_waiting (self->commit))
            s_commit_finish (self);
        if (self->cluster && !self->fatal)
            s_cluster_turn (self);
        //  Drain what is waiting; it is committed as one batch as soon as
        //  the writer is free.
        while (herald_commit_has_room (self->commit)
           &&  (zsock_events (self->router) & ZMQ_POLLIN)) {
            zmsg_t *msg = zmsg_recv (self->router);
            if (!msg)
                break;
            s_handle_request (self, msg);
        }
        if (!self->fatal)
            s_commit_start (self);
        if (self->metrics_sock && !self->fatal)
            s_metrics_serve (self);
        if (zclock_mono () >= self->next_heartbeat)
            s_heartbeat (self);
        int64_t disk_wait_unused;
        if (herald_disk_due (self->disk, zclock_mono (), &disk_wait_unused)) {
            herald_disk_poll (self->disk);
            s_space_flush (self);
            s_mark_acked (self);
        }
        if (!self->fatal)
            s_idle_flush (self);
        if (!self->fatal && !self->terminated)
            herald_retention_tick (self->retention);
        bool blocked = false;
        int pumped = self->fatal? 0: herald_streams_pump (self->streams, &blocked);
        if (pumped < 0) {
            herald_log ("error", "out of memory for a stream's frames; stopping");
            self->stop_reason = "it ran out of memory";
            self->fatal = true;
        }
        busy = pumped > 0;
        streams_blocked = blocked;
    }
    //  Finish and answer what is in hand: the commit in flight, then the
    //  requests already queued behind it.  A cluster node waits a bounded
    //  time for its proposal, hands leadership over (herald_raft_destroy)
    //  and answers the rest not_leader: another node takes them.
    if (self->cluster && !self->fatal)
        s_cluster_stop (self);
    else {
        if (!self->fatal && herald_commit_busy (self->commit))
            s_commit_finish (self);
        if (!self->fatal) {
            s_commit_start (self);
            if (herald_commit_busy (self->commit))
                s_commit_finish (self);
        }
    }
    if (self->fatal) {
        if (self->metrics)
            herald_metrics_set_failed (self->metrics, self->stop_reason? self->stop_reason
                                                                         : "it failed");
        s_refuse_all (self);
        zstr_send (pipe, "FATAL");
    }
    else
        herald_log ("info", "stopped: %" PRIu64 " events published, head %" PRIu64,
                    herald_commit_counts (self->commit)->published,
                    herald_store_head (self->store));
    bool terminated = self->terminated;
    s_self_destroy (&self);
    //  Stopped on its own (a failure): the actor still owes zactor_destroy
    //  its $TERM.
    while (!terminated) {
        char *command = zstr_recv (pipe);
        terminated = !command || streq (command, "$TERM");
        zstr_free (&command);
    }
}
