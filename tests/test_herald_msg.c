/*  =========================================================================
    test_herald_msg - HWP/1 bodies: every message round-trips, every rule
    of docs/protocol.md's rules that a body can break is refused with
    the right code and field.

    Request bodies are built with msgpack_packer directly, as a third-party
    client would, so the decoder is held to the contract and not only to
    our own encoder.
    =========================================================================
*/

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "herald_msg.h"

static msgpack_sbuffer s_buf;           //  body under test
static msgpack_sbuffer s_out;           //  re-encoded body
static msgpack_packer s_pk;
static msgpack_zone s_zone;
static herald_msg_t s_msg;
static herald_error_t s_err;

static const uint8_t s_id [16] = {
    0x01, 0x8f, 0x00, 0x11, 0x22, 0x33, 0x74, 0x44,
    0x85, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb
};

static void
s_setup (void)
{
    msgpack_sbuffer_init (&s_buf);
    msgpack_sbuffer_init (&s_out);
    msgpack_packer_init (&s_pk, &s_buf, msgpack_sbuffer_write);
    msgpack_zone_init (&s_zone, 4096);
    memset (&s_msg, 0, sizeof (s_msg));
    memset (&s_err, 0, sizeof (s_err));
}

static void
s_teardown (void)
{
    msgpack_sbuffer_destroy (&s_buf);
    msgpack_sbuffer_destroy (&s_out);
    msgpack_zone_destroy (&s_zone);
}

TestSuite (herald_msg, .init = s_setup, .fini = s_teardown);


//  --------------------------------------------------------------------------
//  Body builders

static void
s_key (const char *key)
{
    msgpack_pack_str (&s_pk, strlen (key));
    msgpack_pack_str_body (&s_pk, key, strlen (key));
}

static void
s_str (const char *value)
{
    s_key (value);
}

static void
s_kuint (const char *key, uint64_t value)
{
    s_key (key);
    msgpack_pack_uint64 (&s_pk, value);
}

static void
s_kstr (const char *key, const char *value)
{
    s_key (key);
    s_str (value);
}

static void
s_rid (uint64_t rid)
{
    s_kuint ("rid", rid);
}

//  A publisher's event map: id, topic, data and `extra` more keys to follow.
static void
s_event (const char *topic, size_t data_len, size_t extra)
{
    static const char data [8192];
    msgpack_pack_map (&s_pk, 3 + extra);
    s_key ("id");
    msgpack_pack_bin (&s_pk, 16);
    msgpack_pack_bin_body (&s_pk, s_id, 16);
    s_kstr ("topic", topic);
    s_key ("data");
    msgpack_pack_bin (&s_pk, data_len);
    msgpack_pack_bin_body (&s_pk, data, data_len);
}

//  PUBLISH {rid 7, events: count minimal events}
static void
s_publish (size_t count)
{
    msgpack_pack_map (&s_pk, 2);
    s_rid (7);
    s_key ("events");
    msgpack_pack_array (&s_pk, count);
    size_t index;
    for (index = 0; index < count; index++)
        s_event ("orders.1", 4, 0);
}

static herald_err
s_decode_with (herald_msg_type_t type, const herald_limits_t *limits)
{
    return herald_msg_decode (&s_msg, type, s_buf.data, s_buf.size, limits, &s_zone, &s_err);
}

static herald_err
s_decode (herald_msg_type_t type)
{
    return s_decode_with (type, NULL);
}

//  Decoding must fail with code, naming field; rid known or not.
static void
s_expect_with (herald_msg_type_t type, const herald_limits_t *limits, herald_err code,
               const char *field, bool has_rid)
{
    cr_assert_eq (s_decode_with (type, limits), code, "message: %s", s_err.message);
    cr_assert_eq (s_err.code, code);
    cr_assert_str_eq (s_err.field, field);
    cr_assert_eq (s_err.has_rid, has_rid);
}

static void
s_expect (herald_msg_type_t type, herald_err code, const char *field)
{
    s_expect_with (type, NULL, code, field, true);
}

//  Encode msg, decode the result as type into out: the round trip.
static void
s_round_trip (const herald_msg_t *msg, herald_msg_t *out)
{
    msgpack_sbuffer_clear (&s_out);
    cr_assert_eq (herald_msg_encode (msg, &s_out), 0);
    cr_assert_eq (herald_msg_decode (out, msg->type, s_out.data, s_out.size, NULL,
                                     &s_zone, &s_err), HERALD_OK,
                  "message: %s", s_err.message);
    cr_assert_eq (out->type, msg->type);
    cr_assert_eq (out->has_rid, msg->has_rid);
    cr_assert_eq (out->rid, msg->rid);
}

static bool
s_str_is (herald_str_t str, const char *text)
{
    return str.ptr && str.len == strlen (text) && memcmp (str.ptr, text, str.len) == 0;
}


//  --------------------------------------------------------------------------
//  Commands

Test (herald_msg, request_commands_map_to_types)
{
    static const char *names [] = {
        "PUBLISH", "REPLAY", "READ", "CREDIT", "CANCEL", "STATUS", "HELLO", "ACL"
    };
    int index;
    for (index = 0; index < 8; index++) {
        herald_msg_type_t type = herald_msg_type_from_command (names [index],
                                                               strlen (names [index]), false);
        cr_assert_eq (type, HERALD_MSG_PUBLISH + index);
        cr_assert_str_eq (herald_msg_command (type), names [index]);
    }
}

Test (herald_msg, reply_commands_map_to_types)
{
    static const char *names [] = {
        "ACK", "EVENTS", "END", "STATUS", "WELCOME", "ERROR", "ACL", "$hb"
    };
    int index;
    for (index = 0; index < 8; index++) {
        herald_msg_type_t type = herald_msg_type_from_command (names [index],
                                                               strlen (names [index]), true);
        cr_assert_eq (type, HERALD_MSG_ACK + index);
        cr_assert_str_eq (herald_msg_command (type), names [index]);
    }
}

Test (herald_msg, status_means_request_or_reply_by_direction)
{
    cr_assert_eq (herald_msg_type_from_command ("STATUS", 6, false), HERALD_MSG_STATUS);
    cr_assert_eq (herald_msg_type_from_command ("STATUS", 6, true), HERALD_MSG_STATUS_REPLY);
}

Test (herald_msg, unknown_commands_are_invalid)
{
    cr_assert_eq (herald_msg_type_from_command ("publish", 7, false), HERALD_MSG_INVALID);
    cr_assert_eq (herald_msg_type_from_command ("PUBLISH\0", 8, false), HERALD_MSG_INVALID);
    cr_assert_eq (herald_msg_type_from_command ("PUBLIS", 6, false), HERALD_MSG_INVALID);
    cr_assert_eq (herald_msg_type_from_command ("", 0, false), HERALD_MSG_INVALID);
    cr_assert_eq (herald_msg_type_from_command ("NOPE", 4, false), HERALD_MSG_INVALID);
    cr_assert_eq (herald_msg_type_from_command (NULL, 0, true), HERALD_MSG_INVALID);
}

Test (herald_msg, replies_are_unknown_as_requests_and_back)
{
    cr_assert_eq (herald_msg_type_from_command ("ACK", 3, false), HERALD_MSG_INVALID);
    cr_assert_eq (herald_msg_type_from_command ("$hb", 3, false), HERALD_MSG_INVALID);
    cr_assert_eq (herald_msg_type_from_command ("PUBLISH", 7, true), HERALD_MSG_INVALID);
    cr_assert_eq (herald_msg_type_from_command ("HELLO", 5, true), HERALD_MSG_INVALID);
}

Test (herald_msg, invalid_type_has_no_command)
{
    cr_assert_null (herald_msg_command (HERALD_MSG_INVALID));
    cr_assert_null (herald_msg_command ((herald_msg_type_t) 99));
}


//  --------------------------------------------------------------------------
//  Malformed bodies, any request

Test (herald_msg, empty_body_is_bad_request)
{
    cr_assert_eq (herald_msg_decode (&s_msg, HERALD_MSG_STATUS, "", 0, NULL, &s_zone, &s_err),
                  HERALD_ERR_BAD_REQUEST);
    cr_assert_not (s_err.has_rid);
}

Test (herald_msg, unreadable_body_is_bad_request)
{
    cr_assert_eq (herald_msg_decode (&s_msg, HERALD_MSG_STATUS, "\xc1", 1, NULL, &s_zone, &s_err),
                  HERALD_ERR_BAD_REQUEST);
    cr_assert_not (s_err.has_rid);
}

Test (herald_msg, body_that_is_not_a_map_is_bad_request)
{
    int type;
    msgpack_pack_array (&s_pk, 1);
    msgpack_pack_uint64 (&s_pk, 1);
    for (type = HERALD_MSG_PUBLISH; type <= HERALD_MSG_HEARTBEAT; type++)
        s_expect_with ((herald_msg_type_t) type, NULL, HERALD_ERR_BAD_REQUEST, "body", false);
}

Test (herald_msg, trailing_bytes_are_bad_request)
{
    msgpack_pack_map (&s_pk, 1);
    s_rid (3);
    msgpack_pack_nil (&s_pk);
    s_expect_with (HERALD_MSG_STATUS, NULL, HERALD_ERR_BAD_REQUEST, "body", false);
}

Test (herald_msg, huge_declared_map_is_bad_request)
{
    cr_assert_eq (herald_msg_decode (&s_msg, HERALD_MSG_PUBLISH, "\xdf\xff\xff\xff\xff", 5,
                                     NULL, &s_zone, &s_err), HERALD_ERR_BAD_REQUEST);
}

Test (herald_msg, deep_nesting_is_bad_request)
{
    int index;
    msgpack_pack_map (&s_pk, 2);
    s_rid (3);
    s_key ("x");
    for (index = 0; index < 40; index++)
        msgpack_pack_array (&s_pk, 1);
    msgpack_pack_nil (&s_pk);
    s_expect_with (HERALD_MSG_STATUS, NULL, HERALD_ERR_BAD_REQUEST, "body", false);
}

Test (herald_msg, truncated_publish_fails_cleanly_at_every_length)
{
    s_publish (3);
    size_t len;
    for (len = 0; len < s_buf.size; len++) {
        char *copy = malloc (len ? len : 1);
        memcpy (copy, s_buf.data, len);
        cr_assert_eq (herald_msg_decode (&s_msg, HERALD_MSG_PUBLISH, copy, len, NULL,
                                         &s_zone, &s_err), HERALD_ERR_BAD_REQUEST,
                      "prefix of %zu bytes", len);
        free (copy);
    }
}

