/*  =========================================================================
    clusterlog - every node's log REPLAYed, and the checks of DESIGN.md #8

    See clusterlog.h.  No criterion here: every failure is a return value
    with its reason in words.
    =========================================================================
*/

#include "clusterlog.h"
#include "testutil.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void
s_why (char *why, size_t why_size, const char *format, ...)
{
    if (!why || !why_size)
        return;
    va_list args;
    va_start (args, format);
    vsnprintf (why, why_size, format, args);
    va_end (args);
}

static void
s_id_hex (const uint8_t id [HERALD_ID_BYTES], char out [2 * HERALD_ID_BYTES + 1])
{
    tu_hex (id, HERALD_ID_BYTES, out);
}

//  Append one envelope to log, decoded.  0, or -1 with why filled.
static int
s_log_add (cu_log_t *log, const void *bytes, size_t len, char *why, size_t why_size)
{
    if (log->count == log->size) {
        size_t size = log->size? log->size * 2: 4096;
        cu_entry_t *entries = realloc (log->entries, size * sizeof *entries);
        if (!entries) {
            s_why (why, why_size, "out of memory at %zu entries", log->count);
            return -1;
        }
        log->entries = entries;
        log->size = size;
    }
    tu_decoded_t decoded;
    herald_err rc = tu_decode (&decoded, bytes, len);
    if (rc != HERALD_OK) {
        s_why (why, why_size, "envelope %zu does not decode: %s", log->count + 1,
               decoded.err.message);
        tu_decoded_fini (&decoded);
        return -1;
    }
    cu_entry_t *entry = &log->entries [log->count];
    memset (entry, 0, sizeof *entry);
    entry->seq = decoded.event.seq;
    entry->ver = decoded.event.ver;
    entry->ts = decoded.event.ts;
    memcpy (entry->id, decoded.event.id, HERALD_ID_BYTES);
    entry->topic_len = decoded.event.topic_len;
    entry->topic = malloc (entry->topic_len + 1);
    entry->bytes = malloc (len? len: 1);
    if (entry->topic && entry->bytes) {
        memcpy (entry->topic, decoded.event.topic, entry->topic_len);
        entry->topic [entry->topic_len] = 0;
        memcpy (entry->bytes, bytes, len);
        entry->len = len;
        log->count++;
    }
    tu_decoded_fini (&decoded);
    if (!entry->topic || !entry->bytes) {
        free (entry->topic);
        free (entry->bytes);
        s_why (why, why_size, "out of memory at %zu entries", log->count);
        return -1;
    }
    return 0;
}

