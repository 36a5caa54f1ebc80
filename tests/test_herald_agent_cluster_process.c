/*  =========================================================================
    test_herald_agent_cluster_process - agents through a leader's kill -9

    Real heraldd nodes (a 3-node cluster on 127.0.0.1, short election
    timeouts) and two agents given every node's api endpoint: one publishes
    a stream of events asynchronously, the other is subscribed from the
    beginning.  Three times, the leader is killed with SIGKILL (the node
    killed before is restarted first, so a majority stays).  Every publish
    must complete exactly once, OK, at distinct seqs; the subscriber must
    handle every published event exactly once, in seq order; the publisher
    must have moved (failovers).
    =========================================================================
*/

#include <criterion/criterion.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agentutil.h"
#include "brokerutil.h"
#include "testutil.h"

#define EVENTS      600
#define KILL_EVERY  150                 //  events: a leader killed at 150, 300, 450

static bu_cluster_t *s_cluster;

static void
s_teardown (void)
{
    bu_cluster_destroy (&s_cluster);
}

TestSuite (herald_agent_cluster_process, .fini = s_teardown, .timeout = 180);

typedef struct {
    pthread_mutex_t lock;
    size_t calls [EVENTS];
    herald_publish_result_t results [EVENTS];
    size_t done;
} s_published_t;

static s_published_t s_published = { .lock = PTHREAD_MUTEX_INITIALIZER };
static size_t s_index [EVENTS];

static void
s_on_published (const herald_publish_result_t *result, void *arg)
{
    size_t index = *(size_t *) arg;
    pthread_mutex_lock (&s_published.lock);
    if (s_published.calls [index]++ == 0)
        s_published.done++;
    s_published.results [index] = *result;
    pthread_mutex_unlock (&s_published.lock);
}

static size_t
s_done (void)
{
    pthread_mutex_lock (&s_published.lock);
    size_t done = s_published.done;
    pthread_mutex_unlock (&s_published.lock);
    return done;
}

static herald_agent_t *
s_agent (const char *service, const char *api, char **state)
{
    *state = tu_tmpdir_new (service);
    herald_agent_options_t options;
    herald_agent_options_init (&options);
    options.api = api;
    options.state_dir = *state;
    options.timeout_ms = 20000;
    herald_agent_t *agent = herald_agent_new (service, &options);
    cr_assert_not_null (agent, "%s", herald_agent_last_error ());
    return agent;
}