Test (herald_msg, truncated_replay_fails_cleanly_at_every_length)
{
    msgpack_pack_map (&s_pk, 5);
    s_rid (70000);
    s_kuint ("from", 5);
    s_kuint ("to", 500000);
    s_key ("prefixes");
    msgpack_pack_array (&s_pk, 2);
    s_str ("orders.");
    s_str ("stock.");
    s_kuint ("credit", 10);
    size_t len;
    for (len = 0; len < s_buf.size; len++) {
        char *copy = malloc (len ? len : 1);
        memcpy (copy, s_buf.data, len);
        cr_assert_eq (herald_msg_decode (&s_msg, HERALD_MSG_REPLAY, copy, len, NULL,
                                         &s_zone, &s_err), HERALD_ERR_BAD_REQUEST,
                      "prefix of %zu bytes", len);
        free (copy);
    }
}

Test (herald_msg, unknown_type_is_unknown_command)
{
    msgpack_pack_map (&s_pk, 1);
    s_rid (1);
    cr_assert_eq (s_decode (HERALD_MSG_INVALID), HERALD_ERR_UNKNOWN_COMMAND);
}


//  --------------------------------------------------------------------------
//  rid

Test (herald_msg, request_without_rid_is_bad_request_with_rid_nil)
{
    msgpack_pack_map (&s_pk, 0);
    s_expect_with (HERALD_MSG_STATUS, NULL, HERALD_ERR_BAD_REQUEST, "rid", false);
}

Test (herald_msg, string_rid_is_bad_request)
{
    msgpack_pack_map (&s_pk, 1);
    s_kstr ("rid", "12");
    s_expect_with (HERALD_MSG_CANCEL, NULL, HERALD_ERR_BAD_REQUEST, "rid", false);
}

Test (herald_msg, negative_rid_is_bad_request)
{
    msgpack_pack_map (&s_pk, 1);
    s_key ("rid");
    msgpack_pack_int64 (&s_pk, -4);
    s_expect_with (HERALD_MSG_STATUS, NULL, HERALD_ERR_BAD_REQUEST, "rid", false);
}

Test (herald_msg, float_rid_is_bad_request)
{
    msgpack_pack_map (&s_pk, 1);
    s_key ("rid");
    msgpack_pack_double (&s_pk, 4.0);
    s_expect_with (HERALD_MSG_STATUS, NULL, HERALD_ERR_BAD_REQUEST, "rid", false);
}

Test (herald_msg, nil_rid_is_bad_request)
{
    msgpack_pack_map (&s_pk, 1);
    s_key ("rid");
    msgpack_pack_nil (&s_pk);
    s_expect_with (HERALD_MSG_STATUS, NULL, HERALD_ERR_BAD_REQUEST, "rid", false);
}

Test (herald_msg, repeated_rid_is_bad_request_with_rid_nil)
{
    msgpack_pack_map (&s_pk, 2);
    s_rid (1);
    s_rid (2);
    s_expect_with (HERALD_MSG_STATUS, NULL, HERALD_ERR_BAD_REQUEST, "rid", false);
}

Test (herald_msg, rid_is_known_in_later_errors)
{
    msgpack_pack_map (&s_pk, 1);
    s_rid (99);
    s_expect (HERALD_MSG_PUBLISH, HERALD_ERR_BAD_REQUEST, "events");
    cr_assert_eq (s_err.rid, 99);
}

Test (herald_msg, repeated_known_key_is_bad_request)
{
    msgpack_pack_map (&s_pk, 3);
    s_rid (1);
    s_kuint ("credit", 1);
    s_kuint ("credit", 2);
    s_expect (HERALD_MSG_CREDIT, HERALD_ERR_BAD_REQUEST, "credit");
}

Test (herald_msg, repeated_unknown_key_is_bad_request)
{
    msgpack_pack_map (&s_pk, 3);
    s_rid (1);
    s_kuint ("x", 1);
    s_kuint ("x", 2);
    s_expect (HERALD_MSG_STATUS, HERALD_ERR_BAD_REQUEST, "body");
}

Test (herald_msg, unknown_and_non_str_keys_are_ignored)
{
    msgpack_pack_map (&s_pk, 4);
    s_rid (1);
    s_kstr ("future", "x");
    msgpack_pack_uint64 (&s_pk, 5);
    msgpack_pack_uint64 (&s_pk, 6);
    msgpack_pack_nil (&s_pk);
    msgpack_pack_nil (&s_pk);
    cr_assert_eq (s_decode (HERALD_MSG_STATUS), HERALD_OK);
    cr_assert_eq (s_msg.rid, 1);
}


//  --------------------------------------------------------------------------
//  PUBLISH

Test (herald_msg, publish_decodes_a_hand_built_body)
{
    msgpack_pack_map (&s_pk, 2);
    s_rid (12);
    s_key ("events");
    msgpack_pack_array (&s_pk, 2);
    s_event ("orders.1", 3, 5);
    s_kstr ("type", "OrderPlaced");
    s_kuint ("schema", 2);
    s_key ("meta");
    msgpack_pack_map (&s_pk, 1);
    s_kstr ("correlation_id", "abc");
    s_kuint ("expect", 0);
    s_kstr ("unknown", "ignored");
    s_event ("orders.2", 0, 0);
    cr_assert_eq (s_decode (HERALD_MSG_PUBLISH), HERALD_OK, "%s", s_err.message);
    cr_assert_eq (s_msg.rid, 12);
    cr_assert_eq (s_msg.publish.count, 2);
    herald_event_t *event = &s_msg.publish.events [0];
    cr_assert_eq (memcmp (event->id, s_id, 16), 0);
    cr_assert_eq (event->type_len, 11);
    cr_assert_eq (event->schema, 2);
    cr_assert_eq (event->meta_count, 1);
    cr_assert (event->has_expect);
    cr_assert_eq (event->expect, 0);
    cr_assert_eq (event->data_len, 3);
    cr_assert_not (s_msg.publish.events [1].has_expect);
    cr_assert_eq (s_msg.publish.events [1].data_len, 0);
}

Test (herald_msg, publish_round_trips_with_every_field)
{
    static const herald_kv_t meta [] = { { "k", 1, "v", 1 } };
    herald_event_t events [2];
    memset (events, 0, sizeof (events));
    memcpy (events [0].id, s_id, 16);
    events [0].topic = "orders.1";
    events [0].topic_len = 8;
    events [0].type = "T";
    events [0].type_len = 1;
    events [0].has_schema = true;
    events [0].schema = 3;
    events [0].meta = meta;
    events [0].meta_count = 1;
    events [0].data = (const uint8_t *) "abc";
    events [0].data_len = 3;
    events [0].has_expect = true;
    events [0].expect = 4;
    events [1] = events [0];
    events [1].type = NULL;
    events [1].has_schema = events [1].has_expect = false;
    events [1].meta = NULL;
    herald_msg_t msg = { .type = HERALD_MSG_PUBLISH, .has_rid = true, .rid = 5 };
    msg.publish.events = events;
    msg.publish.count = 2;
    herald_msg_t out;
    s_round_trip (&msg, &out);
    cr_assert_eq (out.publish.count, 2);
    cr_assert_eq (out.publish.events [0].expect, 4);
    cr_assert_eq (out.publish.events [0].schema, 3);
    cr_assert_eq (out.publish.events [0].meta_count, 1);
    cr_assert_eq (memcmp (out.publish.events [0].data, "abc", 3), 0);
    cr_assert_null (out.publish.events [1].type);
    cr_assert_null (out.publish.events [1].meta);
    cr_assert_not (out.publish.events [1].has_expect);
}

Test (herald_msg, publish_without_events_is_bad_request)
{
    msgpack_pack_map (&s_pk, 1);
    s_rid (1);
    s_expect (HERALD_MSG_PUBLISH, HERALD_ERR_BAD_REQUEST, "events");
}

Test (herald_msg, publish_with_nil_events_is_bad_request)
{
    msgpack_pack_map (&s_pk, 2);
    s_rid (1);
    s_key ("events");
    msgpack_pack_nil (&s_pk);
    s_expect (HERALD_MSG_PUBLISH, HERALD_ERR_BAD_REQUEST, "events");
}

Test (herald_msg, publish_with_events_as_map_is_bad_request)
{
    msgpack_pack_map (&s_pk, 2);
    s_rid (1);
    s_key ("events");
    msgpack_pack_map (&s_pk, 0);
    s_expect (HERALD_MSG_PUBLISH, HERALD_ERR_BAD_REQUEST, "events");
}

Test (herald_msg, publish_with_empty_events_is_bad_request)
{
    s_publish (0);
    s_expect (HERALD_MSG_PUBLISH, HERALD_ERR_BAD_REQUEST, "events");
}

Test (herald_msg, publish_without_rid_is_bad_request_with_rid_nil)
{
    msgpack_pack_map (&s_pk, 1);
    s_key ("events");
    msgpack_pack_array (&s_pk, 1);
    s_event ("t", 1, 0);
    s_expect_with (HERALD_MSG_PUBLISH, NULL, HERALD_ERR_BAD_REQUEST, "rid", false);
}

Test (herald_msg, publish_over_max_batch_is_too_large)
{
    herald_limits_t limits = { .max_event_bytes = 4096, .max_batch = 8 };
    s_publish (9);
    s_expect_with (HERALD_MSG_PUBLISH, &limits, HERALD_ERR_TOO_LARGE, "events", true);
}

Test (herald_msg, publish_over_default_max_batch_is_too_large)
{
    s_publish (HERALD_MAX_BATCH + 1);
    s_expect (HERALD_MSG_PUBLISH, HERALD_ERR_TOO_LARGE, "events");
}

Test (herald_msg, publish_at_max_batch_is_accepted)
{
    herald_limits_t limits = { .max_event_bytes = 4096, .max_batch = 8 };
    s_publish (8);
    cr_assert_eq (s_decode_with (HERALD_MSG_PUBLISH, &limits), HERALD_OK);
    cr_assert_eq (s_msg.publish.count, 8);
}

