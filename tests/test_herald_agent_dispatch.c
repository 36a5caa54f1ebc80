/*  =========================================================================
    test_herald_agent_dispatch - dispatch mode: user code on the caller's thread

    options.dispatch hands every call into user code (handlers, publish
    completions, on_error) to herald_agent_dispatch, woken by
    herald_agent_fd; a handler may defer its answer (herald_agent_defer,
    HERALD_DEFER, herald_agent_complete).  This is what the Python
    binding's asyncio form runs on.  Each test starts the real heraldd and
    checks the same contract as test_herald_agent.c: every event once, in
    seq order, checkpointed only after the handler said OK.
    =========================================================================
*/

#include <criterion/criterion.h>
#include <inttypes.h>
#include <poll.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agenttest.h"
#include "testutil.h"

#define WAIT_MS         20000

static void
s_setup (void)
{
    at_setup ("dispatch", "dispatch-state");
}

TestSuite (herald_agent_dispatch, .init = s_setup, .fini = at_teardown, .timeout = 90);

//  What the handlers of these tests share with the test's thread.
typedef struct {
    pthread_t thread;               //  the thread that dispatches
    atomic_int wrong_thread;        //  calls seen on another thread
    uint64_t defer_seq;             //  defer this seq ...
    atomic_uint_fast64_t ticket;    //  ... and put its ticket here
    atomic_int completions;
    atomic_int errors;
    int error_code;
    char error_sub [64];
} s_ctx_t;

static s_ctx_t s_ctx;

static int
s_handler (const herald_delivery_t *event, void *arg)
{
    (void) arg;
    if (!pthread_equal (pthread_self (), s_ctx.thread))
        atomic_fetch_add (&s_ctx.wrong_thread, 1);
    if (event->seq == s_ctx.defer_seq && event->attempt == 1
    &&  atomic_load (&s_ctx.ticket) == 0) {
        uint64_t ticket = herald_agent_defer (at_agent);
        cr_assert_neq (ticket, 0);
        atomic_store (&s_ctx.ticket, ticket);
        return HERALD_DEFER;
    }
    return au_record (event, at_recorder);
}

static void
s_on_error (const char *subscription, int code, const char *message, void *arg)
{
    (void) message;
    (void) arg;
    if (!pthread_equal (pthread_self (), s_ctx.thread))
        atomic_fetch_add (&s_ctx.wrong_thread, 1);
    snprintf (s_ctx.error_sub, sizeof s_ctx.error_sub, "%s", subscription);
    s_ctx.error_code = code;
    atomic_fetch_add (&s_ctx.errors, 1);
}

static void
s_done (const herald_publish_result_t *result, void *arg)
{
    (void) arg;
    if (!pthread_equal (pthread_self (), s_ctx.thread))
        atomic_fetch_add (&s_ctx.wrong_thread, 1);
    if (result->err == HERALD_OK)
        atomic_fetch_add (&s_ctx.completions, 1);
}

static herald_agent_t *
s_new_agent (bool dispatch)
{
    memset (&s_ctx, 0, sizeof s_ctx);
    s_ctx.thread = pthread_self ();
    herald_agent_options_t options;
    au_options (&options, at_broker, at_state);
    options.dispatch = dispatch;
    options.on_error = s_on_error;
    herald_agent_t *agent = herald_agent_new ("test", &options);
    cr_assert_not_null (agent, "herald_agent_new: %s", herald_agent_last_error ());
    return agent;
}

static void
s_subscribe (const char *name, const char *prefix)
{
    const char *prefixes [] = { prefix, NULL };
    herald_err rc = herald_agent_subscribe (at_agent, name, prefixes,
                                            (herald_start_t) { HERALD_START_BEGINNING, 0 },
                                            s_handler, NULL);
    cr_assert_eq (rc, HERALD_OK, "subscribe: %s", herald_agent_last_error ());
}

//  Poll the agent's fd and dispatch for ms, or until until() is true.
static void
s_run (int ms, bool (*until) (void))
{
    int fd = herald_agent_fd (at_agent);
    cr_assert_geq (fd, 0);
    uint64_t deadline = tu_mono_ns () + (uint64_t) ms * 1000000ULL;
    while (tu_mono_ns () < deadline && !(until && until ())) {
        struct pollfd item = { .fd = fd, .events = POLLIN };
        if (poll (&item, 1, 20) > 0)
            cr_assert_geq (herald_agent_dispatch (at_agent, 64), 0);
    }
}

