/*  =========================================================================
    taprelay - a TCP relay that keeps every byte it passes to the client

    The wire tap of the fanout tests (docs/security.md, "Read ACLs on the
    fanout"; SECURITY.md §4 test 14): a subscriber connects to the relay,
    the relay to the broker's endpoint, and every byte the broker sends
    down is counted and kept (up to TAPRELAY_KEEP bytes; counted beyond),
    so a test can say how many bytes reached that subscriber's socket and
    whether a plaintext marker crossed the wire.  Listens on 127.0.0.1, a
    port chosen at run time; one thread; nothing here uses criterion.
    =========================================================================
*/

#ifndef HERALD_TAPRELAY_H_INCLUDED
#define HERALD_TAPRELAY_H_INCLUDED

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define TAPRELAY_KEEP   (64u << 20)

typedef struct _taprelay_t taprelay_t;

//  Relay to 127.0.0.1:target.  NULL if it cannot listen.
taprelay_t *
    taprelay_new (int target);

//  Stop, close, free.  NULL-safe.
void
    taprelay_destroy (taprelay_t **self_p);

int
    taprelay_port (taprelay_t *self);

//  Bytes sent down to clients so far (all connections).
uint64_t
    taprelay_bytes (taprelay_t *self);

//  Connections accepted so far.
size_t
    taprelay_connections (taprelay_t *self);

//  Whether marker (len bytes) occurs in what was sent down from byte
//  offset `from` on (0: from the start).
bool
    taprelay_contains (taprelay_t *self, uint64_t from, const void *marker, size_t len);

#endif
