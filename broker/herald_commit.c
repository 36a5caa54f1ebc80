/*  =========================================================================
    herald_commit - the group commit: queue PUBLISH, apply, ACK, fan out

    DESIGN

      publish: decode, refuse or queue (in arrival order)
      start:   applier free and requests queued?  the queue becomes the
               commit in flight: one proposal, its batches pointing into
               the requests' bodies, ts = the clock now
      finish:  the applied record is back: ACK (seq, ver, dup per event)
               or ERROR (`conflict`, or `internal` when the store failed)
               each request in arrival order, then fan the new events out
               from the record's envelopes, then give the record back

    A cluster node (herald_commit_new_cluster) has no applier of its own:
    a Raft node (herald_raft) is attached once it runs, and takes the
    proposal instead of herald_writer.  Only the leader proposes: PUBLISH
    on any other node, or before the Raft node runs, is answered ERROR
    not_leader at once, naming the leader's api when one is known.  Raft
    hands back a record for EVERY entry applied to the store, in raft
    index order: the leader's own proposal (its cookie) is ACKed from the
    results as standalone, or answered not_leader per request when its
    leadership was lost (outcome unknown: a retry with the same ids is
    safe); every other record is only fanned out.  Either way `fanned`
    advances in seq order.  One proposal is in flight at a time, as with
    the writer; the cookie is a proposal number, never a pointer, so a
    record of a proposal long answered cannot match a later one.

    What arrives while a commit is being applied is queued and goes into
    the next one: the group commit the issue asks for.  The loop and the
    applier hand a commit over by message and never touch it at the same
    time; the store allows reads from any thread beside its one appender,
    and the envelopes fanned out belong to the record, not to the store,
    so a later apply cannot overwrite them.

    ts is chosen here, when the commit is proposed, and is an input of
    the apply (herald_store_apply raises it to the log's last ts): with a
    replicated log the leader picks it once and every node applies it.

    Bounds: at most max_queued requests wait (then `overloaded`), and the
    loop stops draining the api socket once DRAIN_EVENTS events or
    DRAIN_BYTES bytes are queued (herald_commit_has_room), so one commit
    holds at most that plus one request.
    =========================================================================
*/

#include <inttypes.h>
#include "herald_commit.h"
#include "herald_writer.h"
#include "herald_raft.h"
#include "herald_log.h"

#define DRAIN_EVENTS        8192        //  queued events that end a drain
#define DRAIN_BYTES         (64u << 20) //  queued request bytes that end a drain

typedef struct {
    zframe_t *identity;                 //  owned
    zframe_t *body;                     //  owned; the events point into it
    msgpack_zone zone;                  //  owns the decoded arrays
    herald_msg_t msg;
    herald_append_result_t *results;    //  msg.publish.count entries
} s_request_t;

struct _herald_commit_t {
    herald_config_t *config;            //  borrowed
    herald_store_t *store;              //  borrowed
    herald_disk_t *disk;                //  borrowed: the free-space guard
    herald_reply_t *reply;              //  borrowed: the api socket, counted
    zsock_t *pub;                       //  borrowed: fanout
    herald_writer_t *writer;            //  applies on its own thread (standalone)
    bool clustered;                     //  a cluster node: raft applies, once attached
    herald_raft_t *raft;                //  borrowed; NULL until attached
    bool proposing;                     //  cluster: a proposal is in flight
    uint64_t proposal;                  //  its number, the cookie (never 0)
    zlistx_t *queue;                    //  s_request_t, in arrival order
    size_t queued_events;
    size_t queued_bytes;                //  PUBLISH bodies held by the queue
    //  The commit in flight: its requests, their store batches, its bytes
    //  and when it started
    zlistx_t *committing;               //  s_request_t, in arrival order
    size_t committing_events;
    size_t commit_bytes;
    herald_batch_t *batches;
    size_t batch_capacity;
    int64_t commit_started;
    const char *stop_reason;
    herald_commit_counts_t counts;
};

static void
s_request_destroy (s_request_t **self_p)
{
    s_request_t *self = *self_p;
    if (!self)
        return;
    zframe_destroy (&self->identity);
    zframe_destroy (&self->body);
    msgpack_zone_destroy (&self->zone);
    free (self->results);
    free (self);
    *self_p = NULL;
}

