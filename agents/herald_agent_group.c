/*  =========================================================================
    herald_agent_group - group subscriptions: the API and the seam with
    the member thread

    herald_agent_subscribe_group starts a subscription that the I/O actor
    never hears of: its member thread (herald_member.c) reads, declares
    and commits on its own connection and hands batches over with
    herald_agent_group_push; the delivery thread runs them
    (herald_agent_deliver.c, "Group subscriptions").

    A batch waits in agent->group_queue until the delivery thread takes
    it.  Ending (unsubscribe, failure, destroy): `stop` is set first; a
    push then finds it (under group_lock) and is refused.  The batches
    already queued are handed back (herald_member_done 0) by the release,
    which then waits for `busy`: the delivery thread sets `busy` under
    group_lock as it takes a batch, so every batch is either handed back
    here or finished there, never both and never neither, and the member
    is alive for it.  Only a release takes the member (under member_lock,
    so figures are never read from a destroyed one), one at a time
    (release_lock).
    =========================================================================
*/

#include <errno.h>
#include <time.h>
#include <unistd.h>
#include "herald_agent_priv.h"
#include "herald_member.h"

//  Make the eventfd readable (a saturated counter already is).
static void
s_poke (int fd)
{
    uint64_t one = 1;
    if (write (fd, &one, sizeof one) < 0) {
        //  EAGAIN: the counter is saturated, so it is readable
    }
}

void
herald_group_options_init (herald_group_options_t *options)
{
    memset (options, 0, sizeof *options);
}

size_t
herald_group_options_size (void)
{
    return sizeof (herald_group_options_t);
}

//  Check a group's options.  The error set.
static herald_err
s_group_options_check (const herald_group_options_t *options, size_t *prefix_count)
{
    if (options->start.kind < HERALD_START_BEGINNING || options->start.kind > HERALD_START_TS)
        return herald_agent_set_error (HERALD_ERR_INVALID, "start: unknown kind %d",
                                       (int) options->start.kind);
    if (options->partitions > 1024)
        return herald_agent_set_error (HERALD_ERR_INVALID, "partitions: 1-1024 (0: 32), "
                                       "not %u", options->partitions);
    if (options->session_ms && (options->session_ms < 300 || options->session_ms > 60000))
        return herald_agent_set_error (HERALD_ERR_INVALID, "session_ms: 300-60000 (0: 3000), "
                                       "not %d", options->session_ms);
    if (options->batch_max > HERALD_BATCH_MAX)
        return herald_agent_set_error (HERALD_ERR_INVALID, "batch_max: 1-%d (0: 100), "
                                       "not %zu", HERALD_BATCH_MAX, options->batch_max);
    return herald_agent_prefixes_check (options->prefixes, prefix_count);
}

