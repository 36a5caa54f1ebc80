/*  =========================================================================
    test_herald_agent_cluster - the agent with a list of nodes

    A cluster's nodes are played by fakebroker.c (fb_cluster_setup): they
    share one log, each has its own api and fanout, and the test says which
    one leads, which lags and which dies.  The agent is given every node's
    api endpoint (no fanout: each WELCOME names its own) and must:
      - publish to the leader: follow ERROR not_leader to the node it names,
        resend what was in flight with the same ids, and report each event
        once (a resend of an event stored already comes back `dup` with its
        original seq);
      - rotate through the nodes (with a backoff) while none is named;
      - leave a node that does not answer (closed, silent, no WELCOME);
      - move a subscription to another node when its node dies, and catch
        up there by REPLAY: every event once, in order;
      - take a node that lags (a lower head than the node before) as lag,
        not as a loss.
    =========================================================================
*/

#include <criterion/criterion.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fakebroker.h"
#include "testutil.h"

#define WAIT_MS     FB_WAIT_MS
#define EVENTS      6

static void
s_teardown (void)
{
    fb_teardown ();
}

TestSuite (herald_agent_cluster, .fini = s_teardown, .timeout = 60);

//  ---------------------------------------------------------------------
//  Publish completions, counted per event

typedef struct {
    pthread_mutex_t lock;
    size_t calls [EVENTS];
    herald_publish_result_t results [EVENTS];
} s_completions_t;

static s_completions_t s_done = { .lock = PTHREAD_MUTEX_INITIALIZER };

typedef struct {
    size_t index;
} s_ticket_t;

static s_ticket_t s_tickets [EVENTS];

static void
s_on_published (const herald_publish_result_t *result, void *arg)
{
    s_ticket_t *ticket = (s_ticket_t *) arg;
    pthread_mutex_lock (&s_done.lock);
    s_done.calls [ticket->index]++;
    s_done.results [ticket->index] = *result;
    pthread_mutex_unlock (&s_done.lock);
}

static size_t
s_done_count (void)
{
    size_t count = 0;
    pthread_mutex_lock (&s_done.lock);
    for (size_t index = 0; index < EVENTS; index++)
        count += s_done.calls [index] > 0;
    pthread_mutex_unlock (&s_done.lock);
    return count;
}

//  Publish EVENTS events asynchronously and serve until each is answered.
static void
s_publish_all (void)
{
    pthread_mutex_lock (&s_done.lock);
    memset (s_done.calls, 0, sizeof s_done.calls);
    pthread_mutex_unlock (&s_done.lock);
    for (size_t index = 0; index < EVENTS; index++) {
        s_tickets [index].index = index;
        herald_outgoing_t event = { .topic = "g.1", .data = "x", .data_len = 1 };
        cr_assert_eq (herald_agent_publish_async (fb_agent, &event, s_on_published,
                      &s_tickets [index], NULL), HERALD_OK);
    }
    uint64_t deadline = tu_mono_ns () + WAIT_MS * 1000000ULL;
    while (s_done_count () < EVENTS && tu_mono_ns () < deadline)
        fb_serve (10);
    fb_serve (200);                  //  a second completion would show now
    cr_assert_eq (s_done_count (), EVENTS, "%zu of %d publishes answered", s_done_count (),
                  EVENTS);
}

//  Every publish answered once, OK, stored once at seqs 1..EVENTS in order.
static void
s_check_published (void)
{
    cr_assert_eq (fb_fake.head, EVENTS, "the log holds %" PRIu64 " events", fb_fake.head);
    for (size_t index = 0; index < EVENTS; index++) {
        const herald_publish_result_t *result = &s_done.results [index];
        cr_assert_eq (s_done.calls [index], 1, "publish %zu completed %zu times", index,
                      s_done.calls [index]);
        cr_assert_eq (result->err, HERALD_OK, "publish %zu: %s", index, result->message);
        cr_assert_eq (result->seq, index + 1, "publish %zu at seq %" PRIu64, index,
                      result->seq);
        cr_assert_eq (memcmp (result->id, fb_fake.ids [index + 1], 16), 0,
                      "seq %zu holds another id", index + 1);
    }
}

static herald_agent_stats_t
s_stats (void)
{
    herald_agent_stats_t stats;
    herald_agent_stats (fb_agent, &stats);
    return stats;
}

