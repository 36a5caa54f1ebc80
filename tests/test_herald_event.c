/*  =========================================================================
    test_herald_event - the envelope codec: encode, decode, peek, validate

    Bodies are built with msgpack_packer directly, as a third-party client
    would, so the decoder is tested against the contract and not only
    against our own encoder.
    =========================================================================
*/

#include <criterion/criterion.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "herald_event.h"

static const uint8_t s_id [16] = {
    0x01, 0x8f, 0x00, 0x11, 0x22, 0x33, 0x74, 0x44,
    0x85, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb
};

static msgpack_sbuffer s_buf;
static msgpack_packer s_pk;
static msgpack_zone s_zone;
static herald_error_t s_err;

static void
s_setup (void)
{
    msgpack_sbuffer_init (&s_buf);
    msgpack_packer_init (&s_pk, &s_buf, msgpack_sbuffer_write);
    msgpack_zone_init (&s_zone, 2048);
    memset (&s_err, 0, sizeof (s_err));
}

static void
s_teardown (void)
{
    msgpack_sbuffer_destroy (&s_buf);
    msgpack_zone_destroy (&s_zone);
}

TestSuite (herald_event, .init = s_setup, .fini = s_teardown);

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
s_bin (const void *value, size_t len)
{
    msgpack_pack_bin (&s_pk, len);
    msgpack_pack_bin_body (&s_pk, value, len);
}

//  A stored envelope written by hand with `extra` more keys to come after
//  the required ones (id, topic, seq, ver, ts, data).
static void
s_envelope_head (size_t extra, const char *topic)
{
    msgpack_pack_map (&s_pk, 6 + extra);
    s_key ("id");     s_bin (s_id, 16);
    s_key ("topic");  s_str (topic);
    s_key ("seq");    msgpack_pack_uint64 (&s_pk, 42);
    s_key ("ver");    msgpack_pack_uint64 (&s_pk, 7);
    s_key ("ts");     msgpack_pack_uint64 (&s_pk, 1700000000000000000ULL);
    s_key ("data");   s_bin ("xyz", 3);
}

static herald_err
s_decode (herald_event_t *event)
{
    return herald_event_decode (event, s_buf.data, s_buf.size, &s_zone, &s_err);
}

//  Decoding must fail with bad_request naming field.
static void
s_expect_bad (const char *field)
{
    herald_event_t event;
    cr_assert_eq (s_decode (&event), HERALD_ERR_BAD_REQUEST);
    cr_assert_eq (s_err.code, HERALD_ERR_BAD_REQUEST);
    cr_assert_str_eq (s_err.field, field);
}

static herald_event_t
s_full_event (void)
{
    static const herald_kv_t meta [] = {
        { "correlation_id", 14, "c-1", 3 },
        { "content_type", 12, "application/json", 16 }
    };
    herald_event_t event;
    memset (&event, 0, sizeof (event));
    memcpy (event.id, s_id, 16);
    event.topic = "orders.1234";
    event.topic_len = 11;
    event.seq = 100000;
    event.ver = 3;
    event.ts = 1700000000123456789ULL;
    event.type = "OrderPlaced";
    event.type_len = 11;
    event.has_schema = true;
    event.schema = 2;
    event.meta = meta;
    event.meta_count = 2;
    event.data = (const uint8_t *) "{\"total\":10}";
    event.data_len = 12;
    return event;
}

static herald_event_t
s_minimal_event (void)
{
    herald_event_t event;
    memset (&event, 0, sizeof (event));
    memcpy (event.id, s_id, 16);
    event.topic = "a";
    event.topic_len = 1;
    event.seq = 1;
    event.ver = 1;
    event.ts = 5;
    return event;
}

Test (herald_event, full_envelope_round_trips)
{
    herald_event_t in = s_full_event (), out;
    cr_assert_eq (herald_event_encode (&in, &s_buf), 0);
    cr_assert_eq (s_decode (&out), HERALD_OK);
    cr_assert_eq (memcmp (out.id, in.id, 16), 0);
    cr_assert_eq (out.topic_len, in.topic_len);
    cr_assert_eq (memcmp (out.topic, in.topic, in.topic_len), 0);
    cr_assert_eq (out.seq, in.seq);
    cr_assert_eq (out.ver, in.ver);
    cr_assert_eq (out.ts, in.ts);
    cr_assert_eq (out.type_len, 11);
    cr_assert_eq (memcmp (out.type, "OrderPlaced", 11), 0);
    cr_assert (out.has_schema);
    cr_assert_eq (out.schema, 2);
    cr_assert_eq (out.meta_count, 2);
    cr_assert_eq (memcmp (out.meta [1].value, "application/json", 16), 0);
    cr_assert_eq (out.data_len, 12);
    cr_assert_eq (memcmp (out.data, in.data, 12), 0);
    cr_assert_eq (out.encoded_size, s_buf.size);
}