static size_t s_want;
static bool
s_have_enough (void)
{
    pthread_mutex_lock (&at_recorder->lock);
    bool enough = at_recorder->count >= s_want;
    pthread_mutex_unlock (&at_recorder->lock);
    return enough;
}

static void
s_dispatch_until (size_t count)
{
    s_want = count;
    s_run (WAIT_MS, s_have_enough);
    cr_assert_geq (at_recorder->count, count, "%zu events delivered, expected %zu",
                   at_recorder->count, count);
}

static void
s_check_once_in_order (void)
{
    char message [256];
    cr_assert_eq (au_check_once_in_order (at_recorder, message, sizeof message), 0, "%s",
                  message);
}

Test (herald_agent_dispatch, fd_and_dispatch_refuse_an_agent_not_in_dispatch_mode)
{
    at_agent = s_new_agent (false);
    cr_assert_eq (herald_agent_fd (at_agent), -1);
    cr_assert_eq (herald_agent_last_errcode (), HERALD_ERR_INVALID);
    cr_assert_eq (herald_agent_dispatch (at_agent, 10), -1);
    cr_assert_eq (herald_agent_defer (at_agent), 0);
    cr_assert_eq (herald_agent_complete (at_agent, 1, HERALD_OK), HERALD_ERR_NOT_FOUND);
}

Test (herald_agent_dispatch, handlers_run_on_the_dispatching_thread_once_in_order)
{
    cr_assert_eq (au_publish (at_broker->api, "orders.%zu", 7, 500, WAIT_MS), 0);
    cr_assert_eq (au_publish (at_broker->api, "stock.%zu", 3, 100, WAIT_MS), 0);
    at_agent = s_new_agent (true);
    s_subscribe ("orders", "orders.");
    s_dispatch_until (500);
    cr_assert_eq (au_publish (at_broker->api, "orders.%zu", 7, 300, WAIT_MS), 0);
    s_dispatch_until (800);
    s_run (300, NULL);
    cr_assert_eq (at_recorder->count, 800);
    cr_assert_eq (atomic_load (&s_ctx.wrong_thread), 0);
    s_check_once_in_order ();
    herald_sub_status_t status;
    cr_assert_eq (herald_agent_sub_status (at_agent, "orders", &status), HERALD_OK);
    cr_assert_eq (status.delivered, 800);
}

Test (herald_agent_dispatch, nothing_is_delivered_or_checkpointed_until_dispatched)
{
    cr_assert_eq (au_publish (at_broker->api, "a.%zu", 3, 50, WAIT_MS), 0);
    at_agent = s_new_agent (true);
    s_subscribe ("a", "a.");
    //  The first call is posted: the fd becomes readable, nothing runs
    struct pollfd item = { .fd = herald_agent_fd (at_agent), .events = POLLIN };
    cr_assert_eq (poll (&item, 1, WAIT_MS), 1, "the fd never became readable");
    usleep (200 * 1000);
    herald_sub_status_t status;
    cr_assert_eq (herald_agent_sub_status (at_agent, "a", &status), HERALD_OK);
    cr_assert_eq (status.delivered, 0);
    cr_assert_eq (status.delivered_seq, 0);
    cr_assert_eq (at_recorder->count, 0);
    //  One call per dispatch when max is 1
    cr_assert_eq (herald_agent_dispatch (at_agent, 1), 1);
    cr_assert_eq (at_recorder->count, 1);
    s_dispatch_until (50);
    s_check_once_in_order ();
}

Test (herald_agent_dispatch, a_deferred_call_holds_the_subscription_until_completed)
{
    cr_assert_eq (au_publish (at_broker->api, "a.%zu", 3, 20, WAIT_MS), 0);
    at_agent = s_new_agent (true);
    s_ctx.defer_seq = 5;
    s_subscribe ("a", "a.");
    s_dispatch_until (4);
    s_run (300, NULL);
    //  seq 5 was deferred: nothing after it, and the checkpoint stays at 4
    cr_assert_eq (at_recorder->count, 4);
    uint64_t ticket = atomic_load (&s_ctx.ticket);
    cr_assert_neq (ticket, 0);
    herald_sub_status_t status;
    herald_agent_sub_status (at_agent, "a", &status);
    cr_assert_eq (status.delivered_seq, 4);
    cr_assert_eq (herald_agent_complete (at_agent, ticket + 1, HERALD_OK), HERALD_ERR_NOT_FOUND);
    //  Answered RETRY: the same event is offered again (attempt 2)
    cr_assert_eq (herald_agent_complete (at_agent, ticket, HERALD_RETRY), HERALD_OK);
    cr_assert_eq (herald_agent_complete (at_agent, ticket, HERALD_OK), HERALD_ERR_NOT_FOUND);
    s_dispatch_until (20);
    s_check_once_in_order ();
    cr_assert_eq (at_recorder->seqs [4], 5);
    cr_assert_eq (at_recorder->attempts [4], 2);
}

