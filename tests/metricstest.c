/*  =========================================================================
    metricstest - the criterion side of the heraldd --metrics tests: GET,
    a strict scrape, a sample's value, /readyz waited for (metricstest.h)
    =========================================================================
*/

#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>
#include <czmq.h>

#include "metricstest.h"

void
mt_get (int port, const char *path, const char *accept, pt_response_t *response)
{
    cr_assert_eq (pt_http (port, "GET", path, accept, response, MT_HTTP_MS), 0,
                  "no HTTP response to GET %s on port %d", path, port);
}

void
mt_scrape (int port, bool openmetrics, pt_text_t *text)
{
    pt_response_t response;
    mt_get (port, "/metrics", openmetrics? "application/openmetrics-text; version=1.0.0,"
                                           "text/plain;q=0.5": NULL, &response);
    cr_assert_eq (response.status, 200, "GET /metrics: %d %s", response.status,
                  response.body);
    cr_assert (strstr (response.content_type, openmetrics? "application/openmetrics-text"
                                                          : "text/plain; version=0.0.4"),
               "Content-Type: %s", response.content_type);
    char why [PT_WHY_MAX];
    int rc = pt_parse (response.body, response.body_len, openmetrics, text, why, sizeof why);
    cr_assert_eq (rc, 0, "/metrics is not strict %s text: %s\n%s", openmetrics
                  ? "OpenMetrics": "Prometheus", why, response.body);
    pt_response_fini (&response);
}

uint64_t
mt_value (const pt_text_t *text, const char *name, const char *labels)
{
    const pt_sample_t *sample = pt_find (text, name, labels);
    cr_assert_not_null (sample, "no sample %s{%s} in /metrics", name, labels);
    cr_assert (sample->whole, "%s{%s} is not a whole number", name, labels);
    return sample->integer;
}

char *
mt_wait_ready (int port, int want, const char *contains)
{
    int64_t deadline = zclock_mono () + MT_READY_MS;
    char *last = NULL;
    int status = 0;
    while (zclock_mono () < deadline) {
        pt_response_t response;
        if (pt_http (port, "GET", "/readyz", NULL, &response, MT_HTTP_MS) == 0) {
            status = response.status;
            free (last);
            last = response.body;
            response.body = NULL;
            if (status == want && (!contains || strstr (last, contains)))
                return last;
        }
        pt_response_fini (&response);
        zclock_sleep (50);
    }
    cr_assert_fail ("/readyz on port %d did not answer %d%s%s within %d ms; last: %d %s",
                    port, want, contains? " with ": "", contains? contains: "", MT_READY_MS,
                    status, last? last: "(no answer)");
    return NULL;
}
