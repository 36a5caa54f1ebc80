/*  =========================================================================
    test_herald_commit_ops - herald_commit_op: a group's op through the
    group commit (issue 15)

    The broker's group commit in this process, on real stores: standalone
    (its writer thread) and on a three-node Raft cluster (raftnodes.h).
    Each op's done callback runs exactly once, with the op's result once
    applied, and otherwise with why not: the queue full (overloaded), the
    queue refused, the unit destroyed, a node that does not lead or has
    no Raft node yet (not_leader), the Raft node gone with the op in
    flight, or the leader cut off from the others with the op in flight
    (not_leader, outcome unknown).  Ops queued beside a PUBLISH go
    in the same proposal, in arrival order.
    =========================================================================
*/

#include <criterion/criterion.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "raftnodes.h"
#include "groupops.h"
#include "herald_commit.h"
#include "tcpproxy.h"

TestSuite (commit_ops, .init = s_setup, .fini = s_teardown, .timeout = 120);

//  What one op's done saw
typedef struct {
    int calls;
    herald_err rc;
    uint8_t *result;
    size_t result_len;
    char message [HERALD_ERROR_MESSAGE_MAX];
} s_done_t;

static void
s_done (void *arg, herald_err rc, const uint8_t *result, size_t result_len,
        const herald_error_t *err)
{
    s_done_t *done = (s_done_t *) arg;
    done->calls++;
    done->rc = rc;
    if (result) {
        done->result = malloc (result_len);
        memcpy (done->result, result, result_len);
        done->result_len = result_len;
    }
    else
        cr_assert_eq (rc == HERALD_OK, false, "OK without a result");
    snprintf (done->message, sizeof (done->message), "%s", err? err->message: "");
}

//  The broker objects a commit unit borrows
typedef struct {
    herald_config_t *config;
    herald_disk_t *disk;
    herald_reply_t reply;
    zsock_t *router;
    zsock_t *pub;
    herald_commit_t *commit;
} s_unit_t;

static void
s_unit_new (s_unit_t *unit, int node, bool clustered)
{
    memset (unit, 0, sizeof (*unit));
    unit->config = herald_config_new ();
    cr_assert_not_null (unit->config);
    unit->disk = herald_disk_new (herald_store_path (s_nodes [node].store),
                                  (herald_space_t) { 0 });
    cr_assert_not_null (unit->disk);
    herald_reply_init (&unit->reply);
    char endpoint [64];
    snprintf (endpoint, sizeof (endpoint), "inproc://commit-ops-api-%d", node);
    unit->router = zsock_new_router (endpoint);
    snprintf (endpoint, sizeof (endpoint), "inproc://commit-ops-pub-%d", node);
    unit->pub = zsock_new_pub (endpoint);
    cr_assert (unit->router && unit->pub);
    unit->reply.router = unit->router;
    unit->commit = clustered
        ? herald_commit_new_cluster (unit->config, s_nodes [node].store, unit->disk,
                                     &unit->reply, unit->pub)
        : herald_commit_new (unit->config, s_nodes [node].store, unit->disk, &unit->reply,
                             unit->pub);
    cr_assert_not_null (unit->commit);
}

static void
s_unit_destroy (s_unit_t *unit)
{
    herald_commit_destroy (&unit->commit);
    herald_reply_destroy (&unit->reply);
    zsock_destroy (&unit->router);
    zsock_destroy (&unit->pub);
    herald_disk_destroy (&unit->disk);
    herald_config_destroy (&unit->config);
}

static void
s_op (s_unit_t *unit, msgpack_sbuffer *op, s_done_t *done)
{
    herald_commit_op (unit->commit, (const uint8_t *) op->data, op->size, s_done, done);
    msgpack_sbuffer_destroy (op);       //  copied
}

