/*  =========================================================================
    trimtest - trim points in the store's tests: publishing with the ids
    kept, the op {op: "trim"}, and scans asserted to refuse or to return

    Criterion only; header-only (static inline).  Uses groupops.h for op
    results and storetest.h's helpers.
    =========================================================================
*/

#ifndef HERALD_TRIMTEST_H_INCLUDED
#define HERALD_TRIMTEST_H_INCLUDED

#include <criterion/criterion.h>
#include <inttypes.h>
#include <msgpack.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "herald_store.h"
#include "testutil.h"
#include "groupops.h"
#include "storetest.h"

//  The ids of every event published, in seq order (seq i + 1 at i)
typedef struct {
    uint8_t (*ids) [HERALD_ID_BYTES];
    size_t count;
    size_t capacity;
    size_t data_size;               //  0: short data
} tt_ids_t;

static inline void
tt_ids_fini (tt_ids_t *ids)
{
    free (ids->ids);
    memset (ids, 0, sizeof (*ids));
}

static inline herald_store_t *
tt_open (const char *dir)
{
    herald_error_t err = { 0 };
    herald_store_t *store = herald_store_open (dir, NULL, &err);
    cr_assert_not_null (store, "open: %s", err.message);
    return store;
}

//  The data of event seq: "d<seq>", padded to data_size with letters
//  drawn from seq (so that it does not compress away: the disk figures
//  are about events, not about padding)
static inline size_t
tt_data (size_t data_size, uint64_t seq, char *out, size_t size)
{
    int len = snprintf (out, size, "d%llu", (unsigned long long) seq);
    size_t want = data_size > (size_t) len? data_size: (size_t) len;
    if (want >= size)
        want = size - 1;
    uint64_t state = seq * 0x9E3779B97F4A7C15ull + 1;
    for (size_t i = (size_t) len; i < want; i++) {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        out [i] = (char) ('a' + state % 26);
    }
    out [want] = 0;
    return want;
}

//  Publish count events, topic i of topics for event i (round robin), in
//  appends of up to 1000, keeping their ids
static inline void
tt_publish_topics (herald_store_t *store, tt_ids_t *ids, const char *const *topics,
                   size_t topic_count, size_t count)
{
    enum { CHUNK = 1000 };
    static char data [CHUNK][2048];
    herald_event_t *events = calloc (CHUNK, sizeof (herald_event_t));
    herald_append_result_t *results = calloc (CHUNK, sizeof (herald_append_result_t));
    cr_assert (events && results);
    for (size_t done = 0; done < count;) {
        size_t n = count - done < CHUNK? count - done: CHUNK;
        uint64_t head = herald_store_head (store);
        for (size_t i = 0; i < n; i++) {
            size_t len = tt_data (ids->data_size, head + 1 + i, data [i], sizeof data [i]);
            events [i] = tu_event_n (topics [(done + i) % topic_count],
                                     strlen (topics [(done + i) % topic_count]),
                                     data [i], len);
        }
        cr_assert_eq (tu_append (store, events, n, results, NULL), HERALD_OK);
        if (ids->count + n > ids->capacity) {
            ids->capacity = (ids->count + n) * 2;
            ids->ids = realloc (ids->ids, ids->capacity * HERALD_ID_BYTES);
            cr_assert (ids->ids);
        }
        for (size_t i = 0; i < n; i++) {
            cr_assert_eq (results [i].seq, ids->count + 1);
            memcpy (ids->ids [ids->count++], events [i].id, HERALD_ID_BYTES);
        }
        done += n;
    }
    free (events);
    free (results);
}

//  Publish count events over topics prefix0 .. prefix<topic_count - 1>
static inline void
tt_publish (herald_store_t *store, tt_ids_t *ids, const char *prefix, size_t topic_count,
            size_t count)
{
    char (*names) [64] = calloc (topic_count, 64);
    const char **topics = calloc (topic_count, sizeof (char *));
    cr_assert (names && topics);
    for (size_t i = 0; i < topic_count; i++) {
        snprintf (names [i], 64, "%s%zu", prefix, i);
        topics [i] = names [i];
    }
    tt_publish_topics (store, ids, topics, topic_count, count);
    free (topics);
    free (names);
}

