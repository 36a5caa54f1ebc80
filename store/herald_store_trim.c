/*  =========================================================================
    herald_store_trim - trim points: the op, reading them, the ids digest

    DESIGN

    A trim point is a few bytes in CF "default" ("trim/" prefix -> until |
    ts | reason, herald_store_priv.h), written by the op {op: "trim"} in
    the call's WriteBatch, so a crash never separates it from the raft
    index it was applied at.  The op decides from the store as the call
    sees it: the first trim op of a call copies the trim points into the
    call's overlay (trims_call), later ops of the call change the copy,
    and the copy replaces the store's only once RocksDB has written the
    call (herald_store_trims_publish); a failed call drops it.  Nothing
    here reads a clock: the ts kept is the apply's ts.

    Readers on any thread (scans, the broker's STATUS) take the points
    under trims_lock: at most HERALD_TRIMS_MAX of them, walked in a few
    microseconds.  Scans avoid even that on their hot path: trims_gen
    rises with every change, and trims_max_until bounds every until, so
    an event above it needs no look (herald_scan.c).

    The op only records the point: reading stops at once (the scans
    filter), and herald_store_reclaim (herald_store_reclaim.c) frees the
    disk afterwards.
    =========================================================================
*/

#include <pthread.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include "herald_store_priv.h"

#define TRIM_KEY_PREFIX     "trim/"
#define TRIM_KEY_PREFIX_LEN 5
#define TRIM_VALUE_MIN      24          //  until | ts | until_ts; a reason may follow
#define DIGEST_CHUNK        4096        //  ids hashed per update

//  ---------------------------------------------------------------------
//  Trim point arrays (sorted by prefix bytes, shorter first on a tie)

static int
s_prefix_cmp (const char *a, size_t a_len, const char *b, size_t b_len)
{
    int order = memcmp (a, b, a_len < b_len? a_len: b_len);
    if (order)
        return order;
    return a_len < b_len? -1: a_len > b_len;
}

//  The index of prefix in trims, or the index it would go at (*found false)
static size_t
s_find (const herald_trim_t *trims, size_t count, const char *prefix, size_t len,
        bool *found)
{
    size_t low = 0, high = count;
    while (low < high) {
        size_t middle = low + (high - low) / 2;
        int order = s_prefix_cmp (trims [middle].prefix, trims [middle].prefix_len,
                                  prefix, len);
        if (order == 0) {
            *found = true;
            return middle;
        }
        if (order < 0)
            low = middle + 1;
        else
            high = middle;
    }
    *found = false;
    return low;
}

//  One of the two begins with the other
static bool
s_overlaps (const char *a, size_t a_len, const char *b, size_t b_len)
{
    size_t len = a_len < b_len? a_len: b_len;
    return memcmp (a, b, len) == 0;
}

//  The trim point with the greatest until among those overlapping one of
//  prefixes (count 0: every one); NULL when none does.
static const herald_trim_t *
s_first_point (const herald_trim_t *trims, size_t trim_count, const herald_str_t *prefixes,
               size_t count)
{
    const herald_trim_t *best = NULL;
    for (size_t i = 0; i < trim_count; i++) {
        bool overlaps = count == 0;
        for (size_t p = 0; p < count && !overlaps; p++)
            overlaps = s_overlaps (trims [i].prefix, trims [i].prefix_len,
                                   prefixes [p].ptr, prefixes [p].len);
        if (overlaps && (!best || trims [i].until > best->until))
            best = &trims [i];
    }
    return best;
}

static uint64_t
s_topic_trimmed (const herald_trim_t *trims, size_t count, const char *topic, size_t len)
{
    uint64_t until = 0;
    for (size_t i = 0; i < count; i++)
        if (trims [i].prefix_len <= len
        &&  memcmp (trims [i].prefix, topic, trims [i].prefix_len) == 0
        &&  trims [i].until > until)
            until = trims [i].until;
    return until;
}

