/*  =========================================================================
    herald_catchup - copy a peer's events into the store over HWP/1 REPLAY

    A cluster node whose store is behind a Raft snapshot (a manifest: the
    head and digest the store must reach, CLUSTER.md §3.6) pulls the
    missing events from a peer's api endpoint and installs them exactly as
    the peer stored them (herald_store_install).  The snapshot's restore
    runs it on the raft thread; the caller checks the digest afterwards.
    =========================================================================
*/

#ifndef HERALD_CATCHUP_H_INCLUDED
#define HERALD_CATCHUP_H_INCLUDED

#include <czmq.h>
#include "herald_store.h"

//  REPLAY seqs herald_store_head + 1 .. to from the broker at api (a ZeroMQ
//  endpoint) and install them, in batches, with raft index 0 (the caller
//  sets the applied index once the digest is checked).  Returns HERALD_OK
//  once the store's head is to; HERALD_ERR_UNAVAILABLE (err says why)
//  when the peer does not answer within CATCHUP_IDLE_MS, refuses, or ends
//  before to; HERALD_ERR_TRIMMED when the peer has trimmed the events
//  asked for (ERROR trimmed); HERALD_ERR_CORRUPT when what it sent does not install (the
//  logs differ); the store's error when it fails.
//  installed (may be NULL) is called after each install, on the calling
//  thread, with the store's appended envelopes those events (for fanout).
typedef void (herald_catchup_fn) (void *arg);

//  Security on (issue 14): the broker's own key (the nodes of a cluster
//  share it), with which catch-up connects to a peer's CURVE api, pinning
//  the same key as the server's; the peer's ZAP handler admits it as
//  `$node`.  Set (copied) once before any catch-up runs; NULL frees it.
void
    herald_catchup_set_cert (zcert_t *cert);

//  With a key set: make dealer a CURVE client with it (before it
//  connects), for every connection a node opens to a peer's api (the
//  bootstrap's STATUS probes too).  Without one, nothing.
void
    herald_catchup_apply_key (zsock_t *dealer);

herald_err
    herald_catchup_run (herald_store_t *store, const char *api, uint64_t to,
                        herald_catchup_fn *installed, void *arg, herald_error_t *err);

#endif
