/*  =========================================================================
    test_herald_store_groups - consumer groups' ops in the store (issue 15)

    Every op (create, grant, commit, reset, delete) and its result; a
    commit under a stale epoch fenced while the others are written; bad
    ops (corrupt bytes, unknown op or group, a partition out of range)
    answered ok false, nothing written, the batches around them applied;
    two ops of one call see each other and share the call's WriteBatch
    with its events; two stores applying the same batches hold the same
    records; a reopen keeps them; export and import round trip, and an
    import of anything else is refused with nothing changed; a reader on
    another thread never sees half a write.
    =========================================================================
*/

#include <criterion/criterion.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"
#include "groupops.h"

static char *s_dir;
static char *s_dir2;

static void
s_setup (void)
{
    s_dir = tu_tmpdir_new ("groups");
    s_dir2 = tu_tmpdir_new ("groups2");
    cr_assert (s_dir && s_dir2, "cannot make a temporary directory: %s", strerror (errno));
}

static void
s_teardown (void)
{
    tu_tmpdir_destroy (&s_dir);
    tu_tmpdir_destroy (&s_dir2);
}

TestSuite (store_groups, .init = s_setup, .fini = s_teardown, .timeout = 60);

static herald_store_t *
s_open (const char *dir)
{
    herald_error_t err = { 0 };
    herald_store_t *store = herald_store_open (dir, NULL, &err);
    cr_assert_not_null (store, "open: %s", err.message);
    return store;
}

//  Apply the ops of buffers[0..count) as one call (ts given), each its own
//  batch; results copied into batches (caller frees op_result).
static void
s_apply (herald_store_t *store, msgpack_sbuffer *buffers, herald_batch_t *batches,
         size_t count)
{
    for (size_t i = 0; i < count; i++)
        batches [i] = (herald_batch_t) {
            .op = (const uint8_t *) buffers [i].data, .op_len = buffers [i].size
        };
    herald_error_t err = { 0 };
    cr_assert_eq (herald_store_apply (store, batches, count, 1000, &err), HERALD_OK, "%s",
                  err.message);
}

//  Apply one op alone; its result unpacked into result (fini it)
static void
s_one (herald_store_t *store, msgpack_sbuffer *buffer, go_result_t *result)
{
    herald_batch_t batch;
    s_apply (store, buffer, &batch, 1);
    go_result_init (result, batch.op_result, batch.op_result_len);
    msgpack_sbuffer_destroy (buffer);
    //  The result's objects may point into op_result: the zone frees it
    msgpack_zone_push_finalizer (&result->zone, free, batch.op_result);
}

static void
s_get (herald_store_t *store, const char *name, herald_group_record_t *record)
{
    herald_error_t err = { 0 };
    cr_assert_eq (herald_store_group_get (store, name, record, &err), HERALD_OK,
                  "group %s: %s", name, err.message);
}

static const char *const s_prefixes [] = { "orders.", "billing.", "orders." };

static void
s_create (herald_store_t *store, const char *name, uint64_t partitions, uint64_t from)
{
    msgpack_sbuffer op;
    go_create (&op, name, s_prefixes, 3, partitions, from, 777);
    go_result_t result;
    s_one (store, &op, &result);
    cr_assert (go_ok (&result));
    go_result_fini (&result);
}