static void
s_requests_destroy (zlistx_t *requests)
{
    s_request_t *request;
    while ((request = (s_request_t *) zlistx_first (requests))) {
        zlistx_delete (requests, zlistx_cursor (requests));
        s_request_destroy (&request);
    }
}

static herald_commit_t *
s_new (herald_config_t *config, herald_store_t *store, herald_disk_t *disk,
       herald_reply_t *reply, zsock_t *pub, bool clustered)
{
    herald_commit_t *self = (herald_commit_t *) zmalloc (sizeof (herald_commit_t));
    self->config = config;
    self->store = store;
    self->disk = disk;
    self->reply = reply;
    self->pub = pub;
    self->clustered = clustered;
    if (!clustered) {
        self->writer = herald_writer_new (store);
        if (!self->writer) {
            free (self);
            return NULL;
        }
    }
    self->queue = zlistx_new ();
    self->committing = zlistx_new ();
    self->counts.fanned = herald_store_head (store);
    return self;
}

herald_commit_t *
herald_commit_new (herald_config_t *config, herald_store_t *store, herald_disk_t *disk,
                   herald_reply_t *reply, zsock_t *pub)
{
    return s_new (config, store, disk, reply, pub, false);
}

herald_commit_t *
herald_commit_new_cluster (herald_config_t *config, herald_store_t *store, herald_disk_t *disk,
                           herald_reply_t *reply, zsock_t *pub)
{
    return s_new (config, store, disk, reply, pub, true);
}

void
herald_commit_attach (herald_commit_t *self, herald_raft_t *raft)
{
    assert (self->clustered && !self->raft);
    //  fanned stays the store's head when this unit was made, before the
    //  Raft node started: every entry it applied since has a record
    self->raft = raft;
}

void
herald_commit_destroy (herald_commit_t **self_p)
{
    herald_commit_t *self = *self_p;
    if (!self)
        return;
    //  A proposal still in flight is waited for (only after a failure: the
    //  loop finishes its commits before it ends).  A cluster's Raft node
    //  is the broker's, destroyed before this (herald_commit_raft_gone).
    herald_writer_destroy (&self->writer);
    s_requests_destroy (self->queue);
    s_requests_destroy (self->committing);
    zlistx_destroy (&self->queue);
    zlistx_destroy (&self->committing);
    free (self->batches);
    free (self);
    *self_p = NULL;
}

//  ---------------------------------------------------------------------
//  not_leader (cluster)

//  ERROR not_leader to one request: leader is the leader's api endpoint,
//  or NULL (nil) while none is known.
static void
s_not_leader (herald_commit_t *self, zframe_t *identity, uint64_t rid, const char *leader,
              bool outcome_unknown)
{
    char message [512];
    if (outcome_unknown)
        snprintf (message, sizeof (message), "leadership was lost while this request was "
                  "being committed: it may or may not be stored; retry with the same ids "
                  "%s%s", leader? "at the leader, ": "once a leader is known",
                  leader? leader: "");
    else
    if (leader)
        snprintf (message, sizeof (message), "this node does not lead the cluster; "
                  "publish to the leader at %s", leader);
    else
        snprintf (message, sizeof (message), "this node does not lead the cluster and no "
                  "leader is known yet; retry shortly");
    herald_msg_t reply = { .type = HERALD_MSG_ERROR, .has_rid = true, .rid = rid };
    reply.error.code = HERALD_ERR_NOT_LEADER;
    reply.error.message = (herald_str_t) { message, strlen (message) };
    reply.error.topic = (herald_str_t) { "", 0 };
    if (leader)
        reply.error.leader = (herald_str_t) { leader, strlen (leader) };
    herald_reply_msg (self->reply, identity, &reply);
    self->reply->refused++;
}

//  True when this node takes proposals now; else the leader's api into
//  leader (empty: none known).
static bool
s_leads (herald_commit_t *self, char *leader, size_t size)
{
    leader [0] = 0;
    if (!self->raft)
        return false;
    herald_raft_state_t state;
    herald_raft_state (self->raft, &state);
    if (state.role == HERALD_RAFT_LEADER)
        return true;
    snprintf (leader, size, "%s", state.leader_api);
    return false;
}

