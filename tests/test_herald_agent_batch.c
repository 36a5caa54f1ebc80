/*  =========================================================================
    test_herald_agent_batch - batch handlers (herald_agent_subscribe_batch)

    One handler call per delivery batch, on the real heraldd: every event
    once, in seq order, with its envelope at its place in the batch's
    contiguous envelopes; `handled` commits exactly the leading events a
    handler says (OK with fewer: the rest at once; RETRY; an error fails
    the subscription at the next); dispatch mode with a deferred batch
    answered by herald_agent_complete_batch; bad arguments; and a process
    SIGKILLed in the middle of a batch handler (tests/agent_child): on
    restart exactly the batch's uncommitted events come again, each
    flagged redelivered, nothing lost.
    =========================================================================
*/

#include <criterion/criterion.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "agenttest.h"
#include "testutil.h"

#define WAIT_MS         20000

static pid_t s_child;

//  What the batch handlers see and are told to do.
typedef struct {
    pthread_mutex_t lock;
    size_t calls;
    size_t largest;                 //  the largest batch
    bool envelopes_wrong;           //  an envelope not at its place in `envelopes`
    uint64_t fail_seq;              //  return fail_code, handled = the events before it
    int fail_code;
    size_t chunk;                   //  > 0: return OK with handled = chunk
    unsigned retries_left;          //  RETRY at fail_seq this many times first
    uint64_t defer_seq;             //  dispatch: defer the batch holding it, once
    atomic_uint_fast64_t ticket;
    atomic_size_t ticket_handled;
} s_ctx_t;

static s_ctx_t s_ctx;

static void
s_setup (void)
{
    zsys_handler_set (NULL);
    s_child = 0;
    memset (&s_ctx, 0, sizeof s_ctx);
    pthread_mutex_init (&s_ctx.lock, NULL);
    at_setup ("agent-batch", "agent-batch-state");
}

static void
s_teardown (void)
{
    if (s_child > 0) {
        int status;
        kill (s_child, SIGKILL);
        waitpid (s_child, &status, 0);
    }
    at_teardown ();
}

TestSuite (herald_agent_batch, .init = s_setup, .fini = s_teardown, .timeout = 120);

static int
s_batch (herald_delivery_batch_t *batch, void *arg)
{
    (void) arg;
    pthread_mutex_lock (&s_ctx.lock);
    s_ctx.calls++;
    if (batch->count > s_ctx.largest)
        s_ctx.largest = batch->count;
    size_t offset = 0;
    for (size_t index = 0; index < batch->count; index++) {
        const herald_delivery_t *event = &batch->events [index];
        if (event->envelope != batch->envelopes + offset
        ||  offset + event->envelope_len > batch->envelopes_len
        ||  event->redelivered != (batch->redelivered [index] != 0)
        ||  event->attempt != batch->attempt)
            s_ctx.envelopes_wrong = true;
        offset += event->envelope_len;
    }
    if (offset != batch->envelopes_len || batch->size != sizeof *batch)
        s_ctx.envelopes_wrong = true;
    pthread_mutex_unlock (&s_ctx.lock);
    if (s_ctx.defer_seq && batch->events [0].seq <= s_ctx.defer_seq
    &&  batch->events [batch->count - 1].seq >= s_ctx.defer_seq
    &&  atomic_load (&s_ctx.ticket) == 0) {
        uint64_t ticket = herald_agent_defer (at_agent);
        cr_assert_neq (ticket, 0);
        atomic_store (&s_ctx.ticket_handled, batch->count);
        atomic_store (&s_ctx.ticket, ticket);
        return HERALD_DEFER;
    }
    size_t handled = batch->count;
    int rc = HERALD_OK;
    for (size_t index = 0; index < batch->count; index++) {
        if (batch->events [index].seq == s_ctx.fail_seq
        &&  (s_ctx.retries_left || s_ctx.fail_code)) {
            handled = index;
            if (s_ctx.retries_left) {
                s_ctx.retries_left--;
                rc = HERALD_RETRY;
            }
            else
                rc = s_ctx.fail_code;
            break;
        }
    }
    if (rc == HERALD_OK && s_ctx.chunk && handled > s_ctx.chunk)
        handled = s_ctx.chunk;
    for (size_t index = 0; index < handled; index++)
        au_record (&batch->events [index], at_recorder);
    batch->handled = handled;
    return rc;
}

