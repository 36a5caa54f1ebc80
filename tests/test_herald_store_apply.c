/*  =========================================================================
    test_herald_store_apply - the apply a replicated log needs (issue 13)

    herald_store_apply takes ts as an input instead of reading the clock,
    so that every node of a cluster applying the same entries writes the
    same events.  Proven here: ts is raised to the log's last ts, never
    lowered; two stores applying the same batches with the same ts write
    byte-identical envelopes and decide the same (dedup, reuse, `expect`),
    whatever their configuration and across a restart of one of them; and
    the envelopes moved out of the store by herald_store_take_appended stay
    valid while later applies run.
    =========================================================================
*/

#include <criterion/criterion.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

static char *s_dir;

static void
s_setup (void)
{
    s_dir = tu_tmpdir_new ("apply");
    cr_assert_not_null (s_dir, "cannot make a temporary directory: %s", strerror (errno));
}

static void
s_teardown (void)
{
    tu_tmpdir_destroy (&s_dir);
}

TestSuite (herald_store_apply, .init = s_setup, .fini = s_teardown, .timeout = 120);

static herald_store_t *
s_open (const char *name, const herald_store_options_t *options)
{
    char *path = tu_path (s_dir, name);
    cr_assert_not_null (path);
    herald_error_t err = { 0 };
    herald_store_t *store = herald_store_open (path, options, &err);
    cr_assert_not_null (store, "open %s: %s", path, err.message);
    free (path);
    return store;
}

//  Apply count batches with ts; the call must succeed.
static void
s_apply (herald_store_t *store, herald_batch_t *batches, size_t count, uint64_t ts)
{
    herald_error_t err = { 0 };
    cr_assert_eq (herald_store_apply (store, batches, count, ts, &err), HERALD_OK, "apply: %s",
                  err.message);
}

//  One batch of events[0..count) with results.
static herald_batch_t
s_batch (const herald_event_t *events, size_t count, herald_append_result_t *results)
{
    herald_batch_t batch;
    memset (&batch, 0, sizeof batch);
    batch.events = events;
    batch.count = count;
    batch.results = results;
    batch.status = (herald_err) -1;
    return batch;
}

//  The ts stored with seq.
static uint64_t
s_ts_of (herald_store_t *store, uint64_t seq)
{
    tu_decoded_t decoded = { 0 };
    cr_assert_eq (tu_get (store, seq, &decoded), HERALD_OK, "get seq %" PRIu64 ": %s", seq,
                  decoded.err.message);
    uint64_t ts = decoded.event.ts;
    tu_decoded_fini (&decoded);
    return ts;
}

//  The envelopes must be exactly what the store holds for their seqs.
static void
s_assert_stored (herald_store_t *store, const herald_store_envelopes_t *envelopes)
{
    for (uint64_t seq = envelopes->first; seq < envelopes->first + envelopes->count; seq++) {
        const uint8_t *taken;
        size_t taken_len;
        cr_assert (herald_store_envelope (envelopes, seq, &taken, &taken_len),
                   "seq %" PRIu64 " missing from the taken envelopes", seq);
        uint8_t *stored = NULL;
        size_t stored_len = 0;
        herald_error_t err = { 0 };
        cr_assert_eq (herald_store_get (store, seq, &stored, &stored_len, &err), HERALD_OK,
                      "get %" PRIu64 ": %s", seq, err.message);
        cr_assert_eq (taken_len, stored_len, "seq %" PRIu64 ": %zu bytes taken, %zu stored",
                      seq, taken_len, stored_len);
        cr_assert (memcmp (taken, stored, stored_len) == 0,
                   "seq %" PRIu64 ": the taken envelope differs from the stored one", seq);
        free (stored);
    }
}

