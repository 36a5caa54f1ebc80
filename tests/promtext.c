/*  =========================================================================
    promtext - a tiny HTTP/1.1 client and a strict parser of the
    Prometheus (0.0.4) and OpenMetrics text formats (see promtext.h)
    =========================================================================
*/

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "promtext.h"

#define RESPONSE_MAX    (16u << 20)

//  ---------------------------------------------------------------------
//  HTTP

static int64_t
s_now_ms (void)
{
    struct timespec now;
    clock_gettime (CLOCK_MONOTONIC, &now);
    return (int64_t) now.tv_sec * 1000 + now.tv_nsec / 1000000;
}

//  The value of header name in head[0..len) into out ("" when absent).
static void
s_header (const char *head, const char *name, char *out, size_t size)
{
    out [0] = 0;
    size_t name_len = strlen (name);
    const char *line = strstr (head, "\r\n");
    while (line && line [2] != '\r') {
        line += 2;
        if (strncasecmp (line, name, name_len) == 0 && line [name_len] == ':') {
            const char *value = line + name_len + 1;
            while (*value == ' ')
                value++;
            const char *end = strstr (value, "\r\n");
            size_t len = end? (size_t) (end - value): strlen (value);
            snprintf (out, size, "%.*s", (int) len, value);
            return;
        }
        line = strstr (line, "\r\n");
    }
}

int
pt_http_raw (int port, const char *request, size_t len, pt_response_t *response,
             int timeout_ms)
{
    memset (response, 0, sizeof (*response));
    int fd = socket (AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        return -1;
    struct sockaddr_in to = { .sin_family = AF_INET, .sin_port = htons ((uint16_t) port) };
    to.sin_addr.s_addr = htonl (INADDR_LOOPBACK);
    if (connect (fd, (struct sockaddr *) &to, sizeof (to)) != 0) {
        close (fd);
        return -1;
    }
    size_t sent = 0;
    while (sent < len) {
        ssize_t wrote = send (fd, request + sent, len - sent, MSG_NOSIGNAL);
        if (wrote <= 0) {
            close (fd);
            return -1;
        }
        sent += (size_t) wrote;
    }
    size_t size = 65536, used = 0;
    char *data = (char *) malloc (size);
    int64_t deadline = s_now_ms () + timeout_ms;
    bool done = false;
    while (data && !done && s_now_ms () < deadline) {
        struct pollfd item = { .fd = fd, .events = POLLIN };
        int ready = poll (&item, 1, (int) (deadline - s_now_ms ()));
        if (ready < 0 && errno == EINTR)
            continue;
        if (ready <= 0)
            break;
        if (used + 1 >= size) {
            if (size >= RESPONSE_MAX)
                break;
            char *bigger = (char *) realloc (data, size * 2);
            if (!bigger)
                break;
            data = bigger;
            size *= 2;
        }
        ssize_t got = recv (fd, data + used, size - used - 1, 0);
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0)
            done = true;                //  the server closed: the response is whole
        else
            used += (size_t) got;
    }
    close (fd);
    if (!data)
        return -1;
    data [used] = 0;
    char *end = strstr (data, "\r\n\r\n");
    if (!done || !end || sscanf (data, "HTTP/1.%*d %d", &response->status) != 1) {
        free (data);
        return -1;
    }
    *end = 0;
    s_header (data, "Content-Type", response->content_type, sizeof (response->content_type));
    s_header (data, "Allow", response->allow, sizeof (response->allow));
    response->body_len = used - (size_t) (end + 4 - data);
    response->body = (char *) malloc (response->body_len + 1);
    if (!response->body) {
        free (data);
        return -1;
    }
    memcpy (response->body, end + 4, response->body_len);
    response->body [response->body_len] = 0;
    free (data);
    return 0;
}

int
pt_http (int port, const char *method, const char *path, const char *accept,
         pt_response_t *response, int timeout_ms)
{
    char request [1024];
    int len = snprintf (request, sizeof (request), "%s %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n"
                        "Connection: close\r\n%s%s%s\r\n", method, path, port,
                        accept? "Accept: ": "", accept? accept: "", accept? "\r\n": "");
    return pt_http_raw (port, request, (size_t) len, response, timeout_ms);
}

void
pt_response_fini (pt_response_t *response)
{
    free (response->body);
    memset (response, 0, sizeof (*response));
}

//  ---------------------------------------------------------------------
//  Parsing

static int
s_fail (char *why, size_t size, size_t line, const char *format, ...)
{
    int at = snprintf (why, size, "line %zu: ", line);
    va_list args;
    va_start (args, format);
    if (at > 0 && (size_t) at < size)
        vsnprintf (why + at, size - (size_t) at, format, args);
    va_end (args);
    return -1;
}

