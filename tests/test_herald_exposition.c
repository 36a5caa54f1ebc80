/*  =========================================================================
    test_herald_exposition - a STATUS body as Prometheus / OpenMetrics text
    (broker/herald_exposition.c) and the histograms (herald_histogram.c),
    on bodies made by hand: what no broker sends today must still make
    strict text (tests/promtext.h) or nothing.

    - a body that is not a map (empty, truncated, a number) gives NULL;
    - every uint key is a metric, an unknown one a gauge, an array counts
      its entries, text keys are labels escaped as the format says (a
      control byte, or a byte of a value that is not UTF-8, shown as '?');
    - a histogram is cumulative in the text, µs become exact seconds, a
      malformed one is left out;
    - two keys of one name (a duplicate, "a-b" and "a_b", a key named like
      the info metric or a histogram's sample) make one family, the first;
    - histograms: true is asked only by a boolean true; bounds are
      inclusive.
    =========================================================================
*/

#include <criterion/criterion.h>
#include <msgpack.h>
#include <string.h>

#include "herald_exposition.h"
#include "herald_histogram.h"
#include "promtext.h"

static void
s_str (msgpack_packer *pk, const char *text)
{
    msgpack_pack_str (pk, strlen (text));
    msgpack_pack_str_body (pk, text, strlen (text));
}

static void
s_key_uint (msgpack_packer *pk, const char *key, uint64_t value)
{
    s_str (pk, key);
    msgpack_pack_uint64 (pk, value);
}

//  The text of sbuf's body, parsed strictly; fails the test otherwise.
static char *
s_text (msgpack_sbuffer *sbuf, bool openmetrics, pt_text_t *parsed)
{
    size_t len = 0;
    char *text = herald_exposition_text (sbuf->data, sbuf->size, openmetrics
                                         ? HERALD_EXPOSITION_OPENMETRICS
                                         : HERALD_EXPOSITION_PROMETHEUS, &len);
    cr_assert_not_null (text);
    cr_assert_eq (strlen (text), len);
    char why [PT_WHY_MAX];
    cr_assert_eq (pt_parse (text, len, openmetrics, parsed, why, sizeof why), 0,
                  "not strict text: %s\n%s", why, text);
    return text;
}

Test (exposition, not_a_map)
{
    size_t len = 0;
    cr_assert_null (herald_exposition_text ("", 0, HERALD_EXPOSITION_PROMETHEUS, &len));
    cr_assert_null (herald_exposition_text ("\x05", 1, HERALD_EXPOSITION_PROMETHEUS, &len));
    //  A map of two pairs cut after the first key
    cr_assert_null (herald_exposition_text ("\x82\xa4head", 6, HERALD_EXPOSITION_OPENMETRICS,
                                            &len));
    //  An empty map: the info metric alone, still strict text
    msgpack_sbuffer sbuf;
    msgpack_sbuffer_init (&sbuf);
    msgpack_packer pk;
    msgpack_packer_init (&pk, &sbuf, msgpack_sbuffer_write);
    msgpack_pack_map (&pk, 0);
    pt_text_t parsed;
    for (int openmetrics = 0; openmetrics < 2; openmetrics++) {
        char *text = s_text (&sbuf, openmetrics, &parsed);
        cr_assert_eq (parsed.count, 1);
        cr_assert_str_eq (parsed.samples [0].name, "herald_node_info");
        pt_text_fini (&parsed);
        free (text);
    }
    msgpack_sbuffer_destroy (&sbuf);
}

