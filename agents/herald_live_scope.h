/*  =========================================================================
    herald_live_scope - exact gap detection on a scoped fanout (issue 14)

    A key that reads one ACL scope subscribes to that scope's own PUB
    (docs/security.md, "Read ACLs on the fanout").  Its seqs are not
    contiguous, so "seq != the last one + 1" says nothing.  Instead the
    broker names, with every event, the seq of the scope's previous event
    (frame 0 = topic NUL prev, 8 bytes big-endian), and with every `$hb`
    the scope's last seq at or before head.  One connection delivers a
    subsequence of what was sent (drops at the HWM, never reordering), so:

      event (seq s, prev p): if !known or p != last: the stream is
                             contiguous from s only; then last = s
      $hb (head h, last L):  if !known or L != last: contiguous from h + 1
                             only; then last = L; everything to h examined
      a reconnect, `$hello`, a new epoch: known = false

    Every mismatch errs towards a replay, never towards a silent gap.
    Pure functions, so that a property test can drive them with random
    drop patterns (tests/test_herald_agent_scope.c); herald_io.c calls them.
    =========================================================================
*/

#ifndef HERALD_LIVE_SCOPE_H_INCLUDED
#define HERALD_LIVE_SCOPE_H_INCLUDED

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

typedef struct {
    bool known;                 //  last is the scope's last seq sent that we hold
    uint64_t last;
} herald_live_scope_t;

//  The position is unknown from here (reconnect, `$hello`, new epoch).
static inline void
herald_live_scope_reset (herald_live_scope_t *self)
{
    self->known = false;
}

//  An event of seq s whose predecessor in the scope is prev: returns the
//  seq the live stream is contiguous from when something before s may be
//  missing (s), or 0 when nothing is.
static inline uint64_t
herald_live_scope_event (herald_live_scope_t *self, uint64_t seq, uint64_t prev)
{
    uint64_t from = (!self->known || prev != self->last)? seq: 0;
    self->last = seq;
    self->known = true;
    return from;
}

//  A `$hb` with head and last: returns head + 1 when something up to
//  head may be missing, else 0.
static inline uint64_t
herald_live_scope_beat (herald_live_scope_t *self, uint64_t head, uint64_t last)
{
    uint64_t from = (!self->known || last != self->last)? head + 1: 0;
    self->last = last;
    self->known = true;
    return from;
}

//  Frame 0 of a scoped event: the topic (topic_len bytes, from the
//  envelope), NUL, prev.  False when frame 0 is not of that form.
static inline bool
herald_live_scope_prev (const void *frame0, size_t size, size_t topic_len, uint64_t *prev)
{
    const uint8_t *bytes = (const uint8_t *) frame0;
    if (size != topic_len + 9 || bytes [topic_len] != 0)
        return false;
    uint64_t value = 0;
    for (size_t at = topic_len + 1; at < size; at++)
        value = (value << 8) | bytes [at];
    *prev = value;
    return true;
}

#endif