//  Set the in-memory summary of trims (under the lock, or before any
//  reader exists)
static void
s_summarise (herald_store_t *self)
{
    uint64_t max_until = 0, log_until = 0;
    for (size_t i = 0; i < self->trim_count; i++) {
        if (self->trims [i].until > max_until)
            max_until = self->trims [i].until;
        if (self->trims [i].prefix_len == 0)
            log_until = self->trims [i].until;
    }
    atomic_store (&self->trims_max_until, max_until);
    atomic_store (&self->log_first, log_until + 1);
    atomic_fetch_add (&self->trims_gen, 1);
}

bool
herald_trim_prefix_valid (const char *prefix, size_t len)
{
    if (len > HERALD_TOPIC_MAX || (len && prefix [0] == '$'))
        return false;
    return memchr (prefix, 0, len) == NULL;
}

static size_t
s_trim_key (char *key, const char *prefix, size_t len)
{
    memcpy (key, TRIM_KEY_PREFIX, TRIM_KEY_PREFIX_LEN);
    memcpy (key + TRIM_KEY_PREFIX_LEN, prefix, len);
    return TRIM_KEY_PREFIX_LEN + len;
}

static void
s_put_point (herald_store_t *self, rocksdb_writebatch_t *batch, const herald_trim_t *trim,
             const char *reason, size_t reason_len)
{
    char key [TRIM_KEY_PREFIX_LEN + HERALD_TOPIC_MAX];
    size_t key_len = s_trim_key (key, trim->prefix, trim->prefix_len);
    uint8_t value [TRIM_VALUE_MIN + 256];
    if (reason_len > 256)
        reason_len = 256;
    s_put_u64 (value, trim->until);
    s_put_u64 (value + 8, trim->ts);
    s_put_u64 (value + 16, trim->until_ts);
    if (reason_len)
        memcpy (value + TRIM_VALUE_MIN, reason, reason_len);
    rocksdb_writebatch_put_cf (batch, self->cf [CF_DEFAULT], key, key_len,
                               (const char *) value, TRIM_VALUE_MIN + reason_len);
}

//  ---------------------------------------------------------------------
//  Lifecycle, loading

int
herald_store_trims_init (herald_store_t *self)
{
    if (pthread_mutex_init (&self->trims_lock, NULL) != 0)
        return -1;
    if (pthread_mutex_init (&self->reclaim_lock, NULL) != 0) {
        pthread_mutex_destroy (&self->trims_lock);
        return -1;
    }
    self->trims_lock_ready = true;
    atomic_store (&self->log_first, 1);
    return 0;
}

void
herald_store_trims_free (herald_store_t *self)
{
    if (self->trims_lock_ready) {
        pthread_mutex_destroy (&self->trims_lock);
        pthread_mutex_destroy (&self->reclaim_lock);
    }
    self->trims_lock_ready = false;
    free (self->trims);
    self->trims = NULL;
    self->trim_count = 0;
    herald_store_trims_call_reset (self);
}

