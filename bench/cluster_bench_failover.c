/*  =========================================================================
    cluster_bench_failover - running the bench's cluster, and failovers

    The cluster side of cluster_bench (see cluster_bench.c for the design):
    start and stop three heraldd nodes with tests/brokerutil.c's cluster
    helpers, wait for them to agree, and measure failovers the way a
    client sees them: from the signal to the leader to the first ACK from
    another node.
    =========================================================================
*/

#include "cluster_bench.h"
#include "herald.h"

#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define S_PROBE_MS          5       //  a PUBLISH to every other node this often
#define S_TRY_MS            100     //  the client's wait for one reply
#define S_FAILOVER_S        30      //  a failover that takes longer is a problem
#define S_CONVERGE_MS       120000  //  restarted node back in step

//  ---------------------------------------------------------------------
//  The cluster

int
cb_cluster_up (cb_cluster_t *self, const char *tag, unsigned election_ms,
               unsigned heartbeat_ms)
{
    memset (self, 0, sizeof *self);
    //  0: heraldd's defaults (no flag given), named here for the labels;
    //  keep them equal to broker/herald_config.c's
    self->election_ms = election_ms? election_ms: CB_DEFAULT_ELECTION_MS;
    self->heartbeat_ms = heartbeat_ms? heartbeat_ms: CB_DEFAULT_HEARTBEAT_MS;
    char election [16], heartbeat [16];
    snprintf (election, sizeof election, "%u", self->election_ms);
    snprintf (heartbeat, sizeof heartbeat, "%u", self->heartbeat_ms);
    const char *const timeouts [] = {
        "--election-ms", election, "--raft-heartbeat-ms", heartbeat, NULL
    };
    self->cluster = bu_cluster_new (tag, CB_NODES, election_ms || heartbeat_ms? timeouts: NULL);
    if (!self->cluster) {
        fprintf (stderr, "cluster_bench: cannot set up the nodes (%s)\n", tag);
        return -1;
    }
    for (size_t index = 0; bb_heraldd && index < CB_NODES; index++) {
        bu_broker_t *node = self->cluster->nodes [index];
        free (node->binary);
        node->binary = strdup (bb_heraldd);
        if (!node->binary) {
            bu_cluster_destroy (&self->cluster);
            return -1;
        }
    }
    if (bu_cluster_start (self->cluster, CB_START_MS) != 0
    ||  cb_leader (self, CB_START_MS) < 0) {
        fprintf (stderr, "cluster_bench: the %s nodes did not start and elect a leader "
                 "(is broker/heraldd built? or --heraldd PATH)\n", tag);
        bb_problem ("cluster %s did not start and elect a leader", tag);
        cb_cluster_logs (self);
        bu_cluster_destroy (&self->cluster);
        return -1;
    }
    for (size_t index = 0; index < CB_NODES; index++)
        fprintf (stderr, "cluster_bench: %s %s pid %d api %s fanout %s\n", tag,
                 self->cluster->names [index], (int) self->cluster->nodes [index]->pid,
                 self->cluster->nodes [index]->api, self->cluster->nodes [index]->fanout);
    return 0;
}

void
cb_cluster_down (cb_cluster_t *self)
{
    if (!self->cluster)
        return;
    for (size_t index = 0; index < CB_NODES; index++) {
        bu_broker_t *node = self->cluster->nodes [index];
        if (node->pid <= 0)
            continue;
        bool killed = bu_broker_stop (node, CB_STOP_MS) != 0;
        if (killed || !WIFEXITED (node->status) || WEXITSTATUS (node->status) != 0) {
            bb_problem ("node %s %s", self->cluster->names [index],
                        killed? "ignored SIGTERM and was SIGKILLed": "stopped with an error");
            char text [2048];
            bu_broker_log_tail (node, text, sizeof text);
            fprintf (stderr, "cluster_bench: --- end of %s ---\n%s\n", node->log, text);
        }
    }
    bu_cluster_destroy (&self->cluster);
}

void
cb_cluster_logs (cb_cluster_t *self)
{
    for (size_t index = 0; self->cluster && index < self->cluster->count; index++) {
        char text [2048];
        bu_broker_log_tail (self->cluster->nodes [index], text, sizeof text);
        fprintf (stderr, "cluster_bench: --- end of %s ---\n%s\n",
                 self->cluster->nodes [index]->log, text);
    }
}

int
cb_leader (cb_cluster_t *self, int timeout_ms)
{
    return bu_cluster_leader (self->cluster, timeout_ms);
}

int
cb_converged (cb_cluster_t *self, int timeout_ms)
{
    double deadline = bench_now () + timeout_ms / 1000.0;
    while (!bb_interrupted) {
        bool same = true;
        bu_node_status_t first = { 0 };
        bool have = false;
        for (size_t index = 0; index < CB_NODES && same; index++) {
            bu_broker_t *node = self->cluster->nodes [index];
            if (node->pid <= 0)
                continue;
            bu_node_status_t status;
            if (bu_node_status (node->api, &status, 500) != 0)
                same = false;
            else
            if (!have) {
                first = status;
                have = true;
            }
            else
                same = status.head == first.head
                    && status.applied_index == first.applied_index;
        }
        if (same && have) {
            int leader = cb_leader (self, 2000);
            if (leader >= 0)
                return leader;
        }
        if (bench_now () > deadline)
            break;
        zclock_sleep (20);
    }
    if (!bb_interrupted)
        bb_problem ("the cluster did not converge (same head everywhere) within %d ms",
                    timeout_ms);
    return -1;
}