Test (herald_event, minimal_envelope_round_trips_without_optional_fields)
{
    herald_event_t in = s_minimal_event (), out;
    cr_assert_eq (herald_event_encode (&in, &s_buf), 0);
    cr_assert_eq (s_decode (&out), HERALD_OK);
    cr_assert_null (out.type);
    cr_assert_not (out.has_schema);
    cr_assert_null (out.meta);
    cr_assert_eq (out.data_len, 0);
    cr_assert_eq (out.seq, 1);
}

Test (herald_event, encoded_size_matches_encode_at_every_width)
{
    static const uint64_t values [] = {
        0, 1, 127, 128, 255, 256, 65535, 65536, 0xffffffffULL, 0x100000000ULL, UINT64_MAX
    };
    static const size_t lengths [] = { 0, 1, 31, 32, 255, 256, 65535, 65536, 70000 };
    static char big [70000];
    size_t i, j;
    for (i = 0; i < sizeof (values) / sizeof (values [0]); i++)
        for (j = 0; j < sizeof (lengths) / sizeof (lengths [0]); j++) {
            herald_event_t event = s_full_event ();
            event.seq = event.ver = event.ts = event.schema = values [i];
            event.data = (const uint8_t *) big;
            event.data_len = lengths [j];
            event.type = big;
            event.type_len = lengths [j] % 256;
            msgpack_sbuffer_clear (&s_buf);
            cr_assert_eq (herald_event_encode (&event, &s_buf), 0);
            cr_assert_eq (herald_event_encoded_size (&event), s_buf.size,
                          "value %" PRIu64 " length %zu", values [i], lengths [j]);
        }
}

Test (herald_event, encoded_size_counts_sixteen_keys_as_map16)
{
    static herald_kv_t meta [20];
    herald_event_t event = s_full_event ();
    size_t index;
    for (index = 0; index < 20; index++)
        meta [index] = (herald_kv_t) { "k", 1, "v", 1 };
    event.meta = meta;
    event.meta_count = 20;
    cr_assert_eq (herald_event_encode (&event, &s_buf), 0);
    cr_assert_eq (herald_event_encoded_size (&event), s_buf.size);
}

Test (herald_event, encode_writes_keys_in_fixed_order)
{
    herald_event_t event = s_full_event ();
    cr_assert_eq (herald_event_encode (&event, &s_buf), 0);
    msgpack_object obj;
    size_t off = 0;
    cr_assert_eq (msgpack_unpack (s_buf.data, s_buf.size, &off, &s_zone, &obj),
                  MSGPACK_UNPACK_SUCCESS);
    static const char *order [] = {
        "id", "topic", "seq", "ver", "ts", "type", "schema", "meta", "data"
    };
    cr_assert_eq (obj.via.map.size, 9);
    size_t index;
    for (index = 0; index < 9; index++) {
        msgpack_object_str key = obj.via.map.ptr [index].key.via.str;
        cr_assert_eq (key.size, strlen (order [index]));
        cr_assert_eq (memcmp (key.ptr, order [index], key.size), 0);
    }
}

Test (herald_event, encode_never_writes_expect)
{
    herald_event_t event = s_minimal_event ();
    event.has_expect = true;
    event.expect = 9;
    cr_assert_eq (herald_event_encode (&event, &s_buf), 0);
    cr_assert_null (memmem (s_buf.data, s_buf.size, "expect", 6));
}

Test (herald_event, decode_accepts_a_third_party_envelope_in_any_key_order)
{
    msgpack_pack_map (&s_pk, 7);
    s_key ("data");   s_bin ("", 0);
    s_key ("ts");     msgpack_pack_uint64 (&s_pk, 9);
    s_key ("unknown"); msgpack_pack_array (&s_pk, 1); msgpack_pack_nil (&s_pk);
    s_key ("ver");    msgpack_pack_uint64 (&s_pk, 2);
    s_key ("seq");    msgpack_pack_uint64 (&s_pk, 3);
    s_key ("topic");  s_str ("t");
    s_key ("id");     s_bin (s_id, 16);
    herald_event_t event;
    cr_assert_eq (s_decode (&event), HERALD_OK);
    cr_assert_eq (event.seq, 3);
    cr_assert_eq (event.ver, 2);
    cr_assert_eq (event.ts, 9);
}

