/*  =========================================================================
    test_herald_entry - the cluster's Raft entry codec (issue 13)

    An entry round-trips with every field (header, requests, each event's
    optional fields, expect), its bytes are the layout herald_entry.h
    draws, and anything damaged -- a flipped bit, a cut, a forged count,
    an unknown kind or rules version, an event map PUBLISH would refuse --
    decodes to HERALD_ERR_CORRUPT, never to a partial entry.

    Rules 2 (issue 15): a request with no event carries a consumer group's
    op; it round-trips beside PUBLISH requests, rules 1 cannot carry one,
    and no cut, flipped bit or forged op length reads outside the input.
    =========================================================================
*/

#include <criterion/criterion.h>
#include <string.h>

#include "herald_entry.h"
#include "../agents/herald_crc.h"

TestSuite (herald_entry, .timeout = 30);

static herald_kv_t s_meta [] = { { "k", 1, "value", 5 }, { "trace", 5, "", 0 } };

static herald_event_t
s_event (uint8_t id, const char *topic, const char *data)
{
    herald_event_t event;
    memset (&event, 0, sizeof event);
    memset (event.id, id, HERALD_ID_BYTES);
    event.topic = topic;
    event.topic_len = strlen (topic);
    event.data = (const uint8_t *) data;
    event.data_len = data ? strlen (data) : 0;
    return event;
}

static herald_entry_t
s_publish_entry (const herald_entry_request_t *requests, size_t count)
{
    herald_entry_t entry;
    memset (&entry, 0, sizeof entry);
    entry.kind = HERALD_ENTRY_PUBLISH;
    entry.rules = HERALD_ENTRY_RULES;
    entry.term = 7;
    entry.proposer = 0x1122334455667788ULL;
    entry.ts = 1700000000123456789ULL;
    entry.requests = requests;
    entry.count = count;
    return entry;
}

//  Two requests: the first with every optional field, the second plain.
typedef struct {
    herald_event_t first [2];
    herald_event_t second [1];
    herald_entry_request_t requests [2];
} s_fixture_t;

static void
s_fixture (s_fixture_t *f)
{
    f->first [0] = s_event (1, "orders/1", "{\"n\":1}");
    f->first [0].type = "created";
    f->first [0].type_len = 7;
    f->first [0].has_schema = true;
    f->first [0].schema = 3;
    f->first [0].meta = s_meta;
    f->first [0].meta_count = 2;
    f->first [0].has_expect = true;
    f->first [0].expect = 0;
    f->first [1] = s_event (2, "orders/1", NULL);
    f->first [1].has_expect = true;
    f->first [1].expect = 41;
    f->second [0] = s_event (3, "x", "data");
    f->requests [0] = (herald_entry_request_t) { f->first, 2 };
    f->requests [1] = (herald_entry_request_t) { f->second, 1 };
}

static void
s_assert_same_event (const herald_event_t *a, const herald_event_t *b)
{
    cr_assert_arr_eq (a->id, b->id, HERALD_ID_BYTES);
    cr_assert_eq (a->topic_len, b->topic_len);
    cr_assert_arr_eq (a->topic, b->topic, a->topic_len);
    cr_assert_eq (a->type != NULL, b->type != NULL);
    if (a->type) {
        cr_assert_eq (a->type_len, b->type_len);
        cr_assert_arr_eq (a->type, b->type, a->type_len);
    }
    cr_assert_eq (a->has_schema, b->has_schema);
    cr_assert_eq (a->schema, b->schema);
    cr_assert_eq (a->meta_count, b->meta_count);
    for (size_t i = 0; i < a->meta_count; i++) {
        cr_assert_eq (a->meta [i].key_len, b->meta [i].key_len);
        cr_assert_arr_eq (a->meta [i].key, b->meta [i].key, a->meta [i].key_len);
        cr_assert_eq (a->meta [i].value_len, b->meta [i].value_len);
        if (a->meta [i].value_len)
            cr_assert_arr_eq (a->meta [i].value, b->meta [i].value, a->meta [i].value_len);
    }
    cr_assert_eq (a->data_len, b->data_len);
    if (a->data_len)
        cr_assert_arr_eq (a->data, b->data, a->data_len);
    cr_assert_eq (a->has_expect, b->has_expect);
    cr_assert_eq (a->expect, b->expect);
    cr_assert_eq (a->seq, 0);
    cr_assert_eq (b->ts, 0, "an entry's events carry no ts of their own");
}