Test (herald_agent_cluster, a_follower_sends_publishes_to_the_leader)
{
    fb_cluster_setup ("agent-cluster", "cluster", 3, 60000);
    fb_fake.nodes [0].leader = 1;       //  node 0 follows node 1
    fb_fake.nodes [2].leader = 1;
    s_publish_all ();
    s_check_published ();
    cr_assert_gt (fb_fake.nodes [0].publishes, 0, "the first node was not asked");
    cr_assert_eq (fb_fake.nodes [2].publishes, 0);
    herald_agent_stats_t stats = s_stats ();
    cr_assert_eq (stats.published, EVENTS);
    cr_assert_eq (stats.publish_errors, 0);
    cr_assert_geq (stats.leader_redirects, 1);
    cr_assert_geq (stats.failovers, stats.leader_redirects);
    cr_assert_str_eq (stats.node_api, fb_fake.nodes [1].api);
    cr_assert_str_eq (stats.node, "fake1");
    cr_assert_eq (stats.nodes_known, 3);
}

//  The leader stored the batch, then lost its leadership before it
//  answered: not_leader.  The agent resends the same ids to the new
//  leader, which answers them as duplicates with their original seqs: the
//  caller hears of each event once, as stored once.
Test (herald_agent_cluster, a_batch_stored_before_not_leader_is_acked_once_as_stored)
{
    fb_cluster_setup ("agent-cluster", "cluster", 3, 60000);
    fb_fake.nodes [0].store_then_refuse = 1;
    fb_fake.nodes [0].leader_after = 2;
    fb_fake.nodes [1].leader = 2;
    fb_fake.nodes [2].leader = 2;
    s_publish_all ();
    s_check_published ();
    cr_assert_geq (fb_fake.nodes [0].publishes, 1);
    cr_assert_gt (fb_fake.nodes [2].events_sent, 0);
    size_t dups = 0;
    for (size_t index = 0; index < EVENTS; index++)
        dups += s_done.results [index].dup;
    //  The first batch went to node 0 and was stored there: resent, dup
    cr_assert_gt (dups, 0, "no event came back as a duplicate");
    cr_assert_eq (dups, fb_fake.nodes [0].events_refused_stored);
    herald_agent_stats_t stats = s_stats ();
    cr_assert_eq (stats.published, EVENTS);
    cr_assert_str_eq (stats.node, "fake2");
}

Test (herald_agent_cluster, with_no_leader_known_the_agent_rotates_through_the_nodes)
{
    fb_cluster_setup ("agent-cluster", "cluster", 3, 60000);
    fb_fake.nodes [0].leader = FB_NIL;
    fb_fake.nodes [1].leader = FB_NIL;
    int64_t started = zclock_mono ();
    s_publish_all ();
    s_check_published ();
    cr_assert_gt (fb_fake.nodes [0].publishes, 0);
    cr_assert_gt (fb_fake.nodes [1].publishes, 0);
    herald_agent_stats_t stats = s_stats ();
    cr_assert_geq (stats.failovers, 2);
    cr_assert_eq (stats.leader_redirects, 0);
    cr_assert_str_eq (stats.node, "fake2");
    //  Two rotations, with a backoff: 50 ms, then 100 ms
    cr_assert_geq (zclock_mono () - started, 150);
}

//  ---------------------------------------------------------------------
//  Subscriptions

//  Serve for ms, with a heartbeat from every live node every 20 ms.
static void
s_serve_beating (int ms)
{
    for (int waited = 0; waited < ms; waited += 20) {
        for (size_t index = 0; index < fb_fake.node_count; index++)
            fb_node_heartbeat (index);
        fb_serve (20);
    }
}

static void
s_wait_count (size_t count)
{
    uint64_t deadline = tu_mono_ns () + WAIT_MS * 1000000ULL;
    while (fb_recorder->count < count && tu_mono_ns () < deadline)
        s_serve_beating (20);
    s_serve_beating (200);           //  anything more would show now
    cr_assert_eq (fb_recorder->count, count, "%zu delivered, expected %zu", fb_recorder->count,
                  count);
    char message [256];
    cr_assert_eq (au_check_once_in_order (fb_recorder, message, sizeof message), 0, "%s",
                  message);
    for (size_t index = 0; index < count; index++)
        cr_assert_eq (fb_recorder->seqs [index], index + 1);
}

static void
s_go_live (void)
{
    cr_assert_eq (herald_agent_subscribe (fb_agent, "g", NULL,
                  (herald_start_t) { HERALD_START_BEGINNING, 0 }, au_record, fb_recorder),
                  HERALD_OK);
    herald_sub_status_t status;
    uint64_t deadline = tu_mono_ns () + WAIT_MS * 1000000ULL;
    do {
        s_serve_beating (20);
        herald_agent_sub_status (fb_agent, "g", &status);
    } while (status.state != HERALD_SUB_LIVE && tu_mono_ns () < deadline);
    cr_assert_eq (status.state, HERALD_SUB_LIVE);
}

//  Serve until the agent talks to another node than `node`.
static void
s_wait_moved_from (const char *node)
{
    uint64_t deadline = tu_mono_ns () + WAIT_MS * 1000000ULL;
    herald_agent_stats_t stats;
    do {
        s_serve_beating (20);
        stats = s_stats ();
    } while ((streq (stats.node, node) || !*stats.node) && tu_mono_ns () < deadline);
    cr_assert (*stats.node && !streq (stats.node, node), "still on %s", stats.node);
}