Test (herald_msg, publish_batch_size_is_checked_before_events)
{
    herald_limits_t limits = { .max_event_bytes = 4096, .max_batch = 2 };
    msgpack_pack_map (&s_pk, 2);
    s_rid (1);
    s_key ("events");
    msgpack_pack_array (&s_pk, 3);
    msgpack_pack_nil (&s_pk);
    msgpack_pack_nil (&s_pk);
    msgpack_pack_nil (&s_pk);
    s_expect_with (HERALD_MSG_PUBLISH, &limits, HERALD_ERR_TOO_LARGE, "events", true);
}

Test (herald_msg, zero_limits_mean_the_defaults)
{
    herald_limits_t limits = { 0, 0 };
    s_publish (3);
    cr_assert_eq (s_decode_with (HERALD_MSG_PUBLISH, &limits), HERALD_OK);
}

Test (herald_msg, publish_event_over_max_event_bytes_is_too_large)
{
    herald_limits_t limits = { .max_event_bytes = 4096, .max_batch = 8 };
    msgpack_pack_map (&s_pk, 2);
    s_rid (1);
    s_key ("events");
    msgpack_pack_array (&s_pk, 2);
    s_event ("t", 10, 0);
    s_event ("t", 4096, 0);
    s_expect_with (HERALD_MSG_PUBLISH, &limits, HERALD_ERR_TOO_LARGE, "events[1]", true);
}

Test (herald_msg, publish_event_of_exactly_max_event_bytes_is_accepted)
{
    //  The minimal event map is 1 + 3 + 18 + 6 + 2 + 5 + 3 + data bytes
    //  (bin16 header for data of 256 or more bytes)
    size_t overhead = 1 + 3 + 18 + 6 + 2 + 5 + 3;
    herald_limits_t limits = { .max_event_bytes = overhead + 1000, .max_batch = 8 };
    msgpack_pack_map (&s_pk, 2);
    s_rid (1);
    s_key ("events");
    msgpack_pack_array (&s_pk, 1);
    s_event ("t", 1000, 0);
    cr_assert_eq (s_decode_with (HERALD_MSG_PUBLISH, &limits), HERALD_OK, "%s", s_err.message);
    cr_assert_eq (s_msg.publish.events [0].encoded_size, overhead + 1000);
    limits.max_event_bytes--;
    s_expect_with (HERALD_MSG_PUBLISH, &limits, HERALD_ERR_TOO_LARGE, "events[0]", true);
}

Test (herald_msg, publish_event_size_is_measured_as_received)
{
    //  expect written as a uint64 (9 bytes) where 1 byte would do, and a
    //  nil type: both count, though neither survives a re-encode
    msgpack_pack_map (&s_pk, 2);
    s_rid (1);
    s_key ("events");
    msgpack_pack_array (&s_pk, 1);
    s_event ("t", 2, 2);
    s_key ("expect");
    msgpack_sbuffer_write (&s_buf, "\xcf\0\0\0\0\0\0\0\x05", 9);
    s_key ("type");
    msgpack_pack_nil (&s_pk);
    size_t event_size = 1 + 3 + 18 + 6 + 2 + 5 + 4 + 7 + 9 + 5 + 1;
    cr_assert_eq (s_decode (HERALD_MSG_PUBLISH), HERALD_OK, "%s", s_err.message);
    cr_assert_eq (s_msg.publish.events [0].encoded_size, event_size);
    cr_assert_eq (s_msg.publish.events [0].expect, 5);
    cr_assert_null (s_msg.publish.events [0].type);
    herald_limits_t limits = { .max_event_bytes = event_size - 1, .max_batch = 8 };
    s_expect_with (HERALD_MSG_PUBLISH, &limits, HERALD_ERR_TOO_LARGE, "events[0]", true);
}

Test (herald_msg, publish_first_failing_event_names_the_error)
{
    herald_limits_t limits = { .max_event_bytes = 4096, .max_batch = 8 };
    msgpack_pack_map (&s_pk, 2);
    s_rid (1);
    s_key ("events");
    msgpack_pack_array (&s_pk, 3);
    s_event ("ok", 1, 0);
    s_event ("$bad", 1, 0);
    s_event ("t", 5000, 0);
    s_expect_with (HERALD_MSG_PUBLISH, &limits, HERALD_ERR_BAD_REQUEST, "events[1].topic", true);
}

Test (herald_msg, publish_too_large_event_before_an_invalid_one_is_too_large)
{
    herald_limits_t limits = { .max_event_bytes = 4096, .max_batch = 8 };
    msgpack_pack_map (&s_pk, 2);
    s_rid (1);
    s_key ("events");
    msgpack_pack_array (&s_pk, 3);
    s_event ("ok", 1, 0);
    s_event ("t", 5000, 0);
    s_event ("$bad", 1, 0);
    s_expect_with (HERALD_MSG_PUBLISH, &limits, HERALD_ERR_TOO_LARGE, "events[1]", true);
}

Test (herald_msg, publish_event_too_large_and_invalid_is_too_large)
{
    herald_limits_t limits = { .max_event_bytes = 4096, .max_batch = 8 };
    msgpack_pack_map (&s_pk, 2);
    s_rid (1);
    s_key ("events");
    msgpack_pack_array (&s_pk, 1);
    s_event ("$bad", 5000, 0);
    s_expect_with (HERALD_MSG_PUBLISH, &limits, HERALD_ERR_TOO_LARGE, "events[0]", true);
}

Test (herald_msg, publish_event_that_is_not_a_map_is_bad_request)
{
    msgpack_pack_map (&s_pk, 2);
    s_rid (1);
    s_key ("events");
    msgpack_pack_array (&s_pk, 2);
    s_event ("t", 1, 0);
    s_str ("event");
    s_expect (HERALD_MSG_PUBLISH, HERALD_ERR_BAD_REQUEST, "events[1]");
}

Test (herald_msg, publish_event_with_short_id_is_bad_request)
{
    msgpack_pack_map (&s_pk, 2);
    s_rid (1);
    s_key ("events");
    msgpack_pack_array (&s_pk, 1);
    msgpack_pack_map (&s_pk, 3);
    s_key ("id");
    msgpack_pack_bin (&s_pk, 4);
    msgpack_pack_bin_body (&s_pk, s_id, 4);
    s_kstr ("topic", "t");
    s_key ("data");
    msgpack_pack_bin (&s_pk, 0);
    s_expect (HERALD_MSG_PUBLISH, HERALD_ERR_BAD_REQUEST, "events[0].id");
}

Test (herald_msg, publish_event_without_data_is_bad_request)
{
    msgpack_pack_map (&s_pk, 2);
    s_rid (1);
    s_key ("events");
    msgpack_pack_array (&s_pk, 1);
    msgpack_pack_map (&s_pk, 2);
    s_key ("id");
    msgpack_pack_bin (&s_pk, 16);
    msgpack_pack_bin_body (&s_pk, s_id, 16);
    s_kstr ("topic", "t");
    s_expect (HERALD_MSG_PUBLISH, HERALD_ERR_BAD_REQUEST, "events[0].data");
}

Test (herald_msg, publish_event_with_long_type_is_bad_request)
{
    char type [300];
    memset (type, 'T', 256);
    type [256] = 0;
    s_publish (0);
    msgpack_sbuffer_clear (&s_buf);
    msgpack_pack_map (&s_pk, 2);
    s_rid (1);
    s_key ("events");
    msgpack_pack_array (&s_pk, 1);
    s_event ("t", 0, 1);
    s_kstr ("type", type);
    s_expect (HERALD_MSG_PUBLISH, HERALD_ERR_BAD_REQUEST, "events[0].type");
}

Test (herald_msg, publish_event_with_negative_expect_is_bad_request)
{
    msgpack_pack_map (&s_pk, 2);
    s_rid (1);
    s_key ("events");
    msgpack_pack_array (&s_pk, 1);
    s_event ("t", 0, 1);
    s_key ("expect");
    msgpack_pack_int64 (&s_pk, -1);
    s_expect (HERALD_MSG_PUBLISH, HERALD_ERR_BAD_REQUEST, "events[0].expect");
}

Test (herald_msg, publish_event_with_bool_schema_is_bad_request)
{
    msgpack_pack_map (&s_pk, 2);
    s_rid (1);
    s_key ("events");
    msgpack_pack_array (&s_pk, 1);
    s_event ("t", 0, 1);
    s_key ("schema");
    msgpack_pack_false (&s_pk);
    s_expect (HERALD_MSG_PUBLISH, HERALD_ERR_BAD_REQUEST, "events[0].schema");
}

Test (herald_msg, publish_event_with_too_many_meta_entries_is_bad_request)
{
    int index;
    msgpack_pack_map (&s_pk, 2);
    s_rid (1);
    s_key ("events");
    msgpack_pack_array (&s_pk, 1);
    s_event ("t", 0, 1);
    s_key ("meta");
    msgpack_pack_map (&s_pk, 65);
    for (index = 0; index < 65; index++) {
        char key [16];
        snprintf (key, sizeof (key), "k%d", index);
        s_kstr (key, "v");
    }
    s_expect (HERALD_MSG_PUBLISH, HERALD_ERR_BAD_REQUEST, "events[0].meta");
}

Test (herald_msg, publish_event_with_nil_optional_keys_reads_them_as_absent)
{
    msgpack_pack_map (&s_pk, 2);
    s_rid (1);
    s_key ("events");
    msgpack_pack_array (&s_pk, 1);
    s_event ("t", 0, 4);
    s_key ("type");   msgpack_pack_nil (&s_pk);
    s_key ("schema"); msgpack_pack_nil (&s_pk);
    s_key ("meta");   msgpack_pack_nil (&s_pk);
    s_key ("expect"); msgpack_pack_nil (&s_pk);
    cr_assert_eq (s_decode (HERALD_MSG_PUBLISH), HERALD_OK);
    herald_event_t *event = &s_msg.publish.events [0];
    cr_assert_null (event->type);
    cr_assert_not (event->has_schema);
    cr_assert_null (event->meta);
    cr_assert_not (event->has_expect);
}

Test (herald_msg, publish_event_with_repeated_key_is_bad_request)
{
    msgpack_pack_map (&s_pk, 2);
    s_rid (1);
    s_key ("events");
    msgpack_pack_array (&s_pk, 1);
    s_event ("t", 0, 1);
    s_kstr ("topic", "u");
    s_expect (HERALD_MSG_PUBLISH, HERALD_ERR_BAD_REQUEST, "events[0].topic");
}

