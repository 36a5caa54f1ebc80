/*  Temporary, until branch i13-store is merged: weak stand-ins for the
    store's cluster calls, so test_herald_raft links.  The store's real
    definitions win over these as soon as they are linked.  NOT atomic
    (the index is a separate meta write): for this branch's tests only. */

#include <string.h>
#include "herald_store.h"

__attribute__((weak)) uint64_t
herald_store_applied_index (herald_store_t *self)
{
    char *value = NULL;
    size_t len = 0;
    uint64_t index = 0;
    if (herald_store_meta_get (self, "raft.applied", &value, &len) == HERALD_OK
    &&  len == 8)
        for (int i = 0; i < 8; i++)
            index = (index << 8) | (uint8_t) value [i];
    free (value);
    return index;
}

__attribute__((weak)) herald_err
herald_store_set_applied (herald_store_t *self, uint64_t raft_index, herald_error_t *err)
{
    (void) err;
    uint8_t bytes [8];
    for (int i = 0; i < 8; i++)
        bytes [i] = (uint8_t) (raft_index >> (56 - 8 * i));
    return herald_store_meta_put (self, "raft.applied", bytes, 8);
}

__attribute__((weak)) herald_err
herald_store_apply_entry (herald_store_t *self, herald_batch_t *batches, size_t count,
                          uint64_t ts, uint64_t raft_index, herald_error_t *err)
{
    herald_err rc = herald_store_apply (self, batches, count, ts, err);
    if (rc == HERALD_OK) {
        //  Keep the appended envelopes: meta_put does not touch them
        rc = herald_store_set_applied (self, raft_index, err);
    }
    return rc;
}

__attribute__((weak)) uint64_t
herald_store_digest (herald_store_t *self)
{
    return herald_store_head (self) * 1000003u + herald_store_last_ts (self);
}

__attribute__((weak)) herald_err
herald_store_install (herald_store_t *self, const uint8_t *const *envelopes,
                      const size_t *lens, size_t count, uint64_t raft_index,
                      herald_error_t *err)
{
    (void) self; (void) envelopes; (void) lens; (void) count; (void) raft_index;
    return herald_error_set (err, HERALD_ERR_UNSUPPORTED, "", "install: not built yet");
}
