/*  =========================================================================
    test_herald_metrics_unit - herald_metrics's readiness rules, in one
    process, over real HTTP on 127.0.0.1, against STATUS bodies made by hand

    The heraldd tests (test_heraldd_metrics*.c) flip /readyz with real
    brokers where a state can be held: a full disk, a cut-off follower, a
    node bootstrapping alone.  The states a real broker passes through in a
    few hundred ms (stopping, failed) or only by chance (a follower
    lagging behind its commit index) are checked here: a thread stands in
    for the broker's loop, answering each STATUS request on the loop's end
    of the channel with the body the test sets, and the test reads
    /readyz and /metrics as an orchestrator would.
    =========================================================================
*/

#include <criterion/criterion.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <czmq.h>

#include "brokerutil.h"
#include "herald_metrics.h"
#include "metricstest.h"

//  The stand-in loop: answers each request with the body of s_pack,
//  unless s_silent
static pthread_mutex_t s_mutex = PTHREAD_MUTEX_INITIALIZER;
static void (*s_pack) (msgpack_packer *pk, size_t *count);
static atomic_bool s_silent, s_stop;
static atomic_int s_requests;

static void
s_str (msgpack_packer *pk, const char *text)
{
    msgpack_pack_str (pk, strlen (text));
    msgpack_pack_str_body (pk, text, strlen (text));
}

static void
s_uint (msgpack_packer *pk, const char *key, uint64_t value)
{
    s_str (pk, key);
    msgpack_pack_uint64 (pk, value);
}

static void *
s_loop (void *arg)
{
    zsock_t *sock = (zsock_t *) arg;
    while (!atomic_load (&s_stop)) {
        zmq_pollitem_t item = { zsock_resolve (sock), 0, ZMQ_POLLIN, 0 };
        if (zmq_poll (&item, 1, 20) <= 0)
            continue;
        zframe_t *frame = zframe_recv (sock);
        if (!frame)
            break;
        atomic_fetch_add (&s_requests, 1);
        if (zframe_size (frame) == 8 && !atomic_load (&s_silent)) {
            uint64_t rid = 0;
            for (int at = 0; at < 8; at++)
                rid = (rid << 8) | zframe_data (frame) [at];
            //  The body: rid, then the test's pairs (counted as packed)
            msgpack_sbuffer pairs;
            msgpack_sbuffer_init (&pairs);
            msgpack_packer pk;
            msgpack_packer_init (&pk, &pairs, msgpack_sbuffer_write);
            size_t count = 0;
            pthread_mutex_lock (&s_mutex);
            s_pack (&pk, &count);
            pthread_mutex_unlock (&s_mutex);
            msgpack_sbuffer body;
            msgpack_sbuffer_init (&body);
            msgpack_packer_init (&pk, &body, msgpack_sbuffer_write);
            msgpack_pack_map (&pk, count + 1);
            s_uint (&pk, "rid", rid);
            msgpack_sbuffer_write (&body, pairs.data, pairs.size);
            zmq_send (zsock_resolve (sock), body.data, body.size, ZMQ_DONTWAIT);
            msgpack_sbuffer_destroy (&body);
            msgpack_sbuffer_destroy (&pairs);
        }
        zframe_destroy (&frame);
    }
    return NULL;
}

static herald_metrics_t *s_metrics;
static pthread_t s_thread;
static bool s_running;
static int s_port;

static void
s_body_standalone (msgpack_packer *pk, size_t *count)
{
    s_str (pk, "role");
    s_str (pk, "standalone");
    s_uint (pk, "disk_low", 0);
    s_uint (pk, "disk_free_bytes", 10ULL << 30);
    s_uint (pk, "min_free_bytes", 1ULL << 30);
    s_uint (pk, "disk_reserve_bytes", 0);
    *count = 5;
}

static void
s_set_body (void (*pack) (msgpack_packer *, size_t *))
{
    pthread_mutex_lock (&s_mutex);
    s_pack = pack;
    pthread_mutex_unlock (&s_mutex);
}

