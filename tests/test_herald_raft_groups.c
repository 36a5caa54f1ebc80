/*  =========================================================================
    test_herald_raft_groups - consumer groups' ops in a Raft cluster
    (issue 15)

    Three herald_raft nodes in one process (raftnodes.h).  Ops proposed on
    the leader, beside PUBLISH requests and in the same proposals, are
    applied by every node: every store holds the same group records, byte
    for byte (their exports), and the leader's batches get each op's
    result, the followers' records none.  A node away while the log moved
    past a snapshot gets the groups from the snapshot's manifest: with
    events to copy over REPLAY, and with none (ops write no event, so the
    node is at the manifest's head and only the groups are missing).  A
    manifest from before groups leaves a store's groups as they are; the
    manifest's trim points (an old one has none) raise the store's.
    =========================================================================
*/

#include <criterion/criterion.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "raftnodes.h"
#include "groupops.h"
#include "herald_manifest.h"

TestSuite (herald_raft_groups, .init = s_setup, .fini = s_teardown, .timeout = 120);

//  Every running node's store at the leader's applied index, waited for.
static bool
s_wait_applied (int leader, int64_t timeout_ms)
{
    uint64_t index = herald_store_applied_index (s_nodes [leader].store);
    int64_t deadline = zclock_mono () + timeout_ms;
    while (zclock_mono () < deadline) {
        s_drain ();
        bool all = true;
        for (int i = 0; i < NODES; i++)
            if (s_nodes [i].raft && herald_store_applied_index (s_nodes [i].store) < index)
                all = false;
        if (all)
            return true;
        zclock_sleep (10);
    }
    return false;
}

//  The groups of node i, exported (caller destroys)
static void
s_export (int i, msgpack_sbuffer *buffer)
{
    msgpack_sbuffer_init (buffer);
    herald_error_t err = { 0 };
    cr_assert_eq (herald_store_groups_export (s_nodes [i].store, buffer, &err), HERALD_OK,
                  "%s: %s", s_nodes [i].name, err.message);
}

static void
s_assert_same_groups (int a, int b)
{
    msgpack_sbuffer x, y;
    s_export (a, &x);
    s_export (b, &y);
    cr_assert_eq (x.size, y.size, "%s and %s: the groups differ", s_nodes [a].name,
                  s_nodes [b].name);
    cr_assert (memcmp (x.data, y.data, x.size) == 0, "%s and %s: the groups differ",
               s_nodes [a].name, s_nodes [b].name);
    msgpack_sbuffer_destroy (&x);
    msgpack_sbuffer_destroy (&y);
}

//  Propose batches on the leader and wait for its own record
static void
s_propose (int leader, herald_batch_t *batches, size_t count)
{
    int cookie;
    size_t own = s_nodes [leader].own_records;
    cr_assert_eq (herald_raft_propose (s_nodes [leader].raft, batches, count,
                                       herald_store_now (s_nodes [leader].store), &cookie),
                  HERALD_OK);
    cr_assert (s_wait_own (leader, own + 1, 10000), "the leader's record never came");
    cr_assert_eq (s_nodes [leader].last_rc, HERALD_OK);
    cr_assert_eq (s_nodes [leader].last_cookie, &cookie);
}

static void
s_op_batch (herald_batch_t *batch, const msgpack_sbuffer *op)
{
    memset (batch, 0, sizeof (*batch));
    batch->op = (const uint8_t *) op->data;
    batch->op_len = op->size;
}

static const char *const s_prefixes [] = { "orders." };

