/*  =========================================================================
    herald_retention - retention policies: trim what is older than an age

    DESIGN
    A pass looks at the policies in order and sends the first trim due;
    the next pass comes as soon as that one is applied, until a pass finds
    nothing to do, after which the next is retention-interval-ms away.  So
    at most one retention trim is in flight, and a policy's trim is
    decided against the trim points as they are once the last is applied.

    The cut is by the events' ts, the leader's clock when each was
    committed: the last seq whose ts < now - AGE is seq_at_ts (now - AGE)
    - 1, since ts never goes down along the log.  A policy whose prefix is
    covered by a higher trim point (of "" or of a shorter prefix) has
    nothing to do.
    =========================================================================
*/

#include <inttypes.h>
#include <time.h>
#include "herald_retention.h"
#include "herald_log.h"

#define S_AGAIN_MS      10          //  a trim in flight: look again this soon

struct _herald_retention_t {
    herald_store_t *store;
    herald_trims_t *trims;
    herald_retention_policy_t *policies;
    size_t count;
    uint64_t interval_ms;
    int64_t next;                   //  zclock_mono of the next pass
    bool failing;                   //  a read failed (said once)
};

static void
s_policies_free (herald_retention_t *self)
{
    for (size_t index = 0; index < self->count; index++)
        free (self->policies [index].prefix);
    free (self->policies);
    self->policies = NULL;
    self->count = 0;
}

static void
s_policy_add (herald_retention_t *self, const char *prefix, size_t len, uint64_t age_ms,
              const char *age)
{
    herald_retention_policy_t *grown = (herald_retention_policy_t *) realloc (
        self->policies, (self->count + 1) * sizeof (herald_retention_policy_t));
    if (!grown)
        return;
    self->policies = grown;
    herald_retention_policy_t *policy = &self->policies [self->count];
    memset (policy, 0, sizeof (*policy));
    policy->prefix = strndup (prefix, len);
    if (!policy->prefix)
        return;
    policy->age_ms = age_ms;
    snprintf (policy->age, sizeof (policy->age), "%s", age);
    self->count++;
}

static void
s_say (herald_retention_t *self, const char *when)
{
    if (self->count == 0) {
        herald_log ("info", "retention%s: none, every event is kept", when);
        return;
    }
    char text [1024] = "";
    size_t used = 0;
    for (size_t index = 0; index < self->count && used < sizeof (text); index++)
        used += (size_t) snprintf (text + used, sizeof (text) - used, "%s'%s' %s",
                                   index? ", ": "", self->policies [index].prefix,
                                   self->policies [index].age);
    herald_log ("info", "retention%s: %s, every %" PRIu64 " ms (older events are deleted)",
                when, text, self->interval_ms);
}

herald_retention_t *
herald_retention_new (const herald_config_t *config, herald_store_t *store,
                      herald_trims_t *trims)
{
    herald_retention_t *self = (herald_retention_t *) zmalloc (sizeof (herald_retention_t));
    self->store = store;
    self->trims = trims;
    self->interval_ms = config->retention_interval_ms;
    for (size_t index = 0; index < config->retention_count; index++) {
        const herald_retention_policy_t *policy = &config->retention [index];
        s_policy_add (self, policy->prefix, strlen (policy->prefix), policy->age_ms,
                      policy->age);
    }
    self->next = zclock_mono ();        //  the first pass at once
    if (self->count)
        s_say (self, "");
    return self;
}

void
herald_retention_destroy (herald_retention_t **self_p)
{
    herald_retention_t *self = *self_p;
    if (!self)
        return;
    s_policies_free (self);
    free (self);
    *self_p = NULL;
}

int64_t
herald_retention_wait (herald_retention_t *self)
{
    if (!self || self->count == 0)
        return -1;
    int64_t wait = self->next - zclock_mono ();
    return wait > 0? wait: 0;
}

