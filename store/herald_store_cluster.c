/*  =========================================================================
    herald_store_cluster - what a cluster node needs of the store: the
    applied raft index, the log digest, and installing a peer's envelopes

    DESIGN

    The store keeps two counters, both in CF "default" and both written in
    the WriteBatch of the events they describe (herald_store_stage_write),
    so that no crash can leave one without the other:

    - "meta.raft.applied": the last raft entry applied.  Written by every
      herald_store_apply_entry, also when the entry adds no event (all
      duplicates, a failed `expect`): re-applying an entry is not harmless
      (an `expect` that failed could pass against a newer state), so the
      store must know exactly which entries its data holds.

    - "herald.digest": head | d(head), a running hash of the log, so that
      two nodes can tell in 16 bytes whether they hold the same log.
      d(0) = 0 and d(seq) = XXH64 over d(seq - 1) and event seq's logical
      fields (herald_store_digest_next says exactly which, in which order):
      not its bytes, so that builds whose encoders differ still agree, and
      a change in any field changes it.  XXH64 (herald_hash.h) because the
      store has it already, it is specified, and the content hash it needs
      for data is one the append computes anyway (the dedup index keeps
      it): the digest costs one XXH64 over ~100 bytes per new event.

    A store written before the digest existed has no key (or one for
    another head: it cannot happen after a crash, since both go in one
    WriteBatch, but the data is the truth): open computes the digest from
    the log once, says so on stderr, and stores it (unless read-only).  A
    log that cannot be read to the head then (a hole, an envelope that
    does not decode) fails the open, except read-only (herald inspect,
    which is there to report such damage): that open goes on, says so,
    and its digest means nothing.

    Install writes a peer's envelopes verbatim through the same pipeline
    as append (herald_store_append.c), so that ids, streams, topics, the
    digest and the caches come out exactly as if the events had been
    applied here: only the checks differ.  Every envelope is checked
    before anything is staged, and a call that fails a check writes
    nothing.
    =========================================================================
*/

#include <assert.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include "herald_store_priv.h"
#include "herald_hash.h"

//  ---------------------------------------------------------------------
//  The digest

//  Fixed part, then topic and type.  All integers big-endian:
//
//    previous u64 | id (16) | seq u64 | ver u64 | ts u64 | content u64 |
//    flags u8 (1: type present, 2: schema present, 4: meta present, so
//    "absent" and "empty" differ as they do in the envelope) | schema u64 (0 when
//    absent) | meta count u32 | topic length u8 | topic | type length u8 |
//    type (when present)
//
//  hashed with XXH64 seed 0; then for each meta entry in order, key then
//  value, each hashed with the hash so far as the seed (XXH64 mixes each
//  one's length in, so entries cannot run into each other).  content is
//  herald_hash_content: XXH64 of data seeded with XXH64 of topic.
#define S_DIGEST_FIXED  (8 + HERALD_ID_BYTES + 8 + 8 + 8 + 8 + 1 + 8 + 4)

static uint8_t *
s_put_text (uint8_t *at, const char *text, size_t len)
{
    *at++ = (uint8_t) len;
    memcpy (at, text, len);
    return at + len;
}

uint64_t
herald_store_digest_next (uint64_t previous, const herald_event_t *event, uint64_t content)
{
    uint8_t buffer [S_DIGEST_FIXED + 2 + HERALD_TOPIC_MAX + HERALD_TYPE_MAX];
    uint8_t *at = buffer;
    s_put_u64 (at, previous);
    memcpy (at + 8, event->id, HERALD_ID_BYTES);
    at += 8 + HERALD_ID_BYTES;
    s_put_u64 (at, event->seq);
    s_put_u64 (at + 8, event->ver);
    s_put_u64 (at + 16, event->ts);
    s_put_u64 (at + 24, content);
    at += 32;
    *at++ = (uint8_t) ((event->type? 1: 0) | (event->has_schema? 2: 0) | (event->meta? 4: 0));
    s_put_u64 (at, event->has_schema? event->schema: 0);
    s_put_u32 (at + 8, (uint32_t) event->meta_count);
    at += 12;
    //  A stored event's topic and type are at most 255 bytes (validated on
    //  the way in); anything longer is hashed on its own rather than cut.
    bool fits = event->topic_len <= HERALD_TOPIC_MAX
             && (!event->type || event->type_len <= HERALD_TYPE_MAX);
    if (fits) {
        at = s_put_text (at, event->topic, event->topic_len);
        if (event->type)
            at = s_put_text (at, event->type, event->type_len);
    }
    uint64_t hash = herald_hash64 (buffer, (size_t) (at - buffer), 0);
    if (!fits) {
        hash = herald_hash64 (event->topic, event->topic_len, hash);
        if (event->type)
            hash = herald_hash64 (event->type, event->type_len, hash);
    }
    for (size_t i = 0; i < event->meta_count; i++) {
        hash = herald_hash64 (event->meta [i].key, event->meta [i].key_len, hash);
        hash = herald_hash64 (event->meta [i].value, event->meta [i].value_len, hash);
    }
    return hash;
}

