/*  =========================================================================
    herald_limits - token buckets per user: events and request bytes per
    second published

    DESIGN

    A bucket holds tokens (a double: events or bytes), refilled lazily at
    each take by rate × elapsed, up to its burst:

        tokens = min (burst, tokens + rate × (now − last))
        pass   = tokens ≥ 0            (in every limited bucket)
        then     tokens −= the batch   (may go below zero, once)
        else     retry_ms = ceil (−tokens / rate × 1000)

    Letting a batch through whenever the bucket is not in debt, and taking
    all of it, is what makes a batch larger than the burst pass (a classic
    bucket would refuse it for ever) while the average stays at the rate:
    the debt is paid back before the next batch passes.  So a publisher
    sees at most burst + one batch at once, then its rate.

    The table holds only users with a limit, keyed by name; its size is
    that of the ACL.  A user who is not in it (no limit, or a name a
    reload removed) passes: the ACL check, not this class, decides who
    may publish at all.
    =========================================================================
*/

#include <stdlib.h>
#include <string.h>
#include <czmq.h>

#include "herald_limits.h"

typedef struct {
    double tokens;
    uint64_t rate, burst;       //  rate 0: this bucket does not limit
} s_bucket_t;

typedef struct {
    s_bucket_t events, bytes;
    int64_t last_ns;            //  when the buckets were last filled
    bool started;               //  last_ns is set (the first take sets it)
    uint64_t seen;              //  the generation of the last set
} s_user_t;

struct _herald_user_limits_t {
    zhashx_t *users;            //  name -> s_user_t
    uint64_t generation;
    uint64_t refused;
};

static void
s_user_destroy (void **item_p)
{
    free (*item_p);
    *item_p = NULL;
}

herald_user_limits_t *
herald_limits_new (void)
{
    herald_user_limits_t *self = (herald_user_limits_t *) calloc (1, sizeof (herald_user_limits_t));
    if (self)
        self->users = zhashx_new ();
    if (!self || !self->users) {
        free (self);
        return NULL;
    }
    zhashx_set_destructor (self->users, s_user_destroy);
    return self;
}

void
herald_limits_destroy (herald_user_limits_t **self_p)
{
    assert (self_p);
    herald_user_limits_t *self = *self_p;
    if (self) {
        zhashx_destroy (&self->users);
        free (self);
        *self_p = NULL;
    }
}

static void
s_bucket_set (s_bucket_t *bucket, uint64_t rate, uint64_t burst)
{
    bucket->rate = rate;
    bucket->burst = rate? (burst? burst: rate): 0;
    bucket->tokens = (double) bucket->burst;
}

int
herald_limits_set (herald_user_limits_t *self, const char *user, uint64_t rate,
                   uint64_t rate_burst, uint64_t bytes, uint64_t bytes_burst)
{
    assert (self && user);
    s_user_t *entry = (s_user_t *) zhashx_lookup (self->users, user);
    if (!rate && !bytes) {
        zhashx_delete (self->users, user);
        return 0;
    }
    s_bucket_t events_wanted, bytes_wanted;
    s_bucket_set (&events_wanted, rate, rate_burst);
    s_bucket_set (&bytes_wanted, bytes, bytes_burst);
    if (entry
    &&  entry->events.rate == events_wanted.rate && entry->events.burst == events_wanted.burst
    &&  entry->bytes.rate == bytes_wanted.rate && entry->bytes.burst == bytes_wanted.burst) {
        entry->seen = self->generation;
        return 0;               //  the same limits: the buckets go on as they were
    }
    if (!entry) {
        entry = (s_user_t *) calloc (1, sizeof (s_user_t));
        if (!entry || zhashx_insert (self->users, user, entry) != 0) {
            free (entry);
            return -1;
        }
    }
    entry->events = events_wanted;
    entry->bytes = bytes_wanted;
    entry->started = false;
    entry->seen = self->generation;
    return 0;
}

int
herald_limits_set_user (herald_user_limits_t *self, const herald_acl_user_t *user)
{
    assert (user);
    return herald_limits_set (self, user->name, user->rate, user->rate_burst, user->bytes,
                              user->bytes_burst);
}

void
herald_limits_sweep (herald_user_limits_t *self)
{
    assert (self);
    zlistx_t *gone = zlistx_new ();
    if (gone) {
        zlistx_set_destructor (gone, (zlistx_destructor_fn *) zstr_free);
        for (s_user_t *entry = (s_user_t *) zhashx_first (self->users); entry;
             entry = (s_user_t *) zhashx_next (self->users))
            if (entry->seen != self->generation)
                zlistx_add_end (gone, strdup ((const char *) zhashx_cursor (self->users)));
        for (char *name = (char *) zlistx_first (gone); name;
             name = (char *) zlistx_next (gone))
            zhashx_delete (self->users, name);
        zlistx_destroy (&gone);
    }
    self->generation++;
}

static void
s_fill (s_bucket_t *bucket, int64_t elapsed_ns)
{
    if (!bucket->rate)
        return;
    bucket->tokens += (double) bucket->rate * (double) elapsed_ns / 1e9;
    if (bucket->tokens > (double) bucket->burst)
        bucket->tokens = (double) bucket->burst;
}

//  Seconds until the bucket is back at zero.
static double
s_wait (const s_bucket_t *bucket)
{
    return bucket->rate && bucket->tokens < 0? -bucket->tokens / (double) bucket->rate: 0;
}

bool
herald_limits_take (herald_user_limits_t *self, const char *user, uint64_t events,
                    uint64_t bytes, int64_t now_ns, uint64_t *retry_ms)
{
    assert (self);
    s_user_t *entry = user? (s_user_t *) zhashx_lookup (self->users, user): NULL;
    if (!entry)
        return true;
    if (entry->started && now_ns > entry->last_ns) {
        s_fill (&entry->events, now_ns - entry->last_ns);
        s_fill (&entry->bytes, now_ns - entry->last_ns);
    }
    if (!entry->started || now_ns > entry->last_ns)
        entry->last_ns = now_ns;
    entry->started = true;
    //  Less than a nanosecond of debt is rounding, not debt
    double wait = s_wait (&entry->events);
    if (s_wait (&entry->bytes) > wait)
        wait = s_wait (&entry->bytes);
    if (wait >= 1e-9) {
        self->refused++;
        if (retry_ms) {
            double ms = wait * 1000;
            uint64_t whole = (uint64_t) ms;
            whole += (double) whole < ms;       //  rounded up
            *retry_ms = whole < 1? 1: whole;
        }
        return false;
    }
    if (entry->events.rate)
        entry->events.tokens -= (double) events;
    if (entry->bytes.rate)
        entry->bytes.tokens -= (double) bytes;
    return true;
}

uint64_t
herald_limits_refused (herald_user_limits_t *self)
{
    assert (self);
    return self->refused;
}

size_t
herald_limits_size (herald_user_limits_t *self)
{
    assert (self);
    return zhashx_size (self->users);
}
