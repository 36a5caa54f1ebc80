/*  =========================================================================
    test_heraldd_reuse - PUBLISH of an id already stored with other content

    HWP/1 recognises a duplicate by id alone, and still does: a second
    event under a stored id is not stored.  What this adds (issue 11,
    docs/protocol.md "ACK: reused") is that such a duplicate is not passed
    off as a retry: when its topic or data differ from what the id was
    stored with, the ACK carries `reused`, an array of bool beside `dup`,
    sent only when one entry is true.  A true retry stays a plain `dup`,
    with the ACK old clients know.  The raw ACK body is read here with
    msgpack directly, so the test sees the keys on the wire, not what our
    own decoder makes of them.
    =========================================================================
*/

#include <criterion/criterion.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "brokertest.h"

TestSuite (heraldd_reuse, .init = bt_setup, .fini = bt_teardown, .timeout = 90);

//  The raw ACK body of reply: whether it has a `reused` key, and if so
//  its entries (count of them, which must be bools) into reused.
static bool
s_raw_reused (bu_reply_t *reply, bool *reused, size_t count, size_t *keys)
{
    zframe_t *body = zmsg_first (reply->msg);
    body = zmsg_next (reply->msg);
    cr_assert_not_null (body);
    msgpack_unpacked unpacked;
    msgpack_unpacked_init (&unpacked);
    size_t offset = 0;
    cr_assert_eq (msgpack_unpack_next (&unpacked, (const char *) zframe_data (body),
                                       zframe_size (body), &offset),
                  MSGPACK_UNPACK_SUCCESS);
    const msgpack_object *root = &unpacked.data;
    cr_assert_eq (root->type, MSGPACK_OBJECT_MAP);
    *keys = root->via.map.size;
    bool found = false;
    for (uint32_t index = 0; index < root->via.map.size; index++) {
        const msgpack_object_kv *kv = &root->via.map.ptr [index];
        if (kv->key.type == MSGPACK_OBJECT_STR && kv->key.via.str.size == 6
        &&  memcmp (kv->key.via.str.ptr, "reused", 6) == 0) {
            cr_assert_eq (kv->val.type, MSGPACK_OBJECT_ARRAY, "reused must be an array");
            cr_assert_eq (kv->val.via.array.size, count, "one reused entry per event");
            for (size_t item = 0; item < count; item++) {
                cr_assert_eq (kv->val.via.array.ptr [item].type, MSGPACK_OBJECT_BOOLEAN);
                reused [item] = kv->val.via.array.ptr [item].via.boolean;
            }
            found = true;
        }
    }
    msgpack_unpacked_destroy (&unpacked);
    return found;
}

Test (heraldd_reuse, same_id_other_data_is_a_duplicate_flagged_reused)
{
    bt_start ();
    zsock_t *client = bt_client ();
    bu_event_t first;
    bu_event_init (&first, "orders.1", "hello");
    bu_reply_t reply;
    bt_publish (client, 1, &first, 1, &reply);
    bu_reply_fini (&reply);

    bu_event_t other = first;
    other.data = "changed";
    other.data_len = 7;
    bt_publish (client, 2, &other, 1, &reply);
    cr_assert (reply.body.ack.dup [0], "still a duplicate: not stored");
    cr_assert_eq (reply.body.ack.seq [0], 1, "the seq the id was stored at");
    cr_assert_eq (reply.body.ack.ver [0], 1);
    bool reused [1] = { false };
    size_t keys;
    cr_assert (s_raw_reused (&reply, reused, 1, &keys), "the ACK must carry reused");
    cr_assert (reused [0]);
    cr_assert_eq (keys, 5);
    bu_reply_fini (&reply);
    cr_assert_eq (bt_head (client), 1, "the reused id's event was stored");
    cr_assert_eq (bt_status_extra (client, 90, "ids_reused"), 1);
    cr_assert_eq (bt_status_extra (client, 91, "duplicates"), 1);
}

Test (heraldd_reuse, same_id_other_topic_is_flagged_reused)
{
    bt_start ();
    zsock_t *client = bt_client ();
    bu_event_t first;
    bu_event_init (&first, "orders.1", "hello");
    bu_reply_t reply;
    bt_publish (client, 1, &first, 1, &reply);
    bu_reply_fini (&reply);
    bu_event_t other = first;
    other.topic = "orders.2";
    bt_publish (client, 2, &other, 1, &reply);
    bool reused [1] = { false };
    size_t keys;
    cr_assert (reply.body.ack.dup [0]);
    cr_assert (s_raw_reused (&reply, reused, 1, &keys) && reused [0]);
    bu_reply_fini (&reply);
}