uint64_t
herald_store_digest (herald_store_t *self)
{
    assert (self);
    return atomic_load (&self->digest);
}

uint64_t
herald_store_applied_index (herald_store_t *self)
{
    assert (self);
    return atomic_load (&self->applied);
}

//  ---------------------------------------------------------------------
//  Recovery on open

//  d(head), computed from the log: every event decoded, in seq order.
static herald_err
s_compute_digest (herald_store_t *self, uint64_t head, uint64_t *digest, herald_error_t *err)
{
    *digest = 0;
    //  d(head) chains every event from seq 1: trimmed ones cannot be read
    //  (a trimmed store was written with its digest stored: only a repair
    //  since could bring it here)
    if (atomic_load (&self->trims_max_until))
        return herald_error_set (err, HERALD_ERR_CORRUPT, "",
                                 "computing the log digest: the log is trimmed (up to seq "
                                 "%llu), its digest cannot be computed from it",
                                 (unsigned long long) atomic_load (&self->trims_max_until));
    herald_scan_spec_t spec = { .from = 1, .has_to = true, .to = head };
    herald_scan_t *scan = herald_store_scan (self, &spec, err);
    if (!scan)
        return err->code;
    msgpack_zone zone;
    msgpack_zone_init (&zone, 4096);
    herald_err rc = HERALD_OK;
    uint64_t expected = atomic_load (&self->first);
    const uint8_t *envelope;
    size_t len;
    uint64_t seq;
    int more;
    while (rc == HERALD_OK && (more = herald_scan_next (scan, &envelope, &len, &seq)) == 1) {
        herald_event_t event;
        herald_error_t decode_err;
        msgpack_zone_clear (&zone);
        if (seq != expected)
            rc = herald_error_set (err, HERALD_ERR_CORRUPT, "",
                                   "computing the log digest: seq %llu where %llu was due",
                                   (unsigned long long) seq, (unsigned long long) expected);
        else
        if (herald_event_decode (&event, envelope, len, &zone, &decode_err) != HERALD_OK)
            rc = herald_error_set (err, HERALD_ERR_CORRUPT, "",
                                   "computing the log digest: event %llu cannot be decoded: %s",
                                   (unsigned long long) seq, decode_err.message);
        else
            *digest = herald_store_digest_next (*digest, &event, herald_hash_content (&event));
        expected++;
    }
    if (rc == HERALD_OK && more < 0) {
        const herald_error_t *scan_err = herald_scan_error (scan);
        rc = herald_error_set (err, scan_err->code, "", "computing the log digest: %s",
                               scan_err->message);
    }
    if (rc == HERALD_OK && expected != head + 1)
        rc = herald_error_set (err, HERALD_ERR_CORRUPT, "",
                               "computing the log digest: the log ends at %llu, not at head %llu",
                               (unsigned long long) expected - 1, (unsigned long long) head);
    msgpack_zone_destroy (&zone);
    herald_scan_destroy (&scan);
    return rc;
}

//  Read a u64-valued key of CF "default" (found false when absent).
static herald_err
s_read_key (herald_store_t *self, const char *key, uint8_t *value, size_t size, bool *found,
            herald_error_t *err)
{
    *found = false;
    char *rocks_err = NULL;
    size_t len = 0;
    char *bytes = rocksdb_get_cf (self->db, self->read_options, self->cf [CF_DEFAULT],
                                  key, strlen (key), &len, &rocks_err);
    if (rocks_err) {
        herald_store_rocks_error (rocks_err, err, "cannot read %s", key);
        free (rocks_err);
        return HERALD_ERR_IO;
    }
    if (!bytes)
        return HERALD_OK;
    bool ok = len == size;
    if (ok)
        memcpy (value, bytes, size);
    free (bytes);
    if (!ok)
        return herald_error_set (err, HERALD_ERR_CORRUPT, "",
                                 "%s: %s has %zu bytes, not %zu", self->path, key, len, size);
    *found = true;
    return HERALD_OK;
}

