/*  =========================================================================
    test_heraldd_groups_flow - the GROUP command's flow (issue 15,
    docs/protocol.md "Consumer groups") against a real heraldd, members
    spoken raw

    Each test starts heraldd and talks to it with DEALERs that send GROUP
    bodies packed by hand, as a member written from the doc would
    (tests/grouptest): two members share 32 partitions evenly;
    the revoke flow (a partition moves only once its owner let it go, with
    a higher epoch); a member that stops heartbeating expires and its
    partitions go to another with their positions; a commit under a stale
    epoch is fenced; positions survive a kill -9; after a restart a claim
    under the current epoch is kept and an unclaimed partition waits for
    the grace; reset fences and regrants from the new position; delete is
    refused while members are live; a group beyond max-groups or a member
    beyond max-group-members is refused overloaded and nothing is made
    (delete, expiry and leave free a slot); security: read access to the
    group's prefixes, list filtered, reset/delete need `admin = groups`.
    =========================================================================
*/

#include <criterion/criterion.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <sys/stat.h>
#include <unistd.h>
#include "grouptest.h"

TestSuite (heraldd_groups_flow, .init = bt_setup, .fini = bt_teardown, .timeout = 120);

//  ---------------------------------------------------------------------
//  Assignment, revoke, expiry

Test (heraldd_groups_flow, two_members_share_evenly_and_a_revoked_partition_moves_once_let_go)
{
    bt_start ();
    gt_member_t a, b;
    gt_member_init (&a, "g", "a", "orders.");
    gt_member_init (&b, "g", "b", "orders.");
    gt_beat (&a);
    cr_assert_eq (a.count, 32);
    uint64_t a_epochs [32];
    for (size_t index = 0; index < 32; index++)
        a_epochs [a.held [index].partition] = a.held [index].epoch;
    //  b joins: a is asked to let half go, b gets nothing yet
    gt_beat (&b);
    cr_assert_eq (b.count, 0, "nothing moves before its owner let it go");
    gt_pos_t before [32];
    memcpy (before, a.held, sizeof (before));
    gt_beat (&a);
    cr_assert_eq (a.count, 16, "a's reply revokes half");
    gt_beat (&b);
    cr_assert_eq (b.count, 0, "a's last heartbeat still listed them");
    //  a lets go: heartbeats without them (what it was assigned)
    gt_beat (&a);
    cr_assert_eq (a.count, 16);
    gt_beat (&b);
    cr_assert_eq (b.count, 16, "b gets what a let go");
    bool seen [32] = { false };
    for (size_t index = 0; index < 16; index++) {
        cr_assert (!gt_held (&a, b.held [index].partition), "never held by two");
        cr_assert_gt (b.held [index].epoch, a_epochs [b.held [index].partition],
                      "a new grant has a higher epoch");
        seen [a.held [index].partition] = seen [b.held [index].partition] = true;
    }
    for (size_t index = 0; index < 32; index++)
        cr_assert (seen [index], "partition %zu is held", index);
    //  Stable: more heartbeats change nothing
    gt_beat (&a);
    gt_beat (&b);
    cr_assert_eq (a.count, 16);
    cr_assert_eq (b.count, 16);
    zsock_t *admin = bt_client ();
    cr_assert_eq (bt_status_extra (admin, 1, "group_members"), 2);
    cr_assert_geq (bt_status_extra (admin, 2, "group_rebalances"), 2);
    (void) before;
    bt_stop_clean ();
}

