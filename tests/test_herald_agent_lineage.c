/*  =========================================================================
    test_herald_agent_lineage - a broker that lost events it had stored

    When an operator accepts a loss (`herald repair --accept-loss`), the
    broker announces it: `lineage` (the count of accepted losses) in $hb,
    END, WELCOME and STATUS, and `losses` ({lineage, lost_after, ts}) in
    WELCOME and STATUS.  The seqs after lost_after were handed out again to
    new events.  A subscription whose checkpoint passed lost_after must not
    skip those new events: it is rewound to lost_after, and on_error hears
    HERALD_ERR_DATA_LOST (the events it had after lost_after are gone from
    the log).  A subscription not past it adopts the lineage silently.

    The broker is scripted here (a ROUTER and a PUB speaking HWP/1 from a
    log in memory, as in test_herald_agent_gaps.c), so that a loss can be
    made exactly: the log cut after seq N, new events with new ids at N+1...
    =========================================================================
*/

#include <criterion/criterion.h>
#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fakebroker.h"
#include "herald_checkpoint.h"
#include "herald_crc.h"
#include "testutil.h"

#define WAIT_MS     FB_WAIT_MS

static void
s_setup (void)
{
    fb_setup ("agent-lineage", "lineage");
}

TestSuite (herald_agent_lineage, .init = s_setup, .fini = fb_teardown, .timeout = 60);

//  Serve until the recorder holds count events.
static void
s_wait_count (size_t count)
{
    uint64_t deadline = tu_mono_ns () + WAIT_MS * 1000000ULL;
    while (fb_recorder->count < count && tu_mono_ns () < deadline)
        fb_serve (10);
    fb_serve (100);                  //  anything more would show now
    cr_assert_eq (fb_recorder->count, count, "%zu delivered, expected %zu", fb_recorder->count,
                  count);
}

//  The broker loses the events after seq n and accepts it: the log is cut
//  to n, the lineage grows by one and the loss is listed.
static void
s_lose_after (uint64_t n)
{
    for (uint64_t seq = n + 1; seq <= fb_fake.head; seq++)
        fb_fake.envelopes [seq].size = 0;
    fb_fake.head = n;
    fb_fake.lineage++;
    fb_fake.losses [fb_fake.loss_count++] = (herald_loss_t) { fb_fake.lineage, n, 12345 };
}

//  Heartbeats (which carry the lineage) until the subscription's status
//  shows lineage, serving what the agent asks meanwhile.
static herald_sub_status_t
s_beat_until_lineage (uint64_t lineage)
{
    herald_sub_status_t status;
    uint64_t deadline = tu_mono_ns () + WAIT_MS * 1000000ULL;
    do {
        fb_heartbeat ();
        fb_serve (20);
        herald_agent_sub_status (fb_agent, "g", &status);
    } while (status.lineage != lineage && tu_mono_ns () < deadline);
    cr_assert_eq (status.lineage, lineage);
    return status;
}

Test (herald_agent_lineage, a_checkpoint_past_the_loss_is_rewound_and_reported)
{
    fb_go_live ();
    for (int index = 0; index < 10; index++)
        fb_append ("g.1", 0);
    for (uint64_t seq = 1; seq <= 10; seq++)
        fb_fanout (seq);
    s_wait_count (10);
    //  The broker keeps 1..6; 7..9 are new events (new ids) at the same seqs
    s_lose_after (6);
    for (int index = 0; index < 3; index++)
        fb_append ("g.1", 0);
    s_beat_until_lineage (1);
    s_wait_count (13);
    for (size_t index = 0; index < 10; index++)
        cr_assert_eq (fb_recorder->seqs [index], index + 1);
    for (size_t index = 10; index < 13; index++) {
        cr_assert_eq (fb_recorder->seqs [index], index - 3, "event %zu has seq %" PRIu64,
                      index, fb_recorder->seqs [index]);
        cr_assert_eq (memcmp (fb_recorder->ids [index], fb_fake.ids [index - 3], 16), 0,
                      "seq %zu is not the new event", index - 3);
    }
    cr_assert_eq (fb_errors, 1);
    cr_assert_eq (fb_error_code, HERALD_ERR_DATA_LOST);
    cr_assert_str_eq (fb_error_message, "broker lost events after seq 6 (lineage 1): rewinding "
                      "subscription g from 10 to 6; events after 6 published before the loss "
                      "are gone");
    herald_sub_status_t status;
    herald_agent_sub_status (fb_agent, "g", &status);
    cr_assert_eq (status.state, HERALD_SUB_LIVE);
    cr_assert_eq (status.data_lost, 1);
    cr_assert_eq (status.delivered_seq, 9);
    herald_agent_stats_t stats;
    herald_agent_stats (fb_agent, &stats);
    cr_assert_eq (stats.data_lost, 1);
    cr_assert_eq (stats.broker_lineage, 1);
}