herald_err
herald_store_recover_cluster (herald_store_t *self, herald_error_t *err)
{
    uint8_t value [16];
    bool found;
    herald_err rc = s_read_key (self, HERALD_STORE_APPLIED_KEY, value, 8, &found, err);
    if (rc != HERALD_OK)
        return rc;
    atomic_store (&self->applied, found? s_get_u64 (value): 0);

    rc = s_read_key (self, HERALD_STORE_DIGEST_KEY, value, 16, &found, err);
    if (rc != HERALD_OK)
        return rc;
    uint64_t head = atomic_load (&self->head);
    if (found && s_get_u64 (value) == head) {
        atomic_store (&self->digest, s_get_u64 (value + 8));
        return HERALD_OK;
    }
    if (!found && head == 0) {
        atomic_store (&self->digest, 0);
        return HERALD_OK;
    }
    //  A store from before the digest (or one whose key names another
    //  head): the log is the truth, so compute it from there, once.
    struct timespec start, end;
    clock_gettime (CLOCK_MONOTONIC, &start);
    uint64_t digest;
    rc = s_compute_digest (self, head, &digest, err);
    if (rc != HERALD_OK && self->read_only) {
        //  herald inspect must still open it, to say what is wrong with
        //  the log; it appends nothing, so the digest is never used
        fprintf (stderr, "herald: store %s: no log digest stored for head %llu, and it "
                 "cannot be computed: %s\n", self->path, (unsigned long long) head,
                 err->message);
        return HERALD_OK;
    }
    if (rc != HERALD_OK)
        return rc;
    clock_gettime (CLOCK_MONOTONIC, &end);
    double seconds = (double) (end.tv_sec - start.tv_sec)
                   + (double) (end.tv_nsec - start.tv_nsec) / 1e9;
    atomic_store (&self->digest, digest);
    bool stored = false;
    if (!self->read_only) {
        uint8_t pair [16];
        s_put_u64 (pair, head);
        s_put_u64 (pair + 8, digest);
        char *rocks_err = NULL;
        rocksdb_put_cf (self->db, self->write_options, self->cf [CF_DEFAULT],
                        HERALD_STORE_DIGEST_KEY, strlen (HERALD_STORE_DIGEST_KEY),
                        (const char *) pair, sizeof (pair), &rocks_err);
        if (rocks_err) {
            herald_store_rocks_error (rocks_err, err, "cannot store the log digest");
            free (rocks_err);
            return HERALD_ERR_IO;
        }
        stored = true;
    }
    if (found)
        fprintf (stderr, "herald: store %s: the stored log digest is for head %llu, "
                 "the log's head is %llu: computed it again over %llu events in %.2f s%s\n",
                 self->path, (unsigned long long) s_get_u64 (value), (unsigned long long) head,
                 (unsigned long long) herald_store_event_count (self), seconds,
                 stored? " and stored it": "");
    else
        fprintf (stderr, "herald: store %s: no log digest stored (a store from before it): "
                 "computed it over %llu events in %.2f s%s\n",
                 self->path, (unsigned long long) herald_store_event_count (self), seconds,
                 stored? " and stored it": "");
    return HERALD_OK;
}

//  ---------------------------------------------------------------------
//  Install

//  err = HERALD_ERR_INTERNAL naming envelope index of the call; returns it.
static herald_err
s_refuse (herald_error_t *err, size_t index, uint64_t seq, const char *format, ...)
    __attribute__ ((format (printf, 4, 5)));

static herald_err
s_refuse (herald_error_t *err, size_t index, uint64_t seq, const char *format, ...)
{
    char reason [1024];
    va_list args;
    va_start (args, format);
    vsnprintf (reason, sizeof (reason), format, args);
    va_end (args);
    if (seq)
        return herald_error_set (err, HERALD_ERR_INTERNAL, "",
                                 "install refused, nothing written: envelope %zu (seq %llu): %s",
                                 index, (unsigned long long) seq, reason);
    return herald_error_set (err, HERALD_ERR_INTERNAL, "",
                             "install refused, nothing written: envelope %zu: %s", index, reason);
}