Test (heraldd_groups_flow, an_expired_member_hands_its_positions_over_and_is_fenced)
{
    bt_start ();
    gt_member_t a, b;
    gt_member_init (&a, "g", "a", NULL);
    a.session_ms = 600;
    gt_member_init (&b, "g", "b", NULL);
    gt_beat (&a);
    cr_assert_eq (a.count, 32);
    //  a declares a batch on partition 5 and dies in it
    gt_pos_t old = *gt_held (&a, 5);
    gt_pos_t declared = { 5, old.epoch, 4, 9 };
    uint64_t fenced [GT_PARTS_MAX];
    cr_assert_eq (gt_commit (&a, &declared, 1, fenced), 0);
    //  b joins; a never heartbeats again: after its session b holds all
    gt_beat_until (&b, 32, 20000);
    const gt_pos_t *got = gt_held (&b, 5);
    cr_assert_eq (got->committed, 4, "the new owner starts after what a committed");
    cr_assert_eq (got->delivered, 9, "and knows what a may have been handling");
    cr_assert_gt (got->epoch, old.epoch);
    //  a, come back late, commits under its old epoch: fenced, nothing changed
    gt_pos_t late = { 5, old.epoch, 9, 9 };
    cr_assert_eq (gt_commit (&a, &late, 1, fenced), 1);
    cr_assert_eq (fenced [0], 5);
    rt_reply_t reply;
    gt_pos_t positions [GT_PARTS_MAX];
    gt_show (b.sock, 77, "g", positions, &reply);
    rt_reply_fini (&reply);
    cr_assert_eq (positions [5].committed, 4);
    cr_assert_eq (positions [5].delivered, 9);
    zsock_t *admin = bt_client ();
    cr_assert_eq (bt_status_extra (admin, 1, "group_expired"), 1);
    cr_assert_eq (bt_status_extra (admin, 2, "group_fenced"), 1);
    bt_stop_clean ();
}

//  ---------------------------------------------------------------------
//  Restarts

Test (heraldd_groups_flow, positions_survive_kill_and_a_claim_is_kept_while_the_rest_waits_the_grace)
{
    bt_start ();
    gt_member_t a;
    gt_member_init (&a, "g", "a", "orders.");
    //  A long session: the first heartbeat after the restart comes well
    //  within it
    a.session_ms = 10000;
    gt_beat (&a);
    cr_assert_eq (a.count, 32);
    gt_pos_t positions [32];
    for (size_t index = 0; index < 32; index++)
        positions [index] = (gt_pos_t) { a.held [index].partition, a.held [index].epoch,
                                        10 + index, 20 + index };
    uint64_t fenced [GT_PARTS_MAX];
    cr_assert_eq (gt_commit (&a, positions, 32, fenced), 0);
    bu_broker_kill (bt_broker);
    cr_assert_eq (bu_broker_restart (bt_broker, BT_START_MS), 0);
    rt_reply_t reply;
    gt_pos_t shown [GT_PARTS_MAX];
    zsock_t *admin = bt_client ();
    gt_show (admin, 5, "g", shown, &reply);
    rt_reply_fini (&reply);
    for (size_t index = 0; index < 32; index++) {
        cr_assert_eq (shown [index].committed, 10 + index, "a commit survives kill -9");
        cr_assert_eq (shown [index].delivered, 20 + index);
        cr_assert_eq (shown [index].epoch, positions [index].epoch);
    }
    //  a claims half under the current epochs: kept, the same epochs; the
    //  other half nobody claims: not granted within the grace
    gt_beat_owned (&a, positions, 16, &reply);
    rt_reply_fini (&reply);
    cr_assert_eq (a.count, 16, "only the claims, before the grace has passed");
    for (size_t index = 0; index < 16; index++) {
        cr_assert_eq (a.held [index].partition, positions [index].partition);
        cr_assert_eq (a.held [index].epoch, positions [index].epoch, "a claim is kept");
        cr_assert_eq (a.held [index].committed, 10 + index);
    }
    //  After the grace the rest is granted, under new epochs
    gt_beat_until (&a, 32, 40000);
    for (size_t index = 16; index < 32; index++) {
        const gt_pos_t *got = gt_held (&a, index);
        cr_assert_gt (got->epoch, positions [index].epoch);
        cr_assert_eq (got->committed, 10 + index);
        cr_assert_eq (got->delivered, 20 + index);
    }
    bt_stop_clean ();
}

//  ---------------------------------------------------------------------
//  reset and delete