Test (herald_entry, publish_round_trips_every_field)
{
    s_fixture_t f;
    s_fixture (&f);
    herald_entry_t entry = s_publish_entry (f.requests, 2);
    msgpack_sbuffer buffer;
    msgpack_sbuffer_init (&buffer);
    cr_assert_eq (herald_entry_encode (&entry, &buffer), 0);
    size_t unpadded = HERALD_ENTRY_OVERHEAD + 4 + herald_entry_request_size (f.first, 2)
                    + herald_entry_request_size (f.second, 1);
    cr_assert_eq (buffer.size % 8, 0, "padded for libraft");
    cr_assert_eq (buffer.size, unpadded + (8 - unpadded % 8) % 8,
                  "request sizes and the padding add up to the entry");

    msgpack_zone zone;
    msgpack_zone_init (&zone, 1024);
    herald_entry_t back;
    herald_error_t err = { 0 };
    cr_assert_eq (herald_entry_decode (&back, buffer.data, buffer.size, &zone, &err),
                  HERALD_OK, "%s", err.message);
    cr_assert_eq (back.kind, HERALD_ENTRY_PUBLISH);
    cr_assert_eq (back.rules, HERALD_ENTRY_RULES);
    cr_assert_eq (back.term, 7);
    cr_assert_eq (back.proposer, 0x1122334455667788ULL);
    cr_assert_eq (back.ts, 1700000000123456789ULL);
    cr_assert_eq (back.count, 2);
    cr_assert_eq (back.requests [0].count, 2);
    cr_assert_eq (back.requests [1].count, 1);
    s_assert_same_event (&f.first [0], &back.requests [0].events [0]);
    s_assert_same_event (&f.first [1], &back.requests [0].events [1]);
    s_assert_same_event (&f.second [0], &back.requests [1].events [0]);
    msgpack_zone_destroy (&zone);
    msgpack_sbuffer_destroy (&buffer);
}

Test (herald_entry, header_is_big_endian_with_a_trailing_crc32c)
{
    s_fixture_t f;
    s_fixture (&f);
    herald_entry_t entry = s_publish_entry (f.requests, 1);
    msgpack_sbuffer buffer;
    msgpack_sbuffer_init (&buffer);
    cr_assert_eq (herald_entry_encode (&entry, &buffer), 0);
    const uint8_t *b = (const uint8_t *) buffer.data;
    cr_assert_arr_eq (b, "HRE1", 4);
    cr_assert_eq (b [4], 1);
    size_t padding = b [5];
    cr_assert_lt (padding, 8);
    cr_assert_eq (buffer.size % 8, 0);
    cr_assert_eq ((b [6] << 8) | b [7], HERALD_ENTRY_RULES);
    cr_assert_eq (b [15], 7, "term u64 big-endian");
    cr_assert_eq (b [16], 0x11, "proposer id big-endian");
    cr_assert_eq (b [23], 0x88);
    cr_assert_eq (b [32 + 3], 1, "request count");
    cr_assert_eq (b [36 + 3], 2, "event count");
    for (size_t i = 0; i < padding; i++)
        cr_assert_eq (b [buffer.size - 1 - i], 0, "padding is zeros");
    uint32_t crc = herald_crc32c (0, b, buffer.size - padding - 4);
    const uint8_t *tail = b + buffer.size - padding - 4;
    cr_assert_eq (((uint32_t) tail [0] << 24 | tail [1] << 16 | tail [2] << 8 | tail [3]), crc);
    msgpack_sbuffer_destroy (&buffer);
}

Test (herald_entry, noop_and_node_table_round_trip)
{
    herald_entry_t entry;
    memset (&entry, 0, sizeof entry);
    entry.kind = HERALD_ENTRY_NOOP;
    entry.rules = HERALD_ENTRY_RULES;
    entry.term = 2;
    msgpack_sbuffer buffer;
    msgpack_sbuffer_init (&buffer);
    cr_assert_eq (herald_entry_encode (&entry, &buffer), 0);
    cr_assert_eq (buffer.size, 40, "36 bytes padded to 40");
    msgpack_zone zone;
    msgpack_zone_init (&zone, 1024);
    herald_entry_t back;
    herald_error_t err = { 0 };
    cr_assert_eq (herald_entry_decode (&back, buffer.data, buffer.size, &zone, &err), HERALD_OK);
    cr_assert_eq (back.kind, HERALD_ENTRY_NOOP);
    cr_assert_eq (back.count, 0);

    msgpack_sbuffer_clear (&buffer);
    entry.kind = HERALD_ENTRY_NODE_TABLE;
    entry.table = (const uint8_t *) "\x81\xa1n\x01";
    entry.table_len = 4;
    cr_assert_eq (herald_entry_encode (&entry, &buffer), 0);
    cr_assert_eq (herald_entry_decode (&back, buffer.data, buffer.size, &zone, &err), HERALD_OK);
    cr_assert_eq (back.kind, HERALD_ENTRY_NODE_TABLE);
    cr_assert_eq (back.table_len, 4);
    cr_assert_arr_eq (back.table, "\x81\xa1n\x01", 4);
    msgpack_zone_destroy (&zone);
    msgpack_sbuffer_destroy (&buffer);
}