herald_err
herald_agent_subscribe_group (herald_agent_t *self, const char *group,
                              const herald_group_options_t *options,
                              herald_handler_fn *handler, void *arg)
{
    if (!self || !handler)
        return herald_agent_set_error (HERALD_ERR_INVALID, "subscribe_group needs an agent "
                                       "and a handler");
    if (!herald_agent_name_valid (group))
        return herald_agent_set_error (HERALD_ERR_INVALID, "a group name is 1-128 bytes of "
                                       "[A-Za-z0-9._-], not starting with '.'");
    herald_group_options_t defaults;
    if (!options) {
        herald_group_options_init (&defaults);
        options = &defaults;
    }
    size_t count = 0;
    herald_err rc = s_group_options_check (options, &count);
    if (rc)
        return rc;
    pthread_mutex_lock (&self->lock);
    herald_agent_sub_t *old = herald_agent_find_sub (self, group);
    int old_state = old? atomic_load (&old->state): 0;
    bool full = self->sub_count >= HERALD_AGENT_SUBS_MAX;
    pthread_mutex_unlock (&self->lock);
    if (old && (old_state == HERALD_SUB_CATCHING_UP || old_state == HERALD_SUB_LIVE))
        return herald_agent_set_error (HERALD_ERR_INVALID, "subscription %s is already "
                                       "running", group);
    if (full)
        return herald_agent_set_error (HERALD_ERR_INVALID, "more than %d subscriptions",
                                       HERALD_AGENT_SUBS_MAX);
    //  Where the group starts if this join makes it (the broker ignores it
    //  for a group that exists)
    uint64_t start_done = 0;
    rc = herald_agent_resolve_start (self, options->start, &start_done);
    if (rc)
        return rc;
    herald_agent_sub_t *sub = herald_agent_sub_new (group, options->prefixes, count, handler, arg);
    if (!sub)
        return HERALD_ERR_NOMEM;
    sub->group = true;
    atomic_store (&sub->lineage, HERALD_LINEAGE_UNKNOWN);
    atomic_store (&sub->state, HERALD_SUB_CATCHING_UP);
    herald_member_t *member = herald_member_new (self, sub, group, options, start_done + 1);
    if (!member) {
        herald_agent_sub_destroy (&sub);
        return herald_agent_last_errcode ();
    }
    //  Set before sub is listed, so that no unsubscribe or status finds it
    //  without its member; under group_lock because herald_agent_group_push
    //  waits for it (the member thread, started a moment ago, may push at
    //  once), and under member_lock like every change of it
    pthread_mutex_lock (&self->member_lock);
    pthread_mutex_lock (&self->group_lock);
    sub->member = member;
    pthread_cond_broadcast (&self->group_cond);
    pthread_mutex_unlock (&self->group_lock);
    pthread_mutex_unlock (&self->member_lock);
    pthread_mutex_lock (&self->lock);
    full = self->sub_count >= HERALD_AGENT_SUBS_MAX;
    if (!full)
        self->subs [self->sub_count++] = sub;
    pthread_mutex_unlock (&self->lock);
    if (full) {
        //  Never listed, so no other thread knows it: release it here
        herald_agent_group_release_now (self, sub);
        herald_agent_sub_destroy (&sub);
        return herald_agent_set_error (HERALD_ERR_INVALID, "more than %d subscriptions",
                                       HERALD_AGENT_SUBS_MAX);
    }
    if (atomic_load (&sub->stop)) {
        //  Its member failed it before it was listed: the delivery
        //  thread's reaper, asked then, did not see it
        atomic_store (&self->group_reap, true);
        s_poke (self->group_fd);
    }
    return HERALD_OK;
}

herald_err
herald_agent_group_status (herald_agent_t *self, const char *group,
                           herald_group_status_t *status)
{
    memset (status, 0, sizeof *status);
    herald_agent_sub_t *sub = NULL;
    if (self && group) {
        pthread_mutex_lock (&self->lock);
        sub = herald_agent_find_sub (self, group);
        pthread_mutex_unlock (&self->lock);
    }
    if (!sub || !sub->group)
        return herald_agent_set_error (HERALD_ERR_NOT_FOUND, "no group subscription %s",
                                       group? group: "(null)");
    herald_agent_group_figures (self, sub, status);
    herald_agent_group_state (sub, status);
    return HERALD_OK;
}

//  A group subscription is LIVE once its member has joined and its
//  committed position reached the broker's head (or it holds nothing);
//  it does not go back (as a local one stays LIVE during a repair).
void
herald_agent_group_state (herald_agent_sub_t *sub, const herald_group_status_t *figures)
{
    int expected = HERALD_SUB_CATCHING_UP;
    if (figures->joined && figures->lag == 0)
        atomic_compare_exchange_strong (&sub->state, &expected, HERALD_SUB_LIVE);
}

//  ---------------------------------------------------------------------
//  The seam with the member thread and the delivery thread