Test (herald_raft_groups, ops_ride_with_publish_and_every_node_holds_the_same_groups)
{
    for (int i = 0; i < NODES; i++)
        s_start (i, true);
    int leader = s_wait_leader (ELECT_MS);
    cr_assert_geq (leader, 0, "no single leader within %d ms", ELECT_MS);

    //  One proposal: create, an event, grant, commit (seeing the grant)
    msgpack_sbuffer ops [6];
    go_create (&ops [0], "billing", s_prefixes, 1, 4, 1, 12345);
    uint64_t parts [] = { 0, 1, 2, 3 };
    go_grant (&ops [1], "billing", "m1", parts, 4);
    const uint64_t positions [][4] = { { 0, 1, 1, 1 }, { 1, 2, 0, 1 }, { 3, 9, 1, 1 } };
    go_commit (&ops [2], "billing", "m1", positions, 3);
    herald_event_t event = tu_event ("orders.1", "a");
    herald_append_result_t appended;
    herald_batch_t batches [4];
    s_op_batch (&batches [0], &ops [0]);
    s_batch (&batches [1], &event, 1, &appended);
    s_op_batch (&batches [2], &ops [1]);
    s_op_batch (&batches [3], &ops [2]);
    s_propose (leader, batches, 4);
    cr_assert_eq (appended.seq, 1);
    go_result_t result;
    for (int b = 0; b < 4; b++) {
        if (b == 1) {
            cr_assert_null (batches [b].op_result);
            continue;
        }
        go_result_init (&result, batches [b].op_result, batches [b].op_result_len);
        cr_assert (go_ok (&result), "op in batch %d refused", b);
        if (b == 3) {
            const msgpack_object *fenced = go_get (&result, "fenced");
            cr_assert_eq (fenced->via.array.size, 1, "the stale epoch of partition 3");
            cr_assert_eq (fenced->via.array.ptr [0].via.u64, 3);
        }
        go_result_fini (&result);
        free (batches [b].op_result);
    }

    //  A second proposal: reset, then a commit under the old epochs (fenced),
    //  then an op on a group that does not exist (refused, nothing written)
    go_reset (&ops [3], "billing", 7);
    go_commit (&ops [4], "billing", "m1", positions, 1);
    go_delete (&ops [5], "nobody");
    s_op_batch (&batches [0], &ops [3]);
    s_op_batch (&batches [1], &ops [4]);
    s_op_batch (&batches [2], &ops [5]);
    s_propose (leader, batches, 3);
    go_result_init (&result, batches [1].op_result, batches [1].op_result_len);
    cr_assert_eq (go_get (&result, "fenced")->via.array.size, 1);
    go_result_fini (&result);
    go_result_init (&result, batches [2].op_result, batches [2].op_result_len);
    cr_assert_not (go_ok (&result));
    go_result_fini (&result);
    for (int b = 0; b < 3; b++)
        free (batches [b].op_result);

    cr_assert (s_wait_applied (leader, 10000), "the followers did not apply");
    herald_group_record_t record;
    herald_error_t err = { 0 };
    for (int i = 0; i < NODES; i++) {
        cr_assert_eq (herald_store_group_get (s_nodes [i].store, "billing", &record, &err),
                      HERALD_OK, "%s: %s", s_nodes [i].name, err.message);
        cr_assert_eq (record.epoch, 8, "%s: 4 grants and 4 partitions reset",
                      s_nodes [i].name);
        cr_assert_eq (record.positions [2].committed, 6);
        cr_assert_eq (record.created, 12345);
        herald_group_record_fini (&record);
        cr_assert_eq (herald_store_head (s_nodes [i].store), 1);
        cr_assert (!s_nodes [i].follower_record_had_batches);
        if (i != leader)
            s_assert_same_groups (leader, i);
    }
    for (int i = 1; i < NODES; i++)
        s_assert_same_log (0, i);
    for (int i = 0; i < 6; i++)
        msgpack_sbuffer_destroy (&ops [i]);
}