//  Answer every request of list not_leader and empty it.
static size_t
s_refuse_not_leader (herald_commit_t *self, zlistx_t *list, bool outcome_unknown)
{
    char leader [256];
    s_leads (self, leader, sizeof (leader));
    size_t refused = 0;
    s_request_t *request;
    while ((request = (s_request_t *) zlistx_first (list))) {
        zlistx_delete (list, zlistx_cursor (list));
        s_not_leader (self, request->identity, request->msg.rid, *leader? leader: NULL,
                      outcome_unknown);
        s_request_destroy (&request);
        refused++;
    }
    return refused;
}

//  ---------------------------------------------------------------------
//  Queueing

void
herald_commit_publish (herald_commit_t *self, zframe_t **identity_p, zframe_t **body_p,
                       const herald_limits_t *limits)
{
    s_request_t *request = (s_request_t *) zmalloc (sizeof (s_request_t));
    msgpack_zone_init (&request->zone, 4096);
    request->identity = *identity_p;
    request->body = *body_p;
    *identity_p = *body_p = NULL;
    herald_error_t err = { 0 };
    if (herald_msg_decode (&request->msg, HERALD_MSG_PUBLISH, zframe_data (request->body),
                           zframe_size (request->body), limits, &request->zone,
                           &err) != HERALD_OK) {
        herald_reply_err (self->reply, request->identity, &err);
        s_request_destroy (&request);
        return;
    }
    char leader [256];
    if (self->clustered && !s_leads (self, leader, sizeof (leader))) {
        s_not_leader (self, request->identity, request->msg.rid, *leader? leader: NULL, false);
        s_request_destroy (&request);
        return;
    }
    if (herald_disk_low (self->disk)) {
        herald_reply_refusal (self->reply, request->identity, request->msg.rid,
                              HERALD_ERR_OVERLOADED, herald_disk_refusal (self->disk),
                              HERALD_DISK_RETRY_MS);
        s_request_destroy (&request);
        return;
    }
    if (zlistx_size (self->queue) >= self->config->max_queued) {
        herald_error_t busy = { .has_rid = true, .rid = request->msg.rid };
        herald_error_set (&busy, HERALD_ERR_OVERLOADED, "",
                          "%zu requests are queued; try again later",
                          zlistx_size (self->queue));
        herald_reply_err (self->reply, request->identity, &busy);
        s_request_destroy (&request);
        return;
    }
    request->results = (herald_append_result_t *) zmalloc (
        request->msg.publish.count * sizeof (herald_append_result_t));
    self->queued_events += request->msg.publish.count;
    self->queued_bytes += zframe_size (request->body);
    zlistx_add_end (self->queue, request);
    if (herald_log_debug ()) {
        char peer [24];
        herald_log ("debug", "peer %s: PUBLISH rid %" PRIu64 ", %zu events, %zu bytes",
                    herald_log_peer (request->identity, peer), request->msg.rid,
                    request->msg.publish.count, zframe_size (request->body));
    }
}

bool
herald_commit_has_room (herald_commit_t *self)
{
    return self->queued_events < DRAIN_EVENTS && self->queued_bytes < DRAIN_BYTES;
}

size_t
herald_commit_refuse_queue (herald_commit_t *self, herald_err code, const char *message,
                            uint64_t retry_ms)
{
    size_t refused = 0;
    s_request_t *request;
    while ((request = (s_request_t *) zlistx_first (self->queue))) {
        zlistx_delete (self->queue, zlistx_cursor (self->queue));
        herald_reply_refusal (self->reply, request->identity, request->msg.rid, code,
                              message? message: herald_disk_refusal (self->disk), retry_ms);
        s_request_destroy (&request);
        refused++;
    }
    self->queued_events = 0;
    self->queued_bytes = 0;
    return refused;
}

//  ---------------------------------------------------------------------
//  Committing

