/*  =========================================================================
    test_herald_writer - the applier under the group commit (issue 13)

    The broker proposes a commit (batches, ts, cookie) and takes back an
    applied record: the cookie, the results, the seq range, and the
    envelopes written, owned by the record.  This is the seam a Raft node
    replaces, so its contract is pinned here on a real store: ts is the
    proposer's (raised to the log's last ts, never read from the clock),
    the record's envelopes are the stored bytes, and an apply that failed
    carries no events.
    =========================================================================
*/

#include <criterion/criterion.h>
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "herald_writer.h"
#include "testutil.h"

static char *s_dir;

static void
s_setup (void)
{
    s_dir = tu_tmpdir_new ("writer");
    cr_assert_not_null (s_dir, "cannot make a temporary directory: %s", strerror (errno));
}

static void
s_teardown (void)
{
    tu_tmpdir_destroy (&s_dir);
}

TestSuite (herald_writer, .init = s_setup, .fini = s_teardown, .timeout = 60);

static herald_store_t *
s_open (bool read_only)
{
    char *path = tu_path (s_dir, "db");
    cr_assert_not_null (path);
    herald_store_options_t options = { .read_only = read_only };
    herald_error_t err = { 0 };
    herald_store_t *store = herald_store_open (path, &options, &err);
    cr_assert_not_null (store, "open %s: %s", path, err.message);
    free (path);
    return store;
}

//  Wait (at most 10 s) until the proposal is applied, then take it.
static herald_applied_t *
s_take (herald_writer_t *writer)
{
    zmq_pollitem_t item = { zsock_resolve (herald_writer_sock (writer)), 0, ZMQ_POLLIN, 0 };
    cr_assert_eq (zmq_poll (&item, 1, 10000), 1, "no record within 10 s");
    return herald_writer_take (writer);
}

static herald_batch_t
s_batch (const herald_event_t *events, size_t count, herald_append_result_t *results)
{
    herald_batch_t batch;
    memset (&batch, 0, sizeof batch);
    batch.events = events;
    batch.count = count;
    batch.results = results;
    return batch;
}

//  The record's envelopes are the store's bytes, each with ts.
static void
s_assert_envelopes (herald_store_t *store, const herald_applied_t *record, uint64_t ts)
{
    cr_assert_eq (record->envelopes.first, record->first_seq);
    cr_assert_eq (record->envelopes.count, record->last_seq - record->first_seq + 1);
    for (uint64_t seq = record->first_seq; seq <= record->last_seq; seq++) {
        const uint8_t *envelope;
        size_t len;
        cr_assert (herald_store_envelope (&record->envelopes, seq, &envelope, &len));
        uint8_t *stored = NULL;
        size_t stored_len = 0;
        cr_assert_eq (herald_store_get (store, seq, &stored, &stored_len, NULL), HERALD_OK);
        cr_assert (len == stored_len && memcmp (envelope, stored, len) == 0,
                   "seq %" PRIu64 ": the record's envelope is not the stored one", seq);
        tu_decoded_t decoded = { 0 };
        cr_assert_eq (tu_decode (&decoded, envelope, len), HERALD_OK);
        cr_assert_eq (decoded.event.ts, ts, "seq %" PRIu64 ": ts %" PRIu64 ", not %" PRIu64,
                      seq, decoded.event.ts, ts);
        tu_decoded_fini (&decoded);
        free (stored);
    }
}

Test (herald_writer, record_holds_cookie_results_range_and_envelopes)
{
    herald_store_t *store = s_open (false);
    herald_store_set_clock (store, 123);        //  never the ts of a proposal
    herald_writer_t *writer = herald_writer_new (store);
    cr_assert_not_null (writer);

    herald_event_t first [2] = { tu_event ("a", "1"), tu_event ("b", "2") };
    herald_event_t conflict = tu_event ("a", "3");
    conflict.has_expect = true;
    conflict.expect = 7;
    herald_append_result_t results [3];
    herald_batch_t batches [2] = {
        s_batch (first, 2, results), s_batch (&conflict, 1, results + 2)
    };
    int cookie;
    herald_writer_propose (writer, batches, 2, 5000, &cookie);
    cr_assert (herald_writer_busy (writer));
    herald_applied_t *record = s_take (writer);
    cr_assert_not (herald_writer_busy (writer));
    cr_assert_eq (record->rc, HERALD_OK, "%s", record->err.message);
    cr_assert_eq (record->cookie, &cookie);
    cr_assert_eq (record->batches, batches);
    cr_assert_eq (record->ts, 5000);
    cr_assert_eq (record->first_seq, 1);
    cr_assert_eq (record->last_seq, 2);
    cr_assert_eq (batches [0].status, HERALD_OK);
    cr_assert_eq (results [1].seq, 2);
    cr_assert_eq (batches [1].status, HERALD_ERR_CONFLICT);
    cr_assert_eq (batches [1].actual, 1);
    s_assert_envelopes (store, record, 5000);
    herald_writer_release (writer, &record);
    cr_assert_null (record);

    //  A proposer's ts behind the log: the events get the log's last ts
    herald_event_t second [3] = { tu_event ("a", "4"), tu_event ("c", "5"), first [0] };
    herald_batch_t batch = s_batch (second, 3, results);
    herald_writer_propose (writer, &batch, 1, 10, NULL);
    record = s_take (writer);
    cr_assert_eq (record->rc, HERALD_OK, "%s", record->err.message);
    cr_assert_null (record->cookie);
    cr_assert_eq (record->first_seq, 3);
    cr_assert_eq (record->last_seq, 4);
    cr_assert (results [2].dup);
    s_assert_envelopes (store, record, 5000);
    herald_writer_release (writer, &record);

    //  Only a duplicate: applied, no new events
    batch = s_batch (second, 1, results);
    herald_writer_propose (writer, &batch, 1, 9000, NULL);
    record = s_take (writer);
    cr_assert_eq (record->rc, HERALD_OK);
    cr_assert_lt (record->last_seq, record->first_seq);
    cr_assert_eq (record->envelopes.count, 0);
    herald_writer_release (writer, &record);
    herald_writer_destroy (&writer);
    herald_store_destroy (&store);
}

Test (herald_writer, failed_apply_carries_no_events)
{
    herald_store_t *store = s_open (false);
    herald_event_t event = tu_event ("a", "1");
    herald_append_result_t result;
    cr_assert_eq (tu_append (store, &event, 1, &result, NULL), HERALD_OK);
    herald_store_destroy (&store);
    //  A read-only store refuses every write: the apply fails
    store = s_open (true);
    herald_writer_t *writer = herald_writer_new (store);
    cr_assert_not_null (writer);
    herald_event_t next = tu_event ("a", "2");
    herald_batch_t batch = s_batch (&next, 1, &result);
    herald_writer_propose (writer, &batch, 1, 5000, &event);
    herald_applied_t *record = s_take (writer);
    cr_assert_neq (record->rc, HERALD_OK);
    cr_assert_gt (strlen (record->err.message), 0);
    cr_assert_eq (record->cookie, &event);
    cr_assert_lt (record->last_seq, record->first_seq);
    cr_assert_eq (record->envelopes.count, 0);
    herald_writer_release (writer, &record);
    herald_writer_destroy (&writer);
    cr_assert_eq (herald_store_head (store), 1);
    herald_store_destroy (&store);
}