static bool
s_name_ok (const char *name, bool label)
{
    if (!*name || isdigit ((unsigned char) *name))
        return false;
    for (const char *cursor = name; *cursor; cursor++)
        if (!isalnum ((unsigned char) *cursor) && *cursor != '_' && (label || *cursor != ':'))
            return false;
    return true;
}

static bool
s_ends (const char *text, const char *suffix)
{
    size_t len = strlen (text), suffix_len = strlen (suffix);
    return len > suffix_len && strcmp (text + len - suffix_len, suffix) == 0;
}

static long
s_family_find (const pt_text_t *out, const char *name)
{
    for (size_t index = 0; index < out->family_count; index++)
        if (strcmp (out->families [index].name, name) == 0)
            return (long) index;
    return -1;
}

//  The family a sample name belongs to (by its TYPE), or -1.
static long
s_family_of (const pt_text_t *out, const char *name, bool openmetrics)
{
    long found = s_family_find (out, name);
    if (found >= 0) {
        const char *type = out->families [found].type;
        //  A sample named as its family: gauges, untyped, and 0.0.4's counters
        if (strcmp (type, "gauge") == 0 || strcmp (type, "untyped") == 0
        ||  strcmp (type, "unknown") == 0 || (!openmetrics && strcmp (type, "counter") == 0))
            return found;
    }
    static const char *suffixes [] = { "_bucket", "_sum", "_count", "_total", "_info" };
    for (size_t index = 0; index < 5; index++) {
        if (!s_ends (name, suffixes [index]))
            continue;
        char base [160];
        snprintf (base, sizeof (base), "%.*s", (int) (strlen (name) - strlen (suffixes [index])),
                  name);
        long family = s_family_find (out, base);
        if (family < 0)
            continue;
        const char *type = out->families [family].type;
        if (strcmp (type, "histogram") == 0 && index < 3)
            return family;
        if (openmetrics && strcmp (type, "counter") == 0 && index == 3)
            return family;
        if (openmetrics && strcmp (type, "info") == 0 && index == 4)
            return family;
    }
    return -1;
}

//  Labels at *cursor (after '{') up to '}': checked, copied into sample.
static const char *
s_labels (const char *cursor, pt_sample_t *sample, char *problem, size_t size)
{
    const char *start = cursor;
    while (*cursor != '}') {
        char name [64];
        size_t len = 0;
        while (*cursor && *cursor != '=' && len < sizeof (name) - 1)
            name [len++] = *cursor++;
        name [len] = 0;
        if (*cursor != '=' || !s_name_ok (name, true)) {
            snprintf (problem, size, "a bad label name '%s'", name);
            return NULL;
        }
        cursor++;
        if (*cursor++ != '"') {
            snprintf (problem, size, "label %s: its value is not quoted", name);
            return NULL;
        }
        char value [256];
        len = 0;
        while (*cursor && *cursor != '"') {
            if (*cursor == '\n') {
                snprintf (problem, size, "label %s: a raw newline", name);
                return NULL;
            }
            if (*cursor == '\\') {
                cursor++;
                if (*cursor != '\\' && *cursor != '"' && *cursor != 'n') {
                    snprintf (problem, size, "label %s: a bad escape \\%c", name, *cursor);
                    return NULL;
                }
            }
            if (len < sizeof (value) - 1)
                value [len++] = *cursor;
            cursor++;
        }
        value [len] = 0;
        if (*cursor++ != '"') {
            snprintf (problem, size, "label %s: its value does not end", name);
            return NULL;
        }
        if (strcmp (name, "le") == 0)
            snprintf (sample->le, sizeof (sample->le), "%.31s", value);
        if (*cursor == ',')
            cursor++;
        else
        if (*cursor != '}') {
            snprintf (problem, size, "labels: ',' or '}' expected after %s", name);
            return NULL;
        }
    }
    snprintf (sample->labels, sizeof (sample->labels), "%.*s", (int) (cursor - start), start);
    return cursor + 1;
}

static bool
s_value (const char *text, double *value)
{
    if (strcmp (text, "+Inf") == 0) {
        *value = INFINITY;
        return true;
    }
    if (strcmp (text, "-Inf") == 0) {
        *value = -INFINITY;
        return true;
    }
    if (strcmp (text, "NaN") == 0) {
        *value = NAN;
        return true;
    }
    if (!*text || isspace ((unsigned char) *text))
        return false;
    char *end = NULL;
    errno = 0;
    *value = strtod (text, &end);
    return end && !*end && errno == 0;
}