Test (herald_agent_cluster, a_subscription_moves_when_its_node_dies_and_misses_nothing)
{
    fb_cluster_setup ("agent-cluster", "cluster", 3, 100);
    s_go_live ();
    cr_assert_str_eq (s_stats ().node, "fake");
    for (int index = 0; index < 10; index++)
        fb_append ("g.1", 0);
    //  Node 0 has applied and fanned out 1..7 of the 10 stored, then dies
    fb_fake.nodes [0].lag = 7;
    for (uint64_t seq = 1; seq <= 7; seq++)
        fb_node_fanout (0, seq);
    s_wait_count (7);
    fb_node_kill (0);
    s_wait_moved_from ("fake");
    //  8..10 come by REPLAY from the new node; 11, 12 live from it
    s_wait_count (10);
    fb_append ("g.1", 0);
    fb_append ("g.1", 0);
    for (size_t index = 1; index < 3; index++) {
        fb_node_fanout (index, 11);
        fb_node_fanout (index, 12);
    }
    s_wait_count (12);
    cr_assert_eq (fb_errors, 0, "%s", fb_error_message);
    herald_agent_stats_t stats = s_stats ();
    cr_assert_geq (stats.failovers, 1);
    cr_assert_eq (stats.data_lost, 0);
    herald_sub_status_t status;
    herald_agent_sub_status (fb_agent, "g", &status);
    cr_assert_eq (status.state, HERALD_SUB_LIVE);
    cr_assert_eq (status.delivered_seq, 12);
}

//  The next node has applied only up to 7 of the 10 the agent delivered:
//  its heartbeats and WELCOME say head 7.  That is lag: nothing is
//  rewound, nothing reported, nothing delivered twice; once it catches
//  up, its live stream continues where the agent stands.
Test (herald_agent_cluster, a_lower_head_on_another_node_is_lag_not_loss)
{
    fb_cluster_setup ("agent-cluster", "cluster", 2, 100);
    s_go_live ();
    for (int index = 0; index < 10; index++)
        fb_append ("g.1", 0);
    for (uint64_t seq = 1; seq <= 10; seq++)
        fb_node_fanout (0, seq);
    s_wait_count (10);
    fb_fake.nodes [1].lag = 7;
    fb_node_kill (0);
    s_wait_moved_from ("fake");
    s_serve_beating (300);            //  heartbeats with head 7 from the new node
    herald_sub_status_t status;
    herald_agent_sub_status (fb_agent, "g", &status);
    cr_assert_eq (status.delivered_seq, 10);
    //  It catches up: its stream shows 8..12
    fb_append ("g.1", 0);
    fb_append ("g.1", 0);
    fb_fake.nodes [1].lag = 0;
    for (uint64_t seq = 8; seq <= 12; seq++)
        fb_node_fanout (1, seq);
    s_wait_count (12);
    cr_assert_eq (fb_errors, 0, "%s", fb_error_message);
    herald_agent_stats_t stats = s_stats ();
    cr_assert_eq (stats.data_lost, 0);
    herald_agent_sub_status (fb_agent, "g", &status);
    cr_assert_eq (status.data_lost, 0);
    cr_assert_eq (status.delivered_seq, 12);
}

//  A node that has not yet applied an accepted loss says a lower lineage
//  (and here a lower head) than the node before: it lags.  Read from it,
//  the subscription would be rewound to its head with DATA_LOST (a lower
//  lineage from the same node is a restore from an older copy); from
//  another node, the agent moves on to one that is up to date instead.
Test (herald_agent_cluster, a_lower_lineage_on_another_node_is_lag_not_loss)
{
    fb_cluster_setup ("agent-cluster", "cluster", 3, 100);
    fb_fake.lineage = 1;
    fb_fake.losses [fb_fake.loss_count++] = (herald_loss_t) { 1, 0, 1 };
    fb_fake.nodes [1].old_lineage = true;
    fb_fake.nodes [1].lag = 3;
    s_go_live ();
    for (int index = 0; index < 5; index++)
        fb_append ("g.1", 0);
    for (uint64_t seq = 1; seq <= 5; seq++)
        fb_node_fanout (0, seq);
    s_wait_count (5);
    fb_node_kill (0);
    s_wait_moved_from ("fake");
    uint64_t deadline = tu_mono_ns () + WAIT_MS * 1000000ULL;
    while (!streq (s_stats ().node, "fake2") && tu_mono_ns () < deadline)
        s_serve_beating (20);
    cr_assert_str_eq (s_stats ().node, "fake2");
    fb_append ("g.1", 0);
    fb_append ("g.1", 0);
    fb_node_fanout (2, 6);
    fb_node_fanout (2, 7);
    s_wait_count (7);
    cr_assert_eq (fb_errors, 0, "%s", fb_error_message);
    cr_assert_eq (s_stats ().data_lost, 0);
    cr_assert_gt (fb_fake.nodes [1].hellos, 0, "the lagging node was not tried");
}