herald_err
herald_store_trims_load (herald_store_t *self, herald_error_t *err)
{
    rocksdb_iterator_t *it = rocksdb_create_iterator_cf (self->db, self->read_options,
                                                         self->cf [CF_DEFAULT]);
    herald_trim_t *trims = NULL;
    size_t count = 0, capacity = 0;
    herald_err rc = HERALD_OK;
    rocksdb_iter_seek (it, TRIM_KEY_PREFIX, TRIM_KEY_PREFIX_LEN);
    for (; rocksdb_iter_valid (it); rocksdb_iter_next (it)) {
        size_t key_len, len;
        const char *key = rocksdb_iter_key (it, &key_len);
        if (key_len < TRIM_KEY_PREFIX_LEN
        ||  memcmp (key, TRIM_KEY_PREFIX, TRIM_KEY_PREFIX_LEN) != 0)
            break;
        const uint8_t *value = (const uint8_t *) rocksdb_iter_value (it, &len);
        const char *prefix = key + TRIM_KEY_PREFIX_LEN;
        size_t prefix_len = key_len - TRIM_KEY_PREFIX_LEN;
        if (len < TRIM_VALUE_MIN || !herald_trim_prefix_valid (prefix, prefix_len)
        ||  count == HERALD_TRIMS_MAX) {
            rc = herald_error_set (err, HERALD_ERR_CORRUPT, "",
                                   "%s: the trim point of \"%.*s\" has the wrong shape",
                                   self->path, (int) prefix_len, prefix);
            break;
        }
        if (count == capacity) {
            capacity = capacity? capacity * 2: 8;
            herald_trim_t *grown = realloc (trims, capacity * sizeof (herald_trim_t));
            if (!grown) {
                rc = herald_error_set (err, HERALD_ERR_NOMEM, "", "out of memory");
                break;
            }
            trims = grown;
        }
        herald_trim_t *trim = &trims [count++];
        memset (trim, 0, sizeof (*trim));
        memcpy (trim->prefix, prefix, prefix_len);
        trim->prefix_len = prefix_len;
        trim->until = s_get_u64 (value);
        trim->ts = s_get_u64 (value + 8);
        trim->until_ts = s_get_u64 (value + 16);
    }
    if (rc == HERALD_OK)
        rc = herald_store_iter_error (it, err, "cannot read the trim points");
    rocksdb_iter_destroy (it);
    if (rc != HERALD_OK) {
        free (trims);
        return rc;
    }
    //  Keys sort as "trim/" prefix, which is s_prefix_cmp's order
    free (self->trims);
    self->trims = trims;
    self->trim_count = count;
    s_summarise (self);
    return HERALD_OK;
}

//  ---------------------------------------------------------------------
//  Reading the trim points

size_t
herald_store_trims (herald_store_t *self, herald_trim_t *trims, size_t max)
{
    assert (self);
    pthread_mutex_lock (&self->trims_lock);
    size_t count = self->trim_count;
    if (trims && max && count)         //  self->trims is NULL while there are none
        memcpy (trims, self->trims, (count < max? count: max) * sizeof (herald_trim_t));
    pthread_mutex_unlock (&self->trims_lock);
    return count;
}

uint64_t
herald_store_first (herald_store_t *self, const herald_str_t *prefixes, size_t count)
{
    assert (self);
    if (atomic_load (&self->trims_max_until) == 0)
        return 1;
    pthread_mutex_lock (&self->trims_lock);
    const herald_trim_t *point = s_first_point (self->trims, self->trim_count, prefixes,
                                                count);
    uint64_t first = point? point->until + 1: 1;
    pthread_mutex_unlock (&self->trims_lock);
    return first;
}

uint64_t
herald_store_first_point (herald_store_t *self, const herald_str_t *prefixes, size_t count,
                          herald_trim_t *point)
{
    memset (point, 0, sizeof (*point));
    pthread_mutex_lock (&self->trims_lock);
    const herald_trim_t *found = s_first_point (self->trims, self->trim_count, prefixes,
                                                count);
    if (found)
        *point = *found;
    pthread_mutex_unlock (&self->trims_lock);
    return point->until + 1;
}

uint64_t
herald_store_log_first (herald_store_t *self)
{
    assert (self);
    return atomic_load (&self->log_first);
}

uint64_t
herald_store_topic_trimmed (herald_store_t *self, const char *topic, size_t len)
{
    assert (self);
    if (atomic_load (&self->trims_max_until) == 0)
        return 0;
    pthread_mutex_lock (&self->trims_lock);
    uint64_t until = s_topic_trimmed (self->trims, self->trim_count, topic, len);
    pthread_mutex_unlock (&self->trims_lock);
    return until;
}

