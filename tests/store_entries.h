/*  =========================================================================
    store_entries - the raft entries of the store's cluster tests

    What raft entry number index holds is a pure function of index, so
    that tests/store_entry_writer (a process the test kills with SIGKILL),
    a restarted writer and tests/test_herald_store_cluster all agree on
    it.  Up to 3 batches of up to 12 events over 8 topics; every 5th
    entry resends the one before (duplicates, when that one stored
    events); every 7th has events whose `expect` fails; every 11th is a
    barrier (no events: herald_store_set_applied); some events carry type,
    schema and meta, some repeat an id within their batch; the proposed ts
    goes back now and then.  No criterion: the writer includes it too.
    =========================================================================
*/

#ifndef HERALD_STORE_ENTRIES_H_INCLUDED
#define HERALD_STORE_ENTRIES_H_INCLUDED

#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include "testutil.h"

#define ENTRY_BATCHES   3
#define ENTRY_EVENTS    12
#define ENTRY_TOPICS    8

typedef struct {
    herald_event_t events [ENTRY_BATCHES][ENTRY_EVENTS];
    herald_append_result_t results [ENTRY_BATCHES][ENTRY_EVENTS];
    char topics [ENTRY_BATCHES][ENTRY_EVENTS][16];
    char data [ENTRY_BATCHES][ENTRY_EVENTS][48];
    herald_kv_t meta [ENTRY_BATCHES][ENTRY_EVENTS][2];
    herald_batch_t batches [ENTRY_BATCHES];
    size_t count;
    uint64_t ts;
    bool barrier;
} se_entry_t;

static inline void
se_make_entry (uint64_t index, se_entry_t *entry)
{
    memset (entry, 0, sizeof *entry);
    entry->ts = 1700000000000000000ULL + index * 1000 - (index % 4 == 3? 5000: 0);
    if (index % 11 == 0) {
        entry->barrier = true;
        return;
    }
    uint64_t source = index % 5 == 0? index - 1: index;
    uint64_t state = source * 0x9E3779B97F4A7C15ULL + 1;
    entry->count = 1 + tu_rand (&state) % ENTRY_BATCHES;
    for (size_t b = 0; b < entry->count; b++) {
        size_t count = 1 + tu_rand (&state) % ENTRY_EVENTS;
        for (size_t i = 0; i < count; i++) {
            herald_event_t *event = &entry->events [b][i];
            snprintf (entry->topics [b][i], sizeof entry->topics [b][i], "c.t%" PRIu64,
                      tu_rand (&state) % ENTRY_TOPICS);
            snprintf (entry->data [b][i], sizeof entry->data [b][i], "entry %" PRIu64 " %zu.%zu %"
                      PRIu64, source, b, i, tu_rand (&state));
            *event = tu_event (entry->topics [b][i], entry->data [b][i]);
            tu_put_be64 (event->id, source);
            tu_put_be64 (event->id + 8, b * 100 + i);
            uint64_t kind = tu_rand (&state) % 10;
            if (kind == 0 && index % 7 == 0)
                event->has_expect = true, event->expect = 1000000;      //  fails
            else
            if (kind == 1) {
                event->type = "order.placed";
                event->type_len = 12;
                event->has_schema = true;
                event->schema = 1 + tu_rand (&state) % 3;
                entry->meta [b][i][0] = (herald_kv_t) { "k", 1, "v", 1 };
                entry->meta [b][i][1] = (herald_kv_t) { "trace", 5, entry->data [b][i], 8 };
                event->meta = entry->meta [b][i];
                event->meta_count = 1 + tu_rand (&state) % 2;
            }
            else
            if (kind == 2 && i > 0)
                memcpy (event->id, entry->events [b][0].id, HERALD_ID_BYTES);
        }
        entry->batches [b] = (herald_batch_t) {
            .events = entry->events [b], .count = count, .results = entry->results [b]
        };
    }
}

//  Apply entry index (made into entry); returns the call's result.
static inline herald_err
se_apply_entry (herald_store_t *store, uint64_t index, se_entry_t *entry, herald_error_t *err)
{
    se_make_entry (index, entry);
    if (entry->barrier)
        return herald_store_set_applied (store, index, err);
    return herald_store_apply_entry (store, entry->batches, entry->count, entry->ts, index, err);
}

#endif