Test (herald_msg, publish_event_ignores_publisher_seq)
{
    msgpack_pack_map (&s_pk, 2);
    s_rid (1);
    s_key ("events");
    msgpack_pack_array (&s_pk, 1);
    s_event ("t", 0, 1);
    s_kuint ("seq", 77);
    cr_assert_eq (s_decode (HERALD_MSG_PUBLISH), HERALD_OK);
    cr_assert_eq (s_msg.publish.events [0].seq, 0);
}


//  --------------------------------------------------------------------------
//  REPLAY

Test (herald_msg, replay_without_start_reads_from_one_with_default_credit)
{
    msgpack_pack_map (&s_pk, 1);
    s_rid (4);
    cr_assert_eq (s_decode (HERALD_MSG_REPLAY), HERALD_OK);
    cr_assert_not (s_msg.replay.has_from);
    cr_assert_not (s_msg.replay.has_from_ts);
    cr_assert_eq (s_msg.replay.from, 1);
    cr_assert_eq (s_msg.replay.credit, HERALD_CREDIT_DEFAULT);
    cr_assert_eq (s_msg.replay.prefix_count, 0);
    cr_assert_not (s_msg.replay.has_to);
}

Test (herald_msg, replay_round_trips_with_every_field)
{
    herald_str_t prefixes [] = { { "orders.", 7 }, { "", 0 } };
    herald_msg_t msg = { .type = HERALD_MSG_REPLAY, .has_rid = true, .rid = 9 };
    msg.replay.has_from_ts = true;
    msg.replay.from_ts = 1700000000000000000ULL;
    msg.replay.has_until_ts = true;
    msg.replay.until_ts = 1800000000000000000ULL;
    msg.replay.prefixes = prefixes;
    msg.replay.prefix_count = 2;
    msg.replay.credit = 50;
    herald_msg_t out;
    s_round_trip (&msg, &out);
    cr_assert (out.replay.has_from_ts);
    cr_assert_eq (out.replay.from_ts, msg.replay.from_ts);
    cr_assert_eq (out.replay.until_ts, msg.replay.until_ts);
    cr_assert_eq (out.replay.prefix_count, 2);
    cr_assert (s_str_is (out.replay.prefixes [0], "orders."));
    cr_assert_eq (out.replay.prefixes [1].len, 0);
    cr_assert_eq (out.replay.credit, 50);
}

Test (herald_msg, replay_round_trips_from_and_to)
{
    herald_msg_t msg = { .type = HERALD_MSG_REPLAY, .has_rid = true, .rid = 9 };
    msg.replay.has_from = true;
    msg.replay.from = 10;
    msg.replay.has_to = true;
    msg.replay.to = 10;
    msg.replay.credit = 1;
    herald_msg_t out;
    s_round_trip (&msg, &out);
    cr_assert (out.replay.has_from);
    cr_assert_eq (out.replay.from, 10);
    cr_assert_eq (out.replay.to, 10);
}

Test (herald_msg, replay_with_from_and_from_ts_is_bad_request)
{
    msgpack_pack_map (&s_pk, 3);
    s_rid (4);
    s_kuint ("from", 1);
    s_kuint ("from_ts", 1);
    s_expect (HERALD_MSG_REPLAY, HERALD_ERR_BAD_REQUEST, "from");
}

Test (herald_msg, replay_from_zero_is_bad_request)
{
    msgpack_pack_map (&s_pk, 2);
    s_rid (4);
    s_kuint ("from", 0);
    s_expect (HERALD_MSG_REPLAY, HERALD_ERR_BAD_REQUEST, "from");
}

Test (herald_msg, replay_from_as_string_is_bad_request)
{
    msgpack_pack_map (&s_pk, 2);
    s_rid (4);
    s_kstr ("from", "1");
    s_expect (HERALD_MSG_REPLAY, HERALD_ERR_BAD_REQUEST, "from");
}

Test (herald_msg, replay_negative_from_ts_is_bad_request)
{
    msgpack_pack_map (&s_pk, 2);
    s_rid (4);
    s_key ("from_ts");
    msgpack_pack_int64 (&s_pk, -1);
    s_expect (HERALD_MSG_REPLAY, HERALD_ERR_BAD_REQUEST, "from_ts");
}

Test (herald_msg, replay_with_to_and_until_ts_is_bad_request)
{
    msgpack_pack_map (&s_pk, 3);
    s_rid (4);
    s_kuint ("to", 5);
    s_kuint ("until_ts", 5);
    s_expect (HERALD_MSG_REPLAY, HERALD_ERR_BAD_REQUEST, "to");
}

Test (herald_msg, replay_to_below_from_is_bad_request)
{
    msgpack_pack_map (&s_pk, 3);
    s_rid (4);
    s_kuint ("from", 10);
    s_kuint ("to", 9);
    s_expect (HERALD_MSG_REPLAY, HERALD_ERR_BAD_REQUEST, "to");
}

Test (herald_msg, replay_to_zero_without_from_is_bad_request)
{
    msgpack_pack_map (&s_pk, 2);
    s_rid (4);
    s_kuint ("to", 0);
    s_expect (HERALD_MSG_REPLAY, HERALD_ERR_BAD_REQUEST, "to");
}

Test (herald_msg, replay_to_equal_to_from_is_accepted)
{
    msgpack_pack_map (&s_pk, 3);
    s_rid (4);
    s_kuint ("from", 10);
    s_kuint ("to", 10);
    cr_assert_eq (s_decode (HERALD_MSG_REPLAY), HERALD_OK);
}

Test (herald_msg, replay_to_with_from_ts_is_accepted)
{
    msgpack_pack_map (&s_pk, 3);
    s_rid (4);
    s_kuint ("from_ts", 1000);
    s_kuint ("to", 3);
    cr_assert_eq (s_decode (HERALD_MSG_REPLAY), HERALD_OK);
    cr_assert_eq (s_msg.replay.to, 3);
}

Test (herald_msg, replay_nil_from_is_absent)
{
    msgpack_pack_map (&s_pk, 3);
    s_rid (4);
    s_key ("from");
    msgpack_pack_nil (&s_pk);
    s_kuint ("from_ts", 5);
    cr_assert_eq (s_decode (HERALD_MSG_REPLAY), HERALD_OK);
    cr_assert_not (s_msg.replay.has_from);
    cr_assert (s_msg.replay.has_from_ts);
}

Test (herald_msg, replay_prefixes_are_read)
{
    msgpack_pack_map (&s_pk, 2);
    s_rid (4);
    s_key ("prefixes");
    msgpack_pack_array (&s_pk, 2);
    s_str ("orders.");
    s_str ("stock.");
    cr_assert_eq (s_decode (HERALD_MSG_REPLAY), HERALD_OK);
    cr_assert_eq (s_msg.replay.prefix_count, 2);
    cr_assert (s_str_is (s_msg.replay.prefixes [1], "stock."));
}

Test (herald_msg, replay_empty_prefixes_mean_all)
{
    msgpack_pack_map (&s_pk, 2);
    s_rid (4);
    s_key ("prefixes");
    msgpack_pack_array (&s_pk, 0);
    cr_assert_eq (s_decode (HERALD_MSG_REPLAY), HERALD_OK);
    cr_assert_eq (s_msg.replay.prefix_count, 0);
}

Test (herald_msg, replay_prefixes_not_an_array_is_bad_request)
{
    msgpack_pack_map (&s_pk, 2);
    s_rid (4);
    s_kstr ("prefixes", "orders.");
    s_expect (HERALD_MSG_REPLAY, HERALD_ERR_BAD_REQUEST, "prefixes");
}

Test (herald_msg, replay_prefix_not_a_str_is_bad_request)
{
    msgpack_pack_map (&s_pk, 2);
    s_rid (4);
    s_key ("prefixes");
    msgpack_pack_array (&s_pk, 2);
    s_str ("a");
    msgpack_pack_uint64 (&s_pk, 1);
    s_expect (HERALD_MSG_REPLAY, HERALD_ERR_BAD_REQUEST, "prefixes[1]");
}

Test (herald_msg, replay_prefix_of_256_bytes_is_bad_request)
{
    char prefix [257];
    memset (prefix, 'p', 256);
    prefix [256] = 0;
    msgpack_pack_map (&s_pk, 2);
    s_rid (4);
    s_key ("prefixes");
    msgpack_pack_array (&s_pk, 1);
    s_str (prefix);
    s_expect (HERALD_MSG_REPLAY, HERALD_ERR_BAD_REQUEST, "prefixes[0]");
}

Test (herald_msg, replay_with_too_many_prefixes_is_bad_request)
{
    int index;
    msgpack_pack_map (&s_pk, 2);
    s_rid (4);
    s_key ("prefixes");
    msgpack_pack_array (&s_pk, HERALD_PREFIXES_MAX + 1);
    for (index = 0; index <= HERALD_PREFIXES_MAX; index++)
        s_str ("p");
    s_expect (HERALD_MSG_REPLAY, HERALD_ERR_BAD_REQUEST, "prefixes");
}

Test (herald_msg, replay_with_the_most_prefixes_is_accepted)
{
    int index;
    msgpack_pack_map (&s_pk, 2);
    s_rid (4);
    s_key ("prefixes");
    msgpack_pack_array (&s_pk, HERALD_PREFIXES_MAX);
    for (index = 0; index < HERALD_PREFIXES_MAX; index++)
        s_str ("p");
    cr_assert_eq (s_decode (HERALD_MSG_REPLAY), HERALD_OK);
    cr_assert_eq (s_msg.replay.prefix_count, HERALD_PREFIXES_MAX);
}

Test (herald_msg, replay_credit_above_the_cap_counts_as_the_cap)
{
    msgpack_pack_map (&s_pk, 2);
    s_rid (4);
    s_kuint ("credit", 5000000000ULL);
    cr_assert_eq (s_decode (HERALD_MSG_REPLAY), HERALD_OK);
    cr_assert_eq (s_msg.replay.credit, HERALD_CREDIT_MAX);
}

Test (herald_msg, replay_credit_zero_is_accepted)
{
    msgpack_pack_map (&s_pk, 2);
    s_rid (4);
    s_kuint ("credit", 0);
    cr_assert_eq (s_decode (HERALD_MSG_REPLAY), HERALD_OK);
    cr_assert_eq (s_msg.replay.credit, 0);
}