Test (store_groups, create_and_read)
{
    herald_store_t *store = s_open (s_dir);
    msgpack_sbuffer op;
    go_create (&op, "billing", s_prefixes, 3, 8, 11, 777);
    go_result_t result;
    s_one (store, &op, &result);
    cr_assert (go_ok (&result));
    const msgpack_object *created = go_get (&result, "created");
    cr_assert (created && created->type == MSGPACK_OBJECT_BOOLEAN && created->via.boolean);
    go_result_fini (&result);

    herald_group_record_t record;
    s_get (store, "billing", &record);
    cr_assert_str_eq (record.name, "billing");
    cr_assert_eq (record.prefix_count, 2, "prefixes are a set");
    cr_assert_str_eq (record.prefixes [0], "billing.");
    cr_assert_str_eq (record.prefixes [1], "orders.");
    cr_assert_eq (record.partitions, 8);
    cr_assert_eq (record.session_ms, 3000);
    cr_assert_eq (record.created, 777);
    cr_assert_eq (record.epoch, 0);
    for (uint32_t p = 0; p < 8; p++) {
        cr_assert_eq (record.positions [p].committed, 10);
        cr_assert_eq (record.positions [p].delivered, 10);
        cr_assert_eq (record.positions [p].epoch, 0);
    }
    herald_group_record_fini (&record);
    cr_assert_null (record.name);

    //  The same again (prefixes in another order): left as it is
    const char *const again [] = { "billing.", "orders." };
    go_create (&op, "billing", again, 2, 8, 500, 999);
    s_one (store, &op, &result);
    cr_assert (go_ok (&result));
    created = go_get (&result, "created");
    cr_assert (created && created->type == MSGPACK_OBJECT_BOOLEAN && !created->via.boolean);
    go_result_fini (&result);
    s_get (store, "billing", &record);
    cr_assert_eq (record.created, 777);
    cr_assert_eq (record.positions [0].committed, 10);
    herald_group_record_fini (&record);

    //  Other partitions or prefixes: refused, naming the group's own
    go_create (&op, "billing", again, 1, 8, 1, 1);
    s_one (store, &op, &result);
    cr_assert_not (go_ok (&result));
    const msgpack_object *error = go_get (&result, "error");
    cr_assert (error && error->type == MSGPACK_OBJECT_STR);
    char message [300];
    snprintf (message, sizeof (message), "%.*s", (int) error->via.str.size,
              error->via.str.ptr);
    cr_assert (strstr (message, "\"billing.\", \"orders.\"") && strstr (message, "8 partitions"),
               "%s", message);
    go_result_fini (&result);
    go_create (&op, "billing", again, 2, 9, 1, 1);
    s_one (store, &op, &result);
    cr_assert_not (go_ok (&result));
    go_result_fini (&result);

    cr_assert_eq (herald_store_group_get (store, "nobody", &record, NULL), HERALD_ERR_NOT_FOUND);
    char **names;
    size_t count;
    s_create (store, "a-b", 1, 1);
    s_create (store, "a", 2, 1);
    s_create (store, "zed", 1, 1);
    cr_assert_eq (herald_store_group_names (store, &names, &count, NULL), HERALD_OK);
    cr_assert_eq (count, 4);
    const char *want [] = { "a", "a-b", "billing", "zed" };
    for (size_t i = 0; i < count; i++) {
        cr_assert_str_eq (names [i], want [i]);
        free (names [i]);
    }
    free (names);
    //  The log is not touched by ops
    cr_assert_eq (herald_store_head (store), 0);
    cr_assert_eq (herald_store_digest (store), 0);
    herald_store_destroy (&store);
}