static void
s_setup (void)
{
    s_set_body (s_body_standalone);
    atomic_store (&s_silent, false);
    atomic_store (&s_stop, false);
    atomic_store (&s_requests, 0);
    s_port = bu_free_port ();
    cr_assert_gt (s_port, 0);
    char address [32];
    snprintf (address, sizeof address, "127.0.0.1:%d", s_port);
    herald_error_t err = { 0 };
    s_metrics = herald_metrics_new (address, 10000, &err);
    cr_assert_not_null (s_metrics, "%s", err.message);
    cr_assert_eq (pthread_create (&s_thread, NULL, s_loop,
                                  herald_metrics_loop_sock (s_metrics)), 0);
    s_running = true;
    cr_assert_eq (herald_metrics_start (s_metrics, &err), 0, "%s", err.message);
}

static void
s_teardown (void)
{
    if (s_running) {
        atomic_store (&s_stop, true);
        pthread_join (s_thread, NULL);
        s_running = false;
    }
    herald_metrics_destroy (&s_metrics);
}

TestSuite (metrics_unit, .init = s_setup, .fini = s_teardown, .timeout = 60);

//  ---------------------------------------------------------------------
//  The free-space guard

static void
s_body_disk_low (msgpack_packer *pk, size_t *count)
{
    s_uint (pk, "disk_low", 1);
    s_uint (pk, "disk_free_bytes", 812ULL << 20);
    s_uint (pk, "min_free_bytes", 1ULL << 30);
    s_uint (pk, "disk_reserve_bytes", 64ULL << 20);
    *count = 4;
}

static void
s_body_guard_off_full (msgpack_packer *pk, size_t *count)
{
    s_uint (pk, "disk_low", 0);
    s_uint (pk, "disk_free_bytes", 3ULL << 20);
    s_uint (pk, "min_free_bytes", 0);
    *count = 3;
}

Test (metrics_unit, disk)
{
    free (mt_wait_ready (s_port, 200, "ready"));
    s_set_body (s_body_disk_low);
    char *body = mt_wait_ready (s_port, 503, "disk space low");
    cr_assert_str_eq (body, "not ready: disk space low: 812.0 MiB free on the data directory's "
                      "file system, below min-free 1.0 GiB plus 64.0 MiB of memtables; PUBLISH "
                      "is refused\n");
    free (body);
    s_set_body (s_body_guard_off_full);
    free (mt_wait_ready (s_port, 503, "disk nearly full: 3.0 MiB free"));
    s_set_body (s_body_standalone);
    free (mt_wait_ready (s_port, 200, "ready"));
}

//  ---------------------------------------------------------------------
//  A cluster node

static uint64_t s_applied;          //  the lag case's applied index

static void
s_body_member (msgpack_packer *pk, size_t *count, const char *state, const char *leader)
{
    s_str (pk, "role");
    s_str (pk, "follower");
    s_str (pk, "cluster_state");
    s_str (pk, state);
    s_str (pk, "leader");
    if (leader)
        s_str (pk, leader);
    else
        msgpack_pack_nil (pk);
    s_uint (pk, "term", 4);
    s_uint (pk, "commit_index", 20000);
    s_uint (pk, "applied_index", s_applied);
    s_uint (pk, "disk_low", 0);
    *count = 7;
}

static void
s_body_joining (msgpack_packer *pk, size_t *count)
{
    s_body_member (pk, count, "joining", NULL);
}

static void
s_body_no_leader (msgpack_packer *pk, size_t *count)
{
    s_body_member (pk, count, "member", NULL);
}

static void
s_body_follower (msgpack_packer *pk, size_t *count)
{
    s_body_member (pk, count, "member", "n1");
}