Test (herald_msg, replay_negative_credit_is_bad_request)
{
    msgpack_pack_map (&s_pk, 2);
    s_rid (4);
    s_key ("credit");
    msgpack_pack_int64 (&s_pk, -5);
    s_expect (HERALD_MSG_REPLAY, HERALD_ERR_BAD_REQUEST, "credit");
}

Test (herald_msg, replay_nil_credit_is_the_default)
{
    msgpack_pack_map (&s_pk, 2);
    s_rid (4);
    s_key ("credit");
    msgpack_pack_nil (&s_pk);
    cr_assert_eq (s_decode (HERALD_MSG_REPLAY), HERALD_OK);
    cr_assert_eq (s_msg.replay.credit, HERALD_CREDIT_DEFAULT);
}


//  --------------------------------------------------------------------------
//  READ

Test (herald_msg, read_defaults_from_ver_to_one)
{
    msgpack_pack_map (&s_pk, 2);
    s_rid (4);
    s_kstr ("topic", "orders.1");
    cr_assert_eq (s_decode (HERALD_MSG_READ), HERALD_OK);
    cr_assert (s_str_is (s_msg.read.topic, "orders.1"));
    cr_assert_eq (s_msg.read.from_ver, 1);
    cr_assert_not (s_msg.read.has_to_ver);
    cr_assert_eq (s_msg.read.credit, HERALD_CREDIT_DEFAULT);
}

Test (herald_msg, read_round_trips_with_every_field)
{
    herald_msg_t msg = { .type = HERALD_MSG_READ, .has_rid = true, .rid = 2 };
    msg.read.topic = (herald_str_t) { "orders.1", 8 };
    msg.read.from_ver = 3;
    msg.read.has_to_ver = true;
    msg.read.to_ver = 30;
    msg.read.credit = 7;
    herald_msg_t out;
    s_round_trip (&msg, &out);
    cr_assert (s_str_is (out.read.topic, "orders.1"));
    cr_assert_eq (out.read.from_ver, 3);
    cr_assert_eq (out.read.to_ver, 30);
    cr_assert_eq (out.read.credit, 7);
}

Test (herald_msg, read_without_topic_is_bad_request)
{
    msgpack_pack_map (&s_pk, 1);
    s_rid (4);
    s_expect (HERALD_MSG_READ, HERALD_ERR_BAD_REQUEST, "topic");
}

Test (herald_msg, read_with_reserved_topic_is_bad_request)
{
    msgpack_pack_map (&s_pk, 2);
    s_rid (4);
    s_kstr ("topic", "$hb");
    s_expect (HERALD_MSG_READ, HERALD_ERR_BAD_REQUEST, "topic");
}

Test (herald_msg, read_with_bin_topic_is_bad_request)
{
    msgpack_pack_map (&s_pk, 2);
    s_rid (4);
    s_key ("topic");
    msgpack_pack_bin (&s_pk, 1);
    msgpack_pack_bin_body (&s_pk, "t", 1);
    s_expect (HERALD_MSG_READ, HERALD_ERR_BAD_REQUEST, "topic");
}

Test (herald_msg, read_from_ver_zero_is_bad_request)
{
    msgpack_pack_map (&s_pk, 3);
    s_rid (4);
    s_kstr ("topic", "t");
    s_kuint ("from_ver", 0);
    s_expect (HERALD_MSG_READ, HERALD_ERR_BAD_REQUEST, "from_ver");
}

Test (herald_msg, read_to_ver_below_from_ver_is_bad_request)
{
    msgpack_pack_map (&s_pk, 4);
    s_rid (4);
    s_kstr ("topic", "t");
    s_kuint ("from_ver", 5);
    s_kuint ("to_ver", 4);
    s_expect (HERALD_MSG_READ, HERALD_ERR_BAD_REQUEST, "to_ver");
}

Test (herald_msg, read_credit_above_the_cap_counts_as_the_cap)
{
    msgpack_pack_map (&s_pk, 3);
    s_rid (4);
    s_kstr ("topic", "t");
    s_kuint ("credit", 1000001);
    cr_assert_eq (s_decode (HERALD_MSG_READ), HERALD_OK);
    cr_assert_eq (s_msg.read.credit, HERALD_CREDIT_MAX);
}

Test (herald_msg, read_float_credit_is_bad_request)
{
    msgpack_pack_map (&s_pk, 3);
    s_rid (4);
    s_kstr ("topic", "t");
    s_key ("credit");
    msgpack_pack_double (&s_pk, 10.0);
    s_expect (HERALD_MSG_READ, HERALD_ERR_BAD_REQUEST, "credit");
}


//  --------------------------------------------------------------------------
//  CREDIT, CANCEL, STATUS, HELLO

Test (herald_msg, credit_round_trips)
{
    herald_msg_t msg = { .type = HERALD_MSG_CREDIT, .has_rid = true, .rid = 2 };
    msg.credit.credit = 500;
    herald_msg_t out;
    s_round_trip (&msg, &out);
    cr_assert_eq (out.credit.credit, 500);
}

Test (herald_msg, credit_without_credit_is_bad_request)
{
    msgpack_pack_map (&s_pk, 1);
    s_rid (4);
    s_expect (HERALD_MSG_CREDIT, HERALD_ERR_BAD_REQUEST, "credit");
}

Test (herald_msg, credit_above_the_cap_counts_as_the_cap)
{
    msgpack_pack_map (&s_pk, 2);
    s_rid (4);
    s_kuint ("credit", UINT64_MAX);
    cr_assert_eq (s_decode (HERALD_MSG_CREDIT), HERALD_OK);
    cr_assert_eq (s_msg.credit.credit, HERALD_CREDIT_MAX);
}

Test (herald_msg, cancel_round_trips)
{
    herald_msg_t msg = { .type = HERALD_MSG_CANCEL, .has_rid = true, .rid = 2 };
    herald_msg_t out;
    s_round_trip (&msg, &out);
}

Test (herald_msg, status_round_trips)
{
    herald_msg_t msg = { .type = HERALD_MSG_STATUS, .has_rid = true, .rid = UINT64_MAX };
    herald_msg_t out;
    s_round_trip (&msg, &out);
}

Test (herald_msg, hello_round_trips_with_client)
{
    herald_msg_t msg = { .type = HERALD_MSG_HELLO, .has_rid = true, .rid = 1 };
    msg.hello.proto = 1;
    msg.hello.client = (herald_str_t) { "billing", 7 };
    herald_msg_t out;
    s_round_trip (&msg, &out);
    cr_assert_eq (out.hello.proto, 1);
    cr_assert (s_str_is (out.hello.client, "billing"));
}

Test (herald_msg, hello_without_client_is_accepted)
{
    msgpack_pack_map (&s_pk, 2);
    s_rid (1);
    s_kuint ("proto", 1);
    cr_assert_eq (s_decode (HERALD_MSG_HELLO), HERALD_OK);
    cr_assert_null (s_msg.hello.client.ptr);
}

Test (herald_msg, hello_with_other_proto_is_unsupported)
{
    msgpack_pack_map (&s_pk, 3);
    s_rid (8);
    s_kuint ("proto", 2);
    s_kuint ("client", 5);
    s_expect (HERALD_MSG_HELLO, HERALD_ERR_UNSUPPORTED, "proto");
    cr_assert_eq (s_err.rid, 8);
}

Test (herald_msg, hello_without_proto_is_bad_request)
{
    msgpack_pack_map (&s_pk, 1);
    s_rid (8);
    s_expect (HERALD_MSG_HELLO, HERALD_ERR_BAD_REQUEST, "proto");
}

Test (herald_msg, hello_with_string_proto_is_bad_request)
{
    msgpack_pack_map (&s_pk, 2);
    s_rid (8);
    s_kstr ("proto", "1");
    s_expect (HERALD_MSG_HELLO, HERALD_ERR_BAD_REQUEST, "proto");
}

Test (herald_msg, hello_with_int_client_is_bad_request)
{
    msgpack_pack_map (&s_pk, 3);
    s_rid (8);
    s_kuint ("proto", 1);
    s_kuint ("client", 3);
    s_expect (HERALD_MSG_HELLO, HERALD_ERR_BAD_REQUEST, "client");
}


//  ACL (an addition: the security admin command)

Test (herald_msg, acl_round_trips_both_ops_both_ways)
{
    herald_msg_type_t types [] = { HERALD_MSG_ACL, HERALD_MSG_ACL_REPLY };
    herald_msg_acl_op_t ops [] = { HERALD_MSG_ACL_RELOAD, HERALD_MSG_ACL_SHOW };
    for (size_t type = 0; type < 2; type++)
        for (size_t op = 0; op < 2; op++) {
            herald_msg_t msg = { .type = types [type], .has_rid = true, .rid = 9 };
            msg.acl.op = ops [op];
            herald_msg_t out;
            s_round_trip (&msg, &out);
            cr_assert_eq (out.acl.op, ops [op]);
        }
}

Test (herald_msg, acl_reply_keeps_the_brokers_keys)
{
    msgpack_sbuffer raw;
    msgpack_sbuffer_init (&raw);
    msgpack_packer pk;
    msgpack_packer_init (&pk, &raw, msgpack_sbuffer_write);
    msgpack_pack_str_with_body (&pk, "users", 5);
    msgpack_pack_uint64 (&pk, 3);
    herald_msg_t msg = { .type = HERALD_MSG_ACL_REPLY, .has_rid = true, .rid = 2 };
    msg.acl.op = HERALD_MSG_ACL_RELOAD;
    msg.acl.raw = (herald_msg_raw_t) { raw.data, raw.size, 1 };
    cr_assert_eq (herald_msg_encode (&msg, &s_out), 0);
    msgpack_unpacked unpacked;
    msgpack_unpacked_init (&unpacked);
    cr_assert_eq (msgpack_unpack_next (&unpacked, s_out.data, s_out.size, NULL),
                  MSGPACK_UNPACK_SUCCESS);
    cr_assert_eq (unpacked.data.type, MSGPACK_OBJECT_MAP);
    cr_assert_eq (unpacked.data.via.map.size, 3);
    msgpack_unpacked_destroy (&unpacked);
    msgpack_sbuffer_destroy (&raw);
}