Test (heraldd_groups_flow, reset_fences_and_regrants_from_the_new_position)
{
    bt_start ();
    gt_member_t a;
    gt_member_init (&a, "g", "a", NULL);
    gt_beat (&a);
    cr_assert_eq (a.count, 32);
    gt_pos_t old [32];
    memcpy (old, a.held, sizeof (old));
    for (size_t index = 0; index < 32; index++)
        old [index].committed = old [index].delivered = 50;
    uint64_t fenced [GT_PARTS_MAX];
    cr_assert_eq (gt_commit (&a, old, 32, fenced), 0);
    zsock_t *admin = bt_client ();
    gt_send (admin, "Msusssssu", 4, "rid", (uint64_t) 3, "op", "reset", "group", "g", "to",
            (uint64_t) 7);
    rt_reply_t reply;
    rt_recv (admin, &reply, BT_WAIT_MS);
    gt_check_group (&reply, 3, "reset");
    cr_assert_eq (rt_uint (reply.body, "fenced"), 1);
    rt_reply_fini (&reply);
    //  a commit under the old epochs is fenced whole
    cr_assert_eq (gt_commit (&a, old, 32, fenced), 32);
    //  the next heartbeat revokes everything
    gt_beat (&a);
    cr_assert_eq (a.count, 0, "reset revokes every partition");
    //  let go: granted again, from the new position, under new epochs
    gt_beat (&a);
    cr_assert_eq (a.count, 32);
    for (size_t index = 0; index < 32; index++) {
        cr_assert_eq (a.held [index].committed, 6);
        cr_assert_eq (a.held [index].delivered, 6);
        cr_assert_gt (a.held [index].epoch, old [a.held [index].partition].epoch);
    }
    bt_stop_clean ();
}

Test (heraldd_groups_flow, delete_is_refused_while_members_are_live)
{
    bt_start ();
    gt_member_t a;
    gt_member_init (&a, "g", "a", NULL);
    gt_beat (&a);
    zsock_t *admin = bt_client ();
    rt_reply_t reply;
    gt_send (admin, "Msussss", 3, "rid", (uint64_t) 1, "op", "delete", "group", "g");
    rt_recv (admin, &reply, BT_WAIT_MS);
    rt_check_error (&reply, "bad_request", true, 1, "has 1 member; stop them first");
    rt_reply_fini (&reply);
    gt_send (a.sock, "Msussssss", 4, "rid", (uint64_t) 2, "op", "leave", "group", "g",
            "member", "a");
    rt_recv (a.sock, &reply, BT_WAIT_MS);
    gt_check_group (&reply, 2, "leave");
    rt_reply_fini (&reply);
    gt_send (admin, "Msussss", 3, "rid", (uint64_t) 3, "op", "delete", "group", "g");
    rt_recv (admin, &reply, BT_WAIT_MS);
    gt_check_group (&reply, 3, "delete");
    rt_reply_fini (&reply);
    gt_send (admin, "Msussss", 3, "rid", (uint64_t) 4, "op", "show", "group", "g");
    rt_recv (admin, &reply, BT_WAIT_MS);
    rt_check_error (&reply, "bad_request", true, 4, "no group 'g'");
    rt_reply_fini (&reply);
    //  A new heartbeat makes it again, from scratch
    gt_member_t c;
    gt_member_init (&c, "g", "c", "x.");
    gt_beat (&c);
    cr_assert_eq (c.count, 32);
    cr_assert_eq (c.held [0].committed, 0);
    bt_stop_clean ();
}

//  ---------------------------------------------------------------------
//  Bounds: max-groups and max-group-members

//  A heartbeat of member to group (every topic; session_ms when not 0),
//  whatever the answer (caller fini's reply).
static void
s_beat_raw (zsock_t *sock, uint64_t rid, const char *group, const char *member,
            uint64_t session_ms, rt_reply_t *reply)
{
    if (session_ms)
        gt_send (sock, "Msusssssssu", 5, "rid", rid, "op", "heartbeat", "group", group,
                "member", member, "session_ms", session_ms);
    else
        gt_send (sock, "Msussssss", 4, "rid", rid, "op", "heartbeat", "group", group,
                "member", member);
    rt_recv (sock, reply, BT_WAIT_MS);
}

static size_t
s_listed (zsock_t *sock, uint64_t rid)
{
    rt_reply_t reply;
    gt_send (sock, "Msuss", 2, "rid", rid, "op", "list");
    rt_recv (sock, &reply, BT_WAIT_MS);
    gt_check_group (&reply, rid, "list");
    size_t count = rt_get (reply.body, "groups")->via.array.size;
    rt_reply_fini (&reply);
    return count;
}

