/*  =========================================================================
    test_herald_scan - REPLAY scans and READ streams over the store

    Written from store/herald_store.h and docs/protocol.md ("REPLAY"): order,
    ranges by seq and by time, prefix filters (dense and sparse, one topic
    and thousands), END `last` and `head`, topic reads by ver, bad specs,
    and a scan running while another thread appends.

    Each test keeps a model of what it appended (seq, ver, ts, topic, id)
    and checks every scan against it: the exact events, in seq order, each
    envelope decoded, and herald_scan_last after every step.  The clock is
    pinned so every ts is known.
    =========================================================================
*/

#include <criterion/criterion.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

#include "storetest.h"

#define TOPIC_SIZE (HERALD_TOPIC_MAX + 1)

typedef struct {
    uint64_t seq;
    uint64_t ver;
    uint64_t ts;
    char topic [TOPIC_SIZE];
    uint8_t id [HERALD_ID_BYTES];
} s_record_t;

static char *s_dir;
static herald_store_t *s_store;
static s_record_t *s_log;           //  s_log [seq - 1]
static size_t s_count;
static size_t s_alloc;
static uint64_t s_clock;            //  the pinned clock

//  Scans a test has open, so that .fini can destroy them before the store
//  when an assertion ends the test early (a live iterator must not outlive
//  its database).
#define MAX_OPEN_SCANS 8
static herald_scan_t *s_open_scans [MAX_OPEN_SCANS];

static herald_scan_t *
s_track (herald_scan_t *scan)
{
    for (size_t index = 0; scan && index < MAX_OPEN_SCANS; index++)
        if (!s_open_scans [index]) {
            s_open_scans [index] = scan;
            return scan;
        }
    cr_assert_null (scan, "too many open scans");
    return scan;
}

//  Destroy a tracked scan.
static void
s_scan_destroy (herald_scan_t **scan_p)
{
    for (size_t index = 0; index < MAX_OPEN_SCANS; index++)
        if (s_open_scans [index] && s_open_scans [index] == *scan_p)
            s_open_scans [index] = NULL;
    herald_scan_destroy (scan_p);
}

//  The writer thread of the concurrent test, joined by .fini if running.
static pthread_t s_thread;
static bool s_thread_running;
static atomic_bool *s_thread_stop;

static void
s_set_clock (uint64_t clock)
{
    s_clock = clock;
    herald_store_set_clock (s_store, clock);
}

static void
s_setup (void)
{
    s_dir = tu_tmpdir_new ("scan");
    cr_assert_not_null (s_dir, "cannot make a temporary directory: %s", strerror (errno));
    herald_store_options_t options = { .durability = HERALD_DURABILITY_ASYNC };
    herald_error_t err;
    memset (&err, 0, sizeof err);
    s_store = herald_store_open (s_dir, &options, &err);
    cr_assert_not_null (s_store, "open %s: %d %s", s_dir, err.code, err.message);
    s_log = NULL;
    s_count = s_alloc = 0;
    s_set_clock (1000000);
}

static void
s_teardown (void)
{
    if (s_thread_running) {
        *s_thread_stop = true;
        pthread_join (s_thread, NULL);
        s_thread_running = false;
    }
    for (size_t index = 0; index < MAX_OPEN_SCANS; index++)
        herald_scan_destroy (&s_open_scans [index]);
    herald_store_destroy (&s_store);
    free (s_log);
    s_log = NULL;
    tu_tmpdir_destroy (&s_dir);
}

//  The timeout is set for the suite only: criterion 2.4.1 leaks in its
//  runner for every test that overrides it, which fails ASan runs.
TestSuite (herald_scan, .init = s_setup, .fini = s_teardown, .timeout = 120);

//  Append count events on topics [index] (one batch per up to 1000 events)
//  and record them in the model.
static void
s_append (const char *const *topics, size_t count)
{
    enum { BATCH = 1000 };
    herald_event_t events [BATCH];
    herald_append_result_t results [BATCH];
    for (size_t done = 0; done < count; ) {
        size_t size = count - done < BATCH? count - done: BATCH;
        for (size_t index = 0; index < size; index++)
            events [index] = tu_event (topics [done + index], "data");
        tu_append_info_t info;
        herald_err rc = tu_append (s_store, events, size, results, &info);
        cr_assert_eq (rc, HERALD_OK, "append: %d %d %s", info.call, info.status, info.err.message);
        if (s_count + size > s_alloc) {
            s_alloc = (s_count + size) * 2;
            s_log = realloc (s_log, s_alloc * sizeof (s_record_t));
            cr_assert_not_null (s_log);
        }
        uint64_t ts = s_count && s_log [s_count - 1].ts > s_clock? s_log [s_count - 1].ts: s_clock;
        for (size_t index = 0; index < size; index++) {
            s_record_t *record = &s_log [s_count];
            cr_assert_eq (results [index].seq, s_count + 1);
            cr_assert_not (results [index].dup);
            record->seq = results [index].seq;
            record->ver = results [index].ver;
            record->ts = ts;
            snprintf (record->topic, TOPIC_SIZE, "%s", topics [done + index]);
            memcpy (record->id, events [index].id, HERALD_ID_BYTES);
            s_count++;
        }
        done += size;
    }
    cr_assert_eq (herald_store_head (s_store), s_count);
}

//  Append count events on one topic.
static void
s_append_n (const char *topic, size_t count)
{
    const char **topics = malloc (count * sizeof (char *));
    cr_assert_not_null (topics);
    for (size_t index = 0; index < count; index++)
        topics [index] = topic;
    s_append (topics, count);
    free (topics);
}

static bool
s_matches (const herald_scan_spec_t *spec, const char *topic)
{
    if (spec->prefix_count == 0)
        return true;
    size_t len = strlen (topic);
    for (size_t index = 0; index < spec->prefix_count; index++)
        if (spec->prefixes [index].len <= len
        &&  memcmp (topic, spec->prefixes [index].ptr, spec->prefixes [index].len) == 0)
            return true;
    return false;
}

//  Check the envelope a scan returned against the model's record.
static void
s_check_envelope (const uint8_t *envelope, size_t len, uint64_t seq, const s_record_t *record)
{
    tu_decoded_t decoded;
    herald_err rc = tu_decode (&decoded, envelope, len);
    cr_assert_eq (rc, HERALD_OK, "seq %" PRIu64 ": envelope does not decode: %s", seq,
                  decoded.err.message);
    cr_assert_eq (decoded.event.seq, record->seq, "scan gave seq %" PRIu64 " with an envelope of seq %"
                  PRIu64 ", expected %" PRIu64, seq, decoded.event.seq, record->seq);
    cr_assert_eq (decoded.event.ver, record->ver);
    cr_assert_eq (decoded.event.ts, record->ts);
    cr_assert_arr_eq (decoded.event.id, record->id, HERALD_ID_BYTES);
    cr_assert (decoded.event.topic_len == strlen (record->topic)
            && !memcmp (decoded.event.topic, record->topic, decoded.event.topic_len),
               "seq %" PRIu64 ": topic %.*s, expected %s", seq, (int) decoded.event.topic_len,
               decoded.event.topic, record->topic);
    tu_decoded_fini (&decoded);
}

