/*  =========================================================================
    herald_raft - a cluster node's replicated log: libraft on a thread of
    its own, applying committed entries to the store

    DESIGN

    Threads.  The node runs libraft 0.22 with its stock libuv I/O
    (raft_uv_init: segments and metadata in options->dir) and TCP
    transport (raft_uv_tcp_init) on a libuv loop in a thread of its own,
    the "raft thread".  Everything libraft does happens there, and so does
    the FSM: apply, snapshot and restore write or read the store on the
    raft thread, which is the store's one appender.  The broker thread
    talks to it through three things only:

        broker --> raft:  proposals, a mutex queue + uv_async_send
        raft --> broker:  applied records, pointers over an inproc PAIR
                          (herald_raft_sock is readable when one waits)
        both:             the state copy for STATUS, under the mutex

    Fields: the part of herald_raft_t above "raft thread only" is set in
    herald_raft_new and read-only after; the mutex guards the "shared"
    part; the rest belongs to the raft thread (before the thread starts,
    to herald_raft_new, which hands it over by pthread_create).

    Proposals.  herald_raft_propose queues a proposal (the broker's
    batches, borrowed until its record is released).  On the raft thread
    it is cut into entries of at most ENTRY_MAX bytes of whole requests
    (a bigger single request travels alone), each encoded with
    herald_entry (kind publish, this node's term and raft id, the
    proposal's ts) and given to raft_apply with n = 1: in 0.22.1
    raft_apply asserts n == 1 (0.15 took n entries and fired the callback
    at the first).  An entry's apply callback only tells "applied here"
    (status 0) or "leadership lost, outcome unknown" (LEADERSHIPLOST, also
    on raft_close); the results come from the FSM apply.

    FSM apply.  0.22.1's fsm->apply still gets no index, but libraft sets
    last_applied only after apply returns (legacy.c applyCommand), and
    applies barrier and configuration entries itself without calling the
    FSM (it only moves last_applied past them), so the index being
    applied is raft_last_applied + 1, which may skip numbers.  After a
    restart without a snapshot libraft sets last_applied to 1 and
    re-applies everything from index 2, so an index at or below
    herald_store_applied_index is skipped: the store wrote that index in
    the same WriteBatch as its effects.  Otherwise the entry is decoded
    (herald_entry) and applied with herald_store_apply_entry (the entry's
    ts, raised by the store to its last ts).  Any decode or store error
    stops the node: the FSM refuses every later entry, the role becomes
    STOPPED, and the raft instance is closed; it never runs on.

    Records.  Every applied publish entry yields one record, pushed in
    index order: its seq range and envelopes (moved out of the store with
    herald_store_take_appended).  An entry of this node's own proposal is
    recognised by its (index, term, proposer) = what raft_apply returned
    and what it encoded (Log Matching: one term and index name one entry);
    its results are copied into the proposal's batches.  The record of a
    proposal's LAST entry carries the cookie, the batches and rc OK; the
    records of its other entries, and of every entry proposed elsewhere,
    carry cookie NULL, batches NULL (fan out only).  A proposal that lost
    leadership before all its entries were applied here gets one more
    record, cookie set, rc HERALD_ERR_NOT_LEADER, no events (any of its
    entries already applied went out in their own records).

    Back-pressure: at most RECORDS_MAX records are out (pushed, not yet
    released).  When the broker falls that far behind, the FSM apply
    waits on a condition variable (in slices of 100 ms, checking for
    stop) with the loop blocked: heartbeats stop, and a leader that stays
    blocked past the election timeout loses its leadership, which is
    right: it cannot serve.  Each record holds one entry's envelopes
    (<= ~1 MiB), so the bound is ~RECORDS_MAX MiB.

    Leadership.  libraft has no state-change callback; a uv_check handle
    looks at raft_state after every loop iteration (at least every
    heartbeat: the I/O ticks then).  On becoming leader in a term it
    proposes raft_barrier; the role becomes LEADER (proposals taken) only
    once that barrier is applied, so every entry of an earlier term is
    committed and applied first (the no-op a new leader needs, Raft
    §8).  Leaving the leader state ends it at once.

    Bounded log in memory.  libraft keeps its log from (last snapshot -
    trailing) to the end in RAM, and 0.22.1 sends at most
    max_inflight_entries (32) entries per AppendEntries (0.15 sent all,
    unbounded).  Entries are <= ENTRY_MAX (1 MiB, except one larger
    request), so SNAPSHOT_THRESHOLD 128 + SNAPSHOT_TRAILING 128 hold at
    most ~256 MiB of log in memory, and a snapshot is taken every 128
    entries.  Snapshots are cheap here (a manifest), so frequent ones cost
    nothing; trailing 128 lets a follower that is a few seconds behind
    catch up from the log instead of a snapshot.  (0.22.1's code default
    trailing is 2048, its header says 128: set explicitly.)

    Snapshots are a manifest, never events (CLUSTER.md §3.6): msgpack
    {format, index, head, last_ts, digest, node, api, peers}.  snapshot()
    first syncs the store's WAL (herald_store_sync: no acknowledged-head
    marker, which a cluster node must not write), so the store is durable
    up to every snapshot, below which libraft drops its log.  restore(): a store
    at or past the manifest's head with the same digest needs nothing;
    behind, it catches up from a peer over HWP/1 REPLAY
    (herald_catchup.c), installs with herald_store_install and checks the
    digest; any mismatch stops the node.  In 0.22.1 restore still gets the
    whole snapshot in one buffer, to raft_free (at start, and when an
    InstallSnapshot has been written).

    Other settings: pre-vote on (a node back from a partition does not
    depose a working leader), election and heartbeat from options,
    auto-recovery of corrupt segments OFF (a damaged raft log must stop
    the node, not be silently cut), connect retry delay 1/4 election.

    Differences from what CLUSTER.md says about 0.15, checked in the
    0.22.1 headers and source: raft_apply requires n == 1; AppendEntries
    carries at most max_inflight_entries (default 32) entries; pre-vote is
    still off by default; trailing's code default is still 2048;
    fsm->apply still has no index; snapshots are still whole buffers in
    memory; raft_close fails pending requests with LEADERSHIPLOST and
    fires their callbacks before it returns; raft_transfer's callback
    fires on success or after an election timeout.

    Test hook (only with env HERALD_TEST_HOOKS=1): env
    HERALD_TEST_RAFT_CONNECT="ID=HOST:PORT,..." (raft ids in decimal)
    sends this node's outbound raft connections to those ids to the given
    addresses instead, by wrapping the TCP transport's connect.  libraft
    sends every message over the sender's own outbound connection, so a
    proxy per directed link sees exactly that link: a test partitions
    A -> B by stopping one proxy.  Without both variables the stock
    transport is used unwrapped.
    =========================================================================
*/