Test (herald_event, decode_ignores_non_str_keys)
{
    s_envelope_head (1, "t");
    msgpack_pack_uint64 (&s_pk, 5);
    msgpack_pack_str (&s_pk, 0);
    herald_event_t event;
    cr_assert_eq (s_decode (&event), HERALD_OK);
}

Test (herald_event, decode_requires_seq)
{
    msgpack_pack_map (&s_pk, 5);
    s_key ("id");     s_bin (s_id, 16);
    s_key ("topic");  s_str ("t");
    s_key ("ver");    msgpack_pack_uint64 (&s_pk, 7);
    s_key ("ts");     msgpack_pack_uint64 (&s_pk, 1);
    s_key ("data");   s_bin ("", 0);
    s_expect_bad ("seq");
}

Test (herald_event, decode_requires_ts)
{
    msgpack_pack_map (&s_pk, 5);
    s_key ("id");     s_bin (s_id, 16);
    s_key ("topic");  s_str ("t");
    s_key ("seq");    msgpack_pack_uint64 (&s_pk, 7);
    s_key ("ver");    msgpack_pack_uint64 (&s_pk, 1);
    s_key ("data");   s_bin ("", 0);
    s_expect_bad ("ts");
}

Test (herald_event, decode_refuses_seq_zero)
{
    msgpack_pack_map (&s_pk, 6);
    s_key ("id");     s_bin (s_id, 16);
    s_key ("topic");  s_str ("t");
    s_key ("seq");    msgpack_pack_uint64 (&s_pk, 0);
    s_key ("ver");    msgpack_pack_uint64 (&s_pk, 1);
    s_key ("ts");     msgpack_pack_uint64 (&s_pk, 1);
    s_key ("data");   s_bin ("", 0);
    s_expect_bad ("seq");
}

Test (herald_event, decode_refuses_negative_ver)
{
    msgpack_pack_map (&s_pk, 6);
    s_key ("id");     s_bin (s_id, 16);
    s_key ("topic");  s_str ("t");
    s_key ("seq");    msgpack_pack_uint64 (&s_pk, 1);
    s_key ("ver");    msgpack_pack_int64 (&s_pk, -1);
    s_key ("ts");     msgpack_pack_uint64 (&s_pk, 1);
    s_key ("data");   s_bin ("", 0);
    s_expect_bad ("ver");
}

Test (herald_event, decode_refuses_float_ts)
{
    msgpack_pack_map (&s_pk, 6);
    s_key ("id");     s_bin (s_id, 16);
    s_key ("topic");  s_str ("t");
    s_key ("seq");    msgpack_pack_uint64 (&s_pk, 1);
    s_key ("ver");    msgpack_pack_uint64 (&s_pk, 1);
    s_key ("ts");     msgpack_pack_double (&s_pk, 1.0);
    s_key ("data");   s_bin ("", 0);
    s_expect_bad ("ts");
}

Test (herald_event, decode_refuses_short_id)
{
    msgpack_pack_map (&s_pk, 6);
    s_key ("id");     s_bin (s_id, 15);
    s_key ("topic");  s_str ("t");
    s_key ("seq");    msgpack_pack_uint64 (&s_pk, 1);
    s_key ("ver");    msgpack_pack_uint64 (&s_pk, 1);
    s_key ("ts");     msgpack_pack_uint64 (&s_pk, 1);
    s_key ("data");   s_bin ("", 0);
    s_expect_bad ("id");
}

Test (herald_event, decode_refuses_str_id)
{
    msgpack_pack_map (&s_pk, 6);
    s_key ("id");     s_str ("0123456789abcdef");
    s_key ("topic");  s_str ("t");
    s_key ("seq");    msgpack_pack_uint64 (&s_pk, 1);
    s_key ("ver");    msgpack_pack_uint64 (&s_pk, 1);
    s_key ("ts");     msgpack_pack_uint64 (&s_pk, 1);
    s_key ("data");   s_bin ("", 0);
    s_expect_bad ("id");
}

Test (herald_event, decode_refuses_str_data)
{
    msgpack_pack_map (&s_pk, 6);
    s_key ("id");     s_bin (s_id, 16);
    s_key ("topic");  s_str ("t");
    s_key ("seq");    msgpack_pack_uint64 (&s_pk, 1);
    s_key ("ver");    msgpack_pack_uint64 (&s_pk, 1);
    s_key ("ts");     msgpack_pack_uint64 (&s_pk, 1);
    s_key ("data");   s_str ("payload");
    s_expect_bad ("data");
}