//  Run a scan of spec and check it against the model: the exact matching
//  events in seq order, herald_scan_last after every step, and at the end
//  the END `last` of docs/protocol.md.  Returns how many events it gave.
static size_t
s_check_scan (const herald_scan_spec_t *spec)
{
    uint64_t head = s_count;
    uint64_t start = spec->from;
    if (spec->has_from_ts) {
        start = head + 1;
        for (uint64_t seq = 1; seq <= head; seq++)
            if (s_log [seq - 1].ts >= spec->from_ts) {
                start = seq;
                break;
            }
    }
    uint64_t bound = head;
    if (spec->has_to && spec->to < bound)
        bound = spec->to;
    if (spec->has_until_ts) {
        bound = 0;
        for (uint64_t seq = 1; seq <= head; seq++)
            if (s_log [seq - 1].ts <= spec->until_ts)
                bound = seq;
    }
    uint64_t expected_last = bound >= start? bound: start - 1;

    herald_error_t err;
    memset (&err, 0, sizeof err);
    herald_scan_t *scan = s_track (herald_store_scan (s_store, spec, &err));
    cr_assert_not_null (scan, "scan: %d %s", err.code, err.message);
    cr_assert_eq (herald_scan_head (scan), head, "scan head %" PRIu64 ", store head %" PRIu64,
                  herald_scan_head (scan), head);

    size_t returned = 0;
    uint64_t previous_last = herald_scan_last (scan);
    cr_assert_geq (previous_last + 1, start, "last %" PRIu64 " before from - 1 (%" PRIu64 ")",
                   previous_last, start - 1);
    uint64_t seq = start;
    while (true) {
        //  The next matching seq in the model, or bound + 1
        while (seq <= bound && !s_matches (spec, s_log [seq - 1].topic))
            seq++;
        cr_assert_lt (previous_last, seq, "last %" PRIu64 " claims matching seq %" PRIu64
                      " was returned, and it was not", previous_last, seq);
        const uint8_t *envelope = NULL;
        size_t len = 0;
        uint64_t got = 0;
        int rc = herald_scan_next (scan, &envelope, &len, &got);
        if (seq > bound) {
            cr_assert_eq (rc, 0, "scan gave seq %" PRIu64 " (rc %d) after the last match %"
                          " (bound %" PRIu64 ")", got, rc, bound);
            break;
        }
        cr_assert_eq (rc, 1, "scan ended (rc %d: %s) before matching seq %" PRIu64, rc,
                      rc < 0? herald_scan_error (scan)->message: "", seq);
        cr_assert_eq (got, seq, "scan gave seq %" PRIu64 ", expected %" PRIu64, got, seq);
        s_check_envelope (envelope, len, got, &s_log [seq - 1]);
        returned++;
        uint64_t last = herald_scan_last (scan);
        cr_assert_geq (last, got, "after seq %" PRIu64 ", last is %" PRIu64, got, last);
        cr_assert_geq (last, previous_last, "last went back from %" PRIu64 " to %" PRIu64,
                       previous_last, last);
        previous_last = last;
        seq++;
    }
    cr_assert_eq (herald_scan_last (scan), expected_last, "END last %" PRIu64 ", expected %" PRIu64
                  " (from %" PRIu64 ", bound %" PRIu64 ", head %" PRIu64 ")",
                  herald_scan_last (scan), expected_last, start, bound, head);
    const uint8_t *envelope;
    size_t len;
    uint64_t got;
    cr_assert_eq (herald_scan_next (scan, &envelope, &len, &got), 0, "a finished scan stays finished");
    cr_assert_eq (herald_scan_head (scan), head);
    s_scan_destroy (&scan);
    cr_assert_null (scan);
    return returned;
}

//  A spec from `from` over the given prefixes (count 0: all).
static herald_scan_spec_t
s_spec (uint64_t from, const herald_str_t *prefixes, size_t count)
{
    herald_scan_spec_t spec;
    memset (&spec, 0, sizeof spec);
    spec.from = from;
    spec.prefixes = prefixes;
    spec.prefix_count = count;
    return spec;
}

#define STR(s) { (s), sizeof (s) - 1 }

//  A small mixed log: 30 events over five topics, ts in three steps.
static void
s_small_log (void)
{
    const char *topics [] = { "a", "ab", "b", "a.x", "abc" };
    const char *order [30];
    for (size_t index = 0; index < 30; index++)
        order [index] = topics [(index * 7 + index / 5) % 5];
    s_set_clock (1000);
    s_append (order, 10);
    s_set_clock (2000);
    s_append (order + 10, 10);
    s_set_clock (3000);
    s_append (order + 20, 10);
}

//  ---------------------------------------------------------------------
//  Order and ranges

Test (herald_scan, full_scan_returns_every_event_in_seq_order)
{
    s_small_log ();
    herald_scan_spec_t spec = s_spec (1, NULL, 0);
    cr_assert_eq (s_check_scan (&spec), 30);
}

Test (herald_scan, envelopes_are_the_stored_bytes)
{
    s_small_log ();
    herald_scan_spec_t spec = s_spec (1, NULL, 0);
    herald_error_t err;
    herald_scan_t *scan = s_track (herald_store_scan (s_store, &spec, &err));
    cr_assert_not_null (scan);
    const uint8_t *envelope;
    size_t len;
    uint64_t seq;
    while (herald_scan_next (scan, &envelope, &len, &seq) == 1) {
        uint8_t *stored = NULL;
        size_t stored_len = 0;
        cr_assert_eq (herald_store_get (s_store, seq, &stored, &stored_len, NULL), HERALD_OK);
        cr_assert_eq (len, stored_len);
        cr_assert (!memcmp (envelope, stored, len), "seq %" PRIu64 ": scan and get differ", seq);
        free (stored);
    }
    s_scan_destroy (&scan);
}

Test (herald_scan, empty_store_scan_ends_at_from_minus_one)
{
    herald_scan_spec_t spec = s_spec (1, NULL, 0);
    cr_assert_eq (s_check_scan (&spec), 0);
}