//  A node away while the leader's log is compacted past what it has (a
//  snapshot every 4 entries, by the test hook) is restored from a
//  manifest: the groups come with it.  with_events: the entries also
//  write events (the node copies them over REPLAY); without, the node is
//  at the manifest's head already and only the groups are new to it.
static void
s_snapshot_case (bool with_events)
{
    setenv ("HERALD_TEST_HOOKS", "1", 1);
    setenv ("HERALD_TEST_RAFT_SNAPSHOT", "4", 1);
    s_server_t servers [NODES];
    zactor_t *actors [NODES];
    for (int i = 0; i < NODES; i++) {
        servers [i] = (s_server_t) { .store = s_nodes [i].store, .endpoint = s_api [i] };
        actors [i] = zactor_new (s_replay_actor, &servers [i]);
        cr_assert_not_null (actors [i]);
    }
    for (int i = 0; i < NODES; i++)
        s_start (i, true);
    int leader = s_wait_leader (ELECT_MS);
    cr_assert_geq (leader, 0);
    int away = (leader + 1) % NODES;
    herald_raft_destroy (&s_nodes [away].raft);
    cr_assert_eq (herald_store_applied_index (s_nodes [away].store) <
                  herald_store_applied_index (s_nodes [leader].store) + 1, true);

    //  Twenty entries, one at a time: two groups made first (so only the
    //  snapshot can bring them), then commits, and a reset of one
    static herald_event_t events [20];
    static herald_append_result_t results [20];
    static char data [20][8];
    for (int i = 0; i < 20; i++) {
        msgpack_sbuffer op;
        if (i < 2)
            go_create (&op, i? "two": "one", s_prefixes, 1, 3, 1, (uint64_t) i + 1);
        else
        if (i == 2) {
            uint64_t parts [] = { 0, 1, 2 };
            go_grant (&op, "one", "m", parts, 3);
        }
        else
        if (i == 15)
            go_reset (&op, "two", 5);
        else {
            const uint64_t positions [][4] = { { (uint64_t) i % 3, (uint64_t) i % 3 + 1,
                                                 (uint64_t) i, (uint64_t) i + 1 } };
            go_commit (&op, "one", "m", positions, 1);
        }
        herald_batch_t batches [2];
        s_op_batch (&batches [0], &op);
        size_t count = 1;
        if (with_events) {
            snprintf (data [i], sizeof (data [i]), "%d", i);
            events [i] = tu_event ("snap", data [i]);
            s_batch (&batches [1], &events [i], 1, &results [i]);
            count = 2;
        }
        s_propose (leader, batches, count);
        go_result_t result;
        go_result_init (&result, batches [0].op_result, batches [0].op_result_len);
        cr_assert (go_ok (&result), "op %d refused", i);
        go_result_fini (&result);
        free (batches [0].op_result);
        msgpack_sbuffer_destroy (&op);
    }
    cr_assert_eq (herald_store_head (s_nodes [leader].store), with_events? 20: 0);
    char **names;
    size_t count;
    cr_assert_eq (herald_store_group_names (s_nodes [away].store, &names, &count, NULL),
                  HERALD_OK);
    cr_assert_eq (count, 0, "the node away has no group yet");
    free (names);

    s_nodes [away].records = 0;
    s_start (away, false);
    cr_assert (s_wait_applied (leader, 20000), "the node away did not catch up");
    for (int i = 0; i < NODES; i++)
        if (i != leader) {
            s_assert_same_log (leader, i);
            s_assert_same_groups (leader, i);
        }
    herald_group_record_t record;
    cr_assert_eq (herald_store_group_get (s_nodes [away].store, "two", &record, NULL),
                  HERALD_OK);
    cr_assert_eq (record.positions [0].committed, 4, "the reset came");
    herald_group_record_fini (&record);
    int replays = 0;
    for (int i = 0; i < NODES; i++) {
        zactor_destroy (&actors [i]);
        replays += servers [i].replays;
    }
    if (with_events)
        cr_assert_geq (replays, 1, "no REPLAY was asked: the snapshot path was not taken");
    herald_raft_state_t state;
    herald_raft_state (s_nodes [away].raft, &state);
    cr_assert_neq (state.role, HERALD_RAFT_STOPPED);
}

Test (herald_raft_groups, a_node_restored_from_a_snapshot_gets_the_groups)
{
    s_snapshot_case (true);
}

Test (herald_raft_groups, a_node_at_the_snapshots_head_still_gets_its_groups)
{
    s_snapshot_case (false);
}