Test (exposition, every_key)
{
    msgpack_sbuffer sbuf;
    msgpack_sbuffer_init (&sbuf);
    msgpack_packer pk;
    msgpack_packer_init (&pk, &sbuf, msgpack_sbuffer_write);
    msgpack_pack_map (&pk, 11);
    s_key_uint (&pk, "rid", 9);
    s_key_uint (&pk, "head", 5);
    s_key_uint (&pk, "published", 7);
    s_key_uint (&pk, "future.key-1\n\\", 3);
    s_str (&pk, "role");
    s_str (&pk, "follower");
    s_str (&pk, "node");
    s_str (&pk, "n\"1\\x\ny");
    s_str (&pk, "leader");
    msgpack_pack_nil (&pk);
    s_str (&pk, "leader_api");
    msgpack_pack_str (&pk, 4);
    msgpack_pack_str_body (&pk, "a\0\xff" "b", 4);    //  a NUL, and not UTF-8
    s_str (&pk, "losses");
    msgpack_pack_array (&pk, 2);
    msgpack_pack_map (&pk, 0);
    msgpack_pack_map (&pk, 0);
    s_str (&pk, "digest");
    s_str (&pk, "0123456789abcdef");
    s_str (&pk, "histograms");
    msgpack_pack_map (&pk, 5);
    {
        //  ack_us: 1 at most 50 µs, 2 more at most 100 µs, 3 above
        s_str (&pk, "ack_us");
        msgpack_pack_map (&pk, 4);
        s_str (&pk, "bounds");
        msgpack_pack_array (&pk, 2);
        msgpack_pack_uint64 (&pk, 50);
        msgpack_pack_uint64 (&pk, 100);
        s_str (&pk, "counts");
        msgpack_pack_array (&pk, 3);
        msgpack_pack_uint64 (&pk, 1);
        msgpack_pack_uint64 (&pk, 2);
        msgpack_pack_uint64 (&pk, 3);
        s_key_uint (&pk, "sum", 1500050);
        s_key_uint (&pk, "count", 6);
        //  Malformed: counts not one longer than bounds
        s_str (&pk, "bad_us");
        msgpack_pack_map (&pk, 4);
        s_str (&pk, "bounds");
        msgpack_pack_array (&pk, 1);
        msgpack_pack_uint64 (&pk, 1);
        s_str (&pk, "counts");
        msgpack_pack_array (&pk, 1);
        msgpack_pack_uint64 (&pk, 1);
        s_key_uint (&pk, "sum", 1);
        s_key_uint (&pk, "count", 1);
        //  Not a map at all
        s_str (&pk, "worse");
        msgpack_pack_uint64 (&pk, 1);
        //  Bounds going down
        s_str (&pk, "down");
        msgpack_pack_map (&pk, 4);
        s_str (&pk, "bounds");
        msgpack_pack_array (&pk, 2);
        msgpack_pack_uint64 (&pk, 5);
        msgpack_pack_uint64 (&pk, 4);
        s_str (&pk, "counts");
        msgpack_pack_array (&pk, 3);
        for (int at = 0; at < 3; at++)
            msgpack_pack_uint64 (&pk, 1);
        s_key_uint (&pk, "sum", 1);
        s_key_uint (&pk, "count", 3);
        //  Counts that overflow when added up (and a count that matches the wrap)
        s_str (&pk, "wrap");
        msgpack_pack_map (&pk, 4);
        s_str (&pk, "bounds");
        msgpack_pack_array (&pk, 0);
        s_str (&pk, "counts");
        msgpack_pack_array (&pk, 1);
        msgpack_pack_uint64 (&pk, UINT64_MAX);
        s_key_uint (&pk, "sum", 1);
        s_key_uint (&pk, "count", 7);
    }
    for (int openmetrics = 0; openmetrics < 2; openmetrics++) {
        pt_text_t parsed;
        char *text = s_text (&sbuf, openmetrics, &parsed);
        cr_assert_eq (pt_find (&parsed, "herald_head", "")->integer, 5);
        cr_assert_eq (pt_find (&parsed, "herald_published_total", "")->integer, 7);
        cr_assert_eq (pt_find (&parsed, "herald_future_key_1__", "")->integer, 3);
        cr_assert_eq (pt_find (&parsed, "herald_losses", "")->integer, 2);
        cr_assert_null (pt_find (&parsed, "herald_rid", ""));
        cr_assert_null (strstr (text, "digest"), "digest changes with every event: no label");
        //  Labels escaped: \" \\ \n; nil is ""
        cr_assert_not_null (pt_find (&parsed, "herald_node_info",
                                     "node=\"n\\\"1\\\\x\\ny\",role=\"follower\",leader=\"\","
                                     "leader_api=\"a??b\""),
                            "%s", text);
        //  Cumulative, in exact seconds
        cr_assert_eq (pt_find (&parsed, "herald_ack_seconds_bucket", "le=\"0.00005\"")->integer,
                      1);
        cr_assert_eq (pt_find (&parsed, "herald_ack_seconds_bucket", "le=\"0.0001\"")->integer,
                      3);
        cr_assert_eq (pt_find (&parsed, "herald_ack_seconds_bucket", "le=\"+Inf\"")->integer, 6);
        cr_assert_eq (pt_find (&parsed, "herald_ack_seconds_sum", "")->value, 1.50005);
        cr_assert_null (strstr (text, "herald_bad"), "a malformed histogram is left out");
        cr_assert_null (strstr (text, "herald_worse"));
        cr_assert_null (strstr (text, "herald_down"), "bounds going down: left out");
        cr_assert_null (strstr (text, "herald_wrap"), "counts not adding up to count: left out");
        cr_assert_eq (openmetrics, strstr (text, "# EOF\n") != NULL);
        pt_text_fini (&parsed);
        free (text);
    }
    msgpack_sbuffer_destroy (&sbuf);
}

