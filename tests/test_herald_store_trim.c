/*  =========================================================================
    test_herald_store_trim - trimming the live log in the store (issue 17)

    The op {op: "trim"} and each of its refusals (nothing written); whole
    log and prefix trim points, nested prefixes; herald_store_first,
    topic_trimmed, topic_first_ver; get, scans (full and sparse) and reads
    refusing a trimmed start with the first seq (ver) still there; a scan
    that began before a trim ending TRIMMED rather than skipping; dedup of
    trimmed ids; vers going on; the ids digest against a BLAKE2b of the
    published ids; reopen; trims_import.  Reclaim is in
    test_herald_store_reclaim.c.
    =========================================================================
*/

#include <criterion/criterion.h>
#include <errno.h>
#include <inttypes.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"
#include "groupops.h"
#include "trimtest.h"

static char *s_dir;

static void
s_setup (void)
{
    s_dir = tu_tmpdir_new ("trim");
    cr_assert (s_dir, "cannot make a temporary directory: %s", strerror (errno));
}

static void
s_teardown (void)
{
    tu_tmpdir_destroy (&s_dir);
}

TestSuite (store_trim, .init = s_setup, .fini = s_teardown, .timeout = 120);

//  ---------------------------------------------------------------------
//  The op

Test (store_trim, refusals_write_nothing)
{
    herald_store_t *store = tt_open (s_dir);
    tt_ids_t ids = { 0 };
    tt_publish (store, &ids, "a.", 3, 30);          //  seqs 1..30
    uint8_t digest [32];
    tt_digest (&ids, 1, 10, digest);
    uint8_t wrong [32];
    memcpy (wrong, digest, 32);
    wrong [0] ^= 1;
    //  Each: the op, and a word its message must hold
    struct {
        const char *prefix;
        bool prefix_raw;                //  prefix given as bin, not str
        size_t prefix_len;
        uint64_t until;
        bool has_from;
        uint64_t from;
        const uint8_t *ids;
        size_t ids_len;
        const char *says;
    } cases [] = {
        { "", false, 0, 0, false, 0, NULL, 0, "until" },
        { "", false, 0, 31, false, 0, NULL, 0, "above the head" },
        { "$sys", false, 4, 5, false, 0, NULL, 0, "prefix" },
        { "a\0b", false, 3, 5, false, 0, NULL, 0, "prefix" },
        { "a.", true, 2, 5, false, 0, NULL, 0, "prefix" },
        { "", false, 0, 10, true, 1, NULL, 0, "both" },
        { "", false, 0, 10, false, 0, digest, 32, "both" },
        { "", false, 0, 10, true, 1, digest, 31, "32 bytes" },
        { "", false, 0, 10, true, 2, digest, 32, "first seq" },
        { "", false, 0, 10, true, 1, wrong, 32, "not of this log" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases [0]; i++) {
        msgpack_sbuffer op;
        tt_op (&op, cases [i].prefix, cases [i].prefix_len, cases [i].prefix_raw,
               cases [i].until, cases [i].has_from, cases [i].from, cases [i].ids,
               cases [i].ids_len, NULL);
        go_result_t result;
        herald_err status = tt_apply_op (store, &op, &result);
        cr_assert_eq (status, HERALD_ERR_BAD_REQUEST, "case %zu: status %d", i, status);
        const msgpack_object *error = go_get (&result, "error");
        cr_assert (error && error->type == MSGPACK_OBJECT_STR, "case %zu: no error", i);
        char message [400];
        snprintf (message, sizeof message, "%.*s", (int) error->via.str.size,
                  error->via.str.ptr);
        cr_assert (strstr (message, cases [i].says), "case %zu: %s", i, message);
        go_result_fini (&result);
        cr_assert_eq (herald_store_trims (store, NULL, 0), 0, "case %zu wrote a point", i);
    }
    //  A point, then not above it
    tt_trim_ok (store, "a.", 10, NULL);
    msgpack_sbuffer op;
    tt_op (&op, "a.", 2, false, 10, false, 0, NULL, 0, NULL);
    go_result_t result;
    cr_assert_eq (tt_apply_op (store, &op, &result), HERALD_ERR_BAD_REQUEST);
    const msgpack_object *error = go_get (&result, "error");
    cr_assert (error && memmem (error->via.str.ptr, error->via.str.size,
                                "already trimmed up to 10", 24));
    go_result_fini (&result);
    cr_assert_eq (herald_store_topic_trimmed (store, "a.0", 3), 10);
    herald_store_destroy (&store);
    //  Nothing of them on disk either
    store = tt_open (s_dir);
    cr_assert_eq (herald_store_trims (store, NULL, 0), 1);
    herald_store_destroy (&store);
    tt_ids_fini (&ids);
}

Test (store_trim, at_most_trims_max_prefixes)
{
    herald_store_t *store = tt_open (s_dir);
    tt_ids_t ids = { 0 };
    tt_publish (store, &ids, "t.", 1, 2);
    //  HERALD_TRIMS_MAX + 1 ops in one call: the last is refused, the
    //  others applied (a call's ops see each other)
    size_t count = HERALD_TRIMS_MAX + 1;
    msgpack_sbuffer *ops = calloc (count, sizeof (msgpack_sbuffer));
    herald_batch_t *batches = calloc (count, sizeof (herald_batch_t));
    for (size_t i = 0; i < count; i++) {
        char prefix [16];
        int len = snprintf (prefix, sizeof prefix, "p%zu.", i);
        tt_op (&ops [i], prefix, (size_t) len, false, 1, false, 0, NULL, 0, NULL);
        batches [i].op = (const uint8_t *) ops [i].data;
        batches [i].op_len = ops [i].size;
    }
    herald_error_t err = { 0 };
    cr_assert_eq (herald_store_apply (store, batches, count, 1000, &err), HERALD_OK, "%s",
                  err.message);
    for (size_t i = 0; i < count; i++) {
        cr_assert_eq (batches [i].status, i < HERALD_TRIMS_MAX? HERALD_OK
                                                                : HERALD_ERR_BAD_REQUEST,
                      "op %zu", i);
        free (batches [i].op_result);
        msgpack_sbuffer_destroy (&ops [i]);
    }
    cr_assert_eq (herald_store_trims (store, NULL, 0), HERALD_TRIMS_MAX);
    //  A known prefix may still rise
    tt_trim_ok (store, "p7.", 2, NULL);
    herald_store_destroy (&store);
    store = tt_open (s_dir);
    cr_assert_eq (herald_store_trims (store, NULL, 0), HERALD_TRIMS_MAX);
    cr_assert_eq (herald_store_topic_trimmed (store, "p7.x", 4), 2);
    herald_store_destroy (&store);
    free (ops);
    free (batches);
    tt_ids_fini (&ids);
}

Test (store_trim, whole_log_with_proof)
{
    herald_store_t *store = tt_open (s_dir);
    tt_ids_t ids = { 0 };
    tt_publish (store, &ids, "a.", 4, 100);
    uint8_t digest [32];
    tt_digest (&ids, 1, 40, digest);
    msgpack_sbuffer op;
    tt_op (&op, "", 0, false, 40, true, 1, digest, 32, "archived to s3");
    go_result_t result;
    cr_assert_eq (tt_apply_op_ts (store, &op, &result, 123456789), HERALD_OK);
    tt_assert_result (&result, "", 40, 41);
    go_result_fini (&result);

    cr_assert_eq (herald_store_log_first (store), 41);
    cr_assert_eq (herald_store_first (store, NULL, 0), 41);
    herald_trim_t trims [4];
    cr_assert_eq (herald_store_trims (store, trims, 4), 1);
    cr_assert_eq (trims [0].prefix_len, 0);
    cr_assert_eq (trims [0].until, 40);
    cr_assert (trims [0].ts >= 123456789, "the apply's ts");
    cr_assert_eq (herald_store_event_count (store), 60);
    cr_assert_eq (herald_store_head (store), 100);
    //  get
    uint8_t *envelope;
    size_t len;
    herald_error_t err = { 0 };
    cr_assert_eq (herald_store_get (store, 40, &envelope, &len, &err), HERALD_ERR_TRIMMED);
    cr_assert (strstr (err.message, "41"), "%s", err.message);
    cr_assert_eq (herald_store_get (store, 41, &envelope, &len, &err), HERALD_OK);
    free (envelope);
    //  Scans refuse a start before 41, naming it
    tt_scan_refused (store, 1, NULL, 0, 41);
    tt_scan_refused (store, 40, NULL, 0, 41);
    const char *a = "a.1";
    tt_scan_refused (store, 40, &a, 1, 41);
    tt_scan_expect (store, 41, NULL, 0, 41, 100);
    //  seq_at_ts counts the live log only: a ts before its first event
    //  gives its first seq; but a scan from that ts would skip the trimmed
    //  events with a ts at or after it (here all 100 share one ts): refused
    cr_assert_eq (s_seq_at (store, 0), 41);
    herald_scan_spec_t spec = { .has_from_ts = true, .from_ts = 0 };
    herald_scan_t *scan = herald_store_scan (store, &spec, &err);
    cr_assert_null (scan, "a scan from ts 0 of a trimmed log was not refused");
    cr_assert_eq (err.code, HERALD_ERR_TRIMMED, "%s", err.message);
    cr_assert (strstr (err.message, "for these prefixes is 41"), "%s", err.message);
    //  The ids digest from the first seq, and not below it
    uint8_t got [32], want [32];
    cr_assert_eq (herald_store_ids_digest (store, 41, 100, got, NULL, &err), HERALD_OK, "%s",
                  err.message);
    tt_digest (&ids, 41, 100, want);
    cr_assert_arr_eq (got, want, 32);
    cr_assert_eq (herald_store_ids_digest (store, 40, 100, got, NULL, &err),
                  HERALD_ERR_TRIMMED);
    cr_assert_eq (herald_store_ids_digest (store, 41, 101, got, NULL, &err),
                  HERALD_ERR_BAD_REQUEST);
    cr_assert_eq (herald_store_ids_digest (store, 50, 49, got, NULL, &err),
                  HERALD_ERR_BAD_REQUEST);
    //  A second proof must start at the new first seq
    tt_digest (&ids, 41, 60, digest);
    tt_op (&op, "", 0, false, 60, true, 1, digest, 32, NULL);
    cr_assert_eq (tt_apply_op (store, &op, &result), HERALD_ERR_BAD_REQUEST);
    go_result_fini (&result);
    tt_op (&op, "", 0, false, 60, true, 41, digest, 32, NULL);
    cr_assert_eq (tt_apply_op (store, &op, &result), HERALD_OK);
    tt_assert_result (&result, "", 60, 61);
    go_result_fini (&result);
    //  Reopen keeps it all
    herald_store_destroy (&store);
    store = tt_open (s_dir);
    cr_assert_eq (herald_store_log_first (store), 61);
    cr_assert_eq (herald_store_trims (store, trims, 4), 1);
    cr_assert_eq (trims [0].until, 60);
    tt_scan_refused (store, 60, NULL, 0, 61);
    tt_scan_expect (store, 61, NULL, 0, 61, 100);
    herald_store_destroy (&store);
    tt_ids_fini (&ids);
}

Test (store_trim, digest_is_blake2b_of_the_ids)
{
    herald_store_t *store = tt_open (s_dir);
    tt_ids_t ids = { 0 };
    tt_publish (store, &ids, "d.", 7, 5000);        //  several runs
    uint8_t got [32], want [32];
    herald_error_t err = { 0 };
    uint64_t ranges [][2] = { { 1, 1 }, { 1, 5000 }, { 17, 3333 }, { 4999, 5000 } };
    for (size_t i = 0; i < 4; i++) {
        cr_assert_eq (herald_store_ids_digest (store, ranges [i][0], ranges [i][1], got, NULL,
                                               &err), HERALD_OK, "%s", err.message);
        tt_digest (&ids, ranges [i][0], ranges [i][1], want);
        cr_assert_arr_eq (got, want, 32, "range %zu", i);
    }
    volatile bool cancel = true;
    cr_assert_eq (herald_store_ids_digest (store, 1, 5000, got, &cancel, &err),
                  HERALD_ERR_INTERNAL);
    cr_assert (strstr (err.message, "cancelled"));
    herald_store_destroy (&store);
    tt_ids_fini (&ids);
}

//  ---------------------------------------------------------------------
//  Prefixes

Test (store_trim, nested_prefixes)
{
    herald_store_t *store = tt_open (s_dir);
    tt_ids_t ids = { 0 };
    //  a.b.0 a.x.1 b.2 a.b.0 ... : 3 topics round robin
    const char *topics [] = { "a.b.0", "a.x.1", "b.2" };
    tt_publish_topics (store, &ids, topics, 3, 300);
    tt_trim_ok (store, "a.", 50, NULL);
    tt_trim_ok (store, "a.b.", 80, NULL);
    cr_assert_eq (herald_store_topic_trimmed (store, "a.b.0", 5), 80);
    cr_assert_eq (herald_store_topic_trimmed (store, "a.x.1", 5), 50);
    cr_assert_eq (herald_store_topic_trimmed (store, "b.2", 3), 0);
    cr_assert_eq (herald_store_topic_trimmed (store, "a.", 2), 50);
    herald_str_t p_a = { "a.", 2 }, p_ab = { "a.b.", 4 }, p_ax = { "a.x", 3 }, p_b = { "b.", 2 },
                 p_abc = { "a.b.0", 5 }, p_none = { "", 0 };
    cr_assert_eq (herald_store_first (store, &p_a, 1), 81);
    cr_assert_eq (herald_store_first (store, &p_ab, 1), 81);
    cr_assert_eq (herald_store_first (store, &p_abc, 1), 81);
    cr_assert_eq (herald_store_first (store, &p_ax, 1), 51);
    cr_assert_eq (herald_store_first (store, &p_b, 1), 1);
    cr_assert_eq (herald_store_first (store, &p_none, 1), 81);
    cr_assert_eq (herald_store_first (store, NULL, 0), 81);
    herald_str_t two [] = { p_b, p_ax };
    cr_assert_eq (herald_store_first (store, two, 2), 51);
    cr_assert_eq (herald_store_log_first (store), 1);
    cr_assert_eq (herald_store_event_count (store), 300, "prefix trims keep the seqs counted");

    //  b. untouched from seq 1; a.x from 51; a. from 81
    const char *b = "b.", *ax = "a.x", *a = "a.";
    tt_scan_expect_topics (store, 1, &b, 1, 100);
    tt_scan_refused (store, 50, &ax, 1, 51);
    tt_scan_expect_topics (store, 51, &ax, 1, 83);
    tt_scan_refused (store, 80, &a, 1, 81);
    tt_scan_expect_topics (store, 81, &a, 1, 146);
    tt_scan_refused (store, 1, NULL, 0, 81);
    //  get of a prefix-trimmed event, of one kept
    uint8_t *envelope;
    size_t len;
    herald_error_t err = { 0 };
    cr_assert_eq (herald_store_get (store, 79, &envelope, &len, &err), HERALD_ERR_TRIMMED);
    cr_assert (strstr (err.message, "a.b.0 is 81"), "%s", err.message);     //  79: a.b.0
    cr_assert_eq (herald_store_get (store, 3, &envelope, &len, &err), HERALD_OK);  //  b.2
    free (envelope);
    herald_store_destroy (&store);
    tt_ids_fini (&ids);
}

Test (store_trim, reads_and_first_ver)
{
    herald_store_t *store = tt_open (s_dir);
    tt_ids_t ids = { 0 };
    const char *topics [] = { "o.1", "o.2" };
    tt_publish_topics (store, &ids, topics, 2, 40);     //  o.1: odd seqs, vers 1..20
    tt_trim_ok (store, "o.1", 9, NULL);                 //  o.1 vers 1..5 (seqs 1..9)
    uint64_t ver = 0;
    herald_error_t err = { 0 };
    cr_assert_eq (herald_store_topic_first_ver (store, "o.1", 3, &ver, &err), HERALD_OK);
    cr_assert_eq (ver, 6);
    cr_assert_eq (herald_store_topic_first_ver (store, "o.2", 3, &ver, &err), HERALD_OK);
    cr_assert_eq (ver, 1);
    cr_assert_eq (herald_store_topic_first_ver (store, "o.3", 3, &ver, &err), HERALD_OK);
    cr_assert_eq (ver, 0, "unknown topic");
    herald_scan_t *read = herald_store_read (store, "o.1", 3, 5, 0, &err);
    cr_assert_null (read);
    cr_assert_eq (err.code, HERALD_ERR_TRIMMED);
    cr_assert (strstr (err.message, "first ver still there is 6"), "%s", err.message);
    cr_assert (!strncmp (err.message, "from_ver: ver 5 ", 16), "names its field once: %s",
               err.message);
    read = herald_store_read (store, "o.1", 3, 6, 0, &err);
    cr_assert_not_null (read, "%s", err.message);
    const uint8_t *bytes;
    size_t len;
    uint64_t seq, count = 0;
    while (herald_scan_next (read, &bytes, &len, &seq) == 1)
        count++;
    cr_assert_null (herald_scan_error (read)->code? "failed": NULL);
    cr_assert_eq (count, 15);
    herald_scan_destroy (&read);
    //  Every event of it: first ver is its ver + 1; a new event goes on
    tt_trim_ok (store, "o.1", 40, NULL);
    cr_assert_eq (herald_store_topic_first_ver (store, "o.1", 3, &ver, &err), HERALD_OK);
    cr_assert_eq (ver, 21);
    read = herald_store_read (store, "o.1", 3, 20, 0, &err);
    cr_assert_null (read);
    cr_assert_eq (err.code, HERALD_ERR_TRIMMED);
    read = herald_store_read (store, "o.1", 3, 21, 0, &err);
    cr_assert_not_null (read, "%s", err.message);
    cr_assert_eq (herald_scan_next (read, &bytes, &len, &seq), 0);
    herald_scan_destroy (&read);
    herald_event_t event = tu_event ("o.1", "after");
    herald_append_result_t result;
    cr_assert_eq (tu_append (store, &event, 1, &result, NULL), HERALD_OK);
    cr_assert_eq (result.ver, 21);
    cr_assert_eq (result.seq, 41);
    cr_assert_eq (herald_store_topic_count (store), 2);
    herald_store_destroy (&store);
    tt_ids_fini (&ids);
}

Test (store_trim, trimmed_ids_stay_duplicates)
{
    herald_store_t *store = tt_open (s_dir);
    tt_ids_t ids = { 0 };
    const char *topics [] = { "x.1", "y.1" };
    tt_publish_topics (store, &ids, topics, 2, 20);
    tt_trim_ok (store, "", 10, NULL);
    tt_trim_ok (store, "y.", 20, NULL);
    //  Retry seq 3 (x.1 ver 2, trimmed by "") and seq 14 (y.1 ver 7, by "y.")
    uint64_t retry [] = { 3, 14 };
    uint64_t want_ver [] = { 2, 7 };
    for (size_t i = 0; i < 2; i++) {
        char data [64];
        size_t len = tt_data (ids.data_size, retry [i], data, sizeof data);
        const char *topic = topics [(retry [i] - 1) % 2];
        herald_event_t event = tu_event_n (topic, strlen (topic), data, len);
        memcpy (event.id, ids.ids [retry [i] - 1], HERALD_ID_BYTES);
        herald_append_result_t result;
        cr_assert_eq (tu_append (store, &event, 1, &result, NULL), HERALD_OK);
        cr_assert (result.dup);
        cr_assert_not (result.reused);
        cr_assert_eq (result.seq, retry [i]);
        cr_assert_eq (result.ver, want_ver [i]);
    }
    cr_assert_eq (herald_store_head (store), 20, "nothing stored again");
    herald_store_destroy (&store);
    tt_ids_fini (&ids);
}

//  ---------------------------------------------------------------------
//  A trim while a stream runs

//  Start a scan of prefix from 1, take a few, trim under it, and go on:
//  it must end -1 TRIMMED, never skip to the events after the trim point.
static void
s_scan_then_trim (const char *dir, bool sparse)
{
    herald_store_t *store = tt_open (dir);
    tt_ids_t ids = { 0 };
    if (sparse) {
        //  Few matching events among many: the topic index is used
        tt_publish (store, &ids, "bulk.", 3, 6000);
        const char *topics [] = { "m.1" };
        tt_publish_topics (store, &ids, topics, 1, 20);
        tt_publish (store, &ids, "bulk.", 3, 6000);
    }
    else {
        const char *topics [] = { "m.1", "other" };
        tt_publish_topics (store, &ids, topics, 2, 2000);
    }
    herald_str_t prefix = { "m.", 2 };
    herald_scan_spec_t spec = { .from = 1, .prefixes = &prefix, .prefix_count = 1 };
    herald_error_t err = { 0 };
    herald_scan_t *scan = herald_store_scan (store, &spec, &err);
    cr_assert_not_null (scan, "%s", err.message);
    const uint8_t *bytes;
    size_t len;
    uint64_t seq;
    for (int i = 0; i < 3; i++)
        cr_assert_eq (herald_scan_next (scan, &bytes, &len, &seq), 1);
    //  A scan of another prefix, begun before too, is not concerned
    herald_str_t other = { sparse? "bulk.0": "other", sparse? 6: 5 };
    herald_scan_spec_t other_spec = { .from = 1, .prefixes = &other, .prefix_count = 1 };
    herald_scan_t *other_scan = herald_store_scan (store, &other_spec, &err);
    cr_assert_not_null (other_scan);
    //  Trim the m. events up to well past what was read
    uint64_t until = sparse? 6000 + 15: 1000;
    tt_trim_ok (store, "m.", until, NULL);
    int rc;
    //  The next m. event is trimmed: nothing more may come
    while ((rc = herald_scan_next (scan, &bytes, &len, &seq)) == 1)
        cr_assert_fail ("returned event %llu after the trim", (unsigned long long) seq);
    cr_assert_eq (rc, -1, "the scan ended as if complete");
    cr_assert_eq (herald_scan_error (scan)->code, HERALD_ERR_TRIMMED, "%s",
                  herald_scan_error (scan)->message);
    cr_assert (strstr (herald_scan_error (scan)->message, "first seq still there"));
    cr_assert (herald_scan_last (scan) < until);
    herald_scan_destroy (&scan);
    uint64_t count = 0;
    while ((rc = herald_scan_next (other_scan, &bytes, &len, &seq)) == 1)
        count++;
    cr_assert_eq (rc, 0, "%s", herald_scan_error (other_scan)->message);
    cr_assert_eq (count, sparse? 4000: 1000);
    herald_scan_destroy (&other_scan);
    //  A new scan from the first seq: served in full
    uint64_t first = herald_store_first (store, &prefix, 1);
    cr_assert_eq (first, until + 1);
    tt_scan_expect_topics (store, first, (const char *[]) { "m." }, 1,
                           sparse? 5: 500);
    herald_store_destroy (&store);
    tt_ids_fini (&ids);
}

Test (store_trim, full_scan_begun_before_a_trim_ends_trimmed)
{
    s_scan_then_trim (s_dir, false);
}

Test (store_trim, sparse_scan_begun_before_a_trim_ends_trimmed)
{
    s_scan_then_trim (s_dir, true);
}

Test (store_trim, read_begun_before_a_trim_ends_trimmed)
{
    herald_store_t *store = tt_open (s_dir);
    tt_ids_t ids = { 0 };
    const char *topics [] = { "r.1" };
    tt_publish_topics (store, &ids, topics, 1, 50);
    herald_error_t err = { 0 };
    herald_scan_t *read = herald_store_read (store, "r.1", 3, 1, 0, &err);
    cr_assert_not_null (read);
    const uint8_t *bytes;
    size_t len;
    uint64_t seq;
    cr_assert_eq (herald_scan_next (read, &bytes, &len, &seq), 1);
    tt_trim_ok (store, "r.", 30, NULL);
    cr_assert_eq (herald_scan_next (read, &bytes, &len, &seq), -1);
    cr_assert_eq (herald_scan_error (read)->code, HERALD_ERR_TRIMMED);
    cr_assert (strstr (herald_scan_error (read)->message, "first ver still there is 31"),
               "%s", herald_scan_error (read)->message);
    herald_scan_destroy (&read);
    herald_store_destroy (&store);
    tt_ids_fini (&ids);
}

//  ---------------------------------------------------------------------
//  Ops in one call, import

Test (store_trim, ops_of_one_call_see_each_other)
{
    herald_store_t *store = tt_open (s_dir);
    tt_ids_t ids = { 0 };
    tt_publish (store, &ids, "c.", 2, 20);
    //  Events, then two trims of one prefix, then a trim with a proof
    //  starting after the first trim of "" of the same call
    herald_event_t event = tu_event ("c.new", "x");
    herald_append_result_t event_result;
    msgpack_sbuffer ops [4];
    tt_op (&ops [0], "", 0, false, 5, false, 0, NULL, 0, NULL);
    tt_op (&ops [1], "", 0, false, 5, false, 0, NULL, 0, NULL);      //  not above: refused
    uint8_t digest [32];
    tt_digest (&ids, 6, 12, digest);
    tt_op (&ops [2], "", 0, false, 12, true, 6, digest, 32, NULL);
    tt_op (&ops [3], "", 0, false, 21, false, 0, NULL, 0, NULL);     //  above the head
    herald_batch_t batches [5] = {
        { .events = &event, .count = 1, .results = &event_result },
    };
    for (int i = 0; i < 4; i++) {
        batches [i + 1].op = (const uint8_t *) ops [i].data;
        batches [i + 1].op_len = ops [i].size;
    }
    herald_error_t err = { 0 };
    cr_assert_eq (herald_store_apply (store, batches, 5, 1000, &err), HERALD_OK);
    cr_assert_eq (batches [1].status, HERALD_OK);
    cr_assert_eq (batches [2].status, HERALD_ERR_BAD_REQUEST);
    cr_assert_eq (batches [3].status, HERALD_OK);
    cr_assert_eq (batches [4].status, HERALD_ERR_BAD_REQUEST, "the head the call began at");
    cr_assert_eq (event_result.seq, 21);
    cr_assert_eq (herald_store_log_first (store), 13);
    for (int i = 0; i < 4; i++) {
        free (batches [i + 1].op_result);
        msgpack_sbuffer_destroy (&ops [i]);
    }
    herald_store_destroy (&store);
    tt_ids_fini (&ids);
}

Test (store_trim, import_raises_never_lowers)
{
    herald_store_t *store = tt_open (s_dir);
    tt_ids_t ids = { 0 };
    tt_publish (store, &ids, "i.", 2, 20);
    tt_trim_ok (store, "i.", 15, NULL);
    herald_trim_t in [3] = { 0 };
    strcpy (in [0].prefix, "i.");
    in [0].prefix_len = 2;
    in [0].until = 10;                      //  lower: stays 15
    in [1].prefix_len = 0;
    in [1].until = 5;
    in [1].ts = 99;
    strcpy (in [2].prefix, "j.");
    in [2].prefix_len = 2;
    in [2].until = 7;
    herald_error_t err = { 0 };
    cr_assert_eq (herald_store_trims_import (store, in, 3, &err), HERALD_OK, "%s",
                  err.message);
    cr_assert_eq (herald_store_topic_trimmed (store, "i.x", 3), 15);
    cr_assert_eq (herald_store_topic_trimmed (store, "j.x", 3), 7);
    cr_assert_eq (herald_store_log_first (store), 6);
    //  Bad: nothing changes
    herald_trim_t bad [2] = { 0 };
    strcpy (bad [0].prefix, "k.");
    bad [0].prefix_len = 2;
    bad [0].until = 3;
    strcpy (bad [1].prefix, "$sys");
    bad [1].prefix_len = 4;
    bad [1].until = 3;
    cr_assert_eq (herald_store_trims_import (store, bad, 2, &err), HERALD_ERR_INVALID);
    cr_assert_eq (herald_store_topic_trimmed (store, "k.x", 3), 5, "\"\" only");
    cr_assert_eq (herald_store_trims (store, NULL, 0), 3);
    herald_store_destroy (&store);
    store = tt_open (s_dir);
    herald_trim_t trims [8];
    cr_assert_eq (herald_store_trims (store, trims, 8), 3);
    cr_assert_eq (trims [0].prefix_len, 0);
    cr_assert_eq (trims [0].until, 5);
    cr_assert_eq (trims [0].ts, 99);
    cr_assert_str_eq (trims [1].prefix, "i.");
    cr_assert_eq (trims [1].until, 15);
    cr_assert_str_eq (trims [2].prefix, "j.");
    herald_store_destroy (&store);
    tt_ids_fini (&ids);
}

//  A scan from a time: refused when a trimmed event has a ts at or after
//  it (it would be skipped), served from the live log when none has.  The
//  trim point keeps the ts of the event at until (until_ts), through
//  reopen and import; a point covered by the whole-log one takes its ts.
Test (store_trim, from_ts_never_skips_trimmed_events)
{
    herald_store_t *store = tt_open (s_dir);
    tt_ids_t ids = { 0 };
    //  Three appends, one ts each: seqs 1..10 at 1000, 11..20 at 2000,
    //  21..30 at 3000
    for (int round = 1; round <= 3; round++) {
        herald_store_set_clock (store, (uint64_t) round * 1000);
        tt_publish (store, &ids, "a.", 2, 10);
    }
    herald_store_set_clock (store, 0);
    msgpack_sbuffer op;
    go_result_t result;
    tt_op (&op, "", 0, false, 15, false, 0, NULL, 0, NULL);
    cr_assert_eq (tt_apply_op (store, &op, &result), HERALD_OK);
    go_result_fini (&result);
    herald_trim_t trims [4];
    cr_assert_eq (herald_store_trims (store, trims, 4), 1);
    cr_assert_eq (trims [0].until_ts, 2000, "the ts of seq 15");
    for (int pass = 0; pass < 2; pass++) {
        uint64_t refused [] = { 0, 999, 1000, 1500, 2000 };
        for (size_t i = 0; i < sizeof refused / sizeof refused [0]; i++) {
            herald_scan_spec_t spec = { .has_from_ts = true, .from_ts = refused [i] };
            herald_error_t err = { 0 };
            herald_scan_t *scan = herald_store_scan (store, &spec, &err);
            cr_assert_null (scan, "from_ts %llu would skip seqs 11..15",
                            (unsigned long long) refused [i]);
            cr_assert_eq (err.code, HERALD_ERR_TRIMMED, "%s", err.message);
            cr_assert_str_eq (err.field, "from_ts");
            cr_assert (strstr (err.message, "for these prefixes is 16"), "%s", err.message);
        }
        //  Above every trimmed event's ts: the live log's events from it
        herald_scan_spec_t spec = { .has_from_ts = true, .from_ts = 2001 };
        herald_error_t err = { 0 };
        herald_scan_t *scan = herald_store_scan (store, &spec, &err);
        cr_assert_not_null (scan, "%s", err.message);
        const uint8_t *bytes;
        size_t len;
        uint64_t seq;
        cr_assert_eq (herald_scan_next (scan, &bytes, &len, &seq), 1);
        cr_assert_eq (seq, 21);
        herald_scan_destroy (&scan);
        //  A prefix trim point below the whole-log one takes its until_ts
        if (pass == 0) {
            tt_op (&op, "a.", 2, false, 12, false, 0, NULL, 0, NULL);
            cr_assert_eq (tt_apply_op (store, &op, &result), HERALD_OK);
            go_result_fini (&result);
            cr_assert_eq (herald_store_trims (store, trims, 4), 2);
            cr_assert_eq (trims [1].until_ts, 2000, "covered by \"\" until 15");
            //  Reclaimed and reopened: the same answers
            bool more = true;
            for (int calls = 0; more && calls < 100; calls++)
                cr_assert_eq (herald_store_reclaim (store, 1000, &more, NULL, &err), HERALD_OK,
                              "%s", err.message);
            herald_store_destroy (&store);
            store = tt_open (s_dir);
            cr_assert_eq (herald_store_trims (store, trims, 4), 2);
            cr_assert_eq (trims [0].until_ts, 2000);
        }
    }
    //  Imported points keep their until_ts
    herald_trim_t point = { .prefix = "b.", .prefix_len = 2, .until = 25, .ts = 1,
                            .until_ts = 3000 };
    herald_error_t err = { 0 };
    cr_assert_eq (herald_store_trims_import (store, &point, 1, &err), HERALD_OK, "%s",
                  err.message);
    cr_assert_eq (herald_store_trims (store, trims, 4), 3);
    cr_assert_eq (trims [2].until_ts, 3000);
    herald_store_destroy (&store);
    tt_ids_fini (&ids);
}
