/*  =========================================================================
    herald_limits - token buckets per user: events and request bytes per
    second published (SECURITY.md §3.9; docs/security.md "Limits")

    Each user with a `rate` or `bytes` limit in the ACL has two buckets,
    one in events and one in request bytes, each filling at its rate up to
    its burst.  A PUBLISH takes its batch's events and bytes from both.  A
    batch is let through when neither bucket is below zero, and it may
    take a bucket negative by that one batch: a batch larger than the
    burst is never stuck, and a user still gets its rate on average.  A
    refused batch is told how long until both buckets are back at zero
    (the `retry_ms` of ERROR overloaded).

    Time is an input (a monotonic clock in ns, never the wall clock):
    tests pass it in.  Buckets live in memory, start full, and are kept
    for the users of the ACL only; a reload that changes a user's limits
    gives that user fresh buckets, one that keeps them keeps the state.

    One thread (the broker loop) owns an instance.  The type is
    herald_user_limits_t: herald_limits_t is the codec's (protocol/
    herald_msg.h: the sizes a decoder accepts).
    =========================================================================
*/

#ifndef HERALD_LIMITS_H_INCLUDED
#define HERALD_LIMITS_H_INCLUDED

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "herald_acl.h"

typedef struct _herald_user_limits_t herald_user_limits_t;

//  No users, no limits.  Caller owns; NULL when out of memory.
herald_user_limits_t *
    herald_limits_new (void);

//  NULL-safe; clears *self_p.
void
    herald_limits_destroy (herald_user_limits_t **self_p);

//  Set the limits of the user of that name (rate events/s with rate_burst,
//  bytes/s with bytes_burst; 0 is no limit, a burst of 0 is the rate).
//  Unchanged limits keep the buckets as they are, changed ones start full.
//  Every user set since the last herald_limits_sweep is kept by it.
//  Returns 0, or -1 when out of memory (the user then has no limits).
int
    herald_limits_set (herald_user_limits_t *self, const char *user, uint64_t rate,
                       uint64_t rate_burst, uint64_t bytes, uint64_t bytes_burst);

//  The same from an ACL user's rate, rate_burst, bytes, bytes_burst.
int
    herald_limits_set_user (herald_user_limits_t *self, const herald_acl_user_t *user);

//  Forget every user not set since the previous sweep (the users a reload
//  removed).  A reload is: set each user of the new table, then sweep.
void
    herald_limits_sweep (herald_user_limits_t *self);

//  Take a batch of events and bytes for user at now_ns (monotonic).  True
//  when it may pass (and it is taken); false when a bucket is below zero,
//  with *retry_ms (when given) the wait until both are back at zero, at
//  least 1.  A user without limits (or unknown) always passes.  Refusals
//  are counted (herald_limits_refused).
bool
    herald_limits_take (herald_user_limits_t *self, const char *user, uint64_t events,
                        uint64_t bytes, int64_t now_ns, uint64_t *retry_ms);

//  Batches refused since new (STATUS `rate_limited`).
uint64_t
    herald_limits_refused (herald_user_limits_t *self);

//  Users with limits held.
size_t
    herald_limits_size (herald_user_limits_t *self);

#endif
