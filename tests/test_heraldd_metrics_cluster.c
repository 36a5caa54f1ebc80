/*  =========================================================================
    test_heraldd_metrics_cluster - heraldd --metrics on a cluster of three
    real heraldd processes on 127.0.0.1 (issue 17)

    - a follower's /metrics says its role and its Raft figures as its
      STATUS does; cut off from the others (tests/raftproxy) its /readyz
      turns 503 "no leader known" while it is still scraped and the
      leader's stays 200; healed, 200 again;
    - a node started alone with --cluster-state new is alive (/healthz)
      and not ready ("not a cluster member yet") until the cluster forms;
    - the Grafana dashboard (docs/grafana-herald.json) names only metrics
      a node serves.
    =========================================================================
*/

#include <criterion/criterion.h>
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clusterutil.h"
#include "metricstest.h"

TestSuite (heraldd_metrics_cluster, .timeout = 180);

//  docs/grafana-herald.json names only metrics in text (a cluster node's
//  scrape: every family a standalone broker has, and the cluster's), but
//  security's counters, which need security on.
static void
s_check_dashboard (const pt_text_t *text)
{
    const char *srcdir = getenv ("HERALD_SRCDIR");
    char path [1024];
    snprintf (path, sizeof path, "%s/docs/grafana-herald.json", srcdir? srcdir: "..");
    FILE *file = fopen (path, "r");
    cr_assert_not_null (file, "%s: %s (HERALD_SRCDIR unset?)", path, strerror (errno));
    static char json [1 << 20];
    size_t len = fread (json, 1, sizeof json - 1, file);
    fclose (file);
    json [len] = 0;
    const char *security [] = { "herald_auth_refused_total", "herald_unauthorized_total",
                                "herald_rate_limited_total", NULL };
    size_t names = 0;
    for (const char *at = strstr (json, "herald_"); at; at = strstr (at + 1, "herald_")) {
        if (at > json && (isalnum ((unsigned char) at [-1]) || at [-1] == '-'))
            continue;                   //  inside another word ("herald-broker")
        char name [128];
        size_t used = 0;
        while ((islower ((unsigned char) at [used]) || at [used] == '_') && used < 127)
            used++;
        snprintf (name, sizeof name, "%.*s", (int) used, at);
        bool skip = false;
        for (size_t index = 0; security [index]; index++)
            skip = skip || strcmp (name, security [index]) == 0;
        bool found = false;
        for (size_t index = 0; !skip && !found && index < text->count; index++)
            found = strcmp (text->samples [index].name, name) == 0;
        for (size_t index = 0; !skip && !found && index < text->family_count; index++)
            found = strcmp (text->families [index].name, name) == 0;
        cr_assert (skip || found, "the dashboard uses %s, which /metrics does not serve", name);
        names++;
    }
    cr_assert_gt (names, 40, "only %zu metric names found in %s", names, path);
}

static cu_cluster_t *s_cluster;

static void
s_cluster_fini (void)
{
    cu_cluster_destroy (&s_cluster);
}