//  Histogram families, once every line is read.
static int
s_check_histograms (const pt_text_t *out, char *why, size_t size)
{
    for (size_t family = 0; family < out->family_count; family++) {
        if (strcmp (out->families [family].type, "histogram") != 0)
            continue;
        const char *name = out->families [family].name;
        double last_le = -INFINITY, last_count = 0, inf = -1, count = -1;
        bool sum = false;
        size_t buckets = 0;
        for (size_t index = 0; index < out->count; index++) {
            const pt_sample_t *sample = &out->samples [index];
            if (sample->family != family)
                continue;
            if (s_ends (sample->name, "_bucket")) {
                double le;
                if (!*sample->le || !s_value (sample->le, &le) || le <= last_le)
                    return s_fail (why, size, 0, "%s: bucket le=\"%s\" is not above the one "
                                   "before", name, sample->le);
                if (sample->value < last_count)
                    return s_fail (why, size, 0, "%s: bucket le=\"%s\" (%g) is below the one "
                                   "before (%g): not cumulative", name, sample->le,
                                   sample->value, last_count);
                last_le = le;
                last_count = sample->value;
                if (isinf (le))
                    inf = sample->value;
                buckets++;
            }
            else
            if (s_ends (sample->name, "_sum"))
                sum = true;
            else
            if (s_ends (sample->name, "_count"))
                count = sample->value;
        }
        if (!buckets || !isinf (last_le))
            return s_fail (why, size, 0, "%s: its buckets do not end with le=\"+Inf\"", name);
        if (!sum || count < 0)
            return s_fail (why, size, 0, "%s: no _sum or no _count", name);
        if (count != inf)
            return s_fail (why, size, 0, "%s: _count %g is not the +Inf bucket's %g", name,
                           count, inf);
    }
    return 0;
}