Test (herald_msg, acl_op_must_be_reload_or_show)
{
    msgpack_pack_map (&s_pk, 2);
    s_rid (4);
    s_kstr ("op", "drop");
    s_expect (HERALD_MSG_ACL, HERALD_ERR_BAD_REQUEST, "op");
    cr_assert (s_err.has_rid && s_err.rid == 4);
}

Test (herald_msg, acl_op_is_required_and_a_str)
{
    msgpack_pack_map (&s_pk, 1);
    s_rid (4);
    s_expect (HERALD_MSG_ACL, HERALD_ERR_BAD_REQUEST, "op");
    msgpack_sbuffer_clear (&s_buf);
    msgpack_pack_map (&s_pk, 2);
    s_rid (4);
    s_kuint ("op", 1);
    s_expect (HERALD_MSG_ACL, HERALD_ERR_BAD_REQUEST, "op");
    msgpack_sbuffer_clear (&s_buf);
    msgpack_pack_map (&s_pk, 2);
    s_rid (4);
    s_kstr ("op", "RELOAD");
    s_expect (HERALD_MSG_ACL, HERALD_ERR_BAD_REQUEST, "op");
}

Test (herald_msg, acl_without_rid_is_bad_request_with_nil_rid)
{
    msgpack_pack_map (&s_pk, 1);
    s_kstr ("op", "show");
    s_expect_with (HERALD_MSG_ACL, NULL, HERALD_ERR_BAD_REQUEST, "rid", false);
}


//  --------------------------------------------------------------------------
//  Replies

Test (herald_msg, ack_round_trips)
{
    static const uint64_t seq [] = { 10, 11, 5 };
    static const uint64_t ver [] = { 1, 2, 1 };
    static const bool dup [] = { false, false, true };
    herald_msg_t msg = { .type = HERALD_MSG_ACK, .has_rid = true, .rid = 3 };
    msg.ack.seq = seq;
    msg.ack.ver = ver;
    msg.ack.dup = dup;
    msg.ack.count = 3;
    herald_msg_t out;
    s_round_trip (&msg, &out);
    cr_assert_eq (out.ack.count, 3);
    cr_assert_eq (out.ack.seq [2], 5);
    cr_assert_eq (out.ack.ver [1], 2);
    cr_assert (out.ack.dup [2]);
    cr_assert_not (out.ack.dup [0]);
}

Test (herald_msg, ack_with_unequal_lengths_is_bad_request)
{
    msgpack_pack_map (&s_pk, 4);
    s_rid (3);
    s_key ("seq"); msgpack_pack_array (&s_pk, 2);
    msgpack_pack_uint64 (&s_pk, 1); msgpack_pack_uint64 (&s_pk, 2);
    s_key ("ver"); msgpack_pack_array (&s_pk, 1); msgpack_pack_uint64 (&s_pk, 1);
    s_key ("dup"); msgpack_pack_array (&s_pk, 1); msgpack_pack_false (&s_pk);
    s_expect (HERALD_MSG_ACK, HERALD_ERR_BAD_REQUEST, "dup");
}

Test (herald_msg, ack_with_non_bool_dup_is_bad_request)
{
    msgpack_pack_map (&s_pk, 4);
    s_rid (3);
    s_key ("seq"); msgpack_pack_array (&s_pk, 1); msgpack_pack_uint64 (&s_pk, 1);
    s_key ("ver"); msgpack_pack_array (&s_pk, 1); msgpack_pack_uint64 (&s_pk, 1);
    s_key ("dup"); msgpack_pack_array (&s_pk, 1); msgpack_pack_uint64 (&s_pk, 0);
    s_expect (HERALD_MSG_ACK, HERALD_ERR_BAD_REQUEST, "dup[0]");
}

Test (herald_msg, ack_with_negative_seq_is_bad_request)
{
    msgpack_pack_map (&s_pk, 4);
    s_rid (3);
    s_key ("seq"); msgpack_pack_array (&s_pk, 1); msgpack_pack_int64 (&s_pk, -1);
    s_key ("ver"); msgpack_pack_array (&s_pk, 1); msgpack_pack_uint64 (&s_pk, 1);
    s_key ("dup"); msgpack_pack_array (&s_pk, 1); msgpack_pack_false (&s_pk);
    s_expect (HERALD_MSG_ACK, HERALD_ERR_BAD_REQUEST, "seq[0]");
}

//  `reused` (an addition to HWP/1, docs/protocol.md): sent only when an
//  entry is true, so an ACK without a reused id is the one old clients know.
Test (herald_msg, ack_without_a_reused_id_has_no_reused_key)
{
    static const uint64_t seq [] = { 10, 5 };
    static const uint64_t ver [] = { 1, 1 };
    static const bool dup [] = { false, true };
    static const bool reused [] = { false, false };
    herald_msg_t msg = { .type = HERALD_MSG_ACK, .has_rid = true, .rid = 3 };
    msg.ack.seq = seq;
    msg.ack.ver = ver;
    msg.ack.dup = dup;
    msg.ack.reused = reused;
    msg.ack.count = 2;
    herald_msg_t out;
    s_round_trip (&msg, &out);
    cr_assert_eq ((uint8_t) s_out.data [0], 0x84, "an ACK of four keys: rid, seq, ver, dup");
    cr_assert_null (out.ack.reused);
    cr_assert (out.ack.dup [1]);
}

Test (herald_msg, ack_with_a_reused_id_round_trips_the_reused_key)
{
    static const uint64_t seq [] = { 10, 5, 7 };
    static const uint64_t ver [] = { 1, 1, 2 };
    static const bool dup [] = { false, true, true };
    static const bool reused [] = { false, true, false };
    herald_msg_t msg = { .type = HERALD_MSG_ACK, .has_rid = true, .rid = 3 };
    msg.ack.seq = seq;
    msg.ack.ver = ver;
    msg.ack.dup = dup;
    msg.ack.reused = reused;
    msg.ack.count = 3;
    herald_msg_t out;
    s_round_trip (&msg, &out);
    cr_assert_eq ((uint8_t) s_out.data [0], 0x85, "an ACK of five keys, reused the fifth");
    cr_assert_not_null (out.ack.reused);
    cr_assert_not (out.ack.reused [0]);
    cr_assert (out.ack.reused [1]);
    cr_assert_not (out.ack.reused [2], "a plain duplicate is not reused");
    cr_assert (out.ack.dup [1] && out.ack.dup [2]);
}

Test (herald_msg, ack_with_nil_reused_is_an_ack_without_it)
{
    msgpack_pack_map (&s_pk, 5);
    s_rid (3);
    s_key ("seq"); msgpack_pack_array (&s_pk, 1); msgpack_pack_uint64 (&s_pk, 1);
    s_key ("ver"); msgpack_pack_array (&s_pk, 1); msgpack_pack_uint64 (&s_pk, 1);
    s_key ("dup"); msgpack_pack_array (&s_pk, 1); msgpack_pack_true (&s_pk);
    s_key ("reused"); msgpack_pack_nil (&s_pk);
    cr_assert_eq (s_decode (HERALD_MSG_ACK), HERALD_OK, "message: %s", s_err.message);
    cr_assert_null (s_msg.ack.reused);
}

Test (herald_msg, ack_with_reused_of_another_length_is_bad_request)
{
    msgpack_pack_map (&s_pk, 5);
    s_rid (3);
    s_key ("seq"); msgpack_pack_array (&s_pk, 2);
    msgpack_pack_uint64 (&s_pk, 1); msgpack_pack_uint64 (&s_pk, 2);
    s_key ("ver"); msgpack_pack_array (&s_pk, 2);
    msgpack_pack_uint64 (&s_pk, 1); msgpack_pack_uint64 (&s_pk, 2);
    s_key ("dup"); msgpack_pack_array (&s_pk, 2);
    msgpack_pack_true (&s_pk); msgpack_pack_false (&s_pk);
    s_key ("reused"); msgpack_pack_array (&s_pk, 1); msgpack_pack_true (&s_pk);
    s_expect (HERALD_MSG_ACK, HERALD_ERR_BAD_REQUEST, "reused");
}

Test (herald_msg, ack_with_non_bool_reused_is_bad_request)
{
    msgpack_pack_map (&s_pk, 5);
    s_rid (3);
    s_key ("seq"); msgpack_pack_array (&s_pk, 1); msgpack_pack_uint64 (&s_pk, 1);
    s_key ("ver"); msgpack_pack_array (&s_pk, 1); msgpack_pack_uint64 (&s_pk, 1);
    s_key ("dup"); msgpack_pack_array (&s_pk, 1); msgpack_pack_true (&s_pk);
    s_key ("reused"); msgpack_pack_array (&s_pk, 1); msgpack_pack_uint64 (&s_pk, 1);
    s_expect (HERALD_MSG_ACK, HERALD_ERR_BAD_REQUEST, "reused[0]");
}

Test (herald_msg, ack_with_reused_on_a_new_event_is_bad_request)
{
    msgpack_pack_map (&s_pk, 5);
    s_rid (3);
    s_key ("seq"); msgpack_pack_array (&s_pk, 1); msgpack_pack_uint64 (&s_pk, 1);
    s_key ("ver"); msgpack_pack_array (&s_pk, 1); msgpack_pack_uint64 (&s_pk, 1);
    s_key ("dup"); msgpack_pack_array (&s_pk, 1); msgpack_pack_false (&s_pk);
    s_key ("reused"); msgpack_pack_array (&s_pk, 1); msgpack_pack_true (&s_pk);
    s_expect (HERALD_MSG_ACK, HERALD_ERR_BAD_REQUEST, "reused[0]");
}

Test (herald_msg, events_round_trips)
{
    herald_msg_t msg = { .type = HERALD_MSG_EVENTS, .has_rid = true, .rid = 3 };
    herald_msg_t out;
    s_round_trip (&msg, &out);
}

Test (herald_msg, end_round_trips)
{
    herald_msg_t msg = { .type = HERALD_MSG_END, .has_rid = true, .rid = 3 };
    msg.end.last = 99;
    msg.end.head = 120;
    msg.end.reason = (herald_str_t) { "cancelled", 9 };
    herald_msg_t out;
    s_round_trip (&msg, &out);
    cr_assert_eq (out.end.last, 99);
    cr_assert_eq (out.end.head, 120);
    cr_assert (s_str_is (out.end.reason, "cancelled"));
}