int
cu_replay (cu_cluster_t *self, size_t index, cu_log_t *log, int timeout_ms, char *why,
           size_t why_size)
{
    memset (log, 0, sizeof *log);
    cu_node_t *node = &self->nodes [index];
    //  A DEALER of its own: the control socket may hold late STATUS replies
    zsock_t *sock = bu_dealer_new (node->api);
    if (!sock) {
        s_why (why, why_size, "%s: no socket", node->name);
        return -1;
    }
    uint64_t rid = 1;
    bu_replay_t replay = { .has_from = true, .from = 1, .has_credit = true,
                           .credit = HERALD_CREDIT_MAX };
    msgpack_sbuffer sbuf;
    msgpack_sbuffer_init (&sbuf);
    bu_pack_replay (&sbuf, rid, &replay);
    bu_send_sbuf (sock, "REPLAY", &sbuf);
    msgpack_sbuffer_destroy (&sbuf);
    uint64_t credit = HERALD_CREDIT_MAX;
    uint64_t deadline = tu_mono_ns () + (uint64_t) timeout_ms * 1000000ULL;
    int rc = -1;
    bool done = false;
    //  Bounded by the deadline; every round takes one reply
    while (!done) {
        uint64_t now = tu_mono_ns ();
        if (now >= deadline) {
            s_why (why, why_size, "%s: REPLAY did not END within %d ms (%zu envelopes)",
                   node->name, timeout_ms, log->count);
            break;
        }
        bu_reply_t reply;
        if (bu_recv_reply (sock, &reply, (int) ((deadline - now) / 1000000ULL) + 1) != 0) {
            bu_reply_fini (&reply);
            continue;
        }
        if (reply.type == HERALD_MSG_EVENTS && reply.rc == HERALD_OK && reply.body.rid == rid) {
            for (size_t at = 0; at < reply.envelope_count && !done; at++) {
                zframe_t *frame = bu_reply_envelope (&reply, at);
                if (s_log_add (log, zframe_data (frame), zframe_size (frame), why, why_size))
                    done = true;
            }
            //  Keep the credit far from zero for a log longer than the cap
            credit -= reply.envelope_count < credit? reply.envelope_count: credit;
            if (credit < HERALD_CREDIT_MAX / 2) {
                msgpack_sbuffer_init (&sbuf);
                bu_pack_credit (&sbuf, rid, HERALD_CREDIT_MAX - credit);
                bu_send_sbuf (sock, "CREDIT", &sbuf);
                msgpack_sbuffer_destroy (&sbuf);
                credit = HERALD_CREDIT_MAX;
            }
        }
        else
        if (reply.type == HERALD_MSG_END && reply.rc == HERALD_OK && reply.body.rid == rid) {
            log->head = reply.body.end.head;
            done = true;
            if (bu_str_eq (reply.body.end.reason, "done"))
                rc = 0;
            else
                s_why (why, why_size, "%s: REPLAY ended '%.*s'", node->name,
                       (int) reply.body.end.reason.len, reply.body.end.reason.ptr);
        }
        else
        if (reply.type == HERALD_MSG_ERROR) {
            s_why (why, why_size, "%s: REPLAY got ERROR %s: %.*s", node->name,
                   herald_err_code (reply.body.error.code),
                   (int) reply.body.error.message.len, reply.body.error.message.ptr);
            done = true;
        }
        bu_reply_fini (&reply);
    }
    zsock_destroy (&sock);
    return rc;
}

void
cu_log_fini (cu_log_t *log)
{
    for (size_t index = 0; index < log->count; index++) {
        free (log->entries [index].topic);
        free (log->entries [index].bytes);
    }
    free (log->entries);
    memset (log, 0, sizeof *log);
}

//  ---------------------------------------------------------------------
//  A set of ids

static uint64_t
s_id_hash (const uint8_t id [HERALD_ID_BYTES])
{
    //  Ids are random: their first bytes are a hash already
    uint64_t hash = tu_get_be64 (id) ^ tu_get_be64 (id + 8);
    return hash * 0x9E3779B97F4A7C15ULL;
}

int
cu_idset_init (cu_idset_t *self, size_t expected)
{
    memset (self, 0, sizeof *self);
    size_t size = 1024;
    while (size < expected * 2 + 16)
        size *= 2;
    self->slots = calloc (size, sizeof *self->slots);
    self->used = calloc (size, sizeof *self->used);
    self->size = size;
    if (!self->slots || !self->used) {
        cu_idset_fini (self);
        return -1;
    }
    return 0;
}

int
cu_idset_add (cu_idset_t *self, const uint8_t id [HERALD_ID_BYTES])
{
    if (self->count + 1 >= self->size / 2 + self->size / 4)
        return -1;
    size_t at = s_id_hash (id) & (self->size - 1);
    while (self->used [at]) {
        if (!memcmp (self->slots [at], id, HERALD_ID_BYTES))
            return 0;
        at = (at + 1) & (self->size - 1);
    }
    self->used [at] = true;
    memcpy (self->slots [at], id, HERALD_ID_BYTES);
    self->count++;
    return 1;
}

bool
cu_idset_has (const cu_idset_t *self, const uint8_t id [HERALD_ID_BYTES])
{
    if (!self->size)
        return false;
    size_t at = s_id_hash (id) & (self->size - 1);
    while (self->used [at]) {
        if (!memcmp (self->slots [at], id, HERALD_ID_BYTES))
            return true;
        at = (at + 1) & (self->size - 1);
    }
    return false;
}