Test (heraldd_groups_flow, a_group_or_member_beyond_the_limits_is_refused_and_nothing_is_made)
{
    const char *const flags [] = { "--max-groups", "2", "--max-group-members", "2", NULL };
    bt_start_with (flags);
    zsock_t *sock = bt_client ();
    rt_reply_t reply;
    uint64_t rid = 1;
    //  Two groups are made; a third is refused, naming the limit and the setting
    s_beat_raw (sock, ++rid, "g1", "a", 1000, &reply);
    gt_check_group (&reply, rid, "heartbeat");
    rt_reply_fini (&reply);
    s_beat_raw (sock, ++rid, "g2", "a", 0, &reply);
    gt_check_group (&reply, rid, "heartbeat");
    rt_reply_fini (&reply);
    for (int round = 0; round < 3; round++) {
        s_beat_raw (sock, ++rid, "g3", "a", 0, &reply);
        rt_check_error (&reply, "overloaded", true, rid,
                       "group limit reached: 2 groups (max-groups); delete unused groups "
                       "with `herald group delete`");
        rt_reply_fini (&reply);
    }
    //  Nothing was made: not in the store, not in memory
    gt_send (sock, "Msussss", 3, "rid", ++rid, "op", "show", "group", "g3");
    rt_recv (sock, &reply, BT_WAIT_MS);
    rt_check_error (&reply, "bad_request", true, rid, "no group 'g3'");
    rt_reply_fini (&reply);
    cr_assert_eq (s_listed (sock, ++rid), 2);
    cr_assert_eq (bt_status_extra (sock, ++rid, "groups"), 2);
    cr_assert_eq (bt_status_extra (sock, ++rid, "group_refused"), 3);
    //  A deleted group frees its slot
    gt_send (sock, "Msussssss", 4, "rid", ++rid, "op", "leave", "group", "g2", "member", "a");
    rt_recv (sock, &reply, BT_WAIT_MS);
    gt_check_group (&reply, rid, "leave");
    rt_reply_fini (&reply);
    gt_send (sock, "Msussss", 3, "rid", ++rid, "op", "delete", "group", "g2");
    rt_recv (sock, &reply, BT_WAIT_MS);
    gt_check_group (&reply, rid, "delete");
    rt_reply_fini (&reply);
    s_beat_raw (sock, ++rid, "g3", "a", 0, &reply);
    gt_check_group (&reply, rid, "heartbeat");
    rt_reply_fini (&reply);
    cr_assert_eq (s_listed (sock, ++rid), 2);

    //  Two members of g1 (session 1000 ms); a third is refused, with the
    //  session as the hint of when a slot may free
    zsock_t *other = bt_client ();
    s_beat_raw (other, ++rid, "g1", "b", 0, &reply);
    gt_check_group (&reply, rid, "heartbeat");
    rt_reply_fini (&reply);
    s_beat_raw (sock, ++rid, "g1", "a", 0, &reply);
    gt_check_group (&reply, rid, "heartbeat");
    rt_reply_fini (&reply);
    zsock_t *third = bt_client ();
    s_beat_raw (third, ++rid, "g1", "c", 0, &reply);
    rt_check_error (&reply, "overloaded", true, rid,
                   "member limit reached: group 'g1' has 2 members (max-group-members)");
    cr_assert_eq (rt_uint (reply.body, "retry_ms"), 1000);
    rt_reply_fini (&reply);
    cr_assert_eq (bt_status_extra (sock, ++rid, "group_refused"), 4);
    //  b stops: once its session has ended, its slot is c's (a goes on
    //  heartbeating); until then c is refused, and never anything else
    int64_t deadline = zclock_mono () + 10000;
    while (true) {
        s_beat_raw (sock, ++rid, "g1", "a", 0, &reply);
        gt_check_group (&reply, rid, "heartbeat");
        rt_reply_fini (&reply);
        s_beat_raw (third, ++rid, "g1", "c", 0, &reply);
        bool joined = streq (reply.command, "GROUP");
        if (!joined)
            rt_check_error (&reply, "overloaded", true, rid, "member limit reached");
        rt_reply_fini (&reply);
        if (joined)
            break;
        cr_assert (zclock_mono () < deadline, "b's slot was never freed");
        zclock_sleep (50);
    }
    cr_assert_geq (bt_status_extra (sock, ++rid, "group_expired"), 1);
    gt_pos_t positions [GT_PARTS_MAX];
    gt_show (sock, ++rid, "g1", positions, &reply);
    const msgpack_object *members = rt_get (reply.body, "members");
    cr_assert_eq (members->via.array.size, 2);
    cr_assert (rt_str_is (rt_get (&members->via.array.ptr [0], "member"), "a"));
    cr_assert (rt_str_is (rt_get (&members->via.array.ptr [1], "member"), "c"));
    rt_reply_fini (&reply);
    //  A member that leaves frees its slot at once
    gt_send (third, "Msussssss", 4, "rid", ++rid, "op", "leave", "group", "g1", "member", "c");
    rt_recv (third, &reply, BT_WAIT_MS);
    gt_check_group (&reply, rid, "leave");
    rt_reply_fini (&reply);
    s_beat_raw (other, ++rid, "g1", "d", 0, &reply);
    gt_check_group (&reply, rid, "heartbeat");
    rt_reply_fini (&reply);
    bt_stop_clean ();
}