#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stddef.h>
#include <sys/stat.h>
#include <errno.h>
#include <raft.h>
#include <raft/uv.h>
#include "herald_raft.h"
#include "herald_entry.h"
#include "herald_manifest.h"
#include "herald_log.h"

#define ENTRY_MAX           (1u << 20)      //  bytes of whole requests per entry
#define RECORDS_MAX         64              //  records out before apply waits
#define SNAPSHOT_THRESHOLD  128
#define SNAPSHOT_TRAILING   128
#define REDIRECTS_MAX       16

typedef struct _s_proposal_t s_proposal_t;

//  One entry of a proposal, in flight in libraft (raft thread).
typedef struct {
    struct raft_apply req;              //  first: libraft's request
    herald_raft_t *self;
    s_proposal_t *proposal;
    uint64_t term;                      //  the term it was proposed in
    size_t first;                       //  its batches: first .. first + count - 1
    size_t count;
    bool last;                          //  the proposal's last entry
} s_entry_t;

struct _s_proposal_t {
    s_proposal_t *next;                 //  in the broker -> raft queue
    herald_batch_t *batches;            //  borrowed from the broker
    size_t count;
    uint64_t ts;
    void *cookie;
    size_t entries;                     //  submitted to raft_apply
    size_t callbacks;                   //  their callbacks fired
    bool lost;                          //  not all of it submitted or applied
    bool done;                          //  its record (with the cookie) pushed
};

typedef struct {
    uint64_t id;
    char address [64];
} s_redirect_t;

typedef struct _s_record_t {
    herald_applied_t applied;           //  first: what the broker sees
    struct _s_record_t *next;           //  in the free list
} s_record_t;

struct _herald_raft_t {
    //  Set by herald_raft_new, read-only after
    herald_store_t *store;
    char *node;
    char *dir;
    herald_peer_t *peers;
    size_t peer_count;
    uint64_t self_id;
    char *self_address;
    unsigned election_ms;
    unsigned heartbeat_ms;
    zsock_t *sock;                      //  broker's end of the record pipe
    pthread_t thread;
    bool thread_started;

    //  Shared, under mutex
    pthread_mutex_t mutex;
    pthread_cond_t cond;                //  a record released, or stopping
    s_proposal_t *queue_head;           //  proposals for the raft thread
    s_proposal_t *queue_tail;
    bool stopping;                      //  herald_raft_destroy began
    bool wake_closed;                   //  uv_async_send no longer allowed
    herald_raft_state_t state;
    size_t records_out;                 //  pushed and not released
    s_record_t *free_records;
    size_t free_count;

    //  Raft thread only
    zsock_t *feed;                      //  raft thread's end of the record pipe
    uv_loop_t loop;
    uv_async_t wake;
    uv_check_t check;
    uv_timer_t stop_timer;
    struct raft raft;
    struct raft_io io;
    struct raft_fsm fsm;
    struct raft_uv_transport tcp;
    struct raft_uv_transport wrapper;   //  the test hook's, when used
    raft_uv_accept_cb accept_cb;
    raft_uv_transport_close_cb transport_close_cb;
    s_redirect_t redirects [REDIRECTS_MAX];
    size_t redirect_count;
    bool raft_inited;
    bool io_inited;
    bool tcp_inited;
    bool closing;                       //  raft_close called
    bool transferring;
    struct raft_transfer transfer;
    struct raft_barrier barrier;
    bool barrier_pending;
    uint64_t barrier_term;              //  the term the barrier was proposed in
    uint64_t ready_term;                //  leader and barrier applied in this term
    bool failed;                        //  a store or decode error: stop
    zlistx_t *inflight;                 //  s_entry_t, in index order
    uint64_t apply_us_max;
};

//  ---------------------------------------------------------------------
//  Records: raft thread pushes, broker takes and releases

static s_record_t *
s_record_get (herald_raft_t *self)
{
    pthread_mutex_lock (&self->mutex);
    s_record_t *record = self->free_records;
    if (record) {
        self->free_records = record->next;
        self->free_count--;
    }
    pthread_mutex_unlock (&self->mutex);
    if (!record)
        record = (s_record_t *) zmalloc (sizeof (s_record_t));
    herald_store_envelopes_t envelopes = record->applied.envelopes;
    memset (record, 0, sizeof (*record));
    record->applied.envelopes = envelopes;      //  its buffers serve again
    record->applied.envelopes.count = 0;
    record->applied.first_seq = 1;
    return record;
}

static void
s_record_free (s_record_t *record)
{
    if (record) {
        herald_store_envelopes_free (&record->applied.envelopes);
        free (record);
    }
}

//  Hand record to the broker thread, waiting while RECORDS_MAX are out.
//  When the node is stopping nobody takes it: it is freed.
static void
s_record_push (herald_raft_t *self, s_record_t *record)
{
    pthread_mutex_lock (&self->mutex);
    while (self->records_out >= RECORDS_MAX && !self->stopping) {
        struct timespec until;
        clock_gettime (CLOCK_REALTIME, &until);
        until.tv_nsec += 100 * 1000000L;
        if (until.tv_nsec >= 1000000000L) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait (&self->cond, &self->mutex, &until);
    }
    bool stopping = self->stopping;
    if (!stopping)
        self->records_out++;
    pthread_mutex_unlock (&self->mutex);
    if (stopping) {
        s_record_free (record);
        return;
    }
    //  The pipe has no high-water mark (RECORDS_MAX bounds it), so this
    //  never blocks; it fails only when the context is terminated.
    if (zsock_send (self->feed, "p", record) != 0) {
        pthread_mutex_lock (&self->mutex);
        self->records_out--;
        pthread_mutex_unlock (&self->mutex);
        s_record_free (record);
    }
}