//  A node whose live stream falls silent (paused, cut off: its connection
//  stays up) is left after three heartbeat intervals.
Test (herald_agent_cluster, a_silent_node_is_left)
{
    fb_cluster_setup ("agent-cluster", "cluster", 2, 100);
    s_go_live ();
    for (int index = 0; index < 3; index++)
        fb_append ("g.1", 0);
    for (uint64_t seq = 1; seq <= 3; seq++)
        fb_node_fanout (0, seq);
    s_wait_count (3);
    fb_fake.nodes [0].mute = true;
    int64_t muted = zclock_mono ();
    s_wait_moved_from ("fake");
    cr_assert_geq (zclock_mono () - muted, 300, "left before three intervals");
    fb_append ("g.1", 0);
    fb_node_fanout (1, 4);
    s_wait_count (4);
    cr_assert_str_eq (s_stats ().node, "fake1");
    cr_assert_eq (fb_errors, 0, "%s", fb_error_message);
}

//  A node that takes the connection but never answers HELLO is left for
//  the next one (after NODE_PATIENCE_MS); one that refuses the connection
//  too.  Nothing is delivered from a node that has not welcomed.
Test (herald_agent_cluster, nodes_that_do_not_answer_are_left)
{
    fb_cluster_setup ("agent-cluster", "cluster", 3, 100);
    fb_fake.hold_hellos = true;         //  node 0 keeps its WELCOMEs
    fb_node_kill (1);                   //  node 1 is not there
    for (int index = 0; index < 3; index++)
        fb_append ("g.1", 0);
    s_go_live ();
    s_wait_count (3);
    herald_agent_stats_t stats = s_stats ();
    cr_assert_str_eq (stats.node, "fake2");
    cr_assert_str_eq (stats.node_api, fb_fake.nodes [2].api);
    cr_assert_geq (stats.failovers, 1);
    cr_assert_eq (fb_fake.nodes [0].hellos, 0);
    cr_assert_eq (fb_errors, 0, "%s", fb_error_message);
}

//  A standalone broker's WELCOME lists its own api, maybe as it is bound
//  ("*"): a single broker, nothing to move to, as before.
Test (herald_agent_cluster, a_standalone_broker_naming_itself_stays_one_node)
{
    fb_setup ("agent-cluster", "standalone");
    fb_fake.nodes [0].cluster_self = "tcp://*:5580";
    fb_go_live ();
    herald_agent_stats_t stats = s_stats ();
    cr_assert_eq (stats.nodes_known, 1);
    cr_assert_str_eq (stats.node, "fake");
    cr_assert_str_eq (stats.node_api, fb_fake.api);
    cr_assert_eq (stats.failovers, 0);
}

//  api lists are checked when the agent is made.
Test (herald_agent_cluster, a_bad_list_is_refused)
{
    char *state = tu_tmpdir_new ("agent-cluster-bad");
    const char *bad [] = { "tcp://127.0.0.1:1,", ",tcp://127.0.0.1:1", "tcp://127.0.0.1:1,,x",
                           "tcp://127.0.0.1:1, nonsense" };
    for (size_t index = 0; index < sizeof bad / sizeof bad [0]; index++) {
        herald_agent_options_t options;
        herald_agent_options_init (&options);
        options.api = bad [index];
        options.state_dir = state;
        herald_agent_t *agent = herald_agent_new ("bad", &options);
        cr_assert_null (agent, "%s was taken", bad [index]);
        cr_assert (*herald_agent_last_error (), "%s", bad [index]);
    }
    herald_agent_options_t options;
    herald_agent_options_init (&options);
    options.api = "tcp://127.0.0.1:1, tcp://127.0.0.1:2";
    options.fanout = "tcp://127.0.0.1:3";
    options.state_dir = state;
    cr_assert_null (herald_agent_new ("bad", &options));
    cr_assert (strstr (herald_agent_last_error (), "one per api endpoint"), "%s",
               herald_agent_last_error ());
    options.fanout = "tcp://127.0.0.1:3,tcp://127.0.0.1:4";
    herald_agent_t *agent = herald_agent_new ("good", &options);
    cr_assert_not_null (agent, "%s", herald_agent_last_error ());
    herald_agent_stats_t stats;
    herald_agent_stats (agent, &stats);
    cr_assert_str_eq (stats.node_api, "tcp://127.0.0.1:1");
    cr_assert_eq (stats.nodes_known, 2);
    herald_agent_destroy (&agent);
    tu_tmpdir_destroy (&state);
}
