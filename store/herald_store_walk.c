/*  =========================================================================
    herald_store_walk - the log and the topics as stored, for offline checks

    herald inspect checks a store, trimmed or not, against what the
    protocol promises.  The scans cannot show it everything: they refuse
    trimmed starts and filter trimmed events.  These walks read the log as
    it lies on disk (trimmed events not reclaimed yet, the holes reclaim
    left) and every topic, including those whose every event is trimmed.
    =========================================================================
*/

#include <stdlib.h>
#include "herald_store_priv.h"

bool
herald_store_hole_parse (const uint8_t *envelope, size_t len, uint8_t id [HERALD_ID_BYTES],
                         uint64_t *ts)
{
    if (!herald_envelope_is_hole (envelope, len))
        return false;
    memcpy (id, envelope + 1, HERALD_ID_BYTES);
    *ts = s_get_u64 (envelope + 1 + HERALD_ID_BYTES);
    return true;
}

int
herald_store_walk_log (herald_store_t *self, herald_store_log_fn *fn, void *arg,
                       herald_error_t *err)
{
    assert (self);
    assert (fn);
    rocksdb_iterator_t *it = rocksdb_create_iterator_cf (self->db, self->scan_options,
                                                         self->cf [CF_EVENTS]);
    int rc = 0;
    uint64_t expected = 0;          //  0: the first run sets it
    for (rocksdb_iter_seek_to_first (it); rc == 0 && rocksdb_iter_valid (it);
         rocksdb_iter_next (it)) {
        size_t key_len, len;
        const char *key = rocksdb_iter_key (it, &key_len);
        const char *value = rocksdb_iter_value (it, &len);
        herald_run_t run;
        if (!herald_run_parse (key, key_len, value, len, &run)) {
            herald_error_set (err, HERALD_ERR_CORRUPT, "",
                              "the run of events after seq %llu has the wrong shape",
                              (unsigned long long) (expected? expected - 1: 0));
            rc = -1;
            break;
        }
        if (expected && run.first_seq != expected) {
            herald_error_set (err, HERALD_ERR_CORRUPT, "",
                              "seq gap: after seq %llu the log holds seq %llu",
                              (unsigned long long) expected - 1,
                              (unsigned long long) run.first_seq);
            rc = -1;
            break;
        }
        for (uint32_t i = 0; i < run.count && rc == 0; i++) {
            const uint8_t *bytes;
            size_t size;
            herald_run_event (&run, i, &bytes, &size);
            rc = fn (run.first_seq + i, bytes, size, herald_envelope_is_hole (bytes, size),
                     arg);
        }
        expected = run.first_seq + run.count;
    }
    if (rc == 0 && herald_store_iter_error (it, err, "cannot read the log after seq %llu",
                                            (unsigned long long) expected) != HERALD_OK)
        rc = -1;
    rocksdb_iter_destroy (it);
    return rc;
}

int
herald_store_walk_topics (herald_store_t *self, herald_store_topic_fn *fn, void *arg,
                          herald_error_t *err)
{
    assert (self);
    assert (fn);
    rocksdb_iterator_t *it = rocksdb_create_iterator_cf (self->db, self->read_options,
                                                         self->cf [CF_TOPICS]);
    int rc = 0;
    for (rocksdb_iter_seek_to_first (it); rc == 0 && rocksdb_iter_valid (it);
         rocksdb_iter_next (it)) {
        size_t len;
        const char *topic = rocksdb_iter_key (it, &len);
        char name [HERALD_TOPIC_MAX];
        if (len == 0 || len > HERALD_TOPIC_MAX) {
            herald_error_set (err, HERALD_ERR_CORRUPT, "", "a topic key of %zu bytes", len);
            rc = -1;
            break;
        }
        memcpy (name, topic, len);
        uint64_t ver;
        if (herald_store_lookup_ver (self, name, len, &ver, err) != 0) {
            rc = -1;
            break;
        }
        rc = fn (name, len, ver, arg);
    }
    if (rc == 0 && herald_store_iter_error (it, err, "cannot list the topics") != HERALD_OK)
        rc = -1;
    rocksdb_iter_destroy (it);
    return rc;
}