Test (herald_agent_cluster_process, publish_and_subscribe_through_a_leader_kill_9)
{
    const char *extra [] = { "--election-ms", "400", "--raft-heartbeat-ms", "40", NULL };
    s_cluster = bu_cluster_new ("agent-cluster", 3, extra);
    cr_assert_not_null (s_cluster);
    cr_assert_eq (bu_cluster_start (s_cluster, 30000), 0, "the cluster did not start");
    int leader = bu_cluster_leader (s_cluster, 30000);
    cr_assert_geq (leader, 0, "no leader");
    //  The publisher's list starts at a follower (it is sent to the
    //  leader); the subscriber's at the leader (its node is the one killed)
    char api [512] = "", leader_first [512] = "";
    for (size_t index = 0; index < 3; index++) {
        size_t node = ((size_t) leader + 1 + index) % 3;
        snprintf (api + strlen (api), sizeof api - strlen (api), "%s%s", index? ",": "",
                  s_cluster->nodes [node]->api);
        node = ((size_t) leader + index) % 3;
        snprintf (leader_first + strlen (leader_first), sizeof leader_first
                  - strlen (leader_first), "%s%s", index? ",": "", s_cluster->nodes [node]->api);
    }
    char *pub_state, *sub_state;
    herald_agent_t *publisher = s_agent ("cluster-pub", api, &pub_state);
    herald_agent_t *subscriber = s_agent ("cluster-sub", leader_first, &sub_state);
    au_recorder_t *recorder = au_recorder_new ();
    cr_assert_eq (herald_agent_subscribe (subscriber, "all", NULL,
                  (herald_start_t) { HERALD_START_BEGINNING, 0 }, au_record, recorder),
                  HERALD_OK);
    size_t killed_at_done = 0, kills = 0;
    int killed = -1;
    for (size_t index = 0; index < EVENTS; index++) {
        s_index [index] = index;
        herald_outgoing_t event = { .topic = "c.1", .data = "x", .data_len = 1 };
        cr_assert_eq (herald_agent_publish_async (publisher, &event, s_on_published,
                      &s_index [index], NULL), HERALD_OK);
        if (index && index % KILL_EVERY == 0) {
            //  The node killed before is back (a majority for the next
            //  election); a burst just queued, some of it in flight: kill
            //  the leader now
            if (killed >= 0)
                cr_assert_eq (bu_broker_restart (s_cluster->nodes [killed], 30000), 0);
            leader = bu_cluster_leader (s_cluster, 30000);
            cr_assert_geq (leader, 0, "no leader");
            //  The publisher found the leader: this round's publishes go on
            uint64_t deadline = tu_mono_ns () + 30000 * 1000000ULL;
            while (s_done () < index - KILL_EVERY + 10 && tu_mono_ns () < deadline)
                zclock_sleep (1);
            for (size_t burst = 0; burst < 50; burst++) {
                herald_outgoing_t burst_event = { .topic = "c.0", .data = "b", .data_len = 1 };
                cr_assert_eq (herald_agent_publish_async (publisher, &burst_event, NULL, NULL,
                                                          NULL), HERALD_OK);
            }
            zclock_sleep (2);
            bu_broker_kill (s_cluster->nodes [leader]);
            killed = leader;
            killed_at_done = s_done ();
            herald_agent_stats_t now;
            herald_agent_stats (publisher, &now);
            cr_log_info ("kill %zu: %zu of %zu acknowledged; publisher at %s (%s), %" PRIu64
                         " published, %" PRIu64 " queued, %" PRIu64 " failovers", kills + 1,
                         killed_at_done, index + 1, now.node, now.node_api, now.published,
                         now.outbox_depth, now.failovers);
            kills++;
        }
        if (index % 20 == 0)
            zclock_sleep (5);
    }
    cr_assert_eq (herald_agent_flush (publisher, 60000), HERALD_OK, "%s",
                  herald_agent_last_error ());
    cr_assert_eq (s_done (), EVENTS);
    uint64_t seen [EVENTS];
    for (size_t index = 0; index < EVENTS; index++) {
        cr_assert_eq (s_published.calls [index], 1, "publish %zu completed %zu times", index,
                      s_published.calls [index]);
        cr_assert_eq (s_published.results [index].err, HERALD_OK, "publish %zu: %s", index,
                      s_published.results [index].message);
        seen [index] = s_published.results [index].seq;
        for (size_t before = 0; before < index; before++)
            cr_assert_neq (seen [before], seen [index], "two publishes at seq %" PRIu64,
                           seen [index]);
    }
    //  The bursts (c.0) are stored too: the subscriber sees them all
    cr_assert_eq (au_wait_count (recorder, EVENTS + 3 * 50, 60000), EVENTS + 3 * 50);
    zclock_sleep (300);             //  a duplicate would show now
    char message [256];
    cr_assert_eq (au_check_once_in_order (recorder, message, sizeof message), 0, "%s",
                  message);
    cr_assert_eq (recorder->count, EVENTS + 3 * 50);
    herald_agent_stats_t stats;
    herald_agent_stats (publisher, &stats);
    cr_assert_eq (kills, 3);
    cr_assert_geq (stats.failovers, 3);
    cr_assert_geq (stats.leader_redirects, 1);
    cr_assert_str_neq (stats.node_api, s_cluster->nodes [killed]->api);
    herald_agent_stats (subscriber, &stats);
    cr_assert_geq (stats.failovers, 1, "the subscriber did not move");
    cr_assert_str_neq (stats.node_api, s_cluster->nodes [killed]->api);
    cr_log_info ("%zu of %d published were acknowledged at the last kill", killed_at_done,
                 EVENTS);
    herald_agent_destroy (&subscriber);
    herald_agent_destroy (&publisher);
    au_recorder_destroy (&recorder);
    tu_tmpdir_destroy (&pub_state);
    tu_tmpdir_destroy (&sub_state);
}
