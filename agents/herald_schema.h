/*  =========================================================================
    herald_schema - upcasters, downcasters and a subscription's schemas

    The agent's registry of casters (one per agent, any thread), a
    subscription's declarations (what schema of which type its handler
    understands, its policy for what cannot be converted, where parked
    events go), the chain walk that converts one event, and the parked
    file.  The delivery thread (herald_agent_deliver.c) calls it before a
    handler; docs/schemas.md is the guide.
    =========================================================================
*/

#ifndef HERALD_SCHEMA_H_INCLUDED
#define HERALD_SCHEMA_H_INCLUDED

#include <pthread.h>
#include <stdatomic.h>
#include "herald.h"

typedef struct _herald_schema_t herald_schema_t;

//  A subscription's declarations, copied.  Counters are the delivery
//  thread's (atomics, read by herald_agent_schema_stats).
typedef struct _herald_schema_sub_t {
    herald_schema_want_t *wants;            //  types strdup'd
    size_t want_count;
    uint64_t default_schema;
    herald_schema_policy_t policy;
    herald_parked_fn *on_parked;
    void *on_parked_arg;
    char *parked_path;                      //  NULL without state_dir
    pthread_mutex_t park_lock;              //  appends vs. a replay's rewrite
    atomic_uint_fast64_t upcast, downcast, skipped, parked, stopped;
} herald_schema_sub_t;

//  A new, empty registry.  NULL when out of memory.
herald_schema_t *
    herald_schema_new (void);

//  Free it.  NULL-safe.
void
    herald_schema_destroy (herald_schema_t **self_p);

//  Register a caster (down: from -> from - 1, else from -> from + 1).
//  HERALD_ERR_INVALID with the error set when bad or registered already.
herald_err
    herald_schema_register (herald_schema_t *self, const char *type, uint64_t from,
                            bool down, herald_caster_fn *fn, void *arg);

//  Check and copy options' declarations for subscription name; state_dir
//  (may be NULL) gets the parked file.  NULL with the error set.
herald_schema_sub_t *
    herald_schema_sub_new (const herald_subscribe_options_t *options, const char *name,
                           const char *state_dir);

void
    herald_schema_sub_destroy (herald_schema_sub_t **self_p);

//  The schema sub wants for type[0..len): 0 when it takes it as stored.
uint64_t
    herald_schema_sub_want (const herald_schema_sub_t *self, const char *type, size_t len);

//  Convert view's data to schema want through self's chain.  On HERALD_OK
//  view->data/data_len/schema are the converted ones and *owned_p the
//  malloc'd bytes they live in (NULL when nothing changed: free it after
//  the handler); *direction_p 1 up, -1 down, 0 none.  Otherwise
//  HERALD_ERR_UNSUPPORTED and message says why (type, schemas, seq), view
//  untouched.
herald_err
    herald_schema_convert (herald_schema_t *self, herald_delivery_t *view, uint64_t want,
                           void **owned_p, int *direction_p, char *message, size_t size);

//  Append view (its stored envelope) with reason to self's parked file,
//  fsynced; when redelivered and the last record is the same event, it
//  is there already.  HERALD_OK also without a file.  Else HERALD_ERR_IO,
//  message set.
herald_err
    herald_schema_park (herald_schema_sub_t *self, const herald_delivery_t *view,
                        const char *reason, bool redelivered, char *message, size_t size);

//  One parked record, as read from a file.
typedef struct {
    const uint8_t *id;
    const char *reason;
    size_t reason_len;
    const uint8_t *envelope;
    size_t envelope_len;
    size_t offset, end;                     //  its bytes in the file
} herald_parked_record_t;

//  Read path whole into *bytes_p (malloc'd; NULL and 0 when absent) and
//  call fn for each good record, stopping at a torn or bad one; *good_p
//  is the end of the last good record.  fn (may be NULL) returning false
//  stops.
herald_err
    herald_schema_parked_scan (const char *path, uint8_t **bytes_p, size_t *len_p,
                               size_t *good_p,
                               bool (*fn) (const herald_parked_record_t *, void *), void *arg);

#endif
