/*  =========================================================================
    test_heraldd_publish - PUBLISH on the wire: seqs, vers, duplicates,
    pipelining, expect conflicts

    Each test starts the real heraldd (tests/brokertest.c, over
    tests/brokerutil.c) on ports chosen at run time with a fresh data
    directory, talks HWP/1 to it with plain czmq sockets and hand-packed
    MessagePack (docs/protocol.md is the contract, not our own encoder), and
    stops it.  Every receive has a timeout, every loop a count; .fini kills
    and reaps every broker a test started, also when an assertion ended it.
    =========================================================================
*/

#include <criterion/criterion.h>
#include <inttypes.h>
#include <string.h>

#include "brokertest.h"

TestSuite (heraldd_publish, .init = bt_setup, .fini = bt_teardown, .timeout = 90);

Test (heraldd_publish, publish_one_event_is_acked_at_seq_1)
{
    bt_start ();
    zsock_t *client = bt_client ();
    bu_event_t event;
    bu_event_init (&event, "orders.1", "hello");
    bu_reply_t reply;
    bt_publish (client, 7, &event, 1, &reply);
    cr_assert_eq (reply.body.ack.seq [0], 1);
    cr_assert_eq (reply.body.ack.ver [0], 1);
    cr_assert_eq (reply.body.ack.dup [0], false);
    bu_reply_fini (&reply);
}

Test (heraldd_publish, publish_same_id_again_is_a_duplicate)
{
    bt_start ();
    zsock_t *client = bt_client ();
    bu_event_t first, other;
    bu_event_init (&first, "orders.1", "hello");
    bu_event_init (&other, "orders.1", "other");
    bu_reply_t reply;
    bt_publish (client, 1, &first, 1, &reply);
    bu_reply_fini (&reply);
    bt_publish (client, 2, &other, 1, &reply);
    cr_assert_eq (reply.body.ack.seq [0], 2);
    bu_reply_fini (&reply);

    //  Same id, different data: recognised by id alone
    first.data = "changed";
    first.data_len = 7;
    bt_publish (client, 3, &first, 1, &reply);
    cr_assert_eq (reply.body.ack.seq [0], 1);
    cr_assert_eq (reply.body.ack.ver [0], 1);
    cr_assert_eq (reply.body.ack.dup [0], true);
    bu_reply_fini (&reply);
    cr_assert_eq (bt_head (client), 2, "a duplicate was stored");
}

Test (heraldd_publish, publish_batch_assigns_consecutive_seqs)
{
    bt_start ();
    zsock_t *client = bt_client ();
    bu_event_t events [5];
    for (size_t index = 0; index < 5; index++)
        bu_event_init (&events [index], "orders.batch", "data");
    bu_reply_t reply;
    bt_publish (client, 11, events, 5, &reply);
    for (size_t index = 0; index < 5; index++) {
        cr_assert_eq (reply.body.ack.seq [index], index + 1);
        cr_assert_eq (reply.body.ack.ver [index], index + 1);
        cr_assert_not (reply.body.ack.dup [index]);
    }
    bu_reply_fini (&reply);
    cr_assert_eq (bt_head (client), 5);
}

Test (heraldd_publish, publish_several_topics_keeps_ver_per_topic)
{
    bt_start ();
    zsock_t *client = bt_client ();
    const char *topics [6] = { "a.1", "b.1", "a.1", "c.1", "b.1", "a.1" };
    uint64_t vers [6] = { 1, 1, 2, 1, 2, 3 };
    bu_event_t events [6];
    for (size_t index = 0; index < 6; index++)
        bu_event_init (&events [index], topics [index], "d");
    bu_reply_t reply;
    bt_publish (client, 1, events, 4, &reply);      //  one batch of four
    for (size_t index = 0; index < 4; index++) {
        cr_assert_eq (reply.body.ack.seq [index], index + 1);
        cr_assert_eq (reply.body.ack.ver [index], vers [index], "event %zu: ver %" PRIu64,
                      index, reply.body.ack.ver [index]);
    }
    bu_reply_fini (&reply);
    bt_publish (client, 2, events + 4, 2, &reply);  //  and two more
    cr_assert_eq (reply.body.ack.seq [0], 5);
    cr_assert_eq (reply.body.ack.ver [0], 2);
    cr_assert_eq (reply.body.ack.seq [1], 6);
    cr_assert_eq (reply.body.ack.ver [1], 3);
    bu_reply_fini (&reply);

    bt_status (client, 3, &reply);
    cr_assert_eq (reply.body.status.head, 6);
    cr_assert_eq (reply.body.status.topics, 3);
    cr_assert_eq (reply.body.status.events, 6);
    bu_reply_fini (&reply);
}

Test (heraldd_publish, pipelined_publishes_are_acked_in_request_order)
{
    bt_start ();
    zsock_t *client = bt_client ();
    for (uint64_t rid = 1; rid <= 50; rid++) {
        bu_event_t event;
        bu_event_init (&event, rid % 2? "pipe.odd": "pipe.even", "x");
        bt_send_publish (client, rid, &event, 1);
    }
    for (uint64_t rid = 1; rid <= 50; rid++) {
        bu_reply_t reply;
        bt_recv (client, &reply);
        bt_check_ack (&reply, rid, 1);
        cr_assert_eq (reply.body.ack.seq [0], rid, "rid %" PRIu64 " got seq %" PRIu64,
                      rid, reply.body.ack.seq [0]);
        cr_assert_eq (reply.body.ack.ver [0], (rid + 1) / 2);
        bu_reply_fini (&reply);
    }
}