int
cb_try_publish (const char *api, int timeout_ms, char *leader, size_t size)
{
    static atomic_uint_fast64_t rid;    //  the failover's client is a thread
    if (leader && size)
        leader [0] = 0;
    zsock_t *dealer = bu_dealer_new (api);
    if (!dealer)
        return -1;
    bu_event_t event;
    bu_event_init (&event, "bench.failover", "failover probe");
    msgpack_sbuffer sbuf;
    msgpack_sbuffer_init (&sbuf);
    bu_pack_publish (&sbuf, atomic_fetch_add (&rid, 1) + 1, &event, 1);
    bu_send_sbuf (dealer, "PUBLISH", &sbuf);
    msgpack_sbuffer_destroy (&sbuf);
    bu_reply_t reply;
    memset (&reply, 0, sizeof reply);
    int rc = -1;
    if (bu_recv_reply (dealer, &reply, timeout_ms) == 0 && reply.rc == HERALD_OK) {
        if (reply.type == HERALD_MSG_ACK)
            rc = 1;
        else
        if (reply.type == HERALD_MSG_ERROR && reply.body.error.code == HERALD_ERR_NOT_LEADER) {
            rc = 0;
            if (leader && size && reply.body.error.leader.ptr)
                snprintf (leader, size, "%.*s", (int) reply.body.error.leader.len,
                          reply.body.error.leader.ptr);
        }
    }
    bu_reply_fini (&reply);
    zsock_destroy (&dealer);
    return rc;
}

//  ---------------------------------------------------------------------
//  Failover

//  The moment the cluster takes writes again: every node but old (the one
//  signalled) is sent a one-event PUBLISH every S_PROBE_MS on a DEALER of
//  its own, and the first ACK wins.  A client that must find the leader
//  (the agent: follow not_leader, else the next node) adds its own wait;
//  this is what the cluster offers it.  watch, when set, is the signalled
//  node: its exit is reaped here and its time put in *exited.  Returns the
//  time of the ACK, or -1 after S_FAILOVER_S.
static double
s_first_ack (cb_cluster_t *self, int old, double since, bu_broker_t *watch, double *exited)
{
    zsock_t *dealer [CB_NODES] = { NULL };
    zmq_pollitem_t items [CB_NODES];
    int count = 0;
    for (int index = 0; index < CB_NODES; index++) {
        if (index == old)
            continue;
        dealer [count] = bu_dealer_new (self->cluster->nodes [index]->api);
        if (!dealer [count])
            break;
        items [count] = (zmq_pollitem_t) { zsock_resolve (dealer [count]), 0, ZMQ_POLLIN, 0 };
        count++;
    }
    double acked = -1, next_send = 0;
    uint64_t rid = 0;
    msgpack_sbuffer sbuf;
    msgpack_sbuffer_init (&sbuf);
    for (int rounds = 0; rounds < 1000000 && acked < 0 && !bb_interrupted; rounds++) {
        double now = bench_now ();
        if (now - since > S_FAILOVER_S)
            break;
        if (watch && watch->pid > 0
        &&  waitpid (watch->pid, &watch->status, WNOHANG) == watch->pid) {
            watch->pid = 0;
            *exited = now;
        }
        if (now >= next_send) {
            rid++;
            for (int d = 0; d < count; d++) {
                bu_event_t event;
                bu_event_init (&event, "bench.failover", "failover probe");
                bu_pack_publish (&sbuf, rid, &event, 1);
                bu_send_sbuf (dealer [d], "PUBLISH", &sbuf);
            }
            next_send = now + S_PROBE_MS / 1000.0;
        }
        if (zmq_poll (items, count, 1) <= 0)
            continue;
        for (int d = 0; d < count && acked < 0; d++) {
            if (!(items [d].revents & ZMQ_POLLIN))
                continue;
            bu_reply_t reply;
            memset (&reply, 0, sizeof reply);
            if (bu_recv_reply (dealer [d], &reply, 0) == 0 && reply.rc == HERALD_OK
            &&  reply.type == HERALD_MSG_ACK)
                acked = bench_now ();
            bu_reply_fini (&reply);
        }
    }
    msgpack_sbuffer_destroy (&sbuf);
    for (int d = 0; d < count; d++)
        zsock_destroy (&dealer [d]);
    return acked;
}

//  One client as the agent works: PUBLISH to the node it believes leads,
//  follow the api a not_leader names, else the next node; a try waits
//  S_TRY_MS for its reply.  It starts on the old leader, as a client that
//  was publishing there would.
typedef struct {
    cb_cluster_t *cluster;
    int old;
    double since;
    double acked;                       //  out: time of the first ACK, or -1
} s_client_t;