Test (herald_msg, end_without_reason_is_bad_request)
{
    msgpack_pack_map (&s_pk, 3);
    s_rid (3);
    s_kuint ("last", 1);
    s_kuint ("head", 1);
    s_expect (HERALD_MSG_END, HERALD_ERR_BAD_REQUEST, "reason");
}

Test (herald_msg, status_reply_round_trips_with_extras)
{
    herald_str_t keys [] = { { "group_commits", 13 }, { "dropped", 7 } };
    uint64_t values [] = { 42, 0 };
    herald_msg_t msg = { .type = HERALD_MSG_STATUS_REPLY, .has_rid = true, .rid = 3 };
    msg.status.head = 1000;
    msg.status.topics = 12;
    msg.status.events = 1000;
    msg.status.role = (herald_str_t) { "standalone", 10 };
    msg.status.node = (herald_str_t) { "node-a", 6 };
    msg.status.uptime_s = 86400;
    msg.status.extra_keys = keys;
    msg.status.extra_values = values;
    msg.status.extra_count = 2;
    herald_msg_t out;
    s_round_trip (&msg, &out);
    cr_assert_eq (out.status.head, 1000);
    cr_assert_eq (out.status.topics, 12);
    cr_assert (s_str_is (out.status.role, "standalone"));
    cr_assert (s_str_is (out.status.node, "node-a"));
    cr_assert_eq (out.status.uptime_s, 86400);
    cr_assert_eq (out.status.extra_count, 2);
    cr_assert (s_str_is (out.status.extra_keys [0], "group_commits"));
    cr_assert_eq (out.status.extra_values [0], 42);
}

Test (herald_msg, status_reply_ignores_unknown_keys_that_are_not_uint)
{
    msgpack_pack_map (&s_pk, 9);
    s_rid (3);
    s_kuint ("head", 1);
    s_kuint ("topics", 1);
    s_kuint ("events", 1);
    s_kstr ("role", "leader");
    s_kstr ("node", "n");
    s_kuint ("uptime_s", 1);
    s_kstr ("version", "0.1.0");
    s_kuint ("lag", 5);
    cr_assert_eq (s_decode (HERALD_MSG_STATUS_REPLY), HERALD_OK);
    cr_assert_eq (s_msg.status.extra_count, 1);
    cr_assert (s_str_is (s_msg.status.extra_keys [0], "lag"));
}

Test (herald_msg, status_reply_without_role_is_bad_request)
{
    msgpack_pack_map (&s_pk, 6);
    s_rid (3);
    s_kuint ("head", 1);
    s_kuint ("topics", 1);
    s_kuint ("events", 1);
    s_kstr ("node", "n");
    s_kuint ("uptime_s", 1);
    s_expect (HERALD_MSG_STATUS_REPLY, HERALD_ERR_BAD_REQUEST, "role");
}

Test (herald_msg, welcome_round_trips)
{
    herald_str_t cluster [] = { { "tcp://127.0.0.1:5580", 20 } };
    herald_msg_t msg = { .type = HERALD_MSG_WELCOME, .has_rid = true, .rid = 1 };
    msg.welcome.proto = 1;
    msg.welcome.node = (herald_str_t) { "node-a", 6 };
    msg.welcome.head = 5;
    msg.welcome.fanout = (herald_str_t) { "tcp://127.0.0.1:5581", 20 };
    msg.welcome.cluster = cluster;
    msg.welcome.cluster_count = 1;
    herald_msg_t out;
    s_round_trip (&msg, &out);
    cr_assert_eq (out.welcome.proto, 1);
    cr_assert_eq (out.welcome.head, 5);
    cr_assert (s_str_is (out.welcome.fanout, "tcp://127.0.0.1:5581"));
    cr_assert_eq (out.welcome.cluster_count, 1);
    cr_assert (s_str_is (out.welcome.cluster [0], "tcp://127.0.0.1:5580"));
}

Test (herald_msg, welcome_with_too_many_cluster_entries_is_bad_request)
{
    int index;
    msgpack_pack_map (&s_pk, 6);
    s_rid (1);
    s_kuint ("proto", 1);
    s_kstr ("node", "n");
    s_kuint ("head", 0);
    s_kstr ("fanout", "tcp://x:1");
    s_key ("cluster");
    msgpack_pack_array (&s_pk, HERALD_CLUSTER_MAX + 1);
    for (index = 0; index <= HERALD_CLUSTER_MAX; index++)
        s_str ("tcp://x:2");
    s_expect (HERALD_MSG_WELCOME, HERALD_ERR_BAD_REQUEST, "cluster");
}

Test (herald_msg, error_round_trips_with_rid)
{
    herald_msg_t msg = { .type = HERALD_MSG_ERROR, .has_rid = true, .rid = 3 };
    msg.error.code = HERALD_ERR_OVERLOADED;
    msg.error.message = (herald_str_t) { "slow down", 9 };
    herald_msg_t out;
    s_round_trip (&msg, &out);
    cr_assert_eq (out.error.code, HERALD_ERR_OVERLOADED);
    cr_assert (s_str_is (out.error.message, "slow down"));
}

Test (herald_msg, error_round_trips_with_rid_nil)
{
    herald_msg_t msg = { .type = HERALD_MSG_ERROR, .has_rid = false };
    msg.error.code = HERALD_ERR_UNKNOWN_COMMAND;
    msg.error.message = (herald_str_t) { "unknown command", 15 };
    herald_msg_t out;
    s_round_trip (&msg, &out);
    cr_assert_eq (out.error.code, HERALD_ERR_UNKNOWN_COMMAND);
    cr_assert_not_null (memmem (s_out.data, s_out.size, "\xa3rid\xc0", 5));
}

Test (herald_msg, error_conflict_round_trips_topic_expected_actual)
{
    herald_msg_t msg = { .type = HERALD_MSG_ERROR, .has_rid = true, .rid = 3 };
    msg.error.code = HERALD_ERR_CONFLICT;
    msg.error.message = (herald_str_t) { "version conflict", 16 };
    msg.error.topic = (herald_str_t) { "orders.1", 8 };
    msg.error.expected = 0;
    msg.error.actual = 4;
    herald_msg_t out;
    s_round_trip (&msg, &out);
    cr_assert_eq (out.error.code, HERALD_ERR_CONFLICT);
    cr_assert (s_str_is (out.error.topic, "orders.1"));
    cr_assert_eq (out.error.expected, 0);
    cr_assert_eq (out.error.actual, 4);
}

Test (herald_msg, error_conflict_without_actual_is_bad_request)
{
    msgpack_pack_map (&s_pk, 5);
    s_rid (3);
    s_kstr ("code", "conflict");
    s_kstr ("message", "m");
    s_kstr ("topic", "t");
    s_kuint ("expected", 1);
    s_expect (HERALD_MSG_ERROR, HERALD_ERR_BAD_REQUEST, "actual");
}

Test (herald_msg, error_not_leader_round_trips_leader)
{
    herald_msg_t msg = { .type = HERALD_MSG_ERROR, .has_rid = true, .rid = 3 };
    msg.error.code = HERALD_ERR_NOT_LEADER;
    msg.error.message = (herald_str_t) { "", 0 };
    msg.error.leader = (herald_str_t) { "tcp://10.0.0.2:5580", 19 };
    herald_msg_t out;
    s_round_trip (&msg, &out);
    cr_assert_eq (out.error.code, HERALD_ERR_NOT_LEADER);
    cr_assert (s_str_is (out.error.leader, "tcp://10.0.0.2:5580"));
}

Test (herald_msg, error_not_leader_round_trips_unknown_leader_as_nil)
{
    herald_msg_t msg = { .type = HERALD_MSG_ERROR, .has_rid = true, .rid = 3 };
    msg.error.code = HERALD_ERR_NOT_LEADER;
    msg.error.message = (herald_str_t) { "no leader", 9 };
    herald_msg_t out;
    s_round_trip (&msg, &out);
    cr_assert_null (out.error.leader.ptr);
    cr_assert_not_null (memmem (s_out.data, s_out.size, "\xa6leader\xc0", 8));
}

Test (herald_msg, error_with_unknown_code_reads_as_internal)
{
    msgpack_pack_map (&s_pk, 3);
    s_rid (3);
    s_kstr ("code", "quota_exceeded");
    s_kstr ("message", "m");
    cr_assert_eq (s_decode (HERALD_MSG_ERROR), HERALD_OK);
    cr_assert_eq (s_msg.error.code, HERALD_ERR_INTERNAL);
}

Test (herald_msg, error_with_string_rid_is_bad_request)
{
    msgpack_pack_map (&s_pk, 3);
    s_kstr ("rid", "3");
    s_kstr ("code", "internal");
    s_kstr ("message", "m");
    s_expect_with (HERALD_MSG_ERROR, NULL, HERALD_ERR_BAD_REQUEST, "rid", false);
}

Test (herald_msg, encode_error_writes_rid_nil_when_unknown)
{
    herald_error_t err;
    memset (&err, 0, sizeof (err));
    herald_error_set (&err, HERALD_ERR_BAD_REQUEST, "body", "not a map");
    cr_assert_eq (herald_msg_encode_error (&err, &s_buf), 0);
    cr_assert_eq (s_decode (HERALD_MSG_ERROR), HERALD_OK);
    cr_assert_not (s_msg.has_rid);
    cr_assert_eq (s_msg.error.code, HERALD_ERR_BAD_REQUEST);
    cr_assert (s_str_is (s_msg.error.message, "body: not a map"));
}

Test (herald_msg, encode_error_echoes_a_known_rid)
{
    herald_error_t err;
    memset (&err, 0, sizeof (err));
    herald_error_set (&err, HERALD_ERR_TOO_LARGE, "events", "too many");
    err.has_rid = true;
    err.rid = 77;
    cr_assert_eq (herald_msg_encode_error (&err, &s_buf), 0);
    cr_assert_eq (s_decode (HERALD_MSG_ERROR), HERALD_OK);
    cr_assert_eq (s_msg.rid, 77);
    cr_assert_eq (s_msg.error.code, HERALD_ERR_TOO_LARGE);
}

Test (herald_msg, encode_error_sends_local_conditions_as_internal)
{
    herald_error_t err;
    memset (&err, 0, sizeof (err));
    herald_error_set (&err, HERALD_ERR_NOMEM, "", "out of memory");
    cr_assert_eq (herald_msg_encode_error (&err, &s_buf), 0);
    cr_assert_not_null (memmem (s_buf.data, s_buf.size, "internal", 8));
}