Test (store_groups, grant_commit_fence)
{
    herald_store_t *store = s_open (s_dir);
    s_create (store, "g", 4, 1);
    msgpack_sbuffer op;
    go_result_t result;
    uint64_t parts [] = { 1, 3 };
    go_grant (&op, "g", "m1", parts, 2);
    s_one (store, &op, &result);
    cr_assert (go_ok (&result));
    const msgpack_object *assigned = go_get (&result, "assigned");
    cr_assert (assigned && assigned->type == MSGPACK_OBJECT_ARRAY);
    cr_assert_eq (assigned->via.array.size, 2);
    const msgpack_object *first = assigned->via.array.ptr [0].via.array.ptr;
    cr_assert_eq (first [0].via.u64, 1);
    cr_assert_eq (first [1].via.u64, 1);      //  epoch
    cr_assert_eq (first [2].via.u64, 0);
    cr_assert_eq (first [3].via.u64, 0);
    cr_assert_eq (assigned->via.array.ptr [1].via.array.ptr [1].via.u64, 2);
    go_result_fini (&result);

    //  Partition 3 granted again (epoch 3): m1's epoch 2 on it is stale
    uint64_t again [] = { 3 };
    go_grant (&op, "g", "m2", again, 1);
    s_one (store, &op, &result);
    cr_assert (go_ok (&result));
    go_result_fini (&result);

    const uint64_t positions [][4] = { { 1, 1, 5, 9 }, { 3, 2, 6, 6 } };
    go_commit (&op, "g", "m1", positions, 2);
    s_one (store, &op, &result);
    cr_assert (go_ok (&result));
    const msgpack_object *fenced = go_get (&result, "fenced");
    cr_assert (fenced && fenced->type == MSGPACK_OBJECT_ARRAY);
    cr_assert_eq (fenced->via.array.size, 1);
    cr_assert_eq (fenced->via.array.ptr [0].via.u64, 3);
    go_result_fini (&result);

    herald_group_record_t record;
    s_get (store, "g", &record);
    cr_assert_eq (record.epoch, 3);
    cr_assert_eq (record.positions [1].committed, 5);
    cr_assert_eq (record.positions [1].delivered, 9);
    cr_assert_eq (record.positions [1].epoch, 1);
    cr_assert_eq (record.positions [3].committed, 0, "a fenced position is not written");
    cr_assert_eq (record.positions [3].epoch, 3);
    cr_assert_eq (record.positions [0].epoch, 0);
    herald_group_record_fini (&record);

    //  committed above delivered, a partition out of range, a bad member:
    //  refused, nothing written (not even the valid position beside it)
    const uint64_t bad [][4] = { { 1, 1, 7, 7 }, { 0, 0, 3, 2 } };
    const uint64_t outside [][4] = { { 1, 1, 7, 7 }, { 4, 0, 1, 1 } };
    go_commit (&op, "g", "m1", bad, 2);
    s_one (store, &op, &result);
    cr_assert_not (go_ok (&result));
    cr_assert_not_null (go_get (&result, "error"));
    go_result_fini (&result);
    go_commit (&op, "g", "m1", outside, 2);
    s_one (store, &op, &result);
    cr_assert_not (go_ok (&result));
    go_result_fini (&result);
    go_commit (&op, "g", ".m1", positions, 1);
    s_one (store, &op, &result);
    cr_assert_not (go_ok (&result));
    go_result_fini (&result);
    uint64_t out [] = { 0, 4 };
    go_grant (&op, "g", "m1", out, 2);
    s_one (store, &op, &result);
    cr_assert_not (go_ok (&result));
    go_result_fini (&result);
    s_get (store, "g", &record);
    cr_assert_eq (record.positions [1].committed, 5);
    cr_assert_eq (record.positions [0].epoch, 0, "a refused grant gives nothing");
    cr_assert_eq (record.epoch, 3);
    herald_group_record_fini (&record);
    herald_store_destroy (&store);
}