Test (herald_event, decode_refuses_missing_data)
{
    msgpack_pack_map (&s_pk, 5);
    s_key ("id");     s_bin (s_id, 16);
    s_key ("topic");  s_str ("t");
    s_key ("seq");    msgpack_pack_uint64 (&s_pk, 1);
    s_key ("ver");    msgpack_pack_uint64 (&s_pk, 1);
    s_key ("ts");     msgpack_pack_uint64 (&s_pk, 1);
    s_expect_bad ("data");
}

Test (herald_event, decode_refuses_nil_for_required_topic)
{
    msgpack_pack_map (&s_pk, 6);
    s_key ("id");     s_bin (s_id, 16);
    s_key ("topic");  msgpack_pack_nil (&s_pk);
    s_key ("seq");    msgpack_pack_uint64 (&s_pk, 1);
    s_key ("ver");    msgpack_pack_uint64 (&s_pk, 1);
    s_key ("ts");     msgpack_pack_uint64 (&s_pk, 1);
    s_key ("data");   s_bin ("", 0);
    s_expect_bad ("topic");
}

Test (herald_event, decode_refuses_empty_topic)
{
    s_envelope_head (0, "");
    s_expect_bad ("topic");
}

Test (herald_event, decode_refuses_dollar_topic)
{
    s_envelope_head (0, "$sys");
    s_expect_bad ("topic");
}

Test (herald_event, decode_refuses_topic_with_nul)
{
    msgpack_pack_map (&s_pk, 6);
    s_key ("id");     s_bin (s_id, 16);
    s_key ("topic");  msgpack_pack_str (&s_pk, 3); msgpack_pack_str_body (&s_pk, "a\0b", 3);
    s_key ("seq");    msgpack_pack_uint64 (&s_pk, 1);
    s_key ("ver");    msgpack_pack_uint64 (&s_pk, 1);
    s_key ("ts");     msgpack_pack_uint64 (&s_pk, 1);
    s_key ("data");   s_bin ("", 0);
    s_expect_bad ("topic");
}

Test (herald_event, decode_refuses_topic_of_256_bytes)
{
    char topic [257];
    memset (topic, 'x', 256);
    topic [256] = 0;
    s_envelope_head (0, topic);
    s_expect_bad ("topic");
}

Test (herald_event, decode_accepts_topic_of_255_bytes)
{
    char topic [256];
    memset (topic, 'x', 255);
    topic [255] = 0;
    s_envelope_head (0, topic);
    herald_event_t event;
    cr_assert_eq (s_decode (&event), HERALD_OK);
    cr_assert_eq (event.topic_len, 255);
}

Test (herald_event, decode_refuses_topic_with_invalid_utf8)
{
    s_envelope_head (0, "caf\xc3");
    s_expect_bad ("topic");
}

Test (herald_event, decode_refuses_type_of_256_bytes)
{
    char type [257];
    memset (type, 'T', 256);
    type [256] = 0;
    s_envelope_head (1, "t");
    s_key ("type");
    s_str (type);
    s_expect_bad ("type");
}

Test (herald_event, decode_refuses_int_type)
{
    s_envelope_head (1, "t");
    s_key ("type");
    msgpack_pack_uint64 (&s_pk, 3);
    s_expect_bad ("type");
}

Test (herald_event, decode_refuses_negative_schema)
{
    s_envelope_head (1, "t");
    s_key ("schema");
    msgpack_pack_int64 (&s_pk, -2);
    s_expect_bad ("schema");
}

Test (herald_event, decode_refuses_bool_schema)
{
    s_envelope_head (1, "t");
    s_key ("schema");
    msgpack_pack_true (&s_pk);
    s_expect_bad ("schema");
}

Test (herald_event, decode_accepts_schema_zero)
{
    s_envelope_head (1, "t");
    s_key ("schema");
    msgpack_pack_uint64 (&s_pk, 0);
    herald_event_t event;
    cr_assert_eq (s_decode (&event), HERALD_OK);
    cr_assert (event.has_schema);
    cr_assert_eq (event.schema, 0);
}

Test (herald_event, nil_optional_fields_read_as_absent)
{
    s_envelope_head (3, "t");
    s_key ("type");   msgpack_pack_nil (&s_pk);
    s_key ("schema"); msgpack_pack_nil (&s_pk);
    s_key ("meta");   msgpack_pack_nil (&s_pk);
    herald_event_t event;
    cr_assert_eq (s_decode (&event), HERALD_OK);
    cr_assert_null (event.type);
    cr_assert_not (event.has_schema);
    cr_assert_null (event.meta);
}

Test (herald_event, empty_type_is_present_not_absent)
{
    s_envelope_head (1, "t");
    s_key ("type");
    s_str ("");
    herald_event_t event;
    cr_assert_eq (s_decode (&event), HERALD_OK);
    cr_assert_not_null (event.type);
    cr_assert_eq (event.type_len, 0);
}

