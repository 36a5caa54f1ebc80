/*  =========================================================================
    test_herald_agent_repair - repairs stay few when the handler is slow

    A subscriber whose handler is slower than the incoming burst falls
    behind the live stream; after a broker restart it must repair the gap
    once (or a few times), not once per live batch: exactly once, in order,
    and a number of REPLAY requests bounded by a small constant per gap,
    not by the number of events.  On a real heraldd, killed and restarted.
    =========================================================================
*/

#include <criterion/criterion.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "agenttest.h"
#include "testutil.h"

#define WAIT_MS         60000


static void
s_setup (void)
{
    at_setup ("agent-repair", "agent-repair");
}

TestSuite (herald_agent_repair, .init = s_setup, .fini = at_teardown, .timeout = 180);

static herald_agent_t *
s_new_agent (void)
{
    herald_agent_options_t options;
    au_options (&options, at_broker, at_state);
    herald_agent_t *agent = herald_agent_new ("repair", &options);
    cr_assert_not_null (agent, "herald_agent_new: %s", herald_agent_last_error ());
    return agent;
}

static void
s_wait_live (const char *name)
{
    herald_sub_status_t status = { 0 };
    uint64_t deadline = tu_mono_ns () + WAIT_MS * 1000000ULL;
    while (tu_mono_ns () < deadline) {
        cr_assert_eq (herald_agent_sub_status (at_agent, name, &status), HERALD_OK);
        if (status.state == HERALD_SUB_LIVE)
            break;
        usleep (2000);
    }
    cr_assert_eq (status.state, HERALD_SUB_LIVE, "%s never went live", name);
}

//  The broker's STATUS streams_served (REPLAY and READ requests served
//  since it started), or -1.
static int64_t
s_streams_served (void)
{
    zsock_t *dealer = bu_dealer_new (at_broker->api);
    cr_assert_not_null (dealer);
    bu_reply_t reply;
    int64_t served = -1;
    if (bu_status (dealer, 1, &reply, 5000) == 0 && reply.rc == HERALD_OK)
        for (size_t index = 0; index < reply.body.status.extra_count; index++)
            if (bu_str_eq (reply.body.status.extra_keys [index], "streams_served"))
                served = (int64_t) reply.body.status.extra_values [index];
    bu_reply_fini (&reply);
    zsock_destroy (&dealer);
    return served;
}

//  Publish count events on topics r.0 .. r.9, `per` to a PUBLISH request
//  and up to `depth` requests in flight, so that the fanout trickles in
//  small groups (each becomes a small batch to the delivery thread).
static void
s_trickle (size_t count, size_t per, size_t depth)
{
    zsock_t *dealer = bu_dealer_new (at_broker->api);
    cr_assert_not_null (dealer);
    uint64_t deadline = tu_mono_ns () + WAIT_MS * 1000000ULL;
    size_t sent = 0, acked = 0, outstanding = 0;
    uint64_t rid = 0;
    char topics [16][16], datas [16][32];
    cr_assert_leq (per, 16);
    while (acked < count) {
        while (sent < count && outstanding < depth) {
            bu_event_t events [16];
            size_t batch = count - sent < per? count - sent: per;
            for (size_t index = 0; index < batch; index++) {
                snprintf (topics [index], sizeof topics [index], "r.%zu", (sent + index) % 10);
                snprintf (datas [index], sizeof datas [index], "t%zu", sent + index);
                bu_event_init (&events [index], topics [index], datas [index]);
            }
            msgpack_sbuffer sbuf;
            msgpack_sbuffer_init (&sbuf);
            bu_pack_publish (&sbuf, ++rid, events, batch);
            cr_assert_eq (bu_send_sbuf (dealer, "PUBLISH", &sbuf), 0);
            msgpack_sbuffer_destroy (&sbuf);
            sent += batch;
            outstanding++;
        }
        uint64_t now = tu_mono_ns ();
        cr_assert_lt (now, deadline, "publishing timed out");
        bu_reply_t reply;
        cr_assert_eq (bu_recv_reply (dealer, &reply, (int) ((deadline - now) / 1000000ULL) + 1),
                      0);
        cr_assert_eq (reply.type, HERALD_MSG_ACK);
        acked += reply.body.ack.count;
        outstanding--;
        bu_reply_fini (&reply);
    }
    zsock_destroy (&dealer);
}