void
cu_idset_fini (cu_idset_t *self)
{
    free (self->slots);
    free (self->used);
    memset (self, 0, sizeof *self);
}

//  ---------------------------------------------------------------------
//  Checks

//  The ver last seen per topic: a small open table (tests use few topics).
typedef struct {
    const char *topic;
    uint64_t ver;
} s_topic_t;

int
cu_check_log_shape (const cu_log_t *log, const cu_idset_t *published,
                    const cu_idset_t *maybe, char *why, size_t why_size)
{
    size_t size = 1024;
    while (size < log->count * 2 + 16 && size < (1u << 20))
        size *= 2;
    s_topic_t *topics = calloc (size, sizeof *topics);
    cu_idset_t seen;
    if (!topics || cu_idset_init (&seen, log->count) != 0) {
        free (topics);
        s_why (why, why_size, "out of memory");
        return -1;
    }
    int rc = 0;
    size_t topic_count = 0;
    char hex [2 * HERALD_ID_BYTES + 1];
    for (size_t index = 0; index < log->count && rc == 0; index++) {
        const cu_entry_t *entry = &log->entries [index];
        if (entry->seq != index + 1) {
            s_why (why, why_size, "entry %zu has seq %" PRIu64 " (gap or reorder)", index + 1,
                   entry->seq);
            rc = -1;
            break;
        }
        if (index && entry->ts < log->entries [index - 1].ts) {
            s_why (why, why_size, "seq %" PRIu64 " has ts %" PRIu64 " below seq %" PRIu64
                   "'s %" PRIu64, entry->seq, entry->ts, entry->seq - 1,
                   log->entries [index - 1].ts);
            rc = -1;
            break;
        }
        s_id_hex (entry->id, hex);
        int added = cu_idset_add (&seen, entry->id);
        if (added != 1) {
            s_why (why, why_size, "id %s is in the log twice (again at seq %" PRIu64 ")", hex,
                   entry->seq);
            rc = -1;
            break;
        }
        if (published && !cu_idset_has (published, entry->id)
        &&  !(maybe && cu_idset_has (maybe, entry->id))) {
            s_why (why, why_size, "seq %" PRIu64 " holds id %s, which no one published",
                   entry->seq, hex);
            rc = -1;
            break;
        }
        //  ver: 1 more than the topic's last (FNV-1a over the topic)
        uint64_t hash = 1469598103934665603ULL;
        for (size_t at = 0; at < entry->topic_len; at++)
            hash = (hash ^ (uint8_t) entry->topic [at]) * 1099511628211ULL;
        size_t at = hash & (size - 1);
        while (topics [at].topic && strcmp (topics [at].topic, entry->topic))
            at = (at + 1) & (size - 1);
        if (!topics [at].topic) {
            if (topic_count + 1 >= size) {
                s_why (why, why_size, "too many topics to check");
                rc = -1;
                break;
            }
            topics [at].topic = entry->topic;
            topic_count++;
        }
        if (entry->ver != topics [at].ver + 1) {
            s_why (why, why_size, "seq %" PRIu64 " has ver %" PRIu64 " on topic '%s' after ver %"
                   PRIu64, entry->seq, entry->ver, entry->topic, topics [at].ver);
            rc = -1;
            break;
        }
        topics [at].ver = entry->ver;
    }
    if (rc == 0 && log->head != log->count) {
        s_why (why, why_size, "REPLAY sent %zu events but END's head is %" PRIu64, log->count,
               log->head);
        rc = -1;
    }
    cu_idset_fini (&seen);
    free (topics);
    return rc;
}

