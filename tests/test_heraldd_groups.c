/*  =========================================================================
    test_heraldd_groups - the GROUP command (issue 15, docs/protocol.md
    "Consumer groups") against a real heraldd, members spoken raw

    Each test starts heraldd and talks to it with DEALERs that send GROUP
    bodies packed by hand, as a member written from the doc would: every
    op; every bad_request named; two members share 32 partitions evenly;
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
#include "brokertest.h"
#include "replytest.h"

#define S_PARTS_MAX     1024
#define S_POLL_MS       100

TestSuite (heraldd_groups, .init = bt_setup, .fini = bt_teardown, .timeout = 120);

//  ---------------------------------------------------------------------
//  Packing and reading GROUP bodies

//  Send GROUP with a body packed by format (rt_vpack)
static void
s_send (zsock_t *sock, const char *format, ...)
{
    va_list args;
    va_start (args, format);
    rt_vsend (sock, "GROUP", format, args);
    va_end (args);
}

//  The reply is GROUP, to rid, for op.
static void
s_check_group (rt_reply_t *reply, uint64_t rid, const char *op)
{
    const msgpack_object *message = rt_get (reply->body, "message");
    cr_assert_str_eq (reply->command, "GROUP", "expected GROUP, got %s: %.*s", reply->command,
                      message? (int) message->via.str.size: 0, message? message->via.str.ptr: "");
    cr_assert_eq (rt_uint (reply->body, "rid"), rid);
    cr_assert (rt_str_is (rt_get (reply->body, "op"), op));
}

//  ---------------------------------------------------------------------
//  A raw member

typedef struct {
    uint64_t partition, epoch, committed, delivered;
} s_pos_t;

typedef struct {
    zsock_t *sock;
    const char *name;
    const char *group;
    const char *prefix;             //  the group's one prefix, or NULL: every topic
    uint64_t session_ms;            //  at creation (0: default)
    uint64_t partitions;            //  at creation (0: default)
    s_pos_t held [S_PARTS_MAX];     //  the last assignment
    size_t count;
    uint64_t rid;
    uint64_t generation;
} s_member_t;

static void
s_member_init (s_member_t *member, const char *group, const char *name, const char *prefix)
{
    memset (member, 0, sizeof (*member));
    member->sock = bt_client ();
    member->group = group;
    member->name = name;
    member->prefix = prefix;
    member->rid = 1000;
}

//  Heartbeat with owned = the first owned_count of owned; the reply's
//  assignment into held.  Returns the reply (caller fini's it).
static void
s_beat_owned (s_member_t *member, const s_pos_t *owned, size_t owned_count, rt_reply_t *reply)
{
    msgpack_sbuffer sbuf;
    msgpack_sbuffer_init (&sbuf);
    msgpack_packer pk;
    msgpack_packer_init (&pk, &sbuf, msgpack_sbuffer_write);
    uint64_t rid = ++member->rid;
    msgpack_pack_map (&pk, 6 + (member->session_ms? 1: 0) + (member->partitions? 1: 0));
    bu_pack_str (&pk, "rid");
    msgpack_pack_uint64 (&pk, rid);
    bu_pack_str (&pk, "op");
    bu_pack_str (&pk, "heartbeat");
    bu_pack_str (&pk, "group");
    bu_pack_str (&pk, member->group);
    bu_pack_str (&pk, "member");
    bu_pack_str (&pk, member->name);
    bu_pack_str (&pk, "prefixes");
    msgpack_pack_array (&pk, member->prefix? 1: 0);
    if (member->prefix)
        bu_pack_str (&pk, member->prefix);
    bu_pack_str (&pk, "owned");
    msgpack_pack_array (&pk, owned_count);
    for (size_t index = 0; index < owned_count; index++) {
        msgpack_pack_array (&pk, 2);
        msgpack_pack_uint64 (&pk, owned [index].partition);
        msgpack_pack_uint64 (&pk, owned [index].epoch);
    }
    if (member->session_ms) {
        bu_pack_str (&pk, "session_ms");
        msgpack_pack_uint64 (&pk, member->session_ms);
    }
    if (member->partitions) {
        bu_pack_str (&pk, "partitions");
        msgpack_pack_uint64 (&pk, member->partitions);
    }
    cr_assert_eq (bu_send_sbuf (member->sock, "GROUP", &sbuf), 0);
    msgpack_sbuffer_destroy (&sbuf);
    rt_recv (member->sock, reply, BT_WAIT_MS);
    s_check_group (reply, rid, "heartbeat");
    cr_assert (rt_str_is (rt_get (reply->body, "member"), member->name));
    member->generation = rt_uint (reply->body, "generation");
    const msgpack_object *assigned = rt_get (reply->body, "assigned");
    cr_assert (assigned && assigned->type == MSGPACK_OBJECT_ARRAY);
    member->count = assigned->via.array.size;
    for (size_t index = 0; index < member->count; index++) {
        const msgpack_object *item = &assigned->via.array.ptr [index];
        member->held [index] = (s_pos_t) {
            rt_uint (item, "partition"), rt_uint (item, "epoch"), rt_uint (item, "committed"),
            rt_uint (item, "delivered")
        };
    }
}

//  Heartbeat owning what it was last assigned (what a member does).
static void
s_beat (s_member_t *member)
{
    s_pos_t owned [S_PARTS_MAX] = { { 0 } };
    memcpy (owned, member->held, member->count * sizeof (s_pos_t));
    rt_reply_t reply;
    s_beat_owned (member, owned, member->count, &reply);
    rt_reply_fini (&reply);
}

static const s_pos_t *
s_held (const s_member_t *member, uint64_t partition)
{
    for (size_t index = 0; index < member->count; index++)
        if (member->held [index].partition == partition)
            return &member->held [index];
    return NULL;
}

//  Commit positions; the fenced partitions into fenced (returns the count).
static size_t
s_commit (s_member_t *member, const s_pos_t *positions, size_t count, uint64_t *fenced)
{
    msgpack_sbuffer sbuf;
    msgpack_sbuffer_init (&sbuf);
    msgpack_packer pk;
    msgpack_packer_init (&pk, &sbuf, msgpack_sbuffer_write);
    uint64_t rid = ++member->rid;
    msgpack_pack_map (&pk, 5);
    bu_pack_str (&pk, "rid");
    msgpack_pack_uint64 (&pk, rid);
    bu_pack_str (&pk, "op");
    bu_pack_str (&pk, "commit");
    bu_pack_str (&pk, "group");
    bu_pack_str (&pk, member->group);
    bu_pack_str (&pk, "member");
    bu_pack_str (&pk, member->name);
    bu_pack_str (&pk, "positions");
    msgpack_pack_array (&pk, count);
    for (size_t index = 0; index < count; index++) {
        msgpack_pack_array (&pk, 4);
        msgpack_pack_uint64 (&pk, positions [index].partition);
        msgpack_pack_uint64 (&pk, positions [index].epoch);
        msgpack_pack_uint64 (&pk, positions [index].committed);
        msgpack_pack_uint64 (&pk, positions [index].delivered);
    }
    cr_assert_eq (bu_send_sbuf (member->sock, "GROUP", &sbuf), 0);
    msgpack_sbuffer_destroy (&sbuf);
    rt_reply_t reply;
    rt_recv (member->sock, &reply, BT_WAIT_MS);
    s_check_group (&reply, rid, "commit");
    const msgpack_object *list = rt_get (reply.body, "fenced");
    cr_assert (list && list->type == MSGPACK_OBJECT_ARRAY);
    size_t fenced_count = list->via.array.size;
    for (size_t index = 0; index < fenced_count; index++)
        fenced [index] = list->via.array.ptr [index].via.u64;
    rt_reply_fini (&reply);
    return fenced_count;
}

//  GROUP show; the positions into positions[partition] (caller fini's reply).
static void
s_show (zsock_t *sock, uint64_t rid, const char *group, s_pos_t *positions, rt_reply_t *reply)
{
    s_send (sock, "Msussss", 3, "rid", rid, "op", "show", "group", group);
    rt_recv (sock, reply, BT_WAIT_MS);
    s_check_group (reply, rid, "show");
    const msgpack_object *list = rt_get (reply->body, "positions");
    cr_assert (list && list->type == MSGPACK_OBJECT_ARRAY);
    for (size_t index = 0; index < list->via.array.size; index++) {
        const msgpack_object *item = &list->via.array.ptr [index];
        cr_assert_eq (rt_uint (item, "partition"), index);
        positions [index] = (s_pos_t) { index, rt_uint (item, "epoch"),
                                        rt_uint (item, "committed"),
                                        rt_uint (item, "delivered") };
    }
}

//  Heartbeat member until it holds want partitions, for at most
//  timeout_ms (then fails), pacing by S_POLL_MS.
static void
s_beat_until (s_member_t *member, size_t want, int timeout_ms)
{
    int64_t deadline = zclock_mono () + timeout_ms;
    s_beat (member);
    while (member->count != want) {
        cr_assert (zclock_mono () < deadline, "%s holds %zu partitions, not %zu, after %d ms",
                   member->name, member->count, want, timeout_ms);
        zclock_sleep (S_POLL_MS);
        s_beat (member);
    }
}

//  ---------------------------------------------------------------------
//  Every op

Test (heraldd_groups, every_op_answers_as_documented)
{
    bt_start ();
    zsock_t *admin = bt_client ();
    bt_publish_many (admin, "orders.1", 3, 1);
    s_member_t a;
    s_member_init (&a, "billing", "billing-a", "orders.");
    rt_reply_t reply;
    s_beat_owned (&a, NULL, 0, &reply);
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
    s_pos_t position = { 21, s_held (&a, 21)->epoch, 2, 3 };
    uint64_t fenced [S_PARTS_MAX];
    cr_assert_eq (s_commit (&a, &position, 1, fenced), 0);
    s_beat (&a);
    cr_assert_eq (s_held (&a, 21)->committed, 2);
    cr_assert_eq (s_held (&a, 21)->delivered, 3);
    //  list
    s_send (admin, "Msuss", 2, "rid", (uint64_t) 7, "op", "list");
    rt_recv (admin, &reply, BT_WAIT_MS);
    s_check_group (&reply, 7, "list");
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
    s_pos_t positions [S_PARTS_MAX];
    s_show (admin, 8, "billing", positions, &reply);
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
    s_send (admin, "Msusssssu", 4, "rid", (uint64_t) 9, "op", "reset", "group", "billing",
            "to", (uint64_t) 2);
    rt_recv (admin, &reply, BT_WAIT_MS);
    s_check_group (&reply, 9, "reset");
    cr_assert_eq (rt_uint (reply.body, "to"), 2);
    cr_assert_eq (rt_uint (reply.body, "fenced"), 1, "one member was fenced");
    rt_reply_fini (&reply);
    s_send (admin, "Msusssssu", 4, "rid", (uint64_t) 10, "op", "reset", "group", "billing",
            "to_ts", (uint64_t) 0);
    rt_recv (admin, &reply, BT_WAIT_MS);
    s_check_group (&reply, 10, "reset");
    cr_assert_eq (rt_uint (reply.body, "to"), 1, "to_ts 0: the first event");
    rt_reply_fini (&reply);
    s_send (admin, "Msusssssu", 4, "rid", (uint64_t) 11, "op", "reset", "group", "billing",
            "to_ts", (uint64_t) UINT64_MAX);
    rt_recv (admin, &reply, BT_WAIT_MS);
    cr_assert_eq (rt_uint (reply.body, "to"), 4, "after every event: head + 1");
    rt_reply_fini (&reply);
    //  leave, then delete
    s_send (a.sock, "Msussssss", 4, "rid", (uint64_t) 12, "op", "leave", "group", "billing",
            "member", "billing-a");
    rt_recv (a.sock, &reply, BT_WAIT_MS);
    s_check_group (&reply, 12, "leave");
    cr_assert (rt_str_is (rt_get (reply.body, "member"), "billing-a"));
    rt_reply_fini (&reply);
    s_send (admin, "Msussss", 3, "rid", (uint64_t) 13, "op", "delete", "group", "billing");
    rt_recv (admin, &reply, BT_WAIT_MS);
    s_check_group (&reply, 13, "delete");
    rt_reply_fini (&reply);
    s_send (admin, "Msuss", 2, "rid", (uint64_t) 14, "op", "list");
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
    s_send (sock, "Msusssssss As su su su", 8, "rid", (uint64_t) 1, "op", "heartbeat", "group",
            "small", "member", "m", "prefixes", 1, "a.", "partitions", (uint64_t) 4,
            "session_ms", (uint64_t) 300, "from", (uint64_t) 5);
    rt_recv (sock, &reply, BT_WAIT_MS);
    s_check_group (&reply, 1, "heartbeat");
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
    s_send (sock, "Msusssssss As su su", 7, "rid", (uint64_t) 2, "op", "heartbeat", "group",
            "small", "member", "n", "prefixes", 1, "a.", "session_ms", (uint64_t) 9000,
            "from", (uint64_t) 1);
    rt_recv (sock, &reply, BT_WAIT_MS);
    s_check_group (&reply, 2, "heartbeat");
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
    s_send (sock, "Mssss", 2, "op", "list", "group", "g");
    rt_recv (sock, &reply, BT_WAIT_MS);
    rt_check_error (&reply, "bad_request", false, 0, "rid");
    rt_reply_fini (&reply);
    s_send (sock, "Mssss", 2, "rid", "one", "op", "list");
    rt_recv (sock, &reply, BT_WAIT_MS);
    rt_check_error (&reply, "bad_request", false, 0, "rid");
    rt_reply_fini (&reply);
    s_send (sock, "Au", 1, (uint64_t) 1);
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
    s_send (sock, "Msuss", 2, "rid", ++rid, "op", "list");
    rt_recv (sock, &reply, BT_WAIT_MS);
    s_check_group (&reply, rid, "list");
    cr_assert_eq (rt_get (reply.body, "groups")->via.array.size, 0, "a refusal makes nothing");
    rt_reply_fini (&reply);
    //  What needs the group: a group of 4 partitions
    s_member_t a;
    s_member_init (&a, "four", "m", "orders.");
    a.partitions = 4;
    s_beat (&a);
    cr_assert_eq (a.count, 4);
    s_send (sock, "Msusssssss AAuuuu", 5, "rid", ++rid, "op", "commit", "group", "four",
            "member", "m", "positions", 1, 4, (uint64_t) 4, (uint64_t) 1, (uint64_t) 0,
            (uint64_t) 0);
    rt_recv (sock, &reply, BT_WAIT_MS);
    rt_check_error (&reply, "bad_request", true, rid, "positions[0]");
    rt_reply_fini (&reply);
    s_send (sock, "Msusssssss AAuuuu", 5, "rid", ++rid, "op", "commit", "group", "four",
            "member", "m", "positions", 1, 4, (uint64_t) 0, (uint64_t) 1, (uint64_t) 5,
            (uint64_t) 4);
    rt_recv (sock, &reply, BT_WAIT_MS);
    rt_check_error (&reply, "bad_request", true, rid, "committed 5 is above delivered 4");
    rt_reply_fini (&reply);
    s_send (sock, "Msussssss", 4, "rid", ++rid, "op", "commit", "group", "four",
            "member", "m");
    rt_recv (sock, &reply, BT_WAIT_MS);
    rt_check_error (&reply, "bad_request", true, rid, "positions");
    rt_reply_fini (&reply);
    s_send (sock, "Msusssssss As s AAuu", 6, "rid", ++rid, "op", "heartbeat", "group",
            "four", "member", "m2", "prefixes", 1, "orders.", "owned", 1, 2, (uint64_t) 4,
            (uint64_t) 1);
    rt_recv (sock, &reply, BT_WAIT_MS);
    rt_check_error (&reply, "bad_request", true, rid, "owned[0]");
    rt_reply_fini (&reply);
    //  A heartbeat whose prefixes or partitions differ: named with the group's
    s_send (sock, "Msusssssss As", 5, "rid", ++rid, "op", "heartbeat", "group", "four",
            "member", "m2", "prefixes", 1, "billing.");
    rt_recv (sock, &reply, BT_WAIT_MS);
    rt_check_error (&reply, "bad_request", true, rid, "\"orders.\"");
    rt_reply_fini (&reply);
    s_send (sock, "Msusssssss Assu", 6, "rid", ++rid, "op", "heartbeat", "group", "four",
            "member", "m2", "prefixes", 1, "orders.", "partitions", (uint64_t) 8);
    rt_recv (sock, &reply, BT_WAIT_MS);
    rt_check_error (&reply, "bad_request", true, rid, "4 partitions");
    rt_reply_fini (&reply);
    //  reset: exactly one of to and to_ts, to >= 1
    s_send (sock, "Msussss", 3, "rid", ++rid, "op", "reset", "group", "four");
    rt_recv (sock, &reply, BT_WAIT_MS);
    rt_check_error (&reply, "bad_request", true, rid, "to");
    rt_reply_fini (&reply);
    s_send (sock, "Msusssssu", 4, "rid", ++rid, "op", "reset", "group", "four", "to",
            (uint64_t) 0);
    rt_recv (sock, &reply, BT_WAIT_MS);
    rt_check_error (&reply, "bad_request", true, rid, "to");
    rt_reply_fini (&reply);
    //  Unknown groups
    s_send (sock, "Msussss", 3, "rid", ++rid, "op", "show", "group", "nope");
    rt_recv (sock, &reply, BT_WAIT_MS);
    rt_check_error (&reply, "bad_request", true, rid, "no group 'nope'");
    rt_reply_fini (&reply);
    s_send (sock, "Msusssssu", 4, "rid", ++rid, "op", "reset", "group", "nope", "to",
            (uint64_t) 1);
    rt_recv (sock, &reply, BT_WAIT_MS);
    rt_check_error (&reply, "bad_request", true, rid, "no group 'nope'");
    rt_reply_fini (&reply);
    s_send (sock, "Msussss", 3, "rid", ++rid, "op", "delete", "group", "nope");
    rt_recv (sock, &reply, BT_WAIT_MS);
    rt_check_error (&reply, "bad_request", true, rid, "no group 'nope'");
    rt_reply_fini (&reply);
    //  leave of a member not in the group: answered all the same
    s_send (sock, "Msussssss", 4, "rid", ++rid, "op", "leave", "group", "four", "member",
            "stranger");
    rt_recv (sock, &reply, BT_WAIT_MS);
    s_check_group (&reply, rid, "leave");
    rt_reply_fini (&reply);
    //  The group is as it was
    s_pos_t positions [S_PARTS_MAX];
    s_show (sock, ++rid, "four", positions, &reply);
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
    s_send (sock, "Msusssssss Ass su", 6, "rid", rid, "op", "heartbeat", "group", "two",
            "member", "m", "prefixes", 2, "a.", "b.", "partitions", (uint64_t) 1);
    rt_recv (sock, &reply, BT_WAIT_MS);
    s_check_group (&reply, rid, "heartbeat");
    cr_assert_eq (rt_get (reply.body, "assigned")->via.array.size, 1);
    uint64_t generation = rt_uint (reply.body, "generation");
    rt_reply_fini (&reply);
    //  The same set in another order, once more, and no partitions: accepted
    s_send (sock, "Msusssssss Asss", 5, "rid", ++rid, "op", "heartbeat", "group", "two",
            "member", "m2", "prefixes", 3, "b.", "a.", "b.");
    rt_recv (sock, &reply, BT_WAIT_MS);
    s_check_group (&reply, rid, "heartbeat");
    cr_assert_eq (rt_uint (reply.body, "partitions"), 1);
    cr_assert_eq (rt_get (reply.body, "assigned")->via.array.size, 0, "m holds the one");
    cr_assert_gt (rt_uint (reply.body, "generation"), generation, "a join");
    generation = rt_uint (reply.body, "generation");
    rt_reply_fini (&reply);
    //  No prefixes is every topic: another set, refused naming the group's
    s_send (sock, "Msussssss", 4, "rid", ++rid, "op", "heartbeat", "group", "two",
            "member", "m2");
    rt_recv (sock, &reply, BT_WAIT_MS);
    rt_check_error (&reply, "bad_request", true, rid, "1 partitions and prefixes \"a.\", \"b.\"");
    rt_reply_fini (&reply);
    //  show: m2 holds nothing, so its committed and lag are nil
    s_pos_t positions [S_PARTS_MAX];
    s_show (sock, ++rid, "two", positions, &reply);
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
    s_send (sock, "Msussssss", 4, "rid", ++rid, "op", "leave", "group", "two", "member", "m2");
    rt_recv (sock, &reply, BT_WAIT_MS);
    s_check_group (&reply, rid, "leave");
    rt_reply_fini (&reply);
    s_show (sock, ++rid, "two", positions, &reply);
    cr_assert_gt (rt_uint (reply.body, "generation"), generation, "a leave");
    rt_reply_fini (&reply);
    bt_stop_clean ();
}

//  ---------------------------------------------------------------------
//  Assignment, revoke, expiry

Test (heraldd_groups, two_members_share_evenly_and_a_revoked_partition_moves_once_let_go)
{
    bt_start ();
    s_member_t a, b;
    s_member_init (&a, "g", "a", "orders.");
    s_member_init (&b, "g", "b", "orders.");
    s_beat (&a);
    cr_assert_eq (a.count, 32);
    uint64_t a_epochs [32];
    for (size_t index = 0; index < 32; index++)
        a_epochs [a.held [index].partition] = a.held [index].epoch;
    //  b joins: a is asked to let half go, b gets nothing yet
    s_beat (&b);
    cr_assert_eq (b.count, 0, "nothing moves before its owner let it go");
    s_pos_t before [32];
    memcpy (before, a.held, sizeof (before));
    s_beat (&a);
    cr_assert_eq (a.count, 16, "a's reply revokes half");
    s_beat (&b);
    cr_assert_eq (b.count, 0, "a's last heartbeat still listed them");
    //  a lets go: heartbeats without them (what it was assigned)
    s_beat (&a);
    cr_assert_eq (a.count, 16);
    s_beat (&b);
    cr_assert_eq (b.count, 16, "b gets what a let go");
    bool seen [32] = { false };
    for (size_t index = 0; index < 16; index++) {
        cr_assert (!s_held (&a, b.held [index].partition), "never held by two");
        cr_assert_gt (b.held [index].epoch, a_epochs [b.held [index].partition],
                      "a new grant has a higher epoch");
        seen [a.held [index].partition] = seen [b.held [index].partition] = true;
    }
    for (size_t index = 0; index < 32; index++)
        cr_assert (seen [index], "partition %zu is held", index);
    //  Stable: more heartbeats change nothing
    s_beat (&a);
    s_beat (&b);
    cr_assert_eq (a.count, 16);
    cr_assert_eq (b.count, 16);
    zsock_t *admin = bt_client ();
    cr_assert_eq (bt_status_extra (admin, 1, "group_members"), 2);
    cr_assert_geq (bt_status_extra (admin, 2, "group_rebalances"), 2);
    (void) before;
    bt_stop_clean ();
}

Test (heraldd_groups, an_expired_member_hands_its_positions_over_and_is_fenced)
{
    bt_start ();
    s_member_t a, b;
    s_member_init (&a, "g", "a", NULL);
    a.session_ms = 600;
    s_member_init (&b, "g", "b", NULL);
    s_beat (&a);
    cr_assert_eq (a.count, 32);
    //  a declares a batch on partition 5 and dies in it
    s_pos_t old = *s_held (&a, 5);
    s_pos_t declared = { 5, old.epoch, 4, 9 };
    uint64_t fenced [S_PARTS_MAX];
    cr_assert_eq (s_commit (&a, &declared, 1, fenced), 0);
    //  b joins; a never heartbeats again: after its session b holds all
    s_beat_until (&b, 32, 20000);
    const s_pos_t *got = s_held (&b, 5);
    cr_assert_eq (got->committed, 4, "the new owner starts after what a committed");
    cr_assert_eq (got->delivered, 9, "and knows what a may have been handling");
    cr_assert_gt (got->epoch, old.epoch);
    //  a, come back late, commits under its old epoch: fenced, nothing changed
    s_pos_t late = { 5, old.epoch, 9, 9 };
    cr_assert_eq (s_commit (&a, &late, 1, fenced), 1);
    cr_assert_eq (fenced [0], 5);
    rt_reply_t reply;
    s_pos_t positions [S_PARTS_MAX];
    s_show (b.sock, 77, "g", positions, &reply);
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

Test (heraldd_groups, positions_survive_kill_and_a_claim_is_kept_while_the_rest_waits_the_grace)
{
    bt_start ();
    s_member_t a;
    s_member_init (&a, "g", "a", "orders.");
    //  A long session: the first heartbeat after the restart comes well
    //  within it
    a.session_ms = 10000;
    s_beat (&a);
    cr_assert_eq (a.count, 32);
    s_pos_t positions [32];
    for (size_t index = 0; index < 32; index++)
        positions [index] = (s_pos_t) { a.held [index].partition, a.held [index].epoch,
                                        10 + index, 20 + index };
    uint64_t fenced [S_PARTS_MAX];
    cr_assert_eq (s_commit (&a, positions, 32, fenced), 0);
    bu_broker_kill (bt_broker);
    cr_assert_eq (bu_broker_restart (bt_broker, BT_START_MS), 0);
    rt_reply_t reply;
    s_pos_t shown [S_PARTS_MAX];
    zsock_t *admin = bt_client ();
    s_show (admin, 5, "g", shown, &reply);
    rt_reply_fini (&reply);
    for (size_t index = 0; index < 32; index++) {
        cr_assert_eq (shown [index].committed, 10 + index, "a commit survives kill -9");
        cr_assert_eq (shown [index].delivered, 20 + index);
        cr_assert_eq (shown [index].epoch, positions [index].epoch);
    }
    //  a claims half under the current epochs: kept, the same epochs; the
    //  other half nobody claims: not granted within the grace
    s_beat_owned (&a, positions, 16, &reply);
    rt_reply_fini (&reply);
    cr_assert_eq (a.count, 16, "only the claims, before the grace has passed");
    for (size_t index = 0; index < 16; index++) {
        cr_assert_eq (a.held [index].partition, positions [index].partition);
        cr_assert_eq (a.held [index].epoch, positions [index].epoch, "a claim is kept");
        cr_assert_eq (a.held [index].committed, 10 + index);
    }
    //  After the grace the rest is granted, under new epochs
    s_beat_until (&a, 32, 40000);
    for (size_t index = 16; index < 32; index++) {
        const s_pos_t *got = s_held (&a, index);
        cr_assert_gt (got->epoch, positions [index].epoch);
        cr_assert_eq (got->committed, 10 + index);
        cr_assert_eq (got->delivered, 20 + index);
    }
    bt_stop_clean ();
}

//  ---------------------------------------------------------------------
//  reset and delete

Test (heraldd_groups, reset_fences_and_regrants_from_the_new_position)
{
    bt_start ();
    s_member_t a;
    s_member_init (&a, "g", "a", NULL);
    s_beat (&a);
    cr_assert_eq (a.count, 32);
    s_pos_t old [32];
    memcpy (old, a.held, sizeof (old));
    for (size_t index = 0; index < 32; index++)
        old [index].committed = old [index].delivered = 50;
    uint64_t fenced [S_PARTS_MAX];
    cr_assert_eq (s_commit (&a, old, 32, fenced), 0);
    zsock_t *admin = bt_client ();
    s_send (admin, "Msusssssu", 4, "rid", (uint64_t) 3, "op", "reset", "group", "g", "to",
            (uint64_t) 7);
    rt_reply_t reply;
    rt_recv (admin, &reply, BT_WAIT_MS);
    s_check_group (&reply, 3, "reset");
    cr_assert_eq (rt_uint (reply.body, "fenced"), 1);
    rt_reply_fini (&reply);
    //  a commit under the old epochs is fenced whole
    cr_assert_eq (s_commit (&a, old, 32, fenced), 32);
    //  the next heartbeat revokes everything
    s_beat (&a);
    cr_assert_eq (a.count, 0, "reset revokes every partition");
    //  let go: granted again, from the new position, under new epochs
    s_beat (&a);
    cr_assert_eq (a.count, 32);
    for (size_t index = 0; index < 32; index++) {
        cr_assert_eq (a.held [index].committed, 6);
        cr_assert_eq (a.held [index].delivered, 6);
        cr_assert_gt (a.held [index].epoch, old [a.held [index].partition].epoch);
    }
    bt_stop_clean ();
}

Test (heraldd_groups, delete_is_refused_while_members_are_live)
{
    bt_start ();
    s_member_t a;
    s_member_init (&a, "g", "a", NULL);
    s_beat (&a);
    zsock_t *admin = bt_client ();
    rt_reply_t reply;
    s_send (admin, "Msussss", 3, "rid", (uint64_t) 1, "op", "delete", "group", "g");
    rt_recv (admin, &reply, BT_WAIT_MS);
    rt_check_error (&reply, "bad_request", true, 1, "has 1 member; stop them first");
    rt_reply_fini (&reply);
    s_send (a.sock, "Msussssss", 4, "rid", (uint64_t) 2, "op", "leave", "group", "g",
            "member", "a");
    rt_recv (a.sock, &reply, BT_WAIT_MS);
    s_check_group (&reply, 2, "leave");
    rt_reply_fini (&reply);
    s_send (admin, "Msussss", 3, "rid", (uint64_t) 3, "op", "delete", "group", "g");
    rt_recv (admin, &reply, BT_WAIT_MS);
    s_check_group (&reply, 3, "delete");
    rt_reply_fini (&reply);
    s_send (admin, "Msussss", 3, "rid", (uint64_t) 4, "op", "show", "group", "g");
    rt_recv (admin, &reply, BT_WAIT_MS);
    rt_check_error (&reply, "bad_request", true, 4, "no group 'g'");
    rt_reply_fini (&reply);
    //  A new heartbeat makes it again, from scratch
    s_member_t c;
    s_member_init (&c, "g", "c", "x.");
    s_beat (&c);
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
        s_send (sock, "Msusssssssu", 5, "rid", rid, "op", "heartbeat", "group", group,
                "member", member, "session_ms", session_ms);
    else
        s_send (sock, "Msussssss", 4, "rid", rid, "op", "heartbeat", "group", group,
                "member", member);
    rt_recv (sock, reply, BT_WAIT_MS);
}

static size_t
s_listed (zsock_t *sock, uint64_t rid)
{
    rt_reply_t reply;
    s_send (sock, "Msuss", 2, "rid", rid, "op", "list");
    rt_recv (sock, &reply, BT_WAIT_MS);
    s_check_group (&reply, rid, "list");
    size_t count = rt_get (reply.body, "groups")->via.array.size;
    rt_reply_fini (&reply);
    return count;
}

Test (heraldd_groups, a_group_or_member_beyond_the_limits_is_refused_and_nothing_is_made)
{
    const char *const flags [] = { "--max-groups", "2", "--max-group-members", "2", NULL };
    bt_start_with (flags);
    zsock_t *sock = bt_client ();
    rt_reply_t reply;
    uint64_t rid = 1;
    //  Two groups are made; a third is refused, naming the limit and the setting
    s_beat_raw (sock, ++rid, "g1", "a", 1000, &reply);
    s_check_group (&reply, rid, "heartbeat");
    rt_reply_fini (&reply);
    s_beat_raw (sock, ++rid, "g2", "a", 0, &reply);
    s_check_group (&reply, rid, "heartbeat");
    rt_reply_fini (&reply);
    for (int round = 0; round < 3; round++) {
        s_beat_raw (sock, ++rid, "g3", "a", 0, &reply);
        rt_check_error (&reply, "overloaded", true, rid,
                       "group limit reached: 2 groups (max-groups); delete unused groups "
                       "with `herald group delete`");
        rt_reply_fini (&reply);
    }
    //  Nothing was made: not in the store, not in memory
    s_send (sock, "Msussss", 3, "rid", ++rid, "op", "show", "group", "g3");
    rt_recv (sock, &reply, BT_WAIT_MS);
    rt_check_error (&reply, "bad_request", true, rid, "no group 'g3'");
    rt_reply_fini (&reply);
    cr_assert_eq (s_listed (sock, ++rid), 2);
    cr_assert_eq (bt_status_extra (sock, ++rid, "groups"), 2);
    cr_assert_eq (bt_status_extra (sock, ++rid, "group_refused"), 3);
    //  A deleted group frees its slot
    s_send (sock, "Msussssss", 4, "rid", ++rid, "op", "leave", "group", "g2", "member", "a");
    rt_recv (sock, &reply, BT_WAIT_MS);
    s_check_group (&reply, rid, "leave");
    rt_reply_fini (&reply);
    s_send (sock, "Msussss", 3, "rid", ++rid, "op", "delete", "group", "g2");
    rt_recv (sock, &reply, BT_WAIT_MS);
    s_check_group (&reply, rid, "delete");
    rt_reply_fini (&reply);
    s_beat_raw (sock, ++rid, "g3", "a", 0, &reply);
    s_check_group (&reply, rid, "heartbeat");
    rt_reply_fini (&reply);
    cr_assert_eq (s_listed (sock, ++rid), 2);

    //  Two members of g1 (session 1000 ms); a third is refused, with the
    //  session as the hint of when a slot may free
    zsock_t *other = bt_client ();
    s_beat_raw (other, ++rid, "g1", "b", 0, &reply);
    s_check_group (&reply, rid, "heartbeat");
    rt_reply_fini (&reply);
    s_beat_raw (sock, ++rid, "g1", "a", 0, &reply);
    s_check_group (&reply, rid, "heartbeat");
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
        s_check_group (&reply, rid, "heartbeat");
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
    s_pos_t positions [S_PARTS_MAX];
    s_show (sock, ++rid, "g1", positions, &reply);
    const msgpack_object *members = rt_get (reply.body, "members");
    cr_assert_eq (members->via.array.size, 2);
    cr_assert (rt_str_is (rt_get (&members->via.array.ptr [0], "member"), "a"));
    cr_assert (rt_str_is (rt_get (&members->via.array.ptr [1], "member"), "c"));
    rt_reply_fini (&reply);
    //  A member that leaves frees its slot at once
    s_send (third, "Msussssss", 4, "rid", ++rid, "op", "leave", "group", "g1", "member", "c");
    rt_recv (third, &reply, BT_WAIT_MS);
    s_check_group (&reply, rid, "leave");
    rt_reply_fini (&reply);
    s_beat_raw (other, ++rid, "g1", "d", 0, &reply);
    s_check_group (&reply, rid, "heartbeat");
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
    s_member_t alice, bob, carol;
    s_member_init (&alice, "all", "alice-1", NULL);
    s_member_init (&bob, "orders", "bob-1", "orders.");
    s_member_init (&carol, "orders", "carol-1", "orders.");
    alice.sock = alice_sock;
    bob.sock = s_secure_client (&s_bob);
    carol.sock = s_secure_client (&s_carol);
    s_beat (&alice);
    cr_assert_eq (alice.count, 32, "read = * may join a group of every topic");
    s_beat (&bob);
    cr_assert_eq (bob.count, 32, "bob reads orders.: may join a group of orders.");
    rt_reply_t reply;
    //  A group bob cannot read: refused, and not made
    s_send (bob.sock, "Msusssssss As", 5, "rid", (uint64_t) 3, "op", "heartbeat", "group",
            "billing", "member", "bob-1", "prefixes", 1, "billing.");
    rt_recv (bob.sock, &reply, BT_WAIT_MS);
    rt_check_error (&reply, "unauthorized", true, 3, "read access");
    rt_reply_fini (&reply);
    s_send (carol.sock, "Msusssssss As", 5, "rid", (uint64_t) 4, "op", "heartbeat", "group",
            "orders", "member", "carol-1", "prefixes", 1, "orders.");
    rt_recv (carol.sock, &reply, BT_WAIT_MS);
    rt_check_error (&reply, "unauthorized", true, 4, "read access");
    rt_reply_fini (&reply);
    s_send (bob.sock, "Msussss", 3, "rid", (uint64_t) 5, "op", "show", "group", "all");
    rt_recv (bob.sock, &reply, BT_WAIT_MS);
    rt_check_error (&reply, "unauthorized", true, 5, "read access");
    rt_reply_fini (&reply);
    s_send (carol.sock, "Msusssssss AAuuuu", 5, "rid", (uint64_t) 6, "op", "commit", "group",
            "orders", "member", "carol-1", "positions", 1, 4, (uint64_t) 0, (uint64_t) 1,
            (uint64_t) 0, (uint64_t) 0);
    rt_recv (carol.sock, &reply, BT_WAIT_MS);
    rt_check_error (&reply, "unauthorized", true, 6, "read access");
    rt_reply_fini (&reply);
    //  list: only what the user may read
    s_send (bob.sock, "Msuss", 2, "rid", (uint64_t) 7, "op", "list");
    rt_recv (bob.sock, &reply, BT_WAIT_MS);
    s_check_group (&reply, 7, "list");
    const msgpack_object *groups = rt_get (reply.body, "groups");
    cr_assert_eq (groups->via.array.size, 1);
    cr_assert (rt_str_is (rt_get (&groups->via.array.ptr [0], "group"), "orders"));
    rt_reply_fini (&reply);
    s_send (alice.sock, "Msuss", 2, "rid", (uint64_t) 8, "op", "list");
    rt_recv (alice.sock, &reply, BT_WAIT_MS);
    cr_assert_eq (rt_get (reply.body, "groups")->via.array.size, 2, "no 'billing' was made");
    rt_reply_fini (&reply);
    //  reset and delete: admin = groups
    s_send (bob.sock, "Msusssssu", 4, "rid", (uint64_t) 9, "op", "reset", "group", "orders",
            "to", (uint64_t) 1);
    rt_recv (bob.sock, &reply, BT_WAIT_MS);
    rt_check_error (&reply, "unauthorized", true, 9, "admin = groups");
    rt_reply_fini (&reply);
    s_send (alice.sock, "Msusssssu", 4, "rid", (uint64_t) 10, "op", "reset", "group",
            "orders", "to", (uint64_t) 1);
    rt_recv (alice.sock, &reply, BT_WAIT_MS);
    s_check_group (&reply, 10, "reset");
    rt_reply_fini (&reply);
    s_send (bob.sock, "Msussssss", 4, "rid", (uint64_t) 11, "op", "leave", "group", "orders",
            "member", "bob-1");
    rt_recv (bob.sock, &reply, BT_WAIT_MS);
    s_check_group (&reply, 11, "leave");
    rt_reply_fini (&reply);
    s_send (bob.sock, "Msussss", 3, "rid", (uint64_t) 12, "op", "delete", "group", "orders");
    rt_recv (bob.sock, &reply, BT_WAIT_MS);
    rt_check_error (&reply, "unauthorized", true, 12, "admin = groups");
    rt_reply_fini (&reply);
    s_send (alice.sock, "Msussss", 3, "rid", (uint64_t) 13, "op", "delete", "group", "orders");
    rt_recv (alice.sock, &reply, BT_WAIT_MS);
    s_check_group (&reply, 13, "delete");
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
