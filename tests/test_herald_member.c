/*  =========================================================================
    test_herald_member - a group member against real heraldd

    The member thread (agents/herald_member*.c) with the agent's API and
    delivery thread, on a real broker (one process, or a cluster of three):
      - a member alone gets every event of the group's prefixes, once, in
        seq order, and commits them (lag 0);
      - a revoke while a batch is in hand stops it between two events, and
        the member that gets the partition starts after the first one's
        commit: no event handled twice, none lost;
      - a broker stopped (SIGSTOP) past 2/3 of the session: the member's
        lease ends and it hands nothing over until it is answered again;
      - a handler answering RETRY is not called again once the lease has
        ended;
      - a cluster's leader killed: the member follows not_leader to the new
        leader and goes on, with no loss and no duplicate not flagged.
    Handlers record into a shared log with a global order, so the
    assertions are about order, never about time.
    =========================================================================
*/

#include <criterion/criterion.h>
#include <inttypes.h>
#include <signal.h>
#include <sys/stat.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agentutil.h"
#include "brokerutil.h"
#include "clusterutil.h"
#include "testutil.h"

#define WAIT_MS     30000
#define TOPICS      64

//  ---------------------------------------------------------------------
//  What the handlers saw, all members in one log

typedef struct {
    int member;                     //  which agent
    uint64_t seq;
    bool redelivered;
    uint64_t order;                 //  global order of handler calls
} s_call_t;

static pthread_mutex_t s_lock = PTHREAD_MUTEX_INITIALIZER;
static s_call_t *s_calls;
static size_t s_count, s_size;
static atomic_int s_sleep_us;

typedef struct {
    int member;
} s_who_t;

static s_who_t s_who [3] = { { 0 }, { 1 }, { 2 } };
static herald_agent_t *s_agents [3];
//  The revoke test: member 0's third handler call waits (bounded) until
//  its member has heard the revoke, so the batch is surely in hand then
static atomic_bool s_gate;
static atomic_bool s_lease_gate, s_broker_stopped;
static size_t s_gate_calls;