//  ---------------------------------------------------------------------
//  Security: read access to the group's prefixes; admin = groups

static char *s_dir;
static rt_key_t s_broker_key, s_alice, s_bob, s_carol;

static void
s_secure_setup (void)
{
    bt_setup ();
    s_dir = tu_tmpdir_new ("groups-security");
    cr_assert_not_null (s_dir);
    rt_key_make (&s_broker_key, "broker", s_dir, "broker.key");
    rt_key_make (&s_alice, "alice", NULL, NULL);
    rt_key_make (&s_bob, "bob", NULL, NULL);
    rt_key_make (&s_carol, "carol", NULL, NULL);
}

static void
s_secure_teardown (void)
{
    bt_teardown ();
    tu_tmpdir_destroy (&s_dir);
}

static zsock_t *
s_secure_client (const rt_key_t *key)
{
    zsock_t *sock = zsock_new (ZMQ_DEALER);
    cr_assert_not_null (sock);
    zsock_set_linger (sock, 0);
    zsock_set_curve_serverkey (sock, s_broker_key.public_txt);
    zsock_set_curve_publickey (sock, key->public_txt);
    zsock_set_curve_secretkey (sock, key->secret_txt);
    cr_assert_eq (zsock_connect (sock, "%s", bt_broker->api), 0);
    return bt_keep (sock);
}

TestSuite (heraldd_groups_security, .init = s_secure_setup, .fini = s_secure_teardown,
           .timeout = 120);