//  The highest trim point covering every topic of prefix: that of a
//  trim prefix that begins it ("" among them).
static uint64_t
s_covered (herald_retention_t *self, const char *prefix)
{
    size_t count = herald_store_trims (self->store, NULL, 0);
    herald_trim_t *trims = (herald_trim_t *) calloc (count? count: 1, sizeof (herald_trim_t));
    if (!trims)
        return 0;
    size_t got = herald_store_trims (self->store, trims, count);
    uint64_t until = 0;
    size_t len = strlen (prefix);
    for (size_t index = 0; index < got && index < count; index++)
        if (trims [index].prefix_len <= len
        &&  memcmp (trims [index].prefix, prefix, trims [index].prefix_len) == 0
        &&  trims [index].until > until)
            until = trims [index].until;
    free (trims);
    return until;
}

void
herald_retention_tick (herald_retention_t *self)
{
    if (!self || self->count == 0 || zclock_mono () < self->next)
        return;
    if (herald_trims_retaining (self->trims)) {
        self->next = zclock_mono () + S_AGAIN_MS;
        return;
    }
    self->next = zclock_mono () + (int64_t) self->interval_ms;
    if (!herald_trims_leads (self->trims))
        return;                         //  the leader applies them (a cluster)
    struct timespec now;
    clock_gettime (CLOCK_REALTIME, &now);
    uint64_t now_ns = (uint64_t) now.tv_sec * 1000000000ULL + (uint64_t) now.tv_nsec;
    for (size_t index = 0; index < self->count; index++) {
        const herald_retention_policy_t *policy = &self->policies [index];
        uint64_t age_ns = policy->age_ms * 1000000ULL;
        if (age_ns >= now_ns)
            continue;
        uint64_t seq = 0;
        herald_error_t err = { 0 };
        if (herald_store_seq_at_ts (self->store, now_ns - age_ns, &seq, &err) != HERALD_OK) {
            if (!self->failing)
                herald_log ("warn", "retention '%s' %s: %s; tried again every %" PRIu64
                            " ms", policy->prefix, policy->age, err.message, self->interval_ms);
            self->failing = true;
            continue;
        }
        self->failing = false;
        uint64_t until = seq > 0? seq - 1: 0;
        uint64_t head = herald_store_head (self->store);
        if (until > head)
            until = head;
        if (until == 0 || until <= s_covered (self, policy->prefix))
            continue;
        char reason [320];
        snprintf (reason, sizeof (reason), "retention '%s' %s", policy->prefix, policy->age);
        if (herald_trims_retain (self->trims, policy->prefix, until, reason))
            self->next = zclock_mono () + S_AGAIN_MS;   //  the next policy once applied
        return;
    }
}

void
herald_retention_send (zsock_t *pipe, const herald_config_t *config)
{
    zmsg_t *msg = zmsg_new ();
    zmsg_addstr (msg, "RETENTION");
    zmsg_addstrf (msg, "%" PRIu64, config->retention_interval_ms);
    for (size_t index = 0; index < config->retention_count; index++) {
        const herald_retention_policy_t *policy = &config->retention [index];
        zmsg_addmem (msg, policy->prefix, strlen (policy->prefix));
        zmsg_addstrf (msg, "%" PRIu64, policy->age_ms);
        zmsg_addstr (msg, policy->age);
    }
    zmsg_send (&msg, pipe);
}

void
herald_retention_reload (herald_retention_t *self, zmsg_t *msg)
{
    if (!self)
        return;
    s_policies_free (self);
    char *interval = zmsg_popstr (msg);
    if (interval)
        self->interval_ms = strtoull (interval, NULL, 10);
    zstr_free (&interval);
    if (self->interval_ms == 0)
        self->interval_ms = 60000;
    while (zmsg_size (msg) >= 3) {
        zframe_t *prefix = zmsg_pop (msg);
        char *age_ms = zmsg_popstr (msg);
        char *age = zmsg_popstr (msg);
        if (prefix && age_ms && age)
            s_policy_add (self, (const char *) zframe_data (prefix), zframe_size (prefix),
                          strtoull (age_ms, NULL, 10), age);
        zframe_destroy (&prefix);
        zstr_free (&age_ms);
        zstr_free (&age);
    }
    self->next = zclock_mono ();
    s_say (self, " reloaded");
}
