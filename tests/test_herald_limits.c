/*  =========================================================================
    test_herald_limits - token buckets per user: rates, bursts, a batch
    larger than the burst, the retry hint, reloads

    Time is passed in (ns of a monotonic clock), so every figure here is
    exact: no sleeps, no wall clock.
    =========================================================================
*/

#include <criterion/criterion.h>
#include <inttypes.h>
#include <string.h>

#include "herald_limits.h"

#define MS  1000000LL               //  ns
#define S   1000000000LL

//  Events that pass when a publisher sends batches of `batch` every
//  `every` ns for `span` ns, starting at `start`.
static uint64_t
s_passed (herald_user_limits_t *limits, const char *user, uint64_t batch, uint64_t bytes,
          int64_t start, int64_t every, int64_t span)
{
    uint64_t passed = 0;
    for (int64_t now = start; now < start + span; now += every)
        if (herald_limits_take (limits, user, batch, bytes, now, NULL))
            passed += batch;
    return passed;
}

Test (herald_limits, a_full_bucket_passes_the_burst_then_the_rate)
{
    herald_user_limits_t *limits = herald_limits_new ();
    cr_assert_not_null (limits);
    cr_assert_eq (herald_limits_set (limits, "svc", 100, 20, 0, 0), 0);
    //  20 at once, one by one: the burst
    int64_t now = 5 * S;
    for (int i = 0; i < 20; i++)
        cr_assert (herald_limits_take (limits, "svc", 1, 10, now, NULL), "event %d", i);
    uint64_t retry = 0;
    //  The 20th took the bucket to 0, not below: one more passes (debt 1)
    cr_assert (herald_limits_take (limits, "svc", 1, 10, now, NULL));
    cr_assert_not (herald_limits_take (limits, "svc", 1, 10, now, &retry));
    cr_assert_eq (retry, 10, "1 event of debt at 100/s: 10 ms, got %" PRIu64, retry);
    cr_assert_eq (herald_limits_refused (limits), 1);
    //  Over 10 s at 2x the rate, 1000 pass (rate × time, ± the burst)
    uint64_t passed = s_passed (limits, "svc", 1, 10, now + 10 * MS, 5 * MS, 10 * S);
    cr_assert (passed >= 1000 - 1 && passed <= 1000 + 1, "%" PRIu64, passed);
    herald_limits_destroy (&limits);
    cr_assert_null (limits);
}

Test (herald_limits, the_burst_defaults_to_the_rate)
{
    herald_user_limits_t *limits = herald_limits_new ();
    herald_limits_set (limits, "svc", 50, 0, 0, 0);
    uint64_t n = 0;
    while (herald_limits_take (limits, "svc", 1, 0, 0, NULL) && n < 1000)
        n++;
    cr_assert_eq (n, 51, "50 of burst, the 51st takes it to -1");
    herald_limits_destroy (&limits);
}

Test (herald_limits, a_batch_larger_than_the_burst_is_never_stuck)
{
    herald_user_limits_t *limits = herald_limits_new ();
    herald_limits_set (limits, "svc", 10, 10, 0, 0);
    //  500 events in one batch: passes on a full bucket, leaving -490
    cr_assert (herald_limits_take (limits, "svc", 500, 0, 0, NULL));
    uint64_t retry = 0;
    cr_assert_not (herald_limits_take (limits, "svc", 500, 0, 1 * S, &retry));
    cr_assert_eq (retry, 48000, "-480 at 10/s: 48 s, got %" PRIu64, retry);
    //  Just before the debt is paid: refused; at it: passes again
    cr_assert_not (herald_limits_take (limits, "svc", 500, 0, 49 * S - 1 * MS, &retry));
    cr_assert_eq (retry, 1);
    cr_assert (herald_limits_take (limits, "svc", 500, 0, 49 * S, NULL));
    //  On average the rate: 20 batches of 500 need about 1000 s
    uint64_t passed = s_passed (limits, "svc", 500, 0, 49 * S, 1 * S, 1000 * S);
    cr_assert (passed >= 9500 && passed <= 10500, "%" PRIu64, passed);
    herald_limits_destroy (&limits);
}

Test (herald_limits, the_retry_hint_is_when_the_bucket_is_back_at_zero)
{
    herald_user_limits_t *limits = herald_limits_new ();
    herald_limits_set (limits, "svc", 1000, 100, 0, 0);
    cr_assert (herald_limits_take (limits, "svc", 350, 0, 0, NULL));     //  100 -> -250
    uint64_t retry = 0;
    cr_assert_not (herald_limits_take (limits, "svc", 1, 0, 0, &retry));
    cr_assert_eq (retry, 250);
    cr_assert_not (herald_limits_take (limits, "svc", 1, 0, 100 * MS, &retry));
    cr_assert_eq (retry, 150);
    //  A fraction of a ms rounds up: -0.5 at 1000/s is 0.5 ms -> 1
    cr_assert_not (herald_limits_take (limits, "svc", 1, 0, 249500000LL, &retry));
    cr_assert_eq (retry, 1);
    //  Waiting exactly the hint is enough
    cr_assert (herald_limits_take (limits, "svc", 1, 0, 250 * MS, NULL));
    herald_limits_destroy (&limits);
}

