/*  =========================================================================
    promtext - a tiny HTTP/1.1 client and a strict parser of the
    Prometheus (0.0.4) and OpenMetrics text formats, for the tests of
    heraldd --metrics

    The client is plain sockets on 127.0.0.1: one request per connection
    (Connection: close), the whole response read, the status line,
    Content-Type, Allow and the body kept.  The parser is stricter than
    Prometheus itself, so that what heraldd serves is the canonical form:
      - every line ends with \n and is `# HELP name text`, `# TYPE name
        type`, `# EOF` (OpenMetrics, last), or `name{labels} value`;
      - names and label names are [a-zA-Z_:][a-zA-Z0-9_:]* ([a-zA-Z_]... for
        labels), label values escape only \\, \" and \n, values are
        numbers (or +Inf, -Inf, NaN);
      - every sample belongs to a family with a TYPE that came before it,
        a family's samples are together, TYPE and HELP once per family, no
        sample twice;
      - a counter's sample ends in _total (0.0.4: so does its family);
        OpenMetrics names the family without it; an info family's sample
        ends in _info;
      - a histogram has buckets with strictly increasing `le`, cumulative
        counts, the last le="+Inf", and _sum and _count, _count equal to
        the +Inf bucket.
    Nothing here uses criterion: failures come back with why filled.
    =========================================================================
*/

#ifndef HERALD_PROMTEXT_H_INCLUDED
#define HERALD_PROMTEXT_H_INCLUDED

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PT_WHY_MAX      512

//  ---------------------------------------------------------------------
//  HTTP

typedef struct {
    int status;                     //  the status line's code
    char content_type [160];        //  "" when absent
    char allow [64];
    char *body;                     //  NUL-terminated, owned
    size_t body_len;
} pt_response_t;

//  method path on 127.0.0.1:port (accept: the Accept header, or NULL),
//  the whole response within timeout_ms.  0, or -1 (no connection, no
//  complete response: a status line and headers at least).
int
    pt_http (int port, const char *method, const char *path, const char *accept,
             pt_response_t *response, int timeout_ms);

//  The bytes of request sent as they are (a malformed request, say).
int
    pt_http_raw (int port, const char *request, size_t len, pt_response_t *response,
                 int timeout_ms);

void
    pt_response_fini (pt_response_t *response);

//  ---------------------------------------------------------------------
//  The text format

typedef struct {
    char name [160];
    char labels [512];              //  as written between the braces, "" when none
    char le [32];                   //  histogram buckets: the le label's value
    double value;
    uint64_t integer;               //  the value when it is a whole number
    bool whole;
    size_t family;                  //  index in families
} pt_sample_t;

typedef struct {
    char name [160];
    char type [16];                 //  counter, gauge, histogram, info, ...
    bool has_help;
} pt_family_t;

typedef struct {
    pt_sample_t *samples;
    size_t count;
    pt_family_t *families;
    size_t family_count;
} pt_text_t;

//  Parse text[0..len) strictly (openmetrics: that format's rules).  0, or
//  -1 with why filled (the line and what is wrong); out is filled either
//  way (pt_text_fini).
int
    pt_parse (const char *text, size_t len, bool openmetrics, pt_text_t *out, char *why,
              size_t why_size);

//  The sample name{labels} (labels "" for none), or NULL.
const pt_sample_t *
    pt_find (const pt_text_t *text, const char *name, const char *labels);

void
    pt_text_fini (pt_text_t *text);

#endif