Test (heraldd_groups_security, prefixes_must_be_readable_and_reset_delete_need_admin_groups)
{
    char *acl = NULL;
    int rc = asprintf (&acl,
        "[scope orders-view]\nread = orders.\nfanout = tcp://127.0.0.1:%d\n\n"
        "[user alice]\nkey = %s\nread = *\nadmin = groups status\n\n"
        "[user bob]\nkey = %s\nscope = orders-view\n\n"
        "[user carol]\nkey = %s\npublish = billing.\n",
        bu_free_port (), s_alice.public_txt, s_bob.public_txt, s_carol.public_txt);
    cr_assert_geq (rc, 0);
    char *acl_path = tu_path (s_dir, "acl");
    cr_assert_eq (tu_write_file (acl_path, acl, strlen (acl)), 0);
    chmod (acl_path, 0644);
    free (acl);
    char *secret = tu_path (s_dir, "broker.key_secret");
    const char *extra [] = { "--curve-secret", secret, "--acl", acl_path, "--audit-log", "-",
                             NULL };
    bt_broker = bu_broker_new ("groups-secure", extra);
    cr_assert_not_null (bt_broker);
    cr_assert_eq (bu_broker_spawn (bt_broker), 0);
    zsock_t *alice_sock = s_secure_client (&s_alice);
    //  Up when alice gets a STATUS
    bu_reply_t status = { 0 };
    bool up = false;
    for (uint64_t rid = 1; !up && rid < 200; rid++)
        up = bu_status (alice_sock, rid, &status, 100) == 0;
    bu_reply_fini (&status);
    cr_assert (up, "the secure broker did not answer");
    gt_member_t alice, bob, carol;
    gt_member_init (&alice, "all", "alice-1", NULL);
    gt_member_init (&bob, "orders", "bob-1", "orders.");
    gt_member_init (&carol, "orders", "carol-1", "orders.");
    alice.sock = alice_sock;
    bob.sock = s_secure_client (&s_bob);
    carol.sock = s_secure_client (&s_carol);
    gt_beat (&alice);
    cr_assert_eq (alice.count, 32, "read = * may join a group of every topic");
    gt_beat (&bob);
    cr_assert_eq (bob.count, 32, "bob reads orders.: may join a group of orders.");
    rt_reply_t reply;
    //  A group bob cannot read: refused, and not made
    gt_send (bob.sock, "Msusssssss As", 5, "rid", (uint64_t) 3, "op", "heartbeat", "group",
            "billing", "member", "bob-1", "prefixes", 1, "billing.");
    rt_recv (bob.sock, &reply, BT_WAIT_MS);
    rt_check_error (&reply, "unauthorized", true, 3, "read access");
    rt_reply_fini (&reply);
    gt_send (carol.sock, "Msusssssss As", 5, "rid", (uint64_t) 4, "op", "heartbeat", "group",
            "orders", "member", "carol-1", "prefixes", 1, "orders.");
    rt_recv (carol.sock, &reply, BT_WAIT_MS);
    rt_check_error (&reply, "unauthorized", true, 4, "read access");
    rt_reply_fini (&reply);
    gt_send (bob.sock, "Msussss", 3, "rid", (uint64_t) 5, "op", "show", "group", "all");
    rt_recv (bob.sock, &reply, BT_WAIT_MS);
    rt_check_error (&reply, "unauthorized", true, 5, "read access");
    rt_reply_fini (&reply);
    gt_send (carol.sock, "Msusssssss AAuuuu", 5, "rid", (uint64_t) 6, "op", "commit", "group",
            "orders", "member", "carol-1", "positions", 1, 4, (uint64_t) 0, (uint64_t) 1,
            (uint64_t) 0, (uint64_t) 0);
    rt_recv (carol.sock, &reply, BT_WAIT_MS);
    rt_check_error (&reply, "unauthorized", true, 6, "read access");
    rt_reply_fini (&reply);
    //  list: only what the user may read
    gt_send (bob.sock, "Msuss", 2, "rid", (uint64_t) 7, "op", "list");
    rt_recv (bob.sock, &reply, BT_WAIT_MS);
    gt_check_group (&reply, 7, "list");
    const msgpack_object *groups = rt_get (reply.body, "groups");
    cr_assert_eq (groups->via.array.size, 1);
    cr_assert (rt_str_is (rt_get (&groups->via.array.ptr [0], "group"), "orders"));
    rt_reply_fini (&reply);
    gt_send (alice.sock, "Msuss", 2, "rid", (uint64_t) 8, "op", "list");
    rt_recv (alice.sock, &reply, BT_WAIT_MS);
    cr_assert_eq (rt_get (reply.body, "groups")->via.array.size, 2, "no 'billing' was made");
    rt_reply_fini (&reply);
    //  reset and delete: admin = groups
    gt_send (bob.sock, "Msusssssu", 4, "rid", (uint64_t) 9, "op", "reset", "group", "orders",
            "to", (uint64_t) 1);
    rt_recv (bob.sock, &reply, BT_WAIT_MS);
    rt_check_error (&reply, "unauthorized", true, 9, "admin = groups");
    rt_reply_fini (&reply);
    gt_send (alice.sock, "Msusssssu", 4, "rid", (uint64_t) 10, "op", "reset", "group",
            "orders", "to", (uint64_t) 1);
    rt_recv (alice.sock, &reply, BT_WAIT_MS);
    gt_check_group (&reply, 10, "reset");
    rt_reply_fini (&reply);
    gt_send (bob.sock, "Msussssss", 4, "rid", (uint64_t) 11, "op", "leave", "group", "orders",
            "member", "bob-1");
    rt_recv (bob.sock, &reply, BT_WAIT_MS);
    gt_check_group (&reply, 11, "leave");
    rt_reply_fini (&reply);
    gt_send (bob.sock, "Msussss", 3, "rid", (uint64_t) 12, "op", "delete", "group", "orders");
    rt_recv (bob.sock, &reply, BT_WAIT_MS);
    rt_check_error (&reply, "unauthorized", true, 12, "admin = groups");
    rt_reply_fini (&reply);
    gt_send (alice.sock, "Msussss", 3, "rid", (uint64_t) 13, "op", "delete", "group", "orders");
    rt_recv (alice.sock, &reply, BT_WAIT_MS);
    gt_check_group (&reply, 13, "delete");
    rt_reply_fini (&reply);
    //  Refusals are audited like other admin refusals
    cr_assert_geq (bt_status_extra (alice.sock, 14, "unauthorized"), 6);
    char log [65536];
    bu_broker_log (bt_broker, log, sizeof log);
    cr_assert_not_null (strstr (log, "\"grant\":\"groups\""), "%s", log);
    cr_assert_not_null (strstr (log, "\"group\":\"billing\""), "%s", log);
    free (secret);
    free (acl_path);
    bt_stop_clean ();
}
