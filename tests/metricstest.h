/*  =========================================================================
    metricstest - the criterion side of the heraldd --metrics tests

    tests/test_heraldd_metrics.c and tests/test_heraldd_metrics_cluster.c
    talk to heraldd's HTTP endpoint through tests/promtext.h; these
    wrappers fail the test (cr_assert) with what came back when the
    endpoint does not answer as it must.  Every wait is bounded.
    =========================================================================
*/

#ifndef HERALD_METRICSTEST_H_INCLUDED
#define HERALD_METRICSTEST_H_INCLUDED

#include <stdbool.h>
#include <stdint.h>
#include "promtext.h"

#define MT_HTTP_MS      10000       //  for one HTTP response
#define MT_READY_MS     30000       //  for /readyz to flip

//  GET path (accept: the Accept header or NULL) on 127.0.0.1:port; fails
//  when no response comes.  pt_response_fini afterwards.
void
    mt_get (int port, const char *path, const char *accept, pt_response_t *response);

//  GET /metrics (as OpenMetrics when asked), parsed strictly into text;
//  fails with the text when it is not 200, the content type asked for, or
//  strict text.  pt_text_fini afterwards.
void
    mt_scrape (int port, bool openmetrics, pt_text_t *text);

//  The whole value of sample name{labels} (labels "" for none); fails when
//  it is absent or not whole.
uint64_t
    mt_value (const pt_text_t *text, const char *name, const char *labels);

//  Poll /readyz every 50 ms until its status is want and (contains not
//  NULL) its body holds contains, for at most MT_READY_MS; fails with the
//  last answer otherwise.  Returns the body (caller frees).
char *
    mt_wait_ready (int port, int want, const char *contains);

#endif
