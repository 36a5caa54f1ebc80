/*  =========================================================================
    test_herald_store_damage - the store on table files RocksDB cannot read

    Each test builds a real store, stops it, flips bytes inside a data
    block of one column family's table file (tests/tabledamage.c), opens
    it again and asks.  Whatever the store cannot read must come out as an
    error that names what was being read and carries RocksDB's status:
    never as the end of a scan, "not found", "version 0", or an empty log.
    =========================================================================
*/

#include <criterion/criterion.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tabledamage.h"
#include "testutil.h"

#define TOPICS      40
#define DATA_BYTES  1000

static char *s_dir;
static herald_store_t *s_store;
static herald_scan_t *s_scan;           //  destroyed before the store
static char s_topics [TOPICS][16];

static void
s_setup (void)
{
    s_dir = tu_tmpdir_new ("damage");
    cr_assert_not_null (s_dir, "cannot make a temporary directory: %s", strerror (errno));
    for (int index = 0; index < TOPICS; index++)
        snprintf (s_topics [index], sizeof (s_topics [index]), "t.%02d", index);
}

static void
s_teardown (void)
{
    herald_scan_destroy (&s_scan);
    herald_store_destroy (&s_store);
    tu_tmpdir_destroy (&s_dir);
}

TestSuite (herald_store_damage, .init = s_setup, .fini = s_teardown, .timeout = 120);

//  Open s_dir with small memtables (several table files for a few MB);
//  NULL and err filled when the store refuses.
static herald_store_t *
s_open (herald_error_t *err)
{
    herald_store_options_t options = { .durability = HERALD_DURABILITY_ASYNC,
                                       .write_buffer_mb = 2 };
    memset (err, 0, sizeof (*err));
    return herald_store_open (s_dir, &options, err);
}

static void
s_open_ok (void)
{
    herald_error_t err;
    s_store = s_open (&err);
    cr_assert_not_null (s_store, "open: %s", err.message);
}

//  Close and open again: RocksDB writes what its WAL holds into table
//  files when it opens, so that afterwards every event is in a table.
static void
s_settle (void)
{
    herald_store_destroy (&s_store);
    s_open_ok ();
    herald_store_destroy (&s_store);
}

//  A store of count events of DATA_BYTES random (incompressible) bytes on
//  topics t.00..t.39 in turn, seq n at ts n * 1000 (one append each, so
//  that each has a ts of its own); left closed, every event in a table.
static void
s_build (size_t count)
{
    s_open_ok ();
    static uint8_t data [100][DATA_BYTES];
    herald_event_t events [100];
    herald_append_result_t results [100];
    for (size_t done = 0; done < count; done += 100) {
        size_t size = count - done < 100? count - done: 100;
        for (size_t index = 0; index < size; index++) {
            tu_random_bytes (data [index], DATA_BYTES);
            const char *topic = s_topics [(done + index) % TOPICS];
            events [index] = tu_event_n (topic, strlen (topic), data [index], DATA_BYTES);
        }
        for (size_t index = 0; index < size; index++) {
            herald_store_set_clock (s_store, (done + index + 1) * 1000);
            cr_assert_eq (tu_append (s_store, &events [index], 1, results, NULL), HERALD_OK);
        }
    }
    s_settle ();
}

//  Flip 16 bytes in the middle of cf's largest table: inside a data block.
static void
s_damage_middle (const char *cf)
{
    td_table_t table;
    size_t count;
    cr_assert_eq (td_largest_table (s_dir, cf, &table, &count), 0, "no %s table", cf);
    cr_assert_eq (td_flip (table.path, table.size / 2, 16), 0, "%s: %s", table.path,
                  strerror (errno));
}

//  Flip 16 bytes near the start of cf's largest table: its first data
//  block, which in a small store holds everything.
static void
s_damage_start (const char *cf)
{
    td_table_t table;
    size_t count;
    cr_assert_eq (td_largest_table (s_dir, cf, &table, &count), 0, "no %s table", cf);
    cr_assert_eq (td_flip (table.path, 16, 16), 0, "%s: %s", table.path, strerror (errno));
}

//  Pull the scan until it stops; returns what herald_scan_next returned
//  last, the count and the last seq returned.  Seqs must rise.
static int
s_drain (herald_scan_t *scan, size_t *count, uint64_t *last_seq)
{
    *count = 0;
    *last_seq = 0;
    int rc;
    const uint8_t *envelope;
    size_t len;
    uint64_t seq;
    while ((rc = herald_scan_next (scan, &envelope, &len, &seq)) == 1) {
        cr_assert_gt (seq, *last_seq);
        *last_seq = seq;
        (*count)++;
    }
    return rc;
}