Test (herald_agent_dispatch, unsubscribe_abandons_a_deferred_call_and_resume_redelivers_it)
{
    cr_assert_eq (au_publish (at_broker->api, "a.%zu", 3, 10, WAIT_MS), 0);
    at_agent = s_new_agent (true);
    s_ctx.defer_seq = 3;
    s_subscribe ("a", "a.");
    s_dispatch_until (2);
    s_run (200, NULL);
    uint64_t ticket = atomic_load (&s_ctx.ticket);
    cr_assert_neq (ticket, 0);
    cr_assert_eq (herald_agent_unsubscribe (at_agent, "a"), HERALD_OK);
    cr_assert_eq (herald_agent_complete (at_agent, ticket, HERALD_OK), HERALD_ERR_NOT_FOUND);
    s_subscribe ("a", "a.");
    s_dispatch_until (10);
    s_check_once_in_order ();
    cr_assert_eq (at_recorder->seqs [2], 3);
    cr_assert (at_recorder->redelivered [2], "the abandoned event is flagged redelivered");
    cr_assert_not (at_recorder->redelivered [3]);
}

Test (herald_agent_dispatch, completions_and_on_error_run_through_dispatch)
{
    at_agent = s_new_agent (true);
    for (int index = 0; index < 50; index++) {
        herald_outgoing_t event = { .topic = "p.1", .data = "x", .data_len = 1 };
        cr_assert_eq (herald_agent_publish_async (at_agent, &event, s_done, NULL, NULL),
                      HERALD_OK);
    }
    cr_assert_eq (herald_agent_flush (at_agent, WAIT_MS), HERALD_OK);
    cr_assert_eq (atomic_load (&s_ctx.completions), 0, "a completion ran without dispatch");
    s_run (500, NULL);
    cr_assert_eq (atomic_load (&s_ctx.completions), 50);
    //  A handler error fails the subscription; on_error is dispatched too
    at_recorder->fail_seq = 20;
    at_recorder->fail_code = HERALD_ERR_INTERNAL;
    s_subscribe ("p", "p.");
    s_dispatch_until (19);
    s_run (300, NULL);
    cr_assert_eq (atomic_load (&s_ctx.errors), 1);
    cr_assert_str_eq (s_ctx.error_sub, "p");
    cr_assert_eq (s_ctx.error_code, HERALD_ERR_INTERNAL);
    herald_sub_status_t status;
    herald_agent_sub_status (at_agent, "p", &status);
    cr_assert_eq (status.state, HERALD_SUB_FAILED);
    cr_assert_eq (status.delivered_seq, 19);
    cr_assert_eq (atomic_load (&s_ctx.wrong_thread), 0);
}

Test (herald_agent_dispatch, a_completion_runs_while_a_handler_call_is_deferred)
{
    cr_assert_eq (au_publish (at_broker->api, "a.%zu", 3, 5, WAIT_MS), 0);
    at_agent = s_new_agent (true);
    s_ctx.defer_seq = 2;
    s_subscribe ("a", "a.");
    s_dispatch_until (1);
    s_run (200, NULL);
    uint64_t ticket = atomic_load (&s_ctx.ticket);
    cr_assert_neq (ticket, 0);
    //  The deferred handler publishes and waits for the completion: it
    //  must come through dispatch although the handler has not answered
    herald_outgoing_t event = { .topic = "b.1", .data = "x", .data_len = 1 };
    cr_assert_eq (herald_agent_publish_async (at_agent, &event, s_done, NULL, NULL), HERALD_OK);
    uint64_t deadline = tu_mono_ns () + WAIT_MS * 1000000ULL;
    while (atomic_load (&s_ctx.completions) == 0 && tu_mono_ns () < deadline)
        s_run (20, NULL);
    cr_assert_eq (atomic_load (&s_ctx.completions), 1);
    cr_assert_eq (at_recorder->count, 1, "nothing after the deferred event");
    cr_assert_eq (herald_agent_complete (at_agent, ticket, HERALD_OK), HERALD_OK);
    s_dispatch_until (4);
    s_check_once_in_order ();
}