static herald_err
s_decode (const void *bytes, size_t len, herald_error_t *err)
{
    msgpack_zone zone;
    msgpack_zone_init (&zone, 1024);
    herald_entry_t back;
    herald_err rc = herald_entry_decode (&back, bytes, len, &zone, err);
    msgpack_zone_destroy (&zone);
    return rc;
}

//  Re-seal bytes with a correct crc, so a test reaches the check behind it.
static void
s_reseal (uint8_t *bytes, size_t len)
{
    len -= bytes [5] < 8? bytes [5]: 0;     //  the padding after the crc
    uint32_t crc = herald_crc32c (0, bytes, len - 4);
    bytes [len - 4] = (uint8_t) (crc >> 24);
    bytes [len - 3] = (uint8_t) (crc >> 16);
    bytes [len - 2] = (uint8_t) (crc >> 8);
    bytes [len - 1] = (uint8_t) crc;
}

Test (herald_entry, every_flipped_bit_and_every_cut_is_corrupt)
{
    s_fixture_t f;
    s_fixture (&f);
    herald_entry_t entry = s_publish_entry (f.requests, 2);
    msgpack_sbuffer buffer;
    msgpack_sbuffer_init (&buffer);
    cr_assert_eq (herald_entry_encode (&entry, &buffer), 0);
    uint8_t *copy = malloc (buffer.size);
    for (size_t bit = 0; bit < buffer.size * 8; bit++) {
        memcpy (copy, buffer.data, buffer.size);
        copy [bit / 8] ^= (uint8_t) (1u << (bit % 8));
        herald_error_t err = { 0 };
        cr_assert_eq (s_decode (copy, buffer.size, &err), HERALD_ERR_CORRUPT,
                      "bit %zu flipped decoded", bit);
    }
    for (size_t len = 0; len < buffer.size; len++) {
        herald_error_t err = { 0 };
        cr_assert_eq (s_decode (buffer.data, len, &err), HERALD_ERR_CORRUPT,
                      "cut at %zu decoded", len);
    }
    free (copy);
    msgpack_sbuffer_destroy (&buffer);
}

Test (herald_entry, forged_counts_kinds_and_rules_are_refused_with_a_valid_crc)
{
    s_fixture_t f;
    s_fixture (&f);
    herald_entry_t entry = s_publish_entry (f.requests, 2);
    entry.rules = HERALD_ENTRY_RULES_MIN;   //  rules 1: a request has events
    msgpack_sbuffer buffer;
    msgpack_sbuffer_init (&buffer);
    cr_assert_eq (herald_entry_encode (&entry, &buffer), 0);
    size_t len = buffer.size;
    uint8_t *copy = malloc (len);
    struct {
        size_t at;
        uint8_t value;
        const char *field;
    } cases [] = {
        { 4, 9, "kind" },                   //  unknown kind
        { 5, 0x80, "flags" },               //  a reserved flag
        { 7, 3, "rules" },                  //  rules this build does not implement
        { 7, 0, "rules" },
        { 32, 0xff, "requests" },           //  request count 4 billion
        { 35, 3, "requests" },              //  one request more than there is
        { 36, 0x7f, "requests" },           //  event count 2 billion
        { 39, 0, "requests" },              //  a request without events
        { 40, 0xff, "events" },             //  an event map longer than the entry
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases [0]; i++) {
        memcpy (copy, buffer.data, len);
        copy [cases [i].at] = cases [i].value;
        s_reseal (copy, len);
        herald_error_t err = { 0 };
        cr_assert_eq (s_decode (copy, len, &err), HERALD_ERR_CORRUPT, "case %zu decoded", i);
        cr_assert_str_eq (err.field, cases [i].field, "case %zu: %s", i, err.message);
    }
    free (copy);
    msgpack_sbuffer_destroy (&buffer);
}