static void *
s_client (void *args)
{
    s_client_t *self = (s_client_t *) args;
    self->acked = -1;
    size_t target = (size_t) self->old;
    for (int tries = 0; tries < 100000 && !bb_interrupted; tries++) {
        if (bench_now () - self->since > S_FAILOVER_S)
            break;
        char leader [256];
        int rc = cb_try_publish (self->cluster->cluster->nodes [target]->api, S_TRY_MS,
                                 leader, sizeof leader);
        if (rc == 1 && (int) target != self->old) {
            self->acked = bench_now ();
            break;
        }
        size_t next = (target + 1) % CB_NODES;
        for (size_t index = 0; rc == 0 && *leader && index < CB_NODES; index++)
            if (index != target && streq (self->cluster->cluster->nodes [index]->api, leader))
                next = index;
        if (rc >= 0)                    //  an answer at once: do not spin on it
            zclock_sleep (2);
        target = next;
    }
    return NULL;
}

void
cb_failover (cb_cluster_t *self, bool graceful, int kills, cb_failover_t *result)
{
    memset (result, 0, sizeof *result);
    bb_samples_init (&result->gap, 10000);
    bb_samples_init (&result->exit, 10000);
    bb_samples_init (&result->client, 10000);
    result->planned = kills;
    const char *what = graceful? "SIGTERM": "kill -9";
    for (int kill_no = 0; kill_no < kills && !bb_interrupted; kill_no++) {
        int leader = cb_converged (self, S_CONVERGE_MS);
        if (leader < 0)
            break;
        bu_broker_t *node = self->cluster->nodes [leader];
        if (cb_try_publish (node->api, 5000, NULL, 0) != 1) {
            bb_problem ("%s: the leader %s did not ACK before the signal", what,
                        self->cluster->names [leader]);
            break;
        }
        //  A random moment (not in step with the heartbeats), and one
        //  PUBLISH in flight when the signal comes
        zclock_sleep (rand () % 200);
        zsock_t *inflight = bu_dealer_new (node->api);
        bu_event_t event;
        bu_event_init (&event, "bench.failover", "in flight");
        msgpack_sbuffer sbuf;
        msgpack_sbuffer_init (&sbuf);
        bu_pack_publish (&sbuf, 1, &event, 1);
        if (inflight)
            bu_send_sbuf (inflight, "PUBLISH", &sbuf);
        msgpack_sbuffer_destroy (&sbuf);
        double signalled = bench_now ();
        pid_t pid = node->pid;
        if (graceful)
            kill (pid, SIGTERM);
        else
            bu_broker_kill (node);          //  SIGKILL and reap
        s_client_t client = { self, leader, signalled, -1 };
        pthread_t thread;
        bool client_runs = pthread_create (&thread, NULL, s_client, &client) == 0;
        double exited = 0;
        double acked = s_first_ack (self, leader, signalled, graceful? node: NULL, &exited);
        if (client_runs) {
            pthread_join (thread, NULL);
            if (client.acked > 0)
                bb_samples_add (&result->client, client.acked - signalled);
            else
                bb_problem ("%s #%d: the client found no node that ACKs within %d s", what,
                            kill_no + 1, S_FAILOVER_S);
        }
        zsock_destroy (&inflight);
        if (graceful) {
            if (node->pid > 0 && bu_broker_wait (node, CB_STOP_MS) == 0)
                exited = bench_now ();
            if (node->pid > 0) {
                bu_broker_kill (node);
                bb_problem ("SIGTERM: the leader %s did not exit within %d ms",
                            self->cluster->names [leader], CB_STOP_MS);
            }
            else {
                bb_samples_add (&result->exit, exited - signalled);
                if (!WIFEXITED (node->status) || WEXITSTATUS (node->status) != 0)
                    bb_problem ("SIGTERM: the leader %s exited with status %d",
                                self->cluster->names [leader], node->status);
            }
        }
        if (acked < 0) {
            bb_problem ("%s #%d: no other node ACKed within %d s", what, kill_no + 1,
                        S_FAILOVER_S);
            cb_cluster_logs (self);
            break;
        }
        bb_samples_add (&result->gap, acked - signalled);
        result->done++;
        fprintf (stderr, "cluster_bench: %s #%d of %s (pid %d): first ACK from another node "
                 "after %.0f ms (the client's after %.0f ms)\n", what, kill_no + 1,
                 self->cluster->names [leader], (int) pid, (acked - signalled) * 1000,
                 client.acked > 0? (client.acked - signalled) * 1000: -1);
        if (bu_broker_restart (node, CB_START_MS) != 0) {
            bb_problem ("%s: %s did not restart", what, self->cluster->names [leader]);
            cb_cluster_logs (self);
            break;
        }
    }
}

void
cb_failover_fini (cb_failover_t *self)
{
    bb_samples_fini (&self->gap);
    bb_samples_fini (&self->exit);
    bb_samples_fini (&self->client);
}