herald_err
herald_store_topic_first_ver (herald_store_t *self, const char *topic, size_t len,
                              uint64_t *ver, herald_error_t *err)
{
    assert (self);
    *ver = 0;
    herald_error_t local = { 0 };
    uint64_t current;
    if (herald_store_lookup_ver (self, topic, len, &current, &local) != 0) {
        if (err)
            *err = local;
        return local.code;
    }
    if (current == 0)
        return HERALD_OK;
    uint64_t trimmed = herald_store_topic_trimmed (self, topic, len);
    if (trimmed == 0) {
        *ver = 1;
        return HERALD_OK;
    }
    //  Reclaim deletes a topic's oldest streams runs (all trimmed), so the
    //  search starts at its first run still there.
    rocksdb_iterator_t *it = rocksdb_create_iterator_cf (self->db, self->read_options,
                                                         self->cf [CF_STREAMS]);
    uint8_t key [HERALD_STREAM_KEY_MAX];
    size_t key_len = s_stream_key (key, topic, len, 0);
    rocksdb_iter_seek (it, (const char *) key, key_len);
    uint64_t first_ver;
    const uint8_t *seqs;
    size_t count;
    herald_err rc = herald_store_run_at (it, topic, len, &first_ver, &seqs, &count, &local);
    uint64_t low = first_ver, high = current + 1;
    while (rc == HERALD_OK && low < high) {
        uint64_t middle = low + (high - low) / 2;
        rc = herald_store_find_run (it, topic, len, middle, &first_ver, &seqs, &count,
                                    &local);
        if (rc == HERALD_OK) {
            if (s_get_u64 (seqs + 8 * (middle - first_ver)) > trimmed)
                high = middle;
            else
                low = middle + 1;
        }
    }
    rocksdb_iter_destroy (it);
    if (rc == HERALD_ERR_NOT_FOUND)
        herald_error_set (&local, HERALD_ERR_CORRUPT, "", "topic %.*s: its stream has a gap",
                          (int) len, topic);
    if (rc != HERALD_OK) {
        if (err)
            *err = local;
        return local.code;
    }
    *ver = low;
    return HERALD_OK;
}

//  ---------------------------------------------------------------------
//  The ids of the log

bool
herald_envelope_id (const uint8_t *bytes, size_t len, uint8_t id [HERALD_ID_BYTES])
{
    if (herald_envelope_is_hole (bytes, len)) {
        memcpy (id, bytes + 1, HERALD_ID_BYTES);
        return true;
    }
    //  herald_event_encode's layout: a map header, then "id" first
    size_t offset = 0;
    if (len >= 1 && bytes [0] >= 0x80 && bytes [0] <= 0x8f)
        offset = 1;
    else
    if (len >= 3 && bytes [0] == 0xde)
        offset = 3;
    else
    if (len >= 5 && bytes [0] == 0xdf)
        offset = 5;
    if (offset && len >= offset + 5 + HERALD_ID_BYTES
    &&  memcmp (bytes + offset, "\xa2" "id" "\xc4\x10", 5) == 0) {
        memcpy (id, bytes + offset + 5, HERALD_ID_BYTES);
        return true;
    }
    //  Bytes another writer produced: a full decode
    msgpack_zone zone;
    msgpack_zone_init (&zone, 1024);
    herald_event_t event;
    herald_error_t error;
    bool ok = herald_event_decode (&event, bytes, len, &zone, &error) == HERALD_OK;
    if (ok)
        memcpy (id, event.id, HERALD_ID_BYTES);
    msgpack_zone_destroy (&zone);
    return ok;
}

