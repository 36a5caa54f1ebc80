/*  =========================================================================
    herald_histogram - a fixed-bucket histogram of uints, for STATUS

    The broker's loop observes values (µs a commit took, µs from a PUBLISH
    read to its ACK sent, events per commit) into buckets fixed at start;
    STATUS sends them under its `histograms` key when asked (docs/
    protocol.md), and the exposition text (herald_exposition) turns them
    into Prometheus histograms.  One thread owns a histogram: observing is
    a few compares and three additions, no lock, no allocation.
    =========================================================================
*/

#ifndef HERALD_HISTOGRAM_H_INCLUDED
#define HERALD_HISTOGRAM_H_INCLUDED

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <msgpack.h>

#define HERALD_HISTOGRAM_BOUNDS 20      //  at most this many bucket bounds

typedef struct {
    const char *name;                   //  its key in STATUS `histograms` (static text)
    const uint64_t *bounds;             //  inclusive upper bounds, ascending (static)
    size_t bound_count;
    uint64_t counts [HERALD_HISTOGRAM_BOUNDS + 1];  //  per bucket; the last: above all
    uint64_t sum;
    uint64_t count;
} herald_histogram_t;

//  Commit time and ACK latency, in µs: 50 µs to 10 s.
extern const uint64_t herald_histogram_us_bounds [];
extern const size_t herald_histogram_us_bound_count;
//  Events per commit: 1 to 8192 (a commit's drain ends at 8192 events).
extern const uint64_t herald_histogram_events_bounds [];
extern const size_t herald_histogram_events_bound_count;

//  Empty, with name and bounds (both static; at most HERALD_HISTOGRAM_BOUNDS).
void
    herald_histogram_init (herald_histogram_t *self, const char *name, const uint64_t *bounds,
                           size_t bound_count);

//  Count value in its bucket (the first bound >= value).
void
    herald_histogram_observe (herald_histogram_t *self, uint64_t value);

//  Pack {bounds: [..], counts: [..], sum, count} (counts per bucket, one
//  more than bounds: the last is above every bound; not cumulative).
void
    herald_histogram_pack (const herald_histogram_t *self, msgpack_packer *pk);

//  Append the STATUS pair `histograms: {NAME: {bounds, counts, sum,
//  count}, ...}` of histograms[0..count) to raw (pre-encoded pairs).
void
    herald_histogram_pack_status (const herald_histogram_t *histograms, size_t count,
                                  msgpack_sbuffer *raw);

//  True when the STATUS request body[0..size) asks for them
//  (histograms: true).
bool
    herald_histogram_wanted (const void *body, size_t size);

#endif
