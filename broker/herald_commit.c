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
    index order: the leader's own proposals (their cookies) are ACKed from
    the results as standalone, or answered not_leader per request when
    leadership was lost (outcome unknown: a retry with the same ids is
    safe); every other record is only fanned out.  Either way `fanned`
    advances in seq order.  The cookie is a proposal number, never a
    pointer, so a record of a proposal long answered cannot match a later
    one.

    Pipelining (cluster only).  A Raft commit waits for the entry to be
    fsynced on a majority: tens of ms in which a single proposal in
    flight would leave every node idle.  So a leader keeps up to
    PIPELINE_PROPOSALS proposals (and PIPELINE_BYTES of PUBLISH bodies)
    in flight, each with its own requests and batches (borrowed by Raft
    until its record is released), in a FIFO in proposal order; the
    next group commit is proposed while earlier ones replicate.  Raft
    applies them in proposal order, so records come back in that order
    and each proposal's requests are answered when its own record comes:
    replies keep arrival order.  Guards, since a reply once sent cannot
    be taken back:
      - a record for proposal k answers every OLDER proposal still
        unanswered not_leader first (outcome unknown; not seen in
        practice: their records come first), so nothing behind can
        overtake it; such a proposal keeps its memory (Raft still holds
        its batches) until its own record comes, and is not answered
        again;
      - a lost proposal (not_leader record) says nothing of the ones
        behind it: each waits for its own record (ACK, or not_leader:
        libraft fails every entry of a lost term);
      - while any proposal in flight is unanswered, PUBLISH on a node
        that no longer leads is queued behind it, not refused at once,
        and the queue is refused not_leader only once every proposal
        ahead is answered.
    A standalone broker keeps ONE commit in flight with herald_writer
    (the WAL sync is local, a pipeline would buy nothing), its batches
    reused from commit to commit.

    What arrives while a commit is being applied is queued and goes into
    the next one: the group commit the issue asks for.  The loop and the
    applier hand a commit over by message and never touch it at the same
    time; the store allows reads from any thread beside its one appender,
    and the envelopes fanned out belong to the record, not to the store,
    so a later apply cannot overwrite them.

    A consumer group's op (herald_commit_op) is one more queued request:
    it keeps arrival order with PUBLISH, goes into the same proposal as a
    batch with count 0 and `op` set, and is answered through its done
    callback (herald_commit_ops.c, exactly once) wherever a PUBLISH gets
    its reply: the op's result once applied, or the same refusals
    (not_leader, overloaded, internal), never the disk guard's.  Its
    result (malloc'd by the store or herald_proposal_set_results) is
    freed with the commit's batches.

    ts is chosen here, when the commit is proposed, and is an input of
    the apply (herald_store_apply raises it to the log's last ts): with a
    replicated log the leader picks it once and every node applies it.

    Bounds: at most max_queued requests wait (then `overloaded`), and the
    loop stops draining the api socket once DRAIN_EVENTS events or
    DRAIN_BYTES bytes are queued (herald_commit_has_room), so one commit
    holds at most that plus one request; a cluster leader proposes no
    more while PIPELINE_PROPOSALS are in flight or PIPELINE_BYTES are
    (then the queue fills and the drain stops): at most PIPELINE_BYTES
    plus one proposal in flight, DRAIN_BYTES plus one request queued.
    =========================================================================
*/

#include <inttypes.h>
#include "herald_commit_priv.h"
#include "herald_writer.h"
#include "herald_raft.h"
#include "herald_log.h"

#define DRAIN_EVENTS        8192        //  queued events that end a drain
#define DRAIN_BYTES         (64u << 20) //  queued request bytes that end a drain
//  Cluster: proposals in flight at most, and their PUBLISH bytes
#ifndef PIPELINE_PROPOSALS
#   define PIPELINE_PROPOSALS  8
#endif
#define PIPELINE_BYTES      (64u << 20)


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
    free (self->refused);
    herald_commit_pending_op_destroy (&self->op);
    free (self);
    *self_p = NULL;
}

//  The guard's refusal of a request (herald_commit_guard_t stored), in
//  its turn: after the answers to the requests that came before it.
static void
s_answer_refused (herald_commit_t *self, s_request_t *request)
{
    if (request->op)
        herald_commit_pending_op_answer (request->op, request->refused->code, NULL, 0,
                                         request->refused);
    else
        herald_reply_err (self->reply, request->identity, request->refused);
}

//  ERROR code to a request (or its op's done): nothing of it was applied,
//  or its outcome is unknown (message says which)
static void
s_answer_error (herald_commit_t *self, s_request_t *request, herald_err code,
                const char *message, uint64_t retry_ms)
{
    if (request->op)
        herald_commit_pending_op_refuse (request->op, code, message);
    else
        herald_reply_refusal (self->reply, request->identity, request->msg.rid, code,
                              message, retry_ms);
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

static s_commit_t *
s_commit_new (void)
{
    s_commit_t *self = (s_commit_t *) zmalloc (sizeof (s_commit_t));
    self->requests = zlistx_new ();
    return self;
}

//  Free the ops' results the apply left in a commit's batches (the store
//  or herald_proposal_set_results malloc'd them)
static void
s_commit_free_results (s_commit_t *self)
{
    for (size_t index = 0; index < self->proposed; index++) {
        free (self->batches [index].op_result);
        self->batches [index].op_result = NULL;
    }
}

//  Free a commit and its requests: only once the applier no longer holds
//  its batches (its record released, or the applier gone).
static void
s_commit_destroy (s_commit_t **self_p)
{
    s_commit_t *self = *self_p;
    if (!self)
        return;
    s_commit_free_results (self);
    s_requests_destroy (self->requests);
    zlistx_destroy (&self->requests);
    free (self->batches);
    free (self);
    *self_p = NULL;
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
    herald_histogram_init (&self->histograms [0], "commit_us", herald_histogram_us_bounds,
                           herald_histogram_us_bound_count);
    herald_histogram_init (&self->histograms [1], "ack_us", herald_histogram_us_bounds,
                           herald_histogram_us_bound_count);
    herald_histogram_init (&self->histograms [2], "commit_events",
                           herald_histogram_events_bounds,
                           herald_histogram_events_bound_count);
    if (!clustered) {
        self->writer = herald_writer_new (store);
        if (!self->writer) {
            free (self);
            return NULL;
        }
    }
    self->queue = zlistx_new ();
    self->single = s_commit_new ();
    self->inflight = zlistx_new ();
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
    //  Proposals still in flight are freed here: the Raft node is gone.
    herald_writer_destroy (&self->writer);
    s_requests_destroy (self->queue);
    zlistx_destroy (&self->queue);
    s_commit_destroy (&self->single);
    s_commit_t *commit;
    while ((commit = (s_commit_t *) zlistx_first (self->inflight))) {
        zlistx_delete (self->inflight, zlistx_cursor (self->inflight));
        s_commit_destroy (&commit);
    }
    zlistx_destroy (&self->inflight);
    zhashx_destroy (&self->proposed);
    free (self->earlier);
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

//  s_not_leader for a request, or its op's done (HERALD_ERR_NOT_LEADER)
static void
s_request_not_leader (herald_commit_t *self, s_request_t *request, const char *leader,
                      bool outcome_unknown)
{
    if (!request->op) {
        s_not_leader (self, request->identity, request->msg.rid, leader, outcome_unknown);
        return;
    }
    char message [320];
    snprintf (message, sizeof (message), "%s; the leader is %s",
              outcome_unknown? "leadership was lost while the op was being committed: its "
              "outcome is unknown": "this node does not lead the cluster",
              leader? leader: "not known yet");
    herald_commit_pending_op_refuse (request->op, HERALD_ERR_NOT_LEADER, message);
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
        if (request->refused)
            s_answer_refused (self, request);
        else
            s_request_not_leader (self, request, *leader? leader: NULL, outcome_unknown);
        s_request_destroy (&request);
        refused++;
    }
    return refused;
}

//  Answer every request of a proposal in flight not_leader, outcome
//  unknown, but keep them: Raft holds its batches until its record comes.
static void
s_commit_refuse (herald_commit_t *self, s_commit_t *commit, const char *leader)
{
    s_request_t *request = (s_request_t *) zlistx_first (commit->requests);
    for (; request; request = (s_request_t *) zlistx_next (commit->requests))
        if (request->refused)
            s_answer_refused (self, request);
        else
            s_request_not_leader (self, request, leader, true);
    commit->answered = true;
    self->inflight_requests -= zlistx_size (commit->requests);
}

//  True while a proposal in flight is not answered yet: what arrives now
//  must be answered after it.
static bool
s_unanswered (herald_commit_t *self)
{
    return self->inflight_requests > 0;
}

//  ---------------------------------------------------------------------
//  Queueing

void
herald_commit_publish (herald_commit_t *self, zframe_t **identity_p, zframe_t **body_p,
                       const herald_limits_t *limits)
{
    s_request_t *request = (s_request_t *) zmalloc (sizeof (s_request_t));
    msgpack_zone_init (&request->zone, 4096);
    request->arrived = zclock_usecs ();
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
    uint64_t retry_ms = 0;
    if (self->guard.publish
    &&  self->guard.publish (self->guard.arg, request->body, &request->msg, &err,
                             &retry_ms) != HERALD_OK) {
        if (retry_ms)
            herald_reply_refusal (self->reply, request->identity, request->msg.rid, err.code,
                                  err.message, retry_ms);
        else
            herald_reply_err (self->reply, request->identity, &err);
        s_request_destroy (&request);
        return;
    }
    char leader [256];
    if (self->clustered && !s_leads (self, leader, sizeof (leader))
    &&  zlistx_size (self->queue) == 0 && !s_unanswered (self)) {
        s_not_leader (self, request->identity, request->msg.rid, *leader? leader: NULL, false);
        s_request_destroy (&request);
        return;
    }
    //  Else it queues: refused (in order) once the proposals ahead of it
    //  are answered, or proposed if this node leads again by then
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
        if (request->refused)
            s_answer_refused (self, request);
        else
            s_answer_error (self, request, code,
                            message? message: herald_disk_refusal (self->disk), retry_ms);
        s_request_destroy (&request);
        refused++;
    }
    self->queued_events = 0;
    self->queued_bytes = 0;
    return refused;
}

//  The disk guard's refusal: every queued PUBLISH, not the ops (tiny, and
//  a member must be able to commit what it handled); they stay queued.
static void
s_refuse_publishes (herald_commit_t *self)
{
    zlistx_t *ops = zlistx_new ();
    s_request_t *request;
    while ((request = (s_request_t *) zlistx_first (self->queue))) {
        zlistx_delete (self->queue, zlistx_cursor (self->queue));
        if (request->op && !request->refused)
            zlistx_add_end (ops, request);
        else {
            if (request->refused)
                s_answer_refused (self, request);
            else
                herald_reply_refusal (self->reply, request->identity, request->msg.rid,
                                      HERALD_ERR_OVERLOADED, herald_disk_refusal (self->disk),
                                      HERALD_DISK_RETRY_MS);
            s_request_destroy (&request);
        }
    }
    zlistx_destroy (&self->queue);
    self->queue = ops;
    self->queued_events = 0;
    self->queued_bytes = 0;
}

void
herald_commit_op (herald_commit_t *self, const uint8_t *op, size_t len,
                  herald_commit_op_fn *done, void *arg)
{
    assert (self);
    s_request_t *request = (s_request_t *) zmalloc (sizeof (s_request_t));
    msgpack_zone_init (&request->zone, 64);
    request->op = herald_commit_pending_op_new (op, len, done, arg);
    //  Never answered from here: done comes from the calls the header
    //  names.  A full queue or a node that does not lead answers it in its
    //  turn, at the next herald_commit_start
    if (zlistx_size (self->queue) >= self->config->max_queued) {
        request->refused = (herald_error_t *) zmalloc (sizeof (herald_error_t));
        herald_error_set (request->refused, HERALD_ERR_OVERLOADED, "",
                          "%zu requests are queued; try again later",
                          zlistx_size (self->queue));
    }
    zlistx_add_end (self->queue, request);
}

//  ---------------------------------------------------------------------
//  Committing

//  Point commit's batches into its requests (its array grown as needed).
static void
s_commit_batches (s_commit_t *commit)
{
    s_commit_free_results (commit);     //  a reused commit's last results
    size_t count = zlistx_size (commit->requests);
    if (count > commit->capacity) {
        commit->batches = (herald_batch_t *) realloc (commit->batches,
                                                      count * sizeof (herald_batch_t));
        assert (commit->batches);
        commit->capacity = count;
    }
    memset (commit->batches, 0, count * sizeof (herald_batch_t));
    size_t index = 0;
    s_request_t *request = (s_request_t *) zlistx_first (commit->requests);
    for (; request; request = (s_request_t *) zlistx_next (commit->requests)) {
        if (request->refused)
            continue;                   //  not proposed: it has no batch
        if (request->op) {
            commit->batches [index].op = herald_commit_pending_op_bytes (
                request->op, &commit->batches [index].op_len);
            index++;
            continue;
        }
        commit->batches [index].events = request->msg.publish.events;
        commit->batches [index].count = request->msg.publish.count;
        commit->batches [index].results = request->results;
        index++;
    }
    commit->proposed = index;
}

//  The queue becomes commit's requests (an empty list the queue).
static void
s_take_queue (herald_commit_t *self, s_commit_t *commit)
{
    zlistx_t *swap = commit->requests;
    commit->requests = self->queue;
    self->queue = swap;
    commit->events = self->queued_events;
    commit->bytes = self->queued_bytes;
    self->queued_events = 0;
    self->queued_bytes = 0;
    commit->answered = false;
    commit->started = zclock_usecs ();
    s_commit_batches (commit);
}

//  True when the pipeline takes another proposal.
static bool
s_pipeline_room (herald_commit_t *self)
{
    return zlistx_size (self->inflight) < PIPELINE_PROPOSALS
        && self->inflight_bytes < PIPELINE_BYTES;
}

size_t
herald_commit_start (herald_commit_t *self)
{
    size_t count = zlistx_size (self->queue);
    if (count == 0)
        return 0;
    if (self->clustered? !s_pipeline_room (self): herald_commit_busy (self))
        return 0;
    //  Leadership may have gone since these were queued: refused once no
    //  proposal ahead of them waits for its answer
    char leader [256];
    if (self->clustered && !s_leads (self, leader, sizeof (leader))) {
        if (s_unanswered (self))
            return 0;
        s_refuse_not_leader (self, self->queue, false);
        self->queued_events = 0;
        self->queued_bytes = 0;
        return 0;
    }
    //  Now, not when queued: every earlier commit is in the store
    herald_commit_guard_queue (self);
    //  The free-space guard looks at the disk when this commit could take
    //  it below --min-free: then nothing of the queue is written.
    if (!herald_disk_admit (self->disk, self->queued_bytes)) {
        s_refuse_publishes (self);
        if (zlistx_size (self->queue) == 0)
            return 0;
        count = zlistx_size (self->queue);
    }
    //  The proposer picks ts; the apply only raises it to the log's last.
    if (!self->clustered) {
        s_take_queue (self, self->single);
        if (self->single->proposed == 0) {
            //  The guard refused every one: nothing to apply
            s_request_t *request = (s_request_t *) zlistx_first (self->single->requests);
            for (; request; request = (s_request_t *) zlistx_next (self->single->requests))
                s_answer_refused (self, request);
            s_requests_destroy (self->single->requests);
            return 0;
        }
        herald_writer_propose (self->writer, self->single->batches, self->single->proposed,
                               herald_store_now (self->store), self->single->requests);
        return self->single->bytes;
    }
    //  A cluster leader: a commit of its own, batches and all, joins the
    //  pipeline.  The leader's clock, once, in the entry: every node
    //  applies that ts
    s_commit_t *commit = s_commit_new ();
    s_take_queue (self, commit);
    if (commit->proposed == 0) {
        //  The guard refused every one (answered now: before the answers
        //  of proposals in flight, if any of them was this client's)
        s_request_t *request = (s_request_t *) zlistx_first (commit->requests);
        for (; request; request = (s_request_t *) zlistx_next (commit->requests))
            s_answer_refused (self, request);
        s_commit_destroy (&commit);
        return 0;
    }
    commit->number = ++self->proposal;
    herald_err rc = herald_raft_propose (self->raft, commit->batches, commit->proposed,
                                         herald_store_now (self->store),
                                         (void *) (uintptr_t) commit->number);
    if (rc != HERALD_OK) {
        //  Not proposed: nothing of it can be stored.  NOT_LEADER is the
        //  usual case (leadership went a moment ago); anything else is
        //  answered the same way, so the client retries elsewhere, but
        //  never before a proposal ahead of it is answered.
        if (rc != HERALD_ERR_NOT_LEADER)
            herald_log ("warn", "raft refused a proposal of %zu requests: %s", count,
                        herald_strerror (rc));
        if (s_unanswered (self)) {
            //  Back to the queue's front, in order: refused once the
            //  proposals ahead are answered (herald_commit_start again)
            s_request_t *request;
            while ((request = (s_request_t *) zlistx_last (commit->requests))) {
                zlistx_delete (commit->requests, zlistx_cursor (commit->requests));
                zlistx_add_start (self->queue, request);
            }
            self->queued_events += commit->events;
            self->queued_bytes += commit->bytes;
        }
        else
            s_refuse_not_leader (self, commit->requests, false);
        s_commit_destroy (&commit);
        return 0;
    }
    zlistx_add_end (self->inflight, commit);
    self->inflight_bytes += commit->bytes;
    self->inflight_requests += count;
    return commit->bytes;
}

bool
herald_commit_busy (herald_commit_t *self)
{
    return self->clustered? zlistx_size (self->inflight) > 0: herald_writer_busy (self->writer);
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
s_store_failed (herald_commit_t *self, const herald_error_t *err, size_t count, size_t bytes)
{
    herald_disk_poll (self->disk);
    char free_text [32];
    herald_disk_format (herald_disk_free (self->disk), free_text, sizeof (free_text));
    bool full = strstr (err->message, "No space left") || strstr (err->message, "NoSpace")
             || herald_disk_free (self->disk) < bytes;
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
    if (request->op) {
        if (batch->op_result)
            herald_commit_pending_op_answer (request->op, HERALD_OK, batch->op_result,
                                             batch->op_result_len, NULL);
        else
            herald_commit_pending_op_refuse (request->op, HERALD_ERR_INTERNAL,
                                             "the op was applied without a result");
        return;
    }
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
    //  The check before the proposal covers a standalone broker whole
    //  (every earlier commit was applied by then): the last line is a
    //  cluster's, where an entry of an earlier leader may not be applied
    bool last_line = self->guard.duplicate && (self->clustered || !self->guard.stored);
    for (size_t i = 0; last_line && i < batch->count; i++)
        if (batch->results [i].dup
        &&  !self->guard.duplicate (self->guard.arg, request->body, batch->results [i].seq)) {
            herald_error_t err = { .has_rid = true, .rid = request->msg.rid };
            herald_error_set (&err, HERALD_ERR_UNAUTHORIZED, "", "events[%zu]: this id is "
                              "stored already, in a topic you may not publish", i);
            herald_reply_err (self->reply, request->identity, &err);
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
    herald_histogram_observe (&self->histograms [1],
                              (uint64_t) (zclock_usecs () - request->arrived));
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
        if (self->fanout)
            herald_fanout_send (self->fanout, topic, topic_len, seq, envelope, len);
        else {
            herald_reply_frame (self->pub, topic, topic_len, true);
            herald_reply_frame (self->pub, envelope, len, false);
        }
        self->counts.published++;
        self->counts.fanned = seq;
    }
}

static int
    s_finish_cluster (herald_commit_t *self);

//  An applied commit: its time and its events
static void
s_observe_commit (herald_commit_t *self, const s_commit_t *commit)
{
    herald_histogram_observe (&self->histograms [0],
                              (uint64_t) (zclock_usecs () - commit->started));
    herald_histogram_observe (&self->histograms [2], commit->events);
}

int
herald_commit_finish (herald_commit_t *self)
{
    if (self->clustered)
        return s_finish_cluster (self);
    herald_applied_t *record = herald_writer_take (self->writer);
    s_commit_t *commit = self->single;
    assert (record->cookie == commit->requests);
    size_t count = zlistx_size (commit->requests);
    char *failure = NULL;
    if (record->rc != HERALD_OK)
        failure = s_store_failed (self, &record->err, count, commit->bytes);
    else
        s_observe_commit (self, commit);
    if (record->rc == HERALD_OK && herald_log_debug ())
        herald_log ("debug", "commit: %zu requests, %zu events, seq %" PRIu64 "..%" PRIu64
                    " durable in %.3f ms", count, commit->events, record->first_seq,
                    record->last_seq, (double) (zclock_usecs () - commit->started) / 1e3);
    size_t index = 0;
    s_request_t *request = (s_request_t *) zlistx_first (commit->requests);
    for (; request; request = (s_request_t *) zlistx_next (commit->requests)) {
        if (request->refused)
            s_answer_refused (self, request);
        else
        if (record->rc == HERALD_OK)
            s_answer (self, request, &record->batches [index++]);
        else
            //  `internal` promises nothing: RocksDB said the write failed,
            //  but a WAL record may have reached the disk whole.  A retry
            //  with the same ids is safe either way.
            s_answer_error (self, request, HERALD_ERR_INTERNAL,
                            failure? failure: "store failure", 0);
    }
    s_requests_destroy (commit->requests);
    s_commit_free_results (commit);
    commit->events = 0;
    free (failure);
    int rc = record->rc == HERALD_OK? 0: -1;
    if (rc == 0)
        s_fan_out (self, record);
    herald_writer_release (self->writer, &record);
    return rc;
}

//  Answer an own proposal's requests from its record (rc OK, NOT_LEADER
//  or a store failure).
static void
s_answer_commit (herald_commit_t *self, s_commit_t *commit, herald_applied_t *record)
{
    size_t count = zlistx_size (commit->requests);
    self->inflight_requests -= count;
    commit->answered = true;
    if (record->rc == HERALD_ERR_NOT_LEADER) {
        char leader [256];
        s_leads (self, leader, sizeof (leader));
        s_request_t *request = (s_request_t *) zlistx_first (commit->requests);
        for (; request; request = (s_request_t *) zlistx_next (commit->requests))
            if (request->refused)
                s_answer_refused (self, request);
            else
                s_request_not_leader (self, request, *leader? leader: NULL, true);
        return;
    }
    if (record->rc != HERALD_OK) {
        char *failure = s_store_failed (self, &record->err, count, commit->bytes);
        s_request_t *request = (s_request_t *) zlistx_first (commit->requests);
        for (; request; request = (s_request_t *) zlistx_next (commit->requests))
            if (request->refused)
                s_answer_refused (self, request);
            else
                s_answer_error (self, request, HERALD_ERR_INTERNAL,
                                failure? failure: "store failure", 0);
        free (failure);
        return;
    }
    s_observe_commit (self, commit);
    if (herald_log_debug ())
        herald_log ("debug", "commit: %zu requests, %zu events, seq %" PRIu64 "..%" PRIu64
                    " committed and applied in %.3f ms (raft index %" PRIu64 ", %zu "
                    "proposals in flight)", count, commit->events, record->first_seq,
                    record->last_seq, (double) (zclock_usecs () - commit->started) / 1e3,
                    record->raft_index, zlistx_size (self->inflight));
    size_t index = 0;
    s_request_t *request = (s_request_t *) zlistx_first (commit->requests);
    for (; request; request = (s_request_t *) zlistx_next (commit->requests))
        if (request->refused)
            s_answer_refused (self, request);
        else
            s_answer (self, request, &record->batches [index++]);
}

//  The record for an own proposal in flight: answer the older ones still
//  unanswered not_leader (outcome unknown; they stay until their own
//  records, Raft holds their batches), then this one unless answered
//  already, then forget it.
static void
s_own_record (herald_commit_t *self, void *handle, herald_applied_t *record)
{
    s_commit_t *commit = (s_commit_t *) zlistx_handle_item (handle);
    char leader [256];
    s_leads (self, leader, sizeof (leader));
    s_commit_t *older = (s_commit_t *) zlistx_first (self->inflight);
    for (; older && older != commit; older = (s_commit_t *) zlistx_next (self->inflight))
        if (!older->answered) {
            herald_log ("warn", "raft: proposal %" PRIu64 " came back before proposal %"
                        PRIu64 "; answering the older one not_leader first", commit->number,
                        older->number);
            s_commit_refuse (self, older, *leader? leader: NULL);
        }
    if (!commit->answered)
        s_answer_commit (self, commit, record);
    zlistx_delete (self->inflight, handle);
    self->inflight_bytes -= commit->bytes;
    s_commit_destroy (&commit);
}

//  The handle of the own proposal in flight whose cookie record carries,
//  or NULL.
static void *
s_own_handle (herald_commit_t *self, const herald_applied_t *record)
{
    if (!record->cookie)
        return NULL;
    s_commit_t *commit = (s_commit_t *) zlistx_first (self->inflight);
    for (; commit; commit = (s_commit_t *) zlistx_next (self->inflight))
        if (record->cookie == (void *) (uintptr_t) commit->number)
            return zlistx_cursor (self->inflight);
    return NULL;
}

//  Every record Raft has ready: the leader's own proposals are answered,
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
        void *handle = s_own_handle (self, record);
        if (handle)
            s_own_record (self, handle, record);
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
    //  Destroyed already: no state to read, no leader to name, nothing
    //  touches the batches any more.  The proposals in flight may yet
    //  commit under another leader: their outcome is unknown.  In
    //  proposal order, then the queue behind them
    self->raft = NULL;
    size_t refused = 0;
    s_commit_t *commit;
    while ((commit = (s_commit_t *) zlistx_first (self->inflight))) {
        zlistx_delete (self->inflight, zlistx_cursor (self->inflight));
        if (!commit->answered) {
            refused += zlistx_size (commit->requests);
            s_commit_refuse (self, commit, NULL);
        }
        s_commit_destroy (&commit);
    }
    self->inflight_bytes = 0;
    assert (self->inflight_requests == 0);
    refused += herald_commit_refuse_queue (self, HERALD_ERR_NOT_LEADER,
                                           "this node is stopping; publish to another node "
                                           "of the cluster", 0);
    return refused;
}

size_t
herald_commit_queued (herald_commit_t *self)
{
    if (self->clustered)
        return zlistx_size (self->queue) + self->inflight_requests;
    return zlistx_size (self->queue) + zlistx_size (self->single->requests);
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

void
herald_commit_set_fanout (herald_commit_t *self, herald_fanout_t *fanout)
{
    self->fanout = fanout;
}

const char *
herald_commit_stop_reason (herald_commit_t *self)
{
    return self->stop_reason;
}

const herald_histogram_t *
herald_commit_histograms (herald_commit_t *self)
{
    return self->histograms;
}