static herald_agent_t *
s_new_agent (bool dispatch)
{
    herald_agent_options_t options;
    au_options (&options, at_broker, at_state);
    options.dispatch = dispatch;
    options.retry_max_ms = 20;
    herald_agent_t *agent = herald_agent_new ("test", &options);
    cr_assert_not_null (agent, "herald_agent_new: %s", herald_agent_last_error ());
    return agent;
}

static herald_err
s_subscribe (const char *name, const char *prefix)
{
    const char *prefixes [] = { prefix, NULL };
    return herald_agent_subscribe_batch (at_agent, name, prefixes,
                                         (herald_start_t) { HERALD_START_BEGINNING, 0 },
                                         s_batch, NULL);
}

static herald_sub_status_t
s_status (const char *name)
{
    herald_sub_status_t status;
    cr_assert_eq (herald_agent_sub_status (at_agent, name, &status), HERALD_OK);
    return status;
}

static void
s_check_once_in_order (void)
{
    char message [256];
    cr_assert_eq (au_check_once_in_order (at_recorder, message, sizeof message), 0, "%s",
                  message);
}

//  Wait (bounded) until sub `name` is in state.
static void
s_wait_state (const char *name, herald_sub_state_t state)
{
    uint64_t deadline = tu_mono_ns () + (uint64_t) WAIT_MS * 1000000u;
    while (tu_mono_ns () < deadline && s_status (name).state != state)
        usleep (5000);
    cr_assert_eq (s_status (name).state, state);
}

Test (herald_agent_batch, bad_arguments_are_refused)
{
    at_agent = s_new_agent (false);
    const char *prefixes [] = { "a.", NULL };
    herald_start_t start = { HERALD_START_BEGINNING, 0 };
    cr_assert_eq (herald_agent_subscribe_batch (at_agent, "a", prefixes, start, NULL, NULL),
                  HERALD_ERR_INVALID);
    cr_assert_eq (herald_agent_subscribe_batch (NULL, "a", prefixes, start, s_batch, NULL),
                  HERALD_ERR_INVALID);
    cr_assert_eq (herald_agent_subscribe_batch (at_agent, "bad name", prefixes, start, s_batch,
                                                NULL), HERALD_ERR_INVALID);
    herald_group_options_t options;
    herald_group_options_init (&options);
    cr_assert_eq (herald_agent_subscribe_group_batch (at_agent, "g", &options, NULL, NULL),
                  HERALD_ERR_INVALID);
    cr_assert_eq (herald_agent_complete_batch (at_agent, 1, HERALD_OK, 1),
                  HERALD_ERR_NOT_FOUND);
    cr_assert_eq (herald_agent_complete_batch (NULL, 1, HERALD_OK, 1), HERALD_ERR_INVALID);
    //  A name refused does not stay taken: the plain subscribe has it
    cr_assert_eq (s_subscribe ("a", "a."), HERALD_OK);
    cr_assert_eq (s_subscribe ("a", "a."), HERALD_ERR_INVALID);
}

Test (herald_agent_batch, every_event_once_in_order_in_batches_with_its_envelope)
{
    cr_assert_eq (au_publish (at_broker->api, "orders.%zu", 7, 2000, WAIT_MS), 0);
    cr_assert_eq (au_publish (at_broker->api, "stock.%zu", 3, 100, WAIT_MS), 0);
    at_agent = s_new_agent (false);
    cr_assert_eq (s_subscribe ("orders", "orders."), HERALD_OK);
    cr_assert_eq (au_wait_count (at_recorder, 2000, WAIT_MS), 2000);
    cr_assert_eq (au_publish (at_broker->api, "orders.%zu", 7, 300, WAIT_MS), 0);
    cr_assert_eq (au_wait_count (at_recorder, 2300, WAIT_MS), 2300);
    s_check_once_in_order ();
    cr_assert (!s_ctx.envelopes_wrong);
    cr_assert (s_ctx.largest > 1 && s_ctx.largest <= 256, "largest batch %zu", s_ctx.largest);
    cr_assert (s_ctx.calls < 2300);
    herald_sub_status_t status = s_status ("orders");
    cr_assert_eq (status.delivered, 2300);
    for (size_t index = 0; index < at_recorder->count; index++)
        cr_assert (!at_recorder->redelivered [index]);
}