//  A handler held shut by a gate: the slowest possible subscriber, and a
//  deterministic one.  It waits at most WAIT_MS for the gate.
static pthread_mutex_t s_gate_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t s_gate_changed = PTHREAD_COND_INITIALIZER;
static bool s_gate_open;

static int
s_gated (const herald_delivery_t *event, void *arg)
{
    pthread_mutex_lock (&s_gate_lock);
    uint64_t deadline = tu_mono_ns () + WAIT_MS * 1000000ULL;
    while (!s_gate_open && tu_mono_ns () < deadline) {
        struct timespec wake;
        clock_gettime (CLOCK_REALTIME, &wake);
        wake.tv_nsec += 10 * 1000000L;
        if (wake.tv_nsec >= 1000000000L) {
            wake.tv_sec++;
            wake.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait (&s_gate_changed, &s_gate_lock, &wake);
    }
    pthread_mutex_unlock (&s_gate_lock);
    return au_record (event, arg);
}

static void
s_gate (bool open)
{
    pthread_mutex_lock (&s_gate_lock);
    s_gate_open = open;
    pthread_cond_broadcast (&s_gate_changed);
    pthread_mutex_unlock (&s_gate_lock);
}

Test (herald_agent_repair, a_slow_subscriber_repairs_a_broker_restart_with_few_replays)
{
    at_agent = s_new_agent ();
    s_gate (true);
    cr_assert_eq (herald_agent_subscribe (at_agent, "slow", NULL,
                  (herald_start_t) { HERALD_START_BEGINNING, 0 }, s_gated, at_recorder),
                  HERALD_OK);
    s_wait_live ("slow");
    herald_agent_stats_t before;
    herald_agent_stats (at_agent, &before);
    //  The handler stops; events come one by one, each a live batch of its
    //  own, far more than the delivery pipe holds (64 + 64 batches, and 64
    //  waiting); the broker is killed and restarted while the subscriber
    //  is that far behind, and more come after the restart
    s_gate (false);
    s_trickle (2000, 1, 1);
    bu_broker_kill (at_broker);
    cr_assert_eq (bu_broker_restart (at_broker, AT_START_MS), 0, "heraldd did not restart");
    s_trickle (500, 1, 1);
    s_gate (true);
    cr_assert_eq (au_wait_count (at_recorder, 2500, WAIT_MS), 2500);
    s_wait_live ("slow");
    usleep (200000);                //  anything more would show now
    char message [256];
    cr_assert_eq (au_check_once_in_order (at_recorder, message, sizeof message), 0, "%s",
                  message);
    cr_assert_eq (at_recorder->count, 2500);
    cr_assert_eq (at_recorder->seqs [0], 1);
    cr_assert_eq (at_recorder->seqs [2499], 2500);
    herald_agent_stats_t stats;
    herald_agent_stats (at_agent, &stats);
    herald_sub_status_t status;
    cr_assert_eq (herald_agent_sub_status (at_agent, "slow", &status), HERALD_OK);
    int64_t served = s_streams_served ();
    uint64_t replays = stats.replays - before.replays;
    fprintf (stderr, "repair: %" PRIu64 " REPLAY requests (%" PRIu64 " repairs of %" PRIu64
             " gaps), %" PRIu64 " live overflows; the broker served %" PRId64 " streams since "
             "its restart\n", replays, status.repair_replays, status.gaps,
             stats.live_overflows, served);
    //  One restart: one gap, repaired by a replay or two, whatever the
    //  number of events or batches
    cr_assert_leq (replays, 4, "%" PRIu64 " REPLAY requests for one restart", replays);
    cr_assert_geq (served, 0);
    cr_assert_leq (served, 4, "the broker served %" PRId64 " streams", served);
    cr_assert_geq (status.gaps, 1);
    cr_assert_leq (status.repair_replays, 2 * status.gaps);
    cr_assert_eq (stats.repair_replays, status.repair_replays);
    cr_assert_eq (stats.gaps, status.gaps);
}

//  Replace the fixture's broker by one whose heartbeat is a minute apart:
//  the first `$hb` goes out when fanout is bound, the next long after any
//  wait of these tests, so nothing but a live event can tell the agent
//  where the live stream is.
static void
s_slow_heartbeat_broker (void)
{
    bu_broker_destroy (&at_broker);
    const char *extra [] = { "--heartbeat-ms", "60000", NULL };
    at_broker = bu_broker_new ("agent-ready", extra);
    cr_assert_not_null (at_broker);
    cr_assert_eq (bu_broker_start (at_broker, AT_START_MS), 0, "heraldd did not start");
}

//  A subscriber restarted on a log of 100 events catches up, then waits
//  for the live position: no timer takes it live.  The first live event
//  does, at once (well before the next heartbeat), and is delivered once,
//  after the 100, in order.
static void
s_ready_on_first_live_event (bool learn_fanout)
{
    s_slow_heartbeat_broker ();
    cr_assert_eq (au_publish (at_broker->api, "r.%zu", 10, 100, WAIT_MS), 0);
    herald_agent_options_t options;
    au_options (&options, at_broker, at_state);
    if (learn_fanout)
        options.fanout = NULL;      //  from WELCOME, as by default
    at_agent = herald_agent_new ("ready", &options);
    cr_assert_not_null (at_agent, "%s", herald_agent_last_error ());
    cr_assert_eq (herald_agent_subscribe (at_agent, "s", NULL,
                  (herald_start_t) { HERALD_START_BEGINNING, 0 }, au_record, at_recorder),
                  HERALD_OK);
    cr_assert_eq (au_wait_count (at_recorder, 100, WAIT_MS), 100);
    //  Caught up; the SUB is connected by now (within milliseconds of the
    //  WELCOME), but nothing has come on it since
    usleep (300000);
    herald_sub_status_t status;
    cr_assert_eq (herald_agent_sub_status (at_agent, "s", &status), HERALD_OK);
    cr_assert_eq (status.state, HERALD_SUB_CATCHING_UP, "live without a message on the SUB");
    cr_assert_eq (au_publish (at_broker->api, "r.%zu", 10, 1, WAIT_MS), 0);
    uint64_t deadline = tu_mono_ns () + 5000 * 1000000ULL;
    while (status.state != HERALD_SUB_LIVE && tu_mono_ns () < deadline) {
        usleep (2000);
        herald_agent_sub_status (at_agent, "s", &status);
    }
    cr_assert_eq (status.state, HERALD_SUB_LIVE,
                  "the first live event after catch-up did not make the subscription live");
    cr_assert_eq (au_wait_count (at_recorder, 101, WAIT_MS), 101);
    char message [256];
    cr_assert_eq (au_check_once_in_order (at_recorder, message, sizeof message), 0, "%s",
                  message);
    cr_assert_eq (at_recorder->seqs [100], 101);
    //  It waited for the event (>= 300 ms after the END), not for a beat
    cr_assert_geq (status.live_wait_ms, 300);
    cr_assert_lt (status.live_wait_ms, 60000);
    fprintf (stderr, "ready (fanout %s): live %" PRIu64 " ms after the catch-up's END\n",
             learn_fanout? "from WELCOME": "given", status.live_wait_ms);
}

Test (herald_agent_repair, a_caught_up_subscriber_goes_live_at_the_first_live_event)
{
    s_ready_on_first_live_event (false);
}

Test (herald_agent_repair, with_the_fanout_from_welcome_too)
{
    s_ready_on_first_live_event (true);
}