//  The digest of from..to, no check of the range against the trim points
static herald_err
s_ids_digest (herald_store_t *self, uint64_t from, uint64_t to, uint8_t digest [32],
              volatile bool *cancel, herald_error_t *err)
{
    crypto_generichash_state state;
    crypto_generichash_init (&state, NULL, 0, 32);
    uint8_t *chunk = malloc (DIGEST_CHUNK * HERALD_ID_BYTES);
    if (!chunk)
        return herald_error_set (err, HERALD_ERR_NOMEM, "", "out of memory");
    size_t held = 0;
    rocksdb_iterator_t *it = rocksdb_create_iterator_cf (
        self->db, to - from >= 65536? self->scan_options: self->read_options,
        self->cf [CF_EVENTS]);
    herald_run_t run;
    herald_err rc = herald_store_find_event (it, from, &run, err);
    uint64_t next = from;
    while (rc == HERALD_OK) {
        if (run.first_seq > next) {
            rc = HERALD_ERR_NOT_FOUND;
            break;
        }
        uint32_t index = (uint32_t) (next - run.first_seq);
        for (; index < run.count && next <= to; index++, next++) {
            const uint8_t *bytes;
            size_t len;
            herald_run_event (&run, index, &bytes, &len);
            if (!herald_envelope_id (bytes, len, chunk + held * HERALD_ID_BYTES)) {
                rc = herald_error_set (err, HERALD_ERR_CORRUPT, "",
                                       "event %llu cannot be decoded",
                                       (unsigned long long) next);
                break;
            }
            if (++held == DIGEST_CHUNK) {
                crypto_generichash_update (&state, chunk, held * HERALD_ID_BYTES);
                held = 0;
            }
        }
        if (rc != HERALD_OK || next > to)
            break;
        if (cancel && *cancel) {
            rc = herald_error_set (err, HERALD_ERR_INTERNAL, "", "cancelled");
            break;
        }
        rocksdb_iter_next (it);
        if (!rocksdb_iter_valid (it)) {
            rc = herald_store_iter_error (it, err, "cannot read the log at seq %llu",
                                          (unsigned long long) next);
            if (rc == HERALD_OK)
                rc = HERALD_ERR_NOT_FOUND;
            break;
        }
        size_t key_len, len;
        const char *key = rocksdb_iter_key (it, &key_len);
        const char *value = rocksdb_iter_value (it, &len);
        if (!herald_run_parse (key, key_len, value, len, &run))
            rc = herald_error_set (err, HERALD_ERR_CORRUPT, "",
                                   "the run of events after seq %llu has the wrong shape",
                                   (unsigned long long) next - 1);
    }
    rocksdb_iter_destroy (it);
    if (rc == HERALD_ERR_NOT_FOUND)
        rc = herald_error_set (err, HERALD_ERR_CORRUPT, "",
                               "event %llu is missing from the log", (unsigned long long) next);
    if (rc == HERALD_OK) {
        crypto_generichash_update (&state, chunk, held * HERALD_ID_BYTES);
        crypto_generichash_final (&state, digest, 32);
    }
    free (chunk);
    return rc;
}

herald_err
herald_store_ids_digest (herald_store_t *self, uint64_t from, uint64_t to,
                         uint8_t digest [32], volatile bool *cancel, herald_error_t *err)
{
    assert (self);
    herald_error_t local = { 0 };
    if (!err)
        err = &local;
    uint64_t head = atomic_load (&self->head);
    uint64_t first = atomic_load (&self->log_first);
    if (from == 0 || from > to)
        return herald_error_set (err, HERALD_ERR_BAD_REQUEST, "ids_from",
                                 "ids_from (%llu) must be at least 1 and at most until (%llu)",
                                 (unsigned long long) from, (unsigned long long) to);
    if (to > head)
        return herald_error_set (err, HERALD_ERR_BAD_REQUEST, "until",
                                 "until (%llu) is above the head (%llu)",
                                 (unsigned long long) to, (unsigned long long) head);
    if (from < first)
        return herald_error_set (err, HERALD_ERR_TRIMMED, "ids_from",
                                 "seq %llu was trimmed from the live log; its first seq "
                                 "is %llu", (unsigned long long) from,
                                 (unsigned long long) first);
    herald_err rc = s_ids_digest (self, from, to, digest, cancel, err);
    //  Runs below the first seq may go while we read (reclaim): that is
    //  a trim, not a hole in the log
    if (rc == HERALD_ERR_CORRUPT && from < atomic_load (&self->log_first))
        rc = herald_error_set (err, HERALD_ERR_TRIMMED, "ids_from",
                               "seq %llu was trimmed from the live log; its first seq "
                               "is %llu", (unsigned long long) from,
                               (unsigned long long) atomic_load (&self->log_first));
    return rc;
}

//  ---------------------------------------------------------------------
//  The op

void
herald_store_trims_call_reset (herald_store_t *self)
{
    free (self->trims_call);
    self->trims_call = NULL;
    self->trims_call_count = 0;
    self->trims_staged = false;
}