Test (herald_store_apply, ts_below_the_last_ts_gets_the_last_ts)
{
    herald_store_t *store = s_open ("db", NULL);
    herald_event_t events [3] = {
        tu_event ("a", "1"), tu_event ("a", "2"), tu_event ("b", "3")
    };
    herald_append_result_t results [3];
    herald_batch_t batch = s_batch (&events [0], 1, results);
    s_apply (store, &batch, 1, 5000);
    cr_assert_eq (s_ts_of (store, 1), 5000);
    //  A proposer whose clock is behind (a clock step, a new leader)
    batch = s_batch (&events [1], 1, results);
    s_apply (store, &batch, 1, 1000);
    cr_assert_eq (s_ts_of (store, 2), 5000, "ts went back to %" PRIu64, s_ts_of (store, 2));
    cr_assert_eq (herald_store_last_ts (store), 5000);
    batch = s_batch (&events [2], 1, results);
    s_apply (store, &batch, 1, 6000);
    cr_assert_eq (s_ts_of (store, 3), 6000);
    //  Only a duplicate: nothing written, the last ts unchanged
    batch = s_batch (&events [2], 1, results);
    s_apply (store, &batch, 1, 9000);
    cr_assert (results [0].dup);
    cr_assert_eq (herald_store_last_ts (store), 6000);
    cr_assert_eq (herald_store_head (store), 3);
    //  Reopened, the recovered last ts still bounds the next apply
    herald_store_destroy (&store);
    store = s_open ("db", NULL);
    herald_event_t late = tu_event ("a", "4");
    batch = s_batch (&late, 1, results);
    s_apply (store, &batch, 1, 10);
    cr_assert_eq (s_ts_of (store, 4), 6000);
    herald_store_destroy (&store);
}

Test (herald_store_apply, append_proposes_the_stores_clock)
{
    herald_store_t *store = s_open ("db", NULL);
    herald_store_set_clock (store, 777000);
    cr_assert_eq (herald_store_now (store), 777000);
    herald_event_t event = tu_event ("a", "1");
    herald_append_result_t result;
    cr_assert_eq (tu_append (store, &event, 1, &result, NULL), HERALD_OK);
    cr_assert_eq (s_ts_of (store, 1), 777000);
    herald_store_set_clock (store, 0);
    uint64_t before = tu_now_ns ();
    uint64_t now = herald_store_now (store);
    cr_assert (now >= before && now < before + 60000000000ULL,
               "herald_store_now %" PRIu64 " is not the real clock (%" PRIu64 ")", now, before);
    herald_store_destroy (&store);
}

//  The events of the determinism test: ROUNDS applies of BATCHES batches
//  of up to EVENTS events each, over a few topics, with duplicates within
//  and across applies, ids reused for other data, `expect` that holds and
//  that fails, optional fields, and proposed ts that go back at times.
#define ROUNDS      12
#define BATCHES     5
#define EVENTS      40

typedef struct {
    herald_event_t events [BATCHES][EVENTS];
    size_t counts [BATCHES];
    char topics [BATCHES][EVENTS][32];
    char data [BATCHES][EVENTS][48];
    herald_kv_t meta [BATCHES][EVENTS];
    uint64_t ts;
} s_round_t;

static void
s_make_rounds (s_round_t *rounds, uint64_t seed)
{
    uint64_t state = seed;
    uint64_t ts = 1700000000000000000ULL;
    for (size_t r = 0; r < ROUNDS; r++) {
        s_round_t *round = &rounds [r];
        //  Every third round proposes a ts behind the one before
        ts = r % 3 == 2? ts - 1000000: ts + 1 + tu_rand (&state) % 5000000;
        round->ts = ts;
        for (size_t b = 0; b < BATCHES; b++) {
            round->counts [b] = 1 + tu_rand (&state) % EVENTS;
            for (size_t i = 0; i < round->counts [b]; i++) {
                snprintf (round->topics [b][i], 32, "t.%" PRIu64, tu_rand (&state) % 7);
                snprintf (round->data [b][i], 48, "r%zu b%zu i%zu %" PRIu64, r, b, i,
                          tu_rand (&state));
                herald_event_t *event = &round->events [b][i];
                *event = tu_event (round->topics [b][i], round->data [b][i]);
                uint64_t kind = tu_rand (&state) % 20;
                if (kind == 0 && (i > 0 || b > 0 || r > 0)) {
                    //  A retry: an earlier event again, same id and content
                    const s_round_t *earlier = &rounds [tu_rand (&state) % (r + 1)];
                    size_t eb = earlier == round? tu_rand (&state) % (b + 1)
                                                : tu_rand (&state) % BATCHES;
                    size_t limit = earlier == round && eb == b? i: earlier->counts [eb];
                    if (limit > 0)
                        *event = earlier->events [eb][tu_rand (&state) % limit];
                }
                else
                if (kind == 1 && r > 0) {
                    //  An id reused for other data
                    memcpy (event->id, rounds [r - 1].events [0][0].id, HERALD_ID_BYTES);
                }
                else
                if (kind == 2)
                    //  An `expect` that may hold or fail, depending on the log
                    event->has_expect = true, event->expect = tu_rand (&state) % 8;
                else
                if (kind == 3) {
                    event->type = "order.placed";
                    event->type_len = 12;
                    event->has_schema = true;
                    event->schema = 3;
                    round->meta [b][i] = (herald_kv_t) { "k", 1, "v", 1 };
                    event->meta = &round->meta [b][i];
                    event->meta_count = 1;
                }
            }
        }
    }
}