//  Wake the raft thread up (any thread), unless its loop is ending.
static void
s_wake (herald_raft_t *self)
{
    pthread_mutex_lock (&self->mutex);
    if (!self->wake_closed)
        uv_async_send (&self->wake);
    pthread_mutex_unlock (&self->mutex);
}

//  ---------------------------------------------------------------------
//  State

static const herald_peer_t *
s_peer_by_id (herald_raft_t *self, uint64_t id)
{
    size_t index;
    for (index = 0; index < self->peer_count; index++)
        if (self->peers [index].raft_id == id)
            return &self->peers [index];
    return NULL;
}

static bool
s_is_member (herald_raft_t *self)
{
    unsigned index;
    for (index = 0; index < self->raft.configuration.n; index++)
        if (self->raft.configuration.servers [index].id == self->self_id)
            return true;
    return false;
}

//  Copy libraft's state into the shared copy (raft thread).
static void
s_state_update (herald_raft_t *self)
{
    herald_raft_state_t state;
    memset (&state, 0, sizeof (state));
    state.raft_id = self->self_id;
    state.apply_us_max = self->apply_us_max;
    if (self->failed || self->closing || !self->raft_inited) {
        state.role = HERALD_RAFT_STOPPED;
        pthread_mutex_lock (&self->mutex);
        state.term = self->state.term;
        state.commit_index = self->state.commit_index;
        state.applied_index = self->state.applied_index;
        state.last_index = self->state.last_index;
        self->state = state;
        pthread_mutex_unlock (&self->mutex);
        return;
    }
    struct raft *r = &self->raft;
    state.term = raft_current_term (r);
    state.commit_index = raft_commit_index (r);
    state.applied_index = raft_last_applied (r);
    state.last_index = raft_last_index (r);
    unsigned index;
    for (index = 0; index < r->configuration.n; index++)
        if (r->configuration.servers [index].role == RAFT_VOTER)
            state.voters++;
    raft_id leader_id = 0;
    const char *leader_address = NULL;
    raft_leader (r, &leader_id, &leader_address);
    const herald_peer_t *leader = leader_id? s_peer_by_id (self, leader_id): NULL;
    if (leader) {
        snprintf (state.leader, sizeof (state.leader), "%s", leader->name);
        snprintf (state.leader_api, sizeof (state.leader_api), "%s",
                  leader->api? leader->api: "");
    }
    if (!s_is_member (self))
        state.role = HERALD_RAFT_JOINING;
    else
    if (raft_state (r) == RAFT_LEADER && self->ready_term == state.term)
        state.role = HERALD_RAFT_LEADER;
    else
        state.role = HERALD_RAFT_FOLLOWER;
    pthread_mutex_lock (&self->mutex);
    self->state = state;
    pthread_mutex_unlock (&self->mutex);
}

//  A store or decode error: log it, refuse every later entry, and close.
static void
s_fail (herald_raft_t *self, const char *what, const herald_error_t *err)
{
    if (!self->failed)
        herald_log ("error", "raft: %s: %s; this node stops", what,
                    err && err->message [0]? err->message: "(no detail)");
    self->failed = true;
    s_state_update (self);
    s_wake (self);                      //  closes raft from the loop
}

//  ---------------------------------------------------------------------
//  FSM

//  The proposal entry this node submitted for (index, term, proposer),
//  or NULL.  Entries before it in the list were never applied here (a
//  new leader overwrote them): their callbacks will say so.
static s_entry_t *
s_own_entry (herald_raft_t *self, uint64_t index, const herald_entry_t *entry)
{
    if (entry->proposer != self->self_id)
        return NULL;
    s_entry_t *pending = (s_entry_t *) zlistx_first (self->inflight);
    while (pending) {
        if (pending->req.index == index)
            return pending->term == entry->term? pending: NULL;
        pending = (s_entry_t *) zlistx_next (self->inflight);
    }
    return NULL;
}

static void
s_push_lost (herald_raft_t *self, s_proposal_t *proposal)
{
    s_record_t *record = s_record_get (self);
    record->applied.cookie = proposal->cookie;
    record->applied.batches = proposal->batches;
    record->applied.count = proposal->count;
    record->applied.ts = proposal->ts;
    record->applied.rc = HERALD_ERR_NOT_LEADER;
    herald_error_set (&record->applied.err, HERALD_ERR_NOT_LEADER, "",
                      "leadership was lost before the proposal was applied; "
                      "its outcome is unknown");
    record->applied.last_seq = 0;
    //  The state first: a broker told not_leader must not then read a
    //  STATUS that still says leader
    s_state_update (self);
    s_record_push (self, record);
}

//  Apply one decoded publish entry at index; push its record.
static int
s_apply_publish (herald_raft_t *self, uint64_t index, const herald_entry_t *entry,
                 msgpack_zone *zone)
{
    herald_batch_t *batches = NULL;
    if (entry->count) {
        batches = (herald_batch_t *) msgpack_zone_malloc (zone,
                                                          entry->count * sizeof (herald_batch_t));
        if (!batches)
            return -1;
    }
    size_t request;
    for (request = 0; request < entry->count; request++) {
        memset (&batches [request], 0, sizeof (herald_batch_t));
        batches [request].events = entry->requests [request].events;
        batches [request].count = entry->requests [request].count;
        batches [request].results = (herald_append_result_t *) msgpack_zone_malloc (
            zone, entry->requests [request].count * sizeof (herald_append_result_t));
        if (!batches [request].results)
            return -1;
    }
    s_record_t *record = s_record_get (self);
    uint64_t head = herald_store_head (self->store);
    herald_error_t err = { 0 };
    herald_err rc = herald_store_apply_entry (self->store, batches, entry->count, entry->ts,
                                              index, &err);
    if (rc != HERALD_OK) {
        s_record_free (record);
        s_fail (self, "the store failed to apply a committed entry", &err);
        return -1;
    }
    herald_applied_t *applied = &record->applied;
    applied->first_seq = head + 1;
    applied->last_seq = herald_store_head (self->store);
    applied->ts = entry->ts;
    applied->rc = HERALD_OK;
    applied->raft_index = index;
    applied->term = entry->term;
    herald_store_take_appended (self->store, &applied->envelopes);

    s_entry_t *own = s_own_entry (self, index, entry);
    if (own && own->count == entry->count) {
        s_proposal_t *proposal = own->proposal;
        for (request = 0; request < entry->count; request++) {
            herald_batch_t *into = &proposal->batches [own->first + request];
            memcpy (into->results, batches [request].results,
                    into->count * sizeof (herald_append_result_t));
            into->status = batches [request].status;
            into->conflict_index = batches [request].conflict_index;
            into->expected = batches [request].expected;
            into->actual = batches [request].actual;
        }
        if (own->last && !proposal->lost) {
            applied->cookie = proposal->cookie;
            applied->batches = proposal->batches;
            applied->count = proposal->count;
            applied->ts = proposal->ts;
            proposal->done = true;
        }
    }
    s_record_push (self, record);
    return 0;
}