Test (herald_scan, from_to_range_is_inclusive)
{
    s_small_log ();
    herald_scan_spec_t spec = s_spec (5, NULL, 0);
    spec.has_to = true;
    spec.to = 12;
    cr_assert_eq (s_check_scan (&spec), 8);
    spec.from = spec.to = 7;
    cr_assert_eq (s_check_scan (&spec), 1);
    spec.from = 30;
    spec.to = 30;
    cr_assert_eq (s_check_scan (&spec), 1);
}

Test (herald_scan, to_beyond_head_stops_at_head)
{
    s_small_log ();
    herald_scan_spec_t spec = s_spec (25, NULL, 0);
    spec.has_to = true;
    spec.to = 1000;
    cr_assert_eq (s_check_scan (&spec), 6);         //  last must be the head, 30
}

Test (herald_scan, from_past_head_examines_nothing)
{
    s_small_log ();
    herald_scan_spec_t spec = s_spec (31, NULL, 0);   //  from - 1 == head
    cr_assert_eq (s_check_scan (&spec), 0);
}

Test (herald_scan, from_ts_and_until_ts_select_by_time)
{
    s_small_log ();                                 //  1..10 @1000, 11..20 @2000, 21..30 @3000
    cr_assert_eq (s_seq_at (s_store, 2000), 11);
    cr_assert_eq (s_seq_at (s_store, 1500), 11);
    cr_assert_eq (s_seq_at (s_store, 3001), 31);
    herald_scan_spec_t spec = s_spec (0, NULL, 0);  //  from is ignored with from_ts
    spec.has_from_ts = true;
    spec.from_ts = 1500;
    cr_assert_eq (s_check_scan (&spec), 20);
    spec.has_until_ts = true;
    spec.until_ts = 2000;
    cr_assert_eq (s_check_scan (&spec), 10);        //  last must be 20
    spec.until_ts = 2999;
    cr_assert_eq (s_check_scan (&spec), 10);
    spec.from_ts = 0;
    spec.until_ts = 1000;
    cr_assert_eq (s_check_scan (&spec), 10);
    spec.from_ts = 3001;                            //  nothing at or after it
    spec.has_until_ts = false;
    cr_assert_eq (s_check_scan (&spec), 0);
}

Test (herald_scan, until_ts_before_from_examines_nothing)
{
    s_small_log ();
    herald_scan_spec_t spec = s_spec (15, NULL, 0);
    spec.has_until_ts = true;
    spec.until_ts = 1000;                           //  last seq at or before it: 10 < from
    cr_assert_eq (s_check_scan (&spec), 0);         //  last must be from - 1 = 14
    spec.until_ts = 999;                            //  no event that early at all
    spec.from = 1;
    cr_assert_eq (s_check_scan (&spec), 0);         //  last must be 0
}

Test (herald_scan, from_ts_with_prefix_and_to)
{
    s_small_log ();
    herald_str_t prefixes [] = { STR ("ab") };
    herald_scan_spec_t spec = s_spec (0, prefixes, 1);
    spec.has_from_ts = true;
    spec.from_ts = 2000;
    spec.has_to = true;
    spec.to = 25;
    s_check_scan (&spec);
}

//  ---------------------------------------------------------------------
//  Prefixes

Test (herald_scan, one_prefix_selects_its_topics)
{
    s_small_log ();
    herald_str_t prefixes [] = { STR ("a") };       //  a, ab, a.x, abc; not b
    herald_scan_spec_t spec = s_spec (1, prefixes, 1);
    size_t expected = 0;
    for (size_t index = 0; index < s_count; index++)
        expected += s_log [index].topic [0] == 'a';
    cr_assert_eq (s_check_scan (&spec), expected);
    herald_str_t exact [] = { STR ("ab") };         //  ab and abc
    spec = s_spec (1, exact, 1);
    s_check_scan (&spec);
}

Test (herald_scan, several_prefixes_each_event_once)
{
    s_small_log ();
    herald_str_t prefixes [] = { STR ("ab"), STR ("b"), STR ("a"), STR ("abc") };
    herald_scan_spec_t spec = s_spec (1, prefixes, 4);
    cr_assert_eq (s_check_scan (&spec), 30, "overlapping prefixes must give each event once");
    herald_str_t same [] = { STR ("a.x"), STR ("a.x") };
    spec = s_spec (1, same, 2);
    s_check_scan (&spec);
}

Test (herald_scan, empty_prefix_list_and_empty_prefix_match_all)
{
    s_small_log ();
    herald_scan_spec_t spec = s_spec (1, NULL, 0);
    cr_assert_eq (s_check_scan (&spec), 30);
    herald_str_t empty [] = { { "", 0 } };
    spec = s_spec (1, empty, 1);
    cr_assert_eq (s_check_scan (&spec), 30, "every topic begins with the empty prefix");
}

Test (herald_scan, prefix_longer_than_topic_does_not_match)
{
    s_small_log ();
    herald_str_t prefixes [] = { STR ("abcd"), STR ("a.xy") };
    herald_scan_spec_t spec = s_spec (1, prefixes, 2);
    cr_assert_eq (s_check_scan (&spec), 0);
}

Test (herald_scan, prefix_is_read_by_length_not_nul)
{
    s_small_log ();
    herald_str_t prefixes [] = { { "a.xyz", 3 } };  //  "a.x"
    herald_scan_spec_t spec = s_spec (1, prefixes, 1);
    cr_assert_gt (s_check_scan (&spec), 0);
}

Test (herald_scan, no_match_still_reports_the_bound)
{
    s_small_log ();
    herald_str_t prefixes [] = { STR ("zzz") };
    herald_scan_spec_t spec = s_spec (1, prefixes, 1);
    cr_assert_eq (s_check_scan (&spec), 0);         //  last: head
    spec.has_to = true;
    spec.to = 17;
    cr_assert_eq (s_check_scan (&spec), 0);         //  last: to
    spec.has_to = false;
    spec.has_until_ts = true;
    spec.until_ts = 2500;
    cr_assert_eq (s_check_scan (&spec), 0);         //  last: 20
}

Test (herald_scan, utf8_topics_and_prefixes)
{
    const char *topics [] = { "caf\xc3\xa9.1", "cafe.1", "caf\xc3\xa9", "caf", "\xe6\x97\xa5.x" };
    const char *order [40];
    for (size_t index = 0; index < 40; index++)
        order [index] = topics [index % 5];
    s_append (order, 40);
    herald_str_t prefixes [] = { STR ("caf\xc3\xa9") };
    herald_scan_spec_t spec = s_spec (1, prefixes, 1);
    cr_assert_eq (s_check_scan (&spec), 16);
    herald_str_t cjk [] = { STR ("\xe6\x97\xa5") };
    spec = s_spec (1, cjk, 1);
    cr_assert_eq (s_check_scan (&spec), 8);
}

