/*  =========================================================================
    test_heraldd_input - hostile and malformed input gets a well-formed
    ERROR, and the broker goes on

    Frames, bodies and commands that break docs/protocol.md: one frame, a body
    that is not MessagePack or not a map, an unknown or non-UTF-8 command,
    no rid; events over the limits or on a reserved topic; and a flood of
    random frames.  Each test starts the real heraldd (tests/brokertest.c)
    on ports chosen at run time with a fresh data directory, and stops it.
    =========================================================================
*/

#include <criterion/criterion.h>
#include <criterion/logging.h>
#include <inttypes.h>
#include <signal.h>
#include <string.h>

#include "brokertest.h"

TestSuite (heraldd_input, .init = bt_setup, .fini = bt_teardown, .timeout = 90);

//  ---------------------------------------------------------------------
//  Malformed requests: each gets an ERROR, rid nil when it could not be read

Test (heraldd_input, one_frame_is_bad_request_with_rid_nil)
{
    bt_start ();
    zsock_t *client = bt_client ();
    const void *frames [1] = { "STATUS" };
    size_t sizes [1] = { 6 };
    cr_assert_eq (bu_send_frames (client, frames, sizes, 1), 0);
    bt_expect_error (client, HERALD_ERR_BAD_REQUEST, false, 0);
}

Test (heraldd_input, body_not_msgpack_is_bad_request_with_rid_nil)
{
    bt_start ();
    zsock_t *client = bt_client ();
    const uint8_t body [] = { 0xc1, 0xc1, 0xc1 };       //  0xc1 is never used
    cr_assert_eq (bu_send (client, "STATUS", body, sizeof body), 0);
    bt_expect_error (client, HERALD_ERR_BAD_REQUEST, false, 0);

    //  Truncated: a map header promising an entry that is not there
    const uint8_t truncated [] = { 0x81, 0xa3, 'r', 'i' };
    cr_assert_eq (bu_send (client, "PUBLISH", truncated, sizeof truncated), 0);
    bt_expect_error (client, HERALD_ERR_BAD_REQUEST, false, 0);
}

Test (heraldd_input, body_not_a_map_is_bad_request)
{
    bt_start ();
    zsock_t *client = bt_client ();
    msgpack_sbuffer sbuf;
    msgpack_sbuffer_init (&sbuf);
    msgpack_packer pk;
    msgpack_packer_init (&pk, &sbuf, msgpack_sbuffer_write);
    msgpack_pack_array (&pk, 2);
    bu_pack_str (&pk, "rid");
    msgpack_pack_uint64 (&pk, 9);
    cr_assert_eq (bu_send_sbuf (client, "STATUS", &sbuf), 0);
    msgpack_sbuffer_destroy (&sbuf);
    bt_expect_error (client, HERALD_ERR_BAD_REQUEST, false, 0);
}

Test (heraldd_input, unknown_command_is_unknown_command)
{
    bt_start ();
    zsock_t *client = bt_client ();
    bt_send_rid (client, "FOO", 9);
    bu_reply_t reply;
    bt_recv (client, &reply);
    cr_assert_eq (reply.type, HERALD_MSG_ERROR, "got %s", reply.command);
    cr_assert_eq (reply.body.error.code, HERALD_ERR_UNKNOWN_COMMAND, "got %s",
                  herald_err_code (reply.body.error.code));
    //  The rid could be read, so it may be echoed; it must not be another
    if (reply.body.has_rid)
        cr_assert_eq (reply.body.rid, 9);
    bu_reply_fini (&reply);

    //  Whatever the body: garbage too
    const uint8_t garbage [] = { 0xc1 };
    cr_assert_eq (bu_send (client, "FOO", garbage, 1), 0);
    bt_expect_error (client, HERALD_ERR_UNKNOWN_COMMAND, false, 0);
}

Test (heraldd_input, unknown_binary_command_gets_a_well_formed_error)
{
    bt_start ();
    zsock_t *client = bt_client ();
    //  Not UTF-8: an ERROR's message is a str and must stay valid UTF-8
    const uint8_t command [] = { 0xff, 0xfe, 'X', 0xc3 };
    const uint8_t body [] = { 0x81, 0xa3, 'r', 'i', 'd', 0x05 };      //  {rid: 5}
    const void *frames [2] = { command, body };
    size_t sizes [2] = { sizeof command, sizeof body };
    cr_assert_eq (bu_send_frames (client, frames, sizes, 2), 0);
    bu_reply_t reply;
    bt_recv (client, &reply);
    cr_assert_eq (reply.type, HERALD_MSG_ERROR, "got %s", reply.command);
    cr_assert_eq (reply.body.error.code, HERALD_ERR_UNKNOWN_COMMAND);
    if (reply.body.has_rid)
        cr_assert_eq (reply.body.rid, 5);
    bu_reply_fini (&reply);
}