void
herald_store_trims_publish (herald_store_t *self)
{
    if (!self->trims_staged)
        return;
    pthread_mutex_lock (&self->trims_lock);
    herald_trim_t *old = self->trims;
    self->trims = self->trims_call;
    self->trim_count = self->trims_call_count;
    s_summarise (self);
    pthread_mutex_unlock (&self->trims_lock);
    free (old);
    self->trims_call = NULL;
    self->trims_call_count = 0;
    self->trims_staged = false;
}

static int
s_refuse (herald_batch_t *batch, const char *format, ...)
    __attribute__ ((format (printf, 2, 3)));

//  Refused: status bad_request, result {error: message}; -1 out of memory
static int
s_refuse (herald_batch_t *batch, const char *format, ...)
{
    char message [384];
    va_list args;
    va_start (args, format);
    vsnprintf (message, sizeof (message), format, args);
    va_end (args);
    msgpack_sbuffer buffer;
    msgpack_sbuffer_init (&buffer);
    msgpack_packer pk;
    msgpack_packer_init (&pk, &buffer, msgpack_sbuffer_write);
    msgpack_pack_map (&pk, 1);
    herald_group_pack_str (&pk, "error");
    herald_group_pack_str (&pk, message);
    batch->status = HERALD_ERR_BAD_REQUEST;
    if (!buffer.data)
        return -1;
    batch->op_result = (uint8_t *) buffer.data;
    batch->op_result_len = buffer.size;
    return 0;
}

//  The call's overlay: a copy of the trim points with room for one more
static int
s_overlay (herald_store_t *self)
{
    if (self->trims_call)
        return 0;
    pthread_mutex_lock (&self->trims_lock);
    size_t count = self->trim_count;
    herald_trim_t *copy = malloc ((count + 1) * sizeof (herald_trim_t));
    if (copy && count)
        memcpy (copy, self->trims, count * sizeof (herald_trim_t));
    pthread_mutex_unlock (&self->trims_lock);
    if (!copy)
        return -1;
    self->trims_call = copy;
    self->trims_call_count = count;
    return 0;
}