//  ---------------------------------------------------------------------
//  Sparse and wide prefix scans

//  20,000 events over ten busy topics (with names close to "rare."), with
//  the rare topics' events placed at every `every`th seq, in turn.
static void
s_sparse_log (const char *const *rare, size_t rare_count, size_t every)
{
    enum { TOTAL = 20000 };
    const char *busy [] = {
        "bulk.0", "bulk.1", "bulk.2", "bulk.3", "bulk.4", "bulk.5", "rare", "rare-x", "rarf.",
        "ra"
    };
    const char **order = malloc (TOTAL * sizeof (char *));
    cr_assert_not_null (order);
    size_t placed = 0;
    for (size_t index = 0; index < TOTAL; index++)
        order [index] = (index % every == every / 2)? rare [placed++ % rare_count]: busy [index % 10];
    for (size_t part = 0; part < 4; part++) {
        s_set_clock (1000000 * (part + 1));
        s_append (order + part * TOTAL / 4, TOTAL / 4);
    }
    free (order);
}

Test (herald_scan, sparse_prefix_scan_one_rare_topic)
{
    const char *rare [] = { "rare.x" };
    s_sparse_log (rare, 1, 400);                    //  50 events
    herald_str_t prefixes [] = { STR ("rare.") };
    herald_scan_spec_t spec = s_spec (1, prefixes, 1);
    cr_assert_eq (s_check_scan (&spec), 50);
    herald_str_t exact [] = { STR ("rare.x") };
    spec = s_spec (1, exact, 1);
    cr_assert_eq (s_check_scan (&spec), 50);
}

Test (herald_scan, sparse_prefix_scan_merges_rare_topics)
{
    const char *rare [] = { "rare.a", "rare.b", "rare.c" };
    s_sparse_log (rare, 3, 200);                    //  100 events, about 33 each
    herald_str_t prefixes [] = { STR ("rare.") };
    herald_scan_spec_t spec = s_spec (1, prefixes, 1);
    cr_assert_eq (s_check_scan (&spec), 100);
    herald_str_t two [] = { STR ("rare.c"), STR ("rare.a") };
    spec = s_spec (1, two, 2);
    cr_assert_eq (s_check_scan (&spec), 67);
    herald_str_t overlapping [] = { STR ("rare.b"), STR ("rare."), STR ("rare.a") };
    spec = s_spec (1, overlapping, 3);
    cr_assert_eq (s_check_scan (&spec), 100);
}

Test (herald_scan, sparse_prefix_scan_with_ranges)
{
    const char *rare [] = { "rare.a", "rare.b", "rare.c" };
    s_sparse_log (rare, 3, 200);
    herald_str_t prefixes [] = { STR ("rare.") };
    herald_scan_spec_t spec = s_spec (7001, prefixes, 1);
    spec.has_to = true;
    spec.to = 13050;
    s_check_scan (&spec);
    spec.from = 101;                                //  first match is at 101
    spec.to = 101;
    cr_assert_eq (s_check_scan (&spec), 1);
    spec.from = 102;
    spec.to = 300;                                  //  none inside; last must be 300
    cr_assert_eq (s_check_scan (&spec), 0);
    spec = s_spec (0, prefixes, 1);
    spec.has_from_ts = true;
    spec.from_ts = 2000000;                         //  seq 5001..
    spec.has_until_ts = true;
    spec.until_ts = 3000000;                        //  ..15000
    cr_assert_eq (s_check_scan (&spec), 50);
}

Test (herald_scan, many_matching_topics_in_seq_order)
{
    //  3000 topics of one event each under "agg.", between noise
    enum { TOPICS = 3000 };
    char (*names) [TOPIC_SIZE] = calloc (TOPICS, TOPIC_SIZE);
    const char **order = malloc (2 * TOPICS * sizeof (char *));
    cr_assert (names && order);
    for (size_t index = 0; index < TOPICS; index++) {
        //  Not in name order, so seq order differs from topic order
        snprintf (names [index], TOPIC_SIZE, "agg.%zu", (index * 7919) % TOPICS);
        order [2 * index] = names [index];
        order [2 * index + 1] = index % 3? "noise.a": "agg";
    }
    s_append (order, 2 * TOPICS);
    herald_str_t prefixes [] = { STR ("agg.") };
    herald_scan_spec_t spec = s_spec (1, prefixes, 1);
    cr_assert_eq (s_check_scan (&spec), TOPICS);
    spec.from = 1001;
    spec.has_to = true;
    spec.to = 4000;
    cr_assert_eq (s_check_scan (&spec), 1500);
    free (order);
    free (names);
}

Test (herald_scan, many_sparse_topics_in_seq_order)
{
    //  500 single-event topics under "acct." spread through 20,000 events:
    //  few enough for an index scan over hundreds of topics at once
    enum { TOTAL = 20000, TOPICS = 500 };
    char (*names) [TOPIC_SIZE] = calloc (TOPICS, TOPIC_SIZE);
    const char **order = malloc (TOTAL * sizeof (char *));
    cr_assert (names && order);
    for (size_t index = 0; index < TOPICS; index++)
        snprintf (names [index], TOPIC_SIZE, "acct.%03zu", (index * 37) % TOPICS);
    for (size_t index = 0; index < TOTAL; index++)
        order [index] = (index % 40 == 13)? names [index / 40]: (index % 2? "acc": "bulk");
    s_append (order, TOTAL);
    herald_str_t prefixes [] = { STR ("acct.") };
    herald_scan_spec_t spec = s_spec (1, prefixes, 1);
    cr_assert_eq (s_check_scan (&spec), TOPICS);
    spec.from = 5000;
    spec.has_to = true;
    spec.to = 6000;
    cr_assert_eq (s_check_scan (&spec), 25);
    free (order);
    free (names);
}

Test (herald_scan, topic_with_many_events_under_prefix)
{
    //  One topic with more events than fit any small per-topic buffer
    const char *order [3000];
    for (size_t index = 0; index < 3000; index++)
        order [index] = index % 10 == 3? "hot.1": (index % 10 == 7? "hot.2": "cold");
    s_append (order, 3000);
    herald_str_t prefixes [] = { STR ("hot.") };
    herald_scan_spec_t spec = s_spec (1, prefixes, 1);
    cr_assert_eq (s_check_scan (&spec), 600);
    spec.from = 1234;
    cr_assert_eq (s_check_scan (&spec), 354);
}

//  ---------------------------------------------------------------------
//  The scan's head is fixed when it starts

