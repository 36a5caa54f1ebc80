/*  =========================================================================
    test_herald_agent_batch_dups - a batch handler and repeated ids

    On the fake broker (tests/fakebroker.c), which can store an id twice
    (a log restored or replaced under a running service): an event whose
    id was handled before is dropped as a duplicate with a batch handler
    as with a per-event one, also when both are in the same delivery batch
    (the dedup window knows only committed ids: the run ends before it).
    =========================================================================
*/

#include <criterion/criterion.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "fakebroker.h"
#include "testutil.h"

#define WAIT_MS     FB_WAIT_MS

static size_t s_calls;

static void
s_setup (void)
{
    fb_setup ("agent-batch-dups", "batch-dups");
    s_calls = 0;
}

TestSuite (herald_agent_batch_dups, .init = s_setup, .fini = fb_teardown, .timeout = 60);

static int
s_batch (herald_delivery_batch_t *batch, void *arg)
{
    s_calls++;
    for (size_t index = 0; index < batch->count; index++)
        au_record (&batch->events [index], arg);
    return HERALD_OK;
}

static void
s_subscribe_and_serve (size_t count)
{
    cr_assert_eq (herald_agent_subscribe_batch (fb_agent, "g", NULL,
                  (herald_start_t) { HERALD_START_BEGINNING, 0 }, s_batch, fb_recorder),
                  HERALD_OK);
    uint64_t deadline = tu_mono_ns () + WAIT_MS * 1000000ULL;
    while (fb_recorder->count < count && tu_mono_ns () < deadline) {
        fb_heartbeat ();
        fb_serve (10);
    }
    fb_serve (100);                  //  anything more would show now
}

Test (herald_agent_batch_dups, a_repeated_id_in_one_batch_is_dropped_as_a_duplicate)
{
    fb_append ("g.1", 0);
    fb_append ("g.1", 0);
    fb_append ("g.1", 1);            //  seq 3 repeats the id of seq 1, in the same replay
    fb_append ("g.1", 0);
    fb_append ("g.1", 2);            //  seq 5 repeats seq 2's
    fb_append ("g.1", 0);
    s_subscribe_and_serve (4);
    cr_assert_eq (fb_recorder->count, 4, "%zu delivered", fb_recorder->count);
    cr_assert_eq (fb_recorder->seqs [0], 1);
    cr_assert_eq (fb_recorder->seqs [1], 2);
    cr_assert_eq (fb_recorder->seqs [2], 4);
    cr_assert_eq (fb_recorder->seqs [3], 6);
    herald_sub_status_t status;
    herald_agent_sub_status (fb_agent, "g", &status);
    cr_assert_eq (status.duplicates, 2);
    cr_assert_eq (status.delivered, 4);
    cr_assert_eq (status.delivered_seq, 6);
    //  The runs end before each repeat: 1-2, 4-5 ... never one per event
    cr_assert (s_calls <= 3, "%zu calls", s_calls);
}