Test (herald_store_apply, same_batches_same_ts_give_identical_stores,
      .timeout = 240)
{
    s_round_t *rounds = calloc (ROUNDS, sizeof (s_round_t));
    cr_assert_not_null (rounds);
    s_make_rounds (rounds, 42);
    //  Two stores configured differently: a topic cache of one entry makes
    //  every other topic a RocksDB lookup; none of it may show in the log.
    herald_store_options_t options_a = { .durability = HERALD_DURABILITY_SYNC };
    herald_store_options_t options_b = { .durability = HERALD_DURABILITY_ASYNC,
                                         .topic_cache = 1, .write_buffer_mb = 4 };
    herald_store_t *a = s_open ("a", &options_a);
    herald_store_t *b = s_open ("b", &options_b);
    //  A pinned clock far from the proposed ts: apply must not read it
    herald_store_set_clock (b, 1);
    herald_store_envelopes_t taken_a = { 0 }, taken_b = { 0 };
    size_t conflicts = 0, duplicates = 0, reused = 0;
    for (size_t r = 0; r < ROUNDS; r++) {
        if (r == ROUNDS / 2) {
            //  b restarts: its caches and shortcuts are rebuilt from disk
            herald_store_destroy (&b);
            b = s_open ("b", &options_b);
        }
        herald_append_result_t results_a [BATCHES][EVENTS], results_b [BATCHES][EVENTS];
        herald_batch_t batches_a [BATCHES], batches_b [BATCHES];
        for (size_t k = 0; k < BATCHES; k++) {
            batches_a [k] = s_batch (rounds [r].events [k], rounds [r].counts [k], results_a [k]);
            batches_b [k] = s_batch (rounds [r].events [k], rounds [r].counts [k], results_b [k]);
        }
        s_apply (a, batches_a, BATCHES, rounds [r].ts);
        s_apply (b, batches_b, BATCHES, rounds [r].ts);
        for (size_t k = 0; k < BATCHES; k++) {
            cr_assert_eq (batches_a [k].status, batches_b [k].status, "round %zu batch %zu", r, k);
            if (batches_a [k].status != HERALD_OK) {
                conflicts++;
                cr_assert_eq (batches_a [k].conflict_index, batches_b [k].conflict_index);
                cr_assert_eq (batches_a [k].actual, batches_b [k].actual);
                continue;
            }
            for (size_t i = 0; i < batches_a [k].count; i++) {
                const herald_append_result_t *ra = &results_a [k][i], *rb = &results_b [k][i];
                cr_assert (ra->seq == rb->seq && ra->ver == rb->ver && ra->dup == rb->dup
                           && ra->reused == rb->reused,
                           "round %zu batch %zu event %zu: seq %" PRIu64 "/%" PRIu64 " ver %"
                           PRIu64 "/%" PRIu64 " dup %d/%d reused %d/%d", r, k, i, ra->seq,
                           rb->seq, ra->ver, rb->ver, ra->dup, rb->dup, ra->reused, rb->reused);
                duplicates += results_a [k][i].dup;
                reused += results_a [k][i].reused;
            }
        }
        herald_store_take_appended (a, &taken_a);
        herald_store_take_appended (b, &taken_b);
        cr_assert_eq (taken_a.first, taken_b.first);
        cr_assert_eq (taken_a.count, taken_b.count, "round %zu: %zu events against %zu", r,
                      taken_a.count, taken_b.count);
        size_t bytes = taken_a.count? taken_a.ends [taken_a.count - 1]: 0;
        cr_assert (bytes == 0 || (taken_b.ends [taken_b.count - 1] == bytes
                   && memcmp (taken_a.buffer.data, taken_b.buffer.data, bytes) == 0),
                   "round %zu: the envelopes differ", r);
        s_assert_stored (b, &taken_b);
    }
    //  The script did exercise what must be decided alike
    cr_assert_gt (conflicts, 0);
    cr_assert_gt (duplicates, 0);
    cr_assert_gt (reused, 0);
    cr_assert_eq (herald_store_head (a), herald_store_head (b));
    cr_assert_eq (herald_store_last_ts (a), herald_store_last_ts (b));
    cr_assert_eq (herald_store_topic_count (a), herald_store_topic_count (b));
    //  The whole logs, byte for byte
    for (uint64_t seq = 1; seq <= herald_store_head (a); seq++) {
        uint8_t *bytes_a = NULL, *bytes_b = NULL;
        size_t len_a = 0, len_b = 0;
        cr_assert_eq (herald_store_get (a, seq, &bytes_a, &len_a, NULL), HERALD_OK);
        cr_assert_eq (herald_store_get (b, seq, &bytes_b, &len_b, NULL), HERALD_OK);
        cr_assert (len_a == len_b && memcmp (bytes_a, bytes_b, len_a) == 0,
                   "seq %" PRIu64 " differs", seq);
        free (bytes_a);
        free (bytes_b);
    }
    herald_store_envelopes_free (&taken_a);
    herald_store_envelopes_free (&taken_b);
    herald_store_destroy (&a);
    herald_store_destroy (&b);
    free (rounds);
}