Test (herald_scan, events_appended_after_start_are_not_returned)
{
    s_small_log ();
    herald_str_t prefixes [] = { STR ("a") };
    for (size_t with_prefix = 0; with_prefix < 2; with_prefix++) {
        herald_scan_spec_t spec = s_spec (1, with_prefix? prefixes: NULL, with_prefix);
        herald_error_t err;
        herald_scan_t *scan = s_track (herald_store_scan (s_store, &spec, &err));
        cr_assert_not_null (scan);
        uint64_t head = herald_store_head (s_store);
        cr_assert_eq (herald_scan_head (scan), head);
        const uint8_t *envelope;
        size_t len;
        uint64_t seq = 0, got;
        cr_assert_eq (herald_scan_next (scan, &envelope, &len, &got), 1);
        s_append_n ("a", 5);                        //  after the scan began
        s_append_n ("a.new", 5);
        while (herald_scan_next (scan, &envelope, &len, &got) == 1) {
            cr_assert_leq (got, head, "scan returned seq %" PRIu64 ", appended after it began", got);
            cr_assert_gt (got, seq);
            seq = got;
        }
        cr_assert_eq (herald_scan_last (scan), head);
        cr_assert_eq (herald_scan_head (scan), head);
        s_scan_destroy (&scan);
    }
}

typedef struct {
    herald_store_t *store;
    size_t batches;
    atomic_bool stop;
    herald_err failed;
} s_writer_t;

//  Appends batches of 20: one event in 40 on "live.a", one in 40 on
//  "live.b" (few enough for the topic index), the rest on three others.
static void *
s_writer_thread (void *arg)
{
    s_writer_t *writer = arg;
    const char *others [] = { "other.1", "other.2", "other.3" };
    herald_event_t events [20];
    herald_append_result_t results [20];
    uint64_t counter = 0;
    for (size_t round = 0; round < writer->batches && !writer->stop; round++) {
        for (size_t index = 0; index < 20; index++, counter++) {
            const char *topic = counter % 40 == 0? "live.a":
                                counter % 40 == 20? "live.b": others [counter % 3];
            events [index] = tu_event (topic, "live");
        }
        herald_err rc = tu_append (writer->store, events, 20, results, NULL);
        if (rc != HERALD_OK) {
            writer->failed = rc;
            break;
        }
    }
    return NULL;
}

//  How many events of topic have seq <= head; checks their vers on the way.
static uint64_t
s_topic_events_upto (const char *topic, uint64_t head)
{
    herald_error_t err;
    herald_scan_t *read = s_track (herald_store_read (s_store, topic, strlen (topic), 1, 0, &err));
    cr_assert_not_null (read, "%s", err.message);
    const uint8_t *envelope;
    size_t len;
    uint64_t seq, ver = 0, count = 0, previous = 0;
    int rc;
    while ((rc = herald_scan_next (read, &envelope, &len, &seq)) == 1) {
        tu_decoded_t decoded;
        cr_assert_eq (tu_decode (&decoded, envelope, len), HERALD_OK);
        cr_assert_eq (decoded.event.ver, ver + 1, "read %s: ver %" PRIu64 " after %" PRIu64,
                      topic, decoded.event.ver, ver);
        cr_assert_eq (decoded.event.seq, seq);
        cr_assert_gt (seq, previous);
        ver = decoded.event.ver;
        previous = seq;
        tu_decoded_fini (&decoded);
        count += seq <= head;
    }
    cr_assert_eq (rc, 0, "read failed: %s", herald_scan_error (read)->message);
    cr_assert_eq (ver, herald_scan_head (read));
    s_scan_destroy (&read);
    return count;
}

Test (herald_scan, scan_while_another_thread_appends)
{
    s_append_n ("seed", 500);
    s_append_n ("live.a", 3);
    s_writer_t writer = { .store = s_store, .batches = 300 };
    cr_assert_eq (pthread_create (&s_thread, NULL, s_writer_thread, &writer), 0);
    s_thread_stop = &writer.stop;
    s_thread_running = true;
    herald_str_t prefixes [] = { STR ("live.") };
    uint64_t previous_head = 0;
    for (size_t scans = 0; scans < 120; scans++) {
        bool filtered = scans % 2;
        uint64_t before = herald_store_head (s_store);
        herald_scan_spec_t spec = s_spec (filtered? 1: 1 + scans % 7, filtered? prefixes: NULL,
                                          filtered);
        herald_error_t err;
        herald_scan_t *scan = s_track (herald_store_scan (s_store, &spec, &err));
        cr_assert_not_null (scan, "%s", err.message);
        uint64_t head = herald_scan_head (scan);
        cr_assert_geq (head, before, "scan head %" PRIu64 " below a head already seen %" PRIu64,
                       head, before);
        cr_assert_geq (head, previous_head);
        previous_head = head;
        const uint8_t *envelope;
        size_t len;
        uint64_t seq, expected = spec.from;
        uint64_t vers [2] = { 0, 0 };           //  live.a, live.b: last ver returned
        int rc;
        while ((rc = herald_scan_next (scan, &envelope, &len, &seq)) == 1) {
            tu_decoded_t decoded;
            cr_assert_eq (tu_decode (&decoded, envelope, len), HERALD_OK);
            const char *topic = decoded.event.topic;
            size_t topic_len = decoded.event.topic_len;
            cr_assert_eq (decoded.event.seq, seq);
            if (filtered) {
                cr_assert (topic_len == 6 && !memcmp (topic, "live.", 5)
                        && (topic [5] == 'a' || topic [5] == 'b'));
                cr_assert_geq (seq, expected);
                uint64_t *ver = &vers [topic [5] - 'a'];
                cr_assert_eq (decoded.event.ver, *ver + 1, "scan skipped %.*s ver %" PRIu64,
                              (int) topic_len, topic, *ver + 1);
                *ver = decoded.event.ver;
            }
            else
                cr_assert_eq (seq, expected, "full scan: seq %" PRIu64 ", expected %" PRIu64,
                              seq, expected);
            tu_decoded_fini (&decoded);
            expected = seq + 1;
        }
        cr_assert_eq (rc, 0, "scan failed: %s", herald_scan_error (scan)->message);
        cr_assert_leq (expected - 1, head, "scan went past its head");
        if (!filtered)
            cr_assert_eq (expected - 1, head, "full scan stopped at %" PRIu64 " before its head %"
                          PRIu64, expected - 1, head);
        cr_assert_eq (herald_scan_last (scan), head);
        s_scan_destroy (&scan);
        if (filtered) {
            //  Every live event up to the scan's head came back
            cr_assert_eq (vers [0], s_topic_events_upto ("live.a", head));
            cr_assert_eq (vers [1], s_topic_events_upto ("live.b", head));
        }
    }
    writer.stop = true;
    s_thread_running = false;
    cr_assert_eq (pthread_join (s_thread, NULL), 0);
    cr_assert_eq (writer.failed, HERALD_OK, "the writer thread failed: %d", writer.failed);
}