Test (herald_entry, an_event_map_publish_would_refuse_is_corrupt)
{
    //  A topic starting with '$' passes the frame and the crc, but not the
    //  validation PUBLISH runs: the entry is refused as a whole.
    herald_event_t bad = s_event (9, "$internal", "x");
    herald_entry_request_t request = { &bad, 1 };
    herald_entry_t entry = s_publish_entry (&request, 1);
    msgpack_sbuffer buffer;
    msgpack_sbuffer_init (&buffer);
    cr_assert_eq (herald_entry_encode (&entry, &buffer), 0);
    herald_error_t err = { 0 };
    cr_assert_eq (s_decode (buffer.data, buffer.size, &err), HERALD_ERR_CORRUPT);
    cr_assert (strstr (err.message, "topic"), "%s", err.message);
    //  Trailing bytes after the body, resealed, are refused too.
    msgpack_sbuffer_clear (&buffer);
    herald_event_t good = s_event (9, "t", "x");
    request.events = &good;
    cr_assert_eq (herald_entry_encode (&entry, &buffer), 0);
    size_t padding = (uint8_t) buffer.data [5];
    size_t body = buffer.size - padding - 4;
    uint8_t *longer = calloc (1, buffer.size + 8);
    memcpy (longer, buffer.data, body);
    longer [5] = 0;
    s_reseal (longer, body + 1 + 4);
    cr_assert_eq (s_decode (longer, body + 1 + 4, &err), HERALD_ERR_CORRUPT);
    cr_assert_str_eq (err.field, "", "%s", err.message);
    //  Padding that is not zero is damage
    memcpy (longer, buffer.data, buffer.size);
    if (padding) {
        longer [buffer.size - 1] = 1;
        cr_assert_eq (s_decode (longer, buffer.size, &err), HERALD_ERR_CORRUPT);
        cr_assert_str_eq (err.field, "flags");
    }
    free (longer);
    msgpack_sbuffer_destroy (&buffer);
}

//  ---------------------------------------------------------------------
//  Rules 2: a group's op as a request

static const char s_op_a [] = "\x82\xa2op\xa6" "create\xa5group\xa1g";
static const char s_op_b [] = "\x81\xa2op\xa5reset";

//  publish, op a, publish, op b (empty op last is allowed too)
static herald_entry_t
s_op_entry (s_fixture_t *f, herald_entry_request_t *requests)
{
    s_fixture (f);
    requests [0] = f->requests [0];
    requests [1] = (herald_entry_request_t) {
        .op = (const uint8_t *) s_op_a, .op_len = sizeof (s_op_a) - 1
    };
    requests [2] = f->requests [1];
    requests [3] = (herald_entry_request_t) {
        .op = (const uint8_t *) s_op_b, .op_len = sizeof (s_op_b) - 1
    };
    requests [4] = (herald_entry_request_t) { .op = (const uint8_t *) "", .op_len = 0 };
    return s_publish_entry (requests, 5);
}

Test (herald_entry, ops_round_trip_beside_publish_requests)
{
    s_fixture_t f;
    herald_entry_request_t requests [5];
    herald_entry_t entry = s_op_entry (&f, requests);
    cr_assert_eq (entry.rules, 2);
    msgpack_sbuffer buffer;
    msgpack_sbuffer_init (&buffer);
    cr_assert_eq (herald_entry_encode (&entry, &buffer), 0);
    cr_assert_eq (buffer.size % 8, 0);
    msgpack_zone zone;
    msgpack_zone_init (&zone, 1024);
    herald_entry_t back;
    herald_error_t err = { 0 };
    cr_assert_eq (herald_entry_decode (&back, buffer.data, buffer.size, &zone, &err), HERALD_OK,
                  "%s", err.message);
    cr_assert_eq (back.rules, 2);
    cr_assert_eq (back.count, 5);
    cr_assert_eq (back.requests [0].count, 2);
    cr_assert_null (back.requests [0].op);
    cr_assert_eq (back.requests [1].count, 0);
    cr_assert_eq (back.requests [1].op_len, sizeof (s_op_a) - 1);
    cr_assert_arr_eq (back.requests [1].op, s_op_a, sizeof (s_op_a) - 1);
    cr_assert_eq (back.requests [2].count, 1);
    s_assert_same_event (&back.requests [2].events [0], &f.second [0]);
    cr_assert_eq (back.requests [3].op_len, sizeof (s_op_b) - 1);
    cr_assert_arr_eq (back.requests [3].op, s_op_b, sizeof (s_op_b) - 1);
    cr_assert_eq (back.requests [4].count, 0);
    cr_assert_eq (back.requests [4].op_len, 0);
    cr_assert_not_null (back.requests [4].op);
    //  The size a cut counts is the size written
    size_t body = 4;
    for (size_t i = 0; i < 5; i++)
        body += requests [i].count? herald_entry_request_size (requests [i].events,
                                                               requests [i].count)
                                  : herald_entry_op_size (requests [i].op_len);
    cr_assert_eq (buffer.size - (uint8_t) buffer.data [5], HERALD_ENTRY_OVERHEAD + body);
    //  An old entry (rules 1, no op) still decodes
    entry.rules = HERALD_ENTRY_RULES_MIN;
    entry.requests = f.requests;
    entry.count = 2;
    msgpack_sbuffer_clear (&buffer);
    cr_assert_eq (herald_entry_encode (&entry, &buffer), 0);
    cr_assert_eq (herald_entry_decode (&back, buffer.data, buffer.size, &zone, &err), HERALD_OK);
    cr_assert_eq (back.rules, 1);
    msgpack_zone_destroy (&zone);
    msgpack_sbuffer_destroy (&buffer);
}