//  Turn the loop's crank until done was called (start, finish), bounded
static void
s_turn_until (s_unit_t *unit, s_done_t *done, int64_t timeout_ms)
{
    int64_t deadline = zclock_mono () + timeout_ms;
    while (done->calls == 0 && zclock_mono () < deadline) {
        herald_commit_start (unit->commit);
        //  Standalone: waits for the commit in flight; a cluster node:
        //  takes the records Raft has ready
        if (herald_commit_waiting (unit->commit)
        &&  herald_commit_finish (unit->commit) != 0)
            cr_assert_fail ("the store failed: %s", herald_commit_stop_reason (unit->commit));
        if (done->calls == 0)
            zclock_sleep (5);
    }
    cr_assert_eq (done->calls, 1, "done not called in %" PRId64 " ms", timeout_ms);
}

static bool
s_ok (s_done_t *done)
{
    go_result_t result;
    go_result_init (&result, done->result, done->result_len);
    bool ok = go_ok (&result);
    go_result_fini (&result);
    return ok;
}

static const char *const s_prefixes [] = { "orders." };

Test (commit_ops, standalone_done_once_on_every_path)
{
    s_unit_t unit;
    s_unit_new (&unit, 0, false);
    s_done_t create = { 0 }, grant = { 0 }, bad = { 0 };
    msgpack_sbuffer op;
    go_create (&op, "g", s_prefixes, 1, 2, 1, 5);
    s_op (&unit, &op, &create);
    uint64_t parts [] = { 0, 1 };
    go_grant (&op, "g", "m", parts, 2);
    s_op (&unit, &op, &grant);
    go_delete (&op, "nobody");
    s_op (&unit, &op, &bad);
    cr_assert_eq (create.calls, 0, "never answered from herald_commit_op");
    cr_assert_eq (herald_commit_queued (unit.commit), 3);
    s_turn_until (&unit, &bad, 10000);
    cr_assert_eq (create.calls, 1);
    cr_assert_eq (grant.calls, 1);
    cr_assert_eq (create.rc, HERALD_OK);
    cr_assert (s_ok (&create));
    cr_assert (s_ok (&grant), "the grant saw the create of the same commit");
    cr_assert_eq (bad.rc, HERALD_OK, "a refused op is a result, not an error");
    cr_assert_not (s_ok (&bad));
    herald_group_record_t record;
    cr_assert_eq (herald_store_group_get (s_nodes [0].store, "g", &record, NULL), HERALD_OK);
    cr_assert_eq (record.epoch, 2);
    herald_group_record_fini (&record);

    //  The queue refused: once, with the refusal
    s_done_t refused = { 0 };
    go_reset (&op, "g", 1);
    s_op (&unit, &op, &refused);
    cr_assert_eq (herald_commit_refuse_queue (unit.commit, HERALD_ERR_OVERLOADED, "stopping",
                                              0), 1);
    cr_assert_eq (refused.calls, 1);
    cr_assert_eq (refused.rc, HERALD_ERR_OVERLOADED);
    cr_assert_str_eq (refused.message, "stopping");

    //  The queue full: the op behind it is refused in its turn
    unit.config->max_queued = 1;
    s_done_t first = { 0 }, second = { 0 };
    go_reset (&op, "g", 3);
    s_op (&unit, &op, &first);
    go_reset (&op, "g", 4);
    s_op (&unit, &op, &second);
    s_turn_until (&unit, &first, 10000);
    cr_assert_eq (second.calls, 1);
    cr_assert_eq (second.rc, HERALD_ERR_OVERLOADED);
    cr_assert_eq (first.rc, HERALD_OK);
    cr_assert (s_ok (&first));
    cr_assert_eq (herald_store_group_get (s_nodes [0].store, "g", &record, NULL), HERALD_OK);
    cr_assert_eq (record.positions [0].committed, 2, "only the first reset was applied");
    herald_group_record_fini (&record);

    //  Destroyed with an op queued: done once, overloaded
    s_done_t last = { 0 };
    go_delete (&op, "g");
    s_op (&unit, &op, &last);
    s_unit_destroy (&unit);
    cr_assert_eq (last.calls, 1);
    cr_assert_eq (last.rc, HERALD_ERR_OVERLOADED);
    s_done_t *all [] = { &create, &grant, &bad, &refused, &first, &second, &last };
    for (size_t i = 0; i < sizeof all / sizeof all [0]; i++) {
        cr_assert_eq (all [i]->calls, 1, "op %zu: done called %d times", i, all [i]->calls);
        free (all [i]->result);
    }
}