Test (herald_event, empty_meta_map_is_present)
{
    s_envelope_head (1, "t");
    s_key ("meta");
    msgpack_pack_map (&s_pk, 0);
    herald_event_t event;
    cr_assert_eq (s_decode (&event), HERALD_OK);
    cr_assert_not_null (event.meta);
    cr_assert_eq (event.meta_count, 0);
}

Test (herald_event, decode_refuses_meta_with_65_entries)
{
    s_envelope_head (1, "t");
    s_key ("meta");
    msgpack_pack_map (&s_pk, 65);
    int index;
    for (index = 0; index < 65; index++) {
        char key [16];
        snprintf (key, sizeof (key), "k%d", index);
        s_key (key);
        s_str ("v");
    }
    s_expect_bad ("meta");
}

Test (herald_event, decode_accepts_meta_with_64_entries)
{
    s_envelope_head (1, "t");
    s_key ("meta");
    msgpack_pack_map (&s_pk, 64);
    int index;
    for (index = 0; index < 64; index++) {
        char key [16];
        snprintf (key, sizeof (key), "k%d", index);
        s_key (key);
        s_str ("v");
    }
    herald_event_t event;
    cr_assert_eq (s_decode (&event), HERALD_OK);
    cr_assert_eq (event.meta_count, 64);
}

Test (herald_event, decode_refuses_meta_key_of_65_bytes)
{
    char key [66];
    memset (key, 'k', 65);
    key [65] = 0;
    s_envelope_head (1, "t");
    s_key ("meta");
    msgpack_pack_map (&s_pk, 1);
    s_key (key);
    s_str ("v");
    s_expect_bad ("meta");
}

Test (herald_event, decode_refuses_meta_value_of_4097_bytes)
{
    static char value [4098];
    memset (value, 'v', 4097);
    value [4097] = 0;
    s_envelope_head (1, "t");
    s_key ("meta");
    msgpack_pack_map (&s_pk, 1);
    s_key ("k");
    s_str (value);
    s_expect_bad ("meta");
}

Test (herald_event, decode_accepts_meta_value_of_4096_bytes)
{
    static char value [4097];
    memset (value, 'v', 4096);
    value [4096] = 0;
    s_envelope_head (1, "t");
    s_key ("meta");
    msgpack_pack_map (&s_pk, 1);
    s_key ("k");
    s_str (value);
    herald_event_t event;
    cr_assert_eq (s_decode (&event), HERALD_OK);
    cr_assert_eq (event.meta [0].value_len, 4096);
}

Test (herald_event, decode_refuses_meta_with_int_value)
{
    s_envelope_head (1, "t");
    s_key ("meta");
    msgpack_pack_map (&s_pk, 1);
    s_key ("k");
    msgpack_pack_uint64 (&s_pk, 1);
    s_expect_bad ("meta");
}

Test (herald_event, decode_refuses_meta_with_duplicate_key)
{
    s_envelope_head (1, "t");
    s_key ("meta");
    msgpack_pack_map (&s_pk, 2);
    s_key ("k"); s_str ("1");
    s_key ("k"); s_str ("2");
    s_expect_bad ("meta");
}

Test (herald_event, decode_refuses_meta_as_array)
{
    s_envelope_head (1, "t");
    s_key ("meta");
    msgpack_pack_array (&s_pk, 0);
    s_expect_bad ("meta");
}

Test (herald_event, decode_refuses_duplicate_known_key)
{
    s_envelope_head (1, "t");
    s_key ("seq");
    msgpack_pack_uint64 (&s_pk, 43);
    s_expect_bad ("seq");
}

Test (herald_event, decode_refuses_duplicate_unknown_key)
{
    s_envelope_head (2, "t");
    s_key ("x"); msgpack_pack_nil (&s_pk);
    s_key ("x"); msgpack_pack_nil (&s_pk);
    s_expect_bad ("body");
}

Test (herald_event, decode_refuses_duplicate_key_among_many_unknown_keys)
{
    s_envelope_head (101, "t");
    int index;
    for (index = 0; index < 100; index++) {
        char key [16];
        snprintf (key, sizeof (key), "u%d", index);
        s_key (key);
        msgpack_pack_nil (&s_pk);
    }
    s_key ("u57");
    msgpack_pack_nil (&s_pk);
    s_expect_bad ("body");
}

Test (herald_event, decode_accepts_many_distinct_unknown_keys)
{
    s_envelope_head (100, "t");
    int index;
    for (index = 0; index < 100; index++) {
        char key [16];
        snprintf (key, sizeof (key), "u%d", index);
        s_key (key);
        msgpack_pack_nil (&s_pk);
    }
    herald_event_t event;
    cr_assert_eq (s_decode (&event), HERALD_OK);
}

