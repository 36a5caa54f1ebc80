/*  =========================================================================
    test_herald_member_state - the member's batch bookkeeping, driven
    directly

    Orders of events and replies that a real broker produces only by
    chance (a grant while a batch is in hand, then that batch stopped
    early; a declare answered fenced for some of its partitions) are set
    up here on a member's state with no sockets (no DEALER: a request is
    built, as it would be sent, and not sent), and the real functions of
    agents/herald_member_group.c run on it:
      - a batch not in seq order (the unhandled rest of the batch in hand,
        then the older events of a partition granted meanwhile) declares
        every event it holds: each partition's `delivered` is at least its
        last seq in the batch;
      - a declare answered fenced for one partition drops exactly that
        partition's events from the batch being declared.
    =========================================================================
*/

#include <criterion/criterion.h>
#include <inttypes.h>
#include "herald_member_priv.h"

#define PART_A      3
#define PART_B      9

static herald_member_t *s_member;

static void
s_setup (void)
{
    s_member = calloc (1, sizeof *s_member);
    cr_assert_not_null (s_member);
    s_member->parts = calloc (MEMBER_PARTITIONS, sizeof *s_member->parts);
    s_member->events = calloc (MEMBER_WINDOW, sizeof *s_member->events);
    s_member->commit_pos = calloc (MEMBER_PARTITIONS, sizeof *s_member->commit_pos);
    cr_assert (s_member->parts && s_member->events && s_member->commit_pos);
    pthread_mutex_init (&s_member->lock, NULL);
    msgpack_sbuffer_init (&s_member->buffer);
    s_member->partitions = 32;
    s_member->batch_max = 100;
    s_member->next_rid = 1;
    s_member->welcomed = true;
    s_member->joined = true;
    s_member->group = strdup ("billing");
    snprintf (s_member->member, sizeof s_member->member, "billing-test");
}

static void
s_teardown (void)
{
    for (size_t index = 0; index < s_member->event_count; index++)
        zframe_destroy (&s_member->events [index].frame);
    msgpack_sbuffer_destroy (&s_member->buffer);
    pthread_mutex_destroy (&s_member->lock);
    free (s_member->parts);
    free (s_member->events);
    free (s_member->commit_pos);
    free (s_member->group);
    free (s_member);
}

TestSuite (member_state, .init = s_setup, .fini = s_teardown);

static void
s_hold (uint32_t p, uint64_t committed)
{
    s_member->parts [p] = (member_part_t) { .held = true, .epoch = 7, .committed = committed,
        .committed_sent = committed, .redeliver_to = committed, .done = committed,
        .taken = committed };
}

static void
s_buffer (uint32_t p, uint64_t from, uint64_t to)
{
    for (uint64_t seq = from; seq <= to; seq++) {
        zframe_t *frame = zframe_new ("x", 1);
        cr_assert_not_null (frame);
        s_member->events [s_member->event_count++] = (member_event_t) { frame, seq, p };
        s_member->parts [p].taken = seq;
    }
}

static const herald_member_pos_t *
s_sent (uint32_t p)
{
    for (size_t index = 0; index < s_member->commit_count; index++)
        if (s_member->commit_pos [index].partition == p)
            return &s_member->commit_pos [index];
    return NULL;
}

//  The buffer after a grant while a batch was in hand, that batch then
//  stopped early (its lease ended): A's unhandled 511..520 first, then
//  the new stream's B 100..189 (B granted at 99).  The next batch holds
//  both; its last event (189) is not its highest (520).
Test (member_state, a_batch_out_of_seq_order_declares_every_event)
{
    s_hold (PART_A, 510);
    s_hold (PART_B, 99);
    s_buffer (PART_A, 511, 520);
    s_buffer (PART_B, 100, 189);
    herald_member_batch_build (s_member);
    cr_assert_eq (s_member->batch_state, BATCH_DECLARING);
    cr_assert_eq (s_member->commit_kind, COMMIT_DECLARE);
    cr_assert_eq (s_member->batch_count, 100);
    const herald_member_pos_t *a = s_sent (PART_A), *b = s_sent (PART_B);
    cr_assert (a && b);
    cr_assert_eq (a->committed, 510);
    cr_assert_geq (a->delivered, 520, "A's 511..520 are handed over undeclared: delivered %"
                   PRIu64, a->delivered);
    cr_assert_eq (b->committed, 99);
    cr_assert_geq (b->delivered, 189);
}

//  A partition with no event in the batch declares nothing: after a kill
//  only the batch's own events may come back flagged.
Test (member_state, a_partition_outside_the_batch_declares_nothing)
{
    s_hold (PART_A, 100);
    s_hold (PART_B, 40);
    s_buffer (PART_A, 101, 150);
    herald_member_batch_build (s_member);
    const herald_member_pos_t *a = s_sent (PART_A), *b = s_sent (PART_B);
    cr_assert (a && b);
    cr_assert_eq (a->delivered, 150);
    cr_assert_eq (b->committed, 40);
    cr_assert_eq (b->delivered, 40, "B declared %" PRIu64 " with no event in the batch",
                  b->delivered);
}

//  The declare of [A 511..520, B 100..189] answered fenced for B: the
//  batch is A's ten events, nothing of B and nothing beyond (no lease
//  here, so it is not handed over; the count is what would have been).
Test (member_state, a_declare_fenced_for_one_partition_keeps_the_others)
{
    s_hold (PART_A, 510);
    s_hold (PART_B, 99);
    s_buffer (PART_A, 511, 520);
    s_buffer (PART_B, 100, 189);
    s_buffer (PART_A, 521, 530);           //  after the batch: not in it
    herald_member_batch_build (s_member);
    cr_assert_eq (s_member->batch_count, 100);
    uint32_t fenced [] = { PART_B };
    herald_member_reply_t reply;
    memset (&reply, 0, sizeof reply);
    reply.rid = s_member->commit_rid;
    reply.op = HERALD_MEMBER_OP_COMMIT;
    reply.fenced = fenced;
    reply.fenced_count = 1;
    herald_member_on_commit (s_member, &reply);
    cr_assert_not (s_member->parts [PART_B].held);
    cr_assert (s_member->parts [PART_A].held);
    cr_assert_eq (s_member->event_count, 20);
    cr_assert_eq (s_member->batch_count, 10, "batch of %zu events after B's fence",
                  s_member->batch_count);
    for (size_t index = 0; index < s_member->event_count; index++)
        cr_assert_eq (s_member->events [index].partition, PART_A);
    cr_assert_eq (s_member->events [9].seq, 520);
}