Test (commit_ops, cluster_leader_applies_everywhere_follower_refuses)
{
    //  Before the Raft node runs: not_leader
    s_unit_t units [NODES];
    for (int i = 0; i < NODES; i++)
        s_unit_new (&units [i], i, true);
    s_done_t early = { 0 };
    msgpack_sbuffer op;
    go_create (&op, "g", s_prefixes, 1, 2, 1, 5);
    s_op (&units [0], &op, &early);
    s_turn_until (&units [0], &early, 5000);
    cr_assert_eq (early.rc, HERALD_ERR_NOT_LEADER);

    for (int i = 0; i < NODES; i++)
        s_start (i, true);
    int leader = s_wait_leader (ELECT_MS);
    cr_assert_geq (leader, 0);
    //  The leader's records are its commit unit's from now on
    s_nodes [leader].paused = true;
    herald_commit_attach (units [leader].commit, s_nodes [leader].raft);
    int follower = (leader + 1) % NODES;
    s_nodes [follower].paused = true;
    herald_commit_attach (units [follower].commit, s_nodes [follower].raft);

    s_done_t create = { 0 }, grant = { 0 }, refused = { 0 };
    go_create (&op, "g", s_prefixes, 1, 2, 1, 5);
    s_op (&units [leader], &op, &create);
    uint64_t parts [] = { 1 };
    go_grant (&op, "g", "m", parts, 1);
    s_op (&units [leader], &op, &grant);
    s_turn_until (&units [leader], &grant, 10000);
    cr_assert_eq (create.calls, 1);
    cr_assert_eq (create.rc, HERALD_OK, "%s", create.message);
    cr_assert (s_ok (&create));
    cr_assert (s_ok (&grant));

    go_delete (&op, "g");
    s_op (&units [follower], &op, &refused);
    s_turn_until (&units [follower], &refused, 10000);
    cr_assert_eq (refused.rc, HERALD_ERR_NOT_LEADER);
    cr_assert (strstr (refused.message, s_api [leader]), "names the leader: %s",
               refused.message);

    //  Every node holds the group (the follower's unit takes its records)
    int64_t deadline = zclock_mono () + 10000;
    bool all = false;
    while (!all && zclock_mono () < deadline) {
        herald_commit_finish (units [follower].commit);
        herald_commit_finish (units [leader].commit);
        s_drain ();
        all = true;
        for (int i = 0; i < NODES; i++) {
            herald_group_record_t record;
            if (herald_store_group_get (s_nodes [i].store, "g", &record, NULL) != HERALD_OK)
                all = false;
            else {
                all = all && record.epoch == 1;
                herald_group_record_fini (&record);
            }
        }
        zclock_sleep (10);
    }
    cr_assert (all, "not every node holds the group");

    //  The Raft node gone with an op in flight and one queued behind it:
    //  both not_leader, once
    s_done_t inflight = { 0 }, queued = { 0 };
    go_reset (&op, "g", 9);
    s_op (&units [leader], &op, &inflight);
    herald_commit_start (units [leader].commit);
    go_reset (&op, "g", 10);
    s_op (&units [leader], &op, &queued);
    cr_assert_eq (inflight.calls, 0);
    herald_raft_destroy (&s_nodes [leader].raft);
    herald_commit_raft_gone (units [leader].commit);
    cr_assert_eq (inflight.calls, 1);
    cr_assert_eq (inflight.rc, HERALD_ERR_NOT_LEADER);
    cr_assert (strstr (inflight.message, "unknown"), "%s", inflight.message);
    cr_assert_eq (queued.calls, 1);
    cr_assert_eq (queued.rc, HERALD_ERR_NOT_LEADER);

    herald_raft_destroy (&s_nodes [follower].raft);
    herald_commit_raft_gone (units [follower].commit);
    for (int i = 0; i < NODES; i++)
        s_unit_destroy (&units [i]);
    s_done_t *each [] = { &early, &create, &grant, &refused, &inflight, &queued };
    for (size_t i = 0; i < sizeof each / sizeof each [0]; i++) {
        cr_assert_eq (each [i]->calls, 1, "op %zu: done called %d times", i, each [i]->calls);
        free (each [i]->result);
    }
}