Test (herald_msg, decode_errors_encode_to_a_valid_error_reply)
{
    msgpack_pack_map (&s_pk, 1);
    s_rid (31);
    cr_assert_eq (s_decode (HERALD_MSG_PUBLISH), HERALD_ERR_BAD_REQUEST);
    cr_assert_eq (herald_msg_encode_error (&s_err, &s_out), 0);
    herald_msg_t reply;
    cr_assert_eq (herald_msg_decode (&reply, HERALD_MSG_ERROR, s_out.data, s_out.size,
                                     NULL, &s_zone, NULL), HERALD_OK);
    cr_assert_eq (reply.rid, 31);
    cr_assert_eq (reply.error.code, HERALD_ERR_BAD_REQUEST);
}

Test (herald_msg, heartbeat_round_trips_without_rid)
{
    herald_msg_t msg = { .type = HERALD_MSG_HEARTBEAT };
    msg.heartbeat.head = 1000;
    msg.heartbeat.ts = 1700000000000000000ULL;
    msg.heartbeat.node = (herald_str_t) { "node-a", 6 };
    msg.heartbeat.epoch = 3;
    herald_msg_t out;
    s_round_trip (&msg, &out);
    cr_assert_eq (out.heartbeat.head, 1000);
    cr_assert_eq (out.heartbeat.ts, msg.heartbeat.ts);
    cr_assert (s_str_is (out.heartbeat.node, "node-a"));
    cr_assert_eq (out.heartbeat.epoch, 3);
    cr_assert_null (memmem (s_out.data, s_out.size, "rid", 3));
}

Test (herald_msg, heartbeat_without_node_is_bad_request)
{
    msgpack_pack_map (&s_pk, 3);
    s_kuint ("head", 1);
    s_kuint ("ts", 1);
    s_kuint ("epoch", 1);
    s_expect_with (HERALD_MSG_HEARTBEAT, NULL, HERALD_ERR_BAD_REQUEST, "node", false);
}

Test (herald_msg, every_reply_fails_cleanly_at_every_truncation)
{
    static const uint64_t seq [] = { 1 };
    static const bool dup [] = { false };
    herald_str_t cluster [] = { { "tcp://a:1", 9 } };
    herald_loss_t losses [] = { { .lineage = 1, .lost_after = 300, .ts = 1 } };
    herald_msg_t msgs [7];
    memset (msgs, 0, sizeof (msgs));
    msgs [0] = (herald_msg_t) { .type = HERALD_MSG_ACK, .has_rid = true, .rid = 1000 };
    msgs [0].ack.seq = seq;
    msgs [0].ack.ver = seq;
    msgs [0].ack.dup = dup;
    msgs [0].ack.count = 1;
    msgs [1] = (herald_msg_t) { .type = HERALD_MSG_EVENTS, .has_rid = true, .rid = 1000 };
    msgs [2] = (herald_msg_t) { .type = HERALD_MSG_END, .has_rid = true, .rid = 1000 };
    msgs [2].end.reason = (herald_str_t) { "done", 4 };
    msgs [3] = (herald_msg_t) { .type = HERALD_MSG_STATUS_REPLY, .has_rid = true, .rid = 1 };
    msgs [4] = (herald_msg_t) { .type = HERALD_MSG_WELCOME, .has_rid = true, .rid = 1 };
    msgs [4].welcome.cluster = cluster;
    msgs [4].welcome.cluster_count = 1;
    msgs [3].status.losses = msgs [4].welcome.losses = losses;
    msgs [3].status.loss_count = msgs [4].welcome.loss_count = 1;
    msgs [5] = (herald_msg_t) { .type = HERALD_MSG_ERROR, .has_rid = true, .rid = 1 };
    msgs [5].error.code = HERALD_ERR_CONFLICT;
    msgs [6] = (herald_msg_t) { .type = HERALD_MSG_HEARTBEAT };
    int index;
    for (index = 0; index < 7; index++) {
        msgpack_sbuffer_clear (&s_out);
        cr_assert_eq (herald_msg_encode (&msgs [index], &s_out), 0);
        herald_msg_t out;
        cr_assert_eq (herald_msg_decode (&out, msgs [index].type, s_out.data, s_out.size,
                                         NULL, &s_zone, &s_err), HERALD_OK, "%s", s_err.message);
        size_t len;
        for (len = 0; len < s_out.size; len++) {
            char *copy = malloc (len ? len : 1);
            memcpy (copy, s_out.data, len);
            cr_assert_eq (herald_msg_decode (&out, msgs [index].type, copy, len, NULL,
                                             &s_zone, &s_err), HERALD_ERR_BAD_REQUEST);
            free (copy);
        }
    }
}

//  --------------------------------------------------------------------------
//  The store's loss history (issue 11): lineage and losses, additions to
//  HWP/1 that old brokers do not send

Test (herald_msg, end_round_trips_lineage)
{
    herald_msg_t msg = { .type = HERALD_MSG_END, .has_rid = true, .rid = 3 };
    msg.end.last = 10;
    msg.end.head = 10;
    msg.end.reason = (herald_str_t) { "done", 4 };
    msg.end.lineage = 2;
    herald_msg_t out;
    s_round_trip (&msg, &out);
    cr_assert_eq (out.end.lineage, 2);
}

Test (herald_msg, heartbeat_round_trips_lineage)
{
    herald_msg_t msg = { .type = HERALD_MSG_HEARTBEAT };
    msg.heartbeat.node = (herald_str_t) { "n", 1 };
    msg.heartbeat.lineage = 7;
    herald_msg_t out;
    s_round_trip (&msg, &out);
    cr_assert_eq (out.heartbeat.lineage, 7);
}

Test (herald_msg, status_and_welcome_round_trip_losses)
{
    herald_loss_t losses [] = {
        { .lineage = 1, .lost_after = 4500, .ts = 1700000000000000000ULL },
        { .lineage = 2, .lost_after = 9000, .ts = 1700000000000000001ULL }
    };
    herald_str_t cluster [] = { { "tcp://a:1", 9 } };
    herald_msg_t status = { .type = HERALD_MSG_STATUS_REPLY, .has_rid = true, .rid = 3 };
    status.status.role = (herald_str_t) { "standalone", 10 };
    status.status.node = (herald_str_t) { "n", 1 };
    status.status.lineage = 2;
    status.status.losses = losses;
    status.status.loss_count = 2;
    herald_msg_t welcome = { .type = HERALD_MSG_WELCOME, .has_rid = true, .rid = 4 };
    welcome.welcome.proto = 1;
    welcome.welcome.node = (herald_str_t) { "n", 1 };
    welcome.welcome.fanout = (herald_str_t) { "tcp://a:2", 9 };
    welcome.welcome.cluster = cluster;
    welcome.welcome.cluster_count = 1;
    welcome.welcome.lineage = 2;
    welcome.welcome.losses = losses;
    welcome.welcome.loss_count = 2;

    herald_msg_t out;
    s_round_trip (&status, &out);
    cr_assert_eq (out.status.lineage, 2);
    cr_assert_eq (out.status.loss_count, 2);
    cr_assert_eq (out.status.extra_count, 0, "lineage is a field, not an extra figure");
    cr_assert_eq (memcmp (out.status.losses, losses, sizeof (losses)), 0);
    s_round_trip (&welcome, &out);
    cr_assert_eq (out.welcome.lineage, 2);
    cr_assert_eq (out.welcome.loss_count, 2);
    cr_assert_eq (memcmp (out.welcome.losses, losses, sizeof (losses)), 0);
}

Test (herald_msg, replies_of_an_old_broker_read_as_lineage_0_and_no_losses)
{
    msgpack_pack_map (&s_pk, 6);
    s_rid (1);
    s_kuint ("proto", 1);
    s_kstr ("node", "n");
    s_kuint ("head", 0);
    s_kstr ("fanout", "tcp://x:1");
    s_key ("cluster");
    msgpack_pack_array (&s_pk, 0);
    cr_assert_eq (s_decode (HERALD_MSG_WELCOME), HERALD_OK, "%s", s_err.message);
    cr_assert_eq (s_msg.welcome.lineage, 0);
    cr_assert_eq (s_msg.welcome.loss_count, 0);
    cr_assert_null (s_msg.welcome.losses);

    msgpack_sbuffer_clear (&s_buf);
    msgpack_pack_map (&s_pk, 4);
    s_rid (1);
    s_kuint ("last", 1);
    s_kuint ("head", 1);
    s_kstr ("reason", "done");
    cr_assert_eq (s_decode (HERALD_MSG_END), HERALD_OK, "%s", s_err.message);
    cr_assert_eq (s_msg.end.lineage, 0);
}

Test (herald_msg, a_loss_without_lost_after_is_bad_request)
{
    msgpack_pack_map (&s_pk, 8);
    s_rid (1);
    s_kuint ("proto", 1);
    s_kstr ("node", "n");
    s_kuint ("head", 0);
    s_kstr ("fanout", "tcp://x:1");
    s_key ("cluster");
    msgpack_pack_array (&s_pk, 0);
    s_kuint ("lineage", 1);
    s_key ("losses");
    msgpack_pack_array (&s_pk, 1);
    msgpack_pack_map (&s_pk, 2);
    s_kuint ("lineage", 1);
    s_kuint ("ts", 5);
    s_expect (HERALD_MSG_WELCOME, HERALD_ERR_BAD_REQUEST, "losses[0].lost_after");
}

Test (herald_msg, losses_that_are_not_maps_are_bad_request)
{
    msgpack_pack_map (&s_pk, 9);
    s_rid (3);
    s_kuint ("head", 1);
    s_kuint ("topics", 1);
    s_kuint ("events", 1);
    s_kstr ("role", "standalone");
    s_kstr ("node", "n");
    s_kuint ("uptime_s", 1);
    s_kuint ("lineage", 1);
    s_key ("losses");
    msgpack_pack_array (&s_pk, 1);
    msgpack_pack_uint64 (&s_pk, 4500);
    s_expect (HERALD_MSG_STATUS_REPLY, HERALD_ERR_BAD_REQUEST, "losses[0]");
}

Test (herald_msg, encode_refuses_invalid_type)
{
    herald_msg_t msg = { .type = HERALD_MSG_INVALID };
    cr_assert_eq (herald_msg_encode (&msg, &s_buf), -1);
}