static int
s_fsm_apply (struct raft_fsm *fsm, const struct raft_buffer *buf, void **result)
{
    herald_raft_t *self = (herald_raft_t *) fsm->data;
    *result = NULL;
    if (self->failed)
        return RAFT_IOERR;
    uint64_t index = raft_last_applied (&self->raft) + 1;
    if (index <= herald_store_applied_index (self->store))
        return 0;                       //  applied before a restart
    int64_t started = zclock_usecs ();
    msgpack_zone zone;
    msgpack_zone_init (&zone, 4096);
    herald_entry_t entry;
    herald_error_t err = { 0 };
    int rc = 0;
    if (herald_entry_decode (&entry, buf->base, buf->len, &zone, &err) != HERALD_OK) {
        char what [64];
        snprintf (what, sizeof (what), "raft entry %" PRIu64 " does not decode", index);
        s_fail (self, what, &err);
        rc = RAFT_CORRUPT;
    }
    else
    if (entry.kind == HERALD_ENTRY_PUBLISH) {
        if (s_apply_publish (self, index, &entry, &zone))
            rc = RAFT_IOERR;
    }
    else {
        //  A node-table entry (not proposed yet by this build) or a no-op:
        //  only the index is written.
        if (herald_store_set_applied (self->store, index, &err) != HERALD_OK) {
            s_fail (self, "the store failed to record an applied index", &err);
            rc = RAFT_IOERR;
        }
    }
    msgpack_zone_destroy (&zone);
    uint64_t spent = (uint64_t) (zclock_usecs () - started);
    if (spent > self->apply_us_max)
        self->apply_us_max = spent;
    return rc;
}

static int
s_fsm_snapshot (struct raft_fsm *fsm, struct raft_buffer *bufs [], unsigned *n_bufs)
{
    herald_raft_t *self = (herald_raft_t *) fsm->data;
    if (self->failed)
        return RAFT_IOERR;
    herald_store_t *store = self->store;
    herald_error_t err = { 0 };
    //  The store must be durable up to this snapshot: libraft drops the
    //  log below it, and a store that lost its unsynced tail could not
    //  replay those entries any more.
    if (herald_store_sync (store, &err) != HERALD_OK) {
        herald_log ("warn", "raft: snapshot skipped, the store's WAL cannot be synced: %s",
                    err.message);
        return RAFT_IOERR;
    }
    msgpack_sbuffer buffer;
    msgpack_sbuffer_init (&buffer);
    const herald_peer_t *me = s_peer_by_id (self, self->self_id);
    int rc = herald_manifest_encode (store, raft_last_applied (&self->raft), self->node,
                                     me? me->api: NULL, self->peers, self->peer_count,
                                     &buffer);
    struct raft_buffer *out = (struct raft_buffer *) raft_malloc (sizeof (struct raft_buffer));
    void *bytes = raft_malloc (buffer.size);
    if (rc || !out || !bytes) {
        raft_free (out);
        raft_free (bytes);
        msgpack_sbuffer_destroy (&buffer);
        return RAFT_NOMEM;
    }
    memcpy (bytes, buffer.data, buffer.size);
    out->base = bytes;
    out->len = buffer.size;
    msgpack_sbuffer_destroy (&buffer);
    *bufs = out;
    *n_bufs = 1;
    return 0;
}

//  Events installed by a catch-up go to the broker like applied ones
//  (cookie NULL, raft_index 0), so that it fans them out in seq order.
//  Not while herald_raft_new runs (a restart that resumes a catch-up):
//  nobody takes records yet, and the broker starts from the store's head.
static void
s_installed (void *arg)
{
    herald_raft_t *self = (herald_raft_t *) arg;
    s_record_t *record = s_record_get (self);
    herald_store_take_appended (self->store, &record->applied.envelopes);
    if (!self->thread_started || record->applied.envelopes.count == 0) {
        s_record_free (record);
        return;
    }
    record->applied.rc = HERALD_OK;
    record->applied.first_seq = record->applied.envelopes.first;
    record->applied.last_seq = record->applied.envelopes.first
                             + record->applied.envelopes.count - 1;
    s_record_push (self, record);
}

static int
s_fsm_restore (struct raft_fsm *fsm, struct raft_buffer *buf)
{
    herald_raft_t *self = (herald_raft_t *) fsm->data;
    herald_manifest_t manifest;
    herald_error_t err = { 0 };
    herald_err rc = herald_manifest_decode (&manifest, buf->base, buf->len, &err);
    if (rc == HERALD_OK) {
        //  Every other peer is a source too, after the manifest's own
        const char *apis [16];
        size_t count = 0;
        for (size_t at = 0; at < self->peer_count && count < 16; at++)
            if (self->peers [at].raft_id != self->self_id && self->peers [at].api)
                apis [count++] = self->peers [at].api;
        rc = herald_manifest_restore (&manifest, self->store, apis, count, s_installed,
                                      self, &err);
    }
    if (rc != HERALD_OK) {
        s_fail (self, "cannot restore a snapshot", &err);
        return RAFT_CORRUPT;
    }
    raft_free (buf->base);              //  ours on success (raft.h, fsm tests)
    return 0;
}

//  ---------------------------------------------------------------------
//  Proposing (raft thread)

static void
s_entry_done (herald_raft_t *self, s_entry_t *pending)
{
    void *handle = zlistx_find (self->inflight, pending);
    if (handle)
        zlistx_delete (self->inflight, handle);
    s_proposal_t *proposal = pending->proposal;
    free (pending);
    proposal->callbacks++;
    if (proposal->callbacks == proposal->entries) {
        if (!proposal->done) {
            proposal->done = true;
            s_push_lost (self, proposal);
        }
        free (proposal);
    }
}