Test (herald_event, decode_refuses_trailing_bytes)
{
    s_envelope_head (0, "t");
    msgpack_pack_nil (&s_pk);
    s_expect_bad ("envelope");
}

Test (herald_event, decode_refuses_empty_input)
{
    herald_event_t event;
    cr_assert_eq (herald_event_decode (&event, "", 0, &s_zone, &s_err),
                  HERALD_ERR_BAD_REQUEST);
}

Test (herald_event, decode_refuses_an_array)
{
    msgpack_pack_array (&s_pk, 1);
    msgpack_pack_nil (&s_pk);
    s_expect_bad ("body");
}

Test (herald_event, decode_fails_cleanly_on_every_truncation)
{
    herald_event_t in = s_full_event (), out;
    cr_assert_eq (herald_event_encode (&in, &s_buf), 0);
    size_t len;
    for (len = 0; len < s_buf.size; len++) {
        //  A heap copy of exactly len bytes so ASan sees any overread
        char *copy = malloc (len ? len : 1);
        memcpy (copy, s_buf.data, len);
        cr_assert_eq (herald_event_decode (&out, copy, len, &s_zone, &s_err),
                      HERALD_ERR_BAD_REQUEST, "prefix of %zu bytes", len);
        free (copy);
    }
}

Test (herald_event, decode_refuses_huge_declared_array_without_allocating)
{
    static const char body [] = "\xdd\xff\xff\xff\xff";
    herald_event_t event;
    cr_assert_eq (herald_event_decode (&event, body, 5, &s_zone, &s_err),
                  HERALD_ERR_BAD_REQUEST);
}

Test (herald_event, decode_refuses_deep_nesting)
{
    s_envelope_head (1, "t");
    s_key ("deep");
    int index;
    for (index = 0; index < 100; index++)
        msgpack_pack_array (&s_pk, 1);
    msgpack_pack_nil (&s_pk);
    s_expect_bad ("envelope");
}

Test (herald_event, decode_accepts_nesting_in_unknown_keys_up_to_the_limit)
{
    s_envelope_head (1, "t");
    s_key ("deep");
    int index;
    for (index = 0; index < 10; index++)
        msgpack_pack_array (&s_pk, 1);
    msgpack_pack_nil (&s_pk);
    herald_event_t event;
    cr_assert_eq (s_decode (&event), HERALD_OK);
}

Test (herald_event, peek_reads_the_head_of_an_encoded_envelope)
{
    herald_event_t in = s_full_event ();
    cr_assert_eq (herald_event_encode (&in, &s_buf), 0);
    const char *topic;
    size_t topic_len;
    uint64_t seq, ver, ts;
    cr_assert (herald_event_peek (s_buf.data, s_buf.size, &topic, &topic_len,
                                  &seq, &ver, &ts));
    cr_assert_eq (topic_len, 11);
    cr_assert_eq (memcmp (topic, "orders.1234", 11), 0);
    cr_assert_eq (seq, 100000);
    cr_assert_eq (ver, 3);
    cr_assert_eq (ts, 1700000000123456789ULL);
}

Test (herald_event, peek_reads_long_topics_and_large_counters)
{
    char topic [256];
    memset (topic, 'z', 255);
    herald_event_t in = s_minimal_event ();
    in.topic = topic;
    in.topic_len = 255;
    in.seq = UINT64_MAX;
    in.ver = 70000;
    in.ts = 200;
    cr_assert_eq (herald_event_encode (&in, &s_buf), 0);
    size_t topic_len;
    uint64_t seq, ver, ts;
    cr_assert (herald_event_peek (s_buf.data, s_buf.size, NULL, &topic_len,
                                  &seq, &ver, &ts));
    cr_assert_eq (topic_len, 255);
    cr_assert_eq (seq, UINT64_MAX);
    cr_assert_eq (ver, 70000);
    cr_assert_eq (ts, 200);
}

Test (herald_event, peek_refuses_every_truncation_of_the_head)
{
    herald_event_t in = s_full_event ();
    cr_assert_eq (herald_event_encode (&in, &s_buf), 0);
    //  map, "id" bin8(16), "topic" fixstr(11), "seq" uint32, "ver" fixint,
    //  "ts" uint64: the bytes peek reads
    size_t head = 1 + (3 + 18) + (6 + 12) + (4 + 5) + (4 + 1) + (3 + 9);
    size_t len;
    for (len = 0; len < head; len++) {
        char *copy = malloc (len ? len : 1);
        memcpy (copy, s_buf.data, len);
        cr_assert_not (herald_event_peek (copy, len, NULL, NULL, NULL, NULL, NULL),
                       "prefix of %zu bytes", len);
        free (copy);
    }
    cr_assert (herald_event_peek (s_buf.data, head, NULL, NULL, NULL, NULL, NULL));
}

