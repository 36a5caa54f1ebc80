/*  =========================================================================
    herald_metrics - heraldd's HTTP endpoint: /metrics, /healthz, /readyz

    With --metrics HOST:PORT heraldd serves, with libmicrohttpd on threads
    of its own:

      GET /metrics   every STATUS figure and the broker's histograms as
                     Prometheus text (0.0.4), or OpenMetrics when the
                     Accept header asks for application/openmetrics-text
      GET /healthz   200 while the process serves
      GET /readyz    200 when the broker can serve; else 503 and one line
                     saying why (disk low, no leader, lagging, failed)

    HEAD is answered as GET without the body, other methods 405, other
    paths 404.  The HTTP thread never touches the broker's state: it asks
    the broker's loop for a STATUS over an inproc PAIR (herald_metrics_
    loop_sock), which the loop answers between two turns like any STATUS,
    never waiting (a reply the HTTP side does not take is dropped).  So a
    scrape costs the loop one STATUS, at most one per METRICS_CACHE_MS
    however often it is scraped.  Two flags the loop sets (stopping, and
    failed with its reason) are atomics, read even when the loop cannot
    answer.
    =========================================================================
*/

#ifndef HERALD_METRICS_H_INCLUDED
#define HERALD_METRICS_H_INCLUDED

#include <czmq.h>
#include "herald.h"

typedef struct _herald_metrics_t herald_metrics_t;

//  Bind address (HOST:PORT) now, so that a port in use stops heraldd
//  before it opens the store; nothing is served until herald_metrics_
//  start.  ready_lag: /readyz is 503 for a cluster node whose applied
//  index is more than this behind its commit index.  NULL with err set
//  (HERALD_ERR_UNAVAILABLE: the address cannot be bound).  Caller owns.
herald_metrics_t *
    herald_metrics_new (const char *address, uint64_t ready_lag, herald_error_t *err);

//  Start serving on the HTTP thread.  0, or -1 with err set.
int
    herald_metrics_start (herald_metrics_t *self, herald_error_t *err);

//  The loop's end of the STATUS channel (owned by self; only the broker's
//  loop uses it): a message is a request's rid (8 bytes, big endian),
//  answered with the body of a STATUS reply with that rid and every key,
//  histograms included, sent with ZMQ_DONTWAIT.
zsock_t *
    herald_metrics_loop_sock (herald_metrics_t *self);

//  The broker is stopping (SIGTERM): /readyz says so from now on.
void
    herald_metrics_set_stopping (herald_metrics_t *self);

//  The broker failed (reason: static text) and is stopping.
void
    herald_metrics_set_failed (herald_metrics_t *self, const char *reason);

//  The port actually bound (for the log).
int
    herald_metrics_port (herald_metrics_t *self);

//  Stop serving (waits for the HTTP thread), close, free; NULL-safe.
//  Call after the broker's loop has ended.
void
    herald_metrics_destroy (herald_metrics_t **self_p);

#endif