//  The error the scan stopped on names the damage: RocksDB's status text
//  and what was being read.
static void
s_check_read_error (const herald_error_t *err, const char *what)
{
    cr_assert_eq (err->code, HERALD_ERR_IO, "code %d: %s", err->code, err->message);
    cr_assert_not_null (strstr (err->message, "Corruption"), "%s", err->message);
    cr_assert_not_null (strstr (err->message, what), "'%s' not in: %s", what, err->message);
    cr_assert_not_null (strstr (err->message, ".sst"), "no file named: %s", err->message);
}

static herald_scan_t *
s_scan_from (uint64_t from, const char *prefix)
{
    herald_str_t prefixes [1] = { { prefix, prefix? strlen (prefix): 0 } };
    herald_scan_spec_t spec = { .from = from, .prefixes = prefixes,
                                .prefix_count = prefix? 1: 0 };
    herald_error_t err;
    herald_scan_t *scan = herald_store_scan (s_store, &spec, &err);
    cr_assert_not_null (scan, "scan: %s", err.message);
    return scan;
}

//  A full scan stops at the damaged block with an error naming the seq it
//  could not read; a scan that starts inside the damage fails at once,
//  instead of ending there as if the range were complete.
Test (herald_store_damage, a_scan_stops_with_an_error_at_a_damaged_block)
{
    s_build (5000);
    s_damage_middle ("events");
    s_open_ok ();
    cr_assert_eq (herald_store_head (s_store), 5000);

    s_scan = s_scan_from (1, NULL);
    size_t count;
    uint64_t last_seq;
    cr_assert_eq (s_drain (s_scan, &count, &last_seq), -1, "the scan ended after %zu events",
                  count);
    cr_assert_lt (count, 5000);
    cr_assert_eq (last_seq, count, "seqs 1..%zu in order", count);
    cr_assert_eq (herald_scan_last (s_scan), last_seq, "last %" PRIu64 " claims more than sent",
                  herald_scan_last (s_scan));
    char seq_text [48];
    snprintf (seq_text, sizeof (seq_text), "seq %zu", count + 1);
    s_check_read_error (herald_scan_error (s_scan), seq_text);
    //  It stays failed
    const uint8_t *envelope;
    size_t len;
    uint64_t seq;
    cr_assert_eq (herald_scan_next (s_scan, &envelope, &len, &seq), -1);
    herald_scan_destroy (&s_scan);

    //  From the first seq it could not read: an error, not END at once
    s_scan = s_scan_from (count + 1, NULL);
    size_t more;
    cr_assert_eq (s_drain (s_scan, &more, &last_seq), -1,
                  "a scan from seq %zu ended after %zu events, last %" PRIu64, count + 1, more,
                  herald_scan_last (s_scan));
    cr_assert_eq (more, 0);
    cr_assert_eq (herald_scan_last (s_scan), count, "last must stay before the damage");
    s_check_read_error (herald_scan_error (s_scan), seq_text);
}

//  A run deleted from the middle of the log (a hole RocksDB reads without
//  complaint): a scan over it fails naming the missing seqs, instead of
//  skipping them; one that starts inside it fails at once.
Test (herald_store_damage, a_scan_over_a_hole_in_the_log_fails_naming_it)
{
    s_build (400);
    uint64_t first, last;
    cr_assert_eq (td_delete_run (s_dir, 200, &first, &last), 0);
    cr_assert (first <= 200 && 200 <= last && last < 400, "run %" PRIu64 "..%" PRIu64, first,
               last);
    s_open_ok ();
    cr_assert_eq (herald_store_head (s_store), 400);
    s_scan = s_scan_from (1, NULL);
    size_t count;
    uint64_t last_seq;
    cr_assert_eq (s_drain (s_scan, &count, &last_seq), -1,
                  "the scan went past the hole: %zu events, last %" PRIu64, count, last_seq);
    cr_assert_eq (count, first - 1);
    cr_assert_eq (herald_scan_last (s_scan), first - 1);
    const herald_error_t *err = herald_scan_error (s_scan);
    cr_assert_eq (err->code, HERALD_ERR_CORRUPT, "%d %s", err->code, err->message);
    char text [96];
    if (first == last)
        snprintf (text, sizeof (text), "seq gap: event %" PRIu64 " is missing", first);
    else
        snprintf (text, sizeof (text), "seq gap: events %" PRIu64 " to %" PRIu64
                  " are missing", first, last);
    cr_assert_not_null (strstr (err->message, text), "'%s' not in: %s", text, err->message);
    herald_scan_destroy (&s_scan);

    s_scan = s_scan_from (200, NULL);
    cr_assert_eq (s_drain (s_scan, &count, &last_seq), -1, "%zu events from inside the hole",
                  count);
    cr_assert_eq (count, 0);
    herald_scan_destroy (&s_scan);

    uint8_t *envelope = NULL;
    size_t len;
    herald_error_t get_err = { 0 };
    cr_assert_eq (herald_store_get (s_store, 200, &envelope, &len, &get_err),
                  HERALD_ERR_CORRUPT, "%s", get_err.message);
    free (envelope);
}