//  ---------------------------------------------------------------------
//  READ: one topic's stream by ver

//  Read topic [from_ver, to_ver] and check against the model.
static size_t
s_check_read (const char *topic, uint64_t from_ver, uint64_t to_ver)
{
    uint64_t topic_ver = 0;
    for (size_t index = 0; index < s_count; index++)
        if (!strcmp (s_log [index].topic, topic))
            topic_ver = s_log [index].ver;
    cr_assert_eq (s_ver_of (s_store, topic, strlen (topic)), topic_ver);
    uint64_t last_ver = (to_ver && to_ver < topic_ver)? to_ver: topic_ver;

    herald_error_t err;
    memset (&err, 0, sizeof err);
    herald_scan_t *read = s_track (herald_store_read (s_store, topic, strlen (topic),
                                                      from_ver, to_ver, &err));
    cr_assert_not_null (read, "read %s: %d %s", topic, err.code, err.message);
    cr_assert_eq (herald_scan_head (read), topic_ver, "read head %" PRIu64 ", topic ver %" PRIu64,
                  herald_scan_head (read), topic_ver);
    cr_assert_eq (herald_scan_last (read), from_ver - 1);
    size_t returned = 0;
    uint64_t ver = from_ver, previous_seq = 0;
    size_t index = 0;
    const uint8_t *envelope;
    size_t len;
    uint64_t seq;
    int rc;
    while ((rc = herald_scan_next (read, &envelope, &len, &seq)) == 1) {
        cr_assert_leq (ver, last_ver, "read gave more than vers %" PRIu64 "..%" PRIu64,
                       from_ver, last_ver);
        while (index < s_count && !(s_log [index].ver == ver && !strcmp (s_log [index].topic, topic)))
            index++;
        cr_assert_lt (index, s_count);
        cr_assert_eq (seq, s_log [index].seq, "ver %" PRIu64 ": seq %" PRIu64 ", expected %" PRIu64,
                      ver, seq, s_log [index].seq);
        cr_assert_gt (seq, previous_seq);
        s_check_envelope (envelope, len, seq, &s_log [index]);
        cr_assert_eq (herald_scan_last (read), ver, "read last %" PRIu64 " after ver %" PRIu64,
                      herald_scan_last (read), ver);
        previous_seq = seq;
        ver++;
        returned++;
    }
    cr_assert_eq (rc, 0, "read failed: %s", herald_scan_error (read)->message);
    uint64_t expected = last_ver >= from_ver? last_ver - from_ver + 1: 0;
    cr_assert_eq (returned, expected, "read %s %" PRIu64 "..%" PRIu64 ": %zu events, expected %"
                  PRIu64, topic, from_ver, to_ver, returned, expected);
    cr_assert_eq (herald_scan_last (read), returned? last_ver: from_ver - 1);
    s_scan_destroy (&read);
    return returned;
}

Test (herald_scan, read_topic_in_ver_order)
{
    //  "acc.1" past ver 256, between topics that share its bytes
    const char *topics [] = { "acc.1", "acc.10", "acc", "acc.1 ", "acc.2", "acc.1" };
    const char *order [1800];
    for (size_t index = 0; index < 1800; index++)
        order [index] = topics [index % 6];
    s_append (order, 1800);
    cr_assert_eq (s_check_read ("acc.1", 1, 0), 600);
    cr_assert_eq (s_check_read ("acc", 1, 0), 300);
    cr_assert_eq (s_check_read ("acc.10", 1, 0), 300);
    cr_assert_eq (s_check_read ("acc.1 ", 1, 0), 300);
}

Test (herald_scan, read_from_ver_to_ver)
{
    const char *topics [] = { "acc.1", "x", "acc.1", "acc.11" };
    const char *order [1200];
    for (size_t index = 0; index < 1200; index++)
        order [index] = topics [index % 4];
    s_append (order, 1200);
    cr_assert_eq (s_check_read ("acc.1", 250, 260), 11);
    cr_assert_eq (s_check_read ("acc.1", 255, 257), 3);
    cr_assert_eq (s_check_read ("acc.1", 600, 600), 1);
    cr_assert_eq (s_check_read ("acc.1", 590, 10000), 11, "to_ver beyond the topic stops at its ver");
    cr_assert_eq (s_check_read ("acc.1", 601, 0), 0);     //  last: from_ver - 1 = 600
    cr_assert_eq (s_check_read ("acc.1", 1, 1), 1);
}

Test (herald_scan, read_unknown_topic_gives_nothing)
{
    s_small_log ();
    cr_assert_eq (s_check_read ("unknown", 1, 0), 0);
    cr_assert_eq (s_check_read ("a.", 1, 0), 0);           //  a prefix of "a.x", not a topic
    cr_assert_eq (s_check_read ("abcd", 1, 0), 0);
}

Test (herald_scan, read_topic_is_read_by_length_not_nul)
{
    s_small_log ();
    herald_error_t err;
    herald_scan_t *read = s_track (herald_store_read (s_store, "abcdef", 2, 1, 0, &err));    //  "ab"
    cr_assert_not_null (read);
    cr_assert_eq (herald_scan_head (read), s_ver_of (s_store, "ab", 2));
    cr_assert_gt (herald_scan_head (read), 0);
    s_scan_destroy (&read);
}

Test (herald_scan, read_ignores_events_appended_after_start)
{
    s_append_n ("t", 10);
    herald_error_t err;
    herald_scan_t *read = s_track (herald_store_read (s_store, "t", 1, 1, 0, &err));
    cr_assert_not_null (read);
    cr_assert_eq (herald_scan_head (read), 10);
    const uint8_t *envelope;
    size_t len;
    uint64_t seq;
    cr_assert_eq (herald_scan_next (read, &envelope, &len, &seq), 1);
    s_append_n ("t", 10);
    size_t count = 1;
    while (herald_scan_next (read, &envelope, &len, &seq) == 1)
        count++;
    cr_assert_eq (count, 10, "read returned %zu events; it began at ver 10", count);
    cr_assert_eq (herald_scan_last (read), 10);
    cr_assert_eq (herald_scan_head (read), 10);
    s_scan_destroy (&read);
}

//  ---------------------------------------------------------------------
//  Bad requests