static void
s_apply_cb (struct raft_apply *req, int status, void *result)
{
    (void) result;
    s_entry_t *pending = (s_entry_t *) req;
    if (status != 0)
        pending->proposal->lost = true;
    s_entry_done (pending->self, pending);
}

//  Submit one entry: requests batches [first .. first + count).
static int
s_submit (herald_raft_t *self, s_proposal_t *proposal, size_t first, size_t count,
          bool last)
{
    herald_entry_request_t stack [64];
    herald_entry_request_t *requests = count <= 64? stack:
        (herald_entry_request_t *) malloc (count * sizeof (herald_entry_request_t));
    if (!requests)
        return RAFT_NOMEM;
    size_t index;
    for (index = 0; index < count; index++) {
        requests [index].events = proposal->batches [first + index].events;
        requests [index].count = proposal->batches [first + index].count;
    }
    herald_entry_t entry = {
        .kind = HERALD_ENTRY_PUBLISH, .rules = HERALD_ENTRY_RULES,
        .term = raft_current_term (&self->raft), .proposer = self->self_id,
        .ts = proposal->ts, .requests = requests, .count = count
    };
    msgpack_sbuffer buffer;
    msgpack_sbuffer_init (&buffer);
    int rc = herald_entry_encode (&entry, &buffer);
    if (requests != stack)
        free (requests);
    struct raft_buffer buf = { raft_malloc (buffer.size), buffer.size };
    if (rc || !buf.base) {
        msgpack_sbuffer_destroy (&buffer);
        raft_free (buf.base);
        return RAFT_NOMEM;
    }
    memcpy (buf.base, buffer.data, buffer.size);
    msgpack_sbuffer_destroy (&buffer);
    s_entry_t *pending = (s_entry_t *) zmalloc (sizeof (s_entry_t));
    pending->self = self;
    pending->proposal = proposal;
    pending->term = entry.term;
    pending->first = first;
    pending->count = count;
    pending->last = last;
    rc = raft_apply (&self->raft, &pending->req, &buf, 1, s_apply_cb);
    if (rc != 0) {
        herald_log ("warn", "raft: raft_apply: %s (%s)", raft_strerror (rc), raft_errmsg (&self->raft));
        raft_free (buf.base);           //  ownership passes only on success
        free (pending);
        return rc;
    }
    zlistx_add_end (self->inflight, pending);
    proposal->entries++;
    return 0;
}

//  Cut proposal into entries of at most ENTRY_MAX bytes of whole
//  requests and submit them.  A proposal that cannot be (fully) submitted
//  gets its not_leader record once the submitted part's callbacks fired.
static void
s_propose (herald_raft_t *self, s_proposal_t *proposal)
{
    bool ready = raft_state (&self->raft) == RAFT_LEADER
              && self->ready_term == raft_current_term (&self->raft)
              && !self->failed && !self->closing;
    size_t first = 0;
    while (ready && first < proposal->count) {
        size_t bytes = HERALD_ENTRY_OVERHEAD + 4;
        size_t end = first;
        while (end < proposal->count) {
            size_t size = herald_entry_request_size (proposal->batches [end].events,
                                                     proposal->batches [end].count);
            if (end > first && bytes + size > ENTRY_MAX)
                break;
            bytes += size;
            end++;
        }
        int rc = s_submit (self, proposal, first, end - first, end == proposal->count);
        if (rc != 0) {
            if (rc != RAFT_NOTLEADER)
                herald_log ("warn", "raft: cannot propose: %s", raft_strerror (rc));
            break;
        }
        first = end;
    }
    if (first < proposal->count || proposal->count == 0)
        proposal->lost = true;
    if (proposal->entries == 0) {
        proposal->done = true;
        s_push_lost (self, proposal);
        free (proposal);
    }
}

//  ---------------------------------------------------------------------
//  The loop: wake-ups, state, barrier, stop

static void
s_handle_close_cb (uv_handle_t *handle)
{
    (void) handle;
}

static void
s_raft_close_cb (struct raft *raft)
{
    herald_raft_t *self = (herald_raft_t *) raft->data;
    pthread_mutex_lock (&self->mutex);
    self->wake_closed = true;
    pthread_mutex_unlock (&self->mutex);
    uv_close ((uv_handle_t *) &self->wake, s_handle_close_cb);
    uv_close ((uv_handle_t *) &self->check, s_handle_close_cb);
    uv_close ((uv_handle_t *) &self->stop_timer, s_handle_close_cb);
}

static void
s_close (herald_raft_t *self)
{
    if (self->closing)
        return;
    self->closing = true;
    s_state_update (self);
    uv_timer_stop (&self->stop_timer);
    raft_close (&self->raft, s_raft_close_cb);
}

static void
s_stop_timer_cb (uv_timer_t *timer)
{
    herald_raft_t *self = (herald_raft_t *) timer->data;
    s_close (self);
}

static void
s_transfer_cb (struct raft_transfer *req)
{
    herald_raft_t *self = (herald_raft_t *) req->data;
    self->transferring = false;
    //  Not raft_close from inside libraft's callback: from the next turn
    //  of the loop.
    if (!self->closing)
        uv_timer_start (&self->stop_timer, s_stop_timer_cb, 0, 0);
}

//  Stop: a ready leader with other voters hands over first, bounded by
//  two election timeouts (libraft's callback comes after one at most).
static void
s_begin_stop (herald_raft_t *self)
{
    if (self->closing || self->transferring)
        return;
    if (!self->failed && raft_state (&self->raft) == RAFT_LEADER) {
        herald_raft_state_t state;
        pthread_mutex_lock (&self->mutex);
        state = self->state;
        pthread_mutex_unlock (&self->mutex);
        if (state.voters > 1) {
            memset (&self->transfer, 0, sizeof (self->transfer));
            self->transfer.data = self;
            if (raft_transfer (&self->raft, &self->transfer, 0, s_transfer_cb) == 0) {
                self->transferring = true;
                uv_timer_start (&self->stop_timer, s_stop_timer_cb,
                                2 * (uint64_t) self->election_ms, 0);
                return;
            }
        }
    }
    s_close (self);
}