//  herald_manifest alone: a manifest from before groups (no `groups`)
//  leaves the store's; one with them replaces them, before the applied
//  index is raised; one whose groups are no export is refused and
//  changes nothing
static void
s_old_manifest (msgpack_sbuffer *buffer, uint64_t index, bool bad_groups)
{
    msgpack_sbuffer_init (buffer);
    msgpack_packer pk;
    msgpack_packer_init (&pk, buffer, msgpack_sbuffer_write);
    msgpack_pack_map (&pk, bad_groups? 9: 8);
    const char *keys [] = { "format", "index", "head", "last_ts", "digest" };
    uint64_t values [] = { 1, index, 0, 0, 0 };
    for (int i = 0; i < 5; i++) {
        go_str (&pk, keys [i]);
        msgpack_pack_uint64 (&pk, values [i]);
    }
    go_str (&pk, "node");
    go_str (&pk, "x");
    go_str (&pk, "api");
    go_str (&pk, "");
    go_str (&pk, "peers");
    msgpack_pack_array (&pk, 0);
    if (bad_groups) {
        go_str (&pk, "groups");
        msgpack_pack_map (&pk, 0);
    }
}

static herald_err
s_restore (herald_store_t *store, const msgpack_sbuffer *buffer, herald_error_t *err)
{
    herald_manifest_t manifest;
    herald_err rc = herald_manifest_decode (&manifest, buffer->data, buffer->size, err);
    if (rc == HERALD_OK)
        rc = herald_manifest_restore (&manifest, store, NULL, NULL, 0, NULL, NULL, err);
    return rc;
}

static size_t
s_group_count (herald_store_t *store)
{
    char **names;
    size_t count;
    cr_assert_eq (herald_store_group_names (store, &names, &count, NULL), HERALD_OK);
    for (size_t i = 0; i < count; i++)
        free (names [i]);
    free (names);
    return count;
}

Test (herald_raft_groups, a_manifest_carries_groups_and_an_old_one_keeps_the_stores)
{
    herald_store_t *store = s_nodes [0].store;
    msgpack_sbuffer op;
    go_create (&op, "kept", s_prefixes, 1, 2, 1, 5);
    herald_batch_t batch;
    s_op_batch (&batch, &op);
    herald_error_t err = { 0 };
    cr_assert_eq (herald_store_apply_entry (store, &batch, 1, 1, 30, &err), HERALD_OK);
    free (batch.op_result);
    msgpack_sbuffer_destroy (&op);
    cr_assert_eq (s_group_count (store), 1);

    msgpack_sbuffer manifest;
    s_old_manifest (&manifest, 40, false);
    cr_assert_eq (s_restore (store, &manifest, &err), HERALD_OK, "%s", err.message);
    cr_assert_eq (herald_store_applied_index (store), 40);
    cr_assert_eq (s_group_count (store), 1, "an old manifest keeps the store's groups");
    msgpack_sbuffer_destroy (&manifest);

    s_old_manifest (&manifest, 60, true);
    cr_assert_eq (s_restore (store, &manifest, &err), HERALD_ERR_CORRUPT);
    cr_assert_eq (herald_store_applied_index (store), 40, "the index stays where it was");
    cr_assert_eq (s_group_count (store), 1);
    msgpack_sbuffer_destroy (&manifest);

    //  A manifest of another store with one other group
    herald_store_t *other = s_nodes [1].store;
    go_create (&op, "theirs", s_prefixes, 1, 3, 1, 6);
    s_op_batch (&batch, &op);
    cr_assert_eq (herald_store_apply (other, &batch, 1, 1, &err), HERALD_OK);
    free (batch.op_result);
    msgpack_sbuffer_destroy (&op);
    msgpack_sbuffer_init (&manifest);
    cr_assert_eq (herald_manifest_encode (other, 50, "n2", "", NULL, 0, &manifest), 0);
    cr_assert_eq (s_restore (store, &manifest, &err), HERALD_OK, "%s", err.message);
    cr_assert_eq (herald_store_applied_index (store), 50);
    cr_assert_eq (s_group_count (store), 1);
    herald_group_record_t record;
    cr_assert_eq (herald_store_group_get (store, "theirs", &record, NULL), HERALD_OK);
    cr_assert_eq (record.partitions, 3);
    herald_group_record_fini (&record);
    cr_assert_eq (herald_store_group_get (store, "kept", &record, NULL), HERALD_ERR_NOT_FOUND);
    //  Restored again (a restart): nothing changes
    cr_assert_eq (s_restore (store, &manifest, &err), HERALD_OK);
    cr_assert_eq (s_group_count (store), 1);
    msgpack_sbuffer_destroy (&manifest);
}