Test (herald_entry, an_op_needs_rules_2_and_a_request_needs_something)
{
    s_fixture_t f;
    herald_entry_request_t requests [5];
    herald_entry_t entry = s_op_entry (&f, requests);
    entry.rules = HERALD_ENTRY_RULES_MIN;
    msgpack_sbuffer buffer;
    msgpack_sbuffer_init (&buffer);
    cr_assert_eq (herald_entry_encode (&entry, &buffer), -1, "an op under rules 1");
    entry.rules = HERALD_ENTRY_RULES;
    requests [1].op = NULL;
    msgpack_sbuffer_clear (&buffer);
    cr_assert_eq (herald_entry_encode (&entry, &buffer), -1, "no event and no op");
    msgpack_sbuffer_destroy (&buffer);
}

Test (herald_entry, an_op_entry_damaged_anywhere_is_corrupt_and_read_in_bounds)
{
    s_fixture_t f;
    herald_entry_request_t requests [5];
    herald_entry_t entry = s_op_entry (&f, requests);
    msgpack_sbuffer buffer;
    msgpack_sbuffer_init (&buffer);
    cr_assert_eq (herald_entry_encode (&entry, &buffer), 0);
    size_t len = buffer.size;
    //  Each decode reads a copy of exactly its length: a read past it is
    //  a heap overflow the sanitizer build (./test.sh --sanitize) reports
    for (size_t bit = 0; bit < len * 8; bit++) {
        uint8_t *copy = malloc (len);
        memcpy (copy, buffer.data, len);
        copy [bit / 8] ^= (uint8_t) (1u << (bit % 8));
        herald_error_t err = { 0 };
        cr_assert_eq (s_decode (copy, len, &err), HERALD_ERR_CORRUPT, "bit %zu", bit);
        free (copy);
    }
    for (size_t cut = 0; cut < len; cut++) {
        uint8_t *copy = malloc (cut + 1);
        memcpy (copy, buffer.data, cut);
        herald_error_t err = { 0 };
        cr_assert_eq (s_decode (copy, cut, &err), HERALD_ERR_CORRUPT, "cut at %zu", cut);
        free (copy);
    }
    //  Forged op lengths, resealed: the first op's length field is after
    //  the header, the request count and the first request
    size_t at = 32 + 4 + herald_entry_request_size (f.first, 2) + 4;
    uint8_t *copy = malloc (len);
    const uint32_t forged [] = { 0xffffffffu, 0x7fffffffu, (uint32_t) len, (uint32_t) len - 40,
                                 0, 1, sizeof (s_op_a) - 2, sizeof (s_op_a) };
    for (size_t i = 0; i < sizeof forged / sizeof forged [0]; i++) {
        memcpy (copy, buffer.data, len);
        cr_assert_eq (copy [at - 1], 0, "the op's zero event count is at %zu", at - 4);
        copy [at] = (uint8_t) (forged [i] >> 24);
        copy [at + 1] = (uint8_t) (forged [i] >> 16);
        copy [at + 2] = (uint8_t) (forged [i] >> 8);
        copy [at + 3] = (uint8_t) forged [i];
        s_reseal (copy, len);
        herald_error_t err = { 0 };
        cr_assert_eq (s_decode (copy, len, &err), HERALD_ERR_CORRUPT,
                      "op length %u decoded", forged [i]);
    }
    free (copy);
    msgpack_sbuffer_destroy (&buffer);
}
