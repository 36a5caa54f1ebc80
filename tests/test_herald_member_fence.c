/*  =========================================================================
    test_herald_member_fence - a group member whose batch declare is
    answered `fenced`, on a real heraldd

    A reset while a member is between two batches: its next declare (the
    commit that must be answered before the batch is handed over) goes
    under the old epochs and comes back fenced for every partition.
      - declare answered first (session 60 s: no heartbeat in the window):
        the batch being declared loses every fenced partition's events and
        is not handed over; the partitions come back from the reset's
        position and every event is handled again, none twice after that;
      - the revoke heard first (the broker stopped while the declare and
        a heartbeat queue up; its heartbeat reply comes before the
        commit's): the revoke holds the member, the fenced declare lets
        every partition go, and the member must not stay held: it gets the
        partitions again and hands events over.
    =========================================================================
*/

#include <criterion/criterion.h>
#include <inttypes.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agentutil.h"
#include "brokerutil.h"
#include "testutil.h"

#define WAIT_MS     30000
#define TOPICS      64
#define COUNT       300
#define BATCH       50
#define GATE_AT     30              //  the handler call that waits for the test

static pthread_mutex_t s_lock = PTHREAD_MUTEX_INITIALIZER;
static uint64_t s_seqs [COUNT * 8];
static size_t s_count;
static atomic_bool s_gate_in, s_gate_open;
static size_t s_calls;
static bu_broker_t *s_broker;
static herald_agent_t *s_agent;

static int
s_record (const herald_delivery_t *event, void *arg)
{
    (void) arg;
    if (++s_calls == GATE_AT) {
        //  Bounded: the test opens the gate once it has reset the group
        atomic_store (&s_gate_in, true);
        uint64_t deadline = tu_mono_ns () + 20000 * 1000000ULL;
        while (!atomic_load (&s_gate_open) && tu_mono_ns () < deadline)
            usleep (1000);
    }
    pthread_mutex_lock (&s_lock);
    if (s_count < sizeof s_seqs / sizeof s_seqs [0])
        s_seqs [s_count++] = event->seq;
    pthread_mutex_unlock (&s_lock);
    return HERALD_OK;
}

static size_t
s_recorded (void)
{
    pthread_mutex_lock (&s_lock);
    size_t count = s_count;
    pthread_mutex_unlock (&s_lock);
    return count;
}

static void
s_setup (void)
{
    s_count = s_calls = 0;
    atomic_store (&s_gate_in, false);
    atomic_store (&s_gate_open, false);
    s_broker = bu_broker_new ("member-fence", NULL);
    cr_assert_not_null (s_broker);
    cr_assert_eq (bu_broker_start (s_broker, 10000), 0, "heraldd did not start");
}

static void
s_teardown (void)
{
    atomic_store (&s_gate_open, true);
    if (s_broker && s_broker->pid)
        kill (s_broker->pid, SIGCONT);
    herald_agent_destroy (&s_agent);
    bu_broker_destroy (&s_broker);
}

TestSuite (herald_member_fence, .init = s_setup, .fini = s_teardown, .timeout = 120);

static void
s_join (int session_ms)
{
    herald_agent_options_t options;
    herald_agent_options_init (&options);
    options.api = s_broker->api;
    options.fanout = s_broker->fanout;
    options.state_dir = NULL;
    options.timeout_ms = 5000;
    s_agent = herald_agent_new ("member-fence", &options);
    cr_assert_not_null (s_agent, "herald_agent_new: %s", herald_agent_last_error ());
    static const char *prefixes [] = { "orders.", NULL };
    herald_group_options_t group;
    herald_group_options_init (&group);
    group.prefixes = prefixes;
    group.session_ms = session_ms;
    group.batch_max = BATCH;
    cr_assert_eq (herald_agent_subscribe_group (s_agent, "billing", &group, s_record, NULL),
                  HERALD_OK, "subscribe_group: %s", herald_agent_last_error ());
}

static void
s_pack_str (msgpack_packer *pk, const char *text)
{
    msgpack_pack_str (pk, strlen (text));
    msgpack_pack_str_body (pk, text, strlen (text));
}