Test (heraldd_metrics_cluster, follower_cut_off, .fini = s_cluster_fini)
{
    cu_options_t options = { .election_ms = 500, .raft_heartbeat_ms = 50, .proxies = true };
    s_cluster = cu_cluster_new ("metrics", 3, &options);
    cr_assert_not_null (s_cluster);
    int ports [3];
    for (size_t index = 0; index < 3; index++) {
        ports [index] = bu_free_port ();
        cr_assert_gt (ports [index], 0);
        snprintf (s_cluster->nodes [index].metrics, sizeof s_cluster->nodes [index].metrics,
                  "127.0.0.1:%d", ports [index]);
    }
    char why [CU_WHY_MAX];
    int leader = cu_cluster_start (s_cluster, 30000, why, sizeof why);
    cr_assert_geq (leader, 0, "%s", why);
    for (size_t index = 0; index < 3; index++)
        free (mt_wait_ready (ports [index], 200, "ready"));
    size_t follower = (size_t) (leader + 1) % 3;
    //  The follower's figures: its role and Raft indexes, as its STATUS says
    pt_text_t text;
    mt_scrape (ports [follower], false, &text);
    cu_status_t status;
    cr_assert_eq (cu_status (s_cluster, follower, &status, 5000), 0);
    bool role = false;
    for (size_t index = 0; index < text.count; index++)
        if (strcmp (text.samples [index].name, "herald_node_info") == 0)
            role = strstr (text.samples [index].labels, "role=\"follower\"")
                && strstr (text.samples [index].labels, "cluster_state=\"member\"");
    cr_assert (role, "herald_node_info does not say role follower, cluster_state member");
    cr_assert_eq (mt_value (&text, "herald_term", ""), status.term);
    cr_assert_eq (mt_value (&text, "herald_voters", ""), 3);
    cr_assert (pt_find (&text, "herald_commit_index", "")
               && pt_find (&text, "herald_applied_index", ""));
    pt_text_fini (&text);
    //  Every name the Grafana dashboard uses is one a node serves
    mt_scrape (ports [leader], false, &text);
    s_check_dashboard (&text);
    pt_text_fini (&text);
    //  Cut off: not ready, saying why; the leader keeps its majority
    cr_assert_eq (cu_isolate (s_cluster, follower, RP_DROP), 0);
    free (mt_wait_ready (ports [follower], 503, "no leader known"));
    //  Not ready, and still scraped: its figures say why
    mt_scrape (ports [follower], false, &text);
    bool no_leader = false;
    for (size_t index = 0; index < text.count; index++)
        if (strcmp (text.samples [index].name, "herald_node_info") == 0)
            no_leader = strstr (text.samples [index].labels, "leader=\"\"") != NULL;
    cr_assert (no_leader, "the cut-off node's herald_node_info names a leader");
    pt_text_fini (&text);
    pt_response_t response;
    mt_get (ports [leader], "/readyz", NULL, &response);
    cr_assert_eq (response.status, 200, "the leader with its majority: %s", response.body);
    pt_response_fini (&response);
    //  Healed: ready again
    cr_assert_eq (cu_isolate (s_cluster, follower, RP_PASS), 0);
    free (mt_wait_ready (ports [follower], 200, "ready"));
}

//  A node started alone with --cluster-state new waits for the others:
//  alive, not ready, saying why; ready once the cluster has formed.
Test (heraldd_metrics_cluster, bootstrapping, .fini = s_cluster_fini)
{
    cu_options_t options = { .election_ms = 500, .raft_heartbeat_ms = 50 };
    s_cluster = cu_cluster_new ("metrics-boot", 3, &options);
    cr_assert_not_null (s_cluster);
    int ports [3];
    for (size_t index = 0; index < 3; index++) {
        ports [index] = bu_free_port ();
        cr_assert_gt (ports [index], 0);
        snprintf (s_cluster->nodes [index].metrics, sizeof s_cluster->nodes [index].metrics,
                  "127.0.0.1:%d", ports [index]);
    }
    cr_assert_eq (cu_node_spawn (s_cluster, 0, "new"), 0);
    cr_assert_eq (cu_node_wait_up (s_cluster, 0, 30000), 0);
    pt_response_t response;
    mt_get (ports [0], "/healthz", NULL, &response);
    cr_assert_eq (response.status, 200);
    pt_response_fini (&response);
    mt_get (ports [0], "/readyz", NULL, &response);
    cr_assert_eq (response.status, 503, "%s", response.body);
    cr_assert_str_eq (response.body, "not ready: not a cluster member yet: cluster_state "
                      "bootstrapping\n");
    pt_response_fini (&response);
    for (size_t index = 1; index < 3; index++)
        cr_assert_eq (cu_node_spawn (s_cluster, index, "new"), 0);
    cr_assert_geq (cu_wait_leader (s_cluster, 0, 30000), 0, "no leader");
    for (size_t index = 0; index < 3; index++)
        free (mt_wait_ready (ports [index], 200, "ready"));
}