int
pt_parse (const char *text, size_t len, bool openmetrics, pt_text_t *out, char *why,
          size_t why_size)
{
    memset (out, 0, sizeof (*out));
    size_t capacity = 0, family_capacity = 0, number = 0;
    const char *cursor = text, *end = text + len;
    long current = -1;                  //  the family whose samples come now
    bool eof = false;
    if (len == 0 || text [len - 1] != '\n')
        return s_fail (why, why_size, 0, "the text does not end with a newline");
    while (cursor < end) {
        number++;
        const char *newline = memchr (cursor, '\n', (size_t) (end - cursor));
        char line [2048];
        size_t line_len = (size_t) (newline - cursor);
        if (line_len >= sizeof (line))
            return s_fail (why, why_size, number, "longer than %zu bytes", sizeof (line));
        memcpy (line, cursor, line_len);
        line [line_len] = 0;
        cursor = newline + 1;
        if (eof)
            return s_fail (why, why_size, number, "after # EOF");
        if (memchr (line, 0, line_len) || line_len == 0)
            return s_fail (why, why_size, number, "empty, or a NUL byte");
        if (line [0] == '#') {
            char kind [8], name [160];
            int used = 0;
            if (strcmp (line, "# EOF") == 0 && openmetrics) {
                eof = true;
                continue;
            }
            if (sscanf (line, "# %7s %159s %n", kind, name, &used) < 2
            ||  (strcmp (kind, "HELP") != 0 && strcmp (kind, "TYPE") != 0))
                return s_fail (why, why_size, number, "a comment that is not HELP or TYPE: %s",
                               line);
            if (!s_name_ok (name, false))
                return s_fail (why, why_size, number, "a bad metric name '%s'", name);
            long family = s_family_find (out, name);
            if (family < 0) {
                if (out->family_count == family_capacity) {
                    family_capacity = family_capacity? 2 * family_capacity: 64;
                    pt_family_t *grown = (pt_family_t *) realloc (
                        out->families, family_capacity * sizeof (pt_family_t));
                    if (!grown)
                        return s_fail (why, why_size, number, "out of memory");
                    out->families = grown;
                }
                family = (long) out->family_count++;
                memset (&out->families [family], 0, sizeof (pt_family_t));
                snprintf (out->families [family].name, sizeof (out->families [family].name),
                          "%s", name);
            }
            else
            if (family != current)
                return s_fail (why, why_size, number, "%s: metadata after its samples or "
                               "another family's", name);
            pt_family_t *entry = &out->families [family];
            for (size_t index = 0; index < out->count; index++)
                if (out->samples [index].family == (size_t) family)
                    return s_fail (why, why_size, number, "%s: metadata after its samples",
                                   name);
            if (strcmp (kind, "HELP") == 0) {
                if (entry->has_help)
                    return s_fail (why, why_size, number, "%s: a second HELP", name);
                entry->has_help = true;
            }
            else {
                const char *type = line + used;
                if (*entry->type)
                    return s_fail (why, why_size, number, "%s: a second TYPE", name);
                static const char *types [] = { "counter", "gauge", "histogram", "summary",
                                                "untyped", "info", "unknown", "stateset",
                                                "gaugehistogram" };
                bool known = false;
                for (size_t index = 0; index < 9; index++)
                    known = known || strcmp (type, types [index]) == 0;
                bool om_only = strcmp (type, "info") == 0 || strcmp (type, "unknown") == 0
                            || strcmp (type, "stateset") == 0
                            || strcmp (type, "gaugehistogram") == 0;
                if (!known || (!openmetrics && om_only) || (openmetrics
                                                            && strcmp (type, "untyped") == 0))
                    return s_fail (why, why_size, number, "%s: unknown type '%s'", name, type);
                snprintf (entry->type, sizeof (entry->type), "%s", type);
                if (!openmetrics && strcmp (type, "counter") == 0 && !s_ends (name, "_total"))
                    return s_fail (why, why_size, number, "counter %s does not end in _total",
                                   name);
                if (openmetrics && strcmp (type, "counter") == 0 && s_ends (name, "_total"))
                    return s_fail (why, why_size, number, "OpenMetrics counter family %s "
                                   "ends in _total", name);
            }
            current = family;
            continue;
        }
        //  A sample: name{labels} value
        pt_sample_t sample;
        memset (&sample, 0, sizeof (sample));
        size_t name_len = strcspn (line, "{ ");
        if (name_len == 0 || name_len >= sizeof (sample.name))
            return s_fail (why, why_size, number, "no metric name: %s", line);
        memcpy (sample.name, line, name_len);
        if (!s_name_ok (sample.name, false))
            return s_fail (why, why_size, number, "a bad metric name '%s'", sample.name);
        const char *rest = line + name_len;
        char problem [256];
        if (*rest == '{' && !(rest = s_labels (rest + 1, &sample, problem, sizeof (problem))))
            return s_fail (why, why_size, number, "%s: %s", sample.name, problem);
        if (*rest != ' ')
            return s_fail (why, why_size, number, "%s: no single space before the value",
                           sample.name);
        rest++;
        if (strchr (rest, ' '))
            return s_fail (why, why_size, number, "%s: more than a value (timestamps are not "
                           "expected): %s", sample.name, rest);
        if (!s_value (rest, &sample.value))
            return s_fail (why, why_size, number, "%s: '%s' is not a number", sample.name,
                           rest);
        sample.whole = sample.value >= 0 && sample.value < 1.8e19
                    && sample.value == floor (sample.value);
        if (sample.whole)
            sample.integer = strtoull (rest, NULL, 10);
        long family = s_family_of (out, sample.name, openmetrics);
        if (family < 0 || !*out->families [family].type)
            return s_fail (why, why_size, number, "%s: no TYPE before it", sample.name);
        if (family != current)
            return s_fail (why, why_size, number, "%s: its family's samples are not together",
                           sample.name);
        const char *type = out->families [family].type;
        if (strcmp (type, "counter") == 0 && !s_ends (sample.name, "_total"))
            return s_fail (why, why_size, number, "counter sample %s does not end in _total",
                           sample.name);
        if (strcmp (type, "counter") == 0 && (sample.value < 0 || isnan (sample.value)))
            return s_fail (why, why_size, number, "counter %s is negative", sample.name);
        if (pt_find (out, sample.name, sample.labels))
            return s_fail (why, why_size, number, "%s{%s} twice", sample.name, sample.labels);
        sample.family = (size_t) family;
        if (out->count == capacity) {
            capacity = capacity? 2 * capacity: 256;
            pt_sample_t *grown = (pt_sample_t *) realloc (out->samples,
                                                          capacity * sizeof (pt_sample_t));
            if (!grown)
                return s_fail (why, why_size, number, "out of memory");
            out->samples = grown;
        }
        out->samples [out->count++] = sample;
    }
    if (openmetrics && !eof)
        return s_fail (why, why_size, number, "no # EOF at the end");
    for (size_t index = 0; index < out->family_count; index++)
        if (!*out->families [index].type)
            return s_fail (why, why_size, 0, "%s: HELP but no TYPE", out->families [index].name);
    return s_check_histograms (out, why, why_size);
}

const pt_sample_t *
pt_find (const pt_text_t *text, const char *name, const char *labels)
{
    for (size_t index = 0; index < text->count; index++)
        if (strcmp (text->samples [index].name, name) == 0
        &&  strcmp (text->samples [index].labels, labels) == 0)
            return &text->samples [index];
    return NULL;
}

void
pt_text_fini (pt_text_t *text)
{
    free (text->samples);
    free (text->families);
    memset (text, 0, sizeof (*text));
}