Test (herald_agent_batch, an_error_commits_the_handled_and_fails_at_the_next)
{
    cr_assert_eq (au_publish (at_broker->api, "x.%zu", 1, 50, WAIT_MS), 0);
    s_ctx.fail_seq = 20;
    s_ctx.fail_code = 42;
    at_agent = s_new_agent (false);
    cr_assert_eq (s_subscribe ("x", "x."), HERALD_OK);
    s_wait_state ("x", HERALD_SUB_FAILED);
    herald_sub_status_t status = s_status ("x");
    cr_assert_eq (status.delivered_seq, 19);
    cr_assert_eq (status.delivered, 19);
    cr_assert_eq (status.error, 42);
    cr_assert (strstr (status.message, "seq 20"), "%s", status.message);
    cr_assert_eq (at_recorder->count, 19);
    //  Resumed: from 20.  The events of the failed call that it did not
    //  commit stay in doubt (as a per-event handler's failed event does):
    //  flagged; those after that call are not
    s_ctx.fail_seq = 0;
    cr_assert_eq (herald_agent_unsubscribe (at_agent, "x"), HERALD_OK);
    cr_assert_eq (s_subscribe ("x", "x."), HERALD_OK);
    cr_assert_eq (au_wait_count (at_recorder, 50, WAIT_MS), 50);
    cr_assert_eq (at_recorder->seqs [19], 20);
    cr_assert (at_recorder->redelivered [19]);
    for (size_t index = 0; index < 19; index++)
        cr_assert (!at_recorder->redelivered [index]);
    s_check_once_in_order ();
}

Test (herald_agent_batch, retry_and_partial_ok_offer_the_rest_again)
{
    cr_assert_eq (au_publish (at_broker->api, "r.%zu", 1, 40, WAIT_MS), 0);
    s_ctx.fail_seq = 10;
    s_ctx.retries_left = 2;
    s_ctx.chunk = 3;
    at_agent = s_new_agent (false);
    cr_assert_eq (s_subscribe ("r", "r."), HERALD_OK);
    cr_assert_eq (au_wait_count (at_recorder, 40, WAIT_MS), 40);
    s_check_once_in_order ();
    herald_sub_status_t status = s_status ("r");
    cr_assert_eq (status.retries, 2);
    cr_assert_eq (status.delivered, 40);
    //  10 came after two RETRYs (attempt 3); a partial OK is not a retry
    cr_assert_eq (at_recorder->seqs [9], 10);
    cr_assert_eq (at_recorder->attempts [9], 3);
    cr_assert_eq (at_recorder->attempts [0], 1);
    cr_assert_eq (at_recorder->attempts [5], 1);
}

Test (herald_agent_batch, dispatch_defers_a_batch_and_complete_batch_says_how_many)
{
    cr_assert_eq (au_publish (at_broker->api, "d.%zu", 1, 30, WAIT_MS), 0);
    s_ctx.defer_seq = 1;
    at_agent = s_new_agent (true);
    cr_assert_eq (s_subscribe ("d", "d."), HERALD_OK);
    int fd = herald_agent_fd (at_agent);
    uint64_t deadline = tu_mono_ns () + (uint64_t) WAIT_MS * 1000000u;
    while (tu_mono_ns () < deadline && !atomic_load (&s_ctx.ticket)) {
        struct pollfd item = { .fd = fd, .events = POLLIN };
        if (poll (&item, 1, 20) > 0)
            cr_assert_geq (herald_agent_dispatch (at_agent, 64), 0);
    }
    uint64_t ticket = atomic_load (&s_ctx.ticket);
    cr_assert_neq (ticket, 0);
    cr_assert_eq (s_status ("d").delivered, 0);
    //  5 handled: 1..5 committed, the rest offered again at once
    cr_assert_eq (herald_agent_complete (at_agent, ticket + 1, HERALD_OK), HERALD_ERR_NOT_FOUND);
    cr_assert_eq (herald_agent_complete_batch (at_agent, ticket, HERALD_OK, 5), HERALD_OK);
    cr_assert_eq (herald_agent_complete_batch (at_agent, ticket, HERALD_OK, 5),
                  HERALD_ERR_NOT_FOUND);
    deadline = tu_mono_ns () + (uint64_t) WAIT_MS * 1000000u;
    while (tu_mono_ns () < deadline && at_recorder->count < 25) {
        struct pollfd item = { .fd = fd, .events = POLLIN };
        if (poll (&item, 1, 20) > 0)
            cr_assert_geq (herald_agent_dispatch (at_agent, 64), 0);
    }
    //  The deferred batch's handler recorded nothing: 6..30 came after
    cr_assert_eq (at_recorder->count, 25);
    cr_assert_eq (at_recorder->seqs [0], 6);
    //  (committed right after the handler returned: dispatch until then)
    deadline = tu_mono_ns () + (uint64_t) WAIT_MS * 1000000u;
    while (tu_mono_ns () < deadline && s_status ("d").delivered_seq < 30) {
        struct pollfd item = { .fd = fd, .events = POLLIN };
        if (poll (&item, 1, 20) > 0)
            cr_assert_geq (herald_agent_dispatch (at_agent, 64), 0);
    }
    cr_assert_eq (s_status ("d").delivered_seq, 30);
    cr_assert_eq (s_status ("d").delivered, 30);
}

