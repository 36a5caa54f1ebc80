/*  =========================================================================
    clusterlog - every node's log REPLAYed, and the checks of DESIGN.md #8

    cu_replay reads a node's whole log over HWP/1 (REPLAY from seq 1, the
    envelopes kept as sent).  The checks take logs and what the publishers
    recorded (tests/clusterload.h) and return the first violation in words:
    a log's own shape, two logs against each other, ACKed events against a
    log, and ACKs against Raft terms.  No criterion here.
    =========================================================================
*/

#ifndef HERALD_CLUSTERLOG_H_INCLUDED
#define HERALD_CLUSTERLOG_H_INCLUDED

#include "clusterutil.h"

typedef struct {
    uint64_t seq;
    uint64_t ver;
    uint64_t ts;
    uint8_t id [HERALD_ID_BYTES];
    char *topic;                    //  owned, NUL-terminated
    size_t topic_len;
    uint8_t *bytes;                 //  the envelope as REPLAY sent it, owned
    size_t len;
} cu_entry_t;

typedef struct {
    cu_entry_t *entries;
    size_t count;
    size_t size;
    uint64_t head;                  //  END's head
} cu_log_t;

//  REPLAY node index from seq 1 to its head (whole, within timeout_ms).
//  Returns 0, or -1 with why filled.  cu_log_fini afterwards in every case.
int
    cu_replay (cu_cluster_t *self, size_t index, cu_log_t *log, int timeout_ms, char *why,
               size_t why_size);

void
    cu_log_fini (cu_log_t *log);

//  A set of ids (open addressing), for "only ids the test published".
typedef struct {
    uint8_t (*slots) [HERALD_ID_BYTES];
    bool *used;
    size_t size;
    size_t count;
} cu_idset_t;

int
    cu_idset_init (cu_idset_t *self, size_t expected);
//  Returns 1 when added, 0 when it was there, -1 when full.
int
    cu_idset_add (cu_idset_t *self, const uint8_t id [HERALD_ID_BYTES]);
bool
    cu_idset_has (const cu_idset_t *self, const uint8_t id [HERALD_ID_BYTES]);
void
    cu_idset_fini (cu_idset_t *self);

//  seq 1..count gapless, ver gapless per topic from 1, ts non-decreasing,
//  every id once and (published not NULL) every id in published or in
//  maybe (ids whose outcome the test cannot know; may be NULL); each
//  envelope decodes to the fields kept.  0, or -1 with why filled.
int
    cu_check_log_shape (const cu_log_t *log, const cu_idset_t *published,
                        const cu_idset_t *maybe, char *why, size_t why_size);

//  a and b identical: count, and per entry seq, id, topic, ver, ts and the
//  envelope bytes.  0, or -1 with why naming the first difference.
int
    cu_compare_logs (const cu_log_t *a, const cu_log_t *b, char *why, size_t why_size);

//  One ACKed event: its id and what the ACK said.
typedef struct {
    uint8_t id [HERALD_ID_BYTES];
    uint64_t seq;
    uint64_t ver;
} cu_acked_t;

//  Every acked event is in log at its seq with its id and ver.  0, or -1.
int
    cu_check_acked (const cu_log_t *log, const cu_acked_t *acked, size_t count, char *why,
                    size_t why_size);

//  One ACK with what is known of the term its sender led: term_lo from a
//  STATUS answered before the PUBLISH was sent, term_hi from one sent
//  after the ACK came (0: unknown).  Exact when equal.
typedef struct {
    int node;
    uint64_t term_lo;
    uint64_t term_hi;
} cu_term_ack_t;

//  No two nodes ACKed in one term, from the exact records.  exact gets
//  how many records were exact.  0, or -1 with why naming the term.
int
    cu_check_terms (const cu_term_ack_t *acks, size_t count, size_t *exact, char *why,
                    size_t why_size);

#endif