static void
s_wake_cb (uv_async_t *async)
{
    herald_raft_t *self = (herald_raft_t *) async->data;
    pthread_mutex_lock (&self->mutex);
    s_proposal_t *proposals = self->queue_head;
    self->queue_head = self->queue_tail = NULL;
    bool stopping = self->stopping;
    pthread_mutex_unlock (&self->mutex);
    while (proposals) {
        s_proposal_t *next = proposals->next;
        s_propose (self, proposals);
        proposals = next;
    }
    if ((stopping || self->failed) && !self->closing)
        s_begin_stop (self);
}

static void
s_barrier_cb (struct raft_barrier *req, int status)
{
    herald_raft_t *self = (herald_raft_t *) req->data;
    self->barrier_pending = false;
    if (status == 0 && !self->closing
    &&  raft_state (&self->raft) == RAFT_LEADER
    &&  raft_current_term (&self->raft) == self->barrier_term)
        self->ready_term = self->barrier_term;
    if (!self->closing)
        s_state_update (self);
}

static void
s_check_cb (uv_check_t *check)
{
    herald_raft_t *self = (herald_raft_t *) check->data;
    if (self->closing)
        return;
    uint64_t term = raft_current_term (&self->raft);
    if (raft_state (&self->raft) == RAFT_LEADER && !self->failed && !self->transferring
    &&  self->ready_term != term && !self->barrier_pending) {
        memset (&self->barrier, 0, sizeof (self->barrier));
        self->barrier.data = self;
        self->barrier_term = term;
        if (raft_barrier (&self->raft, &self->barrier, s_barrier_cb) == 0)
            self->barrier_pending = true;
    }
    s_state_update (self);
}

static void *
s_thread (void *args)
{
    herald_raft_t *self = (herald_raft_t *) args;
    //  A peer that closed its connection must be an EPIPE for libuv's
    //  write, not a SIGPIPE that kills the process: the signal goes to
    //  the thread that wrote, and this one blocks it.
    sigset_t pipe;
    sigemptyset (&pipe);
    sigaddset (&pipe, SIGPIPE);
    pthread_sigmask (SIG_BLOCK, &pipe, NULL);
    uv_run (&self->loop, UV_RUN_DEFAULT);
    return NULL;
}

//  ---------------------------------------------------------------------
//  The test hook: a transport that redirects some outbound connections

static herald_raft_t *
s_of_wrapper (struct raft_uv_transport *transport)
{
    return (herald_raft_t *) ((char *) transport - offsetof (herald_raft_t, wrapper));
}

static int
s_wrap_init (struct raft_uv_transport *transport, raft_id id, const char *address)
{
    herald_raft_t *self = s_of_wrapper (transport);
    int rc = self->tcp.init (&self->tcp, id, address);
    self->tcp.data = self;
    return rc;
}

static void
s_wrap_accept (struct raft_uv_transport *tcp, raft_id id, const char *address,
               struct uv_stream_s *stream)
{
    herald_raft_t *self = (herald_raft_t *) tcp->data;
    self->accept_cb (&self->wrapper, id, address, stream);
}

static int
s_wrap_listen (struct raft_uv_transport *transport, raft_uv_accept_cb cb)
{
    herald_raft_t *self = s_of_wrapper (transport);
    self->accept_cb = cb;
    self->tcp.data = self;
    return self->tcp.listen (&self->tcp, s_wrap_accept);
}

static int
s_wrap_connect (struct raft_uv_transport *transport, struct raft_uv_connect *req,
                raft_id id, const char *address, raft_uv_connect_cb cb)
{
    herald_raft_t *self = s_of_wrapper (transport);
    size_t index;
    for (index = 0; index < self->redirect_count; index++)
        if (self->redirects [index].id == id)
            address = self->redirects [index].address;
    return self->tcp.connect (&self->tcp, req, id, address, cb);
}

static void
s_wrap_close_cb (struct raft_uv_transport *tcp)
{
    herald_raft_t *self = (herald_raft_t *) tcp->data;
    self->transport_close_cb (&self->wrapper);
}

static void
s_wrap_close (struct raft_uv_transport *transport, raft_uv_transport_close_cb cb)
{
    herald_raft_t *self = s_of_wrapper (transport);
    self->transport_close_cb = cb;
    self->tcp.data = self;
    self->tcp.close (&self->tcp, s_wrap_close_cb);
}

//  Read HERALD_TEST_RAFT_CONNECT when HERALD_TEST_HOOKS=1.  Returns the
//  transport to give libraft: the wrapper when redirects are set.
static struct raft_uv_transport *
s_transport (herald_raft_t *self)
{
    const char *hooks = getenv ("HERALD_TEST_HOOKS");
    const char *spec = getenv ("HERALD_TEST_RAFT_CONNECT");
    if (!hooks || strcmp (hooks, "1") != 0 || !spec || !*spec)
        return &self->tcp;
    char *copy = strdup (spec);
    char *saveptr = NULL;
    char *item;
    for (item = strtok_r (copy, ",", &saveptr); item && self->redirect_count < REDIRECTS_MAX;
         item = strtok_r (NULL, ",", &saveptr)) {
        char *equals = strchr (item, '=');
        if (!equals)
            continue;
        *equals = 0;
        s_redirect_t *redirect = &self->redirects [self->redirect_count];
        redirect->id = strtoull (item, NULL, 10);
        snprintf (redirect->address, sizeof (redirect->address), "%s", equals + 1);
        self->redirect_count++;
        herald_log ("info", "raft: test hook: connections to %" PRIu64 " go to %s",
                    redirect->id, redirect->address);
    }
    free (copy);
    self->wrapper.version = 1;
    self->wrapper.init = s_wrap_init;
    self->wrapper.listen = s_wrap_listen;
    self->wrapper.connect = s_wrap_connect;
    self->wrapper.close = s_wrap_close;
    return &self->wrapper;
}

//  ---------------------------------------------------------------------
//  Lifecycle