Test (store_groups, reset_and_delete)
{
    herald_store_t *store = s_open (s_dir);
    s_create (store, "g", 3, 1);
    s_create (store, "other", 2, 1);
    msgpack_sbuffer op;
    go_result_t result;
    uint64_t parts [] = { 0 };
    go_grant (&op, "g", "m1", parts, 1);
    s_one (store, &op, &result);
    go_result_fini (&result);
    go_reset (&op, "g", 42);
    s_one (store, &op, &result);
    cr_assert (go_ok (&result));
    const msgpack_object *epoch = go_get (&result, "epoch");
    cr_assert (epoch && epoch->type == MSGPACK_OBJECT_POSITIVE_INTEGER);
    cr_assert_eq (epoch->via.u64, 4);
    go_result_fini (&result);
    herald_group_record_t record;
    s_get (store, "g", &record);
    cr_assert_eq (record.epoch, 4);
    for (uint32_t p = 0; p < 3; p++) {
        cr_assert_eq (record.positions [p].committed, 41);
        cr_assert_eq (record.positions [p].delivered, 41);
        cr_assert_gt (record.positions [p].epoch, 1, "reset fences every owner");
    }
    herald_group_record_fini (&record);
    //  The old owner's commit is fenced
    const uint64_t stale [][4] = { { 0, 1, 50, 50 } };
    go_commit (&op, "g", "m1", stale, 1);
    s_one (store, &op, &result);
    cr_assert (go_ok (&result));
    cr_assert_eq (go_get (&result, "fenced")->via.array.size, 1);
    go_result_fini (&result);
    go_reset (&op, "g", 0);
    s_one (store, &op, &result);
    cr_assert_not (go_ok (&result));
    go_result_fini (&result);

    go_delete (&op, "g");
    s_one (store, &op, &result);
    cr_assert (go_ok (&result));
    go_result_fini (&result);
    cr_assert_eq (herald_store_group_get (store, "g", &record, NULL), HERALD_ERR_NOT_FOUND);
    char **names;
    size_t count;
    cr_assert_eq (herald_store_group_names (store, &names, &count, NULL), HERALD_OK);
    cr_assert_eq (count, 1);
    cr_assert_str_eq (names [0], "other");
    free (names [0]);
    free (names);
    //  Gone: every op but create says so
    go_delete (&op, "g");
    s_one (store, &op, &result);
    cr_assert_not (go_ok (&result));
    go_result_fini (&result);
    go_grant (&op, "g", "m1", parts, 1);
    s_one (store, &op, &result);
    cr_assert_not (go_ok (&result));
    go_result_fini (&result);
    //  Made again: from scratch, epochs from 0
    s_create (store, "g", 2, 1);
    s_get (store, "g", &record);
    cr_assert_eq (record.partitions, 2);
    cr_assert_eq (record.epoch, 0);
    cr_assert_eq (record.positions [0].committed, 0);
    herald_group_record_fini (&record);
    herald_store_destroy (&store);
}

Test (store_groups, bad_ops_never_fail_the_apply)
{
    herald_store_t *store = s_open (s_dir);
    s_create (store, "g", 2, 1);
    msgpack_sbuffer buffers [8];
    //  0: not MessagePack at all; 1: a map truncated; 2: an array;
    //  3: an unknown op; 4: a bad name; 5: no such group; 6: a map and
    //  bytes after it; 7: a good commit
    msgpack_sbuffer_init (&buffers [0]);
    msgpack_sbuffer_write (&buffers [0], "\xc1\xc1garbage", 9);
    uint64_t parts [] = { 0 };
    go_grant (&buffers [1], "g", "m1", parts, 1);
    buffers [1].size -= 3;
    msgpack_sbuffer_init (&buffers [2]);
    msgpack_sbuffer_write (&buffers [2], "\x91\x01", 2);
    {
        msgpack_packer pk;
        go_head (&buffers [3], &pk, 2, "explode", "g");
    }
    go_reset (&buffers [4], "../g", 1);
    go_reset (&buffers [5], "nobody", 1);
    go_reset (&buffers [6], "g", 1);
    msgpack_sbuffer_write (&buffers [6], "\x01", 1);
    const uint64_t positions [][4] = { { 1, 0, 4, 4 } };
    go_commit (&buffers [7], "g", "m1", positions, 1);

    herald_event_t event = tu_event ("orders.1", "x");
    herald_append_result_t appended;
    herald_batch_t batches [10];
    s_apply (store, buffers, batches, 8);
    for (int i = 0; i < 7; i++) {
        go_result_t result;
        go_result_init (&result, batches [i].op_result, batches [i].op_result_len);
        cr_assert_not (go_ok (&result), "bad op %d accepted", i);
        cr_assert_not_null (go_get (&result, "error"), "bad op %d without error", i);
        go_result_fini (&result);
        free (batches [i].op_result);
    }
    go_result_t result;
    go_result_init (&result, batches [7].op_result, batches [7].op_result_len);
    cr_assert (go_ok (&result));
    go_result_fini (&result);
    free (batches [7].op_result);

    //  With events around: both applied, the op in the middle refused
    herald_batch_t mixed [3] = {
        { .events = &event, .count = 1, .results = &appended },
        { .op = (const uint8_t *) buffers [0].data, .op_len = buffers [0].size },
        { .op = (const uint8_t *) buffers [7].data, .op_len = buffers [7].size },
    };
    herald_error_t err = { 0 };
    cr_assert_eq (herald_store_apply (store, mixed, 3, 5, &err), HERALD_OK, "%s", err.message);
    cr_assert_eq (mixed [0].status, HERALD_OK);
    cr_assert_eq (appended.seq, 1);
    cr_assert_eq (herald_store_head (store), 1);
    go_result_init (&result, mixed [1].op_result, mixed [1].op_result_len);
    cr_assert_not (go_ok (&result));
    go_result_fini (&result);
    go_result_init (&result, mixed [2].op_result, mixed [2].op_result_len);
    cr_assert (go_ok (&result));
    go_result_fini (&result);
    free (mixed [1].op_result);
    free (mixed [2].op_result);
    for (int i = 0; i < 8; i++)
        msgpack_sbuffer_destroy (&buffers [i]);

    herald_group_record_t record;
    s_get (store, "g", &record);
    cr_assert_eq (record.positions [1].committed, 4);
    cr_assert_eq (record.positions [0].committed, 0, "no bad op wrote anything");
    cr_assert_eq (record.epoch, 0);
    herald_group_record_fini (&record);
    char **names;
    size_t count;
    cr_assert_eq (herald_store_group_names (store, &names, &count, NULL), HERALD_OK);
    cr_assert_eq (count, 1);
    free (names [0]);
    free (names);
    herald_store_destroy (&store);
}