//  The leader cut off from the others (a TCP proxy per node, the test
//  hook HERALD_TEST_RAFT_CONNECT) with an op in flight: done once,
//  not_leader; once healed, every node holds the same groups, whatever
//  became of the op
Test (commit_ops, leadership_lost_mid_flight_answers_not_leader_once)
{
    tcpproxy_t *proxies [NODES];
    char spec [512] = "";
    int ports [NODES];
    for (int i = 0; i < NODES; i++)
        ports [i] = atoi (strrchr (s_raft_addr [i], ':') + 1);
    for (int i = 0; i < NODES; i++) {
        proxies [i] = tcpproxy_new_avoiding (ports [i], ports, NODES);
        cr_assert_not_null (proxies [i]);
        char item [64];
        snprintf (item, sizeof (item), "%s%" PRIu64 "=127.0.0.1:%d", i? ",": "",
                  s_peers [i].raft_id, tcpproxy_port (proxies [i]));
        strcat (spec, item);
    }
    setenv ("HERALD_TEST_HOOKS", "1", 1);
    setenv ("HERALD_TEST_RAFT_CONNECT", spec, 1);
    for (int i = 0; i < NODES; i++)
        s_start (i, true);
    int leader = s_wait_leader (ELECT_MS);
    cr_assert_geq (leader, 0);
    s_unit_t unit;
    s_unit_new (&unit, leader, true);
    s_nodes [leader].paused = true;
    herald_commit_attach (unit.commit, s_nodes [leader].raft);
    s_done_t create = { 0 }, cut = { 0 };
    msgpack_sbuffer op;
    go_create (&op, "g", s_prefixes, 1, 2, 1, 5);
    s_op (&unit, &op, &create);
    s_turn_until (&unit, &create, 10000);
    cr_assert_eq (create.rc, HERALD_OK, "%s", create.message);

    tcpproxy_cut (proxies [leader], true);
    go_reset (&op, "g", 9);
    s_op (&unit, &op, &cut);
    s_turn_until (&unit, &cut, 20000);
    cr_assert_eq (cut.rc, HERALD_ERR_NOT_LEADER, "rc %d: %s", cut.rc, cut.message);
    cr_log_info ("cut off: %s", cut.message);
    int next = s_wait_leader_but (leader, ELECT_MS);
    cr_assert_geq (next, 0, "the others did not elect a leader");
    tcpproxy_cut (proxies [leader], false);

    //  Healed: the old leader's records are its unit's to take
    int64_t deadline = zclock_mono () + 20000;
    bool same = false;
    while (!same && zclock_mono () < deadline) {
        herald_commit_finish (unit.commit);
        s_drain ();
        uint64_t index = herald_store_applied_index (s_nodes [next].store);
        same = true;
        for (int i = 0; i < NODES; i++)
            same = same && herald_store_applied_index (s_nodes [i].store) >= index;
        zclock_sleep (10);
    }
    cr_assert (same, "the healed node did not catch up");
    msgpack_sbuffer exports [NODES];
    for (int i = 0; i < NODES; i++) {
        msgpack_sbuffer_init (&exports [i]);
        cr_assert_eq (herald_store_groups_export (s_nodes [i].store, &exports [i], NULL),
                      HERALD_OK);
    }
    for (int i = 1; i < NODES; i++) {
        cr_assert_eq (exports [i].size, exports [0].size);
        cr_assert (memcmp (exports [i].data, exports [0].data, exports [0].size) == 0,
                   "%s holds other groups", s_nodes [i].name);
    }
    for (int i = 0; i < NODES; i++)
        msgpack_sbuffer_destroy (&exports [i]);
    herald_raft_destroy (&s_nodes [leader].raft);
    herald_commit_raft_gone (unit.commit);
    s_unit_destroy (&unit);
    cr_assert_eq (create.calls, 1);
    cr_assert_eq (cut.calls, 1, "done called %d times", cut.calls);
    free (create.result);
    for (int i = 0; i < NODES; i++)
        herald_raft_destroy (&s_nodes [i].raft);
    for (int i = 0; i < NODES; i++)
        tcpproxy_destroy (&proxies [i]);
}