size_t
herald_commit_start (herald_commit_t *self)
{
    size_t count = zlistx_size (self->queue);
    if (count == 0 || herald_commit_busy (self))
        return 0;
    //  Leadership may have gone since these were queued
    char leader [256];
    if (self->clustered && !s_leads (self, leader, sizeof (leader))) {
        s_refuse_not_leader (self, self->queue, false);
        self->queued_events = 0;
        self->queued_bytes = 0;
        return 0;
    }
    //  The free-space guard looks at the disk when this commit could take
    //  it below --min-free: then nothing of the queue is written.
    if (!herald_disk_admit (self->disk, self->queued_bytes)) {
        herald_commit_refuse_queue (self, HERALD_ERR_OVERLOADED, NULL, HERALD_DISK_RETRY_MS);
        return 0;
    }
    //  The queue becomes the commit in flight; an empty list the queue.
    zlistx_t *swap = self->committing;
    self->committing = self->queue;
    self->queue = swap;
    self->committing_events = self->queued_events;
    self->commit_bytes = self->queued_bytes;
    self->queued_events = 0;
    self->queued_bytes = 0;
    if (count > self->batch_capacity) {
        self->batches = (herald_batch_t *) realloc (self->batches, count * sizeof (herald_batch_t));
        assert (self->batches);
        self->batch_capacity = count;
    }
    memset (self->batches, 0, count * sizeof (herald_batch_t));
    size_t index = 0;
    s_request_t *request = (s_request_t *) zlistx_first (self->committing);
    for (; request; request = (s_request_t *) zlistx_next (self->committing), index++) {
        self->batches [index].events = request->msg.publish.events;
        self->batches [index].count = request->msg.publish.count;
        self->batches [index].results = request->results;
    }
    self->commit_started = zclock_usecs ();
    //  The proposer picks ts; the apply only raises it to the log's last.
    if (!self->clustered) {
        herald_writer_propose (self->writer, self->batches, count,
                               herald_store_now (self->store), self->committing);
        return self->commit_bytes;
    }
    //  The leader's clock, once, in the entry: every node applies that ts
    self->proposal++;
    herald_err rc = herald_raft_propose (self->raft, self->batches, count,
                                         herald_store_now (self->store),
                                         (void *) (uintptr_t) self->proposal);
    if (rc != HERALD_OK) {
        //  Not proposed: nothing of it can be stored.  NOT_LEADER is the
        //  usual case (leadership went a moment ago); anything else is
        //  answered the same way, so the client retries elsewhere.
        if (rc != HERALD_ERR_NOT_LEADER)
            herald_log ("warn", "raft refused a proposal of %zu requests: %s", count,
                        herald_strerror (rc));
        s_refuse_not_leader (self, self->committing, false);
        self->committing_events = 0;
        return 0;
    }
    self->proposing = true;
    return self->commit_bytes;
}

bool
herald_commit_busy (herald_commit_t *self)
{
    return self->clustered? self->proposing: herald_writer_busy (self->writer);
}

zsock_t *
herald_commit_sock (herald_commit_t *self)
{
    if (self->clustered)
        return self->raft? herald_raft_sock (self->raft): NULL;
    return herald_writer_sock (self->writer);
}

bool
herald_commit_waiting (herald_commit_t *self)
{
    //  Raft hands over every applied entry, proposed here or not
    return self->clustered? self->raft != NULL: herald_writer_busy (self->writer);
}

//  A commit failed: never ACK what RocksDB did not take, and do not run on
//  with a store that failed: log why, loudly, before anyone is answered.
//  A full disk gets a message of its own, saying what to do.  Returns the
//  ERROR message for the commit's requests (caller frees; NULL when out of
//  memory).
static char *
s_store_failed (herald_commit_t *self, const herald_error_t *err, size_t count)
{
    herald_disk_poll (self->disk);
    char free_text [32];
    herald_disk_format (herald_disk_free (self->disk), free_text, sizeof (free_text));
    bool full = strstr (err->message, "No space left") || strstr (err->message, "NoSpace")
             || herald_disk_free (self->disk) < self->commit_bytes;
    const char *path = self->config->data_dir;
    if (full) {
        herald_log ("error", "disk full: a commit of %zu PUBLISH requests could not be "
                    "written to %s (%s free): %s. Those requests get ERROR internal, "
                    "the ones queued behind them ERROR overloaded; every event ACKed "
                    "before is kept. Stopping: free space on that file system, then start "
                    "heraldd again (--min-free refuses publishing before the disk fills)",
                    count, path, free_text, err->message);
        self->stop_reason = "the disk is full";
    }
    else {
        herald_log ("error", "store append failed: %s. A commit of %zu PUBLISH requests "
                    "is not ACKed (ERROR internal), the ones queued behind it get ERROR "
                    "overloaded; stopping", err->message, count);
        self->stop_reason = "the store failed";
    }
    char *message = NULL;
    if (asprintf (&message, "%s: this request was not ACKed and may or may not be stored "
                  "(%s); the broker is stopping; retry with the same ids once it is back",
                  self->stop_reason, err->message) < 0)
        message = NULL;
    return message;
}