static void
s_assert_refused (const herald_scan_spec_t *spec, const char *what)
{
    herald_error_t err;
    memset (&err, 0, sizeof err);
    herald_scan_t *scan = s_track (herald_store_scan (s_store, spec, &err));
    if (scan)
        s_scan_destroy (&scan);
    cr_assert_null (scan, "%s: the scan must be refused", what);
    cr_assert_eq (err.code, HERALD_ERR_BAD_REQUEST, "%s: code %d (%s)", what, err.code, err.message);
    cr_assert (strlen (err.message) > 0, "%s: no message", what);
}

Test (herald_scan, bad_specs_are_bad_requests)
{
    s_small_log ();
    herald_scan_spec_t spec = s_spec (0, NULL, 0);
    s_assert_refused (&spec, "from 0");
    spec = s_spec (10, NULL, 0);
    spec.has_to = true;
    spec.to = 9;
    s_assert_refused (&spec, "to < from");
    spec = s_spec (1, NULL, 0);
    spec.has_to = true;
    spec.to = 0;
    s_assert_refused (&spec, "to 0");
    spec = s_spec (1, NULL, 0);
    spec.has_to = true;
    spec.to = 5;
    spec.has_until_ts = true;
    spec.until_ts = 2000;
    s_assert_refused (&spec, "to and until_ts together");
}

Test (herald_scan, read_from_ver_zero_is_bad_request)
{
    s_small_log ();
    herald_error_t err;
    memset (&err, 0, sizeof err);
    herald_scan_t *read = s_track (herald_store_read (s_store, "a", 1, 0, 0, &err));
    if (read)
        s_scan_destroy (&read);
    cr_assert_null (read);
    cr_assert_eq (err.code, HERALD_ERR_BAD_REQUEST);
}

Test (herald_scan, scan_destroy_is_null_safe)
{
    herald_scan_t *scan = NULL;
    s_scan_destroy (&scan);
    cr_assert_null (scan);
}

//  ---------------------------------------------------------------------
//  Streams made of many small appends

//  A log where topics "w" and "rare.*" grow in appends of 1..7 events,
//  mixed with other topics, across a reopen.
static void
s_runs_log (void)
{
    const char *others [] = { "bulk.a", "bulk.b", "w.x", "rare" };
    uint64_t state = 99;
    for (size_t round = 0; round < 120; round++) {
        const char *order [40];
        size_t count = 0;
        size_t mine = 1 + tu_rand (&state) % 7;
        for (size_t index = 0; index < mine; index++)
            order [count++] = round % 3 == 0? "w": (round % 3 == 1? "rare.a": "rare.b");
        size_t noise = tu_rand (&state) % 30;
        for (size_t index = 0; index < noise; index++)
            order [count++] = others [tu_rand (&state) % 4];
        //  Shuffle the append a little so runs are interleaved in a batch
        for (size_t index = count; index > 1; index--) {
            size_t other = tu_rand (&state) % index;
            const char *swap = order [index - 1];
            order [index - 1] = order [other];
            order [other] = swap;
        }
        if (round % 11 == 0)
            s_set_clock (s_clock + 1000);
        s_append (order, count);
        if (round == 60) {
            herald_store_destroy (&s_store);
            herald_error_t err;
            herald_store_options_t options = { .durability = HERALD_DURABILITY_ASYNC };
            s_store = herald_store_open (s_dir, &options, &err);
            cr_assert_not_null (s_store, "%s", err.message);
            herald_store_set_clock (s_store, s_clock);
        }
    }
}

Test (herald_scan, read_every_window_across_appends)
{
    s_runs_log ();
    uint64_t top = s_ver_of (s_store, "w", 1);
    cr_assert_gt (top, 40);
    for (uint64_t from = 1; from <= top + 1; from++) {
        s_check_read ("w", from, 0);
        s_check_read ("w", from, from);
        s_check_read ("w", from, from + 1);
        s_check_read ("w", from, from + 9);
    }
}

Test (herald_scan, sparse_scan_from_every_seq_across_appends)
{
    s_runs_log ();
    herald_str_t prefixes [] = { STR ("rare.") };
    herald_str_t one [] = { STR ("rare.b") };
    for (uint64_t from = 1; from <= s_count + 1; from += 1 + from % 5) {
        herald_scan_spec_t spec = s_spec (from, from % 2? prefixes: one, 1);
        s_check_scan (&spec);
        spec.has_to = true;
        spec.to = from + 40;
        s_check_scan (&spec);
    }
}

Test (herald_scan, sparse_scan_with_ts_ranges_across_appends)
{
    s_runs_log ();
    herald_str_t prefixes [] = { STR ("rare.a"), STR ("w") };
    uint64_t first = s_log [0].ts, last = s_log [s_count - 1].ts;
    for (uint64_t ts = first - 1; ts <= last + 1; ts += 500) {
        herald_scan_spec_t spec = s_spec (0, prefixes, 2);
        spec.has_from_ts = true;
        spec.from_ts = ts;
        s_check_scan (&spec);
        spec.has_until_ts = true;
        spec.until_ts = ts + 2000;
        s_check_scan (&spec);
    }
}

Test (herald_scan, sparse_scan_ignores_events_appended_after_start)
{
    const char *rare [] = { "rare.a", "rare.b" };
    s_sparse_log (rare, 2, 500);
    herald_str_t prefixes [] = { STR ("rare.") };
    herald_scan_spec_t spec = s_spec (1, prefixes, 1);
    herald_error_t err;
    herald_scan_t *scan = s_track (herald_store_scan (s_store, &spec, &err));
    cr_assert_not_null (scan, "%s", err.message);
    uint64_t head = s_count;
    const uint8_t *envelope;
    size_t len;
    uint64_t seq, previous = 0;
    size_t count = 0;
    cr_assert_eq (herald_scan_next (scan, &envelope, &len, &seq), 1);
    count++;
    s_append_n ("rare.a", 40);                      //  after the scan began
    s_append_n ("rare.new", 3);
    while (herald_scan_next (scan, &envelope, &len, &seq) == 1) {
        cr_assert_leq (seq, head, "scan returned seq %" PRIu64 ", appended after it began", seq);
        cr_assert_gt (seq, previous);
        previous = seq;
        count++;
    }
    cr_assert_eq (count, 40, "the scan gave %zu events; 40 matched when it began", count);
    cr_assert_eq (herald_scan_last (scan), head);
    s_scan_destroy (&scan);
}

