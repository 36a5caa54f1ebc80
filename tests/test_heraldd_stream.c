/*  =========================================================================
    test_heraldd_stream - what a subscriber and a reader get: fanout,
    REPLAY, READ, credit, CANCEL and idle expiry

    Fanout delivers the events of the subscribed prefixes in seq order,
    with the same envelope bytes as REPLAY.  A REPLAY or READ sends EVENTS
    as credit allows and ends with END, whose reason is done, cancelled or
    expired.  Each test starts the real heraldd (tests/brokertest.c) on
    ports chosen at run time with a fresh data directory, and stops it.
    No fixed sleeps, except replay_respects_credit, whose point is that
    nothing arrives within a short window.
    =========================================================================
*/

#include <criterion/criterion.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "brokertest.h"

TestSuite (heraldd_stream, .init = bt_setup, .fini = bt_teardown, .timeout = 90);

//  ---------------------------------------------------------------------
//  Fanout

Test (heraldd_stream, fanout_sends_prefix_events_in_seq_order)
{
    //  The first $hb proves the subscription is live
    const char *const prefixes [] = { "orders.", "$hb", NULL };
    herald_msg_t hb;
    char node [256];
    zsock_t *sub = bt_start_heartbeats (prefixes, &hb, node, sizeof node);

    zsock_t *client = bt_client ();
    const char *topics [7] = {
        "orders.a", "billing.x", "orders.b", "orders.a", "users.1", "order", "orders.c"
    };
    bu_event_t events [7];
    for (size_t index = 0; index < 7; index++)
        bu_event_init (&events [index], topics [index], topics [index]);
    uint64_t seqs [7];
    bu_reply_t reply;
    bt_publish (client, 1, events, 3, &reply);
    for (size_t index = 0; index < 3; index++)
        seqs [index] = reply.body.ack.seq [index];
    bu_reply_fini (&reply);
    for (size_t index = 3; index < 7; index++) {
        bt_publish (client, 1 + index, events + index, 1, &reply);
        seqs [index] = reply.body.ack.seq [0];
        bu_reply_fini (&reply);
    }
    //  Expected on the SUB: indexes 0, 2, 3, 6 in that order
    size_t wanted [4] = { 0, 2, 3, 6 }, got = 0;
    for (size_t index = 0; index < 1000 && got < 4; index++) {
        zmsg_t *msg = bu_recv (sub, BT_WAIT_MS);
        cr_assert_not_null (msg, "fanout: %zu of 4 orders.* events arrived", got);
        zframe_t *topic = zmsg_first (msg);
        if (zframe_streq (topic, "$hb")) {
            zmsg_destroy (&msg);
            continue;
        }
        char *name = zframe_strdup (topic);
        size_t expected = wanted [got];
        cr_assert_str_eq (name, topics [expected], "fanout event %zu: topic %s", got, name);
        free (name);
        cr_assert_eq (zmsg_size (msg), 2, "fanout event of %zu frames", zmsg_size (msg));
        tu_decoded_t decoded;
        bt_decode (zmsg_next (msg), &decoded);
        cr_assert_eq (decoded.event.seq, seqs [expected]);
        cr_assert_eq (decoded.event.ver, expected == 3? 2: 1);
        cr_assert_gt (decoded.event.ts, 0);
        cr_assert_eq (decoded.event.topic_len, strlen (topics [expected]));
        cr_assert_eq (memcmp (decoded.event.id, events [expected].id, HERALD_ID_BYTES), 0);
        cr_assert_eq (decoded.event.data_len, strlen (topics [expected]));
        tu_decoded_fini (&decoded);
        zmsg_destroy (&msg);
        got++;
    }
    cr_assert_eq (got, 4);
}

Test (heraldd_stream, fanout_envelope_equals_replay_bytes)
{
    //  The first $hb proves the subscription is live
    const char *const prefixes [] = { "orders.", "$hb", NULL };
    herald_msg_t hb;
    char node [256];
    zsock_t *sub = bt_start_heartbeats (prefixes, &hb, node, sizeof node);

    zsock_t *client = bt_client ();
    bu_event_t events [3];
    bu_event_init (&events [0], "users.1", "u");
    bu_event_init (&events [1], "orders.9", "the one");
    bu_event_init (&events [2], "users.1", "v");
    bu_reply_t reply;
    bt_publish (client, 1, events, 3, &reply);
    uint64_t seq = reply.body.ack.seq [1];
    bu_reply_fini (&reply);

    zframe_t *live = NULL;
    for (size_t index = 0; index < 1000 && !live; index++) {
        zmsg_t *msg = bu_recv (sub, BT_WAIT_MS);
        cr_assert_not_null (msg, "the orders.9 event did not arrive on fanout");
        if (!zframe_streq (zmsg_first (msg), "$hb")) {
            zframe_t *first = zmsg_first (msg);
            cr_assert (zframe_streq (first, "orders.9"));
            live = zframe_dup (zmsg_next (msg));
        }
        zmsg_destroy (&msg);
    }
    cr_assert_not_null (live);

    bt_stream_t *stream = bt_stream_new ();
    bu_replay_t replay = { .has_from = true, .from = seq, .has_to = true, .to = seq };
    bt_send_replay (client, 2, &replay);
    bt_stream_read_to_end (client, 2, stream, BT_WAIT_MS);
    cr_assert_eq (stream->count, 1);
    cr_assert (zframe_eq (stream->envelopes [0], live),
               "fanout and REPLAY bytes differ for seq %" PRIu64 " (%zu vs %zu bytes)", seq,
               zframe_size (live), zframe_size (stream->envelopes [0]));
    zframe_destroy (&live);
    bt_stream_destroy (&stream);
}