//  ACK one request of an applied commit, or ERROR conflict when its
//  `expect` failed.
static void
s_answer (herald_commit_t *self, s_request_t *request, const herald_batch_t *batch)
{
    herald_msg_t reply = { .has_rid = true, .rid = request->msg.rid };
    if (batch->status == HERALD_ERR_CONFLICT) {
        const herald_event_t *event = &batch->events [batch->conflict_index];
        reply.type = HERALD_MSG_ERROR;
        reply.error.code = HERALD_ERR_CONFLICT;
        //  The topic has its own field; the message does not repeat
        //  it, so it can never be cut inside a UTF-8 character.
        char message [160];
        snprintf (message, sizeof (message),
                  "events[%zu]: the topic is at version %" PRIu64 ", not %" PRIu64,
                  batch->conflict_index, batch->actual, batch->expected);
        reply.error.message = (herald_str_t) { message, strlen (message) };
        reply.error.topic = (herald_str_t) { event->topic, event->topic_len };
        reply.error.expected = batch->expected;
        reply.error.actual = batch->actual;
        self->counts.conflicts++;
        herald_reply_msg (self->reply, request->identity, &reply);
        return;
    }
    uint64_t *seqs = (uint64_t *) zmalloc (batch->count * sizeof (uint64_t));
    uint64_t *vers = (uint64_t *) zmalloc (batch->count * sizeof (uint64_t));
    bool *dups = (bool *) zmalloc (batch->count * sizeof (bool));
    bool *reused = (bool *) zmalloc (batch->count * sizeof (bool));
    for (size_t i = 0; i < batch->count; i++) {
        seqs [i] = batch->results [i].seq;
        vers [i] = batch->results [i].ver;
        dups [i] = batch->results [i].dup;
        reused [i] = batch->results [i].reused;
        if (dups [i])
            self->counts.duplicates++;
        if (reused [i])
            self->counts.ids_reused++;
    }
    reply.type = HERALD_MSG_ACK;
    reply.ack.seq = seqs;
    reply.ack.ver = vers;
    reply.ack.dup = dups;
    reply.ack.reused = reused;          //  encoded only when one is true
    reply.ack.count = batch->count;
    herald_reply_msg (self->reply, request->identity, &reply);
    free (seqs);
    free (vers);
    free (dups);
    free (reused);
}

//  Publish an applied commit's new events on fanout, in seq order.
static void
s_fan_out (herald_commit_t *self, const herald_applied_t *record)
{
    for (uint64_t seq = record->first_seq; seq <= record->last_seq; seq++) {
        if (seq <= self->counts.fanned)
            continue;                   //  never twice, never out of order
        const uint8_t *envelope;
        size_t len;
        const char *topic;
        size_t topic_len;
        uint64_t s, v, t;
        if (!herald_store_envelope (&record->envelopes, seq, &envelope, &len)
        ||  !herald_event_peek (envelope, len, &topic, &topic_len, &s, &v, &t))
            continue;
        //  A copy of its own per event, not a slab: a slow subscriber to a
        //  rare topic would keep a whole shared block alive per event it
        //  has queued (herald_slab.h).
        herald_reply_frame (self->pub, topic, topic_len, true);
        herald_reply_frame (self->pub, envelope, len, false);
        self->counts.published++;
        self->counts.fanned = seq;
    }
}

static int
    s_finish_cluster (herald_commit_t *self);

int
herald_commit_finish (herald_commit_t *self)
{
    if (self->clustered)
        return s_finish_cluster (self);
    herald_applied_t *record = herald_writer_take (self->writer);
    assert (record->cookie == self->committing);
    size_t count = zlistx_size (self->committing);
    char *failure = NULL;
    if (record->rc != HERALD_OK)
        failure = s_store_failed (self, &record->err, count);
    else
    if (herald_log_debug ())
        herald_log ("debug", "commit: %zu requests, %zu events, seq %" PRIu64 "..%" PRIu64
                    " durable in %.3f ms", count, self->committing_events, record->first_seq,
                    record->last_seq, (double) (zclock_usecs () - self->commit_started) / 1e3);
    size_t index = 0;
    s_request_t *request = (s_request_t *) zlistx_first (self->committing);
    for (; request; request = (s_request_t *) zlistx_next (self->committing), index++) {
        if (record->rc == HERALD_OK)
            s_answer (self, request, &record->batches [index]);
        else
            //  `internal` promises nothing: RocksDB said the write failed,
            //  but a WAL record may have reached the disk whole.  A retry
            //  with the same ids is safe either way.
            herald_reply_refusal (self->reply, request->identity, request->msg.rid,
                                  HERALD_ERR_INTERNAL, failure? failure: "store failure", 0);
    }
    s_requests_destroy (self->committing);
    self->committing_events = 0;
    free (failure);
    int rc = record->rc == HERALD_OK? 0: -1;
    if (rc == 0)
        s_fan_out (self, record);
    herald_writer_release (self->writer, &record);
    return rc;
}