Test (heraldd_publish, two_clients_pipelining_get_gapless_distinct_seqs)
{
    bt_start ();
    zsock_t *clients [2] = { bt_client (), bt_client () };
    const size_t requests = 50, batch = 4;
    for (uint64_t rid = 1; rid <= requests; rid++)
        for (size_t which = 0; which < 2; which++) {
            bu_event_t events [4];
            for (size_t index = 0; index < batch; index++)
                bu_event_init (&events [index], which? "two.b": "two.a", "x");
            bt_send_publish (clients [which], rid, events, batch);
        }
    size_t total = 2 * requests * batch;
    bool seen [2 * 50 * 4 + 1] = { false };
    uint64_t last_ver [2] = { 0, 0 };
    for (size_t which = 0; which < 2; which++) {
        uint64_t previous = 0;
        for (uint64_t rid = 1; rid <= requests; rid++) {
            bu_reply_t reply;
            bt_recv (clients [which], &reply);
            bt_check_ack (&reply, rid, batch);
            for (size_t index = 0; index < batch; index++) {
                uint64_t seq = reply.body.ack.seq [index];
                cr_assert (seq >= 1 && seq <= total, "seq %" PRIu64 " out of 1..%zu", seq, total);
                cr_assert_not (seen [seq], "seq %" PRIu64 " given twice", seq);
                cr_assert_gt (seq, previous, "one client's seqs went back");
                cr_assert_eq (reply.body.ack.ver [index], last_ver [which] + 1);
                cr_assert_not (reply.body.ack.dup [index]);
                seen [seq] = true;
                previous = seq;
                last_ver [which]++;
            }
            bu_reply_fini (&reply);
        }
    }
    for (size_t seq = 1; seq <= total; seq++)
        cr_assert (seen [seq], "seq %zu never given: a gap", seq);
    cr_assert_eq (bt_head (clients [0]), total);
}

Test (heraldd_publish, expect_conflict_is_an_error_and_stores_nothing)
{
    bt_start ();
    zsock_t *client = bt_client ();
    bt_publish_many (client, "acct.1", 1, 1);

    //  A new topic's event first, then one whose expect fails
    bu_event_t batch [3];
    bu_event_init (&batch [0], "acct.2", "open");
    bu_event_init (&batch [1], "acct.1", "again");
    batch [1].has_expect = true;
    batch [1].expect = 0;
    bu_event_init (&batch [2], "acct.1", "more");
    bt_send_publish (client, 2, batch, 3);
    bu_reply_t reply;
    bt_recv (client, &reply);
    bt_check_error (&reply, HERALD_ERR_CONFLICT, true, 2);
    cr_assert (bu_str_eq (reply.body.error.topic, "acct.1"), "conflict names topic %.*s",
               (int) reply.body.error.topic.len, reply.body.error.topic.ptr);
    cr_assert_eq (reply.body.error.expected, 0);
    cr_assert_eq (reply.body.error.actual, 1);
    bu_reply_fini (&reply);

    bt_status (client, 3, &reply);
    cr_assert_eq (reply.body.status.head, 1, "a failed batch changed head to %" PRIu64,
                  reply.body.status.head);
    cr_assert_eq (reply.body.status.events, 1);
    cr_assert_eq (reply.body.status.topics, 1);
    bu_reply_fini (&reply);

    //  The right expect goes through, and the conflicting ids were not kept
    batch [1].expect = 1;
    bt_publish (client, 4, batch, 3, &reply);
    cr_assert_eq (reply.body.ack.seq [0], 2);
    cr_assert_not (reply.body.ack.dup [0]);
    cr_assert_eq (reply.body.ack.ver [1], 2);
    cr_assert_eq (reply.body.ack.ver [2], 3);
    bu_reply_fini (&reply);
}

Test (heraldd_publish, conflict_on_a_long_utf8_topic_gets_a_well_formed_error)
{
    bt_start ();
    zsock_t *client = bt_client ();
    //  Long topics of two-byte characters, at both alignments: a message
    //  quoting one, however it is cut, must not cut a character in half
    for (size_t shift = 0; shift < 2; shift++) {
        char topic [256];
        size_t len = 0;
        if (shift)
            topic [len++] = 'a';
        while (len + 2 <= 254) {
            topic [len++] = (char) 0xc3;
            topic [len++] = (char) 0xa9;              //  é
        }
        topic [len] = 0;
        bu_event_t event;
        bu_event_init (&event, topic, "x");
        bu_reply_t reply;
        bt_publish (client, 1 + 2 * shift, &event, 1, &reply);
        bu_reply_fini (&reply);
        bu_event_init (&event, topic, "y");
        event.has_expect = true;
        event.expect = 5;
        bt_send_publish (client, 2 + 2 * shift, &event, 1);
        bt_recv (client, &reply);
        bt_check_error (&reply, HERALD_ERR_CONFLICT, true, 2 + 2 * shift);
        cr_assert (bu_str_eq (reply.body.error.topic, topic));
        cr_assert_eq (reply.body.error.expected, 5);
        cr_assert_eq (reply.body.error.actual, 1);
        bu_reply_fini (&reply);
    }
}