//  ---------------------------------------------------------------------
//  REPLAY and READ over bt_publish_twenty's log: seq n on BT_TOPICS[n % 3]

//  Start the broker with bt_publish_twenty's log (ids into ids, unless
//  NULL); returns the client that published it.
static zsock_t *
s_start_twenty (uint8_t ids [21][HERALD_ID_BYTES])
{
    bt_start ();
    zsock_t *client = bt_client ();
    bt_publish_twenty (client, ids);
    return client;
}

//  Read stream rid to its END and check that, with what it held already,
//  it brought the whole twenty-event log in seq order.
static void
s_read_rest_of_twenty (zsock_t *client, uint64_t rid, bt_stream_t *stream)
{
    bt_stream_read_to_end (client, rid, stream, BT_WAIT_MS);
    bt_stream_check_end (stream, 20, 20, 20, "done");
    bt_stream_check_seqs (stream, 20, 1);
}

Test (heraldd_stream, replay_from_1_sends_all_then_end_done)
{
    uint8_t ids [21][HERALD_ID_BYTES];
    zsock_t *client = s_start_twenty (ids);
    bt_stream_t *stream = bt_stream_new ();
    bu_replay_t replay = { .has_from = true, .from = 1, .has_credit = true, .credit = 1000 };
    bt_send_replay (client, 1, &replay);
    bt_stream_read_to_end (client, 1, stream, BT_WAIT_MS);
    bt_stream_check_end (stream, 20, 20, 20, "done");
    for (size_t index = 0; index < 20; index++) {
        tu_decoded_t decoded;
        bt_decode (stream->envelopes [index], &decoded);
        cr_assert_eq (decoded.event.seq, index + 1);
        cr_assert_eq (memcmp (decoded.event.id, ids [index + 1], HERALD_ID_BYTES), 0);
        tu_decoded_fini (&decoded);
    }
    bt_stream_destroy (&stream);
}

Test (heraldd_stream, replay_prefixes_filter_topics)
{
    zsock_t *client = s_start_twenty (NULL);
    const char *prefixes [2] = { "orders.", "billing." };
    bu_replay_t replay = { .has_from = true, .from = 1, .prefixes = prefixes, .prefix_count = 2 };
    bt_stream_t *stream = bt_stream_new ();
    bt_send_replay (client, 1, &replay);
    bt_stream_read_to_end (client, 1, stream, BT_WAIT_MS);
    size_t at = 0;
    for (uint64_t seq = 1; seq <= 20; seq++) {
        if (seq % 3 == 1)                   //  users.y
            continue;
        cr_assert_lt (at, stream->count, "only %zu events", stream->count);
        tu_decoded_t decoded;
        bt_decode (stream->envelopes [at++], &decoded);
        cr_assert_eq (decoded.event.seq, seq);
        cr_assert (decoded.event.topic_len == strlen (BT_TOPICS [seq % 3])
                   && !memcmp (decoded.event.topic, BT_TOPICS [seq % 3], decoded.event.topic_len));
        tu_decoded_fini (&decoded);
    }
    bt_stream_check_end (stream, at, 20, 20, "done");
    bt_stream_destroy (&stream);
}

Test (heraldd_stream, replay_respects_credit)
{
    zsock_t *client = s_start_twenty (NULL);
    bu_replay_t replay = { .has_from = true, .from = 1, .has_credit = true, .credit = 5 };
    bt_stream_t *stream = bt_stream_new ();
    bt_send_replay (client, 1, &replay);
    for (size_t round = 0; round < 4; round++) {
        bt_stream_read (client, 1, stream, 5, BT_WAIT_MS);
        cr_assert_eq (stream->count, (round + 1) * 5, "round %zu: %zu events", round,
                      stream->count);
        if (round < 3) {
            cr_assert_not (stream->ended, "END before all events were sent");
            //  The one deliberate wait: nothing may come without credit
            bt_stream_read (client, 1, stream, 1, 300);
            cr_assert_eq (stream->count, (round + 1) * 5, "%zu events with credit for %zu",
                          stream->count, (round + 1) * 5);
            cr_assert_not (stream->ended);
            bt_send_credit (client, 1, 5);
        }
    }
    s_read_rest_of_twenty (client, 1, stream);
    bt_stream_destroy (&stream);
}