Test (herald_store_apply, taken_envelopes_stay_valid_through_later_applies)
{
    herald_store_t *store = s_open ("db", NULL);
    //  Four applies of growing size taken by two holders in turn: apply n
    //  writes into the buffers the holder of apply n - 3 gave back, and
    //  must not touch what the holder of apply n - 1 still fans out.
    static char payload [4096];
    memset (payload, 'x', sizeof payload);
    size_t sizes [4] = { 3, 500, 2000, 3000 };
    herald_store_envelopes_t held [2];
    memset (held, 0, sizeof held);
    uint8_t *copies [2] = { NULL, NULL };
    uint64_t head = 0;
    for (size_t n = 0; n < 4; n++) {
        herald_event_t *events = calloc (sizes [n], sizeof (herald_event_t));
        herald_append_result_t *results = calloc (sizes [n], sizeof (herald_append_result_t));
        cr_assert (events && results);
        for (size_t i = 0; i < sizes [n]; i++)
            events [i] = tu_event_n ("topic", 5, payload, 100 + (i * 37 + n) % 2000);
        herald_batch_t batch = s_batch (events, sizes [n], results);
        s_apply (store, &batch, 1, 1000 + n);
        herald_store_envelopes_t *mine = &held [n % 2];
        herald_store_take_appended (store, mine);
        cr_assert_eq (mine->first, head + 1);
        cr_assert_eq (mine->count, sizes [n]);
        head += sizes [n];
        const uint8_t *envelope;
        size_t len;
        cr_assert_not (herald_store_appended (store, mine->first, &envelope, &len),
                       "the store still lends envelopes it gave away");
        s_assert_stored (store, mine);
        size_t bytes = mine->ends [mine->count - 1];
        free (copies [n % 2]);
        copies [n % 2] = malloc (bytes);
        cr_assert_not_null (copies [n % 2]);
        memcpy (copies [n % 2], mine->buffer.data, bytes);
        //  The other holder's envelopes, from the apply before, are intact
        if (n > 0) {
            herald_store_envelopes_t *other = &held [(n + 1) % 2];
            size_t other_bytes = other->ends [other->count - 1];
            cr_assert (memcmp (copies [(n + 1) % 2], other->buffer.data, other_bytes) == 0,
                       "apply %zu's envelopes changed under apply %zu", n, n + 1);
            s_assert_stored (store, other);
        }
        free (events);
        free (results);
    }
    cr_assert_eq (herald_store_head (store), head);
    for (size_t k = 0; k < 2; k++) {
        free (copies [k]);
        herald_store_envelopes_free (&held [k]);
    }
    herald_store_destroy (&store);
}