Test (herald_agent_lineage, a_checkpoint_not_past_the_loss_adopts_the_lineage_silently)
{
    fb_go_live ();
    for (int index = 0; index < 4; index++)
        fb_append ("g.1", 0);
    for (uint64_t seq = 1; seq <= 4; seq++)
        fb_fanout (seq);
    s_wait_count (4);
    fb_append ("g.1", 0);            //  5 and 6 stored, not yet seen by the agent
    fb_append ("g.1", 0);
    s_lose_after (5);               //  6 lost; a new 6 follows
    fb_append ("g.1", 0);
    s_beat_until_lineage (1);
    s_wait_count (6);
    for (size_t index = 0; index < 6; index++)
        cr_assert_eq (fb_recorder->seqs [index], index + 1);
    cr_assert_eq (memcmp (fb_recorder->ids [5], fb_fake.ids [6], 16), 0);
    cr_assert_eq (fb_errors, 0, "%s", fb_error_message);
    herald_sub_status_t status;
    herald_agent_sub_status (fb_agent, "g", &status);
    cr_assert_eq (status.data_lost, 0);
}

Test (herald_agent_lineage, a_restarted_agent_checks_its_checkpoint_against_the_losses)
{
    fb_go_live ();
    for (int index = 0; index < 8; index++)
        fb_append ("g.1", 0);
    for (uint64_t seq = 1; seq <= 8; seq++)
        fb_fanout (seq);
    s_wait_count (8);
    herald_agent_destroy (&fb_agent);
    //  Two losses while the agent was away: after 5, then after 3
    s_lose_after (5);
    fb_append ("g.1", 0);
    s_lose_after (3);
    fb_append ("g.1", 0);
    fb_append ("g.1", 0);
    herald_agent_options_t options;
    herald_agent_options_init (&options);
    options.api = fb_fake.api;
    options.fanout = fb_fake.fanout;
    options.state_dir = fb_state;
    options.on_error = fb_on_error;
    fb_agent = herald_agent_new ("lineage", &options);
    cr_assert_not_null (fb_agent);
    cr_assert_eq (herald_agent_subscribe (fb_agent, "g", NULL,
                  (herald_start_t) { HERALD_START_BEGINNING, 0 }, au_record, fb_recorder),
                  HERALD_OK);
    s_beat_until_lineage (2);
    s_wait_count (10);
    cr_assert_eq (fb_recorder->seqs [8], 4);
    cr_assert_eq (fb_recorder->seqs [9], 5);
    cr_assert_eq (fb_errors, 1);
    cr_assert (strstr (fb_error_message, "after seq 3 (lineage 2): rewinding subscription g "
                       "from 8 to 3"), "%s", fb_error_message);
    cr_assert_geq (fb_fake.hellos, 1);
}

Test (herald_agent_lineage, a_broker_on_a_lower_lineage_rewinds_to_its_head)
{
    //  The agent follows lineage 1 ...
    fb_fake.lineage = 1;
    fb_fake.losses [fb_fake.loss_count++] = (herald_loss_t) { 1, 0, 1 };
    fb_go_live ();
    for (int index = 0; index < 6; index++)
        fb_append ("g.1", 0);
    for (uint64_t seq = 1; seq <= 6; seq++)
        fb_fanout (seq);
    s_wait_count (6);
    s_beat_until_lineage (1);
    cr_assert_eq (fb_errors, 0, "%s", fb_error_message);
    //  ... and the store is replaced by an older copy: lineage 0, head 4
    fb_fake.lineage = 0;
    fb_fake.loss_count = 0;
    for (uint64_t seq = 5; seq <= 6; seq++)
        fb_fake.envelopes [seq].size = 0;
    fb_fake.head = 4;
    s_beat_until_lineage (0);
    fb_append ("g.1", 0);            //  a new 5
    fb_fanout (5);
    s_wait_count (7);
    cr_assert_eq (fb_recorder->seqs [6], 5);
    cr_assert_eq (fb_errors, 1);
    cr_assert_eq (fb_error_code, HERALD_ERR_DATA_LOST);
    cr_assert (strstr (fb_error_message, "rewinding subscription g from 6 to its head 4"), "%s",
               fb_error_message);
}