int
herald_store_trim_stage (herald_store_t *self, herald_batch_t *batch,
                         const msgpack_object *op, herald_error_t *err)
{
    batch->status = HERALD_OK;
    //  The prefix
    const char *prefix = "";
    size_t prefix_len = 0;
    const msgpack_object *field = herald_store_map_get (op, "prefix");
    if (field) {
        if (field->type != MSGPACK_OBJECT_STR
        ||  !herald_trim_prefix_valid (field->via.str.ptr, field->via.str.size))
            return s_refuse (batch, "prefix: a trim prefix is a str of 0-%d bytes, with no "
                             "NUL, not starting with '$'", HERALD_TOPIC_MAX);
        prefix = field->via.str.ptr;
        prefix_len = field->via.str.size;
    }
    uint64_t until;
    if (!herald_store_map_uint (op, "until", &until) || until == 0)
        return s_refuse (batch, "until must be a uint >= 1 (the last seq to trim)");
    uint64_t head = atomic_load (&self->head);
    if (until > head)
        return s_refuse (batch, "until: %llu is above the head (%llu)",
                         (unsigned long long) until, (unsigned long long) head);
    const msgpack_object *ids = herald_store_map_get (op, "ids");
    uint64_t ids_from = 0;
    bool has_from = herald_store_map_get (op, "ids_from") != NULL;
    if (has_from && !herald_store_map_uint (op, "ids_from", &ids_from))
        return s_refuse (batch, "ids_from must be a uint");
    if (has_from != (ids != NULL))
        return s_refuse (batch, "ids_from and ids: both (the archive's proof) or neither");
    if (ids && (ids->type != MSGPACK_OBJECT_BIN || ids->via.bin.size != 32))
        return s_refuse (batch, "ids must be 32 bytes (BLAKE2b-256 of the ids)");
    const msgpack_object *reason = herald_store_map_get (op, "reason");
    if (reason && reason->type != MSGPACK_OBJECT_STR)
        return s_refuse (batch, "reason must be a str");

    if (s_overlay (self) != 0) {
        herald_error_set (err, HERALD_ERR_NOMEM, "", "out of memory");
        return -1;
    }
    bool found;
    size_t index = s_find (self->trims_call, self->trims_call_count, prefix, prefix_len,
                           &found);
    if (found && self->trims_call [index].until >= until)
        return s_refuse (batch, "until: \"%.*s\" is already trimmed up to %llu",
                         (int) prefix_len, prefix,
                         (unsigned long long) self->trims_call [index].until);
    if (!found && self->trims_call_count >= HERALD_TRIMS_MAX)
        return s_refuse (batch, "prefix: the store already keeps %d trim prefixes",
                         HERALD_TRIMS_MAX);
    if (ids) {
        //  The log's first seq as the call sees it
        uint64_t log_first = 1;
        bool has_log;
        size_t log_index = s_find (self->trims_call, self->trims_call_count, "", 0, &has_log);
        if (has_log)
            log_first = self->trims_call [log_index].until + 1;
        if (ids_from != log_first)
            return s_refuse (batch, "ids_from: %llu is not the log's first seq (%llu)",
                             (unsigned long long) ids_from, (unsigned long long) log_first);
        if (ids_from > until)
            return s_refuse (batch, "until: %llu is below the log's first seq (%llu)",
                             (unsigned long long) until, (unsigned long long) ids_from);
        uint8_t digest [32];
        herald_error_t local = { 0 };
        herald_err rc = s_ids_digest (self, ids_from, until, digest, NULL, &local);
        if (rc != HERALD_OK) {
            //  The log cannot be read: the apply fails as a whole (a node
            //  must not decide differently because of its own disk)
            *err = local;
            return -1;
        }
        if (memcmp (digest, ids->via.bin.ptr, 32) != 0)
            return s_refuse (batch, "ids: the archive's ids of seqs %llu..%llu differ from "
                             "the log's: this archive is not of this log",
                             (unsigned long long) ids_from, (unsigned long long) until);
    }
    //  Applied to the overlay, put into the WriteBatch
    if (!found) {
        memmove (self->trims_call + index + 1, self->trims_call + index,
                 (self->trims_call_count - index) * sizeof (herald_trim_t));
        memset (&self->trims_call [index], 0, sizeof (herald_trim_t));
        memcpy (self->trims_call [index].prefix, prefix, prefix_len);
        self->trims_call [index].prefix_len = prefix_len;
        self->trims_call_count++;
        //  Room for the next new one
        herald_trim_t *grown = realloc (self->trims_call,
                                        (self->trims_call_count + 1) * sizeof (herald_trim_t));
        if (!grown) {
            herald_error_set (err, HERALD_ERR_NOMEM, "", "out of memory");
            return -1;
        }
        self->trims_call = grown;
    }
    //  The ts of the event at until: read from the log, or, when the
    //  whole-log point already covers until (its runs may be reclaimed on
    //  this node and not on another), that point's, so that every node
    //  decides the same
    uint64_t until_ts = 0;
    bool log_found;
    size_t log_index = s_find (self->trims_call, self->trims_call_count, "", 0, &log_found);
    if (log_found && self->trims_call [log_index].until >= until)
        until_ts = self->trims_call [log_index].until_ts;
    else {
        herald_error_t local = { 0 };
        if (herald_store_event_ts (self, until, &until_ts, &local) != HERALD_OK) {
            *err = local;
            return -1;              //  the log cannot be read: the apply fails
        }
    }
    herald_trim_t *trim = &self->trims_call [index];
    trim->until = until;
    trim->ts = self->call_ts;
    trim->until_ts = until_ts;
    s_put_point (self, self->batch, trim, reason? reason->via.str.ptr: NULL,
                 reason? reason->via.str.size: 0);
    self->trims_staged = true;

    herald_str_t asked = { prefix, prefix_len };
    const herald_trim_t *point = s_first_point (self->trims_call, self->trims_call_count,
                                                &asked, 1);
    msgpack_sbuffer buffer;
    msgpack_sbuffer_init (&buffer);
    msgpack_packer pk;
    msgpack_packer_init (&pk, &buffer, msgpack_sbuffer_write);
    msgpack_pack_map (&pk, 3);
    herald_group_pack_str (&pk, "prefix");
    msgpack_pack_str_with_body (&pk, prefix, prefix_len);
    herald_group_pack_str (&pk, "until");
    msgpack_pack_uint64 (&pk, until);
    herald_group_pack_str (&pk, "first");
    msgpack_pack_uint64 (&pk, point->until + 1);
    if (!buffer.data) {
        herald_error_set (err, HERALD_ERR_NOMEM, "", "out of memory");
        return -1;
    }
    batch->op_result = (uint8_t *) buffer.data;
    batch->op_result_len = buffer.size;
    return 0;
}