Test (herald_event, peek_refuses_foreign_key_order)
{
    msgpack_pack_map (&s_pk, 6);
    s_key ("topic");  s_str ("t");
    s_key ("id");     s_bin (s_id, 16);
    s_key ("seq");    msgpack_pack_uint64 (&s_pk, 1);
    s_key ("ver");    msgpack_pack_uint64 (&s_pk, 1);
    s_key ("ts");     msgpack_pack_uint64 (&s_pk, 1);
    s_key ("data");   s_bin ("", 0);
    cr_assert_not (herald_event_peek (s_buf.data, s_buf.size, NULL, NULL, NULL, NULL, NULL));
    herald_event_t event;
    cr_assert_eq (s_decode (&event), HERALD_OK);
}

Test (herald_event, peek_refuses_a_signed_seq)
{
    msgpack_pack_map (&s_pk, 6);
    s_key ("id");     s_bin (s_id, 16);
    s_key ("topic");  s_str ("t");
    s_key ("seq");    msgpack_pack_int64 (&s_pk, -1);
    s_key ("ver");    msgpack_pack_uint64 (&s_pk, 1);
    s_key ("ts");     msgpack_pack_uint64 (&s_pk, 1);
    s_key ("data");   s_bin ("", 0);
    cr_assert_not (herald_event_peek (s_buf.data, s_buf.size, NULL, NULL, NULL, NULL, NULL));
}

Test (herald_event, peek_refuses_garbage)
{
    static const char *garbage [] = { "", "\x80", "\x86", "\xc1", "hello world", "\xdf\xff" };
    size_t index;
    for (index = 0; index < sizeof (garbage) / sizeof (garbage [0]); index++)
        cr_assert_not (herald_event_peek (garbage [index], strlen (garbage [index]),
                                          NULL, NULL, NULL, NULL, NULL));
}

Test (herald_event, from_object_reads_a_publisher_map_with_expect)
{
    msgpack_pack_map (&s_pk, 4);
    s_key ("id");     s_bin (s_id, 16);
    s_key ("topic");  s_str ("orders.1");
    s_key ("data");   s_bin ("d", 1);
    s_key ("expect"); msgpack_pack_uint64 (&s_pk, 0);
    msgpack_object obj;
    size_t off = 0;
    cr_assert_eq (msgpack_unpack (s_buf.data, s_buf.size, &off, &s_zone, &obj),
                  MSGPACK_UNPACK_SUCCESS);
    herald_event_t event;
    cr_assert_eq (herald_event_from_object (&event, &obj, &s_zone, "events[0]", &s_err),
                  HERALD_OK);
    cr_assert (event.has_expect);
    cr_assert_eq (event.expect, 0);
    cr_assert_eq (event.seq, 0);
    cr_assert_eq (event.encoded_size, s_buf.size);
}

Test (herald_event, from_object_names_the_field_with_the_prefix)
{
    msgpack_pack_map (&s_pk, 3);
    s_key ("id");     s_bin (s_id, 16);
    s_key ("topic");  s_str ("$reserved");
    s_key ("data");   s_bin ("d", 1);
    msgpack_object obj;
    size_t off = 0;
    msgpack_unpack (s_buf.data, s_buf.size, &off, &s_zone, &obj);
    herald_event_t event;
    cr_assert_eq (herald_event_from_object (&event, &obj, &s_zone, "events[3]", &s_err),
                  HERALD_ERR_BAD_REQUEST);
    cr_assert_str_eq (s_err.field, "events[3].topic");
    cr_assert_not_null (strstr (s_err.message, "events[3].topic"));
}

Test (herald_event, from_object_refuses_negative_expect)
{
    msgpack_pack_map (&s_pk, 4);
    s_key ("id");     s_bin (s_id, 16);
    s_key ("topic");  s_str ("t");
    s_key ("data");   s_bin ("", 0);
    s_key ("expect"); msgpack_pack_int64 (&s_pk, -1);
    msgpack_object obj;
    size_t off = 0;
    msgpack_unpack (s_buf.data, s_buf.size, &off, &s_zone, &obj);
    herald_event_t event;
    cr_assert_eq (herald_event_from_object (&event, &obj, &s_zone, "events[0]", &s_err),
                  HERALD_ERR_BAD_REQUEST);
    cr_assert_str_eq (s_err.field, "events[0].expect");
}