//  BLAKE2b-256 of the ids of seqs from..to, computed here
static inline void
tt_digest (const tt_ids_t *ids, uint64_t from, uint64_t to, uint8_t digest [32])
{
    cr_assert (from >= 1 && to <= ids->count && from <= to);
    crypto_generichash (digest, 32, ids->ids [from - 1], (to - from + 1) * HERALD_ID_BYTES,
                        NULL, 0);
}

//  {op: "trim", prefix, until, [ids_from], [ids], [reason]}; prefix_raw
//  packs the prefix as bin (a bad op); ids NULL leaves ids out
static inline void
tt_op (msgpack_sbuffer *buffer, const char *prefix, size_t prefix_len, bool prefix_raw,
       uint64_t until, bool has_from, uint64_t from, const uint8_t *ids, size_t ids_len,
       const char *reason)
{
    msgpack_sbuffer_init (buffer);
    msgpack_packer pk;
    msgpack_packer_init (&pk, buffer, msgpack_sbuffer_write);
    msgpack_pack_map (&pk, 3 + has_from + (ids != NULL) + (reason != NULL));
    go_str (&pk, "op");
    go_str (&pk, "trim");
    go_str (&pk, "prefix");
    if (prefix_raw)
        msgpack_pack_bin_with_body (&pk, prefix, prefix_len);
    else
        msgpack_pack_str_with_body (&pk, prefix, prefix_len);
    go_str (&pk, "until");
    msgpack_pack_uint64 (&pk, until);
    if (has_from) {
        go_str (&pk, "ids_from");
        msgpack_pack_uint64 (&pk, from);
    }
    if (ids) {
        go_str (&pk, "ids");
        msgpack_pack_bin_with_body (&pk, ids, ids_len);
    }
    if (reason) {
        go_str (&pk, "reason");
        go_str (&pk, reason);
    }
}

//  Apply the op alone at ts (its buffer destroyed); its result into
//  result (fini it); returns the batch's status
static inline herald_err
tt_apply_op_ts (herald_store_t *store, msgpack_sbuffer *op, go_result_t *result, uint64_t ts)
{
    herald_batch_t batch = { .op = (const uint8_t *) op->data, .op_len = op->size };
    herald_error_t err = { 0 };
    cr_assert_eq (herald_store_apply (store, &batch, 1, ts, &err), HERALD_OK, "%s",
                  err.message);
    go_result_init (result, batch.op_result, batch.op_result_len);
    msgpack_zone_push_finalizer (&result->zone, free, batch.op_result);
    msgpack_sbuffer_destroy (op);
    return batch.status;
}

static inline herald_err
tt_apply_op (herald_store_t *store, msgpack_sbuffer *op, go_result_t *result)
{
    return tt_apply_op_ts (store, op, result, herald_store_now (store));
}

static inline void
tt_assert_result (const go_result_t *result, const char *prefix, uint64_t until,
                  uint64_t first)
{
    const msgpack_object *value = go_get (result, "prefix");
    cr_assert (value && value->type == MSGPACK_OBJECT_STR
               && value->via.str.size == strlen (prefix)
               && memcmp (value->via.str.ptr, prefix, strlen (prefix)) == 0);
    value = go_get (result, "until");
    cr_assert (value && value->type == MSGPACK_OBJECT_POSITIVE_INTEGER
               && value->via.u64 == until);
    value = go_get (result, "first");
    cr_assert (value && value->type == MSGPACK_OBJECT_POSITIVE_INTEGER);
    cr_assert_eq (value->via.u64, first);
}

//  Trim without proof; asserts it is applied
static inline void
tt_trim_ok (herald_store_t *store, const char *prefix, uint64_t until, const char *reason)
{
    msgpack_sbuffer op;
    tt_op (&op, prefix, strlen (prefix), false, until, false, 0, NULL, 0, reason);
    go_result_t result;
    herald_err status = tt_apply_op (store, &op, &result);
    const msgpack_object *error = go_get (&result, "error");
    cr_assert_eq (status, HERALD_OK, "trim %s until %llu: %.*s", prefix,
                  (unsigned long long) until, error? (int) error->via.str.size: 0,
                  error? error->via.str.ptr: "");
    go_result_fini (&result);
}