//  ---------------------------------------------------------------------
//  A node restored from a snapshot

herald_err
herald_store_trims_import (herald_store_t *self, const herald_trim_t *trims, size_t count,
                           herald_error_t *err)
{
    assert (self);
    assert (trims || count == 0);
    pthread_mutex_lock (&self->trims_lock);
    size_t have = self->trim_count;
    herald_trim_t *merged = malloc ((have + count + 1) * sizeof (herald_trim_t));
    if (merged && have)
        memcpy (merged, self->trims, have * sizeof (herald_trim_t));
    pthread_mutex_unlock (&self->trims_lock);
    if (!merged)
        return herald_error_set (err, HERALD_ERR_NOMEM, "", "out of memory");
    rocksdb_writebatch_t *batch = rocksdb_writebatch_create ();
    herald_err rc = HERALD_OK;
    size_t merged_count = have;
    bool changed = false;
    for (size_t i = 0; i < count && rc == HERALD_OK; i++) {
        const herald_trim_t *trim = &trims [i];
        if (trim->prefix_len > HERALD_TOPIC_MAX
        ||  !herald_trim_prefix_valid (trim->prefix, trim->prefix_len)
        ||  trim->until == 0) {
            rc = herald_error_set (err, HERALD_ERR_INVALID, "",
                                   "trim point %zu: not a valid prefix and until", i);
            break;
        }
        bool found;
        size_t index = s_find (merged, merged_count, trim->prefix, trim->prefix_len, &found);
        if (found && merged [index].until >= trim->until)
            continue;               //  never lowered
        if (!found) {
            if (merged_count == HERALD_TRIMS_MAX) {
                rc = herald_error_set (err, HERALD_ERR_INVALID, "",
                                       "more than %d trim prefixes", HERALD_TRIMS_MAX);
                break;
            }
            memmove (merged + index + 1, merged + index,
                     (merged_count - index) * sizeof (herald_trim_t));
            memset (&merged [index], 0, sizeof (herald_trim_t));
            memcpy (merged [index].prefix, trim->prefix, trim->prefix_len);
            merged [index].prefix_len = trim->prefix_len;
            merged_count++;
        }
        merged [index].until = trim->until;
        merged [index].ts = trim->ts;
        merged [index].until_ts = trim->until_ts;
        s_put_point (self, batch, &merged [index], NULL, 0);
        changed = true;
    }
    if (rc == HERALD_OK && changed) {
        rocksdb_writeoptions_t *sync = rocksdb_writeoptions_create ();
        rocksdb_writeoptions_set_sync (sync, 1);
        char *rocks_err = NULL;
        rocksdb_write (self->db, sync, batch, &rocks_err);
        rocksdb_writeoptions_destroy (sync);
        if (rocks_err) {
            rc = herald_store_rocks_error (rocks_err, err, "cannot write the trim points");
            free (rocks_err);
        }
    }
    rocksdb_writebatch_destroy (batch);
    if (rc != HERALD_OK || !changed) {
        free (merged);
        return rc;
    }
    pthread_mutex_lock (&self->trims_lock);
    herald_trim_t *old = self->trims;
    self->trims = merged;
    self->trim_count = merged_count;
    s_summarise (self);
    pthread_mutex_unlock (&self->trims_lock);
    free (old);
    return HERALD_OK;
}