static void
s_destroy_parts (herald_raft_t *self)
{
    if (self->io_inited)
        raft_uv_close (&self->io);
    if (self->tcp_inited)
        raft_uv_tcp_close (&self->tcp);
    uv_loop_close (&self->loop);
    zlistx_destroy (&self->inflight);
    //  Records pushed and never taken
    void *pointer;
    while (zsock_resolve (self->sock)
       &&  zmq_recv (zsock_resolve (self->sock), &pointer, sizeof (pointer), ZMQ_DONTWAIT)
           == (int) sizeof (pointer))
        s_record_free ((s_record_t *) pointer);
    zsock_destroy (&self->feed);
    zsock_destroy (&self->sock);
    while (self->free_records) {
        s_record_t *next = self->free_records->next;
        s_record_free (self->free_records);
        self->free_records = next;
    }
    while (self->queue_head) {
        s_proposal_t *next = self->queue_head->next;
        free (self->queue_head);
        self->queue_head = next;
    }
    size_t index;
    for (index = 0; index < self->peer_count; index++) {
        free (self->peers [index].name);
        free (self->peers [index].raft);
        free (self->peers [index].api);
        free (self->peers [index].fanout);
    }
    free (self->peers);
    free (self->node);
    free (self->dir);
    free (self->self_address);
    pthread_cond_destroy (&self->cond);
    pthread_mutex_destroy (&self->mutex);
    free (self);
}

static herald_err
s_check_options (const herald_raft_options_t *options, herald_error_t *err)
{
    if (!options || !options->node || !options->dir || !options->peers
    ||  options->peer_count == 0 || options->self_id == 0)
        return herald_error_set (err, HERALD_ERR_INVALID, "raft",
                                 "node, dir, self_id and peers are required");
    if (options->heartbeat_ms == 0 || options->election_ms <= options->heartbeat_ms)
        return herald_error_set (err, HERALD_ERR_INVALID, "raft",
                                 "election (%u ms) must be longer than the heartbeat (%u ms)",
                                 options->election_ms, options->heartbeat_ms);
    bool found = false;
    size_t index, other;
    for (index = 0; index < options->peer_count; index++) {
        const herald_peer_t *peer = &options->peers [index];
        if (!peer->name || !peer->raft || peer->raft_id == 0)
            return herald_error_set (err, HERALD_ERR_INVALID, "peers",
                                     "peer %zu has no name, raft address or raft id", index);
        for (other = 0; other < index; other++)
            if (options->peers [other].raft_id == peer->raft_id
            ||  streq (options->peers [other].name, peer->name))
                return herald_error_set (err, HERALD_ERR_INVALID, "peers",
                                         "peer %s is listed twice", peer->name);
        if (streq (peer->name, options->node)) {
            found = true;
            if (peer->raft_id != options->self_id)
                return herald_error_set (err, HERALD_ERR_INVALID, "peers",
                                         "this node's raft id differs from its peer entry's");
        }
    }
    if (!found)
        return herald_error_set (err, HERALD_ERR_INVALID, "peers",
                                 "this node (%s) is not among the peers", options->node);
    return HERALD_OK;
}

static herald_err
s_raft_error (herald_error_t *err, herald_raft_t *self, const char *what, int rc)
{
    return herald_error_set (err, rc == RAFT_CANTBOOTSTRAP? HERALD_ERR_INVALID: HERALD_ERR_IO,
                             "raft", "%s %s: %s (%s)", what, self->dir, raft_strerror (rc),
                             self->raft_inited? raft_errmsg (&self->raft): self->io.errmsg);
}