int
cu_compare_logs (const cu_log_t *a, const cu_log_t *b, char *why, size_t why_size)
{
    size_t common = a->count < b->count? a->count: b->count;
    char hex_a [2 * HERALD_ID_BYTES + 1], hex_b [2 * HERALD_ID_BYTES + 1];
    for (size_t index = 0; index < common; index++) {
        const cu_entry_t *x = &a->entries [index], *y = &b->entries [index];
        if (x->seq != y->seq || x->ver != y->ver || x->ts != y->ts
        ||  memcmp (x->id, y->id, HERALD_ID_BYTES) || strcmp (x->topic, y->topic)) {
            s_id_hex (x->id, hex_a);
            s_id_hex (y->id, hex_b);
            s_why (why, why_size, "entry %zu differs: seq %" PRIu64 "/%" PRIu64 " id %s/%s topic "
                   "'%s'/'%s' ver %" PRIu64 "/%" PRIu64 " ts %" PRIu64 "/%" PRIu64, index + 1,
                   x->seq, y->seq, hex_a, hex_b, x->topic, y->topic, x->ver, y->ver, x->ts, y->ts);
            return -1;
        }
        if (x->len != y->len || memcmp (x->bytes, y->bytes, x->len)) {
            s_why (why, why_size, "seq %" PRIu64 ": same fields but the envelope bytes differ "
                   "(%zu and %zu bytes)", x->seq, x->len, y->len);
            return -1;
        }
    }
    if (a->count != b->count) {
        s_why (why, why_size, "one log has %zu events, the other %zu (the rest identical)",
               a->count, b->count);
        return -1;
    }
    return 0;
}

int
cu_check_acked (const cu_log_t *log, const cu_acked_t *acked, size_t count, char *why,
                size_t why_size)
{
    char hex [2 * HERALD_ID_BYTES + 1];
    for (size_t index = 0; index < count; index++) {
        const cu_acked_t *ack = &acked [index];
        s_id_hex (ack->id, hex);
        if (ack->seq == 0 || ack->seq > log->count) {
            s_why (why, why_size, "id %s was ACKed at seq %" PRIu64 " but the log ends at %zu "
                   "(an ACKed event lost)", hex, ack->seq, log->count);
            return -1;
        }
        const cu_entry_t *entry = &log->entries [ack->seq - 1];
        if (memcmp (entry->id, ack->id, HERALD_ID_BYTES) || entry->ver != ack->ver) {
            char there [2 * HERALD_ID_BYTES + 1];
            s_id_hex (entry->id, there);
            s_why (why, why_size, "id %s was ACKed at seq %" PRIu64 " ver %" PRIu64 " but that "
                   "seq holds id %s ver %" PRIu64, hex, ack->seq, ack->ver, there, entry->ver);
            return -1;
        }
    }
    return 0;
}

static int
s_cmp (const void *a, const void *b)
{
    const cu_term_ack_t *x = a, *y = b;
    if (x->term_lo != y->term_lo)
        return x->term_lo < y->term_lo? -1: 1;
    return x->node - y->node;
}

int
cu_check_terms (const cu_term_ack_t *acks, size_t count, size_t *exact, char *why,
                size_t why_size)
{
    //  term -> node of the first exact record, in a sorted copy
    cu_term_ack_t *sorted = malloc ((count? count: 1) * sizeof *sorted);
    if (!sorted) {
        s_why (why, why_size, "out of memory");
        return -1;
    }
    size_t kept = 0;
    for (size_t index = 0; index < count; index++)
        if (acks [index].term_lo && acks [index].term_lo == acks [index].term_hi)
            sorted [kept++] = acks [index];
    if (exact)
        *exact = kept;
    //  Sorted by term, two nodes in one term are neighbours
    qsort (sorted, kept, sizeof *sorted, s_cmp);
    int rc = 0;
    for (size_t index = 1; index < kept; index++)
        if (sorted [index].term_lo == sorted [index - 1].term_lo
        &&  sorted [index].node != sorted [index - 1].node) {
            s_why (why, why_size, "two leaders ACKed in term %" PRIu64 ": nodes %d and %d",
                   sorted [index].term_lo, sorted [index - 1].node + 1, sorted [index].node + 1);
            rc = -1;
            break;
        }
    free (sorted);
    return rc;
}