Test (herald_limits, bytes_limit_on_their_own_and_with_events)
{
    herald_user_limits_t *limits = herald_limits_new ();
    //  1 MiB/s, burst 64 KiB; no event limit
    herald_limits_set (limits, "big", 0, 0, 1 << 20, 64 << 10);
    cr_assert (herald_limits_take (limits, "big", 1000000, (64 << 10) + 1, 0, NULL));
    uint64_t retry = 0;
    cr_assert_not (herald_limits_take (limits, "big", 1, 1, 0, &retry));
    cr_assert_eq (retry, 1);
    cr_assert (herald_limits_take (limits, "big", 1, 1 << 20, 1 * MS, NULL));
    cr_assert_not (herald_limits_take (limits, "big", 1, 1, 1 * MS, &retry));
    cr_assert_eq (retry, 1000, "1 MiB of debt at 1 MiB/s, got %" PRIu64, retry);
    //  Both: the longer wait of the two is the hint
    herald_limits_set (limits, "both", 10, 10, 1000, 1000);
    cr_assert (herald_limits_take (limits, "both", 30, 100, 0, NULL));      //  -20 events
    cr_assert_not (herald_limits_take (limits, "both", 1, 1, 0, &retry));
    cr_assert_eq (retry, 2000);
    herald_limits_set (limits, "both2", 10, 10, 1000, 1000);
    cr_assert (herald_limits_take (limits, "both2", 1, 4000, 0, NULL));     //  -3000 bytes
    cr_assert_not (herald_limits_take (limits, "both2", 1, 1, 0, &retry));
    cr_assert_eq (retry, 3000);
    herald_limits_destroy (&limits);
}

Test (herald_limits, users_are_independent_and_unlimited_ones_pass)
{
    herald_user_limits_t *limits = herald_limits_new ();
    herald_limits_set (limits, "a", 10, 10, 0, 0);
    herald_limits_set (limits, "b", 10, 10, 0, 0);
    herald_limits_set (limits, "free", 0, 0, 0, 0);
    cr_assert_eq (herald_limits_size (limits), 2, "a user without limits holds nothing");
    cr_assert (herald_limits_take (limits, "a", 100, 0, 0, NULL));
    cr_assert_not (herald_limits_take (limits, "a", 1, 0, 0, NULL));
    cr_assert (herald_limits_take (limits, "b", 10, 0, 0, NULL), "b untouched by a");
    for (int i = 0; i < 1000; i++)
        cr_assert (herald_limits_take (limits, "free", 1000, 1 << 20, 0, NULL));
    cr_assert (herald_limits_take (limits, "nobody", 1000, 0, 0, NULL));
    cr_assert (herald_limits_take (limits, NULL, 1000, 0, 0, NULL));
    cr_assert_eq (herald_limits_refused (limits), 1);
    herald_limits_destroy (&limits);
}

Test (herald_limits, a_reload_resets_changed_users_only_and_drops_removed_ones)
{
    herald_user_limits_t *limits = herald_limits_new ();
    herald_limits_set (limits, "same", 10, 10, 0, 0);
    herald_limits_set (limits, "changed", 10, 10, 0, 0);
    herald_limits_set (limits, "removed", 10, 10, 0, 0);
    herald_limits_sweep (limits);
    cr_assert_eq (herald_limits_size (limits), 3);
    cr_assert (herald_limits_take (limits, "same", 100, 0, 0, NULL));
    cr_assert (herald_limits_take (limits, "changed", 100, 0, 0, NULL));
    cr_assert (herald_limits_take (limits, "removed", 100, 0, 0, NULL));
    //  The reload: same limits, new limits, gone
    herald_limits_set (limits, "same", 10, 10, 0, 0);
    herald_limits_set (limits, "changed", 20, 10, 0, 0);
    herald_limits_sweep (limits);
    cr_assert_eq (herald_limits_size (limits), 2);
    uint64_t retry = 0;
    cr_assert_not (herald_limits_take (limits, "same", 1, 0, 1 * S, &retry), "still in debt");
    cr_assert_eq (retry, 8000);
    cr_assert (herald_limits_take (limits, "changed", 1, 0, 1 * S, NULL), "a fresh bucket");
    cr_assert (herald_limits_take (limits, "removed", 1000, 0, 1 * S, NULL), "no limits now");
    //  A burst alone changing is a change too
    herald_limits_set (limits, "same", 10, 11, 0, 0);
    cr_assert (herald_limits_take (limits, "same", 1, 0, 1 * S, NULL));
    herald_limits_destroy (&limits);
}

Test (herald_limits, from_an_acl_user)
{
    herald_acl_user_t user;
    memset (&user, 0, sizeof user);
    strcpy (user.name, "inventory");
    user.rate = 5;
    user.bytes = 100;
    user.bytes_burst = 200;
    herald_user_limits_t *limits = herald_limits_new ();
    cr_assert_eq (herald_limits_set_user (limits, &user), 0);
    cr_assert (herald_limits_take (limits, "inventory", 1, 200, 0, NULL));
    uint64_t retry = 0;
    cr_assert (herald_limits_take (limits, "inventory", 1, 1, 0, NULL));   //  bytes at 0
    cr_assert_not (herald_limits_take (limits, "inventory", 1, 1, 0, &retry));
    cr_assert_eq (retry, 10, "-1 byte at 100/s");
    herald_limits_destroy (&limits);
}

Test (herald_limits, a_clock_going_back_adds_nothing)
{
    herald_user_limits_t *limits = herald_limits_new ();
    herald_limits_set (limits, "svc", 10, 10, 0, 0);
    cr_assert (herald_limits_take (limits, "svc", 20, 0, 10 * S, NULL));
    cr_assert_not (herald_limits_take (limits, "svc", 1, 0, 5 * S, NULL));
    cr_assert_not (herald_limits_take (limits, "svc", 1, 0, 10 * S + 999 * MS, NULL));
    cr_assert (herald_limits_take (limits, "svc", 1, 0, 11 * S, NULL));
    herald_limits_destroy (&limits);
}