Test (herald_event, from_object_treats_nil_expect_as_absent)
{
    msgpack_pack_map (&s_pk, 4);
    s_key ("id");     s_bin (s_id, 16);
    s_key ("topic");  s_str ("t");
    s_key ("data");   s_bin ("", 0);
    s_key ("expect"); msgpack_pack_nil (&s_pk);
    msgpack_object obj;
    size_t off = 0;
    msgpack_unpack (s_buf.data, s_buf.size, &off, &s_zone, &obj);
    herald_event_t event;
    cr_assert_eq (herald_event_from_object (&event, &obj, &s_zone, "events[0]", &s_err),
                  HERALD_OK);
    cr_assert_not (event.has_expect);
}

Test (herald_event, topic_rules)
{
    cr_assert (herald_topic_valid ("orders.1234", 11));
    cr_assert (herald_topic_valid ("a$", 2));
    cr_assert (herald_topic_valid ("\xc3\xa9t\xc3\xa9", 5));
    cr_assert_not (herald_topic_valid ("", 0));
    cr_assert_not (herald_topic_valid ("$hb", 3));
    cr_assert_not (herald_topic_valid ("a\0", 2));
    cr_assert_not (herald_topic_valid ("\xff", 1));
}

Test (herald_event, utf8_accepts_every_well_formed_length)
{
    cr_assert (herald_utf8_valid ("", 0));
    cr_assert (herald_utf8_valid ("ascii", 5));
    cr_assert (herald_utf8_valid ("\xc2\x80", 2));                 //  U+0080
    cr_assert (herald_utf8_valid ("\xdf\xbf", 2));                 //  U+07FF
    cr_assert (herald_utf8_valid ("\xe0\xa0\x80", 3));             //  U+0800
    cr_assert (herald_utf8_valid ("\xed\x9f\xbf", 3));             //  U+D7FF
    cr_assert (herald_utf8_valid ("\xee\x80\x80", 3));             //  U+E000
    cr_assert (herald_utf8_valid ("\xef\xbf\xbf", 3));             //  U+FFFF
    cr_assert (herald_utf8_valid ("\xf0\x90\x80\x80", 4));         //  U+10000
    cr_assert (herald_utf8_valid ("\xf4\x8f\xbf\xbf", 4));         //  U+10FFFF
}

Test (herald_event, utf8_refuses_overlongs)
{
    cr_assert_not (herald_utf8_valid ("\xc0\xaf", 2));
    cr_assert_not (herald_utf8_valid ("\xc1\xbf", 2));
    cr_assert_not (herald_utf8_valid ("\xe0\x9f\xbf", 3));
    cr_assert_not (herald_utf8_valid ("\xf0\x8f\xbf\xbf", 4));
}

Test (herald_event, utf8_refuses_surrogates)
{
    cr_assert_not (herald_utf8_valid ("\xed\xa0\x80", 3));         //  U+D800
    cr_assert_not (herald_utf8_valid ("\xed\xbf\xbf", 3));         //  U+DFFF
}

Test (herald_event, utf8_refuses_code_points_above_10ffff)
{
    cr_assert_not (herald_utf8_valid ("\xf4\x90\x80\x80", 4));
    cr_assert_not (herald_utf8_valid ("\xf5\x80\x80\x80", 4));
    cr_assert_not (herald_utf8_valid ("\xff", 1));
}

Test (herald_event, utf8_refuses_truncated_and_stray_bytes)
{
    cr_assert_not (herald_utf8_valid ("\xc3", 1));
    cr_assert_not (herald_utf8_valid ("\xe2\x82", 2));
    cr_assert_not (herald_utf8_valid ("\xf0\x9f\x98", 3));
    cr_assert_not (herald_utf8_valid ("\x80", 1));
    cr_assert_not (herald_utf8_valid ("a\xc3" "a", 3));
}

Test (herald_event, error_set_fills_code_field_and_message)
{
    herald_error_t err;
    cr_assert_eq (herald_error_set (&err, HERALD_ERR_TOO_LARGE, "events[2]",
                                    "%d bytes", 5), HERALD_ERR_TOO_LARGE);
    cr_assert_eq (err.code, HERALD_ERR_TOO_LARGE);
    cr_assert_str_eq (err.field, "events[2]");
    cr_assert_str_eq (err.message, "events[2]: 5 bytes");
}

Test (herald_event, skip_measures_one_object)
{
    s_envelope_head (0, "t");
    msgpack_pack_nil (&s_pk);
    size_t offset = 0;
    cr_assert (herald_event_skip (s_buf.data, s_buf.size, &offset));
    cr_assert_eq (offset, s_buf.size - 1);
}