//  GROUP reset billing to 1, from a plain DEALER; returns once applied.
static void
s_reset (void)
{
    zsock_t *dealer = bu_dealer_new (s_broker->api);
    cr_assert_not_null (dealer);
    msgpack_sbuffer buffer;
    msgpack_sbuffer_init (&buffer);
    msgpack_packer pk;
    msgpack_packer_init (&pk, &buffer, msgpack_sbuffer_write);
    msgpack_pack_map (&pk, 4);
    s_pack_str (&pk, "rid");
    msgpack_pack_uint64 (&pk, 1);
    s_pack_str (&pk, "op");
    s_pack_str (&pk, "reset");
    s_pack_str (&pk, "group");
    s_pack_str (&pk, "billing");
    s_pack_str (&pk, "to");
    msgpack_pack_uint64 (&pk, 1);
    cr_assert_eq (bu_send_sbuf (dealer, "GROUP", &buffer), 0);
    msgpack_sbuffer_destroy (&buffer);
    zmsg_t *reply = bu_recv (dealer, WAIT_MS);
    cr_assert_not_null (reply, "no answer to GROUP reset");
    char *command = zmsg_popstr (reply);
    cr_assert_str_eq (command, "GROUP");
    free (command);
    zmsg_destroy (&reply);
    zsock_destroy (&dealer);
}

static void
s_wait_gate (void)
{
    uint64_t deadline = tu_mono_ns () + WAIT_MS * 1000000ULL;
    while (!atomic_load (&s_gate_in) && tu_mono_ns () < deadline)
        usleep (2000);
    cr_assert (atomic_load (&s_gate_in), "the member never reached its %dth event", GATE_AT);
}

//  After `mark`: every seq of 1..COUNT handled again; `once_above` and up
//  only once (they were never handed over before the fence).
static void
s_check_again (size_t mark, uint64_t once_above)
{
    uint64_t deadline = tu_mono_ns () + WAIT_MS * 1000000ULL;
    size_t distinct = 0;
    unsigned seen [COUNT + 1];
    while (tu_mono_ns () < deadline) {
        memset (seen, 0, sizeof seen);
        distinct = 0;
        pthread_mutex_lock (&s_lock);
        for (size_t index = mark; index < s_count; index++) {
            cr_assert (s_seqs [index] >= 1 && s_seqs [index] <= COUNT);
            distinct += seen [s_seqs [index]]++ == 0;
        }
        pthread_mutex_unlock (&s_lock);
        if (distinct == COUNT)
            break;
        usleep (10000);
    }
    cr_assert_eq (distinct, COUNT, "after the reset, %zu of %d seqs came again (%zu calls)",
                  distinct, COUNT, s_recorded () - mark);
    for (uint64_t seq = 1; seq <= COUNT; seq++)
        cr_assert (seen [seq] <= (seq > once_above? 1u: 2u), "seq %" PRIu64 " handled %u "
                   "times after the reset", seq, seen [seq]);
    herald_group_status_t status;
    cr_assert_eq (herald_agent_group_status (s_agent, "billing", &status), HERALD_OK);
    cr_assert_geq (status.fenced, 1, "no commit was fenced");
    cr_assert_eq (status.owned, 32);
}

//  The declare answered fenced before the member heard of the reset: the
//  batch being declared must lose every fenced event (not hand over a
//  count of them that is no longer in its buffer), and be handed nothing.
Test (herald_member_fence, a_declare_answered_fenced)
{
    cr_assert_eq (au_publish (s_broker->api, "orders.%zu", TOPICS, COUNT, WAIT_MS), 0);
    s_join (60000);                     //  heartbeats 10 s apart: none in the window
    s_wait_gate ();
    size_t mark = s_recorded ();
    s_reset ();
    atomic_store (&s_gate_open, true);
    //  The first batch (1..BATCH) finishes; the second's declare is fenced
    s_check_again (mark, BATCH);
}

//  The reset's revoke heard while the next declare is in flight, the
//  declare then answered fenced for every revoked partition: the member
//  must not stay held (no release commit is left to free it).
Test (herald_member_fence, a_revoke_then_a_fenced_declare)
{
    cr_assert_eq (au_publish (s_broker->api, "orders.%zu", TOPICS, COUNT, WAIT_MS), 0);
    s_join (3000);
    s_wait_gate ();
    size_t mark = s_recorded ();
    s_reset ();
    //  Stopped, the broker queues what the member sends next: the second
    //  batch's declare, then (heartbeat_ms 500 later) a heartbeat.  Its
    //  reply (revoke everything) comes before the commit's (fenced), which
    //  waits for the group commit.  The lease (2 s) outlasts the stop.
    cr_assert_eq (kill (s_broker->pid, SIGSTOP), 0);
    atomic_store (&s_gate_open, true);
    //  The first batch's rest is quick (its handler does not sleep).  Not
    //  asserted: in the rare run where a heartbeat brought the revoke
    //  before the broker stopped, the batch stops at the gate instead (and
    //  the member must recover all the same)
    uint64_t deadline = tu_mono_ns () + 1000 * 1000000ULL;
    while (s_recorded () < BATCH && tu_mono_ns () < deadline)
        usleep (2000);
    usleep (700 * 1000);                //  a heartbeat_ms and some: the heartbeat is out
    cr_assert_eq (kill (s_broker->pid, SIGCONT), 0);
    s_check_again (mark, BATCH);
}
