/*  =========================================================================
    store_writer - appends to a store forever, reporting every ACK

    The other half of test_herald_store_crash: the test starts this program,
    reads what it acknowledges, and kills it with SIGKILL mid-append.

        store_writer DIR sync|async SEED

    Opens the store in DIR and loops forever: each round is one append call
    of one to three batches (the broker's group commit), each batch 1..50
    events over 20 topics.  Every event has a fresh id that encodes SEED
    and a counter (id = SEED as 8 bytes BE | counter as 8 bytes BE), so ids
    of different runs never collide.  About every 7th batch resends an
    earlier batch's events instead (duplicates), and now and then a batch
    carries one id twice.  Only once append has returned does it print, for
    every event of every batch in request order,

        <id as 32 hex digits> <seq> <ver>\n

    and fflush stdout: each line is an acknowledged event.  Exits 2 when
    the store will not open, 3 when an append fails or a result is wrong.
    =========================================================================
*/

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

#define TOPICS      20
#define BATCH_MAX   50
#define GROUP_MAX   3

typedef struct {
    herald_event_t events [BATCH_MAX];
    uint8_t data [BATCH_MAX][64];
    size_t count;
} s_batch_t;

int
main (int argc, char *argv [])
{
    if (argc != 4 || (strcmp (argv [2], "sync") && strcmp (argv [2], "async"))) {
        fprintf (stderr, "usage: store_writer DIR sync|async SEED\n");
        return 1;
    }
    uint64_t seed = strtoull (argv [3], NULL, 0);
    herald_store_options_t options = {
        .durability = strcmp (argv [2], "sync")? HERALD_DURABILITY_ASYNC: HERALD_DURABILITY_SYNC
    };
    herald_error_t err;
    memset (&err, 0, sizeof err);
    herald_store_t *store = herald_store_open (argv [1], &options, &err);
    if (!store) {
        fprintf (stderr, "store_writer: open %s: %d %s\n", argv [1], err.code, err.message);
        return 2;
    }
    static char topics [TOPICS][24];
    for (size_t index = 0; index < TOPICS; index++)
        snprintf (topics [index], sizeof topics [index], "crash.t%02zu", index);

    static s_batch_t group [GROUP_MAX];
    static s_batch_t previous;             //  the last new batch, resent as duplicates
    static herald_append_result_t results [GROUP_MAX][BATCH_MAX];
    herald_batch_t batches [GROUP_MAX];
    uint64_t rng = seed ^ 0x5eed5eed5eed5eedULL;
    uint64_t counter = 0;
    uint64_t batch_number = 0;

    while (true) {
        size_t group_size = 1 + tu_rand (&rng) % GROUP_MAX;
        for (size_t member = 0; member < group_size; member++) {
            s_batch_t *batch = &group [member];
            batch_number++;
            if (batch_number % 7 == 0 && previous.count > 0) {
                *batch = previous;             //  a retry: every event a duplicate
                for (size_t index = 0; index < batch->count; index++)
                    batch->events [index].data = batch->data [index];
            }
            else {
                batch->count = 1 + tu_rand (&rng) % BATCH_MAX;
                for (size_t index = 0; index < batch->count; index++) {
                    herald_event_t *event = &batch->events [index];
                    memset (event, 0, sizeof *event);
                    tu_put_be64 (event->id, seed);
                    tu_put_be64 (event->id + 8, ++counter);
                    const char *topic = topics [tu_rand (&rng) % TOPICS];
                    event->topic = topic;
                    event->topic_len = strlen (topic);
                    size_t data_len = tu_rand (&rng) % sizeof batch->data [index];
                    memset (batch->data [index], (int) (counter & 0xff), data_len);
                    event->data = batch->data [index];
                    event->data_len = data_len;
                }
                //  Now and then one id twice in a batch
                if (batch->count > 2 && tu_rand (&rng) % 5 == 0)
                    memcpy (batch->events [batch->count - 1].id, batch->events [0].id,
                            HERALD_ID_BYTES);
                previous = *batch;
            }
            batches [member] = (herald_batch_t) {
                .events = batch->events, .count = batch->count, .results = results [member]
            };
        }
        memset (&err, 0, sizeof err);
        herald_err rc = herald_store_append (store, batches, group_size, &err);
        if (rc != HERALD_OK) {
            fprintf (stderr, "store_writer: append: %d %s\n", rc, err.message);
            return 3;
        }
        for (size_t member = 0; member < group_size; member++) {
            if (batches [member].status != HERALD_OK) {
                fprintf (stderr, "store_writer: batch status %d\n", batches [member].status);
                return 3;
            }
            for (size_t index = 0; index < batches [member].count; index++) {
                char hex [2 * HERALD_ID_BYTES + 1];
                tu_hex (batches [member].events [index].id, HERALD_ID_BYTES, hex);
                printf ("%s %" PRIu64 " %" PRIu64 "\n", hex, results [member][index].seq,
                        results [member][index].ver);
            }
        }
        if (fflush (stdout) != 0)
            return 3;
    }
}