//  Ops of one call see the ones before them, and are written with the
//  call's events in one WriteBatch
Test (store_groups, one_call_one_by_one)
{
    herald_store_t *store = s_open (s_dir);
    msgpack_sbuffer buffers [6];
    go_create (&buffers [0], "g", s_prefixes, 1, 2, 1, 5);
    uint64_t parts [] = { 0, 1 };
    go_grant (&buffers [1], "g", "m1", parts, 2);
    const uint64_t positions [][4] = { { 0, 1, 3, 4 }, { 1, 1, 3, 3 } };
    go_commit (&buffers [2], "g", "m1", positions, 2);
    go_delete (&buffers [3], "g");
    go_create (&buffers [4], "g", s_prefixes, 1, 3, 10, 6);
    go_grant (&buffers [5], "g", "m2", parts, 1);
    herald_batch_t batches [6];
    s_apply (store, buffers, batches, 6);
    int want_ok [] = { 1, 1, 1, 1, 1, 1 };
    for (int i = 0; i < 6; i++) {
        go_result_t result;
        go_result_init (&result, batches [i].op_result, batches [i].op_result_len);
        cr_assert_eq (go_ok (&result), want_ok [i], "op %d", i);
        if (i == 2) {
            const msgpack_object *fenced = go_get (&result, "fenced");
            cr_assert_eq (fenced->via.array.size, 1, "the grant was seen: one fenced");
            cr_assert_eq (fenced->via.array.ptr [0].via.u64, 1);
        }
        if (i == 5) {
            const msgpack_object *assigned = go_get (&result, "assigned");
            cr_assert_eq (assigned->via.array.ptr [0].via.array.ptr [1].via.u64, 1,
                          "the group was made again after its delete");
            cr_assert_eq (assigned->via.array.ptr [0].via.array.ptr [2].via.u64, 9);
        }
        go_result_fini (&result);
        free (batches [i].op_result);
        msgpack_sbuffer_destroy (&buffers [i]);
    }
    herald_group_record_t record;
    s_get (store, "g", &record);
    cr_assert_eq (record.partitions, 3);
    cr_assert_eq (record.created, 6);
    cr_assert_eq (record.epoch, 1);
    cr_assert_eq (record.positions [0].epoch, 1);
    cr_assert_eq (record.positions [0].committed, 9);
    cr_assert_eq (record.positions [2].committed, 9);
    herald_group_record_fini (&record);
    herald_store_destroy (&store);
}