//  The checkpoint file: version 2 keeps the lineage with done; a version 1
//  file (written before lineages) opens with lineage 0 and takes one.
Test (herald_agent_lineage, a_version_1_checkpoint_reads_as_lineage_0)
{
    char *path = tu_path (fb_state, "v1.ckpt");
    herald_checkpoint_t *checkpoint = NULL;
    bool recovered;
    char message [256];
    cr_assert_eq (herald_checkpoint_open (&checkpoint, path, 16, true, 7, 0, &recovered,
                                          message, sizeof message), HERALD_OK, "%s", message);
    herald_checkpoint_destroy (&checkpoint);
    //  Make it a version 1 file: the version and the header's CRC
    FILE *file = fopen (path, "r+b");
    cr_assert_not_null (file);
    uint8_t header [64];
    cr_assert_eq (fread (header, 1, 64, file), 64);
    uint32_t version = 1;
    memcpy (header + 8, &version, 4);
    uint32_t crc = herald_crc32c (0, header, 60);
    memcpy (header + 60, &crc, 4);
    rewind (file);
    cr_assert_eq (fwrite (header, 1, 64, file), 64);
    fclose (file);
    cr_assert_eq (herald_checkpoint_open (&checkpoint, path, 16, false, 0, 0, &recovered,
                                          message, sizeof message), HERALD_OK, "%s", message);
    cr_assert_eq (herald_checkpoint_done (checkpoint), 7);
    cr_assert_eq (herald_checkpoint_lineage (checkpoint), 0);
    herald_checkpoint_rewind (checkpoint, 5, 2);
    herald_checkpoint_destroy (&checkpoint);
    cr_assert_eq (herald_checkpoint_open (&checkpoint, path, 16, false, 0, 0, &recovered,
                                          message, sizeof message), HERALD_OK, "%s", message);
    cr_assert_eq (herald_checkpoint_done (checkpoint), 5);
    cr_assert_eq (herald_checkpoint_lineage (checkpoint), 2);
    cr_assert_not (recovered);
    herald_checkpoint_destroy (&checkpoint);
    //  A new file is version 2 with the lineage given
    char *fresh = tu_path (fb_state, "v2.ckpt");
    cr_assert_eq (herald_checkpoint_open (&checkpoint, fresh, 16, true, 3, 4, &recovered,
                                          message, sizeof message), HERALD_OK, "%s", message);
    cr_assert_eq (herald_checkpoint_lineage (checkpoint), 4);
    herald_checkpoint_destroy (&checkpoint);
    file = fopen (fresh, "rb");
    cr_assert_eq (fread (header, 1, 64, file), 64);
    fclose (file);
    memcpy (&version, header + 8, 4);
    cr_assert_eq (version, 2);
    free (fresh);
    free (path);
}

//  A loss is accepted on a stopped broker: the agent's api connection
//  drops.  Until the WELCOME after it, live events may belong to the new
//  lineage, so a live subscription holds them: a checkpoint exactly at
//  lost_after, and a new event at lost_after + 1 arriving live before the
//  WELCOME, is no loss to report.
Test (herald_agent_lineage, live_events_after_a_reconnect_wait_for_the_lineage)
{
    fb_go_live ();
    for (int index = 0; index < 6; index++)
        fb_append ("g.1", 0);
    for (uint64_t seq = 1; seq <= 6; seq++)
        fb_fanout (seq);
    s_wait_count (6);
    //  "Restart": the api socket goes away and comes back on its port.
    //  The new socket holds back its WELCOME: a HELLO arriving on it shows
    //  that the agent has handled the drop and the new connection (its
    //  monitor reports them in order), so a live event sent now is one
    //  the agent must hold until the lineage is read.
    size_t hellos = fb_fake.hellos;
    zsock_destroy (&fb_fake.router);
    s_lose_after (6);
    fb_append ("g.1", 0);            //  a new 7
    //  libzmq closes the old socket in its I/O thread: the port is free
    //  a moment later
    fb_fake.router = zsock_new (ZMQ_ROUTER);
    uint64_t deadline = tu_mono_ns () + WAIT_MS * 1000000ULL;
    int port;
    while ((port = zsock_bind (fb_fake.router, "%s", fb_fake.api)) < 0 && tu_mono_ns () < deadline)
        zclock_sleep (5);
    cr_assert_gt (port, 0, "cannot bind %s again", fb_fake.api);
    fb_fake.hold_hellos = true;
    while (fb_fake.hellos_held == 0 && tu_mono_ns () < deadline)
        fb_serve (20);
    cr_assert_gt (fb_fake.hellos_held, 0, "the agent did not reconnect");
    fb_fanout (7);                   //  live, before any WELCOME
    fb_serve (100);
    cr_assert_eq (fb_recorder->count, 6, "a live event passed before the lineage was read");
    fb_release_hellos ();           //  before the agent's HELLO_RETRY_MS
    s_beat_until_lineage (1);
    s_wait_count (7);
    cr_assert_eq (fb_recorder->seqs [6], 7);
    cr_assert_eq (memcmp (fb_recorder->ids [6], fb_fake.ids [7], 16), 0);
    cr_assert_eq (fb_errors, 0, "%s", fb_error_message);
    cr_assert_gt (fb_fake.hellos, hellos);
}

