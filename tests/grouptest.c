/*  =========================================================================
    grouptest - a raw consumer-group member (see grouptest.h)
    =========================================================================
*/

#include <criterion/criterion.h>
#include <stdarg.h>
#include <string.h>
#include "grouptest.h"

//  Send GROUP with a body packed by format (rt_vpack)
void
gt_send (zsock_t *sock, const char *format, ...)
{
    va_list args;
    va_start (args, format);
    rt_vsend (sock, "GROUP", format, args);
    va_end (args);
}

//  The reply is GROUP, to rid, for op.
void
gt_check_group (rt_reply_t *reply, uint64_t rid, const char *op)
{
    const msgpack_object *message = rt_get (reply->body, "message");
    cr_assert_str_eq (reply->command, "GROUP", "expected GROUP, got %s: %.*s", reply->command,
                      message? (int) message->via.str.size: 0, message? message->via.str.ptr: "");
    cr_assert_eq (rt_uint (reply->body, "rid"), rid);
    cr_assert (rt_str_is (rt_get (reply->body, "op"), op));
}

void
gt_member_init (gt_member_t *member, const char *group, const char *name, const char *prefix)
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
void
gt_beat_owned (gt_member_t *member, const gt_pos_t *owned, size_t owned_count,
               rt_reply_t *reply)
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
    gt_check_group (reply, rid, "heartbeat");
    cr_assert (rt_str_is (rt_get (reply->body, "member"), member->name));
    member->generation = rt_uint (reply->body, "generation");
    const msgpack_object *assigned = rt_get (reply->body, "assigned");
    cr_assert (assigned && assigned->type == MSGPACK_OBJECT_ARRAY);
    member->count = assigned->via.array.size;
    for (size_t index = 0; index < member->count; index++) {
        const msgpack_object *item = &assigned->via.array.ptr [index];
        member->held [index] = (gt_pos_t) {
            rt_uint (item, "partition"), rt_uint (item, "epoch"), rt_uint (item, "committed"),
            rt_uint (item, "delivered")
        };
    }
}

//  Heartbeat owning what it was last assigned (what a member does).
void
gt_beat (gt_member_t *member)
{
    gt_pos_t owned [GT_PARTS_MAX] = { { 0 } };
    memcpy (owned, member->held, member->count * sizeof (gt_pos_t));
    rt_reply_t reply;
    gt_beat_owned (member, owned, member->count, &reply);
    rt_reply_fini (&reply);
}

const gt_pos_t *
gt_held (const gt_member_t *member, uint64_t partition)
{
    for (size_t index = 0; index < member->count; index++)
        if (member->held [index].partition == partition)
            return &member->held [index];
    return NULL;
}

//  Commit positions; the fenced partitions into fenced (returns the count).
size_t
gt_commit (gt_member_t *member, const gt_pos_t *positions, size_t count, uint64_t *fenced)
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
    gt_check_group (&reply, rid, "commit");
    const msgpack_object *list = rt_get (reply.body, "fenced");
    cr_assert (list && list->type == MSGPACK_OBJECT_ARRAY);
    size_t fenced_count = list->via.array.size;
    for (size_t index = 0; index < fenced_count; index++)
        fenced [index] = list->via.array.ptr [index].via.u64;
    rt_reply_fini (&reply);
    return fenced_count;
}

//  GROUP show; the positions into positions[partition] (caller fini's reply).
void
gt_show (zsock_t *sock, uint64_t rid, const char *group, gt_pos_t *positions,
         rt_reply_t *reply)
{
    gt_send (sock, "Msussss", 3, "rid", rid, "op", "show", "group", group);
    rt_recv (sock, reply, BT_WAIT_MS);
    gt_check_group (reply, rid, "show");
    const msgpack_object *list = rt_get (reply->body, "positions");
    cr_assert (list && list->type == MSGPACK_OBJECT_ARRAY);
    for (size_t index = 0; index < list->via.array.size; index++) {
        const msgpack_object *item = &list->via.array.ptr [index];
        cr_assert_eq (rt_uint (item, "partition"), index);
        positions [index] = (gt_pos_t) { index, rt_uint (item, "epoch"),
                                        rt_uint (item, "committed"),
                                        rt_uint (item, "delivered") };
    }
}

//  Heartbeat member until it holds want partitions, for at most
//  timeout_ms (then fails), pacing by GT_POLL_MS.
void
gt_beat_until (gt_member_t *member, size_t want, int timeout_ms)
{
    int64_t deadline = zclock_mono () + timeout_ms;
    gt_beat (member);
    while (member->count != want) {
        cr_assert (zclock_mono () < deadline, "%s holds %zu partitions, not %zu, after %d ms",
                   member->name, member->count, want, timeout_ms);
        zclock_sleep (GT_POLL_MS);
        gt_beat (member);
    }
}