//  A fixed script of ops and events, applied to two stores in the same
//  calls: the same results and records, byte for byte; a reopen keeps them
Test (store_groups, deterministic_and_durable)
{
    herald_store_t *stores [2] = { s_open (s_dir), s_open (s_dir2) };
    for (int round = 0; round < 20; round++) {
        char name [16];
        snprintf (name, sizeof (name), "g%d", round % 3);
        msgpack_sbuffer buffers [4];
        go_create (&buffers [0], name, s_prefixes, 2, 4 + round % 3, 1, 100 + round);
        uint64_t parts [] = { (uint64_t) round % 4, (uint64_t) (round + 1) % 4 };
        go_grant (&buffers [1], name, "m", parts, 2);
        const uint64_t positions [][4] = {
            { (uint64_t) round % 4, (uint64_t) round, (uint64_t) round, (uint64_t) round + 1 }
        };
        go_commit (&buffers [2], name, "m", positions, 1);
        if (round % 7 == 6)
            go_delete (&buffers [3], name);
        else
            go_reset (&buffers [3], name, (uint64_t) round + 1);
        uint8_t *results [2][4];
        size_t lens [2][4];
        for (int s = 0; s < 2; s++) {
            herald_event_t event = tu_event ("orders.x", "d");
            herald_append_result_t appended;
            herald_batch_t batches [5] = { { .events = &event, .count = 1, .results = &appended } };
            for (int i = 0; i < 4; i++)
                batches [i + 1] = (herald_batch_t) {
                    .op = (const uint8_t *) buffers [i].data, .op_len = buffers [i].size
                };
            herald_error_t err = { 0 };
            cr_assert_eq (herald_store_apply (stores [s], batches, round % 2? 5: 4,
                                              1000 + round, &err),
                          HERALD_OK, "%s", err.message);
            for (int i = 0; i < 4; i++) {
                results [s][i] = batches [i + 1].op_result;
                lens [s][i] = batches [i + 1].op_result_len;
            }
        }
        for (int i = 0; i < (round % 2? 4: 3); i++) {
            cr_assert_eq (lens [0][i], lens [1][i]);
            cr_assert (memcmp (results [0][i], results [1][i], lens [0][i]) == 0,
                       "round %d op %d: results differ", round, i);
        }
        for (int s = 0; s < 2; s++)
            for (int i = 0; i < 4; i++)
                free (results [s][i]);
        for (int i = 0; i < 4; i++)
            msgpack_sbuffer_destroy (&buffers [i]);
    }
    msgpack_sbuffer exports [2];
    for (int s = 0; s < 2; s++) {
        msgpack_sbuffer_init (&exports [s]);
        cr_assert_eq (herald_store_groups_export (stores [s], &exports [s], NULL), HERALD_OK);
    }
    cr_assert_eq (exports [0].size, exports [1].size);
    cr_assert (memcmp (exports [0].data, exports [1].data, exports [0].size) == 0);
    cr_assert_gt (exports [0].size, 10);
    herald_store_destroy (&stores [0]);
    herald_store_destroy (&stores [1]);

    //  Reopened: the same export; read-only too (herald inspect)
    stores [0] = s_open (s_dir);
    msgpack_sbuffer reopened;
    msgpack_sbuffer_init (&reopened);
    cr_assert_eq (herald_store_groups_export (stores [0], &reopened, NULL), HERALD_OK);
    cr_assert_eq (reopened.size, exports [0].size);
    cr_assert (memcmp (reopened.data, exports [0].data, reopened.size) == 0);
    herald_store_destroy (&stores [0]);
    herald_store_options_t options = { .read_only = true };
    herald_error_t err = { 0 };
    stores [0] = herald_store_open (s_dir, &options, &err);
    cr_assert_not_null (stores [0], "%s", err.message);
    reopened.size = 0;
    cr_assert_eq (herald_store_groups_export (stores [0], &reopened, NULL), HERALD_OK);
    cr_assert_eq (reopened.size, exports [0].size);
    cr_assert (memcmp (reopened.data, exports [0].data, reopened.size) == 0);
    herald_store_destroy (&stores [0]);
    msgpack_sbuffer_destroy (&reopened);
    for (int s = 0; s < 2; s++)
        msgpack_sbuffer_destroy (&exports [s]);
}