//  Lines "seq uuid redelivered" written by agent_child's handler.
static size_t
s_read_child_log (const char *path, uint64_t *seqs, int *flags, size_t max)
{
    FILE *file = fopen (path, "r");
    if (!file)
        return 0;
    size_t count = 0;
    char id [64];
    while (count < max && fscanf (file, "%" SCNu64 " %63s %d", &seqs [count], id,
                                  &flags [count]) == 3)
        count++;
    fclose (file);
    return count;
}

Test (herald_agent_batch, a_kill_9_mid_batch_redelivers_its_uncommitted_events_flagged)
{
    cr_assert_eq (au_publish (at_broker->api, "k.%zu", 3, 600, WAIT_MS), 0);
    char *log = tu_path (at_state, "child.log");
    char *out = tu_path (at_state, "child.out");
    const char *args [] = { "subscribe-batch", at_state, at_broker->api, at_broker->fanout,
                            "s", "k.", log, "300", NULL };
    s_child = au_child_spawn (args, out);
    cr_assert_gt (s_child, 0);
    int status = 0;
    cr_assert_eq (au_child_wait (s_child, WAIT_MS, &status), 0, "the child did not die");
    s_child = 0;
    cr_assert (WIFSIGNALED (status) && WTERMSIG (status) == SIGKILL, "status %d", status);
    static uint64_t seqs [700];
    static int flags [700];
    cr_assert_eq (s_read_child_log (log, seqs, flags, 700), 300);
    cr_assert_eq (seqs [299], 300);

    at_agent = s_new_agent (false);
    cr_assert_eq (s_subscribe ("s", "k."), HERALD_OK, "%s", herald_agent_last_error ());
    uint64_t deadline = tu_mono_ns () + (uint64_t) WAIT_MS * 1000000u;
    while (tu_mono_ns () < deadline
       &&  !(at_recorder->count && at_recorder->seqs [at_recorder->count - 1] == 600))
        usleep (5000);
    size_t count = at_recorder->count;
    cr_assert (count > 0 && at_recorder->seqs [count - 1] == 600);
    s_check_once_in_order ();
    //  From the first event of the batch the child died in (the one after
    //  its last commit) to 600, nothing missing; the flagged ones are a
    //  prefix reaching past 300: that whole batch, and nothing after it
    uint64_t low = at_recorder->seqs [0];
    cr_assert (low <= 300 && low > 300 - 256, "resumed at %" PRIu64, low);
    cr_assert_eq (count, 600 - low + 1);
    size_t flagged = 0;
    while (flagged < count && at_recorder->redelivered [flagged])
        flagged++;
    for (size_t index = flagged; index < count; index++)
        cr_assert (!at_recorder->redelivered [index], "seq %" PRIu64 " flagged after the batch",
                   at_recorder->seqs [index]);
    cr_assert (low + flagged - 1 >= 300, "only %zu flagged from %" PRIu64, flagged, low);
    cr_assert (flagged <= 256);
    //  Without the span (per-event checkpoint), only `low` would be flagged
    cr_assert (flagged > 1 || low == 300);
    free (log);
    free (out);
}
