/*  =========================================================================
    storetest - the store's answers that can fail, asserted to succeed

    Since every store read can fail and says so (herald_err, herald_error_t),
    the store's tests that only want the value ask through these, which
    fail the test with the store's message.  Criterion only.
    =========================================================================
*/

#ifndef HERALD_STORETEST_H_INCLUDED
#define HERALD_STORETEST_H_INCLUDED

#include <criterion/criterion.h>
#include "herald_store.h"

static inline uint64_t
s_ver_of (herald_store_t *store, const char *topic, size_t len)
{
    uint64_t ver = 0;
    herald_error_t err = { 0 };
    cr_assert_eq (herald_store_topic_ver (store, topic, len, &ver, &err), HERALD_OK, "%s",
                  err.message);
    return ver;
}

static inline uint64_t
s_seq_at (herald_store_t *store, uint64_t ts)
{
    uint64_t seq = 0;
    herald_error_t err = { 0 };
    cr_assert_eq (herald_store_seq_at_ts (store, ts, &seq, &err), HERALD_OK, "%s",
                  err.message);
    return seq;
}

static inline uint64_t
s_disk_of (herald_store_t *store)
{
    uint64_t bytes = 0;
    herald_error_t err = { 0 };
    cr_assert_eq (herald_store_disk_size (store, &bytes, &err), HERALD_OK, "%s", err.message);
    return bytes;
}

#endif