Test (exposition, one_family_per_name)
{
    msgpack_sbuffer sbuf;
    msgpack_sbuffer_init (&sbuf);
    msgpack_packer pk;
    msgpack_packer_init (&pk, &sbuf, msgpack_sbuffer_write);
    msgpack_pack_map (&pk, 7);
    s_key_uint (&pk, "published", 1);
    s_key_uint (&pk, "published", 2);           //  a duplicate key
    s_key_uint (&pk, "a-b", 3);
    s_key_uint (&pk, "a_b", 4);                 //  the same name
    s_key_uint (&pk, "node_info", 5);           //  the info metric's
    s_key_uint (&pk, "x_seconds_count", 6);     //  the histogram's sample, below
    s_str (&pk, "histograms");
    msgpack_pack_map (&pk, 1);
    s_str (&pk, "x_us");
    msgpack_pack_map (&pk, 4);
    s_str (&pk, "bounds");
    msgpack_pack_array (&pk, 0);
    s_str (&pk, "counts");
    msgpack_pack_array (&pk, 1);
    msgpack_pack_uint64 (&pk, 1);
    s_key_uint (&pk, "sum", 1);
    s_key_uint (&pk, "count", 1);
    for (int openmetrics = 0; openmetrics < 2; openmetrics++) {
        pt_text_t parsed;
        char *text = s_text (&sbuf, openmetrics, &parsed);
        cr_assert_eq (pt_find (&parsed, "herald_published_total", "")->integer, 1);
        cr_assert_eq (pt_find (&parsed, "herald_a_b", "")->integer, 3);
        cr_assert_eq (pt_find (&parsed, "herald_x_seconds_count", "")->integer, 6);
        cr_assert_null (pt_find (&parsed, "herald_x_seconds_sum", ""));
        pt_text_fini (&parsed);
        free (text);
    }
    msgpack_sbuffer_destroy (&sbuf);
}