Test (herald_scan, many_prefixes_at_once)
{
    enum { TOPICS = HERALD_PREFIXES_MAX };
    char (*names) [TOPIC_SIZE] = calloc (TOPICS, TOPIC_SIZE);
    herald_str_t *prefixes = calloc (TOPICS, sizeof (herald_str_t));
    const char **order = malloc (TOPICS * 8 * sizeof (char *));
    cr_assert (names && prefixes && order);
    for (size_t index = 0; index < TOPICS; index++) {
        snprintf (names [index], TOPIC_SIZE, "p.%03zu", (index * 101) % TOPICS);
        prefixes [index].ptr = names [index];
        prefixes [index].len = strlen (names [index]);
    }
    for (size_t index = 0; index < TOPICS * 8; index++)
        order [index] = index % 8 == 5? names [(index / 8 * 37) % TOPICS]: "q.noise";
    s_append (order, TOPICS * 8);
    herald_scan_spec_t spec = s_spec (1, prefixes, TOPICS);
    cr_assert_eq (s_check_scan (&spec), TOPICS);
    spec = s_spec (1, prefixes, TOPICS / 2);
    cr_assert_eq (s_check_scan (&spec), TOPICS / 2);
    free (order);
    free (prefixes);
    free (names);
}

Test (herald_scan, read_and_prefix_of_a_255_byte_topic)
{
    char topic [HERALD_TOPIC_MAX + 1];
    memset (topic, 'y', HERALD_TOPIC_MAX);
    topic [HERALD_TOPIC_MAX] = 0;
    char shorter [HERALD_TOPIC_MAX];
    memcpy (shorter, topic, HERALD_TOPIC_MAX - 1);
    shorter [HERALD_TOPIC_MAX - 1] = 0;
    const char *order [12];
    for (size_t index = 0; index < 12; index++)
        order [index] = index % 3? topic: shorter;
    s_append (order, 12);
    cr_assert_eq (s_check_read (topic, 1, 0), 8);
    cr_assert_eq (s_check_read (shorter, 1, 0), 4);
    herald_str_t prefixes [] = { { topic, HERALD_TOPIC_MAX } };
    herald_scan_spec_t spec = s_spec (1, prefixes, 1);
    cr_assert_eq (s_check_scan (&spec), 8);
    prefixes [0].len = HERALD_TOPIC_MAX - 1;
    cr_assert_eq (s_check_scan (&spec), 12);
}

Test (herald_scan, scan_copies_its_prefixes_and_read_its_topic)
{
    s_small_log ();
    char buffer [16] = "ab";
    herald_str_t prefixes [1] = { { buffer, 2 } };
    herald_scan_spec_t spec = s_spec (1, prefixes, 1);
    herald_error_t err;
    herald_scan_t *scan = s_track (herald_store_scan (s_store, &spec, &err));
    cr_assert_not_null (scan);
    herald_scan_t *read = s_track (herald_store_read (s_store, buffer, 2, 1, 0, &err));
    cr_assert_not_null (read);
    memcpy (buffer, "zz", 2);                       //  the caller reuses its memory
    prefixes [0].len = 1;
    size_t expected = 0;
    for (size_t index = 0; index < s_count; index++)
        expected += !strncmp (s_log [index].topic, "ab", 2);
    const uint8_t *envelope;
    size_t len, count = 0;
    uint64_t seq;
    while (herald_scan_next (scan, &envelope, &len, &seq) == 1) {
        cr_assert (!strncmp (s_log [seq - 1].topic, "ab", 2), "seq %" PRIu64 " topic %s", seq,
                   s_log [seq - 1].topic);
        count++;
    }
    cr_assert_eq (count, expected);
    count = 0;
    while (herald_scan_next (read, &envelope, &len, &seq) == 1) {
        cr_assert_str_eq (s_log [seq - 1].topic, "ab");
        count++;
    }
    cr_assert_eq (count, s_ver_of (s_store, "ab", 2));
    s_scan_destroy (&scan);
    s_scan_destroy (&read);
}

//  Reopen the suite's store with 1 MB memtables, so a few MB of events
//  spread over memtables, L0 files and a compacted level.
static void
s_reopen_small_memtables (void)
{
    herald_store_destroy (&s_store);
    herald_store_options_t options = { .durability = HERALD_DURABILITY_ASYNC,
                                       .write_buffer_mb = 1 };
    herald_error_t err;
    memset (&err, 0, sizeof err);
    s_store = herald_store_open (s_dir, &options, &err);
    cr_assert_not_null (s_store, "reopen %s: %d %s", s_dir, err.code, err.message);
    herald_store_set_clock (s_store, s_clock);
}

Test (herald_scan, sparse_lookups_find_every_run_across_flushes_and_reopen)
{
    //  A run is found by seeking to one seq (store/herald_store.c), and a
    //  lookup iterator sees only that seq's bucket of 256 seqs: "rare"
    //  sits at the end of every bucket, so most of its runs end in the
    //  next one, and at every 997th seq besides.  100,000 events, about
    //  6 MB, go through many memtable flushes and compactions.
    enum { COUNT = 100000 };
    static const char *bulk [] = { "bulk.0", "bulk.1", "bulk.2", "bulk.3", "bulk.4" };
    s_reopen_small_memtables ();
    const char **order = malloc (COUNT * sizeof (char *));
    cr_assert_not_null (order);
    size_t rare = 0;
    for (size_t index = 0; index < COUNT; index++) {
        uint64_t seq = index + 1;
        bool is_rare = seq % 256 == 255 || seq % 997 == 0;
        order [index] = is_rare? "rare": bulk [index % 5];
        rare += is_rare;
    }
    s_append (order, COUNT);
    free (order);
    herald_str_t prefixes [] = { STR ("rare") };
    herald_scan_spec_t spec = s_spec (1, prefixes, 1);
    for (int round = 0; round < 2; round++) {
        cr_assert_eq (s_check_read ("rare", 1, 0), rare);
        cr_assert_eq (s_check_scan (&spec), rare);
        cr_assert_eq (s_check_read ("bulk.3", 9000, 9100), 101);
        spec.from = 50001;
        cr_assert_gt (s_check_scan (&spec), 0);
        spec.from = 1;
        for (uint64_t seq = 250; seq <= 260; seq++) {
            uint8_t *stored;
            size_t stored_len;
            cr_assert_eq (herald_store_get (s_store, seq, &stored, &stored_len, NULL), HERALD_OK);
            s_check_envelope (stored, stored_len, seq, &s_log [seq - 1]);
            free (stored);
        }
        uint8_t *none;
        size_t none_len;
        cr_assert_eq (herald_store_get (s_store, COUNT + 1, &none, &none_len, NULL),
                      HERALD_ERR_NOT_FOUND);
        s_reopen_small_memtables ();
    }
    herald_scan_spec_t all = s_spec (1, NULL, 0);
    cr_assert_eq (s_check_scan (&all), COUNT);
}