herald_raft_t *
herald_raft_new (const herald_raft_options_t *options, herald_store_t *store,
                 herald_error_t *err)
{
    if (s_check_options (options, err) != HERALD_OK)
        return NULL;
    if (mkdir (options->dir, 0755) != 0 && errno != EEXIST) {
        herald_error_set (err, HERALD_ERR_IO, "raft", "cannot create %s: %s", options->dir,
                          strerror (errno));
        return NULL;
    }
    herald_raft_t *self = (herald_raft_t *) zmalloc (sizeof (herald_raft_t));
    pthread_mutex_init (&self->mutex, NULL);
    pthread_cond_init (&self->cond, NULL);
    self->store = store;
    self->node = strdup (options->node);
    self->dir = strdup (options->dir);
    self->self_id = options->self_id;
    self->election_ms = options->election_ms;
    self->heartbeat_ms = options->heartbeat_ms;
    self->peer_count = options->peer_count;
    self->peers = (herald_peer_t *) zmalloc (options->peer_count * sizeof (herald_peer_t));
    size_t index;
    for (index = 0; index < options->peer_count; index++) {
        const herald_peer_t *peer = &options->peers [index];
        self->peers [index].name = strdup (peer->name);
        self->peers [index].raft = strdup (peer->raft);
        self->peers [index].api = peer->api? strdup (peer->api): NULL;
        self->peers [index].fanout = peer->fanout? strdup (peer->fanout): NULL;
        self->peers [index].raft_id = peer->raft_id;
        if (peer->raft_id == self->self_id)
            self->self_address = strdup (peer->raft);
    }
    self->inflight = zlistx_new ();
    self->state.role = HERALD_RAFT_STOPPED;
    self->state.raft_id = self->self_id;
    self->wake_closed = true;           //  until the handle exists
    uv_loop_init (&self->loop);

    //  The record pipe: no high-water mark, RECORDS_MAX bounds it
    char endpoint [64];
    snprintf (endpoint, sizeof (endpoint), "inproc://herald-raft-%p", (void *) self);
    self->sock = zsock_new (ZMQ_PAIR);
    self->feed = zsock_new (ZMQ_PAIR);
    if (self->sock && self->feed) {
        zsock_set_rcvhwm (self->sock, 0);
        zsock_set_sndhwm (self->feed, 0);
    }
    if (!self->sock || !self->feed || zsock_bind (self->sock, "%s", endpoint) != 0
    ||  zsock_connect (self->feed, "%s", endpoint) != 0) {
        herald_error_set (err, HERALD_ERR_IO, "raft", "cannot open the record pipe");
        s_destroy_parts (self);
        return NULL;
    }

    self->tcp.version = 1;              //  the struct version this build fills
    int rc = raft_uv_tcp_init (&self->tcp, &self->loop);
    if (rc != 0) {
        herald_error_set (err, HERALD_ERR_IO, "raft", "raft_uv_tcp_init: %s",
                          raft_strerror (rc));
        s_destroy_parts (self);
        return NULL;
    }
    self->tcp_inited = true;
    rc = raft_uv_init (&self->io, &self->loop, self->dir, s_transport (self));
    if (rc != 0) {
        s_raft_error (err, self, "cannot open the raft directory", rc);
        s_destroy_parts (self);
        return NULL;
    }
    self->io_inited = true;
    raft_uv_set_auto_recovery (&self->io, false);
    raft_uv_set_connect_retry_delay (&self->io, self->election_ms / 4 > 50
                                                ? self->election_ms / 4: 50);
    self->fsm.version = 1;
    self->fsm.data = self;
    self->fsm.apply = s_fsm_apply;
    self->fsm.snapshot = s_fsm_snapshot;
    self->fsm.restore = s_fsm_restore;
    rc = raft_init (&self->raft, &self->io, &self->fsm, self->self_id, self->self_address);
    if (rc != 0) {
        s_raft_error (err, self, "raft_init", rc);
        s_destroy_parts (self);
        return NULL;
    }
    self->raft_inited = true;
    self->raft.data = self;
    raft_set_election_timeout (&self->raft, self->election_ms);
    raft_set_heartbeat_timeout (&self->raft, self->heartbeat_ms);
    raft_set_pre_vote (&self->raft, true);
    raft_set_snapshot_threshold (&self->raft, SNAPSHOT_THRESHOLD);
    raft_set_snapshot_trailing (&self->raft, SNAPSHOT_TRAILING);
    const char *hooks = getenv ("HERALD_TEST_HOOKS");
    const char *threshold = getenv ("HERALD_TEST_RAFT_SNAPSHOT");
    if (hooks && streq (hooks, "1") && threshold && atoi (threshold) > 0) {
        //  Tests reach the snapshot paths with a few entries
        raft_set_snapshot_threshold (&self->raft, (unsigned) atoi (threshold));
        raft_set_snapshot_trailing (&self->raft, (unsigned) atoi (threshold));
    }

    if (options->bootstrap) {
        struct raft_configuration configuration;
        raft_configuration_init (&configuration);
        for (index = 0; index < self->peer_count && rc == 0; index++)
            rc = raft_configuration_add (&configuration, self->peers [index].raft_id,
                                         self->peers [index].raft, RAFT_VOTER);
        if (rc == 0)
            rc = raft_bootstrap (&self->raft, &configuration);
        raft_configuration_close (&configuration);
        if (rc != 0) {
            s_raft_error (err, self, "cannot bootstrap the cluster in", rc);
            self->raft_inited = false;
            raft_close (&self->raft, NULL);
            uv_run (&self->loop, UV_RUN_DEFAULT);
            s_destroy_parts (self);
            return NULL;
        }
    }
    uv_async_init (&self->loop, &self->wake, s_wake_cb);
    self->wake.data = self;
    self->wake_closed = false;
    uv_check_init (&self->loop, &self->check);
    self->check.data = self;
    uv_check_start (&self->check, s_check_cb);
    uv_timer_init (&self->loop, &self->stop_timer);
    self->stop_timer.data = self;

    //  Loads the snapshot (restore) and the log, binds the raft address
    rc = raft_start (&self->raft);
    if (rc != 0 || self->failed) {
        if (rc != 0)
            s_raft_error (err, self, "cannot start raft in", rc);
        else
            herald_error_set (err, HERALD_ERR_CORRUPT, "raft",
                              "the snapshot in %s cannot be restored (logged)", self->dir);
        self->closing = true;
        raft_close (&self->raft, s_raft_close_cb);
        uv_run (&self->loop, UV_RUN_DEFAULT);
        s_destroy_parts (self);
        return NULL;
    }
    s_state_update (self);
    self->thread_started = true;        //  before the thread reads it
    if (pthread_create (&self->thread, NULL, s_thread, self) != 0) {
        self->thread_started = false;
        herald_error_set (err, HERALD_ERR_IO, "raft", "cannot start the raft thread");
        self->closing = true;
        raft_close (&self->raft, s_raft_close_cb);
        uv_run (&self->loop, UV_RUN_DEFAULT);
        s_destroy_parts (self);
        return NULL;
    }
    return self;
}

void
herald_raft_destroy (herald_raft_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    herald_raft_t *self = *self_p;
    pthread_mutex_lock (&self->mutex);
    self->stopping = true;
    pthread_cond_broadcast (&self->cond);
    pthread_mutex_unlock (&self->mutex);
    s_wake (self);
    pthread_join (self->thread, NULL);
    s_destroy_parts (self);
    *self_p = NULL;
}

herald_err
herald_raft_propose (herald_raft_t *self, herald_batch_t *batches, size_t count,
                     uint64_t ts, void *cookie)
{
    assert (self);
    pthread_mutex_lock (&self->mutex);
    if (self->state.role != HERALD_RAFT_LEADER || self->stopping) {
        pthread_mutex_unlock (&self->mutex);
        return HERALD_ERR_NOT_LEADER;
    }
    s_proposal_t *proposal = (s_proposal_t *) zmalloc (sizeof (s_proposal_t));
    proposal->batches = batches;
    proposal->count = count;
    proposal->ts = ts;
    proposal->cookie = cookie;
    if (self->queue_tail)
        self->queue_tail->next = proposal;
    else
        self->queue_head = proposal;
    self->queue_tail = proposal;
    pthread_mutex_unlock (&self->mutex);
    s_wake (self);
    return HERALD_OK;
}

zsock_t *
herald_raft_sock (herald_raft_t *self)
{
    return self->sock;
}

herald_applied_t *
herald_raft_take (herald_raft_t *self)
{
    void *pointer = NULL;
    int size = zmq_recv (zsock_resolve (self->sock), &pointer, sizeof (pointer), ZMQ_DONTWAIT);
    if (size != (int) sizeof (pointer))
        return NULL;
    return &((s_record_t *) pointer)->applied;
}

void
herald_raft_release (herald_raft_t *self, herald_applied_t **record_p)
{
    if (!record_p || !*record_p)
        return;
    s_record_t *record = (s_record_t *) *record_p;
    *record_p = NULL;
    pthread_mutex_lock (&self->mutex);
    self->records_out--;
    if (self->free_count < RECORDS_MAX) {
        record->next = self->free_records;
        self->free_records = record;
        self->free_count++;
        record = NULL;
    }
    pthread_cond_broadcast (&self->cond);
    pthread_mutex_unlock (&self->mutex);
    s_record_free (record);
}

void
herald_raft_state (herald_raft_t *self, herald_raft_state_t *state)
{
    pthread_mutex_lock (&self->mutex);
    *state = self->state;
    pthread_mutex_unlock (&self->mutex);
}

uint64_t
herald_raft_digest (const char *text)
{
    return raft_digest (text, 0);
}