Test (heraldd_stream, cancel_ends_the_stream_cancelled)
{
    zsock_t *client = s_start_twenty (NULL);
    bu_replay_t replay = { .has_from = true, .from = 1, .has_credit = true, .credit = 5 };
    bt_stream_t *stream = bt_stream_new ();
    bt_send_replay (client, 3, &replay);
    bt_stream_read (client, 3, stream, 5, BT_WAIT_MS);
    cr_assert_eq (stream->count, 5);
    bt_send_rid (client, "CANCEL", 3);
    bt_stream_read_to_end (client, 3, stream, BT_WAIT_MS);
    //  No event after CANCEL; END's last is the last one sent
    bt_stream_check_end (stream, 5, 5, 20, "cancelled");
    bt_stream_destroy (&stream);

    //  The rid is free again and the connection still works
    cr_assert_eq (bt_head (client), 20);
}

Test (heraldd_stream, stream_without_credit_expires)
{
    const char *const extra [] = { "--stream-idle-ms", "200", NULL };
    bt_start_with (extra);
    zsock_t *client = bt_client ();
    bt_publish_many (client, "idle.1", 5, 1);
    bu_replay_t replay = { .has_from = true, .from = 1, .has_credit = true, .credit = 2 };
    bt_stream_t *stream = bt_stream_new ();
    bt_send_replay (client, 4, &replay);
    bt_stream_read_to_end (client, 4, stream, BT_WAIT_MS);
    //  Seqs 1-2 sent on the credit given, then nothing for 200 ms
    bt_stream_check_end (stream, 2, 2, 5, "expired");
    bt_stream_destroy (&stream);
}

Test (heraldd_stream, replay_from_0_is_bad_request)
{
    bt_start ();
    zsock_t *client = bt_client ();
    bt_publish_many (client, "r.1", 2, 1);
    bu_replay_t replay = { .has_from = true, .from = 0 };
    bt_send_replay (client, 8, &replay);
    bt_expect_error (client, HERALD_ERR_BAD_REQUEST, true, 8);
}

Test (heraldd_stream, replay_to_before_from_is_bad_request)
{
    bt_start ();
    zsock_t *client = bt_client ();
    bt_publish_many (client, "r.1", 5, 1);
    bu_replay_t replay = { .has_from = true, .from = 4, .has_to = true, .to = 3 };
    bt_send_replay (client, 9, &replay);
    bt_expect_error (client, HERALD_ERR_BAD_REQUEST, true, 9);
}

Test (heraldd_stream, reusing_a_running_stream_rid_is_refused_and_the_stream_goes_on)
{
    zsock_t *client = s_start_twenty (NULL);
    bu_replay_t replay = { .has_from = true, .from = 1, .has_credit = true, .credit = 1 };
    bt_stream_t *stream = bt_stream_new ();
    bt_send_replay (client, 7, &replay);
    bt_stream_read (client, 7, stream, 1, BT_WAIT_MS);
    cr_assert_eq (stream->count, 1);

    bu_replay_t again = { .has_from = true, .from = 10, .has_credit = true, .credit = 100 };
    bt_send_replay (client, 7, &again);
    bt_expect_error (client, HERALD_ERR_BAD_REQUEST, true, 7);

    bt_send_credit (client, 7, 100);
    s_read_rest_of_twenty (client, 7, stream);      //  the first stream went on
    bt_stream_destroy (&stream);
}

Test (heraldd_stream, read_sends_one_topic_in_ver_order)
{
    uint8_t ids [21][HERALD_ID_BYTES];
    zsock_t *client = s_start_twenty (ids);     //  orders.x: seqs 3, 6, ..., 18
    msgpack_sbuffer sbuf;
    msgpack_sbuffer_init (&sbuf);
    bu_pack_read (&sbuf, 5, "orders.x");
    cr_assert_eq (bu_send_sbuf (client, "READ", &sbuf), 0);
    msgpack_sbuffer_destroy (&sbuf);

    bt_stream_t *stream = bt_stream_new ();
    bt_stream_read_to_end (client, 5, stream, BT_WAIT_MS);
    //  READ's END counts in vers of the topic: last and head are ver 6
    bt_stream_check_end (stream, 6, 6, 6, "done");
    for (size_t index = 0; index < 6; index++) {
        tu_decoded_t decoded;
        bt_decode (stream->envelopes [index], &decoded);
        uint64_t seq = 3 * (index + 1);
        cr_assert_eq (decoded.event.ver, index + 1);
        cr_assert_eq (decoded.event.seq, seq);
        cr_assert_eq (memcmp (decoded.event.id, ids [seq], HERALD_ID_BYTES), 0);
        tu_decoded_fini (&decoded);
    }
    bt_stream_destroy (&stream);
}