Test (metrics_unit, cluster)
{
    s_applied = 20000;
    s_set_body (s_body_joining);
    free (mt_wait_ready (s_port, 503, "not a cluster member yet: cluster_state joining"));
    s_set_body (s_body_no_leader);
    free (mt_wait_ready (s_port, 503, "no leader known"));
    s_set_body (s_body_follower);
    free (mt_wait_ready (s_port, 200, "ready"));
    //  More than --ready-lag (10000) behind: lagging; at the bound: ready
    pthread_mutex_lock (&s_mutex);
    s_applied = 5000;
    pthread_mutex_unlock (&s_mutex);
    char *body = mt_wait_ready (s_port, 503, "lagging");
    cr_assert_str_eq (body, "not ready: lagging: applied index 5000 is 15000 entries behind "
                      "commit index 20000 (--ready-lag 10000)\n");
    free (body);
    pthread_mutex_lock (&s_mutex);
    s_applied = 10000;
    pthread_mutex_unlock (&s_mutex);
    free (mt_wait_ready (s_port, 200, "ready"));
    //  Its figures meanwhile: the role and Raft state as labels and gauges
    pt_text_t text;
    mt_scrape (s_port, false, &text);
    cr_assert_not_null (pt_find (&text, "herald_node_info",
                                 "role=\"follower\",cluster_state=\"member\",leader=\"n1\""));
    cr_assert_eq (mt_value (&text, "herald_term", ""), 4);
    cr_assert_eq (mt_value (&text, "herald_commit_index", "") - mt_value (&text,
                  "herald_applied_index", ""), 10000);
    pt_text_fini (&text);
}

//  ---------------------------------------------------------------------
//  The broker stopping, failed, or not answering

Test (metrics_unit, stopping_and_failed)
{
    free (mt_wait_ready (s_port, 200, "ready"));
    herald_metrics_set_stopping (s_metrics);
    pt_response_t response;
    mt_get (s_port, "/readyz", NULL, &response);
    cr_assert_eq (response.status, 503);
    cr_assert_str_eq (response.body, "not ready: the broker is stopping\n");
    pt_response_fini (&response);
    //  Its figures are still served while the loop answers
    mt_get (s_port, "/metrics", NULL, &response);
    cr_assert_eq (response.status, 200);
    pt_response_fini (&response);
    mt_get (s_port, "/healthz", NULL, &response);
    cr_assert_eq (response.status, 200);
    pt_response_fini (&response);
    //  Failed wins over stopping, and is said without asking the loop
    atomic_store (&s_silent, true);
    herald_metrics_set_failed (s_metrics, "the disk is full");
    const char *paths [] = { "/readyz", "/metrics" };
    for (size_t index = 0; index < 2; index++) {
        mt_get (s_port, paths [index], NULL, &response);
        cr_assert_eq (response.status, 503, "%s: %d", paths [index], response.status);
        cr_assert (strstr (response.body, "the broker failed (the disk is full) and is "
                           "stopping; see its log"), "%s: %s", paths [index], response.body);
        pt_response_fini (&response);
    }
    mt_get (s_port, "/healthz", NULL, &response);
    cr_assert_eq (response.status, 200, "the process still serves");
    pt_response_fini (&response);
}

Test (metrics_unit, loop_silent)
{
    free (mt_wait_ready (s_port, 200, "ready"));
    atomic_store (&s_silent, true);
    //  Past the 100 ms reuse of the last answer: asked again, no answer
    pt_response_t response;
    mt_get (s_port, "/healthz", NULL, &response);
    cr_assert_eq (response.status, 200, "alive whatever the loop does");
    pt_response_fini (&response);
    int before = atomic_load (&s_requests);
    for (int tries = 0; tries < 100 && atomic_load (&s_requests) == before; tries++) {
        mt_get (s_port, "/readyz", NULL, &response);
        if (atomic_load (&s_requests) == before)
            pt_response_fini (&response);
        zclock_sleep (20);
    }
    cr_assert_gt (atomic_load (&s_requests), before, "the endpoint never asked the loop again");
    cr_assert_eq (response.status, 503);
    cr_assert_str_eq (response.body, "not ready: the broker's loop did not answer STATUS "
                      "within 2000 ms\n");
    pt_response_fini (&response);
    mt_get (s_port, "/metrics", NULL, &response);
    cr_assert_eq (response.status, 503);
    pt_response_fini (&response);
    //  Answering again: ready again
    atomic_store (&s_silent, false);
    free (mt_wait_ready (s_port, 200, "ready"));
}