//  Every record Raft has ready: the leader's own proposal is answered,
//  then each record's events go out on fanout, in raft index order and
//  so in seq order.
static int
s_finish_cluster (herald_commit_t *self)
{
    if (!self->raft)
        return 0;
    herald_applied_t *record;
    int rc = 0;
    //  Bounded: a burst of records is taken in turns of the loop
    for (size_t taken = 0; taken < 1024 && (record = herald_raft_take (self->raft)); taken++) {
        bool ours = self->proposing && record->cookie == (void *) (uintptr_t) self->proposal;
        if (ours) {
            self->proposing = false;
            size_t count = zlistx_size (self->committing);
            if (record->rc == HERALD_ERR_NOT_LEADER)
                s_refuse_not_leader (self, self->committing, true);
            else
            if (record->rc != HERALD_OK) {
                char *failure = s_store_failed (self, &record->err, count);
                s_request_t *request;
                while ((request = (s_request_t *) zlistx_first (self->committing))) {
                    zlistx_delete (self->committing, zlistx_cursor (self->committing));
                    herald_reply_refusal (self->reply, request->identity, request->msg.rid,
                                          HERALD_ERR_INTERNAL,
                                          failure? failure: "store failure", 0);
                    s_request_destroy (&request);
                }
                free (failure);
            }
            else {
                if (herald_log_debug ())
                    herald_log ("debug", "commit: %zu requests, %zu events, seq %" PRIu64
                                "..%" PRIu64 " committed and applied in %.3f ms (raft index "
                                "%" PRIu64 ")", count, self->committing_events,
                                record->first_seq, record->last_seq,
                                (double) (zclock_usecs () - self->commit_started) / 1e3,
                                record->raft_index);
                size_t index = 0;
                s_request_t *request = (s_request_t *) zlistx_first (self->committing);
                for (; request; request = (s_request_t *) zlistx_next (self->committing))
                    s_answer (self, request, &record->batches [index++]);
                s_requests_destroy (self->committing);
            }
            self->committing_events = 0;
        }
        else
        if (record->rc != HERALD_OK && record->rc != HERALD_ERR_NOT_LEADER) {
            //  An entry this node could not apply: its store and the
            //  others' would part ways; stop
            herald_log ("error", "applying a committed entry (raft index %" PRIu64 ") "
                        "failed: %s; stopping", record->raft_index, record->err.message);
            self->stop_reason = "the store failed";
        }
        if (record->rc == HERALD_OK)
            s_fan_out (self, record);
        else
        if (record->rc != HERALD_ERR_NOT_LEADER)
            rc = -1;
        herald_raft_release (self->raft, &record);
    }
    return rc;
}

size_t
herald_commit_raft_gone (herald_commit_t *self)
{
    if (!self->clustered)
        return 0;
    //  Destroyed already: no state to read, no leader to name.  The
    //  proposal in flight may yet commit under another leader: its
    //  outcome is unknown
    self->raft = NULL;
    size_t refused = s_refuse_not_leader (self, self->committing, true);
    self->proposing = false;
    self->committing_events = 0;
    refused += herald_commit_refuse_queue (self, HERALD_ERR_NOT_LEADER,
                                           "this node is stopping; publish to another node "
                                           "of the cluster", 0);
    return refused;
}

size_t
herald_commit_queued (herald_commit_t *self)
{
    return zlistx_size (self->queue) + zlistx_size (self->committing);
}

bool
herald_commit_idle (herald_commit_t *self)
{
    return !herald_commit_busy (self) && zlistx_size (self->queue) == 0;
}

const herald_commit_counts_t *
herald_commit_counts (herald_commit_t *self)
{
    return &self->counts;
}

const char *
herald_commit_stop_reason (herald_commit_t *self)
{
    return self->stop_reason;
}