herald_err
herald_agent_group_push (herald_agent_t *agent, herald_batch_t *batch, int timeout_ms)
{
    herald_agent_sub_t *sub = batch->sub;
    struct timespec deadline;
    clock_gettime (CLOCK_MONOTONIC, &deadline);
    deadline.tv_sec += timeout_ms / 1000;
    deadline.tv_nsec += (long) (timeout_ms % 1000) * 1000000L;
    if (deadline.tv_nsec >= 1000000000L) {
        deadline.tv_sec++;
        deadline.tv_nsec -= 1000000000L;
    }
    herald_err rc = HERALD_OK;
    bool timed_out = false;
    pthread_mutex_lock (&agent->group_lock);
    while (true) {
        if (atomic_load (&agent->stopping) || atomic_load (&sub->stop)) {
            rc = HERALD_ERR_INVALID;
            break;
        }
        //  Not before subscribe_group has set sub's member (the thread
        //  pushing is that member's, started a moment before)
        if (sub->member && agent->group_count < HERALD_AGENT_GROUP_QUEUE) {
            size_t tail = (agent->group_head + agent->group_count) % HERALD_AGENT_GROUP_QUEUE;
            agent->group_queue [tail] = batch;
            agent->group_count++;
            break;
        }
        if (timed_out || timeout_ms <= 0) {
            rc = HERALD_ERR_TIMEOUT;
            break;
        }
        //  Looked at once more after a timeout: it may have freed just then
        timed_out = pthread_cond_timedwait (&agent->group_cond, &agent->group_lock, &deadline)
                 == ETIMEDOUT;
    }
    pthread_mutex_unlock (&agent->group_lock);
    if (rc == HERALD_OK) {
        s_poke (agent->group_fd);
        return HERALD_OK;
    }
    herald_batch_destroy (&batch);
    if (rc == HERALD_ERR_TIMEOUT)
        return herald_agent_set_error (rc, "the delivery thread took no batch for %d ms",
                                       timeout_ms);
    return herald_agent_set_error (rc, "subscription %s is stopping", sub->name);
}

void
herald_agent_group_release_now (herald_agent_t *agent, herald_agent_sub_t *sub)
{
    atomic_store (&sub->stop, true);
    pthread_mutex_lock (&agent->release_lock);
    herald_batch_t *mine [HERALD_AGENT_GROUP_QUEUE];
    size_t count = 0;
    pthread_mutex_lock (&agent->group_lock);
    size_t kept = 0;
    for (size_t index = 0; index < agent->group_count; index++) {
        herald_batch_t *batch = agent->group_queue [(agent->group_head + index)
                                                    % HERALD_AGENT_GROUP_QUEUE];
        if (batch->sub == sub)
            mine [count++] = batch;
        else
            agent->group_queue [(agent->group_head + kept++) % HERALD_AGENT_GROUP_QUEUE]
                = batch;
    }
    agent->group_count = kept;
    pthread_cond_broadcast (&agent->group_cond);
    pthread_mutex_unlock (&agent->group_lock);
    //  Only a release takes the member, and this one holds release_lock
    for (size_t index = 0; index < count; index++) {
        if (sub->member)
            herald_member_done (sub->member, 0);
        herald_batch_destroy (&mine [index]);
    }
    while (atomic_load (&sub->busy))
        zclock_sleep (1);
    pthread_mutex_lock (&agent->member_lock);
    struct _herald_member_t *member = sub->member;
    sub->member = NULL;
    if (member)
        herald_member_status (member, &sub->group_last);
    pthread_mutex_unlock (&agent->member_lock);
    herald_member_destroy (&member);
    pthread_mutex_unlock (&agent->release_lock);
}

void
herald_agent_group_release (herald_agent_t *self, herald_agent_sub_t *sub)
{
    atomic_store (&sub->stop, true);
    if (herald_agent_in_handler (self)) {
        //  Its handler may be the caller: the delivery thread does it
        //  once out of the call
        atomic_store (&self->group_reap, true);
        s_poke (self->group_fd);
        return;
    }
    herald_agent_group_release_now (self, sub);
}

void
herald_agent_group_figures (herald_agent_t *self, herald_agent_sub_t *sub,
                            herald_group_status_t *status)
{
    pthread_mutex_lock (&self->member_lock);
    if (sub->member)
        herald_member_status (sub->member, status);
    else
        *status = sub->group_last;
    pthread_mutex_unlock (&self->member_lock);
}