Test (store_groups, export_import)
{
    herald_store_t *store = s_open (s_dir);
    s_create (store, "a", 3, 5);
    s_create (store, "b", 2, 1);
    msgpack_sbuffer op;
    go_result_t result;
    uint64_t parts [] = { 2 };
    go_grant (&op, "a", "m", parts, 1);
    s_one (store, &op, &result);
    go_result_fini (&result);
    const uint64_t positions [][4] = { { 2, 1, 7, 8 } };
    go_commit (&op, "a", "m", positions, 1);
    s_one (store, &op, &result);
    go_result_fini (&result);
    msgpack_sbuffer exported;
    msgpack_sbuffer_init (&exported);
    cr_assert_eq (herald_store_groups_export (store, &exported, NULL), HERALD_OK);

    herald_store_t *other = s_open (s_dir2);
    s_create (other, "b", 7, 1);        //  replaced
    s_create (other, "c", 1, 1);        //  gone after the import
    herald_error_t err = { 0 };
    cr_assert_eq (herald_store_groups_import (other, exported.data, exported.size, &err),
                  HERALD_OK, "%s", err.message);
    char **names;
    size_t count;
    cr_assert_eq (herald_store_group_names (other, &names, &count, NULL), HERALD_OK);
    cr_assert_eq (count, 2);
    for (size_t i = 0; i < count; i++) {
        herald_group_record_t mine, theirs;
        s_get (store, names [i], &mine);
        s_get (other, names [i], &theirs);
        go_assert_same (&mine, &theirs);
        herald_group_record_fini (&mine);
        herald_group_record_fini (&theirs);
        free (names [i]);
    }
    free (names);
    herald_group_record_t record;
    s_get (other, "a", &record);
    cr_assert_eq (record.positions [2].committed, 7);
    cr_assert_eq (record.positions [2].delivered, 8);
    cr_assert_eq (record.positions [2].epoch, 1);
    cr_assert_eq (record.positions [0].committed, 4);
    herald_group_record_fini (&record);
    //  An empty export empties
    msgpack_sbuffer empty;
    msgpack_sbuffer_init (&empty);
    char *blank_path = tu_tmpdir_new ("blank");
    herald_store_t *blank = s_open (blank_path);
    cr_assert_eq (herald_store_groups_export (blank, &empty, NULL), HERALD_OK);
    cr_assert_eq (empty.size, 1);
    herald_store_destroy (&blank);
    tu_tmpdir_destroy (&blank_path);

    //  Garbage, truncations, a corrupt record: refused, nothing changed
    cr_assert_eq (herald_store_groups_import (other, "\xc1", 1, &err), HERALD_ERR_CORRUPT);
    for (size_t cut = 0; cut < exported.size; cut += 1 + exported.size / 40)
        cr_assert_eq (herald_store_groups_import (other, exported.data, cut, &err),
                      HERALD_ERR_CORRUPT, "an export cut at %zu", cut);
    char *bent = malloc (exported.size);
    memcpy (bent, exported.data, exported.size);
    char *name = memmem (bent, exported.size, "positions", 9);
    cr_assert_not_null (name);
    name [0] = 'q';
    cr_assert_eq (herald_store_groups_import (other, bent, exported.size, &err),
                  HERALD_ERR_CORRUPT);
    free (bent);
    cr_assert_eq (herald_store_groups_import (other, NULL, 0, &err), HERALD_ERR_CORRUPT);
    cr_assert_eq (herald_store_groups_import (other, empty.data, empty.size, &err), HERALD_OK);
    cr_assert_eq (herald_store_group_names (other, &names, &count, NULL), HERALD_OK);
    cr_assert_eq (count, 0, "an empty export leaves no group");
    free (names);
    msgpack_sbuffer_destroy (&empty);
    msgpack_sbuffer_destroy (&exported);
    herald_store_destroy (&other);
    herald_store_destroy (&store);
}