//  A topic whose events sit in the damaged block: READ, and a REPLAY by
//  prefix through the topic index, stop with the error; what they return
//  before it is in order.
Test (herald_store_damage, a_read_and_an_index_scan_stop_with_an_error)
{
    s_build (5000);
    s_damage_middle ("events");
    s_open_ok ();
    //  Which event is unreadable: the one a full scan stops at
    s_scan = s_scan_from (1, NULL);
    size_t count;
    uint64_t last_seq;
    cr_assert_eq (s_drain (s_scan, &count, &last_seq), -1);
    herald_scan_destroy (&s_scan);
    const char *topic = s_topics [count % TOPICS];     //  seq count + 1's topic

    herald_error_t err;
    s_scan = herald_store_read (s_store, topic, strlen (topic), 1, 0, &err);
    cr_assert_not_null (s_scan, "%s", err.message);
    size_t read;
    cr_assert_eq (s_drain (s_scan, &read, &last_seq), -1, "READ %s ended after %zu events",
                  topic, read);
    cr_assert_eq (read, count / TOPICS, "READ %s: %zu events before the damage", topic, read);
    cr_assert_eq (herald_scan_last (s_scan), read, "the last ver returned");
    char seq_text [48];
    snprintf (seq_text, sizeof (seq_text), "seq %zu", count + 1);
    s_check_read_error (herald_scan_error (s_scan), seq_text);
    herald_scan_destroy (&s_scan);

    //  t.NN selects 125 of 5,000 events: the topic index is used
    s_scan = s_scan_from (1, topic);
    cr_assert_eq (s_drain (s_scan, &read, &last_seq), -1, "REPLAY %s ended after %zu events",
                  topic, read);
    cr_assert_eq (read, count / TOPICS);
    cr_assert_lt (herald_scan_last (s_scan), count + 1, "last %" PRIu64 " passes the damage",
                  herald_scan_last (s_scan));
    s_check_read_error (herald_scan_error (s_scan), seq_text);
}

//  Getting one event, finding a seq by time and starting a scan by time
//  across the damage are errors, never "not found" or a guessed seq.
Test (herald_store_damage, get_and_seq_at_ts_fail_on_the_damage)
{
    s_build (5000);
    s_damage_middle ("events");
    s_open_ok ();
    size_t failed = 0;
    uint64_t first_failed = 0;
    for (uint64_t seq = 1; seq <= 5000; seq++) {
        uint8_t *envelope = NULL;
        size_t len;
        herald_error_t err = { 0 };
        herald_err rc = herald_store_get (s_store, seq, &envelope, &len, &err);
        free (envelope);
        if (rc == HERALD_OK)
            continue;
        cr_assert_neq (rc, HERALD_ERR_NOT_FOUND, "seq %" PRIu64 " <= head not found", seq);
        char seq_text [48];
        snprintf (seq_text, sizeof (seq_text), "seq %" PRIu64, seq);
        s_check_read_error (&err, seq_text);
        if (!failed++)
            first_failed = seq;
    }
    cr_assert_gt (failed, 0, "no event is unreadable: the damage missed the data");
    cr_assert_lt (failed, 100, "%zu unreadable: more than one block", failed);

    //  The seq at the damaged event's ts: the search must read that event
    uint64_t ts = first_failed * 1000;
    uint64_t found = 0;
    herald_error_t err = { 0 };
    cr_assert_eq (herald_store_seq_at_ts (s_store, ts, &found, &err), HERALD_ERR_IO,
                  "seq_at_ts answered %" PRIu64, found);
    cr_assert_not_null (strstr (err.message, "Corruption"), "%s", err.message);
    herald_scan_spec_t spec = { .has_from_ts = true, .from_ts = ts };
    memset (&err, 0, sizeof (err));
    s_scan = herald_store_scan (s_store, &spec, &err);
    cr_assert_null (s_scan, "a scan from a time it cannot find started");
    cr_assert_eq (err.code, HERALD_ERR_IO, "%d %s", err.code, err.message);
}

//  The run holding the head cannot be read: the store must not open as an
//  empty log (it would hand seqs 1.. out again).
Test (herald_store_damage, open_refuses_a_log_whose_head_cannot_be_read)
{
    s_build (20);
    s_damage_start ("events");
    herald_error_t err;
    s_store = s_open (&err);
    cr_assert_null (s_store, "opened with head %" PRIu64,
                    s_store? herald_store_head (s_store): 0);
    cr_assert_eq (err.code, HERALD_ERR_IO, "%d %s", err.code, err.message);
    cr_assert_not_null (strstr (err.message, "Corruption"), "%s", err.message);
    cr_assert_not_null (strstr (err.message, "the log"), "%s", err.message);
}