static inline void
tt_spec (herald_scan_spec_t *spec, herald_str_t *strs, uint64_t from,
         const char *const *prefixes, size_t count)
{
    for (size_t i = 0; i < count; i++)
        strs [i] = (herald_str_t) { prefixes [i], strlen (prefixes [i]) };
    *spec = (herald_scan_spec_t) { .from = from, .prefixes = count? strs: NULL,
                                   .prefix_count = count };
}

//  A scan from from is refused TRIMMED, naming first
static inline void
tt_scan_refused (herald_store_t *store, uint64_t from, const char *const *prefixes,
                 size_t count, uint64_t first)
{
    herald_str_t strs [8];
    herald_scan_spec_t spec;
    tt_spec (&spec, strs, from, prefixes, count);
    herald_error_t err = { 0 };
    herald_scan_t *scan = herald_store_scan (store, &spec, &err);
    cr_assert_null (scan, "a scan from %llu was not refused", (unsigned long long) from);
    cr_assert_eq (err.code, HERALD_ERR_TRIMMED, "%s", err.message);
    char start [64];
    snprintf (start, sizeof start, "from: seq %llu ", (unsigned long long) from);
    cr_assert (!strncmp (err.message, start, strlen (start)), "names its field once: %s",
               err.message);
    char want [64];
    snprintf (want, sizeof want, "for these prefixes is %llu", (unsigned long long) first);
    cr_assert (strstr (err.message, want), "%s (want %s)", err.message, want);
    cr_assert_eq (herald_store_first (store, count? strs: NULL, count), first);
}

//  A scan from from returns exactly first..last, in order
static inline void
tt_scan_expect (herald_store_t *store, uint64_t from, const char *const *prefixes,
                size_t count, uint64_t first, uint64_t last)
{
    herald_str_t strs [8];
    herald_scan_spec_t spec;
    tt_spec (&spec, strs, from, prefixes, count);
    herald_error_t err = { 0 };
    herald_scan_t *scan = herald_store_scan (store, &spec, &err);
    cr_assert_not_null (scan, "%s", err.message);
    const uint8_t *bytes;
    size_t len;
    uint64_t seq, want = first;
    int rc;
    while ((rc = herald_scan_next (scan, &bytes, &len, &seq)) == 1)
        cr_assert_eq (seq, want++);
    cr_assert_eq (rc, 0, "%s", herald_scan_error (scan)->message);
    cr_assert_eq (want, last + 1);
    herald_scan_destroy (&scan);
}

//  A scan from from returns expected events, each matching a prefix, in
//  seq order, from from on
static inline void
tt_scan_expect_topics (herald_store_t *store, uint64_t from, const char *const *prefixes,
                       size_t count, uint64_t expected)
{
    herald_str_t strs [8];
    herald_scan_spec_t spec;
    tt_spec (&spec, strs, from, prefixes, count);
    herald_error_t err = { 0 };
    herald_scan_t *scan = herald_store_scan (store, &spec, &err);
    cr_assert_not_null (scan, "%s", err.message);
    const uint8_t *bytes;
    size_t len;
    uint64_t seq, previous = 0, got = 0;
    int rc;
    while ((rc = herald_scan_next (scan, &bytes, &len, &seq)) == 1) {
        cr_assert (seq >= from && seq > previous);
        previous = seq;
        const char *topic;
        size_t topic_len;
        uint64_t s, v, t;
        cr_assert (herald_event_peek (bytes, len, &topic, &topic_len, &s, &v, &t));
        bool matches = false;
        for (size_t i = 0; i < count && !matches; i++)
            matches = strs [i].len <= topic_len
                   && memcmp (strs [i].ptr, topic, strs [i].len) == 0;
        cr_assert (matches, "event %llu of %.*s", (unsigned long long) seq,
                   (int) topic_len, topic);
        got++;
    }
    cr_assert_eq (rc, 0, "%s", herald_scan_error (scan)->message);
    cr_assert_eq (got, expected, "got %llu events, want %llu", (unsigned long long) got,
                  (unsigned long long) expected);
    herald_scan_destroy (&scan);
}

#endif
