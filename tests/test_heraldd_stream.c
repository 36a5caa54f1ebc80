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


//  --------------------------------------------------------------------------
//  Clients that read slowly, never, or go away

//  Publish count events of 1 KiB on "slow.t" in batches of 100.
static void
s_publish_kib (zsock_t *client, size_t count)
{
    static char data [1024];
    memset (data, 'k', sizeof (data) - 1);
    bu_event_t batch [100];
    for (uint64_t rid = 1; rid <= count / 100; rid++) {
        for (size_t i = 0; i < 100; i++)
            bu_event_init (&batch [i], "slow.t", data);
        bu_reply_t reply = { 0 };
        bt_publish (client, 5000 + rid, batch, 100, &reply);
        bu_reply_fini (&reply);
    }
}

//  A DEALER whose own queue holds only rcvhwm messages, so that what it
//  does not read backs up into the broker.  Kept (freed by teardown).
static zsock_t *
s_narrow_client (int rcvhwm)
{
    zsock_t *sock = zsock_new (ZMQ_DEALER);
    cr_assert_not_null (sock);
    zsock_set_linger (sock, 0);
    zsock_set_rcvhwm (sock, rcvhwm);
    cr_assert_eq (zsock_connect (sock, "%s", bt_broker->api), 0);
    return bt_keep (sock);
}

//  With --client-hwm 2 a replay of 20 MiB to a client that reads one
//  message every 10 ms fills every queue on the way; the stream waits for
//  the client instead of dropping EVENTS, and every event arrives in order.
Test (heraldd_stream, a_slow_reader_gets_every_event_of_a_replay)
{
    const char *extra [] = { "--client-hwm", "2", "--durability", "async", NULL };
    bt_start_with (extra);
    zsock_t *client = bt_client ();
    s_publish_kib (client, 20000);
    zsock_t *slow = s_narrow_client (2);
    bu_replay_t replay = { .has_from = true, .from = 1, .has_credit = true, .credit = 1000000 };
    bt_send_replay (slow, 7, &replay);
    bt_stream_t *stream = bt_stream_new ();
    uint64_t deadline = tu_mono_ns () + 60000 * 1000000ULL;
    while (!stream->ended && tu_mono_ns () < deadline) {
        zclock_sleep (10);
        bt_stream_read (slow, 7, stream, 1, BT_WAIT_MS);
    }
    cr_assert (stream->ended, "the replay did not end: %zu events", stream->count);
    bt_stream_check_end (stream, 20000, 20000, 20000, "done");
    bt_stream_check_seqs (stream, 20000, 1);
    bt_stream_destroy (&stream);
    cr_assert_eq (bt_status_extra (client, 8, "streams_abandoned"), 0);
}

//  A client that never reads holds its stream only for stream_idle_ms: the
//  broker then abandons it (no END can reach it) and frees the slot.
Test (heraldd_stream, a_stream_whose_client_never_reads_is_abandoned)
{
    const char *extra [] = { "--client-hwm", "2", "--stream-idle-ms", "300",
                             "--durability", "async", NULL };
    bt_start_with (extra);
    zsock_t *client = bt_client ();
    s_publish_kib (client, 20000);
    zsock_t *deaf = s_narrow_client (1);
    bu_replay_t replay = { .has_from = true, .from = 1, .has_credit = true, .credit = 1000000 };
    bt_send_replay (deaf, 1, &replay);
    uint64_t abandoned = bt_wait_status_extra (client, "streams_abandoned", 1, 20000);
    cr_assert_eq (abandoned, 1, "the stream was not abandoned");
    cr_assert_eq (bt_status_extra (client, 10, "streams"), 0);
}

//  A client that goes away mid-stream: the broker notices when the stream
//  next sends (here its END, on expiry) and abandons it.
Test (heraldd_stream, a_stream_whose_client_is_gone_is_abandoned)
{
    const char *extra [] = { "--stream-idle-ms", "200", NULL };
    bt_start_with (extra);
    zsock_t *client = bt_client ();
    bt_publish_twenty (client, NULL);
    zsock_t *gone = s_narrow_client (1000);
    bu_replay_t replay = { .has_from = true, .from = 1, .has_credit = true, .credit = 5 };
    bt_send_replay (gone, 1, &replay);
    bt_stream_t *stream = bt_stream_new ();
    bt_stream_read (gone, 1, stream, 5, BT_WAIT_MS);
    cr_assert_eq (stream->count, 5);
    bt_stream_destroy (&stream);
    bt_drop (&gone);
    uint64_t abandoned = bt_wait_status_extra (client, "streams_abandoned", 1, 20000);
    cr_assert_eq (abandoned, 1, "the stream of a gone client was not abandoned");
    cr_assert_eq (bt_status_extra (client, 10, "streams"), 0);
}