//  A whole call that fails leaves no result and writes nothing
Test (store_groups, failed_call_no_result)
{
    herald_store_t *store = s_open (s_dir);
    msgpack_sbuffer op;
    go_create (&op, "g", s_prefixes, 1, 2, 1, 5);
    herald_batch_t batch = { .op = (const uint8_t *) op.data, .op_len = op.size };
    herald_error_t err = { 0 };
    cr_assert_eq (herald_store_apply_entry (store, &batch, 1, 1, 5, &err), HERALD_OK);
    free (batch.op_result);
    batch.op_result = (uint8_t *) "stale";
    cr_assert_eq (herald_store_apply_entry (store, &batch, 1, 1, 5, &err),
                  HERALD_ERR_INTERNAL, "an index applied twice");
    cr_assert_null (batch.op_result);
    cr_assert_eq (herald_store_applied_index (store), 5);
    msgpack_sbuffer_destroy (&op);
    herald_store_destroy (&store);
}

//  A reader on another thread, while the appender rewrites a group: a
//  read is never torn (a group made again with another partition count is
//  never "a partition missing"), and each partition's position is one
//  write's (a reset sets committed = delivered: never one from before and
//  one from after).  Partitions may come from different writes: a reader
//  does not wait for a write's WAL sync.
typedef struct {
    herald_store_t *store;
    atomic_bool stop;
    size_t reads;
    size_t found;
    char failure [HERALD_ERROR_MESSAGE_MAX + 64];
} s_reader_t;

static void *
s_reader (void *arg)
{
    s_reader_t *reader = (s_reader_t *) arg;
    while (!atomic_load (&reader->stop) && !reader->failure [0]) {
        herald_group_record_t record;
        herald_error_t err = { 0 };
        herald_err rc = herald_store_group_get (reader->store, "g", &record, &err);
        reader->reads++;
        if (rc == HERALD_ERR_NOT_FOUND)
            continue;
        if (rc != HERALD_OK) {
            snprintf (reader->failure, sizeof (reader->failure), "read %zu: rc %d: %s",
                      reader->reads, rc, err.message);
            break;
        }
        reader->found++;
        for (uint32_t p = 0; p < record.partitions; p++)
            if (record.positions [p].committed != record.positions [p].delivered)
                snprintf (reader->failure, sizeof (reader->failure),
                          "read %zu: partition %u committed %" PRIu64 ", delivered %" PRIu64,
                          reader->reads, p, record.positions [p].committed,
                          record.positions [p].delivered);
        herald_group_record_fini (&record);
    }
    return NULL;
}

Test (store_groups, a_reader_on_another_thread_sees_whole_writes)
{
    herald_store_t *store = s_open (s_dir);
    s_reader_t reader = { .store = store };
    pthread_t thread;
    s_create (store, "g", 64, 1);
    cr_assert_eq (pthread_create (&thread, NULL, s_reader, &reader), 0);
    for (int round = 0; round < 300 && !reader.failure [0]; round++) {
        uint64_t partitions = round % 2? 64: 200;
        msgpack_sbuffer buffers [3];
        go_delete (&buffers [0], "g");
        go_create (&buffers [1], "g", s_prefixes, 1, partitions, 1, 1);
        go_reset (&buffers [2], "g", (uint64_t) round + 2);
        herald_batch_t batches [3];
        s_apply (store, buffers, batches, 3);
        for (int i = 0; i < 3; i++) {
            free (batches [i].op_result);
            msgpack_sbuffer_destroy (&buffers [i]);
        }
    }
    atomic_store (&reader.stop, true);
    pthread_join (thread, NULL);
    cr_assert_eq (reader.failure [0], 0, "%s", reader.failure);
    cr_log_info ("%zu reads, %zu found the group", reader.reads, reader.found);
    cr_assert_gt (reader.found, 0, "the reader never found the group");
    herald_store_destroy (&store);
}
