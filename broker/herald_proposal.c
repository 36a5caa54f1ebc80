/*  =========================================================================
    herald_proposal - one herald_raft_propose call on its way through
    Raft: cut into entries, encoded, and answered by one record

    DESIGN

    The broker's batches of one group commit become one or more Raft
    entries of at most HERALD_PROPOSAL_ENTRY_MAX bytes of whole requests
    (a bigger single request travels alone), each a herald_entry of kind
    publish with the proposer's term and raft id and the proposal's ts.
    herald_raft.c submits them one by one (raft_apply takes n = 1 in
    libraft 0.22.1) and keeps each in flight with its request range.

    Bookkeeping, so that the broker gets exactly one record with the
    cookie per proposal:

        entries    entries submitted (raft_apply accepted them)
        callbacks  their apply callbacks fired
        lost       some part was not submitted, or a callback said
                   leadership was lost (outcome unknown)
        done       the record with the cookie was pushed

    The record of the LAST entry, applied here while nothing is lost,
    answers the proposal (herald_proposal_answer: cookie, batches, rc OK).
    Otherwise, once every submitted entry's callback fired (or none was
    submitted), the proposal gets one not_leader record
    (herald_proposal_answer_lost); entries already applied went out in
    their own fan-out-only records.  The raft thread frees the proposal
    then.
    =========================================================================
*/

#include "herald_proposal.h"
#include "herald_entry.h"

herald_proposal_t *
herald_proposal_new (herald_batch_t *batches, size_t count, uint64_t ts, void *cookie)
{
    herald_proposal_t *self = (herald_proposal_t *) zmalloc (sizeof (herald_proposal_t));
    self->batches = batches;
    self->count = count;
    self->ts = ts;
    self->cookie = cookie;
    return self;
}

void
herald_proposal_destroy (herald_proposal_t **self_p)
{
    if (self_p && *self_p) {
        free (*self_p);
        *self_p = NULL;
    }
}

size_t
herald_proposal_cut (herald_proposal_t *self, size_t first)
{
    size_t bytes = HERALD_ENTRY_OVERHEAD + 4;
    size_t end = first;
    while (end < self->count) {
        const herald_batch_t *batch = &self->batches [end];
        size_t size = batch->count? herald_entry_request_size (batch->events, batch->count)
                                  : herald_entry_op_size (batch->op_len);
        if (end > first && bytes + size > HERALD_PROPOSAL_ENTRY_MAX)
            break;
        bytes += size;
        end++;
    }
    return end;
}

int
herald_proposal_encode (herald_proposal_t *self, size_t first, size_t count,
                        uint64_t term, uint64_t proposer, msgpack_sbuffer *buffer)
{
    herald_entry_request_t stack [64];
    herald_entry_request_t *requests = count <= 64? stack:
        (herald_entry_request_t *) malloc (count * sizeof (herald_entry_request_t));
    if (!requests)
        return -1;
    size_t index;
    //  The lowest rules that carry these requests: an entry without a
    //  group's op stays rules 1, which a node from before groups applies
    uint16_t rules = HERALD_ENTRY_RULES_MIN;
    for (index = 0; index < count; index++) {
        const herald_batch_t *batch = &self->batches [first + index];
        requests [index] = (herald_entry_request_t) {
            .events = batch->events, .count = batch->count
        };
        if (batch->count == 0 && batch->op) {
            requests [index].op = batch->op;
            requests [index].op_len = batch->op_len;
            rules = HERALD_ENTRY_RULES_OPS;
        }
    }
    herald_entry_t entry = {
        .kind = HERALD_ENTRY_PUBLISH, .rules = rules,
        .term = term, .proposer = proposer,
        .ts = self->ts, .requests = requests, .count = count
    };
    int rc = herald_entry_encode (&entry, buffer);
    if (requests != stack)
        free (requests);
    return rc? -1: 0;
}

void
herald_proposal_set_results (herald_proposal_t *self, size_t first,
                             const herald_batch_t *batches, size_t count)
{
    size_t request;
    for (request = 0; request < count; request++) {
        herald_batch_t *into = &self->batches [first + request];
        if (into->count)
            memcpy (into->results, batches [request].results,
                    into->count * sizeof (herald_append_result_t));
        //  An op's result: a copy of the broker's own (the applied batches
        //  are the raft thread's, freed after the apply); the broker frees
        //  it with the commit.  Out of memory leaves it NULL: the op is
        //  answered `internal`, as applied without a result.
        free (into->op_result);
        into->op_result = NULL;
        into->op_result_len = 0;
        if (batches [request].op_result) {
            into->op_result = (uint8_t *) malloc (batches [request].op_result_len);
            if (into->op_result) {
                memcpy (into->op_result, batches [request].op_result,
                        batches [request].op_result_len);
                into->op_result_len = batches [request].op_result_len;
            }
        }
        into->status = batches [request].status;
        into->conflict_index = batches [request].conflict_index;
        into->expected = batches [request].expected;
        into->actual = batches [request].actual;
    }
}

void
herald_proposal_answer (herald_proposal_t *self, herald_applied_t *record)
{
    if (self->lost)
        return;
    record->cookie = self->cookie;
    record->batches = self->batches;
    record->count = self->count;
    record->ts = self->ts;
    self->done = true;
}

void
herald_proposal_answer_lost (herald_proposal_t *self, herald_applied_t *record)
{
    self->done = true;
    record->cookie = self->cookie;
    record->batches = self->batches;
    record->count = self->count;
    record->ts = self->ts;
    record->rc = HERALD_ERR_NOT_LEADER;
    herald_error_set (&record->err, HERALD_ERR_NOT_LEADER, "",
                      "leadership was lost before the proposal was applied; "
                      "its outcome is unknown");
    record->last_seq = 0;
}

bool
herald_proposal_settle (herald_proposal_t *self, bool applied)
{
    if (!applied)
        self->lost = true;
    self->callbacks++;
    return self->callbacks == self->entries;
}