//  Trim points ride in the manifest too (issue 17): an old manifest (no
//  `trims`) has none and changes none; one with them raises the store's
//  before the applied index; a bad `trims` is refused, changing nothing
static void
s_trims_manifest (msgpack_sbuffer *buffer, uint64_t index, bool bad)
{
    msgpack_sbuffer_init (buffer);
    msgpack_packer pk;
    msgpack_packer_init (&pk, buffer, msgpack_sbuffer_write);
    msgpack_pack_map (&pk, 9);
    const char *keys [] = { "format", "index", "head", "last_ts", "digest" };
    uint64_t values [] = { 1, index, 0, 0, 0 };
    for (int i = 0; i < 5; i++) {
        go_str (&pk, keys [i]);
        msgpack_pack_uint64 (&pk, values [i]);
    }
    go_str (&pk, "node");
    go_str (&pk, "x");
    go_str (&pk, "api");
    go_str (&pk, "");
    go_str (&pk, "peers");
    msgpack_pack_array (&pk, 0);
    go_str (&pk, "trims");
    if (bad) {
        msgpack_pack_array (&pk, 1);
        msgpack_pack_map (&pk, 1);
        go_str (&pk, "until");
        go_str (&pk, "not a number");
        return;
    }
    msgpack_pack_array (&pk, 1);
    msgpack_pack_map (&pk, 3);
    go_str (&pk, "prefix");
    go_str (&pk, "m.");
    go_str (&pk, "until");
    msgpack_pack_uint64 (&pk, 5);
    go_str (&pk, "ts");
    msgpack_pack_uint64 (&pk, 7);
}

Test (herald_raft_groups, a_manifest_carries_trims_and_an_old_one_has_none)
{
    herald_store_t *store = s_nodes [0].store;
    herald_error_t err = { 0 };
    msgpack_sbuffer manifest;
    s_old_manifest (&manifest, 40, false);
    herald_manifest_t decoded;
    cr_assert_eq (herald_manifest_decode (&decoded, manifest.data, manifest.size, &err),
                  HERALD_OK);
    cr_assert_null (decoded.trims, "an old manifest has trims");
    cr_assert_eq (s_restore (store, &manifest, &err), HERALD_OK, "%s", err.message);
    cr_assert_eq (herald_store_trims (store, NULL, 0), 0);
    msgpack_sbuffer_destroy (&manifest);

    s_trims_manifest (&manifest, 60, true);
    cr_assert_eq (s_restore (store, &manifest, &err), HERALD_ERR_CORRUPT);
    cr_assert_not_null (strstr (err.message, "trims[0]"), "%s", err.message);
    cr_assert_eq (herald_store_applied_index (store), 40, "the index stays where it was");
    cr_assert_eq (herald_store_trims (store, NULL, 0), 0);
    msgpack_sbuffer_destroy (&manifest);

    s_trims_manifest (&manifest, 70, false);
    cr_assert_eq (s_restore (store, &manifest, &err), HERALD_OK, "%s", err.message);
    cr_assert_eq (herald_store_applied_index (store), 70);
    herald_trim_t trims [2];
    cr_assert_eq (herald_store_trims (store, trims, 2), 1);
    cr_assert_str_eq (trims [0].prefix, "m.");
    cr_assert_eq (trims [0].until, 5);
    msgpack_sbuffer_destroy (&manifest);

    //  The manifest of a store with that trim point carries it
    msgpack_sbuffer_init (&manifest);
    cr_assert_eq (herald_manifest_encode (store, 80, "n1", "", NULL, 0, &manifest), 0);
    cr_assert_eq (herald_manifest_decode (&decoded, manifest.data, manifest.size, &err),
                  HERALD_OK);
    cr_assert_not_null (decoded.trims);
    herald_store_t *other = s_nodes [1].store;
    cr_assert_eq (s_restore (other, &manifest, &err), HERALD_OK, "%s", err.message);
    cr_assert_eq (herald_store_trims (other, trims, 2), 1);
    cr_assert_str_eq (trims [0].prefix, "m.");
    cr_assert_eq (trims [0].until, 5);
    msgpack_sbuffer_destroy (&manifest);
}
