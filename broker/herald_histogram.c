/*  =========================================================================
    herald_histogram - a fixed-bucket histogram of uints, for STATUS

    Counts are kept per bucket, not cumulative, so an observation touches
    one counter; the exposition text adds them up (Prometheus's buckets
    are cumulative).  Bounds are inclusive, as Prometheus's `le`.
    =========================================================================
*/

#include <assert.h>
#include <string.h>
#include "herald_event.h"
#include "herald_histogram.h"

const uint64_t herald_histogram_us_bounds [] = {
    50, 100, 250, 500, 1000, 2500, 5000, 10000, 25000, 50000, 100000, 250000, 500000,
    1000000, 2500000, 5000000, 10000000
};
const size_t herald_histogram_us_bound_count =
    sizeof (herald_histogram_us_bounds) / sizeof (herald_histogram_us_bounds [0]);

const uint64_t herald_histogram_events_bounds [] = {
    1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192
};
const size_t herald_histogram_events_bound_count =
    sizeof (herald_histogram_events_bounds) / sizeof (herald_histogram_events_bounds [0]);

void
herald_histogram_init (herald_histogram_t *self, const char *name, const uint64_t *bounds,
                       size_t bound_count)
{
    assert (bound_count <= HERALD_HISTOGRAM_BOUNDS);
    memset (self, 0, sizeof (*self));
    self->name = name;
    self->bounds = bounds;
    self->bound_count = bound_count;
}

void
herald_histogram_observe (herald_histogram_t *self, uint64_t value)
{
    size_t index = 0;
    while (index < self->bound_count && value > self->bounds [index])
        index++;
    self->counts [index]++;
    self->sum += value;
    self->count++;
}

static void
s_pack_str (msgpack_packer *pk, const char *text)
{
    size_t len = strlen (text);
    msgpack_pack_str (pk, len);
    msgpack_pack_str_body (pk, text, len);
}

void
herald_histogram_pack (const herald_histogram_t *self, msgpack_packer *pk)
{
    msgpack_pack_map (pk, 4);
    s_pack_str (pk, "bounds");
    msgpack_pack_array (pk, self->bound_count);
    for (size_t index = 0; index < self->bound_count; index++)
        msgpack_pack_uint64 (pk, self->bounds [index]);
    s_pack_str (pk, "counts");
    msgpack_pack_array (pk, self->bound_count + 1);
    for (size_t index = 0; index <= self->bound_count; index++)
        msgpack_pack_uint64 (pk, self->counts [index]);
    s_pack_str (pk, "sum");
    msgpack_pack_uint64 (pk, self->sum);
    s_pack_str (pk, "count");
    msgpack_pack_uint64 (pk, self->count);
}

void
herald_histogram_pack_status (const herald_histogram_t *histograms, size_t count,
                              msgpack_sbuffer *raw)
{
    msgpack_packer pk;
    msgpack_packer_init (&pk, raw, msgpack_sbuffer_write);
    s_pack_str (&pk, "histograms");
    msgpack_pack_map (&pk, count);
    for (size_t index = 0; index < count; index++) {
        s_pack_str (&pk, histograms [index].name);
        herald_histogram_pack (&histograms [index], &pk);
    }
}

bool
herald_histogram_wanted (const void *body, size_t size)
{
    msgpack_zone zone;
    msgpack_zone_init (&zone, 1024);
    msgpack_object root;
    herald_error_t err = { 0 };
    bool wanted = false;
    //  Lengths checked against the bytes first (herald_event_unpack)
    if (herald_event_unpack (body, size, &zone, &root, "body", &err) == HERALD_OK
    &&  root.type == MSGPACK_OBJECT_MAP) {
        const msgpack_object_map *map = &root.via.map;
        for (uint32_t index = 0; index < map->size; index++) {
            const msgpack_object *key = &map->ptr [index].key;
            const msgpack_object *value = &map->ptr [index].val;
            if (key->type == MSGPACK_OBJECT_STR && key->via.str.size == 10
            &&  memcmp (key->via.str.ptr, "histograms", 10) == 0)
                wanted = value->type == MSGPACK_OBJECT_BOOLEAN && value->via.boolean;
        }
    }
    msgpack_zone_destroy (&zone);
    return wanted;
}