//  Not dispatch mode only: a stop takes effect between two events of a
//  batch, so destroy (or unsubscribe) waits for one handler call, not for
//  the rest of a batch of up to 256 slow ones; the next agent resumes with
//  the event after the last one handled.
Test (herald_agent_dispatch, destroy_waits_for_one_handler_call_not_the_rest_of_the_batch)
{
    cr_assert_eq (au_publish (at_broker->api, "slow.%zu", 3, 200, WAIT_MS), 0);
    at_agent = s_new_agent (false);
    at_recorder->sleep_us = 20 * 1000;   //  200 events: 4 s for the whole batch
    const char *prefixes [] = { "slow.", NULL };
    cr_assert_eq (herald_agent_subscribe (at_agent, "slow", prefixes,
                                          (herald_start_t) { HERALD_START_BEGINNING, 0 },
                                          au_record, at_recorder), HERALD_OK);
    cr_assert_geq (au_wait_count (at_recorder, 1, WAIT_MS), 1);
    uint64_t start = tu_mono_ns ();
    herald_agent_destroy (&at_agent);
    uint64_t took_ms = (tu_mono_ns () - start) / 1000000;
    size_t handled = at_recorder->count;
    cr_assert_lt (took_ms, 2000, "destroy took %" PRIu64 " ms", took_ms);
    cr_assert_lt (handled, 100, "%zu events handled after destroy was called", handled);
    at_recorder->sleep_us = 0;
    at_agent = s_new_agent (false);
    cr_assert_eq (herald_agent_subscribe (at_agent, "slow", prefixes,
                                          (herald_start_t) { HERALD_START_BEGINNING, 0 },
                                          au_record, at_recorder), HERALD_OK);
    cr_assert_geq (au_wait_count (at_recorder, 200, WAIT_MS), 200);
    usleep (200 * 1000);
    cr_assert_eq (at_recorder->count, 200);
    s_check_once_in_order ();
}

//  Not dispatch mode only: commands to the I/O actor (subscribe) are not
//  lost to wake-ups racing with the actor's (publishes wake it all the
//  time).  The actor once cleared its wake-pending flag before reading the
//  eventfd: a wake-up written in between was consumed with the flag left
//  set, and every later command waited for ever (found by the Python
//  binding's catch-up test: a subscription that never replayed).
typedef struct {
    herald_agent_t *agent;
    atomic_bool stop;
} s_waker_t;

static void *
s_waker (void *arg)
{
    s_waker_t *self = (s_waker_t *) arg;
    while (!atomic_load (&self->stop)) {
        herald_outgoing_t event = { .topic = "noise.1", .data = "x", .data_len = 1 };
        herald_agent_publish_async (self->agent, &event, NULL, NULL, NULL);
        sched_yield ();
    }
    return NULL;
}

Test (herald_agent_dispatch, subscribe_commands_are_not_lost_to_racing_wake_ups)
{
    at_agent = s_new_agent (false);
    s_waker_t waker = { .agent = at_agent };
    pthread_t threads [2];
    for (int index = 0; index < 2; index++)
        cr_assert_eq (pthread_create (&threads [index], NULL, s_waker, &waker), 0);
    const char *prefixes [] = { "nothing.", NULL };
    int lost = -1, refused = -1;
    //  60 subscriptions: an agent holds 64, stopped ones included
    for (int round = 0; round < 60 && lost < 0 && refused < 0; round++) {
        herald_agent_stats_t stats;
        herald_agent_stats (at_agent, &stats);
        uint64_t replays = stats.replays;
        char name [32];
        snprintf (name, sizeof name, "s%d", round);
        if (herald_agent_subscribe (at_agent, name, prefixes,
                                    (herald_start_t) { HERALD_START_BEGINNING, 0 },
                                    au_record, at_recorder) != HERALD_OK) {
            refused = round;
            break;
        }
        uint64_t deadline = tu_mono_ns () + 5000 * 1000000ULL;
        do {
            herald_agent_stats (at_agent, &stats);
            if (stats.replays > replays)
                break;
            usleep (500);
        } while (tu_mono_ns () < deadline);
        if (stats.replays == replays)
            lost = round;
        herald_agent_unsubscribe (at_agent, name);
    }
    atomic_store (&waker.stop, true);
    for (int index = 0; index < 2; index++)
        pthread_join (threads [index], NULL);
    cr_assert_eq (refused, -1, "subscribe %d: %s", refused, herald_agent_last_error ());
    cr_assert_eq (lost, -1, "subscription %d never started its replay", lost);
}