Test (exposition, histograms)
{
    herald_histogram_t histogram;
    herald_histogram_init (&histogram, "commit_us", herald_histogram_us_bounds,
                           herald_histogram_us_bound_count);
    herald_histogram_observe (&histogram, 50);          //  bounds are inclusive
    herald_histogram_observe (&histogram, 51);
    herald_histogram_observe (&histogram, 0);
    herald_histogram_observe (&histogram, UINT64_MAX / 2);
    cr_assert_eq (histogram.counts [0], 2);
    cr_assert_eq (histogram.counts [1], 1);
    cr_assert_eq (histogram.counts [herald_histogram_us_bound_count], 1);
    cr_assert_eq (histogram.count, 4);
    //  Packed as STATUS's pair, read back as text
    msgpack_sbuffer sbuf;
    msgpack_sbuffer_init (&sbuf);
    msgpack_packer pk;
    msgpack_packer_init (&pk, &sbuf, msgpack_sbuffer_write);
    msgpack_pack_map (&pk, 1);
    herald_histogram_pack_status (&histogram, 1, &sbuf);
    pt_text_t parsed;
    char *text = s_text (&sbuf, false, &parsed);
    cr_assert_eq (pt_find (&parsed, "herald_commit_seconds_bucket", "le=\"0.00005\"")->integer,
                  2);
    cr_assert_eq (pt_find (&parsed, "herald_commit_seconds_count", "")->integer, 4);
    pt_text_fini (&parsed);
    free (text);
    msgpack_sbuffer_destroy (&sbuf);
    //  Asked for only by a boolean true
    cr_assert (herald_histogram_wanted ("\x82\xa3rid\x01\xaahistograms\xc3", 18));
    cr_assert_not (herald_histogram_wanted ("\x82\xa3rid\x01\xaahistograms\xc2", 18));
    cr_assert_not (herald_histogram_wanted ("\x82\xa3rid\x01\xaahistograms\x01", 18));
    cr_assert_not (herald_histogram_wanted ("\x81\xa3rid\x01", 6));
    cr_assert_not (herald_histogram_wanted ("\x82\xa3rid", 5));
    cr_assert_not (herald_histogram_wanted ("", 0));
}

//  STATUS first and trims (docs/protocol.md "Trimming"): herald_first_seq,
//  and herald_trim_until_seq per trim point, its prefix a label (escaped)
Test (exposition, first_and_trims)
{
    for (int open = 0; open < 2; open++) {
        msgpack_sbuffer sbuf;
        msgpack_sbuffer_init (&sbuf);
        msgpack_packer pk;
        msgpack_packer_init (&pk, &sbuf, msgpack_sbuffer_write);
        msgpack_pack_map (&pk, 4);
        s_key_uint (&pk, "head", 900);
        s_key_uint (&pk, "first", 501);
        s_str (&pk, "trims");
        msgpack_pack_array (&pk, 2);
        const char *prefixes [] = { "", "a\"b." };
        uint64_t untils [] = { 500, 800 };
        for (size_t index = 0; index < 2; index++) {
            msgpack_pack_map (&pk, 3);
            s_str (&pk, "prefix");
            s_str (&pk, prefixes [index]);
            s_key_uint (&pk, "until", untils [index]);
            s_key_uint (&pk, "ts", 1700000000000000000ULL);
        }
        s_key_uint (&pk, "reclaimed_events", 42);
        pt_text_t parsed = { 0 };
        char *text = s_text (&sbuf, open, &parsed);
        const pt_sample_t *first = pt_find (&parsed, "herald_first_seq", "");
        cr_assert_not_null (first, "%s", text);
        cr_assert_eq (first->integer, 501);
        const pt_sample_t *whole = pt_find (&parsed, "herald_trim_until_seq", "prefix=\"\"");
        cr_assert_not_null (whole, "%s", text);
        cr_assert_eq (whole->integer, 500);
        const pt_sample_t *quoted = pt_find (&parsed, "herald_trim_until_seq",
                                             "prefix=\"a\\\"b.\"");
        cr_assert_not_null (quoted, "%s", text);
        cr_assert_eq (quoted->integer, 800);
        cr_assert_not_null (pt_find (&parsed, "herald_reclaimed_events_total", ""), "%s", text);
        cr_assert_null (pt_find (&parsed, "herald_first", ""), "%s", text);
        cr_assert_null (pt_find (&parsed, "herald_trims", ""), "%s", text);
        pt_text_fini (&parsed);
        free (text);
        msgpack_sbuffer_destroy (&sbuf);
    }
}
