/*  =========================================================================
    test_heraldd_groups - the GROUP command (issue 15, docs/protocol.md
    "Consumer groups") against a real heraldd, members spoken raw

    Each test starts heraldd and talks to it with DEALERs that send GROUP
    bodies packed by hand, as a member written from the doc would
    (tests/grouptest): every op answers as documented; the creation keys;
    every bad_request is named and changes nothing; later heartbeats and
    show.  test_heraldd_groups_flow has the rest: two members share 32
    partitions evenly;
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

TestSuite (heraldd_groups, .init = bt_setup, .fini = bt_teardown, .timeout = 120);

//  ---------------------------------------------------------------------
//  Every op

Test (heraldd_groups, every_op_answers_as_documented)
{
    bt_start ();
    zsock_t *admin = bt_client ();
    bt_publish_many (admin, "orders.1", 3, 1);
    gt_member_t a;
    gt_member_init (&a, "billing", "billing-a", "orders.");
    rt_reply_t reply;
    gt_beat_owned (&a, NULL, 0, &reply);
    //  The group is made by the first heartbeat, with the defaults
    cr_assert_eq (rt_uint (reply.body, "partitions"), 32);
    cr_assert_eq (rt_uint (reply.body, "session_ms"), 3000);
    cr_assert_eq (rt_uint (reply.body, "heartbeat_ms"), 500);
    cr_assert_eq (rt_uint (reply.body, "head"), 3);
    cr_assert (rt_str_is (rt_get (reply.body, "group"), "billing"));
    const msgpack_object *prefixes = rt_get (reply.body, "prefixes");
    cr_assert (prefixes && prefixes->via.array.size == 1
               && rt_str_is (&prefixes->via.array.ptr [0], "orders."));
    rt_reply_fini (&reply);
    cr_assert_eq (a.count, 32, "a lone member holds every partition");
    for (size_t index = 0; index < a.count; index++) {
        cr_assert_eq (a.held [index].partition, index);
        cr_assert_gt (a.held [index].epoch, 0);
        cr_assert_eq (a.held [index].committed, 0);
        cr_assert_eq (a.held [index].delivered, 0);
    }
    //  commit: recorded under the epoch held, no fence
    gt_pos_t position = { 21, gt_held (&a, 21)->epoch, 2, 3 };
    uint64_t fenced [GT_PARTS_MAX];
    cr_assert_eq (gt_commit (&a, &position, 1, fenced), 0);
    gt_beat (&a);
    cr_assert_eq (gt_held (&a, 21)->committed, 2);
    cr_assert_eq (gt_held (&a, 21)->delivered, 3);
    //  list
    gt_send (admin, "Msuss", 2, "rid", (uint64_t) 7, "op", "list");
    rt_recv (admin, &reply, BT_WAIT_MS);
    gt_check_group (&reply, 7, "list");
    cr_assert_eq (rt_uint (reply.body, "head"), 3);
    const msgpack_object *groups = rt_get (reply.body, "groups");
    cr_assert_eq (groups->via.array.size, 1);
    const msgpack_object *group = &groups->via.array.ptr [0];
    cr_assert (rt_str_is (rt_get (group, "group"), "billing"));
    cr_assert_eq (rt_uint (group, "partitions"), 32);
    cr_assert_eq (rt_uint (group, "members"), 1);
    cr_assert_eq (rt_uint (group, "committed"), 0, "the lowest committed of its partitions");
    cr_assert_eq (rt_uint (group, "lag"), 3);
    cr_assert_geq (rt_uint (group, "generation"), 1);
    rt_reply_fini (&reply);
    //  show
    gt_pos_t positions [GT_PARTS_MAX];
    gt_show (admin, 8, "billing", positions, &reply);
    cr_assert_eq (rt_uint (reply.body, "partitions"), 32);
    cr_assert_eq (rt_uint (reply.body, "session_ms"), 3000);
    cr_assert_gt (rt_uint (reply.body, "created"), 0);
    cr_assert_eq (positions [21].committed, 2);
    cr_assert_eq (positions [21].delivered, 3);
    const msgpack_object *members = rt_get (reply.body, "members");
    cr_assert_eq (members->via.array.size, 1);
    cr_assert (rt_str_is (rt_get (&members->via.array.ptr [0], "member"), "billing-a"));
    cr_assert_eq (rt_get (&members->via.array.ptr [0], "partitions")->via.array.size, 32);
    const msgpack_object *first = &rt_get (reply.body, "positions")->via.array.ptr [0];
    cr_assert (rt_str_is (rt_get (first, "owner"), "billing-a"));
    rt_reply_fini (&reply);
    //  reset to a seq, and to a time (the first event at or after it)
    gt_send (admin, "Msusssssu", 4, "rid", (uint64_t) 9, "op", "reset", "group", "billing",
            "to", (uint64_t) 2);
    rt_recv (admin, &reply, BT_WAIT_MS);
    gt_check_group (&reply, 9, "reset");
    cr_assert_eq (rt_uint (reply.body, "to"), 2);
    cr_assert_eq (rt_uint (reply.body, "fenced"), 1, "one member was fenced");
    rt_reply_fini (&reply);
    gt_send (admin, "Msusssssu", 4, "rid", (uint64_t) 10, "op", "reset", "group", "billing",
            "to_ts", (uint64_t) 0);
    rt_recv (admin, &reply, BT_WAIT_MS);
    gt_check_group (&reply, 10, "reset");
    cr_assert_eq (rt_uint (reply.body, "to"), 1, "to_ts 0: the first event");
    rt_reply_fini (&reply);
    gt_send (admin, "Msusssssu", 4, "rid", (uint64_t) 11, "op", "reset", "group", "billing",
            "to_ts", (uint64_t) UINT64_MAX);
    rt_recv (admin, &reply, BT_WAIT_MS);
    cr_assert_eq (rt_uint (reply.body, "to"), 4, "after every event: head + 1");
    rt_reply_fini (&reply);
    //  leave, then delete
    gt_send (a.sock, "Msussssss", 4, "rid", (uint64_t) 12, "op", "leave", "group", "billing",
            "member", "billing-a");
    rt_recv (a.sock, &reply, BT_WAIT_MS);
    gt_check_group (&reply, 12, "leave");
    cr_assert (rt_str_is (rt_get (reply.body, "member"), "billing-a"));
    rt_reply_fini (&reply);
    gt_send (admin, "Msussss", 3, "rid", (uint64_t) 13, "op", "delete", "group", "billing");
    rt_recv (admin, &reply, BT_WAIT_MS);
    gt_check_group (&reply, 13, "delete");
    rt_reply_fini (&reply);
    gt_send (admin, "Msuss", 2, "rid", (uint64_t) 14, "op", "list");
    rt_recv (admin, &reply, BT_WAIT_MS);
    cr_assert_eq (rt_get (reply.body, "groups")->via.array.size, 0);
    rt_reply_fini (&reply);
    //  The figures: a grant per partition, one commit
    cr_assert_eq (bt_status_extra (admin, 15, "group_grants"), 32);
    cr_assert_geq (bt_status_extra (admin, 16, "group_commits"), 1);
    cr_assert_eq (bt_status_extra (admin, 17, "groups"), 0);
    bt_stop_clean ();
}

Test (heraldd_groups, the_creation_keys_make_the_group_and_are_ignored_after)
{
    bt_start ();
    zsock_t *sock = bt_client ();
    rt_reply_t reply;
    gt_send (sock, "Msusssssss As su su su", 8, "rid", (uint64_t) 1, "op", "heartbeat", "group",
            "small", "member", "m", "prefixes", 1, "a.", "partitions", (uint64_t) 4,
            "session_ms", (uint64_t) 300, "from", (uint64_t) 5);
    rt_recv (sock, &reply, BT_WAIT_MS);
    gt_check_group (&reply, 1, "heartbeat");
    cr_assert_eq (rt_uint (reply.body, "partitions"), 4);
    cr_assert_eq (rt_uint (reply.body, "session_ms"), 300);
    cr_assert_eq (rt_uint (reply.body, "heartbeat_ms"), 50);
    const msgpack_object *assigned = rt_get (reply.body, "assigned");
    cr_assert_eq (assigned->via.array.size, 4);
    for (size_t index = 0; index < 4; index++) {
        cr_assert_eq (rt_uint (&assigned->via.array.ptr [index], "committed"), 4,
                      "from 5: every partition starts after seq 4");
        cr_assert_eq (rt_uint (&assigned->via.array.ptr [index], "delivered"), 4);
    }
    rt_reply_fini (&reply);
    //  Another member with other session_ms and from: the group's stay
    gt_send (sock, "Msusssssss As su su", 7, "rid", (uint64_t) 2, "op", "heartbeat", "group",
            "small", "member", "n", "prefixes", 1, "a.", "session_ms", (uint64_t) 9000,
            "from", (uint64_t) 1);
    rt_recv (sock, &reply, BT_WAIT_MS);
    gt_check_group (&reply, 2, "heartbeat");
    cr_assert_eq (rt_uint (reply.body, "session_ms"), 300);
    rt_reply_fini (&reply);
    bt_stop_clean ();
}

//  ---------------------------------------------------------------------
//  Refusals: each names what is wrong, and changes nothing

Test (heraldd_groups, every_bad_request_is_named)
{
    bt_start ();
    zsock_t *sock = bt_client ();
    rt_reply_t reply;
    //  rid: as every HWP/1 request
    gt_send (sock, "Mssss", 2, "op", "list", "group", "g");
    rt_recv (sock, &reply, BT_WAIT_MS);
    rt_check_error (&reply, "bad_request", false, 0, "rid");
    rt_reply_fini (&reply);
    gt_send (sock, "Mssss", 2, "rid", "one", "op", "list");
    rt_recv (sock, &reply, BT_WAIT_MS);
    rt_check_error (&reply, "bad_request", false, 0, "rid");
    rt_reply_fini (&reply);
    gt_send (sock, "Au", 1, (uint64_t) 1);
    rt_recv (sock, &reply, BT_WAIT_MS);
    rt_check_error (&reply, "bad_request", false, 0, "body");
    rt_reply_fini (&reply);
    char long_name [200], long_prefix [300];
    memset (long_name, 'a', 129);
    long_name [129] = 0;
    memset (long_prefix, 'p', 256);
    long_prefix [256] = 0;
    struct {
        const char *op, *group, *member;    //  NULL: the key left out
        const char *field;
    } cases [] = {
        { NULL, "g", NULL, "op" },
        { "bogus", "g", NULL, "op" },
        { "heartbeat", NULL, "m", "group" },
        { "heartbeat", ".hidden", "m", "group" },
        { "heartbeat", "a b", "m", "group" },
        { "heartbeat", long_name, "m", "group" },
        { "heartbeat", "", "m", "group" },
        { "heartbeat", "g", NULL, "member" },
        { "commit", "g", NULL, "member" },
        { "leave", "g", NULL, "member" },
        { "heartbeat", "g", "", "member" },
        { "heartbeat", "g", "x/y", "member" },
        { "show", NULL, NULL, "group" },
        { "reset", NULL, NULL, "group" },
        { "delete", NULL, NULL, "group" },
    };
    uint64_t rid = 100;
    for (size_t index = 0; index < sizeof (cases) / sizeof (cases [0]); index++) {
        rid++;
        msgpack_sbuffer sbuf;
        msgpack_sbuffer_init (&sbuf);
        msgpack_packer pk;
        msgpack_packer_init (&pk, &sbuf, msgpack_sbuffer_write);
        msgpack_pack_map (&pk, 1 + (cases [index].op != NULL) + (cases [index].group != NULL)
                               + (cases [index].member != NULL));
        bu_pack_str (&pk, "rid");
        msgpack_pack_uint64 (&pk, rid);
        const char *keys [] = { "op", "group", "member" };
        const char *values [] = { cases [index].op, cases [index].group, cases [index].member };
        for (size_t at = 0; at < 3; at++)
            if (values [at]) {
                bu_pack_str (&pk, keys [at]);
                bu_pack_str (&pk, values [at]);
            }
        cr_assert_eq (bu_send_sbuf (sock, "GROUP", &sbuf), 0);
        msgpack_sbuffer_destroy (&sbuf);
        rt_recv (sock, &reply, BT_WAIT_MS);
        rt_check_error (&reply, "bad_request", true, rid, cases [index].field);
        rt_reply_fini (&reply);
    }
    //  The typed keys of a heartbeat
    struct {
        const char *key;
        const char *format;             //  the value's
        uint64_t number;
        const char *field;
    } typed [] = {
        { "prefixes", "s", 0, "prefixes" },
        { "prefixes", "As", 0, "prefixes[0]" },      //  "$sys"
        { "prefixes", "Au", 7, "prefixes[0]" },
        { "prefixes", "AS", 0, "prefixes[0]" },      //  256 bytes
        { "partitions", "u", 0, "partitions" },
        { "partitions", "u", 1025, "partitions" },
        { "partitions", "s", 0, "partitions" },
        { "session_ms", "u", 299, "session_ms" },
        { "session_ms", "u", 60001, "session_ms" },
        { "from", "u", 0, "from" },
        { "from", "i", 0, "from" },
        { "owned", "u", 0, "owned" },
        { "owned", "AAu", 1, "owned[0]" },
        { "owned", "AAus", 1, "owned[0]" },
        { "owned", "AAuu", 1024, "owned[0]" },
    };
    for (size_t index = 0; index < sizeof (typed) / sizeof (typed [0]); index++) {
        rid++;
        msgpack_sbuffer sbuf;
        msgpack_sbuffer_init (&sbuf);
        msgpack_packer pk;
        msgpack_packer_init (&pk, &sbuf, msgpack_sbuffer_write);
        msgpack_pack_map (&pk, 5);
        bu_pack_str (&pk, "rid");
        msgpack_pack_uint64 (&pk, rid);
        bu_pack_str (&pk, "op");
        bu_pack_str (&pk, "heartbeat");
        bu_pack_str (&pk, "group");
        bu_pack_str (&pk, "g");
        bu_pack_str (&pk, "member");
        bu_pack_str (&pk, "m");
        bu_pack_str (&pk, typed [index].key);
        const char *format = typed [index].format;
        if (streq (format, "s"))
            bu_pack_str (&pk, "x");
        else
        if (streq (format, "u"))
            msgpack_pack_uint64 (&pk, typed [index].number);
        else
        if (streq (format, "i"))
            msgpack_pack_int64 (&pk, -1);
        else
        if (streq (format, "As")) {
            msgpack_pack_array (&pk, 1);
            bu_pack_str (&pk, "$sys");
        }
        else
        if (streq (format, "Au")) {
            msgpack_pack_array (&pk, 1);
            msgpack_pack_uint64 (&pk, 7);
        }
        else
        if (streq (format, "AS")) {
            msgpack_pack_array (&pk, 1);
            bu_pack_str (&pk, long_prefix);
        }
        else {
            msgpack_pack_array (&pk, 1);
            msgpack_pack_array (&pk, strlen (format) - 2);
            msgpack_pack_uint64 (&pk, typed [index].number);
            if (streq (format, "AAus"))
                bu_pack_str (&pk, "x");
            else
            if (streq (format, "AAuu"))
                msgpack_pack_uint64 (&pk, 1);
        }
        cr_assert_eq (bu_send_sbuf (sock, "GROUP", &sbuf), 0);
        msgpack_sbuffer_destroy (&sbuf);
        rt_recv (sock, &reply, BT_WAIT_MS);
        rt_check_error (&reply, "bad_request", true, rid, typed [index].field);
        rt_reply_fini (&reply);
    }
    //  257 prefixes
    {
        rid++;
        msgpack_sbuffer sbuf;
        msgpack_sbuffer_init (&sbuf);
        msgpack_packer pk;
        msgpack_packer_init (&pk, &sbuf, msgpack_sbuffer_write);
        msgpack_pack_map (&pk, 5);
        bu_pack_str (&pk, "rid");
        msgpack_pack_uint64 (&pk, rid);
        bu_pack_str (&pk, "op");
        bu_pack_str (&pk, "heartbeat");
        bu_pack_str (&pk, "group");
        bu_pack_str (&pk, "g");
        bu_pack_str (&pk, "member");
        bu_pack_str (&pk, "m");
        bu_pack_str (&pk, "prefixes");
        msgpack_pack_array (&pk, 257);
        for (int index = 0; index < 257; index++) {
            char prefix [16];
            snprintf (prefix, sizeof (prefix), "p%d.", index);
            bu_pack_str (&pk, prefix);
        }
        cr_assert_eq (bu_send_sbuf (sock, "GROUP", &sbuf), 0);
        msgpack_sbuffer_destroy (&sbuf);
        rt_recv (sock, &reply, BT_WAIT_MS);
        rt_check_error (&reply, "bad_request", true, rid, "prefixes");
        rt_reply_fini (&reply);
    }
    //  Nothing was made by any of them
    gt_send (sock, "Msuss", 2, "rid", ++rid, "op", "list");
    rt_recv (sock, &reply, BT_WAIT_MS);
    gt_check_group (&reply, rid, "list");
    cr_assert_eq (rt_get (reply.body, "groups")->via.array.size, 0, "a refusal makes nothing");
    rt_reply_fini (&reply);
    //  What needs the group: a group of 4 partitions
    gt_member_t a;
    gt_member_init (&a, "four", "m", "orders.");
    a.partitions = 4;
    gt_beat (&a);
    cr_assert_eq (a.count, 4);
    gt_send (sock, "Msusssssss AAuuuu", 5, "rid", ++rid, "op", "commit", "group", "four",
            "member", "m", "positions", 1, 4, (uint64_t) 4, (uint64_t) 1, (uint64_t) 0,
            (uint64_t) 0);
    rt_recv (sock, &reply, BT_WAIT_MS);
    rt_check_error (&reply, "bad_request", true, rid, "positions[0]");
    rt_reply_fini (&reply);
    gt_send (sock, "Msusssssss AAuuuu", 5, "rid", ++rid, "op", "commit", "group", "four",
            "member", "m", "positions", 1, 4, (uint64_t) 0, (uint64_t) 1, (uint64_t) 5,
            (uint64_t) 4);
    rt_recv (sock, &reply, BT_WAIT_MS);
    rt_check_error (&reply, "bad_request", true, rid, "committed 5 is above delivered 4");
    rt_reply_fini (&reply);
    gt_send (sock, "Msussssss", 4, "rid", ++rid, "op", "commit", "group", "four",
            "member", "m");
    rt_recv (sock, &reply, BT_WAIT_MS);
    rt_check_error (&reply, "bad_request", true, rid, "positions");
    rt_reply_fini (&reply);
    gt_send (sock, "Msusssssss As s AAuu", 6, "rid", ++rid, "op", "heartbeat", "group",
            "four", "member", "m2", "prefixes", 1, "orders.", "owned", 1, 2, (uint64_t) 4,
            (uint64_t) 1);
    rt_recv (sock, &reply, BT_WAIT_MS);
    rt_check_error (&reply, "bad_request", true, rid, "owned[0]");
    rt_reply_fini (&reply);
    //  A heartbeat whose prefixes or partitions differ: named with the group's
    gt_send (sock, "Msusssssss As", 5, "rid", ++rid, "op", "heartbeat", "group", "four",
            "member", "m2", "prefixes", 1, "billing.");
    rt_recv (sock, &reply, BT_WAIT_MS);
    rt_check_error (&reply, "bad_request", true, rid, "\"orders.\"");
    rt_reply_fini (&reply);
    gt_send (sock, "Msusssssss Assu", 6, "rid", ++rid, "op", "heartbeat", "group", "four",
            "member", "m2", "prefixes", 1, "orders.", "partitions", (uint64_t) 8);
    rt_recv (sock, &reply, BT_WAIT_MS);
    rt_check_error (&reply, "bad_request", true, rid, "4 partitions");
    rt_reply_fini (&reply);
    //  reset: exactly one of to and to_ts, to >= 1
    gt_send (sock, "Msussss", 3, "rid", ++rid, "op", "reset", "group", "four");
    rt_recv (sock, &reply, BT_WAIT_MS);
    rt_check_error (&reply, "bad_request", true, rid, "to");
    rt_reply_fini (&reply);
    gt_send (sock, "Msusssssu", 4, "rid", ++rid, "op", "reset", "group", "four", "to",
            (uint64_t) 0);
    rt_recv (sock, &reply, BT_WAIT_MS);
    rt_check_error (&reply, "bad_request", true, rid, "to");
    rt_reply_fini (&reply);
    //  Unknown groups
    gt_send (sock, "Msussss", 3, "rid", ++rid, "op", "show", "group", "nope");
    rt_recv (sock, &reply, BT_WAIT_MS);
    rt_check_error (&reply, "bad_request", true, rid, "no group 'nope'");
    rt_reply_fini (&reply);
    gt_send (sock, "Msusssssu", 4, "rid", ++rid, "op", "reset", "group", "nope", "to",
            (uint64_t) 1);
    rt_recv (sock, &reply, BT_WAIT_MS);
    rt_check_error (&reply, "bad_request", true, rid, "no group 'nope'");
    rt_reply_fini (&reply);
    gt_send (sock, "Msussss", 3, "rid", ++rid, "op", "delete", "group", "nope");
    rt_recv (sock, &reply, BT_WAIT_MS);
    rt_check_error (&reply, "bad_request", true, rid, "no group 'nope'");
    rt_reply_fini (&reply);
    //  leave of a member not in the group: answered all the same
    gt_send (sock, "Msussssss", 4, "rid", ++rid, "op", "leave", "group", "four", "member",
            "stranger");
    rt_recv (sock, &reply, BT_WAIT_MS);
    gt_check_group (&reply, rid, "leave");
    rt_reply_fini (&reply);
    //  The group is as it was
    gt_pos_t positions [GT_PARTS_MAX];
    gt_show (sock, ++rid, "four", positions, &reply);
    cr_assert_eq (rt_uint (reply.body, "partitions"), 4);
    for (size_t index = 0; index < 4; index++)
        cr_assert_eq (positions [index].committed, 0);
    rt_reply_fini (&reply);
    bt_stop_clean ();
}

//  What docs/protocol.md says of later heartbeats and of show: prefixes
//  are compared as a set, partitions only when given; generation grows
//  with each join and leave; a member holding nothing shows committed
//  and lag nil.
Test (heraldd_groups, later_heartbeats_and_show_behave_as_documented)
{
    bt_start ();
    zsock_t *sock = bt_client ();
    rt_reply_t reply;
    uint64_t rid = 1;
    gt_send (sock, "Msusssssss Ass su", 6, "rid", rid, "op", "heartbeat", "group", "two",
            "member", "m", "prefixes", 2, "a.", "b.", "partitions", (uint64_t) 1);
    rt_recv (sock, &reply, BT_WAIT_MS);
    gt_check_group (&reply, rid, "heartbeat");
    cr_assert_eq (rt_get (reply.body, "assigned")->via.array.size, 1);
    uint64_t generation = rt_uint (reply.body, "generation");
    rt_reply_fini (&reply);
    //  The same set in another order, once more, and no partitions: accepted
    gt_send (sock, "Msusssssss Asss", 5, "rid", ++rid, "op", "heartbeat", "group", "two",
            "member", "m2", "prefixes", 3, "b.", "a.", "b.");
    rt_recv (sock, &reply, BT_WAIT_MS);
    gt_check_group (&reply, rid, "heartbeat");
    cr_assert_eq (rt_uint (reply.body, "partitions"), 1);
    cr_assert_eq (rt_get (reply.body, "assigned")->via.array.size, 0, "m holds the one");
    cr_assert_gt (rt_uint (reply.body, "generation"), generation, "a join");
    generation = rt_uint (reply.body, "generation");
    rt_reply_fini (&reply);
    //  No prefixes is every topic: another set, refused naming the group's
    gt_send (sock, "Msussssss", 4, "rid", ++rid, "op", "heartbeat", "group", "two",
            "member", "m2");
    rt_recv (sock, &reply, BT_WAIT_MS);
    rt_check_error (&reply, "bad_request", true, rid, "1 partitions and prefixes \"a.\", \"b.\"");
    rt_reply_fini (&reply);
    //  show: m2 holds nothing, so its committed and lag are nil
    gt_pos_t positions [GT_PARTS_MAX];
    gt_show (sock, ++rid, "two", positions, &reply);
    cr_assert_eq (rt_uint (reply.body, "generation"), generation);
    const msgpack_object *members = rt_get (reply.body, "members");
    cr_assert_eq (members->via.array.size, 2);
    const msgpack_object *m = &members->via.array.ptr [0], *m2 = &members->via.array.ptr [1];
    cr_assert (rt_str_is (rt_get (m, "member"), "m"));
    cr_assert_eq (rt_get (m, "partitions")->via.array.size, 1);
    cr_assert_eq (rt_uint (m, "committed"), 0);
    cr_assert_eq (rt_uint (m, "lag"), 0);
    cr_assert (rt_str_is (rt_get (m2, "member"), "m2"));
    cr_assert_eq (rt_get (m2, "partitions")->via.array.size, 0);
    cr_assert_eq (rt_get (m2, "committed")->type, MSGPACK_OBJECT_NIL);
    cr_assert_eq (rt_get (m2, "lag")->type, MSGPACK_OBJECT_NIL);
    rt_reply_fini (&reply);
    //  A leave: generation grows again
    gt_send (sock, "Msussssss", 4, "rid", ++rid, "op", "leave", "group", "two", "member", "m2");
    rt_recv (sock, &reply, BT_WAIT_MS);
    gt_check_group (&reply, rid, "leave");
    rt_reply_fini (&reply);
    gt_show (sock, ++rid, "two", positions, &reply);
    cr_assert_gt (rt_uint (reply.body, "generation"), generation, "a leave");
    rt_reply_fini (&reply);
    bt_stop_clean ();
}