//  The id index cannot be read: the store must not open without knowing
//  its greatest id (every id would look new, and retries be stored twice).
Test (herald_store_damage, open_refuses_an_id_index_it_cannot_read)
{
    s_build (20);
    s_damage_start ("ids");
    herald_error_t err;
    s_store = s_open (&err);
    cr_assert_null (s_store, "opened on an unreadable id index");
    cr_assert_eq (err.code, HERALD_ERR_IO, "%d %s", err.code, err.message);
    cr_assert_not_null (strstr (err.message, "id index"), "%s", err.message);
}

//  The topics cannot be counted: the store must not open with a count
//  that leaves some out.
Test (herald_store_damage, open_refuses_topics_it_cannot_count)
{
    s_build (20);
    s_damage_start ("topics");
    herald_error_t err;
    s_store = s_open (&err);
    cr_assert_null (s_store, "opened with %" PRIu64 " topics",
                    s_store? herald_store_topic_count (s_store): 0);
    cr_assert_eq (err.code, HERALD_ERR_IO, "%d %s", err.code, err.message);
    cr_assert_not_null (strstr (err.message, "topics"), "%s", err.message);
}

//  A topic's stream cannot be read: its version is an error, not 0, and
//  an append to it fails whole and writes nothing (with "0" it would store
//  a second ver 1).
Test (herald_store_damage, a_topic_whose_stream_cannot_be_read_has_no_version_and_takes_no_append)
{
    s_build (20);
    s_damage_start ("streams");
    s_open_ok ();
    cr_assert_eq (herald_store_head (s_store), 20);

    herald_event_t event = tu_event ("t.01", "after the damage");
    herald_append_result_t result;
    tu_append_info_t info;
    herald_err rc = tu_append (s_store, &event, 1, &result, &info);
    cr_assert_neq (rc, HERALD_OK, "appended as seq %" PRIu64 " ver %" PRIu64, result.seq,
                   result.ver);
    cr_assert_eq (info.call, HERALD_ERR_IO, "%d %s", info.call, info.err.message);
    cr_assert_not_null (strstr (info.err.message, "t.01"), "%s", info.err.message);
    cr_assert_not_null (strstr (info.err.message, "Corruption"), "%s", info.err.message);
    cr_assert_eq (herald_store_head (s_store), 20, "the failed append wrote");

    uint64_t ver = 99;
    herald_error_t err = { 0 };
    cr_assert_eq (herald_store_topic_ver (s_store, "t.01", 4, &ver, &err), HERALD_ERR_IO,
                  "topic_ver answered %" PRIu64, ver);
    cr_assert_not_null (strstr (err.message, "Corruption"), "%s", err.message);
    //  A topic that does not exist is still plainly 0
    cr_assert_eq (herald_store_topic_ver (s_store, "none", 4, &ver, &err), HERALD_OK);
    cr_assert_eq (ver, 0);
}

//  RocksDB's status is shortened (the data directory dropped from file
//  paths), and nothing is cut: a 255-byte topic and the status both fit.
Test (herald_store_damage, error_messages_name_the_damage_whole)
{
    char topic [HERALD_TOPIC_MAX + 1];
    memset (topic, 'x', HERALD_TOPIC_MAX);
    topic [HERALD_TOPIC_MAX] = 0;
    s_open_ok ();
    herald_event_t event = tu_event (topic, "long");
    herald_append_result_t result;
    cr_assert_eq (tu_append (s_store, &event, 1, &result, NULL), HERALD_OK);
    s_settle ();
    s_damage_start ("streams");
    s_open_ok ();
    uint64_t ver;
    herald_error_t err = { 0 };
    cr_assert_eq (herald_store_topic_ver (s_store, topic, HERALD_TOPIC_MAX, &ver, &err),
                  HERALD_ERR_IO);
    size_t len = strlen (err.message);
    cr_assert_lt (len, sizeof (err.message) - 1, "filled to the brim: %s", err.message);
    cr_assert_null (strstr (err.message, s_dir), "the data directory repeated: %s",
                    err.message);
    cr_assert_not_null (strstr (err.message, "Corruption: block checksum mismatch"), "%s",
                        err.message);
    cr_assert_null (strstr (err.message, "  "), "double spaces: %s", err.message);
    //  Nothing cut: the whole topic, and RocksDB's status to its end
    cr_assert_not_null (strstr (err.message, topic), "%s", err.message);
    cr_assert_null (strstr (err.message, "..."), "%s", err.message);
    cr_assert_not_null (strstr (err.message, " size "), "%s", err.message);
}