static int
s_record (const herald_delivery_t *event, void *arg)
{
    s_who_t *who = (s_who_t *) arg;
    int sleep_us = atomic_load (&s_sleep_us);
    if (who->member == 1)
        sleep_us = 0;                   //  the second member is always quick
    if (sleep_us)
        usleep (sleep_us);
    if (who->member == 0 && atomic_load (&s_lease_gate) && ++s_gate_calls == 3) {
        //  The lease test: the third event waits (bounded) until the
        //  broker is stopped and the member's lease has ended
        uint64_t deadline = tu_mono_ns () + 20000 * 1000000ULL;
        herald_group_status_t status;
        memset (&status, 0, sizeof status);
        status.joined = true;
        while (tu_mono_ns () < deadline
           &&  (!atomic_load (&s_broker_stopped) || status.joined)
           &&  herald_agent_group_status (s_agents [0], event->subscription, &status) == HERALD_OK)
            usleep (2000);
    }
    if (who->member == 0 && atomic_load (&s_gate)) {
        //  The group's generation at A's first event (B not started yet);
        //  at the third, wait until A has heard B's join (the reply that
        //  revokes): the batch is in hand, and must stop after this event
        static uint64_t generation;
        herald_group_status_t status;
        memset (&status, 0, sizeof status);
        s_gate_calls++;
        if (s_gate_calls == 1
        &&  herald_agent_group_status (s_agents [0], event->subscription, &status) == HERALD_OK)
            generation = status.generation;
        uint64_t deadline = tu_mono_ns () + 20000 * 1000000ULL;
        while (s_gate_calls == 3 && tu_mono_ns () < deadline
           &&  herald_agent_group_status (s_agents [0], event->subscription, &status) == HERALD_OK
           &&  status.generation <= generation)
            usleep (2000);
    }
    pthread_mutex_lock (&s_lock);
    if (s_count == s_size) {
        s_size = s_size? s_size * 2: 1024;
        s_calls = realloc (s_calls, s_size * sizeof *s_calls);
    }
    if (s_calls)
        s_calls [s_count] = (s_call_t) { who->member, event->seq, event->redelivered, s_count };
    s_count++;
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

//  Seqs handled, counted: every one of 1..count at least once; those
//  handled twice or more must be flagged redelivered at their later calls.
static void
s_check_all (uint64_t count, bool duplicates_allowed)
{
    unsigned *seen = calloc (count + 1, sizeof *seen);
    cr_assert_not_null (seen);
    pthread_mutex_lock (&s_lock);
    for (size_t index = 0; index < s_count; index++) {
        s_call_t *call = &s_calls [index];
        cr_assert (call->seq >= 1 && call->seq <= count, "seq %" PRIu64 " out of 1..%" PRIu64,
                   call->seq, count);
        if (seen [call->seq] && !duplicates_allowed)
            cr_assert_fail ("seq %" PRIu64 " handled twice", call->seq);
        if (seen [call->seq])
            cr_assert (call->redelivered, "seq %" PRIu64 " handled again, not flagged "
                       "redelivered", call->seq);
        seen [call->seq]++;
    }
    pthread_mutex_unlock (&s_lock);
    for (uint64_t seq = 1; seq <= count; seq++)
        cr_assert (seen [seq], "seq %" PRIu64 " never handled", seq);
    free (seen);
}

//  Wait until the distinct seqs handled cover 1..count.
static bool
s_wait_all (uint64_t count, int timeout_ms)
{
    uint64_t deadline = tu_mono_ns () + (uint64_t) timeout_ms * 1000000ULL;
    while (tu_mono_ns () < deadline) {
        bool *seen = calloc (count + 1, sizeof *seen);
        uint64_t distinct = 0;
        pthread_mutex_lock (&s_lock);
        for (size_t index = 0; index < s_count; index++)
            if (s_calls [index].seq <= count && !seen [s_calls [index].seq]) {
                seen [s_calls [index].seq] = true;
                distinct++;
            }
        pthread_mutex_unlock (&s_lock);
        free (seen);
        if (distinct == count)
            return true;
        usleep (10000);
    }
    return false;
}

//  fnv1a32 (docs/protocol.md), for the test's own view of partitions.
static uint32_t
s_partition (uint64_t seq, uint32_t partitions)
{
    char topic [64];
    snprintf (topic, sizeof topic, "orders.%" PRIu64, (seq - 1) % TOPICS);
    uint32_t hash = 2166136261u;
    for (const char *c = topic; *c; c++)
        hash = (hash ^ (uint8_t) *c) * 16777619u;
    return hash % partitions;
}

//  ---------------------------------------------------------------------
//  Fixture

static bu_broker_t *s_broker;
static cu_cluster_t *s_cluster;

static void
s_setup (void)
{
    s_count = 0;
    atomic_store (&s_sleep_us, 0);
    atomic_store (&s_gate, false);
    atomic_store (&s_lease_gate, false);
    atomic_store (&s_broker_stopped, false);
    s_gate_calls = 0;
    s_broker = bu_broker_new ("member", NULL);
    cr_assert_not_null (s_broker);
    cr_assert_eq (bu_broker_start (s_broker, 10000), 0, "heraldd did not start");
}

static void
s_teardown (void)
{
    for (size_t index = 0; index < 3; index++)
        herald_agent_destroy (&s_agents [index]);
    if (s_broker && s_broker->pid)
        kill (s_broker->pid, SIGCONT);
    bu_broker_destroy (&s_broker);
    cu_cluster_destroy (&s_cluster);
    free (s_calls);
    s_calls = NULL;
    s_count = s_size = 0;
}

TestSuite (herald_member, .init = s_setup, .fini = s_teardown, .timeout = 120);

static herald_agent_t *
s_agent (const char *api, const char *fanout)
{
    herald_agent_options_t options;
    herald_agent_options_init (&options);
    options.api = api;
    options.fanout = fanout;
    options.state_dir = NULL;
    options.timeout_ms = 5000;
    herald_agent_t *agent = herald_agent_new ("member-test", &options);
    cr_assert_not_null (agent, "herald_agent_new: %s", herald_agent_last_error ());
    return agent;
}

static void
s_join (herald_agent_t *agent, const char *group, int session_ms, size_t batch_max, int who)
{
    static const char *prefixes [] = { "orders.", NULL };
    herald_group_options_t options;
    herald_group_options_init (&options);
    options.prefixes = prefixes;
    options.session_ms = session_ms;
    options.batch_max = batch_max;
    cr_assert_eq (herald_agent_subscribe_group (agent, group, &options, s_record, &s_who [who]),
                  HERALD_OK, "subscribe_group: %s", herald_agent_last_error ());
}

static herald_group_status_t
s_status (herald_agent_t *agent, const char *group)
{
    herald_group_status_t status;
    cr_assert_eq (herald_agent_group_status (agent, group, &status), HERALD_OK);
    return status;
}

//  ---------------------------------------------------------------------

Test (herald_member, alone_gets_everything_once_in_order)
{
    cr_assert_eq (au_publish (s_broker->api, "orders.%zu", TOPICS, 500, WAIT_MS), 0);
    cr_assert_eq (au_publish (s_broker->api, "stock.%zu", 4, 20, WAIT_MS), 0);
    s_agents [0] = s_agent (s_broker->api, s_broker->fanout);
    s_join (s_agents [0], "billing", 0, 0, 0);
    cr_assert (s_wait_all (500, WAIT_MS), "%zu handler calls", s_recorded ());
    //  Then live: the doorbell brings what comes next
    cr_assert_eq (au_publish (s_broker->api, "orders.%zu", TOPICS, 100, WAIT_MS), 0);
    //  seqs 501..520 are stock.*; the new orders are 521..620
    uint64_t deadline = tu_mono_ns () + WAIT_MS * 1000000ULL;
    while (s_recorded () < 600 && tu_mono_ns () < deadline)
        usleep (10000);
    cr_assert_eq (s_recorded (), 600);
    pthread_mutex_lock (&s_lock);
    for (size_t index = 1; index < s_count; index++)
        cr_assert_gt (s_calls [index].seq, s_calls [index - 1].seq, "out of order");
    for (size_t index = 0; index < s_count; index++) {
        cr_assert (s_calls [index].seq <= 500 || s_calls [index].seq > 520);
        cr_assert_not (s_calls [index].redelivered);
    }
    pthread_mutex_unlock (&s_lock);
    //  Committed to the head: lag 0, every partition held
    herald_group_status_t status;
    deadline = tu_mono_ns () + WAIT_MS * 1000000ULL;
    do {
        status = s_status (s_agents [0], "billing");
        if (status.committed >= 620 && status.lag == 0)
            break;
        usleep (20000);
    } while (tu_mono_ns () < deadline);
    cr_assert_eq (status.committed, 620, "committed %" PRIu64, status.committed);
    cr_assert_eq (status.lag, 0);
    cr_assert_eq (status.partitions, 32);
    cr_assert_eq (status.owned, 32);
    cr_assert (status.joined);
    cr_assert_gt (status.commits, 0);
    cr_assert_eq (status.redelivered, 0);
    cr_assert_eq (strncmp (status.member, "member-test-", 12), 0, "member %s", status.member);
}

//  A revoke while a batch is in hand: the first member stops between two
//  events (it does not finish its batch), commits, and only then does the
//  second get the partition.
Test (herald_member, revoke_mid_batch_stops_between_events)
{
    enum { COUNT = 400, BATCH = 100 };
    cr_assert_eq (au_publish (s_broker->api, "orders.%zu", TOPICS, COUNT, WAIT_MS), 0);
    atomic_store (&s_sleep_us, 5000);
    atomic_store (&s_gate, true);           //  A's third event waits for the revoke
    s_agents [0] = s_agent (s_broker->api, s_broker->fanout);
    s_join (s_agents [0], "billing", 3000, BATCH, 0);
    //  A is inside its first batch (seqs 1..100, all its partitions)
    uint64_t deadline = tu_mono_ns () + WAIT_MS * 1000000ULL;
    while (s_recorded () < 2 && tu_mono_ns () < deadline)
        usleep (2000);
    cr_assert_geq (s_recorded (), 2);
    s_agents [1] = s_agent (s_broker->api, s_broker->fanout);
    s_join (s_agents [1], "billing", 3000, BATCH, 1);
    cr_assert (s_wait_all (COUNT, WAIT_MS), "%zu handler calls", s_recorded ());
    s_check_all (COUNT, false);
    //  B has some partitions, and got each one after A was done with it:
    //  every event B handled of a partition comes after every event A
    //  handled of that partition, in seq and in call order
    uint64_t a_last_seq [32] = { 0 }, a_last_order [32] = { 0 };
    uint64_t b_first_order = UINT64_MAX;
    bool b_any = false, a_cut = false;
    pthread_mutex_lock (&s_lock);
    for (size_t index = 0; index < s_count; index++)
        if (s_calls [index].member == 0) {
            uint32_t p = s_partition (s_calls [index].seq, 32);
            a_last_seq [p] = s_calls [index].seq;
            a_last_order [p] = s_calls [index].order;
        }
    for (size_t index = 0; index < s_count; index++) {
        s_call_t *call = &s_calls [index];
        if (call->member != 1)
            continue;
        b_any = true;
        uint32_t p = s_partition (call->seq, 32);
        cr_assert_gt (call->seq, a_last_seq [p], "B handled seq %" PRIu64 " of partition %u "
                      "at or below A's last (%" PRIu64 ")", call->seq, p, a_last_seq [p]);
        cr_assert_gt (call->order, a_last_order [p], "B handled partition %u before A let "
                      "it go", p);
        if (call->order < b_first_order)
            b_first_order = call->order;
        //  A's first batch was seqs 1..BATCH: B handling one of them means
        //  A stopped that batch before its end
        if (call->seq <= BATCH)
            a_cut = true;
    }
    pthread_mutex_unlock (&s_lock);
    cr_assert (b_any, "the second member got nothing");
    cr_assert (a_cut, "the first member finished its whole batch despite the revoke");
    herald_group_status_t a = s_status (s_agents [0], "billing");
    herald_group_status_t b = s_status (s_agents [1], "billing");
    cr_assert_eq (a.owned + b.owned, 32, "owned %u + %u", a.owned, b.owned);
    cr_assert_geq (a.rebalances, 1);
    cr_assert_eq (a.redelivered + b.redelivered, 0);
}

//  The broker stopped past 2/3 of the session: the lease ends, and the
//  batch in hand stops; nothing is handed over until the broker answers.
Test (herald_member, no_lease_no_handover)
{
    enum { COUNT = 300 };
    cr_assert_eq (au_publish (s_broker->api, "orders.%zu", TOPICS, COUNT, WAIT_MS), 0);
    atomic_store (&s_lease_gate, true);     //  the third event waits for the lease's end
    s_agents [0] = s_agent (s_broker->api, s_broker->fanout);
    s_join (s_agents [0], "billing", 600, 100, 0);
    uint64_t deadline = tu_mono_ns () + WAIT_MS * 1000000ULL;
    while (s_recorded () < 2 && tu_mono_ns () < deadline)
        usleep (2000);
    cr_assert_eq (s_recorded (), 2);
    cr_assert_eq (kill (s_broker->pid, SIGSTOP), 0);
    atomic_store (&s_broker_stopped, true);
    herald_group_status_t status;
    deadline = tu_mono_ns () + WAIT_MS * 1000000ULL;
    do {
        status = s_status (s_agents [0], "billing");
        if (!status.joined)
            break;
        usleep (2000);
    } while (tu_mono_ns () < deadline);
    cr_assert_not (status.joined, "the lease never ended");
    //  The event in hand when the lease ended finishes; then nothing, for
    //  as long as the broker is stopped.  Absence can only be watched for
    //  a while: 1 s, more than the lease
    deadline = tu_mono_ns () + WAIT_MS * 1000000ULL;
    while (s_recorded () < 3 && tu_mono_ns () < deadline)
        usleep (2000);
    usleep (1000000);
    cr_assert_eq (s_recorded (), 3, "%zu events handed over without a lease",
                  s_recorded () - 3);
    cr_assert_eq (kill (s_broker->pid, SIGCONT), 0);
    cr_assert (s_wait_all (COUNT, WAIT_MS), "%zu handler calls", s_recorded ());
    //  The broker may have expired the member meanwhile (its session is
    //  600 ms): what it had declared comes again, flagged
    s_check_all (COUNT, true);
}

//  A reset while the member works: its partitions are fenced (a commit
//  under the old epochs is refused, the next heartbeat revokes them), and
//  once let go they come back from the new position: everything is
//  delivered again from seq 1, nothing lost, nothing crashes.
Test (herald_member, reset_fences_and_starts_again)
{
    enum { COUNT = 300 };
    cr_assert_eq (au_publish (s_broker->api, "orders.%zu", TOPICS, COUNT, WAIT_MS), 0);
    atomic_store (&s_sleep_us, 3000);
    s_agents [0] = s_agent (s_broker->api, s_broker->fanout);
    s_join (s_agents [0], "billing", 0, 50, 0);
    uint64_t deadline = tu_mono_ns () + WAIT_MS * 1000000ULL;
    while (s_recorded () < 60 && tu_mono_ns () < deadline)
        usleep (2000);
    cr_assert_geq (s_recorded (), 60);
    //  GROUP reset to 1, from a plain DEALER
    zsock_t *dealer = bu_dealer_new (s_broker->api);
    cr_assert_not_null (dealer);
    msgpack_sbuffer buffer;
    msgpack_sbuffer_init (&buffer);
    msgpack_packer pk;
    msgpack_packer_init (&pk, &buffer, msgpack_sbuffer_write);
    msgpack_pack_map (&pk, 4);
    msgpack_pack_str (&pk, 3);
    msgpack_pack_str_body (&pk, "rid", 3);
    msgpack_pack_uint64 (&pk, 1);
    msgpack_pack_str (&pk, 2);
    msgpack_pack_str_body (&pk, "op", 2);
    msgpack_pack_str (&pk, 5);
    msgpack_pack_str_body (&pk, "reset", 5);
    msgpack_pack_str (&pk, 5);
    msgpack_pack_str_body (&pk, "group", 5);
    msgpack_pack_str (&pk, 7);
    msgpack_pack_str_body (&pk, "billing", 7);
    msgpack_pack_str (&pk, 2);
    msgpack_pack_str_body (&pk, "to", 2);
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
    size_t mark = s_recorded ();
    atomic_store (&s_sleep_us, 0);
    //  After the reset every seq comes again, in order
    deadline = tu_mono_ns () + WAIT_MS * 1000000ULL;
    bool covered = false;
    while (!covered && tu_mono_ns () < deadline) {
        bool seen [COUNT + 1] = { false };
        size_t distinct = 0;
        pthread_mutex_lock (&s_lock);
        for (size_t index = mark; index < s_count; index++)
            if (s_calls [index].seq <= COUNT && !seen [s_calls [index].seq]) {
                seen [s_calls [index].seq] = true;
                distinct++;
            }
        pthread_mutex_unlock (&s_lock);
        covered = distinct == COUNT;
        if (!covered)
            usleep (10000);
    }
    cr_assert (covered, "after the reset, not every event came again (%zu calls)",
               s_recorded ());
    herald_group_status_t status = s_status (s_agents [0], "billing");
    cr_assert_geq (status.rebalances, 2, "rebalances %" PRIu64, status.rebalances);
    //  Its first commit after the reset was under the old epochs
    cr_assert_geq (status.fenced, 1, "no commit found fenced");
    cr_assert_eq (status.owned, 32);
    //  Still at work: what comes next is delivered
    cr_assert_eq (au_publish (s_broker->api, "orders.%zu", TOPICS, 10, WAIT_MS), 0);
    cr_assert (s_wait_all (COUNT + 10, WAIT_MS));
}

//  The broker restarted while a REPLAY was waiting for credit: the stream
//  died with it and no END will ever come.  The member sees the new epoch
//  in `$hb` and reads again; everything is delivered.
Test (herald_member, broker_restart_mid_stream)
{
    enum { COUNT = 6000 };
    cr_assert_eq (au_publish (s_broker->api, "orders.%zu", TOPICS, COUNT, WAIT_MS), 0);
    atomic_store (&s_sleep_us, 200);
    s_agents [0] = s_agent (s_broker->api, s_broker->fanout);
    s_join (s_agents [0], "billing", 0, 100, 0);
    uint64_t deadline = tu_mono_ns () + WAIT_MS * 1000000ULL;
    while (s_recorded () < 300 && tu_mono_ns () < deadline)
        usleep (2000);
    cr_assert_geq (s_recorded (), 300);
    //  Far from done: its REPLAY is open, held by the credit window
    cr_assert_lt (s_recorded (), 2000);
    cr_assert_eq (bu_broker_stop (s_broker, 10000), 0);
    cr_assert_eq (bu_broker_restart (s_broker, 10000), 0, "heraldd did not start again");
    atomic_store (&s_sleep_us, 0);
    cr_assert (s_wait_all (COUNT, 60000), "%zu handler calls after the restart",
               s_recorded ());
    s_check_all (COUNT, true);
}

//  A handler answering RETRY is called again only while the lease holds:
//  once it has ended (the broker stopped), the partition may be another
//  member's, and a retry would handle its event beside that member.
static atomic_int s_retry_calls;
static atomic_bool s_retrying;

static int
s_retry (const herald_delivery_t *event, void *arg)
{
    if (event->seq == 1 && atomic_load (&s_retrying)) {
        atomic_fetch_add (&s_retry_calls, 1);
        return HERALD_RETRY;
    }
    return s_record (event, arg);
}

Test (herald_member, retry_stops_with_the_lease)
{
    enum { COUNT = 10 };
    cr_assert_eq (au_publish (s_broker->api, "orders.%zu", TOPICS, COUNT, WAIT_MS), 0);
    atomic_store (&s_retry_calls, 0);
    atomic_store (&s_retrying, true);
    herald_agent_options_t options;
    herald_agent_options_init (&options);
    options.api = s_broker->api;
    options.fanout = s_broker->fanout;
    options.timeout_ms = 5000;
    options.retry_max_ms = 20;              //  a retry every 20 ms
    s_agents [0] = herald_agent_new ("member-test", &options);
    cr_assert_not_null (s_agents [0]);
    static const char *prefixes [] = { "orders.", NULL };
    herald_group_options_t group;
    herald_group_options_init (&group);
    group.prefixes = prefixes;
    group.session_ms = 600;
    cr_assert_eq (herald_agent_subscribe_group (s_agents [0], "billing", &group, s_retry,
                                                &s_who [0]), HERALD_OK);
    uint64_t deadline = tu_mono_ns () + WAIT_MS * 1000000ULL;
    while (atomic_load (&s_retry_calls) < 3 && tu_mono_ns () < deadline)
        usleep (2000);
    cr_assert_geq (atomic_load (&s_retry_calls), 3);
    cr_assert_eq (kill (s_broker->pid, SIGSTOP), 0);
    herald_group_status_t status;
    do {
        status = s_status (s_agents [0], "billing");
        if (!status.joined)
            break;
        usleep (2000);
    } while (tu_mono_ns () < deadline);
    cr_assert_not (status.joined, "the lease never ended");
    //  The call in progress may end; then none, for as long as the broker
    //  is stopped (watched for 1 s: 50 retries' worth)
    int calls = atomic_load (&s_retry_calls);
    usleep (1000000);
    cr_assert_leq (atomic_load (&s_retry_calls), calls + 1, "%d RETRY calls without a lease",
                   atomic_load (&s_retry_calls) - calls);
    cr_assert_eq (kill (s_broker->pid, SIGCONT), 0);
    atomic_store (&s_retrying, false);
    cr_assert (s_wait_all (COUNT, WAIT_MS), "%zu handler calls", s_recorded ());
    s_check_all (COUNT, true);
}

//  A cluster's leader killed: the member follows not_leader to the new
//  one and goes on without loss; a duplicate is only ever a redelivery.
Test (herald_member, follows_the_leader_on_failover)
{
    bu_broker_destroy (&s_broker);
    cu_options_t options;
    memset (&options, 0, sizeof options);
    s_cluster = cu_cluster_new ("member-cluster", 3, &options);
    cr_assert_not_null (s_cluster);
    char why [CU_WHY_MAX] = "";
    int leader = cu_cluster_start (s_cluster, 30000, why, sizeof why);
    cr_assert_geq (leader, 0, "the cluster did not start: %s", why);
    //  The agent knows every node and starts at a follower: its first
    //  heartbeat is answered not_leader, naming the leader
    char api [512];
    size_t first = ((size_t) leader + 1) % 3;
    snprintf (api, sizeof api, "%s,%s,%s", s_cluster->nodes [first].api,
              s_cluster->nodes [(first + 1) % 3].api, s_cluster->nodes [(first + 2) % 3].api);
    cr_assert_eq (au_publish (s_cluster->nodes [leader].api, "orders.%zu", TOPICS, 300,
                              WAIT_MS), 0);
    atomic_store (&s_sleep_us, 2000);
    s_agents [0] = s_agent (api, NULL);
    s_join (s_agents [0], "billing", 0, 50, 0);
    uint64_t deadline = tu_mono_ns () + WAIT_MS * 1000000ULL;
    while (s_recorded () < 100 && tu_mono_ns () < deadline)
        usleep (5000);
    cr_assert_geq (s_recorded (), 100);
    cu_node_kill (s_cluster, (size_t) leader);
    int next = cu_wait_leader (s_cluster, 1u << leader, 30000);
    cr_assert_geq (next, 0, "no new leader");
    cr_assert_eq (au_publish (s_cluster->nodes [next].api, "orders.%zu", TOPICS, 200,
                              WAIT_MS), 0);
    atomic_store (&s_sleep_us, 0);
    cr_assert (s_wait_all (500, 60000), "%zu handler calls", s_recorded ());
    s_check_all (500, true);
    herald_group_status_t status = s_status (s_agents [0], "billing");
    cr_assert_eq (status.owned, 32);
}

//  ---------------------------------------------------------------------
//  Security on: both of the member's sockets are CURVE clients; a key
//  that may not read is refused with a clear error

static char *s_dir;
static char s_server [41], s_alice [41], s_bob [41];

static char *
s_path (const char *name)
{
    static char paths [4][512];
    static int next;
    char *path = paths [next++ % 4];
    snprintf (path, 512, "%s/%s", s_dir, name);
    return path;
}

static void
s_keygen (const char *name, char *z85)
{
    zcert_t *cert = zcert_new ();
    cr_assert_not_null (cert);
    char path [512];
    snprintf (path, sizeof path, "%s/%s.key", s_dir, name);
    cr_assert_eq (zcert_save (cert, path), 0);
    snprintf (z85, 41, "%s", zcert_public_txt (cert));
    zcert_destroy (&cert);
}

static void
s_secure_setup (void)
{
    s_count = 0;
    atomic_store (&s_sleep_us, 0);
    zsys_handler_set (NULL);
    s_dir = tu_tmpdir_new ("member-secure");
    cr_assert_not_null (s_dir);
    s_keygen ("broker", s_server);
    s_keygen ("alice", s_alice);
    s_keygen ("bob", s_bob);
    //  alice reads everything and publishes orders.; bob only publishes
    char acl [1024];
    snprintf (acl, sizeof acl, "[user alice]\nkey = %s\nread = *\npublish = orders.\n\n"
              "[user bob]\nkey = %s\npublish = orders.\n", s_alice, s_bob);
    cr_assert_eq (tu_write_file (s_path ("acl"), acl, strlen (acl)), 0);
    cr_assert_eq (chmod (s_path ("acl"), 0600), 0);
    const char *extra [] = { "--curve-secret", s_path ("broker.key_secret"), "--acl",
                             s_path ("acl"), NULL };
    s_broker = bu_broker_new ("member-secure-broker", extra);
    cr_assert_not_null (s_broker);
    //  bu_broker_start asks STATUS in the clear: start it, then ask as alice
    snprintf (s_broker->api, sizeof s_broker->api, "tcp://127.0.0.1:%d", bu_free_port ());
    snprintf (s_broker->fanout, sizeof s_broker->fanout, "tcp://127.0.0.1:%d", bu_free_port ());
    cr_assert_eq (bu_broker_respawn (s_broker), 0);
    zcert_t *cert = zcert_load (s_path ("alice.key_secret"));
    cr_assert_not_null (cert);
    zsock_t *dealer = zsock_new (ZMQ_DEALER);
    cr_assert_not_null (dealer);
    zsock_set_linger (dealer, 0);
    zcert_apply (cert, dealer);
    zsock_set_curve_serverkey (dealer, s_server);
    zcert_destroy (&cert);
    cr_assert_eq (zsock_connect (dealer, "%s", s_broker->api), 0);
    bool up = false;
    uint64_t deadline = tu_mono_ns () + 10000 * 1000000ULL;
    for (uint64_t rid = 1; !up && tu_mono_ns () < deadline; rid++) {
        bu_reply_t reply = { 0 };
        up = bu_status (dealer, rid, &reply, 300) == 0;
        bu_reply_fini (&reply);
    }
    zsock_destroy (&dealer);
    char log [4096] = "";
    if (!up)
        bu_broker_log_tail (s_broker, log, sizeof log);
    cr_assert (up, "the secure heraldd did not answer:\n%s", log);
}

static void
s_secure_teardown (void)
{
    s_teardown ();
    tu_tmpdir_destroy (&s_dir);
}

TestSuite (herald_member_secure, .init = s_secure_setup, .fini = s_secure_teardown,
           .timeout = 120);

static herald_agent_t *
s_secure_agent (const char *user)
{
    herald_agent_options_t options;
    herald_agent_options_init (&options);
    options.api = s_broker->api;
    options.timeout_ms = 5000;
    char key [64];
    snprintf (key, sizeof key, "%s.key_secret", user);
    options.key_file = s_path (key);
    options.server_key = s_server;
    herald_agent_t *agent = herald_agent_new ("member-secure", &options);
    cr_assert_not_null (agent, "herald_agent_new: %s", herald_agent_last_error ());
    return agent;
}

Test (herald_member_secure, a_reader_gets_everything_over_curve)
{
    s_agents [0] = s_secure_agent ("alice");
    for (size_t index = 0; index < 50; index++) {
        char topic [32];
        snprintf (topic, sizeof topic, "orders.%zu", index % 7);
        herald_outgoing_t event = { .topic = topic, .data = "x", .data_len = 1 };
        herald_publish_result_t result;
        cr_assert_eq (herald_agent_publish (s_agents [0], &event, &result, 5000), HERALD_OK,
                      "publish: %s", result.message);
    }
    s_join (s_agents [0], "billing", 0, 0, 0);
    cr_assert (s_wait_all (50, WAIT_MS), "%zu handler calls", s_recorded ());
    s_check_all (50, false);
    //  Live too: the SUB (the doorbell) is a CURVE client as well
    herald_outgoing_t event = { .topic = "orders.1", .data = "y", .data_len = 1 };
    cr_assert_eq (herald_agent_publish (s_agents [0], &event, NULL, 5000), HERALD_OK);
    cr_assert (s_wait_all (51, WAIT_MS), "%zu handler calls", s_recorded ());
    herald_group_status_t status = s_status (s_agents [0], "billing");
    cr_assert_eq (status.owned, 32);
}

Test (herald_member_secure, a_key_that_may_not_read_fails_clearly)
{
    s_agents [1] = s_secure_agent ("bob");
    s_join (s_agents [1], "billing", 0, 0, 1);
    herald_sub_status_t status;
    uint64_t deadline = tu_mono_ns () + WAIT_MS * 1000000ULL;
    do {
        cr_assert_eq (herald_agent_sub_status (s_agents [1], "billing", &status), HERALD_OK);
        if (status.state == HERALD_SUB_FAILED)
            break;
        usleep (5000);
    } while (tu_mono_ns () < deadline);
    cr_assert_eq (status.state, HERALD_SUB_FAILED, "state %d", status.state);
    cr_assert_eq (status.error, HERALD_ERR_UNAUTHORIZED, "error %d: %s", status.error,
                  status.message);
    cr_assert (strstr (status.message, "billing") && strstr (status.message, "may not read"),
               "%s", status.message);
    cr_assert_eq (s_recorded (), 0);
}