Test (heraldd_input, missing_rid_is_bad_request_with_rid_nil)
{
    bt_start ();
    zsock_t *client = bt_client ();
    const uint8_t empty_map [] = { 0x80 };
    cr_assert_eq (bu_send (client, "STATUS", empty_map, 1), 0);
    bt_expect_error (client, HERALD_ERR_BAD_REQUEST, false, 0);
}

//  ---------------------------------------------------------------------
//  Limits and rules: a refused batch stores nothing

Test (heraldd_input, event_over_max_event_bytes_is_too_large)
{
    const char *const extra [] = { "--max-event-bytes", "4096", NULL };
    bt_start_with (extra);
    zsock_t *client = bt_client ();
    static char big [5000];
    memset (big, 'b', sizeof big - 1);
    bu_event_t events [2];
    bu_event_init (&events [0], "big.1", "small");
    bu_event_init (&events [1], "big.1", big);
    bt_send_publish (client, 3, events, 2);
    bt_expect_error (client, HERALD_ERR_TOO_LARGE, true, 3);
    cr_assert_eq (bt_head (client), 0, "part of a too_large batch was stored");
}

Test (heraldd_input, batch_over_max_batch_is_too_large)
{
    const char *const extra [] = { "--max-batch", "10", NULL };
    bt_start_with (extra);
    zsock_t *client = bt_client ();
    bu_event_t events [11];
    for (size_t index = 0; index < 11; index++)
        bu_event_init (&events [index], "many.1", "x");
    bt_send_publish (client, 4, events, 11);
    bt_expect_error (client, HERALD_ERR_TOO_LARGE, true, 4);
    //  Exactly max_batch is fine
    bu_reply_t reply;
    bt_publish (client, 5, events, 10, &reply);
    bu_reply_fini (&reply);
    cr_assert_eq (bt_head (client), 10);
}

Test (heraldd_input, reserved_topic_is_bad_request)
{
    bt_start ();
    zsock_t *client = bt_client ();
    bu_event_t events [2];
    bu_event_init (&events [0], "fine.1", "x");
    bu_event_init (&events [1], "$x", "x");
    bt_send_publish (client, 6, events, 2);
    bt_expect_error (client, HERALD_ERR_BAD_REQUEST, true, 6);
    cr_assert_eq (bt_head (client), 0);
}

//  ---------------------------------------------------------------------
//  Garbage in bulk

Test (heraldd_input, random_flood_leaves_the_broker_answering)
{
    bt_start ();
    zsock_t *client = bt_client ();
    bt_publish_many (client, "flood.1", 1, 1);

    static const char *commands [] = {
        "PUBLISH", "REPLAY", "READ", "CREDIT", "CANCEL", "STATUS", "HELLO"
    };
    uint64_t state = 20261122;
    for (size_t message = 0; message < 200; message++) {
        uint8_t bytes [3][96];
        const void *frames [3];
        size_t sizes [3];
        size_t count = 1 + tu_rand (&state) % 3;
        for (size_t index = 0; index < count; index++) {
            sizes [index] = tu_rand (&state) % sizeof bytes [index];
            for (size_t at = 0; at < sizes [index]; at++)
                bytes [index][at] = (uint8_t) tu_rand (&state);
            frames [index] = bytes [index];
        }
        if (message % 2) {      //  half of them with a real command
            frames [0] = commands [tu_rand (&state) % 7];
            sizes [0] = strlen (frames [0]);
        }
        cr_assert_eq (bu_send_frames (client, frames, sizes, count), 0);
    }
    //  Every reply before STATUS is an ERROR; STATUS still comes
    bt_send_rid (client, "STATUS", 777777);
    bool answered = false;
    size_t errors = 0;
    for (size_t index = 0; index < 300 && !answered; index++) {
        bu_reply_t reply;
        bt_recv (client, &reply);
        if (reply.type == HERALD_MSG_STATUS_REPLY && reply.body.rid == 777777) {
            answered = true;
            cr_assert_eq (reply.body.status.head, 1, "the flood changed head to %" PRIu64,
                          reply.body.status.head);
        }
        else {
            cr_assert_eq (reply.type, HERALD_MSG_ERROR, "a random message got %s", reply.command);
            errors++;
        }
        bu_reply_fini (&reply);
    }
    cr_assert (answered, "no STATUS reply after the flood");
    cr_log_info ("flood: %zu ERROR replies to 200 random messages", errors);
    cr_assert_eq (bt_broker->pid > 0 && kill (bt_broker->pid, 0) == 0, true);
}