Test (heraldd_reuse, a_true_retry_is_a_plain_duplicate_without_the_key)
{
    bt_start ();
    zsock_t *client = bt_client ();
    bu_event_t first;
    bu_event_init (&first, "orders.1", "hello");
    bu_reply_t reply;
    bt_publish (client, 1, &first, 1, &reply);
    bu_reply_fini (&reply);
    bt_publish (client, 2, &first, 1, &reply);
    cr_assert (reply.body.ack.dup [0]);
    bool reused [1];
    size_t keys;
    cr_assert_not (s_raw_reused (&reply, reused, 1, &keys),
                   "a retry's ACK is the one old clients know: no reused key");
    cr_assert_eq (keys, 4);
    cr_assert_null (reply.body.ack.reused);
    bu_reply_fini (&reply);
    cr_assert_eq (bt_status_extra (client, 90, "ids_reused"), 0);
}

Test (heraldd_reuse, reuse_is_flagged_per_event_also_within_one_batch)
{
    bt_start ();
    zsock_t *client = bt_client ();
    bu_event_t stored;
    bu_event_init (&stored, "t", "stored");
    bu_reply_t reply;
    bt_publish (client, 1, &stored, 1, &reply);
    bu_reply_fini (&reply);

    //  new, retry of stored, reuse of stored, a copy of the new one, a
    //  reuse of the new one within this batch
    bu_event_t events [5];
    bu_event_init (&events [0], "t", "new");
    events [1] = stored;
    events [2] = stored;
    events [2].data = "not stored";
    events [2].data_len = 10;
    events [3] = events [0];
    events [4] = events [0];
    events [4].topic = "u";
    bt_publish (client, 2, events, 5, &reply);
    static const bool dup [5] = { false, true, true, true, true };
    static const bool want [5] = { false, false, true, false, true };
    static const uint64_t seq [5] = { 2, 1, 1, 2, 2 };
    bool reused [5] = { false };
    size_t keys;
    cr_assert (s_raw_reused (&reply, reused, 5, &keys));
    for (size_t index = 0; index < 5; index++) {
        cr_assert_eq (reply.body.ack.dup [index], dup [index], "dup[%zu]", index);
        cr_assert_eq (reused [index], want [index], "reused[%zu]", index);
        cr_assert_eq (reply.body.ack.seq [index], seq [index], "seq[%zu]", index);
    }
    bu_reply_fini (&reply);
    cr_assert_eq (bt_head (client), 2);
    cr_assert_eq (bt_status_extra (client, 90, "ids_reused"), 2);
}

Test (heraldd_reuse, reuse_is_flagged_after_a_restart)
{
    bt_start ();
    zsock_t *client = bt_client ();
    bu_event_t first;
    bu_event_init (&first, "orders.1", "hello");
    bu_reply_t reply;
    bt_publish (client, 1, &first, 1, &reply);
    bu_reply_fini (&reply);
    bt_drop (&client);
    bt_stop_clean ();
    bt_start ();
    client = bt_client ();
    bu_event_t other = first;
    other.data = "hellp";
    bt_publish (client, 2, &other, 1, &reply);
    bool reused [1] = { false };
    size_t keys;
    cr_assert (reply.body.ack.dup [0]);
    cr_assert (s_raw_reused (&reply, reused, 1, &keys) && reused [0]);
    bu_reply_fini (&reply);
}

//  Run `herald --endpoint API pub TOPIC DATA --id ID`; its exit status,
//  its stdout and stderr together in out.
static int
s_herald_pub (const char *topic, const char *data, const char *id, char *out, size_t size)
{
    const char *builddir = getenv ("HERALD_BUILDDIR");
    char log [1024], command [4096];
    snprintf (log, sizeof log, "%s/pub.out", bt_broker->dir);
    snprintf (command, sizeof command,
              "'%s/tools/herald' --endpoint '%s' pub '%s' '%s' --id %s >'%s' 2>&1",
              builddir? builddir: ".", bt_broker->api, topic, data, id, log);
    int status = system (command);
    FILE *file = fopen (log, "r");
    cr_assert_not_null (file);
    size_t len = fread (out, 1, size - 1, file);
    out [len] = '\0';
    fclose (file);
    cr_assert (WIFEXITED (status), "herald pub did not exit: %s", out);
    return WEXITSTATUS (status);
}

Test (heraldd_reuse, herald_pub_of_a_reused_id_fails_and_says_so)
{
    bt_start ();
    const char *id = "01a20263-c402-713e-a4e7-599d156d5e50";
    char out [4096];
    cr_assert_eq (s_herald_pub ("orders.1", "hello", id, out, sizeof out), 0, "%s", out);
    cr_assert_eq (s_herald_pub ("orders.1", "changed", id, out, sizeof out), 1,
                  "a reused id must not exit 0: %s", out);
    cr_assert (strstr (out, "\"reused\":true"), "%s", out);
    cr_assert (strstr (out, "this event was not stored"), "%s", out);
    cr_assert_eq (s_herald_pub ("orders.1", "hello", id, out, sizeof out), 0,
                  "a retry exits 0: %s", out);
    cr_assert (strstr (out, "\"dup\":true") && !strstr (out, "reused"), "%s", out);
}
