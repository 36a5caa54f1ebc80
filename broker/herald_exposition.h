/*  =========================================================================
    herald_exposition - a STATUS reply as Prometheus or OpenMetrics text

    One function turns the body of a STATUS reply (its MessagePack map, as
    it came off the wire) into the text exposition format, so that
    heraldd's /metrics (herald_metrics) and `herald status --format
    prometheus` print the same text from the same reply.  Every key
    becomes a metric: a uint key K is herald_K (herald_K_total for the
    counters), the text keys (role, node, leader, ...) are the labels of
    herald_node_info, an array key counts its entries, and the
    `histograms` map (STATUS {histograms: true}) gives one histogram each,
    µs turned into seconds.  A key this unit does not know is still shown,
    as a gauge.  docs/metrics.md lists the names.
    =========================================================================
*/

#ifndef HERALD_EXPOSITION_H_INCLUDED
#define HERALD_EXPOSITION_H_INCLUDED

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <msgpack.h>

typedef enum {
    HERALD_EXPOSITION_PROMETHEUS,       //  text/plain; version=0.0.4
    HERALD_EXPOSITION_OPENMETRICS       //  application/openmetrics-text; version=1.0.0
} herald_exposition_format_t;

//  Content-Type of format.
const char *
    herald_exposition_content_type (herald_exposition_format_t format);

//  The text for the STATUS reply body[0..size), malloc'd and NUL-terminated
//  (*len its length without the NUL).  NULL when body is not a map (or out
//  of memory).
char *
    herald_exposition_text (const void *body, size_t size, herald_exposition_format_t format,
                            size_t *len);

//  Unpack body[0..size) as one MessagePack map into *map (its arrays and
//  maps in zone), every length checked against the bytes first.  False
//  when it is not exactly one map.
bool
    herald_exposition_unpack (const void *body, size_t size, msgpack_zone *zone,
                              msgpack_object *map);

//  The value of key in a MessagePack map, or NULL.
const msgpack_object *
    herald_exposition_get (const msgpack_object *map, const char *key);

//  A uint key of map into *value: true when present and a uint.
bool
    herald_exposition_uint (const msgpack_object *map, const char *key, uint64_t *value);

#endif