herald_err
herald_store_install (herald_store_t *self, const uint8_t *const *envelopes,
                      const size_t *lens, size_t count, uint64_t raft_index,
                      herald_error_t *err)
{
    assert (self);
    assert (envelopes || count == 0);
    uint64_t applied = atomic_load (&self->applied);
    if (raft_index && raft_index <= applied)
        return herald_error_set (err, HERALD_ERR_INTERNAL, "",
            "install refused, nothing written: raft index %llu is not after the last one "
            "applied (%llu)", (unsigned long long) raft_index, (unsigned long long) applied);
    size_t bytes = 0;
    for (size_t i = 0; i < count; i++)
        bytes += lens [i];
    //  The call's envelopes are kept back to back, their ends in u32s
    if (bytes > UINT32_MAX)
        return herald_error_set (err, HERALD_ERR_INTERNAL, "",
            "install refused, nothing written: %zu bytes of envelopes in one call "
            "(at most 4 GiB)", bytes);

    //  Decode every envelope first; the events borrow the caller's bytes.
    herald_event_t *events = count? calloc (count, sizeof (herald_event_t)): NULL;
    herald_append_result_t *results = count? calloc (count, sizeof (*results)): NULL;
    msgpack_sbuffer canonical;
    msgpack_sbuffer_init (&canonical);
    msgpack_zone zone;
    msgpack_zone_init (&zone, 4096);
    herald_err rc = HERALD_OK;
    if (count && (!events || !results))
        rc = herald_error_set (err, HERALD_ERR_NOMEM, "", "out of memory");
    uint64_t head = atomic_load (&self->head);
    uint64_t last_ts = atomic_load (&self->last_ts);
    for (size_t i = 0; rc == HERALD_OK && i < count; i++) {
        herald_error_t decode_err;
        uint64_t due = head + 1 + i;
        if (!envelopes [i] || lens [i] == 0) {
            rc = s_refuse (err, i, 0, "empty");
            break;
        }
        if (herald_event_decode (&events [i], envelopes [i], lens [i], &zone, &decode_err)
            != HERALD_OK) {
            rc = s_refuse (err, i, 0, "not a well-formed envelope: %s", decode_err.message);
            break;
        }
        //  Well formed means exactly what this store's apply would have
        //  written for the event (same keys, order and encodings): stored
        //  verbatim, it is then indistinguishable from an applied one
        canonical.size = 0;
        if (herald_event_encode (&events [i], &canonical) != 0) {
            rc = herald_error_set (err, HERALD_ERR_NOMEM, "", "out of memory");
            break;
        }
        if (canonical.size != lens [i] || memcmp (canonical.data, envelopes [i], lens [i])) {
            rc = s_refuse (err, i, events [i].seq,
                           "not a well-formed envelope: its bytes are not the ones Herald "
                           "writes for its fields (%zu bytes, %zu expected)",
                           lens [i], canonical.size);
            break;
        }
        if (events [i].seq != due) {
            rc = s_refuse (err, i, events [i].seq, "seq is not head + 1 (%llu)",
                           (unsigned long long) due);
            break;
        }
        uint64_t previous_ts = i? events [i - 1].ts: last_ts;
        if (events [i].ts < previous_ts) {
            rc = s_refuse (err, i, events [i].seq, "ts %llu is before the last ts %llu",
                           (unsigned long long) events [i].ts,
                           (unsigned long long) previous_ts);
            break;
        }
    }
    msgpack_sbuffer_destroy (&canonical);

    //  Ids and vers, against the store and the call's earlier envelopes
    herald_batch_t batch = { .events = events, .count = count, .results = results };
    if (rc == HERALD_OK && herald_store_stage_begin (self, &batch, 1, count, err) != HERALD_OK)
        rc = err->code;
    for (size_t i = 0; rc == HERALD_OK && i < count; i++) {
        herald_event_t *event = &events [i];
        self->id_hash [i] = herald_hash_content (event);
        herald_append_result_t found;
        if (herald_store_stage_find_id (self, event, i, &found)) {
            char hex [2 * HERALD_ID_BYTES + 1];
            for (size_t b = 0; b < HERALD_ID_BYTES; b++)
                snprintf (hex + 2 * b, 3, "%02x", event->id [b]);
            rc = s_refuse (err, i, event->seq, "id %s is stored already (seq %llu)", hex,
                           (unsigned long long) found.seq);
            break;
        }
        uint64_t ver, created;
        if (herald_store_stage_topic_ver (self, event, &ver, &created, err) != 0) {
            rc = err->code;
            break;
        }
        if (event->ver != ver + 1) {
            rc = s_refuse (err, i, event->seq, "ver %llu of topic %.*s is not its ver + 1 (%llu)",
                           (unsigned long long) event->ver, (int) event->topic_len,
                           event->topic, (unsigned long long) ver + 1);
            break;
        }
        herald_store_stage_decided (self, event, i, event->seq, event->ver,
                                    created || ver == 0);
    }
    //  Every check passed: stage the envelopes as they are, and write
    uint64_t new_topics = 0;
    for (size_t i = 0; rc == HERALD_OK && i < count; i++)
        if (herald_store_stage_event (self, &events [i], events [i].seq, events [i].ver,
                                      events [i].ts, i, envelopes [i], lens [i],
                                      &new_topics) != 0)
            rc = herald_error_set (err, HERALD_ERR_NOMEM, "", "out of memory");
    if (rc == HERALD_OK) {
        uint64_t ts = count? events [count - 1].ts: last_ts;
        rc = herald_store_stage_write (self, head, head + count, ts, new_topics, raft_index,
                                       err);
    }
    msgpack_zone_destroy (&zone);
    free (events);
    free (results);
    return rc;
}
