/*  =========================================================================
    trimclient - the client tests' trims: TRIM {unarchived: true} on a raw
    DEALER (the agent's and the projections' trimming tests; herald trim's
    archive proof is tests/test_herald_trim.sh's).  Uses criterion.
    =========================================================================
*/

#ifndef HERALD_TRIMCLIENT_H_INCLUDED
#define HERALD_TRIMCLIENT_H_INCLUDED

#include <stdint.h>

//  TRIM {prefix, until, unarchived: true} to the broker at api; asserts a
//  TRIM reply within timeout_ms and returns its `first`.
uint64_t
    tc_trim (const char *api, const char *prefix, uint64_t until, int timeout_ms);

#endif