//  A new subscription at a seq chosen by the caller, before the agent
//  heard from the broker: the broker's lineage is adopted, not compared
//  (its checkpoint passed nothing of an older lineage).
Test (herald_agent_lineage, a_new_subscription_at_a_seq_adopts_the_lineage_it_finds)
{
    for (int index = 0; index < 8; index++)
        fb_append ("g.1", 0);
    s_lose_after (3);               //  lineage 1: the seqs after 3 were given again
    for (int index = 0; index < 5; index++)
        fb_append ("g.1", 0);
    cr_assert_eq (herald_agent_subscribe (fb_agent, "g", NULL,
                  (herald_start_t) { HERALD_START_SEQ, 7 }, au_record, fb_recorder),
                  HERALD_OK);
    s_beat_until_lineage (1);
    s_wait_count (2);               //  7 and 8
    cr_assert_eq (fb_recorder->seqs [0], 7);
    cr_assert_eq (fb_recorder->seqs [1], 8);
    cr_assert_eq (fb_errors, 0, "%s", fb_error_message);
}

//  The same, with a WELCOME that takes longer than the agent's HELLO retry
//  (1 s): a HELLO unanswered is asked again, never taken as a WELCOME.
//  Were it taken (as it once was), the live event 7 would pass on the old
//  lineage, the late WELCOME would then rewind the checkpoint to 6 with
//  DATA_LOST, and 7 would be delivered a second time.
Test (herald_agent_lineage, a_late_welcome_still_holds_live_events)
{
    fb_go_live ();
    for (int index = 0; index < 6; index++)
        fb_append ("g.1", 0);
    for (uint64_t seq = 1; seq <= 6; seq++)
        fb_fanout (seq);
    s_wait_count (6);
    zsock_destroy (&fb_fake.router);
    s_lose_after (6);
    fb_append ("g.1", 0);            //  a new 7
    fb_fake.router = zsock_new (ZMQ_ROUTER);
    uint64_t deadline = tu_mono_ns () + WAIT_MS * 1000000ULL;
    int port;
    while ((port = zsock_bind (fb_fake.router, "%s", fb_fake.api)) < 0 && tu_mono_ns () < deadline)
        zclock_sleep (5);
    cr_assert_gt (port, 0, "cannot bind %s again", fb_fake.api);
    fb_fake.hold_hellos = true;
    while (fb_fake.hellos_held == 0 && tu_mono_ns () < deadline)
        fb_serve (20);
    cr_assert_gt (fb_fake.hellos_held, 0, "the agent did not reconnect");
    fb_fanout (7);                   //  live, before any WELCOME
    //  2.5 s without a WELCOME (and no heartbeat: one of the new lineage
    //  would say again that the lineage must be read)
    fb_serve (2500);
    cr_assert_eq (fb_recorder->count, 6, "a live event passed before the lineage was read");
    cr_assert_gt (fb_fake.hellos_held, 1, "the HELLO was not asked again");
    fb_release_hellos ();
    s_beat_until_lineage (1);
    s_wait_count (7);
    cr_assert_eq (fb_recorder->seqs [6], 7);
    cr_assert_eq (memcmp (fb_recorder->ids [6], fb_fake.ids [7], 16), 0);
    cr_assert_eq (fb_errors, 0, "%s", fb_error_message);
    herald_sub_status_t status;
    herald_agent_sub_status (fb_agent, "g", &status);
    cr_assert_eq (status.data_lost, 0);
}
